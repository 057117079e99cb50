/* l2_side_probe.cu — which GPCs of the H200 sit on which L2 partition (docs/HOPPER_GEMM_NOTES.md,
 * session 14).
 *
 * The H200's L2 is two partitions joined by a fabric. An SM reads through its own partition; a sector
 * homed in the other one crosses the fabric, and once across it is kept on the near side, so SMs of one
 * side that read the same data pay for the crossing once. For each pair of GPCs (g1, g2), the kernel
 * `pair` has the CTAs on those two GPCs read the same fresh 8 MB buffer (ld.global.cg). Run it under
 * Nsight Compute and read the fabric counter of each launch:
 *   ncu --kernel-name pair --metrics lts__t_sectors_srcunit_ltcfabric.sum --csv .gpu/l2_side_probe
 * One GPC alone moves half the buffer across (~131k sectors: the half homed on the far side); two GPCs
 * of one side move the same; two GPCs of different sides twice that. Launches run in the order the
 * program prints ("pair g1 g2").
 * gpc_of() is tools/sm_layout_probe.cu's measured GPC grouping of the H200's SMs (TPC t = SMs 2t, 2t+1;
 * SMs 124-131 never share a cluster of 4 and are left out). Measured 2026-11-22: GPCs {0, 4, 5, 6} on
 * one side and {1, 2, 3, 7} on the other (133-134k sectors within a side, 265k across).
 *
 * Not part of the Bazel build (it needs nvcc and a GPU). Build here, run on the GPU host:
 *   nvcc -O2 -gencode=arch=compute_90a,code=sm_90a -o .gpu/l2_side_probe tools/l2_side_probe.cu */
#include <stdio.h>
#include <stdint.h>
#include "cuda_check.h"
/* GPC group of an SM (H200, from tools/sm_layout_probe.cu); -1: not placed in clusters of 4 */
__device__ int gpc_of(int sm) {
  int t = sm / 2;
  if (t < 32) return t % 8;
  if (t < 60) return 1 + (t - 32) % 7;
  if (t == 60) return 6;
  if (t == 61) return 7;
  return -1;
}
/* CTAs on GPCs g1 and g2 read all of buf through the L2; the rest leave at once */
__global__ void pair(const uint4 *buf, size_t n, int g1, int g2, uint4 *sink) {
  extern __shared__ char smem[];
  unsigned sm;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
  const int g = gpc_of(sm);
  if (g != g1 && g != g2) return;
  uint4 acc = make_uint4(0, 0, 0, 0);
  for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
    uint4 v;
    asm volatile("ld.global.cg.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(buf + i));
    acc.x ^= v.x; acc.y ^= v.y;
  }
  if (acc.x == 0x12345678u) sink[blockIdx.x] = acc;
  smem[0] = 0; /* the dynamic shared memory keeps one CTA an SM, so every SM runs one */
}

int main(void) {
  const size_t bytes = 8u << 20, n = bytes / 16;
  uint4 *sink;
  CHECK(cudaMalloc(&sink, 4096 * 16));
  CHECK(cudaFuncSetAttribute(pair, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024));
  for (int g1 = 0; g1 < 8; ++g1)
    for (int g2 = g1; g2 < 8; ++g2) {
      /* a fresh buffer each pair, so no earlier launch left copies on either side */
      uint4 *buf;
      CHECK(cudaMalloc(&buf, bytes));
      CHECK(cudaMemset(buf, g1 * 8 + g2, bytes));
      pair<<<132, 512, 200 * 1024>>>(buf, n, g1, g2, sink);
      CHECK(cudaDeviceSynchronize());
      printf("pair %d %d\n", g1, g2);
      CHECK(cudaFree(buf));
    }
  CHECK(cudaFree(sink));
  return 0;
}

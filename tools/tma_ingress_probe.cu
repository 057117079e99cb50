/* tma_ingress_probe.cu — how fast TMA tensor loads fill one SM's shared memory, alone and with every SM
 * loading (docs/HOPPER_GEMM_NOTES.md, session 22).
 *
 * Session 21 left a hypothesis: every GEMM geometry measured so far takes in ~47-50 bytes a clock an SM
 * at full speed, so a per-SM ingress limit near that figure would explain why the narrow tiles (which
 * need 64) run slow. This probe loads and does nothing else: each CTA (one an SM, forced by its shared
 * memory) runs a ring of stages; one thread issues the TMA loads of a stage (bf16 boxes of 128 or 64
 * rows x 64 columns, 16 or 8 KiB, 128-byte swizzle, as the GEMM's), one consumer thread waits for the
 * stage to be full, optionally spins for `work` clocks (the products' time), and releases it. The
 * source is an 8 MiB tensor that stays in the L2, so DRAM is not measured. Waits are the GEMM's
 * (CTA-scope acquire, with its suspend-time hint) or a plain try_wait spin.
 *
 * Modes (the cases table in main):
 *   private: each CTA loads `boxes` boxes a stage itself;
 *   pair:    clusters of 2, a stage of 3 boxes as the wide GEMM tile's (its own A box, and the two B
 *            boxes, one issued by each CTA with multicast into both);
 *   spread:  the CTAs load different boxes at each step; same: every CTA the same box sequence.
 * Printed per case: the median and the least of the CTAs' bytes a clock (clock64) and clocks a stage,
 * the bytes a ns of all SMs together over the launch (%globaltimer), and the clock the SMs ran at.
 * First it prints where a plain launch of one CTA an SM puts each block (%smid, with the GPC group of
 * tools/sm_layout_probe.cu and the L2 side of tools/l2_side_probe.cu).
 *
 * Measured 2026-11-22 (HOPPER_GEMM_NOTES "Session 22"): a pair of CTAs took in 90-97 bytes a clock an
 * SM, so there is no per-SM limit near 47-50; 132 SMs loading different boxes got ~10 TB/s together
 * (39-40 bytes a clock an SM at 1.98 GHz), 13.8 TB/s with the pairs' multicast, 20 TB/s all reading
 * the same boxes. Blocks of a plain launch fill one GPC after another (blocks 8-23 on one GPC, ...).
 * Not explained: the single-CTA private cases read 35 / 58 / 77 bytes a clock (16 / 32 / 48 KiB
 * stages) in a first build of this file and about half that in this one (runtime box shapes).
 *
 * Not part of the Bazel build (it needs nvcc and a GPU). Build here, run on the GPU host:
 *   nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -o .gpu/bin/tma_ingress_probe \
 *        tools/tma_ingress_probe.cu -lcuda */
#include <cuda.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "cuda_check.h"

#define RING_BYTES (192 * 1024)
#define BOX_BYTES (16 * 1024)
#define ROWS 8192
#define COLS 512 /* bf16: 8 MiB */

struct probe_args {
  int steps;         /* stages a CTA loads */
  int boxes;         /* boxes a stage */
  int box_rows;      /* 128 (16 KiB boxes) or 64 (8 KiB) */
  int stages;        /* stages in the ring */
  int hint;          /* waits with the GEMM's suspend-time hint (else spin on try_wait) */
  int work;          /* clocks the consumer spends on a stage before releasing it */
  int pair;          /* clusters of 2, B multicast */
  int spread;        /* distinct boxes a CTA */
  long long *clocks; /* [cta][2]: clock64 at the first issue and after the last stage was full */
  unsigned long long *times; /* [cta][2]: %globaltimer likewise */
};

__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ unsigned long long globaltimer(void) {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ void bar_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void bar_expect(uint32_t bar, int bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
/* the GEMM's wait: CTA-scope acquire, with a suspend-time hint */
__device__ __forceinline__ void bar_wait(uint32_t bar, int parity, int hint) {
  uint32_t done;
  if (!hint) {
    do {
      asm volatile(
          "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}"
          : "=r"(done)
          : "r"(bar), "r"(parity)
          : "memory");
    } while (!done);
    return;
  }
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2, %3;\nselp.u32 %0, 1, 0, p;\n}"
        : "=r"(done)
        : "r"(bar), "r"(parity), "r"(10000000u)
        : "memory");
  } while (!done);
}
/* arrive on the mbarrier at local offset bar of CTA cta of the cluster; CTA-scope release, as the GEMM's
   (cluster scope would put a GPU-wide memory barrier before every arrive) */
__device__ __forceinline__ void bar_arrive_cta(uint32_t bar, int cta) {
  asm volatile(
      "{\n.reg .b32 remote;\nmapa.shared::cluster.u32 remote, %0, %1;\n"
      "mbarrier.arrive.shared::cluster.b64 _, [remote];\n}" ::"r"(bar),
      "r"(cta)
      : "memory");
}
__device__ __forceinline__ void load_box(uint32_t dst, const CUtensorMap *map, int col, int row, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" ::"r"(
          dst),
      "l"(map), "r"(col), "r"(row), "r"(bar)
      : "memory");
}
__device__ __forceinline__ void load_box_multicast(uint32_t dst, const CUtensorMap *map, int col, int row, uint32_t bar,
                                                   uint16_t mask) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, {%2, "
      "%3}], [%4], %5;" ::"r"(dst),
      "l"(map), "r"(col), "r"(row), "r"(bar), "h"(mask)
      : "memory");
}
__device__ __forceinline__ uint32_t cluster_rank(void) {
  uint32_t r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return r;
}
__device__ __forceinline__ void cluster_sync(void) {
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}
__device__ __forceinline__ void box_coords(int box, int rows, int *col, int *row) {
  box %= (ROWS / rows) * (COLS / 64);
  *col = (box % (COLS / 64)) * 64;
  *row = (box / (COLS / 64)) * rows;
}

__global__ void __launch_bounds__(64) ingress(const __grid_constant__ CUtensorMap map128, const __grid_constant__ CUtensorMap map64,
                                             struct probe_args a) {
  const int box_bytes = a.box_rows * 128;
  extern __shared__ char raw[];
  char *ring = (char *)(((uintptr_t)raw + 1023) & ~(uintptr_t)1023);
  const int stage_bytes = a.boxes * box_bytes, stages = a.stages;
  uint64_t *bars = (uint64_t *)(ring + RING_BYTES); /* full[stages], then empty[stages] */
  const uint32_t full0 = smem_addr(bars), empty0 = smem_addr(bars + stages);
  const int rank = a.pair ? (int)cluster_rank() : 0;
  if (threadIdx.x == 0) {
    for (int s = 0; s < stages; ++s) {
      bar_init(full0 + 8 * s, 1);
      bar_init(empty0 + 8 * s, a.pair ? 2 : 1);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  if (a.pair)
    cluster_sync();
  else
    __syncthreads();
  const int cta = blockIdx.x;
  const int base = a.spread ? cta * 97 : 0; /* the cluster's pair shares B boxes either way */
  const int pair_base = a.spread ? (cta / 2) * 97 : 0;
  if (threadIdx.x == 0) {
    const long long c0 = clock64();
    const unsigned long long t0 = globaltimer();
    a.clocks[2 * cta] = c0;
    a.times[2 * cta] = t0;
    for (int k = 0; k < a.steps; ++k) {
      const int s = k % stages;
      if (k >= stages) bar_wait(empty0 + 8 * s, ((k / stages) - 1) & 1, a.hint);
      const uint32_t full = full0 + 8 * s, dst = smem_addr(ring + s * stage_bytes);
      bar_expect(full, stage_bytes);
      int col, row;
      if (!a.pair) {
        for (int b = 0; b < a.boxes; ++b) {
          box_coords(base + k * a.boxes + b, a.box_rows, &col, &row);
          if (a.box_rows == 128) /* a pointer chosen at run time would copy the maps to local memory */
            load_box(dst + b * box_bytes, &map128, col, row, full);
          else
            load_box(dst + b * box_bytes, &map64, col, row, full);
        }
      } else { /* box 0: this CTA's A; boxes 1 and 2: B, box 1 + rank issued here into both CTAs */
        box_coords(base + 3 * k + 1000, 128, &col, &row);
        load_box(dst, &map128, col, row, full);
        box_coords(pair_base + 2 * k + rank, 128, &col, &row);
        load_box_multicast(dst + (1 + rank) * BOX_BYTES, &map128, col, row, full, (uint16_t)3);
      }
    }
  } else if (threadIdx.x == 32) {
    for (int k = 0; k < a.steps; ++k) {
      const int s = k % stages;
      bar_wait(full0 + 8 * s, (k / stages) & 1, a.hint);
      if (a.work) {
        const long long until = clock64() + a.work;
        while (clock64() < until) {
        }
      }
      if (!a.pair) {
        asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(empty0 + 8 * s) : "memory");
      } else {
        bar_arrive_cta(empty0 + 8 * s, 0);
        bar_arrive_cta(empty0 + 8 * s, 1);
      }
    }
    a.clocks[2 * cta + 1] = clock64();
    a.times[2 * cta + 1] = globaltimer();
  }
  if (a.pair) cluster_sync(); /* the peer's arrivals and multicasts must land before this CTA leaves */
}

/* Where a plain (non-cluster) launch of one CTA an SM puts each block: its %smid. */
__global__ void placement(int *sm_of_block) {
  extern __shared__ char raw[];
  unsigned sm;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
  if (threadIdx.x == 0) sm_of_block[blockIdx.x] = (int)sm;
  raw[threadIdx.x] = 0;
}


static int cmp_double(const void *x, const void *y) {
  const double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

struct probe_case {
  int ctas, boxes, box_rows, stages, hint, work, pair, spread;
};

static void run_case(const CUtensorMap *map128, const CUtensorMap *map64, struct probe_case c, long long *clocks,
                     unsigned long long *times) {
  struct probe_args a = {4096, c.boxes, c.box_rows, c.stages, c.hint, c.work, c.pair, c.spread, clocks, times};
  cudaLaunchConfig_t cfg = {};
  cudaLaunchAttribute attr[1];
  cfg.gridDim = dim3(c.ctas);
  cfg.blockDim = dim3(64);
  cfg.dynamicSmemBytes = RING_BYTES + 1024 + 1024;
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = c.pair ? 2 : 1;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  for (int rep = 0; rep < 3; ++rep) { /* the first launch warms the L2; the last is reported */
    CHECK(cudaLaunchKernelEx(&cfg, ingress, *map128, *map64, a));
    CHECK(cudaDeviceSynchronize());
  }
  long long hc[2 * 132];
  unsigned long long ht[2 * 132];
  CHECK(cudaMemcpy(hc, clocks, sizeof(long long) * 2 * c.ctas, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(ht, times, sizeof(unsigned long long) * 2 * c.ctas, cudaMemcpyDeviceToHost));
  double per_clk[132], ghz = 0;
  unsigned long long t_lo = ~0ull, t_hi = 0;
  const double stage_bytes = c.pair ? 3.0 * BOX_BYTES : (double)c.boxes * c.box_rows * 128;
  const double bytes = 4096.0 * stage_bytes;
  for (int i = 0; i < c.ctas; ++i) {
    const double clk = (double)(hc[2 * i + 1] - hc[2 * i]);
    per_clk[i] = bytes / clk;
    ghz += clk / (double)(ht[2 * i + 1] - ht[2 * i]) / c.ctas;
    if (ht[2 * i] < t_lo) t_lo = ht[2 * i];
    if (ht[2 * i + 1] > t_hi) t_hi = ht[2 * i + 1];
  }
  qsort(per_clk, c.ctas, sizeof(double), cmp_double);
  printf("%-7s %-6s ctas %3d stage %2.0f KiB = %d x %2d KiB, %2d stages, %-5s work %4d: per SM median %6.1f B/clk "
         "(%5.0f clk a stage), least %6.1f; all SMs %7.1f B/ns; %.2f GHz\n",
         c.pair ? "pair" : "private", c.spread ? "spread" : "same", c.ctas, stage_bytes / 1024, c.pair ? 3 : c.boxes,
         c.pair ? 16 : c.box_rows / 8, c.stages, c.hint ? "hint" : "spin", c.work, per_clk[c.ctas / 2],
         stage_bytes / per_clk[c.ctas / 2], per_clk[0], bytes * c.ctas / (double)(t_hi - t_lo), ghz);
}

int main(void) {
  void *buf;
  CHECK(cudaMalloc(&buf, (size_t)ROWS * COLS * 2));
  CHECK(cudaMemset(buf, 0x3c, (size_t)ROWS * COLS * 2));
  CUtensorMap map128, map64;
  const cuuint64_t dims[2] = {COLS, ROWS}, strides[1] = {COLS * 2};
  const cuuint32_t box128[2] = {64, 128}, box64[2] = {64, 64}, estr[2] = {1, 1};
  if (cuTensorMapEncodeTiled(&map128, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, buf, dims, strides, box128, estr,
                             CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                             CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS ||
      cuTensorMapEncodeTiled(&map64, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, buf, dims, strides, box64, estr,
                             CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                             CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS) {
    fprintf(stderr, "cuTensorMapEncodeTiled failed\n");
    return 1;
  }
  CHECK(cudaFuncSetAttribute(ingress, cudaFuncAttributeMaxDynamicSharedMemorySize, RING_BYTES + 2048));
  CHECK(cudaFuncSetAttribute(ingress, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  long long *clocks;
  unsigned long long *times;
  CHECK(cudaMalloc(&clocks, sizeof(long long) * 2 * 132));
  CHECK(cudaMalloc(&times, sizeof(unsigned long long) * 2 * 132));
  { /* GPC groups from tools/sm_layout_probe.cu (TPC t = SMs 2t, 2t + 1), L2 sides from l2_side_probe */
    int *sm_of_block, host[132];
    CHECK(cudaMalloc(&sm_of_block, sizeof(int) * 132));
    CHECK(cudaFuncSetAttribute(placement, cudaFuncAttributeMaxDynamicSharedMemorySize, RING_BYTES));
    const int sizes[2] = {128, 132};
    for (int i = 0; i < 2; ++i)
      for (int rep = 0; rep < 2; ++rep) {
        placement<<<sizes[i], 64, RING_BYTES>>>(sm_of_block);
        CHECK(cudaMemcpy(host, sm_of_block, sizeof(int) * sizes[i], cudaMemcpyDeviceToHost));
        printf("placement of %d blocks (block:sm/gpc/side):", sizes[i]);
        for (int b = 0; b < sizes[i]; ++b) {
          const int t = host[b] / 2;
          const int gpc = t < 32 ? t % 8 : t < 60 ? 1 + (t - 32) % 7 : t == 60 ? 6 : t == 61 ? 7 : -1;
          const char side = gpc < 0 ? '?' : (gpc == 0 || gpc == 4 || gpc == 5 || gpc == 6) ? 'a' : 'b';
          printf(" %d:%d/%d%c", b, host[b], gpc, side);
        }
        printf("\n");
      }
    CHECK(cudaFree(sm_of_block));
  }
  /* {ctas, boxes, box_rows, stages, hint, work, pair, spread} */
  const struct probe_case cases[] = {
      {1, 1, 128, 12, 1, 0, 0, 1},   {1, 2, 128, 6, 1, 0, 0, 1},   {1, 3, 128, 4, 1, 0, 0, 1},
      {1, 4, 64, 6, 1, 0, 0, 1},     {1, 1, 128, 12, 0, 0, 0, 1},  {1, 2, 128, 6, 0, 0, 0, 1},
      {1, 3, 128, 4, 0, 0, 0, 1},    {1, 4, 64, 6, 0, 0, 0, 1},    {1, 2, 128, 6, 1, 512, 0, 1},
      {1, 4, 64, 6, 1, 512, 0, 1},   {1, 3, 128, 4, 1, 1024, 0, 1}, {1, 2, 128, 6, 0, 512, 0, 1},
      {1, 4, 64, 6, 0, 512, 0, 1},   {128, 2, 128, 6, 1, 0, 0, 0}, {128, 4, 64, 6, 1, 0, 0, 0},
      {128, 2, 128, 6, 0, 0, 0, 0},  {128, 4, 64, 6, 0, 0, 0, 0},  {128, 2, 128, 6, 1, 512, 0, 0},
      {128, 4, 64, 6, 1, 512, 0, 0}, {128, 2, 128, 6, 1, 0, 0, 1}, {128, 4, 64, 6, 1, 0, 0, 1},
      {132, 3, 128, 4, 1, 0, 0, 1},  {132, 3, 128, 4, 1, 0, 1, 1}, {132, 3, 128, 4, 1, 1024, 1, 1},
      {132, 3, 128, 4, 0, 0, 1, 1},  {2, 3, 128, 4, 1, 0, 1, 1},   {2, 3, 128, 4, 0, 0, 1, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) run_case(&map128, &map64, cases[i], clocks, times);
  CHECK(cudaFree(buf));
  return 0;
}

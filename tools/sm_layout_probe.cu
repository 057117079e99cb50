/* sm_layout_probe.cu — where the hardware puts thread-block clusters, and which SMs share a GPC.
 *
 * The L2 request coalescer merges reads of the same sector only among SMs of one GPC, so which CTAs of
 * a persistent GEMM share a GPC decides how much its raster order can save (docs/HOPPER_GEMM_NOTES.md,
 * session 13). CUDA names neither GPCs nor TPCs, but a cluster is always placed inside one GPC, so the
 * SMs that clusters of 4 or more are placed on together belong to one GPC. This program:
 *   1. prints how many clusters of each even size 2..16 can be resident at once (one CTA an SM: every
 *      CTA asks for the whole 227 KiB of shared memory);
 *   2. launches as many clusters of each even size 4..16 as fit and groups the SMs they land on
 *      (union-find);
 *   3. launches the Hopper GEMM's own shape (66 clusters of 2, 384 threads, 227 KiB) and prints the
 *      SMs and GPC group of each cluster.
 * SMs never placed in a cluster of 4 or more are listed as lone.
 *
 * Not part of the Bazel build (it needs nvcc and a GPU). Build here, run on the GPU host:
 *   nvcc -O2 -arch=sm_90a -o .gpu/sm_layout_probe tools/sm_layout_probe.cu
 *   .gpu/sm_layout_probe
 * On the H200 measured (2026-11-22): TPC t (SMs 2t, 2t + 1) is in GPC t mod 8 for t < 32, in GPC
 * 1 + (t - 32) mod 7 for 32 <= t < 60 (SMs 64-119), SMs 120-123 join two of those GPCs, and SMs 124-131
 * are never placed in a cluster of 4; the GEMM's cluster c runs on SMs 2c - 8 and 2c - 7 (mod 132). */
#include <stdio.h>
#include <stdlib.h>

#define MAX_SMS 256
#define SHARED_BYTES (227 * 1024)

static int g_parent[MAX_SMS];

static int find(int x) {
  while (g_parent[x] != x) x = g_parent[x] = g_parent[g_parent[x]];
  return x;
}

/* Each CTA records its SM and its cluster, then holds the SM long enough for every CTA of the grid to
   be resident at once (so no SM is reused by a later cluster). */
__global__ void place(int *out, long long hold_clocks) {
  extern __shared__ unsigned char shared[];
  unsigned sm, cluster;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
  asm volatile("mov.u32 %0, %%clusterid.x;" : "=r"(cluster));
  if (threadIdx.x == 0) {
    out[2 * blockIdx.x] = (int)sm;
    out[2 * blockIdx.x + 1] = (int)cluster;
    shared[0] = 1;
  }
  const long long start = clock64();
  while (clock64() - start < hold_clocks) {
  }
}

static int check(cudaError_t e, const char *what) {
  if (e != cudaSuccess) fprintf(stderr, "sm_layout_probe: %s: %s\n", what, cudaGetErrorString(e));
  return e == cudaSuccess;
}

/* A launch of `clusters` clusters of `size` CTAs of `threads`, each CTA with SHARED_BYTES of shared
   memory; `attribute` holds the cluster shape and must outlive the configuration. */
static cudaLaunchConfig_t cluster_config(int clusters, int size, int threads, cudaLaunchAttribute *attribute) {
  attribute->id = cudaLaunchAttributeClusterDimension;
  attribute->val.clusterDim.x = size;
  attribute->val.clusterDim.y = 1;
  attribute->val.clusterDim.z = 1;
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(clusters * size, 1, 1);
  config.blockDim = dim3(threads, 1, 1);
  config.dynamicSmemBytes = SHARED_BYTES;
  config.attrs = attribute;
  config.numAttrs = 1;
  return config;
}

/* Launches `clusters` clusters of `size` CTAs of `threads`; out[2 i] = SM of CTA i. 0 on failure. */
static int launch(int *device_out, int *host_out, int clusters, int size, int threads) {
  cudaLaunchAttribute attribute;
  const cudaLaunchConfig_t config = cluster_config(clusters, size, threads, &attribute);
  if (!check(cudaMemset(device_out, 0xff, sizeof(int) * 2 * MAX_SMS), "cudaMemset")) return 0;
  if (!check(cudaLaunchKernelEx(&config, place, device_out, 20000000LL), "cudaLaunchKernelEx")) return 0;
  if (!check(cudaDeviceSynchronize(), "the placement kernel")) return 0;
  return check(cudaMemcpy(host_out, device_out, sizeof(int) * 2 * clusters * size, cudaMemcpyDeviceToHost),
               "cudaMemcpy");
}

/* How many clusters of `size` CTAs of `threads` can be resident at once. */
static int max_clusters(int size, int threads) {
  cudaLaunchAttribute attribute;
  const cudaLaunchConfig_t config = cluster_config(1, size, threads, &attribute);
  int count = 0;
  return check(cudaOccupancyMaxActiveClusters(&count, place, &config), "cudaOccupancyMaxActiveClusters") ? count : 0;
}

int main(void) {
  int sms = 0;
  if (!check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "cudaDeviceGetAttribute")) return 1;
  if (sms > MAX_SMS) sms = MAX_SMS;
  if (!check(cudaFuncSetAttribute(place, cudaFuncAttributeMaxDynamicSharedMemorySize, SHARED_BYTES), "shared memory") ||
      !check(cudaFuncSetAttribute(place, cudaFuncAttributeNonPortableClusterSizeAllowed, 1), "cluster size 16"))
    return 1;
  int *device_out = NULL;
  if (!check(cudaMalloc((void **)&device_out, sizeof(int) * 2 * MAX_SMS), "cudaMalloc")) return 1;
  static int host_out[2 * MAX_SMS];
  for (int i = 0; i < MAX_SMS; ++i) g_parent[i] = i;

  printf("%d SMs\nresident clusters (one 227 KiB CTA an SM):", sms);
  for (int size = 2; size <= 16; size += 2) printf(" %d x %d", max_clusters(size, 128), size);
  printf("\n");

  /* 2. GPC groups from clusters of 4 to 16 (sizes that leave an odd number of TPCs free place differently) */
  for (int size = 4; size <= 16; size += 2) {
    const int clusters = max_clusters(size, 128);
    if (clusters == 0 || !launch(device_out, host_out, clusters, size, 128)) continue;
    for (int c = 0; c < clusters; ++c)
      for (int r = 1; r < size; ++r) {
        const int a = host_out[2 * (c * size)], b = host_out[2 * (c * size + r)];
        if (a >= 0 && a < sms && b >= 0 && b < sms) g_parent[find(b)] = find(a);
      }
  }
  int group_of[MAX_SMS], groups = 0;
  for (int i = 0; i < sms; ++i) group_of[i] = -1;
  for (int i = 0; i < sms; ++i) {
    const int root = find(i);
    int members = 0;
    for (int j = 0; j < sms; ++j) members += find(j) == root;
    if (members <= 2) continue; /* lone: never in a cluster of 4 or more */
    if (group_of[root] < 0) group_of[root] = groups++;
    group_of[i] = group_of[root];
  }
  printf("%d GPC groups (SMs placed together in clusters of 4 to 16):\n", groups);
  for (int g = 0; g < groups; ++g) {
    printf("  G%d:", g);
    for (int i = 0; i < sms; ++i)
      if (group_of[i] == g) printf(" %d", i);
    printf("\n");
  }
  printf("  lone:");
  for (int i = 0; i < sms; ++i)
    if (group_of[i] < 0) printf(" %d", i);
  printf("\n");

  /* 3. the Hopper GEMM's launch shape */
  const int pairs = max_clusters(2, 384);
  if (pairs > 0 && launch(device_out, host_out, pairs, 2, 384)) {
    printf("clusters of 2 x 384 threads (the Hopper GEMM's shape): cluster -> SMs (GPC group)\n");
    for (int c = 0; c < pairs; ++c) {
      const int a = host_out[4 * c], b = host_out[4 * c + 2];
      const int g = a >= 0 && a < sms ? group_of[a] : -1;
      char where[16];
      snprintf(where, sizeof where, g < 0 ? "lone" : "G%d", g);
      printf("  %2d -> %3d %3d (%s)%s", c, a, b, where, c % 6 == 5 ? "\n" : "");
    }
    printf("\n");
  }
  cudaFree(device_out);
  return 0;
}

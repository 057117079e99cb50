/* wgmma_power_probe.cu — how fast the H200 runs wgmma under its power cap, for different ways of
 * issuing the same products (docs/HOPPER_GEMM_NOTES.md, session 14).
 *
 * The Hopper GEMM's main loop takes the same clocks per K block as cuBLAS's, but under the 700 W cap the
 * SM clock settles 2-4% lower while it runs, so it spends more energy a product. cuBLAS's kernel issues
 * its products with the operand roles swapped (our A rows as wgmma's B operand, two m64n128 halves a
 * warpgroup). This probe takes loads, the L2 and the epilogue out of the picture: every SM runs one CTA
 * of two warpgroups, each looping over a 4-stage ring of random bf16 tiles already in shared memory
 * (a 128 x 64 A box and a 256 x 64 B box a stage, 128-byte swizzle descriptors as in the GEMM), and
 * issues one K block of a 128 x 256 tile a stage in one of these forms:
 *   0 "ours":      each warpgroup m64n256k16 x 4: its 64 A rows as wgmma's A, all 256 B rows as B
 *   1 "swapped":   each warpgroup 2 x m64n128k16 x 4: 64-row slices of its 128 B rows as wgmma's A,
 *                  all 128 A rows as B (cuBLAS's roles)
 *   2 "halves":    each warpgroup 2 x m64n128k16 x 4 with our roles (its A rows, 128 B rows a half)
 *   3 "ours, zero data": form 0 on all-zero tiles (how much of the power is the data's)
 *   4, 5: forms 0 and 3 without the wait for the previous K block's products (one wait at the end)
 *   6, 7: form 0 with warpgroup 1 one / two stages ahead of warpgroup 0, so the two feed the tensor cores
 *         different B tiles at the same time (does keeping the consumers in step save energy?)
 *   8 "ours, A from registers": form 0 with each warpgroup's A rows loaded by ldmatrix into registers (two
 *         fragment sets, alternate K blocks) and wgmma's register-A form (does m64n256 from shared memory
 *         read A more than once?)
 *   9 "narrow": the GEMM's narrow tile (128 x 128), each warpgroup one group of 4 x m64n128k16 a K block
 *         (its 64 A rows, B rows [0, 128)), waiting for the previous K block's group as the GEMM does; half
 *         the products of a K block of the other forms (the TFLOP/s count them)
 *  10 "narrow, no waits": form 9 with one wait at the end
 * The tiles hold random bf16 of magnitude [1, 2) with random signs, or, with the `uniform` argument, values
 * uniform in [-1, 1) like the benchmarks' inputs (varied exponents). Each form runs for a few seconds of
 * back-to-back launches, in alternating rounds, after a second of settling; a host thread samples NVML's SM
 * clock and power every 5 ms. It prints, per form and round: TFLOP/s (2 flops a MAC), NVML's mean SM
 * clock, the SM clock the last launch ran at (its CTAs' clock64 over %globaltimer), NVML's mean power,
 * joules a PFLOP from the board's energy counter (it steps every ~100 ms: a few percent), and flops a
 * clock an SM (against the clock64 clock; 4096 is the dense peak).
 * Measured on the H200 (2026-11-22, 3 s runs): form 0 883-885 TFLOP/s, 1 871-875, 2 876-878, 3 930-947,
 * 4 as 0; all forms 4069-4140 flops a clock an SM (the tensor cores at their peak per clock); random
 * data draws 688-690 W (the cap), zeros 272-289 W. NVML's clock reads 9-12% above clock64's rate against
 * %globaltimer. Session 15 (2026-11-22): forms 6 and 7 882-887 against form 0's 886-888 (no effect);
 * uniform data: form 0 849-853, 1 841-842, 2 844-845 (ours still the cheapest, by 1.3%). Session 17
 * (2026-11-22): form 8 872.1-872.4 against form 0's 872.9-873.6, uniform data 853.2-854.1 against
 * 853.6-854.5 (no difference: A from shared memory costs no more than A from registers). Session 23
 * (2026-11-22, 2 s runs): form 9 863.9-867.0 TFLOP/s, 4068-4092 flops a clock an SM, form 10 the same, against
 * form 0's 876.9-880.7 (the narrow tile's products run at the tensor cores' peak per clock).
 *
 * Not part of the Bazel build (it needs nvcc and a GPU). Build here, run on the GPU host:
 *   nvcc -O3 -gencode=arch=compute_90a,code=sm_90a -o .gpu/wgmma_power_probe tools/wgmma_power_probe.cu \
 *       -ldl -lpthread
 *   .gpu/wgmma_power_probe [seconds a run, default 3] [rounds, default 3] [forms, e.g. 0,6,8; default all]
 *       [uniform] */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "cuda_check.h"

#define STAGES 4
#define A_BYTES (128 * 128)     /* 128 rows x 64 bf16 */
#define B_BYTES (256 * 128)     /* 256 rows x 64 bf16 */
#define STAGE_BYTES (A_BYTES + B_BYTES)
#define SMEM_BYTES (STAGES * STAGE_BYTES + 1024)
#define FORMS 11

static const char *const g_form_names[FORMS] = {"ours m64n256",           "swapped 2xm64n128",
                                                 "ours 2xm64n128",         "ours m64n256, zero data",
                                                 "ours m64n256, no waits", "ours, zero, no waits",
                                                 "ours, WG1 1 stage ahead", "ours, WG1 2 stages ahead",
                                                 "ours, A from registers", "narrow 4xm64n128",
                                                 "narrow, no waits"};
/* products a K block of each form, against the 128 x 256 x 64 of forms 0-8 */
static const double g_form_share[FORMS] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0.5, 0.5};


__device__ __forceinline__ uint64_t desc(uint32_t address) {
  /* K-major, 128B swizzle: leading offset 16 bytes (unused), stride 1024 bytes between 8-row atoms */
  return (uint64_t)((address & 0x3ffff) >> 4) | (uint64_t)1 << 16 | (uint64_t)(1024 >> 4) << 32 | 1ull << 62;
}

#define O8(d, i)                                                                                   \
  "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), \
      "+f"(d[i + 7])
#define O64(d) O8(d, 0), O8(d, 8), O8(d, 16), O8(d, 24), O8(d, 32), O8(d, 40), O8(d, 48), O8(d, 56)
#define O128(d) O64(d), O8(d, 64), O8(d, 72), O8(d, 80), O8(d, 88), O8(d, 96), O8(d, 104), O8(d, 112), O8(d, 120)

#define L64                                                                                              \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, " \
  "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, " \
  "%42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, " \
  "%62, %63"
#define L128                                                                                             \
  L64 ", %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, "     \
      "%82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, " \
      "%101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, "  \
      "%117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"

__device__ __forceinline__ void mma_n256(float (&d)[128], uint64_t a, uint64_t b) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {" L128 "}, %128, %129, p, 1, 1, 0, 0;\n}\n"
               : O128(d)
               : "l"(a), "l"(b));
}
__device__ __forceinline__ void mma_n128(float (&d)[64], uint64_t a, uint64_t b) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {" L64 "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
               : O64(d)
               : "l"(a), "l"(b));
}
/* m64n256k16 with A from registers (4 words a thread: rows g and g + 8 of the warp's 16, K pairs 2t and 2t + 8). */
__device__ __forceinline__ void mma_n256_rs(float (&d)[128], const uint32_t (&a)[4], uint64_t b) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {" L128 "}, {%128, %129, %130, %131}, %132, p, "
               "1, 1, 0;\n}\n"
               : O128(d)
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
}
/* The A fragment of K step s (16 columns) of this warp's 16 rows of a 128B-swizzled K-major box at `a`. */
__device__ __forceinline__ void load_a_fragment(uint32_t (&f)[4], uint32_t a, int row0, int s) {
  const int lane = threadIdx.x % 32, j = lane / 8, r = row0 + (j & 1) * 8 + lane % 8, chunk = 2 * s + (j >> 1);
  const uint32_t address = a + r * 128 + ((chunk ^ (r & 7)) << 4);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(f[0]), "=r"(f[1]), "=r"(f[2]), "=r"(f[3])
               : "r"(address));
}
__device__ __forceinline__ void fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wait1() { asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory"); }
__device__ __forceinline__ void wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }

template <int FORM>
__global__ void __launch_bounds__(256, 1)
    probe(int k_blocks, uint32_t seed, int uniform, float *out, long long *times) {
  extern __shared__ unsigned char smem_raw[];
  unsigned char *smem = (unsigned char *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
  /* random bf16 of magnitude [1, 2) and random sign, uniform in [-1, 1) (truncated to bf16), or zeros: an
     xorshift per word */
  for (int i = threadIdx.x; i < STAGES * STAGE_BYTES / 4; i += blockDim.x) {
    uint32_t x = seed ^ (i * 2654435761u) ^ (blockIdx.x * 40503u);
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    uint32_t lo = 0x3f80u | (x & 0x007fu), hi = 0x3f80u | (x >> 16 & 0x007fu); /* [1, 2) */
    lo |= x & 0x8000u, hi |= x >> 16 & 0x8000u;                                   /* random sign */
    if (uniform) {
      uint32_t y = x * 2654435761u + 12345u;
      y ^= y >> 15, y *= 2246822519u, y ^= y >> 13;
      const float f0 = (float)((x & 0xffffffu) * (1.0 / 8388608.0) - 1.0);
      const float f1 = (float)((y & 0xffffffu) * (1.0 / 8388608.0) - 1.0);
      lo = __float_as_uint(f0) >> 16, hi = __float_as_uint(f1) >> 16;
    }
    ((uint32_t *)smem)[i] = FORM == 3 || FORM == 5 ? 0u : (lo | hi << 16);
  }
  __syncthreads();
  long long c0 = clock64(), t0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  const int wg = threadIdx.x / 128;
  const uint32_t base = (uint32_t)__cvta_generic_to_shared(smem);
  /* forms 0 and 3-8 use acc, 1 and 2 acc0 and acc1 (the compiler drops the unused ones) */
  float acc[128], acc0[64], acc1[64];
#pragma unroll
  for (int i = 0; i < 128; ++i) acc[i] = 0.f;
#pragma unroll
  for (int i = 0; i < 64; ++i) acc0[i] = acc1[i] = 0.f;
  for (int kb = 0; kb < k_blocks; ++kb) {
    const int ahead = FORM == 6 ? wg : FORM == 7 ? 2 * wg : 0; /* stages warpgroup wg runs ahead */
    const uint32_t stage = base + ((kb + ahead) % STAGES) * STAGE_BYTES, a = stage, b = stage + A_BYTES;
    fence();
    if (FORM == 8) {
      /* A fragments by ldmatrix, two sets so a K block's loads never overwrite the registers the previous
         K block's products (still in flight) read: two K blocks an iteration */
      uint32_t f0[4][4], f1[4][4];
      const int row0 = wg * 64 + (threadIdx.x / 32) % 4 * 16;
#pragma unroll
      for (int s = 0; s < 4; ++s) load_a_fragment(f0[s], a, row0, s);
      fence();
#pragma unroll
      for (int s = 0; s < 4; ++s) mma_n256_rs(acc, f0[s], desc(b + 32 * s));
      commit();
      wait1();
      ++kb;
      const uint32_t stage1 = base + (kb % STAGES) * STAGE_BYTES;
#pragma unroll
      for (int s = 0; s < 4; ++s) load_a_fragment(f1[s], stage1, row0, s);
      fence();
#pragma unroll
      for (int s = 0; s < 4; ++s) mma_n256_rs(acc, f1[s], desc(stage1 + A_BYTES + 32 * s));
      commit();
    } else if (FORM == 0 || (FORM >= 3 && FORM < 8)) {
#pragma unroll
      for (int s = 0; s < 4; ++s) mma_n256(acc, desc(a + wg * 64 * 128 + 32 * s), desc(b + 32 * s));
      commit();
    } else if (FORM >= 9) {
      /* the GEMM's narrow tile (128 x 128): each warpgroup its 64 A rows against B rows [0, 128), one
         group a K block (form 10: without the wait a K block) */
#pragma unroll
      for (int s = 0; s < 4; ++s) mma_n128(acc0, desc(a + wg * 64 * 128 + 32 * s), desc(b + 32 * s));
      commit();
    } else if (FORM == 1) {
      /* wgmma's A: our B rows [128 wg + 64 h, +64); wgmma's B: all 128 A rows */
#pragma unroll
      for (int h = 0; h < 2; ++h) {
#pragma unroll
        for (int s = 0; s < 4; ++s)
          mma_n128(h ? acc1 : acc0, desc(b + (128 * wg + 64 * h) * 128 + 32 * s), desc(a + 32 * s));
        commit();
      }
    } else {
      /* our roles in halves: wgmma's A: our A rows [64 wg, +64); wgmma's B: B rows [128 h, +128) */
#pragma unroll
      for (int h = 0; h < 2; ++h) {
#pragma unroll
        for (int s = 0; s < 4; ++s)
          mma_n128(h ? acc1 : acc0, desc(a + wg * 64 * 128 + 32 * s), desc(b + 128 * h * 128 + 32 * s));
        commit();
      }
    }
    if ((FORM < 4 || FORM >= 6) && FORM != 10) wait1();
  }
  wait0();
  long long c1 = clock64(), t1;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t1));
  if (threadIdx.x == 0) times[2 * blockIdx.x] = c1 - c0, times[2 * blockIdx.x + 1] = t1 - t0;
  float sum = 0.f;
#pragma unroll
  for (int i = 0; i < 128; ++i)
    sum += FORM >= 9 ? (i < 64 ? acc0[i] : 0.f) : FORM == 0 || FORM >= 3 ? acc[i] : i < 64 ? acc0[i] : acc1[i - 64];
  if (sum == 12345.678f) out[threadIdx.x] = sum; /* keeps the products alive */
}

typedef int (*nvml_init_fn)(void);
typedef int (*nvml_handle_fn)(unsigned, void **);
typedef int (*nvml_u32_fn)(void *, unsigned *);
typedef int (*nvml_clock_fn)(void *, int, unsigned *);
typedef int (*nvml_u64_fn)(void *, unsigned long long *);

static struct {
  void *dev;
  nvml_clock_fn clock;
  nvml_u32_fn power;
  nvml_u64_fn energy;
  volatile int run, sampling;
  double clock_sum, power_sum;
  long samples;
} g_nvml;

static void *sampler(void *arg) {
  (void)arg;
  while (g_nvml.run) {
    if (g_nvml.sampling) {
      unsigned mhz = 0, mw = 0;
      if (g_nvml.clock(g_nvml.dev, 1 /* NVML_CLOCK_SM */, &mhz) == 0 && g_nvml.power(g_nvml.dev, &mw) == 0) {
        g_nvml.clock_sum += mhz, g_nvml.power_sum += mw / 1000.0;
        ++g_nvml.samples;
      }
    }
    usleep(5000);
  }
  return NULL;
}

static void (*const g_kernels[FORMS])(int, uint32_t, int, float *, long long *) = {
    probe<0>, probe<1>, probe<2>, probe<3>, probe<4>, probe<5>, probe<6>, probe<7>, probe<8>,
    probe<9>, probe<10>};
static int g_uniform;

static void launch(int form, int sms, int k_blocks, uint32_t seed, float *out, long long *times) {
  g_kernels[form]<<<sms, 256, SMEM_BYTES>>>(k_blocks, seed, g_uniform, out, times);
}

/* Whether form f is in the comma-separated list (NULL: every form). */
static int selected(const char *list, int f) {
  if (!list) return 1;
  for (const char *q = list; *q;) {
    char *end;
    if (strtol(q, &end, 10) == f && end != q) return 1;
    q = *end ? end + 1 : end;
  }
  return 0;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv) {
  const double seconds = argc > 1 ? atof(argv[1]) : 3.0;
  const int rounds = argc > 2 ? atoi(argv[2]) : 3;
  const char *forms = argc > 3 && strcmp(argv[3], "all") != 0 ? argv[3] : NULL;
  g_uniform = argc > 4 && strcmp(argv[4], "uniform") == 0;
  void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW);
  if (!lib) {
    fprintf(stderr, "libnvidia-ml.so.1 not found\n");
    return 1;
  }
  nvml_init_fn init = (nvml_init_fn)dlsym(lib, "nvmlInit_v2");
  nvml_handle_fn handle = (nvml_handle_fn)dlsym(lib, "nvmlDeviceGetHandleByIndex_v2");
  g_nvml.clock = (nvml_clock_fn)dlsym(lib, "nvmlDeviceGetClockInfo");
  g_nvml.power = (nvml_u32_fn)dlsym(lib, "nvmlDeviceGetPowerUsage");
  g_nvml.energy = (nvml_u64_fn)dlsym(lib, "nvmlDeviceGetTotalEnergyConsumption");
  if (!init || !handle || !g_nvml.clock || !g_nvml.power || init() != 0 || handle(0, &g_nvml.dev) != 0) {
    fprintf(stderr, "NVML unusable\n");
    return 1;
  }
  int sms = 0;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  for (int f = 0; f < FORMS; ++f)
    CHECK(cudaFuncSetAttribute(g_kernels[f], cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_BYTES));
  long long *times, host_times[2 * 1024];
  CHECK(cudaMalloc(&times, sizeof host_times));
  float *out;
  CHECK(cudaMalloc(&out, 1024 * sizeof(float)));
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  const int k_blocks = 16384; /* a launch: 132 x 16384 K blocks of 128 x 256 x 64, ~20 ms */
  const double flops_launch = 2.0 * sms * (double)k_blocks * 128 * 256 * 64;
  /* calibrate: one launch of each form */
  for (int f = 0; f < FORMS; ++f)
    if (selected(forms, f)) launch(f, sms, k_blocks, 1u, out, times);
  CHECK(cudaDeviceSynchronize());
  pthread_t thread;
  g_nvml.run = 1;
  pthread_create(&thread, NULL, sampler, NULL);
  printf("%-26s %5s %9s %8s %8s %8s %8s %12s\n", "form", "round", "TFLOP/s", "MHz", "SM MHz", "W", "J/PF",
         "flop/clk/SM");
  for (int r = 0; r < rounds; ++r)
    for (int f = 0; f < FORMS; ++f) {
      if (!selected(forms, f)) continue;
      /* 1 s of settling at this form's power, not measured */
      for (double t0 = now(); now() - t0 < 1.0;) {
        launch(f, sms, k_blocks, 7u + r, out, times);
        CHECK(cudaDeviceSynchronize());
      }
      unsigned long long mj0 = 0, mj1 = 0;
      if (g_nvml.energy) g_nvml.energy(g_nvml.dev, &mj0);
      g_nvml.clock_sum = g_nvml.power_sum = 0, g_nvml.samples = 0;
      g_nvml.sampling = 1;
      int launches = 0;
      CHECK(cudaEventRecord(e0));
      for (double t0 = now(); now() - t0 < seconds;) {
        for (int i = 0; i < 8; ++i, ++launches) launch(f, sms, k_blocks, 7u + r, out, times);
        CHECK(cudaEventRecord(e1));
        CHECK(cudaEventSynchronize(e1));
      }
      g_nvml.sampling = 0;
      if (g_nvml.energy) g_nvml.energy(g_nvml.dev, &mj1);
      /* the last launch's clock, from each CTA's clock64 and globaltimer */
      CHECK(cudaMemcpy(host_times, times, 2 * sms * sizeof(long long), cudaMemcpyDeviceToHost));
      double clocks = 0, ns = 0;
      for (int i = 0; i < sms; ++i) clocks += host_times[2 * i], ns += host_times[2 * i + 1];
      const double sm_mhz = clocks / ns * 1e3;
      float ms = 0;
      CHECK(cudaEventElapsedTime(&ms, e0, e1));
      const double tflops = g_form_share[f] * flops_launch * launches / (ms * 1e-3) / 1e12;
      const double mhz = g_nvml.samples ? g_nvml.clock_sum / g_nvml.samples : 0;
      const double watts = g_nvml.samples ? g_nvml.power_sum / g_nvml.samples : 0;
      const double joules_pf = (mj1 - mj0) * 1e-3 / (g_form_share[f] * flops_launch * launches / 1e15);
      printf("%-26s %5d %9.1f %8.0f %8.0f %8.1f %8.1f %12.0f\n", g_form_names[f], r, tflops, mhz, sm_mhz, watts,
             joules_pf, tflops * 1e12 / (sm_mhz * 1e6) / sms);
      fflush(stdout);
    }
  g_nvml.run = 0;
  pthread_join(thread, NULL);
  CHECK(cudaGetLastError());
  return 0;
}

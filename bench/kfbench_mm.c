/* kfbench_mm.c — device-timed GEMM and attention of kfuse beside their peers in the same run:
 *   GEMM on CUDA devices beside cuBLAS (libcublas opened with dlopen, on the CUDA primary context the
 *   library also uses), on the CPU backend beside OpenBLAS (libopenblas opened with dlopen), and on
 *   OpenCL / Vulkan devices against the cuBLAS figure of the same hardware measured in this run;
 *   attention in TFLOP/s (4·b·h·q·kv·d, halved for causal) and decode in GB/s of K+V read.
 * Each case: inputs random, 2 rotated input sets, warm-up (>= 0.3 s of device work on GPUs), then the
 * median of 20 timed batches of 8 launches on GPUs (kf_timer_begin/end; CUDA events for cuBLAS, which
 * gets the same random inputs, warm-up and batches: the H200 is power-limited under sustained GEMMs,
 * so inputs and warm-up change the clock both are timed at).
 *
 *   kfbench_mm [--backend=LIST] [--op=gemm,attention] [--quick] [--json=FILE]
 *
 * KF_CUDA_FORCE_GENERIC=1 in the environment times the generic (mma.sync) CUDA GEMM instead of the
 * Hopper one; run both to compare. The figures go to docs/BENCHMARKS.md. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/kfuse.h"

#define TIMED_RUNS 20
#define WARM_MS 300.0
/* GPU launches per timed sample (kfuse and cuBLAS alike). */
#define BATCH 8

typedef struct gemm_shape {
  int64_t m, n, k;
  kf_dtype dtype;
  const char *note;
} gemm_shape;

/* Transformer shapes: square sizes, the Llama-3-8B MLP (4096 -> 14336 and back), a 16k-token prefill,
 * a small batch, and decode (1 and 16 tokens). B is an nn.Linear weight [N, K] (transpose_b). */
static const gemm_shape kGpuGemm[] = {
    {4096, 4096, 4096, KF_BF16, "square"},
    {8192, 8192, 8192, KF_BF16, "square"},
    {4096, 14336, 4096, KF_BF16, "mlp up"},
    {4096, 4096, 14336, KF_BF16, "mlp down"},
    {16384, 4096, 4096, KF_BF16, "prefill"},
    {512, 4096, 4096, KF_BF16, "small batch"},
    {1, 4096, 4096, KF_BF16, "decode"},
    {16, 14336, 4096, KF_BF16, "decode mlp"},
    {4096, 4096, 4096, KF_F16, "square"},
    {4096, 4096, 4096, KF_F32, "square (exact f32)"},
    {8192, 8192, 8192, KF_F8_E4M3, "square"},
    {4096, 4096, 4096, KF_F8_E4M3, "square"},
};
static const gemm_shape kHostGemm[] = {{1024, 1024, 1024, KF_F32, "square"}, {512, 512, 512, KF_F32, "square"},
                                       {1024, 1024, 1024, KF_BF16, "square"}};

typedef struct attn_shape {
  int64_t batch, q_len, kv_len;
  int32_t q_heads, kv_heads, head_dim;
  int causal;
  kf_dtype dtype;
  const char *note;
} attn_shape;

/* f16 rows: Vulkan takes f16 prefill to its cooperative-matrix shader (bf16 has none there). */
static const attn_shape kGpuAttn[] = {
    {8, 4096, 4096, 16, 16, 128, 0, KF_BF16, "prefill"},
    {8, 4096, 4096, 16, 16, 128, 1, KF_BF16, "prefill causal"},
    {8, 4096, 4096, 32, 8, 64, 1, KF_BF16, "prefill causal gqa d64"},
    {8, 1, 8192, 32, 8, 128, 1, KF_BF16, "decode"},
    {8, 16, 8192, 32, 8, 128, 1, KF_BF16, "decode 16"},
    {8, 4096, 4096, 16, 16, 128, 0, KF_F16, "prefill"},
    {8, 4096, 4096, 16, 16, 128, 1, KF_F16, "prefill causal"},
};
static const attn_shape kHostAttn[] = {{1, 512, 512, 8, 8, 128, 1, KF_BF16, "prefill causal"},
                                       {1, 1, 4096, 32, 8, 128, 1, KF_BF16, "decode"}};

/* ---- small helpers ---- */
/* A failure inside one device's benchmarks abandons that device (what it allocated is left behind)
 * and goes on with the next, so one broken backend does not hide the figures of the others; the exit
 * status still says that something failed. Outside a device's benchmarks it ends the run. */
static jmp_buf g_device_failed;
static bool g_in_device = false;
static int g_failures = 0;

static void die(const char *what, kf_status status) {
  fprintf(stderr, "kfbench_mm: %s failed: %s: %s\n", what, kf_status_name(status), kf_last_error());
  ++g_failures;
  if (g_in_device) longjmp(g_device_failed, 1);
  exit(1);
}
#define CHECK(call)                             \
  do {                                          \
    kf_status s_ = (call);                      \
    if (s_ != KF_OK) die(#call, s_);            \
  } while (0)

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, compare_doubles);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static uint64_t g_rng = 0x2545F4914F6CDD1Dull;
static float random_unit(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (float)((double)(g_rng >> 11) * 0x1p-53 * 2.0 - 1.0);
}

/* Random values in [-1, 1) (scaled), written through the host. */
static kf_tensor *random_tensor(kf_context *ctx, kf_dtype dtype, int32_t ndim, const int64_t *shape, float scale) {
  kf_tensor *t = NULL;
  CHECK(kf_tensor_create(ctx, dtype, ndim, shape, &t));
  size_t n = (size_t)kf_tensor_numel(t);
  float *f = malloc(n * sizeof(float));
  void *bytes = malloc(n * kf_dtype_size(dtype) + 1);
  if (!f || !bytes) die("malloc", KF_ERROR_OUT_OF_MEMORY);
  for (size_t i = 0; i < n; ++i) f[i] = random_unit() * scale;
  CHECK(kf_convert(f, KF_F32, bytes, dtype, n));
  CHECK(kf_tensor_write(t, bytes, n * kf_dtype_size(dtype)));
  free(f);
  free(bytes);
  return t;
}

/* ---- cuBLAS (dlopen) on the CUDA primary context ---- */
typedef int (*cublas_create_fn)(void **);
typedef int (*cublas_gemm_ex_fn)(void *, int, int, int, int, int, const void *, const void *, int, int, const void *,
                                 int, int, const void *, void *, int, int, int, int);
typedef int (*cu_init_fn)(unsigned);
typedef int (*cu_device_get_fn)(int *, int);
typedef int (*cu_primary_retain_fn)(void **, int);
typedef int (*cu_ctx_set_fn)(void *);
typedef int (*cu_mem_alloc_fn)(unsigned long long *, size_t);
typedef int (*cu_mem_free_fn)(unsigned long long);
typedef int (*cu_memcpy_htod_fn)(unsigned long long, const void *, size_t);
typedef int (*cu_event_create_fn)(void **, unsigned);
typedef int (*cu_event_record_fn)(void *, void *);
typedef int (*cu_event_sync_fn)(void *);
typedef int (*cu_event_elapsed_fn)(float *, void *, void *);
typedef int (*cu_sync_fn)(void);

static struct {
  bool ready;
  char why[256];
  void *handle;
  cublas_gemm_ex_fn gemm_ex;
  cu_mem_alloc_fn mem_alloc;
  cu_mem_free_fn mem_free;
  cu_memcpy_htod_fn memcpy_htod;
  cu_event_create_fn event_create;
  cu_event_record_fn event_record;
  cu_event_sync_fn event_sync;
  cu_event_elapsed_fn event_elapsed;
  cu_sync_fn ctx_sync;
  char library[256];
} g_cublas;

static void *open_first(const char *const *names, char *opened, size_t size) {
  for (int i = 0; names[i]; ++i) {
    void *h = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL);
    if (h) {
      snprintf(opened, size, "%s", names[i]);
      return h;
    }
  }
  return NULL;
}

static bool cublas_init(void) {
  static bool tried;
  if (tried) return g_cublas.ready;
  tried = true;
  static const char *const cuda_names[] = {"libcuda.so.1", NULL};
  static const char *const cublas_names[] = {"libcublas.so", "libcublas.so.13", "libcublas.so.12",
                                             "/usr/local/cuda/lib64/libcublas.so", NULL};
  char ignored[256];
  void *cuda = open_first(cuda_names, ignored, sizeof ignored);
  const char *env = getenv("KF_BENCH_CUBLAS");
  void *cublas = env ? dlopen(env, RTLD_NOW | RTLD_GLOBAL) : NULL;
  if (cublas) snprintf(g_cublas.library, sizeof g_cublas.library, "%s", env);
  else cublas = open_first(cublas_names, g_cublas.library, sizeof g_cublas.library);
  if (!cuda || !cublas) {
    snprintf(g_cublas.why, sizeof g_cublas.why, "%s not found (set KF_BENCH_CUBLAS to its path)",
             cuda ? "libcublas.so" : "libcuda.so.1");
    return false;
  }
  cu_init_fn cu_init = (cu_init_fn)dlsym(cuda, "cuInit");
  cu_device_get_fn device_get = (cu_device_get_fn)dlsym(cuda, "cuDeviceGet");
  cu_primary_retain_fn retain = (cu_primary_retain_fn)dlsym(cuda, "cuDevicePrimaryCtxRetain");
  cu_ctx_set_fn ctx_set = (cu_ctx_set_fn)dlsym(cuda, "cuCtxSetCurrent");
  g_cublas.mem_alloc = (cu_mem_alloc_fn)dlsym(cuda, "cuMemAlloc_v2");
  g_cublas.mem_free = (cu_mem_free_fn)dlsym(cuda, "cuMemFree_v2");
  g_cublas.memcpy_htod = (cu_memcpy_htod_fn)dlsym(cuda, "cuMemcpyHtoD_v2");
  g_cublas.event_create = (cu_event_create_fn)dlsym(cuda, "cuEventCreate");
  g_cublas.event_record = (cu_event_record_fn)dlsym(cuda, "cuEventRecord");
  g_cublas.event_sync = (cu_event_sync_fn)dlsym(cuda, "cuEventSynchronize");
  g_cublas.event_elapsed = (cu_event_elapsed_fn)dlsym(cuda, "cuEventElapsedTime");
  g_cublas.ctx_sync = (cu_sync_fn)dlsym(cuda, "cuCtxSynchronize");
  cublas_create_fn create = (cublas_create_fn)dlsym(cublas, "cublasCreate_v2");
  g_cublas.gemm_ex = (cublas_gemm_ex_fn)dlsym(cublas, "cublasGemmEx");
  void *ctx = NULL;
  int device = 0;
  if (!cu_init || !device_get || !retain || !ctx_set || !create || !g_cublas.gemm_ex || !g_cublas.mem_alloc || !g_cublas.memcpy_htod ||
      cu_init(0) != 0 || device_get(&device, 0) != 0 || retain(&ctx, device) != 0 || ctx_set(ctx) != 0 ||
      create(&g_cublas.handle) != 0) {
    snprintf(g_cublas.why, sizeof g_cublas.why, "cuBLAS / CUDA initialisation failed");
    return false;
  }
  g_cublas.ready = true;
  return true;
}

enum { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14, CUBLAS_COMPUTE_32F = 68, CUBLAS_GEMM_DEFAULT = -1 };

/* Random values in [-1, 1) of `dtype` written to device memory, as random_tensor does for kfuse. */
static bool cublas_random(unsigned long long dst, size_t n, kf_dtype dtype) {
  float *f = malloc(n * sizeof(float));
  void *bytes = malloc(n * kf_dtype_size(dtype) + 1);
  bool ok = f && bytes;
  if (ok) {
    for (size_t i = 0; i < n; ++i) f[i] = random_unit();
    ok = kf_convert(f, KF_F32, bytes, dtype, n) == KF_OK && g_cublas.memcpy_htod(dst, bytes, n * kf_dtype_size(dtype)) == 0;
  }
  free(f);
  free(bytes);
  return ok;
}

/* cuBLAS TFLOP/s of C[M,N] = A[M,K] B[N,K]ᵀ (row-major), i.e. column-major Cᵀ = B Aᵀ: op(B)=T, op(A)=N.
 * Timed exactly as kfuse is (time_ms): random inputs of the same distribution (constant inputs draw
 * less power, and under sustained load the H200's clock is power-limited: a helper measured cuBLAS
 * 10% faster on memset inputs), two rotated sets, >= WARM_MS of back-to-back launches, then the median
 * of TIMED_RUNS batches of BATCH launches between two events. */
static double cublas_tflops(const gemm_shape *s) {
  if (!cublas_init()) return 0.0;
  int type = s->dtype == KF_F32 ? CUDA_R_32F : s->dtype == KF_F16 ? CUDA_R_16F : CUDA_R_16BF;
  size_t elem = s->dtype == KF_F32 ? 4 : 2;
  unsigned long long a[2] = {0}, b[2] = {0}, c[2] = {0};
  bool ok = true;
  for (int i = 0; i < 2 && ok; ++i)
    ok = g_cublas.mem_alloc(&a[i], (size_t)(s->m * s->k) * elem) == 0 &&
         g_cublas.mem_alloc(&b[i], (size_t)(s->n * s->k) * elem) == 0 &&
         g_cublas.mem_alloc(&c[i], (size_t)(s->m * s->n) * elem) == 0 &&
         cublas_random(a[i], (size_t)(s->m * s->k), s->dtype) && cublas_random(b[i], (size_t)(s->n * s->k), s->dtype);
  const float alpha = 1.0f, beta = 0.0f;
  void *start = NULL, *stop = NULL;
  g_cublas.event_create(&start, 0);
  g_cublas.event_create(&stop, 0);
  int status = ok ? 0 : 1, set = 0;
#define CUBLAS_GEMM(set_)                                                                                          \
  g_cublas.gemm_ex(g_cublas.handle, 1, 0, (int)s->n, (int)s->m, (int)s->k, &alpha, (void *)b[set_], type, (int)s->k, \
                   (void *)a[set_], type, (int)s->k, &beta, (void *)c[set_], type, (int)s->n, CUBLAS_COMPUTE_32F,      \
                   CUBLAS_GEMM_DEFAULT)
  /* Warm-up, as time_ms: at least WARM_MS of device time in runs of 8 launches. */
  for (double warmed = 0.0; status == 0 && warmed < WARM_MS;) {
    g_cublas.event_record(start, NULL);
    for (int i = 0; i < 8 && status == 0; ++i, set ^= 1) status = CUBLAS_GEMM(set);
    g_cublas.event_record(stop, NULL);
    g_cublas.event_sync(stop);
    float ms = 0;
    g_cublas.event_elapsed(&ms, start, stop);
    warmed += ms > 0.01 ? ms : 0.01;
  }
  double samples[TIMED_RUNS];
  for (int run = 0; run < TIMED_RUNS && status == 0; ++run) {
    g_cublas.event_record(start, NULL);
    for (int i = 0; i < BATCH && status == 0; ++i, set ^= 1) status = CUBLAS_GEMM(set);
    g_cublas.event_record(stop, NULL);
    g_cublas.event_sync(stop);
    float ms = 0;
    g_cublas.event_elapsed(&ms, start, stop);
    samples[run] = ms / BATCH;
  }
#undef CUBLAS_GEMM
  for (int i = 0; i < 2; ++i) {
    if (a[i]) g_cublas.mem_free(a[i]);
    if (b[i]) g_cublas.mem_free(b[i]);
    if (c[i]) g_cublas.mem_free(c[i]);
  }
  if (status != 0) return 0.0;
  return 2.0 * (double)s->m * (double)s->n * (double)s->k / (median(samples, TIMED_RUNS) * 1e-3) / 1e12;
}

/* ---- OpenBLAS (dlopen) on the host ---- */
typedef void (*cblas_sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                               float *, int);

static double openblas_gflops(const gemm_shape *s, char *library, size_t size) {
  static const char *const names[] = {"libopenblas.so.0", "libopenblas.so", "libblas.so.3", NULL};
  void *h = open_first(names, library, size);
  cblas_sgemm_fn sgemm = h ? (cblas_sgemm_fn)dlsym(h, "cblas_sgemm") : NULL;
  if (!sgemm) return 0.0;
  size_t na = (size_t)(s->m * s->k), nb = (size_t)(s->n * s->k), nc = (size_t)(s->m * s->n);
  float *a = malloc(na * 4), *b = malloc(nb * 4), *c = malloc(nc * 4);
  for (size_t i = 0; i < na; ++i) a[i] = random_unit();
  for (size_t i = 0; i < nb; ++i) b[i] = random_unit();
  double samples[TIMED_RUNS];
  for (int run = -3; run < TIMED_RUNS; ++run) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112 */
    sgemm(101, 111, 112, (int)s->m, (int)s->n, (int)s->k, 1.0f, a, (int)s->k, b, (int)s->k, 0.0f, c, (int)s->n);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (run >= 0) samples[run] = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6;
  }
  free(a);
  free(b);
  free(c);
  return 2.0 * (double)s->m * (double)s->n * (double)s->k / (median(samples, TIMED_RUNS) * 1e-3) / 1e9;
}

/* ---- timing kfuse ---- */
typedef kf_status (*launch_fn)(kf_context *ctx, void *state, int set);

static double time_ms(kf_context *ctx, launch_fn launch, void *state, bool gpu) {
  for (int i = 0; i < 3; ++i) CHECK(launch(ctx, state, i % 2));
  CHECK(kf_synchronize(ctx));
  int set = 0;
  if (gpu) /* keep the clocks up before timing (GPUs drop them in idle gaps) */
    for (double warmed = 0.0; warmed < WARM_MS;) {
      double ms = 0.0;
      CHECK(kf_timer_begin(ctx));
      for (int i = 0; i < 8; ++i, set ^= 1) CHECK(launch(ctx, state, set));
      CHECK(kf_timer_end(ctx, &ms));
      warmed += ms > 0.01 ? ms : 0.01;
    }
  /* GPUs: batches of BATCH launches between the timer's two events, so the host's time to queue one
   * launch (kf_gemm spends ~10 us on the host) overlaps the previous launch instead of being timed. */
  double samples[TIMED_RUNS];
  int runs = gpu ? TIMED_RUNS : 7, batch = gpu ? BATCH : 1;
  for (int run = 0; run < runs; ++run) {
    CHECK(kf_timer_begin(ctx));
    for (int i = 0; i < batch; ++i, set ^= 1) CHECK(launch(ctx, state, set));
    CHECK(kf_timer_end(ctx, &samples[run]));
    samples[run] /= batch;
  }
  return median(samples, runs);
}

typedef struct gemm_state {
  kf_tensor *a[2], *b[2], *c[2];
  kf_gemm_desc desc;
} gemm_state;

static kf_status launch_gemm(kf_context *ctx, void *state, int set) {
  gemm_state *g = state;
  return kf_gemm(ctx, g->a[set], g->b[set], g->c[set], &g->desc);
}

typedef struct attn_state {
  kf_tensor *q[2], *k[2], *v[2], *out[2];
  kf_attention_desc desc;
} attn_state;

static kf_status launch_attention(kf_context *ctx, void *state, int set) {
  attn_state *a = state;
  return kf_attention(ctx, a->q[set], a->k[set], a->v[set], a->out[set], &a->desc);
}

static FILE *g_json;
static bool g_json_first = true;

static void json_row(const kf_device_info *dev, const char *op, const char *dtype, const char *shape, const char *note,
                     double ms, double value, const char *unit, double peer, const char *peer_name) {
  if (!g_json) return;
  fprintf(g_json, "%s\n  {\"device\": \"%s\", \"backend\": \"%s\", \"op\": \"%s\", \"dtype\": \"%s\", \"shape\": \"%s\", "
          "\"note\": \"%s\", \"ms\": %.5f, \"%s\": %.2f, \"peer\": \"%s\", \"peer_%s\": %.2f}",
          g_json_first ? "" : ",", dev->name, kf_backend_name(dev->backend), op, dtype, shape, note, ms, unit, value,
          peer_name, unit, peer);
  g_json_first = false;
}

static bool is_gpu(const kf_device_info *d) {
  return d->type == KF_DEVICE_TYPE_DISCRETE_GPU || d->type == KF_DEVICE_TYPE_INTEGRATED_GPU;
}

static double g_cublas_seen[16]; /* cuBLAS TFLOP/s per GPU GEMM case, measured with the CUDA device */

static void bench_gemm(const kf_device_info *dev, bool quick) {
  const bool gpu = is_gpu(dev);
  const gemm_shape *shapes = gpu ? kGpuGemm : kHostGemm;
  size_t count = gpu ? sizeof kGpuGemm / sizeof kGpuGemm[0] : sizeof kHostGemm / sizeof kHostGemm[0];
  if (quick) count = 1;
  kf_context_options options = KF_CONTEXT_OPTIONS_INIT;
  options.device_index = dev->index;
  kf_context *ctx = NULL;
  CHECK(kf_context_create(&options, &ctx));
  for (size_t i = 0; i < count; ++i) {
    const gemm_shape *s = &shapes[i];
    if (s->dtype == KF_F8_E4M3 && !(dev->caps & KF_CAP_FP8)) continue;
    gemm_state g;
    memset(&g, 0, sizeof g);
    g.desc = (kf_gemm_desc)KF_GEMM_DESC_INIT;
    g.desc.transpose_b = 1;
    kf_dtype out = s->dtype == KF_F8_E4M3 ? KF_BF16 : s->dtype;
    for (int set = 0; set < 2; ++set) {
      g.a[set] = random_tensor(ctx, s->dtype, 2, (int64_t[]){s->m, s->k}, 1.0f);
      g.b[set] = random_tensor(ctx, s->dtype, 2, (int64_t[]){s->n, s->k}, 1.0f);
      CHECK(kf_tensor_create(ctx, out, 2, (int64_t[]){s->m, s->n}, &g.c[set]));
    }
    kf_status st = launch_gemm(ctx, &g, 0);
    double ms = 0, tflops = 0, peer = 0;
    char shape[64], peer_name[96] = "";
    snprintf(shape, sizeof shape, "%lldx%lldx%lld", (long long)s->m, (long long)s->n, (long long)s->k);
    if (st == KF_OK) {
      ms = time_ms(ctx, launch_gemm, &g, gpu);
      tflops = 2.0 * (double)s->m * (double)s->n * (double)s->k / (ms * 1e-3) / 1e12;
    }
    if (dev->backend == KF_BACKEND_CUDA && s->dtype != KF_F8_E4M3) {
      peer = cublas_tflops(s);
      if (i < 16) g_cublas_seen[i] = peer;
      snprintf(peer_name, sizeof peer_name, "cuBLAS");
    } else if (gpu && s->dtype != KF_F8_E4M3 && i < 16 && g_cublas_seen[i] > 0) {
      peer = g_cublas_seen[i];
      snprintf(peer_name, sizeof peer_name, "cuBLAS (same GPU, this run)");
    } else if (!gpu && s->dtype == KF_F32) {
      char library[256] = "";
      peer = openblas_gflops(s, library, sizeof library) / 1e3;
      snprintf(peer_name, sizeof peer_name, "OpenBLAS %s", library[0] ? library : "(not found)");
    }
    if (st != KF_OK)
      printf("  gemm %-6s %-16s %-18s %s: %s\n", kf_dtype_name(s->dtype), shape, s->note, kf_status_name(st),
             kf_last_error());
    else if (gpu)
      printf("  gemm %-6s %-16s %-18s %9.4f ms %8.1f TFLOP/s  %-28s %8.1f  ratio %5.2f\n", kf_dtype_name(s->dtype),
             shape, s->note, ms, tflops, peer_name[0] ? peer_name : "-", peer, peer > 0 ? tflops / peer : 0.0);
    else
      printf("  gemm %-6s %-16s %-18s %9.3f ms %8.1f GFLOP/s  %-28s %8.1f  ratio %5.2f\n", kf_dtype_name(s->dtype),
             shape, s->note, ms, tflops * 1e3, peer_name[0] ? peer_name : "-", peer * 1e3,
             peer > 0 ? tflops / peer : 0.0);
    fflush(stdout);
    if (st == KF_OK)
      json_row(dev, "gemm", kf_dtype_name(s->dtype), shape, s->note, ms, tflops, "tflops", peer, peer_name);
    for (int set = 0; set < 2; ++set) {
      kf_tensor_destroy(g.a[set]);
      kf_tensor_destroy(g.b[set]);
      kf_tensor_destroy(g.c[set]);
    }
  }
  kf_context_destroy(ctx);
}

static void bench_attention(const kf_device_info *dev, bool quick) {
  const bool gpu = is_gpu(dev);
  const attn_shape *shapes = gpu ? kGpuAttn : kHostAttn;
  size_t count = gpu ? sizeof kGpuAttn / sizeof kGpuAttn[0] : sizeof kHostAttn / sizeof kHostAttn[0];
  if (quick) count = 1;
  kf_context_options options = KF_CONTEXT_OPTIONS_INIT;
  options.device_index = dev->index;
  kf_context *ctx = NULL;
  CHECK(kf_context_create(&options, &ctx));
  for (size_t i = 0; i < count; ++i) {
    const attn_shape *s = &shapes[i];
    attn_state a;
    memset(&a, 0, sizeof a);
    a.desc = (kf_attention_desc)KF_ATTENTION_DESC_INIT;
    a.desc.causal = s->causal;
    for (int set = 0; set < 2; ++set) {
      a.q[set] = random_tensor(ctx, s->dtype, 4, (int64_t[]){s->batch, s->q_len, s->q_heads, s->head_dim}, 1.0f);
      a.k[set] = random_tensor(ctx, s->dtype, 4, (int64_t[]){s->batch, s->kv_len, s->kv_heads, s->head_dim}, 1.0f);
      a.v[set] = random_tensor(ctx, s->dtype, 4, (int64_t[]){s->batch, s->kv_len, s->kv_heads, s->head_dim}, 1.0f);
      CHECK(kf_tensor_create(ctx, s->dtype, 4, (int64_t[]){s->batch, s->q_len, s->q_heads, s->head_dim}, &a.out[set]));
    }
    char shape[96];
    snprintf(shape, sizeof shape, "b%lld q%lld kv%lld h%d/%d d%d", (long long)s->batch, (long long)s->q_len,
             (long long)s->kv_len, s->q_heads, s->kv_heads, s->head_dim);
    kf_status st = launch_attention(ctx, &a, 0);
    if (st != KF_OK) {
      printf("  attention %-4s %-28s %-22s %s: %s\n", kf_dtype_name(s->dtype), shape, s->note, kf_status_name(st),
             kf_last_error());
    } else {
      double ms = time_ms(ctx, launch_attention, &a, gpu);
      double flops = 4.0 * (double)s->batch * s->q_heads * (double)s->q_len * (double)s->kv_len * s->head_dim;
      if (s->causal && s->q_len == s->kv_len) flops *= 0.5;
      double kv_bytes =
          2.0 * (double)s->batch * (double)s->kv_len * s->kv_heads * s->head_dim * (double)kf_dtype_size(s->dtype);
      double tflops = flops / (ms * 1e-3) / 1e12, gbps = kv_bytes / (ms * 1e-3) / 1e9;
      printf("  attention %-4s %-28s %-22s %9.4f ms %8.1f TFLOP/s %8.1f GB/s (K+V read)\n", kf_dtype_name(s->dtype),
             shape, s->note, ms, tflops, gbps);
      json_row(dev, "attention", kf_dtype_name(s->dtype), shape, s->note, ms, s->q_len <= 16 ? gbps : tflops,
               s->q_len <= 16 ? "gbps" : "tflops", 0.0, "");
    }
    fflush(stdout);
    for (int set = 0; set < 2; ++set) {
      kf_tensor_destroy(a.q[set]);
      kf_tensor_destroy(a.k[set]);
      kf_tensor_destroy(a.v[set]);
      kf_tensor_destroy(a.out[set]);
    }
  }
  kf_context_destroy(ctx);
}

static bool in_list(const char *list, const char *name) {
  if (!list) return true;
  size_t len = strlen(name);
  for (const char *p = list; *p;) {
    while (*p == ',') ++p;
    size_t n = strcspn(p, ",");
    if (n == len && strncasecmp(p, name, n) == 0) return true;
    p += n;
  }
  return false;
}

int main(int argc, char **argv) {
  const char *backends = NULL, *ops = NULL, *json = NULL;
  bool quick = false, software = false;
  for (int i = 1; i < argc; ++i) {
    if (strncmp(argv[i], "--backend=", 10) == 0) backends = argv[i] + 10;
    else if (strncmp(argv[i], "--op=", 5) == 0) ops = argv[i] + 5;
    else if (strncmp(argv[i], "--json=", 7) == 0) json = argv[i] + 7;
    else if (strcmp(argv[i], "--quick") == 0) quick = true;
    else if (strcmp(argv[i], "--software") == 0) software = true;
    else {
      fprintf(stderr, "usage: %s [--backend=LIST] [--op=gemm,attention] [--quick] [--software] [--json=FILE]\n"
                      "  --software  also PoCL / lavapipe (tiny shapes are not used: slow)\n", argv[0]);
      return 2;
    }
  }
  if (json && !(g_json = fopen(json, "w"))) {
    perror(json);
    return 1;
  }
  if (g_json) fprintf(g_json, "[");
  const kf_device_info *devices = NULL;
  size_t count = 0;
  CHECK(kf_devices(&devices, &count));
  /* CUDA first, so the cuBLAS figures exist when the other APIs on the same GPU are measured. */
  static const kf_backend order[] = {KF_BACKEND_CUDA, KF_BACKEND_VULKAN, KF_BACKEND_OPENCL, KF_BACKEND_CPU};
  for (size_t o = 0; o < 4; ++o)
    for (size_t i = 0; i < count; ++i) {
      const kf_device_info *d = &devices[i];
      if (d->backend != order[o] || !in_list(backends, kf_backend_name(d->backend))) continue;
      if (d->type == KF_DEVICE_TYPE_SOFTWARE && !software) continue;
      printf("%s: %s (%s)\n", kf_backend_name(d->backend), d->name, kf_device_type_name(d->type));
      fflush(stdout);
      if (setjmp(g_device_failed) == 0) {
        g_in_device = true;
        if (in_list(ops, "gemm")) bench_gemm(d, quick);
        if (in_list(ops, "attention")) bench_attention(d, quick);
      } else {
        printf("  %s: abandoned after the failure above\n", d->name);
      }
      g_in_device = false;
    }
  if (g_cublas.why[0]) printf("cuBLAS peer: %s\n", g_cublas.why);
  else if (g_cublas.ready) printf("cuBLAS peer: %s\n", g_cublas.library);
  if (g_json) {
    fprintf(g_json, "\n]\n");
    fclose(g_json);
  }
  return g_failures > 0 ? 1 : 0;
}

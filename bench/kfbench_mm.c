/* kfbench_mm.c — device-timed GEMM and attention of kfuse beside their peers in the same run:
 *   GEMM on CUDA devices beside cuBLAS (libcublas opened with dlopen, on the CUDA primary context the
 *   library also uses; FP8 e4m3 beside cublasLtMatmul from libcublasLt, per-tensor scales of 1, bf16
 *   out, fast accumulation as kfuse's wgmma does), on the CPU backend beside OpenBLAS (libopenblas
 *   opened with dlopen), and on OpenCL / Vulkan devices against the cuBLAS figure of the same hardware
 *   measured in this run; attention in TFLOP/s (4·b·h·q·kv·d, halved for causal) and decode in GB/s of
 *   K+V read.
 * Each case: inputs random, 2 rotated input sets, warm-up (>= 3 s of device work on GPUs), then the
 * median of 20 timed batches of 8 launches on GPUs (kf_timer_begin/end; CUDA events for cuBLAS, which
 * gets the same random inputs, warm-up and batches: the H200 is power-limited under sustained GEMMs,
 * so inputs and warm-up change the clock both are timed at).
 *
 *   kfbench_mm [--backend=LIST] [--op=gemm,attention] [--shape=MxNxK,...] [--quick]
 *              [--interleave | --peer-first] [--residual | --beta] [--warm-ms=MS] [--json=FILE]
 * (--shape picks built-in cases; a shape that is not built in is timed as well, after them. On CUDA,
 * kfuse's GEMM is timed before its peer; --peer-first reverses that, --interleave alternates their
 * batches instead.)
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
/* Device time of each side's warm-up (--warm-ms). The H200 settles at its 700 W cap only after
 * seconds: with 0.3 s warm-ups both sides ran ~5% above their sustained rates and whichever was timed
 * second lost up to 5% (FP8 8192^3: kfuse/cuBLASLt 0.99-1.00 timed first, 0.93-0.97 timed second;
 * 2026-11-22, docs/BENCHMARKS.md session 16). With 3 s the two orders agree within the run spread. */
static double g_warm_ms = 3000.0;
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
/* cuBLASLt (cublasLt.h of CUDA 13.0): handles and descriptors are opaque pointers; the heuristic
 * result is a by-value struct whose first member, the algorithm, is what cublasLtMatmul takes. */
typedef struct lt_heuristic {
  uint64_t algo[8]; /* cublasLtMatmulAlgo_t */
  size_t workspace_size;
  int state;
  float waves;
  int reserved[4];
} lt_heuristic;
typedef int (*lt_create_fn)(void **);
typedef int (*lt_desc_create_fn)(void **, int, int);
typedef int (*lt_set_attribute_fn)(void *, int, const void *, size_t);
typedef int (*lt_layout_create_fn)(void **, int, uint64_t, uint64_t, int64_t);
typedef int (*lt_destroy_fn)(void *);
typedef int (*lt_heuristic_fn)(void *, void *, void *, void *, void *, void *, void *, int, lt_heuristic *, int *);
typedef int (*lt_matmul_fn)(void *, void *, const void *, const void *, void *, const void *, void *, const void *,
                            const void *, void *, void *, void *, const void *, void *, size_t, void *);

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
  /* cuBLASLt, for the FP8 peer; lt_matmul stays NULL when libcublasLt is missing */
  char lt_why[160]; /* the first failure of an FP8 peer case, printed at the end */
  int lt_fast_accum; /* whether the FP8 peer ran with fast accumulation */
  void *lt_handle;
  lt_desc_create_fn lt_desc_create;
  lt_set_attribute_fn lt_desc_set, lt_preference_set;
  lt_layout_create_fn lt_layout_create;
  lt_destroy_fn lt_desc_destroy, lt_layout_destroy, lt_preference_destroy;
  lt_create_fn lt_preference_create;
  lt_heuristic_fn lt_heuristic;
  lt_matmul_fn lt_matmul;
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
  static const char *const lt_names[] = {"libcublasLt.so", "libcublasLt.so.13", "libcublasLt.so.12",
                                         "/usr/local/cuda/lib64/libcublasLt.so", NULL};
  void *lt = open_first(lt_names, ignored, sizeof ignored);
  if (lt) {
    lt_create_fn lt_create = (lt_create_fn)dlsym(lt, "cublasLtCreate");
    g_cublas.lt_desc_create = (lt_desc_create_fn)dlsym(lt, "cublasLtMatmulDescCreate");
    g_cublas.lt_desc_set = (lt_set_attribute_fn)dlsym(lt, "cublasLtMatmulDescSetAttribute");
    g_cublas.lt_desc_destroy = (lt_destroy_fn)dlsym(lt, "cublasLtMatmulDescDestroy");
    g_cublas.lt_layout_create = (lt_layout_create_fn)dlsym(lt, "cublasLtMatrixLayoutCreate");
    g_cublas.lt_layout_destroy = (lt_destroy_fn)dlsym(lt, "cublasLtMatrixLayoutDestroy");
    g_cublas.lt_preference_create = (lt_create_fn)dlsym(lt, "cublasLtMatmulPreferenceCreate");
    g_cublas.lt_preference_set = (lt_set_attribute_fn)dlsym(lt, "cublasLtMatmulPreferenceSetAttribute");
    g_cublas.lt_preference_destroy = (lt_destroy_fn)dlsym(lt, "cublasLtMatmulPreferenceDestroy");
    g_cublas.lt_heuristic = (lt_heuristic_fn)dlsym(lt, "cublasLtMatmulAlgoGetHeuristic");
    lt_matmul_fn matmul = (lt_matmul_fn)dlsym(lt, "cublasLtMatmul");
    if (lt_create && g_cublas.lt_desc_create && g_cublas.lt_desc_set && g_cublas.lt_desc_destroy &&
        g_cublas.lt_layout_create && g_cublas.lt_layout_destroy && g_cublas.lt_preference_create &&
        g_cublas.lt_preference_set && g_cublas.lt_preference_destroy && g_cublas.lt_heuristic && matmul &&
        lt_create(&g_cublas.lt_handle) == 0)
      g_cublas.lt_matmul = matmul;
  }
  return true;
}

enum { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14, CUDA_R_8F_E4M3 = 28, CUBLAS_COMPUTE_32F = 68,
       CUBLAS_GEMM_DEFAULT = -1, CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
/* cublasLtMatmulDescAttributes_t and cublasLtMatmulPreferenceAttributes_t values used here */
enum { LT_DESC_TRANSA = 3, LT_DESC_TRANSB = 4, LT_DESC_A_SCALE_POINTER = 17, LT_DESC_B_SCALE_POINTER = 18,
       LT_DESC_FAST_ACCUM = 25, LT_PREF_MAX_WORKSPACE_BYTES = 1 };
#define LT_WORKSPACE_BYTES ((size_t)32 << 20)
#define LT_SCALE_SLOT 256 /* bytes between the A and B scales on the device */
#define LT_ALGOS 8        /* heuristic results asked for */

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

/* One launch of a peer GEMM on input set `set` (0 or 1); returns 0 on success. */
typedef int (*peer_launch_fn)(void *state, int set);

/* One launch of kfuse's case on input set `set`. */
typedef kf_status (*launch_fn)(kf_context *ctx, void *state, int set);

/* --interleave: kfuse's batches alternate with the peer's, inside peer_ms, so both are timed under the
 * same power, clock and temperature history (a sequential run times kfuse first, then the peer). */
static bool g_interleave;
/* --residual: GEMMs with a fused residual add, C = A Bᵀ + R (kfuse: R a separate tensor, desc.residual;
 * cuBLAS: beta = 1 on a C that holds R). --beta: C = A Bᵀ + C for both (desc.beta = 1). 16-bit types
 * only. g_adds: either, the cases where cuBLAS runs with beta = 1. */
static bool g_residual, g_beta, g_adds;
static bool g_peer_first; /* --peer-first: the peer is timed before kfuse instead of after it */
static struct partner {
  kf_context *ctx;
  launch_fn launch;
  void *state;
  int set;
  double warmed, samples[TIMED_RUNS];
} g_partner;

/* Device milliseconds a launch of one batch of `count` kfuse launches between the timer's two events,
 * alternating the input sets from *set on. */
static double batch_ms(kf_context *ctx, launch_fn launch, void *state, int *set, int count) {
  double ms = 0.0;
  CHECK(kf_timer_begin(ctx));
  for (int i = 0; i < count; ++i, *set ^= 1) CHECK(launch(ctx, state, *set));
  CHECK(kf_timer_end(ctx, &ms));
  return ms / count;
}

static double partner_batch(int count) {
  return batch_ms(g_partner.ctx, g_partner.launch, g_partner.state, &g_partner.set, count);
}

/* Median milliseconds of one peer launch, timed exactly as kfuse is (time_ms): g_warm_ms of
 * back-to-back launches in runs of 8, then TIMED_RUNS batches of BATCH launches between two events,
 * alternating the two input sets. 0 when a launch fails. */
static double peer_ms(peer_launch_fn launch, void *state) {
  void *start = NULL, *stop = NULL;
  if (g_cublas.event_create(&start, 0) != 0 || g_cublas.event_create(&stop, 0) != 0) return 0.0;
  int status = 0, set = 0;
  const bool partner = g_partner.launch != NULL;
  for (double warmed = 0.0; status == 0 && (warmed < g_warm_ms || (partner && g_partner.warmed < g_warm_ms));) {
    if (partner) g_partner.warmed += 8 * partner_batch(8);
    g_cublas.event_record(start, NULL);
    for (int i = 0; i < 8 && status == 0; ++i, set ^= 1) status = launch(state, set);
    g_cublas.event_record(stop, NULL);
    g_cublas.event_sync(stop);
    float ms = 0;
    g_cublas.event_elapsed(&ms, start, stop);
    warmed += ms > 0.01 ? ms : 0.01;
  }
  double samples[TIMED_RUNS];
  for (int run = 0; run < TIMED_RUNS && status == 0; ++run) {
    if (partner) g_partner.samples[run] = partner_batch(BATCH);
    g_cublas.event_record(start, NULL);
    for (int i = 0; i < BATCH && status == 0; ++i, set ^= 1) status = launch(state, set);
    g_cublas.event_record(stop, NULL);
    g_cublas.event_sync(stop);
    float ms = 0;
    g_cublas.event_elapsed(&ms, start, stop);
    samples[run] = ms / BATCH;
  }
  return status == 0 ? median(samples, TIMED_RUNS) : 0.0;
}

/* Device buffers of one peer case: two input sets (random, as random_tensor makes kfuse's), C per set,
 * and for cuBLASLt its descriptors, scales and workspace. */
typedef struct peer_case {
  const gemm_shape *shape;
  unsigned long long a[2], b[2], c[2];
  int type;
  /* cuBLASLt */
  void *desc, *layout_a, *layout_b, *layout_c;
  unsigned long long scales, workspace;
  lt_heuristic algo;
} peer_case;

static bool peer_alloc(peer_case *p, const gemm_shape *s, size_t out_size) {
  memset(p, 0, sizeof *p);
  p->shape = s;
  const size_t elem = kf_dtype_size(s->dtype);
  bool ok = true;
  for (int i = 0; i < 2 && ok; ++i)
    ok = g_cublas.mem_alloc(&p->a[i], (size_t)(s->m * s->k) * elem) == 0 &&
         g_cublas.mem_alloc(&p->b[i], (size_t)(s->n * s->k) * elem) == 0 &&
         g_cublas.mem_alloc(&p->c[i], (size_t)(s->m * s->n) * out_size) == 0 &&
         cublas_random(p->a[i], (size_t)(s->m * s->k), s->dtype) &&
         cublas_random(p->b[i], (size_t)(s->n * s->k), s->dtype) &&
         (!g_adds || s->dtype == KF_F8_E4M3 || cublas_random(p->c[i], (size_t)(s->m * s->n), s->dtype));
  return ok;
}

static void peer_free(peer_case *p) {
  for (int i = 0; i < 2; ++i) {
    if (p->a[i]) g_cublas.mem_free(p->a[i]);
    if (p->b[i]) g_cublas.mem_free(p->b[i]);
    if (p->c[i]) g_cublas.mem_free(p->c[i]);
  }
  if (p->scales) g_cublas.mem_free(p->scales);
  if (p->workspace) g_cublas.mem_free(p->workspace);
  if (p->layout_a) g_cublas.lt_layout_destroy(p->layout_a);
  if (p->layout_b) g_cublas.lt_layout_destroy(p->layout_b);
  if (p->layout_c) g_cublas.lt_layout_destroy(p->layout_c);
  if (p->desc) g_cublas.lt_desc_destroy(p->desc);
}

static double peer_tflops(const gemm_shape *s, double ms) {
  return ms > 0 ? 2.0 * (double)s->m * (double)s->n * (double)s->k / (ms * 1e-3) / 1e12 : 0.0;
}

/* C[M,N] = A[M,K] B[N,K]ᵀ (row-major) is, column-major, Cᵀ = B Aᵀ: op(B) = T, op(A) = N. */
static int cublas_launch(void *state, int set) {
  const peer_case *p = state;
  const gemm_shape *s = p->shape;
  const float alpha = 1.0f, beta = g_adds ? 1.0f : 0.0f;
  return g_cublas.gemm_ex(g_cublas.handle, CUBLAS_OP_T, CUBLAS_OP_N, (int)s->n, (int)s->m, (int)s->k, &alpha,
                          (void *)p->b[set], p->type, (int)s->k, (void *)p->a[set], p->type, (int)s->k, &beta,
                          (void *)p->c[set], p->type, (int)s->n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

/* cuBLAS TFLOP/s (cublasGemmEx) of a 16- or 32-bit case, C in the input type. Same random inputs,
 * warm-up and batches as kfuse: constant inputs draw less power, and under sustained load the H200's
 * clock is power-limited (a helper measured cuBLAS 10% faster on memset inputs). */
static double cublas_tflops(const gemm_shape *s) {
  if (!cublas_init()) return 0.0;
  peer_case p;
  double ms = 0.0;
  if (peer_alloc(&p, s, kf_dtype_size(s->dtype))) {
    p.type = s->dtype == KF_F32 ? CUDA_R_32F : s->dtype == KF_F16 ? CUDA_R_16F : CUDA_R_16BF;
    ms = peer_ms(cublas_launch, &p);
  }
  peer_free(&p);
  return peer_tflops(s, ms);
}

static int cublaslt_launch(void *state, int set) {
  peer_case *p = state;
  const float alpha = 1.0f, beta = 0.0f;
  return g_cublas.lt_matmul(g_cublas.lt_handle, p->desc, &alpha, (void *)p->b[set], p->layout_a, (void *)p->a[set],
                            p->layout_b, &beta, (void *)p->c[set], p->layout_c, (void *)p->c[set], p->layout_c,
                            p->algo.algo, (void *)p->workspace, LT_WORKSPACE_BYTES, NULL);
}

/* cuBLASLt TFLOP/s of an FP8 e4m3 case as kfuse runs it: A [M,K] and B [N,K] e4m3 (the layout FP8
 * cublasLtMatmul requires: op(A) = T, op(B) = N, column-major), per-tensor scales (1.0, on the
 * device), f32 compute, bf16 C, fast accumulation (no periodic promotion: kfuse's wgmma accumulates
 * the whole K in its f32 accumulators too; without it only if no algorithm runs with it), the first of
 * the heuristic's LT_ALGOS algorithms that runs, 32 MiB of workspace. */
static double cublaslt_fp8_tflops(const gemm_shape *s) {
  if (!cublas_init()) return 0.0;
  if (!g_cublas.lt_matmul) {
    snprintf(g_cublas.lt_why, sizeof g_cublas.lt_why, "libcublasLt not found or cublasLtCreate failed");
    return 0.0;
  }
  peer_case p;
  double ms = 0.0;
  const char *step = "device buffers";
  int status = peer_alloc(&p, s, 2) ? 0 : -1;
  void *preference = NULL;
  const int trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  const float one = 1.0f;
  const uint64_t workspace = LT_WORKSPACE_BYTES;
  lt_heuristic found[LT_ALGOS];
#define LT_STEP(name, call) \
  if (status == 0) {        \
    step = name;            \
    status = (call);        \
  }
  /* each scale in its own 256-byte slot, as separate allocations would be: with the B scale 4 bytes
   * after the A scale, cublasLtMatmul refused the heuristic's algorithm (NOT_SUPPORTED) on the H200 */
  LT_STEP("scales and workspace",
          g_cublas.mem_alloc(&p.scales, 2 * LT_SCALE_SLOT) || g_cublas.memcpy_htod(p.scales, &one, sizeof one) ||
              g_cublas.memcpy_htod(p.scales + LT_SCALE_SLOT, &one, sizeof one) ||
              g_cublas.mem_alloc(&p.workspace, LT_WORKSPACE_BYTES));
  const void *scale_a = (const void *)(uintptr_t)p.scales;
  const void *scale_b = (const void *)(uintptr_t)(p.scales + LT_SCALE_SLOT);
  LT_STEP("cublasLtMatmulDescCreate", g_cublas.lt_desc_create(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  LT_STEP("TRANSA", g_cublas.lt_desc_set(p.desc, LT_DESC_TRANSA, &trans_a, sizeof trans_a));
  LT_STEP("TRANSB", g_cublas.lt_desc_set(p.desc, LT_DESC_TRANSB, &trans_b, sizeof trans_b));
  LT_STEP("A_SCALE_POINTER", g_cublas.lt_desc_set(p.desc, LT_DESC_A_SCALE_POINTER, &scale_a, sizeof scale_a));
  LT_STEP("B_SCALE_POINTER", g_cublas.lt_desc_set(p.desc, LT_DESC_B_SCALE_POINTER, &scale_b, sizeof scale_b));
  LT_STEP("layout A", g_cublas.lt_layout_create(&p.layout_a, CUDA_R_8F_E4M3, (uint64_t)s->k, (uint64_t)s->n, s->k));
  LT_STEP("layout B", g_cublas.lt_layout_create(&p.layout_b, CUDA_R_8F_E4M3, (uint64_t)s->k, (uint64_t)s->m, s->k));
  LT_STEP("layout C", g_cublas.lt_layout_create(&p.layout_c, CUDA_R_16BF, (uint64_t)s->n, (uint64_t)s->m, s->n));
  LT_STEP("cublasLtMatmulPreferenceCreate", g_cublas.lt_preference_create(&preference));
  LT_STEP("MAX_WORKSPACE_BYTES",
          g_cublas.lt_preference_set(preference, LT_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof workspace));
  /* With fast accumulation first (as kfuse's wgmma accumulates), then without it if no algorithm runs:
   * the heuristic's order, first algorithm that runs (an algorithm can still refuse the pointers). */
  int tried = 0, first_status = 0;
  const int ready = status;
  for (int fast = 1; fast >= 0 && ready == 0; --fast) {
    const int8_t accum = (int8_t)fast;
    int found_count = 0;
    status = 0;
    LT_STEP("FAST_ACCUM", g_cublas.lt_desc_set(p.desc, LT_DESC_FAST_ACCUM, &accum, sizeof accum));
    LT_STEP("cublasLtMatmulAlgoGetHeuristic",
            g_cublas.lt_heuristic(g_cublas.lt_handle, p.desc, p.layout_a, p.layout_b, p.layout_c, p.layout_c,
                                  preference, LT_ALGOS, found, &found_count));
    LT_STEP("cublasLtMatmulAlgoGetHeuristic (no algorithm)", found_count > 0 ? 0 : -1);
    if (status != 0) continue;
    step = "cublasLtMatmul";
    status = -1;
    for (int i = 0; i < found_count && status != 0; ++i, ++tried) {
      p.algo = found[i];
      status = cublaslt_launch(&p, 0);
      if (tried == 0) first_status = status;
    }
    if (status == 0) {
      g_cublas.lt_fast_accum = fast;
      break;
    }
  }
#undef LT_STEP
  if (preference) g_cublas.lt_preference_destroy(preference);
  if (status == 0) {
    if (tried > 1)
      snprintf(g_cublas.lt_why, sizeof g_cublas.lt_why, "the %d-th algorithm tried ran (the first returned %d)", tried,
               first_status);
    step = "cublasLtMatmul (timed)";
    ms = peer_ms(cublaslt_launch, &p);
  }
  if (status != 0 || ms <= 0.0)
    snprintf(g_cublas.lt_why, sizeof g_cublas.lt_why, "%s failed (status %d, %d algorithms tried, first returned %d)",
             step, status, tried, first_status);
  peer_free(&p);
  return peer_tflops(s, ms);
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

static double time_ms(kf_context *ctx, launch_fn launch, void *state, bool gpu) {
  for (int i = 0; i < 3; ++i) CHECK(launch(ctx, state, i % 2));
  CHECK(kf_synchronize(ctx));
  int set = 0;
  if (gpu) /* keep the clocks up before timing (GPUs drop them in idle gaps) */
    for (double warmed = 0.0; warmed < g_warm_ms;) {
      const double ms = 8 * batch_ms(ctx, launch, state, &set, 8);
      warmed += ms > 0.01 ? ms : 0.01;
    }
  /* GPUs: batches of BATCH launches between the timer's two events, so the host's time to queue one
   * launch (kf_gemm spends ~10 us on the host) overlaps the previous launch instead of being timed. */
  double samples[TIMED_RUNS];
  int runs = gpu ? TIMED_RUNS : 7, batch = gpu ? BATCH : 1;
  for (int run = 0; run < runs; ++run) samples[run] = batch_ms(ctx, launch, state, &set, batch);
  return median(samples, runs);
}

typedef struct gemm_state {
  kf_tensor *a[2], *b[2], *c[2], *r[2]; /* r: the residual (--residual), else NULL */
  kf_gemm_desc desc;
} gemm_state;

static kf_status launch_gemm(kf_context *ctx, void *state, int set) {
  gemm_state *g = state;
  g->desc.residual = g->r[set];
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

static bool in_list(const char *list, const char *name);
static const char *g_shapes; /* --shape: the GEMM cases to run (NULL: all) */

static double g_cublas_seen[32]; /* cuBLAS TFLOP/s per GPU GEMM case, measured with the CUDA device */
#define CUBLAS_SEEN (sizeof g_cublas_seen / sizeof g_cublas_seen[0])

/* --shape entries that name no built-in case: timed after the built-in ones, in the order given
 * (a K sweep, say). Without a DTYPE: prefix, bf16 on GPUs and f32 on the host. */
#define MAX_EXTRA 16
typedef struct extra_shape {
  gemm_shape shape;
  bool typed; /* the entry named its dtype */
} extra_shape;
static extra_shape g_extra[MAX_EXTRA];
static int g_extra_count;

static bool builtin_shape(const gemm_shape *list, size_t count, int64_t m, int64_t n, int64_t k, bool typed,
                          kf_dtype dtype) {
  for (size_t i = 0; i < count; ++i)
    if (list[i].m == m && list[i].n == n && list[i].k == k && (!typed || list[i].dtype == dtype)) return true;
  return false;
}

/* Parses --shape's list into g_extra; false (with a message) on an entry that is not [DTYPE:]MxNxK. */
static bool parse_extra_shapes(const char *list) {
  for (const char *p = list; p && *p;) {
    while (*p == ',') ++p;
    size_t len = strcspn(p, ",");
    if (len == 0) break;
    char entry[96];
    if (len >= sizeof entry) len = sizeof entry - 1;
    memcpy(entry, p, len);
    entry[len] = 0;
    p += len;
    extra_shape e = {{0, 0, 0, KF_BF16, "custom"}, false};
    const char *dims = entry;
    char *colon = strchr(entry, ':');
    if (colon) {
      *colon = 0;
      bool known = false;
      for (int d = 0; d < KF_DTYPE_COUNT; ++d)
        if (kf_dtype_name((kf_dtype)d) && strcasecmp(entry, kf_dtype_name((kf_dtype)d)) == 0)
          e.shape.dtype = (kf_dtype)d, known = true;
      if (!known || e.shape.dtype == KF_I32) {
        fprintf(stderr, "--shape: unknown GEMM dtype '%s'\n", entry);
        return false;
      }
      e.typed = true;
      dims = colon + 1;
    }
    long long m, n, k;
    char tail;
    if (sscanf(dims, "%lldx%lldx%lld%c", &m, &n, &k, &tail) != 3 || m < 1 || n < 1 || k < 1) {
      fprintf(stderr, "--shape: '%s' is not MxNxK\n", dims);
      return false;
    }
    e.shape.m = m, e.shape.n = n, e.shape.k = k;
    if (g_extra_count == MAX_EXTRA) {
      fprintf(stderr, "--shape: at most %d shapes beyond the built-in ones\n", MAX_EXTRA);
      return false;
    }
    g_extra[g_extra_count++] = e;
  }
  return true;
}

static void bench_gemm(const kf_device_info *dev, bool quick) {
  const bool gpu = is_gpu(dev);
  const gemm_shape *shapes = gpu ? kGpuGemm : kHostGemm;
  const size_t builtin = gpu ? sizeof kGpuGemm / sizeof kGpuGemm[0] : sizeof kHostGemm / sizeof kHostGemm[0];
  const size_t count = quick ? 1 : builtin + (size_t)g_extra_count;
  kf_context_options options = KF_CONTEXT_OPTIONS_INIT;
  options.device_index = dev->index;
  kf_context *ctx = NULL;
  CHECK(kf_context_create(&options, &ctx));
  for (size_t i = 0; i < count; ++i) {
    gemm_shape extra;
    const gemm_shape *s = &shapes[i];
    if (i >= builtin) { /* a --shape entry of its own */
      const extra_shape *e = &g_extra[i - builtin];
      if (builtin_shape(shapes, builtin, e->shape.m, e->shape.n, e->shape.k, e->typed, e->shape.dtype)) continue;
      extra = e->shape;
      if (!e->typed) extra.dtype = gpu ? KF_BF16 : KF_F32;
      s = &extra;
    }
    if (s->dtype == KF_F8_E4M3 && !(dev->caps & KF_CAP_FP8)) continue;
    if (g_adds && (!gpu || s->dtype == KF_F8_E4M3)) continue; /* 16-bit GPU cases only */
    char shape[64], typed_shape[96];
    snprintf(shape, sizeof shape, "%lldx%lldx%lld", (long long)s->m, (long long)s->n, (long long)s->k);
    snprintf(typed_shape, sizeof typed_shape, "%s:%s", kf_dtype_name(s->dtype), shape);
    char note[48];
    snprintf(note, sizeof note, "%s%s", s->note, g_residual ? " +residual" : g_beta ? " +beta" : "");
    if (i < builtin && g_shapes && !in_list(g_shapes, shape) && !in_list(g_shapes, typed_shape)) continue;
    gemm_state g;
    memset(&g, 0, sizeof g);
    g.desc = (kf_gemm_desc)KF_GEMM_DESC_INIT;
    g.desc.transpose_b = 1;
    if (g_beta) g.desc.beta = 1.0f;
    kf_dtype out = s->dtype == KF_F8_E4M3 ? KF_BF16 : s->dtype;
    for (int set = 0; set < 2; ++set) {
      g.a[set] = random_tensor(ctx, s->dtype, 2, (int64_t[]){s->m, s->k}, 1.0f);
      g.b[set] = random_tensor(ctx, s->dtype, 2, (int64_t[]){s->n, s->k}, 1.0f);
      if (g_beta) /* C's old values are read */
        g.c[set] = random_tensor(ctx, out, 2, (int64_t[]){s->m, s->n}, 1.0f);
      else
        CHECK(kf_tensor_create(ctx, out, 2, (int64_t[]){s->m, s->n}, &g.c[set]));
      if (g_residual) g.r[set] = random_tensor(ctx, out, 2, (int64_t[]){s->m, s->n}, 1.0f);
    }
    kf_status st = launch_gemm(ctx, &g, 0);
    double ms = 0, tflops = 0, peer = 0;
    char peer_name[96] = "";
    /* --interleave on CUDA: kfuse's batches are timed inside the peer's timing loop, one before each of
     * the peer's (a peer that fails leaves kfuse to be timed alone, below) */
    const bool interleave = g_interleave && st == KF_OK && gpu && dev->backend == KF_BACKEND_CUDA;
    const bool kfuse_first = !g_peer_first || dev->backend != KF_BACKEND_CUDA;
    if (interleave) g_partner = (struct partner){.ctx = ctx, .launch = launch_gemm, .state = &g};
    else if (st == KF_OK && kfuse_first) ms = time_ms(ctx, launch_gemm, &g, gpu);
    if (dev->backend == KF_BACKEND_CUDA && s->dtype == KF_F8_E4M3) {
      peer = cublaslt_fp8_tflops(s);
      snprintf(peer_name, sizeof peer_name, "%s",
               g_cublas.lt_fast_accum ? "cuBLASLt FP8" : "cuBLASLt FP8 (no fast acc.)");
    } else if (dev->backend == KF_BACKEND_CUDA) {
      peer = cublas_tflops(s);
      if (i < CUBLAS_SEEN) g_cublas_seen[i] = peer;
      snprintf(peer_name, sizeof peer_name, "cuBLAS");
    } else if (gpu && s->dtype != KF_F8_E4M3 && i < CUBLAS_SEEN && g_cublas_seen[i] > 0) {
      peer = g_cublas_seen[i];
      snprintf(peer_name, sizeof peer_name, "cuBLAS (same GPU, this run)");
    } else if (!gpu && s->dtype == KF_F32) {
      char library[256] = "";
      peer = openblas_gflops(s, library, sizeof library) / 1e3;
      snprintf(peer_name, sizeof peer_name, "OpenBLAS %s", library[0] ? library : "(not found)");
    }
    if (!interleave && !kfuse_first && st == KF_OK) ms = time_ms(ctx, launch_gemm, &g, gpu);
    if (interleave) {
      g_partner.launch = NULL;
      ms = peer > 0 ? median(g_partner.samples, TIMED_RUNS) : time_ms(ctx, launch_gemm, &g, gpu);
      if (peer > 0) snprintf(peer_name + strlen(peer_name), sizeof peer_name - strlen(peer_name), ", interleaved");
    }
    if (st == KF_OK) tflops = 2.0 * (double)s->m * (double)s->n * (double)s->k / (ms * 1e-3) / 1e12;
    if (st != KF_OK)
      printf("  gemm %-6s %-16s %-18s %s: %s\n", kf_dtype_name(s->dtype), shape, note, kf_status_name(st),
             kf_last_error());
    else if (gpu)
      printf("  gemm %-6s %-16s %-18s %9.4f ms %8.1f TFLOP/s  %-28s %8.1f  ratio %5.2f\n", kf_dtype_name(s->dtype),
             shape, note, ms, tflops, peer_name[0] ? peer_name : "-", peer, peer > 0 ? tflops / peer : 0.0);
    else
      printf("  gemm %-6s %-16s %-18s %9.3f ms %8.1f GFLOP/s  %-28s %8.1f  ratio %5.2f\n", kf_dtype_name(s->dtype),
             shape, note, ms, tflops * 1e3, peer_name[0] ? peer_name : "-", peer * 1e3,
             peer > 0 ? tflops / peer : 0.0);
    fflush(stdout);
    if (st == KF_OK)
      json_row(dev, "gemm", kf_dtype_name(s->dtype), shape, note, ms, tflops, "tflops", peer, peer_name);
    for (int set = 0; set < 2; ++set) {
      kf_tensor_destroy(g.a[set]);
      kf_tensor_destroy(g.b[set]);
      kf_tensor_destroy(g.c[set]);
      kf_tensor_destroy(g.r[set]);
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
    else if (strncmp(argv[i], "--shape=", 8) == 0) g_shapes = argv[i] + 8;
    else if (strcmp(argv[i], "--quick") == 0) quick = true;
    else if (strcmp(argv[i], "--software") == 0) software = true;
    else if (strcmp(argv[i], "--interleave") == 0) g_interleave = true;
    else if (strcmp(argv[i], "--residual") == 0) g_residual = true;
    else if (strcmp(argv[i], "--beta") == 0) g_beta = true;
    else if (strcmp(argv[i], "--peer-first") == 0) g_peer_first = true;
    else if (strncmp(argv[i], "--warm-ms=", 10) == 0 && atof(argv[i] + 10) > 0) g_warm_ms = atof(argv[i] + 10);
    else {
      fprintf(stderr, "usage: %s [--backend=LIST] [--op=gemm,attention] [--shape=LIST] [--quick] [--software]"
                      " [--interleave | --peer-first] [--residual | --beta] [--warm-ms=MS] [--json=FILE]\n"
                      "  --shape     GEMM cases to run, comma-separated: MxNxK or DTYPE:MxNxK (f8e4m3:8192x8192x8192);\n"
                      "              a shape that is not built in is timed too (bf16 on GPUs, f32 on the host)\n"
                      "  --software  also PoCL / lavapipe (tiny shapes are not used: slow)\n"
                      "  --interleave  CUDA GEMM: kfuse's timed batches alternate with cuBLAS's (same clock history)\n"
                      "  --peer-first  CUDA GEMM: time cuBLAS before kfuse (the default is kfuse first)\n"
                      "  --residual    GEMM on GPUs, 16-bit: C = A B^T + R (kfuse's fused residual; cuBLAS beta = 1)\n"
                      "  --beta        GEMM on GPUs, 16-bit: C = A B^T + C (beta = 1 for both)\n"
                      "  --warm-ms     device time of each warm-up on GPUs (default 3000: the power cap's steady state)\n",
              argv[0]);
      return 2;
    }
  }
  if (g_residual && g_beta) {
    fprintf(stderr, "--residual and --beta time different epilogues: pass one\n");
    return 2;
  }
  g_adds = g_residual || g_beta;
  if (!parse_extra_shapes(g_shapes)) return 2;
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
  if (g_cublas.lt_why[0]) printf("cuBLASLt FP8 peer: %s\n", g_cublas.lt_why);
  if (g_json) {
    fprintf(g_json, "\n]\n");
    fclose(g_json);
  }
  return g_failures > 0 ? 1 : 0;
}

/* kfbench — times kfuse ops on each device with device-side timers and reports the bandwidth they
 * reach beside the copy bandwidth measured in the same run.
 *
 * Method (why each step is there):
 *  - device timers (kf_timer_begin/end: CUDA events, OpenCL profiling, Vulkan timestamps) around a
 *    batch of launches, divided by the batch size: one launch of a small shape is shorter than the
 *    host's launch latency, so timing launches one by one would measure the host;
 *  - warm-up runs first (kernel compilation, first-touch of memory, clocks ramping up), then the
 *    median of the timed batches;
 *  - several input/output sets are rotated so the memory touched by consecutive launches is at least
 *    4x a 60 MB L2 (H200 has 60 MB), otherwise small shapes would be served from cache;
 *  - inputs are random and nonzero (all-zero data can take shortcuts in memory compression); they are
 *    taken from a pool of random values at random offsets, because generating gigabytes of fresh
 *    random numbers per case would make the run minutes longer without changing what is measured;
 *  - bandwidth counts the minimum bytes an op must move: each input read once, each output written
 *    once (per op in case_bytes()); a copy reads and writes its bytes once;
 *  - the copy bandwidth of every selected device is measured first, so each op can be compared with
 *    its own API's copy ("of copy") and with the best copy of the same hardware in this run ("of hw
 *    copy"): one API's copy can be far slower than the hardware allows (vkCmdCopyBuffer on NVIDIA).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/kfuse.h"

static const char kUsage[] =
    "usage: kfbench [options]\n"
    "\n"
    "Times kfuse's memory-bound ops at LLM shapes on every device of every available backend, beside\n"
    "the copy bandwidth (kf_tensor_copy) of every device, measured first in the same run:\n"
    "  rmsnorm, layernorm  16384x8192 (+ other hidden sizes), with weight (+ bias), and with the fused\n"
    "                      residual add; bf16 and f32\n"
    "  rope                32768 tokens, 32 q heads + 8 k heads of 128, NeoX, cos/sin computed in the\n"
    "                      kernel, in place: on q and k as strided views of one packed QKV tensor\n"
    "                      [tokens, 48*128] (packed-qkv), and on separate contiguous q and k tensors\n"
    "                      (separate-qk); bf16 and f32\n"
    "  swiglu, geglu       16384x14336 output, from one fused [16384, 2*14336] gate+up input\n"
    "                      (fused-input) or from two tensors (two-tensors)\n"
    "  softmax             16384x8192 and 4096x32768, plain, and with scale and a full-size additive\n"
    "                      mask (scale+mask)\n"
    "Bandwidth counts the minimum bytes: each input read once, each output written once (rope: q and\n"
    "k read and written, positions read). 'of copy' divides by the copy of the same API and device,\n"
    "'of hw copy' by the best copy measured on the same hardware through any API in this run.\n"
    "Times are device-side (kf_timer_begin/kf_timer_end). An op a backend lacks prints one line\n"
    "'op not available on this backend' and the run goes on.\n"
    "\n"
    "GPUs get the full shapes, a >= 1 GiB copy, 5 warm-up and 20 timed runs. The CPU backend and\n"
    "software drivers (PoCL, lavapipe) get small shapes, fewer cases, a 256 MiB copy and fewer runs\n"
    "(each case stops after about 1.5 s of timed runs), so each such device takes under a minute.\n"
    "\n"
    "options:\n"
    "  --backend=LIST     only these backends, comma separated (cpu,cuda,opencl,vulkan)\n"
    "  --device=LIST      only these devices: index into the device list, or a case-insensitive\n"
    "                     substring of the device name; comma separated\n"
    "  --op=LIST          only these ops, comma separated (rmsnorm,layernorm,rope,swiglu,geglu,softmax)\n"
    "  --gpu-only         skip the CPU backend and software drivers (PoCL, lavapipe)\n"
    "  --full             full GPU shapes and run counts on CPU and software devices too (slow)\n"
    "  --quick            each op's headline case only and fewer runs (a smoke test, not a measurement)\n"
    "  --runs=N           timed runs per case (default 20; 10 on CPU/software devices)\n"
    "  --warmup=N         warm-up runs per case (default 5; 3 on CPU/software devices)\n"
    "  --json=FILE        also write the results as JSON to FILE\n"
    "  --list             list the devices and exit\n"
    "  --help             this text\n";

/* H200's L2 is 60 MB (50 MB on H100, 40 MB on A100): rotating sets until 4x that is touched keeps
 * every launch reading from DRAM. CPUs and software drivers have far smaller last-level caches. */
#define GPU_ROTATION_BYTES (4ull * 60ull * 1000ull * 1000ull)
#define HOST_ROTATION_BYTES (128ull << 20)
#define MAX_ROTATION_SETS 8
/* A timed batch is grown until it lasts this long, so timer resolution and per-batch overhead
 * (events, profiling queries) are under ~1% of it. */
#define MIN_BATCH_MS 2.0
#define MAX_BATCH_LAUNCHES 256
/* Continuous work before each GPU case is timed: longer than the ~0.5 s clock ramp seen on the H200. */
#define GPU_WARM_MS 600.0
/* CPU and software devices can take a quarter of a second per launch (lavapipe): their cases stop
 * after about this long, with at least MIN_TIMED_RUNS timed runs, so a device's ~20 cases take under
 * a minute. */
#define HOST_CASE_BUDGET_MS 1500.0
#define MIN_TIMED_RUNS 3
#define GPU_COPY_BYTES (1ull << 30)
#define HOST_COPY_BYTES (256ull << 20)
#define QUICK_HOST_COPY_BYTES (64ull << 20)
/* A device whose own copy is under this fraction of its hardware's best copy gets a warning: its
 * 'of copy' column says little about the op. */
#define SLOW_COPY_FRACTION 0.5
/* Random inputs come from this many random values (64 MiB as f32), copied from random offsets. */
#define RANDOM_POOL_ELEMENTS (1u << 24)

/* RoPE geometry of Llama-3-8B: 32 query heads, 8 key/value heads of 128; the packed QKV projection
 * output holds q, k and v heads side by side in each token's row. 8 sequences of 4096 tokens. */
#define ROPE_Q_HEADS 32
#define ROPE_K_HEADS 8
#define ROPE_V_HEADS 8
#define ROPE_HEAD_DIM 128
#define ROPE_SEQUENCE_LEN 4096
/* Softmax scale+mask: an attention score scale, 1/sqrt(64). */
#define SOFTMAX_SCALE 0.125f

typedef enum op_kind { OP_RMSNORM, OP_LAYERNORM, OP_ROPE, OP_SWIGLU, OP_GEGLU, OP_SOFTMAX, OP_COUNT } op_kind;

static const char *const kOpNames[OP_COUNT] = {"rmsnorm", "layernorm", "rope", "swiglu", "geglu", "softmax"};

/* Case variants (bits). */
#define CASE_RESIDUAL (1u << 0)   /* norms: fused residual add (h = x + residual; residual_out = h) */
#define CASE_BIAS (1u << 1)       /* norms: bias besides the weight */
#define CASE_PACKED_QKV (1u << 2) /* rope: q and k are strided views of one packed QKV tensor */
#define CASE_FUSED_INPUT (1u << 3) /* glu: one [rows, 2*inner] gate+up input */
#define CASE_MASK (1u << 4)       /* softmax: scale and a full-size additive mask */

typedef struct shape2 {
  int64_t rows; /* rope: tokens */
  int64_t cols; /* norms, softmax: row length; glu: inner (output columns); rope: unused */
} shape2;

/* One benchmark case: shapes for GPUs and for CPU/software devices ({0, 0}: GPU plan only). The
 * first case of each op is its headline (the one --quick runs and the summary shows). */
typedef struct bench_case {
  op_kind op;
  kf_dtype dtype;
  uint32_t flags;
  shape2 gpu;
  shape2 host;
} bench_case;

/* LLM hidden sizes: 4096 (7-8B models), 8192 (70B); 16384 rows = a prefill batch of tokens; 14336 is
 * Llama-3-8B's MLP width. */
static const bench_case kCases[] = {
    {OP_RMSNORM, KF_BF16, 0, {16384, 8192}, {1024, 4096}},
    {OP_RMSNORM, KF_F32, 0, {16384, 8192}, {1024, 4096}},
    {OP_RMSNORM, KF_BF16, CASE_RESIDUAL, {16384, 8192}, {1024, 4096}},
    {OP_RMSNORM, KF_BF16, 0, {4096, 4096}, {256, 4096}},
    {OP_RMSNORM, KF_F32, 0, {4096, 4096}, {0, 0}},
    {OP_RMSNORM, KF_BF16, CASE_RESIDUAL, {4096, 4096}, {0, 0}},
    {OP_RMSNORM, KF_BF16, 0, {16384, 4096}, {0, 0}},
    {OP_RMSNORM, KF_F32, 0, {16384, 4096}, {0, 0}},
    {OP_RMSNORM, KF_BF16, CASE_RESIDUAL, {16384, 4096}, {0, 0}},
    {OP_RMSNORM, KF_BF16, 0, {32768, 8192}, {0, 0}},
    {OP_RMSNORM, KF_F32, 0, {32768, 8192}, {0, 0}},
    {OP_RMSNORM, KF_BF16, CASE_RESIDUAL, {32768, 8192}, {0, 0}},

    {OP_LAYERNORM, KF_BF16, CASE_BIAS, {16384, 8192}, {1024, 4096}},
    {OP_LAYERNORM, KF_F32, CASE_BIAS, {16384, 8192}, {1024, 4096}},
    {OP_LAYERNORM, KF_BF16, CASE_BIAS | CASE_RESIDUAL, {16384, 8192}, {1024, 4096}},
    {OP_LAYERNORM, KF_BF16, CASE_BIAS, {4096, 4096}, {256, 4096}},
    {OP_LAYERNORM, KF_BF16, CASE_BIAS, {16384, 4096}, {0, 0}},
    {OP_LAYERNORM, KF_BF16, CASE_BIAS, {32768, 8192}, {0, 0}},

    {OP_ROPE, KF_BF16, CASE_PACKED_QKV, {32768, 0}, {1024, 0}},
    {OP_ROPE, KF_F32, CASE_PACKED_QKV, {32768, 0}, {1024, 0}},
    {OP_ROPE, KF_BF16, 0, {32768, 0}, {1024, 0}},
    {OP_ROPE, KF_F32, 0, {32768, 0}, {0, 0}},

    {OP_SWIGLU, KF_BF16, CASE_FUSED_INPUT, {16384, 14336}, {1024, 4096}},
    {OP_SWIGLU, KF_BF16, 0, {16384, 14336}, {1024, 4096}},
    {OP_SWIGLU, KF_F32, CASE_FUSED_INPUT, {16384, 14336}, {0, 0}},

    {OP_GEGLU, KF_BF16, CASE_FUSED_INPUT, {16384, 14336}, {1024, 4096}},
    {OP_GEGLU, KF_BF16, 0, {16384, 14336}, {0, 0}},

    {OP_SOFTMAX, KF_BF16, 0, {16384, 8192}, {1024, 4096}},
    {OP_SOFTMAX, KF_F32, 0, {16384, 8192}, {0, 0}},
    {OP_SOFTMAX, KF_BF16, CASE_MASK, {16384, 8192}, {1024, 4096}},
    {OP_SOFTMAX, KF_BF16, 0, {4096, 32768}, {256, 16384}},
};

#define CASE_COUNT (sizeof kCases / sizeof kCases[0])

typedef struct options {
  bool backend_selected[KF_BACKEND_COUNT];
  bool any_backend_selected;
  bool op_selected[OP_COUNT];
  bool any_op_selected;
  const char *device_list;
  bool gpu_only;
  bool full;
  bool quick;
  int runs;   /* 0: default for the device kind */
  int warmup; /* -1: default for the device kind */
  const char *json_path;
  bool list_only;
} options;

/* How one device is benchmarked. */
typedef struct bench_plan {
  bool host_shapes; /* the small shapes of CPU and software devices */
  uint64_t copy_bytes;
  uint64_t rotation_bytes;
  int warmup;
  int runs;
  double max_case_ms; /* 0: no limit */
  double warm_ms;     /* continuous device work before each case's timed batches (GPUs) */
} bench_plan;

/* The copy bandwidths a device's ops are compared with. */
typedef struct copy_reference {
  double own_gbps;     /* this device through its own API */
  double hw_gbps;      /* the best of the devices that are the same hardware, this one included */
  int hw_best_index;   /* the device that reached hw_gbps */
} copy_reference;

typedef struct result {
  int device_index;
  int hw_index; /* the first device index of the same hardware (kf_device_info.same_device_as) */
  char device[256];
  char device_type[16];
  char backend[16];
  char op[32];
  char variant[32];
  char dtype[16];
  int ndims;
  int64_t dims[4];
  char shape[48];
  double min_bytes;
  double ms;
  double gbps;
  double copy_gbps;
  double hw_copy_gbps;
  int runs;
  int batch;
  bool headline;
} result;

typedef struct results {
  result *items;
  size_t count;
  size_t capacity;
} results;

static void fail_call(const char *what, kf_status status) {
  fprintf(stderr, "kfbench: %s failed: %s: %s\n", what, kf_status_name(status), kf_last_error());
}

/* Evaluates a kfuse call; on failure prints the call, the status and kf_last_error() and jumps to
 * the function's `fail` label. */
#define CHECK(call)                       \
  do {                                    \
    kf_status check_status_ = (call);     \
    if (check_status_ != KF_OK) {         \
      fail_call(#call, check_status_);    \
      goto fail;                          \
    }                                     \
  } while (0)

static bool is_host_device(const kf_device_info *device) {
  return device->type == KF_DEVICE_TYPE_CPU || device->type == KF_DEVICE_TYPE_SOFTWARE;
}

static int hardware_index(const kf_device_info *device) {
  return device->same_device_as >= 0 ? device->same_device_as : device->index;
}

/* ---- random data ---------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t next_random(void) {
  /* xorshift64*: fast, good enough for benchmark data. */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545f4914f6cdd1dull;
}

/* Uniform in [-2, 2) without 0: magnitudes in [2^-24, 2) and a random sign. */
static float random_nonzero(void) {
  uint64_t bits = next_random();
  float magnitude = (float)((bits >> 40) | 1u) * (2.0f / 16777216.0f);
  return (bits & 1u) ? -magnitude : magnitude;
}

/* RANDOM_POOL_ELEMENTS random values per float dtype, made on first use. */
static void *random_pool[KF_DTYPE_COUNT];

static const void *random_pool_of(kf_dtype dtype) {
  if (random_pool[dtype]) return random_pool[dtype];
  if (!random_pool[KF_F32]) {
    float *values = malloc((size_t)RANDOM_POOL_ELEMENTS * sizeof *values);
    if (!values) return NULL;
    for (size_t i = 0; i < RANDOM_POOL_ELEMENTS; ++i) values[i] = random_nonzero();
    random_pool[KF_F32] = values;
  }
  if (dtype != KF_F32) {
    void *converted = malloc((size_t)RANDOM_POOL_ELEMENTS * kf_dtype_size(dtype));
    if (!converted) return NULL;
    if (kf_convert(random_pool[KF_F32], KF_F32, converted, dtype, RANDOM_POOL_ELEMENTS) != KF_OK) {
      free(converted);
      return NULL;
    }
    random_pool[dtype] = converted;
  }
  return random_pool[dtype];
}

static void *host_buffer;
static size_t host_buffer_bytes;

static bool reserve_host_buffer(size_t bytes) {
  if (bytes <= host_buffer_bytes) return true;
  free(host_buffer);
  host_buffer = malloc(bytes);
  host_buffer_bytes = host_buffer ? bytes : 0;
  if (!host_buffer) fprintf(stderr, "kfbench: cannot allocate %zu bytes of host memory\n", bytes);
  return host_buffer != NULL;
}

/* Fills a tensor with random values of its dtype: runs of the pool from random offsets. */
static kf_status fill_random(kf_tensor *tensor) {
  kf_tensor_desc desc = {sizeof desc};
  kf_status status = kf_tensor_get_desc(tensor, &desc);
  if (status != KF_OK) return status;
  const size_t count = (size_t)kf_tensor_numel(tensor);
  const size_t element_size = kf_dtype_size(desc.dtype);
  const char *pool = random_pool_of(desc.dtype);
  if (!pool || !reserve_host_buffer(count * element_size)) return KF_ERROR_OUT_OF_MEMORY;
  for (size_t done = 0; done < count;) {
    size_t start = (size_t)(next_random() % RANDOM_POOL_ELEMENTS);
    size_t n = RANDOM_POOL_ELEMENTS - start;
    if (n > count - done) n = count - done;
    memcpy((char *)host_buffer + done * element_size, pool + start * element_size, n * element_size);
    done += n;
  }
  return kf_tensor_write(tensor, host_buffer, count * element_size);
}

/* ---- timing --------------------------------------------------------------------------------- */

typedef kf_status (*launch_fn)(kf_context *context, void *state, int set);

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* How one case is timed; the last three fields are results. */
typedef struct timing {
  int warmup;
  int runs;            /* timed batches wanted */
  double max_total_ms; /* > 0: fewer batches (at least MIN_TIMED_RUNS) when `runs` would take longer */
  double median_ms;    /* per launch */
  int batch;           /* launches per timed batch */
  int runs_done;
  double warm_ms;      /* device time of continuous work before the timed batches */
} timing;

/* Runs the warm-up launches, sizes a batch so it lasts >= MIN_BATCH_MS, then times the batches and
 * stores the median milliseconds per launch. Launches cycle through `sets` input/output sets, across
 * batch boundaries too, so consecutive launches never reuse a set while others exist. A launch that
 * fails returns its status with kf_last_error() still describing it. */
static kf_status time_launches(kf_context *context, launch_fn launch, void *state, int sets, timing *t) {
  kf_status status = KF_OK;
  int next_set = 0;
  for (int i = 0; i < t->warmup; ++i) {
    if ((status = launch(context, state, next_set)) != KF_OK) return status;
    next_set = (next_set + 1) % sets;
  }
  if ((status = kf_synchronize(context)) != KF_OK) return status;
  /* GPUs lower their clock during idle gaps, and the host-side setup of a case (filling hundreds of MB
   * of inputs) is such a gap. Seen on the H200 under Vulkan: the SM clock fell from 1980 toward
   * 345 MHz and took ~0.5 s of continuous work to come back, halving the first batches' bandwidth.
   * So each case first keeps the device busy for warm_ms (not counted), then times at once. */
  for (double warmed = 0.0, chunk = 1; warmed < t->warm_ms;) {
    double ms = 0.0;
    if ((status = kf_timer_begin(context)) != KF_OK) return status;
    for (int i = 0; i < (int)chunk; ++i) {
      if ((status = launch(context, state, next_set)) != KF_OK) {
        double ignored;
        (void)kf_timer_end(context, &ignored);
        return status;
      }
      next_set = (next_set + 1) % sets;
    }
    if ((status = kf_timer_end(context, &ms)) != KF_OK) return status;
    warmed += ms > 0.0 ? ms : 0.01;
    if (ms < 50.0 && chunk < MAX_BATCH_LAUNCHES) chunk *= 2;
  }

  int batch = 1, runs = t->runs;
  double *samples = calloc((size_t)runs, sizeof *samples);
  if (!samples) return KF_ERROR_OUT_OF_MEMORY;
  for (int run = -1; run < runs; ++run) { /* run -1 calibrates the batch size */
    double ms = 0.0;
    if ((status = kf_timer_begin(context)) != KF_OK) goto done;
    for (int i = 0; i < batch; ++i) {
      if ((status = launch(context, state, next_set)) != KF_OK) {
        double ignored;
        (void)kf_timer_end(context, &ignored); /* closes the timer; the launch failure is reported */
        goto done;
      }
      next_set = (next_set + 1) % sets;
    }
    if ((status = kf_timer_end(context, &ms)) != KF_OK) goto done;
    if (run < 0) {
      const double per_launch = ms > 0.0 ? ms : 1e-6;
      while (batch < MAX_BATCH_LAUNCHES && per_launch * batch < MIN_BATCH_MS) batch *= 2;
      if (t->max_total_ms > 0.0) {
        int affordable = (int)(t->max_total_ms / (per_launch * batch));
        if (affordable < runs) runs = affordable > MIN_TIMED_RUNS ? affordable : MIN_TIMED_RUNS;
      }
      continue;
    }
    samples[run] = ms / batch;
  }
  qsort(samples, (size_t)runs, sizeof *samples, compare_doubles);
  t->median_ms = runs % 2 ? samples[runs / 2] : 0.5 * (samples[runs / 2 - 1] + samples[runs / 2]);
  t->batch = batch;
  t->runs_done = runs;
done:
  free(samples);
  return status;
}

/* ---- results -------------------------------------------------------------------------------- */

static bool push_result(results *all, const result *r) {
  if (all->count == all->capacity) {
    size_t capacity = all->capacity ? 2 * all->capacity : 64;
    result *items = realloc(all->items, capacity * sizeof *items);
    if (!items) return false;
    all->items = items;
    all->capacity = capacity;
  }
  all->items[all->count++] = *r;
  return true;
}

static void init_result(result *r, const kf_device_info *device) {
  memset(r, 0, sizeof *r);
  r->device_index = device->index;
  r->hw_index = hardware_index(device);
  snprintf(r->device, sizeof r->device, "%s", device->name);
  snprintf(r->device_type, sizeof r->device_type, "%s", kf_device_type_name(device->type));
  snprintf(r->backend, sizeof r->backend, "%s", kf_backend_name(device->backend));
}

static void format_percent(char *text, size_t size, double gbps, double reference_gbps) {
  if (reference_gbps > 0)
    snprintf(text, size, "%5.1f%%", 100.0 * gbps / reference_gbps);
  else
    snprintf(text, size, "-");
}

static void print_row(const result *r) {
  char of_copy[16], of_hw_copy[16], runs[24];
  format_percent(of_copy, sizeof of_copy, r->gbps, r->copy_gbps);
  format_percent(of_hw_copy, sizeof of_hw_copy, r->gbps, r->hw_copy_gbps);
  snprintf(runs, sizeof runs, "%dx%d", r->runs, r->batch);
  printf("  %-9s %-20s %-5s %-17s %10.4f %9.1f %8s %10s %9s\n", r->op, r->variant, r->dtype, r->shape, r->ms,
         r->gbps, of_copy, of_hw_copy, runs);
  fflush(stdout);
}

/* ---- copy ----------------------------------------------------------------------------------- */

typedef struct copy_state {
  kf_tensor *src;
  kf_tensor *dst;
} copy_state;

static kf_status launch_copy(kf_context *context, void *state, int set) {
  copy_state *copy = state;
  (void)set;
  return kf_tensor_copy(context, copy->src, copy->dst);
}

/* Measures the copy bandwidth of the device (read + write bytes per second) in its own context;
 * the result's hw_copy_gbps is filled in once every device's copy is known. */
static bool bench_copy(const kf_device_info *device, const bench_plan *plan, result *out) {
  kf_context *context = NULL;
  kf_context_options context_options = KF_CONTEXT_OPTIONS_INIT;
  context_options.device_index = device->index;
  kf_status status = kf_context_create(&context_options, &context);
  if (status != KF_OK) {
    fail_call("kf_context_create", status);
    return false;
  }
  copy_state copy = {NULL, NULL};
  bool ok = false;
  /* f32 [rows, 1M]: the copy is a flat byte stream, the shape only has to hold copy_bytes. */
  const int64_t row_len = 1 << 20;
  int64_t shape[2] = {(int64_t)(plan->copy_bytes / 4 / (uint64_t)row_len), row_len};
  const double bytes = (double)shape[0] * (double)shape[1] * 4.0;
  CHECK(kf_tensor_create(context, KF_F32, 2, shape, &copy.src));
  CHECK(kf_tensor_create(context, KF_F32, 2, shape, &copy.dst));
  CHECK(fill_random(copy.src));
  CHECK(fill_random(copy.dst));
  timing t = {plan->warmup, plan->runs, plan->max_case_ms};
  t.warm_ms = plan->warm_ms;
  CHECK(time_launches(context, launch_copy, &copy, 1, &t));
  init_result(out, device);
  snprintf(out->op, sizeof out->op, "copy");
  snprintf(out->variant, sizeof out->variant, "kf_tensor_copy");
  snprintf(out->dtype, sizeof out->dtype, "f32");
  out->ndims = 2;
  out->dims[0] = shape[0];
  out->dims[1] = shape[1];
  snprintf(out->shape, sizeof out->shape, "%.0f MiB", bytes / (1 << 20));
  out->min_bytes = 2.0 * bytes;
  out->ms = t.median_ms;
  out->gbps = out->min_bytes / (t.median_ms * 1e-3) / 1e9;
  out->copy_gbps = out->gbps;
  out->runs = t.runs_done;
  out->batch = t.batch;
  ok = true;
fail:
  kf_tensor_destroy(copy.src);
  kf_tensor_destroy(copy.dst);
  kf_context_destroy(context);
  return ok;
}

/* ---- op cases ------------------------------------------------------------------------------- */

/* Tensors of one rotation set, by op:
 *   norms:   x, y, residual, residual_out
 *   rope:    q, k, and the packed QKV tensor whose views q and k are (packed-qkv only)
 *   glu:     gate (the fused [rows, 2*inner] input in fused-input), up (NULL in fused-input), out
 *   softmax: x, y, mask */
enum { SLOT_0, SLOT_1, SLOT_2, SLOT_3, SLOTS_PER_SET };

typedef struct case_state {
  const bench_case *c;
  kf_tensor *set[MAX_ROTATION_SETS][SLOTS_PER_SET];
  kf_tensor *weight;    /* norms */
  kf_tensor *bias;      /* norms with CASE_BIAS */
  kf_tensor *positions; /* rope */
} case_state;

static kf_status launch_case(kf_context *context, void *state, int set) {
  const case_state *s = state;
  kf_tensor *const *t = s->set[set];
  switch (s->c->op) {
    case OP_RMSNORM:
    case OP_LAYERNORM: {
      kf_norm_desc desc = KF_NORM_DESC_INIT;
      desc.weight = s->weight;
      desc.bias = s->bias;
      if (s->c->flags & CASE_RESIDUAL) {
        desc.residual = t[SLOT_2];
        desc.residual_out = t[SLOT_3];
      }
      return s->c->op == OP_RMSNORM ? kf_rmsnorm(context, t[SLOT_0], t[SLOT_1], &desc)
                                    : kf_layernorm(context, t[SLOT_0], t[SLOT_1], &desc);
    }
    case OP_ROPE: {
      kf_rope_desc desc = KF_ROPE_DESC_INIT; /* NeoX, cos/sin in the kernel, in place */
      return kf_rope(context, t[SLOT_0], t[SLOT_1], s->positions, &desc);
    }
    case OP_SWIGLU:
    case OP_GEGLU: {
      kf_glu_desc desc = KF_GLU_DESC_INIT;
      desc.activation = s->c->op == OP_SWIGLU ? KF_GLU_SILU : KF_GLU_GELU_TANH;
      return kf_glu(context, t[SLOT_0], t[SLOT_1], t[SLOT_2], &desc);
    }
    case OP_SOFTMAX: {
      kf_softmax_desc desc = KF_SOFTMAX_DESC_INIT;
      if (s->c->flags & CASE_MASK) {
        desc.scale = SOFTMAX_SCALE;
        desc.mask = t[SLOT_2];
      }
      return kf_softmax(context, t[SLOT_0], t[SLOT_1], &desc);
    }
    case OP_COUNT:
      break;
  }
  return KF_ERROR_INTERNAL;
}

static const char *variant_name(const bench_case *c) {
  switch (c->op) {
    case OP_RMSNORM:
      return c->flags & CASE_RESIDUAL ? "weight+residual" : "weight";
    case OP_LAYERNORM:
      return c->flags & CASE_RESIDUAL ? "weight+bias+residual" : "weight+bias";
    case OP_ROPE:
      return c->flags & CASE_PACKED_QKV ? "packed-qkv" : "separate-qk";
    case OP_SWIGLU:
    case OP_GEGLU:
      return c->flags & CASE_FUSED_INPUT ? "fused-input" : "two-tensors";
    case OP_SOFTMAX:
      return c->flags & CASE_MASK ? "scale+mask" : "plain";
    case OP_COUNT:
      break;
  }
  return "?";
}

/* The case's shape as printed and as JSON dims (rope: tokens, q heads, k heads, head_dim). */
static void describe_shape(const bench_case *c, shape2 shape, result *r) {
  if (c->op == OP_ROPE) {
    r->ndims = 4;
    r->dims[0] = shape.rows;
    r->dims[1] = ROPE_Q_HEADS;
    r->dims[2] = ROPE_K_HEADS;
    r->dims[3] = ROPE_HEAD_DIM;
    snprintf(r->shape, sizeof r->shape, "%" PRId64 "x(%d+%d)x%d", shape.rows, ROPE_Q_HEADS, ROPE_K_HEADS,
             ROPE_HEAD_DIM);
  } else {
    r->ndims = 2;
    r->dims[0] = shape.rows;
    r->dims[1] = shape.cols;
    snprintf(r->shape, sizeof r->shape, "%" PRId64 "x%" PRId64, shape.rows, shape.cols);
  }
}

/* Minimum bytes per launch (`total`) and bytes one rotation set touches (`per_set`). */
static void case_bytes(const bench_case *c, shape2 shape, double *total, double *per_set) {
  const double element_size = (double)kf_dtype_size(c->dtype);
  const double matrix = (double)shape.rows * (double)shape.cols * element_size;
  switch (c->op) {
    case OP_RMSNORM:
    case OP_LAYERNORM: {
      /* x (+ residual) read, y (+ residual_out) written; weight (+ bias) read once. */
      *per_set = (c->flags & CASE_RESIDUAL ? 4.0 : 2.0) * matrix;
      *total = *per_set + (c->flags & CASE_BIAS ? 2.0 : 1.0) * (double)shape.cols * element_size;
      return;
    }
    case OP_ROPE: {
      /* q and k read and written once (v is not touched), positions (int32) read once. */
      const double qk = (double)shape.rows * (ROPE_Q_HEADS + ROPE_K_HEADS) * ROPE_HEAD_DIM * element_size;
      *per_set = 2.0 * qk;
      *total = *per_set + (double)shape.rows * 4.0;
      return;
    }
    case OP_SWIGLU:
    case OP_GEGLU:
      *per_set = *total = 3.0 * matrix; /* gate and up read, out written */
      return;
    case OP_SOFTMAX:
      *per_set = *total = (c->flags & CASE_MASK ? 3.0 : 2.0) * matrix; /* x (+ mask) read, y written */
      return;
    case OP_COUNT:
      break;
  }
  *per_set = *total = 0.0;
}

/* Creates the tensors of one rotation set and fills its inputs. */
static kf_status create_set(kf_context *context, const bench_case *c, shape2 shape, kf_tensor **t) {
  kf_status status = KF_OK;
  const kf_dtype dtype = c->dtype;
  const int64_t matrix[2] = {shape.rows, shape.cols};
#define TRY(call)                              \
  do {                                         \
    if ((status = (call)) != KF_OK) {          \
      fail_call(#call, status);                \
      return status;                           \
    }                                          \
  } while (0)
  switch (c->op) {
    case OP_RMSNORM:
    case OP_LAYERNORM:
      TRY(kf_tensor_create(context, dtype, 2, matrix, &t[SLOT_0]));
      TRY(kf_tensor_create(context, dtype, 2, matrix, &t[SLOT_1]));
      TRY(fill_random(t[SLOT_0]));
      if (c->flags & CASE_RESIDUAL) {
        TRY(kf_tensor_create(context, dtype, 2, matrix, &t[SLOT_2]));
        TRY(kf_tensor_create(context, dtype, 2, matrix, &t[SLOT_3]));
        TRY(fill_random(t[SLOT_2]));
      }
      break;
    case OP_ROPE: {
      const int64_t q_shape[3] = {shape.rows, ROPE_Q_HEADS, ROPE_HEAD_DIM};
      const int64_t k_shape[3] = {shape.rows, ROPE_K_HEADS, ROPE_HEAD_DIM};
      if (c->flags & CASE_PACKED_QKV) {
        /* [tokens, (q | k | v heads) * head_dim]; q and k are views with the packed row as token stride. */
        const int64_t qkv_shape[3] = {shape.rows, ROPE_Q_HEADS + ROPE_K_HEADS + ROPE_V_HEADS, ROPE_HEAD_DIM};
        const int64_t strides[3] = {qkv_shape[1] * ROPE_HEAD_DIM, ROPE_HEAD_DIM, 1};
        TRY(kf_tensor_create(context, dtype, 3, qkv_shape, &t[SLOT_2]));
        TRY(fill_random(t[SLOT_2]));
        TRY(kf_tensor_view(t[SLOT_2], 3, q_shape, strides, 0, &t[SLOT_0]));
        TRY(kf_tensor_view(t[SLOT_2], 3, k_shape, strides, (int64_t)ROPE_Q_HEADS * ROPE_HEAD_DIM, &t[SLOT_1]));
      } else {
        TRY(kf_tensor_create(context, dtype, 3, q_shape, &t[SLOT_0]));
        TRY(kf_tensor_create(context, dtype, 3, k_shape, &t[SLOT_1]));
        TRY(fill_random(t[SLOT_0]));
        TRY(fill_random(t[SLOT_1]));
      }
      break;
    }
    case OP_SWIGLU:
    case OP_GEGLU:
      if (c->flags & CASE_FUSED_INPUT) {
        const int64_t fused[2] = {shape.rows, 2 * shape.cols};
        TRY(kf_tensor_create(context, dtype, 2, fused, &t[SLOT_0]));
        TRY(fill_random(t[SLOT_0]));
      } else {
        TRY(kf_tensor_create(context, dtype, 2, matrix, &t[SLOT_0]));
        TRY(kf_tensor_create(context, dtype, 2, matrix, &t[SLOT_1]));
        TRY(fill_random(t[SLOT_0]));
        TRY(fill_random(t[SLOT_1]));
      }
      TRY(kf_tensor_create(context, dtype, 2, matrix, &t[SLOT_2]));
      break;
    case OP_SOFTMAX:
      TRY(kf_tensor_create(context, dtype, 2, matrix, &t[SLOT_0]));
      TRY(kf_tensor_create(context, dtype, 2, matrix, &t[SLOT_1]));
      TRY(fill_random(t[SLOT_0]));
      if (c->flags & CASE_MASK) {
        TRY(kf_tensor_create(context, dtype, 2, matrix, &t[SLOT_2]));
        TRY(fill_random(t[SLOT_2]));
      }
      break;
    case OP_COUNT:
      return KF_ERROR_INTERNAL;
  }
#undef TRY
  return KF_OK;
}

/* Tensors every set shares: the norm weight (+ bias), the rope positions (8 sequences of 4096). */
static kf_status create_shared(kf_context *context, const bench_case *c, shape2 shape, case_state *s) {
  kf_status status = KF_OK;
  if (c->op == OP_RMSNORM || c->op == OP_LAYERNORM) {
    if ((status = kf_tensor_create(context, c->dtype, 1, &shape.cols, &s->weight)) != KF_OK) return status;
    if ((status = fill_random(s->weight)) != KF_OK) return status;
    if (c->flags & CASE_BIAS) {
      if ((status = kf_tensor_create(context, c->dtype, 1, &shape.cols, &s->bias)) != KF_OK) return status;
      if ((status = fill_random(s->bias)) != KF_OK) return status;
    }
  } else if (c->op == OP_ROPE) {
    if ((status = kf_tensor_create(context, KF_I32, 1, &shape.rows, &s->positions)) != KF_OK) return status;
    int32_t *positions = malloc((size_t)shape.rows * sizeof *positions);
    if (!positions) return KF_ERROR_OUT_OF_MEMORY;
    for (int64_t i = 0; i < shape.rows; ++i) positions[i] = (int32_t)(i % ROPE_SEQUENCE_LEN);
    status = kf_tensor_write(s->positions, positions, (size_t)shape.rows * sizeof *positions);
    free(positions);
  }
  return status;
}

typedef enum case_outcome { CASE_DONE, CASE_FAILED, CASE_UNAVAILABLE } case_outcome;

/* Sets up, times and records one case. CASE_UNAVAILABLE: the backend lacks the op or this layout
 * (KF_ERROR_UNSUPPORTED from the launch); `reason` gets kf_last_error()'s words for it (the cleanup's
 * calls reset kf_last_error()). */
static case_outcome run_case(kf_context *context, const kf_device_info *device, const bench_plan *plan,
                             const bench_case *c, bool headline, const copy_reference *copy, results *all,
                             char *reason, size_t reason_size) {
  const shape2 shape = plan->host_shapes ? c->host : c->gpu;
  case_state state;
  memset(&state, 0, sizeof state);
  state.c = c;
  case_outcome outcome = CASE_FAILED;
  double min_bytes = 0.0, set_bytes = 0.0;
  case_bytes(c, shape, &min_bytes, &set_bytes);
  int sets = (int)((double)plan->rotation_bytes / set_bytes + 0.999);
  if (sets < 1) sets = 1;
  if (sets > MAX_ROTATION_SETS) sets = MAX_ROTATION_SETS;

  kf_status status = create_shared(context, c, shape, &state);
  if (status != KF_OK) {
    fail_call("creating the shared tensors", status);
    goto done;
  }
  for (int i = 0; i < sets; ++i)
    if (create_set(context, c, shape, state.set[i]) != KF_OK) goto done;

  timing t = {plan->warmup, plan->runs, plan->max_case_ms};
  t.warm_ms = plan->warm_ms;
  status = time_launches(context, launch_case, &state, sets, &t);
  if (status == KF_ERROR_UNSUPPORTED) {
    snprintf(reason, reason_size, "%s", kf_last_error());
    outcome = CASE_UNAVAILABLE;
    goto done;
  }
  if (status != KF_OK) {
    fprintf(stderr, "kfbench: %s %s %s failed: %s: %s\n", kOpNames[c->op], variant_name(c), kf_dtype_name(c->dtype),
            kf_status_name(status), kf_last_error());
    goto done;
  }
  result r;
  init_result(&r, device);
  snprintf(r.op, sizeof r.op, "%s", kOpNames[c->op]);
  snprintf(r.variant, sizeof r.variant, "%s", variant_name(c));
  snprintf(r.dtype, sizeof r.dtype, "%s", kf_dtype_name(c->dtype));
  describe_shape(c, shape, &r);
  r.min_bytes = min_bytes;
  r.ms = t.median_ms;
  r.gbps = min_bytes / (t.median_ms * 1e-3) / 1e9;
  r.copy_gbps = copy->own_gbps;
  r.hw_copy_gbps = copy->hw_gbps;
  r.runs = t.runs_done;
  r.batch = t.batch;
  r.headline = headline;
  print_row(&r);
  outcome = push_result(all, &r) ? CASE_DONE : CASE_FAILED;
done:
  kf_tensor_destroy(state.weight);
  kf_tensor_destroy(state.bias);
  kf_tensor_destroy(state.positions);
  for (int i = 0; i < MAX_ROTATION_SETS; ++i)
    for (int slot = 0; slot < SLOTS_PER_SET; ++slot) kf_tensor_destroy(state.set[i][slot]);
  /* Gives the case's cached blocks back to the device, so memory the cache holds never makes a larger
   * next case fail. */
  status = kf_memory_trim(context);
  if (status != KF_OK) fail_call("kf_memory_trim", status);
  return outcome;
}

static bench_plan make_plan(const kf_device_info *device, const options *opts) {
  bench_plan plan;
  const bool host_like = is_host_device(device) && !opts->full;
  plan.host_shapes = host_like;
  plan.copy_bytes = !host_like ? GPU_COPY_BYTES : opts->quick ? QUICK_HOST_COPY_BYTES : HOST_COPY_BYTES;
  plan.rotation_bytes = is_host_device(device) ? HOST_ROTATION_BYTES : GPU_ROTATION_BYTES;
  plan.warmup = opts->warmup >= 0 ? opts->warmup : opts->quick ? 2 : host_like ? 3 : 5;
  plan.runs = opts->runs > 0 ? opts->runs : opts->quick ? 5 : host_like ? 10 : 20;
  plan.max_case_ms = host_like && opts->runs == 0 ? HOST_CASE_BUDGET_MS : 0.0;
  plan.warm_ms = is_host_device(device) ? 0.0 : opts->quick ? 100.0 : GPU_WARM_MS;
  return plan;
}

/* All op cases on one device; false if any failed (the others still run). An op the backend lacks
 * is not a failure. */
static bool bench_device(const kf_device_info *device, const options *opts, const copy_reference *copy,
                         const kf_device_info *devices, results *all) {
  const bench_plan plan = make_plan(device, opts);
  printf("\n#%d %s (%s, %s, %.1f GiB)\n", device->index, device->name, kf_backend_name(device->backend),
         kf_device_type_name(device->type), (double)device->memory_bytes / (double)(1ull << 30));
  if (copy->own_gbps > 0) {
    printf("  copy: %.1f GB/s through this API; best copy of this hardware in this run: %.1f GB/s (#%d %s)\n",
           copy->own_gbps, copy->hw_gbps, copy->hw_best_index, kf_backend_name(devices[copy->hw_best_index].backend));
    if (copy->own_gbps < SLOW_COPY_FRACTION * copy->hw_gbps)
      printf("  warning: this API's copy reaches %.0f%% of the hardware's best copy: its 'of copy' overstates "
             "the ops; read 'of hw copy'\n",
             100.0 * copy->own_gbps / copy->hw_gbps);
  }
  printf("  %-9s %-20s %-5s %-17s %10s %9s %8s %10s %9s\n", "op", "variant", "dtype", "shape", "median ms", "GB/s",
         "of copy", "of hw copy", "runs");
  fflush(stdout);

  kf_context *context = NULL;
  kf_context_options context_options = KF_CONTEXT_OPTIONS_INIT;
  context_options.device_index = device->index;
  kf_status status = kf_context_create(&context_options, &context);
  if (status != KF_OK) {
    fail_call("kf_context_create", status);
    return false;
  }
  bool ok = true;
  bool op_seen[OP_COUNT] = {false};      /* the op's first (headline) case was reached */
  bool op_attempted[OP_COUNT] = {false}; /* a case of the op was run on this device */
  bool op_missing[OP_COUNT] = {false};   /* the backend lacks the op */
  for (size_t i = 0; i < CASE_COUNT; ++i) {
    const bench_case *c = &kCases[i];
    const bool headline = !op_seen[c->op];
    op_seen[c->op] = true;
    if (opts->any_op_selected && !opts->op_selected[c->op]) continue;
    if (op_missing[c->op] || (opts->quick && !headline)) continue;
    if (plan.host_shapes && c->host.rows == 0) continue;
    const bool first_of_op = !op_attempted[c->op];
    op_attempted[c->op] = true;
    char reason[512] = "";
    switch (run_case(context, device, &plan, c, headline, copy, all, reason, sizeof reason)) {
      case CASE_DONE:
        break;
      case CASE_FAILED:
        ok = false;
        break;
      case CASE_UNAVAILABLE:
        if (first_of_op) {
          /* The op itself is missing: one line, and none of its other cases. */
          printf("  %-9s op not available on this backend (%s)\n", kOpNames[c->op], reason);
          op_missing[c->op] = true;
        } else {
          printf("  %-9s %-20s %-5s not available on this backend (%s)\n", kOpNames[c->op], variant_name(c),
                 kf_dtype_name(c->dtype), reason);
        }
        fflush(stdout);
        break;
    }
  }
  kf_context_destroy(context);
  return ok;
}

/* ---- output --------------------------------------------------------------------------------- */

static void json_string(FILE *out, const char *text) {
  fputc('"', out);
  for (const unsigned char *c = (const unsigned char *)text; *c; ++c) {
    if (*c == '"' || *c == '\\')
      fprintf(out, "\\%c", *c);
    else if (*c < 0x20)
      fprintf(out, "\\u%04x", *c);
    else
      fputc(*c, out);
  }
  fputc('"', out);
}

static void json_field(FILE *out, const char *name, const char *value) {
  fprintf(out, ", \"%s\": ", name);
  json_string(out, value);
}

static bool write_json(const char *path, const char *date, const results *all) {
  FILE *out = fopen(path, "w");
  if (!out) {
    fprintf(stderr, "kfbench: cannot write %s: %s\n", path, strerror(errno));
    return false;
  }
  fprintf(out, "{\n  \"kfuse_version\": ");
  json_string(out, kf_version_string());
  fprintf(out, ",\n  \"date\": ");
  json_string(out, date);
  fprintf(out, ",\n  \"bytes\": ");
  json_string(out, "minimum bytes: each input read once, each output written once; copy: read + written");
  fprintf(out, ",\n  \"results\": [");
  for (size_t i = 0; i < all->count; ++i) {
    const result *r = &all->items[i];
    fprintf(out, "%s\n    {\"date\": ", i ? "," : "");
    json_string(out, date);
    fprintf(out, ", \"device_index\": %d, \"hw_index\": %d", r->device_index, r->hw_index);
    json_field(out, "device", r->device);
    json_field(out, "device_type", r->device_type);
    json_field(out, "backend", r->backend);
    json_field(out, "op", r->op);
    json_field(out, "variant", r->variant);
    json_field(out, "dtype", r->dtype);
    fprintf(out, ", \"shape\": [");
    for (int d = 0; d < r->ndims; ++d) fprintf(out, "%s%" PRId64, d ? ", " : "", r->dims[d]);
    fprintf(out, "]");
    json_field(out, "shape_text", r->shape);
    fprintf(out,
            ", \"bytes\": %.0f, \"ms\": %.6f, \"gbps\": %.2f, \"copy_gbps\": %.2f, \"fraction\": %.4f, "
            "\"hw_copy_gbps\": %.2f, \"hw_fraction\": %.4f, \"runs\": %d, \"batch\": %d, \"headline\": %s}",
            r->min_bytes, r->ms, r->gbps, r->copy_gbps, r->copy_gbps > 0 ? r->gbps / r->copy_gbps : 0.0,
            r->hw_copy_gbps, r->hw_copy_gbps > 0 ? r->gbps / r->hw_copy_gbps : 0.0, r->runs, r->batch,
            r->headline ? "true" : "false");
  }
  fprintf(out, "\n  ]\n}\n");
  bool ok = ferror(out) == 0;
  if (fclose(out) != 0) ok = false;
  if (!ok) fprintf(stderr, "kfbench: error writing %s\n", path);
  return ok;
}

/* ---- command line --------------------------------------------------------------------------- */

static bool parse_count(const char *text, int minimum, int *out) {
  char *end = NULL;
  long value = strtol(text, &end, 10);
  if (end == text || *end != '\0' || value < minimum || value > 100000) return false;
  *out = (int)value;
  return true;
}

static bool parse_backends(const char *list, options *opts) {
  char buffer[256];
  snprintf(buffer, sizeof buffer, "%s", list);
  for (char *save = NULL, *name = strtok_r(buffer, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
    kf_backend backend;
    if (kf_backend_from_name(name, &backend) != KF_OK) {
      fprintf(stderr, "kfbench: unknown backend '%s' (cpu, cuda, opencl, vulkan)\n", name);
      return false;
    }
    opts->backend_selected[backend] = true;
    opts->any_backend_selected = true;
  }
  return true;
}

static bool parse_ops(const char *list, options *opts) {
  char buffer[256];
  snprintf(buffer, sizeof buffer, "%s", list);
  for (char *save = NULL, *name = strtok_r(buffer, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
    int op = 0;
    while (op < OP_COUNT && strcasecmp(name, kOpNames[op]) != 0) ++op;
    if (op == OP_COUNT) {
      fprintf(stderr, "kfbench: unknown op '%s' (rmsnorm, layernorm, rope, swiglu, geglu, softmax)\n", name);
      return false;
    }
    opts->op_selected[op] = true;
    opts->any_op_selected = true;
  }
  return true;
}

/* Whether --device selects this device (a list of indices and name substrings). */
static bool device_matches(const char *list, const kf_device_info *device) {
  char buffer[512];
  snprintf(buffer, sizeof buffer, "%s", list);
  for (char *save = NULL, *item = strtok_r(buffer, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
    char *end = NULL;
    long index = strtol(item, &end, 10);
    if (end != item && *end == '\0') {
      if (index == device->index) return true;
    } else if (strcasestr(device->name, item)) {
      return true;
    }
  }
  return false;
}

static void print_summary(const results *all) {
  printf("\nsummary: each op's headline case per device; median device time; bandwidth beside the copy of the "
         "same API and the best copy of the same hardware in this run\n");
  printf("  %-3s %-7s %-28s %-9s %-20s %-5s %-17s %9s %8s %9s %8s %9s %10s\n", "#", "backend", "device", "op",
         "variant", "dtype", "shape", "ms", "GB/s", "copy GB/s", "of copy", "hw copy", "of hw copy");
  for (size_t i = 0; i < all->count; ++i) {
    const result *r = &all->items[i];
    if (!r->headline) continue;
    char of_copy[16], of_hw_copy[16];
    format_percent(of_copy, sizeof of_copy, r->gbps, r->copy_gbps);
    format_percent(of_hw_copy, sizeof of_hw_copy, r->gbps, r->hw_copy_gbps);
    printf("  %-3d %-7s %-28.28s %-9s %-20s %-5s %-17s %9.4f %8.1f %9.1f %8s %9.1f %10s\n", r->device_index,
           r->backend, r->device, r->op, r->variant, r->dtype, r->shape, r->ms, r->gbps, r->copy_gbps, of_copy,
           r->hw_copy_gbps, of_hw_copy);
  }
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* progress shows line by line when piped to a log */
  options opts;
  memset(&opts, 0, sizeof opts);
  opts.warmup = -1;
  for (int i = 1; i < argc; ++i) {
    const char *arg = argv[i];
    if (strncmp(arg, "--backend=", 10) == 0) {
      if (!parse_backends(arg + 10, &opts)) return 2;
    } else if (strncmp(arg, "--op=", 5) == 0) {
      if (!parse_ops(arg + 5, &opts)) return 2;
    } else if (strncmp(arg, "--device=", 9) == 0) {
      opts.device_list = arg + 9;
    } else if (strcmp(arg, "--gpu-only") == 0) {
      opts.gpu_only = true;
    } else if (strcmp(arg, "--full") == 0) {
      opts.full = true;
    } else if (strcmp(arg, "--quick") == 0) {
      opts.quick = true;
    } else if (strncmp(arg, "--runs=", 7) == 0) {
      if (!parse_count(arg + 7, 1, &opts.runs)) {
        fprintf(stderr, "kfbench: --runs needs a count >= 1\n");
        return 2;
      }
    } else if (strncmp(arg, "--warmup=", 9) == 0) {
      if (!parse_count(arg + 9, 0, &opts.warmup)) {
        fprintf(stderr, "kfbench: --warmup needs a count >= 0\n");
        return 2;
      }
    } else if (strncmp(arg, "--json=", 7) == 0 && arg[7]) {
      opts.json_path = arg + 7;
    } else if (strcmp(arg, "--list") == 0) {
      opts.list_only = true;
    } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      fputs(kUsage, stdout);
      return 0;
    } else {
      fprintf(stderr, "kfbench: unknown option '%s'\n\n%s", arg, kUsage);
      return 2;
    }
  }

  const kf_device_info *devices = NULL;
  size_t device_count = 0;
  kf_status status = kf_devices(&devices, &device_count);
  if (status != KF_OK) {
    fail_call("kf_devices", status);
    return 1;
  }
  if (device_count > 256) device_count = 256;

  char date[32];
  time_t now = time(NULL);
  struct tm utc;
  gmtime_r(&now, &utc);
  strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &utc);
  printf("kfbench — kfuse %s, %s\n", kf_version_string(), date);

  bool selected[256] = {false};
  size_t selected_count = 0;
  for (size_t i = 0; i < device_count; ++i) {
    const kf_device_info *device = &devices[i];
    bool use = true;
    if (opts.any_backend_selected && !opts.backend_selected[device->backend]) use = false;
    if (opts.device_list && !device_matches(opts.device_list, device)) use = false;
    if (opts.gpu_only && is_host_device(device)) use = false;
    selected[i] = use;
    selected_count += use;
    if (opts.list_only)
      printf("  %s #%zu %-7s %-14s %s\n", use ? "*" : " ", i, kf_backend_name(device->backend),
             kf_device_type_name(device->type), device->name);
  }
  if (opts.list_only) return 0;
  if (selected_count == 0) {
    fprintf(stderr, "kfbench: no device matches the selection (see --list)\n");
    return 1;
  }

  results all = {NULL, 0, 0};
  bool ok = true;

  /* Copies first, on every selected device, so each op row can name the best copy of its hardware. */
  printf("\ncopy bandwidth of every selected device (kf_tensor_copy through its API; bytes read + written)\n");
  printf("  %-3s %-7s %-32s %-9s %10s %9s %10s %9s\n", "#", "backend", "device", "size", "median ms", "GB/s",
         "of hw copy", "runs");
  static result copies[256];
  static bool copy_done[256];
  for (size_t i = 0; i < device_count; ++i) {
    if (!selected[i]) continue;
    const bench_plan plan = make_plan(&devices[i], &opts);
    copy_done[i] = bench_copy(&devices[i], &plan, &copies[i]);
    if (!copy_done[i]) ok = false;
  }
  copy_reference references[256];
  memset(references, 0, sizeof references);
  for (size_t i = 0; i < device_count; ++i) {
    if (!copy_done[i]) continue;
    copy_reference *ref = &references[i];
    ref->own_gbps = copies[i].gbps;
    ref->hw_gbps = copies[i].gbps;
    ref->hw_best_index = (int)i;
    for (size_t j = 0; j < device_count; ++j) {
      if (copy_done[j] && copies[j].hw_index == copies[i].hw_index && copies[j].gbps > ref->hw_gbps) {
        ref->hw_gbps = copies[j].gbps;
        ref->hw_best_index = (int)j;
      }
    }
    result *r = &copies[i];
    r->hw_copy_gbps = ref->hw_gbps;
    char of_hw_copy[16], runs[24];
    format_percent(of_hw_copy, sizeof of_hw_copy, r->gbps, r->hw_copy_gbps);
    snprintf(runs, sizeof runs, "%dx%d", r->runs, r->batch);
    printf("  %-3d %-7s %-32.32s %-9s %10.4f %9.1f %10s %9s\n", r->device_index, r->backend, r->device, r->shape, r->ms,
           r->gbps, of_hw_copy, runs);
    if (!push_result(&all, r)) ok = false;
  }

  for (size_t i = 0; i < device_count; ++i) {
    if (selected[i] && !bench_device(&devices[i], &opts, &references[i], devices, &all)) ok = false;
  }

  print_summary(&all);
  if (opts.json_path) {
    if (write_json(opts.json_path, date, &all))
      printf("\nresults written to %s\n", opts.json_path);
    else
      ok = false;
  }
  if (!ok) fprintf(stderr, "kfbench: some cases failed (see above)\n");
  free(all.items);
  free(host_buffer);
  for (int d = 0; d < KF_DTYPE_COUNT; ++d) free(random_pool[d]);
  return ok ? 0 : 1;
}

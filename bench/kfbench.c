/* kfbench — times kfuse ops on each device with device-side timers and reports the bandwidth they
 * reach beside the device's own copy bandwidth, measured in the same run.
 *
 * Method (why each step is there):
 *  - device timers (kf_timer_begin/end: CUDA events, OpenCL profiling, Vulkan timestamps) around a
 *    batch of launches, divided by the batch size: one launch of a small shape is shorter than the
 *    host's launch latency, so timing launches one by one would measure the host;
 *  - warm-up runs first (kernel compilation, first-touch of memory, clocks ramping up), then the
 *    median of the timed batches;
 *  - several input/output sets are rotated so the memory touched by consecutive launches is at least
 *    4x a 60 MB L2 (H200 has 60 MB), otherwise small shapes would be served from cache;
 *  - inputs are random and nonzero (all-zero data can take shortcuts in memory compression);
 *  - bandwidth counts the minimum bytes an op must move: RMSNorm reads x (and residual) once, writes
 *    y (and residual_out) once and reads the weight once; a copy reads and writes its bytes once.
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
    "Times RMSNorm (bf16 and f32, with weight, and with a fused residual) at LLM shapes on every\n"
    "device of every available backend, beside the device's own copy bandwidth (kf_tensor_copy)\n"
    "measured in the same run. Times are device-side (kf_timer_begin/kf_timer_end).\n"
    "\n"
    "By default every device is benchmarked. GPUs get the full shapes (16384x8192 is the headline),\n"
    "a >= 1 GiB copy, 5 warm-up and 20 timed runs. The CPU backend and software drivers (PoCL,\n"
    "lavapipe) get small shapes, a 256 MiB copy and fewer runs (each case stops after about 4 s of\n"
    "timed runs), so each such device takes well under a minute.\n"
    "\n"
    "options:\n"
    "  --backend=LIST     only these backends, comma separated (cpu,cuda,opencl,vulkan)\n"
    "  --device=LIST      only these devices: index into the device list, or a case-insensitive\n"
    "                     substring of the device name; comma separated\n"
    "  --gpu-only         skip the CPU backend and software drivers (PoCL, lavapipe)\n"
    "  --full             full GPU shapes and run counts on CPU and software devices too (slow)\n"
    "  --quick            the headline shape only and fewer runs (a smoke test, not a measurement)\n"
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
/* CPU and software devices can take a quarter of a second per launch (lavapipe): their cases stop
 * after about this long, with at least MIN_TIMED_RUNS timed runs, so a device takes under a minute. */
#define HOST_CASE_BUDGET_MS 4000.0
#define MIN_TIMED_RUNS 3
#define GPU_COPY_BYTES (1ull << 30)
#define HOST_COPY_BYTES (256ull << 20)
#define QUICK_HOST_COPY_BYTES (64ull << 20)

typedef struct shape2 {
  int64_t rows;
  int64_t row_len;
} shape2;

/* LLM hidden sizes: 4096 (7-8B models), 8192 (70B); 16384 rows = a prefill batch of tokens. */
static const shape2 kGpuShapes[] = {{16384, 8192}, {4096, 4096}, {16384, 4096}, {32768, 8192}};
static const shape2 kHostShapes[] = {{1024, 4096}, {256, 4096}};

typedef struct options {
  bool backend_selected[KF_BACKEND_COUNT];
  bool any_backend_selected;
  const char *device_list;
  bool gpu_only;
  bool full;
  bool quick;
  int runs;   /* 0: default for the device kind */
  int warmup; /* -1: default for the device kind */
  const char *json_path;
  bool list_only;
} options;

typedef struct result {
  int device_index;
  char device[256];
  char backend[16];
  char op[32];
  char variant[32];
  char dtype[16];
  int64_t rows;
  int64_t row_len;
  double ms;
  double gbps;
  double copy_gbps;
  int runs;
  int batch;
  bool headline; /* the first shape of the device's plan */
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

/* ---- random data ---------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t next_random(void) {
  /* xorshift64*: fast enough to fill gigabytes, good enough for benchmark data. */
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

/* Fills a tensor with fresh random values, converted to its dtype in chunks. */
static kf_status fill_random(kf_tensor *tensor, void *host, size_t host_bytes) {
  kf_tensor_desc desc = {sizeof desc};
  kf_status status = kf_tensor_get_desc(tensor, &desc);
  if (status != KF_OK) return status;
  size_t count = (size_t)kf_tensor_numel(tensor);
  size_t element_size = kf_dtype_size(desc.dtype);
  if (count * element_size > host_bytes) return KF_ERROR_INTERNAL;
  enum { CHUNK = 1 << 16 };
  static float chunk[CHUNK];
  for (size_t done = 0; done < count; done += CHUNK) {
    size_t n = count - done < CHUNK ? count - done : CHUNK;
    for (size_t i = 0; i < n; ++i) chunk[i] = random_nonzero();
    status = kf_convert(chunk, KF_F32, (char *)host + done * element_size, desc.dtype, n);
    if (status != KF_OK) return status;
  }
  return kf_tensor_write(tensor, host, count * element_size);
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
} timing;

/* Runs the warm-up launches, sizes a batch so it lasts >= MIN_BATCH_MS, then times the batches and
 * stores the median milliseconds per launch. Launches cycle through `sets` input/output sets, across
 * batch boundaries too, so consecutive launches never reuse a set while others exist. */
static kf_status time_launches(kf_context *context, launch_fn launch, void *state, int sets, timing *t) {
  kf_status status = KF_OK;
  int next_set = 0;
  for (int i = 0; i < t->warmup; ++i) {
    if ((status = launch(context, state, next_set)) != KF_OK) return status;
    next_set = (next_set + 1) % sets;
  }
  if ((status = kf_synchronize(context)) != KF_OK) return status;

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

/* ---- cases ---------------------------------------------------------------------------------- */

typedef struct copy_state {
  kf_tensor *src;
  kf_tensor *dst;
} copy_state;

static kf_status launch_copy(kf_context *context, void *state, int set) {
  copy_state *copy = state;
  (void)set;
  return kf_tensor_copy(context, copy->src, copy->dst);
}

typedef struct norm_set {
  kf_tensor *x;
  kf_tensor *y;
  kf_tensor *residual;
  kf_tensor *residual_out;
} norm_set;

typedef struct norm_state {
  norm_set sets[MAX_ROTATION_SETS];
  kf_tensor *weight;
  bool with_residual;
} norm_state;

static kf_status launch_rmsnorm(kf_context *context, void *state, int set) {
  norm_state *norm = state;
  norm_set *s = &norm->sets[set];
  kf_norm_desc desc = KF_NORM_DESC_INIT;
  desc.weight = norm->weight;
  if (norm->with_residual) {
    desc.residual = s->residual;
    desc.residual_out = s->residual_out;
  }
  return kf_rmsnorm(context, s->x, s->y, &desc);
}

typedef struct bench_plan {
  const shape2 *shapes;
  size_t shape_count;
  uint64_t copy_bytes;
  uint64_t rotation_bytes;
  int warmup;
  int runs;
  double max_case_ms; /* 0: no limit */
} bench_plan;

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

static void print_row(const result *r) {
  char shape[48];
  if (strcmp(r->op, "copy") == 0)
    snprintf(shape, sizeof shape, "%.0f MiB", (double)r->rows * (double)r->row_len * 4.0 / (1 << 20));
  else
    snprintf(shape, sizeof shape, "%" PRId64 "x%" PRId64, r->rows, r->row_len);
  char fraction[16] = "";
  if (strcmp(r->op, "copy") != 0 && r->copy_gbps > 0)
    snprintf(fraction, sizeof fraction, "%5.1f%%", 100.0 * r->gbps / r->copy_gbps);
  char runs[24];
  snprintf(runs, sizeof runs, "%dx%d", r->runs, r->batch);
  printf("  %-8s %-16s %-5s %-13s %10.4f %9.1f %8s %9s\n", r->op, r->variant, r->dtype, shape, r->ms, r->gbps,
         fraction, runs);
  fflush(stdout);
}

/* Measures the copy bandwidth of the device (read + write bytes per second). */
static bool bench_copy(kf_context *context, const kf_device_info *device, const bench_plan *plan, results *all,
                       double *out_copy_gbps) {
  copy_state copy = {NULL, NULL};
  bool ok = false;
  /* f32 [rows, 1M]: the copy is a flat byte stream, the shape only has to hold copy_bytes. */
  const int64_t row_len = 1 << 20;
  int64_t shape[2] = {(int64_t)(plan->copy_bytes / 4 / (uint64_t)row_len), row_len};
  size_t bytes = (size_t)(shape[0] * shape[1]) * 4u;
  CHECK(kf_tensor_create(context, KF_F32, 2, shape, &copy.src));
  CHECK(kf_tensor_create(context, KF_F32, 2, shape, &copy.dst));
  if (!reserve_host_buffer(bytes)) goto fail;
  CHECK(fill_random(copy.src, host_buffer, host_buffer_bytes));
  CHECK(fill_random(copy.dst, host_buffer, host_buffer_bytes));
  timing t = {plan->warmup, plan->runs, plan->max_case_ms};
  CHECK(time_launches(context, launch_copy, &copy, 1, &t));
  result r = {0};
  r.device_index = device->index;
  snprintf(r.device, sizeof r.device, "%s", device->name);
  snprintf(r.backend, sizeof r.backend, "%s", kf_backend_name(device->backend));
  snprintf(r.op, sizeof r.op, "copy");
  snprintf(r.variant, sizeof r.variant, "kf_tensor_copy");
  snprintf(r.dtype, sizeof r.dtype, "f32");
  r.rows = shape[0];
  r.row_len = shape[1];
  r.ms = t.median_ms;
  r.gbps = 2.0 * (double)bytes / (t.median_ms * 1e-3) / 1e9;
  r.copy_gbps = r.gbps;
  r.runs = t.runs_done;
  r.batch = t.batch;
  *out_copy_gbps = r.gbps;
  print_row(&r);
  ok = push_result(all, &r);
fail:
  kf_tensor_destroy(copy.src);
  kf_tensor_destroy(copy.dst);
  return ok;
}

static bool bench_rmsnorm(kf_context *context, const kf_device_info *device, const bench_plan *plan, shape2 shape,
                          kf_dtype dtype, bool with_residual, bool headline, double copy_gbps, results *all) {
  norm_state norm;
  memset(&norm, 0, sizeof norm);
  norm.with_residual = with_residual;
  bool ok = false;
  int sets = 0;
  const int64_t dims[2] = {shape.rows, shape.row_len};
  const double element_size = (double)kf_dtype_size(dtype);
  const double tensor_bytes = (double)shape.rows * (double)shape.row_len * element_size;
  const double tensors_moved = with_residual ? 4.0 : 2.0; /* x (+ residual) read, y (+ residual_out) written */
  const double set_bytes = tensors_moved * tensor_bytes;
  const double min_bytes = set_bytes + (double)shape.row_len * element_size; /* + weight read once */

  sets = (int)((double)plan->rotation_bytes / set_bytes + 0.999);
  if (sets < 1) sets = 1;
  if (sets > MAX_ROTATION_SETS) sets = MAX_ROTATION_SETS;
  if (!reserve_host_buffer((size_t)tensor_bytes)) goto fail;

  CHECK(kf_tensor_create(context, dtype, 1, &shape.row_len, &norm.weight));
  CHECK(fill_random(norm.weight, host_buffer, host_buffer_bytes));
  for (int i = 0; i < sets; ++i) {
    norm_set *s = &norm.sets[i];
    CHECK(kf_tensor_create(context, dtype, 2, dims, &s->x));
    CHECK(kf_tensor_create(context, dtype, 2, dims, &s->y));
    CHECK(fill_random(s->x, host_buffer, host_buffer_bytes));
    if (with_residual) {
      CHECK(kf_tensor_create(context, dtype, 2, dims, &s->residual));
      CHECK(kf_tensor_create(context, dtype, 2, dims, &s->residual_out));
      CHECK(fill_random(s->residual, host_buffer, host_buffer_bytes));
    }
  }

  timing t = {plan->warmup, plan->runs, plan->max_case_ms};
  CHECK(time_launches(context, launch_rmsnorm, &norm, sets, &t));
  result r = {0};
  r.device_index = device->index;
  snprintf(r.device, sizeof r.device, "%s", device->name);
  snprintf(r.backend, sizeof r.backend, "%s", kf_backend_name(device->backend));
  snprintf(r.op, sizeof r.op, "rmsnorm");
  snprintf(r.variant, sizeof r.variant, "%s", with_residual ? "weight+residual" : "weight");
  snprintf(r.dtype, sizeof r.dtype, "%s", kf_dtype_name(dtype));
  r.rows = shape.rows;
  r.row_len = shape.row_len;
  r.ms = t.median_ms;
  r.gbps = min_bytes / (t.median_ms * 1e-3) / 1e9;
  r.copy_gbps = copy_gbps;
  r.runs = t.runs_done;
  r.batch = t.batch;
  r.headline = headline;
  print_row(&r);
  ok = push_result(all, &r);
fail:
  kf_tensor_destroy(norm.weight);
  for (int i = 0; i < MAX_ROTATION_SETS; ++i) {
    kf_tensor_destroy(norm.sets[i].x);
    kf_tensor_destroy(norm.sets[i].y);
    kf_tensor_destroy(norm.sets[i].residual);
    kf_tensor_destroy(norm.sets[i].residual_out);
  }
  return ok;
}

/* Gives a finished case's cached blocks back to the device, so memory the cache holds never makes a
 * larger next case fail. */
static void trim_cache(kf_context *context) {
  kf_status status = kf_memory_trim(context);
  if (status != KF_OK) fail_call("kf_memory_trim", status);
}

/* All cases on one device; false if any failed (the others still run). */
static bool bench_device(const kf_device_info *device, const options *opts, results *all) {
  bench_plan plan;
  const bool host_like = is_host_device(device) && !opts->full;
  plan.shapes = host_like ? kHostShapes : kGpuShapes;
  plan.shape_count = host_like ? sizeof kHostShapes / sizeof kHostShapes[0] : sizeof kGpuShapes / sizeof kGpuShapes[0];
  if (opts->quick) plan.shape_count = 1;
  plan.copy_bytes = !host_like ? GPU_COPY_BYTES : opts->quick ? QUICK_HOST_COPY_BYTES : HOST_COPY_BYTES;
  plan.rotation_bytes = is_host_device(device) ? HOST_ROTATION_BYTES : GPU_ROTATION_BYTES;
  plan.warmup = opts->warmup >= 0 ? opts->warmup : opts->quick ? 2 : host_like ? 3 : 5;
  plan.runs = opts->runs > 0 ? opts->runs : opts->quick ? 5 : host_like ? 10 : 20;
  plan.max_case_ms = host_like && opts->runs == 0 ? HOST_CASE_BUDGET_MS : 0.0;

  printf("\n#%d %s (%s, %s, %.1f GiB)\n", device->index, device->name, kf_backend_name(device->backend),
         kf_device_type_name(device->type), (double)device->memory_bytes / (double)(1ull << 30));
  printf("  %-8s %-16s %-5s %-13s %10s %9s %8s %9s\n", "op", "variant", "dtype", "shape", "median ms", "GB/s",
         "of copy", "runs");
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
  double copy_gbps = 0.0;
  if (!bench_copy(context, device, &plan, all, &copy_gbps)) ok = false;
  trim_cache(context);
  static const kf_dtype kDtypes[] = {KF_BF16, KF_F32};
  for (size_t s = 0; s < plan.shape_count; ++s) {
    for (size_t d = 0; d < sizeof kDtypes / sizeof kDtypes[0]; ++d) {
      if (!bench_rmsnorm(context, device, &plan, plan.shapes[s], kDtypes[d], false, s == 0, copy_gbps, all)) ok = false;
      trim_cache(context);
    }
    /* The fused residual (h = x + residual; residual_out = h; y = rmsnorm(h)) as in a decoder layer. */
    if (!bench_rmsnorm(context, device, &plan, plan.shapes[s], KF_BF16, true, s == 0, copy_gbps, all)) ok = false;
    trim_cache(context);
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
  fprintf(out, ",\n  \"results\": [");
  for (size_t i = 0; i < all->count; ++i) {
    const result *r = &all->items[i];
    fprintf(out, "%s\n    {\"date\": ", i ? "," : "");
    json_string(out, date);
    fprintf(out, ", \"device_index\": %d, \"device\": ", r->device_index);
    json_string(out, r->device);
    fprintf(out, ", \"backend\": ");
    json_string(out, r->backend);
    fprintf(out, ", \"op\": ");
    json_string(out, r->op);
    fprintf(out, ", \"variant\": ");
    json_string(out, r->variant);
    fprintf(out, ", \"dtype\": ");
    json_string(out, r->dtype);
    fprintf(out,
            ", \"shape\": [%" PRId64 ", %" PRId64 "], \"ms\": %.6f, \"gbps\": %.2f, \"copy_gbps\": %.2f, "
            "\"fraction\": %.4f, \"runs\": %d, \"batch\": %d}",
            r->rows, r->row_len, r->ms, r->gbps, r->copy_gbps, r->copy_gbps > 0 ? r->gbps / r->copy_gbps : 0.0,
            r->runs, r->batch);
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

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* progress shows line by line when piped to a log */
  options opts;
  memset(&opts, 0, sizeof opts);
  opts.warmup = -1;
  for (int i = 1; i < argc; ++i) {
    const char *arg = argv[i];
    if (strncmp(arg, "--backend=", 10) == 0) {
      if (!parse_backends(arg + 10, &opts)) return 2;
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

  char date[32];
  time_t now = time(NULL);
  struct tm utc;
  gmtime_r(&now, &utc);
  strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &utc);
  printf("kfbench — kfuse %s, %s\n", kf_version_string(), date);

  bool selected[256] = {false};
  size_t selected_count = 0;
  for (size_t i = 0; i < device_count && i < 256; ++i) {
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
  for (size_t i = 0; i < device_count && i < 256; ++i) {
    if (selected[i] && !bench_device(&devices[i], &opts, &all)) ok = false;
  }

  /* Summary: the headline case (RMSNorm bf16, the first shape) per device. */
  printf("\nsummary: RMSNorm at each device's headline shape; median device time; bandwidth beside the same device's copy\n");
  printf("  %-3s %-7s %-32s %-16s %-5s %-11s %10s %9s %9s %8s\n", "#", "backend", "device", "variant", "dtype", "shape", "ms",
         "GB/s", "copy GB/s", "of copy");
  for (size_t i = 0; i < all.count; ++i) {
    const result *r = &all.items[i];
    if (strcmp(r->op, "rmsnorm") != 0 || !r->headline) continue;
    char shape[32];
    snprintf(shape, sizeof shape, "%" PRId64 "x%" PRId64, r->rows, r->row_len);
    printf("  %-3d %-7s %-32.32s %-16s %-5s %-11s %10.4f %9.1f %9.1f %7.1f%%\n", r->device_index, r->backend, r->device,
           r->variant, r->dtype, shape, r->ms, r->gbps, r->copy_gbps, r->copy_gbps > 0 ? 100.0 * r->gbps / r->copy_gbps : 0.0);
  }
  if (opts.json_path) {
    if (write_json(opts.json_path, date, &all))
      printf("\nresults written to %s\n", opts.json_path);
    else
      ok = false;
  }
  if (!ok) fprintf(stderr, "kfbench: some cases failed (see above)\n");
  free(all.items);
  free(host_buffer);
  return ok ? 0 : 1;
}

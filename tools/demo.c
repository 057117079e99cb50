/* demo — a first look at kfuse on this machine (`bazel run //:demo`):
 *  1. every backend, whether it is available and why not;
 *  2. every device of every backend, with the same hardware seen through several APIs marked;
 *  3. the device a default context would use, and how to choose another;
 *  4. RMSNorm (bf16, with weight; then with a fused residual) on every device, checked against the
 *     fp64 reference of the conformance suite, with the time each took.
 * Exits nonzero when a device disagrees with the reference or fails to run.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/kfuse.h"
#include "tests/reference/reference.h"

/* 64 tokens of a 4096-wide model (Llama-3-8B's hidden size): small enough to check every element
 * against the reference in a moment on a software driver. */
#define DEMO_ROWS 64
#define DEMO_ROW_LEN 4096
#define DEMO_ELEMENTS ((size_t)DEMO_ROWS * DEMO_ROW_LEN)
#define DEMO_EPS 1e-6f
#define DEMO_SEED 20240601u /* fixed: the demo shows the same numbers on every run */
#define DEMO_TIMED_CALLS 5

/* ---- host data -------------------------------------------------------------------------------- */

/* Inputs as bf16 bytes, and the same values as doubles for the reference. */
typedef struct demo_data {
  uint16_t *x_bf16, *residual_bf16, *weight_bf16;
  double *x, *residual, *weight;
  double *ref_y;            /* rmsnorm(x) * weight */
  double *ref_residual_out; /* x + residual, exact */
  double *residual_sum_magnitude; /* |x| + |residual|: the scale rounding errors of the sum are relative to */
  /* per-device scratch: an output read back, as bf16 bytes and as doubles */
  uint16_t *out_bf16;
  double *out, *ref_fused_y;
} demo_data;

static void free_data(demo_data *data) {
  free(data->x_bf16);
  free(data->residual_bf16);
  free(data->weight_bf16);
  free(data->x);
  free(data->residual);
  free(data->weight);
  free(data->ref_y);
  free(data->ref_residual_out);
  free(data->residual_sum_magnitude);
  free(data->out_bf16);
  free(data->out);
  free(data->ref_fused_y);
}

/* Random inputs rounded to bf16 (what the device stores), and the fp64 reference of those values. */
static kf_status make_data(demo_data *data) {
  const size_t n = DEMO_ELEMENTS, row = DEMO_ROW_LEN;
  memset(data, 0, sizeof *data);
  data->x_bf16 = malloc(n * sizeof(uint16_t));
  data->residual_bf16 = malloc(n * sizeof(uint16_t));
  data->weight_bf16 = malloc(row * sizeof(uint16_t));
  data->out_bf16 = malloc(n * sizeof(uint16_t));
  data->x = malloc(n * sizeof(double));
  data->residual = malloc(n * sizeof(double));
  data->weight = malloc(row * sizeof(double));
  data->ref_y = malloc(n * sizeof(double));
  data->ref_residual_out = malloc(n * sizeof(double));
  data->residual_sum_magnitude = malloc(n * sizeof(double));
  data->out = malloc(n * sizeof(double));
  data->ref_fused_y = malloc(n * sizeof(double));
  if (!data->x_bf16 || !data->residual_bf16 || !data->weight_bf16 || !data->out_bf16 || !data->x ||
      !data->residual || !data->weight || !data->ref_y || !data->ref_residual_out ||
      !data->residual_sum_magnitude || !data->out || !data->ref_fused_y)
    return KF_ERROR_OUT_OF_MEMORY;

  kf_test_rng rng;
  kf_test_rng_init(&rng, DEMO_SEED);
  kf_test_rng_fill(&rng, data->x, n, 1.0);
  kf_test_rng_fill(&rng, data->residual, n, 1.0);
  kf_test_rng_fill(&rng, data->weight, row, 1.0);
  kf_status status;
  if ((status = kf_test_round_to(data->x, KF_BF16, n)) != KF_OK ||
      (status = kf_test_round_to(data->residual, KF_BF16, n)) != KF_OK ||
      (status = kf_test_round_to(data->weight, KF_BF16, row)) != KF_OK ||
      (status = kf_test_from_double(data->x, KF_BF16, data->x_bf16, n)) != KF_OK ||
      (status = kf_test_from_double(data->residual, KF_BF16, data->residual_bf16, n)) != KF_OK ||
      (status = kf_test_from_double(data->weight, KF_BF16, data->weight_bf16, row)) != KF_OK)
    return status;
  kf_ref_rmsnorm(data->x, NULL, data->weight, NULL, DEMO_ROWS, DEMO_ROW_LEN, DEMO_EPS, NULL, data->ref_y);
  for (size_t i = 0; i < n; ++i) {
    data->ref_residual_out[i] = data->x[i] + data->residual[i];
    data->residual_sum_magnitude[i] = fabs(data->x[i]) + fabs(data->residual[i]);
  }
  return KF_OK;
}

/* ---- running on one device ------------------------------------------------------------------ */

typedef struct device_run {
  double norm_error;      /* worst max_err of y, plain and fused (in units of max |reference|) */
  bool agrees;            /* every output within the conformance suite's tolerance */
  double first_call_ms;   /* wall clock of the very first call: includes kernel compilation/loading */
  double plain_ms;        /* device time, best of DEMO_TIMED_CALLS */
  double fused_ms;
  char failure[320];      /* the failed call and kf_last_error(), or "" */
} device_run;

static double wall_ms(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)now.tv_sec * 1e3 + (double)now.tv_nsec * 1e-6;
}

#define CHECK(call)                                                                                \
  do {                                                                                             \
    kf_status check_status_ = (call);                                                              \
    if (check_status_ != KF_OK) {                                                                  \
      snprintf(run->failure, sizeof run->failure, "%s: %s", kf_status_name(check_status_),         \
               kf_last_error());                                                                   \
      goto done;                                                                                   \
    }                                                                                              \
  } while (0)

/* Best device time of DEMO_TIMED_CALLS calls of one rmsnorm. */
static kf_status time_rmsnorm(kf_context *context, const kf_tensor *x, kf_tensor *y, const kf_norm_desc *desc,
                              double *out_ms) {
  double best = INFINITY;
  for (int i = 0; i < DEMO_TIMED_CALLS; ++i) {
    double ms = 0.0;
    kf_status status = kf_timer_begin(context);
    if (status != KF_OK) return status;
    status = kf_rmsnorm(context, x, y, desc);
    if (status != KF_OK) {
      (void)kf_timer_end(context, &ms); /* closes the timer; the rmsnorm failure is what counts */
      return status;
    }
    if ((status = kf_timer_end(context, &ms)) != KF_OK) return status;
    if (ms < best) best = ms;
  }
  *out_ms = best;
  return KF_OK;
}

/* Reads a bf16 tensor into data->out and compares it with ref; true when within tolerance. */
static kf_status check_output(const kf_tensor *tensor, demo_data *data, const double *ref, const double *magnitude,
                              kf_test_op op, double *out_max_err, bool *out_ok) {
  kf_status status = kf_tensor_read(tensor, data->out_bf16, DEMO_ELEMENTS * sizeof(uint16_t));
  if (status != KF_OK) return status;
  if ((status = kf_test_to_double(data->out_bf16, KF_BF16, data->out, DEMO_ELEMENTS)) != KF_OK) return status;
  kf_test_error error = kf_test_compare(data->out, ref, magnitude, DEMO_ELEMENTS, DEMO_ROW_LEN);
  double tolerance = kf_test_tolerance(op, KF_BF16, DEMO_ROW_LEN);
  *out_max_err = error.max_err;
  *out_ok = error.max_err <= tolerance && error.nmse <= tolerance * tolerance; /* false for NaN */
  return KF_OK;
}

/* Fills a bf16 tensor with NaN, so an element the op leaves unwritten fails the check. */
static kf_status poison(kf_tensor *tensor, demo_data *data) {
  for (size_t i = 0; i < DEMO_ELEMENTS; ++i) data->out_bf16[i] = 0x7fc0; /* bf16 quiet NaN */
  return kf_tensor_write(tensor, data->out_bf16, DEMO_ELEMENTS * sizeof(uint16_t));
}

static void run_device(const kf_device_info *device, demo_data *data, device_run *run) {
  const int64_t shape[2] = {DEMO_ROWS, DEMO_ROW_LEN};
  const int64_t weight_shape[1] = {DEMO_ROW_LEN};
  const size_t bytes = DEMO_ELEMENTS * sizeof(uint16_t);
  kf_context *context = NULL;
  kf_tensor *x = NULL, *y = NULL, *weight = NULL, *residual = NULL, *residual_out = NULL;
  memset(run, 0, sizeof *run);
  run->norm_error = NAN;

  kf_context_options options = KF_CONTEXT_OPTIONS_INIT;
  options.device_index = device->index;
  CHECK(kf_context_create(&options, &context));
  CHECK(kf_tensor_create(context, KF_BF16, 2, shape, &x));
  CHECK(kf_tensor_create(context, KF_BF16, 2, shape, &y));
  CHECK(kf_tensor_create(context, KF_BF16, 2, shape, &residual));
  CHECK(kf_tensor_create(context, KF_BF16, 2, shape, &residual_out));
  CHECK(kf_tensor_create(context, KF_BF16, 1, weight_shape, &weight));
  CHECK(kf_tensor_write(x, data->x_bf16, bytes));
  CHECK(kf_tensor_write(residual, data->residual_bf16, bytes));
  CHECK(kf_tensor_write(weight, data->weight_bf16, DEMO_ROW_LEN * sizeof(uint16_t)));
  CHECK(poison(y, data));
  CHECK(poison(residual_out, data));

  /* y = rmsnorm(x) * weight */
  kf_norm_desc plain = KF_NORM_DESC_INIT;
  plain.eps = DEMO_EPS;
  plain.weight = weight;
  double start = wall_ms();
  CHECK(kf_rmsnorm(context, x, y, &plain));
  CHECK(kf_synchronize(context));
  run->first_call_ms = wall_ms() - start;
  double plain_error = NAN, fused_error = NAN, sum_error = NAN;
  bool plain_ok = false, fused_ok = false, sum_ok = false;
  CHECK(check_output(y, data, data->ref_y, NULL, KF_TEST_OP_RMSNORM, &plain_error, &plain_ok));
  CHECK(time_rmsnorm(context, x, y, &plain, &run->plain_ms));

  /* h = x + residual; residual_out = h (rounded to bf16); y = rmsnorm(residual_out) * weight */
  CHECK(poison(y, data));
  kf_norm_desc fused = plain;
  fused.residual = residual;
  fused.residual_out = residual_out;
  CHECK(kf_rmsnorm(context, x, y, &fused));
  CHECK(check_output(residual_out, data, data->ref_residual_out, data->residual_sum_magnitude,
                     KF_TEST_OP_RESIDUAL_ADD, &sum_error, &sum_ok));
  /* kfuse normalizes the rounded sum it stored, so y's reference starts from the device's residual_out
   * (see kf_ref_rmsnorm); the check above already bounds how far that is from the exact sum. */
  kf_ref_rmsnorm(data->out, NULL, data->weight, NULL, DEMO_ROWS, DEMO_ROW_LEN, DEMO_EPS, NULL, data->ref_fused_y);
  CHECK(check_output(y, data, data->ref_fused_y, NULL, KF_TEST_OP_RMSNORM, &fused_error, &fused_ok));
  CHECK(time_rmsnorm(context, x, y, &fused, &run->fused_ms));

  run->norm_error = isnan(plain_error) || isnan(fused_error) ? NAN : fmax(plain_error, fused_error);
  run->agrees = plain_ok && fused_ok && sum_ok;
done:
  kf_tensor_destroy(x);
  kf_tensor_destroy(y);
  kf_tensor_destroy(weight);
  kf_tensor_destroy(residual);
  kf_tensor_destroy(residual_out);
  kf_context_destroy(context);
}

/* ---- printing ------------------------------------------------------------------------------- */

static void format_time(double ms, char *out, size_t size) {
  if (ms < 1.0)
    snprintf(out, size, "%.1f us", ms * 1e3);
  else if (ms < 1000.0)
    snprintf(out, size, "%.2f ms", ms);
  else
    snprintf(out, size, "%.2f s", ms * 1e-3);
}

static void print_backends(void) {
  printf("Backends\n");
  for (int b = 0; b < KF_BACKEND_COUNT; ++b) {
    kf_backend_info info = {sizeof info};
    kf_status status = kf_backend_get_info((kf_backend)b, &info);
    if (status != KF_OK) {
      printf("  %-7s ? (%s: %s)\n", kf_backend_name((kf_backend)b), kf_status_name(status), kf_last_error());
      continue;
    }
    if (info.available) {
      printf("  %-7s available, %d device%s", kf_backend_name((kf_backend)b), info.device_count,
             info.device_count == 1 ? "" : "s");
      if (info.runtime[0]) printf(" (%s)", info.runtime);
      if (info.reason[0]) printf("; %s", info.reason);
      printf("\n");
    } else {
      printf("  %-7s unavailable: %s\n", kf_backend_name((kf_backend)b), info.reason[0] ? info.reason : "no reason given");
    }
  }
}

static void print_devices(const kf_device_info *devices, size_t count) {
  printf("\nDevices\n");
  if (count == 0) {
    printf("  (none)\n");
    return;
  }
  printf("  %-3s %-7s %-13s %-40s %-8s %10s %5s  %s\n", "#", "backend", "type", "name", "vendor", "memory", "units",
         "PCI bus id");
  for (size_t i = 0; i < count; ++i) {
    const kf_device_info *d = &devices[i];
    printf("  %-3d %-7s %-13s %-40.40s %-8.8s %6.1f GiB %5" PRIu32 "  %s\n", d->index, kf_backend_name(d->backend),
           kf_device_type_name(d->type), d->name, d->vendor, (double)d->memory_bytes / (double)(1ull << 30),
           d->compute_units, d->pci_bus_id[0] ? d->pci_bus_id : "-");
    printf("      %s%s%s", d->api_version, d->driver_version[0] ? ", driver " : "", d->driver_version);
    if (d->caps_text[0]) printf("; %s", d->caps_text);
    if (d->same_device_as >= 0) printf("; same device as #%d", d->same_device_as);
    printf("\n");
  }
}

static void print_default_device(const kf_device_info *devices, size_t count) {
  size_t index = 0;
  kf_status status = kf_default_device(&index);
  printf("\nDefault device: ");
  if (status != KF_OK)
    printf("none (%s: %s)\n", kf_status_name(status), kf_last_error());
  else if (index < count)
    printf("#%zu %s \"%s\"\n", index, kf_backend_name(devices[index].backend), devices[index].name);
  const char *env_backend = getenv("KF_BACKEND");
  const char *env_device = getenv("KF_DEVICE");
  const bool backend_set = env_backend && *env_backend, device_set = env_device && *env_device;
  if (backend_set || device_set)
    printf("  chosen with%s%s%s%s\n", backend_set ? " KF_BACKEND=" : "", backend_set ? env_backend : "",
           device_set ? " KF_DEVICE=" : "", device_set ? env_device : "");
  else
    printf("  policy: CUDA, then a discrete Vulkan GPU, then an OpenCL GPU, then an integrated Vulkan GPU, then the CPU backend\n");
  printf("  choose another with KF_BACKEND=cpu|cuda|opencl|vulkan and/or KF_DEVICE=<#>|<backend>:<n>|<name part>\n");
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* progress shows line by line when piped to a log */
  printf("kfuse %s\n\n", kf_version_string());
  print_backends();

  const kf_device_info *devices = NULL;
  size_t count = 0;
  kf_status status = kf_devices(&devices, &count);
  if (status != KF_OK) {
    fprintf(stderr, "demo: kf_devices failed: %s: %s\n", kf_status_name(status), kf_last_error());
    return 1;
  }
  print_devices(devices, count);
  print_default_device(devices, count);

  demo_data data;
  if ((status = make_data(&data)) != KF_OK) {
    fprintf(stderr, "demo: preparing the inputs failed: %s: %s\n", kf_status_name(status), kf_last_error());
    free_data(&data);
    return 1;
  }

  printf("\nRMSNorm, bf16 %dx%d with weight, then with a fused residual, on every device\n", DEMO_ROWS,
         DEMO_ROW_LEN);
  printf("  (error: max |y - fp64 reference| / max |reference|; agrees: y and residual_out within the\n"
         "   conformance suite's tolerance, %.1e for y)\n",
         kf_test_tolerance(KF_TEST_OP_RMSNORM, KF_BF16, DEMO_ROW_LEN));
  printf("  %-3s %-7s %-40s %9s %11s %11s %11s  %s\n", "#", "backend", "device", "error", "first call", "time",
         "fused time", "result");
  int disagreements = 0, failures = 0;
  for (size_t i = 0; i < count; ++i) {
    const kf_device_info *d = &devices[i];
    device_run run;
    run_device(d, &data, &run);
    printf("  %-3d %-7s %-40.40s ", d->index, kf_backend_name(d->backend), d->name);
    if (run.failure[0]) {
      printf("failed: %s\n", run.failure);
      ++failures;
      continue;
    }
    char first[32], plain[32], fused[32];
    format_time(run.first_call_ms, first, sizeof first);
    format_time(run.plain_ms, plain, sizeof plain);
    format_time(run.fused_ms, fused, sizeof fused);
    printf("%9.2e %11s %11s %11s  %s\n", run.norm_error, first, plain, fused, run.agrees ? "agrees" : "DISAGREES");
    if (!run.agrees) ++disagreements;
    fflush(stdout);
  }
  printf("  (first call: wall clock, includes compiling or loading kernels; time: device timer, best of %d)\n",
         DEMO_TIMED_CALLS);
  free_data(&data);

  if (disagreements || failures) {
    printf("\n%d of %zu devices disagree with the reference, %d failed to run\n", disagreements, count, failures);
    return 1;
  }
  printf("\n%s agree%s with the reference.\n", count == 1 ? "The device" : "All devices", count == 1 ? "s" : "");
  return 0;
}

/* bad_input_test.c — every public function given bad input: NULL handles and pointers, invalid enums,
 * wrong dtypes, mismatched shapes, tensors of another context, overflowing sizes, wrong byte counts,
 * out-of-bounds views, undersized descriptors, outputs overlapping inputs (every op: RMSNorm,
 * LayerNorm, RoPE, GLU, softmax). Each call must return its specific status, leave a
 * kf_last_error() message that starts with the function's name and names the argument, and leave its
 * outputs untouched. Runs on the CPU backend: the core validates before any backend is called, so the
 * backend does not matter. One line per check, then `N passed, N failed`.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/kfuse.h"
#include "tests/reference/reference.h"

static int g_passed, g_failed;

static void report(bool ok, const char *what, const char *detail) {
  printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", what, detail[0] ? ": " : "", detail);
  if (ok) g_passed++;
  else g_failed++;
}

/* Status, and a message "<function>: ..." that mentions `argument`. Reads kf_last_error() first
 * thing, before any other kfuse call replaces it. */
static bool check_status(const char *what, kf_status got, kf_status want, const char *function, const char *argument,
                         char *detail, size_t detail_size) {
  char message[1024];
  snprintf(message, sizeof message, "%s", kf_last_error());
  size_t fn_len = strlen(function);
  bool ok = got == want && strncmp(message, function, fn_len) == 0 && message[fn_len] == ':' &&
            (argument == NULL || strstr(message, argument) != NULL);
  snprintf(detail, detail_size, "%s \"%s\"%s", kf_status_name(got), message,
           ok ? "" : got != want ? " (wrong status)" : " (message must start with the function and name the argument)");
  (void)what;
  return ok;
}

#define EXPECT(what, call, want, function, argument)                                                        \
  do {                                                                                                      \
    char detail_[1200];                                                                                     \
    bool ok_ = check_status(what, (call), (want), (function), (argument), detail_, sizeof detail_);         \
    if (!ok_) { char d2_[1300]; snprintf(d2_, sizeof d2_, "expected %s, got %s", kf_status_name(want), detail_); report(false, what, d2_); } \
    else report(true, what, detail_);                                                                        \
  } while (0)

/* ---- fixtures ---- */
#define ROWS 4
#define ROW_LEN 64
static kf_context *ctx, *other_ctx;
static kf_tensor *x, *y, *weight, *bias, *residual, *residual_out;
static kf_tensor *x_i32, *x_f8, *y_i32, *weight_i32, *weight_short, *bias_short, *y_narrow, *residual_short,
    *residual_out_short, *x_other, *weight_other, *x_row_strided, *y_alias_x;

static const float PATTERN = 12345.0f;

static kf_tensor *make(kf_context *c, kf_dtype dtype, int32_t ndim, int64_t d0, int64_t d1) {
  int64_t shape[2] = {d0, d1};
  kf_tensor *t = NULL;
  if (kf_tensor_create(c, dtype, ndim, shape, &t) != KF_OK) {
    printf("FAIL setup: kf_tensor_create: %s\n", kf_last_error());
    exit(1);
  }
  return t;
}

/* Writes PATTERN (f32 tensors) into t. */
static void fill_pattern(kf_tensor *t) {
  int64_t n = kf_tensor_numel(t);
  float *data = malloc((size_t)n * sizeof(float));
  for (int64_t i = 0; i < n; ++i) data[i] = PATTERN;
  if (kf_tensor_write(t, data, (size_t)n * sizeof(float)) != KF_OK) {
    printf("FAIL setup: kf_tensor_write: %s\n", kf_last_error());
    exit(1);
  }
  free(data);
}

static bool holds_pattern(const kf_tensor *t) {
  int64_t n = kf_tensor_numel(t);
  float *data = malloc((size_t)n * sizeof(float));
  bool ok = kf_tensor_read(t, data, (size_t)n * sizeof(float)) == KF_OK;
  for (int64_t i = 0; ok && i < n; ++i) ok = data[i] == PATTERN;
  free(data);
  return ok;
}

typedef kf_status (*norm_fn)(kf_context *, const kf_tensor *, kf_tensor *, const kf_norm_desc *);

/* A kf_rmsnorm / kf_layernorm call that must fail; y and residual_out must keep their contents. */
static void norm_rejects(norm_fn fn, const char *function, const char *what, kf_context *c, const kf_tensor *in,
                         kf_tensor *out, const kf_norm_desc *desc, kf_status want, const char *argument) {
  fill_pattern(y);
  fill_pattern(residual_out);
  char detail[1200];
  bool ok = check_status(what, fn(c, in, out, desc), want, function, argument, detail, sizeof detail);
  char full[1400];
  if (!ok) {
    snprintf(full, sizeof full, "expected %s, got %s", kf_status_name(want), detail);
  } else if (!holds_pattern(y) || !holds_pattern(residual_out) || !holds_pattern(x)) {
    ok = false;
    snprintf(full, sizeof full, "%s, but an output was modified", detail);
  } else {
    snprintf(full, sizeof full, "%s", detail);
  }
  report(ok, what, full);
}

#define rmsnorm_rejects(...) norm_rejects(kf_rmsnorm, "kf_rmsnorm", __VA_ARGS__)
#define layernorm_rejects(...) norm_rejects(kf_layernorm, "kf_layernorm", __VA_ARGS__)

static void setup(void) {
  kf_context_options options = KF_CONTEXT_OPTIONS_INIT;
  options.backend = KF_BACKEND_CPU;
  if (kf_context_create(&options, &ctx) != KF_OK || kf_context_create(&options, &other_ctx) != KF_OK) {
    printf("FAIL setup: kf_context_create(cpu): %s\n", kf_last_error());
    exit(1);
  }
  x = make(ctx, KF_F32, 2, ROWS, ROW_LEN);
  y = make(ctx, KF_F32, 2, ROWS, ROW_LEN);
  weight = make(ctx, KF_F32, 1, ROW_LEN, 0);
  bias = make(ctx, KF_F32, 1, ROW_LEN, 0);
  residual = make(ctx, KF_F32, 2, ROWS, ROW_LEN);
  residual_out = make(ctx, KF_F32, 2, ROWS, ROW_LEN);
  x_i32 = make(ctx, KF_I32, 2, ROWS, ROW_LEN);
  x_f8 = make(ctx, KF_F8_E4M3, 2, ROWS, ROW_LEN);
  y_i32 = make(ctx, KF_I32, 2, ROWS, ROW_LEN);
  weight_i32 = make(ctx, KF_I32, 1, ROW_LEN, 0);
  weight_short = make(ctx, KF_F32, 1, ROW_LEN - 1, 0);
  bias_short = make(ctx, KF_F32, 1, ROW_LEN + 1, 0);
  y_narrow = make(ctx, KF_F32, 2, ROWS, ROW_LEN - 1);
  residual_short = make(ctx, KF_F32, 2, ROWS - 1, ROW_LEN);
  residual_out_short = make(ctx, KF_F32, 2, ROWS, ROW_LEN / 2);
  x_other = make(other_ctx, KF_F32, 2, ROWS, ROW_LEN);
  weight_other = make(other_ctx, KF_F32, 1, ROW_LEN, 0);
  /* Rows whose elements are 2 apart: the last dimension must be contiguous. */
  int64_t strided_shape[2] = {ROWS / 2, ROW_LEN / 2}, strided_strides[2] = {ROW_LEN, 2};
  if (kf_tensor_view(x, 2, strided_shape, strided_strides, 0, &x_row_strided) != KF_OK ||
      kf_tensor_view(x, 2, (int64_t[]){ROWS, ROW_LEN}, NULL, 0, &y_alias_x) != KF_OK) {
    printf("FAIL setup: kf_tensor_view: %s\n", kf_last_error());
    exit(1);
  }
  fill_pattern(x);
  fill_pattern(weight);
  fill_pattern(bias);
  fill_pattern(residual);
}

static void teardown(void) {
  kf_tensor *all[] = {x, y, weight, bias, residual, residual_out, x_i32, x_f8, y_i32, weight_i32, weight_short,
                      bias_short, y_narrow, residual_short, residual_out_short, x_other, weight_other, x_row_strided,
                      y_alias_x};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i) kf_tensor_destroy(all[i]);
  kf_context_destroy(ctx);
  kf_context_destroy(other_ctx);
}

/* ---- checks by area ---- */

static void test_devices_and_backends(void) {
  const kf_device_info *devices = NULL;
  size_t count = 0;
  EXPECT("kf_devices(out_devices=NULL)", kf_devices(NULL, &count), KF_ERROR_NULL_ARGUMENT, "kf_devices", "out_devices");
  EXPECT("kf_devices(out_count=NULL)", kf_devices(&devices, NULL), KF_ERROR_NULL_ARGUMENT, "kf_devices", "out_count");
  report(devices == NULL && count == 0, "kf_devices failures leave outputs untouched", "");

  kf_backend_info info;
  memset(&info, 0x5a, sizeof info);
  EXPECT("kf_backend_get_info(out_info=NULL)", kf_backend_get_info(KF_BACKEND_CPU, NULL), KF_ERROR_NULL_ARGUMENT,
         "kf_backend_get_info", "out_info");
  EXPECT("kf_backend_get_info(backend=7)", kf_backend_get_info((kf_backend)7, &info), KF_ERROR_INVALID_ARGUMENT,
         "kf_backend_get_info", "backend");
  EXPECT("kf_backend_get_info(backend=KF_BACKEND_ANY)", kf_backend_get_info(KF_BACKEND_ANY, &info),
         KF_ERROR_INVALID_ARGUMENT, "kf_backend_get_info", "backend");
  report(info.struct_size == (size_t)0x5a5a5a5a5a5a5a5aull, "kf_backend_get_info failures leave out_info untouched", "");

  kf_backend backend = (kf_backend)77;
  EXPECT("kf_backend_from_name(name=NULL)", kf_backend_from_name(NULL, &backend), KF_ERROR_NULL_ARGUMENT,
         "kf_backend_from_name", "name");
  EXPECT("kf_backend_from_name(out_backend=NULL)", kf_backend_from_name("cpu", NULL), KF_ERROR_NULL_ARGUMENT,
         "kf_backend_from_name", "out_backend");
  EXPECT("kf_backend_from_name(name=\"metal\")", kf_backend_from_name("metal", &backend), KF_ERROR_INVALID_ARGUMENT,
         "kf_backend_from_name", "name");
  report(backend == (kf_backend)77, "kf_backend_from_name failures leave out_backend untouched", "");

  EXPECT("kf_default_device(out_index=NULL)", kf_default_device(NULL), KF_ERROR_NULL_ARGUMENT, "kf_default_device",
         "out_index");
}

static void test_enums(void) {
  report(strcmp(kf_status_name((kf_status)999), "KF_STATUS_UNKNOWN") == 0, "kf_status_name(999) is KF_STATUS_UNKNOWN", "");
  report(kf_status_message((kf_status)999) != NULL, "kf_status_message(999) is a string", "");
  report(strcmp(kf_status_name((kf_status)-1), "KF_STATUS_UNKNOWN") == 0, "kf_status_name(-1) is KF_STATUS_UNKNOWN", "");
  report(kf_dtype_name((kf_dtype)99) == NULL && kf_dtype_name((kf_dtype)-1) == NULL, "kf_dtype_name(invalid) is NULL", "");
  report(kf_dtype_size((kf_dtype)99) == 0 && kf_dtype_size(KF_DTYPE_COUNT) == 0, "kf_dtype_size(invalid) is 0", "");
  report(kf_backend_name((kf_backend)99) == NULL && kf_backend_name(KF_BACKEND_ANY) == NULL,
         "kf_backend_name(invalid) is NULL", "");
  report(kf_device_type_name((kf_device_type)99) == NULL, "kf_device_type_name(invalid) is NULL", "");
}

static void test_contexts(void) {
  kf_context *sentinel = (kf_context *)(uintptr_t)0x1234, *out = sentinel;
  EXPECT("kf_context_create(out_context=NULL)", kf_context_create(NULL, NULL), KF_ERROR_NULL_ARGUMENT,
         "kf_context_create", "out_context");

  kf_context_options options = KF_CONTEXT_OPTIONS_INIT;
  options.struct_size = 0;
  EXPECT("kf_context_create(options->struct_size=0)", kf_context_create(&options, &out), KF_ERROR_INVALID_ARGUMENT,
         "kf_context_create", "struct_size");
  options.struct_size = sizeof options - sizeof(uint32_t);
  EXPECT("kf_context_create(options->struct_size too small)", kf_context_create(&options, &out),
         KF_ERROR_INVALID_ARGUMENT, "kf_context_create", "struct_size");
  options = (kf_context_options)KF_CONTEXT_OPTIONS_INIT;
  options.backend = (kf_backend)42;
  EXPECT("kf_context_create(options->backend=42)", kf_context_create(&options, &out), KF_ERROR_INVALID_ARGUMENT,
         "kf_context_create", "backend");
  options = (kf_context_options)KF_CONTEXT_OPTIONS_INIT;
  options.flags = 0x80000000u;
  EXPECT("kf_context_create(options->flags unknown bit)", kf_context_create(&options, &out), KF_ERROR_INVALID_ARGUMENT,
         "kf_context_create", "flags");
  options = (kf_context_options)KF_CONTEXT_OPTIONS_INIT;
  options.device_index = 100000;
  EXPECT("kf_context_create(options->device_index out of range)", kf_context_create(&options, &out),
         KF_ERROR_DEVICE_NOT_FOUND, "kf_context_create", "device_index");
  options = (kf_context_options)KF_CONTEXT_OPTIONS_INIT;
  options.device_name = "no device is called this 7f3a";
  EXPECT("kf_context_create(options->device_name matches nothing)", kf_context_create(&options, &out),
         KF_ERROR_DEVICE_NOT_FOUND, "kf_context_create", "device_name");
  report(out == sentinel, "kf_context_create failures leave out_context untouched", "");

  kf_device_info info;
  EXPECT("kf_context_device(context=NULL)", kf_context_device(NULL, &info), KF_ERROR_NULL_ARGUMENT,
         "kf_context_device", "context");
  EXPECT("kf_context_device(out_info=NULL)", kf_context_device(ctx, NULL), KF_ERROR_NULL_ARGUMENT, "kf_context_device",
         "out_info");
  EXPECT("kf_synchronize(context=NULL)", kf_synchronize(NULL), KF_ERROR_NULL_ARGUMENT, "kf_synchronize", "context");

  double ms = -7.0;
  EXPECT("kf_timer_begin(context=NULL)", kf_timer_begin(NULL), KF_ERROR_NULL_ARGUMENT, "kf_timer_begin", "context");
  EXPECT("kf_timer_end(context=NULL)", kf_timer_end(NULL, &ms), KF_ERROR_NULL_ARGUMENT, "kf_timer_end", "context");
  EXPECT("kf_timer_end(out_milliseconds=NULL)", kf_timer_end(ctx, NULL), KF_ERROR_NULL_ARGUMENT, "kf_timer_end",
         "out_milliseconds");
  EXPECT("kf_timer_end without kf_timer_begin", kf_timer_end(ctx, &ms), KF_ERROR_INVALID_ARGUMENT, "kf_timer_end",
         "timer");
  report(ms == -7.0, "kf_timer_end failures leave out_milliseconds untouched", "");
  if (kf_timer_begin(ctx) == KF_OK) {
    EXPECT("kf_timer_begin twice", kf_timer_begin(ctx), KF_ERROR_INVALID_ARGUMENT, "kf_timer_begin", "timer");
    kf_timer_end(ctx, &ms);
  } else {
    report(false, "kf_timer_begin(ctx)", kf_last_error());
  }

  kf_memory_stats stats;
  memset(&stats, 0x5a, sizeof stats);
  EXPECT("kf_memory_get_stats(context=NULL)", kf_memory_get_stats(NULL, &stats), KF_ERROR_NULL_ARGUMENT,
         "kf_memory_get_stats", "context");
  EXPECT("kf_memory_get_stats(out_stats=NULL)", kf_memory_get_stats(ctx, NULL), KF_ERROR_NULL_ARGUMENT,
         "kf_memory_get_stats", "out_stats");
  report(stats.current_bytes == 0x5a5a5a5a5a5a5a5aull, "kf_memory_get_stats failures leave out_stats untouched", "");
  EXPECT("kf_memory_reset_peak(context=NULL)", kf_memory_reset_peak(NULL), KF_ERROR_NULL_ARGUMENT,
         "kf_memory_reset_peak", "context");
  EXPECT("kf_memory_trim(context=NULL)", kf_memory_trim(NULL), KF_ERROR_NULL_ARGUMENT, "kf_memory_trim", "context");
}

static void test_tensors(void) {
  kf_tensor *sentinel = (kf_tensor *)(uintptr_t)0x4321, *out = sentinel;
  int64_t shape[2] = {ROWS, ROW_LEN};

  EXPECT("kf_tensor_create(context=NULL)", kf_tensor_create(NULL, KF_F32, 2, shape, &out), KF_ERROR_NULL_ARGUMENT,
         "kf_tensor_create", "context");
  EXPECT("kf_tensor_create(out_tensor=NULL)", kf_tensor_create(ctx, KF_F32, 2, shape, NULL), KF_ERROR_NULL_ARGUMENT,
         "kf_tensor_create", "out_tensor");
  EXPECT("kf_tensor_create(shape=NULL)", kf_tensor_create(ctx, KF_F32, 2, NULL, &out), KF_ERROR_NULL_ARGUMENT,
         "kf_tensor_create", "shape");
  EXPECT("kf_tensor_create(ndim=0)", kf_tensor_create(ctx, KF_F32, 0, shape, &out), KF_ERROR_INVALID_ARGUMENT,
         "kf_tensor_create", "ndim");
  int64_t seven[7] = {1, 1, 1, 1, 1, 1, 1};
  EXPECT("kf_tensor_create(ndim=KF_MAX_DIMS+1)", kf_tensor_create(ctx, KF_F32, KF_MAX_DIMS + 1, seven, &out),
         KF_ERROR_INVALID_ARGUMENT, "kf_tensor_create", "ndim");
  EXPECT("kf_tensor_create(ndim=-1)", kf_tensor_create(ctx, KF_F32, -1, shape, &out), KF_ERROR_INVALID_ARGUMENT,
         "kf_tensor_create", "ndim");
  EXPECT("kf_tensor_create(dtype=99)", kf_tensor_create(ctx, (kf_dtype)99, 2, shape, &out), KF_ERROR_INVALID_ARGUMENT,
         "kf_tensor_create", "dtype");
  int64_t negative[2] = {4, -3};
  EXPECT("kf_tensor_create(shape=[4,-3])", kf_tensor_create(ctx, KF_F32, 2, negative, &out), KF_ERROR_INVALID_ARGUMENT,
         "kf_tensor_create", "shape");
  int64_t huge_count[3] = {INT64_C(1) << 40, INT64_C(1) << 40, 2};
  EXPECT("kf_tensor_create(element count overflows)", kf_tensor_create(ctx, KF_F32, 3, huge_count, &out),
         KF_ERROR_OVERFLOW, "kf_tensor_create", "shape");
  int64_t huge_bytes[1] = {INT64_C(1) << 62};
  EXPECT("kf_tensor_create(byte count overflows)", kf_tensor_create(ctx, KF_F32, 1, huge_bytes, &out),
         KF_ERROR_OVERFLOW, "kf_tensor_create", "overflow");
  report(out == sentinel, "kf_tensor_create failures leave out_tensor untouched", "");

  EXPECT("kf_tensor_view(base=NULL)", kf_tensor_view(NULL, 2, shape, NULL, 0, &out), KF_ERROR_NULL_ARGUMENT,
         "kf_tensor_view", "base");
  EXPECT("kf_tensor_view(out_view=NULL)", kf_tensor_view(x, 2, shape, NULL, 0, NULL), KF_ERROR_NULL_ARGUMENT,
         "kf_tensor_view", "out_view");
  EXPECT("kf_tensor_view(shape=NULL)", kf_tensor_view(x, 2, NULL, NULL, 0, &out), KF_ERROR_NULL_ARGUMENT,
         "kf_tensor_view", "shape");
  EXPECT("kf_tensor_view(ndim=0)", kf_tensor_view(x, 0, shape, NULL, 0, &out), KF_ERROR_INVALID_ARGUMENT,
         "kf_tensor_view", "ndim");
  EXPECT("kf_tensor_view(ndim=KF_MAX_DIMS+1)", kf_tensor_view(x, KF_MAX_DIMS + 1, seven, NULL, 0, &out),
         KF_ERROR_INVALID_ARGUMENT, "kf_tensor_view", "ndim");
  EXPECT("kf_tensor_view(shape=[4,-3])", kf_tensor_view(x, 2, negative, NULL, 0, &out), KF_ERROR_INVALID_ARGUMENT,
         "kf_tensor_view", "shape");
  EXPECT("kf_tensor_view(offset=-1)", kf_tensor_view(x, 2, shape, NULL, -1, &out), KF_ERROR_INVALID_ARGUMENT,
         "kf_tensor_view", "offset");
  int64_t negative_strides[2] = {ROW_LEN, -1};
  EXPECT("kf_tensor_view(strides=[64,-1])", kf_tensor_view(x, 2, shape, negative_strides, 0, &out),
         KF_ERROR_INVALID_ARGUMENT, "kf_tensor_view", "strides");
  EXPECT("kf_tensor_view(offset=1 past the storage end)", kf_tensor_view(x, 2, shape, NULL, 1, &out),
         KF_ERROR_INVALID_ARGUMENT, "kf_tensor_view", "storage");
  int64_t too_long[1] = {ROWS * ROW_LEN + 1};
  EXPECT("kf_tensor_view(shape larger than the storage)", kf_tensor_view(x, 1, too_long, NULL, 0, &out),
         KF_ERROR_INVALID_ARGUMENT, "kf_tensor_view", "storage");
  int64_t wide_strides[2] = {ROW_LEN + 1, 1};
  EXPECT("kf_tensor_view(strides reach past the storage)", kf_tensor_view(x, 2, shape, wide_strides, 0, &out),
         KF_ERROR_INVALID_ARGUMENT, "kf_tensor_view", "storage");
  int64_t overflow_strides[2] = {INT64_MAX / 2, 1};
  EXPECT("kf_tensor_view(extent overflows)", kf_tensor_view(x, 2, shape, overflow_strides, 0, &out), KF_ERROR_OVERFLOW,
         "kf_tensor_view", "overflow");
  report(out == sentinel, "kf_tensor_view failures leave out_view untouched", "");

  kf_tensor_desc desc;
  EXPECT("kf_tensor_get_desc(tensor=NULL)", kf_tensor_get_desc(NULL, &desc), KF_ERROR_NULL_ARGUMENT,
         "kf_tensor_get_desc", "tensor");
  EXPECT("kf_tensor_get_desc(out_desc=NULL)", kf_tensor_get_desc(x, NULL), KF_ERROR_NULL_ARGUMENT,
         "kf_tensor_get_desc", "out_desc");
  int64_t numel = kf_tensor_numel(NULL);
  report(numel == 0, "kf_tensor_numel(NULL) is 0", kf_last_error());
  kf_context *owner = kf_tensor_context(NULL);
  report(owner == NULL, "kf_tensor_context(NULL) is NULL", kf_last_error());

  /* Host transfers: wrong sizes and NULL pointers; the tensor (write) or host buffer (read) keeps its
   * contents. */
  size_t bytes = ROWS * ROW_LEN * sizeof(float);
  float *host = malloc(bytes + 64);
  for (size_t i = 0; i < ROWS * ROW_LEN + 16; ++i) host[i] = -1.0f;
  fill_pattern(y);
  EXPECT("kf_tensor_write(tensor=NULL)", kf_tensor_write(NULL, host, bytes), KF_ERROR_NULL_ARGUMENT, "kf_tensor_write",
         "tensor");
  EXPECT("kf_tensor_write(src=NULL)", kf_tensor_write(y, NULL, bytes), KF_ERROR_NULL_ARGUMENT, "kf_tensor_write", "src");
  EXPECT("kf_tensor_write(bytes one short)", kf_tensor_write(y, host, bytes - 1), KF_ERROR_SIZE_MISMATCH,
         "kf_tensor_write", "bytes");
  EXPECT("kf_tensor_write(bytes one element too many)", kf_tensor_write(y, host, bytes + sizeof(float)),
         KF_ERROR_SIZE_MISMATCH, "kf_tensor_write", "bytes");
  EXPECT("kf_tensor_write(bytes=0)", kf_tensor_write(y, host, 0), KF_ERROR_SIZE_MISMATCH, "kf_tensor_write", "bytes");
  report(holds_pattern(y), "kf_tensor_write failures leave the tensor untouched", "");

  EXPECT("kf_tensor_read(tensor=NULL)", kf_tensor_read(NULL, host, bytes), KF_ERROR_NULL_ARGUMENT, "kf_tensor_read",
         "tensor");
  EXPECT("kf_tensor_read(dst=NULL)", kf_tensor_read(y, NULL, bytes), KF_ERROR_NULL_ARGUMENT, "kf_tensor_read", "dst");
  EXPECT("kf_tensor_read(bytes one short)", kf_tensor_read(y, host, bytes - 1), KF_ERROR_SIZE_MISMATCH, "kf_tensor_read",
         "bytes");
  EXPECT("kf_tensor_read(bytes one element too many)", kf_tensor_read(y, host, bytes + sizeof(float)),
         KF_ERROR_SIZE_MISMATCH, "kf_tensor_read", "bytes");
  bool untouched = true;
  for (size_t i = 0; i < ROWS * ROW_LEN + 16; ++i) untouched &= host[i] == -1.0f;
  report(untouched, "kf_tensor_read failures leave dst untouched", "");
  free(host);

  /* Device copies. */
  kf_tensor *dst_short = make(ctx, KF_F32, 2, ROWS, ROW_LEN - 1);
  kf_tensor *dst_i32 = make(ctx, KF_I32, 2, ROWS, ROW_LEN);
  EXPECT("kf_tensor_copy(context=NULL)", kf_tensor_copy(NULL, x, y), KF_ERROR_NULL_ARGUMENT, "kf_tensor_copy", "context");
  EXPECT("kf_tensor_copy(src=NULL)", kf_tensor_copy(ctx, NULL, y), KF_ERROR_NULL_ARGUMENT, "kf_tensor_copy", "src");
  EXPECT("kf_tensor_copy(dst=NULL)", kf_tensor_copy(ctx, x, NULL), KF_ERROR_NULL_ARGUMENT, "kf_tensor_copy", "dst");
  EXPECT("kf_tensor_copy(shape mismatch)", kf_tensor_copy(ctx, y, dst_short), KF_ERROR_SHAPE_MISMATCH, "kf_tensor_copy",
         "shape");
  EXPECT("kf_tensor_copy(dtype mismatch)", kf_tensor_copy(ctx, x, dst_i32), KF_ERROR_DTYPE_MISMATCH, "kf_tensor_copy",
         "dst");
  EXPECT("kf_tensor_copy(src of another context)", kf_tensor_copy(ctx, x_other, y), KF_ERROR_CONTEXT_MISMATCH,
         "kf_tensor_copy", "src");
  EXPECT("kf_tensor_copy(dst of another context)", kf_tensor_copy(other_ctx, x_other, y), KF_ERROR_CONTEXT_MISMATCH,
         "kf_tensor_copy", "dst");
  report(holds_pattern(y), "kf_tensor_copy failures leave dst untouched", "");
  kf_tensor_destroy(dst_short);
  kf_tensor_destroy(dst_i32);

  float one = 1.0f;
  uint16_t half = 0x1234;
  EXPECT("kf_convert(src=NULL)", kf_convert(NULL, KF_F32, &half, KF_F16, 1), KF_ERROR_NULL_ARGUMENT, "kf_convert", "src");
  EXPECT("kf_convert(dst=NULL)", kf_convert(&one, KF_F32, NULL, KF_F16, 1), KF_ERROR_NULL_ARGUMENT, "kf_convert", "dst");
  EXPECT("kf_convert(src_dtype=i32)", kf_convert(&one, KF_I32, &half, KF_F16, 1), KF_ERROR_DTYPE_MISMATCH, "kf_convert",
         "src_dtype");
  EXPECT("kf_convert(dst_dtype=99)", kf_convert(&one, KF_F32, &half, (kf_dtype)99, 1), KF_ERROR_DTYPE_MISMATCH,
         "kf_convert", "dst_dtype");
  report(half == 0x1234, "kf_convert failures leave dst untouched", "");
}

static void test_rmsnorm(void) {
  kf_norm_desc desc = KF_NORM_DESC_INIT;
  rmsnorm_rejects("kf_rmsnorm(context=NULL)", NULL, x, y, NULL, KF_ERROR_NULL_ARGUMENT, "context");
  rmsnorm_rejects("kf_rmsnorm(x=NULL)", ctx, NULL, y, NULL, KF_ERROR_NULL_ARGUMENT, "x");
  rmsnorm_rejects("kf_rmsnorm(y=NULL)", ctx, x, NULL, NULL, KF_ERROR_NULL_ARGUMENT, "y");

  desc.struct_size = 0;
  rmsnorm_rejects("kf_rmsnorm(desc->struct_size=0)", ctx, x, y, &desc, KF_ERROR_INVALID_ARGUMENT, "struct_size");
  desc.struct_size = sizeof desc - sizeof(void *);
  rmsnorm_rejects("kf_rmsnorm(desc->struct_size too small)", ctx, x, y, &desc, KF_ERROR_INVALID_ARGUMENT, "struct_size");
  desc = (kf_norm_desc)KF_NORM_DESC_INIT;
  desc.eps = -1e-6f;
  rmsnorm_rejects("kf_rmsnorm(desc->eps<0)", ctx, x, y, &desc, KF_ERROR_INVALID_ARGUMENT, "eps");
  desc.eps = NAN;
  rmsnorm_rejects("kf_rmsnorm(desc->eps=NaN)", ctx, x, y, &desc, KF_ERROR_INVALID_ARGUMENT, "eps");
  desc.eps = INFINITY;
  rmsnorm_rejects("kf_rmsnorm(desc->eps=inf)", ctx, x, y, &desc, KF_ERROR_INVALID_ARGUMENT, "eps");

  rmsnorm_rejects("kf_rmsnorm(x dtype i32)", ctx, x_i32, y, NULL, KF_ERROR_DTYPE_MISMATCH, "x");
  rmsnorm_rejects("kf_rmsnorm(x dtype f8e4m3)", ctx, x_f8, y, NULL, KF_ERROR_DTYPE_MISMATCH, "x");
  rmsnorm_rejects("kf_rmsnorm(y dtype i32)", ctx, x, y_i32, NULL, KF_ERROR_DTYPE_MISMATCH, "y");
  desc = (kf_norm_desc)KF_NORM_DESC_INIT;
  desc.weight = weight_i32;
  rmsnorm_rejects("kf_rmsnorm(weight dtype i32)", ctx, x, y, &desc, KF_ERROR_DTYPE_MISMATCH, "weight");

  rmsnorm_rejects("kf_rmsnorm(y shape [4,63])", ctx, x, y_narrow, NULL, KF_ERROR_SHAPE_MISMATCH, "y");
  desc = (kf_norm_desc)KF_NORM_DESC_INIT;
  desc.weight = weight_short;
  rmsnorm_rejects("kf_rmsnorm(weight has 63 elements)", ctx, x, y, &desc, KF_ERROR_SHAPE_MISMATCH, "weight");
  desc = (kf_norm_desc)KF_NORM_DESC_INIT;
  desc.bias = bias_short;
  rmsnorm_rejects("kf_rmsnorm(bias has 65 elements)", ctx, x, y, &desc, KF_ERROR_SHAPE_MISMATCH, "bias");
  desc = (kf_norm_desc)KF_NORM_DESC_INIT;
  desc.residual = residual_short;
  desc.residual_out = residual_out;
  rmsnorm_rejects("kf_rmsnorm(residual shape [3,64])", ctx, x, y, &desc, KF_ERROR_SHAPE_MISMATCH, "residual");
  desc.residual = residual;
  desc.residual_out = residual_out_short;
  rmsnorm_rejects("kf_rmsnorm(residual_out shape [4,32])", ctx, x, y, &desc, KF_ERROR_SHAPE_MISMATCH, "residual_out");
  desc.residual_out = NULL;
  rmsnorm_rejects("kf_rmsnorm(residual without residual_out)", ctx, x, y, &desc, KF_ERROR_NULL_ARGUMENT, "residual_out");
  desc.residual = NULL;
  desc.residual_out = residual_out;
  rmsnorm_rejects("kf_rmsnorm(residual_out without residual)", ctx, x, y, &desc, KF_ERROR_INVALID_ARGUMENT,
                  "residual_out");

  rmsnorm_rejects("kf_rmsnorm(x of another context)", ctx, x_other, y, NULL, KF_ERROR_CONTEXT_MISMATCH, "x");
  desc = (kf_norm_desc)KF_NORM_DESC_INIT;
  desc.weight = weight_other;
  rmsnorm_rejects("kf_rmsnorm(weight of another context)", ctx, x, y, &desc, KF_ERROR_CONTEXT_MISMATCH, "weight");
  rmsnorm_rejects("kf_rmsnorm(context is not x's)", other_ctx, x, y, NULL, KF_ERROR_CONTEXT_MISMATCH, "x");

  rmsnorm_rejects("kf_rmsnorm(x rows not contiguous)", ctx, x_row_strided, y, NULL, KF_ERROR_UNSUPPORTED, "x");
  rmsnorm_rejects("kf_rmsnorm(y overlaps x)", ctx, x, y_alias_x, NULL, KF_ERROR_INVALID_ARGUMENT, "y");
  desc = (kf_norm_desc)KF_NORM_DESC_INIT;
  desc.residual = residual;
  desc.residual_out = y;
  rmsnorm_rejects("kf_rmsnorm(residual_out is y)", ctx, x, y, &desc, KF_ERROR_INVALID_ARGUMENT, "y");
}

/* ---- the memory-bound ops (LayerNorm, RoPE, GLU, softmax) ----
 * Their fixtures: every 4-byte tensor below is filled with PATTERN before each check and must still
 * hold it after the rejected call (q and k are outputs too: RoPE rotates in place). */
#define TOKENS 4
#define Q_HEADS 4
#define K_HEADS 2
#define HEAD_DIM 64
static kf_tensor *rq, *rk, *rpos, *rpos_f32, *rpos_short, *rk_hd32, *rk_tokens5, *rq_i32, *rq_2d, *rq_wide,
    *rq_strided_last, *rcos, *rcos_f16, *rcos_w32, *rq_out, *rq_out_hd32, *rqk, *rqk_k, *rqk_q_out, *rq_other,
    *rpos_other;
static kf_tensor *g, *u, *o, *g_fused, *g_fused_odd, *o_narrow, *u_i32, *g_strided_last, *o_alias_g, *g_other;
static kf_tensor *sx, *sy, *smask, *smask_rows3, *smask_row, *sx_i32, *sy_narrow, *sstore, *sx_part, *sy_part,
    *sx_strided_last, *sx_other, *smask_half;

static kf_tensor *make3(kf_context *c, kf_dtype dtype, int64_t d0, int64_t d1, int64_t d2) {
  int64_t shape[3] = {d0, d1, d2};
  kf_tensor *t = NULL;
  if (kf_tensor_create(c, dtype, 3, shape, &t) != KF_OK) {
    printf("FAIL setup: kf_tensor_create: %s\n", kf_last_error());
    exit(1);
  }
  return t;
}

static kf_tensor *view_of(const kf_tensor *base, int32_t ndim, const int64_t *shape, const int64_t *strides,
                          int64_t offset) {
  kf_tensor *t = NULL;
  if (kf_tensor_view(base, ndim, shape, strides, offset, &t) != KF_OK) {
    printf("FAIL setup: kf_tensor_view: %s\n", kf_last_error());
    exit(1);
  }
  return t;
}

/* The storages (not views) the new-op checks may write: refilled before and verified after each. */
static kf_tensor **new_op_storages[] = {&rq, &rk, &rpos, &rpos_f32, &rpos_short, &rk_hd32, &rk_tokens5, &rq_i32,
                                        &rq_2d, &rq_wide, &rcos, &rcos_w32, &rq_out, &rq_out_hd32, &rqk, &g, &u, &o,
                                        &g_fused, &g_fused_odd, &o_narrow, &u_i32, &sx, &sy, &smask, &smask_rows3,
                                        &smask_row, &sx_i32, &sy_narrow, &sstore, &smask_half};
#define NEW_OP_STORAGE_COUNT (sizeof new_op_storages / sizeof new_op_storages[0])

static void setup_new_ops(void) {
  rq = make3(ctx, KF_F32, TOKENS, Q_HEADS, HEAD_DIM);
  rk = make3(ctx, KF_F32, TOKENS, K_HEADS, HEAD_DIM);
  rpos = make(ctx, KF_I32, 1, TOKENS, 0);
  rpos_f32 = make(ctx, KF_F32, 1, TOKENS, 0);
  rpos_short = make(ctx, KF_I32, 1, TOKENS - 1, 0);
  rk_hd32 = make3(ctx, KF_F32, TOKENS, K_HEADS, HEAD_DIM / 2);
  rk_tokens5 = make3(ctx, KF_F32, TOKENS + 1, K_HEADS, HEAD_DIM);
  rq_i32 = make3(ctx, KF_I32, TOKENS, Q_HEADS, HEAD_DIM);
  rq_2d = make(ctx, KF_F32, 2, TOKENS, Q_HEADS * HEAD_DIM);
  rq_wide = make3(ctx, KF_F32, TOKENS, Q_HEADS, 2 * HEAD_DIM);
  rq_strided_last = view_of(rq_wide, 3, (int64_t[]){TOKENS, Q_HEADS, HEAD_DIM},
                            (int64_t[]){Q_HEADS * 2 * HEAD_DIM, 2 * HEAD_DIM, 2}, 0);
  rcos = make(ctx, KF_F32, 2, 16, HEAD_DIM);
  rcos_f16 = make(ctx, KF_F16, 2, 16, HEAD_DIM);
  rcos_w32 = make(ctx, KF_F32, 2, 16, HEAD_DIM / 2);
  rq_out = make3(ctx, KF_F32, TOKENS, Q_HEADS, HEAD_DIM);
  rq_out_hd32 = make3(ctx, KF_F32, TOKENS, Q_HEADS, HEAD_DIM / 2);
  /* One [tokens, 6 heads] storage: k = heads 4..5, and a q_out of heads 2..5 that overlaps it. */
  rqk = make3(ctx, KF_F32, TOKENS, Q_HEADS + K_HEADS, HEAD_DIM);
  int64_t qk_strides[3] = {(Q_HEADS + K_HEADS) * HEAD_DIM, HEAD_DIM, 1};
  rqk_k = view_of(rqk, 3, (int64_t[]){TOKENS, K_HEADS, HEAD_DIM}, qk_strides, Q_HEADS * HEAD_DIM);
  rqk_q_out = view_of(rqk, 3, (int64_t[]){TOKENS, Q_HEADS, HEAD_DIM}, qk_strides, 2 * HEAD_DIM);
  rq_other = make3(other_ctx, KF_F32, TOKENS, Q_HEADS, HEAD_DIM);
  rpos_other = make(other_ctx, KF_I32, 1, TOKENS, 0);

  g = make(ctx, KF_F32, 2, ROWS, ROW_LEN);
  u = make(ctx, KF_F32, 2, ROWS, ROW_LEN);
  o = make(ctx, KF_F32, 2, ROWS, ROW_LEN);
  g_fused = make(ctx, KF_F32, 2, ROWS, 2 * ROW_LEN);
  g_fused_odd = make(ctx, KF_F32, 2, ROWS, 2 * ROW_LEN - 1);
  o_narrow = make(ctx, KF_F32, 2, ROWS, ROW_LEN - 1);
  u_i32 = make(ctx, KF_I32, 2, ROWS, ROW_LEN);
  g_strided_last = view_of(g_fused, 2, (int64_t[]){ROWS, ROW_LEN}, (int64_t[]){2 * ROW_LEN, 2}, 0);
  o_alias_g = view_of(g, 2, (int64_t[]){ROWS, ROW_LEN}, NULL, 0);
  g_other = make(other_ctx, KF_F32, 2, ROWS, ROW_LEN);

  sx = make(ctx, KF_F32, 2, ROWS, ROW_LEN);
  sy = make(ctx, KF_F32, 2, ROWS, ROW_LEN);
  smask = make(ctx, KF_F32, 2, ROWS, ROW_LEN);
  smask_rows3 = make(ctx, KF_F32, 2, ROWS - 1, ROW_LEN);
  smask_row = make(ctx, KF_F32, 1, ROW_LEN, 0);
  smask_half = make(ctx, KF_F32, 2, ROWS, ROW_LEN / 2);
  sx_i32 = make(ctx, KF_I32, 2, ROWS, ROW_LEN);
  sy_narrow = make(ctx, KF_F32, 2, ROWS, ROW_LEN - 1);
  /* x = rows 0..3 and y = rows 1..4 of one [5, 64] storage: a partial overlap. */
  sstore = make(ctx, KF_F32, 2, ROWS + 1, ROW_LEN);
  sx_part = view_of(sstore, 2, (int64_t[]){ROWS, ROW_LEN}, NULL, 0);
  sy_part = view_of(sstore, 2, (int64_t[]){ROWS, ROW_LEN}, NULL, ROW_LEN);
  sx_strided_last = view_of(g_fused, 2, (int64_t[]){ROWS, ROW_LEN}, (int64_t[]){2 * ROW_LEN, 2}, 1);
  sx_other = make(other_ctx, KF_F32, 2, ROWS, ROW_LEN);
}

static void teardown_new_ops(void) {
  kf_tensor *views[] = {rq_strided_last, rqk_k, rqk_q_out, g_strided_last, o_alias_g, sx_part, sy_part,
                        sx_strided_last, rcos_f16, rq_other, rpos_other, g_other, sx_other};
  for (size_t i = 0; i < sizeof views / sizeof views[0]; ++i) kf_tensor_destroy(views[i]);
  for (size_t i = 0; i < NEW_OP_STORAGE_COUNT; ++i) kf_tensor_destroy(*new_op_storages[i]);
}

static void fill_new_op_storages(void) {
  for (size_t i = 0; i < NEW_OP_STORAGE_COUNT; ++i) fill_pattern(*new_op_storages[i]);
}

static const char *modified_new_op_storage(void) {
  static const char *const names[] = {"q", "k", "positions", "positions_f32", "positions_short", "k_hd32",
                                      "k_tokens5", "q_i32", "q_2d", "q_wide", "cos_sin", "cos_sin_w32", "q_out",
                                      "q_out_hd32", "qk", "gate", "up", "out", "gate_fused", "gate_fused_odd",
                                      "out_narrow", "up_i32", "x", "y", "mask", "mask_rows3", "mask_row", "x_i32",
                                      "y_narrow", "x/y storage", "mask_half"};
  for (size_t i = 0; i < NEW_OP_STORAGE_COUNT; ++i)
    if (!holds_pattern(*new_op_storages[i])) return names[i];
  return NULL;
}

/* A call that must fail with `want`, a message "<function>: ..." naming `argument`, and no tensor
 * modified. The fixtures are refilled first, so one failure does not cascade. */
#define REJECTS(what, call, want, function, argument)                                                      \
  do {                                                                                                     \
    fill_new_op_storages();                                                                                \
    char detail_[1200], full_[1400];                                                                       \
    bool ok_ = check_status(what, (call), (want), (function), (argument), detail_, sizeof detail_);        \
    const char *modified_ = modified_new_op_storage();                                                     \
    if (!ok_) snprintf(full_, sizeof full_, "expected %s, got %s", kf_status_name(want), detail_);          \
    else if (modified_) snprintf(full_, sizeof full_, "%s, but %s was modified", detail_, modified_);      \
    else snprintf(full_, sizeof full_, "%s", detail_);                                                     \
    report(ok_ && !modified_, what, full_);                                                                \
  } while (0)

static void test_layernorm(void) {
  kf_norm_desc desc = KF_NORM_DESC_INIT;
  layernorm_rejects("kf_layernorm(context=NULL)", NULL, x, y, NULL, KF_ERROR_NULL_ARGUMENT, "context");
  layernorm_rejects("kf_layernorm(x=NULL)", ctx, NULL, y, NULL, KF_ERROR_NULL_ARGUMENT, "x");
  layernorm_rejects("kf_layernorm(y=NULL)", ctx, x, NULL, NULL, KF_ERROR_NULL_ARGUMENT, "y");
  desc.struct_size = sizeof desc - sizeof(void *);
  layernorm_rejects("kf_layernorm(desc->struct_size too small)", ctx, x, y, &desc, KF_ERROR_INVALID_ARGUMENT,
                    "struct_size");
  desc = (kf_norm_desc)KF_NORM_DESC_INIT;
  desc.eps = NAN;
  layernorm_rejects("kf_layernorm(desc->eps=NaN)", ctx, x, y, &desc, KF_ERROR_INVALID_ARGUMENT, "eps");
  desc.eps = -1.0f;
  layernorm_rejects("kf_layernorm(desc->eps<0)", ctx, x, y, &desc, KF_ERROR_INVALID_ARGUMENT, "eps");
  layernorm_rejects("kf_layernorm(x dtype i32)", ctx, x_i32, y, NULL, KF_ERROR_DTYPE_MISMATCH, "x");
  layernorm_rejects("kf_layernorm(y shape [4,63])", ctx, x, y_narrow, NULL, KF_ERROR_SHAPE_MISMATCH, "y");
  desc = (kf_norm_desc)KF_NORM_DESC_INIT;
  desc.weight = weight_short;
  layernorm_rejects("kf_layernorm(weight has 63 elements)", ctx, x, y, &desc, KF_ERROR_SHAPE_MISMATCH, "weight");
  desc = (kf_norm_desc)KF_NORM_DESC_INIT;
  desc.residual = residual;
  layernorm_rejects("kf_layernorm(residual without residual_out)", ctx, x, y, &desc, KF_ERROR_NULL_ARGUMENT,
                    "residual_out");
  layernorm_rejects("kf_layernorm(x of another context)", ctx, x_other, y, NULL, KF_ERROR_CONTEXT_MISMATCH, "x");
  layernorm_rejects("kf_layernorm(x rows not contiguous)", ctx, x_row_strided, y, NULL, KF_ERROR_UNSUPPORTED, "x");
  layernorm_rejects("kf_layernorm(y overlaps x)", ctx, x, y_alias_x, NULL, KF_ERROR_INVALID_ARGUMENT, "y");
}

static void test_rope(void) {
  kf_rope_desc desc = KF_ROPE_DESC_INIT;
  REJECTS("kf_rope(context=NULL)", kf_rope(NULL, rq, rk, rpos, NULL), KF_ERROR_NULL_ARGUMENT, "kf_rope", "context");
  REJECTS("kf_rope(q=NULL)", kf_rope(ctx, NULL, rk, rpos, NULL), KF_ERROR_NULL_ARGUMENT, "kf_rope", "q");
  REJECTS("kf_rope(positions=NULL)", kf_rope(ctx, rq, rk, NULL, NULL), KF_ERROR_NULL_ARGUMENT, "kf_rope", "positions");

  desc.struct_size = 0;
  REJECTS("kf_rope(desc->struct_size=0)", kf_rope(ctx, rq, rk, rpos, &desc), KF_ERROR_INVALID_ARGUMENT, "kf_rope",
          "struct_size");
  desc.struct_size = sizeof desc - sizeof(void *);
  REJECTS("kf_rope(desc->struct_size too small)", kf_rope(ctx, rq, rk, rpos, &desc), KF_ERROR_INVALID_ARGUMENT,
          "kf_rope", "struct_size");
  desc = (kf_rope_desc)KF_ROPE_DESC_INIT;
  desc.style = (kf_rope_style)7;
  REJECTS("kf_rope(desc->style=7)", kf_rope(ctx, rq, rk, rpos, &desc), KF_ERROR_INVALID_ARGUMENT, "kf_rope", "style");
  desc = (kf_rope_desc)KF_ROPE_DESC_INIT;
  desc.rotary_dim = 63;
  REJECTS("kf_rope(desc->rotary_dim odd)", kf_rope(ctx, rq, rk, rpos, &desc), KF_ERROR_INVALID_ARGUMENT, "kf_rope",
          "rotary_dim");
  desc.rotary_dim = HEAD_DIM + 2;
  REJECTS("kf_rope(desc->rotary_dim > head_dim)", kf_rope(ctx, rq, rk, rpos, &desc), KF_ERROR_INVALID_ARGUMENT,
          "kf_rope", "rotary_dim");
  desc.rotary_dim = -2;
  REJECTS("kf_rope(desc->rotary_dim negative)", kf_rope(ctx, rq, rk, rpos, &desc), KF_ERROR_INVALID_ARGUMENT,
          "kf_rope", "rotary_dim");
  desc = (kf_rope_desc)KF_ROPE_DESC_INIT;
  desc.theta = 0.0f;
  REJECTS("kf_rope(desc->theta=0)", kf_rope(ctx, rq, rk, rpos, &desc), KF_ERROR_INVALID_ARGUMENT, "kf_rope", "theta");
  desc.theta = NAN;
  REJECTS("kf_rope(desc->theta=NaN)", kf_rope(ctx, rq, rk, rpos, &desc), KF_ERROR_INVALID_ARGUMENT, "kf_rope", "theta");
  desc = (kf_rope_desc)KF_ROPE_DESC_INIT;
  desc.position_scale = INFINITY;
  REJECTS("kf_rope(desc->position_scale=inf)", kf_rope(ctx, rq, rk, rpos, &desc), KF_ERROR_INVALID_ARGUMENT,
          "kf_rope", "position_scale");

  REJECTS("kf_rope(q dtype i32)", kf_rope(ctx, rq_i32, rk, rpos, NULL), KF_ERROR_DTYPE_MISMATCH, "kf_rope", "q");
  REJECTS("kf_rope(positions dtype f32)", kf_rope(ctx, rq, rk, rpos_f32, NULL), KF_ERROR_DTYPE_MISMATCH, "kf_rope",
          "positions");
  desc = (kf_rope_desc)KF_ROPE_DESC_INIT;
  desc.cos_sin = rcos_f16;
  REJECTS("kf_rope(cos_sin dtype f16)", kf_rope(ctx, rq, rk, rpos, &desc), KF_ERROR_DTYPE_MISMATCH, "kf_rope",
          "cos_sin");

  REJECTS("kf_rope(q 2-D)", kf_rope(ctx, rq_2d, rk, rpos, NULL), KF_ERROR_SHAPE_MISMATCH, "kf_rope", "q");
  REJECTS("kf_rope(k head_dim 32, q head_dim 64)", kf_rope(ctx, rq, rk_hd32, rpos, NULL), KF_ERROR_SHAPE_MISMATCH,
          "kf_rope", "k");
  REJECTS("kf_rope(k has 5 tokens, q 4)", kf_rope(ctx, rq, rk_tokens5, rpos, NULL), KF_ERROR_SHAPE_MISMATCH, "kf_rope",
          "k");
  REJECTS("kf_rope(positions has 3 elements, 4 tokens)", kf_rope(ctx, rq, rk, rpos_short, NULL),
          KF_ERROR_SHAPE_MISMATCH, "kf_rope", "positions");
  desc = (kf_rope_desc)KF_ROPE_DESC_INIT;
  desc.cos_sin = rcos_w32;
  REJECTS("kf_rope(cos_sin [16,32], rotary_dim 64)", kf_rope(ctx, rq, rk, rpos, &desc), KF_ERROR_SHAPE_MISMATCH,
          "kf_rope", "cos_sin");
  desc = (kf_rope_desc)KF_ROPE_DESC_INIT;
  desc.q_out = rq_out_hd32;
  REJECTS("kf_rope(q_out shape [4,4,32])", kf_rope(ctx, rq, rk, rpos, &desc), KF_ERROR_SHAPE_MISMATCH, "kf_rope",
          "q_out");
  REJECTS("kf_rope(q head_dim not contiguous)", kf_rope(ctx, rq_strided_last, NULL, rpos, NULL), KF_ERROR_UNSUPPORTED,
          "kf_rope", "q");

  desc = (kf_rope_desc)KF_ROPE_DESC_INIT;
  desc.k_out = rk_hd32;
  REJECTS("kf_rope(k_out without k)", kf_rope(ctx, rq, NULL, rpos, &desc), KF_ERROR_INVALID_ARGUMENT, "kf_rope",
          "k_out");
  desc = (kf_rope_desc)KF_ROPE_DESC_INIT;
  desc.q_out = rqk_q_out;
  REJECTS("kf_rope(q_out overlaps k)", kf_rope(ctx, rq, rqk_k, rpos, &desc), KF_ERROR_INVALID_ARGUMENT, "kf_rope",
          "q_out");
  desc = (kf_rope_desc)KF_ROPE_DESC_INIT;
  desc.k_out = rq_out;
  REJECTS("kf_rope(k_out shape [4,4,64], k [4,2,64])", kf_rope(ctx, rq, rk, rpos, &desc), KF_ERROR_SHAPE_MISMATCH,
          "kf_rope", "k_out");

  REJECTS("kf_rope(q of another context)", kf_rope(ctx, rq_other, rk, rpos, NULL), KF_ERROR_CONTEXT_MISMATCH,
          "kf_rope", "q");
  REJECTS("kf_rope(positions of another context)", kf_rope(ctx, rq, rk, rpos_other, NULL), KF_ERROR_CONTEXT_MISMATCH,
          "kf_rope", "positions");
  desc = (kf_rope_desc)KF_ROPE_DESC_INIT;
  desc.q_out = rq_other;
  REJECTS("kf_rope(q_out of another context)", kf_rope(ctx, rq, rk, rpos, &desc), KF_ERROR_CONTEXT_MISMATCH, "kf_rope",
          "q_out");
}

static void test_glu(void) {
  kf_glu_desc desc = KF_GLU_DESC_INIT;
  REJECTS("kf_glu(context=NULL)", kf_glu(NULL, g, u, o, NULL), KF_ERROR_NULL_ARGUMENT, "kf_glu", "context");
  REJECTS("kf_glu(gate=NULL)", kf_glu(ctx, NULL, u, o, NULL), KF_ERROR_NULL_ARGUMENT, "kf_glu", "gate");
  REJECTS("kf_glu(out=NULL)", kf_glu(ctx, g, u, NULL, NULL), KF_ERROR_NULL_ARGUMENT, "kf_glu", "out");
  desc.struct_size = sizeof desc - 1;
  REJECTS("kf_glu(desc->struct_size too small)", kf_glu(ctx, g, u, o, &desc), KF_ERROR_INVALID_ARGUMENT, "kf_glu",
          "struct_size");
  desc = (kf_glu_desc)KF_GLU_DESC_INIT;
  desc.activation = (kf_glu_activation)9;
  REJECTS("kf_glu(desc->activation=9)", kf_glu(ctx, g, u, o, &desc), KF_ERROR_INVALID_ARGUMENT, "kf_glu",
          "activation");
  REJECTS("kf_glu(up dtype i32)", kf_glu(ctx, g, u_i32, o, NULL), KF_ERROR_DTYPE_MISMATCH, "kf_glu", "up");
  REJECTS("kf_glu(out shape [4,63])", kf_glu(ctx, g, u, o_narrow, NULL), KF_ERROR_SHAPE_MISMATCH, "kf_glu", "out");
  REJECTS("kf_glu(fused gate [4,127], out [4,63])", kf_glu(ctx, g_fused_odd, NULL, o_narrow, NULL),
          KF_ERROR_SHAPE_MISMATCH, "kf_glu", "gate");
  REJECTS("kf_glu(fused gate [4,128], out [4,63])", kf_glu(ctx, g_fused, NULL, o_narrow, NULL),
          KF_ERROR_SHAPE_MISMATCH, "kf_glu", "gate");
  REJECTS("kf_glu(gate [4,64] with up == NULL, out [4,64])", kf_glu(ctx, g, NULL, o, NULL), KF_ERROR_SHAPE_MISMATCH,
          "kf_glu", "gate");
  REJECTS("kf_glu(gate rows not contiguous)", kf_glu(ctx, g_strided_last, u, o, NULL), KF_ERROR_UNSUPPORTED, "kf_glu",
          "gate");
  REJECTS("kf_glu(out overlaps gate)", kf_glu(ctx, g, u, o_alias_g, NULL), KF_ERROR_INVALID_ARGUMENT, "kf_glu", "out");
  REJECTS("kf_glu(gate of another context)", kf_glu(ctx, g_other, u, o, NULL), KF_ERROR_CONTEXT_MISMATCH, "kf_glu",
          "gate");
}

static void test_softmax(void) {
  kf_softmax_desc desc = KF_SOFTMAX_DESC_INIT;
  REJECTS("kf_softmax(context=NULL)", kf_softmax(NULL, sx, sy, NULL), KF_ERROR_NULL_ARGUMENT, "kf_softmax", "context");
  REJECTS("kf_softmax(x=NULL)", kf_softmax(ctx, NULL, sy, NULL), KF_ERROR_NULL_ARGUMENT, "kf_softmax", "x");
  REJECTS("kf_softmax(y=NULL)", kf_softmax(ctx, sx, NULL, NULL), KF_ERROR_NULL_ARGUMENT, "kf_softmax", "y");
  desc.struct_size = sizeof desc - sizeof(void *);
  REJECTS("kf_softmax(desc->struct_size too small)", kf_softmax(ctx, sx, sy, &desc), KF_ERROR_INVALID_ARGUMENT,
          "kf_softmax", "struct_size");
  desc = (kf_softmax_desc)KF_SOFTMAX_DESC_INIT;
  desc.scale = NAN;
  REJECTS("kf_softmax(desc->scale=NaN)", kf_softmax(ctx, sx, sy, &desc), KF_ERROR_INVALID_ARGUMENT, "kf_softmax",
          "scale");
  REJECTS("kf_softmax(x dtype i32)", kf_softmax(ctx, sx_i32, sy, NULL), KF_ERROR_DTYPE_MISMATCH, "kf_softmax", "x");
  REJECTS("kf_softmax(y shape [4,63])", kf_softmax(ctx, sx, sy_narrow, NULL), KF_ERROR_SHAPE_MISMATCH, "kf_softmax",
          "y");
  desc = (kf_softmax_desc)KF_SOFTMAX_DESC_INIT;
  desc.mask = smask_rows3;
  REJECTS("kf_softmax(mask [3,64] over x [4,64])", kf_softmax(ctx, sx, sy, &desc), KF_ERROR_SHAPE_MISMATCH,
          "kf_softmax", "mask");
  desc.mask = smask_half;
  REJECTS("kf_softmax(mask [4,32] over x [4,64])", kf_softmax(ctx, sx, sy, &desc), KF_ERROR_SHAPE_MISMATCH,
          "kf_softmax", "mask");
  REJECTS("kf_softmax(x rows not contiguous)", kf_softmax(ctx, sx_strided_last, sy, NULL), KF_ERROR_UNSUPPORTED,
          "kf_softmax", "x");
  REJECTS("kf_softmax(y partially overlaps x)", kf_softmax(ctx, sx_part, sy_part, NULL), KF_ERROR_INVALID_ARGUMENT,
          "kf_softmax", "y");
  desc = (kf_softmax_desc)KF_SOFTMAX_DESC_INIT;
  desc.mask = sy;
  REJECTS("kf_softmax(y is the mask)", kf_softmax(ctx, sx, sy, &desc), KF_ERROR_INVALID_ARGUMENT, "kf_softmax", "mask");
  REJECTS("kf_softmax(x of another context)", kf_softmax(ctx, sx_other, sy, NULL), KF_ERROR_CONTEXT_MISMATCH,
          "kf_softmax", "x");
  REJECTS("kf_softmax(context is not x's)", kf_softmax(other_ctx, sx, sy, NULL), KF_ERROR_CONTEXT_MISMATCH,
          "kf_softmax", "x");
}

static kf_tensor *make_nd(kf_context *c, kf_dtype dtype, int32_t ndim, const int64_t *shape) {
  kf_tensor *t = NULL;
  if (kf_tensor_create(c, dtype, ndim, shape, &t) != KF_OK) {
    printf("FAIL setup: kf_tensor_create: %s\n", kf_last_error());
    exit(1);
  }
  return t;
}

/* GEMM: C [4,64] = A [4,32] B [32,64]; each rejection also leaves C untouched. */
static void test_gemm(void) {
  kf_tensor *a = make(ctx, KF_F32, 2, ROWS, 32), *b = make(ctx, KF_F32, 2, 32, ROW_LEN);
  kf_tensor *c = make(ctx, KF_F32, 2, ROWS, ROW_LEN), *b_bad = make(ctx, KF_F32, 2, 33, ROW_LEN);
  kf_tensor *b_f16 = make(ctx, KF_F16, 2, 32, ROW_LEN), *a_i32 = make(ctx, KF_I32, 2, ROWS, 32);
  kf_tensor *a_f8 = make(ctx, KF_F8_E4M3, 2, ROWS, 32), *b_f8 = make(ctx, KF_F8_E4M3, 2, 32, ROW_LEN);
  kf_tensor *bias_short = make(ctx, KF_F32, 1, ROW_LEN - 1, 0), *c_odd = make(ctx, KF_F32, 2, ROWS, 63);
  kf_tensor *a_other = make(other_ctx, KF_F32, 2, ROWS, 32);
  kf_tensor *a3 = make_nd(ctx, KF_F32, 3, (int64_t[]){2, ROWS, 32}), *c3 = make_nd(ctx, KF_F32, 3, (int64_t[]){3, ROWS, ROW_LEN});
  kf_tensor *big = make(ctx, KF_F32, 2, 64, 64), *a_in_big = NULL, *c_in_big = NULL, *a_strided = NULL;
  kf_tensor_view(big, 2, (int64_t[]){ROWS, 32}, (int64_t[]){64, 1}, 0, &a_in_big);
  kf_tensor_view(big, 2, (int64_t[]){ROWS, ROW_LEN}, (int64_t[]){64, 1}, 16, &c_in_big);
  kf_tensor_view(big, 2, (int64_t[]){ROWS, 32}, (int64_t[]){64, 2}, 0, &a_strided);
  fill_pattern(c);
  kf_gemm_desc desc = KF_GEMM_DESC_INIT;
#define GEMM_REJECTS(what, call, want, argument)                                                     \
  do {                                                                                               \
    EXPECT(what, call, want, "kf_gemm", argument);                                                   \
    if (!holds_pattern(c)) report(false, what, "c was modified");                                   \
  } while (0)
  GEMM_REJECTS("kf_gemm(context=NULL)", kf_gemm(NULL, a, b, c, NULL), KF_ERROR_NULL_ARGUMENT, "context");
  GEMM_REJECTS("kf_gemm(a=NULL)", kf_gemm(ctx, NULL, b, c, NULL), KF_ERROR_NULL_ARGUMENT, "a");
  GEMM_REJECTS("kf_gemm(c=NULL)", kf_gemm(ctx, a, b, NULL, NULL), KF_ERROR_NULL_ARGUMENT, "c");
  desc.struct_size = 8;
  GEMM_REJECTS("kf_gemm(desc->struct_size too small)", kf_gemm(ctx, a, b, c, &desc), KF_ERROR_INVALID_ARGUMENT,
               "struct_size");
  desc = (kf_gemm_desc)KF_GEMM_DESC_INIT;
  desc.activation = (kf_gemm_activation)5;
  GEMM_REJECTS("kf_gemm(desc->activation=5)", kf_gemm(ctx, a, b, c, &desc), KF_ERROR_INVALID_ARGUMENT, "activation");
  desc = (kf_gemm_desc)KF_GEMM_DESC_INIT;
  desc.alpha = INFINITY;
  GEMM_REJECTS("kf_gemm(desc->alpha=inf)", kf_gemm(ctx, a, b, c, &desc), KF_ERROR_INVALID_ARGUMENT, "alpha");
  GEMM_REJECTS("kf_gemm(inner dimensions 32 vs 33)", kf_gemm(ctx, a, b_bad, c, NULL), KF_ERROR_SHAPE_MISMATCH, "op(b)");
  GEMM_REJECTS("kf_gemm(c [4,63] for [4,64])", kf_gemm(ctx, a, b, c_odd, NULL), KF_ERROR_SHAPE_MISMATCH, "c");
  GEMM_REJECTS("kf_gemm(a f32, b f16)", kf_gemm(ctx, a, b_f16, c, NULL), KF_ERROR_DTYPE_MISMATCH, "b");
  GEMM_REJECTS("kf_gemm(a i32)", kf_gemm(ctx, a_i32, b, c, NULL), KF_ERROR_DTYPE_MISMATCH, "a");
  GEMM_REJECTS("kf_gemm(a f8e4m3, b f32)", kf_gemm(ctx, a_f8, b, c, NULL), KF_ERROR_DTYPE_MISMATCH, "b");
  (void)b_f8;
  desc = (kf_gemm_desc)KF_GEMM_DESC_INIT;
  desc.bias = bias_short;
  GEMM_REJECTS("kf_gemm(bias of 63 for 64 columns)", kf_gemm(ctx, a, b, c, &desc), KF_ERROR_SHAPE_MISMATCH, "bias");
  desc = (kf_gemm_desc)KF_GEMM_DESC_INIT;
  desc.activation = KF_GEMM_SWIGLU;
  GEMM_REJECTS("kf_gemm(SwiGLU with op(b) as wide as c)", kf_gemm(ctx, a, b, c, &desc), KF_ERROR_SHAPE_MISMATCH, "c");
  desc = (kf_gemm_desc)KF_GEMM_DESC_INIT;
  desc.transpose_a = 1;
  GEMM_REJECTS("kf_gemm(transpose_a with a [4,32])", kf_gemm(ctx, a, b, c, &desc), KF_ERROR_SHAPE_MISMATCH, "op(a)");
  GEMM_REJECTS("kf_gemm(a of another context)", kf_gemm(ctx, a_other, b, c, NULL), KF_ERROR_CONTEXT_MISMATCH, "a");
  GEMM_REJECTS("kf_gemm(a batch 2, c batch 3)", kf_gemm(ctx, a3, b, c3, NULL), KF_ERROR_SHAPE_MISMATCH, "a");
  GEMM_REJECTS("kf_gemm(a with no unit stride)", kf_gemm(ctx, a_strided, b, c, NULL), KF_ERROR_UNSUPPORTED, "a");
  EXPECT("kf_gemm(c overlaps a)", kf_gemm(ctx, a_in_big, b, c_in_big, NULL), KF_ERROR_INVALID_ARGUMENT, "kf_gemm", "c");
#undef GEMM_REJECTS
  kf_tensor *all[] = {a, b, c, b_bad, b_f16, a_i32, a_f8, b_f8, bias_short, c_odd, a_other, a3, c3, big, a_in_big,
                      c_in_big, a_strided};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i) kf_tensor_destroy(all[i]);
}

/* Attention: q/out [1,8,4,64], k/v [1,16,2,64]. */
static void test_attention(void) {
  kf_tensor *q = make_nd(ctx, KF_F32, 4, (int64_t[]){1, 8, 4, 64}), *out = make_nd(ctx, KF_F32, 4, (int64_t[]){1, 8, 4, 64});
  kf_tensor *k = make_nd(ctx, KF_F32, 4, (int64_t[]){1, 16, 2, 64}), *v = make_nd(ctx, KF_F32, 4, (int64_t[]){1, 16, 2, 64});
  kf_tensor *k3 = make_nd(ctx, KF_F32, 4, (int64_t[]){1, 16, 3, 64}), *v_short = make_nd(ctx, KF_F32, 4, (int64_t[]){1, 15, 2, 64});
  kf_tensor *k_f16 = make_nd(ctx, KF_F16, 4, (int64_t[]){1, 16, 2, 64}), *q3d = make_nd(ctx, KF_F32, 3, (int64_t[]){8, 4, 64});
  kf_tensor *q_d60 = make_nd(ctx, KF_F32, 4, (int64_t[]){1, 8, 4, 60}), *lse_bad = make_nd(ctx, KF_F32, 3, (int64_t[]){1, 8, 4});
  kf_tensor *lse_f16 = make_nd(ctx, KF_F16, 3, (int64_t[]){1, 4, 8}), *k_empty = make_nd(ctx, KF_F32, 4, (int64_t[]){1, 0, 2, 64});
  fill_pattern(out);
  kf_attention_desc desc = KF_ATTENTION_DESC_INIT;
#define ATTN_REJECTS(what, call, want, argument)                                                     \
  do {                                                                                               \
    EXPECT(what, call, want, "kf_attention", argument);                                              \
    if (!holds_pattern(out)) report(false, what, "out was modified");                               \
  } while (0)
  ATTN_REJECTS("kf_attention(context=NULL)", kf_attention(NULL, q, k, v, out, NULL), KF_ERROR_NULL_ARGUMENT, "context");
  ATTN_REJECTS("kf_attention(v=NULL)", kf_attention(ctx, q, k, NULL, out, NULL), KF_ERROR_NULL_ARGUMENT, "v");
  desc.struct_size = 4;
  ATTN_REJECTS("kf_attention(desc->struct_size too small)", kf_attention(ctx, q, k, v, out, &desc),
               KF_ERROR_INVALID_ARGUMENT, "struct_size");
  desc = (kf_attention_desc)KF_ATTENTION_DESC_INIT;
  desc.window_left = -5;
  ATTN_REJECTS("kf_attention(desc->window_left=-5)", kf_attention(ctx, q, k, v, out, &desc), KF_ERROR_INVALID_ARGUMENT,
               "window_left");
  desc = (kf_attention_desc)KF_ATTENTION_DESC_INIT;
  desc.scale = NAN;
  ATTN_REJECTS("kf_attention(desc->scale=NaN)", kf_attention(ctx, q, k, v, out, &desc), KF_ERROR_INVALID_ARGUMENT,
               "scale");
  ATTN_REJECTS("kf_attention(4 q heads over 3 kv heads)", kf_attention(ctx, q, k3, k3, out, NULL),
               KF_ERROR_SHAPE_MISMATCH, "kv_heads");
  ATTN_REJECTS("kf_attention(v shorter than k)", kf_attention(ctx, q, k, v_short, out, NULL), KF_ERROR_SHAPE_MISMATCH,
               "v");
  ATTN_REJECTS("kf_attention(k f16, q f32)", kf_attention(ctx, q, k_f16, v, out, NULL), KF_ERROR_DTYPE_MISMATCH, "k");
  ATTN_REJECTS("kf_attention(q 3-D)", kf_attention(ctx, q3d, k, v, out, NULL), KF_ERROR_SHAPE_MISMATCH, "q");
  ATTN_REJECTS("kf_attention(head_dim 60)", kf_attention(ctx, q_d60, k, v, out, NULL), KF_ERROR_SHAPE_MISMATCH, "k");
  ATTN_REJECTS("kf_attention(kv_len 0)", kf_attention(ctx, q, k_empty, k_empty, out, NULL), KF_ERROR_SHAPE_MISMATCH,
               "kv_len");
  ATTN_REJECTS("kf_attention(out is q)", kf_attention(ctx, q, k, v, q, NULL), KF_ERROR_INVALID_ARGUMENT, "out");
  desc = (kf_attention_desc)KF_ATTENTION_DESC_INIT;
  desc.lse = lse_bad;
  ATTN_REJECTS("kf_attention(lse [1,8,4] for [batch, q_heads, q_len] = [1,4,8])", kf_attention(ctx, q, k, v, out, &desc),
               KF_ERROR_SHAPE_MISMATCH, "lse");
  desc.lse = lse_f16;
  ATTN_REJECTS("kf_attention(lse f16)", kf_attention(ctx, q, k, v, out, &desc), KF_ERROR_DTYPE_MISMATCH, "lse");
#undef ATTN_REJECTS
  kf_tensor *all[] = {q, out, k, v, k3, v_short, k_f16, q3d, q_d60, lse_bad, lse_f16, k_empty};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i) kf_tensor_destroy(all[i]);
}

static void test_destroy_null(void) {
  kf_context_destroy(NULL);
  report(true, "kf_context_destroy(NULL) returns", "");
  kf_tensor_destroy(NULL);
  report(true, "kf_tensor_destroy(NULL) returns", "");
}

int main(void) {
  kf_test_use_writable_caches();
  setup();
  test_devices_and_backends();
  test_enums();
  test_contexts();
  test_tensors();
  test_rmsnorm();
  setup_new_ops();
  test_layernorm();
  test_rope();
  test_glu();
  test_softmax();
  teardown_new_ops();
  test_gemm();
  test_attention();
  test_destroy_null();
  teardown();
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed > 0 ? 1 : 0;
}

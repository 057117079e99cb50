/* api_test.c — the public API apart from the ops: device listing, backend info, context choice
 * (options and environment), tensors and views (host round trips, strided gather/scatter, device
 * copies), the conversion helpers (exhaustively for f16 and bf16), allocator statistics, versions,
 * status names, timers and the per-thread error message. One line per check, then `N passed, N failed`.
 */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/kfuse.h"
#include "tests/reference/reference.h"

static int g_passed, g_failed;

static void check(bool ok, const char *what, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void check(bool ok, const char *what, ...) {
  va_list ap;
  va_start(ap, what);
  printf("%s ", ok ? "PASS" : "FAIL");
  vprintf(what, ap);
  va_end(ap);
  if (!ok && kf_last_error()[0]) printf(" (kf_last_error: %s)", kf_last_error());
  printf("\n");
  if (ok) g_passed++;
  else g_failed++;
}

static float bits_to_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static uint32_t f32_to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static kf_context *cpu_context(void) {
  kf_context_options options = KF_CONTEXT_OPTIONS_INIT;
  options.backend = KF_BACKEND_CPU;
  kf_context *ctx = NULL;
  if (kf_context_create(&options, &ctx) != KF_OK) {
    printf("FAIL kf_context_create(backend=cpu): %s\n", kf_last_error());
    exit(1);
  }
  return ctx;
}

/* ---- devices and backends ---- */

static void test_devices(void) {
  const kf_device_info *devices = NULL;
  size_t count = 0;
  kf_status status = kf_devices(&devices, &count);
  check(status == KF_OK && devices != NULL && count >= 1, "kf_devices lists %zu devices (the CPU at least)", count);
  if (status != KF_OK) return;
  int per_backend[KF_BACKEND_COUNT] = {0};
  bool cpu_seen = false;
  for (size_t i = 0; i < count; ++i) {
    const kf_device_info *d = &devices[i];
    bool backend_ok = (int)d->backend >= 0 && d->backend < KF_BACKEND_COUNT;
    check(backend_ok && kf_backend_name(d->backend) != NULL, "device %zu has a valid backend (%d)", i, (int)d->backend);
    if (!backend_ok) continue;
    check(d->struct_size == sizeof *d, "device %zu struct_size is sizeof(kf_device_info)", i);
    check(d->index == (int32_t)i, "device %zu index is %d", i, (int)d->index);
    check(d->backend_index == per_backend[d->backend], "device %zu (%s) backend_index %d is its position in its backend",
          i, kf_backend_name(d->backend), (int)d->backend_index);
    per_backend[d->backend]++;
    check(d->name[0] != '\0' && memchr(d->name, '\0', sizeof d->name) != NULL, "device %zu has a name (\"%s\")", i,
          d->name);
    check(kf_device_type_name(d->type) != NULL, "device %zu has a valid type (%s)", i,
          kf_device_type_name(d->type) ? kf_device_type_name(d->type) : "?");
    check(d->same_device_as == -1 || (d->same_device_as >= 0 && d->same_device_as < (int32_t)i &&
                                      devices[d->same_device_as].backend != d->backend),
          "device %zu same_device_as (%d) is -1 or an earlier device of another backend", i, (int)d->same_device_as);
    if (d->backend == KF_BACKEND_CPU) {
      cpu_seen = true;
      check(d->type == KF_DEVICE_TYPE_CPU && d->memory_bytes > 0 && d->compute_units > 0,
            "CPU device: type cpu, %llu bytes of memory, %u cores", (unsigned long long)d->memory_bytes,
            d->compute_units);
    }
    printf("  device %zu: %s:%d \"%s\" vendor=\"%s\" type=%s memory=%llu units=%u caps=\"%s\" pci=\"%s\"\n", i,
           kf_backend_name(d->backend), (int)d->backend_index, d->name, d->vendor, kf_device_type_name(d->type),
           (unsigned long long)d->memory_bytes, d->compute_units, d->caps_text, d->pci_bus_id);
  }
  check(cpu_seen, "the CPU backend's device is listed");

  const kf_device_info *again = NULL;
  size_t count_again = 0;
  kf_devices(&again, &count_again);
  check(again == devices && count_again == count, "kf_devices returns the same list on every call");

  for (int b = 0; b < KF_BACKEND_COUNT; ++b) {
    kf_backend_info info;
    memset(&info, 0, sizeof info);
    status = kf_backend_get_info((kf_backend)b, &info);
    check(status == KF_OK && info.struct_size == sizeof info && info.backend == (kf_backend)b,
          "kf_backend_get_info(%s) fills the struct", kf_backend_name((kf_backend)b));
    if (info.available)
      check(info.device_count == per_backend[b] && info.device_count > 0,
            "backend %s available with %d devices, %d listed", kf_backend_name((kf_backend)b), info.device_count,
            per_backend[b]);
    else
      check(per_backend[b] == 0 && info.reason[0] != '\0', "backend %s unavailable with a reason: \"%s\"",
            kf_backend_name((kf_backend)b), info.reason);
    printf("  backend %s: available=%d devices=%d runtime=\"%s\" reason=\"%s\"\n", kf_backend_name((kf_backend)b),
           info.available, info.device_count, info.runtime, info.reason);
  }
  kf_backend_info cpu;
  kf_backend_get_info(KF_BACKEND_CPU, &cpu);
  check(cpu.available == 1, "the CPU backend is always available");

  kf_backend parsed = KF_BACKEND_ANY;
  check(kf_backend_from_name("OpenCL", &parsed) == KF_OK && parsed == KF_BACKEND_OPENCL,
        "kf_backend_from_name is case-insensitive");
  for (int b = 0; b < KF_BACKEND_COUNT; ++b)
    check(kf_backend_from_name(kf_backend_name((kf_backend)b), &parsed) == KF_OK && parsed == (kf_backend)b,
          "kf_backend_from_name(kf_backend_name(%d)) round trips", b);
}

static size_t cpu_device_index(void) {
  const kf_device_info *devices = NULL;
  size_t count = 0;
  kf_devices(&devices, &count);
  for (size_t i = 0; i < count; ++i)
    if (devices[i].backend == KF_BACKEND_CPU) return i;
  return (size_t)-1;
}

/* ---- contexts ---- */

/* Creates a context with `options` and checks that it is on device want_index. */
static void expect_context_on(const char *how, const kf_context_options *options, size_t want_index) {
  kf_context *ctx = NULL;
  kf_status status = kf_context_create(options, &ctx);
  kf_device_info info;
  bool ok = status == KF_OK && ctx != NULL && kf_context_device(ctx, &info) == KF_OK &&
            info.index == (int32_t)want_index;
  check(ok, "%s opens device %zu", how, want_index);
  kf_context_destroy(ctx);
}

static void test_contexts(void) {
  size_t cpu = cpu_device_index();
  const kf_device_info *devices = NULL;
  size_t count = 0;
  kf_devices(&devices, &count);

  kf_context_options options = KF_CONTEXT_OPTIONS_INIT;
  options.backend = KF_BACKEND_CPU;
  expect_context_on("options.backend=cpu", &options, cpu);

  options = (kf_context_options)KF_CONTEXT_OPTIONS_INIT;
  options.device_index = (int32_t)cpu;
  expect_context_on("options.device_index", &options, cpu);

  options = (kf_context_options)KF_CONTEXT_OPTIONS_INIT;
  options.backend = KF_BACKEND_CPU;
  options.device_name = devices[cpu].name;
  expect_context_on("options.device_name (CPU name)", &options, cpu);

  /* The environment is read when a context is created. */
  setenv("KF_BACKEND", "cpu", 1);
  expect_context_on("KF_BACKEND=cpu", NULL, cpu);
  size_t default_index = (size_t)-1;
  check(kf_default_device(&default_index) == KF_OK && default_index == cpu,
        "kf_default_device with KF_BACKEND=cpu is the CPU device (%zu)", default_index);
  unsetenv("KF_BACKEND");

  setenv("KF_DEVICE", "cpu:0", 1);
  expect_context_on("KF_DEVICE=cpu:0", NULL, cpu);
  unsetenv("KF_DEVICE");

  default_index = (size_t)-1;
  check(kf_default_device(&default_index) == KF_OK && default_index < count &&
            devices[default_index].type != KF_DEVICE_TYPE_SOFTWARE,
        "kf_default_device picks a listed, non-software device (%zu)", default_index);
  expect_context_on("default options (NULL)", NULL, default_index);

  /* options.backend wins over KF_BACKEND. */
  setenv("KF_BACKEND", "vulkan", 1);
  options = (kf_context_options)KF_CONTEXT_OPTIONS_INIT;
  options.backend = KF_BACKEND_CPU;
  expect_context_on("options.backend=cpu over KF_BACKEND=vulkan", &options, cpu);
  unsetenv("KF_BACKEND");

  /* Contexts on every device open, and report that device. */
  for (size_t i = 0; i < count; ++i) {
    options = (kf_context_options)KF_CONTEXT_OPTIONS_INIT;
    options.device_index = (int32_t)i;
    char how[400];
    snprintf(how, sizeof how, "options.device_index=%zu (%s \"%s\")", i, kf_backend_name(devices[i].backend),
             devices[i].name);
    expect_context_on(how, &options, i);
  }
}

/* ---- tensors ---- */

static void test_tensors(kf_context *ctx) {
  kf_tensor *t = NULL;
  int64_t shape[2] = {3, 5};
  check(kf_tensor_create(ctx, KF_F32, 2, shape, &t) == KF_OK && t != NULL, "kf_tensor_create [3,5] f32");
  kf_tensor_desc desc;
  check(kf_tensor_get_desc(t, &desc) == KF_OK && desc.struct_size == sizeof desc && desc.dtype == KF_F32 &&
            desc.ndim == 2 && desc.shape[0] == 3 && desc.shape[1] == 5 && desc.strides[0] == 5 && desc.strides[1] == 1 &&
            desc.offset == 0 && desc.storage_elements == 15 && desc.contiguous == 1,
        "kf_tensor_get_desc of a new tensor: row-major, dense, own storage");
  check(kf_tensor_numel(t) == 15, "kf_tensor_numel is 15");
  check(kf_tensor_context(t) == ctx, "kf_tensor_context is the creating context");

  float values[15], back[15];
  for (int i = 0; i < 15; ++i) values[i] = (float)i * 1.25f - 3.0f;
  check(kf_tensor_write(t, values, sizeof values) == KF_OK && kf_tensor_read(t, back, sizeof back) == KF_OK &&
            memcmp(values, back, sizeof values) == 0,
        "f32 write/read round trip");
  kf_tensor_destroy(t);

  /* f16 / bf16: bytes go in and come out unchanged (no conversion on the way). */
  kf_dtype halves[2] = {KF_F16, KF_BF16};
  for (int h = 0; h < 2; ++h) {
    int64_t n = 1000;
    uint16_t in[1000], out[1000];
    for (int i = 0; i < n; ++i) in[i] = (uint16_t)(i * 65 + 7);
    t = NULL;
    check(kf_tensor_create(ctx, halves[h], 1, &n, &t) == KF_OK && kf_tensor_write(t, in, sizeof in) == KF_OK &&
              kf_tensor_read(t, out, sizeof out) == KF_OK && memcmp(in, out, sizeof in) == 0,
          "%s write/read round trip keeps every bit pattern", kf_dtype_name(halves[h]));
    kf_tensor_destroy(t);
  }

  /* Strided views: base [6,8]; view [3,4] with strides [16,2] at offset 1 takes rows 0,2,4 and columns
   * 1,3,5,7. Writing through it scatters, reading gathers, and nothing else of the base changes. */
  kf_tensor *base = NULL, *view = NULL;
  int64_t base_shape[2] = {6, 8}, view_shape[2] = {3, 4}, view_strides[2] = {16, 2};
  kf_tensor_create(ctx, KF_F32, 2, base_shape, &base);
  float base_values[48], gathered[12], scattered[12], after[48];
  for (int i = 0; i < 48; ++i) base_values[i] = (float)i;
  kf_tensor_write(base, base_values, sizeof base_values);
  check(kf_tensor_view(base, 2, view_shape, view_strides, 1, &view) == KF_OK, "kf_tensor_view [3,4] strides [16,2]");
  check(kf_tensor_get_desc(view, &desc) == KF_OK && desc.contiguous == 0 && desc.offset == 1 &&
            desc.storage_elements == 48 && desc.strides[0] == 16 && desc.strides[1] == 2,
        "the view's desc: strided, offset 1, the base's storage");
  bool gather_ok = kf_tensor_read(view, gathered, sizeof gathered) == KF_OK;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) gather_ok &= gathered[r * 4 + c] == (float)(1 + r * 16 + c * 2);
  check(gather_ok, "reading a strided view gathers its elements in row-major order");
  for (int i = 0; i < 12; ++i) scattered[i] = -100.0f - (float)i;
  bool scatter_ok = kf_tensor_write(view, scattered, sizeof scattered) == KF_OK &&
                    kf_tensor_read(base, after, sizeof after) == KF_OK;
  for (int i = 0; i < 48; ++i) {
    int rel = i - 1;
    bool in_view = rel >= 0 && rel % 16 % 2 == 0 && rel % 16 / 2 < 4 && rel / 16 < 3;
    float want = in_view ? -100.0f - (float)(rel / 16 * 4 + rel % 16 / 2) : (float)i;
    scatter_ok &= after[i] == want;
  }
  check(scatter_ok, "writing a strided view scatters into exactly its elements");

  /* The storage lives until its last tensor is gone. */
  kf_tensor_destroy(base);
  check(kf_tensor_read(view, gathered, sizeof gathered) == KF_OK && gathered[0] == -100.0f,
        "a view stays readable after its base is destroyed");

  /* A narrow block of a wide matrix: base [3, 262144] f32 (3 MiB), view [3, 4] at column 5. Its span
   * (2 MiB) is large beside its three 16-byte runs, so it moves one run per transfer instead of through a
   * host copy of the span; the rest of the base must be untouched either way. */
  {
    kf_tensor *wide = NULL, *block = NULL;
    const int64_t wide_n = 262144, wide_shape[2] = {3, 262144};
    const int64_t block_shape[2] = {3, 4}, block_strides[2] = {262144, 1};
    float *wide_init = malloc(sizeof(float) * 3 * (size_t)wide_n);
    float *wide_after = malloc(sizeof(float) * 3 * (size_t)wide_n);
    for (int64_t i = 0; i < 3 * wide_n; ++i) wide_init[i] = (float)(i % 1000);
    float block_in[12], block_out[12];
    for (int i = 0; i < 12; ++i) block_in[i] = -1.0f - (float)i;
    bool block_ok = wide_init && wide_after && kf_tensor_create(ctx, KF_F32, 2, wide_shape, &wide) == KF_OK &&
                    kf_tensor_write(wide, wide_init, sizeof(float) * 3 * (size_t)wide_n) == KF_OK &&
                    kf_tensor_view(wide, 2, block_shape, block_strides, 5, &block) == KF_OK &&
                    kf_tensor_write(block, block_in, sizeof block_in) == KF_OK &&
                    kf_tensor_read(block, block_out, sizeof block_out) == KF_OK &&
                    kf_tensor_read(wide, wide_after, sizeof(float) * 3 * (size_t)wide_n) == KF_OK;
    for (int i = 0; block_ok && i < 12; ++i) block_ok = block_out[i] == block_in[i];
    for (int64_t i = 0; block_ok && i < 3 * wide_n; ++i) {
      const int64_t row = i / wide_n, col = i % wide_n;
      const bool inside = col >= 5 && col < 9;
      block_ok = wide_after[i] == (inside ? block_in[row * 4 + col - 5] : wide_init[i]);
    }
    check(block_ok, "a [3,4] block of a [3,262144] matrix writes and reads back, the rest untouched");
    kf_tensor_destroy(block);
    kf_tensor_destroy(wide);
    free(wide_init);
    free(wide_after);
  }

  /* 3-D view with a broadcast-free, permuted layout: [2,3,2] with strides [1,4,2] over a 12-element
   * storage (columns of the [3,4] matrix, transposed). */
  kf_tensor *flat = NULL, *v3 = NULL;
  int64_t twelve = 12, shape3[3] = {2, 3, 2}, strides3[3] = {1, 4, 2};
  float seq[12], got3[12];
  for (int i = 0; i < 12; ++i) seq[i] = (float)i;
  kf_tensor_create(ctx, KF_F32, 1, &twelve, &flat);
  kf_tensor_write(flat, seq, sizeof seq);
  bool ok3 = kf_tensor_view(flat, 3, shape3, strides3, 0, &v3) == KF_OK && kf_tensor_read(v3, got3, sizeof got3) == KF_OK;
  for (int a = 0; a < 2 && ok3; ++a)
    for (int b = 0; b < 3; ++b)
      for (int c = 0; c < 2; ++c) ok3 &= got3[(a * 3 + b) * 2 + c] == (float)(a + 4 * b + 2 * c);
  check(ok3, "3-D view with permuted strides reads in logical row-major order");

  /* Device copies. A copy from a view whose last dimension is strided either works or is refused with
   * KF_ERROR_UNSUPPORTED (never a wrong result). */
  kf_tensor *dense = NULL;
  int64_t dense_shape[3] = {2, 3, 2};
  kf_tensor_create(ctx, KF_F32, 3, dense_shape, &dense);
  float copied[12];
  kf_status copy_status = kf_tensor_copy(ctx, v3, dense);
  if (copy_status == KF_OK)
    check(kf_synchronize(ctx) == KF_OK && kf_tensor_read(dense, copied, sizeof copied) == KF_OK &&
              memcmp(copied, got3, sizeof copied) == 0,
          "kf_tensor_copy from a view with a strided last dimension");
  else
    check(copy_status == KF_ERROR_UNSUPPORTED && strncmp(kf_last_error(), "kf_tensor_copy:", 15) == 0,
          "kf_tensor_copy from a view with a strided last dimension is refused as unsupported (%s)",
          kf_status_name(copy_status));
  kf_tensor_destroy(dense);
  kf_tensor_destroy(v3);
  kf_tensor_destroy(flat);
  kf_tensor_destroy(view);

  /* Row-strided views (rows 7 apart, 5 wide, at offset 2) -> dense -> another row-strided view; the gaps
   * of the destination keep their contents. */
  kf_tensor *src_store = NULL, *dst_store = NULL, *src_rows = NULL, *dst_rows = NULL, *packed = NULL;
  int64_t store_len = 40, rows_shape[2] = {5, 5}, rows_strides[2] = {7, 1};
  float store_init[40], dst_init[40], packed_out[25], dst_after[40];
  for (int i = 0; i < 40; ++i) {
    store_init[i] = (float)i;
    dst_init[i] = -1.0f;
  }
  kf_tensor_create(ctx, KF_F32, 1, &store_len, &src_store);
  kf_tensor_create(ctx, KF_F32, 1, &store_len, &dst_store);
  kf_tensor_create(ctx, KF_F32, 2, rows_shape, &packed);
  kf_tensor_write(src_store, store_init, sizeof store_init);
  kf_tensor_write(dst_store, dst_init, sizeof dst_init);
  kf_tensor_view(src_store, 2, rows_shape, rows_strides, 2, &src_rows);
  kf_tensor_view(dst_store, 2, rows_shape, rows_strides, 3, &dst_rows);
  bool rows_ok = kf_tensor_copy(ctx, src_rows, packed) == KF_OK && kf_tensor_copy(ctx, packed, dst_rows) == KF_OK &&
                 kf_synchronize(ctx) == KF_OK && kf_tensor_read(packed, packed_out, sizeof packed_out) == KF_OK &&
                 kf_tensor_read(dst_store, dst_after, sizeof dst_after) == KF_OK;
  for (int r = 0; r < 5 && rows_ok; ++r)
    for (int c = 0; c < 5; ++c) rows_ok &= packed_out[r * 5 + c] == (float)(2 + r * 7 + c);
  for (int i = 0; i < 40 && rows_ok; ++i) {
    int rel = i - 3;
    bool in_view = rel >= 0 && rel / 7 < 5 && rel % 7 < 5;
    rows_ok &= dst_after[i] == (in_view ? (float)(2 + rel / 7 * 7 + rel % 7) : -1.0f);
  }
  check(rows_ok, "kf_tensor_copy between row-strided views and a dense tensor, gaps untouched");
  kf_tensor_destroy(src_rows);
  kf_tensor_destroy(dst_rows);
  kf_tensor_destroy(packed);
  kf_tensor_destroy(src_store);
  kf_tensor_destroy(dst_store);

  /* Empty tensors are legal: zero bytes in and out. */
  int64_t empty_shape[2] = {0, 5};
  kf_tensor *empty = NULL;
  check(kf_tensor_create(ctx, KF_BF16, 2, empty_shape, &empty) == KF_OK && kf_tensor_numel(empty) == 0 &&
            kf_tensor_write(empty, values, 0) == KF_OK && kf_tensor_read(empty, back, 0) == KF_OK,
        "a [0,5] tensor: numel 0, zero-byte write and read");
  kf_tensor_destroy(empty);
}

/* ---- conversions ---- */

static bool is_nan16(uint16_t h, bool bf16) {
  return bf16 ? (h & 0x7f80) == 0x7f80 && (h & 0x007f) != 0 : (h & 0x7c00) == 0x7c00 && (h & 0x03ff) != 0;
}

/* Exhaustive: every 16-bit pattern decodes to f32 and encodes back to itself (NaN to some NaN). */
static void exhaustive_round_trip(bool bf16) {
  const char *name = bf16 ? "bf16" : "f16";
  int mismatches = 0, nan_lost = 0;
  uint32_t first_bad = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = bf16 ? kf_bf16_to_f32((uint16_t)h) : kf_f16_to_f32((uint16_t)h);
    uint16_t back = bf16 ? kf_f32_to_bf16(f) : kf_f32_to_f16(f);
    if (is_nan16((uint16_t)h, bf16)) {
      if (!isnan(f) || !is_nan16(back, bf16)) nan_lost++;
    } else if (back != h) {
      if (mismatches++ == 0) first_bad = h;
    }
  }
  check(mismatches == 0 && nan_lost == 0, "all 65536 %s patterns round trip through f32 (%d mismatches, first 0x%04x; %d NaN lost)",
        name, mismatches, first_bad, nan_lost);

  /* kf_convert over the whole table agrees with the scalar helpers. */
  uint16_t *all = malloc(65536 * sizeof(uint16_t)), *again = malloc(65536 * sizeof(uint16_t));
  float *floats = malloc(65536 * sizeof(float));
  for (uint32_t h = 0; h < 65536; ++h) all[h] = (uint16_t)h;
  kf_dtype dt = bf16 ? KF_BF16 : KF_F16;
  bool ok = kf_convert(all, dt, floats, KF_F32, 65536) == KF_OK && kf_convert(floats, KF_F32, again, dt, 65536) == KF_OK;
  for (uint32_t h = 0; h < 65536 && ok; ++h) {
    float scalar = bf16 ? kf_bf16_to_f32((uint16_t)h) : kf_f16_to_f32((uint16_t)h);
    ok = is_nan16((uint16_t)h, bf16) ? isnan(floats[h]) && is_nan16(again[h], bf16)
                                     : f32_to_bits(floats[h]) == f32_to_bits(scalar) && again[h] == h;
  }
  check(ok, "kf_convert %s <-> f32 over all 65536 patterns matches the scalar helpers", name);
  free(all);
  free(again);
  free(floats);
}

/* Rounding of f32 -> 16-bit against its definition: the result is the nearest representable value,
 * ties to the even pattern, and anything at or past the midpoint above the largest finite is inf. */
static void rounding_against_definition(bool bf16) {
  const char *name = bf16 ? "bf16" : "f16";
  uint64_t state = 0x9e3779b97f4a7c15ull;
  int bad = 0;
  float first_bad = 0.0f;
  const double max_finite = bf16 ? 3.3895313892515355e38 : 65504.0;
  const double overflow_midpoint = bf16 ? 3.3961775292304611e38 : 65520.0;
  for (int i = 0; i < 2000000; ++i) {
    state += 0x9e3779b97f4a7c15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    /* Half the samples anywhere, half in the 16-bit format's range, where the rounding happens. */
    uint32_t bits = (uint32_t)z;
    if (i & 1) bits = (bits & 0x807fffffu) | ((uint32_t)(bf16 ? (z >> 32) % 254 + 1 : 100 + (z >> 32) % 43) << 23);
    float f = bits_to_f32(bits);
    if (isnan(f)) continue;
    double v = fabs((double)f);
    uint16_t h = bf16 ? kf_f32_to_bf16(f) : kf_f32_to_f16(f);
    uint16_t mag = h & 0x7fff;
    bool sign_ok = (h >> 15) == (bits >> 31);
    bool ok;
    if (v >= overflow_midpoint) {
      ok = mag == (bf16 ? 0x7f80 : 0x7c00);
    } else {
      double got = fabs(bf16 ? (double)kf_bf16_to_f32(mag) : (double)kf_f16_to_f32(mag));
      double below = mag > 0 ? fabs(bf16 ? (double)kf_bf16_to_f32(mag - 1) : (double)kf_f16_to_f32(mag - 1)) : -1.0;
      double above = got < max_finite ? fabs(bf16 ? (double)kf_bf16_to_f32(mag + 1) : (double)kf_f16_to_f32(mag + 1))
                                      : overflow_midpoint * 2 - max_finite;
      double err = fabs(got - v);
      ok = err <= fabs(v - above) && (below < 0 || err <= fabs(v - below));
      /* Exactly halfway: the even pattern wins. */
      if (ok && ((below >= 0 && err == fabs(v - below)) || err == fabs(v - above))) ok = (mag & 1) == 0;
    }
    if (!(ok && sign_ok) && bad++ == 0) first_bad = f;
  }
  check(bad == 0, "f32 -> %s rounds to nearest even on 2M samples (%d wrong, first %.9g)", name, bad, (double)first_bad);
}

static void test_conversions(void) {
  struct {
    float value;
    uint16_t f16, bf16;
  } known[] = {
      {1.0f, 0x3c00, 0x3f80},
      {-2.0f, 0xc000, 0xc000},
      {0.0f, 0x0000, 0x0000},
      {-0.0f, 0x8000, 0x8000},
      {65504.0f, 0x7bff, 0x4780},          /* bf16: 65504 rounds up to 65536 */
      {65520.0f, 0x7c00, 0x4780},          /* f16: the midpoint above the largest finite rounds to inf */
      {65519.996f, 0x7bff, 0x4780},
      {0x1p-24f, 0x0001, 0x3380},          /* smallest f16 subnormal */
      {0x1p-25f, 0x0000, 0x3300},          /* f16: halfway between 0 and 2^-24, ties to even (0) */
      {0x1.8p-25f, 0x0001, 0x3340},        /* f16: 0.75 of the subnormal step rounds up */
      {0x1p-14f, 0x0400, 0x3880},          /* smallest f16 normal */
      {0x1.ff8p-15f, 0x03ff, 0x3880},      /* f16: the largest subnormal */
      {0x1.ffcp-15f, 0x0400, 0x3880},      /* f16: halfway past it rounds (to even) into the normals */
      {1.0f + 0x1p-11f, 0x3c00, 0x3f80},   /* f16 tie, even stays */
      {1.0f + 0x3p-11f, 0x3c02, 0x3f80},   /* f16 tie, odd rounds up */
      {1.0f + 0x1p-8f, 0x3c04, 0x3f80},    /* bf16 tie, even stays */
      {1.0f + 0x3p-8f, 0x3c0c, 0x3f82},    /* bf16 tie, odd rounds up */
      {3.4028234663852886e38f, 0x7c00, 0x7f80}, /* FLT_MAX: inf in both */
      {INFINITY, 0x7c00, 0x7f80},
      {-INFINITY, 0xfc00, 0xff80},
  };
  for (size_t i = 0; i < sizeof known / sizeof known[0]; ++i) {
    uint16_t h = kf_f32_to_f16(known[i].value), b = kf_f32_to_bf16(known[i].value);
    check(h == known[i].f16 && b == known[i].bf16, "%.9g -> f16 0x%04x (want 0x%04x), bf16 0x%04x (want 0x%04x)",
          (double)known[i].value, h, known[i].f16, b, known[i].bf16);
  }
  check(is_nan16(kf_f32_to_f16(NAN), false) && is_nan16(kf_f32_to_bf16(NAN), true) &&
            is_nan16(kf_f32_to_f16(-NAN), false) && is_nan16(kf_f32_to_bf16(bits_to_f32(0x7f800001u)), true),
        "NaN (quiet, negative, signalling with a low payload) stays NaN in f16 and bf16");
  check(isnan(kf_f16_to_f32(0x7e00)) && isnan(kf_bf16_to_f32(0x7fc1)) && isinf(kf_f16_to_f32(0x7c00)) &&
            kf_f16_to_f32(0x0001) == 0x1p-24f && kf_f16_to_f32(0x03ff) == 0x1.ff8p-15f,
        "f16/bf16 -> f32: NaN, inf and subnormals decode exactly");
  exhaustive_round_trip(false);
  exhaustive_round_trip(true);
  rounding_against_definition(false);
  rounding_against_definition(true);

  /* f8 e4m3: the GEMM input format; saturates (no infinity). */
  float f8_in[5] = {1.0f, 448.0f, 1000.0f, -0.013671875f, NAN}, f8_back[5];
  uint8_t f8[5];
  bool f8_ok = kf_convert(f8_in, KF_F32, f8, KF_F8_E4M3, 5) == KF_OK &&
               kf_convert(f8, KF_F8_E4M3, f8_back, KF_F32, 5) == KF_OK;
  check(f8_ok && f8_back[0] == 1.0f && f8_back[1] == 448.0f && f8_back[2] == 448.0f && f8_back[3] == -0.013671875f &&
            isnan(f8_back[4]),
        "f8e4m3: 1 and 448 exact, 1000 saturates to 448, subnormal exact, NaN stays NaN");
}

/* ---- memory statistics ---- */

static void test_memory(void) {
  kf_context *ctx = cpu_context();
  kf_memory_stats s0, s1, s2, s3, s4;
  check(kf_memory_get_stats(ctx, &s0) == KF_OK && s0.struct_size == sizeof s0 && s0.current_bytes == 0,
        "a new context holds no tensor memory");
  int64_t n = 1 << 18; /* 1 MiB of f32 */
  kf_tensor *a = NULL, *b = NULL;
  kf_tensor_create(ctx, KF_F32, 1, &n, &a);
  kf_memory_get_stats(ctx, &s1);
  check(s1.current_bytes >= (uint64_t)n * 4 && s1.peak_bytes >= s1.current_bytes && s1.alloc_count == s0.alloc_count + 1 &&
            s1.device_bytes == s1.current_bytes + s1.cached_bytes,
        "after a 1 MiB tensor: current %llu, peak %llu, device = current + cached", (unsigned long long)s1.current_bytes,
        (unsigned long long)s1.peak_bytes);
  kf_tensor_destroy(a);
  kf_memory_get_stats(ctx, &s2);
  check(s2.current_bytes == s0.current_bytes && s2.cached_bytes >= (uint64_t)n * 4 && s2.peak_bytes == s1.peak_bytes,
        "after destroying it: current back to %llu, %llu bytes cached, peak kept", (unsigned long long)s2.current_bytes,
        (unsigned long long)s2.cached_bytes);
  kf_tensor_create(ctx, KF_F32, 1, &n, &b);
  kf_memory_get_stats(ctx, &s3);
  check(s3.device_alloc_count == s1.device_alloc_count && s3.alloc_count == s1.alloc_count + 1,
        "a same-size tensor reuses the cached block (no new device allocation)");
  kf_tensor_destroy(b);
  check(kf_memory_reset_peak(ctx) == KF_OK && kf_memory_get_stats(ctx, &s4) == KF_OK &&
            s4.peak_bytes == s4.current_bytes,
        "kf_memory_reset_peak sets peak to current");
  check(kf_memory_trim(ctx) == KF_OK && kf_memory_get_stats(ctx, &s4) == KF_OK && s4.cached_bytes == 0 &&
            s4.device_bytes == s4.current_bytes,
        "kf_memory_trim returns the cached bytes (cached %llu)", (unsigned long long)s4.cached_bytes);
  kf_context_destroy(ctx);
}

/* ---- version, status names, timers, errors ---- */

static void test_misc(kf_context *ctx) {
  check(kf_version() == KF_VERSION_MAJOR * 10000u + KF_VERSION_MINOR * 100u + KF_VERSION_PATCH,
        "kf_version() matches the header (%u)", kf_version());
  char want[32];
  snprintf(want, sizeof want, "%d.%d.%d", KF_VERSION_MAJOR, KF_VERSION_MINOR, KF_VERSION_PATCH);
  check(kf_version_string() != NULL && strstr(kf_version_string(), want) != NULL, "kf_version_string() \"%s\" contains %s",
        kf_version_string() ? kf_version_string() : "(null)", want);

#define CHECK_STATUS_NAME_(name, value, msg)                                                              \
  check(strcmp(kf_status_name(name), #name) == 0 && strcmp(kf_status_message(name), msg) == 0 && (int)name == value, \
        "kf_status_name(%d) is %s", value, #name);
  KF_STATUS_MAP(CHECK_STATUS_NAME_)
#undef CHECK_STATUS_NAME_

  double ms = -1.0;
  int64_t shape[2] = {64, 1024};
  kf_tensor *x = NULL, *y = NULL;
  kf_tensor_create(ctx, KF_F32, 2, shape, &x);
  kf_tensor_create(ctx, KF_F32, 2, shape, &y);
  float *ones = malloc(64 * 1024 * sizeof(float));
  for (int i = 0; i < 64 * 1024; ++i) ones[i] = 1.0f;
  kf_tensor_write(x, ones, 64 * 1024 * sizeof(float));
  check(kf_timer_begin(ctx) == KF_OK && kf_rmsnorm(ctx, x, y, NULL) == KF_OK && kf_timer_end(ctx, &ms) == KF_OK &&
            ms >= 0.0 && isfinite(ms),
        "kf_timer_begin/end around an op: %.4f ms", ms);
  free(ones);
  kf_tensor_destroy(x);
  kf_tensor_destroy(y);
}

static void *other_thread(void *arg) {
  const char **out = arg;
  *out = kf_last_error()[0] == '\0' ? "" : "not empty";
  return NULL;
}

static void test_error_is_per_thread(void) {
  kf_synchronize(NULL);
  bool failed_here = strncmp(kf_last_error(), "kf_synchronize:", 15) == 0;
  const char *seen = "unset";
  pthread_t thread;
  bool ran = pthread_create(&thread, NULL, other_thread, &seen) == 0 && pthread_join(thread, NULL) == 0;
  check(failed_here && ran && seen[0] == '\0', "kf_last_error is per thread (another thread sees \"\")");
  check(strncmp(kf_last_error(), "kf_synchronize:", 15) == 0, "the failing thread still sees its message");
}

int main(void) {
  kf_test_use_writable_caches();
  test_devices();
  test_contexts();
  kf_context *ctx = cpu_context();
  test_tensors(ctx);
  test_conversions();
  test_memory();
  test_misc(ctx);
  test_error_is_per_thread();
  kf_context_destroy(ctx);
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed > 0 ? 1 : 0;
}

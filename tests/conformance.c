/* conformance.c — every op on every selected device against the fp64 reference, and every pair of
 * devices against each other, through the public API only.
 *
 *   [KF_CONFORMANCE_OPS=rmsnorm,layernorm,rope,swiglu,geglu,softmax,gemm,attention] \
 *   [KF_CONFORMANCE_DEVICE=<part of a device name>] \
 *   conformance [--backend=cpu|opencl|vulkan|cuda[,...]]... [--quick]
 *
 * Default: all backends. For each case the inputs are fresh random data (seed printed; replay with
 * KF_TEST_SEED), outputs are views into a larger storage poisoned with 0xFF bytes (NaN in every float
 * dtype), and after the op the whole storage is read back: everything outside the view must still be
 * poison (guards before and after the view, gaps between strided rows) and every element of the view
 * must have been written. Inputs must be unchanged (for RoPE / GLU / softmax: every storage is compared
 * whole, so a V slice of a packed QKV tensor or the up half of a fused gate is checked too). Where NaN
 * is the expected result (softmax rows masked entirely, RoPE positions outside the cos_sin table) the
 * NaN elements are checked to be NaN and the rest as usual. One line per case:
 *   PASS|FAIL op=<op> backend=<b> device="<name>" dtype=<x>[-><y>] shape=[...] variant=<v>
 *             max_err=<g> nmse=<g> tol=<g> ...
 * (op = rmsnorm, layernorm, rope, swiglu, geglu or softmax; an op the backend does not implement
 * returns KF_ERROR_UNSUPPORTED and its cases FAIL)
 * then one PAIR line per pair of devices, and `conformance: N passed, N failed`; the exit status is 1
 * when anything failed. A selected backend that is unavailable prints SKIP, or FAIL when it is named
 * in KF_REQUIRE_BACKENDS (comma list).
 *
 * Adding an op: write its case table and make / run / free functions like the RoPE, GLU and softmax
 * suites below (run_generic_suite does the rest: guards, reporting, pairwise comparison), and call it
 * from main() under op_selected().
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/kfuse.h"
#include "tests/reference/reference.h"
#include "tests/conformance.h"

/* ================================================================================================
 * Run-wide state: selected devices and the pass/fail tally.
 */

int g_passed, g_failed;

void tally(bool ok) {
  if (ok) g_passed++;
  else g_failed++;
}

/* Seconds each device spent in one op's suite: `TIME op=<op> backend=... seconds=<s> cases=<n>`. */
void print_suite_time(const char *op, const test_device *devices, int device_count, const double *start_seconds,
                             const int *start_cases) {
  for (int d = 0; d < device_count; ++d)
    printf("TIME op=%s %s seconds=%.1f cases=%d\n", op, devices[d].label, devices[d].seconds - start_seconds[d],
           devices[d].cases - start_cases[d]);
}

double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void *xmalloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) {
    fprintf(stderr, "conformance: out of host memory (%zu bytes)\n", bytes);
    exit(2);
  }
  return p;
}

/* ================================================================================================
 * Operands: a 2-D [rows, row_len] view (rows row_stride apart, columns col_stride apart) into a 1-D
 * storage with guard elements before and after. Vectors (weight, bias) are 1-D [row_len] views.
 */

typedef struct operand {
  kf_dtype dtype;
  size_t elem;
  bool is_vector;
  int64_t rows, row_len, row_stride, col_stride, offset, storage_elems;
  kf_tensor *storage; /* 1-D, owns the memory */
  kf_tensor *view;    /* what the op sees */
} operand;

static void operand_destroy(operand *op) {
  kf_tensor_destroy(op->view);
  kf_tensor_destroy(op->storage);
  op->view = op->storage = NULL;
}

/* Creates the storage, poisons all of it and makes the view. Returns a status; *why says which step. */
static kf_status operand_create(kf_context *ctx, kf_dtype dtype, int64_t rows, int64_t row_len, bool is_vector,
                                int64_t row_gap, int64_t col_stride, operand *op, const char **why) {
  memset(op, 0, sizeof *op);
  op->dtype = dtype;
  op->elem = kf_dtype_size(dtype);
  op->is_vector = is_vector;
  op->rows = is_vector ? 1 : rows;
  op->row_len = row_len;
  op->col_stride = col_stride;
  op->row_stride = is_vector ? 0 : row_len * col_stride + row_gap;
  op->offset = VIEW_FRONT(row_gap);
  op->storage_elems = op->offset + (op->rows - 1) * op->row_stride + (row_len - 1) * col_stride + 1 + GUARD_BACK;

  kf_status status = kf_tensor_create(ctx, dtype, 1, &op->storage_elems, &op->storage);
  if (status != KF_OK) {
    *why = "kf_tensor_create";
    return status;
  }
  size_t bytes = (size_t)op->storage_elems * op->elem;
  unsigned char *poison = xmalloc(bytes);
  memset(poison, POISON_BYTE, bytes);
  status = kf_tensor_write(op->storage, poison, bytes);
  free(poison);
  if (status != KF_OK) {
    *why = "kf_tensor_write (poison)";
    return status;
  }
  if (is_vector) {
    status = kf_tensor_view(op->storage, 1, &row_len, &col_stride, op->offset, &op->view);
  } else {
    int64_t shape[2] = {rows, row_len}, strides[2] = {op->row_stride, col_stride};
    status = kf_tensor_view(op->storage, 2, shape, strides, op->offset, &op->view);
  }
  if (status != KF_OK) *why = "kf_tensor_view";
  return status;
}

static size_t operand_bytes(const operand *op) { return (size_t)(op->rows * op->row_len) * op->elem; }

/* Storage element index of view element (r, c). */
static int64_t operand_index(const operand *op, int64_t r, int64_t c) {
  return op->offset + r * op->row_stride + c * op->col_stride;
}

/* Reads the whole storage back, checks that exactly the view was written, and gathers the view's
 * elements (packed, row-major) into out. Returns false with a message in why on any violation. */
static bool operand_check_output(const operand *op, const char *name, void *out, char *why, size_t why_size) {
  size_t bytes = (size_t)op->storage_elems * op->elem;
  unsigned char *all = xmalloc(bytes);
  kf_status status = kf_tensor_read(op->storage, all, bytes);
  if (status != KF_OK) {
    snprintf(why, why_size, "%s: kf_tensor_read returned %s: %s", name, kf_status_name(status), kf_last_error());
    free(all);
    return false;
  }
  unsigned char *in_view = xmalloc((size_t)op->storage_elems);
  memset(in_view, 0, (size_t)op->storage_elems);
  int64_t unwritten = 0, first_unwritten_r = -1, first_unwritten_c = -1;
  for (int64_t r = 0; r < op->rows; ++r)
    for (int64_t c = 0; c < op->row_len; ++c) {
      int64_t idx = operand_index(op, r, c);
      const unsigned char *e = all + (size_t)idx * op->elem;
      in_view[idx] = 1;
      bool poisoned = true;
      for (size_t b = 0; b < op->elem; ++b) poisoned &= e[b] == POISON_BYTE;
      if (poisoned && unwritten++ == 0) {
        first_unwritten_r = r;
        first_unwritten_c = c;
      }
      memcpy((unsigned char *)out + (size_t)(r * op->row_len + c) * op->elem, e, op->elem);
    }
  bool ok = true;
  for (int64_t idx = 0; idx < op->storage_elems && ok; ++idx) {
    if (in_view[idx]) continue;
    const unsigned char *e = all + (size_t)idx * op->elem;
    for (size_t b = 0; b < op->elem; ++b)
      if (e[b] != POISON_BYTE) ok = false;
    if (!ok) {
      const char *where = idx < op->offset ? "the guard before the view"
                          : idx > operand_index(op, op->rows - 1, op->row_len - 1) ? "the guard past the end"
                                                                                   : "a gap between rows";
      snprintf(why, why_size, "%s: storage element %lld in %s was overwritten", name, (long long)idx, where);
    }
  }
  if (ok && unwritten > 0) {
    ok = false;
    snprintf(why, why_size, "%s: %lld elements were not written, the first at [%lld,%lld]", name,
             (long long)unwritten, (long long)first_unwritten_r, (long long)first_unwritten_c);
  }
  free(in_view);
  free(all);
  return ok;
}

/* Checks that an input's view still holds `expected` (packed bytes). */
static bool operand_check_unchanged(const operand *op, const char *name, const void *expected, char *why,
                                    size_t why_size) {
  size_t bytes = operand_bytes(op);
  unsigned char *now = xmalloc(bytes);
  kf_status status = kf_tensor_read(op->view, now, bytes);
  bool ok = status == KF_OK && memcmp(now, expected, bytes) == 0;
  if (status != KF_OK)
    snprintf(why, why_size, "%s: kf_tensor_read returned %s: %s", name, kf_status_name(status), kf_last_error());
  else if (!ok)
    snprintf(why, why_size, "input %s was modified", name);
  free(now);
  return ok;
}


void host_input_make(host_input *in, kf_dtype dtype, const double *values, size_t count) {
  in->dtype = dtype;
  in->count = count;
  in->values = xmalloc(count * sizeof(double));
  in->bytes = xmalloc(count * kf_dtype_size(dtype));
  if (kf_test_from_double(values, dtype, in->bytes, count) != KF_OK ||
      kf_test_to_double(in->bytes, dtype, in->values, count) != KF_OK) {
    fprintf(stderr, "conformance: kf_convert failed: %s\n", kf_last_error());
    exit(2);
  }
}

void host_input_free(host_input *in) {
  free(in->values);
  free(in->bytes);
  in->values = in->bytes = NULL;
}

double *bytes_to_doubles(const void *bytes, kf_dtype dtype, size_t count) {
  double *values = xmalloc(count * sizeof(double));
  if (kf_test_to_double(bytes, dtype, values, count) != KF_OK) {
    fprintf(stderr, "conformance: kf_convert failed: %s\n", kf_last_error());
    exit(2);
  }
  return values;
}

/* ================================================================================================
 * Reporting.
 */
static void describe_error(char *buf, size_t size, const char *output, const kf_test_error *e, int64_t row_len) {
  int64_t r = e->worst_index >= 0 ? e->worst_index / row_len : -1;
  int64_t c = e->worst_index >= 0 ? e->worst_index % row_len : -1;
  snprintf(buf, size, "output=%s worst=[%lld,%lld] got=%.9g want=%.9g", output, (long long)r, (long long)c,
           e->worst_out, e->worst_ref);
}

/* The smallest normal value of an output dtype. Below it the absolute rounding step is fixed (f16:
 * 6e-8 under 6.1e-5), so a subnormal result is measured against this, not against itself. */
static double smallest_normal(kf_dtype dtype) {
  return dtype == KF_F16 ? 0x1p-14 : dtype == KF_F8_E4M3 ? 0x1p-6 : 0x1p-126;
}

bool within(const kf_test_error *e, double tolerance) {
  return e->max_err <= tolerance && e->nmse <= tolerance * tolerance;
}

/* ================================================================================================
 * RMSNorm and LayerNorm: the same operands, variants and checks; they differ in the API call, the
 * reference, the tolerance and LayerNorm's extra large-mean rows.
 */
typedef void (*norm_ref_fn)(const double *x, const double *residual, const double *weight, const double *bias,
                            int64_t rows, int64_t row_len, double eps, double *out_residual, double *out_y);
typedef struct norm_op {
  const char *name;
  kf_status (*run)(kf_context *, const kf_tensor *, kf_tensor *, const kf_norm_desc *);
  norm_ref_fn ref;
  kf_test_op tolerance_op;
} norm_op;

static const norm_op rmsnorm_op = {"rmsnorm", kf_rmsnorm, kf_ref_rmsnorm, KF_TEST_OP_RMSNORM};
static const norm_op layernorm_op = {"layernorm", kf_layernorm, kf_ref_layernorm, KF_TEST_OP_LAYERNORM};

enum {
  NORM_WEIGHT = 1u << 0,
  NORM_BIAS = 1u << 1,
  NORM_RESIDUAL = 1u << 2,
  NORM_INPLACE_RESIDUAL = 1u << 3, /* residual_out is the residual tensor */
  NORM_INPLACE_X = 1u << 4,        /* residual_out is the x tensor */
  NORM_STRIDED = 1u << 5,          /* x, y, residual, residual_out rows ROW_GAP apart */
  NORM_STRIDED_VECTORS = 1u << 6,  /* weight stride 3, bias stride 2 */
  NORM_LARGE_MEAN = 1u << 7,       /* LayerNorm: rows of mean ~1000x their std (cancellation in h - mean) */
};

typedef struct norm_variant {
  const char *name;
  unsigned flags;
  float eps;
} norm_variant;

static const norm_variant norm_variants[] = {
    {"plain", 0, 1e-6f},
    {"weight", NORM_WEIGHT, 1e-6f},
    {"weight+bias", NORM_WEIGHT | NORM_BIAS, 1e-6f},
    {"residual", NORM_RESIDUAL | NORM_WEIGHT, 1e-6f},
    {"residual_inplace", NORM_RESIDUAL | NORM_INPLACE_RESIDUAL | NORM_WEIGHT, 1e-6f},
    {"residual_inplace_x", NORM_RESIDUAL | NORM_INPLACE_X | NORM_WEIGHT | NORM_BIAS, 1e-6f},
    {"strided", NORM_STRIDED | NORM_RESIDUAL | NORM_WEIGHT | NORM_BIAS, 1e-6f},
    {"strided_vectors", NORM_STRIDED_VECTORS | NORM_WEIGHT | NORM_BIAS, 1e-6f},
    {"eps=0.1", NORM_WEIGHT, 0.1f},
    {"eps=0", 0, 0.0f},
};
/* LayerNorm only: a one-pass E[h²] - mean² variance loses everything to cancellation on these rows. */
static const norm_variant norm_large_mean_variant = {"large_mean", NORM_LARGE_MEAN | NORM_WEIGHT | NORM_BIAS, 1e-6f};
#define NORM_VARIANT_COUNT (sizeof norm_variants / sizeof norm_variants[0])

typedef struct norm_shape {
  int64_t rows, row_len;
} norm_shape;

/* Row lengths that are 1, odd, just past a power of two, and longer than any one workgroup handles
 * in one pass; rows from 1 to many short ones. 1280, 2048, 4096, 6144 and 8192 select CUDA's RMSNorm
 * re-read kernels with 1 and 2 packs a thread and 5, 4, 8, 12 and 16 warps a row; 2048, 4096 and 8192
 * LayerNorm's (4 packs a thread, 2, 4 and 8 warps: each step of its pairwise merge), 1280 and 6144
 * its register kernels, and 2048 with a residual or mixed dtypes its register kernels with two rows a
 * block (9 rows: the last block half empty). */
static const norm_shape norm_shapes_full[] = {
    {1, 1},   {64, 1},   {3, 7},    {64, 33},  {1, 1025},   {7, 1025},  {64, 4096},
    {3, 4097}, {2, 65537}, {3, 100000}, {1000, 33}, {5, 1280}, {9, 2048}, {4, 6144}, {3, 8192},
};
static const norm_shape norm_shapes_quick[] = {
    {1, 1}, {3, 7}, {64, 33}, {7, 1025}, {3, 4097}, {2, 65537},
};

/* Operand dtypes of one case. residual dtypes only matter for residual variants. */
typedef struct norm_dtypes {
  kf_dtype x, y, weight, bias, residual, residual_out;
} norm_dtypes;

/* Mixed-dtype combinations (on top of all-f32 / all-f16 / all-bf16). */
static const norm_dtypes norm_mixed[] = {
    {KF_BF16, KF_F32, KF_BF16, KF_BF16, KF_BF16, KF_BF16}, /* bf16 -> f32 */
    {KF_F32, KF_BF16, KF_F32, KF_F32, KF_F32, KF_F32},     /* f32 -> bf16 */
    {KF_F16, KF_F32, KF_F16, KF_F16, KF_F16, KF_F16},      /* f16 -> f32 */
    {KF_BF16, KF_BF16, KF_F32, KF_F32, KF_BF16, KF_BF16},  /* f32 weights, bf16 activations */
    {KF_BF16, KF_BF16, KF_BF16, KF_BF16, KF_F32, KF_F32},  /* f32 residual stream, bf16 activations */
    {KF_F32, KF_F32, KF_F32, KF_F32, KF_BF16, KF_BF16},    /* h rounded to bf16, y in f32: y must match
                                                              the rounded residual_out exactly */
    {KF_F16, KF_BF16, KF_F32, KF_BF16, KF_F32, KF_F16},    /* every operand differs */
};
#define NORM_MIXED_COUNT (sizeof norm_mixed / sizeof norm_mixed[0])

typedef struct norm_case {
  const norm_op *op;
  norm_shape shape;
  norm_dtypes dt;
  const norm_variant *variant;
} norm_case;

static void norm_case_names(const norm_case *nc, char *dtype_buf, size_t dtype_size, char *variant_buf,
                            size_t variant_size) {
  if (nc->dt.y == nc->dt.x) snprintf(dtype_buf, dtype_size, "%s", kf_dtype_name(nc->dt.x));
  else snprintf(dtype_buf, dtype_size, "%s->%s", kf_dtype_name(nc->dt.x), kf_dtype_name(nc->dt.y));
  unsigned f = nc->variant->flags;
  size_t used = (size_t)snprintf(variant_buf, variant_size, "%s", nc->variant->name);
  struct {
    bool present;
    const char *name;
    kf_dtype dtype;
  } extra[] = {
      {(f & NORM_WEIGHT) != 0, "weight", nc->dt.weight},
      {(f & NORM_BIAS) != 0, "bias", nc->dt.bias},
      {(f & NORM_RESIDUAL) != 0, "residual", nc->dt.residual},
      {(f & NORM_RESIDUAL) != 0, "residual_out", nc->dt.residual_out},
  };
  for (size_t i = 0; i < sizeof extra / sizeof extra[0]; ++i)
    if (extra[i].present && extra[i].dtype != nc->dt.x && used < variant_size)
      used += (size_t)snprintf(variant_buf + used, variant_size - used, ",%s:%s", extra[i].name,
                               kf_dtype_name(extra[i].dtype));
}

/* Inputs of one case, shared by every device. */
typedef struct norm_inputs {
  host_input x, residual, weight, bias;
  double *h_ref; /* x + residual in fp64 (residual variants) */
  double *y_ref; /* fp64 y (non-residual variants; residual ones depend on the device's residual_out) */
  double *h_magnitude; /* |x| + |residual|: what the residual add's rounding is relative to */
  double *y_magnitude; /* |normalized(h) weight| + |bias|: what y's rounding errors are relative to */
  double condition;    /* kf_test_tolerance_conditioned's: LayerNorm's max mean(|h|) / std, else 0 */
} norm_inputs;

/* Row scales: most rows O(1), some large (sums of squares far from 1), some small (eps matters). A
 * large row must stay finite in f16 after the residual add, hence 200 there. */
static double row_scale(kf_test_rng *rng, kf_dtype dtype) {
  double u = kf_test_rng_uniform(rng);
  if (u < 0.15) return dtype == KF_F16 ? 200.0 : 3e3;
  if (u < 0.30) return 0.01;
  return 1.0;
}

static void norm_inputs_make(const norm_case *nc, kf_test_rng *rng, norm_inputs *in) {
  memset(in, 0, sizeof *in);
  int64_t rows = nc->shape.rows, row_len = nc->shape.row_len;
  size_t count = (size_t)(rows * row_len);
  unsigned f = nc->variant->flags;
  double *values = xmalloc(count * sizeof(double));
  double *residual_values = xmalloc(count * sizeof(double));
  for (int64_t r = 0; r < rows; ++r) {
    /* x and residual of a row share its scale, so h is of that scale too. */
    kf_dtype narrowest = nc->dt.x == KF_F16 || nc->dt.residual == KF_F16 || nc->dt.residual_out == KF_F16 ||
                                 nc->dt.y == KF_F16
                             ? KF_F16
                             : KF_F32;
    double scale = row_scale(rng, narrowest);
    kf_test_rng_fill(rng, values + r * row_len, (size_t)row_len, scale);
    kf_test_rng_fill(rng, residual_values + r * row_len, (size_t)row_len, scale);
    if (f & NORM_LARGE_MEAN) {
      /* std 1 around a mean the x dtype still resolves into distinct values: 1000 in f32, 100 in f16
       * (steps of 1/16 there), 30 in bf16 (steps of 1/8); random sign per row. */
      double mean = nc->dt.x == KF_F32 ? 1000.0 : nc->dt.x == KF_F16 ? 100.0 : 30.0;
      if (kf_test_rng_uniform(rng) < 0.5) mean = -mean;
      kf_test_rng_fill(rng, values + r * row_len, (size_t)row_len, 1.0);
      for (int64_t c = 0; c < row_len; ++c) values[r * row_len + c] += mean;
    }
  }
  host_input_make(&in->x, nc->dt.x, values, count);
  if (f & NORM_RESIDUAL) {
    host_input_make(&in->residual, nc->dt.residual, residual_values, count);
    in->h_ref = xmalloc(count * sizeof(double));
  }
  free(values);
  free(residual_values);

  double *vec = xmalloc((size_t)row_len * sizeof(double));
  if (f & NORM_WEIGHT) {
    kf_test_rng_fill(rng, vec, (size_t)row_len, 0.5);
    for (int64_t c = 0; c < row_len; ++c) vec[c] += 1.0;
    host_input_make(&in->weight, nc->dt.weight, vec, (size_t)row_len);
  }
  if (f & NORM_BIAS) {
    kf_test_rng_fill(rng, vec, (size_t)row_len, 0.5);
    host_input_make(&in->bias, nc->dt.bias, vec, (size_t)row_len);
  }
  free(vec);

  double *y_ref = xmalloc(count * sizeof(double));
  nc->op->ref(in->x.values, (f & NORM_RESIDUAL) ? in->residual.values : NULL,
              (f & NORM_WEIGHT) ? in->weight.values : NULL, (f & NORM_BIAS) ? in->bias.values : NULL, rows, row_len,
              (double)nc->variant->eps, in->h_ref, y_ref);
  if (f & NORM_RESIDUAL) free(y_ref);
  else in->y_ref = y_ref;

  /* Magnitudes: y_magnitude = |normalized(h) * weight| + |bias|, from the reference h. */
  const double *h = (f & NORM_RESIDUAL) ? in->h_ref : in->x.values;
  in->y_magnitude = xmalloc(count * sizeof(double));
  nc->op->ref(h, NULL, (f & NORM_WEIGHT) ? in->weight.values : NULL, NULL, rows, row_len, (double)nc->variant->eps,
              NULL, in->y_magnitude);
  in->condition = 0.0;
  if (nc->op->tolerance_op == KF_TEST_OP_LAYERNORM)
    for (int64_t r = 0; r < rows; ++r) {
      double sum = 0.0, sum_abs = 0.0, sum_squares = 0.0;
      for (int64_t c = 0; c < row_len; ++c) {
        sum += h[r * row_len + c];
        sum_abs += fabs(h[r * row_len + c]);
      }
      double mean = sum / (double)row_len;
      for (int64_t c = 0; c < row_len; ++c) sum_squares += (h[r * row_len + c] - mean) * (h[r * row_len + c] - mean);
      double condition = sum_abs / (double)row_len / sqrt(sum_squares / (double)row_len + (double)nc->variant->eps);
      if (condition > in->condition) in->condition = condition;
    }
  for (size_t i = 0; i < count; ++i)
    in->y_magnitude[i] =
        fmax(fabs(in->y_magnitude[i]) + ((f & NORM_BIAS) ? fabs(in->bias.values[i % (size_t)row_len]) : 0.0),
             smallest_normal(nc->dt.y)); /* rows of one element with eps > 0 can land in f16's subnormals */
  if (f & NORM_RESIDUAL) {
    in->h_magnitude = xmalloc(count * sizeof(double));
    for (size_t i = 0; i < count; ++i) in->h_magnitude[i] = fabs(in->x.values[i]) + fabs(in->residual.values[i]);
  }
}

static void norm_inputs_free(norm_inputs *in) {
  host_input_free(&in->x);
  if (in->residual.values) host_input_free(&in->residual);
  if (in->weight.values) host_input_free(&in->weight);
  if (in->bias.values) host_input_free(&in->bias);
  free(in->h_ref);
  free(in->y_ref);
  free(in->h_magnitude);
  free(in->y_magnitude);
}

/* What one device produced for a case (NULL when it failed before producing output). */
typedef struct norm_outputs {
  double *y;
  double *h; /* residual_out, residual variants */
} norm_outputs;

/* The dtype residual_out has in this case (in place, it is the aliased tensor's). */
static kf_dtype norm_residual_out_dtype(const norm_case *nc) {
  unsigned f = nc->variant->flags;
  if (f & NORM_INPLACE_X) return nc->dt.x;
  if (f & NORM_INPLACE_RESIDUAL) return nc->dt.residual;
  return nc->dt.residual_out;
}

/* Runs one case on one device, checks it against the reference and prints its line. */
static void norm_run_case(test_device *dev, const norm_case *nc, const norm_inputs *in, norm_outputs *out) {
  const int64_t rows = nc->shape.rows, row_len = nc->shape.row_len;
  const size_t count = (size_t)(rows * row_len);
  const unsigned f = nc->variant->flags;
  const int64_t gap = (f & NORM_STRIDED) ? ROW_GAP : 0;
  const kf_dtype ro_dtype = norm_residual_out_dtype(nc);
  char why[512] = "";
  const char *step = "";
  kf_status status = KF_OK;
  bool ok = true;
  operand x = {0}, y = {0}, residual = {0}, residual_out = {0}, weight = {0}, bias = {0};
  out->y = out->h = NULL;

#define NORM_TRY(call, what)                                                                                     \
  do {                                                                                                           \
    if (ok && (status = (call)) != KF_OK) {                                                                      \
      snprintf(why, sizeof why, "%s returned %s: %s", (what), kf_status_name(status), kf_last_error());          \
      ok = false;                                                                                                \
    }                                                                                                            \
  } while (0)

  NORM_TRY(operand_create(dev->ctx, nc->dt.x, rows, row_len, false, gap, 1, &x, &step), step);
  NORM_TRY(operand_create(dev->ctx, nc->dt.y, rows, row_len, false, gap, 1, &y, &step), step);
  if (f & NORM_RESIDUAL) {
    NORM_TRY(operand_create(dev->ctx, nc->dt.residual, rows, row_len, false, gap, 1, &residual, &step), step);
    if (!(f & (NORM_INPLACE_RESIDUAL | NORM_INPLACE_X)))
      NORM_TRY(operand_create(dev->ctx, ro_dtype, rows, row_len, false, gap, 1, &residual_out, &step), step);
  }
  if (f & NORM_WEIGHT)
    NORM_TRY(operand_create(dev->ctx, nc->dt.weight, 1, row_len, true, 0, (f & NORM_STRIDED_VECTORS) ? 3 : 1, &weight,
                            &step),
             step);
  if (f & NORM_BIAS)
    NORM_TRY(operand_create(dev->ctx, nc->dt.bias, 1, row_len, true, 0, (f & NORM_STRIDED_VECTORS) ? 2 : 1, &bias,
                            &step),
             step);

  /* Inputs go into their views; the rest of each storage stays poison (NaN), so a kernel that reads
   * outside a view poisons its result. */
  NORM_TRY(kf_tensor_write(x.view, in->x.bytes, operand_bytes(&x)), "kf_tensor_write(x)");
  if (f & NORM_RESIDUAL)
    NORM_TRY(kf_tensor_write(residual.view, in->residual.bytes, operand_bytes(&residual)), "kf_tensor_write(residual)");
  if (f & NORM_WEIGHT) NORM_TRY(kf_tensor_write(weight.view, in->weight.bytes, operand_bytes(&weight)), "kf_tensor_write(weight)");
  if (f & NORM_BIAS) NORM_TRY(kf_tensor_write(bias.view, in->bias.bytes, operand_bytes(&bias)), "kf_tensor_write(bias)");

  operand *ro = (f & NORM_INPLACE_X) ? &x : (f & NORM_INPLACE_RESIDUAL) ? &residual : &residual_out;
  kf_norm_desc desc = KF_NORM_DESC_INIT;
  desc.eps = nc->variant->eps;
  desc.weight = (f & NORM_WEIGHT) ? weight.view : NULL;
  desc.bias = (f & NORM_BIAS) ? bias.view : NULL;
  desc.residual = (f & NORM_RESIDUAL) ? residual.view : NULL;
  desc.residual_out = (f & NORM_RESIDUAL) ? ro->view : NULL;
  NORM_TRY(nc->op->run(dev->ctx, x.view, y.view, &desc), nc->op->name);
  NORM_TRY(kf_synchronize(dev->ctx), "kf_synchronize");
#undef NORM_TRY

  void *y_bytes = xmalloc(count * kf_dtype_size(nc->dt.y));
  void *h_bytes = (f & NORM_RESIDUAL) ? xmalloc(count * kf_dtype_size(ro_dtype)) : NULL;
  if (ok) ok = operand_check_output(&y, "y", y_bytes, why, sizeof why);
  if (ok && (f & NORM_RESIDUAL)) ok = operand_check_output(ro, "residual_out", h_bytes, why, sizeof why);
  if (ok && !(f & NORM_INPLACE_X)) ok = operand_check_unchanged(&x, "x", in->x.bytes, why, sizeof why);
  if (ok && (f & NORM_RESIDUAL) && !(f & NORM_INPLACE_RESIDUAL))
    ok = operand_check_unchanged(&residual, "residual", in->residual.bytes, why, sizeof why);
  if (ok && (f & NORM_WEIGHT)) ok = operand_check_unchanged(&weight, "weight", in->weight.bytes, why, sizeof why);
  if (ok && (f & NORM_BIAS)) ok = operand_check_unchanged(&bias, "bias", in->bias.bytes, why, sizeof why);

  kf_test_error y_err = {INFINITY, INFINITY, -1, 0, 0, 0}, h_err = {0, 0, -1, 0, 0, 0};
  double y_tol = kf_test_tolerance_conditioned(nc->op->tolerance_op, nc->dt.y, row_len, in->condition);
  double h_tol = kf_test_tolerance(KF_TEST_OP_RESIDUAL_ADD, ro_dtype, row_len);
  if (ok) {
    out->y = bytes_to_doubles(y_bytes, nc->dt.y, count);
    const double *y_ref = in->y_ref;
    double *y_ref_device = NULL;
    if (f & NORM_RESIDUAL) {
      /* residual_out against x + residual; y against the reference norm of what this device stored in
       * residual_out (the contract: y = rmsnorm(rounded h)). */
      out->h = bytes_to_doubles(h_bytes, ro_dtype, count);
      h_err = kf_test_compare(out->h, in->h_ref, in->h_magnitude, count, (size_t)row_len);
      y_ref_device = xmalloc(count * sizeof(double));
      nc->op->ref(out->h, NULL, (f & NORM_WEIGHT) ? in->weight.values : NULL, (f & NORM_BIAS) ? in->bias.values : NULL,
                  rows, row_len, (double)nc->variant->eps, NULL, y_ref_device);
      y_ref = y_ref_device;
    }
    y_err = kf_test_compare(out->y, y_ref, in->y_magnitude, count, (size_t)row_len);
    free(y_ref_device);
    if (!within(&y_err, y_tol)) {
      ok = false;
      describe_error(why, sizeof why, "y", &y_err, row_len);
    } else if ((f & NORM_RESIDUAL) && !within(&h_err, h_tol)) {
      ok = false;
      describe_error(why, sizeof why, "residual_out", &h_err, row_len);
    }
  }
  free(y_bytes);
  free(h_bytes);

  char dtype_name[64], variant_name[160];
  norm_case_names(nc, dtype_name, sizeof dtype_name, variant_name, sizeof variant_name);
  printf("%s op=%s %s dtype=%s shape=[%lld,%lld] variant=%s max_err=%.3g nmse=%.3g tol=%.3g", ok ? "PASS" : "FAIL",
         nc->op->name, dev->label, dtype_name, (long long)rows, (long long)row_len, variant_name, y_err.max_err, y_err.nmse, y_tol);
  if ((f & NORM_RESIDUAL) && out->h) printf(" residual_max_err=%.3g", h_err.max_err);
  if (!ok) printf(" %s", why);
  printf("\n");
  tally(ok);
  dev->cases++;
  if (!ok) dev->failed++;

  operand_destroy(&x);
  operand_destroy(&y);
  operand_destroy(&residual);
  operand_destroy(&residual_out);
  operand_destroy(&weight);
  operand_destroy(&bias);
}


static void norm_compare_pair(const test_device *a, const test_device *b, const norm_outputs *oa,
                              const norm_outputs *ob, const norm_case *nc, const norm_inputs *in,
                              pair_stats *stats) {
  if (!oa->y || !ob->y) return; /* a device that failed the case has already been reported */
  const int64_t row_len = nc->shape.row_len;
  const size_t count = (size_t)(nc->shape.rows * row_len);
  double tol = 2.0 * kf_test_tolerance_conditioned(nc->op->tolerance_op, nc->dt.y, row_len, in->condition);
  kf_test_error e = kf_test_compare(oa->y, ob->y, in->y_magnitude, count, (size_t)row_len);
  const char *output = "y";
  if (within(&e, tol) && oa->h && ob->h) {
    double h_tol = 2.0 * kf_test_tolerance(KF_TEST_OP_RESIDUAL_ADD, norm_residual_out_dtype(nc), row_len);
    kf_test_error eh = kf_test_compare(oa->h, ob->h, in->h_magnitude, count, (size_t)row_len);
    if (!within(&eh, h_tol)) {
      e = eh;
      tol = h_tol;
      output = "residual_out";
    }
  }
  bool ok = within(&e, tol);
  char dtype_name[64], variant_name[160];
  norm_case_names(nc, dtype_name, sizeof dtype_name, variant_name, sizeof variant_name);
  stats->cases++;
  double ratio = e.max_err / tol;
  if (ratio > stats->worst_ratio || stats->cases == 1) {
    stats->worst_ratio = ratio;
    stats->worst_diff = e.max_err;
    stats->worst_tol = tol;
    snprintf(stats->worst_case, sizeof stats->worst_case, "dtype=%s shape=[%lld,%lld] variant=%s", dtype_name,
             (long long)nc->shape.rows, (long long)row_len, variant_name);
  }
  if (!ok) {
    stats->failed++;
    char detail[256];
    describe_error(detail, sizeof detail, output, &e, row_len);
    printf("FAIL PAIR op=%s a=%s b=%s dtype=%s shape=[%lld,%lld] variant=%s max_diff=%.3g nmse=%.3g tol=%.3g %s\n",
           nc->op->name, a->pair_label, b->pair_label, dtype_name, (long long)nc->shape.rows, (long long)row_len, variant_name,
           e.max_err, e.nmse, tol, detail);
  }
  tally(ok);
}

static void run_norm_suite(const norm_op *op, test_device *devices, int device_count, bool quick, kf_test_rng *rng) {
  const norm_shape *shapes = quick ? norm_shapes_quick : norm_shapes_full;
  size_t shape_count = quick ? sizeof norm_shapes_quick / sizeof norm_shapes_quick[0]
                             : sizeof norm_shapes_full / sizeof norm_shapes_full[0];

  /* The case table: every shape x variant for all-f32 / all-f16 / all-bf16, then the mixed-dtype
   * combinations on a few shapes with the variants that involve every operand. */
  size_t capacity = shape_count * (NORM_VARIANT_COUNT + 1) * 3 + shape_count * NORM_MIXED_COUNT * 2;
  norm_case *cases = xmalloc(capacity * sizeof *cases);
  size_t case_count = 0;
  static const kf_dtype uniform[] = {KF_F32, KF_F16, KF_BF16};
  for (size_t d = 0; d < 3; ++d)
    for (size_t s = 0; s < shape_count; ++s)
      for (size_t v = 0; v < NORM_VARIANT_COUNT; ++v) {
        if (quick && (v % 2) != (s % 2) && norm_variants[v].flags != 0) continue; /* quick: half the variants */
        kf_dtype t = uniform[d];
        /* LayerNorm of one element with eps 0 is 0/0: undefined, not a test of anything. */
        if (op == &layernorm_op && shapes[s].row_len == 1 && norm_variants[v].eps == 0.0f) continue;
        cases[case_count++] = (norm_case){op, shapes[s], {t, t, t, t, t, t}, &norm_variants[v]};
      }
  if (op == &layernorm_op)
    for (size_t d = 0; d < 3; ++d)
      for (size_t s = 0; s < shape_count; ++s) {
        kf_dtype t = uniform[d];
        if (shapes[s].row_len > 1)
          cases[case_count++] = (norm_case){op, shapes[s], {t, t, t, t, t, t}, &norm_large_mean_variant};
      }
  const norm_variant *weight_bias = &norm_variants[2], *residual = &norm_variants[3];
  for (size_t m = 0; m < NORM_MIXED_COUNT; ++m)
    for (size_t s = 0; s < shape_count; s += quick ? 3 : 2) {
      cases[case_count++] = (norm_case){op, shapes[s], norm_mixed[m], weight_bias};
      cases[case_count++] = (norm_case){op, shapes[s], norm_mixed[m], residual};
    }

  double *start_seconds = xmalloc((size_t)(device_count > 0 ? device_count : 1) * sizeof(double));
  int *start_cases = xmalloc((size_t)(device_count > 0 ? device_count : 1) * sizeof(int));
  for (int d = 0; d < device_count; ++d) {
    start_seconds[d] = devices[d].seconds;
    start_cases[d] = devices[d].cases;
  }
  int pair_count = device_count * (device_count - 1) / 2;
  pair_stats *pairs = xmalloc((size_t)(pair_count > 0 ? pair_count : 1) * sizeof *pairs);
  memset(pairs, 0, (size_t)(pair_count > 0 ? pair_count : 1) * sizeof *pairs);
  norm_outputs *outputs = xmalloc((size_t)device_count * sizeof *outputs);

  for (size_t i = 0; i < case_count; ++i) {
    norm_inputs in;
    norm_inputs_make(&cases[i], rng, &in);
    for (int d = 0; d < device_count; ++d) {
      double start = now_seconds();
      norm_run_case(&devices[d], &cases[i], &in, &outputs[d]);
      devices[d].seconds += now_seconds() - start;
    }
    int p = 0;
    for (int a = 0; a < device_count; ++a)
      for (int b = a + 1; b < device_count; ++b, ++p)
        norm_compare_pair(&devices[a], &devices[b], &outputs[a], &outputs[b], &cases[i], &in, &pairs[p]);
    for (int d = 0; d < device_count; ++d) {
      free(outputs[d].y);
      free(outputs[d].h);
    }
    norm_inputs_free(&in);
    fflush(stdout);
  }

  int p = 0;
  for (int a = 0; a < device_count; ++a)
    for (int b = a + 1; b < device_count; ++b, ++p)
      printf("PAIR op=%s a=%s b=%s cases=%d failed=%d max_diff=%.3g tol=%.3g (closest to its tolerance: %s)\n",
             op->name, devices[a].pair_label, devices[b].pair_label, pairs[p].cases, pairs[p].failed, pairs[p].worst_diff,
             pairs[p].worst_tol, pairs[p].worst_case);
  print_suite_time(op->name, devices, device_count, start_seconds, start_cases);
  free(start_seconds);
  free(start_cases);
  free(outputs);
  free(pairs);
  free(cases);
}

/* ================================================================================================
 * Shared machinery of the RoPE, GLU and softmax suites.
 *
 * A region is one 1-D storage and the image of what it must hold: poison everywhere, then the inputs
 * scattered into their views. Operands are views (geometry) into regions, so one storage can hold
 * several operands (Q and K slices of one packed QKV tensor, the two halves of a fused gate, x that is
 * also y). After the op the whole storage is read back: every element of an output view is gathered,
 * every other element must still equal the image (untouched inputs, V, guards and gaps), and an output
 * element whose image is poison must have been written.
 */

int64_t geometry_count(const geometry *g) {
  int64_t n = 1;
  for (int32_t d = 0; d < g->ndim; ++d) n *= g->shape[d];
  return n;
}

/* Storage index of the i-th element in row-major order. */
int64_t geometry_index(const geometry *g, int64_t i) {
  int64_t idx = g->offset;
  for (int32_t d = g->ndim - 1; d >= 0; --d) {
    idx += (i % g->shape[d]) * g->strides[d];
    i /= g->shape[d];
  }
  return idx;
}

/* One past the largest storage index the view touches. */
int64_t geometry_end(const geometry *g) {
  int64_t last = g->offset;
  for (int32_t d = 0; d < g->ndim; ++d) last += (g->shape[d] - 1) * g->strides[d];
  return last + 1;
}

/* A contiguous-rows geometry [d0, .., dn-1] whose rows (last dim) are row_gap elements apart beyond
 * their length, starting at VIEW_FRONT(row_gap). */
geometry geometry_rows(int32_t ndim, const int64_t *shape, int64_t row_gap) {
  geometry g;
  memset(&g, 0, sizeof g);
  g.ndim = ndim;
  g.offset = VIEW_FRONT(row_gap);
  int64_t stride = 1;
  for (int32_t d = ndim - 1; d >= 0; --d) {
    g.shape[d] = shape[d];
    g.strides[d] = stride;
    stride *= shape[d];
    if (d == ndim - 1) stride += row_gap;
  }
  return g;
}



void region_destroy(region *r) {
  kf_tensor_destroy(r->storage);
  free(r->image);
  memset(r, 0, sizeof *r);
}

/* A storage large enough for every listed view plus GUARD_BACK, poisoned (on the host only: the
 * image goes to the device with region_upload). */
kf_status region_create(kf_context *ctx, kf_dtype dtype, const geometry *views, int view_count, region *r) {
  memset(r, 0, sizeof *r);
  r->dtype = dtype;
  r->elem = kf_dtype_size(dtype);
  int64_t end = GUARD_FRONT;
  for (int i = 0; i < view_count; ++i)
    if (geometry_end(&views[i]) > end) end = geometry_end(&views[i]);
  r->elems = end + GUARD_BACK;
  r->image = xmalloc((size_t)r->elems * r->elem);
  r->poison = POISON_BYTE;
  memset(r->image, POISON_BYTE, (size_t)r->elems * r->elem);
  return kf_tensor_create(ctx, dtype, 1, &r->elems, &r->storage);
}

/* Scatters packed bytes (row-major over the view) into the image. */
void region_fill(region *r, const geometry *g, const void *bytes) {
  if (!r->image) return; /* its creation was skipped after an earlier failure */
  int64_t n = geometry_count(g);
  for (int64_t i = 0; i < n; ++i)
    memcpy(r->image + (size_t)geometry_index(g, i) * r->elem, (const unsigned char *)bytes + (size_t)i * r->elem,
           r->elem);
}

/* Switches a fresh region (nothing filled yet) to FINITE_POISON_BYTE. */
void region_poison_finite(region *r) {
  if (!r->image) return;
  r->poison = FINITE_POISON_BYTE;
  memset(r->image, FINITE_POISON_BYTE, (size_t)r->elems * r->elem);
}

kf_status region_upload(region *r) {
  return kf_tensor_write(r->storage, r->image, (size_t)r->elems * r->elem);
}

kf_status region_view(const region *r, const geometry *g, kf_tensor **out) {
  return kf_tensor_view(r->storage, g->ndim, g->shape, g->strides, g->offset, out);
}

/* Reads the storage back, gathers each output view (packed bytes into outs[i]) and checks everything
 * else is unchanged and every output element was written. */
bool region_check(const region *r, const char *region_name, const geometry *out_views, void **outs,
                         const char *const *out_names, int out_count, char *why, size_t why_size) {
  size_t bytes = (size_t)r->elems * r->elem;
  unsigned char *all = xmalloc(bytes);
  kf_status status = kf_tensor_read(r->storage, all, bytes);
  if (status != KF_OK) {
    snprintf(why, why_size, "%s: kf_tensor_read returned %s: %s", region_name, kf_status_name(status),
             kf_last_error());
    free(all);
    return false;
  }
  unsigned char *is_out = xmalloc((size_t)r->elems);
  memset(is_out, 0, (size_t)r->elems);
  bool ok = true;
  for (int o = 0; o < out_count && ok; ++o) {
    int64_t n = geometry_count(&out_views[o]), unwritten = 0, first = -1;
    for (int64_t i = 0; i < n; ++i) {
      int64_t idx = geometry_index(&out_views[o], i);
      const unsigned char *e = all + (size_t)idx * r->elem, *before = r->image + (size_t)idx * r->elem;
      is_out[idx] = 1;
      bool poison_before = true, poison_now = true;
      for (size_t b = 0; b < r->elem; ++b) {
        poison_before &= before[b] == r->poison;
        poison_now &= e[b] == r->poison;
      }
      if (poison_before && poison_now && unwritten++ == 0) first = i;
      memcpy((unsigned char *)outs[o] + (size_t)i * r->elem, e, r->elem);
    }
    if (unwritten > 0) {
      ok = false;
      snprintf(why, why_size, "%s: %lld elements were not written, the first is element %lld", out_names[o],
               (long long)unwritten, (long long)first);
    }
  }
  for (int64_t idx = 0; idx < r->elems && ok; ++idx) {
    if (is_out[idx]) continue;
    if (memcmp(all + (size_t)idx * r->elem, r->image + (size_t)idx * r->elem, r->elem) != 0) {
      ok = false;
      bool poison = true;
      for (size_t b = 0; b < r->elem; ++b) poison &= r->image[(size_t)idx * r->elem + b] == r->poison;
      snprintf(why, why_size, "%s: storage element %lld (%s) was overwritten", region_name, (long long)idx,
               poison ? "a guard or gap outside every view" : "an input that is not an output");
    }
  }
  free(is_out);
  free(all);
  return ok;
}


void case_spec_free(case_spec *spec) {
  for (int o = 0; o < spec->output_count; ++o) {
    free(spec->out[o].ref);
    free(spec->out[o].magnitude);
    free(spec->out[o].expect_nan);
  }
  memset(spec, 0, sizeof *spec);
}

/* After the reference is computed: checks that it is NaN exactly where expected (a wrong test would
 * otherwise pass anything there) and zeroes those elements. */
void case_spec_settle_nans(case_spec *spec) {
  for (int o = 0; o < spec->output_count; ++o) {
    output_spec *os = &spec->out[o];
    if (!os->expect_nan) continue;
    for (size_t i = 0; i < os->count; ++i) {
      if ((bool)os->expect_nan[i] != (bool)isnan(os->ref[i])) {
        fprintf(stderr, "conformance: internal error: %s reference of %s NaN mismatch at %zu\n", spec->op, os->name, i);
        exit(2);
      }
      if (os->expect_nan[i]) os->ref[i] = 0.0;
    }
  }
}


void device_result_free(device_result *r) {
  for (int o = 0; o < MAX_OUTPUTS; ++o) free(r->out[o]);
  memset(r, 0, sizeof *r);
}

/* Converts gathered output bytes to doubles into result->out[o] (takes ownership of nothing). */
void result_take(device_result *result, int o, const void *bytes, const output_spec *os) {
  result->out[o] = bytes_to_doubles(bytes, os->dtype, os->count);
}

/* Checks the device's outputs against the spec (expected NaNs, then tolerances), prints the case's
 * line and tallies it. ok / why: the outcome of the device steps before (status, guards). On failure
 * the outputs are dropped so the pair comparison skips this device. */
void finish_case(test_device *dev, const case_spec *spec, device_result *result, bool ok, char *why,
                        size_t why_size) {
  double worst_err = ok ? 0.0 : INFINITY, worst_nmse = ok ? 0.0 : INFINITY, worst_tol = spec->out[0].tol;
  double worst_ratio = -1.0;
  for (int o = 0; o < spec->output_count && ok; ++o) {
    const output_spec *os = &spec->out[o];
    double *out = result->out[o];
    if (os->expect_nan)
      for (size_t i = 0; i < os->count && ok; ++i) {
        if (!os->expect_nan[i]) continue;
        if (!isnan(out[i])) {
          ok = false;
          snprintf(why, why_size, "output=%s element %zu (group %zu) is %.9g, expected NaN", os->name, i,
                   i / (os->group_len ? os->group_len : os->count), out[i]);
        }
        out[i] = 0.0;
      }
    if (!ok) break;
    kf_test_error e = kf_test_compare(out, os->ref, os->magnitude, os->count, os->group_len);
    double ratio = fmax(e.max_err / os->tol, sqrt(e.nmse) / os->tol);
    if (ratio > worst_ratio) {
      worst_ratio = ratio;
      worst_err = e.max_err;
      worst_nmse = e.nmse;
      worst_tol = os->tol;
    }
    if (!within(&e, os->tol)) {
      ok = false;
      size_t g = os->group_len ? os->group_len : os->count;
      snprintf(why, why_size, "output=%s worst=element %lld (group %lld, index %lld) got=%.9g want=%.9g", os->name,
               (long long)e.worst_index, (long long)(e.worst_index / (int64_t)g), (long long)(e.worst_index % (int64_t)g),
               e.worst_out, e.worst_ref);
    }
  }
  printf("%s op=%s %s dtype=%s shape=%s variant=%s max_err=%.3g nmse=%.3g tol=%.3g", ok ? "PASS" : "FAIL", spec->op,
         dev->label, spec->dtype, spec->shape, spec->variant, worst_err, worst_nmse, worst_tol);
  if (!ok) printf(" %s", why);
  printf("\n");
  tally(ok);
  dev->cases++;
  if (!ok) {
    dev->failed++;
    device_result_free(result);
  }
}

/* Two devices agree on every output within the sum of both tolerances. */
void compare_pair_generic(const test_device *a, const test_device *b, const device_result *ra,
                                 const device_result *rb, const case_spec *spec, pair_stats *stats) {
  for (int o = 0; o < spec->output_count; ++o)
    if (!ra->out[o] || !rb->out[o]) return;
  bool ok = true;
  double ratio = 0.0, diff = 0.0, tol = 2.0 * spec->out[0].tol;
  char detail[256] = "";
  for (int o = 0; o < spec->output_count; ++o) {
    const output_spec *os = &spec->out[o];
    double t = 2.0 * os->tol;
    kf_test_error e = kf_test_compare(ra->out[o], rb->out[o], os->magnitude, os->count, os->group_len);
    if (e.max_err / t >= ratio) {
      ratio = e.max_err / t;
      diff = e.max_err;
      tol = t;
    }
    if (ok && !within(&e, t)) {
      ok = false;
      snprintf(detail, sizeof detail, "output=%s worst=element %lld a=%.9g b=%.9g nmse=%.3g", os->name,
               (long long)e.worst_index, e.worst_out, e.worst_ref, e.nmse);
    }
  }
  stats->cases++;
  if (ratio > stats->worst_ratio || stats->cases == 1) {
    stats->worst_ratio = ratio;
    stats->worst_diff = diff;
    stats->worst_tol = tol;
    snprintf(stats->worst_case, sizeof stats->worst_case, "dtype=%s shape=%s variant=%s", spec->dtype, spec->shape,
             spec->variant);
  }
  if (!ok) {
    stats->failed++;
    printf("FAIL PAIR op=%s a=%s b=%s dtype=%s shape=%s variant=%s max_diff=%.3g tol=%.3g %s\n", spec->op,
           a->pair_label, b->pair_label, spec->dtype, spec->shape, spec->variant, diff, tol, detail);
  }
  tally(ok);
}

/* A suite over a case table: for each case the inputs are made once (make), run on every device (run
 * fills the device_result and calls finish_case), then compared pairwise. */

void run_generic_suite(const char *op, const void *cases, size_t case_size, size_t case_count,
                              case_make_fn make, case_run_fn run, case_free_fn free_inputs, test_device *devices,
                              int device_count, kf_test_rng *rng) {
  double *start_seconds = xmalloc((size_t)(device_count > 0 ? device_count : 1) * sizeof(double));
  int *start_cases = xmalloc((size_t)(device_count > 0 ? device_count : 1) * sizeof(int));
  for (int d = 0; d < device_count; ++d) {
    start_seconds[d] = devices[d].seconds;
    start_cases[d] = devices[d].cases;
  }
  int pair_count = device_count * (device_count - 1) / 2;
  pair_stats *pairs = xmalloc((size_t)(pair_count > 0 ? pair_count : 1) * sizeof *pairs);
  memset(pairs, 0, (size_t)(pair_count > 0 ? pair_count : 1) * sizeof *pairs);
  device_result *results = xmalloc((size_t)(device_count > 0 ? device_count : 1) * sizeof *results);
  for (size_t i = 0; i < case_count; ++i) {
    const void *c = (const char *)cases + i * case_size;
    void *inputs = NULL;
    case_spec spec;
    memset(&spec, 0, sizeof spec);
    make(c, rng, &inputs, &spec);
    for (int d = 0; d < device_count; ++d) {
      memset(&results[d], 0, sizeof results[d]);
      double start = now_seconds();
      run(&devices[d], c, inputs, &spec, &results[d]);
      devices[d].seconds += now_seconds() - start;
    }
    int p = 0;
    for (int a = 0; a < device_count; ++a)
      for (int b = a + 1; b < device_count; ++b, ++p)
        compare_pair_generic(&devices[a], &devices[b], &results[a], &results[b], &spec, &pairs[p]);
    for (int d = 0; d < device_count; ++d) device_result_free(&results[d]);
    free_inputs(inputs);
    case_spec_free(&spec);
    fflush(stdout);
  }
  int p = 0;
  for (int a = 0; a < device_count; ++a)
    for (int b = a + 1; b < device_count; ++b, ++p)
      printf("PAIR op=%s a=%s b=%s cases=%d failed=%d max_diff=%.3g tol=%.3g (closest to its tolerance: %s)\n", op,
             devices[a].pair_label, devices[b].pair_label, pairs[p].cases, pairs[p].failed, pairs[p].worst_diff,
             pairs[p].worst_tol, pairs[p].worst_case);
  print_suite_time(op, devices, device_count, start_seconds, start_cases);
  free(start_seconds);
  free(start_cases);
  free(results);
  free(pairs);
}


void dtype_label(char *buf, size_t size, kf_dtype in, kf_dtype out) {
  if (in == out) snprintf(buf, size, "%s", kf_dtype_name(in));
  else snprintf(buf, size, "%s->%s", kf_dtype_name(in), kf_dtype_name(out));
}
/* ================================================================================================
 * RoPE.
 */
enum {
  ROPE_OUT_OF_PLACE = 1u << 0,
  ROPE_PACKED_QKV = 1u << 1,        /* q and k are slices of one [tokens, (q_heads + 2 k_heads) head_dim] storage */
  ROPE_STRIDED = 1u << 2,           /* token rows ROW_GAP apart; out-of-place outputs also have head gaps */
  ROPE_TABLE = 1u << 3,             /* cos_sin table of pos_hi rows */
  ROPE_TABLE_OUT_OF_RANGE = 1u << 4, /* positions pos_hi, pos_hi + 1000 and -1 too: NaN in their rotated part */
  ROPE_POSITIONS_STRIDED = 1u << 5, /* positions is a stride-2 view */
};

typedef struct rope_case {
  int64_t tokens;
  int32_t q_heads, k_heads, head_dim; /* k_heads 0: Q only */
  int32_t rotary_dim;                 /* as passed in the descriptor: 0 means head_dim */
  kf_rope_style style;
  float theta, position_scale;
  int32_t pos_lo, pos_hi;             /* positions drawn from [pos_lo, pos_hi), unsorted, with repeats */
  unsigned flags;
  kf_dtype q, k, q_out, k_out;        /* out dtypes only matter out of place */
} rope_case;

/* Token counts 1 (decode), 7, 33, 1025; GQA 32/8; head_dim 64, 80 (odd multiple of 16), 128, 256;
 * partial rotary; theta 1e4 and 5e5; position_scale 0.25; positions near 100000. The f32 angle limits
 * the accuracy to ~position * u_f32 (see the tolerance table), so two structures keep positions small
 * (< 64, < 256): there the in-kernel cos/sin path is checked to ~1e-5 in f32. */
static const rope_case rope_structures[] = {
    {1, 32, 8, 128, 0, KF_ROPE_NEOX, 10000.0f, 1.0f, 0, 8192, 0},
    {7, 32, 8, 64, 0, KF_ROPE_GPTJ, 10000.0f, 1.0f, 0, 64, ROPE_STRIDED},
    {33, 32, 8, 128, 64, KF_ROPE_NEOX, 10000.0f, 1.0f, 0, 8192, ROPE_OUT_OF_PLACE},
    {33, 32, 8, 128, 64, KF_ROPE_GPTJ, 10000.0f, 1.0f, 0, 8192, ROPE_OUT_OF_PLACE | ROPE_STRIDED},
    {33, 8, 0, 256, 0, KF_ROPE_GPTJ, 500000.0f, 1.0f, 0, 8192, ROPE_OUT_OF_PLACE},
    {7, 8, 0, 128, 128, KF_ROPE_NEOX, 10000.0f, 1.0f, 0, 256, 0},
    {7, 4, 2, 80, 32, KF_ROPE_NEOX, 10000.0f, 0.25f, 0, 8192, ROPE_PACKED_QKV | ROPE_POSITIONS_STRIDED},
    {33, 32, 8, 128, 0, KF_ROPE_GPTJ, 500000.0f, 1.0f, 0, 8192, ROPE_PACKED_QKV | ROPE_STRIDED},
    {33, 32, 8, 80, 32, KF_ROPE_GPTJ, 10000.0f, 1.0f, 0, 8192, ROPE_PACKED_QKV | ROPE_OUT_OF_PLACE},
    {1025, 8, 2, 128, 0, KF_ROPE_NEOX, 500000.0f, 1.0f, 0, 8192, ROPE_PACKED_QKV},
    {33, 8, 2, 128, 0, KF_ROPE_NEOX, 10000.0f, 1.0f, 0, 4096, ROPE_TABLE},
    {7, 8, 2, 64, 32, KF_ROPE_GPTJ, 10000.0f, 1.0f, 0, 512,
     ROPE_TABLE | ROPE_TABLE_OUT_OF_RANGE | ROPE_OUT_OF_PLACE},
    {7, 4, 2, 80, 32, KF_ROPE_NEOX, 10000.0f, 1.0f, 0, 512, ROPE_TABLE | ROPE_TABLE_OUT_OF_RANGE | ROPE_PACKED_QKV},
    {4, 32, 8, 128, 0, KF_ROPE_NEOX, 500000.0f, 1.0f, 98304, 102400, 0},
    {1, 32, 8, 128, 0, KF_ROPE_GPTJ, 10000.0f, 0.25f, 98304, 102400, ROPE_OUT_OF_PLACE},
};
#define ROPE_STRUCTURE_COUNT (sizeof rope_structures / sizeof rope_structures[0])

/* Mixed dtypes of out-of-place calls on separate Q and K: q, k, q_out, k_out. */
static const kf_dtype rope_mixed[][4] = {
    {KF_BF16, KF_BF16, KF_F32, KF_F32},
    {KF_F32, KF_F32, KF_BF16, KF_BF16},
    {KF_F16, KF_BF16, KF_F32, KF_F16},
};

typedef struct rope_inputs {
  host_input q, k; /* packed [tokens, heads, head_dim] */
  int32_t *positions;
  double *cos_sin; /* [cos_sin_rows, rotary_dim] as f32 holds it, or NULL */
  float *cos_sin_f32;
  int64_t cos_sin_rows;
} rope_inputs;

static int32_t rope_rotary(const rope_case *rc) { return rc->rotary_dim ? rc->rotary_dim : rc->head_dim; }

/* |a| + |b| for both elements of a rotated pair, |x| for the passed-through ones. */
static double *rope_magnitude(const double *x, int64_t vectors, const rope_case *rc) {
  int64_t hd = rc->head_dim, rot = rope_rotary(rc), half = rot / 2;
  double *m = xmalloc((size_t)(vectors * hd) * sizeof(double));
  for (int64_t v = 0; v < vectors; ++v) {
    const double *xv = x + v * hd;
    double *mv = m + v * hd;
    for (int64_t i = 0; i < half; ++i) {
      int64_t ia = rc->style == KF_ROPE_GPTJ ? 2 * i : i, ib = rc->style == KF_ROPE_GPTJ ? 2 * i + 1 : i + half;
      mv[ia] = mv[ib] = fabs(xv[ia]) + fabs(xv[ib]);
    }
    for (int64_t d = rot; d < hd; ++d) mv[d] = fabs(xv[d]);
  }
  return m;
}

static void rope_make(const void *cv, kf_test_rng *rng, void **inputs_out, case_spec *spec) {
  const rope_case *rc = cv;
  rope_inputs *in = xmalloc(sizeof *in);
  memset(in, 0, sizeof *in);
  const int64_t T = rc->tokens, hd = rc->head_dim, rot = rope_rotary(rc);
  const bool has_k = rc->k_heads > 0, oop = (rc->flags & ROPE_OUT_OF_PLACE) != 0;
  const int64_t q_count = T * rc->q_heads * hd, k_count = T * rc->k_heads * hd;

  double *values = xmalloc((size_t)(q_count > k_count ? q_count : k_count) * sizeof(double));
  kf_test_rng_fill(rng, values, (size_t)q_count, 1.0);
  host_input_make(&in->q, rc->q, values, (size_t)q_count);
  if (has_k) {
    kf_test_rng_fill(rng, values, (size_t)k_count, 1.0);
    host_input_make(&in->k, rc->k, values, (size_t)k_count);
  }
  free(values);

  /* Positions: random, unsorted, with a repeat and (from 0) a 0. */
  in->positions = xmalloc((size_t)T * sizeof(int32_t));
  for (int64_t t = 0; t < T; ++t)
    in->positions[t] = rc->pos_lo + (int32_t)(kf_test_rng_uniform(rng) * (double)(rc->pos_hi - rc->pos_lo));
  if (T > 1) in->positions[T - 1] = in->positions[0];
  if (T > 2 && rc->pos_lo == 0) in->positions[1] = 0;
  if (rc->flags & ROPE_TABLE_OUT_OF_RANGE) {
    in->positions[T > 2 ? 2 : 0] = rc->pos_hi; /* the first row past the table */
    if (T > 3) in->positions[3] = rc->pos_hi + 1000;
    if (T > 4) in->positions[4] = -1;
  }

  double condition = 0.0;
  if (rc->flags & ROPE_TABLE) {
    /* cos and sin of the exact angles, rounded to f32; the reference then uses those f32 values. */
    in->cos_sin_rows = rc->pos_hi;
    size_t n = (size_t)(in->cos_sin_rows * rot);
    in->cos_sin = xmalloc(n * sizeof(double));
    in->cos_sin_f32 = xmalloc(n * sizeof(float));
    for (int64_t p = 0; p < in->cos_sin_rows; ++p)
      for (int64_t i = 0; i < rot / 2; ++i) {
        double angle = (double)p * (double)rc->position_scale * pow((double)rc->theta, -2.0 * (double)i / (double)rot);
        in->cos_sin_f32[p * rot + i] = (float)cos(angle);
        in->cos_sin_f32[p * rot + rot / 2 + i] = (float)sin(angle);
      }
    for (size_t i = 0; i < n; ++i) in->cos_sin[i] = in->cos_sin_f32[i];
  } else {
    for (int64_t t = 0; t < T; ++t)
      condition = fmax(condition, fabs((double)in->positions[t] * (double)rc->position_scale));
  }

  spec->op = "rope";
  dtype_label(spec->dtype, sizeof spec->dtype, rc->q, oop ? rc->q_out : rc->q);
  snprintf(spec->shape, sizeof spec->shape, "[%lld,%d,%d]", (long long)T, rc->q_heads, rc->head_dim);
  int used = snprintf(spec->variant, sizeof spec->variant, "%s,k_heads=%d,rotary_dim=%d%s,theta=%g",
                      rc->style == KF_ROPE_GPTJ ? "gptj" : "neox", rc->k_heads, (int)rot,
                      rc->rotary_dim == 0 ? "(0)" : "", (double)rc->theta);
  if (rc->position_scale != 1.0f)
    used += snprintf(spec->variant + used, sizeof spec->variant - (size_t)used, ",position_scale=%g",
                     (double)rc->position_scale);
  used += snprintf(spec->variant + used, sizeof spec->variant - (size_t)used, ",positions=[%d,%d)%s%s%s%s%s%s",
                   rc->pos_lo, rc->pos_hi, (rc->flags & ROPE_TABLE) ? ",cos_sin" : "",
                   (rc->flags & ROPE_TABLE_OUT_OF_RANGE) ? ",out_of_range" : "",
                   (rc->flags & ROPE_PACKED_QKV) ? ",packed_qkv" : "", oop ? ",out_of_place" : ",in_place",
                   (rc->flags & ROPE_STRIDED) ? ",strided" : "",
                   (rc->flags & ROPE_POSITIONS_STRIDED) ? ",positions_strided" : "");
  if (has_k && (rc->k != rc->q || (oop && rc->k_out != rc->q_out)))
    snprintf(spec->variant + used, sizeof spec->variant - (size_t)used, ",k:%s%s%s", kf_dtype_name(rc->k),
             oop ? ",k_out:" : "", oop ? kf_dtype_name(rc->k_out) : "");

  spec->output_count = has_k ? 2 : 1;
  for (int o = 0; o < spec->output_count; ++o) {
    output_spec *os = &spec->out[o];
    const host_input *x = o == 0 ? &in->q : &in->k;
    int64_t heads = o == 0 ? rc->q_heads : rc->k_heads;
    os->name = o == 0 ? "q" : "k";
    os->dtype = o == 0 ? (oop ? rc->q_out : rc->q) : (oop ? rc->k_out : rc->k);
    os->count = x->count;
    os->group_len = (size_t)hd;
    os->ref = xmalloc(x->count * sizeof(double));
    kf_ref_rope(x->values, T, heads, hd, in->positions, rc->style, rot, (double)rc->theta,
                (double)rc->position_scale, in->cos_sin, in->cos_sin_rows, os->ref);
    os->magnitude = rope_magnitude(x->values, T * heads, rc);
    os->tol = kf_test_tolerance_conditioned(KF_TEST_OP_ROPE, os->dtype, hd, condition);
    if (rc->flags & ROPE_TABLE_OUT_OF_RANGE) {
      os->expect_nan = xmalloc(x->count);
      for (int64_t t = 0; t < T; ++t) {
        bool outside = in->positions[t] < 0 || in->positions[t] >= in->cos_sin_rows;
        for (int64_t h = 0; h < heads; ++h)
          for (int64_t d = 0; d < hd; ++d) os->expect_nan[(t * heads + h) * hd + d] = outside && d < rot;
      }
    }
  }
  case_spec_settle_nans(spec);
  *inputs_out = in;
}

static void rope_free(void *iv) {
  rope_inputs *in = iv;
  host_input_free(&in->q);
  if (in->k.values) host_input_free(&in->k);
  free(in->positions);
  free(in->cos_sin);
  free(in->cos_sin_f32);
  free(in);
}

static void rope_run(test_device *dev, const void *cv, const void *iv, const case_spec *spec, device_result *result) {
  const rope_case *rc = cv;
  const rope_inputs *in = iv;
  char why[512] = "";
  bool ok = true;
  const bool has_k = rc->k_heads > 0, oop = (rc->flags & ROPE_OUT_OF_PLACE) != 0;
  const bool packed = (rc->flags & ROPE_PACKED_QKV) != 0;
  const int64_t T = rc->tokens, hd = rc->head_dim, qh = rc->q_heads, kh = rc->k_heads;
  const int64_t gap = (rc->flags & ROPE_STRIDED) ? ROW_GAP : 0;

  /* Layouts. Packed: [tokens, q | k | v] rows; V stays poison and must stay so. Out of place: outputs
   * with a gap of 3 after every head as well (other strides than the inputs'). */
  geometry qg = {3, {T, qh, hd}, {qh * hd + gap, hd, 1}, VIEW_FRONT(gap)};
  geometry kg = {3, {T, kh, hd}, {kh * hd + gap, hd, 1}, VIEW_FRONT(gap)};
  geometry qkv = {2, {T, (qh + 2 * kh) * hd}, {(qh + 2 * kh) * hd + gap, 1}, VIEW_FRONT(gap)};
  if (packed) {
    qg.strides[0] = kg.strides[0] = qkv.strides[0];
    kg.offset = qkv.offset + qh * hd;
  }
  const int64_t out_head_gap = (rc->flags & ROPE_STRIDED) ? 3 : 0;
  geometry qog = {3, {T, qh, hd}, {qh * (hd + out_head_gap) + gap, hd + out_head_gap, 1}, VIEW_FRONT(gap)};
  geometry kog = {3, {T, kh, hd}, {kh * (hd + out_head_gap) + gap, hd + out_head_gap, 1}, VIEW_FRONT(gap)};
  const int64_t pos_stride = (rc->flags & ROPE_POSITIONS_STRIDED) ? 2 : 1;
  geometry pg = {1, {T}, {pos_stride}, GUARD_FRONT};
  geometry tg = {2, {in->cos_sin_rows, rope_rotary(rc)}, {rope_rotary(rc), 1}, GUARD_FRONT};

  region rq = {0}, rk = {0}, rqo = {0}, rko = {0}, rp = {0}, rt = {0};
  kf_tensor *q = NULL, *k = NULL, *qo = NULL, *ko = NULL, *pos = NULL, *table = NULL;
  geometry q_views[3] = {qg, kg, qkv};
  CASE_TRY(region_create(dev->ctx, rc->q, q_views, packed ? 3 : 1, &rq), "kf_tensor_create(q)");
  region_fill(&rq, &qg, in->q.bytes);
  if (packed && has_k) region_fill(&rq, &kg, in->k.bytes);
  if (has_k && !packed) {
    CASE_TRY(region_create(dev->ctx, rc->k, &kg, 1, &rk), "kf_tensor_create(k)");
    region_fill(&rk, &kg, in->k.bytes);
  }
  if (oop) {
    CASE_TRY(region_create(dev->ctx, rc->q_out, &qog, 1, &rqo), "kf_tensor_create(q_out)");
    if (has_k) CASE_TRY(region_create(dev->ctx, rc->k_out, &kog, 1, &rko), "kf_tensor_create(k_out)");
    if (rc->flags & ROPE_TABLE_OUT_OF_RANGE) {
      region_poison_finite(&rqo);
      region_poison_finite(&rko);
    }
  }
  CASE_TRY(region_create(dev->ctx, KF_I32, &pg, 1, &rp), "kf_tensor_create(positions)");
  region_fill(&rp, &pg, in->positions);
  if (rc->flags & ROPE_TABLE) {
    CASE_TRY(region_create(dev->ctx, KF_F32, &tg, 1, &rt), "kf_tensor_create(cos_sin)");
    region_fill(&rt, &tg, in->cos_sin_f32);
  }
  region *regions[] = {&rq, &rk, &rqo, &rko, &rp, &rt};
  for (size_t i = 0; i < sizeof regions / sizeof regions[0]; ++i)
    if (regions[i]->storage) CASE_TRY(region_upload(regions[i]), "kf_tensor_write");
  CASE_TRY(region_view(&rq, &qg, &q), "kf_tensor_view(q)");
  if (has_k) CASE_TRY(region_view(packed ? &rq : &rk, &kg, &k), "kf_tensor_view(k)");
  if (oop) CASE_TRY(region_view(&rqo, &qog, &qo), "kf_tensor_view(q_out)");
  if (oop && has_k) CASE_TRY(region_view(&rko, &kog, &ko), "kf_tensor_view(k_out)");
  CASE_TRY(region_view(&rp, &pg, &pos), "kf_tensor_view(positions)");
  if (rc->flags & ROPE_TABLE) CASE_TRY(region_view(&rt, &tg, &table), "kf_tensor_view(cos_sin)");

  kf_rope_desc desc = KF_ROPE_DESC_INIT;
  desc.style = rc->style;
  desc.rotary_dim = rc->rotary_dim;
  desc.theta = rc->theta;
  desc.position_scale = rc->position_scale;
  desc.cos_sin = table;
  desc.q_out = qo;
  desc.k_out = ko;
  CASE_TRY(kf_rope(dev->ctx, q, k, pos, &desc), "kf_rope");
  CASE_TRY(kf_synchronize(dev->ctx), "kf_synchronize");

  void *bytes[2] = {xmalloc(spec->out[0].count * kf_dtype_size(spec->out[0].dtype)),
                    has_k ? xmalloc(spec->out[1].count * kf_dtype_size(spec->out[1].dtype)) : NULL};
  static const char *const names[] = {"q", "k"};
  if (ok && oop) {
    static const char *const out_names[] = {"q_out", "k_out"};
    ok = region_check(&rq, "q", NULL, NULL, NULL, 0, why, sizeof why);
    if (ok && has_k && !packed) ok = region_check(&rk, "k", NULL, NULL, NULL, 0, why, sizeof why);
    if (ok) ok = region_check(&rqo, "q_out", &qog, &bytes[0], out_names, 1, why, sizeof why);
    if (ok && has_k) ok = region_check(&rko, "k_out", &kog, &bytes[1], out_names + 1, 1, why, sizeof why);
  } else if (ok) {
    geometry outs[2] = {qg, kg};
    ok = region_check(&rq, packed ? "qkv" : "q", outs, bytes, names, packed && has_k ? 2 : 1, why, sizeof why);
    if (ok && has_k && !packed) ok = region_check(&rk, "k", &kg, &bytes[1], names + 1, 1, why, sizeof why);
  }
  if (ok) ok = region_check(&rp, "positions", NULL, NULL, NULL, 0, why, sizeof why);
  if (ok && (rc->flags & ROPE_TABLE)) ok = region_check(&rt, "cos_sin", NULL, NULL, NULL, 0, why, sizeof why);
  if (ok)
    for (int o = 0; o < spec->output_count; ++o) result_take(result, o, bytes[o], &spec->out[o]);
  free(bytes[0]);
  free(bytes[1]);
  finish_case(dev, spec, result, ok, why, sizeof why);

  kf_tensor *views[] = {q, k, qo, ko, pos, table};
  for (size_t i = 0; i < sizeof views / sizeof views[0]; ++i) kf_tensor_destroy(views[i]);
  for (size_t i = 0; i < sizeof regions / sizeof regions[0]; ++i) region_destroy(regions[i]);
}

static void run_rope_suite(test_device *devices, int device_count, bool quick, kf_test_rng *rng) {
  size_t capacity = ROPE_STRUCTURE_COUNT * 3 + ROPE_STRUCTURE_COUNT * (sizeof rope_mixed / sizeof rope_mixed[0]);
  rope_case *cases = xmalloc(capacity * sizeof *cases);
  size_t n = 0;
  static const kf_dtype uniform[] = {KF_F32, KF_F16, KF_BF16};
  for (size_t s = 0; s < ROPE_STRUCTURE_COUNT; ++s)
    for (size_t d = 0; d < 3; ++d) {
      if (quick && d != s % 3) continue; /* quick: each structure in one dtype */
      rope_case c = rope_structures[s];
      c.q = c.k = c.q_out = c.k_out = uniform[d];
      cases[n++] = c;
    }
  /* Mixed dtypes on the out-of-place structures with separate Q and K (packed Q/K share a dtype). */
  for (size_t s = 0; s < ROPE_STRUCTURE_COUNT; ++s) {
    const rope_case *base = &rope_structures[s];
    if (!(base->flags & ROPE_OUT_OF_PLACE) || (base->flags & ROPE_PACKED_QKV)) continue;
    for (size_t m = 0; m < sizeof rope_mixed / sizeof rope_mixed[0]; ++m) {
      if (quick && m != s % 3) continue;
      rope_case c = *base;
      c.q = rope_mixed[m][0];
      c.k = rope_mixed[m][1];
      c.q_out = rope_mixed[m][2];
      c.k_out = rope_mixed[m][3];
      cases[n++] = c;
    }
  }
  run_generic_suite("rope", cases, sizeof *cases, n, rope_make, rope_run, rope_free, devices, device_count, rng);
  free(cases);
}
/* ================================================================================================
 * SwiGLU / GeGLU (kf_glu).
 */
enum {
  GLU_FUSED = 1u << 0,    /* up == NULL, gate [rows, 2 inner] holds gate | up */
  GLU_STRIDED = 1u << 1,  /* every operand's rows ROW_GAP apart */
  GLU_SATURATE = 1u << 2, /* half the gates at ±[20, 30]: exp / tanh saturate, must not give NaN or inf */
};

typedef struct glu_variant {
  const char *name;
  unsigned flags;
} glu_variant;

static const glu_variant glu_variants[] = {
    {"two_tensors", 0},
    {"fused", GLU_FUSED},
    {"strided", GLU_STRIDED},
    {"fused_strided", GLU_FUSED | GLU_STRIDED},
    {"saturate", GLU_SATURATE},
    {"fused_strided_saturate", GLU_FUSED | GLU_STRIDED | GLU_SATURATE},
};
#define GLU_VARIANT_COUNT (sizeof glu_variants / sizeof glu_variants[0])

typedef struct glu_case {
  int64_t rows, inner;
  kf_glu_activation activation;
  const glu_variant *variant;
  kf_dtype gate, up, out; /* fused: up is gate's dtype */
} glu_case;

static const norm_shape glu_shapes_full[] = {
    {1, 1}, {64, 1}, {3, 7}, {64, 33}, {3, 1025}, {1, 4097}, {64, 4097}, {1, 14336}, {3, 14336},
};
static const norm_shape glu_shapes_quick[] = {{1, 1}, {3, 7}, {64, 33}, {3, 1025}, {1, 4097}, {3, 14336}};

/* gate, up, out */
static const kf_dtype glu_mixed[][3] = {
    {KF_BF16, KF_BF16, KF_F32},
    {KF_F32, KF_F32, KF_BF16},
    {KF_F16, KF_BF16, KF_F32},
    {KF_BF16, KF_F32, KF_F16},
};

typedef struct glu_inputs {
  host_input gate, up; /* fused: gate holds [rows, 2 inner], up unused */
} glu_inputs;

static const char *glu_op_name(kf_glu_activation a) { return a == KF_GLU_GELU_TANH ? "geglu" : "swiglu"; }

static void glu_make(const void *cv, kf_test_rng *rng, void **inputs_out, case_spec *spec) {
  const glu_case *gc = cv;
  glu_inputs *in = xmalloc(sizeof *in);
  memset(in, 0, sizeof *in);
  const int64_t rows = gc->rows, inner = gc->inner;
  const bool fused = (gc->variant->flags & GLU_FUSED) != 0;
  const size_t count = (size_t)(rows * inner);
  double *g = xmalloc(count * sizeof(double)), *u = xmalloc(count * sizeof(double));
  kf_test_rng_fill(rng, g, count, 2.0);
  kf_test_rng_fill(rng, u, count, 1.0);
  if (gc->variant->flags & GLU_SATURATE)
    for (size_t i = 0; i < count; i += 2) {
      double magnitude = 20.0 + 10.0 * kf_test_rng_uniform(rng);
      g[i] = kf_test_rng_uniform(rng) < 0.5 ? -magnitude : magnitude;
    }
  if (fused) {
    double *both = xmalloc(2 * count * sizeof(double));
    for (int64_t r = 0; r < rows; ++r) {
      memcpy(both + r * 2 * inner, g + r * inner, (size_t)inner * sizeof(double));
      memcpy(both + r * 2 * inner + inner, u + r * inner, (size_t)inner * sizeof(double));
    }
    host_input_make(&in->gate, gc->gate, both, 2 * count);
    for (int64_t r = 0; r < rows; ++r) { /* the values as the dtype holds them */
      memcpy(g + r * inner, in->gate.values + r * 2 * inner, (size_t)inner * sizeof(double));
      memcpy(u + r * inner, in->gate.values + r * 2 * inner + inner, (size_t)inner * sizeof(double));
    }
    free(both);
  } else {
    host_input_make(&in->gate, gc->gate, g, count);
    host_input_make(&in->up, gc->up, u, count);
    memcpy(g, in->gate.values, count * sizeof(double));
    memcpy(u, in->up.values, count * sizeof(double));
  }

  spec->op = glu_op_name(gc->activation);
  dtype_label(spec->dtype, sizeof spec->dtype, gc->gate, gc->out);
  snprintf(spec->shape, sizeof spec->shape, "[%lld,%lld]", (long long)rows, (long long)inner);
  if (!fused && gc->up != gc->gate)
    snprintf(spec->variant, sizeof spec->variant, "%s,up:%s", gc->variant->name, kf_dtype_name(gc->up));
  else
    snprintf(spec->variant, sizeof spec->variant, "%s", gc->variant->name);
  spec->output_count = 1;
  output_spec *os = &spec->out[0];
  os->name = "out";
  os->dtype = gc->out;
  os->count = count;
  os->group_len = (size_t)inner;
  os->ref = xmalloc(count * sizeof(double));
  kf_ref_glu(g, u, count, gc->activation, os->ref);
  os->magnitude = xmalloc(count * sizeof(double));
  double max_gate = 0.0;
  for (size_t i = 0; i < count; ++i) {
    os->magnitude[i] = fmax(fabs(g[i] * u[i]), smallest_normal(gc->out));
    max_gate = fmax(max_gate, fabs(g[i]));
  }
  os->tol = kf_test_tolerance_conditioned(KF_TEST_OP_GLU, gc->out, inner, max_gate);
  free(g);
  free(u);
  *inputs_out = in;
}

static void glu_free(void *iv) {
  glu_inputs *in = iv;
  host_input_free(&in->gate);
  if (in->up.values) host_input_free(&in->up);
  free(in);
}

static void glu_run(test_device *dev, const void *cv, const void *iv, const case_spec *spec, device_result *result) {
  const glu_case *gc = cv;
  const glu_inputs *in = iv;
  char why[512] = "";
  bool ok = true;
  const bool fused = (gc->variant->flags & GLU_FUSED) != 0;
  const int64_t gap = (gc->variant->flags & GLU_STRIDED) ? ROW_GAP : 0;
  const int64_t rows = gc->rows, inner = gc->inner;
  geometry gg = geometry_rows(2, (int64_t[]){rows, fused ? 2 * inner : inner}, gap);
  geometry ug = geometry_rows(2, (int64_t[]){rows, inner}, gap);
  geometry og = geometry_rows(2, (int64_t[]){rows, inner}, gap);
  region rg = {0}, ru = {0}, ro = {0};
  kf_tensor *gate = NULL, *up = NULL, *out = NULL;
  CASE_TRY(region_create(dev->ctx, gc->gate, &gg, 1, &rg), "kf_tensor_create(gate)");
  region_fill(&rg, &gg, in->gate.bytes);
  if (!fused) {
    CASE_TRY(region_create(dev->ctx, gc->up, &ug, 1, &ru), "kf_tensor_create(up)");
    region_fill(&ru, &ug, in->up.bytes);
  }
  CASE_TRY(region_create(dev->ctx, gc->out, &og, 1, &ro), "kf_tensor_create(out)");
  region *regions[] = {&rg, &ru, &ro};
  for (size_t i = 0; i < 3; ++i)
    if (regions[i]->storage) CASE_TRY(region_upload(regions[i]), "kf_tensor_write");
  CASE_TRY(region_view(&rg, &gg, &gate), "kf_tensor_view(gate)");
  if (!fused) CASE_TRY(region_view(&ru, &ug, &up), "kf_tensor_view(up)");
  CASE_TRY(region_view(&ro, &og, &out), "kf_tensor_view(out)");
  kf_glu_desc desc = KF_GLU_DESC_INIT;
  desc.activation = gc->activation;
  CASE_TRY(kf_glu(dev->ctx, gate, up, out, &desc), "kf_glu");
  CASE_TRY(kf_synchronize(dev->ctx), "kf_synchronize");

  void *bytes = xmalloc(spec->out[0].count * kf_dtype_size(gc->out));
  static const char *const names[] = {"out"};
  if (ok) ok = region_check(&rg, "gate", NULL, NULL, NULL, 0, why, sizeof why);
  if (ok && !fused) ok = region_check(&ru, "up", NULL, NULL, NULL, 0, why, sizeof why);
  if (ok) ok = region_check(&ro, "out", &og, &bytes, names, 1, why, sizeof why);
  if (ok) result_take(result, 0, bytes, &spec->out[0]);
  free(bytes);
  finish_case(dev, spec, result, ok, why, sizeof why);
  kf_tensor_destroy(gate);
  kf_tensor_destroy(up);
  kf_tensor_destroy(out);
  for (size_t i = 0; i < 3; ++i) region_destroy(regions[i]);
}

static void run_glu_suite(kf_glu_activation activation, test_device *devices, int device_count, bool quick,
                          kf_test_rng *rng) {
  const norm_shape *shapes = quick ? glu_shapes_quick : glu_shapes_full;
  size_t shape_count = quick ? sizeof glu_shapes_quick / sizeof glu_shapes_quick[0]
                             : sizeof glu_shapes_full / sizeof glu_shapes_full[0];
  size_t mixed_count = sizeof glu_mixed / sizeof glu_mixed[0];
  glu_case *cases = xmalloc((shape_count * GLU_VARIANT_COUNT * 3 + shape_count * mixed_count * 2) * sizeof *cases);
  size_t n = 0;
  static const kf_dtype uniform[] = {KF_F32, KF_F16, KF_BF16};
  for (size_t d = 0; d < 3; ++d)
    for (size_t s = 0; s < shape_count; ++s)
      for (size_t v = 0; v < GLU_VARIANT_COUNT; ++v) {
        if (quick && (v + d) % 3 != s % 3) continue; /* quick: a third of the combinations */
        kf_dtype t = uniform[d];
        cases[n++] = (glu_case){shapes[s].rows, shapes[s].row_len, activation, &glu_variants[v], t, t, t};
      }
  for (size_t m = 0; m < mixed_count; ++m)
    for (size_t s = m % 2; s < shape_count; s += quick ? 3 : 2) {
      cases[n++] = (glu_case){shapes[s].rows, shapes[s].row_len, activation, &glu_variants[2], glu_mixed[m][0],
                              glu_mixed[m][1], glu_mixed[m][2]};
      cases[n++] = (glu_case){shapes[s].rows, shapes[s].row_len, activation, &glu_variants[3], glu_mixed[m][0],
                              glu_mixed[m][0], glu_mixed[m][2]};
    }
  run_generic_suite(glu_op_name(activation), cases, sizeof *cases, n, glu_make, glu_run, glu_free, devices,
                    device_count, rng);
  free(cases);
}

/* ================================================================================================
 * Softmax.
 */
enum {
  SM_MASK_FULL = 1u << 0,       /* mask of x's shape */
  SM_MASK_ROW = 1u << 1,        /* mask [row_len] broadcast over the rows */
  SM_MASK_CAUSAL_BHQK = 1u << 2, /* x [2, 3, 7, row_len], mask [7, row_len] causal (-inf above the diagonal) */
  SM_NEG_INF = 1u << 3,         /* ~10% of the mask entries -inf (never a whole row) */
  SM_ALL_NEG_INF_ROW = 1u << 4, /* one row masked entirely: NaN expected there */
  SM_IN_PLACE = 1u << 5,        /* y is x */
  SM_HUGE = 1u << 6,            /* x uniform in ±1e4: exp overflows without the max subtracted */
  SM_STRIDED = 1u << 7,         /* x, y (and a full mask) rows ROW_GAP apart */
};

typedef struct softmax_variant {
  const char *name;
  unsigned flags;
  float scale;
} softmax_variant;

static const softmax_variant softmax_variants[] = {
    {"plain", 0, 1.0f},
    {"scale=0.125", 0, 0.125f},
    {"mask_full", SM_MASK_FULL | SM_NEG_INF, 0.125f},
    {"mask_row", SM_MASK_ROW | SM_NEG_INF, 1.0f},
    {"mask_causal_bhqk", SM_MASK_CAUSAL_BHQK, 0.125f},
    {"all_neg_inf_row", SM_MASK_FULL | SM_ALL_NEG_INF_ROW, 1.0f},
    {"in_place", SM_IN_PLACE, 0.125f},
    {"in_place_mask_row", SM_IN_PLACE | SM_MASK_ROW | SM_NEG_INF, 0.125f},
    {"huge", SM_HUGE, 0.125f},
    {"strided_mask_full", SM_STRIDED | SM_MASK_FULL | SM_NEG_INF, 0.125f},
};
#define SOFTMAX_VARIANT_COUNT (sizeof softmax_variants / sizeof softmax_variants[0])

/* 2048, 4096 and 8192 select CUDA's re-read kernels (no mask, f16/bf16) with 2, 4 and 8 warps a row;
 * 24576 and 32768 its 16-pack re-read kernel with 6 and 8 warps. */
static const norm_shape softmax_shapes_full[] = {{1, 1},    {64, 1},    {3, 7},    {64, 33},  {7, 1025},
                                                 {3, 4097}, {2, 65537}, {9, 2048}, {5, 4096}, {3, 8192},
                                                 {2, 24576}, {3, 32768}};
static const norm_shape softmax_shapes_quick[] = {{1, 1}, {3, 7}, {64, 33}, {7, 1025}, {2, 65537}};

/* x, y, mask */
static const kf_dtype softmax_mixed[][3] = {
    {KF_BF16, KF_F32, KF_F32},
    {KF_F32, KF_BF16, KF_F32},
    {KF_F16, KF_BF16, KF_BF16},
    {KF_BF16, KF_BF16, KF_F16},
};

typedef struct softmax_case {
  int64_t rows, row_len; /* causal-mask variants: 2 * 3 * 7 rows instead */
  const softmax_variant *variant;
  kf_dtype x, y, mask;
} softmax_case;

#define SM_CAUSAL_Q 7

typedef struct softmax_inputs {
  int64_t rows;
  host_input x, mask;
  int64_t mask_rows;
} softmax_inputs;

static void softmax_make(const void *cv, kf_test_rng *rng, void **inputs_out, case_spec *spec) {
  const softmax_case *sc = cv;
  const unsigned f = sc->variant->flags;
  softmax_inputs *in = xmalloc(sizeof *in);
  memset(in, 0, sizeof *in);
  const int64_t rows = (f & SM_MASK_CAUSAL_BHQK) ? 2 * 3 * SM_CAUSAL_Q : sc->rows, row_len = sc->row_len;
  const size_t count = (size_t)(rows * row_len);
  in->rows = rows;
  double *values = xmalloc(count * sizeof(double));
  if (f & SM_HUGE)
    for (size_t i = 0; i < count; ++i) values[i] = (2.0 * kf_test_rng_uniform(rng) - 1.0) * 1e4;
  else
    kf_test_rng_fill(rng, values, count, 3.0);
  host_input_make(&in->x, sc->x, values, count);
  free(values);

  if (f & (SM_MASK_FULL | SM_MASK_ROW | SM_MASK_CAUSAL_BHQK)) {
    in->mask_rows = (f & SM_MASK_FULL) ? rows : (f & SM_MASK_ROW) ? 1 : SM_CAUSAL_Q;
    size_t mask_count = (size_t)(in->mask_rows * row_len);
    double *mask = xmalloc(mask_count * sizeof(double));
    kf_test_rng_fill(rng, mask, mask_count, 1.0);
    for (int64_t r = 0; r < in->mask_rows; ++r)
      for (int64_t c = 0; c < row_len; ++c) {
        double *m = &mask[r * row_len + c];
        if ((f & SM_NEG_INF) && c != r % row_len && kf_test_rng_uniform(rng) < 0.1) *m = -INFINITY;
        /* causal: query i of q sees keys up to i + (kv - q); with kv < q the first rows see none (NaN) */
        if ((f & SM_MASK_CAUSAL_BHQK) && c > r + (row_len - SM_CAUSAL_Q)) *m = -INFINITY;
        if ((f & SM_ALL_NEG_INF_ROW) && r == in->mask_rows / 2) *m = -INFINITY;
      }
    host_input_make(&in->mask, sc->mask, mask, mask_count);
    free(mask);
  }

  spec->op = "softmax";
  dtype_label(spec->dtype, sizeof spec->dtype, sc->x, sc->y);
  if (f & SM_MASK_CAUSAL_BHQK)
    snprintf(spec->shape, sizeof spec->shape, "[2,3,%d,%lld]", SM_CAUSAL_Q, (long long)row_len);
  else
    snprintf(spec->shape, sizeof spec->shape, "[%lld,%lld]", (long long)rows, (long long)row_len);
  if (in->mask_rows && sc->mask != sc->x)
    snprintf(spec->variant, sizeof spec->variant, "%s,mask:%s", sc->variant->name, kf_dtype_name(sc->mask));
  else
    snprintf(spec->variant, sizeof spec->variant, "%s", sc->variant->name);

  spec->output_count = 1;
  output_spec *os = &spec->out[0];
  os->name = "y";
  os->dtype = sc->y;
  os->count = count;
  os->group_len = (size_t)row_len;
  os->ref = xmalloc(count * sizeof(double));
  kf_ref_softmax(in->x.values, rows, row_len, (double)sc->variant->scale, in->mask_rows ? in->mask.values : NULL,
                 in->mask_rows ? in->mask_rows : 1, os->ref);
  /* Condition: the largest finite logit; NaN expected in the rows without one. */
  double condition = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    bool any_finite = false;
    for (int64_t c = 0; c < row_len; ++c) {
      double z = in->x.values[r * row_len + c] * (double)sc->variant->scale +
                 (in->mask_rows ? in->mask.values[(r % in->mask_rows) * row_len + c] : 0.0);
      if (isfinite(z)) {
        any_finite = true;
        condition = fmax(condition, fabs(z));
      }
    }
    if (!any_finite) {
      if (!os->expect_nan) {
        os->expect_nan = xmalloc(count);
        memset(os->expect_nan, 0, count);
      }
      memset(os->expect_nan + r * row_len, 1, (size_t)row_len);
    }
  }
  os->tol = kf_test_tolerance_conditioned(KF_TEST_OP_SOFTMAX, sc->y, row_len, condition);
  case_spec_settle_nans(spec);
  *inputs_out = in;
}

static void softmax_free(void *iv) {
  softmax_inputs *in = iv;
  host_input_free(&in->x);
  if (in->mask.values) host_input_free(&in->mask);
  free(in);
}

static void softmax_run(test_device *dev, const void *cv, const void *iv, const case_spec *spec,
                        device_result *result) {
  const softmax_case *sc = cv;
  const softmax_inputs *in = iv;
  const unsigned f = sc->variant->flags;
  char why[512] = "";
  bool ok = true;
  const bool in_place = (f & SM_IN_PLACE) != 0;
  const int64_t gap = (f & SM_STRIDED) ? ROW_GAP : 0, row_len = sc->row_len;
  geometry xg = (f & SM_MASK_CAUSAL_BHQK) ? geometry_rows(4, (int64_t[]){2, 3, SM_CAUSAL_Q, row_len}, gap)
                                          : geometry_rows(2, (int64_t[]){in->rows, row_len}, gap);
  geometry yg = xg;
  geometry mg = (f & SM_MASK_FULL)  ? xg
                : (f & SM_MASK_ROW) ? geometry_rows(1, (int64_t[]){row_len}, 0)
                                    : geometry_rows(2, (int64_t[]){SM_CAUSAL_Q, row_len}, 0);
  region rx = {0}, ry = {0}, rm = {0};
  kf_tensor *x = NULL, *y = NULL, *mask = NULL;
  CASE_TRY(region_create(dev->ctx, sc->x, &xg, 1, &rx), "kf_tensor_create(x)");
  region_fill(&rx, &xg, in->x.bytes);
  if (!in_place) CASE_TRY(region_create(dev->ctx, sc->y, &yg, 1, &ry), "kf_tensor_create(y)");
  if (spec->out[0].expect_nan) region_poison_finite(&ry);
  if (in->mask_rows) {
    CASE_TRY(region_create(dev->ctx, sc->mask, &mg, 1, &rm), "kf_tensor_create(mask)");
    region_fill(&rm, &mg, in->mask.bytes);
  }
  region *regions[] = {&rx, &ry, &rm};
  for (size_t i = 0; i < 3; ++i)
    if (regions[i]->storage) CASE_TRY(region_upload(regions[i]), "kf_tensor_write");
  CASE_TRY(region_view(&rx, &xg, &x), "kf_tensor_view(x)");
  if (!in_place) CASE_TRY(region_view(&ry, &yg, &y), "kf_tensor_view(y)");
  if (in->mask_rows) CASE_TRY(region_view(&rm, &mg, &mask), "kf_tensor_view(mask)");
  kf_softmax_desc desc = KF_SOFTMAX_DESC_INIT;
  desc.scale = sc->variant->scale;
  desc.mask = mask;
  CASE_TRY(kf_softmax(dev->ctx, x, in_place ? x : y, &desc), "kf_softmax");
  CASE_TRY(kf_synchronize(dev->ctx), "kf_synchronize");

  void *bytes = xmalloc(spec->out[0].count * kf_dtype_size(spec->out[0].dtype));
  static const char *const names[] = {"y"};
  if (ok && in_place) ok = region_check(&rx, "x (= y)", &xg, &bytes, names, 1, why, sizeof why);
  if (ok && !in_place) ok = region_check(&rx, "x", NULL, NULL, NULL, 0, why, sizeof why);
  if (ok && !in_place) ok = region_check(&ry, "y", &yg, &bytes, names, 1, why, sizeof why);
  if (ok && in->mask_rows) ok = region_check(&rm, "mask", NULL, NULL, NULL, 0, why, sizeof why);
  if (ok) result_take(result, 0, bytes, &spec->out[0]);
  free(bytes);
  finish_case(dev, spec, result, ok, why, sizeof why);
  kf_tensor_destroy(x);
  kf_tensor_destroy(y);
  kf_tensor_destroy(mask);
  for (size_t i = 0; i < 3; ++i) region_destroy(regions[i]);
}

static void run_softmax_suite(test_device *devices, int device_count, bool quick, kf_test_rng *rng) {
  const norm_shape *shapes = quick ? softmax_shapes_quick : softmax_shapes_full;
  size_t shape_count = quick ? sizeof softmax_shapes_quick / sizeof softmax_shapes_quick[0]
                             : sizeof softmax_shapes_full / sizeof softmax_shapes_full[0];
  size_t mixed_count = sizeof softmax_mixed / sizeof softmax_mixed[0];
  softmax_case *cases =
      xmalloc((shape_count * SOFTMAX_VARIANT_COUNT * 3 + shape_count * mixed_count * 2) * sizeof *cases);
  size_t n = 0;
  static const kf_dtype uniform[] = {KF_F32, KF_F16, KF_BF16};
  for (size_t d = 0; d < 3; ++d)
    for (size_t s = 0; s < shape_count; ++s)
      for (size_t v = 0; v < SOFTMAX_VARIANT_COUNT; ++v) {
        if (quick && (v + d) % 3 != s % 3) continue;
        kf_dtype t = uniform[d];
        cases[n++] = (softmax_case){shapes[s].rows, shapes[s].row_len, &softmax_variants[v], t, t, t};
      }
  /* Mixed dtypes with a full and a broadcast mask (in place needs y's dtype to be x's). */
  for (size_t m = 0; m < mixed_count; ++m)
    for (size_t s = m % 2; s < shape_count; s += quick ? 3 : 2) {
      cases[n++] = (softmax_case){shapes[s].rows, shapes[s].row_len, &softmax_variants[2], softmax_mixed[m][0],
                                  softmax_mixed[m][1], softmax_mixed[m][2]};
      cases[n++] = (softmax_case){shapes[s].rows, shapes[s].row_len, &softmax_variants[4], softmax_mixed[m][0],
                                  softmax_mixed[m][1], softmax_mixed[m][2]};
    }
  run_generic_suite("softmax", cases, sizeof *cases, n, softmax_make, softmax_run, softmax_free, devices,
                    device_count, rng);
  free(cases);
}

/* ================================================================================================
 * Backend selection and main.
 */
static bool name_in_list(const char *list, const char *name) {
  if (!list) return false;
  size_t len = strlen(name);
  for (const char *p = list; *p;) {
    while (*p == ',' || *p == ' ') ++p;
    const char *end = p + strcspn(p, ", ");
    if ((size_t)(end - p) == len && strncasecmp(p, name, len) == 0) return true;
    p = end;
  }
  return false;
}

/* KF_CONFORMANCE_OPS=rmsnorm,layernorm,... limits the run to those ops (default: all), so work on one
 * op can land before the others; an op a backend does not implement is a FAIL, never a silent skip. */
static const char *const all_ops[] = {"rmsnorm", "layernorm", "rope", "swiglu", "geglu", "softmax", "gemm", "attention"};

static bool op_selected(const char *op) {
  const char *list = getenv("KF_CONFORMANCE_OPS");
  return list == NULL || *list == '\0' || name_in_list(list, op);
}

static void usage(const char *argv0) {
  fprintf(stderr, "usage: %s [--backend=cpu|opencl|vulkan|cuda[,...]]... [--quick]\n", argv0);
}

int main(int argc, char **argv) {
  kf_test_use_writable_caches();
  bool selected[KF_BACKEND_COUNT] = {false};
  bool any_selected = false, quick = false;
  for (int i = 1; i < argc; ++i) {
    if (strncmp(argv[i], "--backend=", 10) == 0) {
      const char *p = argv[i] + 10;
      while (*p) {
        char name[32];
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof name) {
          usage(argv[0]);
          return 2;
        }
        memcpy(name, p, len);
        name[len] = '\0';
        kf_backend backend;
        if (kf_backend_from_name(name, &backend) != KF_OK) {
          fprintf(stderr, "conformance: unknown backend \"%s\"\n", name);
          usage(argv[0]);
          return 2;
        }
        selected[backend] = true;
        any_selected = true;
        p += len;
        if (*p == ',') ++p;
      }
    } else if (strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else {
      usage(argv[0]);
      return 2;
    }
  }
  if (!any_selected)
    for (int b = 0; b < KF_BACKEND_COUNT; ++b) selected[b] = true;

  kf_test_rng rng;
  kf_test_rng_init(&rng, kf_test_seed());
  const char *required = getenv("KF_REQUIRE_BACKENDS");
  /* KF_CONFORMANCE_DEVICE=text: only devices whose name contains it (a GPU host's OpenCL also lists
   * PoCL on its CPU, which the GPU run need not repeat). */
  const char *device_filter = getenv("KF_CONFORMANCE_DEVICE");

  const kf_device_info *infos = NULL;
  size_t info_count = 0;
  kf_status status = kf_devices(&infos, &info_count);
  if (status != KF_OK) {
    printf("FAIL kf_devices returned %s: %s\n", kf_status_name(status), kf_last_error());
    printf("conformance: 0 passed, 1 failed\n");
    return 1;
  }

  test_device *devices = xmalloc((info_count > 0 ? info_count : 1) * sizeof *devices);
  int device_count = 0;
  for (int b = 0; b < KF_BACKEND_COUNT; ++b) {
    if (!selected[b]) continue;
    const char *name = kf_backend_name((kf_backend)b);
    kf_backend_info binfo = {sizeof binfo};
    status = kf_backend_get_info((kf_backend)b, &binfo);
    bool is_required = name_in_list(required, name);
    if (status != KF_OK || !binfo.available) {
      const char *reason = status != KF_OK ? kf_last_error() : binfo.reason;
      if (is_required) {
        printf("FAIL backend=%s reason=\"%s\" (required by KF_REQUIRE_BACKENDS)\n", name, reason);
        tally(false);
      } else {
        printf("SKIP backend=%s reason=\"%s\"\n", name, reason);
      }
      continue;
    }
    for (size_t i = 0; i < info_count; ++i) {
      if (infos[i].backend != (kf_backend)b) continue;
      if (device_filter && *device_filter && !strstr(infos[i].name, device_filter)) {
        printf("SKIP backend=%s device=\"%s\" reason=\"not matched by KF_CONFORMANCE_DEVICE\"\n", name, infos[i].name);
        continue;
      }
      test_device *dev = &devices[device_count];
      memset(dev, 0, sizeof *dev);
      dev->info = &infos[i];
      snprintf(dev->label, sizeof dev->label, "backend=%s device=\"%s\"", name, infos[i].name);
      snprintf(dev->pair_label, sizeof dev->pair_label, "\"%s:%d %s\"", name, (int)infos[i].backend_index,
               infos[i].name);
      kf_context_options options = KF_CONTEXT_OPTIONS_INIT;
      options.device_index = infos[i].index;
      status = kf_context_create(&options, &dev->ctx);
      if (status != KF_OK) {
        printf("FAIL %s kf_context_create returned %s: %s\n", dev->label, kf_status_name(status), kf_last_error());
        tally(false);
        continue;
      }
      printf("DEVICE %s type=%s caps=\"%s\"\n", dev->label, kf_device_type_name(infos[i].type), infos[i].caps_text);
      device_count++;
    }
  }
  fflush(stdout);

  /* A misspelt op name must not shrink the run silently. */
  const char *ops_list = getenv("KF_CONFORMANCE_OPS");
  for (const char *p = ops_list ? ops_list : ""; *p;) {
    while (*p == ',' || *p == ' ') ++p;
    size_t len = strcspn(p, ", ");
    if (len == 0) break;
    bool known = false;
    for (size_t i = 0; i < sizeof all_ops / sizeof all_ops[0]; ++i)
      known |= strlen(all_ops[i]) == len && strncasecmp(all_ops[i], p, len) == 0;
    if (!known) {
      printf("FAIL KF_CONFORMANCE_OPS names an unknown op \"%.*s\" (ops: rmsnorm,layernorm,rope,swiglu,geglu,softmax,gemm,attention)\n",
             (int)len, p);
      tally(false);
    }
    p += len;
  }
  if (op_selected("rmsnorm")) run_norm_suite(&rmsnorm_op, devices, device_count, quick, &rng);
  if (op_selected("layernorm")) run_norm_suite(&layernorm_op, devices, device_count, quick, &rng);
  if (op_selected("rope")) run_rope_suite(devices, device_count, quick, &rng);
  if (op_selected("swiglu")) run_glu_suite(KF_GLU_SILU, devices, device_count, quick, &rng);
  if (op_selected("geglu")) run_glu_suite(KF_GLU_GELU_TANH, devices, device_count, quick, &rng);
  if (op_selected("softmax")) run_softmax_suite(devices, device_count, quick, &rng);
  if (op_selected("gemm")) run_gemm_suite(devices, device_count, quick, &rng);
  if (op_selected("attention")) run_attention_suite(devices, device_count, quick, &rng);

  for (int d = 0; d < device_count; ++d) {
    printf("DEVICE %s cases=%d failed=%d seconds=%.1f\n", devices[d].label, devices[d].cases, devices[d].failed,
           devices[d].seconds);
    kf_context_destroy(devices[d].ctx);
  }
  free(devices);
  printf("conformance: %d passed, %d failed\n", g_passed, g_failed);
  return g_failed > 0 ? 1 : 0;
}

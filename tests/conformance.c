/* conformance.c — every op on every selected device against the fp64 reference, and every pair of
 * devices against each other, through the public API only.
 *
 *   conformance [--backend=cpu|opencl|vulkan|cuda[,...]]... [--quick]
 *
 * Default: all backends. For each case the inputs are fresh random data (seed printed; replay with
 * KF_TEST_SEED), outputs are views into a larger storage poisoned with 0xFF bytes (NaN in every float
 * dtype), and after the op the whole storage is read back: everything outside the view must still be
 * poison (guards before and after the view, gaps between strided rows) and every element of the view
 * must have been written. Inputs must be unchanged. One line per case:
 *   PASS|FAIL op=rmsnorm backend=<b> device="<name>" dtype=<x>[-><y>] shape=[rows,row_len] variant=<v>
 *             max_err=<g> nmse=<g> ...
 * then one PAIR line per pair of devices, and `conformance: N passed, N failed`; the exit status is 1
 * when anything failed. A selected backend that is unavailable prints SKIP, or FAIL when it is named
 * in KF_REQUIRE_BACKENDS (comma list).
 *
 * Adding an op: write its case table and a run_<op>_suite() like run_rmsnorm_suite() below, using the
 * shared operand / reporting helpers, and call it from main().
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

/* ================================================================================================
 * Run-wide state: selected devices and the pass/fail tally.
 */
typedef struct test_device {
  const kf_device_info *info;
  kf_context *ctx;
  char label[320];     /* backend=<b> device="<name>" */
  char pair_label[320]; /* <b>:<backend_index> "<name>" */
  int cases;
  int failed;
  double seconds;
} test_device;

static int g_passed, g_failed;

static void tally(bool ok) {
  if (ok) g_passed++;
  else g_failed++;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *xmalloc(size_t bytes) {
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
/* Guards: an odd element offset (no kernel may assume aligned views) and a tail longer than any vector
 * width, so a kernel that rounds a row up to its tile writes into it. */
#define GUARD_FRONT 3
#define GUARD_BACK 67
/* Extra elements between strided rows: odd, for the same reason. */
#define ROW_GAP 5
#define POISON_BYTE 0xFF

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
  op->offset = GUARD_FRONT;
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

/* Host data of one input: values as the dtype holds them, and the packed bytes. */
typedef struct host_input {
  kf_dtype dtype;
  size_t count;
  double *values;
  void *bytes;
} host_input;

static void host_input_make(host_input *in, kf_dtype dtype, const double *values, size_t count) {
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

static void host_input_free(host_input *in) {
  free(in->values);
  free(in->bytes);
  in->values = in->bytes = NULL;
}

static double *bytes_to_doubles(const void *bytes, kf_dtype dtype, size_t count) {
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

static bool within(const kf_test_error *e, double tolerance) {
  return e->max_err <= tolerance && e->nmse <= tolerance * tolerance;
}

/* ================================================================================================
 * RMSNorm.
 */
enum {
  NORM_WEIGHT = 1u << 0,
  NORM_BIAS = 1u << 1,
  NORM_RESIDUAL = 1u << 2,
  NORM_INPLACE_RESIDUAL = 1u << 3, /* residual_out is the residual tensor */
  NORM_INPLACE_X = 1u << 4,        /* residual_out is the x tensor */
  NORM_STRIDED = 1u << 5,          /* x, y, residual, residual_out rows ROW_GAP apart */
  NORM_STRIDED_VECTORS = 1u << 6,  /* weight stride 3, bias stride 2 */
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
#define NORM_VARIANT_COUNT (sizeof norm_variants / sizeof norm_variants[0])

typedef struct norm_shape {
  int64_t rows, row_len;
} norm_shape;

/* Row lengths that are 1, odd, just past a power of two, and longer than any one workgroup handles
 * in one pass; rows from 1 to many short ones. */
static const norm_shape norm_shapes_full[] = {
    {1, 1}, {64, 1}, {3, 7}, {64, 33}, {1, 1025}, {7, 1025}, {64, 4096}, {3, 4097}, {2, 65537}, {3, 100000}, {1000, 33},
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
  double *y_magnitude; /* |h r weight| + |bias|: what y's rounding errors are relative to */
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
  kf_ref_rmsnorm(in->x.values, (f & NORM_RESIDUAL) ? in->residual.values : NULL,
                 (f & NORM_WEIGHT) ? in->weight.values : NULL, (f & NORM_BIAS) ? in->bias.values : NULL, rows,
                 row_len, (double)nc->variant->eps, in->h_ref, y_ref);
  if (f & NORM_RESIDUAL) free(y_ref);
  else in->y_ref = y_ref;

  /* Magnitudes: y_magnitude = |rmsnorm(h) * weight| + |bias|, from the reference h. */
  in->y_magnitude = xmalloc(count * sizeof(double));
  kf_ref_rmsnorm((f & NORM_RESIDUAL) ? in->h_ref : in->x.values, NULL, (f & NORM_WEIGHT) ? in->weight.values : NULL,
                 NULL, rows, row_len, (double)nc->variant->eps, NULL, in->y_magnitude);
  for (size_t i = 0; i < count; ++i)
    in->y_magnitude[i] = fabs(in->y_magnitude[i]) + ((f & NORM_BIAS) ? fabs(in->bias.values[i % (size_t)row_len]) : 0.0);
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
  NORM_TRY(kf_rmsnorm(dev->ctx, x.view, y.view, &desc), "kf_rmsnorm");
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
  double y_tol = kf_test_tolerance(KF_TEST_OP_RMSNORM, nc->dt.y, row_len);
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
      kf_ref_rmsnorm(out->h, NULL, (f & NORM_WEIGHT) ? in->weight.values : NULL,
                     (f & NORM_BIAS) ? in->bias.values : NULL, rows, row_len, (double)nc->variant->eps, NULL,
                     y_ref_device);
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
  printf("%s op=rmsnorm %s dtype=%s shape=[%lld,%lld] variant=%s max_err=%.3g nmse=%.3g tol=%.3g", ok ? "PASS" : "FAIL",
         dev->label, dtype_name, (long long)rows, (long long)row_len, variant_name, y_err.max_err, y_err.nmse, y_tol);
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

/* Pairwise agreement of two devices on one case: within the sum of both tolerances. */
typedef struct pair_stats {
  int cases, failed;
  double worst_ratio; /* max over cases of max_diff / tolerance */
  double worst_diff, worst_tol;
  char worst_case[256];
} pair_stats;

static void norm_compare_pair(const test_device *a, const test_device *b, const norm_outputs *oa,
                              const norm_outputs *ob, const norm_case *nc, const norm_inputs *in,
                              pair_stats *stats) {
  if (!oa->y || !ob->y) return; /* a device that failed the case has already been reported */
  const int64_t row_len = nc->shape.row_len;
  const size_t count = (size_t)(nc->shape.rows * row_len);
  double tol = 2.0 * kf_test_tolerance(KF_TEST_OP_RMSNORM, nc->dt.y, row_len);
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
    printf("FAIL PAIR op=rmsnorm a=%s b=%s dtype=%s shape=[%lld,%lld] variant=%s max_diff=%.3g nmse=%.3g tol=%.3g %s\n",
           a->pair_label, b->pair_label, dtype_name, (long long)nc->shape.rows, (long long)row_len, variant_name,
           e.max_err, e.nmse, tol, detail);
  }
  tally(ok);
}

static void run_rmsnorm_suite(test_device *devices, int device_count, bool quick, kf_test_rng *rng) {
  const norm_shape *shapes = quick ? norm_shapes_quick : norm_shapes_full;
  size_t shape_count = quick ? sizeof norm_shapes_quick / sizeof norm_shapes_quick[0]
                             : sizeof norm_shapes_full / sizeof norm_shapes_full[0];

  /* The case table: every shape x variant for all-f32 / all-f16 / all-bf16, then the mixed-dtype
   * combinations on a few shapes with the variants that involve every operand. */
  size_t capacity = shape_count * NORM_VARIANT_COUNT * 3 + shape_count * NORM_MIXED_COUNT * 2;
  norm_case *cases = xmalloc(capacity * sizeof *cases);
  size_t case_count = 0;
  static const kf_dtype uniform[] = {KF_F32, KF_F16, KF_BF16};
  for (size_t d = 0; d < 3; ++d)
    for (size_t s = 0; s < shape_count; ++s)
      for (size_t v = 0; v < NORM_VARIANT_COUNT; ++v) {
        if (quick && (v % 2) != (s % 2) && norm_variants[v].flags != 0) continue; /* quick: half the variants */
        kf_dtype t = uniform[d];
        cases[case_count++] = (norm_case){shapes[s], {t, t, t, t, t, t}, &norm_variants[v]};
      }
  const norm_variant *weight_bias = &norm_variants[2], *residual = &norm_variants[3];
  for (size_t m = 0; m < NORM_MIXED_COUNT; ++m)
    for (size_t s = 0; s < shape_count; s += quick ? 3 : 2) {
      cases[case_count++] = (norm_case){shapes[s], norm_mixed[m], weight_bias};
      cases[case_count++] = (norm_case){shapes[s], norm_mixed[m], residual};
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
      printf("PAIR op=rmsnorm a=%s b=%s cases=%d failed=%d max_diff=%.3g tol=%.3g (closest to its tolerance: %s)\n",
             devices[a].pair_label, devices[b].pair_label, pairs[p].cases, pairs[p].failed, pairs[p].worst_diff,
             pairs[p].worst_tol, pairs[p].worst_case);
  free(outputs);
  free(pairs);
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

  run_rmsnorm_suite(devices, device_count, quick, &rng);

  for (int d = 0; d < device_count; ++d) {
    printf("DEVICE %s cases=%d failed=%d seconds=%.1f\n", devices[d].label, devices[d].cases, devices[d].failed,
           devices[d].seconds);
    kf_context_destroy(devices[d].ctx);
  }
  free(devices);
  printf("conformance: %d passed, %d failed\n", g_passed, g_failed);
  return g_failed > 0 ? 1 : 0;
}

/* op_norm.c — kf_rmsnorm: argument validation, then one backend call per block of rows.
 * All checks happen before any device work, so a rejected call leaves every output untouched. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/internal.h"

static bool is_norm_dtype(kf_dtype d) { return d == KF_F32 || d == KF_F16 || d == KF_BF16; }

static kf_status check_float_operand(const kf_tensor *t, const char *name) {
  if (!is_norm_dtype(t->dtype)) {
    const char *dt = kf_dtype_name(t->dtype);
    return kf_fail(KF_ERROR_DTYPE_MISMATCH, "%s has dtype %s; expected f32, f16 or bf16", name, dt ? dt : "?");
  }
  return KF_OK;
}

/* Sufficient condition for a writable view to have no two elements at the same address: with the
 * dimensions ordered by stride, each stride exceeds the extent of all smaller ones. */
static bool elements_distinct(const kf_tensor *t) {
  int32_t order[KF_MAX_DIMS], n = 0;
  for (int32_t d = 0; d < t->ndim; ++d)
    if (t->shape[d] > 1) order[n++] = d;
  for (int32_t i = 1; i < n; ++i) /* insertion sort by stride */
    for (int32_t j = i; j > 0 && t->strides[order[j]] < t->strides[order[j - 1]]; --j) {
      int32_t tmp = order[j];
      order[j] = order[j - 1];
      order[j - 1] = tmp;
    }
  int64_t extent = 1;
  for (int32_t i = 0; i < n; ++i) {
    if (t->strides[order[i]] < extent) return false;
    extent = t->strides[order[i]] * (t->shape[order[i]] - 1) + extent;
  }
  return true;
}

static kf_status check_like_x(const kf_tensor *x, const kf_tensor *t, const char *name) {
  char a[128], b[128];
  bool same = t->ndim == x->ndim;
  for (int32_t d = 0; same && d < x->ndim; ++d) same = t->shape[d] == x->shape[d];
  if (!same)
    return kf_fail(KF_ERROR_SHAPE_MISMATCH, "%s has shape %s, x has shape %s", name, kf_shape_str(t, a, sizeof a),
                   kf_shape_str(x, b, sizeof b));
  if (x->shape[x->ndim - 1] > 1 && t->strides[t->ndim - 1] != 1)
    return kf_fail(KF_ERROR_UNSUPPORTED, "%s has stride %lld in its last dimension; rows must be contiguous", name,
                   (long long)t->strides[t->ndim - 1]);
  return KF_OK;
}

static kf_status check_vector(const kf_tensor *t, const char *name, int64_t row_len, int64_t *out_stride) {
  int64_t numel = kf_numel_of(t);
  for (int32_t d = 0; d < t->ndim - 1; ++d)
    if (t->shape[d] != 1) {
      char a[128];
      return kf_fail(KF_ERROR_SHAPE_MISMATCH, "%s has shape %s; expected [%lld]", name, kf_shape_str(t, a, sizeof a),
                     (long long)row_len);
    }
  if (numel != row_len)
    return kf_fail(KF_ERROR_SHAPE_MISMATCH, "%s has %lld elements, x rows have %lld", name, (long long)numel,
                   (long long)row_len);
  int64_t stride = t->strides[t->ndim - 1];
  if (stride > INT32_MAX)
    return kf_fail(KF_ERROR_UNSUPPORTED, "%s has element stride %lld; at most 2^31-1 is supported", name,
                   (long long)stride);
  *out_stride = row_len > 1 ? stride : 1;
  return KF_OK;
}

static kf_tensor_arg make_arg(const kf_tensor *t, int64_t offset, int64_t row_stride, int64_t col_stride) {
  kf_tensor_arg arg = {NULL, 0, 0, 1, KF_F32};
  if (t == NULL) return arg;
  arg.buffer = t->storage->buffer;
  arg.offset = t->offset + offset;
  arg.row_stride = row_stride;
  arg.col_stride = col_stride;
  arg.dtype = t->dtype;
  return arg;
}

kf_status kf_rmsnorm(kf_context *context, const kf_tensor *x, kf_tensor *y, const kf_norm_desc *desc) {
  KF_API_ENTER("kf_rmsnorm");
  kf_status status = kf_check_context(context, "context");
  if (status == KF_OK) status = kf_check_tensor(x, "x", context);
  if (status == KF_OK) status = kf_check_tensor(y, "y", context);
  if (status != KF_OK) return status;

  kf_norm_desc defaults = KF_NORM_DESC_INIT;
  if (desc == NULL) desc = &defaults;
  if (desc->struct_size < sizeof(kf_norm_desc))
    return kf_fail(KF_ERROR_INVALID_ARGUMENT,
                   "desc->struct_size is %zu, expected at least %zu (initialize with KF_NORM_DESC_INIT)",
                   desc->struct_size, sizeof(kf_norm_desc));
  if (!(desc->eps >= 0.0f) || isinf(desc->eps))
    return kf_fail(KF_ERROR_INVALID_ARGUMENT, "desc->eps is %g; expected a finite value >= 0", (double)desc->eps);
  const kf_tensor *weight = desc->weight, *bias = desc->bias, *residual = desc->residual;
  kf_tensor *residual_out = desc->residual_out;
  if (weight != NULL && (status = kf_check_tensor(weight, "desc->weight", context)) != KF_OK) return status;
  if (bias != NULL && (status = kf_check_tensor(bias, "desc->bias", context)) != KF_OK) return status;
  if (residual != NULL && (status = kf_check_tensor(residual, "desc->residual", context)) != KF_OK) return status;
  if (residual_out != NULL && (status = kf_check_tensor(residual_out, "desc->residual_out", context)) != KF_OK)
    return status;
  if (residual != NULL && residual_out == NULL)
    return kf_fail(KF_ERROR_NULL_ARGUMENT, "desc->residual_out is NULL but desc->residual is set (h = x + residual "
                                           "must be written somewhere; pass desc->residual to update it in place)");
  if (residual == NULL && residual_out != NULL)
    return kf_fail(KF_ERROR_INVALID_ARGUMENT, "desc->residual_out is set but desc->residual is NULL");

  /* dtypes */
  if ((status = check_float_operand(x, "x")) != KF_OK) return status;
  if ((status = check_float_operand(y, "y")) != KF_OK) return status;
  if (weight && (status = check_float_operand(weight, "desc->weight")) != KF_OK) return status;
  if (bias && (status = check_float_operand(bias, "desc->bias")) != KF_OK) return status;
  if (residual && (status = check_float_operand(residual, "desc->residual")) != KF_OK) return status;
  if (residual_out && (status = check_float_operand(residual_out, "desc->residual_out")) != KF_OK) return status;

  /* shapes and strides */
  int64_t row_len = x->shape[x->ndim - 1];
  if (x->shape[x->ndim - 1] > 1 && x->strides[x->ndim - 1] != 1)
    return kf_fail(KF_ERROR_UNSUPPORTED, "x has stride %lld in its last dimension; rows must be contiguous",
                   (long long)x->strides[x->ndim - 1]);
  if ((status = check_like_x(x, y, "y")) != KF_OK) return status;
  if (residual && (status = check_like_x(x, residual, "desc->residual")) != KF_OK) return status;
  if (residual_out && (status = check_like_x(x, residual_out, "desc->residual_out")) != KF_OK) return status;
  if (row_len > INT32_MAX)
    return kf_fail(KF_ERROR_UNSUPPORTED, "x rows have %lld elements; at most 2^31-1 are supported", (long long)row_len);
  int64_t weight_stride = 1, bias_stride = 1;
  if (weight && (status = check_vector(weight, "desc->weight", row_len, &weight_stride)) != KF_OK) return status;
  if (bias && (status = check_vector(bias, "desc->bias", row_len, &bias_stride)) != KF_OK) return status;

  /* aliasing: outputs are distinct from everything except the documented in-place residual update */
  if (!elements_distinct(y)) return kf_fail(KF_ERROR_INVALID_ARGUMENT, "y has overlapping elements (a stride is too small)");
  if (residual_out && !elements_distinct(residual_out))
    return kf_fail(KF_ERROR_INVALID_ARGUMENT, "desc->residual_out has overlapping elements (a stride is too small)");
  const kf_tensor *inputs[] = {x, residual, weight, bias, residual_out};
  const char *input_names[] = {"x", "desc->residual", "desc->weight", "desc->bias", "desc->residual_out"};
  for (int i = 0; i < 5; ++i)
    if (inputs[i] && kf_tensors_overlap(y, inputs[i]))
      return kf_fail(KF_ERROR_INVALID_ARGUMENT, "y overlaps %s in storage (y must be a separate tensor)", input_names[i]);
  if (residual_out) {
    const kf_tensor *aliased = NULL;
    if (kf_tensors_identical(residual_out, x)) aliased = x;
    else if (kf_tensors_identical(residual_out, residual)) aliased = residual;
    for (int i = 0; i < 4; ++i) {
      const kf_tensor *in = inputs[i];
      if (in == NULL || !kf_tensors_overlap(residual_out, in)) continue;
      if (aliased != NULL && kf_tensors_identical(in, aliased)) continue;
      return kf_fail(KF_ERROR_INVALID_ARGUMENT,
                     "desc->residual_out overlaps %s in storage (it may only be exactly x or desc->residual)",
                     input_names[i]);
    }
    /* In place: every other input overlapping the aliased one must be that same tensor. */
    for (int i = 0; aliased != NULL && i < 4; ++i) {
      const kf_tensor *in = inputs[i];
      if (in && in != aliased && kf_tensors_overlap(in, aliased) && !kf_tensors_identical(in, aliased))
        return kf_fail(KF_ERROR_INVALID_ARGUMENT,
                       "%s partially overlaps the tensor updated in place through desc->residual_out", input_names[i]);
    }
  }

  if (kf_numel_of(x) == 0) return KF_OK;
  if (context->iface->rmsnorm == NULL)
    return kf_fail(KF_ERROR_UNSUPPORTED, "rmsnorm is not implemented by the %s backend", context->iface->name);

  /* operands in layout order: x, y, residual, residual_out */
  const kf_tensor *rowed[4] = {x, y, residual ? residual : x, residual_out ? residual_out : x};
  kf_row_layout layout;
  kf_row_layout_make(rowed, 4, &layout);
  int64_t blocks = kf_row_layout_blocks(&layout);
  for (int64_t block = 0; block < blocks; ++block) {
    kf_norm_args args = {.rows = layout.rows, .row_len = row_len, .eps = desc->eps};
    args.x = make_arg(x, kf_row_layout_block_offset(&layout, 0, block), layout.row_stride[0], 1);
    args.y = make_arg(y, kf_row_layout_block_offset(&layout, 1, block), layout.row_stride[1], 1);
    if (residual) {
      args.residual = make_arg(residual, kf_row_layout_block_offset(&layout, 2, block), layout.row_stride[2], 1);
      args.residual_out =
          make_arg(residual_out, kf_row_layout_block_offset(&layout, 3, block), layout.row_stride[3], 1);
    } else {
      args.residual = make_arg(NULL, 0, 0, 1);
      args.residual_out = make_arg(NULL, 0, 0, 1);
    }
    args.weight = make_arg(weight, 0, 0, weight_stride);
    args.bias = make_arg(bias, 0, 0, bias_stride);
    status = context->iface->rmsnorm(context->backend_ctx, &args);
    if (status != KF_OK) return kf_fail(status, "the %s backend failed", context->iface->name);
  }
  return KF_OK;
}

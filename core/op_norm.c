/* op_norm.c — kf_rmsnorm and kf_layernorm: argument validation, then one backend call per block of
 * rows. All checks happen before any device work, so a rejected call leaves every output untouched. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/internal.h"

typedef kf_status (*norm_entry)(kf_backend_context *ctx, const kf_norm_args *args);

static kf_status run_norm(kf_context *context, const kf_tensor *x, kf_tensor *y, const kf_norm_desc *desc,
                          const char *op, norm_entry (*pick)(const kf_backend_iface *)) {
  kf_status status = kf_check_context(context, "context");
  if (status == KF_OK) status = kf_check_tensor(x, "x", context);
  if (status == KF_OK) status = kf_check_tensor(y, "y", context);
  if (status != KF_OK) return status;

  kf_norm_desc defaults = KF_NORM_DESC_INIT;
  if (desc == NULL) desc = &defaults;
  if ((status = kf_check_desc_size(desc->struct_size, sizeof(kf_norm_desc), "KF_NORM_DESC_INIT")) != KF_OK)
    return status;
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
  if ((status = kf_check_float_operand(x, "x")) != KF_OK) return status;
  if ((status = kf_check_float_operand(y, "y")) != KF_OK) return status;
  if (weight && (status = kf_check_float_operand(weight, "desc->weight")) != KF_OK) return status;
  if (bias && (status = kf_check_float_operand(bias, "desc->bias")) != KF_OK) return status;
  if (residual && (status = kf_check_float_operand(residual, "desc->residual")) != KF_OK) return status;
  if (residual_out && (status = kf_check_float_operand(residual_out, "desc->residual_out")) != KF_OK) return status;

  /* shapes and strides */
  int64_t row_len = x->shape[x->ndim - 1];
  if ((status = kf_check_rows_contiguous(x, "x")) != KF_OK) return status;
  const kf_tensor *like_x[] = {y, residual, residual_out};
  const char *like_x_names[] = {"y", "desc->residual", "desc->residual_out"};
  for (int i = 0; i < 3; ++i) {
    if (like_x[i] == NULL) continue;
    if ((status = kf_check_shape_like(like_x[i], like_x_names[i], x, "x")) != KF_OK) return status;
    if ((status = kf_check_rows_contiguous(like_x[i], like_x_names[i])) != KF_OK) return status;
  }
  if (row_len > INT32_MAX)
    return kf_fail(KF_ERROR_UNSUPPORTED, "x rows have %lld elements; at most 2^31-1 are supported", (long long)row_len);
  int64_t weight_stride = 1, bias_stride = 1;
  if (weight && (status = kf_check_vector(weight, "desc->weight", row_len, "x rows have", &weight_stride)) != KF_OK)
    return status;
  if (bias && (status = kf_check_vector(bias, "desc->bias", row_len, "x rows have", &bias_stride)) != KF_OK)
    return status;

  /* aliasing: outputs are distinct from everything except the documented in-place residual update */
  if ((status = kf_check_output(y, "y")) != KF_OK) return status;
  if (residual_out && (status = kf_check_output(residual_out, "desc->residual_out")) != KF_OK) return status;
  const kf_tensor *inputs[] = {x, residual, weight, bias, residual_out};
  const char *input_names[] = {"x", "desc->residual", "desc->weight", "desc->bias", "desc->residual_out"};
  for (int i = 0; i < 5; ++i)
    if ((status = kf_check_no_overlap(y, "y", inputs[i], input_names[i], false)) != KF_OK) return status;
  if (residual_out) {
    const kf_tensor *aliased = NULL;
    if (kf_tensors_identical(residual_out, x))
      aliased = x;
    else if (kf_tensors_identical(residual_out, residual))
      aliased = residual;
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
  norm_entry entry = pick(context->iface);
  if (entry == NULL)
    return kf_fail(KF_ERROR_UNSUPPORTED, "%s is not implemented by the %s backend", op, context->iface->name);

  /* operands in layout order: x, y, residual, residual_out */
  const kf_tensor *rowed[4] = {x, y, residual ? residual : x, residual_out ? residual_out : x};
  kf_row_layout layout;
  kf_row_layout_make(rowed, 4, &layout);
  int64_t blocks = kf_row_layout_blocks(&layout);
  for (int64_t block = 0; block < blocks; ++block) {
    kf_norm_args args = {.rows = layout.rows, .row_len = row_len, .eps = desc->eps};
    args.x = kf_make_arg(x, kf_row_layout_block_offset(&layout, 0, block), layout.row_stride[0], 1);
    args.y = kf_make_arg(y, kf_row_layout_block_offset(&layout, 1, block), layout.row_stride[1], 1);
    if (residual) {
      args.residual = kf_make_arg(residual, kf_row_layout_block_offset(&layout, 2, block), layout.row_stride[2], 1);
      args.residual_out =
          kf_make_arg(residual_out, kf_row_layout_block_offset(&layout, 3, block), layout.row_stride[3], 1);
    } else {
      args.residual = kf_make_arg(NULL, 0, 0, 1);
      args.residual_out = kf_make_arg(NULL, 0, 0, 1);
    }
    args.weight = kf_make_arg(weight, 0, 0, weight_stride);
    args.bias = kf_make_arg(bias, 0, 0, bias_stride);
    status = entry(context->backend_ctx, &args);
    if (status != KF_OK) return kf_fail(status, "the %s backend failed", context->iface->name);
  }
  return KF_OK;
}

static norm_entry pick_rmsnorm(const kf_backend_iface *iface) { return iface->rmsnorm; }
static norm_entry pick_layernorm(const kf_backend_iface *iface) { return iface->layernorm; }

kf_status kf_rmsnorm(kf_context *context, const kf_tensor *x, kf_tensor *y, const kf_norm_desc *desc) {
  KF_API_ENTER("kf_rmsnorm");
  return run_norm(context, x, y, desc, "rmsnorm", pick_rmsnorm);
}

kf_status kf_layernorm(kf_context *context, const kf_tensor *x, kf_tensor *y, const kf_norm_desc *desc) {
  KF_API_ENTER("kf_layernorm");
  return run_norm(context, x, y, desc, "layernorm", pick_layernorm);
}

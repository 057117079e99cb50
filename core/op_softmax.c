/* op_softmax.c — kf_softmax over the last dimension with scale and an optional broadcast additive mask.
 * The mask is described to the row layout as a tensor of x's shape whose broadcast dimensions have
 * stride 0, so a [q, kv] mask over a [batch, heads, q, kv] x needs no copy. */
#include <math.h>
#include <stdio.h>

#include "core/error.h"
#include "core/internal.h"

kf_status kf_softmax(kf_context *context, const kf_tensor *x, kf_tensor *y, const kf_softmax_desc *desc) {
  KF_API_ENTER("kf_softmax");
  kf_status status = kf_check_context(context, "context");
  if (status == KF_OK) status = kf_check_tensor(x, "x", context);
  if (status == KF_OK) status = kf_check_tensor(y, "y", context);
  if (status != KF_OK) return status;
  kf_softmax_desc defaults = KF_SOFTMAX_DESC_INIT;
  if (desc == NULL) desc = &defaults;
  if ((status = kf_check_desc_size(desc->struct_size, sizeof(kf_softmax_desc), "KF_SOFTMAX_DESC_INIT")) != KF_OK)
    return status;
  if (!isfinite(desc->scale))
    return kf_fail(KF_ERROR_INVALID_ARGUMENT, "desc->scale is %g; expected a finite value", (double)desc->scale);
  const kf_tensor *mask = desc->mask;
  if (mask && (status = kf_check_tensor(mask, "desc->mask", context)) != KF_OK) return status;

  if ((status = kf_check_float_operand(x, "x")) != KF_OK) return status;
  if ((status = kf_check_float_operand(y, "y")) != KF_OK) return status;
  if (mask && (status = kf_check_float_operand(mask, "desc->mask")) != KF_OK) return status;
  if ((status = kf_check_rows_contiguous(x, "x")) != KF_OK) return status;
  if ((status = kf_check_shape_like(y, "y", x, "x")) != KF_OK) return status;
  if ((status = kf_check_rows_contiguous(y, "y")) != KF_OK) return status;
  int32_t last = x->ndim - 1;
  int64_t row_len = x->shape[last];
  if (row_len > INT32_MAX)
    return kf_fail(KF_ERROR_UNSUPPORTED, "x rows have %lld elements; at most 2^31-1 are supported", (long long)row_len);

  /* The mask broadcast to x's shape (right-aligned, dimensions of 1 repeat with stride 0). */
  kf_tensor mask_view;
  if (mask) {
    char a[128], b[128];
    bool ok = mask->ndim <= x->ndim;
    mask_view = *mask;
    mask_view.ndim = x->ndim;
    for (int32_t d = x->ndim - 1, m = mask->ndim - 1; ok && d >= 0; --d, --m) {
      int64_t size = m >= 0 ? mask->shape[m] : 1;
      int64_t stride = m >= 0 ? mask->strides[m] : 0;
      if (size != x->shape[d] && size != 1) ok = false;
      mask_view.shape[d] = x->shape[d];
      mask_view.strides[d] = size == 1 ? 0 : stride;
    }
    if (!ok)
      return kf_fail(KF_ERROR_SHAPE_MISMATCH, "desc->mask has shape %s, which does not broadcast to x's shape %s",
                     kf_shape_str(mask, a, sizeof a), kf_shape_str(x, b, sizeof b));
    if (row_len > 1 && mask->shape[mask->ndim - 1] != row_len)
      return kf_fail(KF_ERROR_UNSUPPORTED,
                     "desc->mask has %lld elements in its last dimension; it must span the row (%lld), not be "
                     "broadcast along it",
                     (long long)mask->shape[mask->ndim - 1], (long long)row_len);
    if ((status = kf_check_rows_contiguous(mask, "desc->mask")) != KF_OK) return status;
  }

  if ((status = kf_check_output(y, "y")) != KF_OK) return status;
  if ((status = kf_check_no_overlap(y, "y", x, "x", true)) != KF_OK) return status;
  if ((status = kf_check_no_overlap(y, "y", mask, "desc->mask", false)) != KF_OK) return status;

  if (kf_numel_of(x) == 0) return KF_OK;
  if (context->iface->softmax == NULL)
    return kf_fail(KF_ERROR_UNSUPPORTED, "softmax is not implemented by the %s backend", context->iface->name);

  const kf_tensor *rowed[3] = {x, y, mask ? &mask_view : x};
  kf_row_layout layout;
  kf_row_layout_make(rowed, 3, &layout);
  int64_t blocks = kf_row_layout_blocks(&layout);
  for (int64_t block = 0; block < blocks; ++block) {
    kf_softmax_args args = {.rows = layout.rows, .row_len = row_len, .scale = desc->scale};
    args.x = kf_make_arg(x, kf_row_layout_block_offset(&layout, 0, block), layout.row_stride[0], 1);
    args.y = kf_make_arg(y, kf_row_layout_block_offset(&layout, 1, block), layout.row_stride[1], 1);
    args.mask = mask ? kf_make_arg(mask, kf_row_layout_block_offset(&layout, 2, block), layout.row_stride[2], 1)
                     : kf_make_arg(NULL, 0, 0, 1);
    status = context->iface->softmax(context->backend_ctx, &args);
    if (status != KF_OK) return kf_fail(status, "the %s backend failed", context->iface->name);
  }
  return KF_OK;
}

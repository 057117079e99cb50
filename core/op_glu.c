/* op_glu.c — kf_glu: out = act(gate) * up (SwiGLU, GeGLU). A fused [.., 2*inner] gate is split here into
 * two operands (gate = first half, up = second half), so backends see one form. */
#include <stdio.h>

#include "core/error.h"
#include "core/internal.h"

kf_status kf_glu(kf_context *context, const kf_tensor *gate, const kf_tensor *up, kf_tensor *out,
                 const kf_glu_desc *desc) {
  KF_API_ENTER("kf_glu");
  kf_status status = kf_check_context(context, "context");
  if (status == KF_OK) status = kf_check_tensor(gate, "gate", context);
  if (status == KF_OK && up != NULL) status = kf_check_tensor(up, "up", context);
  if (status == KF_OK) status = kf_check_tensor(out, "out", context);
  if (status != KF_OK) return status;
  kf_glu_desc defaults = KF_GLU_DESC_INIT;
  if (desc == NULL) desc = &defaults;
  if ((status = kf_check_desc_size(desc->struct_size, sizeof(kf_glu_desc), "KF_GLU_DESC_INIT")) != KF_OK)
    return status;
  if (desc->activation != KF_GLU_SILU && desc->activation != KF_GLU_GELU_TANH)
    return kf_fail(KF_ERROR_INVALID_ARGUMENT, "desc->activation is %d; expected KF_GLU_SILU or KF_GLU_GELU_TANH",
                   (int)desc->activation);

  if ((status = kf_check_float_operand(gate, "gate")) != KF_OK) return status;
  if (up && (status = kf_check_float_operand(up, "up")) != KF_OK) return status;
  if ((status = kf_check_float_operand(out, "out")) != KF_OK) return status;
  if ((status = kf_check_rows_contiguous(gate, "gate")) != KF_OK) return status;
  if (up && (status = kf_check_rows_contiguous(up, "up")) != KF_OK) return status;
  if ((status = kf_check_rows_contiguous(out, "out")) != KF_OK) return status;

  int32_t last = out->ndim - 1;
  int64_t inner = out->shape[last];
  /* The view of gate that holds the gate values, with out's shape: all of gate, or its first half. */
  kf_tensor gate_half = *gate;
  if (up != NULL) {
    if ((status = kf_check_shape_like(gate, "gate", out, "out")) != KF_OK) return status;
    if ((status = kf_check_shape_like(up, "up", out, "out")) != KF_OK) return status;
  } else {
    char a[128], b[128];
    bool leading_match = gate->ndim == out->ndim;
    for (int32_t d = 0; leading_match && d < last; ++d) leading_match = gate->shape[d] == out->shape[d];
    if (!leading_match || gate->shape[last] != 2 * inner)
      return kf_fail(KF_ERROR_SHAPE_MISMATCH,
                     "gate has shape %s, out has shape %s; with up == NULL gate must be [..., 2*%lld] (gate and up "
                     "halves) with out's leading dimensions",
                     kf_shape_str(gate, a, sizeof a), kf_shape_str(out, b, sizeof b), (long long)inner);
    gate_half.shape[last] = inner;
  }
  if (inner > INT32_MAX)
    return kf_fail(KF_ERROR_UNSUPPORTED, "out rows have %lld elements; at most 2^31-1 are supported", (long long)inner);

  if ((status = kf_check_output(out, "out")) != KF_OK) return status;
  if ((status = kf_check_no_overlap(out, "out", gate, "gate", false)) != KF_OK) return status;
  if ((status = kf_check_no_overlap(out, "out", up, "up", false)) != KF_OK) return status;

  if (kf_numel_of(out) == 0) return KF_OK;
  if (context->iface->glu == NULL)
    return kf_fail(KF_ERROR_UNSUPPORTED, "glu is not implemented by the %s backend", context->iface->name);

  /* operands in layout order: out, gate, up (the fused up half shares gate's strides) */
  const kf_tensor *rowed[3] = {out, &gate_half, up ? up : &gate_half};
  kf_row_layout layout;
  kf_row_layout_make(rowed, 3, &layout);
  int64_t up_offset = up ? 0 : inner;
  const kf_tensor *up_tensor = up ? up : gate;
  int64_t blocks = kf_row_layout_blocks(&layout);
  for (int64_t block = 0; block < blocks; ++block) {
    kf_glu_args args = {.rows = layout.rows, .inner = inner, .activation = desc->activation};
    args.out = kf_make_arg(out, kf_row_layout_block_offset(&layout, 0, block), layout.row_stride[0], 1);
    args.gate = kf_make_arg(gate, kf_row_layout_block_offset(&layout, 1, block), layout.row_stride[1], 1);
    args.up = kf_make_arg(up_tensor, up_offset + kf_row_layout_block_offset(&layout, 2, block), layout.row_stride[2], 1);
    status = context->iface->glu(context->backend_ctx, &args);
    if (status != KF_OK) return kf_fail(status, "the %s backend failed", context->iface->name);
  }
  return KF_OK;
}

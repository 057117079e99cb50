/* rows.c — collapsing the leading dimensions of same-shape operands into blocks of rows.
 *
 * Row-wise ops (norms, softmax, activations) take [..., row_len] tensors whose leading dimensions may be
 * strided views. Backends want one row stride per operand. The innermost leading dimensions that every
 * operand can address with a single stride form the inner block; any outer dimensions (rare: views
 * that are not collapsible, such as a transposed batch) become a loop of backend calls in the core. */
#include <string.h>

#include "core/internal.h"

void kf_row_layout_make(const kf_tensor *const *tensors, int count, kf_row_layout *out) {
  memset(out, 0, sizeof *out);
  const kf_tensor *first = tensors[0];
  int32_t leading = first->ndim - 1;
  out->rows = 1;
  int32_t d = leading - 1;
  while (d >= 0 && first->shape[d] == 1) --d; /* size-1 dimensions never matter */
  if (d < 0) return;
  out->rows = first->shape[d];
  for (int i = 0; i < count; ++i) out->row_stride[i] = tensors[i]->strides[d];
  for (--d; d >= 0; --d) {
    if (first->shape[d] == 1) continue;
    bool mergeable = true;
    for (int i = 0; i < count && mergeable; ++i)
      mergeable = tensors[i]->strides[d] == out->row_stride[i] * out->rows;
    if (!mergeable) break;
    out->rows *= first->shape[d];
  }
  /* Dimensions 0..d (those not merged) are looped over, outermost first. */
  for (int32_t o = 0; o <= d; ++o) {
    if (first->shape[o] == 1) continue;
    int32_t k = out->outer_ndim++;
    out->outer_shape[k] = first->shape[o];
    for (int i = 0; i < count; ++i) out->outer_stride[i][k] = tensors[i]->strides[o];
  }
}

int64_t kf_row_layout_blocks(const kf_row_layout *layout) {
  int64_t blocks = 1;
  for (int32_t k = 0; k < layout->outer_ndim; ++k) blocks *= layout->outer_shape[k];
  return blocks;
}

int64_t kf_row_layout_block_offset(const kf_row_layout *layout, int operand, int64_t block) {
  int64_t offset = 0;
  for (int32_t k = layout->outer_ndim - 1; k >= 0; --k) {
    offset += (block % layout->outer_shape[k]) * layout->outer_stride[operand][k];
    block /= layout->outer_shape[k];
  }
  return offset;
}

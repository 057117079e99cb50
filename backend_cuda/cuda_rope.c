/* cuda_rope.c — chooses and launches the RoPE kernel of kernels_src/cuda/rope.cu:
 *   kf_rope_<dt>_<neox|gptj>_v when q, k, q_out, k_out share one dtype and every head is 16-byte
 *   aligned with pack-sized rotary halves (see vectorizable), else kf_rope_any.
 */
#include <stdio.h>

#include "backend_cuda/cuda_internal.h"
#include "kernels_src/common/kf_params.h"

#define BLOCK_THREADS 256 /* rope.cu's __launch_bounds__ */
#define ROWS_IN_FLIGHT 4  /* rope.cu's ROWS_IN_FLIGHT: tokens per block follow from it */
/* Threads per head in the scalar kernel (it strides over the head's pairs). */
#define SCALAR_THREADS_PER_HEAD 32
/* The cos/sin table of one block must fit the default shared-memory limit. */
#define MAX_TABLE_BYTES (48 * 1024)

static int head_aligned(const kf_tensor_arg *arg, int64_t tokens, int heads) {
  if (!kf_cuda_present(arg)) return 1;
  const int64_t size = kf_cuda_element_size(arg->dtype);
  return kf_cuda_address(arg) % KF_CUDA_VECTOR_BYTES == 0 &&
         (tokens == 1 || (arg->row_stride * size) % KF_CUDA_VECTOR_BYTES == 0) &&
         (heads == 1 || (arg->col_stride * size) % KF_CUDA_VECTOR_BYTES == 0);
}

static int same_dtype(const kf_rope_args *args) {
  const kf_dtype dt = args->q.dtype;
  return args->q_out.dtype == dt && (args->k_heads == 0 || (args->k.dtype == dt && args->k_out.dtype == dt));
}

static int vectorizable(const kf_rope_args *args, int in_place) {
  const int half = args->rotary_dim / 2;
  const int units_ok = args->style == KF_ROPE_GPTJ ? args->rotary_dim % KF_CUDA_PACK_ELEMENTS == 0
                                                   : half % KF_CUDA_PACK_ELEMENTS == 0;
  return same_dtype(args) && units_ok && (in_place || (args->head_dim - args->rotary_dim) % KF_CUDA_PACK_ELEMENTS == 0) &&
         head_aligned(&args->q, args->tokens, args->q_heads) && head_aligned(&args->q_out, args->tokens, args->q_heads) &&
         (args->k_heads == 0 || (head_aligned(&args->k, args->tokens, args->k_heads) &&
                                 head_aligned(&args->k_out, args->tokens, args->k_heads)));
}

static int32_t stride32(const kf_tensor_arg *arg, int64_t stride) { return kf_cuda_present(arg) ? (int32_t)stride : 0; }

kf_status kf_cuda_rope(kf_backend_context *ctx, const kf_rope_args *args) {
  const int heads = args->q_heads + args->k_heads;
  const int in_place = args->q_out.buffer == args->q.buffer && args->q_out.offset == args->q.offset &&
                       args->k_out.buffer == args->k.buffer && args->k_out.offset == args->k.offset;
  const int vector = vectorizable(args, in_place);
  const int half = args->rotary_dim / 2;
  int block_x;
  if (vector) {
    const int rotary_units = args->style == KF_ROPE_GPTJ ? args->rotary_dim / KF_CUDA_PACK_ELEMENTS
                                                         : half / KF_CUDA_PACK_ELEMENTS;
    block_x = rotary_units + (in_place ? 0 : (args->head_dim - args->rotary_dim) / KF_CUDA_PACK_ELEMENTS);
  } else {
    block_x = SCALAR_THREADS_PER_HEAD;
  }
  if (block_x > BLOCK_THREADS)
    return kf_fail(KF_ERROR_UNSUPPORTED, "CUDA RoPE: head_dim %d is too large", (int)args->head_dim);
  const int block_y = BLOCK_THREADS / block_x;
  int tokens_per_block = ROWS_IN_FLIGHT * block_y / heads; /* as rope.cu's rope_tokens_per_block */
  if (tokens_per_block < 1) tokens_per_block = 1;
  const size_t table_bytes = (size_t)tokens_per_block * (size_t)args->rotary_dim * sizeof(float);
  if (table_bytes > MAX_TABLE_BYTES)
    return kf_fail(KF_ERROR_UNSUPPORTED, "CUDA RoPE: rotary_dim %d is too large", (int)args->rotary_dim);

  char name[48];
  int slot;
  if (vector) {
    snprintf(name, sizeof name, "kf_rope_%s_%s_v", kf_cuda_dtype_name(args->q.dtype),
             args->style == KF_ROPE_GPTJ ? "gptj" : "neox");
    slot = (int)args->q.dtype * 2 + (args->style == KF_ROPE_GPTJ);
  } else {
    snprintf(name, sizeof name, "kf_rope_any");
    slot = 6;
  }
  const int has_k = args->k_heads > 0;
  const int has_table = kf_cuda_present(&args->cos_sin);
  struct kf_rope_params params = {
      .q = kf_cuda_address(&args->q),
      .k = kf_cuda_address(&args->k),
      .q_out = kf_cuda_address(&args->q_out),
      .k_out = kf_cuda_address(&args->k_out),
      .positions = kf_cuda_address(&args->positions),
      .cos_sin = kf_cuda_address(&args->cos_sin),
      .tokens = (int32_t)args->tokens,
      .q_token_stride = (int32_t)args->q.row_stride,
      .q_head_stride = (int32_t)args->q.col_stride,
      .k_token_stride = stride32(&args->k, args->k.row_stride),
      .k_head_stride = stride32(&args->k, args->k.col_stride),
      .q_out_token_stride = (int32_t)args->q_out.row_stride,
      .q_out_head_stride = (int32_t)args->q_out.col_stride,
      .k_out_token_stride = stride32(&args->k_out, args->k_out.row_stride),
      .k_out_head_stride = stride32(&args->k_out, args->k_out.col_stride),
      .positions_stride = (int32_t)args->positions.col_stride,
      .cos_sin_row_stride = has_table ? (int32_t)args->cos_sin.row_stride : 0,
      .cos_sin_rows = has_table ? (int32_t)args->cos_sin_rows : 0,
      .q_heads = args->q_heads,
      .k_heads = args->k_heads,
      .head_dim = args->head_dim,
      .rotary_dim = args->rotary_dim,
      .flags = (args->style == KF_ROPE_GPTJ ? KF_ROPE_GPTJ_STYLE : 0u) | (has_k ? KF_ROPE_HAS_K : 0u) |
               (has_table ? KF_ROPE_HAS_COS_SIN : 0u),
      .dtypes = (uint32_t)args->q.dtype << KF_ROPE_DT_SHIFT_Q | (uint32_t)args->q_out.dtype << KF_ROPE_DT_SHIFT_Q_OUT |
                (has_k ? (uint32_t)args->k.dtype << KF_ROPE_DT_SHIFT_K | (uint32_t)args->k_out.dtype << KF_ROPE_DT_SHIFT_K_OUT
                       : 0u),
      .theta = args->theta,
      .position_scale = args->position_scale,
  };
  kf_status status = kf_cuda_enter(ctx);
  if (status != KF_OK) return status;
  CUfunction function;
  status = kf_cuda_function(ctx, KF_CUDA_MODULE_ROPE, slot, name, &function);
  const int64_t blocks = (args->tokens + tokens_per_block - 1) / tokens_per_block;
  if (status == KF_OK)
    status = kf_cuda_launch(ctx, function, name, (unsigned)blocks, (unsigned)block_x, (unsigned)block_y,
                            (unsigned)table_bytes, &params);
  kf_cuda_leave(ctx);
  return status;
}

/* opencl_rope.c — rotary position embedding on OpenCL: kernels_src/opencl/rope.cl. */
#include <string.h>

#include "backend_opencl/opencl_internal.h"
#include "kernels_src/common/kf_params.h"

/* Work-items per token at most: enough to cover a 128-wide head's pair vectors for several heads
 * (each work-item reuses its cos/sin for heads/head_groups heads), few enough that a group holds
 * several tokens. */
#define KF_ROPE_ITEMS_PER_TOKEN 64
#define KF_ROPE_GROUP_TARGET 256
#define KF_ROPE_MAX_GROUPS (1 << 20)
/* Tokens of the pass-through copy beyond this are looped over in the kernel (NVIDIA's third grid
 * dimension limit). */
#define KF_ROPE_TAIL_MAX_TOKENS 65535

/* Token, head and offset of a [tokens, heads, head_dim] operand are multiples of 8 (absent: true). */
static int heads_aligned(const kf_tensor_arg *arg) {
  return arg->buffer == NULL || (arg->offset % KF_OCL_VEC == 0 && arg->row_stride % KF_OCL_VEC == 0 &&
                                 arg->col_stride % KF_OCL_VEC == 0);
}

static int same_operand(const kf_tensor_arg *a, const kf_tensor_arg *b) {
  return a->buffer == b->buffer && a->offset == b->offset && a->row_stride == b->row_stride &&
         a->col_stride == b->col_stride && a->dtype == b->dtype;
}

kf_status kf_ocl_rope(kf_backend_context *ctx, const kf_rope_args *args) {
  if (args->tokens == 0) return KF_OK;
  const int has_k = args->k.buffer != NULL && args->k_heads > 0;
  const int heads = args->q_heads + (has_k ? args->k_heads : 0);
  const int half = args->rotary_dim / 2;
  const int gptj = args->style == KF_ROPE_GPTJ;
  const int aligned = heads_aligned(&args->q) && heads_aligned(&args->q_out) &&
                      (!has_k || (heads_aligned(&args->k) && heads_aligned(&args->k_out)));
  /* Pairs per work-item and kernel: NeoX 8 pairs = two 8-wide accesses; GPT-J 4 pairs = one. */
  int pairs = 1, slot = 2;
  const char *name = "kf_rope_scalar";
  if (aligned && !gptj && half % 8 == 0) {
    pairs = 8, slot = 0, name = "kf_rope_neox8";
  } else if (aligned && gptj && args->rotary_dim % 8 == 0) {
    pairs = 4, slot = 1, name = "kf_rope_gptj8";
  }

  const kf_tensor_arg *const operands[] = {&args->q, &args->k, &args->q_out, &args->k_out};
  kf_ocl_program *program;
  kf_status status = kf_ocl_op_program(ctx, KF_OCL_OP_ROPE, kf_ocl_uniform_dtype(ctx, operands, 4), &program);
  if (status != KF_OK) return status;

  struct kf_rope_params params;
  memset(&params, 0, sizeof params);
  params.q = (uint64_t)args->q.offset;
  params.q_out = (uint64_t)args->q_out.offset;
  params.positions = (uint64_t)args->positions.offset;
  params.tokens = (int32_t)args->tokens;
  params.q_token_stride = (int32_t)args->q.row_stride;
  params.q_head_stride = (int32_t)args->q.col_stride;
  params.q_out_token_stride = (int32_t)args->q_out.row_stride;
  params.q_out_head_stride = (int32_t)args->q_out.col_stride;
  if (has_k) {
    params.k = (uint64_t)args->k.offset;
    params.k_out = (uint64_t)args->k_out.offset;
    params.k_token_stride = (int32_t)args->k.row_stride;
    params.k_head_stride = (int32_t)args->k.col_stride;
    params.k_out_token_stride = (int32_t)args->k_out.row_stride;
    params.k_out_head_stride = (int32_t)args->k_out.col_stride;
  }
  params.positions_stride = (int32_t)args->positions.col_stride;
  if (args->cos_sin.buffer != NULL) {
    params.cos_sin = (uint64_t)args->cos_sin.offset;
    params.cos_sin_row_stride = (int32_t)args->cos_sin.row_stride;
    params.cos_sin_rows = (int32_t)args->cos_sin_rows;
  }
  params.q_heads = args->q_heads;
  params.k_heads = has_k ? args->k_heads : 0;
  params.head_dim = args->head_dim;
  params.rotary_dim = args->rotary_dim;
  params.flags = (gptj ? KF_ROPE_GPTJ_STYLE : 0u) | (has_k ? KF_ROPE_HAS_K : 0u) |
                 (args->cos_sin.buffer != NULL ? KF_ROPE_HAS_COS_SIN : 0u);
  params.dtypes = (uint32_t)args->q.dtype << KF_ROPE_DT_SHIFT_Q | (uint32_t)args->q_out.dtype << KF_ROPE_DT_SHIFT_Q_OUT;
  if (has_k)
    params.dtypes |= (uint32_t)args->k.dtype << KF_ROPE_DT_SHIFT_K | (uint32_t)args->k_out.dtype << KF_ROPE_DT_SHIFT_K_OUT;
  params.theta = args->theta;
  params.position_scale = args->position_scale;

  cl_mem mems[6];
  for (int i = 0; i < 4; ++i) mems[i] = kf_ocl_operand_mem(ctx, operands[i]);
  mems[4] = kf_ocl_operand_mem(ctx, &args->positions);
  mems[5] = kf_ocl_operand_mem(ctx, &args->cos_sin);

  const int64_t tokens = args->tokens;
  if (half > 0) {
    cl_kernel kernel;
    size_t max_group;
    status = kf_ocl_get_kernel(ctx, program, slot, name, &kernel, &max_group);
    if (status != KF_OK) return status;
    const int pair_vecs = half / pairs;
    cl_uint pv_items = (cl_uint)(pair_vecs < KF_ROPE_ITEMS_PER_TOKEN ? pair_vecs : KF_ROPE_ITEMS_PER_TOKEN);
    cl_uint head_groups = KF_ROPE_ITEMS_PER_TOKEN / pv_items;
    if (head_groups > (cl_uint)heads) head_groups = (cl_uint)heads;
    if (head_groups == 0) head_groups = 1;
    const size_t items_per_token = (size_t)pv_items * head_groups;
    size_t limit = max_group < ctx->max_group_size ? max_group : ctx->max_group_size;
    if (limit > KF_ROPE_GROUP_TARGET) limit = KF_ROPE_GROUP_TARGET;
    size_t tokens_per_group = limit / items_per_token;
    if (tokens_per_group == 0) tokens_per_group = 1; /* items_per_token <= 64 fits every GPU group */
    if ((int64_t)tokens_per_group > tokens) tokens_per_group = (size_t)tokens;
    const size_t group = tokens_per_group * items_per_token;
    int64_t groups = (tokens + (int64_t)tokens_per_group - 1) / (int64_t)tokens_per_group;
    if (groups > KF_ROPE_MAX_GROUPS) groups = KF_ROPE_MAX_GROUPS;

    const size_t sizes[9] = {sizeof params,  sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem),     sizeof(cl_mem),
                             sizeof(cl_mem), sizeof(cl_mem), sizeof pv_items, sizeof head_groups};
    const void *const values[9] = {&params,  &mems[0], &mems[1],  &mems[2],     &mems[3],
                                   &mems[4], &mems[5], &pv_items, &head_groups};
    status = kf_ocl_set_args(kernel, name, 9, sizes, values);
    if (status != KF_OK) return status;
    const size_t global = (size_t)groups * group;
    status = kf_ocl_enqueue(ctx, kernel, name, 1, &global, &group);
    if (status != KF_OK) return status;
  }

  /* Out of place with partial rotary: the pass-through elements still have to reach the output. */
  const int in_place = same_operand(&args->q, &args->q_out) && (!has_k || same_operand(&args->k, &args->k_out));
  if (args->rotary_dim < args->head_dim && !in_place) {
    cl_kernel kernel;
    size_t max_group;
    status = kf_ocl_get_kernel(ctx, program, 3, "kf_rope_tail", &kernel, &max_group);
    if (status != KF_OK) return status;
    cl_uint unused = 1;
    const size_t sizes[9] = {sizeof params,  sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem),
                             sizeof(cl_mem), sizeof(cl_mem), sizeof unused,  sizeof unused};
    const void *const values[9] = {&params, &mems[0], &mems[1], &mems[2], &mems[3], &mems[4], &mems[5], &unused, &unused};
    status = kf_ocl_set_args(kernel, "kf_rope_tail", 9, sizes, values);
    if (status != KF_OK) return status;
    const size_t global[3] = {(size_t)(args->head_dim - args->rotary_dim), (size_t)heads,
                              (size_t)(tokens < KF_ROPE_TAIL_MAX_TOKENS ? tokens : KF_ROPE_TAIL_MAX_TOKENS)};
    status = kf_ocl_enqueue(ctx, kernel, "kf_rope_tail", 3, global, NULL);
    if (status != KF_OK) return status;
  }
  return KF_OK;
}

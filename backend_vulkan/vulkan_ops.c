/* vulkan_ops.c — the operations of the Vulkan backend: each picks its shader's specialization constants
 * (operand dtypes, optional operands, load width, workgroup size), fills the kernel's push-constant
 * block (kernels_src/common/kf_params.h) with buffer device addresses and records one dispatch. The
 * shaders are in kernels_src/vulkan/; the constants named here must match them.
 */
#include <string.h>

#include "backend_vulkan/vulkan_internal.h"
#include "kernels_src/common/kf_params.h"
#include "kernels_src/vulkan/kf_vk_copy_params.h"

/* Elements per chunk in every shader (kf_chunks.glsl), and the alignment a 16-byte access needs. */
#define KF_VK_CHUNK 8
#define KF_VK_VECTOR_BYTES 16
/* Chunks per invocation the row shaders cache in registers (norm.comp, softmax.comp). */
#define KF_VK_CACHED_CHUNKS 4
/* rope.comp's shared cos/sin arrays (MAX_SHARED_PAIRS). */
#define KF_VK_ROPE_MAX_SHARED_PAIRS 512
/* glu.comp and copy.comp's workgroup size (local_size_x), and copy.comp's UNROLL. */
#define KF_VK_ELEMENTWISE_WORKGROUP 256
#define KF_VK_COPY_UNROLL 4

/* The push-constant blocks must match their GLSL std430 layouts and fit the guaranteed 128 bytes. */
_Static_assert(sizeof(struct kf_norm_params) == 112, "kf_norm_params layout changed");
_Static_assert(sizeof(struct kf_rope_params) == 128, "kf_rope_params layout changed");
_Static_assert(sizeof(struct kf_glu_params) == 72, "kf_glu_params layout changed");
_Static_assert(sizeof(struct kf_softmax_params) == 72, "kf_softmax_params layout changed");
_Static_assert(sizeof(struct kf_vk_copy_params) == 24, "kf_vk_copy_params layout changed");

static uint64_t operand_address(const kf_tensor_arg *arg) {
  if (arg->buffer == NULL) return 0;
  return arg->buffer->address + (uint64_t)arg->offset * kf_dtype_size(arg->dtype);
}

/* Whether every row of a row-major operand starts 16-byte aligned (absent operands: yes). */
static int rows_aligned(const kf_tensor_arg *arg) {
  if (arg->buffer == NULL) return 1;
  const uint64_t size = kf_dtype_size(arg->dtype);
  return operand_address(arg) % KF_VK_VECTOR_BYTES == 0 && ((uint64_t)arg->row_stride * size) % KF_VK_VECTOR_BYTES == 0;
}

/* Whether a per-column vector (weight, bias) can be read in 16-byte chunks. */
static int vector_aligned(const kf_tensor_arg *arg) {
  if (arg->buffer == NULL) return 1;
  return arg->col_stride == 1 && operand_address(arg) % KF_VK_VECTOR_BYTES == 0;
}

/* Workgroup size of the one-row-per-workgroup shaders (norm.comp, softmax.comp): 256 invocations while
 * the row fits their register cache (256 * KF_VK_CACHED_CHUNKS chunks), else 512 where the device
 * allows; rows of fewer than 256 chunks get the next power of two >= 64 instead, so that short rows do
 * not leave most invocations idle (one chunk each; 64 is two NVIDIA warps, one AMD wave64). */
static uint32_t row_workgroup_size(const kf_backend_context *ctx, int64_t row_len) {
  const int64_t chunks = (row_len + KF_VK_CHUNK - 1) / KF_VK_CHUNK;
  uint32_t size = 64;
  while (size < 256 && size < chunks) size *= 2;
  if (chunks > 256 * KF_VK_CACHED_CHUNKS && ctx->max_workgroup_invocations >= 512) size = 512;
  return size;
}

static uint32_t capped(int64_t groups, uint32_t limit) { return groups < (int64_t)limit ? (uint32_t)groups : limit; }

/* ---------------------------------------------------------------------------------------------
 * RMSNorm and LayerNorm (norm.comp).
 */
enum {
  NORM_X_DTYPE,
  NORM_RESIDUAL_DTYPE,
  NORM_RESIDUAL_OUT_DTYPE,
  NORM_WEIGHT_DTYPE,
  NORM_BIAS_DTYPE,
  NORM_Y_DTYPE,
  NORM_HAS_WEIGHT,
  NORM_HAS_BIAS,
  NORM_HAS_RESIDUAL,
  NORM_VECTORIZED,
  NORM_WORKGROUP_SIZE,
  NORM_CENTERED,
  NORM_SPEC_COUNT
};

kf_status kf_vk_norm(kf_backend_context *ctx, const kf_norm_args *args, int centered) {
  if (args->rows <= 0 || args->row_len <= 0) return KF_OK;
  if (args->weight.col_stride > INT32_MAX || args->bias.col_stride > INT32_MAX)
    return kf_fail(KF_ERROR_UNSUPPORTED, "weight/bias strides above 2^31-1 elements are not supported on Vulkan");
  const int has_weight = args->weight.buffer != NULL;
  const int has_bias = args->bias.buffer != NULL;
  const int has_residual = args->residual.buffer != NULL;
  const int vectorized = args->row_len % KF_VK_CHUNK == 0 && rows_aligned(&args->x) && rows_aligned(&args->y) &&
                         rows_aligned(&args->residual) && rows_aligned(&args->residual_out) &&
                         vector_aligned(&args->weight) && vector_aligned(&args->bias);
  /* Absent operands get f32 so that unused combinations share a pipeline. */
  const uint32_t spec[NORM_SPEC_COUNT] = {
      [NORM_X_DTYPE] = (uint32_t)args->x.dtype,
      [NORM_RESIDUAL_DTYPE] = has_residual ? (uint32_t)args->residual.dtype : KF_DT_F32,
      [NORM_RESIDUAL_OUT_DTYPE] = has_residual ? (uint32_t)args->residual_out.dtype : KF_DT_F32,
      [NORM_WEIGHT_DTYPE] = has_weight ? (uint32_t)args->weight.dtype : KF_DT_F32,
      [NORM_BIAS_DTYPE] = has_bias ? (uint32_t)args->bias.dtype : KF_DT_F32,
      [NORM_Y_DTYPE] = (uint32_t)args->y.dtype,
      [NORM_HAS_WEIGHT] = (uint32_t)has_weight,
      [NORM_HAS_BIAS] = (uint32_t)has_bias,
      [NORM_HAS_RESIDUAL] = (uint32_t)has_residual,
      [NORM_VECTORIZED] = (uint32_t)vectorized,
      [NORM_WORKGROUP_SIZE] = row_workgroup_size(ctx, args->row_len),
      [NORM_CENTERED] = (uint32_t)(centered != 0),
  };
  VkPipeline pipeline;
  kf_status status = kf_vk_get_pipeline(ctx, KF_VK_KERNEL_NORM, spec, NORM_SPEC_COUNT, &pipeline);
  if (status != KF_OK) return status;

  struct kf_norm_params params = {
      .x = operand_address(&args->x),
      .residual = operand_address(&args->residual),
      .residual_out = operand_address(&args->residual_out),
      .weight = operand_address(&args->weight),
      .bias = operand_address(&args->bias),
      .y = operand_address(&args->y),
      .x_row_stride = args->x.row_stride,
      .residual_row_stride = has_residual ? args->residual.row_stride : 0,
      .residual_out_row_stride = has_residual ? args->residual_out.row_stride : 0,
      .y_row_stride = args->y.row_stride,
      .rows = args->rows,
      .row_len = (int32_t)args->row_len,
      .weight_stride = has_weight ? (int32_t)args->weight.col_stride : 0,
      .bias_stride = has_bias ? (int32_t)args->bias.col_stride : 0,
      .eps = args->eps,
      /* The shader takes these from its specialization constants; filled for completeness. */
      .flags = (has_weight ? KF_NORM_HAS_WEIGHT : 0u) | (has_bias ? KF_NORM_HAS_BIAS : 0u) |
               (has_residual ? KF_NORM_HAS_RESIDUAL : 0u),
      .dtypes = spec[NORM_X_DTYPE] << KF_NORM_DT_SHIFT_X | spec[NORM_RESIDUAL_DTYPE] << KF_NORM_DT_SHIFT_RESIDUAL |
                spec[NORM_RESIDUAL_OUT_DTYPE] << KF_NORM_DT_SHIFT_RESIDUAL_OUT |
                spec[NORM_WEIGHT_DTYPE] << KF_NORM_DT_SHIFT_WEIGHT | spec[NORM_BIAS_DTYPE] << KF_NORM_DT_SHIFT_BIAS |
                spec[NORM_Y_DTYPE] << KF_NORM_DT_SHIFT_Y,
  };
  /* One workgroup per row; the shader strides over rows beyond the dispatch limit. */
  return kf_vk_dispatch(ctx, pipeline, &params, sizeof params, capped(args->rows, ctx->max_workgroups_x), 1);
}

/* ---------------------------------------------------------------------------------------------
 * RoPE (rope.comp).
 */
enum {
  ROPE_Q_DTYPE,
  ROPE_K_DTYPE,
  ROPE_Q_OUT_DTYPE,
  ROPE_K_OUT_DTYPE,
  ROPE_VECTORIZED,
  ROPE_SHARED_ANGLES,
  ROPE_WORKGROUP_SIZE,
  ROPE_COPY_PASS_THROUGH,
  ROPE_SPEC_COUNT
};

static int same_operand(const kf_tensor_arg *a, const kf_tensor_arg *b) {
  return a->buffer == b->buffer && a->offset == b->offset && a->row_stride == b->row_stride &&
         a->col_stride == b->col_stride && a->dtype == b->dtype;
}

/* Whether every head of a [tokens, heads, head_dim] operand starts 16-byte aligned. */
static int heads_aligned(const kf_tensor_arg *arg) {
  if (arg->buffer == NULL) return 1;
  const uint64_t size = kf_dtype_size(arg->dtype);
  return operand_address(arg) % KF_VK_VECTOR_BYTES == 0 && ((uint64_t)arg->row_stride * size) % KF_VK_VECTOR_BYTES == 0 &&
         ((uint64_t)arg->col_stride * size) % KF_VK_VECTOR_BYTES == 0;
}

kf_status kf_vk_rope(kf_backend_context *ctx, const kf_rope_args *args) {
  if (args->tokens <= 0) return KF_OK;
  const int has_k = args->k.buffer != NULL && args->k_heads > 0;
  const int has_table = args->cos_sin.buffer != NULL;
  const int gptj = args->style == KF_ROPE_GPTJ;
  const int32_t half_dim = args->rotary_dim / 2;
  /* In place (outputs identical to inputs): the pass-through part is left as it is. */
  const int copy_pass_through = args->rotary_dim < args->head_dim &&
                                !(same_operand(&args->q, &args->q_out) && (!has_k || same_operand(&args->k, &args->k_out)));
  const int rotated_whole_chunks = gptj ? args->rotary_dim % KF_VK_CHUNK == 0 : half_dim % KF_VK_CHUNK == 0;
  const int pass_whole_chunks = !copy_pass_through || (args->head_dim - args->rotary_dim) % KF_VK_CHUNK == 0;
  const int vectorized = rotated_whole_chunks && pass_whole_chunks && heads_aligned(&args->q) &&
                         heads_aligned(&args->q_out) && (!has_k || (heads_aligned(&args->k) && heads_aligned(&args->k_out)));
  const int64_t units_per_head =
      (gptj ? (args->rotary_dim + KF_VK_CHUNK - 1) / KF_VK_CHUNK : (half_dim + KF_VK_CHUNK - 1) / KF_VK_CHUNK) +
      (copy_pass_through ? (args->head_dim - args->rotary_dim + KF_VK_CHUNK - 1) / KF_VK_CHUNK : 0);
  const int64_t units = ((int64_t)args->q_heads + (has_k ? args->k_heads : 0)) * units_per_head;
  if (units > INT32_MAX) return kf_fail(KF_ERROR_UNSUPPORTED, "RoPE on Vulkan: more than 2^31-1 chunks per token");
  /* One workgroup per token: 64 invocations for a small token (e.g. a single head), else 128, so that
   * a 40-head × 128 token (320 chunks) takes 3 rounds and an SM holds 16 such workgroups. */
  const uint32_t workgroup_size = units <= 64 ? 64 : 128;
  /* Absent k gets q's dtypes so that it shares q's pipeline. */
  const uint32_t spec[ROPE_SPEC_COUNT] = {
      [ROPE_Q_DTYPE] = (uint32_t)args->q.dtype,
      [ROPE_K_DTYPE] = has_k ? (uint32_t)args->k.dtype : (uint32_t)args->q.dtype,
      [ROPE_Q_OUT_DTYPE] = (uint32_t)args->q_out.dtype,
      [ROPE_K_OUT_DTYPE] = has_k ? (uint32_t)args->k_out.dtype : (uint32_t)args->q_out.dtype,
      [ROPE_VECTORIZED] = (uint32_t)vectorized,
      [ROPE_SHARED_ANGLES] = (uint32_t)(half_dim <= KF_VK_ROPE_MAX_SHARED_PAIRS),
      [ROPE_WORKGROUP_SIZE] = workgroup_size,
      [ROPE_COPY_PASS_THROUGH] = (uint32_t)copy_pass_through,
  };
  VkPipeline pipeline;
  kf_status status = kf_vk_get_pipeline(ctx, KF_VK_KERNEL_ROPE, spec, ROPE_SPEC_COUNT, &pipeline);
  if (status != KF_OK) return status;

  struct kf_rope_params params = {
      .q = operand_address(&args->q),
      .k = has_k ? operand_address(&args->k) : 0,
      .q_out = operand_address(&args->q_out),
      .k_out = has_k ? operand_address(&args->k_out) : 0,
      .positions = operand_address(&args->positions),
      .cos_sin = has_table ? operand_address(&args->cos_sin) : 0,
      /* The core rejects counts and strides above 2^31 - 1 (kf_params.h). */
      .tokens = (int32_t)args->tokens,
      .q_token_stride = (int32_t)args->q.row_stride,
      .q_head_stride = (int32_t)args->q.col_stride,
      .k_token_stride = has_k ? (int32_t)args->k.row_stride : 0,
      .k_head_stride = has_k ? (int32_t)args->k.col_stride : 0,
      .q_out_token_stride = (int32_t)args->q_out.row_stride,
      .q_out_head_stride = (int32_t)args->q_out.col_stride,
      .k_out_token_stride = has_k ? (int32_t)args->k_out.row_stride : 0,
      .k_out_head_stride = has_k ? (int32_t)args->k_out.col_stride : 0,
      .positions_stride = (int32_t)args->positions.col_stride,
      .cos_sin_row_stride = has_table ? (int32_t)args->cos_sin.row_stride : 0,
      .cos_sin_rows = has_table ? (int32_t)args->cos_sin_rows : 0,
      .q_heads = args->q_heads,
      .k_heads = has_k ? args->k_heads : 0,
      .head_dim = args->head_dim,
      .rotary_dim = args->rotary_dim,
      .flags = (gptj ? KF_ROPE_GPTJ_STYLE : 0u) | (has_k ? KF_ROPE_HAS_K : 0u) | (has_table ? KF_ROPE_HAS_COS_SIN : 0u),
      .dtypes = spec[ROPE_Q_DTYPE] << KF_ROPE_DT_SHIFT_Q | spec[ROPE_K_DTYPE] << KF_ROPE_DT_SHIFT_K |
                spec[ROPE_Q_OUT_DTYPE] << KF_ROPE_DT_SHIFT_Q_OUT | spec[ROPE_K_OUT_DTYPE] << KF_ROPE_DT_SHIFT_K_OUT,
      .theta = args->theta,
      .position_scale = args->position_scale,
  };
  return kf_vk_dispatch(ctx, pipeline, &params, sizeof params, capped(args->tokens, ctx->max_workgroups_x), 1);
}

/* ---------------------------------------------------------------------------------------------
 * SwiGLU / GeGLU (glu.comp).
 */
enum { GLU_GATE_DTYPE, GLU_UP_DTYPE, GLU_RESULT_DTYPE, GLU_GELU_TANH, GLU_VECTORIZED, GLU_SPEC_COUNT };

kf_status kf_vk_glu(kf_backend_context *ctx, const kf_glu_args *args) {
  if (args->rows <= 0 || args->inner <= 0) return KF_OK;
  const int vectorized = args->inner % KF_VK_CHUNK == 0 && rows_aligned(&args->gate) && rows_aligned(&args->up) &&
                         rows_aligned(&args->out);
  const uint32_t spec[GLU_SPEC_COUNT] = {
      [GLU_GATE_DTYPE] = (uint32_t)args->gate.dtype,
      [GLU_UP_DTYPE] = (uint32_t)args->up.dtype,
      [GLU_RESULT_DTYPE] = (uint32_t)args->out.dtype,
      [GLU_GELU_TANH] = (uint32_t)(args->activation == KF_GLU_GELU_TANH),
      [GLU_VECTORIZED] = (uint32_t)vectorized,
  };
  VkPipeline pipeline;
  kf_status status = kf_vk_get_pipeline(ctx, KF_VK_KERNEL_GLU, spec, GLU_SPEC_COUNT, &pipeline);
  if (status != KF_OK) return status;
  struct kf_glu_params params = {
      .gate = operand_address(&args->gate),
      .up = operand_address(&args->up),
      .result = operand_address(&args->out),
      .gate_row_stride = args->gate.row_stride,
      .up_row_stride = args->up.row_stride,
      .result_row_stride = args->out.row_stride,
      .rows = args->rows,
      .inner = (int32_t)args->inner,
      .flags = args->activation == KF_GLU_GELU_TANH ? KF_GLU_ACT_GELU_TANH : 0u,
      .dtypes = spec[GLU_GATE_DTYPE] << KF_GLU_DT_SHIFT_GATE | spec[GLU_UP_DTYPE] << KF_GLU_DT_SHIFT_UP |
                spec[GLU_RESULT_DTYPE] << KF_GLU_DT_SHIFT_RESULT,
  };
  /* x: the chunks of a row, one per invocation; y: rows. The shader strides over both beyond the
   * dispatch limits. */
  const int64_t chunks = (args->inner + KF_VK_CHUNK - 1) / KF_VK_CHUNK;
  const int64_t groups_x = (chunks + KF_VK_ELEMENTWISE_WORKGROUP - 1) / KF_VK_ELEMENTWISE_WORKGROUP;
  return kf_vk_dispatch(ctx, pipeline, &params, sizeof params, capped(groups_x, ctx->max_workgroups_x),
                        capped(args->rows, ctx->max_workgroups_y));
}

/* ---------------------------------------------------------------------------------------------
 * Softmax (softmax.comp).
 */
enum {
  SOFTMAX_X_DTYPE,
  SOFTMAX_MASK_DTYPE,
  SOFTMAX_Y_DTYPE,
  SOFTMAX_HAS_MASK,
  SOFTMAX_VECTORIZED,
  SOFTMAX_WORKGROUP_SIZE,
  SOFTMAX_SPEC_COUNT
};

kf_status kf_vk_softmax(kf_backend_context *ctx, const kf_softmax_args *args) {
  if (args->rows <= 0 || args->row_len <= 0) return KF_OK;
  const int has_mask = args->mask.buffer != NULL;
  const int vectorized = args->row_len % KF_VK_CHUNK == 0 && rows_aligned(&args->x) && rows_aligned(&args->y) &&
                         rows_aligned(&args->mask);
  const uint32_t spec[SOFTMAX_SPEC_COUNT] = {
      [SOFTMAX_X_DTYPE] = (uint32_t)args->x.dtype,
      [SOFTMAX_MASK_DTYPE] = has_mask ? (uint32_t)args->mask.dtype : KF_DT_F32,
      [SOFTMAX_Y_DTYPE] = (uint32_t)args->y.dtype,
      [SOFTMAX_HAS_MASK] = (uint32_t)has_mask,
      [SOFTMAX_VECTORIZED] = (uint32_t)vectorized,
      [SOFTMAX_WORKGROUP_SIZE] = row_workgroup_size(ctx, args->row_len),
  };
  VkPipeline pipeline;
  kf_status status = kf_vk_get_pipeline(ctx, KF_VK_KERNEL_SOFTMAX, spec, SOFTMAX_SPEC_COUNT, &pipeline);
  if (status != KF_OK) return status;
  struct kf_softmax_params params = {
      .x = operand_address(&args->x),
      .mask = operand_address(&args->mask),
      .y = operand_address(&args->y),
      .x_row_stride = args->x.row_stride,
      .mask_row_stride = has_mask ? args->mask.row_stride : 0,
      .y_row_stride = args->y.row_stride,
      .rows = args->rows,
      .row_len = (int32_t)args->row_len,
      .scale = args->scale,
      .flags = has_mask ? KF_SOFTMAX_HAS_MASK : 0u,
      .dtypes = spec[SOFTMAX_X_DTYPE] << KF_SOFTMAX_DT_SHIFT_X | spec[SOFTMAX_MASK_DTYPE] << KF_SOFTMAX_DT_SHIFT_MASK |
                spec[SOFTMAX_Y_DTYPE] << KF_SOFTMAX_DT_SHIFT_Y,
  };
  return kf_vk_dispatch(ctx, pipeline, &params, sizeof params, capped(args->rows, ctx->max_workgroups_x), 1);
}

/* ---------------------------------------------------------------------------------------------
 * Copy (copy.comp): a compute shader moves the aligned body in 16-byte (or 4-byte) words, since
 * NVIDIA's vkCmdCopyBuffer reaches only ~20% of an H200's bandwidth (docs/BENCHMARKS.md). The head
 * bytes before the first aligned word and the tail after the last go through vkCmdCopyBuffer in the
 * same command (the three regions are disjoint, so they need no barrier between them); so does a copy
 * whose source and destination disagree modulo 4, or one too short to have a word.
 */
kf_status kf_vk_copy(kf_backend_context *ctx, kf_buffer *src, size_t src_offset, kf_buffer *dst, size_t dst_offset,
                     size_t bytes) {
  if (bytes == 0) return KF_OK;
  const uint64_t src_address = src->address + src_offset;
  const uint64_t dst_address = dst->address + dst_offset;
  /* Both addresses reach word alignment after the same number of head bytes iff they agree modulo
   * the word size. */
  uint64_t word = 0;
  if ((src_address - dst_address) % 16 == 0) word = 16;
  else if ((src_address - dst_address) % 4 == 0) word = 4;
  uint64_t head = word ? (word - dst_address % word) % word : bytes;
  if (head > bytes) head = bytes;
  const uint64_t words = word ? (bytes - head) / word : 0;
  const uint64_t tail = bytes - head - words * word;

  VkPipeline pipeline = VK_NULL_HANDLE;
  if (words > 0) {
    const uint32_t spec[1] = {(uint32_t)word};
    kf_status status = kf_vk_get_pipeline(ctx, KF_VK_KERNEL_COPY, spec, 1, &pipeline);
    if (status != KF_OK) return status;
  }
  kf_status status = kf_vk_stream_begin_command(ctx);
  if (status != KF_OK) return status;
  VkBufferCopy regions[2];
  uint32_t region_count = 0;
  const VkDeviceSize src_start = src->offset + src_offset, dst_start = dst->offset + dst_offset;
  if (words == 0) {
    regions[region_count++] = (VkBufferCopy){.srcOffset = src_start, .dstOffset = dst_start, .size = bytes};
  } else {
    if (head > 0) regions[region_count++] = (VkBufferCopy){.srcOffset = src_start, .dstOffset = dst_start, .size = head};
    if (tail > 0) {
      const uint64_t body_end = head + words * word;
      regions[region_count++] =
          (VkBufferCopy){.srcOffset = src_start + body_end, .dstOffset = dst_start + body_end, .size = tail};
    }
  }
  if (region_count > 0)
    ctx->fn.vkCmdCopyBuffer(kf_vk_stream_commands(ctx), src->buffer, dst->buffer, region_count, regions);
  if (words > 0) {
    struct kf_vk_copy_params params = {.src = src_address + head, .dst = dst_address + head, .words = (int64_t)words};
    const uint64_t per_group = (uint64_t)KF_VK_ELEMENTWISE_WORKGROUP * KF_VK_COPY_UNROLL;
    const uint64_t groups = (words + per_group - 1) / per_group;
    kf_vk_record_dispatch(ctx, pipeline, &params, sizeof params, capped((int64_t)groups, ctx->max_workgroups_x), 1);
  }
  return kf_vk_stream_command_recorded(ctx);
}

/* vulkan_gemm.c — GEMM on the Vulkan backend: C = epilogue(alpha op(A) op(B)) (kf_gemm_args).
 *
 * Two shaders share one push-constant block (kernels_src/vulkan/kf_vk_gemm_params.h):
 *  - gemm_coopmat.comp, for f16 A/B on devices with VK_NV_cooperative_matrix (NVIDIA): 16×16×16 f16
 *    tensor-core products with f32 accumulation;
 *  - gemm.comp everywhere else: a shared-memory tiled GEMM with exact f32 fmas. bf16 stays here even on
 *    NVIDIA, because NV cooperative matrices have no bf16 type and bf16 -> f16 is not exact (the
 *    exponent range of f16 is far narrower).
 * Both apply the whole epilogue (bias, SwiGLU pairing, beta C, residual, rounding into C's dtype) in
 * the shader, so a call is one dispatch.
 */
#include "backend_vulkan/vulkan_internal.h"
#include "kernels_src/common/kf_params.h"
#include "kernels_src/vulkan/kf_vk_gemm_params.h"

_Static_assert(sizeof(struct kf_vk_gemm_params) == 128, "kf_vk_gemm_params layout changed");

/* Specialization constants of gemm.comp. */
enum {
  TILED_AB_DTYPE,
  TILED_C_DTYPE,
  TILED_BIAS_DTYPE,
  TILED_RESIDUAL_DTYPE,
  TILED_HAS_BIAS,
  TILED_HAS_RESIDUAL,
  TILED_HAS_BETA,
  TILED_SWIGLU,
  TILED_TRANS_A,
  TILED_TRANS_B,
  TILED_TILE_M,
  TILED_TILE_N,
  TILED_TILE_K,
  TILED_THREAD_M,
  TILED_THREAD_N,
  TILED_WORKGROUP_SIZE,
  TILED_SPEC_COUNT
};

/* Specialization constants of gemm_coopmat.comp. */
enum {
  COOPMAT_C_DTYPE,
  COOPMAT_BIAS_DTYPE,
  COOPMAT_RESIDUAL_DTYPE,
  COOPMAT_HAS_BIAS,
  COOPMAT_HAS_RESIDUAL,
  COOPMAT_HAS_BETA,
  COOPMAT_SWIGLU,
  COOPMAT_TRANS_A,
  COOPMAT_TRANS_B,
  COOPMAT_ALIGNED,
  COOPMAT_TILE_M,
  COOPMAT_TILE_N,
  COOPMAT_TILE_K,
  COOPMAT_SUBGROUPS_M,
  COOPMAT_SUBGROUPS_N,
  COOPMAT_WORKGROUP_SIZE,
  COOPMAT_SPEC_COUNT
};

/* A tile shape of gemm.comp: the workgroup computes tile_m × tile_n of op(A) op(B) (SwiGLU: tile_n / 2
 * output columns), each of its (tile_m / thread_m) × (tile_n / thread_n) invocations a thread_m ×
 * thread_n register tile. All three use 256 invocations and at most 9 KiB of shared memory (the
 * guaranteed minimum is 16 KiB). */
typedef struct tiled_shape {
  uint32_t tile_m, tile_n, tile_k, thread_m, thread_n;
} tiled_shape;

/* Large C: 64 accumulators per invocation, 16 shared loads per 64 fmas. */
static const tiled_shape kTiledLarge = {128, 128, 8, 8, 8};
/* Fewer tiles than the device has workgroup slots: smaller tiles keep more of them busy. */
static const tiled_shape kTiledMedium = {64, 64, 16, 4, 4};
/* Decode shapes (m <= 16): one row per invocation, the workgroup spread along n. */
static const tiled_shape kTiledSkinny = {16, 128, 16, 1, 8};
#define KF_VK_GEMM_TILED_WORKGROUP 256u
/* Tiles (times batch entries) below which the large shape leaves workgroup slots idle on a big GPU
 * (132 SMs × 2 such workgroups each on an H200). */
#define KF_VK_GEMM_LARGE_TILES_MIN 256

/* The tile of gemm_coopmat.comp: 128 × 256 × 16 with 8 subgroups of 32 as 2 × 4, each computing
 * 64 × 64 of C (4 × 4 fragments of 16 × 16: 8 fragment loads from shared memory per 16 products).
 * Shared memory: two stages of A (128 × (16 + 8) f16) and B (256 × (16 + 8) f16 at most), 36 KiB —
 * under the 48 KiB NVIDIA's Vulkan driver allows a workgroup. Measured on the H200 at 4096³ f16: 122-133
 * TFLOP/s, against 99-104 for 128 × 128 × 32 (2 × 4 subgroups of 64 × 32), 119 for 128 × 128 × 32 with
 * 2 × 2 subgroups and 122-127 for 256 × 128 × 16 (4 × 2). */
#define KF_VK_COOPMAT_TILE_M 128u
#define KF_VK_COOPMAT_TILE_N 256u
#define KF_VK_COOPMAT_TILE_K 16u
#define KF_VK_COOPMAT_SUBGROUPS_M 2u
#define KF_VK_COOPMAT_SUBGROUPS_N 4u
/* NVIDIA's subgroup size, which the fragment layout above assumes (checked at context creation). */
#define KF_VK_COOPMAT_SUBGROUP 32u
/* 16-byte loads: 8 f16 values. */
#define KF_VK_COOPMAT_VECTOR 8

static uint64_t matrix_address(const kf_matrix_arg *arg) {
  if (arg->buffer == NULL) return 0;
  return arg->buffer->address + (uint64_t)arg->offset * kf_dtype_size(arg->dtype);
}

static uint32_t capped(int64_t groups, uint32_t limit) { return groups < (int64_t)limit ? (uint32_t)groups : limit; }

static int64_t ceil_div(int64_t x, int64_t y) { return (x + y - 1) / y; }

/* Whether every 8-element run starting at a multiple of 8 in a stored row of this f16 matrix starts
 * 16-byte aligned, in every batch entry. */
static int rows_vector_aligned(const kf_matrix_arg *arg) {
  return matrix_address(arg) % 16 == 0 && arg->ld % KF_VK_COOPMAT_VECTOR == 0 &&
         arg->batch_stride % KF_VK_COOPMAT_VECTOR == 0;
}

kf_status kf_vk_gemm(kf_backend_context *ctx, const kf_gemm_args *args) {
  const int has_bias = args->bias.buffer != NULL;
  const int has_residual = args->residual.buffer != NULL;
  const int swiglu = args->activation == KF_GEMM_SWIGLU;
  /* Leading dimensions and the bias layout travel as 32-bit values (kf_vk_gemm_params.h). */
  const int64_t bias_up_offset = swiglu && has_bias ? args->bias_up.offset - args->bias.offset : 0;
  if (args->a.ld > INT32_MAX || args->b.ld > INT32_MAX || args->c.ld > INT32_MAX || args->residual.ld > INT32_MAX ||
      args->bias.col_stride > INT32_MAX || bias_up_offset > INT32_MAX || bias_up_offset < 0)
    return kf_fail(KF_ERROR_UNSUPPORTED,
                   "GEMM on Vulkan: leading dimensions and bias strides above 2^31-1 elements are not supported");

  struct kf_vk_gemm_params params = {
      .a = matrix_address(&args->a),
      .b = matrix_address(&args->b),
      .b_up = swiglu ? matrix_address(&args->b_up) : 0,
      .bias = has_bias ? args->bias.buffer->address + (uint64_t)args->bias.offset * kf_dtype_size(args->bias.dtype) : 0,
      .c = matrix_address(&args->c),
      .residual = matrix_address(&args->residual),
      .a_batch_stride = args->a.batch_stride,
      .b_batch_stride = args->b.batch_stride,
      .c_batch_stride = args->c.batch_stride,
      .residual_batch_stride = has_residual ? args->residual.batch_stride : 0,
      .m = (int32_t)args->m,
      .n = (int32_t)args->n,
      .k = (int32_t)args->k,
      .batch = (int32_t)args->batch,
      .lda = (int32_t)args->a.ld,
      .ldb = (int32_t)args->b.ld,
      .ldc = (int32_t)args->c.ld,
      .ld_residual = has_residual ? (int32_t)args->residual.ld : 0,
      .bias_stride = has_bias ? (int32_t)args->bias.col_stride : 0,
      .bias_up_offset = (int32_t)bias_up_offset,
      .alpha = args->alpha,
      .beta = args->beta,
  };
  /* Absent operands get f32 so that unused combinations share a pipeline. */
  const uint32_t bias_dtype = has_bias ? (uint32_t)args->bias.dtype : KF_DT_F32;
  const uint32_t residual_dtype = has_residual ? (uint32_t)args->residual.dtype : KF_DT_F32;
  const uint32_t has_beta = args->beta != 0.0f;

  VkPipeline pipeline;
  kf_status status;
  int64_t tiles;
  if (ctx->has_nv_cooperative_matrix && args->a.dtype == KF_F16) {
    const int aligned = rows_vector_aligned(&args->a) && rows_vector_aligned(&args->b) &&
                        (!swiglu || rows_vector_aligned(&args->b_up));
    const uint32_t spec[COOPMAT_SPEC_COUNT] = {
        [COOPMAT_C_DTYPE] = (uint32_t)args->c.dtype,
        [COOPMAT_BIAS_DTYPE] = bias_dtype,
        [COOPMAT_RESIDUAL_DTYPE] = residual_dtype,
        [COOPMAT_HAS_BIAS] = (uint32_t)has_bias,
        [COOPMAT_HAS_RESIDUAL] = (uint32_t)has_residual,
        [COOPMAT_HAS_BETA] = has_beta,
        [COOPMAT_SWIGLU] = (uint32_t)swiglu,
        [COOPMAT_TRANS_A] = (uint32_t)(args->trans_a != 0),
        [COOPMAT_TRANS_B] = (uint32_t)(args->trans_b != 0),
        [COOPMAT_ALIGNED] = (uint32_t)aligned,
        [COOPMAT_TILE_M] = KF_VK_COOPMAT_TILE_M,
        [COOPMAT_TILE_N] = KF_VK_COOPMAT_TILE_N,
        [COOPMAT_TILE_K] = KF_VK_COOPMAT_TILE_K,
        [COOPMAT_SUBGROUPS_M] = KF_VK_COOPMAT_SUBGROUPS_M,
        [COOPMAT_SUBGROUPS_N] = KF_VK_COOPMAT_SUBGROUPS_N,
        [COOPMAT_WORKGROUP_SIZE] = KF_VK_COOPMAT_SUBGROUPS_M * KF_VK_COOPMAT_SUBGROUPS_N * KF_VK_COOPMAT_SUBGROUP,
    };
    status = kf_vk_get_pipeline(ctx, KF_VK_KERNEL_GEMM_COOPMAT, spec, COOPMAT_SPEC_COUNT, &pipeline);
    const int64_t out_tile_n = swiglu ? KF_VK_COOPMAT_TILE_N / 2 : KF_VK_COOPMAT_TILE_N;
    tiles = ceil_div(args->m, KF_VK_COOPMAT_TILE_M) * ceil_div(args->n, out_tile_n);
  } else {
    if (ctx->max_workgroup_invocations < KF_VK_GEMM_TILED_WORKGROUP)
      return kf_fail(KF_ERROR_UNSUPPORTED, "GEMM on Vulkan needs workgroups of %u invocations; the device allows %u",
                     KF_VK_GEMM_TILED_WORKGROUP, ctx->max_workgroup_invocations);
    const int64_t out_columns = swiglu ? 2 * args->n : args->n;
    const tiled_shape *shape = &kTiledMedium;
    if (args->m <= (int64_t)kTiledSkinny.tile_m)
      shape = &kTiledSkinny;
    else if (ceil_div(args->m, kTiledLarge.tile_m) * ceil_div(out_columns, kTiledLarge.tile_n) * args->batch >=
             KF_VK_GEMM_LARGE_TILES_MIN)
      shape = &kTiledLarge;
    const uint32_t spec[TILED_SPEC_COUNT] = {
        [TILED_AB_DTYPE] = (uint32_t)args->a.dtype,
        [TILED_C_DTYPE] = (uint32_t)args->c.dtype,
        [TILED_BIAS_DTYPE] = bias_dtype,
        [TILED_RESIDUAL_DTYPE] = residual_dtype,
        [TILED_HAS_BIAS] = (uint32_t)has_bias,
        [TILED_HAS_RESIDUAL] = (uint32_t)has_residual,
        [TILED_HAS_BETA] = has_beta,
        [TILED_SWIGLU] = (uint32_t)swiglu,
        [TILED_TRANS_A] = (uint32_t)(args->trans_a != 0),
        [TILED_TRANS_B] = (uint32_t)(args->trans_b != 0),
        [TILED_TILE_M] = shape->tile_m,
        [TILED_TILE_N] = shape->tile_n,
        [TILED_TILE_K] = shape->tile_k,
        [TILED_THREAD_M] = shape->thread_m,
        [TILED_THREAD_N] = shape->thread_n,
        [TILED_WORKGROUP_SIZE] = KF_VK_GEMM_TILED_WORKGROUP,
    };
    status = kf_vk_get_pipeline(ctx, KF_VK_KERNEL_GEMM, spec, TILED_SPEC_COUNT, &pipeline);
    const int64_t out_tile_n = swiglu ? shape->tile_n / 2 : shape->tile_n;
    tiles = ceil_div(args->m, shape->tile_m) * ceil_div(args->n, out_tile_n);
  }
  if (status != KF_OK) return status;
  /* x: output tiles, y: batch entries; the shaders loop over both beyond the dispatch limits. */
  return kf_vk_dispatch(ctx, pipeline, &params, sizeof params, capped(tiles, ctx->max_workgroups_x),
                        capped(args->batch, ctx->max_workgroups_y));
}

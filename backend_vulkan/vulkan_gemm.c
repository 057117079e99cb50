/* vulkan_gemm.c — GEMM on the Vulkan backend: C = epilogue(alpha op(A) op(B)) (kf_gemm_args).
 *
 * Two shaders share one push-constant block (kernels_src/vulkan/kf_vk_gemm_params.h):
 *  - gemm_coopmat.comp, for f16 A/B on devices with VK_NV_cooperative_matrix (NVIDIA): 16×16×16 f16
 *    tensor-core products with f32 accumulation;
 *  - gemm_skinny.comp for decode shapes (m <= 16 with B stored [n, k], nn.Linear weights) not taken
 *    by the coopmat shader: one pass over B, a team of invocations per output column;
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
/* Specialization constants of gemm_skinny.comp. */
enum {
  SKINNY_AB_DTYPE,
  SKINNY_C_DTYPE,
  SKINNY_BIAS_DTYPE,
  SKINNY_RESIDUAL_DTYPE,
  SKINNY_HAS_BIAS,
  SKINNY_HAS_RESIDUAL,
  SKINNY_HAS_BETA,
  SKINNY_SWIGLU,
  SKINNY_TRANS_A,
  SKINNY_VECTORIZED,
  SKINNY_SPEC_COUNT
};
_Static_assert(TILED_SPEC_COUNT <= KF_VK_MAX_SPEC_CONSTANTS && COOPMAT_SPEC_COUNT <= KF_VK_MAX_SPEC_CONSTANTS &&
                   SKINNY_SPEC_COUNT <= KF_VK_MAX_SPEC_CONSTANTS,
               "more specialization constants than kf_vk_get_pipeline takes");
/* gemm_skinny.comp's rows (m at most), output columns per workgroup, workgroup size and shared
 * memory (8 columns x 16 rows x 33 floats of partial sums). */
#define KF_VK_SKINNY_ROWS 16
#define KF_VK_SKINNY_COLUMNS 8
#define KF_VK_SKINNY_WORKGROUP 256u
#define KF_VK_SKINNY_SHARED_BYTES (8u * 16u * 33u * 4u)
/* Bits of COOPMAT_ALIGNED. */
#define KF_VK_COOPMAT_AB_ALIGNED 1u /* 16-byte loads of A and B */
#define KF_VK_COOPMAT_C_ALIGNED 2u  /* 16-byte stores of C */

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

/* A tile shape of gemm_coopmat.comp: the workgroup computes tile_m × tile_n of op(A) op(B) (SwiGLU:
 * tile_n / 2 output columns) with subgroups_m × subgroups_n subgroups, each a block of 16 × 16 f32
 * accumulator fragments. Shared memory: two stages of A and B slabs, rows padded by 16 bytes (see
 * coopmat_shared_bytes), at most the 48 KiB NVIDIA's Vulkan driver allows a workgroup. */
typedef struct coopmat_shape {
  uint32_t tile_m, tile_n, tile_k, subgroups_m, subgroups_n;
} coopmat_shape;

/* Large C: 8 subgroups of 64 × 64 (16 fragments each: 8 fragment loads per 16 products), 36 KiB.
 * H200, f16 with transposed B, TFLOP/s: 137 at 8192³, 131 at 4096 × 14336 × 4096 and 16384 × 4096 ×
 * 4096; at 8192³ 93 for 128 × 128 × 32 with 2 × 2 subgroups, 137 for 128 × 256 × 16 with 2 × 4. */
static const coopmat_shape kCoopmatLarge = {256, 128, 16, 4, 2};
/* Fewer large tiles than the device has workgroup slots: 4 subgroups of 64 × 64, 40 KiB (512 × 4096
 * × 4096: 90 TFLOP/s, against 46-51 for 128 × 64 × 32, 64 × 128 × 32 and 64 × 64 × 64). */
static const coopmat_shape kCoopmatMedium = {128, 128, 32, 2, 2};
/* Decode shapes (m <= 16): one 16-row fragment per subgroup, the workgroup spread along n (1 × 4096 ×
 * 4096: 0.051 ms, against 0.30 for the tiled shader's skinny shape). */
static const coopmat_shape kCoopmatSkinny = {16, 64, 64, 1, 4};
/* Large tiles (times batch entries) below which kCoopmatMedium is used: under about two waves of
 * the H200's 132 SMs, one large workgroup on each. */
#define KF_VK_COOPMAT_LARGE_TILES_MIN 256
/* NVIDIA's subgroup size, which the fragment layout above assumes (checked at context creation). */
#define KF_VK_COOPMAT_SUBGROUP 32u
/* 16-byte loads: 8 f16 values. */
#define KF_VK_COOPMAT_VECTOR 8

static uint32_t coopmat_workgroup(const coopmat_shape *shape) {
  return shape->subgroups_m * shape->subgroups_n * KF_VK_COOPMAT_SUBGROUP;
}

/* Shared memory of gemm_coopmat.comp with this shape (its smem array: the two stages, or the
 * epilogue's staging if larger), or 0 when the shape does not divide into whole fragments and whole
 * 16-byte runs per invocation, or SwiGLU cannot pair a subgroup's fragments. */
static uint32_t coopmat_shared_bytes(const coopmat_shape *shape, int trans_a, int trans_b, int swiglu) {
  const uint32_t workgroup = coopmat_workgroup(shape);
  const uint32_t a_rows = trans_a ? shape->tile_k : shape->tile_m, a_runs = (trans_a ? shape->tile_m : shape->tile_k) / 8;
  const uint32_t b_rows = trans_b ? shape->tile_n : shape->tile_k, b_runs = (trans_b ? shape->tile_k : shape->tile_n) / 8;
  if (shape->tile_m % (16 * shape->subgroups_m) || shape->tile_n % (16 * shape->subgroups_n) || shape->tile_k % 16 ||
      (a_rows * a_runs) % workgroup || (b_rows * b_runs) % workgroup ||
      (swiglu && (shape->tile_n / shape->subgroups_n) % 32))
    return 0;
  const uint32_t stages = 2 * 16 * (a_rows * (a_runs + 1) + b_rows * (b_runs + 1));
  const uint32_t staging = (swiglu ? 2 : 1) * 16 * 16 * 4 * (workgroup / KF_VK_COOPMAT_SUBGROUP);
  return stages > staging ? stages : staging;
}

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
  /* The coopmat shape for f16 A and B on NVIDIA, or NULL: the tiled shader. */
  const coopmat_shape *coop = NULL;
  if (ctx->use_nv_cooperative_matrix && args->a.dtype == KF_F16) {
    const int64_t out_columns = swiglu ? 2 * args->n : args->n;
    coop = &kCoopmatMedium;
    if (args->m <= (int64_t)kCoopmatSkinny.tile_m)
      coop = &kCoopmatSkinny;
    else if (ceil_div(args->m, kCoopmatLarge.tile_m) * ceil_div(out_columns, kCoopmatLarge.tile_n) * args->batch >=
             KF_VK_COOPMAT_LARGE_TILES_MIN)
      coop = &kCoopmatLarge;
    const uint32_t bytes = coopmat_shared_bytes(coop, args->trans_a != 0, args->trans_b != 0, swiglu);
    if (bytes == 0 || bytes > ctx->max_shared_memory_bytes || coopmat_workgroup(coop) > ctx->max_workgroup_invocations)
      coop = NULL; /* a device with less shared memory than NVIDIA's 48 KiB: the tiled shader */
  }
  /* Decode shapes the coopmat shader did not take: gemm_skinny.comp. */
  const int skinny = coop == NULL && args->m <= KF_VK_SKINNY_ROWS && args->trans_b && args->k > 0 &&
                     ctx->max_workgroup_invocations >= KF_VK_SKINNY_WORKGROUP &&
                     ctx->max_shared_memory_bytes >= KF_VK_SKINNY_SHARED_BYTES;
  if (skinny) {
    /* 16-byte loads: untransposed A, k and every row start of A and B (both halves with SwiGLU) a
     * multiple of 8 elements from a 16-byte aligned address. */
    const int vectorized = !args->trans_a && args->k % 8 == 0 && rows_vector_aligned(&args->a) &&
                           rows_vector_aligned(&args->b) && (!swiglu || rows_vector_aligned(&args->b_up));
    const uint32_t spec[SKINNY_SPEC_COUNT] = {
        [SKINNY_AB_DTYPE] = (uint32_t)args->a.dtype,
        [SKINNY_C_DTYPE] = (uint32_t)args->c.dtype,
        [SKINNY_BIAS_DTYPE] = bias_dtype,
        [SKINNY_RESIDUAL_DTYPE] = residual_dtype,
        [SKINNY_HAS_BIAS] = (uint32_t)has_bias,
        [SKINNY_HAS_RESIDUAL] = (uint32_t)has_residual,
        [SKINNY_HAS_BETA] = has_beta,
        [SKINNY_SWIGLU] = (uint32_t)swiglu,
        [SKINNY_TRANS_A] = (uint32_t)(args->trans_a != 0),
        [SKINNY_VECTORIZED] = (uint32_t)vectorized,
    };
    status = kf_vk_get_pipeline(ctx, KF_VK_KERNEL_GEMM_SKINNY, spec, SKINNY_SPEC_COUNT, &pipeline);
    tiles = ceil_div(args->n, KF_VK_SKINNY_COLUMNS);
  } else if (coop != NULL) {
    const int aligned = rows_vector_aligned(&args->a) && rows_vector_aligned(&args->b) &&
                        (!swiglu || rows_vector_aligned(&args->b_up));
    /* 8 outputs of a row start 16-byte aligned in every batch entry. */
    const int c_aligned = matrix_address(&args->c) % 16 == 0 && args->c.ld % KF_VK_COOPMAT_VECTOR == 0 &&
                          args->c.batch_stride % KF_VK_COOPMAT_VECTOR == 0;
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
        [COOPMAT_ALIGNED] = (aligned ? KF_VK_COOPMAT_AB_ALIGNED : 0u) | (c_aligned ? KF_VK_COOPMAT_C_ALIGNED : 0u),
        [COOPMAT_TILE_M] = coop->tile_m,
        [COOPMAT_TILE_N] = coop->tile_n,
        [COOPMAT_TILE_K] = coop->tile_k,
        [COOPMAT_SUBGROUPS_M] = coop->subgroups_m,
        [COOPMAT_SUBGROUPS_N] = coop->subgroups_n,
        [COOPMAT_WORKGROUP_SIZE] = coopmat_workgroup(coop),
    };
    status = kf_vk_get_pipeline(ctx, KF_VK_KERNEL_GEMM_COOPMAT, spec, COOPMAT_SPEC_COUNT, &pipeline);
    const int64_t out_tile_n = swiglu ? coop->tile_n / 2 : coop->tile_n;
    tiles = ceil_div(args->m, coop->tile_m) * ceil_div(args->n, out_tile_n);
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

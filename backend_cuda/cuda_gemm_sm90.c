/* cuda_gemm_sm90.c — the Hopper GEMM path (kernels_src/cuda/gemm_sm90.cu: TMA, wgmma, warp
 * specialization, persistent CTAs). Builds the TMA tensor maps of A and B on the host, fills the
 * parameter block and launches one CTA per SM (or per tile when there are fewer tiles).
 *
 * What the path takes: sm_90 devices; A and B both bf16, both f16, or both e4m3 with A [m, k] and B
 * [n, k] stored (FP8 wgmma reads K-major operands only); k >= 1 (a tensor map needs non-empty
 * dimensions); every A and B matrix as the TMA needs it: base address and leading dimension multiples
 * of 16 bytes, and batch strides too, each batch entry after the previous one. The rest goes to the
 * generic kernels (kf_cuda_gemm_sm90_supports returns 0). C goes through a tensor map too (the
 * kernel's TMA-store epilogue) when the epilogue reads neither C nor a residual and C is bf16, f16 or
 * f32 with TMA-aligned rows; otherwise the kernel stores it from registers.
 */
#include <stdio.h>

#include "backend_cuda/cuda_internal.h"
#include "kernels_src/common/kf_gemm_sm90_params.h"

#define TMA_ALIGN 16 /* bytes: global address and every stride of a tensor map */
#define TMA_STRIDE_LIMIT ((int64_t)1 << 40)
#define TENSOR_MAP_DATA_TYPE_FLOAT32 7 /* CU_TENSOR_MAP_DATA_TYPE_FLOAT32 of cuda.h (C of f32) */
#define TMA_BOX_BYTES 128              /* inner extent of a 128B-swizzled box */

static uint64_t matrix_address(const kf_matrix_arg *arg) {
  return arg->buffer->address + (uint64_t)(arg->offset * kf_cuda_element_size(arg->dtype));
}

static int batched(const kf_matrix_arg *arg, int64_t batch) { return batch > 1 && arg->batch_stride != 0; }

/* Whether a TMA tensor map can describe the stored matrix `arg` of `rows` rows (of ld elements). */
static int tma_describable(const kf_matrix_arg *arg, int64_t rows, int64_t batch) {
  const int64_t size = kf_cuda_element_size(arg->dtype);
  const int64_t row_bytes = arg->ld * size;
  if (matrix_address(arg) % TMA_ALIGN != 0 || row_bytes % TMA_ALIGN != 0 || row_bytes >= TMA_STRIDE_LIMIT) return 0;
  if (!batched(arg, batch)) return 1;
  const int64_t batch_bytes = arg->batch_stride * size;
  return batch_bytes % TMA_ALIGN == 0 && batch_bytes < TMA_STRIDE_LIMIT && arg->batch_stride >= arg->ld * rows;
}

static int tile_columns(const kf_gemm_args *args) {
  return args->activation == KF_GEMM_SWIGLU ? KF_SM90_TILE_N / 2 : KF_SM90_TILE_N;
}

int kf_cuda_gemm_sm90_supports(kf_backend_context *ctx, const kf_gemm_args *args) {
  int major = 0, minor = 0;
  if (kf_cu.DeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, ctx->device) != CUDA_SUCCESS ||
      kf_cu.DeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, ctx->device) != CUDA_SUCCESS)
    return 0;
  if (major != 9 || minor != 0) return 0; /* the kernels exist as sm_90a machine code only */
  const kf_dtype in = args->a.dtype;
  if (in != KF_BF16 && in != KF_F16 && in != KF_F8_E4M3) return 0;
  if (in == KF_F8_E4M3 && (args->trans_a || !args->trans_b)) return 0;
  if (args->k < 1) return 0;
  const int64_t tiles_m = (args->m + KF_SM90_TILE_M - 1) / KF_SM90_TILE_M;
  const int64_t tiles_n = (args->n + tile_columns(args) - 1) / tile_columns(args);
  if (tiles_m * tiles_n * args->batch > INT32_MAX) return 0;
  const int64_t a_rows = args->trans_a ? args->k : args->m;
  const int64_t b_rows = args->trans_b ? (args->activation == KF_GEMM_SWIGLU ? 2 * args->n : args->n) : args->k;
  if (!tma_describable(&args->a, a_rows, args->batch) || !tma_describable(&args->b, b_rows, args->batch)) return 0;
  if (args->activation == KF_GEMM_SWIGLU && !tma_describable(&args->b_up, b_rows, args->batch)) return 0;
  return 1;
}

size_t kf_cuda_gemm_sm90_workspace(kf_backend_context *ctx, const kf_gemm_args *args) {
  (void)ctx;
  (void)args;
  return 0;
}

/* A 3-D tensor map [batch][outer][inner] of the stored matrix `arg` (inner contiguous), boxes of
 * box_inner x box_outer elements, 128-byte swizzle, zero fill outside. Not batched: one batch entry. */
static kf_status encode_map(kf_tensor_map *out_map, const kf_matrix_arg *arg, int64_t inner, int64_t outer,
                            int64_t batch, unsigned box_inner, unsigned box_outer) {
  const int64_t size = kf_cuda_element_size(arg->dtype);
  const int is_batched = batched(arg, batch);
  const unsigned long long dims[3] = {(unsigned long long)inner, (unsigned long long)outer,
                                      (unsigned long long)(is_batched ? batch : 1)};
  /* Strides of dimensions 1 and 2 in bytes; one unbatched entry still needs a valid stride. */
  const unsigned long long strides[2] = {
      (unsigned long long)(arg->ld * size),
      (unsigned long long)((is_batched ? arg->batch_stride : arg->ld * outer) * size)};
  const unsigned box[3] = {box_inner, box_outer, 1};
  const unsigned element_strides[3] = {1, 1, 1};
  const int type = arg->dtype == KF_BF16  ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                   : arg->dtype == KF_F16 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16
                   : arg->dtype == KF_F32 ? TENSOR_MAP_DATA_TYPE_FLOAT32
                                          : CU_TENSOR_MAP_DATA_TYPE_UINT8;
  CUresult result = kf_cu.TensorMapEncodeTiled(
      (CUtensorMap *)out_map, type, 3, (void *)(uintptr_t)matrix_address(arg), dims, strides, box, element_strides,
      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (result != CUDA_SUCCESS)
    return kf_fail(KF_ERROR_DEVICE_FAILURE,
                   "cuTensorMapEncodeTiled(dims %lld x %lld x %lld, ld %lld) failed: %s", (long long)inner,
                   (long long)outer, (long long)dims[2], (long long)arg->ld, kf_cuda_error_text(result));
  return KF_OK;
}

/* The tensor map of one B half (all of op(B) without SwiGLU): N-major [k][n] stored, or K-major [n][k]. */
static kf_status encode_b(kf_tensor_map *out_map, const kf_matrix_arg *arg, const kf_gemm_args *args,
                          unsigned k_block) {
  if (args->trans_b)
    return encode_map(out_map, arg, args->k, args->n, args->batch, k_block, KF_SM90_TILE_N / 2);
  return encode_map(out_map, arg, args->n, args->k, args->batch, KF_SM90_MN_BOX, k_block);
}

static int pairs_aligned(const kf_matrix_arg *arg) {
  return matrix_address(arg) % (uint64_t)(2 * kf_cuda_element_size(arg->dtype)) == 0 && arg->ld % 2 == 0 &&
         arg->batch_stride % 2 == 0;
}

/* Whether the epilogue can store C through shared memory and the TMA: nothing read from C, and C a
 * matrix a tensor map describes. */
static int c_through_tma(const kf_gemm_args *args) {
  const kf_dtype dt = args->c.dtype;
  return args->residual.buffer == NULL && args->beta == 0.0f && (dt == KF_BF16 || dt == KF_F16 || dt == KF_F32) &&
         tma_describable(&args->c, args->m, args->batch);
}

kf_status kf_cuda_gemm_sm90(kf_backend_context *ctx, const kf_gemm_args *args) {
  const int swiglu = args->activation == KF_GEMM_SWIGLU;
  const int has_residual = args->residual.buffer != NULL;
  const int c_tma = c_through_tma(args);
  const unsigned k_block = KF_SM90_K_BLOCK_BYTES / (unsigned)kf_cuda_element_size(args->a.dtype);
  struct kf_gemm_sm90_params params = {0};
  kf_status status = kf_cuda_enter(ctx); /* cuTensorMapEncodeTiled needs the context current */
  if (status != KF_OK) return status;
  status = args->trans_a ? encode_map(&params.a, &args->a, args->m, args->k, args->batch, KF_SM90_MN_BOX, k_block)
                         : encode_map(&params.a, &args->a, args->k, args->m, args->batch, k_block, KF_SM90_TILE_M);
  if (status == KF_OK) status = encode_b(&params.b, &args->b, args, k_block);
  if (status == KF_OK) {
    if (swiglu)
      status = encode_b(&params.b_up, &args->b_up, args, k_block);
    else
      params.b_up = params.b; /* the tile's second half: the same map, b_up_column further right */
  }
  if (status == KF_OK && c_tma)
    status = encode_map(&params.c_map, &args->c, args->n, args->m, args->batch,
                        TMA_BOX_BYTES / (unsigned)kf_cuda_element_size(args->c.dtype), KF_SM90_C_BOX_ROWS);
  if (status != KF_OK) {
    kf_cuda_leave(ctx);
    return status;
  }

  params.c = matrix_address(&args->c);
  params.ldc = args->c.ld;
  params.c_batch_stride = args->c.batch_stride;
  if (has_residual) {
    params.residual = matrix_address(&args->residual);
    params.ld_residual = args->residual.ld;
    params.residual_batch_stride = args->residual.batch_stride;
  }
  if (kf_cuda_present(&args->bias)) {
    params.bias = kf_cuda_address(&args->bias);
    params.bias_up = swiglu ? kf_cuda_address(&args->bias_up) : 0;
    params.bias_stride = args->bias.col_stride;
  }
  params.m = (int32_t)args->m;
  params.n = (int32_t)args->n;
  params.k = (int32_t)args->k;
  params.batch = (int32_t)args->batch;
  params.tiles_m = (int32_t)((args->m + KF_SM90_TILE_M - 1) / KF_SM90_TILE_M);
  params.tiles_n = (int32_t)((args->n + tile_columns(args) - 1) / tile_columns(args));
  params.b_up_column = swiglu ? 0 : KF_SM90_TILE_N / 2;
  params.alpha = args->alpha;
  params.beta = args->beta;
  params.flags = (swiglu ? KF_SM90_SWIGLU : 0u) | (params.bias ? KF_SM90_HAS_BIAS : 0u) |
                 (has_residual ? KF_SM90_HAS_RESIDUAL : 0u) | (args->beta != 0.0f ? KF_SM90_READ_C : 0u) |
                 (pairs_aligned(&args->c) && (!has_residual || pairs_aligned(&args->residual)) ? KF_SM90_C_PAIRS : 0u) |
                 (batched(&args->a, args->batch) ? KF_SM90_A_BATCHED : 0u) |
                 (batched(&args->b, args->batch) ? KF_SM90_B_BATCHED : 0u) | (c_tma ? KF_SM90_C_TMA : 0u);
  params.dtypes = (uint32_t)args->c.dtype << KF_SM90_DT_SHIFT_C |
                  (uint32_t)(params.bias ? args->bias.dtype : 0) << KF_SM90_DT_SHIFT_BIAS |
                  (uint32_t)(has_residual ? args->residual.dtype : 0) << KF_SM90_DT_SHIFT_RESIDUAL;

  const int in = args->a.dtype == KF_BF16 ? 0 : args->a.dtype == KF_F16 ? 1 : 2;
  static const char *const in_names[3] = {"bf16", "f16", "e4m3"};
  char name[48];
  snprintf(name, sizeof name, "kf_gemm_sm90_%s_%c_%c", in_names[in], args->trans_a ? 'm' : 'k',
           args->trans_b ? 'k' : 'n');
  const int slot = in * 4 + args->trans_a * 2 + !args->trans_b;
  /* One cluster of KF_SM90_CLUSTER_M CTAs a work unit (that many row blocks of one column block), as
   * many clusters as fit on the SMs at once (clusters of 2 fill all 132 SMs of an H200: its GPCs hold
   * whole pairs) or one a unit when there are fewer. */
  const int64_t units = ((int64_t)params.tiles_m + KF_SM90_CLUSTER_M - 1) / KF_SM90_CLUSTER_M * params.tiles_n *
                        params.batch;
  const int64_t clusters = ctx->sm_count / KF_SM90_CLUSTER_M;
  const unsigned grid = (unsigned)((units < clusters ? units : clusters) * KF_SM90_CLUSTER_M);

  const int first_use = ctx->functions[KF_CUDA_MODULE_GEMM_SM90][slot] == NULL;
  CUfunction function;
  status = kf_cuda_function(ctx, KF_CUDA_MODULE_GEMM_SM90, slot, name, &function);
  if (status == KF_OK && first_use) {
    CUresult result =
        kf_cu.FuncSetAttribute(function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, KF_SM90_SHARED_BYTES);
    if (result != CUDA_SUCCESS)
      status = kf_fail(KF_ERROR_DEVICE_FAILURE, "cuFuncSetAttribute(%s, %d bytes of shared memory) failed: %s", name,
                       KF_SM90_SHARED_BYTES, kf_cuda_error_text(result));
  }
  if (status == KF_OK)
    status = kf_cuda_launch(ctx, function, name, grid, KF_SM90_THREADS, 1, KF_SM90_SHARED_BYTES, &params);
  kf_cuda_leave(ctx);
  return status;
}

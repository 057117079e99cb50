/* cuda_rmsnorm.c — chooses and launches the RMSNorm and LayerNorm kernels of
 * kernels_src/cuda/rmsnorm.cu (<op> = rmsnorm | layernorm; both ops share the kernel families and
 * plans, except RMSNorm's re-read path).
 *
 * Kernel families (the .cu file's header says how each works):
 *   register path  kf_<op>_<x>_<y>_c<C>[r]_<v|s>: rows up to C * blockDim.x * 8 elements ("r": with
 *                  the fused residual);
 *   re-read path   kf_<op>_<x>_<x>_c<C>l_v: x, y, weight and bias all f16 or all bf16, no residual,
 *                  rows of exactly C * blockDim.x packs, every operand aligned; the row is read
 *                  twice, the second time from cache (rmsnorm.cu's norm_reread);
 *   looping path   kf_<op>_<x>_<y>_loop_<v|s>: any row length (re-reads the row, from L2);
 *   any dtypes     kf_<op>_any_loop_<v|s>: residual / residual_out dtypes that differ from x, or an
 *                  (x, y) pair without a specialisation (kf_cuda_specialised_pair).
 * "v" kernels use 16-byte accesses and need every operand aligned; "s" kernels take any layout.
 */
#include <stdio.h>

#include "backend_cuda/cuda_internal.h"
#include "kernels_src/common/kf_params.h"

#define PACK_ELEMENTS KF_CUDA_PACK_ELEMENTS
#define VECTOR_BYTES KF_CUDA_VECTOR_BYTES
#define LOOP_THREADS 512  /* blockDim.x of the looping kernels, as in rmsnorm.cu */
/* Register-path block size when a row takes fewer threads: several rows per block keep blocks at a
 * size where the SM holds many of them (enough rows, and so bytes, in flight per SM). 128: a
 * 4096-wide bf16 row (128 threads) gets a block of its own; on the H200 that was never slower than
 * two rows per 256-thread block and faster for LayerNorm (16384x4096, one A/B of the same kernel:
 * 51.1% against 49.1% of copy), since a block's rows wait for each other at the reductions'
 * barriers. */
#define TARGET_BLOCK_THREADS 128
/* Rows per launch: keeps gridDim.x below 2^31 for any rows_per_block. */
#define MAX_ROWS_PER_LAUNCH ((int64_t)1 << 30)
/* Largest block of the re-read kernels: RMSNorm's (rmsnorm.cu's MAX_THREADS_REREAD) and
 * LayerNorm's (MAX_THREADS_LN_REREAD). */
#define MAX_REREAD_THREADS 1024
#define MAX_LN_REREAD_THREADS 256

/* Largest block for each chunk count (rmsnorm.cu's __launch_bounds__). */
static int max_threads_for_chunks(int chunks) {
  switch (chunks) {
    case 1:
    case 2:
      return 1024;
    case 4:
      return 512;
    default:
      return 0;
  }
}

#define element_size kf_cuda_element_size
#define present kf_cuda_present
#define device_address kf_cuda_address

/* x, residual and residual_out share one dtype and (x, y) is specialised: the kernels specialised on
 * (x, y) dtypes apply. */
static int fixed_dtypes(const kf_norm_args *args) {
  return kf_cuda_specialised_pair(args->x.dtype, args->y.dtype) &&
         (!present(&args->residual) ||
          (args->residual.dtype == args->x.dtype && args->residual_out.dtype == args->x.dtype));
}

static int row_operand_aligned(const kf_tensor_arg *arg, int64_t rows) {
  if (!present(arg)) return 1;
  if (device_address(arg) % VECTOR_BYTES != 0) return 0;
  return rows == 1 || (arg->row_stride * element_size(arg->dtype)) % VECTOR_BYTES == 0;
}

static int column_operand_aligned(const kf_tensor_arg *arg) {
  return !present(arg) || (arg->col_stride == 1 && device_address(arg) % VECTOR_BYTES == 0);
}

static int vectorizable(const kf_norm_args *args) {
  return args->row_len % PACK_ELEMENTS == 0 && row_operand_aligned(&args->x, args->rows) &&
         row_operand_aligned(&args->y, args->rows) && row_operand_aligned(&args->residual, args->rows) &&
         row_operand_aligned(&args->residual_out, args->rows) && column_operand_aligned(&args->weight) &&
         column_operand_aligned(&args->bias);
}

static int64_t packs_per_row(const kf_norm_args *args) { return (args->row_len + PACK_ELEMENTS - 1) / PACK_ELEMENTS; }

/* The re-read path's chunk count for `packs` packs a row (every thread of whole warps holds exactly
 * that many), or 0.
 * RMSNorm: 2 packs a thread first (512 threads for 8192 elements, the shape measured on the H200:
 * 97.8% of copy in kfbench); 1 pack a thread for rows whose pack count is an odd multiple of 32.
 * LayerNorm: 4 packs a thread and a power-of-two count of warps (its statistics merge pairwise:
 * rmsnorm.cu's chan_merge_row), at most 256 threads: rows of 2048, 4096 or 8192 elements. */
static int reread_chunks(int center, int64_t packs) {
  if (center) {
    const int64_t warps = packs / (4 * 32);
    return packs % (4 * 32) == 0 && warps <= MAX_LN_REREAD_THREADS / 32 && (warps & (warps - 1)) == 0 ? 4 : 0;
  }
  if (packs % 64 == 0 && packs / 2 <= MAX_REREAD_THREADS) return 2;
  if (packs % 32 == 0 && packs <= MAX_REREAD_THREADS) return 1;
  return 0;
}

/* Operands the re-read kernels take: x, y, weight and bias all f16 or all bf16, no residual,
 * every operand aligned for 16-byte access. */
static int reread_operands(const kf_norm_args *args) {
  const kf_dtype dt = args->x.dtype;
  return (dt == KF_F16 || dt == KF_BF16) && args->y.dtype == dt && !present(&args->residual) &&
         (!present(&args->weight) || args->weight.dtype == dt) && (!present(&args->bias) || args->bias.dtype == dt) &&
         vectorizable(args);
}

static void norm_plan(int center, const kf_norm_args *args, kf_cuda_norm_plan *out_plan) {
  const int64_t packs = packs_per_row(args);
  kf_cuda_norm_plan plan = {.chunks = 0, .threads_per_row = LOOP_THREADS, .rows_per_block = 1,
                            .vectorized = vectorizable(args), .reread = 0};
  /* Rows past 128 packs (1024 f16/bf16 elements): the re-read blocks have at least 64 threads, one
   * row each. */
  const int reread = reread_operands(args) && packs > 4 * 32 ? reread_chunks(center, packs) : 0;
  if (reread > 0) {
    plan.chunks = reread;
    plan.threads_per_row = (int)(packs / reread);
    plan.reread = 1;
  } else if (fixed_dtypes(args)) {
    if (packs <= 4 * 32) {
      /* Rows up to 1024 elements: one warp per row, reduced with shuffles alone. */
      plan.chunks = packs <= 32 ? 1 : packs <= 64 ? 2 : 4;
      plan.threads_per_row = 32;
    } else if (packs <= 4 * (int64_t)max_threads_for_chunks(4)) {
      /* Up to 16384 elements: 4 packs per thread (4 loads in flight per operand per thread) and as
       * many warps as that takes. 8192 bf16 elements: 256 threads. */
      plan.chunks = 4;
      plan.threads_per_row = (int)((packs + 4 * 32 - 1) / (4 * 32)) * 32;
    }
    if (plan.chunks > 0 && plan.threads_per_row < TARGET_BLOCK_THREADS)
      plan.rows_per_block = TARGET_BLOCK_THREADS / plan.threads_per_row;
  }
  *out_plan = plan;
}

void kf_cuda_rmsnorm_plan(const kf_norm_args *args, kf_cuda_norm_plan *out_plan) { norm_plan(0, args, out_plan); }

void kf_cuda_layernorm_plan(const kf_norm_args *args, kf_cuda_norm_plan *out_plan) { norm_plan(1, args, out_plan); }

/* Function-cache slot of a kernel: (op, dtype combination, family, v|s), family = chunk count and
 * residual or not for the register path (0-5), the looping kernel (6) or chunk count for the re-read
 * path (7-9: 1, 2 for RMSNorm, 4 for LayerNorm): 2 * 10 * 10 * 2 = 400 slots (KF_CUDA_FUNCTION_SLOTS). */
static int function_slot(int center, const kf_norm_args *args, const kf_cuda_norm_plan *plan) {
  const int dtypes = fixed_dtypes(args) ? (int)args->x.dtype * 3 + (int)args->y.dtype : 9;
  const int chunk_family = plan->chunks == 1 ? 0 : plan->chunks == 2 ? 1 : plan->chunks == 4 ? 2 : 3;
  const int family = chunk_family == 3 ? 6
                     : plan->reread  ? 7 + chunk_family
                                     : chunk_family * 2 + (present(&args->residual) ? 1 : 0);
  return ((center * 10 + dtypes) * 10 + family) * 2 + (plan->vectorized ? 1 : 0);
}

static void kernel_name(int center, const kf_norm_args *args, const kf_cuda_norm_plan *plan, char *name, size_t size) {
  const char access = plan->vectorized ? 'v' : 's';
  const char *op = center ? "layernorm" : "rmsnorm";
  if (!fixed_dtypes(args))
    snprintf(name, size, "kf_%s_any_loop_%c", op, access);
  else if (plan->chunks == 0)
    snprintf(name, size, "kf_%s_%s_%s_loop_%c", op, kf_cuda_dtype_name(args->x.dtype),
             kf_cuda_dtype_name(args->y.dtype), access);
  else
    snprintf(name, size, "kf_%s_%s_%s_c%d%s_%c", op, kf_cuda_dtype_name(args->x.dtype),
             kf_cuda_dtype_name(args->y.dtype), plan->chunks,
             plan->reread ? "l" : present(&args->residual) ? "r" : "", access);
}

static uint32_t dtype_bits(const kf_tensor_arg *arg, int shift) {
  return present(arg) ? (uint32_t)arg->dtype << shift : 0u;
}

static kf_status run_norm(kf_backend_context *ctx, int center, const kf_norm_args *args,
                          const kf_cuda_norm_plan *plan) {
  if (args->weight.col_stride > INT32_MAX || args->bias.col_stride > INT32_MAX)
    return kf_fail(KF_ERROR_UNSUPPORTED, "weight/bias element strides above 2^31 - 1 are not supported by CUDA");
  struct kf_norm_params params = {
      .x = device_address(&args->x),
      .residual = device_address(&args->residual),
      .residual_out = device_address(&args->residual_out),
      .weight = device_address(&args->weight),
      .bias = device_address(&args->bias),
      .y = device_address(&args->y),
      .x_row_stride = args->x.row_stride,
      .residual_row_stride = args->residual.row_stride,
      .residual_out_row_stride = args->residual_out.row_stride,
      .y_row_stride = args->y.row_stride,
      .row_len = (int32_t)args->row_len,
      .weight_stride = (int32_t)args->weight.col_stride,
      .bias_stride = (int32_t)args->bias.col_stride,
      .eps = args->eps,
      .flags = (present(&args->weight) ? KF_NORM_HAS_WEIGHT : 0u) | (present(&args->bias) ? KF_NORM_HAS_BIAS : 0u) |
               (present(&args->residual) ? KF_NORM_HAS_RESIDUAL : 0u),
      .dtypes = dtype_bits(&args->x, KF_NORM_DT_SHIFT_X) | dtype_bits(&args->residual, KF_NORM_DT_SHIFT_RESIDUAL) |
                dtype_bits(&args->residual_out, KF_NORM_DT_SHIFT_RESIDUAL_OUT) |
                dtype_bits(&args->weight, KF_NORM_DT_SHIFT_WEIGHT) | dtype_bits(&args->bias, KF_NORM_DT_SHIFT_BIAS) |
                dtype_bits(&args->y, KF_NORM_DT_SHIFT_Y),
  };
  char name[64];
  kernel_name(center, args, plan, name, sizeof name);

  kf_status status = kf_cuda_enter(ctx);
  if (status != KF_OK) return status;
  CUfunction function;
  status = kf_cuda_function(ctx, KF_CUDA_MODULE_NORM, function_slot(center, args, plan), name, &function);
  for (int64_t first = 0; status == KF_OK && first < args->rows; first += MAX_ROWS_PER_LAUNCH) {
    const int64_t rows = args->rows - first < MAX_ROWS_PER_LAUNCH ? args->rows - first : MAX_ROWS_PER_LAUNCH;
    struct kf_norm_params slice = params;
    slice.rows = rows;
    slice.x += (uint64_t)(first * args->x.row_stride * element_size(args->x.dtype));
    slice.y += (uint64_t)(first * args->y.row_stride * element_size(args->y.dtype));
    if (present(&args->residual)) {
      slice.residual += (uint64_t)(first * args->residual.row_stride * element_size(args->residual.dtype));
      slice.residual_out +=
          (uint64_t)(first * args->residual_out.row_stride * element_size(args->residual_out.dtype));
    }
    const unsigned grid = (unsigned)((rows + plan->rows_per_block - 1) / plan->rows_per_block);
    status = kf_cuda_launch(ctx, function, name, grid, (unsigned)plan->threads_per_row,
                            (unsigned)plan->rows_per_block, 0, &slice);
  }
  kf_cuda_leave(ctx);
  return status;
}

kf_status kf_cuda_rmsnorm(kf_backend_context *ctx, const kf_norm_args *args) {
  kf_cuda_norm_plan plan;
  kf_cuda_rmsnorm_plan(args, &plan);
  return run_norm(ctx, 0, args, &plan);
}

kf_status kf_cuda_layernorm(kf_backend_context *ctx, const kf_norm_args *args) {
  kf_cuda_norm_plan plan;
  kf_cuda_layernorm_plan(args, &plan);
  return run_norm(ctx, 1, args, &plan);
}

/* cuda_gemm.c — the CUDA GEMM entry: hands sm_90 calls to the Hopper path (cuda_gemm_sm90.c) unless
 * KF_CUDA_FORCE_GENERIC=1, and plans and launches the generic kernels of kernels_src/cuda/gemm.cu
 * otherwise: the tensor-core kernel for f16/bf16/e4m3 (and f32 when TF32 is allowed), the exact f32
 * SIMT kernel, and split-K with kf_gemm_finish_splits when the output tiles alone cannot fill the GPU
 * (decode shapes). */
#include <stdio.h>

#include "backend_cuda/cuda_internal.h"
#include "kernels_src/common/kf_cuda_gemm_params.h"

/* Tile shapes of gemm.cu (LARGE_*, SMALL_*, SIMT_*, STAGES, TILE_K_BYTES, FINISH_THREADS). */
#define LARGE_TILE_M 128
#define SMALL_TILE_M 16
#define TC_TILE_N 256
#define LARGE_THREADS 256
#define SMALL_THREADS 128
#define TC_STAGES 4
#define TC_TILE_K_BYTES 64
#define SIMT_TILE 128
#define SIMT_THREADS 256
#define FINISH_THREADS 256
/* Rows up to which the small (decode) tile is used: its blocks read B once per 16 rows. */
#define SMALL_TILE_MAX_M 16
/* Blocks resident per SM (registers and shared memory of each kernel): what split-K aims to fill. */
#define LARGE_BLOCKS_PER_SM 1
#define SMALL_BLOCKS_PER_SM 3
#define SIMT_BLOCKS_PER_SM 1
/* Split-K granule: a multiple of every kernel's k tile (64 e4m3, 32 f16/bf16, 16 tf32, 8 SIMT). */
#define SPLIT_K_UNIT 64
/* Each split covers at least this many granules, so its pipeline runs long past the prologue. */
#define SPLIT_K_MIN_UNITS 4
#define SPLIT_K_MAX_WORKSPACE ((size_t)256 << 20)
#define MAX_GRID_X 0x7fffffffu

/* Function slots in the GEMM module: tensor-core kernels by (input, tile, modes), then the rest. */
enum { TC_INPUTS = 4, TC_TILES = 2, TC_MODES = 5 };
#define SLOT_SIMT (TC_INPUTS * TC_TILES * TC_MODES)
#define SLOT_FINISH (SLOT_SIMT + 1)

typedef enum gemm_kernel { KERNEL_LARGE, KERNEL_SMALL, KERNEL_SIMT } gemm_kernel;
/* Operand modes of gemm.cu, by name letter: cp.async k-contiguous, cp.async m/n-contiguous, scalar. */
static const char *const mode_names[TC_MODES] = {"kk", "km", "mk", "mm", "ss"};

typedef struct gemm_plan {
  gemm_kernel kernel;
  int input;  /* 0 f16, 1 bf16, 2 e4m3, 3 tf32 (tensor-core kernels) */
  int modes;  /* index into mode_names */
  int tile_m, tile_n_out, threads;
  unsigned shared_bytes;
  int tiles_m, tiles_n;
  int splits, k_per_split;
} gemm_plan;

static int aligned16(const kf_matrix_arg *arg, int64_t element_bytes) {
  const uint64_t address = arg->buffer->address + (uint64_t)(arg->offset * element_bytes);
  return address % 16 == 0 && (arg->ld * element_bytes) % 16 == 0 && (arg->batch_stride * element_bytes) % 16 == 0;
}

static int ceil_div(int64_t a, int64_t b) { return (int)((a + b - 1) / b); }

static void make_plan(const kf_backend_context *ctx, const kf_gemm_args *args, gemm_plan *plan) {
  const kf_dtype in = args->a.dtype;
  const int64_t element_bytes = kf_cuda_element_size(in);
  const int swiglu = args->activation == KF_GEMM_SWIGLU;
  int blocks_per_sm;
  if (in == KF_F32 && !args->allow_tf32) {
    plan->kernel = KERNEL_SIMT;
    plan->input = plan->modes = 0;
    plan->tile_m = SIMT_TILE;
    plan->tile_n_out = swiglu ? SIMT_TILE / 2 : SIMT_TILE;
    plan->threads = SIMT_THREADS;
    plan->shared_bytes = 0; /* static */
    blocks_per_sm = SIMT_BLOCKS_PER_SM;
  } else {
    plan->input = in == KF_F16 ? 0 : in == KF_BF16 ? 1 : in == KF_F8_E4M3 ? 2 : 3;
    const int sixteen_bit = in == KF_F16 || in == KF_BF16;
    plan->kernel = sixteen_bit && args->m <= SMALL_TILE_MAX_M ? KERNEL_SMALL : KERNEL_LARGE;
    /* An operand goes through cp.async when 16-byte aligned; k-contiguous when A is not transposed
     * and B is; the m/n-contiguous form exists for 16-bit inputs. Otherwise both take the scalar path. */
    const int a_async = aligned16(&args->a, element_bytes);
    const int b_async = aligned16(&args->b, element_bytes) && (!swiglu || aligned16(&args->b_up, element_bytes));
    const int a_k = !args->trans_a, b_k = args->trans_b;
    if (!a_async || !b_async || (!sixteen_bit && !(a_k && b_k)))
      plan->modes = 4;
    else
      plan->modes = (a_k ? 0 : 2) + (b_k ? 0 : 1);
    plan->tile_m = plan->kernel == KERNEL_SMALL ? SMALL_TILE_M : LARGE_TILE_M;
    plan->tile_n_out = swiglu ? TC_TILE_N / 2 : TC_TILE_N;
    plan->threads = plan->kernel == KERNEL_SMALL ? SMALL_THREADS : LARGE_THREADS;
    plan->shared_bytes = (unsigned)(TC_STAGES * (plan->tile_m + TC_TILE_N) * TC_TILE_K_BYTES);
    blocks_per_sm = plan->kernel == KERNEL_SMALL ? SMALL_BLOCKS_PER_SM : LARGE_BLOCKS_PER_SM;
  }
  plan->tiles_m = ceil_div(args->m, plan->tile_m);
  plan->tiles_n = ceil_div(args->n, plan->tile_n_out);

  /* Split-K when one wave of output tiles leaves SMs idle: as many splits as fit in one wave of
   * resident blocks, each at least SPLIT_K_MIN_UNITS granules long, within the workspace cap. */
  plan->splits = 1;
  plan->k_per_split = (int)(args->k > 0 ? args->k : 1);
  const int64_t blocks = args->batch * plan->tiles_m * plan->tiles_n;
  const int64_t units = (args->k + SPLIT_K_UNIT - 1) / SPLIT_K_UNIT;
  const int64_t capacity = (int64_t)ctx->sm_count * blocks_per_sm;
  int64_t splits = blocks < capacity ? capacity / blocks : 1;
  if (splits > units / SPLIT_K_MIN_UNITS) splits = units / SPLIT_K_MIN_UNITS;
  const size_t sums_bytes = (size_t)args->batch * (size_t)args->m * (size_t)args->n * (swiglu ? 2u : 1u) * sizeof(float);
  while (splits > 1 && sums_bytes * (size_t)splits > SPLIT_K_MAX_WORKSPACE) --splits;
  if (splits > 1) {
    const int64_t units_per_split = (units + splits - 1) / splits;
    plan->k_per_split = (int)(units_per_split * SPLIT_K_UNIT);
    plan->splits = ceil_div(args->k, plan->k_per_split); /* no empty split */
  }
}

static size_t plan_workspace(const kf_gemm_args *args, const gemm_plan *plan) {
  if (plan->splits <= 1) return 0;
  return (size_t)plan->splits * (size_t)args->batch * (size_t)args->m * (size_t)args->n *
         (args->activation == KF_GEMM_SWIGLU ? 2u : 1u) * sizeof(float);
}

static int use_hopper_path(kf_backend_context *ctx, const kf_gemm_args *args) {
  return !kf_env_flag("KF_CUDA_FORCE_GENERIC") && kf_cuda_gemm_sm90_supports(ctx, args);
}

size_t kf_cuda_gemm_workspace(kf_backend_context *ctx, const kf_gemm_args *args) {
  if (use_hopper_path(ctx, args)) return kf_cuda_gemm_sm90_workspace(ctx, args);
  gemm_plan plan;
  make_plan(ctx, args, &plan);
  return plan_workspace(args, &plan);
}

/* The function for `slot`, with its dynamic shared-memory limit raised on first lookup. */
static kf_status gemm_function(kf_backend_context *ctx, int slot, const char *name, unsigned shared_bytes,
                               CUfunction *out_function) {
  const int first_use = ctx->functions[KF_CUDA_MODULE_GEMM][slot] == NULL;
  kf_status status = kf_cuda_function(ctx, KF_CUDA_MODULE_GEMM, slot, name, out_function);
  if (status != KF_OK || !first_use || shared_bytes <= 48u * 1024u) return status;
  CUresult result =
      kf_cu.FuncSetAttribute(*out_function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)shared_bytes);
  if (result != CUDA_SUCCESS) {
    ctx->functions[KF_CUDA_MODULE_GEMM][slot] = NULL; /* retried (and reported) on the next call */
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "cuFuncSetAttribute(%s, %u bytes of shared memory) failed: %s", name,
                   shared_bytes, kf_cuda_error_text(result));
  }
  return KF_OK;
}

static uint64_t matrix_address(const kf_matrix_arg *arg) {
  return arg->buffer ? arg->buffer->address + (uint64_t)(arg->offset * kf_cuda_element_size(arg->dtype)) : 0;
}

kf_status kf_cuda_gemm(kf_backend_context *ctx, const kf_gemm_args *args) {
  if (use_hopper_path(ctx, args)) return kf_cuda_gemm_sm90(ctx, args);
  gemm_plan plan;
  make_plan(ctx, args, &plan);
  const int swiglu = args->activation == KF_GEMM_SWIGLU;
  const int has_bias = kf_cuda_present(&args->bias), has_residual = args->residual.buffer != NULL;
  const int64_t c_bytes = kf_cuda_element_size(args->c.dtype);
  const uint64_t c_address = matrix_address(&args->c);
  const int c_pairs = c_address % (uint64_t)(2 * c_bytes) == 0 && args->c.ld % 2 == 0 && args->c.batch_stride % 2 == 0;

  struct kf_cuda_gemm_params params = {
      .a = matrix_address(&args->a),
      .b = matrix_address(&args->b),
      .b_up = swiglu ? matrix_address(&args->b_up) : 0,
      .bias = kf_cuda_address(&args->bias),
      .bias_up = swiglu ? kf_cuda_address(&args->bias_up) : 0,
      .c = c_address,
      .residual = matrix_address(&args->residual),
      .workspace = args->workspace ? args->workspace->address : 0,
      .lda = args->a.ld,
      .ldb = args->b.ld,
      .ldc = args->c.ld,
      .ld_residual = has_residual ? args->residual.ld : 0,
      .batch_stride_a = args->a.batch_stride,
      .batch_stride_b = args->b.batch_stride,
      .batch_stride_c = args->c.batch_stride,
      .batch_stride_residual = has_residual ? args->residual.batch_stride : 0,
      .bias_stride = has_bias ? args->bias.col_stride : 0,
      .m = (int32_t)args->m,
      .n = (int32_t)args->n,
      .k = (int32_t)args->k,
      .trans_a = args->trans_a,
      .trans_b = args->trans_b,
      .splits = plan.splits,
      .k_per_split = plan.k_per_split,
      .tiles_m = plan.tiles_m,
      .tiles_n = plan.tiles_n,
      .alpha = args->alpha,
      .beta = args->beta,
      .flags = (has_bias ? KF_GEMM_HAS_BIAS : 0u) | (has_residual ? KF_GEMM_HAS_RESIDUAL : 0u) |
               (swiglu ? KF_GEMM_SWIGLU_PAIRS : 0u) | (args->beta != 0.0f ? KF_GEMM_READ_C : 0u) |
               (c_pairs ? KF_GEMM_C_PAIRS : 0u),
      .dtypes = (uint32_t)args->c.dtype << KF_GEMM_DT_SHIFT_C |
                (has_bias ? (uint32_t)args->bias.dtype << KF_GEMM_DT_SHIFT_BIAS : 0u) |
                (has_residual ? (uint32_t)args->residual.dtype << KF_GEMM_DT_SHIFT_RESIDUAL : 0u),
  };

  char name[64];
  int slot;
  if (plan.kernel == KERNEL_SIMT) {
    snprintf(name, sizeof name, "kf_gemm_f32_simt");
    slot = SLOT_SIMT;
  } else {
    static const char *const input_names[TC_INPUTS] = {"f16", "bf16", "e4m3", "tf32"};
    snprintf(name, sizeof name, "kf_gemm_%s_%s_%s", input_names[plan.input],
             plan.kernel == KERNEL_SMALL ? "small" : "large", mode_names[plan.modes]);
    slot = (plan.input * TC_TILES + (plan.kernel == KERNEL_SMALL)) * TC_MODES + plan.modes;
  }
  kf_status status = kf_cuda_enter(ctx);
  if (status != KF_OK) return status;
  CUfunction function, finish = NULL;
  status = gemm_function(ctx, slot, name, plan.shared_bytes, &function);
  if (status == KF_OK && plan.splits > 1)
    status = gemm_function(ctx, SLOT_FINISH, "kf_gemm_finish_splits", 0, &finish);

  /* Batch entries per launch so the 1-D grid stays below 2^31 blocks. */
  const int64_t blocks_per_entry = (int64_t)plan.splits * plan.tiles_m * plan.tiles_n;
  const int64_t finish_per_entry = (args->m * args->n + FINISH_THREADS - 1) / FINISH_THREADS;
  int64_t entries_per_launch = MAX_GRID_X / blocks_per_entry;
  if (plan.splits > 1 && MAX_GRID_X / finish_per_entry < entries_per_launch)
    entries_per_launch = MAX_GRID_X / finish_per_entry;
  for (int64_t first = 0; status == KF_OK && first < args->batch; first += entries_per_launch) {
    const int64_t entries = args->batch - first < entries_per_launch ? args->batch - first : entries_per_launch;
    struct kf_cuda_gemm_params slice = params;
    slice.batch = (int32_t)entries;
    slice.a += (uint64_t)(first * args->a.batch_stride * kf_cuda_element_size(args->a.dtype));
    slice.b += (uint64_t)(first * args->b.batch_stride * kf_cuda_element_size(args->b.dtype));
    if (swiglu) slice.b_up += (uint64_t)(first * args->b.batch_stride * kf_cuda_element_size(args->b.dtype));
    slice.c += (uint64_t)(first * args->c.batch_stride * c_bytes);
    if (has_residual)
      slice.residual += (uint64_t)(first * args->residual.batch_stride * kf_cuda_element_size(args->residual.dtype));
    status = kf_cuda_launch(ctx, function, name, (unsigned)(entries * blocks_per_entry), (unsigned)plan.threads, 1,
                            plan.shared_bytes, &slice);
    /* The workspace holds one launch's sums; the finishing kernel runs before the next launch reuses it
     * (same stream). */
    if (status == KF_OK && plan.splits > 1)
      status = kf_cuda_launch(ctx, finish, "kf_gemm_finish_splits", (unsigned)(entries * finish_per_entry),
                              FINISH_THREADS, 1, 0, &slice);
  }
  kf_cuda_leave(ctx);
  return status;
}

/* cuda_gemm.c — the CUDA GEMM entry: hands sm_90 calls to the Hopper path (cuda_gemm_sm90.c) unless
 * KF_CUDA_FORCE_GENERIC=1, and plans and launches the generic kernels of kernels_src/cuda/gemm.cu
 * otherwise: the tensor-core kernel for f16/bf16/e4m3 (and f32 when TF32 is allowed), the decode
 * kernel for f16/bf16 with m <= 16 and nn.Linear-shaped operands, the exact f32 SIMT kernel, and
 * split-K with kf_gemm_finish_splits when the output tiles alone cannot fill the GPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cuda/cuda_internal.h"
#include "kernels_src/common/kf_cuda_gemm_params.h"

/* Tile shapes of gemm.cu (LARGE_*, SMALL_*, DECODE_*, SIMT_*, FINISH_THREADS). */
#define LARGE_TILE_M 128
#define SMALL_TILE_M 16
#define TC_TILE_N 256
#define LARGE_THREADS 256
/* sm_90a machine code of the large tile's cp.async modes for f16/bf16/tf32 (gemm_tensor_core_ws): the
 * 8 compute warps plus a warpgroup of copy warps. */
#define LARGE_THREADS_SM90_COPY_WARPS 384
#define SMALL_THREADS 128
#define LARGE_WARPS_M 2
#define LARGE_STAGES 4
#define SMALL_STAGES 4
/* k bytes per stage of the large tile: 128 in the sm_90a machine code, which compute capability 9.0
 * runs, 64 in the sm_80 code and PTX that every other GPU runs. */
#define LARGE_K_BYTES_SM90 128
#define LARGE_K_BYTES 64
#define SMALL_K_BYTES 64
/* The epilogue's f32 stash (gemm.cu STASH_LD = tile n + 8) reuses the stages: the whole tile when they
 * hold it, else one warp row of the tile (LARGE_WARPS_M passes). */
#define TC_STASH_BYTES(rows) ((unsigned)(rows) * (TC_TILE_N + 8u) * 4u)
/* cp.async modes address a tile with 32-bit offsets from its first row (gemm.cu operand_source):
 * operands whose rows are this far apart or more take the scalar mode. */
#define TC_MAX_ROW_BYTES ((int64_t)8 << 20)
/* The decode kernels (gemm_decode): 8 warps over 32 columns of C (16 with SwiGLU), B loaded straight into
 * mma fragments, partial sums in static shared memory; the narrow shape takes 16 columns (8), for C too
 * narrow to give every SM two blocks of the wide one. */
#define DECODE_THREADS 256
#define DECODE_TILE_N 32
#define DECODE_NARROW_TILE_N 16
#define DECODE_WIDE_BLOCKS_PER_SM 2
#define SIMT_TILE 128
#define SIMT_THREADS 256
#define FINISH_THREADS 256
/* Rows up to which the small (decode) tile is used: its blocks read B once per 16 rows. */
#define SMALL_TILE_MAX_M 16
/* Blocks resident per SM (registers and shared memory of each kernel): what split-K aims to fill. The
 * decode kernel fits two, but one a SM keeps enough of B in flight (64 KiB), so it splits K only when
 * its blocks do not cover the SMs: a split costs a second launch. */
#define LARGE_BLOCKS_PER_SM 1
#define SMALL_BLOCKS_PER_SM 3
#define DECODE_BLOCKS_PER_SM 1
#define SIMT_BLOCKS_PER_SM 1
/* Split-K granule: a multiple of every kernel's k tile (large 128 e4m3, 64 f16/bf16, 32 tf32; small
 * 32 f16/bf16; 8 SIMT). */
#define SPLIT_K_UNIT 128
/* Each split covers at least this many granules, so its pipeline runs long past the prologue (the
 * decode kernel: so each of its 8 warps has at least two 32-k chunks). */
#define SPLIT_K_MIN_UNITS 2
#define DECODE_SPLIT_K_MIN_UNITS 4
#define SPLIT_K_MAX_WORKSPACE ((size_t)256 << 20)
#define MAX_GRID_X 0x7fffffffu

/* Function slots in the GEMM module: tensor-core kernels by (input, tile, modes), then the rest. */
enum { TC_INPUTS = 4, TC_TILES = 2, TC_MODES = 5 };
#define SLOT_SIMT (TC_INPUTS * TC_TILES * TC_MODES)
#define SLOT_FINISH (SLOT_SIMT + 1)
#define SLOT_DECODE (SLOT_FINISH + 1) /* + 0 f16, + 1 bf16, + 2 for the narrow shape */

typedef enum gemm_kernel { KERNEL_LARGE, KERNEL_SMALL, KERNEL_DECODE, KERNEL_SIMT } gemm_kernel;
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
  int narrow;    /* the decode kernel's narrow shape */
  int dependent; /* launched with programmatic dependent launch (the decode kernels on sm_90a) */
} gemm_plan;

/* Whether an operand can take a cp.async mode: 16-byte aligned rows and batch entries, rows close
 * enough for 32-bit tile offsets. */
static int async_ok(const kf_matrix_arg *arg, int64_t element_bytes) {
  const uint64_t address = arg->buffer->address + (uint64_t)(arg->offset * element_bytes);
  return address % 16 == 0 && (arg->ld * element_bytes) % 16 == 0 && (arg->batch_stride * element_bytes) % 16 == 0 &&
         arg->ld * element_bytes < TC_MAX_ROW_BYTES;
}

static int ceil_div(int64_t a, int64_t b) { return (int)((a + b - 1) / b); }

static void make_plan(const kf_backend_context *ctx, const kf_gemm_args *args, gemm_plan *plan) {
  const kf_dtype in = args->a.dtype;
  plan->dependent = plan->narrow = 0;
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
    /* An operand goes through cp.async when async_ok; k-contiguous when A is not transposed and B is;
     * the m/n-contiguous form exists for 16-bit inputs, and for A on the large tile only (a transposed
     * A of at most 16 columns has no row chunks worth it). Otherwise both take the scalar path. */
    const int a_async = async_ok(&args->a, element_bytes);
    const int b_async = async_ok(&args->b, element_bytes) && (!swiglu || async_ok(&args->b_up, element_bytes));
    const int a_k = !args->trans_a, b_k = args->trans_b;
    if (!a_async || !b_async || (!sixteen_bit && !(a_k && b_k)) || (plan->kernel == KERNEL_SMALL && !a_k))
      plan->modes = 4;
    else
      plan->modes = (a_k ? 0 : 2) + (b_k ? 0 : 1);
    const int small = plan->kernel == KERNEL_SMALL;
    plan->tile_m = small ? SMALL_TILE_M : LARGE_TILE_M;
    plan->tile_n_out = swiglu ? TC_TILE_N / 2 : TC_TILE_N;
    /* Unknown capability: the larger stages, which a launch refuses rather than overrun. */
    int major = 9, minor = 0;
    if (kf_cu.DeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, ctx->device) != CUDA_SUCCESS ||
        kf_cu.DeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, ctx->device) != CUDA_SUCCESS)
      major = 9, minor = 0;
    const int sm90a = major == 9 && minor == 0;
    const int copy_warps = sm90a && !small && plan->modes != 4 && in != KF_F8_E4M3;
    plan->threads = small ? SMALL_THREADS : copy_warps ? LARGE_THREADS_SM90_COPY_WARPS : LARGE_THREADS;
    const unsigned k_bytes = small ? SMALL_K_BYTES : sm90a ? LARGE_K_BYTES_SM90 : LARGE_K_BYTES;
    plan->shared_bytes = (small ? SMALL_STAGES : LARGE_STAGES) * (unsigned)(plan->tile_m + TC_TILE_N) * k_bytes;
    unsigned stash_bytes = TC_STASH_BYTES(plan->tile_m);
    if (stash_bytes > plan->shared_bytes) stash_bytes = TC_STASH_BYTES(plan->tile_m / LARGE_WARPS_M);
    if (stash_bytes > plan->shared_bytes) plan->shared_bytes = stash_bytes;
    blocks_per_sm = plan->kernel == KERNEL_SMALL ? SMALL_BLOCKS_PER_SM : LARGE_BLOCKS_PER_SM;
    /* Decode shapes whose operands the small tile would take in its kk mode go to the decode kernel
     * when k is a multiple of 8 (its 16-byte loads then never straddle the end of k or of a split).
     * KF_CUDA_GEMM_DECODE=0 keeps them on the small tile, =wide / =narrow forces a shape (for comparison
     * and tests). */
    const char *decode = getenv("KF_CUDA_GEMM_DECODE");
    if (small && plan->modes == 0 && args->k % 8 == 0 && (decode == NULL || strcmp(decode, "0") != 0)) {
      plan->kernel = KERNEL_DECODE;
      const int64_t wide_blocks = args->batch * ceil_div(args->n, swiglu ? DECODE_TILE_N / 2 : DECODE_TILE_N);
      if (decode != NULL && strcmp(decode, "wide") == 0)
        plan->narrow = 0;
      else if (decode != NULL && strcmp(decode, "narrow") == 0)
        plan->narrow = 1;
      else
        plan->narrow = wide_blocks < (int64_t)ctx->sm_count * DECODE_WIDE_BLOCKS_PER_SM;
      const int tile_n = plan->narrow ? DECODE_NARROW_TILE_N : DECODE_TILE_N;
      plan->tile_n_out = swiglu ? tile_n / 2 : tile_n;
      plan->threads = DECODE_THREADS;
      plan->shared_bytes = 0;
      /* Only the sm_90a code has the kernel's griddepcontrol.wait: without it a programmatic launch
         could read A before the previous kernel has written it. */
      plan->dependent = sm90a;
      blocks_per_sm = DECODE_BLOCKS_PER_SM;
    }
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
  const int64_t min_units = plan->kernel == KERNEL_DECODE ? DECODE_SPLIT_K_MIN_UNITS : SPLIT_K_MIN_UNITS;
  if (splits > units / min_units) splits = units / min_units;
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

/* Decode shapes (f16/bf16, m <= 16) stay on the generic kernels even on sm_90 (the decode kernel, or
 * the small tile for operands it does not take): the Hopper kernel's 128-row tiles leave most of the
 * GPU idle there. H200, bf16, one kfbench_mm run before the decode kernel: 1x4096x4096 1.55 TFLOP/s
 * small tile vs 0.47 Hopper (cuBLAS 1.6); 16x14336x4096 38.3 vs 17.6 (cuBLAS 48.7); at 512x4096x4096
 * the Hopper kernel is ahead (350 vs 231). */
static int use_hopper_path(kf_backend_context *ctx, const kf_gemm_args *args) {
  const int sixteen_bit = args->a.dtype == KF_F16 || args->a.dtype == KF_BF16;
  if (sixteen_bit && args->m <= SMALL_TILE_MAX_M) return 0;
  return !kf_env_flag("KF_CUDA_FORCE_GENERIC") && kf_cuda_gemm_sm90_supports(ctx, args);
}

size_t kf_cuda_gemm_workspace(kf_backend_context *ctx, const kf_gemm_args *args) {
  if (use_hopper_path(ctx, args)) return kf_cuda_gemm_sm90_workspace(ctx, args);
  gemm_plan plan;
  make_plan(ctx, args, &plan);
  return plan_workspace(args, &plan);
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
  } else if (plan.kernel == KERNEL_DECODE) {
    snprintf(name, sizeof name, "kf_gemm_%s_decode%s", plan.input == 0 ? "f16" : "bf16", plan.narrow ? "_narrow" : "");
    slot = SLOT_DECODE + plan.input + 2 * plan.narrow;
  } else {
    static const char *const input_names[TC_INPUTS] = {"f16", "bf16", "e4m3", "tf32"};
    snprintf(name, sizeof name, "kf_gemm_%s_%s_%s", input_names[plan.input],
             plan.kernel == KERNEL_SMALL ? "small" : "large", mode_names[plan.modes]);
    slot = (plan.input * TC_TILES + (plan.kernel == KERNEL_SMALL)) * TC_MODES + plan.modes;
  }
  kf_status status = kf_cuda_enter(ctx);
  if (status != KF_OK) return status;
  CUfunction function, finish = NULL;
  status = kf_cuda_function_shared(ctx, KF_CUDA_MODULE_GEMM, slot, name, plan.shared_bytes, &function);
  if (status == KF_OK && plan.splits > 1)
    status = kf_cuda_function_shared(ctx, KF_CUDA_MODULE_GEMM, SLOT_FINISH, "kf_gemm_finish_splits", 0, &finish);

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
    if (plan.dependent)
      status = kf_cuda_launch_dependent(ctx, function, name, (unsigned)(entries * blocks_per_entry),
                                        (unsigned)plan.threads, plan.shared_bytes, &slice);
    else
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

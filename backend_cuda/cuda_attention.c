/* cuda_attention.c — chooses and launches the flash attention kernels of kernels_src/cuda/attention.cu:
 *   kf_attention_<f16|bf16>_d<64|96|128|256>_prefill_<v|s>  tensor cores, 128 rows per block;
 *   kf_attention_<f16|bf16>_d<...>_decode_<v|s>            tensor cores, 16 rows, 4 warps over the keys,
 *                                                            for q_len <= 16 (with split-KV);
 *   kf_attention_merge_<f16|bf16>                          combines split-KV partials;
 *   kf_attention_simt_<f32|f16|bf16>                        exact f32 arithmetic, any head_dim (f32, and
 *                                                            head dims without a tensor-core kernel).
 * "v" when q, k, v and out have 16-byte aligned element 0 and strides that are multiples of 8 elements.
 */
#include <stddef.h>
#include <stdio.h>

#include "backend_cuda/cuda_internal.h"

/* attention.cu's struct kf_cuda_attention_params, field for field (the kernel static_asserts 216). */
struct kf_cuda_attention_params {
  uint64_t q, k, v, out, lse, partial;
  int64_t q_batch_stride, q_seq_stride, q_head_stride;
  int64_t k_batch_stride, k_seq_stride, k_head_stride;
  int64_t v_batch_stride, v_seq_stride, v_head_stride;
  int64_t out_batch_stride, out_seq_stride, out_head_stride;
  int64_t lse_batch_stride, lse_seq_stride, lse_head_stride;
  int32_t batch, q_len, kv_len, q_heads, kv_heads, head_dim;
  int32_t causal;
  int32_t window_left;
  int32_t splits;
  float scale_log2;
  uint32_t flags;
  int32_t unused;
};
_Static_assert(sizeof(struct kf_cuda_attention_params) == 216, "layout shared with attention.cu");

#define ATTENTION_HAS_LSE 1u /* attention.cu */
#define LOG2_E 1.4426950408889634

/* Configurations of attention.cu (flash_shape): rows per block, keys per warp and per tile, threads. */
#define PREFILL_ROWS 128 /* 4 warps x 32 rows up to d 128 (128 threads), 8 warps x 16 rows at d 256 (256) */
#define DECODE_ROWS 16
#define DECODE_KEYS_PER_WARP 16
#define DECODE_KV_WARPS 4
#define DECODE_THREADS 128
#define DECODE_MAX_Q_LEN 16 /* decode kernel for q_len 1..16 (the decode range) */
#define SIMT_ROWS 16
#define SIMT_THREADS 256
#define MERGE_THREADS 256
#define MERGE_DIMS 4 /* attention.cu: dims per merge thread */
/* Split-KV: every split gets at least this many tiles (its pipeline fills), and at most this many
 * splits (bounds the workspace: splits * batch * q_heads * q_len * (head_dim + 1) f32). */
#define MIN_TILES_PER_SPLIT 4
#define MAX_SPLITS 128

typedef enum attention_kernel { KERNEL_SIMT, KERNEL_PREFILL, KERNEL_DECODE } attention_kernel;

typedef struct attention_plan {
  attention_kernel kernel;
  int aligned;
  int threads;
  int64_t m_blocks;  /* row blocks per (batch, kv head) */
  int64_t splits;
  unsigned shared_bytes; /* dynamic */
  size_t workspace_bytes;
} attention_plan;

/* Keys per tile of the prefill kernels (attention.cu's KF_FLASH_DTYPE list). */
static int prefill_keys(int32_t head_dim) { return head_dim == 96 ? 32 : head_dim == 256 ? 16 : 64; }

static int tensor_core_head_dim(int32_t head_dim) {
  return head_dim == 64 || head_dim == 96 || head_dim == 128 || head_dim == 256;
}

/* flash_shape<HD, BN, M_WARPS, M_TILES, KV_WARPS>::SMEM_BYTES; rows = 16 * M_WARPS * M_TILES. */
static unsigned flash_shared_bytes(int head_dim, int keys_per_warp, int rows, int kv_warps) {
  const int tile_keys = keys_per_warp * kv_warps;
  const int row_bytes = (head_dim == 96 ? 128 : head_dim) * 2;
  const int loop_bytes = rows * row_bytes + 4 * tile_keys * row_bytes;
  const int epilogue_bytes = kv_warps * rows * (head_dim + 4 + 2) * 4;
  return (unsigned)(loop_bytes > epilogue_bytes ? loop_bytes : epilogue_bytes);
}

static int seq_aligned(const kf_seq_arg *arg, int64_t batch, int64_t len, int64_t heads) {
  const uint64_t address = arg->buffer->address + (uint64_t)arg->offset * 2u;
  return address % KF_CUDA_VECTOR_BYTES == 0 && (batch == 1 || arg->batch_stride % 8 == 0) &&
         (len == 1 || arg->seq_stride % 8 == 0) && (heads == 1 || arg->head_stride % 8 == 0);
}

static void make_plan(const kf_backend_context *ctx, const kf_attention_args *args, attention_plan *plan) {
  const int64_t group = args->q_heads / args->kv_heads;
  const int64_t rows = args->q_len * group;
  const int64_t heads = args->batch * args->kv_heads;
  *plan = (attention_plan){.kernel = KERNEL_SIMT, .threads = SIMT_THREADS, .splits = 1};
  if (args->q.dtype != KF_F32 && tensor_core_head_dim(args->head_dim)) {
    plan->aligned = seq_aligned(&args->q, args->batch, args->q_len, args->q_heads) &&
                    seq_aligned(&args->k, args->batch, args->kv_len, args->kv_heads) &&
                    seq_aligned(&args->v, args->batch, args->kv_len, args->kv_heads) &&
                    seq_aligned(&args->out, args->batch, args->q_len, args->q_heads);
    if (args->q_len > DECODE_MAX_Q_LEN) {
      plan->kernel = KERNEL_PREFILL;
      plan->threads = args->head_dim <= 128 ? 128 : 256;
      plan->shared_bytes = flash_shared_bytes(args->head_dim, prefill_keys(args->head_dim), PREFILL_ROWS, 1);
      plan->m_blocks = (rows + PREFILL_ROWS - 1) / PREFILL_ROWS;
      return;
    }
    plan->kernel = KERNEL_DECODE;
    plan->threads = DECODE_THREADS;
    plan->shared_bytes = flash_shared_bytes(args->head_dim, DECODE_KEYS_PER_WARP, DECODE_ROWS, DECODE_KV_WARPS);
    plan->m_blocks = (rows + DECODE_ROWS - 1) / DECODE_ROWS;
    /* Split the keys when the blocks would leave SMs idle: as many splits as fit in one wave of
     * resident blocks (shared memory allows 3 per SM at d <= 128: 68 KiB each; 1 at d 256: 136 KiB),
     * each with at least MIN_TILES_PER_SPLIT tiles. */
    const int64_t blocks = plan->m_blocks * heads;
    const int64_t resident = (int64_t)(args->head_dim <= 128 ? 3 : 1) * ctx->sm_count;
    const int64_t tile_keys = DECODE_KEYS_PER_WARP * DECODE_KV_WARPS;
    const int64_t tiles = (args->kv_len + tile_keys - 1) / tile_keys;
    if (blocks < resident) {
      int64_t splits = resident / blocks;
      if (splits > tiles / MIN_TILES_PER_SPLIT) splits = tiles / MIN_TILES_PER_SPLIT;
      if (splits > MAX_SPLITS) splits = MAX_SPLITS;
      if (splits > 1) {
        plan->splits = splits;
        plan->workspace_bytes =
            (size_t)splits * (size_t)(args->batch * args->q_heads * args->q_len) * (size_t)(args->head_dim + 1) * 4u;
      }
    }
  } else {
    plan->m_blocks = (rows + SIMT_ROWS - 1) / SIMT_ROWS;
  }
}

size_t kf_cuda_attention_workspace(kf_backend_context *ctx, const kf_attention_args *args) {
  attention_plan plan;
  make_plan(ctx, args, &plan);
  return plan.workspace_bytes;
}

static uint64_t seq_address(const kf_seq_arg *arg) {
  return arg->buffer ? arg->buffer->address + (uint64_t)arg->offset * kf_dtype_size(arg->dtype) : 0;
}

kf_status kf_cuda_attention(kf_backend_context *ctx, const kf_attention_args *args) {
  attention_plan plan;
  make_plan(ctx, args, &plan);
  const int64_t group = args->q_heads / args->kv_heads;
  const int64_t grid = plan.m_blocks * args->batch * args->kv_heads * plan.splits;
  if (args->q_len * group > INT32_MAX || grid > INT32_MAX)
    return kf_fail(KF_ERROR_UNSUPPORTED, "CUDA attention: %lld query rows per kv head is too many",
                   (long long)(args->q_len * group));
  if (plan.splits > 1 && (args->workspace == NULL || args->workspace_bytes < plan.workspace_bytes))
    return kf_fail(KF_ERROR_INTERNAL, "CUDA attention needs a %zu-byte workspace", plan.workspace_bytes);

  /* A window that reaches key 0 from the last query masks nothing. */
  const int64_t last_position = args->kv_len - 1;
  const int32_t window_left =
      args->window_left < 0 || args->window_left >= last_position ? -1 : (int32_t)args->window_left;
  const int has_lse = args->lse.buffer != NULL;
  struct kf_cuda_attention_params params = {
      .q = seq_address(&args->q),
      .k = seq_address(&args->k),
      .v = seq_address(&args->v),
      .out = seq_address(&args->out),
      .lse = seq_address(&args->lse),
      .partial = plan.splits > 1 ? args->workspace->address : 0,
      .q_batch_stride = args->q.batch_stride,
      .q_seq_stride = args->q.seq_stride,
      .q_head_stride = args->q.head_stride,
      .k_batch_stride = args->k.batch_stride,
      .k_seq_stride = args->k.seq_stride,
      .k_head_stride = args->k.head_stride,
      .v_batch_stride = args->v.batch_stride,
      .v_seq_stride = args->v.seq_stride,
      .v_head_stride = args->v.head_stride,
      .out_batch_stride = args->out.batch_stride,
      .out_seq_stride = args->out.seq_stride,
      .out_head_stride = args->out.head_stride,
      .lse_batch_stride = has_lse ? args->lse.batch_stride : 0,
      .lse_seq_stride = has_lse ? args->lse.seq_stride : 0,
      .lse_head_stride = has_lse ? args->lse.head_stride : 0,
      .batch = (int32_t)args->batch,
      .q_len = (int32_t)args->q_len,
      .kv_len = (int32_t)args->kv_len,
      .q_heads = args->q_heads,
      .kv_heads = args->kv_heads,
      .head_dim = args->head_dim,
      .causal = args->causal,
      .window_left = window_left,
      .splits = (int32_t)plan.splits,
      .scale_log2 = (float)(args->scale * LOG2_E),
      .flags = has_lse ? ATTENTION_HAS_LSE : 0u,
  };

  /* Slots: tensor-core kernels (dtype, head_dim, kernel, aligned) 0..31, merge 32..33, SIMT 34..36. */
  const char *dtype = kf_cuda_dtype_name(args->q.dtype);
  char name[64];
  int slot;
  if (plan.kernel == KERNEL_SIMT) {
    snprintf(name, sizeof name, "kf_attention_simt_%s", dtype);
    slot = 34 + (int)args->q.dtype;
  } else {
    const int head_dim_index = args->head_dim == 64 ? 0 : args->head_dim == 96 ? 1 : args->head_dim == 128 ? 2 : 3;
    snprintf(name, sizeof name, "kf_attention_%s_d%d_%s_%c", dtype, (int)args->head_dim,
             plan.kernel == KERNEL_PREFILL ? "prefill" : "decode", plan.aligned ? 'v' : 's');
    slot = (((args->q.dtype == KF_BF16) * 4 + head_dim_index) * 2 + (plan.kernel == KERNEL_DECODE)) * 2 + plan.aligned;
  }

  kf_status status = kf_cuda_enter(ctx);
  if (status != KF_OK) return status;
  CUfunction function;
  /* the slot fixes the kernel and so its shared memory (head dim, prefill or decode) */
  status = kf_cuda_function_shared(ctx, KF_CUDA_MODULE_ATTENTION, slot, name, plan.shared_bytes, &function);
  if (status == KF_OK)
    status = kf_cuda_launch(ctx, function, name, (unsigned)grid, (unsigned)plan.threads, 1, plan.shared_bytes, &params);
  if (status == KF_OK && plan.splits > 1) {
    char merge_name[64];
    snprintf(merge_name, sizeof merge_name, "kf_attention_merge_%s", dtype);
    const int64_t all_rows = args->batch * args->q_heads * args->q_len;
    const int64_t merge_threads = all_rows * (args->head_dim / MERGE_DIMS);
    status = kf_cuda_function(ctx, KF_CUDA_MODULE_ATTENTION, 32 + (args->q.dtype == KF_BF16), merge_name, &function);
    if (status == KF_OK)
      status = kf_cuda_launch(ctx, function, merge_name, (unsigned)((merge_threads + MERGE_THREADS - 1) / MERGE_THREADS),
                              MERGE_THREADS, 1, 0, &params);
  }
  kf_cuda_leave(ctx);
  return status;
}

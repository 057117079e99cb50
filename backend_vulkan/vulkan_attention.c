/* vulkan_attention.c — flash attention on Vulkan (attention.comp), and split-KV decode: attention.comp
 * writes one partial record per (query row, key range) into the workspace and attention_merge.comp
 * combines them. f16 prefill with head_dim <= 128 on devices with VK_NV_cooperative_matrix goes to
 * attention_coopmat.comp instead (tensor-core products; off with KF_VULKAN_COOPMAT=0). This file picks
 * the shader, the tiles (shared memory and register budget), the split, the specialization constants
 * and the push constants; the shaders document the algorithm.
 */
#include <string.h>

#include "backend_vulkan/vulkan_internal.h"
#include "kernels_src/vulkan/kf_vk_attention_params.h"

_Static_assert(sizeof(struct kf_vk_attention_params) == 128, "kf_vk_attention_params layout changed");
_Static_assert(sizeof(struct kf_vk_attention_merge_params) == 72, "kf_vk_attention_merge_params layout changed");

/* attention.comp's WORKGROUP_SIZE, and the elements of a chunk (kf_chunks.glsl). */
#define ATTENTION_WORKGROUP 128
#define CHUNK 8
#define VECTOR_BYTES 16
/* Output accumulators per invocation (block_rows * head_dim / 128 floats): 64, with the S micro-tile
 * and addressing, stays under ~128 registers, so four 128-invocation workgroups share an SM's 64K
 * registers without spilling. */
#define MAX_ACCUMULATORS 64
/* Decode (split-KV) below this many queries, as the API promises for q_len 1-16. */
#define DECODE_MAX_Q_LEN 16
/* Split-KV aims at this many workgroups: an H200's 132 SMs hold about 8 of these each. */
#define SPLIT_TARGET_WORKGROUPS 1024
/* Each key range has at least this many keys, so that its partial record (head_dim + 4 floats per row)
 * costs little next to the keys it reads; and at most this many ranges per row (the workspace bound). */
#define SPLIT_MIN_KEYS 256
#define MAX_SPLITS 64

/* (query rows, keys) per tile, best first: larger row blocks read each K/V tile for more queries and
 * give the S micro-tiles more reuse. Decode blocks hold at most 16 rows (q_len * GQA group) and take
 * longer key tiles instead, to keep the loads deep. */
static const int32_t kPrefillTiles[][2] = {{64, 32}, {32, 32}, {32, 16}, {16, 16}, {16, 8}};
static const int32_t kDecodeTiles[][2] = {{16, 64}, {16, 32}, {16, 16}, {16, 8}};

/* attention_coopmat.comp: 4 subgroups of 32 invocations, 16 query rows each, and the widest head it
 * takes: its Q fragments (head_dim / 16 × 4 registers) and O accumulators (head_dim / 16 × 8) stay in
 * registers, 96 at 128; at 256 they alone would take 192 of the 255 an invocation may have. */
#define COOPMAT_SUBGROUPS 4
#define COOPMAT_SUBGROUP 32
#define COOPMAT_WORKGROUP (COOPMAT_SUBGROUPS * COOPMAT_SUBGROUP)
#define COOPMAT_FRAGMENT 16
#define COOPMAT_BLOCK_ROWS (COOPMAT_SUBGROUPS * COOPMAT_FRAGMENT)
#define COOPMAT_MAX_HEAD_DIM 128
/* Keys per K/V tile, best first: longer tiles spread each tile's barriers and softmax bookkeeping over
 * more products. The H200's 48 KiB take 64 keys up to head_dim 112, 48 at 128. */
static const int32_t kCoopmatBlockKeys[] = {64, 48, 32};

/* attention_coopmat.comp's shared memory in bytes (its smem and lane_partials arrays): the K and V tiles
 * (or the block's Q rows, if more), rows of the head dim padded to 16 and then by 16 bytes; per
 * subgroup a staging area for S (f32) or for one O fragment and P (f16), rows padded by 16 bytes. */
static size_t coopmat_shared_bytes(int32_t head_dim, int32_t block_keys) {
  const size_t padded_dim = (size_t)(head_dim + COOPMAT_FRAGMENT - 1) / COOPMAT_FRAGMENT * COOPMAT_FRAGMENT;
  const size_t tile_row = padded_dim * 2 + VECTOR_BYTES;
  const size_t tile_rows = 2 * block_keys > COOPMAT_BLOCK_ROWS ? 2 * (size_t)block_keys : COOPMAT_BLOCK_ROWS;
  const size_t s_bytes = COOPMAT_FRAGMENT * ((size_t)block_keys * 4 + VECTOR_BYTES);
  const size_t op_bytes = COOPMAT_FRAGMENT * COOPMAT_FRAGMENT * 4 + COOPMAT_FRAGMENT * ((size_t)block_keys * 2 + VECTOR_BYTES);
  const size_t staging = s_bytes > op_bytes ? s_bytes : op_bytes;
  return tile_rows * tile_row + COOPMAT_SUBGROUPS * staging + COOPMAT_WORKGROUP * 4;
}

/* The key tile of attention_coopmat.comp for this call, or 0 when it does not apply: tensor cores take
 * f16 only (NV cooperative matrices have no bf16, and bf16 -> f16 is not exact), decode keeps the
 * split-KV tiled shader (one to a few query rows per kv head use a sixteenth of a fragment and the
 * pass is bound by reading K and V), and heads past COOPMAT_MAX_HEAD_DIM keep the tiled shader. */
static int32_t coopmat_block_keys(const kf_backend_context *ctx, const kf_attention_args *args) {
  if (!ctx->use_nv_cooperative_matrix || args->q.dtype != KF_F16 || args->q_len <= DECODE_MAX_Q_LEN ||
      args->head_dim > COOPMAT_MAX_HEAD_DIM || ctx->max_workgroup_invocations < COOPMAT_WORKGROUP)
    return 0;
  for (size_t t = 0; t < sizeof kCoopmatBlockKeys / sizeof kCoopmatBlockKeys[0]; ++t)
    if (coopmat_shared_bytes(args->head_dim, kCoopmatBlockKeys[t]) <= ctx->max_shared_memory_bytes)
      return kCoopmatBlockKeys[t];
  return 0;
}

typedef struct attention_plan {
  int32_t block_rows, block_keys;
  int32_t s_rows, s_keys;     /* S micro-tile of an invocation */
  int32_t o_chunk_lanes;      /* invocations across the chunks of a row in the P V product */
  int64_t rows;               /* q_len * group: the query rows of one (batch, kv head) */
  int64_t row_blocks;
  int32_t splits, keys_per_split;
  int coopmat;                /* attention_coopmat.comp (block_rows, block_keys, row_blocks, one split) */
} attention_plan;

/* attention.comp's shared arrays (q_tile, kv_tile, p_tile, row_partials, row_scale) in bytes. */
static size_t shared_bytes(size_t element_size, int32_t head_dim, int32_t block_rows, int32_t block_keys,
                           int32_t key_lanes) {
  const size_t pitch = (size_t)(head_dim / CHUNK) * (element_size == 4 ? 2 : 1) + 1; /* 16-byte vectors */
  return (size_t)block_rows * pitch * 16 + (size_t)block_keys * pitch * 16 +
         (size_t)block_rows * (size_t)(block_keys / 4 + 1) * 16 + (size_t)block_rows * (size_t)key_lanes * 4 +
         (size_t)block_rows * 4;
}

/* Lanes across a row's chunks: the largest power of two dividing the chunk count (so no lane idles),
 * at most 16 (a 256-byte V row segment per half warp), at least what leaves every lane a row. */
static int32_t chunk_lanes(int32_t chunks, int32_t block_rows) {
  int32_t lanes = 1;
  while (lanes < 16 && chunks % (2 * lanes) == 0) lanes *= 2;
  while (lanes * block_rows < ATTENTION_WORKGROUP) lanes *= 2;
  return lanes;
}

static kf_status make_plan(const kf_backend_context *ctx, const kf_attention_args *args, attention_plan *plan) {
  memset(plan, 0, sizeof *plan);
  const size_t element_size = kf_dtype_size(args->q.dtype);
  const int32_t chunks = args->head_dim / CHUNK;
  const int64_t group = args->q_heads / args->kv_heads;
  plan->rows = args->q_len * group;
  const int32_t coopmat_keys = coopmat_block_keys(ctx, args);
  if (coopmat_keys > 0) { /* one pass, no split (never decode) */
    plan->coopmat = 1;
    plan->block_rows = COOPMAT_BLOCK_ROWS;
    plan->block_keys = coopmat_keys;
    plan->row_blocks = (plan->rows + plan->block_rows - 1) / plan->block_rows;
    plan->splits = 1;
    plan->keys_per_split = (int32_t)args->kv_len;
    return KF_OK;
  }
  const int decode = args->q_len <= DECODE_MAX_Q_LEN;
  const int small_block = decode && plan->rows <= 16;
  const int32_t(*tiles)[2] = small_block ? kDecodeTiles : kPrefillTiles;
  const size_t tile_count = small_block ? sizeof kDecodeTiles / sizeof kDecodeTiles[0]
                                        : sizeof kPrefillTiles / sizeof kPrefillTiles[0];
  for (size_t t = 0; t < tile_count && plan->block_rows == 0; ++t) {
    const int32_t block_rows = tiles[t][0], block_keys = tiles[t][1];
    const int32_t per_invocation = block_rows * block_keys / ATTENTION_WORKGROUP;
    const int32_t s_rows = per_invocation < 4 ? per_invocation : 4;
    const int32_t s_keys = per_invocation / s_rows;
    const int32_t lanes = chunk_lanes(chunks, block_rows);
    const int32_t o_rows = block_rows / (ATTENTION_WORKGROUP / lanes);
    const int32_t o_chunks = (chunks + lanes - 1) / lanes;
    if (o_rows * o_chunks * CHUNK > MAX_ACCUMULATORS) continue;
    if (shared_bytes(element_size, args->head_dim, block_rows, block_keys, block_keys / s_keys) >
        ctx->max_shared_memory_bytes)
      continue;
    plan->block_rows = block_rows;
    plan->block_keys = block_keys;
    plan->s_rows = s_rows;
    plan->s_keys = s_keys;
    plan->o_chunk_lanes = lanes;
  }
  if (plan->block_rows == 0)
    return kf_fail(KF_ERROR_UNSUPPORTED, "attention with head_dim %d in %s needs more than the device's %u bytes of "
                   "shared memory per workgroup", (int)args->head_dim, kf_dtype_name(args->q.dtype),
                   ctx->max_shared_memory_bytes);
  plan->row_blocks = (plan->rows + plan->block_rows - 1) / plan->block_rows;

  /* Split the keys when few workgroups would otherwise run: decode, where one query row per head
   * cannot fill the GPU. */
  plan->splits = 1;
  plan->keys_per_split = (int32_t)args->kv_len;
  if (decode) {
    const int64_t workgroups = args->batch * args->kv_heads * plan->row_blocks;
    int64_t splits = (SPLIT_TARGET_WORKGROUPS + workgroups - 1) / workgroups;
    const int64_t most = (args->kv_len + SPLIT_MIN_KEYS - 1) / SPLIT_MIN_KEYS;
    if (splits > most) splits = most;
    if (splits > MAX_SPLITS) splits = MAX_SPLITS;
    if (splits > 1) {
      int64_t keys = (args->kv_len + splits - 1) / splits;
      keys = (keys + plan->block_keys - 1) / plan->block_keys * plan->block_keys; /* whole tiles */
      plan->keys_per_split = (int32_t)keys;
      plan->splits = (int32_t)((args->kv_len + keys - 1) / keys);
    }
  }
  return KF_OK;
}

/* Bytes of one batch entry's partial records: a record of head_dim + 4 floats per (row, key range). */
static size_t partials_per_batch(const kf_attention_args *args, const attention_plan *plan) {
  return (size_t)args->kv_heads * (size_t)plan->rows * (size_t)plan->splits * (size_t)(args->head_dim + 4) * 4;
}

size_t kf_vk_attention_workspace(kf_backend_context *ctx, const kf_attention_args *args) {
  attention_plan plan;
  if (make_plan(ctx, args, &plan) != KF_OK || plan.splits == 1) return 0; /* attention reports the error */
  return (size_t)args->batch * partials_per_batch(args, &plan);
}

static uint64_t operand_address(const kf_seq_arg *arg) {
  return arg->buffer->address + (uint64_t)arg->offset * kf_dtype_size(arg->dtype);
}

static int fits_int32(int64_t value) { return value >= INT32_MIN && value <= INT32_MAX; }

/* Whether every [.., head_dim] row of the operand starts 16-byte aligned. */
static int rows_aligned(const kf_seq_arg *arg) {
  const int64_t size = (int64_t)kf_dtype_size(arg->dtype);
  return operand_address(arg) % VECTOR_BYTES == 0 && (arg->batch_stride * size) % VECTOR_BYTES == 0 &&
         (arg->seq_stride * size) % VECTOR_BYTES == 0 && (arg->head_stride * size) % VECTOR_BYTES == 0;
}

static uint32_t capped(int64_t groups, uint32_t limit) { return groups < (int64_t)limit ? (uint32_t)groups : limit; }

enum {
  ATTENTION_DTYPE,
  ATTENTION_HEAD_DIM,
  ATTENTION_BLOCK_ROWS,
  ATTENTION_BLOCK_KEYS,
  ATTENTION_S_ROWS,
  ATTENTION_S_KEYS,
  ATTENTION_O_CHUNK_LANES,
  ATTENTION_GROUP,
  ATTENTION_CAUSAL,
  ATTENTION_HAS_LSE,
  ATTENTION_SPLIT,
  ATTENTION_VECTORIZED,
  ATTENTION_SPEC_COUNT
};

enum { MERGE_DTYPE, MERGE_HEAD_DIM, MERGE_HAS_LSE, MERGE_VECTORIZED, MERGE_SPEC_COUNT };

enum {
  COOPMAT_HEAD_DIM,
  COOPMAT_BLOCK_KEYS,
  COOPMAT_GROUP,
  COOPMAT_CAUSAL,
  COOPMAT_HAS_LSE,
  COOPMAT_VECTORIZED,
  COOPMAT_SPEC_COUNT
};
_Static_assert(ATTENTION_SPEC_COUNT <= KF_VK_MAX_SPEC_CONSTANTS && COOPMAT_SPEC_COUNT <= KF_VK_MAX_SPEC_CONSTANTS,
               "more specialization constants than kf_vk_get_pipeline takes");

kf_status kf_vk_attention(kf_backend_context *ctx, const kf_attention_args *args) {
  attention_plan plan;
  kf_status status = make_plan(ctx, args, &plan);
  if (status != KF_OK) return status;
  const int has_lse = args->lse.buffer != NULL;
  const int split = plan.splits > 1;
  if (split && (args->workspace == NULL || args->workspace_bytes < kf_vk_attention_workspace(ctx, args)))
    return kf_fail(KF_ERROR_INVALID_ARGUMENT, "attention on Vulkan: the split-KV workspace is missing or too small");

  /* The push constants hold 32-bit strides and counts. Batch strides beyond that are handled by one
   * pass per batch entry with the entry's offset in the addresses. */
  const kf_seq_arg *operands[5] = {&args->q, &args->k, &args->v, &args->out, &args->lse};
  int batch_strides_fit = 1;
  for (int i = 0; i < 5; ++i) {
    if (operands[i]->buffer == NULL) continue;
    if (!fits_int32(operands[i]->seq_stride) || !fits_int32(operands[i]->head_stride))
      return kf_fail(KF_ERROR_UNSUPPORTED, "attention on Vulkan: sequence and head strides above 2^31-1 elements are "
                     "not supported");
    if (!fits_int32(operands[i]->batch_stride)) batch_strides_fit = 0;
  }
  const int64_t pass_batch = batch_strides_fit ? args->batch : 1;
  const int64_t items = pass_batch * args->kv_heads * plan.splits * plan.row_blocks;
  const int64_t merge_items = pass_batch * args->q_heads * args->q_len;
  if (plan.rows > INT32_MAX || items > INT32_MAX || merge_items > INT32_MAX)
    return kf_fail(KF_ERROR_UNSUPPORTED, "attention on Vulkan: more than 2^31-1 query rows or work items");

  const int vectorized = rows_aligned(&args->q) && rows_aligned(&args->k) && rows_aligned(&args->v) &&
                         rows_aligned(&args->out);
  VkPipeline pipeline, merge_pipeline = VK_NULL_HANDLE;
  if (plan.coopmat) {
    const uint32_t spec[COOPMAT_SPEC_COUNT] = {
        [COOPMAT_HEAD_DIM] = (uint32_t)args->head_dim,
        [COOPMAT_BLOCK_KEYS] = (uint32_t)plan.block_keys,
        [COOPMAT_GROUP] = (uint32_t)(args->q_heads / args->kv_heads),
        [COOPMAT_CAUSAL] = (uint32_t)(args->causal != 0),
        [COOPMAT_HAS_LSE] = (uint32_t)has_lse,
        [COOPMAT_VECTORIZED] = (uint32_t)vectorized,
    };
    status = kf_vk_get_pipeline(ctx, KF_VK_KERNEL_ATTENTION_COOPMAT, spec, COOPMAT_SPEC_COUNT, &pipeline);
  } else {
    const uint32_t spec[ATTENTION_SPEC_COUNT] = {
        [ATTENTION_DTYPE] = (uint32_t)args->q.dtype,
        [ATTENTION_HEAD_DIM] = (uint32_t)args->head_dim,
        [ATTENTION_BLOCK_ROWS] = (uint32_t)plan.block_rows,
        [ATTENTION_BLOCK_KEYS] = (uint32_t)plan.block_keys,
        [ATTENTION_S_ROWS] = (uint32_t)plan.s_rows,
        [ATTENTION_S_KEYS] = (uint32_t)plan.s_keys,
        [ATTENTION_O_CHUNK_LANES] = (uint32_t)plan.o_chunk_lanes,
        [ATTENTION_GROUP] = (uint32_t)(args->q_heads / args->kv_heads),
        [ATTENTION_CAUSAL] = (uint32_t)(args->causal != 0),
        [ATTENTION_HAS_LSE] = (uint32_t)(has_lse && !split),
        [ATTENTION_SPLIT] = (uint32_t)split,
        [ATTENTION_VECTORIZED] = (uint32_t)vectorized,
    };
    status = kf_vk_get_pipeline(ctx, KF_VK_KERNEL_ATTENTION, spec, ATTENTION_SPEC_COUNT, &pipeline);
  }
  if (status != KF_OK) return status;
  if (split) {
    const uint32_t merge_spec[MERGE_SPEC_COUNT] = {
        [MERGE_DTYPE] = (uint32_t)args->out.dtype,
        [MERGE_HEAD_DIM] = (uint32_t)args->head_dim,
        [MERGE_HAS_LSE] = (uint32_t)has_lse,
        [MERGE_VECTORIZED] = (uint32_t)rows_aligned(&args->out),
    };
    if ((status = kf_vk_get_pipeline(ctx, KF_VK_KERNEL_ATTENTION_MERGE, merge_spec, MERGE_SPEC_COUNT,
                                     &merge_pipeline)) != KF_OK)
      return status;
  }

  /* A window wider than kv_len hides nothing more, and fits 32 bits. */
  const int64_t window_left = args->window_left > args->kv_len ? args->kv_len : args->window_left;
  const float scale_log2 = (float)((double)args->scale * 1.4426950408889634);
  for (int64_t first_batch = 0; first_batch < args->batch; first_batch += pass_batch) {
    uint64_t address[5] = {0};
    for (int i = 0; i < 5; ++i)
      if (operands[i]->buffer != NULL)
        address[i] = operand_address(operands[i]) +
                     (uint64_t)(first_batch * operands[i]->batch_stride) * kf_dtype_size(operands[i]->dtype);
    const uint64_t partials =
        split ? args->workspace->address + (uint64_t)first_batch * partials_per_batch(args, &plan) : 0;
    struct kf_vk_attention_params params = {
        .q = address[0],
        .k = address[1],
        .v = address[2],
        .result = split ? partials : address[3],
        .lse = split ? 0 : address[4],
        .q_batch_stride = batch_strides_fit ? (int32_t)args->q.batch_stride : 0,
        .q_seq_stride = (int32_t)args->q.seq_stride,
        .q_head_stride = (int32_t)args->q.head_stride,
        .k_batch_stride = batch_strides_fit ? (int32_t)args->k.batch_stride : 0,
        .k_seq_stride = (int32_t)args->k.seq_stride,
        .k_head_stride = (int32_t)args->k.head_stride,
        .v_batch_stride = batch_strides_fit ? (int32_t)args->v.batch_stride : 0,
        .v_seq_stride = (int32_t)args->v.seq_stride,
        .v_head_stride = (int32_t)args->v.head_stride,
        .result_batch_stride = batch_strides_fit ? (int32_t)args->out.batch_stride : 0,
        .result_seq_stride = (int32_t)args->out.seq_stride,
        .result_head_stride = (int32_t)args->out.head_stride,
        .lse_batch_stride = has_lse && batch_strides_fit ? (int32_t)args->lse.batch_stride : 0,
        .lse_seq_stride = has_lse ? (int32_t)args->lse.seq_stride : 0,
        .lse_head_stride = has_lse ? (int32_t)args->lse.head_stride : 0,
        .batch = (int32_t)pass_batch,
        .q_len = (int32_t)args->q_len,
        .kv_len = (int32_t)args->kv_len,
        .kv_heads = args->kv_heads,
        .window_left = (int32_t)window_left,
        .keys_per_split = plan.keys_per_split,
        .scale_log2 = scale_log2,
    };
    /* One workgroup per work item; the shader strides over items beyond the dispatch limit. */
    if ((status = kf_vk_dispatch(ctx, pipeline, &params, sizeof params, capped(items, ctx->max_workgroups_x), 1)) !=
        KF_OK)
      return status;
    if (!split) continue;
    struct kf_vk_attention_merge_params merge = {
        .partials = partials,
        .result = address[3],
        .lse = address[4],
        .result_batch_stride = params.result_batch_stride,
        .result_seq_stride = params.result_seq_stride,
        .result_head_stride = params.result_head_stride,
        .lse_batch_stride = params.lse_batch_stride,
        .lse_seq_stride = params.lse_seq_stride,
        .lse_head_stride = params.lse_head_stride,
        .batch = (int32_t)pass_batch,
        .q_len = (int32_t)args->q_len,
        .q_heads = args->q_heads,
        .kv_heads = args->kv_heads,
        .splits = plan.splits,
    };
    if ((status = kf_vk_dispatch(ctx, merge_pipeline, &merge, sizeof merge, capped(merge_items, ctx->max_workgroups_x),
                                 1)) != KF_OK)
      return status;
  }
  return KF_OK;
}

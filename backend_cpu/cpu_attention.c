/* cpu_attention.c — flash attention on the CPU: single pass, online softmax, f32 arithmetic, as
 * kf_attention_args documents (bottom-right causal alignment, left window, GQA, optional lse).
 *
 * The rows of a (batch entry, KV head) are its (query, q head of the GQA group) pairs, query-major:
 * row = query * group + head_in_group. All rows of a KV head read the same keys, so one item — a block
 * of consecutive rows — reads each K/V tile once for the whole GQA group, and consecutive queries keep
 * causal masks compact. Per item:
 *   pack Qᵀ (head_dim × rows) as B panels; O = 0, m = -inf, l = 0 per row;
 *   for each tile of ATTN_TILE_KEYS keys in the union of the rows' visible ranges:
 *     Sᵀ = K · Qᵀ     (keys × rows; micro-kernel of cpu_gemm_kernel.h with K's rows as the A operand)
 *     per row (a column of Sᵀ, so these loops run across rows in vectors):
 *       mask, scale, m' = max(m, max S), P = exp(S - m'), l = l e^(m - m') + sum P, O *= e^(m - m')
 *     O += P · V      (Pᵀ = Sᵀ is already the A operand's layout; V's rows are the B panels)
 *   out = O / l, lse = m + log l (out 0 and lse -inf for a row that saw no key).
 * Computing Sᵀ rather than S is what lets both products read K, P and V in the layout they come in:
 * K and V tiles are converted row by row into contiguous f32 tiles, never transposed, and P is used
 * where the softmax left it. (f32 K/V are copied too: in place, rows a power-of-two stride apart —
 * 4 KiB for 8 heads of 128 — all fall into one L1 set, which measured 1.5x slower.)
 * Temporary memory is per thread and of tile size (~0.7 MiB at head_dim 256), whatever q_len × kv_len.
 * Items go to the pool: batch × KV heads × row blocks, with smaller row blocks when that is too few to
 * keep every core busy (decode: q_len 1 gives a block per KV head; the rows are the group's heads).
 */
#pragma GCC optimize("fp-contract=fast") /* FMA in the micro-kernel: see cpu_gemm_kernel.h */

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu/cpu_block.h"
#include "backend_cpu/cpu_gemm_kernel.h"
#include "backend_cpu/cpu_internal.h"
#include "backend_cpu/cpu_math.h"
#include "backend_cpu/threadpool.h"

/* Rows of an item at most: converting a K/V tile costs one element per 4 × rows flops of the two
 * products, so K/V conversion stays at a few percent; at head_dim 256 the item's Qᵀ and O are 192 KiB
 * each and, with the K, V and Sᵀ tiles, stay inside a 1 MiB L2. A multiple of KF_GEMM_MR and
 * KF_GEMM_NR. */
#define ATTN_MAX_BLOCK_ROWS 192
/* Keys per tile, a multiple of KF_GEMM_MR (the key panels of Sᵀ). */
#define ATTN_TILE_KEYS 96
/* Items per thread the split aims for (see GEMM_ITEMS_PER_THREAD in cpu_gemm.c). */
#define ATTN_ITEMS_PER_THREAD 4
/* Below this many flops a chunk of items runs on the calling thread (a worker's wake-up costs more). */
#define ATTN_MIN_CHUNK_FLOPS (1 << 20)

_Static_assert(ATTN_MAX_BLOCK_ROWS % KF_GEMM_MR == 0 && ATTN_MAX_BLOCK_ROWS % KF_GEMM_NR == 0, "whole tiles");
_Static_assert(ATTN_TILE_KEYS % KF_GEMM_MR == 0, "whole key panels");
_Static_assert(KF_GEMM_NR == KF_CPU_LANES, "row loops run in KF_CPU_LANES groups over NR-padded rows");

static inline int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

typedef struct attention_job {
  const kf_attention_args *args;
  int32_t group;          /* q heads per KV head */
  int32_t padded_dim;     /* head_dim rounded up to KF_GEMM_NR: O's row length */
  int64_t block_rows;     /* rows per item (the last block of a KV head may have fewer) */
  int64_t row_blocks;     /* per (batch entry, KV head) */
  size_t elem_size;
  atomic_int out_of_memory;
} attention_job;

/* Sizes of an item's buffers. Rows are padded to KF_GEMM_NR for Sᵀ's columns and to KF_GEMM_MR for
 * O's row panels; Sᵀ's row length covers both. */
typedef struct attention_layout {
  int64_t rows_nr, rows_mr, s_ld;
} attention_layout;

static attention_layout layout_for(int64_t rows) {
  attention_layout l = {round_up(rows, KF_GEMM_NR), round_up(rows, KF_GEMM_MR), 0};
  l.s_ld = round_up(l.rows_mr, KF_GEMM_NR);
  return l;
}

typedef struct attention_scratch {
  float *q_pack;   /* Qᵀ as B panels: rows_nr / NR panels of [head_dim][NR] */
  float *o;        /* rows_mr × padded_dim */
  float *s;        /* ATTN_TILE_KEYS × s_ld: Sᵀ, then Pᵀ */
  float *k_tile;   /* ATTN_TILE_KEYS × head_dim: converted K rows */
  float *v_tile;   /* ATTN_TILE_KEYS × padded_dim: converted V rows, zero-padded */
  float *row_max, *row_sum, *rescale;            /* rows_nr each */
  int64_t *first_key, *last_key;                 /* rows_nr each: visible keys per row */
  int32_t *tile_first, *tile_last;               /* rows_nr each: the same relative to a tile */
} attention_scratch;

/* The keys query `query` sees: [*first, *last]; empty when *last < *first. */
static inline void visible_keys(const kf_attention_args *a, int64_t query, int64_t *first, int64_t *last) {
  const int64_t position = query + a->kv_len - a->q_len; /* bottom-right aligned */
  *last = a->causal && position < a->kv_len - 1 ? position : a->kv_len - 1;
  *first = a->window_left >= 0 && position - a->window_left > 0 ? position - a->window_left : 0;
}

static inline char *seq_element(const kf_seq_arg *t, size_t elem_size, int64_t batch, int64_t seq, int64_t head) {
  return kf_cpu_buffer_data(t->buffer) +
         (size_t)(t->offset + batch * t->batch_stride + seq * t->seq_stride + head * t->head_stride) * elem_size;
}

/* o[0, padded_dim) *= factor; padded_dim is a multiple of KF_GEMM_NR, a count gcc cannot see. */
KF_ALWAYS_INLINE void scale_row(float *o, int padded_dim, float factor) {
  for (int d = 0; d < padded_dim; d += KF_GEMM_NR) {
    kf_gemm_row x;
    memcpy(&x, o + d, sizeof x);
    x *= factor;
    memcpy(o + d, &x, sizeof x);
  }
}

/* The online-softmax step for one tile: Sᵀ (keys × rows_nr, row length s_ld) becomes Pᵀ, and every
 * row's max, sum and O are updated. Loops run over rows in groups of KF_CPU_LANES (vectors); each
 * row's max and sum over the keys are plain sequential reductions within a lane. */
KF_ALWAYS_INLINE void softmax_tile(const attention_job *job, attention_scratch *sc, const attention_layout *l,
                                   int rows, int64_t key0, int keys) {
  const float scale = job->args->scale;
  float *s = sc->s;
  for (int64_t r = 0; r < l->rows_nr; ++r) { /* visible keys relative to the tile, clamped to it */
    const int64_t first = sc->first_key[r] - key0, last = sc->last_key[r] - key0;
    sc->tile_first[r] = (int32_t)(first < 0 ? 0 : first > keys ? keys : first);
    sc->tile_last[r] = (int32_t)(last < -1 ? -1 : last >= keys ? keys - 1 : last);
  }
  /* Per group of rows, the state lives in local arrays while the tile is processed: gcc vectorizes
   * the lane loops only when it can see that they do not alias the tile. */
  for (int64_t group = 0; group < l->rows_nr; group += KF_CPU_LANES) {
    int32_t first[KF_CPU_LANES], last[KF_CPU_LANES];
    float tile_max[KF_CPU_LANES], exp_base[KF_CPU_LANES], tile_sum[KF_CPU_LANES];
    memcpy(first, sc->tile_first + group, sizeof first);
    memcpy(last, sc->tile_last + group, sizeof last);
    for (int i = 0; i < KF_CPU_LANES; ++i) tile_max[i] = -INFINITY;
    for (int32_t j = 0; j < keys; ++j) {
      float *sj = s + j * l->s_ld + group;
      for (int i = 0; i < KF_CPU_LANES; ++i) {
        sj[i] = kf_cpu_select((j >= first[i]) & (j <= last[i]), sj[i] * scale, -INFINITY);
        tile_max[i] = sj[i] > tile_max[i] ? sj[i] : tile_max[i];
      }
    }
    float *row_max = sc->row_max + group, *rescale = sc->rescale + group, *row_sum = sc->row_sum + group;
    for (int i = 0; i < KF_CPU_LANES; ++i) {
      const float new_max = tile_max[i] > row_max[i] ? tile_max[i] : row_max[i];
      /* A row with no visible key so far keeps max -inf; exponents taken against 0 then give P = 0
       * and rescale = 0 (its O and sum are still 0) instead of -inf - -inf = NaN. */
      exp_base[i] = kf_cpu_select(new_max == -INFINITY, 0.0f, new_max);
      rescale[i] = kf_cpu_expf(row_max[i] - exp_base[i]);
      row_max[i] = new_max;
      tile_sum[i] = 0.0f;
    }
    for (int32_t j = 0; j < keys; ++j) {
      float *sj = s + j * l->s_ld + group;
      for (int i = 0; i < KF_CPU_LANES; ++i) {
        sj[i] = kf_cpu_expf(sj[i] - exp_base[i]);
        tile_sum[i] += sj[i];
      }
    }
    for (int i = 0; i < KF_CPU_LANES; ++i) row_sum[i] = row_sum[i] * rescale[i] + tile_sum[i];
  }
  /* O's last row panel also reads the columns between rows_nr and rows_mr: padding rows, P = 0. */
  for (int32_t j = 0; j < keys; ++j)
    for (int64_t r = l->rows_nr; r < l->rows_mr; ++r) s[j * l->s_ld + r] = 0.0f;
  for (int r = 0; r < rows; ++r) scale_row(sc->o + (size_t)r * job->padded_dim, job->padded_dim, sc->rescale[r]);
}

KF_ALWAYS_INLINE void run_item(const attention_job *job, int64_t item, attention_scratch *sc) {
  const kf_attention_args *a = job->args;
  const int64_t per_batch = (int64_t)a->kv_heads * job->row_blocks;
  const int64_t batch = item / per_batch;
  const int64_t kv_head = item % per_batch / job->row_blocks;
  const int64_t first_row = item % job->row_blocks * job->block_rows;
  const int64_t total_rows = a->q_len * job->group;
  const int rows = (int)(total_rows - first_row < job->block_rows ? total_rows - first_row : job->block_rows);
  const attention_layout l = layout_for(rows);
  const int head_dim = a->head_dim, padded_dim = job->padded_dim;
  const kf_dtype dtype = a->q.dtype;
  const size_t elem_size = job->elem_size;

  /* Qᵀ as B panels ([head_dim][NR] per NR rows); padding rows zero and seeing no key. */
  float *line = sc->v_tile; /* free until the first V tile */
  for (int r = 0; r < l.rows_nr; ++r) {
    float *panel = sc->q_pack + (size_t)(r / KF_GEMM_NR) * head_dim * KF_GEMM_NR;
    const int lane = r % KF_GEMM_NR;
    sc->row_max[r] = -INFINITY;
    sc->row_sum[r] = 0.0f;
    if (r < rows) {
      const int64_t row = first_row + r, query = row / job->group;
      const int64_t head = kv_head * job->group + row % job->group;
      const float *q = kf_cpu_gemm_row(seq_element(&a->q, elem_size, batch, query, head), dtype, head_dim, line);
      for (int d = 0; d < head_dim; ++d) panel[(size_t)d * KF_GEMM_NR + lane] = q[d];
      visible_keys(a, query, &sc->first_key[r], &sc->last_key[r]);
    } else {
      for (int d = 0; d < head_dim; ++d) panel[(size_t)d * KF_GEMM_NR + lane] = 0.0f;
      sc->first_key[r] = 1;
      sc->last_key[r] = 0;
    }
  }
  memset(sc->o, 0, (size_t)l.rows_mr * padded_dim * sizeof(float));

  /* Visible ranges only grow with the query, so the item's keys run from its first row's first
   * visible key to its last row's last. */
  const int64_t keys_begin = sc->first_key[0], keys_end = sc->last_key[rows - 1];
  for (int64_t key0 = keys_begin; key0 <= keys_end; key0 += ATTN_TILE_KEYS) {
    const int keys = (int)(keys_end + 1 - key0 < ATTN_TILE_KEYS ? keys_end + 1 - key0 : ATTN_TILE_KEYS);

    /* Sᵀ = K · Qᵀ with K's rows (the A operand, row-major) converted into a contiguous tile, padded
     * with zero keys to whole panels. */
    const char *k = seq_element(&a->k, elem_size, batch, key0, kv_head);
    const int key_panels = (keys + KF_GEMM_MR - 1) / KF_GEMM_MR;
    for (int j = 0; j < keys; ++j)
      kf_cpu_gemm_load(k + (size_t)(j * a->k.seq_stride) * elem_size, dtype, head_dim, sc->k_tile + (size_t)j * head_dim);
    memset(sc->k_tile + (size_t)keys * head_dim, 0, (size_t)(key_panels * KF_GEMM_MR - keys) * head_dim * sizeof(float));
    for (int kp = 0; kp < key_panels; ++kp)
      for (int rp = 0; rp < l.rows_nr / KF_GEMM_NR; ++rp)
        kf_cpu_gemm_micro(head_dim, sc->k_tile + (size_t)kp * KF_GEMM_MR * head_dim, head_dim, 1,
                          sc->q_pack + (size_t)rp * head_dim * KF_GEMM_NR, KF_GEMM_NR,
                          sc->s + (size_t)kp * KF_GEMM_MR * l.s_ld + rp * KF_GEMM_NR, l.s_ld, 0);

    softmax_tile(job, sc, &l, rows, key0, keys);

    /* O += P · V: Pᵀ's rows are keys (the depth), and V's rows, converted and zero-padded to
     * padded_dim, are the B operand's depth steps. */
    const char *v = seq_element(&a->v, elem_size, batch, key0, kv_head);
    for (int j = 0; j < keys; ++j) {
      float *dst = sc->v_tile + (size_t)j * padded_dim;
      kf_cpu_gemm_load(v + (size_t)(j * a->v.seq_stride) * elem_size, dtype, head_dim, dst);
      for (int d = head_dim; d < padded_dim; ++d) dst[d] = 0.0f;
    }
    for (int dp = 0; dp < padded_dim / KF_GEMM_NR; ++dp)
      for (int rp = 0; rp < l.rows_mr / KF_GEMM_MR; ++rp)
        kf_cpu_gemm_micro(keys, sc->s + rp * KF_GEMM_MR, 1, l.s_ld, sc->v_tile + dp * KF_GEMM_NR, padded_dim,
                          sc->o + (size_t)rp * KF_GEMM_MR * padded_dim + dp * KF_GEMM_NR, padded_dim, 1);
  }

  for (int r = 0; r < rows; ++r) {
    const int64_t row = first_row + r, query = row / job->group;
    const int64_t head = kv_head * job->group + row % job->group;
    float *o = sc->o + (size_t)r * padded_dim;
    const float sum = sc->row_sum[r];
    scale_row(o, padded_dim, sum > 0.0f ? 1.0f / sum : 0.0f); /* no visible key: out = 0 */
    kf_cpu_gemm_store(seq_element(&a->out, elem_size, batch, query, head), dtype, o, head_dim);
    if (a->lse.buffer) {
      const float lse = sum > 0.0f ? sc->row_max[r] + logf(sum) : -INFINITY;
      memcpy(seq_element(&a->lse, sizeof(float), batch, query, head), &lse, sizeof lse);
    }
  }
}

/* The next `bytes` (rounded up to 64, keeping 64-byte alignment) of a scratch allocation. */
static void *carve(char **next, size_t bytes) {
  void *part = *next;
  *next += (bytes + 63) & ~(size_t)63;
  return part;
}

KF_CPU_KERNEL static void attention_items(void *arg, int64_t item_begin, int64_t item_end) {
  attention_job *job = arg;
  const attention_layout l = layout_for(job->block_rows);
  const size_t rows_nr = (size_t)l.rows_nr, head_dim = (size_t)job->args->head_dim;
  const size_t padded_dim = (size_t)job->padded_dim, f = sizeof(float);
  const size_t s_bytes = ATTN_TILE_KEYS * (size_t)l.s_ld * f;
  const size_t sizes[11] = {rows_nr * head_dim * f, (size_t)l.rows_mr * padded_dim * f, s_bytes,
                            ATTN_TILE_KEYS * head_dim * f, ATTN_TILE_KEYS * padded_dim * f,
                            rows_nr * f, rows_nr * f, rows_nr * f, rows_nr * sizeof(int64_t),
                            rows_nr * sizeof(int64_t), 2 * rows_nr * sizeof(int32_t)};
  size_t total = 0;
  for (int i = 0; i < 11; ++i) total += (sizes[i] + 63) & ~(size_t)63;
  char *memory = aligned_alloc(64, total);
  if (!memory) {
    atomic_store(&job->out_of_memory, 1);
    return;
  }
  char *next = memory;
  attention_scratch sc;
  sc.q_pack = carve(&next, sizes[0]);
  sc.o = carve(&next, sizes[1]);
  sc.s = carve(&next, sizes[2]);
  sc.k_tile = carve(&next, sizes[3]);
  sc.v_tile = carve(&next, sizes[4]);
  sc.row_max = carve(&next, sizes[5]);
  sc.row_sum = carve(&next, sizes[6]);
  sc.rescale = carve(&next, sizes[7]);
  sc.first_key = carve(&next, sizes[8]);
  sc.last_key = carve(&next, sizes[9]);
  sc.tile_first = carve(&next, sizes[10]);
  sc.tile_last = sc.tile_first + rows_nr;
  for (int64_t item = item_begin; item < item_end; ++item) run_item(job, item, &sc);
  free(memory);
}

kf_status kf_cpu_attention(kf_backend_context *ctx, const kf_attention_args *args) {
  attention_job job = {
      .args = args,
      .group = args->q_heads / args->kv_heads,
      .padded_dim = (int32_t)round_up(args->head_dim, KF_GEMM_NR),
      .elem_size = kf_dtype_size(args->q.dtype),
  };
  atomic_init(&job.out_of_memory, 0);
  const int64_t total_rows = args->q_len * job.group;
  const int64_t heads = args->batch * args->kv_heads;
  /* Row blocks as large as allowed, unless that leaves threads idle. */
  const int64_t wanted_items = (int64_t)kf_pool_thread_count() * ATTN_ITEMS_PER_THREAD;
  const int64_t wanted_blocks = (wanted_items + heads - 1) / heads;
  int64_t block_rows = round_up((total_rows + wanted_blocks - 1) / wanted_blocks, KF_GEMM_MR);
  if (block_rows > ATTN_MAX_BLOCK_ROWS) block_rows = ATTN_MAX_BLOCK_ROWS;
  job.block_rows = block_rows;
  job.row_blocks = (total_rows + block_rows - 1) / block_rows;

  const int64_t items = heads * job.row_blocks;
  const double item_flops = 4.0 * (double)block_rows * (double)args->kv_len * args->head_dim;
  kf_pool_parallel_for(items, (int64_t)(ATTN_MIN_CHUNK_FLOPS / item_flops) + 1, attention_items, &job);
  if (atomic_load(&job.out_of_memory))
    return kf_fail(KF_ERROR_OUT_OF_MEMORY, "cannot allocate the attention tile buffers");
  return KF_OK;
}

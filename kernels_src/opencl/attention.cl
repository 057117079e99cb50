/* attention.cl — flash attention for the OpenCL backend (common.cl is prepended).
 *
 * out[b, i, h, :] = sum_j softmax_j(scale * q[b, i, h, :] . k[b, j, h / group, :]) v[b, j, h / group, :]
 * over the keys visible to query i (position p = i + kv_len - q_len: causal j <= p, window j >= p - w).
 * One pass over the keys with an online softmax (running max and sum per query, in f32); nothing of
 * size q_len x kv_len exists anywhere.
 *
 * Work decomposition. The rows of one (batch, kv head) are its queries times the q heads that share
 * the kv head (GQA): row r = i * group + head-in-group, so every K/V tile staged in local memory
 * serves all of them. A work-group takes a block of KF_ATT_ROWS_* consecutive rows (64 for prefill;
 * 16, with a quarter of the work-items, for decode, where a block of 64 would mostly compute rows that
 * do not exist) and walks the key range of its split in tiles of KF_ATT_KV_TILE keys:
 *   1. K tile -> local memory (as f32); S = Q K^T for the block (Q read from global memory: it stays in
 *      the L1 cache, and local memory has no room for a 64 x 256 f32 block beside the tiles);
 *   2. online softmax on the S values held in registers: the tile's row maximum is reduced across the
 *      work-items that share a row (warp shuffles on NVIDIA, local memory elsewhere; the row sums stay
 *      per work-item until the end); P (transposed) and the per-row rescale factor go to local memory;
 *   3. V tile -> the same local buffer; O = O * alpha + P V in registers.
 * Tiles wholly outside the block's visible key range (causal, window, split) are never visited.
 *
 * Split-KV (decode: few rows, long kv_len): the host splits the keys into get_num_groups(2) ranges of
 * keys_per_split; each work-group writes its normalized partial output and log2-sum-exp (f32) to
 * `partial`, and kf_attention_merge combines the splits with the logsumexp trick.
 *
 * Build options: KF_HEAD_DIM (a multiple of 8 up to 256), KF_ATT_KV_TILE (keys per tile), and
 * common.cl's KF_NV_PTX / KF_FIXED_DT. The q/k/v/out dtype is chosen at run time otherwise.
 *
 * Layout arguments are long4 (element offset, batch stride, seq stride, head stride) of each operand,
 * as kf_seq_arg holds them; for lse the seq stride steps over queries.
 */

#define KF_ATT_D KF_HEAD_DIM
#define KF_ATT_D4 (KF_ATT_D / 4)
#define KF_ATT_D8 (KF_ATT_D / 8)
#define KF_ATT_BKV KF_ATT_KV_TILE

/* Rows per work-group of the two kernels. */
#define KF_ATT_ROWS_PREFILL 64
#define KF_ATT_ROWS_DECODE 16

/* flags */
#define KF_ATT_HAS_LSE 1u
#define KF_ATT_SPLIT 2u    /* write partials (normalized O and log2-sum-exp per split) */
#define KF_ATT_ALIGNED 4u  /* every q/k/v/out row start is a multiple of 8 elements: 8-wide accesses */
#define KF_ATT_CAUSAL 8u

#define KF_MIN2(a, b) ((a) < (b) ? (a) : (b))
#define KF_MAX2(a, b) ((a) > (b) ? (a) : (b))

/* ---- thread layouts (compile-time constants of KF_HEAD_DIM and KF_ATT_KV_TILE) ----
 * What one work-item computes is the same in both kernels; the decode kernel just has a quarter of the
 * work-items for its quarter of the rows. So every per-work-item loop bound is a constant of the
 * program, not of the kernel: the loops unroll while the block function is compiled on its own
 * (unrolling it first and inlining it later would leave loops partially unrolled and the private
 * arrays in memory).
 * P V: the O block [64 rows, D] is split into row groups x dim threads. A work-item owns PV_ROWS rows
 * and PV_VECS float4 columns (col = dim_thread + c * DIM_THREADS, so neighbouring work-items read
 * neighbouring V words). 128 work-items (256 above head_dim 128) keep O at <= 64 accumulators per
 * work-item for the common head_dims: 64 -> 8 rows x 4 dims, 96 -> 4 x 12, 128 -> 8 x 8, 256 -> 8 x 8;
 * 8 rows per work-item share every V load, which keeps local-memory traffic below the FMA rate.
 * The dim threads are the largest power of two dividing D/4, so any multiple of 8 gets a layout. */
#define KF_ATT_THREAD_TARGET (KF_ATT_D > 128 ? 256 : 128)
#define KF_ATT_DIM_THREADS KF_MIN2(KF_ATT_D4 & -KF_ATT_D4, KF_ATT_THREAD_TARGET / 8)
#define KF_ATT_PV_VECS (KF_ATT_D4 / KF_ATT_DIM_THREADS)
#define KF_ATT_ROW_GROUPS KF_MIN2(KF_ATT_ROWS_PREFILL, KF_ATT_THREAD_TARGET / KF_ATT_DIM_THREADS)
#define KF_ATT_PV_ROWS (KF_ATT_ROWS_PREFILL / KF_ATT_ROW_GROUPS)
#define KF_ATT_THREADS_PREFILL (KF_ATT_DIM_THREADS * KF_ATT_ROW_GROUPS)
/* Work-items of a block of `rows` (>= 32: a multiple of the row groups' and S row groups' sizes). */
#define KF_ATT_THREADS(rows) (KF_ATT_THREADS_PREFILL * (rows) / KF_ATT_ROWS_PREFILL)
/* S = Q K^T: the S tile [64, BKV] is split into row groups x key threads; a work-item owns S_ROWS
 * rows x S_KEYS keys (key = key_thread + j * KEY_THREADS: neighbouring work-items read neighbouring
 * K rows, which the padded row stride puts in different banks). 4 keys per work-item, so each 8-wide
 * Q load feeds 4 dot products. KEY_THREADS <= 16: a row's work-items sit in one warp. */
#define KF_ATT_KEY_THREADS KF_MAX2(KF_ATT_BKV / 4, KF_ATT_THREADS_PREFILL / KF_ATT_ROWS_PREFILL)
#define KF_ATT_S_ROWS (KF_ATT_ROWS_PREFILL * KF_ATT_KEY_THREADS / KF_ATT_THREADS_PREFILL)
#define KF_ATT_S_KEYS (KF_ATT_BKV / KF_ATT_KEY_THREADS)

/* Local row strides in floats, padded by 4: rows start 16-byte aligned (float4 accesses) and
 * consecutive rows start 4 banks apart, so the K rows read by neighbouring key threads do not
 * collide. */
#define KF_ATT_KV_STRIDE (KF_ATT_D + 4)
#define KF_ATT_P_STRIDE(rows) ((rows) + 4)

/* Local memory of a block: the K/V tile (f32; K and V take turns), P^T, two per-row values (rescale
 * factor, final sum) and the reduction scratch of devices without warp shuffles. The tiles are read
 * and written as float4, so they are declared 16-byte aligned: a float array is only 4-byte aligned,
 * and NVIDIA's driver placed one at an odd word, where every 16-byte shared access faulted. For
 * head_dim 256: 32 x 260 + 32 x 68 floats = 42 KiB, inside the 48 KiB every GPU offers. */
#if KF_NV_PTX
#define KF_ATT_SCRATCH(rows) 1
#else
#define KF_ATT_SCRATCH(rows) (KF_ATT_S_ROWS * KF_ATT_THREADS(rows))
#endif

#define KF_LN2 0.6931471805599453f

/* 8 elements from element i: one aligned vector access when the host vouched for 8-element
 * alignment, else vloadn, which needs only element alignment (arbitrary offsets and strides) but which
 * compilers may split into narrower loads. */
KF_HELPER float8 att_load8(const global uchar *base, long i, uint dt, bool aligned) {
  if (aligned) return kf_load8(base, i, dt);
  if (dt == KF_DT_F32) return vload8(0, (const global float *)base + i);
  if (dt == KF_DT_F16) return vload_half8(0, (const global half *)base + i);
  return as_float8(convert_uint8(vload8(0, (const global ushort *)base + i)) << 16);
}

KF_HELPER void att_store8(global uchar *base, long i, float8 v, uint dt, bool aligned) {
  if (aligned)
    kf_store8(base, i, v, dt);
  else if (dt == KF_DT_F32)
    vstore8(v, 0, (global float *)base + i);
  else if (dt == KF_DT_F16)
    vstore_half8_rte(v, 0, (global half *)base + i);
  else
    vstore8(convert_ushort8(kf_bf16_bits8(v) >> 16), 0, (global ushort *)base + i);
}

/* 4 elements from element i (any element alignment), rounded to nearest even. */
KF_HELPER void att_store4(global uchar *base, long i, float4 v, uint dt) {
  if (dt == KF_DT_F32)
    vstore4(v, 0, (global float *)base + i);
  else if (dt == KF_DT_F16)
    vstore_half4_rte(v, 0, (global half *)base + i);
  else
    vstore4(convert_ushort4((uint4)(kf_bf16_bits1(v.s0), kf_bf16_bits1(v.s1), kf_bf16_bits1(v.s2),
                                    kf_bf16_bits1(v.s3)) >> 16),
            0, (global ushort *)base + i);
}

/* Reduces each of the S_ROWS values across the KEY_THREADS consecutive work-items that share a row
 * (lane = lid % KEY_THREADS); every one of them gets the results. All work-items of the group must
 * call it (the fallback uses a barrier), and a barrier must separate two calls (the fallback's
 * scratch of S_ROWS x threads floats). */
KF_HELPER void att_reduce_rows(float *values, int op, local float *scratch, uint lid, uint lane, uint threads) {
#if KF_NV_PTX
  (void)scratch;
  (void)lane;
  (void)threads;
  (void)lid;
  KF_UNROLL for (int i = 0; i < KF_ATT_S_ROWS; ++i) {
    KF_UNROLL for (uint mask = KF_ATT_KEY_THREADS >> 1; mask > 0; mask >>= 1)
      values[i] = kf_combine(values[i], kf_shuffle_xor(values[i], mask), op);
  }
#else
  KF_UNROLL for (int i = 0; i < KF_ATT_S_ROWS; ++i) scratch[i * threads + lid] = values[i];
  barrier(CLK_LOCAL_MEM_FENCE);
  const uint first = lid - lane;
  KF_UNROLL for (int i = 0; i < KF_ATT_S_ROWS; ++i) {
    float total = scratch[i * threads + first];
    for (uint t = 1; t < KF_ATT_KEY_THREADS; ++t) total = kf_combine(total, scratch[i * threads + first + t], op);
    values[i] = total;
  }
#endif
}

/* Copies keys [tile_start, tile_start + BKV) of k or v (kv head `kv_head` of batch entry `batch`) to
 * the local tile as f32; keys at or past kv_len become 0 (their P is 0, and 0 * garbage could be NaN). */
KF_HELPER void att_stage_tile(local float *tile, const global uchar *src, long4 layout, long batch, long kv_head,
                              long tile_start, long kv_len, uint dt, bool aligned, uint lid, uint threads) {
  const long head_base = layout.x + batch * layout.y + kv_head * layout.w;
  for (uint item = lid; item < KF_ATT_BKV * KF_ATT_D8; item += threads) {
    const uint key = item / KF_ATT_D8, chunk = item % KF_ATT_D8;
    const long key_index = tile_start + key;
    float8 value = 0.0f;
    if (key_index < kv_len) value = att_load8(src, head_base + key_index * layout.z + chunk * 8, dt, aligned);
    local float *dst = tile + key * KF_ATT_KV_STRIDE + chunk * 8;
    *(local float4 *)dst = value.lo;
    *(local float4 *)(dst + 4) = value.hi;
  }
}

/* One block of `rows` rows of one (batch, kv head) over the keys of one split. */
KF_HELPER void att_block(const int rows, const global uchar *q, const global uchar *k, const global uchar *v,
                         global uchar *out, global float *lse, global float *partial, long4 q_layout,
                         long4 k_layout, long4 v_layout, long4 out_layout, long4 lse_layout, int4 sizes,
                         long window_left, float scale_log2, uint dtype, uint flags, int keys_per_split,
                         local float *kv_tile, local float *p_tile, local float *row_alpha, local float *row_sum,
                         local float *scratch) {
  const int threads = KF_ATT_THREADS(rows), p_stride = KF_ATT_P_STRIDE(rows);
  const int key_threads = KF_ATT_KEY_THREADS, s_rows = KF_ATT_S_ROWS, s_keys = KF_ATT_S_KEYS;
  const int pv_rows = KF_ATT_PV_ROWS;
  const long q_len = sizes.x, kv_len = sizes.y;
  const int q_heads = sizes.z, kv_heads = sizes.w, group = q_heads / kv_heads;
  const uint dt = KF_DT_OF(dtype, 0);
  const bool aligned = (flags & KF_ATT_ALIGNED) != 0;
  const bool causal = (flags & KF_ATT_CAUSAL) != 0;
  const uint lid = get_local_id(0);
  const long batch = get_group_id(1) / kv_heads, kv_head = get_group_id(1) % kv_heads;
  const long split = get_group_id(2);
  const long first_row = (long)get_group_id(0) * rows;
  const long rows_of_head = q_len * group;
  const int valid_rows = (int)min((long)rows, rows_of_head - first_row);

  /* The block's key range: from the first query's window start to the last query's causal end,
   * inside this split. */
  const long offset = kv_len - q_len; /* query i sits at position i + offset */
  const long first_pos = first_row / group + offset, last_pos = (first_row + valid_rows - 1) / group + offset;
  const long split_start = split * keys_per_split;
  const long key_lo = max(split_start, window_left >= 0 ? first_pos - window_left : 0L);
  const long key_hi = min(min(kv_len, split_start + keys_per_split) - 1, causal ? last_pos : kv_len - 1);

  /* S layout: this work-item's rows s_row0 .. s_row0 + s_rows - 1 and keys key_lane + j * key_threads. */
  const uint key_lane = lid % key_threads;
  const int s_row0 = (int)(lid / key_threads) * s_rows;
  long q_base[KF_ATT_S_ROWS], pos[KF_ATT_S_ROWS];
  float run_max[KF_ATT_S_ROWS], run_sum[KF_ATT_S_ROWS];
  KF_UNROLL for (int i = 0; i < s_rows; ++i) {
    const long row = first_row + min(s_row0 + i, valid_rows - 1); /* clamped: rows past the end are skipped */
    const long query = row / group, head = kv_head * group + row % group;
    q_base[i] = q_layout.x + batch * q_layout.y + query * q_layout.z + head * q_layout.w;
    pos[i] = query + offset;
    run_max[i] = -INFINITY;
    run_sum[i] = 0.0f;
  }
  const bool s_active = s_row0 < valid_rows;

  /* PV layout: rows pv_row0 .. + pv_rows - 1, float4 columns dim_lane + c * DIM_THREADS. */
  const uint dim_lane = lid % KF_ATT_DIM_THREADS;
  const int pv_row0 = (int)(lid / KF_ATT_DIM_THREADS) * pv_rows;
  const bool pv_active = pv_row0 < valid_rows;
  float4 acc[KF_ATT_PV_ROWS][KF_ATT_PV_VECS];
  KF_UNROLL for (int i = 0; i < pv_rows; ++i) {
    KF_UNROLL for (int c = 0; c < KF_ATT_PV_VECS; ++c) acc[i][c] = 0.0f;
  }

  const long tile_first = key_lo - key_lo % KF_ATT_BKV;
  for (long tile_start = tile_first; key_lo <= key_hi && tile_start <= key_hi; tile_start += KF_ATT_BKV) {
    /* 1. S = Q K^T (scaled to log2 units), masked to -inf outside each row's visible keys. */
    barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile's P V is done with kv_tile and p_tile */
    att_stage_tile(kv_tile, k, k_layout, batch, kv_head, tile_start, kv_len, dt, aligned, lid, threads);
    barrier(CLK_LOCAL_MEM_FENCE);
    float s[KF_ATT_S_ROWS][KF_ATT_S_KEYS];
    KF_UNROLL for (int i = 0; i < s_rows; ++i) {
      KF_UNROLL for (int j = 0; j < s_keys; ++j) s[i][j] = 0.0f;
    }
    if (s_active) {
      for (int chunk = 0; chunk < KF_ATT_D8; ++chunk) {
        float8 q_chunk[KF_ATT_S_ROWS];
        KF_UNROLL for (int i = 0; i < s_rows; ++i) q_chunk[i] = att_load8(q, q_base[i] + chunk * 8, dt, aligned);
        KF_UNROLL for (int j = 0; j < s_keys; ++j) {
          const local float *key_row = kv_tile + (key_lane + j * key_threads) * KF_ATT_KV_STRIDE + chunk * 8;
          const float4 k_lo = *(const local float4 *)key_row, k_hi = *(const local float4 *)(key_row + 4);
          KF_UNROLL for (int i = 0; i < s_rows; ++i) s[i][j] += dot(q_chunk[i].lo, k_lo) + dot(q_chunk[i].hi, k_hi);
        }
      }
    }
    float tile_max[KF_ATT_S_ROWS];
    KF_UNROLL for (int i = 0; i < s_rows; ++i) {
      tile_max[i] = -INFINITY;
      KF_UNROLL for (int j = 0; j < s_keys; ++j) {
        const long key = tile_start + key_lane + j * key_threads;
        const bool visible = s_row0 + i < valid_rows && key <= key_hi && (!causal || key <= pos[i]) &&
                             (window_left < 0 || key >= pos[i] - window_left);
        s[i][j] = visible ? s[i][j] * scale_log2 : -INFINITY;
        tile_max[i] = fmax(tile_max[i], s[i][j]);
      }
    }

    /* 2. Online softmax. While a row has seen no visible key its max is -inf: exp2 against 0 then
     * keeps every p (and the rescale of the zero O) at 0 instead of NaN. The row sums stay per
     * work-item (each over its own keys, rescaled by the row's common alpha) and are reduced once at
     * the end. */
    att_reduce_rows(tile_max, KF_REDUCE_MAX, scratch, lid, key_lane, threads);
    KF_UNROLL for (int i = 0; i < s_rows; ++i) {
      const float new_max = fmax(run_max[i], tile_max[i]);
      const float reference = new_max == -INFINITY ? 0.0f : new_max;
      const float alpha = exp2(run_max[i] - reference);
      float tile_sum = 0.0f;
      KF_UNROLL for (int j = 0; j < s_keys; ++j) {
        const float p = exp2(s[i][j] - reference);
        tile_sum += p;
        p_tile[(key_lane + j * key_threads) * p_stride + s_row0 + i] = p;
      }
      run_max[i] = new_max;
      run_sum[i] = run_sum[i] * alpha + tile_sum;
      if (key_lane == 0) row_alpha[s_row0 + i] = alpha;
    }

    /* 3. O = O * alpha + P V. */
    barrier(CLK_LOCAL_MEM_FENCE); /* S is done with the K tile; P and alpha are written */
    att_stage_tile(kv_tile, v, v_layout, batch, kv_head, tile_start, kv_len, dt, aligned, lid, threads);
    barrier(CLK_LOCAL_MEM_FENCE);
    if (pv_active) {
      KF_UNROLL for (int i = 0; i < pv_rows; ++i) {
        const float alpha = row_alpha[pv_row0 + i];
        KF_UNROLL for (int c = 0; c < KF_ATT_PV_VECS; ++c) acc[i][c] *= alpha;
      }
      for (int key = 0; key < KF_ATT_BKV; ++key) {
        const local float *value_row = kv_tile + key * KF_ATT_KV_STRIDE + dim_lane * 4;
        float4 value[KF_ATT_PV_VECS];
        KF_UNROLL for (int c = 0; c < KF_ATT_PV_VECS; ++c)
          value[c] = *(const local float4 *)(value_row + c * KF_ATT_DIM_THREADS * 4);
        KF_UNROLL for (int i = 0; i < pv_rows; ++i) {
          const float p = p_tile[key * p_stride + pv_row0 + i];
          KF_UNROLL for (int c = 0; c < KF_ATT_PV_VECS; ++c) acc[i][c] = mad((float4)p, value[c], acc[i][c]);
        }
      }
    }
  }

  /* Final sums and maxima to the PV layout; lse (or the split's log2-sum-exp) from the S layout. */
  barrier(CLK_LOCAL_MEM_FENCE);
  att_reduce_rows(run_sum, KF_REDUCE_SUM, scratch, lid, key_lane, threads);
  const bool split_mode = (flags & KF_ATT_SPLIT) != 0;
  const long splits = get_num_groups(2);
  const long rows_total = (long)(get_num_groups(1) / kv_heads) * q_heads * q_len;
  if (s_active && key_lane == 0) {
    KF_UNROLL for (int i = 0; i < s_rows; ++i) {
      if (s_row0 + i >= valid_rows) continue;
      row_sum[s_row0 + i] = run_sum[i];
      const long row = first_row + s_row0 + i;
      const long query = row / group, head = kv_head * group + row % group;
      const float log2_sum = run_sum[i] > 0.0f ? run_max[i] + log2(run_sum[i]) : -INFINITY;
      if (split_mode) {
        const long row_id = (batch * q_heads + head) * q_len + query;
        partial[splits * rows_total * KF_ATT_D + split * rows_total + row_id] = log2_sum;
      } else if (flags & KF_ATT_HAS_LSE) {
        lse[lse_layout.x + batch * lse_layout.y + query * lse_layout.z + head * lse_layout.w] = log2_sum * KF_LN2;
      }
    }
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  if (!pv_active) return;
  KF_UNROLL for (int i = 0; i < pv_rows; ++i) {
    if (pv_row0 + i >= valid_rows) continue;
    const float sum = row_sum[pv_row0 + i];
    const float inverse = sum > 0.0f ? 1.0f / sum : 0.0f; /* no visible key: out = 0 */
    const long row = first_row + pv_row0 + i;
    const long query = row / group, head = kv_head * group + row % group;
    if (split_mode) {
      const long row_id = (batch * q_heads + head) * q_len + query;
      global float *dst = partial + (split * rows_total + row_id) * KF_ATT_D + dim_lane * 4;
      KF_UNROLL for (int c = 0; c < KF_ATT_PV_VECS; ++c)
        *(global float4 *)(dst + c * KF_ATT_DIM_THREADS * 4) = acc[i][c] * inverse;
    } else {
      const long dst = out_layout.x + batch * out_layout.y + query * out_layout.z + head * out_layout.w + dim_lane * 4;
      KF_UNROLL for (int c = 0; c < KF_ATT_PV_VECS; ++c)
        att_store4(out, dst + c * KF_ATT_DIM_THREADS * 4, acc[i][c] * inverse, dt);
    }
  }
}

#define KF_ATT_KERNEL_ARGS                                                                                  \
  const global uchar *q, const global uchar *k, const global uchar *v, global uchar *out, global float *lse, \
      global float *partial, long4 q_layout, long4 k_layout, long4 v_layout, long4 out_layout,              \
      long4 lse_layout, int4 sizes, long window_left, float scale_log2, uint dtype, uint flags,              \
      int keys_per_split

#define KF_ATT_DEFINE_KERNEL(name, rows)                                                                   \
  kernel __attribute__((reqd_work_group_size(KF_ATT_THREADS(rows), 1, 1))) void name(KF_ATT_KERNEL_ARGS) { \
    local float kv_tile[KF_ATT_BKV * KF_ATT_KV_STRIDE] __attribute__((aligned(16)));                        \
    local float p_tile[KF_ATT_BKV * KF_ATT_P_STRIDE(rows)] __attribute__((aligned(16)));                    \
    local float row_alpha[rows], row_sum[rows];                                                             \
    local float scratch[KF_ATT_SCRATCH(rows)];                                                              \
    att_block(rows, q, k, v, out, lse, partial, q_layout, k_layout, v_layout, out_layout, lse_layout, sizes, \
              window_left, scale_log2, dtype, flags, keys_per_split, kv_tile, p_tile, row_alpha, row_sum,   \
              scratch);                                                                                     \
  }

KF_ATT_DEFINE_KERNEL(kf_attention_rows64, KF_ATT_ROWS_PREFILL)
KF_ATT_DEFINE_KERNEL(kf_attention_rows16, KF_ATT_ROWS_DECODE)

/* Combines the splits of kf_attention_rows*: one work-item per (row, 8 dims). With L_s the split's
 * log2-sum-exp and M their maximum, out = sum_s 2^(L_s - M) O_s / sum_s 2^(L_s - M) and
 * lse = (M + log2 sum_s 2^(L_s - M)) ln 2. Splits that saw no key (L_s = -inf) weigh 0. */
kernel void kf_attention_merge(const global float *partial, global uchar *out, global float *lse,
                               long4 out_layout, long4 lse_layout, int4 sizes, long rows_total, int splits,
                               uint dtype, uint flags) {
  const long item = get_global_id(0);
  const long row_id = item / KF_ATT_D8, chunk = item % KF_ATT_D8;
  if (row_id >= rows_total) return;
  const long q_len = sizes.x;
  const int q_heads = sizes.z;
  const long query = row_id % q_len, head = (row_id / q_len) % q_heads, batch = row_id / (q_len * q_heads);
  const global float *log2_sums = partial + (long)splits * rows_total * KF_ATT_D;
  float max_log2_sum = -INFINITY;
  for (int s = 0; s < splits; ++s) max_log2_sum = fmax(max_log2_sum, log2_sums[s * rows_total + row_id]);
  float8 total = 0.0f;
  float weight_sum = 0.0f;
  if (max_log2_sum != -INFINITY) {
    for (int s = 0; s < splits; ++s) {
      const float weight = exp2(log2_sums[s * rows_total + row_id] - max_log2_sum);
      weight_sum += weight;
      total += weight * vload8(0, partial + (s * rows_total + row_id) * KF_ATT_D + chunk * 8);
    }
  }
  const float8 result = weight_sum > 0.0f ? total / weight_sum : (float8)0.0f;
  att_store8(out, out_layout.x + batch * out_layout.y + query * out_layout.z + head * out_layout.w + chunk * 8,
             result, KF_DT_OF(dtype, 0), (flags & KF_ATT_ALIGNED) != 0);
  if (chunk == 0 && (flags & KF_ATT_HAS_LSE))
    lse[lse_layout.x + batch * lse_layout.y + query * lse_layout.z + head * lse_layout.w] =
        weight_sum > 0.0f ? (max_log2_sum + log2(weight_sum)) * KF_LN2 : -INFINITY;
}

/* softmax.cl — y = softmax(x * scale + mask) over each row (common.cl is prepended).
 *
 * Stable: the row maximum is subtracted before exp. A row whose every value is -inf has maximum -inf,
 * so exp(-inf - -inf) = NaN: the row comes out NaN, as the mathematical definition gives (0/0).
 * The mask is optional, with its own row stride (0 when one mask row is broadcast over all rows).
 * y may be x itself: every element is read, by the work-item that later writes it, before any write.
 *
 * Work decomposition as layernorm.cl (row_threads work-items per row, W = 8 or 1):
 *   kf_softmax_w<W>_r<N>   the row's N vectors per work-item stay in registers (x read once)
 *   kf_softmax_w<W>_stream any row length: pass 1 keeps a running (max, sum of exp) per work-item,
 *                          rescaling the sum when the max grows (online softmax); the per-item pairs
 *                          are merged; pass 2 re-reads x and writes y.
 */

/* KF_FIXED_FLAGS (KF_SOFTMAX_HAS_MASK): the host may fix whether there is a mask at build time, as
 * KF_FIXED_DT fixes the dtypes (GPUs only); -1 reads params.flags. Without it the kernels keep the mask's
 * registers and code: plain bf16 16384x8192 softmax measured 74% of copy on the H200, 85% with it. */
#ifndef KF_FIXED_FLAGS
#define KF_FIXED_FLAGS (-1)
#endif

#define KF_SM_KERNEL_ARGS                                                                             \
  struct kf_softmax_params p, const global uchar *x, const global uchar *mask, global uchar *y,       \
      uint row_threads, local float *scratch

#define KF_SM_SETUP(W)                                                                                \
  const uint x_dt = KF_DT_OF(p.dtypes, KF_SOFTMAX_DT_SHIFT_X);                                        \
  const uint m_dt = KF_DT_OF(p.dtypes, KF_SOFTMAX_DT_SHIFT_MASK);                                     \
  const uint y_dt = KF_DT_OF(p.dtypes, KF_SOFTMAX_DT_SHIFT_Y);                                        \
  const uint flags_ = KF_FIXED_FLAGS >= 0 ? (uint)KF_FIXED_FLAGS : p.flags;                           \
  const bool has_mask = (flags_ & KF_SOFTMAX_HAS_MASK) != 0;                                          \
  const uint lid = get_local_id(0);                                                                   \
  const uint lane = lid & (row_threads - 1);                                                          \
  const uint rows_per_group = get_local_size(0) / row_threads;                                        \
  const long vecs = p.row_len / W;

#define KF_SM_ROW_START                                                                               \
  const long row = first_row + lid / row_threads;                                                     \
  const bool active = row < p.rows;                                                                   \
  const long r_ = active ? row : 0;                                                                   \
  const long x_row = (long)p.x + r_ * p.x_row_stride;                                                 \
  const long m_row = (long)p.mask + r_ * p.mask_row_stride;                                           \
  const long y_row = (long)p.y + r_ * p.y_row_stride;

#define KF_SM_ROW_LOOP                                                                                \
  for (long first_row = (long)get_group_id(0) * rows_per_group; first_row < p.rows;                   \
       first_row += (long)get_num_groups(0) * rows_per_group)

/* x * scale + mask for the vector at element `col` (streaming kernel). */
#define KF_SM_LOAD(W, col)                                                                            \
  (has_mask ? kf_load##W(x, x_row + (col), x_dt) * p.scale + kf_load##W(mask, m_row + (col), m_dt)   \
            : kf_load##W(x, x_row + (col), x_dt) * p.scale)

/* exp(v - row_max) of the register kernels, as exp2(v * log2(e) - row_max * log2(e)): one fma and the
 * hardware's exp2, where exp spends ~8 instructions per element on its range reduction (NVIDIA), and
 * softmax is close to instruction bound there. Rounding v * log2(e) and row_max * log2(e) costs about
 * |row_max| ulp of relative error, within the tolerance's 6 * condition ulp (condition: the largest
 * logit magnitude). An all -inf row gives -inf - -inf = NaN, as exp does. */
#define KF_SM_EXP_SHIFTED(v, row_max_log2) exp2((v) * M_LOG2E_F - (row_max_log2))

/* Chunk c of this work-item: vector j of the row, and the vector its loads read. A chunk past the
 * row's end re-reads the work-item's first vector (its own, so y aliasing x stays safe) and is never
 * used: the loads then need no branch, and the compiler issues all of them before the first use. */
#define KF_SM_J(c) (lane + (long)(c) * row_threads)
#define KF_SM_LOAD_J(c) (KF_SM_J(c) < vecs ? KF_SM_J(c) : (long)lane)

#define KF_SM_REGS_KERNEL(W, F, CHUNKS)                                                               \
  kernel void kf_softmax_w##W##_r##CHUNKS(KF_SM_KERNEL_ARGS) {                                        \
    KF_SM_SETUP(W)                                                                                    \
    KF_SM_ROW_LOOP {                                                                                  \
      KF_SM_ROW_START                                                                                 \
      F v[CHUNKS];                                                                                    \
      float local_max = -INFINITY;                                                                    \
      if (active && lane < vecs) {                                                                    \
        kf_held##W x_held[CHUNKS], m_held[CHUNKS];                                                    \
        KF_UNROLL for (int c = 0; c < CHUNKS; ++c) x_held[c] = kf_held_load##W(x, x_row + KF_SM_LOAD_J(c) * W, x_dt); \
        if (has_mask) {                                                                               \
          KF_UNROLL for (int c = 0; c < CHUNKS; ++c)                                                  \
            m_held[c] = kf_held_load##W(mask, m_row + KF_SM_LOAD_J(c) * W, m_dt);                     \
        }                                                                                             \
        /* select(), not a branch (nor ?:, which compiles to one): under a branch the compiler sinks \
         * each load to its use, and each load then waits for the previous one's use. */              \
        KF_UNROLL for (int c = 0; c < CHUNKS; ++c) {                                                  \
          v[c] = kf_held_value##W(x_held[c], x_dt) * p.scale;                                         \
          if (has_mask) v[c] += kf_held_value##W(m_held[c], m_dt);                                    \
          local_max = fmax(local_max, select(-INFINITY, kf_max##W(v[c]), (int)(KF_SM_J(c) < vecs)));  \
        }                                                                                             \
      }                                                                                               \
      const float row_max = kf_row_reduce(local_max, KF_REDUCE_MAX, scratch, lid, lane, row_threads); \
      const float row_max_log2 = row_max * M_LOG2E_F;                                                 \
      float sum = 0.0f;                                                                               \
      if (active) {                                                                                   \
        KF_UNROLL for (int c = 0; c < CHUNKS; ++c) {                                                  \
          if (KF_SM_J(c) < vecs) {                                                                    \
            v[c] = KF_SM_EXP_SHIFTED(v[c], row_max_log2);                                             \
            sum += kf_sum##W(v[c]);                                                                   \
          }                                                                                           \
        }                                                                                             \
      }                                                                                               \
      const float inv_sum = 1.0f / kf_row_reduce(sum, KF_REDUCE_SUM, scratch, lid, lane, row_threads); \
      if (active) {                                                                                   \
        KF_UNROLL for (int c = 0; c < CHUNKS; ++c) {                                                  \
          if (KF_SM_J(c) < vecs) kf_store_rne##W(y, y_row + KF_SM_J(c) * W, v[c] * inv_sum, y_dt);    \
        }                                                                                             \
      }                                                                                               \
    }                                                                                                 \
  }

#define KF_SM_STREAM_KERNEL(W, F)                                                                     \
  kernel void kf_softmax_w##W##_stream(KF_SM_KERNEL_ARGS) {                                           \
    KF_SM_SETUP(W)                                                                                    \
    KF_SM_ROW_LOOP {                                                                                  \
      KF_SM_ROW_START                                                                                 \
      /* Running max and sum of exp(v - max) of this work-item's elements. While the max is -inf     \
       * every element so far is -inf and contributes nothing (skipped: -inf - -inf is NaN). */       \
      float item_max = -INFINITY, item_sum = 0.0f;                                                    \
      if (active) {                                                                                   \
        for (long j = lane; j < vecs; j += row_threads) {                                             \
          const F v = KF_SM_LOAD(W, j * W);                                                           \
          const float v_max = kf_max##W(v);                                                           \
          if (v_max > item_max) {                                                                     \
            item_sum *= exp(item_max - v_max);                                                        \
            item_max = v_max;                                                                         \
          }                                                                                           \
          if (item_max != -INFINITY) item_sum += kf_sum##W(exp(v - item_max));                        \
        }                                                                                             \
      }                                                                                               \
      const float row_max = kf_row_reduce(item_max, KF_REDUCE_MAX, scratch, lid, lane, row_threads);  \
      const float scaled = item_max == -INFINITY ? 0.0f : item_sum * exp(item_max - row_max);         \
      const float inv_sum = 1.0f / kf_row_reduce(scaled, KF_REDUCE_SUM, scratch, lid, lane, row_threads); \
      if (active) {                                                                                   \
        for (long j = lane; j < vecs; j += row_threads)                                               \
          kf_store_rne##W(y, y_row + j * W, exp(KF_SM_LOAD(W, j * W) - row_max) * inv_sum, y_dt);     \
      }                                                                                               \
    }                                                                                                 \
  }

KF_SM_REGS_KERNEL(8, float8, 1)
KF_SM_REGS_KERNEL(8, float8, 2)
KF_SM_REGS_KERNEL(8, float8, 4)
KF_SM_REGS_KERNEL(8, float8, 8)
KF_SM_STREAM_KERNEL(8, float8)
KF_SM_REGS_KERNEL(1, float, 1)
KF_SM_REGS_KERNEL(1, float, 2)
KF_SM_REGS_KERNEL(1, float, 4)
KF_SM_REGS_KERNEL(1, float, 8)
KF_SM_STREAM_KERNEL(1, float)

/* layernorm.cl — LayerNorm with optional fused residual (common.cl is prepended).
 *
 *   h = x (+ residual, rounded to residual_out's dtype and stored there)
 *   y = (h - mean(h)) / sqrt(var(h) + eps) * weight (+ bias),  var the biased (1/row_len) variance
 *
 * The variance is computed stably as the mean of squared deviations from the already reduced mean
 * (two passes over h), never as E[h²] - mean².
 *
 * Work decomposition (as rmsnorm.cl): a row is handled by `row_threads` work-items (a power of two
 * chosen by the host); a group holds get_local_size(0) / row_threads rows; vector j of a row belongs to
 * work-item j % row_threads, so neighbouring work-items touch neighbouring addresses.
 *
 * Kernels, W = 8 (every row start, row stride and row_len a multiple of 8, weight/bias contiguous) or
 * W = 1 (anything):
 *   kf_layernorm_w<W>_r<N>   each work-item keeps its N vectors of h in registers, in their storage
 *                            width (kf_held8: bf16 in 4 registers): x is read once
 *   kf_layernorm_w<W>_stream any row length: pass 1 sums h (writing residual_out), pass 2 sums squared
 *                            deviations, pass 3 writes y; passes 2 and 3 re-read h (residual_out when
 *                            the residual is fused, else x), mostly from cache.
 * residual_out may alias x or residual exactly: every element is read by the work-item that writes it,
 * before it writes it.
 */

/* KF_FIXED_FLAGS (KF_NORM_HAS_* bits): the host may fix the operand set at build time, as KF_FIXED_DT
 * fixes the dtypes (GPUs only); -1 reads params.flags. */
#ifndef KF_FIXED_FLAGS
#define KF_FIXED_FLAGS (-1)
#endif

#define KF_LN_KERNEL_ARGS                                                                             \
  struct kf_norm_params p, const global uchar *x, const global uchar *residual, global uchar *residual_out, \
      const global uchar *weight, const global uchar *bias, global uchar *y, uint row_threads,          \
      local float *scratch

/* Per-row setup shared by every kernel: dtypes, flags and this work-item's place. */
#define KF_LN_SETUP(W)                                                                                \
  const uint x_dt = KF_DT_OF(p.dtypes, KF_NORM_DT_SHIFT_X);                                           \
  const uint r_dt = KF_DT_OF(p.dtypes, KF_NORM_DT_SHIFT_RESIDUAL);                                    \
  const uint ro_dt = KF_DT_OF(p.dtypes, KF_NORM_DT_SHIFT_RESIDUAL_OUT);                               \
  const uint w_dt = KF_DT_OF(p.dtypes, KF_NORM_DT_SHIFT_WEIGHT);                                      \
  const uint b_dt = KF_DT_OF(p.dtypes, KF_NORM_DT_SHIFT_BIAS);                                        \
  const uint y_dt = KF_DT_OF(p.dtypes, KF_NORM_DT_SHIFT_Y);                                           \
  const uint flags_ = KF_FIXED_FLAGS >= 0 ? (uint)KF_FIXED_FLAGS : p.flags;                           \
  const bool has_residual = (flags_ & KF_NORM_HAS_RESIDUAL) != 0;                                     \
  const bool has_weight = (flags_ & KF_NORM_HAS_WEIGHT) != 0;                                         \
  const bool has_bias = (flags_ & KF_NORM_HAS_BIAS) != 0;                                             \
  /* W == 8 implies contiguous weight/bias (the host checks). */                                      \
  const long weight_step = W == 1 ? p.weight_stride : 1, bias_step = W == 1 ? p.bias_stride : 1;      \
  const uint lid = get_local_id(0);                                                                   \
  const uint lane = lid & (row_threads - 1);                                                          \
  const uint rows_per_group = get_local_size(0) / row_threads;                                        \
  const long vecs = p.row_len / W;                                                                    \
  const float inv_len = 1.0f / (float)p.row_len;

/* Element indices of this work-item's row (row 0 for inactive work-items, which access nothing). */
#define KF_LN_ROW_START                                                                               \
  const long row = first_row + lid / row_threads;                                                     \
  const bool active = row < p.rows;                                                                   \
  const long r_ = active ? row : 0;                                                                   \
  const long x_row = (long)p.x + r_ * p.x_row_stride;                                                 \
  const long res_row = (long)p.residual + r_ * p.residual_row_stride;                                 \
  const long ro_row = (long)p.residual_out + r_ * p.residual_out_row_stride;                          \
  const long y_row = (long)p.y + r_ * p.y_row_stride;

#define KF_LN_ROW_LOOP                                                                                \
  for (long first_row = (long)get_group_id(0) * rows_per_group; first_row < p.rows;                   \
       first_row += (long)get_num_groups(0) * rows_per_group)

/* Chunk c of this work-item: vector j of the row, and the vector its loads read. A chunk past the
 * row's end re-reads the work-item's first vector (its own, so aliasing stays safe) and is never used:
 * the loads then need no branch, and the compiler issues all of them before the first use. */
#define KF_LN_J(c) (lane + (long)(c) * row_threads)
#define KF_LN_LOAD_J(c) (KF_LN_J(c) < vecs ? KF_LN_J(c) : (long)lane)

#define KF_LN_REGS_KERNEL(W, F, CHUNKS)                                                               \
  kernel void kf_layernorm_w##W##_r##CHUNKS(KF_LN_KERNEL_ARGS) {                                      \
    KF_LN_SETUP(W)                                                                                    \
    const uint h_dt = has_residual ? ro_dt : x_dt; /* the dtype h is held in */                       \
    KF_LN_ROW_LOOP {                                                                                  \
      KF_LN_ROW_START                                                                                 \
      /* Pass 1: h, held in its storage width (x's, or residual_out's when the residual is fused). */ \
      kf_held##W h[CHUNKS];                                                                           \
      float sum = 0.0f;                                                                               \
      if (active && lane < vecs) {                                                                    \
        KF_UNROLL for (int c = 0; c < CHUNKS; ++c) h[c] = kf_held_load##W(x, x_row + KF_LN_LOAD_J(c) * W, x_dt); \
        if (has_residual) {                                                                           \
          kf_held##W r[CHUNKS];                                                                       \
          KF_UNROLL for (int c = 0; c < CHUNKS; ++c)                                                  \
            r[c] = kf_held_load##W(residual, res_row + KF_LN_LOAD_J(c) * W, r_dt);                    \
          KF_UNROLL for (int c = 0; c < CHUNKS; ++c) {                                                \
            h[c] = kf_held_round##W(kf_held_value##W(h[c], x_dt) + kf_held_value##W(r[c], r_dt), ro_dt); \
            if (KF_LN_J(c) < vecs) kf_held_store##W(residual_out, ro_row + KF_LN_J(c) * W, h[c], ro_dt); \
          }                                                                                           \
        }                                                                                             \
        /* select(), not a branch (nor ?:, which compiles to one): under a branch the compiler sinks \
         * each load to its use, and each load then waits for the previous one's use. */              \
        KF_UNROLL for (int c = 0; c < CHUNKS; ++c)                                                    \
          sum += select(0.0f, kf_sum##W(kf_held_value##W(h[c], h_dt)), (int)(KF_LN_J(c) < vecs));     \
      }                                                                                               \
      const float mean = kf_row_reduce(sum, KF_REDUCE_SUM, scratch, lid, lane, row_threads) * inv_len; \
      /* Pass 2: squared deviations (h stays held; converting it again costs one operation). */       \
      float squares = 0.0f;                                                                           \
      if (active) {                                                                                   \
        KF_UNROLL for (int c = 0; c < CHUNKS; ++c) {                                                  \
          if (KF_LN_J(c) < vecs) {                                                                    \
            const F d = kf_held_value##W(h[c], h_dt) - mean;                                          \
            squares += kf_sum##W(d * d);                                                              \
          }                                                                                           \
        }                                                                                             \
      }                                                                                               \
      const float var = kf_row_reduce(squares, KF_REDUCE_SUM, scratch, lid, lane, row_threads) * inv_len; \
      const float inv_std = rsqrt(var + p.eps);                                                       \
      /* Pass 3: weight and bias loads first where held compactly (bf16 with the residual fused, or \
       * width 1), then y. Elsewhere they are loaded per vector, after the y before (every group reads \
       * the same weight and bias, so those loads mostly hit cache): prefetching costs registers, hence \
       * work-groups per SM. Measured on the H200: 8-wide f32 fell from 62% to 48% of copy with it;    \
       * bf16 without the residual rose from 57% to 73% without it (81% with the host's register cap); \
       * bf16 with the residual (twice the bytes per row to hide the same latency) is at 92% with it. */ \
      const bool prefetch_w = W == 1 || (w_dt == KF_DT_BF16 && has_residual);                          \
      const bool prefetch_b = W == 1 || (b_dt == KF_DT_BF16 && has_residual);                          \
      if (active && lane < vecs) {                                                                    \
        kf_held##W w[CHUNKS], b[CHUNKS];                                                              \
        if (has_weight && prefetch_w) {                                                               \
          KF_UNROLL for (int c = 0; c < CHUNKS; ++c)                                                  \
            w[c] = kf_held_load##W(weight, (long)p.weight + KF_LN_LOAD_J(c) * W * weight_step, w_dt); \
        }                                                                                             \
        if (has_bias && prefetch_b) {                                                                 \
          KF_UNROLL for (int c = 0; c < CHUNKS; ++c)                                                  \
            b[c] = kf_held_load##W(bias, (long)p.bias + KF_LN_LOAD_J(c) * W * bias_step, b_dt);       \
        }                                                                                             \
        KF_UNROLL for (int c = 0; c < CHUNKS; ++c) {                                                  \
          F out = (kf_held_value##W(h[c], h_dt) - mean) * inv_std;                                    \
          if (has_weight) {                                                                           \
            if (!prefetch_w) w[c] = kf_held_load##W(weight, (long)p.weight + KF_LN_LOAD_J(c) * W * weight_step, w_dt); \
            out *= kf_held_value##W(w[c], w_dt);                                                      \
          }                                                                                           \
          if (has_bias) {                                                                             \
            if (!prefetch_b) b[c] = kf_held_load##W(bias, (long)p.bias + KF_LN_LOAD_J(c) * W * bias_step, b_dt); \
            out += kf_held_value##W(b[c], b_dt);                                                      \
          }                                                                                           \
          if (KF_LN_J(c) < vecs) kf_store_rne##W(y, y_row + KF_LN_J(c) * W, out, y_dt);               \
        }                                                                                             \
      }                                                                                               \
    }                                                                                                 \
  }

/* Streaming kernel: h for the vector at element `col`: x (+ residual rounded to residual_out's dtype
 * and stored). */
#define KF_LN_LOAD_H(W, h, col)                                                                       \
  h = kf_load##W(x, x_row + (col), x_dt);                                                             \
  if (has_residual) {                                                                                 \
    const kf_held##W rounded_ = kf_held_round##W(h + kf_load##W(residual, res_row + (col), r_dt), ro_dt); \
    kf_held_store##W(residual_out, ro_row + (col), rounded_, ro_dt);                                  \
    h = kf_held_value##W(rounded_, ro_dt);                                                            \
  }

/* y for the vector at element `col` from normalized n = (h - mean) * inv_std. */
#define KF_LN_STORE_Y(W, F, n, col)                                                                   \
  {                                                                                                   \
    F out_ = (n);                                                                                     \
    if (has_weight) out_ *= kf_load##W(weight, (long)p.weight + (col) * weight_step, w_dt);           \
    if (has_bias) out_ += kf_load##W(bias, (long)p.bias + (col) * bias_step, b_dt);                   \
    kf_store_rne##W(y, y_row + (col), out_, y_dt);                                                    \
  }

/* Re-read of h in passes 2 and 3 of the streaming kernel: the same work-item stored residual_out[col]
 * in pass 1, so it reads its own write. */
#define KF_LN_RELOAD_H(W, col)                                                                        \
  (has_residual ? kf_load##W(residual_out, ro_row + (col), ro_dt) : kf_load##W(x, x_row + (col), x_dt))

#define KF_LN_STREAM_KERNEL(W, F)                                                                     \
  kernel void kf_layernorm_w##W##_stream(KF_LN_KERNEL_ARGS) {                                         \
    KF_LN_SETUP(W)                                                                                    \
    KF_LN_ROW_LOOP {                                                                                  \
      KF_LN_ROW_START                                                                                 \
      float sum = 0.0f;                                                                               \
      if (active) {                                                                                   \
        for (long j = lane; j < vecs; j += row_threads) {                                             \
          F h;                                                                                        \
          KF_LN_LOAD_H(W, h, j * W)                                                                   \
          sum += kf_sum##W(h);                                                                        \
        }                                                                                             \
      }                                                                                               \
      const float mean = kf_row_reduce(sum, KF_REDUCE_SUM, scratch, lid, lane, row_threads) * inv_len; \
      float squares = 0.0f;                                                                           \
      if (active) {                                                                                   \
        for (long j = lane; j < vecs; j += row_threads) {                                             \
          F d = KF_LN_RELOAD_H(W, j * W) - mean;                                                      \
          squares += kf_sum##W(d * d);                                                                \
        }                                                                                             \
      }                                                                                               \
      const float var = kf_row_reduce(squares, KF_REDUCE_SUM, scratch, lid, lane, row_threads) * inv_len; \
      const float inv_std = rsqrt(var + p.eps);                                                       \
      if (active) {                                                                                   \
        for (long j = lane; j < vecs; j += row_threads) KF_LN_STORE_Y(W, F, (KF_LN_RELOAD_H(W, j * W) - mean) * inv_std, j * W) \
      }                                                                                               \
    }                                                                                                 \
  }

KF_LN_REGS_KERNEL(8, float8, 1)
KF_LN_REGS_KERNEL(8, float8, 2)
KF_LN_REGS_KERNEL(8, float8, 4)
KF_LN_REGS_KERNEL(8, float8, 8)
KF_LN_STREAM_KERNEL(8, float8)
KF_LN_REGS_KERNEL(1, float, 1)
KF_LN_REGS_KERNEL(1, float, 2)
KF_LN_REGS_KERNEL(1, float, 4)
KF_LN_REGS_KERNEL(1, float, 8)
KF_LN_STREAM_KERNEL(1, float)

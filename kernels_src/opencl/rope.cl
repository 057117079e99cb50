/* rope.cl — rotary position embedding on Q and K in one launch (common.cl is prepended).
 *
 * For pair i of a head (i < rotary_dim / 2): angle = position * position_scale * inv_freq(i) with
 * inv_freq(i) = exp2(-(2i / rotary_dim) * log2(theta)), all in f32, and accurate sincos (angles reach
 * 1e5 rad for long contexts), or cos/sin from the table row of the position (cos of the rotary_dim/2
 * angles, then their sin; a position outside the table gives NaN). NeoX rotates (x[i], x[i + half]),
 * GPT-J (x[2i], x[2i+1]): (a, b) -> (a cos - b sin, a sin + b cos).
 *
 * Work decomposition: cos/sin depend on (token, pair) only, so a work-item computes them for a few
 * pairs and applies them to several heads of its token (Q heads first, then K heads). A token gets
 * pv_items * head_groups work-items: work-item `sub` takes pair vectors sub % pv_items (+ pv_items...)
 * and heads sub / pv_items (+ head_groups...). Neighbouring work-items cover a head's pair vectors,
 * then the next head: neighbouring addresses. A group holds get_local_size(0) / (pv_items *
 * head_groups) tokens, with a token loop so the host can bound the grid.
 *   kf_rope_neox8   8 pairs per vector: x[i..i+7] and x[half+i..half+i+7] (half a multiple of 8)
 *   kf_rope_gptj8   4 pairs per vector: x[2i..2i+7] (rotary_dim a multiple of 8)
 *   kf_rope_scalar  1 pair, either style
 * (the 8-wide kernels also need every offset and stride to be a multiple of 8: the host checks).
 *   kf_rope_tail    copies elements rotary_dim..head_dim to q_out/k_out (out of place only)
 * In place: each element is read and written by one work-item, read first.
 */

#define KF_ROPE_KERNEL_ARGS                                                                           \
  struct kf_rope_params p, global uchar *q, global uchar *k, global uchar *q_out, global uchar *k_out, \
      const global int *positions, const global float *cos_sin, uint pv_items, uint head_groups

/* Where head h of token t lives: its input and output element index, buffers and dtypes. */
#define KF_ROPE_HEAD                                                                                  \
  const bool is_q = h < (uint)p.q_heads;                                                              \
  const uint hh = is_q ? h : h - (uint)p.q_heads;                                                     \
  global uchar *in = is_q ? q : k;                                                                    \
  global uchar *outb = is_q ? q_out : k_out;                                                          \
  const long in_at = is_q ? (long)p.q + t * (long)p.q_token_stride + hh * (long)p.q_head_stride       \
                          : (long)p.k + t * (long)p.k_token_stride + hh * (long)p.k_head_stride;      \
  const long out_at = is_q ? (long)p.q_out + t * (long)p.q_out_token_stride + hh * (long)p.q_out_head_stride \
                           : (long)p.k_out + t * (long)p.k_out_token_stride + hh * (long)p.k_out_head_stride; \
  const uint in_dt = is_q ? q_dt : k_dt;                                                              \
  const uint out_dt = is_q ? qo_dt : ko_dt;

#define KF_ROPE_SETUP                                                                                 \
  const uint q_dt = KF_DT_OF(p.dtypes, KF_ROPE_DT_SHIFT_Q);                                           \
  const uint k_dt = KF_DT_OF(p.dtypes, KF_ROPE_DT_SHIFT_K);                                           \
  const uint qo_dt = KF_DT_OF(p.dtypes, KF_ROPE_DT_SHIFT_Q_OUT);                                      \
  const uint ko_dt = KF_DT_OF(p.dtypes, KF_ROPE_DT_SHIFT_K_OUT);                                      \
  const uint heads = (uint)p.q_heads + ((p.flags & KF_ROPE_HAS_K) ? (uint)p.k_heads : 0u);            \
  const bool table = (p.flags & KF_ROPE_HAS_COS_SIN) != 0;                                            \
  const uint half_dim = (uint)p.rotary_dim / 2;                                                       \
  const float log2_theta = log2(p.theta);                                                             \
  const uint items_per_token = pv_items * head_groups;                                                \
  const uint tokens_per_group = get_local_size(0) / items_per_token;                                  \
  const uint lid = get_local_id(0);                                                                   \
  const uint sub = lid % items_per_token;                                                             \
  const long token_step = (long)get_num_groups(0) * tokens_per_group;                                 \
  const bool item_active = lid < tokens_per_group * items_per_token;

/* cos/sin of pairs first .. first + W - 1 for position `pos` (F: float, float4 or float8). */
#define KF_ROPE_COS_SIN(W, F, VLOAD)                                                                  \
  F c, s;                                                                                             \
  if (table) {                                                                                        \
    if (pos >= 0 && pos < p.cos_sin_rows) {                                                           \
      const global float *row_ = cos_sin + (long)p.cos_sin + (long)pos * p.cos_sin_row_stride + first; \
      c = VLOAD(row_, 0);                                                                             \
      s = VLOAD(row_ + half_dim, 0);                                                                  \
    } else {                                                                                          \
      c = s = (F)NAN;                                                                                 \
    }                                                                                                 \
  } else {                                                                                            \
    const F i_ = (F)first + KF_ROPE_IOTA##W;                                                          \
    const F inv_freq = exp2(-((2.0f * i_) / (float)p.rotary_dim) * log2_theta);                       \
    const F angle = ((float)pos * p.position_scale) * inv_freq;                                       \
    s = sincos(angle, &c);                                                                            \
  }

#define KF_ROPE_IOTA1 0.0f
#define KF_ROPE_IOTA4 (float4)(0.0f, 1.0f, 2.0f, 3.0f)
#define KF_ROPE_IOTA8 (float8)(0.0f, 1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f, 7.0f)
#define KF_VLOAD1(ptr, i) (ptr)[i]
#define KF_VLOAD4(ptr, i) vload4(i, ptr)
#define KF_VLOAD8(ptr, i) vload8(i, ptr)

/* The token / pair-vector / head loops around the body (the variadic part, so its commas need no
 * parentheses; it sees t, pos, first, c, s and the KF_ROPE_HEAD names). */
#define KF_ROPE_LOOPS(PAIRS, F, VLOAD, ...)                                                          \
  if (!item_active) return;                                                                           \
  const uint pair_vecs = half_dim / PAIRS;                                                            \
  for (long t = (long)get_group_id(0) * tokens_per_group + lid / items_per_token; t < p.tokens; t += token_step) { \
    const int pos = positions[(long)p.positions + t * (long)p.positions_stride];                      \
    for (uint pv = sub % pv_items; pv < pair_vecs; pv += pv_items) {                                  \
      const uint first = pv * PAIRS;                                                                  \
      KF_ROPE_COS_SIN(PAIRS, F, VLOAD)                                                                \
      for (uint h = sub / pv_items; h < heads; h += head_groups) {                                    \
        KF_ROPE_HEAD                                                                                  \
        __VA_ARGS__                                                                                   \
      }                                                                                               \
    }                                                                                                 \
  }

kernel void kf_rope_neox8(KF_ROPE_KERNEL_ARGS) {
  KF_ROPE_SETUP
  KF_ROPE_LOOPS(8, float8, KF_VLOAD8, {
    const float8 a = kf_load8(in, in_at + first, in_dt);
    const float8 b = kf_load8(in, in_at + half_dim + first, in_dt);
    kf_store8(outb, out_at + first, a * c - b * s, out_dt);
    kf_store8(outb, out_at + half_dim + first, a * s + b * c, out_dt);
  })
}

kernel void kf_rope_gptj8(KF_ROPE_KERNEL_ARGS) {
  KF_ROPE_SETUP
  KF_ROPE_LOOPS(4, float4, KF_VLOAD4, {
    const float8 v = kf_load8(in, in_at + 2 * first, in_dt);
    const float4 a = v.even, b = v.odd;
    const float4 ra = a * c - b * s, rb = a * s + b * c;
    kf_store8(outb, out_at + 2 * first, (float8)(ra.s0, rb.s0, ra.s1, rb.s1, ra.s2, rb.s2, ra.s3, rb.s3), out_dt);
  })
}

kernel void kf_rope_scalar(KF_ROPE_KERNEL_ARGS) {
  KF_ROPE_SETUP
  const bool gptj = (p.flags & KF_ROPE_GPTJ_STYLE) != 0;
  KF_ROPE_LOOPS(1, float, KF_VLOAD1, {
    const long a_at = gptj ? 2 * (long)first : (long)first;
    const long b_at = gptj ? a_at + 1 : a_at + half_dim;
    const float a = kf_load1(in, in_at + a_at, in_dt);
    const float b = kf_load1(in, in_at + b_at, in_dt);
    kf_store1(outb, out_at + a_at, a * c - b * s, out_dt);
    kf_store1(outb, out_at + b_at, a * s + b * c, out_dt);
  })
}

/* Pass-through part of each head for out-of-place calls: dimension 0 walks the tail elements,
 * dimension 1 the heads (Q then K), dimension 2 the tokens (with a loop: the host bounds it). */
kernel void kf_rope_tail(KF_ROPE_KERNEL_ARGS) {
  const uint q_dt = KF_DT_OF(p.dtypes, KF_ROPE_DT_SHIFT_Q);
  const uint k_dt = KF_DT_OF(p.dtypes, KF_ROPE_DT_SHIFT_K);
  const uint qo_dt = KF_DT_OF(p.dtypes, KF_ROPE_DT_SHIFT_Q_OUT);
  const uint ko_dt = KF_DT_OF(p.dtypes, KF_ROPE_DT_SHIFT_K_OUT);
  const uint heads = (uint)p.q_heads + ((p.flags & KF_ROPE_HAS_K) ? (uint)p.k_heads : 0u);
  const long e = (long)p.rotary_dim + (long)get_global_id(0);
  const uint h = get_global_id(1);
  if (e >= p.head_dim || h >= heads) return;
  for (long t = get_global_id(2); t < p.tokens; t += get_global_size(2)) {
    KF_ROPE_HEAD
    kf_store1(outb, out_at + e, kf_load1(in, in_at + e, in_dt), out_dt);
  }
}

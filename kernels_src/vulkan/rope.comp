#version 460
/* rope.comp — rotary position embedding on Q and K in one dispatch, one workgroup per token.
 *
 * For pair i < rotary_dim/2 of every head: angle = position * position_scale * inv_freq[i],
 * inv_freq[i] = exp2(-(2i / rotary_dim) * log2(theta)), and (a, b) -> (a cos - b sin, a sin + b cos),
 * where (a, b) = (x[i], x[i + rotary_dim/2]) for NeoX and (x[2i], x[2i+1]) for GPT-J. Elements from
 * rotary_dim to head_dim pass through (copied only when the output is another tensor).
 *
 * A token's cos/sin are computed once (or read from the cos_sin table) into shared memory and used by
 * all q_heads + k_heads heads; inv_freq is computed once per workgroup. Then the token's heads are cut
 * into units, each one chunk (NeoX: the same chunk of both halves) of one head, and invocation t takes
 * units t, t + WG, ...; so each element is read and written by one invocation only, which makes
 * in-place calls safe.
 *
 * cos/sin are accurate for the large angles of long contexts (|angle| up to ~2e5 rad): see kf_sincos.
 */
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_GOOGLE_include_directive : require

#include "kernels_src/common/kf_params.h"

/* Workgroup size, chosen by the host (kf_vk_rope in backend_vulkan/vulkan_ops.c). */
layout(local_size_x_id = 6) in;

layout(constant_id = 0) const uint Q_DTYPE = KF_DT_F32;
layout(constant_id = 1) const uint K_DTYPE = KF_DT_F32;
layout(constant_id = 2) const uint Q_OUT_DTYPE = KF_DT_F32;
layout(constant_id = 3) const uint K_OUT_DTYPE = KF_DT_F32;
/* 16-byte accesses: the host sets this only when every head of every operand starts 16-byte aligned,
 * the rotated part is whole chunks (NeoX: rotary_dim/2 % CHUNK == 0; GPT-J: rotary_dim % CHUNK == 0)
 * and so is the pass-through part when it is copied. */
layout(constant_id = 4) const bool VECTORIZED = false;
/* The rotary pairs of one token fit the shared arrays (rotary_dim/2 <= MAX_SHARED_PAIRS); else every
 * unit computes its own cos/sin. */
layout(constant_id = 5) const bool SHARED_ANGLES = true;
/* Out of place: the pass-through elements are copied to q_out/k_out. */
layout(constant_id = 7) const bool COPY_PASS_THROUGH = false;

layout(push_constant) uniform Push {
  kf_rope_params p;
};

#include "kernels_src/vulkan/kf_chunks.glsl"

/* 512 pairs (rotary_dim 1024, 4x the largest head in use) × (inv_freq, cos, sin) × 4 bytes = 6 KiB per
 * workgroup: small enough that shared memory never limits how many workgroups an SM holds (16 × 6 KiB
 * on NVIDIA). Keep in sync with KF_VK_ROPE_MAX_SHARED_PAIRS in backend_vulkan/vulkan_ops.c. */
#define MAX_SHARED_PAIRS 512
shared float shared_inv_freq[MAX_SHARED_PAIRS];
shared vec2 shared_cos_sin[MAX_SHARED_PAIRS];

layout(buffer_reference, std430, buffer_reference_align = 4) buffer Int4 { int value; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer Float4 { float value; };

/* log2(x) for finite x > 0, to about 1 ulp: x = 2^e m with m in [sqrt(1/2), sqrt(2)), and
 * log2(m) = 2 atanh(s) / ln 2 with s = (m - 1) / (m + 1), |s| <= 0.1716, by its series up to s^13
 * (the next term is below 2^-30 relative). GLSL's log2 may be off by 3 ulp, and an inv_freq error
 * becomes an angle error proportional to the position. */
float kf_log2(float x) {
  int e;
  float m = frexp(x, e); /* x = m 2^e, m in [0.5, 1) */
  if (m < 0.70710678) {
    m *= 2.0;
    e -= 1;
  }
  float s = (m - 1.0) / (m + 1.0);
  float s2 = s * s;
  float series = 1.0 / 13.0;
  series = series * s2 + 1.0 / 11.0;
  series = series * s2 + 1.0 / 9.0;
  series = series * s2 + 1.0 / 7.0;
  series = series * s2 + 1.0 / 5.0;
  series = series * s2 + 1.0 / 3.0;
  series = series * s2 + 1.0;
  const float two_over_ln2 = 2.8853900817779268; /* 2 / ln 2 */
  return float(e) + two_over_ln2 * (s * series);
}

/* 2^x to within about half an ulp (GLSL's exp2 may be off by 3 + 2|x| ulp): x = k + f with integer
 * k and f in [-0.5, 0.5] (exact), 2^f = sum (f ln2)^n / n! to degree 8 with the coefficients folded
 * (remainder below 2^-30), so no rounded f * ln2 enters. */
float kf_exp2(float x) {
  float k = floor(x + 0.5);
  float f = x - k;
  float series = 1.3215486790144305e-6;
  series = series * f + 1.5252733804059838e-5;
  series = series * f + 1.5403530393381606e-4;
  series = series * f + 1.3333558146428441e-3;
  series = series * f + 9.618129107628477e-3;
  series = series * f + 5.5504108664821576e-2;
  series = series * f + 0.2402265069591007;
  series = series * f + 0.6931471805599453;
  series = 1.0 + f * series;
  return ldexp(series, int(k));
}

/* (cos x, sin x) in f32, accurate for |x| up to 2^17 * pi/2 (about 2e5 rad), degrading gradually
 * beyond. GLSL's sin/cos are only required to be within 2^-11 absolute on [-pi, pi], and drivers reduce
 * large arguments with one f32 multiply (an error of about |x| * 2^-24 rad: ~6e-3 at 1e5), so the
 * reduction is done here: k = the nearest integer to x / (pi/2), r = x - k pi/2 with pi/2 split
 * Cody-Waite style into C1 + C2 + C3 (at most 7 significant bits each, so k * Ci is exact for
 * |k| < 2^17, and each subtraction is exact since its result fits 24 bits at the granularity of its
 * operands) + C4 (the f32 remainder: the only rounding). A 2-constant split would lose ~1e-5 rad at
 * 1e5 without FMA, and Vulkan does not guarantee that a*b+c is fused. Then sin/cos of r in about
 * [-pi/4, pi/4] by Taylor series to degree 11 / 12 (truncation below 2^-32), and k mod 4 picks the
 * quadrant. */
vec2 kf_sincos(float x) {
  const float C1 = 1.5625;                /* 25 / 2^4 */
  const float C2 = 8.1787109375e-3;       /* 67 / 2^13 */
  const float C3 = 1.1730194091796875e-4; /* 123 / 2^20 */
  const float C4 = 3.1391647865048130e-7; /* pi/2 - C1 - C2 - C3, rounded to f32 */
  float k = floor(x * 0.63661977236758134 + 0.5);
  precise float r = x - k * C1;
  r = r - k * C2;
  r = r - k * C3;
  r = r - k * C4;
  float r2 = r * r;
  float s = -1.0 / 39916800.0;
  s = s * r2 + 1.0 / 362880.0;
  s = s * r2 - 1.0 / 5040.0;
  s = s * r2 + 1.0 / 120.0;
  s = s * r2 - 1.0 / 6.0;
  s = r + r * (r2 * s);
  float c = 1.0 / 479001600.0;
  c = c * r2 - 1.0 / 3628800.0;
  c = c * r2 + 1.0 / 40320.0;
  c = c * r2 - 1.0 / 720.0;
  c = c * r2 + 1.0 / 24.0;
  c = c * r2 - 0.5;
  c = 1.0 + r2 * c;
  int quadrant = int(k) & 3;
  if (quadrant == 0) return vec2(c, s);
  if (quadrant == 1) return vec2(-s, c);
  if (quadrant == 2) return vec2(-c, -s);
  return vec2(s, -c);
}

float inv_freq(int pair, float log2_theta) {
  return kf_exp2(-(float(2 * pair) / float(p.rotary_dim)) * log2_theta);
}

/* (cos, sin) of `pair` for a token at `position`: computed, or from the table (NaN outside it). */
vec2 token_cos_sin(int pair, int position, float inv_frequency) {
  if ((p.flags & KF_ROPE_HAS_COS_SIN) != 0u) {
    if (position < 0 || position >= p.cos_sin_rows) return vec2(uintBitsToFloat(0x7fc00000u));
    uint64_t row = p.cos_sin + uint64_t(int64_t(position) * int64_t(p.cos_sin_row_stride)) * 4ul;
    float cosine = Float4(row + uint64_t(pair) * 4ul).value;
    float sine = Float4(row + uint64_t(pair + p.rotary_dim / 2) * 4ul).value;
    return vec2(cosine, sine);
  }
  return kf_sincos(float(position) * p.position_scale * inv_frequency);
}

vec2 pair_cos_sin(int pair, int position, float log2_theta) {
  if (SHARED_ANGLES) return shared_cos_sin[pair];
  bool has_table = (p.flags & KF_ROPE_HAS_COS_SIN) != 0u;
  return token_cos_sin(pair, position, has_table ? 0.0 : inv_freq(pair, log2_theta));
}

/* Rotated unit `unit` of one head; in_base/out_base address the head's first element. */
void rotate_unit(uint in_dtype, uint out_dtype, uint64_t in_base, uint64_t out_base, int unit, int position,
                 float log2_theta) {
  const int half_dim = p.rotary_dim / 2;
  vec2 cs[CHUNK];
  if ((p.flags & KF_ROPE_GPTJ_STYLE) != 0u) {
    /* Chunk `unit` of [0, rotary_dim): CHUNK/2 interleaved pairs (clamped pairs feed only elements
     * past the row, which are not stored). */
    [[unroll]] for (int j = 0; j < CHUNK / 2; ++j)
      cs[j] = pair_cos_sin(min(unit * (CHUNK / 2) + j, half_dim - 1), position, log2_theta);
    vec4 lo, hi;
    load_values(in_dtype, in_base, unit, p.rotary_dim, 1, lo, hi);
    vec4 out_lo = vec4(lo.x * cs[0].x - lo.y * cs[0].y, lo.x * cs[0].y + lo.y * cs[0].x,
                       lo.z * cs[1].x - lo.w * cs[1].y, lo.z * cs[1].y + lo.w * cs[1].x);
    vec4 out_hi = vec4(hi.x * cs[2].x - hi.y * cs[2].y, hi.x * cs[2].y + hi.y * cs[2].x,
                       hi.z * cs[3].x - hi.w * cs[3].y, hi.z * cs[3].y + hi.w * cs[3].x);
    store_values(out_dtype, out_base, unit, p.rotary_dim, out_lo, out_hi);
  } else {
    /* Chunk `unit` of [0, rotary_dim/2) and the same chunk of [rotary_dim/2, rotary_dim). */
    [[unroll]] for (int j = 0; j < CHUNK; ++j)
      cs[j] = pair_cos_sin(min(unit * CHUNK + j, half_dim - 1), position, log2_theta);
    const uint64_t in_second = in_base + uint64_t(half_dim) * dtype_size(in_dtype);
    const uint64_t out_second = out_base + uint64_t(half_dim) * dtype_size(out_dtype);
    vec4 a_lo, a_hi, b_lo, b_hi;
    load_values(in_dtype, in_base, unit, half_dim, 1, a_lo, a_hi);
    load_values(in_dtype, in_second, unit, half_dim, 1, b_lo, b_hi);
    vec4 cos_lo = vec4(cs[0].x, cs[1].x, cs[2].x, cs[3].x), cos_hi = vec4(cs[4].x, cs[5].x, cs[6].x, cs[7].x);
    vec4 sin_lo = vec4(cs[0].y, cs[1].y, cs[2].y, cs[3].y), sin_hi = vec4(cs[4].y, cs[5].y, cs[6].y, cs[7].y);
    store_values(out_dtype, out_base, unit, half_dim, a_lo * cos_lo - b_lo * sin_lo, a_hi * cos_hi - b_hi * sin_hi);
    store_values(out_dtype, out_second, unit, half_dim, a_lo * sin_lo + b_lo * cos_lo, a_hi * sin_hi + b_hi * cos_hi);
  }
}

/* Copies chunk `unit` of [rotary_dim, head_dim) (out of place only). */
void pass_through_unit(uint in_dtype, uint out_dtype, uint64_t in_base, uint64_t out_base, int unit) {
  const int rest = p.head_dim - p.rotary_dim;
  vec4 lo, hi;
  load_values(in_dtype, in_base + uint64_t(p.rotary_dim) * dtype_size(in_dtype), unit, rest, 1, lo, hi);
  store_values(out_dtype, out_base + uint64_t(p.rotary_dim) * dtype_size(out_dtype), unit, rest, lo, hi);
}

/* The position of `token`, or 0 past the last token. */
int load_position(int token) {
  if (token >= p.tokens) return 0;
  return Int4(p.positions + uint64_t(int64_t(token) * int64_t(p.positions_stride)) * 4ul).value;
}

void main() {
  const int workgroup_size = int(gl_WorkGroupSize.x);
  const int tid = int(gl_LocalInvocationID.x);
  const int half_dim = p.rotary_dim / 2;
  const bool gptj = (p.flags & KF_ROPE_GPTJ_STYLE) != 0u;
  const bool has_table = (p.flags & KF_ROPE_HAS_COS_SIN) != 0u;
  const float log2_theta = kf_log2(p.theta);
  const int rotated_units = gptj ? (p.rotary_dim + CHUNK - 1) / CHUNK : (half_dim + CHUNK - 1) / CHUNK;
  const int pass_units = COPY_PASS_THROUGH ? (p.head_dim - p.rotary_dim + CHUNK - 1) / CHUNK : 0;
  const int units_per_head = rotated_units + pass_units;
  const int k_heads = (p.flags & KF_ROPE_HAS_K) != 0u ? p.k_heads : 0;
  const int units = (p.q_heads + k_heads) * units_per_head;

  if (SHARED_ANGLES && !has_table)
    for (int pair = tid; pair < half_dim; pair += workgroup_size) shared_inv_freq[pair] = inv_freq(pair, log2_theta);

  /* More tokens than workgroups (the dispatch is capped at maxComputeWorkGroupCount[0]): stride. Each
   * token's position is loaded one token ahead, so its memory latency overlaps the previous token. */
  const int token_step = int(gl_NumWorkGroups.x);
  int next_position = load_position(int(gl_WorkGroupID.x));
  for (int token = int(gl_WorkGroupID.x); token < p.tokens; token += token_step) {
    const int position = next_position;
    next_position = load_position(token + token_step);
    if (SHARED_ANGLES) {
      barrier(); /* shared_inv_freq is written, and the previous token's shared_cos_sin no longer read */
      for (int pair = tid; pair < half_dim; pair += workgroup_size)
        shared_cos_sin[pair] = token_cos_sin(pair, position, has_table ? 0.0 : shared_inv_freq[pair]);
      barrier();
    }
    for (int u = tid; u < units; u += workgroup_size) {
      const int head = u / units_per_head;
      const int unit = u - head * units_per_head;
      if (head < p.q_heads) {
        const uint64_t in_base = p.q + uint64_t(int64_t(token) * p.q_token_stride + int64_t(head) * p.q_head_stride) *
                                           dtype_size(Q_DTYPE);
        const uint64_t out_base =
            p.q_out + uint64_t(int64_t(token) * p.q_out_token_stride + int64_t(head) * p.q_out_head_stride) *
                          dtype_size(Q_OUT_DTYPE);
        if (unit < rotated_units) rotate_unit(Q_DTYPE, Q_OUT_DTYPE, in_base, out_base, unit, position, log2_theta);
        else pass_through_unit(Q_DTYPE, Q_OUT_DTYPE, in_base, out_base, unit - rotated_units);
      } else {
        const int h = head - p.q_heads;
        const uint64_t in_base =
            p.k + uint64_t(int64_t(token) * p.k_token_stride + int64_t(h) * p.k_head_stride) * dtype_size(K_DTYPE);
        const uint64_t out_base =
            p.k_out + uint64_t(int64_t(token) * p.k_out_token_stride + int64_t(h) * p.k_out_head_stride) *
                          dtype_size(K_OUT_DTYPE);
        if (unit < rotated_units) rotate_unit(K_DTYPE, K_OUT_DTYPE, in_base, out_base, unit, position, log2_theta);
        else pass_through_unit(K_DTYPE, K_OUT_DTYPE, in_base, out_base, unit - rotated_units);
      }
    }
  }
}

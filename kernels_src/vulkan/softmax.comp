#version 460
/* softmax.comp — y = softmax(x * scale + mask) over each row, one workgroup per row.
 *
 * Invocation t owns chunks t, t + WG, ... of the row (so each element is read, then written, by one
 * invocation: y may be x itself). It keeps the values v = x * scale + mask of its first CACHED_CHUNKS
 * chunks in registers as e = exp(v - m_t), where m_t is its own maximum, and folds every further chunk
 * into an online (maximum, sum) pair (the running sum rescaled whenever the maximum grows). One
 * workgroup reduction of the (m_t, s_t) pairs gives the row's maximum M and sum S = sum_t s_t e^(m_t-M);
 * then y = e * (e^(m_t - M) / S) for cached values, and uncached chunks are re-read and recomputed.
 * Rows up to WG * CHUNK * CACHED_CHUNKS elements are thus read once and written once.
 *
 * -inf: values of -inf contribute 0; an invocation whose values are all -inf has m_t = -inf and s_t = 0
 * (guarded, not exp(-inf - -inf)); a row that is all -inf has M = -inf and gives NaN (0/0), as the
 * mathematical definition does.
 */
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#extension GL_EXT_shader_16bit_storage : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_GOOGLE_include_directive : require

#include "kernels_src/common/kf_params.h"

/* Chunks per invocation held in registers as f32 (8 floats each): 4 is 32 registers, and with the
 * host's workgroup sizes (up to 512) rows up to 16384 elements stay on chip. */
#define CACHED_CHUNKS 4
/* Workgroup size, chosen per pipeline by the host as for the norms (kf_vk_softmax). */
#define MAX_WORKGROUP_SIZE 512
layout(local_size_x_id = 5) in;

layout(constant_id = 0) const uint X_DTYPE = KF_DT_F32;
layout(constant_id = 1) const uint MASK_DTYPE = KF_DT_F32;
layout(constant_id = 2) const uint Y_DTYPE = KF_DT_F32;
layout(constant_id = 3) const bool HAS_MASK = false;
/* 16-byte accesses: row_len % CHUNK == 0 and every row of x, mask and y starts 16-byte aligned. */
layout(constant_id = 4) const bool VECTORIZED = false;

layout(push_constant) uniform Push {
  kf_softmax_params p;
};

#include "kernels_src/vulkan/kf_chunks.glsl"

/* One (maximum, sum) slot per subgroup, sized for 1-invocation subgroups: 4 KiB. */
shared vec2 subgroup_partials[MAX_WORKGROUP_SIZE];

#define NEG_INF uintBitsToFloat(0xff800000u)

/* v = x * scale (+ mask) for one chunk; elements past n are -inf (they contribute nothing). */
void chunk_values(uint64_t x_row, uint64_t mask_row, int chunk, int n, out vec4 lo, out vec4 hi) {
  load_values(X_DTYPE, x_row, chunk, n, 1, lo, hi);
  lo *= p.scale;
  hi *= p.scale;
  if (HAS_MASK) {
    vec4 m_lo, m_hi;
    load_values(MASK_DTYPE, mask_row, chunk, n, 1, m_lo, m_hi);
    lo += m_lo;
    hi += m_hi;
  }
  if (!VECTORIZED) {
    const int first = chunk * CHUNK;
    [[unroll]] for (int i = 0; i < 4; ++i) {
      if (first + i >= n) lo[i] = NEG_INF;
      if (first + 4 + i >= n) hi[i] = NEG_INF;
    }
  }
}

float chunk_max(vec4 lo, vec4 hi) {
  vec4 m = max(lo, hi);
  return max(max(m.x, m.y), max(m.z, m.w));
}

/* exp(v - m), 0 where v is -inf (also when m is -inf, where v - m would be NaN). */
vec4 shifted_exp(vec4 v, float m) {
  vec4 e = exp(v - m);
  return mix(e, vec4(0.0), equal(v, vec4(NEG_INF)));
}

void main() {
  const int n = p.row_len;
  const int chunks = n / CHUNK + (n % CHUNK != 0 ? 1 : 0);
  const int workgroup_size = int(gl_WorkGroupSize.x);
  const int tid = int(gl_LocalInvocationID.x);

  for (int64_t row = int64_t(gl_WorkGroupID.x); row < p.rows; row += int64_t(gl_NumWorkGroups.x)) {
    const uint64_t x_row = p.x + uint64_t(row * p.x_row_stride) * dtype_size(X_DTYPE);
    const uint64_t mask_row = p.mask + uint64_t(row * p.mask_row_stride) * dtype_size(MASK_DTYPE);
    const uint64_t y_row = p.y + uint64_t(row * p.y_row_stride) * dtype_size(Y_DTYPE);

    /* Cached chunks: values, then this invocation's maximum over them. */
    vec4 e_lo[CACHED_CHUNKS], e_hi[CACHED_CHUNKS];
    float m = NEG_INF;
    [[unroll]] for (int k = 0; k < CACHED_CHUNKS; ++k) {
      int chunk = tid + k * workgroup_size;
      e_lo[k] = vec4(NEG_INF);
      e_hi[k] = vec4(NEG_INF);
      if (chunk < chunks) chunk_values(x_row, mask_row, chunk, n, e_lo[k], e_hi[k]);
      m = max(m, chunk_max(e_lo[k], e_hi[k]));
    }
    /* The rest of a long row: online maximum and sum. */
    float s = 0.0;
    for (int chunk = tid + CACHED_CHUNKS * workgroup_size; chunk < chunks; chunk += workgroup_size) {
      vec4 lo, hi;
      chunk_values(x_row, mask_row, chunk, n, lo, hi);
      float grown = max(m, chunk_max(lo, hi));
      if (grown == NEG_INF) continue; /* everything so far is -inf */
      if (m != NEG_INF) s *= exp(m - grown);
      m = grown;
      vec4 e = shifted_exp(lo, m) + shifted_exp(hi, m);
      s += (e.x + e.y) + (e.z + e.w);
    }
    /* Cached values become e^(v - m), m now this invocation's maximum over all its values. */
    [[unroll]] for (int k = 0; k < CACHED_CHUNKS; ++k) {
      e_lo[k] = shifted_exp(e_lo[k], m);
      e_hi[k] = shifted_exp(e_hi[k], m);
      vec4 e = e_lo[k] + e_hi[k];
      s += (e.x + e.y) + (e.z + e.w);
    }

    /* Workgroup (maximum, sum): within each subgroup, then across subgroups in shared memory, every
     * invocation combining the subgroup partials in the same order. */
    float subgroup_max = subgroupMax(m);
    float subgroup_sum = subgroupAdd(m == NEG_INF ? 0.0 : s * exp(m - subgroup_max));
    if (subgroupElect()) subgroup_partials[gl_SubgroupID] = vec2(subgroup_max, subgroup_sum);
    barrier();
    float row_max = NEG_INF;
    for (uint g = 0u; g < gl_NumSubgroups; ++g) row_max = max(row_max, subgroup_partials[g].x);
    float row_sum = 0.0;
    for (uint g = 0u; g < gl_NumSubgroups; ++g) {
      vec2 partial = subgroup_partials[g];
      if (partial.x != NEG_INF) row_sum += partial.y * exp(partial.x - row_max);
    }
    barrier(); /* subgroup_partials is rewritten by the next row */
    const float inv_sum = 1.0 / row_sum;

    /* Output. For cached values e^(v - m) * e^(m - M) / S; an all -inf row has M = -inf, S = 0 and
     * gives NaN through e^(m - M) = e^NaN. */
    const float cached_factor = exp(m - row_max) * inv_sum;
    [[unroll]] for (int k = 0; k < CACHED_CHUNKS; ++k) {
      int chunk = tid + k * workgroup_size;
      if (chunk < chunks) store_values(Y_DTYPE, y_row, chunk, n, e_lo[k] * cached_factor, e_hi[k] * cached_factor);
    }
    for (int chunk = tid + CACHED_CHUNKS * workgroup_size; chunk < chunks; chunk += workgroup_size) {
      vec4 lo, hi;
      chunk_values(x_row, mask_row, chunk, n, lo, hi);
      store_values(Y_DTYPE, y_row, chunk, n, exp(lo - row_max) * inv_sum, exp(hi - row_max) * inv_sum);
    }
  }
}

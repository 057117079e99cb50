#version 460
/* norm.comp — RMSNorm and LayerNorm with an optional fused residual add, one workgroup per row.
 *
 *   h = x (+ residual; then residual_out = h, rounded to residual_out's dtype)
 *   RMSNorm:   y = h / sqrt(mean(h²) + eps) * weight (+ bias)
 *   LayerNorm: y = (h - mean(h)) / sqrt(mean((h - mean(h))²) + eps) * weight (+ bias)   (CENTERED)
 *
 * y normalizes h *as stored* in residual_out, so a later layer that reads residual_out sees exactly
 * the values that were normalized. Operands are buffer device addresses in the push-constant block
 * (kf_params.h); every operand's dtype, the optional operands, the load width and the norm are
 * specialization constants, so each pipeline is straight-line code for one combination (the backend
 * creates one pipeline per combination it meets and caches it); RMSNorm pipelines contain none of the
 * LayerNorm code.
 *
 * LayerNorm's variance is two-pass: the mean first, then the mean of squared deviations over the
 * register-cached h (re-read only beyond the cache), which has none of the cancellation of
 * E[h²] - E[h]².
 *
 * Work split: a row is cut into chunks of CHUNK consecutive elements; invocation t of the workgroup
 * owns chunks t, t + WG, t + 2 WG, ... in every pass, so every element is read and written by one
 * invocation only. That is what makes an exact alias of residual_out with x or residual safe without
 * barriers: each invocation reads an element before it writes the same element.
 */
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#extension GL_EXT_shader_16bit_storage : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_GOOGLE_include_directive : require

#include "kernels_src/common/kf_params.h"

/* Chunks each invocation keeps in registers between the reduction pass(es) and the output pass.
 * With the workgroup sizes below a row of up to 512 * CHUNK * CACHED_CHUNKS = 16384 elements is read
 * from memory once; longer rows re-read the part beyond that (from L2 on large-cache GPUs). 4 keeps the
 * worst case (f32 x and f32 residual both in flight) at 64 registers of cache per invocation, which
 * still leaves NVIDIA several 512-invocation workgroups per SM. */
#define CACHED_CHUNKS 4
/* Workgroup size, chosen per pipeline by the host (kf_vk_norm in backend_vulkan/vulkan_norm.c):
 * 256 invocations when the row fits 256 * CHUNK * CACHED_CHUNKS = 8192 elements, else 512. 256 (8 NVIDIA
 * warps, 4 AMD wave64s) keeps the common LLM rows (2048-8192) at 1-4 chunks per invocation with several
 * workgroups resident per SM to hide memory latency; 512 doubles the register-cached row length for
 * 12288/16384-wide models instead of re-reading. Both are within the 1024-invocation limit of every
 * desktop GPU and lavapipe. Rows under 256 chunks (2048 elements) use the next power of two >= 64, one
 * chunk per invocation, instead of idling most of a 256-wide workgroup. */
#define MAX_WORKGROUP_SIZE 512
layout(local_size_x_id = 10) in;

layout(constant_id = 0) const uint X_DTYPE = KF_DT_F32;
layout(constant_id = 1) const uint RESIDUAL_DTYPE = KF_DT_F32;
layout(constant_id = 2) const uint RESIDUAL_OUT_DTYPE = KF_DT_F32;
layout(constant_id = 3) const uint WEIGHT_DTYPE = KF_DT_F32;
layout(constant_id = 4) const uint BIAS_DTYPE = KF_DT_F32;
layout(constant_id = 5) const uint Y_DTYPE = KF_DT_F32;
layout(constant_id = 6) const bool HAS_WEIGHT = false;
layout(constant_id = 7) const bool HAS_BIAS = false;
layout(constant_id = 8) const bool HAS_RESIDUAL = false;
/* 16-byte loads and stores: the host sets this only when row_len % CHUNK == 0, every row of every
 * row operand starts 16-byte aligned, and weight/bias are contiguous and 16-byte aligned. Otherwise
 * every element is accessed on its own, bounds-checked, with the weight/bias strides. */
layout(constant_id = 9) const bool VECTORIZED = false;
/* LayerNorm (subtract the mean) instead of RMSNorm. */
layout(constant_id = 11) const bool CENTERED = false;

layout(push_constant) uniform Push {
  kf_norm_params p;
};

#include "kernels_src/vulkan/kf_chunks.glsl"

/* One slot per subgroup; sized for the smallest subgroup Vulkan allows (1 invocation). 2 KiB, the only
 * shared memory used: far inside NVIDIA's 48 KiB (and lavapipe's 32 KiB) per workgroup. */
shared float subgroup_sums[MAX_WORKGROUP_SIZE];

/* h = x + residual, rounded to residual_out's dtype and stored there; returns its raw bits. */
void add_residual(int chunk, int n, uint64_t residual_out_row, inout uvec4 a, inout uvec4 b, uvec4 residual_a,
                  uvec4 residual_b) {
  vec4 x_lo, x_hi, r_lo, r_hi;
  decode_chunk(X_DTYPE, a, b, x_lo, x_hi);
  decode_chunk(RESIDUAL_DTYPE, residual_a, residual_b, r_lo, r_hi);
  encode_chunk(RESIDUAL_OUT_DTYPE, x_lo + r_lo, x_hi + r_hi, a, b);
  store_chunk(RESIDUAL_OUT_DTYPE, residual_out_row, chunk, n, a, b);
}

/* The sum over the workgroup of every invocation's `value`: within each subgroup, then across
 * subgroups through shared memory. Every invocation adds the subgroup sums in the same order, so all
 * see the same total. Ends with a barrier, so subgroup_sums may be reused at once. */
float workgroup_sum(float value) {
  float subgroup_sum = subgroupAdd(value);
  if (subgroupElect()) subgroup_sums[gl_SubgroupID] = subgroup_sum;
  barrier();
  float total = 0.0;
  for (uint s = 0u; s < gl_NumSubgroups; ++s) total += subgroup_sums[s];
  barrier();
  return total;
}

/* Pass-1 contribution of a chunk: sum of squares (RMSNorm) or sum (LayerNorm). Elements past the row
 * are +0.0 and add nothing. */
float chunk_pass1(uint h_dtype, uvec4 a, uvec4 b) {
  vec4 lo, hi;
  decode_chunk(h_dtype, a, b, lo, hi);
  if (CENTERED) return (lo.x + lo.y + lo.z + lo.w) + (hi.x + hi.y + hi.z + hi.w);
  return dot(lo, lo) + dot(hi, hi);
}

/* LayerNorm: sum of (h - mean)² over the chunk's elements below n. */
float chunk_centered_squares(uint h_dtype, int chunk, int n, float mean, uvec4 a, uvec4 b) {
  vec4 lo, hi;
  decode_chunk(h_dtype, a, b, lo, hi);
  lo -= mean;
  hi -= mean;
  if (!VECTORIZED) {
    const int first = chunk * CHUNK;
    [[unroll]] for (int i = 0; i < 4; ++i) {
      if (first + i >= n) lo[i] = 0.0;
      if (first + 4 + i >= n) hi[i] = 0.0;
    }
  }
  return dot(lo, lo) + dot(hi, hi);
}

/* y = (h - shift) * inv_scale * weight + bias for one chunk. */
void write_output(uint h_dtype, int chunk, int n, uint64_t y_row, float shift, float inv_scale, uvec4 a, uvec4 b) {
  vec4 lo, hi;
  decode_chunk(h_dtype, a, b, lo, hi);
  if (CENTERED) {
    lo -= shift;
    hi -= shift;
  }
  lo *= inv_scale;
  hi *= inv_scale;
  if (HAS_WEIGHT) {
    vec4 w_lo, w_hi;
    load_values(WEIGHT_DTYPE, p.weight, chunk, n, p.weight_stride, w_lo, w_hi);
    lo *= w_lo;
    hi *= w_hi;
  }
  if (HAS_BIAS) {
    vec4 b_lo, b_hi;
    load_values(BIAS_DTYPE, p.bias, chunk, n, p.bias_stride, b_lo, b_hi);
    lo += b_lo;
    hi += b_hi;
  }
  store_values(Y_DTYPE, y_row, chunk, n, lo, hi);
}

void main() {
  const int n = p.row_len;
  const int chunks = n / CHUNK + (n % CHUNK != 0 ? 1 : 0);
  const int workgroup_size = int(gl_WorkGroupSize.x);
  const int tid = int(gl_LocalInvocationID.x);
  /* The dtype h is held in: residual_out's when the residual is fused, else x's. */
  const uint h_dtype = HAS_RESIDUAL ? RESIDUAL_OUT_DTYPE : X_DTYPE;

  /* More rows than workgroups (the dispatch is capped at maxComputeWorkGroupCount[0]): stride. */
  for (int64_t row = int64_t(gl_WorkGroupID.x); row < p.rows; row += int64_t(gl_NumWorkGroups.x)) {
    const uint64_t x_row = p.x + uint64_t(row * p.x_row_stride) * dtype_size(X_DTYPE);
    const uint64_t residual_row = p.residual + uint64_t(row * p.residual_row_stride) * dtype_size(RESIDUAL_DTYPE);
    const uint64_t residual_out_row =
        p.residual_out + uint64_t(row * p.residual_out_row_stride) * dtype_size(RESIDUAL_OUT_DTYPE);
    const uint64_t y_row = p.y + uint64_t(row * p.y_row_stride) * dtype_size(Y_DTYPE);
    /* Where later passes re-read h for chunks beyond the register cache. */
    const uint64_t h_row = HAS_RESIDUAL ? residual_out_row : x_row;

    uvec4 h_a[CACHED_CHUNKS], h_b[CACHED_CHUNKS];
    uvec4 r_a[CACHED_CHUNKS], r_b[CACHED_CHUNKS];
    float pass1 = 0.0;

    /* Pass 1, cached chunks: every load is issued before the first residual_out store. The compiler
     * could not hoist them itself, since residual_out may alias x or residual. */
    [[unroll]] for (int k = 0; k < CACHED_CHUNKS; ++k) {
      int chunk = tid + k * workgroup_size;
      if (chunk < chunks) {
        load_chunk(X_DTYPE, x_row, chunk, n, 1, h_a[k], h_b[k]);
        if (HAS_RESIDUAL) load_chunk(RESIDUAL_DTYPE, residual_row, chunk, n, 1, r_a[k], r_b[k]);
      }
    }
    [[unroll]] for (int k = 0; k < CACHED_CHUNKS; ++k) {
      int chunk = tid + k * workgroup_size;
      if (chunk < chunks) {
        if (HAS_RESIDUAL) add_residual(chunk, n, residual_out_row, h_a[k], h_b[k], r_a[k], r_b[k]);
        pass1 += chunk_pass1(h_dtype, h_a[k], h_b[k]);
      }
    }
    /* Pass 1, the rest of a long row. */
    for (int chunk = tid + CACHED_CHUNKS * workgroup_size; chunk < chunks; chunk += workgroup_size) {
      uvec4 a, b, residual_a, residual_b;
      load_chunk(X_DTYPE, x_row, chunk, n, 1, a, b);
      if (HAS_RESIDUAL) {
        load_chunk(RESIDUAL_DTYPE, residual_row, chunk, n, 1, residual_a, residual_b);
        add_residual(chunk, n, residual_out_row, a, b, residual_a, residual_b);
      }
      pass1 += chunk_pass1(h_dtype, a, b);
    }
    const float total1 = workgroup_sum(pass1);

    float shift = 0.0, inv_scale;
    if (CENTERED) {
      /* Pass 2 (LayerNorm): squared deviations from the mean. */
      shift = total1 / float(n);
      float squares = 0.0;
      [[unroll]] for (int k = 0; k < CACHED_CHUNKS; ++k) {
        int chunk = tid + k * workgroup_size;
        if (chunk < chunks) squares += chunk_centered_squares(h_dtype, chunk, n, shift, h_a[k], h_b[k]);
      }
      for (int chunk = tid + CACHED_CHUNKS * workgroup_size; chunk < chunks; chunk += workgroup_size) {
        uvec4 a, b;
        load_chunk(h_dtype, h_row, chunk, n, 1, a, b);
        squares += chunk_centered_squares(h_dtype, chunk, n, shift, a, b);
      }
      inv_scale = inversesqrt(workgroup_sum(squares) / float(n) + p.eps);
    } else {
      inv_scale = inversesqrt(total1 / float(n) + p.eps);
    }

    /* Output pass. */
    [[unroll]] for (int k = 0; k < CACHED_CHUNKS; ++k) {
      int chunk = tid + k * workgroup_size;
      if (chunk < chunks) write_output(h_dtype, chunk, n, y_row, shift, inv_scale, h_a[k], h_b[k]);
    }
    for (int chunk = tid + CACHED_CHUNKS * workgroup_size; chunk < chunks; chunk += workgroup_size) {
      uvec4 a, b;
      load_chunk(h_dtype, h_row, chunk, n, 1, a, b);
      write_output(h_dtype, chunk, n, y_row, shift, inv_scale, a, b);
    }
  }
}

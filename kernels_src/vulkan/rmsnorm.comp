#version 460
/* rmsnorm.comp — RMSNorm with an optional fused residual add, one workgroup per row.
 *
 *   h = x (+ residual; then residual_out = h, rounded to residual_out's dtype)
 *   y = h / sqrt(mean(h²) + eps) * weight (+ bias)
 *
 * y normalizes h *as stored* in residual_out, so a later layer that reads residual_out sees exactly
 * the values that were normalized. Operands are buffer device addresses in the push-constant block
 * (kf_params.h); every operand's dtype, the optional operands and the load width are specialization
 * constants, so each pipeline is straight-line code for one combination (the backend creates one
 * pipeline per combination it meets and caches it).
 *
 * Work split: a row is cut into chunks of CHUNK consecutive elements; invocation t of the workgroup
 * owns chunks t, t + WG, t + 2 WG, ... in both passes, so every element is read and written by one
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

/* Elements per chunk: one 16-byte load of 16-bit values, or two of f32 (16 bytes is the widest
 * load every GPU issues as one instruction). */
#define CHUNK 8
/* Chunks each invocation keeps in registers between the sum-of-squares pass and the output pass.
 * With the workgroup sizes below a row of up to 512 * CHUNK * CACHED_CHUNKS = 16384 elements is read
 * from memory once; longer rows re-read the part beyond that (from L2 on large-cache GPUs). 4 keeps the
 * worst case (f32 x and f32 residual both in flight) at 64 registers of cache per invocation, which
 * still leaves NVIDIA several 512-invocation workgroups per SM. */
#define CACHED_CHUNKS 4
/* Workgroup size, chosen per pipeline by the host (kf_vk_rmsnorm in backend_vulkan/vulkan_rmsnorm.c):
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

layout(push_constant) uniform Push {
  kf_norm_params p;
};

layout(buffer_reference, std430, buffer_reference_align = 16) buffer Bytes16 { uvec4 value; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer Bytes4 { uint value; };
layout(buffer_reference, std430, buffer_reference_align = 2) buffer Bytes2 { uint16_t value; };

/* One slot per subgroup; sized for the smallest subgroup Vulkan allows (1 invocation). 2 KiB, the only
 * shared memory used: far inside NVIDIA's 48 KiB (and lavapipe's 32 KiB) per workgroup. */
shared float subgroup_sums[MAX_WORKGROUP_SIZE];

uint64_t dtype_size(uint dtype) { return dtype == KF_DT_F32 ? 4ul : 2ul; }

/* A chunk is held as raw bits in two uvec4: f32 elements 0-3 in a and 4-7 in b; 16-bit elements
 * packed two per word in a (element 2j in the low half of a[j]), b unused. Raw bits halve the
 * registers that a cached 16-bit row needs. */

/* Loads chunk `chunk` of the vector at `base` (element i at base + i * stride * size). Elements at
 * or past n read as +0.0 (all-zero bits in every dtype), so they add nothing to the sum of squares. */
void load_chunk(uint dtype, uint64_t base, int chunk, int n, int stride, out uvec4 a, out uvec4 b) {
  a = uvec4(0u);
  b = uvec4(0u);
  if (VECTORIZED) {
    uint64_t address = base + uint64_t(chunk) * (CHUNK * dtype_size(dtype));
    a = Bytes16(address).value;
    if (dtype == KF_DT_F32) b = Bytes16(address + 16ul).value;
    return;
  }
  int first = chunk * CHUNK;
  [[unroll]] for (int i = 0; i < CHUNK; ++i) {
    int element = first + i;
    if (element < n) {
      uint64_t address = base + uint64_t(int64_t(element) * int64_t(stride)) * dtype_size(dtype);
      if (dtype == KF_DT_F32) {
        uint bits = Bytes4(address).value;
        if (i < 4) a[i] = bits; else b[i - 4] = bits;
      } else {
        a[i >> 1] |= uint(Bytes2(address).value) << ((i & 1) * 16);
      }
    }
  }
}

/* Stores chunk `chunk` of a row-major vector at `base` (stride 1); elements past n are not written. */
void store_chunk(uint dtype, uint64_t base, int chunk, int n, uvec4 a, uvec4 b) {
  if (VECTORIZED) {
    uint64_t address = base + uint64_t(chunk) * (CHUNK * dtype_size(dtype));
    Bytes16(address).value = a;
    if (dtype == KF_DT_F32) Bytes16(address + 16ul).value = b;
    return;
  }
  int first = chunk * CHUNK;
  [[unroll]] for (int i = 0; i < CHUNK; ++i) {
    int element = first + i;
    if (element < n) {
      uint64_t address = base + uint64_t(element) * dtype_size(dtype);
      if (dtype == KF_DT_F32) {
        Bytes4(address).value = i < 4 ? a[i] : b[i - 4];
      } else {
        Bytes2(address).value = uint16_t((a[i >> 1] >> ((i & 1) * 16)) & 0xffffu);
      }
    }
  }
}

/* f32 -> bf16 bits, round to nearest even; NaN stays a (quiet) NaN. */
uint bf16_bits(float value) {
  uint bits = floatBitsToUint(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return (bits >> 16) | 0x40u;
  return (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
}

/* f32 -> f16 bits, round to nearest even, in integer arithmetic: the rounding of the hardware
 * conversion (packHalf2x16, OpFConvert) is implementation-defined in Vulkan (some round toward zero),
 * and every backend must round alike. */
uint f16_bits(float value) {
  uint bits = floatBitsToUint(value);
  uint sign = (bits >> 16) & 0x8000u;
  uint magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return sign | 0x7e00u;   /* NaN */
  if (magnitude >= 0x477ff000u) return sign | 0x7c00u;  /* >= 65520 rounds to infinity */
  if (magnitude >= 0x38800000u) {                       /* normal f16: rebias the exponent by 112 */
    magnitude += 0xc8000fffu + ((magnitude >> 13) & 1u);
    return sign | (magnitude >> 13);
  }
  /* Subnormal f16 (or zero): the value in units of 2^-24, rounded to nearest even. */
  uint exponent = magnitude >> 23;
  if (exponent < 102u) return sign;                     /* below 2^-25: rounds to zero */
  uint mantissa = (magnitude & 0x7fffffu) | 0x800000u;
  uint shift = 126u - exponent;                         /* 14 ... 24 */
  uint result = mantissa >> shift;
  uint remainder = mantissa & ((1u << shift) - 1u);
  uint half_unit = 1u << (shift - 1u);
  if (remainder > half_unit || (remainder == half_unit && (result & 1u) != 0u)) result += 1u;
  return sign | result;
}

void decode_chunk(uint dtype, uvec4 a, uvec4 b, out vec4 lo, out vec4 hi) {
  if (dtype == KF_DT_F32) {
    lo = uintBitsToFloat(a);
    hi = uintBitsToFloat(b);
  } else if (dtype == KF_DT_F16) {
    lo = vec4(unpackHalf2x16(a.x), unpackHalf2x16(a.y));
    hi = vec4(unpackHalf2x16(a.z), unpackHalf2x16(a.w));
  } else {
    lo = uintBitsToFloat(uvec4(a.x << 16, a.x & 0xffff0000u, a.y << 16, a.y & 0xffff0000u));
    hi = uintBitsToFloat(uvec4(a.z << 16, a.z & 0xffff0000u, a.w << 16, a.w & 0xffff0000u));
  }
}

uint encode_pair(uint dtype, float even, float odd) {
  if (dtype == KF_DT_F16) return f16_bits(even) | (f16_bits(odd) << 16);
  return bf16_bits(even) | (bf16_bits(odd) << 16);
}

void encode_chunk(uint dtype, vec4 lo, vec4 hi, out uvec4 a, out uvec4 b) {
  if (dtype == KF_DT_F32) {
    a = floatBitsToUint(lo);
    b = floatBitsToUint(hi);
  } else {
    a = uvec4(encode_pair(dtype, lo.x, lo.y), encode_pair(dtype, lo.z, lo.w),
              encode_pair(dtype, hi.x, hi.y), encode_pair(dtype, hi.z, hi.w));
    b = uvec4(0u);
  }
}

/* h = x + residual, rounded to residual_out's dtype and stored there; returns its raw bits. */
void add_residual(int chunk, int n, uint64_t residual_out_row, inout uvec4 a, inout uvec4 b, uvec4 residual_a,
                  uvec4 residual_b) {
  vec4 x_lo, x_hi, r_lo, r_hi;
  decode_chunk(X_DTYPE, a, b, x_lo, x_hi);
  decode_chunk(RESIDUAL_DTYPE, residual_a, residual_b, r_lo, r_hi);
  encode_chunk(RESIDUAL_OUT_DTYPE, x_lo + r_lo, x_hi + r_hi, a, b);
  store_chunk(RESIDUAL_OUT_DTYPE, residual_out_row, chunk, n, a, b);
}

float chunk_sum_of_squares(uint h_dtype, uvec4 a, uvec4 b) {
  vec4 lo, hi;
  decode_chunk(h_dtype, a, b, lo, hi);
  return dot(lo, lo) + dot(hi, hi);
}

/* y = h * inv_rms * weight + bias for one chunk. */
void write_output(uint h_dtype, int chunk, int n, uint64_t y_row, float inv_rms, uvec4 a, uvec4 b) {
  vec4 lo, hi;
  decode_chunk(h_dtype, a, b, lo, hi);
  lo *= inv_rms;
  hi *= inv_rms;
  if (HAS_WEIGHT) {
    uvec4 wa, wb;
    vec4 w_lo, w_hi;
    load_chunk(WEIGHT_DTYPE, p.weight, chunk, n, p.weight_stride, wa, wb);
    decode_chunk(WEIGHT_DTYPE, wa, wb, w_lo, w_hi);
    lo *= w_lo;
    hi *= w_hi;
  }
  if (HAS_BIAS) {
    uvec4 ba, bb;
    vec4 b_lo, b_hi;
    load_chunk(BIAS_DTYPE, p.bias, chunk, n, p.bias_stride, ba, bb);
    decode_chunk(BIAS_DTYPE, ba, bb, b_lo, b_hi);
    lo += b_lo;
    hi += b_hi;
  }
  uvec4 ya, yb;
  encode_chunk(Y_DTYPE, lo, hi, ya, yb);
  store_chunk(Y_DTYPE, y_row, chunk, n, ya, yb);
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
    /* Where pass 2 re-reads h for chunks beyond the register cache. */
    const uint64_t h_row = HAS_RESIDUAL ? residual_out_row : x_row;

    uvec4 h_a[CACHED_CHUNKS], h_b[CACHED_CHUNKS];
    uvec4 r_a[CACHED_CHUNKS], r_b[CACHED_CHUNKS];
    float sum_of_squares = 0.0;

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
        sum_of_squares += chunk_sum_of_squares(h_dtype, h_a[k], h_b[k]);
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
      sum_of_squares += chunk_sum_of_squares(h_dtype, a, b);
    }

    /* Workgroup sum: within each subgroup, then across subgroups through shared memory. Every
     * invocation adds the subgroup sums in the same order, so all see the same total. */
    float subgroup_sum = subgroupAdd(sum_of_squares);
    if (subgroupElect()) subgroup_sums[gl_SubgroupID] = subgroup_sum;
    barrier();
    float total = 0.0;
    for (uint s = 0u; s < gl_NumSubgroups; ++s) total += subgroup_sums[s];
    const float inv_rms = inversesqrt(total / float(n) + p.eps);

    /* Pass 2. */
    [[unroll]] for (int k = 0; k < CACHED_CHUNKS; ++k) {
      int chunk = tid + k * workgroup_size;
      if (chunk < chunks) write_output(h_dtype, chunk, n, y_row, inv_rms, h_a[k], h_b[k]);
    }
    for (int chunk = tid + CACHED_CHUNKS * workgroup_size; chunk < chunks; chunk += workgroup_size) {
      uvec4 a, b;
      load_chunk(h_dtype, h_row, chunk, n, 1, a, b);
      write_output(h_dtype, chunk, n, y_row, inv_rms, a, b);
    }
    /* subgroup_sums is rewritten by the next row. */
    barrier();
  }
}

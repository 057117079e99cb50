/* kf_chunks.glsl — memory access and number formats shared by the Vulkan compute shaders.
 *
 * Data moves in chunks of CHUNK consecutive elements: one 16-byte load of 16-bit values, or two of
 * f32 (16 bytes is the widest load every GPU issues as one instruction). A chunk is held as raw bits
 * in two uvec4: f32 elements 0-3 in a and 4-7 in b; 16-bit elements packed two per word in a (element
 * 2j in the low half of a[j]), b unused. Raw bits halve the registers a cached 16-bit row needs.
 *
 * The including shader declares, before including this file:
 *   #extension GL_EXT_buffer_reference, GL_EXT_shader_explicit_arithmetic_types_int64,
 *              GL_EXT_shader_16bit_storage, GL_EXT_control_flow_attributes
 *   const bool VECTORIZED (a specialization constant): 16-byte accesses. The host sets it only when
 *   every chunk an access touches starts 16-byte aligned and holds CHUNK valid elements; otherwise
 *   each element is accessed on its own, bounds-checked.
 */
#ifndef KF_CHUNKS_GLSL_
#define KF_CHUNKS_GLSL_

#define CHUNK 8

layout(buffer_reference, std430, buffer_reference_align = 16) buffer Bytes16 { uvec4 value; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer Bytes4 { uint value; };
layout(buffer_reference, std430, buffer_reference_align = 2) buffer Bytes2 { uint16_t value; };

uint64_t dtype_size(uint dtype) { return dtype == KF_DT_F32 ? 4ul : 2ul; }

/* Loads chunk `chunk` of the vector at `base` (element i at base + i * stride * size). Elements at
 * or past n read as +0.0 (all-zero bits in every dtype). */
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

/* Stores chunk `chunk` of a contiguous vector at `base`; elements past n are not written. */
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

/* One element at `address` as f32. */
float load_scalar(uint dtype, uint64_t address) {
  if (dtype == KF_DT_F32) return uintBitsToFloat(Bytes4(address).value);
  uint bits = uint(Bytes2(address).value);
  if (dtype == KF_DT_F16) return unpackHalf2x16(bits).x;
  return uintBitsToFloat(bits << 16);
}

/* One element at `address`, rounded to nearest even in its dtype. */
void store_scalar(uint dtype, uint64_t address, float value) {
  if (dtype == KF_DT_F32) {
    Bytes4(address).value = floatBitsToUint(value);
  } else {
    Bytes2(address).value = uint16_t(dtype == KF_DT_F16 ? f16_bits(value) : bf16_bits(value));
  }
}

/* load_chunk + decode_chunk: the chunk's values as f32 (elements past n are +0.0). */
void load_values(uint dtype, uint64_t base, int chunk, int n, int stride, out vec4 lo, out vec4 hi) {
  uvec4 a, b;
  load_chunk(dtype, base, chunk, n, stride, a, b);
  decode_chunk(dtype, a, b, lo, hi);
}

/* encode_chunk + store_chunk: rounds to dtype (nearest even) and stores elements below n. */
void store_values(uint dtype, uint64_t base, int chunk, int n, vec4 lo, vec4 hi) {
  uvec4 a, b;
  encode_chunk(dtype, lo, hi, a, b);
  store_chunk(dtype, base, chunk, n, a, b);
}

#endif /* KF_CHUNKS_GLSL_ */

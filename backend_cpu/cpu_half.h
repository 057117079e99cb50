/* cpu_half.h — f16 / bf16 <-> f32 conversions for the CPU kernels, written without branches so that
 * gcc vectorizes the loops that call them (the core's kf_f16_to_f32 & co. are scalar and not inlined
 * across the library). Same results as the core's: round to nearest even, overflow to infinity,
 * subnormals kept, NaN stays NaN (quieted, payload kept where it fits).
 */
#ifndef KF_BACKEND_CPU_CPU_HALF_H_
#define KF_BACKEND_CPU_CPU_HALF_H_

#include <stdint.h>
#include <string.h>

static inline uint32_t kf_cpu_f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static inline float kf_cpu_bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static inline float kf_cpu_bf16_to_f32(uint16_t h) { return kf_cpu_bits_f32((uint32_t)h << 16); }

static inline uint16_t kf_cpu_f32_to_bf16(float f) {
  uint32_t u = kf_cpu_f32_bits(f);
  uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;  /* nearest even */
  uint32_t quiet_nan = (u >> 16) | 0x40u;
  return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}

/* f16 -> f32: move exponent and mantissa into place (<< 13) and rebias by multiplying with 2^112
 * (= 2^(127-15)); the multiply also normalizes f16 subnormals, which land on f32 subnormal bit
 * patterns before it. Inf/NaN (f16 exponent 31) come out as >= 2^16 and get the f32 all-ones
 * exponent, keeping the mantissa. */
static inline float kf_cpu_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  float magnitude = kf_cpu_bits_f32((uint32_t)(h & 0x7fffu) << 13) * 0x1p112f;
  uint32_t bits = kf_cpu_f32_bits(magnitude);
  bits |= magnitude >= 65536.0f ? 0x7f800000u : 0u;
  return kf_cpu_bits_f32(bits | sign);
}

/* f32 -> f16, three ranges:
 *  - |f| >= 65520 (rounds past the largest f16, 65504) -> inf; NaN -> quiet NaN;
 *  - |f| < 2^-14 (f16 subnormal): adding 0.5 makes the f32 adder round |f| at the f16 subnormal step
 *    2^-24 (0.5 has exponent -1; 2^-1 / 2^23 = 2^-24 per f32 ulp), nearest even; the low mantissa bits
 *    of the sum are then the f16 subnormal code;
 *  - normal: round the 23-bit mantissa to 10 bits (nearest even) and rebias the exponent 127 -> 15;
 *    a carry out of the mantissa correctly bumps the exponent. */
static inline uint16_t kf_cpu_f32_to_f16(float f) {
  uint32_t u = kf_cpu_f32_bits(f);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t abs = u & 0x7fffffffu;

  /* All three are computed and one is selected with masks: no branch, so the loops vectorize. */
  uint32_t is_nan = 0u - (uint32_t)(abs > 0x7f800000u);
  uint32_t special = 0x7c00u | (is_nan & (0x200u | ((abs >> 13) & 0x3ffu)));
  uint32_t subnormal = kf_cpu_f32_bits(kf_cpu_bits_f32(abs) + 0.5f) - 0x3f000000u;
  uint32_t normal = (abs + 0xfffu + ((abs >> 13) & 1u) - 0x38000000u) >> 13;

  uint32_t is_special = 0u - (uint32_t)(abs >= 0x477ff000u);
  uint32_t is_subnormal = 0u - (uint32_t)(abs < 0x38800000u);
  uint32_t finite = (subnormal & is_subnormal) | (normal & ~is_subnormal);
  return (uint16_t)(((special & is_special) | (finite & ~is_special)) | sign);
}

#endif /* KF_BACKEND_CPU_CPU_HALF_H_ */

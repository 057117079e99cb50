/* convert.c — host conversions between f32 and the 16- and 8-bit float formats (round to nearest
 * even, NaN stays NaN, overflow to infinity for f16/bf16 and saturation to ±448 for e4m3, which has no
 * infinity). Also dtype names and sizes. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "core/kfuse.h"

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

uint16_t kf_f32_to_bf16(float value) {
  uint32_t u = f32_bits(value);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);                                               /* nearest even */
  return (uint16_t)(u >> 16);
}

float kf_bf16_to_f32(uint16_t value) { return bits_f32((uint32_t)value << 16); }

uint16_t kf_f32_to_f16(float value) {
  uint32_t u = f32_bits(value);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((abs >> 13) & 0x3ffu)); /* NaN */
  if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: infinity */
  if (abs < 0x38800000u) {
    /* Result is subnormal (or zero): value / 2^-24 rounded to nearest even, done in f32 where the
     * addition of 0.5 (as 2^-1 * 2^-24 scale) rounds exactly once. */
    float magnitude = bits_f32(abs);
    /* 2^-24 is the f16 subnormal step; adding 0.5 (=2^-1) forces rounding at that position. */
    float scaled = magnitude * 16777216.0f; /* / 2^-24, exact */
    uint32_t q = (uint32_t)scaled;
    float frac = scaled - (float)q;
    if (frac > 0.5f || (frac == 0.5f && (q & 1u))) ++q;
    return (uint16_t)(sign | q);
  }
  /* Normal: rebias exponent (127 -> 15) and round the mantissa from 23 to 10 bits. */
  uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
  return (uint16_t)(sign | ((rounded - 0x38000000u) >> 13));
}

float kf_f16_to_f32(uint16_t value) {
  uint32_t sign = (uint32_t)(value & 0x8000u) << 16;
  uint32_t exponent = (value >> 10) & 0x1fu;
  uint32_t mantissa = value & 0x3ffu;
  if (exponent == 0x1f) return bits_f32(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {
    float f = (float)mantissa * (1.0f / 16777216.0f); /* subnormal: m * 2^-24, exact */
    return sign ? -f : f;
  }
  return bits_f32(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

/* FP8 e4m3 (OCP "E4M3FN"): bias 7, no infinities, 0x7f/0xff are NaN, max finite 448. */
static uint8_t f32_to_e4m3(float value) {
  if (isnan(value)) return 0x7f;
  uint8_t sign = signbit(value) ? 0x80 : 0x00;
  float a = fabsf(value);
  if (a >= 464.0f) return (uint8_t)(sign | 0x7e); /* saturate: 448 is the largest finite */
  if (a < 0.015625f) {                            /* below 2^-6: subnormal, step 2^-9 */
    float scaled = a * 512.0f;
    uint32_t q = (uint32_t)scaled;
    float frac = scaled - (float)q;
    if (frac > 0.5f || (frac == 0.5f && (q & 1u))) ++q;
    return (uint8_t)(sign | q); /* q == 8 becomes the smallest normal, which is the right encoding */
  }
  uint32_t u = f32_bits(a);
  uint32_t rounded = u + 0x7ffffu + ((u >> 20) & 1u); /* keep 3 mantissa bits */
  uint32_t exponent = ((rounded >> 23) & 0xffu) - 127u + 7u;
  uint32_t mantissa = (rounded >> 20) & 0x7u;
  uint8_t bits = (uint8_t)(sign | (exponent << 3) | mantissa);
  if ((bits & 0x7f) == 0x7f) bits = (uint8_t)(sign | 0x7e); /* would be NaN: saturate */
  return bits;
}

static float e4m3_to_f32(uint8_t value) {
  float sign = (value & 0x80) ? -1.0f : 1.0f;
  uint32_t exponent = (value >> 3) & 0xfu;
  uint32_t mantissa = value & 0x7u;
  if (exponent == 0xf && mantissa == 0x7) return NAN;
  if (exponent == 0) return sign * (float)mantissa * (1.0f / 512.0f);
  return sign * ldexpf(1.0f + (float)mantissa / 8.0f, (int)exponent - 7);
}

const char *kf_dtype_name(kf_dtype dtype) {
  switch (dtype) {
    case KF_F32: return "f32";
    case KF_F16: return "f16";
    case KF_BF16: return "bf16";
    case KF_F8_E4M3: return "f8e4m3";
    case KF_I32: return "i32";
    default: return NULL;
  }
}

size_t kf_dtype_size(kf_dtype dtype) {
  switch (dtype) {
    case KF_F32: return 4;
    case KF_F16: return 2;
    case KF_BF16: return 2;
    case KF_F8_E4M3: return 1;
    case KF_I32: return 4;
    default: return 0;
  }
}

static float load_as_f32(const void *src, kf_dtype dtype, size_t i) {
  switch (dtype) {
    case KF_F32: return ((const float *)src)[i];
    case KF_F16: return kf_f16_to_f32(((const uint16_t *)src)[i]);
    case KF_BF16: return kf_bf16_to_f32(((const uint16_t *)src)[i]);
    default: return e4m3_to_f32(((const uint8_t *)src)[i]);
  }
}

static void store_from_f32(void *dst, kf_dtype dtype, size_t i, float v) {
  switch (dtype) {
    case KF_F32: ((float *)dst)[i] = v; break;
    case KF_F16: ((uint16_t *)dst)[i] = kf_f32_to_f16(v); break;
    case KF_BF16: ((uint16_t *)dst)[i] = kf_f32_to_bf16(v); break;
    default: ((uint8_t *)dst)[i] = f32_to_e4m3(v); break;
  }
}

static int is_float_dtype(kf_dtype d) { return d == KF_F32 || d == KF_F16 || d == KF_BF16 || d == KF_F8_E4M3; }

kf_status kf_convert(const void *src, kf_dtype src_dtype, void *dst, kf_dtype dst_dtype, size_t count) {
  KF_API_ENTER("kf_convert");
  if (count == 0) return KF_OK;
  if (src == NULL) return kf_fail(KF_ERROR_NULL_ARGUMENT, "src is NULL");
  if (dst == NULL) return kf_fail(KF_ERROR_NULL_ARGUMENT, "dst is NULL");
  if (!is_float_dtype(src_dtype))
    return kf_fail(KF_ERROR_DTYPE_MISMATCH, "src_dtype %d is not a floating-point dtype", (int)src_dtype);
  if (!is_float_dtype(dst_dtype))
    return kf_fail(KF_ERROR_DTYPE_MISMATCH, "dst_dtype %d is not a floating-point dtype", (int)dst_dtype);
  if (src_dtype == dst_dtype) {
    memmove(dst, src, count * kf_dtype_size(src_dtype));
    return KF_OK;
  }
  for (size_t i = 0; i < count; ++i) store_from_f32(dst, dst_dtype, i, load_as_f32(src, src_dtype, i));
  return KF_OK;
}

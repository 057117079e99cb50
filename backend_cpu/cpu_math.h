/* cpu_math.h — exp and the activations built on it, written so that gcc vectorizes the loops that call
 * them. libm's expf is a call gcc -O2 cannot vectorize (libmvec needs -ffast-math), which makes
 * SwiGLU and softmax compute-bound at a fraction of memory bandwidth; this one is inline, branch-free
 * straight-line float/int arithmetic.
 *
 * kf_cpu_expf: exp(x) = 2^k * exp(r), k = round(x / ln 2), r = x - k ln 2 in [-ln2/2, ln2/2].
 *  - r is formed with ln 2 split in two (Cody-Waite): k * KF_LN2_HI is exact because KF_LN2_HI has
 *    16 significant bits and |k| <= 150 has 8;
 *  - exp(r) by its degree-7 Taylor polynomial: the truncation error, |r|^8 / 8! <= 5e-9 relative, is
 *    far below f32 rounding, so the result is within ~1 ulp (Horner rounding) of exp(x);
 *  - 2^k is applied as two factors 2^(k/2) and 2^(k - k/2), each a normal float, so results in the
 *    subnormal range are rounded once (by the last multiply) and overflow gives +inf naturally;
 *  - x is clamped to [-104, 89] first (exp(-104) < 2^-150 rounds to 0, exp(89) > FLT_MAX) so k stays
 *    in range; NaN fails both clamps' comparisons and propagates through the polynomial.
 */
#ifndef KF_BACKEND_CPU_CPU_MATH_H_
#define KF_BACKEND_CPU_CPU_MATH_H_

#include <stdint.h>

#include "backend_cpu/cpu_half.h"

#define KF_LOG2E 1.44269504088896341f
#define KF_LN2_HI 0.693145751953125f          /* 0x1.62e4p-1: ln 2 to 16 bits */
#define KF_LN2_LO 1.42860682030941723212e-6f  /* ln 2 - KF_LN2_HI */
/* Adding and subtracting 1.5 * 2^23 rounds a float of magnitude < 2^22 to an integer (nearest even). */
#define KF_ROUND_MAGIC 12582912.0f
#define KF_SQRT_2_OVER_PI 0.79788456080286535588f
#define KF_GELU_CUBIC 0.044715f

/* where ? a : b on the bits: a plain ?: on floats lets gcc constant-fold each branch separately (the
 * clamped one overflows at compile time, "could trap"), after which it refuses to if-convert and
 * vectorize the loop. */
static inline __attribute__((always_inline)) float kf_cpu_select(int where, float a, float b) {
  uint32_t mask = 0u - (uint32_t)where;
  return kf_cpu_bits_f32((kf_cpu_f32_bits(a) & mask) | (kf_cpu_f32_bits(b) & ~mask));
}

static inline __attribute__((always_inline)) float kf_cpu_expf(float x) {
  x = kf_cpu_select(x < -104.0f, -104.0f, x);
  x = kf_cpu_select(x > 89.0f, 89.0f, x);
  float k = (x * KF_LOG2E + KF_ROUND_MAGIC) - KF_ROUND_MAGIC;
  float r = (x - k * KF_LN2_HI) - k * KF_LN2_LO;
  float p = 1.0f / 5040.0f + r * (1.0f / 40320.0f);
  p = 1.0f / 720.0f + r * p;
  p = 1.0f / 120.0f + r * p;
  p = 1.0f / 24.0f + r * p;
  p = 1.0f / 6.0f + r * p;
  p = 0.5f + r * p;
  p = 1.0f + r * p;
  p = 1.0f + r * p;
  int32_t k_int = (int32_t)k;
  int32_t k_low = k_int >> 1;  /* floor(k/2): both factors in [-75, 65] */
  int32_t k_high = k_int - k_low;
  float scale_low = kf_cpu_bits_f32((uint32_t)(k_low + 127) << 23);
  float scale_high = kf_cpu_bits_f32((uint32_t)(k_high + 127) << 23);
  return p * scale_low * scale_high;
}

/* silu(g) = g / (1 + exp(-g)): for g -> -inf, exp overflows to +inf and the quotient is -0 (no NaN);
 * for g -> +inf, exp(-g) is 0 and the result is g. */
static inline __attribute__((always_inline)) float kf_cpu_silu(float g) { return g / (1.0f + kf_cpu_expf(-g)); }

/* gelu_tanh(g) = 0.5 g (1 + tanh(u)), u = sqrt(2/pi) (g + 0.044715 g^3), evaluated as g / (1 + exp(-2u))
 * (the identity 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u))): no cancellation of 1 + tanh(u) near -1 in the
 * negative tail, and the same overflow behavior as silu (g^3 overflowing to ±inf gives g or -0). */
static inline __attribute__((always_inline)) float kf_cpu_gelu_tanh(float g) {
  float u = KF_SQRT_2_OVER_PI * (g + KF_GELU_CUBIC * g * g * g);
  return g / (1.0f + kf_cpu_expf(-2.0f * u));
}

#endif /* KF_BACKEND_CPU_CPU_MATH_H_ */

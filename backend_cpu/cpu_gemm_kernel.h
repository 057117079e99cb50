/* cpu_gemm_kernel.h — the register-tiled f32 micro-kernel that GEMM and attention (its two products)
 * share, and their conversions between f32 and the operand dtypes (f8e4m3 inputs included).
 *
 * A product C += A·B over a depth of kc is computed from packed panels:
 *  - an A panel holds KF_GEMM_MR rows of A as [kc][KF_GEMM_MR] (the MR values of one depth step
 *    adjacent), a B panel KF_GEMM_NR columns of B as [kc][KF_GEMM_NR] (f32 tiles
 *    already in a suitable layout are used in place, see kf_cpu_gemm_micro);
 *  - the micro-kernel keeps an MR × NR tile of C in registers as MR vectors of NR floats and, per
 *    depth step, loads one B vector and multiplies it by MR broadcast A values.
 * Packing (cpu_gemm.c) converts every input dtype to f32 and absorbs transposes, so the kernel sees
 * one layout.
 * Panels are zero-padded to whole MR / NR tiles: a partial tile costs a little compute, never a branch
 * in the kernel, and the padding's products are exact zeros that nobody reads.
 *
 * Tile shape 6 × 16: 6 accumulator vectors of 16 floats are 12 AVX2 registers (of 16) plus two B
 * halves and a broadcast; on AVX-512 they are 6 zmm registers, enough independent FMA chains to cover
 * the 4-cycle FMA latency. Measured on this project's 2-core Zen 4 host: ~116 GFLOP/s per core for
 * the kernel alone, its FMA peak. Files that include this header put
 * `#pragma GCC optimize("fp-contract=fast")` before their includes: -std=c11 turns contraction off, and
 * without FMAs the kernel issues twice the floating-point instructions (~96 GFLOP/s measured). Every
 * product then rounds once instead of twice, which only makes it more accurate.
 */
#ifndef KF_BACKEND_CPU_CPU_GEMM_KERNEL_H_
#define KF_BACKEND_CPU_CPU_GEMM_KERNEL_H_

#include <stdint.h>
#include <string.h>

#include "backend_cpu/cpu_block.h"
#include "backend_cpu/cpu_half.h"

#define KF_GEMM_MR 6
#define KF_GEMM_NR 16
typedef float kf_gemm_row __attribute__((vector_size(KF_GEMM_NR * sizeof(float))));

/* FP8 e4m3 (OCP E4M3FN: bias 7, no infinities, S.1111.111 is NaN) -> f32, exact. Exponent and mantissa
 * are moved into the f32 fields (<< 20) and rebiased by 2^(127-7); as for f16, the multiply also
 * normalizes the subnormals (exponent 0, value m · 2^-9). Branch-free so the loops vectorize. */
static inline float kf_cpu_e4m3_to_f32(uint8_t value) {
  uint32_t sign = (uint32_t)(value & 0x80u) << 24;
  uint32_t magnitude_code = value & 0x7fu;
  uint32_t bits = kf_cpu_f32_bits(kf_cpu_bits_f32(magnitude_code << 20) * 0x1p120f);
  bits |= magnitude_code == 0x7fu ? 0x7fc00000u : 0u;
  return kf_cpu_bits_f32(bits | sign);
}

/* Converts count contiguous elements with `convert` in chunks of KF_CPU_LANES: a loop of fixed trip
 * count is vectorized wherever it is inlined, where kf_cpu_load_block's count & ~15 trip count is not
 * always recognized as a whole number of vectors (it stayed scalar in the packing loops here). */
#define KF_CPU_CONVERT_CHUNKED(convert, src, count, dst)                      \
  do {                                                                        \
    int i_ = 0;                                                               \
    for (; i_ + KF_CPU_LANES <= (count); i_ += KF_CPU_LANES)                  \
      for (int lane_ = 0; lane_ < KF_CPU_LANES; ++lane_)                      \
        (dst)[i_ + lane_] = convert((src)[i_ + lane_]);                       \
    for (; i_ < (count); ++i_) (dst)[i_] = convert((src)[i_]);                \
  } while (0)

/* count contiguous elements of any GEMM input or output dtype at src -> f32 dst. */
KF_ALWAYS_INLINE void kf_cpu_gemm_load(const char *src, kf_dtype dtype, int count, float *dst) {
  switch (dtype) {
    case KF_F16: KF_CPU_CONVERT_CHUNKED(kf_cpu_f16_to_f32, (const uint16_t *)src, count, dst); break;
    case KF_BF16: KF_CPU_CONVERT_CHUNKED(kf_cpu_bf16_to_f32, (const uint16_t *)src, count, dst); break;
    case KF_F8_E4M3: KF_CPU_CONVERT_CHUNKED(kf_cpu_e4m3_to_f32, (const uint8_t *)src, count, dst); break;
    default: memcpy(dst, src, (size_t)count * sizeof(float)); break;
  }
}

/* f32 src -> count contiguous f32/f16/bf16 elements at dst, nearest even (kf_cpu_store_block with
 * the loops written as KF_CPU_CONVERT_CHUNKED). */
KF_ALWAYS_INLINE void kf_cpu_gemm_store(char *dst, kf_dtype dtype, const float *src, int count) {
  switch (dtype) {
    case KF_F16: KF_CPU_CONVERT_CHUNKED(kf_cpu_f32_to_f16, src, count, (uint16_t *)dst); break;
    case KF_BF16: KF_CPU_CONVERT_CHUNKED(kf_cpu_f32_to_bf16, src, count, (uint16_t *)dst); break;
    default: memcpy(dst, src, (size_t)count * sizeof(float)); break;
  }
}

/* c[MR][NR] (rows ldc apart) = (accumulate ? c : 0) + A · B over kc depth steps, where A's element
 * (i, p) is a[i * a_row_step + p * a_depth_step] and B's depth step p is the NR floats at
 * b + p * b_depth_step. Packed panels are (a, 1, KF_GEMM_MR) and (b, KF_GEMM_NR); attention passes
 * its row-major K tile (a, head_dim, 1) and its Pᵀ tile (a, 1, row length) in place. */
KF_ALWAYS_INLINE void kf_cpu_gemm_micro(int kc, const float *a, int64_t a_row_step, int64_t a_depth_step,
                                        const float *b, int64_t b_depth_step, float *c, int64_t ldc, int accumulate) {
  kf_gemm_row acc[KF_GEMM_MR];
  /* Unrolled so that the accumulators become registers instead of an array in memory. */
#pragma GCC unroll 16
  for (int i = 0; i < KF_GEMM_MR; ++i) {
    if (accumulate) memcpy(&acc[i], c + i * ldc, sizeof acc[i]);
    else acc[i] = (kf_gemm_row){0};
  }
  for (int p = 0; p < kc; ++p) {
    kf_gemm_row b_row;
    memcpy(&b_row, b + p * b_depth_step, sizeof b_row);
    const float *a_step = a + p * a_depth_step;
#pragma GCC unroll 16
    for (int i = 0; i < KF_GEMM_MR; ++i) acc[i] += a_step[i * a_row_step] * b_row;
  }
#pragma GCC unroll 16
  for (int i = 0; i < KF_GEMM_MR; ++i) memcpy(c + i * ldc, &acc[i], sizeof acc[i]);
}

/* count contiguous elements at src as f32: src itself when it is f32 (no copy), else converted into
 * `line`. */
KF_ALWAYS_INLINE const float *kf_cpu_gemm_row(const char *src, kf_dtype dtype, int count, float *line) {
  if (dtype == KF_F32) return (const float *)src;
  kf_cpu_gemm_load(src, dtype, count, line);
  return line;
}

#endif /* KF_BACKEND_CPU_CPU_GEMM_KERNEL_H_ */

/* cpu_block.h — the block scheme every CPU kernel is written in.
 *
 * An operand's row is processed in blocks of KF_CPU_BLOCK elements: each block is loaded into an f32
 * scratch array (converting from the operand's dtype), computed on, and stored back (converting to the
 * output's dtype, nearest even). Every compute loop then runs over exactly KF_CPU_BLOCK floats of one
 * type: a compile-time trip count with no epilogue is what gcc -O2's "very cheap" vectorizer cost
 * model requires, and the dtype switch happens once per block instead of once per element. A row's
 * tail block is loaded with its real length and padded (the padding's value chosen per op so that it
 * does not change the result); loads and stores never touch memory past the row.
 */
#ifndef KF_BACKEND_CPU_CPU_BLOCK_H_
#define KF_BACKEND_CPU_CPU_BLOCK_H_

#include <stdint.h>
#include <string.h>

#include "backend_cpu/cpu_half.h"
#include "backend_cpu/cpu_internal.h"

/* 256 f32: a handful of scratch blocks (3-4 KiB) stays inside L1, and 256 is a multiple of every
 * vector width (4, 8, 16 floats). */
#define KF_CPU_BLOCK 256
/* Independent partial sums in the block reductions: 16 = one AVX-512 register or 4 SSE registers,
 * enough to hide the add latency. Loads and stores of a count not known at compile time (row tails,
 * RoPE's half heads) run a loop of count rounded down to a multiple of it, then the rest: gcc's
 * cheap cost model vectorizes a loop whose trip count is a known multiple of the vector width and
 * leaves one of unknown count scalar. */
#define KF_CPU_LANES 16
/* Work is handed to the pool in chunks of at least this many elements: below it the cost of waking
 * a worker (a few microseconds) exceeds the work. */
#define KF_CPU_MIN_CHUNK_ELEMENTS 32768

#define KF_ALWAYS_INLINE static inline __attribute__((always_inline))

/* On a function that runs a kernel's blocks (everything it calls is KF_ALWAYS_INLINE): compiled also
 * for AVX2 and AVX-512 and picked at load time (an ifunc), since the library is built for baseline
 * x86-64 (SSE2) and these ops are compute-bound there. Results are identical on every path: ISO C
 * mode (-std=c11) keeps floating-point contraction off, so no FMA is formed, and every reduction has
 * a fixed order (kf_cpu_lanes). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define KF_CPU_KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KF_CPU_KERNEL
#endif

/* Element (row, 0) of a row-major operand (col_stride 1), or of row `row` of any operand. */
KF_ALWAYS_INLINE char *kf_cpu_row(const kf_tensor_arg *operand, size_t elem_size, int64_t row) {
  return kf_cpu_buffer_data(operand->buffer) + (size_t)(operand->offset + row * operand->row_stride) * elem_size;
}

/* count contiguous elements of dtype at src -> f32 dst. */
KF_ALWAYS_INLINE void kf_cpu_load_block(const char *src, kf_dtype dtype, int count, float *dst) {
  const int vector_count = count & ~(KF_CPU_LANES - 1); /* see KF_CPU_LANES */
  switch (dtype) {
    case KF_F16: {
      const uint16_t *s = (const uint16_t *)src;
      for (int i = 0; i < vector_count; ++i) dst[i] = kf_cpu_f16_to_f32(s[i]);
      for (int i = vector_count; i < count; ++i) dst[i] = kf_cpu_f16_to_f32(s[i]);
      break;
    }
    case KF_BF16: {
      const uint16_t *s = (const uint16_t *)src;
      for (int i = 0; i < vector_count; ++i) dst[i] = kf_cpu_bf16_to_f32(s[i]);
      for (int i = vector_count; i < count; ++i) dst[i] = kf_cpu_bf16_to_f32(s[i]);
      break;
    }
    default:
      memcpy(dst, src, (size_t)count * sizeof(float));
      break;
  }
}

/* count elements of dtype, `stride` elements apart, at src -> f32 dst (weight/bias/mask gathers). */
KF_ALWAYS_INLINE void kf_cpu_load_strided(const char *src, kf_dtype dtype, int64_t stride, int count, float *dst) {
  size_t elem_size = kf_dtype_size(dtype);
  for (int i = 0; i < count; ++i) {
    const char *p = src + (size_t)((int64_t)i * stride) * elem_size;
    uint16_t half;
    switch (dtype) {
      case KF_F16: memcpy(&half, p, 2); dst[i] = kf_cpu_f16_to_f32(half); break;
      case KF_BF16: memcpy(&half, p, 2); dst[i] = kf_cpu_bf16_to_f32(half); break;
      default: memcpy(&dst[i], p, 4); break;
    }
  }
}

/* f32 src -> count contiguous elements of dtype at dst, nearest even. */
KF_ALWAYS_INLINE void kf_cpu_store_block(char *dst, kf_dtype dtype, const float *src, int count) {
  const int vector_count = count & ~(KF_CPU_LANES - 1);
  switch (dtype) {
    case KF_F16: {
      uint16_t *d = (uint16_t *)dst;
      for (int i = 0; i < vector_count; ++i) d[i] = kf_cpu_f32_to_f16(src[i]);
      for (int i = vector_count; i < count; ++i) d[i] = kf_cpu_f32_to_f16(src[i]);
      break;
    }
    case KF_BF16: {
      uint16_t *d = (uint16_t *)dst;
      for (int i = 0; i < vector_count; ++i) d[i] = kf_cpu_f32_to_bf16(src[i]);
      for (int i = vector_count; i < count; ++i) d[i] = kf_cpu_f32_to_bf16(src[i]);
      break;
    }
    default:
      memcpy(dst, src, (size_t)count * sizeof(float));
      break;
  }
}

/* Block reductions in KF_CPU_LANES independent partial results combined by a fixed tree: the same
 * order on every machine and thread count. gcc vector types because gcc will not reorder a float
 * reduction on its own (that would change results). */
typedef float kf_cpu_lanes __attribute__((vector_size(KF_CPU_LANES * sizeof(float))));
typedef int32_t kf_cpu_lane_mask __attribute__((vector_size(KF_CPU_LANES * sizeof(int32_t))));

KF_ALWAYS_INLINE float kf_cpu_lanes_sum(const kf_cpu_lanes *acc) {
  float lanes[KF_CPU_LANES];
  memcpy(lanes, acc, sizeof lanes);
  for (int width = KF_CPU_LANES / 2; width > 0; width /= 2)
    for (int j = 0; j < width; ++j) lanes[j] += lanes[j + width];
  return lanes[0];
}

/* Sum of a whole block. */
KF_ALWAYS_INLINE float kf_cpu_block_sum(const float *v) {
  kf_cpu_lanes acc = {0};
  for (int i = 0; i < KF_CPU_BLOCK; i += KF_CPU_LANES) {
    kf_cpu_lanes x;
    memcpy(&x, v + i, sizeof x);
    acc += x;
  }
  return kf_cpu_lanes_sum(&acc);
}

/* Sum of squares of a whole block. */
KF_ALWAYS_INLINE float kf_cpu_block_sum_squares(const float *v) {
  kf_cpu_lanes acc = {0};
  for (int i = 0; i < KF_CPU_BLOCK; i += KF_CPU_LANES) {
    kf_cpu_lanes x;
    memcpy(&x, v + i, sizeof x);
    acc += x * x;
  }
  return kf_cpu_lanes_sum(&acc);
}

/* Maximum of a whole block, NaNs ignored (they propagate through the exp that follows instead);
 * -inf when every element is -inf or NaN. */
KF_ALWAYS_INLINE float kf_cpu_block_max(const float *v) {
  kf_cpu_lanes acc;
  for (int j = 0; j < KF_CPU_LANES; ++j) acc[j] = -__builtin_inff();
  for (int i = 0; i < KF_CPU_BLOCK; i += KF_CPU_LANES) {
    kf_cpu_lanes x;
    memcpy(&x, v + i, sizeof x);
    kf_cpu_lane_mask greater = x > acc; /* false for NaN: keeps acc */
    kf_cpu_lane_mask acc_bits, x_bits;
    memcpy(&acc_bits, &acc, sizeof acc);
    memcpy(&x_bits, &x, sizeof x);
    acc_bits = (x_bits & greater) | (acc_bits & ~greater);
    memcpy(&acc, &acc_bits, sizeof acc);
  }
  float lanes[KF_CPU_LANES];
  memcpy(lanes, &acc, sizeof lanes);
  float m = lanes[0];
  for (int j = 1; j < KF_CPU_LANES; ++j) m = lanes[j] > m ? lanes[j] : m;
  return m;
}

#endif /* KF_BACKEND_CPU_CPU_BLOCK_H_ */

/* cpu_rmsnorm.c — RMSNorm (with the optional fused residual add) on the CPU.
 *
 *   h = x                      or, with a residual,  h = round_{residual_out dtype}(x + residual)
 *   y = h / sqrt(mean(h²) + eps) * weight + bias
 *
 * Residual rounding (the contract every backend follows): x + residual is added in f32, rounded to
 * residual_out's dtype and stored; mean(h²) and y are then computed from that *stored* value. So y is
 * exactly rmsnorm(residual_out) — what an unfused "add, then norm" would give, and what the next layer
 * sees as its residual stream — and no backend's answer depends on keeping an unrounded copy around.
 *
 * Each row is processed in two passes over blocks of KF_NORM_BLOCK elements: pass 1 forms h (storing
 * residual_out), pass 2 reads h back and writes y. Within a block every operand is loaded into (and
 * stored from) an f32 scratch array, so each loop has a compile-time trip count and one dtype, which
 * is what lets gcc -O2 vectorize it; the dtype of each operand is chosen per block, so any mix of
 * f32/f16/bf16 operands takes the same path. A block's x and residual are both loaded before its
 * residual_out is stored, and y is stored after h is loaded, so residual_out may alias x or residual,
 * and y may alias x, element for element.
 *
 * Accumulation: squares are summed in f32 within a block (KF_NORM_LANES independent partial sums,
 * then a fixed tree), and the block sums in double. The result is at least as accurate as the GPU
 * backends' f32 tree reductions and does not depend on the number of threads.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu/cpu_half.h"
#include "backend_cpu/cpu_internal.h"
#include "backend_cpu/threadpool.h"

/* 256 f32 per block: three scratch blocks (h, residual, y) are 3 KiB, well inside L1, and 256 is a
 * multiple of every vector width (4, 8, 16 floats). */
#define KF_NORM_BLOCK 256
/* Independent partial sums of squares: 16 = one AVX-512 register or 4 SSE registers, enough to hide
 * the add latency. */
#define KF_NORM_LANES 16
/* Rows are handed to the pool in chunks of at least this many elements: below it the cost of waking
 * a worker (a few microseconds) exceeds the work. */
#define KF_NORM_MIN_CHUNK_ELEMENTS 32768

#define KF_ALWAYS_INLINE static inline __attribute__((always_inline))

KF_ALWAYS_INLINE void load_block(const char *src, kf_dtype dtype, int count, float *dst) {
  switch (dtype) {
    case KF_F16: {
      const uint16_t *s = (const uint16_t *)src;
      for (int i = 0; i < count; ++i) dst[i] = kf_cpu_f16_to_f32(s[i]);
      break;
    }
    case KF_BF16: {
      const uint16_t *s = (const uint16_t *)src;
      for (int i = 0; i < count; ++i) dst[i] = kf_cpu_bf16_to_f32(s[i]);
      break;
    }
    default:
      memcpy(dst, src, (size_t)count * sizeof(float));
      break;
  }
}

KF_ALWAYS_INLINE void store_block(char *dst, kf_dtype dtype, const float *src, int count) {
  switch (dtype) {
    case KF_F16: {
      uint16_t *d = (uint16_t *)dst;
      for (int i = 0; i < count; ++i) d[i] = kf_cpu_f32_to_f16(src[i]);
      break;
    }
    case KF_BF16: {
      uint16_t *d = (uint16_t *)dst;
      for (int i = 0; i < count; ++i) d[i] = kf_cpu_f32_to_bf16(src[i]);
      break;
    }
    default:
      memcpy(dst, src, (size_t)count * sizeof(float));
      break;
  }
}

/* Sum of squares of a whole block (the tail of a row is zero-padded), in KF_NORM_LANES independent
 * partial sums combined by a fixed tree: the same order on every machine and thread count. A gcc
 * vector type because gcc will not reorder a float reduction on its own (that would change results). */
typedef float kf_norm_lanes __attribute__((vector_size(KF_NORM_LANES * sizeof(float))));

KF_ALWAYS_INLINE float block_sum_squares(const float *h) {
  kf_norm_lanes acc = {0};
  for (int i = 0; i < KF_NORM_BLOCK; i += KF_NORM_LANES) {
    kf_norm_lanes v;
    memcpy(&v, h + i, sizeof v);
    acc += v * v;
  }
  float lanes[KF_NORM_LANES];
  memcpy(lanes, &acc, sizeof lanes);
  for (int width = KF_NORM_LANES / 2; width > 0; width /= 2)
    for (int j = 0; j < width; ++j) lanes[j] += lanes[j + width];
  return lanes[0];
}

typedef struct norm_job {
  const kf_norm_args *args;
  size_t size_x, size_residual, size_residual_out, size_y; /* bytes per element */
  const float *weight; /* row_len f32, contiguous; NULL when absent */
  const float *bias;
} norm_job;

static const char *row_start(const kf_tensor_arg *operand, size_t elem_size, int64_t row) {
  return kf_cpu_buffer_data(operand->buffer) + (size_t)(operand->offset + row * operand->row_stride) * elem_size;
}

/* Pass 1 for the block at column `col` of `count` (<= KF_NORM_BLOCK) elements: h into `h`. */
KF_ALWAYS_INLINE void form_h(const norm_job *job, const char *x, const char *residual, char *residual_out,
                             int64_t col, int count, float *h, float *scratch) {
  const kf_norm_args *a = job->args;
  load_block(x + (size_t)col * job->size_x, a->x.dtype, count, h);
  if (!residual) return;
  load_block(residual + (size_t)col * job->size_residual, a->residual.dtype, count, scratch);
  for (int i = 0; i < count; ++i) h[i] += scratch[i];
  char *stored = residual_out + (size_t)col * job->size_residual_out;
  store_block(stored, a->residual_out.dtype, h, count);
  load_block(stored, a->residual_out.dtype, count, h); /* normalize h as stored */
}

/* Pass 2 for one block: y = h * inv_rms * weight + bias. */
KF_ALWAYS_INLINE void write_y(const norm_job *job, const char *h_src, kf_dtype h_dtype, size_t h_size, char *y,
                              int64_t col, int count, float inv_rms, float *h) {
  load_block(h_src + (size_t)col * h_size, h_dtype, count, h);
  const float *w = job->weight ? job->weight + col : NULL;
  const float *b = job->bias ? job->bias + col : NULL;
  if (w && b) {
    for (int i = 0; i < count; ++i) h[i] = h[i] * inv_rms * w[i] + b[i];
  } else if (w) {
    for (int i = 0; i < count; ++i) h[i] = h[i] * inv_rms * w[i];
  } else if (b) {
    for (int i = 0; i < count; ++i) h[i] = h[i] * inv_rms + b[i];
  } else {
    for (int i = 0; i < count; ++i) h[i] = h[i] * inv_rms;
  }
  store_block(y + (size_t)col * job->size_y, job->args->y.dtype, h, count);
}

static void norm_rows(void *arg, int64_t row_begin, int64_t row_end) {
  const norm_job *job = arg;
  const kf_norm_args *a = job->args;
  const int64_t row_len = a->row_len;
  const int64_t full_end = row_len - row_len % KF_NORM_BLOCK;
  float h[KF_NORM_BLOCK] __attribute__((aligned(64)));
  float scratch[KF_NORM_BLOCK] __attribute__((aligned(64)));

  for (int64_t row = row_begin; row < row_end; ++row) {
    const char *x = row_start(&a->x, job->size_x, row);
    const char *residual = a->residual.buffer ? row_start(&a->residual, job->size_residual, row) : NULL;
    char *residual_out =
        a->residual_out.buffer ? (char *)row_start(&a->residual_out, job->size_residual_out, row) : NULL;
    char *y = (char *)row_start(&a->y, job->size_y, row);

    double sum_squares = 0.0;
    int64_t col = 0;
    for (; col < full_end; col += KF_NORM_BLOCK) {
      form_h(job, x, residual, residual_out, col, KF_NORM_BLOCK, h, scratch);
      sum_squares += block_sum_squares(h);
    }
    if (col < row_len) {
      int tail = (int)(row_len - col);
      form_h(job, x, residual, residual_out, col, tail, h, scratch);
      memset(h + tail, 0, (size_t)(KF_NORM_BLOCK - tail) * sizeof(float));
      sum_squares += block_sum_squares(h);
    }

    const float inv_rms = (float)(1.0 / sqrt(sum_squares / (double)row_len + (double)a->eps));
    /* Pass 2 reads h where pass 1 left it: residual_out (rounded) or x. */
    const char *h_src = residual ? residual_out : x;
    const kf_dtype h_dtype = residual ? a->residual_out.dtype : a->x.dtype;
    const size_t h_size = residual ? job->size_residual_out : job->size_x;
    for (col = 0; col < full_end; col += KF_NORM_BLOCK)
      write_y(job, h_src, h_dtype, h_size, y, col, KF_NORM_BLOCK, inv_rms, h);
    if (col < row_len) write_y(job, h_src, h_dtype, h_size, y, col, (int)(row_len - col), inv_rms, h);
  }
}

/* weight / bias as contiguous f32: used in place when already so, else gathered into *owned. */
static kf_status vector_as_f32(const kf_tensor_arg *operand, int64_t row_len, const float **out, float **owned) {
  *out = NULL;
  *owned = NULL;
  if (!operand->buffer) return KF_OK;
  const char *base = kf_cpu_buffer_data(operand->buffer);
  size_t elem_size = kf_dtype_size(operand->dtype);
  if (operand->dtype == KF_F32 && operand->col_stride == 1) {
    *out = (const float *)(base + (size_t)operand->offset * elem_size);
    return KF_OK;
  }
  float *copy = malloc((size_t)row_len * sizeof(float));
  if (!copy) return kf_fail(KF_ERROR_OUT_OF_MEMORY, "cannot allocate %lld floats for weight/bias", (long long)row_len);
  for (int64_t c = 0; c < row_len; ++c) {
    const char *p = base + (size_t)(operand->offset + c * operand->col_stride) * elem_size;
    uint16_t half;
    switch (operand->dtype) {
      case KF_F16: memcpy(&half, p, 2); copy[c] = kf_cpu_f16_to_f32(half); break;
      case KF_BF16: memcpy(&half, p, 2); copy[c] = kf_cpu_bf16_to_f32(half); break;
      default: memcpy(&copy[c], p, 4); break;
    }
  }
  *out = copy;
  *owned = copy;
  return KF_OK;
}

kf_status kf_cpu_rmsnorm(kf_backend_context *ctx, const kf_norm_args *args) {
  if (args->rows <= 0 || args->row_len <= 0) return KF_OK;
  norm_job job = {
      .args = args,
      .size_x = kf_dtype_size(args->x.dtype),
      .size_residual = args->residual.buffer ? kf_dtype_size(args->residual.dtype) : 0,
      .size_residual_out = args->residual_out.buffer ? kf_dtype_size(args->residual_out.dtype) : 0,
      .size_y = kf_dtype_size(args->y.dtype),
  };
  float *owned_weight = NULL, *owned_bias = NULL;
  kf_status status = vector_as_f32(&args->weight, args->row_len, &job.weight, &owned_weight);
  if (status == KF_OK) status = vector_as_f32(&args->bias, args->row_len, &job.bias, &owned_bias);
  if (status == KF_OK) {
    int64_t min_rows = KF_NORM_MIN_CHUNK_ELEMENTS / args->row_len;
    kf_pool_parallel_for(args->rows, min_rows > 0 ? min_rows : 1, norm_rows, &job);
  }
  free(owned_weight);
  free(owned_bias);
  return status;
}

/* cpu_softmax.c — y = softmax(x * scale + mask) over the last dimension, on the CPU.
 *
 * Per row, with z = x * scale + mask formed in f32 block by block (cpu_block.h):
 *  - rows of up to KF_SOFTMAX_ROW_IN_SCRATCH elements are read from memory once: z goes into a
 *    per-thread f32 row buffer (64 KiB, in L2), then max, exp(z - max) and the sum run over the buffer
 *    and y is written from it;
 *  - longer rows stream: pass 1 reads x (and the mask) and keeps an online max and sum (each block's
 *    sum is taken relative to the block's own max and rescaled into the running one, Milakov &
 *    Gimelshein's merge), pass 2 reads them again and writes y.
 * Both read every element of a block before storing any of it, so y may be x itself.
 *
 * Special values follow the mathematical definition, with no special cases: a row whose entries are
 * all -inf has max -inf and exp(-inf - (-inf)) = NaN, so the whole row is NaN; a NaN or +inf entry
 * makes the row NaN. Padding of a tail block is -inf, which contributes exp(-inf) = 0.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu/cpu_block.h"
#include "backend_cpu/cpu_internal.h"
#include "backend_cpu/cpu_math.h"
#include "backend_cpu/threadpool.h"

/* Longest row kept in the f32 row buffer: 16384 floats = 64 KiB, which fits the L2 of every CPU we
 * target beside the streamed input, so the single-pass path never re-reads DRAM. */
#define KF_SOFTMAX_ROW_IN_SCRATCH 16384

typedef struct softmax_job {
  const kf_softmax_args *args;
  size_t size_x, size_mask, size_y;
  int in_scratch; /* rows fit the row buffer */
} softmax_job;

/* z = x * scale (+ mask) for the block at `col` of `count` elements, padded with -inf. */
KF_ALWAYS_INLINE void load_z(const softmax_job *job, const char *x, const char *mask, int64_t col, int count,
                             float *z, float *scratch) {
  const kf_softmax_args *a = job->args;
  kf_cpu_load_block(x + (size_t)col * job->size_x, a->x.dtype, count, z);
  for (int i = count; i < KF_CPU_BLOCK; ++i) z[i] = 0.0f;
  const float scale = a->scale;
  if (mask) {
    if (a->mask.col_stride == 1) {
      kf_cpu_load_block(mask + (size_t)col * job->size_mask, a->mask.dtype, count, scratch);
    } else {
      kf_cpu_load_strided(mask + (size_t)(col * a->mask.col_stride) * job->size_mask, a->mask.dtype,
                          a->mask.col_stride, count, scratch);
    }
    for (int i = count; i < KF_CPU_BLOCK; ++i) scratch[i] = 0.0f;
    for (int i = 0; i < KF_CPU_BLOCK; ++i) z[i] = z[i] * scale + scratch[i];
  } else {
    for (int i = 0; i < KF_CPU_BLOCK; ++i) z[i] = z[i] * scale;
  }
  for (int i = count; i < KF_CPU_BLOCK; ++i) z[i] = -INFINITY;
}

/* e = exp(z - max) over a whole block, in place; returns its sum. */
KF_ALWAYS_INLINE float exp_block(float *z, float max) {
  for (int i = 0; i < KF_CPU_BLOCK; ++i) z[i] = kf_cpu_expf(z[i] - max);
  return kf_cpu_block_sum(z);
}

KF_ALWAYS_INLINE void scale_block(float *e, float factor) {
  for (int i = 0; i < KF_CPU_BLOCK; ++i) e[i] *= factor;
}

KF_ALWAYS_INLINE void softmax_row_in_scratch(const softmax_job *job, const char *x, const char *mask, char *y,
                                             float *row, float *z, float *scratch) {
  const kf_softmax_args *a = job->args;
  const int64_t row_len = a->row_len;
  float max = -INFINITY;
  for (int64_t col = 0; col < row_len; col += KF_CPU_BLOCK) {
    int count = row_len - col < KF_CPU_BLOCK ? (int)(row_len - col) : KF_CPU_BLOCK;
    load_z(job, x, mask, col, count, z, scratch); /* on the stack: see below */
    memcpy(row + col, z, sizeof(float) * KF_CPU_BLOCK);
    float block_max = kf_cpu_block_max(z);
    max = block_max > max ? block_max : max;
  }
  double sum = 0.0;
  for (int64_t col = 0; col < row_len; col += KF_CPU_BLOCK) sum += exp_block(row + col, max);
  const float inv_sum = (float)(1.0 / sum);
  for (int64_t col = 0; col < row_len; col += KF_CPU_BLOCK) {
    int count = row_len - col < KF_CPU_BLOCK ? (int)(row_len - col) : KF_CPU_BLOCK;
    /* Loads and stores are staged through the stack blocks, and a full block is stored with a
     * constant count: otherwise gcc leaves the conversion loops scalar here. */
    for (int i = 0; i < KF_CPU_BLOCK; ++i) scratch[i] = row[col + i] * inv_sum;
    if (count == KF_CPU_BLOCK) kf_cpu_store_block(y + (size_t)col * job->size_y, a->y.dtype, scratch, KF_CPU_BLOCK);
    else kf_cpu_store_block(y + (size_t)col * job->size_y, a->y.dtype, scratch, count);
  }
}

KF_ALWAYS_INLINE void softmax_row_streaming(const softmax_job *job, const char *x, const char *mask, char *y, float *z,
                                  float *scratch) {
  const kf_softmax_args *a = job->args;
  const int64_t row_len = a->row_len;
  /* Pass 1: the row's max and sum(exp(z - max)), merged block by block in double. */
  float max = -INFINITY;
  double sum = 0.0;
  for (int64_t col = 0; col < row_len; col += KF_CPU_BLOCK) {
    int count = row_len - col < KF_CPU_BLOCK ? (int)(row_len - col) : KF_CPU_BLOCK;
    load_z(job, x, mask, col, count, z, scratch);
    const float block_max = kf_cpu_block_max(z);
    if (block_max == -INFINITY) {
      /* Only -inf and NaN: relative to 0 the -inf give 0 and a NaN stays NaN; the running max must
       * not move (a later block's sum relative to it would underflow). */
      const float block_sum = exp_block(z, 0.0f);
      if (block_sum != 0.0f) sum = NAN;
      continue;
    }
    const double block_sum = exp_block(z, block_max);
    if (block_max > max) {
      sum = sum * exp((double)max - (double)block_max) + block_sum;
      max = block_max;
    } else {
      sum += block_sum * exp((double)block_max - (double)max);
    }
  }
  if (max == -INFINITY) sum = NAN; /* every entry -inf: 0/0 */
  /* Pass 2. */
  const float inv_sum = (float)(1.0 / sum);
  for (int64_t col = 0; col < row_len; col += KF_CPU_BLOCK) {
    int count = row_len - col < KF_CPU_BLOCK ? (int)(row_len - col) : KF_CPU_BLOCK;
    load_z(job, x, mask, col, count, z, scratch);
    exp_block(z, max);
    scale_block(z, inv_sum);
    if (count == KF_CPU_BLOCK) kf_cpu_store_block(y + (size_t)col * job->size_y, a->y.dtype, z, KF_CPU_BLOCK);
    else kf_cpu_store_block(y + (size_t)col * job->size_y, a->y.dtype, z, count);
  }
}

KF_CPU_KERNEL static void softmax_rows(void *arg, int64_t row_begin, int64_t row_end) {
  const softmax_job *job = arg;
  const kf_softmax_args *a = job->args;
  float z[KF_CPU_BLOCK] __attribute__((aligned(64)));
  float scratch[KF_CPU_BLOCK] __attribute__((aligned(64)));
  /* One row buffer per task call. Without one (no memory) the streaming path gives the same
   * answer, only slower: a task has no way to report a failure. */
  float *row_buffer = NULL;
  if (job->in_scratch) {
    size_t padded = (size_t)((a->row_len + KF_CPU_BLOCK - 1) / KF_CPU_BLOCK * KF_CPU_BLOCK);
    row_buffer = aligned_alloc(64, padded * sizeof(float));
  }
  for (int64_t row = row_begin; row < row_end; ++row) {
    const char *x = kf_cpu_row(&a->x, job->size_x, row);
    const char *mask = a->mask.buffer ? kf_cpu_row(&a->mask, job->size_mask, row) : NULL;
    char *y = kf_cpu_row(&a->y, job->size_y, row);
    if (row_buffer) softmax_row_in_scratch(job, x, mask, y, row_buffer, z, scratch);
    else softmax_row_streaming(job, x, mask, y, z, scratch);
  }
  free(row_buffer);
}

kf_status kf_cpu_softmax(kf_backend_context *ctx, const kf_softmax_args *args) {
  if (args->rows <= 0 || args->row_len <= 0) return KF_OK;
  softmax_job job = {
      .args = args,
      .size_x = kf_dtype_size(args->x.dtype),
      .size_mask = args->mask.buffer ? kf_dtype_size(args->mask.dtype) : 0,
      .size_y = kf_dtype_size(args->y.dtype),
      .in_scratch = args->row_len <= KF_SOFTMAX_ROW_IN_SCRATCH,
  };
  int64_t min_rows = KF_CPU_MIN_CHUNK_ELEMENTS / args->row_len;
  kf_pool_parallel_for(args->rows, min_rows > 0 ? min_rows : 1, softmax_rows, &job);
  return KF_OK;
}

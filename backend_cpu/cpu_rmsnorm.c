/* cpu_rmsnorm.c — RMSNorm and LayerNorm (with the optional fused residual add) on the CPU. The two
 * differ only in the row statistic, so they share everything else here.
 *
 *   h = x                      or, with a residual,  h = round_{residual_out dtype}(x + residual)
 *   RMSNorm:   y = h / sqrt(mean(h²) + eps) * weight + bias
 *   LayerNorm: y = (h - mean(h)) / sqrt(var(h) + eps) * weight + bias     (biased variance)
 *
 * Residual rounding (the contract every backend follows): x + residual is added in f32, rounded to
 * residual_out's dtype and stored; the statistics and y are then computed from that *stored* value.
 * So y is exactly norm(residual_out) — what an unfused "add, then norm" would give, and what the next
 * layer sees as its residual stream — and no backend's answer depends on keeping an unrounded copy.
 *
 * Each row is processed in two passes over blocks of KF_CPU_BLOCK elements (cpu_block.h): pass 1
 * forms h (storing residual_out) and its statistic, pass 2 reads h back and writes y. A block's x and
 * residual are both loaded before its residual_out is stored, and y is stored after h is loaded, so
 * residual_out may alias x or residual, and y may alias x, element for element.
 *
 * Accumulation, in an order that does not depend on the number of threads:
 *  - RMSNorm: squares summed in f32 within a block (KF_CPU_LANES partial sums, a fixed tree), block
 *    sums in double.
 *  - LayerNorm: each block's mean and sum of squared deviations M2 are computed two-pass on the
 *    block while it sits in L1 (mean first, then the deviations from it), and blocks are merged
 *    in double with Chan et al.'s pairwise update. No E[h²] - E[h]² cancellation, whatever the
 *    offset of the data, and still only two passes over memory.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu/cpu_block.h"
#include "backend_cpu/cpu_internal.h"
#include "backend_cpu/threadpool.h"

typedef enum norm_kind { NORM_RMS, NORM_LAYER } norm_kind;

typedef struct norm_job {
  const kf_norm_args *args;
  norm_kind kind;
  size_t size_x, size_residual, size_residual_out, size_y; /* bytes per element */
  const float *weight; /* row_len f32, contiguous; NULL when absent */
  const float *bias;
} norm_job;

/* Pass 1 for the block at column `col` of `count` (<= KF_CPU_BLOCK) elements: h into `h`. */
KF_ALWAYS_INLINE void form_h(const norm_job *job, const char *x, const char *residual, char *residual_out,
                             int64_t col, int count, float *h, float *scratch) {
  const kf_norm_args *a = job->args;
  kf_cpu_load_block(x + (size_t)col * job->size_x, a->x.dtype, count, h);
  if (!residual) return;
  kf_cpu_load_block(residual + (size_t)col * job->size_residual, a->residual.dtype, count, scratch);
  for (int i = 0; i < count; ++i) h[i] += scratch[i];
  char *stored = residual_out + (size_t)col * job->size_residual_out;
  kf_cpu_store_block(stored, a->residual_out.dtype, h, count);
  kf_cpu_load_block(stored, a->residual_out.dtype, count, h); /* normalize h as stored */
}

/* Pass 2 for one block: y = (h - center) * inv_scale * weight + bias, center = center_hi + center_lo
 * (the mean split in two floats; both 0 for RMSNorm, where h - 0 - 0 is h exactly). With the mean
 * rounded to one float, data with a large offset (|mean| >> std) would be shifted by up to half an ulp
 * of the mean; h - center_hi is exact for h near the mean (Sterbenz), so the split leaves one rounding. */
KF_ALWAYS_INLINE void write_y(const norm_job *job, const char *h_src, kf_dtype h_dtype, size_t h_size, char *y,
                              int64_t col, int count, float center_hi, float center_lo, float inv_scale, float *h) {
  kf_cpu_load_block(h_src + (size_t)col * h_size, h_dtype, count, h);
  const float *w = job->weight ? job->weight + col : NULL;
  const float *b = job->bias ? job->bias + col : NULL;
  if (w && b) {
    for (int i = 0; i < count; ++i) h[i] = (h[i] - center_hi - center_lo) * inv_scale * w[i] + b[i];
  } else if (w) {
    for (int i = 0; i < count; ++i) h[i] = (h[i] - center_hi - center_lo) * inv_scale * w[i];
  } else if (b) {
    for (int i = 0; i < count; ++i) h[i] = (h[i] - center_hi - center_lo) * inv_scale + b[i];
  } else {
    for (int i = 0; i < count; ++i) h[i] = (h[i] - center_hi - center_lo) * inv_scale;
  }
  kf_cpu_store_block(y + (size_t)col * job->size_y, job->args->y.dtype, h, count);
}

/* The running statistic of pass 1. RMSNorm uses sum_squares only; LayerNorm count/mean/m2. */
typedef struct row_stats {
  double sum_squares;
  double count, mean, m2;
} row_stats;

/* Adds one block of `count` valid elements (h[count..KF_CPU_BLOCK) is scratch, overwritten here). */
KF_ALWAYS_INLINE void add_block(norm_kind kind, float *h, int count, float *deviation, row_stats *stats) {
  if (kind == NORM_RMS) {
    for (int i = count; i < KF_CPU_BLOCK; ++i) h[i] = 0.0f;
    stats->sum_squares += kf_cpu_block_sum_squares(h);
    return;
  }
  for (int i = count; i < KF_CPU_BLOCK; ++i) h[i] = 0.0f;
  const float block_mean = kf_cpu_block_sum(h) / (float)count;
  /* Padding equal to the mean adds nothing to the squared deviations. */
  for (int i = count; i < KF_CPU_BLOCK; ++i) h[i] = block_mean;
  for (int i = 0; i < KF_CPU_BLOCK; ++i) deviation[i] = h[i] - block_mean;
  /* The f32 block mean is off by up to a few ulps of |h|; the deviations' own sum measures that
   * (the "corrected two-pass" algorithm), which matters when |mean| >> std. */
  const double deviation_sum = kf_cpu_block_sum(deviation);
  const double n_b = (double)count;
  const double exact_block_mean = (double)block_mean + deviation_sum / n_b;
  const double block_m2 = (double)kf_cpu_block_sum_squares(deviation) - deviation_sum * deviation_sum / n_b;
  /* Chan, Golub & LeVeque: merging (n_a, mean_a, M2_a) with (n_b, mean_b, M2_b). */
  const double n = stats->count + n_b;
  const double delta = exact_block_mean - stats->mean;
  stats->mean += delta * n_b / n;
  stats->m2 += block_m2 + delta * delta * stats->count * n_b / n;
  stats->count = n;
}

KF_CPU_KERNEL static void norm_rows(void *arg, int64_t row_begin, int64_t row_end) {
  const norm_job *job = arg;
  const kf_norm_args *a = job->args;
  const int64_t row_len = a->row_len;
  const int64_t full_end = row_len - row_len % KF_CPU_BLOCK;
  float h[KF_CPU_BLOCK] __attribute__((aligned(64)));
  float scratch[KF_CPU_BLOCK] __attribute__((aligned(64)));

  for (int64_t row = row_begin; row < row_end; ++row) {
    const char *x = kf_cpu_row(&a->x, job->size_x, row);
    const char *residual = a->residual.buffer ? kf_cpu_row(&a->residual, job->size_residual, row) : NULL;
    char *residual_out = a->residual_out.buffer ? kf_cpu_row(&a->residual_out, job->size_residual_out, row) : NULL;
    char *y = kf_cpu_row(&a->y, job->size_y, row);

    row_stats stats = {0};
    int64_t col = 0;
    for (; col < full_end; col += KF_CPU_BLOCK) {
      form_h(job, x, residual, residual_out, col, KF_CPU_BLOCK, h, scratch);
      add_block(job->kind, h, KF_CPU_BLOCK, scratch, &stats);
    }
    if (col < row_len) {
      int tail = (int)(row_len - col);
      form_h(job, x, residual, residual_out, col, tail, h, scratch);
      add_block(job->kind, h, tail, scratch, &stats);
    }

    float center_hi = 0.0f, center_lo = 0.0f, inv_scale;
    if (job->kind == NORM_RMS) {
      inv_scale = (float)(1.0 / sqrt(stats.sum_squares / (double)row_len + (double)a->eps));
    } else {
      center_hi = (float)stats.mean;
      center_lo = (float)(stats.mean - (double)center_hi);
      inv_scale = (float)(1.0 / sqrt(fmax(stats.m2, 0.0) / (double)row_len + (double)a->eps));
    }
    /* Pass 2 reads h where pass 1 left it: residual_out (rounded) or x. */
    const char *h_src = residual ? residual_out : x;
    const kf_dtype h_dtype = residual ? a->residual_out.dtype : a->x.dtype;
    const size_t h_size = residual ? job->size_residual_out : job->size_x;
    for (col = 0; col < full_end; col += KF_CPU_BLOCK)
      write_y(job, h_src, h_dtype, h_size, y, col, KF_CPU_BLOCK, center_hi, center_lo, inv_scale, h);
    if (col < row_len) write_y(job, h_src, h_dtype, h_size, y, col, (int)(row_len - col), center_hi, center_lo, inv_scale,
                                       h);
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
  for (int64_t c = 0; c < row_len; c += KF_CPU_BLOCK) {
    int count = row_len - c < KF_CPU_BLOCK ? (int)(row_len - c) : KF_CPU_BLOCK;
    const char *p = base + (size_t)(operand->offset + c * operand->col_stride) * elem_size;
    kf_cpu_load_strided(p, operand->dtype, operand->col_stride, count, copy + c);
  }
  *out = copy;
  *owned = copy;
  return KF_OK;
}

static kf_status run_norm(norm_kind kind, const kf_norm_args *args) {
  if (args->rows <= 0 || args->row_len <= 0) return KF_OK;
  norm_job job = {
      .args = args,
      .kind = kind,
      .size_x = kf_dtype_size(args->x.dtype),
      .size_residual = args->residual.buffer ? kf_dtype_size(args->residual.dtype) : 0,
      .size_residual_out = args->residual_out.buffer ? kf_dtype_size(args->residual_out.dtype) : 0,
      .size_y = kf_dtype_size(args->y.dtype),
  };
  float *owned_weight = NULL, *owned_bias = NULL;
  kf_status status = vector_as_f32(&args->weight, args->row_len, &job.weight, &owned_weight);
  if (status == KF_OK) status = vector_as_f32(&args->bias, args->row_len, &job.bias, &owned_bias);
  if (status == KF_OK) {
    int64_t min_rows = KF_CPU_MIN_CHUNK_ELEMENTS / args->row_len;
    kf_pool_parallel_for(args->rows, min_rows > 0 ? min_rows : 1, norm_rows, &job);
  }
  free(owned_weight);
  free(owned_bias);
  return status;
}

kf_status kf_cpu_rmsnorm(kf_backend_context *ctx, const kf_norm_args *args) { return run_norm(NORM_RMS, args); }

kf_status kf_cpu_layernorm(kf_backend_context *ctx, const kf_norm_args *args) { return run_norm(NORM_LAYER, args); }

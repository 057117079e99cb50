/* cpu_rope.c — rotary position embedding on Q and K (one call) on the CPU.
 *
 * Parallel over tokens. Per token, the rotary pairs are processed in blocks of KF_ROPE_PAIRS: cos/sin
 * of the block's angles are formed once (computed in f32, or read from the table) and applied to
 * every Q head and then every K head of the token, so each trigonometric value is computed once per
 * token and the scratch stays a few KiB whatever head_dim is.
 *
 * Pair layout (rotary_dim = 2 * half): NeoX rotates (v[i], v[i + half]); GPT-J rotates (v[2i], v[2i+1]).
 * Both elements of a pair are loaded before either is stored, so q_out may be q itself. Elements
 * [rotary_dim, head_dim) are copied (with dtype conversion) when the output is another tensor and left
 * alone when rotating in place.
 *
 * The angle is computed exactly as every backend does (so they agree to f32 rounding):
 *   inv_freq[i] = exp2f(-(2i / rotary_dim) * log2f(theta)), angle = ((float)pos * position_scale) *
 *   inv_freq[i], then accurate sinf/cosf (angles reach 1e5 rad in long contexts; libm reduces them
 *   exactly).
 */
#include <math.h>
#include <stdlib.h>

#include "backend_cpu/cpu_block.h"
#include "backend_cpu/cpu_internal.h"
#include "backend_cpu/threadpool.h"

/* Pairs per block: 128 pairs = one KF_CPU_BLOCK of elements, so the two halves (or the interleaved
 * pairs) are KF_CPU_BLOCK floats of scratch. */
#define KF_ROPE_PAIRS (KF_CPU_BLOCK / 2)

typedef struct rope_job {
  const kf_rope_args *args;
  int32_t half;            /* rotary_dim / 2 */
  const float *inv_freq;   /* half entries; NULL with a cos/sin table */
  int q_in_place, k_in_place;
} rope_job;

/* The rotation of one block of `pairs` pairs (<= KF_ROPE_PAIRS) of one head. NeoX: first halves in
 * a[], second halves in b[]. */
KF_ALWAYS_INLINE void rotate_neox(float *restrict a, float *restrict b, const float *restrict cos_v,
                                  const float *restrict sin_v) {
  for (int i = 0; i < KF_ROPE_PAIRS; ++i) {
    float first = a[i], second = b[i];
    a[i] = first * cos_v[i] - second * sin_v[i];
    b[i] = first * sin_v[i] + second * cos_v[i];
  }
}

/* GPT-J: pairs interleaved in v[0 .. 2 * KF_ROPE_PAIRS). */
KF_ALWAYS_INLINE void rotate_gptj(float *restrict v, const float *restrict cos_v, const float *restrict sin_v) {
  for (int i = 0; i < KF_ROPE_PAIRS; ++i) {
    float first = v[2 * i], second = v[2 * i + 1];
    v[2 * i] = first * cos_v[i] - second * sin_v[i];
    v[2 * i + 1] = first * sin_v[i] + second * cos_v[i];
  }
}

/* Rotates pairs [pair0, pair0 + pairs) of every head of one tensor of one token. */
KF_ALWAYS_INLINE void rotate_heads(const rope_job *job, const kf_tensor_arg *in, const kf_tensor_arg *out, int32_t heads,
                         int64_t token, int32_t pair0, int pairs, const float *cos_v, const float *sin_v, float *a,
                         float *b) {
  const size_t size_in = kf_dtype_size(in->dtype), size_out = kf_dtype_size(out->dtype);
  const int32_t half = job->half;
  for (int32_t head = 0; head < heads; ++head) {
    const char *src = kf_cpu_row(in, size_in, token) + (size_t)(head * in->col_stride) * size_in;
    char *dst = kf_cpu_row(out, size_out, token) + (size_t)(head * out->col_stride) * size_out;
    if (job->args->style == KF_ROPE_GPTJ) {
      kf_cpu_load_block(src + (size_t)(2 * pair0) * size_in, in->dtype, 2 * pairs, a);
      rotate_gptj(a, cos_v, sin_v);
      kf_cpu_store_block(dst + (size_t)(2 * pair0) * size_out, out->dtype, a, 2 * pairs);
    } else {
      kf_cpu_load_block(src + (size_t)pair0 * size_in, in->dtype, pairs, a);
      kf_cpu_load_block(src + (size_t)(half + pair0) * size_in, in->dtype, pairs, b);
      rotate_neox(a, b, cos_v, sin_v);
      kf_cpu_store_block(dst + (size_t)pair0 * size_out, out->dtype, a, pairs);
      kf_cpu_store_block(dst + (size_t)(half + pair0) * size_out, out->dtype, b, pairs);
    }
  }
}

/* Copies [rotary_dim, head_dim) of every head of one token (out of place only). */
KF_ALWAYS_INLINE void pass_through(const rope_job *job, const kf_tensor_arg *in, const kf_tensor_arg *out, int32_t heads,
                         int64_t token, float *scratch) {
  const kf_rope_args *a = job->args;
  const size_t size_in = kf_dtype_size(in->dtype), size_out = kf_dtype_size(out->dtype);
  for (int32_t head = 0; head < heads; ++head) {
    const char *src = kf_cpu_row(in, size_in, token) + (size_t)(head * in->col_stride) * size_in;
    char *dst = kf_cpu_row(out, size_out, token) + (size_t)(head * out->col_stride) * size_out;
    for (int32_t col = a->rotary_dim; col < a->head_dim; col += KF_CPU_BLOCK) {
      int count = a->head_dim - col < KF_CPU_BLOCK ? a->head_dim - col : KF_CPU_BLOCK;
      if (in->dtype == out->dtype) {
        memcpy(dst + (size_t)col * size_out, src + (size_t)col * size_in, (size_t)count * size_in);
      } else {
        kf_cpu_load_block(src + (size_t)col * size_in, in->dtype, count, scratch);
        kf_cpu_store_block(dst + (size_t)col * size_out, out->dtype, scratch, count);
      }
    }
  }
}

KF_CPU_KERNEL static void rope_tokens(void *arg, int64_t token_begin, int64_t token_end) {
  const rope_job *job = arg;
  const kf_rope_args *a = job->args;
  const int has_k = a->k.buffer != NULL && a->k_heads > 0;
  float cos_v[KF_ROPE_PAIRS] __attribute__((aligned(64)));
  float sin_v[KF_ROPE_PAIRS] __attribute__((aligned(64)));
  float first[KF_CPU_BLOCK] __attribute__((aligned(64)));
  float second[KF_CPU_BLOCK] __attribute__((aligned(64)));
  /* A block shorter than KF_ROPE_PAIRS rotates stale scratch past its end: make that finite data. */
  memset(first, 0, sizeof first);
  memset(second, 0, sizeof second);
  const char *positions = kf_cpu_buffer_data(a->positions.buffer);

  for (int64_t token = token_begin; token < token_end; ++token) {
    int32_t position;
    memcpy(&position, positions + (size_t)(a->positions.offset + token * a->positions.col_stride) * sizeof(int32_t),
           sizeof position);
    for (int32_t pair0 = 0; pair0 < job->half; pair0 += KF_ROPE_PAIRS) {
      const int pairs = job->half - pair0 < KF_ROPE_PAIRS ? job->half - pair0 : KF_ROPE_PAIRS;
      if (job->inv_freq) {
        const float scaled_position = (float)position * a->position_scale;
        for (int i = 0; i < pairs; ++i) sincosf(scaled_position * job->inv_freq[pair0 + i], &sin_v[i], &cos_v[i]);
      } else if (position >= 0 && position < a->cos_sin_rows) {
        const float *table = (const float *)kf_cpu_buffer_data(a->cos_sin.buffer) + a->cos_sin.offset +
                             (int64_t)position * a->cos_sin.row_stride;
        kf_cpu_load_strided((const char *)(table + (int64_t)pair0 * a->cos_sin.col_stride), KF_F32,
                            a->cos_sin.col_stride, pairs, cos_v);
        kf_cpu_load_strided((const char *)(table + (int64_t)(job->half + pair0) * a->cos_sin.col_stride), KF_F32,
                            a->cos_sin.col_stride, pairs, sin_v);
      } else {
        for (int i = 0; i < pairs; ++i) cos_v[i] = sin_v[i] = NAN; /* out-of-range position */
      }
      /* The rotation of the padding is computed and discarded: keep it quiet. */
      for (int i = pairs; i < KF_ROPE_PAIRS; ++i) cos_v[i] = sin_v[i] = 0.0f;
      rotate_heads(job, &a->q, &a->q_out, a->q_heads, token, pair0, pairs, cos_v, sin_v, first, second);
      if (has_k) rotate_heads(job, &a->k, &a->k_out, a->k_heads, token, pair0, pairs, cos_v, sin_v, first, second);
    }
    if (a->rotary_dim < a->head_dim) {
      if (!job->q_in_place) pass_through(job, &a->q, &a->q_out, a->q_heads, token, first);
      if (has_k && !job->k_in_place) pass_through(job, &a->k, &a->k_out, a->k_heads, token, first);
    }
  }
}

static int same_operand(const kf_tensor_arg *a, const kf_tensor_arg *b) {
  return a->buffer == b->buffer && a->offset == b->offset && a->row_stride == b->row_stride &&
         a->col_stride == b->col_stride && a->dtype == b->dtype;
}

kf_status kf_cpu_rope(kf_backend_context *ctx, const kf_rope_args *args) {
  if (args->tokens <= 0) return KF_OK;
  rope_job job = {
      .args = args,
      .half = args->rotary_dim / 2,
      .q_in_place = same_operand(&args->q, &args->q_out),
      .k_in_place = same_operand(&args->k, &args->k_out),
  };
  float *inv_freq = NULL;
  if (!args->cos_sin.buffer && job.half > 0) {
    inv_freq = malloc((size_t)job.half * sizeof(float));
    if (!inv_freq) return kf_fail(KF_ERROR_OUT_OF_MEMORY, "cannot allocate %d floats for RoPE frequencies", job.half);
    const float log2_theta = log2f(args->theta);
    for (int32_t i = 0; i < job.half; ++i)
      inv_freq[i] = exp2f(-((float)(2 * i) / (float)args->rotary_dim) * log2_theta);
    job.inv_freq = inv_freq;
  }
  int64_t token_elements = (int64_t)(args->q_heads + args->k_heads) * args->head_dim;
  int64_t min_tokens = token_elements > 0 ? KF_CPU_MIN_CHUNK_ELEMENTS / token_elements : 1;
  kf_pool_parallel_for(args->tokens, min_tokens > 0 ? min_tokens : 1, rope_tokens, &job);
  free(inv_freq);
  return KF_OK;
}

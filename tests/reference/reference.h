/* reference.h — what the tests, the demo and the benchmarks check kfuse against:
 *  - naive fp64 reference implementations of every op (obviously right, not fast);
 *  - a seeded random generator whose seed is printed, so any failure can be replayed;
 *  - conversions between double arrays and tensor bytes (through kf_convert);
 *  - the error metrics and the one tolerance table per op and output dtype.
 *
 * Link with either //:kfuse_static or libkfuse.so: this library uses kf_convert but does not pull in
 * either, so a program never ends up with two copies of kfuse.
 */
#ifndef KF_TESTS_REFERENCE_REFERENCE_H_
#define KF_TESTS_REFERENCE_REFERENCE_H_

#include <stddef.h>
#include <stdint.h>

#include "core/kfuse.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- test environment ----------------------------------------------------------------------------
 * Under `bazel test` (TEST_TMPDIR set), when the sandbox keeps the user's cache directory
 * ($XDG_CACHE_HOME or ~/.cache) read-only, points the caches that drivers and kfuse write
 * (KF_CACHE_DIR, POCL_CACHE_DIR, MESA_SHADER_CACHE_DIR) into /tmp/kfuse-test-cache-<uid> (kept
 * between runs), or TEST_TMPDIR if that is not writable either: PoCL cannot compile a kernel without a
 * writable cache. Variables already set are left alone. Call it first thing in main, before
 * any kfuse call probes the devices. */
void kf_test_use_writable_caches(void);

/* ---- fp64 reference ops ------------------------------------------------------------------------
 * RMSNorm over `rows` packed rows of row_len: h = x (+ residual), y = h / sqrt(mean(h²) + eps) * weight
 * + bias. residual, weight, bias and out_residual may be NULL; out_residual receives h when given.
 * y is computed from the exact fp64 h. kfuse rounds h to residual_out's dtype and normalizes the
 * rounded value, so a test of the fused residual checks residual_out against out_residual and then
 * checks y against kf_ref_rmsnorm of the device's residual_out (with no residual). */
void kf_ref_rmsnorm(const double *x, const double *residual, const double *weight, const double *bias, int64_t rows,
                    int64_t row_len, double eps, double *out_residual, double *out_y);

/* LayerNorm over packed rows, h as for kf_ref_rmsnorm: y = (h - mean) / sqrt(var + eps) * weight + bias
 * with the biased variance mean((h - mean)²), both in fp64 from the exact h (two passes). */
void kf_ref_layernorm(const double *x, const double *residual, const double *weight, const double *bias, int64_t rows,
                      int64_t row_len, double eps, double *out_residual, double *out_y);

/* RoPE on one packed tensor x [tokens, heads, head_dim] (apply it to Q and to K separately).
 * Pair i in [0, rotary_dim/2) of token t: angle = positions[t] * position_scale * theta^(-2i/rotary_dim)
 * in fp64; NeoX pairs (x[i], x[i + rotary_dim/2]), GPT-J pairs (x[2i], x[2i+1]);
 * (a, b) -> (a cos - b sin, a sin + b cos); elements from rotary_dim on are copied.
 * With cos_sin ([cos_sin_rows, rotary_dim]: the rotary_dim/2 cosines, then the sines) the table is
 * used instead of the angle, and a position outside [0, cos_sin_rows) gives NaN in the rotated part.
 * out may be x (in place). */
void kf_ref_rope(const double *x, int64_t tokens, int64_t heads, int64_t head_dim, const int32_t *positions,
                 kf_rope_style style, int64_t rotary_dim, double theta, double position_scale, const double *cos_sin,
                 int64_t cos_sin_rows, double *out);

/* out = act(gate) * up elementwise over count elements: SiLU g / (1 + e^-g) or the tanh GELU
 * 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g³))). */
void kf_ref_glu(const double *gate, const double *up, size_t count, kf_glu_activation activation, double *out);

/* Softmax of each packed row of x * scale + mask. mask (may be NULL) holds mask_rows rows of row_len;
 * row r uses mask row r % mask_rows: mask_rows == rows is a full mask, 1 one row broadcast over all
 * rows, q a [q, kv] mask broadcast over a [b, h, q, kv] x (other broadcasts: expand the mask first).
 * Max subtracted; a row whose every logit is -inf gives NaN (0/0), as the API specifies. */
void kf_ref_softmax(const double *x, int64_t rows, int64_t row_len, double scale, const double *mask,
                    int64_t mask_rows, double *out);

/* GEMM on packed row-major matrices, one batch entry: a [m, k] (op(A), already transposed by the
 * caller), b [k, n2] (op(B)), n2 = 2n with swiglu else n. out[m, n] = epilogue as kf_gemm documents:
 *   t = alpha * a b (+ bias[n2]); swiglu: t = silu(t[:, :n]) * t[:, n:]; out = t + beta * c (+ residual).
 * bias, c (read when beta != 0), residual may be NULL. magnitude (may be NULL) receives the size of the
 * terms each output is formed from, for kf_test_compare:
 *   plain: |alpha| sum_k |a b| + |bias| + |beta c| + |residual|;
 *   swiglu: 1.1 m_gate |up| + |silu(gate)| m_up + |beta c| + |residual| (silu' <= 1.1), m_* as above. */
void kf_ref_gemm(const double *a, const double *b, int64_t m, int64_t n, int64_t k, int swiglu, double alpha,
                 const double *bias, double beta, const double *c, const double *residual, double *out,
                 double *magnitude);

/* Attention for one batch entry. q [q_len, q_heads, d], k/v [kv_len, kv_heads, d], out like q, all
 * packed. Query i is at position p = i + kv_len - q_len; key j visible iff (!causal || j <= p) and
 * (window_left < 0 || j >= p - window_left). A query with no visible key: out 0, lse -inf.
 * lse [q_heads, q_len] (may be NULL). magnitude (may be NULL): sum_j p_j |v_j| per output element
 * (p the softmax weights). condition (may be NULL): max over visible logits of scale * sum_d |q_d k_d|. */
void kf_ref_attention(const double *q, const double *k, const double *v, int64_t q_len, int64_t kv_len,
                      int64_t q_heads, int64_t kv_heads, int64_t head_dim, double scale, int causal,
                      int64_t window_left, double *out, double *lse, double *magnitude, double *condition);

/* ---- random data -------------------------------------------------------------------------------- */
typedef struct kf_test_rng {
  uint64_t state;
} kf_test_rng;

/* The run's seed: KF_TEST_SEED if set, else fresh from the clock and the pid. Printed to stdout once
 * ("seed: N (replay with KF_TEST_SEED=N)"). */
uint64_t kf_test_seed(void);
/* splitmix64: every seed (0 included) gives a full-period, well-mixed stream. */
void kf_test_rng_init(kf_test_rng *rng, uint64_t seed);
uint64_t kf_test_rng_next(kf_test_rng *rng);
/* Uniform in [0, 1). */
double kf_test_rng_uniform(kf_test_rng *rng);
/* Standard normal (Box-Muller). */
double kf_test_rng_normal(kf_test_rng *rng);
/* Fills values with normal data times scale, never exactly 0 (a zero input hides unwritten outputs
 * and wrong strides). */
void kf_test_rng_fill(kf_test_rng *rng, double *values, size_t count, double scale);

/* ---- conversions -------------------------------------------------------------------------------- */
/* doubles -> count elements of dtype (f32/f16/bf16/f8e4m3), rounded to nearest even. */
kf_status kf_test_from_double(const double *src, kf_dtype dtype, void *dst, size_t count);
/* count elements of dtype -> doubles (exact). */
kf_status kf_test_to_double(const void *src, kf_dtype dtype, double *dst, size_t count);
/* Rounds doubles in place to the values dtype can hold (what a tensor of that dtype stores). */
kf_status kf_test_round_to(double *values, kf_dtype dtype, size_t count);

/* ---- error metrics -------------------------------------------------------------------------------
 * Elements are compared in groups of group_len (a row; 0 = all elements are one group):
 *   max_err = max over groups of  max_i |out_i - ref_i| / max_i m_i
 *   nmse    = max over groups of  sum (out_i - ref_i)² / sum m_i²
 * where m_i = magnitude[i], or |ref_i| when magnitude is NULL. magnitude is the size of the terms
 * ref_i was formed from (|a| + |b| for ref = a + b): rounding errors are relative to those, and a
 * cancelling sum (y = normalized * weight + bias near 0) would otherwise make any tiny error look huge.
 * max_err is the worst error relative to the magnitude of the result. Per-element relative error
 * would blow up on the elements near zero that every normalized output has, where the output dtype's
 * absolute rounding step is what matters; scaling by max |ref| measures errors in units of that step.
 * Scaling per row keeps a row of large values from hiding errors in a row of small ones.
 * (max m == 0 falls back to the absolute error.) nmse is the average error, which catches a
 * small systematic error spread over many elements that the max alone lets through.
 * A NaN or infinity on either side makes both metrics infinite: NaN never passes. */
typedef struct kf_test_error {
  double max_err;
  double nmse;
  int64_t worst_index; /* element of the largest scaled error (the first non-finite one if any) */
  double worst_out;
  double worst_ref;
  double ref_max_abs;  /* max m_i over all elements */
} kf_test_error;

kf_test_error kf_test_compare(const double *out, const double *ref, const double *magnitude, size_t count,
                              size_t group_len);

/* ---- tolerances: one table, per op and output dtype ----------------------------------------------
 * The bound on max_err for an output of `out_dtype` whose elements come from reductions over
 * `reduction_len` elements accumulated in f32 (see reference.c for how each entry follows from the
 * math). A result passes when max_err <= tolerance and nmse <= tolerance².
 * Some ops' error also grows with a property of the data, `condition` (0 where the op has none):
 *   LAYERNORM: max over rows of mean(|h|) / sqrt(var(h) + eps) (a large mean cancels in h - mean);
 *   ROPE:      max |position * position_scale| in radians (the f32 angle's error grows with it); 0
 *              when a cos_sin table is used;
 *   GLU:       max |gate| (exp / tanh of a large argument);
 *   SOFTMAX:   max |x * scale + mask| over the finite logits (f32 rounding of the exp argument).
 * Magnitudes to pass to kf_test_compare with each op (the size of the terms each output is formed from):
 *   RMSNORM, LAYERNORM: |normalized(h) * weight| + |bias|;  RESIDUAL_ADD: |x| + |residual|;
 *   ROPE: |a| + |b| for a rotated element of pair (a, b), |x| for a passed-through one;
 *   GLU: |gate * up|;  SOFTMAX: |y| (NULL). */
typedef enum kf_test_op {
  KF_TEST_OP_RMSNORM = 0,
  KF_TEST_OP_RESIDUAL_ADD = 1, /* residual_out = round(x + residual): one rounding, no reduction */
  KF_TEST_OP_LAYERNORM = 2,
  KF_TEST_OP_ROPE = 3,
  KF_TEST_OP_GLU = 4,
  KF_TEST_OP_SOFTMAX = 5,
  KF_TEST_OP_GEMM = 6,          /* f32 accumulation (bf16/f16/exact-f32 inputs) */
  KF_TEST_OP_GEMM_LOW_ACC = 7,  /* TF32 inputs or FP8 tensor-core accumulation (~14 bits) */
  KF_TEST_OP_ATTENTION = 8,     /* out; reduction_len = kv_len; out_dtype also the P rounding dtype */
  KF_TEST_OP_ATTENTION_LSE = 9, /* lse, absolute error relative to max(1, |lse|) */
  KF_TEST_OP_COUNT = 10,
} kf_test_op;

/* kf_test_tolerance_conditioned(op, out_dtype, reduction_len, 0). */
double kf_test_tolerance(kf_test_op op, kf_dtype out_dtype, int64_t reduction_len);
double kf_test_tolerance_conditioned(kf_test_op op, kf_dtype out_dtype, int64_t reduction_len, double condition);

#ifdef __cplusplus
}
#endif
#endif /* KF_TESTS_REFERENCE_REFERENCE_H_ */

/* reference.c — fp64 reference ops, seeded random data, conversions, error metrics and the tolerance
 * table (see reference.h). */
#include "tests/reference/reference.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- test environment ---- */

/* 1 if a file can be created in dir (made if missing). */
static int directory_writable(const char *dir) {
  mkdir(dir, 0755);
  char path[4096];
  if (snprintf(path, sizeof path, "%s/.kf_write_test_XXXXXX", dir) >= (int)sizeof path) return 0;
  int fd = mkstemp(path);
  if (fd < 0) return 0;
  close(fd);
  unlink(path);
  return 1;
}

void kf_test_use_writable_caches(void) {
  const char *tmp = getenv("TEST_TMPDIR");
  if (!tmp || !*tmp) return;
  /* Where the caches go by default: keep them there when the sandbox lets us write (PoCL and lavapipe
   * then compile each kernel once per machine, not once per test run). */
  char base[4096];
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  if (xdg && *xdg) snprintf(base, sizeof base, "%s", xdg);
  else snprintf(base, sizeof base, "%s/.cache", home && *home ? home : "/nonexistent");
  if (directory_writable(base)) return;
  /* Else a per-user directory in /tmp, which sandboxes keep writable and which outlives the test run;
   * TEST_TMPDIR (fresh every run) only when that fails too. */
  char shared[4096];
  snprintf(shared, sizeof shared, "/tmp/kfuse-test-cache-%ld", (long)getuid());
  const char *root = directory_writable(shared) ? shared : tmp;

  static const char *const variables[][2] = {
      {"KF_CACHE_DIR", "kfuse-cache"},
      {"POCL_CACHE_DIR", "pocl-cache"},
      {"MESA_SHADER_CACHE_DIR", "mesa-shader-cache"},
  };
  for (size_t i = 0; i < sizeof variables / sizeof variables[0]; ++i) {
    const char *current = getenv(variables[i][0]);
    if (current && *current) continue;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", root, variables[i][1]) < (int)sizeof path) setenv(variables[i][0], path, 0);
  }
}

/* ---- fp64 reference ops ---- */

void kf_ref_rmsnorm(const double *x, const double *residual, const double *weight, const double *bias, int64_t rows,
                    int64_t row_len, double eps, double *out_residual, double *out_y) {
  for (int64_t r = 0; r < rows; ++r) {
    const double *xr = x + r * row_len;
    const double *rr = residual ? residual + r * row_len : NULL;
    double sum_squares = 0.0;
    for (int64_t c = 0; c < row_len; ++c) {
      double h = xr[c] + (rr ? rr[c] : 0.0);
      sum_squares += h * h;
    }
    double inv_rms = 1.0 / sqrt(sum_squares / (double)row_len + eps);
    for (int64_t c = 0; c < row_len; ++c) {
      double h = xr[c] + (rr ? rr[c] : 0.0);
      if (out_residual) out_residual[r * row_len + c] = h;
      double y = h * inv_rms;
      if (weight) y *= weight[c];
      if (bias) y += bias[c];
      out_y[r * row_len + c] = y;
    }
  }
}

void kf_ref_layernorm(const double *x, const double *residual, const double *weight, const double *bias, int64_t rows,
                      int64_t row_len, double eps, double *out_residual, double *out_y) {
  for (int64_t r = 0; r < rows; ++r) {
    const double *xr = x + r * row_len;
    const double *rr = residual ? residual + r * row_len : NULL;
    double sum = 0.0;
    for (int64_t c = 0; c < row_len; ++c) sum += xr[c] + (rr ? rr[c] : 0.0);
    double mean = sum / (double)row_len;
    double sum_squares = 0.0;
    for (int64_t c = 0; c < row_len; ++c) {
      double d = xr[c] + (rr ? rr[c] : 0.0) - mean;
      sum_squares += d * d;
    }
    double inv_std = 1.0 / sqrt(sum_squares / (double)row_len + eps);
    for (int64_t c = 0; c < row_len; ++c) {
      double h = xr[c] + (rr ? rr[c] : 0.0);
      if (out_residual) out_residual[r * row_len + c] = h;
      double y = (h - mean) * inv_std;
      if (weight) y *= weight[c];
      if (bias) y += bias[c];
      out_y[r * row_len + c] = y;
    }
  }
}

void kf_ref_rope(const double *x, int64_t tokens, int64_t heads, int64_t head_dim, const int32_t *positions,
                 kf_rope_style style, int64_t rotary_dim, double theta, double position_scale, const double *cos_sin,
                 int64_t cos_sin_rows, double *out) {
  const int64_t half = rotary_dim / 2;
  double *rotated = malloc((size_t)(head_dim > 0 ? head_dim : 1) * sizeof(double)); /* out may be x */
  if (!rotated) abort();
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t pos = positions[t];
    const bool in_table = cos_sin == NULL || (pos >= 0 && pos < cos_sin_rows);
    for (int64_t h = 0; h < heads; ++h) {
      const double *xv = x + (t * heads + h) * head_dim;
      double *ov = out + (t * heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        double c, s;
        if (!in_table) {
          c = s = NAN;
        } else if (cos_sin) {
          c = cos_sin[pos * rotary_dim + i];
          s = cos_sin[pos * rotary_dim + half + i];
        } else {
          double angle = (double)pos * position_scale * pow(theta, -2.0 * (double)i / (double)rotary_dim);
          c = cos(angle);
          s = sin(angle);
        }
        int64_t ia = style == KF_ROPE_GPTJ ? 2 * i : i, ib = style == KF_ROPE_GPTJ ? 2 * i + 1 : i + half;
        rotated[ia] = xv[ia] * c - xv[ib] * s;
        rotated[ib] = xv[ia] * s + xv[ib] * c;
      }
      for (int64_t d = rotary_dim; d < head_dim; ++d) rotated[d] = xv[d];
      for (int64_t d = 0; d < head_dim; ++d) ov[d] = rotated[d];
    }
  }
  free(rotated);
}

void kf_ref_glu(const double *gate, const double *up, size_t count, kf_glu_activation activation, double *out) {
  for (size_t i = 0; i < count; ++i) {
    double g = gate[i], act;
    if (activation == KF_GLU_GELU_TANH)
      act = 0.5 * g * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (g + 0.044715 * g * g * g)));
    else
      act = g / (1.0 + exp(-g)); /* exp(-g) = inf for g < -709 gives -0, the limit */
    out[i] = act * up[i];
  }
}

void kf_ref_softmax(const double *x, int64_t rows, int64_t row_len, double scale, const double *mask,
                    int64_t mask_rows, double *out) {
  for (int64_t r = 0; r < rows; ++r) {
    const double *xr = x + r * row_len;
    const double *mr = mask ? mask + (r % mask_rows) * row_len : NULL;
    double *yr = out + r * row_len;
    double max = -INFINITY;
    for (int64_t c = 0; c < row_len; ++c) {
      yr[c] = xr[c] * scale + (mr ? mr[c] : 0.0);
      if (yr[c] > max) max = yr[c];
    }
    double sum = 0.0;
    for (int64_t c = 0; c < row_len; ++c) {
      yr[c] = exp(yr[c] - max); /* all -inf: -inf - -inf = NaN, and the row is NaN */
      sum += yr[c];
    }
    for (int64_t c = 0; c < row_len; ++c) yr[c] /= sum;
  }
}

void kf_ref_gemm(const double *a, const double *b, int64_t m, int64_t n, int64_t k, int swiglu, double alpha,
                 const double *bias, double beta, const double *c, const double *residual, double *out,
                 double *magnitude) {
  const int64_t n2 = swiglu ? 2 * n : n;
  double *t = malloc((size_t)n2 * sizeof(double)), *tm = malloc((size_t)n2 * sizeof(double));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n2; ++j) {
      double sum = 0.0, mag = 0.0;
      for (int64_t p = 0; p < k; ++p) {
        double prod = a[i * k + p] * b[p * n2 + j];
        sum += prod;
        mag += fabs(prod);
      }
      t[j] = alpha * sum + (bias ? bias[j] : 0.0);
      tm[j] = fabs(alpha) * mag + (bias ? fabs(bias[j]) : 0.0);
    }
    for (int64_t j = 0; j < n; ++j) {
      double v, mag;
      if (swiglu) {
        double g = t[j], u = t[n + j], s = g / (1.0 + exp(-g));
        v = s * u;
        mag = 1.1 * tm[j] * fabs(u) + fabs(s) * tm[n + j];
      } else {
        v = t[j];
        mag = tm[j];
      }
      if (beta != 0.0 && c) {
        v += beta * c[i * n + j];
        mag += fabs(beta * c[i * n + j]);
      }
      if (residual) {
        v += residual[i * n + j];
        mag += fabs(residual[i * n + j]);
      }
      out[i * n + j] = v;
      if (magnitude) magnitude[i * n + j] = mag;
    }
  }
  free(t);
  free(tm);
}

void kf_ref_attention(const double *q, const double *k, const double *v, int64_t q_len, int64_t kv_len,
                      int64_t q_heads, int64_t kv_heads, int64_t head_dim, double scale, int causal,
                      int64_t window_left, double *out, double *lse, double *magnitude, double *condition) {
  const int64_t group = q_heads / kv_heads, d = head_dim;
  double *s = malloc((size_t)(kv_len > 0 ? kv_len : 1) * sizeof(double));
  if (condition) *condition = 0.0;
  for (int64_t h = 0; h < q_heads; ++h) {
    const int64_t kh = h / group;
    for (int64_t i = 0; i < q_len; ++i) {
      const int64_t pos = i + kv_len - q_len;
      const double *qi = q + (i * q_heads + h) * d;
      double mx = -INFINITY;
      for (int64_t j = 0; j < kv_len; ++j) {
        bool visible = (!causal || j <= pos) && (window_left < 0 || j >= pos - window_left);
        if (!visible) {
          s[j] = -INFINITY;
          continue;
        }
        const double *kj = k + (j * kv_heads + kh) * d;
        double dot = 0.0, mag = 0.0;
        for (int64_t e = 0; e < d; ++e) {
          dot += qi[e] * kj[e];
          mag += fabs(qi[e] * kj[e]);
        }
        s[j] = scale * dot;
        if (condition && fabs(scale) * mag > *condition) *condition = fabs(scale) * mag;
        if (s[j] > mx) mx = s[j];
      }
      double *o = out + (i * q_heads + h) * d;
      double *om = magnitude ? magnitude + (i * q_heads + h) * d : NULL;
      for (int64_t e = 0; e < d; ++e) {
        o[e] = 0.0;
        if (om) om[e] = 0.0;
      }
      if (mx == -INFINITY) {
        if (lse) lse[h * q_len + i] = -INFINITY;
        continue;
      }
      double sum = 0.0;
      for (int64_t j = 0; j < kv_len; ++j) {
        if (s[j] == -INFINITY) continue;
        double p = exp(s[j] - mx);
        sum += p;
        const double *vj = v + (j * kv_heads + kh) * d;
        for (int64_t e = 0; e < d; ++e) {
          o[e] += p * vj[e];
          if (om) om[e] += p * fabs(vj[e]);
        }
      }
      for (int64_t e = 0; e < d; ++e) {
        o[e] /= sum;
        if (om) om[e] /= sum;
      }
      if (lse) lse[h * q_len + i] = mx + log(sum);
    }
  }
  free(s);
}

/* ---- random data ---- */

uint64_t kf_test_seed(void) {
  static int chosen = 0;
  static uint64_t seed = 0;
  if (chosen) return seed;
  const char *env = getenv("KF_TEST_SEED");
  if (env && *env) {
    seed = strtoull(env, NULL, 0);
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
  }
  chosen = 1;
  printf("seed: %llu (replay with KF_TEST_SEED=%llu)\n", (unsigned long long)seed, (unsigned long long)seed);
  fflush(stdout);
  return seed;
}

void kf_test_rng_init(kf_test_rng *rng, uint64_t seed) { rng->state = seed; }

/* splitmix64 (Steele, Lea, Flood: "Fast splittable pseudorandom number generators", 2014). */
uint64_t kf_test_rng_next(kf_test_rng *rng) {
  uint64_t z = (rng->state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double kf_test_rng_uniform(kf_test_rng *rng) { return (double)(kf_test_rng_next(rng) >> 11) * 0x1p-53; }

double kf_test_rng_normal(kf_test_rng *rng) {
  double u1 = 1.0 - kf_test_rng_uniform(rng); /* (0, 1]: log is finite */
  double u2 = kf_test_rng_uniform(rng);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void kf_test_rng_fill(kf_test_rng *rng, double *values, size_t count, double scale) {
  /* |v| >= 1e-3 * scale keeps every value nonzero after rounding to any 16-bit format for the scales
   * tests use (f16's smallest subnormal is 6e-8). */
  for (size_t i = 0; i < count; ++i) {
    double v = kf_test_rng_normal(rng);
    if (fabs(v) < 1e-3) v = v < 0 ? -1e-3 : 1e-3;
    values[i] = v * scale;
  }
}

/* ---- conversions ---- */

/* Chunks keep the f32 staging buffer small; double -> f32 is exact for every f32 value and rounds to
 * nearest otherwise, then kf_convert rounds f32 -> dtype. (A double rounding, but the tests only need
 * the result to be *some* value of dtype: the reference reads it back with kf_test_to_double.) */
#define KF_TEST_CONVERT_CHUNK 4096

kf_status kf_test_from_double(const double *src, kf_dtype dtype, void *dst, size_t count) {
  size_t elem = kf_dtype_size(dtype);
  if (elem == 0 || dtype == KF_I32) return KF_ERROR_DTYPE_MISMATCH;
  float staging[KF_TEST_CONVERT_CHUNK];
  for (size_t done = 0; done < count; done += KF_TEST_CONVERT_CHUNK) {
    size_t n = count - done < KF_TEST_CONVERT_CHUNK ? count - done : KF_TEST_CONVERT_CHUNK;
    for (size_t i = 0; i < n; ++i) staging[i] = (float)src[done + i];
    kf_status status = kf_convert(staging, KF_F32, (char *)dst + done * elem, dtype, n);
    if (status != KF_OK) return status;
  }
  return KF_OK;
}

kf_status kf_test_to_double(const void *src, kf_dtype dtype, double *dst, size_t count) {
  size_t elem = kf_dtype_size(dtype);
  if (elem == 0 || dtype == KF_I32) return KF_ERROR_DTYPE_MISMATCH;
  float staging[KF_TEST_CONVERT_CHUNK];
  for (size_t done = 0; done < count; done += KF_TEST_CONVERT_CHUNK) {
    size_t n = count - done < KF_TEST_CONVERT_CHUNK ? count - done : KF_TEST_CONVERT_CHUNK;
    kf_status status = kf_convert((const char *)src + done * elem, dtype, staging, KF_F32, n);
    if (status != KF_OK) return status;
    for (size_t i = 0; i < n; ++i) dst[done + i] = staging[i];
  }
  return KF_OK;
}

kf_status kf_test_round_to(double *values, kf_dtype dtype, size_t count) {
  size_t elem = kf_dtype_size(dtype);
  if (elem == 0 || dtype == KF_I32) return KF_ERROR_DTYPE_MISMATCH;
  unsigned char staging[KF_TEST_CONVERT_CHUNK * 4];
  for (size_t done = 0; done < count; done += KF_TEST_CONVERT_CHUNK) {
    size_t n = count - done < KF_TEST_CONVERT_CHUNK ? count - done : KF_TEST_CONVERT_CHUNK;
    kf_status status = kf_test_from_double(values + done, dtype, staging, n);
    if (status == KF_OK) status = kf_test_to_double(staging, dtype, values + done, n);
    if (status != KF_OK) return status;
  }
  return KF_OK;
}

/* ---- error metrics ---- */

kf_test_error kf_test_compare(const double *out, const double *ref, const double *magnitude, size_t count,
                              size_t group_len) {
  kf_test_error e = {0.0, 0.0, -1, 0.0, 0.0, 0.0};
  if (count == 0) return e;
  if (group_len == 0 || group_len > count) group_len = count;
  for (size_t start = 0; start < count; start += group_len) {
    size_t end = start + group_len < count ? start + group_len : count;
    double ref_max = 0.0, err_squares = 0.0, ref_squares = 0.0, group_max_abs = 0.0;
    size_t group_worst = start;
    int non_finite = 0;
    for (size_t i = start; i < end; ++i) {
      double diff = fabs(out[i] - ref[i]);
      /* Any NaN or infinity (on either side) is a failure, never a match: isfinite on both. */
      if (!isfinite(out[i]) || !isfinite(ref[i])) {
        if (!non_finite) group_worst = i;
        non_finite = 1;
        continue;
      }
      double m = magnitude ? fabs(magnitude[i]) : fabs(ref[i]);
      if (m > ref_max) ref_max = m;
      if (diff > group_max_abs) {
        group_max_abs = diff;
        group_worst = i;
      }
      err_squares += diff * diff;
      ref_squares += m * m;
    }
    double group_err, group_nmse;
    if (non_finite) {
      group_err = group_nmse = INFINITY;
    } else {
      group_err = ref_max > 0.0 ? group_max_abs / ref_max : group_max_abs;
      group_nmse = ref_squares > 0.0 ? err_squares / ref_squares : err_squares;
    }
    if (ref_max > e.ref_max_abs) e.ref_max_abs = ref_max;
    if (group_nmse > e.nmse) e.nmse = group_nmse;
    if (group_err > e.max_err || e.worst_index < 0) {
      if (group_err > e.max_err) e.max_err = group_err;
      e.worst_index = (int64_t)group_worst;
      e.worst_out = out[group_worst];
      e.worst_ref = ref[group_worst];
    }
  }
  return e;
}

/* ---- tolerances ----
 *
 * u(dtype) is the unit roundoff, half an ulp at 1.0: f32 2^-24, f16 2^-11, bf16 2^-8 (f8e4m3 2^-4).
 *
 * RMSNorm, output y_i = h_i * r * w_i + b_i with r = 1/sqrt(mean(h²) + eps), all in f32; errors are
 * measured against m_i = |h_i r w_i| + |b_i| (the magnitude argument of kf_test_compare), since the
 * final add is only accurate relative to its terms:
 *  - rounding y to the output dtype costs at most u_out |y_i| <= u_out m_i; an f32 result that lies
 *    within the computation error of a rounding boundary may round to the other neighbour, so 2 u_out
 *    covers the output;
 *  - the sum of squares, accumulated in f32 in chains of unknown length (CPU: blocks of 16, GPU:
 *    per-thread loops, then a tree), has relative error up to (chain length) u_f32 in the worst case
 *    and ~sqrt(row_len) u_f32 in practice (rounding errors of positive terms are independent);
 *    r inherits half of it. 2 sqrt(row_len) u_f32 bounds it for every chain layout we use (a
 *    256-thread GPU row of 100000 elements: chains of 391 -> <= 196 u_f32 < 632 u_f32);
 *  - sqrt / rsqrt (GPU rsqrt is 2-3 ulp), the division and the three multiply-adds: 16 u_f32.
 * So tolerance = 2 u_out + (16 + 2 sqrt(row_len)) u_f32. For row_len 4096: f32 8.7e-6, f16 9.9e-4,
 * bf16 7.8e-3.
 *
 * Residual add, residual_out = round_out(f32(x + residual)): one f32 rounding and one to the output
 * dtype, no reduction, relative to |x| + |residual|: 2 u_out.
 *
 * LayerNorm, y_i = (h_i - mean) r w_i + b_i, r = 1/sqrt(var + eps), against m_i = |(h_i - mean) r w_i|
 * + |b_i| (the normalized value, i.e. errors in units of the row's std, not of |h|):
 *  - output rounding and the variance / rsqrt / multiply-add chain as for RMSNorm: 2 u_out +
 *    (16 + 2 sqrt(row_len)) u_f32. The variance is a sum of squares of deviations (two-pass or
 *    Welford), so its relative error is that of RMSNorm's sum of squares; an error d in the mean
 *    changes it only by d² (the deviations sum to 0);
 *  - the mean: its f32 sum has absolute error up to 2 sqrt(row_len) u_f32 mean(|h|) (as above, relative
 *    to the terms), and it enters every h_i - mean unscaled, so in units of the std it is
 *    2 sqrt(row_len) u_f32 mean(|h|) / std = 2 sqrt(row_len) u_f32 * condition.
 * So tolerance = 2 u_out + (16 + 2 sqrt(row_len)) (1 + condition) u_f32. A row of mean 1000 and std 1
 * (condition 1000), row_len 4096, f32 output: 8.7e-3 -- while a one-pass E[h²] - mean² in f32 loses
 * 2 sqrt(4096) u_f32 * 1e6 ~ 8 to cancellation in a variance of 1: the test of that row still fails an
 * unstable variance by orders of magnitude.
 *
 * RoPE, y = a cos - b sin (or a sin + b cos) against m = |a| + |b|, passed-through elements against |x|:
 *  - output rounding 2 u_out; sin/cos of the f32 angle (accurate library sinf/cosf, ~1 ulp), two
 *    products and a difference: 8 u_f32, doubled to 16 as for the norms;
 *  - the angle: the kernels compute inv_freq = exp2(-f log2(theta)), f = 2i/rotary_dim, in f32 and
 *    angle = (position * position_scale) * inv_freq in f32. f and log2(theta) are rounded (2 u relative
 *    error of an exponent of size f log2(theta)) and exp2 may be off by 3 + 2|x| ulp (the Vulkan bound);
 *    that is a relative error of inv_freq of about (3 + 2 f log2 theta + 1.4 f log2 theta) u_f32, and
 *    since inv_freq = theta^-f, the absolute angle error P theta^-f (3 + 3.4 f log2 theta) u_f32 (P =
 *    |position * position_scale|) peaks below P (3 + 3.4 / (e ln 2)) u_f32 = 4.8 P u_f32 whatever
 *    theta is; two more roundings (the product and the angle itself): ~7 P u_f32, taken as 8 P u_f32.
 *    An angle error d moves the pair (a, b) by d |(a, b)| <= d (|a| + |b|).
 *  So tolerance = 2 u_out + (16 + 8 P) u_f32 with condition = max P. Positions up to 8192 (scale 1):
 *  f32 3.9e-3 -- the angle is only good to ~P u_f32 = 5e-4 rad there, an inherent limit of f32
 *  angles, not slack; a position of 100000 (a decode step in a long context): 4.8e-2. With a cos_sin
 *  table (condition 0) the reference uses the table's f32 values, and only the 16 u_f32 remain.
 *
 * GLU, out = act(g) up against m = |g up| (act(g) = g sigmoid(g) or 0.5 g + 0.5 g tanh(z): terms of
 * size |g|):
 *  - output rounding 2 u_out; the products and the polynomial in z: 16 u_f32;
 *  - exp (SiLU, and tanh built from exp) of an argument of size up to |g| may be off by 3 + 2|g| ulp
 *    (Vulkan's bound; CUDA / OpenCL are tighter); the sigmoid inherits that relative error, tanh an
 *    absolute error no larger (and it saturates for |z| > 9). So + 4 |g| u_f32 covers it, with
 *    condition = max |g|: tolerance = 2 u_out + (16 + 4 condition) u_f32.
 *
 * Softmax, y_i = e^(z_i - M) / sum_j e^(z_j - M), z = x scale + mask, against m = |y| (max per row):
 *  - z_i and z_i - M are rounded in f32: an absolute error of up to 3 L u_f32 in the exponent (L =
 *    max |z| over finite logits, the condition), i.e. a relative error of 3 L u_f32 in each term, and
 *    the same again through the sum: 6 L u_f32;
 *  - exp itself (3 + 2|x| ulp for Vulkan, relative): a term e^t of t << 0 is tiny, and |t| e^t <= 1/e
 *    relative to the row's largest term, so a few u_f32; the sum of row_len terms: 2 sqrt(row_len)
 *    u_f32 as for the norms; the division: together 16 u_f32;
 *  - output rounding: 2 u_out relative, and below the dtype's normal range an absolute error up to the
 *    smallest subnormal: relative to the row's largest y (>= 1 / row_len) that is row_len * tiny_out
 *    (f16: 6e-8 * 65537 = 3.9e-3 for a flat row of 65537; negligible for f32 and bf16).
 *  So tolerance = 2 u_out + row_len tiny_out + (16 + 2 sqrt(row_len) + 6 condition) u_f32.
 *
 * GEMM, c = alpha sum_k a b (+ epilogue) against m = |alpha| sum_k |a b| + |bias| + |beta c| + |residual|
 * (inputs are the dtype's values exactly, so products are exact in f32 for f16/bf16/e4m3):
 *  - the f32 sum over K in chains of unknown layout (tiles, split-K, tensor-core trees): 2 sqrt(K) u_f32
 *    as for the norms; the epilogue's adds and scale: 16 u_f32; output rounding 2 u_out;
 *  - SwiGLU: m = 1.1 m_gate |up| + |silu(gate)| m_up (silu' <= 1.1) plus the exp of the gate (4 |g|
 *    u_f32 as for GLU, condition = max |gate|).
 *  So tolerance = 2 u_out + (16 + 2 sqrt(K) + 4 condition) u_f32. TF32 inputs and FP8 tensor cores
 *  (whose accumulator keeps ~14 bits between additions on Hopper) use 2^-13 in place of u_f32
 *  (KF_TEST_OP_GEMM_LOW_ACC).
 *
 * Attention, out = sum_j p_j v_j / sum_j p_j against m = sum_j p_j |v_j| / sum_j p_j:
 *  - the logits s = scale q.k: f32 sums of head_dim products, an absolute error up to ~condition u_f32
 *    (condition = max scale sum |q k|) that enters the exponent: 6 condition u_f32 as for softmax;
 *  - the row sums over kv_len: 2 sqrt(kv_len) u_f32, plus 16 u_f32 for exp, the rescaling and the division;
 *  - tensor-core kernels round p to the input dtype before the PV product: 2 u_in (= u_out here), and
 *    the output rounding 2 u_out.
 *  So tolerance = 4 u_out + (16 + 2 sqrt(kv_len) + 6 condition) u_f32; lse (f32, absolute error
 *  against max(1, |lse|)): (16 + 2 sqrt(kv_len) + 6 condition) u_f32.
 *
 * Every bound above is per element relative to m_i, so it bounds both max_err (in units of max m per
 * row) and sqrt(nmse) (softmax's subnormal term: sum err² <= row_len (tiny/2)², sum y² >= 1/row_len,
 * so nmse <= (row_len tiny)² too). */
static double unit_roundoff(kf_dtype dtype) {
  switch (dtype) {
    case KF_F32: return 0x1p-24;
    case KF_F16: return 0x1p-11;
    case KF_BF16: return 0x1p-8;
    case KF_F8_E4M3: return 0x1p-4;
    default: return 0.0;
  }
}

/* The smallest positive (subnormal) value of a dtype. */
static double smallest_subnormal(kf_dtype dtype) {
  switch (dtype) {
    case KF_F32: return 0x1p-149;
    case KF_F16: return 0x1p-24;
    case KF_BF16: return 0x1p-133;
    case KF_F8_E4M3: return 0x1p-9;
    default: return 0.0;
  }
}

double kf_test_tolerance_conditioned(kf_test_op op, kf_dtype out_dtype, int64_t reduction_len, double condition) {
  double u_out = unit_roundoff(out_dtype), u_f32 = unit_roundoff(KF_F32);
  double n = (double)reduction_len;
  switch (op) {
    case KF_TEST_OP_RMSNORM: return 2.0 * u_out + (16.0 + 2.0 * sqrt(n)) * u_f32;
    case KF_TEST_OP_RESIDUAL_ADD: return 2.0 * u_out;
    case KF_TEST_OP_LAYERNORM: return 2.0 * u_out + (16.0 + 2.0 * sqrt(n)) * (1.0 + condition) * u_f32;
    case KF_TEST_OP_ROPE: return 2.0 * u_out + (16.0 + 8.0 * condition) * u_f32;
    case KF_TEST_OP_GLU: return 2.0 * u_out + (16.0 + 4.0 * condition) * u_f32;
    case KF_TEST_OP_SOFTMAX:
      return 2.0 * u_out + n * smallest_subnormal(out_dtype) + (16.0 + 2.0 * sqrt(n) + 6.0 * condition) * u_f32;
    case KF_TEST_OP_GEMM: return 2.0 * u_out + (16.0 + 2.0 * sqrt(n) + 4.0 * condition) * u_f32;
    case KF_TEST_OP_GEMM_LOW_ACC: return 2.0 * u_out + (16.0 + 2.0 * sqrt(n) + 4.0 * condition) * 0x1p-13;
    case KF_TEST_OP_ATTENTION:
      return 2.0 * u_out + 2.0 * u_out + (16.0 + 2.0 * sqrt(n) + 6.0 * condition) * u_f32;
    case KF_TEST_OP_ATTENTION_LSE: return (16.0 + 2.0 * sqrt(n) + 6.0 * condition) * u_f32;
    default: return 0.0;
  }
}

double kf_test_tolerance(kf_test_op op, kf_dtype out_dtype, int64_t reduction_len) {
  return kf_test_tolerance_conditioned(op, out_dtype, reduction_len, 0.0);
}

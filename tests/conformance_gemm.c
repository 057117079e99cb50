/* conformance_gemm.c — the GEMM suite: kf_gemm against kf_ref_gemm on every device.
 *
 * Each case names its structure (shape, transposes, layout, batch, epilogue) and dtypes. Two layouts:
 *  - "odd": every matrix at an odd element offset with rows ROW_GAP elements apart (no kernel may assume
 *    aligned rows; this is what sends the fast paths to their fallbacks);
 *  - "aligned": offset 16 elements and packed rows whose sizes are multiples of 16, so the tensor-core /
 *    TMA paths take the case (and partial tiles come from M, N, K not being tile multiples).
 * C is poisoned with NaN (beta == 0 must never read it) unless the case reads it (beta != 0, or the
 * residual is C itself). f8e4m3 cases run on devices with KF_CAP_FP8; elsewhere kf_gemm must return
 * KF_ERROR_UNSUPPORTED (a SKIP line records it). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/conformance.h"

enum {
  G_TRANS_A = 1u << 0,
  G_TRANS_B = 1u << 1,
  G_COLMAJOR_A = 1u << 2, /* A passed as a column-major view (stride 1 in its first matrix dimension) */
  G_COLMAJOR_B = 1u << 3,
  G_ALIGNED = 1u << 4,
  G_BIAS = 1u << 5,
  G_RESIDUAL = 1u << 6,
  G_RESIDUAL_IS_C = 1u << 7, /* desc->residual = c, C holds the residual */
  G_BETA = 1u << 8,          /* beta = 0.5, C holds old values */
  G_SWIGLU = 1u << 9,
  G_ALPHA = 1u << 10,        /* alpha = 0.25 */
  G_BATCH_AB = 1u << 11,     /* batch 3, A and B batched */
  G_BATCH_B_BCAST = 1u << 12, /* batch 2, A batched, B 2-D */
  G_BATCH_A_BCAST = 1u << 13, /* batch 2, A 2-D, B batched */
};

typedef struct gemm_structure {
  int64_t m, n, k; /* n: columns of C (op(B) has 2n with SwiGLU) */
  unsigned flags;
} gemm_structure;

static const gemm_structure gemm_structures[] = {
    {1, 1, 1, 0},
    {3, 17, 127, G_TRANS_A},
    {17, 3, 1000, G_TRANS_B},
    {127, 127, 127, G_TRANS_A | G_TRANS_B},
    {17, 127, 4097, 0},
    {4097, 3, 17, G_BIAS},
    {3, 4097, 17, G_RESIDUAL | G_TRANS_B},
    {127, 1000, 17, G_SWIGLU},
    {64, 64, 64, G_ALIGNED},
    {128, 256, 64, G_ALIGNED | G_BIAS},
    {256, 384, 512, G_ALIGNED | G_TRANS_B},
    {200, 136, 264, G_ALIGNED | G_TRANS_B | G_BIAS},
    {1, 512, 1024, G_ALIGNED | G_TRANS_B},
    {16, 1024, 1024, G_ALIGNED | G_TRANS_B | G_RESIDUAL},
    {33, 65, 129, G_COLMAJOR_A},
    {33, 65, 129, G_COLMAJOR_B | G_TRANS_A},
    {17, 33, 65, G_BATCH_AB | G_BIAS},
    {64, 128, 256, G_ALIGNED | G_BATCH_B_BCAST | G_TRANS_B},
    {17, 33, 65, G_BATCH_A_BCAST | G_TRANS_B},
    {127, 129, 65, G_BETA | G_ALPHA},
    {65, 127, 129, G_RESIDUAL_IS_C},
    {128, 256, 512, G_ALIGNED | G_TRANS_B | G_SWIGLU | G_BIAS},
    {100, 100, 100, G_ALPHA | G_BIAS | G_RESIDUAL},
    {5, 7, 0, G_BIAS | G_RESIDUAL},
    {17, 33, 127, G_SWIGLU | G_TRANS_A | G_RESIDUAL},
    {96, 160, 4096, G_ALIGNED | G_TRANS_B},
    /* 16-byte aligned rows with m/n-contiguous operands (the cp.async m/n modes), partial edge tiles */
    {136, 264, 200, G_ALIGNED | G_TRANS_A},
    {200, 136, 264, G_ALIGNED | G_TRANS_A | G_TRANS_B | G_SWIGLU | G_RESIDUAL},
    {136, 120, 328, G_ALIGNED | G_SWIGLU | G_BETA},
    /* decode shapes (m <= 16, the skinny kernels) with the epilogues, a transposed A and batches */
    {3, 130, 1000, G_TRANS_A | G_TRANS_B | G_SWIGLU | G_BIAS | G_BATCH_AB},
    {8, 256, 512, G_ALIGNED | G_TRANS_B | G_SWIGLU | G_BETA | G_ALPHA},
    /* the CUDA decode kernel: m < 8 with a partial last column block and k not a multiple of 32; SwiGLU
       over batches with K split; few columns, so many splits, into C as the residual */
    {5, 1000, 2056, G_ALIGNED | G_TRANS_B | G_BIAS},
    {12, 300, 3000, G_ALIGNED | G_TRANS_B | G_SWIGLU | G_BIAS | G_BATCH_AB},
    {1, 64, 8192, G_ALIGNED | G_TRANS_B | G_RESIDUAL_IS_C},
    /* the Hopper narrow geometry: one 64-row A box a tile (the second consumer idle), SwiGLU with bias,
       K shared among CTAs; and M = 192, whose second row tile has one consumer with rows */
    {40, 1024, 1536, G_ALIGNED | G_TRANS_B | G_SWIGLU | G_BIAS},
    {192, 512, 2048, G_ALIGNED | G_TRANS_B | G_BETA},
    /* the Hopper narrow geometry's K split in a cluster (few tiles): batches, an M-major A, 8 rows for the
       second consumer, and a residual (the epilogue from registers, run by the owner of each warp's rows) */
    {72, 256, 1024, G_ALIGNED | G_TRANS_A | G_BATCH_AB | G_RESIDUAL},
    /* the Hopper residual loaded K blocks before the epilogue: partial row and column tiles (n not a
       multiple of 8 columns), K long enough that the preload falls inside the loop */
    {320, 392, 1024, G_ALIGNED | G_TRANS_B | G_RESIDUAL},
    /* C as its own residual with TMA-aligned rows: the Hopper epilogue loads it into the buffers it
       stores C from */
    {256, 512, 768, G_ALIGNED | G_TRANS_B | G_RESIDUAL_IS_C},
    /* beta C read by the same TMA path (C's boxes loaded into the buffers they are stored from): a partial
       last column box with a bias; batches with a partial row tile and alpha */
    {256, 520, 1024, G_ALIGNED | G_TRANS_B | G_BETA | G_BIAS},
    {136, 512, 512, G_ALIGNED | G_BATCH_AB | G_BETA | G_ALPHA},
};
#define GEMM_STRUCTURE_COUNT (sizeof gemm_structures / sizeof gemm_structures[0])

/* inputs (A = B), C, bias, residual */
typedef struct gemm_dtypes {
  kf_dtype in, c, bias, residual;
} gemm_dtypes;

static const gemm_dtypes gemm_uniform[] = {
    {KF_F32, KF_F32, KF_F32, KF_F32}, {KF_F16, KF_F16, KF_F16, KF_F16}, {KF_BF16, KF_BF16, KF_BF16, KF_BF16}};
static const gemm_dtypes gemm_mixed[] = {
    {KF_BF16, KF_F32, KF_F32, KF_BF16}, {KF_F16, KF_BF16, KF_F32, KF_F16}, {KF_F32, KF_BF16, KF_BF16, KF_F32}};
static const gemm_dtypes gemm_fp8[] = {{KF_F8_E4M3, KF_BF16, KF_F32, KF_BF16}, {KF_F8_E4M3, KF_F32, KF_BF16, KF_F32}};

typedef struct gemm_case {
  const gemm_structure *s;
  gemm_dtypes dt;
} gemm_case;

typedef struct gemm_inputs {
  int64_t batch, a_count, b_count; /* batch of C; matrices stored for A and B */
  int64_t a_rows, a_cols, b_rows, b_cols; /* the tensors as passed (after the transpose flags) */
  host_input a, b, bias, residual; /* a, b in tensor order [a_count][a_rows][a_cols]; residual/C [batch][m][n] */
  float alpha, beta, scale_a, scale_b;
} gemm_inputs;

static int64_t n_full(const gemm_structure *s) { return (s->flags & G_SWIGLU) ? 2 * s->n : s->n; }

static void gemm_make(const void *cv, kf_test_rng *rng, void **inputs_out, case_spec *spec) {
  const gemm_case *gc = cv;
  const gemm_structure *s = gc->s;
  const unsigned f = s->flags;
  gemm_inputs *in = xmalloc(sizeof *in);
  memset(in, 0, sizeof *in);
  const int64_t m = s->m, n = s->n, k = s->k, n2 = n_full(s);
  in->batch = (f & G_BATCH_AB) ? 3 : (f & (G_BATCH_A_BCAST | G_BATCH_B_BCAST)) ? 2 : 1;
  in->a_count = (f & G_BATCH_A_BCAST) ? 1 : in->batch;
  in->b_count = (f & G_BATCH_B_BCAST) ? 1 : in->batch;
  in->a_rows = (f & G_TRANS_A) ? k : m;
  in->a_cols = (f & G_TRANS_A) ? m : k;
  in->b_rows = (f & G_TRANS_B) ? n2 : k;
  in->b_cols = (f & G_TRANS_B) ? k : n2;
  in->alpha = (f & G_ALPHA) ? 0.25f : 1.0f;
  in->beta = (f & G_BETA) ? 0.5f : 0.0f;
  const bool fp8 = gc->dt.in == KF_F8_E4M3;
  in->scale_a = fp8 ? 0.5f : 1.0f;
  in->scale_b = fp8 ? 0.25f : 1.0f;

  /* Inputs of unit size (fp8: of a size e4m3 holds well; the scales bring the product back). */
  const double in_scale = fp8 ? 4.0 : 1.0;
  size_t a_total = (size_t)(in->a_count * m * k), b_total = (size_t)(in->b_count * k * n2);
  double *values = xmalloc((a_total > b_total ? a_total : b_total) * sizeof(double) + sizeof(double));
  kf_test_rng_fill(rng, values, a_total, in_scale);
  host_input_make(&in->a, gc->dt.in, values, a_total);
  kf_test_rng_fill(rng, values, b_total, in_scale);
  host_input_make(&in->b, gc->dt.in, values, b_total);
  free(values);
  if (f & G_BIAS) {
    double *bias = xmalloc((size_t)n2 * sizeof(double));
    kf_test_rng_fill(rng, bias, (size_t)n2, 1.0);
    host_input_make(&in->bias, gc->dt.bias, bias, (size_t)n2);
    free(bias);
  }
  const size_t c_count = (size_t)(in->batch * m * n);
  if (f & (G_RESIDUAL | G_RESIDUAL_IS_C | G_BETA)) {
    double *residual = xmalloc(c_count * sizeof(double));
    kf_test_rng_fill(rng, residual, c_count, 2.0);
    host_input_make(&in->residual, (f & G_RESIDUAL) ? gc->dt.residual : gc->dt.c, residual, c_count);
    free(residual);
  }

  spec->op = "gemm";
  dtype_label(spec->dtype, sizeof spec->dtype, gc->dt.in, gc->dt.c);
  if (in->batch > 1)
    snprintf(spec->shape, sizeof spec->shape, "[%lld,%lld,%lld,%lld]", (long long)in->batch, (long long)m,
             (long long)n, (long long)k);
  else
    snprintf(spec->shape, sizeof spec->shape, "[%lld,%lld,%lld]", (long long)m, (long long)n, (long long)k);
  static const struct {
    unsigned flag;
    const char *name;
  } names[] = {{G_TRANS_A, "ta"},          {G_TRANS_B, "tb"},        {G_COLMAJOR_A, "colmajor_a"},
               {G_COLMAJOR_B, "colmajor_b"}, {G_ALIGNED, "aligned"},   {G_BIAS, "bias"},
               {G_RESIDUAL, "residual"},     {G_RESIDUAL_IS_C, "residual=c"}, {G_BETA, "beta"},
               {G_SWIGLU, "swiglu"},         {G_ALPHA, "alpha"},       {G_BATCH_AB, "batch"},
               {G_BATCH_B_BCAST, "batch_b_broadcast"}, {G_BATCH_A_BCAST, "batch_a_broadcast"}};
  size_t used = (size_t)snprintf(spec->variant, sizeof spec->variant, "%s", (f & G_ALIGNED) ? "" : "odd");
  for (size_t i = 0; i < sizeof names / sizeof names[0]; ++i)
    if ((f & names[i].flag) && used < sizeof spec->variant)
      used += (size_t)snprintf(spec->variant + used, sizeof spec->variant - used, "%s%s", used ? "," : "",
                               names[i].name);
  if ((f & G_BIAS) && gc->dt.bias != gc->dt.c && used < sizeof spec->variant)
    used += (size_t)snprintf(spec->variant + used, sizeof spec->variant - used, ",bias:%s", kf_dtype_name(gc->dt.bias));
  if ((f & G_RESIDUAL) && gc->dt.residual != gc->dt.c && used < sizeof spec->variant)
    snprintf(spec->variant + used, sizeof spec->variant - used, ",residual:%s", kf_dtype_name(gc->dt.residual));

  /* Reference, batch entry by batch entry, on op(A) [m, k] and op(B) [k, n2] gathered from tensor order. */
  spec->output_count = 1;
  output_spec *os = &spec->out[0];
  os->name = "c";
  os->dtype = gc->dt.c;
  os->count = c_count;
  os->group_len = (size_t)n;
  os->ref = xmalloc(c_count * sizeof(double));
  os->magnitude = xmalloc(c_count * sizeof(double));
  double *op_a = xmalloc((size_t)(m * k + 1) * sizeof(double)), *op_b = xmalloc((size_t)(k * n2 + 1) * sizeof(double));
  double condition = 0.0;
  for (int64_t bi = 0; bi < in->batch; ++bi) {
    const double *ta = in->a.values + (in->a_count > 1 ? bi : 0) * m * k;
    const double *tb = in->b.values + (in->b_count > 1 ? bi : 0) * k * n2;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t p = 0; p < k; ++p) op_a[i * k + p] = (f & G_TRANS_A) ? ta[p * m + i] : ta[i * k + p];
    for (int64_t p = 0; p < k; ++p)
      for (int64_t j = 0; j < n2; ++j) op_b[p * n2 + j] = (f & G_TRANS_B) ? tb[j * k + p] : tb[p * n2 + j];
    const double *old = in->residual.values ? in->residual.values + bi * m * n : NULL;
    double alpha = (double)in->alpha * in->scale_a * in->scale_b;
    kf_ref_gemm(op_a, op_b, m, n, k, (f & G_SWIGLU) != 0, alpha, in->bias.values, in->beta,
                (f & G_BETA) ? old : NULL, (f & (G_RESIDUAL | G_RESIDUAL_IS_C)) ? old : NULL, os->ref + bi * m * n,
                os->magnitude + bi * m * n);
    if (f & G_SWIGLU) /* the exp in silu: the size of the gate pre-activations */
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double g = in->bias.values ? in->bias.values[j] : 0.0;
          for (int64_t p = 0; p < k; ++p) g += alpha * op_a[i * k + p] * op_b[p * n2 + j];
          condition = fmax(condition, fabs(g));
        }
  }
  free(op_a);
  free(op_b);
  os->tol = kf_test_tolerance_conditioned(fp8 ? KF_TEST_OP_GEMM_LOW_ACC : KF_TEST_OP_GEMM, gc->dt.c, k, condition);
  *inputs_out = in;
}

static void gemm_free(void *iv) {
  gemm_inputs *in = iv;
  host_input_free(&in->a);
  host_input_free(&in->b);
  if (in->bias.values) host_input_free(&in->bias);
  if (in->residual.values) host_input_free(&in->residual);
  free(in);
}

/* The geometry of a matrix tensor [count?][rows][cols]: row-major, or a column-major view. */
static geometry matrix_geometry(int64_t count, bool batched, int64_t rows, int64_t cols, bool col_major, bool aligned) {
  geometry g;
  memset(&g, 0, sizeof g);
  const int64_t gap = aligned ? 0 : ROW_GAP;
  int32_t d = 0;
  if (batched) g.shape[d++] = count;
  g.shape[d] = rows;
  g.shape[d + 1] = cols;
  g.ndim = d + 2;
  int64_t span;
  if (col_major) {
    int64_t ld = rows + gap;
    g.strides[d] = 1;
    g.strides[d + 1] = ld;
    span = ld * cols;
  } else {
    int64_t ld = cols + gap;
    g.strides[d] = ld;
    g.strides[d + 1] = 1;
    span = ld * rows;
  }
  if (batched) g.strides[0] = span + (aligned ? 0 : 7);
  g.offset = aligned ? 16 : GUARD_FRONT;
  return g;
}

static void gemm_run(test_device *dev, const void *cv, const void *iv, const case_spec *spec, device_result *result) {
  const gemm_case *gc = cv;
  const gemm_structure *s = gc->s;
  const gemm_inputs *in = iv;
  const unsigned f = s->flags;
  const bool aligned = (f & G_ALIGNED) != 0, batched = in->batch > 1;
  char why[512] = "";
  bool ok = true;

  if (gc->dt.in == KF_F8_E4M3 && !(dev->info->caps & KF_CAP_FP8)) {
    /* Only the refusal is checked here: a clear status, no output. */
    kf_tensor *a = NULL, *b = NULL, *c = NULL;
    kf_status st = kf_tensor_create(dev->ctx, KF_F8_E4M3, 2, (int64_t[]){s->m, s->k}, &a);
    if (st == KF_OK) st = kf_tensor_create(dev->ctx, KF_F8_E4M3, 2, (int64_t[]){s->k, s->n}, &b);
    if (st == KF_OK) st = kf_tensor_create(dev->ctx, gc->dt.c, 2, (int64_t[]){s->m, s->n}, &c);
    if (st == KF_OK) st = kf_gemm(dev->ctx, a, b, c, NULL);
    bool refused = st == KF_ERROR_UNSUPPORTED;
    if (refused)
      printf("SKIP op=gemm %s dtype=%s shape=%s variant=%s reason=\"no FP8 on this device: kf_gemm returned "
             "KF_ERROR_UNSUPPORTED as it should\"\n",
             dev->label, spec->dtype, spec->shape, spec->variant);
    else {
      printf("FAIL op=gemm %s dtype=%s shape=%s variant=%s expected KF_ERROR_UNSUPPORTED without FP8, got %s\n",
             dev->label, spec->dtype, spec->shape, spec->variant, kf_status_name(st));
      tally(false);
      dev->cases++;
      dev->failed++;
    }
    kf_tensor_destroy(a);
    kf_tensor_destroy(b);
    kf_tensor_destroy(c);
    return;
  }

  geometry ag = matrix_geometry(in->a_count, in->a_count > 1, in->a_rows, in->a_cols, (f & G_COLMAJOR_A) != 0, aligned);
  geometry bg = matrix_geometry(in->b_count, in->b_count > 1, in->b_rows, in->b_cols, (f & G_COLMAJOR_B) != 0, aligned);
  geometry cg = matrix_geometry(in->batch, batched, s->m, s->n, false, aligned);
  geometry rg = cg;
  geometry biasg = geometry_rows(1, (int64_t[]){n_full(s)}, 0);
  if (aligned) biasg.offset = 16;
  const bool residual_separate = (f & G_RESIDUAL) != 0, c_read = (f & (G_BETA | G_RESIDUAL_IS_C)) != 0;
  region ra = {0}, rb = {0}, rc = {0}, rbias = {0}, rres = {0};
  kf_tensor *a = NULL, *b = NULL, *c = NULL, *bias = NULL, *residual = NULL;
  CASE_TRY(region_create(dev->ctx, gc->dt.in, &ag, 1, &ra), "kf_tensor_create(a)");
  region_fill(&ra, &ag, in->a.bytes);
  CASE_TRY(region_create(dev->ctx, gc->dt.in, &bg, 1, &rb), "kf_tensor_create(b)");
  region_fill(&rb, &bg, in->b.bytes);
  CASE_TRY(region_create(dev->ctx, gc->dt.c, &cg, 1, &rc), "kf_tensor_create(c)");
  if (c_read) region_fill(&rc, &cg, in->residual.bytes);
  if (f & G_BIAS) {
    CASE_TRY(region_create(dev->ctx, gc->dt.bias, &biasg, 1, &rbias), "kf_tensor_create(bias)");
    region_fill(&rbias, &biasg, in->bias.bytes);
  }
  if (residual_separate) {
    CASE_TRY(region_create(dev->ctx, gc->dt.residual, &rg, 1, &rres), "kf_tensor_create(residual)");
    region_fill(&rres, &rg, in->residual.bytes);
  }
  region *regions[] = {&ra, &rb, &rc, &rbias, &rres};
  for (size_t i = 0; i < 5; ++i)
    if (regions[i]->storage) CASE_TRY(region_upload(regions[i]), "kf_tensor_write");
  CASE_TRY(region_view(&ra, &ag, &a), "kf_tensor_view(a)");
  CASE_TRY(region_view(&rb, &bg, &b), "kf_tensor_view(b)");
  CASE_TRY(region_view(&rc, &cg, &c), "kf_tensor_view(c)");
  if (f & G_BIAS) CASE_TRY(region_view(&rbias, &biasg, &bias), "kf_tensor_view(bias)");
  if (residual_separate) CASE_TRY(region_view(&rres, &rg, &residual), "kf_tensor_view(residual)");

  kf_gemm_desc desc = KF_GEMM_DESC_INIT;
  desc.alpha = in->alpha;
  desc.beta = in->beta;
  desc.transpose_a = (f & G_TRANS_A) != 0;
  desc.transpose_b = (f & G_TRANS_B) != 0;
  desc.bias = bias;
  desc.residual = (f & G_RESIDUAL_IS_C) ? c : residual;
  desc.activation = (f & G_SWIGLU) ? KF_GEMM_SWIGLU : KF_GEMM_NONE;
  desc.scale_a = in->scale_a;
  desc.scale_b = in->scale_b;
  CASE_TRY(kf_gemm(dev->ctx, a, b, c, &desc), "kf_gemm");
  CASE_TRY(kf_synchronize(dev->ctx), "kf_synchronize");

  void *bytes = xmalloc(spec->out[0].count * kf_dtype_size(spec->out[0].dtype));
  static const char *const out_names[] = {"c"};
  if (ok) ok = region_check(&ra, "a", NULL, NULL, NULL, 0, why, sizeof why);
  if (ok) ok = region_check(&rb, "b", NULL, NULL, NULL, 0, why, sizeof why);
  if (ok && (f & G_BIAS)) ok = region_check(&rbias, "bias", NULL, NULL, NULL, 0, why, sizeof why);
  if (ok && residual_separate) ok = region_check(&rres, "residual", NULL, NULL, NULL, 0, why, sizeof why);
  /* When C is read, its old values are not poison: an unwritten element shows up as a wrong value. */
  if (ok) ok = region_check(&rc, "c", &cg, &bytes, out_names, 1, why, sizeof why);
  if (ok) result_take(result, 0, bytes, &spec->out[0]);
  free(bytes);
  finish_case(dev, spec, result, ok, why, sizeof why);
  kf_tensor_destroy(a);
  kf_tensor_destroy(b);
  kf_tensor_destroy(c);
  kf_tensor_destroy(bias);
  kf_tensor_destroy(residual);
  for (size_t i = 0; i < 5; ++i) region_destroy(regions[i]);
}

void run_gemm_suite(test_device *devices, int device_count, bool quick, kf_test_rng *rng) {
  const size_t uniform_count = sizeof gemm_uniform / sizeof gemm_uniform[0];
  const size_t mixed_count = sizeof gemm_mixed / sizeof gemm_mixed[0];
  const size_t fp8_count = sizeof gemm_fp8 / sizeof gemm_fp8[0];
  gemm_case *cases = xmalloc(GEMM_STRUCTURE_COUNT * (uniform_count + mixed_count + fp8_count) * sizeof *cases);
  size_t n = 0;
  for (size_t si = 0; si < GEMM_STRUCTURE_COUNT; ++si) {
    const gemm_structure *s = &gemm_structures[si];
    for (size_t d = 0; d < uniform_count; ++d) {
      if (quick && d != si % uniform_count) continue;
      cases[n++] = (gemm_case){s, gemm_uniform[d]};
    }
    /* Mixed output / epilogue dtypes on every third structure, rotating through the mixes. */
    if (si % 3 == 1 && !quick) cases[n++] = (gemm_case){s, gemm_mixed[(si / 3) % mixed_count]};
    /* FP8 on the structures whose K and rows suit e4m3 tensor cores (aligned, K-major B), and one odd. */
    bool fp8_shape = (s->flags & G_ALIGNED) && (s->flags & G_TRANS_B) && !(s->flags & G_TRANS_A);
    if (fp8_shape || si == 4)
      for (size_t d = 0; d < fp8_count; ++d) {
        if (quick && d != 0) continue;
        cases[n++] = (gemm_case){s, gemm_fp8[d]};
      }
  }
  run_generic_suite("gemm", cases, sizeof *cases, n, gemm_make, gemm_run, gemm_free, devices, device_count, rng);
  free(cases);
}

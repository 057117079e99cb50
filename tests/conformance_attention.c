/* conformance_attention.c — the attention suite: kf_attention against kf_ref_attention on every device,
 * and a check that temporary device memory does not grow with q_len * kv_len.
 *
 * Layouts: "aligned" tensors start 16 elements into their storage and are packed (the tensor-core paths
 * take them); "strided" ones start at an odd offset with gaps between heads and tokens (fallback paths);
 * "packed_qkv" makes q, k and v slices of one [batch, seq, (q_heads + 2 kv_heads) * head_dim] storage;
 * "kv_cache" makes k and v the first kv_len rows of a longer cache. out is poisoned with NaN, lse (when
 * asked for) too. A query that sees no key must give out = 0 and lse = -inf exactly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/conformance.h"

enum {
  A_CAUSAL = 1u << 0,
  A_WINDOW = 1u << 1,
  A_LSE = 1u << 2,
  A_PACKED_QKV = 1u << 3,
  A_KV_CACHE = 1u << 4,
  A_STRIDED = 1u << 5,
  A_SCALE = 1u << 6, /* an explicit scale of 0.3 instead of 1/sqrt(head_dim) */
};

#define KV_CACHE_EXTRA 100

typedef struct attn_structure {
  int64_t batch, q_len, kv_len;
  int32_t q_heads, kv_heads, head_dim;
  unsigned flags;
  int64_t window_left;
} attn_structure;

static const attn_structure attn_structures[] = {
    {1, 1, 1, 1, 1, 64, 0, -1},
    {2, 17, 17, 4, 4, 64, A_CAUSAL, -1},
    {1, 127, 127, 8, 2, 128, A_CAUSAL | A_LSE, -1},
    {1, 1, 4097, 8, 1, 128, A_LSE, -1},
    {2, 1, 1000, 8, 2, 64, A_CAUSAL, -1},
    {1, 16, 1000, 4, 4, 96, A_CAUSAL | A_LSE, -1},
    {1, 127, 1000, 2, 2, 256, A_CAUSAL | A_WINDOW, 100},
    {1, 1000, 127, 2, 2, 64, A_CAUSAL | A_LSE, -1},
    {1, 17, 127, 4, 1, 128, A_WINDOW, 16},
    {2, 64, 64, 6, 2, 128, A_PACKED_QKV | A_CAUSAL, -1},
    {1, 5, 200, 4, 2, 64, A_KV_CACHE | A_CAUSAL | A_LSE, -1},
    {1, 33, 33, 2, 2, 96, A_STRIDED | A_SCALE, -1},
    {1, 256, 256, 2, 2, 128, 0, -1},
    {1, 1, 1, 4, 4, 256, A_LSE, -1},
    {1, 127, 4097, 1, 1, 64, A_CAUSAL, -1},
    {1, 128, 128, 16, 2, 64, A_CAUSAL | A_STRIDED, -1},
    {1, 1000, 1000, 1, 1, 128, A_CAUSAL | A_LSE, -1},
    {1, 64, 300, 2, 1, 256, A_LSE | A_STRIDED, -1},
};
#define ATTN_STRUCTURE_COUNT (sizeof attn_structures / sizeof attn_structures[0])

typedef struct attn_case {
  const attn_structure *s;
  kf_dtype dtype;
} attn_case;

typedef struct attn_inputs {
  host_input q, k, v;                /* packed [batch, len, heads, head_dim] */
  unsigned char *lse_neg_inf;        /* lse elements expected to be -inf (their reference is set to 0) */
  float scale;
} attn_inputs;

static void attn_make(const void *cv, kf_test_rng *rng, void **inputs_out, case_spec *spec) {
  const attn_case *ac = cv;
  const attn_structure *s = ac->s;
  attn_inputs *in = xmalloc(sizeof *in);
  memset(in, 0, sizeof *in);
  const int64_t d = s->head_dim;
  const size_t q_count = (size_t)(s->batch * s->q_len * s->q_heads * d);
  const size_t kv_count = (size_t)(s->batch * s->kv_len * s->kv_heads * d);
  double *values = xmalloc((q_count > kv_count ? q_count : kv_count) * sizeof(double));
  kf_test_rng_fill(rng, values, q_count, 1.0);
  host_input_make(&in->q, ac->dtype, values, q_count);
  kf_test_rng_fill(rng, values, kv_count, 1.0);
  host_input_make(&in->k, ac->dtype, values, kv_count);
  kf_test_rng_fill(rng, values, kv_count, 1.0);
  host_input_make(&in->v, ac->dtype, values, kv_count);
  free(values);
  in->scale = (s->flags & A_SCALE) ? 0.3f : (float)(1.0 / sqrt((double)d));

  spec->op = "attention";
  dtype_label(spec->dtype, sizeof spec->dtype, ac->dtype, ac->dtype);
  snprintf(spec->shape, sizeof spec->shape, "[b=%lld,q=%lld,kv=%lld,hq=%d,hkv=%d,d=%d]", (long long)s->batch,
           (long long)s->q_len, (long long)s->kv_len, s->q_heads, s->kv_heads, s->head_dim);
  size_t used = 0;
  static const struct {
    unsigned flag;
    const char *name;
  } names[] = {{A_CAUSAL, "causal"}, {A_WINDOW, "window"},     {A_LSE, "lse"},           {A_PACKED_QKV, "packed_qkv"},
               {A_KV_CACHE, "kv_cache"}, {A_STRIDED, "strided"}, {A_SCALE, "scale=0.3"}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; ++i)
    if ((s->flags & names[i].flag) && used < sizeof spec->variant)
      used += (size_t)snprintf(spec->variant + used, sizeof spec->variant - used, "%s%s", used ? "," : "",
                               names[i].name);
  if (s->flags & A_WINDOW)
    snprintf(spec->variant + used, sizeof spec->variant - used, "=%lld", (long long)s->window_left);
  else if (used == 0)
    snprintf(spec->variant, sizeof spec->variant, "plain");

  const size_t lse_count = (size_t)(s->batch * s->q_heads * s->q_len);
  spec->output_count = (s->flags & A_LSE) ? 2 : 1;
  output_spec *os = &spec->out[0];
  os->name = "out";
  os->dtype = ac->dtype;
  os->count = q_count;
  os->group_len = (size_t)d;
  os->ref = xmalloc(q_count * sizeof(double));
  os->magnitude = xmalloc(q_count * sizeof(double));
  double *lse = xmalloc(lse_count * sizeof(double));
  double condition = 0.0;
  for (int64_t b = 0; b < s->batch; ++b) {
    double c = 0.0;
    const size_t qo = (size_t)(b * s->q_len * s->q_heads * d), ko = (size_t)(b * s->kv_len * s->kv_heads * d);
    kf_ref_attention(in->q.values + qo, in->k.values + ko, in->v.values + ko, s->q_len, s->kv_len, s->q_heads,
                     s->kv_heads, d, (double)in->scale, (s->flags & A_CAUSAL) != 0,
                     (s->flags & A_WINDOW) ? s->window_left : -1, os->ref + qo, lse + (size_t)(b * s->q_heads * s->q_len),
                     os->magnitude + qo, &c);
    condition = fmax(condition, c);
  }
  os->tol = kf_test_tolerance_conditioned(KF_TEST_OP_ATTENTION, ac->dtype, s->kv_len, condition);
  if (s->flags & A_LSE) {
    output_spec *ls = &spec->out[1];
    ls->name = "lse";
    ls->dtype = KF_F32;
    ls->count = lse_count;
    ls->group_len = 1; /* each value against its own size (at least 1): an absolute error for small lse */
    ls->ref = lse;
    ls->magnitude = xmalloc(lse_count * sizeof(double));
    in->lse_neg_inf = xmalloc(lse_count);
    for (size_t i = 0; i < lse_count; ++i) {
      in->lse_neg_inf[i] = isinf(lse[i]) && lse[i] < 0;
      if (in->lse_neg_inf[i]) lse[i] = 0.0;
      ls->magnitude[i] = fmax(1.0, fabs(lse[i]));
    }
    ls->tol = kf_test_tolerance_conditioned(KF_TEST_OP_ATTENTION_LSE, KF_F32, s->kv_len, condition);
  } else {
    free(lse);
  }
  *inputs_out = in;
}

static void attn_free(void *iv) {
  attn_inputs *in = iv;
  host_input_free(&in->q);
  host_input_free(&in->k);
  host_input_free(&in->v);
  free(in->lse_neg_inf);
  free(in);
}

/* [batch, len, heads, dim] with the given row (token) and head strides; offset from the layout. */
static geometry seq_geometry(int64_t batch, int64_t len, int64_t heads, int64_t dim, int64_t head_stride,
                             int64_t token_stride, int64_t batch_stride, int64_t offset) {
  geometry g;
  memset(&g, 0, sizeof g);
  g.ndim = 4;
  g.shape[0] = batch;
  g.shape[1] = len;
  g.shape[2] = heads;
  g.shape[3] = dim;
  g.strides[0] = batch_stride;
  g.strides[1] = token_stride;
  g.strides[2] = head_stride;
  g.strides[3] = 1;
  g.offset = offset;
  return g;
}

/* A packed or strided (gaps after each head and token, odd offset) [batch, len, heads, dim] tensor. */
static geometry own_geometry(int64_t batch, int64_t len, int64_t heads, int64_t dim, bool strided) {
  int64_t head_stride = dim + (strided ? ROW_GAP : 0);
  int64_t token_stride = heads * head_stride + (strided ? 2 : 0);
  int64_t batch_stride = len * token_stride + (strided ? 3 : 0);
  return seq_geometry(batch, len, heads, dim, head_stride, token_stride, batch_stride, strided ? GUARD_FRONT : 16);
}

static void attn_run(test_device *dev, const void *cv, const void *iv, const case_spec *spec, device_result *result) {
  const attn_case *ac = cv;
  const attn_structure *s = ac->s;
  const attn_inputs *in = iv;
  const unsigned f = s->flags;
  const bool strided = (f & A_STRIDED) != 0;
  const int64_t d = s->head_dim;
  char why[512] = "";
  bool ok = true;

  geometry qg, kg, vg;
  if (f & A_PACKED_QKV) { /* one storage: token rows of q_heads + 2 kv_heads heads */
    int64_t width = (s->q_heads + 2 * s->kv_heads) * d, batch_stride = s->q_len * width;
    qg = seq_geometry(s->batch, s->q_len, s->q_heads, d, d, width, batch_stride, 16);
    kg = seq_geometry(s->batch, s->kv_len, s->kv_heads, d, d, width, batch_stride, 16 + s->q_heads * d);
    vg = seq_geometry(s->batch, s->kv_len, s->kv_heads, d, d, width, batch_stride, 16 + (s->q_heads + s->kv_heads) * d);
  } else {
    qg = own_geometry(s->batch, s->q_len, s->q_heads, d, strided);
    int64_t rows = s->kv_len + ((f & A_KV_CACHE) ? KV_CACHE_EXTRA : 0);
    kg = own_geometry(s->batch, rows, s->kv_heads, d, strided);
    kg.shape[1] = s->kv_len; /* the first kv_len rows of the cache */
    vg = kg;
  }
  geometry og = own_geometry(s->batch, s->q_len, s->q_heads, d, strided);
  geometry lg;
  memset(&lg, 0, sizeof lg);
  lg.ndim = 3;
  lg.shape[0] = s->batch;
  lg.shape[1] = s->q_heads;
  lg.shape[2] = s->q_len;
  lg.strides[2] = 1;
  lg.strides[1] = s->q_len;
  lg.strides[0] = s->q_heads * s->q_len;
  lg.offset = 16;

  region rq = {0}, rk = {0}, rv = {0}, ro = {0}, rl = {0};
  kf_tensor *q = NULL, *k = NULL, *v = NULL, *out = NULL, *lse = NULL;
  if (f & A_PACKED_QKV) {
    geometry all[3] = {qg, kg, vg};
    CASE_TRY(region_create(dev->ctx, ac->dtype, all, 3, &rq), "kf_tensor_create(qkv)");
    region_fill(&rq, &qg, in->q.bytes);
    region_fill(&rq, &kg, in->k.bytes);
    region_fill(&rq, &vg, in->v.bytes);
  } else {
    CASE_TRY(region_create(dev->ctx, ac->dtype, &qg, 1, &rq), "kf_tensor_create(q)");
    region_fill(&rq, &qg, in->q.bytes);
    CASE_TRY(region_create(dev->ctx, ac->dtype, &kg, 1, &rk), "kf_tensor_create(k)");
    region_fill(&rk, &kg, in->k.bytes);
    CASE_TRY(region_create(dev->ctx, ac->dtype, &vg, 1, &rv), "kf_tensor_create(v)");
    region_fill(&rv, &vg, in->v.bytes);
  }
  CASE_TRY(region_create(dev->ctx, ac->dtype, &og, 1, &ro), "kf_tensor_create(out)");
  if (f & A_LSE) CASE_TRY(region_create(dev->ctx, KF_F32, &lg, 1, &rl), "kf_tensor_create(lse)");
  region *regions[] = {&rq, &rk, &rv, &ro, &rl};
  for (size_t i = 0; i < 5; ++i)
    if (regions[i]->storage) CASE_TRY(region_upload(regions[i]), "kf_tensor_write");
  region *kr = (f & A_PACKED_QKV) ? &rq : &rk, *vr = (f & A_PACKED_QKV) ? &rq : &rv;
  CASE_TRY(region_view(&rq, &qg, &q), "kf_tensor_view(q)");
  CASE_TRY(region_view(kr, &kg, &k), "kf_tensor_view(k)");
  CASE_TRY(region_view(vr, &vg, &v), "kf_tensor_view(v)");
  CASE_TRY(region_view(&ro, &og, &out), "kf_tensor_view(out)");
  if (f & A_LSE) CASE_TRY(region_view(&rl, &lg, &lse), "kf_tensor_view(lse)");

  kf_attention_desc desc = KF_ATTENTION_DESC_INIT;
  desc.scale = (f & A_SCALE) ? in->scale : 0.0f;
  desc.causal = (f & A_CAUSAL) != 0;
  desc.window_left = (f & A_WINDOW) ? s->window_left : -1;
  desc.lse = lse;
  CASE_TRY(kf_attention(dev->ctx, q, k, v, out, &desc), "kf_attention");
  CASE_TRY(kf_synchronize(dev->ctx), "kf_synchronize");

  void *out_bytes = xmalloc(spec->out[0].count * kf_dtype_size(ac->dtype));
  void *lse_bytes = xmalloc(((f & A_LSE) ? spec->out[1].count : 1) * sizeof(float));
  static const char *const out_names[] = {"out"}, *const lse_names[] = {"lse"};
  if (ok) ok = region_check(&rq, (f & A_PACKED_QKV) ? "qkv" : "q", NULL, NULL, NULL, 0, why, sizeof why);
  if (ok && !(f & A_PACKED_QKV)) ok = region_check(&rk, "k", NULL, NULL, NULL, 0, why, sizeof why);
  if (ok && !(f & A_PACKED_QKV)) ok = region_check(&rv, "v", NULL, NULL, NULL, 0, why, sizeof why);
  if (ok) ok = region_check(&ro, "out", &og, &out_bytes, out_names, 1, why, sizeof why);
  if (ok && (f & A_LSE)) ok = region_check(&rl, "lse", &lg, &lse_bytes, lse_names, 1, why, sizeof why);
  if (ok) result_take(result, 0, out_bytes, &spec->out[0]);
  if (ok && (f & A_LSE)) {
    result_take(result, 1, lse_bytes, &spec->out[1]);
    double *l = result->out[1];
    for (size_t i = 0; i < spec->out[1].count && ok; ++i) {
      bool neg_inf = isinf(l[i]) && l[i] < 0;
      if (in->lse_neg_inf[i] != neg_inf) {
        ok = false;
        snprintf(why, sizeof why, "output=lse element %zu is %.9g; %s", i, l[i],
                 in->lse_neg_inf[i] ? "expected -inf (the query sees no key)" : "expected a finite value");
      }
      if (neg_inf) l[i] = 0.0;
    }
  }
  free(out_bytes);
  free(lse_bytes);
  finish_case(dev, spec, result, ok, why, sizeof why);
  kf_tensor_destroy(q);
  kf_tensor_destroy(k);
  kf_tensor_destroy(v);
  kf_tensor_destroy(out);
  kf_tensor_destroy(lse);
  for (size_t i = 0; i < 5; ++i) region_destroy(regions[i]);
}

/* Temporary device memory of one attention call (peak minus what the tensors hold), for q_len = kv_len =
 * len: flash attention keeps it independent of len² (at most linear: split partials). */
static kf_status attention_temp_bytes(kf_context *ctx, int64_t len, int64_t heads, int64_t head_dim,
                                      uint64_t *out_bytes, char *error, size_t error_size) {
  kf_tensor *t[4] = {NULL, NULL, NULL, NULL};
  kf_status status = KF_OK;
  for (int i = 0; i < 4 && status == KF_OK; ++i)
    status = kf_tensor_create(ctx, KF_F16, 4, (int64_t[]){1, len, heads, head_dim}, &t[i]);
  kf_memory_stats before = {sizeof before}, after = {sizeof after};
  if (status == KF_OK) status = kf_synchronize(ctx);
  if (status == KF_OK) status = kf_memory_reset_peak(ctx);
  if (status == KF_OK) status = kf_memory_get_stats(ctx, &before);
  kf_attention_desc desc = KF_ATTENTION_DESC_INIT;
  desc.causal = 1;
  if (status == KF_OK) status = kf_attention(ctx, t[0], t[1], t[2], t[3], &desc);
  if (status == KF_OK) status = kf_synchronize(ctx);
  if (status == KF_OK) status = kf_memory_get_stats(ctx, &after);
  *out_bytes = status == KF_OK ? after.peak_bytes - before.current_bytes : 0;
  if (status != KF_OK) snprintf(error, error_size, "%s: %s", kf_status_name(status), kf_last_error());
  for (int i = 0; i < 4; ++i) kf_tensor_destroy(t[i]);
  return status;
}

static void attention_memory_check(test_device *dev) {
  const int64_t heads = 2, head_dim = 64, small = 512, large = 2048;
  uint64_t temp_small = 0, temp_large = 0;
  char error[400] = "";
  kf_status status = attention_temp_bytes(dev->ctx, small, heads, head_dim, &temp_small, error, sizeof error);
  if (status == KF_OK)
    status = attention_temp_bytes(dev->ctx, large, heads, head_dim, &temp_large, error, sizeof error);
  /* 4x the length: a score buffer would grow 16x; allow linear growth (4x) plus 1 MiB of slack, and
   * never as much as one f32 score matrix of the large case. */
  const uint64_t scores = (uint64_t)(large * large * heads) * sizeof(float);
  bool ok = status == KF_OK && temp_large <= 4 * temp_small + (1u << 20) && temp_large < scores;
  printf("%s op=attention_memory %s len=%lld->%lld temp_bytes=%llu->%llu score_matrix_bytes=%llu%s%s\n",
         ok ? "PASS" : "FAIL", dev->label, (long long)small, (long long)large, (unsigned long long)temp_small,
         (unsigned long long)temp_large, (unsigned long long)scores, status != KF_OK ? " error=" : "", error);
  tally(ok);
}

void run_attention_suite(test_device *devices, int device_count, bool quick, kf_test_rng *rng) {
  static const kf_dtype dtypes[] = {KF_F32, KF_F16, KF_BF16};
  attn_case *cases = xmalloc(ATTN_STRUCTURE_COUNT * 3 * sizeof *cases);
  size_t n = 0;
  for (size_t si = 0; si < ATTN_STRUCTURE_COUNT; ++si)
    for (size_t d = 0; d < 3; ++d) {
      if (quick && d != si % 3) continue;
      cases[n++] = (attn_case){&attn_structures[si], dtypes[d]};
    }
  run_generic_suite("attention", cases, sizeof *cases, n, attn_make, attn_run, attn_free, devices, device_count, rng);
  free(cases);
  for (int d = 0; d < device_count; ++d) attention_memory_check(&devices[d]);
}

/* op_gemm.c — kf_gemm: validation and normalization of C = epilogue(alpha op(A) op(B)).
 *
 * Backends see one form: every matrix row-major with a leading dimension and a batch stride (0 =
 * broadcast), transposes as flags. A column-major view (stride 1 in its first matrix dimension) is
 * re-described here as the transpose of a row-major one, so no backend handles two layouts. The
 * SwiGLU pairing is split into two B operands (gate half, up half) and two bias halves. */
#include <math.h>
#include <stdio.h>

#include "core/error.h"
#include "core/internal.h"

/* The stored row-major matrix behind tensor t's last two dimensions, and the shape of op(t).
 * transpose: the caller's flag (op = tᵀ). */
typedef struct gemm_matrix {
  kf_matrix_arg arg;
  int32_t trans;   /* op(stored) = storedᵀ */
  int64_t rows;    /* of op(t) */
  int64_t cols;
} gemm_matrix;

static kf_status matrix_of(const kf_tensor *t, const char *name, bool transpose, gemm_matrix *out) {
  int32_t r = t->ndim - 2, c = t->ndim - 1;
  int64_t t_rows = t->shape[r], t_cols = t->shape[c];
  bool row_major = t->strides[c] == 1 || t_cols == 1;
  bool col_major = t->strides[r] == 1 || t_rows == 1;
  if (!row_major && !col_major)
    return kf_fail(KF_ERROR_UNSUPPORTED,
                   "%s has strides %lld and %lld in its last two dimensions; one of them must be 1 (row- or "
                   "column-major matrix)",
                   name, (long long)t->strides[r], (long long)t->strides[c]);
  kf_matrix_arg arg = {t->storage->buffer, t->offset, 0, 0, t->dtype};
  if (row_major) {
    arg.ld = t_rows > 1 ? t->strides[r] : t_cols;
    if (arg.ld < t_cols) arg.ld = t_cols;  /* t_rows == 1 and any stride */
    out->trans = transpose;
  } else { /* column-major: t = storedᵀ with stored [t_cols, t_rows] */
    arg.ld = t_cols > 1 ? t->strides[c] : t_rows;
    if (arg.ld < t_rows) arg.ld = t_rows;
    out->trans = !transpose;
  }
  if (t->ndim == 3) arg.batch_stride = t->shape[0] > 1 ? t->strides[0] : 0;
  out->arg = arg;
  out->rows = transpose ? t_cols : t_rows;
  out->cols = transpose ? t_rows : t_cols;
  return KF_OK;
}

static kf_status check_ndim(const kf_tensor *t, const char *name, int32_t lo, int32_t hi) {
  if (t->ndim >= lo && t->ndim <= hi) return KF_OK;
  char s[128];
  return kf_fail(KF_ERROR_SHAPE_MISMATCH, "%s has shape %s; expected %s", name, kf_shape_str(t, s, sizeof s),
                 lo == hi ? "a 3-D tensor" : "a matrix [rows, cols] or a batch of matrices [batch, rows, cols]");
}

kf_status kf_gemm(kf_context *context, const kf_tensor *a, const kf_tensor *b, kf_tensor *c,
                  const kf_gemm_desc *desc) {
  KF_API_ENTER("kf_gemm");
  kf_status status = kf_check_context(context, "context");
  if (status == KF_OK) status = kf_check_tensor(a, "a", context);
  if (status == KF_OK) status = kf_check_tensor(b, "b", context);
  if (status == KF_OK) status = kf_check_tensor(c, "c", context);
  if (status != KF_OK) return status;
  kf_gemm_desc defaults = KF_GEMM_DESC_INIT;
  if (desc == NULL) desc = &defaults;
  if ((status = kf_check_desc_size(desc->struct_size, sizeof(kf_gemm_desc), "KF_GEMM_DESC_INIT")) != KF_OK)
    return status;
  if (desc->activation != KF_GEMM_NONE && desc->activation != KF_GEMM_SWIGLU)
    return kf_fail(KF_ERROR_INVALID_ARGUMENT, "desc->activation is %d; expected KF_GEMM_NONE or KF_GEMM_SWIGLU",
                   (int)desc->activation);
  const float scalars[4] = {desc->alpha, desc->beta, desc->scale_a, desc->scale_b};
  static const char *const scalar_names[4] = {"alpha", "beta", "scale_a", "scale_b"};
  for (int i = 0; i < 4; ++i)
    if (!isfinite(scalars[i]))
      return kf_fail(KF_ERROR_INVALID_ARGUMENT, "desc->%s is %g; expected a finite value", scalar_names[i],
                     (double)scalars[i]);
  const kf_tensor *bias = desc->bias, *residual = desc->residual;
  if (bias && (status = kf_check_tensor(bias, "desc->bias", context)) != KF_OK) return status;
  if (residual && (status = kf_check_tensor(residual, "desc->residual", context)) != KF_OK) return status;

  /* dtypes */
  if (a->dtype == KF_F8_E4M3 || b->dtype == KF_F8_E4M3) {
    if (a->dtype != b->dtype)
      return kf_fail(KF_ERROR_DTYPE_MISMATCH, "a has dtype %s and b has dtype %s; f8e4m3 GEMM needs both in f8e4m3",
                     kf_dtype_name(a->dtype), kf_dtype_name(b->dtype));
    if (!(context->info.caps & KF_CAP_FP8))
      return kf_fail(KF_ERROR_UNSUPPORTED, "f8e4m3 GEMM needs a device with FP8 matrix support; \"%s\" (%s) has none",
                     context->info.name, context->iface->name);
  } else {
    if ((status = kf_check_float_operand(a, "a")) != KF_OK) return status;
    if ((status = kf_check_float_operand(b, "b")) != KF_OK) return status;
    if (a->dtype != b->dtype)
      return kf_fail(KF_ERROR_DTYPE_MISMATCH, "a has dtype %s and b has dtype %s; A and B must have the same dtype",
                     kf_dtype_name(a->dtype), kf_dtype_name(b->dtype));
  }
  if ((status = kf_check_float_operand(c, "c")) != KF_OK) return status;
  if (bias && (status = kf_check_float_operand(bias, "desc->bias")) != KF_OK) return status;
  if (residual && (status = kf_check_float_operand(residual, "desc->residual")) != KF_OK) return status;

  /* shapes */
  if ((status = check_ndim(a, "a", 2, 3)) != KF_OK) return status;
  if ((status = check_ndim(b, "b", 2, 3)) != KF_OK) return status;
  if ((status = check_ndim(c, "c", 2, 3)) != KF_OK) return status;
  char sa[128], sb[128], sc[128];
  int64_t batch = c->ndim == 3 ? c->shape[0] : 1;
  const kf_tensor *operands[2] = {a, b};
  static const char *const operand_names[2] = {"a", "b"};
  for (int i = 0; i < 2; ++i)
    if (operands[i]->ndim == 3 && (c->ndim != 3 || operands[i]->shape[0] != batch))
      return kf_fail(KF_ERROR_SHAPE_MISMATCH,
                     "%s has shape %s and c has shape %s; a batched %s needs c with the same batch size",
                     operand_names[i], kf_shape_str(operands[i], sa, sizeof sa), kf_shape_str(c, sc, sizeof sc),
                     operand_names[i]);
  gemm_matrix ma, mb;
  if ((status = matrix_of(a, "a", desc->transpose_a != 0, &ma)) != KF_OK) return status;
  if ((status = matrix_of(b, "b", desc->transpose_b != 0, &mb)) != KF_OK) return status;
  const bool swiglu = desc->activation == KF_GEMM_SWIGLU;
  int64_t m = ma.rows, k = ma.cols, n_full = mb.cols;
  int64_t n = c->shape[c->ndim - 1];
  if (mb.rows != k)
    return kf_fail(KF_ERROR_SHAPE_MISMATCH, "op(a) is [%lld, %lld] and op(b) is [%lld, %lld]: inner dimensions differ "
                   "(a %s%s, b %s%s)",
                   (long long)m, (long long)k, (long long)mb.rows, (long long)mb.cols, kf_shape_str(a, sa, sizeof sa),
                   desc->transpose_a ? " transposed" : "", kf_shape_str(b, sb, sizeof sb),
                   desc->transpose_b ? " transposed" : "");
  if (c->shape[c->ndim - 2] != m || (swiglu ? n_full != 2 * n : n_full != n))
    return kf_fail(KF_ERROR_SHAPE_MISMATCH, "c has shape %s; expected [%s%lld, %lld] from op(a) [%lld, %lld] and op(b) "
                   "[%lld, %lld]%s",
                   kf_shape_str(c, sc, sizeof sc), c->ndim == 3 ? "batch, " : "", (long long)m,
                   (long long)(swiglu ? n_full / 2 : n_full), (long long)m, (long long)k, (long long)mb.rows,
                   (long long)n_full, swiglu ? " (KF_GEMM_SWIGLU halves op(b)'s width)" : "");
  if (swiglu && n_full % 2 != 0)
    return kf_fail(KF_ERROR_SHAPE_MISMATCH, "op(b) has %lld columns; KF_GEMM_SWIGLU needs an even number (gate | up)",
                   (long long)n_full);
  if (m > INT32_MAX || n_full > INT32_MAX || k > INT32_MAX || batch > INT32_MAX)
    return kf_fail(KF_ERROR_UNSUPPORTED, "GEMM dimensions above 2^31-1 are not supported (m %lld, n %lld, k %lld)",
                   (long long)m, (long long)n_full, (long long)k);
  if (c->shape[c->ndim - 1] > 1 && c->strides[c->ndim - 1] != 1)
    return kf_fail(KF_ERROR_UNSUPPORTED, "c has stride %lld in its last dimension; c must be row-major (stride 1)",
                   (long long)c->strides[c->ndim - 1]);
  int64_t bias_stride = 1;
  if (bias && (status = kf_check_vector(bias, "desc->bias", n_full, "op(b) has columns:", &bias_stride)) != KF_OK)
    return status;
  if (residual) {
    if ((status = kf_check_shape_like(residual, "desc->residual", c, "c")) != KF_OK) return status;
    if ((status = kf_check_rows_contiguous(residual, "desc->residual")) != KF_OK) return status;
  }

  /* aliasing */
  if ((status = kf_check_output(c, "c")) != KF_OK) return status;
  if ((status = kf_check_no_overlap(c, "c", a, "a", false)) != KF_OK) return status;
  if ((status = kf_check_no_overlap(c, "c", b, "b", false)) != KF_OK) return status;
  if ((status = kf_check_no_overlap(c, "c", bias, "desc->bias", false)) != KF_OK) return status;
  if ((status = kf_check_no_overlap(c, "c", residual, "desc->residual", true)) != KF_OK) return status;

  if (kf_numel_of(c) == 0) return KF_OK;
  if (context->iface->gemm == NULL)
    return kf_fail(KF_ERROR_UNSUPPORTED, "gemm is not implemented by the %s backend", context->iface->name);

  kf_gemm_args args = {.batch = batch, .m = m, .n = n, .k = k};
  args.alpha = desc->alpha * desc->scale_a * desc->scale_b;
  args.beta = desc->beta;
  args.trans_a = ma.trans;
  args.trans_b = mb.trans;
  args.activation = desc->activation;
  args.allow_tf32 = (context->flags & KF_CONTEXT_ALLOW_TF32) != 0;
  args.a = ma.arg;
  args.b = mb.arg;
  args.bias = kf_make_arg(bias, 0, 0, bias_stride);
  if (swiglu) {
    args.b_up = mb.arg;
    /* column n of op(B): a row of the stored matrix when it is transposed, else a column */
    args.b_up.offset += mb.trans ? n * mb.arg.ld : n;
    if (bias) args.bias_up = kf_make_arg(bias, n * bias_stride, 0, bias_stride);
  }
  args.c = (kf_matrix_arg){c->storage->buffer, c->offset, m > 1 ? c->strides[c->ndim - 2] : n,
                           c->ndim == 3 && batch > 1 ? c->strides[0] : 0, c->dtype};
  if (args.c.ld < n) args.c.ld = n;
  if (residual) {
    args.residual = (kf_matrix_arg){residual->storage->buffer, residual->offset,
                                    m > 1 ? residual->strides[residual->ndim - 2] : n,
                                    residual->ndim == 3 && batch > 1 ? residual->strides[0] : 0, residual->dtype};
    if (args.residual.ld < n) args.residual.ld = n;
  }

  size_t workspace_bytes = context->iface->gemm_workspace ? context->iface->gemm_workspace(context->backend_ctx, &args) : 0;
  size_t block_bytes = 0;
  if (workspace_bytes > 0) {
    if ((status = kf_alloc_block(context, workspace_bytes, &args.workspace, &block_bytes)) != KF_OK) return status;
    args.workspace_bytes = workspace_bytes;
  }
  status = context->iface->gemm(context->backend_ctx, &args);
  if (args.workspace) kf_free_block(context, args.workspace, block_bytes); /* reused only by later queued work */
  if (status != KF_OK) return kf_fail(status, "the %s backend failed", context->iface->name);
  return KF_OK;
}

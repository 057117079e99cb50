/* op_attention.c — kf_attention: validation and normalization of flash attention. Backends get every
 * operand as [batch, seq, heads, dim] strides (kf_seq_arg), the scale resolved, and a workspace from the
 * context's allocator when they ask for one (split-KV decode partials), so temporary memory shows in
 * kf_memory_get_stats and its size is the backend's promise, not a q_len * kv_len buffer. */
#include <math.h>
#include <stdio.h>

#include "core/error.h"
#include "core/internal.h"

static kf_status check_4d(const kf_tensor *t, const char *name) {
  char s[128];
  if (t->ndim != 4)
    return kf_fail(KF_ERROR_SHAPE_MISMATCH, "%s has shape %s; expected [batch, seq_len, heads, head_dim]", name,
                   kf_shape_str(t, s, sizeof s));
  return kf_check_rows_contiguous(t, name);
}

static kf_seq_arg seq_arg(const kf_tensor *t) {
  kf_seq_arg arg = {t->storage->buffer, t->offset, t->strides[0], t->strides[1], t->strides[2], t->dtype};
  return arg;
}

kf_status kf_attention(kf_context *context, const kf_tensor *q, const kf_tensor *k, const kf_tensor *v,
                       kf_tensor *out, const kf_attention_desc *desc) {
  KF_API_ENTER("kf_attention");
  kf_status status = kf_check_context(context, "context");
  if (status == KF_OK) status = kf_check_tensor(q, "q", context);
  if (status == KF_OK) status = kf_check_tensor(k, "k", context);
  if (status == KF_OK) status = kf_check_tensor(v, "v", context);
  if (status == KF_OK) status = kf_check_tensor(out, "out", context);
  if (status != KF_OK) return status;
  kf_attention_desc defaults = KF_ATTENTION_DESC_INIT;
  if (desc == NULL) desc = &defaults;
  if ((status = kf_check_desc_size(desc->struct_size, sizeof(kf_attention_desc), "KF_ATTENTION_DESC_INIT")) != KF_OK)
    return status;
  if (!isfinite(desc->scale))
    return kf_fail(KF_ERROR_INVALID_ARGUMENT, "desc->scale is %g; expected a finite value (0 for 1/sqrt(head_dim))",
                   (double)desc->scale);
  if (desc->window_left < -1)
    return kf_fail(KF_ERROR_INVALID_ARGUMENT, "desc->window_left is %lld; expected -1 (no window) or >= 0",
                   (long long)desc->window_left);
  kf_tensor *lse = desc->lse;
  if (lse && (status = kf_check_tensor(lse, "desc->lse", context)) != KF_OK) return status;

  if ((status = kf_check_float_operand(q, "q")) != KF_OK) return status;
  const kf_tensor *same_dtype[3] = {k, v, out};
  static const char *const same_names[3] = {"k", "v", "out"};
  for (int i = 0; i < 3; ++i)
    if (same_dtype[i]->dtype != q->dtype)
      return kf_fail(KF_ERROR_DTYPE_MISMATCH, "%s has dtype %s and q has dtype %s; q, k, v and out must share one dtype",
                     same_names[i], kf_dtype_name(same_dtype[i]->dtype), kf_dtype_name(q->dtype));
  if (lse && lse->dtype != KF_F32)
    return kf_fail(KF_ERROR_DTYPE_MISMATCH, "desc->lse has dtype %s; expected f32", kf_dtype_name(lse->dtype));

  if ((status = check_4d(q, "q")) != KF_OK) return status;
  if ((status = check_4d(k, "k")) != KF_OK) return status;
  if ((status = check_4d(v, "v")) != KF_OK) return status;
  if ((status = check_4d(out, "out")) != KF_OK) return status;
  char s1[128], s2[128];
  const int64_t batch = q->shape[0], q_len = q->shape[1], q_heads = q->shape[2], head_dim = q->shape[3];
  const int64_t kv_len = k->shape[1], kv_heads = k->shape[2];
  if (k->shape[0] != batch || k->shape[3] != head_dim)
    return kf_fail(KF_ERROR_SHAPE_MISMATCH, "k has shape %s and q has shape %s; batch and head_dim must agree",
                   kf_shape_str(k, s1, sizeof s1), kf_shape_str(q, s2, sizeof s2));
  if ((status = kf_check_shape_like(v, "v", k, "k")) != KF_OK) return status;
  if ((status = kf_check_shape_like(out, "out", q, "q")) != KF_OK) return status;
  if (kv_heads == 0 || q_heads % kv_heads != 0)
    return kf_fail(KF_ERROR_SHAPE_MISMATCH, "q has %lld heads and k has %lld; q_heads must be a multiple of kv_heads",
                   (long long)q_heads, (long long)kv_heads);
  if (head_dim % 8 != 0 || head_dim < 8 || head_dim > 256)
    return kf_fail(KF_ERROR_UNSUPPORTED, "head_dim is %lld; supported: multiples of 8 up to 256", (long long)head_dim);
  if (batch * q_len * q_heads == 0) return KF_OK; /* nothing to compute (checked before kv_len: no output) */
  if (kv_len == 0)
    return kf_fail(KF_ERROR_SHAPE_MISMATCH, "k and v have no keys (kv_len 0); attention needs at least one");
  if (q_len > INT32_MAX || kv_len > INT32_MAX || q_heads > INT32_MAX || batch > INT32_MAX)
    return kf_fail(KF_ERROR_UNSUPPORTED, "attention sizes above 2^31-1 are not supported");
  if (lse) {
    if (lse->ndim != 3 || lse->shape[0] != batch || lse->shape[1] != q_heads || lse->shape[2] != q_len)
      return kf_fail(KF_ERROR_SHAPE_MISMATCH, "desc->lse has shape %s; expected [%lld, %lld, %lld] (batch, q_heads, "
                     "q_len)",
                     kf_shape_str(lse, s1, sizeof s1), (long long)batch, (long long)q_heads, (long long)q_len);
  }

  if ((status = kf_check_output(out, "out")) != KF_OK) return status;
  if ((status = kf_check_no_overlap(out, "out", q, "q", false)) != KF_OK) return status;
  if ((status = kf_check_no_overlap(out, "out", k, "k", false)) != KF_OK) return status;
  if ((status = kf_check_no_overlap(out, "out", v, "v", false)) != KF_OK) return status;
  if (lse) {
    if ((status = kf_check_output(lse, "desc->lse")) != KF_OK) return status;
    const kf_tensor *others[4] = {q, k, v, out};
    static const char *const other_names[4] = {"q", "k", "v", "out"};
    for (int i = 0; i < 4; ++i)
      if ((status = kf_check_no_overlap(lse, "desc->lse", others[i], other_names[i], false)) != KF_OK) return status;
  }

  if (context->iface->attention == NULL)
    return kf_fail(KF_ERROR_UNSUPPORTED, "attention is not implemented by the %s backend", context->iface->name);

  kf_attention_args args = {.batch = batch, .q_len = q_len, .kv_len = kv_len};
  args.q_heads = (int32_t)q_heads;
  args.kv_heads = (int32_t)kv_heads;
  args.head_dim = (int32_t)head_dim;
  args.scale = desc->scale != 0.0f ? desc->scale : (float)(1.0 / sqrt((double)head_dim));
  args.causal = desc->causal != 0;
  args.window_left = desc->window_left;
  args.q = seq_arg(q);
  args.k = seq_arg(k);
  args.v = seq_arg(v);
  args.out = seq_arg(out);
  if (lse) /* [batch, q_heads, q_len] as (batch, seq = query, head) strides */
    args.lse = (kf_seq_arg){lse->storage->buffer, lse->offset, lse->strides[0], lse->strides[2], lse->strides[1],
                            KF_F32};

  size_t workspace_bytes =
      context->iface->attention_workspace ? context->iface->attention_workspace(context->backend_ctx, &args) : 0;
  size_t block_bytes = 0;
  if (workspace_bytes > 0) {
    if ((status = kf_alloc_block(context, workspace_bytes, &args.workspace, &block_bytes)) != KF_OK) return status;
    args.workspace_bytes = workspace_bytes;
  }
  status = context->iface->attention(context->backend_ctx, &args);
  if (args.workspace) kf_free_block(context, args.workspace, block_bytes); /* reused only by later queued work */
  if (status != KF_OK) return kf_fail(status, "the %s backend failed", context->iface->name);
  return KF_OK;
}

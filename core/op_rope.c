/* op_rope.c — kf_rope: rotary position embedding on Q and K in one backend call.
 * Validates the [tokens, heads, head_dim] layouts (strided views allowed, head_dim contiguous), the
 * positions and the optional cos/sin table, the descriptor and every aliasing rule, then passes the
 * token and head strides to the backend. */
#include <math.h>
#include <stdio.h>

#include "core/error.h"
#include "core/internal.h"

/* q/k-like operand: 3-D [tokens, heads, head_dim] with head_dim contiguous and 32-bit strides. */
static kf_status check_heads_tensor(const kf_tensor *t, const char *name) {
  kf_status status = kf_check_float_operand(t, name);
  if (status != KF_OK) return status;
  if (t->ndim != 3) {
    char a[128];
    return kf_fail(KF_ERROR_SHAPE_MISMATCH, "%s has shape %s; expected 3 dimensions [tokens, heads, head_dim]", name,
                   kf_shape_str(t, a, sizeof a));
  }
  if ((status = kf_check_rows_contiguous(t, name)) != KF_OK) return status;
  if (t->strides[0] > INT32_MAX || t->strides[1] > INT32_MAX)
    return kf_fail(KF_ERROR_UNSUPPORTED, "%s has strides [%lld, %lld, 1]; at most 2^31-1 is supported", name,
                   (long long)t->strides[0], (long long)t->strides[1]);
  return KF_OK;
}

static kf_tensor_arg heads_arg(const kf_tensor *t) {
  /* row_stride = token stride, col_stride = head stride (backend.h) */
  if (t == NULL) return kf_make_arg(NULL, 0, 0, 1);
  return kf_make_arg(t, 0, t->shape[0] > 1 ? t->strides[0] : 0, t->shape[1] > 1 ? t->strides[1] : 0);
}

kf_status kf_rope(kf_context *context, kf_tensor *q, kf_tensor *k, const kf_tensor *positions,
                  const kf_rope_desc *desc) {
  KF_API_ENTER("kf_rope");
  kf_status status = kf_check_context(context, "context");
  if (status == KF_OK) status = kf_check_tensor(q, "q", context);
  if (status == KF_OK && k != NULL) status = kf_check_tensor(k, "k", context);
  if (status == KF_OK) status = kf_check_tensor(positions, "positions", context);
  if (status != KF_OK) return status;

  kf_rope_desc defaults = KF_ROPE_DESC_INIT;
  if (desc == NULL) desc = &defaults;
  if ((status = kf_check_desc_size(desc->struct_size, sizeof(kf_rope_desc), "KF_ROPE_DESC_INIT")) != KF_OK)
    return status;
  if (desc->style != KF_ROPE_NEOX && desc->style != KF_ROPE_GPTJ)
    return kf_fail(KF_ERROR_INVALID_ARGUMENT, "desc->style is %d; expected KF_ROPE_NEOX or KF_ROPE_GPTJ",
                   (int)desc->style);
  if (!(desc->theta > 0.0f) || isinf(desc->theta))
    return kf_fail(KF_ERROR_INVALID_ARGUMENT, "desc->theta is %g; expected a finite value > 0", (double)desc->theta);
  if (!isfinite(desc->position_scale))
    return kf_fail(KF_ERROR_INVALID_ARGUMENT, "desc->position_scale is %g; expected a finite value",
                   (double)desc->position_scale);
  const kf_tensor *cos_sin = desc->cos_sin;
  kf_tensor *q_out = desc->q_out, *k_out = desc->k_out;
  if (cos_sin && (status = kf_check_tensor(cos_sin, "desc->cos_sin", context)) != KF_OK) return status;
  if (q_out && (status = kf_check_tensor(q_out, "desc->q_out", context)) != KF_OK) return status;
  if (k_out && (status = kf_check_tensor(k_out, "desc->k_out", context)) != KF_OK) return status;
  if (k == NULL && k_out != NULL)
    return kf_fail(KF_ERROR_INVALID_ARGUMENT, "desc->k_out is set but k is NULL");

  /* shapes */
  if ((status = check_heads_tensor(q, "q")) != KF_OK) return status;
  int64_t tokens = q->shape[0], head_dim = q->shape[2];
  if (tokens > INT32_MAX)
    return kf_fail(KF_ERROR_UNSUPPORTED, "q has %lld tokens; at most 2^31-1 are supported", (long long)tokens);
  if (q->shape[1] > INT32_MAX || head_dim > INT32_MAX)
    return kf_fail(KF_ERROR_UNSUPPORTED, "q has %lld heads of %lld; at most 2^31-1 are supported",
                   (long long)q->shape[1], (long long)head_dim);
  if (k != NULL) {
    if ((status = check_heads_tensor(k, "k")) != KF_OK) return status;
    if (k->shape[0] != tokens || k->shape[2] != head_dim) {
      char a[128], b[128];
      return kf_fail(KF_ERROR_SHAPE_MISMATCH, "k has shape %s, q has shape %s; tokens and head_dim must agree",
                     kf_shape_str(k, a, sizeof a), kf_shape_str(q, b, sizeof b));
    }
    if (k->shape[1] > INT32_MAX)
      return kf_fail(KF_ERROR_UNSUPPORTED, "k has %lld heads; at most 2^31-1 are supported", (long long)k->shape[1]);
  }
  if (q_out) {
    if ((status = check_heads_tensor(q_out, "desc->q_out")) != KF_OK) return status;
    if ((status = kf_check_shape_like(q_out, "desc->q_out", q, "q")) != KF_OK) return status;
  }
  if (k_out) {
    if ((status = check_heads_tensor(k_out, "desc->k_out")) != KF_OK) return status;
    if ((status = kf_check_shape_like(k_out, "desc->k_out", k, "k")) != KF_OK) return status;
  }
  int32_t rotary_dim = desc->rotary_dim == 0 ? (int32_t)head_dim : desc->rotary_dim;
  if (rotary_dim <= 0 || rotary_dim > head_dim || rotary_dim % 2 != 0)
    return kf_fail(KF_ERROR_INVALID_ARGUMENT, "desc->rotary_dim is %d; expected an even value in 2..head_dim (%lld), "
                                              "or 0 for head_dim",
                   (int)desc->rotary_dim, (long long)head_dim);
  if (positions->dtype != KF_I32)
    return kf_fail(KF_ERROR_DTYPE_MISMATCH, "positions has dtype %s; expected i32",
                   kf_dtype_name(positions->dtype) ? kf_dtype_name(positions->dtype) : "?");
  int64_t positions_stride = 1;
  if ((status = kf_check_vector(positions, "positions", tokens, "q has tokens:", &positions_stride)) != KF_OK)
    return status;
  int64_t cos_sin_rows = 0;
  if (cos_sin) {
    if (cos_sin->dtype != KF_F32)
      return kf_fail(KF_ERROR_DTYPE_MISMATCH, "desc->cos_sin has dtype %s; expected f32",
                     kf_dtype_name(cos_sin->dtype) ? kf_dtype_name(cos_sin->dtype) : "?");
    if (cos_sin->ndim != 2 || cos_sin->shape[1] != rotary_dim) {
      char a[128];
      return kf_fail(KF_ERROR_SHAPE_MISMATCH, "desc->cos_sin has shape %s; expected [max_position, %d] (rotary_dim)",
                     kf_shape_str(cos_sin, a, sizeof a), (int)rotary_dim);
    }
    if ((status = kf_check_rows_contiguous(cos_sin, "desc->cos_sin")) != KF_OK) return status;
    cos_sin_rows = cos_sin->shape[0];
    if (cos_sin_rows > INT32_MAX || cos_sin->strides[0] > INT32_MAX)
      return kf_fail(KF_ERROR_UNSUPPORTED, "desc->cos_sin has %lld rows of stride %lld; at most 2^31-1 is supported",
                     (long long)cos_sin_rows, (long long)cos_sin->strides[0]);
  }

  /* aliasing: the tensors written are q_out (or q in place) and k_out (or k in place) */
  kf_tensor *q_dst = q_out ? q_out : q, *k_dst = k_out ? k_out : k;
  if ((status = kf_check_output(q_dst, q_out ? "desc->q_out" : "q")) != KF_OK) return status;
  if (k_dst && (status = kf_check_output(k_dst, k_out ? "desc->k_out" : "k")) != KF_OK) return status;
  const char *q_dst_name = q_out ? "desc->q_out" : "q (rotated in place)";
  const char *k_dst_name = k_out ? "desc->k_out" : "k (rotated in place)";
  if ((status = kf_check_no_overlap(q_dst, q_dst_name, q, "q", true)) != KF_OK) return status;
  if ((status = kf_check_no_overlap(q_dst, q_dst_name, k, "k", false)) != KF_OK) return status;
  if ((status = kf_check_no_overlap(q_dst, q_dst_name, positions, "positions", false)) != KF_OK) return status;
  if ((status = kf_check_no_overlap(q_dst, q_dst_name, cos_sin, "desc->cos_sin", false)) != KF_OK) return status;
  if (k_dst) {
    if ((status = kf_check_no_overlap(k_dst, k_dst_name, k, "k", true)) != KF_OK) return status;
    if ((status = kf_check_no_overlap(k_dst, k_dst_name, q, "q", false)) != KF_OK) return status;
    if ((status = kf_check_no_overlap(k_dst, k_dst_name, q_dst, q_dst_name, false)) != KF_OK) return status;
    if ((status = kf_check_no_overlap(k_dst, k_dst_name, positions, "positions", false)) != KF_OK) return status;
    if ((status = kf_check_no_overlap(k_dst, k_dst_name, cos_sin, "desc->cos_sin", false)) != KF_OK) return status;
  }

  if (tokens == 0 || head_dim == 0 || (q->shape[1] == 0 && (k == NULL || k->shape[1] == 0))) return KF_OK;
  if (context->iface->rope == NULL)
    return kf_fail(KF_ERROR_UNSUPPORTED, "rope is not implemented by the %s backend", context->iface->name);

  kf_rope_args args = {
      .tokens = tokens,
      .q_heads = (int32_t)q->shape[1],
      .head_dim = (int32_t)head_dim,
      .rotary_dim = rotary_dim,
      .style = desc->style,
      .theta = desc->theta,
      .position_scale = desc->position_scale,
      .cos_sin_rows = cos_sin_rows,
  };
  bool has_k = k != NULL && k->shape[1] > 0;
  args.k_heads = has_k ? (int32_t)k->shape[1] : 0;
  args.q = heads_arg(q);
  args.q_out = heads_arg(q_dst);
  args.k = heads_arg(has_k ? k : NULL);
  args.k_out = heads_arg(has_k ? k_dst : NULL);
  args.positions = kf_make_arg(positions, 0, 0, positions_stride);
  args.cos_sin = cos_sin ? kf_make_arg(cos_sin, 0, cos_sin->strides[0], 1) : kf_make_arg(NULL, 0, 0, 1);
  status = context->iface->rope(context->backend_ctx, &args);
  if (status != KF_OK) return kf_fail(status, "the %s backend failed", context->iface->name);
  return KF_OK;
}

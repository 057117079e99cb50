/* validate.c — argument checks shared by the ops (op_*.c). Each reports through kf_fail with the
 * argument's name as the caller passes it ("x", "desc->weight"), so messages name what the user wrote. */
#include <stdio.h>

#include "core/error.h"
#include "core/internal.h"

kf_status kf_check_float_operand(const kf_tensor *t, const char *name) {
  if (t->dtype == KF_F32 || t->dtype == KF_F16 || t->dtype == KF_BF16) return KF_OK;
  const char *dt = kf_dtype_name(t->dtype);
  return kf_fail(KF_ERROR_DTYPE_MISMATCH, "%s has dtype %s; expected f32, f16 or bf16", name, dt ? dt : "?");
}

kf_status kf_check_desc_size(size_t struct_size, size_t expected, const char *init_macro) {
  if (struct_size >= expected) return KF_OK;
  return kf_fail(KF_ERROR_INVALID_ARGUMENT, "desc->struct_size is %zu, expected at least %zu (initialize with %s)",
                 struct_size, expected, init_macro);
}

bool kf_same_shape(const kf_tensor *a, const kf_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int32_t d = 0; d < a->ndim; ++d)
    if (a->shape[d] != b->shape[d]) return false;
  return true;
}

kf_status kf_check_shape_like(const kf_tensor *t, const char *name, const kf_tensor *ref, const char *ref_name) {
  if (kf_same_shape(t, ref)) return KF_OK;
  char a[128], b[128];
  return kf_fail(KF_ERROR_SHAPE_MISMATCH, "%s has shape %s, %s has shape %s", name, kf_shape_str(t, a, sizeof a),
                 ref_name, kf_shape_str(ref, b, sizeof b));
}

kf_status kf_check_rows_contiguous(const kf_tensor *t, const char *name) {
  int32_t last = t->ndim - 1;
  if (t->shape[last] <= 1 || t->strides[last] == 1) return KF_OK;
  return kf_fail(KF_ERROR_UNSUPPORTED, "%s has stride %lld in its last dimension; it must be contiguous (stride 1)",
                 name, (long long)t->strides[last]);
}

kf_status kf_check_vector(const kf_tensor *t, const char *name, int64_t length, const char *length_what,
                          int64_t *out_stride) {
  for (int32_t d = 0; d < t->ndim - 1; ++d)
    if (t->shape[d] != 1) {
      char a[128];
      return kf_fail(KF_ERROR_SHAPE_MISMATCH, "%s has shape %s; expected [%lld]", name, kf_shape_str(t, a, sizeof a),
                     (long long)length);
    }
  int64_t numel = kf_numel_of(t);
  if (numel != length)
    return kf_fail(KF_ERROR_SHAPE_MISMATCH, "%s has %lld elements, %s %lld", name, (long long)numel, length_what,
                   (long long)length);
  int64_t stride = t->strides[t->ndim - 1];
  if (stride > INT32_MAX)
    return kf_fail(KF_ERROR_UNSUPPORTED, "%s has element stride %lld; at most 2^31-1 is supported", name,
                   (long long)stride);
  *out_stride = length > 1 ? stride : 1;
  return KF_OK;
}

bool kf_elements_distinct(const kf_tensor *t) {
  int32_t order[KF_MAX_DIMS], n = 0;
  for (int32_t d = 0; d < t->ndim; ++d)
    if (t->shape[d] > 1) order[n++] = d;
  for (int32_t i = 1; i < n; ++i) /* insertion sort by stride */
    for (int32_t j = i; j > 0 && t->strides[order[j]] < t->strides[order[j - 1]]; --j) {
      int32_t tmp = order[j];
      order[j] = order[j - 1];
      order[j - 1] = tmp;
    }
  /* With the dimensions ordered by stride, each stride must exceed the extent of all smaller ones. */
  int64_t extent = 1;
  for (int32_t i = 0; i < n; ++i) {
    if (t->strides[order[i]] < extent) return false;
    extent = t->strides[order[i]] * (t->shape[order[i]] - 1) + extent;
  }
  return true;
}

kf_status kf_check_output(const kf_tensor *out, const char *name) {
  if (kf_elements_distinct(out)) return KF_OK;
  return kf_fail(KF_ERROR_INVALID_ARGUMENT, "%s has overlapping elements (a stride is too small)", name);
}

kf_status kf_check_no_overlap(const kf_tensor *out, const char *out_name, const kf_tensor *in, const char *in_name,
                              bool identical_allowed) {
  if (in == NULL || !kf_tensors_overlap(out, in)) return KF_OK;
  if (identical_allowed && kf_tensors_identical(out, in)) return KF_OK;
  return kf_fail(KF_ERROR_INVALID_ARGUMENT, "%s overlaps %s in storage%s", out_name, in_name,
                 identical_allowed ? " (only the very same view is allowed, for in-place use)" : "");
}

kf_tensor_arg kf_make_arg(const kf_tensor *t, int64_t offset, int64_t row_stride, int64_t col_stride) {
  kf_tensor_arg arg = {NULL, 0, 0, 1, KF_F32};
  if (t == NULL) return arg;
  arg.buffer = t->storage->buffer;
  arg.offset = t->offset + offset;
  arg.row_stride = row_stride;
  arg.col_stride = col_stride;
  arg.dtype = t->dtype;
  return arg;
}

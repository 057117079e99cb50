/* tensor.c — tensors as small value descriptions over shared, reference-counted storage:
 * creation, views, host read/write (gathering and scattering strided views) and device copies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/internal.h"

kf_status kf_check_tensor(const kf_tensor *t, const char *name, const kf_context *ctx) {
  if (t == NULL) return kf_fail(KF_ERROR_NULL_ARGUMENT, "%s is NULL", name);
  if (t->magic != KF_TENSOR_MAGIC)
    return kf_fail(KF_ERROR_INVALID_ARGUMENT, "%s is not a live kf_tensor (destroyed or corrupt)", name);
  if (ctx != NULL && t->storage->ctx != ctx)
    return kf_fail(KF_ERROR_CONTEXT_MISMATCH, "%s belongs to another context (device \"%s\")", name,
                   t->storage->ctx->info.name);
  return KF_OK;
}

int64_t kf_numel_of(const kf_tensor *t) {
  int64_t n = 1;
  for (int32_t d = 0; d < t->ndim; ++d) n *= t->shape[d];
  return n;
}

bool kf_is_contiguous(const kf_tensor *t) {
  int64_t expected = 1;
  for (int32_t d = t->ndim - 1; d >= 0; --d) {
    if (t->shape[d] != 1 && t->strides[d] != expected) return false;
    expected *= t->shape[d];
  }
  return true;
}

void kf_tensor_extent(const kf_tensor *t, int64_t *out_first, int64_t *out_last) {
  int64_t last = t->offset;
  for (int32_t d = 0; d < t->ndim; ++d) last += (t->shape[d] - 1) * t->strides[d];
  *out_first = t->offset;
  *out_last = last;
}

bool kf_tensors_overlap(const kf_tensor *a, const kf_tensor *b) {
  if (a->storage != b->storage || kf_numel_of(a) == 0 || kf_numel_of(b) == 0) return false;
  int64_t a0, a1, b0, b1;
  kf_tensor_extent(a, &a0, &a1);
  kf_tensor_extent(b, &b0, &b1);
  size_t sa = kf_dtype_size(a->dtype), sb = kf_dtype_size(b->dtype);
  int64_t a_begin = a0 * (int64_t)sa, a_end = (a1 + 1) * (int64_t)sa;
  int64_t b_begin = b0 * (int64_t)sb, b_end = (b1 + 1) * (int64_t)sb;
  if (!(a_begin < b_end && b_begin < a_end)) return false;
  if (a->dtype != b->dtype || a->ndim < 2 || b->ndim < 2) return true;
  /* Interleaved views such as Q, K and V slices of one packed QKV tensor: both repeat with the same
   * outermost stride S, and within each period occupy [offset mod S, + extent of the inner dims). If
   * those windows do not meet modulo S, no element is shared. */
  int64_t period = a->strides[0];
  if (period <= 0 || b->strides[0] != period || a->shape[0] < 1 || b->shape[0] < 1) return true;
  int64_t inner_a = 1, inner_b = 1;
  for (int32_t d = 1; d < a->ndim; ++d) inner_a += (a->shape[d] - 1) * a->strides[d];
  for (int32_t d = 1; d < b->ndim; ++d) inner_b += (b->shape[d] - 1) * b->strides[d];
  if (inner_a > period || inner_b > period) return true;
  int64_t shift = ((b->offset - a->offset) % period + period) % period; /* b's window start, relative to a's */
  bool meets = shift < inner_a || shift + inner_b > period;             /* [shift, shift+inner_b) vs [0, inner_a) mod S */
  return meets;
}

bool kf_tensors_identical(const kf_tensor *a, const kf_tensor *b) {
  if (a->storage != b->storage || a->dtype != b->dtype || a->ndim != b->ndim || a->offset != b->offset) return false;
  for (int32_t d = 0; d < a->ndim; ++d)
    if (a->shape[d] != b->shape[d] || (a->shape[d] != 1 && a->strides[d] != b->strides[d])) return false;
  return true;
}

const char *kf_shape_str(const kf_tensor *t, char *buf, size_t size) {
  size_t used = (size_t)snprintf(buf, size, "[");
  for (int32_t d = 0; d < t->ndim && used < size; ++d)
    used += (size_t)snprintf(buf + used, size - used, "%s%lld", d ? "," : "", (long long)t->shape[d]);
  if (used < size) snprintf(buf + used, size - used, "]");
  return buf;
}

/* Validates ndim/shape and computes numel and byte size without overflow. */
static kf_status check_shape(int32_t ndim, const int64_t *shape, kf_dtype dtype, int64_t *out_numel,
                             size_t *out_bytes) {
  if (ndim < 1 || ndim > KF_MAX_DIMS)
    return kf_fail(KF_ERROR_INVALID_ARGUMENT, "ndim is %d, must be 1..%d", (int)ndim, KF_MAX_DIMS);
  if (shape == NULL) return kf_fail(KF_ERROR_NULL_ARGUMENT, "shape is NULL");
  size_t element = kf_dtype_size(dtype);
  if (element == 0) return kf_fail(KF_ERROR_INVALID_ARGUMENT, "dtype %d is not a kf_dtype value", (int)dtype);
  int64_t numel = 1;
  for (int32_t d = 0; d < ndim; ++d) {
    if (shape[d] < 0)
      return kf_fail(KF_ERROR_INVALID_ARGUMENT, "shape[%d] is %lld, must be >= 0", (int)d, (long long)shape[d]);
    if (shape[d] != 0 && numel > INT64_MAX / shape[d])
      return kf_fail(KF_ERROR_OVERFLOW, "the element count of shape overflows 64 bits (at shape[%d] = %lld)", (int)d,
                     (long long)shape[d]);
    numel *= shape[d];
  }
  if ((uint64_t)numel > SIZE_MAX / element || (uint64_t)numel > (uint64_t)INT64_MAX / element)
    return kf_fail(KF_ERROR_OVERFLOW, "%lld elements of %s overflow the byte count", (long long)numel,
                   kf_dtype_name(dtype));
  *out_numel = numel;
  *out_bytes = (size_t)numel * element;
  return KF_OK;
}

kf_status kf_tensor_create(kf_context *context, kf_dtype dtype, int32_t ndim, const int64_t *shape,
                           kf_tensor **out_tensor) {
  KF_API_ENTER("kf_tensor_create");
  kf_status status = kf_check_context(context, "context");
  if (status != KF_OK) return status;
  if (out_tensor == NULL) return kf_fail(KF_ERROR_NULL_ARGUMENT, "out_tensor is NULL");
  int64_t numel;
  size_t bytes;
  status = check_shape(ndim, shape, dtype, &numel, &bytes);
  if (status != KF_OK) return status;

  kf_storage *storage = calloc(1, sizeof *storage);
  kf_tensor *t = calloc(1, sizeof *t);
  if (storage == NULL || t == NULL) {
    free(storage);
    free(t);
    return kf_fail(KF_ERROR_OUT_OF_MEMORY, "out of host memory");
  }
  if (bytes > 0) {
    status = kf_alloc_block(context, bytes, &storage->buffer, &storage->block_bytes);
    if (status != KF_OK) {
      free(storage);
      free(t);
      return status;
    }
  }
  atomic_init(&storage->refcount, 1);
  storage->ctx = context;
  storage->bytes = bytes;
  storage->dtype = dtype;
  storage->elements = numel;
  t->magic = KF_TENSOR_MAGIC;
  t->storage = storage;
  t->dtype = dtype;
  t->ndim = ndim;
  int64_t stride = 1;
  for (int32_t d = ndim - 1; d >= 0; --d) {
    t->shape[d] = shape[d];
    t->strides[d] = stride;
    stride *= shape[d] > 0 ? shape[d] : 1;
  }
  *out_tensor = t;
  return KF_OK;
}

kf_status kf_tensor_view(const kf_tensor *base, int32_t ndim, const int64_t *shape, const int64_t *strides,
                         int64_t offset, kf_tensor **out_view) {
  KF_API_ENTER("kf_tensor_view");
  kf_status status = kf_check_tensor(base, "base", NULL);
  if (status != KF_OK) return status;
  if (out_view == NULL) return kf_fail(KF_ERROR_NULL_ARGUMENT, "out_view is NULL");
  int64_t numel;
  size_t bytes;
  status = check_shape(ndim, shape, base->dtype, &numel, &bytes);
  if (status != KF_OK) return status;
  if (offset < 0) return kf_fail(KF_ERROR_INVALID_ARGUMENT, "offset is %lld, must be >= 0", (long long)offset);

  kf_tensor view = {.magic = KF_TENSOR_MAGIC, .storage = base->storage, .dtype = base->dtype, .ndim = ndim,
                    .offset = offset};
  int64_t contiguous_stride = 1;
  for (int32_t d = ndim - 1; d >= 0; --d) {
    view.shape[d] = shape[d];
    view.strides[d] = strides ? strides[d] : contiguous_stride;
    if (view.strides[d] < 0)
      return kf_fail(KF_ERROR_INVALID_ARGUMENT, "strides[%d] is %lld, must be >= 0", (int)d,
                     (long long)view.strides[d]);
    contiguous_stride *= shape[d] > 0 ? shape[d] : 1;
  }
  if (numel > 0) {
    /* last = offset + sum (shape-1)*stride, checked for overflow and against the storage. */
    int64_t last = offset;
    for (int32_t d = 0; d < ndim; ++d) {
      int64_t span = shape[d] - 1;
      if (span > 0 && view.strides[d] > (INT64_MAX - last) / span)
        return kf_fail(KF_ERROR_OVERFLOW, "the extent of the view overflows (dimension %d)", (int)d);
      last += span * view.strides[d];
    }
    if (last >= base->storage->elements)
      return kf_fail(KF_ERROR_INVALID_ARGUMENT,
                     "the view reaches element %lld, but the storage has %lld elements", (long long)last,
                     (long long)base->storage->elements);
  }
  kf_tensor *t = malloc(sizeof *t);
  if (t == NULL) return kf_fail(KF_ERROR_OUT_OF_MEMORY, "out of host memory");
  *t = view;
  atomic_fetch_add(&t->storage->refcount, 1);
  *out_view = t;
  return KF_OK;
}

void kf_tensor_destroy(kf_tensor *tensor) {
  KF_API_ENTER("kf_tensor_destroy");
  if (tensor == NULL || tensor->magic != KF_TENSOR_MAGIC) return;
  kf_storage *storage = tensor->storage;
  tensor->magic = 0;
  free(tensor);
  if (atomic_fetch_sub(&storage->refcount, 1) == 1) {
    if (storage->buffer != NULL) kf_free_block(storage->ctx, storage->buffer, storage->block_bytes);
    free(storage);
  }
}

kf_status kf_tensor_get_desc(const kf_tensor *tensor, kf_tensor_desc *out_desc) {
  KF_API_ENTER("kf_tensor_get_desc");
  kf_status status = kf_check_tensor(tensor, "tensor", NULL);
  if (status != KF_OK) return status;
  if (out_desc == NULL) return kf_fail(KF_ERROR_NULL_ARGUMENT, "out_desc is NULL");
  memset(out_desc, 0, sizeof *out_desc);
  out_desc->struct_size = sizeof *out_desc;
  out_desc->dtype = tensor->dtype;
  out_desc->ndim = tensor->ndim;
  for (int32_t d = 0; d < tensor->ndim; ++d) {
    out_desc->shape[d] = tensor->shape[d];
    out_desc->strides[d] = tensor->strides[d];
  }
  out_desc->offset = tensor->offset;
  out_desc->storage_elements = tensor->storage->elements;
  out_desc->contiguous = kf_is_contiguous(tensor);
  return KF_OK;
}

kf_context *kf_tensor_context(const kf_tensor *tensor) {
  KF_API_ENTER("kf_tensor_context");
  if (kf_check_tensor(tensor, "tensor", NULL) != KF_OK) return NULL;
  return tensor->storage->ctx;
}

int64_t kf_tensor_numel(const kf_tensor *tensor) {
  KF_API_ENTER("kf_tensor_numel");
  if (kf_check_tensor(tensor, "tensor", NULL) != KF_OK) return 0;
  return kf_numel_of(tensor);
}

/* ---- host transfers ---- */

/* Visits every element of t in row-major logical order, giving its storage element index. Used for the
 * gather/scatter of strided views; contiguous runs along the last dimension are passed as one call. */
typedef void (*run_fn)(int64_t storage_index, int64_t count, int64_t logical_index, void *arg);

static void for_each_run(const kf_tensor *t, run_fn fn, void *arg) {
  int32_t last = t->ndim - 1;
  int64_t run = t->strides[last] == 1 ? t->shape[last] : 1;
  int64_t index[KF_MAX_DIMS] = {0};
  int64_t numel = kf_numel_of(t);
  for (int64_t logical = 0; logical < numel; logical += run) {
    int64_t at = t->offset;
    for (int32_t d = 0; d <= last; ++d) at += index[d] * t->strides[d];
    fn(at, run, logical, arg);
    /* advance the index by `run` elements */
    int64_t carry = run;
    for (int32_t d = last; d >= 0 && carry; --d) {
      int64_t v = index[d] + carry;
      index[d] = v % t->shape[d];
      carry = v / t->shape[d];
    }
  }
}

typedef struct {
  unsigned char *span;   /* host copy of storage elements [first, last] */
  unsigned char *packed; /* user buffer */
  int64_t first;
  size_t element;
  bool to_packed;
} gather_arg;

static void gather_run(int64_t storage_index, int64_t count, int64_t logical_index, void *arg) {
  gather_arg *g = arg;
  unsigned char *s = g->span + (size_t)(storage_index - g->first) * g->element;
  unsigned char *p = g->packed + (size_t)logical_index * g->element;
  if (g->to_packed)
    memcpy(p, s, (size_t)count * g->element);
  else
    memcpy(s, p, (size_t)count * g->element);
}

static kf_status check_transfer(const kf_tensor *tensor, const void *host, size_t bytes, const char *host_name) {
  kf_status status = kf_check_tensor(tensor, "tensor", NULL);
  if (status != KF_OK) return status;
  size_t expected = (size_t)kf_numel_of(tensor) * kf_dtype_size(tensor->dtype);
  if (bytes != expected) {
    char shape[128];
    return kf_fail(KF_ERROR_SIZE_MISMATCH, "bytes is %zu, but tensor %s of %s holds %zu bytes", bytes,
                   kf_shape_str(tensor, shape, sizeof shape), kf_dtype_name(tensor->dtype), expected);
  }
  if (host == NULL && bytes > 0) return kf_fail(KF_ERROR_NULL_ARGUMENT, "%s is NULL", host_name);
  return KF_OK;
}

/* One device transfer per contiguous run of the view, straight from or into the packed buffer. */
typedef struct {
  kf_context *ctx;
  const kf_tensor *t;
  unsigned char *packed;
  size_t element;
  bool to_host;
  kf_status status;
} run_transfer_arg;

static void transfer_run(int64_t storage_index, int64_t count, int64_t logical_index, void *arg) {
  run_transfer_arg *r = arg;
  if (r->status != KF_OK) return;
  const size_t offset = (size_t)storage_index * r->element, bytes = (size_t)count * r->element;
  unsigned char *p = r->packed + (size_t)logical_index * r->element;
  r->status = r->to_host ? r->ctx->iface->buffer_read(r->ctx->backend_ctx, r->t->storage->buffer, offset, p, bytes)
                         : r->ctx->iface->buffer_write(r->ctx->backend_ctx, r->t->storage->buffer, offset, p, bytes);
}

/* What one device transfer costs beyond its bytes, in bytes moved (~20 us of a GPU transfer's fixed
 * cost at ~10 GB/s): the cost model that picks between the two strided paths below. */
#define KF_TRANSFER_CALL_BYTES (256.0 * 1024.0)

/* Moves the elements of a strided view between the device and a packed host buffer: through a host
 * copy of the storage span the view touches (one transfer, or a read and a write for writes, which must
 * keep the gaps' contents), or, when that span is large beside the view's runs (a block of a much wider
 * matrix; a span that would not fit in host memory), with one transfer per contiguous run. */
static kf_status transfer_strided(const kf_tensor *t, void *packed, bool to_host) {
  kf_context *ctx = t->storage->ctx;
  int64_t first, last;
  kf_tensor_extent(t, &first, &last);
  size_t element = kf_dtype_size(t->dtype);
  size_t span_bytes = (size_t)(last - first + 1) * element;
  const int64_t run = t->strides[t->ndim - 1] == 1 ? t->shape[t->ndim - 1] : 1;
  const double runs = (double)(kf_numel_of(t) / run);
  const double span_cost = (double)span_bytes * (to_host ? 1.0 : 2.0);
  const double run_cost = runs * KF_TRANSFER_CALL_BYTES + (double)kf_numel_of(t) * (double)element;
  if (run_cost < span_cost) {
    run_transfer_arg r = {ctx, t, packed, element, to_host, KF_OK};
    for_each_run(t, transfer_run, &r);
    return r.status;
  }
  unsigned char *span = malloc(span_bytes);
  if (span == NULL) return kf_fail(KF_ERROR_OUT_OF_MEMORY, "out of host memory (%zu bytes)", span_bytes);
  /* For writes, read first so the gaps between the view's elements keep their contents. */
  kf_status status = ctx->iface->buffer_read(ctx->backend_ctx, t->storage->buffer, (size_t)first * element, span,
                                             span_bytes);
  if (status == KF_OK) {
    gather_arg g = {span, packed, first, element, to_host};
    for_each_run(t, gather_run, &g);
    if (!to_host)
      status = ctx->iface->buffer_write(ctx->backend_ctx, t->storage->buffer, (size_t)first * element, span,
                                        span_bytes);
  }
  free(span);
  return status;
}

kf_status kf_tensor_write(kf_tensor *tensor, const void *src, size_t bytes) {
  KF_API_ENTER("kf_tensor_write");
  kf_status status = check_transfer(tensor, src, bytes, "src");
  if (status != KF_OK || bytes == 0) return status;
  kf_context *ctx = tensor->storage->ctx;
  if (kf_is_contiguous(tensor))
    return ctx->iface->buffer_write(ctx->backend_ctx, tensor->storage->buffer,
                                    (size_t)tensor->offset * kf_dtype_size(tensor->dtype), src, bytes);
  return transfer_strided(tensor, (void *)src, false);
}

kf_status kf_tensor_read(const kf_tensor *tensor, void *dst, size_t bytes) {
  KF_API_ENTER("kf_tensor_read");
  kf_status status = check_transfer(tensor, dst, bytes, "dst");
  if (status != KF_OK || bytes == 0) return status;
  kf_context *ctx = tensor->storage->ctx;
  if (kf_is_contiguous(tensor))
    return ctx->iface->buffer_read(ctx->backend_ctx, tensor->storage->buffer,
                                   (size_t)tensor->offset * kf_dtype_size(tensor->dtype), dst, bytes);
  return transfer_strided(tensor, dst, true);
}

/* ---- device copies ---- */

typedef struct {
  const kf_tensor *src, *dst;
  kf_status status;
} copy_arg;

/* Copies dst's run starting at logical_index from the matching elements of src. Both views are walked in
 * the same logical order, so a run of dst maps to one run of src only if src's last dim is contiguous
 * too; the caller guarantees that. */
static int64_t storage_index_of(const kf_tensor *t, int64_t logical) {
  int64_t at = t->offset;
  for (int32_t d = t->ndim - 1; d >= 0; --d) {
    at += (logical % t->shape[d]) * t->strides[d];
    logical /= t->shape[d];
  }
  return at;
}

static void copy_run(int64_t dst_index, int64_t count, int64_t logical_index, void *arg) {
  copy_arg *c = arg;
  if (c->status != KF_OK) return;
  kf_context *ctx = c->dst->storage->ctx;
  size_t element = kf_dtype_size(c->dst->dtype);
  int64_t src_index = storage_index_of(c->src, logical_index);
  c->status = ctx->iface->buffer_copy(ctx->backend_ctx, c->src->storage->buffer, (size_t)src_index * element,
                                      c->dst->storage->buffer, (size_t)dst_index * element, (size_t)count * element);
}

kf_status kf_tensor_copy(kf_context *context, const kf_tensor *src, kf_tensor *dst) {
  KF_API_ENTER("kf_tensor_copy");
  kf_status status = kf_check_context(context, "context");
  if (status == KF_OK) status = kf_check_tensor(src, "src", context);
  if (status == KF_OK) status = kf_check_tensor(dst, "dst", context);
  if (status != KF_OK) return status;
  if (src->dtype != dst->dtype)
    return kf_fail(KF_ERROR_DTYPE_MISMATCH, "src is %s, dst is %s", kf_dtype_name(src->dtype),
                   kf_dtype_name(dst->dtype));
  char a[128], b[128];
  bool same_shape = src->ndim == dst->ndim;
  for (int32_t d = 0; same_shape && d < src->ndim; ++d) same_shape = src->shape[d] == dst->shape[d];
  if (!same_shape)
    return kf_fail(KF_ERROR_SHAPE_MISMATCH, "src has shape %s, dst has shape %s", kf_shape_str(src, a, sizeof a),
                   kf_shape_str(dst, b, sizeof b));
  if (kf_numel_of(src) == 0) return KF_OK;
  if (kf_tensors_overlap(src, dst)) return kf_fail(KF_ERROR_INVALID_ARGUMENT, "src and dst overlap in storage");
  size_t element = kf_dtype_size(src->dtype);
  if (kf_is_contiguous(src) && kf_is_contiguous(dst))
    return context->iface->buffer_copy(context->backend_ctx, src->storage->buffer, (size_t)src->offset * element,
                                       dst->storage->buffer, (size_t)dst->offset * element,
                                       (size_t)kf_numel_of(src) * element);
  int32_t last = src->ndim - 1;
  if (src->strides[last] != 1 || dst->strides[last] != 1)
    return kf_fail(KF_ERROR_UNSUPPORTED,
                   "copies between views need a contiguous last dimension in both (src stride %lld, dst stride "
                   "%lld)",
                   (long long)src->strides[last], (long long)dst->strides[last]);
  copy_arg c = {src, dst, KF_OK};
  for_each_run(dst, copy_run, &c);
  return c.status;
}

/* internal.h — the core's own structures: contexts, tensors, storage, the caching allocator.
 * Backends never include this (they see only core/backend.h). */
#ifndef KF_CORE_INTERNAL_H_
#define KF_CORE_INTERNAL_H_

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/kfuse.h"

/* ---- registry.c ---- */
typedef struct kf_registered_device {
  const kf_backend_iface *iface;
  const kf_backend_device *device; /* the backend's probe record */
} kf_registered_device;

/* Probes once; returns the global device table (never NULL after a successful call). */
kf_status kf_registry_devices(const kf_registered_device **out_devices, const kf_device_info **out_infos,
                              size_t *out_count);
/* The compiled-in backend of that kind, or NULL if it was left out of the build. */
const kf_backend_iface *kf_registry_backend(kf_backend backend);
const kf_probe_result *kf_registry_probe_result(kf_backend backend);
/* Candidate device indices for a context: explicit options, then KF_BACKEND / KF_DEVICE. Returns KF_OK
 * with *out_count == 0 when nothing was requested (the caller applies the default policy). */
kf_status kf_registry_select(const kf_context_options *options, size_t *out, size_t capacity, size_t *out_count);
/* The default policy's candidates in order of preference. */
size_t kf_registry_default_candidates(size_t *out, size_t capacity);

/* ---- memory.c: the caching allocator, one per context ---- */
typedef struct kf_cached_block {
  kf_buffer *buffer;
  size_t bytes;
  struct kf_cached_block *next;
} kf_cached_block;

typedef struct kf_allocator {
  kf_cached_block *free_blocks; /* blocks returned by tensors, kept for reuse */
  kf_memory_stats stats;
} kf_allocator;

/* A block of at least `bytes` bytes from the cache or the device; *out_block_bytes is its real size. */
kf_status kf_alloc_block(kf_context *ctx, size_t bytes, kf_buffer **out_buffer, size_t *out_block_bytes);
void kf_free_block(kf_context *ctx, kf_buffer *buffer, size_t block_bytes);
void kf_allocator_release_all(kf_context *ctx);

/* ---- context.c ---- */
#define KF_CONTEXT_MAGIC 0x6b66637475ull /* "kfctx" */

struct kf_context {
  uint64_t magic;
  const kf_backend_iface *iface;
  kf_backend_context *backend_ctx;
  kf_device_info info;
  uint32_t flags;
  kf_allocator allocator;
  bool timer_active;
};

/* ---- tensor.c ---- */
typedef struct kf_storage {
  atomic_int refcount;
  kf_context *ctx;
  kf_buffer *buffer;     /* NULL for empty storage */
  size_t bytes;          /* requested */
  size_t block_bytes;    /* held from the allocator */
  kf_dtype dtype;
  int64_t elements;
} kf_storage;

#define KF_TENSOR_MAGIC 0x6b6674656e736f72ull /* "kftensor" */

struct kf_tensor {
  uint64_t magic;
  kf_storage *storage;
  kf_dtype dtype;
  int32_t ndim;
  int64_t shape[KF_MAX_DIMS];
  int64_t strides[KF_MAX_DIMS];
  int64_t offset;
};

/* Checks a tensor handle passed as argument `name` of the current function: non-NULL, alive, and in
 * ctx (when ctx != NULL). */
kf_status kf_check_tensor(const kf_tensor *t, const char *name, const kf_context *ctx);
kf_status kf_check_context(const kf_context *ctx, const char *name);
int64_t kf_numel_of(const kf_tensor *t);
bool kf_is_contiguous(const kf_tensor *t);
/* Element range [*out_first, *out_last] of storage the tensor can touch (numel > 0). */
void kf_tensor_extent(const kf_tensor *t, int64_t *out_first, int64_t *out_last);
/* Same storage and intersecting byte ranges. */
bool kf_tensors_overlap(const kf_tensor *a, const kf_tensor *b);
/* Same storage, dtype, shape, strides and offset. */
bool kf_tensors_identical(const kf_tensor *a, const kf_tensor *b);
/* "[16384,8192]" into buf */
const char *kf_shape_str(const kf_tensor *t, char *buf, size_t size);

/* ---- rows.c: iterating an op over rows of several tensors of one shape ---- */
#define KF_ROWS_MAX_OPERANDS 8

/* The leading dimensions (all but the last) of `count` same-shape tensors, split into an inner block of
 * rows that every tensor can address with one row stride, and outer dimensions to loop over. */
typedef struct kf_row_layout {
  int64_t rows;                               /* rows in the inner block */
  int64_t row_stride[KF_ROWS_MAX_OPERANDS];   /* per operand */
  int32_t outer_ndim;
  int64_t outer_shape[KF_MAX_DIMS];
  int64_t outer_stride[KF_ROWS_MAX_OPERANDS][KF_MAX_DIMS];
} kf_row_layout;

void kf_row_layout_make(const kf_tensor *const *tensors, int count, kf_row_layout *out);
/* Number of inner blocks (product of outer_shape). */
int64_t kf_row_layout_blocks(const kf_row_layout *layout);
/* Element offset (relative to the tensor's own offset) of block `block` for operand `operand`. */
int64_t kf_row_layout_block_offset(const kf_row_layout *layout, int operand, int64_t block);

/* ---- validate.c: checks shared by the ops; `name` is the argument as the user wrote it ---- */
kf_status kf_check_float_operand(const kf_tensor *t, const char *name);
kf_status kf_check_desc_size(size_t struct_size, size_t expected, const char *init_macro);
bool kf_same_shape(const kf_tensor *a, const kf_tensor *b);
kf_status kf_check_shape_like(const kf_tensor *t, const char *name, const kf_tensor *ref, const char *ref_name);
/* The last dimension has stride 1 (or length 1). */
kf_status kf_check_rows_contiguous(const kf_tensor *t, const char *name);
/* A [length] vector (leading dims of 1 allowed); its element stride (<= 2^31-1) in *out_stride. */
kf_status kf_check_vector(const kf_tensor *t, const char *name, int64_t length, const char *length_what,
                          int64_t *out_stride);
/* No two elements of the view share an address (sufficient test on sorted strides). */
bool kf_elements_distinct(const kf_tensor *t);
kf_status kf_check_output(const kf_tensor *out, const char *name);
/* out must not overlap in (NULL: nothing to check); identical_allowed permits the very same view. */
kf_status kf_check_no_overlap(const kf_tensor *out, const char *out_name, const kf_tensor *in, const char *in_name,
                              bool identical_allowed);
/* A backend operand for t (NULL: absent) at t's offset + offset. */
kf_tensor_arg kf_make_arg(const kf_tensor *t, int64_t offset, int64_t row_stride, int64_t col_stride);

#endif /* KF_CORE_INTERNAL_H_ */

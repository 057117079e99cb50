/* backend.h — the contract between the core and a backend.
 *
 * A backend is one flat table of function pointers (kf_backend_iface). The core owns everything a
 * user can get wrong: it validates every argument (dtypes, shapes, strides, devices, overflow) and then
 * calls the backend with normalized, trusted arguments. A backend therefore never re-checks user
 * input; it only reports failures of its own runtime (with kf_set_error) and returns the status.
 *
 * Contract:
 *  - probe() is called once per process, under the core's lock. It may dlopen the runtime. It fills
 *    kf_probe_result; when the runtime is missing it sets available = 0 and a reason a person can act
 *    on. It never fails the process.
 *  - A kf_backend_context is one device plus one in-order queue. All entries on one context are called
 *    from one thread at a time.
 *  - buffer_* and synchronize are complete when they return (write/read also wait for earlier queued
 *    work). Ops are queued (may return before the device finishes).
 *  - Op entries may be NULL: the core then reports KF_ERROR_UNSUPPORTED, never a silent fallback.
 *  - Offsets and strides in kf_tensor_arg are in elements of that tensor's dtype.
 */
#ifndef KF_CORE_BACKEND_H_
#define KF_CORE_BACKEND_H_

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/kfuse.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KF_MAX_BACKEND_DEVICES 32

/* One device as the backend found it. info.index / info.same_device_as are filled by the core. */
typedef struct kf_backend_device {
  kf_device_info info;
  void *handle;      /* backend-owned: cl_device_id, VkPhysicalDevice, ... */
  int64_t ordinal;   /* backend-owned: CUdevice ordinal, platform index, ... */
} kf_backend_device;

typedef struct kf_probe_result {
  int available;                 /* runtime loaded and device_count > 0 */
  char reason[256];              /* why not available; or notes when available ("built without ...") */
  char runtime[128];             /* "libcuda.so.1 (driver 13.0)" */
  int device_count;
  kf_backend_device devices[KF_MAX_BACKEND_DEVICES];
} kf_probe_result;

/* Backend-defined opaque types. */
typedef struct kf_backend_context kf_backend_context;
typedef struct kf_buffer kf_buffer;

/* A validated tensor operand: where element 0 of the (logical) matrix is, and how rows are laid out.
 * For a 2-D view [rows, row_len] of the operand: element (r, c) is at
 *   buffer + (offset + r * row_stride + c) * dtype_size.
 * buffer == NULL means the operand is absent. For per-column vectors (weight, bias) row_stride is 0
 * and col_stride may be != 1. */
typedef struct kf_tensor_arg {
  kf_buffer *buffer;
  int64_t offset;
  int64_t row_stride;
  int64_t col_stride;   /* 1 for every row-major operand; weight/bias may be strided */
  kf_dtype dtype;
} kf_tensor_arg;

/* RMSNorm over rows × row_len. Every present operand has been checked by the core. */
typedef struct kf_norm_args {
  int64_t rows;
  int64_t row_len;
  float eps;
  kf_tensor_arg x;
  kf_tensor_arg residual;      /* absent or like x */
  kf_tensor_arg residual_out;  /* present iff residual is; may alias x or residual exactly */
  kf_tensor_arg weight;        /* optional, row_stride 0 */
  kf_tensor_arg bias;          /* optional, row_stride 0 */
  kf_tensor_arg y;
} kf_norm_args;

/* RoPE over `tokens` tokens. For q, k, q_out, k_out: row_stride is the token stride and col_stride the
 * head stride (elements); head_dim is contiguous. q_out/k_out are always present: the core passes
 * q/k themselves for in-place calls (then they are identical operands). k absent when k_heads == 0.
 * positions: KF_I32, col_stride = stride between tokens. cos_sin: optional f32 table, row_stride per
 * position, cos_sin_rows rows. */
typedef struct kf_rope_args {
  int64_t tokens;
  int32_t q_heads;
  int32_t k_heads;
  int32_t head_dim;
  int32_t rotary_dim;
  kf_rope_style style;
  float theta;
  float position_scale;
  int64_t cos_sin_rows;
  kf_tensor_arg q, k, q_out, k_out;
  kf_tensor_arg positions;
  kf_tensor_arg cos_sin;
} kf_rope_args;

/* out[r, c] = act(gate[r, c]) * up[r, c] over rows × inner. gate and up are always separate operands
 * (the core splits a fused [.., 2*inner] gate into two). */
typedef struct kf_glu_args {
  int64_t rows;
  int64_t inner;
  kf_glu_activation activation;
  kf_tensor_arg gate, up, out;
} kf_glu_args;

/* y = softmax(x * scale + mask) over rows × row_len. mask optional, with its own row stride (0 when
 * broadcast over rows). y may be identical to x (in place): read every element before writing it. */
typedef struct kf_softmax_args {
  int64_t rows;
  int64_t row_len;
  float scale;
  kf_tensor_arg x, mask, y;
} kf_softmax_args;

typedef struct kf_backend_iface {
  kf_backend backend;
  const char *name;

  void (*probe)(kf_probe_result *out);

  kf_status (*context_create)(const kf_backend_device *device, uint32_t flags, kf_backend_context **out_ctx);
  void (*context_destroy)(kf_backend_context *ctx);

  /* Device memory. alloc returns at least `bytes` (> 0), aligned to 256 bytes. */
  kf_status (*buffer_alloc)(kf_backend_context *ctx, size_t bytes, kf_buffer **out_buffer);
  void (*buffer_free)(kf_backend_context *ctx, kf_buffer *buffer);
  kf_status (*buffer_write)(kf_backend_context *ctx, kf_buffer *dst, size_t dst_offset, const void *src,
                            size_t bytes);
  kf_status (*buffer_read)(kf_backend_context *ctx, kf_buffer *src, size_t src_offset, void *dst, size_t bytes);
  /* Queued device-side copy; regions never overlap. */
  kf_status (*buffer_copy)(kf_backend_context *ctx, kf_buffer *src, size_t src_offset, kf_buffer *dst,
                           size_t dst_offset, size_t bytes);
  kf_status (*synchronize)(kf_backend_context *ctx);

  /* Device timestamps around queued work; timer_end waits and returns elapsed milliseconds. */
  kf_status (*timer_begin)(kf_backend_context *ctx);
  kf_status (*timer_end)(kf_backend_context *ctx, double *out_ms);

  /* Ops (NULL: unsupported). */
  kf_status (*rmsnorm)(kf_backend_context *ctx, const kf_norm_args *args);
  kf_status (*layernorm)(kf_backend_context *ctx, const kf_norm_args *args);
  kf_status (*rope)(kf_backend_context *ctx, const kf_rope_args *args);
  kf_status (*glu)(kf_backend_context *ctx, const kf_glu_args *args);
  kf_status (*softmax)(kf_backend_context *ctx, const kf_softmax_args *args);
} kf_backend_iface;

/* The backends compiled into this build (core/registry.c). */
#if defined(KF_WITH_CPU)
extern const kf_backend_iface kf_cpu_backend;
#endif
#if defined(KF_WITH_CUDA)
extern const kf_backend_iface kf_cuda_backend;
#endif
#if defined(KF_WITH_OPENCL)
extern const kf_backend_iface kf_opencl_backend;
#endif
#if defined(KF_WITH_VULKAN)
extern const kf_backend_iface kf_vulkan_backend;
#endif

#ifdef __cplusplus
}
#endif
#endif /* KF_CORE_BACKEND_H_ */

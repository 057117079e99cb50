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

/* A matrix of GEMM: element (r, c) of the stored matrix of batch entry i is at
 *   buffer + (offset + i * batch_stride + r * ld + c) * dtype_size
 * (row-major storage; batch_stride 0 broadcasts one matrix over the batch). buffer == NULL: absent. */
typedef struct kf_matrix_arg {
  kf_buffer *buffer;
  int64_t offset;
  int64_t ld;
  int64_t batch_stride;
  kf_dtype dtype;
} kf_matrix_arg;

/* C[i] = epilogue(alpha * op(A[i]) op(B[i])) over batch entries i, as kf_gemm documents; the core has
 * folded scale_a * scale_b into alpha and turned column-major views into transposes.
 *  - a: [m, k] stored, or [k, m] when trans_a (then op(A) = Aᵀ); b: [k, n] stored, or [n, k] when trans_b.
 *  - KF_GEMM_SWIGLU: b is the gate half of op(B) and b_up the up half (same dtype, ld, batch_stride
 *    and trans_b; b_up.offset points at column n of op(B)); bias (if any) is the gate half's bias and
 *    bias_up the up half's. C = silu(acc_gate + bias) * (acc_up + bias_up) + beta C + residual.
 *  - c: [m, n] row-major. residual: absent or [m, n] with its own ld / batch_stride, possibly
 *    identical to c (then read each element before writing it). beta == 0: C is never read (it may
 *    hold NaN).
 *  - bias / bias_up: vectors (row_stride 0, col_stride = element stride), f32/f16/bf16.
 *  - allow_tf32: f32 inputs may use TF32 tensor cores; otherwise f32 products are exact f32.
 *  - workspace: workspace_bytes (what gemm_workspace asked for; 0 and NULL when it asked for none)
 *    of device memory from the context's allocator, only for this call's queued work.
 * batch, m, n >= 1 (the core returns early on an empty C), all < 2^31. k >= 0: k == 0 makes the product
 * 0 and the epilogue still applies. */
typedef struct kf_gemm_args {
  int64_t batch, m, n, k;
  float alpha, beta;
  int32_t trans_a, trans_b;
  kf_gemm_activation activation;
  int32_t allow_tf32;
  kf_matrix_arg a, b, b_up;
  kf_tensor_arg bias, bias_up;
  kf_matrix_arg c, residual;
  kf_buffer *workspace;
  size_t workspace_bytes;
} kf_gemm_args;

/* A [batch, seq, heads, dim] operand of attention with dim contiguous: element (b, s, h, d) at
 *   buffer + (offset + b * batch_stride + s * seq_stride + h * head_stride + d) * dtype_size. */
typedef struct kf_seq_arg {
  kf_buffer *buffer;
  int64_t offset;
  int64_t batch_stride, seq_stride, head_stride;
  kf_dtype dtype;
} kf_seq_arg;

/* Flash attention as kf_attention documents. q/out: [batch, q_len, q_heads, head_dim]; k/v: [batch,
 * kv_len, kv_heads, head_dim]; q_heads % kv_heads == 0; q, k, v, out one dtype; scale already resolved
 * (never 0); window_left < 0: none. lse: absent, or f32 with element (b, h, i) at offset + b *
 * batch_stride + h * head_stride + i * seq_stride. out never overlaps q, k, v. batch, q_len, kv_len,
 * heads >= 1. workspace as for GEMM (attention_workspace). */
typedef struct kf_attention_args {
  int64_t batch, q_len, kv_len;
  int32_t q_heads, kv_heads, head_dim;
  float scale;
  int32_t causal;
  int64_t window_left;
  kf_seq_arg q, k, v, out, lse;
  kf_buffer *workspace;
  size_t workspace_bytes;
} kf_attention_args;

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
  kf_status (*gemm)(kf_backend_context *ctx, const kf_gemm_args *args);
  kf_status (*attention)(kf_backend_context *ctx, const kf_attention_args *args);
  /* Device memory an op needs beyond its operands (NULL or 0: none); args->workspace not yet set. */
  size_t (*gemm_workspace)(kf_backend_context *ctx, const kf_gemm_args *args);
  size_t (*attention_workspace)(kf_backend_context *ctx, const kf_attention_args *args);
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

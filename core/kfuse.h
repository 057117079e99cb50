/* kfuse.h — the one public header of kfuse: fused transformer ops on CUDA, Vulkan, OpenCL and CPU.
 *
 * Conventions (see docs/DESIGN.md):
 *  - every call returns kf_status (KF_OK == 0); on error kf_last_error() holds a per-thread message
 *    naming the function and the argument, and the call's outputs are untouched;
 *  - opaque handles with create/destroy pairs; destroy(NULL) is a no-op; outputs come last, named out_*;
 *  - argument structs start with `size_t struct_size` and have a KF_*_INIT macro, so fields can be added
 *    at the end without breaking callers;
 *  - same major version = ABI compatible.
 */
#ifndef KFUSE_H_
#define KFUSE_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KF_VERSION_MAJOR 0
#define KF_VERSION_MINOR 1
#define KF_VERSION_PATCH 0

#if defined(KF_BUILDING_LIBRARY)
#define KF_API __attribute__((visibility("default")))
#else
#define KF_API
#endif

/* ---------------------------------------------------------------------------------------------
 * Status codes. Values are stable: new codes are added before KF_STATUS_MAX_ENUM, never renumbered.
 * X(name, value, message)
 */
#define KF_STATUS_MAP(X)                                                                        \
  X(KF_OK, 0, "success")                                                                        \
  X(KF_ERROR_NULL_ARGUMENT, 1, "a required pointer or handle is NULL")                          \
  X(KF_ERROR_INVALID_ARGUMENT, 2, "an argument has an invalid value")                           \
  X(KF_ERROR_DTYPE_MISMATCH, 3, "a tensor has a data type the operation does not accept")       \
  X(KF_ERROR_SHAPE_MISMATCH, 4, "tensor shapes do not agree")                                   \
  X(KF_ERROR_CONTEXT_MISMATCH, 5, "a tensor belongs to another context")                        \
  X(KF_ERROR_OVERFLOW, 6, "a size or byte count overflows")                                     \
  X(KF_ERROR_SIZE_MISMATCH, 7, "a host buffer size does not match the tensor's byte size")      \
  X(KF_ERROR_UNSUPPORTED, 8, "the operation or layout is not supported on this device")         \
  X(KF_ERROR_BACKEND_UNAVAILABLE, 9, "the requested backend is not available on this machine") \
  X(KF_ERROR_DEVICE_NOT_FOUND, 10, "no device matches the request")                             \
  X(KF_ERROR_OUT_OF_MEMORY, 11, "out of host or device memory")                                 \
  X(KF_ERROR_DEVICE_FAILURE, 12, "a device runtime call failed")                                \
  X(KF_ERROR_INTERNAL, 13, "internal error in kfuse")

typedef enum kf_status {
#define KF_STATUS_ENUM_(name, value, msg) name = value,
  KF_STATUS_MAP(KF_STATUS_ENUM_)
#undef KF_STATUS_ENUM_
  KF_STATUS_MAX_ENUM = 0x7fffffff
} kf_status;

/* "KF_ERROR_SHAPE_MISMATCH"; "KF_STATUS_UNKNOWN" for values outside the enum. */
KF_API const char *kf_status_name(kf_status status);
/* The generic one-line meaning of a status. */
KF_API const char *kf_status_message(kf_status status);
/* The calling thread's message for its last failed call, e.g.
 * "kf_rmsnorm: weight has 4095 elements, x rows have 4096". "" when nothing failed yet.
 * The pointer stays valid until the thread's next kfuse call. */
KF_API const char *kf_last_error(void);

/* Version of the library actually loaded: MAJOR*10000 + MINOR*100 + PATCH. */
KF_API uint32_t kf_version(void);
KF_API const char *kf_version_string(void);

/* ---------------------------------------------------------------------------------------------
 * Backends and devices
 */
typedef enum kf_backend {
  KF_BACKEND_CPU = 0,
  KF_BACKEND_CUDA = 1,
  KF_BACKEND_OPENCL = 2,
  KF_BACKEND_VULKAN = 3,
  KF_BACKEND_COUNT = 4,
  KF_BACKEND_ANY = -1, /* in kf_context_options: let the default policy / environment choose */
  KF_BACKEND_MAX_ENUM = 0x7fffffff
} kf_backend;

/* "cpu", "cuda", "opencl", "vulkan"; NULL outside the enum. */
KF_API const char *kf_backend_name(kf_backend backend);
/* Parses a name as above (case-insensitive). */
KF_API kf_status kf_backend_from_name(const char *name, kf_backend *out_backend);

typedef enum kf_device_type {
  KF_DEVICE_TYPE_CPU = 0,            /* the host CPU through the CPU backend */
  KF_DEVICE_TYPE_DISCRETE_GPU = 1,
  KF_DEVICE_TYPE_INTEGRATED_GPU = 2,
  KF_DEVICE_TYPE_SOFTWARE = 3,       /* a driver that runs on the CPU: PoCL, lavapipe, SwiftShader */
  KF_DEVICE_TYPE_OTHER = 4,
  KF_DEVICE_TYPE_MAX_ENUM = 0x7fffffff
} kf_device_type;

KF_API const char *kf_device_type_name(kf_device_type type);

/* Capability bits of kf_device_info.caps. */
#define KF_CAP_F16 (1u << 0)              /* native f16 arithmetic / storage in kernels */
#define KF_CAP_BF16 (1u << 1)             /* native bf16 conversions */
#define KF_CAP_SUBGROUPS (1u << 2)        /* subgroup / warp reductions */
#define KF_CAP_TENSOR_CORES (1u << 3)     /* CUDA mma.sync (sm_80+) */
#define KF_CAP_HOPPER (1u << 4)           /* CUDA sm_90: wgmma, TMA */
#define KF_CAP_COOPERATIVE_MATRIX (1u << 5) /* Vulkan VK_NV/KHR_cooperative_matrix */
#define KF_CAP_FP8 (1u << 6)              /* FP8 e4m3 matrix inputs */
#define KF_CAP_INT64 (1u << 7)            /* 64-bit integers in kernels */
#define KF_CAP_BUFFER_DEVICE_ADDRESS (1u << 8) /* Vulkan buffer device address */

typedef struct kf_device_info {
  size_t struct_size;
  kf_backend backend;
  int32_t index;             /* position in the list of kf_devices() */
  int32_t backend_index;     /* position among this backend's devices (what KF_DEVICE=opencl:1 names) */
  kf_device_type type;
  char name[256];            /* "NVIDIA H200", "llvmpipe (LLVM 15.0.6, 256 bits)", ... */
  char vendor[64];           /* "NVIDIA", "AMD", "Intel", "Mesa", "PoCL", ... */
  char driver_version[64];
  char api_version[64];      /* "CUDA 13.0", "OpenCL 3.0", "Vulkan 1.3.230", "C11" */
  uint64_t memory_bytes;     /* device memory (host RAM for CPU and software devices) */
  uint32_t compute_units;    /* SMs, compute units, or CPU cores */
  uint32_t caps;             /* KF_CAP_* */
  char caps_text[192];       /* the same, human readable, plus backend details ("sm_90", "subgroup 32") */
  char pci_bus_id[32];       /* "0000:3b:00.0" where the API reports it, else "" */
  uint8_t uuid[16];          /* device UUID where the API reports it */
  int32_t has_uuid;
  int32_t same_device_as;    /* index of the first listed device that is the same hardware
                                (matched by PCI bus id or UUID), or -1 */
} kf_device_info;

typedef struct kf_backend_info {
  size_t struct_size;
  kf_backend backend;
  int32_t available;         /* 1 if the runtime loaded and at least one device is usable */
  int32_t device_count;
  char reason[256];          /* why unavailable ("libvulkan.so.1 not found"), or notes when available */
  char runtime[128];         /* the runtime library and version that was loaded */
} kf_backend_info;

/* Probes every backend once (thread-safe, cached) and returns the library-owned list of all devices
 * of all backends. The array stays valid for the life of the process. */
KF_API kf_status kf_devices(const kf_device_info **out_devices, size_t *out_count);
/* Whether a backend is available, and why not. */
KF_API kf_status kf_backend_get_info(kf_backend backend, kf_backend_info *out_info);
/* The index (into kf_devices()) that a context created with default options would use, after
 * applying KF_BACKEND / KF_DEVICE. */
KF_API kf_status kf_default_device(size_t *out_index);

/* ---------------------------------------------------------------------------------------------
 * Contexts: one device plus one in-order queue. Calls on one context are not thread-safe; use one
 * context per thread (contexts on the same device are independent).
 */
typedef struct kf_context kf_context;

/* Context creation flags. */
#define KF_CONTEXT_ALLOW_TF32 (1u << 0) /* f32 GEMM may use TF32 tensor cores (off by default) */

typedef struct kf_context_options {
  size_t struct_size;
  kf_backend backend;        /* KF_BACKEND_ANY: KF_BACKEND env var, then the default policy */
  int32_t device_index;      /* index into kf_devices(), or -1 */
  const char *device_name;   /* case-insensitive substring of the device name, or NULL */
  uint32_t flags;            /* KF_CONTEXT_* */
} kf_context_options;

#define KF_CONTEXT_OPTIONS_INIT {sizeof(kf_context_options), KF_BACKEND_ANY, -1, NULL, 0u}

/* Choice of device, first match wins:
 *   1. options->device_index >= 0;
 *   2. options->backend / options->device_name when set;
 *   3. KF_BACKEND (cpu|cuda|opencl|vulkan) and KF_DEVICE (a global index, "backend:index", or a name
 *      substring) environment variables;
 *   4. default policy: CUDA, then a discrete Vulkan GPU, then an OpenCL GPU, then the CPU backend.
 *      Software drivers (PoCL, lavapipe) are only used when asked for by one of the above.
 * options may be NULL (defaults). */
KF_API kf_status kf_context_create(const kf_context_options *options, kf_context **out_context);
KF_API void kf_context_destroy(kf_context *context);
KF_API kf_status kf_context_device(const kf_context *context, kf_device_info *out_info);
/* Waits until all work queued on the context has finished. */
KF_API kf_status kf_synchronize(kf_context *context);

/* Device-side timing of the work queued between begin and end (CUDA events, OpenCL profiling,
 * Vulkan timestamps; wall clock on the CPU backend). end waits for that work. */
KF_API kf_status kf_timer_begin(kf_context *context);
KF_API kf_status kf_timer_end(kf_context *context, double *out_milliseconds);

/* Statistics of the context's caching allocator. */
typedef struct kf_memory_stats {
  size_t struct_size;
  uint64_t current_bytes;    /* bytes held by live tensors */
  uint64_t peak_bytes;       /* maximum of current_bytes since creation or the last reset */
  uint64_t cached_bytes;     /* bytes freed by tensors and kept for reuse */
  uint64_t device_bytes;     /* bytes allocated from the device (current + cached) */
  uint64_t alloc_count;      /* tensor storage allocations served */
  uint64_t device_alloc_count; /* of which went to the device allocator */
} kf_memory_stats;

KF_API kf_status kf_memory_get_stats(const kf_context *context, kf_memory_stats *out_stats);
KF_API kf_status kf_memory_reset_peak(kf_context *context);
/* Returns cached (unused) blocks to the device. */
KF_API kf_status kf_memory_trim(kf_context *context);

/* ---------------------------------------------------------------------------------------------
 * Tensors: a dtype, up to KF_MAX_DIMS dims, strides in elements, an offset into shared storage.
 */
typedef enum kf_dtype {
  KF_F32 = 0,
  KF_F16 = 1,
  KF_BF16 = 2,
  KF_F8_E4M3 = 3, /* GEMM inputs only */
  KF_I32 = 4,     /* positions, indices */
  KF_DTYPE_COUNT = 5,
  KF_DTYPE_MAX_ENUM = 0x7fffffff
} kf_dtype;

#define KF_MAX_DIMS 6

/* "f32", "f16", "bf16", "f8e4m3", "i32"; NULL outside the enum. */
KF_API const char *kf_dtype_name(kf_dtype dtype);
/* Bytes per element; 0 outside the enum. */
KF_API size_t kf_dtype_size(kf_dtype dtype);

typedef struct kf_tensor kf_tensor;

typedef struct kf_tensor_desc {
  size_t struct_size;
  kf_dtype dtype;
  int32_t ndim;
  int64_t shape[KF_MAX_DIMS];
  int64_t strides[KF_MAX_DIMS]; /* elements */
  int64_t offset;               /* elements from the start of the storage */
  int64_t storage_elements;     /* size of the shared storage in elements */
  int32_t contiguous;           /* row-major and dense */
} kf_tensor_desc;

/* A new contiguous row-major tensor with its own storage (contents undefined). */
KF_API kf_status kf_tensor_create(kf_context *context, kf_dtype dtype, int32_t ndim, const int64_t *shape,
                                  kf_tensor **out_tensor);
/* A view of base's storage: same dtype, any shape/strides (elements, >= 0) and element offset
 * relative to base's storage, as long as every element lies inside the storage. strides may be NULL
 * (contiguous). The storage lives until the last tensor using it is destroyed. */
KF_API kf_status kf_tensor_view(const kf_tensor *base, int32_t ndim, const int64_t *shape, const int64_t *strides,
                                int64_t offset, kf_tensor **out_view);
KF_API void kf_tensor_destroy(kf_tensor *tensor);
KF_API kf_status kf_tensor_get_desc(const kf_tensor *tensor, kf_tensor_desc *out_desc);
KF_API kf_context *kf_tensor_context(const kf_tensor *tensor);
/* Number of elements; 0 for NULL. */
KF_API int64_t kf_tensor_numel(const kf_tensor *tensor);

/* Host <-> tensor copies of all elements in row-major logical order, packed (strided views are
 * gathered / scattered). bytes must equal numel * dtype size. Synchronous. */
KF_API kf_status kf_tensor_write(kf_tensor *tensor, const void *src, size_t bytes);
KF_API kf_status kf_tensor_read(const kf_tensor *tensor, void *dst, size_t bytes);
/* Device-side copy between tensors of the same dtype and shape (queued). Views are copied run by run
 * along their last dimension, which must then have stride 1 in both (else KF_ERROR_UNSUPPORTED);
 * src and dst must not overlap. */
KF_API kf_status kf_tensor_copy(kf_context *context, const kf_tensor *src, kf_tensor *dst);

/* Host conversion helpers (round to nearest even; NaN stays NaN). */
KF_API uint16_t kf_f32_to_f16(float value);
KF_API float kf_f16_to_f32(uint16_t value);
KF_API uint16_t kf_f32_to_bf16(float value);
KF_API float kf_bf16_to_f32(uint16_t value);
/* Converts count elements between any of KF_F32, KF_F16, KF_BF16 (and KF_F8_E4M3). */
KF_API kf_status kf_convert(const void *src, kf_dtype src_dtype, void *dst, kf_dtype dst_dtype, size_t count);

/* ---------------------------------------------------------------------------------------------
 * Normalization.
 *   RMSNorm:  y = h / sqrt(mean(h²) + eps) * weight (+ bias)
 * where h = x, or with a fused residual h = x + residual and residual_out = h.
 * x: [..., row_len], any number of rows; the last dimension must have stride 1, the leading
 * dimensions may be strided. y: same shape as x. weight, bias: [row_len] (contiguous or strided).
 * residual, residual_out: same shape as x; residual_out may be the same tensor as residual or x.
 * Dtypes: f32/f16/bf16 for every tensor (each independently), f32 accumulation.
 */
typedef struct kf_norm_desc {
  size_t struct_size;
  float eps;                   /* default 1e-6 */
  const kf_tensor *weight;     /* optional */
  const kf_tensor *bias;       /* optional */
  const kf_tensor *residual;   /* optional; requires residual_out */
  kf_tensor *residual_out;     /* h = x + residual is written here */
} kf_norm_desc;

#define KF_NORM_DESC_INIT {sizeof(kf_norm_desc), 1e-6f, NULL, NULL, NULL, NULL}

/* desc may be NULL (eps 1e-6, no weight, bias or residual). */
KF_API kf_status kf_rmsnorm(kf_context *context, const kf_tensor *x, kf_tensor *y, const kf_norm_desc *desc);

/*   LayerNorm: y = (h - mean(h)) / sqrt(var(h) + eps) * weight (+ bias), h as for RMSNorm (the same
 * descriptor, the same fused residual, the same shapes and dtypes). Variance is the biased (1/row_len)
 * one, computed stably. */
KF_API kf_status kf_layernorm(kf_context *context, const kf_tensor *x, kf_tensor *y, const kf_norm_desc *desc);

/* ---------------------------------------------------------------------------------------------
 * Rotary position embedding on Q and K in one call.
 *   q: [tokens, q_heads, head_dim], k: [tokens, k_heads, head_dim] (k may be NULL: Q only). Strided
 *   views are accepted (Q and K may be slices of a packed QKV projection) as long as head_dim is
 *   contiguous; q_heads and k_heads may differ (GQA).
 *   positions: [tokens] KF_I32, the position of each token (decoding with a KV cache uses arbitrary
 *   positions). A position outside [0, cos_sin rows) with a cos_sin table gives NaN in that token's
 *   rotated part.
 * For pair i in [0, rotary_dim/2): angle = position * position_scale * theta^(-2i/rotary_dim), and
 *   NeoX style rotates (x[i], x[i + rotary_dim/2]); GPT-J style rotates (x[2i], x[2i+1]):
 *   (a, b) -> (a cos - b sin, a sin + b cos). Elements from rotary_dim to head_dim pass through.
 * cos/sin are computed in f32 in the kernel, or taken from desc->cos_sin: [max_position, rotary_dim]
 * f32 holding cos of the rotary_dim/2 angles followed by their sin.
 * In place (q_out/k_out NULL) or out of place (q_out like q, k_out like k; may have other strides). */
typedef enum kf_rope_style {
  KF_ROPE_NEOX = 0, /* rotate halves (GPT-NeoX, Llama in HF layout) */
  KF_ROPE_GPTJ = 1, /* rotate interleaved pairs (GPT-J, Llama's original layout) */
  KF_ROPE_STYLE_MAX_ENUM = 0x7fffffff
} kf_rope_style;

typedef struct kf_rope_desc {
  size_t struct_size;
  kf_rope_style style;
  int32_t rotary_dim;          /* even, <= head_dim; 0 means head_dim */
  float theta;                 /* base, default 10000 */
  float position_scale;        /* linear position scaling (1 / factor), default 1 */
  const kf_tensor *cos_sin;    /* optional precomputed table, see above */
  kf_tensor *q_out;            /* NULL: rotate q in place */
  kf_tensor *k_out;            /* NULL: rotate k in place */
} kf_rope_desc;

#define KF_ROPE_DESC_INIT {sizeof(kf_rope_desc), KF_ROPE_NEOX, 0, 10000.0f, 1.0f, NULL, NULL, NULL}

KF_API kf_status kf_rope(kf_context *context, kf_tensor *q, kf_tensor *k, const kf_tensor *positions,
                         const kf_rope_desc *desc);

/* ---------------------------------------------------------------------------------------------
 * Gated linear units: out = act(gate) * up, act = SiLU (SwiGLU) or tanh-approximated GELU (GeGLU).
 *   gate, up, out: [..., inner], same shape; or up == NULL and gate: [..., 2*inner] holding gate in its
 *   first half and up in its second half (the output of a fused gate+up projection). Rows may be
 *   strided (last dimension contiguous). Dtypes f32/f16/bf16 independently, f32 arithmetic.
 */
typedef enum kf_glu_activation {
  KF_GLU_SILU = 0,      /* silu(g) = g / (1 + exp(-g)) */
  KF_GLU_GELU_TANH = 1, /* 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))) */
  KF_GLU_ACTIVATION_MAX_ENUM = 0x7fffffff
} kf_glu_activation;

typedef struct kf_glu_desc {
  size_t struct_size;
  kf_glu_activation activation;
} kf_glu_desc;

#define KF_GLU_DESC_INIT {sizeof(kf_glu_desc), KF_GLU_SILU}

/* desc may be NULL (SiLU). */
KF_API kf_status kf_glu(kf_context *context, const kf_tensor *gate, const kf_tensor *up, kf_tensor *out,
                        const kf_glu_desc *desc);

/* ---------------------------------------------------------------------------------------------
 * Softmax over the last dimension: y = softmax(x * scale + mask), numerically stable (max subtracted).
 *   x, y: [..., row_len], same shape, rows may be strided (last dimension contiguous); y may be x
 *   itself (in place). mask: optional additive mask broadcastable to x (same ndim or fewer, each
 *   dimension equal to x's or 1; -inf allowed). A row whose every entry is -inf gives NaN, as in the
 *   mathematical definition. Dtypes f32/f16/bf16 independently, f32 arithmetic.
 */
typedef struct kf_softmax_desc {
  size_t struct_size;
  float scale;                 /* default 1 */
  const kf_tensor *mask;       /* optional */
} kf_softmax_desc;

#define KF_SOFTMAX_DESC_INIT {sizeof(kf_softmax_desc), 1.0f, NULL}

/* desc may be NULL (scale 1, no mask). */
KF_API kf_status kf_softmax(kf_context *context, const kf_tensor *x, kf_tensor *y, const kf_softmax_desc *desc);

/* ---------------------------------------------------------------------------------------------
 * GEMM:  C = epilogue(alpha * scale_a * scale_b * op(A) op(B)) with, in this order,
 *   t = alpha * scale_a * scale_b * op(A) op(B)              [M, N'] (f32 accumulation)
 *   t = t + bias                                             optional, bias [N'] per output column
 *   t = silu(t[:, :N]) * t[:, N:2N]   (KF_GEMM_SWIGLU only)  N' = 2N, else N' = N
 *   C = t + beta * C + residual                              beta * C read only when beta != 0;
 *                                                            residual optional, shaped like C
 * Shapes: A [M, K] ([K, M] with transpose_a), B [K, N'] ([N', K] with transpose_b), C [M, N]; or
 * 3-D with a leading batch dimension: C [batch, M, N], and A, B either [batch, ...] or 2-D (the same
 * matrix for every batch entry). Every matrix needs one dimension of stride 1; a column-major view
 * (stride 1 in the first of its two dimensions) is taken as the transpose of the other layout, so
 * passing a transposed view and setting transpose_* are equivalent. C and residual must be row-major
 * (last dimension stride 1); residual may be C itself. C must not overlap A, B or bias.
 * KF_GEMM_SWIGLU ("side by side"): op(B) holds the gate projection in columns [0, N) and the up
 * projection in columns [N, 2N) (torch.cat([W_gate, W_up]) of nn.Linear weights, used with
 * transpose_b), and C = silu(gate) * up has half that width: the gate/up projection and SwiGLU as one op.
 * Dtypes: A and B both f32, both f16, both bf16, or both KF_F8_E4M3 (devices with KF_CAP_FP8; scale_a
 * and scale_b are the per-tensor dequantization scales); C, bias, residual f32/f16/bf16 each. f32
 * inputs use exact f32 multiplies unless the context has KF_CONTEXT_ALLOW_TF32.
 */
typedef enum kf_gemm_activation {
  KF_GEMM_NONE = 0,
  KF_GEMM_SWIGLU = 1, /* C = silu(gate) * up with gate/up the two column halves of op(B) */
  KF_GEMM_ACTIVATION_MAX_ENUM = 0x7fffffff
} kf_gemm_activation;

typedef struct kf_gemm_desc {
  size_t struct_size;
  float alpha;                 /* default 1 */
  float beta;                  /* default 0: C is write-only */
  int32_t transpose_a;         /* A is stored [K, M] */
  int32_t transpose_b;         /* B is stored [N', K] (an nn.Linear weight) */
  const kf_tensor *bias;       /* optional [N'] */
  const kf_tensor *residual;   /* optional, like C (may be C) */
  kf_gemm_activation activation;
  float scale_a;               /* default 1; per-tensor scale of an f8e4m3 A (any dtype) */
  float scale_b;               /* default 1 */
} kf_gemm_desc;

#define KF_GEMM_DESC_INIT {sizeof(kf_gemm_desc), 1.0f, 0.0f, 0, 0, NULL, NULL, KF_GEMM_NONE, 1.0f, 1.0f}

/* desc may be NULL (C = A B). */
KF_API kf_status kf_gemm(kf_context *context, const kf_tensor *a, const kf_tensor *b, kf_tensor *c,
                         const kf_gemm_desc *desc);

/* ---------------------------------------------------------------------------------------------
 * Attention (flash attention: single pass, online softmax, memory O(q_len + kv_len)):
 *   out[b, i, h, :] = sum_j softmax_j(scale * q[b, i, h, :] . k[b, j, h / (q_heads / kv_heads), :]) v[b, j, ...]
 * over the keys j visible to query i. Query i sits at position p = i + kv_len - q_len (bottom-right
 * aligned: the queries are the last q_len positions of the sequence, as in decode and chunked prefill
 * over a KV cache). Key j is visible iff (not causal or j <= p) and (window_left < 0 or j >= p -
 * window_left). A query that sees no key gets out = 0 and lse = -inf.
 *   q, out: [batch, q_len, q_heads, head_dim]; k, v: [batch, kv_len, kv_heads, head_dim]. Any strides
 *   as long as head_dim is contiguous: Q, K, V may be slices of one packed QKV tensor, and K/V the
 *   first kv_len rows of a larger KV cache. q_heads must be a multiple of kv_heads (GQA / MQA).
 *   head_dim 64, 96, 128 or 256 (any multiple of 8 up to 256 on CPU). q, k, v and out share one dtype
 *   (f32, f16 or bf16); arithmetic in f32 (tensor-core inputs in the tensor dtype).
 *   lse (optional): [batch, q_heads, q_len] f32, the natural-log logsumexp of each query's scaled
 *   logits, for merging partial attentions.
 * Temporary device memory (split-KV partials for decode) comes from the context's allocator and does
 * not grow with q_len * kv_len.
 */
typedef struct kf_attention_desc {
  size_t struct_size;
  float scale;                 /* 0: 1/sqrt(head_dim) */
  int32_t causal;
  int64_t window_left;         /* -1: no window; w: keys p - w .. p (with causal: a sliding window) */
  kf_tensor *lse;              /* optional output */
} kf_attention_desc;

#define KF_ATTENTION_DESC_INIT {sizeof(kf_attention_desc), 0.0f, 0, -1, NULL}

/* desc may be NULL (non-causal, default scale). */
KF_API kf_status kf_attention(kf_context *context, const kf_tensor *q, const kf_tensor *k, const kf_tensor *v,
                              kf_tensor *out, const kf_attention_desc *desc);

#ifdef __cplusplus
}
#endif
#endif /* KFUSE_H_ */

/* cuda_internal.h — state shared by the CUDA backend's files: the resolved driver API, the context,
 * the modules and the one launch helper, operand helpers, and the norm launch plan. */
#ifndef KF_BACKEND_CUDA_INTERNAL_H_
#define KF_BACKEND_CUDA_INTERNAL_H_

#include <stdint.h>

#include "backend_cuda/cuda_driver.h"
#include "core/backend.h"

/* Driver entry points, resolved once by probe (under the core's probe lock) and read-only after. */
typedef struct kf_cuda_api {
#define KF_CUDA_API_FIELD_(type, field, symbol) __typeof__(type) field;
  KF_CUDA_SYMBOLS(KF_CUDA_API_FIELD_)
#undef KF_CUDA_API_FIELD_
} kf_cuda_api;

extern kf_cuda_api kf_cu;

/* One module per .cu file of kernels_src/cuda (one fatbin each, all loaded by context_create). */
typedef enum kf_cuda_module {
  KF_CUDA_MODULE_NORM,    /* rmsnorm.fatbin: RMSNorm and LayerNorm */
  KF_CUDA_MODULE_ROPE,    /* rope.fatbin */
  KF_CUDA_MODULE_GLU,     /* glu.fatbin */
  KF_CUDA_MODULE_SOFTMAX, /* softmax.fatbin */
  KF_CUDA_MODULE_GEMM,    /* gemm.fatbin: the generic (sm_80+) GEMM */
  KF_CUDA_MODULE_GEMM_SM90, /* gemm_sm90.fatbin: the Hopper GEMM (TMA, wgmma), wide geometry */
  KF_CUDA_MODULE_GEMM_SM90_NARROW, /* gemm_sm90_narrow.fatbin: the same source, narrow geometry */
  KF_CUDA_MODULE_GEMM_SM90_SPLIT, /* gemm_sm90_split.fatbin: the same, wide tiles with the K split */
  KF_CUDA_MODULE_GEMM_SM90_N96,   /* gemm_sm90_n96.fatbin: the same, fitted 128 x 96 tiles */
  KF_CUDA_MODULE_GEMM_SM90_N160,  /* gemm_sm90_n160.fatbin: fitted 128 x 160 tiles */
  KF_CUDA_MODULE_GEMM_SM90_N192,  /* gemm_sm90_n192.fatbin: fitted 128 x 192 tiles */
  KF_CUDA_MODULE_ATTENTION, /* attention.fatbin */
  KF_CUDA_MODULE_COUNT
} kf_cuda_module;

/* Module functions are looked up on first use and cached per context: each op file numbers its
 * entry points within its module (function_slot there). */
#define KF_CUDA_FUNCTION_SLOTS 400

struct kf_backend_context {
  CUdevice device;
  CUcontext context; /* the device's primary context, retained */
  CUstream stream;   /* non-blocking: never waits for the legacy NULL stream */
  CUmodule modules[KF_CUDA_MODULE_COUNT];
  CUevent timer_start, timer_end;
  int sm_count;
  CUfunction functions[KF_CUDA_MODULE_COUNT][KF_CUDA_FUNCTION_SLOTS];
  /* The Hopper GEMM's stream-K flags (cuda_gemm_sm90.c): 2 uint32 an SM, zeroed when allocated (on
   * first use), then holding past launches' epochs; the epoch of the last launch that used them. One
   * set a context: launches on one stream never overlap, and other contexts have their own. */
  CUdeviceptr gemm_sm90_flags;
  uint32_t gemm_sm90_epoch;
  /* Clusters of s = 2..8 narrow Hopper GEMM CTAs that fit on the device at once, at index s
   * (cuOccupancyMaxActiveClusters, asked on first use): 0 not asked yet, -1 none or the query failed. */
  int gemm_sm90_cluster_capacity[9];
};

struct kf_buffer {
  CUdeviceptr address;
  size_t bytes;
};

/* "CUDA_ERROR_OUT_OF_MEMORY (out of memory)" for messages; static storage. */
const char *kf_cuda_error_text(CUresult result);

/* Makes ctx's context current on the calling thread for the scope of one backend entry. */
kf_status kf_cuda_enter(kf_backend_context *ctx);
void kf_cuda_leave(kf_backend_context *ctx);

/* The function `name` of `module`, cached in functions[module][slot]. */
kf_status kf_cuda_function(kf_backend_context *ctx, kf_cuda_module module, int slot, const char *name,
                           CUfunction *out_function);
/* The same for a kernel launched with `shared_bytes` of dynamic shared memory: above 48 KiB the limit is
 * raised on first lookup (a slot's kernel always asks for the same amount). */
kf_status kf_cuda_function_shared(kf_backend_context *ctx, kf_cuda_module module, int slot, const char *name,
                                  unsigned shared_bytes, CUfunction *out_function);

/* Queues one kernel on the context's stream with `shared_bytes` of dynamic shared memory; reports
 * failures with the kernel's name. The caller has entered the context. */
kf_status kf_cuda_launch(kf_backend_context *ctx, CUfunction function, const char *name, unsigned grid_x,
                         unsigned block_x, unsigned block_y, unsigned shared_bytes, void *params);
/* The same with a two-dimensional grid (grid_y <= 65535). */
kf_status kf_cuda_launch_2d(kf_backend_context *ctx, CUfunction function, const char *name, unsigned grid_x,
                            unsigned grid_y, unsigned block_x, unsigned block_y, unsigned shared_bytes, void *params);

/* kf_cuda_launch with programmatic dependent launch allowed (cuLaunchKernelEx, one-dimensional grid
 * and block): the kernel may start while the stream's previous kernel still runs, so it must execute
 * `griddepcontrol.wait` before it touches global memory (that waits for the previous kernel's
 * completion and its memory); kernels that execute `griddepcontrol.launch_dependents` let the next
 * such launch start before they end. */
kf_status kf_cuda_launch_dependent(kf_backend_context *ctx, CUfunction function, const char *name, unsigned grid_x,
                                   unsigned block_x, unsigned shared_bytes, void *params);
/* The same with thread-block clusters of cluster_x CTAs (grid_x a multiple of it) set at launch, for a
 * kernel compiled without __cluster_dims__; `dependent` 0 launches without PDL. */
kf_status kf_cuda_launch_clusters(kf_backend_context *ctx, CUfunction function, const char *name, unsigned grid_x,
                                  unsigned block_x, unsigned shared_bytes, unsigned cluster_x, int dependent,
                                  void *params);

/* Operand helpers shared by the op files. */
#define KF_CUDA_PACK_ELEMENTS 8 /* elements per pack, as in kernels_src/cuda/kf_pack.cuh */
#define KF_CUDA_VECTOR_BYTES 16 /* one LDG.128 */

static inline int64_t kf_cuda_element_size(kf_dtype dtype) { return (int64_t)kf_dtype_size(dtype); }

static inline const char *kf_cuda_dtype_name(kf_dtype dtype) {
  return dtype == KF_F32 ? "f32" : dtype == KF_F16 ? "f16" : "bf16";
}

static inline int kf_cuda_present(const kf_tensor_arg *arg) { return arg->buffer != NULL; }

/* Device address of element 0 of the operand, or 0 when absent. */
static inline uint64_t kf_cuda_address(const kf_tensor_arg *arg) {
  return kf_cuda_present(arg) ? arg->buffer->address + (uint64_t)(arg->offset * kf_cuda_element_size(arg->dtype))
                              : 0;
}

/* Whether the kernels have a specialisation for activations of dtype x producing y: one dtype
 * throughout, or 16-bit activations into f32 (kernels_src/cuda: the KF_KERNELS_* lists). */
static inline int kf_cuda_specialised_pair(kf_dtype x, kf_dtype y) { return x == y || (y == KF_F32 && x != KF_F32); }

/* How one RMSNorm or LayerNorm call is launched. chunks == 0 selects the looping kernel. */
typedef struct kf_cuda_norm_plan {
  int chunks;          /* packs of 8 elements each thread holds in registers: 1, 2, 4; or 0 */
  int threads_per_row; /* blockDim.x, a multiple of 32 */
  int rows_per_block;  /* blockDim.y */
  int vectorized;      /* 16-byte loads and stores (every operand aligned) */
  int reread;          /* the re-read kernels (c<C>l_v; RMSNorm C = 1, 2, LayerNorm C = 4): f16 or bf16
                        * throughout, no residual, vectorized, exactly C packs a thread */
} kf_cuda_norm_plan;

/* The plans kf_cuda_backend.rmsnorm and .layernorm use for these arguments. */
void kf_cuda_rmsnorm_plan(const kf_norm_args *args, kf_cuda_norm_plan *out_plan);
void kf_cuda_layernorm_plan(const kf_norm_args *args, kf_cuda_norm_plan *out_plan);
kf_status kf_cuda_rmsnorm(kf_backend_context *ctx, const kf_norm_args *args);
/* LayerNorm: the same plans and kernels with the mean subtracted (rmsnorm.cu's CENTER flag). */
kf_status kf_cuda_layernorm(kf_backend_context *ctx, const kf_norm_args *args);

kf_status kf_cuda_rope(kf_backend_context *ctx, const kf_rope_args *args);
kf_status kf_cuda_glu(kf_backend_context *ctx, const kf_glu_args *args);
kf_status kf_cuda_softmax(kf_backend_context *ctx, const kf_softmax_args *args);

/* GEMM (cuda_gemm.c): the entry of the backend table. On sm_90 it hands every call the Hopper path
 * takes to kf_cuda_gemm_sm90 unless KF_CUDA_FORCE_GENERIC=1; the rest runs the generic sm_80+ kernels. */
kf_status kf_cuda_gemm(kf_backend_context *ctx, const kf_gemm_args *args);
size_t kf_cuda_gemm_workspace(kf_backend_context *ctx, const kf_gemm_args *args);

/* The Hopper GEMM (cuda_gemm_sm90.c: TMA, wgmma, warp specialization). supports: 1 when this context's
 * device is sm_90 and the operands suit the path (dtypes, TMA's 16-byte stride alignment, ...), else 0;
 * kf_cuda_gemm_sm90 then runs it. workspace: bytes it needs for these args (0: none). */
int kf_cuda_gemm_sm90_supports(kf_backend_context *ctx, const kf_gemm_args *args);
kf_status kf_cuda_gemm_sm90(kf_backend_context *ctx, const kf_gemm_args *args);
size_t kf_cuda_gemm_sm90_workspace(kf_backend_context *ctx, const kf_gemm_args *args);

/* Flash attention (cuda_attention.c). */
kf_status kf_cuda_attention(kf_backend_context *ctx, const kf_attention_args *args);
size_t kf_cuda_attention_workspace(kf_backend_context *ctx, const kf_attention_args *args);

#endif /* KF_BACKEND_CUDA_INTERNAL_H_ */

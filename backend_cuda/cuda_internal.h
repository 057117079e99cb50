/* cuda_internal.h — state shared by the CUDA backend's files: the resolved driver API, the context,
 * the one launch helper, and the RMSNorm launch plan. */
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

/* Module functions are looked up on first use and cached per context: one slot per entry point of
 * kernels_src/cuda/rmsnorm.cu (see kf_cuda_rmsnorm_slot). */
#define KF_CUDA_FUNCTION_SLOTS 128

struct kf_backend_context {
  CUdevice device;
  CUcontext context; /* the device's primary context, retained */
  CUstream stream;   /* non-blocking: never waits for the legacy NULL stream */
  CUmodule module;
  CUevent timer_start, timer_end;
  int sm_count;
  CUfunction functions[KF_CUDA_FUNCTION_SLOTS];
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

/* The function `name` of the embedded module, cached in functions[slot]. */
kf_status kf_cuda_function(kf_backend_context *ctx, int slot, const char *name, CUfunction *out_function);

/* Queues one kernel on the context's stream; reports failures with the kernel's name. The caller has
 * entered the context. */
kf_status kf_cuda_launch(kf_backend_context *ctx, CUfunction function, const char *name, unsigned grid_x,
                         unsigned block_x, unsigned block_y, void *params);

/* How one RMSNorm call is launched. chunks == 0 selects the looping kernel. */
typedef struct kf_cuda_norm_plan {
  int chunks;          /* packs of 8 elements each thread holds in registers: 1, 2, 4, 8; or 0 */
  int threads_per_row; /* blockDim.x, a multiple of 32 */
  int rows_per_block;  /* blockDim.y */
  int vectorized;      /* 16-byte loads and stores (every operand aligned) */
} kf_cuda_norm_plan;

/* The plan kf_cuda_backend.rmsnorm uses for these arguments. */
void kf_cuda_rmsnorm_plan(const kf_norm_args *args, kf_cuda_norm_plan *out_plan);
/* Whether `plan` is one the kernels accept for these arguments (for tools that try other plans). */
int kf_cuda_rmsnorm_plan_valid(const kf_norm_args *args, const kf_cuda_norm_plan *plan);
/* Runs RMSNorm with a given valid plan. */
kf_status kf_cuda_rmsnorm_with_plan(kf_backend_context *ctx, const kf_norm_args *args,
                                    const kf_cuda_norm_plan *plan);
kf_status kf_cuda_rmsnorm(kf_backend_context *ctx, const kf_norm_args *args);

#endif /* KF_BACKEND_CUDA_INTERNAL_H_ */

/* opencl_clblast.h — CLBlast (libclblast.so.1), opened with dlopen on first use; the OpenCL GEMM's fast
 * path for C = alpha op(A) op(B) + beta C (backend_opencl/opencl_gemm.c decides when it applies).
 *
 * Only the C API entries the GEMM calls are resolved, listed once in KF_CLBLAST_SYMBOLS. Enum values
 * and signatures are those of CLBlast's C API (clblast_c.h, CLBlast 1.x), declared here so the build
 * needs no CLBlast headers.
 */
#ifndef KF_BACKEND_OPENCL_CLBLAST_H_
#define KF_BACKEND_OPENCL_CLBLAST_H_

#include <stddef.h>

#include "backend_opencl/cl_runtime.h"

/* CLBlastStatusCode: 0 success, else an OpenCL error code or one of CLBlast's own (<= -1024). */
typedef int kf_clblast_status;
#define KF_CLBLAST_SUCCESS 0
/* CLBlastLayout / CLBlastTranspose values. */
#define KF_CLBLAST_ROW_MAJOR 101
#define KF_CLBLAST_TRANSPOSE_NO 111
#define KF_CLBLAST_TRANSPOSE_YES 112

/* Parameter lists of CLBlast's xGEMM entries: the value type T (float, cl_half) varies. */
#define KF_CLBLAST_GEMM_PARAMS(T)                                                                        \
  int layout, int a_transpose, int b_transpose, size_t m, size_t n, size_t k, T alpha, cl_mem a_buffer,  \
      size_t a_offset, size_t a_ld, cl_mem b_buffer, size_t b_offset, size_t b_ld, T beta, cl_mem c_buffer, \
      size_t c_offset, size_t c_ld
#define KF_CLBLAST_STRIDED_PARAMS(T)                                                                     \
  int layout, int a_transpose, int b_transpose, size_t m, size_t n, size_t k, T alpha, cl_mem a_buffer,  \
      size_t a_offset, size_t a_ld, size_t a_stride, cl_mem b_buffer, size_t b_offset, size_t b_ld,       \
      size_t b_stride, T beta, cl_mem c_buffer, size_t c_offset, size_t c_ld, size_t c_stride,             \
      size_t batch_count
#define KF_CLBLAST_TEMP_SIZE_PARAMS                                                                      \
  int layout, int a_transpose, int b_transpose, size_t m, size_t n, size_t k, size_t a_offset,           \
      size_t a_ld, size_t b_offset, size_t b_ld, size_t c_offset, size_t c_ld, cl_command_queue *queue,  \
      size_t *temp_buffer_size

typedef kf_clblast_status (*kf_clblast_sgemm_fn)(KF_CLBLAST_GEMM_PARAMS(float), cl_command_queue *queue,
                                                 cl_event *event, cl_mem temp_buffer);
typedef kf_clblast_status (*kf_clblast_hgemm_fn)(KF_CLBLAST_GEMM_PARAMS(cl_half), cl_command_queue *queue,
                                                 cl_event *event, cl_mem temp_buffer);
typedef kf_clblast_status (*kf_clblast_sgemm_strided_fn)(KF_CLBLAST_STRIDED_PARAMS(float), cl_command_queue *queue,
                                                         cl_event *event);
typedef kf_clblast_status (*kf_clblast_hgemm_strided_fn)(KF_CLBLAST_STRIDED_PARAMS(cl_half),
                                                         cl_command_queue *queue, cl_event *event);
typedef kf_clblast_status (*kf_clblast_temp_size_fn)(KF_CLBLAST_TEMP_SIZE_PARAMS);

/* X(name, type) — every CLBlast entry the GEMM uses. The *WithTempBuffer forms take the core's
 * workspace instead of allocating CLBlast's padded copies on every call. */
#define KF_CLBLAST_SYMBOLS(X)                                         \
  X(CLBlastSgemmWithTempBuffer, kf_clblast_sgemm_fn)                  \
  X(CLBlastHgemmWithTempBuffer, kf_clblast_hgemm_fn)                  \
  X(CLBlastSGemmTempBufferSize, kf_clblast_temp_size_fn)              \
  X(CLBlastHGemmTempBufferSize, kf_clblast_temp_size_fn)              \
  X(CLBlastSgemmStridedBatched, kf_clblast_sgemm_strided_fn)          \
  X(CLBlastHgemmStridedBatched, kf_clblast_hgemm_strided_fn)

typedef struct kf_clblast_api {
#define KF_CLBLAST_POINTER_(name, type) type name;
  KF_CLBLAST_SYMBOLS(KF_CLBLAST_POINTER_)
#undef KF_CLBLAST_POINTER_
} kf_clblast_api;

/* The resolved entries once kf_clblast_load() returned 1. */
extern kf_clblast_api kf_clblast;

/* Opens libclblast.so.1 (then libclblast.so) and resolves every symbol, once per process (thread-safe).
 * Returns 1 when CLBlast is usable, 0 when it is missing or incomplete (the GEMM then uses its own
 * kernel for everything). */
int kf_clblast_load(void);

#endif /* KF_BACKEND_OPENCL_CLBLAST_H_ */

/* kf_params.h — parameter blocks shared by the host and every kernel language (C, CUDA C, OpenCL C,
 * GLSL), so each layout is written once.
 *
 * Layout rules (so C, OpenCL C and GLSL push-constant/std430 layouts agree): 64-bit fields first,
 * then 32-bit fields, total size a multiple of 8, no arrays of 32-bit scalars. Each struct must fit
 * in 128 bytes: the smallest push-constant size Vulkan guarantees.
 *
 * Buffer fields (KF_P_ADDR) hold, by backend:
 *   CUDA, Vulkan: the device address of element 0 of the operand (buffer address + offset * size);
 *   OpenCL:       the element offset of element 0 into the cl_mem bound to the matching kernel argument;
 *   0 when the operand is absent (and the matching KF_*_HAS_* flag is clear).
 */
#ifndef KF_PARAMS_H_
#define KF_PARAMS_H_

#if defined(__OPENCL_C_VERSION__)
#define KF_P_ADDR ulong
#define KF_P_I64 long
#define KF_P_I32 int
#define KF_P_U32 uint
#define KF_P_F32 float
#elif defined(GL_core_profile) || defined(GL_ES) || defined(VULKAN)
/* GLSL: the shader enables GL_EXT_shader_explicit_arithmetic_types_int64 before including this. */
#define KF_P_ADDR uint64_t
#define KF_P_I64 int64_t
#define KF_P_I32 int
#define KF_P_U32 uint
#define KF_P_F32 float
#else
#include <stdint.h>
#define KF_P_ADDR uint64_t
#define KF_P_I64 int64_t
#define KF_P_I32 int32_t
#define KF_P_U32 uint32_t
#define KF_P_F32 float
#endif

/* Data type codes in kernels: the same values as kf_dtype in kfuse.h. */
#define KF_DT_F32 0
#define KF_DT_F16 1
#define KF_DT_BF16 2

/* kf_norm_params.flags */
#define KF_NORM_HAS_WEIGHT 1u
#define KF_NORM_HAS_BIAS 2u
#define KF_NORM_HAS_RESIDUAL 4u

/* kf_norm_params.dtypes: 4 bits per operand. */
#define KF_NORM_DT_SHIFT_X 0
#define KF_NORM_DT_SHIFT_RESIDUAL 4
#define KF_NORM_DT_SHIFT_RESIDUAL_OUT 8
#define KF_NORM_DT_SHIFT_WEIGHT 12
#define KF_NORM_DT_SHIFT_BIAS 16
#define KF_NORM_DT_SHIFT_Y 20

/* RMSNorm (and later LayerNorm) over `rows` rows of `row_len` elements. 112 bytes. */
struct kf_norm_params {
  KF_P_ADDR x;
  KF_P_ADDR residual;
  KF_P_ADDR residual_out;
  KF_P_ADDR weight;
  KF_P_ADDR bias;
  KF_P_ADDR y;
  KF_P_I64 x_row_stride;            /* elements */
  KF_P_I64 residual_row_stride;
  KF_P_I64 residual_out_row_stride;
  KF_P_I64 y_row_stride;
  KF_P_I64 rows;
  KF_P_I32 row_len;                 /* the core rejects rows longer than 2^31 - 1 */
  KF_P_I32 weight_stride;           /* elements between consecutive weight entries */
  KF_P_I32 bias_stride;
  KF_P_F32 eps;
  KF_P_U32 flags;                   /* KF_NORM_HAS_* */
  KF_P_U32 dtypes;                  /* KF_DT_* << KF_NORM_DT_SHIFT_* */
};

#endif /* KF_PARAMS_H_ */

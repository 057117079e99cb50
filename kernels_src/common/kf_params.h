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

/* LayerNorm uses kf_norm_params as RMSNorm does. */

/* kf_rope_params.flags */
#define KF_ROPE_GPTJ_STYLE 1u     /* else NeoX (rotate halves) */
#define KF_ROPE_HAS_K 2u
#define KF_ROPE_HAS_COS_SIN 4u    /* use the table instead of computing cos/sin */

/* kf_rope_params.dtypes: 4 bits per operand (q, k, q_out, k_out). */
#define KF_ROPE_DT_SHIFT_Q 0
#define KF_ROPE_DT_SHIFT_K 4
#define KF_ROPE_DT_SHIFT_Q_OUT 8
#define KF_ROPE_DT_SHIFT_K_OUT 12

/* RoPE on Q and K: strides in elements (the core rejects strides, token counts and table sizes above
 * 2^31 - 1, so everything after the addresses is 32-bit and the block is exactly 128 bytes). */
struct kf_rope_params {
  KF_P_ADDR q;
  KF_P_ADDR k;
  KF_P_ADDR q_out;
  KF_P_ADDR k_out;
  KF_P_ADDR positions;          /* i32 */
  KF_P_ADDR cos_sin;            /* f32 [cos_sin_rows, rotary_dim], or 0 */
  KF_P_I32 tokens;
  KF_P_I32 q_token_stride;
  KF_P_I32 q_head_stride;
  KF_P_I32 k_token_stride;
  KF_P_I32 k_head_stride;
  KF_P_I32 q_out_token_stride;
  KF_P_I32 q_out_head_stride;
  KF_P_I32 k_out_token_stride;
  KF_P_I32 k_out_head_stride;
  KF_P_I32 positions_stride;
  KF_P_I32 cos_sin_row_stride;
  KF_P_I32 cos_sin_rows;        /* the core rejects tables of more than 2^31 - 1 rows */
  KF_P_I32 q_heads;
  KF_P_I32 k_heads;
  KF_P_I32 head_dim;
  KF_P_I32 rotary_dim;
  KF_P_U32 flags;               /* KF_ROPE_* */
  KF_P_U32 dtypes;              /* KF_DT_* << KF_ROPE_DT_SHIFT_* */
  KF_P_F32 theta;
  KF_P_F32 position_scale;
};

/* kf_glu_params.flags */
#define KF_GLU_ACT_GELU_TANH 1u   /* else SiLU */

/* kf_glu_params.dtypes */
#define KF_GLU_DT_SHIFT_GATE 0
#define KF_GLU_DT_SHIFT_UP 4
#define KF_GLU_DT_SHIFT_RESULT 8

/* result = act(gate) * up over rows × inner (the API's `out`; `out` is a GLSL keyword). 72 bytes. */
struct kf_glu_params {
  KF_P_ADDR gate;
  KF_P_ADDR up;
  KF_P_ADDR result;
  KF_P_I64 gate_row_stride;
  KF_P_I64 up_row_stride;
  KF_P_I64 result_row_stride;
  KF_P_I64 rows;
  KF_P_I32 inner;               /* the core rejects rows longer than 2^31 - 1 */
  KF_P_U32 flags;               /* KF_GLU_* */
  KF_P_U32 dtypes;              /* KF_DT_* << KF_GLU_DT_SHIFT_* */
  KF_P_U32 pad0;
};

/* kf_softmax_params.flags */
#define KF_SOFTMAX_HAS_MASK 1u

/* kf_softmax_params.dtypes */
#define KF_SOFTMAX_DT_SHIFT_X 0
#define KF_SOFTMAX_DT_SHIFT_MASK 4
#define KF_SOFTMAX_DT_SHIFT_Y 8

/* y = softmax(x * scale + mask). 72 bytes. */
struct kf_softmax_params {
  KF_P_ADDR x;
  KF_P_ADDR mask;
  KF_P_ADDR y;
  KF_P_I64 x_row_stride;
  KF_P_I64 mask_row_stride;     /* 0 when the mask is broadcast over rows */
  KF_P_I64 y_row_stride;
  KF_P_I64 rows;
  KF_P_I32 row_len;
  KF_P_F32 scale;
  KF_P_U32 flags;               /* KF_SOFTMAX_* */
  KF_P_U32 dtypes;              /* KF_DT_* << KF_SOFTMAX_DT_SHIFT_* */
};

#endif /* KF_PARAMS_H_ */

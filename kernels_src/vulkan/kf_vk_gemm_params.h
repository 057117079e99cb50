/* kf_vk_gemm_params.h — the push-constant block of gemm.comp and gemm_coopmat.comp, shared by the
 * shaders and the Vulkan backend (vulkan_gemm.c). Follows the layout rules of kf_params.h; 128 bytes,
 * the whole guaranteed push-constant range, so the up-half bias goes as an element offset from bias
 * rather than as an eighth address. */
#ifndef KF_VK_GEMM_PARAMS_H_
#define KF_VK_GEMM_PARAMS_H_

#include "kernels_src/common/kf_params.h"

struct kf_vk_gemm_params {
  KF_P_ADDR a;        /* element 0 of batch entry 0 of each matrix (kf_matrix_arg) */
  KF_P_ADDR b;
  KF_P_ADDR b_up;     /* SwiGLU: the up half of op(B); else 0 */
  KF_P_ADDR bias;     /* 0: no bias */
  KF_P_ADDR c;
  KF_P_ADDR residual; /* 0: no residual */
  KF_P_I64 a_batch_stride; /* elements; 0 broadcasts one matrix over the batch */
  KF_P_I64 b_batch_stride;
  KF_P_I64 c_batch_stride;
  KF_P_I64 residual_batch_stride;
  KF_P_I32 m;
  KF_P_I32 n;         /* columns of C (SwiGLU: half of op(B)'s) */
  KF_P_I32 k;
  KF_P_I32 batch;
  KF_P_I32 lda;       /* leading dimensions of the stored row-major matrices */
  KF_P_I32 ldb;
  KF_P_I32 ldc;
  KF_P_I32 ld_residual;
  KF_P_I32 bias_stride;    /* elements between consecutive bias entries */
  KF_P_I32 bias_up_offset; /* SwiGLU: bias_up = bias + bias_up_offset elements */
  KF_P_F32 alpha;
  KF_P_F32 beta;
};

#endif /* KF_VK_GEMM_PARAMS_H_ */

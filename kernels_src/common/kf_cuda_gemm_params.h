/* kf_cuda_gemm_params.h — the parameter block of the CUDA generic GEMM (kernels_src/cuda/gemm.cu),
 * shared by the host (backend_cuda/cuda_gemm.c) and the kernels. CUDA-only: kernel parameters are not
 * limited to a push-constant size, so it lives beside kf_params.h rather than in it. */
#ifndef KF_CUDA_GEMM_PARAMS_H_
#define KF_CUDA_GEMM_PARAMS_H_

#include "kernels_src/common/kf_params.h"

/* kf_cuda_gemm_params.flags */
#define KF_GEMM_HAS_BIAS 1u
#define KF_GEMM_HAS_RESIDUAL 2u
#define KF_GEMM_SWIGLU_PAIRS 4u /* b / b_up are the gate / up halves; C = silu(gate) * up */
#define KF_GEMM_READ_C 8u       /* beta != 0 */
#define KF_GEMM_C_PAIRS 16u     /* two adjacent C elements of an even column form one aligned store */

/* kf_cuda_gemm_params.dtypes: 4 bits per operand (KF_DT_*). */
#define KF_GEMM_DT_SHIFT_C 0
#define KF_GEMM_DT_SHIFT_BIAS 4
#define KF_GEMM_DT_SHIFT_RESIDUAL 8

/* One launch over `batch` entries. Addresses point at element 0 of batch entry 0; strides are in
 * elements of each operand's dtype. Block b of the 1-D grid is tile (b % tiles) of split
 * (b / tiles % splits) of batch entry (b / tiles / splits); tiles = tiles_m * tiles_n.
 * With splits > 1 each split writes its raw f32 sums to workspace, laid out
 * [splits][batch][m][n_sums] with n_sums = 2n under SWIGLU_PAIRS (gate columns, then up), else n,
 * and kf_gemm_finish_splits applies the epilogue. */
struct kf_cuda_gemm_params {
  KF_P_ADDR a;
  KF_P_ADDR b;
  KF_P_ADDR b_up;
  KF_P_ADDR bias;
  KF_P_ADDR bias_up;
  KF_P_ADDR c;
  KF_P_ADDR residual;
  KF_P_ADDR workspace;
  KF_P_I64 lda, ldb, ldc, ld_residual;
  KF_P_I64 batch_stride_a, batch_stride_b, batch_stride_c, batch_stride_residual;
  KF_P_I64 bias_stride;
  KF_P_I32 m, n, k;        /* n: columns of C */
  KF_P_I32 batch;
  KF_P_I32 trans_a, trans_b;
  KF_P_I32 splits;
  KF_P_I32 k_per_split;    /* a multiple of every kernel's k tile */
  KF_P_I32 tiles_m, tiles_n;
  KF_P_F32 alpha, beta;
  KF_P_U32 flags;          /* KF_GEMM_* */
  KF_P_U32 dtypes;         /* KF_DT_* << KF_GEMM_DT_SHIFT_* */
};

#endif /* KF_CUDA_GEMM_PARAMS_H_ */

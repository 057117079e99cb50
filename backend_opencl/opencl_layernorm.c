/* opencl_layernorm.c — LayerNorm on OpenCL: kernels_src/opencl/layernorm.cl with the row plan of
 * opencl_launch.c. */
#include <stdio.h>
#include <string.h>

#include "backend_opencl/opencl_internal.h"
#include "kernels_src/common/kf_params.h"

/* NVIDIA, bf16 without the residual: uncapped, ptxas gives the 8-wide kernels more than 64 registers
 * (124 for 4 vectors per item while weight and bias were prefetched: 2 groups of 256 per SM). Capped
 * at 64, 4 groups of 256 fit: measured on the H200 (bf16 16384x8192, weight and bias), 81% of copy
 * against 73% uncapped and 74% with a cap of 80. With the residual the kernel reaches 92% uncapped and
 * keeps the compiler's choice. */
#define KF_LAYERNORM_NV_BF16_OPTIONS "-cl-nv-maxrregcount=64"

static int vector_operand_aligned(const kf_tensor_arg *arg) {
  return arg->buffer == NULL || (arg->col_stride == 1 && arg->offset % KF_OCL_VEC == 0);
}

kf_status kf_ocl_layernorm(kf_backend_context *ctx, const kf_norm_args *args) {
  const int64_t rows = args->rows;
  if (rows == 0 || args->row_len == 0) return KF_OK;
  const int vectorized = args->row_len % KF_OCL_VEC == 0 && kf_ocl_rows_aligned(&args->x, rows) &&
                         kf_ocl_rows_aligned(&args->residual, rows) &&
                         kf_ocl_rows_aligned(&args->residual_out, rows) && kf_ocl_rows_aligned(&args->y, rows) &&
                         vector_operand_aligned(&args->weight) && vector_operand_aligned(&args->bias);
  const int width = vectorized ? KF_OCL_VEC : 1;

  const kf_tensor_arg *const operands[] = {&args->x, &args->residual, &args->residual_out,
                                           &args->weight, &args->bias, &args->y};
  struct kf_norm_params params;
  kf_ocl_norm_params(args, rows, &params);

  /* Where dtypes are specialized (GPUs: one extra build each, cached), the operand set is too
   * (KF_FIXED_FLAGS): the kernels then carry no code for absent operands, which costs registers. */
  kf_ocl_program *program;
  kf_status status;
  if (ctx->specialize_dtypes) {
    const int fixed_dtype = kf_ocl_uniform_dtype(ctx, operands, 6);
    const int capped = ctx->nvidia_ptx && fixed_dtype == KF_BF16 && !(params.flags & KF_NORM_HAS_RESIDUAL);
    char options[96];
    snprintf(options, sizeof options, "-DKF_FIXED_FLAGS=%u %s", params.flags,
             capped ? KF_LAYERNORM_NV_BF16_OPTIONS : "");
    status = kf_ocl_op_program_variant(ctx, KF_OCL_OP_LAYERNORM, fixed_dtype, params.flags + 1u, options, &program);
  } else {
    status = kf_ocl_op_program(ctx, KF_OCL_OP_LAYERNORM, -1, &program);
  }
  if (status != KF_OK) return status;
  kf_ocl_row_plan plan;
  status = kf_ocl_plan_rows(ctx, program, "kf_layernorm", width, rows, args->row_len / width, &plan);
  if (status != KF_OK) return status;

  cl_mem mems[6];
  for (int i = 0; i < 6; ++i) mems[i] = kf_ocl_operand_mem(ctx, operands[i]);
  cl_uint row_threads = (cl_uint)plan.row_threads;
  const size_t sizes[9] = {sizeof params, sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem),
                           sizeof(cl_mem), sizeof(cl_mem), sizeof row_threads, plan.group * sizeof(float)};
  const void *const values[9] = {&params, &mems[0], &mems[1], &mems[2], &mems[3], &mems[4], &mems[5],
                                 &row_threads, NULL};
  status = kf_ocl_set_args(plan.kernel, "kf_layernorm", 9, sizes, values);
  if (status != KF_OK) return status;
  const size_t global = plan.groups * plan.group;
  return kf_ocl_enqueue(ctx, plan.kernel, "kf_layernorm", 1, &global, &plan.group);
}

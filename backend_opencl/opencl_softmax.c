/* opencl_softmax.c — softmax on OpenCL: kernels_src/opencl/softmax.cl with the row plan of
 * opencl_launch.c. */
#include <stdio.h>
#include <string.h>

#include "backend_opencl/opencl_internal.h"
#include "kernels_src/common/kf_params.h"

/* NVIDIA, bf16: ptxas gives the 8-wide register kernels ~80 registers per work-item, which allows 3
 * groups of 256 per SM and caps a group at 768 items. 64 registers (a few spilled bytes) fit 4 groups
 * of 256, or 1024 items: measured on the H200 (bf16 16384x8192), 71% of copy against 68%. f32 holds
 * twice the registers per vector and would spill more; it keeps the compiler's choice. */
#define KF_SOFTMAX_NV_BF16_OPTIONS "-cl-nv-maxrregcount=64"

kf_status kf_ocl_softmax(kf_backend_context *ctx, const kf_softmax_args *args) {
  const int64_t rows = args->rows;
  if (rows == 0 || args->row_len == 0) return KF_OK;
  const int vectorized = args->row_len % KF_OCL_VEC == 0 && kf_ocl_rows_aligned(&args->x, rows) &&
                         kf_ocl_rows_aligned(&args->mask, rows) && kf_ocl_rows_aligned(&args->y, rows);
  const int width = vectorized ? KF_OCL_VEC : 1;

  const kf_tensor_arg *const operands[] = {&args->x, &args->mask, &args->y};
  const uint32_t flags = args->mask.buffer ? KF_SOFTMAX_HAS_MASK : 0u;
  /* Where dtypes are specialized (GPUs), whether there is a mask is too (KF_FIXED_FLAGS in softmax.cl):
   * one more cached build per case. */
  kf_ocl_program *program;
  kf_status status;
  if (ctx->specialize_dtypes) {
    const int fixed_dtype = kf_ocl_uniform_dtype(ctx, operands, 3);
    char options[96];
    snprintf(options, sizeof options, "-DKF_FIXED_FLAGS=%u %s", flags,
             ctx->nvidia_ptx && fixed_dtype == KF_BF16 ? KF_SOFTMAX_NV_BF16_OPTIONS : "");
    status = kf_ocl_op_program_variant(ctx, KF_OCL_OP_SOFTMAX, fixed_dtype, flags + 1u, options, &program);
  } else {
    status = kf_ocl_op_program(ctx, KF_OCL_OP_SOFTMAX, -1, &program);
  }
  if (status != KF_OK) return status;
  kf_ocl_row_plan plan;
  status = kf_ocl_plan_rows(ctx, program, "kf_softmax", width, rows, args->row_len / width, &plan);
  if (status != KF_OK) return status;

  struct kf_softmax_params params;
  memset(&params, 0, sizeof params);
  params.x = (uint64_t)args->x.offset;
  params.mask = (uint64_t)args->mask.offset;
  params.y = (uint64_t)args->y.offset;
  params.x_row_stride = args->x.row_stride;
  params.mask_row_stride = args->mask.buffer ? args->mask.row_stride : 0;
  params.y_row_stride = args->y.row_stride;
  params.rows = rows;
  params.row_len = (int32_t)args->row_len;
  params.scale = args->scale;
  params.flags = flags;
  params.dtypes = (uint32_t)args->x.dtype << KF_SOFTMAX_DT_SHIFT_X | (uint32_t)args->y.dtype << KF_SOFTMAX_DT_SHIFT_Y;
  if (args->mask.buffer) params.dtypes |= (uint32_t)args->mask.dtype << KF_SOFTMAX_DT_SHIFT_MASK;

  cl_mem mems[3];
  for (int i = 0; i < 3; ++i) mems[i] = kf_ocl_operand_mem(ctx, operands[i]);
  cl_uint row_threads = (cl_uint)plan.row_threads;
  const size_t sizes[6] = {sizeof params,      sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem),
                           sizeof row_threads, plan.group * sizeof(float)};
  const void *const values[6] = {&params, &mems[0], &mems[1], &mems[2], &row_threads, NULL};
  status = kf_ocl_set_args(plan.kernel, "kf_softmax", 6, sizes, values);
  if (status != KF_OK) return status;
  const size_t global = plan.groups * plan.group;
  return kf_ocl_enqueue(ctx, plan.kernel, "kf_softmax", 1, &global, &plan.group);
}

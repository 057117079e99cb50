/* opencl_glu.c — gated linear units on OpenCL: kernels_src/opencl/glu.cl. */
#include <string.h>

#include "backend_opencl/opencl_internal.h"
#include "kernels_src/common/kf_params.h"

/* Work-items per group along a row: full 256-item groups keep every GPU core busy. */
#define KF_GLU_GROUP 256
/* Rows beyond this are looped over inside the kernel: NVIDIA limits the second grid dimension to
 * 65535 groups. */
#define KF_GLU_MAX_ROW_ITEMS 65535

kf_status kf_ocl_glu(kf_backend_context *ctx, const kf_glu_args *args) {
  const int64_t rows = args->rows;
  if (rows == 0 || args->inner == 0) return KF_OK;
  const int vectorized = args->inner % KF_OCL_VEC == 0 && kf_ocl_rows_aligned(&args->gate, rows) &&
                         kf_ocl_rows_aligned(&args->up, rows) && kf_ocl_rows_aligned(&args->out, rows);
  const int width = vectorized ? KF_OCL_VEC : 1;
  const char *name = vectorized ? "kf_glu_w8" : "kf_glu_w1";

  const kf_tensor_arg *const operands[] = {&args->gate, &args->up, &args->out};
  kf_ocl_program *program;
  kf_status status = kf_ocl_op_program(ctx, KF_OCL_OP_GLU, kf_ocl_uniform_dtype(ctx, operands, 3), &program);
  if (status != KF_OK) return status;
  cl_kernel kernel;
  size_t max_group;
  status = kf_ocl_get_kernel(ctx, program, vectorized ? 0 : 1, name, &kernel, &max_group);
  if (status != KF_OK) return status;

  struct kf_glu_params params;
  memset(&params, 0, sizeof params);
  params.gate = (uint64_t)args->gate.offset;
  params.up = (uint64_t)args->up.offset;
  params.result = (uint64_t)args->out.offset;
  params.gate_row_stride = args->gate.row_stride;
  params.up_row_stride = args->up.row_stride;
  params.result_row_stride = args->out.row_stride;
  params.rows = rows;
  params.inner = (int32_t)args->inner;
  params.flags = args->activation == KF_GLU_GELU_TANH ? KF_GLU_ACT_GELU_TANH : 0u;
  params.dtypes = (uint32_t)args->gate.dtype << KF_GLU_DT_SHIFT_GATE | (uint32_t)args->up.dtype << KF_GLU_DT_SHIFT_UP |
                  (uint32_t)args->out.dtype << KF_GLU_DT_SHIFT_RESULT;

  cl_mem mems[3];
  for (int i = 0; i < 3; ++i) mems[i] = kf_ocl_operand_mem(ctx, operands[i]);
  const size_t sizes[4] = {sizeof params, sizeof(cl_mem), sizeof(cl_mem), sizeof(cl_mem)};
  const void *const values[4] = {&params, &mems[0], &mems[1], &mems[2]};
  status = kf_ocl_set_args(kernel, name, 4, sizes, values);
  if (status != KF_OK) return status;

  const size_t items = (size_t)(args->inner / width);
  size_t group = KF_GLU_GROUP;
  if (group > max_group) group = max_group;
  if (group > ctx->max_group_size) group = ctx->max_group_size;
  if (items < group) group = items;
  const size_t local[2] = {group, 1};
  const size_t global[2] = {(items + group - 1) / group * group,
                            (size_t)(rows < KF_GLU_MAX_ROW_ITEMS ? rows : KF_GLU_MAX_ROW_ITEMS)};
  return kf_ocl_enqueue(ctx, kernel, name, 2, global, local);
}

/* opencl_launch.c — what the OpenCL ops built on kernels_src/opencl/common.cl share: their programs
 * (one per op, dtypes chosen at run time, plus constant-dtype variants on GPUs), kernel arguments and
 * launches, and the row decomposition of the row-reduction ops (layernorm, softmax). */
#include <stdio.h>
#include <string.h>

#include "backend_opencl/opencl_internal.h"
#include "kernels_src/common/kf_params.h"

/* Work-group size to aim for when rows are short (several rows per group). */
#define KF_ROW_GROUP_TARGET 256
/* Vectors each work-item of a row op aims to hold in registers. Measured on the H200 (bf16
 * 16384x8192 RMSNorm, with all of a row's loads issued before any use and bf16 held packed): 4 per
 * item 93% of copy, 2 the same, 8 65%, the register pressure costing more than the shorter reductions
 * gained. */
#define KF_ROW_VECS_PER_ITEM 4
/* Groups beyond this loop over rows inside the kernel (keeps the grid within every driver's limits). */
#define KF_ROW_MAX_GROUPS (1 << 20)

static const char *const kOpSources[] = {
    [KF_OCL_OP_LAYERNORM] = "layernorm.cl",
    [KF_OCL_OP_ROPE] = "rope.cl",
    [KF_OCL_OP_GLU] = "glu.cl",
    [KF_OCL_OP_SOFTMAX] = "softmax.cl",
    [KF_OCL_OP_GEMM] = "gemm.cl",
    [KF_OCL_OP_ATTENTION] = "attention.cl",
};

kf_status kf_ocl_op_program(kf_backend_context *ctx, kf_ocl_op op, int fixed_dtype, kf_ocl_program **out) {
  return kf_ocl_op_program_variant(ctx, op, fixed_dtype, 0, "", out);
}

kf_status kf_ocl_op_program_variant(kf_backend_context *ctx, kf_ocl_op op, int fixed_dtype, uint32_t variant,
                                    const char *variant_options, kf_ocl_program **out) {
  /* Above the keys of opencl_rmsnorm.c (13 bits): variant + 1 in bits 16.., op in 4..15, dtype in 0..3. */
  const uint32_t key = (variant + 1u) << 16 | (uint32_t)op << 4 | (uint32_t)(fixed_dtype + 1);
  *out = kf_ocl_find_program(ctx, key);
  if (*out != NULL) return KF_OK;
  char options[384];
  snprintf(options, sizeof options, "-DKF_NV_PTX=%d -DKF_FIXED_DT=%d %s", ctx->nvidia_ptx, fixed_dtype,
           variant_options);
  return kf_ocl_add_program(ctx, key, "common.cl", kOpSources[op], options, out);
}

int kf_ocl_uniform_dtype(const kf_backend_context *ctx, const kf_tensor_arg *const *operands, int count) {
  if (!ctx->specialize_dtypes) return -1;
  int dtype = -1;
  for (int i = 0; i < count; ++i) {
    if (operands[i]->buffer == NULL) continue;
    if (dtype >= 0 && (int)operands[i]->dtype != dtype) return -1;
    dtype = (int)operands[i]->dtype;
  }
  return dtype;
}

cl_mem kf_ocl_operand_mem(kf_backend_context *ctx, const kf_tensor_arg *arg) {
  return arg->buffer != NULL ? arg->buffer->mem : ctx->placeholder;
}

int kf_ocl_rows_aligned(const kf_tensor_arg *arg, int64_t rows) {
  if (arg->buffer == NULL) return 1;
  return arg->offset % KF_OCL_VEC == 0 && (rows == 1 || arg->row_stride % KF_OCL_VEC == 0);
}

kf_status kf_ocl_set_args(cl_kernel kernel, const char *kernel_name, int count, const size_t *sizes,
                          const void *const *values) {
  for (int i = 0; i < count; ++i) {
    cl_int err = kf_cl.clSetKernelArg(kernel, (cl_uint)i, sizes[i], values[i]);
    if (err != CL_SUCCESS)
      return kf_fail(KF_ERROR_DEVICE_FAILURE, "clSetKernelArg(%s, %d) failed: %s", kernel_name, i,
                     kf_cl_error_name(err));
  }
  return KF_OK;
}

kf_status kf_ocl_enqueue(kf_backend_context *ctx, cl_kernel kernel, const char *kernel_name, cl_uint dims,
                         const size_t *global, const size_t *local) {
  cl_event event;
  cl_int err = kf_cl.clEnqueueNDRangeKernel(ctx->queue, kernel, dims, NULL, global, local, 0, NULL,
                                            kf_ocl_timer_event_slot(ctx, &event));
  if (err != CL_SUCCESS)
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "clEnqueueNDRangeKernel(%s, global %zu) failed: %s", kernel_name,
                   global[0], kf_cl_error_name(err));
  kf_ocl_timer_record(ctx, event);
  return KF_OK;
}

static size_t pow2_floor(size_t n) {
  size_t p = 1;
  while (p * 2 <= n) p *= 2;
  return p;
}

static size_t pow2_ceil(int64_t n) {
  size_t p = 1;
  while ((int64_t)p < n) p *= 2;
  return p;
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Register kernels hold 1, 2, 4 or 8 vectors per work-item; slots: width 8 first, then width 1. */
static const int kChunks[] = {1, 2, 4, 8};
#define KF_ROW_KERNELS_PER_WIDTH 5 /* 4 register kernels + stream */

kf_status kf_ocl_plan_rows(kf_backend_context *ctx, kf_ocl_program *program, const char *prefix, int width,
                           int64_t rows, int64_t vecs, kf_ocl_row_plan *out) {
  const int slot_base = width == KF_OCL_VEC ? 0 : KF_ROW_KERNELS_PER_WIDTH;
  const size_t desired = pow2_ceil(ceil_div(vecs, KF_ROW_VECS_PER_ITEM));
  memset(out, 0, sizeof *out);
  size_t limit = 0;
  for (int k = 0; k < 4 && out->kernel == NULL; ++k) {
    char name[64];
    snprintf(name, sizeof name, "%s_w%d_r%d", prefix, width, kChunks[k]);
    cl_kernel candidate;
    size_t max_group;
    kf_status status = kf_ocl_get_kernel(ctx, program, slot_base + k, name, &candidate, &max_group);
    if (status != KF_OK) return status;
    size_t candidate_limit = pow2_floor(max_group < ctx->max_group_size ? max_group : ctx->max_group_size);
    size_t threads = desired < candidate_limit ? desired : candidate_limit;
    if (ceil_div(vecs, (int64_t)threads) <= kChunks[k]) {
      out->kernel = candidate;
      out->row_threads = threads;
      limit = candidate_limit;
    }
  }
  if (out->kernel == NULL) {
    char name[64];
    snprintf(name, sizeof name, "%s_w%d_stream", prefix, width);
    size_t max_group;
    kf_status status = kf_ocl_get_kernel(ctx, program, slot_base + 4, name, &out->kernel, &max_group);
    if (status != KF_OK) return status;
    limit = pow2_floor(max_group < ctx->max_group_size ? max_group : ctx->max_group_size);
    out->row_threads = limit;
  }
  out->kernel_name = prefix;
  const size_t group_target = KF_ROW_GROUP_TARGET < limit ? KF_ROW_GROUP_TARGET : limit;
  out->group = out->row_threads > group_target ? out->row_threads : group_target;
  int64_t groups = ceil_div(rows, (int64_t)(out->group / out->row_threads));
  out->groups = (size_t)(groups < KF_ROW_MAX_GROUPS ? groups : KF_ROW_MAX_GROUPS);
  return KF_OK;
}

/* The parameter block of RMSNorm and LayerNorm: OpenCL's KF_P_ADDR fields are element offsets into the
 * cl_mem arguments (kf_params.h). */
void kf_ocl_norm_params(const kf_norm_args *args, int64_t rows, struct kf_norm_params *params) {
  memset(params, 0, sizeof *params);
  params->x = (uint64_t)args->x.offset;
  params->residual = (uint64_t)args->residual.offset;
  params->residual_out = (uint64_t)args->residual_out.offset;
  params->weight = (uint64_t)args->weight.offset;
  params->bias = (uint64_t)args->bias.offset;
  params->y = (uint64_t)args->y.offset;
  params->x_row_stride = args->x.row_stride;
  params->residual_row_stride = args->residual.row_stride;
  params->residual_out_row_stride = args->residual_out.row_stride;
  params->y_row_stride = args->y.row_stride;
  params->rows = rows;
  params->row_len = (int32_t)args->row_len;
  params->weight_stride = (int32_t)args->weight.col_stride;
  params->bias_stride = (int32_t)args->bias.col_stride;
  params->eps = args->eps;
  params->flags = (args->weight.buffer ? KF_NORM_HAS_WEIGHT : 0u) | (args->bias.buffer ? KF_NORM_HAS_BIAS : 0u) |
                 (args->residual.buffer ? KF_NORM_HAS_RESIDUAL : 0u);
  params->dtypes = (uint32_t)args->x.dtype << KF_NORM_DT_SHIFT_X | (uint32_t)args->y.dtype << KF_NORM_DT_SHIFT_Y;
  if (args->residual.buffer)
    params->dtypes |= (uint32_t)args->residual.dtype << KF_NORM_DT_SHIFT_RESIDUAL |
                     (uint32_t)args->residual_out.dtype << KF_NORM_DT_SHIFT_RESIDUAL_OUT;
  if (args->weight.buffer) params->dtypes |= (uint32_t)args->weight.dtype << KF_NORM_DT_SHIFT_WEIGHT;
  if (args->bias.buffer) params->dtypes |= (uint32_t)args->bias.dtype << KF_NORM_DT_SHIFT_BIAS;
}

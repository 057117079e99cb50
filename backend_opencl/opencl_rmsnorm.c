/* opencl_rmsnorm.c — RMSNorm on OpenCL: picks the program variant (operand dtypes, vector width) and the
 * kernel / work decomposition for a row length, then launches kernels_src/opencl/rmsnorm.cl. */
#include <stdio.h>
#include <string.h>

#include "backend_opencl/opencl_internal.h"
#include "kernels_src/common/kf_params.h"

/* Elements per vector access when every operand is 8-aligned (see rmsnorm.cl). */
#define KF_NORM_VEC 8
/* Vectors each work-item should hold: enough independent loads in flight per work-item to hide
 * memory latency, few enough that a 256-item group fits many times on a GPU core (a bf16 row of 8192
 * gets 256 items x 4 vectors x 8 elements). Measured on the H200 (bf16 16384x8192, rmsnorm.cl issuing
 * all of an item's loads before their first use): 2 and 4 per item 93% of copy, 8 per item 65%. */
#define KF_NORM_VECS_PER_ITEM 4
/* Work-group size to aim for when rows are short (several rows per group). */
#define KF_NORM_GROUP_TARGET 256
/* Groups beyond this loop over rows inside the kernel (keeps the grid within every driver's limits). */
#define KF_NORM_MAX_GROUPS (1 << 20)

/* Kernels of rmsnorm.cl; the index is the kernel's slot in the program entry. */
#define KF_STREAM_KERNEL_SLOT 4
static const struct {
  const char *name;
  int chunks;
} kRegisterKernels[] = {
    {"kf_rmsnorm_regs1", 1},
    {"kf_rmsnorm_regs2", 2},
    {"kf_rmsnorm_regs4", 4},
    {"kf_rmsnorm_regs8", 8},
};

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

/* 8-wide accesses need 8-aligned row starts (buffers themselves are 256-byte aligned). */
static int row_operand_aligned(const kf_tensor_arg *arg, int64_t rows) {
  if (arg->buffer == NULL) return 1;
  return arg->offset % KF_NORM_VEC == 0 && (rows == 1 || arg->row_stride % KF_NORM_VEC == 0);
}

static int vector_operand_aligned(const kf_tensor_arg *arg) {
  if (arg->buffer == NULL) return 1;
  return arg->col_stride == 1 && arg->offset % KF_NORM_VEC == 0;
}

/* 0..2: KF_DT_*; 3: absent. */
static uint32_t dtype_code(const kf_tensor_arg *arg) { return arg->buffer != NULL ? (uint32_t)arg->dtype : 3u; }

static cl_mem operand_mem(kf_backend_context *ctx, const kf_tensor_arg *arg) {
  return arg->buffer != NULL ? arg->buffer->mem : ctx->placeholder;
}

static kf_status get_program(kf_backend_context *ctx, const kf_norm_args *args, int vec, kf_ocl_program **out) {
  uint32_t x = dtype_code(&args->x), y = dtype_code(&args->y), r = dtype_code(&args->residual),
           ro = dtype_code(&args->residual_out), w = dtype_code(&args->weight), b = dtype_code(&args->bias);
  uint32_t key = x | y << 2 | r << 4 | ro << 6 | w << 8 | b << 10 | (uint32_t)(vec == KF_NORM_VEC) << 12;
  *out = kf_ocl_find_program(ctx, key);
  if (*out != NULL) return KF_OK;
  char options[512];
  /* Absent operands get dtype 0 so the macros stay well-formed; KF_HAS_* switch them off. */
  snprintf(options, sizeof options,
           "%s-DKF_X_DT=%u -DKF_Y_DT=%u -DKF_HAS_RESIDUAL=%d -DKF_R_DT=%u -DKF_RO_DT=%u -DKF_HAS_WEIGHT=%d "
           "-DKF_W_DT=%u -DKF_HAS_BIAS=%d -DKF_B_DT=%u -DKF_VEC=%d -DKF_SUBGROUPS=%d -DKF_NV_PTX=%d",
           ctx->language_std, x, y, r != 3u, r != 3u ? r : 0u, ro != 3u ? ro : 0u, w != 3u, w != 3u ? w : 0u,
           b != 3u, b != 3u ? b : 0u, vec, ctx->subgroups, ctx->nvidia_ptx);
  return kf_ocl_add_program(ctx, key, NULL, "rmsnorm.cl", options, out);
}

kf_status kf_ocl_rmsnorm(kf_backend_context *ctx, const kf_norm_args *args) {
  const int64_t rows = args->rows;
  if (rows == 0 || args->row_len == 0) return KF_OK;

  const int vectorized = args->row_len % KF_NORM_VEC == 0 && row_operand_aligned(&args->x, rows) &&
                         row_operand_aligned(&args->residual, rows) &&
                         row_operand_aligned(&args->residual_out, rows) && row_operand_aligned(&args->y, rows) &&
                         vector_operand_aligned(&args->weight) && vector_operand_aligned(&args->bias);
  const int vec = vectorized ? KF_NORM_VEC : 1;
  const int64_t vecs = args->row_len / vec;

  kf_ocl_program *program;
  kf_status status = get_program(ctx, args, vec, &program);
  if (status != KF_OK) return status;

  /* Work-items per row: a power of two giving about KF_NORM_VECS_PER_ITEM vectors each; then the
   * register kernel with the fewest chunks that still covers the row, else the streaming kernel. */
  size_t desired = pow2_ceil(ceil_div(vecs, KF_NORM_VECS_PER_ITEM));
  cl_kernel kernel = NULL;
  size_t row_threads = 0, kernel_limit = 0;
  /* 8-wide register kernels stop at 4 chunks (32 floats per item): see KF_NORM_VECS_PER_ITEM. */
  const int register_kernels = vectorized ? 3 : 4;
  for (int k = 0; k < register_kernels && kernel == NULL; ++k) {
    cl_kernel candidate;
    size_t max_group;
    status = kf_ocl_get_kernel(ctx, program, k, kRegisterKernels[k].name, &candidate, &max_group);
    if (status != KF_OK) return status;
    size_t limit = pow2_floor(max_group < ctx->max_group_size ? max_group : ctx->max_group_size);
    size_t threads = desired < limit ? desired : limit;
    if (ceil_div(vecs, (int64_t)threads) <= kRegisterKernels[k].chunks) {
      kernel = candidate;
      row_threads = threads;
      kernel_limit = limit;
    }
  }
  if (kernel == NULL) {
    size_t max_group;
    status = kf_ocl_get_kernel(ctx, program, KF_STREAM_KERNEL_SLOT, "kf_rmsnorm_stream", &kernel, &max_group);
    if (status != KF_OK) return status;
    kernel_limit = pow2_floor(max_group < ctx->max_group_size ? max_group : ctx->max_group_size);
    row_threads = kernel_limit;
  }
  const size_t group_target = KF_NORM_GROUP_TARGET < kernel_limit ? KF_NORM_GROUP_TARGET : kernel_limit;
  const size_t group = row_threads > group_target ? row_threads : group_target;
  const int64_t rows_per_group = (int64_t)(group / row_threads);
  int64_t groups = ceil_div(rows, rows_per_group);
  if (groups > KF_NORM_MAX_GROUPS) groups = KF_NORM_MAX_GROUPS;

  struct kf_norm_params params;
  kf_ocl_norm_params(args, rows, &params);

  cl_mem mems[6] = {operand_mem(ctx, &args->x),      operand_mem(ctx, &args->residual),
                    operand_mem(ctx, &args->residual_out), operand_mem(ctx, &args->weight),
                    operand_mem(ctx, &args->bias),   operand_mem(ctx, &args->y)};
  cl_uint row_threads_arg = (cl_uint)row_threads;
  cl_int err = kf_cl.clSetKernelArg(kernel, 0, sizeof params, &params);
  for (cl_uint i = 0; i < 6 && err == CL_SUCCESS; ++i) err = kf_cl.clSetKernelArg(kernel, 1 + i, sizeof(cl_mem), &mems[i]);
  if (err == CL_SUCCESS) err = kf_cl.clSetKernelArg(kernel, 7, sizeof row_threads_arg, &row_threads_arg);
  if (err == CL_SUCCESS) err = kf_cl.clSetKernelArg(kernel, 8, group * sizeof(float), NULL); /* scratch */
  if (err != CL_SUCCESS) return kf_fail(KF_ERROR_DEVICE_FAILURE, "clSetKernelArg failed: %s", kf_cl_error_name(err));

  size_t global_size = (size_t)groups * group;
  cl_event event;
  err = kf_cl.clEnqueueNDRangeKernel(ctx->queue, kernel, 1, NULL, &global_size, &group, 0, NULL,
                                     kf_ocl_timer_event_slot(ctx, &event));
  if (err != CL_SUCCESS)
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "clEnqueueNDRangeKernel(rmsnorm, %zu x %zu) failed: %s", global_size,
                   group, kf_cl_error_name(err));
  kf_ocl_timer_record(ctx, event);
  return KF_OK;
}

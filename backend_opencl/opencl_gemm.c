/* opencl_gemm.c — GEMM on OpenCL: CLBlast where it computes exactly what was asked, our own tiled
 * kernel (kernels_src/opencl/gemm.cl) for everything else.
 *
 * CLBlast (libclblast.so.1, opencl_clblast.c) takes f32 GEMMs without epilogue: C = alpha op(A) op(B)
 * + beta C with A, B and C in f32, k >= 1, as one xGEMM (batch 1) or a strided-batched xGEMM, and
 * with the core's workspace as CLBlast's buffer for padded copies (no allocation per call). Its f16
 * routines accumulate in half precision, not the f32 the API promises, so f16 goes to our kernel
 * unless KF_OPENCL_CLBLAST_F16=1 opts in (devices with cl_khr_fp16 only). Everything else — bf16,
 * f16, mixed output dtypes, bias / residual / SwiGLU, k == 0 — runs our kernel, which fuses the
 * epilogue: one pass over C instead of CLBlast plus an epilogue kernel that reads and writes C again.
 * A missing CLBlast, one that fails a call (an unknown device, a failed build), or
 * KF_OPENCL_GEMM_OWN_KERNEL=1 sends every GEMM to our kernel.
 *
 * A B matrix broadcast over a batch of row-major A and C is one GEMM with batch * m rows (the common
 * linear layer on [batch, seq, hidden]); both paths take it that way.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_opencl/opencl_clblast.h"
#include "backend_opencl/opencl_internal.h"

/* Our kernel's two tile shapes (gemm.cl): 16 x 16 items on 128 x 128, or 8 x 8 items on 64 x 64. */
#define KF_GEMM_LARGE_SIDE 16
#define KF_GEMM_LARGE_ITEMS (KF_GEMM_LARGE_SIDE * KF_GEMM_LARGE_SIDE)
#define KF_GEMM_LARGE_TILE (KF_GEMM_LARGE_SIDE * 8)
#define KF_GEMM_SMALL_SIDE 8
#define KF_GEMM_SMALL_ITEMS (KF_GEMM_SMALL_SIDE * KF_GEMM_SMALL_SIDE)
#define KF_GEMM_SMALL_TILE (KF_GEMM_SMALL_SIDE * 8)
/* Groups beyond this loop over tiles inside the kernel (grid within every driver's limits). */
/* kf_gemm_skinny (gemm.cl): m up to KF_SK_ROWS, KF_SK_TEAMS columns per group of KF_SK_ITEMS items. */
#define KF_GEMM_SKINNY_ROWS 16
#define KF_GEMM_SKINNY_COLUMNS 8
#define KF_GEMM_SKINNY_ITEMS 256
#define KF_GEMM_MAX_GROUPS (1 << 20)
/* CLBlast's single-kernel path indexes with 32-bit int offsets. */
#define KF_CLBLAST_MAX_INDEX INT32_MAX

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* The GEMM actually run: batch entries and rows after folding a broadcast B into the rows. */
typedef struct gemm_shape {
  int64_t batch, m;
} gemm_shape;

static gemm_shape effective_shape(const kf_gemm_args *args) {
  gemm_shape shape = {args->batch, args->m};
  const int64_t m = args->m;
  const int rows_follow = !args->trans_a && args->a.batch_stride == m * args->a.ld &&
                          args->c.batch_stride == m * args->c.ld &&
                          (args->residual.buffer == NULL || args->residual.batch_stride == m * args->residual.ld);
  if (args->batch > 1 && args->b.batch_stride == 0 && rows_follow && args->batch * m <= INT32_MAX) {
    shape.batch = 1;
    shape.m = args->batch * m;
  }
  return shape;
}

/* Whole-word match in a space-separated extension list. */
static int lists_extension(const char *extensions, const char *name) {
  const size_t len = strlen(name);
  for (const char *p = extensions; (p = strstr(p, name)) != NULL; p += len)
    if ((p == extensions || p[-1] == ' ') && (p[len] == '\0' || p[len] == ' ')) return 1;
  return 0;
}

/* Compute units, device type and cl_khr_fp16, queried on the context's first GEMM. */
static void query_device(kf_backend_context *ctx) {
  if (ctx->gemm_device_known) return;
  cl_uint compute_units = 0;
  if (kf_cl.clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof compute_units, &compute_units, NULL) !=
      CL_SUCCESS)
    compute_units = 0;
  ctx->compute_units = compute_units > 0 ? compute_units : 1;
  cl_device_type type = 0;
  kf_cl.clGetDeviceInfo(ctx->device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
  ctx->gemm_cpu_device = (type & CL_DEVICE_TYPE_CPU) != 0;
  ctx->fp16 = 0;
  size_t size = 0;
  if (kf_cl.clGetDeviceInfo(ctx->device, CL_DEVICE_EXTENSIONS, 0, NULL, &size) == CL_SUCCESS && size > 0) {
    char *extensions = calloc(size + 1, 1);
    if (extensions != NULL &&
        kf_cl.clGetDeviceInfo(ctx->device, CL_DEVICE_EXTENSIONS, size, extensions, NULL) == CL_SUCCESS)
      ctx->fp16 = lists_extension(extensions, "cl_khr_fp16");
    free(extensions);
  }
  ctx->gemm_device_known = 1;
}

/* ---- CLBlast ---- */

/* Element index one past the last element of a batch of rows x cols matrices. */
static int64_t matrix_end(const kf_matrix_arg *x, int64_t batch, int64_t rows, int64_t cols) {
  return x->offset + (batch - 1) * x->batch_stride + (rows - 1) * x->ld + cols;
}

static int clblast_applies(kf_backend_context *ctx, const kf_gemm_args *args, gemm_shape shape) {
  if (args->activation != KF_GEMM_NONE || args->bias.buffer != NULL || args->residual.buffer != NULL || args->k == 0)
    return 0;
  const kf_dtype dtype = args->a.dtype;
  if (args->c.dtype != dtype || (dtype != KF_F32 && dtype != KF_F16)) return 0;
  if (kf_env_flag("KF_OPENCL_GEMM_OWN_KERNEL")) return 0;
  if (dtype == KF_F16) {
    query_device(ctx);
    if (!ctx->fp16 || !kf_env_flag("KF_OPENCL_CLBLAST_F16")) return 0;
  }
  const int64_t a_rows = args->trans_a ? args->k : shape.m, a_cols = args->trans_a ? shape.m : args->k;
  const int64_t b_rows = args->trans_b ? args->n : args->k, b_cols = args->trans_b ? args->k : args->n;
  if (matrix_end(&args->a, shape.batch, a_rows, a_cols) > KF_CLBLAST_MAX_INDEX ||
      matrix_end(&args->b, shape.batch, b_rows, b_cols) > KF_CLBLAST_MAX_INDEX ||
      matrix_end(&args->c, shape.batch, shape.m, args->n) > KF_CLBLAST_MAX_INDEX)
    return 0;
  return kf_clblast_load();
}

/* IEEE half bits of v, rounded to nearest even (CLBlast's half routines take alpha and beta so). */
static cl_half half_bits(float v) {
  uint32_t u;
  memcpy(&u, &v, sizeof u);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t magnitude = u & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return (cl_half)(sign | 0x7e00u);  /* NaN stays a quiet NaN */
  if (magnitude >= 0x477ff000u) return (cl_half)(sign | 0x7c00u); /* 65520 and up round to infinity */
  if (magnitude < 0x38800000u) /* below 2^-14: a multiple of 2^-24 (rounding up may give the least normal) */
    return (cl_half)(sign | (uint32_t)nearbyintf(fabsf(v) * 0x1p24f));
  /* Round the mantissa to 10 bits, then rebias the exponent from 127 to 15. */
  return (cl_half)(sign | ((magnitude + 0xfffu + ((magnitude >> 13) & 1u) - 0x38000000u) >> 13));
}

static int clblast_transpose(int32_t trans) { return trans ? KF_CLBLAST_TRANSPOSE_YES : KF_CLBLAST_TRANSPOSE_NO; }

static size_t clblast_temp_bytes(kf_backend_context *ctx, const kf_gemm_args *args, gemm_shape shape) {
  kf_clblast_temp_size_fn temp_size =
      args->a.dtype == KF_F32 ? kf_clblast.CLBlastSGemmTempBufferSize : kf_clblast.CLBlastHGemmTempBufferSize;
  size_t bytes = 0;
  kf_clblast_status status =
      temp_size(KF_CLBLAST_ROW_MAJOR, clblast_transpose(args->trans_a), clblast_transpose(args->trans_b),
                (size_t)shape.m, (size_t)args->n, (size_t)args->k, (size_t)args->a.offset, (size_t)args->a.ld,
                (size_t)args->b.offset, (size_t)args->b.ld, (size_t)args->c.offset, (size_t)args->c.ld, &ctx->queue,
                &bytes);
  return status == KF_CLBLAST_SUCCESS ? bytes : 0;
}

/* CLBlast returns the event of its last command only, and may queue padding / transposing kernels
 * before it. When this GEMM opens a running timer, a 4-byte copy inside the placeholder buffer (which
 * no kernel reads) is queued first so the timer starts before CLBlast's first command. */
static kf_status open_timer(kf_backend_context *ctx) {
  if (!ctx->timer_active || ctx->timer_first != NULL) return KF_OK;
  cl_event event;
  cl_int err = kf_cl.clEnqueueCopyBuffer(ctx->queue, ctx->placeholder, ctx->placeholder, 0, sizeof(cl_float4),
                                         sizeof(cl_float), 0, NULL, &event);
  if (err != CL_SUCCESS)
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "clEnqueueCopyBuffer (timer start) failed: %s", kf_cl_error_name(err));
  kf_ocl_timer_record(ctx, event);
  return KF_OK;
}

/* Queues the GEMM on CLBlast; returns its status (the caller falls back to our kernel on failure). */
static kf_clblast_status clblast_gemm(kf_backend_context *ctx, const kf_gemm_args *args, gemm_shape shape) {
  const int ta = clblast_transpose(args->trans_a), tb = clblast_transpose(args->trans_b);
  const size_t m = (size_t)shape.m, n = (size_t)args->n, k = (size_t)args->k;
  cl_mem a = args->a.buffer->mem, b = args->b.buffer->mem, c = args->c.buffer->mem;
  const size_t a_offset = (size_t)args->a.offset, b_offset = (size_t)args->b.offset, c_offset = (size_t)args->c.offset;
  const size_t a_ld = (size_t)args->a.ld, b_ld = (size_t)args->b.ld, c_ld = (size_t)args->c.ld;
  /* The workspace is CLBlast's temporary buffer when gemm_workspace asked for one (batch 1 only). */
  cl_mem temp = args->workspace != NULL ? args->workspace->mem : NULL;
  cl_event event = NULL;
  cl_event *event_slot = kf_ocl_timer_event_slot(ctx, &event);
  kf_clblast_status status;
  if (args->a.dtype == KF_F32) {
    const float alpha = args->alpha, beta = args->beta;
    if (shape.batch == 1)
      status = kf_clblast.CLBlastSgemmWithTempBuffer(KF_CLBLAST_ROW_MAJOR, ta, tb, m, n, k, alpha, a, a_offset, a_ld,
                                                     b, b_offset, b_ld, beta, c, c_offset, c_ld, &ctx->queue,
                                                     event_slot, temp);
    else
      status = kf_clblast.CLBlastSgemmStridedBatched(
          KF_CLBLAST_ROW_MAJOR, ta, tb, m, n, k, alpha, a, a_offset, a_ld, (size_t)args->a.batch_stride, b, b_offset,
          b_ld, (size_t)args->b.batch_stride, beta, c, c_offset, c_ld, (size_t)args->c.batch_stride,
          (size_t)shape.batch, &ctx->queue, event_slot);
  } else {
    const cl_half alpha = half_bits(args->alpha), beta = half_bits(args->beta);
    if (shape.batch == 1)
      status = kf_clblast.CLBlastHgemmWithTempBuffer(KF_CLBLAST_ROW_MAJOR, ta, tb, m, n, k, alpha, a, a_offset, a_ld,
                                                     b, b_offset, b_ld, beta, c, c_offset, c_ld, &ctx->queue,
                                                     event_slot, temp);
    else
      status = kf_clblast.CLBlastHgemmStridedBatched(
          KF_CLBLAST_ROW_MAJOR, ta, tb, m, n, k, alpha, a, a_offset, a_ld, (size_t)args->a.batch_stride, b, b_offset,
          b_ld, (size_t)args->b.batch_stride, beta, c, c_offset, c_ld, (size_t)args->c.batch_stride,
          (size_t)shape.batch, &ctx->queue, event_slot);
  }
  if (status == KF_CLBLAST_SUCCESS)
    kf_ocl_timer_record(ctx, event);
  else if (event != NULL)
    kf_cl.clReleaseEvent(event);
  return status;
}

/* ---- our kernel ---- */

static int uniform_dtype(const kf_backend_context *ctx, const kf_gemm_args *args) {
  if (!ctx->specialize_dtypes) return -1;
  const kf_dtype dtype = args->a.dtype;
  if (args->c.dtype != dtype || (args->bias.buffer && args->bias.dtype != dtype) ||
      (args->residual.buffer && args->residual.dtype != dtype))
    return -1;
  return (int)dtype;
}

/* The kernel of the program with `items_side`^2 work-items (one tile shape per program, gemm.cl) and
 * the largest group it allows. */
/* items_side 16 or 8: kf_gemm with that tile; KF_GEMM_SKINNY_VARIANT: kf_gemm_skinny. */
#define KF_GEMM_SKINNY_VARIANT 1
static kf_status get_kernel(kf_backend_context *ctx, int items_side, int fixed_dtype, cl_kernel *out_kernel,
                            size_t *out_max_group) {
  /* gemm_cpu_device is fixed per context, so items_side alone tells the variants apart */
  const int skinny = items_side == KF_GEMM_SKINNY_VARIANT;
  char options[96];
  snprintf(options, sizeof options, "-DKF_GEMM_ITEMS_SIDE=%d -DKF_GEMM_SKINNY=%d -DKF_GEMM_OUTLINE=%d",
           skinny ? 0 : items_side, skinny, ctx->gemm_cpu_device);
  kf_ocl_program *program = NULL;
  kf_status status = kf_ocl_op_program_variant(ctx, KF_OCL_OP_GEMM, fixed_dtype, (uint32_t)items_side, options, &program);
  if (status != KF_OK) return status;
  return kf_ocl_get_kernel(ctx, program, 0, skinny ? "kf_gemm_skinny" : "kf_gemm", out_kernel, out_max_group);
}

static cl_long4 layout_of(const kf_matrix_arg *x, int64_t extra) {
  cl_long4 layout = {{x->offset, x->ld, x->batch_stride, extra}};
  return layout;
}

static kf_status launch(kf_backend_context *ctx, const kf_gemm_args *args, gemm_shape shape, cl_kernel kernel,
                        const char *name, size_t items, int64_t tiles_m, int64_t tiles_n);

static kf_status kernel_gemm(kf_backend_context *ctx, const kf_gemm_args *args, gemm_shape shape) {
  query_device(ctx);
  const int fixed_dtype = uniform_dtype(ctx, args);
  const int swiglu = args->activation == KF_GEMM_SWIGLU;
  int large = 0;
  cl_kernel kernel = NULL;
  size_t max_group = 0;
  kf_status status;
  /* Decode shapes with B stored [n, k] (nn.Linear weights): one pass over B, kf_gemm_skinny. */
  if (shape.m <= KF_GEMM_SKINNY_ROWS && args->trans_b && args->k > 0 && ctx->max_group_size >= KF_GEMM_SKINNY_ITEMS) {
    status = get_kernel(ctx, KF_GEMM_SKINNY_VARIANT, fixed_dtype, &kernel, &max_group);
    if (status != KF_OK) return status;
    if (max_group >= KF_GEMM_SKINNY_ITEMS)
      return launch(ctx, args, shape, kernel, "kf_gemm_skinny", KF_GEMM_SKINNY_ITEMS, 1,
                    ceil_div(args->n, KF_GEMM_SKINNY_COLUMNS));
  }
  /* 128 x 128 tiles unless they would leave compute units without a group (then 64 x 64). A CPU
   * device always takes 128 x 128: it has few compute units, and each tile shape costs PoCL seconds
   * to compile on first use. */
  const int64_t large_tiles = ceil_div(shape.m, KF_GEMM_LARGE_TILE) *
                              ceil_div(args->n, swiglu ? KF_GEMM_LARGE_TILE / 2 : KF_GEMM_LARGE_TILE) * shape.batch;
  if (ctx->max_group_size >= KF_GEMM_LARGE_ITEMS &&
      (ctx->gemm_cpu_device || large_tiles >= (int64_t)ctx->compute_units)) {
    status = get_kernel(ctx, KF_GEMM_LARGE_SIDE, fixed_dtype, &kernel, &max_group);
    if (status != KF_OK) return status;
    large = max_group >= KF_GEMM_LARGE_ITEMS;
  }
  if (!large) {
    status = get_kernel(ctx, KF_GEMM_SMALL_SIDE, fixed_dtype, &kernel, &max_group);
    if (status != KF_OK) return status;
    if (max_group < KF_GEMM_SMALL_ITEMS)
      return kf_fail(KF_ERROR_DEVICE_FAILURE, "kf_gemm needs work-groups of %d items; the device allows %zu",
                     KF_GEMM_SMALL_ITEMS, max_group);
  }
  const int64_t tile = large ? KF_GEMM_LARGE_TILE : KF_GEMM_SMALL_TILE;
  return launch(ctx, args, shape, kernel, "kf_gemm", large ? KF_GEMM_LARGE_ITEMS : KF_GEMM_SMALL_ITEMS,
                ceil_div(shape.m, tile), ceil_div(args->n, swiglu ? tile / 2 : tile));
}

/* Sets kf_gemm's (or kf_gemm_skinny's: the same parameters) arguments and launches it over
 * tiles_m x tiles_n x batch tiles, work-groups of `items`. */
static kf_status launch(kf_backend_context *ctx, const kf_gemm_args *args, gemm_shape shape, cl_kernel kernel,
                        const char *name, size_t items, int64_t tiles_m, int64_t tiles_n) {
  const int swiglu = args->activation == KF_GEMM_SWIGLU;
  kf_status status;
  const int64_t tiles = tiles_m * tiles_n * shape.batch;
  if (tiles > INT32_MAX)
    return kf_fail(KF_ERROR_UNSUPPORTED, "GEMM of %lld tiles (batch %lld, m %lld, n %lld) exceeds the kernel's 2^31",
                   (long long)tiles, (long long)shape.batch, (long long)shape.m, (long long)args->n);

  const kf_tensor_arg *bias_up = swiglu ? &args->bias_up : &args->bias;
  const cl_mem mems[7] = {
      args->a.buffer->mem,
      args->b.buffer->mem,
      swiglu ? args->b_up.buffer->mem : args->b.buffer->mem,
      kf_ocl_operand_mem(ctx, &args->bias),
      kf_ocl_operand_mem(ctx, bias_up),
      args->residual.buffer ? args->residual.buffer->mem : ctx->placeholder,
      args->c.buffer->mem,
  };
  const cl_long4 a_layout = layout_of(&args->a, 0);
  const cl_long4 b_layout = layout_of(&args->b, swiglu ? args->b_up.offset : 0);
  const cl_long4 c_layout = layout_of(&args->c, 0);
  const cl_long4 residual_layout = layout_of(&args->residual, 0);
  const cl_long4 bias_layout = {{args->bias.offset, swiglu ? args->bias_up.offset : 0, args->bias.col_stride, 0}};
  const cl_int dims[6] = {(cl_int)shape.m, (cl_int)args->n, (cl_int)args->k,
                          (cl_int)tiles_m, (cl_int)tiles_n, (cl_int)tiles};
  const cl_float scalars[2] = {args->alpha, args->beta};
  const cl_uint dtypes[4] = {(cl_uint)args->a.dtype, (cl_uint)args->c.dtype,
                             args->bias.buffer ? (cl_uint)args->bias.dtype : 0u,
                             args->residual.buffer ? (cl_uint)args->residual.dtype : 0u};
  const cl_int options[6] = {args->trans_a != 0, args->trans_b != 0, swiglu, args->bias.buffer != NULL,
                             args->beta != 0.0f, args->residual.buffer != NULL};

  enum { kArgCount = 7 + 5 + 6 + 2 + 4 + 6 };
  size_t sizes[kArgCount];
  const void *values[kArgCount];
  int arg = 0;
  for (int i = 0; i < 7; ++i, ++arg) sizes[arg] = sizeof(cl_mem), values[arg] = &mems[i];
  const cl_long4 *layouts[5] = {&a_layout, &b_layout, &c_layout, &residual_layout, &bias_layout};
  for (int i = 0; i < 5; ++i, ++arg) sizes[arg] = sizeof(cl_long4), values[arg] = layouts[i];
  for (int i = 0; i < 6; ++i, ++arg) sizes[arg] = sizeof(cl_int), values[arg] = &dims[i];
  for (int i = 0; i < 2; ++i, ++arg) sizes[arg] = sizeof(cl_float), values[arg] = &scalars[i];
  for (int i = 0; i < 4; ++i, ++arg) sizes[arg] = sizeof(cl_uint), values[arg] = &dtypes[i];
  for (int i = 0; i < 6; ++i, ++arg) sizes[arg] = sizeof(cl_int), values[arg] = &options[i];
  status = kf_ocl_set_args(kernel, name, kArgCount, sizes, values);
  if (status != KF_OK) return status;

  const size_t groups = (size_t)(tiles < KF_GEMM_MAX_GROUPS ? tiles : KF_GEMM_MAX_GROUPS);
  const size_t global = groups * items;
  return kf_ocl_enqueue(ctx, kernel, name, 1, &global, &items);
}

/* ---- entries ---- */

size_t kf_ocl_gemm_workspace(kf_backend_context *ctx, const kf_gemm_args *args) {
  const gemm_shape shape = effective_shape(args);
  if (shape.batch != 1 || !clblast_applies(ctx, args, shape)) return 0;
  return clblast_temp_bytes(ctx, args, shape);
}

kf_status kf_ocl_gemm(kf_backend_context *ctx, const kf_gemm_args *args) {
  const gemm_shape shape = effective_shape(args);
  if (clblast_applies(ctx, args, shape)) {
    kf_status status = open_timer(ctx);
    if (status != KF_OK) return status;
    if (clblast_gemm(ctx, args, shape) == KF_CLBLAST_SUCCESS) return KF_OK;
  }
  return kernel_gemm(ctx, args, shape);
}

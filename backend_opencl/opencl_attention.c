/* opencl_attention.c — flash attention on OpenCL: kernels_src/opencl/attention.cl, one program per
 * head_dim (dtypes chosen at run time, or fixed on GPUs as the other ops do), a block kernel of 64 rows
 * for prefill and of 16 for decode, and for decode a split of the keys across work-groups whose
 * partial results (in the workspace) kf_attention_merge combines. */
#include <stdio.h>
#include <string.h>

#include "backend_opencl/opencl_internal.h"

/* The kernel's flags (attention.cl). */
#define KF_ATT_HAS_LSE 1u
#define KF_ATT_SPLIT 2u
#define KF_ATT_ALIGNED 4u
#define KF_ATT_CAUSAL 8u

/* Rows (queries x q heads of one kv head) per work-group of kf_attention_rows64 / _rows16. */
#define KF_ATT_ROWS_PREFILL 64
#define KF_ATT_ROWS_DECODE 16

/* Keys per tile: 64 up to head_dim 64, else 32, so the f32 K/V tile and P^T stay within 48 KiB of
 * local memory up to head_dim 256 (attention.cl sums it up). */
#define KF_ATT_KV_TILE_SMALL_DIM 64
#define KF_ATT_KV_TILE 32

/* Split-KV. Only for decode-sized q_len (the workspace is splits x rows x head_dim floats, so it never
 * grows with q_len x kv_len); a split keeps at least KF_ATT_MIN_SPLIT_KEYS keys so its partial costs
 * little beside its reads; enough splits to give every compute unit KF_ATT_GROUPS_PER_CU work-groups
 * (several resident per unit hide the tile loads of each other). */
#define KF_ATT_SPLIT_MAX_Q_LEN 16
#define KF_ATT_MIN_SPLIT_KEYS 256
#define KF_ATT_GROUPS_PER_CU 4
#define KF_ATT_MAX_SPLITS 256

/* Work-items per group of the merge kernel (one per 8 output elements). */
#define KF_ATT_MERGE_GROUP 64

/* Kernel slots in the program entry. */
enum { KERNEL_ROWS64 = 0, KERNEL_ROWS16 = 1, KERNEL_MERGE = 2 };

typedef struct attention_plan {
  int rows_per_block;
  int kv_tile;
  int64_t row_blocks;     /* per (batch, kv head) */
  int64_t splits;
  int64_t keys_per_split; /* a multiple of kv_tile */
  int64_t rows_total;     /* batch x q_heads x q_len: rows of the partials */
  size_t workspace_bytes;
} attention_plan;

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

static void make_plan(kf_backend_context *ctx, const kf_attention_args *args, attention_plan *plan) {
  memset(plan, 0, sizeof *plan);
  const int64_t rows_of_head = args->q_len * (args->q_heads / args->kv_heads);
  plan->rows_per_block = rows_of_head <= KF_ATT_ROWS_DECODE ? KF_ATT_ROWS_DECODE : KF_ATT_ROWS_PREFILL;
  plan->kv_tile = args->head_dim <= 64 ? KF_ATT_KV_TILE_SMALL_DIM : KF_ATT_KV_TILE;
  plan->row_blocks = ceil_div(rows_of_head, plan->rows_per_block);
  plan->rows_total = args->batch * args->q_heads * args->q_len;
  plan->splits = 1;
  if (args->q_len <= KF_ATT_SPLIT_MAX_Q_LEN) {
    cl_uint compute_units = 1;
    kf_cl.clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof compute_units, &compute_units, NULL);
    const int64_t target = (int64_t)(compute_units ? compute_units : 1) * KF_ATT_GROUPS_PER_CU;
    const int64_t groups = args->batch * args->kv_heads * plan->row_blocks;
    if (groups < target) {
      int64_t splits = ceil_div(target, groups);
      const int64_t by_length = ceil_div(args->kv_len, KF_ATT_MIN_SPLIT_KEYS);
      if (splits > by_length) splits = by_length;
      if (splits > KF_ATT_MAX_SPLITS) splits = KF_ATT_MAX_SPLITS;
      plan->splits = splits > 1 ? splits : 1;
    }
  }
  plan->keys_per_split = ceil_div(ceil_div(args->kv_len, plan->splits), plan->kv_tile) * plan->kv_tile;
  plan->splits = ceil_div(args->kv_len, plan->keys_per_split);
  /* Partials: normalized O [splits, rows_total, head_dim] then log2-sum-exp [splits, rows_total]. */
  if (plan->splits > 1)
    plan->workspace_bytes = (size_t)plan->splits * (size_t)plan->rows_total * (size_t)(args->head_dim + 1) * sizeof(float);
}

size_t kf_ocl_attention_workspace(kf_backend_context *ctx, const kf_attention_args *args) {
  attention_plan plan;
  make_plan(ctx, args, &plan);
  return plan.workspace_bytes;
}

static kf_status get_program(kf_backend_context *ctx, const kf_attention_args *args, int kv_tile,
                             kf_ocl_program **out) {
  const int fixed_dtype = ctx->specialize_dtypes ? (int)args->q.dtype : -1;
  /* kv_tile follows from head_dim, so head_dim alone tells the variants apart */
  char options[96];
  snprintf(options, sizeof options, "-DKF_HEAD_DIM=%d -DKF_ATT_KV_TILE=%d", (int)args->head_dim, kv_tile);
  return kf_ocl_op_program_variant(ctx, KF_OCL_OP_ATTENTION, fixed_dtype, (uint32_t)args->head_dim, options, out);
}

/* The kernel and the work-group size it was compiled for (reqd_work_group_size in attention.cl). */
static kf_status get_kernel(kf_backend_context *ctx, kf_ocl_program *program, int slot, const char *name,
                            cl_kernel *out_kernel, size_t *out_group) {
  size_t max_group;
  kf_status status = kf_ocl_get_kernel(ctx, program, slot, name, out_kernel, &max_group);
  if (status != KF_OK) return status;
  size_t required[3] = {0, 0, 0};
  cl_int err = kf_cl.clGetKernelWorkGroupInfo(*out_kernel, ctx->device, CL_KERNEL_COMPILE_WORK_GROUP_SIZE,
                                              sizeof required, required, NULL);
  if (err != CL_SUCCESS || required[0] == 0)
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "clGetKernelWorkGroupInfo(%s, COMPILE_WORK_GROUP_SIZE) failed: %s", name,
                   kf_cl_error_name(err));
  if (required[0] > max_group)
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "%s needs work-groups of %zu work-items; this device runs at most %zu",
                   name, required[0], max_group);
  *out_group = required[0];
  return KF_OK;
}

static cl_long4 layout_of(const kf_seq_arg *arg) {
  cl_long4 layout;
  layout.s[0] = arg->offset;
  layout.s[1] = arg->batch_stride;
  layout.s[2] = arg->seq_stride;
  layout.s[3] = arg->head_stride;
  return layout;
}

/* Every row start a multiple of 8 elements (buffers themselves are 256-byte aligned). */
static int rows_aligned(const kf_seq_arg *arg) {
  return arg->offset % 8 == 0 && arg->batch_stride % 8 == 0 && arg->seq_stride % 8 == 0 && arg->head_stride % 8 == 0;
}

kf_status kf_ocl_attention(kf_backend_context *ctx, const kf_attention_args *args) {
  attention_plan plan;
  make_plan(ctx, args, &plan);
  if (plan.workspace_bytes > 0 && (args->workspace == NULL || args->workspace_bytes < plan.workspace_bytes))
    return kf_fail(KF_ERROR_INTERNAL, "attention workspace of %zu bytes given; the plan needs %zu",
                   args->workspace_bytes, plan.workspace_bytes);

  kf_ocl_program *program;
  kf_status status = get_program(ctx, args, plan.kv_tile, &program);
  if (status != KF_OK) return status;
  const int decode = plan.rows_per_block == KF_ATT_ROWS_DECODE;
  const char *name = decode ? "kf_attention_rows16" : "kf_attention_rows64";
  cl_kernel kernel;
  size_t group;
  status = get_kernel(ctx, program, decode ? KERNEL_ROWS16 : KERNEL_ROWS64, name, &kernel, &group);
  if (status != KF_OK) return status;

  const int split = plan.splits > 1;
  const int has_lse = args->lse.buffer != NULL;
  const cl_uint flags = (has_lse ? KF_ATT_HAS_LSE : 0u) | (split ? KF_ATT_SPLIT : 0u) | (args->causal ? KF_ATT_CAUSAL : 0u) |
                        (rows_aligned(&args->q) && rows_aligned(&args->k) && rows_aligned(&args->v) &&
                                 rows_aligned(&args->out)
                             ? KF_ATT_ALIGNED
                             : 0u);
  const cl_uint dtype = (cl_uint)args->q.dtype;
  /* A window reaching past every key is no window; clamping keeps position - window in range. */
  const cl_long window_left = args->window_left < 0 ? -1
                              : args->window_left > args->q_len + args->kv_len ? args->q_len + args->kv_len
                                                                              : args->window_left;
  const cl_float scale_log2 = args->scale * 1.4426950408889634f; /* exp(x) = exp2(x log2 e) */
  const cl_int keys_per_split = (cl_int)plan.keys_per_split;
  cl_int4 sizes;
  sizes.s[0] = (cl_int)args->q_len;
  sizes.s[1] = (cl_int)args->kv_len;
  sizes.s[2] = args->q_heads;
  sizes.s[3] = args->kv_heads;
  const cl_long4 q_layout = layout_of(&args->q), k_layout = layout_of(&args->k), v_layout = layout_of(&args->v),
                 out_layout = layout_of(&args->out), lse_layout = layout_of(&args->lse);
  const cl_mem lse_mem = has_lse ? args->lse.buffer->mem : ctx->placeholder;
  const cl_mem partial_mem = split ? args->workspace->mem : ctx->placeholder;

  const size_t sizes_of[17] = {sizeof(cl_mem),   sizeof(cl_mem),   sizeof(cl_mem),   sizeof(cl_mem),
                               sizeof(cl_mem),   sizeof(cl_mem),   sizeof(cl_long4), sizeof(cl_long4),
                               sizeof(cl_long4), sizeof(cl_long4), sizeof(cl_long4), sizeof(cl_int4),
                               sizeof(cl_long),  sizeof(cl_float), sizeof(cl_uint),  sizeof(cl_uint),
                               sizeof(cl_int)};
  const void *const values[17] = {&args->q.buffer->mem, &args->k.buffer->mem, &args->v.buffer->mem,
                                  &args->out.buffer->mem, &lse_mem, &partial_mem, &q_layout, &k_layout, &v_layout,
                                  &out_layout, &lse_layout, &sizes, &window_left, &scale_log2, &dtype, &flags,
                                  &keys_per_split};
  status = kf_ocl_set_args(kernel, name, 17, sizes_of, values);
  if (status != KF_OK) return status;
  const size_t global[3] = {group * (size_t)plan.row_blocks, (size_t)(args->batch * args->kv_heads),
                            (size_t)plan.splits};
  const size_t local[3] = {group, 1, 1};
  status = kf_ocl_enqueue(ctx, kernel, name, 3, global, local);
  if (status != KF_OK || !split) return status;

  cl_kernel merge;
  size_t max_group;
  status = kf_ocl_get_kernel(ctx, program, KERNEL_MERGE, "kf_attention_merge", &merge, &max_group);
  if (status != KF_OK) return status;
  const cl_long rows_total = plan.rows_total;
  const cl_int splits = (cl_int)plan.splits;
  const size_t merge_sizes[10] = {sizeof(cl_mem),   sizeof(cl_mem),  sizeof(cl_mem),  sizeof(cl_long4),
                                  sizeof(cl_long4), sizeof(cl_int4), sizeof(cl_long), sizeof(cl_int),
                                  sizeof(cl_uint),  sizeof(cl_uint)};
  const void *const merge_values[10] = {&partial_mem, &args->out.buffer->mem, &lse_mem, &out_layout, &lse_layout,
                                        &sizes,       &rows_total,           &splits,   &dtype,      &flags};
  status = kf_ocl_set_args(merge, "kf_attention_merge", 10, merge_sizes, merge_values);
  if (status != KF_OK) return status;
  const size_t merge_group = KF_ATT_MERGE_GROUP < max_group ? KF_ATT_MERGE_GROUP : max_group;
  const size_t items = (size_t)plan.rows_total * (size_t)(args->head_dim / 8);
  const size_t merge_global = (items + merge_group - 1) / merge_group * merge_group;
  return kf_ocl_enqueue(ctx, merge, "kf_attention_merge", 1, &merge_global, &merge_group);
}

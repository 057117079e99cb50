/* opencl_internal.h — the OpenCL backend's context, buffer and program-cache structures, shared by its
 * files (opencl_backend.c: probe/context/memory/timer; opencl_program.c: building and caching
 * programs; opencl_launch.c: what the other ops share; opencl_<op>.c: one op each). */
#ifndef KF_BACKEND_OPENCL_INTERNAL_H_
#define KF_BACKEND_OPENCL_INTERNAL_H_

#include <stdint.h>

#include "backend_opencl/cl_runtime.h"
#include "core/backend.h"

struct kf_buffer {
  cl_mem mem;
  size_t bytes;
};

/* One compiled program and the kernels taken from it, created on first use. */
#define KF_OCL_MAX_KERNELS 16

typedef struct kf_ocl_program {
  uint32_t key;      /* what the -D options encode (op-specific) */
  cl_program program;
  cl_kernel kernels[KF_OCL_MAX_KERNELS];
  size_t kernel_max_group[KF_OCL_MAX_KERNELS]; /* CL_KERNEL_WORK_GROUP_SIZE, 0 until created */
  struct kf_ocl_program *next;
} kf_ocl_program;

struct kf_backend_context {
  cl_platform_id platform;
  cl_device_id device;
  cl_context context;
  cl_command_queue queue;
  cl_mem placeholder;        /* bound to the kernel arguments of absent operands; never accessed */

  size_t max_group_size;     /* min(device limit, first dimension limit) */
  int subgroups;             /* the device has sub_group_reduce_add */
  const char *language_std;  /* "-cl-std=CL3.0 " etc. when subgroups need it, else "" */
  int nvidia_ptx;            /* NVIDIA platform: kernels may use inline PTX (warp shuffles) */
  int binary_cache;          /* keep program binaries on disk (not on PoCL, which caches its own) */
  int specialize_dtypes;     /* GPU: build a constant-dtype program when all operands share one dtype */
  char cache_identity[1024]; /* platform name+version, device name, driver version: part of the cache key */

  kf_ocl_program *programs;  /* per-context program cache (a short list: one entry per dtype variant) */

  /* Filled by the first GEMM (opencl_gemm.c): its tile choice and CLBlast's f16 need them. */
  int gemm_device_known;
  cl_uint compute_units;
  int gemm_cpu_device;       /* CL_DEVICE_TYPE_CPU */
  int fp16;                  /* cl_khr_fp16 */

  /* kf_timer_begin..end: on an in-order queue the first command starts first and the last ends last,
   * so only those two events are kept. */
  int timer_active;
  cl_event timer_first;
  cl_event timer_last;
};

/* The event slot to pass to an enqueue call: NULL unless a timer is running (no cost then). */
static inline cl_event *kf_ocl_timer_event_slot(kf_backend_context *ctx, cl_event *slot) {
  *slot = NULL;
  return ctx->timer_active ? slot : NULL;
}
/* Records the event of an enqueued command for the running timer (takes ownership). */
void kf_ocl_timer_record(kf_backend_context *ctx, cl_event event);

/* Builds (or loads from the on-disk binary cache) the program of `source_name` in the embedded table,
 * with kf_params.h and then `prelude_name` (NULL: none) prepended and `options` as build options. On failure returns
 * KF_ERROR_DEVICE_FAILURE with the first lines of the build log in kf_last_error. */
kf_status kf_ocl_build_program(kf_backend_context *ctx, const char *prelude_name, const char *source_name,
                               const char *options, cl_program *out_program);

/* The program with `key` from the context's cache, or NULL. */
kf_ocl_program *kf_ocl_find_program(kf_backend_context *ctx, uint32_t key);
/* Builds a program and adds it to the context's cache. */
kf_status kf_ocl_add_program(kf_backend_context *ctx, uint32_t key, const char *prelude_name, const char *source_name,
                             const char *options, kf_ocl_program **out_entry);
/* Kernel `index` of the entry, created on first use under `name`. */
kf_status kf_ocl_get_kernel(kf_backend_context *ctx, kf_ocl_program *entry, int index, const char *name,
                            cl_kernel *out_kernel, size_t *out_max_group);
void kf_ocl_release_programs(kf_backend_context *ctx);

/* ---- shared by the ops built on kernels_src/opencl/common.cl (opencl_launch.c) ---- */

/* Programs that include common.cl; the value is part of the program-cache key. */
typedef enum kf_ocl_op {
  KF_OCL_OP_LAYERNORM = 1,
  KF_OCL_OP_ROPE = 2,
  KF_OCL_OP_GLU = 3,
  KF_OCL_OP_SOFTMAX = 4,
  KF_OCL_OP_GEMM = 5,
  KF_OCL_OP_ATTENTION = 6,
} kf_ocl_op;

/* Elements per access of the 8-wide kernels (16 bytes of f16/bf16). */
#define KF_OCL_VEC 8

/* The program of `op`: dtypes chosen at run time (fixed_dtype -1) or fixed to one KF_DT_*. */
kf_status kf_ocl_op_program(kf_backend_context *ctx, kf_ocl_op op, int fixed_dtype, kf_ocl_program **out);
/* The same for an op built in variants (GEMM tile shapes, attention head_dims): `variant` (< 2^15) tells
 * the cached programs apart, variant_options are the -D options that make it. */
kf_status kf_ocl_op_program_variant(kf_backend_context *ctx, kf_ocl_op op, int fixed_dtype, uint32_t variant,
                                    const char *variant_options, kf_ocl_program **out);
/* The dtype every present operand has, when the context specializes on it; else -1. */
int kf_ocl_uniform_dtype(const kf_backend_context *ctx, const kf_tensor_arg *const *operands, int count);
/* The operand's cl_mem, or the context's placeholder for an absent operand. */
cl_mem kf_ocl_operand_mem(kf_backend_context *ctx, const kf_tensor_arg *arg);
/* Row starts of a [rows, ...] operand are multiples of KF_OCL_VEC elements (absent: true). */
int kf_ocl_rows_aligned(const kf_tensor_arg *arg, int64_t rows);
/* Sets kernel arguments 0..count-1 from (size, pointer) pairs; a NULL pointer is a local buffer. */
kf_status kf_ocl_set_args(cl_kernel kernel, const char *kernel_name, int count, const size_t *sizes,
                          const void *const *values);
/* Enqueues the kernel (recording it for a running timer). */
kf_status kf_ocl_enqueue(kf_backend_context *ctx, cl_kernel kernel, const char *kernel_name, cl_uint dims,
                         const size_t *global, const size_t *local);

/* How a row op (layernorm, softmax) covers rows of `vecs` vectors: the kernel (its name is
 * "<prefix>_w<width>_r<chunks>" or "<prefix>_w<width>_stream"), work-items per row, group size and
 * group count. */
typedef struct kf_ocl_row_plan {
  cl_kernel kernel;
  const char *kernel_name;
  size_t row_threads;
  size_t group;
  size_t groups;
} kf_ocl_row_plan;
kf_status kf_ocl_plan_rows(kf_backend_context *ctx, kf_ocl_program *program, const char *prefix, int width,
                           int64_t rows, int64_t vecs, kf_ocl_row_plan *out);

kf_status kf_ocl_rmsnorm(kf_backend_context *ctx, const kf_norm_args *args);
kf_status kf_ocl_layernorm(kf_backend_context *ctx, const kf_norm_args *args);
kf_status kf_ocl_rope(kf_backend_context *ctx, const kf_rope_args *args);
kf_status kf_ocl_glu(kf_backend_context *ctx, const kf_glu_args *args);
kf_status kf_ocl_softmax(kf_backend_context *ctx, const kf_softmax_args *args);
/* GEMM (opencl_gemm.c): CLBlast where it applies, else kernels_src/opencl/gemm.cl. */
kf_status kf_ocl_gemm(kf_backend_context *ctx, const kf_gemm_args *args);
size_t kf_ocl_gemm_workspace(kf_backend_context *ctx, const kf_gemm_args *args);
kf_status kf_ocl_attention(kf_backend_context *ctx, const kf_attention_args *args);
/* Bytes of split-KV partials kf_ocl_attention will need for args (0: none). */
size_t kf_ocl_attention_workspace(kf_backend_context *ctx, const kf_attention_args *args);

struct kf_norm_params;
/* Fills the RMSNorm/LayerNorm parameter block for `rows` rows of args (opencl_launch.c). */
void kf_ocl_norm_params(const kf_norm_args *args, int64_t rows, struct kf_norm_params *params);

#endif /* KF_BACKEND_OPENCL_INTERNAL_H_ */

/* opencl_internal.h — the OpenCL backend's context, buffer and program-cache structures, shared by its
 * files (opencl_backend.c: probe/context/memory/timer; opencl_program.c: building and caching
 * programs; opencl_rmsnorm.c: the op). */
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
#define KF_OCL_MAX_KERNELS 8

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
  char cache_identity[1024]; /* platform name+version, device name, driver version: part of the cache key */

  kf_ocl_program *programs;  /* per-context program cache (a short list: one entry per dtype variant) */

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
 * with kf_params.h prepended and `options` as build options. On failure returns
 * KF_ERROR_DEVICE_FAILURE with the first lines of the build log in kf_last_error. */
kf_status kf_ocl_build_program(kf_backend_context *ctx, const char *source_name, const char *options,
                               cl_program *out_program);

/* The program with `key` from the context's cache, or NULL. */
kf_ocl_program *kf_ocl_find_program(kf_backend_context *ctx, uint32_t key);
/* Builds a program and adds it to the context's cache. */
kf_status kf_ocl_add_program(kf_backend_context *ctx, uint32_t key, const char *source_name, const char *options,
                             kf_ocl_program **out_entry);
/* Kernel `index` of the entry, created on first use under `name`. */
kf_status kf_ocl_get_kernel(kf_backend_context *ctx, kf_ocl_program *entry, int index, const char *name,
                            cl_kernel *out_kernel, size_t *out_max_group);
void kf_ocl_release_programs(kf_backend_context *ctx);

kf_status kf_ocl_rmsnorm(kf_backend_context *ctx, const kf_norm_args *args);

#endif /* KF_BACKEND_OPENCL_INTERNAL_H_ */

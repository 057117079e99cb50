/* cuda_backend.c — the CUDA backend: probe, contexts, buffers, timing and the one launch helper,
 * over the CUDA driver API opened with dlopen (no cudart, no link-time dependency).
 *
 * Each context is the device's primary context (shared with any other CUDA user in the process, so
 * memory can be exchanged with them) plus one non-blocking stream, which is the context's in-order
 * queue. Every entry pushes the context on the calling thread and pops it before returning, so the
 * caller's own current context is left as it was and any thread may use the context.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cuda/cuda_internal.h"
#include "core/dynlib.h"
#include "kernels_src/common/kf_embed.h"

extern const kf_embedded_file kf_cuda_kernels[];
extern const size_t kf_cuda_kernels_count;

/* The fatbins every context loads (kernels_src/cuda/BUILD), indexed by kf_cuda_module. */
static const char *const module_files[KF_CUDA_MODULE_COUNT] = {
    [KF_CUDA_MODULE_NORM] = "rmsnorm.fatbin",
    [KF_CUDA_MODULE_ROPE] = "rope.fatbin",
    [KF_CUDA_MODULE_GLU] = "glu.fatbin",
    [KF_CUDA_MODULE_SOFTMAX] = "softmax.fatbin",
    [KF_CUDA_MODULE_GEMM] = "gemm.fatbin",
    [KF_CUDA_MODULE_GEMM_SM90] = "gemm_sm90.fatbin",
    [KF_CUDA_MODULE_GEMM_SM90_NARROW] = "gemm_sm90_narrow.fatbin",
    [KF_CUDA_MODULE_GEMM_SM90_SPLIT] = "gemm_sm90_split.fatbin",
    [KF_CUDA_MODULE_GEMM_SM90_N96] = "gemm_sm90_n96.fatbin",
    [KF_CUDA_MODULE_GEMM_SM90_N160] = "gemm_sm90_n160.fatbin",
    [KF_CUDA_MODULE_GEMM_SM90_N192] = "gemm_sm90_n192.fatbin",
    [KF_CUDA_MODULE_ATTENTION] = "attention.fatbin",
};
/* The oldest architecture the fatbin has machine code or PTX for. */
#define KF_CUDA_MIN_CC_MAJOR 8

kf_cuda_api kf_cu;
static void *g_library;

const char *kf_cuda_error_text(CUresult result) {
  static _Thread_local char text[160];
  const char *name = NULL, *description = NULL;
  if (kf_cu.GetErrorName == NULL || kf_cu.GetErrorName(result, &name) != CUDA_SUCCESS) name = NULL;
  if (kf_cu.GetErrorString == NULL || kf_cu.GetErrorString(result, &description) != CUDA_SUCCESS)
    description = NULL;
  if (name == NULL)
    snprintf(text, sizeof text, "CUresult %d", (int)result);
  else if (description == NULL)
    snprintf(text, sizeof text, "%s", name);
  else
    snprintf(text, sizeof text, "%s (%s)", name, description);
  return text;
}

static const kf_embedded_file *module_image(kf_cuda_module module) {
  for (size_t i = 0; i < kf_cuda_kernels_count && kf_cuda_kernels[i].name != NULL; ++i)
    if (strcmp(kf_cuda_kernels[i].name, module_files[module]) == 0) return &kf_cuda_kernels[i];
  return NULL;
}

/* Every module is embedded and non-empty (nvcc ran at build time). */
static int kernels_embedded(void) {
  for (int m = 0; m < KF_CUDA_MODULE_COUNT; ++m) {
    const kf_embedded_file *image = module_image((kf_cuda_module)m);
    if (image == NULL || image->size == 0) return 0;
  }
  return 1;
}

static void unload_library(void) {
  kf_dl_close(g_library);
  g_library = NULL;
  memset(&kf_cu, 0, sizeof kf_cu);
}

static int device_attribute(CUdevice device, int attribute) {
  int value = 0;
  if (kf_cu.DeviceGetAttribute(&value, attribute, device) != CUDA_SUCCESS) return 0;
  return value;
}

/* Fills one device entry; returns 0 when the driver fails to describe the device. */
static int describe_device(int ordinal, kf_backend_device *out, const char *driver_version) {
  CUdevice device;
  if (kf_cu.DeviceGet(&device, ordinal) != CUDA_SUCCESS) return 0;
  kf_device_info *info = &out->info;
  memset(out, 0, sizeof *out);
  out->ordinal = ordinal;
  info->struct_size = sizeof *info;
  info->backend = KF_BACKEND_CUDA;
  info->backend_index = ordinal;
  if (kf_cu.DeviceGetName(info->name, (int)sizeof info->name, device) != CUDA_SUCCESS)
    snprintf(info->name, sizeof info->name, "CUDA device %d", ordinal);
  snprintf(info->vendor, sizeof info->vendor, "NVIDIA");
  snprintf(info->driver_version, sizeof info->driver_version, "%s", driver_version);
  snprintf(info->api_version, sizeof info->api_version, "CUDA %s", driver_version);
  info->type = device_attribute(device, CU_DEVICE_ATTRIBUTE_INTEGRATED) ? KF_DEVICE_TYPE_INTEGRATED_GPU
                                                                          : KF_DEVICE_TYPE_DISCRETE_GPU;
  size_t memory = 0;
  if (kf_cu.DeviceTotalMem(&memory, device) == CUDA_SUCCESS) info->memory_bytes = memory;

  const int major = device_attribute(device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
  const int minor = device_attribute(device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
  const int sms = device_attribute(device, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
  const int l2_bytes = device_attribute(device, CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE);
  const int smem_bytes = device_attribute(device, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
  const int cc = major * 10 + minor;
  info->compute_units = (uint32_t)sms;
  info->caps = KF_CAP_F16 | KF_CAP_SUBGROUPS | KF_CAP_INT64;
  if (cc >= 80) info->caps |= KF_CAP_BF16 | KF_CAP_TENSOR_CORES;
  if (cc >= 89) info->caps |= KF_CAP_FP8;
  if (major == 9) info->caps |= KF_CAP_HOPPER;
  snprintf(info->caps_text, sizeof info->caps_text, "sm_%d, %d SMs, %d MiB L2, %d KiB smem/block%s", cc, sms,
           l2_bytes >> 20, smem_bytes >> 10,
           major < KF_CUDA_MIN_CC_MAJOR ? " (unsupported: kfuse needs sm_80+)" : "");

  const int domain = device_attribute(device, CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID);
  const int bus = device_attribute(device, CU_DEVICE_ATTRIBUTE_PCI_BUS_ID);
  const int slot = device_attribute(device, CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID);
  snprintf(info->pci_bus_id, sizeof info->pci_bus_id, "%04x:%02x:%02x.0", (unsigned)domain & 0xffffu,
           (unsigned)bus & 0xffu, (unsigned)slot & 0xffu);
  CUuuid uuid;
  if (kf_cu.DeviceGetUuid(&uuid, device) == CUDA_SUCCESS) {
    memcpy(info->uuid, uuid.bytes, sizeof info->uuid);
    info->has_uuid = 1;
  }
  return 1;
}

static void cuda_probe(kf_probe_result *out) {
  static const char *const library_names[] = {"libcuda.so.1", NULL};
  char reason[256];
  g_library = kf_dl_open(library_names, reason, sizeof reason);
  if (g_library == NULL) {
    snprintf(out->reason, sizeof out->reason, "libcuda.so.1 not found (no NVIDIA driver)");
    return;
  }
  const kf_dl_symbol symbols[] = {
#define KF_CUDA_SYMBOL_ENTRY_(type, field, symbol) {symbol, (void **)&kf_cu.field, 0},
      KF_CUDA_SYMBOLS(KF_CUDA_SYMBOL_ENTRY_)
#undef KF_CUDA_SYMBOL_ENTRY_
  };
  if (!kf_dl_resolve(g_library, "libcuda.so.1", symbols, sizeof symbols / sizeof symbols[0], out->reason,
                     sizeof out->reason)) {
    unload_library();
    return;
  }
  CUresult result = kf_cu.Init(0);
  if (result != CUDA_SUCCESS) {
    snprintf(out->reason, sizeof out->reason, "cuInit failed: %s", kf_cuda_error_text(result));
    unload_library();
    return;
  }
  int version = 0;
  kf_cu.DriverGetVersion(&version);
  char driver_version[32];
  snprintf(driver_version, sizeof driver_version, "%d.%d", version / 1000, (version % 1000) / 10);
  snprintf(out->runtime, sizeof out->runtime, "libcuda.so.1 (driver %s)", driver_version);

  int count = 0;
  result = kf_cu.DeviceGetCount(&count);
  if (result != CUDA_SUCCESS) {
    snprintf(out->reason, sizeof out->reason, "cuDeviceGetCount failed: %s", kf_cuda_error_text(result));
    return;
  }
  if (count > KF_MAX_BACKEND_DEVICES) count = KF_MAX_BACKEND_DEVICES;
  for (int i = 0; i < count; ++i)
    if (describe_device(i, &out->devices[out->device_count], driver_version)) ++out->device_count;

  if (!kernels_embedded()) {
    snprintf(out->reason, sizeof out->reason, "built without CUDA kernels (nvcc not found at build time)");
    return;
  }
  if (out->device_count == 0) {
    snprintf(out->reason, sizeof out->reason, "no CUDA devices");
    return;
  }
  out->available = 1;
}

kf_status kf_cuda_enter(kf_backend_context *ctx) {
  CUresult result = kf_cu.CtxPushCurrent(ctx->context);
  if (result != CUDA_SUCCESS)
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "cuCtxPushCurrent failed: %s", kf_cuda_error_text(result));
  return KF_OK;
}

void kf_cuda_leave(kf_backend_context *ctx) {
  CUcontext popped;
  (void)ctx;
  kf_cu.CtxPopCurrent(&popped);
}

/* Reports a failed driver call, or KF_OK. */
static kf_status check(CUresult result, const char *call) {
  if (result == CUDA_SUCCESS) return KF_OK;
  return kf_fail(KF_ERROR_DEVICE_FAILURE, "%s failed: %s", call, kf_cuda_error_text(result));
}

/* Releases what a (possibly partly) created context holds. The context is current. */
static void release_context_objects(kf_backend_context *ctx) {
  if (ctx->stream) kf_cu.StreamSynchronize(ctx->stream);
  if (ctx->timer_start) kf_cu.EventDestroy(ctx->timer_start);
  if (ctx->timer_end) kf_cu.EventDestroy(ctx->timer_end);
  if (ctx->gemm_sm90_flags) kf_cu.MemFree(ctx->gemm_sm90_flags);
  for (int m = 0; m < KF_CUDA_MODULE_COUNT; ++m)
    if (ctx->modules[m]) kf_cu.ModuleUnload(ctx->modules[m]);
  if (ctx->stream) kf_cu.StreamDestroy(ctx->stream);
}

static kf_status cuda_context_create(const kf_backend_device *device, uint32_t flags, kf_backend_context **out_ctx) {
  (void)flags;
  if (!kernels_embedded())
    return kf_fail(KF_ERROR_BACKEND_UNAVAILABLE, "built without CUDA kernels (nvcc not found at build time)");
  kf_backend_context *ctx = calloc(1, sizeof *ctx);
  if (ctx == NULL) return kf_fail(KF_ERROR_OUT_OF_MEMORY, "out of host memory");
  kf_status status = check(kf_cu.DeviceGet(&ctx->device, (int)device->ordinal), "cuDeviceGet");
  if (status != KF_OK) goto fail_free;
  const int major = device_attribute(ctx->device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
  if (major < KF_CUDA_MIN_CC_MAJOR) {
    status = kf_fail(KF_ERROR_UNSUPPORTED, "%s is sm_%d%d: kfuse CUDA kernels need sm_80 or newer", device->info.name,
                     major, device_attribute(ctx->device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR));
    goto fail_free;
  }
  ctx->sm_count = device_attribute(ctx->device, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
  status = check(kf_cu.DevicePrimaryCtxRetain(&ctx->context, ctx->device), "cuDevicePrimaryCtxRetain");
  if (status != KF_OK) goto fail_free;
  status = kf_cuda_enter(ctx);
  if (status != KF_OK) goto fail_release;
  status = check(kf_cu.StreamCreate(&ctx->stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  for (int m = 0; m < KF_CUDA_MODULE_COUNT && status == KF_OK; ++m)
    status = check(kf_cu.ModuleLoadData(&ctx->modules[m], module_image((kf_cuda_module)m)->data), "cuModuleLoadData");
  if (status == KF_OK) status = check(kf_cu.EventCreate(&ctx->timer_start, CU_EVENT_DEFAULT), "cuEventCreate");
  if (status == KF_OK) status = check(kf_cu.EventCreate(&ctx->timer_end, CU_EVENT_DEFAULT), "cuEventCreate");
  if (status != KF_OK) {
    release_context_objects(ctx);
    kf_cuda_leave(ctx);
    goto fail_release;
  }
  kf_cuda_leave(ctx);
  *out_ctx = ctx;
  return KF_OK;

fail_release:
  kf_cu.DevicePrimaryCtxRelease(ctx->device);
fail_free:
  free(ctx);
  return status;
}

static void cuda_context_destroy(kf_backend_context *ctx) {
  if (ctx == NULL) return;
  if (kf_cuda_enter(ctx) == KF_OK) {
    release_context_objects(ctx);
    kf_cuda_leave(ctx);
  }
  kf_cu.DevicePrimaryCtxRelease(ctx->device);
  free(ctx);
}

static kf_status cuda_buffer_alloc(kf_backend_context *ctx, size_t bytes, kf_buffer **out_buffer) {
  kf_buffer *buffer = calloc(1, sizeof *buffer);
  if (buffer == NULL) return kf_fail(KF_ERROR_OUT_OF_MEMORY, "out of host memory");
  kf_status status = kf_cuda_enter(ctx);
  if (status != KF_OK) {
    free(buffer);
    return status;
  }
  /* cuMemAlloc returns addresses aligned to at least 256 bytes. */
  CUresult result = kf_cu.MemAlloc(&buffer->address, bytes);
  kf_cuda_leave(ctx);
  if (result != CUDA_SUCCESS) {
    free(buffer);
    return kf_fail(result == CUDA_ERROR_OUT_OF_MEMORY ? KF_ERROR_OUT_OF_MEMORY : KF_ERROR_DEVICE_FAILURE,
                   "cuMemAlloc of %zu bytes failed: %s", bytes, kf_cuda_error_text(result));
  }
  buffer->bytes = bytes;
  *out_buffer = buffer;
  return KF_OK;
}

static void cuda_buffer_free(kf_backend_context *ctx, kf_buffer *buffer) {
  if (buffer == NULL) return;
  if (kf_cuda_enter(ctx) == KF_OK) {
    /* Queued work may still use the buffer. */
    kf_cu.StreamSynchronize(ctx->stream);
    kf_cu.MemFree(buffer->address);
    kf_cuda_leave(ctx);
  }
  free(buffer);
}

/* Host copies are queued on the stream, so they follow earlier queued work, then waited for. */
static kf_status cuda_buffer_write(kf_backend_context *ctx, kf_buffer *dst, size_t dst_offset, const void *src,
                                   size_t bytes) {
  kf_status status = kf_cuda_enter(ctx);
  if (status != KF_OK) return status;
  status = check(kf_cu.MemcpyHtoDAsync(dst->address + dst_offset, src, bytes, ctx->stream), "cuMemcpyHtoDAsync");
  if (status == KF_OK) status = check(kf_cu.StreamSynchronize(ctx->stream), "cuStreamSynchronize");
  kf_cuda_leave(ctx);
  return status;
}

static kf_status cuda_buffer_read(kf_backend_context *ctx, kf_buffer *src, size_t src_offset, void *dst,
                                  size_t bytes) {
  kf_status status = kf_cuda_enter(ctx);
  if (status != KF_OK) return status;
  status = check(kf_cu.MemcpyDtoHAsync(dst, src->address + src_offset, bytes, ctx->stream), "cuMemcpyDtoHAsync");
  if (status == KF_OK) status = check(kf_cu.StreamSynchronize(ctx->stream), "cuStreamSynchronize");
  kf_cuda_leave(ctx);
  return status;
}

static kf_status cuda_buffer_copy(kf_backend_context *ctx, kf_buffer *src, size_t src_offset, kf_buffer *dst,
                                  size_t dst_offset, size_t bytes) {
  kf_status status = kf_cuda_enter(ctx);
  if (status != KF_OK) return status;
  status = check(kf_cu.MemcpyDtoDAsync(dst->address + dst_offset, src->address + src_offset, bytes, ctx->stream),
                 "cuMemcpyDtoDAsync");
  kf_cuda_leave(ctx);
  return status;
}

static kf_status cuda_synchronize(kf_backend_context *ctx) {
  kf_status status = kf_cuda_enter(ctx);
  if (status != KF_OK) return status;
  status = check(kf_cu.StreamSynchronize(ctx->stream), "cuStreamSynchronize");
  kf_cuda_leave(ctx);
  return status;
}

static kf_status cuda_timer_begin(kf_backend_context *ctx) {
  kf_status status = kf_cuda_enter(ctx);
  if (status != KF_OK) return status;
  status = check(kf_cu.EventRecord(ctx->timer_start, ctx->stream), "cuEventRecord");
  kf_cuda_leave(ctx);
  return status;
}

static kf_status cuda_timer_end(kf_backend_context *ctx, double *out_ms) {
  kf_status status = kf_cuda_enter(ctx);
  if (status != KF_OK) return status;
  float ms = 0.0f;
  status = check(kf_cu.EventRecord(ctx->timer_end, ctx->stream), "cuEventRecord");
  if (status == KF_OK) status = check(kf_cu.EventSynchronize(ctx->timer_end), "cuEventSynchronize");
  if (status == KF_OK)
    status = check(kf_cu.EventElapsedTime(&ms, ctx->timer_start, ctx->timer_end), "cuEventElapsedTime");
  kf_cuda_leave(ctx);
  if (status == KF_OK) *out_ms = ms;
  return status;
}

kf_status kf_cuda_function(kf_backend_context *ctx, kf_cuda_module module, int slot, const char *name,
                           CUfunction *out_function) {
  if (slot < 0 || slot >= KF_CUDA_FUNCTION_SLOTS) return kf_fail(KF_ERROR_INTERNAL, "kernel slot %d out of range", slot);
  CUfunction *cached = &ctx->functions[module][slot];
  if (*cached == NULL) {
    CUresult result = kf_cu.ModuleGetFunction(cached, ctx->modules[module], name);
    if (result != CUDA_SUCCESS) {
      *cached = NULL;
      return kf_fail(KF_ERROR_DEVICE_FAILURE, "cuModuleGetFunction(%s) failed: %s", name, kf_cuda_error_text(result));
    }
  }
  *out_function = *cached;
  return KF_OK;
}

kf_status kf_cuda_function_shared(kf_backend_context *ctx, kf_cuda_module module, int slot, const char *name,
                                  unsigned shared_bytes, CUfunction *out_function) {
  const int first_use = slot >= 0 && slot < KF_CUDA_FUNCTION_SLOTS && ctx->functions[module][slot] == NULL;
  kf_status status = kf_cuda_function(ctx, module, slot, name, out_function);
  if (status != KF_OK || !first_use || shared_bytes <= 48u * 1024u) return status;
  CUresult result =
      kf_cu.FuncSetAttribute(*out_function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)shared_bytes);
  if (result != CUDA_SUCCESS) {
    ctx->functions[module][slot] = NULL; /* retried (and reported) on the next call */
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "cuFuncSetAttribute(%s, %u bytes of shared memory) failed: %s", name,
                   shared_bytes, kf_cuda_error_text(result));
  }
  return KF_OK;
}

kf_status kf_cuda_launch_2d(kf_backend_context *ctx, CUfunction function, const char *name, unsigned grid_x,
                            unsigned grid_y, unsigned block_x, unsigned block_y, unsigned shared_bytes, void *params) {
  void *arguments[] = {params};
  CUresult result =
      kf_cu.LaunchKernel(function, grid_x, grid_y, 1, block_x, block_y, 1, shared_bytes, ctx->stream, arguments, NULL);
  if (result != CUDA_SUCCESS)
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "cuLaunchKernel(%s, grid %ux%u, block %ux%u) failed: %s", name, grid_x,
                   grid_y, block_x, block_y, kf_cuda_error_text(result));
  return KF_OK;
}

kf_status kf_cuda_launch(kf_backend_context *ctx, CUfunction function, const char *name, unsigned grid_x,
                         unsigned block_x, unsigned block_y, unsigned shared_bytes, void *params) {
  return kf_cuda_launch_2d(ctx, function, name, grid_x, 1, block_x, block_y, shared_bytes, params);
}

kf_status kf_cuda_launch_clusters(kf_backend_context *ctx, CUfunction function, const char *name, unsigned grid_x,
                                  unsigned block_x, unsigned shared_bytes, unsigned cluster_x, int dependent,
                                  void *params) {
  CUlaunchAttribute attributes[2];
  unsigned count = 0;
  memset(attributes, 0, sizeof attributes);
  if (dependent) {
    attributes[count].id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attributes[count++].value.programmatic_stream_serialization_allowed = 1;
  }
  if (cluster_x > 1) {
    attributes[count].id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
    attributes[count].value.cluster_dim.x = cluster_x;
    attributes[count].value.cluster_dim.y = 1;
    attributes[count++].value.cluster_dim.z = 1;
  }
  const CUlaunchConfig config = {.grid_x = grid_x, .grid_y = 1, .grid_z = 1, .block_x = block_x, .block_y = 1,
                                 .block_z = 1, .shared_bytes = shared_bytes, .stream = ctx->stream,
                                 .attributes = attributes, .attribute_count = count};
  void *arguments[] = {params};
  CUresult result = kf_cu.LaunchKernelEx(&config, function, arguments, NULL);
  if (result != CUDA_SUCCESS)
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "cuLaunchKernelEx(%s, grid %u, block %u, clusters of %u%s) failed: %s",
                   name, grid_x, block_x, cluster_x > 1 ? cluster_x : 1, dependent ? ", programmatic" : "",
                   kf_cuda_error_text(result));
  return KF_OK;
}

kf_status kf_cuda_launch_dependent(kf_backend_context *ctx, CUfunction function, const char *name, unsigned grid_x,
                                   unsigned block_x, unsigned shared_bytes, void *params) {
  return kf_cuda_launch_clusters(ctx, function, name, grid_x, block_x, shared_bytes, 1, 1, params);
}

const kf_backend_iface kf_cuda_backend = {
    .backend = KF_BACKEND_CUDA,
    .name = "cuda",
    .probe = cuda_probe,
    .context_create = cuda_context_create,
    .context_destroy = cuda_context_destroy,
    .buffer_alloc = cuda_buffer_alloc,
    .buffer_free = cuda_buffer_free,
    .buffer_write = cuda_buffer_write,
    .buffer_read = cuda_buffer_read,
    .buffer_copy = cuda_buffer_copy,
    .synchronize = cuda_synchronize,
    .timer_begin = cuda_timer_begin,
    .timer_end = cuda_timer_end,
    .rmsnorm = kf_cuda_rmsnorm,
    .layernorm = kf_cuda_layernorm,
    .rope = kf_cuda_rope,
    .glu = kf_cuda_glu,
    .softmax = kf_cuda_softmax,
    .gemm = kf_cuda_gemm,
    .gemm_workspace = kf_cuda_gemm_workspace,
    .attention = kf_cuda_attention,
    .attention_workspace = kf_cuda_attention_workspace,
};

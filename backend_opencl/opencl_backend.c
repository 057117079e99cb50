/* opencl_backend.c — the OpenCL backend: device probe over every platform, contexts (one device, one
 * in-order profiling queue), buffers, device timers, and the kf_opencl_backend table. The op lives in
 * opencl_rmsnorm.c, program building and caching in opencl_program.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend_opencl/opencl_internal.h"

/* Buffers are rounded up to this many bytes (the allocation granularity the core expects). */
#define KF_OCL_BUFFER_ALIGN 256
/* The largest work-group the kernels use: beyond it a row gets no faster, and it bounds scratch. */
#define KF_OCL_MAX_GROUP 1024

#define KF_OCL_MAX_PLATFORMS 16

/* ---- probe ---- */

static void copy_truncated(char *out, size_t out_size, const char *text) {
  size_t len = strnlen(text, out_size - 1);
  memcpy(out, text, len);
  out[len] = '\0';
}

/* String queries fail outright when the buffer is too small, so read into a large one and truncate
 * ("OpenCL 3.0 PoCL HSTR: pthread-x86_64-pc-linux-gnu-skylake-avx512" does not fit api_version). */
#define KF_OCL_QUERY_STRING 2048

static void device_string(cl_device_id device, cl_device_info param, char *out, size_t out_size) {
  char text[KF_OCL_QUERY_STRING] = "";
  if (kf_cl.clGetDeviceInfo(device, param, sizeof text - 1, text, NULL) != CL_SUCCESS) text[0] = '\0';
  text[sizeof text - 1] = '\0';
  copy_truncated(out, out_size, text);
}

static void platform_string(cl_platform_id platform, cl_platform_info param, char *out, size_t out_size) {
  char text[KF_OCL_QUERY_STRING] = "";
  if (kf_cl.clGetPlatformInfo(platform, param, sizeof text - 1, text, NULL) != CL_SUCCESS) text[0] = '\0';
  text[sizeof text - 1] = '\0';
  copy_truncated(out, out_size, text);
}

/* Extension strings can be long (Intel's is over 2 KiB): malloc'ed, "" on failure. */
static char *device_extensions(cl_device_id device) {
  size_t size = 0;
  char *text = NULL;
  if (kf_cl.clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, 0, NULL, &size) == CL_SUCCESS && size > 0)
    text = calloc(size + 1, 1);
  if (text != NULL && kf_cl.clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, size, text, NULL) != CL_SUCCESS)
    text[0] = '\0';
  return text != NULL ? text : calloc(1, 1);
}

/* Whole-word match in a space-separated extension list. */
static int has_extension(const char *extensions, const char *name) {
  size_t len = strlen(name);
  for (const char *p = extensions; p != NULL && (p = strstr(p, name)) != NULL; p += len) {
    int starts = p == extensions || p[-1] == ' ';
    int ends = p[len] == '\0' || p[len] == ' ';
    if (starts && ends) return 1;
  }
  return 0;
}

/* "OpenCL 3.0 CUDA 12.4.131" -> 300. */
static int parse_cl_version(const char *text, const char *prefix) {
  int major = 0, minor = 0;
  size_t prefix_len = strlen(prefix);
  if (strncmp(text, prefix, prefix_len) != 0 || sscanf(text + prefix_len, "%d.%d", &major, &minor) != 2) return 0;
  return major * 100 + minor * 10;
}

static void short_vendor(const char *platform_name, const char *vendor, char *out, size_t out_size) {
  if (strstr(platform_name, "Portable Computing Language") || strcasestr(platform_name, "pocl"))
    snprintf(out, out_size, "PoCL");
  else if (strcasestr(vendor, "NVIDIA"))
    snprintf(out, out_size, "NVIDIA");
  else if (strcasestr(vendor, "Advanced Micro Devices") || strcasestr(vendor, "AMD"))
    snprintf(out, out_size, "AMD");
  else if (strcasestr(vendor, "Intel"))
    snprintf(out, out_size, "Intel");
  else if (strcasestr(platform_name, "rusticl") || strcasestr(platform_name, "Clover") || strcasestr(vendor, "Mesa"))
    snprintf(out, out_size, "Mesa");
  else
    copy_truncated(out, out_size, vendor);
}

/* Whether CL_DEVICE_OPENCL_C_FEATURES (OpenCL 3.0) lists `name`. */
static int has_c_feature(cl_device_id device, const char *name) {
  size_t size = 0;
  if (kf_cl.clGetDeviceInfo(device, CL_DEVICE_OPENCL_C_FEATURES, 0, NULL, &size) != CL_SUCCESS || size == 0)
    return 0;
  cl_name_version *features = malloc(size);
  int found = 0;
  if (features != NULL &&
      kf_cl.clGetDeviceInfo(device, CL_DEVICE_OPENCL_C_FEATURES, size, features, NULL) == CL_SUCCESS) {
    for (size_t i = 0; i < size / sizeof *features && !found; ++i)
      found = strncmp(features[i].name, name, CL_NAME_VERSION_MAX_NAME_SIZE) == 0;
  }
  free(features);
  return found;
}

/* Whether the device has sub_group_reduce_add, and the -cl-std option its OpenCL C needs for it. */
static int device_subgroups(cl_device_id device, const char *extensions, const char **out_std) {
  char version[128], c_version[128];
  device_string(device, CL_DEVICE_VERSION, version, sizeof version);
  device_string(device, CL_DEVICE_OPENCL_C_VERSION, c_version, sizeof c_version);
  int api = parse_cl_version(version, "OpenCL ");
  int c_lang = parse_cl_version(c_version, "OpenCL C ");
  *out_std = "";
  /* OpenCL 3.0 made sub-groups optional: a device that compiles them in OpenCL C 3.0 lists the
   * __opencl_c_subgroups feature (an OpenCL 3.0 device may support only OpenCL C 1.2). */
  if (api >= 300 && has_c_feature(device, "__opencl_c_subgroups")) {
    *out_std = "-cl-std=CL3.0 ";
    return 1;
  }
  if (has_extension(extensions, "cl_khr_subgroups") && c_lang >= 200) {
    *out_std = "-cl-std=CL2.0 ";
    return 1;
  }
  return 0;
}

static void probe_pci(cl_device_id device, const char *extensions, char *out, size_t out_size) {
  out[0] = '\0';
  if (has_extension(extensions, "cl_khr_pci_bus_info")) {
    cl_uint info[4]; /* domain, bus, device, function */
    if (kf_cl.clGetDeviceInfo(device, KF_CL_DEVICE_PCI_BUS_INFO_KHR, sizeof info, info, NULL) == CL_SUCCESS) {
      snprintf(out, out_size, "%04x:%02x:%02x.%x", info[0], info[1], info[2], info[3]);
      return;
    }
  }
  if (has_extension(extensions, "cl_nv_device_attribute_query")) {
    cl_uint bus = 0, slot = 0, domain = 0;
    if (kf_cl.clGetDeviceInfo(device, KF_CL_DEVICE_PCI_BUS_ID_NV, sizeof bus, &bus, NULL) == CL_SUCCESS &&
        kf_cl.clGetDeviceInfo(device, KF_CL_DEVICE_PCI_SLOT_ID_NV, sizeof slot, &slot, NULL) == CL_SUCCESS) {
      /* The domain query came later than bus/slot; older drivers lack it (domain 0 then). */
      if (kf_cl.clGetDeviceInfo(device, KF_CL_DEVICE_PCI_DOMAIN_ID_NV, sizeof domain, &domain, NULL) != CL_SUCCESS)
        domain = 0;
      snprintf(out, out_size, "%04x:%02x:%02x.%x", domain, bus, slot >> 3, slot & 7u);
    }
  }
}

static void probe_device(int platform_index, const char *platform_name, cl_device_id device,
                         kf_backend_device *out) {
  kf_device_info *info = &out->info;
  memset(out, 0, sizeof *out);
  info->struct_size = sizeof *info;
  info->backend = KF_BACKEND_OPENCL;
  info->same_device_as = -1;
  out->handle = device;
  out->ordinal = platform_index;

  char vendor[128];
  device_string(device, CL_DEVICE_NAME, info->name, sizeof info->name);
  device_string(device, CL_DEVICE_VENDOR, vendor, sizeof vendor);
  short_vendor(platform_name, vendor, info->vendor, sizeof info->vendor);
  device_string(device, CL_DRIVER_VERSION, info->driver_version, sizeof info->driver_version);
  device_string(device, CL_DEVICE_VERSION, info->api_version, sizeof info->api_version);

  cl_ulong memory = 0;
  cl_uint compute_units = 0;
  cl_device_type type = 0;
  cl_bool unified = CL_FALSE;
  size_t max_group = 0;
  cl_ulong local_bytes = 0;
  kf_cl.clGetDeviceInfo(device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof memory, &memory, NULL);
  kf_cl.clGetDeviceInfo(device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof compute_units, &compute_units, NULL);
  kf_cl.clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
  kf_cl.clGetDeviceInfo(device, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, NULL);
  kf_cl.clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_group, &max_group, NULL);
  kf_cl.clGetDeviceInfo(device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local_bytes, &local_bytes, NULL);
  info->memory_bytes = memory;
  info->compute_units = compute_units;

  /* A CPU device (PoCL's pthread device, Intel's CPU runtime) duplicates what the CPU backend does
   * natively, so it counts as software and is only used when asked for. */
  if (type & CL_DEVICE_TYPE_CPU)
    info->type = KF_DEVICE_TYPE_SOFTWARE;
  else if (type & CL_DEVICE_TYPE_GPU)
    info->type = unified ? KF_DEVICE_TYPE_INTEGRATED_GPU : KF_DEVICE_TYPE_DISCRETE_GPU;
  else
    info->type = KF_DEVICE_TYPE_OTHER;

  char *extensions = device_extensions(device);
  const char *std_option;
  int subgroups = device_subgroups(device, extensions, &std_option);
  int nvidia = strcmp(info->vendor, "NVIDIA") == 0;
  info->caps = KF_CAP_INT64;
  if (has_extension(extensions, "cl_khr_fp16")) info->caps |= KF_CAP_F16;
  /* NVIDIA hardware reduces across warps even where its OpenCL exposes no sub-group functions. */
  if (subgroups || nvidia) info->caps |= KF_CAP_SUBGROUPS;
  snprintf(info->caps_text, sizeof info->caps_text, "%s%s%swg %zu, local %lluKiB",
           (info->caps & KF_CAP_F16) ? "fp16 " : "", (info->caps & KF_CAP_SUBGROUPS) ? "subgroups" : "",
           (info->caps & (KF_CAP_F16 | KF_CAP_SUBGROUPS)) ? ", " : "", max_group,
           (unsigned long long)(local_bytes / 1024));

  probe_pci(device, extensions, info->pci_bus_id, sizeof info->pci_bus_id);
  if (has_extension(extensions, "cl_khr_device_uuid") &&
      kf_cl.clGetDeviceInfo(device, KF_CL_DEVICE_UUID_KHR, sizeof info->uuid, info->uuid, NULL) == CL_SUCCESS)
    info->has_uuid = 1;
  free(extensions);
}

static void opencl_probe(kf_probe_result *out) {
  memset(out, 0, sizeof *out);
  if (!kf_cl_load(out->reason, sizeof out->reason)) return;

  cl_platform_id platforms[KF_OCL_MAX_PLATFORMS];
  cl_uint platform_count = 0;
  cl_int err = kf_cl.clGetPlatformIDs(KF_OCL_MAX_PLATFORMS, platforms, &platform_count);
  if (err == CL_PLATFORM_NOT_FOUND_KHR || (err == CL_SUCCESS && platform_count == 0)) {
    snprintf(out->reason, sizeof out->reason,
             "no OpenCL platforms: the ICD loader found no driver (no .icd file in /etc/OpenCL/vendors; "
             "install one, e.g. pocl-opencl-icd or the GPU vendor's OpenCL driver)");
    return;
  }
  if (err != CL_SUCCESS) {
    snprintf(out->reason, sizeof out->reason, "clGetPlatformIDs failed: %s", kf_cl_error_name(err));
    return;
  }
  if (platform_count > KF_OCL_MAX_PLATFORMS) platform_count = KF_OCL_MAX_PLATFORMS;

  size_t runtime_used = (size_t)snprintf(out->runtime, sizeof out->runtime, "libOpenCL.so.1:");
  for (cl_uint p = 0; p < platform_count; ++p) {
    char platform_name[256], platform_version[128];
    platform_string(platforms[p], CL_PLATFORM_NAME, platform_name, sizeof platform_name);
    platform_string(platforms[p], CL_PLATFORM_VERSION, platform_version, sizeof platform_version);
    if (runtime_used < sizeof out->runtime)
      runtime_used += (size_t)snprintf(out->runtime + runtime_used, sizeof out->runtime - runtime_used, "%s %s",
                                       p ? ";" : "", platform_version);

    cl_device_id devices[KF_MAX_BACKEND_DEVICES];
    cl_uint device_count = 0;
    if (kf_cl.clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, KF_MAX_BACKEND_DEVICES, devices, &device_count) !=
        CL_SUCCESS)
      continue; /* CL_DEVICE_NOT_FOUND: a platform without devices */
    if (device_count > KF_MAX_BACKEND_DEVICES) device_count = KF_MAX_BACKEND_DEVICES;
    for (cl_uint d = 0; d < device_count && out->device_count < KF_MAX_BACKEND_DEVICES; ++d) {
      kf_backend_device *record = &out->devices[out->device_count];
      probe_device((int)p, platform_name, devices[d], record);
      record->info.backend_index = out->device_count;
      ++out->device_count;
    }
  }
  if (out->device_count == 0) {
    snprintf(out->reason, sizeof out->reason, "%u OpenCL platform%s found, but no devices", platform_count,
             platform_count == 1 ? "" : "s");
    return;
  }
  out->available = 1;
}

/* ---- contexts ---- */

static void opencl_context_destroy(kf_backend_context *ctx) {
  if (ctx == NULL) return;
  if (ctx->queue != NULL) kf_cl.clFinish(ctx->queue);
  if (ctx->timer_first != NULL) kf_cl.clReleaseEvent(ctx->timer_first);
  if (ctx->timer_last != NULL) kf_cl.clReleaseEvent(ctx->timer_last);
  kf_ocl_release_programs(ctx);
  if (ctx->placeholder != NULL) kf_cl.clReleaseMemObject(ctx->placeholder);
  if (ctx->queue != NULL) kf_cl.clReleaseCommandQueue(ctx->queue);
  if (ctx->context != NULL) kf_cl.clReleaseContext(ctx->context);
  free(ctx);
}

static kf_status opencl_context_create(const kf_backend_device *device, uint32_t flags,
                                       kf_backend_context **out_ctx) {
  kf_backend_context *ctx = calloc(1, sizeof *ctx);
  if (ctx == NULL) return kf_fail(KF_ERROR_OUT_OF_MEMORY, "out of host memory for an OpenCL context");
  ctx->device = (cl_device_id)device->handle;
  cl_int err = kf_cl.clGetDeviceInfo(ctx->device, CL_DEVICE_PLATFORM, sizeof ctx->platform, &ctx->platform, NULL);
  if (err != CL_SUCCESS) {
    free(ctx);
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "clGetDeviceInfo(CL_DEVICE_PLATFORM) failed: %s", kf_cl_error_name(err));
  }

  cl_context_properties properties[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)ctx->platform, 0};
  ctx->context = kf_cl.clCreateContext(properties, 1, &ctx->device, NULL, NULL, &err);
  if (ctx->context == NULL || err != CL_SUCCESS) {
    opencl_context_destroy(ctx);
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "clCreateContext failed: %s", kf_cl_error_name(err));
  }
  ctx->queue = kf_cl.clCreateCommandQueue(ctx->context, ctx->device, CL_QUEUE_PROFILING_ENABLE, &err);
  if (ctx->queue == NULL || err != CL_SUCCESS) {
    opencl_context_destroy(ctx);
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "clCreateCommandQueue failed: %s", kf_cl_error_name(err));
  }
  ctx->placeholder = kf_cl.clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, KF_OCL_BUFFER_ALIGN, NULL, &err);
  if (ctx->placeholder == NULL || err != CL_SUCCESS) {
    opencl_context_destroy(ctx);
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "clCreateBuffer failed: %s", kf_cl_error_name(err));
  }

  size_t max_group = 0, item_sizes[3] = {0, 0, 0};
  kf_cl.clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_group, &max_group, NULL);
  kf_cl.clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof item_sizes, item_sizes, NULL);
  if (item_sizes[0] != 0 && item_sizes[0] < max_group) max_group = item_sizes[0];
  if (max_group == 0) max_group = 1;
  ctx->max_group_size = max_group < KF_OCL_MAX_GROUP ? max_group : KF_OCL_MAX_GROUP;

  char *extensions = device_extensions(ctx->device);
  ctx->subgroups = device_subgroups(ctx->device, extensions, &ctx->language_std);
  free(extensions);

  char platform_name[256], platform_version[256], device_name[256], driver_version[256];
  platform_string(ctx->platform, CL_PLATFORM_NAME, platform_name, sizeof platform_name);
  /* NVIDIA's OpenCL compiler accepts inline PTX: warp shuffles for the row reductions. */
  ctx->nvidia_ptx = strstr(platform_name, "NVIDIA") != NULL;
  /* PoCL keeps compiled kernels in its own disk cache, and reading CL_PROGRAM_BINARIES makes it compile
   * every kernel of a program once more for the binary: a cold conformance run (--backend=opencl
   * --quick) took 185 s with our cache and 82 s without it; warm, 4.8 s and 6.0 s. */
  ctx->binary_cache = strstr(platform_name, "Portable Computing Language") == NULL;
  /* On a GPU a program with constant dtypes is worth its one-time (cached) build; on a CPU device
   * (PoCL) builds are slow and the run-time dtype switches cost little. */
  cl_device_type device_type = 0;
  kf_cl.clGetDeviceInfo(ctx->device, CL_DEVICE_TYPE, sizeof device_type, &device_type, NULL);
  ctx->specialize_dtypes = (device_type & CL_DEVICE_TYPE_GPU) != 0;
  platform_string(ctx->platform, CL_PLATFORM_VERSION, platform_version, sizeof platform_version);
  device_string(ctx->device, CL_DEVICE_NAME, device_name, sizeof device_name);
  device_string(ctx->device, CL_DRIVER_VERSION, driver_version, sizeof driver_version);
  snprintf(ctx->cache_identity, sizeof ctx->cache_identity, "%s\n%s\n%s\n%s", platform_name, platform_version,
           device_name, driver_version);
  (void)flags;
  *out_ctx = ctx;
  return KF_OK;
}

/* ---- memory ---- */

static kf_status alloc_status(cl_int err) {
  return (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_RESOURCES || err == CL_OUT_OF_HOST_MEMORY ||
          err == CL_INVALID_BUFFER_SIZE)
             ? KF_ERROR_OUT_OF_MEMORY
             : KF_ERROR_DEVICE_FAILURE;
}

static kf_status opencl_buffer_alloc(kf_backend_context *ctx, size_t bytes, kf_buffer **out_buffer) {
  if (bytes > SIZE_MAX - KF_OCL_BUFFER_ALIGN)
    return kf_fail(KF_ERROR_OUT_OF_MEMORY, "cannot allocate %zu bytes", bytes);
  size_t rounded = (bytes + KF_OCL_BUFFER_ALIGN - 1) / KF_OCL_BUFFER_ALIGN * KF_OCL_BUFFER_ALIGN;
  kf_buffer *buffer = malloc(sizeof *buffer);
  if (buffer == NULL) return kf_fail(KF_ERROR_OUT_OF_MEMORY, "out of host memory");
  cl_int err = CL_SUCCESS;
  buffer->mem = kf_cl.clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, rounded, NULL, &err);
  if (buffer->mem == NULL || err != CL_SUCCESS) {
    free(buffer);
    return kf_fail(alloc_status(err), "clCreateBuffer(%zu bytes) failed: %s", rounded, kf_cl_error_name(err));
  }
  buffer->bytes = rounded;
  *out_buffer = buffer;
  return KF_OK;
}

static void opencl_buffer_free(kf_backend_context *ctx, kf_buffer *buffer) {
  if (buffer == NULL) return;
  kf_cl.clReleaseMemObject(buffer->mem); /* the driver keeps it alive until queued commands finish */
  free(buffer);
}

static kf_status opencl_buffer_write(kf_backend_context *ctx, kf_buffer *dst, size_t dst_offset, const void *src,
                                     size_t bytes) {
  if (bytes == 0) return KF_OK;
  cl_int err = kf_cl.clEnqueueWriteBuffer(ctx->queue, dst->mem, CL_TRUE, dst_offset, bytes, src, 0, NULL, NULL);
  if (err != CL_SUCCESS) return kf_fail(KF_ERROR_DEVICE_FAILURE, "clEnqueueWriteBuffer failed: %s", kf_cl_error_name(err));
  return KF_OK;
}

static kf_status opencl_buffer_read(kf_backend_context *ctx, kf_buffer *src, size_t src_offset, void *dst,
                                    size_t bytes) {
  if (bytes == 0) return KF_OK;
  cl_int err = kf_cl.clEnqueueReadBuffer(ctx->queue, src->mem, CL_TRUE, src_offset, bytes, dst, 0, NULL, NULL);
  if (err != CL_SUCCESS) return kf_fail(KF_ERROR_DEVICE_FAILURE, "clEnqueueReadBuffer failed: %s", kf_cl_error_name(err));
  return KF_OK;
}

static kf_status opencl_buffer_copy(kf_backend_context *ctx, kf_buffer *src, size_t src_offset, kf_buffer *dst,
                                    size_t dst_offset, size_t bytes) {
  if (bytes == 0) return KF_OK;
  cl_event event;
  cl_int err = kf_cl.clEnqueueCopyBuffer(ctx->queue, src->mem, dst->mem, src_offset, dst_offset, bytes, 0, NULL,
                                         kf_ocl_timer_event_slot(ctx, &event));
  if (err != CL_SUCCESS) return kf_fail(KF_ERROR_DEVICE_FAILURE, "clEnqueueCopyBuffer failed: %s", kf_cl_error_name(err));
  kf_ocl_timer_record(ctx, event);
  return KF_OK;
}

static kf_status opencl_synchronize(kf_backend_context *ctx) {
  cl_int err = kf_cl.clFinish(ctx->queue);
  if (err != CL_SUCCESS) return kf_fail(KF_ERROR_DEVICE_FAILURE, "clFinish failed: %s", kf_cl_error_name(err));
  return KF_OK;
}

/* ---- timer ---- */

static void timer_reset(kf_backend_context *ctx) {
  if (ctx->timer_first != NULL) kf_cl.clReleaseEvent(ctx->timer_first);
  if (ctx->timer_last != NULL) kf_cl.clReleaseEvent(ctx->timer_last);
  ctx->timer_first = ctx->timer_last = NULL;
}

void kf_ocl_timer_record(kf_backend_context *ctx, cl_event event) {
  if (event == NULL) return;
  if (ctx->timer_first == NULL) {
    ctx->timer_first = event;
    return;
  }
  if (ctx->timer_last != NULL) kf_cl.clReleaseEvent(ctx->timer_last);
  ctx->timer_last = event;
}

static kf_status opencl_timer_begin(kf_backend_context *ctx) {
  timer_reset(ctx);
  ctx->timer_active = 1;
  return KF_OK;
}

static kf_status opencl_timer_end(kf_backend_context *ctx, double *out_ms) {
  ctx->timer_active = 0;
  cl_int err = kf_cl.clFinish(ctx->queue);
  if (err != CL_SUCCESS) {
    timer_reset(ctx);
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "clFinish failed: %s", kf_cl_error_name(err));
  }
  double ms = 0.0;
  if (ctx->timer_first != NULL) {
    cl_event last = ctx->timer_last != NULL ? ctx->timer_last : ctx->timer_first;
    cl_ulong start = 0, end = 0;
    err = kf_cl.clGetEventProfilingInfo(ctx->timer_first, CL_PROFILING_COMMAND_START, sizeof start, &start, NULL);
    if (err == CL_SUCCESS)
      err = kf_cl.clGetEventProfilingInfo(last, CL_PROFILING_COMMAND_END, sizeof end, &end, NULL);
    if (err != CL_SUCCESS) {
      timer_reset(ctx);
      return kf_fail(KF_ERROR_DEVICE_FAILURE, "clGetEventProfilingInfo failed: %s", kf_cl_error_name(err));
    }
    ms = end > start ? (double)(end - start) * 1e-6 : 0.0;
  }
  timer_reset(ctx);
  *out_ms = ms;
  return KF_OK;
}

const kf_backend_iface kf_opencl_backend = {
    .backend = KF_BACKEND_OPENCL,
    .name = "opencl",
    .probe = opencl_probe,
    .context_create = opencl_context_create,
    .context_destroy = opencl_context_destroy,
    .buffer_alloc = opencl_buffer_alloc,
    .buffer_free = opencl_buffer_free,
    .buffer_write = opencl_buffer_write,
    .buffer_read = opencl_buffer_read,
    .buffer_copy = opencl_buffer_copy,
    .synchronize = opencl_synchronize,
    .timer_begin = opencl_timer_begin,
    .timer_end = opencl_timer_end,
    .rmsnorm = kf_ocl_rmsnorm,
    .layernorm = kf_ocl_layernorm,
    .rope = kf_ocl_rope,
    .glu = kf_ocl_glu,
    .softmax = kf_ocl_softmax,
    .gemm = kf_ocl_gemm,
    .gemm_workspace = kf_ocl_gemm_workspace,
    .attention = kf_ocl_attention,
    .attention_workspace = kf_ocl_attention_workspace,
};

/* registry.c — the compiled-in backends, the one-time probe, the global device list and the
 * default-device policy.
 *
 * Registration is explicit: one #if block per backend below. Devices are listed backend by backend in
 * the order cpu, cuda, opencl, vulkan; the same GPU seen through several APIs is linked through
 * same_device_as (PCI bus id, else UUID).
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/internal.h"

static const kf_backend_iface *const g_backends[] = {
#if defined(KF_WITH_CPU)
    &kf_cpu_backend,
#endif
#if defined(KF_WITH_CUDA)
    &kf_cuda_backend,
#endif
#if defined(KF_WITH_OPENCL)
    &kf_opencl_backend,
#endif
#if defined(KF_WITH_VULKAN)
    &kf_vulkan_backend,
#endif
};
#define KF_BACKENDS_BUILT ((int)(sizeof g_backends / sizeof g_backends[0]))

static pthread_once_t g_probe_once = PTHREAD_ONCE_INIT;
static kf_probe_result g_probe[KF_BACKEND_COUNT];
static bool g_probed[KF_BACKEND_COUNT];
static kf_device_info *g_infos;
static kf_registered_device *g_devices;
static size_t g_device_count;
static bool g_probe_failed;

static bool same_hardware(const kf_device_info *a, const kf_device_info *b) {
  if (a->pci_bus_id[0] && b->pci_bus_id[0]) return strcasecmp(a->pci_bus_id, b->pci_bus_id) == 0;
  if (a->has_uuid && b->has_uuid) return memcmp(a->uuid, b->uuid, sizeof a->uuid) == 0;
  return false;
}

static void probe_all(void) {
  size_t total = 0;
  for (int i = 0; i < KF_BACKENDS_BUILT; ++i) {
    const kf_backend_iface *iface = g_backends[i];
    kf_probe_result *result = &g_probe[iface->backend];
    memset(result, 0, sizeof *result);
    iface->probe(result);
    if (result->device_count < 0) result->device_count = 0;
    if (result->device_count > KF_MAX_BACKEND_DEVICES) result->device_count = KF_MAX_BACKEND_DEVICES;
    g_probed[iface->backend] = true;
    total += (size_t)result->device_count;
  }
  g_infos = calloc(total ? total : 1, sizeof *g_infos);
  g_devices = calloc(total ? total : 1, sizeof *g_devices);
  if (g_infos == NULL || g_devices == NULL) {
    g_probe_failed = true;
    return;
  }
  size_t n = 0;
  for (int b = 0; b < KF_BACKEND_COUNT; ++b) {
    if (!g_probed[b]) continue;
    const kf_backend_iface *iface = kf_registry_backend((kf_backend)b);
    for (int d = 0; d < g_probe[b].device_count; ++d) {
      kf_backend_device *device = &g_probe[b].devices[d];
      device->info.struct_size = sizeof(kf_device_info);
      device->info.backend = (kf_backend)b;
      device->info.index = (int32_t)n;
      device->info.backend_index = d;
      device->info.same_device_as = -1;
      for (size_t j = 0; j < n; ++j) {
        if (g_infos[j].backend != (kf_backend)b && same_hardware(&g_infos[j], &device->info)) {
          device->info.same_device_as = (int32_t)j;
          break;
        }
      }
      g_infos[n] = device->info;
      g_devices[n].iface = iface;
      g_devices[n].device = device;
      ++n;
    }
  }
  g_device_count = n;
}

kf_status kf_registry_devices(const kf_registered_device **out_devices, const kf_device_info **out_infos,
                              size_t *out_count) {
  pthread_once(&g_probe_once, probe_all);
  if (g_probe_failed) return kf_fail(KF_ERROR_OUT_OF_MEMORY, "out of host memory while listing devices");
  if (out_devices) *out_devices = g_devices;
  if (out_infos) *out_infos = g_infos;
  if (out_count) *out_count = g_device_count;
  return KF_OK;
}

const kf_backend_iface *kf_registry_backend(kf_backend backend) {
  for (int i = 0; i < KF_BACKENDS_BUILT; ++i)
    if (g_backends[i]->backend == backend) return g_backends[i];
  return NULL;
}

const kf_probe_result *kf_registry_probe_result(kf_backend backend) {
  pthread_once(&g_probe_once, probe_all);
  if ((int)backend < 0 || backend >= KF_BACKEND_COUNT || !g_probed[backend]) return NULL;
  return &g_probe[backend];
}

/* ---- public: backends and devices ---- */

static const char *const g_backend_names[KF_BACKEND_COUNT] = {"cpu", "cuda", "opencl", "vulkan"};

const char *kf_backend_name(kf_backend backend) {
  if ((int)backend < 0 || backend >= KF_BACKEND_COUNT) return NULL;
  return g_backend_names[backend];
}

static bool parse_backend(const char *name, kf_backend *out) {
  for (int b = 0; b < KF_BACKEND_COUNT; ++b) {
    if (strcasecmp(name, g_backend_names[b]) == 0) {
      *out = (kf_backend)b;
      return true;
    }
  }
  return false;
}

kf_status kf_backend_from_name(const char *name, kf_backend *out_backend) {
  KF_API_ENTER("kf_backend_from_name");
  if (name == NULL) return kf_fail(KF_ERROR_NULL_ARGUMENT, "name is NULL");
  if (out_backend == NULL) return kf_fail(KF_ERROR_NULL_ARGUMENT, "out_backend is NULL");
  if (!parse_backend(name, out_backend))
    return kf_fail(KF_ERROR_INVALID_ARGUMENT, "name \"%s\" is not a backend (cpu, cuda, opencl, vulkan)", name);
  return KF_OK;
}

const char *kf_device_type_name(kf_device_type type) {
  switch (type) {
    case KF_DEVICE_TYPE_CPU: return "cpu";
    case KF_DEVICE_TYPE_DISCRETE_GPU: return "discrete-gpu";
    case KF_DEVICE_TYPE_INTEGRATED_GPU: return "integrated-gpu";
    case KF_DEVICE_TYPE_SOFTWARE: return "software";
    case KF_DEVICE_TYPE_OTHER: return "other";
    default: return NULL;
  }
}

kf_status kf_devices(const kf_device_info **out_devices, size_t *out_count) {
  KF_API_ENTER("kf_devices");
  if (out_devices == NULL) return kf_fail(KF_ERROR_NULL_ARGUMENT, "out_devices is NULL");
  if (out_count == NULL) return kf_fail(KF_ERROR_NULL_ARGUMENT, "out_count is NULL");
  return kf_registry_devices(NULL, out_devices, out_count);
}

static void fill_backend_info(kf_backend backend, kf_backend_info *info) {
  memset(info, 0, sizeof *info);
  info->struct_size = sizeof *info;
  info->backend = backend;
  const kf_probe_result *probe = kf_registry_probe_result(backend);
  if (probe == NULL) {
    snprintf(info->reason, sizeof info->reason, "the %s backend was left out of this build of kfuse",
             kf_backend_name(backend));
    return;
  }
  info->available = probe->available && probe->device_count > 0;
  info->device_count = probe->device_count;
  snprintf(info->reason, sizeof info->reason, "%s", probe->reason);
  if (!info->available && info->reason[0] == '\0')
    snprintf(info->reason, sizeof info->reason, "no %s device found", kf_backend_name(backend));
  snprintf(info->runtime, sizeof info->runtime, "%s", probe->runtime);
}

kf_status kf_backend_get_info(kf_backend backend, kf_backend_info *out_info) {
  KF_API_ENTER("kf_backend_get_info");
  if (out_info == NULL) return kf_fail(KF_ERROR_NULL_ARGUMENT, "out_info is NULL");
  if ((int)backend < 0 || backend >= KF_BACKEND_COUNT)
    return kf_fail(KF_ERROR_INVALID_ARGUMENT, "backend %d is not a kf_backend value", (int)backend);
  kf_status status = kf_registry_devices(NULL, NULL, NULL);
  if (status != KF_OK) return status;
  fill_backend_info(backend, out_info);
  return KF_OK;
}

/* ---- device choice ---- */

static bool contains_case_insensitive(const char *haystack, const char *needle) {
  size_t n = strlen(needle);
  if (n == 0) return true;
  for (; *haystack; ++haystack)
    if (strncasecmp(haystack, needle, n) == 0) return true;
  return false;
}

static bool backend_usable(kf_backend b) {
  const kf_probe_result *probe = kf_registry_probe_result(b);
  return probe != NULL && probe->available;
}

/* Default policy: CUDA, discrete Vulkan GPU, OpenCL GPU, integrated Vulkan GPU, CPU backend. Software
 * drivers never. Fills up to `capacity` candidate indices in order of preference. */
size_t kf_registry_default_candidates(size_t *out, size_t capacity) {
  const kf_device_info *infos = NULL;
  size_t count = 0, n = 0;
  kf_registry_devices(NULL, &infos, &count);
  struct {
    kf_backend backend;
    int type_a, type_b;
  } tiers[] = {
      {KF_BACKEND_CUDA, KF_DEVICE_TYPE_DISCRETE_GPU, KF_DEVICE_TYPE_INTEGRATED_GPU},
      {KF_BACKEND_VULKAN, KF_DEVICE_TYPE_DISCRETE_GPU, -1},
      {KF_BACKEND_OPENCL, KF_DEVICE_TYPE_DISCRETE_GPU, KF_DEVICE_TYPE_INTEGRATED_GPU},
      {KF_BACKEND_VULKAN, KF_DEVICE_TYPE_INTEGRATED_GPU, -1},
      {KF_BACKEND_CPU, KF_DEVICE_TYPE_CPU, -1},
  };
  for (size_t t = 0; t < sizeof tiers / sizeof tiers[0]; ++t) {
    if (!backend_usable(tiers[t].backend)) continue;
    for (size_t i = 0; i < count && n < capacity; ++i) {
      if (infos[i].backend != tiers[t].backend) continue;
      if ((int)infos[i].type != tiers[t].type_a && (int)infos[i].type != tiers[t].type_b) continue;
      out[n++] = i;
    }
  }
  return n;
}

kf_status kf_registry_select(const kf_context_options *options, size_t *out, size_t capacity, size_t *out_count) {
  const kf_device_info *infos = NULL;
  size_t count = 0;
  kf_status status = kf_registry_devices(NULL, &infos, &count);
  if (status != KF_OK) return status;
  *out_count = 0;

  if (options != NULL && options->device_index >= 0) {
    if ((size_t)options->device_index >= count)
      return kf_fail(KF_ERROR_DEVICE_NOT_FOUND, "options->device_index %d is out of range (%zu devices)",
                     (int)options->device_index, count);
    out[0] = (size_t)options->device_index;
    *out_count = 1;
    return KF_OK;
  }

  /* Explicit options win over the environment. */
  kf_backend backend = KF_BACKEND_ANY;
  const char *device = NULL;
  const char *backend_source = "options->backend", *device_source = "options->device_name";
  if (options != NULL && options->backend != KF_BACKEND_ANY) backend = options->backend;
  if (options != NULL && options->device_name != NULL) device = options->device_name;
  if (backend == KF_BACKEND_ANY && device == NULL) {
    const char *env_backend = getenv("KF_BACKEND");
    const char *env_device = getenv("KF_DEVICE");
    if (env_backend != NULL && env_backend[0] != '\0') {
      if (!parse_backend(env_backend, &backend))
        return kf_fail(KF_ERROR_INVALID_ARGUMENT, "KF_BACKEND=%s is not a backend (cpu, cuda, opencl, vulkan)",
                       env_backend);
      backend_source = "KF_BACKEND";
    }
    if (env_device != NULL && env_device[0] != '\0') {
      device = env_device;
      device_source = "KF_DEVICE";
    }
  }
  if (backend == KF_BACKEND_ANY && device == NULL) return KF_OK;

  if (backend != KF_BACKEND_ANY) {
    if ((int)backend < 0 || backend >= KF_BACKEND_COUNT)
      return kf_fail(KF_ERROR_INVALID_ARGUMENT, "%s %d is not a kf_backend value", backend_source, (int)backend);
    if (!backend_usable(backend)) {
      kf_backend_info info;
      fill_backend_info(backend, &info);
      return kf_fail(KF_ERROR_BACKEND_UNAVAILABLE, "%s=%s: backend unavailable: %s", backend_source,
                     kf_backend_name(backend), info.reason);
    }
  }

  /* KF_DEVICE forms: "3" (global index), "opencl:1" (backend index), or a name substring. */
  long index = -1;
  kf_backend index_backend = KF_BACKEND_ANY;
  if (device != NULL) {
    const char *colon = strchr(device, ':');
    char *end = NULL;
    if (colon != NULL) {
      char name[16];
      size_t len = (size_t)(colon - device);
      if (len < sizeof name) {
        memcpy(name, device, len);
        name[len] = '\0';
        if (parse_backend(name, &index_backend)) {
          index = strtol(colon + 1, &end, 10);
          if (end == colon + 1 || *end != '\0' || index < 0)
            return kf_fail(KF_ERROR_INVALID_ARGUMENT, "%s=%s: expected <backend>:<index>", device_source, device);
        }
      }
    } else if (isdigit((unsigned char)device[0])) {
      index = strtol(device, &end, 10);
      if (*end != '\0') index = -1; /* not a number: treat as a name */
    }
  }

  for (size_t i = 0; i < count && *out_count < capacity; ++i) {
    const kf_device_info *info = &infos[i];
    if (backend != KF_BACKEND_ANY && info->backend != backend) continue;
    if (!backend_usable(info->backend)) continue;
    if (device != NULL) {
      if (index_backend != KF_BACKEND_ANY) {
        if (info->backend != index_backend || info->backend_index != index) continue;
      } else if (index >= 0) {
        if ((long)i != index) continue;
      } else if (!contains_case_insensitive(info->name, device)) {
        continue;
      }
    }
    out[(*out_count)++] = i;
  }
  if (*out_count == 0) {
    if (device != NULL)
      return kf_fail(KF_ERROR_DEVICE_NOT_FOUND, "%s=%s matches no usable device%s%s", device_source, device,
                     backend != KF_BACKEND_ANY ? " of backend " : "",
                     backend != KF_BACKEND_ANY ? kf_backend_name(backend) : "");
    return kf_fail(KF_ERROR_DEVICE_NOT_FOUND, "%s=%s has no devices", backend_source, kf_backend_name(backend));
  }
  /* Asked for a backend only: hardware devices first, software devices after them. */
  if (device == NULL) {
    size_t hardware = 0;
    for (size_t i = 0; i < *out_count; ++i) {
      if (infos[out[i]].type != KF_DEVICE_TYPE_SOFTWARE) {
        size_t v = out[i];
        memmove(out + hardware + 1, out + hardware, (i - hardware) * sizeof *out);
        out[hardware++] = v;
      }
    }
  }
  return KF_OK;
}


kf_status kf_default_device(size_t *out_index) {
  KF_API_ENTER("kf_default_device");
  if (out_index == NULL) return kf_fail(KF_ERROR_NULL_ARGUMENT, "out_index is NULL");
  size_t candidates[64], n = 0;
  kf_status status = kf_registry_select(NULL, candidates, 64, &n);
  if (status != KF_OK) return status;
  if (n == 0) n = kf_registry_default_candidates(candidates, 64);
  if (n == 0) return kf_fail(KF_ERROR_DEVICE_NOT_FOUND, "no usable device (the CPU backend is missing?)");
  *out_index = candidates[0];
  return KF_OK;
}

/* vulkan_backend.c — the Vulkan backend: loader, probe, contexts, memory, the command stream and timers.
 * The kernels and their pipelines are in vulkan_kernels.c, the operations in vulkan_ops.c.
 *
 * One VkInstance serves the whole process (created at probe, never destroyed: devices listed by
 * kf_devices() refer to it). A context is a VkDevice with one compute queue. Every queued operation
 * is recorded into the context's current command buffer behind a full compute/transfer memory barrier,
 * so the queue behaves in order; the buffer is submitted when it is full or when the host needs the
 * results (synchronize, read, write, timer_end), and fences say when the device is done.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend_vulkan/vulkan_internal.h"
#include "core/dynlib.h"

/* ---------------------------------------------------------------------------------------------
 * Loader and process-wide state (written once, by probe, under the core's lock).
 */
#define KF_VK_DECLARE_GLOBAL_(name, optional) static PFN_##name name;
KF_VK_GLOBAL_FUNCTIONS(KF_VK_DECLARE_GLOBAL_)
KF_VK_INSTANCE_FUNCTIONS(KF_VK_DECLARE_GLOBAL_)
#undef KF_VK_DECLARE_GLOBAL_
static PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr;

static VkInstance g_instance;
static uint32_t g_instance_api_version;
static VkDebugUtilsMessengerEXT g_messenger;
static int g_have_kernels;

/* Why each probed device cannot run kfuse's kernels ("" when it can), indexed by ordinal. */
static char g_unusable_reason[KF_MAX_BACKEND_DEVICES][160];

/* Validation messages (KF_VULKAN_VALIDATION=1): 0 none, 1 being recorded, 2 recorded in g_validation_text.
 * The messenger may run on any thread, so the first message is published through this state. */
static atomic_int g_validation_state;
static char g_validation_text[512];

const char *kf_vk_result_name(VkResult result) {
#define KF_VK_RESULTS(X)                       \
  X(VK_SUCCESS)                                \
  X(VK_NOT_READY)                              \
  X(VK_TIMEOUT)                                \
  X(VK_INCOMPLETE)                             \
  X(VK_ERROR_OUT_OF_HOST_MEMORY)               \
  X(VK_ERROR_OUT_OF_DEVICE_MEMORY)             \
  X(VK_ERROR_INITIALIZATION_FAILED)            \
  X(VK_ERROR_DEVICE_LOST)                      \
  X(VK_ERROR_MEMORY_MAP_FAILED)                \
  X(VK_ERROR_LAYER_NOT_PRESENT)                \
  X(VK_ERROR_EXTENSION_NOT_PRESENT)            \
  X(VK_ERROR_FEATURE_NOT_PRESENT)              \
  X(VK_ERROR_INCOMPATIBLE_DRIVER)              \
  X(VK_ERROR_TOO_MANY_OBJECTS)                 \
  X(VK_ERROR_FORMAT_NOT_SUPPORTED)             \
  X(VK_ERROR_FRAGMENTED_POOL)                  \
  X(VK_ERROR_UNKNOWN)                          \
  X(VK_ERROR_OUT_OF_POOL_MEMORY)               \
  X(VK_ERROR_INVALID_EXTERNAL_HANDLE)          \
  X(VK_ERROR_FRAGMENTATION)                    \
  X(VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS)   \
  X(VK_PIPELINE_COMPILE_REQUIRED)
  switch (result) {
#define KF_VK_RESULT_CASE_(name) \
  case name:                     \
    return #name;
    KF_VK_RESULTS(KF_VK_RESULT_CASE_)
#undef KF_VK_RESULT_CASE_
    default:
      return "VkResult (unknown)";
  }
#undef KF_VK_RESULTS
}

static kf_status vk_failure(VkResult result, const char *call) {
  kf_status status = (result == VK_ERROR_OUT_OF_DEVICE_MEMORY || result == VK_ERROR_OUT_OF_HOST_MEMORY)
                         ? KF_ERROR_OUT_OF_MEMORY
                         : KF_ERROR_DEVICE_FAILURE;
  return kf_fail(status, "%s failed: %s", call, kf_vk_result_name(result));
}

static VKAPI_ATTR VkBool32 VKAPI_CALL validation_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                                          VkDebugUtilsMessageTypeFlagsEXT types,
                                                          const VkDebugUtilsMessengerCallbackDataEXT *data,
                                                          void *user_data) {
  (void)types;
  (void)user_data;
  if (!(severity & (VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT)))
    return VK_FALSE;
  char line[2048];
  snprintf(line, sizeof line, "%s", data && data->pMessage ? data->pMessage : "(no message)");
  for (char *c = line; *c; ++c)
    if (*c == '\n' || *c == '\r') *c = ' ';
  fprintf(stderr, "kfuse: vulkan validation: %s\n", line);
  int expected = 0;
  if (atomic_compare_exchange_strong(&g_validation_state, &expected, 1)) {
    snprintf(g_validation_text, sizeof g_validation_text, "%.500s", line);
    atomic_store(&g_validation_state, 2);
  }
  return VK_FALSE; /* never abort the Vulkan call */
}

kf_status kf_vk_check_validation(void) {
  int state = atomic_load(&g_validation_state);
  if (state == 0) return KF_OK;
  return kf_fail(KF_ERROR_DEVICE_FAILURE, "Vulkan validation reported: %s",
                 state == 2 ? g_validation_text : "(message being recorded)");
}

/* Loads libvulkan and the global entry points. 0 with a reason when the loader is missing. */
static int load_loader(char *reason, size_t reason_size) {
  static const char *const library_names[] = {"libvulkan.so.1", "libvulkan.so", NULL};
  static const kf_dl_symbol loader_symbols[] = {
      {"vkGetInstanceProcAddr", (void **)&vkGetInstanceProcAddr, 0},
  };
  char dl_reason[256];
  void *library = kf_dl_open(library_names, dl_reason, sizeof dl_reason);
  if (library == NULL) {
    snprintf(reason, reason_size, "libvulkan.so.1 not found (install the Vulkan loader, e.g. libvulkan1)");
    return 0;
  }
  if (!kf_dl_resolve(library, "libvulkan.so.1", loader_symbols, 1, reason, reason_size)) {
    kf_dl_close(library);
    return 0;
  }
  /* The loader stays open for the life of the process. */
#define KF_VK_RESOLVE_GLOBAL_(name, optional)                                                     \
  name = (PFN_##name)vkGetInstanceProcAddr(VK_NULL_HANDLE, #name);                                \
  if (name == NULL && !(optional)) {                                                              \
    snprintf(reason, reason_size, "libvulkan.so.1: vkGetInstanceProcAddr does not provide " #name); \
    return 0;                                                                                     \
  }
  KF_VK_GLOBAL_FUNCTIONS(KF_VK_RESOLVE_GLOBAL_)
#undef KF_VK_RESOLVE_GLOBAL_
  return 1;
}

static int resolve_instance_functions(char *reason, size_t reason_size) {
#define KF_VK_RESOLVE_INSTANCE_(name, optional)                                                    \
  name = (PFN_##name)vkGetInstanceProcAddr(g_instance, #name);                                     \
  if (name == NULL && !(optional)) {                                                               \
    snprintf(reason, reason_size, "the Vulkan instance does not provide " #name);                  \
    return 0;                                                                                      \
  }
  KF_VK_INSTANCE_FUNCTIONS(KF_VK_RESOLVE_INSTANCE_)
#undef KF_VK_RESOLVE_INSTANCE_
  return 1;
}

static int has_instance_layer(const char *name) {
  uint32_t count = 0;
  if (vkEnumerateInstanceLayerProperties(&count, NULL) != VK_SUCCESS || count == 0) return 0;
  VkLayerProperties *layers = calloc(count, sizeof *layers);
  if (layers == NULL) return 0;
  int found = 0;
  if (vkEnumerateInstanceLayerProperties(&count, layers) == VK_SUCCESS)
    for (uint32_t i = 0; i < count && !found; ++i) found = strcmp(layers[i].layerName, name) == 0;
  free(layers);
  return found;
}

static int has_instance_extension(const char *layer, const char *name) {
  uint32_t count = 0;
  if (vkEnumerateInstanceExtensionProperties(layer, &count, NULL) != VK_SUCCESS || count == 0) return 0;
  VkExtensionProperties *extensions = calloc(count, sizeof *extensions);
  if (extensions == NULL) return 0;
  int found = 0;
  if (vkEnumerateInstanceExtensionProperties(layer, &count, extensions) == VK_SUCCESS)
    for (uint32_t i = 0; i < count && !found; ++i) found = strcmp(extensions[i].extensionName, name) == 0;
  free(extensions);
  return found;
}

static const char *const kValidationLayer = "VK_LAYER_KHRONOS_validation";

/* Creates g_instance (API 1.2: bufferDeviceAddress is core there), with the validation layer and a
 * messenger when KF_VULKAN_VALIDATION=1. */
static int create_instance(char *reason, size_t reason_size) {
  uint32_t loader_version = VK_API_VERSION_1_0;
  if (vkEnumerateInstanceVersion != NULL && vkEnumerateInstanceVersion(&loader_version) != VK_SUCCESS)
    loader_version = VK_API_VERSION_1_0;
  if (loader_version < VK_API_VERSION_1_2) {
    snprintf(reason, reason_size, "the Vulkan loader supports Vulkan %u.%u; kfuse needs 1.2 (update libvulkan1)",
             VK_API_VERSION_MAJOR(loader_version), VK_API_VERSION_MINOR(loader_version));
    return 0;
  }
  g_instance_api_version = VK_API_VERSION_1_2;

  const int validation = kf_env_flag("KF_VULKAN_VALIDATION");
  const char *layers[1];
  const char *extensions[1];
  uint32_t layer_count = 0, extension_count = 0;
  VkDebugUtilsMessengerCreateInfoEXT messenger_info = {
      .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
      .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
      .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                     VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
      .pfnUserCallback = validation_message,
  };
  if (validation) {
    if (!has_instance_layer(kValidationLayer)) {
      snprintf(reason, reason_size,
               "KF_VULKAN_VALIDATION=1 but %s is not installed (install vulkan-validationlayers)", kValidationLayer);
      return 0;
    }
    if (!has_instance_extension(NULL, VK_EXT_DEBUG_UTILS_EXTENSION_NAME) &&
        !has_instance_extension(kValidationLayer, VK_EXT_DEBUG_UTILS_EXTENSION_NAME)) {
      snprintf(reason, reason_size, "KF_VULKAN_VALIDATION=1 but %s is not available",
               VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
      return 0;
    }
    layers[layer_count++] = kValidationLayer;
    extensions[extension_count++] = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
  }
  VkApplicationInfo app = {
      .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
      .pApplicationName = "kfuse",
      .pEngineName = "kfuse",
      .engineVersion = VK_MAKE_API_VERSION(0, KF_VERSION_MAJOR, KF_VERSION_MINOR, KF_VERSION_PATCH),
      .apiVersion = g_instance_api_version,
  };
  VkInstanceCreateInfo info = {
      .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
      /* Messages during vkCreateInstance / vkDestroyInstance go through this copy of the messenger. */
      .pNext = validation ? &messenger_info : NULL,
      .pApplicationInfo = &app,
      .enabledLayerCount = layer_count,
      .ppEnabledLayerNames = layers,
      .enabledExtensionCount = extension_count,
      .ppEnabledExtensionNames = extensions,
  };
  VkResult result = vkCreateInstance(&info, NULL, &g_instance);
  if (result == VK_ERROR_INCOMPATIBLE_DRIVER) {
    snprintf(reason, reason_size, "no Vulkan driver found (VK_ERROR_INCOMPATIBLE_DRIVER)");
    return 0;
  }
  if (result != VK_SUCCESS) {
    snprintf(reason, reason_size, "vkCreateInstance failed: %s", kf_vk_result_name(result));
    return 0;
  }
  if (!resolve_instance_functions(reason, reason_size)) return 0;
  if (validation) {
    if (vkCreateDebugUtilsMessengerEXT == NULL) {
      snprintf(reason, reason_size, "KF_VULKAN_VALIDATION=1 but vkCreateDebugUtilsMessengerEXT is missing");
      return 0;
    }
    result = vkCreateDebugUtilsMessengerEXT(g_instance, &messenger_info, NULL, &g_messenger);
    if (result != VK_SUCCESS) {
      snprintf(reason, reason_size, "vkCreateDebugUtilsMessengerEXT failed: %s", kf_vk_result_name(result));
      return 0;
    }
  }
  return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Probe
 */
static const char *vendor_name(uint32_t vendor_id) {
  switch (vendor_id) {
    case 0x10DE: return "NVIDIA";
    case 0x1002: return "AMD";
    case 0x8086: return "Intel";
    case 0x13B5: return "ARM";
    case 0x5143: return "Qualcomm";
    case 0x1010: return "Imagination";
    case 0x106B: return "Apple";
    case 0x1AE0: return "Google";
    case VK_VENDOR_ID_MESA: return "Mesa";
    case VK_VENDOR_ID_POCL: return "PoCL";
    default: return NULL;
  }
}

static void format_driver_version(uint32_t vendor_id, uint32_t version, const char *driver_info, char *out,
                                  size_t out_size) {
  char numeric[32];
  if (vendor_id == 0x10DE) /* NVIDIA packs major.minor.secondary.tertiary in 10.8.8.6 bits */
    snprintf(numeric, sizeof numeric, "%u.%u.%u.%u", version >> 22, (version >> 14) & 0xffu, (version >> 6) & 0xffu,
             version & 0x3fu);
  else
    snprintf(numeric, sizeof numeric, "%u.%u.%u", VK_API_VERSION_MAJOR(version), VK_API_VERSION_MINOR(version),
             VK_API_VERSION_PATCH(version));
  /* Mesa drivers report their own numbering in driverInfo ("Mesa 22.3.6"); show it beside. */
  if (driver_info[0] != '\0' && strncmp(driver_info, numeric, strlen(driver_info)) != 0)
    snprintf(out, out_size, "%.31s (%.28s)", numeric, driver_info);
  else
    snprintf(out, out_size, "%s", numeric);
}

static int has_device_extension(const VkExtensionProperties *extensions, uint32_t count, const char *name) {
  for (uint32_t i = 0; i < count; ++i)
    if (strcmp(extensions[i].extensionName, name) == 0) return 1;
  return 0;
}

/* The queue family a context uses: one with compute, preferring a compute-only family (no graphics
 * work shares it) that has timestamps. UINT32_MAX when there is none. */
static uint32_t pick_queue_family(VkPhysicalDevice physical_device, uint32_t *out_timestamp_bits) {
  uint32_t count = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(physical_device, &count, NULL);
  VkQueueFamilyProperties families[32];
  if (count > 32) count = 32;
  vkGetPhysicalDeviceQueueFamilyProperties(physical_device, &count, families);
  uint32_t best = UINT32_MAX;
  int best_score = -1;
  for (uint32_t i = 0; i < count; ++i) {
    if (!(families[i].queueFlags & VK_QUEUE_COMPUTE_BIT) || families[i].queueCount == 0) continue;
    int score = (families[i].timestampValidBits != 0 ? 2 : 0) + (families[i].queueFlags & VK_QUEUE_GRAPHICS_BIT ? 0 : 1);
    if (score > best_score) {
      best_score = score;
      best = i;
      if (out_timestamp_bits) *out_timestamp_bits = families[i].timestampValidBits;
    }
  }
  return best;
}

static void append(char *text, size_t size, const char *fmt, const char *value) {
  size_t used = strlen(text);
  if (used + 1 >= size) return;
  snprintf(text + used, size - used, fmt, value);
}

static void describe_device(VkPhysicalDevice physical_device, int ordinal, kf_backend_device *out) {
  kf_device_info *info = &out->info;
  memset(out, 0, sizeof *out);
  info->struct_size = sizeof *info;
  info->backend = KF_BACKEND_VULKAN;
  info->same_device_as = -1;
  out->handle = (void *)physical_device;
  out->ordinal = ordinal;
  char *unusable = g_unusable_reason[ordinal];
  unusable[0] = '\0';

  VkPhysicalDeviceProperties basic;
  vkGetPhysicalDeviceProperties(physical_device, &basic);
  const int api_1_2 = basic.apiVersion >= VK_API_VERSION_1_2;

  uint32_t extension_count = 0;
  VkExtensionProperties *extensions = NULL;
  if (vkEnumerateDeviceExtensionProperties(physical_device, NULL, &extension_count, NULL) == VK_SUCCESS &&
      extension_count > 0) {
    extensions = calloc(extension_count, sizeof *extensions);
    if (extensions == NULL ||
        vkEnumerateDeviceExtensionProperties(physical_device, NULL, &extension_count, extensions) != VK_SUCCESS)
      extension_count = 0;
  }
  const int has_pci = has_device_extension(extensions, extension_count, VK_EXT_PCI_BUS_INFO_EXTENSION_NAME);
  const int has_sm_builtins = has_device_extension(extensions, extension_count, VK_NV_SHADER_SM_BUILTINS_EXTENSION_NAME);
  const int has_amd_cores =
      has_device_extension(extensions, extension_count, VK_AMD_SHADER_CORE_PROPERTIES_EXTENSION_NAME);
  const char *coopmat = has_device_extension(extensions, extension_count, "VK_KHR_cooperative_matrix") ? "KHR"
                        : has_device_extension(extensions, extension_count, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME)
                            ? "NV"
                            : NULL;
  free(extensions);

  /* Properties: the 1.1/1.2 structures are chained only where the device supports them. */
  VkPhysicalDevicePCIBusInfoPropertiesEXT pci = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PCI_BUS_INFO_PROPERTIES_EXT};
  VkPhysicalDeviceShaderSMBuiltinsPropertiesNV sm = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_SM_BUILTINS_PROPERTIES_NV};
  VkPhysicalDeviceShaderCorePropertiesAMD amd = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_CORE_PROPERTIES_AMD};
  VkPhysicalDeviceDriverProperties driver = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
  VkPhysicalDeviceIDProperties ids = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES};
  VkPhysicalDeviceSubgroupProperties subgroup = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
  VkPhysicalDeviceProperties2 properties = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
  VkPhysicalDeviceBufferDeviceAddressFeatures bda = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_BUFFER_DEVICE_ADDRESS_FEATURES};
  VkPhysicalDeviceShaderFloat16Int8Features float16 = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
  VkPhysicalDevice16BitStorageFeatures storage16 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES};
  VkPhysicalDeviceFeatures2 features = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  if (api_1_2) {
    properties.pNext = &subgroup;
    subgroup.pNext = &ids;
    ids.pNext = &driver;
    void **tail = &driver.pNext;
    if (has_pci) *tail = &pci, tail = &pci.pNext;
    if (has_sm_builtins) *tail = &sm, tail = &sm.pNext;
    if (has_amd_cores) *tail = &amd, tail = &amd.pNext;
    vkGetPhysicalDeviceProperties2(physical_device, &properties);
    features.pNext = &bda;
    bda.pNext = &float16;
    float16.pNext = &storage16;
  } else {
    properties.properties = basic;
  }
  vkGetPhysicalDeviceFeatures2(physical_device, &features);
  const VkPhysicalDeviceProperties *p = &properties.properties;

  snprintf(info->name, sizeof info->name, "%s", p->deviceName);
  const char *vendor = vendor_name(p->vendorID);
  if (vendor != NULL)
    snprintf(info->vendor, sizeof info->vendor, "%s", vendor);
  else
    snprintf(info->vendor, sizeof info->vendor, "0x%x", p->vendorID);
  format_driver_version(p->vendorID, p->driverVersion, api_1_2 ? driver.driverInfo : "", info->driver_version,
                        sizeof info->driver_version);
  snprintf(info->api_version, sizeof info->api_version, "Vulkan %u.%u.%u", VK_API_VERSION_MAJOR(p->apiVersion),
           VK_API_VERSION_MINOR(p->apiVersion), VK_API_VERSION_PATCH(p->apiVersion));
  switch (p->deviceType) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: info->type = KF_DEVICE_TYPE_DISCRETE_GPU; break;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: info->type = KF_DEVICE_TYPE_INTEGRATED_GPU; break;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: info->type = KF_DEVICE_TYPE_SOFTWARE; break;
    default: info->type = KF_DEVICE_TYPE_OTHER; break;
  }

  VkPhysicalDeviceMemoryProperties memory;
  vkGetPhysicalDeviceMemoryProperties(physical_device, &memory);
  for (uint32_t i = 0; i < memory.memoryHeapCount; ++i)
    if ((memory.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) && memory.memoryHeaps[i].size > info->memory_bytes)
      info->memory_bytes = memory.memoryHeaps[i].size;

  /* Core Vulkan does not report compute units; two vendor extensions do. Software drivers run on the
   * host's cores. */
  if (has_sm_builtins && api_1_2)
    info->compute_units = sm.shaderSMCount;
  else if (has_amd_cores && api_1_2)
    info->compute_units = amd.shaderEngineCount * amd.shaderArraysPerEngineCount * amd.computeUnitsPerShaderArray;
  else if (p->deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    info->compute_units = cores > 0 ? (uint32_t)cores : 0;
  }

  const int subgroup_arithmetic = api_1_2 && (subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                                  (subgroup.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT);
  if (api_1_2 && float16.shaderFloat16 && storage16.storageBuffer16BitAccess) info->caps |= KF_CAP_F16;
  if (subgroup_arithmetic) info->caps |= KF_CAP_SUBGROUPS;
  if (api_1_2 && bda.bufferDeviceAddress) info->caps |= KF_CAP_BUFFER_DEVICE_ADDRESS;
  if (coopmat != NULL) info->caps |= KF_CAP_COOPERATIVE_MATRIX;
  if (features.features.shaderInt64) info->caps |= KF_CAP_INT64;

  if (has_pci && api_1_2) {
    snprintf(info->pci_bus_id, sizeof info->pci_bus_id, "%04x:%02x:%02x.%x", pci.pciDomain, pci.pciBus, pci.pciDevice,
             pci.pciFunction);
  }
  if (api_1_2) {
    memcpy(info->uuid, ids.deviceUUID, sizeof info->uuid);
    info->has_uuid = 1;
  }

  /* What the kernels need: SPIR-V 1.5 (Vulkan 1.2), buffer device addresses and 64-bit integers for
   * them, 16-bit storage for f16/bf16 operands, subgroup arithmetic for the reductions, a compute queue. */
  if (!api_1_2) append(unusable, sizeof g_unusable_reason[0], "%s", "needs Vulkan 1.2, ");
  if (!(info->caps & KF_CAP_BUFFER_DEVICE_ADDRESS)) append(unusable, sizeof g_unusable_reason[0], "%s", "no bufferDeviceAddress, ");
  if (!(info->caps & KF_CAP_INT64)) append(unusable, sizeof g_unusable_reason[0], "%s", "no shaderInt64, ");
  if (api_1_2 && !storage16.storageBuffer16BitAccess)
    append(unusable, sizeof g_unusable_reason[0], "%s", "no storageBuffer16BitAccess, ");
  if (api_1_2 && !subgroup_arithmetic)
    append(unusable, sizeof g_unusable_reason[0], "%s", "no subgroup arithmetic in compute shaders, ");
  if (pick_queue_family(physical_device, NULL) == UINT32_MAX)
    append(unusable, sizeof g_unusable_reason[0], "%s", "no compute queue, ");
  size_t unusable_len = strlen(unusable);
  if (unusable_len >= 2) unusable[unusable_len - 2] = '\0'; /* drop the last ", " */

  char *text = info->caps_text;
  const size_t text_size = sizeof info->caps_text;
  text[0] = '\0';
  if (unusable[0] != '\0') append(text, text_size, "not usable (%s), ", unusable);
  if (api_1_2) {
    char number[16];
    snprintf(number, sizeof number, "%u", subgroup.subgroupSize);
    append(text, text_size, "subgroup %s, ", number);
  }
  if (info->caps & KF_CAP_F16) append(text, text_size, "%s", "fp16, ");
  if (info->caps & KF_CAP_BUFFER_DEVICE_ADDRESS) append(text, text_size, "%s", "bda, ");
  if (info->caps & KF_CAP_INT64) append(text, text_size, "%s", "int64, ");
  if (coopmat != NULL) append(text, text_size, "coopmat(%s), ", coopmat);
  {
    char number[32];
    snprintf(number, sizeof number, "%u", p->limits.maxComputeSharedMemorySize / 1024u);
    append(text, text_size, "shared %sKiB", number);
  }
}

static void vulkan_probe(kf_probe_result *out) {
  memset(out, 0, sizeof *out);
  if (!load_loader(out->reason, sizeof out->reason)) return;
  {
    uint32_t loader_version = VK_API_VERSION_1_0;
    if (vkEnumerateInstanceVersion != NULL) vkEnumerateInstanceVersion(&loader_version);
    snprintf(out->runtime, sizeof out->runtime, "libvulkan.so.1 (loader %u.%u.%u)", VK_API_VERSION_MAJOR(loader_version),
             VK_API_VERSION_MINOR(loader_version), VK_API_VERSION_PATCH(loader_version));
  }
  if (!create_instance(out->reason, sizeof out->reason)) return;

  uint32_t count = 0;
  VkResult result = vkEnumeratePhysicalDevices(g_instance, &count, NULL);
  if (result != VK_SUCCESS || count == 0) {
    snprintf(out->reason, sizeof out->reason, "no Vulkan driver found (%s)",
             result != VK_SUCCESS ? kf_vk_result_name(result) : "no physical devices; install an ICD, e.g. mesa-vulkan-drivers");
    return;
  }
  VkPhysicalDevice physical_devices[KF_MAX_BACKEND_DEVICES];
  if (count > KF_MAX_BACKEND_DEVICES) count = KF_MAX_BACKEND_DEVICES;
  result = vkEnumeratePhysicalDevices(g_instance, &count, physical_devices);
  if (result != VK_SUCCESS && result != VK_INCOMPLETE) {
    snprintf(out->reason, sizeof out->reason, "vkEnumeratePhysicalDevices failed: %s", kf_vk_result_name(result));
    return;
  }
  int usable = 0;
  for (uint32_t i = 0; i < count; ++i) {
    describe_device(physical_devices[i], (int)i, &out->devices[i]);
    if (g_unusable_reason[i][0] == '\0') ++usable;
  }
  out->device_count = (int)count;

  g_have_kernels = kf_vk_kernels_built();
  if (!g_have_kernels) {
    snprintf(out->reason, sizeof out->reason, "built without Vulkan kernels (glslc not found at build time)");
    return;
  }
  if (usable == 0) {
    snprintf(out->reason, sizeof out->reason, "no usable Vulkan device: %.80s: %.120s", out->devices[0].info.name,
             g_unusable_reason[0]);
    return;
  }
  if (usable < (int)count) snprintf(out->reason, sizeof out->reason, "some Vulkan devices are not usable (see caps_text)");
  out->available = 1;
}

/* ---------------------------------------------------------------------------------------------
 * Command stream
 */
static kf_status stream_wait_slot(kf_backend_context *ctx, kf_vk_stream_slot *slot) {
  if (!slot->pending) return KF_OK;
  VkResult result = ctx->fn.vkWaitForFences(ctx->device, 1, &slot->done, VK_TRUE, UINT64_MAX);
  if (result != VK_SUCCESS) return vk_failure(result, "vkWaitForFences");
  result = ctx->fn.vkResetFences(ctx->device, 1, &slot->done);
  if (result != VK_SUCCESS) return vk_failure(result, "vkResetFences");
  slot->pending = 0;
  return KF_OK;
}

VkCommandBuffer kf_vk_stream_commands(kf_backend_context *ctx) { return ctx->slots[ctx->current_slot].commands; }

kf_status kf_vk_stream_begin_command(kf_backend_context *ctx) {
  kf_vk_stream_slot *slot = &ctx->slots[ctx->current_slot];
  if (!ctx->recording) {
    kf_status status = stream_wait_slot(ctx, slot);
    if (status != KF_OK) return status;
    VkResult result = ctx->fn.vkResetCommandBuffer(slot->commands, 0);
    if (result != VK_SUCCESS) return vk_failure(result, "vkResetCommandBuffer");
    VkCommandBufferBeginInfo begin = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                      .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    result = ctx->fn.vkBeginCommandBuffer(slot->commands, &begin);
    if (result != VK_SUCCESS) return vk_failure(result, "vkBeginCommandBuffer");
    ctx->recording = 1;
    ctx->recorded_commands = 0;
  }
  /* Everything earlier in submission order (also in earlier command buffers) finishes its shader and
   * transfer writes before the next command reads or writes anything. */
  VkMemoryBarrier barrier = {
      .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
      .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
      .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                       VK_ACCESS_TRANSFER_WRITE_BIT,
  };
  const VkPipelineStageFlags stages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
  ctx->fn.vkCmdPipelineBarrier(slot->commands, stages, stages, 0, 1, &barrier, 0, NULL, 0, NULL);
  return KF_OK;
}

static kf_status stream_submit(kf_backend_context *ctx) {
  if (!ctx->recording) return KF_OK;
  kf_vk_stream_slot *slot = &ctx->slots[ctx->current_slot];
  ctx->recording = 0;
  VkResult result = ctx->fn.vkEndCommandBuffer(slot->commands);
  if (result != VK_SUCCESS) return vk_failure(result, "vkEndCommandBuffer");
  VkSubmitInfo submit = {
      .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &slot->commands};
  result = ctx->fn.vkQueueSubmit(ctx->queue, 1, &submit, slot->done);
  if (result != VK_SUCCESS) return vk_failure(result, "vkQueueSubmit");
  slot->pending = 1;
  ctx->current_slot = (ctx->current_slot + 1) % KF_VK_STREAM_SLOTS;
  return KF_OK;
}

kf_status kf_vk_stream_command_recorded(kf_backend_context *ctx) {
  if (++ctx->recorded_commands < KF_VK_COMMANDS_PER_SUBMIT) return KF_OK;
  return stream_submit(ctx);
}

/* Submits what is recorded and waits until the queue has finished everything. */
static kf_status stream_finish(kf_backend_context *ctx) {
  kf_status status = stream_submit(ctx);
  if (status != KF_OK) return status;
  /* Oldest first: current_slot is the next to be reused, so it was submitted earliest. */
  for (int i = 0; i < KF_VK_STREAM_SLOTS; ++i) {
    status = stream_wait_slot(ctx, &ctx->slots[(ctx->current_slot + i) % KF_VK_STREAM_SLOTS]);
    if (status != KF_OK) return status;
  }
  return kf_vk_check_validation();
}

/* ---------------------------------------------------------------------------------------------
 * Context
 */
static int find_memory_type(const VkPhysicalDeviceMemoryProperties *memory, uint32_t allowed,
                            VkMemoryPropertyFlags required, VkMemoryPropertyFlags preferred) {
  int fallback = -1;
  for (uint32_t i = 0; i < memory->memoryTypeCount; ++i) {
    if (!(allowed & (1u << i))) continue;
    VkMemoryPropertyFlags flags = memory->memoryTypes[i].propertyFlags;
    if ((flags & required) != required) continue;
    if ((flags & preferred) == preferred) return (int)i;
    if (fallback < 0) fallback = (int)i;
  }
  return fallback;
}

static void vulkan_context_destroy(kf_backend_context *ctx) {
  if (ctx == NULL) return;
  if (ctx->device != VK_NULL_HANDLE) {
    ctx->fn.vkDeviceWaitIdle(ctx->device);
    kf_vk_kernels_destroy(ctx);
    if (ctx->timer_queries != VK_NULL_HANDLE) ctx->fn.vkDestroyQueryPool(ctx->device, ctx->timer_queries, NULL);
    if (ctx->staging_buffer != VK_NULL_HANDLE) ctx->fn.vkDestroyBuffer(ctx->device, ctx->staging_buffer, NULL);
    if (ctx->staging_memory != VK_NULL_HANDLE) ctx->fn.vkFreeMemory(ctx->device, ctx->staging_memory, NULL);
    for (int i = 0; i < KF_VK_STREAM_SLOTS; ++i)
      if (ctx->slots[i].done != VK_NULL_HANDLE) ctx->fn.vkDestroyFence(ctx->device, ctx->slots[i].done, NULL);
    if (ctx->command_pool != VK_NULL_HANDLE) ctx->fn.vkDestroyCommandPool(ctx->device, ctx->command_pool, NULL);
    ctx->fn.vkDestroyDevice(ctx->device, NULL);
  }
  free(ctx);
}

/* Whether gemm_coopmat.comp can run: the device has VK_NV_cooperative_matrix with its feature, lists
 * 16×16×16 f16 × f16 + f32 products at subgroup scope, and has subgroups of 32 (the shader's fragment
 * layout). */
static int nv_cooperative_matrix_usable(VkPhysicalDevice physical_device) {
  if (vkGetPhysicalDeviceCooperativeMatrixPropertiesNV == NULL) return 0;
  uint32_t count = 0;
  VkExtensionProperties *extensions = NULL;
  int found = 0;
  if (vkEnumerateDeviceExtensionProperties(physical_device, NULL, &count, NULL) == VK_SUCCESS && count > 0 &&
      (extensions = calloc(count, sizeof *extensions)) != NULL &&
      vkEnumerateDeviceExtensionProperties(physical_device, NULL, &count, extensions) == VK_SUCCESS)
    found = has_device_extension(extensions, count, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME);
  free(extensions);
  if (!found) return 0;
  VkPhysicalDeviceCooperativeMatrixFeaturesNV coopmat = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
  VkPhysicalDeviceFeatures2 features = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &coopmat};
  vkGetPhysicalDeviceFeatures2(physical_device, &features);
  VkPhysicalDeviceSubgroupProperties subgroup = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
  VkPhysicalDeviceProperties2 properties = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &subgroup};
  vkGetPhysicalDeviceProperties2(physical_device, &properties);
  if (!coopmat.cooperativeMatrix || subgroup.subgroupSize != 32) return 0;
  count = 0;
  if (vkGetPhysicalDeviceCooperativeMatrixPropertiesNV(physical_device, &count, NULL) != VK_SUCCESS || count == 0) return 0;
  VkCooperativeMatrixPropertiesNV *shapes = calloc(count, sizeof *shapes);
  if (shapes == NULL) return 0;
  for (uint32_t i = 0; i < count; ++i) shapes[i].sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV;
  found = 0;
  if (vkGetPhysicalDeviceCooperativeMatrixPropertiesNV(physical_device, &count, shapes) == VK_SUCCESS)
    for (uint32_t i = 0; i < count && !found; ++i)
      found = shapes[i].MSize == 16 && shapes[i].NSize == 16 && shapes[i].KSize == 16 &&
              shapes[i].AType == VK_COMPONENT_TYPE_FLOAT16_NV && shapes[i].BType == VK_COMPONENT_TYPE_FLOAT16_NV &&
              shapes[i].CType == VK_COMPONENT_TYPE_FLOAT32_NV && shapes[i].DType == VK_COMPONENT_TYPE_FLOAT32_NV &&
              shapes[i].scope == VK_SCOPE_SUBGROUP_NV;
  free(shapes);
  return found;
}

static kf_status vulkan_context_create(const kf_backend_device *device, uint32_t flags, kf_backend_context **out_ctx) {
  (void)flags;
  kf_status status = kf_vk_check_validation();
  if (status != KF_OK) return status;
  if (!g_have_kernels)
    return kf_fail(KF_ERROR_UNSUPPORTED, "built without Vulkan kernels (glslc not found at build time)");
  const char *unusable = g_unusable_reason[device->ordinal];
  if (unusable[0] != '\0')
    return kf_fail(KF_ERROR_UNSUPPORTED, "Vulkan device \"%s\" cannot run kfuse kernels: %s", device->info.name, unusable);

  kf_backend_context *ctx = calloc(1, sizeof *ctx);
  if (ctx == NULL) return kf_fail(KF_ERROR_OUT_OF_MEMORY, "out of host memory");
  ctx->physical_device = (VkPhysicalDevice)device->handle;
  ctx->queue_family = pick_queue_family(ctx->physical_device, &ctx->timestamp_valid_bits);

  VkPhysicalDeviceMaintenance3Properties maintenance3 = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
  VkPhysicalDeviceProperties2 properties = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                            .pNext = &maintenance3};
  vkGetPhysicalDeviceProperties2(ctx->physical_device, &properties);
  ctx->max_allocation_size = maintenance3.maxMemoryAllocationSize;
  ctx->max_workgroup_invocations = properties.properties.limits.maxComputeWorkGroupInvocations;
  if (properties.properties.limits.maxComputeWorkGroupSize[0] < ctx->max_workgroup_invocations)
    ctx->max_workgroup_invocations = properties.properties.limits.maxComputeWorkGroupSize[0];
  ctx->max_workgroups_x = properties.properties.limits.maxComputeWorkGroupCount[0];
  ctx->max_workgroups_y = properties.properties.limits.maxComputeWorkGroupCount[1];
  ctx->max_shared_memory_bytes = properties.properties.limits.maxComputeSharedMemorySize;
  ctx->timestamp_period_ns = properties.properties.limits.timestampPeriod;
  vkGetPhysicalDeviceMemoryProperties(ctx->physical_device, &ctx->memory_properties);

  /* Features: the required ones were checked at probe; f16 arithmetic is enabled where present. */
  VkPhysicalDeviceVulkan12Features supported12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
  VkPhysicalDeviceFeatures2 supported = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &supported12};
  vkGetPhysicalDeviceFeatures2(ctx->physical_device, &supported);
  VkPhysicalDeviceVulkan12Features enable12 = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
      .bufferDeviceAddress = VK_TRUE,
      .shaderFloat16 = supported12.shaderFloat16,
  };
  VkPhysicalDeviceVulkan11Features enable11 = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
      .pNext = &enable12,
      .storageBuffer16BitAccess = VK_TRUE,
  };
  VkPhysicalDeviceFeatures2 enable = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &enable11};
  enable.features.shaderInt64 = VK_TRUE;
  /* VK_NV_cooperative_matrix for the f16 GEMM (gemm_coopmat.comp), where the device has it. The shader
   * also declares f16 arithmetic and the Vulkan memory model (glslang's GL_KHR_memory_scope_semantics,
   * which names the subgroup scope of its matrices). */
  const char *device_extensions[1];
  uint32_t device_extension_count = 0;
  VkPhysicalDeviceCooperativeMatrixFeaturesNV enable_coopmat = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV,
      .cooperativeMatrix = VK_TRUE,
  };
  if (supported12.shaderFloat16 && supported12.vulkanMemoryModel &&
      nv_cooperative_matrix_usable(ctx->physical_device)) {
    enable12.vulkanMemoryModel = VK_TRUE;
    device_extensions[device_extension_count++] = VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME;
    enable_coopmat.pNext = enable.pNext;
    enable.pNext = &enable_coopmat;
    ctx->has_nv_cooperative_matrix = 1;
  }
  const float priority = 1.0f;
  VkDeviceQueueCreateInfo queue_info = {
      .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
      .queueFamilyIndex = ctx->queue_family,
      .queueCount = 1,
      .pQueuePriorities = &priority,
  };
  VkDeviceCreateInfo device_info = {
      .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
      .pNext = &enable,
      .queueCreateInfoCount = 1,
      .pQueueCreateInfos = &queue_info,
      .enabledExtensionCount = device_extension_count,
      .ppEnabledExtensionNames = device_extensions,
  };
  VkResult result = vkCreateDevice(ctx->physical_device, &device_info, NULL, &ctx->device);
  if (result != VK_SUCCESS) {
    ctx->device = VK_NULL_HANDLE;
    free(ctx);
    return vk_failure(result, "vkCreateDevice");
  }
#define KF_VK_RESOLVE_DEVICE_(name, optional)                                                   \
  ctx->fn.name = (PFN_##name)vkGetDeviceProcAddr(ctx->device, #name);                           \
  if (ctx->fn.name == NULL && !(optional)) {                                                    \
    PFN_vkDestroyDevice destroy = (PFN_vkDestroyDevice)vkGetDeviceProcAddr(ctx->device, "vkDestroyDevice"); \
    if (destroy != NULL) destroy(ctx->device, NULL);                                            \
    free(ctx);                                                                                  \
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "the Vulkan device does not provide " #name);       \
  }
  KF_VK_DEVICE_FUNCTIONS(KF_VK_RESOLVE_DEVICE_)
#undef KF_VK_RESOLVE_DEVICE_
  ctx->fn.vkGetDeviceQueue(ctx->device, ctx->queue_family, 0, &ctx->queue);

  VkCommandPoolCreateInfo pool_info = {
      .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
      .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
      .queueFamilyIndex = ctx->queue_family,
  };
  if ((result = ctx->fn.vkCreateCommandPool(ctx->device, &pool_info, NULL, &ctx->command_pool)) != VK_SUCCESS) {
    status = vk_failure(result, "vkCreateCommandPool");
    goto fail;
  }
  VkCommandBuffer buffers[KF_VK_STREAM_SLOTS];
  VkCommandBufferAllocateInfo buffer_info = {
      .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
      .commandPool = ctx->command_pool,
      .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
      .commandBufferCount = KF_VK_STREAM_SLOTS,
  };
  if ((result = ctx->fn.vkAllocateCommandBuffers(ctx->device, &buffer_info, buffers)) != VK_SUCCESS) {
    status = vk_failure(result, "vkAllocateCommandBuffers");
    goto fail;
  }
  for (int i = 0; i < KF_VK_STREAM_SLOTS; ++i) {
    ctx->slots[i].commands = buffers[i];
    VkFenceCreateInfo fence_info = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    if ((result = ctx->fn.vkCreateFence(ctx->device, &fence_info, NULL, &ctx->slots[i].done)) != VK_SUCCESS) {
      status = vk_failure(result, "vkCreateFence");
      goto fail;
    }
  }
  if (ctx->timestamp_valid_bits != 0) {
    VkQueryPoolCreateInfo query_info = {
        .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO, .queryType = VK_QUERY_TYPE_TIMESTAMP, .queryCount = 2};
    if ((result = ctx->fn.vkCreateQueryPool(ctx->device, &query_info, NULL, &ctx->timer_queries)) != VK_SUCCESS) {
      status = vk_failure(result, "vkCreateQueryPool");
      goto fail;
    }
  }
  if ((status = kf_vk_kernels_init(ctx)) != KF_OK) goto fail;
  if ((status = kf_vk_check_validation()) != KF_OK) goto fail;
  *out_ctx = ctx;
  return KF_OK;
fail:
  vulkan_context_destroy(ctx);
  return status;
}

/* ---------------------------------------------------------------------------------------------
 * Memory
 */

/* kfuse buffers start 256-byte aligned in device address space (the contract of buffer_alloc, and
 * what lets the kernels use 16-byte loads); the VkBuffer gets that much slack in case the driver's
 * address is less aligned. */
#define KF_VK_BUFFER_ALIGNMENT 256u

/* One VkBuffer with its own VkDeviceMemory. */
static kf_status create_buffer(kf_backend_context *ctx, VkDeviceSize size, VkBufferUsageFlags usage,
                               VkMemoryPropertyFlags required, VkMemoryPropertyFlags preferred, int device_address,
                               VkBuffer *out_buffer, VkDeviceMemory *out_memory) {
  VkBufferCreateInfo buffer_info = {
      .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
      .size = size,
      .usage = usage,
      .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
  };
  VkBuffer buffer;
  VkResult result = ctx->fn.vkCreateBuffer(ctx->device, &buffer_info, NULL, &buffer);
  if (result != VK_SUCCESS) return vk_failure(result, "vkCreateBuffer");
  VkMemoryRequirements requirements;
  ctx->fn.vkGetBufferMemoryRequirements(ctx->device, buffer, &requirements);
  int type = find_memory_type(&ctx->memory_properties, requirements.memoryTypeBits, required, preferred);
  if (type < 0) {
    ctx->fn.vkDestroyBuffer(ctx->device, buffer, NULL);
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "no Vulkan memory type fits a buffer of %llu bytes",
                   (unsigned long long)size);
  }
  VkMemoryAllocateFlagsInfo flags_info = {
      .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO,
      .flags = VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT,
  };
  VkMemoryAllocateInfo allocate_info = {
      .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
      .pNext = device_address ? &flags_info : NULL,
      .allocationSize = requirements.size,
      .memoryTypeIndex = (uint32_t)type,
  };
  VkDeviceMemory memory;
  result = ctx->fn.vkAllocateMemory(ctx->device, &allocate_info, NULL, &memory);
  if (result != VK_SUCCESS) {
    ctx->fn.vkDestroyBuffer(ctx->device, buffer, NULL);
    if (result == VK_ERROR_OUT_OF_DEVICE_MEMORY || result == VK_ERROR_OUT_OF_HOST_MEMORY)
      return kf_fail(KF_ERROR_OUT_OF_MEMORY, "vkAllocateMemory of %llu bytes failed: %s",
                     (unsigned long long)requirements.size, kf_vk_result_name(result));
    return vk_failure(result, "vkAllocateMemory");
  }
  result = ctx->fn.vkBindBufferMemory(ctx->device, buffer, memory, 0);
  if (result != VK_SUCCESS) {
    ctx->fn.vkDestroyBuffer(ctx->device, buffer, NULL);
    ctx->fn.vkFreeMemory(ctx->device, memory, NULL);
    return vk_failure(result, "vkBindBufferMemory");
  }
  *out_buffer = buffer;
  *out_memory = memory;
  return KF_OK;
}

static kf_status vulkan_buffer_alloc(kf_backend_context *ctx, size_t bytes, kf_buffer **out_buffer) {
  kf_status status = kf_vk_check_validation();
  if (status != KF_OK) return status;
  if (bytes > SIZE_MAX - KF_VK_BUFFER_ALIGNMENT ||
      (ctx->max_allocation_size != 0 && bytes + KF_VK_BUFFER_ALIGNMENT > ctx->max_allocation_size))
    return kf_fail(KF_ERROR_OUT_OF_MEMORY, "%zu bytes exceed the device's largest allocation (%llu bytes)", bytes,
                   (unsigned long long)ctx->max_allocation_size);
  kf_buffer *buffer = calloc(1, sizeof *buffer);
  if (buffer == NULL) return kf_fail(KF_ERROR_OUT_OF_MEMORY, "out of host memory");
  status = create_buffer(ctx, bytes + KF_VK_BUFFER_ALIGNMENT,
                         VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                             VK_BUFFER_USAGE_TRANSFER_DST_BIT | VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT,
                         0, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 1, &buffer->buffer, &buffer->memory);
  if (status != KF_OK) {
    free(buffer);
    return status;
  }
  VkBufferDeviceAddressInfo address_info = {.sType = VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO,
                                            .buffer = buffer->buffer};
  VkDeviceAddress address = ctx->fn.vkGetBufferDeviceAddress(ctx->device, &address_info);
  buffer->offset = (KF_VK_BUFFER_ALIGNMENT - address % KF_VK_BUFFER_ALIGNMENT) % KF_VK_BUFFER_ALIGNMENT;
  buffer->address = address + buffer->offset;
  buffer->size = bytes;
  *out_buffer = buffer;
  return kf_vk_check_validation();
}

static void vulkan_buffer_free(kf_backend_context *ctx, kf_buffer *buffer) {
  if (buffer == NULL) return;
  /* Queued work may still use it. */
  stream_finish(ctx);
  ctx->fn.vkDestroyBuffer(ctx->device, buffer->buffer, NULL);
  ctx->fn.vkFreeMemory(ctx->device, buffer->memory, NULL);
  free(buffer);
}

/* Largest staging buffer; bigger transfers go through it in pieces. */
#define KF_VK_STAGING_MAX_BYTES ((VkDeviceSize)64 << 20)

/* Makes the staging buffer hold at least min(bytes, KF_VK_STAGING_MAX_BYTES). Only called when no
 * queued work uses it (every transfer waits for its copy). */
static kf_status ensure_staging(kf_backend_context *ctx, size_t bytes) {
  VkDeviceSize want = bytes < KF_VK_STAGING_MAX_BYTES ? (VkDeviceSize)bytes : KF_VK_STAGING_MAX_BYTES;
  if (ctx->staging_size >= want) return KF_OK;
  VkDeviceSize size = ctx->staging_size ? ctx->staging_size : 1u << 20;
  while (size < want) size *= 2;
  if (size > KF_VK_STAGING_MAX_BYTES) size = KF_VK_STAGING_MAX_BYTES;
  if (ctx->staging_buffer != VK_NULL_HANDLE) {
    ctx->fn.vkDestroyBuffer(ctx->device, ctx->staging_buffer, NULL);
    ctx->fn.vkFreeMemory(ctx->device, ctx->staging_memory, NULL); /* unmaps */
    ctx->staging_buffer = VK_NULL_HANDLE;
    ctx->staging_memory = VK_NULL_HANDLE;
    ctx->staging_mapped = NULL;
    ctx->staging_size = 0;
  }
  /* Host-cached memory where there is one: reads back from it are not uncached loads. */
  kf_status status = create_buffer(
      ctx, size, VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
      VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
      VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT | VK_MEMORY_PROPERTY_HOST_CACHED_BIT, 0,
      &ctx->staging_buffer, &ctx->staging_memory);
  if (status != KF_OK) return status;
  VkResult result = ctx->fn.vkMapMemory(ctx->device, ctx->staging_memory, 0, VK_WHOLE_SIZE, 0, &ctx->staging_mapped);
  if (result != VK_SUCCESS) {
    ctx->fn.vkDestroyBuffer(ctx->device, ctx->staging_buffer, NULL);
    ctx->fn.vkFreeMemory(ctx->device, ctx->staging_memory, NULL);
    ctx->staging_buffer = VK_NULL_HANDLE;
    ctx->staging_memory = VK_NULL_HANDLE;
    return vk_failure(result, "vkMapMemory");
  }
  ctx->staging_size = size;
  return KF_OK;
}

static kf_status vulkan_buffer_write(kf_backend_context *ctx, kf_buffer *dst, size_t dst_offset, const void *src,
                                     size_t bytes) {
  kf_status status = kf_vk_check_validation();
  if (status == KF_OK) status = ensure_staging(ctx, bytes);
  /* The staging buffer is free here: every earlier transfer waited for its copy. */
  for (size_t done = 0; status == KF_OK && done < bytes;) {
    size_t piece = bytes - done < ctx->staging_size ? bytes - done : (size_t)ctx->staging_size;
    memcpy(ctx->staging_mapped, (const char *)src + done, piece);
    /* vkQueueSubmit makes host writes to coherent memory visible to the device. */
    if ((status = kf_vk_stream_begin_command(ctx)) != KF_OK) break;
    VkBufferCopy region = {.srcOffset = 0, .dstOffset = dst->offset + dst_offset + done, .size = piece};
    ctx->fn.vkCmdCopyBuffer(kf_vk_stream_commands(ctx), ctx->staging_buffer, dst->buffer, 1, &region);
    if ((status = kf_vk_stream_command_recorded(ctx)) != KF_OK) break;
    status = stream_finish(ctx);
    done += piece;
  }
  return status;
}

static kf_status vulkan_buffer_read(kf_backend_context *ctx, kf_buffer *src, size_t src_offset, void *dst,
                                    size_t bytes) {
  kf_status status = kf_vk_check_validation();
  if (status == KF_OK) status = ensure_staging(ctx, bytes);
  for (size_t done = 0; status == KF_OK && done < bytes;) {
    size_t piece = bytes - done < ctx->staging_size ? bytes - done : (size_t)ctx->staging_size;
    if ((status = kf_vk_stream_begin_command(ctx)) != KF_OK) break;
    VkCommandBuffer commands = kf_vk_stream_commands(ctx);
    VkBufferCopy region = {.srcOffset = src->offset + src_offset + done, .dstOffset = 0, .size = piece};
    ctx->fn.vkCmdCopyBuffer(commands, src->buffer, ctx->staging_buffer, 1, &region);
    /* The copy's writes become visible to host reads once the fence is waited on. */
    VkMemoryBarrier to_host = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                               .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
                               .dstAccessMask = VK_ACCESS_HOST_READ_BIT};
    ctx->fn.vkCmdPipelineBarrier(commands, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &to_host,
                                 0, NULL, 0, NULL);
    if ((status = kf_vk_stream_command_recorded(ctx)) != KF_OK) break;
    if ((status = stream_finish(ctx)) != KF_OK) break;
    memcpy((char *)dst + done, ctx->staging_mapped, piece);
    done += piece;
  }
  return status;
}

/* A compute-shader copy (kf_vk_copy), not vkCmdCopyBuffer: see vulkan_ops.c. */
static kf_status vulkan_buffer_copy(kf_backend_context *ctx, kf_buffer *src, size_t src_offset, kf_buffer *dst,
                                    size_t dst_offset, size_t bytes) {
  kf_status status = kf_vk_check_validation();
  if (status != KF_OK) return status;
  if ((status = kf_vk_copy(ctx, src, src_offset, dst, dst_offset, bytes)) != KF_OK) return status;
  return kf_vk_check_validation();
}

static kf_status vulkan_synchronize(kf_backend_context *ctx) {
  kf_status status = kf_vk_check_validation();
  if (status != KF_OK) return status;
  return stream_finish(ctx);
}

/* ---------------------------------------------------------------------------------------------
 * Timer: two timestamps in the stream, each written once all earlier commands have completed.
 */
static kf_status vulkan_timer_begin(kf_backend_context *ctx) {
  kf_status status = kf_vk_check_validation();
  if (status != KF_OK) return status;
  if (ctx->timer_queries == VK_NULL_HANDLE)
    return kf_fail(KF_ERROR_UNSUPPORTED, "the Vulkan compute queue has no timestamps (timestampValidBits is 0)");
  if ((status = kf_vk_stream_begin_command(ctx)) != KF_OK) return status;
  VkCommandBuffer commands = kf_vk_stream_commands(ctx);
  ctx->fn.vkCmdResetQueryPool(commands, ctx->timer_queries, 0, 2);
  ctx->fn.vkCmdWriteTimestamp(commands, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, ctx->timer_queries, 0);
  ctx->timer_running = 1;
  return kf_vk_stream_command_recorded(ctx);
}

static kf_status vulkan_timer_end(kf_backend_context *ctx, double *out_ms) {
  kf_status status = kf_vk_check_validation();
  if (status != KF_OK) return status;
  if (!ctx->timer_running) return kf_fail(KF_ERROR_INVALID_ARGUMENT, "timer_end without timer_begin");
  ctx->timer_running = 0;
  if ((status = kf_vk_stream_begin_command(ctx)) != KF_OK) return status;
  ctx->fn.vkCmdWriteTimestamp(kf_vk_stream_commands(ctx), VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, ctx->timer_queries, 1);
  if ((status = kf_vk_stream_command_recorded(ctx)) != KF_OK) return status;
  if ((status = stream_finish(ctx)) != KF_OK) return status;
  uint64_t stamps[2];
  VkResult result = ctx->fn.vkGetQueryPoolResults(ctx->device, ctx->timer_queries, 0, 2, sizeof stamps, stamps,
                                                  sizeof stamps[0], VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
  if (result != VK_SUCCESS) return vk_failure(result, "vkGetQueryPoolResults");
  const uint64_t mask = ctx->timestamp_valid_bits >= 64 ? UINT64_MAX : (UINT64_C(1) << ctx->timestamp_valid_bits) - 1;
  const uint64_t ticks = (stamps[1] - stamps[0]) & mask; /* the counter may wrap at validBits */
  *out_ms = (double)ticks * (double)ctx->timestamp_period_ns * 1e-6;
  return KF_OK;
}

/* Ops: the validation state is checked before and after each (KF_VULKAN_VALIDATION=1). */
static kf_status vulkan_rmsnorm(kf_backend_context *ctx, const kf_norm_args *args) {
  kf_status status = kf_vk_check_validation();
  if (status == KF_OK) status = kf_vk_norm(ctx, args, 0);
  return status != KF_OK ? status : kf_vk_check_validation();
}

static kf_status vulkan_layernorm(kf_backend_context *ctx, const kf_norm_args *args) {
  kf_status status = kf_vk_check_validation();
  if (status == KF_OK) status = kf_vk_norm(ctx, args, 1);
  return status != KF_OK ? status : kf_vk_check_validation();
}

static kf_status vulkan_rope(kf_backend_context *ctx, const kf_rope_args *args) {
  kf_status status = kf_vk_check_validation();
  if (status == KF_OK) status = kf_vk_rope(ctx, args);
  return status != KF_OK ? status : kf_vk_check_validation();
}

static kf_status vulkan_glu(kf_backend_context *ctx, const kf_glu_args *args) {
  kf_status status = kf_vk_check_validation();
  if (status == KF_OK) status = kf_vk_glu(ctx, args);
  return status != KF_OK ? status : kf_vk_check_validation();
}

static kf_status vulkan_softmax(kf_backend_context *ctx, const kf_softmax_args *args) {
  kf_status status = kf_vk_check_validation();
  if (status == KF_OK) status = kf_vk_softmax(ctx, args);
  return status != KF_OK ? status : kf_vk_check_validation();
}

static kf_status vulkan_gemm(kf_backend_context *ctx, const kf_gemm_args *args) {
  kf_status status = kf_vk_check_validation();
  if (status == KF_OK) status = kf_vk_gemm(ctx, args);
  return status != KF_OK ? status : kf_vk_check_validation();
}

static kf_status vulkan_attention(kf_backend_context *ctx, const kf_attention_args *args) {
  kf_status status = kf_vk_check_validation();
  if (status == KF_OK) status = kf_vk_attention(ctx, args);
  return status != KF_OK ? status : kf_vk_check_validation();
}

const kf_backend_iface kf_vulkan_backend = {
    .backend = KF_BACKEND_VULKAN,
    .name = "vulkan",
    .probe = vulkan_probe,
    .context_create = vulkan_context_create,
    .context_destroy = vulkan_context_destroy,
    .buffer_alloc = vulkan_buffer_alloc,
    .buffer_free = vulkan_buffer_free,
    .buffer_write = vulkan_buffer_write,
    .buffer_read = vulkan_buffer_read,
    .buffer_copy = vulkan_buffer_copy,
    .synchronize = vulkan_synchronize,
    .timer_begin = vulkan_timer_begin,
    .timer_end = vulkan_timer_end,
    .rmsnorm = vulkan_rmsnorm,
    .layernorm = vulkan_layernorm,
    .rope = vulkan_rope,
    .glu = vulkan_glu,
    .softmax = vulkan_softmax,
    .gemm = vulkan_gemm,
    .attention = vulkan_attention,
    .attention_workspace = kf_vk_attention_workspace,
};

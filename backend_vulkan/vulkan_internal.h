/* vulkan_internal.h — shared by the files of the Vulkan backend: the entry-point tables, the context,
 * and the command stream every operation records into.
 *
 * libvulkan.so.1 is opened with dlopen at probe time. Only vkGetInstanceProcAddr is taken from the
 * library itself; every other entry point comes from vkGetInstanceProcAddr (global and instance level)
 * or vkGetDeviceProcAddr (device level, one table per context), each listed once in an X-macro table.
 */
#ifndef KF_BACKEND_VULKAN_INTERNAL_H_
#define KF_BACKEND_VULKAN_INTERNAL_H_

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "kernels_src/common/kf_embed.h"

/* X(name, optional): entry points resolved with vkGetInstanceProcAddr(NULL, name). */
#define KF_VK_GLOBAL_FUNCTIONS(X)            \
  X(vkCreateInstance, 0)                     \
  X(vkEnumerateInstanceVersion, 1)           \
  X(vkEnumerateInstanceLayerProperties, 0)   \
  X(vkEnumerateInstanceExtensionProperties, 0)

/* Resolved with vkGetInstanceProcAddr(instance, name). */
#define KF_VK_INSTANCE_FUNCTIONS(X)               \
  X(vkEnumeratePhysicalDevices, 0)                \
  X(vkGetPhysicalDeviceProperties, 0)             \
  X(vkGetPhysicalDeviceProperties2, 0)            \
  X(vkGetPhysicalDeviceFeatures2, 0)              \
  X(vkGetPhysicalDeviceMemoryProperties, 0)       \
  X(vkGetPhysicalDeviceQueueFamilyProperties, 0)  \
  X(vkEnumerateDeviceExtensionProperties, 0)      \
  X(vkCreateDevice, 0)                            \
  X(vkGetDeviceProcAddr, 0)                       \
  X(vkCreateDebugUtilsMessengerEXT, 1)          \
  X(vkGetPhysicalDeviceCooperativeMatrixPropertiesNV, 1)

/* Resolved per device with vkGetDeviceProcAddr(device, name). */
#define KF_VK_DEVICE_FUNCTIONS(X)        \
  X(vkDestroyDevice, 0)                  \
  X(vkGetDeviceQueue, 0)                 \
  X(vkDeviceWaitIdle, 0)                 \
  X(vkCreateBuffer, 0)                   \
  X(vkDestroyBuffer, 0)                  \
  X(vkGetBufferMemoryRequirements, 0)    \
  X(vkGetBufferDeviceAddress, 0)         \
  X(vkAllocateMemory, 0)                 \
  X(vkFreeMemory, 0)                     \
  X(vkBindBufferMemory, 0)               \
  X(vkMapMemory, 0)                      \
  X(vkCreateCommandPool, 0)              \
  X(vkDestroyCommandPool, 0)             \
  X(vkAllocateCommandBuffers, 0)         \
  X(vkBeginCommandBuffer, 0)             \
  X(vkEndCommandBuffer, 0)               \
  X(vkResetCommandBuffer, 0)             \
  X(vkQueueSubmit, 0)                    \
  X(vkCreateFence, 0)                    \
  X(vkDestroyFence, 0)                   \
  X(vkWaitForFences, 0)                  \
  X(vkResetFences, 0)                    \
  X(vkCreateQueryPool, 0)                \
  X(vkDestroyQueryPool, 0)               \
  X(vkGetQueryPoolResults, 0)            \
  X(vkCreateShaderModule, 0)             \
  X(vkDestroyShaderModule, 0)            \
  X(vkCreatePipelineLayout, 0)           \
  X(vkDestroyPipelineLayout, 0)          \
  X(vkCreatePipelineCache, 0)            \
  X(vkDestroyPipelineCache, 0)           \
  X(vkCreateComputePipelines, 0)         \
  X(vkDestroyPipeline, 0)                \
  X(vkCmdPipelineBarrier, 0)             \
  X(vkCmdCopyBuffer, 0)                  \
  X(vkCmdBindPipeline, 0)                \
  X(vkCmdPushConstants, 0)               \
  X(vkCmdDispatch, 0)                    \
  X(vkCmdResetQueryPool, 0)              \
  X(vkCmdWriteTimestamp, 0)

#define KF_VK_DECLARE_SLOT_(name, optional) PFN_##name name;

typedef struct kf_vk_device_functions {
  KF_VK_DEVICE_FUNCTIONS(KF_VK_DECLARE_SLOT_)
} kf_vk_device_functions;

/* Command buffers in the stream's ring. A context records into one; when it holds
 * KF_VK_COMMANDS_PER_SUBMIT commands it is submitted without waiting and the next one is used, so a
 * long run of queued ops neither grows one command buffer without bound nor waits on the device. */
#define KF_VK_STREAM_SLOTS 3
#define KF_VK_COMMANDS_PER_SUBMIT 256

typedef struct kf_vk_stream_slot {
  VkCommandBuffer commands;
  VkFence done;
  int pending; /* submitted, fence not yet waited on */
} kf_vk_stream_slot;

/* The compute shaders, one SPIR-V module each (kernels_src/vulkan/<name>.comp). */
typedef enum kf_vk_kernel {
  KF_VK_KERNEL_NORM,    /* RMSNorm and LayerNorm */
  KF_VK_KERNEL_ROPE,
  KF_VK_KERNEL_GLU,
  KF_VK_KERNEL_SOFTMAX,
  KF_VK_KERNEL_COPY,    /* buffer_copy */
  KF_VK_KERNEL_GEMM,    /* tiled shared-memory GEMM, every device */
  KF_VK_KERNEL_GEMM_COOPMAT, /* f16 GEMM on NV cooperative matrices; only where use_nv_cooperative_matrix */
  KF_VK_KERNEL_GEMM_SKINNY,  /* decode-shaped GEMM (m <= 16, B stored [n, k]) */
  KF_VK_KERNEL_ATTENTION,
  KF_VK_KERNEL_ATTENTION_MERGE, /* split-KV decode: combines attention's partial records */
  KF_VK_KERNEL_ATTENTION_COOPMAT, /* f16 prefill attention on NV cooperative matrices, likewise */
  KF_VK_KERNEL_COUNT
} kf_vk_kernel;

/* Most specialization constants any shader has. */
#define KF_VK_MAX_SPEC_CONSTANTS 16

/* One compute pipeline: a kernel with one set of specialization constant values (ids 0 ... count-1). */
typedef struct kf_vk_pipeline {
  kf_vk_kernel kernel;
  uint32_t spec_count;
  uint32_t spec[KF_VK_MAX_SPEC_CONSTANTS];
  VkPipeline pipeline;
} kf_vk_pipeline;

struct kf_buffer {
  VkBuffer buffer;
  VkDeviceMemory memory;
  VkDeviceSize offset;   /* start of the kfuse buffer inside the VkBuffer (for 256-byte alignment) */
  VkDeviceAddress address; /* device address of that start */
  size_t size;
};

struct kf_backend_context {
  VkPhysicalDevice physical_device;
  VkDevice device;
  VkQueue queue;
  uint32_t queue_family;
  kf_vk_device_functions fn;
  VkPhysicalDeviceMemoryProperties memory_properties;
  VkDeviceSize max_allocation_size;
  uint32_t max_workgroup_invocations;
  uint32_t max_workgroups_x;
  uint32_t max_workgroups_y;
  uint32_t max_shared_memory_bytes; /* per workgroup */
  /* VK_NV_cooperative_matrix enabled, with 16×16×16 f16 × f16 + f32 products on subgroups of 32. */
  int has_nv_cooperative_matrix;
  /* has_nv_cooperative_matrix, unless KF_VULKAN_COOPMAT=0 (read at context creation): whether the
   * GEMM and attention shaders on cooperative matrices are used. */
  int use_nv_cooperative_matrix;

  /* Command stream (in-order queue). */
  VkCommandPool command_pool;
  kf_vk_stream_slot slots[KF_VK_STREAM_SLOTS];
  int current_slot;
  int recording;          /* slots[current_slot] is between begin and end */
  uint32_t recorded_commands;

  /* Host-visible staging buffer for buffer_write / buffer_read (grown on demand, capped). */
  VkBuffer staging_buffer;
  VkDeviceMemory staging_memory;
  void *staging_mapped;
  VkDeviceSize staging_size;

  /* Device timer. */
  VkQueryPool timer_queries; /* VK_NULL_HANDLE when the queue has no timestamps */
  uint32_t timestamp_valid_bits;
  float timestamp_period_ns;
  int timer_running;

  /* Kernels. */
  VkShaderModule modules[KF_VK_KERNEL_COUNT];
  VkPipelineLayout push_constant_layout;
  VkPipelineCache pipeline_cache;
  kf_vk_pipeline *pipelines;
  size_t pipeline_count, pipeline_capacity;
};

/* "VK_ERROR_DEVICE_LOST" */
const char *kf_vk_result_name(VkResult result);

/* KF_OK, or KF_ERROR_DEVICE_FAILURE when the validation layer has reported a message
 * (KF_VULKAN_VALIDATION=1). Checked at the start and end of every context entry point. */
kf_status kf_vk_check_validation(void);

/* Records a memory barrier that orders the next command after every earlier one (the queue must
 * behave in order) into the current command buffer, beginning one if needed. Call before each
 * command; call kf_vk_stream_command_recorded after it. */
kf_status kf_vk_stream_begin_command(kf_backend_context *ctx);
kf_status kf_vk_stream_command_recorded(kf_backend_context *ctx);
VkCommandBuffer kf_vk_stream_commands(kf_backend_context *ctx);

/* Kernels and pipelines (vulkan_kernels.c). */
kf_status kf_vk_kernels_init(kf_backend_context *ctx);
void kf_vk_kernels_destroy(kf_backend_context *ctx);
/* Whether the library was built with every kernel's SPIR-V (not without glslc). */
int kf_vk_kernels_built(void);
/* The pipeline of `kernel` with specialization constants spec[0 ... count-1], created on first use and
 * cached for the context's life. */
kf_status kf_vk_get_pipeline(kf_backend_context *ctx, kf_vk_kernel kernel, const uint32_t *spec, uint32_t count,
                             VkPipeline *out_pipeline);
/* Records bind + push constants (params: `size` bytes, at most 128) + dispatch into the current command
 * buffer (after kf_vk_stream_begin_command). */
void kf_vk_record_dispatch(kf_backend_context *ctx, VkPipeline pipeline, const void *params, uint32_t size,
                           uint32_t groups_x, uint32_t groups_y);
/* One queued dispatch: kf_vk_stream_begin_command, kf_vk_record_dispatch, kf_vk_stream_command_recorded. */
kf_status kf_vk_dispatch(kf_backend_context *ctx, VkPipeline pipeline, const void *params, uint32_t size,
                         uint32_t groups_x, uint32_t groups_y);

/* Operations (vulkan_ops.c); arguments are validated by the core. */
kf_status kf_vk_norm(kf_backend_context *ctx, const kf_norm_args *args, int centered);
kf_status kf_vk_rope(kf_backend_context *ctx, const kf_rope_args *args);
kf_status kf_vk_glu(kf_backend_context *ctx, const kf_glu_args *args);
kf_status kf_vk_softmax(kf_backend_context *ctx, const kf_softmax_args *args);
kf_status kf_vk_gemm(kf_backend_context *ctx, const kf_gemm_args *args);
/* vulkan_attention.c */
kf_status kf_vk_attention(kf_backend_context *ctx, const kf_attention_args *args);
size_t kf_vk_attention_workspace(kf_backend_context *ctx, const kf_attention_args *args);
/* Device-side copy of `bytes` between non-overlapping ranges at any byte offsets. */
kf_status kf_vk_copy(kf_backend_context *ctx, kf_buffer *src, size_t src_offset, kf_buffer *dst, size_t dst_offset,
                     size_t bytes);

#endif /* KF_BACKEND_VULKAN_INTERNAL_H_ */

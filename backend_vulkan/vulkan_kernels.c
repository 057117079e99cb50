/* vulkan_kernels.c — the embedded SPIR-V modules of the Vulkan backend, their compute pipelines (one per
 * combination of specialization constants, created on first use and cached per context) and the
 * dispatch helper every operation records with.
 *
 * The shaders take their operands as buffer device addresses in a push-constant block
 * (kernels_src/common/kf_params.h), so there are no descriptor sets: one pipeline layout, one
 * push-constant range of the 128 bytes Vulkan guarantees, serves every kernel.
 */
#include <stdlib.h>
#include <string.h>

#include "backend_vulkan/vulkan_internal.h"

extern const kf_embedded_file kf_vulkan_kernels[];
extern const size_t kf_vulkan_kernels_count;

/* The push-constant range every pipeline layout has: the minimum maxPushConstantsSize. */
#define KF_VK_PUSH_CONSTANT_BYTES 128u

/* Embedded file of each kf_vk_kernel (kernels_src/vulkan/BUILD). */
static const char *const kKernelFiles[KF_VK_KERNEL_COUNT] = {
    [KF_VK_KERNEL_NORM] = "norm.spv",
    [KF_VK_KERNEL_ROPE] = "rope.spv",
    [KF_VK_KERNEL_GLU] = "glu.spv",
    [KF_VK_KERNEL_SOFTMAX] = "softmax.spv",
    [KF_VK_KERNEL_COPY] = "copy.spv",
    [KF_VK_KERNEL_GEMM] = "gemm.spv",
    [KF_VK_KERNEL_GEMM_COOPMAT] = "gemm_coopmat.spv",
    [KF_VK_KERNEL_GEMM_SKINNY] = "gemm_skinny.spv",
    [KF_VK_KERNEL_ATTENTION] = "attention.spv",
    [KF_VK_KERNEL_ATTENTION_MERGE] = "attention_merge.spv",
    [KF_VK_KERNEL_ATTENTION_COOPMAT] = "attention_coopmat.spv",
};

/* The embedded SPIR-V of `kernel`, or NULL when the build had no glslc (the file is then empty). */
static const kf_embedded_file *kernel_spirv(kf_vk_kernel kernel) {
  for (size_t i = 0; i < kf_vulkan_kernels_count; ++i)
    if (kf_vulkan_kernels[i].name != NULL && strcmp(kf_vulkan_kernels[i].name, kKernelFiles[kernel]) == 0)
      return kf_vulkan_kernels[i].size > 0 ? &kf_vulkan_kernels[i] : NULL;
  return NULL;
}

int kf_vk_kernels_built(void) {
  for (int kernel = 0; kernel < KF_VK_KERNEL_COUNT; ++kernel)
    if (kernel_spirv((kf_vk_kernel)kernel) == NULL) return 0;
  return 1;
}

kf_status kf_vk_kernels_init(kf_backend_context *ctx) {
  if (!kf_vk_kernels_built())
    return kf_fail(KF_ERROR_UNSUPPORTED, "built without Vulkan kernels (glslc not found at build time)");
  /* KF_VULKAN_COOPMAT=0 keeps the cooperative-matrix shaders out (for comparison with the tiled ones). */
  const char *coopmat = getenv("KF_VULKAN_COOPMAT");
  ctx->use_nv_cooperative_matrix = ctx->has_nv_cooperative_matrix && !(coopmat != NULL && strcmp(coopmat, "0") == 0);
  VkResult result;
  for (int kernel = 0; kernel < KF_VK_KERNEL_COUNT; ++kernel) {
    /* Their capabilities exist only where the extension is enabled. */
    if ((kernel == KF_VK_KERNEL_GEMM_COOPMAT || kernel == KF_VK_KERNEL_ATTENTION_COOPMAT) &&
        !ctx->use_nv_cooperative_matrix)
      continue;
    const kf_embedded_file *spirv = kernel_spirv((kf_vk_kernel)kernel);
    VkShaderModuleCreateInfo module_info = {
        .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
        .codeSize = spirv->size,
        .pCode = (const uint32_t *)(const void *)spirv->data, /* embedded 16-byte aligned */
    };
    result = ctx->fn.vkCreateShaderModule(ctx->device, &module_info, NULL, &ctx->modules[kernel]);
    if (result != VK_SUCCESS)
      return kf_fail(KF_ERROR_DEVICE_FAILURE, "vkCreateShaderModule (%s) failed: %s", kKernelFiles[kernel],
                     kf_vk_result_name(result));
  }
  VkPushConstantRange range = {
      .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .offset = 0, .size = KF_VK_PUSH_CONSTANT_BYTES};
  VkPipelineLayoutCreateInfo layout_info = {
      .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
      .pushConstantRangeCount = 1,
      .pPushConstantRanges = &range,
  };
  result = ctx->fn.vkCreatePipelineLayout(ctx->device, &layout_info, NULL, &ctx->push_constant_layout);
  if (result != VK_SUCCESS)
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "vkCreatePipelineLayout failed: %s", kf_vk_result_name(result));
  VkPipelineCacheCreateInfo cache_info = {.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
  result = ctx->fn.vkCreatePipelineCache(ctx->device, &cache_info, NULL, &ctx->pipeline_cache);
  if (result != VK_SUCCESS)
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "vkCreatePipelineCache failed: %s", kf_vk_result_name(result));
  return KF_OK;
}

void kf_vk_kernels_destroy(kf_backend_context *ctx) {
  for (size_t i = 0; i < ctx->pipeline_count; ++i) ctx->fn.vkDestroyPipeline(ctx->device, ctx->pipelines[i].pipeline, NULL);
  free(ctx->pipelines);
  ctx->pipelines = NULL;
  ctx->pipeline_count = ctx->pipeline_capacity = 0;
  if (ctx->pipeline_cache != VK_NULL_HANDLE) ctx->fn.vkDestroyPipelineCache(ctx->device, ctx->pipeline_cache, NULL);
  if (ctx->push_constant_layout != VK_NULL_HANDLE)
    ctx->fn.vkDestroyPipelineLayout(ctx->device, ctx->push_constant_layout, NULL);
  for (int kernel = 0; kernel < KF_VK_KERNEL_COUNT; ++kernel)
    if (ctx->modules[kernel] != VK_NULL_HANDLE) ctx->fn.vkDestroyShaderModule(ctx->device, ctx->modules[kernel], NULL);
}

kf_status kf_vk_get_pipeline(kf_backend_context *ctx, kf_vk_kernel kernel, const uint32_t *spec, uint32_t count,
                             VkPipeline *out_pipeline) {
  for (size_t i = 0; i < ctx->pipeline_count; ++i) {
    const kf_vk_pipeline *cached = &ctx->pipelines[i];
    if (cached->kernel == kernel && cached->spec_count == count && memcmp(cached->spec, spec, count * sizeof *spec) == 0) {
      *out_pipeline = cached->pipeline;
      return KF_OK;
    }
  }
  if (ctx->pipeline_count == ctx->pipeline_capacity) {
    size_t capacity = ctx->pipeline_capacity ? 2 * ctx->pipeline_capacity : 16;
    kf_vk_pipeline *grown = realloc(ctx->pipelines, capacity * sizeof *grown);
    if (grown == NULL) return kf_fail(KF_ERROR_OUT_OF_MEMORY, "out of host memory");
    ctx->pipelines = grown;
    ctx->pipeline_capacity = capacity;
  }
  VkSpecializationMapEntry entries[KF_VK_MAX_SPEC_CONSTANTS];
  for (uint32_t i = 0; i < count; ++i)
    entries[i] = (VkSpecializationMapEntry){.constantID = i, .offset = i * sizeof(uint32_t), .size = sizeof(uint32_t)};
  VkSpecializationInfo specialization = {
      .mapEntryCount = count, .pMapEntries = entries, .dataSize = count * sizeof(uint32_t), .pData = spec};
  VkComputePipelineCreateInfo info = {
      .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
      .stage =
          {
              .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
              .stage = VK_SHADER_STAGE_COMPUTE_BIT,
              .module = ctx->modules[kernel],
              .pName = "main",
              .pSpecializationInfo = &specialization,
          },
      .layout = ctx->push_constant_layout,
  };
  VkPipeline pipeline;
  VkResult result = ctx->fn.vkCreateComputePipelines(ctx->device, ctx->pipeline_cache, 1, &info, NULL, &pipeline);
  if (result != VK_SUCCESS)
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "vkCreateComputePipelines (%s) failed: %s", kKernelFiles[kernel],
                   kf_vk_result_name(result));
  kf_vk_pipeline *entry = &ctx->pipelines[ctx->pipeline_count++];
  memset(entry, 0, sizeof *entry);
  entry->kernel = kernel;
  entry->spec_count = count;
  memcpy(entry->spec, spec, count * sizeof *spec);
  entry->pipeline = pipeline;
  *out_pipeline = pipeline;
  return KF_OK;
}

void kf_vk_record_dispatch(kf_backend_context *ctx, VkPipeline pipeline, const void *params, uint32_t size,
                           uint32_t groups_x, uint32_t groups_y) {
  VkCommandBuffer commands = kf_vk_stream_commands(ctx);
  ctx->fn.vkCmdBindPipeline(commands, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline);
  ctx->fn.vkCmdPushConstants(commands, ctx->push_constant_layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, size, params);
  ctx->fn.vkCmdDispatch(commands, groups_x, groups_y, 1);
}

kf_status kf_vk_dispatch(kf_backend_context *ctx, VkPipeline pipeline, const void *params, uint32_t size,
                         uint32_t groups_x, uint32_t groups_y) {
  kf_status status = kf_vk_stream_begin_command(ctx);
  if (status != KF_OK) return status;
  kf_vk_record_dispatch(ctx, pipeline, params, size, groups_x, groups_y);
  return kf_vk_stream_command_recorded(ctx);
}

/* vulkan_rmsnorm.c — the rmsnorm op of the Vulkan backend: the embedded SPIR-V, one compute pipeline per
 * combination of specialization constants (created on first use, cached per context), and the dispatch.
 *
 * The shader (kernels_src/vulkan/rmsnorm.comp) takes its operands as buffer device addresses in the
 * push-constant block kf_norm_params, so there are no descriptor sets: the pipeline layout is one
 * push-constant range.
 */
#include <stdlib.h>
#include <string.h>

#include "backend_vulkan/vulkan_internal.h"
#include "kernels_src/common/kf_params.h"

extern const kf_embedded_file kf_vulkan_kernels[];
extern const size_t kf_vulkan_kernels_count;

/* Shader constants the host must agree with (rmsnorm.comp): CHUNK elements per chunk, CACHED_CHUNKS
 * chunks per invocation held in registers, and the 16-byte alignment of a vectorized chunk. */
#define KF_VK_RMSNORM_CHUNK 8
#define KF_VK_RMSNORM_CACHED_CHUNKS 4
#define KF_VK_RMSNORM_VECTOR_BYTES 16

/* The push-constant block must match its GLSL std430 layout and fit the guaranteed 128 bytes. */
_Static_assert(sizeof(struct kf_norm_params) == 112, "kf_norm_params layout changed");

/* Specialization constant ids of rmsnorm.comp. */
enum {
  SPEC_X_DTYPE,
  SPEC_RESIDUAL_DTYPE,
  SPEC_RESIDUAL_OUT_DTYPE,
  SPEC_WEIGHT_DTYPE,
  SPEC_BIAS_DTYPE,
  SPEC_Y_DTYPE,
  SPEC_HAS_WEIGHT,
  SPEC_HAS_BIAS,
  SPEC_HAS_RESIDUAL,
  SPEC_VECTORIZED,
  SPEC_WORKGROUP_SIZE,
  SPEC_COUNT
};

const kf_embedded_file *kf_vk_rmsnorm_spirv(void) {
  for (size_t i = 0; i < kf_vulkan_kernels_count; ++i)
    if (kf_vulkan_kernels[i].name != NULL && strcmp(kf_vulkan_kernels[i].name, "rmsnorm.spv") == 0)
      return kf_vulkan_kernels[i].size > 0 ? &kf_vulkan_kernels[i] : NULL;
  return NULL;
}

kf_status kf_vk_kernels_init(kf_backend_context *ctx) {
  const kf_embedded_file *spirv = kf_vk_rmsnorm_spirv();
  if (spirv == NULL) return kf_fail(KF_ERROR_UNSUPPORTED, "built without Vulkan kernels (glslc not found at build time)");
  VkShaderModuleCreateInfo module_info = {
      .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
      .codeSize = spirv->size,
      .pCode = (const uint32_t *)(const void *)spirv->data, /* embedded 16-byte aligned */
  };
  VkResult result = ctx->fn.vkCreateShaderModule(ctx->device, &module_info, NULL, &ctx->rmsnorm_module);
  if (result != VK_SUCCESS) return kf_fail(KF_ERROR_DEVICE_FAILURE, "vkCreateShaderModule failed: %s", kf_vk_result_name(result));
  VkPushConstantRange range = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .offset = 0, .size = sizeof(struct kf_norm_params)};
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
  if (ctx->rmsnorm_module != VK_NULL_HANDLE) ctx->fn.vkDestroyShaderModule(ctx->device, ctx->rmsnorm_module, NULL);
}

/* The pipeline for `spec` (SPEC_COUNT values), created on first use. `key` packs the same values. */
static kf_status get_pipeline(kf_backend_context *ctx, uint32_t key, const uint32_t *spec, VkPipeline *out) {
  for (size_t i = 0; i < ctx->pipeline_count; ++i) {
    if (ctx->pipelines[i].key == key) {
      *out = ctx->pipelines[i].pipeline;
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
  VkSpecializationMapEntry entries[SPEC_COUNT];
  for (uint32_t i = 0; i < SPEC_COUNT; ++i)
    entries[i] = (VkSpecializationMapEntry){.constantID = i, .offset = i * sizeof(uint32_t), .size = sizeof(uint32_t)};
  VkSpecializationInfo specialization = {
      .mapEntryCount = SPEC_COUNT, .pMapEntries = entries, .dataSize = SPEC_COUNT * sizeof(uint32_t), .pData = spec};
  VkComputePipelineCreateInfo info = {
      .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
      .stage =
          {
              .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
              .stage = VK_SHADER_STAGE_COMPUTE_BIT,
              .module = ctx->rmsnorm_module,
              .pName = "main",
              .pSpecializationInfo = &specialization,
          },
      .layout = ctx->push_constant_layout,
  };
  VkPipeline pipeline;
  VkResult result = ctx->fn.vkCreateComputePipelines(ctx->device, ctx->pipeline_cache, 1, &info, NULL, &pipeline);
  if (result != VK_SUCCESS)
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "vkCreateComputePipelines (rmsnorm) failed: %s", kf_vk_result_name(result));
  ctx->pipelines[ctx->pipeline_count++] = (kf_vk_pipeline){.key = key, .pipeline = pipeline};
  *out = pipeline;
  return KF_OK;
}

static uint64_t operand_address(const kf_tensor_arg *arg) {
  if (arg->buffer == NULL) return 0;
  return arg->buffer->address + (uint64_t)arg->offset * kf_dtype_size(arg->dtype);
}

/* Whether every row of a row-major operand starts 16-byte aligned. */
static int rows_aligned(const kf_tensor_arg *arg) {
  if (arg->buffer == NULL) return 1;
  const uint64_t size = kf_dtype_size(arg->dtype);
  return operand_address(arg) % KF_VK_RMSNORM_VECTOR_BYTES == 0 &&
         ((uint64_t)arg->row_stride * size) % KF_VK_RMSNORM_VECTOR_BYTES == 0;
}

/* Whether a per-column vector (weight, bias) can be read in 16-byte chunks. */
static int vector_aligned(const kf_tensor_arg *arg) {
  if (arg->buffer == NULL) return 1;
  return arg->col_stride == 1 && operand_address(arg) % KF_VK_RMSNORM_VECTOR_BYTES == 0;
}

kf_status kf_vk_rmsnorm(kf_backend_context *ctx, const kf_norm_args *args) {
  if (args->rows <= 0 || args->row_len <= 0) return KF_OK;
  if (args->weight.col_stride > INT32_MAX || args->bias.col_stride > INT32_MAX)
    return kf_fail(KF_ERROR_UNSUPPORTED, "weight/bias strides above 2^31-1 elements are not supported on Vulkan");
  const int has_weight = args->weight.buffer != NULL;
  const int has_bias = args->bias.buffer != NULL;
  const int has_residual = args->residual.buffer != NULL;
  const int vectorized = args->row_len % KF_VK_RMSNORM_CHUNK == 0 && rows_aligned(&args->x) && rows_aligned(&args->y) &&
                         rows_aligned(&args->residual) && rows_aligned(&args->residual_out) &&
                         vector_aligned(&args->weight) && vector_aligned(&args->bias);
  /* Workgroup size (see rmsnorm.comp): 256 invocations while the row fits their register cache, else
   * 512; rows of fewer than 256 chunks get the next power of two >= 64 instead, so that short rows do
   * not leave most invocations idle (one chunk each; 64 is two NVIDIA warps, one AMD wave64). */
  const int64_t chunks = (args->row_len + KF_VK_RMSNORM_CHUNK - 1) / KF_VK_RMSNORM_CHUNK;
  uint32_t workgroup_size = 64;
  while (workgroup_size < 256 && workgroup_size < chunks) workgroup_size *= 2;
  if (chunks > 256 * KF_VK_RMSNORM_CACHED_CHUNKS && ctx->max_workgroup_invocations >= 512) workgroup_size = 512;

  /* Absent operands get f32 so that unused combinations share a pipeline. */
  const uint32_t spec[SPEC_COUNT] = {
      [SPEC_X_DTYPE] = (uint32_t)args->x.dtype,
      [SPEC_RESIDUAL_DTYPE] = has_residual ? (uint32_t)args->residual.dtype : KF_DT_F32,
      [SPEC_RESIDUAL_OUT_DTYPE] = has_residual ? (uint32_t)args->residual_out.dtype : KF_DT_F32,
      [SPEC_WEIGHT_DTYPE] = has_weight ? (uint32_t)args->weight.dtype : KF_DT_F32,
      [SPEC_BIAS_DTYPE] = has_bias ? (uint32_t)args->bias.dtype : KF_DT_F32,
      [SPEC_Y_DTYPE] = (uint32_t)args->y.dtype,
      [SPEC_HAS_WEIGHT] = (uint32_t)has_weight,
      [SPEC_HAS_BIAS] = (uint32_t)has_bias,
      [SPEC_HAS_RESIDUAL] = (uint32_t)has_residual,
      [SPEC_VECTORIZED] = (uint32_t)vectorized,
      [SPEC_WORKGROUP_SIZE] = workgroup_size,
  };
  /* 2 bits per dtype, 1 per flag, then the workgroup size (a power of two, 64 ... 512). */
  uint32_t key = 0;
  for (int i = SPEC_X_DTYPE; i <= SPEC_Y_DTYPE; ++i) key |= spec[i] << (2 * i);
  for (int i = SPEC_HAS_WEIGHT; i <= SPEC_VECTORIZED; ++i) key |= spec[i] << (12 + (i - SPEC_HAS_WEIGHT));
  key |= workgroup_size << 16;

  VkPipeline pipeline = VK_NULL_HANDLE;
  kf_status status = get_pipeline(ctx, key, spec, &pipeline);
  if (status != KF_OK) return status;

  struct kf_norm_params params = {
      .x = operand_address(&args->x),
      .residual = operand_address(&args->residual),
      .residual_out = operand_address(&args->residual_out),
      .weight = operand_address(&args->weight),
      .bias = operand_address(&args->bias),
      .y = operand_address(&args->y),
      .x_row_stride = args->x.row_stride,
      .residual_row_stride = has_residual ? args->residual.row_stride : 0,
      .residual_out_row_stride = has_residual ? args->residual_out.row_stride : 0,
      .y_row_stride = args->y.row_stride,
      .rows = args->rows,
      .row_len = (int32_t)args->row_len,
      .weight_stride = has_weight ? (int32_t)args->weight.col_stride : 0,
      .bias_stride = has_bias ? (int32_t)args->bias.col_stride : 0,
      .eps = args->eps,
      /* The shader takes these from its specialization constants; filled for completeness. */
      .flags = (has_weight ? KF_NORM_HAS_WEIGHT : 0u) | (has_bias ? KF_NORM_HAS_BIAS : 0u) |
               (has_residual ? KF_NORM_HAS_RESIDUAL : 0u),
      .dtypes = spec[SPEC_X_DTYPE] << KF_NORM_DT_SHIFT_X | spec[SPEC_RESIDUAL_DTYPE] << KF_NORM_DT_SHIFT_RESIDUAL |
                spec[SPEC_RESIDUAL_OUT_DTYPE] << KF_NORM_DT_SHIFT_RESIDUAL_OUT |
                spec[SPEC_WEIGHT_DTYPE] << KF_NORM_DT_SHIFT_WEIGHT | spec[SPEC_BIAS_DTYPE] << KF_NORM_DT_SHIFT_BIAS |
                spec[SPEC_Y_DTYPE] << KF_NORM_DT_SHIFT_Y,
  };
  /* One workgroup per row; the shader strides over rows beyond the dispatch limit. */
  const uint32_t groups = args->rows < (int64_t)ctx->max_workgroups_x ? (uint32_t)args->rows : ctx->max_workgroups_x;

  if ((status = kf_vk_stream_begin_command(ctx)) != KF_OK) return status;
  VkCommandBuffer commands = kf_vk_stream_commands(ctx);
  ctx->fn.vkCmdBindPipeline(commands, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline);
  ctx->fn.vkCmdPushConstants(commands, ctx->push_constant_layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof params, &params);
  ctx->fn.vkCmdDispatch(commands, groups, 1, 1);
  return kf_vk_stream_command_recorded(ctx);
}

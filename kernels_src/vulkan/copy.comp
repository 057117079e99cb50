#version 460
/* copy.comp — device-to-device copy of `words` words of WORD_BYTES (16 or 4) bytes, src and dst both
 * aligned to WORD_BYTES. The backend's buffer_copy uses it because NVIDIA's vkCmdCopyBuffer moves only
 * ~850 GB/s on an H200 whose memory does ~4.2 TB/s (docs/BENCHMARKS.md); the unaligned head and tail
 * bytes of a copy still go through vkCmdCopyBuffer (backend_vulkan/vulkan_ops.c).
 *
 * Grid-stride: invocation i copies words i + j * UNROLL_STRIDE ... with UNROLL loads in flight before
 * its stores, and the dispatch is sized by the host to fill the GPU a few times over.
 */
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_GOOGLE_include_directive : require

#include "kernels_src/vulkan/kf_vk_copy_params.h"

/* 256 invocations: 8 NVIDIA warps per workgroup. */
layout(local_size_x = 256) in;
/* 16: uvec4 words (the host's choice whenever src and dst agree modulo 16); 4: uint words. */
layout(constant_id = 0) const uint WORD_BYTES = 16;
/* Loads each invocation issues before storing: 4 × 16 bytes keeps ~64 bytes per invocation in flight,
 * which at full occupancy is enough outstanding memory traffic to reach HBM bandwidth. */
#define UNROLL 4

layout(push_constant) uniform Push {
  kf_vk_copy_params p;
};

layout(buffer_reference, std430, buffer_reference_align = 16) buffer Word16 { uvec4 value; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer Word4 { uint value; };

void main() {
  const uint64_t threads = uint64_t(gl_NumWorkGroups.x) * gl_WorkGroupSize.x;
  const uint64_t step = threads * UNROLL;
  uint64_t first = gl_GlobalInvocationID.x;
  /* Word addresses, not array indices: GLSL indexes arrays with 32-bit integers only. */
  if (WORD_BYTES == 16) {
    for (; first + (UNROLL - 1) * threads < p.words; first += step) { /* every one of the UNROLL words exists */
      uvec4 words[UNROLL];
      [[unroll]] for (int j = 0; j < UNROLL; ++j) words[j] = Word16(p.src + (first + j * threads) * 16ul).value;
      [[unroll]] for (int j = 0; j < UNROLL; ++j) Word16(p.dst + (first + j * threads) * 16ul).value = words[j];
    }
    [[unroll]] for (int j = 0; j < UNROLL; ++j) {
      uint64_t index = first + j * threads;
      if (index < p.words) Word16(p.dst + index * 16ul).value = Word16(p.src + index * 16ul).value;
    }
  } else {
    for (; first + (UNROLL - 1) * threads < p.words; first += step) {
      uint words[UNROLL];
      [[unroll]] for (int j = 0; j < UNROLL; ++j) words[j] = Word4(p.src + (first + j * threads) * 4ul).value;
      [[unroll]] for (int j = 0; j < UNROLL; ++j) Word4(p.dst + (first + j * threads) * 4ul).value = words[j];
    }
    [[unroll]] for (int j = 0; j < UNROLL; ++j) {
      uint64_t index = first + j * threads;
      if (index < p.words) Word4(p.dst + index * 4ul).value = Word4(p.src + index * 4ul).value;
    }
  }
}

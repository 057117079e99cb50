#version 460
/* glu.comp — gated linear units: result[r, c] = act(gate[r, c]) * up[r, c], act = SiLU or GELU (tanh).
 *
 * Elementwise, so the only goal is streaming at memory speed: each invocation handles one chunk of
 * CHUNK elements (16-byte loads of gate and up, one 16-byte store of the result for 16-bit dtypes). The
 * dispatch is 2-D: x covers a row's chunks, y the rows. gate and up arrive as separate operands even for a fused [.., 2*inner] projection
 * (the core passes the two halves as views), so one shader serves both forms.
 */
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_GOOGLE_include_directive : require

#include "kernels_src/common/kf_params.h"

/* 256 invocations: 8 NVIDIA warps / 4 AMD wave64s per workgroup, many workgroups per SM. */
layout(local_size_x = 256) in;

layout(constant_id = 0) const uint GATE_DTYPE = KF_DT_F32;
layout(constant_id = 1) const uint UP_DTYPE = KF_DT_F32;
layout(constant_id = 2) const uint RESULT_DTYPE = KF_DT_F32;
/* GELU (tanh approximation) instead of SiLU. */
layout(constant_id = 3) const bool GELU_TANH = false;
/* 16-byte accesses: inner % CHUNK == 0 and every row of gate, up and result starts 16-byte aligned. */
layout(constant_id = 4) const bool VECTORIZED = false;

layout(push_constant) uniform Push {
  kf_glu_params p;
};

#include "kernels_src/vulkan/kf_chunks.glsl"

/* silu(g) = g / (1 + e^-g). GELU: 0.5 g (1 + tanh(u)) with u = sqrt(2/pi) (g + 0.044715 g^3); since
 * 1 + tanh(u) = 2 / (1 + e^(-2u)), it is g / (1 + e^(-2u)): the same form, no tanh (GLSL's tanh may be
 * computed as a ratio of exponentials that overflows to inf/inf = NaN), and exact limits (e^(-2u)
 * overflowing to inf gives -0, as the true value rounds to). */
vec4 activation(vec4 g) {
  if (GELU_TANH) {
    const float sqrt_2_over_pi = 0.79788456080286536;
    vec4 u = sqrt_2_over_pi * (g + 0.044715 * (g * g * g));
    return g / (1.0 + exp(-2.0 * u));
  }
  return g / (1.0 + exp(-g));
}

void main() {
  const int n = p.inner;
  const int chunks = n / CHUNK + (n % CHUNK != 0 ? 1 : 0);
  const int chunk_step = int(gl_NumWorkGroups.x * gl_WorkGroupSize.x);
  /* More rows or chunks than the dispatch covers (it is capped at maxComputeWorkGroupCount): stride. */
  for (int64_t row = int64_t(gl_WorkGroupID.y); row < p.rows; row += int64_t(gl_NumWorkGroups.y)) {
    const uint64_t gate_row = p.gate + uint64_t(row * p.gate_row_stride) * dtype_size(GATE_DTYPE);
    const uint64_t up_row = p.up + uint64_t(row * p.up_row_stride) * dtype_size(UP_DTYPE);
    const uint64_t result_row = p.result + uint64_t(row * p.result_row_stride) * dtype_size(RESULT_DTYPE);
    for (int chunk = int(gl_GlobalInvocationID.x); chunk < chunks; chunk += chunk_step) {
      vec4 g_lo, g_hi, u_lo, u_hi;
      load_values(GATE_DTYPE, gate_row, chunk, n, 1, g_lo, g_hi);
      load_values(UP_DTYPE, up_row, chunk, n, 1, u_lo, u_hi);
      store_values(RESULT_DTYPE, result_row, chunk, n, activation(g_lo) * u_lo, activation(g_hi) * u_hi);
    }
  }
}

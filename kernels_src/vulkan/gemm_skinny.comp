#version 460
/* gemm_skinny.comp — C = epilogue(alpha op(A) op(B)) for decode shapes: m <= ROWS and B stored [n, k]
 * (nn.Linear weights), any dtype (kf_gemm_args is the contract; vulkan_gemm.c picks this shader).
 *
 * A decode GEMM is one pass over B; the tiled shaders compute whole tiles of rows that do not exist
 * and keep few loads in flight. Here a workgroup computes TEAMS output columns (with SwiGLU: gate and
 * up of each), one team of TEAM invocations per column: an invocation walks k in 8-element chunks
 * TEAM * 8 apart, reads its chunk of the B row once and multiplies it with the same chunk of every
 * row of A (A is small and read through the caches; all teams read the same chunks). There is no
 * barrier in the k loop; the teams' partial sums meet in shared memory at the end, and invocation r of
 * a team finishes output row r of its column (bias, SwiGLU, beta C, residual, rounding — a residual
 * identical to C is read before it is written, by the same invocation).
 */
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_GOOGLE_include_directive : require

#include "kernels_src/vulkan/kf_vk_gemm_params.h"

layout(constant_id = 0) const uint AB_DTYPE = KF_DT_F32;
layout(constant_id = 1) const uint C_DTYPE = KF_DT_F32;
layout(constant_id = 2) const uint BIAS_DTYPE = KF_DT_F32;
layout(constant_id = 3) const uint RESIDUAL_DTYPE = KF_DT_F32;
layout(constant_id = 4) const bool HAS_BIAS = false;
layout(constant_id = 5) const bool HAS_RESIDUAL = false;
layout(constant_id = 6) const bool HAS_BETA = false; /* beta != 0: C is read */
layout(constant_id = 7) const bool SWIGLU = false;
layout(constant_id = 8) const bool TRANS_A = false; /* A stored [k, m] */
/* 16-byte loads (kf_chunks.glsl): A not transposed, k and every A and B row start a multiple of 8
 * elements, 16-byte aligned. */
layout(constant_id = 9) const bool VECTORIZED = false;
layout(local_size_x = 256) in;

#include "kernels_src/vulkan/kf_chunks.glsl"

const int ROWS = 16;  /* m <= ROWS (vulkan_gemm.c: KF_VK_SKINNY_ROWS) */
const int TEAM = 32;
const int TEAMS = 8;  /* columns per workgroup (vulkan_gemm.c: KF_VK_SKINNY_COLUMNS) */
const int STEP = TEAM * CHUNK;
/* Partial-sum rows padded by one word: invocation r of a team reads row r, rows 33 banks apart. */
const int STRIDE = TEAM + 1;

layout(push_constant) uniform Push {
  kf_vk_gemm_params p;
};

shared float partial[TEAMS * ROWS * STRIDE];

float silu(float x) { return x / (1.0 + exp(-x)); }

void main() {
  const int tid = int(gl_LocalInvocationID.x), team = tid / TEAM, lane = tid % TEAM;
  const int column_groups = (p.n + TEAMS - 1) / TEAMS;
  const uint64_t ab_size = dtype_size(AB_DTYPE);

  for (int batch = int(gl_WorkGroupID.y); batch < p.batch; batch += int(gl_NumWorkGroups.y)) {
    const uint64_t a_base = p.a + uint64_t(int64_t(batch) * p.a_batch_stride) * ab_size;
    const uint64_t b_base = p.b + uint64_t(int64_t(batch) * p.b_batch_stride) * ab_size;
    const uint64_t b_up_base = p.b_up + uint64_t(int64_t(batch) * p.b_batch_stride) * ab_size;
    const uint64_t c_base = p.c + uint64_t(int64_t(batch) * p.c_batch_stride) * dtype_size(C_DTYPE);
    const uint64_t residual_base =
        p.residual + uint64_t(int64_t(batch) * p.residual_batch_stride) * dtype_size(RESIDUAL_DTYPE);

    for (int group = int(gl_WorkGroupID.x); group < column_groups; group += int(gl_NumWorkGroups.x)) {
      const int col = group * TEAMS + team;
      const bool col_ok = col < p.n;
      const uint64_t b_row = b_base + uint64_t(int64_t(min(col, p.n - 1)) * p.ldb) * ab_size;
      const uint64_t b_up_row = b_up_base + uint64_t(int64_t(min(col, p.n - 1)) * p.ldb) * ab_size;
      float acc[ROWS], acc_up[ROWS];
      [[unroll]] for (int r = 0; r < ROWS; ++r) {
        acc[r] = 0.0;
        acc_up[r] = 0.0;
      }
      if (col_ok) {
        for (int k0 = lane * CHUNK; k0 < p.k; k0 += STEP) {
          vec4 w_lo, w_hi, u_lo = vec4(0.0), u_hi = vec4(0.0);
          load_values(AB_DTYPE, b_row, k0 / CHUNK, p.k, 1, w_lo, w_hi);
          if (SWIGLU) load_values(AB_DTYPE, b_up_row, k0 / CHUNK, p.k, 1, u_lo, u_hi);
          [[unroll]] for (int r = 0; r < ROWS; ++r) {
            if (r < p.m) {
              vec4 x_lo, x_hi;
              if (TRANS_A) /* element kk of row r at (kk * lda + r) */
                load_values(AB_DTYPE, a_base + uint64_t(r) * ab_size, k0 / CHUNK, p.k, p.lda, x_lo, x_hi);
              else
                load_values(AB_DTYPE, a_base + uint64_t(int64_t(r) * p.lda) * ab_size, k0 / CHUNK, p.k, 1, x_lo, x_hi);
              acc[r] += dot(x_lo, w_lo) + dot(x_hi, w_hi);
              if (SWIGLU) acc_up[r] += dot(x_lo, u_lo) + dot(x_hi, u_hi);
            }
          }
        }
      }

      /* Row r of the team's partial sums -> invocation r of the team (gate, then up). */
      float sums[2] = {0.0, 0.0};
      [[unroll]] for (int h = 0; h < (SWIGLU ? 2 : 1); ++h) {
        barrier(); /* the previous reads of partial are over */
        [[unroll]] for (int r = 0; r < ROWS; ++r)
          partial[(team * ROWS + r) * STRIDE + lane] = h == 1 ? acc_up[r] : acc[r];
        barrier();
        if (lane < ROWS) {
          float total = 0.0;
          for (int j = 0; j < TEAM; ++j) total += partial[(team * ROWS + lane) * STRIDE + j];
          sums[h] = total;
        }
      }

      const int row = lane;
      if (col_ok && row < p.m) {
        float value = p.alpha * sums[0];
        if (HAS_BIAS)
          value += load_scalar(BIAS_DTYPE, p.bias + uint64_t(int64_t(col) * p.bias_stride) * dtype_size(BIAS_DTYPE));
        if (SWIGLU) {
          float up = p.alpha * sums[1];
          if (HAS_BIAS)
            up += load_scalar(BIAS_DTYPE, p.bias + uint64_t(int64_t(p.bias_up_offset) + int64_t(col) * p.bias_stride) *
                                                      dtype_size(BIAS_DTYPE));
          value = silu(value) * up;
        }
        const uint64_t c_address = c_base + uint64_t(int64_t(row) * p.ldc + col) * dtype_size(C_DTYPE);
        if (HAS_BETA) value += p.beta * load_scalar(C_DTYPE, c_address);
        if (HAS_RESIDUAL)
          value += load_scalar(RESIDUAL_DTYPE, residual_base + uint64_t(int64_t(row) * p.ld_residual + col) *
                                                                    dtype_size(RESIDUAL_DTYPE));
        store_scalar(C_DTYPE, c_address, value);
      }
    }
  }
}

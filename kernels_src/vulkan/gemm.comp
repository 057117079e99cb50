#version 460
/* gemm.comp — C = epilogue(alpha op(A) op(B)) on every Vulkan device: a shared-memory tiled GEMM with
 * f32 accumulation (kf_gemm_args in core/backend.h is the contract).
 *
 * A workgroup computes a TILE_M × TILE_N tile of op(A) op(B); each invocation a THREAD_M × THREAD_N
 * register tile in it, strided (rows ty + i THREADS_M, columns tx + j THREADS_N) so that the
 * invocations of a subgroup read consecutive shared-memory words. K advances TILE_K at a time: the
 * next slab of A and B is fetched from global memory into registers while the current one, already in
 * shared memory as f32, is multiplied. Operands are read element by element (bounds-checked, any
 * leading dimension, offset and transpose); f16 and bf16 are widened exactly (16-bit storage), so the
 * products are exact f32 fmas whatever the input dtype.
 *
 * SwiGLU: the op(B) tile is [TILE_N/2 gate columns | the same TILE_N/2 columns of the up half], so
 * register columns j and j + THREAD_N/2 of an invocation hold the gate and up sums of one output.
 *
 * Tiles are walked in groups of GROUP_M tile rows (consecutive workgroups share B columns in L2); a
 * workgroup loops over tiles and batch entries beyond the dispatch limits.
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
layout(constant_id = 8) const bool TRANS_A = false;  /* A stored [k, m] */
layout(constant_id = 9) const bool TRANS_B = false;  /* B stored [n, k] */
/* Tile shape, chosen by the host (vulkan_gemm.c); TILE_M × TILE_K and TILE_K × TILE_N are multiples
 * of the workgroup size (THREADS_M × THREADS_N). */
layout(constant_id = 10) const int TILE_M = 64;
layout(constant_id = 11) const int TILE_N = 64; /* columns of op(B); SwiGLU: gate + up */
layout(constant_id = 12) const int TILE_K = 16;
layout(constant_id = 13) const int THREAD_M = 4;
layout(constant_id = 14) const int THREAD_N = 4;
layout(local_size_x_id = 15) in;

const int THREADS_M = TILE_M / THREAD_M;
const int THREADS_N = TILE_N / THREAD_N;
const int WORKGROUP = THREADS_M * THREADS_N;
const int A_LOADS = TILE_M * TILE_K / WORKGROUP;
const int B_LOADS = TILE_K * TILE_N / WORKGROUP;
const int OUT_TILE_N = SWIGLU ? TILE_N / 2 : TILE_N;   /* columns of C per tile */
const int OUT_THREAD_N = SWIGLU ? THREAD_N / 2 : THREAD_N;
/* Tile rows walked together (see above). */
const int GROUP_M = 8;
/* Shared rows padded by 4 words: the slab stores, which walk K fastest for untransposed A (and
 * transposed B), then hit 4 different banks per row instead of one. */
const int A_STRIDE = TILE_M + 4;
const int B_STRIDE = TILE_N + 4;

const bool VECTORIZED = false; /* kf_chunks.glsl: this shader uses only its scalar helpers */
#include "kernels_src/vulkan/kf_chunks.glsl"

layout(push_constant) uniform Push {
  kf_vk_gemm_params p;
};

shared float a_slab[TILE_K * A_STRIDE]; /* [k][m] */
shared float b_slab[TILE_K * B_STRIDE]; /* [k][n] */

float silu(float x) { return x / (1.0 + exp(-x)); }

float a_next[A_LOADS];
float b_next[B_LOADS];

/* Fetches the slab of K starting at k0 into a_next / b_next (0 outside the matrices). */
void fetch_slab(uint64_t a_base, uint64_t b_base, uint64_t b_up_base, int row0, int col0, int k0) {
  const int tid = int(gl_LocalInvocationID.x);
  const uint64_t ab_size = dtype_size(AB_DTYPE);
  [[unroll]] for (int r = 0; r < A_LOADS; ++r) {
    const int e = tid + r * WORKGROUP;
    const int tile_m = TRANS_A ? e % TILE_M : e / TILE_K;
    const int tile_k = TRANS_A ? e / TILE_M : e % TILE_K;
    const int row = row0 + tile_m, kk = k0 + tile_k;
    float value = 0.0;
    if (row < p.m && kk < p.k) {
      const int64_t index = TRANS_A ? int64_t(kk) * p.lda + row : int64_t(row) * p.lda + kk;
      value = load_scalar(AB_DTYPE, a_base + uint64_t(index) * ab_size);
    }
    a_next[r] = value;
  }
  [[unroll]] for (int r = 0; r < B_LOADS; ++r) {
    const int e = tid + r * WORKGROUP;
    const int tile_n = TRANS_B ? e / TILE_K : e % TILE_N;
    const int tile_k = TRANS_B ? e % TILE_K : e / TILE_N;
    const bool up = SWIGLU && tile_n >= OUT_TILE_N;
    const int col = col0 + (up ? tile_n - OUT_TILE_N : tile_n), kk = k0 + tile_k;
    float value = 0.0;
    if (col < p.n && kk < p.k) {
      const int64_t index = TRANS_B ? int64_t(col) * p.ldb + kk : int64_t(kk) * p.ldb + col;
      value = load_scalar(AB_DTYPE, (up ? b_up_base : b_base) + uint64_t(index) * ab_size);
    }
    b_next[r] = value;
  }
}

void store_slab() {
  const int tid = int(gl_LocalInvocationID.x);
  [[unroll]] for (int r = 0; r < A_LOADS; ++r) {
    const int e = tid + r * WORKGROUP;
    const int tile_m = TRANS_A ? e % TILE_M : e / TILE_K;
    const int tile_k = TRANS_A ? e / TILE_M : e % TILE_K;
    a_slab[tile_k * A_STRIDE + tile_m] = a_next[r];
  }
  [[unroll]] for (int r = 0; r < B_LOADS; ++r) {
    const int e = tid + r * WORKGROUP;
    const int tile_n = TRANS_B ? e / TILE_K : e % TILE_N;
    const int tile_k = TRANS_B ? e % TILE_K : e / TILE_N;
    b_slab[tile_k * B_STRIDE + tile_n] = b_next[r];
  }
}

void main() {
  const int tid = int(gl_LocalInvocationID.x);
  const int tx = tid % THREADS_N, ty = tid / THREADS_N;
  const int64_t tiles_m = (p.m + TILE_M - 1) / TILE_M;
  const int64_t tiles_n = (p.n + OUT_TILE_N - 1) / OUT_TILE_N;
  const int64_t tiles = tiles_m * tiles_n;
  const int64_t group_tiles = GROUP_M * tiles_n;

  for (int batch = int(gl_WorkGroupID.y); batch < p.batch; batch += int(gl_NumWorkGroups.y)) {
    const uint64_t ab_size = dtype_size(AB_DTYPE);
    const uint64_t a_base = p.a + uint64_t(batch * p.a_batch_stride) * ab_size;
    const uint64_t b_base = p.b + uint64_t(batch * p.b_batch_stride) * ab_size;
    const uint64_t b_up_base = p.b_up + uint64_t(batch * p.b_batch_stride) * ab_size;
    const uint64_t c_base = p.c + uint64_t(batch * p.c_batch_stride) * dtype_size(C_DTYPE);
    const uint64_t residual_base = p.residual + uint64_t(batch * p.residual_batch_stride) * dtype_size(RESIDUAL_DTYPE);

    for (int64_t tile = int64_t(gl_WorkGroupID.x); tile < tiles; tile += int64_t(gl_NumWorkGroups.x)) {
      const int64_t first_m = (tile / group_tiles) * GROUP_M;
      const int64_t group_rows = min(tiles_m - first_m, int64_t(GROUP_M));
      const int64_t in_group = tile % group_tiles;
      const int row0 = int((first_m + in_group % group_rows) * TILE_M);
      const int col0 = int((in_group / group_rows) * OUT_TILE_N);

      float acc[THREAD_M][THREAD_N];
      [[unroll]] for (int i = 0; i < THREAD_M; ++i)
        [[unroll]] for (int j = 0; j < THREAD_N; ++j) acc[i][j] = 0.0;

      fetch_slab(a_base, b_base, b_up_base, row0, col0, 0);
      for (int k0 = 0; k0 < p.k; k0 += TILE_K) {
        barrier(); /* the previous slab (or tile) has been read */
        store_slab();
        barrier();
        if (k0 + TILE_K < p.k) fetch_slab(a_base, b_base, b_up_base, row0, col0, k0 + TILE_K);
        [[unroll]] for (int kk = 0; kk < TILE_K; ++kk) {
          float a_values[THREAD_M], b_values[THREAD_N];
          [[unroll]] for (int i = 0; i < THREAD_M; ++i) a_values[i] = a_slab[kk * A_STRIDE + ty + i * THREADS_M];
          [[unroll]] for (int j = 0; j < THREAD_N; ++j) b_values[j] = b_slab[kk * B_STRIDE + tx + j * THREADS_N];
          [[unroll]] for (int i = 0; i < THREAD_M; ++i)
            [[unroll]] for (int j = 0; j < THREAD_N; ++j) acc[i][j] = fma(a_values[i], b_values[j], acc[i][j]);
        }
      }

      /* Epilogue: each output element is read (beta C, residual — possibly the same memory) and
       * written by this invocation alone. */
      [[unroll]] for (int i = 0; i < THREAD_M; ++i) {
        const int row = row0 + ty + i * THREADS_M;
        if (row >= p.m) continue;
        [[unroll]] for (int j = 0; j < OUT_THREAD_N; ++j) {
          const int col = col0 + tx + j * THREADS_N;
          if (col >= p.n) continue;
          float value = p.alpha * acc[i][j];
          if (HAS_BIAS) value += load_scalar(BIAS_DTYPE, p.bias + uint64_t(int64_t(col) * p.bias_stride) * dtype_size(BIAS_DTYPE));
          if (SWIGLU) {
            float up = p.alpha * acc[i][j + OUT_THREAD_N];
            if (HAS_BIAS)
              up += load_scalar(BIAS_DTYPE, p.bias + uint64_t(p.bias_up_offset + int64_t(col) * p.bias_stride) *
                                                         dtype_size(BIAS_DTYPE));
            value = silu(value) * up;
          }
          const uint64_t c_address = c_base + uint64_t(int64_t(row) * p.ldc + col) * dtype_size(C_DTYPE);
          if (HAS_BETA) value += p.beta * load_scalar(C_DTYPE, c_address);
          if (HAS_RESIDUAL)
            value += load_scalar(RESIDUAL_DTYPE,
                                 residual_base + uint64_t(int64_t(row) * p.ld_residual + col) * dtype_size(RESIDUAL_DTYPE));
          store_scalar(C_DTYPE, c_address, value);
        }
      }
    }
  }
}

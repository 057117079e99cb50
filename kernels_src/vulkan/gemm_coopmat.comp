#version 460
/* gemm_coopmat.comp — C = epilogue(alpha op(A) op(B)) for f16 A and B on NVIDIA tensor cores through
 * VK_NV_cooperative_matrix: 16×16×16 f16 products, f32 accumulation (kf_gemm_args is the contract; the
 * host creates this module only on devices with the extension and subgroups of 32).
 *
 * A workgroup of SUBGROUPS_M × SUBGROUPS_N subgroups computes a TILE_M × TILE_N tile of op(A) op(B);
 * each subgroup a SUB_M × SUB_N block of 16 × 16 accumulator fragments. K advances TILE_K at a time
 * through two shared-memory stages: while the tensor cores multiply one stage, the next slab is
 * fetched from global memory into registers (16-byte loads when ALIGNED) and then stored into the
 * other stage, so each slab costs one barrier. The slabs keep A and B in their stored layout (rows of
 * the stored matrix padded by 8 f16 = 16 bytes, so that the 16-byte rows of a fragment load fall in
 * distinct banks); transposes become column-major fragment loads.
 *
 * Shared memory is an array of 32-bit words (fragment offsets and strides count words); a 16-byte
 * run is stored as 4 consecutive words.
 *
 * SwiGLU: the op(B) tile is made of 16-column blocks alternating gate and up columns of the same
 * outputs (block 2q: gate columns 16q..16q+15 of the tile, block 2q+1: the up columns), so a subgroup's
 * fragments j and j + 1 pair up for silu(gate) * up.
 *
 * Epilogue: after the last slab the stages are reused; each subgroup stores one accumulator fragment
 * (two for SwiGLU) at a time into its own part of shared memory, and every invocation then finishes 8
 * consecutive outputs of it (bias, SwiGLU, beta C, residual, rounding), written with one or two 16-byte
 * stores when C_ALIGNED and all 8 are inside C; a residual identical to C is read before it is
 * written, by the same invocation.
 */
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_GOOGLE_include_directive : require

#include "kernels_src/vulkan/kf_vk_gemm_params.h"

layout(constant_id = 0) const uint C_DTYPE = KF_DT_F32;
layout(constant_id = 1) const uint BIAS_DTYPE = KF_DT_F32;
layout(constant_id = 2) const uint RESIDUAL_DTYPE = KF_DT_F32;
layout(constant_id = 3) const bool HAS_BIAS = false;
layout(constant_id = 4) const bool HAS_RESIDUAL = false;
layout(constant_id = 5) const bool HAS_BETA = false; /* beta != 0: C is read */
layout(constant_id = 6) const bool SWIGLU = false;
layout(constant_id = 7) const bool TRANS_A = false;  /* A stored [k, m] */
layout(constant_id = 8) const bool TRANS_B = false;  /* B stored [n, k] */
/* Bit 0 (ALIGNED): every stored row of A and B (and the up half) starts 16-byte aligned and has a
 * multiple of 8 elements between rows: whole 8-element runs are read with one 16-byte load.
 * Bit 1 (C_ALIGNED): C starts 16-byte aligned and ldc is a multiple of 8 elements: 8 consecutive
 * outputs are written with 16-byte stores. (One constant for both: the backend allows 16.) */
layout(constant_id = 9) const uint ALIGNMENT = 0u;
const bool ALIGNED = (ALIGNMENT & 1u) != 0u;
const bool C_ALIGNED = (ALIGNMENT & 2u) != 0u;
/* Tile shape, chosen by the host (vulkan_gemm.c, with the shared-memory budget there). */
layout(constant_id = 10) const int TILE_M = 128;
layout(constant_id = 11) const int TILE_N = 128; /* columns of op(B); SwiGLU: gate + up */
layout(constant_id = 12) const int TILE_K = 32;
layout(constant_id = 13) const int SUBGROUPS_M = 2;
layout(constant_id = 14) const int SUBGROUPS_N = 4;
layout(local_size_x_id = 15) in;

const int FRAGMENT = 16;   /* the one NV cooperative-matrix shape used: 16 × 16 × 16 */
const int SUBGROUP = 32;
const int VECTOR = 8;      /* f16 per 16-byte load */
const int WORDS = 4;       /* 32-bit words of shared memory per 16-byte run */
const int WORKGROUP = SUBGROUPS_M * SUBGROUPS_N * SUBGROUP;
const int SUB_M = TILE_M / SUBGROUPS_M;
const int SUB_N = TILE_N / SUBGROUPS_N;
const int FRAGS_M = SUB_M / FRAGMENT;
const int FRAGS_N = SUB_N / FRAGMENT;
const int OUT_TILE_N = SWIGLU ? TILE_N / 2 : TILE_N;
const int GROUP_M = 8;     /* tile rows walked together, so consecutive workgroups share B in L2 */

/* Stage layouts in 32-bit words (2 f16): stored rows of A are m (k when TRANS_A), of B k (n when
 * TRANS_B); a row is its 16-byte runs and 16 bytes of padding. */
const int A_ROWS = TRANS_A ? TILE_K : TILE_M;
const int A_ROW_VECTORS = (TRANS_A ? TILE_M : TILE_K) / VECTOR;
const int A_STRIDE = (A_ROW_VECTORS + 1) * WORDS;
const int B_ROWS = TRANS_B ? TILE_N : TILE_K;
const int B_ROW_VECTORS = (TRANS_B ? TILE_K : TILE_N) / VECTOR;
const int B_STRIDE = (B_ROW_VECTORS + 1) * WORDS;
const int A_STAGE = A_ROWS * A_STRIDE;
const int B_STAGE = B_ROWS * B_STRIDE;
const int A_LOADS = A_ROWS * A_ROW_VECTORS / WORKGROUP;
const int B_LOADS = B_ROWS * B_ROW_VECTORS / WORKGROUP;
/* The epilogue's per-subgroup staging: one f32 fragment (two for SwiGLU), 256 words each. */
const int STAGING = (SWIGLU ? 2 : 1) * FRAGMENT * FRAGMENT;

const bool VECTORIZED = false; /* kf_chunks.glsl: this shader uses only its scalar helpers */
#include "kernels_src/vulkan/kf_chunks.glsl"

layout(push_constant) uniform Push {
  kf_vk_gemm_params p;
};

/* [stage 0 of A | stage 1 of A | stage 0 of B | stage 1 of B]; the epilogue's staging afterwards. */
const int STAGES_WORDS = 2 * A_STAGE + 2 * B_STAGE;
const int STAGING_WORDS = STAGING * SUBGROUPS_M * SUBGROUPS_N;
shared uint smem[STAGES_WORDS > STAGING_WORDS ? STAGES_WORDS : STAGING_WORDS];

float silu(float x) { return x / (1.0 + exp(-x)); }

/* Elements col ... col + 7 of stored row `row` of an f16 matrix; zero past row_limit / col_limit. */
uvec4 load_run(uint64_t base, int row, int ld, int col, int row_limit, int col_limit) {
  uvec4 run = uvec4(0u);
  if (row >= row_limit || col >= col_limit) return run;
  const uint64_t address = base + uint64_t(int64_t(row) * ld + col) * 2ul;
  if (ALIGNED && col + VECTOR <= col_limit) return Bytes16(address).value;
  [[unroll]] for (int i = 0; i < VECTOR; ++i)
    if (col + i < col_limit) run[i >> 1] |= uint(Bytes2(address + uint64_t(2 * i)).value) << ((i & 1) * 16);
  return run;
}

/* Column of op(B) (within its half) and the half of tile column `tile_col`; see SwiGLU above. */
int b_column(int col0, int tile_col, out bool up) {
  if (!SWIGLU) {
    up = false;
    return col0 + tile_col;
  }
  const int block = tile_col / FRAGMENT;
  up = (block & 1) != 0;
  return col0 + (block >> 1) * FRAGMENT + tile_col % FRAGMENT;
}

uvec4 a_next[A_LOADS];
uvec4 b_next[B_LOADS];

void fetch_slab(uint64_t a_base, uint64_t b_base, uint64_t b_up_base, int row0, int col0, int k0) {
  const int tid = int(gl_LocalInvocationID.x);
  [[unroll]] for (int r = 0; r < A_LOADS; ++r) {
    const int v = tid + r * WORKGROUP;
    const int stored_row = v / A_ROW_VECTORS, run = (v % A_ROW_VECTORS) * VECTOR;
    a_next[r] = TRANS_A ? load_run(a_base, k0 + stored_row, p.lda, row0 + run, p.k, p.m)
                        : load_run(a_base, row0 + stored_row, p.lda, k0 + run, p.m, p.k);
  }
  [[unroll]] for (int r = 0; r < B_LOADS; ++r) {
    const int v = tid + r * WORKGROUP;
    const int stored_row = v / B_ROW_VECTORS, run = (v % B_ROW_VECTORS) * VECTOR;
    bool up;
    if (TRANS_B) {
      const int col = b_column(col0, stored_row, up);
      b_next[r] = load_run(up ? b_up_base : b_base, col, p.ldb, k0 + run, p.n, p.k);
    } else {
      const int col = b_column(col0, run, up); /* a run never straddles a 16-column block */
      b_next[r] = load_run(up ? b_up_base : b_base, k0 + stored_row, p.ldb, col, p.k, p.n);
    }
  }
}

void store_run(int word, uvec4 run) {
  [[unroll]] for (int w = 0; w < WORDS; ++w) smem[word + w] = run[w];
}

void store_slab(int stage) {
  const int tid = int(gl_LocalInvocationID.x);
  [[unroll]] for (int r = 0; r < A_LOADS; ++r) {
    const int v = tid + r * WORKGROUP;
    store_run(stage * A_STAGE + (v / A_ROW_VECTORS) * A_STRIDE + (v % A_ROW_VECTORS) * WORDS, a_next[r]);
  }
  [[unroll]] for (int r = 0; r < B_LOADS; ++r) {
    const int v = tid + r * WORKGROUP;
    store_run(2 * A_STAGE + stage * B_STAGE + (v / B_ROW_VECTORS) * B_STRIDE + (v % B_ROW_VECTORS) * WORDS, b_next[r]);
  }
}

/* Output (row, col) from the gate (or only) sum and the up sum, before beta C and the residual. */
float activate(int col, float sum, float up_sum) {
  float value = p.alpha * sum;
  if (HAS_BIAS) value += load_scalar(BIAS_DTYPE, p.bias + uint64_t(int64_t(col) * p.bias_stride) * dtype_size(BIAS_DTYPE));
  if (SWIGLU) {
    float up = p.alpha * up_sum;
    if (HAS_BIAS)
      up += load_scalar(BIAS_DTYPE, p.bias + uint64_t(p.bias_up_offset + int64_t(col) * p.bias_stride) * dtype_size(BIAS_DTYPE));
    value = silu(value) * up;
  }
  return value;
}

/* Finishes outputs (row, col ... col + 7) from 8 gate (or only) sums and 8 up sums. */
void finish8(uint64_t c_base, uint64_t residual_base, int row, int col, vec4 sums[2], vec4 up_sums[2]) {
  if (row >= p.m) return;
  const uint64_t c_row = c_base + uint64_t(int64_t(row) * p.ldc) * dtype_size(C_DTYPE);
  const uint64_t residual_row = residual_base + uint64_t(int64_t(row) * p.ld_residual) * dtype_size(RESIDUAL_DTYPE);
  if (C_ALIGNED && col + 8 <= p.n) {
    vec4 v[2];
    [[unroll]] for (int h = 0; h < 2; ++h)
      [[unroll]] for (int e = 0; e < 4; ++e) v[h][e] = activate(col + 4 * h + e, sums[h][e], up_sums[h][e]);
    if (HAS_BETA) {
      vec4 lo, hi;
      load_values(C_DTYPE, c_row + uint64_t(col) * dtype_size(C_DTYPE), 0, 8, 1, lo, hi);
      v[0] += p.beta * lo;
      v[1] += p.beta * hi;
    }
    if (HAS_RESIDUAL) {
      vec4 lo, hi;
      load_values(RESIDUAL_DTYPE, residual_row + uint64_t(col) * dtype_size(RESIDUAL_DTYPE), 0, 8, 1, lo, hi);
      v[0] += lo;
      v[1] += hi;
    }
    uvec4 a, b;
    encode_chunk(C_DTYPE, v[0], v[1], a, b);
    const uint64_t address = c_row + uint64_t(col) * dtype_size(C_DTYPE);
    Bytes16(address).value = a;
    if (C_DTYPE == KF_DT_F32) Bytes16(address + 16ul).value = b;
    return;
  }
  [[unroll]] for (int e = 0; e < 8; ++e) {
    if (col + e >= p.n) break;
    float value = activate(col + e, sums[e / 4][e % 4], up_sums[e / 4][e % 4]);
    const uint64_t c_address = c_row + uint64_t(col + e) * dtype_size(C_DTYPE);
    if (HAS_BETA) value += p.beta * load_scalar(C_DTYPE, c_address);
    if (HAS_RESIDUAL) value += load_scalar(RESIDUAL_DTYPE, residual_row + uint64_t(col + e) * dtype_size(RESIDUAL_DTYPE));
    store_scalar(C_DTYPE, c_address, value);
  }
}

void main() {
  const int tid = int(gl_LocalInvocationID.x);
  const int subgroup = tid / SUBGROUP, lane = tid % SUBGROUP;
  const int sub_row = (subgroup / SUBGROUPS_N) * SUB_M, sub_col = (subgroup % SUBGROUPS_N) * SUB_N;
  const int64_t tiles_m = (p.m + TILE_M - 1) / TILE_M;
  const int64_t tiles_n = (p.n + OUT_TILE_N - 1) / OUT_TILE_N;
  const int64_t tiles = tiles_m * tiles_n;
  const int64_t group_tiles = GROUP_M * tiles_n;
  const int k_slabs = (p.k + TILE_K - 1) / TILE_K;

  for (int batch = int(gl_WorkGroupID.y); batch < p.batch; batch += int(gl_NumWorkGroups.y)) {
    const uint64_t a_base = p.a + uint64_t(batch * p.a_batch_stride) * 2ul;
    const uint64_t b_base = p.b + uint64_t(batch * p.b_batch_stride) * 2ul;
    const uint64_t b_up_base = p.b_up + uint64_t(batch * p.b_batch_stride) * 2ul;
    const uint64_t c_base = p.c + uint64_t(batch * p.c_batch_stride) * dtype_size(C_DTYPE);
    const uint64_t residual_base = p.residual + uint64_t(batch * p.residual_batch_stride) * dtype_size(RESIDUAL_DTYPE);

    for (int64_t tile = int64_t(gl_WorkGroupID.x); tile < tiles; tile += int64_t(gl_NumWorkGroups.x)) {
      const int64_t first_m = (tile / group_tiles) * GROUP_M;
      const int64_t group_rows = min(tiles_m - first_m, int64_t(GROUP_M));
      const int64_t in_group = tile % group_tiles;
      const int row0 = int((first_m + in_group % group_rows) * TILE_M);
      const int col0 = int((in_group / group_rows) * OUT_TILE_N);
      fcoopmatNV<32, gl_ScopeSubgroup, FRAGMENT, FRAGMENT> acc[FRAGS_M][FRAGS_N];
      [[unroll]] for (int i = 0; i < FRAGS_M; ++i)
        [[unroll]] for (int j = 0; j < FRAGS_N; ++j) acc[i][j] = fcoopmatNV<32, gl_ScopeSubgroup, FRAGMENT, FRAGMENT>(0.0);

      barrier(); /* the previous tile's epilogue no longer reads the staging area */
      if (k_slabs > 0) {
        fetch_slab(a_base, b_base, b_up_base, row0, col0, 0);
        store_slab(0);
      }
      barrier();
      for (int slab = 0; slab < k_slabs; ++slab) {
        const int stage = slab & 1;
        const bool more = slab + 1 < k_slabs;
        if (more) fetch_slab(a_base, b_base, b_up_base, row0, col0, (slab + 1) * TILE_K);
        [[unroll]] for (int kk = 0; kk < TILE_K; kk += FRAGMENT) {
          fcoopmatNV<16, gl_ScopeSubgroup, FRAGMENT, FRAGMENT> a_frag[FRAGS_M];
          fcoopmatNV<16, gl_ScopeSubgroup, FRAGMENT, FRAGMENT> b_frag[FRAGS_N];
          [[unroll]] for (int i = 0; i < FRAGS_M; ++i) {
            const int row = sub_row + i * FRAGMENT;
            if (TRANS_A)
              coopMatLoadNV(a_frag[i], smem, stage * A_STAGE + kk * A_STRIDE + row / 2, A_STRIDE, true);
            else
              coopMatLoadNV(a_frag[i], smem, stage * A_STAGE + row * A_STRIDE + kk / 2, A_STRIDE, false);
          }
          [[unroll]] for (int j = 0; j < FRAGS_N; ++j) {
            const int col = sub_col + j * FRAGMENT;
            const int b_stage = 2 * A_STAGE + stage * B_STAGE;
            if (TRANS_B)
              coopMatLoadNV(b_frag[j], smem, b_stage + col * B_STRIDE + kk / 2, B_STRIDE, true);
            else
              coopMatLoadNV(b_frag[j], smem, b_stage + kk * B_STRIDE + col / 2, B_STRIDE, false);
          }
          [[unroll]] for (int i = 0; i < FRAGS_M; ++i)
            [[unroll]] for (int j = 0; j < FRAGS_N; ++j) acc[i][j] = coopMatMulAddNV(a_frag[i], b_frag[j], acc[i][j]);
        }
        if (more) store_slab(stage ^ 1);
        barrier();
      }

      /* Epilogue through this subgroup's staging area: lane l finishes row l / 2, columns
       * 8 (l % 2) ... + 7 of each fragment. */
      const int staging = subgroup * STAGING;
      const int frag_row = lane / 2, frag_col = (lane % 2) * 8;
      [[unroll]] for (int i = 0; i < FRAGS_M; ++i) {
        const int row = row0 + sub_row + i * FRAGMENT + frag_row;
        [[unroll]] for (int j = 0; j < FRAGS_N; j += SWIGLU ? 2 : 1) {
          coopMatStoreNV(acc[i][j], smem, staging, FRAGMENT, false);
          if (SWIGLU) coopMatStoreNV(acc[i][j + 1], smem, staging + FRAGMENT * FRAGMENT, FRAGMENT, false);
          subgroupMemoryBarrierShared();
          subgroupBarrier();
          const int at = staging + frag_row * FRAGMENT + frag_col;
          vec4 sums[2], up_sums[2] = {vec4(0.0), vec4(0.0)};
          [[unroll]] for (int h = 0; h < 2; ++h) {
            sums[h] = uintBitsToFloat(uvec4(smem[at + 4 * h], smem[at + 4 * h + 1], smem[at + 4 * h + 2], smem[at + 4 * h + 3]));
            if (SWIGLU) {
              const int up_at = at + FRAGMENT * FRAGMENT + 4 * h;
              up_sums[h] = uintBitsToFloat(uvec4(smem[up_at], smem[up_at + 1], smem[up_at + 2], smem[up_at + 3]));
            }
          }
          subgroupBarrier(); /* read before the next fragment overwrites the staging area */
          const int col = col0 + (SWIGLU ? ((sub_col / FRAGMENT + j) / 2) * FRAGMENT : sub_col + j * FRAGMENT) + frag_col;
          finish8(c_base, residual_base, row, col, sums, up_sums);
        }
      }
    }
  }
}

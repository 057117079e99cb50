#version 460
/* attention_coopmat.comp — flash attention (single pass, online softmax) for f16 q, k, v and out on
 * NVIDIA tensor cores through VK_NV_cooperative_matrix: both products, S = Q Kᵀ and O += P V, are
 * 16×16×16 f16 fragment products with f32 accumulation. The host (vulkan_attention.c) uses it for
 * prefill (q_len > 16) with head_dim <= 128, on devices with the extension and subgroups of 32; decode
 * and everything else stay with attention.comp, whose header explains the row packing shared here.
 *
 * Rows. As in attention.comp: row r of a (batch, kv head) is query r / GROUP of q head
 * kv_head * GROUP + r % GROUP. A work item is BLOCK_ROWS = 64 consecutive rows; subgroup s owns rows
 * 16 s ... 16 s + 15 alone, so the softmax of a row involves only its subgroup (subgroup barriers);
 * workgroup barriers guard only the shared K/V tile.
 *
 * Head dimensions are zero-padded to DIM (a multiple of 16) in shared memory: the padding adds zeros to
 * S and produces output columns that are never stored.
 *
 * Per item: Q rows -> shared (in the K/V area); each subgroup loads its Q fragments into registers.
 * Per K/V tile of BLOCK_KEYS keys:
 *   1. K and V tiles -> shared (keys past kv_len are zero: 0 * garbage could be NaN).    barrier
 *   2. S = Q Kᵀ (Kᵀ as column-major fragments of the K tile), stored f32 into the subgroup's staging.
 *   3. Lane l takes row l / 2, keys (l % 2) * BLOCK_KEYS / 2 onward: scale to log2 units, mask, its
 *      maximum; the two lanes of a row exchange maxima through shared memory (subgroup barrier).
 *      P = 2^(S - m) (m: step 4's reference maximum) rounded to f16 into the staging (the S values are
 *      in registers by then); the row sum adds the rounded values, so that the P V weights and the
 *      normalization agree (packHalf2x16: the hardware conversion's rounding).
 *   4. The row's reference maximum m moves only when the tile's maximum exceeds it by more than
 *      RESCALE_SLACK (or m is still -inf), so the weights are at most 2^RESCALE_SLACK and rescaling O
 *      by 2^(m_old - m_new) is rare. Cooperative matrices have no per-row scaling (and glslc 2023.2's
 *      optimizer crashes on their component-wise arithmetic), so O's fragments go through the staging:
 *      store, each lane scales its row's 8 values, load.
 *   5. O += P V with P fragments from the staging and V fragments from the V tile.
 * Output: each O fragment goes through the staging; lane l finishes row l / 2, 8 columns, divided by
 * the row sum. A row that sees no key gets out 0 and lse -inf. Nothing of size q_len x kv_len exists.
 *
 * Shared memory is an array of 32-bit words (fragment offsets and strides count words); f16 values are
 * packed two per word. Rows of the Q, K and V tiles are DIM f16 plus 16 bytes of padding, so that the
 * 16-byte rows of a fragment load fall in distinct banks.
 */
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_GOOGLE_include_directive : require

#include "kernels_src/vulkan/kf_vk_attention_params.h"

/* Four subgroups of 32 (NVIDIA's width, which the host checks) of 16 rows each: the host's shared-memory
 * formula (vulkan_attention.c, coopmat_shared_bytes) assumes these. */
#define SUBGROUPS 4
#define SUBGROUP 32
#define WORKGROUP_SIZE (SUBGROUPS * SUBGROUP)
layout(local_size_x = WORKGROUP_SIZE) in;

layout(constant_id = 0) const int HEAD_DIM = 128;     /* a multiple of 8, at most 128 */
layout(constant_id = 1) const int BLOCK_KEYS = 32;    /* keys per K/V tile, a multiple of 16 */
layout(constant_id = 2) const int GROUP = 1;          /* q_heads / kv_heads */
layout(constant_id = 3) const bool CAUSAL = false;
layout(constant_id = 4) const bool HAS_LSE = false;
/* 16-byte global accesses: every row of q, k, v and out starts 16-byte aligned. */
layout(constant_id = 5) const bool VECTORIZED = false;

layout(push_constant) uniform Push {
  kf_vk_attention_params p;
};

#include "kernels_src/vulkan/kf_chunks.glsl"

const int FRAGMENT = 16;                                 /* the one NV cooperative-matrix shape used */
const int BLOCK_ROWS = SUBGROUPS * FRAGMENT;
const int DIM = (HEAD_DIM + FRAGMENT - 1) / FRAGMENT * FRAGMENT;
const int DIM_FRAGMENTS = DIM / FRAGMENT;
const int KEY_FRAGMENTS = BLOCK_KEYS / FRAGMENT;
const int CHUNKS = HEAD_DIM / CHUNK;                     /* 8-element (16-byte) chunks holding data */
const int DIM_CHUNKS = DIM / CHUNK;                      /* ... and with the padding */
const int WORDS = 4;                                     /* words per 16-byte chunk */
const int TILE_STRIDE = (DIM_CHUNKS + 1) * WORDS;        /* words per Q / K / V row */
const int HALF_KEYS = BLOCK_KEYS / 2;                    /* keys per lane in step 3 */

/* [K tile | V tile] (the item's Q rows before the first tile), then one staging area per subgroup:
 * S (16 rows of BLOCK_KEYS f32, rows padded by 16 bytes), later overwritten by one O
 * fragment (16 × 16 f32, step 4 and the output), and P (16 rows of BLOCK_KEYS f16, padded by 16 bytes). */
const int V_TILE = BLOCK_KEYS * TILE_STRIDE;
const int TILES_WORDS = (2 * BLOCK_KEYS > BLOCK_ROWS ? 2 * BLOCK_KEYS : BLOCK_ROWS) * TILE_STRIDE;
const int S_STRIDE = BLOCK_KEYS + WORDS;
const int P_STRIDE = BLOCK_KEYS / 2 + WORDS;
const int O_WORDS = FRAGMENT * FRAGMENT;
const int S_WORDS = FRAGMENT * S_STRIDE;
const int OP_WORDS = O_WORDS + FRAGMENT * P_STRIDE;
const int STAGE_WORDS = S_WORDS > OP_WORDS ? S_WORDS : OP_WORDS;

shared uint smem[TILES_WORDS + SUBGROUPS * STAGE_WORDS];
/* The partial row maxima (step 3) and row sums (output) of each lane, exchanged between a row's lanes. */
shared float lane_partials[WORKGROUP_SIZE];

#define NEG_INF uintBitsToFloat(0xff800000u)
/* Slack of the reference maximum, log2 units: weights up to 2^8 are exact enough in f16 (relative
 * rounding does not depend on magnitude) and far from its 65504 limit, and rescaling O becomes rare. */
#define RESCALE_SLACK 8.0
#define LN2 0.69314718055994531

/* Visible keys of query `query`: [first, last], clamped to [0, kv_len) (empty: last < first). */
void visible_keys(int query, out int first, out int last) {
  const int64_t position = int64_t(query) + int64_t(p.kv_len - p.q_len);
  int64_t lo = p.window_left >= 0 ? position - p.window_left : 0;
  int64_t hi = CAUSAL ? position : int64_t(p.kv_len - 1);
  first = int(clamp(lo, 0l, int64_t(p.kv_len)));
  last = int(clamp(hi, -1l, int64_t(p.kv_len - 1)));
}

void store_chunk_words(int word, uvec4 chunk) {
  [[unroll]] for (int w = 0; w < WORDS; ++w) smem[word + w] = chunk[w];
}

/* K and V rows first_key ... first_key + BLOCK_KEYS - 1 into their tiles; rows at or past kv_len and
 * the padding columns are zero. */
void load_kv_tiles(uint64_t k_head, uint64_t v_head, int first_key) {
  for (int index = int(gl_LocalInvocationID.x); index < BLOCK_KEYS * DIM_CHUNKS; index += WORKGROUP_SIZE) {
    const int key = index / DIM_CHUNKS, chunk = index % DIM_CHUNKS;
    uvec4 k_chunk = uvec4(0u), v_chunk = uvec4(0u), unused;
    if (first_key + key < p.kv_len && chunk < CHUNKS) {
      const int64_t row = int64_t(first_key + key);
      load_chunk(KF_DT_F16, k_head + uint64_t(row * p.k_seq_stride) * 2ul, chunk, HEAD_DIM, 1, k_chunk, unused);
      load_chunk(KF_DT_F16, v_head + uint64_t(row * p.v_seq_stride) * 2ul, chunk, HEAD_DIM, 1, v_chunk, unused);
    }
    store_chunk_words(key * TILE_STRIDE + chunk * WORDS, k_chunk);
    store_chunk_words(V_TILE + key * TILE_STRIDE + chunk * WORDS, v_chunk);
  }
}

void subgroup_shared_barrier() {
  subgroupMemoryBarrierShared();
  subgroupBarrier();
}

void main() {
  const int tid = int(gl_LocalInvocationID.x);
  const int subgroup = int(gl_SubgroupID), lane = int(gl_SubgroupInvocationID);
  const int slot = subgroup * SUBGROUP + lane; /* this lane's lane_partials; its row's other lane: slot ^ 1 */
  const int rows = p.q_len * GROUP;
  const int row_blocks = (rows + BLOCK_ROWS - 1) / BLOCK_ROWS;
  const int items = p.batch * p.kv_heads * row_blocks;
  const int staging = TILES_WORDS + subgroup * STAGE_WORDS;
  /* Step 3's and the output's layout: this lane's row of the subgroup's 16, and its half. */
  const int lane_row = lane / 2, lane_half = lane % 2;

  for (int item = int(gl_WorkGroupID.x); item < items; item += int(gl_NumWorkGroups.x)) {
    /* Row blocks vary fastest, so concurrent workgroups read the same K/V; the last block first, since
     * under a causal mask it sees the most keys. */
    const int row_block = row_blocks - 1 - item % row_blocks;
    const int batch_head = item / row_blocks;
    const int b = batch_head / p.kv_heads, kv_head = batch_head % p.kv_heads;
    const int first_row = row_block * BLOCK_ROWS;
    const int last_row = min(first_row + BLOCK_ROWS, rows) - 1;

    barrier(); /* the previous item no longer reads the tiles */
    /* Q rows -> the tile area (rows past the end and the padding are zero). */
    for (int index = tid; index < BLOCK_ROWS * DIM_CHUNKS; index += WORKGROUP_SIZE) {
      const int row = index / DIM_CHUNKS, chunk = index % DIM_CHUNKS;
      const int r = first_row + row;
      uvec4 q_chunk = uvec4(0u), unused;
      if (r < rows && chunk < CHUNKS) {
        const int query = r / GROUP, head = kv_head * GROUP + r % GROUP;
        const uint64_t address =
            p.q + uint64_t(int64_t(b) * p.q_batch_stride + int64_t(query) * p.q_seq_stride +
                           int64_t(head) * p.q_head_stride) * 2ul;
        load_chunk(KF_DT_F16, address, chunk, HEAD_DIM, 1, q_chunk, unused);
      }
      store_chunk_words(row * TILE_STRIDE + chunk * WORDS, q_chunk);
    }
    barrier();
    fcoopmatNV<16, gl_ScopeSubgroup, FRAGMENT, FRAGMENT> q_frag[DIM_FRAGMENTS];
    [[unroll]] for (int d = 0; d < DIM_FRAGMENTS; ++d)
      coopMatLoadNV(q_frag[d], smem, subgroup * FRAGMENT * TILE_STRIDE + d * (FRAGMENT / 2), TILE_STRIDE, false);
    fcoopmatNV<32, gl_ScopeSubgroup, FRAGMENT, FRAGMENT> o_frag[DIM_FRAGMENTS];
    [[unroll]] for (int d = 0; d < DIM_FRAGMENTS; ++d) o_frag[d] = fcoopmatNV<32, gl_ScopeSubgroup, FRAGMENT, FRAGMENT>(0.0);

    /* The keys any row of the block sees. */
    int key_begin, key_end, unused_key;
    visible_keys(first_row / GROUP, key_begin, unused_key);
    visible_keys(last_row / GROUP, unused_key, key_end);
    key_end += 1;

    /* This lane's row: its visible keys (none past the end of the rows), running maximum and the sum of
     * this lane's half of the weights. */
    const int lane_r = first_row + subgroup * FRAGMENT + lane_row;
    int row_first_key = 0, row_last_key = -1;
    if (lane_r < rows) visible_keys(lane_r / GROUP, row_first_key, row_last_key);
    float row_max = NEG_INF, lane_sum = 0.0;

    const uint64_t k_head = p.k + uint64_t(int64_t(b) * p.k_batch_stride + int64_t(kv_head) * p.k_head_stride) * 2ul;
    const uint64_t v_head = p.v + uint64_t(int64_t(b) * p.v_batch_stride + int64_t(kv_head) * p.v_head_stride) * 2ul;
    const int first_tile = key_begin >= key_end ? key_end : key_begin - key_begin % BLOCK_KEYS;
    for (int first_key = first_tile; first_key < key_end; first_key += BLOCK_KEYS) {
      /* 1. (The barrier before it: every subgroup has read its Q fragments, or the previous tile.) */
      barrier();
      load_kv_tiles(k_head, v_head, first_key);
      barrier();

      /* 2. */
      [[unroll]] for (int kf = 0; kf < KEY_FRAGMENTS; ++kf) {
        fcoopmatNV<32, gl_ScopeSubgroup, FRAGMENT, FRAGMENT> s_frag = fcoopmatNV<32, gl_ScopeSubgroup, FRAGMENT, FRAGMENT>(0.0);
        [[unroll]] for (int d = 0; d < DIM_FRAGMENTS; ++d) {
          fcoopmatNV<16, gl_ScopeSubgroup, FRAGMENT, FRAGMENT> k_frag;
          /* Kᵀ(dim, key) = K tile (key, dim): column-major with the tile's row stride. */
          coopMatLoadNV(k_frag, smem, kf * FRAGMENT * TILE_STRIDE + d * (FRAGMENT / 2), TILE_STRIDE, true);
          s_frag = coopMatMulAddNV(q_frag[d], k_frag, s_frag);
        }
        coopMatStoreNV(s_frag, smem, staging + kf * FRAGMENT, S_STRIDE, false);
      }
      subgroup_shared_barrier();

      /* 3. */
      const int lane_first_key = first_key + lane_half * HALF_KEYS;
      float s[HALF_KEYS];
      float lane_max = NEG_INF;
      [[unroll]] for (int j = 0; j < HALF_KEYS; ++j) {
        const int key = lane_first_key + j;
        const bool visible = key >= row_first_key && key <= row_last_key;
        s[j] = visible ? uintBitsToFloat(smem[staging + lane_row * S_STRIDE + lane_half * HALF_KEYS + j]) * p.scale_log2
                       : NEG_INF;
        lane_max = max(lane_max, s[j]);
      }
      lane_partials[slot] = lane_max;
      subgroup_shared_barrier(); /* also: every lane holds its S values, the staging may be overwritten */
      /* The reference maximum moves only when the tile's maximum exceeds it by RESCALE_SLACK (or it is
       * still -inf): the weights stay at most 2^RESCALE_SLACK. No visible key yet: the row stays at -inf
       * with weights 0 (never 2^(-inf - -inf)). */
      const float tile_max = max(lane_max, lane_partials[slot ^ 1]);
      const bool grow = tile_max > row_max + RESCALE_SLACK;
      const float reference = grow ? tile_max : row_max;
      const float alpha = grow ? exp2(row_max - reference) : 1.0; /* 0 when row_max was -inf */
      const bool seen = reference != NEG_INF;
      float sum = 0.0;
      [[unroll]] for (int j = 0; j < HALF_KEYS; j += 2) {
        const uint pair = packHalf2x16(seen ? exp2(vec2(s[j], s[j + 1]) - reference) : vec2(0.0));
        const vec2 rounded = unpackHalf2x16(pair);
        sum += rounded.x + rounded.y;
        smem[staging + O_WORDS + lane_row * P_STRIDE + (lane_half * HALF_KEYS + j) / 2] = pair;
      }
      lane_sum = lane_sum * alpha + sum;
      /* 4. O is 0 while row_max is -inf, so only rows with a finite old maximum need it. */
      const bool rescale = subgroupOr(grow && row_max != NEG_INF);
      row_max = reference;
      subgroup_shared_barrier();
      if (rescale) {
        [[unroll]] for (int d = 0; d < DIM_FRAGMENTS; ++d) {
          coopMatStoreNV(o_frag[d], smem, staging, FRAGMENT, false);
          subgroup_shared_barrier();
          const int at = staging + lane_row * FRAGMENT + lane_half * (FRAGMENT / 2);
          [[unroll]] for (int c = 0; c < FRAGMENT / 2; ++c)
            smem[at + c] = floatBitsToUint(uintBitsToFloat(smem[at + c]) * alpha);
          subgroup_shared_barrier();
          coopMatLoadNV(o_frag[d], smem, staging, FRAGMENT, false);
          subgroup_shared_barrier(); /* loaded before the next fragment overwrites the staging */
        }
      }

      /* 5. */
      fcoopmatNV<16, gl_ScopeSubgroup, FRAGMENT, FRAGMENT> p_frag[KEY_FRAGMENTS];
      [[unroll]] for (int kf = 0; kf < KEY_FRAGMENTS; ++kf)
        coopMatLoadNV(p_frag[kf], smem, staging + O_WORDS + kf * (FRAGMENT / 2), P_STRIDE, false);
      [[unroll]] for (int d = 0; d < DIM_FRAGMENTS; ++d) {
        [[unroll]] for (int kf = 0; kf < KEY_FRAGMENTS; ++kf) {
          fcoopmatNV<16, gl_ScopeSubgroup, FRAGMENT, FRAGMENT> v_frag;
          coopMatLoadNV(v_frag, smem, V_TILE + kf * FRAGMENT * TILE_STRIDE + d * (FRAGMENT / 2), TILE_STRIDE, false);
          o_frag[d] = coopMatMulAddNV(p_frag[kf], v_frag, o_frag[d]);
        }
      }
    }

    /* Output. The row's sum from its two lanes (the staging and lane_partials are free once every lane
     * of the subgroup is past step 5). */
    subgroup_shared_barrier();
    lane_partials[slot] = lane_sum;
    subgroup_shared_barrier();
    const float row_sum = lane_sum + lane_partials[slot ^ 1];
    const float inverse = row_sum > 0.0 ? 1.0 / row_sum : 0.0; /* no visible key: out 0 */
    const int query = lane_r / GROUP, head = kv_head * GROUP + lane_r % GROUP;
    const uint64_t out_row = p.result + uint64_t(int64_t(b) * p.result_batch_stride + int64_t(query) * p.result_seq_stride +
                                                 int64_t(head) * p.result_head_stride) * 2ul;
    [[unroll]] for (int d = 0; d < DIM_FRAGMENTS; ++d) {
      coopMatStoreNV(o_frag[d], smem, staging, FRAGMENT, false);
      subgroup_shared_barrier();
      const int at = staging + lane_row * FRAGMENT + lane_half * (FRAGMENT / 2);
      const vec4 lo = uintBitsToFloat(uvec4(smem[at], smem[at + 1], smem[at + 2], smem[at + 3]));
      const vec4 hi = uintBitsToFloat(uvec4(smem[at + 4], smem[at + 5], smem[at + 6], smem[at + 7]));
      subgroup_shared_barrier(); /* read before the next fragment overwrites the staging */
      const int chunk = d * 2 + lane_half;
      if (lane_r < rows && chunk < CHUNKS) store_values(KF_DT_F16, out_row, chunk, HEAD_DIM, lo * inverse, hi * inverse);
    }
    if (HAS_LSE && lane_r < rows && lane_half == 0) {
      const uint64_t address = p.lse + uint64_t(int64_t(b) * p.lse_batch_stride + int64_t(query) * p.lse_seq_stride +
                                                int64_t(head) * p.lse_head_stride) * 4ul;
      Bytes4(address).value = floatBitsToUint(row_sum > 0.0 ? (row_max + log2(row_sum)) * LN2 : NEG_INF);
    }
  }
}

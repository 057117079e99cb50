#version 460
/* attention.comp — flash attention (single pass, online softmax) for one block of query rows per work
 * item, and the first half of split-KV decode (attention_merge.comp is the second).
 *
 * Rows. The queries of one (batch, kv head) are handled together: row r is query r / GROUP of q head
 * kv_head * GROUP + r % GROUP, so the GROUP q heads that share a kv head (GQA) share every K/V tile a
 * workgroup loads. A work item is BLOCK_ROWS consecutive rows and, in the split-KV pass, one range of
 * keys_per_split keys.
 *
 * Per K/V tile of BLOCK_KEYS keys, with the item's Q rows in shared memory since its start:
 *   1. K tile -> shared.                                                            barrier
 *   2. S = Q Kᵀ * scale * log2(e): invocation (row lane, key lane) owns S_ROWS rows x S_KEYS keys, keys
 *      outside the query's visible range are -inf; its per-row maxima go to row_partials. barrier
 *   3. V tile -> shared (K is no longer read). Each row's new maximum m from the row's KEY_LANES
 *      partials, P = 2^(S - m) -> p_tile, the rescale factor 2^(m_old - m) -> row_scale. barrier
 *   4. O = O * row_scale + P V: invocation (row lane, chunk lane) owns O_ROWS rows x O_CHUNKS chunks of
 *      8 dims, in registers.                                                         barrier
 * The per-row maximum goes through shared memory: it rides on barrier 2, which the V load needs
 * anyway, so a subgroup reduction would save no barrier (and the key lanes of a row are fewer than a
 * subgroup, which the guaranteed subgroup arithmetic cannot reduce alone). Row sums stay per key lane
 * (each lane rescales its own by the same factor) and are added once at the end.
 *
 * Tiles outside the block's visible key range (causal, window, split) are skipped. A query that sees
 * no key keeps m = -inf and sum 0 and gets out 0 and lse -inf. Nothing of size q_len x kv_len exists:
 * S and P live one tile at a time.
 */
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_GOOGLE_include_directive : require

#include "kernels_src/vulkan/kf_vk_attention_params.h"

/* 128 invocations: four NVIDIA warps / two AMD wave64s, enough to hide the tile loads while several
 * workgroups share a compute unit. The host's tile plan (vulkan_attention.c) assumes it. */
#define WORKGROUP_SIZE 128
layout(local_size_x = WORKGROUP_SIZE) in;

layout(constant_id = 0) const uint DTYPE = KF_DT_F32;     /* of q, k, v and out */
layout(constant_id = 1) const int HEAD_DIM = 128;         /* a multiple of 8, at most 256 */
layout(constant_id = 2) const int BLOCK_ROWS = 32;        /* query rows per work item */
layout(constant_id = 3) const int BLOCK_KEYS = 32;        /* keys per K/V tile, a multiple of 4 */
layout(constant_id = 4) const int S_ROWS = 4;             /* S micro-tile of an invocation: rows ... */
layout(constant_id = 5) const int S_KEYS = 2;             /* ... x keys */
layout(constant_id = 6) const int O_CHUNK_LANES = 16;     /* invocations across a row's chunks in step 4 */
layout(constant_id = 7) const int GROUP = 1;              /* q_heads / kv_heads */
layout(constant_id = 8) const bool CAUSAL = false;
layout(constant_id = 9) const bool HAS_LSE = false;
layout(constant_id = 10) const bool SPLIT = false;        /* write partial records, not out / lse */
/* 16-byte global accesses: every row of q, k, v and out starts 16-byte aligned. */
layout(constant_id = 11) const bool VECTORIZED = false;

layout(push_constant) uniform Push {
  kf_vk_attention_params p;
};

#include "kernels_src/vulkan/kf_chunks.glsl"

const int CHUNKS = HEAD_DIM / CHUNK;                          /* 8-element chunks per row */
const int VECS_PER_CHUNK = DTYPE == KF_DT_F32 ? 2 : 1;        /* uvec4s per chunk */
/* uvec4s per shared row; the extra one makes consecutive rows start in different banks. */
const int PITCH = CHUNKS * VECS_PER_CHUNK + 1;
const int KEY_LANES = BLOCK_KEYS / S_KEYS;                    /* invocations sharing a row in step 2 */
const int ROW_LANES = WORKGROUP_SIZE / KEY_LANES;             /* row r is owned by row lane r % ROW_LANES */
const int O_ROW_LANES = WORKGROUP_SIZE / O_CHUNK_LANES;
const int O_ROWS = BLOCK_ROWS / O_ROW_LANES;
const int O_CHUNKS = (CHUNKS + O_CHUNK_LANES - 1) / O_CHUNK_LANES;
const int P_PITCH = BLOCK_KEYS / 4 + 1;                       /* vec4s per p_tile row, padded likewise */
/* A partial record: HEAD_DIM unnormalized outputs, the row maximum (log2 units) and the row sum,
 * padded to 16 bytes. */
const int RECORD_FLOATS = HEAD_DIM + 4;

shared uvec4 q_tile[BLOCK_ROWS * PITCH];
shared uvec4 kv_tile[BLOCK_KEYS * PITCH];
shared vec4 p_tile[BLOCK_ROWS * P_PITCH];
shared float row_partials[BLOCK_ROWS * KEY_LANES];
shared float row_scale[BLOCK_ROWS];

#define NEG_INF uintBitsToFloat(0xff800000u)
#define LN2 0.69314718055994531

/* Chunk `chunk` of shared row `row` as 8 floats. */
void q_chunk(int row, int chunk, out vec4 lo, out vec4 hi) {
  const int at = row * PITCH + chunk * VECS_PER_CHUNK;
  decode_chunk(DTYPE, q_tile[at], VECS_PER_CHUNK == 2 ? q_tile[at + 1] : uvec4(0u), lo, hi);
}

void kv_chunk(int key, int chunk, out vec4 lo, out vec4 hi) {
  const int at = key * PITCH + chunk * VECS_PER_CHUNK;
  decode_chunk(DTYPE, kv_tile[at], VECS_PER_CHUNK == 2 ? kv_tile[at + 1] : uvec4(0u), lo, hi);
}

/* K or V rows first_key ... first_key + BLOCK_KEYS - 1 of one (batch, kv head) into kv_tile; rows at or
 * past kv_len are zero (a masked key's weight is 0, and 0 * garbage could be NaN). */
void load_kv_tile(uint64_t head_base, int seq_stride, int first_key) {
  for (int index = int(gl_LocalInvocationID.x); index < BLOCK_KEYS * CHUNKS; index += WORKGROUP_SIZE) {
    const int key = index / CHUNKS, chunk = index % CHUNKS;
    uvec4 a = uvec4(0u), b = uvec4(0u);
    if (first_key + key < p.kv_len) {
      const uint64_t row = head_base + uint64_t(int64_t(first_key + key) * seq_stride) * dtype_size(DTYPE);
      load_chunk(DTYPE, row, chunk, HEAD_DIM, 1, a, b);
    }
    const int at = key * PITCH + chunk * VECS_PER_CHUNK;
    kv_tile[at] = a;
    if (VECS_PER_CHUNK == 2) kv_tile[at + 1] = b;
  }
}

/* Visible keys of query `query`: [first, last], clamped to [0, kv_len) (empty: last < first). */
void visible_keys(int query, out int first, out int last) {
  const int64_t position = int64_t(query) + int64_t(p.kv_len - p.q_len);
  int64_t lo = p.window_left >= 0 ? position - p.window_left : 0;
  int64_t hi = CAUSAL ? position : int64_t(p.kv_len - 1);
  first = int(clamp(lo, 0l, int64_t(p.kv_len)));
  last = int(clamp(hi, -1l, int64_t(p.kv_len - 1)));
}

void main() {
  const int tid = int(gl_LocalInvocationID.x);
  const int rows = p.q_len * GROUP;
  const int row_blocks = (rows + BLOCK_ROWS - 1) / BLOCK_ROWS;
  const int splits = (p.kv_len + p.keys_per_split - 1) / p.keys_per_split;
  const int items = p.batch * p.kv_heads * splits * row_blocks;
  const uint64_t element = dtype_size(DTYPE);

  /* Step 2's layout: this invocation's rows key_row_lane + i * ROW_LANES, keys key_lane + j * KEY_LANES. */
  const int key_lane = tid % KEY_LANES, key_row_lane = tid / KEY_LANES;
  /* Step 4's layout: rows chunk_row_lane + i * O_ROW_LANES, chunks chunk_lane + j * O_CHUNK_LANES. */
  const int chunk_lane = tid % O_CHUNK_LANES, chunk_row_lane = tid / O_CHUNK_LANES;

  for (int item = int(gl_WorkGroupID.x); item < items; item += int(gl_NumWorkGroups.x)) {
    /* Row blocks vary fastest, so concurrent workgroups read the same K/V; the last block first, since
     * under a causal mask it sees the most keys. */
    const int row_block = row_blocks - 1 - item % row_blocks;
    const int split = (item / row_blocks) % splits;
    const int batch_head = item / (row_blocks * splits);
    const int b = batch_head / p.kv_heads, kv_head = batch_head % p.kv_heads;
    const int first_row = row_block * BLOCK_ROWS;
    const int last_row = min(first_row + BLOCK_ROWS, rows) - 1;

    /* Q rows -> shared (rows past the end are zero and never stored). */
    for (int index = tid; index < BLOCK_ROWS * CHUNKS; index += WORKGROUP_SIZE) {
      const int row = index / CHUNKS, chunk = index % CHUNKS;
      const int r = first_row + row;
      uvec4 a = uvec4(0u), bb = uvec4(0u);
      if (r < rows) {
        const int query = r / GROUP, head = kv_head * GROUP + r % GROUP;
        const uint64_t address =
            p.q + uint64_t(int64_t(b) * p.q_batch_stride + int64_t(query) * p.q_seq_stride +
                           int64_t(head) * p.q_head_stride) * element;
        load_chunk(DTYPE, address, chunk, HEAD_DIM, 1, a, bb);
      }
      const int at = row * PITCH + chunk * VECS_PER_CHUNK;
      q_tile[at] = a;
      if (VECS_PER_CHUNK == 2) q_tile[at + 1] = bb;
    }

    /* The keys any row of the block sees, within this split. */
    int key_begin, key_end, unused;
    visible_keys(first_row / GROUP, key_begin, unused);
    visible_keys(last_row / GROUP, unused, key_end);
    key_end += 1;
    key_begin = max(key_begin, split * p.keys_per_split);
    key_end = min(key_end, min(p.kv_len, (split + 1) * p.keys_per_split));

    /* Step 2's rows: visible ranges and running maximum / per-lane sum. */
    int row_first_key[S_ROWS], row_last_key[S_ROWS];
    float row_max[S_ROWS], lane_sum[S_ROWS];
    [[unroll]] for (int i = 0; i < S_ROWS; ++i) {
      visible_keys((first_row + key_row_lane + i * ROW_LANES) / GROUP, row_first_key[i], row_last_key[i]);
      row_max[i] = NEG_INF;
      lane_sum[i] = 0.0;
    }
    vec4 acc[O_ROWS * O_CHUNKS * 2]; /* (row i, chunk j) at 2 * (i * O_CHUNKS + j), +1 for dims 4-7 */
    [[unroll]] for (int i = 0; i < O_ROWS * O_CHUNKS * 2; ++i) acc[i] = vec4(0.0);

    const uint64_t k_head = p.k + uint64_t(int64_t(b) * p.k_batch_stride + int64_t(kv_head) * p.k_head_stride) * element;
    const uint64_t v_head = p.v + uint64_t(int64_t(b) * p.v_batch_stride + int64_t(kv_head) * p.v_head_stride) * element;
    const int first_tile = key_begin >= key_end ? key_end : key_begin - key_begin % BLOCK_KEYS;
    for (int first_key = first_tile; first_key < key_end; first_key += BLOCK_KEYS) {
      /* 1. */
      load_kv_tile(k_head, p.k_seq_stride, first_key);
      barrier();

      /* 2. */
      float s[S_ROWS * S_KEYS];
      [[unroll]] for (int i = 0; i < S_ROWS * S_KEYS; ++i) s[i] = 0.0;
      [[unroll]] for (int chunk = 0; chunk < CHUNKS; ++chunk) {
        vec4 k_lo[S_KEYS], k_hi[S_KEYS];
        [[unroll]] for (int j = 0; j < S_KEYS; ++j) kv_chunk(key_lane + j * KEY_LANES, chunk, k_lo[j], k_hi[j]);
        [[unroll]] for (int i = 0; i < S_ROWS; ++i) {
          vec4 q_lo, q_hi;
          q_chunk(key_row_lane + i * ROW_LANES, chunk, q_lo, q_hi);
          [[unroll]] for (int j = 0; j < S_KEYS; ++j) s[i * S_KEYS + j] += dot(q_lo, k_lo[j]) + dot(q_hi, k_hi[j]);
        }
      }
      [[unroll]] for (int i = 0; i < S_ROWS; ++i) {
        float lane_max = NEG_INF;
        [[unroll]] for (int j = 0; j < S_KEYS; ++j) {
          const int key = first_key + key_lane + j * KEY_LANES;
          const bool visible = key >= row_first_key[i] && key <= row_last_key[i] && key < key_end;
          s[i * S_KEYS + j] = visible ? s[i * S_KEYS + j] * p.scale_log2 : NEG_INF;
          lane_max = max(lane_max, s[i * S_KEYS + j]);
        }
        row_partials[(key_row_lane + i * ROW_LANES) * KEY_LANES + key_lane] = lane_max;
      }
      barrier();

      /* 3. */
      load_kv_tile(v_head, p.v_seq_stride, first_key);
      [[unroll]] for (int i = 0; i < S_ROWS; ++i) {
        const int row = key_row_lane + i * ROW_LANES;
        float grown = row_max[i];
        for (int lane = 0; lane < KEY_LANES; ++lane) grown = max(grown, row_partials[row * KEY_LANES + lane]);
        /* Nothing visible yet: the row stays at -inf with weights 0 (never 2^(-inf - -inf)). */
        const float rescale = grown == NEG_INF ? 1.0 : exp2(row_max[i] - grown);
        float sum = 0.0;
        [[unroll]] for (int j = 0; j < S_KEYS; ++j) {
          const float weight = grown == NEG_INF ? 0.0 : exp2(s[i * S_KEYS + j] - grown);
          const int key = key_lane + j * KEY_LANES;
          p_tile[row * P_PITCH + key / 4][key % 4] = weight;
          sum += weight;
        }
        lane_sum[i] = lane_sum[i] * rescale + sum;
        row_max[i] = grown;
        if (key_lane == 0) row_scale[row] = rescale;
      }
      barrier();

      /* 4. */
      [[unroll]] for (int i = 0; i < O_ROWS; ++i) {
        const float rescale = row_scale[chunk_row_lane + i * O_ROW_LANES];
        [[unroll]] for (int j = 0; j < O_CHUNKS * 2; ++j) acc[i * O_CHUNKS * 2 + j] *= rescale;
      }
      for (int key4 = 0; key4 < BLOCK_KEYS / 4; ++key4) {
        vec4 weights[O_ROWS];
        [[unroll]] for (int i = 0; i < O_ROWS; ++i) weights[i] = p_tile[(chunk_row_lane + i * O_ROW_LANES) * P_PITCH + key4];
        [[unroll]] for (int k = 0; k < 4; ++k) {
          [[unroll]] for (int j = 0; j < O_CHUNKS; ++j) {
            const int chunk = chunk_lane + j * O_CHUNK_LANES;
            if (chunk < CHUNKS) {
              vec4 v_lo, v_hi;
              kv_chunk(key4 * 4 + k, chunk, v_lo, v_hi);
              [[unroll]] for (int i = 0; i < O_ROWS; ++i) {
                acc[2 * (i * O_CHUNKS + j)] += weights[i][k] * v_lo;
                acc[2 * (i * O_CHUNKS + j) + 1] += weights[i][k] * v_hi;
              }
            }
          }
        }
      }
      barrier();
    }

    /* Each row's sum from its key lanes, and its maximum, for step 4's layout. */
    [[unroll]] for (int i = 0; i < S_ROWS; ++i) {
      const int row = key_row_lane + i * ROW_LANES;
      row_partials[row * KEY_LANES + key_lane] = lane_sum[i];
      if (key_lane == 0) row_scale[row] = row_max[i];
    }
    barrier();
    [[unroll]] for (int i = 0; i < O_ROWS; ++i) {
      const int row = chunk_row_lane + i * O_ROW_LANES;
      const int r = first_row + row;
      if (r >= rows) continue;
      float sum = 0.0;
      for (int lane = 0; lane < KEY_LANES; ++lane) sum += row_partials[row * KEY_LANES + lane];
      const float maximum = row_scale[row];
      const int query = r / GROUP, head = kv_head * GROUP + r % GROUP;
      if (SPLIT) {
        const int64_t record = (int64_t(batch_head * rows + r) * splits + split) * RECORD_FLOATS;
        [[unroll]] for (int j = 0; j < O_CHUNKS; ++j) {
          const int chunk = chunk_lane + j * O_CHUNK_LANES;
          if (chunk < CHUNKS) {
            const uint64_t address = p.result + uint64_t(record + chunk * CHUNK) * 4ul;
            Bytes16(address).value = floatBitsToUint(acc[2 * (i * O_CHUNKS + j)]);
            Bytes16(address + 16ul).value = floatBitsToUint(acc[2 * (i * O_CHUNKS + j) + 1]);
          }
        }
        if (chunk_lane == 0)
          Bytes16(p.result + uint64_t(record + HEAD_DIM) * 4ul).value = floatBitsToUint(vec4(maximum, sum, 0.0, 0.0));
      } else {
        const float inverse = sum > 0.0 ? 1.0 / sum : 0.0; /* no visible key: out 0 */
        const uint64_t out_row =
            p.result + uint64_t(int64_t(b) * p.result_batch_stride + int64_t(query) * p.result_seq_stride +
                                int64_t(head) * p.result_head_stride) * element;
        [[unroll]] for (int j = 0; j < O_CHUNKS; ++j) {
          const int chunk = chunk_lane + j * O_CHUNK_LANES;
          if (chunk < CHUNKS)
            store_values(DTYPE, out_row, chunk, HEAD_DIM, acc[2 * (i * O_CHUNKS + j)] * inverse,
                         acc[2 * (i * O_CHUNKS + j) + 1] * inverse);
        }
        if (HAS_LSE && chunk_lane == 0) {
          const uint64_t address = p.lse + uint64_t(int64_t(b) * p.lse_batch_stride + int64_t(query) * p.lse_seq_stride +
                                                    int64_t(head) * p.lse_head_stride) * 4ul;
          Bytes4(address).value = floatBitsToUint(sum > 0.0 ? (maximum + log2(sum)) * LN2 : NEG_INF);
        }
      }
    }
    barrier(); /* the shared tiles are rewritten by the next item */
  }
}

#version 460
/* attention_merge.comp — the second half of split-KV attention: each query row's partial records (one
 * per key range, written by attention.comp with SPLIT) combine into out and lse with the logsumexp
 * trick: with M the largest partial maximum, out = sum_s 2^(m_s - M) o_s / sum_s 2^(m_s - M) l_s.
 * One workgroup per (batch, q head, query); invocation t owns dims 8t ... 8t + 7.
 */
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_GOOGLE_include_directive : require

#include "kernels_src/vulkan/kf_vk_attention_params.h"

/* One chunk of 8 dims per invocation: 32 cover head_dim 256. */
#define WORKGROUP_SIZE 32
layout(local_size_x = WORKGROUP_SIZE) in;

layout(constant_id = 0) const uint DTYPE = KF_DT_F32;     /* of out */
layout(constant_id = 1) const int HEAD_DIM = 128;
layout(constant_id = 2) const bool HAS_LSE = false;
/* 16-byte stores: every row of out starts 16-byte aligned. */
layout(constant_id = 3) const bool VECTORIZED = false;

layout(push_constant) uniform Push {
  kf_vk_attention_merge_params p;
};

#include "kernels_src/vulkan/kf_chunks.glsl"

const int RECORD_FLOATS = HEAD_DIM + 4; /* as in attention.comp */

layout(buffer_reference, std430, buffer_reference_align = 16) readonly buffer Record { vec4 values[]; };

#define NEG_INF uintBitsToFloat(0xff800000u)
#define LN2 0.69314718055994531

void main() {
  const int chunk = int(gl_LocalInvocationID.x);
  const int group = p.q_heads / p.kv_heads;
  const int rows = p.q_len * group;
  const int items = p.batch * p.q_heads * p.q_len;
  for (int item = int(gl_WorkGroupID.x); item < items; item += int(gl_NumWorkGroups.x)) {
    const int query = item % p.q_len;
    const int head = (item / p.q_len) % p.q_heads;
    const int b = item / (p.q_len * p.q_heads);
    const int kv_head = head / group;
    const int r = query * group + head % group;
    const uint64_t first_record =
        p.partials + uint64_t((int64_t(b * p.kv_heads + kv_head) * rows + r) * p.splits) * uint64_t(RECORD_FLOATS * 4);

    float maximum = NEG_INF;
    for (int s = 0; s < p.splits; ++s)
      maximum = max(maximum, Record(first_record + uint64_t(s) * uint64_t(RECORD_FLOATS * 4)).values[HEAD_DIM / 4].x);
    float sum = 0.0;
    vec4 lo = vec4(0.0), hi = vec4(0.0);
    if (maximum != NEG_INF) {
      for (int s = 0; s < p.splits; ++s) {
        Record record = Record(first_record + uint64_t(s) * uint64_t(RECORD_FLOATS * 4));
        const vec2 max_sum = record.values[HEAD_DIM / 4].xy;
        if (max_sum.x == NEG_INF) continue; /* a key range this row sees nothing of */
        const float weight = exp2(max_sum.x - maximum);
        sum += weight * max_sum.y;
        if (chunk < HEAD_DIM / CHUNK) {
          lo += weight * record.values[2 * chunk];
          hi += weight * record.values[2 * chunk + 1];
        }
      }
    }
    const float inverse = sum > 0.0 ? 1.0 / sum : 0.0; /* no visible key: out 0, lse -inf */
    if (chunk < HEAD_DIM / CHUNK) {
      const uint64_t out_row = p.result + uint64_t(int64_t(b) * p.result_batch_stride + int64_t(query) * p.result_seq_stride +
                                                int64_t(head) * p.result_head_stride) * dtype_size(DTYPE);
      store_values(DTYPE, out_row, chunk, HEAD_DIM, lo * inverse, hi * inverse);
    }
    if (HAS_LSE && chunk == 0) {
      const uint64_t address = p.lse + uint64_t(int64_t(b) * p.lse_batch_stride + int64_t(query) * p.lse_seq_stride +
                                                int64_t(head) * p.lse_head_stride) * 4ul;
      Bytes4(address).value = floatBitsToUint(sum > 0.0 ? (maximum + log2(sum)) * LN2 : NEG_INF);
    }
  }
}

/* kf_vk_attention_params.h — the push-constant blocks of attention.comp and attention_merge.comp,
 * shared by the shaders and the Vulkan backend (the layouts are Vulkan-specific: strides are 32-bit so
 * that five operands fit the 128 guaranteed bytes; the backend issues one pass per batch entry when a
 * batch stride does not fit). Layout rules as in kernels_src/common/kf_params.h. */
#ifndef KF_VK_ATTENTION_PARAMS_H_
#define KF_VK_ATTENTION_PARAMS_H_

#include "kernels_src/common/kf_params.h"

/* Flash attention over one pass (attention.comp; attention_coopmat.comp too, which never splits).
 * Operand (b, s, h, d) at address + (b * batch_stride + s * seq_stride + h * head_stride + d) * dtype
 * size; lse (b, h, i) f32 at lse + (b * lse_batch_stride + i *
 * lse_seq_stride + h * lse_head_stride) * 4. 128 bytes. */
struct kf_vk_attention_params {
  KF_P_ADDR q;
  KF_P_ADDR k;
  KF_P_ADDR v;
  KF_P_ADDR result;              /* out, or in the split-KV pass the partial records (workspace) */
  KF_P_ADDR lse;                 /* 0 when absent or in the split-KV pass */
  KF_P_I32 q_batch_stride;       /* elements */
  KF_P_I32 q_seq_stride;
  KF_P_I32 q_head_stride;
  KF_P_I32 k_batch_stride;
  KF_P_I32 k_seq_stride;
  KF_P_I32 k_head_stride;
  KF_P_I32 v_batch_stride;
  KF_P_I32 v_seq_stride;
  KF_P_I32 v_head_stride;
  KF_P_I32 result_batch_stride;
  KF_P_I32 result_seq_stride;
  KF_P_I32 result_head_stride;
  KF_P_I32 lse_batch_stride;
  KF_P_I32 lse_seq_stride;
  KF_P_I32 lse_head_stride;
  KF_P_I32 batch;
  KF_P_I32 q_len;
  KF_P_I32 kv_len;
  KF_P_I32 kv_heads;
  KF_P_I32 window_left;          /* -1: none; else clamped to kv_len (a wider window changes nothing) */
  KF_P_I32 keys_per_split;       /* a multiple of the key tile; kv_len (one split) outside split-KV */
  KF_P_F32 scale_log2;           /* softmax scale * log2(e): the shader works in powers of 2 */
};

/* The split-KV merge: combines the partial records of each query row into out (and lse). 72 bytes. */
struct kf_vk_attention_merge_params {
  KF_P_ADDR partials;
  KF_P_ADDR result;              /* out */
  KF_P_ADDR lse;                 /* 0 when absent */
  KF_P_I32 result_batch_stride;
  KF_P_I32 result_seq_stride;
  KF_P_I32 result_head_stride;
  KF_P_I32 lse_batch_stride;
  KF_P_I32 lse_seq_stride;
  KF_P_I32 lse_head_stride;
  KF_P_I32 batch;
  KF_P_I32 q_len;
  KF_P_I32 q_heads;
  KF_P_I32 kv_heads;
  KF_P_I32 splits;
  KF_P_I32 pad0;
};

#endif /* KF_VK_ATTENTION_PARAMS_H_ */

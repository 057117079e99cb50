/* cpu_internal.h — what the CPU backend's files share.
 *
 * A kf_buffer of this backend is the host allocation itself: the handle is the pointer returned by
 * aligned_alloc, so an operand's data is (char *)buffer + offset * dtype_size with no indirection.
 */
#ifndef KF_BACKEND_CPU_CPU_INTERNAL_H_
#define KF_BACKEND_CPU_CPU_INTERNAL_H_

#include "core/backend.h"

struct kf_backend_context {
  double timer_start_ms; /* CLOCK_MONOTONIC at kf_timer_begin */
};

static inline char *kf_cpu_buffer_data(kf_buffer *buffer) { return (char *)buffer; }

kf_status kf_cpu_rmsnorm(kf_backend_context *ctx, const kf_norm_args *args);
kf_status kf_cpu_layernorm(kf_backend_context *ctx, const kf_norm_args *args);
kf_status kf_cpu_rope(kf_backend_context *ctx, const kf_rope_args *args);
kf_status kf_cpu_glu(kf_backend_context *ctx, const kf_glu_args *args);
kf_status kf_cpu_softmax(kf_backend_context *ctx, const kf_softmax_args *args);
kf_status kf_cpu_gemm(kf_backend_context *ctx, const kf_gemm_args *args);
kf_status kf_cpu_attention(kf_backend_context *ctx, const kf_attention_args *args);

#endif /* KF_BACKEND_CPU_CPU_INTERNAL_H_ */

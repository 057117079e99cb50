/* cpu_glu.c — gated linear units on the CPU: out = act(gate) * up, act = SiLU or tanh-GELU
 * (cpu_math.h), over rows × inner.
 *
 * The work items handed to the pool are (row, block) pairs, not rows, so that a few long rows (a
 * decode step: one token, inner = 14336) spread over the threads as well as many short ones. Each
 * block is loaded to f32 scratch, computed with a fixed-count vectorized loop and stored; gate and up
 * are both loaded before out is stored, so out may alias either element for element.
 */
#include "backend_cpu/cpu_block.h"
#include "backend_cpu/cpu_internal.h"
#include "backend_cpu/cpu_math.h"
#include "backend_cpu/threadpool.h"

typedef struct glu_job {
  const kf_glu_args *args;
  int64_t blocks_per_row;
  size_t size_gate, size_up, size_out;
} glu_job;

KF_ALWAYS_INLINE void apply_silu(float *gate, const float *up) {
  for (int i = 0; i < KF_CPU_BLOCK; ++i) gate[i] = kf_cpu_silu(gate[i]) * up[i];
}

KF_ALWAYS_INLINE void apply_gelu_tanh(float *gate, const float *up) {
  for (int i = 0; i < KF_CPU_BLOCK; ++i) gate[i] = kf_cpu_gelu_tanh(gate[i]) * up[i];
}

KF_CPU_KERNEL static void glu_blocks(void *arg, int64_t item_begin, int64_t item_end) {
  const glu_job *job = arg;
  const kf_glu_args *a = job->args;
  float gate[KF_CPU_BLOCK] __attribute__((aligned(64)));
  float up[KF_CPU_BLOCK] __attribute__((aligned(64)));

  for (int64_t item = item_begin; item < item_end; ++item) {
    const int64_t row = item / job->blocks_per_row;
    const int64_t col = item % job->blocks_per_row * KF_CPU_BLOCK;
    const int count = a->inner - col < KF_CPU_BLOCK ? (int)(a->inner - col) : KF_CPU_BLOCK;
    const char *gate_src = kf_cpu_row(&a->gate, job->size_gate, row) + (size_t)col * job->size_gate;
    const char *up_src = kf_cpu_row(&a->up, job->size_up, row) + (size_t)col * job->size_up;
    char *out = kf_cpu_row(&a->out, job->size_out, row) + (size_t)col * job->size_out;
    kf_cpu_load_block(gate_src, a->gate.dtype, count, gate);
    kf_cpu_load_block(up_src, a->up.dtype, count, up);
    /* The padding of a tail block is computed and discarded: keep it finite and quiet. */
    for (int i = count; i < KF_CPU_BLOCK; ++i) gate[i] = up[i] = 0.0f;
    if (a->activation == KF_GLU_GELU_TANH) apply_gelu_tanh(gate, up);
    else apply_silu(gate, up);
    kf_cpu_store_block(out, a->out.dtype, gate, count);
  }
}

kf_status kf_cpu_glu(kf_backend_context *ctx, const kf_glu_args *args) {
  if (args->rows <= 0 || args->inner <= 0) return KF_OK;
  glu_job job = {
      .args = args,
      .blocks_per_row = (args->inner + KF_CPU_BLOCK - 1) / KF_CPU_BLOCK,
      .size_gate = kf_dtype_size(args->gate.dtype),
      .size_up = kf_dtype_size(args->up.dtype),
      .size_out = kf_dtype_size(args->out.dtype),
  };
  kf_pool_parallel_for(args->rows * job.blocks_per_row, KF_CPU_MIN_CHUNK_ELEMENTS / KF_CPU_BLOCK, glu_blocks, &job);
  return KF_OK;
}

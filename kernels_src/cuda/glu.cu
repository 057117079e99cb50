/* glu.cu — gated linear units for the CUDA backend: out = act(gate) * up, elementwise over
 * rows × inner, f32 arithmetic.
 *   SiLU:      act(g) = g / (1 + exp(-g))
 *   GELU-tanh: act(g) = 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g³)))
 *
 * Purely memory bound (two reads, one write per element). blockDim.x threads share a row (a multiple
 * of 32) and blockDim.y rows share a block; thread t owns packs t, t + blockDim.x, ... of its row and
 * loads BATCH packs of gate and of up before it stores any, so 2 * BATCH independent 16-byte loads per
 * thread are in flight. Rows are independent, so a strided gate/up pair (the two halves of a fused
 * [rows, 2 * inner] projection) costs nothing extra.
 *
 * In place (out identical to gate or up) is safe: each element is read by the thread that writes it,
 * loads before stores, through the coherent path.
 *
 * Entry points (extern "C", struct kf_glu_params by value):
 *   kf_glu_<g>_<o>_<v|s>   gate and up of dtype <g>, out of dtype <o>: one dtype throughout, or 16-bit
 *                          inputs into f32; "v" needs 16-byte aligned rows and inner % 8 == 0
 *   kf_glu_any_<v|s>       any dtype of every operand (read from params.dtypes)
 */
#include "kernels_src/cuda/kf_pack.cuh"

#define DT_RUNTIME (-1)
/* Packs of gate and of up each thread loads before its first store. */
#define BATCH 4
/* The host (backend_cuda/cuda_glu.c) launches at most this many threads per block. */
#define MAX_THREADS 256

__device__ __forceinline__ float silu(float g) {
  /* __fdividef: 2 ulp, and g / inf = -0 for very negative g (exp overflows), the right limit. */
  return __fdividef(g, 1.0f + expf(-g));
}

__device__ __forceinline__ float gelu_tanh(float g) {
  const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
  return 0.5f * g * (1.0f + tanhf(k * fmaf(0.044715f * g, g * g, g)));
}

template <int GDT, int ODT, bool VEC>
__device__ __forceinline__ void glu(const kf_glu_params &p) {
  const int gdt = GDT != DT_RUNTIME ? GDT : (int)((p.dtypes >> KF_GLU_DT_SHIFT_GATE) & 15);
  const int udt = GDT != DT_RUNTIME ? GDT : (int)((p.dtypes >> KF_GLU_DT_SHIFT_UP) & 15);
  const int odt = ODT != DT_RUNTIME ? ODT : (int)((p.dtypes >> KF_GLU_DT_SHIFT_RESULT) & 15);
  const int64_t row = (int64_t)blockIdx.x * blockDim.y + threadIdx.y;
  if (row >= p.rows) return;
  const bool gelu = (p.flags & KF_GLU_ACT_GELU_TANH) != 0;
  const char *gate = reinterpret_cast<const char *>(p.gate) + row * p.gate_row_stride * element_size(gdt);
  const char *up = reinterpret_cast<const char *>(p.up) + row * p.up_row_stride * element_size(udt);
  char *out = reinterpret_cast<char *>(p.result) + row * p.result_row_stride * element_size(odt);
  const int packs = (p.inner + PACK_ELEMENTS - 1) / PACK_ELEMENTS;

  for (int first = threadIdx.x; first < packs; first += BATCH * blockDim.x) {
    raw_pack<GDT> g[BATCH], u[BATCH];
#pragma unroll
    for (int k = 0; k < BATCH; ++k) {
      const int pk = first + k * blockDim.x;
      g[k] = pk < packs ? load_pack<GDT, VEC, LOAD_STREAM>(gdt, gate, pk, p.inner, 1) : raw_pack<GDT>{};
      u[k] = pk < packs ? load_pack<GDT, VEC, LOAD_STREAM>(udt, up, pk, p.inner, 1) : raw_pack<GDT>{};
    }
#pragma unroll
    for (int k = 0; k < BATCH; ++k) {
      const int pk = first + k * blockDim.x;
      if (pk >= packs) break;
      float a[PACK_ELEMENTS], b[PACK_ELEMENTS];
      unpack(gdt, g[k], a);
      unpack(udt, u[k], b);
#pragma unroll
      for (int e = 0; e < PACK_ELEMENTS; ++e) a[e] = (gelu ? gelu_tanh(a[e]) : silu(a[e])) * b[e];
      store_pack<ODT, VEC>(odt, out, pk, p.inner, pack<ODT>(odt, a));
    }
  }
}

#define KF_GLU_KERNEL(name, GDT, ODT, vname, VEC)                                                         \
  extern "C" __global__ void __launch_bounds__(MAX_THREADS) kf_glu_##name##_##vname(const struct kf_glu_params p) { \
    glu<GDT, ODT, VEC>(p);                                                                               \
  }

#define KF_GLU_KERNELS(name, GDT, ODT)    \
  KF_GLU_KERNEL(name, GDT, ODT, v, true) \
  KF_GLU_KERNEL(name, GDT, ODT, s, false)

KF_GLU_KERNELS(f32_f32, KF_DT_F32, KF_DT_F32)
KF_GLU_KERNELS(f16_f16, KF_DT_F16, KF_DT_F16)
KF_GLU_KERNELS(bf16_bf16, KF_DT_BF16, KF_DT_BF16)
KF_GLU_KERNELS(f16_f32, KF_DT_F16, KF_DT_F32)
KF_GLU_KERNELS(bf16_f32, KF_DT_BF16, KF_DT_F32)
KF_GLU_KERNELS(any, DT_RUNTIME, DT_RUNTIME)

/* softmax.cu — y = softmax(x * scale + mask) over each row, for the CUDA backend. f32 arithmetic,
 * the maximum subtracted before exp (exp2f of d * log2(e), d <= 0: a few ulp over the whole range).
 *
 * Register path (rows up to CHUNKS * blockDim.x * 8 elements, CHUNKS up to 8): each row is read once
 * into registers as f32 (x * scale + mask), reduced once (each thread's (maximum, sum of exp) pair,
 * merged across the row) and written once. blockDim.x threads share a row, blockDim.y rows share a
 * block, thread t owns packs t, t + blockDim.x, ... as in rmsnorm.cu.
 *
 * Re-read path (no mask, f16/bf16 rows of 2048-16384 elements): the row is read twice, the second
 * time from L1/L2, so a thread holds 8 packs in storage format across the reduction, not 64 floats.
 *
 * The same with 16 packs a thread (rows of 20480-32768 elements, c16l): up to 256 threads, two blocks
 * an SM.
 *
 * Looping path (longer rows, one row per block): one pass keeps an online maximum and a sum rescaled
 * whenever the maximum grows (per thread, then merged across the block), a second pass re-reads x
 * (mostly from L2) and writes y: two reads and one write instead of three reads.
 *
 * A row whose every v is -inf has maximum -inf; exp(v - max) is then exp(NaN) and the row becomes NaN,
 * the mathematical answer (0/0). Elements outside the row never enter the sums.
 *
 * In place (y identical to x): every element is read by the thread that writes it, loads before
 * stores, through the coherent path. The mask is never written and is often broadcast over rows
 * (mask_row_stride 0), so it is read through the read-only path.
 *
 * Entry points (extern "C", struct kf_softmax_params by value):
 *   kf_softmax_<x>_<y>_c<CHUNKS>_<v|s>   register path for the specialised (x, y) dtype pairs, no mask
 *   kf_softmax_<x>_<y>_c<CHUNKS>m_<v|s>  the same with a mask
 *   kf_softmax_<x>_<x>_c8l_v             re-read path, x = y = f16 or bf16, no mask, rows of exactly
 *                                        8 packs a thread
 *   kf_softmax_<x>_<x>_c16l_v            the same with 16 packs a thread
 *   kf_softmax_<x>_<y>_loop_<v|s>        long rows
 *   kf_softmax_any_loop_<v|s>            any dtypes (read from params.dtypes)
 * The mask's dtype is read from params.dtypes in every kernel (a uniform branch). "v" kernels need
 * row_len % 8 == 0 and 16-byte aligned rows of x, y and the mask.
 */
#include "kernels_src/cuda/kf_pack.cuh"

#define DT_RUNTIME (-1)
#define LOOP_THREADS 256
#define LOOP_CHUNKS 4
/* Largest block of each register-path chunk count (backend_cuda/cuda_softmax.c mirrors these). C8
 * holds 64 f32 values per thread: 512 threads leave it 128 registers. */
#define MAX_THREADS_C1 1024
#define MAX_THREADS_C2 1024
#define MAX_THREADS_C4 512
#define MAX_THREADS_C8 512
/* Re-read kernels: 8 packs a thread, at most 256 threads (rows up to 16384 f16/bf16 elements); they
 * take 72 registers (7 blocks of 128 threads an SM); 64 spill. */
#define MAX_THREADS_REREAD 256
#define MIN_BLOCKS_REREAD 3
/* 16 packs a thread (rows up to 32768 f16/bf16 elements): 128 registers, 2 blocks of 256 threads an
 * SM; ptxas spills 20-28 bytes a thread there. Measured on the H200, bf16 4096x32768 (kfbench): 78.0%
 * of copy, against 68.2% for the register path (64 floats a thread, one block of 512 an SM), 65.3% for
 * the looping path, 68.5% and 66.4% for 8 packs x 256 threads split over a cluster of 2 or 4 blocks
 * (merging their sums through distributed shared memory), 58.5% at 3 blocks an SM (85 registers,
 * 216 bytes spilled), and 74.5-75.0% with the second pass's loads issued 8 at a time ahead of their
 * stores (36-56 bytes spilled). */
#define MIN_BLOCKS_REREAD16 2

__device__ __forceinline__ float negative_infinity() { return __int_as_float(0xff800000u); }

/* v = x * scale (+ mask) for one pack, the mask pack already loaded (`m`, ignored unless MASKED);
 * elements past row_len become -inf (they never win the maximum and the callers leave them out of the
 * sums). */
template <int XDT, bool VEC, bool MASKED>
__device__ __forceinline__ void logits_with(const kf_softmax_params &p, int xdt, const raw_pack<XDT> &raw,
                                            const raw_pack<DT_RUNTIME> &m, int64_t pk, float v[PACK_ELEMENTS]) {
  unpack(xdt, raw, v);
#pragma unroll
  for (int e = 0; e < PACK_ELEMENTS; ++e) v[e] *= p.scale;
  if (MASKED) {
    const int mdt = (p.dtypes >> KF_SOFTMAX_DT_SHIFT_MASK) & 15;
    float mv[PACK_ELEMENTS];
    unpack<DT_RUNTIME>(mdt, m, mv);
#pragma unroll
    for (int e = 0; e < PACK_ELEMENTS; ++e) v[e] += mv[e];
  }
  if (!VEC) { /* VEC rows have whole packs only */
    const int64_t rest = p.row_len - pk * PACK_ELEMENTS;
#pragma unroll
    for (int e = 0; e < PACK_ELEMENTS; ++e)
      if (e >= rest) v[e] = negative_infinity();
  }
}

/* The mask pack `pk` of a row (zeros without a mask). */
template <bool VEC>
__device__ __forceinline__ raw_pack<DT_RUNTIME> mask_pack(const kf_softmax_params &p, const char *mask, int64_t pk) {
  if (!(p.flags & KF_SOFTMAX_HAS_MASK)) return raw_pack<DT_RUNTIME>{};
  const int mdt = (p.dtypes >> KF_SOFTMAX_DT_SHIFT_MASK) & 15;
  return load_pack<DT_RUNTIME, VEC, LOAD_READONLY>(mdt, mask, pk, p.row_len, 1);
}

/* logits_with, loading the mask pack itself. */
template <int XDT, bool VEC>
__device__ __forceinline__ void logits(const kf_softmax_params &p, int xdt, const raw_pack<XDT> &raw, const char *mask,
                                       int64_t pk, float v[PACK_ELEMENTS]) {
  if (p.flags & KF_SOFTMAX_HAS_MASK)
    logits_with<XDT, VEC, true>(p, xdt, raw, mask_pack<VEC>(p, mask, pk), pk, v);
  else
    logits_with<XDT, VEC, false>(p, xdt, raw, raw_pack<DT_RUNTIME>{}, pk, v);
}

struct softmax_row {
  const char *x, *mask;
  char *y;
};

__device__ __forceinline__ softmax_row softmax_row_start(const kf_softmax_params &p, int64_t row, int xdt, int ydt) {
  const int mdt = (p.dtypes >> KF_SOFTMAX_DT_SHIFT_MASK) & 15;
  softmax_row r;
  r.x = reinterpret_cast<const char *>(p.x) + row * p.x_row_stride * element_size(xdt);
  r.mask = reinterpret_cast<const char *>(p.mask) + row * p.mask_row_stride * element_size(mdt);
  r.y = reinterpret_cast<char *>(p.y) + row * p.y_row_stride * element_size(ydt);
  return r;
}

/* exp(d) for d <= 0 as exp2(d * log2(e)): one MUFU instruction and a multiply; the product's rounding
 * costs |d| * 2^-24 relative, below the output formats' resolution. */
__device__ __forceinline__ float exp_nonpositive(float d) { return exp2f(d * 1.4426950408889634f); }

/* Merges two (maximum, sum of exp(v - maximum)) pairs. The sum is formed without contraction so that
 * merge(a, b) and merge(b, a) are bitwise equal (both partners of a shuffle get the same pair). A pair
 * whose maximum is -inf has sum 0. */
__device__ __forceinline__ float2 merge_max_sum(float2 a, float2 b) {
  const float m = fmaxf(a.x, b.x);
  if (m == negative_infinity()) return make_float2(m, 0.0f);
  return make_float2(m, __fadd_rn(__fmul_rn(a.y, exp_nonpositive(a.x - m)), __fmul_rn(b.y, exp_nonpositive(b.x - m))));
}

/* The row's (maximum, sum) in every thread of the row: shuffles, then one exchange between the warps of
 * the row through `scratch` (one barrier). */
__device__ __forceinline__ float2 row_reduce_max_sum(float2 pair, float2 *scratch) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1)
    pair = merge_max_sum(pair, make_float2(__shfl_xor_sync(0xffffffffu, pair.x, offset),
                                           __shfl_xor_sync(0xffffffffu, pair.y, offset)));
  const int warps_per_row = blockDim.x / 32;
  if (warps_per_row == 1) return pair;
  const int lane = threadIdx.x % 32;
  const int first_warp = threadIdx.y * warps_per_row;
  if (lane == 0) scratch[first_warp + threadIdx.x / 32] = pair;
  __syncthreads();
  pair = lane < warps_per_row ? scratch[first_warp + lane] : make_float2(negative_infinity(), 0.0f);
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1)
    pair = merge_max_sum(pair, make_float2(__shfl_xor_sync(0xffffffffu, pair.x, offset),
                                           __shfl_xor_sync(0xffffffffu, pair.y, offset)));
  return pair;
}

/* Register path. MASKED (the kernel is only launched with a mask, and without one only when false)
 * loads the row's mask packs together with x, before any is used, so all loads of the row are in
 * flight at once (loading each mask pack where it is used serialised them: 75% of copy against 95%
 * on the H200, bf16 16384x8192); without a mask no registers are held for it. Each thread turns its elements into e = exp(v - m_t) against its own maximum m_t and
 * sums them; the per-thread (m_t, sum) pairs are merged across the row in one reduction; then
 * y = e * exp(m_t - max) / sum — one exp per element and one barrier round per row. A thread whose
 * elements are all -inf holds e = 0 and factor 0; a row that is all -inf gets sum 0 and factor 0/0 =
 * NaN, so y is NaN. */
template <int XDT, int YDT, int CHUNKS, bool VEC, bool MASKED>
__device__ __forceinline__ void softmax_registers(const kf_softmax_params &p) {
  __shared__ float2 scratch[32];
  const int64_t row = (int64_t)blockIdx.x * blockDim.y + threadIdx.y;
  const bool row_valid = row < p.rows;
  const int packs = (p.row_len + PACK_ELEMENTS - 1) / PACK_ELEMENTS;
  const softmax_row r = softmax_row_start(p, row, XDT, YDT);

  raw_pack<XDT> raw[CHUNKS];
  raw_pack<DT_RUNTIME> mask_raw[MASKED ? CHUNKS : 1];
#pragma unroll
  for (int k = 0; k < CHUNKS; ++k) {
    const int pk = threadIdx.x + k * blockDim.x;
    const bool present = row_valid && pk < packs;
    raw[k] = present ? load_pack<XDT, VEC, LOAD_COHERENT>(XDT, r.x, pk, p.row_len, 1) : raw_pack<XDT>{};
    if (MASKED) mask_raw[MASKED ? k : 0] = present ? mask_pack<VEC>(p, r.mask, pk) : raw_pack<DT_RUNTIME>{};
  }
  float v[CHUNKS][PACK_ELEMENTS];
  float local_max = negative_infinity();
#pragma unroll
  for (int k = 0; k < CHUNKS; ++k) {
    const int pk = threadIdx.x + k * blockDim.x;
    if (row_valid && pk < packs) {
      if (MASKED)
        logits_with<XDT, VEC, true>(p, XDT, raw[k], mask_raw[MASKED ? k : 0], pk, v[k]);
      else /* this form keeps the unmasked kernels at 86-88 registers (127 through logits_with) */
        logits<XDT, VEC>(p, XDT, raw[k], r.mask, pk, v[k]);
    } else {
#pragma unroll
      for (int e = 0; e < PACK_ELEMENTS; ++e) v[k][e] = negative_infinity();
    }
#pragma unroll
    for (int e = 0; e < PACK_ELEMENTS; ++e) local_max = fmaxf(local_max, v[k][e]);
  }
  /* -inf elements (outside the row too) give e = 0 against any finite reference. */
  const float reference = local_max == negative_infinity() ? 0.0f : local_max;
  float local_sum = 0.0f;
#pragma unroll
  for (int k = 0; k < CHUNKS; ++k)
#pragma unroll
    for (int e = 0; e < PACK_ELEMENTS; ++e) {
      v[k][e] = exp_nonpositive(v[k][e] - reference);
      local_sum += v[k][e];
    }
  const float2 total = row_reduce_max_sum(make_float2(local_max, local_sum), scratch);
  if (!row_valid) return;
  const float factor =
      (local_max == negative_infinity() ? 0.0f : exp_nonpositive(local_max - total.x)) / total.y;

#pragma unroll
  for (int k = 0; k < CHUNKS; ++k) {
    const int pk = threadIdx.x + k * blockDim.x;
    if (pk < packs) {
#pragma unroll
      for (int e = 0; e < PACK_ELEMENTS; ++e) v[k][e] *= factor;
      store_pack<YDT, VEC>(YDT, r.y, pk, p.row_len, pack<YDT>(YDT, v[k]));
    }
  }
}

/* Re-read path (no mask, f16/bf16 in and out, 16-byte access, every thread holding exactly CHUNKS
 * whole packs, one row per block: the host's plan guarantees it): pass 1 loads the row (L1/L2
 * evict-last), forms the thread's (maximum, sum of exp) pair and merges it across the row, and drops
 * the row; pass 2 loads it again, mostly from L1 or L2 (evict-first), and writes
 * y = exp(v - max) / sum. Two exps an element instead of the register path's one, but a thread holds
 * 72 registers instead of 87 and an SM keeps more rows in flight (the same trade as rmsnorm.cu's
 * norm_reread). H200, bf16 16384x8192, 8 packs x 128 threads: 96.4% of copy in a harness beside
 * cudaMemcpy against 91% for the register path; 95.3% in kfbench against 90.3%. */
template <int XDT, int YDT, int CHUNKS>
__device__ __forceinline__ void softmax_reread(const kf_softmax_params &p) {
  __shared__ float2 scratch[32];
  const int64_t row = blockIdx.x;
  const char *x = reinterpret_cast<const char *>(p.x) + row * p.x_row_stride * element_size(XDT);
  char *y = reinterpret_cast<char *>(p.y) + row * p.y_row_stride * element_size(YDT);

  raw_pack<XDT> raw[CHUNKS];
#pragma unroll
  for (int k = 0; k < CHUNKS; ++k)
    raw[k] = load_pack<XDT, true, LOAD_KEEP>(XDT, x, threadIdx.x + k * blockDim.x, p.row_len, 1);
  float local_max = negative_infinity();
#pragma unroll
  for (int k = 0; k < CHUNKS; ++k) {
    float v[PACK_ELEMENTS];
    unpack(XDT, raw[k], v);
#pragma unroll
    for (int e = 0; e < PACK_ELEMENTS; ++e) local_max = fmaxf(local_max, v[e] * p.scale);
  }
  const float reference = local_max == negative_infinity() ? 0.0f : local_max;
  float local_sum = 0.0f;
#pragma unroll
  for (int k = 0; k < CHUNKS; ++k) {
    float v[PACK_ELEMENTS];
    unpack(XDT, raw[k], v);
#pragma unroll
    for (int e = 0; e < PACK_ELEMENTS; ++e) local_sum += exp_nonpositive(v[e] * p.scale - reference);
  }
  const float2 total = row_reduce_max_sum(make_float2(local_max, local_sum), scratch);
  /* An all -inf row: max -inf, exp(NaN) = NaN, as in the register path. */
  const float inverse = 1.0f / total.y;

#pragma unroll
  for (int k = 0; k < CHUNKS; ++k) {
    const int pk = threadIdx.x + k * blockDim.x;
    float v[PACK_ELEMENTS];
    unpack(XDT, load_pack<XDT, true, LOAD_LAST_USE>(XDT, x, pk, p.row_len, 1), v);
#pragma unroll
    for (int e = 0; e < PACK_ELEMENTS; ++e) v[e] = exp_nonpositive(v[e] * p.scale - total.x) * inverse;
    store_pack<YDT, true>(YDT, y, pk, p.row_len, pack<YDT>(YDT, v));
  }
}

/* Folds one value into a running (maximum, sum of exp(v - maximum)) pair. A pair whose maximum is
 * still -inf has sum 0 and stays so until a finite value arrives (no -inf - -inf). */
__device__ __forceinline__ void online_merge(float &running_max, float &running_sum, float other_max, float other_sum) {
  const float m = fmaxf(running_max, other_max);
  if (m == negative_infinity()) return;
  running_sum = running_sum * expf(running_max - m) + other_sum * expf(other_max - m);
  running_max = m;
}

template <int XDT, int YDT, bool VEC>
__device__ __forceinline__ void softmax_loop(const kf_softmax_params &p) {
  __shared__ float scratch[2][32];
  const int xdt = XDT != DT_RUNTIME ? XDT : (int)((p.dtypes >> KF_SOFTMAX_DT_SHIFT_X) & 15);
  const int ydt = YDT != DT_RUNTIME ? YDT : (int)((p.dtypes >> KF_SOFTMAX_DT_SHIFT_Y) & 15);
  const int64_t row = blockIdx.x;
  const int packs = (p.row_len + PACK_ELEMENTS - 1) / PACK_ELEMENTS;
  const softmax_row r = softmax_row_start(p, row, xdt, ydt);
  const int batch = LOOP_CHUNKS * LOOP_THREADS;

  float running_max = negative_infinity(), running_sum = 0.0f;
  for (int first = 0; first < packs; first += batch) {
    raw_pack<XDT> raw[LOOP_CHUNKS];
#pragma unroll
    for (int k = 0; k < LOOP_CHUNKS; ++k) {
      const int pk = first + threadIdx.x + k * LOOP_THREADS;
      raw[k] = pk < packs ? load_pack<XDT, VEC, LOAD_COHERENT>(xdt, r.x, pk, p.row_len, 1) : raw_pack<XDT>{};
    }
#pragma unroll
    for (int k = 0; k < LOOP_CHUNKS; ++k) {
      const int pk = first + threadIdx.x + k * LOOP_THREADS;
      if (pk >= packs) break;
      float v[PACK_ELEMENTS];
      logits<XDT, VEC>(p, xdt, raw[k], r.mask, pk, v);
      float pack_max = negative_infinity();
#pragma unroll
      for (int e = 0; e < PACK_ELEMENTS; ++e) pack_max = fmaxf(pack_max, v[e]);
      if (pack_max == negative_infinity()) continue;
      float pack_sum = 0.0f;
#pragma unroll
      for (int e = 0; e < PACK_ELEMENTS; ++e) pack_sum += expf(v[e] - pack_max); /* -inf -> 0 */
      online_merge(running_max, running_sum, pack_max, pack_sum);
    }
  }
  const float row_max = row_reduce<true>(running_max, scratch[0]);
  const float scaled = running_max == negative_infinity() ? 0.0f : running_sum * expf(running_max - row_max);
  const float inverse = 1.0f / row_reduce<false>(scaled, scratch[1]);

  for (int first = 0; first < packs; first += batch) {
    raw_pack<XDT> raw[LOOP_CHUNKS];
#pragma unroll
    for (int k = 0; k < LOOP_CHUNKS; ++k) {
      const int pk = first + threadIdx.x + k * LOOP_THREADS;
      raw[k] = pk < packs ? load_pack<XDT, VEC, LOAD_COHERENT>(xdt, r.x, pk, p.row_len, 1) : raw_pack<XDT>{};
    }
#pragma unroll
    for (int k = 0; k < LOOP_CHUNKS; ++k) {
      const int pk = first + threadIdx.x + k * LOOP_THREADS;
      if (pk >= packs) break;
      float v[PACK_ELEMENTS];
      logits<XDT, VEC>(p, xdt, raw[k], r.mask, pk, v);
#pragma unroll
      for (int e = 0; e < PACK_ELEMENTS; ++e) v[e] = expf(v[e] - row_max) * inverse;
      store_pack<YDT, VEC>(ydt, r.y, pk, p.row_len, pack<YDT>(ydt, v));
    }
  }
}

#define KF_REGISTER_KERNEL(xname, XDT, yname, YDT, C, vname, VEC)                                         \
  extern "C" __global__ void __launch_bounds__(MAX_THREADS_C##C)                                       \
      kf_softmax_##xname##_##yname##_c##C##_##vname(const struct kf_softmax_params p) {                \
    softmax_registers<XDT, YDT, C, VEC, false>(p);                                                      \
  }                                                                                                     \
  extern "C" __global__ void __launch_bounds__(MAX_THREADS_C##C)                                       \
      kf_softmax_##xname##_##yname##_c##C##m_##vname(const struct kf_softmax_params p) {               \
    softmax_registers<XDT, YDT, C, VEC, true>(p);                                                       \
  }

#define KF_REREAD_KERNEL(xname, XDT, C)                                                                    \
  extern "C" __global__ void __launch_bounds__(MAX_THREADS_REREAD, MIN_BLOCKS_REREAD)                  \
      kf_softmax_##xname##_##xname##_c##C##l_v(const struct kf_softmax_params p) {                     \
    softmax_reread<XDT, XDT, C>(p);                                                                     \
  }

#define KF_REREAD16_KERNEL(xname, XDT)                                                                     \
  extern "C" __global__ void __launch_bounds__(MAX_THREADS_REREAD, MIN_BLOCKS_REREAD16)                \
      kf_softmax_##xname##_##xname##_c16l_v(const struct kf_softmax_params p) {                         \
    softmax_reread<XDT, XDT, 16>(p);                                                                    \
  }

#define KF_LOOP_KERNEL(name, XDT, YDT, vname, VEC)                                                         \
  extern "C" __global__ void __launch_bounds__(LOOP_THREADS) kf_softmax_##name##_loop_##vname(         \
      const struct kf_softmax_params p) {                                                               \
    softmax_loop<XDT, YDT, VEC>(p);                                                                     \
  }

#define KF_KERNELS_XY(xname, XDT, yname, YDT)             \
  KF_REGISTER_KERNEL(xname, XDT, yname, YDT, 1, v, true)  \
  KF_REGISTER_KERNEL(xname, XDT, yname, YDT, 2, v, true)  \
  KF_REGISTER_KERNEL(xname, XDT, yname, YDT, 4, v, true)  \
  KF_REGISTER_KERNEL(xname, XDT, yname, YDT, 8, v, true)  \
  KF_REGISTER_KERNEL(xname, XDT, yname, YDT, 1, s, false) \
  KF_REGISTER_KERNEL(xname, XDT, yname, YDT, 2, s, false) \
  KF_REGISTER_KERNEL(xname, XDT, yname, YDT, 4, s, false) \
  KF_REGISTER_KERNEL(xname, XDT, yname, YDT, 8, s, false) \
  KF_LOOP_KERNEL(xname##_##yname, XDT, YDT, v, true)      \
  KF_LOOP_KERNEL(xname##_##yname, XDT, YDT, s, false)

KF_KERNELS_XY(f32, KF_DT_F32, f32, KF_DT_F32)
KF_KERNELS_XY(f16, KF_DT_F16, f16, KF_DT_F16)
KF_KERNELS_XY(bf16, KF_DT_BF16, bf16, KF_DT_BF16)
KF_KERNELS_XY(f16, KF_DT_F16, f32, KF_DT_F32)
KF_KERNELS_XY(bf16, KF_DT_BF16, f32, KF_DT_F32)
KF_LOOP_KERNEL(any, DT_RUNTIME, DT_RUNTIME, v, true)
KF_LOOP_KERNEL(any, DT_RUNTIME, DT_RUNTIME, s, false)
KF_REREAD_KERNEL(f16, KF_DT_F16, 8)
KF_REREAD_KERNEL(bf16, KF_DT_BF16, 8)
KF_REREAD16_KERNEL(f16, KF_DT_F16)
KF_REREAD16_KERNEL(bf16, KF_DT_BF16)

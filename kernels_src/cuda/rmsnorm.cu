/* rmsnorm.cu — RMSNorm and LayerNorm with optional fused residual add, for the CUDA backend.
 *
 *   h = x (+ residual; then residual_out = h, rounded to residual_out's dtype)
 *   RMSNorm:   y = h / sqrt(mean(h²) + eps) * weight (+ bias)                 f32 accumulation
 *   LayerNorm: y = (h - mean(h)) / sqrt(mean((h - mean(h))²) + eps) * weight (+ bias)
 * Both ops are one template with a CENTER flag, so LayerNorm has RMSNorm's memory behaviour.
 *
 * The op is memory bound (one read of x, one write of y, weight from cache), so everything here is
 * about moving bytes: each row is read from device memory once, held in registers across the
 * reduction in its storage format (8 bf16 = 4 registers), and written once.
 *
 * Work split. A row is cut into packs of PACK_ELEMENTS elements (16 bytes of f16/bf16, 32 bytes of
 * f32). blockDim.x threads share a row (a multiple of 32), blockDim.y rows share a block; thread t
 * owns packs t, t + blockDim.x, ... so every warp-wide load is 512 contiguous bytes. Each kernel
 * holds CHUNKS packs per thread (a compile-time count so the packs stay in registers); rows longer
 * than the register path holds use the looping kernel, which streams the row two (RMSNorm) or three
 * (LayerNorm) times; the later reads mostly hit L2.
 *
 * Two memory paths: VEC (16-byte loads and stores; the host picks it when row_len is a multiple of 8,
 * every row start is 16-byte aligned and weight/bias are contiguous and aligned) and scalar (element
 * loads with bounds checks, any layout).
 *
 * Aliasing: residual_out may be x or residual itself. Every element of x and residual is read by the
 * thread that later writes the same element of residual_out, and all of a thread's loads of a batch
 * are issued before its stores of that batch, so nothing is overwritten before it is read. x and
 * residual are therefore never read through the non-coherent (read-only) cache path.
 *
 * Entry points (extern "C", parameters: struct kf_norm_params by value; <op> = rmsnorm | layernorm):
 *   kf_<op>_<x>_<y>_c<CHUNKS>_<v|s>   register path without a residual; (x, y) one of the specialised
 *                                     pairs at the end of this file; CHUNKS = 1, 2, 4
 *   kf_<op>_<x>_<y>_c<CHUNKS>r_<v|s>  register path with the fused residual; x = residual =
 *                                     residual_out dtype
 *   kf_rmsnorm_<x>_<x>_c<CHUNKS>l_v   re-read path (x = y = f16 or bf16, no residual, 16-byte access,
 *   kf_layernorm_<x>_<x>_c4l_v        rows of exactly CHUNKS * blockDim.x packs; RMSNorm CHUNKS = 1,
 *                                     2, LayerNorm 4 with a power-of-two count of warps): the row is
 *                                     read twice, the second time from L1/L2 (norm_reread)
 *   kf_<op>_<x>_<y>_loop_<v|s>        long rows; same dtype rule
 *   kf_<op>_any_loop_<v|s>            any dtype of every operand (read from params.dtypes)
 * Weight and bias dtypes are read from params.dtypes (a uniform branch) in every kernel but the
 * re-read ones, where they are x's.
 */
#include "kernels_src/cuda/kf_pack.cuh"

/* The looping kernel: threads per row, and packs each thread loads before its first use (enough
 * independent 16-byte loads in flight to cover memory latency). */
#define LOOP_THREADS 512
#define LOOP_CHUNKS 4

/* y = (h - mean) * rstd * weight + bias for one pack of h (already as float; mean is 0 for RMSNorm),
 * formed as fma(h - mean, rstd * weight, bias): three operations an element. */
template <bool VEC>
__device__ __forceinline__ void scale_pack(const kf_norm_params &p, int64_t pack, float mean, float rstd,
                                           float v[PACK_ELEMENTS]) {
  float a[PACK_ELEMENTS], c[PACK_ELEMENTS];
#pragma unroll
  for (int e = 0; e < PACK_ELEMENTS; ++e) a[e] = rstd, c[e] = 0.0f;
  if (p.flags & KF_NORM_HAS_WEIGHT) {
    const int wdt = (p.dtypes >> KF_NORM_DT_SHIFT_WEIGHT) & 15;
    float w[PACK_ELEMENTS];
    unpack<DT_RUNTIME>(wdt, load_pack<DT_RUNTIME, VEC, LOAD_READONLY>(wdt, reinterpret_cast<const char *>(p.weight),
                                                                      pack, p.row_len, p.weight_stride), w);
#pragma unroll
    for (int e = 0; e < PACK_ELEMENTS; ++e) a[e] *= w[e];
  }
  if (p.flags & KF_NORM_HAS_BIAS) {
    const int bdt = (p.dtypes >> KF_NORM_DT_SHIFT_BIAS) & 15;
    unpack<DT_RUNTIME>(bdt, load_pack<DT_RUNTIME, VEC, LOAD_READONLY>(bdt, reinterpret_cast<const char *>(p.bias),
                                                                      pack, p.row_len, p.bias_stride), c);
  }
#pragma unroll
  for (int e = 0; e < PACK_ELEMENTS; ++e) v[e] = fmaf(v[e] - mean, a[e], c[e]);
}

__device__ __forceinline__ float sum_of_squares(const float v[PACK_ELEMENTS]) {
  float s = 0.0f;
#pragma unroll
  for (int e = 0; e < PACK_ELEMENTS; ++e) s = fmaf(v[e], v[e], s);
  return s;
}

__device__ __forceinline__ float pack_sum(const float v[PACK_ELEMENTS]) {
  float s = 0.0f;
#pragma unroll
  for (int e = 0; e < PACK_ELEMENTS; ++e) s += v[e];
  return s;
}

/* Elements of pack `pack` that lie inside the row (8 for every pack of a VEC row: row_len % 8 == 0). */
__device__ __forceinline__ int pack_valid_elements(int64_t pack, int row_len) {
  const int64_t rest = row_len - pack * PACK_ELEMENTS;
  return rest >= PACK_ELEMENTS ? PACK_ELEMENTS : rest > 0 ? (int)rest : 0;
}

/* Sum of (v - mean)² over the first `valid` elements of a pack. */
__device__ __forceinline__ float centered_squares(const float v[PACK_ELEMENTS], float mean, int valid) {
  float s = 0.0f;
#pragma unroll
  for (int e = 0; e < PACK_ELEMENTS; ++e) {
    const float d = e < valid ? v[e] - mean : 0.0f;
    s = fmaf(d, d, s);
  }
  return s;
}

/* Dtype of an operand: the template constant when given, else from params.dtypes. */
__device__ __forceinline__ int operand_dtype(int fixed, const kf_norm_params &p, int shift) {
  return fixed != DT_RUNTIME ? fixed : (int)((p.dtypes >> shift) & 15);
}

struct row_pointers {
  const char *x, *residual;
  char *residual_out, *y;
};

__device__ __forceinline__ row_pointers row_start(const kf_norm_params &p, int64_t row, int xdt, int rdt, int odt,
                                                  int ydt) {
  row_pointers r;
  r.x = reinterpret_cast<const char *>(p.x) + row * p.x_row_stride * element_size(xdt);
  r.residual = reinterpret_cast<const char *>(p.residual) + row * p.residual_row_stride * element_size(rdt);
  r.residual_out = reinterpret_cast<char *>(p.residual_out) + row * p.residual_out_row_stride * element_size(odt);
  r.y = reinterpret_cast<char *>(p.y) + row * p.y_row_stride * element_size(ydt);
  return r;
}

/* Register path: the whole row lives in registers (CHUNKS packs per thread) between the reductions
 * and the write. x, residual and residual_out share the dtype XDT, so h is held in that format.
 * RESIDUAL is a template argument so that kernels without the residual hold no registers for it
 * (fewer registers, more rows in flight per SM). CENTER: LayerNorm (mean subtracted; the variance is
 * a second pass over the registers, which is as stable as a two-pass algorithm gets and costs no
 * memory traffic).
 *
 * Loads use the default cache policy. Measured on the H200: evict-first loads (ld.global.cs) cost
 * 4% of bandwidth here (RMSNorm bf16 16384x8192: 91.6% of copy against 95.2%) and 5-6% in SwiGLU.
 * LayerNorm without a residual ran near 82% of copy here (bf16 16384x8192): its second reduction and
 * the bias keep each block longer per row than RMSNorm's; forcing 48 registers (5 blocks an SM)
 * gained 2.5 points with spills, 40 registers lost 28. f16/bf16 rows of 2048, 4096 and 8192 now take
 * the re-read path (norm_reread: 97% of copy). */
template <int XDT, int YDT, int CHUNKS, bool VEC, bool CENTER, bool RESIDUAL>
__device__ __forceinline__ void norm_registers(const kf_norm_params &p) {
  __shared__ float scratch[2][32];
  const int64_t row = (int64_t)blockIdx.x * blockDim.y + threadIdx.y;
  const bool row_valid = row < p.rows;
  const int packs = (p.row_len + PACK_ELEMENTS - 1) / PACK_ELEMENTS;
  const row_pointers r = row_start(p, row, XDT, XDT, XDT, YDT);

  /* All loads first: no store sits between them, so all (1 + RESIDUAL) * CHUNKS are in flight. */
  raw_pack<XDT> h[CHUNKS], addend[RESIDUAL ? CHUNKS : 1];
#pragma unroll
  for (int k = 0; k < CHUNKS; ++k) {
    const int pk = threadIdx.x + k * blockDim.x;
    const bool present = row_valid && pk < packs;
    h[k] = present ? load_pack<XDT, VEC, LOAD_COHERENT>(XDT, r.x, pk, p.row_len, 1) : raw_pack<XDT>{};
    if (RESIDUAL)
      addend[RESIDUAL ? k : 0] =
          present ? load_pack<XDT, VEC, LOAD_COHERENT>(XDT, r.residual, pk, p.row_len, 1) : raw_pack<XDT>{};
  }

  float sum = 0.0f; /* of h (CENTER) or h² */
#pragma unroll
  for (int k = 0; k < CHUNKS; ++k) {
    float v[PACK_ELEMENTS];
    unpack(XDT, h[k], v);
    if (RESIDUAL) {
      float a[PACK_ELEMENTS];
      unpack(XDT, addend[RESIDUAL ? k : 0], a);
#pragma unroll
      for (int e = 0; e < PACK_ELEMENTS; ++e) v[e] += a[e];
      h[k] = pack<XDT>(XDT, v);
      unpack(XDT, h[k], v); /* y normalizes h as stored in residual_out */
      const int pk = threadIdx.x + k * blockDim.x;
      if (row_valid && pk < packs) store_pack<XDT, VEC>(XDT, r.residual_out, pk, p.row_len, h[k]);
    }
    sum += CENTER ? pack_sum(v) : sum_of_squares(v); /* absent packs and elements hold zeros */
  }

  float mean = 0.0f, variance;
  if (CENTER) {
    mean = row_reduce<false>(sum, scratch[0]) / (float)p.row_len;
    float squares = 0.0f;
#pragma unroll
    for (int k = 0; k < CHUNKS; ++k) {
      const int pk = threadIdx.x + k * blockDim.x;
      if (pk >= packs) continue;
      float v[PACK_ELEMENTS];
      unpack(XDT, h[k], v);
      /* VEC rows have whole packs only: no per-element test */
      squares += centered_squares(v, mean, VEC ? PACK_ELEMENTS : pack_valid_elements(pk, p.row_len));
    }
    variance = row_reduce<false>(squares, scratch[1]) / (float)p.row_len;
  } else {
    variance = row_reduce<false>(sum, scratch[0]) / (float)p.row_len;
  }
  const float rstd = rsqrtf(variance + p.eps);
  if (!row_valid) return;

#pragma unroll
  for (int k = 0; k < CHUNKS; ++k) {
    const int pk = threadIdx.x + k * blockDim.x;
    if (pk < packs) {
      float v[PACK_ELEMENTS];
      unpack(XDT, h[k], v);
      scale_pack<VEC>(p, pk, mean, rstd, v);
      store_pack<YDT, VEC>(YDT, r.y, pk, p.row_len, pack<YDT>(YDT, v));
    }
  }
}

/* Pairwise (Chan et al.) merge of per-thread LayerNorm statistics over the blockDim.x threads of a
 * row (blockDim.y == 1): on entry each thread holds S, the sum of its `n` elements, and M2, the sum of
 * their squared deviations from its own mean S / n; on return every thread holds S and M2 of the whole
 * row. Every thread holds the same count, and the warps of a row are a power of two (the host's plan),
 * so each butterfly step merges two halves of equal count n:
 *   d = S_other / n - S / n,  M2 = M2 + M2_other + d² n / 2,  S = S + S_other,  n = 2n
 * with 1 / n kept exactly (a power of two over a compile-time count): no division anywhere. One
 * barrier (the two-reduction form takes two). Returns 1 / (elements of the row). */
template <int COUNT>
__device__ __forceinline__ float chan_merge_row(float &S, float &M2, float2 *scratch) {
  float half_n = 0.5f * COUNT, inv_n = 1.0f / COUNT;
#pragma unroll
  for (int offset = 1; offset < 32; offset <<= 1) {
    const float other_s = __shfl_xor_sync(0xffffffffu, S, offset), other_m2 = __shfl_xor_sync(0xffffffffu, M2, offset);
    const float d = (other_s - S) * inv_n;
    M2 = M2 + other_m2 + d * d * half_n;
    S += other_s;
    half_n *= 2.0f, inv_n *= 0.5f;
  }
  const int warps = blockDim.x / 32;
  if (warps == 1) return inv_n;
  const int lane = threadIdx.x % 32;
  if (lane == 0) scratch[threadIdx.x / 32] = make_float2(S, M2);
  __syncthreads();
  const float2 mine = scratch[lane & (warps - 1)]; /* lanes past the warps repeat them: same result */
  S = mine.x, M2 = mine.y;
  for (int offset = 1; offset < warps; offset <<= 1) {
    const float other_s = __shfl_xor_sync(0xffffffffu, S, offset), other_m2 = __shfl_xor_sync(0xffffffffu, M2, offset);
    const float d = (other_s - S) * inv_n;
    M2 = M2 + other_m2 + d * d * half_n;
    S += other_s;
    half_n *= 2.0f, inv_n *= 0.5f;
  }
  return inv_n;
}

/* The re-read path's second pass: y = (x - mean) * rstd * weight + bias over the thread's CHUNKS
 * packs, x re-read (L1/L2 evict-first), weight and bias of x's dtype (L1/L2 evict-last: every row
 * reads them). */
template <int XDT, int YDT, int CHUNKS, bool CENTER, bool WEIGHT, bool BIAS>
__device__ __forceinline__ void reread_write(const kf_norm_params &p, const char *x, char *y, float mean, float rstd) {
  const char *weight = reinterpret_cast<const char *>(p.weight), *bias = reinterpret_cast<const char *>(p.bias);
#pragma unroll
  for (int k = 0; k < CHUNKS; ++k) {
    const int pk = threadIdx.x + k * blockDim.x;
    float v[PACK_ELEMENTS], a[PACK_ELEMENTS], c[PACK_ELEMENTS];
    unpack(XDT, load_pack<XDT, true, LOAD_LAST_USE>(XDT, x, pk, p.row_len, 1), v);
    if (WEIGHT) unpack(XDT, load_pack<XDT, true, LOAD_KEEP>(XDT, weight, pk, p.row_len, 1), a);
    if (BIAS) unpack(XDT, load_pack<XDT, true, LOAD_KEEP>(XDT, bias, pk, p.row_len, 1), c);
#pragma unroll
    for (int e = 0; e < PACK_ELEMENTS; ++e)
      v[e] = fmaf(CENTER ? v[e] - mean : v[e], WEIGHT ? a[e] * rstd : rstd, BIAS ? c[e] : 0.0f);
    store_pack<YDT, true>(YDT, y, pk, p.row_len, pack<YDT>(YDT, v));
  }
}

/* Re-read path (no residual, 16-byte access, weight and bias of x's dtype, every thread holding
 * exactly CHUNKS whole packs, one row per block: the host's plan guarantees it; LayerNorm's also a
 * power-of-two number of warps): pass 1 loads the row (L1/L2 evict-last), reduces, and drops it;
 * pass 2 loads it again, mostly from L1 or L2 (evict-first), and writes y. Holding the row in
 * registers across the reduction (norm_registers) keeps fewer rows in flight per SM; this way a
 * thread needs few registers and the SM holds more rows.
 * RMSNorm, H200, bf16 16384x8192: 97.8% of copy in kfbench against 93.8% for the register path
 * (96.5% -> 98.3-99.5% in a harness beside cudaMemcpy); the evict-last hint is worth ~3 points.
 * LayerNorm reduces once: each thread's (sum, M2) from its own registers (two passes over 32 values,
 * as exact as two-pass gets), then chan_merge_row. H200, bf16 16384x8192: 97.0% of copy in kfbench
 * against 81.6% for the register path. Its register count decides the rows in flight: the kernels
 * are bounded to 48 (5 blocks of 256 threads an SM); at 54 registers (4 blocks) an earlier version
 * ran at 82% and fell to 64% once the GPU had been busy for 400 ms. */
template <int XDT, int YDT, int CHUNKS, bool CENTER>
__device__ __forceinline__ void norm_reread(const kf_norm_params &p) {
  __shared__ float2 scratch[32];
  const int64_t row = blockIdx.x;
  const char *x = reinterpret_cast<const char *>(p.x) + row * p.x_row_stride * element_size(XDT);
  char *y = reinterpret_cast<char *>(p.y) + row * p.y_row_stride * element_size(YDT);

  raw_pack<XDT> h[CHUNKS];
#pragma unroll
  for (int k = 0; k < CHUNKS; ++k)
    h[k] = load_pack<XDT, true, LOAD_KEEP>(XDT, x, threadIdx.x + k * blockDim.x, p.row_len, 1);
  float mean = 0.0f, rstd;
  if (CENTER) {
    float S = 0.0f, M2 = 0.0f;
#pragma unroll
    for (int k = 0; k < CHUNKS; ++k) {
      float v[PACK_ELEMENTS];
      unpack(XDT, h[k], v);
      S += pack_sum(v);
    }
    const float own_mean = S * (1.0f / (CHUNKS * PACK_ELEMENTS));
#pragma unroll
    for (int k = 0; k < CHUNKS; ++k) {
      float v[PACK_ELEMENTS];
      unpack(XDT, h[k], v);
      M2 += centered_squares(v, own_mean, PACK_ELEMENTS);
    }
    const float inv_len = chan_merge_row<CHUNKS * PACK_ELEMENTS>(S, M2, scratch);
    mean = S * inv_len;
    rstd = rsqrtf(M2 * inv_len + p.eps);
  } else {
    float squares = 0.0f;
#pragma unroll
    for (int k = 0; k < CHUNKS; ++k) {
      float v[PACK_ELEMENTS];
      unpack(XDT, h[k], v);
      squares += sum_of_squares(v);
    }
    rstd = rsqrtf(row_reduce<false>(squares, reinterpret_cast<float *>(scratch)) / (float)p.row_len + p.eps);
  }

  /* Weight and bias have x's dtype here (the host's condition), and the loop is specialised on their
   * presence: no branches between its loads. (With scale_pack's run-time dtypes RMSNorm's pass
   * measured 93.9% of copy instead of 97.9%; with branches on the flags, LayerNorm's ran at 96.3%
   * against 97.8% in the harness and lost more once clocks fell.) */
  const bool has_weight = (p.flags & KF_NORM_HAS_WEIGHT) != 0, has_bias = (p.flags & KF_NORM_HAS_BIAS) != 0;
  if (has_weight && has_bias)
    reread_write<XDT, YDT, CHUNKS, CENTER, true, true>(p, x, y, mean, rstd);
  else if (has_weight)
    reread_write<XDT, YDT, CHUNKS, CENTER, true, false>(p, x, y, mean, rstd);
  else if (has_bias)
    reread_write<XDT, YDT, CHUNKS, CENTER, false, true>(p, x, y, mean, rstd);
  else
    reread_write<XDT, YDT, CHUNKS, CENTER, false, false>(p, x, y, mean, rstd);
}

/* Looping path for rows of any length: pass 1 forms h (storing residual_out) and sums it (LayerNorm)
 * or its squares (RMSNorm); LayerNorm adds a pass summing (h - mean)²; the last pass writes y. Passes
 * after the first re-read h — from residual_out when there is a residual, so y sees h as rounded
 * there — mostly from L2. One row per block, LOOP_THREADS threads; each batch loads LOOP_CHUNKS packs
 * per thread before using any. Each thread re-reads only the packs it wrote itself: no barrier is
 * needed for residual_out. */
template <int XDT, int YDT, bool VEC, bool CENTER>
__device__ __forceinline__ void norm_loop(const kf_norm_params &p) {
  __shared__ float scratch[2][32];
  const int xdt = operand_dtype(XDT, p, KF_NORM_DT_SHIFT_X);
  const int rdt = operand_dtype(XDT, p, KF_NORM_DT_SHIFT_RESIDUAL);
  const int odt = operand_dtype(XDT, p, KF_NORM_DT_SHIFT_RESIDUAL_OUT);
  const int ydt = operand_dtype(YDT, p, KF_NORM_DT_SHIFT_Y);
  const int64_t row = blockIdx.x;
  const int packs = (p.row_len + PACK_ELEMENTS - 1) / PACK_ELEMENTS;
  const bool has_residual = (p.flags & KF_NORM_HAS_RESIDUAL) != 0;
  const row_pointers r = row_start(p, row, xdt, rdt, odt, ydt);
  const int batch = LOOP_CHUNKS * LOOP_THREADS;

  float sum = 0.0f;
  for (int first = 0; first < packs; first += batch) {
    raw_pack<XDT> xs[LOOP_CHUNKS], addend[LOOP_CHUNKS];
#pragma unroll
    for (int k = 0; k < LOOP_CHUNKS; ++k) {
      const int pk = first + threadIdx.x + k * LOOP_THREADS;
      xs[k] = pk < packs ? load_pack<XDT, VEC, LOAD_COHERENT>(xdt, r.x, pk, p.row_len, 1) : raw_pack<XDT>{};
      addend[k] = pk < packs && has_residual ? load_pack<XDT, VEC, LOAD_COHERENT>(rdt, r.residual, pk, p.row_len, 1)
                                             : raw_pack<XDT>{};
    }
#pragma unroll
    for (int k = 0; k < LOOP_CHUNKS; ++k) {
      const int pk = first + threadIdx.x + k * LOOP_THREADS;
      float v[PACK_ELEMENTS];
      unpack(xdt, xs[k], v);
      if (has_residual) {
        float a[PACK_ELEMENTS];
        unpack(rdt, addend[k], a);
#pragma unroll
        for (int e = 0; e < PACK_ELEMENTS; ++e) v[e] += a[e];
        const raw_pack<XDT> stored = pack<XDT>(odt, v);
        unpack(odt, stored, v);
        if (pk < packs) store_pack<XDT, VEC>(odt, r.residual_out, pk, p.row_len, stored);
      }
      sum += CENTER ? pack_sum(v) : sum_of_squares(v);
    }
  }

  const char *h_row = has_residual ? r.residual_out : r.x;
  const int hdt = has_residual ? odt : xdt;
  float mean = 0.0f, variance;
  if (CENTER) {
    mean = row_reduce<false>(sum, scratch[0]) / (float)p.row_len;
    float squares = 0.0f;
    for (int first = 0; first < packs; first += batch) {
      raw_pack<XDT> hs[LOOP_CHUNKS];
#pragma unroll
      for (int k = 0; k < LOOP_CHUNKS; ++k) {
        const int pk = first + threadIdx.x + k * LOOP_THREADS;
        hs[k] = pk < packs ? load_pack<XDT, VEC, LOAD_COHERENT>(hdt, h_row, pk, p.row_len, 1) : raw_pack<XDT>{};
      }
#pragma unroll
      for (int k = 0; k < LOOP_CHUNKS; ++k) {
        float v[PACK_ELEMENTS];
        unpack(hdt, hs[k], v);
        squares += centered_squares(v, mean, pack_valid_elements(first + threadIdx.x + k * LOOP_THREADS, p.row_len));
      }
    }
    variance = row_reduce<false>(squares, scratch[1]) / (float)p.row_len;
  } else {
    variance = row_reduce<false>(sum, scratch[0]) / (float)p.row_len;
  }
  const float rstd = rsqrtf(variance + p.eps);

  for (int first = 0; first < packs; first += batch) {
    raw_pack<XDT> hs[LOOP_CHUNKS];
#pragma unroll
    for (int k = 0; k < LOOP_CHUNKS; ++k) {
      const int pk = first + threadIdx.x + k * LOOP_THREADS;
      hs[k] = pk < packs ? load_pack<XDT, VEC, LOAD_COHERENT>(hdt, h_row, pk, p.row_len, 1) : raw_pack<XDT>{};
    }
#pragma unroll
    for (int k = 0; k < LOOP_CHUNKS; ++k) {
      const int pk = first + threadIdx.x + k * LOOP_THREADS;
      if (pk < packs) {
        float v[PACK_ELEMENTS];
        unpack(hdt, hs[k], v);
        scale_pack<VEC>(p, pk, mean, rstd, v);
        store_pack<YDT, VEC>(ydt, r.y, pk, p.row_len, pack<YDT>(ydt, v));
      }
    }
  }
}

/* Largest block each register-path chunk count is launched with; it bounds the registers per thread
 * (65536 / threads). The host (backend_cuda/cuda_rmsnorm.c) mirrors these limits. */
#define MAX_THREADS_C1 1024
#define MAX_THREADS_C2 1024
#define MAX_THREADS_C4 512
/* The re-read kernels: at most 32 registers, so that 2048 threads fit an SM (bf16 16384x8192 runs
 * 512-thread blocks, 4 an SM: 98-99.5% of copy in the harness with 32 registers). */
#define MAX_THREADS_REREAD 1024
#define MIN_BLOCKS_REREAD 2
/* LayerNorm's re-read kernels (4 packs a thread, up to 8192 f16/bf16 elements a row): at most 48
 * registers, 5 blocks of 256 threads an SM. */
#define MAX_THREADS_LN_REREAD 256
#define MIN_BLOCKS_LN_REREAD 5

#define KF_REGISTER_KERNEL(op, CENTER, xname, XDT, yname, YDT, C, vname, VEC)                               \
  extern "C" __global__ void __launch_bounds__(MAX_THREADS_C##C)                                         \
      kf_##op##_##xname##_##yname##_c##C##_##vname(const struct kf_norm_params p) {                      \
    norm_registers<XDT, YDT, C, VEC, CENTER, false>(p);                                                   \
  }                                                                                                       \
  extern "C" __global__ void __launch_bounds__(MAX_THREADS_C##C)                                         \
      kf_##op##_##xname##_##yname##_c##C##r_##vname(const struct kf_norm_params p) {                     \
    norm_registers<XDT, YDT, C, VEC, CENTER, true>(p);                                                    \
  }

#define KF_REREAD_KERNEL(xname, XDT, yname, YDT, C)                                                        \
  extern "C" __global__ void __launch_bounds__(MAX_THREADS_REREAD, MIN_BLOCKS_REREAD)                    \
      kf_rmsnorm_##xname##_##yname##_c##C##l_v(const struct kf_norm_params p) {                          \
    norm_reread<XDT, YDT, C, false>(p);                                                                   \
  }
#define KF_LN_REREAD_KERNEL(xname, XDT, yname, YDT)                                                        \
  extern "C" __global__ void __launch_bounds__(MAX_THREADS_LN_REREAD, MIN_BLOCKS_LN_REREAD)              \
      kf_layernorm_##xname##_##yname##_c4l_v(const struct kf_norm_params p) {                            \
    norm_reread<XDT, YDT, 4, true>(p);                                                                    \
  }

#define KF_LOOP_KERNEL(op, CENTER, name, XDT, YDT, vname, VEC)                                              \
  extern "C" __global__ void __launch_bounds__(LOOP_THREADS) kf_##op##_##name##_loop_##vname(            \
      const struct kf_norm_params p) {                                                                    \
    norm_loop<XDT, YDT, VEC, CENTER>(p);                                                                  \
  }

#define KF_KERNELS_XY(op, CENTER, xname, XDT, yname, YDT)                 \
  KF_REGISTER_KERNEL(op, CENTER, xname, XDT, yname, YDT, 1, v, true)      \
  KF_REGISTER_KERNEL(op, CENTER, xname, XDT, yname, YDT, 2, v, true)      \
  KF_REGISTER_KERNEL(op, CENTER, xname, XDT, yname, YDT, 4, v, true)      \
  KF_REGISTER_KERNEL(op, CENTER, xname, XDT, yname, YDT, 1, s, false)     \
  KF_REGISTER_KERNEL(op, CENTER, xname, XDT, yname, YDT, 2, s, false)     \
  KF_REGISTER_KERNEL(op, CENTER, xname, XDT, yname, YDT, 4, s, false)     \
  KF_LOOP_KERNEL(op, CENTER, xname##_##yname, XDT, YDT, v, true)          \
  KF_LOOP_KERNEL(op, CENTER, xname##_##yname, XDT, YDT, s, false)

/* The specialised dtype combinations (x = residual = residual_out -> y): one dtype throughout, and
 * 16-bit activations normalized into f32. Everything else runs the "any" kernels. */
#define KF_KERNELS_OP(op, CENTER)                                 \
  KF_KERNELS_XY(op, CENTER, f32, KF_DT_F32, f32, KF_DT_F32)       \
  KF_KERNELS_XY(op, CENTER, f16, KF_DT_F16, f16, KF_DT_F16)       \
  KF_KERNELS_XY(op, CENTER, bf16, KF_DT_BF16, bf16, KF_DT_BF16)   \
  KF_KERNELS_XY(op, CENTER, f16, KF_DT_F16, f32, KF_DT_F32)       \
  KF_KERNELS_XY(op, CENTER, bf16, KF_DT_BF16, f32, KF_DT_F32)     \
  KF_LOOP_KERNEL(op, CENTER, any, DT_RUNTIME, DT_RUNTIME, v, true) \
  KF_LOOP_KERNEL(op, CENTER, any, DT_RUNTIME, DT_RUNTIME, s, false)

KF_KERNELS_OP(rmsnorm, false)
KF_KERNELS_OP(layernorm, true)

#define KF_REREAD_KERNELS_XY(xname, XDT, yname, YDT) \
  KF_REREAD_KERNEL(xname, XDT, yname, YDT, 1)        \
  KF_REREAD_KERNEL(xname, XDT, yname, YDT, 2)        \
  KF_LN_REREAD_KERNEL(xname, XDT, yname, YDT)

/* 16-bit activations in and out only: with f32 (32-byte packs) the path measured 89.1% of copy against
 * the register path's 94.8% (RMSNorm f32 16384x8192, H200). */
KF_REREAD_KERNELS_XY(f16, KF_DT_F16, f16, KF_DT_F16)
KF_REREAD_KERNELS_XY(bf16, KF_DT_BF16, bf16, KF_DT_BF16)

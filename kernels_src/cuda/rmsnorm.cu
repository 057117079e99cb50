/* rmsnorm.cu — RMSNorm with optional fused residual add, for the CUDA backend.
 *
 *   h = x (+ residual; then residual_out = h, rounded to residual_out's dtype)
 *   y = h / sqrt(mean(h²) + eps) * weight (+ bias)          f32 accumulation
 *
 * The op is memory bound (one read of x, one write of y, weight from cache), so everything here is
 * about moving bytes: each row is read from device memory once, held in registers across the
 * reduction in its storage format (8 bf16 = 4 registers), and written once.
 *
 * Work split. A row is cut into packs of PACK_ELEMENTS elements (16 bytes of f16/bf16, 32 bytes of
 * f32). blockDim.x threads share a row (a multiple of 32), blockDim.y rows share a block; thread t
 * owns packs t, t + blockDim.x, ... so every warp-wide load is 512 contiguous bytes. Each kernel
 * holds CHUNKS packs per thread (a compile-time count so the packs stay in registers); rows longer
 * than the register path holds use the looping kernel, which streams the row twice (the second read
 * mostly hits L2).
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
 * Entry points (extern "C", parameters: struct kf_norm_params by value):
 *   kf_rmsnorm_<x>_<y>_c<CHUNKS>_<v|s>   register path; x = residual = residual_out dtype
 *   kf_rmsnorm_<x>_<y>_loop_<v|s>        long rows; same dtype rule
 *   kf_rmsnorm_any_loop_<v|s>            any dtype of every operand (read from params.dtypes)
 * Weight and bias dtypes are read from params.dtypes in every kernel (a uniform branch).
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "kernels_src/common/kf_params.h"

#define PACK_ELEMENTS 8
/* Dtype template argument meaning "read it from params.dtypes at run time". */
#define DT_RUNTIME (-1)
/* The looping kernel: threads per row, and packs each thread loads before its first use (enough
 * independent 16-byte loads in flight to cover memory latency). */
#define LOOP_THREADS 512
#define LOOP_CHUNKS 4

enum load_kind {
  LOAD_STREAM,   /* x, residual on the register path: read once, evict first */
  LOAD_COHERENT, /* x, residual, residual_out on the looping path: re-read later from L2 */
  LOAD_READONLY, /* weight, bias: shared by every row, kept in L1 through the read-only path */
};

/* One pack in its storage format: 16-bit dtypes use q[0] only. With a run-time dtype the size must
 * cover f32. */
template <int DT>
struct raw_pack {
  uint4 q[(DT == KF_DT_F16 || DT == KF_DT_BF16) ? 1 : 2];
};

__device__ __forceinline__ int element_size(int dt) { return dt == KF_DT_F32 ? 4 : 2; }

template <int KIND>
__device__ __forceinline__ uint4 load16(const void *address) {
  const uint4 *p = static_cast<const uint4 *>(address);
  if (KIND == LOAD_STREAM) return __ldcs(p);
  if (KIND == LOAD_READONLY) return __ldg(p);
  return *p;
}

template <int KIND>
__device__ __forceinline__ uint32_t load_element_bits(int dt, const char *base, int64_t index) {
  if (dt == KF_DT_F32) {
    const unsigned int *p = reinterpret_cast<const unsigned int *>(base) + index;
    if (KIND == LOAD_STREAM) return __ldcs(p);
    if (KIND == LOAD_READONLY) return __ldg(p);
    return *p;
  }
  const unsigned short *p = reinterpret_cast<const unsigned short *>(base) + index;
  if (KIND == LOAD_STREAM) return __ldcs(p);
  if (KIND == LOAD_READONLY) return __ldg(p);
  return *p;
}

/* The scalar path fills elements past row_len with zero bits (0.0 in every dtype). */
template <int DT, int KIND>
__device__ __forceinline__ raw_pack<DT> load_pack_scalar(int dt, const char *base, int64_t pack, int row_len,
                                                         int stride) {
  raw_pack<DT> r;
  uint32_t words[8];
#pragma unroll
  for (int e = 0; e < PACK_ELEMENTS; ++e) {
    const int64_t c = pack * PACK_ELEMENTS + e;
    words[e] = c < row_len ? load_element_bits<KIND>(dt, base, c * stride) : 0u;
  }
  if (dt == KF_DT_F32) {
    if (sizeof(r.q) > 16) {
      r.q[0] = make_uint4(words[0], words[1], words[2], words[3]);
      r.q[sizeof(r.q) / 16 - 1] = make_uint4(words[4], words[5], words[6], words[7]);
    }
  } else {
    r.q[0] = make_uint4(words[0] | (words[1] << 16), words[2] | (words[3] << 16), words[4] | (words[5] << 16),
                        words[6] | (words[7] << 16));
  }
  return r;
}

/* Loads pack `pack` of a row: element c of the row is at base + c * stride * size. */
template <int DT, bool VEC, int KIND>
__device__ __forceinline__ raw_pack<DT> load_pack(int dt, const char *base, int64_t pack, int row_len,
                                                  int stride) {
  raw_pack<DT> r;
  if (VEC) {
    const char *p = base + pack * PACK_ELEMENTS * element_size(dt);
    r.q[0] = load16<KIND>(p);
    if (sizeof(r.q) > 16 && dt == KF_DT_F32) r.q[sizeof(r.q) / 16 - 1] = load16<KIND>(p + 16);
    return r;
  }
  return load_pack_scalar<DT, KIND>(dt, base, pack, row_len, stride);
}

__device__ __forceinline__ void unpack_word(int dt, uint32_t w, float *lo_hi) {
  if (dt == KF_DT_BF16) {
    lo_hi[0] = __uint_as_float(w << 16);
    lo_hi[1] = __uint_as_float(w & 0xffff0000u);
  } else {
    __half2 h2 = *reinterpret_cast<__half2 *>(&w);
    float2 f = __half22float2(h2);
    lo_hi[0] = f.x;
    lo_hi[1] = f.y;
  }
}

template <int DT>
__device__ __forceinline__ void unpack(int dt, const raw_pack<DT> &r, float v[PACK_ELEMENTS]) {
  if (dt == KF_DT_F32) {
    if (sizeof(r.q) > 16) {
      const uint4 a = r.q[0], b = r.q[sizeof(r.q) / 16 - 1];
      v[0] = __uint_as_float(a.x), v[1] = __uint_as_float(a.y), v[2] = __uint_as_float(a.z);
      v[3] = __uint_as_float(a.w), v[4] = __uint_as_float(b.x), v[5] = __uint_as_float(b.y);
      v[6] = __uint_as_float(b.z), v[7] = __uint_as_float(b.w);
    }
    return;
  }
  unpack_word(dt, r.q[0].x, v + 0);
  unpack_word(dt, r.q[0].y, v + 2);
  unpack_word(dt, r.q[0].z, v + 4);
  unpack_word(dt, r.q[0].w, v + 6);
}

__device__ __forceinline__ uint32_t pack_word(int dt, float lo, float hi) {
  if (dt == KF_DT_BF16) {
    __nv_bfloat162 b = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&b);
  }
  __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t *>(&h);
}

/* Rounds to nearest even into the storage format. */
template <int DT>
__device__ __forceinline__ raw_pack<DT> pack(int dt, const float v[PACK_ELEMENTS]) {
  raw_pack<DT> r;
  if (dt == KF_DT_F32) {
    if (sizeof(r.q) > 16) {
      r.q[0] = make_uint4(__float_as_uint(v[0]), __float_as_uint(v[1]), __float_as_uint(v[2]),
                          __float_as_uint(v[3]));
      r.q[sizeof(r.q) / 16 - 1] = make_uint4(__float_as_uint(v[4]), __float_as_uint(v[5]),
                                             __float_as_uint(v[6]), __float_as_uint(v[7]));
    }
    return r;
  }
  r.q[0] = make_uint4(pack_word(dt, v[0], v[1]), pack_word(dt, v[2], v[3]), pack_word(dt, v[4], v[5]),
                      pack_word(dt, v[6], v[7]));
  return r;
}

/* Stores pack `pack` of a row; the scalar path writes only elements below row_len. Stores use the
 * default write-back policy: y and residual_out are usually read by the next op. */
template <int DT, bool VEC>
__device__ __forceinline__ void store_pack(int dt, char *base, int64_t pack, int row_len, const raw_pack<DT> &r) {
  const int size = element_size(dt);
  char *p = base + pack * PACK_ELEMENTS * size;
  if (VEC) {
    *reinterpret_cast<uint4 *>(p) = r.q[0];
    if (sizeof(r.q) > 16 && dt == KF_DT_F32) *reinterpret_cast<uint4 *>(p + 16) = r.q[sizeof(r.q) / 16 - 1];
    return;
  }
  const int64_t first = pack * PACK_ELEMENTS;
  if (dt == KF_DT_F32) {
    if (sizeof(r.q) > 16) {
      const uint32_t words[8] = {r.q[0].x, r.q[0].y, r.q[0].z, r.q[0].w, r.q[1].x, r.q[1].y, r.q[1].z, r.q[1].w};
#pragma unroll
      for (int e = 0; e < PACK_ELEMENTS; ++e)
        if (first + e < row_len) reinterpret_cast<uint32_t *>(p)[e] = words[e];
    }
    return;
  }
  const uint32_t words[4] = {r.q[0].x, r.q[0].y, r.q[0].z, r.q[0].w};
#pragma unroll
  for (int e = 0; e < PACK_ELEMENTS; ++e)
    if (first + e < row_len)
      reinterpret_cast<unsigned short *>(p)[e] = (unsigned short)(words[e / 2] >> (16 * (e % 2)));
}

__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

/* Sum over the blockDim.x threads of one row: shuffles within each warp, then (rows wider than a
 * warp) one shared-memory exchange of the per-warp sums. Every thread of the block must call it. */
__device__ __forceinline__ float row_sum(float value) {
  __shared__ float warp_sums[32]; /* a block has at most 1024 threads = 32 warps */
  value = warp_sum(value);
  const int warps_per_row = blockDim.x / 32;
  if (warps_per_row == 1) return value;
  const int lane = threadIdx.x % 32;
  const int first_warp = threadIdx.y * warps_per_row;
  if (lane == 0) warp_sums[first_warp + threadIdx.x / 32] = value;
  __syncthreads();
  return warp_sum(lane < warps_per_row ? warp_sums[first_warp + lane] : 0.0f);
}

/* y = h * rstd * weight + bias for one pack of h (already as float). */
template <bool VEC>
__device__ __forceinline__ void scale_pack(const kf_norm_params &p, int64_t pack, float rstd, float v[PACK_ELEMENTS]) {
#pragma unroll
  for (int e = 0; e < PACK_ELEMENTS; ++e) v[e] *= rstd;
  if (p.flags & KF_NORM_HAS_WEIGHT) {
    const int wdt = (p.dtypes >> KF_NORM_DT_SHIFT_WEIGHT) & 15;
    float w[PACK_ELEMENTS];
    unpack<DT_RUNTIME>(wdt, load_pack<DT_RUNTIME, VEC, LOAD_READONLY>(wdt, reinterpret_cast<const char *>(p.weight),
                                                                      pack, p.row_len, p.weight_stride), w);
#pragma unroll
    for (int e = 0; e < PACK_ELEMENTS; ++e) v[e] *= w[e];
  }
  if (p.flags & KF_NORM_HAS_BIAS) {
    const int bdt = (p.dtypes >> KF_NORM_DT_SHIFT_BIAS) & 15;
    float b[PACK_ELEMENTS];
    unpack<DT_RUNTIME>(bdt, load_pack<DT_RUNTIME, VEC, LOAD_READONLY>(bdt, reinterpret_cast<const char *>(p.bias),
                                                                      pack, p.row_len, p.bias_stride), b);
#pragma unroll
    for (int e = 0; e < PACK_ELEMENTS; ++e) v[e] += b[e];
  }
}

__device__ __forceinline__ float sum_of_squares(const float v[PACK_ELEMENTS]) {
  float s = 0.0f;
#pragma unroll
  for (int e = 0; e < PACK_ELEMENTS; ++e) s = fmaf(v[e], v[e], s);
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

/* Register path: the whole row lives in registers (CHUNKS packs per thread) between the reduction
 * and the write. x, residual and residual_out share the dtype XDT, so h is held in that format. */
template <int XDT, int YDT, int CHUNKS, bool VEC>
__device__ __forceinline__ void rmsnorm_registers(const kf_norm_params &p) {
  const int64_t row = (int64_t)blockIdx.x * blockDim.y + threadIdx.y;
  const bool row_valid = row < p.rows;
  const int packs = (p.row_len + PACK_ELEMENTS - 1) / PACK_ELEMENTS;
  const bool has_residual = (p.flags & KF_NORM_HAS_RESIDUAL) != 0;
  const row_pointers r = row_start(p, row, XDT, XDT, XDT, YDT);

  /* All loads first: no store sits between them, so all 2 * CHUNKS are in flight together. */
  raw_pack<XDT> h[CHUNKS], addend[CHUNKS];
#pragma unroll
  for (int k = 0; k < CHUNKS; ++k) {
    const int pk = threadIdx.x + k * blockDim.x;
    const bool present = row_valid && pk < packs;
    h[k] = present ? load_pack<XDT, VEC, LOAD_STREAM>(XDT, r.x, pk, p.row_len, 1) : raw_pack<XDT>{};
    addend[k] = present && has_residual ? load_pack<XDT, VEC, LOAD_STREAM>(XDT, r.residual, pk, p.row_len, 1)
                                        : raw_pack<XDT>{};
  }

  float sumsq = 0.0f;
#pragma unroll
  for (int k = 0; k < CHUNKS; ++k) {
    float v[PACK_ELEMENTS];
    unpack(XDT, h[k], v);
    if (has_residual) {
      float a[PACK_ELEMENTS];
      unpack(XDT, addend[k], a);
#pragma unroll
      for (int e = 0; e < PACK_ELEMENTS; ++e) v[e] += a[e];
      h[k] = pack<XDT>(XDT, v);
      unpack(XDT, h[k], v); /* y normalizes h as stored in residual_out */
      const int pk = threadIdx.x + k * blockDim.x;
      if (row_valid && pk < packs) store_pack<XDT, VEC>(XDT, r.residual_out, pk, p.row_len, h[k]);
    }
    sumsq += sum_of_squares(v); /* absent packs hold zeros */
  }

  const float rstd = rsqrtf(row_sum(sumsq) / (float)p.row_len + p.eps);
  if (!row_valid) return;

#pragma unroll
  for (int k = 0; k < CHUNKS; ++k) {
    const int pk = threadIdx.x + k * blockDim.x;
    if (pk < packs) {
      float v[PACK_ELEMENTS];
      unpack(XDT, h[k], v);
      scale_pack<VEC>(p, pk, rstd, v);
      store_pack<YDT, VEC>(YDT, r.y, pk, p.row_len, pack<YDT>(YDT, v));
    }
  }
}

/* Looping path for rows of any length: pass 1 forms h (storing residual_out), pass 2 re-reads h —
 * from residual_out when there is a residual, so y sees h as rounded there — and writes y. One row
 * per block, LOOP_THREADS threads; each batch loads LOOP_CHUNKS packs per thread before using any. */
template <int XDT, int YDT, bool VEC>
__device__ __forceinline__ void rmsnorm_loop(const kf_norm_params &p) {
  const int xdt = operand_dtype(XDT, p, KF_NORM_DT_SHIFT_X);
  const int rdt = operand_dtype(XDT, p, KF_NORM_DT_SHIFT_RESIDUAL);
  const int odt = operand_dtype(XDT, p, KF_NORM_DT_SHIFT_RESIDUAL_OUT);
  const int ydt = operand_dtype(YDT, p, KF_NORM_DT_SHIFT_Y);
  const int64_t row = blockIdx.x;
  const int packs = (p.row_len + PACK_ELEMENTS - 1) / PACK_ELEMENTS;
  const bool has_residual = (p.flags & KF_NORM_HAS_RESIDUAL) != 0;
  const row_pointers r = row_start(p, row, xdt, rdt, odt, ydt);
  const int batch = LOOP_CHUNKS * LOOP_THREADS;

  float sumsq = 0.0f;
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
      sumsq += sum_of_squares(v);
    }
  }

  const float rstd = rsqrtf(row_sum(sumsq) / (float)p.row_len + p.eps);
  /* Each thread re-reads only the packs it wrote itself: no barrier needed for residual_out. */
  const char *h_row = has_residual ? r.residual_out : r.x;
  const int hdt = has_residual ? odt : xdt;
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
        scale_pack<VEC>(p, pk, rstd, v);
        store_pack<YDT, VEC>(ydt, r.y, pk, p.row_len, pack<YDT>(ydt, v));
      }
    }
  }
}

/* Largest block each register-path chunk count is launched with; it bounds the registers per thread
 * (65536 / threads): CHUNKS = 8 of f32 with a residual holds 128 registers of row data. The host
 * (backend_cuda) mirrors these limits. */
#define MAX_THREADS_C1 1024
#define MAX_THREADS_C2 1024
#define MAX_THREADS_C4 512
#define MAX_THREADS_C8 256

#define KF_REGISTER_KERNEL(xname, XDT, yname, YDT, C, vname, VEC)                                           \
  extern "C" __global__ void __launch_bounds__(MAX_THREADS_C##C)                                         \
      kf_rmsnorm_##xname##_##yname##_c##C##_##vname(const struct kf_norm_params p) {                     \
    rmsnorm_registers<XDT, YDT, C, VEC>(p);                                                               \
  }

#define KF_LOOP_KERNEL(name, XDT, YDT, vname, VEC)                                                           \
  extern "C" __global__ void __launch_bounds__(LOOP_THREADS) kf_rmsnorm_##name##_loop_##vname(           \
      const struct kf_norm_params p) {                                                                    \
    rmsnorm_loop<XDT, YDT, VEC>(p);                                                                       \
  }

#define KF_KERNELS_XY(xname, XDT, yname, YDT)                    \
  KF_REGISTER_KERNEL(xname, XDT, yname, YDT, 1, v, true)         \
  KF_REGISTER_KERNEL(xname, XDT, yname, YDT, 2, v, true)         \
  KF_REGISTER_KERNEL(xname, XDT, yname, YDT, 4, v, true)         \
  KF_REGISTER_KERNEL(xname, XDT, yname, YDT, 8, v, true)         \
  KF_REGISTER_KERNEL(xname, XDT, yname, YDT, 1, s, false)        \
  KF_REGISTER_KERNEL(xname, XDT, yname, YDT, 2, s, false)        \
  KF_REGISTER_KERNEL(xname, XDT, yname, YDT, 4, s, false)        \
  KF_REGISTER_KERNEL(xname, XDT, yname, YDT, 8, s, false)        \
  KF_LOOP_KERNEL(xname##_##yname, XDT, YDT, v, true)             \
  KF_LOOP_KERNEL(xname##_##yname, XDT, YDT, s, false)

#define KF_KERNELS_X(xname, XDT)                   \
  KF_KERNELS_XY(xname, XDT, f32, KF_DT_F32)        \
  KF_KERNELS_XY(xname, XDT, f16, KF_DT_F16)        \
  KF_KERNELS_XY(xname, XDT, bf16, KF_DT_BF16)

KF_KERNELS_X(f32, KF_DT_F32)
KF_KERNELS_X(f16, KF_DT_F16)
KF_KERNELS_X(bf16, KF_DT_BF16)
KF_LOOP_KERNEL(any, DT_RUNTIME, DT_RUNTIME, v, true)
KF_LOOP_KERNEL(any, DT_RUNTIME, DT_RUNTIME, s, false)

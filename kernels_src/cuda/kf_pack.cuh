/* kf_pack.cuh — the memory and conversion helpers every CUDA kernel of kfuse shares: a row is cut into
 * packs of PACK_ELEMENTS elements (16 bytes of f16/bf16, 32 bytes of f32), loaded and stored either
 * with 16-byte accesses (the "VEC" path: the host checked alignment) or element by element with bounds
 * checks (any layout), held in registers in storage format and converted to f32 for arithmetic.
 * Stores round to nearest even. Included by each .cu file of kernels_src/cuda (one translation unit each).
 */
#ifndef KF_CUDA_PACK_CUH_
#define KF_CUDA_PACK_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "kernels_src/common/kf_params.h"

#define PACK_ELEMENTS 8
/* Dtype template argument meaning "read it from params.dtypes at run time". */
#define DT_RUNTIME (-1)
enum load_kind {
  LOAD_COHERENT, /* re-read later from L2, or possibly written by this kernel (in-place operands) */
  LOAD_READONLY, /* never written by the kernel and shared by many rows: the read-only (L1) path */
  LOAD_KEEP,     /* read again soon by the same thread: L1 and L2 evict-last (16-byte path only) */
  LOAD_LAST_USE, /* the second and last read of a LOAD_KEEP line: L1 and L2 evict-first */
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
  if (KIND == LOAD_READONLY) return __ldg(p);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if (KIND == LOAD_KEEP || KIND == LOAD_LAST_USE) {
    /* L2 cache-policy hints (sm_80+). The policy is a pure value (the compiler may share one register
     * among loads); the loads are volatile so that two reads of one address stay two reads. */
    uint64_t policy;
    uint4 r;
    if (KIND == LOAD_KEEP) {
      asm("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(policy));
      asm volatile("ld.global.L1::evict_last.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
          : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
          : "l"(p), "l"(policy));
    } else {
      asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
      asm volatile("ld.global.L1::evict_first.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
          : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
          : "l"(p), "l"(policy));
    }
    return r;
  }
#endif
  return *p;
}

template <int KIND>
__device__ __forceinline__ uint32_t load_element_bits(int dt, const char *base, int64_t index) {
  if (dt == KF_DT_F32) {
    const unsigned int *p = reinterpret_cast<const unsigned int *>(base) + index;
    if (KIND == LOAD_READONLY) return __ldg(p);
    return *p;
  }
  const unsigned short *p = reinterpret_cast<const unsigned short *>(base) + index;
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

__device__ __forceinline__ float warp_max(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

/* Sum (or maximum) over the blockDim.x threads of one row, blockDim.y rows per block: shuffles within
 * each warp, then, for rows wider than a warp, one exchange of the per-warp results through `scratch`
 * (__shared__ float[32]: a block has at most 32 warps). Every thread of the block must call it. Two
 * calls may share one scratch array only with a barrier between them. */
template <bool MAX>
__device__ __forceinline__ float row_reduce(float value, float *scratch) {
  value = MAX ? warp_max(value) : warp_sum(value);
  const int warps_per_row = blockDim.x / 32;
  if (warps_per_row == 1) return value;
  const int lane = threadIdx.x % 32;
  const int first_warp = threadIdx.y * warps_per_row;
  if (lane == 0) scratch[first_warp + threadIdx.x / 32] = value;
  __syncthreads();
  const float other = lane < warps_per_row ? scratch[first_warp + lane] : (MAX ? __int_as_float(0xff800000u) : 0.0f);
  return MAX ? warp_max(other) : warp_sum(other);
}

#endif /* KF_CUDA_PACK_CUH_ */

/* rope.cu — rotary position embedding on Q and K in one launch, for the CUDA backend.
 *
 * For pair i of a head (i < rotary_dim / 2), with half = rotary_dim / 2:
 *   angle = position * position_scale * theta^(-2i / rotary_dim)
 *   (inv_freq = exp2(-(2i / rotary_dim) * log2(theta)), each step rounded to f32; the angle in f32)
 *   NeoX:  (x[i], x[i + half])  -> (a cos - b sin, a sin + b cos)
 *   GPT-J: (x[2i], x[2i + 1])   -> the same rotation
 * Elements from rotary_dim to head_dim pass through (copied only when out of place).
 *
 * Work split. A block takes tokens_per_block consecutive tokens (see rope_tokens_per_block). It first
 * fills a shared table of the cos and sin of every (token, pair) it owns — one accurate sincosf per
 * pair, reused by every Q and K head of the token (40 heads in Llama-style GQA), so the
 * transcendental cost is amortized — then rotates. For the rotation threadIdx.x is a "unit" within a
 * head and threadIdx.y walks the (token, head) rows of the block: a row is one head of one token, of
 * Q (head < q_heads) or K. Units:
 *   vector NeoX   8 pairs: 16-byte packs at element 8u (first half) and half + 8u (second half)
 *   vector GPT-J  4 pairs: the 16-byte pack at element 8u (8 adjacent elements)
 *   scalar        1 pair (any layout or dtype)
 * followed, out of place, by pass-through units (one pack, or one element in the scalar kernel).
 * Each thread loads ROWS_IN_FLIGHT rows' units before it stores any, so several 16-byte loads per
 * thread are in flight.
 *
 * In place (q_out == q): every element is read and written by the same thread, loads before stores.
 * q and k are read through the coherent path for that reason.
 *
 * Entry points (extern "C", struct kf_rope_params by value, dynamic shared memory of
 * tokens_per_block * rotary_dim floats):
 *   kf_rope_<dt>_<neox|gptj>_v   q, k, q_out, k_out all of dtype <dt>; 16-byte aligned heads; NeoX needs
 *                                half % 8 == 0, GPT-J rotary_dim % 8 == 0; (head_dim - rotary_dim) % 8
 *                                == 0 when out of place
 *   kf_rope_any                  any dtypes, layouts and sizes; style from params.flags
 */
#include "kernels_src/cuda/kf_pack.cuh"

/* Rows (one head of one token) each thread loads before its first store. */
#define ROWS_IN_FLIGHT 4

/* Tokens per block: as many as give each threadIdx.y about ROWS_IN_FLIGHT rows (one batch of loads).
 * The host (backend_cuda/cuda_rope.c) computes the same value to size the grid and the table. */
__device__ __forceinline__ int rope_tokens_per_block(const kf_rope_params &p) {
  const int heads = p.q_heads + p.k_heads;
  const int t = ROWS_IN_FLIGHT * (int)blockDim.y / heads;
  return t > 0 ? t : 1;
}

/* Fills table[t * rotary_dim + i] = cos, table[t * rotary_dim + half + i] = sin for the block's tokens.
 * Out-of-range positions with a table give NaN (the op's contract). Ends with a barrier. */
__device__ __forceinline__ void fill_cos_sin(const kf_rope_params &p, int first_token, int tokens_per_block,
                                             float *table) {
  const int half = p.rotary_dim / 2;
  const int threads = blockDim.x * blockDim.y;
  const int tid = threadIdx.y * blockDim.x + threadIdx.x;
  /* log2(theta) and exp2 below are rounded correctly (through double) so that every backend, and the
   * reference, gets the same f32 inv_freq: at angles of 1e5 radians one ulp of inv_freq moves the angle
   * by 0.01 radians. The f32 steps between them are the op's definition. */
  const float log2_theta = (float)log2((double)p.theta);
  const int *positions = reinterpret_cast<const int *>(p.positions);
  const float *cos_sin = reinterpret_cast<const float *>(p.cos_sin);
  for (int idx = tid; idx < tokens_per_block * half; idx += threads) {
    const int t = idx / half, i = idx - t * half;
    const int token = first_token + t;
    if (token >= p.tokens) break; /* idx grows with t */
    const int position = __ldg(positions + (int64_t)token * p.positions_stride);
    float c, s;
    if (p.flags & KF_ROPE_HAS_COS_SIN) {
      if (position >= 0 && position < p.cos_sin_rows) {
        const float *row = cos_sin + (int64_t)position * p.cos_sin_row_stride;
        c = __ldg(row + i);
        s = __ldg(row + half + i);
      } else {
        c = s = __int_as_float(0x7fc00000); /* NaN */
      }
    } else {
      const float inv_freq = (float)exp2((double)(-((float)(2 * i) / (float)p.rotary_dim) * log2_theta));
      const float angle = (float)position * p.position_scale * inv_freq;
      sincosf(angle, &s, &c); /* accurate: angles reach 1e5 radians in long contexts */
    }
    table[t * p.rotary_dim + i] = c;
    table[t * p.rotary_dim + half + i] = s;
  }
  __syncthreads();
}

/* Where one (token, head) row of the input and output starts. `row` counts (token, head) rows of the
 * block, heads fastest. */
struct rope_row {
  const char *in;
  char *out;
  int token; /* within the block */
  bool valid;
};

__device__ __forceinline__ rope_row locate_row(const kf_rope_params &p, int first_token, int tokens_per_block,
                                               int row, int in_q, int in_k, int out_q, int out_k) {
  const int heads = p.q_heads + p.k_heads;
  rope_row r;
  r.token = row / heads;
  const int head = row - r.token * heads;
  const int token = first_token + r.token;
  r.valid = r.token < tokens_per_block && token < p.tokens;
  if (head < p.q_heads) {
    r.in = reinterpret_cast<const char *>(p.q) +
           ((int64_t)token * p.q_token_stride + (int64_t)head * p.q_head_stride) * in_q;
    r.out = reinterpret_cast<char *>(p.q_out) +
            ((int64_t)token * p.q_out_token_stride + (int64_t)head * p.q_out_head_stride) * out_q;
  } else {
    const int kh = head - p.q_heads;
    r.in = reinterpret_cast<const char *>(p.k) +
           ((int64_t)token * p.k_token_stride + (int64_t)kh * p.k_head_stride) * in_k;
    r.out = reinterpret_cast<char *>(p.k_out) +
            ((int64_t)token * p.k_out_token_stride + (int64_t)kh * p.k_out_head_stride) * out_k;
  }
  return r;
}

__device__ __forceinline__ void rotate(float &a, float &b, float c, float s) {
  const float x = a, y = b;
  a = x * c - y * s;
  b = x * s + y * c;
}

/* Vector kernel: q, k, q_out, k_out all of dtype DT; blockDim.x = units per head (rotary units, then
 * pass-through units when out of place). */
template <int DT, bool GPTJ>
__device__ __forceinline__ void rope_vector(const kf_rope_params &p) {
  extern __shared__ float table[];
  const int tokens_per_block = rope_tokens_per_block(p);
  const int first_token = blockIdx.x * tokens_per_block;
  fill_cos_sin(p, first_token, tokens_per_block, table);

  const int size = element_size(DT);
  const int half = p.rotary_dim / 2;
  const int unit = threadIdx.x;
  const int rotary_units = GPTJ ? p.rotary_dim / PACK_ELEMENTS : half / PACK_ELEMENTS;
  const bool rotary = unit < rotary_units;
  /* Element offsets of this unit's first (and, NeoX, second) pack within a head. */
  const int first = rotary ? unit * PACK_ELEMENTS : p.rotary_dim + (unit - rotary_units) * PACK_ELEMENTS;
  const int second = half + unit * PACK_ELEMENTS;
  const bool paired = !GPTJ && rotary;
  const int rows = tokens_per_block * (p.q_heads + p.k_heads);

  for (int base = threadIdx.y; base < rows; base += ROWS_IN_FLIGHT * blockDim.y) {
    rope_row r[ROWS_IN_FLIGHT];
    raw_pack<DT> a[ROWS_IN_FLIGHT], b[ROWS_IN_FLIGHT];
#pragma unroll
    for (int j = 0; j < ROWS_IN_FLIGHT; ++j) {
      r[j] = locate_row(p, first_token, tokens_per_block, base + j * blockDim.y, size, size, size, size);
      r[j].valid = r[j].valid && base + j * blockDim.y < rows;
      a[j] = r[j].valid ? load_pack<DT, true, LOAD_COHERENT>(DT, r[j].in + first * size, 0, 0, 1) : raw_pack<DT>{};
      b[j] = r[j].valid && paired ? load_pack<DT, true, LOAD_COHERENT>(DT, r[j].in + second * size, 0, 0, 1)
                                  : raw_pack<DT>{};
    }
#pragma unroll
    for (int j = 0; j < ROWS_IN_FLIGHT; ++j) {
      if (!r[j].valid) continue;
      if (rotary) {
        const float *cos_row = table + r[j].token * p.rotary_dim;
        const float *sin_row = cos_row + half;
        float x[PACK_ELEMENTS];
        unpack(DT, a[j], x);
        if (GPTJ) {
          const int pair = unit * (PACK_ELEMENTS / 2);
#pragma unroll
          for (int e = 0; e < PACK_ELEMENTS / 2; ++e)
            rotate(x[2 * e], x[2 * e + 1], cos_row[pair + e], sin_row[pair + e]);
        } else {
          float y[PACK_ELEMENTS];
          unpack(DT, b[j], y);
          const int pair = unit * PACK_ELEMENTS;
#pragma unroll
          for (int e = 0; e < PACK_ELEMENTS; ++e) rotate(x[e], y[e], cos_row[pair + e], sin_row[pair + e]);
          store_pack<DT, true>(DT, r[j].out + second * size, 0, 0, pack<DT>(DT, y));
        }
        store_pack<DT, true>(DT, r[j].out + first * size, 0, 0, pack<DT>(DT, x));
      } else {
        store_pack<DT, true>(DT, r[j].out + first * size, 0, 0, a[j]);
      }
    }
  }
}

__device__ __forceinline__ float load_scalar(int dt, const char *base, int index) {
  const uint32_t bits = load_element_bits<LOAD_COHERENT>(dt, base, index);
  if (dt == KF_DT_F32) return __uint_as_float(bits);
  if (dt == KF_DT_BF16) return __uint_as_float(bits << 16);
  return __half2float(__ushort_as_half((unsigned short)bits));
}

__device__ __forceinline__ void store_scalar(int dt, char *base, int index, float value) {
  if (dt == KF_DT_F32)
    reinterpret_cast<float *>(base)[index] = value;
  else if (dt == KF_DT_BF16)
    reinterpret_cast<__nv_bfloat16 *>(base)[index] = __float2bfloat16_rn(value);
  else
    reinterpret_cast<__half *>(base)[index] = __float2half_rn(value);
}

/* Scalar kernel: any dtypes, layouts and sizes; a unit is one pair, then (out of place) one
 * pass-through element. threadIdx.x strides over the units of a head. */
__device__ __forceinline__ void rope_scalar(const kf_rope_params &p) {
  extern __shared__ float table[];
  const int tokens_per_block = rope_tokens_per_block(p);
  const int first_token = blockIdx.x * tokens_per_block;
  fill_cos_sin(p, first_token, tokens_per_block, table);

  const int qdt = (p.dtypes >> KF_ROPE_DT_SHIFT_Q) & 15, kdt = (p.dtypes >> KF_ROPE_DT_SHIFT_K) & 15;
  const int qodt = (p.dtypes >> KF_ROPE_DT_SHIFT_Q_OUT) & 15, kodt = (p.dtypes >> KF_ROPE_DT_SHIFT_K_OUT) & 15;
  const bool gptj = (p.flags & KF_ROPE_GPTJ_STYLE) != 0;
  const bool in_place = p.q_out == p.q && p.k_out == p.k;
  const int half = p.rotary_dim / 2;
  const int units = half + (in_place ? 0 : p.head_dim - p.rotary_dim);
  const int rows = tokens_per_block * (p.q_heads + p.k_heads);
  for (int row = threadIdx.y; row < rows; row += blockDim.y) {
    const rope_row r = locate_row(p, first_token, tokens_per_block, row, element_size(qdt), element_size(kdt),
                                  element_size(qodt), element_size(kodt));
    if (!r.valid) continue;
    const bool is_q = row % (p.q_heads + p.k_heads) < p.q_heads;
    const int idt = is_q ? qdt : kdt, odt = is_q ? qodt : kodt;
    const float *cos_row = table + r.token * p.rotary_dim;
    for (int u = threadIdx.x; u < units; u += blockDim.x) {
      if (u < half) {
        const int i0 = gptj ? 2 * u : u, i1 = gptj ? 2 * u + 1 : u + half;
        float a = load_scalar(idt, r.in, i0), b = load_scalar(idt, r.in, i1);
        rotate(a, b, cos_row[u], cos_row[half + u]);
        store_scalar(odt, r.out, i0, a);
        store_scalar(odt, r.out, i1, b);
      } else {
        const int i = p.rotary_dim + (u - half);
        store_scalar(odt, r.out, i, load_scalar(idt, r.in, i));
      }
    }
  }
}

#define KF_ROPE_VECTOR_KERNEL(dname, DT, sname, GPTJ)                                                  \
  extern "C" __global__ void __launch_bounds__(256) kf_rope_##dname##_##sname##_v(const struct kf_rope_params p) { \
    rope_vector<DT, GPTJ>(p);                                                                           \
  }

KF_ROPE_VECTOR_KERNEL(f32, KF_DT_F32, neox, false)
KF_ROPE_VECTOR_KERNEL(f32, KF_DT_F32, gptj, true)
KF_ROPE_VECTOR_KERNEL(f16, KF_DT_F16, neox, false)
KF_ROPE_VECTOR_KERNEL(f16, KF_DT_F16, gptj, true)
KF_ROPE_VECTOR_KERNEL(bf16, KF_DT_BF16, neox, false)
KF_ROPE_VECTOR_KERNEL(bf16, KF_DT_BF16, gptj, true)

extern "C" __global__ void __launch_bounds__(256) kf_rope_any(const struct kf_rope_params p) { rope_scalar(p); }

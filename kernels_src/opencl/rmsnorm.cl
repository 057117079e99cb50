/* rmsnorm.cl — RMSNorm with optional fused residual, for the OpenCL backend.
 *
 *   h = x (+ residual);  residual_out = h;  y = h / sqrt(mean(h²) + eps) * weight (+ bias)
 *
 * The host prepends kernels_src/common/kf_params.h to this text (nothing is #included at run time) and
 * compiles one program per operand-dtype combination, so every load and store below is specialized:
 *   KF_X_DT, KF_Y_DT                       KF_DT_* of x and y
 *   KF_HAS_RESIDUAL, KF_R_DT, KF_RO_DT     fused residual (residual and residual_out dtypes)
 *   KF_HAS_WEIGHT, KF_W_DT, KF_HAS_BIAS, KF_B_DT
 *   KF_VEC                                 1, or 8 when every row start, row stride and row_len is a
 *                                          multiple of 8 elements and weight/bias are contiguous: each
 *                                          work-item then moves 8 elements per access (16 bytes for
 *                                          16-bit types, the widest load GPUs issue; 32 bytes for f32).
 *   KF_SUBGROUPS                           1 when the device has sub_group_reduce_add
 *   KF_NV_PTX                              1 on NVIDIA: warp reductions through inline PTX shuffles,
 *                                          bf16 stores through cvt.rn.bf16x2.f32
 *
 * Work decomposition: a row is handled by `row_threads` work-items (a power of two chosen by the
 * host); a work-group holds get_local_size(0) / row_threads rows, so short rows still fill a group.
 * Vector j of a row (elements j*KF_VEC ...) belongs to work-item j % row_threads, so consecutive
 * work-items touch consecutive addresses (coalesced).
 *
 * Kernels:
 *   kf_rmsnorm_regs<N>  each work-item holds its N vectors of h in registers between the two passes
 *                       (bf16 as loaded, kf_held_2): x is read once (for rows up to row_threads * N *
 *                       KF_VEC elements). All of an item's loads are issued before their first use.
 *   kf_rmsnorm_stream   any row length: pass 1 sums squares (and writes residual_out), pass 2 re-reads
 *                       h from residual_out (or x), mostly from cache.
 *
 * Residual rounding: h is stored to residual_out in its dtype and y normalizes h *as rounded*, so y is
 * exactly the RMSNorm of what residual_out holds. residual_out may alias x or residual exactly: every
 * element is read by the same work-item before it writes it.
 *
 * Buffer arguments are the cl_mem of each operand; params.x etc. hold element offsets into them.
 * Absent operands are bound to any valid buffer and never touched (the KF_HAS_* switches).
 */

#if KF_SUBGROUPS && defined(cl_khr_subgroups)
#pragma OPENCL EXTENSION cl_khr_subgroups : enable
#endif
#if KF_SUBGROUPS && (defined(cl_khr_subgroups) || defined(__opencl_c_subgroups))
#define KF_USE_SUBGROUPS 1
#else
#define KF_USE_SUBGROUPS 0
#endif

/* Helpers are instantiated for every dtype; each program uses a few ("unused" keeps build logs quiet). */
#define KF_HELPER static inline __attribute__((unused))

#define KF_CAT_(a, b) a##b
#define KF_CAT(a, b) KF_CAT_(a, b)

/* Storage type of each dtype in global memory. f16 is `half` (pointers to half need no cl_khr_fp16;
 * vload_half / vstore_half convert), bf16 is the raw ushort bit pattern. */
#define KF_STORAGE_0 float
#define KF_STORAGE_1 half
#define KF_STORAGE_2 ushort
#define KF_STORAGE(dt) KF_CAT(KF_STORAGE_, dt)

#if KF_VEC == 1
/* Scalar access: element i of p. */
typedef float kf_vec;
typedef uint kf_uvec;
#define KF_AS_UVEC as_uint
#define KF_AS_VEC as_float
#elif KF_VEC == 8
/* 8-wide access: elements i .. i+7 of p, where i is a multiple of 8 and the row start is 8-aligned (the
 * host checks), so the casts to 16/32-byte vector types are aligned. */
typedef float8 kf_vec;
typedef uint8 kf_uvec;
#define KF_AS_UVEC as_uint8
#define KF_AS_VEC as_float8
#else
#error "KF_VEC must be 1 or 8"
#endif

/* ---- rounding to a storage dtype, in registers (the value as it will read back after the store) ----
 * Written with bit and vector operations so it works for kf_vec of either width and never goes through
 * private memory. */

/* bf16, round to nearest even: the f32 bits with the low 16 cleared. NaN stays a quiet NaN instead of
 * rounding up into infinity. */
KF_HELPER kf_uvec kf_bf16_rounded_bits(kf_vec v) {
  kf_uvec u = KF_AS_UVEC(v);
  kf_uvec rounded = (u + (kf_uvec)0x7fffu + ((u >> 16) & (kf_uvec)1u)) & (kf_uvec)0xffff0000u;
  kf_uvec quiet_nan = (u | (kf_uvec)0x00400000u) & (kf_uvec)0xffff0000u;
  return select(rounded, quiet_nan, isnan(v));
}

/* f16, round to nearest even (what vstore_half_rte stores). Normal range: round the f32 mantissa to
 * 10 bits; below 2^-14 (f16 subnormals) the step is 2^-24; from 65520 on it overflows to infinity. */
KF_HELPER kf_vec kf_f16_round(kf_vec v) {
  kf_uvec u = KF_AS_UVEC(v);
  kf_vec normal = KF_AS_VEC((u + (kf_uvec)0xfffu + ((u >> 13) & (kf_uvec)1u)) & (kf_uvec)0xffffe000u);
  kf_vec subnormal = rint(v * 0x1p24f) * 0x1p-24f;
  kf_vec magnitude = fabs(v);
  kf_vec r = select(normal, subnormal, magnitude < (kf_vec)0x1p-14f);
  r = select(r, copysign((kf_vec)INFINITY, v), magnitude >= (kf_vec)65520.0f);
  return select(r, v, isnan(v));
}

/* Two f32 -> bf16x2 (lo in the low half), round to nearest even. NVIDIA: one cvt (sm_80+) instead of
 * the ~8 integer operations per element of kf_bf16_rounded_bits; a NaN becomes the canonical quiet NaN
 * there. */
KF_HELPER uint kf_bf16x2_rne(float lo, float hi) {
#if KF_NV_PTX
  uint packed;
  asm("{\n\t.reg .f32 lo_, hi_;\n\t.reg .b32 packed_;\n\tmov.b32 lo_, %1;\n\tmov.b32 hi_, %2;\n\t"
      "cvt.rn.bf16x2.f32 packed_, hi_, lo_;\n\tmov.b32 %0, packed_;\n\t}"
      : "=r"(packed)
      : "r"(as_uint(lo)), "r"(as_uint(hi)));
  return packed;
#else
  uint2 bits = as_uint2((float2)(lo, hi));
  uint2 rounded = (bits + (uint2)0x7fffu + ((bits >> 16) & (uint2)1u)) & (uint2)0xffff0000u;
  uint2 quiet_nan = (bits | (uint2)0x00400000u) & (uint2)0xffff0000u;
  rounded = select(rounded, quiet_nan, isnan((float2)(lo, hi)));
  return (rounded.x >> 16) | rounded.y;
#endif
}

/* ---- loads and stores (stores round to nearest even) ----
 * kf_held_<dt> is the register form of a vector between the passes of the register kernels: 8 bf16
 * are held as loaded, 16 bytes in 4 registers (8 floats would take 8); f32 and f16 (which has no
 * arithmetic without cl_khr_fp16) as floats. kf_value_<dt> gives the floats, kf_held_round_<dt> the
 * held form of a value rounded to dt. */
#if KF_VEC == 1
typedef float kf_held_0;
typedef float kf_held_1;
typedef float kf_held_2;
KF_HELPER kf_held_0 kf_held_load_0(const global float *p, long i) { return p[i]; }
KF_HELPER kf_held_1 kf_held_load_1(const global half *p, long i) { return vload_half(i, p); }
KF_HELPER kf_held_2 kf_held_load_2(const global ushort *p, long i) { return as_float((uint)p[i] << 16); }
KF_HELPER kf_vec kf_value_0(kf_held_0 h) { return h; }
KF_HELPER kf_vec kf_value_1(kf_held_1 h) { return h; }
KF_HELPER kf_vec kf_value_2(kf_held_2 h) { return h; }
KF_HELPER kf_held_2 kf_held_round_2(kf_vec v) { return KF_AS_VEC(kf_bf16_rounded_bits(v)); }

KF_HELPER void kf_store_0(global float *p, long i, kf_vec v) { p[i] = v; }
KF_HELPER void kf_store_1(global half *p, long i, kf_vec v) { vstore_half_rte(v, i, p); }
KF_HELPER void kf_store_2(global ushort *p, long i, kf_vec v) { p[i] = (ushort)(kf_bf16_rounded_bits(v) >> 16); }
KF_HELPER void kf_held_store_2(global ushort *p, long i, kf_held_2 h) { p[i] = (ushort)(as_uint(h) >> 16); }

KF_HELPER float kf_vec_sum(kf_vec v) { return v; }
#else
typedef float8 kf_held_0;
typedef float8 kf_held_1;
typedef uint4 kf_held_2;
KF_HELPER kf_held_0 kf_held_load_0(const global float *p, long i) { return *(const global float8 *)(p + i); }
KF_HELPER kf_held_1 kf_held_load_1(const global half *p, long i) { return vloada_half8(0, p + i); }
KF_HELPER kf_held_2 kf_held_load_2(const global ushort *p, long i) { return *(const global uint4 *)(p + i); }
KF_HELPER kf_vec kf_value_0(kf_held_0 h) { return h; }
KF_HELPER kf_vec kf_value_1(kf_held_1 h) { return h; }
KF_HELPER kf_vec kf_value_2(kf_held_2 h) {
  /* Little-endian: the even element sits in the low half of each 32-bit word. */
  float4 even = as_float4(h << 16);
  float4 odd = as_float4(h & (uint4)0xffff0000u);
  return (float8)(even.s0, odd.s0, even.s1, odd.s1, even.s2, odd.s2, even.s3, odd.s3);
}
KF_HELPER kf_held_2 kf_held_round_2(kf_vec v) {
  return (uint4)(kf_bf16x2_rne(v.s0, v.s1), kf_bf16x2_rne(v.s2, v.s3), kf_bf16x2_rne(v.s4, v.s5),
                 kf_bf16x2_rne(v.s6, v.s7));
}

KF_HELPER void kf_store_0(global float *p, long i, kf_vec v) { *(global float8 *)(p + i) = v; }
KF_HELPER void kf_store_1(global half *p, long i, kf_vec v) { vstorea_half8_rte(v, 0, p + i); }
KF_HELPER void kf_store_2(global ushort *p, long i, kf_vec v) { *(global uint4 *)(p + i) = kf_held_round_2(v); }
KF_HELPER void kf_held_store_2(global ushort *p, long i, kf_held_2 h) { *(global uint4 *)(p + i) = h; }

KF_HELPER float kf_vec_sum(kf_vec v) {
  float4 s = v.lo + v.hi;
  return (s.s0 + s.s1) + (s.s2 + s.s3);
}
#endif
/* f32 and f16 are held as floats: rounding to f16 is kf_f16_round, a held store the plain store. */
KF_HELPER kf_held_0 kf_held_round_0(kf_vec v) { return v; }
KF_HELPER kf_held_1 kf_held_round_1(kf_vec v) { return kf_f16_round(v); }
KF_HELPER void kf_held_store_0(global float *p, long i, kf_held_0 h) { kf_store_0(p, i, h); }
KF_HELPER void kf_held_store_1(global half *p, long i, kf_held_1 h) { kf_store_1(p, i, h); }

#define KF_HELD(dt) KF_CAT(kf_held_, dt)
#define KF_HELD_LOAD(dt) KF_CAT(kf_held_load_, dt)
#define KF_HELD_ROUND(dt) KF_CAT(kf_held_round_, dt)
#define KF_HELD_STORE(dt) KF_CAT(kf_held_store_, dt)
#define KF_VALUE(dt) KF_CAT(kf_value_, dt)

/* Plain loads: the held form converted. */
KF_HELPER kf_vec kf_load_0(const global float *p, long i) { return kf_value_0(kf_held_load_0(p, i)); }
KF_HELPER kf_vec kf_load_1(const global half *p, long i) { return kf_value_1(kf_held_load_1(p, i)); }
KF_HELPER kf_vec kf_load_2(const global ushort *p, long i) { return kf_value_2(kf_held_load_2(p, i)); }

#define KF_LOAD(dt) KF_CAT(kf_load_, dt)
#define KF_STORE(dt) KF_CAT(kf_store_, dt)

#define X_T KF_STORAGE(KF_X_DT)
#define Y_T KF_STORAGE(KF_Y_DT)
#if KF_HAS_RESIDUAL
#define R_T KF_STORAGE(KF_R_DT)
#define RO_T KF_STORAGE(KF_RO_DT)
#else
#define R_T float
#define RO_T float
#endif
#if KF_HAS_WEIGHT
#define W_T KF_STORAGE(KF_W_DT)
#else
#define W_T float
#endif
#if KF_HAS_BIAS
#define B_T KF_STORAGE(KF_B_DT)
#else
#define B_T float
#endif

/* Index of the weight / bias entry of element `col` (with KF_VEC == 8 they are contiguous). */
#if KF_VEC == 1
#define KF_PARAM_INDEX(col, stride) ((col) * (stride))
#else
#define KF_PARAM_INDEX(col, stride) (col)
#endif

/* Sum of `value` over the row_threads work-items of each row. Every work-item of the group must call
 * it (it contains barriers). scratch holds get_local_size(0) floats. */
KF_HELPER float kf_row_sum(float value, local float *scratch, uint lid, uint lane, uint row_threads) {
#if KF_NV_PTX
  /* NVIDIA: butterfly shuffles inside each warp of 32 consecutive work-items (segments of row_threads
   * stay separate), then one value per warp through local memory; the group size is a multiple of 32. */
  for (uint mask = min(row_threads, 32u) >> 1; mask > 0; mask >>= 1) {
    uint other;
    asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=r"(other) : "r"(as_uint(value)), "r"(mask));
    value += as_float(other);
  }
  if (row_threads <= 32) return value;
  if ((lid & 31u) == 0) scratch[lid >> 5] = value;
  barrier(CLK_LOCAL_MEM_FENCE);
  const uint first_warp = (lid - lane) >> 5;
  float total = 0.0f;
  for (uint w = 0; w < row_threads >> 5; ++w) total += scratch[first_warp + w];
  barrier(CLK_LOCAL_MEM_FENCE); /* scratch is reused by the next row */
  return total;
#else
#if KF_USE_SUBGROUPS
  /* One row per group: whatever the work-item-to-sub-group mapping, all sub-groups belong to it. */
  if (row_threads == get_local_size(0)) {
    float partial = sub_group_reduce_add(value);
    if (get_sub_group_local_id() == 0) scratch[get_sub_group_id()] = partial;
    barrier(CLK_LOCAL_MEM_FENCE);
    float total = 0.0f;
    for (uint s = 0; s < get_num_sub_groups(); ++s) total += scratch[s];
    barrier(CLK_LOCAL_MEM_FENCE); /* scratch is reused by the next row */
    return total;
  }
#endif
  scratch[lid] = value;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint half_width = row_threads >> 1; half_width > 0; half_width >>= 1) {
    if (lane < half_width) scratch[lid] += scratch[lid + half_width];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  float total = scratch[lid - lane];
  barrier(CLK_LOCAL_MEM_FENCE); /* scratch is reused by the next row */
  return total;
#endif
}

/* The dtype h is held in: residual_out's when the residual is fused, else x's. */
#if KF_HAS_RESIDUAL
#define KF_H_DT KF_RO_DT
#else
#define KF_H_DT KF_X_DT
#endif

/* Register kernels, fused residual: h = x + residual rounded to residual_out's dtype, held; and its
 * store. Without a residual these are never called (but must compile: h is then held as x). */
#if KF_HAS_RESIDUAL
KF_HELPER KF_HELD(KF_H_DT) kf_residual_sum(KF_HELD(KF_X_DT) x, KF_HELD(KF_R_DT) r) {
  return KF_HELD_ROUND(KF_RO_DT)(KF_VALUE(KF_X_DT)(x) + KF_VALUE(KF_R_DT)(r));
}
KF_HELPER void kf_store_residual_out(global RO_T *row, long element, KF_HELD(KF_H_DT) h) {
  KF_HELD_STORE(KF_RO_DT)(row, element, h);
}
#else
KF_HELPER KF_HELD(KF_H_DT) kf_residual_sum(KF_HELD(KF_X_DT) x, KF_HELD(KF_R_DT) r) { return x; }
KF_HELPER void kf_store_residual_out(global RO_T *row, long element, KF_HELD(KF_H_DT) h) {}
#endif

/* Register kernels without a residual: x, held (h is x). With a residual it is never called. */
KF_HELPER KF_HELD(KF_H_DT) kf_held_load_x(const global X_T *x_row, long element) {
#if KF_HAS_RESIDUAL
  return KF_HELD_ROUND(KF_H_DT)(KF_LOAD(KF_X_DT)(x_row, element));
#else
  return KF_HELD_LOAD(KF_X_DT)(x_row, element);
#endif
}

/* Streaming kernel: vector j of h for this row, x (+ residual, rounded to and stored in residual_out). */
KF_HELPER kf_vec kf_load_h(const global X_T *x_row, const global R_T *residual_row, global RO_T *residual_out_row,
                        long element) {
  kf_vec h = KF_LOAD(KF_X_DT)(x_row, element);
#if KF_HAS_RESIDUAL
  KF_HELD(KF_RO_DT) rounded = KF_HELD_ROUND(KF_RO_DT)(h + KF_LOAD(KF_R_DT)(residual_row, element));
  KF_HELD_STORE(KF_RO_DT)(residual_out_row, element, rounded);
  h = KF_VALUE(KF_RO_DT)(rounded);
#endif
  return h;
}

/* Streaming kernel: y = h * inv_rms * weight + bias for vector j. */
KF_HELPER void kf_store_y(global Y_T *y_row, const global W_T *weight, int weight_stride, const global B_T *bias,
                       int bias_stride, long element, kf_vec h, float inv_rms) {
  kf_vec out = h * inv_rms;
#if KF_HAS_WEIGHT
  out *= KF_LOAD(KF_W_DT)(weight, KF_PARAM_INDEX(element, weight_stride));
#endif
#if KF_HAS_BIAS
  out += KF_LOAD(KF_B_DT)(bias, KF_PARAM_INDEX(element, bias_stride));
#endif
  KF_STORE(KF_Y_DT)(y_row, element, out);
}

/* The row pointers of one row, each offset to that row's element 0. Inactive work-items (past the
 * last row) point at row 0 and never access memory. */
#define KF_ROW_POINTERS                                                                                 \
  const long row_index = active ? row : 0;                                                               \
  const global X_T *x_row = x + p.x + row_index * p.x_row_stride;                                        \
  global Y_T *y_row = y + p.y + row_index * p.y_row_stride;                                              \
  const global R_T *residual_row = residual;                                                             \
  global RO_T *residual_out_row = residual_out;                                                          \
  if (KF_HAS_RESIDUAL) {                                                                                 \
    residual_row = residual + p.residual + row_index * p.residual_row_stride;                            \
    residual_out_row = residual_out + p.residual_out + row_index * p.residual_out_row_stride;            \
  }

#define KF_KERNEL_ARGS                                                                                  \
  struct kf_norm_params p, const global X_T *x, const global R_T *residual, global RO_T *residual_out,   \
      const global W_T *weight_base, const global B_T *bias_base, global Y_T *y, uint row_threads,       \
      local float *scratch

/* Full unrolling keeps h[] in registers: an indexed private array left in a loop lives in (slow)
 * private memory. Every OpenCL C compiler we target (clang-based: PoCL, NVIDIA, AMD, Intel) honors it. */
#define KF_UNROLL _Pragma("unroll")

/* Chunk c of this work-item: vector j of the row, and the vector its loads read. A chunk past the
 * row's end re-reads the work-item's first vector (its own, so aliasing stays safe) and is never used:
 * the loads then need no branch, and the compiler issues all of a row's loads before the first use
 * (with a branch per chunk, each load waited for the previous one's use: one 16-byte load in flight
 * per work-item, measured at 57% of copy for bf16 on the H200). */
#define KF_CHUNK_J(c) (lane + (long)(c) * row_threads)
#define KF_CHUNK_LOAD_J(c) (KF_CHUNK_J(c) < vecs ? KF_CHUNK_J(c) : (long)lane)

/* Whether the register kernels load all of an item's weight (bias) vectors before the first y: where
 * they are held compactly (bf16: 4 registers per 8 elements; width 1: one). 8-wide f32 / f16 are held
 * as 8 floats, and prefetching them cost registers, hence work-groups per SM: measured on the H200,
 * f32 16384x8192 fell from 87% to 68% of copy. Those are loaded per vector, after the y before. */
#define KF_PREFETCH(dt) (KF_VEC == 1 || (dt) == KF_DT_BF16)

/* Register path, CHUNKS vectors per work-item: a literal, so the loops over the arrays unroll fully
 * and h stays in registers (an indexed private array left in a loop lives in slow private memory).
 * Rows are assigned to groups in a grid-stride loop so the host can bound the grid. The KF_HAS_*
 * switches are constants, so the untaken sides compile away. */
#define KF_RMSNORM_REGS_KERNEL(CHUNKS)                                                                 \
  kernel void kf_rmsnorm_regs##CHUNKS(KF_KERNEL_ARGS) {                                                 \
    const uint lid = get_local_id(0);                                                                   \
    const uint lane = lid & (row_threads - 1);                                                          \
    const uint rows_per_group = get_local_size(0) / row_threads;                                        \
    const long vecs = p.row_len / KF_VEC;                                                               \
    const global W_T *weight = weight_base + p.weight;                                                  \
    const global B_T *bias = bias_base + p.bias;                                                        \
    for (long first_row = (long)get_group_id(0) * rows_per_group; first_row < p.rows;                   \
         first_row += (long)get_num_groups(0) * rows_per_group) {                                       \
      const long row = first_row + lid / row_threads;                                                   \
      const bool active = row < p.rows;                                                                 \
      KF_ROW_POINTERS                                                                                   \
      KF_HELD(KF_H_DT) h[CHUNKS];                                                                       \
      float sum_sq = 0.0f;                                                                              \
      if (active && lane < vecs) {                                                                      \
        if (KF_HAS_RESIDUAL) {                                                                          \
          KF_HELD(KF_X_DT) x_held[CHUNKS];                                                              \
          KF_HELD(KF_R_DT) r_held[CHUNKS];                                                              \
          KF_UNROLL for (int c = 0; c < CHUNKS; ++c)                                                    \
            x_held[c] = KF_HELD_LOAD(KF_X_DT)(x_row, KF_CHUNK_LOAD_J(c) * KF_VEC);                      \
          KF_UNROLL for (int c = 0; c < CHUNKS; ++c)                                                    \
            r_held[c] = KF_HELD_LOAD(KF_R_DT)(residual_row, KF_CHUNK_LOAD_J(c) * KF_VEC);               \
          KF_UNROLL for (int c = 0; c < CHUNKS; ++c) {                                                  \
            h[c] = kf_residual_sum(x_held[c], r_held[c]);                                               \
            if (KF_CHUNK_J(c) < vecs) kf_store_residual_out(residual_out_row, KF_CHUNK_J(c) * KF_VEC, h[c]); \
          }                                                                                             \
        } else {                                                                                        \
          KF_UNROLL for (int c = 0; c < CHUNKS; ++c)                                                    \
            h[c] = kf_held_load_x(x_row, KF_CHUNK_LOAD_J(c) * KF_VEC);                                  \
        }                                                                                               \
        KF_UNROLL for (int c = 0; c < CHUNKS; ++c) {                                                    \
          /* select(), not a branch (nor ?:, which compiles to one): under a branch the compiler sinks \
           * each load to its use, and each load then waits for the previous one's use. */              \
          const kf_vec v = KF_VALUE(KF_H_DT)(h[c]);                                                     \
          sum_sq += select(0.0f, kf_vec_sum(v * v), (int)(KF_CHUNK_J(c) < vecs));                       \
        }                                                                                               \
      }                                                                                                 \
      const float total = kf_row_sum(sum_sq, scratch, lid, lane, row_threads);                          \
      if (active && lane < vecs) {                                                                      \
        const float inv_rms = rsqrt(total / (float)p.row_len + p.eps);                                  \
        /* bf16 weight and bias loads first (no branch), then y; see KF_PREFETCH. */                   \
        KF_HELD(KF_W_DT) w_held[CHUNKS];                                                                \
        KF_HELD(KF_B_DT) b_held[CHUNKS];                                                                \
        if (KF_HAS_WEIGHT && KF_PREFETCH(KF_W_DT)) {                                                    \
          KF_UNROLL for (int c = 0; c < CHUNKS; ++c)                                                    \
            w_held[c] = KF_HELD_LOAD(KF_W_DT)(weight, KF_PARAM_INDEX(KF_CHUNK_LOAD_J(c) * KF_VEC, p.weight_stride)); \
        }                                                                                               \
        if (KF_HAS_BIAS && KF_PREFETCH(KF_B_DT)) {                                                      \
          KF_UNROLL for (int c = 0; c < CHUNKS; ++c)                                                    \
            b_held[c] = KF_HELD_LOAD(KF_B_DT)(bias, KF_PARAM_INDEX(KF_CHUNK_LOAD_J(c) * KF_VEC, p.bias_stride)); \
        }                                                                                               \
        KF_UNROLL for (int c = 0; c < CHUNKS; ++c) {                                                    \
          kf_vec out = KF_VALUE(KF_H_DT)(h[c]) * inv_rms;                                               \
          if (KF_HAS_WEIGHT)                                                                            \
            out *= KF_PREFETCH(KF_W_DT)                                                                 \
                       ? KF_VALUE(KF_W_DT)(w_held[c])                                                   \
                       : KF_LOAD(KF_W_DT)(weight, KF_PARAM_INDEX(KF_CHUNK_LOAD_J(c) * KF_VEC, p.weight_stride)); \
          if (KF_HAS_BIAS)                                                                              \
            out += KF_PREFETCH(KF_B_DT)                                                                 \
                       ? KF_VALUE(KF_B_DT)(b_held[c])                                                   \
                       : KF_LOAD(KF_B_DT)(bias, KF_PARAM_INDEX(KF_CHUNK_LOAD_J(c) * KF_VEC, p.bias_stride)); \
          if (KF_CHUNK_J(c) < vecs) KF_STORE(KF_Y_DT)(y_row, KF_CHUNK_J(c) * KF_VEC, out);              \
        }                                                                                               \
      }                                                                                                 \
    }                                                                                                   \
  }

KF_RMSNORM_REGS_KERNEL(1)
KF_RMSNORM_REGS_KERNEL(2)
KF_RMSNORM_REGS_KERNEL(4)
/* 8 vectors per work-item (64 floats of h in the 8-wide f32 variant): the host gives this kernel rows
 * that fill at most its CL_KERNEL_WORK_GROUP_SIZE. */
KF_RMSNORM_REGS_KERNEL(8)

/* Streaming path for rows longer than the register path holds. */
kernel void kf_rmsnorm_stream(KF_KERNEL_ARGS) {
  const uint lid = get_local_id(0);
  const uint lane = lid & (row_threads - 1);
  const uint rows_per_group = get_local_size(0) / row_threads;
  const long vecs = p.row_len / KF_VEC;
  const global W_T *weight = weight_base + p.weight;
  const global B_T *bias = bias_base + p.bias;
  for (long first_row = (long)get_group_id(0) * rows_per_group; first_row < p.rows;
       first_row += (long)get_num_groups(0) * rows_per_group) {
    const long row = first_row + lid / row_threads;
    const bool active = row < p.rows;
    KF_ROW_POINTERS
    float sum_sq = 0.0f;
    if (active) {
      for (long j = lane; j < vecs; j += row_threads) {
        kf_vec h = kf_load_h(x_row, residual_row, residual_out_row, j * KF_VEC);
        sum_sq += kf_vec_sum(h * h);
      }
    }
    float total = kf_row_sum(sum_sq, scratch, lid, lane, row_threads);
    if (active) {
      const float inv_rms = rsqrt(total / (float)p.row_len + p.eps);
      for (long j = lane; j < vecs; j += row_threads) {
        /* The same work-item wrote residual_out[j] in pass 1, so it sees its own write. */
#if KF_HAS_RESIDUAL
        kf_vec h = KF_LOAD(KF_RO_DT)(residual_out_row, j * KF_VEC);
#else
        kf_vec h = KF_LOAD(KF_X_DT)(x_row, j * KF_VEC);
#endif
        kf_store_y(y_row, weight, p.weight_stride, bias, p.bias_stride, j * KF_VEC, h, inv_rms);
      }
    }
  }
}

/* common.cl — helpers shared by the layernorm, rope, glu and softmax programs (the host prepends this
 * file, after kf_params.h, to each of them).
 *
 * Operand dtypes are chosen at run time from the params' `dtypes` word, so one program serves every
 * dtype combination (each program build costs seconds on PoCL, and CI starts with an empty cache).
 * The switches are uniform across a launch, so a GPU takes one side of every branch. When all present
 * operands share one dtype the host may build with -DKF_FIXED_DT=<dt>, which turns every switch into
 * a constant (GPUs only: the cache makes the extra build a one-time cost there).
 *
 * Buffers are passed as `global uchar *` and indexed in elements of the operand's dtype. The 8-wide
 * accesses need element indices that are multiples of 8 from a 256-byte aligned buffer (the host
 * checks offsets and strides): f32 moves 32 bytes, f16/bf16 16 bytes, the widest single load GPUs
 * issue. NVIDIA's OpenCL has no cl_khr_fp16, so f16 goes through vload_half / vstore_half (they need
 * no extension) and bf16 through its raw bits: bf16 -> f32 is the bits shifted up by 16.
 *
 * Other -D options: KF_NV_PTX=1 on NVIDIA (warp reductions through inline PTX shfl; work-items of a
 * 1-D group form warps of 32 consecutive ids there).
 */

#ifndef KF_FIXED_DT
#define KF_FIXED_DT (-1)
#endif
#ifndef KF_NV_PTX
#define KF_NV_PTX 0
#endif

/* The dtype of the operand at `shift` in a dtypes word. */
#define KF_DT_OF(dtypes, shift) (KF_FIXED_DT >= 0 ? (uint)KF_FIXED_DT : (((dtypes) >> (shift)) & 15u))

/* Helpers are shared by several programs; each uses some ("unused" keeps build logs quiet). */
#define KF_HELPER static inline __attribute__((unused))

/* Full unrolling keeps per-work-item arrays in registers (an indexed private array left in a loop
 * lives in slow private memory). */
#define KF_UNROLL _Pragma("unroll")

/* ---- rounding in registers (the value as it reads back after a store in that dtype) ----
 * bf16: round to nearest even on the f32 bits; NaN stays a quiet NaN instead of rounding into inf.
 * f16: normal range rounds the mantissa to 10 bits; below 2^-14 (subnormals) the step is 2^-24; from
 * 65520 on it overflows to infinity (what vstore_half_rte stores). One definition per width. */
#define KF_DEFINE_ROUNDING(suffix, F, U, AS_U, AS_F)                                                    \
  KF_HELPER U kf_bf16_bits##suffix(F v) {                                                               \
    U u = AS_U(v);                                                                                      \
    U rounded = (u + (U)0x7fffu + ((u >> 16) & (U)1u)) & (U)0xffff0000u;                                \
    U quiet_nan = (u | (U)0x00400000u) & (U)0xffff0000u;                                                \
    return select(rounded, quiet_nan, isnan(v));                                                        \
  }                                                                                                     \
  KF_HELPER F kf_f16_round##suffix(F v) {                                                               \
    U u = AS_U(v);                                                                                      \
    F normal = AS_F((u + (U)0xfffu + ((u >> 13) & (U)1u)) & (U)0xffffe000u);                            \
    F subnormal = rint(v * 0x1p24f) * 0x1p-24f;                                                         \
    F magnitude = fabs(v);                                                                              \
    F r = select(normal, subnormal, magnitude < (F)0x1p-14f);                                           \
    r = select(r, copysign((F)INFINITY, v), magnitude >= (F)65520.0f);                                  \
    return select(r, v, isnan(v));                                                                      \
  }                                                                                                     \
  KF_HELPER F kf_round##suffix(F v, uint dt) {                                                          \
    if (dt == KF_DT_F16) return kf_f16_round##suffix(v);                                                \
    if (dt == KF_DT_BF16) return AS_F(kf_bf16_bits##suffix(v));                                         \
    return v;                                                                                           \
  }

KF_DEFINE_ROUNDING(1, float, uint, as_uint, as_float)
KF_DEFINE_ROUNDING(8, float8, uint8, as_uint8, as_float8)

/* ---- loads and stores of element i (stores round to nearest even) ---- */
KF_HELPER float kf_load1(const global uchar *base, long i, uint dt) {
  if (dt == KF_DT_F32) return ((const global float *)base)[i];
  if (dt == KF_DT_F16) return vload_half(i, (const global half *)base);
  return as_float((uint)((const global ushort *)base)[i] << 16);
}

KF_HELPER void kf_store1(global uchar *base, long i, float v, uint dt) {
  if (dt == KF_DT_F32)
    ((global float *)base)[i] = v;
  else if (dt == KF_DT_F16)
    vstore_half_rte(v, i, (global half *)base);
  else
    ((global ushort *)base)[i] = (ushort)(kf_bf16_bits1(v) >> 16);
}

/* Elements i .. i+7, i a multiple of 8. */
KF_HELPER float8 kf_load8(const global uchar *base, long i, uint dt) {
  if (dt == KF_DT_F32) return *(const global float8 *)((const global float *)base + i);
  if (dt == KF_DT_F16) return vloada_half8(0, (const global half *)base + i);
  uint4 packed = *(const global uint4 *)((const global ushort *)base + i);
  /* Little-endian: the even element sits in the low half of each 32-bit word. */
  float4 even = as_float4(packed << 16);
  float4 odd = as_float4(packed & (uint4)0xffff0000u);
  return (float8)(even.s0, odd.s0, even.s1, odd.s1, even.s2, odd.s2, even.s3, odd.s3);
}

KF_HELPER void kf_store8(global uchar *base, long i, float8 v, uint dt) {
  if (dt == KF_DT_F32) {
    *(global float8 *)((global float *)base + i) = v;
  } else if (dt == KF_DT_F16) {
    vstorea_half8_rte(v, 0, (global half *)base + i);
  } else {
    uint8 bits = kf_bf16_bits8(v);
    *(global uint4 *)((global ushort *)base + i) = (bits.even >> 16) | (bits.odd & (uint4)0xffff0000u);
  }
}

/* ---- the row ops' register form of a vector (layernorm, softmax) ----
 * A row op keeps its share of the row in registers between passes. kf_held8 holds 8 elements as
 * loaded: bf16 as its 16-byte bit pattern in .lo (4 registers instead of 8 floats; .hi is zero and,
 * with a fixed dtype, never materialized), f32 and f16 as f32 bits (OpenCL without cl_khr_fp16 has no
 * f16 arithmetic, so f16 is converted on load). Width 1 holds the f32 bits of the element. Loads take
 * no branch on the value, so a caller can issue all of a row's loads before it uses the first
 * (independent loads in flight are what hides memory latency). */
typedef uint8 kf_held8;
typedef uint kf_held1;

/* Two f32 -> bf16x2 (lo in the low half), round to nearest even. NVIDIA: one cvt (sm_80+) instead of
 * the ~8 integer operations per element below; a NaN becomes the canonical quiet NaN there. */
KF_HELPER uint kf_bf16x2_rne(float lo, float hi) {
#if KF_NV_PTX
  uint packed;
  asm("{\n\t.reg .f32 lo_, hi_;\n\t.reg .b32 packed_;\n\tmov.b32 lo_, %1;\n\tmov.b32 hi_, %2;\n\t"
      "cvt.rn.bf16x2.f32 packed_, hi_, lo_;\n\tmov.b32 %0, packed_;\n\t}"
      : "=r"(packed)
      : "r"(as_uint(lo)), "r"(as_uint(hi)));
  return packed;
#else
  return (kf_bf16_bits1(lo) >> 16) | (kf_bf16_bits1(hi) & 0xffff0000u);
#endif
}

KF_HELPER uint4 kf_bf16x8_rne(float8 v) {
#if KF_NV_PTX
  return (uint4)(kf_bf16x2_rne(v.s0, v.s1), kf_bf16x2_rne(v.s2, v.s3), kf_bf16x2_rne(v.s4, v.s5),
                 kf_bf16x2_rne(v.s6, v.s7));
#else
  uint8 bits = kf_bf16_bits8(v);
  return (bits.even >> 16) | (bits.odd & (uint4)0xffff0000u);
#endif
}

KF_HELPER kf_held8 kf_held_load8(const global uchar *base, long i, uint dt) {
  if (dt == KF_DT_BF16) return (uint8)(*(const global uint4 *)((const global ushort *)base + i), (uint4)0u);
  return as_uint8(kf_load8(base, i, dt));
}

KF_HELPER float8 kf_held_value8(kf_held8 held, uint dt) {
  if (dt != KF_DT_BF16) return as_float8(held);
  /* Little-endian: the even element sits in the low half of each 32-bit word. */
  float4 even = as_float4(held.lo << 16);
  float4 odd = as_float4(held.lo & (uint4)0xffff0000u);
  return (float8)(even.s0, odd.s0, even.s1, odd.s1, even.s2, odd.s2, even.s3, odd.s3);
}

/* v rounded to dt, held (what a store of v in dt reads back as). */
KF_HELPER kf_held8 kf_held_round8(float8 v, uint dt) {
  if (dt == KF_DT_BF16) return (uint8)(kf_bf16x8_rne(v), (uint4)0u);
  return as_uint8(kf_round8(v, dt));
}

/* Stores a held vector (already rounded to dt, so the store is exact). */
KF_HELPER void kf_held_store8(global uchar *base, long i, kf_held8 held, uint dt) {
  if (dt == KF_DT_BF16)
    *(global uint4 *)((global ushort *)base + i) = held.lo;
  else
    kf_store8(base, i, as_float8(held), dt);
}

/* kf_store8 with bf16 through kf_bf16x8_rne. */
KF_HELPER void kf_store_rne8(global uchar *base, long i, float8 v, uint dt) {
  if (dt == KF_DT_BF16)
    *(global uint4 *)((global ushort *)base + i) = kf_bf16x8_rne(v);
  else
    kf_store8(base, i, v, dt);
}

KF_HELPER kf_held1 kf_held_load1(const global uchar *base, long i, uint dt) { return as_uint(kf_load1(base, i, dt)); }
KF_HELPER float kf_held_value1(kf_held1 held, uint dt) { return as_float(held); }
KF_HELPER kf_held1 kf_held_round1(float v, uint dt) { return as_uint(kf_round1(v, dt)); }
KF_HELPER void kf_held_store1(global uchar *base, long i, kf_held1 held, uint dt) {
  kf_store1(base, i, as_float(held), dt);
}
KF_HELPER void kf_store_rne1(global uchar *base, long i, float v, uint dt) { kf_store1(base, i, v, dt); }

KF_HELPER float kf_sum1(float v) { return v; }
KF_HELPER float kf_max1(float v) { return v; }

KF_HELPER float kf_sum8(float8 v) {
  float4 s = v.lo + v.hi;
  return (s.s0 + s.s1) + (s.s2 + s.s3);
}

KF_HELPER float kf_max8(float8 v) {
  float4 m = fmax(v.lo, v.hi);
  return fmax(fmax(m.s0, m.s1), fmax(m.s2, m.s3));
}

/* ---- reductions over the row_threads work-items of each row ----
 * A group holds get_local_size(0) / row_threads rows; row_threads is a power of two and the group
 * size a power-of-two multiple of it. Every work-item of the group must call these (barriers).
 * scratch holds get_local_size(0) floats. */
#define KF_REDUCE_SUM 0
#define KF_REDUCE_MAX 1

KF_HELPER float kf_combine(float a, float b, int op) { return op == KF_REDUCE_MAX ? fmax(a, b) : a + b; }

#if KF_NV_PTX
KF_HELPER float kf_shuffle_xor(float value, uint lane_mask) {
  uint result;
  asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=r"(result) : "r"(as_uint(value)), "r"(lane_mask));
  return as_float(result);
}
#endif

KF_HELPER float kf_row_reduce(float value, int op, local float *scratch, uint lid, uint lane, uint row_threads) {
#if KF_NV_PTX
  /* Butterfly inside each warp (segments of row_threads stay separate), then one value per warp
   * through local memory. The group size is a multiple of 32 (the host makes sure). */
  for (uint mask = min(row_threads, 32u) >> 1; mask > 0; mask >>= 1) value = kf_combine(value, kf_shuffle_xor(value, mask), op);
  if (row_threads <= 32) return value;
  if ((lid & 31u) == 0) scratch[lid >> 5] = value;
  barrier(CLK_LOCAL_MEM_FENCE);
  const uint first_warp = (lid - lane) >> 5;
  float total = scratch[first_warp];
  for (uint w = 1; w < row_threads >> 5; ++w) total = kf_combine(total, scratch[first_warp + w], op);
  barrier(CLK_LOCAL_MEM_FENCE); /* scratch is reused by the next reduction */
  return total;
#else
  scratch[lid] = value;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint half_width = row_threads >> 1; half_width > 0; half_width >>= 1) {
    if (lane < half_width) scratch[lid] = kf_combine(scratch[lid], scratch[lid + half_width], op);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  float total = scratch[lid - lane];
  barrier(CLK_LOCAL_MEM_FENCE); /* scratch is reused by the next reduction */
  return total;
#endif
}

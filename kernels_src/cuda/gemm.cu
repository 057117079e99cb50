/* gemm.cu — the generic (sm_80+) GEMM of the CUDA backend, C = epilogue(alpha op(A) op(B)):
 *   kf_gemm_<in>_<tile>_<modes>  tensor cores (mma.sync): in = f16, bf16, e4m3 (f8), tf32 (f32 inputs
 *                                when the context allows TF32); tile = large (128x256, decode-free
 *                                shapes) or small (16x256, m <= 16: decode); modes per operand below.
 *   kf_gemm_<in>_decode          f16/bf16, m <= 16, A k-contiguous, B [n, k] (nn.Linear weights): B
 *                                loaded straight into mma fragments (gemm_decode).
 *   kf_gemm_f32_simt             exact f32 (FFMA, register-tiled).
 *   kf_gemm_finish_splits        sums split-K partials and applies the epilogue.
 *
 * Tensor-core kernels. A k tile holds K_BYTES bytes of k per row (large tile 128: 64 f16/bf16, 128
 * e4m3, 32 tf32; small tile 64) and one mma k-step consumes 32 of those bytes in every input type
 * (m16n8k16; m16n8k8 for tf32; e4m3 widened to two f16 m16n8k16, see widen_e4m3), so the shared layouts
 * and the ldmatrix addressing are written once, in bytes.
 * Operand modes (the host picks them per call, cuda_gemm.c):
 *   k  "k-contiguous", cp.async: the operand is stored with k contiguous (A not transposed, B
 *      transposed: nn.Linear weights); shared rows of K_BYTES bytes, fragments by ldmatrix.
 *   m  "m/n-contiguous", cp.async (16-bit inputs only): shared rows are k, fragments by ldmatrix.trans.
 *   s  scalar: element loads with bounds checks (any alignment or layout), written to shared memory
 *      k-contiguous; used for both operands when either is not 16-byte aligned, and for every f8/tf32
 *      layout but kk (ldmatrix.trans moves 16-bit units only).
 * Both cp.async modes need the operand address, leading dimension and batch stride in multiples of 16
 * bytes; tile edges are zero-filled through cp.async's src-size (a partial chunk reads only its valid
 * bytes), so odd M, N and K need no padding.
 * Shared layout: 16-byte chunk c of row r sits at chunk (c ^ f(r)) of that row, f chosen so that the 8
 * row addresses of one ldmatrix phase (8 consecutive rows, one chunk) fall in 8 distinct bank groups,
 * and so do the 8 chunks that 8 consecutive threads copy.
 * Pipeline: STAGES k tiles in flight (cp.async groups), one __syncthreads per k tile, and two sets of
 * fragment registers so that the shared-memory loads of one mma step overlap the mmas of the previous
 * one (gemm_tensor_core). The sm_90a code of the large tile's cp.async modes (f16/bf16 all four, tf32
 * kk) specializes warps instead (gemm_tensor_core_ws): a warpgroup of copy warps issues every cp.async
 * and per-stage mbarriers hand the stages to and from the compute warps, which run ldmatrix and mma
 * alone; setmaxnreg gives the registers the copy warps do not need to the compute warps.
 * Epilogue: through an f32 stash in shared memory (store_through_stash), 16-byte stores of C where
 * nothing but alpha and SwiGLU applies.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "kernels_src/common/kf_cuda_gemm_params.h"

enum element_kind { ELEM_F16, ELEM_BF16, ELEM_E4M3, ELEM_TF32 };
enum operand_mode { MODE_K, MODE_MN, MODE_SCALAR };

#define CHUNK_BYTES 16 /* one cp.async / one ldmatrix row */
#define WARP_TILE_N 64 /* 8 mma n-blocks of 8 per warp */
#define STORE_COLUMNS 8 /* columns of C per thread and step of the epilogue's stores: 16 bytes of f16/bf16 */
/* Tile rows that share consecutive block indices, so the blocks resident at one time reuse the same
 * B columns and A rows from L2. */
#define RASTER_GROUP_ROWS 8
/* SwiGLU: each warp holds SWIGLU_GROUP gate columns and the matching SWIGLU_GROUP up columns side by
 * side, so silu(gate) * up pairs registers of one thread. */
#define SWIGLU_GROUP_MMA 32
#define SWIGLU_GROUP_SIMT 64

template <bool V>
struct bool_constant {
  static constexpr bool value = V;
};

__host__ __device__ constexpr int element_bytes(int elem) { return elem == ELEM_E4M3 ? 1 : elem == ELEM_TF32 ? 4 : 2; }

/* ---- epilogue --------------------------------------------------------------------------------- */

__device__ __forceinline__ float load_f32(const char *base, int64_t index, int dt) {
  if (dt == KF_DT_F32) return reinterpret_cast<const float *>(base)[index];
  if (dt == KF_DT_F16) return __half2float(reinterpret_cast<const __half *>(base)[index]);
  return __bfloat162float(reinterpret_cast<const __nv_bfloat16 *>(base)[index]);
}

/* Rounds to nearest even. */
__device__ __forceinline__ void store_f32(char *base, int64_t index, int dt, float v) {
  if (dt == KF_DT_F32)
    reinterpret_cast<float *>(base)[index] = v;
  else if (dt == KF_DT_F16)
    reinterpret_cast<__half *>(base)[index] = __float2half_rn(v);
  else
    reinterpret_cast<__nv_bfloat16 *>(base)[index] = __float2bfloat16_rn(v);
}

/* index is even and the host saw the C base, ld and batch stride aligned (KF_GEMM_C_PAIRS). */
__device__ __forceinline__ void store_pair(char *base, int64_t index, int dt, float v0, float v1) {
  if (dt == KF_DT_F32)
    *reinterpret_cast<float2 *>(reinterpret_cast<float *>(base) + index) = make_float2(v0, v1);
  else if (dt == KF_DT_F16)
    *reinterpret_cast<__half2 *>(reinterpret_cast<__half *>(base) + index) = __floats2half2_rn(v0, v1);
  else
    *reinterpret_cast<__nv_bfloat162 *>(reinterpret_cast<__nv_bfloat16 *>(base) + index) =
        __floats2bfloat162_rn(v0, v1);
}

__device__ __forceinline__ float silu(float x) { return x / (1.0f + __expf(-x)); }

/* C[row, col] from the raw sums (gate and up with SwiGLU pairing; up unused otherwise). */
__device__ __forceinline__ float epilogue_value(const kf_cuda_gemm_params &p, int batch_index, int row, int col,
                                                float gate, float up) {
  const int bias_dt = (int)((p.dtypes >> KF_GEMM_DT_SHIFT_BIAS) & 15);
  float t = p.alpha * gate;
  if (p.flags & KF_GEMM_HAS_BIAS) t += load_f32(reinterpret_cast<const char *>(p.bias), col * p.bias_stride, bias_dt);
  if (p.flags & KF_GEMM_SWIGLU_PAIRS) {
    float u = p.alpha * up;
    if (p.flags & KF_GEMM_HAS_BIAS)
      u += load_f32(reinterpret_cast<const char *>(p.bias_up), col * p.bias_stride, bias_dt);
    t = silu(t) * u;
  }
  if (p.flags & KF_GEMM_READ_C)
    t += p.beta * load_f32(reinterpret_cast<const char *>(p.c),
                           batch_index * p.batch_stride_c + (int64_t)row * p.ldc + col,
                           (int)((p.dtypes >> KF_GEMM_DT_SHIFT_C) & 15));
  if (p.flags & KF_GEMM_HAS_RESIDUAL)
    t += load_f32(reinterpret_cast<const char *>(p.residual),
                  batch_index * p.batch_stride_residual + (int64_t)row * p.ld_residual + col,
                  (int)((p.dtypes >> KF_GEMM_DT_SHIFT_RESIDUAL) & 15));
  return t;
}

/* Columns col and col + 1 (col even) of one row: either the final values into C or, with split-K, the
 * raw sums into the workspace. C may be the residual: each element is read before it is written. */
__device__ __forceinline__ void emit_pair(const kf_cuda_gemm_params &p, int batch_index, int split, int row, int col,
                                          float gate0, float gate1, float up0, float up1) {
  if (row >= p.m || col >= p.n) return;
  const bool second = col + 1 < p.n;
  if (p.splits > 1) {
    const int n_sums = (p.flags & KF_GEMM_SWIGLU_PAIRS) ? 2 * p.n : p.n;
    float *sums = reinterpret_cast<float *>(p.workspace) +
                  (((int64_t)split * p.batch + batch_index) * p.m + row) * n_sums;
    sums[col] = gate0;
    if (second) sums[col + 1] = gate1;
    if (p.flags & KF_GEMM_SWIGLU_PAIRS) {
      sums[p.n + col] = up0;
      if (second) sums[p.n + col + 1] = up1;
    }
    return;
  }
  const float v0 = epilogue_value(p, batch_index, row, col, gate0, up0);
  const int c_dt = (int)((p.dtypes >> KF_GEMM_DT_SHIFT_C) & 15);
  char *c = reinterpret_cast<char *>(p.c);
  const int64_t index = batch_index * p.batch_stride_c + (int64_t)row * p.ldc + col;
  if (second) {
    const float v1 = epilogue_value(p, batch_index, row, col + 1, gate1, up1);
    if (p.flags & KF_GEMM_C_PAIRS) {
      store_pair(c, index, c_dt, v0, v1);
    } else {
      store_f32(c, index, c_dt, v0);
      store_f32(c, index + 1, c_dt, v1);
    }
  } else {
    store_f32(c, index, c_dt, v0);
  }
}

/* ---- block placement -------------------------------------------------------------------------- */

struct block_place {
  int batch_index, split, tile_m, tile_n;
};

__device__ __forceinline__ block_place place_block(const kf_cuda_gemm_params &p) {
  block_place b;
  const int tiles = p.tiles_m * p.tiles_n;
  const int tile = (int)(blockIdx.x % (unsigned)tiles);
  const int rest = (int)(blockIdx.x / (unsigned)tiles);
  b.split = rest % p.splits;
  b.batch_index = rest / p.splits;
  const int group_tiles = RASTER_GROUP_ROWS * p.tiles_n;
  const int first_row = tile / group_tiles * RASTER_GROUP_ROWS;
  const int rows = min(p.tiles_m - first_row, RASTER_GROUP_ROWS);
  const int in_group = tile % group_tiles;
  b.tile_m = first_row + in_group % rows;
  b.tile_n = in_group / rows;
  return b;
}

/* Column `tile_col` of a block's B tile: the B operand it comes from and its column of op(B)'s half.
 * Plain: columns n0.. of b. SwiGLU: groups of GROUP gate columns then the GROUP matching up columns. */
template <int GROUP>
__device__ __forceinline__ const char *b_column(const kf_cuda_gemm_params &p, const char *b, const char *b_up,
                                                int n0, int tile_col, int *col) {
  if (!(p.flags & KF_GEMM_SWIGLU_PAIRS)) {
    *col = n0 + tile_col;
    return b;
  }
  *col = n0 + tile_col / (2 * GROUP) * GROUP + tile_col % GROUP;
  return (tile_col / GROUP) % 2 ? b_up : b;
}

struct k_range {
  int begin, end;
};

__device__ __forceinline__ k_range split_k_range(const kf_cuda_gemm_params &p, int split) {
  k_range r;
  r.begin = split * p.k_per_split;
  r.end = min(p.k, r.begin + p.k_per_split);
  if (r.end < r.begin) r.end = r.begin;
  return r;
}

/* ---- tensor-core primitives ------------------------------------------------------------------- */

__device__ __forceinline__ uint32_t shared_address(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void copy_chunk_async(uint32_t dst, const void *src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src) : "memory");
}

/* Copies `bytes` (0..16) of src and zero-fills the rest of the 16-byte chunk. */
__device__ __forceinline__ void copy_chunk_async_fill(uint32_t dst, const void *src, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes) : "memory");
}

__device__ __forceinline__ void commit_async() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

template <int PENDING>
__device__ __forceinline__ void wait_async() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING) : "memory");
}

template <bool TRANS>
__device__ __forceinline__ void load_matrix_x4(uint32_t r[4], uint32_t address) {
  if (TRANS)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address));
}

__device__ __forceinline__ uint32_t to_tf32(uint32_t f32_bits) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(__uint_as_float(f32_bits)));
  return r;
}

/* Four e4m3 bytes -> the two f16x2 words (bytes 0,1) and (bytes 2,3). e4m3 is exact in f16: moving
 * sign, exponent and mantissa into f16 position reads the exponent with bias 15 instead of 7, which the
 * multiplication by 2^8 corrects (subnormals included). */
__device__ __forceinline__ void e4m3x4_to_f16x2(uint32_t bytes, uint32_t *low, uint32_t *high) {
  const uint32_t lo = __byte_perm(bytes, 0, 0x1404), hi = __byte_perm(bytes, 0, 0x3424); /* byte << 8 per half */
  const uint32_t lo_bits = (lo & 0x80008000u) | ((lo & 0x7f007f00u) >> 1);
  const uint32_t hi_bits = (hi & 0x80008000u) | ((hi & 0x7f007f00u) >> 1);
  const __half2 scale = __float2half2_rn(256.0f);
  __half2 l = __hmul2(*reinterpret_cast<const __half2 *>(&lo_bits), scale);
  __half2 h = __hmul2(*reinterpret_cast<const __half2 *>(&hi_bits), scale);
  *low = *reinterpret_cast<uint32_t *>(&l);
  *high = *reinterpret_cast<uint32_t *>(&h);
}

__device__ __forceinline__ void mma_f16(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* One mma k-step (32 bytes of k) of a 16x8 accumulator block, fragments as ldmatrix left them (tf32:
 * already rounded by round_tf32). e4m3 never comes here: see widen_e4m3. */
template <int ELEM>
__device__ __forceinline__ void mma_step(float d[4], const uint32_t a[4], const uint32_t b[2]) {
  if (ELEM == ELEM_F16) {
    mma_f16(d, a, b[0], b[1]);
  } else if (ELEM == ELEM_BF16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

/* e4m3 runs as two f16 k-steps. mma.sync's own e4m3 shape (m16n8k32) exists from sm_89, but ptxas
 * expands it on sm_90 into conversions that need more registers than a 128x256 tile leaves (it spilled
 * even at 64 accumulators per thread), and sm_89 runs our compute_80 PTX; converting once per
 * fragment instead of once per mma is cheaper on both. Register j of an e4m3 fragment holds k = 4t..4t+3
 * (+16 for j >= 2 of A, j == 1 of B); its low pair feeds the first f16 step and its high pair the second:
 * the same k permutation on both operands, so the sum is unchanged. */
template <int N>
__device__ __forceinline__ void widen_e4m3(const uint32_t (&bytes)[N], uint32_t (&low)[N], uint32_t (&high)[N]) {
#pragma unroll
  for (int j = 0; j < N; ++j) e4m3x4_to_f16x2(bytes[j], &low[j], &high[j]);
}

template <int N>
__device__ __forceinline__ void round_tf32(uint32_t (&r)[N]) {
#pragma unroll
  for (int j = 0; j < N; ++j) r[j] = to_tf32(r[j]);
}

/* Chunk position inside a shared row of `chunks_per_row` chunks (see the file comment). */
__device__ __forceinline__ int swizzle(int row, int chunk, int chunks_per_row) {
  return chunks_per_row >= 8 ? chunk ^ (row & 7) : chunk ^ ((row / (8 / chunks_per_row)) & (chunks_per_row - 1));
}

/* ---- tensor-core kernel ----------------------------------------------------------------------- */

/* Where one thread's copies of one cp.async operand come from. A k tile's origin in each source matrix
 * is the same for the whole block (the compiler keeps it in uniform registers); a thread adds 32-bit
 * byte offsets that stay fixed for the whole block, so a copy costs a few instructions and the main
 * loop, which has few registers to spare next to 128 accumulators and two fragment sets, keeps no
 * per-chunk pointers. The host sends operands whose tile offsets could pass 2^31 bytes (ld * element
 * size >= 8 MiB) to the scalar mode (cuda_gemm.c).
 *   k mode: chunk i of a thread is column k_chunks::column() of tile row k_chunks::row0() + 32 * i,
 *     read from origin[i % 2] + offset + (i % 2) * odd_step + (i / 2) * pair_step. Without SwiGLU both
 *     origins are the tile's first row. With SwiGLU (B only) tile columns alternate 32 gate and 32 up
 *     columns (b_column, GROUP = 32), so even chunks read gate rows, odd chunks the same rows of the up
 *     half, and chunk i + 2 is 32 rows after chunk i.
 *   m/n mode: chunk i of a thread is chunk threadIdx.x + i * THREADS of the shared tile: 8 fixed columns
 *     (m, or tile columns of B) of shared k row r0 + i * ROW_STEP (ROW_STEP = THREADS / chunks per k
 *     row), read from origin[0 or 1: the half of those columns] + offset + i * pair_step; `inside`
 *     bytes of it are inside the matrix.
 * A chunk with nothing to read copies zero bytes from its origin, which is inside the matrix. */
struct operand_source {
  const char *origin[2]; /* block-uniform: tile row (m/n) 0, k 0 of this split */
  uint32_t offset;       /* per thread */
  uint32_t odd_step, pair_step;
  uint32_t inside; /* k mode: bit i set when chunk i's source row is inside the matrix; m/n mode: bytes */
  uint32_t dst;    /* k mode: chunk 0's byte offset in a stage; chunk i is 32 * i rows further */
};

/* k mode: which chunks of a ROWS-row tile a thread copies. Threads form groups of 32 * CPR, each
 * covering 32 consecutive rows at a time (consecutive threads take consecutive 16-byte chunks of a
 * row: coalesced); group h of GROUPS owns rows [h, h + 1) * GROUP_ROWS, in steps of 32 rows. */
template <int ROWS, int KBYTES, int THREADS>
struct k_chunks {
  static constexpr int CPR = KBYTES / CHUNK_BYTES;
  static constexpr int ROW_STEP = 32;
  static constexpr int GROUP_THREADS = ROW_STEP * CPR;
  static constexpr int GROUPS = THREADS / GROUP_THREADS;
  static constexpr int GROUP_ROWS = ROWS / GROUPS;
  static constexpr int PER_THREAD = (GROUP_ROWS + ROW_STEP - 1) / ROW_STEP;
  static_assert(THREADS % GROUP_THREADS == 0 && ROWS % GROUPS == 0, "k-mode chunk groups");
  static __device__ __forceinline__ int row_in_group() { return threadIdx.x % GROUP_THREADS / CPR; }
  static __device__ __forceinline__ int row0() { return threadIdx.x / GROUP_THREADS * GROUP_ROWS + row_in_group(); }
  static __device__ __forceinline__ int column() { return threadIdx.x % CPR; }
  /* false only for a tile shorter than 32 rows (the decode tile's A) */
  static __device__ __forceinline__ bool exists(int i) {
    return GROUP_ROWS % ROW_STEP == 0 || row_in_group() + i * ROW_STEP < GROUP_ROWS;
  }
};

/* Keeps a per-thread value in a register: without this the compiler recomputes such values from
 * threadIdx inside the main loop, where registers are short, at several instructions per use. */
__device__ __forceinline__ uint32_t pinned(uint32_t v) {
  asm volatile("" : "+r"(v));
  return v;
}

template <int ELEM, int MODE, int ROWS, int KBYTES, int THREADS, bool IS_B, int GROUP>
__device__ __forceinline__ operand_source source_of(const kf_cuda_gemm_params &p, const char *base,
                                                    const char *base_up, int64_t ld, int first_row, int row_limit,
                                                    int k_begin) {
  constexpr int ES = element_bytes(ELEM);
  const bool pairs = IS_B && (p.flags & KF_GEMM_SWIGLU_PAIRS) != 0;
  operand_source s;
  s.offset = s.odd_step = s.pair_step = s.inside = s.dst = 0;
  if (MODE == MODE_MN) {
    constexpr int CPR = ROWS * 2 / CHUNK_BYTES, ROW_STEP = THREADS / CPR;
    const int r0 = threadIdx.x / CPR, c = threadIdx.x % CPR;
    s.origin[0] = base + ((int64_t)k_begin * ld + first_row) * 2;
    s.origin[1] = pairs ? base_up + ((int64_t)k_begin * ld + first_row) * 2 : s.origin[0];
    int index = first_row + c * 8;
    if (IS_B) b_column<GROUP>(p, base, base_up, first_row, c * 8, &index);
    s.inside = (uint32_t)(min(max(row_limit - index, 0), 8) * 2);
    s.offset = (uint32_t)(((int64_t)r0 * ld + index - first_row) * 2);
    s.pair_step = (uint32_t)(ROW_STEP * ld * 2);
  } else if (MODE == MODE_K) {
    using chunks = k_chunks<ROWS, KBYTES, THREADS>;
    constexpr int ROW_STEP = chunks::ROW_STEP;
    static_assert(!IS_B || (ROW_STEP == GROUP && chunks::GROUP_ROWS % (2 * GROUP) == 0),
                  "SwiGLU pairing of k-mode chunks (see operand_source)");
    const int r0 = chunks::row0(), c = chunks::column();
    s.origin[0] = base + ((int64_t)first_row * ld + k_begin) * ES;
    s.origin[1] = pairs ? base_up + ((int64_t)first_row * ld + k_begin) * ES : s.origin[0];
    int row = first_row + r0; /* source row of chunk 0: a gate row with SwiGLU (r0 % 64 < 32) */
    if (IS_B) b_column<GROUP>(p, base, base_up, first_row, r0, &row);
    const int odd_rows = pairs ? 0 : ROW_STEP, pair_rows = pairs ? ROW_STEP : 2 * ROW_STEP;
#pragma unroll
    for (int i = 0; i < chunks::PER_THREAD; ++i)
      if (row + (i % 2) * odd_rows + (i / 2) * pair_rows < row_limit) s.inside |= 1u << i;
    s.offset = (uint32_t)((int64_t)(row - first_row) * ld * ES + c * CHUNK_BYTES);
    s.odd_step = (uint32_t)(odd_rows * ld * ES);
    s.pair_step = (uint32_t)(pair_rows * ld * ES);
    /* every chunk of a thread has chunk 0's swizzle: rows 32 apart agree in row & 7 */
    s.dst = pinned(r0 * KBYTES + swizzle(r0, c, chunks::CPR) * CHUNK_BYTES);
  } else {
    s.origin[0] = s.origin[1] = base;
  }
  s.offset = pinned(s.offset);
  s.inside = pinned(s.inside);
  return s;
}

/* Part `part` of `parts` of one thread's chunks of k tile `k0` (relative to the split's first k) of
 * `ROWS` rows (m of A, tile columns of B) of one operand; KBYTES bytes of k, shared tile bytes ROWS *
 * KBYTES. The parts let the main loop spread a stage's copies over its mma steps instead of queueing
 * them in one burst ahead of the ldmatrix loads; `part` is a constant wherever this is inlined into
 * the unrolled step loop. A k tile that lies inside [k_begin, k_end) copies whole chunks and skips the
 * chunks whose rows (k mode) or columns (m/n mode) are outside the matrix, which clear_outside zeroed
 * once; a partial k tile (only ever loaded by the prologue, MAYBE_PARTIAL) copies through src-size,
 * which zero-fills. */
template <int ELEM, int MODE, int ROWS, int KBYTES, int THREADS, bool IS_B, int GROUP, bool MAYBE_PARTIAL>
__device__ __forceinline__ void load_tile(const kf_cuda_gemm_params &p, const operand_source &s, char *tile,
                                          const char *base, const char *base_up, int64_t ld, int first_row,
                                          int row_limit, int k_begin, int k0, int k_end, int part, int parts) {
  constexpr int ES = element_bytes(ELEM);
  constexpr int TILE_K = KBYTES / ES;
  constexpr int CHUNKS = ROWS * KBYTES / CHUNK_BYTES;
  constexpr int PER_THREAD = (CHUNKS + THREADS - 1) / THREADS;
  const bool whole = !MAYBE_PARTIAL || k_begin + k0 + TILE_K <= k_end;
  if (MODE == MODE_K) {
    using chunks = k_chunks<ROWS, KBYTES, THREADS>;
    constexpr int ROW_STEP = chunks::ROW_STEP, EPC = CHUNK_BYTES / ES, PER = chunks::PER_THREAD;
    const char *even = s.origin[0] + (int64_t)k0 * ES + s.offset, *odd = s.origin[1] + (int64_t)k0 * ES + s.offset;
    if (whole) {
      /* pinned here too: hoisted out of the main loop, each chunk's row bit would take a register */
      const uint32_t inside = pinned(s.inside), odd_step = pinned(s.odd_step), pair_step = pinned(s.pair_step);
#pragma unroll
      for (int i = 0; i < PER; ++i) {
        if (i < part * PER / parts || i >= (part + 1) * PER / parts) continue;
        if (!chunks::exists(i) || !((inside >> i) & 1u)) continue;
        copy_chunk_async(shared_address(tile + s.dst + i * ROW_STEP * KBYTES),
                         (i % 2 ? odd + odd_step : even) + (i / 2) * pair_step);
      }
    } else {
      /* the same k for every chunk of the thread */
      const int k_bytes = min(max(k_end - (k_begin + k0 + chunks::column() * EPC), 0), EPC) * ES;
#pragma unroll
      for (int i = 0; i < PER; ++i) {
        if (i < part * PER / parts || i >= (part + 1) * PER / parts) continue;
        if (!chunks::exists(i)) continue;
        const int bytes = (s.inside >> i) & 1u ? k_bytes : 0;
        const char *src = (i % 2 ? odd + s.odd_step : even) + (i / 2) * s.pair_step;
        copy_chunk_async_fill(shared_address(tile + s.dst + i * ROW_STEP * KBYTES),
                              bytes > 0 ? src : s.origin[0] + (int64_t)k0 * ES, bytes);
      }
    }
  } else if (MODE == MODE_MN) {
    /* rows of the shared tile are k; the chunk holds 8 consecutive m (or tile columns) */
    constexpr int CPR = ROWS * 2 / CHUNK_BYTES, ROW_STEP = THREADS / CPR;
    static_assert(THREADS % CPR == 0, "a thread keeps its columns over the tile");
    const int r0 = threadIdx.x / CPR, c = threadIdx.x % CPR;
    const bool up_half = IS_B && (p.flags & KF_GEMM_SWIGLU_PAIRS) && (c * 8 / GROUP) % 2;
    const char *origin = (up_half ? s.origin[1] : s.origin[0]) + (int64_t)k0 * ld * 2;
    if (whole) {
      if (s.inside == 0) return;
#pragma unroll
      for (int i = 0; i < PER_THREAD; ++i) {
        if (i < part * PER_THREAD / parts || i >= (part + 1) * PER_THREAD / parts) continue;
        const int kr = r0 + i * ROW_STEP;
        copy_chunk_async_fill(shared_address(tile + kr * (ROWS * 2) + swizzle(kr, c, CPR) * CHUNK_BYTES),
                              origin + s.offset + i * s.pair_step, (int)s.inside);
      }
    } else {
#pragma unroll
      for (int i = 0; i < PER_THREAD; ++i) {
        if (i < part * PER_THREAD / parts || i >= (part + 1) * PER_THREAD / parts) continue;
        const int kr = r0 + i * ROW_STEP;
        const int bytes = k_begin + k0 + kr < k_end ? (int)s.inside : 0;
        copy_chunk_async_fill(shared_address(tile + kr * (ROWS * 2) + swizzle(kr, c, CPR) * CHUNK_BYTES),
                              origin + (bytes > 0 ? s.offset + i * s.pair_step : 0u), bytes);
      }
    }
  } else {
    constexpr int CPR = KBYTES / CHUNK_BYTES;
    constexpr int EPC = CHUNK_BYTES / ES; /* elements per chunk */
#pragma unroll
    for (int i = 0; i < PER_THREAD; ++i) {
      if (i < part * PER_THREAD / parts || i >= (part + 1) * PER_THREAD / parts) continue;
      const int chunk = threadIdx.x + i * THREADS;
      if (CHUNKS % THREADS != 0 && chunk >= CHUNKS) break;
      const int r = chunk / CPR, c = chunk % CPR;
      const int k = k_begin + k0 + c * EPC;
      int index = first_row + r;
      const char *src = base;
      if (IS_B) src = b_column<GROUP>(p, base, base_up, first_row, r, &index);
      char *dst = tile + r * KBYTES + swizzle(r, c, CPR) * CHUNK_BYTES;
      /* k-contiguous in shared memory whatever the stored layout: A stored [m][k] unless trans_a,
       * B stored [k][n] unless trans_b. */
      const bool k_contiguous = IS_B ? p.trans_b != 0 : p.trans_a == 0;
      uint32_t words[4] = {0u, 0u, 0u, 0u};
      if (index < row_limit) {
#pragma unroll
        for (int e = 0; e < EPC; ++e) {
          if (k + e >= k_end) break;
          const int64_t at = k_contiguous ? (int64_t)index * ld + k + e : (int64_t)(k + e) * ld + index;
          uint32_t bits;
          if (ES == 1) bits = reinterpret_cast<const uint8_t *>(src)[at];
          else if (ES == 2) bits = reinterpret_cast<const uint16_t *>(src)[at];
          else bits = reinterpret_cast<const uint32_t *>(src)[at];
          words[e * ES / 4] |= bits << (8 * ((e * ES) % 4));
        }
      }
      *reinterpret_cast<uint4 *>(dst) = make_uint4(words[0], words[1], words[2], words[3]);
    }
  }
}

/* Zeroes, in every stage, this thread's chunks that load_tile skips in whole k tiles (k-mode rows and
 * m/n-mode columns outside the matrix: fixed for the block). Each thread clears only chunks it would
 * copy, and the barrier before the first ldmatrix publishes them. */
template <int ELEM, int MODE, int ROWS, int KBYTES, int THREADS, int STAGES>
__device__ __forceinline__ void clear_outside(const operand_source &s, char *tiles) {
  constexpr int CHUNKS = ROWS * KBYTES / CHUNK_BYTES;
  constexpr int PER_THREAD = (CHUNKS + THREADS - 1) / THREADS;
  if (MODE == MODE_K) {
    using chunks = k_chunks<ROWS, KBYTES, THREADS>;
    for (int stage = 0; stage < STAGES; ++stage)
#pragma unroll
      for (int i = 0; i < chunks::PER_THREAD; ++i) {
        if (!chunks::exists(i) || ((s.inside >> i) & 1u)) continue;
        *reinterpret_cast<uint4 *>(tiles + stage * ROWS * KBYTES + s.dst + i * chunks::ROW_STEP * KBYTES) =
            make_uint4(0u, 0u, 0u, 0u);
      }
  } else if (MODE == MODE_MN) {
    constexpr int CPR = ROWS * 2 / CHUNK_BYTES, ROW_STEP = THREADS / CPR;
    const int r0 = threadIdx.x / CPR, c = threadIdx.x % CPR;
    if (s.inside != 0) return;
    for (int stage = 0; stage < STAGES; ++stage)
#pragma unroll
      for (int i = 0; i < PER_THREAD; ++i) {
        const int kr = r0 + i * ROW_STEP;
        *reinterpret_cast<uint4 *>(tiles + stage * ROWS * KBYTES + kr * (ROWS * 2) + swizzle(kr, c, CPR) * CHUNK_BYTES) =
            make_uint4(0u, 0u, 0u, 0u);
      }
  }
}

/* bar.sync over the first THREADS threads of the block (barrier 1), or __syncthreads when they are all. */
template <int THREADS>
__device__ __forceinline__ void sync_threads_of(bool whole_block) {
  if (whole_block) __syncthreads();
  else asm volatile("bar.sync 1, %0;\n" ::"n"(THREADS) : "memory");
}

/* Epilogue through shared memory: the compute warps put their accumulators into an f32 stash over the
 * drained stages, then the threads walk C in row order, consecutive threads on consecutive columns (8
 * per thread and step with 16-byte stores, else a column pair through emit_pair), so that a warp's
 * stores cover one contiguous run of a row and emit_pair is inlined twice instead of per accumulator.
 * STASH_LD puts the 8 rows of one float2 store 8 banks apart: two wavefronts, the least for 256 bytes.
 * When the stages cannot hold the whole tile's stash (the sm_80 large tile), it goes one warp row
 * (MI * 16 tile rows) per pass, which keeps the other warps' accumulators live through the stores of a
 * pass. The launch gives max(stages, stash) bytes (cuda_gemm.c). Warps 0..THREADS / 32 - 1 take part
 * and hold accumulators; `whole_block` when they are the whole block (else they synchronize through
 * barrier 1). The caller has made sure no copy into the stages is still in flight. */
template <int WARPS_M, int WARPS_N, int MI, int STAGE_BYTES, int THREADS>
__device__ __forceinline__ void store_through_stash(const kf_cuda_gemm_params &p, const block_place &place,
                                                    const float (&acc)[MI][WARP_TILE_N / 8][4], char *shared, int m0,
                                                    int n0, bool whole_block) {
  constexpr int NI = WARP_TILE_N / 8;
  constexpr int BM = WARPS_M * MI * 16, BN = WARPS_N * WARP_TILE_N;
  constexpr int STASH_LD = BN + 8;
  constexpr int PASSES = BM * STASH_LD * 4 <= STAGE_BYTES ? 1 : WARPS_M;
  constexpr int STASH_ROWS = BM / PASSES;
  const bool swiglu = (p.flags & KF_GEMM_SWIGLU_PAIRS) != 0;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int warp_m = warp / WARPS_N, warp_n = warp % WARPS_N;
  float *stash = reinterpret_cast<float *>(shared);
  /* SwiGLU: tile columns are groups of SWIGLU_GROUP_MMA gate then the matching up columns (b_column).
   * Each thread takes STORE_COLUMNS consecutive columns of C at a time: 2^group_shift groups per row. */
  static_assert(BN == 256 && STORE_COLUMNS == 8, "group_shift and pair_shift below");
  const int group_shift = swiglu ? 4 : 5;
  /* One 16-byte store per group (two for f32) when nothing but alpha (and SwiGLU) applies and C's rows
   * and batch entries are 16-byte aligned (emit_pair at the tile's ragged edges); otherwise emit_pair
   * for one column pair per thread and step, which keeps those stores and the loads of bias, residual
   * and C coalesced. */
  const int c_dt = (int)((p.dtypes >> KF_GEMM_DT_SHIFT_C) & 15);
  const int64_t c_bytes = c_dt == KF_DT_F32 ? 4 : 2;
  const bool vector_stores = p.splits == 1 &&
                             !(p.flags & (KF_GEMM_HAS_BIAS | KF_GEMM_HAS_RESIDUAL | KF_GEMM_READ_C)) &&
                             p.c % 16 == 0 && p.ldc * c_bytes % 16 == 0 && p.batch_stride_c * c_bytes % 16 == 0;
  /* Accumulator block (i, j): elements 0, 1 at row g, columns 2t, 2t+1; elements 2, 3 at row g + 8. */
  const int g = lane / 4, t = lane % 4;
#pragma unroll 1
  for (int pass = 0; pass < PASSES; ++pass) {
    /* the stages (first pass) or the previous pass's stash are no longer read */
    sync_threads_of<THREADS>(whole_block);
    if (PASSES == 1 || warp_m == pass) {
      const int first = PASSES == 1 ? warp_m * MI * 16 : 0;
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j)
#pragma unroll
          for (int half = 0; half < 2; ++half)
            *reinterpret_cast<float2 *>(stash + (first + i * 16 + g + 8 * half) * STASH_LD + warp_n * WARP_TILE_N +
                                        j * 8 + 2 * t) = make_float2(acc[i][j][2 * half], acc[i][j][2 * half + 1]);
    }
    sync_threads_of<THREADS>(whole_block);
    if (!vector_stores) {
      /* one column pair per thread and step: a warp's stores cover 32 consecutive pairs of one row */
      const int pair_shift = group_shift + 2; /* STORE_COLUMNS / 2 pairs per group */
      for (int e = threadIdx.x; e < (STASH_ROWS << pair_shift); e += THREADS) {
        const int row = e >> pair_shift, col = (e & ((1 << pair_shift) - 1)) * 2; /* of the pass's C */
        const int gate_col = swiglu ? col / SWIGLU_GROUP_MMA * (2 * SWIGLU_GROUP_MMA) + col % SWIGLU_GROUP_MMA : col;
        const float2 gate = *reinterpret_cast<const float2 *>(stash + row * STASH_LD + gate_col);
        float2 up = make_float2(0.0f, 0.0f);
        if (swiglu) up = *reinterpret_cast<const float2 *>(stash + row * STASH_LD + gate_col + SWIGLU_GROUP_MMA);
        emit_pair(p, place.batch_index, place.split, m0 + pass * STASH_ROWS + row, n0 + col, gate.x, gate.y, up.x,
                  up.y);
      }
      continue;
    }
    for (int e = threadIdx.x; e < (STASH_ROWS << group_shift); e += THREADS) {
      const int row = e >> group_shift, col = (e & ((1 << group_shift) - 1)) * STORE_COLUMNS; /* of the pass's C */
      const int gate_col = swiglu ? col / SWIGLU_GROUP_MMA * (2 * SWIGLU_GROUP_MMA) + col % SWIGLU_GROUP_MMA : col;
      const float *gate = stash + row * STASH_LD + gate_col, *up = gate + SWIGLU_GROUP_MMA;
      const int c_row = m0 + pass * STASH_ROWS + row, c_col = n0 + col;
      if (c_row < p.m && c_col + STORE_COLUMNS <= p.n) {
        float v[STORE_COLUMNS];
#pragma unroll
        for (int q = 0; q < STORE_COLUMNS; q += 4) {
          const float4 g = *reinterpret_cast<const float4 *>(gate + q);
          v[q] = p.alpha * g.x, v[q + 1] = p.alpha * g.y, v[q + 2] = p.alpha * g.z, v[q + 3] = p.alpha * g.w;
          if (swiglu) {
            const float4 u = *reinterpret_cast<const float4 *>(up + q);
            v[q] = silu(v[q]) * (p.alpha * u.x), v[q + 1] = silu(v[q + 1]) * (p.alpha * u.y);
            v[q + 2] = silu(v[q + 2]) * (p.alpha * u.z), v[q + 3] = silu(v[q + 3]) * (p.alpha * u.w);
          }
        }
        char *c = reinterpret_cast<char *>(p.c) +
                  (place.batch_index * p.batch_stride_c + (int64_t)c_row * p.ldc + c_col) * c_bytes;
        if (c_dt == KF_DT_F32) {
          reinterpret_cast<float4 *>(c)[0] = make_float4(v[0], v[1], v[2], v[3]);
          reinterpret_cast<float4 *>(c)[1] = make_float4(v[4], v[5], v[6], v[7]);
        } else {
          uint32_t w[STORE_COLUMNS / 2];
#pragma unroll
          for (int q = 0; q < STORE_COLUMNS / 2; ++q) {
            if (c_dt == KF_DT_F16) {
              const __half2 h = __floats2half2_rn(v[2 * q], v[2 * q + 1]);
              w[q] = *reinterpret_cast<const uint32_t *>(&h);
            } else {
              const __nv_bfloat162 h = __floats2bfloat162_rn(v[2 * q], v[2 * q + 1]);
              w[q] = *reinterpret_cast<const uint32_t *>(&h);
            }
          }
          *reinterpret_cast<uint4 *>(c) = make_uint4(w[0], w[1], w[2], w[3]);
        }
      } else {
        /* the tile's ragged edge */
#pragma unroll 1
        for (int q = 0; q < STORE_COLUMNS; q += 2)
          emit_pair(p, place.batch_index, place.split, c_row, c_col + q, gate[q], gate[q + 1], swiglu ? up[q] : 0.0f,
                    swiglu ? up[q + 1] : 0.0f);
      }
    }
  }
}

/* The mmas of one k-step for f16, bf16 and tf32 fragments (both tensor-core kernels): tf32 operands
 * rounded first, then a serpentine over j so that consecutive mmas share an A or B fragment. */
template <int ELEM, int MI, int NI>
__device__ __forceinline__ void mma_fragments_16(float (&acc)[MI][NI][4], uint32_t (&af)[MI][4],
                                                 uint32_t (&bf)[NI][2]) {
  if (ELEM == ELEM_TF32) {
#pragma unroll
    for (int i = 0; i < MI; ++i) round_tf32(af[i]);
#pragma unroll
    for (int j = 0; j < NI; ++j) round_tf32(bf[j]);
  }
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int jj = 0; jj < NI; ++jj) {
      const int j = i % 2 ? NI - 1 - jj : jj;
      mma_step<ELEM>(acc[i][j], af[i], bf[j]);
    }
}

/* One warp's ldmatrix addressing for the A and B fragments of an mma k-step (16 k), shared by both
 * tensor-core kernels. k-contiguous operands: A matrices (m 0-7, k lo), (m 8-15, k lo), (m 0-7, k hi),
 * (m 8-15, k hi); B matrices b0 and b1 of n-block 2j, then of n-block 2j + 1. The swizzle XORs the chunk
 * with bits of row & 7 only, and every fragment's rows start at a multiple of 8, so chunk 2 * step + h
 * lands at (2 * step) ^ swizzle(row, h): one per-lane value per operand. m/n-contiguous operands use
 * transposed ldmatrix with the swizzle of the m/n-major layout. */
template <int MODE_A, int MODE_B, int MI, int BM, int BN, int KBYTES>
struct fragment_loader {
  static constexpr int NI = WARP_TILE_N / 8;
  static constexpr int CPR = KBYTES / CHUNK_BYTES; /* chunks per k-contiguous shared row */
  int warp_m, warp_n, mat, mat_row, a_chunk, b_chunk;
  uint32_t a_lane, b_lane;

  __device__ __forceinline__ fragment_loader(int warp_m_, int warp_n_, int lane)
      : warp_m(warp_m_), warp_n(warp_n_), mat(lane / 8), mat_row(lane % 8) {
    /* ldmatrix.x4: lanes 8j..8j+7 give the row addresses of matrix j. */
    const int a_row = warp_m * MI * 16 + lane % 16, b_row = warp_n * WARP_TILE_N + (mat / 2) * 8 + mat_row;
    a_lane = a_row * KBYTES, b_lane = b_row * KBYTES;
    a_chunk = swizzle(a_row, lane / 16, CPR), b_chunk = swizzle(b_row, mat % 2, CPR);
  }

  /* Fragments of k-step `step` of the stage whose A and B tiles start at a_tile and b_tile. */
  __device__ __forceinline__ void load(uint32_t (&af)[MI][4], uint32_t (&bf)[NI][2], uint32_t a_tile,
                                       uint32_t b_tile, int step) const {
#pragma unroll
    for (int i = 0; i < MI; ++i) {
      if (MODE_A == MODE_MN) {
        /* matrices: (k 0-7, m 0-7), (k 0-7, m 8-15), (k 8-15, m 0-7), (k 8-15, m 8-15) */
        const int k = step * 16 + (mat / 2) * 8 + mat_row;
        const int chunk = (warp_m * MI * 16 + i * 16 + (mat % 2) * 8) / 8;
        load_matrix_x4<true>(af[i], a_tile + k * (BM * 2) + swizzle(k, chunk, BM / 8) * CHUNK_BYTES);
      } else {
        load_matrix_x4<false>(af[i], a_tile + a_lane + i * 16 * KBYTES + ((2 * step) ^ a_chunk) * CHUNK_BYTES);
      }
    }
#pragma unroll
    for (int j = 0; j < NI / 2; ++j) {
      uint32_t r[4];
      if (MODE_B == MODE_MN) {
        const int k = step * 16 + (mat % 2) * 8 + mat_row;
        const int chunk = (warp_n * WARP_TILE_N + j * 16 + (mat / 2) * 8) / 8;
        load_matrix_x4<true>(r, b_tile + k * (BN * 2) + swizzle(k, chunk, BN / 8) * CHUNK_BYTES);
      } else {
        load_matrix_x4<false>(r, b_tile + b_lane + j * 16 * KBYTES + ((2 * step) ^ b_chunk) * CHUNK_BYTES);
      }
      bf[2 * j][0] = r[0];
      bf[2 * j][1] = r[1];
      bf[2 * j + 1][0] = r[2];
      bf[2 * j + 1][1] = r[3];
    }
  }
};

/* Block tile (WARPS_M * MI * 16) x (WARPS_N * 64), k tiles of KBYTES bytes, STAGES of them in flight.
 * Step s of a k tile is one mma k-step (32 bytes of k). With double fragments the ldmatrix loads of
 * step s + 1 are issued before the mma of step s, across the stage boundary too: the one barrier of a
 * k tile sits before its last step, where the next stage must have landed, and it also tells every
 * warp that the stage read two steps earlier is free for the copies issued after it. */
template <int ELEM, int MODE_A, int MODE_B, int WARPS_M, int WARPS_N, int MI, int KBYTES, int STAGES,
          int FRAGMENT_SETS>
__device__ __forceinline__ void gemm_tensor_core(const kf_cuda_gemm_params &p) {
  constexpr int ES = element_bytes(ELEM);
  constexpr int TILE_K = KBYTES / ES;
  constexpr int STEPS = KBYTES / 32;
  constexpr int NI = WARP_TILE_N / 8;
  constexpr int BM = WARPS_M * MI * 16, BN = WARPS_N * WARP_TILE_N;
  constexpr int THREADS = WARPS_M * WARPS_N * 32;
  constexpr int A_STAGE_BYTES = BM * KBYTES, B_STAGE_BYTES = BN * KBYTES;
  constexpr bool DOUBLE_FRAGMENTS = FRAGMENT_SETS == 2;
  /* Copies of the next stage go out over the steps before the barrier (all steps without double
   * fragments, whose barrier opens the k tile). */
  constexpr int LOAD_PARTS = DOUBLE_FRAGMENTS ? STEPS - 1 : STEPS;
  static_assert(STEPS % 2 == 0 && STAGES >= 3, "fragment buffers alternate within and across k tiles");
  extern __shared__ __align__(128) char shared[];
  char *a_tiles = shared;
  char *b_tiles = shared + STAGES * A_STAGE_BYTES;
  const uint32_t a_shared = shared_address(a_tiles), b_shared = shared_address(b_tiles);

  const block_place place = place_block(p);
  const bool swiglu = (p.flags & KF_GEMM_SWIGLU_PAIRS) != 0;
  const int m0 = place.tile_m * BM;
  const int n0 = place.tile_n * (swiglu ? BN / 2 : BN); /* first column of C (and of each B half) */
  const k_range kr = split_k_range(p, place.split);
  const int k_tiles = (kr.end - kr.begin + TILE_K - 1) / TILE_K;
  const char *a = reinterpret_cast<const char *>(p.a) + place.batch_index * p.batch_stride_a * ES;
  const char *b = reinterpret_cast<const char *>(p.b) + place.batch_index * p.batch_stride_b * ES;
  const char *b_up = swiglu ? reinterpret_cast<const char *>(p.b_up) + place.batch_index * p.batch_stride_b * ES : b;

  const operand_source a_source =
      source_of<ELEM, MODE_A, BM, KBYTES, THREADS, false, SWIGLU_GROUP_MMA>(p, a, a, p.lda, m0, p.m, kr.begin);
  const operand_source b_source =
      source_of<ELEM, MODE_B, BN, KBYTES, THREADS, true, SWIGLU_GROUP_MMA>(p, b, b_up, p.ldb, n0, p.n, kr.begin);
  clear_outside<ELEM, MODE_A, BM, KBYTES, THREADS, STAGES>(a_source, a_tiles);
  clear_outside<ELEM, MODE_B, BN, KBYTES, THREADS, STAGES>(b_source, b_tiles);
  /* The k range's partial last tile, if any, is computed first, so that only the prologue loads a
   * partial tile: logical tile 0 is then the last k tile and tile t > 0 is k tile t - 1. */
  const int tail = (kr.end - kr.begin) % TILE_K != 0 ? 1 : 0;
  /* k0: the tile's first k relative to kr.begin */
  auto load_stage = [&](int stage, int k0, int part, int parts, auto maybe_partial) {
    constexpr bool MAYBE_PARTIAL = decltype(maybe_partial)::value;
    load_tile<ELEM, MODE_A, BM, KBYTES, THREADS, false, SWIGLU_GROUP_MMA, MAYBE_PARTIAL>(
        p, a_source, a_tiles + stage * A_STAGE_BYTES, a, a, p.lda, m0, p.m, kr.begin, k0, kr.end, part, parts);
    load_tile<ELEM, MODE_B, BN, KBYTES, THREADS, true, SWIGLU_GROUP_MMA, MAYBE_PARTIAL>(
        p, b_source, b_tiles + stage * B_STAGE_BYTES, b, b_up, p.ldb, n0, p.n, kr.begin, k0, kr.end, part, parts);
  };

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int warp_m = warp / WARPS_N, warp_n = warp % WARPS_N;
  const fragment_loader<MODE_A, MODE_B, MI, BM, BN, KBYTES> fragments(warp_m, warp_n, lane);
  auto load_fragments = [&](uint32_t(&af)[MI][4], uint32_t(&bf)[NI][2], int stage, int step) {
    fragments.load(af, bf, a_shared + stage * A_STAGE_BYTES, b_shared + stage * B_STAGE_BYTES, step);
  };

  float acc[MI][NI][4];
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

  auto mma_fragments = [&](uint32_t(&af)[MI][4], uint32_t(&bf)[NI][2]) {
    if (ELEM == ELEM_E4M3) {
      uint32_t a_low[MI][4], a_high[MI][4];
#pragma unroll
      for (int i = 0; i < MI; ++i) widen_e4m3(af[i], a_low[i], a_high[i]);
#pragma unroll
      for (int j = 0; j < NI; ++j) {
        uint32_t b_low[2], b_high[2];
        widen_e4m3(bf[j], b_low, b_high);
#pragma unroll
        for (int i = 0; i < MI; ++i) {
          mma_f16(acc[i][j], a_low[i], b_low[0], b_low[1]);
          mma_f16(acc[i][j], a_high[i], b_high[0], b_high[1]);
        }
      }
    } else {
      mma_fragments_16<ELEM, MI, NI>(acc, af, bf);
    }
  };

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < k_tiles) {
      if (s == 0) load_stage(s, (tail ? k_tiles - 1 : 0) * TILE_K, 0, 1, bool_constant<true>());
      else load_stage(s, (s - tail) * TILE_K, 0, 1, bool_constant<false>());
    }
    commit_async();
  }

  uint32_t af[DOUBLE_FRAGMENTS ? 2 : 1][MI][4], bf[DOUBLE_FRAGMENTS ? 2 : 1][NI][2];
  int read_stage = 0, write_stage = STAGES - 1;
  if (DOUBLE_FRAGMENTS && k_tiles > 0) {
    wait_async<STAGES - 2>();
    __syncthreads();
    load_fragments(af[0], bf[0], 0, 0);
  }
  for (int kt = 0; kt < k_tiles; ++kt) {
    if (!DOUBLE_FRAGMENTS) {
      wait_async<STAGES - 2>();
      __syncthreads();
    }
    const int next = kt + STAGES - 1; /* the k tile whose copies this one issues */
#pragma unroll
    for (int step = 0; step < STEPS; ++step) {
      if (DOUBLE_FRAGMENTS) {
        if (step == STEPS - 1) {
          wait_async<STAGES - 2>();
          __syncthreads();
          read_stage = read_stage == STAGES - 1 ? 0 : read_stage + 1;
        }
        if (step < STEPS - 1 || kt + 1 < k_tiles)
          load_fragments(af[(step + 1) % 2], bf[(step + 1) % 2], read_stage, (step + 1) % STEPS);
      } else {
        load_fragments(af[0], bf[0], read_stage, step);
      }
      if (step < LOAD_PARTS) {
        if (next < k_tiles) load_stage(write_stage, (next - tail) * TILE_K, step, LOAD_PARTS, bool_constant<false>());
        if (step == LOAD_PARTS - 1) {
          commit_async();
          write_stage = write_stage == STAGES - 1 ? 0 : write_stage + 1;
        }
      }
      mma_fragments(af[DOUBLE_FRAGMENTS ? step % 2 : 0], bf[DOUBLE_FRAGMENTS ? step % 2 : 0]);
    }
    if (!DOUBLE_FRAGMENTS) read_stage = read_stage == STAGES - 1 ? 0 : read_stage + 1;
  }

  wait_async<0>();
  store_through_stash<WARPS_M, WARPS_N, MI, STAGES * (A_STAGE_BYTES + B_STAGE_BYTES), THREADS>(p, place, acc, shared,
                                                                                          m0, n0, true);
}

/* ---- warp-specialized tensor-core kernel (cp.async operand modes) ----------------------------- */

/* mbarrier primitives (sm_80: mbarrier.init/arrive/test_wait and cp.async.mbarrier.arrive; sm_90
 * waits with try_wait, which lets the hardware suspend the warp instead of spinning). */
__device__ __forceinline__ void barrier_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}

__device__ __forceinline__ void barrier_arrive(uint32_t bar) {
  asm volatile("{\n .reg .b64 state;\n mbarrier.arrive.shared.b64 state, [%0];\n}\n" ::"r"(bar) : "memory");
}

/* Arrives on `bar` once every cp.async this thread issued so far has landed (.noinc: the barrier's
 * count includes these arrivals). */
__device__ __forceinline__ void barrier_arrive_after_copies(uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared.b64 [%0];\n" ::"r"(bar) : "memory");
}

/* setmaxnreg (sm_90a): moves registers from the copy warps, which need few, to the compute warps, so
 * that the block's 12 warps still give each compute warp the registers of a 64x64 warp tile with two
 * fragment sets. Executed by whole warpgroups. */
template <bool RAISE, int REGISTERS>
__device__ __forceinline__ void set_register_limit() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if (RAISE) asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(REGISTERS));
  else asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(REGISTERS));
#endif
}

/* Waits until the phase of `bar` with parity `parity` has completed. */
__device__ __forceinline__ void barrier_wait(uint32_t bar, uint32_t parity) {
  uint32_t done;
  do {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
#else
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.test_wait.parity.shared.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
#endif
  } while (!done);
}

/* The copy warps' share of one k tile of a k-contiguous operand: ROWS shared rows of KBYTES bytes, CPR
 * chunks each. Thread t copies chunk t % CPR of rows t / CPR + ROW_STEP * i. With SwiGLU pairs (B only)
 * shared row r holds column r / 64 * 32 + r % 32 of the gate half when (r / 32) is even, else of the up
 * half (b_column, GROUP 32); ROW_STEP divides 32, so the thread's first row stays an offset added to
 * every copy's row. Everything a copy needs but its row is fixed for the block. */
template <int ELEM, int ROWS, int KBYTES, int COPY_THREADS>
struct k_copy_plan {
  static constexpr int ES = element_bytes(ELEM);
  static constexpr int CPR = KBYTES / CHUNK_BYTES;
  static constexpr int ROW_STEP = COPY_THREADS / CPR;
  static constexpr int COPIES = ROWS / ROW_STEP;
  /* rows r and r + 8 share a swizzle */
  static constexpr int PERIOD = ROW_STEP >= 8 ? 1 : 8 / ROW_STEP;
  static_assert(COPY_THREADS % CPR == 0 && ROWS % ROW_STEP == 0 && 32 % ROW_STEP == 0, "k-mode copy plan");
  static __device__ __forceinline__ int source_row(int i, bool pairs) {
    return pairs ? i * ROW_STEP / 64 * 32 + i * ROW_STEP % 32 : i * ROW_STEP;
  }
  static __device__ __forceinline__ int up_half(int i, bool pairs) { return pairs && (i * ROW_STEP / 32) % 2; }

  const char *origin[2]; /* this thread's chunk of source row 0 (+ the thread's first row), k 0 */
  const char *safe;      /* inside the matrix: the source of zero-byte copies */
  uint32_t row_bytes;    /* ld in bytes */
  int rows_inside;       /* copy i reads inside the matrix when source_row(i) < rows_inside */
  int k_chunk;           /* the chunk's first k relative to the tile */
  uint32_t dst[PERIOD];

  __device__ __forceinline__ void init(const char *base, const char *base_up, int64_t ld, int first_row,
                                       int row_limit, int k_begin, int copy_thread, bool pairs) {
    const int c = copy_thread % CPR, r0 = copy_thread / CPR;
    const int64_t offset = ((int64_t)(first_row + r0) * ld + k_begin) * ES + c * CHUNK_BYTES;
    origin[0] = base + offset;
    origin[1] = (pairs ? base_up : base) + offset;
    safe = base + ((int64_t)first_row * ld + k_begin) * ES;
    row_bytes = (uint32_t)(ld * ES);
    rows_inside = row_limit - first_row - r0;
    k_chunk = c * (CHUNK_BYTES / ES);
#pragma unroll
    for (int q = 0; q < PERIOD; ++q) {
      const int r = r0 + q * ROW_STEP;
      dst[q] = r * KBYTES + swizzle(r, c, CPR) * CHUNK_BYTES;
    }
  }

  /* k tile at k0 (relative to the split's first k) of `k_len` into `tile` (shared address). */
  __device__ __forceinline__ void copy(uint32_t tile, int k0, int k_len, bool pairs, bool rows_whole) const {
    const int64_t k_offset = (int64_t)k0 * ES;
    const char *even = origin[0] + k_offset, *odd = origin[1] + k_offset;
    if (rows_whole && k0 + KBYTES / ES <= k_len) {
#pragma unroll
      for (int i = 0; i < COPIES; ++i)
        copy_chunk_async(tile + dst[i % PERIOD] + i / PERIOD * PERIOD * ROW_STEP * KBYTES,
                         (up_half(i, pairs) ? odd : even) + source_row(i, pairs) * row_bytes);
    } else {
      const int k_bytes = min(max(k_len - k0 - k_chunk, 0), CHUNK_BYTES / ES) * ES;
#pragma unroll
      for (int i = 0; i < COPIES; ++i) {
        const bool inside = source_row(i, pairs) < rows_inside && k_bytes > 0;
        const char *src = (up_half(i, pairs) ? odd : even) + source_row(i, pairs) * row_bytes;
        copy_chunk_async_fill(tile + dst[i % PERIOD] + i / PERIOD * PERIOD * ROW_STEP * KBYTES,
                              inside ? src : safe, inside ? k_bytes : 0);
      }
    }
  }
};

/* The copy warps' share of one k tile of an m/n-contiguous 16-bit operand: TILE_K shared rows (k) of
 * ROWS * 2 bytes. Thread t copies chunk t % CPR (8 columns: m, or tile columns of B) of k rows
 * t / CPR + ROW_STEP * i. */
template <int ROWS, int KBYTES, int COPY_THREADS>
struct mn_copy_plan {
  static constexpr int TILE_K = KBYTES / 2;
  static constexpr int CPR = ROWS * 2 / CHUNK_BYTES;
  static constexpr int ROW_STEP = COPY_THREADS / CPR;
  static constexpr int COPIES = TILE_K / ROW_STEP;
  static constexpr int PERIOD = ROW_STEP >= 8 ? 1 : 8 / ROW_STEP;
  static_assert(COPY_THREADS % CPR == 0 && TILE_K % ROW_STEP == 0, "m/n-mode copy plan");

  const char *origin; /* this thread's chunk at k row 0 of the split (+ the thread's first k row) */
  const char *safe;   /* inside the matrix: the source of zero-byte copies */
  uint32_t row_bytes;
  int inside;         /* bytes of the chunk inside the matrix (0..16) */
  int k_row;          /* the thread's first k row */
  uint32_t dst[PERIOD];

  __device__ __forceinline__ void init(const kf_cuda_gemm_params &p, const char *base, const char *base_up,
                                       int64_t ld, int first_row, int row_limit, int k_begin, int copy_thread,
                                       bool is_b) {
    const int c = copy_thread % CPR;
    k_row = copy_thread / CPR;
    int index = first_row + c * 8;
    const char *src = base;
    if (is_b) src = b_column<SWIGLU_GROUP_MMA>(p, base, base_up, first_row, c * 8, &index);
    inside = min(max(row_limit - index, 0), 8) * 2;
    origin = src + ((int64_t)(k_begin + k_row) * ld + index) * 2;
    safe = base + ((int64_t)k_begin * ld + first_row) * 2;
    row_bytes = (uint32_t)(ld * 2);
#pragma unroll
    for (int q = 0; q < PERIOD; ++q) {
      const int r = k_row + q * ROW_STEP;
      dst[q] = r * (ROWS * 2) + swizzle(r, c, CPR) * CHUNK_BYTES;
    }
  }

  __device__ __forceinline__ void copy(uint32_t tile, int k0, int k_len) const {
    const char *first = origin + (int64_t)k0 * row_bytes;
    if (inside == CHUNK_BYTES && k0 + TILE_K <= k_len) {
#pragma unroll
      for (int i = 0; i < COPIES; ++i)
        copy_chunk_async(tile + dst[i % PERIOD] + i / PERIOD * PERIOD * ROW_STEP * (ROWS * 2),
                         first + i * ROW_STEP * row_bytes);
    } else {
#pragma unroll
      for (int i = 0; i < COPIES; ++i) {
        const bool in = inside > 0 && k0 + k_row + i * ROW_STEP < k_len;
        copy_chunk_async_fill(tile + dst[i % PERIOD] + i / PERIOD * PERIOD * ROW_STEP * (ROWS * 2),
                              in ? first + i * ROW_STEP * row_bytes : safe, in ? inside : 0);
      }
    }
  }
};

template <int ELEM, int MODE, int ROWS, int KBYTES, int COPY_THREADS>
struct copy_plan_of {
  typedef k_copy_plan<ELEM, ROWS, KBYTES, COPY_THREADS> type;
};
template <int ELEM, int ROWS, int KBYTES, int COPY_THREADS>
struct copy_plan_of<ELEM, MODE_MN, ROWS, KBYTES, COPY_THREADS> {
  typedef mn_copy_plan<ROWS, KBYTES, COPY_THREADS> type;
};

/* Block tile (WARPS_M * MI * 16) x (WARPS_N * 64) as in gemm_tensor_core, but the compute warps issue
 * no copies: COPY_WARPS more warps copy every k tile into its stage and a per-stage pair of mbarriers
 * hands stages over: `full` completes when a stage's copies have landed (cp.async.mbarrier.arrive from
 * each copy thread), `empty` when every compute thread has loaded its last fragment of the stage. The
 * compute warps never wait on each other (no __syncthreads in the main loop) and their instruction
 * stream is ldmatrix, mma and a barrier wait per k tile. Fragments are double-buffered across steps
 * and stage boundaries as in gemm_tensor_core. cp.async modes only (k or m/n for each operand). */
template <int ELEM, int MODE_A, int MODE_B, int WARPS_M, int WARPS_N, int MI, int KBYTES, int STAGES,
          int COPY_WARPS, int COMPUTE_REGISTERS, int COPY_REGISTERS>
__device__ __forceinline__ void gemm_tensor_core_ws(const kf_cuda_gemm_params &p) {
  constexpr int ES = element_bytes(ELEM);
  constexpr int TILE_K = KBYTES / ES;
  constexpr int STEPS = KBYTES / 32;
  constexpr int NI = WARP_TILE_N / 8;
  constexpr int BM = WARPS_M * MI * 16, BN = WARPS_N * WARP_TILE_N;
  constexpr int COMPUTE_THREADS = WARPS_M * WARPS_N * 32;
  constexpr int A_STAGE_BYTES = BM * KBYTES, B_STAGE_BYTES = BN * KBYTES;
  static_assert(MODE_A != MODE_SCALAR && MODE_B != MODE_SCALAR && ELEM != ELEM_E4M3, "cp.async modes, 2 fragment sets");
  static_assert(STEPS >= 2, "fragment buffers alternate");
  extern __shared__ __align__(128) char shared[];
  __shared__ __align__(8) uint64_t full[STAGES], empty[STAGES];
  const uint32_t a_shared = shared_address(shared), b_shared = a_shared + STAGES * A_STAGE_BYTES;
  const uint32_t full0 = shared_address(&full[0]), empty0 = shared_address(&empty[0]);

  const block_place place = place_block(p);
  const bool swiglu = (p.flags & KF_GEMM_SWIGLU_PAIRS) != 0;
  const int m0 = place.tile_m * BM;
  const int n0 = place.tile_n * (swiglu ? BN / 2 : BN);
  const k_range kr = split_k_range(p, place.split);
  const int k_len = kr.end - kr.begin;
  const int k_tiles = (k_len + TILE_K - 1) / TILE_K;
  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; ++s) {
      barrier_init(full0 + 8 * s, COPY_WARPS * 32);
      barrier_init(empty0 + 8 * s, COMPUTE_THREADS);
    }
  }
  __syncthreads();

  float acc[MI][NI][4];
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (warp >= WARPS_M * WARPS_N) {
    /* copy warps */
    set_register_limit<false, COPY_REGISTERS>();
    const char *a = reinterpret_cast<const char *>(p.a) + place.batch_index * p.batch_stride_a * ES;
    const char *b = reinterpret_cast<const char *>(p.b) + place.batch_index * p.batch_stride_b * ES;
    const char *b_up = swiglu ? reinterpret_cast<const char *>(p.b_up) + place.batch_index * p.batch_stride_b * ES : b;
    const int copy_thread = threadIdx.x - COMPUTE_THREADS;
    typename copy_plan_of<ELEM, MODE_A, BM, KBYTES, COPY_WARPS * 32>::type a_plan;
    typename copy_plan_of<ELEM, MODE_B, BN, KBYTES, COPY_WARPS * 32>::type b_plan;
    if constexpr (MODE_A == MODE_MN) a_plan.init(p, a, a, p.lda, m0, p.m, kr.begin, copy_thread, false);
    else a_plan.init(a, a, p.lda, m0, p.m, kr.begin, copy_thread, false);
    if constexpr (MODE_B == MODE_MN) b_plan.init(p, b, b_up, p.ldb, n0, p.n, kr.begin, copy_thread, true);
    else b_plan.init(b, b_up, p.ldb, n0, p.n, kr.begin, copy_thread, swiglu);
    /* k mode: whether every row of the tile is inside the matrix (the plain-copy path) */
    const bool a_rows_whole = m0 + BM <= p.m, b_rows_whole = n0 + (swiglu ? BN / 2 : BN) <= p.n;
    int stage = 0;
    uint32_t phase = 0;
#pragma unroll 1
    for (int kt = 0; kt < k_tiles; ++kt) {
      if (kt >= STAGES) barrier_wait(empty0 + 8 * stage, phase ^ 1u);
      const int k0 = kt * TILE_K;
      if constexpr (MODE_A == MODE_MN) a_plan.copy(a_shared + stage * A_STAGE_BYTES, k0, k_len);
      else a_plan.copy(a_shared + stage * A_STAGE_BYTES, k0, k_len, false, a_rows_whole);
      if constexpr (MODE_B == MODE_MN) b_plan.copy(b_shared + stage * B_STAGE_BYTES, k0, k_len);
      else b_plan.copy(b_shared + stage * B_STAGE_BYTES, k0, k_len, swiglu, b_rows_whole);
      barrier_arrive_after_copies(full0 + 8 * stage);
      if (++stage == STAGES) stage = 0, phase ^= 1u;
    }
    wait_async<0>();
    return; /* the compute warps store C */
  }
  {
    /* compute warps */
    set_register_limit<true, COMPUTE_REGISTERS>();
    const int warp_m = warp / WARPS_N, warp_n = warp % WARPS_N;
    const fragment_loader<MODE_A, MODE_B, MI, BM, BN, KBYTES> fragments(warp_m, warp_n, lane);
    auto load_fragments = [&](uint32_t(&af)[MI][4], uint32_t(&bf)[NI][2], uint32_t a_tile, uint32_t b_tile,
                              int step) { fragments.load(af, bf, a_tile, b_tile, step); };
    auto mma_fragments = [&](uint32_t(&af)[MI][4], uint32_t(&bf)[NI][2]) {
      mma_fragments_16<ELEM, MI, NI>(acc, af, bf);
    };

    uint32_t af[2][MI][4], bf[2][NI][2];
    int stage = 0;
    uint32_t phase = 0;
    uint32_t a_tile = a_shared, b_tile = b_shared;
    if (k_tiles > 0) {
      barrier_wait(full0, 0);
      load_fragments(af[0], bf[0], a_tile, b_tile, 0);
    }
#pragma unroll 1
    for (int kt = 0; kt < k_tiles; ++kt) {
#pragma unroll
      for (int step = 0; step < STEPS; ++step) {
        if (step == STEPS - 1) {
          /* every fragment of this stage is loaded: hand it back, and move to the next one */
          barrier_arrive(empty0 + 8 * stage);
          if (++stage == STAGES) {
            stage = 0;
            phase ^= 1u;
            a_tile = a_shared;
            b_tile = b_shared;
          } else {
            a_tile += A_STAGE_BYTES;
            b_tile += B_STAGE_BYTES;
          }
          if (kt + 1 < k_tiles) barrier_wait(full0 + 8 * stage, phase);
        }
        if (step < STEPS - 1 || kt + 1 < k_tiles)
          load_fragments(af[(step + 1) % 2], bf[(step + 1) % 2], a_tile, b_tile, (step + 1) % STEPS);
        mma_fragments(af[step % 2], bf[step % 2]);
      }
    }
  }
  /* Every copy has landed: the compute warps waited on every stage they read, and the copy warps
   * issue none past the last k tile. */
  store_through_stash<WARPS_M, WARPS_N, MI, STAGES * (A_STAGE_BYTES + B_STAGE_BYTES), COMPUTE_THREADS>(
      p, place, acc, shared, m0, n0, false);
}

/* Large: 128x256 block tile, 8 warps as 2x4 of 64x64 (128 accumulators per thread; with the two
 * fragment sets the widest warp tile that fits 255 registers: 64x64 reads 4 KiB of shared memory per
 * 16 k for 131 kFLOP, against half that rate for 32x64), 4 stages, one block per SM. The sm_90 machine
 * code takes 128 bytes of k per stage (4 mma steps per barrier, 192 KiB of shared memory; 355 against
 * 304 TFLOP/s for 64 bytes at bf16 4096^3 on an H200); the sm_80 code, which sm_86/sm_89 (99 KiB per
 * block) and the compute_80 PTX also run, 64 bytes (96 KiB). cuda_gemm.c picks the same by compute
 * capability.
 * Small (m <= 16, decode): 16x256, 4 warps as 1x4 of 16x64, 64 bytes of k per stage, 4 stages (68 KiB:
 * three blocks per SM); reads B once and leaves the parallelism to split-K. */
#define LARGE_WARPS_M 2
#define LARGE_WARPS_N 4
#define LARGE_MI 4
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define LARGE_K_BYTES 128
#else
#define LARGE_K_BYTES 64
#endif
#define LARGE_STAGES 4
/* sm_90a: one warpgroup of copy warps beside the two compute warpgroups (gemm_tensor_core_ws). 12 warps
 * at launch get 168 registers each (64 K per SM over 384 threads, per scheduler 3 warps of 16 K / 3);
 * setmaxnreg then gives 232 to each compute thread and 40 to each copy thread (8 * 232 + 4 * 40 = 12 *
 * 168). H200, bf16 4096^3, one harness run: 432 TFLOP/s against 359 for gemm_tensor_core (the copy
 * warps alone 382, the 16-byte epilogue stores the rest). The sm_80 code keeps gemm_tensor_core:
 * without setmaxnreg a ninth warp would cap every warp at 168 registers, too few for the 64x64 warp
 * tile (ptxas spilled over 900 bytes per thread at 8 + 1 warps). */
#define LARGE_COPY_WARPS 4
#define LARGE_COMPUTE_REGISTERS 232
#define LARGE_COPY_REGISTERS 40
#define SMALL_WARPS_M 1
#define SMALL_WARPS_N 4
#define SMALL_MI 1
#define SMALL_K_BYTES 64
#define SMALL_STAGES 4

/* e4m3 widens each fragment into two f16 ones where it is used, and the scalar mode's loads hold
 * their elements in registers: neither leaves registers for a second fragment set, so they load each
 * step's fragments right before its mma. */
#define FRAGMENT_SETS_OF(ELEM, MODE) ((ELEM) == ELEM_E4M3 || (MODE) == MODE_SCALAR ? 1 : 2)

#define KF_TC_KERNEL(ename, ELEM, tname, WM, WN, MI, KB, ST, mname, MA, MB)                                     \
  extern "C" __global__ void __launch_bounds__(WM * WN * 32, 1)                                             \
      kf_gemm_##ename##_##tname##_##mname(const struct kf_cuda_gemm_params p) {                           \
    gemm_tensor_core<ELEM, MA, MB, WM, WN, MI, KB, ST, FRAGMENT_SETS_OF(ELEM, MA)>(p);                      \
  }

#define KF_TC_LARGE(ename, ELEM, mname, MA, MB) \
  KF_TC_KERNEL(ename, ELEM, large, LARGE_WARPS_M, LARGE_WARPS_N, LARGE_MI, LARGE_K_BYTES, LARGE_STAGES, mname, MA, MB)
/* The large tile with copy warps (gemm_tensor_core_ws): the cp.async modes of f16, bf16 and tf32. */
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) /* setmaxnreg: the sm_90a target */
#define KF_TC_LARGE_WS(ename, ELEM, mname, MA, MB)                                                            \
  extern "C" __global__ void __launch_bounds__((LARGE_WARPS_M * LARGE_WARPS_N + LARGE_COPY_WARPS) * 32, 1)     \
      kf_gemm_##ename##_large_##mname(const struct kf_cuda_gemm_params p) {                                   \
    gemm_tensor_core_ws<ELEM, MA, MB, LARGE_WARPS_M, LARGE_WARPS_N, LARGE_MI, LARGE_K_BYTES, LARGE_STAGES,      \
                        LARGE_COPY_WARPS, LARGE_COMPUTE_REGISTERS, LARGE_COPY_REGISTERS>(p);                   \
  }
#else
#define KF_TC_LARGE_WS KF_TC_LARGE
#endif
#define KF_TC_SMALL(ename, ELEM, mname, MA, MB) \
  KF_TC_KERNEL(ename, ELEM, small, SMALL_WARPS_M, SMALL_WARPS_N, SMALL_MI, SMALL_K_BYTES, SMALL_STAGES, mname, MA, MB)

/* Every operand layout of 16-bit inputs on the large tile. The decode tile keeps k-contiguous A:
 * a transposed A of at most 16 columns (m) has no 16-byte row chunks worth an m-contiguous path, so
 * mk and mm decode shapes take the scalar kernel (cuda_gemm.c). */
#define KF_TC_16BIT(ename, ELEM)                      \
  KF_TC_LARGE_WS(ename, ELEM, kk, MODE_K, MODE_K)     \
  KF_TC_LARGE_WS(ename, ELEM, km, MODE_K, MODE_MN)    \
  KF_TC_LARGE_WS(ename, ELEM, mk, MODE_MN, MODE_K)    \
  KF_TC_LARGE_WS(ename, ELEM, mm, MODE_MN, MODE_MN)   \
  KF_TC_LARGE(ename, ELEM, ss, MODE_SCALAR, MODE_SCALAR) \
  KF_TC_SMALL(ename, ELEM, kk, MODE_K, MODE_K)        \
  KF_TC_SMALL(ename, ELEM, km, MODE_K, MODE_MN)       \
  KF_TC_SMALL(ename, ELEM, ss, MODE_SCALAR, MODE_SCALAR)

KF_TC_16BIT(f16, ELEM_F16)
KF_TC_16BIT(bf16, ELEM_BF16)
KF_TC_LARGE(e4m3, ELEM_E4M3, kk, MODE_K, MODE_K)
KF_TC_LARGE(e4m3, ELEM_E4M3, ss, MODE_SCALAR, MODE_SCALAR)
KF_TC_LARGE_WS(tf32, ELEM_TF32, kk, MODE_K, MODE_K)
KF_TC_LARGE(tf32, ELEM_TF32, ss, MODE_SCALAR, MODE_SCALAR)

/* ---- decode: B streamed from memory straight into mma fragments ------------------------------- */

/* m <= 16, f16/bf16, A k-contiguous and B an nn.Linear weight [n, k], 16-byte aligned rows, k a
 * multiple of 8. Such a GEMM reads each B element once for at most 16 products: it is a stream of B,
 * and what decides its speed is how many bytes of B are in flight, not the tile. The small tile above
 * stages B through shared memory in 64-byte row pieces and leaves the parallelism to split-K and a
 * second (finishing) launch; this kernel loads B with 16-byte loads directly into the registers mma
 * reads, UNROLL * N_BLOCKS * 512 bytes in flight a warp, with no shared memory and no barrier in the
 * loop.
 * The load order decides the k order. mma.m16n8k16 gives thread t the k slots {2q, 2q+1, 2q+8, 2q+9}
 * (q = t % 4) of its A rows (t / 4, t / 4 + 8) and of its B column (t / 4). Here thread t loads the 8
 * consecutive k at 8q.. of a 32-k chunk from each of them, and the first mma of the chunk takes
 * elements 0-3 of those 8 as its slots 2q, 2q+1, 2q+8, 2q+9, the second mma elements 4-7. A and B
 * use the same permutation, so every product pairs the right elements and each chunk's 32 k are
 * summed exactly once (the same device as widen_e4m3's).
 * Block: DECODE_WARPS warps over N_BLOCKS blocks of 8 B rows (8 N_BLOCKS columns of C; with SwiGLU the
 * first half of the blocks are gate rows and the second half the matching up rows). Two shapes:
 *   kf_gemm_<in>_decode         4 blocks, 4 chunks in flight a warp (8 KiB), for wide C: two blocks a
 *                               SM (128 KiB in flight) and A's loads a quarter of B's;
 *   kf_gemm_<in>_decode_narrow  2 blocks, 6 chunks (6 KiB), for C too narrow to give every SM two
 *                               blocks of 32 columns: twice the blocks. H200, bf16, same call, each
 *                               shape forced: 1x4096x4096 3.0 TFLOP/s narrow against 2.8 wide,
 *                               16x4096x14336 54.9 against 50.8; 1x128256x4096 3.7 against 4.0.
 * Warp w takes the 32-k chunks w, w + DECODE_WARPS, ..., so the warps of a block read one contiguous
 * stretch of each row at a time; their partial sums meet in shared memory at the end.
 * On sm_90 the host launches it with programmatic dependent launch: a block of the first wave asks the
 * L2 for its first chunks of B, every block lets the stream's next kernel be scheduled and then waits
 * for the previous kernel before its first load (a prefetch returns nothing, so it may run before that
 * wait). */
#define DECODE_WARPS 8
#define DECODE_THREADS (DECODE_WARPS * 32)
#define DECODE_CHUNK_K 32

/* 16 bytes that no other thread of this kernel writes, read once: kept out of L1, and the L2 asked for
 * the whole 256-byte stretch (the next chunks of the same row). */
__device__ __forceinline__ uint4 load_streamed(const char *address) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(address));
  return v;
}

template <int ELEM, int N_BLOCKS, int UNROLL>
__device__ __forceinline__ void gemm_decode(const kf_cuda_gemm_params &p) {
  __shared__ float partial[DECODE_WARPS][N_BLOCKS * 4][32]; /* [warp][accumulator][lane] */
  const block_place place = place_block(p);
  const bool swiglu = (p.flags & KF_GEMM_SWIGLU_PAIRS) != 0;
  const int out_blocks = swiglu ? N_BLOCKS / 2 : N_BLOCKS; /* blocks of 8 columns of C */
  const int n0 = place.tile_n * 8 * out_blocks;
  const k_range kr = split_k_range(p, place.split);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, q = lane % 4, g = lane / 4;

  /* This thread's rows, advanced to its 8 k of the split's first chunk (2 bytes an element). */
  const char *a = reinterpret_cast<const char *>(p.a) + 2 * (place.batch_index * p.batch_stride_a + kr.begin + 8 * q);
  const char *a_row0 = a + 2 * (int64_t)g * p.lda, *a_row1 = a + 2 * (int64_t)(g + 8) * p.lda;
  const bool a_ok0 = g < p.m, a_ok1 = g + 8 < p.m;
  const char *b_row[N_BLOCKS];
  bool b_ok[N_BLOCKS];
#pragma unroll
  for (int j = 0; j < N_BLOCKS; ++j) {
    const int col = n0 + 8 * (j % out_blocks) + g;
    const uint64_t base = j >= out_blocks ? p.b_up : p.b;
    b_ok[j] = col < p.n;
    b_row[j] = reinterpret_cast<const char *>(base) +
               2 * (place.batch_index * p.batch_stride_b + (int64_t)col * p.ldb + kr.begin + 8 * q);
  }
  /* k is a multiple of 8 and so is every split's start: a thread's 8 elements are all in range or
     all out of it. */
  const int span = kr.end - kr.begin;
  const int chunks = (span + DECODE_CHUNK_K - 1) / DECODE_CHUNK_K;

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  /* Only the first wave of blocks can start while the previous kernel runs; for later ones the prefetch
     would be one more request for lines their loads ask for anyway. */
  uint32_t sms;
  asm("mov.u32 %0, %%nsmid;" : "=r"(sms));
  if (q == 0 && blockIdx.x < 2 * sms)
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const int c = warp + u * DECODE_WARPS;
#pragma unroll
      for (int j = 0; j < N_BLOCKS; ++j)
        if (c < chunks && b_ok[j])
          asm volatile("prefetch.global.L2 [%0];" ::"l"(b_row[j] + 2 * (int64_t)c * DECODE_CHUNK_K));
    }
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif

  float acc[N_BLOCKS][4];
#pragma unroll
  for (int j = 0; j < N_BLOCKS; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
  const uint4 zero = make_uint4(0, 0, 0, 0);
  for (int first = warp; first < chunks; first += DECODE_WARPS * UNROLL) {
    uint4 av[UNROLL][2], bv[UNROLL][N_BLOCKS];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const int c = first + u * DECODE_WARPS;
      const int64_t offset = 2 * (int64_t)c * DECODE_CHUNK_K;
      const bool in = c * DECODE_CHUNK_K + 8 * q < span;
#pragma unroll
      for (int j = 0; j < N_BLOCKS; ++j) bv[u][j] = in && b_ok[j] ? load_streamed(b_row[j] + offset) : zero;
    }
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const int c = first + u * DECODE_WARPS;
      const int64_t offset = 2 * (int64_t)c * DECODE_CHUNK_K;
      const bool in = c * DECODE_CHUNK_K + 8 * q < span;
      av[u][0] = in && a_ok0 ? __ldg(reinterpret_cast<const uint4 *>(a_row0 + offset)) : zero;
      av[u][1] = in && a_ok1 ? __ldg(reinterpret_cast<const uint4 *>(a_row1 + offset)) : zero;
    }
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const uint32_t a_first[4] = {av[u][0].x, av[u][1].x, av[u][0].y, av[u][1].y};
      const uint32_t a_second[4] = {av[u][0].z, av[u][1].z, av[u][0].w, av[u][1].w};
#pragma unroll
      for (int j = 0; j < N_BLOCKS; ++j) {
        const uint32_t b_first[2] = {bv[u][j].x, bv[u][j].y}, b_second[2] = {bv[u][j].z, bv[u][j].w};
        mma_step<ELEM>(acc[j], a_first, b_first);
        mma_step<ELEM>(acc[j], a_second, b_second);
      }
    }
  }

  /* Sum the warps' partial sums: thread (warp w, lane) then owns accumulator pair w % 2 of output
     block w / 2 of that lane, i.e. row g + 8 (w % 2), columns 2q, 2q + 1 of the block (and with SwiGLU
     the same pair of the matching up block). */
#pragma unroll
  for (int j = 0; j < N_BLOCKS; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) partial[warp][4 * j + e][lane] = acc[j][e];
  __syncthreads();
  const int j = warp / 2, half = warp % 2;
  if (j >= out_blocks) return;
  float sum[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
  for (int w = 0; w < DECODE_WARPS; ++w) {
    sum[0] += partial[w][4 * j + 2 * half][lane];
    sum[1] += partial[w][4 * j + 2 * half + 1][lane];
    if (swiglu) {
      sum[2] += partial[w][4 * (j + out_blocks) + 2 * half][lane];
      sum[3] += partial[w][4 * (j + out_blocks) + 2 * half + 1][lane];
    }
  }
  emit_pair(p, place.batch_index, place.split, g + 8 * half, n0 + 8 * j + 2 * q, sum[0], sum[1], sum[2], sum[3]);
}

#define KF_DECODE_KERNEL(ename, ELEM, suffix, N_BLOCKS, UNROLL)                                             \
  extern "C" __global__ void __launch_bounds__(DECODE_THREADS, 2)                                        \
      kf_gemm_##ename##_decode##suffix(const struct kf_cuda_gemm_params p) {                            \
    gemm_decode<ELEM, N_BLOCKS, UNROLL>(p);                                                             \
  }

KF_DECODE_KERNEL(f16, ELEM_F16, , 4, 4)
KF_DECODE_KERNEL(bf16, ELEM_BF16, , 4, 4)
KF_DECODE_KERNEL(f16, ELEM_F16, _narrow, 2, 6)
KF_DECODE_KERNEL(bf16, ELEM_BF16, _narrow, 2, 6)

/* ---- exact f32 -------------------------------------------------------------------------------- */

/* 128x128 block tile, k tiles of 8, 256 threads with 8x8 outputs each (~150 registers: one block per SM) (rows ty*4.. and 64+ty*4..,
 * columns tx*4.. and 64+tx*4..: float4 shared reads, a warp touching 2 A and 16 B vectors). Two
 * shared buffers; the next k tile is held in registers while the current one is computed. */
#define SIMT_TILE 128
#define SIMT_TILE_K 8
#define SIMT_THREADS 256
#define SIMT_PAD 4 /* keeps float4 alignment and spreads the transposed stores over banks */

extern "C" __global__ void __launch_bounds__(SIMT_THREADS, 1) kf_gemm_f32_simt(const struct kf_cuda_gemm_params p) {
  __shared__ __align__(16) float a_tile[2][SIMT_TILE_K][SIMT_TILE + SIMT_PAD];
  __shared__ __align__(16) float b_tile[2][SIMT_TILE_K][SIMT_TILE + SIMT_PAD];
  const block_place place = place_block(p);
  const bool swiglu = (p.flags & KF_GEMM_SWIGLU_PAIRS) != 0;
  const int m0 = place.tile_m * SIMT_TILE;
  const int n0 = place.tile_n * (swiglu ? SIMT_TILE / 2 : SIMT_TILE);
  const k_range kr = split_k_range(p, place.split);
  const int k_tiles = (kr.end - kr.begin + SIMT_TILE_K - 1) / SIMT_TILE_K;
  const float *a = reinterpret_cast<const float *>(p.a) + place.batch_index * p.batch_stride_a;
  const float *b = reinterpret_cast<const float *>(p.b) + place.batch_index * p.batch_stride_b;
  const float *b_up = swiglu ? reinterpret_cast<const float *>(p.b_up) + place.batch_index * p.batch_stride_b : b;
  const int tid = threadIdx.x;

  /* Loads: 4 elements per operand per thread, consecutive along the stored row (coalesced). */
  float a_next[4], b_next[4];
  auto fetch = [&](int k0) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int m = p.trans_a ? m0 + (tid % 32) * 4 + e : m0 + tid / 2;
      const int k = p.trans_a ? k0 + tid / 32 : k0 + (tid % 2) * 4 + e;
      a_next[e] = m < p.m && k < kr.end ? a[p.trans_a ? (int64_t)k * p.lda + m : (int64_t)m * p.lda + k] : 0.0f;
      const int tile_col = p.trans_b ? tid / 2 : (tid % 32) * 4 + e;
      const int kb = p.trans_b ? k0 + (tid % 2) * 4 + e : k0 + tid / 32;
      int col;
      const float *src = reinterpret_cast<const float *>(
          b_column<SWIGLU_GROUP_SIMT>(p, reinterpret_cast<const char *>(b), reinterpret_cast<const char *>(b_up), n0,
                                      tile_col, &col));
      b_next[e] = col < p.n && kb < kr.end ? src[p.trans_b ? (int64_t)col * p.ldb + kb : (int64_t)kb * p.ldb + col]
                                           : 0.0f;
    }
  };
  auto stash = [&](int buffer) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if (p.trans_a) a_tile[buffer][tid / 32][(tid % 32) * 4 + e] = a_next[e];
      else a_tile[buffer][(tid % 2) * 4 + e][tid / 2] = a_next[e];
      if (p.trans_b) b_tile[buffer][(tid % 2) * 4 + e][tid / 2] = b_next[e];
      else b_tile[buffer][tid / 32][(tid % 32) * 4 + e] = b_next[e];
    }
  };

  const int tx = tid % 16, ty = tid / 16;
  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

  if (k_tiles > 0) {
    fetch(kr.begin);
    stash(0);
    __syncthreads();
  }
  for (int kt = 0; kt < k_tiles; ++kt) {
    const int buffer = kt % 2;
    if (kt + 1 < k_tiles) fetch(kr.begin + (kt + 1) * SIMT_TILE_K);
#pragma unroll
    for (int kk = 0; kk < SIMT_TILE_K; ++kk) {
      const float4 a_lo = *reinterpret_cast<const float4 *>(&a_tile[buffer][kk][ty * 4]);
      const float4 a_hi = *reinterpret_cast<const float4 *>(&a_tile[buffer][kk][64 + ty * 4]);
      const float4 b_lo = *reinterpret_cast<const float4 *>(&b_tile[buffer][kk][tx * 4]);
      const float4 b_hi = *reinterpret_cast<const float4 *>(&b_tile[buffer][kk][64 + tx * 4]);
      const float av[8] = {a_lo.x, a_lo.y, a_lo.z, a_lo.w, a_hi.x, a_hi.y, a_hi.z, a_hi.w};
      const float bv[8] = {b_lo.x, b_lo.y, b_lo.z, b_lo.w, b_hi.x, b_hi.y, b_hi.z, b_hi.w};
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    if (kt + 1 < k_tiles) stash(buffer ^ 1);
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int row = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + i - 4);
    if (swiglu) {
      /* tile columns c < 64 are gate columns n0 + c, c >= 64 the up columns n0 + c - 64 */
#pragma unroll
      for (int j = 0; j < 4; j += 2)
        emit_pair(p, place.batch_index, place.split, row, n0 + tx * 4 + j, acc[i][j], acc[i][j + 1], acc[i][j + 4],
                  acc[i][j + 5]);
    } else {
#pragma unroll
      for (int j = 0; j < 8; j += 2)
        emit_pair(p, place.batch_index, place.split, row, n0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + j - 4), acc[i][j],
                  acc[i][j + 1], 0.0f, 0.0f);
    }
  }
}

/* ---- split-K ---------------------------------------------------------------------------------- */

#define FINISH_THREADS 256

/* One thread per element of C (batch entries of this launch, m rows, n columns). */
extern "C" __global__ void __launch_bounds__(FINISH_THREADS) kf_gemm_finish_splits(const struct kf_cuda_gemm_params p) {
  const int64_t index = (int64_t)blockIdx.x * FINISH_THREADS + threadIdx.x;
  const int64_t per_batch = (int64_t)p.m * p.n;
  if (index >= per_batch * p.batch) return;
  const int batch_index = (int)(index / per_batch);
  const int row = (int)(index % per_batch / p.n), col = (int)(index % p.n);
  const bool swiglu = (p.flags & KF_GEMM_SWIGLU_PAIRS) != 0;
  const int n_sums = swiglu ? 2 * p.n : p.n;
  const int64_t split_stride = (int64_t)p.batch * p.m * n_sums;
  const float *sums = reinterpret_cast<const float *>(p.workspace) + ((int64_t)batch_index * p.m + row) * n_sums;
  float gate = 0.0f, up = 0.0f;
  for (int s = 0; s < p.splits; ++s) {
    gate += sums[s * split_stride + col];
    if (swiglu) up += sums[s * split_stride + p.n + col];
  }
  const float v = epilogue_value(p, batch_index, row, col, gate, up);
  store_f32(reinterpret_cast<char *>(p.c), batch_index * p.batch_stride_c + (int64_t)row * p.ldc + col,
            (int)((p.dtypes >> KF_GEMM_DT_SHIFT_C) & 15), v);
}

/* attention.cu — flash attention for the CUDA backend (backend_cuda/cuda_attention.c launches it).
 *
 * Rows. Attention for one (batch, kv head) is a problem of rows = q_len * group query rows, group =
 * q_heads / kv_heads: row r is query i = r / group of q head kv_head * group + r % group. Packing the
 * q heads of one kv head into the rows of a block lets every K/V tile a block loads serve all of them
 * (GQA decode: one m16 tile holds the 4 heads of a kv head instead of 4 tiles each 1/16 full). The
 * query at row r sits at position i + kv_len - q_len (bottom-right causal alignment).
 *
 * Tensor-core kernel (f16/bf16; head_dim 64, 96, 128, 256), FlashAttention-2 style:
 *   - a block owns BM = 16 * M_TILES * M_WARPS rows and walks the KV sequence in tiles of TILE_KEYS =
 *     BN * KV_WARPS keys; warp (m, kv) owns M_TILES m16 tiles of rows from m * 16 * M_TILES and keys
 *     kv*BN.. of each tile;
 *   - Q is loaded once with cp.async into shared memory; with one m16 tile per warp and d <= 128 its
 *     A fragments then stay in registers for the whole KV walk, otherwise they are re-read with
 *     ldmatrix per tile; K and V tiles are double buffered with cp.async (tile t+1 lands while t is
 *     computed; one barrier per tile);
 *   - S = Q K^T and O += P V with mma.sync m16n8k16 (f32 accumulation); K fragments with ldmatrix, V
 *     with ldmatrix.trans (V is [key][dim] in memory, the B operand wants [dim][key]);
 *   - online softmax in registers in the log2 domain: 2^(S * scale * log2 e - reference) as one FFMA
 *     and ex2.approx per element (unmasked tiles take the max of raw S); the reference (running max)
 *     moves only when the max passes it by more than RESCALE_SLACK, and O is rescaled only when some
 *     row's reference moved (after the first tiles, rarely); P is rounded to the input dtype for the P V product (the accumulator of S becomes
 *     the A fragment of P V without shared memory: the m16n8 C layout of two adjacent n-blocks is the
 *     m16k16 A layout);
 *   - only tiles that cross a mask edge (causal diagonal, window edge, kv_len tail) are masked, and
 *     tiles wholly masked for a warp's rows are skipped (for the block: not loaded at all); a last
 *     tile that kv_len cuts short is moved back to end at kv_len, so the loads in the loop are whole
 *     tiles without predicates (the predicated ones cost the registers that BN 64 needs);
 *   - epilogue through shared memory: the KV warps' (max, sum, O) are merged with the logsumexp trick
 *     and written with 16-byte stores — or, with split-KV, written as f32 partials (O normalized,
 *     lse in log2 units) that kf_attention_merge_* combines.
 * Shared memory rows are head_dim elements padded to a multiple of 64 (16-byte chunks 0..7 XOR
 * row % 8: conflict-free ldmatrix and cp.async; 96 is padded to 128 so the XOR stays inside the row).
 *
 * Configurations (cuda_attention.c mirrors the constants):
 *   prefill  BM 128 rows: each K/V tile is read from L2 once per 128 rows (L2 traffic below ~3 TB/s at
 *            350 TFLOP/s). Up to d 128: M_WARPS 4 x M_TILES 2 (128 threads, two blocks per SM): a
 *            warp's K/V fragments feed two m16 tiles, halving shared-memory reads per MMA; O (128
 *            registers at d 128) and S leave no room for Q, which is re-read from shared memory. On
 *            the H200 (b8 h16 s4096 d128, bf16) BN 32 measured 248 TFLOP/s (causal 221), 8 warps x 16
 *            rows with Q in registers 218; BN 64 (255 registers, 8 bytes of spill) with the loop above
 *            360 (causal 305; FlashAttention-2 338 / 313 in the same run) on a low-entropy pattern;
 *            kfbench_mm (random data) with RESCALE_SLACK 8 and causal groups of 128 heads: 346
 *            (causal 283) against FlashAttention-2's 349 (281) in one run; slack 0: 335 (274).
 *            BN 64 at d 64 and 128,
 *            32 at d 96 (64 spills). d 256: M_WARPS 8 x
 *            M_TILES 1, BN 16, one block per SM (O alone is 128 registers).
 *   decode   M_WARPS 1, KV_WARPS 4, BN 16 (128 threads, BM 16 rows, 64 keys per tile): few rows, so
 *            the four warps split the keys and the block reads K/V as fast as memory allows; the
 *            kv sequence is further split across blocks (params.splits); the merge kernel reads the
 *            partials with independent 16-byte loads. b8 h32/8 kv8192 d128: 3849 GB/s of K+V in a
 *            loop, 3550-3600 as a single launch (kfbench_mm; copy bandwidth 4206-4238 GB/s: 84-85%).
 * "_s" kernels load Q/K/V element by element (any alignment of offsets and strides) and store the
 * output element by element; "_v" kernels need 16-byte aligned operands and strides.
 *
 * SIMT kernel (f32, and other head_dim multiples of 8 for f16/bf16): 16 rows per block, 16 threads
 * per row each holding head_dim / 16 dims of q and o, keys one at a time from K/V tiles in shared
 * memory; exact f32 (exp2f, no rounding of P). No split-KV: correctness over speed.
 *
 * A row that sees no key gets out 0 and lse -inf. */
#include <type_traits>

#include "kernels_src/cuda/kf_pack.cuh"

/* The launch parameters; backend_cuda/cuda_attention.c declares the same struct (216 bytes). */
struct kf_cuda_attention_params {
  uint64_t q, k, v, out, lse, partial; /* partial: split-KV workspace (o then lse), or 0 */
  int64_t q_batch_stride, q_seq_stride, q_head_stride; /* elements */
  int64_t k_batch_stride, k_seq_stride, k_head_stride;
  int64_t v_batch_stride, v_seq_stride, v_head_stride;
  int64_t out_batch_stride, out_seq_stride, out_head_stride;
  int64_t lse_batch_stride, lse_seq_stride, lse_head_stride;
  int32_t batch, q_len, kv_len, q_heads, kv_heads, head_dim;
  int32_t causal;
  int32_t window_left; /* < 0: none (the host clamps windows that reach key 0 from every query to -1) */
  int32_t splits;      /* KV splits per (row block, batch, kv head); 1: write out directly */
  float scale_log2;    /* scale * log2(e) */
  uint32_t flags;      /* ATTENTION_HAS_LSE */
  int32_t unused;
};
static_assert(sizeof(kf_cuda_attention_params) == 216, "layout shared with cuda_attention.c");

#define ATTENTION_HAS_LSE 1u
#define LN2 0.6931471805599453f
/* Heads per group of the causal grid order (flash_attention). On the H200 (b8 h16 s4096 d128 causal)
 * groups of 1, 8, 16 and 128 heads measured 308, 316, 318 and 323 TFLOP/s: a block reads 1/128 byte of
 * K/V per FLOP, so even with no L2 reuse the order that balances best costs little memory traffic. */
#define CAUSAL_HEAD_GROUP 128
/* log2 units by which a row max may pass the softmax reference before O is rescaled (P <= 2^8). */
#define RESCALE_SLACK 8.0f

__device__ __forceinline__ float minus_infinity() { return __int_as_float(0xff800000u); }

/* 2^x with MUFU.EX2 (2 ulp); 2^-inf = 0. */
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

/* ---- row geometry shared by both kernels ---------------------------------------------------- */
struct attention_rows {
  int group;      /* q heads per kv head */
  int rows;       /* q_len * group */
  int offset;     /* kv_len - q_len: position of query i is i + offset */
  int64_t batch, kv_head;
};

__device__ __forceinline__ int row_position(const attention_rows &g, int row) { return row / g.group + g.offset; }

/* Keys [begin, end) that any row with positions [lo, hi] may see. */
__device__ __forceinline__ void visible_keys(const kf_cuda_attention_params &p, int lo, int hi, int &begin,
                                             int &end) {
  begin = p.window_left >= 0 ? max(0, lo - p.window_left) : 0;
  end = p.causal ? min(p.kv_len, hi + 1) : p.kv_len;
}

__device__ __forceinline__ bool key_visible(const kf_cuda_attention_params &p, int key, int position) {
  return key < p.kv_len && (!p.causal || key <= position) && (p.window_left < 0 || key >= position - p.window_left);
}

/* Element offsets of row r's q/out/lse entries and of the block's K/V head. */
__device__ __forceinline__ int64_t q_offset(const kf_cuda_attention_params &p, const attention_rows &g, int row) {
  const int i = row / g.group, h = (int)g.kv_head * g.group + row % g.group;
  return g.batch * p.q_batch_stride + (int64_t)i * p.q_seq_stride + (int64_t)h * p.q_head_stride;
}
__device__ __forceinline__ int64_t out_offset(const kf_cuda_attention_params &p, const attention_rows &g, int row) {
  const int i = row / g.group, h = (int)g.kv_head * g.group + row % g.group;
  return g.batch * p.out_batch_stride + (int64_t)i * p.out_seq_stride + (int64_t)h * p.out_head_stride;
}
__device__ __forceinline__ int64_t lse_offset(const kf_cuda_attention_params &p, const attention_rows &g, int row) {
  const int i = row / g.group, h = (int)g.kv_head * g.group + row % g.group;
  return g.batch * p.lse_batch_stride + (int64_t)i * p.lse_seq_stride + (int64_t)h * p.lse_head_stride;
}
/* Index of row r among all batch * q_heads * q_len rows, in (batch, q head, query) order: the
 * split-KV partials and the merge kernel use it. */
__device__ __forceinline__ int64_t global_row(const kf_cuda_attention_params &p, const attention_rows &g, int row) {
  const int i = row / g.group, h = (int)g.kv_head * g.group + row % g.group;
  return (g.batch * p.q_heads + h) * p.q_len + i;
}

/* ---- tensor-core helpers ---------------------------------------------------------------------- */
__device__ __forceinline__ uint32_t shared_address(const void *pointer) {
  return (uint32_t)__cvta_generic_to_shared(pointer);
}

/* One 16-byte chunk global -> shared; zeros when !valid (source must still be a readable address: the
 * callers pass element 0 of the operand then). ALIGNED: cp.async; else eight 16-bit loads and one
 * shared store (any alignment), without branches. */
template <bool ALIGNED>
__device__ __forceinline__ void load_chunk(uint32_t destination, const unsigned short *source, bool valid) {
  if (ALIGNED) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(destination), "l"(source),
                 "r"(valid ? 16 : 0));
  } else {
    uint32_t w[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      w[e] = (uint32_t)__ldg(source + 2 * e) | (uint32_t)__ldg(source + 2 * e + 1) << 16;
      w[e] = valid ? w[e] : 0u;
    }
    asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};\n" ::"r"(destination), "r"(w[0]), "r"(w[1]), "r"(w[2]),
                 "r"(w[3]));
  }
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int PENDING>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t address, uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(address));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t address, uint32_t &r0, uint32_t &r1, uint32_t &r2,
                                                  uint32_t &r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(address));
}

/* c += a b for one m16n8k16 tile, f32 accumulators. */
template <int DT>
__device__ __forceinline__ void mma_16816(float c[4], const uint32_t *a, uint32_t b0, uint32_t b1) {
  if (DT == KF_DT_BF16)
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Shared-memory geometry of one configuration (the host's smem formula in cuda_attention.c matches). */
template <int HD, int BN, int M_WARPS, int M_TILES, int KV_WARPS>
struct flash_shape {
  static constexpr int WARPS = M_WARPS * KV_WARPS;
  static constexpr int THREADS = 32 * WARPS;
  static constexpr int BM = 16 * M_TILES * M_WARPS;
  static constexpr int TILE_KEYS = BN * KV_WARPS;
  static constexpr int CHUNKS = HD / 8;                        /* 16-byte chunks of a row */
  static constexpr int PITCH_CHUNKS = HD == 96 ? 16 : CHUNKS;  /* padded: see the file comment */
  static constexpr int ROW_BYTES = PITCH_CHUNKS * 16;
  static constexpr int Q_BYTES = BM * ROW_BYTES;
  static constexpr int KV_TILE_BYTES = TILE_KEYS * ROW_BYTES;  /* one of K or V, one stage */
  static constexpr int LOOP_BYTES = Q_BYTES + 4 * KV_TILE_BYTES; /* Q, then (K, V) x 2 stages */
  static constexpr int O_PITCH = HD + 4;  /* f32 epilogue rows: 16-byte aligned, rows shifted 4 banks */
  static constexpr int EPILOGUE_BYTES = KV_WARPS * BM * (O_PITCH + 2) * 4;
  static constexpr int SMEM_BYTES = LOOP_BYTES > EPILOGUE_BYTES ? LOOP_BYTES : EPILOGUE_BYTES;
};

/* Byte offset of chunk `chunk` of row `row` in a swizzled tile. */
template <int ROW_BYTES>
__device__ __forceinline__ uint32_t swizzled(int row, int chunk) {
  return (uint32_t)(row * ROW_BYTES + ((chunk ^ (row & 7)) << 4));
}

/* Rows [0, ROWS) of a K or V tile into shared memory: row r from first + r * row_stride, rows at or past
 * valid_rows zero. Each thread keeps one chunk column and walks down the rows with one pointer, so the
 * per-row addresses are not held in registers across the KV loop. */
template <int ROWS, int CHUNKS, int ROW_BYTES, int THREADS, bool ALIGNED, bool WHOLE>
__device__ __forceinline__ void load_rows(uint32_t tile, const unsigned short *first, int64_t row_stride, int valid_rows,
                                          int tid) {
  if (ALIGNED && (WHOLE || valid_rows >= ROWS) && THREADS % CHUNKS == 0) {
    /* A whole tile (all but a kv_len tail): no predicates, one pointer walking down the rows. */
    constexpr int STEP = THREADS / CHUNKS; /* rows per pass */
    const int chunk = tid % CHUNKS, row = tid / CHUNKS;
    const unsigned short *source = first + row * row_stride + chunk * 8;
    const int64_t step = STEP * row_stride;
#pragma unroll
    for (int pass = 0; pass < (ROWS + STEP - 1) / STEP; ++pass) {
      if (ROWS % STEP != 0 && row + pass * STEP >= ROWS) break;
      load_chunk<ALIGNED>(tile + swizzled<ROW_BYTES>(row + pass * STEP, chunk), source, true);
      /* An opaque step: otherwise the compiler keeps pass * step for every pass in registers. */
      source += step;
      asm volatile("" : "+l"(source));
    }
  } else if (ALIGNED && (WHOLE || valid_rows >= ROWS)) {
#pragma unroll
    for (int c = tid; c < ROWS * CHUNKS; c += THREADS) {
      const int row = c / CHUNKS, chunk = c % CHUNKS;
      load_chunk<ALIGNED>(tile + swizzled<ROW_BYTES>(row, chunk), first + row * row_stride + chunk * 8, true);
    }
  } else if (!WHOLE || !ALIGNED) {
    /* The kv_len tail, or unaligned operands (eight 16-bit loads per chunk): rows past valid_rows are
     * zeros. One chunk at a time: this must not take registers from S and O. */
#pragma unroll 1
    for (int c = tid; c < ROWS * CHUNKS; c += THREADS) {
      const int row = c / CHUNKS, chunk = c % CHUNKS;
      const bool valid = row < valid_rows;
      load_chunk<ALIGNED>(tile + swizzled<ROW_BYTES>(row, chunk), first + (valid ? row * row_stride + chunk * 8 : 0),
                          valid);
    }
  }
}

template <int DT>
__device__ __forceinline__ uint32_t pack_pair(float lo, float hi) {
  return pack_word(DT, lo, hi);
}

template <int DT, int HD, int BN, int M_WARPS, int M_TILES, int KV_WARPS, bool ALIGNED>
__device__ __forceinline__ void flash_attention(const kf_cuda_attention_params &p) {
  using S = flash_shape<HD, BN, M_WARPS, M_TILES, KV_WARPS>;
  constexpr int N_BLOCKS = BN / 8;   /* n8 blocks of S per warp */
  constexpr int D_BLOCKS = HD / 8;   /* n8 blocks of O */
  constexpr int K_STEPS = HD / 16;   /* k16 steps of Q K^T */
  constexpr bool Q_IN_REGISTERS = M_TILES == 1 && HD <= 128;
  constexpr int WARP_ROWS = 16 * M_TILES;
  extern __shared__ __align__(128) unsigned char smem[];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int m_warp = warp % M_WARPS, kv_warp = warp / M_WARPS;

  /* blockIdx.x = ((head group * m_blocks + reversed m block) * heads in the group + head in the group)
   * * splits + split, heads = batch * kv_heads taken HEAD_GROUP at a time (the last group may be
   * smaller). Without a causal mask every row block costs the same and a group is one head: its row
   * blocks run together and share K/V in L2. With one, row block m costs m + 1 and the group is
   * CAUSAL_HEAD_GROUP heads whose longest row blocks start first: the grid ends with short blocks instead
   * of the last head's longest one, while a group's K/V still fits in L2. */
  attention_rows g;
  g.group = p.q_heads / p.kv_heads;
  g.rows = p.q_len * g.group;
  g.offset = p.kv_len - p.q_len;
  const int m_blocks = (g.rows + S::BM - 1) / S::BM;
  const int split = blockIdx.x % p.splits;
  const int rest = blockIdx.x / p.splits;
  const int heads = p.batch * p.kv_heads;
  const int head_group = p.causal ? CAUSAL_HEAD_GROUP : 1;
  const int first_head = rest / (head_group * m_blocks) * head_group;
  const int group_heads = min(head_group, heads - first_head);
  const int within = rest - first_head * m_blocks;
  const int m_block = m_blocks - 1 - within / group_heads;
  const int head_index = first_head + within % group_heads;
  g.batch = head_index / p.kv_heads;
  g.kv_head = head_index % p.kv_heads;
  const int row0 = m_block * S::BM;
  const int last_row = min(row0 + S::BM, g.rows) - 1;

  /* The block's key range, in tiles, and this split's share. */
  int kv_begin, kv_end;
  visible_keys(p, row_position(g, row0), row_position(g, last_row), kv_begin, kv_end);
  int tile_begin = 0, tile_end = 0;
  if (kv_end > kv_begin) {
    const int first = kv_begin / S::TILE_KEYS, last = (kv_end + S::TILE_KEYS - 1) / S::TILE_KEYS;
    const int per_split = (last - first + p.splits - 1) / p.splits;
    tile_begin = min(last, first + split * per_split);
    tile_end = min(last, tile_begin + per_split);
  }

  /* This warp's rows: in m16 tile t, warp_row0 + 16 t + lane / 4 and 8 more (the m16n8 C layout). */
  const int warp_row0 = row0 + m_warp * WARP_ROWS;
  const bool warp_has_rows = warp_row0 <= last_row;
  const int warp_lo = row_position(g, min(warp_row0, last_row));
  const int warp_hi = row_position(g, min(warp_row0 + WARP_ROWS - 1, last_row));
  const unsigned short *k_head = reinterpret_cast<const unsigned short *>(p.k) + g.batch * p.k_batch_stride +
                                 g.kv_head * p.k_head_stride;
  const unsigned short *v_head = reinterpret_cast<const unsigned short *>(p.v) + g.batch * p.v_batch_stride +
                                 g.kv_head * p.v_head_stride;
  const uint32_t smem_base = shared_address(smem);
  const uint32_t q_smem = smem_base;
  auto k_smem = [&](int stage) { return smem_base + S::Q_BYTES + (uint32_t)(2 * stage) * S::KV_TILE_BYTES; };
  auto v_smem = [&](int stage) { return smem_base + S::Q_BYTES + (uint32_t)(2 * stage + 1) * S::KV_TILE_BYTES; };

  /* Tile t owns keys [t * TILE_KEYS, (t + 1) * TILE_KEYS) but loads the TILE_KEYS keys from
   * tile_key0(t): a last tile that kv_len cuts short is moved back to end at kv_len (its keys before
   * t * TILE_KEYS are masked), so that every tile but a lone first one under TILE_KEYS keys is whole and
   * the loads in the loop need no predicates. */
  auto tile_key0 = [&](int tile) { return max(0, min(tile * S::TILE_KEYS, p.kv_len - S::TILE_KEYS)); };
  auto load_kv_tile = [&](auto whole, int tile, int stage) {
    const int64_t key0 = tile_key0(tile);
    const int valid_keys = p.kv_len - (int)key0;
    load_rows<S::TILE_KEYS, S::CHUNKS, S::ROW_BYTES, S::THREADS, ALIGNED, decltype(whole)::value>(
        k_smem(stage), k_head + key0 * p.k_seq_stride, p.k_seq_stride, valid_keys, tid);
    load_rows<S::TILE_KEYS, S::CHUNKS, S::ROW_BYTES, S::THREADS, ALIGNED, decltype(whole)::value>(
        v_smem(stage), v_head + key0 * p.v_seq_stride, p.v_seq_stride, valid_keys, tid);
  };

  float o[M_TILES][D_BLOCKS][4];
  float row_max[M_TILES][2], row_sum[M_TILES][2]; /* row_sum: this thread's share; the quad is summed at the end */
#pragma unroll
  for (int t = 0; t < M_TILES; ++t) {
#pragma unroll
    for (int d = 0; d < D_BLOCKS; ++d) o[t][d][0] = o[t][d][1] = o[t][d][2] = o[t][d][3] = 0.0f;
    row_max[t][0] = row_max[t][1] = minus_infinity();
    row_sum[t][0] = row_sum[t][1] = 0.0f;
  }

  if (tile_begin < tile_end) {
    /* Q rows (zero past the last row), then the first K/V tile. */
    const unsigned short *q_base = reinterpret_cast<const unsigned short *>(p.q);
#pragma unroll
    for (int c = tid; c < S::BM * S::CHUNKS; c += S::THREADS) {
      const int r = c / S::CHUNKS, chunk = c % S::CHUNKS;
      const bool valid = row0 + r <= last_row;
      const int64_t element = valid ? q_offset(p, g, row0 + r) + chunk * 8 : 0;
      load_chunk<ALIGNED>(q_smem + swizzled<S::ROW_BYTES>(r, chunk), q_base + element, valid);
    }
    cp_async_commit();
    load_kv_tile(std::false_type(), tile_begin, 0);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();

    /* Per-lane ldmatrix offsets inside a tile. A chunk index c = c0 ^ x (both < PITCH_CHUNKS) lands
     * at swizzled(row, c0) ^ (x << 4): the k-step / d-step offsets below are one XOR with a constant.
     * Q/P A fragments, ldmatrix x4 = rows 0-7 / 8-15 of chunk 2k, then of chunk 2k+1; K B fragments =
     * keys 0-7 (chunks 2k, 2k+1) then keys 8-15: two n8 blocks per load; V B fragments (.trans) = keys
     * 0-7 / 8-15 of dim chunk 2d, then of chunk 2d+1. */
    const int q_row = m_warp * WARP_ROWS + (lane & 15);
    const uint32_t q_lane = swizzled<S::ROW_BYTES>(q_row, lane >> 4);
    const uint32_t k_lane = swizzled<S::ROW_BYTES>(kv_warp * BN + (lane & 7) + ((lane >> 4) << 3), (lane >> 3) & 1);
    const uint32_t v_lane = swizzled<S::ROW_BYTES>(kv_warp * BN + (lane & 7) + (((lane >> 3) & 1) << 3), lane >> 4);

    /* Q A fragments stay in registers with one m16 tile per warp up to d 128; otherwise (O takes the
     * registers) they are re-read from shared memory per k-step (Q stays there for the whole walk). */
    uint32_t q_frag[Q_IN_REGISTERS ? K_STEPS : 1][4];
    if (Q_IN_REGISTERS) {
#pragma unroll
      for (int k = 0; k < K_STEPS; ++k)
        ldmatrix_x4(q_smem + (q_lane ^ (k << 5)), q_frag[k][0], q_frag[k][1], q_frag[k][2], q_frag[k][3]);
    }
    /* Unmasked tiles with a positive scale take the max of raw S and fold the scale into the exp2
     * argument (one FFMA per element); masked tiles (and scale <= 0) scale S first and put -inf on
     * hidden keys, so that hidden keys never meet a 0 scale. */
    const bool positive_scale = p.scale_log2 > 0.0f;

    for (int tile = tile_begin; tile < tile_end; ++tile) {
      const int stage = (tile - tile_begin) & 1;
      cp_async_wait<0>();
      __syncthreads(); /* tile's K/V visible to all; everyone is done with the other stage */
      if (tile + 1 < tile_end) {
        load_kv_tile(std::true_type(), tile + 1, stage ^ 1); /* a later tile: kv_len > TILE_KEYS */
        cp_async_commit();
      }
      const int tile_start = tile * S::TILE_KEYS; /* keys before it are an earlier tile's */
      const int key0 = tile_key0(tile) + kv_warp * BN;
      const bool hidden = !warp_has_rows || key0 >= p.kv_len || key0 + BN <= tile_start || (p.causal && key0 > warp_hi) ||
                          (p.window_left >= 0 && key0 + BN - 1 < warp_lo - p.window_left);
      if (hidden) continue;
      const bool needs_mask = key0 + BN > p.kv_len || key0 < tile_start || (p.causal && key0 + BN - 1 > warp_lo) ||
                              (p.window_left >= 0 && key0 < warp_hi - p.window_left);

      /* S = Q K^T for this warp's rows and BN keys. */
      const uint32_t k_tile = k_smem(stage), v_tile = v_smem(stage);
      float s[M_TILES][N_BLOCKS][4];
#pragma unroll
      for (int t = 0; t < M_TILES; ++t)
#pragma unroll
        for (int n = 0; n < N_BLOCKS; ++n) s[t][n][0] = s[t][n][1] = s[t][n][2] = s[t][n][3] = 0.0f;
#pragma unroll
      for (int k = 0; k < K_STEPS; ++k) {
        uint32_t q_smem_frag[Q_IN_REGISTERS ? 1 : M_TILES][4];
        if (!Q_IN_REGISTERS) {
#pragma unroll
          for (int t = 0; t < M_TILES; ++t)
            ldmatrix_x4(q_smem + (q_lane ^ (k << 5)) + t * 16 * S::ROW_BYTES, q_smem_frag[t][0], q_smem_frag[t][1],
                        q_smem_frag[t][2], q_smem_frag[t][3]);
        }
        const uint32_t k_address = k_tile + (k_lane ^ (k << 5));
#pragma unroll
        for (int n2 = 0; n2 < N_BLOCKS / 2; ++n2) {
          uint32_t b0, b1, b2, b3;
          ldmatrix_x4(k_address + n2 * 16 * S::ROW_BYTES, b0, b1, b2, b3);
#pragma unroll
          for (int t = 0; t < M_TILES; ++t) {
            const uint32_t *q_k = Q_IN_REGISTERS ? q_frag[Q_IN_REGISTERS ? k : 0] : q_smem_frag[t];
            mma_16816<DT>(s[t][2 * n2], q_k, b0, b1);
            mma_16816<DT>(s[t][2 * n2 + 1], q_k, b2, b3);
          }
        }
      }

      /* Online softmax (log2 domain). In m16 tile t a thread holds rows lane/4 (h 0) and lane/4 + 8
       * (h 1), keys n*8 + (lane%4)*2 + {0, 1}. */
      const bool prescaled = needs_mask || !positive_scale;
      if (prescaled) {
#pragma unroll
        for (int t = 0; t < M_TILES; ++t)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int position = row_position(g, min(warp_row0 + 16 * t + lane / 4 + 8 * h, last_row));
#pragma unroll
            for (int n = 0; n < N_BLOCKS; ++n)
#pragma unroll
              for (int e = 0; e < 2; ++e) {
                const int key = key0 + n * 8 + (lane & 3) * 2 + e;
                const float x = s[t][n][2 * h + e] * p.scale_log2;
                s[t][n][2 * h + e] =
                    !needs_mask || (key >= tile_start && key_visible(p, key, position)) ? x : minus_infinity();
              }
          }
      }
      const float multiplier = prescaled ? 1.0f : p.scale_log2;
      float rescale[M_TILES][2];
      bool any_rescale = false;
#pragma unroll
      for (int t = 0; t < M_TILES; ++t) {
        float tile_max[2] = {minus_infinity(), minus_infinity()};
#pragma unroll
        for (int n = 0; n < N_BLOCKS; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) tile_max[e >> 1] = fmaxf(tile_max[e >> 1], s[t][n][e]);
        float reference[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 1));
          tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 2));
          /* The reference only moves when the max passes it by more than RESCALE_SLACK (or it is -inf, or
           * NaN came in): P = 2^(S - reference) <= 2^RESCALE_SLACK stays well in range, and O, the sum
           * and P all share the reference, so the result is the same softmax. */
          const float candidate = fmaxf(row_max[t][h], tile_max[h] * multiplier);
          const bool move = !(candidate <= row_max[t][h] + RESCALE_SLACK);
          const float new_max = move ? candidate : row_max[t][h];
          reference[h] = new_max == minus_infinity() ? 0.0f : new_max; /* all -inf so far: keep 0s */
          rescale[t][h] = fast_exp2(row_max[t][h] - reference[h]);
          any_rescale |= move;
          row_max[t][h] = new_max;
          row_sum[t][h] *= rescale[t][h];
        }
#pragma unroll
        for (int n = 0; n < N_BLOCKS; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            s[t][n][e] = fast_exp2(fmaf(s[t][n][e], multiplier, -reference[e >> 1]));
            row_sum[t][e >> 1] += s[t][n][e];
          }
      }
      /* O *= 2^(old reference - new reference), skipped (exactly: the factor is 1) while no row's
       * reference moved: with the slack, after the first few tiles it rarely does. */
      if (__any_sync(0xffffffffu, any_rescale)) {
#pragma unroll
        for (int t = 0; t < M_TILES; ++t)
#pragma unroll
          for (int d = 0; d < D_BLOCKS; ++d) {
            o[t][d][0] *= rescale[t][0];
            o[t][d][1] *= rescale[t][0];
            o[t][d][2] *= rescale[t][1];
            o[t][d][3] *= rescale[t][1];
          }
      }

      /* O += P V: P's A fragment for keys 16k.. is S blocks 2k, 2k+1 rounded to the input dtype. */
#pragma unroll
      for (int k = 0; k < BN / 16; ++k) {
        uint32_t a[M_TILES][4];
#pragma unroll
        for (int t = 0; t < M_TILES; ++t) {
          a[t][0] = pack_pair<DT>(s[t][2 * k][0], s[t][2 * k][1]);
          a[t][1] = pack_pair<DT>(s[t][2 * k][2], s[t][2 * k][3]);
          a[t][2] = pack_pair<DT>(s[t][2 * k + 1][0], s[t][2 * k + 1][1]);
          a[t][3] = pack_pair<DT>(s[t][2 * k + 1][2], s[t][2 * k + 1][3]);
        }
        const uint32_t v_offset = v_lane + k * 16 * S::ROW_BYTES;
#pragma unroll
        for (int d2 = 0; d2 < D_BLOCKS / 2; ++d2) {
          uint32_t b0, b1, b2, b3;
          ldmatrix_x4_trans(v_tile + (v_offset ^ (d2 << 5)), b0, b1, b2, b3);
#pragma unroll
          for (int t = 0; t < M_TILES; ++t) {
            mma_16816<DT>(o[t][2 * d2], a[t], b0, b1);
            mma_16816<DT>(o[t][2 * d2 + 1], a[t], b2, b3);
          }
        }
      }
    }
  }

  /* Epilogue. Shared memory now holds, per KV warp, each row's (max, sum) and its O rescaled to the
   * rows' common max; the block then sums over KV warps and writes 8 elements per thread. */
#pragma unroll
  for (int t = 0; t < M_TILES; ++t)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      row_sum[t][h] += __shfl_xor_sync(0xffffffffu, row_sum[t][h], 1);
      row_sum[t][h] += __shfl_xor_sync(0xffffffffu, row_sum[t][h], 2);
    }
  __syncthreads(); /* every warp is done with the K/V tiles */
  float *o_smem = reinterpret_cast<float *>(smem);                      /* [KV_WARPS][BM][O_PITCH] */
  float *max_smem = o_smem + KV_WARPS * S::BM * S::O_PITCH;             /* [KV_WARPS][BM] */
  float *sum_smem = max_smem + KV_WARPS * S::BM;                        /* [KV_WARPS][BM] */
  if ((lane & 3) == 0) {
#pragma unroll
    for (int t = 0; t < M_TILES; ++t)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int local_row = m_warp * WARP_ROWS + 16 * t + lane / 4 + 8 * h;
        max_smem[kv_warp * S::BM + local_row] = row_max[t][h];
        sum_smem[kv_warp * S::BM + local_row] = row_sum[t][h];
      }
  }
  __syncthreads();
#pragma unroll
  for (int t = 0; t < M_TILES; ++t)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int local_row = m_warp * WARP_ROWS + 16 * t + lane / 4 + 8 * h;
      float common = minus_infinity();
#pragma unroll
      for (int w = 0; w < KV_WARPS; ++w) common = fmaxf(common, max_smem[w * S::BM + local_row]);
      const float factor = row_max[t][h] == minus_infinity() ? 0.0f : fast_exp2(row_max[t][h] - common);
      float *o_row = o_smem + (kv_warp * S::BM + local_row) * S::O_PITCH + (lane & 3) * 2;
#pragma unroll
      for (int d = 0; d < D_BLOCKS; ++d)
        *reinterpret_cast<float2 *>(o_row + d * 8) =
            make_float2(o[t][d][2 * h] * factor, o[t][d][2 * h + 1] * factor);
    }
  __syncthreads();

  for (int c = tid; c < S::BM * S::CHUNKS; c += S::THREADS) {
    const int r = c / S::CHUNKS, chunk = c % S::CHUNKS;
    const int row = row0 + r;
    if (row > last_row) continue;
    float common = minus_infinity();
#pragma unroll
    for (int w = 0; w < KV_WARPS; ++w) common = fmaxf(common, max_smem[w * S::BM + r]);
    float total = 0.0f, v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll
    for (int w = 0; w < KV_WARPS; ++w) {
      const float m = max_smem[w * S::BM + r];
      if (m != minus_infinity()) total += sum_smem[w * S::BM + r] * fast_exp2(m - common);
      const float4 *src = reinterpret_cast<const float4 *>(o_smem + (w * S::BM + r) * S::O_PITCH + chunk * 8);
      const float4 x = src[0], y = src[1];
      v[0] += x.x, v[1] += x.y, v[2] += x.z, v[3] += x.w, v[4] += y.x, v[5] += y.y, v[6] += y.z, v[7] += y.w;
    }
    const float inverse = total > 0.0f ? 1.0f / total : 0.0f; /* no visible key: out 0 */
#pragma unroll
    for (int e = 0; e < 8; ++e) v[e] *= inverse;
    const float lse_log2 = total > 0.0f ? common + log2f(total) : minus_infinity();
    if (p.splits == 1) {
      char *out_row = reinterpret_cast<char *>(p.out) + out_offset(p, g, row) * 2;
      store_pack<DT, ALIGNED>(DT, out_row, chunk, HD, pack<DT>(DT, v));
      if (chunk == 0 && (p.flags & ATTENTION_HAS_LSE))
        reinterpret_cast<float *>(p.lse)[lse_offset(p, g, row)] = lse_log2 * LN2;
    } else {
      const int64_t all_rows = (int64_t)p.batch * p.q_heads * p.q_len;
      const int64_t index = split * all_rows + global_row(p, g, row);
      float4 *dst = reinterpret_cast<float4 *>(reinterpret_cast<float *>(p.partial) + index * HD + chunk * 8);
      dst[0] = make_float4(v[0], v[1], v[2], v[3]);
      dst[1] = make_float4(v[4], v[5], v[6], v[7]);
      if (chunk == 0) reinterpret_cast<float *>(p.partial)[p.splits * all_rows * HD + index] = lse_log2;
    }
  }
}

/* Split-KV merge: thread (row, c) of the batch * q_heads * q_len rows (in (batch, q head, query)
 * order) combines dims 4c..4c+3 of the splits' (O, lse) pairs with 16-byte loads:
 * out = sum_s 2^(lse_s - L) O_s / sum_s 2^(lse_s - L), L = max_s lse_s. The loads of different splits
 * are independent, so a row costs about two trips to L2 (where the partials still are). */
#define MERGE_DIMS 4
template <int DT>
__device__ __forceinline__ void merge_splits(const kf_cuda_attention_params &p) {
  const int groups = p.head_dim / MERGE_DIMS;
  const int64_t index = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t all_rows = (int64_t)p.batch * p.q_heads * p.q_len;
  if (index >= all_rows * groups) return;
  const int64_t row = index / groups;
  const int c = (int)(index % groups);
  const float *partial_o = reinterpret_cast<const float *>(p.partial);
  const float *partial_lse = partial_o + p.splits * all_rows * p.head_dim;
  float common = minus_infinity();
#pragma unroll 8
  for (int s = 0; s < p.splits; ++s) common = fmaxf(common, partial_lse[s * all_rows + row]);
  const float reference = common == minus_infinity() ? 0.0f : common; /* no split saw a key: weights 0 */
  float total = 0.0f, v[MERGE_DIMS] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll 4
  for (int s = 0; s < p.splits; ++s) {
    const float weight = fast_exp2(partial_lse[s * all_rows + row] - reference); /* 2^-inf = 0 */
    const float4 x =
        *reinterpret_cast<const float4 *>(partial_o + (s * all_rows + row) * p.head_dim + c * MERGE_DIMS);
    total += weight;
    v[0] = fmaf(weight, x.x, v[0]), v[1] = fmaf(weight, x.y, v[1]);
    v[2] = fmaf(weight, x.z, v[2]), v[3] = fmaf(weight, x.w, v[3]);
  }
  const float inverse = total > 0.0f ? 1.0f / total : 0.0f;
  const int i = (int)(row % p.q_len), h = (int)(row / p.q_len % p.q_heads);
  const int64_t b = row / ((int64_t)p.q_len * p.q_heads);
  unsigned short *out = reinterpret_cast<unsigned short *>(p.out) + b * p.out_batch_stride +
                        (int64_t)i * p.out_seq_stride + (int64_t)h * p.out_head_stride + c * MERGE_DIMS;
#pragma unroll
  for (int e = 0; e < MERGE_DIMS; ++e) out[e] = (unsigned short)(pack_word(DT, v[e] * inverse, 0.0f) & 0xffffu);
  if (c == 0 && (p.flags & ATTENTION_HAS_LSE))
    reinterpret_cast<float *>(p.lse)[b * p.lse_batch_stride + (int64_t)i * p.lse_seq_stride +
                                     (int64_t)h * p.lse_head_stride] =
        total > 0.0f ? (reference + log2f(total)) * LN2 : minus_infinity();
}

/* ---- SIMT kernel ------------------------------------------------------------------------------ */
#define SIMT_ROWS 16          /* rows per block */
#define SIMT_LANES 16         /* threads per row: head_dim / 16 dims each (up to 16) */
#define SIMT_THREADS (SIMT_ROWS * SIMT_LANES)
#define SIMT_TILE_KEYS 16     /* K and V tiles of 16 keys x 256 dims, f32: 32 KiB of static shared memory */
#define SIMT_MAX_DIM 256

__device__ __forceinline__ float load_element(int dt, const void *base, int64_t index) {
  if (dt == KF_DT_F32) return __ldg(reinterpret_cast<const float *>(base) + index);
  const uint32_t bits = __ldg(reinterpret_cast<const unsigned short *>(base) + index);
  return dt == KF_DT_BF16 ? __uint_as_float(bits << 16) : __half2float(__ushort_as_half((unsigned short)bits));
}

__device__ __forceinline__ void store_element(int dt, void *base, int64_t index, float value) {
  if (dt == KF_DT_F32) {
    reinterpret_cast<float *>(base)[index] = value;
    return;
  }
  reinterpret_cast<unsigned short *>(base)[index] = (unsigned short)(pack_word(dt, value, 0.0f) & 0xffffu);
}

template <int DT>
__device__ __forceinline__ void simt_attention(const kf_cuda_attention_params &p) {
  constexpr int DIMS = SIMT_MAX_DIM / SIMT_LANES; /* per thread */
  __shared__ float k_tile[SIMT_TILE_KEYS][SIMT_MAX_DIM];
  __shared__ float v_tile[SIMT_TILE_KEYS][SIMT_MAX_DIM];
  const int tid = threadIdx.x, sub = tid % SIMT_LANES;
  attention_rows g;
  g.group = p.q_heads / p.kv_heads;
  g.rows = p.q_len * g.group;
  g.offset = p.kv_len - p.q_len;
  const int m_blocks = (g.rows + SIMT_ROWS - 1) / SIMT_ROWS;
  const int m_block = m_blocks - 1 - (int)(blockIdx.x % m_blocks);
  const int head_index = blockIdx.x / m_blocks;
  g.batch = head_index / p.kv_heads;
  g.kv_head = head_index % p.kv_heads;
  const int row0 = m_block * SIMT_ROWS;
  const int last_row = min(row0 + SIMT_ROWS, g.rows) - 1;
  const int row = row0 + tid / SIMT_LANES;
  const bool row_valid = row <= last_row;
  const int position = row_position(g, min(row, last_row));
  const int dim = p.head_dim;

  float q[DIMS], o[DIMS];
  const int64_t q_base = row_valid ? q_offset(p, g, row) : 0;
#pragma unroll
  for (int e = 0; e < DIMS; ++e) {
    const int d = sub + SIMT_LANES * e;
    q[e] = row_valid && d < dim ? load_element(DT, reinterpret_cast<const void *>(p.q), q_base + d) : 0.0f;
    o[e] = 0.0f;
  }
  float row_max = minus_infinity(), row_sum = 0.0f;

  int kv_begin, kv_end;
  visible_keys(p, row_position(g, row0), row_position(g, last_row), kv_begin, kv_end);
  const int64_t k_head = g.batch * p.k_batch_stride + g.kv_head * p.k_head_stride;
  const int64_t v_head = g.batch * p.v_batch_stride + g.kv_head * p.v_head_stride;
  for (int key0 = kv_begin; key0 < kv_end; key0 += SIMT_TILE_KEYS) {
    __syncthreads();
    for (int c = tid; c < SIMT_TILE_KEYS * dim; c += SIMT_THREADS) {
      const int key = c / dim, d = c % dim;
      const bool valid = key0 + key < p.kv_len;
      k_tile[key][d] = valid ? load_element(DT, reinterpret_cast<const void *>(p.k),
                                            k_head + (int64_t)(key0 + key) * p.k_seq_stride + d)
                             : 0.0f;
      v_tile[key][d] = valid ? load_element(DT, reinterpret_cast<const void *>(p.v),
                                            v_head + (int64_t)(key0 + key) * p.v_seq_stride + d)
                             : 0.0f;
    }
    __syncthreads();
    /* Unrolled by 4: fully unrolled (ptxas' default here) spills. */
#pragma unroll 4
    for (int key = 0; key < SIMT_TILE_KEYS; ++key) {
      float dot = 0.0f;
#pragma unroll
      for (int e = 0; e < DIMS; ++e)
        if (sub + SIMT_LANES * e < dim) dot = fmaf(q[e], k_tile[key][sub + SIMT_LANES * e], dot);
#pragma unroll
      for (int offset = SIMT_LANES / 2; offset > 0; offset >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, offset);
      /* Branch-free: a hidden key has x = -inf and weight 0; while every key so far is hidden the
       * reference is 0 (no -inf - -inf). */
      const float x = key_visible(p, key0 + key, position) ? dot * p.scale_log2 : minus_infinity();
      const float new_max = fmaxf(row_max, x);
      const float reference = new_max == minus_infinity() ? 0.0f : new_max;
      const float rescale = exp2f(row_max - reference);
      const float weight = exp2f(x - reference);
      row_max = new_max;
      row_sum = row_sum * rescale + weight;
#pragma unroll
      for (int e = 0; e < DIMS; ++e)
        if (sub + SIMT_LANES * e < dim) o[e] = fmaf(weight, v_tile[key][sub + SIMT_LANES * e], o[e] * rescale);
    }
  }
  if (!row_valid) return;
  const float inverse = row_sum > 0.0f ? 1.0f / row_sum : 0.0f;
  const int64_t out_base = out_offset(p, g, row);
#pragma unroll
  for (int e = 0; e < DIMS; ++e) {
    const int d = sub + SIMT_LANES * e;
    if (d < dim) store_element(DT, reinterpret_cast<void *>(p.out), out_base + d, o[e] * inverse);
  }
  if (sub == 0 && (p.flags & ATTENTION_HAS_LSE))
    reinterpret_cast<float *>(p.lse)[lse_offset(p, g, row)] =
        row_sum > 0.0f ? (row_max + log2f(row_sum)) * LN2 : minus_infinity();
}

/* ---- entry points ----------------------------------------------------------------------------- */
/* prefill: 128 rows; up to d 128 4 warps x 32 rows, two blocks per SM; d 256 8 warps x 16 rows (O
 * alone is 128 registers), one block per SM. */
#define KF_FLASH_PREFILL(dtname, DT, HD, BN, vname, ALIGNED)                                              \
  extern "C" __global__ void __launch_bounds__(HD <= 128 ? 128 : 256, HD <= 128 ? 2 : 1)                 \
      kf_attention_##dtname##_d##HD##_prefill_##vname(const kf_cuda_attention_params p) {                 \
    flash_attention<DT, HD, BN, HD <= 128 ? 4 : 8, HD <= 128 ? 2 : 1, 1, ALIGNED>(p);                    \
  }
/* decode: 4 warps share 16 rows and split each 64-key tile. */
#define KF_FLASH_DECODE(dtname, DT, HD, vname, ALIGNED)                                                   \
  extern "C" __global__ void __launch_bounds__(128) kf_attention_##dtname##_d##HD##_decode_##vname(       \
      const kf_cuda_attention_params p) {                                                                 \
    flash_attention<DT, HD, 16, 1, 1, 4, ALIGNED>(p);                                                        \
  }

#define KF_FLASH_HEAD_DIM(dtname, DT, HD, BN) \
  KF_FLASH_PREFILL(dtname, DT, HD, BN, v, true) \
  KF_FLASH_PREFILL(dtname, DT, HD, BN, s, false) \
  KF_FLASH_DECODE(dtname, DT, HD, v, true)                  \
  KF_FLASH_DECODE(dtname, DT, HD, s, false)

#define KF_FLASH_DTYPE(dtname, DT)                                                                          \
  KF_FLASH_HEAD_DIM(dtname, DT, 64, 64)                                                                     \
  KF_FLASH_HEAD_DIM(dtname, DT, 96, 32)                                                                     \
  KF_FLASH_HEAD_DIM(dtname, DT, 128, 64)                                                                    \
  KF_FLASH_HEAD_DIM(dtname, DT, 256, 16)                                                                    \
  extern "C" __global__ void __launch_bounds__(256) kf_attention_merge_##dtname(const kf_cuda_attention_params p) { \
    merge_splits<DT>(p);                                                                                    \
  }

KF_FLASH_DTYPE(f16, KF_DT_F16)
KF_FLASH_DTYPE(bf16, KF_DT_BF16)

#define KF_SIMT(dtname, DT)                                                                                 \
  extern "C" __global__ void __launch_bounds__(SIMT_THREADS) kf_attention_simt_##dtname(                   \
      const kf_cuda_attention_params p) {                                                                   \
    simt_attention<DT>(p);                                                                                  \
  }

KF_SIMT(f32, KF_DT_F32)
KF_SIMT(f16, KF_DT_F16)
KF_SIMT(bf16, KF_DT_BF16)

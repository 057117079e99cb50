/* gemm_sm90.cu — the Hopper GEMM of the CUDA backend: C = epilogue(alpha op(A) op(B)) with TMA loads,
 * wgmma tensor-core products and warp specialization (sm_90a only).
 *
 * Six geometries (struct geometry below): the wide one described here; a narrow one (128 x 128
 * tiles, m64n128, no cluster, 6 stages, A in 64-row boxes) for calls whose wide tiles leave SMs idle;
 * the wide split (the wide tiles without the B-sharing pairs); and three fitted ones (128 x 96, 160 or
 * 192 tiles, the narrow geometry's code with m64n96/160/192, for about one wave of whole tiles at
 * mid-range M). When its tiles are few, the narrow
 * geometry can split each tile's K blocks among the 2-8 CTAs of a cluster set at launch, which add
 * their sums through distributed shared memory (k_split_exchange); the wide split always does.
 * One persistent CTA per SM walks output tiles of TILE_M x TILE_N accumulators in a grouped order,
 * in clusters of CLUSTER_M CTAs that take row blocks 2i and 2i + 1 of the same column block: both
 * need the same B tile, and each CTA loads one half of it and multicasts it into both CTAs' shared
 * memory, so the L2 delivers each B tile once for two output tiles (a third less L2-to-SM traffic).
 * Warpgroup 0 is the producer: one thread issues TMA (cp.async.bulk.tensor) loads of the A tile and
 * its B half of each K block into a ring of STAGES shared-memory stages, each stage completing on its
 * "full" mbarrier by transaction bytes (its own loads and the peer's multicast). Warpgroups 1 and 2
 * are consumers: each owns 64 rows of the tile and runs wgmma.mma_async m64n256 on both operands
 * straight from shared memory, f32 accumulators in registers (128 a thread), then releases the stage
 * on the "empty" mbarrier of every CTA of the cluster: a producer refills a stage (in both CTAs) once
 * all four consumers are done with it. setmaxnreg gives the producer's registers to the consumers.
 * The epilogue (alpha, bias, SwiGLU) runs in registers; with no C read and no residual it writes each
 * 16 x 128-byte box of C (a warp's rows) into shared memory and one lane stores it with the TMA
 * (cp.async.bulk.tensor, bulk groups), so the consumers go on with the next tile's products while the
 * copy engine writes C. Otherwise it stores C from registers directly (epilogue_direct: word stores
 * under predicates, beta C and a residual added; pair by pair only where C's or the residual's pairs
 * are not word-aligned).
 *
 * Stream-K tail: units / clusters is rarely whole (8192^3: 1024 units of two 128 x 256 tiles on 66
 * clusters of two, 15.5 waves), and the last, partial wave leaves SMs idle. So the host may split the
 * last units along K (cuda_gemm_sm90.c says when): units [0, sk_first_unit) go whole to the clusters
 * in turn, then the K blocks of the remaining units, laid end to end, are cut into sk_clusters equal
 * ranges, one a cluster. A range's first piece may start inside a unit: that cluster is a contributor
 * there, and leaves its f32 accumulators in its slot of the workspace (`partials`), then sets its flag
 * to the launch's epoch. Every later piece of a range starts at a unit's K block 0; the cluster that
 * holds K block 0 of a split unit finishes it: it waits for the flags of the clusters after it whose
 * ranges start inside the unit, adds their partial sums and runs the epilogue. Pieces that start a
 * range are the first work of a cluster's stream-K phase and those that finish a unit its last, so a
 * finisher rarely waits. It only ever waits for clusters of higher index, which never wait for lower
 * ones, so the waits cannot form a cycle (on an H200 all 66 clusters are resident at once).
 *
 * Shared-memory layout of a stage, 128B swizzle throughout (the TMA writes it, wgmma reads it):
 *  - K-major operand (K contiguous in memory): one box of K_BLOCK_BYTES x rows; row r of the tile at
 *    r * 128 bytes, 8-row swizzle atoms 1024 bytes apart (the descriptor's stride offset); the k-th
 *    step of 32 bytes is a +32-byte start address inside the swizzle row.
 *  - MN-major operand (M or N contiguous, 16-bit types only): boxes of 64 (MN) x 64 (K) elements,
 *    8 KiB each, K rows 128 bytes apart; 8-K-row atoms 1024 bytes apart (stride offset), boxes of 64
 *    MN elements 8 KiB apart (leading offset); the k-th step of 16 K rows is +2048 bytes.
 *  - C staging (TMA-store epilogue): per consumer warp two buffers of one box, 16 rows x 128 bytes, 128B
 *    swizzle: the 16-byte chunk q of row r at r * 128 + (q ^ r % 8) * 16, which keeps a warp's 8 rows
 *    x 4 words of one column group on 32 different banks.
 * Tiles past the matrix edges are zero-filled by the TMA (out-of-bounds boxes), and the epilogue
 * clips its stores (the TMA store drops out-of-bounds elements), so no shape needs padding.
 *
 * A tile's 256 accumulator columns are two halves of 128 loaded from two tensor maps (b and b_up):
 * the same map at columns n0 and n0 + 128 for a plain GEMM, or the gate and up halves of op(B) at the
 * same column n0 with SwiGLU, so each thread holds gate column j and up column j in registers
 * (accumulator groups i and i + 16) and the pairing needs no exchange.
 *
 * Entry points (extern "C", struct kf_gemm_sm90_params by value as a __grid_constant__):
 *   kf_gemm_sm90_<bf16|f16|e4m3>_<k|m>_<k|n>[_narrow]: the operand type, then A K- or M-major, B K- or
 *   N-major, then the geometry
 *   (FP8 wgmma reads K-major operands only: e4m3 exists as _k_k alone).
 * Only the sm_90a image holds the kernels' code; the sm_80 and PTX images of this fatbin (every module
 * is built for sm_80, sm_90a and compute_80, and loaded on every context) compile each entry point to
 * a trap, so the module loads everywhere and the host launches it on sm_90 only.
 */
#include "kernels_src/cuda/kf_pack.cuh"
#include "kernels_src/common/kf_gemm_sm90_params.h"

#define TILE_M KF_SM90_TILE_M          /* two consumer warpgroups x 64 rows (wgmma's M) */
#define K_BLOCK_BYTES KF_SM90_K_BLOCK_BYTES   /* one 128-byte swizzle row: 64 16-bit or 128 FP8 elements of K a stage */
#define MN_BOX KF_SM90_MN_BOX           /* MN-major boxes: 64 16-bit elements = one 128-byte swizzle row */
#define C_BOX_ROWS KF_SM90_C_BOX_ROWS    /* one consumer warp's rows */
#define C_BOX_BYTES KF_SM90_C_BOX_BYTES  /* 16 rows x one 128-byte swizzle row */
#define C_BUFFERS KF_SM90_C_BUFFERS      /* a box is written while the TMA still reads the previous one */
#define A_STAGE_BYTES (TILE_M * K_BLOCK_BYTES)
#define MN_BOX_BYTES (MN_BOX * 64 * 2) /* 64 x 64 16-bit elements */
#define SWIZZLE_ATOM_BYTES 1024        /* 8 rows of 128 bytes */
#define GROUP_M 16          /* tiles walk 16 row blocks down before moving right: 132 concurrent tiles
                               cover ~16 x 8 blocks, the smallest A + B footprint for 128 x 256 tiles */
#define THREADS KF_SM90_THREADS         /* producer warpgroup + 2 consumer warpgroups */
#define PRODUCER_REGS 40    /* setmaxnreg: 128 x 40 + 256 x 232 = 64512 of the 65536 registers */
#define CONSUMER_REGS 232

enum operand_type { IN_BF16, IN_F16, IN_E4M3 };

/* The tile geometries (the host picks one a call, cuda_gemm_sm90.c says how; the fitted ones are
 * described with their constants in kf_gemm_sm90_params.h):
 *  - wide: 128 x 256 tiles (wgmma's widest N, the most reuse of each A fragment; 128 f32 a thread),
 *    clusters of 2 sharing B, 4 stages of 48 KiB (of the 227 KiB; 32 KiB more stage C): loads three K
 *    blocks ahead of the MMAs. For the large shapes.
 *  - narrow: 128 x 128 tiles (m64n128, 64 f32 a thread), no cluster, 6 stages of 32 KiB. Twice the
 *    tiles of the wide geometry, for shapes whose wide tiles leave SMs idle (small M: batched decode,
 *    short prefill), and more bytes in flight for the memory-bound ones.
 *  - wide split: the wide tiles and stages, each CTA loading all of its B (no pairs), one tile a cluster
 *    of S CTAs set at launch that split its K blocks (S = 2 by default). For mid-range M, where the wide
 *    pairs would leave SMs idle and the narrow tiles read a third more bytes a product. */
template <int GEOMETRY>
struct geometry {
  static constexpr bool fit = GEOMETRY >= KF_SM90_FIT_96;
  /* A in a box a consumer (none for a consumer whose rows are all past m): the narrow and fitted tiles */
  static constexpr bool narrow = GEOMETRY == KF_SM90_NARROW || fit;
  /* may split K in a cluster set at launch */
  static constexpr bool k_split = GEOMETRY == KF_SM90_NARROW || GEOMETRY == KF_SM90_WIDE_SPLIT;
  static constexpr int tile_n = fit                          ? KF_SM90_FIT_TILE_N_OF(GEOMETRY)
                                : GEOMETRY == KF_SM90_NARROW ? KF_SM90_NARROW_TILE_N
                                                             : KF_SM90_TILE_N;
  /* CTAs of a static cluster sharing B, along M (the K split's clusters are set at launch) */
  static constexpr int cluster = GEOMETRY == KF_SM90_WIDE ? KF_SM90_CLUSTER_M : 1;
  static constexpr int stages = fit                          ? KF_SM90_FIT_STAGES_OF(GEOMETRY)
                                : GEOMETRY == KF_SM90_NARROW ? KF_SM90_NARROW_STAGES
                                                             : KF_SM90_STAGES;
  /* shared memory that stages C for the TMA-store epilogue, its buffers' residual mbarriers after them
     (the fitted tiles store from registers) */
  static constexpr uint32_t c_buffer_bytes = fit ? 0 : (TILE_M / C_BOX_ROWS) * C_BUFFERS * C_BOX_BYTES;
  static constexpr uint32_t c_staging_bytes = fit ? 0 : KF_SM90_C_STAGING_BYTES;
  static constexpr int acc = tile_n / 2; /* f32 accumulators a consumer thread (64 rows x tile_n) */
  static constexpr uint32_t b_stage_bytes = tile_n * K_BLOCK_BYTES;
  static constexpr uint32_t b_half_bytes = b_stage_bytes / 2;
  static constexpr uint32_t partial_slot_bytes = KF_SM90_PARTIAL_SLOT_BYTES_OF(tile_n);
};

#ifndef KF_SM90_MODULE_GEOMETRY
#define KF_SM90_MODULE_GEOMETRY KF_SM90_WIDE
#endif
/* The entry points' names in this module (the host asks for them by these): kf_gemm_sm90_*,
   kf_gemm_sm90_*_narrow, kf_gemm_sm90_*_split */
#if KF_SM90_MODULE_GEOMETRY == KF_SM90_NARROW
#define GEMM_SM90_SUFFIXED(name) name##_narrow
#elif KF_SM90_MODULE_GEOMETRY == KF_SM90_WIDE_SPLIT
#define GEMM_SM90_SUFFIXED(name) name##_split
#elif KF_SM90_MODULE_GEOMETRY == KF_SM90_FIT_96
#define GEMM_SM90_SUFFIXED(name) name##_n96
#elif KF_SM90_MODULE_GEOMETRY == KF_SM90_FIT_160
#define GEMM_SM90_SUFFIXED(name) name##_n160
#elif KF_SM90_MODULE_GEOMETRY == KF_SM90_FIT_192
#define GEMM_SM90_SUFFIXED(name) name##_n192
#else
#define GEMM_SM90_SUFFIXED(name) name
#endif

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

__device__ __forceinline__ uint32_t shared_address(const void *p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void barrier_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}

__device__ __forceinline__ void barrier_expect_bytes(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}

__device__ __forceinline__ void barrier_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}

/* Waits for the phase with parity `parity` of the mbarrier at bar to complete. The suspend-time hint
 * lets the hardware park the thread until the phase completes (or 10 ms pass) instead of returning at
 * once: without it the producer's wait for a free stage returned after ~35 clocks, and its poll loop
 * was ~7% of the kernel's instructions (Nsight Compute source view, 4096^3). */
__device__ __forceinline__ void barrier_wait(uint32_t bar, uint32_t parity) {
  uint32_t done;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2, %3;\nselp.u32 %0, 1, 0, p;\n}"
        : "=r"(done)
        : "r"(bar), "r"(parity), "r"(10000000u)
        : "memory");
  } while (!done);
}

/* Brings a tensor map's descriptor into the TMA unit's cache ahead of its first use. */
__device__ __forceinline__ void prefetch_tensor_map(const kf_tensor_map *map) {
  asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

/* Asks the L2 to fetch the box of `map` at coordinates (c0 innermost, c1, batch); nothing is
 * written to shared memory and nothing waits for it. A hint without effect on any value read later:
 * the L2 is where every SM's accesses meet, so a line fetched early cannot be stale. */
__device__ __forceinline__ void tma_prefetch_l2(const kf_tensor_map *map, int c0, int c1, int batch) {
  asm volatile("cp.async.bulk.prefetch.tensor.3d.L2.global [%0, {%1, %2, %3}];" ::"l"(
                   reinterpret_cast<uint64_t>(map)),
               "r"(c0), "r"(c1), "r"(batch)
               : "memory");
}

/* One box of `map` at coordinates (c0 innermost, c1, batch) into shared memory at dst. */
__device__ __forceinline__ void tma_load(uint32_t dst, const kf_tensor_map *map, int c0, int c1, int batch,
                                         uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], "
      "[%5];" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(batch), "r"(bar)
      : "memory");
}

/* tma_load into the same shared-memory offset of every CTA of the cluster in cta_mask, each copy
 * completing on the mbarrier at offset bar of its CTA. */
__device__ __forceinline__ void tma_load_multicast(uint32_t dst, const kf_tensor_map *map, int c0, int c1, int batch,
                                                   uint32_t bar, uint16_t cta_mask) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, {%2, "
      "%3, %4}], [%5], %6;" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(batch), "r"(bar), "h"(cta_mask)
      : "memory");
}

/* Arrives on the mbarrier at offset bar of CTA `cta` of the cluster (this CTA included). CTA-scope
 * release, as for a local arrive: it orders nothing but the stage's reads, which wgmma.wait_group
 * already completed (cluster scope would put a GPU-wide memory barrier before every arrive). */
__device__ __forceinline__ void barrier_arrive_cluster(uint32_t bar, uint32_t cta) {
  asm volatile(
      "{\n.reg .b32 remote;\nmapa.shared::cluster.u32 remote, %0, %1;\n"
      "mbarrier.arrive.shared::cluster.b64 _, [remote];\n}" ::"r"(bar),
      "r"(cta)
      : "memory");
}

/* Programmatic dependent launch: the stream's next kernel (if launched with PDL) may be placed on the
 * SMs this grid leaves once every CTA has signalled this (a CTA signals when one of its threads
 * does; the next grid waits for this grid's completion before its own memory accesses). The producer
 * signals after its last load, the consumers after their last products, so the next grid starts
 * during the last epilogues, not at this grid's start (where its CTAs would sit waiting on the SMs a
 * short last wave leaves idle, for the whole wave). */
__device__ __forceinline__ void launch_dependents() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }

/* The two halves of a cluster barrier that orders execution only (memory only through a fence before
 * it): the release form of the arrive waits for all of the thread's earlier memory accesses
 * (MEMBAR.ALL.GPU in the SASS), prefetches included. */
__device__ __forceinline__ void cluster_arrive_relaxed() {
  asm volatile("barrier.cluster.arrive.relaxed;" ::: "memory");
}
__device__ __forceinline__ void cluster_wait() { asm volatile("barrier.cluster.wait;" ::: "memory"); }

__device__ __forceinline__ uint32_t cluster_rank() {
  uint32_t rank;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
  return rank;
}

__device__ __forceinline__ uint32_t cluster_index() {
  uint32_t index;
  asm volatile("mov.u32 %0, %%clusterid.x;" : "=r"(index));
  return index;
}

__device__ __forceinline__ uint32_t cluster_count() {
  uint32_t count;
  asm volatile("mov.u32 %0, %%nclusterid.x;" : "=r"(count));
  return count;
}

/* The box of `map` at coordinates (c0 innermost, c1, batch) from shared memory at src, in the
 * thread's current bulk group. Elements outside the tensor are not written. */
__device__ __forceinline__ void tma_store(const kf_tensor_map *map, uint32_t src, int c0, int c1, int batch) {
  asm volatile("cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {%2, %3, %4}], [%1];" ::"l"(
                   reinterpret_cast<uint64_t>(map)),
               "r"(src), "r"(c0), "r"(c1), "r"(batch)
               : "memory");
}

__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;" ::: "memory"); }

/* Waits until at most PENDING of this thread's bulk groups still read shared memory. */
template <int PENDING>
__device__ __forceinline__ void bulk_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;" ::"n"(PENDING) : "memory");
}

/* Orders this thread's shared-memory writes before later reads by the copy engine (async proxy). */
__device__ __forceinline__ void fence_async_shared() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

/* Barrier `id` (1.. : 0 is __syncthreads) among `threads` threads (whole warps). */
__device__ __forceinline__ void named_barrier(int id, int threads) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}

/* Four 8 x 8 matrices of 16-bit elements from (ldmatrix) or into (stmatrix) shared memory: lanes
 * 8 i .. 8 i + 7 give the row addresses (16 bytes each) of matrix i, and each lane holds, in word i, row
 * lane / 4, columns 2 (lane % 4) and + 1 of matrix i: the layout of an 8-column group of wgmma
 * accumulators. */
__device__ __forceinline__ void load_matrices(uint32_t address, uint32_t &w0, uint32_t &w1, uint32_t &w2,
                                              uint32_t &w3) {
  /* volatile keeps it between the mbarrier wait before and the stmatrix after (both volatile) */
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(w0), "=r"(w1), "=r"(w2), "=r"(w3)
               : "r"(address));
}

__device__ __forceinline__ void store_matrices(uint32_t address, uint32_t w0, uint32_t w1, uint32_t w2, uint32_t w3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};" ::"r"(address), "r"(w0), "r"(w1),
               "r"(w2), "r"(w3));
}

__device__ __forceinline__ void store_shared(uint32_t address, float v0, float v1) {
  asm volatile("st.shared.v2.f32 [%0], {%1, %2};" ::"r"(address), "f"(v0), "f"(v1));
}

/* wgmma shared-memory matrix descriptor: start address, leading and stride byte offsets (all >> 4),
 * 128-byte swizzle (mode 1 in bits 62-63). */
__device__ __forceinline__ uint64_t matrix_descriptor(uint32_t address, uint32_t leading, uint32_t stride) {
  return (uint64_t)((address & 0x3ffff) >> 4) | (uint64_t)(leading >> 4) << 16 | (uint64_t)(stride >> 4) << 32 |
         1ull << 62;
}

/* wgmma's accumulator operands in chunks of 16 registers: ACC_Rc names operands 16 c .. 16 c + 15 of the
 * asm, ACC_Oc(d) binds them to d[16 c] .. d[16 c + 15]. */
#define ACC_R0 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
#define ACC_R1 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define ACC_R2 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47"
#define ACC_R3 "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define ACC_R4 "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79"
#define ACC_R5 "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95"
#define ACC_R6 "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111"
#define ACC_R7 "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
#define ACC_O0(d) \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
  "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
#define ACC_O1(d) \
  "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
  "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define ACC_O2(d) \
  "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
  "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47])
#define ACC_O3(d) \
  "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
  "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#define ACC_O4(d) \
  "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), \
  "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79])
#define ACC_O5(d) \
  "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), \
  "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95])
#define ACC_O6(d) \
  "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), \
  "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111])
#define ACC_O7(d) \
  "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), \
  "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])

/* d = A(64 x K step) B(K step x 2 NACC) + (accumulate ? d : 0) for one K step (16 16-bit or 32 FP8
 * elements) with wgmma m64nN, N = 2 NACC (NACC f32 accumulators a thread): the first step of a tile
 * overwrites the previous tile's accumulators, so they need no clearing. TRANS_*: the operand is MN-major
 * in shared memory (16-bit types only). One overload an accumulator count: n256 (wide), n128 (narrow),
 * n96, n160 and n192 (fitted). */
#define WGMMA_STEP(NACC, N, REGS, OPERANDS, I_A, I_B, I_ACC, I_TA, I_TB)                                            \
  template <int IN, int TRANS_A, int TRANS_B>                                                                      \
  __device__ __forceinline__ void wgmma_step(float(&d)[NACC], uint64_t desc_a, uint64_t desc_b, int accumulate) { \
    if (IN == IN_BF16)                                                                                             \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" I_ACC ", 0;\n"                                              \
                   "wgmma.mma_async.sync.aligned.m64n" N "k16.f32.bf16.bf16 {" REGS "}, %" I_A ", %" I_B             \
                   ", p, 1, 1, %" I_TA ", %" I_TB ";\n}\n"                                                         \
                   : OPERANDS(d)                                                                                   \
                   : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(TRANS_A), "n"(TRANS_B));                       \
    else if (IN == IN_F16)                                                                                         \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" I_ACC ", 0;\n"                                              \
                   "wgmma.mma_async.sync.aligned.m64n" N "k16.f32.f16.f16 {" REGS "}, %" I_A ", %" I_B               \
                   ", p, 1, 1, %" I_TA ", %" I_TB ";\n}\n"                                                         \
                   : OPERANDS(d)                                                                                   \
                   : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(TRANS_A), "n"(TRANS_B));                       \
    else                                                                                                           \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" I_ACC ", 0;\n"                                              \
                   "wgmma.mma_async.sync.aligned.m64n" N "k32.f32.e4m3.e4m3 {" REGS "}, %" I_A ", %" I_B             \
                   ", p, 1, 1;\n}\n"                                                                               \
                   : OPERANDS(d)                                                                                   \
                   : "l"(desc_a), "l"(desc_b), "r"(accumulate));                                                   \
  }

#define ACC_REGS_128 ACC_R0 ", " ACC_R1 ", " ACC_R2 ", " ACC_R3 ", " ACC_R4 ", " ACC_R5 ", " ACC_R6 ", " ACC_R7
#define ACC_OPERANDS_128(d) ACC_O0(d), ACC_O1(d), ACC_O2(d), ACC_O3(d), ACC_O4(d), ACC_O5(d), ACC_O6(d), ACC_O7(d)
WGMMA_STEP(128, "256", ACC_REGS_128, ACC_OPERANDS_128, "128", "129", "130", "131", "132")
#define ACC_REGS_64 ACC_R0 ", " ACC_R1 ", " ACC_R2 ", " ACC_R3
#define ACC_OPERANDS_64(d) ACC_O0(d), ACC_O1(d), ACC_O2(d), ACC_O3(d)
WGMMA_STEP(64, "128", ACC_REGS_64, ACC_OPERANDS_64, "64", "65", "66", "67", "68")
#define ACC_REGS_48 ACC_R0 ", " ACC_R1 ", " ACC_R2
#define ACC_OPERANDS_48(d) ACC_O0(d), ACC_O1(d), ACC_O2(d)
WGMMA_STEP(48, "96", ACC_REGS_48, ACC_OPERANDS_48, "48", "49", "50", "51", "52")
#define ACC_REGS_80 ACC_R0 ", " ACC_R1 ", " ACC_R2 ", " ACC_R3 ", " ACC_R4
#define ACC_OPERANDS_80(d) ACC_O0(d), ACC_O1(d), ACC_O2(d), ACC_O3(d), ACC_O4(d)
WGMMA_STEP(80, "160", ACC_REGS_80, ACC_OPERANDS_80, "80", "81", "82", "83", "84")
#define ACC_REGS_96 ACC_R0 ", " ACC_R1 ", " ACC_R2 ", " ACC_R3 ", " ACC_R4 ", " ACC_R5
#define ACC_OPERANDS_96(d) ACC_O0(d), ACC_O1(d), ACC_O2(d), ACC_O3(d), ACC_O4(d), ACC_O5(d)
WGMMA_STEP(96, "192", ACC_REGS_96, ACC_OPERANDS_96, "96", "97", "98", "99", "100")
#undef WGMMA_STEP

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int PENDING, int ACC>
__device__ __forceinline__ void wgmma_wait(float (&d)[ACC]) {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(PENDING) : "memory");
  /* the accumulators are final only after the wait: keep their reads below it */
#pragma unroll
  for (int i = 0; i < ACC; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

/* Batch entry and tile row / column of this CTA in persistent work item `unit` of its cluster (CL
 * row blocks of one column block): GROUP_M row blocks at a time, column by column inside the group, so
 * the CTAs running together share A rows and B columns in L2. With an odd number of row blocks the
 * last unit's second CTA gets the row block past the end: its loads read zeros, its stores are clipped. */
template <int CL>
__device__ __forceinline__ void tile_position(const kf_gemm_sm90_params &p, int unit, int rank, int &batch,
                                              int &tile_m, int &tile_n) {
  const int units_m = (p.tiles_m + CL - 1) / CL;
  const int per_batch = units_m * p.tiles_n;
  batch = unit / per_batch;
  const int t = unit - batch * per_batch;
  const int group_units = GROUP_M / CL * p.tiles_n;
  const int group = t / group_units;
  const int first_m = group * (GROUP_M / CL);
  const int group_rows = min(units_m - first_m, GROUP_M / CL);
  const int r = t - group * group_units;
  tile_m = (first_m + r % group_rows) * CL + rank;
  tile_n = r / group_rows;
}

/* One piece of persistent work: K blocks [kb_begin, kb_end) of work unit `unit`. */
struct work_item {
  int unit, kb_begin, kb_end;
};

/* Where a cluster is in its list of work: its next whole unit, then its stream-K range [sk_next,
 * sk_end) of the K blocks of units sk_first_unit.. laid end to end. The producer and the consumers
 * walk the same list. */
struct work_list {
  int next_unit;
  int64_t sk_next, sk_end;
};

/* Start of stream-K cluster `cluster`'s range (cluster == sk_clusters: the end of the last one). */
__device__ __forceinline__ int64_t stream_k_begin(const kf_gemm_sm90_params &p, int units, int k_blocks,
                                                  int cluster) {
  return (int64_t)(units - p.sk_first_unit) * k_blocks * cluster / p.sk_clusters;
}

__device__ __forceinline__ work_list work_list_begin(const kf_gemm_sm90_params &p, int units, int k_blocks,
                                                     int cluster) {
  work_list list;
  list.next_unit = cluster;
  list.sk_next = list.sk_end = 0;
  if (cluster < p.sk_clusters) {
    list.sk_next = stream_k_begin(p, units, k_blocks, cluster);
    list.sk_end = stream_k_begin(p, units, k_blocks, cluster + 1);
  }
  return list;
}

__device__ __forceinline__ bool work_list_next(const kf_gemm_sm90_params &p, int k_blocks, int clusters,
                                               work_list &list, work_item &item) {
  if (list.next_unit < p.sk_first_unit) {
    item.unit = list.next_unit;
    item.kb_begin = 0;
    item.kb_end = k_blocks;
    list.next_unit += clusters;
    return true;
  }
  if (list.sk_next >= list.sk_end) return false;
  const int64_t unit = list.sk_next / k_blocks;
  item.unit = p.sk_first_unit + (int)unit;
  item.kb_begin = (int)(list.sk_next - unit * k_blocks);
  item.kb_end = (int)min((int64_t)k_blocks, item.kb_begin + (list.sk_end - list.sk_next));
  list.sk_next += item.kb_end - item.kb_begin;
  return true;
}

/* The flag of one consumer warpgroup of CTA `rank` of stream-K cluster `cluster` (of CL CTAs). */
template <int CL>
__device__ __forceinline__ uint32_t *stream_k_flag(const kf_gemm_sm90_params &p, int cluster, int rank,
                                                   int consumer) {
  return reinterpret_cast<uint32_t *>(p.sk_flags) + (cluster * CL + rank) * 2 + consumer;
}

/* That warpgroup's 64 x tile_n partial sums: ACC / 4 pieces of 16 bytes a thread, piece i of all 128
 * threads side by side (each warp store covers 512 contiguous bytes). */
template <int GEOMETRY>
__device__ __forceinline__ float4 *stream_k_partials(const kf_gemm_sm90_params &p, int cluster, int rank,
                                                     int consumer) {
  typedef geometry<GEOMETRY> g;
  return reinterpret_cast<float4 *>(p.partials + (uint64_t)(cluster * g::cluster + rank) * g::partial_slot_bytes +
                                    (uint64_t)consumer * (g::partial_slot_bytes / 2)) +
         threadIdx.x % 128;
}

/* A contributor warpgroup: its accumulators into its slot, then its flag set to this launch's epoch.
 * Every thread's stores reach the GPU scope before the barrier (fence), and the leader's release
 * store orders the flag after them. A warpgroup without products (`data` false: rows past the end of
 * A, narrow geometry) sets its flag only. */
template <int GEOMETRY>
__device__ __forceinline__ void stream_k_contribute(const kf_gemm_sm90_params &p,
                                                    const float (&acc)[geometry<GEOMETRY>::acc], int cluster, int rank,
                                                    int consumer, bool data) {
  float4 *slot = stream_k_partials<GEOMETRY>(p, cluster, rank, consumer);
  if (data) {
#pragma unroll
    for (int i = 0; i < geometry<GEOMETRY>::acc / 4; ++i)
      __stcg(slot + 128 * i, make_float4(acc[4 * i], acc[4 * i + 1], acc[4 * i + 2], acc[4 * i + 3]));
  }
  __threadfence();
  named_barrier(1 + consumer, 128);
  if (threadIdx.x % 128 == 0)
    asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(
                     stream_k_flag<geometry<GEOMETRY>::cluster>(p, cluster, rank, consumer)),
                 "r"(p.sk_epoch)
                 : "memory");
}

/* A finisher warpgroup: the leader waits (acquire) for the flags of contributor clusters
 * [first, last], the barrier passes that on to the warpgroup, and every thread adds the partial
 * sums it finds at its own positions of their slots. Eight pieces (32 registers) in flight at a time in
 * the wide geometry (its 128 accumulators leave no room for more), all 16 in the narrow one: the
 * collect waits on the L2 once a contributor, not twice. Without `data` (no products) it waits for the
 * flags only. */
template <int GEOMETRY>
__device__ __forceinline__ void stream_k_collect(const kf_gemm_sm90_params &p, float (&acc)[geometry<GEOMETRY>::acc],
                                                 int first, int last, int rank, int consumer, bool data) {
  /* narrow 16 of 16, wide 8 of 32; the fitted tiles (12, 20, 24 pieces; never stream-K today) 4 or 8 */
  constexpr int ALL = geometry<GEOMETRY>::acc / 4;
  constexpr int PIECES = ALL <= 16 && ALL % 16 == 0 ? 16 : ALL % 8 == 0 ? 8 : 4;
  if (threadIdx.x % 128 == 0)
    for (int cluster = first; cluster <= last; ++cluster) {
      const uint32_t *flag = stream_k_flag<geometry<GEOMETRY>::cluster>(p, cluster, rank, consumer);
      uint32_t seen;
      do {
        asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(seen) : "l"(flag) : "memory");
      } while (seen != p.sk_epoch);
    }
  named_barrier(1 + consumer, 128);
  if (!data) return;
  for (int cluster = first; cluster <= last; ++cluster) {
    const float4 *slot = stream_k_partials<GEOMETRY>(p, cluster, rank, consumer);
#pragma unroll
    for (int group = 0; group < ALL / PIECES; ++group) {
      float4 piece[PIECES];
#pragma unroll
      for (int i = 0; i < PIECES; ++i) piece[i] = __ldcg(slot + 128 * (PIECES * group + i));
#pragma unroll
      for (int i = 0; i < PIECES; ++i) {
        const int r = 4 * (PIECES * group + i);
        acc[r] += piece[i].x;
        acc[r + 1] += piece[i].y;
        acc[r + 2] += piece[i].z;
        acc[r + 3] += piece[i].w;
      }
    }
  }
}

/* K split in a cluster (narrow geometry, p.k_split = S CTAs a cluster, 2 <= S <= 8, one tile a
 * cluster): rank r of the cluster ran K blocks [r kb / S, (r + 1) kb / S) of the tile, so every rank
 * holds partial sums of the whole tile. The tile's eight consumer warps (pair = consumer * 4 + warp,
 * rows 16 warp .. 16 warp + 15 of the consumer's 64) are dealt out to the ranks: rank pair % S owns a
 * pair. The other ranks send the owner their sums of those rows through distributed shared memory
 * (st.async, 16 bytes a store, completing on the owner's mbarrier of the pair); the owner adds them in
 * rank order (the result does not depend on timing) and runs the epilogue of its rows. The sums land
 * in the owner's stage ring, idle by then: nobody sends before every other rank's consumers have
 * arrived on its `go` mbarrier, which they do once their products are done. (With stream-K the same
 * reduction went through the L2, with stores, a fence, a flag and loads: ~4 us of a ~15 us call at
 * m = 64, 32 tiles, after the last products.) */

__device__ __forceinline__ void barrier_wait_cluster_acquire(uint32_t bar, uint32_t parity) {
  uint32_t done;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 p, [%1], %2, %3;\n"
        "selp.u32 %0, 1, 0, p;\n}"
        : "=r"(done)
        : "r"(bar), "r"(parity), "r"(10000000u)
        : "memory");
  } while (!done);
}

__device__ __forceinline__ uint32_t map_shared_rank(uint32_t address, uint32_t rank) {
  uint32_t remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(address), "r"(rank));
  return remote;
}

/* One consumer warp's part of the exchange, after its products (wgmma_wait<0>). Returns whether this
 * warp owns its rows (then acc holds the tile's full sums for them and the caller runs the epilogue).
 * `ring`: the stage ring; `bars`: the go mbarrier, then one a pair. A warp's sums are 16 rows x ACC / 2
 * f32: 8 KiB narrow, 16 KiB wide. The owner keeps S - 1 slots a pair it owns: at most ceil(8 / S) (S - 1)
 * slots, 56 KiB of the narrow ring's 192 KiB, 112 KiB of the wide ring's 192 KiB. */
template <int ACC>
__device__ __forceinline__ bool k_split_exchange(const kf_gemm_sm90_params &p, float (&acc)[ACC], uint32_t ring,
                                                 uint32_t bars, int consumer, bool products) {
  constexpr uint32_t KSPLIT_WARP_BYTES = 32 * ACC * 4;
  constexpr int PIECES = ACC / 4, BATCH = ACC == 64 ? 16 : 8; /* float4 a lane, added BATCH at a time */
  const int S = p.k_split;
  const int rank = (int)cluster_rank();
  const int lane = threadIdx.x % 32, pair = consumer * 4 + (threadIdx.x % 128) / 32;
  const int owner = pair % S;
  /* this consumer is done with the ring: tell every other rank of the cluster. CTA-scope release, as
     for a stage: it orders only the ring's reads, which wgmma.wait_group completed (a cluster-scope
     release waits for the SM's outstanding memory traffic, ~1 us while the other SMs stream). */
  if (threadIdx.x % 128 == 0)
    for (int q = 0; q < S; ++q)
      if (q != rank) barrier_arrive_cluster(bars, (uint32_t)q);
  if (!products) return false; /* rows past the end of A in every rank: nothing to add, nothing stored */
  /* slot of sender j (the ranks other than the owner, in order) for this pair, in the owner's ring */
  const uint32_t first_slot = ring + (uint32_t)(pair / S * (S - 1)) * KSPLIT_WARP_BYTES;
  const uint32_t bar = bars + 8 + 8 * pair;
  if (owner == rank) {
    if (lane == 0) barrier_expect_bytes(bar, (S - 1) * KSPLIT_WARP_BYTES);
    barrier_wait_cluster_acquire(bar, 0);
    for (int j = 0; j < S - 1; ++j) {
      const float4 *slot =
          reinterpret_cast<const float4 *>(__cvta_shared_to_generic(first_slot + j * KSPLIT_WARP_BYTES)) + lane;
#pragma unroll
      for (int b = 0; b < PIECES; b += BATCH) {
        float4 piece[BATCH];
#pragma unroll
        for (int i = 0; i < BATCH; ++i) piece[i] = slot[32 * (b + i)];
#pragma unroll
        for (int i = 0; i < BATCH; ++i) {
          acc[4 * (b + i)] += piece[i].x;
          acc[4 * (b + i) + 1] += piece[i].y;
          acc[4 * (b + i) + 2] += piece[i].z;
          acc[4 * (b + i) + 3] += piece[i].w;
        }
      }
    }
    return true;
  }
  barrier_wait(bars, 0); /* every other rank is done with its ring */
  const int j = rank < owner ? rank : rank - 1;
  const uint32_t dst = map_shared_rank(first_slot + j * KSPLIT_WARP_BYTES + lane * 16, (uint32_t)owner);
  const uint32_t dst_bar = map_shared_rank(bar, (uint32_t)owner);
#pragma unroll
  for (int i = 0; i < PIECES; ++i)
    asm volatile(
        "st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.f32 [%0], {%1, %2, %3, %4}, [%5];" ::"r"(dst + i * 512),
        "f"(acc[4 * i]), "f"(acc[4 * i + 1]), "f"(acc[4 * i + 2]), "f"(acc[4 * i + 3]), "r"(dst_bar)
        : "memory");
  return false;
}

__device__ __forceinline__ float load_float(int dt, uint64_t base, int64_t index) {
  const uint32_t bits = load_element_bits<LOAD_COHERENT>(dt, reinterpret_cast<const char *>(base), index);
  if (dt == KF_DT_F32) return __uint_as_float(bits);
  if (dt == KF_DT_BF16) return __uint_as_float(bits << 16);
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
}

__device__ __forceinline__ float load_bias(int dt, uint64_t base, int64_t index) {
  const uint32_t bits = load_element_bits<LOAD_READONLY>(dt, reinterpret_cast<const char *>(base), index);
  if (dt == KF_DT_F32) return __uint_as_float(bits);
  if (dt == KF_DT_BF16) return __uint_as_float(bits << 16);
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
}

/* Loads columns col, col + 1 of a row-major matrix at element `index` as one word when allowed. */
__device__ __forceinline__ void load_pair(int dt, uint64_t base, int64_t index, bool word, bool second,
                                          float &v0, float &v1) {
  if (word) {
    if (dt == KF_DT_F32) {
      const float2 f = *reinterpret_cast<const float2 *>(base + 4 * index);
      v0 = f.x, v1 = f.y;
    } else {
      float f[2];
      unpack_word(dt, *reinterpret_cast<const uint32_t *>(base + 2 * index), f);
      v0 = f[0], v1 = f[1];
    }
    return;
  }
  v0 = load_float(dt, base, index);
  v1 = second ? load_float(dt, base, index + 1) : 0.0f;
}

__device__ __forceinline__ void store_float(int dt, uint64_t base, int64_t index, float v) {
  if (dt == KF_DT_F32)
    reinterpret_cast<float *>(base)[index] = v;
  else if (dt == KF_DT_BF16)
    reinterpret_cast<__nv_bfloat16 *>(base)[index] = __float2bfloat16_rn(v);
  else
    reinterpret_cast<__half *>(base)[index] = __float2half_rn(v);
}

/* C[row, col .. col + 1] = t + beta C + residual, clipped to the matrix; t already has alpha, bias
 * and SwiGLU applied. col is even. */
__device__ __forceinline__ void finish_pair(const kf_gemm_sm90_params &p, int batch, int row, int col, float t0,
                                            float t1) {
  if (row >= p.m || col >= p.n) return;
  const bool second = col + 1 < p.n;
  const bool word = second && (p.flags & KF_SM90_C_PAIRS);
  const int dt_c = (p.dtypes >> KF_SM90_DT_SHIFT_C) & 15;
  const int64_t c_index = (int64_t)batch * p.c_batch_stride + (int64_t)row * p.ldc + col;
  if (p.flags & KF_SM90_READ_C) {
    float c0, c1;
    load_pair(dt_c, p.c, c_index, word, second, c0, c1);
    t0 += p.beta * c0;
    t1 += p.beta * c1;
  }
  if (p.flags & KF_SM90_HAS_RESIDUAL) {
    const int dt_r = (p.dtypes >> KF_SM90_DT_SHIFT_RESIDUAL) & 15;
    float r0, r1;
    load_pair(dt_r, p.residual,
              (int64_t)batch * p.residual_batch_stride + (int64_t)row * p.ld_residual + col, word, second, r0, r1);
    t0 += r0;
    t1 += r1;
  }
  if (word) {
    if (dt_c == KF_DT_F32)
      *reinterpret_cast<float2 *>(p.c + 4 * c_index) = make_float2(t0, t1);
    else
      *reinterpret_cast<uint32_t *>(p.c + 2 * c_index) = pack_word(dt_c, t0, t1);
    return;
  }
  store_float(dt_c, p.c, c_index, t0);
  if (second) store_float(dt_c, p.c, c_index + 1, t1);
}

__device__ __forceinline__ float silu(float x) { return x / (1.0f + __expf(-x)); }

/* The four outputs of accumulator column group i in a thread (row half h, column j at 2 h + j), columns
 * c and c + 1 of C: bias added (columns below n only) and, with SwiGLU, silu(gate) * up, the up column
 * in group i + TN / 16. Shared by both epilogues. */
template <int SWIGLU, int HAS_BIAS, int TN>
__device__ __forceinline__ void group_values(const float (&acc)[TN / 2], int i, int c, int n, int dt_bias,
                                             uint64_t bias_gate, uint64_t bias_up_base, int64_t bias_stride,
                                             float (&v)[4]) {
  constexpr int up = TN / 16;
  float bias[2] = {0.0f, 0.0f}, bias_up[2] = {0.0f, 0.0f};
  if (HAS_BIAS) {
#pragma unroll
    for (int j = 0; j < 2; ++j)
      if (c + j < n) {
        const int64_t index = (int64_t)(c + j) * bias_stride;
        bias[j] = load_bias(dt_bias, bias_gate, index);
        if (SWIGLU) bias_up[j] = load_bias(dt_bias, bias_up_base, index);
      }
  }
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const float t = HAS_BIAS ? acc[4 * i + 2 * h + j] + bias[j] : acc[4 * i + 2 * h + j];
      const float u = HAS_BIAS ? acc[4 * (i + up) + 2 * h + j] + bias_up[j] : acc[4 * (i + up) + 2 * h + j];
      v[2 * h + j] = SWIGLU ? silu(t) * u : t;
    }
}

/* A pair of additions as loaded: an f32 pair (float2) or a 16-bit pair (one word); the last column of
 * an odd n alone, and the two values. */
__device__ __forceinline__ void read_single(const char *at, float2 &w) { w.x = *reinterpret_cast<const float *>(at); }
__device__ __forceinline__ void read_single(const char *at, uint32_t &w) { w = *reinterpret_cast<const uint16_t *>(at); }
__device__ __forceinline__ void word_values(int, float2 w, float (&v)[2]) { v[0] = w.x, v[1] = w.y; }
__device__ __forceinline__ void word_values(int dt, uint32_t w, float (&v)[2]) { unpack_word(dt, w, v); }

/* Adds scale x the additions (beta C or the residual, dtype dt; W: float2 for f32, uint32_t for 16
 * bits) of column groups [b, b + BATCH) of a thread's two rows (lo, hi: the addresses of its first
 * column in them) to add: every load of the batch is issued before any is used (raw bits first,
 * converted after), so a batch is one round trip. Pairs are words (the caller's C_PAIRS); the last
 * column of an odd n is loaded alone. Absent values are zero bits: +0 in every dtype. */
template <typename W, int BATCH, int GROUPS>
__device__ __forceinline__ void load_words(int dt, const char *lo, const char *hi, int b, int col, int n, bool row_lo,
                                           bool row_hi, float scale, float (&add)[BATCH][4]) {
  W w[BATCH][2];
#pragma unroll
  for (int q = 0; q < BATCH; ++q) {
    const int i = b + q, c = col + 8 * i;
    if (i >= GROUPS) break;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const char *at = (h ? hi : lo) + 4 * sizeof(W) * i; /* a column group: 4 pairs */
      w[q][h] = W{};
      if ((h ? row_hi : row_lo) && c < n) {
        if (c + 1 < n)
          w[q][h] = *reinterpret_cast<const W *>(at);
        else
          read_single(at, w[q][h]);
      }
    }
  }
#pragma unroll
  for (int q = 0; q < BATCH; ++q) {
    if (b + q >= GROUPS) break;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float v[2];
      word_values(dt, w[q][h], v);
      add[q][2 * h] += scale * v[0];
      add[q][2 * h + 1] += scale * v[1];
    }
  }
}

/* load_words for dtype dt (for C, a compile-time constant: the other branch folds away). */
template <int BATCH, int GROUPS>
__device__ __forceinline__ void load_additions(int dt, const char *lo, const char *hi, int b, int col, int n,
                                               bool row_lo, bool row_hi, float scale, float (&add)[BATCH][4]) {
  if (dt == KF_DT_F32)
    load_words<float2, BATCH, GROUPS>(dt, lo, hi, b, col, n, row_lo, row_hi, scale, add);
  else
    load_words<uint32_t, BATCH, GROUPS>(dt, lo, hi, b, col, n, row_lo, row_hi, scale, add);
}

/* The epilogue of one consumer warpgroup's 64 x TN accumulators (alpha already applied) stored from
 * registers, for C and residual whose column pairs are addressable as words: the dtype, SwiGLU, bias
 * and ADD (beta C and / or a residual added: ADD 1) fixed at compile time, every address an offset from
 * a row base, the parameters read once (after a store to C the compiler would read them again), and
 * the bounds as predicates (a row test a row half, a column test a column group), so the stores issue
 * back to back in edge tiles too. With ADD, the additions of BATCH column groups are loaded before
 * any of their stores: a load after a store to C would wait for it (they may alias: a residual can be C
 * itself). The general path (epilogue below), pair by pair, took ~30 us for one 128 x 160 tile (H200,
 * 640 x 4096 x 4096 in a fitted geometry: 70 us against 40 with whole tiles), and with a residual
 * 4096^3 ran at 0.38 of cuBLAS (539 us against 202 without).
 * Accumulator layout of wgmma m64nN (f32): thread lane of warp w holds rows w * 16 + lane / 4 (+ 8 for
 * the second pair) and columns 8 i + 2 (lane % 4) (+ 1), register 4 i + 2 h + j for column group i, row
 * half h, column j. */
template <int DT_C, int SWIGLU, int HAS_BIAS, int ADD, int TN>
__device__ __forceinline__ void epilogue_direct(const kf_gemm_sm90_params &p, const float (&acc)[TN / 2], int batch,
                                                int row0, int col0) {
  constexpr int64_t size = DT_C == KF_DT_F32 ? 4 : 2;
  constexpr int groups = SWIGLU ? TN / 16 : TN / 8; /* 8-column groups of C */
  /* groups whose additions are loaded together: all of them where the registers allow (accumulators,
     the additions and their raw words: 64 + 64 + 32 a thread at TN 128, 80 + 80 + 40 at 160) */
  constexpr int BATCH = !ADD ? groups : TN <= 160 ? groups : TN == 192 ? groups / 2 : 8;
  const int lane = threadIdx.x % 32, warp = (threadIdx.x % 128) / 32;
  const int row = row0 + warp * 16 + lane / 4, col = col0 + 2 * (lane % 4);
  const int n = p.n;
  const bool row_lo = row < p.m, row_hi = row + 8 < p.m;
  const int dt_bias = (p.dtypes >> KF_SM90_DT_SHIFT_BIAS) & 15;
  const uint64_t bias_gate = p.bias, bias_up_base = p.bias_up;
  const int64_t bias_stride = p.bias_stride;
  const uint64_t c_base = p.c;
  const int64_t c_lo = (int64_t)batch * p.c_batch_stride + (int64_t)row * p.ldc + col, c_hi = c_lo + 8 * p.ldc;
  /* ADD: beta C and the residual (flags uniform across the grid) */
  const bool read_c = ADD && (p.flags & KF_SM90_READ_C), has_residual = ADD && (p.flags & KF_SM90_HAS_RESIDUAL);
  const float beta = p.beta;
  const int dt_r = (p.dtypes >> KF_SM90_DT_SHIFT_RESIDUAL) & 15;
  const uint64_t r_base = p.residual;
  const int64_t r_lo = ADD ? (int64_t)batch * p.residual_batch_stride + (int64_t)row * p.ld_residual + col : 0;
  const int64_t r_hi = ADD ? r_lo + 8 * p.ld_residual : 0;
  char *lo = reinterpret_cast<char *>(c_base) + c_lo * size;
  char *hi = reinterpret_cast<char *>(c_base) + c_hi * size;
  const int64_t r_size = dt_r == KF_DT_F32 ? 4 : 2;
  const char *r_lo_at = reinterpret_cast<const char *>(r_base) + r_lo * r_size;
  const char *r_hi_at = reinterpret_cast<const char *>(r_base) + r_hi * r_size;
#pragma unroll
  for (int b = 0; b < groups; b += BATCH) {
    float add[BATCH][4]; /* row half h, column j at 2 h + j */
    if (ADD) {
#pragma unroll
      for (int q = 0; q < BATCH; ++q)
#pragma unroll
        for (int e = 0; e < 4; ++e) add[q][e] = 0.0f;
      if (has_residual) load_additions<BATCH, groups>(dt_r, r_lo_at, r_hi_at, b, col, n, row_lo, row_hi, 1.0f, add);
      if (read_c) load_additions<BATCH, groups>(DT_C, lo, hi, b, col, n, row_lo, row_hi, beta, add);
    }
#pragma unroll
    for (int q = 0; q < BATCH; ++q) {
      const int i = b + q, c = col + 8 * i;
      if (i >= groups) break;
      float v[4]; /* row half h, column j at 2 h + j */
      group_values<SWIGLU, HAS_BIAS, TN>(acc, i, c, n, dt_bias, bias_gate, bias_up_base, bias_stride, v);
      if (ADD) {
#pragma unroll
        for (int e = 0; e < 4; ++e) v[e] += add[q][e];
      }
      char *at_lo = lo + 8 * i * size, *at_hi = hi + 8 * i * size;
      if (c + 1 < n) {
        if (DT_C == KF_DT_F32) {
          if (row_lo) *reinterpret_cast<float2 *>(at_lo) = make_float2(v[0], v[1]);
          if (row_hi) *reinterpret_cast<float2 *>(at_hi) = make_float2(v[2], v[3]);
        } else {
          if (row_lo) *reinterpret_cast<uint32_t *>(at_lo) = pack_word(DT_C, v[0], v[1]);
          if (row_hi) *reinterpret_cast<uint32_t *>(at_hi) = pack_word(DT_C, v[2], v[3]);
        }
      } else if (c < n) { /* the last column of an odd n */
        if (row_lo) store_float(DT_C, reinterpret_cast<uint64_t>(at_lo), 0, v[0]);
        if (row_hi) store_float(DT_C, reinterpret_cast<uint64_t>(at_hi), 0, v[2]);
      }
    }
  }
}

/* Loads the boxes [box, box + C_BUFFERS) of the additions (r_map: the residual, or C for beta C) of a
 * consumer warp's 16 rows into its C staging buffers, each completing on its buffer's mbarrier (lane 0
 * calls it). The buffers' last TMA stores must have read them first. Boxes wholly past the matrix load
 * zeros and count in full. */
__device__ __forceinline__ void load_residual_boxes(const kf_gemm_sm90_params &p, int batch, int row0, int col0,
                                                    int box, int boxes, int box_cols, uint32_t buffers,
                                                    uint32_t res_bars) {
  bulk_wait_read<0>();
#pragma unroll
  for (int j = 0; j < C_BUFFERS; ++j)
    if (box + j < boxes) {
      barrier_expect_bytes(res_bars + 8 * j, C_BOX_BYTES);
      tma_load(buffers + j * C_BOX_BYTES, &p.r_map, col0 + (box + j) * box_cols, row0, batch, res_bars + 8 * j);
    }
}

/* The epilogue of one consumer warp's 16 x TN accumulators (16 x TN / 2 outputs with SwiGLU) through
 * shared memory and TMA stores: C without a read of C, described by c_map. alpha is already applied.
 * Each warp works alone, on its own rows and buffers, so no barrier wider than the warp is needed. Box
 * by box (16 rows x 128 bytes): lane 0 waits until the buffer's previous store has read it, the warp
 * writes the box (bias, SwiGLU applied, rounded to DT_C), fences it for the async proxy, and lane 0
 * stores it; the stores finish while the next tile's products run. 16-bit C goes in with stmatrix (two
 * column groups of both row halves a store: 16 stores a thread a tile instead of 64), f32 C with
 * 8-byte stores. The bias loads are the only loads; their column test is the only bounds test (the TMA
 * clips C).
 * RES (16-bit C, no SwiGLU): a residual of C's dtype, or beta times C itself (r_map describes which),
 * loaded by the TMA into the buffers (the first C_BUFFERS boxes while the tile's last K blocks run when
 * `preloaded`, the others C_BUFFERS at a time once the stores before have read their buffers), read
 * back with ldmatrix in the layout stmatrix writes (so each lane gets the words of its own
 * accumulators), added, and stored in place. Loaded from registers instead, 8 rows x 16 bytes an
 * instruction, the residual's loads and stores kept the load / store unit busy ~4.5 us a wide tile
 * (4096^3 at 0.90 of cuBLAS with beta = 1). res_phase holds the parity each buffer's mbarrier waits for
 * next. */
template <int DT_C, int SWIGLU, int HAS_BIAS, int TN, int RES>
__device__ __forceinline__ void epilogue_tma(const kf_gemm_sm90_params &p, const float (&acc)[TN / 2], int batch,
                                             int row0, int col0, uint32_t buffers, uint32_t res_bars,
                                             uint32_t &res_phase, bool preloaded) {
  static_assert(!RES || (DT_C != KF_DT_F32 && !SWIGLU), "the TMA residual takes 16-bit C without SwiGLU");
  constexpr int size = DT_C == KF_DT_F32 ? 4 : 2;
  constexpr int box_cols = 128 / size;
  constexpr int box_groups = box_cols / 8; /* accumulator column groups (8 columns) in a box */
  constexpr int boxes = (SWIGLU ? TN / 2 : TN) / box_cols;
  const int lane = threadIdx.x % 32;
  const bool leader = lane == 0;
  const uint32_t row_lo = (lane / 4) * 128, row_hi = row_lo + 8 * 128;
  const uint32_t swizzle = lane / 4; /* row % 8 of both rows */
  /* stmatrix: lane gives the address of row lane % 8 of matrix lane / 8 = (column group g + lane / 16,
   * row half (lane / 8) % 2); with g even, that group's swizzled chunk is g ^ (lane / 16 ^ lane % 8) */
  const uint32_t matrix_row = (((lane / 8) % 2) * 8 + lane % 8) * 128;
  const uint32_t matrix_chunk = (lane / 16) ^ (lane % 8);
  const int dt_bias = (p.dtypes >> KF_SM90_DT_SHIFT_BIAS) & 15;
  const int col = col0 + 2 * (lane % 4);
  const float scale = RES && (p.flags & KF_SM90_READ_C) ? p.beta : 1.0f; /* beta C, or the residual */
#pragma unroll
  for (int box = 0; box < boxes; ++box) {
    const uint32_t buffer = buffers + (box % C_BUFFERS) * C_BOX_BYTES;
    if (RES) {
      if (box % C_BUFFERS == 0 && (box > 0 || !preloaded)) {
        if (leader) load_residual_boxes(p, batch, row0, col0, box, boxes, box_cols, buffers, res_bars);
        __syncwarp();
      }
      const uint32_t j = box % C_BUFFERS;
      barrier_wait(res_bars + 8 * j, (res_phase >> j) & 1);
      res_phase ^= 1u << j;
    } else {
      if (leader) bulk_wait_read<C_BUFFERS - 1>();
      __syncwarp();
    }
    uint32_t words[2][2]; /* 16-bit C: [group parity][row half], stored two groups at a time */
    float kept[2][4];     /* RES: the values of the two groups, added to the residual's once both are in */
#pragma unroll
    for (int g = 0; g < box_groups; ++g) {
      const int i = box * box_groups + g;
      float v[4]; /* row half h, column j at 2 h + j */
      group_values<SWIGLU, HAS_BIAS, TN>(acc, i, col + 8 * i, p.n, dt_bias, p.bias, p.bias_up, p.bias_stride, v);
      if (size == 2) {
        if (RES) {
#pragma unroll
          for (int e = 0; e < 4; ++e) kept[g % 2][e] = v[e];
        } else {
          words[g % 2][0] = pack_word(DT_C, v[0], v[1]);
          words[g % 2][1] = pack_word(DT_C, v[2], v[3]);
        }
        if (g % 2 == 1) {
          const uint32_t at = buffer + matrix_row + ((uint32_t)(g - 1) ^ matrix_chunk) * 16;
          if (RES) { /* the residual words of the same two groups; the sums rounded once */
            uint32_t r[2][2];
            load_matrices(at, r[0][0], r[0][1], r[1][0], r[1][1]);
#pragma unroll
            for (int q = 0; q < 2; ++q) {
              float lo[2], hi[2];
              unpack_word(DT_C, r[q][0], lo);
              unpack_word(DT_C, r[q][1], hi);
              words[q][0] = pack_word(DT_C, kept[q][0] + scale * lo[0], kept[q][1] + scale * lo[1]);
              words[q][1] = pack_word(DT_C, kept[q][2] + scale * hi[0], kept[q][3] + scale * hi[1]);
            }
          }
          store_matrices(at, words[0][0], words[0][1], words[1][0], words[1][1]);
        }
      } else {
        const uint32_t chunk = ((2 * g + (lane % 4) / 2) ^ swizzle) * 16 + 8 * (lane % 2);
        store_shared(buffer + row_lo + chunk, v[0], v[1]);
        store_shared(buffer + row_hi + chunk, v[2], v[3]);
      }
    }
    fence_async_shared();
    __syncwarp();
    if (leader) {
      if (row0 < p.m && col0 + box * box_cols < p.n) tma_store(&p.c_map, buffer, col0 + box * box_cols, row0, batch);
      bulk_commit(); /* possibly empty: keeps one group a box for the wait above */
    }
  }
}

/* The general epilogue of one consumer warpgroup's 64 x TN accumulators (alpha already applied), stored
 * from registers pair by pair (finish_pair): for C or a residual whose column pairs are not word-aligned.
 * Same layout as epilogue_direct. */
template <int TN>
__device__ __forceinline__ void epilogue(const kf_gemm_sm90_params &p, const float (&acc)[TN / 2], int batch, int row0,
                                         int col0) {
  const int lane = threadIdx.x % 32, warp = (threadIdx.x % 128) / 32;
  const int row = row0 + warp * 16 + lane / 4;
  const int col = col0 + 2 * (lane % 4);
  const bool has_bias = (p.flags & KF_SM90_HAS_BIAS) != 0;
  const int dt_bias = (p.dtypes >> KF_SM90_DT_SHIFT_BIAS) & 15;
  if (p.flags & KF_SM90_SWIGLU) {
#pragma unroll
    for (int i = 0; i < TN / 16; ++i) {
      const int c = col + 8 * i;
      float bias_gate[2] = {0.0f, 0.0f}, bias_up[2] = {0.0f, 0.0f};
      if (has_bias) {
#pragma unroll
        for (int j = 0; j < 2; ++j)
          if (c + j < p.n) {
            bias_gate[j] = load_bias(dt_bias, p.bias, (int64_t)(c + j) * p.bias_stride);
            bias_up[j] = load_bias(dt_bias, p.bias_up, (int64_t)(c + j) * p.bias_stride);
          }
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float t[2];
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const float gate = acc[4 * i + 2 * h + j] + bias_gate[j];
          const float up = acc[4 * (i + TN / 16) + 2 * h + j] + bias_up[j];
          t[j] = silu(gate) * up;
        }
        finish_pair(p, batch, row + 8 * h, c, t[0], t[1]);
      }
    }
    return;
  }
#pragma unroll
  for (int i = 0; i < TN / 8; ++i) {
    const int c = col + 8 * i;
    float bias[2] = {0.0f, 0.0f};
    if (has_bias) {
#pragma unroll
      for (int j = 0; j < 2; ++j)
        if (c + j < p.n) bias[j] = load_bias(dt_bias, p.bias, (int64_t)(c + j) * p.bias_stride);
    }
#pragma unroll
    for (int h = 0; h < 2; ++h)
      finish_pair(p, batch, row + 8 * h, c, acc[4 * i + 2 * h] + bias[0], acc[4 * i + 2 * h + 1] + bias[1]);
  }
}

/* A consumer warpgroup is done with the stage whose empty mbarrier is at offset bar: tell the producer
 * of every CTA of the cluster (each multicasts into this CTA's copy of the stage). */
template <int CL>
__device__ __forceinline__ void release_stage(uint32_t bar) {
  if constexpr (CL == 1) {
    barrier_arrive(bar);
  } else {
#pragma unroll
    for (int cta = 0; cta < CL; ++cta) barrier_arrive_cluster(bar, cta);
  }
}

template <int IN, int A_MN, int B_MN, int GEOMETRY>
__device__ __forceinline__ void gemm_sm90(const kf_gemm_sm90_params &p) {
  typedef geometry<GEOMETRY> g;
  constexpr bool NARROW = g::narrow, K_SPLIT = g::k_split;
  /* the wide split always splits (the host sees to it): one item a CTA, its share of one tile's K blocks.
     Known at compile time, the next item's state is not kept live through the exchange, which kept
     ptxas from fitting 128 accumulators without spills. */
  constexpr bool ALWAYS_SPLIT = GEOMETRY == KF_SM90_WIDE_SPLIT;
  constexpr int TILE_N = g::tile_n, CLUSTER_M = g::cluster, STAGES = g::stages;
  constexpr uint32_t B_STAGE_BYTES = g::b_stage_bytes, B_HALF_BYTES = g::b_half_bytes;
  constexpr int B_HALF_BOXES = TILE_N / 2 / MN_BOX; /* MN-major boxes a B half */
  extern __shared__ unsigned char shared_raw[];
  /* 128B-swizzled TMA boxes and wgmma atoms need 1024-byte aligned stages */
  const uint32_t base = (shared_address(shared_raw) + SWIZZLE_ATOM_BYTES - 1) & ~(uint32_t)(SWIZZLE_ATOM_BYTES - 1);
  const uint32_t a_stages = base;
  const uint32_t b_stages = base + STAGES * A_STAGE_BYTES;
  const uint32_t c_buffers = b_stages + STAGES * B_STAGE_BYTES; /* C_BUFFERS boxes a consumer warp */
  const uint32_t res_bars = c_buffers + g::c_buffer_bytes;      /* an mbarrier a C buffer */
  const uint32_t full_bars = c_buffers + g::c_staging_bytes;     /* TMA bytes landed */
  const uint32_t empty_bars = full_bars + STAGES * 8;           /* both consumers done reading */
  const uint32_t k_split_bars = empty_bars + STAGES * 8;        /* narrow, k_split > 1: go, then one a warp */
  const int k_block = K_BLOCK_BYTES / (IN == IN_E4M3 ? 1 : 2);  /* elements of K a stage */
  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; ++s) {
      barrier_init(full_bars + 8 * s, 1);
      barrier_init(empty_bars + 8 * s, 2 * CLUSTER_M); /* both consumers of every CTA of the cluster */
    }
    if (g::c_staging_bytes > 0)
      for (int j = 0; j < (TILE_M / C_BOX_ROWS) * C_BUFFERS; ++j) barrier_init(res_bars + 8 * j, 1);
    if (K_SPLIT && p.k_split > 1) {
      barrier_init(k_split_bars, 2 * (p.k_split - 1)); /* both consumers of every other rank */
      for (int pair = 0; pair < 8; ++pair) barrier_init(k_split_bars + 8 + 8 * pair, 1); /* the owner's expect */
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }

  /* Up to griddepcontrol.wait nothing is read but this kernel's parameters, which the previous kernel
     cannot change, so with programmatic dependent launch the first item's decoding (whose first reads
     of the parameters miss the constant cache) runs while that kernel ends. Decoded after the wait, it
     put ~1250 clocks between the wait and the first load; ~580 are left (clock64 trace, 4096^3). */
  const int units = (p.tiles_m + CLUSTER_M - 1) / CLUSTER_M * p.tiles_n * p.batch;
  const int rank = CLUSTER_M > 1 ? (int)cluster_rank() : 0;
  const int cluster = CLUSTER_M > 1 ? (int)cluster_index() : blockIdx.x;
  const int clusters = CLUSTER_M > 1 ? (int)cluster_count() : gridDim.x;
  const int k_blocks = (p.k + k_block - 1) / k_block;
  const int out_cols = (p.flags & KF_SM90_SWIGLU) ? TILE_N / 2 : TILE_N;
  /* Read through a shuffle, the warpgroup index is warp-uniform to ptxas: the roles' branches become
     uniform branches and the consumers' stage, descriptor and loop arithmetic moves to uniform registers
     (UIADD3 instead of IADD3 + R2UR before each wgmma). Sustained, 1-2.5% faster at 4096^3 and 1-3% in
     the narrow loop, level elsewhere (H200; HOPPER_GEMM_NOTES session 24). */
  const int warpgroup = __shfl_sync(0xffffffffu, (int)threadIdx.x / 128, 0);
  work_list list = work_list_begin(p, units, k_blocks, cluster); /* the producer's and consumers' alike */
  if (K_SPLIT && p.k_split > 1) { /* one tile a cluster, its K blocks split evenly among the ranks */
    const int s_rank = (int)cluster_rank(), tile = blockIdx.x / p.k_split;
    list.sk_next = (int64_t)tile * k_blocks + (int64_t)k_blocks * s_rank / p.k_split;
    list.sk_end = (int64_t)tile * k_blocks + (int64_t)k_blocks * (s_rank + 1) / p.k_split;
  }
  work_item item = {0, 0, 0};
  bool have = work_list_next(p, k_blocks, clusters, list, item);
  int batch = 0, tile_m = 0, tile_n = 0;
  if (have) tile_position<CLUSTER_M>(p, item.unit, rank, batch, tile_m, tile_n);
  /* the peer's multicasts and arrivals must find initialized barriers: fence.mbarrier_init above
     releases the inits to the cluster, this barrier makes the peer wait for them */
  cluster_arrive_relaxed();
  if (threadIdx.x == 32 && have) {
    /* A thread off the first load's path, between its arrival and its wait, fetches the descriptors
       and asks the L2 for the first item's first K blocks (this CTA's A rows and its half of B), so
       the loads after the wait find them there (first data ~2300 -> ~1600 clocks after the load).
       Reading memory the previous kernel may still write is harmless: a prefetch returns nothing,
       and the loads that return data come after the wait. */
    prefetch_tensor_map(&p.a);
    prefetch_tensor_map(&p.b);
    prefetch_tensor_map(&p.b_up);
    if (p.flags & KF_SM90_C_TMA) prefetch_tensor_map(&p.c_map);
    if (p.flags & KF_SM90_ADD_TMA) prefetch_tensor_map(&p.r_map);
    const int a_batch = (p.flags & KF_SM90_A_BATCHED) ? batch : 0;
    const int b_batch = (p.flags & KF_SM90_B_BATCHED) ? batch : 0;
    const int m0 = tile_m * TILE_M, n0 = tile_n * out_cols;
    const int kb_end = min(item.kb_end, item.kb_begin + STAGES);
    for (int kb = item.kb_begin; kb < kb_end; ++kb) {
      const int k0 = kb * k_block;
      if (A_MN) {
        tma_prefetch_l2(&p.a, m0, k0, a_batch);
        if (!NARROW || m0 + MN_BOX < p.m) tma_prefetch_l2(&p.a, m0 + MN_BOX, k0, a_batch);
      } else {
        tma_prefetch_l2(&p.a, k0, m0, a_batch);
        if (NARROW && m0 + 64 < p.m) tma_prefetch_l2(&p.a, k0, m0 + 64, a_batch);
      }
      for (int half = 0; half < 2; ++half) { /* with a peer, only this CTA's half */
        if (CLUSTER_M > 1 && half != rank) continue;
        const kf_tensor_map *map = half ? &p.b_up : &p.b;
        const int n = half ? n0 + p.b_up_column : n0;
        if (B_MN) {
          for (int box = 0; box < B_HALF_BOXES; ++box) tma_prefetch_l2(map, n + box * MN_BOX, k0, b_batch);
        } else {
          tma_prefetch_l2(map, k0, n, b_batch);
        }
      }
    }
  }
  cluster_wait();
  /* Programmatic dependent launch (the host allows it; a no-op in a plain launch): wait for the previous
     kernel's completion and memory before the first access of ours. The operands keep the decoding
     above on this side of the wait. */
  asm volatile("griddepcontrol.wait;" ::"r"(k_blocks), "r"(batch), "r"(tile_m), "r"(tile_n), "r"(item.kb_begin),
               "r"(item.kb_end)
               : "memory");

  if (warpgroup == 0) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(PRODUCER_REGS));
    if (threadIdx.x != 0) return; /* one thread loads; the rest of the warpgroup has nothing left to do */
    uint32_t it = 0;
    while (have) {
      const int m0 = tile_m * TILE_M;
      const int n0 = tile_n * out_cols, n1 = n0 + p.b_up_column;
      const int a_batch = (p.flags & KF_SM90_A_BATCHED) ? batch : 0;
      const int b_batch = (p.flags & KF_SM90_B_BATCHED) ? batch : 0;
      /* narrow: A in boxes of 64 rows (one a consumer), and none for a consumer whose rows are all past
         the last row of A (that consumer issues no products: see below). Boxes wholly out of bounds
         cost as much as loads: at M = 192 they made a call ~25% slower than at M = 256. */
      const bool a_second = !NARROW || m0 + 64 < p.m;
      const uint32_t stage_bytes = (a_second ? A_STAGE_BYTES : A_STAGE_BYTES / 2) + B_STAGE_BYTES;
      for (int kb = item.kb_begin; kb < item.kb_end; ++kb, ++it) {
        const uint32_t s = it % STAGES, phase = (it / STAGES) & 1;
        const uint32_t full = full_bars + 8 * s;
        barrier_wait(empty_bars + 8 * s, phase ^ 1); /* a fresh barrier counts as a completed odd phase */
        barrier_expect_bytes(full, stage_bytes); /* partly out-of-bounds boxes count in full */
        const int k0 = kb * k_block;
        const uint32_t a = a_stages + s * A_STAGE_BYTES, b = b_stages + s * B_STAGE_BYTES;
        if (A_MN) {
          tma_load(a, &p.a, m0, k0, a_batch, full);
          if (a_second) tma_load(a + MN_BOX_BYTES, &p.a, m0 + MN_BOX, k0, a_batch, full);
        } else if (NARROW) {
          tma_load(a, &p.a, k0, m0, a_batch, full);
          if (a_second) tma_load(a + A_STAGE_BYTES / 2, &p.a, k0, m0 + 64, a_batch, full);
        } else {
          tma_load(a, &p.a, k0, m0, a_batch, full);
        }
        if (CLUSTER_M == 1) {
          if (B_MN) {
#pragma unroll
            for (int box = 0; box < B_HALF_BOXES; ++box) {
              tma_load(b + box * MN_BOX_BYTES, &p.b, n0 + box * MN_BOX, k0, b_batch, full);
              tma_load(b + B_HALF_BYTES + box * MN_BOX_BYTES, &p.b_up, n1 + box * MN_BOX, k0, b_batch, full);
            }
          } else {
            tma_load(b, &p.b, k0, n0, b_batch, full);
            tma_load(b + B_HALF_BYTES, &p.b_up, k0, n1, b_batch, full);
          }
        } else {
          /* this CTA's half of B (rank 0: columns [0, 128) of the tile, rank 1: [128, 256)) into every CTA */
          const kf_tensor_map *half_map = rank == 0 ? &p.b : &p.b_up;
          const int half_n = rank == 0 ? n0 : n1;
          const uint32_t half = b + rank * B_HALF_BYTES;
          const uint16_t everyone = (1u << CLUSTER_M) - 1;
          if (B_MN) {
#pragma unroll
            for (int box = 0; box < B_HALF_BOXES; ++box)
              tma_load_multicast(half + box * MN_BOX_BYTES, half_map, half_n + box * MN_BOX, k0, b_batch, full,
                                 everyone);
          } else {
            tma_load_multicast(half, half_map, k0, half_n, b_batch, full, everyone);
          }
        }
      }
      have = work_list_next(p, k_blocks, clusters, list, item);
      if (have) tile_position<CLUSTER_M>(p, item.unit, rank, batch, tile_m, tile_n);
    }
    launch_dependents();
    /* Producer tail: the peer's consumers arrive on this CTA's empty barriers, so the CTA must not
       leave before they are done with every stage. Waiting as if for STAGES more fills waits for the
       release of each stage's last contents by all consumers of the cluster; nothing else of the peer
       touches this CTA's shared memory after that (its multicasts were all consumed here). A cluster
       barrier at the end did the same, but made each CTA wait for its peer's epilogue as well. */
    if (CLUSTER_M > 1)
      for (int j = 0; j < STAGES; ++j, ++it) barrier_wait(empty_bars + 8 * (it % STAGES), ((it / STAGES) & 1) ^ 1);
  } else {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(CONSUMER_REGS));
    const int consumer = warpgroup - 1; /* rows [64 consumer, 64 consumer + 64) of the tile */
    const bool releaser = threadIdx.x % 128 == 0;
    /* Offsets of this consumer's A rows and of a K step inside a stage; descriptor offsets. */
    const uint32_t a_rows = consumer * (A_MN ? MN_BOX_BYTES : 64 * K_BLOCK_BYTES);
    const uint32_t a_step = A_MN ? 16 * 128 : 32, b_step = B_MN ? 16 * 128 : 32;
    const uint32_t a_leading = A_MN ? MN_BOX_BYTES : 16, b_leading = B_MN ? MN_BOX_BYTES : 16;
    /* Descriptors of stage 0; another stage or K step is the same descriptor with its start address
       (bits 0-13, in 16-byte units) advanced, which never carries out of the field (shared memory
       addresses are below 2^18). Adding the offset costs one add where rebuilding cost ~15 instructions
       a K block and warp. */
    const uint64_t desc_a0 = matrix_descriptor(a_stages + a_rows, a_leading, SWIZZLE_ATOM_BYTES);
    const uint64_t desc_b0 = matrix_descriptor(b_stages, b_leading, SWIZZLE_ATOM_BYTES);
    uint32_t it = 0;
    float acc[g::acc]; /* no clearing: each item's first wgmma overwrites them */
    work_item next = {0, 0, 0};
    /* the additions through the TMA (wide tiles, 16-bit C, so boxes of 64 columns): this warp's C buffers
       and their mbarriers. Not in the narrow module: its epilogue instances made ptxas spill there. */
    constexpr bool RES_TMA = GEOMETRY == KF_SM90_WIDE;
    const bool res_tma = RES_TMA && (p.flags & KF_SM90_ADD_TMA);
    const int warp_in_group = (threadIdx.x % 128) / 32; /* rows [16 w, 16 w + 16) of the consumer's */
    const uint32_t warp_buffers = c_buffers + (4 * consumer + warp_in_group) * C_BUFFERS * C_BOX_BYTES;
    const uint32_t warp_res_bars = res_bars + (4 * consumer + warp_in_group) * C_BUFFERS * 8;
    uint32_t res_phase = 0;
    while (have) {
      /* narrow: a consumer whose 64 rows are all past the last row of A has no A rows loaded and issues
         no products; its accumulators are never stored (the epilogue clips rows >= m) */
      const bool products = !NARROW || tile_m * TILE_M + consumer * 64 < p.m;
      /* the K block at which each warp has the TMA load its first C_BUFFERS boxes of the additions, when
         this item is the whole tile (a stream-K finisher or K-split owner loads them in its epilogue) */
      const bool preload = res_tma && item.kb_begin == 0 && item.kb_end == k_blocks &&
                           !(K_SPLIT && (ALWAYS_SPLIT || p.k_split > 1));
      const int preload_kb = preload ? max(0, k_blocks - KF_SM90_ADD_LEAD) : -1;
      for (int kb = item.kb_begin; kb < item.kb_end; ++kb, ++it) {
        const uint32_t s = it % STAGES, phase = (it / STAGES) & 1;
        barrier_wait(full_bars + 8 * s, phase);
        const uint64_t desc_a = desc_a0 + s * (A_STAGE_BYTES >> 4), desc_b = desc_b0 + s * (B_STAGE_BYTES >> 4);
        if (products) {
          wgmma_fence();
#pragma unroll
          for (int step = 0; step < 4; ++step)
            wgmma_step<IN, A_MN, B_MN>(acc, desc_a + step * (a_step >> 4), desc_b + step * (b_step >> 4),
                                       step > 0 || kb > item.kb_begin);
          wgmma_commit();
        }
        if (kb == preload_kb && threadIdx.x % 32 == 0)
          load_residual_boxes(p, batch, tile_m * TILE_M + consumer * 64 + 16 * warp_in_group, tile_n * out_cols, 0,
                              TILE_N / 64, 64, warp_buffers, warp_res_bars);
        /* the previous K block's products are done: its stage can be refilled */
        wgmma_wait<1>(acc);
        if (kb > item.kb_begin && releaser) release_stage<CLUSTER_M>(empty_bars + 8 * ((it - 1) % STAGES));
      }
      /* the next item's tile, decoded while the last products run: decoded after the epilogue (four
         dependent integer divisions), it kept ~810 clocks between an epilogue and the next tile's first
         products, ~190 this way */
      int next_batch = 0, next_m = 0, next_n = 0;
      const bool have_next = !ALWAYS_SPLIT && work_list_next(p, k_blocks, clusters, list, next);
      if (have_next) tile_position<CLUSTER_M>(p, next.unit, rank, next_batch, next_m, next_n);
      wgmma_wait<0>(acc);
      if (!have_next) launch_dependents();
      if (releaser) release_stage<CLUSTER_M>(empty_bars + 8 * ((it - 1) % STAGES)); /* an item has >= 1 K block */
      bool finish = true; /* this warp runs the epilogue of its rows */
      bool k_split = false;
      if constexpr (K_SPLIT) {
        if (ALWAYS_SPLIT || p.k_split > 1) { /* the K split in a cluster: the owner of a warp's rows finishes them */
          k_split = true;
          finish = k_split_exchange(p, acc, a_stages, k_split_bars, consumer, products);
        }
      }
      if (k_split) {
        /* exchanged above: `finish` says whether this warp owns its rows */
      } else if (item.kb_begin > 0) { /* a stream-K contributor: the finisher of this unit runs the epilogue */
        stream_k_contribute<GEOMETRY>(p, acc, cluster, rank, consumer, products);
        finish = false;
      } else if (item.kb_end < k_blocks) { /* a stream-K finisher: the clusters after this one hold the rest */
        const int64_t unit_end = (int64_t)(item.unit - p.sk_first_unit + 1) * k_blocks;
        int last = cluster + 1;
        while (last + 1 < p.sk_clusters && stream_k_begin(p, units, k_blocks, last + 1) < unit_end) ++last;
        stream_k_collect<GEOMETRY>(p, acc, cluster + 1, last, rank, consumer, products);
      }
      if (finish) {
        if (p.alpha != 1.0f) {
#pragma unroll
          for (int i = 0; i < g::acc; ++i) acc[i] *= p.alpha;
        }
        const int row0 = tile_m * TILE_M + consumer * 64, col0 = tile_n * out_cols;
        /* the fitted tiles have no C staging (the host never sets C_TMA for them) */
        if (g::c_staging_bytes > 0 && (p.flags & KF_SM90_C_TMA)) {
          if constexpr (g::c_staging_bytes > 0) {
            const int warp_row0 = row0 + 16 * warp_in_group;
            const int dt_c = (p.dtypes >> KF_SM90_DT_SHIFT_C) & 15;
            const bool swiglu = (p.flags & KF_SM90_SWIGLU) != 0, has_bias = (p.flags & KF_SM90_HAS_BIAS) != 0;
#define EPILOGUE_TMA_CALL(DT_C, SWIGLU, HAS_BIAS, RES)                                                  \
  epilogue_tma<DT_C, SWIGLU, HAS_BIAS, TILE_N, RES>(p, acc, batch, warp_row0, col0, warp_buffers, warp_res_bars, \
                                                    res_phase, preload)
#define EPILOGUE_TMA(DT_C)                                                                                    \
  (swiglu ? (has_bias ? EPILOGUE_TMA_CALL(DT_C, 1, 1, 0) : EPILOGUE_TMA_CALL(DT_C, 1, 0, 0))                   \
          : (has_bias ? EPILOGUE_TMA_CALL(DT_C, 0, 1, 0) : EPILOGUE_TMA_CALL(DT_C, 0, 0, 0)))
#define EPILOGUE_TMA_RES(DT_C) (has_bias ? EPILOGUE_TMA_CALL(DT_C, 0, 1, 1) : EPILOGUE_TMA_CALL(DT_C, 0, 0, 1))
            if (RES_TMA && res_tma) { /* the host sets it for 16-bit C without SwiGLU only */
              if constexpr (RES_TMA) {
                if (dt_c == KF_DT_BF16)
                  EPILOGUE_TMA_RES(KF_DT_BF16);
                else
                  EPILOGUE_TMA_RES(KF_DT_F16);
              }
            } else if (dt_c == KF_DT_BF16)
              EPILOGUE_TMA(KF_DT_BF16);
            else if (dt_c == KF_DT_F16)
              EPILOGUE_TMA(KF_DT_F16);
            else
              EPILOGUE_TMA(KF_DT_F32);
#undef EPILOGUE_TMA_RES
#undef EPILOGUE_TMA_CALL
#undef EPILOGUE_TMA
          }
        } else if ((p.flags & KF_SM90_C_PAIRS) &&
                   !((p.flags & KF_SM90_SWIGLU) && (p.flags & (KF_SM90_READ_C | KF_SM90_HAS_RESIDUAL)))) {
          /* (SwiGLU with beta C or a residual, rare, takes the general path: fewer instances to compile) */
          const int dt_c = (p.dtypes >> KF_SM90_DT_SHIFT_C) & 15;
          const bool swiglu = (p.flags & KF_SM90_SWIGLU) != 0, has_bias = (p.flags & KF_SM90_HAS_BIAS) != 0;
          const bool add = (p.flags & (KF_SM90_READ_C | KF_SM90_HAS_RESIDUAL)) != 0;
#define EPILOGUE_DIRECT(DT_C)                                                                          \
  (add ? (has_bias ? epilogue_direct<DT_C, 0, 1, 1, TILE_N>(p, acc, batch, row0, col0)                  \
                   : epilogue_direct<DT_C, 0, 0, 1, TILE_N>(p, acc, batch, row0, col0))                 \
       : swiglu ? (has_bias ? epilogue_direct<DT_C, 1, 1, 0, TILE_N>(p, acc, batch, row0, col0)         \
                            : epilogue_direct<DT_C, 1, 0, 0, TILE_N>(p, acc, batch, row0, col0))        \
                : (has_bias ? epilogue_direct<DT_C, 0, 1, 0, TILE_N>(p, acc, batch, row0, col0)         \
                            : epilogue_direct<DT_C, 0, 0, 0, TILE_N>(p, acc, batch, row0, col0)))
          if (dt_c == KF_DT_BF16)
            EPILOGUE_DIRECT(KF_DT_BF16);
          else if (dt_c == KF_DT_F16)
            EPILOGUE_DIRECT(KF_DT_F16);
          else
            EPILOGUE_DIRECT(KF_DT_F32);
#undef EPILOGUE_DIRECT
        } else {
          epilogue<TILE_N>(p, acc, batch, row0, col0);
        }
      }
      item = next, batch = next_batch, tile_m = next_m, tile_n = next_n, have = have_next;
    }
    /* the CTA's shared memory must outlive the copy engine's reads of it (the writes to C complete
       with the grid) */
    if (threadIdx.x % 32 == 0) bulk_wait_read<0>();
  }
}

/* One module a geometry: KF_SM90_MODULE_GEOMETRY (set by the build) picks which entry points this
   compile makes, so the geometries' ptxas runs are separate build actions. Wide: clusters of 2 along M
   (__cluster_dims__), named kf_gemm_sm90_*; narrow and wide split: no cluster attribute (the K split sets
   one at launch), named kf_gemm_sm90_*_narrow and kf_gemm_sm90_*_split. */
#if KF_SM90_MODULE_GEOMETRY == KF_SM90_WIDE
#define GEMM_SM90_ENTRY(name, IN, A_MN, B_MN)                                                            \
  extern "C" __global__ void __cluster_dims__(KF_SM90_CLUSTER_M, 1, 1) __launch_bounds__(THREADS, 1)       \
      name(const __grid_constant__ kf_gemm_sm90_params p) {                                              \
    gemm_sm90<IN, A_MN, B_MN, KF_SM90_WIDE>(p);                                                          \
  }
#else
#define GEMM_SM90_ENTRY(name, IN, A_MN, B_MN)                                                            \
  extern "C" __global__ void __launch_bounds__(THREADS, 1) GEMM_SM90_SUFFIXED(name)(                      \
      const __grid_constant__ kf_gemm_sm90_params p) {                                                   \
    gemm_sm90<IN, A_MN, B_MN, KF_SM90_MODULE_GEOMETRY>(p);                                               \
  }
#endif

#else /* not the sm_90a image: entry points that trap (never launched there) */

#define GEMM_SM90_ENTRY(name, IN, A_MN, B_MN)                                                            \
  extern "C" __global__ void __launch_bounds__(THREADS, 1) GEMM_SM90_SUFFIXED(name)(                      \
      const __grid_constant__ kf_gemm_sm90_params p) {                                                   \
    (void)p;                                                                                             \
    __trap();                                                                                            \
  }

#endif

/* The fitted geometries take B K-major only (a B half of W / 2 rows is one box; N-major boxes are 64
   columns wide, which 48 and 80 are not). */
GEMM_SM90_ENTRY(kf_gemm_sm90_bf16_k_k, IN_BF16, 0, 0)
GEMM_SM90_ENTRY(kf_gemm_sm90_bf16_m_k, IN_BF16, 1, 0)
GEMM_SM90_ENTRY(kf_gemm_sm90_f16_k_k, IN_F16, 0, 0)
GEMM_SM90_ENTRY(kf_gemm_sm90_f16_m_k, IN_F16, 1, 0)
GEMM_SM90_ENTRY(kf_gemm_sm90_e4m3_k_k, IN_E4M3, 0, 0)
#if KF_SM90_MODULE_GEOMETRY < KF_SM90_FIT_96
GEMM_SM90_ENTRY(kf_gemm_sm90_bf16_k_n, IN_BF16, 0, 1)
GEMM_SM90_ENTRY(kf_gemm_sm90_bf16_m_n, IN_BF16, 1, 1)
GEMM_SM90_ENTRY(kf_gemm_sm90_f16_k_n, IN_F16, 0, 1)
GEMM_SM90_ENTRY(kf_gemm_sm90_f16_m_n, IN_F16, 1, 1)
#endif

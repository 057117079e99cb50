/* cuda_gemm_sm90.c — the Hopper GEMM path (kernels_src/cuda/gemm_sm90.cu: TMA, wgmma, warp
 * specialization, persistent CTAs). Picks the tile geometry (wide, narrow, wide split or fitted:
 * make_plan), builds the TMA tensor maps of A and B on the host, fills the parameter block and launches
 * one CTA per SM (or per tile when there are fewer tiles).
 *
 * What the path takes: sm_90 devices; A and B both bf16, both f16, or both e4m3 with A [m, k] and B
 * [n, k] stored (FP8 wgmma reads K-major operands only); k >= 1 (a tensor map needs non-empty
 * dimensions); every A and B matrix as the TMA needs it: base address and leading dimension multiples
 * of 16 bytes, and batch strides too, each batch entry after the previous one. The rest goes to the
 * generic kernels (kf_cuda_gemm_sm90_supports returns 0). C goes through a tensor map too (the
 * kernel's TMA-store epilogue) when C is bf16, f16 or f32 with TMA-aligned rows and nothing is added to
 * the products, or (wide tiles, 16-bit C, no SwiGLU) exactly one addition that the TMA can load into the
 * same staging buffers: beta C, or a residual of C's dtype that a tensor map describes
 * (additions_through_tma). Otherwise the kernel stores C from registers.
 * With stream-K (make_plan) a call needs a workspace for the partial sums (the core allocates it from
 * the context's allocator and reuses it only for later work on the same stream) and the context's
 * flag words (stream_k_flags): both belong to one context, whose launches run in order on its one
 * stream, so calls on other contexts and streams never share them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cuda/cuda_internal.h"
#include "kernels_src/common/kf_gemm_sm90_params.h"

#define TMA_ALIGN 16 /* bytes: global address and every stride of a tensor map */
#define TMA_STRIDE_LIMIT ((int64_t)1 << 40)
#define TENSOR_MAP_DATA_TYPE_FLOAT32 7 /* CU_TENSOR_MAP_DATA_TYPE_FLOAT32 of cuda.h (C of f32) */
#define TMA_BOX_BYTES 128              /* inner extent of a 128B-swizzled box */

static uint64_t matrix_address(const kf_matrix_arg *arg) {
  return arg->buffer->address + (uint64_t)(arg->offset * kf_cuda_element_size(arg->dtype));
}

static int batched(const kf_matrix_arg *arg, int64_t batch) { return batch > 1 && arg->batch_stride != 0; }

/* Whether a TMA tensor map can describe the stored matrix `arg` of `rows` rows (of ld elements). */
static int tma_describable(const kf_matrix_arg *arg, int64_t rows, int64_t batch) {
  const int64_t size = kf_cuda_element_size(arg->dtype);
  const int64_t row_bytes = arg->ld * size;
  if (matrix_address(arg) % TMA_ALIGN != 0 || row_bytes % TMA_ALIGN != 0 || row_bytes >= TMA_STRIDE_LIMIT) return 0;
  if (!batched(arg, batch)) return 1;
  const int64_t batch_bytes = arg->batch_stride * size;
  return batch_bytes % TMA_ALIGN == 0 && batch_bytes < TMA_STRIDE_LIMIT && arg->batch_stride >= arg->ld * rows;
}

/* The fitted geometries (128-row tiles 96, 160 or 192 columns wide; gemm_sm90.cu). */
static int is_fit(int geometry) { return geometry >= KF_SM90_FIT_96; }

/* Accumulator columns of a tile of `geometry` (gemm_sm90.cu). */
static int tile_n_of(int geometry) {
  return is_fit(geometry) ? KF_SM90_FIT_TILE_N_OF(geometry)
         : geometry == KF_SM90_NARROW ? KF_SM90_NARROW_TILE_N
                                      : KF_SM90_TILE_N;
}

/* Columns of C a tile covers: half its accumulators with SwiGLU (gate and up). */
static int tile_columns(const kf_gemm_args *args, int geometry) {
  return args->activation == KF_GEMM_SWIGLU ? tile_n_of(geometry) / 2 : tile_n_of(geometry);
}

/* Tiles of one call in `geometry`. */
static int64_t tiles_of(const kf_gemm_args *args, int geometry) {
  const int64_t columns = tile_columns(args, geometry);
  return (args->m + KF_SM90_TILE_M - 1) / KF_SM90_TILE_M * ((args->n + columns - 1) / columns) * args->batch;
}

int kf_cuda_gemm_sm90_supports(kf_backend_context *ctx, const kf_gemm_args *args) {
  int major = 0, minor = 0;
  if (kf_cu.DeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, ctx->device) != CUDA_SUCCESS ||
      kf_cu.DeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, ctx->device) != CUDA_SUCCESS)
    return 0;
  if (major != 9 || minor != 0) return 0; /* the kernels exist as sm_90a machine code only */
  const kf_dtype in = args->a.dtype;
  if (in != KF_BF16 && in != KF_F16 && in != KF_F8_E4M3) return 0;
  if (in == KF_F8_E4M3 && (args->trans_a || !args->trans_b)) return 0;
  if (args->k < 1) return 0;
  if (tiles_of(args, KF_SM90_FIT_96) > INT32_MAX) return 0; /* the narrowest tiles: the most */
  const int64_t a_rows = args->trans_a ? args->k : args->m;
  const int64_t b_rows = args->trans_b ? (args->activation == KF_GEMM_SWIGLU ? 2 * args->n : args->n) : args->k;
  if (!tma_describable(&args->a, a_rows, args->batch) || !tma_describable(&args->b, b_rows, args->batch)) return 0;
  if (args->activation == KF_GEMM_SWIGLU && !tma_describable(&args->b_up, b_rows, args->batch)) return 0;
  return 1;
}

/* Stream-K (gemm_sm90.cu) shares the K blocks of the last, partial wave of units among all clusters.
 * A piece of a split unit is worth its partial sums' trip through the workspace (128 KiB written,
 * then read, a CTA: ~2 K blocks of products) only when it is at least STREAM_K_MIN_BLOCKS long, and
 * splitting must beat whole units by more than STREAM_K_COST_BLOCKS. By default it is used from
 * STREAM_K_MIN_WAVES whole waves on, and when there are fewer units than clusters (no whole wave:
 * the clusters without a unit would idle). Not between: the clusters of the stream-K phase work at
 * different K offsets, so they stop sharing A and B tiles in L2, and that phase ran 1.2-1.6x slower a
 * K block than whole units (H200, docs/HOPPER_GEMM_NOTES.md v6): a net gain at 13.6 and 15.5 waves
 * (+0.8 to +2.1%), a loss at 3.88 (4096^3 -2.5%, 4096x4096x14336 -6.3%); at 0.48 waves
 * (512x4096x4096: 32 units) a gain of +15%. An in-step layout that kept the split units' owners at K
 * block 0 together did not do better (v7 in the notes). KF_SM90_STREAM_K=0 turns it off;
 * KF_SM90_STREAM_K=1 uses it wherever it shortens the busiest cluster (the tests use it to reach the
 * fixup on small shapes). */
#define STREAM_K_MIN_BLOCKS 8
#define STREAM_K_COST_BLOCKS 2
#define STREAM_K_MIN_WAVES 8

/* What the host needs of each geometry (indexed by KF_SM90_WIDE, KF_SM90_NARROW, KF_SM90_WIDE_SPLIT,
 * KF_SM90_FIT_*): its KF_SM90_TILE name, its module, its entry points' name suffix (gemm_sm90.cu) and
 * shared memory. */
static const struct {
  const char *name;
  kf_cuda_module module;
  const char *suffix;
  unsigned shared_bytes;
} geometries[KF_SM90_GEOMETRIES] = {
    [KF_SM90_WIDE] = {"wide", KF_CUDA_MODULE_GEMM_SM90, "", KF_SM90_SHARED_BYTES},
    [KF_SM90_NARROW] = {"narrow", KF_CUDA_MODULE_GEMM_SM90_NARROW, "_narrow", KF_SM90_NARROW_SHARED_BYTES},
    [KF_SM90_WIDE_SPLIT] = {"split", KF_CUDA_MODULE_GEMM_SM90_SPLIT, "_split", KF_SM90_SPLIT_SHARED_BYTES},
    [KF_SM90_FIT_96] = {"n96", KF_CUDA_MODULE_GEMM_SM90_N96, "_n96", KF_SM90_FIT_SHARED_BYTES_OF(KF_SM90_FIT_96)},
    [KF_SM90_FIT_160] = {"n160", KF_CUDA_MODULE_GEMM_SM90_N160, "_n160",
                         KF_SM90_FIT_SHARED_BYTES_OF(KF_SM90_FIT_160)},
    [KF_SM90_FIT_192] = {"n192", KF_CUDA_MODULE_GEMM_SM90_N192, "_n192",
                         KF_SM90_FIT_SHARED_BYTES_OF(KF_SM90_FIT_192)},
};

/* How one call is laid out over the clusters of the grid. */
typedef struct sm90_plan {
  int geometry;          /* KF_SM90_WIDE, KF_SM90_NARROW (128 x 128 tiles), KF_SM90_WIDE_SPLIT or KF_SM90_FIT_* */
  int64_t cluster;       /* CTAs a cluster: wide KF_SM90_CLUSTER_M; narrow and wide split: 1, or the K
                            split's S (a cluster a tile, set at launch) */
  int64_t units;         /* work units: `cluster` row blocks of one column block */
  int64_t k_blocks;      /* K blocks of a tile */
  int64_t clusters;      /* clusters launched */
  int64_t sk_first_unit; /* units before it go whole to the clusters; the K blocks of the rest are shared */
  int64_t sk_clusters;   /* clusters sharing them (0: no stream-K) */
} sm90_plan;

/* Clusters of `size` narrow CTAs the device holds at once (asked once a context; every narrow entry
 * point has the same resources, so bf16's stands for all, and the wide split's CTAs, one an SM as well,
 * fit the same clusters). 0 when the driver cannot say. */
static int64_t cluster_capacity(kf_backend_context *ctx, int size) {
  int *cached = &ctx->gemm_sm90_cluster_capacity[size];
  if (*cached == 0) {
    *cached = -1;
    CUfunction function;
    if (kf_cuda_enter(ctx) != KF_OK) return 0;
    if (kf_cuda_function_shared(ctx, KF_CUDA_MODULE_GEMM_SM90_NARROW, 0, "kf_gemm_sm90_bf16_k_k_narrow",
                                KF_SM90_NARROW_SHARED_BYTES, &function) == KF_OK) {
      CUlaunchAttribute attribute;
      memset(&attribute, 0, sizeof attribute);
      attribute.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
      attribute.value.cluster_dim.x = (unsigned)size;
      attribute.value.cluster_dim.y = attribute.value.cluster_dim.z = 1;
      const CUlaunchConfig config = {.grid_x = (unsigned)size, .grid_y = 1, .grid_z = 1, .block_x = KF_SM90_THREADS,
                                     .block_y = 1, .block_z = 1, .shared_bytes = KF_SM90_NARROW_SHARED_BYTES,
                                     .stream = ctx->stream, .attributes = &attribute, .attribute_count = 1};
      int clusters = 0;
      if (kf_cu.OccupancyMaxActiveClusters(&clusters, function, &config) == CUDA_SUCCESS && clusters > 0)
        *cached = clusters;
    }
    kf_cuda_leave(ctx);
  }
  return *cached > 0 ? *cached : 0;
}

/* The narrow geometry's K split in a cluster (gemm_sm90.cu, k_split_exchange): when the tiles are few,
 * S CTAs (a cluster) share each tile's K blocks evenly and add their partial sums through distributed
 * shared memory, instead of stream-K's trip through the L2 (at m = 64 and 32 tiles, stream-K's fixup
 * kept ~4 us of a ~15 us call after the last products). The largest S of 2..8 (the most CTAs at work)
 * with every tile's cluster on the device at once, each CTA with at least KSPLIT_MIN_BLOCKS K blocks.
 * (An H200 holds 66 clusters of 2 but only 30 of 4: its GPCs are not all multiples of 4 SMs.)
 * KF_SM90_KSPLIT=0 turns it off; =S forces S wherever each CTA gets a K block, whatever fits at once
 * (tests, benchmarks). It comes before stream-K: KF_SM90_STREAM_K=1 reaches narrow stream-K on small
 * grids only with KF_SM90_KSPLIT=0. */
#define KSPLIT_MIN_BLOCKS 4
#define KSPLIT_MAX 8 /* the largest portable cluster */

static int64_t k_split_of(kf_backend_context *ctx, int64_t tiles, int64_t k_blocks) {
  const char *choice = getenv("KF_SM90_KSPLIT");
  if (choice != NULL && choice[0] != '\0') {
    const int64_t forced = choice[0] >= '2' && choice[0] <= '0' + KSPLIT_MAX && choice[1] == '\0' ? choice[0] - '0' : 1;
    return k_blocks >= forced ? forced : 1;
  }
  int64_t best = 1; /* the largest S that fits: the most CTAs */
  for (int size = 2; size <= KSPLIT_MAX; ++size)
    if (k_blocks >= size * KSPLIT_MIN_BLOCKS && tiles <= cluster_capacity(ctx, size)) best = size;
  return best;
}

static void plan_geometry(kf_backend_context *ctx, const kf_gemm_args *args, int geometry, sm90_plan *plan) {
  if (is_fit(geometry) && !args->trans_b) geometry = KF_SM90_NARROW; /* forced with B N-major: no entry point */
  const int narrow = geometry == KF_SM90_NARROW;
  const int64_t k_block = KF_SM90_K_BLOCK_BYTES / kf_cuda_element_size(args->a.dtype);
  const int64_t tiles_m = (args->m + KF_SM90_TILE_M - 1) / KF_SM90_TILE_M;
  const int64_t tiles_n = (args->n + tile_columns(args, geometry) - 1) / tile_columns(args, geometry);
  plan->geometry = geometry;
  plan->cluster = geometry == KF_SM90_WIDE ? KF_SM90_CLUSTER_M : 1;
  const int64_t clusters = ctx->sm_count / plan->cluster;
  plan->units = (tiles_m + plan->cluster - 1) / plan->cluster * tiles_n * args->batch;
  plan->k_blocks = (args->k + k_block - 1) / k_block;
  plan->clusters = plan->units < clusters ? plan->units : clusters;
  plan->sk_first_unit = plan->units;
  plan->sk_clusters = 0;
  if (is_fit(geometry)) return; /* whole tiles, K whole: the host picks them for about one wave */
  const int64_t k_split = geometry != KF_SM90_WIDE ? k_split_of(ctx, plan->units, plan->k_blocks) : 1;
  if (geometry == KF_SM90_WIDE_SPLIT && k_split < 2) { /* the wide split always splits (gemm_sm90.cu) */
    plan_geometry(ctx, args, KF_SM90_WIDE, plan);
    return;
  }
  if (k_split > 1) { /* a cluster a tile, no stream-K; the kernel's work lists start at unit 0 */
    plan->cluster = k_split;
    plan->clusters = plan->units;
    plan->sk_first_unit = 0;
    return;
  }
  const int64_t waves = plan->units / clusters, rest = plan->units % clusters;
  const char *choice = getenv("KF_SM90_STREAM_K");
  const int by_default = choice == NULL || choice[0] == '\0';
  if (!by_default && strcmp(choice, "0") == 0) return;
  if (rest == 0 || (by_default && waves > 0 && waves < STREAM_K_MIN_WAVES)) return;
  /* Narrow tiles, less than a wave, with rows for both consumers: whole tiles. There a stream-K piece
     moves 64 KiB of partial sums, and row blocks that share B columns stop sharing them in L2 once
     their pieces run at different K offsets. H200, 4096-deep, narrow whole against stream-K: m = 320
     and 384 (96 tiles) 27-29 us against 33-35; m = 128 (96-112 tiles) 2-6% faster. With one
     consumer (m <= 64) stream-K stays: whole tiles were 1-9% slower at 80-112 tiles, except at
     64 x 14336 x 4096 (2% faster). */
  if (by_default && narrow && waves == 0 && args->m > KF_SM90_TILE_M / 2) return;
  /* Wide units, less than a wave but at least two thirds of one: whole units too. H200, wide whole
     against stream-K: 48 units (m = 640-768 at 4096 x 4096, 4096 x 8192, 4096 x 14336) 6-19% faster,
     64 units (896 x 4096 x 14336) 8% faster; at 32 units (m = 448-512) stream-K stays 1.2-1.3x
     faster, as v6 found at 512 x 4096 x 4096. */
  if (by_default && !narrow && waves == 0 && 3 * plan->units >= 2 * clusters) return;
  const int64_t first = waves * clusters;
  const int64_t shared_blocks = rest * plan->k_blocks;
  int64_t sharing = shared_blocks / STREAM_K_MIN_BLOCKS;
  if (sharing > clusters) sharing = clusters;
  /* K blocks of the busiest cluster: whole units against stream-K */
  const int64_t whole = (waves + 1) * plan->k_blocks;
  const int64_t split =
      waves * plan->k_blocks + (sharing > 0 ? (shared_blocks + sharing - 1) / sharing : 0) + STREAM_K_COST_BLOCKS;
  if (sharing < 2 || split >= whole) return;
  plan->clusters = clusters;
  plan->sk_first_unit = first;
  plan->sk_clusters = sharing;
}

/* The geometry, by a rule measured on the H200 (bf16, N and K of 4096 and 14336, M from 24 to 3072
 * against the wide geometry and cuBLAS; docs/HOPPER_GEMM_NOTES.md, session 19):
 *  - narrow when A has one row block (m <= 128): a wide cluster's second CTA would have no rows, and
 *    the narrow tiles keep every SM streaming B (m = 24..128: 0.45-0.66 of cuBLAS wide, 0.74-0.93
 *    narrow);
 *  - narrow when the wide plan is less than one wave split by stream-K and K is at most
 *    NARROW_MAX_K_BLOCKS: the wide fixup (128 KiB a CTA) is then a large part of a short call (4096 x
 *    4096, m = 192..768);
 *  - narrow when m is at most two wide clusters of rows (512) and a quarter or more of the wide rows would
 *    be past m (session 20, with the narrow K split and whole narrow tiles below a wave: m = 320 and 384
 *    at 14336 x 4096, and 192, 320 and 384 at 4096 x 14336, ran 2-5% faster narrow; m = 256 and 640,
 *    with fewer idle rows, 2-12% slower);
 *  - wide split (session 21) when M has more than one row block, K at least SPLIT_MIN_K_BLOCKS, and
 *    the K split of the unpaired wide tiles would use S = 2: 33-66 tiles on an H200, e.g. m = 320-512 at
 *    N = 4096. Each tile's two halves of K run on two SMs, so 48 tiles (m = 384) keep 96 SMs at work
 *    with the wide tile's operand reuse (narrow tiles read a third more bytes a product, and wide pairs
 *    leave SMs idle or pay stream-K's fixup). H200, bf16, against the plan before it:
 *    384 x 4096 x 4096 28.5 us against 29.9 (narrow), 512 x 4096 x 4096 32.2-32.6 against 33.7-33.8
 *    (wide, stream-K), 384 x 4096 x 14336 86.4 against 95.9-96.2, 512 x 4096 x 14336 98.4-98.9 against
 *    104.4-105.2; 320 x 4096 x 4096 28.8-29.2 against 28.2 (narrow, the one loss measured). With 32
 *    tiles (S = 3: m = 192-256) or 80 and more (no split fits) it lost 1-20%;
 *  - wide otherwise. With whole waves the wide geometry's B multicast wins (0.89-0.90 narrow against
 *    0.97-1.00 wide from m = 1024 on). (Session 19's narrow stream-K read B from DRAM again for each
 *    piece at K = 14336: 0.61 at 4096 x 4096 x 14336 and m = 384 against 0.76 wide; since session 20
 *    those tiles run whole.)
 * Before all of these, the fitted geometries where one fits (fit_geometry below).
 * KF_SM90_TILE=wide, =narrow, =split, =n96, =n160 or =n192 forces one (benchmarks, tests; split falls
 * back to wide where no K split applies, the fitted ones to narrow where B is N-major). */
#define NARROW_MAX_K_BLOCKS 128
#define SPLIT_MIN_K_BLOCKS 64 /* measured at K = 4096 and 14336 only */
#define WIDE_ROWS (KF_SM90_TILE_M * KF_SM90_CLUSTER_M) /* rows of a wide cluster */

/* The fitted geometries (cuBLAS's way at mid-range M: one wave of whole tiles, the tile's width chosen
 * a call): when A has at least FIT_MIN_ROW_BLOCKS row blocks, B is K-major, and one of the widths 96,
 * 160 and 192 makes between FIT_MIN_FILL percent of the SMs' worth of tiles and one wave, the one that
 * makes the most (ties to the wider). E.g. m = 320-384 x 4096 (3 x 43 tiles of 128 x 96), 576-640 x
 * 4096 (5 x 26 of 128 x 160), 704-768 x 4096 (6 x 22 of 128 x 192), 320-384 x 8192 (3 x 43 of 128 x
 * 192). H200, bf16, against the plan before them (two processes, docs/HOPPER_GEMM_NOTES.md session 25):
 * 320 x 4096 x 4096 25.5 us against 30.0, 640 x 4096 x 4096 40 against 45.4, 640 x 4096 x 14336 122.5
 * against 149, 320 x 8192 x 4096 45 against 56; level at 384 and 768 x 4096 x 4096. The width 96 only
 * up to FIT_96_MAX_ROW_BLOCKS: with more rows the wide split's reuse wins (768 x 2048 x 4096 28.0 us
 * against 27.1, 512 x 3072 x 4096 28.0 against 27.8). Below three row blocks the narrow K split is kept
 * (not measured against these). -1: none. */
#define FIT_MIN_ROW_BLOCKS 3
#define FIT_96_MAX_ROW_BLOCKS 3
#define FIT_MIN_FILL 85

static int fit_geometry(kf_backend_context *ctx, const kf_gemm_args *args) {
  const int64_t row_blocks = (args->m + KF_SM90_TILE_M - 1) / KF_SM90_TILE_M;
  if (!args->trans_b || row_blocks < FIT_MIN_ROW_BLOCKS) return -1;
  int best = -1;
  int64_t best_tiles = 0;
  for (int geometry = KF_SM90_FIT_192; geometry >= KF_SM90_FIT_96; --geometry) {
    if (geometry == KF_SM90_FIT_96 && row_blocks > FIT_96_MAX_ROW_BLOCKS) continue;
    const int64_t tiles = tiles_of(args, geometry);
    if (tiles <= ctx->sm_count && 100 * tiles >= FIT_MIN_FILL * (int64_t)ctx->sm_count && tiles > best_tiles) {
      best = geometry;
      best_tiles = tiles;
    }
  }
  return best;
}

static void make_plan(kf_backend_context *ctx, const kf_gemm_args *args, sm90_plan *plan) {
  const char *tile = getenv("KF_SM90_TILE");
  for (int geometry = 0; tile != NULL && geometry < KF_SM90_GEOMETRIES; ++geometry)
    if (strcmp(tile, geometries[geometry].name) == 0) {
      plan_geometry(ctx, args, geometry, plan);
      return;
    }
  const int fit = fit_geometry(ctx, args);
  if (fit >= 0) {
    plan_geometry(ctx, args, fit, plan);
    return;
  }
  const int one_row_block = args->m <= KF_SM90_TILE_M;
  if (!one_row_block) {
    plan_geometry(ctx, args, KF_SM90_WIDE_SPLIT, plan);
    if (plan->geometry == KF_SM90_WIDE_SPLIT && plan->cluster == 2 && plan->k_blocks >= SPLIT_MIN_K_BLOCKS) return;
  }
  plan_geometry(ctx, args, KF_SM90_WIDE, plan);
  const int short_split = plan->sk_clusters > 0 && plan->sk_first_unit == 0 && plan->k_blocks <= NARROW_MAX_K_BLOCKS;
  /* at most two clusters of rows, a quarter or more of them past m (m = 192, 320, 384: a consumer or a
     whole CTA of the last cluster multiplies zeros) */
  const int64_t wide_rows = (args->m + WIDE_ROWS - 1) / WIDE_ROWS * WIDE_ROWS;
  const int idle_rows = args->m <= 2 * WIDE_ROWS && 4 * (wide_rows - args->m) >= wide_rows;
  if (one_row_block || short_split || idle_rows) plan_geometry(ctx, args, KF_SM90_NARROW, plan);
}

/* Bytes of stream-K partial sums a plan needs: one slot a CTA of the sharing clusters. */
static size_t partial_bytes(const sm90_plan *plan) {
  return (size_t)(plan->sk_clusters * plan->cluster) * KF_SM90_PARTIAL_SLOT_BYTES_OF(tile_n_of(plan->geometry));
}

size_t kf_cuda_gemm_sm90_workspace(kf_backend_context *ctx, const kf_gemm_args *args) {
  sm90_plan plan;
  make_plan(ctx, args, &plan);
  return partial_bytes(&plan);
}

/* The flags of this launch and its epoch: the context's flag words are allocated and zeroed on first
 * use, and zeroed again when the epoch wraps, so no flag ever holds the epoch before a contributor of
 * this launch stores it. */
static kf_status stream_k_flags(kf_backend_context *ctx, uint64_t *out_flags, uint32_t *out_epoch) {
  const size_t bytes = (size_t)ctx->sm_count * 2 * sizeof(uint32_t);
  CUresult result = CUDA_SUCCESS;
  if (ctx->gemm_sm90_flags == 0) {
    result = kf_cu.MemAlloc(&ctx->gemm_sm90_flags, bytes);
    if (result != CUDA_SUCCESS) {
      ctx->gemm_sm90_flags = 0;
      return kf_fail(result == CUDA_ERROR_OUT_OF_MEMORY ? KF_ERROR_OUT_OF_MEMORY : KF_ERROR_DEVICE_FAILURE,
                     "cuMemAlloc of %zu bytes (GEMM stream-K flags) failed: %s", bytes, kf_cuda_error_text(result));
    }
    ctx->gemm_sm90_epoch = 0;
  }
  if (ctx->gemm_sm90_epoch == 0 || ctx->gemm_sm90_epoch == UINT32_MAX) {
    uint32_t *zeros = calloc((size_t)ctx->sm_count * 2, sizeof(uint32_t));
    if (zeros == NULL) return kf_fail(KF_ERROR_OUT_OF_MEMORY, "out of host memory");
    /* queued before this launch; a pageable source is staged before the call returns */
    result = kf_cu.MemcpyHtoDAsync(ctx->gemm_sm90_flags, zeros, bytes, ctx->stream);
    free(zeros);
    if (result != CUDA_SUCCESS)
      return kf_fail(KF_ERROR_DEVICE_FAILURE, "clearing the GEMM stream-K flags failed: %s",
                     kf_cuda_error_text(result));
    ctx->gemm_sm90_epoch = 0;
  }
  *out_flags = ctx->gemm_sm90_flags;
  *out_epoch = ++ctx->gemm_sm90_epoch;
  return KF_OK;
}

/* A 3-D tensor map [batch][outer][inner] of the stored matrix `arg` (inner contiguous), boxes of
 * box_inner x box_outer elements, 128-byte swizzle, zero fill outside. Not batched: one batch entry. */
static kf_status encode_map(kf_tensor_map *out_map, const kf_matrix_arg *arg, int64_t inner, int64_t outer,
                            int64_t batch, unsigned box_inner, unsigned box_outer) {
  const int64_t size = kf_cuda_element_size(arg->dtype);
  const int is_batched = batched(arg, batch);
  const unsigned long long dims[3] = {(unsigned long long)inner, (unsigned long long)outer,
                                      (unsigned long long)(is_batched ? batch : 1)};
  /* Strides of dimensions 1 and 2 in bytes; one unbatched entry still needs a valid stride. */
  const unsigned long long strides[2] = {
      (unsigned long long)(arg->ld * size),
      (unsigned long long)((is_batched ? arg->batch_stride : arg->ld * outer) * size)};
  const unsigned box[3] = {box_inner, box_outer, 1};
  const unsigned element_strides[3] = {1, 1, 1};
  const int type = arg->dtype == KF_BF16  ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                   : arg->dtype == KF_F16 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16
                   : arg->dtype == KF_F32 ? TENSOR_MAP_DATA_TYPE_FLOAT32
                                          : CU_TENSOR_MAP_DATA_TYPE_UINT8;
  CUresult result = kf_cu.TensorMapEncodeTiled(
      (CUtensorMap *)out_map, type, 3, (void *)(uintptr_t)matrix_address(arg), dims, strides, box, element_strides,
      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (result != CUDA_SUCCESS)
    return kf_fail(KF_ERROR_DEVICE_FAILURE,
                   "cuTensorMapEncodeTiled(dims %lld x %lld x %lld, ld %lld) failed: %s", (long long)inner,
                   (long long)outer, (long long)dims[2], (long long)arg->ld, kf_cuda_error_text(result));
  return KF_OK;
}

/* The tensor map of one B half (all of op(B) without SwiGLU): N-major [k][n] stored, or K-major [n][k]. */
static kf_status encode_b(kf_tensor_map *out_map, const kf_matrix_arg *arg, const kf_gemm_args *args,
                          unsigned k_block, int geometry) {
  if (args->trans_b)
    return encode_map(out_map, arg, args->k, args->n, args->batch, k_block, (unsigned)tile_n_of(geometry) / 2);
  return encode_map(out_map, arg, args->n, args->k, args->batch, KF_SM90_MN_BOX, k_block);
}

static int pairs_aligned(const kf_matrix_arg *arg) {
  return matrix_address(arg) % (uint64_t)(2 * kf_cuda_element_size(arg->dtype)) == 0 && arg->ld % 2 == 0 &&
         arg->batch_stride % 2 == 0;
}

/* Whether the epilogue can load what it adds (a residual, or beta C) with the TMA into its C staging
 * buffers: the wide tiles (the only module built with that epilogue), 16-bit C, no SwiGLU, and either a
 * residual of C's dtype described by a tensor map with a box for each batch entry, or beta C (C's own
 * map: tma_describable(C) is c_through_tma's condition), not both. */
static int additions_through_tma(const kf_gemm_args *args, int geometry) {
  const kf_dtype dt = args->c.dtype;
  if (geometry != KF_SM90_WIDE || (dt != KF_BF16 && dt != KF_F16) || args->activation == KF_GEMM_SWIGLU) return 0;
  if (args->residual.buffer == NULL) return args->beta != 0.0f;
  return args->beta == 0.0f && args->residual.dtype == dt && tma_describable(&args->residual, args->m, args->batch) &&
         (args->batch == 1 || batched(&args->residual, args->batch));
}

/* Whether the epilogue can store C through shared memory and the TMA: nothing added, or what is added
 * through the TMA as well, and C a matrix a tensor map describes. */
static int c_through_tma(const kf_gemm_args *args, int geometry) {
  const kf_dtype dt = args->c.dtype;
  return ((args->residual.buffer == NULL && args->beta == 0.0f) || additions_through_tma(args, geometry)) &&
         (dt == KF_BF16 || dt == KF_F16 || dt == KF_F32) && tma_describable(&args->c, args->m, args->batch);
}

kf_status kf_cuda_gemm_sm90(kf_backend_context *ctx, const kf_gemm_args *args) {
  const int swiglu = args->activation == KF_GEMM_SWIGLU;
  const int has_residual = args->residual.buffer != NULL;
  const unsigned k_block = KF_SM90_K_BLOCK_BYTES / (unsigned)kf_cuda_element_size(args->a.dtype);
  struct kf_gemm_sm90_params params = {0};
  sm90_plan plan;
  make_plan(ctx, args, &plan);
  const int geometry = plan.geometry;
  const int narrow = geometry == KF_SM90_NARROW || is_fit(geometry); /* A in a box a consumer */
  const int c_tma = !is_fit(geometry) && c_through_tma(args, geometry); /* the fitted tiles stage no C */
  const int add_tma = c_tma && (has_residual || args->beta != 0.0f);     /* (c_through_tma checked it) */
  kf_status status = kf_cuda_enter(ctx); /* cuTensorMapEncodeTiled needs the context current */
  if (status != KF_OK) return status;
  status = args->trans_a ? encode_map(&params.a, &args->a, args->m, args->k, args->batch, KF_SM90_MN_BOX, k_block)
                         : encode_map(&params.a, &args->a, args->k, args->m, args->batch, k_block,
                                      narrow ? KF_SM90_TILE_M / 2 : KF_SM90_TILE_M); /* narrow: a box a consumer */
  if (status == KF_OK) status = encode_b(&params.b, &args->b, args, k_block, geometry);
  if (status == KF_OK) {
    if (swiglu)
      status = encode_b(&params.b_up, &args->b_up, args, k_block, geometry);
    else
      params.b_up = params.b; /* the tile's second half: the same map, b_up_column further right */
  }
  if (status == KF_OK && c_tma)
    status = encode_map(&params.c_map, &args->c, args->n, args->m, args->batch,
                        TMA_BOX_BYTES / (unsigned)kf_cuda_element_size(args->c.dtype), KF_SM90_C_BOX_ROWS);
  if (status == KF_OK && add_tma) {
    if (has_residual)
      status = encode_map(&params.r_map, &args->residual, args->n, args->m, args->batch,
                          TMA_BOX_BYTES / (unsigned)kf_cuda_element_size(args->residual.dtype), KF_SM90_C_BOX_ROWS);
    else
      params.r_map = params.c_map; /* beta C: C's boxes are what is added */
  }
  if (status != KF_OK) {
    kf_cuda_leave(ctx);
    return status;
  }

  params.c = matrix_address(&args->c);
  params.ldc = args->c.ld;
  params.c_batch_stride = args->c.batch_stride;
  if (has_residual) {
    params.residual = matrix_address(&args->residual);
    params.ld_residual = args->residual.ld;
    params.residual_batch_stride = args->residual.batch_stride;
  }
  if (kf_cuda_present(&args->bias)) {
    params.bias = kf_cuda_address(&args->bias);
    params.bias_up = swiglu ? kf_cuda_address(&args->bias_up) : 0;
    params.bias_stride = args->bias.col_stride;
  }
  params.m = (int32_t)args->m;
  params.n = (int32_t)args->n;
  params.k = (int32_t)args->k;
  params.batch = (int32_t)args->batch;
  params.tiles_m = (int32_t)((args->m + KF_SM90_TILE_M - 1) / KF_SM90_TILE_M);
  params.tiles_n = (int32_t)((args->n + tile_columns(args, geometry) - 1) / tile_columns(args, geometry));
  params.b_up_column = swiglu ? 0 : tile_n_of(geometry) / 2;
  params.alpha = args->alpha;
  params.beta = args->beta;
  params.flags = (swiglu ? KF_SM90_SWIGLU : 0u) | (params.bias ? KF_SM90_HAS_BIAS : 0u) |
                 (has_residual ? KF_SM90_HAS_RESIDUAL : 0u) | (args->beta != 0.0f ? KF_SM90_READ_C : 0u) |
                 (pairs_aligned(&args->c) && (!has_residual || pairs_aligned(&args->residual)) ? KF_SM90_C_PAIRS : 0u) |
                 (batched(&args->a, args->batch) ? KF_SM90_A_BATCHED : 0u) |
                 (batched(&args->b, args->batch) ? KF_SM90_B_BATCHED : 0u) | (c_tma ? KF_SM90_C_TMA : 0u) |
                 (add_tma ? KF_SM90_ADD_TMA : 0u);
  params.dtypes = (uint32_t)args->c.dtype << KF_SM90_DT_SHIFT_C |
                  (uint32_t)(params.bias ? args->bias.dtype : 0) << KF_SM90_DT_SHIFT_BIAS |
                  (uint32_t)(has_residual ? args->residual.dtype : 0) << KF_SM90_DT_SHIFT_RESIDUAL;

  const int in = args->a.dtype == KF_BF16 ? 0 : args->a.dtype == KF_F16 ? 1 : 2;
  static const char *const in_names[3] = {"bf16", "f16", "e4m3"};
  char name[56];
  snprintf(name, sizeof name, "kf_gemm_sm90_%s_%c_%c%s", in_names[in], args->trans_a ? 'm' : 'k',
           args->trans_b ? 'k' : 'n', geometries[plan.geometry].suffix);
  const int slot = in * 4 + args->trans_a * 2 + !args->trans_b;
  const kf_cuda_module module = geometries[plan.geometry].module;
  const unsigned shared_bytes = geometries[plan.geometry].shared_bytes;
  /* One cluster (wide: KF_SM90_CLUSTER_M CTAs; narrow: one, or the K split's S; wide split: S) a work
   * unit (wide: that many row blocks of one column block), as many clusters as fit on the SMs at once (clusters of 2 fill all 132 SMs of an
   * H200: its GPCs hold whole pairs) or one a unit when there are fewer and no stream-K. */
  const unsigned grid = (unsigned)(plan.clusters * plan.cluster);
  params.sk_first_unit = (int32_t)plan.sk_first_unit;
  params.sk_clusters = (int32_t)plan.sk_clusters;
  if (plan.sk_clusters > 0) {
    const size_t needed = partial_bytes(&plan);
    if (args->workspace == NULL || args->workspace_bytes < needed)
      status = kf_fail(KF_ERROR_INTERNAL, "the Hopper GEMM needs a %zu-byte workspace", needed);
    else
      status = stream_k_flags(ctx, &params.sk_flags, &params.sk_epoch);
    if (status != KF_OK) {
      kf_cuda_leave(ctx);
      return status;
    }
    params.partials = args->workspace->address;
  }

  const int64_t k_split = geometry == KF_SM90_NARROW || geometry == KF_SM90_WIDE_SPLIT ? plan.cluster : 1;
  params.k_split = (int32_t)k_split;
  CUfunction function;
  status = kf_cuda_function_shared(ctx, module, slot, name, shared_bytes, &function);
  if (status == KF_OK) {
    /* Programmatic dependent launch: the grid can be placed on SMs the previous kernel has left while
       that kernel finishes (the kernel waits for it before any memory access); KF_SM90_PDL=0 turns it off. */
    const char *pdl = getenv("KF_SM90_PDL");
    const int dependent = pdl == NULL || strcmp(pdl, "0") != 0;
    if (k_split > 1)
      status = kf_cuda_launch_clusters(ctx, function, name, grid, KF_SM90_THREADS, shared_bytes,
                                       (unsigned)k_split, dependent, &params);
    else if (dependent)
      status = kf_cuda_launch_dependent(ctx, function, name, grid, KF_SM90_THREADS, shared_bytes, &params);
    else
      status = kf_cuda_launch(ctx, function, name, grid, KF_SM90_THREADS, 1, shared_bytes, &params);
  }
  kf_cuda_leave(ctx);
  return status;
}

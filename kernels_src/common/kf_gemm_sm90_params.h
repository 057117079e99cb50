/* kf_gemm_sm90_params.h — the parameter block of the Hopper GEMM (kernels_src/cuda/gemm_sm90.cu),
 * shared by the kernel and backend_cuda/cuda_gemm_sm90.c. C and CUDA C only: it holds TMA tensor
 * maps, which exist on no other backend, and is larger than kf_params.h's 128-byte push-constant rule
 * allows (it is one __grid_constant__ kernel parameter, limit 4 KiB).
 */
#ifndef KF_GEMM_SM90_PARAMS_H_
#define KF_GEMM_SM90_PARAMS_H_

#include <stdint.h>

#ifdef __cplusplus
#define KF_ALIGN_128 alignas(128)
#else
#define KF_ALIGN_128 _Alignas(128)
#endif

/* CUtensorMap's ABI (cuda.h of CUDA 13.0): 16 opaque 64-bit words, 128-byte aligned. */
typedef struct kf_tensor_map {
  KF_ALIGN_128 uint64_t opaque[16];
} kf_tensor_map;

/* Tile geometry, shared by the kernel (which says why) and the host (grid, shared memory, tensor-map
 * boxes). */
#define KF_SM90_TILE_M 128
#define KF_SM90_TILE_N 256
#define KF_SM90_K_BLOCK_BYTES 128
#define KF_SM90_MN_BOX 64
#define KF_SM90_STAGES 4
#define KF_SM90_THREADS 384
#define KF_SM90_CLUSTER_M 2 /* CTAs of a cluster: row blocks 2i, 2i + 1 of one column block (B multicast) */
/* The narrow geometry (small M, few tiles): 128 x 128 tiles, no clusters, more stages in flight. Each
 * consumer warpgroup runs m64n128 (64 accumulators a thread). */
#define KF_SM90_NARROW_TILE_N 128
#define KF_SM90_NARROW_STAGES 6
/* The geometries (the kernel's template argument, the build's KF_SM90_MODULE_GEOMETRY): wide, narrow,
 * and wide split: the wide tiles without the B-sharing pairs, each tile's K split among the CTAs of a
 * cluster set at launch (as the narrow geometry can). */
#define KF_SM90_WIDE 0
#define KF_SM90_NARROW 1
#define KF_SM90_WIDE_SPLIT 2
/* The fitted geometries (mid-range M): 128-row tiles whose width is chosen a call so that the tiles make
 * about one wave (m = 640 x 4096: 5 x 26 tiles of 128 x 160), K whole, no cluster; each consumer
 * warpgroup runs m64nW (W / 2 accumulators a thread). B K-major only (a B half of W / 2 rows is one
 * box); C stored from registers (one tile a CTA: nothing to overlap a TMA store with), so their shared
 * memory is stages only. */
#define KF_SM90_FIT_96 3
#define KF_SM90_FIT_160 4
#define KF_SM90_FIT_192 5
#define KF_SM90_GEOMETRIES 6
#define KF_SM90_FIT_TILE_N_OF(geometry) \
  ((geometry) == KF_SM90_FIT_96 ? 96 : (geometry) == KF_SM90_FIT_160 ? 160 : 192)
#define KF_SM90_FIT_STAGES_OF(geometry) \
  ((geometry) == KF_SM90_FIT_96 ? 8 : (geometry) == KF_SM90_FIT_160 ? 6 : 5)
/* C staging of the TMA-store epilogue: per consumer warp two buffers of one C box each (16 rows x 128
 * bytes: 64 16-bit or 32 f32 columns), so one box is written while the previous one is stored. */
#define KF_SM90_C_BOX_ROWS 16
#define KF_SM90_C_BOX_BYTES (KF_SM90_C_BOX_ROWS * 128)
#define KF_SM90_C_BUFFERS 2
/* K blocks before a whole tile's end at which each consumer warp has the TMA load its first C_BUFFERS
 * boxes of the additions (KF_SM90_ADD_TMA). H200: leads of 1, 2 and 8 timed alike (session 26). */
#define KF_SM90_ADD_LEAD 2
/* Stream-K: a contributing CTA leaves its 128 x 256 (narrow: 128 x 128) f32 accumulators in the
 * workspace, one slot a CTA, stored thread by thread in 16-byte pieces (each consumer thread reads back
 * what it wrote). */
#define KF_SM90_PARTIAL_SLOT_BYTES_OF(tile_n) (KF_SM90_TILE_M * (tile_n) * 4)
/* C staging: C_BUFFERS boxes a consumer warp, and an mbarrier a box for what the TMA loads into it to be
 * added (KF_SM90_ADD_TMA: a residual, or beta C) */
#define KF_SM90_C_STAGING_BYTES \
  ((KF_SM90_TILE_M / KF_SM90_C_BOX_ROWS) * KF_SM90_C_BUFFERS * (KF_SM90_C_BOX_BYTES + 8))
#define KF_SM90_SHARED_BYTES_OF(tile_n, stages) \
  ((stages) * (KF_SM90_TILE_M + (tile_n)) * KF_SM90_K_BLOCK_BYTES + KF_SM90_C_STAGING_BYTES + 2 * (stages) * 8 + 1024)
#define KF_SM90_SHARED_BYTES KF_SM90_SHARED_BYTES_OF(KF_SM90_TILE_N, KF_SM90_STAGES)
/* The narrow geometry's K split in a cluster (k_split below) adds nine mbarriers: one that says every
 * other CTA of the cluster is done with its products, and one a consumer warp for the partial sums it
 * receives. The sums themselves land in the idle stage ring. */
#define KF_SM90_KSPLIT_BARRIER_BYTES (9 * 8)
#define KF_SM90_NARROW_SHARED_BYTES \
  (KF_SM90_SHARED_BYTES_OF(KF_SM90_NARROW_TILE_N, KF_SM90_NARROW_STAGES) + KF_SM90_KSPLIT_BARRIER_BYTES)
#define KF_SM90_SPLIT_SHARED_BYTES (KF_SM90_SHARED_BYTES + KF_SM90_KSPLIT_BARRIER_BYTES)
#define KF_SM90_FIT_SHARED_BYTES_OF(geometry)                                                              \
  (KF_SM90_FIT_STAGES_OF(geometry) * (KF_SM90_TILE_M + KF_SM90_FIT_TILE_N_OF(geometry)) * KF_SM90_K_BLOCK_BYTES + \
   2 * KF_SM90_FIT_STAGES_OF(geometry) * 8 + 1024)

/* flags */
#define KF_SM90_SWIGLU 1u        /* b = gate half, b_up = up half: C = silu(gate) * up, 128 columns a tile */
#define KF_SM90_HAS_BIAS 2u      /* bias (and bias_up with SWIGLU) */
#define KF_SM90_HAS_RESIDUAL 4u
#define KF_SM90_READ_C 8u        /* beta != 0 */
#define KF_SM90_C_PAIRS 16u      /* columns 2j, 2j+1 of C and of the residual can be accessed as one word */
#define KF_SM90_A_BATCHED 32u    /* a's tensor map has a batch dimension (else A is broadcast) */
#define KF_SM90_B_BATCHED 64u
#define KF_SM90_C_TMA 128u       /* c_map describes C: the epilogue stores through shared memory and the TMA
                                    (set only without READ_C and HAS_RESIDUAL, unless ADD_TMA) */
#define KF_SM90_ADD_TMA 256u     /* with C_TMA and exactly one of HAS_RESIDUAL and READ_C: r_map describes what
                                    is added (the residual, or C itself for beta C; C's 16-bit dtype, no
                                    SwiGLU), loaded by the TMA into the C staging buffers */

/* dtypes: KF_DT_* codes */
#define KF_SM90_DT_SHIFT_C 0
#define KF_SM90_DT_SHIFT_BIAS 4
#define KF_SM90_DT_SHIFT_RESIDUAL 8

struct kf_gemm_sm90_params {
  kf_tensor_map a;     /* op(A) tiles: K-major [batch][m][k] or M-major [batch][k][m] */
  kf_tensor_map b;     /* the first half of a tile's columns: all of op(B), or its gate half with SWIGLU */
  kf_tensor_map b_up;  /* the second half: the same map as b, or the up half with SWIGLU */
  kf_tensor_map c_map; /* C [batch][m][n], boxes of 128 bytes x KF_SM90_C_BOX_ROWS rows (with KF_SM90_C_TMA) */
  kf_tensor_map r_map; /* the residual or C, boxes as c_map's (with KF_SM90_ADD_TMA) */
  uint64_t c;          /* device addresses of element 0; 0 when absent */
  uint64_t residual;
  uint64_t bias;
  uint64_t bias_up;
  uint64_t partials;   /* stream-K: KF_SM90_PARTIAL_SLOT_BYTES_OF(tile N) a CTA of clusters [0, sk_clusters) */
  uint64_t sk_flags;   /* stream-K: one uint32 a consumer warpgroup of each CTA; a contributor stores sk_epoch
                          there once its partial sums are in `partials` (the context's, never reset) */
  int64_t ldc, c_batch_stride;                 /* elements */
  int64_t ld_residual, residual_batch_stride;  /* elements */
  int64_t bias_stride;                         /* elements between consecutive bias entries */
  int32_t m, n, k;     /* n: columns of C */
  int32_t batch;
  int32_t tiles_m, tiles_n; /* tiles of one batch entry */
  int32_t b_up_column;      /* column of b_up's map where a tile's second half starts, less the tile's
                               first column of b: half the tile's width without SWIGLU (the same map), 0 with it */
  float alpha, beta;
  uint32_t flags;      /* KF_SM90_* */
  uint32_t dtypes;     /* KF_DT_* << KF_SM90_DT_SHIFT_* */
  /* Stream-K (gemm_sm90.cu says how): work units [0, sk_first_unit) go whole to the clusters in turn;
   * the K blocks of the units after it are shared out evenly among clusters [0, sk_clusters). Without
   * stream-K sk_first_unit is the unit count and sk_clusters 0. */
  int32_t sk_first_unit;
  int32_t sk_clusters;
  uint32_t sk_epoch;   /* this launch's flag value: nonzero, different from every earlier launch's on
                          this context (flags left by earlier launches never match) */
  /* Narrow and wide split geometries: 1, or the CTAs of a cluster (2 to 8, set at launch) that split one tile's K
   * blocks evenly and add their partial sums through distributed shared memory. Then the grid is one
   * cluster a tile, and there is no stream-K (sk_first_unit 0, sk_clusters 0). */
  int32_t k_split;
};

#endif /* KF_GEMM_SM90_PARAMS_H_ */

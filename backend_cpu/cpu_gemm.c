/* cpu_gemm.c — GEMM with its fused epilogue on the CPU: C = epilogue(alpha · op(A) op(B)), f32
 * accumulation for every input dtype (f32, f16, bf16, f8e4m3), as kf_gemm_args documents.
 *
 * Blocking (the packed-panel scheme of cpu_gemm_kernel.h):
 *  - The work items handed to the pool are (batch entry, block of GEMM_NC columns, range of rows).
 *    An item owns its output tile outright, so threads never share an output and need no barrier.
 *  - Within an item, depth is walked in blocks of GEMM_KC. Per depth block the item packs its B block
 *    (GEMM_KC × GEMM_NC, both SwiGLU halves when fused) once and reuses it for all its rows, which it
 *    walks in blocks of GEMM_MC, packing each A block (GEMM_MC × GEMM_KC) in turn.
 *  - Products accumulate in an f32 tile buffer of the item (rows × GEMM_NC); the epilogue runs on
 *    each finished row of it, so C is read (beta, or residual == C) and written exactly once, in
 *    C's dtype, after every product is complete.
 * Sizes: a packed B block is 256 KiB and an A block 192 KiB: together they stay in a 1 MiB L2 (Zen 4,
 * most recent x86) while the micro-kernel streams them; a B panel (GEMM_KC × NR, 16 KiB) stays in L1
 * across the A panels of a block.
 */
#pragma GCC optimize("fp-contract=fast") /* FMA in the micro-kernel: see cpu_gemm_kernel.h */

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu/cpu_block.h"
#include "backend_cpu/cpu_gemm_kernel.h"
#include "backend_cpu/cpu_internal.h"
#include "backend_cpu/cpu_math.h"
#include "backend_cpu/threadpool.h"

#define GEMM_KC 256
#define GEMM_MC 192 /* a multiple of KF_GEMM_MR */
/* One output row of an item is one KF_CPU_BLOCK: the epilogue runs the block scheme's fixed-count
 * loops over it. */
#define GEMM_NC KF_CPU_BLOCK
/* Rows of an item at most: its f32 tile buffer (768 KiB; twice that with SwiGLU) is touched once per
 * depth block, and B packing is amortized over up to this many rows (one packed element per 1536
 * flops; A packing costs one per 2 × GEMM_NC = 512). */
#define GEMM_MAX_ITEM_ROWS 768
/* Items per thread the split aims for, so that a thread that was descheduled (this host is shared)
 * does not hold the others up at the end. */
#define GEMM_ITEMS_PER_THREAD 4
/* Below this many flops a chunk of items runs on the calling thread: waking a worker costs a few
 * microseconds, about what a core needs for this much work. */
#define GEMM_MIN_CHUNK_FLOPS (1 << 20)

/* The widest panel set pack_depth_rows converts in one row: a column or row block. */
#define GEMM_MAX_PACK_WIDTH KF_CPU_BLOCK
/* pack_depth_contiguous converts up to NR rows of GEMM_KC, pack_depth_rows one row of a block. */
#define GEMM_LINE_FLOATS (KF_GEMM_NR * GEMM_KC > GEMM_MAX_PACK_WIDTH ? KF_GEMM_NR * GEMM_KC : GEMM_MAX_PACK_WIDTH)

_Static_assert(GEMM_MC % KF_GEMM_MR == 0 && GEMM_NC % KF_GEMM_NR == 0, "blocks hold whole micro tiles");
_Static_assert(GEMM_MC <= GEMM_MAX_PACK_WIDTH && GEMM_NC <= GEMM_MAX_PACK_WIDTH, "pack line too short");

typedef struct gemm_job {
  const kf_gemm_args *args;
  int swiglu;
  int64_t column_blocks, row_ranges, item_rows;
  size_t size_a, size_b, size_c, size_residual;
  /* bias / bias_up as f32, zero-padded to column_blocks * GEMM_NC; NULL when absent */
  float *bias, *bias_up;
  atomic_int out_of_memory;
} gemm_job;

/* One thread's buffers, 64-byte aligned (all sizes are multiples of 16 floats). */
typedef struct gemm_scratch {
  float *a_pack;            /* GEMM_MC × GEMM_KC */
  float *b_pack[2];         /* GEMM_KC × GEMM_NC each: gate (or the only B) and up */
  float *tile[2];           /* item_rows (rounded to MR) × GEMM_NC each */
  float *line;              /* GEMM_LINE_FLOATS: rows being converted while packing */
  float *row_scratch;       /* GEMM_NC */
} gemm_scratch;

/* Packs `width` panel entries (rows of A / columns of B) whose kc depth elements are contiguous in
 * memory: entry e's depth element p is at src + (e * entry_stride + p) * elem_size. Writes
 * ceil(width / panel_width) panels of [kc][panel_width] to dst, entries past width as zeros.
 * A panel's entries are read side by side, so each depth step's panel_width values are stored
 * together. `line` holds panel_width * kc floats (the converted rows when the dtype is not f32). */
KF_ALWAYS_INLINE void pack_depth_contiguous(const char *src, int64_t entry_stride, kf_dtype dtype, int width,
                                                   int kc, int panel_width, float *dst, float *line) {
  const size_t elem_size = kf_dtype_size(dtype);
  const int panels = (width + panel_width - 1) / panel_width;
  for (int panel = 0; panel < panels; ++panel) {
    const float *rows[KF_GEMM_NR];
    for (int i = 0; i < panel_width; ++i) {
      const int entry = panel * panel_width + i;
      if (entry < width) {
        rows[i] = kf_cpu_gemm_row(src + (size_t)((int64_t)entry * entry_stride) * elem_size, dtype, kc,
                                  line + (size_t)i * kc);
      } else {
        memset(line + (size_t)i * kc, 0, (size_t)kc * sizeof(float));
        rows[i] = line + (size_t)i * kc;
      }
    }
    float *out = dst + (size_t)panel * kc * panel_width;
    for (int p = 0; p < kc; ++p)
#pragma GCC unroll 16
      for (int i = 0; i < panel_width; ++i) out[(size_t)p * panel_width + i] = rows[i][p];
  }
}

/* Packs `width` (<= GEMM_MAX_PACK_WIDTH) panel entries that are contiguous in memory for each depth
 * step: depth step p's entries start at src + p * depth_stride * elem_size. Same output as
 * pack_depth_contiguous; `line` holds GEMM_MAX_PACK_WIDTH floats. */
KF_ALWAYS_INLINE void pack_depth_rows(const char *src, int64_t depth_stride, kf_dtype dtype, int width, int kc,
                                             int panel_width, float *dst, float *line) {
  const size_t elem_size = kf_dtype_size(dtype);
  const int full_panels = width / panel_width, tail = width % panel_width;
  for (int p = 0; p < kc; ++p) {
    const float *row = kf_cpu_gemm_row(src + (size_t)((int64_t)p * depth_stride) * elem_size, dtype, width, line);
    for (int panel = 0; panel < full_panels; ++panel)
      memcpy(dst + ((size_t)panel * kc + p) * panel_width, row + panel * panel_width, (size_t)panel_width * sizeof(float));
    if (tail) {
      float *out = dst + ((size_t)full_panels * kc + p) * panel_width;
      for (int i = 0; i < tail; ++i) out[i] = row[full_panels * panel_width + i];
      for (int i = tail; i < panel_width; ++i) out[i] = 0.0f;
    }
  }
}

static const char *batch_base(const kf_matrix_arg *m, size_t elem_size, int64_t batch_index) {
  return kf_cpu_buffer_data(m->buffer) + (size_t)(m->offset + batch_index * m->batch_stride) * elem_size;
}

/* op(A) rows [row, row + rows) × depth [depth, depth + kc) into MR panels. */
KF_ALWAYS_INLINE void pack_a(const gemm_job *job, const char *a, int64_t row, int rows, int64_t depth, int kc,
                             gemm_scratch *s) {
  const kf_matrix_arg *m = &job->args->a;
  if (!job->args->trans_a) /* stored [m, k]: a row's depth is contiguous */
    pack_depth_contiguous(a + (size_t)(row * m->ld + depth) * job->size_a, m->ld, m->dtype, rows, kc,
                                 KF_GEMM_MR, s->a_pack, s->line);
  else /* stored [k, m]: a depth step's rows are contiguous */
    pack_depth_rows(a + (size_t)(depth * m->ld + row) * job->size_a, m->ld, m->dtype, rows, kc, KF_GEMM_MR,
                           s->a_pack, s->line);
}

/* op(B) depth [depth, depth + kc) × columns [column, column + columns) into NR panels. */
KF_ALWAYS_INLINE void pack_b(const gemm_job *job, const kf_matrix_arg *m, const char *b, int64_t depth, int kc,
                             int64_t column, int columns, float *dst, gemm_scratch *s) {
  if (!job->args->trans_b) /* stored [k, n] */
    pack_depth_rows(b + (size_t)(depth * m->ld + column) * job->size_b, m->ld, m->dtype, columns, kc,
                           KF_GEMM_NR, dst, s->line);
  else /* stored [n, k] (an nn.Linear weight) */
    pack_depth_contiguous(b + (size_t)(column * m->ld + depth) * job->size_b, m->ld, m->dtype, columns, kc,
                                 KF_GEMM_NR, dst, s->line);
}

/* The epilogue of one output row: tile rows -> C row segment of `columns` elements. */
KF_ALWAYS_INLINE void finish_row(const gemm_job *job, int64_t batch_index, int64_t row, int64_t column, int columns,
                                 float *t, const float *up, float *scratch) {
  const kf_gemm_args *g = job->args;
  const float alpha = g->alpha;
  if (job->bias) {
    const float *bias = job->bias + column;
    for (int i = 0; i < GEMM_NC; ++i) t[i] = t[i] * alpha + bias[i];
  } else {
    for (int i = 0; i < GEMM_NC; ++i) t[i] *= alpha;
  }
  if (job->swiglu) {
    if (job->bias_up) {
      const float *bias_up = job->bias_up + column;
      for (int i = 0; i < GEMM_NC; ++i) t[i] = kf_cpu_silu(t[i]) * (up[i] * alpha + bias_up[i]);
    } else {
      for (int i = 0; i < GEMM_NC; ++i) t[i] = kf_cpu_silu(t[i]) * (up[i] * alpha);
    }
  }
  char *c = kf_cpu_buffer_data(g->c.buffer) +
            (size_t)(g->c.offset + batch_index * g->c.batch_stride + row * g->c.ld + column) * job->size_c;
  /* C (beta) and the residual are both read before C is written: the residual may be C itself. */
  if (g->beta != 0.0f) {
    kf_cpu_gemm_load(c, g->c.dtype, columns, scratch);
    for (int i = columns; i < GEMM_NC; ++i) scratch[i] = 0.0f;
    const float beta = g->beta;
    for (int i = 0; i < GEMM_NC; ++i) t[i] += beta * scratch[i];
  }
  if (g->residual.buffer) {
    const char *r = kf_cpu_buffer_data(g->residual.buffer) +
                    (size_t)(g->residual.offset + batch_index * g->residual.batch_stride + row * g->residual.ld +
                             column) * job->size_residual;
    kf_cpu_gemm_load(r, g->residual.dtype, columns, scratch);
    for (int i = columns; i < GEMM_NC; ++i) scratch[i] = 0.0f;
    for (int i = 0; i < GEMM_NC; ++i) t[i] += scratch[i];
  }
  kf_cpu_gemm_store(c, g->c.dtype, t, columns);
}

KF_ALWAYS_INLINE void run_item(const gemm_job *job, int64_t item, gemm_scratch *s) {
  const kf_gemm_args *g = job->args;
  const int64_t per_batch = job->column_blocks * job->row_ranges;
  const int64_t batch_index = item / per_batch;
  const int64_t column_block = item % per_batch / job->row_ranges;
  const int64_t first_row = item % job->row_ranges * job->item_rows;
  const int rows = (int)(g->m - first_row < job->item_rows ? g->m - first_row : job->item_rows);
  const int64_t column = column_block * GEMM_NC;
  const int columns = (int)(g->n - column < GEMM_NC ? g->n - column : GEMM_NC);
  const int column_panels = (columns + KF_GEMM_NR - 1) / KF_GEMM_NR;
  const int products = job->swiglu ? 2 : 1;

  const char *a = batch_base(&g->a, job->size_a, batch_index);
  const kf_matrix_arg *b_args[2] = {&g->b, &g->b_up};
  const char *b[2] = {batch_base(&g->b, job->size_b, batch_index),
                      job->swiglu ? batch_base(&g->b_up, job->size_b, batch_index) : NULL};

  if (g->k == 0) /* empty product: the epilogue still applies */
    for (int t = 0; t < products; ++t) memset(s->tile[t], 0, (size_t)rows * GEMM_NC * sizeof(float));
  for (int64_t depth = 0; depth < g->k; depth += GEMM_KC) {
    const int kc = (int)(g->k - depth < GEMM_KC ? g->k - depth : GEMM_KC);
    const int accumulate = depth > 0;
    for (int t = 0; t < products; ++t) pack_b(job, b_args[t], b[t], depth, kc, column, columns, s->b_pack[t], s);
    for (int block_row = 0; block_row < rows; block_row += GEMM_MC) {
      const int block_rows = rows - block_row < GEMM_MC ? rows - block_row : GEMM_MC;
      const int row_panels = (block_rows + KF_GEMM_MR - 1) / KF_GEMM_MR;
      pack_a(job, a, first_row + block_row, block_rows, depth, kc, s);
      for (int t = 0; t < products; ++t)
        for (int jp = 0; jp < column_panels; ++jp) {
          const float *b_panel = s->b_pack[t] + (size_t)jp * kc * KF_GEMM_NR;
          float *tile = s->tile[t] + (size_t)block_row * GEMM_NC + jp * KF_GEMM_NR;
          for (int ip = 0; ip < row_panels; ++ip)
            kf_cpu_gemm_micro(kc, s->a_pack + (size_t)ip * kc * KF_GEMM_MR, 1, KF_GEMM_MR, b_panel, KF_GEMM_NR,
                              tile + (size_t)ip * KF_GEMM_MR * GEMM_NC, GEMM_NC, accumulate);
        }
    }
  }
  for (int r = 0; r < rows; ++r)
    finish_row(job, batch_index, first_row + r, column, columns, s->tile[0] + (size_t)r * GEMM_NC,
               job->swiglu ? s->tile[1] + (size_t)r * GEMM_NC : NULL, s->row_scratch);
}

KF_CPU_KERNEL static void gemm_items(void *arg, int64_t item_begin, int64_t item_end) {
  gemm_job *job = arg;
  const size_t tile_floats = (size_t)(job->item_rows + KF_GEMM_MR - 1) / KF_GEMM_MR * KF_GEMM_MR * GEMM_NC;
  const size_t a_floats = (size_t)GEMM_MC * GEMM_KC, b_floats = (size_t)GEMM_KC * GEMM_NC;
  const size_t products = job->swiglu ? 2 : 1;
  const size_t total = a_floats + products * (b_floats + tile_floats) + GEMM_LINE_FLOATS + GEMM_NC;
  float *memory = aligned_alloc(64, total * sizeof(float));
  if (!memory) {
    atomic_store(&job->out_of_memory, 1);
    return;
  }
  gemm_scratch s = {.a_pack = memory};
  float *next = memory + a_floats;
  for (size_t t = 0; t < products; ++t) {
    s.b_pack[t] = next;
    s.tile[t] = next + b_floats;
    next += b_floats + tile_floats;
  }
  s.line = next;
  s.row_scratch = next + GEMM_LINE_FLOATS;
  for (int64_t item = item_begin; item < item_end; ++item) run_item(job, item, &s);
  free(memory);
}

/* A bias vector as f32, zero-padded to `padded` elements. */
static kf_status bias_as_f32(const kf_tensor_arg *bias, int64_t n, int64_t padded, float **out) {
  *out = NULL;
  if (!bias->buffer) return KF_OK;
  float *copy = calloc((size_t)padded, sizeof(float));
  if (!copy) return kf_fail(KF_ERROR_OUT_OF_MEMORY, "cannot allocate %lld floats for the GEMM bias", (long long)padded);
  const size_t elem_size = kf_dtype_size(bias->dtype);
  const char *base = kf_cpu_buffer_data(bias->buffer);
  for (int64_t c = 0; c < n; c += KF_CPU_BLOCK) {
    const int count = n - c < KF_CPU_BLOCK ? (int)(n - c) : KF_CPU_BLOCK;
    kf_cpu_load_strided(base + (size_t)(bias->offset + c * bias->col_stride) * elem_size, bias->dtype, bias->col_stride,
                        count, copy + c);
  }
  *out = copy;
  return KF_OK;
}

kf_status kf_cpu_gemm(kf_backend_context *ctx, const kf_gemm_args *args) {
  gemm_job job = {
      .args = args,
      .swiglu = args->activation == KF_GEMM_SWIGLU,
      .column_blocks = (args->n + GEMM_NC - 1) / GEMM_NC,
      .size_a = kf_dtype_size(args->a.dtype),
      .size_b = kf_dtype_size(args->b.dtype),
      .size_c = kf_dtype_size(args->c.dtype),
      .size_residual = args->residual.buffer ? kf_dtype_size(args->residual.dtype) : 0,
  };
  atomic_init(&job.out_of_memory, 0);

  /* Split the rows into ranges when batch × column blocks alone gives too few items. */
  const int64_t wanted_items = (int64_t)kf_pool_thread_count() * GEMM_ITEMS_PER_THREAD;
  const int64_t other_items = args->batch * job.column_blocks;
  int64_t ranges = (wanted_items + other_items - 1) / other_items;
  const int64_t min_ranges = (args->m + GEMM_MAX_ITEM_ROWS - 1) / GEMM_MAX_ITEM_ROWS;
  if (ranges < min_ranges) ranges = min_ranges;
  int64_t item_rows = (args->m + ranges - 1) / ranges;
  item_rows = (item_rows + KF_GEMM_MR - 1) / KF_GEMM_MR * KF_GEMM_MR; /* whole micro tiles per item */
  if (item_rows > GEMM_MAX_ITEM_ROWS) item_rows = GEMM_MAX_ITEM_ROWS;
  job.item_rows = item_rows;
  job.row_ranges = (args->m + item_rows - 1) / item_rows;

  const int64_t padded_n = job.column_blocks * GEMM_NC;
  kf_status status = bias_as_f32(&args->bias, args->n, padded_n, &job.bias);
  if (status == KF_OK && job.swiglu) status = bias_as_f32(&args->bias_up, args->n, padded_n, &job.bias_up);
  if (status == KF_OK) {
    const int64_t items = other_items * job.row_ranges;
    const double item_flops = 2.0 * (double)item_rows * GEMM_NC * (double)(args->k > 0 ? args->k : 1) *
                              (job.swiglu ? 2.0 : 1.0);
    const int64_t min_chunk = (int64_t)(GEMM_MIN_CHUNK_FLOPS / item_flops) + 1;
    kf_pool_parallel_for(items, min_chunk, gemm_items, &job);
    if (atomic_load(&job.out_of_memory))
      status = kf_fail(KF_ERROR_OUT_OF_MEMORY, "cannot allocate the GEMM packing buffers");
  }
  free(job.bias);
  free(job.bias_up);
  return status;
}

/* cuda_softmax.c — chooses and launches the softmax kernel of kernels_src/cuda/softmax.cu:
 *   register path  kf_softmax_<x>_<y>_c<C>[m]_<v|s>: rows up to C * blockDim.x * 8 elements (C = 1, 2, 4,
 *                  8; "m": with a mask);
 *   re-read path   kf_softmax_<x>_<x>_c8l_v: no mask, x = y = f16 or bf16, rows of exactly 8 packs a
 *                  thread of whole warps (2048-16384 elements), vectorized; the row is read twice,
 *                  the second time from cache (softmax.cu's softmax_reread); c16l_v: 16 packs a
 *                  thread, rows of 20480-32768 elements in steps of 4096;
 *   looping path   kf_softmax_<x>_<y>_loop_<v|s>: longer rows (online max/sum, then a second read);
 *   any dtypes     kf_softmax_any_loop_<v|s>: (x, y) pairs without a specialisation.
 * "v" when row_len % 8 == 0 and every row of x, y and the mask is 16-byte aligned.
 */
#include <stdio.h>

#include "backend_cuda/cuda_internal.h"
#include "kernels_src/common/kf_params.h"

#define LOOP_THREADS 256          /* softmax.cu's LOOP_THREADS */
#define TARGET_BLOCK_THREADS 128  /* short rows share blocks of this size, as for the norms */
#define MAX_ROWS_PER_LAUNCH ((int64_t)1 << 30)
#define MAX_REREAD_THREADS 256    /* softmax.cu's MAX_THREADS_REREAD */

static int row_aligned(const kf_tensor_arg *arg, int64_t rows) {
  if (!kf_cuda_present(arg)) return 1;
  if (kf_cuda_address(arg) % KF_CUDA_VECTOR_BYTES != 0) return 0;
  return rows == 1 || (arg->row_stride * kf_cuda_element_size(arg->dtype)) % KF_CUDA_VECTOR_BYTES == 0;
}

kf_status kf_cuda_softmax(kf_backend_context *ctx, const kf_softmax_args *args) {
  const int has_mask = kf_cuda_present(&args->mask);
  if (has_mask && args->mask.col_stride != 1)
    return kf_fail(KF_ERROR_UNSUPPORTED, "CUDA softmax needs a mask whose last dimension is contiguous");
  const int fixed = kf_cuda_specialised_pair(args->x.dtype, args->y.dtype);
  const int vectorized = args->row_len % KF_CUDA_PACK_ELEMENTS == 0 && row_aligned(&args->x, args->rows) &&
                         row_aligned(&args->y, args->rows) && row_aligned(&args->mask, args->rows);
  const int64_t packs = (args->row_len + KF_CUDA_PACK_ELEMENTS - 1) / KF_CUDA_PACK_ELEMENTS;

  /* Plan: one warp per row up to 1024 elements; then the register path with as few threads per row
   * as its chunk count allows (up to 512 threads); then the looping kernel. Without a mask, 8 packs
   * per thread (rows up to 32768 elements); with one, 4 up to 16384 elements (the mask's packs are
   * held too), then 8. Measured on the H200 (bf16 16384x8192): 8 packs x 128 threads 90.7% of copy
   * against 85.3% for 4 x 256 without a mask; 94.8% for 4 x 256 against 92.9% with one. */
  int chunks = 0, threads_per_row = LOOP_THREADS, rows_per_block = 1;
  /* The re-read path without a mask, for f16/bf16 rows of 2048 to 16384 elements (multiples of 2048:
   * 8 packs a thread of whole warps). H200, bf16 16384x8192: 95.2-95.4% of copy in kfbench against
   * 90.3% for the register path (8 packs x 128 threads, 87 registers); 4 packs x 256 threads re-read
   * measured 88.6%: at two exps an element it needs the 8 loads a thread in flight. */
  const int rereadable = !has_mask && vectorized && (args->x.dtype == KF_F16 || args->x.dtype == KF_BF16) &&
                         args->y.dtype == args->x.dtype;
  const int reread = rereadable && packs % (8 * 32) == 0 && packs / 8 <= MAX_REREAD_THREADS;
  /* Rows of the same kind too long for 8 packs x 256 threads, up to 32768 elements: 16 packs a thread
   * (softmax.cu says what else was measured). H200, bf16 4096x32768: 78.0% of copy against 68.2% for
   * the register path that took them before. */
  const int reread16 = rereadable && !reread && packs > 8 * MAX_REREAD_THREADS && packs % (16 * 32) == 0 &&
                       packs / 16 <= MAX_REREAD_THREADS;
  if (reread || reread16) {
    chunks = reread16 ? 16 : 8;
    threads_per_row = (int)(packs / chunks);
  } else if (fixed) {
    if (packs <= 4 * 32) {
      chunks = packs <= 32 ? 1 : packs <= 64 ? 2 : 4;
      threads_per_row = 32;
    } else if (has_mask && packs <= 4 * 512) {
      chunks = 4;
      threads_per_row = (int)((packs + 4 * 32 - 1) / (4 * 32)) * 32;
    } else if (packs <= 8 * 512) {
      chunks = 8;
      threads_per_row = (int)((packs + 8 * 32 - 1) / (8 * 32)) * 32;
    }
    if (chunks > 0 && threads_per_row < TARGET_BLOCK_THREADS) rows_per_block = TARGET_BLOCK_THREADS / threads_per_row;
  }
  char name[64];
  const char access = vectorized ? 'v' : 's';
  if (!fixed)
    snprintf(name, sizeof name, "kf_softmax_any_loop_%c", access);
  else if (chunks == 0)
    snprintf(name, sizeof name, "kf_softmax_%s_%s_loop_%c", kf_cuda_dtype_name(args->x.dtype),
             kf_cuda_dtype_name(args->y.dtype), access);
  else
    snprintf(name, sizeof name, "kf_softmax_%s_%s_c%d%s_%c", kf_cuda_dtype_name(args->x.dtype),
             kf_cuda_dtype_name(args->y.dtype), chunks, reread || reread16 ? "l" : has_mask ? "m" : "", access);
  /* Function-cache slot: (dtype pair, family, v|s); family = chunk count and mask or not (0-7), the
   * looping kernel (8), the re-read kernel (9) or its 16-pack form (10): 10 * 11 * 2 slots. */
  const int chunk_family = chunks == 1 ? 0 : chunks == 2 ? 1 : chunks == 4 ? 2 : chunks == 8 ? 3 : 4;
  const int family = reread16 ? 10 : reread ? 9 : chunk_family == 4 ? 8 : chunk_family * 2 + has_mask;
  const int slot = ((fixed ? (int)args->x.dtype * 3 + (int)args->y.dtype : 9) * 11 + family) * 2 + vectorized;

  struct kf_softmax_params params = {
      .x = kf_cuda_address(&args->x),
      .mask = kf_cuda_address(&args->mask),
      .y = kf_cuda_address(&args->y),
      .x_row_stride = args->x.row_stride,
      .mask_row_stride = has_mask ? args->mask.row_stride : 0,
      .y_row_stride = args->y.row_stride,
      .row_len = (int32_t)args->row_len,
      .scale = args->scale,
      .flags = has_mask ? KF_SOFTMAX_HAS_MASK : 0u,
      .dtypes = (uint32_t)args->x.dtype << KF_SOFTMAX_DT_SHIFT_X | (uint32_t)args->y.dtype << KF_SOFTMAX_DT_SHIFT_Y |
                (has_mask ? (uint32_t)args->mask.dtype << KF_SOFTMAX_DT_SHIFT_MASK : 0u),
  };
  kf_status status = kf_cuda_enter(ctx);
  if (status != KF_OK) return status;
  CUfunction function;
  status = kf_cuda_function(ctx, KF_CUDA_MODULE_SOFTMAX, slot, name, &function);
  for (int64_t first = 0; status == KF_OK && first < args->rows; first += MAX_ROWS_PER_LAUNCH) {
    const int64_t rows = args->rows - first < MAX_ROWS_PER_LAUNCH ? args->rows - first : MAX_ROWS_PER_LAUNCH;
    struct kf_softmax_params slice = params;
    slice.rows = rows;
    slice.x += (uint64_t)(first * args->x.row_stride * kf_cuda_element_size(args->x.dtype));
    slice.y += (uint64_t)(first * args->y.row_stride * kf_cuda_element_size(args->y.dtype));
    if (has_mask) slice.mask += (uint64_t)(first * args->mask.row_stride * kf_cuda_element_size(args->mask.dtype));
    const unsigned grid = (unsigned)((rows + rows_per_block - 1) / rows_per_block);
    status = kf_cuda_launch(ctx, function, name, grid, (unsigned)threads_per_row, (unsigned)rows_per_block, 0, &slice);
  }
  kf_cuda_leave(ctx);
  return status;
}

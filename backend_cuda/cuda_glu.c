/* cuda_glu.c — chooses and launches the GLU kernel of kernels_src/cuda/glu.cu:
 *   kf_glu_<g>_<o>_<v|s> when gate and up share a dtype and (g, o) is a specialised pair,
 *   kf_glu_any_<v|s> otherwise; "v" when every row is 16-byte aligned and inner % 8 == 0.
 */
#include <stdio.h>

#include "backend_cuda/cuda_internal.h"
#include "kernels_src/common/kf_params.h"

/* blockDim.x * blockDim.y, as glu.cu's MAX_THREADS: 256-thread blocks, several per SM. */
#define BLOCK_THREADS 256
#define MAX_ROWS_PER_LAUNCH ((int64_t)1 << 30)
#define MAX_GRID_Y 65535

static int row_aligned(const kf_tensor_arg *arg, int64_t rows) {
  if (kf_cuda_address(arg) % KF_CUDA_VECTOR_BYTES != 0) return 0;
  return rows == 1 || (arg->row_stride * kf_cuda_element_size(arg->dtype)) % KF_CUDA_VECTOR_BYTES == 0;
}

kf_status kf_cuda_glu(kf_backend_context *ctx, const kf_glu_args *args) {
  const int fixed = args->gate.dtype == args->up.dtype && kf_cuda_specialised_pair(args->gate.dtype, args->out.dtype);
  const int vectorized = args->inner % KF_CUDA_PACK_ELEMENTS == 0 && row_aligned(&args->gate, args->rows) &&
                         row_aligned(&args->up, args->rows) && row_aligned(&args->out, args->rows);
  char name[48];
  if (fixed)
    snprintf(name, sizeof name, "kf_glu_%s_%s_%c", kf_cuda_dtype_name(args->gate.dtype),
             kf_cuda_dtype_name(args->out.dtype), vectorized ? 'v' : 's');
  else
    snprintf(name, sizeof name, "kf_glu_any_%c", vectorized ? 'v' : 's');
  const int slot = (fixed ? (int)args->gate.dtype * 3 + (int)args->out.dtype : 9) * 2 + vectorized;

  /* One pack per thread: blockDim.x threads cover a slice of a row's packs (whole warps, at most the
   * block), gridDim.x the rest of the row; rows shorter than a block share it through blockDim.y. */
  const int64_t packs = (args->inner + KF_CUDA_PACK_ELEMENTS - 1) / KF_CUDA_PACK_ELEMENTS;
  const int threads_per_row = packs >= BLOCK_THREADS ? BLOCK_THREADS : (int)((packs + 31) / 32) * 32;
  const int rows_per_block = BLOCK_THREADS / threads_per_row;
  const unsigned row_blocks = (unsigned)((packs + threads_per_row - 1) / threads_per_row);

  struct kf_glu_params params = {
      .gate = kf_cuda_address(&args->gate),
      .up = kf_cuda_address(&args->up),
      .result = kf_cuda_address(&args->out),
      .gate_row_stride = args->gate.row_stride,
      .up_row_stride = args->up.row_stride,
      .result_row_stride = args->out.row_stride,
      .inner = (int32_t)args->inner,
      .flags = args->activation == KF_GLU_GELU_TANH ? KF_GLU_ACT_GELU_TANH : 0u,
      .dtypes = (uint32_t)args->gate.dtype << KF_GLU_DT_SHIFT_GATE | (uint32_t)args->up.dtype << KF_GLU_DT_SHIFT_UP |
                (uint32_t)args->out.dtype << KF_GLU_DT_SHIFT_RESULT,
  };
  kf_status status = kf_cuda_enter(ctx);
  if (status != KF_OK) return status;
  CUfunction function;
  status = kf_cuda_function(ctx, KF_CUDA_MODULE_GLU, slot, name, &function);
  for (int64_t first = 0; status == KF_OK && first < args->rows; first += MAX_ROWS_PER_LAUNCH) {
    const int64_t rows = args->rows - first < MAX_ROWS_PER_LAUNCH ? args->rows - first : MAX_ROWS_PER_LAUNCH;
    struct kf_glu_params slice = params;
    slice.rows = rows;
    slice.gate += (uint64_t)(first * args->gate.row_stride * kf_cuda_element_size(args->gate.dtype));
    slice.up += (uint64_t)(first * args->up.row_stride * kf_cuda_element_size(args->up.dtype));
    slice.result += (uint64_t)(first * args->out.row_stride * kf_cuda_element_size(args->out.dtype));
    const int64_t row_groups = (rows + rows_per_block - 1) / rows_per_block;
    const unsigned grid_y = (unsigned)(row_groups < MAX_GRID_Y ? row_groups : MAX_GRID_Y); /* the kernel strides */
    status = kf_cuda_launch_2d(ctx, function, name, row_blocks, grid_y, (unsigned)threads_per_row,
                               (unsigned)rows_per_block, 0, &slice);
  }
  kf_cuda_leave(ctx);
  return status;
}

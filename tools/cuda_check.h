/* cuda_check.h — the hand-built probes' (tools/*.cu) check of a CUDA runtime call: on an error, print
 * where and why, and exit. */
#ifndef KF_TOOLS_CUDA_CHECK_H
#define KF_TOOLS_CUDA_CHECK_H
#include <stdio.h>
#include <stdlib.h>

#define CHECK(x)                                                                          \
  do {                                                                                    \
    cudaError_t e_ = (x);                                                                 \
    if (e_ != cudaSuccess) {                                                              \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      exit(1);                                                                            \
    }                                                                                     \
  } while (0)

#endif

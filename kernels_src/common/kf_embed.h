/* kf_embed.h — the table of files that tools/embed turns into C arrays (fatbins, SPIR-V, OpenCL C).
 *
 * A generated source defines
 *   const kf_embedded_file SYMBOL[];      terminated by an entry with name == NULL
 *   const size_t SYMBOL_count;
 * Each data array is 16-byte aligned (SPIR-V needs 4, fatbins 8) and followed by one NUL byte not
 * counted in size, so text files can be used as C strings. An input that is empty (the build had no
 * nvcc or glslc) is embedded with size 0: the backend then reports "built without ... kernels".
 */
#ifndef KF_EMBED_H_
#define KF_EMBED_H_

#include <stddef.h>

typedef struct kf_embedded_file {
  const char *name;            /* file name without directories, e.g. "rmsnorm.cl" */
  const unsigned char *data;
  size_t size;
} kf_embedded_file;

#endif /* KF_EMBED_H_ */

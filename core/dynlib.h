/* dynlib.h — opening vendor runtimes at probe time (dlopen) and resolving their symbols from one table.
 *
 * Each backend lists the symbols it needs once, as an X-macro, and declares a kf_dl_symbol array
 * from it (the pattern of IREE's dynamic CUDA symbol table). Nothing in libkfuse.so links a vendor
 * library: `readelf -d` shows libc, libm, libdl, libpthread only.
 */
#ifndef KF_CORE_DYNLIB_H_
#define KF_CORE_DYNLIB_H_

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kf_dl_symbol {
  const char *name;
  void **slot;      /* where the resolved address is stored */
  int optional;     /* 1: a missing symbol leaves *slot NULL instead of failing */
} kf_dl_symbol;

/* Opens the first of `names` (NULL-terminated) that loads. On failure returns NULL and writes
 * "libvulkan.so.1 not found (<dlerror>)" into reason. */
void *kf_dl_open(const char *const *names, char *reason, size_t reason_size);

/* Resolves every symbol; returns 1 on success, else 0 with "libX: missing symbol Y" in reason. */
int kf_dl_resolve(void *library, const char *library_name, const kf_dl_symbol *symbols, size_t count,
                  char *reason, size_t reason_size);

void kf_dl_close(void *library);

#ifdef __cplusplus
}
#endif
#endif /* KF_CORE_DYNLIB_H_ */

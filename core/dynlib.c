/* dynlib.c — dlopen/dlsym over a backend's symbol table (see dynlib.h). */
#include <dlfcn.h>
#include <stdio.h>

#include "core/dynlib.h"

void *kf_dl_open(const char *const *names, char *reason, size_t reason_size) {
  const char *first_error = NULL;
  char saved[192] = "";
  for (size_t i = 0; names[i] != NULL; ++i) {
    void *library = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (library != NULL) return library;
    if (first_error == NULL) {
      const char *e = dlerror();
      snprintf(saved, sizeof saved, "%s", e ? e : "unknown error");
      first_error = saved;
    }
  }
  snprintf(reason, reason_size, "%s not found (%s)", names[0], first_error ? first_error : "no candidates");
  return NULL;
}

int kf_dl_resolve(void *library, const char *library_name, const kf_dl_symbol *symbols, size_t count,
                  char *reason, size_t reason_size) {
  for (size_t i = 0; i < count; ++i) {
    void *address = dlsym(library, symbols[i].name);
    *symbols[i].slot = address;
    if (address == NULL && !symbols[i].optional) {
      snprintf(reason, reason_size, "%s: missing symbol %s (runtime too old?)", library_name, symbols[i].name);
      return 0;
    }
  }
  return 1;
}

void kf_dl_close(void *library) {
  if (library != NULL) dlclose(library);
}

/* opencl_clblast.c — opens CLBlast with dlopen and resolves KF_CLBLAST_SYMBOLS (opencl_clblast.h). */
#include "backend_opencl/opencl_clblast.h"

#include <pthread.h>
#include <string.h>

#include "core/dynlib.h"

kf_clblast_api kf_clblast;

static pthread_once_t g_clblast_once = PTHREAD_ONCE_INIT;
static int g_clblast_loaded;

static void load_once(void) {
  static const char *const library_names[] = {"libclblast.so.1", "libclblast.so", NULL};
  static const kf_dl_symbol symbols[] = {
#define KF_CLBLAST_SYMBOL_ENTRY_(name, type) {#name, (void **)&kf_clblast.name, 0},
      KF_CLBLAST_SYMBOLS(KF_CLBLAST_SYMBOL_ENTRY_)
#undef KF_CLBLAST_SYMBOL_ENTRY_
  };
  /* A missing or incomplete CLBlast is not an error: the reasons are not reported anywhere. */
  char reason[256];
  void *library = kf_dl_open(library_names, reason, sizeof reason);
  if (library == NULL) return;
  if (!kf_dl_resolve(library, "libclblast.so.1", symbols, sizeof symbols / sizeof symbols[0], reason, sizeof reason)) {
    memset(&kf_clblast, 0, sizeof kf_clblast);
    kf_dl_close(library);
    return;
  }
  /* Stays open for the life of the process: CLBlast caches programs built for our contexts. */
  g_clblast_loaded = 1;
}

int kf_clblast_load(void) {
  pthread_once(&g_clblast_once, load_once);
  return g_clblast_loaded;
}

/* cpu_backend.c — the CPU backend: the host CPU as one device. Memory is host memory, copies are
 * memcpy, and ops run synchronously on the calling thread plus the worker pool (threadpool.h), so
 * synchronize has nothing to wait for and the timer is the wall clock.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend_cpu/cpu_internal.h"
#include "backend_cpu/threadpool.h"

/* The contract promises 256-byte aligned buffers (the GPU backends' alignment, and a cache line
 * multiple for every CPU we know). */
#define KF_CPU_BUFFER_ALIGNMENT 256u

/* The first line of /proc/cpuinfo that starts with `key`, its value copied to out; 0 if none. */
static int cpuinfo_value(const char *key, char *out, size_t out_size) {
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return 0;
  char line[4096];
  size_t key_len = strlen(key);
  int found = 0;
  while (!found && fgets(line, sizeof line, f)) {
    if (strncmp(line, key, key_len) != 0) continue;
    const char *p = line + key_len;
    while (*p == ' ' || *p == '\t') ++p;
    if (*p != ':') continue;
    ++p;
    while (*p == ' ' || *p == '\t') ++p;
    size_t len = strcspn(p, "\n");
    if (len >= out_size) len = out_size - 1;
    memcpy(out, p, len);
    out[len] = '\0';
    found = 1;
  }
  fclose(f);
  return found;
}

static int has_flag(const char *flags, const char *flag) {
  size_t len = strlen(flag);
  for (const char *p = flags; (p = strstr(p, flag)) != NULL; p += len) {
    int starts = p == flags || p[-1] == ' ';
    int ends = p[len] == '\0' || p[len] == ' ';
    if (starts && ends) return 1;
  }
  return 0;
}

static void cpu_probe(kf_probe_result *out) {
  memset(out, 0, sizeof *out);
  kf_backend_device *device = &out->devices[0];
  kf_device_info *info = &device->info;
  info->struct_size = sizeof *info;
  info->backend = KF_BACKEND_CPU;
  info->backend_index = 0;
  info->type = KF_DEVICE_TYPE_CPU;
  info->same_device_as = -1;

  if (!cpuinfo_value("model name", info->name, sizeof info->name) || info->name[0] == '\0')
    snprintf(info->name, sizeof info->name, "CPU");
  char vendor_id[64] = "";
  if (!cpuinfo_value("vendor_id", vendor_id, sizeof vendor_id)) cpuinfo_value("CPU implementer", vendor_id, sizeof vendor_id);
  if (strcmp(vendor_id, "GenuineIntel") == 0) snprintf(info->vendor, sizeof info->vendor, "Intel");
  else if (strcmp(vendor_id, "AuthenticAMD") == 0) snprintf(info->vendor, sizeof info->vendor, "AMD");
  else if (strcmp(vendor_id, "0x41") == 0) snprintf(info->vendor, sizeof info->vendor, "ARM");
  else snprintf(info->vendor, sizeof info->vendor, "%s", vendor_id[0] ? vendor_id : "unknown");

#if defined(__VERSION__)
  snprintf(info->driver_version, sizeof info->driver_version, "%s", "compiler " __VERSION__);
#endif
  snprintf(info->api_version, sizeof info->api_version, "C11");

  long pages = sysconf(_SC_PHYS_PAGES);
  long page_size = sysconf(_SC_PAGESIZE);
  info->memory_bytes = pages > 0 && page_size > 0 ? (uint64_t)pages * (uint64_t)page_size : 0;
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  info->compute_units = online > 0 ? (uint32_t)online : 1u;

  /* x86 lists "flags", arm64 "Features". Only the features our kernels can use are named. */
  char flags[4096] = "";
  if (!cpuinfo_value("flags", flags, sizeof flags)) cpuinfo_value("Features", flags, sizeof flags);
  static const char *const interesting[] = {"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16",
                                            "avx512_fp16", "amx_bf16", "asimd", "asimdhp", "bf16", "sve", "sve2"};
  size_t used = 0;
  for (size_t i = 0; i < sizeof interesting / sizeof interesting[0]; ++i) {
    if (!has_flag(flags, interesting[i])) continue;
    int n = snprintf(info->caps_text + used, sizeof info->caps_text - used, "%s%s", used ? " " : "", interesting[i]);
    if (n > 0 && (size_t)n < sizeof info->caps_text - used) used += (size_t)n;
  }
  int threads = kf_pool_thread_count();
  snprintf(info->caps_text + used, sizeof info->caps_text - used, "%s%d thread%s", used ? ", " : "", threads,
           threads == 1 ? "" : "s");

  /* f8e4m3 GEMM inputs are converted to f32 while packing (exact), so every CPU takes them. */
  info->caps = KF_CAP_INT64 | KF_CAP_FP8;
  if (has_flag(flags, "f16c") || has_flag(flags, "asimdhp")) info->caps |= KF_CAP_F16;
  if (has_flag(flags, "avx512_bf16") || has_flag(flags, "amx_bf16") || has_flag(flags, "bf16")) info->caps |= KF_CAP_BF16;

  out->available = 1;
  out->device_count = 1;
  snprintf(out->runtime, sizeof out->runtime, "built in (pthreads)");
  snprintf(out->reason, sizeof out->reason, "%d worker thread%s (KF_NUM_THREADS overrides)", threads,
           threads == 1 ? "" : "s");
}

static kf_status cpu_context_create(const kf_backend_device *device, uint32_t flags, kf_backend_context **out_ctx) {
  kf_backend_context *ctx = calloc(1, sizeof *ctx);
  if (!ctx) return kf_fail(KF_ERROR_OUT_OF_MEMORY, "cannot allocate the CPU context");
  *out_ctx = ctx;
  return KF_OK;
}

static void cpu_context_destroy(kf_backend_context *ctx) { free(ctx); }

static kf_status cpu_buffer_alloc(kf_backend_context *ctx, size_t bytes, kf_buffer **out_buffer) {
  if (bytes > SIZE_MAX - KF_CPU_BUFFER_ALIGNMENT)
    return kf_fail(KF_ERROR_OUT_OF_MEMORY, "cannot allocate %zu bytes of host memory", bytes);
  /* aligned_alloc wants a size that is a multiple of the alignment. */
  size_t rounded = (bytes + KF_CPU_BUFFER_ALIGNMENT - 1) / KF_CPU_BUFFER_ALIGNMENT * KF_CPU_BUFFER_ALIGNMENT;
  void *data = aligned_alloc(KF_CPU_BUFFER_ALIGNMENT, rounded);
  if (!data) return kf_fail(KF_ERROR_OUT_OF_MEMORY, "cannot allocate %zu bytes of host memory", rounded);
  *out_buffer = (kf_buffer *)data;
  return KF_OK;
}

static void cpu_buffer_free(kf_backend_context *ctx, kf_buffer *buffer) { free(buffer); }

static kf_status cpu_buffer_write(kf_backend_context *ctx, kf_buffer *dst, size_t dst_offset, const void *src,
                                  size_t bytes) {
  memcpy(kf_cpu_buffer_data(dst) + dst_offset, src, bytes);
  return KF_OK;
}

static kf_status cpu_buffer_read(kf_backend_context *ctx, kf_buffer *src, size_t src_offset, void *dst,
                                 size_t bytes) {
  memcpy(dst, kf_cpu_buffer_data(src) + src_offset, bytes);
  return KF_OK;
}

static kf_status cpu_buffer_copy(kf_backend_context *ctx, kf_buffer *src, size_t src_offset, kf_buffer *dst,
                                 size_t dst_offset, size_t bytes) {
  memcpy(kf_cpu_buffer_data(dst) + dst_offset, kf_cpu_buffer_data(src) + src_offset, bytes);
  return KF_OK;
}

/* Ops have finished when they return. */
static kf_status cpu_synchronize(kf_backend_context *ctx) { return KF_OK; }

static double monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static kf_status cpu_timer_begin(kf_backend_context *ctx) {
  ctx->timer_start_ms = monotonic_ms();
  return KF_OK;
}

static kf_status cpu_timer_end(kf_backend_context *ctx, double *out_ms) {
  double elapsed = monotonic_ms() - ctx->timer_start_ms;
  *out_ms = elapsed > 0.0 ? elapsed : 0.0;
  return KF_OK;
}

const kf_backend_iface kf_cpu_backend = {
    .backend = KF_BACKEND_CPU,
    .name = "cpu",
    .probe = cpu_probe,
    .context_create = cpu_context_create,
    .context_destroy = cpu_context_destroy,
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_free = cpu_buffer_free,
    .buffer_write = cpu_buffer_write,
    .buffer_read = cpu_buffer_read,
    .buffer_copy = cpu_buffer_copy,
    .synchronize = cpu_synchronize,
    .timer_begin = cpu_timer_begin,
    .timer_end = cpu_timer_end,
    .rmsnorm = kf_cpu_rmsnorm,
    .layernorm = kf_cpu_layernorm,
    .rope = kf_cpu_rope,
    .glu = kf_cpu_glu,
    .softmax = kf_cpu_softmax,
    .gemm = kf_cpu_gemm,
    .attention = kf_cpu_attention,
};

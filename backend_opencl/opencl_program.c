/* opencl_program.c — compiling the embedded OpenCL C sources, with an on-disk program-binary cache.
 *
 * Source text = kernels_src/common/kf_params.h + the kernel file (both embedded by
 * //kernels_src/opencl:embedded), so the parameter struct layout is written once.
 *
 * Binary cache: compiling is slow on some drivers (PoCL: about a second per program), so the binaries
 * are kept in KF_CACHE_DIR, else $XDG_CACHE_HOME/kfuse, else ~/.cache/kfuse. A file is named by a hash
 * of everything that determines the binary (platform name+version, device name, driver version, build
 * options, full source text). Files are written to a temporary name and renamed, so concurrent
 * processes never see a partial file; a file that fails its checksum or that the driver rejects is
 * ignored and the program built from source. A cache directory that cannot be created or written is
 * skipped silently: the cache only saves time. Not used on PoCL (ctx->binary_cache), which has a disk
 * cache of its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend_opencl/opencl_internal.h"
#include "kernels_src/common/kf_embed.h"

extern const kf_embedded_file kf_opencl_kernels[];
extern const size_t kf_opencl_kernels_count;

#define KF_PARAMS_HEADER_NAME "kf_params.h"

/* ---- hashing (FNV-1a, 64 bit: a cache key and a corruption check, not a security boundary) ---- */
#define KF_FNV_OFFSET 0xcbf29ce484222325ull
#define KF_FNV_PRIME 0x100000001b3ull

static uint64_t fnv1a(uint64_t hash, const void *data, size_t size) {
  const unsigned char *bytes = data;
  for (size_t i = 0; i < size; ++i) {
    hash ^= bytes[i];
    hash *= KF_FNV_PRIME;
  }
  return hash;
}

/* Hashes a string including its terminating NUL, so ("ab","c") and ("a","bc") differ. */
static uint64_t fnv1a_str(uint64_t hash, const char *text) { return fnv1a(hash, text, strlen(text) + 1); }

static const kf_embedded_file *find_embedded(const char *name) {
  for (size_t i = 0; i < kf_opencl_kernels_count && kf_opencl_kernels[i].name != NULL; ++i) {
    if (strcmp(kf_opencl_kernels[i].name, name) == 0) return &kf_opencl_kernels[i];
  }
  return NULL;
}

/* ---- the on-disk cache ---- */

/* File layout: magic, key, payload size, payload hash (all 8 bytes, host order), payload. */
static const char kCacheMagic[8] = {'K', 'F', 'C', 'L', 'B', 'I', 'N', '1'};
#define KF_CACHE_HEADER_BYTES 32

/* Creates every missing directory of `path`; 1 if it exists afterwards. */
static int make_directories(char *path) {
  for (char *p = path + 1; *p; ++p) {
    if (*p != '/') continue;
    *p = '\0';
    int ok = mkdir(path, 0755) == 0 || errno == EEXIST;
    *p = '/';
    if (!ok) return 0;
  }
  return mkdir(path, 0755) == 0 || errno == EEXIST;
}

/* The cache directory (created if needed), or 0 if there is none usable. */
static int cache_directory(char *out, size_t out_size) {
  const char *explicit_dir = getenv("KF_CACHE_DIR");
  const char *xdg = getenv("XDG_CACHE_HOME");
  const char *home = getenv("HOME");
  int n;
  if (explicit_dir != NULL && explicit_dir[0] != '\0') {
    n = snprintf(out, out_size, "%s", explicit_dir);
  } else if (xdg != NULL && xdg[0] == '/') {
    n = snprintf(out, out_size, "%s/kfuse", xdg);
  } else if (home != NULL && home[0] == '/') {
    n = snprintf(out, out_size, "%s/.cache/kfuse", home);
  } else {
    return 0;
  }
  if (n <= 0 || (size_t)n >= out_size) return 0;
  return make_directories(out);
}

static int cache_file_path(uint64_t key, char *out, size_t out_size) {
  char directory[4096];
  if (!cache_directory(directory, sizeof directory)) return 0;
  int n = snprintf(out, out_size, "%s/opencl-%016llx.bin", directory, (unsigned long long)key);
  return n > 0 && (size_t)n < out_size;
}

/* Reads and checks a cache file; returns a malloc'ed payload or NULL. */
static unsigned char *cache_read(uint64_t key, size_t *out_size) {
  char path[4200];
  if (!cache_file_path(key, path, sizeof path)) return NULL;
  FILE *file = fopen(path, "rb");
  if (file == NULL) return NULL;
  unsigned char header[KF_CACHE_HEADER_BYTES];
  unsigned char *payload = NULL;
  uint64_t stored_key, size, hash;
  if (fread(header, 1, sizeof header, file) != sizeof header || memcmp(header, kCacheMagic, 8) != 0) goto bad;
  memcpy(&stored_key, header + 8, 8);
  memcpy(&size, header + 16, 8);
  memcpy(&hash, header + 24, 8);
  if (stored_key != key || size == 0 || size > ((uint64_t)1 << 31)) goto bad;
  payload = malloc((size_t)size);
  if (payload == NULL || fread(payload, 1, (size_t)size, file) != size || fgetc(file) != EOF) goto bad;
  if (fnv1a(KF_FNV_OFFSET, payload, (size_t)size) != hash) goto bad;
  fclose(file);
  *out_size = (size_t)size;
  return payload;
bad:
  free(payload);
  fclose(file);
  return NULL;
}

static int write_all(int fd, const void *data, size_t size) {
  const unsigned char *bytes = data;
  while (size > 0) {
    ssize_t written = write(fd, bytes, size);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return 0;
    bytes += written;
    size -= (size_t)written;
  }
  return 1;
}

/* Best effort: any failure leaves no file behind and is otherwise ignored. */
static void cache_write(uint64_t key, const unsigned char *payload, size_t size) {
  char path[4200], temp_path[4300];
  if (!cache_file_path(key, path, sizeof path)) return;
  static _Atomic unsigned temp_counter;
  snprintf(temp_path, sizeof temp_path, "%s.%ld.%u.tmp", path, (long)getpid(), temp_counter++);
  int fd = open(temp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return;
  unsigned char header[KF_CACHE_HEADER_BYTES];
  uint64_t size64 = size, hash = fnv1a(KF_FNV_OFFSET, payload, size);
  memcpy(header, kCacheMagic, 8);
  memcpy(header + 8, &key, 8);
  memcpy(header + 16, &size64, 8);
  memcpy(header + 24, &hash, 8);
  int ok = write_all(fd, header, sizeof header) && write_all(fd, payload, size);
  ok = (close(fd) == 0) && ok;
  if (!ok || rename(temp_path, path) != 0) unlink(temp_path);
}

/* ---- building ---- */

/* The first lines of the build log, for the error message. */
static void build_log_head(cl_program program, cl_device_id device, char *out, size_t out_size) {
  out[0] = '\0';
  size_t log_size = 0;
  if (kf_cl.clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, 0, NULL, &log_size) != CL_SUCCESS ||
      log_size == 0)
    return;
  char *log = malloc(log_size + 1);
  if (log == NULL) return;
  if (kf_cl.clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, log_size, log, NULL) == CL_SUCCESS) {
    log[log_size] = '\0';
    /* Keep 8 lines, joined with " | " so the message stays one line. */
    size_t used = 0;
    int lines = 0;
    for (const char *line = log; *line && lines < 8 && used + 1 < out_size;) {
      const char *end = strchr(line, '\n');
      size_t len = end ? (size_t)(end - line) : strlen(line);
      if (len > 0) {
        int n = snprintf(out + used, out_size - used, "%s%.*s", lines ? " | " : "", (int)len, line);
        if (n < 0) break;
        used += (size_t)n < out_size - used ? (size_t)n : out_size - used - 1;
        ++lines;
      }
      line += len + (end ? 1 : 0);
    }
  }
  free(log);
}

static cl_program program_from_cache(kf_backend_context *ctx, uint64_t key, const char *options) {
  size_t size = 0;
  unsigned char *binary = cache_read(key, &size);
  if (binary == NULL) return NULL;
  const unsigned char *binaries[1] = {binary};
  cl_int binary_status = CL_SUCCESS, err = CL_SUCCESS;
  cl_program program =
      kf_cl.clCreateProgramWithBinary(ctx->context, 1, &ctx->device, &size, binaries, &binary_status, &err);
  free(binary);
  if (program == NULL || err != CL_SUCCESS || binary_status != CL_SUCCESS) {
    if (program != NULL) kf_cl.clReleaseProgram(program);
    return NULL;
  }
  if (kf_cl.clBuildProgram(program, 1, &ctx->device, options, NULL, NULL) != CL_SUCCESS) {
    kf_cl.clReleaseProgram(program);
    return NULL;
  }
  return program;
}

static void program_to_cache(kf_backend_context *ctx, cl_program program, uint64_t key) {
  cl_uint device_count = 0;
  if (kf_cl.clGetProgramInfo(program, CL_PROGRAM_NUM_DEVICES, sizeof device_count, &device_count, NULL) !=
          CL_SUCCESS ||
      device_count != 1)
    return;
  size_t size = 0;
  if (kf_cl.clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS || size == 0)
    return;
  unsigned char *binary = malloc(size);
  if (binary == NULL) return;
  unsigned char *binaries[1] = {binary};
  if (kf_cl.clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof binaries, binaries, NULL) == CL_SUCCESS)
    cache_write(key, binary, size);
  free(binary);
}

kf_status kf_ocl_build_program(kf_backend_context *ctx, const char *prelude_name, const char *source_name,
                               const char *options, cl_program *out_program) {
  const kf_embedded_file *header = find_embedded(KF_PARAMS_HEADER_NAME);
  const kf_embedded_file *prelude = prelude_name != NULL ? find_embedded(prelude_name) : NULL;
  const kf_embedded_file *body = find_embedded(source_name);
  if (header == NULL || body == NULL || body->size == 0 || (prelude_name != NULL && prelude == NULL))
    return kf_fail(KF_ERROR_INTERNAL, "OpenCL kernel source %s is not embedded in this build", source_name);

  /* kf_params.h, [the prelude,] the kernel file, each after a #line so compiler messages name the
   * file's own lines. */
  char prelude_line[128], body_line[128];
  snprintf(prelude_line, sizeof prelude_line, "\n#line 1 \"%s\"\n", prelude_name != NULL ? prelude_name : "");
  snprintf(body_line, sizeof body_line, "\n#line 1 \"%s\"\n", source_name);
  /* An absent prelude is two empty strings (a zero length means NUL-terminated to OpenCL). */
  const char *parts[5] = {(const char *)header->data, prelude ? prelude_line : "",
                          prelude ? (const char *)prelude->data : "", body_line, (const char *)body->data};
  size_t lengths[5] = {header->size, prelude ? strlen(prelude_line) : 0, prelude ? prelude->size : 0,
                       strlen(body_line), body->size};

  uint64_t key = fnv1a_str(KF_FNV_OFFSET, "kfuse opencl binary cache v1");
  key = fnv1a_str(key, ctx->cache_identity);
  key = fnv1a_str(key, options);
  for (int i = 0; i < 5; ++i) key = fnv1a(key, parts[i], lengths[i]);

  cl_program program = ctx->binary_cache ? program_from_cache(ctx, key, options) : NULL;
  if (program != NULL) {
    *out_program = program;
    return KF_OK;
  }

  cl_int err = CL_SUCCESS;
  program = kf_cl.clCreateProgramWithSource(ctx->context, 5, parts, lengths, &err);
  if (program == NULL || err != CL_SUCCESS)
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "clCreateProgramWithSource(%s) failed: %s", source_name,
                   kf_cl_error_name(err));
  err = kf_cl.clBuildProgram(program, 1, &ctx->device, options, NULL, NULL);
  if (err != CL_SUCCESS) {
    char log[768];
    build_log_head(program, ctx->device, log, sizeof log);
    kf_cl.clReleaseProgram(program);
    return kf_fail(KF_ERROR_DEVICE_FAILURE, "clBuildProgram(%s, \"%s\") failed: %s: %s", source_name, options,
                   kf_cl_error_name(err), log[0] ? log : "(no build log)");
  }
  if (ctx->binary_cache) program_to_cache(ctx, program, key);
  *out_program = program;
  return KF_OK;
}

/* ---- the per-context program list ---- */

kf_ocl_program *kf_ocl_find_program(kf_backend_context *ctx, uint32_t key) {
  for (kf_ocl_program *entry = ctx->programs; entry != NULL; entry = entry->next) {
    if (entry->key == key) return entry;
  }
  return NULL;
}

kf_status kf_ocl_add_program(kf_backend_context *ctx, uint32_t key, const char *prelude_name, const char *source_name,
                             const char *options, kf_ocl_program **out_entry) {
  kf_ocl_program *entry = calloc(1, sizeof *entry);
  if (entry == NULL) return kf_fail(KF_ERROR_OUT_OF_MEMORY, "out of host memory for an OpenCL program");
  kf_status status = kf_ocl_build_program(ctx, prelude_name, source_name, options, &entry->program);
  if (status != KF_OK) {
    free(entry);
    return status;
  }
  entry->key = key;
  entry->next = ctx->programs;
  ctx->programs = entry;
  *out_entry = entry;
  return KF_OK;
}

kf_status kf_ocl_get_kernel(kf_backend_context *ctx, kf_ocl_program *entry, int index, const char *name,
                            cl_kernel *out_kernel, size_t *out_max_group) {
  if (entry->kernels[index] == NULL) {
    cl_int err = CL_SUCCESS;
    cl_kernel kernel = kf_cl.clCreateKernel(entry->program, name, &err);
    if (kernel == NULL || err != CL_SUCCESS)
      return kf_fail(KF_ERROR_DEVICE_FAILURE, "clCreateKernel(%s) failed: %s", name, kf_cl_error_name(err));
    size_t max_group = 0;
    err = kf_cl.clGetKernelWorkGroupInfo(kernel, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof max_group,
                                         &max_group, NULL);
    if (err != CL_SUCCESS || max_group == 0) {
      kf_cl.clReleaseKernel(kernel);
      return kf_fail(KF_ERROR_DEVICE_FAILURE, "clGetKernelWorkGroupInfo(%s) failed: %s", name,
                     kf_cl_error_name(err));
    }
    entry->kernels[index] = kernel;
    entry->kernel_max_group[index] = max_group;
  }
  *out_kernel = entry->kernels[index];
  *out_max_group = entry->kernel_max_group[index];
  return KF_OK;
}

void kf_ocl_release_programs(kf_backend_context *ctx) {
  kf_ocl_program *entry = ctx->programs;
  while (entry != NULL) {
    kf_ocl_program *next = entry->next;
    for (int i = 0; i < KF_OCL_MAX_KERNELS; ++i) {
      if (entry->kernels[i] != NULL) kf_cl.clReleaseKernel(entry->kernels[i]);
    }
    kf_cl.clReleaseProgram(entry->program);
    free(entry);
    entry = next;
  }
  ctx->programs = NULL;
}

/* cl_runtime.c — loads the OpenCL ICD loader with dlopen and resolves KF_CL_SYMBOLS (cl_runtime.h). */
#include "backend_opencl/cl_runtime.h"

#include <stdio.h>
#include <string.h>

#include "core/dynlib.h"

kf_cl_api kf_cl;

int kf_cl_load(char *reason, size_t reason_size) {
  static const char *const library_names[] = {"libOpenCL.so.1", "libOpenCL.so", NULL};
  static const kf_dl_symbol symbols[] = {
#define KF_CL_SYMBOL_ENTRY_(name) {#name, (void **)&kf_cl.name, 0},
      KF_CL_SYMBOLS(KF_CL_SYMBOL_ENTRY_)
#undef KF_CL_SYMBOL_ENTRY_
  };
  char dl_reason[256];
  void *library = kf_dl_open(library_names, dl_reason, sizeof dl_reason);
  if (library == NULL) {
    snprintf(reason, reason_size, "libOpenCL.so.1 not found (install an OpenCL ICD loader, e.g. ocl-icd-libopencl1)");
    return 0;
  }
  if (!kf_dl_resolve(library, "libOpenCL.so.1", symbols, sizeof symbols / sizeof symbols[0], reason,
                     reason_size)) {
    memset(&kf_cl, 0, sizeof kf_cl);
    kf_dl_close(library);
    return 0;
  }
  /* The library stays open for the life of the process: devices and contexts refer to it. */
  return 1;
}

#define KF_CL_ERROR_CODES(X)                 \
  X(CL_DEVICE_NOT_FOUND)                     \
  X(CL_DEVICE_NOT_AVAILABLE)                 \
  X(CL_COMPILER_NOT_AVAILABLE)               \
  X(CL_MEM_OBJECT_ALLOCATION_FAILURE)        \
  X(CL_OUT_OF_RESOURCES)                     \
  X(CL_OUT_OF_HOST_MEMORY)                   \
  X(CL_PROFILING_INFO_NOT_AVAILABLE)         \
  X(CL_MEM_COPY_OVERLAP)                     \
  X(CL_BUILD_PROGRAM_FAILURE)                \
  X(CL_MISALIGNED_SUB_BUFFER_OFFSET)         \
  X(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST) \
  X(CL_INVALID_VALUE)                        \
  X(CL_INVALID_DEVICE_TYPE)                  \
  X(CL_INVALID_PLATFORM)                     \
  X(CL_INVALID_DEVICE)                       \
  X(CL_INVALID_CONTEXT)                      \
  X(CL_INVALID_QUEUE_PROPERTIES)             \
  X(CL_INVALID_COMMAND_QUEUE)                \
  X(CL_INVALID_HOST_PTR)                     \
  X(CL_INVALID_MEM_OBJECT)                   \
  X(CL_INVALID_BINARY)                       \
  X(CL_INVALID_BUILD_OPTIONS)                \
  X(CL_INVALID_PROGRAM)                      \
  X(CL_INVALID_PROGRAM_EXECUTABLE)           \
  X(CL_INVALID_KERNEL_NAME)                  \
  X(CL_INVALID_KERNEL_DEFINITION)            \
  X(CL_INVALID_KERNEL)                       \
  X(CL_INVALID_ARG_INDEX)                    \
  X(CL_INVALID_ARG_VALUE)                    \
  X(CL_INVALID_ARG_SIZE)                     \
  X(CL_INVALID_KERNEL_ARGS)                  \
  X(CL_INVALID_WORK_DIMENSION)               \
  X(CL_INVALID_WORK_GROUP_SIZE)              \
  X(CL_INVALID_WORK_ITEM_SIZE)               \
  X(CL_INVALID_GLOBAL_OFFSET)                \
  X(CL_INVALID_EVENT_WAIT_LIST)              \
  X(CL_INVALID_EVENT)                        \
  X(CL_INVALID_OPERATION)                    \
  X(CL_INVALID_BUFFER_SIZE)                  \
  X(CL_INVALID_GLOBAL_WORK_SIZE)             \
  X(CL_INVALID_PROPERTY)                     \
  X(CL_PLATFORM_NOT_FOUND_KHR)

const char *kf_cl_error_name(cl_int code) {
  switch (code) {
#define KF_CL_ERROR_CASE_(name) \
  case name:                    \
    return #name;
    KF_CL_ERROR_CODES(KF_CL_ERROR_CASE_)
#undef KF_CL_ERROR_CASE_
    default:
      break;
  }
  static _Thread_local char unknown[32];
  snprintf(unknown, sizeof unknown, "OpenCL error %d", (int)code);
  return unknown;
}

/* cl_runtime.h — the OpenCL entry points the backend uses, resolved from libOpenCL.so.1 at probe time.
 *
 * Every cl* function is listed once in KF_CL_SYMBOLS; calls go through kf_cl.<name>. Types come from
 * the system <CL/cl.h>; libkfuse never links libOpenCL.
 */
#ifndef KF_BACKEND_OPENCL_CL_RUNTIME_H_
#define KF_BACKEND_OPENCL_CL_RUNTIME_H_

#define CL_TARGET_OPENCL_VERSION 300
/* clCreateCommandQueue is deprecated in 2.0 but is the one call every driver (1.2 ... 3.0) has. */
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#include <CL/cl.h>
#include <CL/cl_ext.h>

#include <stddef.h>

/* Extension constants, numerically, so older headers work too. */
/* cl_khr_device_uuid */
#define KF_CL_DEVICE_UUID_KHR 0x106A
/* cl_khr_pci_bus_info: returns struct { cl_uint domain, bus, device, function; } */
#define KF_CL_DEVICE_PCI_BUS_INFO_KHR 0x410F
/* cl_nv_device_attribute_query. The slot id encodes (device << 3) | function. */
#define KF_CL_DEVICE_PCI_BUS_ID_NV 0x4008
#define KF_CL_DEVICE_PCI_SLOT_ID_NV 0x4009
#define KF_CL_DEVICE_PCI_DOMAIN_ID_NV 0x400A

/* X(name) — every OpenCL function used by the backend. */
#define KF_CL_SYMBOLS(X)          \
  X(clGetPlatformIDs)             \
  X(clGetPlatformInfo)            \
  X(clGetDeviceIDs)               \
  X(clGetDeviceInfo)              \
  X(clCreateContext)              \
  X(clReleaseContext)             \
  X(clCreateCommandQueue)         \
  X(clReleaseCommandQueue)        \
  X(clCreateBuffer)               \
  X(clReleaseMemObject)           \
  X(clEnqueueReadBuffer)          \
  X(clEnqueueWriteBuffer)         \
  X(clEnqueueCopyBuffer)          \
  X(clFinish)                     \
  X(clCreateProgramWithSource)    \
  X(clCreateProgramWithBinary)    \
  X(clBuildProgram)               \
  X(clGetProgramInfo)             \
  X(clGetProgramBuildInfo)        \
  X(clReleaseProgram)             \
  X(clCreateKernel)               \
  X(clReleaseKernel)              \
  X(clSetKernelArg)               \
  X(clGetKernelWorkGroupInfo)     \
  X(clEnqueueNDRangeKernel)       \
  X(clGetEventProfilingInfo)      \
  X(clReleaseEvent)

typedef struct kf_cl_api {
#define KF_CL_POINTER_(name) __typeof__(&name) name;
  KF_CL_SYMBOLS(KF_CL_POINTER_)
#undef KF_CL_POINTER_
} kf_cl_api;

/* Filled by kf_cl_load(); valid for the life of the process once it returned 1. */
extern kf_cl_api kf_cl;

/* Opens libOpenCL.so.1 (then libOpenCL.so) and resolves every symbol once. Returns 1 on success, else 0
 * with a reason a person can act on. Called under the core's probe lock. */
int kf_cl_load(char *reason, size_t reason_size);

/* "CL_OUT_OF_RESOURCES", or "OpenCL error -9999" for codes it does not know. Thread-safe. */
const char *kf_cl_error_name(cl_int code);

#endif /* KF_BACKEND_OPENCL_CL_RUNTIME_H_ */

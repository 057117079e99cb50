/* cuda_driver.h — the part of the CUDA driver API the CUDA backend uses, declared here so that the
 * backend compiles on machines without the CUDA toolkit. libcuda.so.1 is opened at probe time and
 * every function below is resolved through KF_CUDA_SYMBOLS (one X-macro table).
 *
 * Types, enum values and signatures follow the driver API's ABI (cuda.h of CUDA 13.0; the numeric
 * values are part of the stable ABI). Where the library exports a versioned symbol (cuMemAlloc_v2 ...)
 * the versioned one is resolved: that is the entry point cuda.h itself maps each call to.
 */
#ifndef KF_BACKEND_CUDA_DRIVER_H_
#define KF_BACKEND_CUDA_DRIVER_H_

#include <stddef.h>

typedef int CUresult;       /* enum cudaError_enum */
typedef int CUdevice;       /* an ordinal */
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef struct CUuuid_st {
  char bytes[16];
} CUuuid;

#define CUDA_SUCCESS 0
#define CUDA_ERROR_OUT_OF_MEMORY 2
#define CUDA_ERROR_NO_DEVICE 100

/* CUdevice_attribute values. */
#define CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT 16
#define CU_DEVICE_ATTRIBUTE_INTEGRATED 18
#define CU_DEVICE_ATTRIBUTE_PCI_BUS_ID 33
#define CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID 34
#define CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE 38
#define CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID 50
#define CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR 75
#define CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR 76
#define CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN 97

/* CUfunction_attribute values (cuFuncSetAttribute). */
#define CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES 8

/* Tensor maps of the TMA (cuTensorMapEncodeTiled; cuda.h's CUtensorMap: 16 opaque words, 128-byte
 * aligned). The enums are passed as int. */
typedef struct CUtensorMap_st {
  _Alignas(128) unsigned long long opaque[16];
} CUtensorMap;
#define CU_TENSOR_MAP_DATA_TYPE_UINT8 0
#define CU_TENSOR_MAP_DATA_TYPE_FLOAT16 6
#define CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 9
#define CU_TENSOR_MAP_INTERLEAVE_NONE 0
#define CU_TENSOR_MAP_SWIZZLE_128B 3
#define CU_TENSOR_MAP_L2_PROMOTION_L2_256B 3
#define CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE 0 /* out-of-bounds elements read as zero */

/* cuLaunchKernelEx: a launch configuration with attributes (cuda.h's CUlaunchConfig, CUlaunchAttribute:
 * an id, padding to 8 bytes, then a 64-byte value union). */
#define CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION 4                 /* value: CTAs a cluster along x, y, z */
#define CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION 6 /* value: int, nonzero allows PDL */
typedef struct CUlaunchAttribute_st {
  int id;
  char pad[4];
  union {
    char bytes[64];
    struct {
      unsigned int x, y, z;
    } cluster_dim;
    int programmatic_stream_serialization_allowed;
  } value;
} CUlaunchAttribute;
typedef struct CUlaunchConfig_st {
  unsigned int grid_x, grid_y, grid_z;
  unsigned int block_x, block_y, block_z;
  unsigned int shared_bytes;
  CUstream stream;
  CUlaunchAttribute *attributes;
  unsigned int attribute_count;
} CUlaunchConfig;

/* CUstream_flags / CUevent_flags. */
#define CU_STREAM_NON_BLOCKING 0x1
#define CU_EVENT_DEFAULT 0x0

/* X(return/parameter signature as a function pointer type, field name, symbol exported by libcuda).
 * Every symbol is required: all exist in drivers of CUDA 12.0 and later (cuTensorMapEncodeTiled is
 * the newest, 12.0). */
#define KF_CUDA_SYMBOLS(X)                                                                                 \
  X(CUresult (*)(CUresult, const char **), GetErrorName, "cuGetErrorName")                               \
  X(CUresult (*)(CUresult, const char **), GetErrorString, "cuGetErrorString")                           \
  X(CUresult (*)(unsigned int), Init, "cuInit")                                                          \
  X(CUresult (*)(int *), DriverGetVersion, "cuDriverGetVersion")                                         \
  X(CUresult (*)(int *), DeviceGetCount, "cuDeviceGetCount")                                             \
  X(CUresult (*)(CUdevice *, int), DeviceGet, "cuDeviceGet")                                             \
  X(CUresult (*)(char *, int, CUdevice), DeviceGetName, "cuDeviceGetName")                               \
  X(CUresult (*)(int *, int, CUdevice), DeviceGetAttribute, "cuDeviceGetAttribute")                      \
  X(CUresult (*)(size_t *, CUdevice), DeviceTotalMem, "cuDeviceTotalMem_v2")                             \
  X(CUresult (*)(CUuuid *, CUdevice), DeviceGetUuid, "cuDeviceGetUuid_v2")                               \
  X(CUresult (*)(CUcontext *, CUdevice), DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain")             \
  X(CUresult (*)(CUdevice), DevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2")                     \
  X(CUresult (*)(CUcontext), CtxPushCurrent, "cuCtxPushCurrent_v2")                                      \
  X(CUresult (*)(CUcontext *), CtxPopCurrent, "cuCtxPopCurrent_v2")                                      \
  X(CUresult (*)(CUstream *, unsigned int), StreamCreate, "cuStreamCreate")                              \
  X(CUresult (*)(CUstream), StreamDestroy, "cuStreamDestroy_v2")                                         \
  X(CUresult (*)(CUstream), StreamSynchronize, "cuStreamSynchronize")                                    \
  X(CUresult (*)(CUmodule *, const void *), ModuleLoadData, "cuModuleLoadData")                          \
  X(CUresult (*)(CUmodule), ModuleUnload, "cuModuleUnload")                                              \
  X(CUresult (*)(CUfunction *, CUmodule, const char *), ModuleGetFunction, "cuModuleGetFunction")        \
  X(CUresult (*)(CUdeviceptr *, size_t), MemAlloc, "cuMemAlloc_v2")                                      \
  X(CUresult (*)(CUdeviceptr), MemFree, "cuMemFree_v2")                                                  \
  X(CUresult (*)(size_t *, size_t *), MemGetInfo, "cuMemGetInfo_v2")                                     \
  X(CUresult (*)(CUdeviceptr, const void *, size_t, CUstream), MemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2")  \
  X(CUresult (*)(void *, CUdeviceptr, size_t, CUstream), MemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2")        \
  X(CUresult (*)(CUdeviceptr, CUdeviceptr, size_t, CUstream), MemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2")   \
  X(CUresult (*)(CUevent *, unsigned int), EventCreate, "cuEventCreate")                                 \
  X(CUresult (*)(CUevent), EventDestroy, "cuEventDestroy_v2")                                            \
  X(CUresult (*)(CUevent, CUstream), EventRecord, "cuEventRecord")                                       \
  X(CUresult (*)(CUevent), EventSynchronize, "cuEventSynchronize")                                       \
  X(CUresult (*)(float *, CUevent, CUevent), EventElapsedTime, "cuEventElapsedTime")                     \
  X(CUresult (*)(CUfunction, int, int), FuncSetAttribute, "cuFuncSetAttribute")                          \
  X(CUresult (*)(CUtensorMap *, int, unsigned int, void *, const unsigned long long *,                   \
                 const unsigned long long *, const unsigned int *, const unsigned int *, int, int, int, int),  \
    TensorMapEncodeTiled, "cuTensorMapEncodeTiled")                                                      \
  X(CUresult (*)(CUfunction, unsigned int, unsigned int, unsigned int, unsigned int, unsigned int,        \
                 unsigned int, unsigned int, CUstream, void **, void **),                                  \
    LaunchKernel, "cuLaunchKernel")                                                                      \
  X(CUresult (*)(const CUlaunchConfig *, CUfunction, void **, void **), LaunchKernelEx, "cuLaunchKernelEx")  \
  X(CUresult (*)(int *, CUfunction, const CUlaunchConfig *), OccupancyMaxActiveClusters,                     \
    "cuOccupancyMaxActiveClusters")

#endif /* KF_BACKEND_CUDA_DRIVER_H_ */

/* kernel_trace.c — a CUPTI injection library for timing kernels as a sustained program really runs
 * them: every kernel's GPU start and end (ns), and the SM clock and board power sampled from NVML every
 * 2 ms on the same time base, so each kernel family's clock can be read off. Written for comparing the
 * Hopper GEMM with cuBLAS inside one kfbench_mm process (docs/HOPPER_GEMM_NOTES.md, session 12).
 *
 * Not part of the Bazel build (it needs CUPTI, which only the CUDA toolkit has). Build here:
 *   gcc -O2 -shared -fPIC -o .gpu/trace/libkernel_trace.so tools/kernel_trace.c -I/usr/local/cuda/include \
 *       -L/usr/local/cuda/lib64 -lcupti -ldl -lpthread -Wl,-rpath,'$ORIGIN'
 *   cp /usr/local/cuda/lib64/libcupti.so.13 .gpu/trace/
 * Run on the GPU host (the driver loads the library at cuInit):
 *   CUDA_INJECTION64_PATH=$PWD/.gpu/trace/libkernel_trace.so KERNEL_TRACE_OUT=/tmp/trace.txt \
 *       .gpu/bin/kfbench_mm --backend=cuda --op=gemm --shape=bf16:4096x4096x4096
 *   python3 tools/kernel_trace.py /tmp/trace.txt
 * Output lines: "start end grid_x stream name" per kernel, then "#C timestamp sm_mhz power_mw reasons
 * energy_mj" per sample (reasons: NVML's clock-event mask in hex, read every 16th sample, like the
 * energy). CUPTI's concurrent-kernel records keep programmatic dependent launches overlapping. */
#include <cupti.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BUFFER_BYTES (8u << 20)
#define MAX_SAMPLES 400000

static FILE *g_out;
static volatile int g_stop;
static int g_sampling;
static pthread_t g_sampler;
static uint64_t g_time[MAX_SAMPLES];
static unsigned g_mhz[MAX_SAMPLES], g_mw[MAX_SAMPLES];
static unsigned long long g_reasons[MAX_SAMPLES], g_mj[MAX_SAMPLES];
static int g_samples;

typedef int (*nvml_init_fn)(void);
typedef int (*nvml_handle_fn)(unsigned, void **);
typedef int (*nvml_clock_fn)(void *, int, unsigned *);
typedef int (*nvml_power_fn)(void *, unsigned *);
typedef int (*nvml_u64_fn)(void *, unsigned long long *);

/* NVML through dlopen (the driver's libnvidia-ml), device 0: the SM clock and the power draw. */
static void *sample(void *unused) {
  (void)unused;
  void *nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW);
  if (!nvml) return NULL;
  nvml_init_fn init = (nvml_init_fn)dlsym(nvml, "nvmlInit_v2");
  nvml_handle_fn handle = (nvml_handle_fn)dlsym(nvml, "nvmlDeviceGetHandleByIndex_v2");
  nvml_clock_fn clock_info = (nvml_clock_fn)dlsym(nvml, "nvmlDeviceGetClockInfo");
  nvml_power_fn power = (nvml_power_fn)dlsym(nvml, "nvmlDeviceGetPowerUsage");
  /* why the clock is below its maximum (a bit mask: 0x4 software power cap, 0x8 hardware slowdown,
     0x20 software thermal, 0x40 hardware thermal, 0x80 hardware power brake), and the board's energy
     counter (mJ since the driver loaded); either may be missing in older drivers */
  nvml_u64_fn reasons = (nvml_u64_fn)dlsym(nvml, "nvmlDeviceGetCurrentClocksEventReasons");
  if (!reasons) reasons = (nvml_u64_fn)dlsym(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons");
  nvml_u64_fn energy = (nvml_u64_fn)dlsym(nvml, "nvmlDeviceGetTotalEnergyConsumption");
  unsigned long long why = 0, mj = 0;
  void *device = NULL;
  if (!init || !handle || !clock_info || !power || init() != 0 || handle(0, &device) != 0) return NULL;
  while (!g_stop && g_samples < MAX_SAMPLES) {
    unsigned mhz = 0, mw = 0;
    clock_info(device, 1 /* NVML_CLOCK_SM */, &mhz);
    power(device, &mw);
    /* the two slower queries only every 16th sample (the energy counter steps every ~100 ms anyway),
       so the clock is still read every ~2 ms; the samples between repeat the last values */
    if (g_samples % 16 == 0) {
      if (reasons) reasons(device, &why);
      if (energy) energy(device, &mj);
    }
    uint64_t now = 0;
    cuptiGetTimestamp(&now);
    g_time[g_samples] = now, g_mhz[g_samples] = mhz, g_mw[g_samples] = mw;
    g_reasons[g_samples] = why, g_mj[g_samples] = mj;
    ++g_samples;
    const struct timespec period = {0, 2000000};
    nanosleep(&period, NULL);
  }
  return NULL;
}

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
  *buffer = aligned_alloc(8, BUFFER_BYTES);
  *size = *buffer ? BUFFER_BYTES : 0;
  *max_records = 0;
}

static void CUPTIAPI buffer_completed(CUcontext context, uint32_t stream, uint8_t *buffer, size_t size,
                                      size_t valid) {
  (void)context, (void)stream, (void)size;
  CUpti_Activity *record = NULL;
  while (cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) {
    if (record->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || !g_out) continue;
    const CUpti_ActivityKernel10 *kernel = (const CUpti_ActivityKernel10 *)record;
    fprintf(g_out, "%llu %llu %d %u %s\n", (unsigned long long)kernel->start, (unsigned long long)kernel->end,
            kernel->gridX, kernel->streamId, kernel->name ? kernel->name : "?");
  }
  free(buffer);
}

static void finish(void) {
  g_stop = 1;
  if (g_sampling) pthread_join(g_sampler, NULL);
  cuptiActivityFlushAll(1);
  for (int i = 0; g_out && i < g_samples; ++i)
    fprintf(g_out, "#C %llu %u %u %llx %llu\n", (unsigned long long)g_time[i], g_mhz[i], g_mw[i], g_reasons[i],
            g_mj[i]);
  if (g_out) fclose(g_out);
  g_out = NULL;
}

/* The entry point the CUDA driver calls for CUDA_INJECTION64_PATH. */
int InitializeInjection(void) {
  const char *path = getenv("KERNEL_TRACE_OUT");
  g_out = fopen(path ? path : "kernel_trace.txt", "w");
  if (!g_out) return 0;
  if (cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS ||
      cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS) {
    fprintf(stderr, "kernel_trace: CUPTI refused the kernel activity records\n");
    return 0;
  }
  atexit(finish);
  g_sampling = pthread_create(&g_sampler, NULL, sample, NULL) == 0;
  return 1;
}

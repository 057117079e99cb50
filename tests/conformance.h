/* conformance.h — the conformance harness shared by the op suites (conformance.c holds the harness,
 * the norm / RoPE / GLU / softmax suites and main; conformance_gemm.c and conformance_attention.c the
 * GEMM and attention suites). A suite builds a case table and make / run / free functions; the harness
 * (run_generic_suite) runs each case on every device with poisoned, guarded output storages, checks
 * against the fp64 reference and compares the devices pairwise. */
#ifndef KF_TESTS_CONFORMANCE_H_
#define KF_TESTS_CONFORMANCE_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/kfuse.h"
#include "tests/reference/reference.h"

typedef struct test_device {
  const kf_device_info *info;
  kf_context *ctx;
  char label[320];     /* backend=<b> device="<name>" */
  char pair_label[320]; /* <b>:<backend_index> "<name>" */
  int cases;
  int failed;
  double seconds;
} test_device;

/* Guards: an odd element offset (no kernel may assume aligned views) and a tail longer than any vector
 * width, so a kernel that rounds a row up to its tile writes into it. Views with contiguous rows
 * (no row gap) start at ALIGNED_FRONT instead: 16 bytes for 16-bit dtypes and 32 for f32, so the
 * backends' vectorized paths (16-byte loads, taken only for aligned views whose rows are a multiple
 * of 8 elements) are tested too; strided views keep the odd offset and take the element-wise paths. */
#define GUARD_FRONT 3
#define ALIGNED_FRONT 8
#define GUARD_BACK 67
/* Extra elements between strided rows: odd, for the same reason. */
#define ROW_GAP 5
#define POISON_BYTE 0xFF
/* Where a view starts in its storage: ALIGNED_FRONT for contiguous rows, GUARD_FRONT otherwise. */
#define VIEW_FRONT(row_gap) ((row_gap) == 0 ? ALIGNED_FRONT : GUARD_FRONT)

/* Host data of one input: values as the dtype holds them, and the packed bytes. */
typedef struct host_input {
  kf_dtype dtype;
  size_t count;
  double *values;
  void *bytes;
} host_input;

typedef struct geometry {
  int32_t ndim;
  int64_t shape[4];
  int64_t strides[4];
  int64_t offset;
} geometry;

typedef struct region {
  kf_dtype dtype;
  size_t elem;
  int64_t elems;
  kf_tensor *storage;
  unsigned char *image;
  unsigned char poison; /* the byte the image starts as */
} region;

/* A finite poison (1.5e16 in f32 and bf16, 203.25 in f16) for output storages whose expected values
 * include NaN: a device NaN may have the NaN poison's bit pattern, so there an unwritten element shows
 * up as a finite value where NaN is expected. */
#define FINITE_POISON_BYTE 0x5A

/* One compared output of a case: its reference, magnitudes (see kf_test_compare), tolerance, and the
 * elements that must be NaN (then excluded from the metrics: both sides set to 0). */
#define MAX_OUTPUTS 2
typedef struct output_spec {
  const char *name;
  kf_dtype dtype;
  size_t count;
  size_t group_len;
  double *ref;
  double *magnitude;
  unsigned char *expect_nan; /* NULL: none */
  double tol;
} output_spec;

typedef struct case_spec {
  const char *op;
  char dtype[64];
  char shape[96];
  char variant[256];
  int output_count;
  output_spec out[MAX_OUTPUTS];
} case_spec;

/* What one device produced (NULL outputs when it failed before producing them). */
typedef struct device_result {
  double *out[MAX_OUTPUTS];
} device_result;

/* Pairwise agreement of two devices on one case: within the sum of both tolerances. */
typedef struct pair_stats {
  int cases, failed;
  double worst_ratio; /* max over cases of max_diff / tolerance */
  double worst_diff, worst_tol;
  char worst_case[512];
} pair_stats;

typedef void (*case_make_fn)(const void *c, kf_test_rng *rng, void **inputs, case_spec *spec);
typedef void (*case_run_fn)(test_device *dev, const void *c, const void *inputs, const case_spec *spec,
                            device_result *result);
typedef void (*case_free_fn)(void *inputs);

/* Device steps of a case: the first failing call ends it with its status and message. */
#define CASE_TRY(call, what)                                                                                 \
  do {                                                                                                       \
    kf_status status_;                                                                                       \
    if (ok && (status_ = (call)) != KF_OK) {                                                                 \
      snprintf(why, sizeof why, "%s returned %s: %s", (what), kf_status_name(status_), kf_last_error());     \
      ok = false;                                                                                            \
    }                                                                                                        \
  } while (0)

extern int g_passed, g_failed;

void tally(bool ok);
void print_suite_time(const char *op, const test_device *devices, int device_count, const double *start_seconds, const int *start_cases);
double now_seconds(void);
void *xmalloc(size_t bytes);
void host_input_make(host_input *in, kf_dtype dtype, const double *values, size_t count);
void host_input_free(host_input *in);
double *bytes_to_doubles(const void *bytes, kf_dtype dtype, size_t count);
bool within(const kf_test_error *e, double tolerance);
int64_t geometry_count(const geometry *g);
int64_t geometry_index(const geometry *g, int64_t i);
int64_t geometry_end(const geometry *g);
geometry geometry_rows(int32_t ndim, const int64_t *shape, int64_t row_gap);
void region_destroy(region *r);
kf_status region_create(kf_context *ctx, kf_dtype dtype, const geometry *views, int view_count, region *r);
void region_fill(region *r, const geometry *g, const void *bytes);
void region_poison_finite(region *r);
kf_status region_upload(region *r);
kf_status region_view(const region *r, const geometry *g, kf_tensor **out);
bool region_check(const region *r, const char *region_name, const geometry *out_views, void **outs, const char *const *out_names, int out_count, char *why, size_t why_size);
void case_spec_free(case_spec *spec);
void case_spec_settle_nans(case_spec *spec);
void device_result_free(device_result *r);
void result_take(device_result *result, int o, const void *bytes, const output_spec *os);
void finish_case(test_device *dev, const case_spec *spec, device_result *result, bool ok, char *why, size_t why_size);
void compare_pair_generic(const test_device *a, const test_device *b, const device_result *ra, const device_result *rb, const case_spec *spec, pair_stats *stats);
void run_generic_suite(const char *op, const void *cases, size_t case_size, size_t case_count, case_make_fn make, case_run_fn run, case_free_fn free_inputs, test_device *devices, int device_count, kf_test_rng *rng);
void dtype_label(char *buf, size_t size, kf_dtype in, kf_dtype out);

/* The suites in their own files. */
void run_gemm_suite(test_device *devices, int device_count, bool quick, kf_test_rng *rng);
void run_attention_suite(test_device *devices, int device_count, bool quick, kf_test_rng *rng);

#endif /* KF_TESTS_CONFORMANCE_H_ */

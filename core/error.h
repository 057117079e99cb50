/* error.h — the one error path: a per-thread message naming the function and the argument.
 *
 * Every public function starts with KF_API_ENTER("kf_name") (clears the thread's message and records
 * the function name) and reports failures with kf_fail(status, "fmt", ...), which formats
 * "<function>: <message>" into the thread's buffer and returns status, so error returns read
 *   return kf_fail(KF_ERROR_SHAPE_MISMATCH, "weight has %lld elements, x rows have %lld", ...);
 * Backends use kf_fail as well for runtime failures ("clEnqueueNDRangeKernel failed: CL_OUT_OF_RESOURCES").
 */
#ifndef KF_CORE_ERROR_H_
#define KF_CORE_ERROR_H_

#include "core/kfuse.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sets the name of the public function the thread is in and clears its message. */
void kf_api_enter(const char *function);
#define KF_API_ENTER(fn) kf_api_enter(fn)

/* Formats the thread's message as "<function>: <fmt...>" and returns status.
 * If the thread already holds a message from a deeper failure in the same call, that message is
 * kept (the first, most specific failure wins) unless overwrite is used. */
kf_status kf_fail(kf_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Replaces any message. */
kf_status kf_fail_overwrite(kf_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Internal helpers shared by the core and backends. */
int kf_env_flag(const char *name); /* 1 if the environment variable is set to a non-empty value other than 0 */

#ifdef __cplusplus
}
#endif
#endif /* KF_CORE_ERROR_H_ */

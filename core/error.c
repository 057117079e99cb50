/* error.c — status names, the per-thread error message, version. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/kfuse.h"

#define KF_MESSAGE_CAPACITY 1024

/* Per thread, not per handle: two threads sharing a handle must not see each other's messages. */
static _Thread_local char tls_message[KF_MESSAGE_CAPACITY];
static _Thread_local const char *tls_function = "kfuse";

void kf_api_enter(const char *function) {
  tls_function = function;
  tls_message[0] = '\0';
}

static kf_status format_message(kf_status status, const char *fmt, va_list args) {
  int n = snprintf(tls_message, sizeof tls_message, "%s: ", tls_function);
  if (n < 0 || (size_t)n >= sizeof tls_message) n = 0;
  vsnprintf(tls_message + n, sizeof tls_message - (size_t)n, fmt, args);
  return status;
}

kf_status kf_fail(kf_status status, const char *fmt, ...) {
  if (tls_message[0] != '\0') return status; /* keep the first, most specific message */
  va_list args;
  va_start(args, fmt);
  format_message(status, fmt, args);
  va_end(args);
  return status;
}

kf_status kf_fail_overwrite(kf_status status, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  format_message(status, fmt, args);
  va_end(args);
  return status;
}

const char *kf_last_error(void) { return tls_message; }

const char *kf_status_name(kf_status status) {
  switch (status) {
#define KF_STATUS_NAME_(name, value, msg) \
  case name:                              \
    return #name;
    KF_STATUS_MAP(KF_STATUS_NAME_)
#undef KF_STATUS_NAME_
    default:
      return "KF_STATUS_UNKNOWN";
  }
}

const char *kf_status_message(kf_status status) {
  switch (status) {
#define KF_STATUS_MSG_(name, value, msg) \
  case name:                             \
    return msg;
    KF_STATUS_MAP(KF_STATUS_MSG_)
#undef KF_STATUS_MSG_
    default:
      return "unknown status";
  }
}

uint32_t kf_version(void) { return KF_VERSION_MAJOR * 10000u + KF_VERSION_MINOR * 100u + KF_VERSION_PATCH; }

#define KF_STR2_(x) #x
#define KF_STR_(x) KF_STR2_(x)
const char *kf_version_string(void) {
  return KF_STR_(KF_VERSION_MAJOR) "." KF_STR_(KF_VERSION_MINOR) "." KF_STR_(KF_VERSION_PATCH);
}

int kf_env_flag(const char *name) {
  const char *v = getenv(name);
  return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

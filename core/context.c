/* context.c — contexts (one device + one in-order queue), synchronization and device timers. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/internal.h"

kf_status kf_check_context(const kf_context *ctx, const char *name) {
  if (ctx == NULL) return kf_fail(KF_ERROR_NULL_ARGUMENT, "%s is NULL", name);
  if (ctx->magic != KF_CONTEXT_MAGIC)
    return kf_fail(KF_ERROR_INVALID_ARGUMENT, "%s is not a live kf_context (destroyed or corrupt)", name);
  return KF_OK;
}

static kf_status open_on_device(const kf_registered_device *device, uint32_t flags, kf_context **out) {
  kf_context *ctx = calloc(1, sizeof *ctx);
  if (ctx == NULL) return kf_fail(KF_ERROR_OUT_OF_MEMORY, "out of host memory");
  kf_status status = device->iface->context_create(device->device, flags, &ctx->backend_ctx);
  if (status != KF_OK) {
    free(ctx);
    return kf_fail(status, "opening %s device \"%s\" failed", device->iface->name, device->device->info.name);
  }
  ctx->magic = KF_CONTEXT_MAGIC;
  ctx->iface = device->iface;
  ctx->info = device->device->info;
  ctx->flags = flags;
  ctx->allocator.stats.struct_size = sizeof(kf_memory_stats);
  *out = ctx;
  return KF_OK;
}

kf_status kf_context_create(const kf_context_options *options, kf_context **out_context) {
  KF_API_ENTER("kf_context_create");
  if (out_context == NULL) return kf_fail(KF_ERROR_NULL_ARGUMENT, "out_context is NULL");
  uint32_t flags = 0;
  if (options != NULL) {
    if (options->struct_size < sizeof(kf_context_options))
      return kf_fail(KF_ERROR_INVALID_ARGUMENT,
                     "options->struct_size is %zu, expected at least %zu (initialize with KF_CONTEXT_OPTIONS_INIT)",
                     options->struct_size, sizeof(kf_context_options));
    if (options->backend != KF_BACKEND_ANY && ((int)options->backend < 0 || options->backend >= KF_BACKEND_COUNT))
      return kf_fail(KF_ERROR_INVALID_ARGUMENT, "options->backend %d is not a kf_backend value", (int)options->backend);
    if (options->flags & ~(uint32_t)KF_CONTEXT_ALLOW_TF32)
      return kf_fail(KF_ERROR_INVALID_ARGUMENT, "options->flags has unknown bits 0x%x",
                     options->flags & ~(uint32_t)KF_CONTEXT_ALLOW_TF32);
    flags = options->flags;
  }
  const kf_registered_device *devices = NULL;
  size_t device_count = 0;
  kf_status status = kf_registry_devices(&devices, NULL, &device_count);
  if (status != KF_OK) return status;

  size_t candidates[64], n = 0;
  status = kf_registry_select(options, candidates, 64, &n);
  if (status != KF_OK) return status;
  bool explicit_choice = n > 0;
  if (!explicit_choice) n = kf_registry_default_candidates(candidates, 64);
  if (n == 0) return kf_fail(KF_ERROR_DEVICE_NOT_FOUND, "no usable device");

  /* An explicit request names one device: its failure is the answer. The default policy falls through
   * to the next candidate (the CPU backend always opens). */
  size_t tries = explicit_choice ? 1 : n;
  for (size_t i = 0; i < tries; ++i) {
    status = open_on_device(&devices[candidates[i]], flags, out_context);
    if (status == KF_OK) {
      kf_api_enter("kf_context_create"); /* a fallback succeeded: clear earlier failures */
      return KF_OK;
    }
  }
  return status;
}

void kf_context_destroy(kf_context *context) {
  KF_API_ENTER("kf_context_destroy");
  if (context == NULL || context->magic != KF_CONTEXT_MAGIC) return;
  context->iface->synchronize(context->backend_ctx);
  kf_allocator_release_all(context);
  context->iface->context_destroy(context->backend_ctx);
  context->magic = 0;
  free(context);
}

kf_status kf_context_device(const kf_context *context, kf_device_info *out_info) {
  KF_API_ENTER("kf_context_device");
  kf_status status = kf_check_context(context, "context");
  if (status != KF_OK) return status;
  if (out_info == NULL) return kf_fail(KF_ERROR_NULL_ARGUMENT, "out_info is NULL");
  *out_info = context->info;
  return KF_OK;
}

kf_status kf_synchronize(kf_context *context) {
  KF_API_ENTER("kf_synchronize");
  kf_status status = kf_check_context(context, "context");
  if (status != KF_OK) return status;
  return context->iface->synchronize(context->backend_ctx);
}

kf_status kf_timer_begin(kf_context *context) {
  KF_API_ENTER("kf_timer_begin");
  kf_status status = kf_check_context(context, "context");
  if (status != KF_OK) return status;
  if (context->timer_active)
    return kf_fail(KF_ERROR_INVALID_ARGUMENT, "a timer is already running on this context (call kf_timer_end)");
  status = context->iface->timer_begin(context->backend_ctx);
  if (status == KF_OK) context->timer_active = true;
  return status;
}

kf_status kf_timer_end(kf_context *context, double *out_milliseconds) {
  KF_API_ENTER("kf_timer_end");
  kf_status status = kf_check_context(context, "context");
  if (status != KF_OK) return status;
  if (out_milliseconds == NULL) return kf_fail(KF_ERROR_NULL_ARGUMENT, "out_milliseconds is NULL");
  if (!context->timer_active)
    return kf_fail(KF_ERROR_INVALID_ARGUMENT, "no timer is running on this context (call kf_timer_begin)");
  context->timer_active = false;
  double ms = 0.0;
  status = context->iface->timer_end(context->backend_ctx, &ms);
  if (status == KF_OK) *out_milliseconds = ms;
  return status;
}

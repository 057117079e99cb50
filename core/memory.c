/* memory.c — the caching device allocator (one per context) and its statistics.
 *
 * Device allocation is slow on every API (cuMemAlloc synchronizes, Vulkan allocations are few and
 * expensive), and transformer workloads free and re-allocate the same sizes every step. Freed blocks
 * are kept in a free list and reused for requests of the same size class. Size classes: powers of two
 * from 256 B up to 1 MiB, then multiples of 1 MiB, so reuse wastes at most 50% on small blocks and
 * < 1 MiB on large ones. On out-of-memory the cache is returned to the device and the request retried.
 */
#include <stdlib.h>

#include "core/error.h"
#include "core/internal.h"

#define KF_MIN_BLOCK ((size_t)256)
#define KF_LARGE_BLOCK_STEP ((size_t)1 << 20)

static size_t size_class(size_t bytes) {
  if (bytes <= KF_MIN_BLOCK) return KF_MIN_BLOCK;
  if (bytes < KF_LARGE_BLOCK_STEP) {
    size_t c = KF_MIN_BLOCK;
    while (c < bytes) c <<= 1;
    return c;
  }
  if (bytes > SIZE_MAX - KF_LARGE_BLOCK_STEP) return 0;
  return (bytes + KF_LARGE_BLOCK_STEP - 1) / KF_LARGE_BLOCK_STEP * KF_LARGE_BLOCK_STEP;
}

static void note_in_use(kf_memory_stats *stats, size_t block_bytes) {
  stats->current_bytes += block_bytes;
  if (stats->current_bytes > stats->peak_bytes) stats->peak_bytes = stats->current_bytes;
  stats->alloc_count += 1;
}

static void release_cache(kf_context *ctx) {
  kf_allocator *a = &ctx->allocator;
  while (a->free_blocks != NULL) {
    kf_cached_block *block = a->free_blocks;
    a->free_blocks = block->next;
    ctx->iface->buffer_free(ctx->backend_ctx, block->buffer);
    a->stats.cached_bytes -= block->bytes;
    a->stats.device_bytes -= block->bytes;
    free(block);
  }
}

kf_status kf_alloc_block(kf_context *ctx, size_t bytes, kf_buffer **out_buffer, size_t *out_block_bytes) {
  kf_allocator *a = &ctx->allocator;
  size_t block_bytes = size_class(bytes);
  if (block_bytes == 0) return kf_fail(KF_ERROR_OVERFLOW, "allocation of %zu bytes overflows", bytes);
  for (kf_cached_block **link = &a->free_blocks; *link != NULL; link = &(*link)->next) {
    kf_cached_block *block = *link;
    if (block->bytes != block_bytes) continue;
    *link = block->next;
    *out_buffer = block->buffer;
    *out_block_bytes = block_bytes;
    a->stats.cached_bytes -= block_bytes;
    free(block);
    note_in_use(&a->stats, block_bytes);
    return KF_OK;
  }
  kf_buffer *buffer = NULL;
  kf_status status = ctx->iface->buffer_alloc(ctx->backend_ctx, block_bytes, &buffer);
  if (status == KF_ERROR_OUT_OF_MEMORY && a->free_blocks != NULL) {
    /* Queued work may still use cached blocks (they were freed by tensors, not by the device). */
    ctx->iface->synchronize(ctx->backend_ctx);
    release_cache(ctx);
    kf_api_enter("kf_alloc_block");
    status = ctx->iface->buffer_alloc(ctx->backend_ctx, block_bytes, &buffer);
  }
  if (status != KF_OK)
    return kf_fail(status, "allocating %zu bytes on %s device \"%s\" failed", block_bytes, ctx->iface->name,
                   ctx->info.name);
  a->stats.device_bytes += block_bytes;
  a->stats.device_alloc_count += 1;
  note_in_use(&a->stats, block_bytes);
  *out_buffer = buffer;
  *out_block_bytes = block_bytes;
  return KF_OK;
}

void kf_free_block(kf_context *ctx, kf_buffer *buffer, size_t block_bytes) {
  kf_allocator *a = &ctx->allocator;
  a->stats.current_bytes -= block_bytes;
  kf_cached_block *block = malloc(sizeof *block);
  if (block == NULL) { /* cannot cache it: give it back */
    ctx->iface->buffer_free(ctx->backend_ctx, buffer);
    a->stats.device_bytes -= block_bytes;
    return;
  }
  block->buffer = buffer;
  block->bytes = block_bytes;
  block->next = a->free_blocks;
  a->free_blocks = block;
  a->stats.cached_bytes += block_bytes;
}

void kf_allocator_release_all(kf_context *ctx) { release_cache(ctx); }

kf_status kf_memory_get_stats(const kf_context *context, kf_memory_stats *out_stats) {
  KF_API_ENTER("kf_memory_get_stats");
  kf_status status = kf_check_context(context, "context");
  if (status != KF_OK) return status;
  if (out_stats == NULL) return kf_fail(KF_ERROR_NULL_ARGUMENT, "out_stats is NULL");
  *out_stats = context->allocator.stats;
  out_stats->struct_size = sizeof *out_stats;
  return KF_OK;
}

kf_status kf_memory_reset_peak(kf_context *context) {
  KF_API_ENTER("kf_memory_reset_peak");
  kf_status status = kf_check_context(context, "context");
  if (status != KF_OK) return status;
  context->allocator.stats.peak_bytes = context->allocator.stats.current_bytes;
  return KF_OK;
}

kf_status kf_memory_trim(kf_context *context) {
  KF_API_ENTER("kf_memory_trim");
  kf_status status = kf_check_context(context, "context");
  if (status != KF_OK) return status;
  status = context->iface->synchronize(context->backend_ctx);
  if (status != KF_OK) return status;
  release_cache(context);
  return KF_OK;
}

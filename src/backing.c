/*
 * backing.c -- real memory from a private jemalloc arena.
 *
 * Each manager creates its own jemalloc arena (arenas.create) and
 * allocates only from it, with MALLOCX_ARENA and without jemalloc's
 * thread caches (MALLOCX_TCACHE_NONE: a thread cache is shared by every
 * arena a thread uses, so it would mix the host's blocks with ours).  So
 * the arena's statistics are the manager's alone, and mm_destroy can
 * destroy the arena whole.  The books charge nallocx(size): the size
 * class jemalloc really hands out, not the size asked for.
 *
 * The host process keeps its own malloc.  Debian's libjemalloc also
 * exports malloc/free; which malloc the process uses is decided by the
 * dynamic linker's symbol order (normally glibc's, which comes first), and
 * either way the manager's blocks come from its arena, never from the
 * host's heap, and are never freed with free().
 *
 * Sanitizer builds route every block through malloc/free instead, so that
 * ThreadSanitizer sees memory reused across threads and AddressSanitizer
 * sees overflows and leaks; sizes are then rounded to 16 bytes and the
 * statistics are our own count.
 *
 * Tests can make the next allocations fail (mmi_backing_fail_next) to
 * check that every failure rolls its charge back.
 */
#include "backing.h"

#include <stdlib.h>

#include "tsan.h"

#if defined(__SANITIZE_ADDRESS__) || defined(MMI_TSAN)
#define MMI_SYSTEM_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MMI_SYSTEM_MALLOC 1
#endif
#endif

#ifndef MMI_SYSTEM_MALLOC
#include <jemalloc/jemalloc.h>
#include <stdio.h>
#endif

static mm_atomic_u32 fail_next, fail_every, fail_count;

void mmi_backing_fail_next(unsigned n) {
  atomic_store_explicit(&fail_next, n, memory_order_relaxed);
}

void mmi_backing_fail_every(unsigned n) {
  atomic_store_explicit(&fail_every, n, memory_order_relaxed);
}

/* Consume one injected failure, if any is left. */
static bool injected_failure(void) {
  uint32_t every = mm_load_relaxed_u32(&fail_every);
  if (every && mm_faa_relaxed_u32(&fail_count, 1) % every == every - 1)
    return true;
  uint32_t n = mm_load_relaxed_u32(&fail_next);
  while (n) {
    if (mm_cas_acq_rel_u32(&fail_next, &n, n - 1))
      return true;
  }
  return false;
}

#ifdef MMI_SYSTEM_MALLOC

mm_status mmi_backing_init(mmi_backing *b) {
  b->arena = 0;
  b->flags = 0;
  mm_store_relaxed_u64(&b->allocated, 0);
  return MM_OK;
}

void mmi_backing_fini(mmi_backing *b) { (void)b; }

size_t mmi_backing_size(const mmi_backing *b, size_t bytes) {
  (void)b;
  if (bytes == 0 || bytes > SIZE_MAX - 15)
    return 0;
  return (bytes + 15) & ~(size_t)15;
}

void *mmi_backing_alloc(mmi_backing *b, size_t bytes) {
  if (injected_failure())
    return NULL;
  size_t size = mmi_backing_size(b, bytes);
  void *p = size ? aligned_alloc(16, size) : NULL;
  if (p)
    mm_faa_relaxed_u64(&b->allocated, size);
  return p;
}

void mmi_backing_free(mmi_backing *b, void *p, size_t bytes) {
  mm_faa_relaxed_u64(&b->allocated, (uint64_t)0 - mmi_backing_size(b, bytes));
  free(p);
}

void mmi_backing_trim(mmi_backing *b) { (void)b; }

void mmi_backing_stats(mmi_backing *b, uint64_t *allocated, uint64_t *active,
                       uint64_t *resident) {
  *allocated = *active = *resident = mm_load_relaxed_u64(&b->allocated);
}

#else /* jemalloc */

mm_status mmi_backing_init(mmi_backing *b) {
  unsigned arena;
  size_t len = sizeof arena;
  if (mallctl("arenas.create", &arena, &len, NULL, 0) != 0)
    return MM_ENOMEM;
  b->arena = arena;
  b->flags = MALLOCX_ARENA(arena) | MALLOCX_TCACHE_NONE;
  mm_store_relaxed_u64(&b->allocated, 0);
  return MM_OK;
}

void mmi_backing_fini(mmi_backing *b) {
  char name[64];
  snprintf(name, sizeof name, "arena.%u.destroy", b->arena);
  (void)mallctl(name, NULL, NULL, NULL, 0);
}

size_t mmi_backing_size(const mmi_backing *b, size_t bytes) {
  return bytes ? nallocx(bytes, b->flags) : 0;
}

void *mmi_backing_alloc(mmi_backing *b, size_t bytes) {
  if (injected_failure())
    return NULL;
  return mallocx(bytes, b->flags);
}

void mmi_backing_free(mmi_backing *b, void *p, size_t bytes) {
  sdallocx(p, bytes, b->flags);
}

void mmi_backing_trim(mmi_backing *b) {
  char name[64];
  snprintf(name, sizeof name, "arena.%u.purge", b->arena);
  (void)mallctl(name, NULL, NULL, NULL, 0);
}

static uint64_t arena_stat(const mmi_backing *b, const char *what) {
  char name[96];
  size_t v = 0, len = sizeof v;
  snprintf(name, sizeof name, "stats.arenas.%u.%s", b->arena, what);
  if (mallctl(name, &v, &len, NULL, 0) != 0)
    return 0;
  return v;
}

void mmi_backing_stats(mmi_backing *b, uint64_t *allocated, uint64_t *active,
                       uint64_t *resident) {
  uint64_t epoch = 1;
  size_t len = sizeof epoch;
  (void)mallctl("epoch", &epoch, &len, &epoch, len); /* refresh the stats */
  size_t page = 4096;
  len = sizeof page;
  (void)mallctl("arenas.page", &page, &len, NULL, 0);
  *allocated =
      arena_stat(b, "small.allocated") + arena_stat(b, "large.allocated");
  *active = arena_stat(b, "pactive") * page;
  *resident = arena_stat(b, "resident");
}

#endif

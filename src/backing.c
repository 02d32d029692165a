/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * backing.c -- real memory from a private jemalloc arena on a reservation
 * of address space.
 *
 * Each manager reserves one range of address space at creation (mmap,
 * MAP_NORESERVE: nothing is committed until touched) and creates its own
 * jemalloc arena (arenas.create) whose extent hooks carve pages out of
 * that range and nowhere else:
 *
 *   base                                   bump                    end
 *   |<------ handed to jemalloc ------------>|<---- never touched --->|
 *
 * So "is this pointer the manager's?" is two comparisons, and reads
 * nothing.  Beside the range, a table holds a 32-bit tag for every
 * 16-byte granule (MAP_NORESERVE too: a page of tags is committed when a
 * block starting in the 64 KiB it covers is first tagged).  The block
 * layer writes a live block's owner into the tag of its first granule and
 * clears it when the block is freed; the backing only keeps the table.
 *
 * The hooks: alloc bumps a pointer (a CAS; jemalloc asks for extents
 * rarely and in growing sizes); dalloc refuses, so jemalloc keeps every
 * extent it was given and reuses it (opt.retain's way); decommit refuses,
 * so pages stay mapped and readable; purges are madvise (MADV_FREE lazy,
 * MADV_DONTNEED forced); split and merge are allowed.  Destroying the
 * arena and unmapping the range gives everything back at once.
 *
 * Allocations are made without jemalloc's thread caches
 * (MALLOCX_TCACHE_NONE: a thread cache is shared by every arena a thread
 * uses, so it would mix the host's blocks with ours, and it holds up to
 * megabytes per thread that nobody could count).  The block layer keeps
 * its own, counted caches in front (tcache.c).  The books charge
 * nallocx(size): the size class jemalloc really hands out, at least one
 * granule.  The host process keeps its own malloc: Debian's libjemalloc
 * also exports malloc/free, but the dynamic linker finds glibc's first,
 * and either way the manager's blocks never mix with the host's.
 *
 * Sanitizer builds use the same arena.  AddressSanitizer does not see
 * jemalloc's memory, so a block taken back is poisoned and one handed out
 * unpoisoned (its requested bytes only: an overflow into the rest of its
 * size class is caught); ThreadSanitizer does not see jemalloc's own
 * synchronisation, so a block taken back releases every page it covers and
 * one handed out acquires every page it covers.  (Pages, not the block's
 * address: jemalloc may reuse a slab's pages for another size class, and
 * then a new block overlaps old ones at other offsets.  The price: blocks
 * that share a page are ordered by each other's frees.)
 *
 * Tests can make the next allocations fail (mmi_backing_fail_next).
 */
#include "backing.h"

#include <jemalloc/jemalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "stats.h"
#include "tsan.h"

#ifdef MMI_ASAN
void __asan_poison_memory_region(void const volatile *addr, size_t size);
void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
#endif

/* How much address space a budget gets: room for jemalloc's retained
 * extents and fragmentation, then less where the system refuses. */
#define RESERVE_FACTOR 8
#define RESERVE_SLACK  ((uint64_t)256 << 20)
#define RESERVE_MIN    ((uint64_t)64 << 20)
#define RESERVE_MAX    ((uint64_t)1 << 46)

#define DIRTY_DECAY_MS 1000 /* how long freed pages stay resident, about */

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

/* ---- the extent hooks ---------------------------------------------------- */

typedef struct hooks {
  extent_hooks_t h; /* first: jemalloc hands back a pointer to it */
  mmi_backing *b;
} hooks;

static mmi_backing *backing_of(extent_hooks_t *h) { return ((hooks *)h)->b; }

static void *hook_alloc(extent_hooks_t *h, void *new_addr, size_t size,
                        size_t alignment, bool *zero, bool *commit,
                        unsigned arena_ind) {
  (void)arena_ind;
  mmi_backing *b = backing_of(h);
  uint64_t span = (uint64_t)(b->end - b->base);
  uint64_t off = mm_load_relaxed_u64(&b->bump);
  for (;;) {
    uint64_t start = (off + alignment - 1) & ~((uint64_t)alignment - 1);
    if (start < off || start > span || size > span - start)
      return NULL; /* the reservation is used up */
    if (new_addr && new_addr != b->base + start)
      return NULL; /* jemalloc wants to grow in place: only at the end */
    /* acq_rel: one extent per range, whoever wins the bump */
    if (mm_cas_acq_rel_u64(&b->bump, &off, start + size)) {
      *zero = true; /* never touched before: zero pages */
      *commit = true;
      return b->base + start;
    }
  }
}

static bool hook_dalloc(extent_hooks_t *h, void *addr, size_t size,
                        bool committed, unsigned arena_ind) {
  (void)h, (void)addr, (void)size, (void)committed, (void)arena_ind;
  return true; /* refused: jemalloc retains the extent and reuses it */
}

static void hook_destroy(extent_hooks_t *h, void *addr, size_t size,
                         bool committed, unsigned arena_ind) {
  (void)h, (void)addr, (void)size, (void)committed, (void)arena_ind;
  /* The whole range is unmapped at once by mmi_backing_fini. */
}

static bool hook_commit(extent_hooks_t *h, void *addr, size_t size,
                        size_t offset, size_t length, unsigned arena_ind) {
  (void)h, (void)addr, (void)size, (void)offset, (void)length, (void)arena_ind;
  return false; /* always committed: decommit is refused */
}

static bool hook_decommit(extent_hooks_t *h, void *addr, size_t size,
                          size_t offset, size_t length, unsigned arena_ind) {
  (void)h, (void)addr, (void)size, (void)offset, (void)length, (void)arena_ind;
  return true; /* refused: pages stay mapped, so a tag read never faults */
}

static bool hook_purge_lazy(extent_hooks_t *h, void *addr, size_t size,
                            size_t offset, size_t length, unsigned arena_ind) {
  (void)h, (void)size, (void)arena_ind;
  return madvise((char *)addr + offset, length, MADV_FREE) != 0;
}

static bool hook_purge_forced(extent_hooks_t *h, void *addr, size_t size,
                              size_t offset, size_t length,
                              unsigned arena_ind) {
  (void)h, (void)size, (void)arena_ind;
  return madvise((char *)addr + offset, length, MADV_DONTNEED) != 0;
}

static bool hook_split(extent_hooks_t *h, void *addr, size_t size,
                       size_t size_a, size_t size_b, bool committed,
                       unsigned arena_ind) {
  (void)h, (void)addr, (void)size, (void)size_a, (void)size_b, (void)committed,
      (void)arena_ind;
  return false; /* any split of our range is still ours */
}

static bool hook_merge(extent_hooks_t *h, void *addr_a, size_t size_a,
                       void *addr_b, size_t size_b, bool committed,
                       unsigned arena_ind) {
  (void)h, (void)addr_a, (void)size_a, (void)addr_b, (void)size_b,
      (void)committed, (void)arena_ind;
  return false;
}

/* ---- life ---------------------------------------------------------------- */

static void *map_noreserve(uint64_t bytes) {
  void *p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

mm_status mmi_backing_init(mmi_backing *b, uint64_t total) {
  memset(b, 0, sizeof *b);
  uint64_t want = total > (RESERVE_MAX - RESERVE_SLACK) / RESERVE_FACTOR
                      ? RESERVE_MAX
                      : total * RESERVE_FACTOR + RESERVE_SLACK;
  void *base = NULL;
  for (; want >= RESERVE_MIN && !(base = map_noreserve(want)); want /= 2)
    ;
  if (!base)
    return MM_ENOMEM;
  b->base = base;
  b->end = b->base + want;
  mm_store_relaxed_u64(&b->bump, 0);
  b->tags_bytes = (size_t)(want / MMI_GRANULE * sizeof *b->tags);
  if (!(b->tags = map_noreserve(b->tags_bytes)))
    goto no_tags;

  hooks *hk = calloc(1, sizeof *hk);
  if (!hk)
    goto no_hooks;
  hk->h = (extent_hooks_t){hook_alloc,        hook_dalloc,   hook_destroy,
                           hook_commit,       hook_decommit, hook_purge_lazy,
                           hook_purge_forced, hook_split,    hook_merge};
  hk->b = b;
  b->hooks = hk;
  extent_hooks_t *hp = &hk->h;
  unsigned arena;
  size_t len = sizeof arena;
  if (mallctl("arenas.create", &arena, &len, &hp, sizeof hp) != 0)
    goto no_arena;
  b->arena = arena;
  b->flags = MALLOCX_ARENA(arena) | MALLOCX_TCACHE_NONE;
  /* Freed pages go back to the system within a second (jemalloc's default
   * is ten), purged outright rather than left lazily freed: resident
   * memory follows what the budget has in use.  (Best effort: a jemalloc
   * without these controls keeps its defaults.) */
  char name[64];
  ssize_t dirty_ms = DIRTY_DECAY_MS, muzzy_ms = 0;
  snprintf(name, sizeof name, "arena.%u.dirty_decay_ms", arena);
  (void)mallctl(name, NULL, NULL, &dirty_ms, sizeof dirty_ms);
  snprintf(name, sizeof name, "arena.%u.muzzy_decay_ms", arena);
  (void)mallctl(name, NULL, NULL, &muzzy_ms, sizeof muzzy_ms);
  /* jemalloc 5.3's batch allocation, if this jemalloc has it. */
  b->batch_miblen = sizeof b->batch_mib / sizeof b->batch_mib[0];
  if (mallctlnametomib("experimental.batch_alloc", b->batch_mib,
                       &b->batch_miblen) != 0)
    b->batch_miblen = 0;
  return MM_OK;

no_arena:
  free(hk);
no_hooks:
  munmap(b->tags, b->tags_bytes);
no_tags:
  munmap(b->base, (size_t)(b->end - b->base));
  return MM_ENOMEM;
}

void mmi_backing_fini(mmi_backing *b) {
  char name[64];
  snprintf(name, sizeof name, "arena.%u.destroy", b->arena);
  (void)mallctl(name, NULL, NULL, NULL, 0);
#ifdef MMI_ASAN
  /* The range may be mapped again by anyone: no poison may outlive it. */
  __asan_unpoison_memory_region(b->base, (size_t)mm_load_relaxed_u64(&b->bump));
#endif
  munmap(b->base, (size_t)(b->end - b->base));
  munmap(b->tags, b->tags_bytes);
  free(b->hooks);
}

/* ---- blocks ----------------------------------------------------------------
 */

size_t mmi_backing_size(const mmi_backing *b, size_t bytes) {
  if (bytes == 0)
    return 0;
  return nallocx(bytes < MMI_GRANULE ? MMI_GRANULE : bytes, b->flags);
}

static void count_allocated(mmi_backing *b, uint64_t delta) {
  mm_faa_relaxed_u64(&b->allocated[mmi_stripe_of_thread() % 16].bytes, delta);
}

void *mmi_backing_alloc(mmi_backing *b, size_t bytes) {
  if (injected_failure())
    return NULL;
  size_t size = mmi_backing_size(b, bytes);
  void *p = size ? mallocx(size, b->flags) : NULL;
  if (p)
    count_allocated(b, size);
  return p;
}

unsigned mmi_backing_alloc_batch(mmi_backing *b, size_t bytes, void **out,
                                 unsigned n) {
  if (injected_failure())
    return 0;
  size_t size = mmi_backing_size(b, bytes), filled = 0, len = sizeof filled;
  struct {
    void **ptrs;
    size_t num, size;
    int flags;
  } packet = {out, n, size, b->flags};
  if (!size || !b->batch_miblen ||
      mallctlbymib(b->batch_mib, b->batch_miblen, &filled, &len, &packet,
                   sizeof packet) != 0) {
    for (filled = 0; filled < n && size; filled++) /* one at a time */
      if (!(out[filled] = mallocx(size, b->flags)))
        break;
  }
  if (filled)
    count_allocated(b, size * filled);
  return (unsigned)filled;
}

void mmi_backing_free(mmi_backing *b, void *p, size_t bytes) {
  size_t size = mmi_backing_size(b, bytes);
  count_allocated(b, (uint64_t)0 - size);
  sdallocx(p, size, b->flags);
}

size_t mmi_backing_usable(const mmi_backing *b, const void *p) {
  (void)b;
  return sallocx(p, 0);
}

#ifdef MMI_TSAN
#define TSAN_PAGE ((uintptr_t)4096)
#define EACH_PAGE(p, bytes, what)                                              \
  for (uintptr_t a_ = (uintptr_t)(p) & ~(TSAN_PAGE - 1);                       \
       a_ < (uintptr_t)(p) + (bytes); a_ += TSAN_PAGE)                         \
  what((void *)a_)
#endif

#if MMI_BACKING_SANITIZED
void mmi_backing_hand_out(void *p, size_t bytes) {
#ifdef MMI_ASAN
  __asan_unpoison_memory_region(p, bytes);
#endif
#ifdef MMI_TSAN
  EACH_PAGE(p, bytes ? bytes : 1, MMI_TSAN_ACQUIRE); /* after its last free */
#endif
  (void)p, (void)bytes;
}

void mmi_backing_take_back(void *p, size_t bytes) {
#ifdef MMI_TSAN
  EACH_PAGE(p, bytes ? bytes : 1, MMI_TSAN_RELEASE);
#endif
#ifdef MMI_ASAN
  __asan_poison_memory_region(p, bytes);
#endif
  (void)p, (void)bytes;
}
#endif

void mmi_backing_trim(mmi_backing *b) {
  char name[64];
  snprintf(name, sizeof name, "arena.%u.purge", b->arena);
  (void)mallctl(name, NULL, NULL, NULL, 0);
}

uint64_t mmi_backing_allocated(const mmi_backing *b) {
  uint64_t sum = 0;
  for (int i = 0; i < 16; i++)
    sum += mm_load_relaxed_u64(&b->allocated[i].bytes);
  return (int64_t)sum < 0 ? 0 : sum;
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
  *allocated = mmi_backing_allocated(b);
  *active = arena_stat(b, "pactive") * page;
  *resident = arena_stat(b, "resident");
}

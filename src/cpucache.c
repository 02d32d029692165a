/*
 * cpucache.c -- per-CPU caches of freed blocks.
 *
 * The backing arena is used without jemalloc's thread caches (they would
 * mix the host's blocks with ours), so every arena call takes one of its
 * bin locks.  In front of it, each CPU has a small cache: for each size
 * class up to 16 KiB, a stack of up to 32 freed blocks, and at most
 * `bound` bytes in all.
 *
 *   cpu[i]: | busy | bytes | count[class] | slot[class][0..31] |
 *
 * The CPU is the one the calling thread runs on (sched_getcpu, which
 * glibc answers from the rseq area: a load, no system call).  A thread
 * may be moved to another CPU at any moment, so a cache is not private to
 * one thread: it is *claimed* with one CAS of its busy word (acquire) and
 * given back with a release store.  Nobody ever waits for a claimed
 * cache: a thread that finds it busy goes to the arena instead.  So the
 * common alloc and free touch one cache line that the CPU already owns
 * and take no lock; the cost of migration is a missed cache, never a wait.
 *
 * Blocks parked here are freed from the books but still allocated from
 * the arena, so allocated <= charged + ncpu * bound at every moment.  When
 * the budget is nearly used up the caller stops parking (blocks go
 * straight back to the arena), and drains the caches; mm_trim and
 * mm_destroy drain them too.
 */
#define _GNU_SOURCE /* sched_getcpu */
#include "cpucache.h"

#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

mm_status mmi_caches_init(mmi_cpu_caches *c, mmi_backing *b, uint64_t bound) {
  long n = sysconf(_SC_NPROCESSORS_CONF);
  c->ncpu = n < 1 ? 1 : n > 1024 ? 1024 : (unsigned)n;
  c->bound = bound;
  /* The arena's size classes up to MMI_CACHE_MAX_SIZE. */
  c->nclass = 0;
  size_t last = 0;
  for (size_t s = 8; s <= MMI_CACHE_MAX_SIZE; s += 8) {
    size_t cls = mmi_backing_size(b, s);
    if (cls != last) {
      if (c->nclass == MMI_CACHE_CLASSES)
        break;
      c->class_size[c->nclass++] = cls;
      last = cls;
    }
  }
  for (size_t i = 0, k = 0; i <= MMI_CACHE_MAX_SIZE / 8; i++) {
    size_t s = i ? i * 8 : 1;
    while (k < c->nclass && c->class_size[k] < s)
      k++;
    c->class_of[i] = (uint8_t)(k < c->nclass ? k : 0xff);
  }
  c->cpu = aligned_alloc(MM_CACHE_LINE, c->ncpu * sizeof *c->cpu);
  if (!c->cpu)
    return MM_ENOMEM;
  for (unsigned i = 0; i < c->ncpu; i++) {
    mm_store_relaxed_u32(&c->cpu[i].busy, 0);
    mm_store_relaxed_u64(&c->cpu[i].bytes, 0);
    for (unsigned k = 0; k < MMI_CACHE_CLASSES; k++)
      c->cpu[i].count[k] = 0;
  }
  return MM_OK;
}

void mmi_caches_fini(mmi_cpu_caches *c, mmi_backing *b) {
  mmi_caches_drain(c, b, true);
  free(c->cpu);
}

/* The class of @size, or -1 if it is not cached. */
static int class_of(const mmi_cpu_caches *c, size_t size) {
  if (size > MMI_CACHE_MAX_SIZE)
    return -1;
  uint8_t k = c->class_of[(size + 7) / 8];
  return k == 0xff ? -1 : k;
}

unsigned mmi_this_cpu(unsigned n) {
  int cpu = sched_getcpu(); /* glibc: a load from the rseq area */
  return (unsigned)(cpu < 0 ? 0 : cpu) % n;
}

static mmi_cpu_cache *claim_mine(mmi_cpu_caches *c) {
  mmi_cpu_cache *cc = &c->cpu[mmi_this_cpu(c->ncpu)];
  uint32_t free_ = 0;
  /* acquire: what the last holder parked is visible to us */
  return mm_cas_acquire_u32(&cc->busy, &free_, 1) ? cc : NULL;
}

static void unclaim(mmi_cpu_cache *cc) {
  mm_store_release_u32(&cc->busy, 0); /* publishes our changes */
}

void *mmi_cache_alloc(mmi_cpu_caches *c, mmi_backing *b, size_t size) {
  int k = class_of(c, size);
  mmi_cpu_cache *cc;
  if (k >= 0 && (cc = claim_mine(c)) != NULL) {
    void *p = NULL;
    if (cc->count[k]) {
      p = cc->slot[k][--cc->count[k]];
      mm_store_relaxed_u64(&cc->bytes,
                           mm_load_relaxed_u64(&cc->bytes) - c->class_size[k]);
    }
    unclaim(cc);
    if (p)
      return p;
  }
  return mmi_backing_alloc(b, size);
}

void mmi_cache_free(mmi_cpu_caches *c, mmi_backing *b, void *p, size_t size,
                    bool park) {
  int k = class_of(c, size);
  mmi_cpu_cache *cc;
  if (park && k >= 0 && (cc = claim_mine(c)) != NULL) {
    uint64_t bytes = mm_load_relaxed_u64(&cc->bytes);
    bool room =
        cc->count[k] < MMI_CACHE_DEPTH && bytes + c->class_size[k] <= c->bound;
    if (room) {
      cc->slot[k][cc->count[k]++] = p;
      mm_store_relaxed_u64(&cc->bytes, bytes + c->class_size[k]);
    }
    unclaim(cc);
    if (room)
      return;
  }
  mmi_backing_free(b, p, size);
}

void mmi_caches_drain(mmi_cpu_caches *c, mmi_backing *b, bool all) {
  for (unsigned i = 0; i < c->ncpu; i++) {
    mmi_cpu_cache *cc = &c->cpu[i];
    uint32_t free_ = 0;
    if (!mm_cas_acquire_u32(&cc->busy, &free_, 1)) {
      if (!all)
        continue; /* in use: never wait for it */
      while (free_ = 0, !mm_cas_acquire_u32(&cc->busy, &free_, 1))
        sched_yield(); /* mm_destroy: nobody else is here */
    }
    for (unsigned k = 0; k < c->nclass; k++)
      while (cc->count[k])
        mmi_backing_free(b, cc->slot[k][--cc->count[k]], c->class_size[k]);
    mm_store_relaxed_u64(&cc->bytes, 0);
    unclaim(cc);
  }
}

uint64_t mmi_caches_parked(const mmi_cpu_caches *c) {
  uint64_t sum = 0;
  for (unsigned i = 0; i < c->ncpu; i++)
    sum += mm_load_relaxed_u64(&c->cpu[i].bytes);
  return sum;
}

/*
 * cpucache.h -- per-CPU caches of freed blocks in front of the backing
 * arena.  See cpucache.c.
 */
#ifndef MM_CPUCACHE_H
#define MM_CPUCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "atomics/mm_atomic.h"
#include "backing.h"

#define MMI_CACHE_MAX_SIZE 16384 /* larger blocks always go to the arena */
#define MMI_CACHE_CLASSES  48
#define MMI_CACHE_DEPTH    32 /* blocks per class per CPU, at most */

typedef struct mmi_cpu_cache {
  _Alignas(MM_CACHE_LINE) mm_atomic_u32 busy; /* claimed by one CAS */
  mm_atomic_u64 bytes;                        /* parked here now */
  uint8_t count[MMI_CACHE_CLASSES];
  void *slot[MMI_CACHE_CLASSES][MMI_CACHE_DEPTH];
} mmi_cpu_cache;

typedef struct mmi_cpu_caches {
  unsigned ncpu;
  uint64_t bound; /* bytes per CPU, at most */
  unsigned nclass;
  size_t class_size[MMI_CACHE_CLASSES];
  uint8_t class_of[MMI_CACHE_MAX_SIZE / 8 + 1]; /* by (size + 7) / 8 */
  mmi_cpu_cache *cpu;                           /* [ncpu] */
} mmi_cpu_caches;

/* MM_ENOMEM if the caches cannot be allocated. */
mm_status mmi_caches_init(mmi_cpu_caches *c, mmi_backing *b, uint64_t bound);
void mmi_caches_fini(mmi_cpu_caches *c, mmi_backing *b); /* drains */

/* A block of @size bytes: from this CPU's cache, else from the arena. */
void *mmi_cache_alloc(mmi_cpu_caches *c, mmi_backing *b, size_t size);
/* Give a block back: to this CPU's cache unless @park is false, the
 * cache is full, or another thread holds it; else to the arena. */
void mmi_cache_free(mmi_cpu_caches *c, mmi_backing *b, void *p, size_t size,
                    bool park);
/* Give every parked block back to the arena (caches in use are skipped
 * unless @all, which the caller guarantees nobody else is using). */
void mmi_caches_drain(mmi_cpu_caches *c, mmi_backing *b, bool all);
/* The CPU the calling thread runs on now, modulo @n (it may move at any
 * moment: a hint for spreading, never a lock). */
unsigned mmi_this_cpu(unsigned n);

/* Bytes parked in all caches now. */
uint64_t mmi_caches_parked(const mmi_cpu_caches *c);

#endif /* MM_CPUCACHE_H */

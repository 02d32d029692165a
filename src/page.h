/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * page.h -- a storage page's record, shared by storage.c (registration,
 * pins, release) and evict.c (the victim set and eviction).
 */
#ifndef MM_PAGE_H
#define MM_PAGE_H

#include <stddef.h>
#include <stdint.h>

#include "atomics/mm_atomic.h"
#include "registry.h"

/* state = | RETIRED | PENDING | EVICTING | RELEASED | NOTIFIED | 0 ... |
 *         pins (0-31) |
 * RELEASED and NOTIFIED are set only beside EVICTING, and only one of
 * them: a release won the claimed page (no callback will run for it), or
 * the eviction committed to it (its callback runs; releases are too
 * late). */
#define PAGE_RETIRED   ((uint64_t)1 << 63)
#define PAGE_PENDING   ((uint64_t)1 << 62)
#define PAGE_EVICTING  ((uint64_t)1 << 61)
#define PAGE_RELEASED  ((uint64_t)1 << 60)
#define PAGE_NOTIFIED  ((uint64_t)1 << 59)
#define PAGE_PINS_MASK ((uint64_t)UINT32_MAX)

typedef struct mmi_page {
  /* What a pin and an unpin through a handle touch, first: records are
   * allocated on cache-line boundaries (mmi_meta_alloc), so these share
   * one line, and a handle's pin costs one line where the lookup by id
   * touches the node too. */
  mm_atomic_u64 state;      /* every decision about the page: one CAS */
  struct mm *mm;            /* its manager (set when it is reserved) */
  uint64_t bytes;           /* as charged: a multiple of page_size */
  void *data;               /* NULL: accounting-only */
  mm_atomic_u64 last_use;   /* LRU clock at its last pin (sampled LRU) */
  mm_atomic_u32 refs;       /* the page table's while it links the record,
                               and one per handle (mm_page_alloc); the
                               last one retires it through RCU */
  uint32_t slot;            /* its place in the victim set, while live */
  mmi_node node;            /* key: the page id */
  size_t data_size;         /* what data was allocated with */
  bool unsettled;           /* its bytes count as unsettled until it is
                               live (its owner's: see mmi_unsettled_add) */
  struct mmi_page *claimed; /* the evictor's list of claimed pages */
} mmi_page;

_Static_assert(offsetof(mmi_page, node) <= MM_CACHE_LINE,
               "a handle's pin touches one cache line of the record");

#endif /* MM_PAGE_H */

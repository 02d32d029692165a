/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stats.h -- event counters that many threads bump without sharing a
 * cache line.
 */
#ifndef MM_STATS_H
#define MM_STATS_H

#include <stdint.h>

#include "atomics/mm_atomic.h"

typedef enum mmi_counter {
  MMI_GRANTED,
  MMI_DECLINED,
  MMI_HELD,
  MMI_HELD_NOW,
  MMI_HELD_GRANTED,
  MMI_TIMED_OUT,
  MMI_CANCELLED,
  MMI_EVICTIONS,
  MMI_EVICTED_BYTES,
  MMI_PINNED_BYTES,
  MMI_STORAGE_PAGES,
  MMI_EXEC_IDS,
  MMI_RECLAIMS,
  MMI_RECLAIMED_BYTES,
  MMI_RECLAIM_NS,
  MMI_NCOUNTERS
} mmi_counter;

/* Enough stripes that threads rarely share one; each a whole number of
 * cache lines. */
#define MMI_STRIPES 64

typedef struct mmi_stripe {
  _Alignas(MM_CACHE_LINE) mm_atomic_u64 c[MMI_NCOUNTERS];
} mmi_stripe;

typedef struct mmi_counters {
  mmi_stripe stripe[MMI_STRIPES];
} mmi_counters;

void mmi_counters_init(mmi_counters *cs);

/* Add @delta (a decrement is the two's complement of its size) to the
 * calling thread's stripe.  Relaxed: counters order nothing. */
void mmi_count_add(mmi_counters *cs, mmi_counter c, uint64_t delta);

static inline void mmi_count_sub(mmi_counters *cs, mmi_counter c,
                                 uint64_t delta) {
  mmi_count_add(cs, c, (uint64_t)0 - delta);
}

/* The sum over stripes: exact once nothing is counting. */
uint64_t mmi_count_sum(const mmi_counters *cs, mmi_counter c);

/* The same for a counter that goes up and down: while threads are
 * counting, a decrement may be summed before its increment, so a sum below
 * zero reads as zero. */
uint64_t mmi_count_gauge(const mmi_counters *cs, mmi_counter c);

/* The stripe the calling thread counts on (dealt on first use). */
uint32_t mmi_stripe_of_thread(void);

#endif /* MM_STATS_H */

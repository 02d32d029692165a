/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stats.c -- striped event counters.
 *
 * A shared atomic counter bumped on every acquire would be the one cache
 * line all cores fight over.  Instead each manager keeps MMI_STRIPES
 * stripes of counters, each stripe on its own cache lines, and a thread
 * always bumps the stripe it was given on its first count (threads are
 * dealt stripes round-robin, so up to MMI_STRIPES threads share none).
 * Reading a counter sums the stripes.  Decrements are added as two's
 * complement, so a stripe may hold a "negative" value; the sum modulo
 * 2^64 is still exact.
 *
 *   stripe[0]  | granted | declined | ... | exec_ids |  (128 bytes)
 *   stripe[1]  | granted | declined | ... | exec_ids |
 *   ...
 *
 * Counters order nothing, so every access is relaxed.
 */
#include "stats.h"

static mm_atomic_u32 next_stripe;
static MM_THREAD_LOCAL uint32_t my_stripe_plus1; /* 0: not dealt yet */

uint32_t mmi_stripe_of_thread(void) {
  if (my_stripe_plus1 == 0)
    my_stripe_plus1 = mm_faa_relaxed_u32(&next_stripe, 1) % MMI_STRIPES + 1;
  return my_stripe_plus1 - 1;
}

void mmi_counters_init(mmi_counters *cs) {
  for (int s = 0; s < MMI_STRIPES; s++)
    for (int c = 0; c < MMI_NCOUNTERS; c++)
      mm_store_relaxed_u64(&cs->stripe[s].c[c], 0);
}

void mmi_count_add(mmi_counters *cs, mmi_counter c, uint64_t delta) {
  mm_faa_relaxed_u64(&cs->stripe[mmi_stripe_of_thread()].c[c], delta);
}

uint64_t mmi_count_gauge(const mmi_counters *cs, mmi_counter c) {
  int64_t v = (int64_t)mmi_count_sum(cs, c);
  return v < 0 ? 0 : (uint64_t)v;
}

uint64_t mmi_count_sum(const mmi_counters *cs, mmi_counter c) {
  uint64_t sum = 0;
  for (int s = 0; s < MMI_STRIPES; s++)
    sum += mm_load_relaxed_u64(&cs->stripe[s].c[c]);
  return sum;
}

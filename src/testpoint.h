/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * testpoint.h -- named points on slow paths where a test may stop the
 * calling thread, to open a race window on purpose and make a rare
 * interleaving certain.
 *
 * No hook is installed outside the tests: each point is then one relaxed
 * load and a branch not taken, and every point sits on a path that
 * already costs far more (an eviction, a held request, a credit
 * reclaim).  The hook is process-wide; tests install it with
 * mmi_test_set_hook and filter on the manager and the point.
 */
#ifndef MM_TESTPOINT_H
#define MM_TESTPOINT_H

#include <stdatomic.h>
#include <stdint.h>

struct mm;

typedef enum mmi_tp {
  MMI_TP_EVICT_RESERVED, /* an eviction charged what was free, before it
                            claims anything */
  MMI_TP_EVICT_CLAIMED,  /* an eviction claimed one more victim */
  MMI_TP_SPARE_TAKEN,    /* a reclaim took consumers' spare quota, before
                            it gives the bytes back to the pool word */
  MMI_TP_CHARGE_FAILED,  /* a new page's charge failed, before its bytes
                            stop counting as unsettled */
  MMI_TP_HELD_GRANTED,   /* a blocking alloc call was granted after being
                            held, before it makes its block or page */
  MMI_TP_GRANT_BLOCK,    /* a pass made the block for a held alloc request
                            it evicts for, before it commits the grant */
  MMI_TP_OWN_LINKING     /* an exec id's new own consumer is among the id's
                            consumers, before it is linked by the id */
} mmi_tp;

typedef void (*mmi_tp_fn)(struct mm *mm, mmi_tp where);

extern _Atomic(mmi_tp_fn) mmi_tp_hook;

/* Tests only: call @fn at every test point from now on (NULL: none). */
void mmi_test_set_hook(mmi_tp_fn fn);

/* Tests only: is no dispatch pass running or owed (the baton is down and
 * the last pass saw every kick), and no held request asking consumers to
 * give memory back?  Then the count of kicks so far, which a
 * caller compares before and after looking at the manager; else
 * UINT64_MAX.  Passes start only from kicks: calls, deadlines. */
uint64_t mmi_test_quiet(struct mm *mm);

static inline void mmi_test_point(struct mm *mm, mmi_tp where) {
  mmi_tp_fn fn = atomic_load_explicit(&mmi_tp_hook, memory_order_relaxed);
  if (__builtin_expect(fn != NULL, 0))
    fn(mm, where);
}

#endif /* MM_TESTPOINT_H */

/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * held.h -- requests that wait: blocking acquires with deadlines,
 * asynchronous acquires with callbacks, cancellation.  See held.c.
 */
#ifndef MM_HELD_H
#define MM_HELD_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "atomics/mm_atomic.h"
#include "memory_manager.h"
#include "queue.h"
#include "registry.h"

typedef struct mmi_waiter mmi_waiter;
struct mmi_page;
struct mmi_grant;

typedef struct mmi_held {
  /* Read by every acquire and release: held requests now, per pool, and
   * the bars the last pass set (a starved request bars younger ones) or
   * foresaw (the time a held request will starve).
   * Written only when a request starts or stops being held, or a bar
   * changes. */
  _Alignas(MM_CACHE_LINE) mm_atomic_u64 count[2];
  /* Use is, or may be, past the budget (resize.c: shrinks settling, and
   * one that timed out): spare quota is not used, and every release and
   * unpin kicks a pass.  Beside the counts: read with them, summed. */
  mm_atomic_u64 over;
  mm_atomic_u32 blocked[2]; /* barred by a starved request */
  mm_atomic_u64 bar_at[2];  /* when a held request will starve and bar */

  /* The dispatch baton and the work notes left for its holder. */
  _Alignas(MM_CACHE_LINE) mm_atomic_u32 baton;
  mm_atomic_u64 pending;
  mm_atomic_u64 passed;        /* pending as the last complete pass saw it */
  mm_atomic_u32 service_waits; /* the service thread sleeps until the
                                  baton is put down */

  /* Arrivals, in order; drained into the baton holder's private list. */
  _Alignas(MM_CACHE_LINE) mmi_queue arrivals;
  mmi_waiter *head, *tail; /* owned by the baton holder */

  /* The service thread: callbacks and asynchronous deadlines. */
  _Alignas(MM_CACHE_LINE) mmi_stack done;
  mmi_stack reclaims;         /* asynchronous requests whose consumers to ask */
  mm_atomic_u64 asking;       /* held requests asking consumers now */
  mm_atomic_u32 budget_waits; /* shrinks waiting for use to fit */
  mm_atomic_u32 budget_seq;   /* futex word: bumped after each pass while
                                 a shrink waits */
  int64_t tick_at;            /* the service thread's next periodic work
                                 (resize.c), its own */
  mm_atomic_u32 service_seq;  /* futex word: bumped on new work */
  mm_atomic_u64 next_deadline;
  mm_atomic_u32 stopping;
  pthread_t service;

  mm_atomic_u32 destroying;
  mm_atomic_u64 inside; /* threads inside the hold path or asleep in it */
  mm_atomic_u64 next_ticket;
  mmi_registry *tickets; /* ticket -> waiter, for mm_cancel */
  int64_t overtake_limit_ns;
} mmi_held;

mm_status mmi_held_init(mm_t *mm);
/* Cancel every held request, deliver every callback, stop the service
 * thread, wait for blocked callers to leave.  For mm_destroy. */
void mmi_held_shutdown(mm_t *mm);

/* May a new request of @pool with @timeout_ns try to charge now, or must
 * it queue behind held ones? */
bool mmi_held_may_take_now(mm_t *mm, mm_pool pool, int64_t timeout_ns);

/*
 * The one door for news that can make a held request fit.  Every event
 * that returns capacity to the pools or makes a page evictable again
 * passes through it: the pool word's uncharges and hand-overs
 * (mmi_give_back, mmi_hand_over), an unpin that drops the last pin, an
 * eviction's claim given back (mmi_page_unclaim), a protected-floor
 * reservation given back, a drop of unsettled storage (which a page going
 * live makes), credit parked on a CPU.  Call it after the event's own
 * writes; it makes sure a dispatch pass that starts after them runs if
 * any request is held (docs/DESIGN.md 3.7 has the rule and its proof).
 */
void mmi_held_news(mm_t *mm);

/* Put budget @total in force (pool.c: mmi_pool_set_budget; resizes are
 * serialised by the caller): a shrink's withheld storage is unsettled
 * before it is charged (evict.c).  Then, outside the caller's lock (a
 * pass may run eviction callbacks), mmi_budget_applied: the news (a grow
 * returns capacity; after a shrink a pass ends what can no longer be
 * granted). */
void mmi_budget_apply(mm_t *mm, uint64_t total);
void mmi_budget_applied(mm_t *mm);

/* Is the calling thread the manager's service thread (asynchronous
 * callbacks, periodic work)? */
bool mmi_on_service_thread(mm_t *mm);

/* Return @bytes that an earlier charge of @pool took, and tell held
 * requests: the only way bytes are uncharged from the pool word. */
void mmi_give_back(mm_t *mm, mm_pool pool, uint64_t bytes);

/* Evicted pages change hands: storage use drops by @out and @pool gains
 * @in (<= @out), in one CAS; the excess, if any, is news. */
void mmi_hand_over(mm_t *mm, mm_pool pool, uint64_t out, uint64_t in);

/* A blocking alloc call that was held is counted inside the manager until
 * its block or page is made: it calls this as its last touch of @mm, so
 * that mm_destroy cannot free the manager under it. */
void mmi_held_leave(mm_t *mm);

/*
 * Hold a request that did not fit.  For storage, @page is its reserved
 * (pending) record, already published; with @grant (blocking callers
 * only) the grant leaves it pending (charged) for the caller to make live,
 * an execution grant records the incarnation it charged, a grant by
 * eviction makes the block first (grant->block_size), and the caller
 * stays counted inside until mmi_held_leave (grant->inside).
 * Asynchronous (@cb set): returns MM_EINPROGRESS and sets *@ticket, or
 * MM_ENOMEM.  Blocking: returns the outcome after waiting.  Called in a read
 * section for an asynchronous request; outside one for a blocking request (it
 * sleeps).
 */
mm_status mmi_held_hold(mm_t *mm, mm_pool pool, uint64_t id, uint64_t bytes,
                        int64_t timeout_ns, struct mmi_page *page,
                        struct mmi_grant *grant, mm_grant_fn cb, void *ctx,
                        uint64_t *ticket);

mm_status mmi_held_cancel(mm_t *mm, uint64_t ticket);

#endif /* MM_HELD_H */

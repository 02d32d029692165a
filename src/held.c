/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * held.c -- requests that wait for memory.
 *
 * A request that does not fit, and whose caller is willing to wait, is
 * *held*: it becomes a waiter, joins a lock-free queue, and is granted in
 * full when memory is returned, or ends at its deadline, by mm_cancel, or
 * by mm_destroy.  Every waiter ends exactly once.
 *
 * Data structure
 *
 *    arrivals (ck_fifo_mpmc)      private list (baton holder's)
 *    new waiters, any thread  ->  oldest ........................ newest
 *                                 [w1 exec 8M][w2 stor 4K][w3 exec 64K]
 *
 *    done (Treiber stack)  finished asynchronous waiters -> the service
 *                          thread, which runs their callbacks (and keeps
 *                          their deadlines).
 *
 * A waiter's whole fate is one 32-bit state word, changed once, by CAS,
 * from WAITING to GRANTED, TIMED_OUT or CANCELLED.  Whoever wins that CAS
 * finishes the request (books it, counts it, tells its owner); everyone
 * else leaves it alone.  That is why a cancel racing with a grant, or a
 * deadline racing with either, has exactly one outcome.
 *
 * Dispatch
 *
 * Deciding who gets returned memory is done in passes over the waiters in
 * arrival order.  One thread at a time makes a pass: the holder of the
 * dispatch *baton*.  Nobody ever waits for the baton.  A thread with news
 * for the dispatcher (memory returned, a waiter added or gone) bumps
 * `pending` and tries to take the baton; if another thread holds it, the
 * news is left for that thread, which re-reads `pending` after putting the
 * baton down and makes another pass if it moved:
 *
 *     kick:  pending++ ; if CAS(baton 0->1): do { seen = pending; pass;
 *            baton = 0 } while (pending != seen && CAS(baton 0->1))
 *
 * (The increment, the baton's release and the holder's re-read are
 * sequentially consistent: either the re-read sees our increment, or our
 * CAS, after our increment, finds the baton down and we pass ourselves.
 * No news is lost.)
 *
 * A pass grants each waiter that fits, oldest first: charge the pool, then
 * CAS the waiter's state to GRANTED (the commit point; if the CAS loses to
 * a deadline or a cancel, the charge is returned).  A waiter that does not
 * fit is passed over -- a smaller, younger one may be granted before it --
 * unless it has been waiting longer than the overtake limit: then it is
 * *starved*, and nothing younger that competes for its bytes is granted
 * until it is (its pool; and the other pool too when it could borrow from
 * it: always for execution, for storage with storage_may_borrow).
 *
 * New arrivals respect held requests: a request that may wait queues
 * behind held ones of its pool instead of charging directly; a request
 * that may not wait first lets a pass run (so held requests get first pick
 * of what is free; best effort if another thread is passing) and may then
 * charge only if no starved request bars its pool.
 *
 * Why no wake-up is lost
 *
 * A waiter that fits must be granted promptly.  Every event that can make
 * a waiter fit is followed by a complete pass that starts after it.
 * Waiters arriving and ending kick directly.  Every event that returns
 * capacity or makes a page evictable goes through one door,
 * mmi_held_news (below), which the primitives making such events call
 * themselves -- the pool word's uncharges are not even visible outside
 * this file (mmi_give_back, mmi_hand_over) -- so no call site can forget
 * it.  The door skips the kick when it reads "no held requests"; a
 * seq_cst fence on each side (F_event in the door, F_pass at the start of
 * every pass) makes that safe: either the pass that follows a waiter's
 * arrival sees the event, or the door sees the waiter and kicks.
 * (docs/DESIGN.md 3.7 has the list of events and the proof.)
 *
 * Threads
 *
 * Blocking callers sleep on a futex in their own waiter (no shared lock,
 * no shared condition variable) and are woken by the pass that granted
 * them, or wake at their deadline and try to time themselves out.
 * Asynchronous callbacks run on one service thread per manager, one at a
 * time, in the order their outcomes were handed over; it also wakes at
 * the earliest asynchronous deadline, so deadlines hold even if nothing is
 * ever released again (and, if another thread holds the baton then, it
 * sleeps until that thread puts it down and passes).  A waiter is freed
 * through RCU once its owner, the queue and the ticket table have all let
 * go of it (a reference count).
 */
/* The door is the one caller of the pool's uncharges. */
#define MMI_POOL_GIVE_BACK
#include "held.h"

#include <assert.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "atomics/mm_futex.h"
#include "mm_internal.h"

enum { W_WAITING, W_GRANTED, W_TIMED_OUT, W_CANCELLED, W_FAILED };

/* A held execution request's reclaim (reclaim.c), one word: it will ask
 * consumers (PENDING: with reclaim_before_evict no eviction is made for
 * it yet), is asking them (ASKING), or is done asking or never will
 * (NONE).  While ASKING it bars younger requests as a starved request
 * does: what the callbacks release as they run is its. */
enum { R_NONE, R_PENDING, R_ASKING };
#define OUTCOME_PENDING UINT32_MAX

struct mmi_waiter {
  mmi_node node;         /* ticket table record (key: ticket); first */
  mm_atomic_u32 state;   /* W_*: the one word that decides the outcome */
  mm_atomic_u32 outcome; /* futex word: OUTCOME_PENDING, then an mm_status */
  mm_atomic_u32 refs;    /* owner + queue (+ ticket table) */
  mm_pool pool;
  uint64_t id, bytes;
  int64_t arrival_ns, deadline_ns;
  mm_grant_fn cb; /* NULL: a blocking caller owns this waiter */
  void *ctx;
  bool ticketed;
  mmi_grant *grant;          /* real memory: what the blocking caller needs;
                                the caller's, so touched only by the winner
                                of the state CAS (before the outcome) */
  uint64_t block_size;       /* grant->block_size, read while it was ours */
  struct mm_consumer *spare; /* execution: a record for the grant to
                                credit, if the exec id has none */
  struct mmi_page *page;     /* storage: the reserved (pending) page */
  struct mm_consumer *asker; /* execution: the requesting consumer (a
                                handle's, blocking; NULL by exec id),
                                whom its reclaim does not ask */
  mm_atomic_u32 reclaim;     /* R_*: its reclaim, if it makes one */
  bool external;             /* mm_external_set's growth: nobody's books */
  uint64_t kicked;           /* pending after the kick that queued it: a
                                pass that saw it has tried this one */
  mmi_waiter *next;          /* private list link, baton holder's */
  mmi_stack_link done;       /* link in the done stack */
  mmi_stack_link asks;       /* asynchronous: link in the reclaims stack */
};

/* ---- waiter life ------------------------------------------------------ */

static void waiter_put(mmi_waiter *w) {
  /* acq_rel: the last holder sees every other holder's writes. */
  if (mm_faa_acq_rel_u32(&w->refs, (uint32_t)-1) != 1)
    return;
  if (w->spare)
    mmi_consumer_spare_free(w->spare);
  mmi_rcu_retire(&w->node); /* the pass or mm_cancel may still look */
}

/* Tell the service thread there is work (a callback, a nearer deadline). */
static void service_poke(mmi_held *h) {
  mm_faa_acq_rel_u32(&h->service_seq, 1);
  mm_futex_wake_all(&h->service_seq);
}

/* The outcome is decided and booked: let the owner know. */
static void deliver(mm_t *mm, mmi_waiter *w, mm_status st) {
  mmi_held *h = &mm->held;
  if (!w->cb) {
    /* release: the woken caller sees the grant's books complete */
    mm_store_release_u32(&w->outcome, (uint32_t)st);
    mm_futex_wake_all(&w->outcome);
    return;
  }
  mm_store_relaxed_u32(&w->outcome, (uint32_t)st); /* the push publishes */
  if (w->ticketed) {
    mmi_rcu_read_lock();
    if (mmi_registry_remove(h->tickets, &w->node))
      waiter_put(w); /* the ticket table's reference */
    mmi_rcu_read_unlock();
  }
  mmi_stack_push(&h->done, &w->done);
  service_poke(h);
}

static void finish_ended(mm_t *mm, mmi_waiter *w, mm_status st);

/* The winner of WAITING -> GRANTED: the pool is already charged.  An
 * execution grant is credited to its consumer: the one the caller named
 * (w->grant is ours now), else the exec id's own, made from the spare
 * record if the id has none.  A consumer handle closed while its request
 * was held cannot take it: the charge goes back and the request ends as
 * cancelled. */
static void finish_granted(mm_t *mm, mmi_waiter *w) {
  mmi_rcu_read_lock();
  if (w->pool == MM_POOL_EXECUTION && !w->external) {
    struct mm_consumer *c = w->grant ? w->grant->consumer : NULL;
    uint32_t key = 0;
    if (c && mmi_consumer_credit(c, w->bytes))
      key = (uint32_t)c->node.key;
    else if (!c || c->dflt)
      key = mmi_exec_credit(mm, w->id, w->bytes, &w->spare);
    if (!key) {
      /* A closed handle, or (with the spare lost to a racing creation of
       * the id's own, that was closed in turn) no memory for the id's. */
      mmi_rcu_read_unlock();
      mmi_give_back(mm, MM_POOL_EXECUTION, w->bytes);
      if (w->grant && w->grant->block) {
        mmi_block_free(&mm->caches, w->grant->block, w->block_size);
        w->grant->block = NULL;
      }
      finish_ended(mm, w,
                   c && !c->dflt && mmi_consumer_refusal(c) == MM_EINVAL
                       ? MM_ECANCELED
                       : MM_ENOMEM);
      return;
    }
    if (w->grant)
      w->grant->key = key;
  } else if (!w->grant) { /* else the caller gives it memory first */
    mmi_page_activate(mm, w->page, 0);
  }
  mmi_rcu_read_unlock();
  mm_faa_seq_cst_u64(&mm->held.count[w->pool], (uint64_t)-1);
  mmi_count(mm, MMI_GRANTED, 1);
  mmi_count(mm, MMI_HELD_GRANTED, 1);
  mmi_uncount(mm, MMI_HELD_NOW, 1);
  deliver(mm, w, MM_OK);
}

/* The winner of WAITING -> TIMED_OUT, CANCELLED or FAILED (the allocator
 * failed for a grant by eviction), or a grant its consumer could not take:
 * nothing is charged. */
static void finish_ended(mm_t *mm, mmi_waiter *w, mm_status st) {
  if (w->page) {
    mmi_rcu_read_lock();
    mmi_page_abandon(mm, w->page);
    mmi_rcu_read_unlock();
  }
  mm_faa_seq_cst_u64(&mm->held.count[w->pool], (uint64_t)-1);
  mmi_count(mm,
            st == MM_ETIMEDOUT   ? MMI_TIMED_OUT
            : st == MM_ECANCELED ? MMI_CANCELLED
                                 : MMI_DECLINED,
            1);
  mmi_uncount(mm, MMI_HELD_NOW, 1);
  deliver(mm, w, st);
}

/* Try to end @w with @st (a deadline or a cancel); true if this call did. */
static bool try_end(mm_t *mm, mmi_waiter *w, uint32_t to, mm_status st) {
  uint32_t expect = W_WAITING;
  /* Commit point of a deadline or a cancel. */
  if (!mm_cas_acq_rel_u32(&w->state, &expect, to))
    return false;
  finish_ended(mm, w, st);
  return true;
}

/* ---- dispatch --------------------------------------------------------- */

/* The passes running on this thread, innermost first (a pass's eviction
 * callbacks may call into another manager, which may pass too). */
struct pass_frame {
  const mm_t *mm;
  struct pass_frame *outer;
};
static MM_THREAD_LOCAL struct pass_frame *passing;

static bool in_pass_of(const mm_t *mm) {
  for (struct pass_frame *f = passing; f; f = f->outer)
    if (f->mm == mm)
      return true;
  return false;
}

/* The grant of a held request that an eviction makes room for: committed
 * after the victims are claimed, before any is evicted.  A request for
 * real memory gets its block here, first: if the allocator fails, the
 * request ends with MM_ENOMEM and the eviction backs out, having evicted
 * nothing. */
struct grant_commit {
  mm_t *mm;
  mmi_waiter *w;
};

static bool commit_grant(void *arg) {
  struct grant_commit *gc = arg;
  mmi_waiter *w = gc->w;
  void *block = NULL;
  /* Not w->grant: until the CAS below is won, its caller may time out and
   * return, and the grant lives on its stack. */
  if (w->block_size &&
      !(block = mmi_block_alloc(&gc->mm->caches, w->block_size))) {
    (void)try_end(gc->mm, w, W_FAILED, MM_ENOMEM);
    return false;
  }
  if (block)
    mmi_test_point(gc->mm, MMI_TP_GRANT_BLOCK);
  uint32_t expect = W_WAITING;
  /* Commit point of a grant by eviction (see dispatch_pass). */
  if (!mm_cas_acq_rel_u32(&w->state, &expect, W_GRANTED)) {
    if (block)
      mmi_block_free(&gc->mm->caches, block, w->block_size);
    return false;
  }
  if (block)
    w->grant->block = block; /* ours now; deliver's release publishes */
  return true;
}

/* Try to grant @w by evicting unpinned pages; the eviction callbacks run
 * here, on the dispatching thread.  @no_room_from[pool] is the smallest
 * request an eviction already failed for in this pass: larger ones are
 * not tried again. */
static mmi_evict_result pass_evict(mm_t *mm, mmi_waiter *w,
                                   uint64_t no_room_from[2]) {
  if (mm->cfg.reclaim_before_evict) {
    uint32_t rs = mm_load_acquire_u32(&w->reclaim);
    if (rs == R_PENDING || rs == R_ASKING)
      return MMI_EVICT_NO_ROOM; /* consumers are asked first */
  }
  if (w->bytes >= no_room_from[w->pool] || mmi_in_evict_callback(mm) ||
      mmi_pool_storage_used(&mm->pool) == 0)
    return MMI_EVICT_NO_ROOM;
  bool gained;
  struct grant_commit gc = {mm, w};
  mmi_rcu_read_lock();
  mmi_evict_result r =
      mmi_evict_charge(mm, w->pool, w->bytes, commit_grant, &gc, &gained);
  mmi_rcu_read_unlock();
  if (r == MMI_EVICT_NO_ROOM)
    no_room_from[w->pool] = w->bytes;
  /* Whole pages freed more than this request needed, or a callback
   * released or unpinned pages: an older waiter passed over may fit now.
   * (What an eviction gives back -- its claims, its reservation -- only
   * restores what the waiters before this one saw: no news for this pass,
   * and mmi_held_news does not make it pass again.) */
  if (gained)
    mm_faa_seq_cst_u64(&mm->held.pending, 1);
  return r;
}

enum { TRY_GRANTED, TRY_ENDED, TRY_NO_FIT, TRY_NO_SHARE };

/* With fair_share: is @w within its consumer's share (and *@first, is its
 * consumer below half of it)? */
static bool within_share(mm_t *mm, mmi_waiter *w, bool *first) {
  if (first)
    *first = false;
  if (w->pool != MM_POOL_EXECUTION || !mm->cfg.fair_share || w->external)
    return true;
  mmi_rcu_read_lock();
  /* Still waiting, read inside the section: its owner has not ended it
   * and left, so its consumer cannot be freed before the section ends.
   * (One that ended is left to try_grant, whose CAS finds it so.) */
  bool ok = mm_load_acquire_u32(&w->state) != W_WAITING ||
            mmi_fair_share_allows(mm, w->asker, w->id, w->bytes, first);
  mmi_rcu_read_unlock();
  return ok;
}

/* Grant @w now if it fits: from free memory, or by eviction.  Baton
 * held.  Returns TRY_GRANTED (booked and delivered), TRY_ENDED (a deadline,
 * a cancel or the allocator ended it meanwhile), TRY_NO_FIT, or
 * TRY_NO_SHARE (fair_share: past its consumer's share). */
static int try_grant(mm_t *mm, mmi_waiter *w, uint64_t no_room_from[2]) {
  int r;
  /* Too large for the budget in force ever to grant (it shrank): ended,
   * rather than barring younger requests until a grow. */
  if (w->bytes > mmi_pool_most_now(&mm->pool, w->pool)) {
    (void)try_end(mm, w, W_FAILED, MM_ENOMEM);
    return TRY_ENDED;
  }
  if (!within_share(mm, w, NULL))
    return TRY_NO_SHARE; /* until its share grows: bars nobody */
  /* (A storage waiter's charge is unsettled until its page is live: the
   * protected floor must not count it; evict.c.) */
  if (w->pool == MM_POOL_STORAGE
          ? mmi_charge_new_page(mm, w->bytes)
          : mmi_pool_charge(&mm->pool, w->pool, w->bytes)) {
    uint32_t expect = W_WAITING;
    /* Commit point of a grant: the charge is this waiter's iff this CAS
     * wins; a deadline or cancel that won first gets nothing. */
    if (mm_cas_acq_rel_u32(&w->state, &expect, W_GRANTED)) {
      r = TRY_GRANTED;
    } else {
      mmi_give_back(mm, w->pool, w->bytes); /* its ender kicks */
      if (w->pool == MM_POOL_STORAGE)
        mmi_unsettled_sub(mm, w->bytes); /* after the charge went back */
      r = TRY_ENDED;
    }
  } else {
    mmi_evict_result e = pass_evict(mm, w, no_room_from);
    r = e == MMI_EVICT_DONE         ? TRY_GRANTED
        : e == MMI_EVICT_BACKED_OUT ? TRY_ENDED
                                    : TRY_NO_FIT;
  }
  if (r == TRY_GRANTED) {
    if (w->page)
      w->page->unsettled = true; /* settled when the page goes live */
    finish_granted(mm, w);
  }
  return r;
}

/* Decide what can be decided now; baton held. */
static void dispatch_pass(mm_t *mm) {
  mmi_held *h = &mm->held;
  void *item;

  /* F_pass: every read this pass makes comes after it.  With F_event in
   * mmi_held_news: either this pass sees an event, or the event's thread
   * sees the waiters counted in before this pass (DESIGN.md 3.7). */
  mm_fence_seq_cst();

  mmi_rcu_read_lock();
  while (mmi_queue_pop(&h->arrivals, &item)) {
    mmi_waiter *w = item;
    w->next = NULL;
    if (h->tail)
      h->tail->next = w;
    else
      h->head = w;
    h->tail = w;
  }
  mmi_rcu_read_unlock();

  /* Quota parked in consumers is charged but held by nobody: give it back
   * first, so that the waiters see all the memory there is.  Blocks
   * parked in the allocator's caches go back to the arena too: memory is
   * short while anyone waits. */
  if (h->head) {
    (void)mmi_consumers_reclaim(mm);
    mmi_tcaches_squeeze(&mm->caches, true);
  }

  int64_t now = mm_now_ns(), next_deadline = MM_FOREVER_NS;
  /* After an eviction fails for a request, none is tried for requests as
   * large in the same pool in this pass (a failed one is costly). */
  uint64_t no_room_from[2] = {UINT64_MAX, UINT64_MAX};
  /* With fair_share, a consumer below half its share goes first, before
   * any other and past any bar (Spark's 1/2N); the loop below then only
   * unlinks those granted here. */
  if (mm->cfg.fair_share)
    for (mmi_waiter *f = h->head; f; f = f->next) {
      bool first;
      if (mm_load_acquire_u32(&f->state) == W_WAITING &&
          !(f->cb && f->deadline_ns <= now) && within_share(mm, f, &first) &&
          first)
        (void)try_grant(mm, f, no_room_from);
    }
  bool blocked[2] = {false, false};
  int64_t bar_at[2] = {MM_FOREVER_NS, MM_FOREVER_NS};
  mmi_waiter *prev = NULL, *w = h->head;
  while (w) {
    mmi_waiter *next = w->next;
    bool done = true;
    int tried;
    if (mm_load_acquire_u32(&w->state) != W_WAITING) {
      /* ended by its own deadline or a cancel: only unlink it */
    } else if (w->cb && w->deadline_ns <= now) {
      (void)try_end(mm, w, W_TIMED_OUT, MM_ETIMEDOUT);
    } else if (blocked[w->pool]) {
      done = false;
    } else if ((tried = try_grant(mm, w, no_room_from)) == TRY_NO_SHARE) {
      done = false; /* waits for its share, not for memory: no bar */
    } else if (tried == TRY_NO_FIT) {
      /* Does not fit.  Once starved, nothing younger that competes for
       * its bytes goes first: its pool, and the other pool too when it may
       * borrow from it (execution always; storage with
       * storage_may_borrow).  Until then, note when it will starve. */
      done = false;
      bool both = w->pool == MM_POOL_EXECUTION || mm->cfg.storage_may_borrow;
      int64_t starves_at = w->arrival_ns > MM_FOREVER_NS - h->overtake_limit_ns
                               ? MM_FOREVER_NS
                               : w->arrival_ns + h->overtake_limit_ns;
      if (mm_load_acquire_u32(&w->reclaim) == R_ASKING)
        starves_at = now; /* memory its callbacks free is its own */
      for (int p = 0; p < 2; p++) {
        if (p != (int)w->pool && !both)
          continue;
        if (starves_at <= now)
          blocked[p] = true;
        else if (starves_at < bar_at[p])
          bar_at[p] = starves_at;
      }
    }

    if (done) {
      if (prev)
        prev->next = next;
      else
        h->head = next;
      if (h->tail == w)
        h->tail = prev;
      waiter_put(w); /* the queue's reference */
    } else {
      if (w->cb && w->deadline_ns < next_deadline)
        next_deadline = w->deadline_ns;
      prev = w;
    }
    w = next;
  }

  /* A shrink left use past the budget: what is over goes first. */
  if (mm_load_acquire_u32(&mm->budget_over) && mmi_budget_pass(mm))
    mm_faa_seq_cst_u64(&h->pending, 1);

  for (int p = 0; p < 2; p++) { /* written only on change: arrivals read */
    if (mm_load_relaxed_u32(&h->blocked[p]) != blocked[p])
      mm_store_release_u32(&h->blocked[p], blocked[p]);
    if ((int64_t)mm_load_relaxed_u64(&h->bar_at[p]) != bar_at[p])
      mm_store_release_u64(&h->bar_at[p], (uint64_t)bar_at[p]);
  }
  /* The service thread sleeps until the earliest asynchronous deadline. */
  uint64_t old = mm_fas_seq_cst_u64(&h->next_deadline, (uint64_t)next_deadline);
  if ((int64_t)old > next_deadline)
    service_poke(h);
}

/* Leave news for the dispatcher and, if nobody holds the baton, dispatch. */
/* Returns the count of news after ours: a pass that sees that many (its
 * `passed`) began after it. */
static uint64_t kick(mm_t *mm) {
  mmi_held *h = &mm->held;
  if (mmi_in_evict_callback(mm)) /* its pass may not evict: kick later */
    mmi_evict_note_gain(mm);
  uint64_t ours = mm_faa_seq_cst_u64(&h->pending, 1) + 1;
  for (;;) {
    uint32_t down = 0;
    /* seq_cst read of the baton (strong CAS fails only if it is up) */
    if (mm_load_seq_cst_u32(&h->baton) != 0 ||
        !mm_cas_acquire_u32(&h->baton, &down, 1))
      return ours; /* the holder will see our pending++ when it re-reads */
    uint64_t seen = mm_load_seq_cst_u64(&h->pending);
    struct pass_frame frame = {mm, passing};
    passing = &frame;
    dispatch_pass(mm);
    passing = frame.outer;
    mm_store_release_u64(&h->passed, seen); /* for mmi_test_quiet */
    mm_store_seq_cst_u32(&h->baton, 0);
    /* seq_cst, after the baton is down: a Dekker pair with the service
     * thread, which sets service_waits and then reads the baton.  Either
     * it sees the baton down, or we see it waiting and wake it. */
    if (mm_load_seq_cst_u32(&h->service_waits))
      service_poke(h);
    /* A shrink waiting for use to fit is counted in held.over, so every
     * release and unpin comes here (the door kicks): it looks again after
     * each pass (resize.c). */
    if (mm_load_seq_cst_u32(&h->budget_waits)) {
      mm_faa_acq_rel_u32(&h->budget_seq, 1);
      mm_futex_wake_all(&h->budget_seq);
    }
    if (mm_load_seq_cst_u64(&h->pending) == seen)
      return ours;
  }
}

bool mmi_held_may_take_now(mm_t *mm, mm_pool pool, int64_t timeout_ns) {
  mmi_held *h = &mm->held;
  /* seq_cst: pairs with a waiter's count++ before it queues */
  uint64_t held = mm_load_seq_cst_u64(&h->count[pool]);
  if (held == 0 && !mm_load_acquire_u32(&h->blocked[pool]) &&
      (int64_t)mm_load_acquire_u64(&h->bar_at[pool]) == MM_FOREVER_NS)
    return true; /* nobody held that competes with it: the fast path */
  if (held != 0 && timeout_ns != MM_NO_WAIT)
    return false; /* it may wait: it waits its turn */
  /* Held requests get first pick of what is free, and a pass brings the
   * bars up to date (a waiter may have starved since the last one).  If
   * another thread holds the baton, its pass is under way and we go by the
   * bars of the last pass (best effort). */
  kick(mm);
  return !mm_load_acquire_u32(&h->blocked[pool]);
}

uint64_t mmi_test_quiet(struct mm *mm) {
  mmi_held *h = &mm->held;
  uint64_t news = mm_load_seq_cst_u64(&h->pending);
  if (mm_load_seq_cst_u32(&h->baton) != 0 ||
      mm_load_acquire_u64(&h->passed) != news ||
      mm_load_seq_cst_u64(&h->asking) != 0)
    return UINT64_MAX;
  return news;
}

/* ---- the one door for news -------------------------------------------- */

void mmi_held_news(mm_t *mm) {
  /* Inside an eviction, the news waits for its end (evict.c), which calls
   * this again: once per eviction, and never from inside its work. */
  if ((mmi_evicting || passing) && mmi_evict_defer_news(mm))
    return;
  /* Inside this manager's own pass, the news is the pass's own doing: what
   * it gives back -- a claim, a reservation, a charge whose grant lost to
   * a deadline -- only restores what the waiters it already passed over
   * saw, and what it gains (an excess of whole pages; news from inside its
   * evictions' callbacks; a release that won a page it had claimed) it
   * notes itself (pass_evict, mmi_evict_note_gain).  Kicking would only
   * make it pass again, forever if one waiter kept failing. */
  if (passing && in_pass_of(mm))
    return;
  /* F_event: the event's writes (any orders) come before it, the read of
   * the held counts after.  Either a pass whose F_pass follows this fence
   * sees the event, or the counts read here see every waiter counted in
   * before such a pass began, and we kick (DESIGN.md 3.7). */
  mm_fence_seq_cst();
  mmi_held *h = &mm->held;
  /* (`over`: a shrink waits, or left use past the budget.) */
  if (mm_load_relaxed_u64(&h->count[MM_POOL_EXECUTION]) +
          mm_load_relaxed_u64(&h->count[MM_POOL_STORAGE]) +
          mm_load_relaxed_u64(&h->over) !=
      0)
    kick(mm);
}

void mmi_budget_apply(mm_t *mm, uint64_t total) {
  uint64_t exec, storage;
  mmi_pool_split(&mm->pool, total, &exec, &storage);
  uint64_t want = mm->pool.storage_init - storage;
  uint64_t was = mm_load_relaxed_u64(&mm->pool.withheld[MM_POOL_STORAGE]);
  if (want > was)
    mmi_unsettled_add(mm, want - was); /* before it is charged */
  int64_t delta[2];
  mmi_pool_set_budget(&mm->pool, total, delta);
  if (delta[MM_POOL_STORAGE] < 0) /* after it went back; news below */
    mmi_unsettled_sub_quiet(mm, (uint64_t)-delta[MM_POOL_STORAGE]);
}

void mmi_budget_applied(mm_t *mm) {
  mmi_pressure_update(mm); /* the caches may park more, or less */
  /* A grow returns capacity; after a shrink a pass ends the held requests
   * the budget can no longer grant, and renews the bars. */
  mmi_held_news(mm);
}

bool mmi_on_service_thread(mm_t *mm) {
  return pthread_equal(pthread_self(), mm->held.service) != 0;
}

void mmi_give_back(mm_t *mm, mm_pool pool, uint64_t bytes) {
  mmi_pool_uncharge(&mm->pool, pool, bytes);
  if (mm_load_relaxed_u32(&mm->caches.squeezed))
    mmi_pressure_update(mm); /* the caches may park again */
  mmi_held_news(mm);
}

bool mmi_pressure_tight(mm_t *mm, uint64_t more) {
  /* (The word counts the budget withheld below the ceiling as used.) */
  uint64_t used = mmi_pool_used_guess(&mm->pool) + more;
  return used + mmi_tcaches_capacity(&mm->caches) > mm->pool.total ||
         mm_load_relaxed_u64(&mm->held.count[MM_POOL_EXECUTION]) +
                 mm_load_relaxed_u64(&mm->held.count[MM_POOL_STORAGE]) +
                 mm_load_relaxed_u64(&mm->held.over) !=
             0;
}

void mmi_pressure_update(mm_t *mm) {
  bool tight = mmi_pressure_tight(mm, 0);
  if (tight != (mm_load_relaxed_u32(&mm->caches.squeezed) != 0))
    mmi_tcaches_squeeze(&mm->caches, tight);
}

void mmi_hand_over(mm_t *mm, mm_pool pool, uint64_t out, uint64_t in) {
  mmi_pool_move_from_storage(&mm->pool, pool, out, in);
  if (out > in)
    mmi_held_news(mm); /* whole pages: the excess is free now */
}

void mmi_held_leave(mm_t *mm) {
  /* The caller's last touch of the manager: mm_destroy may free it after
   * this (seq_cst: see mmi_held_hold). */
  mm_faa_seq_cst_u64(&mm->held.inside, (uint64_t)-1);
}

/* ---- holding ----------------------------------------------------------- */

static int64_t deadline_after(int64_t now, int64_t timeout_ns) {
  if (timeout_ns == MM_WAIT_FOREVER || timeout_ns > MM_FOREVER_NS - now)
    return MM_FOREVER_NS;
  return now + timeout_ns;
}

/* A blocking caller waits for its outcome; returns it. */
static mm_status wait_outcome(mm_t *mm, mmi_waiter *w) {
  int64_t deadline = w->deadline_ns;
  for (;;) {
    /* acquire: pairs with deliver's release; the grant is fully booked */
    uint32_t o = mm_load_acquire_u32(&w->outcome);
    if (o != OUTCOME_PENDING)
      return (mm_status)o;
    if (deadline != MM_FOREVER_NS && mm_now_ns() >= deadline) {
      if (try_end(mm, w, W_TIMED_OUT, MM_ETIMEDOUT))
        kick(mm); /* it may have barred its pool: let others through */
      /* Decided now, by us or by a grant or cancel that won: the outcome
       * is being written; wait for it without a deadline. */
      deadline = MM_FOREVER_NS;
      continue;
    }
    mm_futex_wait(&w->outcome, OUTCOME_PENDING, deadline);
  }
}

/* ---- reclaim for a held request ---------------------------------------- */

/* Is @arg (a waiter) still waiting, and not yet due? */
static bool still_waiting(void *arg) {
  mmi_waiter *w = arg;
  return mm_load_acquire_u32(&w->state) == W_WAITING &&
         mm_now_ns() < w->deadline_ns;
}

/* What @bytes lack in free memory now (execution may use free storage). */
static uint64_t shortfall(mm_t *mm, uint64_t bytes) {
  mmi_pool_view v;
  mmi_pool_view_get(&mm->pool, &v);
  uint64_t total = v.exec_pool + v.storage_pool;
  uint64_t used = v.exec_used + v.storage_used;
  uint64_t free_ = total > used ? total - used : 0;
  return bytes > free_ ? bytes - free_ : 0;
}

/* Ask consumers to give back what held request @w lacks: on its owner's
 * thread (blocking) or the service thread (asynchronous), after its first
 * pass; once.  Each change of its reclaim state is followed by a pass
 * that sees it (kick): the bar it sets, the eviction it allows. */
static void reclaim_for(mm_t *mm, mmi_waiter *w) {
  mmi_held *h = &mm->held;
  /* Not before a pass has tried it (evicting, unless consumers come
   * first): the kick that queued it may have left its pass to a thread
   * still passing.  That pass ends; a long one (an eviction's write-back)
   * is waited for with a growing pause, until the request is due. */
  for (long pause = 1000;
       mm_load_acquire_u64(&h->passed) < w->kicked && still_waiting(w);) {
    struct timespec d = {0, pause};
    nanosleep(&d, NULL);
    if (pause < 1000000)
      pause *= 2;
  }
  uint64_t wanted = still_waiting(w) ? shortfall(mm, w->bytes) : 0;
  if (wanted) {
    mm_faa_seq_cst_u64(&h->asking, 1); /* not quiet (mmi_test_quiet) */
    mm_store_release_u32(&w->reclaim, R_ASKING);
    kick(mm);
    mmi_reclaim_ask(mm, w->asker, wanted, still_waiting, w);
  }
  mm_store_release_u32(&w->reclaim, R_NONE);
  kick(mm);
  if (wanted)
    mm_faa_seq_cst_u64(&h->asking, (uint64_t)-1);
}

mm_status mmi_held_hold(mm_t *mm, mm_pool pool, uint64_t id, uint64_t bytes,
                        int64_t timeout_ns, struct mmi_page *page,
                        mmi_grant *grant, mm_grant_fn cb, void *ctx,
                        uint64_t *ticket) {
  mmi_held *h = &mm->held;
  /* seq_cst, both: either mmi_held_shutdown sees this caller inside and
   * waits for it, or this caller sees the manager going away. */
  mm_faa_seq_cst_u64(&h->inside, 1);
  mm_status refused = MM_OK;
  mmi_waiter *w = NULL;
  mmi_qentry *entry = NULL;
  struct mm_consumer *spare = NULL;
  bool external = grant && grant->external;
  bool by_id = pool == MM_POOL_EXECUTION && !external;
  if (mm_load_seq_cst_u32(&h->destroying)) {
    refused = MM_ECANCELED;
  } else if (bytes > mmi_pool_most_now(&mm->pool, pool)) {
    refused = MM_ENOMEM; /* past what the budget in force could grant */
    mmi_count(mm, MMI_DECLINED, 1);
  } else {
    w = mmi_meta_alloc(sizeof *w);
    entry = mmi_queue_entry_new();
    spare = by_id ? mmi_consumer_spare() : NULL;
    if (!w || !entry || (by_id && !spare)) {
      refused = MM_ENOMEM;
      mmi_count(mm, MMI_DECLINED, 1);
    }
  }
  if (refused != MM_OK) {
    mmi_meta_free(w);
    if (entry)
      mmi_queue_entry_free(entry);
    if (spare)
      mmi_consumer_spare_free(spare);
    if (page) {
      mmi_rcu_read_lock();
      mmi_page_abandon(mm, page);
      mmi_rcu_read_unlock();
    }
    mm_faa_seq_cst_u64(&h->inside, (uint64_t)-1);
    return refused;
  }

  int64_t now = mm_now_ns();
  w->node.key = 0;
  mm_store_relaxed_u32(&w->state, W_WAITING);
  mm_store_relaxed_u32(&w->outcome, OUTCOME_PENDING);
  w->pool = pool;
  w->id = id;
  w->bytes = bytes;
  w->arrival_ns = now;
  w->deadline_ns = deadline_after(now, timeout_ns);
  w->cb = cb;
  w->ctx = ctx;
  w->ticketed = false;
  w->grant = grant; /* the caller's, alive until wait_outcome returns */
  w->block_size = grant ? grant->block_size : 0;
  w->spare = spare;
  w->page = page;
  w->next = NULL;
  w->asker = grant ? grant->consumer : NULL;
  w->external = external;
  /* Consumers are asked for execution requests while any can be asked. */
  bool reclaims =
      pool == MM_POOL_EXECUTION && mm_load_relaxed_u64(&mm->reclaimers) != 0;
  mm_store_relaxed_u32(&w->reclaim, reclaims ? R_PENDING : R_NONE);
  mm_store_relaxed_u32(&w->refs, 2); /* owner + queue */
  if (cb && reclaims)
    mm_store_relaxed_u32(&w->refs, 3); /* + the reclaims stack */

  mmi_rcu_read_lock();
  if (cb && ticket) {
    w->ticketed = true;
    mm_store_relaxed_u32(&w->refs, mm_load_relaxed_u32(&w->refs) + 1);
    w->node.key = mm_faa_seq_cst_u64(&h->next_ticket, 1);
    mmi_node *got = mmi_registry_insert_unique(h->tickets, &w->node);
    assert(got == &w->node); /* tickets are never reused */
    (void)got;
    *ticket = w->node.key;
  }
  /* seq_cst: counted in before it is queued (see lost wake-ups). */
  mm_faa_seq_cst_u64(&h->count[pool], 1);
  mmi_queue_push(&h->arrivals, entry, w);
  mmi_rcu_read_unlock();
  /* Written only where the waiter is still ours: an asynchronous one
   * without a reclaim may be granted, called back and freed by now. */
  uint64_t kicked = kick(mm);
  if (reclaims)
    w->kicked = kicked; /* read by its reclaim, pushed after this */
  /* Shown in the statistics once queued and kicked: a caller that sees
   * held_now rise knows this request is ahead of any it makes next, and
   * that a pass for it has run or is owed (mmi_test_quiet).  (A grant may
   * count it out first: the gauge reads that moment as zero.) */
  mmi_count(mm, MMI_HELD, 1);
  mmi_count(mm, MMI_HELD_NOW, 1);

  if (reclaims && cb) {
    mmi_stack_push(&h->reclaims, &w->asks); /* the service thread asks */
    service_poke(h);
  } else if (reclaims) {
    reclaim_for(mm, w); /* here, before it sleeps */
  }

  mm_status st = MM_EINPROGRESS;
  if (!cb) {
    st = wait_outcome(mm, w);
    waiter_put(w); /* the owner's reference */
  }
  if (grant) {
    /* Still inside: the caller makes its block or page after the grant,
     * and leaves (mmi_held_leave) only when done with the manager. */
    grant->inside = true;
    return st;
  }
  /* The last touch of the manager: mm_destroy may free it after this. */
  mm_faa_seq_cst_u64(&h->inside, (uint64_t)-1);
  return st;
}

mm_status mmi_held_cancel(mm_t *mm, uint64_t ticket) {
  mmi_held *h = &mm->held;
  bool ended = false;
  mmi_rcu_read_lock();
  mmi_node *n = mmi_registry_find(h->tickets, ticket);
  if (n) {
    mmi_waiter *w = caa_container_of(n, mmi_waiter, node);
    ended = try_end(mm, w, W_CANCELLED, MM_ECANCELED);
  }
  mmi_rcu_read_unlock();
  if (!ended)
    return MM_ENOENT; /* unknown, or already granted, timed out, cancelled */
  kick(mm);           /* it may have barred its pool */
  return MM_OK;
}

/* ---- the service thread ------------------------------------------------ */

static void run_callbacks(mm_t *mm) {
  mmi_stack_link *l = mmi_stack_take_all_fifo(&mm->held.done);
  while (l) {
    mmi_stack_link *next = mmi_stack_next(l);
    mmi_waiter *w = caa_container_of(l, mmi_waiter, done);
    w->cb(w->ctx, (mm_status)mm_load_relaxed_u32(&w->outcome));
    waiter_put(w); /* the owner's reference: the callback has returned */
    l = next;
  }
}

/* Reclaims for asynchronous requests, in the order they were held. */
static void run_reclaims(mm_t *mm) {
  mmi_stack_link *l = mmi_stack_take_all_fifo(&mm->held.reclaims);
  while (l) {
    mmi_stack_link *next = mmi_stack_next(l);
    mmi_waiter *w = caa_container_of(l, mmi_waiter, asks);
    reclaim_for(mm, w); /* asks nobody once it has ended */
    waiter_put(w);      /* the reclaims stack's reference */
    l = next;
  }
}

static void *service_main(void *arg) {
  mm_t *mm = arg;
  mmi_held *h = &mm->held;
  for (;;) {
    uint32_t seq = mm_load_acquire_u32(&h->service_seq);
    /* Read before the callbacks run: once stopping is seen, every waiter
     * has ended and its callback is already on the stack. */
    uint32_t stopping = mm_load_seq_cst_u32(&h->stopping);
    run_callbacks(mm);
    run_reclaims(mm);
    if (stopping)
      return NULL;
    if (h->tick_at <= mm_now_ns() && !mm_load_seq_cst_u32(&h->destroying))
      h->tick_at = mmi_service_tick(mm); /* polls, follow_cgroup */
    int64_t deadline = (int64_t)mm_load_seq_cst_u64(&h->next_deadline);
    if (mm_load_seq_cst_u32(&h->destroying))
      deadline = MM_FOREVER_NS; /* shutdown holds the baton and ends all */
    else if (h->tick_at < deadline)
      deadline = h->tick_at;
    if (deadline <= mm_now_ns()) {
      kick(mm); /* the pass ends the asynchronous waiters that are due */
      if ((int64_t)mm_load_seq_cst_u64(&h->next_deadline) <= mm_now_ns()) {
        /* Another thread holds the baton (perhaps across an eviction
         * callback's long write-back); the pass our kick asked of it ends
         * the due waiters.  Sleep until it puts the baton down.  seq_cst:
         * a Dekker pair with kick's baton release and its read of
         * service_waits; a wake before the sleep bumps service_seq, which
         * the futex compares with seq. */
        mm_store_seq_cst_u32(&h->service_waits, 1);
        if (mm_load_seq_cst_u32(&h->baton) != 0)
          mm_futex_wait(&h->service_seq, seq, MM_FOREVER_NS);
        mm_store_relaxed_u32(&h->service_waits, 0);
      }
      continue;
    }
    mm_futex_wait(&h->service_seq, seq, deadline);
  }
}

/* ---- life of the subsystem --------------------------------------------- */

mm_status mmi_held_init(mm_t *mm) {
  mmi_held *h = &mm->held;
  for (int p = 0; p < 2; p++) {
    mm_store_relaxed_u64(&h->count[p], 0);
    mm_store_relaxed_u32(&h->blocked[p], 0);
    mm_store_relaxed_u64(&h->bar_at[p], (uint64_t)MM_FOREVER_NS);
  }
  mm_store_relaxed_u64(&h->over, 0);
  mm_store_relaxed_u32(&h->baton, 0);
  mm_store_relaxed_u64(&h->pending, 0);
  mm_store_relaxed_u64(&h->passed, 0);
  mm_store_relaxed_u32(&h->service_waits, 0);
  h->head = h->tail = NULL;
  mmi_stack_init(&h->done);
  mmi_stack_init(&h->reclaims);
  mm_store_relaxed_u64(&h->asking, 0);
  mm_store_relaxed_u32(&h->budget_waits, 0);
  mm_store_relaxed_u32(&h->budget_seq, 0);
  h->tick_at = mmi_service_first_tick(mm);
  mm_store_relaxed_u32(&h->service_seq, 0);
  mm_store_relaxed_u64(&h->next_deadline, (uint64_t)MM_FOREVER_NS);
  mm_store_relaxed_u32(&h->stopping, 0);
  mm_store_relaxed_u32(&h->destroying, 0);
  mm_store_relaxed_u64(&h->inside, 0);
  mm_store_relaxed_u64(&h->next_ticket, 1);
  h->overtake_limit_ns = mm->cfg.overtake_limit_ns;

  h->tickets = mmi_registry_new(64);
  if (!h->tickets)
    return MM_ENOMEM;
  if (!mmi_queue_init(&h->arrivals)) {
    mmi_registry_destroy(h->tickets, NULL, NULL);
    return MM_ENOMEM;
  }
  if (pthread_create(&h->service, NULL, service_main, mm) != 0) {
    mmi_queue_fini(&h->arrivals);
    mmi_registry_destroy(h->tickets, NULL, NULL);
    return MM_ENOMEM;
  }
  return MM_OK;
}

void mmi_held_shutdown(mm_t *mm) {
  mmi_held *h = &mm->held;
  mm_store_seq_cst_u32(&h->destroying, 1);

  /* Take the baton for good: no pass runs after this. */
  for (;;) {
    uint32_t down = 0;
    if (mm_cas_acquire_u32(&h->baton, &down, 1))
      break;
    sched_yield();
  }

  /* Cancel every waiter, including any that a caller already inside the
   * hold path queues while we look.  `inside` is read *before* draining:
   * a caller pushes before it leaves, so once it reads zero the drain
   * that follows sees every push. */
  for (;;) {
    bool last = mm_load_seq_cst_u64(&h->inside) == 0;
    void *item;
    mmi_rcu_read_lock();
    while (mmi_queue_pop(&h->arrivals, &item)) {
      mmi_waiter *w = item;
      w->next = h->head;
      h->head = w;
    }
    mmi_rcu_read_unlock();
    while (h->head) {
      mmi_waiter *w = h->head;
      h->head = w->next;
      (void)try_end(mm, w, W_CANCELLED, MM_ECANCELED);
      waiter_put(w); /* the queue's reference */
    }
    h->tail = NULL;
    if (last)
      break;
    struct timespec pause = {0, 100 * 1000};
    nanosleep(&pause, NULL);
  }

  /* Deliver the last callbacks, then stop the service thread. */
  mm_store_seq_cst_u32(&h->stopping, 1);
  service_poke(h);
  pthread_join(h->service, NULL);

  mmi_queue_fini(&h->arrivals);
  mmi_registry_destroy(h->tickets, NULL, NULL);
}

/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * reclaim.c -- asking consumers to give memory back (spill callbacks).
 *
 * A consumer may register a callback that gives memory back when asked
 * (memory_manager.h, "Reclaim").  A held execution request asks them
 * (held.c calls mmi_reclaim_ask once per held request): the consumers
 * that have a callback and hold something are collected from
 * mm->by_exec in one read section, each with a reference, then asked
 * outside it, the one holding most first, until they promised what the
 * request lacks or the request ended.
 *
 * One word per consumer, reclaim_busy, makes a callback's run exclusive:
 * an asker takes it by CAS from 0 and skips the consumer if it cannot
 * (another request is asking it; what it releases is news for every held
 * request), and a change of the callback (mm_consumer_set_reclaim, the
 * close) takes it by waiting for 0.  fn and ctx are written and read only
 * by the holder, so a run never sees half of a change, and once a change
 * returns the old callback is not running and is never called again.  A
 * callback may change its own consumer's callback, or close it: the
 * thread that holds busy for @c is noted in `asking`, and skips the wait.
 * From inside a callback nothing waits for another consumer's busy word
 * (two callbacks changing each other's consumers would wait for each
 * other): a change answers MM_EBUSY, and a close only stops new runs.
 *
 * Why this cannot loop: every held request asks each consumer at most
 * once, in one walk, and a walk asks only consumers that hold memory.
 * Two requests that ask each other's consumers each make one finite
 * walk; the bytes released go to the held requests oldest first, and a
 * request whose callbacks are running is treated as starved (held.c), so
 * small requests that arrive meanwhile cannot take what they free first.
 */
#include "mm_internal.h"

#include <sched.h>
#include <stdlib.h>

/* The consumer whose callback this thread is running (busy is ours). */
static MM_THREAD_LOCAL struct mm_consumer *asking;

bool mmi_in_reclaim_callback(void) { return asking != NULL; }

static bool busy_try(struct mm_consumer *c) {
  uint32_t free_ = 0;
  return mm_cas_acq_rel_u32(&c->reclaim_busy, &free_, 1);
}

enum { TAKEN, OURS, BUSY };

/* Take @c's busy word for a change of its callback: wait for a run on
 * another thread to return.  OURS if this thread is running @c's callback
 * (busy is held already).  From inside any callback it never waits (two
 * callbacks changing each other's consumers would wait for each other for
 * ever): BUSY if another thread is running @c's. */
static int busy_take(struct mm_consumer *c) {
  if (asking == c)
    return OURS;
  while (!busy_try(c)) {
    if (asking)
      return BUSY;
    sched_yield(); /* a callback of @c runs on another thread */
  }
  return TAKEN;
}

static void busy_drop(struct mm_consumer *c) {
  mm_store_release_u32(&c->reclaim_busy, 0);
}

/* Whether @c is asked: reclaim_on, changed by exchange so that
 * mm->reclaimers counts each consumer once. */
static void set_on(struct mm_consumer *c, bool on) {
  uint32_t was = mm_fas_seq_cst_u32(&c->reclaim_on, on);
  if (was != (uint32_t)on)
    mm_faa_relaxed_u64(&c->mm->reclaimers, on ? 1 : (uint64_t)-1);
  /* seq_cst, a pair with the close (the books, then mmi_reclaim_off):
   * either it turns this off, or this sees it closed and does. */
  if (on && mm_load_seq_cst_u64(&c->books) == MMI_CLOSED)
    set_on(c, false);
}

/* Set @c's callback (busy held). */
static void set_locked(struct mm_consumer *c, mm_reclaim_fn fn, void *ctx) {
  c->reclaim_fn = fn;
  c->reclaim_ctx = ctx;
  set_on(c, fn != NULL);
}

mm_status mm_consumer_set_reclaim(mm_consumer *c, mm_reclaim_fn fn, void *ctx) {
  if (!c || mm_load_relaxed_u64(&c->books) == MMI_CLOSED)
    return MM_EINVAL;
  int took = busy_take(c);
  if (took == BUSY)
    return MM_EBUSY; /* from a callback, while another thread runs @c's */
  set_locked(c, fn, ctx);
  if (took == TAKEN)
    busy_drop(c);
  return MM_OK;
}

mm_status mm_consumer_set_self_reclaim(mm_consumer *c, bool allow) {
  if (!c || mm_load_relaxed_u64(&c->books) == MMI_CLOSED)
    return MM_EINVAL;
  mm_store_relaxed_u32(&c->reclaim_self, allow);
  return MM_OK;
}

void mmi_reclaim_off(struct mm_consumer *c) { set_on(c, false); }

void mmi_reclaim_unset(struct mm_consumer *c) {
  set_on(c, false); /* no new run begins */
  int took = busy_take(c);
  if (took == BUSY)
    return; /* from a callback: a run on another thread may go on */
  set_locked(c, NULL, NULL);
  if (took == TAKEN)
    busy_drop(c);
}

/* ---- the walk --------------------------------------------------------- */

struct candidate {
  struct mm_consumer *c;
  uint64_t held; /* when collected: the order of asking */
};

struct collect {
  struct mm_consumer *asker;
  struct candidate *v;
  size_t n, cap;
};

static void collect_one(mmi_link *l, void *arg) {
  struct collect *col = arg;
  struct mm_consumer *c = caa_container_of(l, struct mm_consumer, by_exec);
  if (!mm_load_relaxed_u32(&c->reclaim_on) ||
      (c == col->asker && !mm_load_relaxed_u32(&c->reclaim_self)))
    return;
  uint64_t held = mmi_books_held(mm_load_relaxed_u64(&c->books));
  if (!held)
    return;
  if (col->n == col->cap) {
    size_t cap = col->cap ? 2 * col->cap : 16;
    struct candidate *v = realloc(col->v, cap * sizeof *v);
    if (!v)
      return; /* asked fewer: what is collected is still asked */
    col->v = v;
    col->cap = cap;
  }
  if (!mmi_consumer_ref(c))
    return; /* being freed */
  col->v[col->n++] = (struct candidate){c, held};
}

static int most_first(const void *a, const void *b) {
  const struct candidate *x = a, *y = b;
  if (x->held != y->held)
    return x->held < y->held ? 1 : -1;
  /* Ties in the order the consumers were opened (their tags). */
  return x->c->node.key < y->c->node.key ? -1 : x->c->node.key > y->c->node.key;
}

/* Run @c's callback for @wanted bytes if nobody else is; returns what it
 * promised (0 if it was not asked). */
static uint64_t ask_one(mm_t *mm, struct mm_consumer *c, uint64_t wanted) {
  if (!busy_try(c))
    return 0; /* another request is asking it */
  uint64_t got = 0;
  mm_reclaim_fn fn = c->reclaim_fn;
  if (fn && mm_load_acquire_u32(&c->reclaim_on) &&
      mm_load_relaxed_u64(&c->books) != MMI_CLOSED) {
    struct mm_consumer *outer = asking;
    asking = c;
    int64_t t0 = mm_now_ns();
    got = fn(c->reclaim_ctx, c, (size_t)wanted);
    int64_t took = mm_now_ns() - t0;
    asking = outer;
    mmi_count(mm, MMI_RECLAIMS, 1);
    mmi_count(mm, MMI_RECLAIMED_BYTES, got);
    mmi_count(mm, MMI_RECLAIM_NS, took > 0 ? (uint64_t)took : 0);
  }
  busy_drop(c);
  return got;
}

void mmi_reclaim_ask(mm_t *mm, struct mm_consumer *asker, uint64_t wanted,
                     bool (*still_wanted)(void *arg), void *arg) {
  struct collect col = {asker, NULL, 0, 0};
  mmi_rcu_read_lock();
  mmi_registry_each(mm->by_exec, collect_one, &col);
  mmi_rcu_read_unlock();
  if (col.n > 1)
    qsort(col.v, col.n, sizeof *col.v, most_first);
  for (size_t i = 0; i < col.n; i++) {
    if (wanted && still_wanted(arg)) {
      uint64_t got = ask_one(mm, col.v[i].c, wanted);
      wanted -= got < wanted ? got : wanted;
    }
    mmi_consumer_put(col.v[i].c);
  }
  free(col.v);
}

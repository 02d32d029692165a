/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * consumer.c -- consumers: the unit of execution accounting.
 *
 * A consumer is a handle on an exec id (an operator of a query, a hash
 * table, a sort) whose books are one 64-bit word:
 *
 *   books = | held (42 bits: bytes its callers hold) | spare (22 bits) |
 *
 * spare is quota already charged to the pool word for this consumer and
 * held by nobody yet: the pool word charges held + spare.  One CAS on
 * books decides every change -- an acquire from spare, a release, a
 * refill, a reclaim, the close -- so the books are never inconsistent,
 * never negative, and a consumer never holds more than was charged:
 *
 *   acquire b:  spare >= b ?  held += b, spare -= b         (no shared line)
 *               else charge b + quantum - spare from free memory, then
 *                    held += b, spare = quantum   (one pool CAS per quantum)
 *               else the exact path: b through the front door (eviction,
 *                    holding, the held-request rules)
 *   release b:  held >= b ?  held -= b, spare += b (else MM_EINVAL)
 *               the excess over two quanta goes back to the pool word, and
 *               all of it while any request is held
 *   reclaim:    spare -> 0, back to the pool word (another thread: before
 *               a request is declined, evicts or waits, and in every
 *               dispatch pass with waiters)
 *
 * The error of the books is one-sided (charged >= held) and bounded: a
 * consumer's spare is at most two quanta, a quantum at most 1 MiB and at
 * most total / 64 (so small budgets are charged nearly exactly), and every
 * consumer's spare is given back before anything is declined, evicted or
 * held.  While any execution request is held, acquires skip the spare
 * (they queue behind held requests, as every request does) and releases
 * give everything back at once.  The Dekker pair that makes the last rule
 * safe: a release's or a refill's CAS on books and its read of the held
 * counts are seq_cst; a waiter counts itself in (seq_cst) before its pass
 * reclaims every spare with a seq_cst exchange.  Either the release (the
 * refill) sees the waiter and gives its spare back, or the pass takes it.
 *
 * Closing (mm_consumer_close, or mm_release_all_execution of its exec
 * id) exchanges the books for CLOSED: everything held and spare goes back
 * to the pool word, and every later call answers MM_EINVAL.  A consumer is
 * found by its tag (mm->consumers: the blocks it allocates carry it), by
 * its exec id (mm->by_exec, duplicates), and an exec id's own consumer --
 * the one the id-based calls use -- by the id (mm->execs).  It is freed
 * through RCU once closed and its owner let go.
 */
#include "consumer.h"

#include <assert.h>

#include "atomics/mm_futex.h"
#include "mm_internal.h"

#define QUANTUM_MAX ((uint64_t)1 << 20)
#define QUANTUM_MIN ((uint64_t)4 << 10)

mm_status mmi_consumers_init(mm_t *mm) {
  if (!(mm->consumers = mmi_registry_new(1024)))
    return MM_ENOMEM;
  if (!(mm->by_exec = mmi_registry_new(1024)))
    goto no_by_exec;
  if (!(mm->execs = mmi_registry_new(1024)))
    goto no_execs;
  mm_store_relaxed_u32(&mm->next_key, 1);
  mm_store_relaxed_u64(&mm->reclaimers, 0);
  mm_store_relaxed_u64(&mm->guaranteed, 0);
  mm_store_relaxed_u64(&mm->active, 0);
  return MM_OK;
no_execs:
  mmi_registry_destroy(mm->by_exec, NULL, NULL);
no_by_exec:
  mmi_registry_destroy(mm->consumers, NULL, NULL);
  return MM_ENOMEM;
}

static void drop_consumer(mmi_node *n, void *ctx) {
  (void)ctx;
  mmi_meta_free(caa_container_of(n, struct mm_consumer, node));
}

void mmi_consumers_fini(mm_t *mm) {
  /* Links first: the consumers table frees the records. */
  mmi_registry_destroy(mm->by_exec, NULL, NULL);
  mmi_registry_destroy(mm->execs, NULL, NULL);
  mmi_registry_destroy(mm->consumers, drop_consumer, NULL);
}

/* The quantum for a budget: at most 1 MiB and total / 64, at least 4 KiB;
 * below that, the books are exact. */
static uint64_t quantum_for(const mm_t *mm) {
  if (mm->cfg.fair_share)
    return 0; /* every acquire is judged against its share */
  uint64_t q = mm->cfg.total_bytes / 64;
  if (q > QUANTUM_MAX)
    q = QUANTUM_MAX;
  return q < QUANTUM_MIN ? 0 : q;
}

struct mm_consumer *mmi_consumer_spare(void) {
  return mmi_meta_alloc(sizeof(struct mm_consumer));
}

void mmi_consumer_spare_free(struct mm_consumer *c) { mmi_meta_free(c); }

mm_status mmi_consumer_new(mm_t *mm, uint64_t exec_id, bool dflt,
                           struct mm_consumer **spare,
                           struct mm_consumer **out) {
  struct mm_consumer *c;
  if (spare && *spare) {
    c = *spare;
    *spare = NULL;
  } else if (!(c = mmi_consumer_spare())) {
    return MM_ENOMEM;
  }
  mm_store_relaxed_u64(&c->books, 0);
  c->quantum = quantum_for(mm);
  c->mm = mm;
  c->exec_id = exec_id;
  c->dflt = dflt;
  /* Its owner's: a handle, or (an exec id's own) the registries; and an
   * own consumer's link in mm->execs has one of its own, dropped by
   * whoever unlinks it (mmi_consumer_unlink_own). */
  mm_store_relaxed_u32(&c->refs, dflt ? 2 : 1);
  c->by_exec.key = exec_id;
  c->by_id.key = exec_id;
  mm_store_relaxed_u32(&c->in_execs, 0);
  mm_store_relaxed_u32(&c->reclaim_busy, 0);
  mm_store_relaxed_u32(&c->reclaim_on, 0);
  mm_store_relaxed_u32(&c->reclaim_self, 0);
  c->reclaim_fn = NULL;
  c->reclaim_ctx = NULL;
  c->limit_min = c->limit_max = 0;
  mm_store_relaxed_u64(&c->reserve, 0);
  mm_store_relaxed_u64(&c->counted, 0);
  /* Its tag first: one no open consumer has (the counter comes round after
   * 2^26), reserved in mm->consumers before anyone can find the consumer
   * any other way, so that nobody credits it, or tags a block with it,
   * before it is its own. */
  for (;;) {
    uint32_t key = mm_faa_relaxed_u32(&mm->next_key, 1) & MMI_KEY_MAX;
    if (key == 0)
      continue;
    c->node.key = key;
    if (mmi_registry_insert_unique(mm->consumers, &c->node) == &c->node)
      break;
  }
  /* In mm->by_exec before it can be found by its id: whatever walks the
   * id's consumers (mm_release_all_execution, mm_execution_held, the
   * pass's reclaim of spare quota) sees every consumer anyone can charge. */
  mmi_registry_link_add(mm->by_exec, &c->by_exec);
  if (dflt) {
    mmi_test_point(mm, MMI_TP_OWN_LINKING);
    mmi_link *got = mmi_registry_link_insert_unique(mm->execs, &c->by_id);
    if (got != &c->by_id) {
      /* The id has one already.  This one never held anything, but a
       * release_all may have found it in by_exec: closing it decides who
       * unlinks it (the close that exchanged its books for CLOSED). */
      mmi_consumer_put(c); /* its execs link's, never made */
      uint64_t none = 0;
      if (mm_cas_acq_rel_u64(&c->books, &none, MMI_CLOSED)) {
        (void)mmi_registry_link_remove(mm->by_exec, &c->by_exec);
        (void)mmi_registry_remove(mm->consumers, &c->node);
        mmi_consumer_put(c); /* the registries': retired, not reused */
      }
      *out = caa_container_of(got, struct mm_consumer, by_id);
      return MM_EEXIST;
    }
    /* seq_cst, a pair with a close's exchange and its read of in_execs:
     * either the close unlinks it from mm->execs, or this sees the close
     * and does.  (A thread that finds it closed in between helps in vain
     * and looks again: a window of these two lines.) */
    mm_store_seq_cst_u32(&c->in_execs, 1);
    mmi_count(mm, MMI_EXEC_IDS, 1);
    if (mm_load_seq_cst_u64(&c->books) == MMI_CLOSED)
      mmi_consumer_unlink_own(c); /* closed before it was linked there */
  }
  *out = c;
  return MM_OK;
}

struct mm_consumer *mmi_consumer_by_key(mm_t *mm, uint32_t key) {
  mmi_node *n = mmi_registry_find(mm->consumers, key);
  return n ? caa_container_of(n, struct mm_consumer, node) : NULL;
}

/* ---- the books ------------------------------------------------------------
 */

/* Take @c's spare quota; returns it (charged to the pool still). */
static uint64_t take_spare(struct mm_consumer *c) {
  uint64_t w = mm_load_relaxed_u64(&c->books);
  while (w != MMI_CLOSED && mmi_books_spare(w)) {
    /* seq_cst: a pass's reclaim, the other side of a release's pair */
    if (mm_cas_seq_cst_u64(&c->books, &w, w & ~MMI_SPARE_MAX))
      return mmi_books_spare(w);
  }
  return 0;
}

bool mmi_consumer_credit(struct mm_consumer *c, uint64_t bytes) {
  uint64_t w = mm_load_relaxed_u64(&c->books);
  while (w != MMI_CLOSED) {
    if (mmi_books_held(w) + bytes > MMI_HELD_MAX)
      return false; /* (the front door refuses such requests first) */
    if (c->limit_max && mmi_books_held(w) + bytes > c->limit_max)
      return false; /* past its max: a decline */
    if (mm_cas_acq_rel_u64(&c->books, &w, w + (bytes << MMI_SPARE_BITS))) {
      if (c->mm->cfg.fair_share && mmi_books_held(w) == 0)
        mm_faa_seq_cst_u64(&c->mm->active, 1); /* one more to share */
      return true;
    }
  }
  return false;
}

mm_status mmi_consumer_acquire_exact(struct mm_consumer *c, uint64_t bytes,
                                     int64_t timeout_ns,
                                     struct mmi_grant *grant) {
  mmi_grant local = {0};
  mmi_grant *g = grant ? grant : &local;
  g->consumer = c;
  mm_status st = mmi_request_acquire(c->mm, MM_POOL_EXECUTION, c->exec_id,
                                     bytes, timeout_ns, NULL, NULL, NULL, g);
  if (!grant && local.inside)
    mmi_held_leave(c->mm); /* accounting only: nothing more to make */
  return st;
}

bool mmi_consumer_take(struct mm_consumer *c, uint64_t bytes,
                       int64_t timeout_ns, struct mmi_grant *grant,
                       mm_status *st) {
  mm_t *mm = c->mm;
  if (mmi_consumer_take_spare(c, bytes))
    goto granted;
  uint64_t q = c->quantum;
  uint64_t w = mm_load_relaxed_u64(&c->books);
  for (;;) {
    if (w == MMI_CLOSED || mmi_books_held(w) + bytes > MMI_HELD_MAX) {
      *st = MM_EINVAL;
      return true;
    }
    uint64_t s = mmi_books_spare(w);
    bool usable = mmi_spare_usable(mm);
    if (s >= bytes && usable) {
      /* Commit point of an acquire from spare: one CAS on the books. */
      if (!mm_cas_acq_rel_u64(&c->books, &w,
                              w - bytes + (bytes << MMI_SPARE_BITS)))
        continue;
      break;
    }
    /* A refill from free memory: what the spare lacks and a quantum more,
     * in one charge of the pool word, when nothing held competes for it
     * (while requests are held, an acquire queues behind them: the exact
     * path). */
    if (!q || s >= bytes || !usable ||
        !mmi_held_may_take_now(mm, MM_POOL_EXECUTION, timeout_ns))
      return false;
    uint64_t x = bytes - s + q;
    if (!mmi_pool_charge(&mm->pool, MM_POOL_EXECUTION, x))
      return false;
    mmi_pressure_update(mm);
    for (;;) {
      uint64_t spare = mmi_books_spare(w);
      if (w == MMI_CLOSED || spare + x < bytes || spare + x - bytes > 2 * q ||
          mmi_books_held(w) + bytes > MMI_HELD_MAX)
        break; /* the books moved: give the charge back, start over */
      uint64_t next =
          ((mmi_books_held(w) + bytes) << MMI_SPARE_BITS) | (spare + x - bytes);
      /* Commit point of a refill: seq_cst, and then the held counts are
       * read, the same pair as a release's (a waiter that counted itself
       * in before this CAS may have had its pass reclaim every spare
       * already; this spare is then given back here). */
      if (mm_cas_seq_cst_u64(&c->books, &w, next)) {
        if (mmi_anyone_held(mm))
          mmi_consumer_give_spare(c);
        goto granted;
      }
    }
    mmi_give_back(mm, MM_POOL_EXECUTION, x);
    w = mm_load_relaxed_u64(&c->books);
  }
granted:
  mmi_count(mm, MMI_GRANTED, 1);
  if (grant)
    grant->key = (uint32_t)c->node.key;
  *st = MM_OK;
  return true;
}

/* ---- limits ----------------------------------------------------------------
 *
 * A consumer with limits keeps no spare quota, so every acquire and
 * release of it comes here.  Its max is kept by the credit (a grant that
 * would take it past its max is declined: mmi_consumer_credit).  Its min
 * is a reservation: what it does not hold of its min is charged to the
 * pool word as its reserve, which only its own acquires take, and what it
 * releases below its min goes back to the reserve instead of the pool.
 * Every byte is held, reserved or given back, so the pool word charges
 * exactly held + reserve and nothing is over-committed; the guarantee is
 * exact while calls on the consumer do not overlap (overlapping ones may
 * give a byte back that a concurrent acquire then misses).
 */

/* Take up to @bytes of @c's reserve; returns what was taken. */
static uint64_t reserve_take(struct mm_consumer *c, uint64_t bytes) {
  uint64_t r = mm_load_relaxed_u64(&c->reserve);
  for (;;) {
    uint64_t t = r < bytes ? r : bytes;
    if (!t || mm_cas_acq_rel_u64(&c->reserve, &r, r - t))
      return t;
  }
}

/* Put @t bytes (charged) into @c's reserve; if @c is closed, they go back
 * to the pool.  seq_cst, a pair with the close's exchange of the books
 * and then of the reserve: either the close takes them, or this sees it
 * closed and gives them back. */
static void reserve_put(struct mm_consumer *c, uint64_t t) {
  if (!t)
    return;
  mm_faa_seq_cst_u64(&c->reserve, t);
  if (mm_load_seq_cst_u64(&c->books) == MMI_CLOSED) {
    uint64_t x = mm_fas_seq_cst_u64(&c->reserve, 0);
    if (x)
      mmi_give_back(c->mm, MM_POOL_EXECUTION, x);
  }
}

static mm_status limited_acquire(struct mm_consumer *c, uint64_t bytes,
                                 int64_t timeout_ns, struct mmi_grant *grant) {
  mm_t *mm = c->mm;
  uint64_t w = mm_load_relaxed_u64(&c->books);
  if (w == MMI_CLOSED)
    return MM_EINVAL;
  if (c->limit_max && mmi_books_held(w) + bytes > c->limit_max) {
    mmi_count(mm, MMI_DECLINED, 1);
    return MM_ENOMEM; /* only its own releases could make it fit */
  }
  uint64_t t = reserve_take(c, bytes);
  mm_status st = MM_OK;
  if (t < bytes) {
    /* The rest as a request of its own (eviction, reclaim, holding); the
     * part from the reserve waits with it, as the consumer's own. */
    st = mmi_consumer_acquire_exact(c, bytes - t, timeout_ns, grant);
  } else {
    mmi_count(mm, MMI_GRANTED, 1);
    if (grant)
      grant->key = (uint32_t)c->node.key;
  }
  if (t && st == MM_OK && !mmi_consumer_credit(c, t)) {
    /* Closed, or past its max, meanwhile: the whole call is undone, the
     * block a grant by eviction made too. */
    reserve_put(c, t); /* first: the release below measures against it */
    if (bytes > t)
      (void)mmi_consumer_release(c, bytes - t, true);
    if (grant && grant->block) {
      mmi_block_free(&mm->caches, grant->block, grant->block_size);
      grant->block = NULL;
    }
    mmi_uncount(mm, MMI_GRANTED, 1);
    if (grant && grant->inside)
      mmi_uncount(mm, MMI_HELD_GRANTED, 1);
    mmi_count(mm, MMI_DECLINED, 1);
    return mmi_consumer_refusal(c);
  }
  if (t && st != MM_OK)
    reserve_put(c, t); /* still its own */
  return st;
}

/* What @c's release of @take bytes, leaving it @held, keeps as reserve. */
static uint64_t reserve_keep(struct mm_consumer *c, uint64_t held,
                             uint64_t take) {
  if (held >= c->limit_min)
    return 0;
  uint64_t r = mm_load_relaxed_u64(&c->reserve);
  uint64_t want = c->limit_min - held;
  uint64_t keep = want > r ? want - r : 0;
  keep = keep < take ? keep : take;
  reserve_put(c, keep);
  return keep;
}

mm_status mmi_consumer_acquire(struct mm_consumer *c, uint64_t bytes,
                               int64_t timeout_ns, struct mmi_grant *grant) {
  mm_status st;
  if (c->limit_min | c->limit_max)
    return limited_acquire(c, bytes, timeout_ns, grant);
  if (mmi_consumer_take(c, bytes, timeout_ns, grant, &st))
    return st;
  return mmi_consumer_acquire_exact(c, bytes, timeout_ns, grant);
}

void mmi_consumer_give_spare(struct mm_consumer *c) {
  uint64_t back = take_spare(c);
  if (back)
    mmi_give_back(c->mm, MM_POOL_EXECUTION, back);
}

mm_status mmi_consumer_release(struct mm_consumer *c, uint64_t bytes,
                               bool clamp) {
  if (mmi_consumer_release_fast(c, bytes))
    return MM_OK;
  mm_t *mm = c->mm;
  uint64_t q = c->quantum;
  uint64_t w = mm_load_relaxed_u64(&c->books), back, take;
  for (;;) {
    if (w == MMI_CLOSED)
      return MM_EINVAL;
    uint64_t held = mmi_books_held(w);
    take = bytes;
    if (held < bytes) {
      if (!clamp)
        return MM_EINVAL; /* never more than it holds */
      take = held;
    }
    uint64_t spare = mmi_books_spare(w) + take, keep = spare;
    if (keep > 2 * q || keep > MMI_SPARE_MAX)
      keep = q;
    back = spare - keep;
    /* Commit point of a release: seq_cst, the first half of the pair
     * with a waiter's count (see the top of the file). */
    if (mm_cas_seq_cst_u64(&c->books, &w,
                           ((held - take) << MMI_SPARE_BITS) | keep))
      break;
  }
  if (c->limit_min) /* below its min: kept as its reserve */
    back -= reserve_keep(c, mmi_books_held(w) - take, back);
  /* One fewer to share: before the give-back, whose news it is too (or,
   * if its reserve kept every byte, news of its own). */
  bool fewer = mm->cfg.fair_share && take && mmi_books_held(w) == take;
  if (fewer)
    mm_faa_seq_cst_u64(&mm->active, (uint64_t)-1);
  if (mmi_anyone_held(mm))
    back += take_spare(c); /* held requests see every byte at once */
  if (back)
    mmi_give_back(mm, MM_POOL_EXECUTION, back);
  else if (mm->cfg.fair_share && take)
    mmi_held_news(mm); /* its share grew (and, if fewer hold, all did) */
  return MM_OK;
}

void mmi_consumer_unlink_own(struct mm_consumer *c) {
  if (c->dflt && mm_load_seq_cst_u32(&c->in_execs) &&
      mmi_registry_link_remove(c->mm->execs, &c->by_id)) {
    mmi_uncount(c->mm, MMI_EXEC_IDS, 1);
    mmi_consumer_put(c); /* the link's reference */
  }
}

bool mmi_consumer_ref(struct mm_consumer *c) {
  uint32_t r = mm_load_relaxed_u32(&c->refs);
  while (r) {
    if (mm_cas_acq_rel_u32(&c->refs, &r, r + 1))
      return true;
  }
  return false; /* being freed */
}

uint64_t mmi_consumer_shut(struct mm_consumer *c) {
  mm_t *mm = c->mm;
  /* Commit point of a close: every later call sees CLOSED.  Only the one
   * close that exchanged live books for it goes on: it unlinks @c from
   * every registry (others may help with mm->execs meanwhile, and drop
   * that link's reference), and only then drops the registries' reference
   * of an exec id's own consumer -- never while a registry still links
   * it. */
  uint64_t w = mm_fas_seq_cst_u64(&c->books, MMI_CLOSED);
  if (w == MMI_CLOSED)
    return 0;
  mmi_rcu_read_lock();
  mmi_consumer_unlink_own(c);
  (void)mmi_registry_link_remove(mm->by_exec, &c->by_exec);
  (void)mmi_registry_remove(mm->consumers, &c->node);
  mmi_rcu_read_unlock();
  uint64_t all = mmi_books_held(w) + mmi_books_spare(w);
  if (mm->cfg.fair_share && mmi_books_held(w))
    mm_faa_seq_cst_u64(&mm->active, (uint64_t)-1);
  /* Its guarantee goes too: the reserve and its count, each taken by an
   * exchange, so that a set_limits or a reserve_put racing with it gives
   * back what it adds after (they read CLOSED after their writes). */
  all += mm_fas_seq_cst_u64(&c->reserve, 0);
  uint64_t counted = mm_fas_seq_cst_u64(&c->counted, 0);
  if (counted)
    mm_faa_seq_cst_u64(&mm->guaranteed, (uint64_t)0 - counted);
  mmi_reclaim_off(c); /* asked no more (the handle's close waits for it) */
  if (all)
    mmi_give_back(mm, MM_POOL_EXECUTION, all);
  if (c->dflt)
    mmi_consumer_put(c); /* the registries' reference */
  return mmi_books_held(w);
}

void mmi_consumer_put(struct mm_consumer *c) {
  /* acq_rel: the last holder sees every other holder's writes. */
  if (mm_faa_acq_rel_u32(&c->refs, (uint32_t)-1) == 1)
    mmi_rcu_retire(&c->node); /* readers of the registries may still look */
}

/* ---- all of them -----------------------------------------------------------
 */

struct spare_sum {
  bool take; /* take it from them, or only read it */
  uint64_t sum;
};

static void spare_one(mmi_link *l, void *ctx) {
  struct mm_consumer *c = caa_container_of(l, struct mm_consumer, by_exec);
  struct spare_sum *ss = ctx;
  ss->sum += ss->take ? take_spare(c)
                      : mmi_books_spare(mm_load_relaxed_u64(&c->books));
}

/* Every consumer's spare quota, summed; with @take, taken from them. */
static uint64_t spare_of_all(mm_t *mm, bool take) {
  struct spare_sum ss = {take, 0};
  mmi_rcu_read_lock();
  mmi_registry_each(mm->by_exec, spare_one, &ss);
  mmi_rcu_read_unlock();
  return ss.sum;
}

bool mmi_consumers_reclaim(mm_t *mm) {
  uint64_t back = spare_of_all(mm, true);
  if (!back)
    return false;
  mmi_test_point(mm, MMI_TP_SPARE_TAKEN);
  /* Taken from the consumers and not yet on the pool word: a pass running
   * now sees neither.  The give-back is news, so a pass after it will. */
  mmi_give_back(mm, MM_POOL_EXECUTION, back);
  return true;
}

uint64_t mmi_consumers_spare(mm_t *mm) { return spare_of_all(mm, false); }

/* ---- the public calls ------------------------------------------------------
 */

mm_status mm_consumer_open(mm_t *mm, uint64_t exec_id, mm_consumer **out) {
  if (!mm || !out)
    return MM_EINVAL;
  mmi_rcu_read_lock();
  mm_status st = mmi_consumer_new(mm, exec_id, false, NULL, out);
  mmi_rcu_read_unlock();
  return st;
}

mm_status mm_consumer_close(mm_consumer *c) {
  if (!c)
    return MM_EINVAL;
  mmi_reclaim_unset(c); /* no callback of it runs once it is gone */
  (void)mmi_consumer_shut(c);
  mmi_consumer_put(c); /* the handle's reference */
  return MM_OK;
}

mm_status mm_consumer_acquire(mm_consumer *c, size_t bytes,
                              int64_t timeout_ns) {
  if (!c || bytes == 0 || bytes > c->mm->cfg.max_execution_request ||
      !mmi_timeout_valid(timeout_ns) || mmi_in_evict_callback(c->mm))
    return MM_EINVAL;
  if (mmi_consumer_take_spare(c, bytes)) {
    mmi_count(c->mm, MMI_GRANTED, 1); /* the common case, inline */
    return MM_OK;
  }
  return mmi_consumer_acquire(c, bytes, timeout_ns, NULL);
}

/* What @c (NULL: @exec_id's own consumer) may still take within its
 * share; *@first: is it below half of it?  In a read section. */
static uint64_t share_room(mm_t *mm, struct mm_consumer *c, uint64_t exec_id,
                           bool *first) {
  if (!c)
    c = mmi_exec_own(mm, exec_id, false, NULL);
  uint64_t held = c ? mmi_books_held(mm_load_relaxed_u64(&c->books)) : 0;
  /* A credit counts itself in after its CAS, so a close racing with it
   * may count out first: the counter may read one low, even below 0, for
   * a moment. */
  int64_t active = (int64_t)mm_load_seq_cst_u64(&mm->active);
  uint64_t n = (active > 0 ? (uint64_t)active : 0) + (held == 0);
  if (n == 0)
    n = 1;
  uint64_t storage = mmi_pool_storage_used(&mm->pool);
  uint64_t budget = mmi_pool_budget(&mm->pool);
  uint64_t pool = budget > storage ? budget - storage : 0;
  if (first)
    *first = held < pool / (2 * n);
  return pool / n > held ? pool / n - held : 0;
}

bool mmi_fair_share_allows(mm_t *mm, struct mm_consumer *c, uint64_t exec_id,
                           uint64_t bytes, bool *first) {
  return bytes <= share_room(mm, c, exec_id, first);
}

/* @c's part of the guarantees' sum is @v now (it was claimed, 0); false if
 * @c closed meanwhile, and then the part is taken back from the sum.
 * seq_cst, a pair with the close (the books, then the part): either the
 * close takes it, or this sees the close and takes it. */
static bool counted_put(struct mm_consumer *c, uint64_t v) {
  (void)mm_fas_seq_cst_u64(&c->counted, v); /* (it held 0: claimed) */
  if (mm_load_seq_cst_u64(&c->books) != MMI_CLOSED)
    return true;
  uint64_t x = mm_fas_seq_cst_u64(&c->counted, 0);
  if (x)
    mm_faa_seq_cst_u64(&c->mm->guaranteed, (uint64_t)0 - x);
  return false;
}

mm_status mm_consumer_set_limits(mm_consumer *c, size_t min_bytes,
                                 size_t max_bytes) {
  if (!c || mm_load_relaxed_u64(&c->books) == MMI_CLOSED ||
      (max_bytes && min_bytes > max_bytes) || min_bytes > MMI_HELD_MAX)
    return MM_EINVAL;
  mm_t *mm = c->mm;
  /* Its part of the guarantees' sum is claimed first (a close meanwhile
   * takes nothing of it), then the sum is changed, never past the
   * execution pool's own size: checked again after the change, a Dekker
   * pair with a shrink, which lowers exec_floor and then reads the sum
   * (resize.c): either the shrink sees this guarantee, or this sees the
   * smaller pool and takes the guarantee back. */
  uint64_t old_min = mm_fas_seq_cst_u64(&c->counted, 0);
  uint64_t sum = mm_load_relaxed_u64(&mm->guaranteed), next;
  for (;;) {
    next = sum - old_min + min_bytes;
    if (next > mm_load_seq_cst_u64(&mm->exec_floor)) {
      (void)counted_put(c, old_min);
      return MM_ENOMEM;
    }
    if (mm_cas_seq_cst_u64(&mm->guaranteed, &sum, next))
      break;
  }
  if (min_bytes > old_min && next > mm_load_seq_cst_u64(&mm->exec_floor)) {
    mm_faa_seq_cst_u64(&mm->guaranteed, old_min - min_bytes);
    (void)counted_put(c, old_min);
    return MM_ENOMEM;
  }
  /* The reserve: what it does not hold of its new min, from memory free
   * now and not barred by a held request (the quota parked with others
   * first), or nothing changes. */
  uint64_t held = mmi_books_held(mm_load_relaxed_u64(&c->books));
  uint64_t want = min_bytes > held ? min_bytes - held : 0;
  uint64_t have = mm_load_relaxed_u64(&c->reserve), more = 0;
  if (want > have) {
    more = want - have;
    if (!mmi_held_may_take_now(mm, MM_POOL_EXECUTION, MM_NO_WAIT) ||
        (!mmi_pool_charge(&mm->pool, MM_POOL_EXECUTION, more) &&
         !(mmi_consumers_reclaim(mm) &&
           mmi_pool_charge(&mm->pool, MM_POOL_EXECUTION, more)))) {
      mm_faa_seq_cst_u64(&mm->guaranteed, old_min - min_bytes);
      (void)counted_put(c, old_min);
      return MM_ENOMEM;
    }
    mmi_pressure_update(mm);
  }
  if (!counted_put(c, min_bytes)) { /* closed meanwhile */
    if (more)
      mmi_give_back(mm, MM_POOL_EXECUTION, more);
    return MM_EINVAL;
  }
  c->limit_min = min_bytes;
  c->limit_max = max_bytes;
  /* No spare from now on: every call takes the exact paths. */
  c->quantum = 0;
  mmi_consumer_give_spare(c);
  if (more) {
    reserve_put(c, more); /* (given back if it closed meanwhile) */
  } else if (want < have) {
    uint64_t back = reserve_take(c, have - want);
    if (back)
      mmi_give_back(mm, MM_POOL_EXECUTION, back);
  }
  return MM_OK;
}

mm_status mm_consumer_acquire_range(mm_consumer *c, size_t min_bytes,
                                    size_t max_bytes, int64_t timeout_ns,
                                    size_t *granted) {
  if (granted)
    *granted = 0;
  if (!c || !granted || min_bytes == 0 || max_bytes < min_bytes ||
      min_bytes > c->mm->cfg.max_execution_request ||
      !mmi_timeout_valid(timeout_ns) || mmi_in_evict_callback(c->mm))
    return MM_EINVAL;
  mm_t *mm = c->mm;
  if (mm_load_relaxed_u64(&c->books) == MMI_CLOSED)
    return MM_EINVAL;
  uint64_t most = max_bytes < mm->cfg.max_execution_request
                      ? max_bytes
                      : mm->cfg.max_execution_request;
  uint64_t held = mmi_books_held(mm_load_relaxed_u64(&c->books));
  if (held + most > MMI_HELD_MAX)
    most = min_bytes; /* (the min request answers MM_EINVAL if even that
                         would hold too much) */
  if (c->limit_max && held + most > c->limit_max) {
    if (held + min_bytes > c->limit_max) {
      mmi_count(mm, MMI_DECLINED, 1);
      return MM_ENOMEM; /* past its max */
    }
    most = c->limit_max - held;
  }
  if (mm->cfg.fair_share) { /* and within its share */
    mmi_rcu_read_lock();
    uint64_t room = share_room(mm, c, c->exec_id, NULL);
    mmi_rcu_read_unlock();
    if (most > room)
      most = room > min_bytes ? room : min_bytes; /* (the min is judged) */
  }
  /* What is free, up to the most, when nothing held is in its way: never
   * by eviction or reclaim (those are for the min only).  Its own spare
   * first, then the pool word, then the quota parked with others. */
  if (most > min_bytes &&
      mmi_held_may_take_now(mm, MM_POOL_EXECUTION, MM_NO_WAIT)) {
    mmi_consumer_give_spare(c);
    uint64_t t = reserve_take(c, most); /* its guarantee first */
    uint64_t got = t;
    got += mmi_pool_charge_upto(&mm->pool, MM_POOL_EXECUTION, most - got);
    if (got < most && mmi_consumers_reclaim(mm))
      got += mmi_pool_charge_upto(&mm->pool, MM_POOL_EXECUTION, most - got);
    if (got >= min_bytes) {
      mmi_pressure_update(mm);
      if (!mmi_consumer_credit(c, got)) {
        if (got > t)
          mmi_give_back(mm, MM_POOL_EXECUTION, got - t);
        reserve_put(c, t);
        return mmi_consumer_refusal(c); /* closed, or past its max */
      }
      mmi_count(mm, MMI_GRANTED, 1);
      *granted = (size_t)got;
      return MM_OK;
    }
    if (got > t) /* less than the min */
      mmi_give_back(mm, MM_POOL_EXECUTION, got - t);
    reserve_put(c, t);
  }
  /* The min, as a request of its own: spare, free memory, eviction,
   * reclaim, holding -- every rule of mm_consumer_acquire. */
  mm_status st = mmi_consumer_acquire(c, min_bytes, timeout_ns, NULL);
  if (st == MM_OK)
    *granted = min_bytes;
  return st;
}

mm_status mm_consumer_release(mm_consumer *c, size_t bytes) {
  if (!c || bytes == 0)
    return MM_EINVAL;
  if (mmi_consumer_release_fast(c, bytes))
    return MM_OK;
  return mmi_consumer_release(c, bytes, false);
}

size_t mm_consumer_held(const mm_consumer *c) {
  return c ? mmi_books_held(mm_load_relaxed_u64(&c->books)) : 0;
}

/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * exec.c -- execution memory by exec id: the id-based calls, on the exec
 * id's own consumer.
 *
 * Every exec id that the id-based calls (mm_acquire_execution,
 * mm_exec_alloc, ...) have charged has its own consumer (consumer.c),
 * found by the id in mm->execs; consumers opened with mm_consumer_open
 * for the id are its others.  All of them are in mm->by_exec under the
 * id, so
 *
 *   mm_execution_held(id)          sums what each of them holds;
 *   mm_release_execution(id, b)    returns bytes the id-based calls
 *                                  charged (its own consumer's);
 *   mm_release_all_execution(id)   closes every one of them -- their
 *                                  books go back to the pool word, and
 *                                  handles on them answer MM_EINVAL --
 *                                  and drops the id's own.
 *
 * An acquire racing with release_all of its id either lands on the old
 * own consumer before it is closed (and is released by it) or finds it
 * closed and starts the id's next incarnation with a fresh one (and stays
 * charged): never lost.  The grant of a held request of the id is credited
 * to its own consumer at the moment of the grant, made from a spare record
 * the waiter carries if the id has none, so that it cannot fail.
 */
#include "mm_internal.h"

static struct mm_consumer *own_of(mm_t *mm, uint64_t exec_id) {
  mmi_link *l = mmi_registry_link_find(mm->execs, exec_id);
  return l ? caa_container_of(l, struct mm_consumer, by_id) : NULL;
}

struct mm_consumer *mmi_exec_own(mm_t *mm, uint64_t exec_id, bool create,
                                 struct mm_consumer **spare) {
  for (;;) {
    struct mm_consumer *c = own_of(mm, exec_id);
    if (c && mm_load_acquire_u64(&c->books) != MMI_CLOSED)
      return c;
    if (c) {
      mmi_consumer_unlink_own(c); /* closed meanwhile: help it out */
      continue;
    }
    if (!create)
      return NULL;
    mm_status st = mmi_consumer_new(mm, exec_id, true, spare, &c);
    if (st == MM_OK)
      return c;
    if (st == MM_ENOMEM)
      return NULL;
    /* MM_EEXIST: another thread made it meanwhile; look again */
  }
}

uint32_t mmi_exec_credit(mm_t *mm, uint64_t exec_id, uint64_t bytes,
                         struct mm_consumer **spare) {
  for (;;) {
    struct mm_consumer *c = mmi_exec_own(mm, exec_id, true, spare);
    if (!c)
      return 0; /* out of memory, and no spare */
    if (mmi_consumer_credit(c, bytes))
      return (uint32_t)c->node.key;
    /* closed by a racing mm_release_all_execution: the next incarnation */
  }
}

/* ---- the exec ids a thread used last ------------------------------------- */

/*
 * An id-based call must find the exec id's own consumer, and a lookup in
 * mm->execs (a hash table under RCU) costs several times the consumer's
 * own work: liburcu-bp's read section alone is two calls into a shared
 * library, each reaching its thread-local state through __tls_get_addr.
 * So each thread remembers the own consumers it used last, in its part of
 * its record (mm_internal.h: per thread and manager, private to the
 * thread), each with a reference: a remembered consumer cannot be freed,
 * and one that was closed is seen closed (its books read CLOSED) and
 * forgotten.  A thread's record outlives the thread (another thread takes
 * it over, remembered consumers and all); mm_destroy forgets them all.
 */

/* The exec id's own consumer, open, with a reference; NULL if it has
 * none. */
static struct mm_consumer *own_ref(mm_t *mm, uint64_t exec_id) {
  mmi_rcu_read_lock();
  struct mm_consumer *c;
  do
    c = mmi_exec_own(mm, exec_id, false, NULL);
  while (c && !mmi_consumer_ref(c)); /* being freed: closed meanwhile */
  mmi_rcu_read_unlock();
  return c;
}

/* The exec id's own consumer, open, or NULL.  It stays good until this
 * thread's next call of own_here() (the memo's reference); without a
 * memo, *@put says the caller holds a reference to put. */
static struct mm_consumer *own_here(mm_t *mm, uint64_t exec_id, bool *put) {
  *put = false;
  mmi_tcache *tc = mmi_tcache_mine(&mm->caches);
  if (!tc) {
    *put = true;
    return own_ref(mm, exec_id);
  }
  mmi_thread_part *m = mmi_thread_part_of(tc);
  unsigned i = 0;
  for (; i < MMI_MEMO_SLOTS; i++) {
    struct mm_consumer *c = m->memo[i].c;
    if (c && m->memo[i].exec_id == exec_id) {
      if (mm_load_relaxed_u64(&c->books) != MMI_CLOSED)
        return c;
      break; /* closed: forget it, find the id's next */
    }
  }
  struct mm_consumer *c = own_ref(mm, exec_id);
  if (!c)
    return NULL;
  if (i == MMI_MEMO_SLOTS)
    i = m->memo_next++ % MMI_MEMO_SLOTS;
  struct mm_consumer *old = m->memo[i].c;
  m->memo[i].exec_id = exec_id;
  m->memo[i].c = c;
  if (old)
    mmi_consumer_put(old);
  return c;
}

static void forget(const void *extra, void *ctx) {
  (void)ctx;
  mmi_thread_part *m = (mmi_thread_part *)(uintptr_t)extra;
  for (unsigned i = 0; i < MMI_MEMO_SLOTS; i++)
    if (m->memo[i].c) {
      mmi_consumer_put(m->memo[i].c);
      m->memo[i].c = NULL;
    }
}

void mmi_exec_forget_all(mm_t *mm) {
  mmi_tcaches_each(&mm->caches, forget, NULL);
}

/* ---- the id-based calls ----------------------------------------------------
 */

mm_status mmi_exec_charge(mm_t *mm, uint64_t exec_id, uint64_t bytes,
                          int64_t timeout_ns, mmi_grant *grant) {
  for (;;) {
    bool put;
    struct mm_consumer *c = own_here(mm, exec_id, &put);
    if (!c) {
      /* The id's first charge: its own consumer is made by the grant, so
       * that a declined request leaves nothing behind. */
      return mmi_request_acquire(mm, MM_POOL_EXECUTION, exec_id, bytes,
                                 timeout_ns, NULL, NULL, NULL, grant);
    }
    mm_status st;
    if (!mmi_consumer_take(c, bytes, timeout_ns, grant, &st)) {
      /* The front door may wait, and a grant callback on this thread may
       * make it forget @c meanwhile: a reference of our own. */
      if (!put && !mmi_consumer_ref(c))
        continue; /* closed and let go meanwhile */
      put = true;
      st = mmi_consumer_acquire_exact(c, bytes, timeout_ns, grant);
    }
    bool closed = mm_load_acquire_u64(&c->books) == MMI_CLOSED;
    if (put)
      mmi_consumer_put(c);
    if (st != MM_EINVAL || !closed)
      return st;
    /* closed by mm_release_all_execution: the id's next own consumer */
  }
}

mm_status mm_acquire_execution(mm_t *mm, uint64_t exec_id, size_t bytes,
                               int64_t timeout_ns) {
  if (!mm || bytes == 0 || bytes > mm->cfg.max_execution_request ||
      !mmi_timeout_valid(timeout_ns) || mmi_in_evict_callback(mm))
    return MM_EINVAL;
  bool put;
  struct mm_consumer *own = own_here(mm, exec_id, &put);
  bool taken = own && mmi_consumer_take_spare(own, bytes);
  if (put && own)
    mmi_consumer_put(own);
  if (taken) {
    mmi_count(mm, MMI_GRANTED, 1); /* the common case, inline */
    return MM_OK;
  }
  mmi_grant g = {0};
  mm_status st = mmi_exec_charge(mm, exec_id, bytes, timeout_ns, &g);
  if (g.inside)
    mmi_held_leave(mm); /* accounting only: nothing more to make */
  return st;
}

mm_status mm_release_execution(mm_t *mm, uint64_t exec_id, size_t bytes) {
  if (!mm || bytes == 0)
    return MM_EINVAL;
  bool put;
  struct mm_consumer *c = own_here(mm, exec_id, &put);
  if (!c)
    return MM_EINVAL;
  mm_status st = mmi_consumer_release_fast(c, bytes)
                     ? MM_OK
                     : mmi_consumer_release(c, bytes, false);
  if (put)
    mmi_consumer_put(c);
  return st;
}

struct mm_consumer *mmi_exec_own_here(mm_t *mm, uint64_t exec_id, bool *put) {
  return own_here(mm, exec_id, put);
}

static void shut_one(mmi_link *l, void *ctx) {
  struct mm_consumer *c = caa_container_of(l, struct mm_consumer, by_exec);
  *(uint64_t *)ctx += mmi_consumer_shut(c);
}

size_t mm_release_all_execution(mm_t *mm, uint64_t exec_id) {
  if (!mm)
    return 0;
  uint64_t held = 0;
  mmi_rcu_read_lock();
  mmi_registry_each_key(mm->by_exec, exec_id, shut_one, &held);
  mmi_rcu_read_unlock();
  return held;
}

static void sum_held(mmi_link *l, void *ctx) {
  struct mm_consumer *c = caa_container_of(l, struct mm_consumer, by_exec);
  *(uint64_t *)ctx += mmi_books_held(mm_load_relaxed_u64(&c->books));
}

size_t mm_execution_held(const mm_t *mm, uint64_t exec_id) {
  if (!mm)
    return 0;
  uint64_t held = 0;
  mmi_rcu_read_lock();
  mmi_registry_each_key(mm->by_exec, exec_id, sum_held, &held);
  mmi_rcu_read_unlock();
  return held;
}

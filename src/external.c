/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * external.c -- memory the manager did not allocate, counted against the
 * budget: sources reported by mm_external_set, and the polled sum
 * (mm_config.external_poll).
 *
 * A source is a record in mm->externals (its own registry: not an exec
 * id's, so mm_release_all_execution never touches it, and reclaim never
 * asks it) holding what the source was last granted.  Its growth is an
 * execution request of the difference through the front door, credited
 * to nobody (mmi_grant.external): it may borrow, evict, be held, ask
 * consumers, or be declined, like any other.  Its shrink is a give-back
 * through the door.  A call owns its record by a CAS of `busy` (calls
 * for one source must not overlap: the loser answers MM_EBUSY); only the
 * owner changes `bytes`, and the owner of a record that drops to 0
 * unlinks it and marks it DEAD for a racing finder, which looks again.
 *
 * Polled memory exists before the manager hears of it, so it is charged
 * as found (mmi_pool_charge_anyway): use may pass the budget, and then
 * the manager behaves as after a shrink (nothing fits until releases
 * bring use back; the service thread evicts what unpinned pages cover).
 */
#include "mm_internal.h"

enum { X_FREE, X_BUSY, X_DEAD };

typedef struct mmi_external {
  mmi_node node; /* mm->externals, key: the source id; first */
  mm_atomic_u32 busy;
  uint64_t bytes; /* granted to the source: its owner's */
} mmi_external;

/* Own @id's record, made if it has none (when @make); NULL with *@st set
 * if it cannot be had.  In a read section. */
static mmi_external *own(mm_t *mm, uint64_t id, bool make, mm_status *st) {
  for (;;) {
    mmi_node *n = mmi_registry_find(mm->externals, id);
    mmi_external *x;
    if (n) {
      x = caa_container_of(n, mmi_external, node);
      uint32_t free_ = X_FREE;
      if (mm_cas_acq_rel_u32(&x->busy, &free_, X_BUSY))
        return x;
      if (free_ == X_DEAD)
        continue; /* its last owner is unlinking it: look again */
      *st = MM_EBUSY;
      return NULL;
    }
    if (!make) {
      *st = MM_OK; /* no such source, and nothing to record */
      return NULL;
    }
    if (!(x = mmi_meta_alloc(sizeof *x))) {
      *st = MM_ENOMEM;
      return NULL;
    }
    x->node.key = id;
    mm_store_relaxed_u32(&x->busy, X_BUSY);
    x->bytes = 0;
    if (mmi_registry_insert_unique(mm->externals, &x->node) == &x->node)
      return x;
    mmi_meta_free(x); /* another call made it first: never published */
  }
}

/* Let go of @x: free for the next call, or, at 0 bytes, gone. */
static void disown(mm_t *mm, mmi_external *x) {
  if (x->bytes) {
    mm_store_release_u32(&x->busy, X_FREE);
    return;
  }
  mmi_rcu_read_lock();
  mm_store_release_u32(&x->busy, X_DEAD);
  (void)mmi_registry_remove(mm->externals, &x->node);
  mmi_rcu_read_unlock();
  mmi_rcu_retire(&x->node);
}

mm_status mm_external_set(mm_t *mm, uint64_t source_id, size_t bytes,
                          int64_t timeout_ns) {
  if (!mm || !mmi_timeout_valid(timeout_ns) || mmi_in_evict_callback(mm) ||
      bytes > mm->pool.total)
    return MM_EINVAL;
  mm_status st = MM_OK;
  mmi_rcu_read_lock();
  mmi_external *x = own(mm, source_id, bytes != 0, &st);
  mmi_rcu_read_unlock();
  if (!x)
    return st; /* (its record stays ours, unlinked only by us, till disown) */
  if (bytes > x->bytes) {
    mmi_grant grant = {0};
    grant.external = true;
    uint64_t more = bytes - x->bytes;
    st = mmi_request_acquire(mm, MM_POOL_EXECUTION, source_id, more, timeout_ns,
                             NULL, NULL, NULL, &grant);
    if (st == MM_OK) {
      x->bytes = bytes;
      mm_faa_relaxed_u64(&mm->external_bytes, more);
    }
    disown(mm, x);
    if (grant.inside)
      mmi_held_leave(mm); /* the last touch of the manager */
    return st;
  }
  if (bytes < x->bytes) {
    uint64_t less = x->bytes - bytes;
    x->bytes = bytes;
    mm_faa_relaxed_u64(&mm->external_bytes, (uint64_t)0 - less);
    mmi_give_back(mm, MM_POOL_EXECUTION, less);
  }
  disown(mm, x);
  return MM_OK;
}

void mmi_external_polled(mm_t *mm, uint64_t bytes) {
  uint64_t was = mm_load_relaxed_u64(&mm->external_polled);
  if (bytes > mm->pool.total)
    bytes = mm->pool.total; /* more than any budget: counted as the most */
  if (bytes == was)
    return;
  mm_store_relaxed_u64(&mm->external_polled, bytes);
  if (bytes < was) {
    mm_faa_relaxed_u64(&mm->external_bytes, (uint64_t)0 - (was - bytes));
    mmi_give_back(mm, MM_POOL_EXECUTION, was - bytes);
    return;
  }
  uint64_t more = bytes - was;
  mm_faa_relaxed_u64(&mm->external_bytes, more);
  if (mmi_pool_charge(&mm->pool, MM_POOL_EXECUTION, more)) {
    mmi_pressure_update(mm);
    return;
  }
  /* Past the budget, or at it: counted in first (no spare quota used
   * past it); what unpinned pages cover goes now (no wait, no callbacks
   * asked: this is the service thread). */
  mmi_budget_count_in(mm);
  mmi_pool_charge_anyway(&mm->pool, MM_POOL_EXECUTION, more);
  mmi_pressure_update(mm);
  (void)mmi_budget_settle(mm, mmi_pool_budget(&mm->pool), mm_now_ns(), true);
}

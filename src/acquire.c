/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * acquire.c -- the front door: every acquire, blocking or asynchronous,
 * execution or storage, comes through mmi_request_acquire.
 *
 *   check the arguments (MM_EINVAL: nothing happens)
 *   storage: reserve the page id  (MM_EEXIST if taken)
 *   may it charge now?  (no held requests in its way: held.c)
 *     yes, and it fits (or eviction makes it fit): charge (commit point),
 *         book it to the exec id or make the page live  -> MM_OK
 *   MM_NO_WAIT: declined  -> MM_ENOMEM
 *   otherwise: held (held.c) -> the outcome, or MM_EINPROGRESS
 *
 * A storage request reserves its page id before anything else, so that a
 * duplicate costs nothing.  A request that does not fit in free memory may
 * evict unpinned storage pages (evict.c), all or nothing.  A failure
 * after the charge (a record allocation) returns the charge before
 * answering, and lets held requests see the memory again.
 */
#include "mm_internal.h"

/* The charge for @bytes of @pool, or 0 if no pool could ever grant it. */
static uint64_t request_bytes(const mm_t *mm, mm_pool pool, size_t bytes) {
  if (bytes == 0)
    return 0;
  if (pool == MM_POOL_EXECUTION)
    return bytes <= mm->cfg.max_execution_request ? bytes : 0;
  uint64_t rounded = mmi_page_round(mm, bytes);
  return rounded <= mmi_pool_storage_max(&mm->pool) ? rounded : 0;
}

/* A request for real memory that must evict gets its block once the
 * victims are claimed and before any is evicted, so that a failed
 * allocation backs the eviction out: a declined request evicted nothing. */
struct block_commit {
  mm_t *mm;
  mmi_grant *grant;
};

static bool commit_block(void *arg) {
  struct block_commit *bc = arg;
  bc->grant->block = mmi_block_alloc(&bc->mm->caches, bc->grant->block_size);
  return bc->grant->block != NULL;
}

enum { CHARGED, NO_ROOM, NO_BLOCK };

/* From free memory; a new page's bytes are unsettled until it is live
 * (the protected floor must not count them: evict.c). */
static bool charge(mm_t *mm, mm_pool pool, uint64_t bytes) {
  return pool == MM_POOL_STORAGE ? mmi_charge_new_page(mm, bytes)
                                 : mmi_pool_charge(&mm->pool, pool, bytes);
}

/* Charge @bytes of @pool now: from free memory, or by evicting unpinned
 * storage pages (all or nothing).  For execution, *@spare is a record the
 * grant's credit can use (an exec id with no own consumer), allocated
 * before anything is evicted; for real memory (@grant with a block size)
 * a grant by eviction makes the block first, and NO_BLOCK says the
 * allocator failed (nothing evicted).  No eviction unless @may_evict. */
static int charge_now(mm_t *mm, mm_pool pool, uint64_t bytes,
                      struct mm_consumer **spare, mmi_grant *grant,
                      bool may_evict) {
  if (charge(mm, pool, bytes))
    goto charged;
  /* The exact path: quota parked in consumers goes back to the pool word
   * before anything is evicted or declined. */
  if (mmi_consumers_reclaim(mm) && charge(mm, pool, bytes))
    goto charged;
  /* The budget is full: no block parked idle.  (Not when only the storage
   * pool is: a storage request that evicts leaves as much in use as
   * before, and parked blocks stay within the budget.) */
  if (mmi_pressure_tight(mm, bytes))
    mmi_tcaches_squeeze(&mm->caches, true);
  if (!may_evict || mmi_pool_storage_used(&mm->pool) == 0)
    return NO_ROOM; /* consumers are asked first, or no page to evict */
  bool by_id = !grant || (!grant->external &&
                          (!grant->consumer || grant->consumer->dflt));
  if (pool == MM_POOL_EXECUTION && by_id && !(*spare = mmi_consumer_spare()))
    return NO_ROOM;
  struct block_commit bc = {mm, grant};
  bool real = grant && grant->block_size;
  mmi_evict_result r =
      mmi_evict_charge(mm, pool, bytes, real ? commit_block : NULL, &bc, NULL);
  return r == MMI_EVICT_DONE         ? CHARGED
         : r == MMI_EVICT_BACKED_OUT ? NO_BLOCK
                                     : NO_ROOM;
charged:
  mmi_pressure_update(mm);
  return CHARGED;
}

/* Execution bytes charged now become held: by the consumer of @grant, or
 * the exec id's own (the one it has now, when the consumer was its own and
 * closed meanwhile, or none was named).  MM_EINVAL if a consumer handle
 * was closed under its own call; MM_ENOMEM if the id's own consumer had to
 * be made and could not. */
static mm_status credit(mm_t *mm, uint64_t id, uint64_t bytes,
                        struct mm_consumer **spare, mmi_grant *grant) {
  struct mm_consumer *c = grant ? grant->consumer : NULL;
  uint32_t key;
  if (grant && grant->external)
    return MM_OK; /* nobody's books: the source's own (external.c) */
  if (c && mmi_consumer_credit(c, bytes))
    key = (uint32_t)c->node.key;
  else if (c && !c->dflt)
    return mmi_consumer_refusal(c);
  else if (!(key = mmi_exec_credit(mm, id, bytes, spare)))
    return MM_ENOMEM;
  if (grant)
    grant->key = key;
  return MM_OK;
}

mm_status mmi_request_acquire(mm_t *mm, mm_pool pool, uint64_t id,
                              uint64_t bytes, int64_t timeout_ns,
                              mm_grant_fn cb, void *ctx, uint64_t *ticket,
                              mmi_grant *grant) {
  mm_status st;
  struct mmi_page *pg = NULL;
  struct mm_consumer *spare = NULL;

  bool external = grant && grant->external;
  if (grant) {
    grant->block = NULL;
    grant->inside = false;
  }
  mmi_rcu_read_lock();
  if (pool == MM_POOL_STORAGE) {
    /* Reserve the id first: a duplicate is refused before anything is
     * charged or evicted, and nothing evicted is ever wasted on it. */
    if (mmi_page_exists(mm, id)) {
      st = MM_EEXIST;
      goto out;
    }
    if (!(pg = mmi_page_new(id, bytes))) {
      st = MM_ENOMEM;
      mmi_count(mm, MMI_DECLINED, 1);
      goto out;
    }
    if ((st = mmi_page_reserve(mm, pg)) != MM_OK) {
      mmi_page_free_unpublished(pg); /* never published */
      pg = NULL;
      goto out;
    }
  }

  int charged = NO_ROOM;
  /* With fair_share, a request past its consumer's share is not charged
   * now: declined, or held until its share grows. */
  bool within_share = pool != MM_POOL_EXECUTION || !mm->cfg.fair_share ||
                      external ||
                      mmi_fair_share_allows(mm, grant ? grant->consumer : NULL,
                                            id, bytes, NULL);
  if (within_share && mmi_held_may_take_now(mm, pool, timeout_ns)) {
    /* With reclaim_before_evict, a request that may wait is held before
     * it evicts, and consumers are asked first (held.c). */
    bool may_evict = !(pool == MM_POOL_EXECUTION && timeout_ns != MM_NO_WAIT &&
                       mm->cfg.reclaim_before_evict &&
                       mm_load_relaxed_u64(&mm->reclaimers) != 0);
    charged = charge_now(mm, pool, bytes, &spare, grant, may_evict);
    if (pg && charged == CHARGED)
      pg->unsettled = true; /* settled when it goes live, or abandoned */
  }
  if (charged == NO_BLOCK) {
    st = MM_ENOMEM; /* the allocator failed; nothing was evicted */
    mmi_count(mm, MMI_DECLINED, 1);
    goto out;
  }
  if (charged == CHARGED) {
    if (pool == MM_POOL_STORAGE) {
      if (grant)
        grant->page = pg; /* charged; the caller makes it live */
      else
        mmi_page_activate(mm, pg, 0);
      pg = NULL;
      st = MM_OK;
    } else if ((st = credit(mm, id, bytes, &spare, grant)) != MM_OK) {
      mmi_give_back(mm, pool, bytes);
      mmi_count(mm, MMI_DECLINED, 1);
      if (grant && grant->block) {
        mmi_block_free(&mm->caches, grant->block, grant->block_size);
        grant->block = NULL;
      }
      goto out;
    }
    mmi_count(mm, MMI_GRANTED, 1);
    goto out;
  }

  if (timeout_ns == MM_NO_WAIT) {
    st = MM_ENOMEM;
    mmi_count(mm, MMI_DECLINED, 1);
    goto out;
  }

  /* Held; the hold owns the reserved page now. */
  struct mmi_page *reserved = pg;
  pg = NULL;
  if (spare)
    mmi_consumer_spare_free(spare);
  spare = NULL;
  if (cb) {
    st = mmi_held_hold(mm, pool, id, bytes, timeout_ns, reserved, NULL, cb, ctx,
                       ticket);
    goto out;
  }
  mmi_rcu_read_unlock(); /* never sleep in a read section */
  st = mmi_held_hold(mm, pool, id, bytes, timeout_ns, reserved, grant, NULL,
                     NULL, NULL);
  if (st == MM_OK && grant)
    grant->page = reserved; /* granted, still pending: the caller's now */
  return st;

out:
  if (pg)
    mmi_page_abandon(mm, pg);
  if (spare)
    mmi_consumer_spare_free(spare);
  mmi_rcu_read_unlock();
  return st;
}

/* Check what every acquire takes, then go through the front door. */
static mm_status acquire_checked(mm_t *mm, mm_pool pool, uint64_t id,
                                 size_t bytes, int64_t timeout_ns,
                                 mm_grant_fn cb, void *ctx, uint64_t *ticket) {
  if (!mm || !mmi_timeout_valid(timeout_ns) || mmi_in_evict_callback(mm))
    return MM_EINVAL;
  uint64_t charge_bytes = request_bytes(mm, pool, bytes);
  if (!charge_bytes)
    return MM_EINVAL;
  return mmi_request_acquire(mm, pool, id, charge_bytes, timeout_ns, cb, ctx,
                             ticket, NULL);
}

mm_status mm_acquire_storage(mm_t *mm, uint64_t page_id, size_t bytes,
                             int64_t timeout_ns) {
  return acquire_checked(mm, MM_POOL_STORAGE, page_id, bytes, timeout_ns, NULL,
                         NULL, NULL);
}

mm_status mm_acquire_async(mm_t *mm, mm_pool pool, uint64_t id, size_t bytes,
                           int64_t timeout_ns, mm_grant_fn cb, void *ctx,
                           uint64_t *ticket) {
  if (ticket)
    *ticket = 0;
  if (!cb || (pool != MM_POOL_EXECUTION && pool != MM_POOL_STORAGE))
    return MM_EINVAL;
  return acquire_checked(mm, pool, id, bytes, timeout_ns, cb, ctx, ticket);
}

mm_status mm_cancel(mm_t *mm, uint64_t ticket) {
  if (!mm)
    return MM_EINVAL;
  return mmi_held_cancel(mm, ticket);
}

/*
 * alloc.c -- real memory on top of the books: mm_exec_alloc, mm_exec_free,
 * mm_storage_alloc.
 *
 * Every block is charged before it exists and uncharged after it is gone,
 * at the size the backing allocator really hands out, so that at every
 * moment the memory allocated is at most the memory charged:
 *
 *   alloc: charge (the same front door as mm_acquire_*: wait, evict ...)
 *          -> allocate -> record;   a failed allocation uncharges.
 *   free:  unrecord (one CAS decides: a double free is refused) -> free
 *          -> uncharge.
 *
 * Execution blocks are recorded in mm->allocs (block address -> exec id
 * and size), so that mm_exec_free can refuse a pointer that is not the
 * manager's, or not that exec id's, without touching the memory it points
 * to.  A storage page's block hangs off its page record: the page is
 * charged and left pending, given its block, and only then made live,
 * born pinned, so nobody ever sees a page without its memory.  It is
 * freed when the page is released, or evicted (after the callback).
 */
#include "mm_internal.h"

enum { ALLOC_LIVE, ALLOC_FREED };

typedef struct mmi_alloc {
  mmi_node node; /* key: the block's address */
  uint64_t exec_id;
  uint64_t exec_gen; /* the incarnation of the id that was charged */
  uint64_t charged;  /* its size class: what the books hold and what the
                        block is freed with */
  mm_atomic_u32 state;
} mmi_alloc;

void *mmi_block_alloc(mm_t *mm, size_t size) {
  void *p = mmi_cache_alloc(&mm->caches, &mm->backing, size);
  if (p)
    mmi_backing_hand_out(p, size);
  return p;
}

void mmi_block_free(mm_t *mm, void *p, size_t size) {
  mmi_backing_take_back(p, size);
  /* Park the block only while the budget has room for every cache to be
   * full: near the limit, memory goes straight back to the arena, so what
   * the arena holds stays close to what the books charge. */
  uint64_t used = mmi_pool_used_guess(&mm->pool);
  bool park = used + (uint64_t)mm->caches.ncpu * mm->caches.bound <=
              mm->cfg.total_bytes;
  mmi_cache_free(&mm->caches, &mm->backing, p, size, park);
}

void mmi_blocks_reclaim(mm_t *mm) {
  if (mmi_caches_parked(&mm->caches))
    mmi_caches_drain(&mm->caches, &mm->backing, false);
}

/* A grant whose block the allocator could not make is a decline after
 * all (its charge was rolled back). */
static void count_undone_grant(mm_t *mm, const mmi_grant *g) {
  mmi_count_sub(&mm->counters, MMI_GRANTED, 1);
  if (g->inside)
    mmi_count_sub(&mm->counters, MMI_HELD_GRANTED, 1);
  mmi_count_add(&mm->counters, MMI_DECLINED, 1);
}

mm_status mm_exec_alloc(mm_t *mm, uint64_t exec_id, size_t size,
                        int64_t timeout_ns, void **out) {
  if (!mm || !out || size == 0 || size > mm->cfg.max_execution_request ||
      !mmi_timeout_valid(timeout_ns) || mmi_in_evict_callback(mm))
    return MM_EINVAL;
  uint64_t charged = mmi_backing_size(&mm->backing, size);
  if (!charged || charged > mm->cfg.total_bytes)
    return MM_EINVAL; /* its size class could never be granted */
  /* The record first: nothing that can fail is left for after a grant
   * that may have evicted. */
  mmi_alloc *rec = mmi_meta_alloc(sizeof *rec);
  if (!rec) {
    mmi_count_add(&mm->counters, MMI_DECLINED, 1);
    return MM_ENOMEM;
  }
  mmi_grant grant = {.block_size = charged};
  mm_status st = mmi_request_acquire(mm, MM_POOL_EXECUTION, exec_id, charged,
                                     timeout_ns, NULL, NULL, NULL, &grant);
  if (st != MM_OK) {
    mmi_meta_free(rec);
    goto out;
  }
  if (grant.inside)
    mmi_test_point(mm, MMI_TP_HELD_GRANTED);

  /* A grant that evicted made the block already; else make it now, and if
   * the allocator fails roll every charge back (nothing was evicted). */
  void *p = grant.block ? grant.block : mmi_block_alloc(mm, charged);
  if (!p) {
    mmi_meta_free(rec);
    (void)mmi_exec_release_gen(mm, exec_id, grant.exec_gen, charged);
    count_undone_grant(mm, &grant);
    st = MM_ENOMEM;
    goto out;
  }
  rec->node.key = (uint64_t)(uintptr_t)p;
  rec->exec_id = exec_id;
  rec->exec_gen = grant.exec_gen;
  rec->charged = charged;
  mm_store_relaxed_u32(&rec->state, ALLOC_LIVE);
  mmi_rcu_read_lock();
  mmi_node *got = mmi_registry_insert_unique(mm->allocs, &rec->node);
  assert(got == &rec->node); /* a live block has one address */
  (void)got;
  mmi_rcu_read_unlock();
  *out = p;
out:
  if (grant.inside)
    mmi_held_leave(mm); /* the last touch of @mm */
  return st;
}

mm_status mm_exec_free(mm_t *mm, uint64_t exec_id, void *ptr) {
  if (!mm || !ptr)
    return MM_EINVAL;
  uint64_t charged = 0, gen = 0;
  mm_status st = MM_EINVAL;
  mmi_rcu_read_lock();
  mmi_node *n = mmi_registry_find(mm->allocs, (uint64_t)(uintptr_t)ptr);
  if (n) {
    mmi_alloc *rec = caa_container_of(n, mmi_alloc, node);
    uint32_t live = ALLOC_LIVE;
    /* Commit point: one CAS; a second free of the block loses it. */
    if (rec->exec_id == exec_id &&
        mm_cas_acq_rel_u32(&rec->state, &live, ALLOC_FREED)) {
      charged = rec->charged;
      gen = rec->exec_gen;
      if (mmi_registry_remove(mm->allocs, &rec->node))
        mmi_rcu_retire(&rec->node);
      st = MM_OK;
    }
  }
  mmi_rcu_read_unlock();
  if (st != MM_OK)
    return st; /* not the manager's, not this id's, or freed: untouched */
  mmi_block_free(mm, ptr, charged); /* memory first ... */
  /* ... then the charge, from the incarnation of the id that holds it
   * (none if mm_release_all_execution returned it while the block lived:
   * never from a later incarnation's). */
  (void)mmi_exec_release_gen(mm, exec_id, gen, charged);
  return MM_OK;
}

/* A page's block is its whole charge, so that the page's size as charged
 * (what the eviction callback is told) is its memory's. */
uint64_t mmi_page_block_size(mm_t *mm, size_t size) {
  uint64_t c = mmi_page_round(mm, size);
  for (int i = 0; c && i < 8; i++) {
    uint64_t next = mmi_page_round(mm, mmi_backing_size(&mm->backing, c));
    if (next == c)
      return c;
    c = next;
  }
  return 0;
}

mm_status mm_storage_alloc(mm_t *mm, uint64_t page_id, size_t size,
                           int64_t timeout_ns, void **out) {
  if (!mm || !out || size == 0 || !mmi_timeout_valid(timeout_ns) ||
      mmi_in_evict_callback(mm))
    return MM_EINVAL;
  uint64_t charged = mmi_page_block_size(mm, size);
  if (!charged || charged > mmi_pool_storage_max(&mm->pool))
    return MM_EINVAL;
  mmi_grant grant = {.block_size = charged};
  mm_status st = mmi_request_acquire(mm, MM_POOL_STORAGE, page_id, charged,
                                     timeout_ns, NULL, NULL, NULL, &grant);
  if (st != MM_OK)
    goto out;
  if (grant.inside)
    mmi_test_point(mm, MMI_TP_HELD_GRANTED);

  /* As in mm_exec_alloc: the block exists if the grant evicted. */
  void *data = grant.block ? grant.block : mmi_block_alloc(mm, charged);
  mmi_rcu_read_lock();
  if (data) {
    mmi_page_set_data(grant.page, data, charged);
    mmi_page_activate(mm, grant.page, 1); /* born pinned: the caller's pin */
  } else { /* every charge rolled back; nothing was evicted */
    mmi_give_back(mm, MM_POOL_STORAGE, charged);
    mmi_page_abandon(mm, grant.page); /* the id is free after the bytes */
    count_undone_grant(mm, &grant);
  }
  mmi_rcu_read_unlock();
  if (data)
    *out = data;
  else
    st = MM_ENOMEM;
out:
  if (grant.inside)
    mmi_held_leave(mm); /* the last touch of @mm */
  return st;
}

void mm_trim(mm_t *mm) {
  if (!mm)
    return;
  mmi_caches_drain(&mm->caches, &mm->backing, false);
  mmi_backing_trim(&mm->backing);
}

void mmi_alloc_drop(mmi_node *n, void *mm) {
  mmi_alloc *rec = caa_container_of(n, mmi_alloc, node);
  mmi_backing_free(&((mm_t *)mm)->backing, (void *)(uintptr_t)rec->node.key,
                   rec->charged);
  mmi_meta_free(rec);
}

/*
 * storage.c -- storage pages: registration, pinning, release.
 *
 * Each registered page has a record in mm->pages:
 *
 *   mmi_page { mmi_node; bytes; data; state }
 *
 *   state = | RETIRED (bit 63) | 0 ... | pin count (bits 0-31) |
 *
 * Every decision about a page is one CAS on its state word, so two
 * threads can never both win a race over the same page:
 *
 *   from          to               by
 *   live, pins n  live, pins n+1   mm_pin_storage
 *   live, pins n  live, pins n-1   mm_unpin_storage (n > 0)
 *   live, pins 0  RETIRED          mm_release_storage (commit point)
 *
 * A RETIRED record is as good as gone: pins and releases answer
 * MM_ENOENT, and whoever meets it in the registry helps unlink it.  Only
 * the release that retired it uncharges the pool and hands it to RCU.
 *
 * Registering a page: look for the id first (the common MM_EEXIST answer
 * costs no charge), charge the pool, then publish the record with an
 * insert that refuses duplicates.  If a racing acquire of the same id
 * published first, this one gives its charge back and answers MM_EEXIST:
 * the pool briefly counted bytes that were never granted, which can only
 * make another request wait or decline, never over-commit.
 */
#include "mm_internal.h"

#define PAGE_RETIRED   ((uint64_t)1 << 63)
#define PAGE_PINS_MASK ((uint64_t)UINT32_MAX)

typedef struct mmi_page {
  mmi_node node;
  uint64_t bytes; /* as charged: a multiple of page_size */
  void *data;     /* NULL: accounting-only */
  mm_atomic_u64 state;
} mmi_page;

/* Unlink a retired record; the release that retired it frees it. */
static void page_help_unlink(mm_t *mm, mmi_page *pg) {
  (void)mmi_registry_remove(mm->pages, &pg->node);
}

/* The live record for @page_id, or NULL.  In a read section. */
static mmi_page *page_find_live(mm_t *mm, uint64_t page_id) {
  mmi_node *n = mmi_registry_find(mm->pages, page_id);
  if (!n)
    return NULL;
  mmi_page *pg = caa_container_of(n, mmi_page, node);
  if (mm_load_relaxed_u64(&pg->state) & PAGE_RETIRED) {
    page_help_unlink(mm, pg);
    return NULL;
  }
  return pg;
}

/* @bytes rounded up to whole pages, or 0 if that overflows. */
static uint64_t page_round(const mm_t *mm, size_t bytes) {
  uint64_t mask = mm->cfg.page_size - 1;
  if (bytes > UINT64_MAX - mask)
    return 0;
  return ((uint64_t)bytes + mask) & ~mask;
}

mm_status mm_acquire_storage(mm_t *mm, uint64_t page_id, size_t bytes,
                             int64_t timeout_ns) {
  if (!mm || bytes == 0 || !mmi_timeout_valid(timeout_ns))
    return MM_EINVAL;
  uint64_t rounded = page_round(mm, bytes);
  if (rounded == 0 || rounded > mmi_pool_storage_max(&mm->pool))
    return MM_EINVAL;

  mm_status st;
  mmi_rcu_read_lock();
  if (page_find_live(mm, page_id)) {
    st = MM_EEXIST;
    goto out;
  }
  mmi_page *pg = mmi_meta_alloc(sizeof *pg);
  if (!pg) {
    st = MM_ENOMEM;
    mmi_count_add(&mm->counters, MMI_DECLINED, 1);
    goto out;
  }
  pg->node.key = page_id;
  pg->bytes = rounded;
  pg->data = NULL;
  mm_store_relaxed_u64(&pg->state, 0); /* born unpinned */

  if (!mmi_pool_charge_storage(&mm->pool, rounded)) {
    mmi_meta_free(pg);
    st = MM_ENOMEM;
    mmi_count_add(&mm->counters, MMI_DECLINED, 1);
    goto out;
  }
  for (;;) {
    mmi_node *got = mmi_registry_insert_unique(mm->pages, &pg->node);
    if (got == &pg->node) {
      st = MM_OK;
      mmi_count_add(&mm->counters, MMI_GRANTED, 1);
      mmi_count_add(&mm->counters, MMI_STORAGE_PAGES, 1);
      break;
    }
    mmi_page *other = caa_container_of(got, mmi_page, node);
    if (mm_load_relaxed_u64(&other->state) & PAGE_RETIRED) {
      page_help_unlink(mm, other); /* a dying record: clear it, retry */
      continue;
    }
    mmi_pool_uncharge_storage(&mm->pool, rounded);
    mmi_meta_free(pg); /* never published */
    st = MM_EEXIST;
    break;
  }
out:
  mmi_rcu_read_unlock();
  return st;
}

mm_status mm_release_storage(mm_t *mm, uint64_t page_id) {
  if (!mm)
    return MM_EINVAL;

  mm_status st = MM_ENOENT;
  mmi_rcu_read_lock();
  mmi_page *pg = page_find_live(mm, page_id);
  if (pg) {
    uint64_t s = mm_load_relaxed_u64(&pg->state);
    for (;;) {
      if (s & PAGE_RETIRED) {
        st = MM_ENOENT;
        break;
      }
      if (s & PAGE_PINS_MASK) {
        st = MM_EBUSY;
        break;
      }
      /* Commit point: an unpinned live page becomes retired; no pin can
       * succeed after this CAS, and no other release can win it. */
      if (mm_cas_acq_rel_u64(&pg->state, &s, PAGE_RETIRED)) {
        st = MM_OK;
        break;
      }
    }
    if (st == MM_OK) {
      page_help_unlink(mm, pg);
      mmi_pool_uncharge_storage(&mm->pool, pg->bytes);
      mmi_count_sub(&mm->counters, MMI_STORAGE_PAGES, 1);
      mmi_rcu_retire(&pg->node); /* readers may still hold it: call_rcu */
    }
  }
  mmi_rcu_read_unlock();
  return st;
}

mm_status mm_pin_storage(mm_t *mm, uint64_t page_id, void **data) {
  if (!mm)
    return MM_EINVAL;

  mm_status st = MM_ENOENT;
  mmi_rcu_read_lock();
  mmi_page *pg = page_find_live(mm, page_id);
  if (pg) {
    uint64_t s = mm_load_relaxed_u64(&pg->state);
    for (;;) {
      if (s & PAGE_RETIRED) {
        st = MM_ENOENT;
        break;
      }
      if ((s & PAGE_PINS_MASK) == PAGE_PINS_MASK) {
        st = MM_EINVAL;
        break;
      }
      /* Commit point: the pin exists iff this CAS succeeds; the acquire
       * half orders the read of pg->data below after it. */
      if (mm_cas_acq_rel_u64(&pg->state, &s, s + 1)) {
        st = MM_OK;
        break;
      }
    }
    if (st == MM_OK) {
      if ((s & PAGE_PINS_MASK) == 0)
        mmi_count_add(&mm->counters, MMI_PINNED_BYTES, pg->bytes);
      if (data)
        *data = pg->data;
    }
  }
  mmi_rcu_read_unlock();
  return st;
}

mm_status mm_unpin_storage(mm_t *mm, uint64_t page_id) {
  if (!mm)
    return MM_EINVAL;

  mm_status st = MM_ENOENT;
  mmi_rcu_read_lock();
  mmi_page *pg = page_find_live(mm, page_id);
  if (pg) {
    uint64_t s = mm_load_relaxed_u64(&pg->state);
    for (;;) {
      if (s & PAGE_RETIRED) {
        st = MM_ENOENT;
        break;
      }
      if ((s & PAGE_PINS_MASK) == 0) {
        st = MM_EINVAL;
        break;
      }
      /* Commit point: one pin fewer. */
      if (mm_cas_acq_rel_u64(&pg->state, &s, s - 1)) {
        st = MM_OK;
        break;
      }
    }
    if (st == MM_OK && (s & PAGE_PINS_MASK) == 1)
      mmi_count_sub(&mm->counters, MMI_PINNED_BYTES, pg->bytes);
  }
  mmi_rcu_read_unlock();
  return st;
}

void mmi_page_drop(mmi_node *n) {
  mmi_meta_free(caa_container_of(n, mmi_page, node));
}

/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * storage.c -- storage pages: records, pinning, release.
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
 *   live, pins 0  EVICTING         an eviction's claim (evict.c)
 *   EVICTING      EVICTING|RELEASED  mm_release_storage (answers MM_OK)
 *   EVICTING      EVICTING|NOTIFIED  the eviction, before its callback
 *   EVICTING      live, pins 0    the claim undone (mmi_page_unclaim)
 *   EVICTING|RELEASED  RETIRED    the claim undone: the release done here
 *   EVICTING|...  RETIRED         the eviction done (no callback if
 *                                 RELEASED: the page served it all the same)
 *
 * So every registered page ends in exactly one of two ways its owner
 * hears of: a release answered MM_OK, or one eviction callback.
 *
 *   PENDING       live, pins 0    the grant of a held request (held.c)
 *   PENDING       RETIRED         its deadline or cancel (held.c)
 *
 * A PENDING record reserves the id of a held storage request: acquires of
 * the id answer MM_EEXIST, pins and releases MM_ENOENT.  A RETIRED record
 * is as good as gone: pins and releases answer MM_ENOENT, and whoever
 * meets it in the registry helps unlink it; the one whose unlink succeeds
 * hands it to RCU.  Only the release that retired it uncharges the pool.
 *
 * Registering a page (acquire.c): look for the id first (the common
 * MM_EEXIST answer costs nothing), then reserve it with a PENDING record
 * published by an insert that refuses duplicates, and only then charge
 * (or evict, or hold).  Of racing acquires of one id exactly one gets
 * past the insert; nothing is charged or evicted for the others.
 */
#include "mm_internal.h"

#include "page.h"

static void page_retire_cb(struct rcu_head *head) {
  mmi_rcu_grace_acquire();
  mmi_meta_free(caa_container_of(head, mmi_page, node.rcu));
}

/* Drop a reference on @pg's record; the last retires it through RCU
 * (readers of the page table may still hold it).  Not mmi_rcu_retire:
 * the node is not the record's first member (page.h). */
static void page_put(mmi_page *pg) {
  /* acq_rel: the last holder sees every other holder's writes */
  if (mm_faa_acq_rel_u32(&pg->refs, (uint32_t)-1) == 1)
    mmi_rcu_defer(&pg->node.rcu, page_retire_cb);
}

/* Everyone who meets a retired record calls this; exactly one call
 * unlinks it, and that call drops the page table's reference (a handle
 * may keep the record a while longer). */
void mmi_page_unlink(mm_t *mm, mmi_page *pg) {
  if (mmi_registry_remove(mm->pages, &pg->node))
    page_put(pg); /* the table's */
}

/* The record for @page_id if it is not retired (it may be pending), or
 * NULL.  In a read section. */
static mmi_page *page_find(mm_t *mm, uint64_t page_id) {
  mmi_node *n = mmi_registry_find(mm->pages, page_id);
  if (!n)
    return NULL;
  mmi_page *pg = caa_container_of(n, mmi_page, node);
  if (mm_load_relaxed_u64(&pg->state) & PAGE_RETIRED) {
    mmi_page_unlink(mm, pg);
    return NULL;
  }
  return pg;
}

/* The record for @page_id unless it is retired or pending (a page being
 * evicted is returned: page_change decides), or NULL.  In a read section. */
static mmi_page *page_find_live(mm_t *mm, uint64_t page_id) {
  mmi_page *pg = page_find(mm, page_id);
  /* acquire: pairs with mmi_page_activate's release */
  if (pg && (mm_load_acquire_u64(&pg->state) & PAGE_PENDING))
    return NULL;
  return pg;
}

bool mmi_page_exists(mm_t *mm, uint64_t page_id) {
  return page_find(mm, page_id) != NULL;
}

uint64_t mmi_page_round(const mm_t *mm, size_t bytes) {
  uint64_t mask = mm->cfg.page_size - 1;
  if (bytes > UINT64_MAX - mask)
    return 0;
  return ((uint64_t)bytes + mask) & ~mask;
}

struct mmi_page *mmi_page_new(uint64_t page_id, uint64_t bytes) {
  mmi_page *pg = mmi_meta_alloc(sizeof *pg);
  if (!pg)
    return NULL;
  pg->node.key = page_id;
  pg->mm = NULL;
  mm_store_relaxed_u32(&pg->refs, 1); /* the table's, once it links it */
  pg->bytes = bytes;
  pg->data = NULL;
  pg->data_size = 0;
  mm_store_relaxed_u64(&pg->state, PAGE_PENDING);
  mm_store_relaxed_u64(&pg->last_use, 0);
  pg->slot = 0;
  pg->unsettled = false;
  pg->claimed = NULL;
  return pg;
}

void mmi_page_free_unpublished(struct mmi_page *pg) { mmi_meta_free(pg); }

mm_status mmi_page_reserve(mm_t *mm, struct mmi_page *pg) {
  pg->mm = mm;
  for (;;) {
    mmi_node *got = mmi_registry_insert_unique(mm->pages, &pg->node);
    if (got == &pg->node)
      break;
    mmi_page *other = caa_container_of(got, mmi_page, node);
    if (!(mm_load_relaxed_u64(&other->state) & PAGE_RETIRED))
      return MM_EEXIST;
    mmi_page_unlink(mm, other); /* a dying record: clear it, retry */
  }
  return MM_OK;
}

/* A page's bytes stop being unsettled: it is live, or its charge is
 * gone (subtracted after either, so the floor never counts too much).
 * News: a page that goes live unpinned is evictable, and live bytes count
 * toward the floor (mmi_unsettled_sub). */
static void page_settle(mm_t *mm, mmi_page *pg) {
  if (pg->unsettled) {
    pg->unsettled = false;
    mmi_unsettled_sub(mm, pg->bytes);
  }
}

void mmi_page_activate(mm_t *mm, struct mmi_page *pg, unsigned pins) {
  mmi_count(mm, MMI_STORAGE_PAGES, 1); /* before it can go */
  if (pins)
    mmi_count(mm, MMI_PINNED_BYTES, pg->bytes);
  mmi_victims_add(mm, pg); /* still PENDING: no probe claims it yet */
  /* release: whoever finds the page live finds it complete (its data
   * too).  Only the request that reserved a pending page writes its
   * state. */
  mm_store_release_u64(&pg->state, pins);
  assert(pg->unsettled); /* every page is charged through mmi_charge_new_page
                            or a storage eviction */
  page_settle(mm, pg);
}

void mmi_page_set_data(struct mmi_page *pg, void *data, size_t size) {
  pg->data = data; /* published by the activation's release store */
  pg->data_size = size;
}

void mmi_page_free_data(mm_t *mm, struct mmi_page *pg) {
  if (pg->data) {
    mmi_block_free(&mm->caches, pg->data, pg->data_size);
    pg->data = NULL;
  }
}

void mmi_page_abandon(mm_t *mm, struct mmi_page *pg) {
  page_settle(mm, pg); /* its charge, if it had one, went back before */
  mm_store_release_u64(&pg->state, PAGE_RETIRED);
  mmi_page_unlink(mm, pg);
}

/* The rules of the table above, one per call: from state @s, the next
 * state in *@next and MM_OK, or the status that refuses the change. */
static mm_status release_rule(uint64_t s, uint64_t *next) {
  *next = PAGE_RETIRED;
  return (s & PAGE_PINS_MASK) ? MM_EBUSY : MM_OK;
}

static mm_status pin_rule(uint64_t s, uint64_t *next) {
  *next = s + 1;
  return (s & PAGE_PINS_MASK) == PAGE_PINS_MASK ? MM_EINVAL : MM_OK;
}

static mm_status unpin_rule(uint64_t s, uint64_t *next) {
  *next = s - 1;
  return (s & PAGE_PINS_MASK) == 0 ? MM_EINVAL : MM_OK;
}

/*
 * One decision about live page @pg, made by @rule and committed by one CAS
 * on its state: the commit point of a release, a pin or an unpin.
 * Because each change is a single CAS from the exact state the rule saw,
 * a pin and a release of the same page cannot both win.  On MM_OK,
 * *@before is the state the CAS replaced.  @pg is alive: in a read
 * section, or held by a handle.
 */
static mm_status page_decide(mmi_page *pg,
                             mm_status (*rule)(uint64_t s, uint64_t *next),
                             uint64_t *before) {
  uint64_t s = mm_load_relaxed_u64(&pg->state), next;
  for (;;) {
    if (s & PAGE_RETIRED)
      return MM_ENOENT; /* released or evicted meanwhile */
    if (s & PAGE_EVICTING) {
      /* Claimed by an eviction.  A pin answers "no such page" (the claim
       * may yet be undone: see mm_pin_storage).  A release that comes
       * before the eviction commits to the page wins it: the evictor will
       * not call the callback for it, and finishes the release whether it
       * goes ahead (the bytes serve its request) or backs out
       * (mmi_page_unclaim). */
      if (rule != release_rule || (s & (PAGE_RELEASED | PAGE_NOTIFIED)))
        return MM_ENOENT;
      if (mm_cas_acq_rel_u64(&pg->state, &s, s | PAGE_RELEASED)) {
        *before = s;
        return MM_OK;
      }
      continue; /* claim undone, or committed, meanwhile: decide again */
    }
    if (s & PAGE_PENDING)
      return MM_ENOENT; /* (a handle's page is live before it has one) */
    mm_status st = rule(s, &next);
    if (st != MM_OK)
      return st;
    /* acq_rel: a pin's later read of the page's data comes after it */
    if (mm_cas_acq_rel_u64(&pg->state, &s, next)) {
      *before = s;
      return MM_OK;
    }
  }
}

/* page_decide on live page @page_id, found by its id: *@pg.  In a read
 * section. */
static mm_status page_change(mm_t *mm, uint64_t page_id,
                             mm_status (*rule)(uint64_t s, uint64_t *next),
                             mmi_page **pg, uint64_t *before) {
  *pg = page_find_live(mm, page_id);
  if (!*pg)
    return MM_ENOENT;
  return page_decide(*pg, rule, before);
}

/* The rest of a release, after @pg's state was made RETIRED (no pin can
 * succeed now and no other release can win it): its bytes go back, and
 * held requests hear of it (mmi_give_back).  In a read section. */
static void page_retire(mm_t *mm, mmi_page *pg) {
  mmi_victims_remove(mm, pg); /* before the charge is returned */
  mmi_page_free_data(mm, pg); /* memory first, then the charge */
  mmi_uncount(mm, MMI_STORAGE_PAGES, 1);
  mmi_page_unlink(mm, pg); /* pg stays readable to the end of the section */
  mmi_give_back(mm, MM_POOL_STORAGE, pg->bytes);
}

void mmi_page_unclaim(mm_t *mm, mmi_page *pg) {
  uint64_t s = PAGE_EVICTING;
  /* Evictable again: news for held requests, which may have found the
   * page claimed and been held (the eviction that claimed it never
   * happened).  release: the page is whole again for whoever pins it. */
  if (mm_cas_acq_rel_u64(&pg->state, &s, 0)) {
    mmi_held_news(mm);
    return;
  }
  /* Only a release changes a claimed page's state before the eviction
   * commits: it is EVICTING | RELEASED, and the release is done here.  Its
   * bytes are a gain, not something the eviction gives back: the owner
   * released them (a dispatch pass running this eviction must pass
   * again). */
  assert(s == (PAGE_EVICTING | PAGE_RELEASED));
  mm_store_release_u64(&pg->state, PAGE_RETIRED);
  mmi_evict_note_gain(mm);
  page_retire(mm, pg);
}

/* What follows a pin (@before: the state it replaced). */
static void pinned(mm_t *mm, mmi_page *pg, uint64_t before) {
  if ((before & PAGE_PINS_MASK) == 0)
    mmi_count(mm, MMI_PINNED_BYTES, pg->bytes);
  mmi_victims_touch(&mm->victims, pg);
}

/* What follows an unpin of a page of @bytes: true if it became evictable
 * (news, for the caller to tell once out of its read section). */
static bool unpinned(mm_t *mm, uint64_t bytes, uint64_t before) {
  if ((before & PAGE_PINS_MASK) != 1)
    return false;
  mmi_uncount(mm, MMI_PINNED_BYTES, bytes);
  return true;
}

mm_status mm_release_storage(mm_t *mm, uint64_t page_id) {
  if (!mm)
    return MM_EINVAL;
  mmi_page *pg;
  uint64_t before;
  mmi_rcu_read_lock();
  mm_status st = page_change(mm, page_id, release_rule, &pg, &before);
  if (st == MM_OK && !(before & PAGE_EVICTING))
    page_retire(mm, pg); /* else the evictor that claimed it finishes */
  mmi_rcu_read_unlock();
  return st;
}

mm_status mm_pin_storage(mm_t *mm, uint64_t page_id, void **data) {
  if (!mm)
    return MM_EINVAL;
  mmi_page *pg;
  uint64_t before;
  mmi_rcu_read_lock();
  mm_status st = page_change(mm, page_id, pin_rule, &pg, &before);
  if (st == MM_OK) {
    pinned(mm, pg, before);
    if (data)
      *data = pg->data;
  }
  mmi_rcu_read_unlock();
  return st;
}

mm_status mm_unpin_storage(mm_t *mm, uint64_t page_id) {
  if (!mm)
    return MM_EINVAL;
  mmi_page *pg;
  uint64_t before;
  mmi_rcu_read_lock();
  mm_status st = page_change(mm, page_id, unpin_rule, &pg, &before);
  bool evictable = st == MM_OK && unpinned(mm, pg->bytes, before);
  if (evictable)
    mmi_victims_touch(&mm->victims, pg); /* in use until now: recently used */
  mmi_rcu_read_unlock();
  if (evictable)
    mmi_held_news(mm); /* a held request may evict it now */
  return st;
}

/* ---- page handles ----------------------------------------------------------
 *
 * A handle is the page's record itself, with a reference of its own: the
 * record outlives its page (released, evicted) for as long as the handle
 * does, reading RETIRED, so every call through it stays safe and answers
 * MM_ENOENT.  A pin or an unpin through it is the one CAS on the state
 * word that page_decide makes, with no lookup and no read section: the
 * reference keeps the record, and the state word says whether the page
 * is still there.
 */

void mmi_page_hold(struct mmi_page *pg) {
  mm_faa_acq_rel_u32(&pg->refs, 1); /* (the caller holds one already) */
}

/* The public handle is the record (mm_page is never defined). */
static mmi_page *rec(const mm_page *h) { return (mmi_page *)(uintptr_t)h; }

void *mm_page_data(const mm_page *h) { return h ? rec(h)->data : NULL; }

mm_status mm_page_pin(mm_page *h) {
  if (!h)
    return MM_EINVAL;
  mmi_page *pg = rec(h);
  uint64_t before;
  mm_status st = page_decide(pg, pin_rule, &before);
  if (st == MM_OK)
    pinned(pg->mm, pg, before);
  return st;
}

/* The handle is not touched once the CAS has taken the pin away: from
 * then the page may be evicted by another thread, whose eviction callback
 * may put the handle while this call returns (the SQLite adapter frees
 * its record, and puts the handle, there).  So what follows the CAS is
 * read first, and the page is marked used while the pin still holds it. */
mm_status mm_page_unpin(mm_page *h) {
  if (!h)
    return MM_EINVAL;
  mmi_page *pg = rec(h);
  mm_t *mm = pg->mm;
  uint64_t bytes = pg->bytes, before;
  mmi_victims_touch(&mm->victims, pg); /* in use until now: recently used */
  mm_status st = page_decide(pg, unpin_rule, &before);
  if (st == MM_OK && unpinned(mm, bytes, before))
    mmi_held_news(mm); /* a held request may evict it now */
  return st;
}

mm_status mm_page_release(mm_page *h) {
  if (!h)
    return MM_EINVAL;
  mmi_page *pg = rec(h);
  mm_t *mm = pg->mm;
  uint64_t before;
  mmi_rcu_read_lock();
  mm_status st = page_decide(pg, release_rule, &before);
  if (st == MM_OK && !(before & PAGE_EVICTING))
    page_retire(mm, pg); /* else the evictor that claimed it finishes */
  mmi_rcu_read_unlock();
  return st;
}

void mm_page_put(mm_page *h) {
  if (h)
    page_put(rec(h));
}

void mmi_page_drop(mmi_node *n, void *mm) {
  mmi_page *pg = caa_container_of(n, mmi_page, node);
  mmi_page_free_data(mm, pg);
  mmi_meta_free(pg);
}

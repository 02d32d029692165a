/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * evict.c -- the victim set, and eviction: making room in the budget by
 * dropping unpinned storage pages.
 *
 * The victim set
 *
 * Every live storage page (registered, charged) sits in one slot of an
 * array sized at creation to twice the most pages storage could ever hold
 * (storage's largest size / page_size), so the array is never more than
 * half full:
 *
 *   slot:  [ pg ][    ][ pg ][    ][ pg ][ pg ][    ][    ] ...  2 x max
 *            ^ readers pick random slots under RCU; a page joins by CAS
 *              into the first empty slot after a random start, and
 *              leaves by storing NULL into its own slot.
 *
 * Picking a victim is a few random probes whatever the number of pages
 * (expected probes per live page found: slots / live pages, at most about
 * 2 when storage is full of page_size pages).  A reader holds a page only
 * inside an RCU read section; pages are freed through call_rcu after
 * they leave their slot and the registry, so a probe never touches freed
 * memory.  No lock, no shared free list: a page's join and leave touch
 * only its own slot.
 *
 * Policies: MM_EVICT_RANDOM claims the first unpinned page a probe finds;
 * MM_EVICT_SAMPLED_LRU looks at `samples` unpinned pages (Redis's
 * approximation) and claims the one pinned least recently, by the LRU
 * clock (the number of pages evicted so far: a logical time that only
 * evictions advance, so pins never write a shared line).  When probes
 * keep missing, a linear scan from a random slot settles the question,
 * but only if the pinned-bytes counter says enough could be unpinned.
 *
 * Claiming and all-or-nothing
 *
 * A page is claimed by one CAS of its state from 0 (live, no pins, no
 * flags) to EVICTING.  That is the whole race against pins and releases:
 * a pin and a claim of the same page cannot both win, and an EVICTING page
 * answers pins and releases with MM_ENOENT and acquires of its id with
 * MM_EEXIST.  A release that meets a claim wins the page if it comes
 * before the eviction commits to it (RELEASED: no callback for it, and the
 * release is finished by whoever ends the claim); after that (NOTIFIED) it
 * answers MM_ENOENT, and the callback is the owner's notice.  An eviction
 * for a request of b bytes
 *
 *   1. charges what is free now, up to b (a reservation);
 *   2. claims victims until they cover the rest;
 *   3. if it cannot: unclaims them (state back to 0, or released if a
 *      release won the page meanwhile) and returns the reservation --
 *      nothing was evicted;
 *   4. asks @commit whether the request still wants them (a held request
 *      commits its grant; a request for real memory makes its block, so
 *      that an allocator failure backs out with nothing evicted);
 *   5. commits to every claimed page (EVICTING -> EVICTING|NOTIFIED; a
 *      page a release won is finished at once, without a callback) and
 *      takes it out of the victim set;
 *   6. for each page: calls on_evict (the page can no longer be pinned;
 *      its bytes are still charged to storage, granted to no one), frees
 *      its block, retires and unlinks the record: its id is free again as
 *      soon as its own callback has returned;
 *   7. hands the evicted bytes to the request in one CAS on the pool word
 *      (storage use drops by what was evicted, the request's pool gains
 *      what it still needed): nobody else can take them in between.
 *
 * Everything it gives back on the way is news for held requests, told
 * once when it ends (the frame below, and mmi_held_news).
 *
 * The protected floor: an eviction for execution may not take the bytes
 * of live pages below storage_protected_bytes.  Before claiming a page it
 * reserves the page's bytes in `exec_evicting` (a versioned counter, so
 * no ABA) only if the live pages' bytes minus everything execution is
 * already evicting minus this page stay at or above the floor; after its
 * hand-over (which lowers storage use first) it returns the reservation.
 * Live pages' bytes are storage in use minus `unsettled`: what is charged
 * to storage without being a live page's (a new page before it is live,
 * with its eviction's reservation; a storage eviction's victims from
 * their commit to the hand-over).
 */
#include "mm_internal.h"

#include <sched.h>
#include <stdlib.h>

#define RANDOM_PROBES   64
#define LRU_ROUNDS      4
#define DEFAULT_SAMPLES 5
/* exec_evicting = version << 32 | pages in flight (at most 2^30 pages:
 * mm_create's limit), in units of page_size. */
#define EVICTING_VERSION  ((uint64_t)1 << 32)
#define EVICTING_PAGES(v) ((v) & (EVICTING_VERSION - 1))

/* The evictions running on this thread, innermost first (a callback may
 * call into another manager, which may evict too).  News that an
 * eviction raises -- claims and reservations it gives back, releases and
 * unpins its callbacks make -- is noted in its frame and told once, when
 * it ends (mmi_evict_charge): never inside it, where a pass could not
 * evict or would only re-enter the eviction under way. */
struct mmi_evict_frame {
  const mm_t *mm;
  struct mmi_evict_frame *outer;
  bool in_callback; /* its on_evict is running: acquires are refused */
  bool news;        /* mmi_held_news was called meanwhile */
  bool gained;      /* ... that is more room than before: from inside a
                       callback, or a release that won a claimed page */
};
MM_THREAD_LOCAL struct mmi_evict_frame *mmi_evicting;

static struct mmi_evict_frame *frame_of(const mm_t *mm) {
  for (struct mmi_evict_frame *f = mmi_evicting; f; f = f->outer)
    if (f->mm == mm)
      return f;
  return NULL;
}

bool mmi_in_evict_callback_slow(const mm_t *mm) {
  struct mmi_evict_frame *f = frame_of(mm);
  return f && f->in_callback;
}

bool mmi_evict_defer_news(const mm_t *mm) {
  struct mmi_evict_frame *f = frame_of(mm);
  if (!f)
    return false;
  f->news = true;
  if (f->in_callback)
    f->gained = true;
  return true;
}

void mmi_evict_note_gain(const mm_t *mm) {
  struct mmi_evict_frame *f = frame_of(mm);
  if (f)
    f->news = f->gained = true;
}

/* ---- randomness -------------------------------------------------------- */

/* splitmix64 on the calling thread's stripe: a fixed seed gives a fixed
 * sequence to a thread that runs alone. */
static uint64_t rng_next(mmi_victims *v) {
  const uint64_t golden = UINT64_C(0x9e3779b97f4a7c15);
  uint64_t z =
      mm_faa_relaxed_u64(&v->rng[mmi_stripe_of_thread()].state, golden) +
      golden;
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static uint32_t rng_slot(mmi_victims *v) {
  return (uint32_t)(((rng_next(v) >> 32) * v->nslots) >> 32);
}

/* ---- the set ----------------------------------------------------------- */

mm_status mmi_victims_init(mm_t *mm) {
  mmi_victims *v = &mm->victims;
  uint64_t max_pages = mmi_pool_storage_max(&mm->pool) / mm->cfg.page_size;
  assert(max_pages <= MMI_MAX_PAGES); /* mm_create checked */
  v->nslots = (uint32_t)(2 * max_pages);
  v->slot = calloc(v->nslots, sizeof *v->slot);
  if (!v->slot)
    return MM_ENOMEM;
  for (uint32_t i = 0; i < v->nslots; i++)
    mm_store_relaxed_ptr(&v->slot[i], NULL);
  v->policy = mm->cfg.eviction;
  v->samples = mm->cfg.lru_samples;
  v->protected_bytes = mm->cfg.storage_protected_bytes;
  mm_store_relaxed_u64(&v->exec_evicting, 0);
  mm_store_relaxed_u64(&v->unsettled, 0);
  mm_store_relaxed_u64(&v->over_evicting, 0);
  mm_store_relaxed_u64(&v->clock, 0);
  for (int s = 0; s < MMI_STRIPES; s++)
    mm_store_relaxed_u64(&v->rng[s].state,
                         mm->cfg.seed +
                             (uint64_t)s * UINT64_C(0x632be59bd9b4e019));
  return MM_OK;
}

void mmi_victims_fini(mm_t *mm) { free(mm->victims.slot); }

void mmi_victims_add(mm_t *mm, mmi_page *pg) {
  mmi_victims *v = &mm->victims;
  mm_store_relaxed_u64(&pg->last_use, mm_load_relaxed_u64(&v->clock));
  for (uint32_t i = rng_slot(v);; i = i + 1 == v->nslots ? 0 : i + 1) {
    void *empty = NULL;
    if (mm_load_relaxed_ptr(&v->slot[i]) != NULL)
      continue;
    pg->slot = i; /* written before the CAS publishes the page */
    /* release: a probe that finds pg finds it complete */
    if (mm_cas_release_ptr(&v->slot[i], &empty, pg))
      return;
  }
}

void mmi_victims_remove(mm_t *mm, mmi_page *pg) {
  /* Only the page's owner (its release, or its evictor) clears its slot. */
  mm_store_release_ptr(&mm->victims.slot[pg->slot], NULL);
}

void mmi_unsettled_add(mm_t *mm, uint64_t bytes) {
  /* Relaxed: the charge that follows (a full-barrier CAS) publishes it to
   * live_bytes, which reads storage in use with acquire first. */
  mm_faa_relaxed_u64(&mm->victims.unsettled, bytes);
}

void mmi_unsettled_sub_quiet(mm_t *mm, uint64_t bytes) {
  /* Late is safe for the floor: until it lands, the floor counts less
   * than is live.  seq_cst (a release at least): a reader that sees it
   * in its first read of unsettled sees the uncharge before it too
   * (live_bytes). */
  mm_faa_seq_cst_u64(&mm->victims.unsettled, (uint64_t)0 - bytes);
}

void mmi_unsettled_sub(mm_t *mm, uint64_t bytes) {
  mmi_unsettled_sub_quiet(mm, bytes);
  /* A waiter refused meanwhile must hear of it: the floor may let
   * execution evict more now. */
  mmi_held_news(mm);
}

bool mmi_charge_new_page(mm_t *mm, uint64_t bytes) {
  mmi_unsettled_add(mm, bytes);
  if (mmi_pool_charge(&mm->pool, MM_POOL_STORAGE, bytes))
    return true;
  mmi_test_point(mm, MMI_TP_CHARGE_FAILED);
  mmi_unsettled_sub(mm, bytes);
  return false;
}

/* ---- claiming ---------------------------------------------------------- */

/* The page in slot @i if it is live and unpinned now, else NULL. */
static mmi_page *probe(mmi_victims *v, uint32_t i) {
  /* acquire: pairs with the release that put the page in the slot */
  mmi_page *pg = mm_load_acquire_ptr(&v->slot[i]);
  if (pg && mm_load_relaxed_u64(&pg->state) != 0)
    return NULL;
  return pg;
}

/* Bytes of live pages, or fewer: storage in use minus what is charged
 * without being a live page's yet (a new page before its activation, an
 * eviction's reservation for it, storage's withheld budget).  Unsettled
 * bytes are added before they are charged and dropped after they are
 * uncharged, so unsettled is read on both sides of storage in use, and
 * the larger read taken: an add that storage in use counts is seen by the
 * read after it (storage in use read with acquire; the add is sequenced
 * before its charge), and a drop seen by the read before it (acquire,
 * pairing with the drop's release) comes after an uncharge that storage
 * in use then counts too. */
static uint64_t live_bytes(mm_t *mm) {
  uint64_t before = mm_load_acquire_u64(&mm->victims.unsettled);
  uint64_t in_use = mmi_pool_storage_charged_acquire(&mm->pool);
  uint64_t after = mm_load_relaxed_u64(&mm->victims.unsettled);
  uint64_t unsettled = before > after ? before : after;
  return in_use > unsettled ? in_use - unsettled : 0;
}

/* Reserve @bytes against the protected floor; false if they would take
 * the bytes of live pages below it. */
static bool floor_reserve(mm_t *mm, uint64_t bytes) {
  mmi_victims *v = &mm->victims;
  uint64_t page = mm->cfg.page_size, pages = bytes / page;
  uint64_t ev = mm_load_acquire_u64(&v->exec_evicting);
  for (;;) {
    uint64_t live = live_bytes(mm);
    if (live < (EVICTING_PAGES(ev) + pages) * page + v->protected_bytes)
      return false;
    /* Commit point of the reservation: no other eviction for execution
     * changed the counter since we read it (the version says so). */
    if (mm_cas_acq_rel_u64(&v->exec_evicting, &ev,
                           ev + EVICTING_VERSION + pages))
      return true;
  }
}

/* Could execution evict @bytes without crossing the floor, as things are
 * now?  A precheck only: each claim reserves for real. */
static bool floor_allows(mm_t *mm, uint64_t bytes) {
  mmi_victims *v = &mm->victims;
  uint64_t in_flight = EVICTING_PAGES(mm_load_acquire_u64(&v->exec_evicting)) *
                       mm->cfg.page_size;
  return live_bytes(mm) >= in_flight + bytes + v->protected_bytes;
}

/* Give back a floor reservation: news, since another eviction for
 * execution refused by the floor may go ahead now.  (After a claim that
 * did not happen, plainly; after a hand-over too: storage in use dropped
 * first, and until this lands the evicted pages count twice.) */
static void floor_release(mm_t *mm, uint64_t bytes) {
  mmi_victims *v = &mm->victims;
  uint64_t pages = bytes / mm->cfg.page_size;
  uint64_t ev = mm_load_relaxed_u64(&v->exec_evicting);
  while (!mm_cas_acq_rel_u64(&v->exec_evicting, &ev,
                             ev + EVICTING_VERSION - pages))
    ;
  mmi_held_news(mm);
}

/* Claim @pg for eviction: one CAS from "live, unpinned" to EVICTING.  For
 * execution, within the protected floor.  Commit point of the claim. */
static bool claim(mm_t *mm, mmi_page *pg, bool for_exec) {
  if (for_exec && mm->victims.protected_bytes && !floor_reserve(mm, pg->bytes))
    return false;
  uint64_t s = 0;
  if (mm_cas_acq_rel_u64(&pg->state, &s, PAGE_EVICTING))
    return true;
  if (for_exec && mm->victims.protected_bytes)
    floor_release(mm, pg->bytes);
  return false;
}

/* Give @pg back: evictable again, or released if a release won it; both
 * are news (mmi_page_unclaim and floor_release tell held requests). */
static void unclaim(mm_t *mm, mmi_page *pg, bool for_exec) {
  mmi_page_unclaim(mm, pg);
  if (for_exec && mm->victims.protected_bytes)
    floor_release(mm, pg->bytes);
}

/* Could unpinned pages cover @bytes at all?  Storage in use minus pinned
 * bytes (exact when quiet): saves the linear scan when nothing can be
 * evicted. */
static bool maybe_evictable(mm_t *mm, uint64_t bytes) {
  uint64_t in_use = mmi_pool_storage_used(&mm->pool);
  uint64_t pinned = mmi_count_level(mm, MMI_PINNED_BYTES);
  return in_use > pinned && in_use - pinned >= bytes;
}

/* Find and claim one victim; NULL if none can be had. */
static mmi_page *claim_victim(mm_t *mm, bool for_exec, uint64_t still) {
  mmi_victims *v = &mm->victims;
  if (v->policy == MM_EVICT_SAMPLED_LRU) {
    for (int round = 0; round < LRU_ROUNDS; round++) {
      mmi_page *best = NULL;
      unsigned seen = 0;
      for (int p = 0; p < RANDOM_PROBES && seen < v->samples; p++) {
        mmi_page *pg = probe(v, rng_slot(v));
        if (!pg)
          continue;
        seen++;
        if (!best || mm_load_relaxed_u64(&pg->last_use) <
                         mm_load_relaxed_u64(&best->last_use))
          best = pg;
      }
      if (!best)
        break;
      if (claim(mm, best, for_exec))
        return best;
    }
  } else {
    for (int p = 0; p < RANDOM_PROBES; p++) {
      mmi_page *pg = probe(v, rng_slot(v));
      if (pg && claim(mm, pg, for_exec))
        return pg;
    }
  }
  /* Probes keep missing: few pages, or most pinned.  Settle it. */
  if (!maybe_evictable(mm, still))
    return NULL;
  uint32_t start = rng_slot(v);
  for (uint32_t k = 0; k < v->nslots; k++) {
    uint32_t i = start + k < v->nslots ? start + k : start + k - v->nslots;
    mmi_page *pg = probe(v, i);
    if (pg && claim(mm, pg, for_exec))
      return pg;
  }
  return NULL;
}

/* ---- eviction ---------------------------------------------------------- */

/* Give back every claimed page on @list. */
static void unclaim_all(mm_t *mm, mmi_page *list, bool for_exec) {
  for (mmi_page *pg = list, *next; pg; pg = next) {
    next = pg->claimed; /* once unclaimed, another eviction may link it */
    unclaim(mm, pg, for_exec);
  }
}

/* Claim victims covering @need bytes into *@list; false (nothing claimed)
 * if they cannot be had.  Whole pages: a page made redundant by a later,
 * larger one is given back, so the claim exceeds @need by less than one
 * page. */
static bool claim_enough(mm_t *mm, uint64_t need, bool for_exec,
                         mmi_page **list, uint64_t *claimed) {
  /* Hopeless before any claim?  Then claim nothing: a claim that has to
   * be undone makes its page answer pins with MM_ENOENT for a moment. */
  if (!maybe_evictable(mm, need) ||
      (for_exec && mm->victims.protected_bytes && !floor_allows(mm, need)))
    return false;
  /* Two evictions racing for the last victims can each claim some and
   * both fall short; the loser of such a race tries once more. */
  for (int attempt = 0; attempt < 2; attempt++) {
    *list = NULL;
    *claimed = 0;
    while (*claimed < need) {
      mmi_page *pg = claim_victim(mm, for_exec, need - *claimed);
      if (!pg)
        break;
      pg->claimed = *list;
      *list = pg;
      *claimed += pg->bytes;
      mmi_test_point(mm, MMI_TP_EVICT_CLAIMED);
    }
    if (*claimed >= need)
      break;
    unclaim_all(mm, *list, for_exec);
    if (*claimed == 0)
      return false; /* nothing to be had: no race lost */
    *list = NULL;
    *claimed = 0;
    sched_yield();
  }
  if (*claimed < need)
    return false;
  for (mmi_page **at = list; *at;) { /* drop what a later claim covers */
    mmi_page *pg = *at;
    if (*claimed - pg->bytes >= need) {
      *at = pg->claimed;
      *claimed -= pg->bytes;
      unclaim(mm, pg, for_exec);
    } else {
      at = &pg->claimed;
    }
  }
  return true;
}

/* Past the budget: claim up to @most of what pool @pool's use is over and
 * no other eviction under way covers (*@seen: how far over it was).  A
 * CAS on the count of what evictions cover: two evictions never take the
 * same bytes over. */
static uint64_t over_reserve(mm_t *mm, mm_pool pool, uint64_t most,
                             uint64_t *seen) {
  mm_atomic_u64 *c = &mm->victims.over_evicting;
  uint64_t covered = mm_load_acquire_u64(c);
  for (;;) {
    uint64_t excess = mmi_pool_excess(&mm->pool, pool);
    uint64_t x = excess > covered ? excess - covered : 0;
    if (x > most)
      x = most;
    *seen = excess;
    if (x == 0)
      return 0;
    /* Commit point of the claim on what is over. */
    if (mm_cas_acq_rel_u64(c, &covered, covered + x))
      return x;
  }
}

static void over_release(mm_t *mm, uint64_t x) {
  if (x)
    mm_faa_seq_cst_u64(&mm->victims.over_evicting, (uint64_t)0 - x);
}

static mmi_evict_result evict_charge(mm_t *mm, mm_pool pool, uint64_t bytes,
                                     uint64_t most_over,
                                     bool (*commit)(void *arg), void *arg,
                                     struct mmi_evict_frame *frame,
                                     bool *excess, uint64_t *freed) {
  bool for_exec = pool == MM_POOL_EXECUTION;
  /* A storage request's reservation is charged for a page not live yet:
   * unsettled from before the charge (the excess taken back after). */
  if (!for_exec)
    mmi_unsettled_add(mm, bytes);
  uint64_t reserved = mmi_pool_charge_upto(&mm->pool, pool, bytes);
  if (!for_exec && bytes > reserved)
    mmi_unsettled_sub(mm, bytes - reserved);
  mmi_test_point(mm, MMI_TP_EVICT_RESERVED);
  /* Past the budget (a shrink), the pages evicted cover what is over
   * first (up to @most_over; what no other eviction under way covers),
   * and only then the request: memory past the budget is released, never
   * handed on.  Storage covers only its own part of it (down to its pool
   * at this budget, which is above the protected floor); execution's
   * part is evicted for execution, within the floor. */
  uint64_t lacks = bytes - reserved, claimed = 0, seen = 0, over = 0;
  mmi_page *list = NULL;
  mmi_evict_result backed = MMI_EVICT_NO_ROOM;
  if (lacks || most_over) {
    over = over_reserve(mm, pool, most_over, &seen);
    if (!for_exec && over && over > mmi_pool_storage_own_excess(&mm->pool))
      goto back_out; /* execution's part: not storage's to evict */
  }
  uint64_t need = lacks + over;
  if (need && !claim_enough(mm, need, for_exec, &list, &claimed))
    goto back_out;
  /* A shrink since: what is over grew, and these victims would not cover
   * it.  (Its news makes the request try again.) */
  if (need && mmi_pool_excess(&mm->pool, pool) > seen) {
    unclaim_all(mm, list, for_exec);
    goto back_out;
  }
  /* Enough is claimed, nothing is evicted yet: the request's last chance
   * to back out (a held request whose deadline or cancel won, a block the
   * allocator could not make). */
  if (commit && !commit(arg)) {
    unclaim_all(mm, list, for_exec);
    backed = MMI_EVICT_BACKED_OUT;
    goto back_out;
  }
  /* Storage mmi_evicting for storage: its victims stop being live pages from
   * their commit, and the bytes handed over are the new page's, unsettled
   * until it is live.  (Execution's victims are counted in exec_evicting.) */
  if (!for_exec)
    mmi_unsettled_add(mm, claimed + lacks);

  /* Commit to every victim: from here a release is too late (MM_ENOENT),
   * and the callback is the owner's notice.  A release that came first
   * won its page: no callback, and it is done with at once; the bytes
   * serve this request all the same. */
  uint64_t evicted = 0;
  for (mmi_page **at = &list; *at;) {
    mmi_page *pg = *at;
    mmi_victims_remove(mm, pg);
    uint64_t s = PAGE_EVICTING;
    if (mm_cas_acq_rel_u64(&pg->state, &s, PAGE_EVICTING | PAGE_NOTIFIED)) {
      at = &pg->claimed;
      continue;
    }
    assert(s == (PAGE_EVICTING | PAGE_RELEASED)); /* (a strong CAS) */
    *at = pg->claimed;
    mmi_page_free_data(mm, pg);
    mmi_uncount(mm, MMI_STORAGE_PAGES, 1);
    /* release: whoever finds the record retired finds it complete */
    mm_store_release_u64(&pg->state, PAGE_RETIRED);
    mmi_page_unlink(mm, pg); /* its release answered MM_OK: the id is free */
  }
  /* Each victim's callback, then its end: its memory freed and its id
   * free again as soon as its own callback has returned. */
  for (mmi_page *pg = list, *next; pg; pg = next) {
    next = pg->claimed; /* read before the record can be reclaimed */
    if (mm->cfg.on_evict) {
      frame->in_callback = true; /* acquires on @mm are refused meanwhile */
      mm->cfg.on_evict(mm->cfg.evict_ctx, pg->node.key, pg->data,
                       (size_t)pg->bytes);
      frame->in_callback = false;
    }
    mmi_page_free_data(mm, pg);
    evicted++;
    mmi_count(mm, MMI_EVICTIONS, 1);
    mmi_count(mm, MMI_EVICTED_BYTES, pg->bytes);
    mmi_uncount(mm, MMI_STORAGE_PAGES, 1);
    mm_store_release_u64(&pg->state, PAGE_RETIRED);
    mmi_page_unlink(mm, pg); /* freed through RCU: we are in a read section */
  }
  /* The hand-over: evicted bytes to the request, the rest to free (or,
   * past the budget, to nobody).  What is over is no longer claimed a
   * moment before it is handed over: another eviction meanwhile may cover
   * it again (more evicted than needed), never less. */
  over_release(mm, over);
  if (claimed)
    mmi_hand_over(mm, pool, claimed, lacks);
  if (!for_exec)
    mmi_unsettled_sub(mm, claimed); /* the victims left storage in use */
  if (for_exec && mm->victims.protected_bytes && claimed)
    floor_release(mm, claimed);
  mm_faa_relaxed_u64(&mm->victims.clock, evicted);
  *excess = claimed > need;
  *freed = claimed;
  return MMI_EVICT_DONE;

back_out:
  over_release(mm, over);
  if (reserved)
    mmi_give_back(mm, pool, reserved);
  if (!for_exec && reserved)
    mmi_unsettled_sub(mm, reserved);
  return backed;
}

mmi_evict_result mmi_evict_charge(mm_t *mm, mm_pool pool, uint64_t bytes,
                                  bool (*commit)(void *arg), void *arg,
                                  bool *gained) {
  assert(!mmi_in_evict_callback(mm));
  struct mmi_evict_frame frame = {mm, mmi_evicting, false, false, false};
  bool excess = false;
  uint64_t freed = 0;
  mmi_evicting = &frame;
  mmi_evict_result r = evict_charge(mm, pool, bytes, bytes ? UINT64_MAX : 0,
                                    commit, arg, &frame, &excess, &freed);
  mmi_evicting = frame.outer;
  /* The news this eviction raised, told once and outside it. */
  if (frame.news)
    mmi_held_news(mm);
  if (gained)
    *gained = excess || frame.gained;
  return r;
}

uint64_t mmi_evict_excess(mm_t *mm, mm_pool pool, uint64_t most) {
  assert(!mmi_in_evict_callback(mm));
  struct mmi_evict_frame frame = {mm, mmi_evicting, false, false, false};
  bool excess = false;
  uint64_t freed = 0;
  mmi_evicting = &frame;
  mmi_rcu_read_lock();
  mmi_evict_result r =
      evict_charge(mm, pool, 0, most, NULL, NULL, &frame, &excess, &freed);
  mmi_rcu_read_unlock();
  mmi_evicting = frame.outer;
  if (frame.news)
    mmi_held_news(mm);
  return r == MMI_EVICT_DONE ? freed : 0;
}

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
 *   4. else, for each claimed page: leave the victim set, commit to it
 *      (EVICTING -> EVICTING|NOTIFIED, unless a release won it) and call
 *      on_evict (the page can no longer be pinned; its bytes are still
 *      charged to storage, granted to no one), then retire and unlink the
 *      record (the id is free again only now);
 *   5. hands the evicted bytes to the request in one CAS on the pool word
 *      (storage use drops by what was evicted, the request's pool gains
 *      what it still needed): nobody else can take them in between.
 *
 * The protected floor: an eviction for execution may not take storage in
 * use below storage_protected_bytes.  Before claiming a page it reserves
 * the page's bytes in `exec_evicting` (a versioned counter, so no ABA)
 * only if storage in use minus everything execution is already evicting
 * minus this page stays at or above the floor; after its hand-over
 * (which lowers storage use first) it returns the reservation.
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

/* The eviction callbacks running on this thread, innermost first (a
 * callback may call into another manager, which may evict too). */
struct mmi_evict_frame {
  mm_t *mm;
  struct mmi_evict_frame *outer;
  bool missed_kick;
};
static _Thread_local struct mmi_evict_frame *in_callback_of;

static struct mmi_evict_frame *frame_of(const mm_t *mm) {
  for (struct mmi_evict_frame *f = in_callback_of; f; f = f->outer)
    if (f->mm == mm)
      return f;
  return NULL;
}

bool mmi_in_evict_callback(const mm_t *mm) { return frame_of(mm) != NULL; }

void mmi_evict_note_missed_kick(const mm_t *mm) {
  struct mmi_evict_frame *f = frame_of(mm);
  if (f)
    f->missed_kick = true;
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

void mmi_victims_touch(mm_t *mm, mmi_page *pg) {
  if (mm->victims.policy == MM_EVICT_SAMPLED_LRU)
    mm_store_relaxed_u64(&pg->last_use,
                         mm_load_relaxed_u64(&mm->victims.clock));
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

/* Reserve @bytes against the protected floor; false if they would take
 * storage in use below it. */
static bool floor_reserve(mm_t *mm, uint64_t bytes) {
  mmi_victims *v = &mm->victims;
  uint64_t page = mm->cfg.page_size, pages = bytes / page;
  uint64_t ev = mm_load_acquire_u64(&v->exec_evicting);
  for (;;) {
    uint64_t in_use = mmi_pool_storage_used(&mm->pool);
    if (in_use < (EVICTING_PAGES(ev) + pages) * page + v->protected_bytes)
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
  return mmi_pool_storage_used(&mm->pool) >=
         in_flight + bytes + v->protected_bytes;
}

static void floor_release(mm_t *mm, uint64_t bytes) {
  mmi_victims *v = &mm->victims;
  uint64_t pages = bytes / mm->cfg.page_size;
  uint64_t ev = mm_load_relaxed_u64(&v->exec_evicting);
  while (!mm_cas_acq_rel_u64(&v->exec_evicting, &ev,
                             ev + EVICTING_VERSION - pages))
    ;
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

/* Give @pg back; *@released is set if a release had won the page, and
 * the release was finished instead (see mmi_page_unclaim). */
static void unclaim(mm_t *mm, mmi_page *pg, bool for_exec, bool *released) {
  if (mmi_page_unclaim(mm, pg))
    *released = true;
  if (for_exec && mm->victims.protected_bytes)
    floor_release(mm, pg->bytes);
}

/* Could unpinned pages cover @bytes at all?  Storage in use minus pinned
 * bytes (exact when quiet): saves the linear scan when nothing can be
 * evicted. */
static bool maybe_evictable(mm_t *mm, uint64_t bytes) {
  uint64_t in_use = mmi_pool_storage_used(&mm->pool);
  uint64_t pinned = mmi_count_gauge(&mm->counters, MMI_PINNED_BYTES);
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
static void unclaim_all(mm_t *mm, mmi_page *list, bool for_exec,
                        bool *released) {
  for (mmi_page *pg = list, *next; pg; pg = next) {
    next = pg->claimed; /* once unclaimed, another eviction may link it */
    unclaim(mm, pg, for_exec, released);
  }
}

/* Claim victims covering @need bytes into *@list; false (nothing claimed)
 * if they cannot be had.  Whole pages: a page made redundant by a later,
 * larger one is given back, so the claim exceeds @need by less than one
 * page. */
static bool claim_enough(mm_t *mm, uint64_t need, bool for_exec,
                         mmi_page **list, uint64_t *claimed, bool *released) {
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
    }
    if (*claimed >= need)
      break;
    unclaim_all(mm, *list, for_exec, released);
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
      unclaim(mm, pg, for_exec, released);
    } else {
      at = &pg->claimed;
    }
  }
  return true;
}

static mmi_evict_result evict_charge(mm_t *mm, mm_pool pool, uint64_t bytes,
                                     bool (*commit)(void *arg), void *arg,
                                     bool *freed_more, bool *released) {
  *freed_more = false;
  uint64_t reserved = mmi_pool_charge_upto(&mm->pool, pool, bytes);
  uint64_t need = bytes - reserved, claimed = 0;
  bool for_exec = pool == MM_POOL_EXECUTION;
  mmi_page *list = NULL;
  if (need && !claim_enough(mm, need, for_exec, &list, &claimed, released)) {
    if (reserved)
      mmi_pool_uncharge(&mm->pool, pool, reserved);
    *freed_more = reserved != 0;
    return MMI_EVICT_NO_ROOM;
  }
  /* Enough is claimed, nothing is evicted yet: the request's last chance
   * to back out (a held request whose deadline or cancel won). */
  if (commit && !commit(arg)) {
    unclaim_all(mm, list, for_exec, released);
    if (reserved)
      mmi_pool_uncharge(&mm->pool, pool, reserved);
    *freed_more = reserved != 0;
    return MMI_EVICT_BACKED_OUT;
  }

  struct mmi_evict_frame frame = {mm, in_callback_of, false};
  uint64_t evicted = 0;
  for (mmi_page *pg = list; pg; pg = pg->claimed) {
    mmi_victims_remove(mm, pg);
    /* Commit to the page: from here a release is too late (MM_ENOENT).  A
     * release that came first won it: no callback, the bytes serve this
     * request all the same. */
    uint64_t s = PAGE_EVICTING;
    if (!mm_cas_acq_rel_u64(&pg->state, &s, PAGE_EVICTING | PAGE_NOTIFIED)) {
      assert(s == (PAGE_EVICTING | PAGE_RELEASED)); /* (a strong CAS) */
      continue;
    }
    if (mm->cfg.on_evict) {
      in_callback_of = &frame; /* acquires on @mm are refused meanwhile */
      mm->cfg.on_evict(mm->cfg.evict_ctx, pg->node.key, pg->data,
                       (size_t)pg->bytes);
      in_callback_of = frame.outer;
    }
  }
  for (mmi_page *pg = list, *next; pg; pg = next) {
    next = pg->claimed;
    mmi_page_free_data(mm, pg); /* the callback has returned */
    if (!(mm_load_relaxed_u64(&pg->state) & PAGE_RELEASED)) {
      evicted++;
      mmi_count_add(&mm->counters, MMI_EVICTIONS, 1);
      mmi_count_add(&mm->counters, MMI_EVICTED_BYTES, pg->bytes);
    }
    mmi_count_sub(&mm->counters, MMI_STORAGE_PAGES, 1);
    /* release: whoever finds the record retired finds it complete */
    mm_store_release_u64(&pg->state, PAGE_RETIRED);
    mmi_page_unlink(mm, pg); /* the id is free again; freed through RCU */
  }
  /* The hand-over: evicted bytes to the request, the excess to free. */
  if (claimed)
    mmi_pool_move_from_storage(&mm->pool, pool, claimed, need);
  if (for_exec && mm->victims.protected_bytes && claimed)
    floor_release(mm, claimed);
  mm_faa_relaxed_u64(&mm->victims.clock, evicted);
  /* Whole pages freed more than was taken, or a callback released or
   * unpinned pages while no pass could evict for held requests. */
  *freed_more = claimed > need || frame.missed_kick;
  return MMI_EVICT_DONE;
}

mmi_evict_result mmi_evict_charge(mm_t *mm, mm_pool pool, uint64_t bytes,
                                  bool (*commit)(void *arg), void *arg,
                                  bool *freed_more) {
  assert(!mmi_in_evict_callback(mm));
  bool released = false;
  mmi_evict_result r =
      evict_charge(mm, pool, bytes, commit, arg, freed_more, &released);
  /* A release won a page whose claim we undid, and was finished here: news for
   * held requests, like any release (if a pass holds the baton, this only makes
   * it run again). */
  if (released)
    mmi_held_after_release(mm);
  return r;
}

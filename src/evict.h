/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * evict.h -- the victim set of live storage pages, and eviction.  See
 * evict.c.
 */
#ifndef MM_EVICT_H
#define MM_EVICT_H

#include <stdbool.h>
#include <stdint.h>

#include "atomics/mm_atomic.h"
#include "memory_manager.h"
#include "page.h"
#include "stats.h"

typedef struct mmi_victims {
  uint32_t nslots;          /* the most pages storage can ever hold */
  mm_atomic_ptr *slot;      /* [nslots]: a live page, or NULL */
  int policy;               /* MM_EVICT_RANDOM or MM_EVICT_SAMPLED_LRU */
  unsigned samples;         /* sampled LRU: pages compared per victim */
  uint64_t protected_bytes; /* execution may not evict storage below */

  /* Pages that evictions for execution have claimed and not yet handed
   * over, with a version in the top bits (no ABA): the protected floor. */
  _Alignas(MM_CACHE_LINE) mm_atomic_u64 exec_evicting;
  /* Storage bytes charged (or about to be) that are no live page's yet:
   * new pages between their charge and their activation, with their
   * evictions' reservations.  The floor does not count them. */
  _Alignas(MM_CACHE_LINE) mm_atomic_u64 unsettled;
  /* Use past the budget (a shrink) that evictions under way have claimed
   * pages for and not yet handed over: another eviction covers only the
   * rest. */
  _Alignas(MM_CACHE_LINE) mm_atomic_u64 over_evicting;
  /* The LRU clock: pages evicted so far.  Written by evictions only. */
  _Alignas(MM_CACHE_LINE) mm_atomic_u64 clock;
  /* Random streams, one per counter stripe (so per thread, mostly). */
  struct {
    _Alignas(MM_CACHE_LINE) mm_atomic_u64 state;
  } rng[MMI_STRIPES];
} mmi_victims;

/* MM_ENOMEM if the slot arrays cannot be allocated. */
mm_status mmi_victims_init(mm_t *mm);
void mmi_victims_fini(mm_t *mm);

/* A page becomes live (it holds a charge): it joins the set.  Cannot fail:
 * live pages never outnumber slots. */
void mmi_victims_add(mm_t *mm, mmi_page *pg);
/* A page stops being live (released or evicted): it leaves the set,
 * before its charge is returned. */
void mmi_victims_remove(mm_t *mm, mmi_page *pg);
/* A pin: the page was used now (sampled LRU).  Inline: a handle's pin
 * and unpin make no other call. */
static inline void mmi_victims_touch(mmi_victims *v, mmi_page *pg) {
  if (v->policy == MM_EVICT_SAMPLED_LRU)
    mm_store_relaxed_u64(&pg->last_use, mm_load_relaxed_u64(&v->clock));
}

/* Unsettled storage (see mmi_victims.unsettled).  Bytes are added before
 * they are charged (or before the pages holding them stop being live) and
 * subtracted once they are a live page's again or no longer charged, so
 * storage in use minus unsettled never counts a byte that is not a live
 * page's.  A subtraction is news for held requests (the floor may let
 * more go), and a page going live subtracts its bytes: a new page is
 * news. */
void mmi_unsettled_add(mm_t *mm, uint64_t bytes);
void mmi_unsettled_sub(mm_t *mm, uint64_t bytes);
/* The same without the news: the caller tells held requests after
 * (mmi_budget_apply, under a lock no callback may meet). */
void mmi_unsettled_sub_quiet(mm_t *mm, uint64_t bytes);

/* Charge @bytes of storage for a new page from free memory; true if
 * charged.  The bytes are then unsettled until the page settles them
 * (mmi_page_activate, mmi_page_abandon: set its `unsettled`).  A storage
 * eviction (mmi_evict_charge) leaves its @bytes unsettled the same way. */
bool mmi_charge_new_page(mm_t *mm, uint64_t bytes);

typedef enum {
  MMI_EVICT_DONE,       /* @bytes are charged to @pool */
  MMI_EVICT_NO_ROOM,    /* unpinned pages cannot make the room */
  MMI_EVICT_BACKED_OUT, /* @commit said no */
} mmi_evict_result;

/*
 * Make @bytes of @pool charged, evicting unpinned storage pages if what is
 * free is not enough: all or nothing.  Once enough victims are claimed
 * and before anything is evicted, @commit (if not NULL) is asked whether
 * the request still wants them (a held request that has not ended; a
 * block that the allocator could make); if it says no, everything is
 * given back.  On MMI_EVICT_DONE each evicted page's callback has
 * returned.  On the other answers nothing was evicted and nothing is
 * charged.  Everything it gives back, and an excess of whole pages, goes
 * through mmi_held_news.  *@gained (if not NULL) says whether the room
 * now free is more than before: an excess of whole pages, or a release or
 * unpin made by a callback (a dispatch pass notes it for itself).  In a
 * read section; never from inside an eviction callback of @mm.
 */
mmi_evict_result mmi_evict_charge(mm_t *mm, mm_pool pool, uint64_t bytes,
                                  bool (*commit)(void *arg), void *arg,
                                  bool *gained);

/* Past the budget (after a shrink): evict unpinned pages covering what
 * pool @pool's use is over, up to @most bytes of it (all or nothing), and
 * release them to nobody.  Returns the bytes evicted (whole pages; 0 if
 * unpinned pages cannot cover it).  Not in a read section; never from
 * inside an eviction callback of @mm. */
uint64_t mmi_evict_excess(mm_t *mm, mm_pool pool, uint64_t most);

/* Is the calling thread inside an eviction callback of @mm?  (A load of
 * the thread's innermost eviction, NULL in nearly every call.) */
struct mmi_evict_frame;
extern MM_THREAD_LOCAL struct mmi_evict_frame *mmi_evicting;
bool mmi_in_evict_callback_slow(const mm_t *mm);

static inline bool mmi_in_evict_callback(const mm_t *mm) {
  return mmi_evicting && mmi_in_evict_callback_slow(mm);
}

/* News that a dispatch pass must not take for its own doing: a kick made
 * inside an eviction callback of @mm (where a pass may not evict), or a
 * release that won a page the eviction had claimed, finished by the
 * eviction.  It is told when the eviction ends, and a pass that runs the
 * eviction passes again (*gained). */
void mmi_evict_note_gain(const mm_t *mm);

/* Is the calling thread inside an eviction of @mm (its callbacks
 * included)?  Then news for held requests is noted, and told when the
 * eviction ends: true.  For mmi_held_news only. */
bool mmi_evict_defer_news(const mm_t *mm);

#endif /* MM_EVICT_H */

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
/* A pin: the page was used now (sampled LRU). */
void mmi_victims_touch(mm_t *mm, mmi_page *pg);

typedef enum {
  MMI_EVICT_DONE,       /* @bytes are charged to @pool */
  MMI_EVICT_NO_ROOM,    /* unpinned pages cannot make the room */
  MMI_EVICT_BACKED_OUT, /* @commit said no */
} mmi_evict_result;

/*
 * Make @bytes of @pool charged, evicting unpinned storage pages if what is
 * free is not enough: all or nothing.  Once enough victims are claimed
 * and before anything is evicted, @commit (if not NULL) is asked whether
 * the request still wants them; if it says no, everything is given back.
 * On MMI_EVICT_DONE each evicted page's callback has returned.  On the
 * other answers nothing was evicted and nothing is charged.  *@freed_more
 * says whether memory that held requests could use may be free now (an
 * excess of whole pages, a reservation given back, a release made by a
 * callback): the caller tells them.  In a read section; never from inside
 * an eviction callback of @mm.
 */
mmi_evict_result mmi_evict_charge(mm_t *mm, mm_pool pool, uint64_t bytes,
                                  bool (*commit)(void *arg), void *arg,
                                  bool *freed_more);

/* Is the calling thread inside an eviction callback of @mm? */
bool mmi_in_evict_callback(const mm_t *mm);

/* A dispatch pass ran inside an eviction callback of @mm, where it may not
 * evict: have the eviction tell held requests once its callbacks return. */
void mmi_evict_note_missed_kick(const mm_t *mm);

#endif /* MM_EVICT_H */

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
  mm_atomic_u32 *next_free; /* [nslots]: links of the free-slot stack */
  int policy;               /* MM_EVICT_RANDOM or MM_EVICT_SAMPLED_LRU */
  unsigned samples;         /* sampled LRU: pages compared per victim */
  uint64_t protected_bytes; /* execution may not evict storage below */

  /* Free slots: a stack of indices, head = tag << 32 | (index + 1). */
  _Alignas(MM_CACHE_LINE) mm_atomic_u64 free_head;
  /* Bytes that evictions for execution have claimed and not yet handed
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

/*
 * Make @bytes of @pool charged, evicting unpinned storage pages if what is
 * free is not enough: all or nothing.  True if @bytes are now charged to
 * @pool (each evicted page's callback has returned before); false if not,
 * and then nothing was evicted and nothing is charged.  *@freed_more says
 * whether whole pages freed more than the request took.  Either answer
 * may leave memory free that held requests could use (a reservation given
 * back, an excess): the caller tells them.  In a read section; never from
 * inside an eviction callback.
 */
bool mmi_evict_charge(mm_t *mm, mm_pool pool, uint64_t bytes, bool *freed_more);

/* Is the calling thread inside an eviction callback? */
bool mmi_in_evict_callback(void);

#endif /* MM_EVICT_H */

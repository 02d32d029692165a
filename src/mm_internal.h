/*
 * mm_internal.h -- the manager's layout, shared by the files of src/.
 *
 * Internal names carry the prefix mmi_; public ones mm_.
 */
#ifndef MM_INTERNAL_H
#define MM_INTERNAL_H

#include "memory_manager.h"

#include "backing.h"
#include "cpucache.h"
#include "credit.h"
#include "evict.h"
#include "held.h"
#include "pool.h"
#include "registry.h"
#include "stats.h"
#include "testpoint.h"

/* 2^62: large enough for any machine, small enough that no sum of two
 * charges overflows 64 bits. */
#define MMI_MAX_TOTAL           ((uint64_t)1 << 62)
#define MMI_MIN_PAGE            ((size_t)4096)
#define MMI_MAX_PAGE            ((size_t)1 << 30)
#define MMI_DEFAULT_PAGE        ((size_t)4096)
#define MMI_DEFAULT_MAX_EXEC    ((size_t)8 << 20)
#define MMI_DEFAULT_OVERTAKE_NS ((int64_t)10 * 1000 * 1000)
#define MMI_DEFAULT_LRU_SAMPLES 5u
#define MMI_MAX_LRU_SAMPLES     64u
#define MMI_MAX_PAGES           ((uint64_t)1 << 30) /* storage, in pages */
#define MMI_DEFAULT_CPU_CACHE   ((size_t)256 << 10)
#define MMI_MAX_CPU_CACHE       ((size_t)64 << 20)

struct mm {
  mmi_pool pool; /* the hot word first, on its own cache line */

  /* Immutable after mm_create. */
  mm_config cfg;       /* with every default filled in */
  mmi_registry *execs; /* exec id -> mmi_exec (exec.c) */
  mmi_registry *pages; /* page id -> mmi_page (storage.c) */

  mmi_held held;         /* requests waiting for memory (held.c) */
  mmi_victims victims;   /* live pages, for eviction (evict.c) */
  mmi_backing backing;   /* real memory (backing.c) */
  mmi_cpu_caches caches; /* freed blocks, per CPU (cpucache.c) */
  mmi_credit credit;     /* execution charged ahead, per CPU (credit.c) */
  mmi_registry *allocs;  /* block address -> allocation (alloc.c) */
  mmi_counters counters;
};

/* Timeouts: MM_NO_WAIT, MM_WAIT_FOREVER or a positive count. */
static inline bool mmi_timeout_valid(int64_t timeout_ns) {
  return timeout_ns >= MM_WAIT_FOREVER;
}

/* ---- acquire.c: the front door ---- */
struct mmi_page;
/* What a grant for real memory hands back to alloc.c. */
typedef struct mmi_grant {
  struct mmi_page *page; /* storage: charged, still pending, the caller's */
  uint64_t exec_gen;     /* execution: the exec id's incarnation charged */
  uint64_t block_size;   /* the block the grant is for */
  void *block;           /* made by a grant that evicted, before any victim
                            went (so a failed allocation evicted nothing);
                            NULL: the caller makes it */
  bool inside;           /* it was held: call mmi_held_leave when done */
} mmi_grant;
/* Grant, decline or hold @bytes (already validated) of @pool for @id.
 * With @grant (no @cb): a granted storage page is left pending but charged
 * in @grant->page, for the caller to give memory and make live; an
 * execution grant says which incarnation of the id it was charged to.  A
 * grant that must evict makes the block of @grant->block_size first and
 * answers MM_ENOMEM, having evicted nothing, if the allocator fails. */
mm_status mmi_request_acquire(mm_t *mm, mm_pool pool, uint64_t id,
                              uint64_t bytes, int64_t timeout_ns,
                              mm_grant_fn cb, void *ctx, uint64_t *ticket,
                              mmi_grant *grant);

/* ---- exec.c: execution records ---- */
struct mmi_exec;
/* Add @bytes, already charged to the pool, to @exec_id's record.  In a
 * read section.  If a new record is needed it comes from *@spare when
 * that is set (then this cannot fail), else from the allocator
 * (MM_ENOMEM if that fails). */
mm_status mmi_exec_attribute(mm_t *mm, uint64_t exec_id, uint64_t bytes,
                             struct mmi_exec **spare, uint64_t *gen);
/* Return @bytes attributed to incarnation @gen of @exec_id (see
 * mmi_grant); MM_EINVAL, and nothing returned, if that incarnation is
 * gone (mm_release_all_execution returned its bytes already). */
mm_status mmi_exec_release_gen(mm_t *mm, uint64_t exec_id, uint64_t gen,
                               uint64_t bytes);
struct mmi_exec *mmi_exec_spare_new(void);
void mmi_exec_spare_free(struct mmi_exec *e);
void mmi_exec_drop(mmi_node *n, void *mm);

/* ---- storage.c: page records ---- */
struct mmi_page;
/* @bytes rounded up to whole pages, or 0 if that overflows. */
uint64_t mmi_page_round(const mm_t *mm, size_t bytes);
/* Is @page_id registered (live or reserved by a held request)?  In a read
 * section. */
bool mmi_page_exists(mm_t *mm, uint64_t page_id);
/* A private record; NULL if out of memory. */
struct mmi_page *mmi_page_new(uint64_t page_id, uint64_t bytes);
void mmi_page_free_unpublished(struct mmi_page *pg);
/* Reserve the page's id: the record is registered PENDING (pins and
 * releases see no such page, acquires see MM_EEXIST).  MM_EEXIST if the
 * id is taken.  In a read section. */
mm_status mmi_page_reserve(mm_t *mm, struct mmi_page *pg);
/* A reserved page whose bytes are now charged becomes live with @pins pins
 * (0, or 1: born pinned) and joins the victim set; or it is abandoned
 * (unlinked, freed through RCU).  Either settles its unsettled bytes
 * (mmi_charge_new_page), after any charge it had went back.  In a read
 * section. */
void mmi_page_activate(mm_t *mm, struct mmi_page *pg, unsigned pins);
/* Give a pending page its memory (before mmi_page_activate). */
void mmi_page_set_data(struct mmi_page *pg, void *data, size_t size);
/* Give a retired or abandoned page's memory back (before its charge). */
void mmi_page_free_data(mm_t *mm, struct mmi_page *pg);
void mmi_page_abandon(mm_t *mm, struct mmi_page *pg);
/* Undo an eviction's claim of @pg: it is evictable again, or, if a
 * release won the claimed page, the release is finished here.  Either is
 * news for held requests (mmi_held_news).  In a read section. */
void mmi_page_unclaim(mm_t *mm, struct mmi_page *pg);
/* Unlink a retired record; the one caller whose unlink succeeds retires
 * it through RCU.  In a read section. */
void mmi_page_unlink(mm_t *mm, struct mmi_page *pg);
void mmi_page_drop(mmi_node *n, void *mm);

/* ---- alloc.c: blocks ---- */
void mmi_alloc_drop(mmi_node *n, void *mm);
/* A block of @size, and its return: through this CPU's cache. */
void *mmi_block_alloc(mm_t *mm, size_t size);
void mmi_block_free(mm_t *mm, void *p, size_t size);
/* The books are nearly full: give parked blocks back to the arena. */
void mmi_blocks_reclaim(mm_t *mm);
/* What mm_storage_alloc(@size) charges: the smallest whole number of
 * pages that is also a size class of the arena; 0 if there is none. */
uint64_t mmi_page_block_size(mm_t *mm, size_t size);

#endif /* MM_INTERNAL_H */

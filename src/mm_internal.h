/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * mm_internal.h -- the manager's layout, shared by the files of src/.
 *
 * Internal names carry the prefix mmi_; public ones mm_.
 */
#ifndef MM_INTERNAL_H
#define MM_INTERNAL_H

#include "memory_manager.h"

#include "atomics/mm_futex.h"

#include "backing.h"
#include "consumer.h"
#include "evict.h"
#include "held.h"
#include "pool.h"
#include "registry.h"
#include "stats.h"
#include "tcache.h"
#include "testpoint.h"

/* 2^62: large enough for any machine, small enough that no sum of two
 * charges overflows 64 bits. */
#define MMI_MAX_TOTAL             ((uint64_t)1 << 62)
#define MMI_DEFAULT_AUTO_FRACTION 0.75
#define MMI_MIN_PAGE              ((size_t)4096)
#define MMI_MAX_PAGE              ((size_t)1 << 30)
#define MMI_DEFAULT_PAGE          ((size_t)4096)
#define MMI_DEFAULT_MAX_EXEC      ((size_t)8 << 20)
#define MMI_DEFAULT_OVERTAKE_NS   ((int64_t)10 * 1000 * 1000)
#define MMI_DEFAULT_LRU_SAMPLES   5u
#define MMI_MAX_LRU_SAMPLES       64u
#define MMI_MAX_PAGES             ((uint64_t)1 << 30) /* storage, in pages */
#define MMI_DEFAULT_CPU_CACHE     ((size_t)256 << 10)
#define MMI_MAX_CPU_CACHE         ((size_t)64 << 20)
#define MMI_DEFAULT_FOLLOW_NS     ((int64_t)1000 * 1000 * 1000)
#define MMI_DEFAULT_POLL_NS       ((int64_t)100 * 1000 * 1000)

struct mm {
  mmi_pool pool; /* the hot word first, on its own cache line */

  /* Immutable after mm_create. */
  mm_config cfg;       /* with every default filled in */
  mmi_registry *execs; /* exec id -> its own consumer (exec.c) */
  mmi_registry *pages; /* page id -> mmi_page (storage.c) */

  mmi_held held;       /* requests waiting for memory (held.c) */
  mmi_victims victims; /* live pages, for eviction (evict.c) */
  mmi_backing backing; /* real memory (backing.c) */
  mmi_tcaches caches;  /* freed blocks, per thread (tcache.c) */
  /* Consumers (consumer.c): by tag, by exec id (every consumer; an exec
   * id may have many), and the exec id's own (mm->execs, above). */
  mmi_registry *consumers, *by_exec;
  mm_atomic_u32 next_key;
  mm_atomic_u64 reclaimers;    /* consumers with a reclaim callback now */
  mm_atomic_u64 guaranteed;    /* the consumers' min limits, summed */
  mm_atomic_u64 active;        /* fair_share: consumers holding memory now */
  mm_atomic_u32 budget_source; /* MM_BUDGET_*: where the budget came from */
  /* The elastic budget (resize.c): resizes are serialised by `resize`
   * (never held across a callback or a wait); the execution pool's
   * smallest size in force or being put in force, for the guarantees'
   * check; how many resizes took effect. */
  pthread_mutex_t resize;
  mm_atomic_u32 budget_over; /* a shrink that timed out is counted in as
                                held until use fits (mmi_budget_pass) */
  mm_atomic_u64 exec_floor;
  mm_atomic_u64 budget_changes;
  /* External memory (external.c): sources by id, their sum, the polled
   * part (written by the service thread). */
  mmi_registry *externals;
  mm_atomic_u64 external_bytes;
  mm_atomic_u64 external_polled;
  int64_t poll_at, follow_at; /* the service thread's, when each is due */
  uint64_t followed;          /* ... and the budget it last followed */
  mmi_counters counters;
  int64_t born_ns; /* mm_create's clock: rates in mm_stats_print */
};

/*
 * The policy's part of a thread's record (the extra bytes of its block
 * cache, tcache.h: one per thread and manager, written only by the thread
 * that owns it): its share of the counters, and the exec ids' own
 * consumers it used last (exec.c).  Counting there is a plain load and
 * store; a sum reads every record (and the stripes, for a thread whose
 * record could not be made).
 */
#define MMI_MEMO_SLOTS 4

typedef struct mmi_thread_part {
  mm_atomic_u64 count[MMI_NCOUNTERS];
  struct {
    uint64_t exec_id;
    struct mm_consumer *c; /* NULL: empty */
  } memo[MMI_MEMO_SLOTS];
  unsigned memo_next;
} mmi_thread_part;

_Static_assert(sizeof(mmi_thread_part) <= MMI_TCACHE_EXTRA,
               "a thread's part does not fit its record");

static inline mmi_thread_part *mmi_thread_part_of(mmi_tcache *tc) {
  return (mmi_thread_part *)(void *)tc->extra;
}

/* Count on the calling thread's record @tc (its own: plain). */
static inline void mmi_count_here(mmi_tcache *tc, mmi_counter c,
                                  uint64_t delta) {
  mm_atomic_u64 *x = &mmi_thread_part_of(tc)->count[c];
  mm_store_relaxed_u64(x, mm_load_relaxed_u64(x) + delta); /* ours only */
}

static inline void mmi_count(mm_t *mm, mmi_counter c, uint64_t delta) {
  mmi_tcache *tc = mmi_tcache_mine(&mm->caches);
  if (tc)
    mmi_count_here(tc, c, delta);
  else
    mmi_count_add(&mm->counters, c, delta);
}

static inline void mmi_uncount(mm_t *mm, mmi_counter c, uint64_t delta) {
  mmi_count(mm, c, (uint64_t)0 - delta);
}

/* The sum of a counter, and of one that goes up and down (below zero
 * while threads count: read as zero). */
uint64_t mmi_count_total(const mm_t *mm, mmi_counter c);
uint64_t mmi_count_level(const mm_t *mm, mmi_counter c);

/* Timeouts: MM_NO_WAIT, MM_WAIT_FOREVER or a positive count. */
static inline bool mmi_timeout_valid(int64_t timeout_ns) {
  return timeout_ns >= MM_WAIT_FOREVER;
}

/* ---- acquire.c: the front door ---- */
struct mmi_page;
/* What a grant for real memory hands back to alloc.c. */
typedef struct mmi_grant {
  struct mmi_page *page;        /* storage: charged, still pending, the
                                   caller's */
  struct mm_consumer *consumer; /* execution: the consumer to credit (NULL:
                                   the exec id's own) */
  uint32_t key;                 /* execution: the tag of the consumer the
                                   grant was credited to */
  uint64_t block_size;          /* the block the grant is for */
  void *block;   /* made by a grant that evicted, before any victim
                    went (so a failed allocation evicted nothing);
                    NULL: the caller makes it */
  bool inside;   /* it was held: call mmi_held_leave when done */
  bool external; /* mm_external_set: charged, credited to nobody */
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

/* ---- exec.c: execution memory by exec id ---- */
/* The exec id's own consumer (the id-based calls'); with @create, made if
 * it has none (from *@spare when that is set), NULL if out of memory.  In
 * a read section. */
struct mm_consumer *mmi_exec_own(mm_t *mm, uint64_t exec_id, bool create,
                                 struct mm_consumer **spare);
/* @bytes, already charged to the pool word, become held by @exec_id's own
 * consumer (the one it has at this moment, or a new one made from
 * *@spare); returns its tag, or 0 if out of memory with no spare.  In a
 * read section. */
uint32_t mmi_exec_credit(mm_t *mm, uint64_t exec_id, uint64_t bytes,
                         struct mm_consumer **spare);
/* Charge @bytes to @exec_id's own consumer (its first charge makes it):
 * from its spare, a refill, or the front door (@grant as there). */
mm_status mmi_exec_charge(mm_t *mm, uint64_t exec_id, uint64_t bytes,
                          int64_t timeout_ns, mmi_grant *grant);
/* The exec id's own consumer, open, or NULL: one this thread used lately
 * if it still stands.  Good until the thread's next call of it; if *@put,
 * the caller holds a reference to put instead. */
struct mm_consumer *mmi_exec_own_here(mm_t *mm, uint64_t exec_id, bool *put);
/* Let go of every consumer the threads remember (mm_destroy). */
void mmi_exec_forget_all(mm_t *mm);

/* ---- budget.c: a budget from the environment ---- */
/* The lowest memory limit of the cgroups listed in @proc_cgroup (a
 * /proc/self/cgroup), read from the cgroup filesystem at @root (v2 at
 * @root or @root/unified, v1 at @root/memory), walking up from each
 * cgroup to the root; UINT64_MAX if none.  *@source: MM_BUDGET_CGROUP_V2
 * or _V1 for the one that gave it, else MM_BUDGET_PHYSICAL. */
uint64_t mmi_budget_cgroup(const char *proc_cgroup, const char *root,
                           int *source);
/* For tests: where mmi_budget_auto reads the process's cgroups (NULL:
 * /proc/self/cgroup and /sys/fs/cgroup). */
void mmi_budget_set_paths(const char *proc_cgroup, const char *root);
/* Physical memory (0 if unknown). */
uint64_t mmi_budget_physical(void);
/* @fraction of the lower of this process's cgroup limit and physical
 * memory, in whole @page_size pages; 0 if neither is known. */
uint64_t mmi_budget_auto(double fraction, uint64_t page_size, int *source);

/* ---- resize.c and external.c: the elastic budget ---- */
/* Is @total a budget the plan allows (two pages, a storage pool of a page
 * and of the protected floor, at most the ceiling)?  (mm.c) */
bool mmi_budget_allowed(const mm_config *plan, const mmi_pool *p,
                        uint64_t total);
/* The lock, the floor, the external sources' registry (mm_create). */
mm_status mmi_resize_init(mm_t *mm);
void mmi_resize_fini(mm_t *mm);
/* The service thread's periodic work (external_poll, follow_cgroup):
 * when it is first due (MM_FOREVER_NS: none), and doing what is due;
 * each returns the next time. */
int64_t mmi_service_first_tick(mm_t *mm);
int64_t mmi_service_tick(mm_t *mm);
/* In a dispatch pass while a shrink that timed out left use past the
 * budget: evict what is over, and once use fits count the shrink out.
 * True if anything was evicted (waiters passed over may fit now). */
bool mmi_budget_pass(mm_t *mm);
/* Polled external memory is now @bytes (the service thread). */
void mmi_external_polled(mm_t *mm, uint64_t bytes);
/* Use may pass the budget (a shrink, a charge of polled memory): count in
 * first (held.over: spare quota unused, every release and unpin kicks a
 * pass), then settle: evict, ask consumers (unless @no_ask), and wait
 * until @deadline for releases, until use fits the budget (or a later
 * resize put one in force that use fits, and use is within @total).
 * MM_OK (counted out), or MM_ETIMEDOUT (the count stays in until a pass
 * sees use fit). */
void mmi_budget_count_in(mm_t *mm);
mm_status mmi_budget_settle(mm_t *mm, uint64_t total, int64_t deadline,
                            bool no_ask);

/* ---- consumer.c: fair shares ---- */
/* With fair_share: may the request of @bytes by @c (NULL: @exec_id's own
 * consumer) be granted without taking it past 1/N of the memory
 * execution could have (N: the consumers holding memory, counting it)?
 * *@first, if set: is it below 1/2N, to be granted ahead of others?  In
 * a read section. */
bool mmi_fair_share_allows(mm_t *mm, struct mm_consumer *c, uint64_t exec_id,
                           uint64_t bytes, bool *first);

/* ---- reclaim.c: asking consumers to give memory back ---- */
/* Ask consumers with a reclaim callback, the one holding most first, for
 * @wanted bytes: never @asker unless it opted in, each at most once, and
 * stopping once they promised @wanted or @still_wanted(@arg) is false.
 * Not in a read section, a pass or an eviction. */
void mmi_reclaim_ask(mm_t *mm, struct mm_consumer *asker, uint64_t wanted,
                     bool (*still_wanted)(void *arg), void *arg);
/* Turn @c's callback off, waiting for a run of it on another thread to
 * return (mm_consumer_close; not from inside a callback: see reclaim.c). */
void mmi_reclaim_unset(struct mm_consumer *c);
/* Is the calling thread running a reclaim callback (of any manager)? */
bool mmi_in_reclaim_callback(void);
/* Ask @c no more, without waiting (its books were closed). */
void mmi_reclaim_off(struct mm_consumer *c);

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
/* A reference more on @pg's record, for a handle (the caller holds one:
 * the page is still pending). */
void mmi_page_hold(struct mmi_page *pg);
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
/* What mm_storage_alloc(@size) charges: the smallest whole number of
 * pages that is also a size class of the arena; 0 if there is none. */
uint64_t mmi_page_block_size(mm_t *mm, size_t size);

/* ---- held.c: pressure on the allocator ---- */
/* Blocks parked in the allocator's caches are memory the books do not
 * charge: they may park only while the budget has room for every cache
 * to be full.  Re-decide after a charge (and, while squeezed, after a
 * return of capacity). */
void mmi_pressure_update(mm_t *mm);
/* Would @more bytes in use leave no room for every cache to be full (or
 * is anyone held)?  Then nothing may park. */
bool mmi_pressure_tight(mm_t *mm, uint64_t more);

/* ---- consumer.c: the fast paths, inline for exec.c and alloc.c ---- */

/* May an acquire take from spare now, or must it queue behind held
 * requests?  Relaxed: fairness, not the wake-up rule (consumer.c). */
static inline bool mmi_spare_usable(const mm_t *mm) {
  const mmi_held *h = &mm->held;
  return (mm_load_relaxed_u64(&h->count[MM_POOL_EXECUTION]) |
          mm_load_relaxed_u64(&h->over)) == 0 &&
         !mm_load_relaxed_u32(&h->blocked[MM_POOL_EXECUTION]) &&
         (int64_t)mm_load_relaxed_u64(&h->bar_at[MM_POOL_EXECUTION]) ==
             MM_FOREVER_NS;
}

/* Are requests held, or is use past the budget (then what is released
 * goes back, not to spare)?  seq_cst: the Dekker pair with a waiter
 * (consumer.c), and with a shrink (resize.c). */
static inline bool mmi_anyone_held(const mm_t *mm) {
  return mm_load_seq_cst_u64(&mm->held.count[MM_POOL_EXECUTION]) +
             mm_load_seq_cst_u64(&mm->held.count[MM_POOL_STORAGE]) +
             mm_load_seq_cst_u64(&mm->held.over) !=
         0;
}

/* Charge @bytes to @c from its spare quota, if it has them and nothing
 * held competes; true if charged.  (The caller counts the grant.) */
static inline bool mmi_consumer_take_spare(struct mm_consumer *c,
                                           uint64_t bytes) {
  uint64_t w = mm_load_relaxed_u64(&c->books);
  while (w != MMI_CLOSED && mmi_books_spare(w) >= bytes &&
         mmi_books_held(w) + bytes <= MMI_HELD_MAX && mmi_spare_usable(c->mm)) {
    /* Commit point of an acquire from spare: one CAS on the books. */
    if (mm_cas_acq_rel_u64(&c->books, &w,
                           w - bytes + (bytes << MMI_SPARE_BITS)))
      return true;
  }
  return false;
}

/* Return @bytes that @c holds to its spare, if that keeps its spare
 * within two quanta; true if returned.  (Else mmi_consumer_release.) */
static inline bool mmi_consumer_release_fast(struct mm_consumer *c,
                                             uint64_t bytes) {
  uint64_t w = mm_load_relaxed_u64(&c->books);
  while (w != MMI_CLOSED && mmi_books_held(w) >= bytes &&
         mmi_books_spare(w) + bytes <= 2 * c->quantum) {
    /* Commit point of a release: seq_cst, the first half of the pair
     * with a waiter's count (consumer.c). */
    if (mm_cas_seq_cst_u64(&c->books, &w,
                           w - (bytes << MMI_SPARE_BITS) + bytes)) {
      if (mmi_anyone_held(c->mm))
        mmi_consumer_give_spare(c); /* held requests see every byte */
      return true;
    }
  }
  return false;
}

#endif /* MM_INTERNAL_H */

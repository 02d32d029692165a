/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * memory_manager.h -- one memory budget, two pools, for a multi-core
 * database engine.
 *
 * The manager governs a fixed budget (say 1 GiB) split into two pools:
 *
 *   execution  query working memory: hash tables, sort buffers.  Charged
 *              to an exec id (a task, a query, an operator: the engine
 *              chooses) in arbitrary byte amounts.
 *   storage    the engine's page cache.  Charged per page id, in whole
 *              pages of mm_config.page_size bytes.
 *
 *   0                    storage_init                           total
 *   |<------ storage ------->|<------------ execution ------------>|
 *                            ^ the boundary moves when one pool borrows
 *                              free capacity from the other, and moves
 *                              back as the borrower releases.
 *
 * Every request is granted whole, declined, or held until it can be
 * granted (with a deadline, or as an asynchronous callback); nothing is
 * ever granted in part and the sum of what is granted never exceeds the
 * budget, at any instant, under any interleaving of threads.  When it
 * must, execution borrows storage's capacity by evicting unpinned pages,
 * and a full page cache evicts to make room (see mm_evict_fn).  The
 * memory calls (mm_exec_alloc, mm_storage_alloc) hand out real memory from
 * the manager's own jemalloc arena, charged before it exists.
 *
 * Thread-safety: every function may be called from any thread at any time
 * between mm_create() and mm_destroy(), with no registration and no
 * external locking, except where its comment says otherwise.  The
 * acquire, release, pin and unpin calls take no lock of the manager's and
 * never wait for another thread unless asked to wait for memory.  They are
 * lock-free, not wait-free: while requests are held, a release (or a
 * cancel, or an MM_NO_WAIT acquire) may do the work of granting them,
 * which grows with their number.  (Under them: a thread's first call
 * registers it with liburcu, and the first deferred free starts
 * liburcu's worker, each once and under liburcu's mutex; records come
 * from malloc; a block that the CPU's cache cannot serve takes one of the
 * arena's bin locks.  docs/DESIGN.md, "no lock".)
 *
 * Errors: every call that takes caller input checks it and answers a bad
 * argument with a status (never abort() or assert()); a call that returns
 * an error has left the manager exactly as it was.
 */
#ifndef MEMORY_MANAGER_H
#define MEMORY_MANAGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MM_VERSION_MAJOR 0
#define MM_VERSION_MINOR 1
#define MM_VERSION_PATCH 0

/* Every public function is exported; everything else in the shared
 * library is hidden. */
#if defined(__GNUC__) || defined(__clang__)
#define MM_API __attribute__((visibility("default")))
#else
#define MM_API
#endif

/* An opaque manager.  Create with mm_create(), free with mm_destroy(). */
typedef struct mm mm_t;

/* The pool a request is charged to. */
typedef enum { MM_POOL_EXECUTION, MM_POOL_STORAGE } mm_pool;

/* Every status a call can return.  MM_OK is zero; the others are small
 * positive numbers, stable across releases. */
typedef enum {
  MM_OK = 0,
  MM_EINVAL,     /* bad argument, or a request no pool could ever grant;
                    nothing changed */
  MM_ENOMEM,     /* declined: it does not fit now and the caller asked not
                    to wait (or the allocator failed) */
  MM_ETIMEDOUT,  /* a held request reached its deadline; nothing granted */
  MM_ECANCELED,  /* a held request was cancelled (mm_cancel, or
                    mm_destroy) */
  MM_EEXIST,     /* page id already registered */
  MM_ENOENT,     /* no such page (never registered, released, or evicted)
                    / no such ticket */
  MM_EBUSY,      /* the page is pinned */
  MM_EINPROGRESS /* an asynchronous request is held; its callback reports
                    the outcome */
} mm_status;

/*
 * mm_strerror - a short, readable, distinct message for every status.
 *
 * Returns a static string; a value outside mm_status gets
 * "unknown mm_status".  Thread-safe, never fails.
 */
MM_API const char *mm_strerror(mm_status st);

/* Timeouts are in nanoseconds, relative to the call. */
#define MM_NO_WAIT      ((int64_t)0)  /* grant or decline at once */
#define MM_WAIT_FOREVER ((int64_t)-1) /* hold until granted */

/* Eviction policies (mm_config.eviction). */
enum { MM_EVICT_RANDOM = 0, MM_EVICT_SAMPLED_LRU = 1 };

/*
 * mm_evict_fn - called once for each storage page the manager evicts.
 *
 * @ctx:     mm_config.evict_ctx
 * @page_id: the evicted page
 * @data:    the page's memory, or NULL for an accounting-only page
 * @bytes:   the page's size as charged (a multiple of page_size)
 *
 * When: a request (storage, or execution borrowing from storage) does not
 * fit in free memory, and unpinned pages can make room.  Victims are
 * chosen by mm_config.eviction among unpinned pages: MM_EVICT_RANDOM, or
 * MM_EVICT_SAMPLED_LRU (lru_samples random unpinned pages compared, the
 * least recently pinned goes).  Eviction is all or nothing: a request
 * that is declined evicted nothing (a block that the allocator cannot
 * make, for mm_exec_alloc or mm_storage_alloc, is made before any victim
 * goes); a granted one evicted whole pages, only as many as it needed.
 * Execution never evicts a page that would take the bytes of live pages
 * (registered and charged; not counting bytes charged for a page that is
 * not live yet, nor pages another eviction for execution is taking) below
 * mm_config.storage_protected_bytes.  Storage's own evictions are not
 * bound by it: they make room for other pages.
 *
 * The callback is the place to write a dirty page back.  It is called
 * exactly once per evicted page, on the thread that makes the room: the
 * thread of the request that needed it, or, for a held request, the
 * thread that grants it (one whose release, unpin, cancel or acquire ran
 * the grant, a blocked caller at its deadline, or the manager's service
 * thread), or, when a shrink of the budget left use past it (see
 * mm_set_budget), the thread of mm_set_budget, or of a release, unpin or
 * request that runs a dispatch pass, or the service thread; always after
 * the page can no longer be pinned (mm_pin_storage answers MM_ENOENT) and
 * before its bytes are granted to anyone.  A held
 * request is granted before its victims' callbacks run, so it cannot time
 * out or be cancelled once pages were evicted for it.  The page id stays
 * taken until its own callback returns: an acquire of the id meanwhile
 * gets MM_EEXIST (it does not wait); afterwards, even while the same
 * eviction's other callbacks run, mm_release_storage(@page_id) answers
 * MM_ENOENT and the id may be acquired again (its bytes are handed to the
 * request after the last callback).  @data stays valid until the callback
 * returns; the block is freed then.
 *
 * The callback may call mm_pin_storage, mm_unpin_storage and
 * mm_release_storage on *other* pages (and the page-handle calls on their
 * handles), mm_page_put on any handle, its own page's included,
 * mm_execution_held, mm_get_stats,
 * mm_release_execution, mm_release_all_execution and mm_cancel.  It must
 * not call mm_destroy, and its acquires on the same manager (any
 * mm_acquire_*) are refused with MM_EINVAL: an acquire could need an
 * eviction, which would call the callback again on this thread.  It
 * should be short: the request that caused the eviction waits for it.
 */
typedef void (*mm_evict_fn)(void *ctx, uint64_t page_id, void *data,
                            size_t bytes);

/*
 * mm_config - how mm_create() builds a manager.
 *
 * Zero-initialise it, set total_bytes (or leave it 0 for a budget from
 * where the process runs), and change only what you need: every field
 * has "0 means default".  Fields are only ever added at the end, with a
 * new symbol version of mm_create (README, "ABI"): a program built
 * against an older header keeps working.
 */
typedef struct mm_config {
  size_t total_bytes;             /* at least 2 pages, at most 2^62
                                     bytes (0: from the environment, see
                                     auto_fraction), and storage's largest
                                     size at most 2^30 pages */
  double storage_fraction;        /* 0 means 0.5; otherwise strictly
                                     between 0 and 1 */
  size_t page_size;               /* storage granule, a power of two from
                                     4 KiB to 1 GiB; 0 means 4096 */
  size_t max_execution_request;   /* largest single execution request, at
                                     most total_bytes; 0 means 8 MiB (or
                                     total_bytes if that is smaller) */
  size_t storage_protected_bytes; /* storage that execution may not evict
                                     below, at most the storage pool's
                                     initial size; 0: none protected */
  bool storage_may_borrow;        /* storage may use free execution
                                     memory (Spark-style); default false */
  int eviction;                   /* MM_EVICT_RANDOM (0, default) or
                                     MM_EVICT_SAMPLED_LRU */
  uint64_t seed;                  /* random-eviction seed; 0 means seeded
                                     from the clock */
  mm_evict_fn on_evict;           /* may be NULL */
  void *evict_ctx;                /* passed to on_evict */
  int64_t overtake_limit_ns;      /* how long a held request may be passed
                                     over by younger, smaller ones that
                                     fit; 0 means 10 ms; negative: EINVAL */
  unsigned lru_samples;           /* MM_EVICT_SAMPLED_LRU: unpinned pages
                                     compared per victim; 0 means 5; at
                                     most 64 */
  size_t cpu_cache_bytes;         /* freed blocks parked per thread for
                                     reuse (blocks of up to 16 KiB: see
                                     "Real memory"); 0 means 256 KiB; at
                                     most 64 MiB.  (Named for the per-CPU
                                     caches it first bounded.) */
  bool reclaim_before_evict;      /* ask consumers to give memory back
                                     before evicting unpinned pages for
                                     an execution request that may wait;
                                     default false: evict first (see
                                     "Reclaim") */
  bool fair_share;                /* Spark's rule for execution memory
                                     among consumers: with N of them
                                     holding memory (the requester
                                     counted), a request that would take
                                     one past 1/N of what execution could
                                     have (the budget less storage in use)
                                     is declined, or held until its share
                                     grows, and a held request of one
                                     below 1/2N is granted ahead of all
                                     others.  Consumers then reserve no
                                     quota ahead (every acquire is judged
                                     against its share).  Default false */
  double auto_fraction;           /* total_bytes 0: the budget is this
                                     fraction of the limit of the
                                     process's cgroup (v2 memory.max and
                                     memory.high, v1
                                     memory.limit_in_bytes; the lowest
                                     limit of its cgroup and those above
                                     it; "max" or a huge number is no
                                     limit), or of physical memory if
                                     that is lower or there is none, in
                                     whole pages.  0 means 0.75 (a quarter
                                     left for what the budget does not
                                     count: code, stacks, other
                                     allocators); otherwise in (0, 1] */
  size_t max_total_bytes;         /* the largest budget mm_set_budget may
                                     set: at least total_bytes (as found
                                     from the environment, if that is
                                     0); 0 means total_bytes.  The victim
                                     set is sized for it: 16 bytes per
                                     page storage could hold at it */
  bool follow_cgroup;             /* total_bytes 0: re-read the budget
                                     from the environment every
                                     follow_cgroup_ns on the service
                                     thread and, when it changed,
                                     resize to it (within
                                     max_total_bytes, never waiting: see
                                     mm_set_budget; a budget set by hand
                                     stands until the environment
                                     changes again; one the
                                     configuration cannot take is not
                                     followed).  Default false */
  int64_t follow_cgroup_ns;       /* 0 means 1 s; negative: EINVAL */
  /* Memory outside the manager, polled: the service thread calls
   * external_poll(external_poll_ctx) every external_poll_ns (0 means
   * 100 ms; negative: EINVAL) for the bytes the process holds outside the
   * manager (a UDF's heap, a library's buffers), and counts them against
   * the budget as it finds them (see mm_external_set).  NULL: no poll. */
  size_t (*external_poll)(void *ctx);
  void *external_poll_ctx;
  int64_t external_poll_ns;
} mm_config;

/* Where a manager's budget came from (mm_stats.budget_source). */
enum {
  MM_BUDGET_CONFIGURED = 0, /* mm_config.total_bytes */
  MM_BUDGET_CGROUP_V2,      /* the process's cgroup v2 limit */
  MM_BUDGET_CGROUP_V1,      /* its cgroup v1 memory limit */
  MM_BUDGET_PHYSICAL        /* the machine's physical memory */
};

/*
 * mm_create - build a manager from @cfg and store it in *@out.
 *
 * The storage pool starts at total_bytes * storage_fraction, rounded down
 * to a whole number of pages; the execution pool starts at the rest.
 *
 * Returns MM_OK, or
 *   MM_EINVAL  @cfg or @out is NULL, or a field is out of the range given
 *              in mm_config (for example a storage fraction that leaves
 *              the storage pool without a single page);
 *   MM_ENOMEM  the manager's own bookkeeping could not be allocated.
 * On error *@out is left untouched and nothing is allocated.
 * Thread-safe; managers are independent of one another.
 */
MM_API mm_status mm_create(const mm_config *cfg, mm_t **out);

/*
 * mm_destroy - free the manager and everything it owns.
 *
 * Every held request is cancelled exactly once: blocking callers return
 * MM_ECANCELED, asynchronous callbacks are called with MM_ECANCELED on the
 * service thread, and mm_destroy returns only after every callback has
 * returned and every blocked caller has left the manager -- a caller
 * granted just before, and still making its block or page in
 * mm_exec_alloc or mm_storage_alloc, included.  Pages and exec ids still
 * charged are dropped without callbacks.  @mm may be NULL (nothing
 * happens).
 *
 * The caller must make sure no other call on @mm is running or will start,
 * except callers blocked in a held acquire (already counted in
 * mm_stats.held_now: a call still on its way in must not race with
 * mm_destroy) and calls made by callbacks (those made while it runs are
 * answered MM_ECANCELED or find nothing to do).  It waits for the service
 * thread and for liburcu's deferred frees (rcu_barrier: those of the whole
 * process), so it must not be called from an eviction or grant callback, nor
 * inside a liburcu-bp read section.  Consumers and page handles belong to
 * their manager: none may be used after it (not even closed or put), and
 * every page handle must be put before it (the record of a page that is
 * gone is freed only by its handle's put).
 */
MM_API void mm_destroy(mm_t *mm);

/*
 * Held requests.
 *
 * A request that does not fit now, made with a timeout other than
 * MM_NO_WAIT, is *held* until it can be granted in full.  Any release, of
 * either pool, hands freed memory to held requests (of both pools, oldest
 * first) before new arrivals that may wait can take it: while a pool has
 * held requests, a new request of that pool that may wait queues behind
 * them.  A new MM_NO_WAIT request first lets held requests take what is
 * free (best effort: if another thread is granting at that moment, it
 * goes by that thread's last decisions) and is then granted only if it
 * fits and no starved request bars its pool.  A held request that does not
 * fit may be passed over by younger, smaller ones that do, but only for
 * mm_config.overtake_limit_ns (10 ms by default) from its arrival; after
 * that it is *starved*, and nothing younger that competes for its bytes is
 * granted until it is: nothing in its pool, and, for an execution request
 * (which may borrow storage's free capacity) or a storage request with
 * storage_may_borrow, nothing in the other pool either.
 *
 * A blocking caller sleeps on a futex of its own (no shared lock) and
 * returns MM_OK when granted, MM_ETIMEDOUT once @timeout_ns has passed
 * with nothing granted, or MM_ECANCELED if the manager is destroyed.
 */

/*
 * mm_acquire_execution - charge @bytes of execution memory to @exec_id.
 *
 * Granted whole or not at all.  It fits if @bytes is at most the free
 * execution capacity, plus the free storage capacity, plus what evicting
 * unpinned storage pages above storage_protected_bytes would free:
 * execution borrows storage capacity (free first, then by eviction, see
 * mm_evict_fn), and the pool boundary moves until it is repaid.
 *
 * @timeout_ns: MM_NO_WAIT (grant or decline now), a positive number of
 *              nanoseconds, or MM_WAIT_FOREVER: how long the request may be
 *              held (see "Held requests" above).
 *
 * Returns MM_OK (charged), or
 *   MM_EINVAL     @mm is NULL, @bytes is 0 or more than
 *                 max_execution_request, @timeout_ns is below -1, or
 *                 called from an eviction callback;
 *   MM_ENOMEM     MM_NO_WAIT and it does not fit now, or bookkeeping could
 *                 not be allocated;
 *   MM_ETIMEDOUT  held until @timeout_ns passed; nothing charged;
 *   MM_ECANCELED  held, and the manager was destroyed.
 * Thread-safe.  Lock-free when it does not wait.  The first acquire of an
 * exec id creates its own consumer (see "Consumers"), kept until
 * mm_release_all_execution(@exec_id); the id-based calls are thin
 * wrappers over that consumer's calls, and each thread remembers the few
 * exec ids it used last, so that a call finds the consumer without a
 * lookup.  Must not be called with a timeout from a grant callback for a
 * request that only a later callback would make room for (callbacks run
 * one at a time).
 */
MM_API mm_status mm_acquire_execution(mm_t *mm, uint64_t exec_id, size_t bytes,
                                      int64_t timeout_ns);

/*
 * mm_release_execution - return @bytes of @exec_id's execution memory.
 *
 * Borrowed capacity is repaid to the storage pool first: once execution
 * use is back at or under its initial size, both pools are exactly at
 * their initial sizes again (up to the spare quota consumers keep, see
 * "Consumers").  Releasing down to zero keeps the exec id's consumer for
 * reuse; mm_release_all_execution() drops it.
 *
 * What is returned here is what the id-based calls charged (the exec id's
 * own consumer's), not what consumer handles of the id hold.  Bytes that
 * mm_exec_alloc charged are returned by mm_exec_free: they may be
 * returned here too (the books hold one number per consumer), and the
 * block then stays allocated but uncharged until it is freed, whose free
 * returns what the books still hold, never below zero.
 *
 * Returns MM_OK, or
 *   MM_EINVAL  @mm is NULL, @bytes is 0, or @bytes is more than @exec_id's
 *              own consumer holds (an exec id that holds nothing holds 0
 *              bytes); nothing changed.
 * Thread-safe, lock-free.
 */
MM_API mm_status mm_release_execution(mm_t *mm, uint64_t exec_id, size_t bytes);

/*
 * mm_release_all_execution - the task behind @exec_id ended or failed:
 * return everything it holds and drop its record.
 *
 * Every consumer of @exec_id is closed: its own (the id-based calls') and
 * every handle opened on it with mm_consumer_open (their calls answer
 * MM_EINVAL from then on; mm_consumer_close still frees them).  Blocks
 * still allocated become orphans (see mm_consumer_free).
 *
 * Returns the bytes released: exactly what @exec_id held (0 for an
 * unknown id, or if @mm is NULL).  Thread-safe, lock-free; an acquire for
 * the same id that races with it is either released by it or left
 * charged, never lost.
 */
MM_API size_t mm_release_all_execution(mm_t *mm, uint64_t exec_id);

/*
 * mm_execution_held - the bytes @exec_id holds now, its own consumer's and
 * every open handle's of it (0 if unknown, or if @mm is NULL).
 * Thread-safe; exact when no call on the same id is in flight.
 */
MM_API size_t mm_execution_held(const mm_t *mm, uint64_t exec_id);

/*
 * mm_acquire_storage - charge a storage page @page_id of @bytes.
 *
 * @bytes is rounded up to a multiple of page_size.  The page is
 * accounting-only (it has no memory of the manager's, and mm_pin_storage
 * gives NULL as its data) and it is born unpinned.  When storage is full,
 * the request evicts unpinned pages to make room (see mm_evict_fn).
 * Storage never takes execution memory in use; with storage_may_borrow it
 * may take free execution capacity, repaid when it releases.
 *
 * @timeout_ns: as for mm_acquire_execution.  While the request is held
 * its page id is reserved: other acquires of it get MM_EEXIST, pins and
 * releases MM_ENOENT.
 *
 * Returns MM_OK (registered and charged), or
 *   MM_EINVAL     @mm is NULL, @bytes is 0, @timeout_ns is below -1, the
 *                 rounded size is more than the storage pool could ever
 *                 hold (its initial size, or total_bytes with
 *                 storage_may_borrow), or called from an eviction
 *                 callback;
 *   MM_EEXIST     @page_id is already registered (or reserved);
 *   MM_ENOMEM     MM_NO_WAIT and it does not fit now, or the page record
 *                 could not be allocated;
 *   MM_ETIMEDOUT  held until @timeout_ns passed; nothing registered;
 *   MM_ECANCELED  held, and the manager was destroyed.
 * Thread-safe; lock-free when it does not wait.  The id is reserved
 * before anything is charged or evicted, so of racing acquires of one new
 * id exactly one gets past MM_EEXIST (and is then granted, declined or
 * held).
 */
MM_API mm_status mm_acquire_storage(mm_t *mm, uint64_t page_id, size_t bytes,
                                    int64_t timeout_ns);

/*
 * mm_grant_fn - the outcome of an asynchronous request held by
 * mm_acquire_async: MM_OK (granted in full: the bytes are charged, or the
 * page registered, before the call), MM_ETIMEDOUT or MM_ECANCELED
 * (nothing charged), or, for execution, MM_ENOMEM (the exec id's record
 * could not be allocated when the grant came: nothing charged; rare, and
 * only when the id's record was dropped by mm_release_all_execution while
 * the request was held).  Called exactly once per held request.
 *
 * Callbacks run on the manager's own service thread, one at a time, in
 * the order their outcomes were handed to it; never on the thread that
 * called mm_acquire_async, and never while the manager holds anything a
 * callback could need.  A callback may run before mm_acquire_async has
 * returned (another thread may grant the request at once): @ctx must be
 * ready before the call.  A callback may call any function of the manager
 * (release, acquire, cancel, stats ...) except mm_destroy; it should not block
 * for long, since it delays the callbacks and asynchronous deadlines behind it.
 */
typedef void (*mm_grant_fn)(void *ctx, mm_status outcome);

/*
 * mm_acquire_async - an acquire that never blocks: granted now, declined
 * now, or held with the outcome reported to @cb.
 *
 * @pool, @id, @bytes, @timeout_ns: as for mm_acquire_execution (@id an exec
 *     id) or mm_acquire_storage (@id a page id).  A held request's
 *     deadline is kept by the service thread even if nothing is ever
 *     released again.
 * @cb, @ctx: the callback and its argument (@cb must not be NULL).
 * @ticket: if not NULL, receives a ticket for mm_cancel while the request
 *     is held, and 0 otherwise.
 *
 * Returns
 *   MM_OK           granted at once; @cb is never called;
 *   MM_EINPROGRESS  held; @cb will be called exactly once;
 *   MM_EINVAL       @mm or @cb is NULL, @pool is not a pool, or as for the
 *                   blocking call; @cb is never called;
 *   MM_ENOMEM       MM_NO_WAIT and it does not fit, or bookkeeping could
 *                   not be allocated; @cb is never called;
 *   MM_EEXIST       (storage) the page id is taken; @cb is never called;
 *   MM_ECANCELED    the manager is being destroyed (from a callback during
 *                   mm_destroy); @cb is never called.
 * Thread-safe; never blocks.
 */
MM_API mm_status mm_acquire_async(mm_t *mm, mm_pool pool, uint64_t id,
                                  size_t bytes, int64_t timeout_ns,
                                  mm_grant_fn cb, void *ctx, uint64_t *ticket);

/*
 * mm_cancel - end a held asynchronous request now.
 *
 * Returns MM_OK (its callback will be called with MM_ECANCELED, and
 * nothing was charged), or
 *   MM_EINVAL  @mm is NULL;
 *   MM_ENOENT  no such ticket, or its request already ended (granted,
 *              timed out or cancelled): a cancel racing with a grant has
 *              exactly one winner, and the callback tells which.
 * Thread-safe, lock-free; may be called from a callback.
 */
MM_API mm_status mm_cancel(mm_t *mm, uint64_t ticket);

/*
 * mm_release_storage - unregister @page_id and return its bytes.
 *
 * Every registered page ends in exactly one of two ways: a release that
 * answers MM_OK (no eviction callback will run for it), or one eviction
 * callback (a release then answers MM_ENOENT).  An embedder that keeps
 * its own records of pages can free them on either signal, once.
 *
 * Returns MM_OK, or
 *   MM_EINVAL  @mm is NULL;
 *   MM_ENOENT  no such page (never registered, released, or evicted), or
 *              its eviction callback has been called or is about to be;
 *   MM_EBUSY   the page is pinned; unpin it first.
 * Thread-safe, lock-free.  A release racing with a pin of the same page:
 * either the release wins (the pin gets MM_ENOENT) or the pin wins (the
 * release gets MM_EBUSY).  A release racing with an eviction: if the
 * eviction had claimed the page but not yet committed to it, the release
 * wins; its bytes may then serve that eviction's request, and stay in
 * storage_used_bytes until the evictor hands them over (after its
 * callbacks), the id staying taken until the evictor commits to its
 * victims (a moment, before any callback).
 */
MM_API mm_status mm_release_storage(mm_t *mm, uint64_t page_id);

/*
 * mm_pin_storage - pin @page_id so that it cannot be released or evicted.
 * Pins nest: each pin needs its own unpin.  A pin is also a use: sampled
 * LRU evicts the pages pinned least recently.
 *
 * @data: if not NULL, receives the page's memory (NULL for an
 *        accounting-only page).
 *
 * Returns MM_OK, or
 *   MM_EINVAL  @mm is NULL, or the page already holds 2^32-1 pins;
 *   MM_ENOENT  no such page: never registered, released, evicted, or
 *              being evicted.  (An eviction claims its victims before it
 *              knows it can make enough room; if it cannot, it gives them
 *              back untouched.  A pin that met such a claim answers
 *              MM_ENOENT though the page stays registered: an acquire of
 *              the id answers MM_EEXIST, and a second pin succeeds.)
 * Thread-safe, lock-free.  A pin and an eviction of the same page cannot
 * both succeed: one CAS on the page's state decides.
 */
MM_API mm_status mm_pin_storage(mm_t *mm, uint64_t page_id, void **data);

/*
 * mm_unpin_storage - drop one pin of @page_id.  When the last pin goes,
 * the page may be evicted, and held requests are told.
 *
 * Returns MM_OK, or
 *   MM_EINVAL  @mm is NULL, or the page is not pinned;
 *   MM_ENOENT  no such page.
 * Thread-safe, lock-free.
 */
MM_API mm_status mm_unpin_storage(mm_t *mm, uint64_t page_id);

/*
 * Real memory.
 *
 * The calls above only keep the books.  These hand out memory as well,
 * from the manager's own jemalloc arena (the host's malloc is not
 * involved), charged at the size jemalloc really hands out (its size
 * class), before the block exists, and uncharged after it is freed.  The
 * memory the manager holds is what it has charged, plus:
 *   - freed blocks of up to 16 KiB parked in per-thread caches for reuse
 *     (each thread that uses the manager has its own, of at most
 *     mm_config.cpu_cache_bytes; blocks are parked only while the budget
 *     has room for every cache to be full, and given back to the arena as
 *     soon as the budget comes that close to full, a request finds it
 *     full, or one is held: those of a thread in a call at that moment
 *     before that call returns, where the kernel lacks membarrier(2) those
 *     of every thread at its next call; and a thread's when it exits);
 *   - while an eviction made for a block runs its callbacks, that block:
 *     it is made before any victim goes (so that an allocator failure
 *     evicts nothing), and the victims' memory is freed as each callback
 *     returns.
 * Beside the arena the manager keeps a tag of 4 bytes for every 16 bytes
 * of its address range, committed a page of tags (4 KiB) for each 16 KiB
 * of the range where execution blocks start: a quarter more than the
 * arena's pages that hold them, where those pages lie together (storage
 * pages carry no tag).  It is what lets a free check its pointer without
 * reading the memory it points to (see mm_consumer_free), and it is not
 * charged to the budget.
 */

/*
 * mm_exec_alloc - allocate @size bytes of execution memory for @exec_id.
 *
 * Charges the block's size class to @exec_id exactly as
 * mm_acquire_execution would (borrowing, eviction, holding with
 * @timeout_ns), then allocates it.  Free it with mm_exec_free.
 *
 * Returns MM_OK and the block in *@out (16-byte aligned), or
 *   MM_EINVAL     @mm or @out is NULL, @size is 0 or more than
 *                 max_execution_request, its size class is more than the
 *                 budget, @timeout_ns is below -1, or called from an
 *                 eviction callback;
 *   MM_ENOMEM     MM_NO_WAIT and it does not fit, or the allocator failed
 *                 (the charge is rolled back, nothing was evicted; also
 *                 for a request held and then granted);
 *   MM_ETIMEDOUT, MM_ECANCELED  as for mm_acquire_execution.
 * Thread-safe.  A block may be freed on another thread.  The block is
 * charged to the exec id's own consumer, exactly as
 * mm_consumer_alloc on it would.
 */
MM_API mm_status mm_exec_alloc(mm_t *mm, uint64_t exec_id, size_t size,
                               int64_t timeout_ns, void **out);

/*
 * mm_exec_free - free a block from mm_exec_alloc(@exec_id) and uncharge it.
 *
 * Checked as mm_consumer_free checks; a block of a consumer handle of
 * @exec_id is freed too (and uncharged from that handle).
 *
 * Returns MM_OK, or
 *   MM_EINVAL  @mm or @ptr is NULL, @ptr is not a live block of the
 *              manager's, or it was allocated for another exec id whose
 *              consumer is open; nothing changed, and the memory @ptr
 *              points to is not touched.
 * Thread-safe.  Free an exec id's blocks before mm_release_all_execution
 * of that id: a block freed after it is an orphan (mm_consumer_free), its
 * bytes returned with the id's others already.
 */
MM_API mm_status mm_exec_free(mm_t *mm, uint64_t exec_id, void *ptr);

/*
 * mm_storage_alloc - register storage page @page_id with @size bytes of
 * memory, born pinned.
 *
 * Charges whole pages (the smallest number of pages, at least @size, that
 * the arena hands out as one block) exactly as mm_acquire_storage would
 * (eviction, holding with @timeout_ns), then allocates a block of that
 * whole size and makes the page live with one pin: whoever holds the
 * pointer holds a pin.  mm_unpin_storage makes it evictable;
 * mm_pin_storage(mm, @page_id, &data) gives the pointer back, or
 * MM_ENOENT once it was evicted.  The eviction callback receives the
 * pointer; the block is freed after the callback returns, or when the
 * page is released.
 *
 * Returns MM_OK and the block in *@out, or the statuses of
 * mm_acquire_storage (MM_EINVAL also for a NULL @out), or MM_ENOMEM when
 * the allocator failed (the charge is rolled back, nothing was evicted,
 * and the id is free).
 * Thread-safe.
 */
MM_API mm_status mm_storage_alloc(mm_t *mm, uint64_t page_id, size_t size,
                                  int64_t timeout_ns, void **out);

/*
 * Page handles.
 *
 * A handle is what an engine keeps beside its own page-table entry (as a
 * buffer pool keeps a buffer descriptor): the calls below reach the page
 * through it, with no lookup of the page id.  A pin or unpin of a live
 * page through its handle is one compare-and-swap on the page's state
 * word, and takes no lock and no RCU read section.  The id-based calls
 * (mm_pin_storage, mm_unpin_storage, mm_release_storage) work on a page
 * that has a handle too, and see the same pins.
 *
 * A handle stays safe to call until its owner lets go of it with
 * mm_page_put, whatever happens to the page meanwhile: once the page is
 * evicted or released, mm_page_pin, mm_page_unpin and mm_page_release
 * answer MM_ENOENT and mm_page_data NULL, for ever (a new page registered
 * later under the same id is another page, with another handle).  The
 * handle's memory is reused only after mm_page_put and after the page is
 * gone (released or evicted), and then only after every RCU read section
 * that began before both (the record is freed through call_rcu).  The
 * eviction callback of a page that has a handle runs as for any page
 * (with its id and memory); the handle reads the page as gone from the
 * moment the eviction commits to it, before the callback runs.  Every
 * handle must be put before mm_destroy: a handle is part of its manager.
 *
 * One owner: a handle is put once, by whoever holds it; the calls on it
 * are thread-safe and may run on any thread, several at once.
 */
typedef struct mm_page mm_page;

/*
 * mm_page_alloc - mm_storage_alloc, and a handle on the page in *@out
 * (its memory: mm_page_data).  Born pinned: the caller holds one pin.
 * Returns the statuses of mm_storage_alloc (MM_EINVAL also for a NULL
 * @out; *@out untouched on failure).  Thread-safe.
 */
MM_API mm_status mm_page_alloc(mm_t *mm, uint64_t page_id, size_t size,
                               int64_t timeout_ns, mm_page **out);

/*
 * mm_page_data - the page's memory (its size: what mm_page_alloc was
 * asked for, rounded up to whole pages); NULL if @pg is NULL or once the
 * memory is freed (the page released, or its eviction callback returned).
 * Read it only while holding a pin: an unpinned page may be evicted, and
 * its memory freed, at any moment.
 */
MM_API void *mm_page_data(const mm_page *pg);

/*
 * mm_page_pin - one pin more on the page, as mm_pin_storage.  MM_OK;
 * MM_ENOENT if the page is gone (evicted or released) or an eviction has
 * claimed it at this moment; MM_EINVAL for a NULL @pg or 2^32 - 1 pins
 * already.  Thread-safe.
 */
MM_API mm_status mm_page_pin(mm_page *pg);

/*
 * mm_page_unpin - one pin less; at zero the page may be evicted (and held
 * requests are told).  MM_OK; MM_EINVAL for a NULL @pg or a page with no
 * pin; MM_ENOENT if the page is gone.  Thread-safe.  The call does not
 * touch the handle once its pin is gone: from that moment another thread
 * may evict the page and, in its eviction callback, put the handle (an
 * owner that frees its entry for the page there may put it there).
 */
MM_API mm_status mm_page_unpin(mm_page *pg);

/*
 * mm_page_release - unregister the page and return its bytes and memory,
 * as mm_release_storage.  MM_OK; MM_EBUSY while it is pinned; MM_ENOENT
 * if it is gone already; MM_EINVAL for a NULL @pg.  The handle stays
 * valid (and reads the page as gone) until mm_page_put.  Thread-safe.
 */
MM_API mm_status mm_page_release(mm_page *pg);

/*
 * mm_page_put - the owner lets go of the handle; @pg must not be used
 * after.  It does not release the page (a page whose handle is put stays
 * registered, and is reached by its id).  NULL: nothing happens.
 */
MM_API void mm_page_put(mm_page *pg);

/*
 * Consumers.
 *
 * A consumer is a handle on an exec id for the code that uses its
 * execution memory most -- an operator, a hash table, a sort: it finds no
 * id, and it serves most requests from quota it reserved from the pool
 * ahead of use, so that most of its calls touch no memory another thread
 * writes.  Its books are one word, changed by one CAS per call: the bytes
 * its callers hold, and its spare quota (charged to the pool, held by
 * nobody yet).  A consumer reserves a quantum at a time (total_bytes / 64,
 * at most 1 MiB; budgets under 256 KiB are charged exactly) and keeps at
 * most two quanta spare, so the books charge at least what is held and at
 * most two quanta more per consumer (mm_stats.execution_credit_bytes shows
 * the sum).  Before any request is declined, evicts or is held, every
 * consumer's spare goes back to the pool: a request that fits in truly
 * free memory is never declined or held because quota sits with another
 * consumer.  While any request is held, consumers take no spare (their
 * acquires queue behind held ones, as every acquire does) and give back
 * every byte they release.
 *
 * A consumer belongs to its exec id: mm_execution_held(exec_id) counts
 * what it holds, and mm_release_all_execution(exec_id) closes it (its
 * books go back to the pool, and its calls answer MM_EINVAL from then on;
 * mm_consumer_close still frees the handle).  The id-based calls
 * (mm_acquire_execution, mm_exec_alloc ...) use the exec id's own
 * consumer, made on its first use: what they charge is returned by them
 * (mm_release_execution, mm_exec_free), what a handle charges by it.
 *
 * Every call may be made from any thread, and from several at once on one
 * consumer (a parallel operator), without a lock; the common acquire,
 * release, alloc and free are one CAS on the consumer's books and, for
 * blocks, the calling thread's own cache.  A consumer holds at most
 * 4 TiB (2^42 bytes).  Every wait option, the held-request rules and
 * eviction are as for mm_acquire_execution.
 */
typedef struct mm_consumer mm_consumer;

/*
 * mm_consumer_open - a new consumer of @exec_id, in *@out.
 *
 * Returns MM_OK, or MM_EINVAL (@mm or @out is NULL), or MM_ENOMEM (its
 * record could not be allocated; *@out untouched).  Thread-safe.
 */
MM_API mm_status mm_consumer_open(mm_t *mm, uint64_t exec_id,
                                  mm_consumer **out);

/*
 * mm_consumer_close - return everything @c holds, its spare quota and its
 * blocks' charges, to the pool, and free the handle.  Blocks it allocated
 * and did not free stay allocated but uncharged: free them with
 * mm_consumer_free through another consumer, or mm_exec_free, which give
 * back their memory and touch no books (they are orphans).
 *
 * If another thread is running @c's reclaim callback, it waits for it to
 * return (but not when called from inside a reclaim callback: then @c is
 * asked no more, and a run on another thread may still be under way).
 *
 * Returns MM_OK, or MM_EINVAL if @c is NULL.  Must not race with other
 * calls on @c; after it, @c is gone.
 */
MM_API mm_status mm_consumer_close(mm_consumer *c);

/*
 * mm_consumer_acquire - charge @bytes of execution memory to @c: from its
 * spare quota, or from the pool as mm_acquire_execution would (borrowing,
 * eviction, holding with @timeout_ns).
 *
 * Returns MM_OK, or MM_EINVAL (@c is NULL or closed, @bytes is 0 or more
 * than max_execution_request, @timeout_ns is below -1, @c would hold more
 * than 2^42 bytes, or called from an eviction callback), or MM_ENOMEM,
 * MM_ETIMEDOUT as for mm_acquire_execution, or MM_ECANCELED (held, and
 * the manager was destroyed or @c was closed by mm_release_all_execution
 * meanwhile: nothing charged).  Lock-free when it does not wait.
 */
MM_API mm_status mm_consumer_acquire(mm_consumer *c, size_t bytes,
                                     int64_t timeout_ns);

/*
 * mm_consumer_release - return @bytes that @c holds.
 *
 * Returns MM_OK, or MM_EINVAL (@c is NULL or closed, @bytes is 0, or more
 * than @c holds; nothing changed).  Lock-free.
 */
MM_API mm_status mm_consumer_release(mm_consumer *c, size_t bytes);

/*
 * mm_consumer_held - the bytes @c holds (0 if @c is NULL or closed).
 * Exact when no call on @c is in flight.
 */
MM_API size_t mm_consumer_held(const mm_consumer *c);

/*
 * mm_consumer_set_limits - a guarantee and a cap for @c (0: none).
 *
 * @min_bytes is a guarantee that other requests cannot take from it:
 * what @c does not hold of it is reserved for @c now -- charged to the
 * execution pool, held by nobody, taken only by @c's own acquires -- and
 * what @c releases below it goes back to that reserve, not to the pool.
 * The guarantees of all consumers never sum past the execution pool's
 * initial size.  @max_bytes caps what @c may hold: a request that would
 * take it past its cap is declined with MM_ENOMEM at once, whatever its
 * timeout (only @c's own releases could make it fit).  A consumer with
 * limits keeps no spare quota (its calls take the exact paths, a little
 * slower), and its reserve goes back to the pool when it is closed.  A
 * second call replaces the limits, growing or shrinking the reserve.
 *
 * Returns MM_OK, or MM_EINVAL (@c is NULL or closed, or @max_bytes is not
 * 0 and less than @min_bytes), or MM_ENOMEM (the guarantees would sum past
 * the execution pool, or the new reserve is not free now: nothing changed;
 * the reserve is taken from free memory only, never by eviction).  Must
 * not race with other calls on @c.
 */
MM_API mm_status mm_consumer_set_limits(mm_consumer *c, size_t min_bytes,
                                        size_t max_bytes);

/*
 * mm_consumer_acquire_range - charge at least @min_bytes and at most
 * @max_bytes of execution memory to @c, as much as is free (a hash table
 * that can start smaller); the amount in *@granted.
 *
 * When no held request is in its way, it takes what is free now, up to
 * @max_bytes (or max_execution_request if that is less), without
 * evicting pages or asking consumers to reclaim for the part above
 * @min_bytes: if that is at least @min_bytes it is granted at once.
 * Otherwise it is a request of @min_bytes, with every rule of
 * mm_consumer_acquire (eviction, reclaim, holding with @timeout_ns), and
 * *@granted is @min_bytes if it is granted.  It never holds memory while
 * it waits.
 *
 * Returns MM_OK, or MM_EINVAL (@c or @granted is NULL, @min_bytes is 0 or
 * more than max_execution_request, @max_bytes is less than @min_bytes, or
 * as for mm_consumer_acquire; *@granted is 0 and nothing changed), or
 * MM_ENOMEM, MM_ETIMEDOUT, MM_ECANCELED as for mm_consumer_acquire of
 * @min_bytes (*@granted 0).  Lock-free when it does not wait.
 */
MM_API mm_status mm_consumer_acquire_range(mm_consumer *c, size_t min_bytes,
                                           size_t max_bytes, int64_t timeout_ns,
                                           size_t *granted);

/*
 * Reclaim: consumers that give memory back when asked (spill).
 *
 * A consumer that can give memory back -- a sort that can write a run,
 * a hash table that can spill partitions -- registers a callback.  When
 * an execution request that may wait (a timeout other than MM_NO_WAIT)
 * cannot be met from free memory, and is held, the manager asks
 * consumers with a callback to give memory back, the one holding most
 * first, until what they promise covers what the request lacks (its size
 * less the memory free at that moment).  It never asks the requesting
 * consumer unless that one opted in (mm_consumer_set_self_reclaim), never
 * asks a consumer that holds nothing, and asks each consumer at most once
 * per shortage: a shortage is one held request, from when it is held to
 * when it ends, so two requests can never ask each other in a loop.
 *
 * Order: by default (mm_config.reclaim_before_evict false) unpinned
 * storage pages are evicted first -- dropping a cached page is cheaper
 * than writing a spill -- and consumers are asked only when eviction
 * cannot cover the request.  With reclaim_before_evict, a request that
 * may wait is held without evicting, consumers are asked first, and
 * eviction covers what they did not give.  A request made with
 * MM_NO_WAIT never asks anyone: it evicts, or is declined, as before.
 *
 * The callback: fn(ctx, c, wanted) gives back memory of @c through the
 * ordinary calls (mm_consumer_release, mm_consumer_free), at once or
 * later from another thread, and returns how many bytes it released or
 * will release (0: nothing).  It runs
 *   - for a blocking request, on the requesting thread, after the request
 *     is queued and before it sleeps;
 *   - for an asynchronous request (mm_acquire_async), on the manager's
 *     service thread, between grant callbacks;
 * never inside a dispatch pass, an eviction or an RCU read section, so it
 * may call any function of this header except mm_destroy.  It should not
 * wait for memory itself.  One consumer's callback is never run by two
 * threads at once (a consumer being asked is skipped by a second asker;
 * its release will be news to both).
 *
 * Held requests while a reclaim is under way: while its callbacks run,
 * the request that asks is treated as starved (see
 * mm_config.overtake_limit_ns), so memory they free goes to it and not to
 * younger requests that would take it piece by piece; memory released
 * later (a spill that finishes on another thread) is dispatched by the
 * usual rules, oldest first with bounded overtaking.  Its deadline
 * holds as ever: a callback that takes long eats into it, and a blocking
 * request whose deadline passed while callbacks ran ends with
 * MM_ETIMEDOUT when they return, unless it was granted meanwhile.
 * mm_stats counts the callbacks run, the bytes they returned and the time
 * they took.
 */
typedef size_t (*mm_reclaim_fn)(void *ctx, mm_consumer *c, size_t wanted);

/*
 * mm_consumer_set_reclaim - ask @fn(@ctx, @c, wanted) when memory is short
 * (see "Reclaim"); @fn NULL: never ask @c.  May be called at any time, also
 * from @c's own callback; if another thread is running @c's callback, it
 * waits for it to return first, so that once this returns the old
 * callback is not running and will not be called again.  From inside a
 * reclaim callback (of any consumer) it never waits: if another thread is
 * running @c's callback it answers MM_EBUSY, so that two callbacks that
 * change each other's consumers cannot wait for each other.
 *
 * Returns MM_OK, or MM_EINVAL (@c is NULL or closed), or MM_EBUSY (as
 * above); nothing changed unless MM_OK.
 */
MM_API mm_status mm_consumer_set_reclaim(mm_consumer *c, mm_reclaim_fn fn,
                                         void *ctx);

/*
 * mm_consumer_set_self_reclaim - whether @c's callback may be asked for
 * @c's own requests (a sort that spills its own runs to go on); false by
 * default.
 *
 * Returns MM_OK, or MM_EINVAL (@c is NULL or closed).
 */
MM_API mm_status mm_consumer_set_self_reclaim(mm_consumer *c, bool allow);

/*
 * mm_consumer_alloc - allocate @size bytes of execution memory charged to
 * @c: its size class is charged as mm_consumer_acquire would (borrowing,
 * eviction, holding with @timeout_ns), then the block is made; free it
 * with mm_consumer_free.
 *
 * Returns MM_OK and the block in *@out (16-byte aligned), or MM_EINVAL
 * (@c or @out is NULL, @c is closed, @size is 0 or more than
 * max_execution_request, or its size class more than the budget), or the
 * statuses of mm_consumer_acquire, or MM_ENOMEM when the allocator failed
 * (the charge is rolled back, nothing was evicted).  Lock-free when it
 * does not wait and the caller's cache can serve it.
 */
MM_API mm_status mm_consumer_alloc(mm_consumer *c, size_t size,
                                   int64_t timeout_ns, void **out);

/* mm_consumer_calloc - mm_consumer_alloc of @n * @size zeroed bytes;
 * MM_EINVAL also if @n or @size is 0 or their product overflows. */
MM_API mm_status mm_consumer_calloc(mm_consumer *c, size_t n, size_t size,
                                    int64_t timeout_ns, void **out);

/*
 * mm_consumer_realloc - resize block @ptr of @c to @size bytes, in *@out.
 *
 * @ptr NULL is mm_consumer_alloc.  A block that must grow past its size
 * class moves: a new one is charged and made (borrowing, eviction, holding
 * with @timeout_ns), the contents copied, the old one freed; if that
 * fails, @ptr is untouched and still charged.  A block that stays in its
 * class, or shrinks, stays where it is, charged as before (a shrink never
 * fails).  Returns MM_OK, or the statuses of mm_consumer_alloc, or
 * MM_EINVAL if @ptr is not a live block of @c's (as for mm_consumer_free).
 */
MM_API mm_status mm_consumer_realloc(mm_consumer *c, void *ptr, size_t size,
                                     int64_t timeout_ns, void **out);

/*
 * mm_consumer_free - free block @ptr of @c and return its charge.
 *
 * What is checked, and never by reading the memory @ptr points to: that
 * @ptr lies in the manager's own address range and is 16-byte aligned
 * (any other pointer is refused), and, from a tag the manager keeps for
 * every 16 bytes of that range, that a live block starts at @ptr (a
 * pointer into a block, a freed one -- a double free, even from two
 * threads at once: one of them wins -- or a storage page's memory is
 * refused) and that it is @c's (another open consumer's is refused).  A
 * block whose consumer was closed (an orphan) is freed by any free call:
 * its memory goes back, no books change.  The tag names the consumer by
 * a 26-bit key, reused only once 2^26 consumers were opened after it and
 * it was closed: an orphan freed so late through the consumer that holds
 * its key again would be uncharged from that consumer (never below zero).
 *
 * Returns MM_OK, or MM_EINVAL (@c or @ptr is NULL, or refused as above:
 * nothing changed).  Lock-free when the caller's cache can take it.
 */
MM_API mm_status mm_consumer_free(mm_consumer *c, void *ptr);

/*
 * mm_usable_size - the usable bytes of live execution block @ptr (its
 * size class), or 0 if @ptr is not one (checked as mm_consumer_free
 * checks, without reading the memory), or @mm is NULL.
 */
MM_API size_t mm_usable_size(mm_t *mm, const void *ptr);

/*
 * mm_trim - free the blocks parked in the per-thread caches and give the
 * manager's unused backing pages back to the system.  A cache whose thread
 * is in a call at that moment is emptied by that thread before that call
 * returns (mm_trim never waits for it), so with no other call running,
 * and membarrier(2) available, mm_stats.cache_parked_bytes reads 0 after
 * it.  @mm may be
 * NULL (nothing happens).  Thread-safe.
 */
MM_API void mm_trim(mm_t *mm);

/*
 * mm_stats - a picture of the manager.  Fields are only ever added at the
 * end, with a new symbol version of mm_get_stats (README, "ABI").
 *
 * The pool sizes and the used and borrowed bytes come from one atomic
 * snapshot of the pools, so they agree with one another: the pool sizes
 * sum to total_bytes (the budget in force), and each pool's used bytes
 * are at most its size -- except after a shrink of the budget, until use
 * fits it again (over_budget_bytes says by how much it does not).
 * The counters are summed from per-thread stripes while other threads may
 * be counting: each is exact once the manager is quiet.
 */
typedef struct mm_stats {
  size_t total_bytes;
  /* Current pool sizes; they always sum to total_bytes. */
  size_t execution_pool_bytes, storage_pool_bytes;
  size_t execution_used_bytes, storage_used_bytes;
  size_t execution_borrowed_bytes; /* storage capacity lent to execution */
  size_t storage_borrowed_bytes;   /* execution capacity lent to storage */
  size_t storage_pinned_bytes;     /* bytes of pages with a pin */
  uint64_t granted;                /* acquires granted */
  uint64_t declined;               /* acquires declined with MM_ENOMEM */
  uint64_t held;                   /* acquires that were held (ever) */
  uint64_t held_now;               /* acquires held at this moment; one
                                     is counted once queued (and its first
                                     dispatch pass asked for), so a
                                     request made after held_now counts
                                     it is behind it */
  uint64_t timed_out;              /* held acquires that hit the deadline */
  uint64_t cancelled;              /* held acquires cancelled */
  uint64_t evictions;              /* pages evicted */
  uint64_t evicted_bytes;          /* bytes of the pages evicted */
  uint64_t storage_pages;          /* storage pages registered now */
  uint64_t execution_ids;          /* exec ids with an own consumer now */
  /* The manager's backing memory (its private jemalloc arena): bytes in
   * blocks handed out, in pages the arena uses, resident in RAM.
   * backing_allocated_bytes <= execution_used_bytes + storage_used_bytes
   * + cache_parked_bytes, but for the blocks of evictions under way (see
   * "Real memory"). */
  uint64_t backing_allocated_bytes;
  uint64_t backing_active_bytes;
  uint64_t backing_resident_bytes;
  /* Blocks freed and parked in the per-thread caches (allocated, no
   * longer charged): at most cpu_cache_bytes for each thread that uses
   * the manager, and none while the budget is nearly used up. */
  uint64_t cache_parked_bytes;
  /* Execution quota that consumers reserved from the pools ahead of use
   * and hold for nobody yet (their spare: see "Consumers").  The picture
   * above is the books', as if it were given back (execution_used_bytes
   * does not count it); it is at most two quanta per consumer, and is
   * given back before any request is declined, evicts or is held. */
  uint64_t execution_credit_bytes;
  /* Held acquires granted after waiting (a part of granted; the others
   * that were held timed out, were cancelled, or were declined because
   * the allocator failed). */
  uint64_t held_granted;
  /* Reclaim (see "Reclaim"): callbacks run, the bytes they said they
   * released or will release, and the time they took in all. */
  uint64_t reclaims;
  uint64_t reclaimed_bytes;
  uint64_t reclaim_ns;
  /* Where total_bytes came from: MM_BUDGET_*. */
  int budget_source;
  /* The elastic budget (see mm_set_budget): the largest it may be set
   * to, how many times it changed, and how far use is past it now (only
   * after a shrink, or external memory found by a poll, until releases
   * bring use back within it: the pools' used bytes may then exceed
   * their sizes). */
  size_t max_total_bytes;
  uint64_t budget_changes;
  size_t over_budget_bytes;
  /* Memory outside the manager counted against the budget now: reported
   * by mm_external_set, and found by the poll (external_polled_bytes, a
   * part of external_bytes).  It is a part of execution_used_bytes. */
  size_t external_bytes;
  size_t external_polled_bytes;
} mm_stats;

/*
 * mm_get_stats - fill *@out with a picture of @mm.
 *
 * If @out is NULL nothing happens; if @mm is NULL *@out is zeroed.
 * Thread-safe.  The books take no lock, but the backing_* fields come
 * from jemalloc's statistics, and refreshing them takes the arena's
 * mutexes for a moment: a block freed to the arena (by mm_exec_free, a
 * release or an eviction) at that moment waits for it.  Do not call it
 * in a tight loop beside latency-critical frees.
 */
MM_API void mm_get_stats(const mm_t *mm, mm_stats *out);

/*
 * mm_stats_print - the picture of mm_get_stats, for people or for tools,
 * in the manner of jemalloc's malloc_stats_print.
 *
 * @write(@ctx, text) is called with the output in pieces, each a
 * NUL-terminated string (NULL @write: written to stderr).  By default the
 * output is a table: the budget and where it came from, both pools with
 * what they use and borrow, consumers' quota reserved ahead and blocks
 * parked in the per-thread caches, held requests and how they ended,
 * evictions with their rate since mm_create, reclaim callbacks, external
 * memory, and the allocator's view of its arena.  With 'J' in @opts (NULL
 * or "" for none) it is one JSON object instead, on one line and a
 * newline, whose names are stable (new ones are only ever added, and
 * "version", 1 today, counts the additions); every number is a
 * non-negative integer (no locale can change it):
 *
 *   version, uptime_ms (since mm_create),
 *   budget: total_bytes, max_total_bytes, source ("configured",
 *           "cgroup-v2", "cgroup-v1" or "physical"), changes, over_bytes
 *   execution: pool_bytes, used_bytes, borrowed_bytes, credit_bytes,
 *              exec_ids
 *   storage: pool_bytes, used_bytes, borrowed_bytes, pinned_bytes, pages
 *   requests: granted, declined, held, held_granted, timed_out,
 *             cancelled, held_now
 *   eviction: pages, bytes, pages_per_s     reclaim: callbacks, bytes, ns
 *   external: bytes, polled_bytes           caches: parked_bytes
 *   allocator: allocated_bytes, active_bytes, resident_bytes
 *
 * (each the mm_stats field of that meaning).  Nothing is written for a
 * NULL @mm.  Thread-safe, as mm_get_stats (whose
 * note on the arena's mutexes applies).
 */
MM_API void mm_stats_print(const mm_t *mm,
                           void (*write)(void *ctx, const char *text),
                           void *ctx, const char *opts);

/*
 * The elastic budget
 *
 * mm_set_budget - make @total_bytes the budget, from this call on.
 *
 * The pools keep the proportion of mm_config (storage_fraction of the
 * budget, as at max_total_bytes).  Growing: held requests that fit now
 * are granted at once (before the call returns, unless another thread is
 * dispatching them).  Shrinking: the new budget holds for every request
 * from the call on; memory in use past it is never granted again (not
 * even a consumer's spare quota), only released.  The call evicts
 * unpinned storage pages (their on_evict callbacks run as usual), then
 * asks consumers with a reclaim callback to give memory back (once each),
 * and waits up to @timeout_ns (MM_NO_WAIT: not at all; MM_WAIT_FOREVER)
 * for what is pinned or in use to be released until use fits.  Requests
 * held meanwhile wait behind it; a held request too large for the new
 * budget ever to grant ends with MM_ENOMEM, and a new one is declined so.
 * Calls may overlap (the last one to take effect is in force); one waits
 * for its own budget, or a larger one in force.
 *
 * Returns MM_OK (use fits the budget), or
 *   MM_EINVAL    @mm is NULL; @total_bytes is above max_total_bytes, or
 *                below what the configuration needs (two pages; a storage
 *                pool of a page and of storage_protected_bytes; an
 *                execution pool of the consumers' guaranteed minimums,
 *                mm_consumer_set_limits); or the call is made from an
 *                eviction callback.  Nothing changed.
 *   MM_ETIMEDOUT use did not fit by the deadline.  The new budget is in
 *                force all the same, and use past it goes as it is
 *                released (mm_stats.over_budget_bytes says how much is
 *                left).
 * From inside a reclaim callback a shrink does not wait (as MM_NO_WAIT).
 * Thread-safe; the acquire paths stay lock-free (resizes are serialised
 * among themselves for a moment, never against acquires).
 */
MM_API mm_status mm_set_budget(mm_t *mm, size_t total_bytes,
                               int64_t timeout_ns);

/*
 * mm_external_set - memory the manager did not allocate: source
 * @source_id (any number the caller picks) holds @bytes now.
 *
 * It counts against the budget as execution memory.  Growth is a request
 * for the difference, granted, declined (MM_ENOMEM) or held up to
 * @timeout_ns like any execution request (it may borrow from storage and
 * evict unpinned pages; consumers are asked to reclaim); it is not a
 * consumer's (fair shares, limits and mm_release_all_execution do not
 * touch it).  Shrinking always succeeds and lets held requests try
 * again; 0 forgets the source.  Calls for one source must not overlap:
 * one that meets another answers MM_EBUSY, and nothing changes.
 * mm_config.external_poll is the polled form.
 *
 * Returns MM_OK, or MM_EINVAL (@mm NULL, a bad timeout, @bytes above
 * max_total_bytes, or called from an eviction callback), MM_ENOMEM
 * (declined, or no memory for the source's record), MM_ETIMEDOUT,
 * MM_ECANCELED (the manager is being destroyed), MM_EBUSY.  On any error
 * the source holds what it held before.  Thread-safe.
 */
MM_API mm_status mm_external_set(mm_t *mm, uint64_t source_id, size_t bytes,
                                 int64_t timeout_ns);

#ifdef __cplusplus
}
#endif

#endif /* MEMORY_MANAGER_H */

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
 * Every request is granted whole or declined; nothing is ever granted in
 * part and the sum of what is granted never exceeds the budget, at any
 * instant, under any interleaving of threads.
 *
 * Thread-safety: every function may be called from any thread at any time
 * between mm_create() and mm_destroy(), with no registration and no
 * external locking, except where its comment says otherwise.  The
 * acquire, release, pin and unpin calls take no mutex (docs/DESIGN.md).
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
 * Eviction arrives with the storage-eviction work; this version never
 * evicts, so the callback is stored but not yet called.
 */
typedef void (*mm_evict_fn)(void *ctx, uint64_t page_id, void *data,
                            size_t bytes);

/*
 * mm_config - how mm_create() builds a manager.
 *
 * Zero-initialise it, set total_bytes, and change only what you need:
 * every field but total_bytes has "0 means default".  Fields are only
 * ever added at the end.
 */
typedef struct mm_config {
  size_t total_bytes;             /* required; at least 2 pages, at most
                                     2^62 bytes */
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
} mm_config;

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
 * Held requests are cancelled; pages and exec ids still charged are
 * dropped without callbacks.  @mm may be NULL (nothing happens).
 *
 * The caller must make sure no other call on @mm is running or will start:
 * mm_destroy is the one call that is not thread-safe against the others.
 * It waits for the manager's deferred frees to finish, so it must not be
 * called from an eviction or grant callback.
 */
MM_API void mm_destroy(mm_t *mm);

/*
 * mm_acquire_execution - charge @bytes of execution memory to @exec_id.
 *
 * Granted whole or not at all.  It fits if @bytes is at most the free
 * execution capacity plus the free storage capacity: execution borrows
 * free storage capacity, and the pool boundary moves until it is repaid.
 *
 * @timeout_ns: MM_NO_WAIT, a positive number of nanoseconds, or
 *              MM_WAIT_FOREVER.  Held requests arrive with the
 *              held-requests work; until then a request that does not fit
 *              is declined at once whatever the timeout.
 *
 * Returns MM_OK (charged), or
 *   MM_EINVAL  @mm is NULL, @bytes is 0 or more than
 *              max_execution_request, or @timeout_ns is below -1;
 *   MM_ENOMEM  it does not fit now, or bookkeeping for a new exec id could
 *              not be allocated.
 * Thread-safe, lock-free.  The first acquire of an exec id creates a small
 * record for it, kept until mm_release_all_execution(@exec_id).
 */
MM_API mm_status mm_acquire_execution(mm_t *mm, uint64_t exec_id, size_t bytes,
                                      int64_t timeout_ns);

/*
 * mm_release_execution - return @bytes of @exec_id's execution memory.
 *
 * Borrowed capacity is repaid to the storage pool first: once execution
 * use is back at or under its initial size, both pools are exactly at
 * their initial sizes again.  Releasing down to zero keeps the exec id's
 * record for reuse; mm_release_all_execution() drops it.
 *
 * Returns MM_OK, or
 *   MM_EINVAL  @mm is NULL, @bytes is 0, or @bytes is more than @exec_id
 *              holds (an exec id that holds nothing holds 0 bytes); nothing
 *              changed.
 * Thread-safe, lock-free.
 */
MM_API mm_status mm_release_execution(mm_t *mm, uint64_t exec_id, size_t bytes);

/*
 * mm_release_all_execution - the task behind @exec_id ended or failed:
 * return everything it holds and drop its record.
 *
 * Returns the bytes released: exactly what @exec_id held (0 for an
 * unknown id, or if @mm is NULL).  Thread-safe, lock-free; an acquire for
 * the same id that races with it is either released by it or left
 * charged, never lost.
 */
MM_API size_t mm_release_all_execution(mm_t *mm, uint64_t exec_id);

/*
 * mm_execution_held - the bytes @exec_id holds now (0 if unknown, or if
 * @mm is NULL).  Thread-safe; exact when no call on the same id is in
 * flight.
 */
MM_API size_t mm_execution_held(const mm_t *mm, uint64_t exec_id);

/*
 * mm_acquire_storage - charge a storage page @page_id of @bytes.
 *
 * @bytes is rounded up to a multiple of page_size.  The page is
 * accounting-only (it has no memory of the manager's, and mm_pin_storage
 * gives NULL as its data) and it is born unpinned.  Storage never takes
 * execution memory in use; with storage_may_borrow it may take free
 * execution capacity, repaid when it releases.
 *
 * @timeout_ns: as for mm_acquire_execution.
 *
 * Returns MM_OK (registered and charged), or
 *   MM_EINVAL  @mm is NULL, @bytes is 0, @timeout_ns is below -1, or the
 *              rounded size is more than the storage pool could ever hold
 *              (its initial size, or total_bytes with storage_may_borrow);
 *   MM_EEXIST  @page_id is already registered;
 *   MM_ENOMEM  it does not fit now, or the page record could not be
 *              allocated.
 * Thread-safe, lock-free.  Two racing acquires of one new id: exactly one
 * gets MM_OK, the other MM_EEXIST.
 */
MM_API mm_status mm_acquire_storage(mm_t *mm, uint64_t page_id, size_t bytes,
                                    int64_t timeout_ns);

/*
 * mm_release_storage - unregister @page_id and return its bytes.
 *
 * Returns MM_OK, or
 *   MM_EINVAL  @mm is NULL;
 *   MM_ENOENT  no such page (never registered, or already released);
 *   MM_EBUSY   the page is pinned; unpin it first.
 * Thread-safe, lock-free.  A release racing with a pin of the same page:
 * either the release wins (the pin gets MM_ENOENT) or the pin wins (the
 * release gets MM_EBUSY).
 */
MM_API mm_status mm_release_storage(mm_t *mm, uint64_t page_id);

/*
 * mm_pin_storage - pin @page_id so that it cannot be released (or, once
 * eviction exists, evicted).  Pins nest: each pin needs its own unpin.
 *
 * @data: if not NULL, receives the page's memory (NULL for an
 *        accounting-only page).
 *
 * Returns MM_OK, or
 *   MM_EINVAL  @mm is NULL, or the page already holds 2^32-1 pins;
 *   MM_ENOENT  no such page.
 * Thread-safe, lock-free.
 */
MM_API mm_status mm_pin_storage(mm_t *mm, uint64_t page_id, void **data);

/*
 * mm_unpin_storage - drop one pin of @page_id.
 *
 * Returns MM_OK, or
 *   MM_EINVAL  @mm is NULL, or the page is not pinned;
 *   MM_ENOENT  no such page.
 * Thread-safe, lock-free.
 */
MM_API mm_status mm_unpin_storage(mm_t *mm, uint64_t page_id);

/*
 * mm_stats - a picture of the manager.  Fields are only ever added at the
 * end.
 *
 * The pool sizes and the used and borrowed bytes come from one atomic
 * snapshot of the pools, so they agree with one another: the pool sizes
 * sum to total_bytes, and each pool's used bytes are at most its size.
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
  uint64_t held_now;               /* acquires held at this moment */
  uint64_t timed_out;              /* held acquires that hit the deadline */
  uint64_t cancelled;              /* held acquires cancelled */
  uint64_t evictions;              /* pages evicted */
  uint64_t evicted_bytes;          /* bytes of the pages evicted */
  uint64_t storage_pages;          /* storage pages registered now */
  uint64_t execution_ids;          /* exec ids with a record now */
} mm_stats;

/*
 * mm_get_stats - fill *@out with a picture of @mm.
 *
 * If @out is NULL nothing happens; if @mm is NULL *@out is zeroed.
 * Thread-safe, lock-free; it never blocks an acquire or release.
 */
MM_API void mm_get_stats(const mm_t *mm, mm_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* MEMORY_MANAGER_H */

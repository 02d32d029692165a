/*
 * mm_sqlite.h -- run SQLite on a memory_manager budget.
 *
 * SQLite's page cache (SQLITE_CONFIG_PCACHE2) becomes storage pages of the
 * manager: pinned while SQLite uses them, evictable once SQLite unpins
 * them (it unpins only clean pages), evicted at random or by sampled LRU
 * when any request of the process needs the room.  SQLite's heap
 * (SQLITE_CONFIG_MALLOC) becomes execution memory, from the manager's own
 * arena.  One manager can serve SQLite and the rest of an engine.
 *
 *   mm_config cfg = {.total_bytes = 256 << 20,
 *                    .max_execution_request = 256 << 20,
 *                    .on_evict = mm_sqlite_on_evict};
 *   mm_t *mm;
 *   mm_create(&cfg, &mm);
 *   mm_sqlite_install(mm, NULL);    (before sqlite3_initialize)
 *   ... sqlite3_open_v2 ...
 *
 * What to know:
 *   - The eviction callback: the manager has one per mm_t.  Set
 *     mm_config.on_evict to mm_sqlite_on_evict, or call it from your own
 *     callback, which then ignores the pages it returns true for.  The
 *     adapter's page ids have bit 63 set; keep your own ids below 2^63.
 *   - SQLite's heap is one exec id (mm_sqlite_options.exec_id): xMalloc
 *     is not told which connection allocates, and SQLite's allocations
 *     outlive and cross connections (the schema, prepared statements,
 *     the pager's buffers), so there is nothing finer to charge.  The
 *     page cache's own records (the sqlite3_pcache_page and SQLite's
 *     per-page extra bytes, about 200 bytes a page) come from the C heap
 *     and are charged to exec_id + 1, so the budget covers them too.
 *   - Set mm_config.max_execution_request to the budget (or what SQLite
 *     may ask for at once: large sorts and blobs): the default, 8 MiB,
 *     would make bigger allocations fail with SQLITE_NOMEM.
 *   - mm_sqlite_install turns SQLITE_CONFIG_MEMSTATUS off unless asked not
 *     to: with it on, SQLite serialises every allocation behind one mutex
 *     to keep its statistics, which costs more than the allocator itself.
 *     (sqlite3_memory_used() then answers 0; use mm_get_stats.)
 *   - SQLite's cache_size still bounds the pages SQLite holds, dirty ones
 *     included (once it holds that many, a page it does not hold yet is
 *     refused with createFlag 1, so SQLite spills a dirty page first);
 *     clean pages stay cached beyond it as long as the budget allows.
 *     What SQLite must hold at once (a savepoint rollback, during which it
 *     cannot spill; a big sort's heap) must fit in the budget: SQLite gets
 *     SQLITE_NOMEM where its own cache and allocator would have grown.
 *   - Every method but xInit and xShutdown is thread-safe.  Each cache
 *     has a mutex over its index, held for a few pointer updates and a
 *     pin, never across a manager call that may evict, so the eviction
 *     callback (which takes the mutex of the evicted page's cache, on
 *     whatever thread is evicting) cannot deadlock with it.  The manager
 *     itself stays lock-free; these mutexes are the adapter's.
 */
#ifndef MM_SQLITE_H
#define MM_SQLITE_H

#include <memory_manager.h>

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mm_sqlite_options {
  /* SQLite's heap is charged to this exec id, the page cache's records to
   * exec_id + 1.  0 means 0x53514c00 ("SQL\0"). */
  uint64_t exec_id;
  /* How long xMalloc may wait for execution memory (0: MM_NO_WAIT, the
   * default: granted at once, by eviction if need be, or SQLITE_NOMEM). */
  int64_t malloc_timeout_ns;
  /* How long xFetch with createFlag 2 may wait for a page when every page
   * of the budget is pinned; 0 means 10 ms. */
  int64_t fetch_timeout_ns;
  bool keep_sqlite_malloc; /* install the page cache only */
  bool keep_memstatus;     /* leave SQLITE_CONFIG_MEMSTATUS as it is */
} mm_sqlite_options;

/*
 * mm_sqlite_install - make SQLite use @mm for its page cache and heap.
 *
 * Call before sqlite3_initialize() (or after sqlite3_shutdown()), once per
 * process: SQLite's configuration is global.  @opt may be NULL (defaults).
 * @mm must outlive every use of SQLite.
 *
 * Returns SQLITE_OK, SQLITE_MISUSE (@mm NULL, a negative timeout, already
 * installed, or SQLite already initialised: nothing changed), or the
 * error sqlite3_config returned (nothing changed).
 */
int mm_sqlite_install(mm_t *mm, const mm_sqlite_options *opt);

/*
 * mm_sqlite_evicted - handle the eviction of @page_id if it is one of the
 * adapter's pages (bit 63 set): returns true then, false otherwise.  Call
 * it from your own mm_evict_fn if you have one.
 * mm_sqlite_on_evict - the same as an mm_evict_fn (@ctx is ignored), to
 * set as mm_config.on_evict when SQLite is the only user of storage.
 */
bool mm_sqlite_evicted(uint64_t page_id, void *data, size_t bytes);
void mm_sqlite_on_evict(void *ctx, uint64_t page_id, void *data, size_t bytes);

typedef struct mm_sqlite_stats {
  uint64_t fetch_hits;    /* xFetch found the page */
  uint64_t fetch_misses;  /* xFetch did not (created, or returned NULL) */
  uint64_t evicted_pages; /* pages the manager evicted from SQLite */
  uint64_t fetch_failed;  /* xFetch could not create a page */
  uint64_t malloc_failed; /* xMalloc/xRealloc answered NULL */
} mm_sqlite_stats;

/* The adapter's counters since it was installed (zero if it is not). */
void mm_sqlite_get_stats(mm_sqlite_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* MM_SQLITE_H */

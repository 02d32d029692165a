/* SPDX-License-Identifier: BSD-2-Clause */
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
 *   - The heap is one consumer handle (mm_consumer) on exec_id, opened by
 *     mm_sqlite_install: mm_release_all_execution(exec_id) by the program
 *     would close it, and every SQLite allocation after would fail.
 *   - Spilling.  SQLite sheds memory as the budget fills, as it does
 *     under its own soft heap limit: the adapter sets that limit to the
 *     execution pool (mm_sqlite_options.soft_heap_limit), so sorts and
 *     index builds flush their runs to temporary files once the heap
 *     reaches it, whatever cache_size says; a page SQLite does not hold
 *     yet is refused while the budget is full, so SQLite spills a dirty
 *     page first; clean pages are evicted by the manager whenever any
 *     request needs the room; sqlite3_db_release_memory drops a
 *     connection's unpinned pages.  (sqlite3_release_memory does nothing
 *     under any page cache but SQLite's own.)  SQLITE_NOMEM comes only
 *     when SQLite must hold more at once than the budget: the pages it
 *     holds pinned (dirty pages during a savepoint rollback, which it
 *     cannot spill; a page of each open cursor) plus what one step of a
 *     statement needs in its heap (a row, a blob, a sorter run of at
 *     least ten pages); and VACUUM while cache_size is far above the
 *     budget (its copy inherits cache_size).  For this the install sets
 *     SQLITE_CONFIG_MEMSTATUS, SQLITE_CONFIG_SMALL_MALLOC (the sorter
 *     heeds the soft heap limit only with it) and SQLITE_CONFIG_PMASZ (a
 *     64th of the budget).
 *   - Memory statistics stay on (SQLite's default), as the soft heap limit
 *     needs them: SQLite then serialises every allocation behind one
 *     mutex, as stock SQLite does.  With soft_heap_limit -1 the adapter
 *     turns them off unless keep_memstatus (sqlite3_memory_used() then
 *     answers 0; use mm_get_stats).
 *   - SQLite's cache_size still bounds the pages SQLite holds, dirty ones
 *     included (once it holds that many, a page it does not hold yet is
 *     refused with createFlag 1, so SQLite spills a dirty page first);
 *     clean pages stay cached beyond it as long as the budget allows.
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
   * default: granted at once, by eviction if need be, or SQLITE_NOMEM).
   * Only with soft_heap_limit -1 (or keep_sqlite_malloc): with memory
   * statistics on, SQLite calls xMalloc under its global mutex, so a wait
   * would hold up every other allocation and every free. */
  int64_t malloc_timeout_ns;
  /* How long xFetch with createFlag 2 may wait for a page when every page
   * of the budget is pinned; 0 means 10 ms. */
  int64_t fetch_timeout_ns;
  bool keep_sqlite_malloc; /* install the page cache only */
  /* Leave SQLITE_CONFIG_MEMSTATUS as it is; only with soft_heap_limit -1
   * (the soft heap limit needs memory statistics, and turns them on). */
  bool keep_memstatus;
  /* SQLite's soft heap limit, set when the first cache is made unless the
   * program set one by then: 0 (the default) means the manager's
   * execution pool, -1 none (memory statistics then go off unless
   * keep_memstatus), else bytes.  It is what makes SQLite's sorter spill
   * as its heap fills (see "Spilling" above); with keep_sqlite_malloc it
   * is not set. */
  int64_t soft_heap_limit;
} mm_sqlite_options;

/*
 * mm_sqlite_install - make SQLite use @mm for its page cache and heap.
 *
 * Call before sqlite3_initialize() (or after sqlite3_shutdown()), once per
 * process: SQLite's configuration is global.  @opt may be NULL (defaults).
 * @mm must outlive every use of SQLite.
 *
 * Returns SQLITE_OK, SQLITE_MISUSE (@mm NULL, a timeout or soft_heap_limit
 * below -1, a malloc_timeout_ns with a soft heap limit, already
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

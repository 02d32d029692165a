/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_sqlite_pcache.c -- the adapter's page cache methods called one by
 * one, as SQLite's pcache.c calls them, against what the
 * sqlite3_pcache_methods2 contract says; and its heap methods.
 */
#include "mm_sqlite.h"

#include <sqlite3.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                              \
    }                                                                          \
  } while (0)

#define PAGE  4096
#define EXTRA 72

static sqlite3_pcache_methods2 pc;
static mm_t *mm;

static sqlite3_pcache_page *fetch(sqlite3_pcache *c, unsigned key, int flag) {
  return pc.xFetch(c, key, flag);
}

/* A page fetched fresh: its extra's first pointer is zero, then stamped. */
static sqlite3_pcache_page *fresh(sqlite3_pcache *c, unsigned key) {
  sqlite3_pcache_page *p = fetch(c, key, 2);
  CHECK(p != NULL);
  if (!p)
    return NULL;
  CHECK(*(void **)p->pExtra == NULL);
  memset(p->pBuf, (int)key, PAGE);
  *(void **)p->pExtra = p; /* as pcache.c's PgHdr would be */
  return p;
}

static mm_stats stats(void) {
  mm_stats s;
  mm_get_stats(mm, &s);
  return s;
}

static void test_pages(void) {
  sqlite3_pcache *c = pc.xCreate(PAGE, EXTRA, 1);
  CHECK(c != NULL);
  pc.xCachesize(c, 4);
  CHECK(fetch(c, 1, 0) == NULL); /* createFlag 0: never allocates */
  sqlite3_pcache_page *p1 = fresh(c, 1);
  CHECK(fetch(c, 1, 0) == p1); /* a pinned page, again: no counting */
  CHECK(pc.xPagecount(c) == 1);
  CHECK(stats().storage_used_bytes == PAGE); /* one page is one page */
  pc.xUnpin(c, p1, 0);
  CHECK(stats().storage_pinned_bytes == 0);
  CHECK(fetch(c, 1, 0) == p1); /* unpinned, not evicted: found, pinned */
  CHECK(((unsigned char *)p1->pBuf)[100] == 1 && *(void **)p1->pExtra == p1);
  CHECK(stats().storage_pinned_bytes == PAGE);

  /* Rekey: the object moves to the new key. */
  pc.xRekey(c, p1, 1, 5);
  CHECK(fetch(c, 1, 0) == NULL && fetch(c, 5, 0) == p1);
  /* Rekey onto a key in use: that page is discarded first. */
  sqlite3_pcache_page *p6 = fresh(c, 6);
  pc.xUnpin(c, p6, 0);
  CHECK(pc.xPagecount(c) == 2);
  pc.xRekey(c, p1, 5, 6);
  CHECK(fetch(c, 6, 0) == p1 && fetch(c, 5, 0) == NULL);
  CHECK(pc.xPagecount(c) == 1);

  /* Discard frees at once. */
  sqlite3_pcache_page *p2 = fresh(c, 2);
  pc.xUnpin(c, p2, 1);
  CHECK(fetch(c, 2, 0) == NULL);
  CHECK(pc.xPagecount(c) == 1);

  /* createFlag 1: refused once SQLite holds cache_size pages, so that it
   * spills; createFlag 2 still makes the page. */
  sqlite3_pcache_page *held[4];
  held[0] = p1;
  for (unsigned k = 1; k < 4; k++)
    held[k] = fresh(c, 10 + k);
  CHECK(fetch(c, 20, 1) == NULL);
  /* Until a page is given with 2, the count reads past cache_size, so
   * that SQLite spills whatever its spill size (VACUUM's is cache_size). */
  CHECK(pc.xPagecount(c) == 5); /* 4 cached */
  sqlite3_pcache_page *p20 = fetch(c, 20, 2);
  CHECK(p20 != NULL);
  /* A cached page SQLite does not hold is refused too while it holds
   * cache_size pages (it spills first), and given with 2. */
  pc.xUnpin(c, p20, 0);
  CHECK(fetch(c, 20, 1) == NULL);
  CHECK(fetch(c, 20, 2) == p20);
  CHECK(fetch(c, 20, 1) == p20); /* held already: no new pin, no refusal */

  /* Truncate: keys at or past the limit go, pinned ones too. */
  pc.xUnpin(c, held[1], 0);
  pc.xTruncate(c, 12);
  CHECK(fetch(c, 11, 0) != NULL); /* below the limit: kept (and pinned) */
  CHECK(fetch(c, 12, 0) == NULL && fetch(c, 13, 0) == NULL);
  CHECK(fetch(c, 20, 0) == NULL);
  CHECK(pc.xPagecount(c) == 2); /* 6 and 11 */

  /* Shrink: unpinned pages go, pinned ones stay. */
  pc.xUnpin(c, p1, 0);
  pc.xShrink(c);
  CHECK(fetch(c, 6, 0) == NULL && pc.xPagecount(c) == 1);
  pc.xDestroy(c);
  CHECK(stats().storage_pages == 0 && stats().storage_used_bytes == 0);
  CHECK(mm_execution_held(mm, 0x53514c01) == 0); /* every record freed */
}

static void test_eviction(void) {
  /* Two caches: pages unpinned in the purgeable one are evicted for the
   * other's fetches and vanish from its index; a cache that is not
   * purgeable (an in-memory database) never loses a page. */
  sqlite3_pcache *a = pc.xCreate(PAGE, EXTRA, 1);
  sqlite3_pcache *mem = pc.xCreate(PAGE, EXTRA, 0);
  for (unsigned k = 0; k < 4; k++)
    pc.xUnpin(mem, fresh(mem, k), 0);
  size_t storage = stats().storage_pool_bytes / PAGE;
  for (unsigned k = 0; k < 3 * storage; k++)
    pc.xUnpin(a, fresh(a, k), 0);
  mm_sqlite_stats st;
  mm_sqlite_get_stats(&st);
  CHECK(st.evicted_pages > 0);
  CHECK(stats().evictions == st.evicted_pages);
  CHECK(pc.xPagecount(a) < (int)(3 * storage));
  unsigned found = 0;
  for (unsigned k = 0; k < 3 * storage; k++) {
    sqlite3_pcache_page *p = fetch(a, k, 0);
    if (p) { /* still cached: its own content */
      found++;
      CHECK(((unsigned char *)p->pBuf)[7] == (unsigned char)k);
      pc.xUnpin(a, p, 0);
    }
  }
  CHECK(found > 0 && found == (unsigned)pc.xPagecount(a));
  for (unsigned k = 0; k < 4; k++) {
    sqlite3_pcache_page *p = fetch(mem, k, 0);
    CHECK(p && ((unsigned char *)p->pBuf)[9] == (unsigned char)k);
    if (p)
      pc.xUnpin(mem, p, 0);
  }
  pc.xDestroy(a);
  pc.xDestroy(mem);
  CHECK(stats().storage_pages == 0 && stats().storage_used_bytes == 0);
}

static void test_heap(void) {
  char *p = sqlite3_malloc(100);
  CHECK(p != NULL && sqlite3_msize(p) >= 100);
  memset(p, 'x', 100);
  CHECK(mm_execution_held(mm, 0x53514c00) > 0);
  p = sqlite3_realloc(p, 5000);
  CHECK(p != NULL && sqlite3_msize(p) >= 5000 && p[99] == 'x');
  sqlite3_free(p);
  /* More than the budget: NULL (SQLITE_NOMEM), nothing charged. */
  size_t before = mm_execution_held(mm, 0x53514c00);
  CHECK(sqlite3_malloc64(64u << 20) == NULL);
  CHECK(mm_execution_held(mm, 0x53514c00) == before);
}

int main(void) {
  mm_config cfg = {.total_bytes = 1u << 20,
                   .max_execution_request = 1u << 20,
                   .on_evict = mm_sqlite_on_evict};
  if (mm_create(&cfg, &mm) != MM_OK)
    return 1;
  mm_sqlite_options bad = {.malloc_timeout_ns = -2};
  mm_sqlite_options waits = {.malloc_timeout_ns = 1000000}; /* soft limit */
  mm_sqlite_options low = {.soft_heap_limit = -2};
  CHECK(mm_sqlite_install(NULL, NULL) == SQLITE_MISUSE);
  CHECK(mm_sqlite_install(mm, &bad) == SQLITE_MISUSE);
  CHECK(mm_sqlite_install(mm, &waits) == SQLITE_MISUSE);
  CHECK(mm_sqlite_install(mm, &low) == SQLITE_MISUSE);
  CHECK(mm_sqlite_install(mm, NULL) == SQLITE_OK);
  CHECK(mm_sqlite_install(mm, NULL) == SQLITE_MISUSE); /* once */
  CHECK(mm_sqlite_evicted(42, NULL, 4096) == false);   /* not its page */
  CHECK(sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &pc) == SQLITE_OK);
  CHECK(sqlite3_initialize() == SQLITE_OK);
  CHECK(pc.xInit(pc.pArg) == SQLITE_OK);
  test_pages();
  test_eviction();
  test_heap();
  pc.xShutdown(pc.pArg);
  CHECK(sqlite3_shutdown() == SQLITE_OK);
  CHECK(mm_execution_held(mm, 0x53514c00) == 0);
  mm_destroy(mm);
  if (failures)
    fprintf(stderr, "%d checks failed\n", failures);
  else
    printf("page cache and heap methods: all checks passed\n");
  return failures != 0;
}

/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_sqlite_threads.c -- several connections on several threads (SQLite
 * in multi-thread mode: each connection used by one thread at a time) on
 * one small budget, so that every connection's pages are evicted by the
 * others' fetches and allocations, on their threads.  Run under
 * ThreadSanitizer in CI.
 *
 * Each thread owns a database file and also reads a shared one.  It loads
 * its table, then alternates updates, scans and sorted reads, checking
 * every answer against sums computed here (so every statement must
 * succeed: a page or an allocation refused would fail one).  At the end:
 * the budget was never exceeded (sampled), pages were evicted, and every
 * page and byte came back when the connections closed.
 */
#include "mm_sqlite.h"

#include <sqlite3.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define THREADS 6
#define ROWS    10000
#define ROUNDS  6

static atomic_int failures;
static mm_t *mm;
static char dir[64];

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      atomic_fetch_add(&failures, 1);                                          \
    }                                                                          \
  } while (0)

static void exec_ok(sqlite3 *db, const char *sql) {
  char *err = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
    fprintf(stderr, "%s: %s\n", sql, err ? err : "?");
    atomic_fetch_add(&failures, 1);
  }
  sqlite3_free(err);
}

static long long one_int(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st;
  long long v = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  else
    fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
  sqlite3_finalize(st);
  return v;
}

static sqlite3 *open_db(const char *name, int flags) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  sqlite3 *db;
  if (sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL) !=
      SQLITE_OK) {
    fprintf(stderr, "open %s: %s\n", path, sqlite3_errmsg(db));
    exit(1);
  }
  sqlite3_busy_timeout(db, 10000);
  return db;
}

static void *worker(void *arg) {
  int me = (int)(intptr_t)arg;
  char name[32], sql[512];
  snprintf(name, sizeof name, "t%d.db", me);
  sqlite3 *db = open_db(name, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  sqlite3 *shared = open_db("shared.db", SQLITE_OPEN_READONLY);
  exec_ok(db, "PRAGMA cache_size=-512; CREATE TABLE t(k INTEGER PRIMARY KEY,"
              " v INTEGER, pad TEXT); CREATE INDEX tv ON t(v);");
  exec_ok(db, "BEGIN");
  snprintf(sql, sizeof sql,
           "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c "
           "WHERE x < %d) INSERT INTO t SELECT x, (x * %d) %% 1009, "
           "printf('%%0200d', x) FROM c",
           ROWS, me + 7);
  exec_ok(db, sql);
  exec_ok(db, "COMMIT");
  long long want = 0;
  for (long long x = 1; x <= ROWS; x++)
    want += (x * (me + 7)) % 1009;
  long long shared_sum = one_int(shared, "SELECT sum(v) FROM s");
  for (int round = 0; round < ROUNDS; round++) {
    CHECK(one_int(db, "SELECT sum(v) FROM t") == want);
    CHECK(one_int(db, "SELECT count(*) FROM t WHERE length(pad) = 200") ==
          ROWS);
    /* a sort bigger than the cache, through the index and without */
    CHECK(one_int(db, "SELECT sum(k) FROM (SELECT k FROM t ORDER BY v, k "
                      "LIMIT 100 OFFSET 2000)") > 0);
    CHECK(one_int(db, "SELECT count(*) FROM (SELECT pad FROM t ORDER BY "
                      "substr(pad, 150) DESC)") == ROWS);
    exec_ok(db, "UPDATE t SET v = v + 1 WHERE k % 3 = 0");
    want += ROWS / 3;
    CHECK(one_int(shared, "SELECT sum(v) FROM s") == shared_sum);
  }
  sqlite3_stmt *st;
  sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL);
  CHECK(sqlite3_step(st) == SQLITE_ROW &&
        strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0);
  sqlite3_finalize(st);
  CHECK(sqlite3_close(db) == SQLITE_OK);
  CHECK(sqlite3_close(shared) == SQLITE_OK);
  return NULL;
}

static atomic_bool stop;

static void *watch(void *arg) {
  (void)arg;
  while (!atomic_load(&stop)) {
    mm_stats s;
    mm_get_stats(mm, &s);
    CHECK(s.execution_used_bytes + s.storage_used_bytes <= s.total_bytes);
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
  return NULL;
}

int main(void) {
  strcpy(dir, "/tmp/mm-sqlite-threads-XXXXXX");
  if (!mkdtemp(dir))
    return 1;
  char cmd[128];
  /* 8 MiB of page cache for about 20 MiB of databases; SQLite's heap
   * (six concurrent sorts of a few MiB) borrows from it when it must. */
  mm_config cfg = {.total_bytes = 16u << 20,
                   .max_execution_request = 16u << 20,
                   .on_evict = mm_sqlite_on_evict};
  if (mm_create(&cfg, &mm) != MM_OK ||
      sqlite3_config(SQLITE_CONFIG_MULTITHREAD) != SQLITE_OK ||
      mm_sqlite_install(mm, NULL) != SQLITE_OK ||
      mm_sqlite_install(mm, NULL) != SQLITE_MISUSE) /* once per process */
    return 1;

  sqlite3 *db =
      open_db("shared.db", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  exec_ok(db, "CREATE TABLE s(k INTEGER PRIMARY KEY, v INTEGER, pad TEXT);"
              "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c "
              "WHERE x < 4000) INSERT INTO s SELECT x, x % 97, "
              "printf('%0300d', x) FROM c;");
  sqlite3_close(db);

  pthread_t t[THREADS], w;
  pthread_create(&w, NULL, watch, NULL);
  for (int i = 0; i < THREADS; i++)
    pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  atomic_store(&stop, true);
  pthread_join(w, NULL);

  mm_stats s;
  mm_sqlite_stats a;
  mm_get_stats(mm, &s);
  mm_sqlite_get_stats(&a);
  printf("%d connections: %llu evictions, hit ratio %.3f, %llu fetches and "
         "%llu allocations failed\n",
         THREADS, (unsigned long long)s.evictions,
         (double)a.fetch_hits / (double)(a.fetch_hits + a.fetch_misses),
         (unsigned long long)a.fetch_failed,
         (unsigned long long)a.malloc_failed);
  CHECK(s.evictions > 0);
  CHECK(a.evicted_pages == s.evictions);
  /* Every connection closed: no page is left, and the records went too. */
  CHECK(s.storage_pages == 0 && s.storage_used_bytes == 0);
  CHECK(mm_execution_held(mm, 0x53514c01) == 0);
  CHECK(sqlite3_shutdown() == SQLITE_OK);
  CHECK(mm_execution_held(mm, 0x53514c00) == 0); /* SQLite's heap, freed */
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  (void)system(cmd);
  mm_destroy(mm);
  if (atomic_load(&failures)) {
    fprintf(stderr, "%d checks failed\n", atomic_load(&failures));
    return 1;
  }
  return 0;
}

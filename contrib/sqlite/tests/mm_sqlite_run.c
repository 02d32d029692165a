/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * mm_sqlite_run.c -- run a SQL script through SQLite, on the manager or on
 * SQLite's own page cache and allocator, and print every result row.
 *
 *   mm-sqlite-run [--stock] [--budget SIZE] [--fraction F] [--borrow]
 *                 [--policy random|lru] [--expect-evictions]
 *                 [--report FILE] DB SCRIPT
 *
 * Rows go to stdout as the sqlite3 shell's list mode prints them (columns
 * joined by '|', NULL empty), so two runs can be compared byte for byte.
 * On the manager (the default) the budget is SIZE (default 8M) with
 * storage fraction F (default 0.5; --borrow: the page cache may also use
 * free execution memory); a thread samples mm_get_stats every
 * millisecond and the run fails if used bytes ever exceed the budget,
 * and with --expect-evictions if nothing was evicted.  With --stock,
 * SQLite's own cache gets the same page budget (PRAGMA cache_size) unless
 * the script sets its own.  A line of figures goes to stderr (and is
 * appended to FILE with --report): wall seconds, peak RSS, the pager's
 * cache hit ratio (SQLITE_DBSTATUS_CACHE_HIT/MISS), evictions.
 */
#include "mm_sqlite.h"

#include <sqlite3.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static void die(const char *what, const char *why) {
  fprintf(stderr, "mm-sqlite-run: %s: %s\n", what, why);
  exit(1);
}

static size_t parse_size(const char *s) {
  char *end;
  double v = strtod(s, &end);
  double unit = *end == 'K' || *end == 'k'   ? 1024.0
                : *end == 'M' || *end == 'm' ? 1048576.0
                : *end == 'G' || *end == 'g' ? 1073741824.0
                                             : 1.0;
  if (end == s || v <= 0)
    die(s, "not a size");
  return (size_t)(v * unit);
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    die(path, "cannot open");
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (!s || fread(s, 1, (size_t)n, f) != (size_t)n)
    die(path, "cannot read");
  s[n] = '\0';
  fclose(f);
  return s;
}

/* ---- the budget watch ---------------------------------------------------- */

static mm_t *mm;
static atomic_bool done;
static atomic_ullong peak_used, samples;

static void *watch(void *arg) {
  (void)arg;
  while (!atomic_load(&done)) {
    mm_stats s;
    mm_get_stats(mm, &s);
    unsigned long long used = s.execution_used_bytes + s.storage_used_bytes;
    if (used > s.total_bytes) {
      fprintf(stderr, "mm-sqlite-run: used %llu bytes of a %zu budget\n", used,
              s.total_bytes);
      exit(1);
    }
    if (used > atomic_load(&peak_used))
      atomic_store(&peak_used, used);
    atomic_fetch_add(&samples, 1);
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
  return NULL;
}

/* ---- running the script ----------------------------------------------------
 */

static void print_row(sqlite3_stmt *st) {
  int n = sqlite3_column_count(st);
  for (int i = 0; i < n; i++) {
    const unsigned char *t = sqlite3_column_text(st, i);
    if (i)
      putchar('|');
    if (t)
      fputs((const char *)t, stdout);
  }
  putchar('\n');
}

static void run_script(sqlite3 *db, const char *sql) {
  const char *tail = sql;
  while (*tail) {
    sqlite3_stmt *st = NULL;
    const char *next;
    if (sqlite3_prepare_v2(db, tail, -1, &st, &next) != SQLITE_OK)
      die("prepare", sqlite3_errmsg(db));
    tail = next;
    if (!st)
      continue; /* whitespace or a comment */
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
      print_row(st);
    if (rc != SQLITE_DONE) {
      mm_sqlite_stats a;
      mm_sqlite_get_stats(&a);
      fprintf(stderr, "mm-sqlite-run: in: %.*s\n", 200, sqlite3_sql(st));
      fprintf(stderr,
              "mm-sqlite-run: %llu page fetches and %llu allocations failed; "
              "SQLite's heap %lld bytes (at most %lld), soft limit %lld\n",
              (unsigned long long)a.fetch_failed,
              (unsigned long long)a.malloc_failed,
              (long long)sqlite3_memory_used(),
              (long long)sqlite3_memory_highwater(0),
              (long long)sqlite3_soft_heap_limit64(-1));
      die("step", sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
  }
}

int main(int argc, char **argv) {
  bool stock = false, expect_evictions = false, borrow = false;
  size_t budget = 8u << 20;
  double fraction = 0.5;
  int policy = MM_EVICT_RANDOM;
  const char *report = NULL;
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (!strcmp(argv[i], "--stock"))
      stock = true;
    else if (!strcmp(argv[i], "--expect-evictions"))
      expect_evictions = true;
    else if (!strcmp(argv[i], "--borrow"))
      borrow = true;
    else if (!strcmp(argv[i], "--budget") && i + 1 < argc)
      budget = parse_size(argv[++i]);
    else if (!strcmp(argv[i], "--fraction") && i + 1 < argc)
      fraction = atof(argv[++i]);
    else if (!strcmp(argv[i], "--policy") && i + 1 < argc)
      policy =
          !strcmp(argv[++i], "lru") ? MM_EVICT_SAMPLED_LRU : MM_EVICT_RANDOM;
    else if (!strcmp(argv[i], "--report") && i + 1 < argc)
      report = argv[++i];
    else
      die(argv[i], "unknown option");
  }
  if (argc - i != 2)
    die("usage", "mm-sqlite-run [options] DB SCRIPT");
  const char *db_path = argv[i];
  char *script = slurp(argv[i + 1]);

  pthread_t watcher;
  if (!stock) {
    mm_config cfg = {.total_bytes = budget,
                     .storage_fraction = fraction,
                     .max_execution_request = budget,
                     .eviction = policy,
                     .storage_may_borrow = borrow,
                     .on_evict = mm_sqlite_on_evict};
    mm_status ms = mm_create(&cfg, &mm);
    if (ms != MM_OK)
      die("mm_create", mm_strerror(ms));
    if (mm_sqlite_install(mm, NULL) != SQLITE_OK)
      die("mm_sqlite_install", "refused");
    pthread_create(&watcher, NULL, watch, NULL);
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  sqlite3 *db;
  if (sqlite3_open(db_path, &db) != SQLITE_OK)
    die(db_path, sqlite3_errmsg(db));
  if (stock) { /* the same page budget for SQLite's own cache */
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA cache_size=-%zu;",
             (size_t)((double)budget * fraction) / 1024);
    sqlite3_exec(db, pragma, NULL, NULL, NULL);
  }
  run_script(db, script);
  /* The pager's own count of pages found in the cache and read from the
   * file: the same measure whichever cache serves it. */
  int hit = 0, miss = 0, hw;
  sqlite3_db_status(db, SQLITE_DBSTATUS_CACHE_HIT, &hit, &hw, 0);
  sqlite3_db_status(db, SQLITE_DBSTATUS_CACHE_MISS, &miss, &hw, 0);
  if (sqlite3_close(db) != SQLITE_OK)
    die("close", "statements left open");
  clock_gettime(CLOCK_MONOTONIC, &t1);
  fflush(stdout);

  mm_sqlite_stats a = {0};
  mm_stats s = {0};
  if (!stock) {
    atomic_store(&done, true);
    pthread_join(watcher, NULL);
    mm_sqlite_get_stats(&a);
    mm_get_stats(mm, &s);
    if (expect_evictions && s.evictions == 0)
      die("evictions", "none: the budget did not overflow");
    if (a.fetch_failed || a.malloc_failed)
      fprintf(stderr, "mm-sqlite-run: %llu fetches, %llu allocations failed\n",
              (unsigned long long)a.fetch_failed,
              (unsigned long long)a.malloc_failed);
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double wall =
      (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  char line[512];
  snprintf(line, sizeof line,
           "%s budget=%zu policy=%s wall_s=%.3f max_rss_kib=%ld hit_ratio=%.4f "
           "hits=%d misses=%d evictions=%llu peak_used=%llu samples=%llu\n",
           stock ? "stock" : "mm", budget,
           policy == MM_EVICT_SAMPLED_LRU ? "lru" : "random", wall,
           ru.ru_maxrss, hit + miss ? (double)hit / (hit + miss) : 0.0, hit,
           miss, (unsigned long long)s.evictions,
           (unsigned long long)atomic_load(&peak_used),
           (unsigned long long)atomic_load(&samples));
  fputs(line, stderr);
  if (report) {
    FILE *f = fopen(report, "a");
    if (f) {
      fputs(line, f);
      fclose(f);
    }
  }
  free(script);
  if (!stock) { /* everything back: SQLite's heap, then the manager */
    sqlite3_shutdown();
    mm_destroy(mm);
  }
  return 0;
}

/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * preload.c -- libmm_sqlite_preload.so: run an unchanged program that uses
 * SQLite (the sqlite3 shell, say) on a memory_manager budget.
 *
 *   LD_PRELOAD=libmm_sqlite_preload.so MM_SQLITE_BUDGET=64MiB sqlite3 my.db
 *
 * A constructor builds a manager and installs the adapter before the
 * program's main() runs, so before SQLite is initialised.  Environment:
 *
 *   MM_SQLITE_BUDGET            total bytes: a number with an optional
 *                               K, M, G (or KiB, MiB, GiB; powers of
 *                               1024); default 256MiB
 *   MM_SQLITE_STORAGE_FRACTION  the page cache's share, strictly between
 *                               0 and 1; default 0.5
 *   MM_SQLITE_POLICY            random (default) or lru
 *   MM_SQLITE_SPILL             1 (default): SQLite's soft heap limit at
 *                               the execution pool, so sorts spill as the
 *                               budget fills; 0: none, and SQLite's memory
 *                               statistics off (faster, for programs whose
 *                               cache_size fits the budget)
 *   MM_SQLITE_STATS             1: print the manager's and the adapter's
 *                               statistics to stderr at exit
 *
 * A bad value is reported on stderr and nothing is installed: the program
 * runs on SQLite's own cache and allocator.  The manager is never
 * destroyed (SQLite may use memory until the very end of the process).
 */
#include "mm_sqlite.h"

#include <sqlite3.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mm_t *preload_mm;

static int parse_size(const char *s, size_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *s == '-')
    return -1;
  unsigned shift = 0;
  switch (*end) {
  case 'k':
  case 'K':
    shift = 10;
    break;
  case 'm':
  case 'M':
    shift = 20;
    break;
  case 'g':
  case 'G':
    shift = 30;
    break;
  case '\0':
    break;
  default:
    return -1;
  }
  if (shift) {
    end++;
    if (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0)
      end += strlen(end);
  }
  if (*end || v > (~0ull >> shift))
    return -1;
  *out = (size_t)(v << shift);
  return 0;
}

/* MM_SQLITE_STATS=1: at exit, the adapter's page cache figures, then the
 * manager's own account (mm_stats_print's table), on stderr. */
static void print_stats(void) {
  mm_sqlite_stats a;
  mm_sqlite_get_stats(&a);
  double lookups = (double)(a.fetch_hits + a.fetch_misses);
  fprintf(stderr,
          "mm_sqlite: page cache hit ratio %.3f (%llu hits, %llu misses, "
          "%llu failed); %llu allocations failed\n",
          lookups ? (double)a.fetch_hits / lookups : 0.0,
          (unsigned long long)a.fetch_hits, (unsigned long long)a.fetch_misses,
          (unsigned long long)a.fetch_failed,
          (unsigned long long)a.malloc_failed);
  mm_stats_print(preload_mm, NULL, NULL, ""); /* NULL: to stderr */
}

__attribute__((constructor)) static void mm_sqlite_preload(void) {
  mm_config cfg = {.total_bytes = 256u << 20, .on_evict = mm_sqlite_on_evict};
  const char *v;
  if ((v = getenv("MM_SQLITE_BUDGET")) && parse_size(v, &cfg.total_bytes)) {
    fprintf(stderr, "mm_sqlite: MM_SQLITE_BUDGET=%s: not a size\n", v);
    return;
  }
  if ((v = getenv("MM_SQLITE_STORAGE_FRACTION"))) {
    char *end;
    cfg.storage_fraction = strtod(v, &end);
    if (*end || !(cfg.storage_fraction > 0 && cfg.storage_fraction < 1)) {
      fprintf(stderr,
              "mm_sqlite: MM_SQLITE_STORAGE_FRACTION=%s: not in (0, 1)\n", v);
      return;
    }
  }
  if ((v = getenv("MM_SQLITE_POLICY"))) {
    if (strcmp(v, "lru") == 0)
      cfg.eviction = MM_EVICT_SAMPLED_LRU;
    else if (strcmp(v, "random") != 0) {
      fprintf(stderr, "mm_sqlite: MM_SQLITE_POLICY=%s: random or lru\n", v);
      return;
    }
  }
  mm_sqlite_options opt = {0};
  if ((v = getenv("MM_SQLITE_SPILL"))) {
    if (strcmp(v, "0") == 0)
      opt.soft_heap_limit = -1;
    else if (strcmp(v, "1") != 0) {
      fprintf(stderr, "mm_sqlite: MM_SQLITE_SPILL=%s: 0 or 1\n", v);
      return;
    }
  }
  cfg.max_execution_request = cfg.total_bytes; /* big sorts, big blobs */
  mm_status st = mm_create(&cfg, &preload_mm);
  if (st != MM_OK) {
    fprintf(stderr, "mm_sqlite: mm_create: %s\n", mm_strerror(st));
    return;
  }
  int rc = mm_sqlite_install(preload_mm, &opt);
  if (rc != SQLITE_OK) {
    fprintf(stderr, "mm_sqlite: install: %s\n", sqlite3_errstr(rc));
    mm_destroy(preload_mm);
    preload_mm = NULL;
    return;
  }
  if ((v = getenv("MM_SQLITE_STATS")) && strcmp(v, "1") == 0)
    atexit(print_stats);
}

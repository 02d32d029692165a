/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * mm_demo.c -- a tour of the manager on its defaults: both pools,
 * borrowing and repaying, eviction, pins, declines, then many threads at
 * once.
 *
 *   mm-demo [threads] [seconds]      (defaults: 8 threads, 1 second)
 *
 * Exits non-zero if any answer differs from the documented one or a pool
 * rule is ever broken.  The stress harness will take over from here.
 */
#include <memory_manager.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MiB ((size_t)1 << 20)

static int failures;

#define EXPECT(call, want)                                                     \
  do {                                                                         \
    mm_status got_ = (call);                                                   \
    if (got_ != (want)) {                                                      \
      fprintf(stderr, "mm-demo: %s gave %s, expected %s\n", #call,             \
              mm_strerror(got_), mm_strerror(want));                           \
      failures++;                                                              \
    }                                                                          \
  } while (0)

static void show(const char *what, const mm_t *mm) {
  mm_stats s;
  mm_get_stats(mm, &s);
  printf(
      "  %-44s exec %4zu/%4zu MiB  storage %4zu/%4zu MiB  borrowed %zu MiB\n",
      what, s.execution_used_bytes / MiB, s.execution_pool_bytes / MiB,
      s.storage_used_bytes / MiB, s.storage_pool_bytes / MiB,
      (s.execution_borrowed_bytes + s.storage_borrowed_bytes) / MiB);
  if (s.execution_pool_bytes + s.storage_pool_bytes != s.total_bytes ||
      s.execution_used_bytes > s.execution_pool_bytes ||
      s.storage_used_bytes > s.storage_pool_bytes) {
    fprintf(stderr, "mm-demo: pool rule broken\n");
    failures++;
  }
}

static atomic_ullong evicted_pages;
static void count_eviction(void *ctx, uint64_t page, void *data, size_t bytes) {
  (void)ctx, (void)page, (void)data, (void)bytes;
  atomic_fetch_add(&evicted_pages, 1);
}

static void tour(mm_t *mm) {
  printf("1. Two pools, one budget of 1 GiB (storage fraction 0.5; storage\n"
         "   below 128 MiB is protected from execution):\n");
  show("created", mm);

  printf("2. The page cache loads 384 MiB of 64 KiB pages and pins one:\n");
  for (uint64_t page = 0; page < 6144; page++)
    EXPECT(mm_acquire_storage(mm, page, 64 << 10, MM_NO_WAIT), MM_OK);
  EXPECT(mm_acquire_storage(mm, 0, 64 << 10, MM_NO_WAIT), MM_EEXIST);
  EXPECT(mm_pin_storage(mm, 7, NULL), MM_OK);
  EXPECT(mm_release_storage(mm, 7), MM_EBUSY);
  show("384 MiB cached, page 7 pinned", mm);

  printf("3. A hash join (exec id 1) takes 8 MiB at a time:\n");
  int chunks = 0;
  while (mm_acquire_execution(mm, 1, 8 * MiB, MM_NO_WAIT) == MM_OK)
    chunks++;
  printf(
      "  granted %d chunks (%d MiB): its own 512 MiB, the 128 MiB storage\n"
      "  was not using (borrowed), then %llu unpinned pages evicted down to\n"
      "  the protected 128 MiB; the next chunk is declined\n",
      chunks, chunks * 8, (unsigned long long)atomic_load(&evicted_pages));
  show("execution full, storage lent", mm);
  EXPECT(mm_pin_storage(mm, 7, NULL), MM_OK); /* the pinned page survived */
  EXPECT(mm_unpin_storage(mm, 7), MM_OK);
  unsigned long long before = atomic_load(&evicted_pages);
  EXPECT(mm_acquire_storage(mm, 9000, 4096, MM_NO_WAIT), MM_OK);
  printf("  a new cache page evicts %llu unpinned page to make room\n",
         atomic_load(&evicted_pages) - before);

  printf("4. The join releases 100 MiB: borrowed capacity is repaid first:\n");
  EXPECT(mm_release_execution(mm, 1, 100 * MiB), MM_OK);
  show("after releasing 100 MiB", mm);
  printf("5. The join ends (mm_release_all_execution):\n");
  size_t back = mm_release_all_execution(mm, 1);
  printf("  %zu MiB returned\n", back / MiB);
  show("pools back at their initial sizes", mm);

  EXPECT(mm_unpin_storage(mm, 7), MM_OK);
  int gone = 0;
  for (uint64_t page = 0; page < 6144; page++)
    gone += mm_release_storage(mm, page) == MM_ENOENT;
  EXPECT(mm_release_storage(mm, 9000), MM_OK);
  printf("  cache emptied (%d pages had been evicted)\n", gone);
  show("empty", mm);
  if ((unsigned long long)gone != atomic_load(&evicted_pages)) {
    fprintf(stderr, "mm-demo: evictions and missing pages disagree\n");
    failures++;
  }
}

/* ---- many threads ------------------------------------------------------ */

static mm_t *shared;
static atomic_bool stop;
static atomic_ullong ops, declines;

static void *worker(void *arg) {
  uint64_t me = (uint64_t)(uintptr_t)arg, rng = me * 0x9e3779b97f4a7c15ull + 1;
  uint64_t n = 0, d = 0;
  size_t held = 0;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    uint64_t page = (me << 32) | (rng >> 40) % 256;
    mm_status st;
    switch (rng % 4) {
    case 0: /* a sort buffer */
      st = mm_acquire_execution(shared, me, 1 * MiB, MM_NO_WAIT);
      if (st == MM_OK)
        held += 1 * MiB;
      d += st == MM_ENOMEM;
      break;
    case 1:
      if (held) {
        mm_release_execution(shared, me, 1 * MiB);
        held -= 1 * MiB;
      }
      break;
    case 2: /* a page miss */
      st = mm_acquire_storage(shared, page, 256 << 10, MM_NO_WAIT);
      d += st == MM_ENOMEM;
      break;
    case 3:
      (void)mm_release_storage(shared, page);
      break;
    }
    n++;
  }
  mm_release_all_execution(shared, me);
  for (uint64_t k = 0; k < 256; k++)
    (void)mm_release_storage(shared, (me << 32) | k);
  atomic_fetch_add(&ops, n);
  atomic_fetch_add(&declines, d);
  return NULL;
}

static void crowd(mm_t *mm, int threads, double seconds) {
  printf("6. %d threads (more than this machine's cores) for %.1f s:\n",
         threads, seconds);
  shared = mm;
  pthread_t *t = calloc((size_t)threads, sizeof *t);
  for (int i = 0; i < threads; i++)
    pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));
  struct timespec step = {0, 10 * 1000 * 1000};
  int checks = 0;
  for (double waited = 0; waited < seconds; waited += 0.01, checks++) {
    nanosleep(&step, NULL);
    mm_stats s;
    mm_get_stats(mm, &s);
    if (s.execution_pool_bytes + s.storage_pool_bytes != s.total_bytes ||
        s.execution_used_bytes + s.storage_used_bytes > s.total_bytes) {
      fprintf(stderr, "mm-demo: pool rule broken under load\n");
      failures++;
    }
  }
  atomic_store(&stop, true);
  for (int i = 0; i < threads; i++)
    pthread_join(t[i], NULL);
  free(t);
  /* A release that met a page claimed by an eviction in progress got
   * MM_ENOENT; if that eviction was abandoned, the page is still there. */
  for (int i = 1; i <= threads; i++)
    for (uint64_t k = 0; k < 256; k++)
      (void)mm_release_storage(mm, ((uint64_t)i << 32) | k);
  printf("  %llu operations, %llu declined, %d pictures checked mid-run\n",
         (unsigned long long)atomic_load(&ops),
         (unsigned long long)atomic_load(&declines), checks);
  show("every thread gave back what it held", mm);
  mm_stats s;
  mm_get_stats(mm, &s);
  if (s.execution_used_bytes || s.storage_used_bytes) {
    fprintf(stderr, "mm-demo: memory left charged after the run\n");
    failures++;
  }
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 8;
  double seconds = argc > 2 ? atof(argv[2]) : 1.0;
  if (threads < 1 || threads > 1024 || !(seconds > 0 && seconds <= 3600)) {
    fprintf(stderr, "usage: mm-demo [threads 1-1024] [seconds]\n");
    return 2;
  }

  mm_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.total_bytes = (size_t)1 << 30;
  cfg.storage_protected_bytes = 128 * MiB;
  cfg.on_evict = count_eviction;
  mm_t *mm;
  mm_status st = mm_create(&cfg, &mm);
  if (st != MM_OK) {
    fprintf(stderr, "mm-demo: mm_create: %s\n", mm_strerror(st));
    return 1;
  }
  tour(mm);
  crowd(mm, threads, seconds);
  mm_stats s;
  mm_get_stats(mm, &s);
  printf("granted %llu, declined %llu\n", (unsigned long long)s.granted,
         (unsigned long long)s.declined);
  mm_destroy(mm);
  if (failures) {
    printf("mm-demo: %d unexpected answers\n", failures);
    return 1;
  }
  printf("mm-demo: every answer as documented\n");
  return 0;
}

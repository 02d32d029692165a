/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * evict.c -- page replacement throughput and sampled-LRU hit ratio.
 *
 *   mm-bench-evict [seconds-per-run] [csv-file]      (default 1 s, no CSV)
 *
 * 1. Replacements per second: a storage pool full of 100 000 pages of
 *    4 KiB; each thread registers new pages as fast as it can, and every
 *    one of them must evict a page.  1, 2 and 8 threads, random against
 *    sampled-LRU eviction, measured one after another in the same run.
 *
 * 2. Hit ratio: one thread replays a Zipf-skewed stream of page accesses
 *    (100 000 distinct pages, exponent 0.99) against a cache of 10 000
 *    pages: a hit is a successful mm_pin_storage, a miss registers the
 *    page (evicting one).  Random, sampled LRU with 5 and 16 samples, and
 *    an exact LRU simulation of the same stream.
 *
 * A benchmark, not a test: run it on a quiet machine.
 */
#include <memory_manager.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

#define PAGE     4096
#define FULL     100000 /* pages in the full pool */
#define UNIVERSE 100000 /* distinct pages in the Zipf stream */
#define CACHE    10000  /* pages the Zipf cache holds */
#define ACCESSES 2000000
#define ZIPF_S   0.99

static uint64_t xorshift(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static mm_t *make(size_t pages, int policy, unsigned samples) {
  mm_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.total_bytes = 2 * pages * PAGE;
  cfg.eviction = policy;
  cfg.lru_samples = samples;
  cfg.seed = 7;
  mm_t *mm;
  if (mm_create(&cfg, &mm) != MM_OK)
    exit(1);
  return mm;
}

/* ---- 1. replacement throughput --------------------------------------- */

static mm_t *shared;
static atomic_bool stop;
static double run_seconds = 1.0;

static void *replacer(void *arg) {
  uint64_t next = ((uint64_t)(uintptr_t)arg << 40) + FULL, n = 0;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    if (mm_acquire_storage(shared, next++, PAGE, MM_NO_WAIT) != MM_OK)
      exit(1);
    n++;
  }
  return (void *)(uintptr_t)n;
}

static double replacements_per_s(int threads, int policy) {
  shared = make(FULL, policy, 0);
  for (uint64_t p = 0; p < FULL; p++)
    if (mm_acquire_storage(shared, p, PAGE, MM_NO_WAIT) != MM_OK)
      exit(1);
  atomic_store(&stop, false);
  pthread_t t[8];
  double t0 = bench_now_s();
  for (int i = 0; i < threads; i++)
    pthread_create(&t[i], NULL, replacer, (void *)(uintptr_t)(i + 1));
  struct timespec d = {(time_t)run_seconds,
                       (long)((run_seconds - (time_t)run_seconds) * 1e9)};
  nanosleep(&d, NULL);
  atomic_store(&stop, true);
  uint64_t total = 0;
  for (int i = 0; i < threads; i++) {
    void *n;
    pthread_join(t[i], &n);
    total += (uint64_t)(uintptr_t)n;
  }
  double rate = total / (bench_now_s() - t0);
  mm_stats s;
  mm_get_stats(shared, &s);
  if (s.evictions < total) /* every registration had to evict */
    exit(1);
  mm_destroy(shared);
  return rate;
}

/* ---- 2. hit ratio on a Zipf stream ------------------------------------ */

static double *zipf_cdf;

static void zipf_init(void) {
  zipf_cdf = malloc(UNIVERSE * sizeof *zipf_cdf);
  double sum = 0;
  for (int i = 0; i < UNIVERSE; i++)
    zipf_cdf[i] = sum += 1.0 / pow(i + 1, ZIPF_S);
  for (int i = 0; i < UNIVERSE; i++)
    zipf_cdf[i] /= sum;
}

static uint32_t zipf_next(uint64_t *rng) {
  double u = (xorshift(rng) >> 11) * (1.0 / 9007199254740992.0);
  uint32_t lo = 0, hi = UNIVERSE - 1;
  while (lo < hi) {
    uint32_t mid = (lo + hi) / 2;
    if (zipf_cdf[mid] < u)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static double hit_ratio_mm(int policy, unsigned samples) {
  mm_t *mm = make(CACHE, policy, samples);
  uint64_t rng = 12345, hits = 0;
  for (int i = 0; i < ACCESSES; i++) {
    uint32_t page = zipf_next(&rng);
    if (mm_pin_storage(mm, page, NULL) == MM_OK) {
      hits++;
      mm_unpin_storage(mm, page);
    } else if (mm_acquire_storage(mm, page, PAGE, MM_NO_WAIT) != MM_OK) {
      exit(1);
    }
  }
  mm_destroy(mm);
  return (double)hits / ACCESSES;
}

/* Exact LRU: a doubly linked list over page numbers, most recent first. */
static double hit_ratio_exact_lru(void) {
  int32_t *prev = malloc(UNIVERSE * sizeof *prev);
  int32_t *next = malloc(UNIVERSE * sizeof *next);
  char *cached = calloc(UNIVERSE, 1);
  int32_t head = -1, tail = -1, size = 0;
  uint64_t rng = 12345, hits = 0;
  for (int i = 0; i < ACCESSES; i++) {
    int32_t p = (int32_t)zipf_next(&rng);
    if (cached[p]) {
      hits++;
      if (p == head)
        continue;
      next[prev[p]] = next[p]; /* unlink */
      if (p == tail)
        tail = prev[p];
      else
        prev[next[p]] = prev[p];
    } else if (size == CACHE) {
      int32_t victim = tail; /* evict the least recent */
      cached[victim] = 0;
      tail = prev[victim];
      next[tail] = -1;
      cached[p] = 1;
    } else {
      cached[p] = 1;
      size++;
    }
    prev[p] = -1; /* push front */
    next[p] = head;
    if (head >= 0)
      prev[head] = p;
    head = p;
    if (tail < 0)
      tail = p;
  }
  free(prev);
  free(next);
  free(cached);
  return (double)hits / ACCESSES;
}

int main(int argc, char **argv) {
  if (argc > 1)
    run_seconds = atof(argv[1]);
  if (!(run_seconds > 0 && run_seconds <= 60)) {
    fprintf(stderr, "usage: mm-bench-evict [seconds 0-60] [csv]\n");
    return 2;
  }
  FILE *csv = argc > 2 ? fopen(argv[2], "w") : NULL;
  if (csv)
    fprintf(csv, "measure,policy,threads,value\n");

  printf("page replacements per second, pool full of %d pages:\n", FULL);
  printf("%-12s %12s %12s %12s\n", "policy", "1 thread", "2 threads",
         "8 threads");
  const char *names[] = {"random", "sampled-lru"};
  const int threads[] = {1, 2, 8};
  for (int policy = 0; policy < 2; policy++) {
    printf("%-12s", names[policy]);
    for (int i = 0; i < 3; i++) {
      double r = replacements_per_s(threads[i], policy);
      printf(" %12.0f", r);
      if (csv)
        fprintf(csv, "replacements_per_s,%s,%d,%.0f\n", names[policy],
                threads[i], r);
    }
    printf("\n");
  }

  zipf_init();
  printf("\nhit ratio, Zipf(%.2f) over %d pages, cache of %d, %d accesses:\n",
         ZIPF_S, UNIVERSE, CACHE, ACCESSES);
  struct {
    const char *name;
    double ratio;
  } rows[4] = {
      {"random", hit_ratio_mm(MM_EVICT_RANDOM, 0)},
      {"sampled-lru-5", hit_ratio_mm(MM_EVICT_SAMPLED_LRU, 5)},
      {"sampled-lru-16", hit_ratio_mm(MM_EVICT_SAMPLED_LRU, 16)},
      {"exact-lru", hit_ratio_exact_lru()},
  };
  for (int i = 0; i < 4; i++) {
    printf("%-16s %.4f\n", rows[i].name, rows[i].ratio);
    if (csv)
      fprintf(csv, "hit_ratio,%s,1,%.4f\n", rows[i].name, rows[i].ratio);
  }
  if (csv)
    fclose(csv);
  free(zipf_cdf);
  return 0;
}

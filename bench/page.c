/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * page.c -- a pin + unpin of a cached page, against baselines, at 1, 2,
 * 4, 8 and 16 threads, side by side in one run.
 *
 *   mm-bench-page [seconds-per-point]   (default 0.3 s)
 *
 * 1024 pages of 4 KiB are registered and left unpinned; each thread walks
 * them from its own starting point, pinning and unpinning one at a time,
 * through
 *   handle   mm_page_pin / mm_page_unpin on the page's handle;
 *   id       mm_pin_storage / mm_unpin_storage by page id;
 *   mutex    one global mutex over an open-addressing table of the same
 *            pages: lookup + refcount, twice (what a buffer pool with a
 *            locked page table does);
 *   atomic   two atomic increments (+1, -1) of the page's count, on one
 *            cache line: the floor of any pin that counts.
 * The figure is pairs per second, all threads together; each point is
 * measured three times, the implementations taking turns within each
 * round, and the median is reported.  A benchmark, not a test: run it on
 * a quiet machine.
 */
#include <memory_manager.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "harness.h"

#define PAGES    1024
#define NTHREADS 5
static const int threads_list[NTHREADS] = {1, 2, 4, 8, 16};

enum impl { HANDLE, ID, MUTEX, ATOMIC, NIMPL };
static const char *impl_name[NIMPL] = {"handle", "id", "mutex", "atomic"};

static mm_t *mm;
static mm_page *handle[PAGES];

/* The locked baseline: a table keyed by page id, one mutex. */
static struct {
  pthread_mutex_t mu;
  struct {
    uint64_t id;
    uint32_t pins;
  } slot[2 * PAGES];
} locked = {.mu = PTHREAD_MUTEX_INITIALIZER};

static uint32_t *locked_find(uint64_t id) {
  for (uint64_t i = (id * 0x9e3779b97f4a7c15ull) >> 53;;
       i = (i + 1) % (2 * PAGES))
    if (locked.slot[i].id == id)
      return &locked.slot[i].pins;
}

static void locked_add(uint64_t id) {
  for (uint64_t i = (id * 0x9e3779b97f4a7c15ull) >> 53;;
       i = (i + 1) % (2 * PAGES))
    if (!locked.slot[i].id) {
      locked.slot[i].id = id;
      return;
    }
}

/* The floor: a count per page, a cache line each. */
static struct { _Alignas(64) atomic_uint_fast32_t pins; } counted[PAGES];

static enum impl impl;
static double seconds = 0.3;

static void *loop(void *arg) {
  unsigned at = (unsigned)(uintptr_t)arg * (PAGES / 16);
  uint64_t n = 0;
  pthread_barrier_wait(&bench_start);
  while (!atomic_load_explicit(&bench_stop, memory_order_relaxed)) {
    for (int i = 0; i < 64; i++) {
      unsigned k = at++ % PAGES;
      switch (impl) {
      case HANDLE:
        if (mm_page_pin(handle[k]) != MM_OK ||
            mm_page_unpin(handle[k]) != MM_OK)
          abort();
        break;
      case ID:
        if (mm_pin_storage(mm, k + 1, NULL) != MM_OK ||
            mm_unpin_storage(mm, k + 1) != MM_OK)
          abort();
        break;
      case MUTEX:
        pthread_mutex_lock(&locked.mu);
        (*locked_find(k + 1))++;
        pthread_mutex_unlock(&locked.mu);
        pthread_mutex_lock(&locked.mu);
        (*locked_find(k + 1))--;
        pthread_mutex_unlock(&locked.mu);
        break;
      default:
        atomic_fetch_add_explicit(&counted[k].pins, 1, memory_order_acq_rel);
        atomic_fetch_sub_explicit(&counted[k].pins, 1, memory_order_acq_rel);
      }
    }
    n += 64;
  }
  return (void *)(uintptr_t)n;
}

int main(int argc, char **argv) {
  if (argc > 1)
    seconds = atof(argv[1]);
  mm_config cfg = {0};
  cfg.total_bytes = 2 * (size_t)PAGES * 4096 * 2;
  if (mm_create(&cfg, &mm) != MM_OK)
    return 1;
  for (unsigned k = 0; k < PAGES; k++) {
    if (mm_page_alloc(mm, k + 1, 4096, MM_NO_WAIT, &handle[k]) != MM_OK ||
        mm_page_unpin(handle[k]) != MM_OK)
      return 1;
    locked_add(k + 1);
  }
  double med[NIMPL][NTHREADS];
  for (int t = 0; t < NTHREADS; t++) {
    double r[NIMPL][3];
    for (int round = 0; round < 3; round++)
      for (int k = 0; k < NIMPL; k++) {
        impl = (enum impl)k;
        r[k][round] = bench_point(loop, threads_list[t], 0, seconds);
      }
    for (int k = 0; k < NIMPL; k++)
      med[k][t] = bench_median3(r[k][0], r[k][1], r[k][2]);
  }
  printf("pin+unpin pairs/s (median of 3)   1 thr       2 thr       4 thr"
         "       8 thr      16 thr\n");
  for (int k = 0; k < NIMPL; k++) {
    printf("  %-30s", impl_name[k]);
    for (int t = 0; t < NTHREADS; t++)
      printf(" %11.0f", med[k][t]);
    printf("\n");
  }
  const struct {
    const char *what;
    int a, b;
  } ratio[] = {{"handle / mutex", HANDLE, MUTEX},
               {"handle / atomic", HANDLE, ATOMIC},
               {"handle / id", HANDLE, ID}};
  for (unsigned i = 0; i < sizeof ratio / sizeof ratio[0]; i++) {
    printf("  %-30s", ratio[i].what);
    for (int t = 0; t < NTHREADS; t++)
      printf(" %11.2f", med[ratio[i].a][t] / med[ratio[i].b][t]);
    printf("\n");
  }
  for (unsigned k = 0; k < PAGES; k++) {
    if (mm_page_release(handle[k]) != MM_OK)
      return 1;
    mm_page_put(handle[k]);
  }
  mm_destroy(mm);
  return 0;
}

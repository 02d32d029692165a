/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * alloc.c -- throughput of the books and of real memory, against
 * baselines, at 1, 2, 4, 8 and 16 threads, side by side in one run.
 *
 *   mm-bench-alloc [seconds-per-point] [csv-file]   (default 0.3 s)
 *
 * Accounting only: acquire + release of 4 KiB of execution memory, one
 * exec id per thread, through
 *   mm-c     mm_consumer_acquire / mm_consumer_release, one consumer per
 *            thread;
 *   mm-id    mm_acquire_execution / mm_release_execution;
 *   mutex    the same two-pool policy behind one global mutex (what a
 *            synchronized memory manager does): the honest baseline;
 *   atomic   a single shared atomic counter with a limit: the floor of
 *            any design that shares one word.
 * Real memory: alloc + free of 64 B, 4 KiB, 64 KiB and 1 MiB through
 *   mm-c     mm_consumer_alloc / mm_consumer_free;
 *   mm-id    mm_exec_alloc / mm_exec_free;
 *   mallocx  jemalloc mallocx/dallocx on a private arena (its tcache on);
 *   je       jemalloc malloc/free;
 *   glibc    glibc malloc/free (__libc_malloc).
 *
 * Every thread does the same loop until the time is up; the figure is
 * operations (pairs) per second, all threads together.  Each point is
 * measured three times, the implementations taking turns within each
 * round, and the median is reported.  A benchmark, not a test: run it on
 * a quiet machine.
 */
#include <memory_manager.h>

#include <jemalloc/jemalloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);

static double seconds = 0.3;
static const int threads_list[] = {1, 2, 4, 8, 16};
#define NTHREADS 5

/* ---- the baselines ----------------------------------------------------- */

#define TOTAL ((size_t)1 << 30)

/* The two-pool policy of the manager, behind one mutex, with a per-id map
 * (open addressing) as a synchronized manager keeps one. */
static struct {
  pthread_mutex_t mu;
  size_t exec_used, storage_used, exec_init;
  uint64_t id[64];
  size_t held[64];
} locked = {.mu = PTHREAD_MUTEX_INITIALIZER, .exec_init = TOTAL / 2};

static int locked_acquire(uint64_t id, size_t bytes) {
  int ok = 0;
  pthread_mutex_lock(&locked.mu);
  if (locked.exec_used + bytes + locked.storage_used <= TOTAL) {
    unsigned k = (unsigned)(id * 0x9e3779b97f4a7c15ull >> 58);
    while (locked.id[k] && locked.id[k] != id)
      k = (k + 1) % 64;
    locked.id[k] = id;
    locked.held[k] += bytes;
    locked.exec_used += bytes;
    ok = 1;
  }
  pthread_mutex_unlock(&locked.mu);
  return ok;
}

static void locked_release(uint64_t id, size_t bytes) {
  pthread_mutex_lock(&locked.mu);
  unsigned k = (unsigned)(id * 0x9e3779b97f4a7c15ull >> 58);
  while (locked.id[k] != id)
    k = (k + 1) % 64;
  locked.held[k] -= bytes;
  locked.exec_used -= bytes;
  pthread_mutex_unlock(&locked.mu);
}

static _Atomic size_t counter;

static int atomic_acquire(size_t bytes) {
  if (atomic_fetch_add_explicit(&counter, bytes, memory_order_acq_rel) + bytes >
      TOTAL) {
    atomic_fetch_sub_explicit(&counter, bytes, memory_order_acq_rel);
    return 0;
  }
  return 1;
}

static void atomic_release(size_t bytes) {
  atomic_fetch_sub_explicit(&counter, bytes, memory_order_acq_rel);
}

/* ---- the loops --------------------------------------------------------- */

enum impl {
  MM_BOOKS_C,
  MM_BOOKS,
  MUTEX,
  ATOMIC,
  MM_MEM_C,
  MM_MEM,
  MALLOCX,
  JE,
  GLIBC
};
static const char *impl_name[] = {"mm-c",  "mm-id",   "mutex", "atomic", "mm-c",
                                  "mm-id", "mallocx", "je",    "glibc"};

static mm_t *mm;
static unsigned arena_flags;
static enum impl impl;
static size_t size;

static void *loop(void *arg) {
  uint64_t id = (uint64_t)(uintptr_t)arg, n = 0;
  mm_consumer *c = NULL;
  if ((impl == MM_BOOKS_C || impl == MM_MEM_C) &&
      mm_consumer_open(mm, 100 + id, &c) != MM_OK)
    abort();
  pthread_barrier_wait(&bench_start);
  while (!atomic_load_explicit(&bench_stop, memory_order_relaxed)) {
    for (int i = 0; i < 64; i++) {
      void *p;
      switch (impl) {
      case MM_BOOKS_C:
        if (mm_consumer_acquire(c, size, MM_NO_WAIT) == MM_OK)
          mm_consumer_release(c, size);
        break;
      case MM_MEM_C:
        if (mm_consumer_alloc(c, size, MM_NO_WAIT, &p) == MM_OK) {
          *(volatile char *)p = 1;
          mm_consumer_free(c, p);
        }
        break;
      case MM_BOOKS:
        if (mm_acquire_execution(mm, id, size, MM_NO_WAIT) == MM_OK)
          mm_release_execution(mm, id, size);
        break;
      case MUTEX:
        if (locked_acquire(id, size))
          locked_release(id, size);
        break;
      case ATOMIC:
        if (atomic_acquire(size))
          atomic_release(size);
        break;
      case MM_MEM:
        if (mm_exec_alloc(mm, id, size, MM_NO_WAIT, &p) == MM_OK) {
          *(volatile char *)p = 1;
          mm_exec_free(mm, id, p);
        }
        break;
      case MALLOCX:
        p = mallocx(size, (int)arena_flags);
        *(volatile char *)p = 1;
        dallocx(p, (int)arena_flags);
        break;
      case JE:
        p = malloc(size);
        *(volatile char *)p = 1;
        free(p);
        break;
      case GLIBC:
        p = __libc_malloc(size);
        *(volatile char *)p = 1;
        __libc_free(p);
        break;
      }
    }
    n += 64;
  }
  if (c)
    mm_consumer_close(c);
  return (void *)(uintptr_t)n;
}

static double run(enum impl which, size_t bytes, int nthreads) {
  impl = which;
  size = bytes;
  return bench_point(loop, nthreads, 1, seconds);
}

static FILE *csv;

/* One table: for each thread count, three rounds in which the
 * implementations take turns; the median of each. */
static void table(const char *bench, const enum impl *which, int nimpl,
                  size_t bytes, double out[][NTHREADS]) {
  for (int t = 0; t < NTHREADS; t++) {
    double r[8][3];
    for (int round = 0; round < 3; round++)
      for (int k = 0; k < nimpl; k++)
        r[k][round] = run(which[k], bytes, threads_list[t]);
    for (int k = 0; k < nimpl; k++)
      out[k][t] = bench_median3(r[k][0], r[k][1], r[k][2]);
  }
  for (int k = 0; k < nimpl; k++) {
    printf("%-10s %-8s %8zu", bench, impl_name[which[k]], bytes);
    for (int t = 0; t < NTHREADS; t++) {
      printf(" %11.0f", out[k][t]);
      if (csv)
        fprintf(csv, "%s,%s,%zu,%d,%.0f\n", bench, impl_name[which[k]], bytes,
                threads_list[t], out[k][t]);
    }
    printf("\n");
  }
  fflush(stdout);
}

static void ratios(const char *what, const double a[NTHREADS],
                   const double b[NTHREADS]) {
  printf("  %-30s", what);
  for (int i = 0; i < NTHREADS; i++)
    printf(" %11.2f", a[i] / b[i]);
  printf("\n");
}

int main(int argc, char **argv) {
  if (argc > 1)
    seconds = atof(argv[1]);
  if (!(seconds > 0 && seconds <= 10)) {
    fprintf(stderr, "usage: mm-bench-alloc [seconds 0-10] [csv]\n");
    return 2;
  }
  csv = argc > 2 ? fopen(argv[2], "w") : NULL;
  if (csv)
    fprintf(csv, "bench,impl,bytes,threads,ops_per_s\n");

  mm_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.total_bytes = TOTAL;
  if (mm_create(&cfg, &mm) != MM_OK)
    return 1;
  unsigned arena;
  size_t len = sizeof arena;
  if (mallctl("arenas.create", &arena, &len, NULL, 0) != 0)
    return 1;
  arena_flags = (unsigned)MALLOCX_ARENA(arena);

  printf("operations per second (acquire+release or alloc+free pairs)\n");
  printf("%-10s %-8s %8s", "bench", "impl", "bytes");
  for (int i = 0; i < NTHREADS; i++)
    printf(" %8d thr", threads_list[i]);
  printf("\n");

  static const enum impl books_impl[] = {MM_BOOKS_C, MM_BOOKS, MUTEX, ATOMIC};
  double books[4][NTHREADS];
  table("accounting", books_impl, 4, 4096, books);

  static const enum impl mem_impl[] = {MM_MEM_C, MM_MEM, MALLOCX, JE, GLIBC};
  const size_t sizes[] = {64, 4096, 65536, 1 << 20};
  double mem[4][5][NTHREADS];
  for (int s = 0; s < 4; s++)
    table("memory", mem_impl, 5, sizes[s], mem[s]);

  printf("\nratios (medians of 3)%-13s", "");
  for (int i = 0; i < NTHREADS; i++)
    printf(" %8d thr", threads_list[i]);
  printf("\n");
  ratios("accounting mm-c / mutex", books[0], books[2]);
  ratios("accounting mm-c / atomic", books[0], books[3]);
  ratios("accounting mm-id / mm-c", books[1], books[0]);
  for (int s = 0; s < 4; s++) {
    char what[64];
    snprintf(what, sizeof what, "%zu B mm-c / mallocx", sizes[s]);
    ratios(what, mem[s][0], mem[s][2]);
    snprintf(what, sizeof what, "%zu B mm-c / glibc", sizes[s]);
    ratios(what, mem[s][0], mem[s][4]);
    snprintf(what, sizeof what, "%zu B mm-id / mm-c", sizes[s]);
    ratios(what, mem[s][1], mem[s][0]);
  }

  mm_destroy(mm);
  if (csv)
    fclose(csv);
  return 0;
}

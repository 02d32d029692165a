/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * harness.h -- what the benchmarks share: the clock, the median of three,
 * and one timed point (threads started together, stopped together).
 */
#ifndef MM_BENCH_HARNESS_H
#define MM_BENCH_HARNESS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

static inline double bench_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline double bench_median3(double a, double b, double c) {
  return a > b ? (b > c ? b : a > c ? c : a) : (a > c ? a : b > c ? c : b);
}

/* The start line and the stop flag of a point: @fn waits on start before
 * its loop and runs until stop is set. */
static atomic_bool bench_stop __attribute__((unused));
static pthread_barrier_t bench_start __attribute__((unused));

/* Run @fn on @nthreads threads (at most 16; the i-th gets (void *)(i +
 * @first)) for @seconds after they all start; each returns how many
 * operations it did.  Returns operations per second, all together. */
static inline double bench_point(void *(*fn)(void *), int nthreads,
                                 uintptr_t first, double seconds) {
  atomic_store(&bench_stop, false);
  pthread_barrier_init(&bench_start, NULL, (unsigned)nthreads + 1);
  pthread_t t[16];
  for (int i = 0; i < nthreads; i++)
    pthread_create(&t[i], NULL, fn, (void *)((uintptr_t)i + first));
  pthread_barrier_wait(&bench_start);
  double t0 = bench_now_s();
  struct timespec d = {(time_t)seconds,
                       (long)((seconds - (double)(time_t)seconds) * 1e9)};
  nanosleep(&d, NULL);
  atomic_store(&bench_stop, true);
  uint64_t total = 0;
  for (int i = 0; i < nthreads; i++) {
    void *n;
    pthread_join(t[i], &n);
    total += (uint64_t)(uintptr_t)n;
  }
  double rate = (double)total / (bench_now_s() - t0);
  pthread_barrier_destroy(&bench_start);
  return rate;
}

#endif /* MM_BENCH_HARNESS_H */

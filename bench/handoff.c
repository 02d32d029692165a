/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * handoff.c -- how long from a release to the wake-up of the held request
 * it satisfies.
 *
 *   mm-bench-handoff [handoffs] [csv-file]     (default 20000, no CSV)
 *
 * Three hand-offs, measured one after another in the same run:
 *
 *   condvar   the floor: a waiter blocked in pthread_cond_wait, woken by a
 *             thread that sets a flag under the mutex and signals;
 *   blocking  a waiter blocked in mm_acquire_execution(.., MM_WAIT_FOREVER)
 *             on a full manager, woken by mm_release_execution;
 *   async     a request held by mm_acquire_async, its callback run on the
 *             manager's service thread after mm_release_execution.
 *
 * Each hand-off: the waiter blocks; the releaser waits until it is held
 * (and 50 us more, so that it is asleep, not still on its way in), reads
 * the clock, releases; the waiter reads the clock as soon as it runs.  The
 * latency is the difference.  Reported: p50, p99, p99.9 and max, in
 * microseconds.  A benchmark, not a test: run it on a quiet machine.
 */
#include <memory_manager.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void spin_ns(int64_t ns) {
  int64_t until = now_ns() + ns;
  while (now_ns() < until)
    ;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static int n_handoffs = 20000;
static atomic_llong t_wake;
static atomic_int phase; /* 0: waiter may block; 1: woken; 2: stop */

/* ---- condvar floor --------------------------------------------------- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int cv_flag, cv_sleeping;

static void *cv_waiter(void *arg) {
  (void)arg;
  for (int i = 0; i < n_handoffs; i++) {
    pthread_mutex_lock(&mu);
    cv_sleeping = 1;
    while (!cv_flag)
      pthread_cond_wait(&cv, &mu);
    cv_flag = 0;
    pthread_mutex_unlock(&mu);
    atomic_store(&t_wake, now_ns());
    atomic_store(&phase, 1);
  }
  return NULL;
}

static void run_condvar(int64_t *lat) {
  pthread_t t;
  pthread_create(&t, NULL, cv_waiter, NULL);
  for (int i = 0; i < n_handoffs; i++) {
    for (;;) {
      pthread_mutex_lock(&mu);
      int asleep = cv_sleeping;
      pthread_mutex_unlock(&mu);
      if (asleep)
        break;
    }
    spin_ns(50000);
    atomic_store(&phase, 0);
    pthread_mutex_lock(&mu);
    cv_sleeping = 0;
    int64_t t0 = now_ns();
    cv_flag = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    while (atomic_load(&phase) != 1)
      ;
    lat[i] = atomic_load(&t_wake) - t0;
  }
  pthread_join(t, NULL);
}

/* ---- the manager ----------------------------------------------------- */

#define TOTAL     ((size_t)1 << 20)
#define EXEC_INIT (TOTAL / 2)
static mm_t *mm;

static mm_t *full_manager(void) {
  mm_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.total_bytes = TOTAL;
  mm_t *m;
  if (mm_create(&cfg, &m) != MM_OK)
    exit(1);
  /* All of it to exec id 1: execution's pool and storage's, borrowed. */
  if (mm_acquire_execution(m, 1, TOTAL, MM_NO_WAIT) != MM_OK)
    exit(1);
  return m;
}

static uint64_t held_now(void) {
  mm_stats s;
  mm_get_stats(mm, &s);
  return s.held_now;
}

static void *blocking_waiter(void *arg) {
  (void)arg;
  for (int i = 0; i < n_handoffs; i++) {
    if (mm_acquire_execution(mm, 2, 4096, MM_WAIT_FOREVER) != MM_OK)
      exit(1);
    atomic_store(&t_wake, now_ns());
    atomic_store(&phase, 1);
    while (atomic_load(&phase) != 0)
      ;
  }
  return NULL;
}

/* One hand-off: wait until held and asleep, release, wait for the wake,
 * then take the page back for the next round. */
static int64_t handoff(uint64_t waiter_id) {
  while (held_now() == 0)
    ;
  spin_ns(50000);
  int64_t t0 = now_ns();
  mm_release_execution(mm, 1, 4096);
  while (atomic_load(&phase) != 1)
    ;
  int64_t lat = atomic_load(&t_wake) - t0;
  mm_release_execution(mm, waiter_id, 4096);
  if (mm_acquire_execution(mm, 1, 4096, MM_NO_WAIT) != MM_OK)
    exit(1);
  atomic_store(&phase, 0);
  return lat;
}

static void run_blocking(int64_t *lat) {
  mm = full_manager();
  atomic_store(&phase, 0);
  pthread_t t;
  pthread_create(&t, NULL, blocking_waiter, NULL);
  for (int i = 0; i < n_handoffs; i++)
    lat[i] = handoff(2);
  pthread_join(t, NULL);
  mm_destroy(mm);
}

static void granted(void *ctx, mm_status st) {
  (void)ctx;
  if (st != MM_OK)
    exit(1);
  atomic_store(&t_wake, now_ns());
  atomic_store(&phase, 1);
}

static void run_async(int64_t *lat) {
  mm = full_manager();
  for (int i = 0; i < n_handoffs; i++) {
    atomic_store(&phase, 0);
    if (mm_acquire_async(mm, MM_POOL_EXECUTION, 3, 4096, MM_WAIT_FOREVER,
                         granted, NULL, NULL) != MM_EINPROGRESS)
      exit(1);
    lat[i] = handoff(3);
  }
  mm_destroy(mm);
}

/* ---- report ---------------------------------------------------------- */

static void report(const char *name, int64_t *lat, FILE *csv) {
  qsort(lat, (size_t)n_handoffs, sizeof *lat, cmp_i64);
  double p50 = lat[n_handoffs / 2] / 1e3;
  double p99 = lat[(int)(n_handoffs * 0.99)] / 1e3;
  double p999 = lat[(int)(n_handoffs * 0.999)] / 1e3;
  double max = lat[n_handoffs - 1] / 1e3;
  printf("%-10s %10.1f %10.1f %10.1f %10.1f\n", name, p50, p99, p999, max);
  if (csv)
    fprintf(csv, "%s,%d,%.2f,%.2f,%.2f,%.2f\n", name, n_handoffs, p50, p99,
            p999, max);
}

int main(int argc, char **argv) {
  if (argc > 1)
    n_handoffs = atoi(argv[1]);
  if (n_handoffs < 100) {
    fprintf(stderr, "usage: mm-bench-handoff [handoffs >= 100] [csv]\n");
    return 2;
  }
  FILE *csv = argc > 2 ? fopen(argv[2], "w") : NULL;
  if (csv)
    fprintf(csv, "handoff,count,p50_us,p99_us,p999_us,max_us\n");
  int64_t *lat = calloc((size_t)n_handoffs, sizeof *lat);

  printf("%d hand-offs each, microseconds from release to wake-up\n",
         n_handoffs);
  printf("%-10s %10s %10s %10s %10s\n", "", "p50", "p99", "p99.9", "max");
  run_condvar(lat);
  report("condvar", lat, csv);
  run_blocking(lat);
  report("blocking", lat, csv);
  run_async(lat);
  report("async", lat, csv);

  free(lat);
  if (csv)
    fclose(csv);
  return 0;
}

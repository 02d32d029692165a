/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * mm_test.h -- helpers shared by the unit tests.
 */
#ifndef MM_TEST_H
#define MM_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <cmocka.h>

#include "memory_manager.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

/* cmocka's asserts may only fail on the test's own thread.  Worker
 * threads and callbacks CHECK instead: a failure is printed and counted,
 * and the test asserts the count is zero once the workers are joined. */
static atomic_int mm_test_failures __attribute__((unused));
#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      atomic_fetch_add(&mm_test_failures, 1);                                  \
    }                                                                          \
  } while (0)

/* ---- time, for tests that wait ------------------------------------------
 *
 * Tests wait for the event they mean, bounded by seconds of real time,
 * never for "long enough". */
#define MS ((int64_t)1000000)

static inline int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

/* Poll @cond for up to 5 s (generous: the machine is shared). */
#define EVENTUALLY(cond)                                                       \
  do {                                                                         \
    int64_t until_ = now_ns() + 5000 * MS;                                     \
    while (!(cond) && now_ns() < until_)                                       \
      sleep_ms(1);                                                             \
    assert_true(cond);                                                         \
  } while (0)

/*
 * Overtake limits for tests that must not depend on how fast this machine
 * happens to be: NEVER_STARVES keeps a held request young for the whole
 * test, STARVES_AT_ONCE makes it starved after any sleep.  (The default,
 * 10 ms, can pass while a loaded machine runs a sanitizer build.)
 */
#define NEVER_STARVES   (3600 * 1000 * MS)
#define STARVES_AT_ONCE (1 * MS)

/* The pool rules every picture of the manager must obey, whatever
 * happened before: the pools sum to the budget, use fits in each pool and
 * in the budget, only one pool borrows, and borrowing is what the pool
 * sizes say.  @storage_init and @may_borrow describe the configuration. */
static inline void mm_test_check_stats(const mm_stats *s, size_t storage_init,
                                       int may_borrow) {
  size_t exec_init = s->total_bytes - storage_init;
  assert_int_equal(s->execution_pool_bytes + s->storage_pool_bytes,
                   s->total_bytes);
  assert_true(s->execution_used_bytes <= s->execution_pool_bytes);
  assert_true(s->storage_used_bytes <= s->storage_pool_bytes);
  assert_true(s->execution_used_bytes + s->storage_used_bytes <=
              s->total_bytes);
  assert_false(s->execution_borrowed_bytes && s->storage_borrowed_bytes);
  if (!may_borrow)
    assert_int_equal(s->storage_borrowed_bytes, 0);
  if (s->execution_borrowed_bytes)
    assert_int_equal(s->execution_pool_bytes,
                     exec_init + s->execution_borrowed_bytes);
  else if (s->storage_borrowed_bytes)
    assert_int_equal(s->storage_pool_bytes,
                     storage_init + s->storage_borrowed_bytes);
  else
    assert_int_equal(s->execution_pool_bytes, exec_init);
}

static inline mm_stats mm_test_stats(const mm_t *mm) {
  mm_stats s;
  mm_get_stats(mm, &s);
  return s;
}

/* A manager of @total bytes, half storage, 4 KiB pages. */
static inline mm_t *mm_test_create(size_t total, int may_borrow) {
  mm_config cfg = {0};
  cfg.total_bytes = total;
  cfg.storage_may_borrow = may_borrow;
  mm_t *mm = NULL;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  assert_non_null(mm);
  return mm;
}

#endif /* MM_TEST_H */

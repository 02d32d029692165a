/*
 * test_arbitration.c -- how execution memory is shared among consumers:
 * grants of "at least this, at most that", guarantees and caps.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "mm_test.h"

#define TOTAL (1 * MiB)

static mm_t *create(void) {
  mm_config cfg = {.total_bytes = TOTAL, .max_execution_request = TOTAL};
  cfg.overtake_limit_ns = NEVER_STARVES;
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  return mm;
}

static mm_consumer *open_holding(mm_t *mm, uint64_t id, size_t bytes) {
  mm_consumer *c;
  assert_int_equal(mm_consumer_open(mm, id, &c), MM_OK);
  if (bytes)
    assert_int_equal(mm_consumer_acquire(c, bytes, MM_NO_WAIT), MM_OK);
  return c;
}

/* As much as is free, up to the most; what a consumer's spare quota and
 * others' hold is counted right. */
static void test_range_takes_what_is_free(void **state) {
  (void)state;
  mm_t *mm = create();
  mm_consumer *a = open_holding(mm, 1, 0);
  size_t got = 1;
  assert_int_equal(
      mm_consumer_acquire_range(a, 64 * KiB, 4 * MiB, MM_NO_WAIT, &got), MM_OK);
  assert_int_equal(got, TOTAL); /* all of it: max_execution_request */
  assert_int_equal(mm_consumer_held(a), TOTAL);
  assert_int_equal(mm_consumer_release(a, TOTAL - 100 * KiB), MM_OK);
  mm_consumer *b = open_holding(mm, 2, 800 * KiB);
  /* Free: 124 KiB, whatever the quota parked with a and b. */
  assert_int_equal(
      mm_consumer_acquire_range(a, 16 * KiB, 512 * KiB, MM_NO_WAIT, &got),
      MM_OK);
  assert_int_equal(got, 124 * KiB);
  assert_int_equal(mm_consumer_held(a), 224 * KiB);
  mm_stats s = mm_test_stats(mm);
  mm_test_check_stats(&s, TOTAL / 2, 0);
  assert_int_equal(s.execution_used_bytes + s.storage_used_bytes, TOTAL);
  mm_consumer_close(a);
  mm_consumer_close(b);
  mm_destroy(mm);
}

/* Nothing is evicted for the part above the min; the min is a request of
 * its own, which may evict, and otherwise is declined with nothing
 * changed. */
static void test_range_evicts_for_the_min_only(void **state) {
  (void)state;
  mm_t *mm = create();
  for (uint64_t p = 1; p <= 64; p++) /* 256 KiB of unpinned pages */
    assert_int_equal(mm_acquire_storage(mm, p, 4 * KiB, MM_NO_WAIT), MM_OK);
  mm_consumer *a = open_holding(mm, 1, 0);
  mm_consumer *b = open_holding(mm, 2, 700 * KiB);
  size_t got = 0;
  /* Free: 68 KiB. */
  assert_int_equal(
      mm_consumer_acquire_range(a, 16 * KiB, 200 * KiB, MM_NO_WAIT, &got),
      MM_OK);
  assert_int_equal(got, 68 * KiB);
  assert_int_equal(mm_test_stats(mm).evictions, 0);
  /* Nothing free: the min evicts. */
  assert_int_equal(
      mm_consumer_acquire_range(a, 40 * KiB, 200 * KiB, MM_NO_WAIT, &got),
      MM_OK);
  assert_int_equal(got, 40 * KiB);
  assert_true(mm_test_stats(mm).evictions >= 10);
  /* More than anything could give: declined, nothing changed. */
  size_t held = mm_consumer_held(a);
  assert_int_equal(
      mm_consumer_acquire_range(a, 512 * KiB, 600 * KiB, MM_NO_WAIT, &got),
      MM_ENOMEM);
  assert_int_equal(got, 0);
  assert_int_equal(mm_consumer_held(a), held);
  /* With a timeout it is held as the min would be, and times out. */
  assert_int_equal(
      mm_consumer_acquire_range(a, 512 * KiB, 600 * KiB, 20 * MS, &got),
      MM_ETIMEDOUT);
  assert_int_equal(got, 0);
  assert_int_equal(mm_consumer_held(a), held);
  mm_stats s = mm_test_stats(mm);
  mm_test_check_stats(&s, TOTAL / 2, 0);
  mm_consumer_close(a);
  mm_consumer_close(b);
  mm_destroy(mm);
}

static void test_range_bad_calls(void **state) {
  (void)state;
  mm_t *mm = create();
  mm_consumer *a = open_holding(mm, 1, 0);
  size_t got = 7;
  assert_int_equal(mm_consumer_acquire_range(NULL, 1, 2, MM_NO_WAIT, &got),
                   MM_EINVAL);
  assert_int_equal(got, 0);
  assert_int_equal(mm_consumer_acquire_range(a, 1, 2, MM_NO_WAIT, NULL),
                   MM_EINVAL);
  assert_int_equal(mm_consumer_acquire_range(a, 0, 2, MM_NO_WAIT, &got),
                   MM_EINVAL);
  assert_int_equal(mm_consumer_acquire_range(a, 3, 2, MM_NO_WAIT, &got),
                   MM_EINVAL);
  assert_int_equal(
      mm_consumer_acquire_range(a, TOTAL + 1, TOTAL + 2, MM_NO_WAIT, &got),
      MM_EINVAL);
  assert_int_equal(mm_consumer_acquire_range(a, 1, 2, -2, &got), MM_EINVAL);
  assert_int_equal(mm_consumer_held(a), 0);
  assert_int_equal(mm_release_all_execution(mm, 1), 0); /* closes a */
  assert_int_equal(mm_consumer_acquire_range(a, 1, 2, MM_NO_WAIT, &got),
                   MM_EINVAL);
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.execution_used_bytes, 0);
  mm_consumer_close(a);
  mm_destroy(mm);
}

/* A cap: a request past it is declined at once, whatever its timeout; a
 * range stops at it. */
static void test_max(void **state) {
  (void)state;
  mm_t *mm = create();
  mm_consumer *a = open_holding(mm, 1, 0);
  assert_int_equal(mm_consumer_set_limits(a, 0, 100 * KiB), MM_OK);
  assert_int_equal(mm_consumer_acquire(a, 60 * KiB, MM_NO_WAIT), MM_OK);
  int64_t t0 = now_ns();
  assert_int_equal(mm_consumer_acquire(a, 50 * KiB, 5000 * MS), MM_ENOMEM);
  assert_true(now_ns() - t0 < 2000 * MS); /* not held */
  void *p = NULL;
  assert_int_equal(mm_consumer_alloc(a, 50 * KiB, MM_NO_WAIT, &p), MM_ENOMEM);
  assert_null(p);
  size_t got = 0;
  assert_int_equal(
      mm_consumer_acquire_range(a, 10 * KiB, 1 * MiB, MM_NO_WAIT, &got), MM_OK);
  assert_int_equal(got, 40 * KiB);
  assert_int_equal(mm_consumer_held(a), 100 * KiB);
  assert_int_equal(mm_consumer_acquire_range(a, 1, 2, MM_NO_WAIT, &got),
                   MM_ENOMEM);
  assert_int_equal(mm_consumer_release(a, 100 * KiB), MM_OK);
  assert_int_equal(mm_test_stats(mm).execution_used_bytes, 0);
  mm_consumer_close(a);
  mm_destroy(mm);
}

/* A guarantee: reserved when set, taken by its own acquires only, kept
 * through its releases, given back when it closes. */
static void test_min(void **state) {
  (void)state;
  mm_t *mm = create();
  mm_consumer *a = open_holding(mm, 1, 0);
  mm_consumer *b = open_holding(mm, 2, 0);
  assert_int_equal(mm_consumer_set_limits(a, 300 * KiB, 0), MM_OK);
  assert_int_equal(mm_test_stats(mm).execution_used_bytes, 300 * KiB);
  /* Others cannot take it, waiting or not. */
  assert_int_equal(mm_consumer_acquire(b, 800 * KiB, MM_NO_WAIT), MM_ENOMEM);
  assert_int_equal(mm_consumer_acquire(b, 800 * KiB, 20 * MS), MM_ETIMEDOUT);
  assert_int_equal(mm_consumer_acquire(b, 700 * KiB, MM_NO_WAIT), MM_OK);
  /* Its own acquires take it without touching the pool. */
  assert_int_equal(mm_consumer_acquire(a, 300 * KiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_test_stats(mm).execution_used_bytes, 1000 * KiB);
  /* What it releases below its min stays its own. */
  assert_int_equal(mm_consumer_release(a, 100 * KiB), MM_OK);
  assert_int_equal(mm_test_stats(mm).execution_used_bytes, 1000 * KiB);
  assert_int_equal(mm_consumer_acquire(b, 100 * KiB, MM_NO_WAIT), MM_ENOMEM);
  assert_int_equal(mm_consumer_acquire(a, 100 * KiB, MM_NO_WAIT), MM_OK);
  /* Above its min it is an ordinary consumer. */
  assert_int_equal(mm_consumer_acquire(a, 24 * KiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_consumer_release(a, 24 * KiB), MM_OK);
  assert_int_equal(mm_consumer_acquire(b, 24 * KiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_consumer_release(b, 24 * KiB), MM_OK);
  /* Closed: everything back. */
  assert_int_equal(mm_consumer_release(a, 150 * KiB), MM_OK);
  mm_consumer_close(a);
  assert_int_equal(mm_test_stats(mm).execution_used_bytes, 700 * KiB);
  mm_stats s = mm_test_stats(mm);
  mm_test_check_stats(&s, TOTAL / 2, 0);
  mm_consumer_close(b);
  assert_int_equal(mm_test_stats(mm).execution_used_bytes, 0);
  mm_destroy(mm);
}

/* The guarantees never sum past the execution pool; a reserve that is
 * not free is refused with nothing changed; limits can be changed. */
static void test_limits_checked(void **state) {
  (void)state;
  mm_t *mm = create(); /* execution pool: 512 KiB */
  mm_consumer *a = open_holding(mm, 1, 0);
  mm_consumer *b = open_holding(mm, 2, 0);
  mm_consumer *c = open_holding(mm, 3, 0);
  assert_int_equal(mm_consumer_set_limits(NULL, 0, 0), MM_EINVAL);
  assert_int_equal(mm_consumer_set_limits(a, 2, 1), MM_EINVAL);
  assert_int_equal(mm_consumer_set_limits(a, 300 * KiB, 0), MM_OK);
  assert_int_equal(mm_consumer_set_limits(b, 300 * KiB, 0), MM_ENOMEM);
  assert_int_equal(mm_consumer_set_limits(b, 212 * KiB, 0), MM_OK);
  assert_int_equal(mm_test_stats(mm).execution_used_bytes, 512 * KiB);
  /* Lowered: the reserve shrinks. */
  assert_int_equal(mm_consumer_set_limits(a, 100 * KiB, 0), MM_OK);
  assert_int_equal(mm_test_stats(mm).execution_used_bytes, 312 * KiB);
  /* Not free now: refused, nothing changed. */
  assert_int_equal(mm_consumer_acquire(c, 700 * KiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_consumer_set_limits(a, 200 * KiB, 0), MM_ENOMEM);
  assert_int_equal(mm_test_stats(mm).execution_used_bytes, 1012 * KiB);
  assert_int_equal(mm_consumer_set_limits(a, 112 * KiB, 0), MM_OK);
  assert_int_equal(mm_test_stats(mm).execution_used_bytes, 1024 * KiB);
  /* Off again: the reserve goes back. */
  assert_int_equal(mm_consumer_set_limits(a, 0, 0), MM_OK);
  assert_int_equal(mm_consumer_set_limits(b, 0, 0), MM_OK);
  assert_int_equal(mm_test_stats(mm).execution_used_bytes, 700 * KiB);
  assert_int_equal(mm_consumer_set_limits(c, 512 * KiB, 0), MM_OK);
  mm_consumer_close(a);
  mm_consumer_close(b);
  mm_consumer_close(c);
  assert_int_equal(mm_test_stats(mm).execution_used_bytes, 0);
  mm_destroy(mm);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_range_takes_what_is_free),
      cmocka_unit_test(test_range_evicts_for_the_min_only),
      cmocka_unit_test(test_range_bad_calls),
      cmocka_unit_test(test_max),
      cmocka_unit_test(test_min),
      cmocka_unit_test(test_limits_checked),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

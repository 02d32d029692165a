/*
 * test_arbitration.c -- how execution memory is shared among consumers:
 * grants of "at least this, at most that".
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_range_takes_what_is_free),
      cmocka_unit_test(test_range_evicts_for_the_min_only),
      cmocka_unit_test(test_range_bad_calls),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_execution.c -- execution memory: grants, declines, per-exec-id
 * books, borrowing from storage and repaying it.  The pool rules are
 * checked after every step.
 */
#include "mm_test.h"

#include <string.h>

#define TOTAL        (64 * MiB)
#define STORAGE_INIT (32 * MiB)

static mm_t *mm;

static int setup(void **state) {
  (void)state;
  mm = mm_test_create(TOTAL, 0);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  mm_destroy(mm);
  return 0;
}

static mm_stats checked(void) {
  mm_stats s = mm_test_stats(mm);
  mm_test_check_stats(&s, STORAGE_INIT, 0);
  return s;
}

/* Everything but the counters that a refused call may bump. */
static void assert_same_state(const mm_stats *a, const mm_stats *b) {
  assert_int_equal(a->execution_used_bytes, b->execution_used_bytes);
  assert_int_equal(a->storage_used_bytes, b->storage_used_bytes);
  assert_int_equal(a->execution_pool_bytes, b->execution_pool_bytes);
  assert_int_equal(a->granted, b->granted);
  assert_int_equal(a->execution_ids, b->execution_ids);
  assert_int_equal(a->storage_pages, b->storage_pages);
}

static void test_acquire_release(void **state) {
  (void)state;
  assert_int_equal(mm_acquire_execution(mm, 1, 1000, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_acquire_execution(mm, 1, 24, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_acquire_execution(mm, 2, 4096, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_execution_held(mm, 1), 1024);
  assert_int_equal(mm_execution_held(mm, 2), 4096);
  assert_int_equal(mm_execution_held(mm, 3), 0);
  mm_stats s = checked();
  assert_int_equal(s.execution_used_bytes, 5120);
  assert_int_equal(s.granted, 3);
  assert_int_equal(s.execution_ids, 2);

  assert_int_equal(mm_release_execution(mm, 1, 1000), MM_OK);
  assert_int_equal(mm_execution_held(mm, 1), 24);
  assert_int_equal(mm_release_execution(mm, 1, 24), MM_OK);
  assert_int_equal(mm_execution_held(mm, 1), 0);
  s = checked();
  assert_int_equal(s.execution_used_bytes, 4096);
  /* Released to zero: the record stays until release_all. */
  assert_int_equal(s.execution_ids, 2);
  assert_int_equal(mm_release_all_execution(mm, 1), 0);
  assert_int_equal(checked().execution_ids, 1);
  assert_int_equal(mm_release_all_execution(mm, 2), 4096);
  s = checked();
  assert_int_equal(s.execution_used_bytes, 0);
  assert_int_equal(s.execution_ids, 0);
}

static void test_bad_arguments_change_nothing(void **state) {
  (void)state;
  assert_int_equal(mm_acquire_execution(mm, 1, 5000, MM_NO_WAIT), MM_OK);
  mm_stats before = checked();

  assert_int_equal(mm_acquire_execution(mm, 1, 0, MM_NO_WAIT), MM_EINVAL);
  assert_int_equal(mm_acquire_execution(mm, 1, 8 * MiB + 1, MM_NO_WAIT),
                   MM_EINVAL);
  assert_int_equal(mm_acquire_execution(mm, 1, SIZE_MAX, MM_NO_WAIT),
                   MM_EINVAL);
  assert_int_equal(mm_acquire_execution(mm, 1, 10, -2), MM_EINVAL);
  assert_int_equal(mm_acquire_execution(mm, 1, 10, INT64_MIN), MM_EINVAL);
  /* more than the id holds, zero, an id that holds nothing */
  assert_int_equal(mm_release_execution(mm, 1, 5001), MM_EINVAL);
  assert_int_equal(mm_release_execution(mm, 1, 0), MM_EINVAL);
  assert_int_equal(mm_release_execution(mm, 99, 1), MM_EINVAL);
  assert_int_equal(mm_release_all_execution(mm, 99), 0);

  mm_stats after = checked();
  assert_same_state(&before, &after);
  assert_int_equal(after.declined, before.declined);
  assert_int_equal(mm_execution_held(mm, 1), 5000);
  assert_int_equal(mm_execution_held(mm, 99), 0);
  assert_int_equal(mm_release_all_execution(mm, 1), 5000);
}

static void test_borrow_and_repay(void **state) {
  (void)state;
  const size_t exec_init = TOTAL - STORAGE_INIT;
  size_t got = 0;
  for (uint64_t id = 1; got < exec_init; id++, got += 8 * MiB)
    assert_int_equal(mm_acquire_execution(mm, id, 8 * MiB, MM_NO_WAIT), MM_OK);
  mm_stats s = checked();
  assert_int_equal(s.execution_borrowed_bytes, 0);
  assert_int_equal(s.execution_pool_bytes, exec_init);

  /* Execution is full: the next request borrows free storage capacity. */
  assert_int_equal(mm_acquire_execution(mm, 100, 3 * MiB, MM_NO_WAIT), MM_OK);
  s = checked();
  assert_int_equal(s.execution_borrowed_bytes, 3 * MiB);
  assert_int_equal(s.execution_pool_bytes, exec_init + 3 * MiB);
  assert_int_equal(s.storage_pool_bytes, STORAGE_INIT - 3 * MiB);

  /* Storage now has only what was not lent.  (Pinned, so that nothing
   * can be evicted: eviction has tests of its own.) */
  assert_int_equal(
      mm_acquire_storage(mm, 1, STORAGE_INIT - 3 * MiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_pin_storage(mm, 1, NULL), MM_OK);
  assert_int_equal(mm_acquire_storage(mm, 2, 4096, MM_NO_WAIT), MM_ENOMEM);
  assert_int_equal(mm_acquire_execution(mm, 100, 1, MM_NO_WAIT), MM_ENOMEM);
  s = checked();
  assert_int_equal(s.declined, 2);
  assert_int_equal(s.execution_used_bytes + s.storage_used_bytes, TOTAL);

  /* Release repays storage first; back at the initial sizes. */
  assert_int_equal(mm_release_execution(mm, 100, 1 * MiB), MM_OK);
  s = checked();
  assert_int_equal(s.execution_borrowed_bytes, 2 * MiB);
  assert_int_equal(mm_release_all_execution(mm, 100), 2 * MiB);
  s = checked();
  assert_int_equal(s.execution_borrowed_bytes, 0);
  assert_int_equal(s.execution_pool_bytes, exec_init);
  assert_int_equal(s.storage_pool_bytes, STORAGE_INIT);
  /* ... and storage can use its repaid capacity. */
  assert_int_equal(mm_acquire_storage(mm, 2, 3 * MiB, MM_NO_WAIT), MM_OK);
  checked();
}

static void test_declined_changes_nothing(void **state) {
  (void)state;
  assert_int_equal(mm_acquire_storage(mm, 1, STORAGE_INIT, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_pin_storage(mm, 1, NULL), MM_OK); /* not evictable */
  for (uint64_t id = 1; id <= 4; id++)
    assert_int_equal(mm_acquire_execution(mm, id, 8 * MiB, MM_NO_WAIT), MM_OK);
  mm_stats before = checked();
  assert_int_equal(mm_acquire_execution(mm, 9, 1, MM_NO_WAIT), MM_ENOMEM);
  assert_int_equal(mm_acquire_execution(mm, 9, 8 * MiB, MM_NO_WAIT), MM_ENOMEM);
  mm_stats after = checked();
  assert_same_state(&before, &after);
  assert_int_equal(after.declined, before.declined + 2);
  assert_int_equal(mm_execution_held(mm, 9), 0);
  assert_int_equal(after.execution_ids, 4); /* no record for id 9 */
}

static void test_timeouts_that_fit_are_granted(void **state) {
  (void)state;
  assert_int_equal(mm_acquire_execution(mm, 1, 10, 1), MM_OK);
  assert_int_equal(mm_acquire_execution(mm, 1, 10, MM_WAIT_FOREVER), MM_OK);
  assert_int_equal(mm_acquire_execution(mm, 1, 10, INT64_MAX), MM_OK);
  assert_int_equal(mm_execution_held(mm, 1), 30);
}

static void test_ids_are_independent(void **state) {
  (void)state;
  /* The extreme id values are ordinary ids. */
  const uint64_t ids[] = {0, 1, UINT64_MAX, UINT64_MAX - 1, 1ull << 63};
  for (size_t i = 0; i < 5; i++)
    assert_int_equal(mm_acquire_execution(mm, ids[i], 100 + i, MM_NO_WAIT),
                     MM_OK);
  for (size_t i = 0; i < 5; i++)
    assert_int_equal(mm_execution_held(mm, ids[i]), 100 + i);
  for (size_t i = 0; i < 5; i++)
    assert_int_equal(mm_release_all_execution(mm, ids[i]), 100 + i);
  assert_int_equal(checked().execution_used_bytes, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_acquire_release, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_arguments_change_nothing, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_borrow_and_repay, setup, teardown),
      cmocka_unit_test_setup_teardown(test_declined_changes_nothing, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_timeouts_that_fit_are_granted, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_ids_are_independent, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

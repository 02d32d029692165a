/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_config.c -- mm_create's checks and defaults, mm_strerror, and the
 * NULL-manager answers of every call.
 */
#include "mm_test.h"

#include <math.h>
#include <string.h>

static mm_status create_with(mm_config cfg, mm_t **out) {
  return mm_create(&cfg, out);
}

static void test_defaults(void **state) {
  (void)state;
  mm_t *mm = mm_test_create(1 * GiB, 0);
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.total_bytes, 1 * GiB);
  assert_int_equal(s.storage_pool_bytes, 512 * MiB);
  assert_int_equal(s.execution_pool_bytes, 512 * MiB);
  assert_int_equal(s.execution_used_bytes + s.storage_used_bytes, 0);
  /* max_execution_request defaults to 8 MiB */
  assert_int_equal(mm_acquire_execution(mm, 1, 8 * MiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_acquire_execution(mm, 1, 8 * MiB + 1, MM_NO_WAIT),
                   MM_EINVAL);
  /* page_size defaults to 4096: one byte is charged as a page */
  assert_int_equal(mm_acquire_storage(mm, 7, 1, MM_NO_WAIT), MM_OK);
  s = mm_test_stats(mm);
  assert_int_equal(s.storage_used_bytes, 4096);
  mm_test_check_stats(&s, 512 * MiB, 0);
  mm_destroy(mm);
}

static void test_null_arguments(void **state) {
  (void)state;
  mm_config cfg = {.total_bytes = 1 * MiB};
  mm_t *mm = (mm_t *)(uintptr_t)0x1; /* must stay untouched on error */
  assert_int_equal(mm_create(NULL, &mm), MM_EINVAL);
  assert_ptr_equal(mm, (mm_t *)(uintptr_t)0x1);
  assert_int_equal(mm_create(&cfg, NULL), MM_EINVAL);

  assert_int_equal(mm_acquire_execution(NULL, 1, 1, MM_NO_WAIT), MM_EINVAL);
  assert_int_equal(mm_release_execution(NULL, 1, 1), MM_EINVAL);
  assert_int_equal(mm_release_all_execution(NULL, 1), 0);
  assert_int_equal(mm_execution_held(NULL, 1), 0);
  assert_int_equal(mm_acquire_storage(NULL, 1, 1, MM_NO_WAIT), MM_EINVAL);
  assert_int_equal(mm_release_storage(NULL, 1), MM_EINVAL);
  assert_int_equal(mm_pin_storage(NULL, 1, NULL), MM_EINVAL);
  assert_int_equal(mm_unpin_storage(NULL, 1), MM_EINVAL);
  mm_destroy(NULL);

  mm_stats s;
  memset(&s, 0xab, sizeof s);
  mm_get_stats(NULL, &s);
  mm_stats zero;
  memset(&zero, 0, sizeof zero);
  assert_memory_equal(&s, &zero, sizeof s);
  mm_t *real = mm_test_create(1 * MiB, 0);
  mm_get_stats(real, NULL); /* nothing to fill: nothing happens */
  mm_destroy(real);
}

static void test_total_bytes(void **state) {
  (void)state;
  mm_t *mm = NULL;
  /* (0 is a budget from the environment: test_budget.c) */
  assert_int_equal(
      create_with((mm_config){.total_bytes = ((size_t)1 << 62) + 1}, &mm),
      MM_EINVAL);
  assert_int_equal(create_with((mm_config){.total_bytes = SIZE_MAX}, &mm),
                   MM_EINVAL);
  assert_null(mm);
  /* The smallest budget: one page of storage, one of execution. */
  assert_int_equal(create_with((mm_config){.total_bytes = 8192}, &mm), MM_OK);
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.storage_pool_bytes, 4096);
  assert_int_equal(s.execution_pool_bytes, 4096);
  /* max_execution_request defaults to the budget when that is smaller */
  assert_int_equal(mm_acquire_execution(mm, 1, 8192, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_acquire_execution(mm, 2, 8193, MM_NO_WAIT), MM_EINVAL);
  mm_destroy(mm);
}

static void test_storage_fraction(void **state) {
  (void)state;
  const double bad[] = {-0.5, 1.0, 1.5, -0.0001, NAN, INFINITY};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    mm_t *mm = NULL;
    assert_int_equal(create_with((mm_config){.total_bytes = 1 * GiB,
                                             .storage_fraction = bad[i]},
                                 &mm),
                     MM_EINVAL);
    assert_null(mm);
  }
  mm_t *mm = NULL;
  assert_int_equal(
      create_with((mm_config){.total_bytes = 1 * GiB, .storage_fraction = 0.25},
                  &mm),
      MM_OK);
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.storage_pool_bytes, 256 * MiB);
  assert_int_equal(s.execution_pool_bytes, 768 * MiB);
  mm_destroy(mm);

  /* Rounded down to whole pages; execution gets the remainder. */
  assert_int_equal(create_with((mm_config){.total_bytes = 10000}, &mm), MM_OK);
  s = mm_test_stats(mm);
  assert_int_equal(s.storage_pool_bytes, 4096);
  assert_int_equal(s.execution_pool_bytes, 10000 - 4096);
  mm_destroy(mm);

  /* A fraction that leaves storage without one page is refused. */
  mm = NULL;
  assert_int_equal(create_with((mm_config){.total_bytes = 6000}, &mm),
                   MM_EINVAL);
  assert_int_equal(
      create_with(
          (mm_config){.total_bytes = 1 * MiB, .storage_fraction = 0.001}, &mm),
      MM_EINVAL);
  assert_null(mm);
}

static void test_page_size(void **state) {
  (void)state;
  const size_t bad[] = {3000, 2048, 4097, (size_t)1 << 31, 1};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    mm_t *mm = NULL;
    assert_int_equal(
        create_with((mm_config){.total_bytes = 64 * GiB, .page_size = bad[i]},
                    &mm),
        MM_EINVAL);
    assert_null(mm);
  }
  mm_t *mm = NULL;
  assert_int_equal(
      create_with((mm_config){.total_bytes = 1 * MiB, .page_size = 8192}, &mm),
      MM_OK);
  assert_int_equal(mm_acquire_storage(mm, 1, 1, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_acquire_storage(mm, 2, 8193, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_test_stats(mm).storage_used_bytes, 8192 * 3);
  mm_destroy(mm);
}

static void test_other_fields(void **state) {
  (void)state;
  mm_t *mm = NULL;
  /* max_execution_request above the budget */
  assert_int_equal(create_with((mm_config){.total_bytes = 1 * MiB,
                                           .max_execution_request = 2 * MiB},
                               &mm),
                   MM_EINVAL);
  /* protecting more storage than the storage pool holds */
  assert_int_equal(
      create_with((mm_config){.total_bytes = 1 * MiB,
                              .storage_protected_bytes = 512 * KiB + 1},
                  &mm),
      MM_EINVAL);
  /* a negative overtake limit */
  assert_int_equal(
      create_with((mm_config){.total_bytes = 1 * MiB, .overtake_limit_ns = -1},
                  &mm),
      MM_EINVAL);
  /* a budget below two pages */
  assert_int_equal(
      create_with((mm_config){.total_bytes = 6144, .storage_fraction = 0.9},
                  &mm),
      MM_EINVAL);
  /* unknown eviction policies */
  assert_int_equal(
      create_with((mm_config){.total_bytes = 1 * MiB, .eviction = 2}, &mm),
      MM_EINVAL);
  assert_int_equal(
      create_with((mm_config){.total_bytes = 1 * MiB, .eviction = -1}, &mm),
      MM_EINVAL);
  assert_null(mm);

  mm_config cfg = {.total_bytes = 1 * MiB,
                   .max_execution_request = 100,
                   .storage_protected_bytes = 512 * KiB,
                   .eviction = MM_EVICT_SAMPLED_LRU,
                   .seed = 42};
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  assert_int_equal(mm_acquire_execution(mm, 1, 100, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_acquire_execution(mm, 1, 101, MM_NO_WAIT), MM_EINVAL);
  assert_int_equal(mm_execution_held(mm, 1), 100);
  mm_destroy(mm);
}

static void test_strerror(void **state) {
  (void)state;
  const mm_status all[] = {MM_OK,        MM_EINVAL,    MM_ENOMEM,
                           MM_ETIMEDOUT, MM_ECANCELED, MM_EEXIST,
                           MM_ENOENT,    MM_EBUSY,     MM_EINPROGRESS};
  const size_t n = sizeof all / sizeof all[0];
  const char *unknown = mm_strerror((mm_status)1000);
  assert_non_null(unknown);
  assert_string_equal(unknown, mm_strerror((mm_status)-1));
  for (size_t i = 0; i < n; i++) {
    const char *m = mm_strerror(all[i]);
    assert_non_null(m);
    assert_true(strlen(m) > 0);
    assert_string_not_equal(m, unknown);
    for (size_t j = 0; j < i; j++)
      assert_string_not_equal(m, mm_strerror(all[j]));
  }
  assert_int_equal(MM_OK, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_null_arguments),
      cmocka_unit_test(test_total_bytes),
      cmocka_unit_test(test_storage_fraction),
      cmocka_unit_test(test_page_size),
      cmocka_unit_test(test_other_fields),
      cmocka_unit_test(test_strerror),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

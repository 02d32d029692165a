/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_storage.c -- storage pages: registration, rounding, duplicates,
 * pins, release, the storage pool's limits with and without borrowing.
 */
#include "mm_test.h"

#include "mm_internal.h"
#include "page.h"

#define TOTAL        (16 * MiB)
#define STORAGE_INIT (8 * MiB)

static mm_t *mm;
static int may_borrow;

static int setup(void **state) {
  (void)state;
  may_borrow = 0;
  mm = mm_test_create(TOTAL, 0);
  return 0;
}

static int setup_borrow(void **state) {
  (void)state;
  may_borrow = 1;
  mm = mm_test_create(TOTAL, 1);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  mm_destroy(mm);
  return 0;
}

static mm_stats checked(void) {
  mm_stats s = mm_test_stats(mm);
  mm_test_check_stats(&s, STORAGE_INIT, may_borrow);
  return s;
}

static void test_register_and_release(void **state) {
  (void)state;
  assert_int_equal(mm_acquire_storage(mm, 10, 4096, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_acquire_storage(mm, 11, 4097, MM_NO_WAIT), MM_OK);
  mm_stats s = checked();
  assert_int_equal(s.storage_used_bytes, 3 * 4096);
  assert_int_equal(s.storage_pages, 2);
  assert_int_equal(s.granted, 2);

  /* A duplicate id is refused and changes nothing. */
  assert_int_equal(mm_acquire_storage(mm, 10, 4096, MM_NO_WAIT), MM_EEXIST);
  assert_int_equal(mm_acquire_storage(mm, 10, 1 * MiB, MM_NO_WAIT), MM_EEXIST);
  s = checked();
  assert_int_equal(s.storage_used_bytes, 3 * 4096);
  assert_int_equal(s.storage_pages, 2);
  assert_int_equal(s.declined, 0);

  assert_int_equal(mm_release_storage(mm, 11), MM_OK);
  assert_int_equal(mm_release_storage(mm, 11), MM_ENOENT);
  assert_int_equal(mm_pin_storage(mm, 11, NULL), MM_ENOENT);
  assert_int_equal(mm_unpin_storage(mm, 11), MM_ENOENT);
  s = checked();
  assert_int_equal(s.storage_used_bytes, 4096);
  assert_int_equal(s.storage_pages, 1);

  /* A released id may be registered again. */
  assert_int_equal(mm_acquire_storage(mm, 11, 100, MM_NO_WAIT), MM_OK);
  assert_int_equal(checked().storage_used_bytes, 2 * 4096);
  assert_int_equal(mm_release_storage(mm, 10), MM_OK);
  assert_int_equal(mm_release_storage(mm, 11), MM_OK);
  s = checked();
  assert_int_equal(s.storage_used_bytes, 0);
  assert_int_equal(s.storage_pages, 0);
}

static void test_bad_arguments_change_nothing(void **state) {
  (void)state;
  assert_int_equal(mm_acquire_storage(mm, 1, 4096, MM_NO_WAIT), MM_OK);
  mm_stats before = checked();
  assert_int_equal(mm_acquire_storage(mm, 2, 0, MM_NO_WAIT), MM_EINVAL);
  assert_int_equal(mm_acquire_storage(mm, 2, SIZE_MAX, MM_NO_WAIT), MM_EINVAL);
  assert_int_equal(mm_acquire_storage(mm, 2, SIZE_MAX - 4094, MM_NO_WAIT),
                   MM_EINVAL);
  /* More than the storage pool could ever hold. */
  assert_int_equal(mm_acquire_storage(mm, 2, STORAGE_INIT + 1, MM_NO_WAIT),
                   MM_EINVAL);
  assert_int_equal(mm_acquire_storage(mm, 2, 4096, -2), MM_EINVAL);
  assert_int_equal(mm_release_storage(mm, 2), MM_ENOENT);
  assert_int_equal(mm_pin_storage(mm, 2, NULL), MM_ENOENT);
  assert_int_equal(mm_unpin_storage(mm, 2), MM_ENOENT);
  assert_int_equal(mm_unpin_storage(mm, 1), MM_EINVAL); /* not pinned */
  mm_stats after = checked();
  assert_int_equal(after.storage_used_bytes, before.storage_used_bytes);
  assert_int_equal(after.storage_pages, before.storage_pages);
  assert_int_equal(after.granted, before.granted);
  assert_int_equal(after.declined, before.declined);
  assert_int_equal(after.storage_pinned_bytes, 0);
}

static void test_pins_nest(void **state) {
  (void)state;
  assert_int_equal(mm_acquire_storage(mm, 5, 8192, MM_NO_WAIT), MM_OK);
  assert_int_equal(checked().storage_pinned_bytes, 0); /* born unpinned */

  void *data = (void *)(uintptr_t)0x1;
  assert_int_equal(mm_pin_storage(mm, 5, &data), MM_OK);
  assert_null(data); /* accounting-only page */
  assert_int_equal(mm_pin_storage(mm, 5, NULL), MM_OK);
  assert_int_equal(checked().storage_pinned_bytes, 8192);

  assert_int_equal(mm_release_storage(mm, 5), MM_EBUSY);
  assert_int_equal(mm_unpin_storage(mm, 5), MM_OK);
  assert_int_equal(mm_release_storage(mm, 5), MM_EBUSY);
  assert_int_equal(checked().storage_pinned_bytes, 8192);
  assert_int_equal(mm_unpin_storage(mm, 5), MM_OK);
  assert_int_equal(checked().storage_pinned_bytes, 0);
  assert_int_equal(mm_unpin_storage(mm, 5), MM_EINVAL);
  assert_int_equal(mm_release_storage(mm, 5), MM_OK);
  assert_int_equal(checked().storage_used_bytes, 0);
}

static void test_pool_full_of_pinned_pages(void **state) {
  (void)state;
  for (uint64_t id = 0; id < STORAGE_INIT / (1 * MiB); id++) {
    assert_int_equal(mm_acquire_storage(mm, id, 1 * MiB, MM_NO_WAIT), MM_OK);
    assert_int_equal(mm_pin_storage(mm, id, NULL), MM_OK);
  }
  /* Full, and nothing can be evicted: declined, even though execution
   * capacity is free. */
  assert_int_equal(mm_acquire_storage(mm, 100, 4096, MM_NO_WAIT), MM_ENOMEM);
  assert_int_equal(mm_acquire_storage(mm, 100, 4096, 1000000), MM_ETIMEDOUT);
  mm_stats s = checked();
  assert_int_equal(s.declined, 1);
  assert_int_equal(s.timed_out, 1);
  assert_int_equal(s.storage_pages, 8);
  assert_int_equal(s.storage_used_bytes, STORAGE_INIT);
  assert_int_equal(s.evictions, 0);
  /* A release makes room. */
  assert_int_equal(mm_unpin_storage(mm, 3), MM_OK);
  assert_int_equal(mm_release_storage(mm, 3), MM_OK);
  assert_int_equal(mm_acquire_storage(mm, 100, 4096, MM_NO_WAIT), MM_OK);
}

static void test_never_takes_execution_in_use(void **state) {
  (void)state;
  /* Execution borrows 2 MiB of storage's capacity ... */
  for (uint64_t id = 1; id <= 5; id++)
    assert_int_equal(mm_acquire_execution(mm, id, 2 * MiB, MM_NO_WAIT), MM_OK);
  mm_stats s = checked();
  assert_int_equal(s.execution_borrowed_bytes, 2 * MiB);
  /* ... so storage has 6 MiB, and cannot take it back. */
  assert_int_equal(mm_acquire_storage(mm, 1, 6 * MiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_pin_storage(mm, 1, NULL), MM_OK); /* not evictable */
  assert_int_equal(mm_acquire_storage(mm, 2, 4096, MM_NO_WAIT), MM_ENOMEM);
  assert_int_equal(mm_release_execution(mm, 5, 2 * MiB), MM_OK);
  assert_int_equal(mm_acquire_storage(mm, 2, 2 * MiB, MM_NO_WAIT), MM_OK);
  s = checked();
  assert_int_equal(s.storage_pool_bytes, STORAGE_INIT);
  assert_int_equal(s.storage_used_bytes, STORAGE_INIT);
}

static void test_storage_may_borrow(void **state) {
  (void)state;
  /* The whole budget is a legal storage request now. */
  assert_int_equal(mm_acquire_storage(mm, 1, TOTAL + 1, MM_NO_WAIT), MM_EINVAL);
  assert_int_equal(mm_acquire_execution(mm, 1, 4 * MiB, MM_NO_WAIT), MM_OK);
  /* Free execution capacity (4 MiB) may be taken; execution in use not. */
  assert_int_equal(mm_acquire_storage(mm, 1, 12 * MiB + 1, MM_NO_WAIT),
                   MM_ENOMEM);
  assert_int_equal(mm_acquire_storage(mm, 1, 12 * MiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_pin_storage(mm, 1, NULL), MM_OK); /* not evictable */
  mm_stats s = checked();
  assert_int_equal(s.storage_borrowed_bytes, 4 * MiB);
  assert_int_equal(s.storage_pool_bytes, 12 * MiB);
  assert_int_equal(s.execution_pool_bytes, 4 * MiB);
  assert_int_equal(mm_acquire_execution(mm, 1, 1, MM_NO_WAIT), MM_ENOMEM);
  /* Repaid on release. */
  assert_int_equal(mm_unpin_storage(mm, 1), MM_OK);
  assert_int_equal(mm_release_storage(mm, 1), MM_OK);
  s = checked();
  assert_int_equal(s.storage_borrowed_bytes, 0);
  assert_int_equal(s.storage_pool_bytes, STORAGE_INIT);
  assert_int_equal(mm_acquire_storage(mm, 2, TOTAL - 4 * MiB, MM_NO_WAIT),
                   MM_OK);
}

/* White box: an eviction's claim, made by hand the way evict.c makes it
 * (one CAS from 0 to EVICTING), then undone.  A pin that met the claim
 * may find the page again; a release that met it wins the page. */
static mmi_page *claim_by_hand(uint64_t id) {
  mmi_rcu_read_lock();
  mmi_node *n = mmi_registry_find(mm->pages, id);
  assert_non_null(n);
  mmi_page *pg = caa_container_of(n, mmi_page, node);
  uint64_t s = 0;
  assert_true(mm_cas_acq_rel_u64(&pg->state, &s, PAGE_EVICTING));
  mmi_rcu_read_unlock();
  return pg; /* safe to use: only a release frees it, and we hold it */
}

static void unclaim_by_hand(mmi_page *pg, bool released) {
  mmi_rcu_read_lock();
  mmi_page_unclaim(mm, pg);
  /* evictable again, or the release that won it finished (the record
   * stays readable to the end of this read section) */
  assert_true(mm_load_relaxed_u64(&pg->state) == (released ? PAGE_RETIRED : 0));
  mmi_rcu_read_unlock();
}

static void test_release_meets_undone_claim(void **state) {
  (void)state;
  assert_int_equal(mm_acquire_storage(mm, 7, 4096, MM_NO_WAIT), MM_OK);
  mmi_page *pg = claim_by_hand(7);
  assert_int_equal(mm_pin_storage(mm, 7, NULL), MM_ENOENT);
  assert_int_equal(mm_acquire_storage(mm, 7, 4096, MM_NO_WAIT), MM_EEXIST);
  unclaim_by_hand(pg, false); /* no release met it: the page is back */
  assert_int_equal(mm_pin_storage(mm, 7, NULL), MM_OK);
  assert_int_equal(mm_unpin_storage(mm, 7), MM_OK);

  pg = claim_by_hand(7);
  assert_int_equal(mm_release_storage(mm, 7), MM_OK);
  assert_int_equal(mm_release_storage(mm, 7), MM_ENOENT); /* once */
  assert_int_equal(mm_pin_storage(mm, 7, NULL), MM_ENOENT);
  assert_int_equal(checked().storage_used_bytes, 4096); /* not yet */
  unclaim_by_hand(pg, true); /* the claim's end finishes the release */
  mm_stats s = checked();
  assert_int_equal(s.storage_used_bytes, 0);
  assert_int_equal(s.storage_pages, 0);
  assert_int_equal(s.evictions, 0);
  assert_int_equal(mm_pin_storage(mm, 7, NULL), MM_ENOENT);
  assert_int_equal(mm_acquire_storage(mm, 7, 4096, MM_NO_WAIT), MM_OK);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_register_and_release, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_bad_arguments_change_nothing, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_pins_nest, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pool_full_of_pinned_pages, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_never_takes_execution_in_use, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_storage_may_borrow, setup_borrow,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_release_meets_undone_claim, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

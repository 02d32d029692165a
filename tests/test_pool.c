/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_pool.c -- the two-pool rules of pool.c, on small numbers, with the
 * pool-sum invariant checked after every step.
 */
#include "mm_test.h"

#define MMI_POOL_GIVE_BACK /* the pool alone, uncharges included */
#include "pool.h"

/* Check the derived picture: pools sum to the budget, use fits. */
static mmi_pool_view view_checked(mmi_pool *p) {
  mmi_pool_view v;
  mmi_pool_view_get(p, &v);
  assert_int_equal(v.exec_pool + v.storage_pool, p->total);
  assert_true(v.exec_used <= v.exec_pool);
  assert_true(v.storage_used <= v.storage_pool);
  assert_false(v.exec_borrowed && v.storage_borrowed);
  if (!p->storage_may_borrow)
    assert_true(v.storage_used <= p->storage_init);
  return v;
}

/* Budget 1000: storage 400, execution 600. */
static void test_execution_borrows_free_storage(void **state) {
  (void)state;
  mmi_pool p;
  mmi_pool_init(&p, 1000, 400, false);
  assert_int_equal(mmi_pool_storage_max(&p), 400);

  assert_true(mmi_pool_charge_execution(&p, 600));
  mmi_pool_view v = view_checked(&p);
  assert_int_equal(v.exec_pool, 600);
  assert_int_equal(v.exec_borrowed, 0);

  /* Execution full: the next byte is borrowed from free storage. */
  assert_true(mmi_pool_charge_execution(&p, 100));
  v = view_checked(&p);
  assert_int_equal(v.exec_pool, 700);
  assert_int_equal(v.storage_pool, 300);
  assert_int_equal(v.exec_borrowed, 100);

  /* Storage can use only what execution has not borrowed. */
  assert_false(mmi_pool_charge_storage(&p, 301));
  assert_true(mmi_pool_charge_storage(&p, 300));
  view_checked(&p);
  /* Budget full: nobody gets another byte. */
  assert_false(mmi_pool_charge_execution(&p, 1));
  assert_false(mmi_pool_charge_storage(&p, 1));

  /* Releasing execution repays storage first. */
  mmi_pool_uncharge_execution(&p, 60);
  v = view_checked(&p);
  assert_int_equal(v.exec_pool, 640);
  assert_int_equal(v.exec_borrowed, 40);
  mmi_pool_uncharge_execution(&p, 40);
  v = view_checked(&p);
  assert_int_equal(v.exec_pool, 600);
  assert_int_equal(v.storage_pool, 400);
  assert_int_equal(v.exec_borrowed, 0);
  /* ... and storage may grow back into its own pool. */
  assert_true(mmi_pool_charge_storage(&p, 100));
  assert_false(mmi_pool_charge_storage(&p, 1));
  view_checked(&p);

  mmi_pool_uncharge_execution(&p, 600);
  mmi_pool_uncharge_storage(&p, 400);
  v = view_checked(&p);
  assert_int_equal(v.exec_used + v.storage_used, 0);
  assert_int_equal(v.exec_pool, 600);
}

static void test_storage_never_borrows_by_default(void **state) {
  (void)state;
  mmi_pool p;
  mmi_pool_init(&p, 1000, 400, false);
  assert_true(mmi_pool_charge_storage(&p, 400));
  assert_false(mmi_pool_charge_storage(&p, 1)); /* 600 free, none for it */
  mmi_pool_view v = view_checked(&p);
  assert_int_equal(v.storage_pool, 400);
  /* Execution is unaffected and can take its whole pool. */
  assert_true(mmi_pool_charge_execution(&p, 600));
  assert_false(mmi_pool_charge_execution(&p, 1));
  view_checked(&p);
}

static void test_storage_may_borrow(void **state) {
  (void)state;
  mmi_pool p;
  mmi_pool_init(&p, 1000, 400, true);
  assert_int_equal(mmi_pool_storage_max(&p), 1000);

  assert_true(mmi_pool_charge_execution(&p, 200));
  /* Storage takes free execution capacity, never execution in use. */
  assert_false(mmi_pool_charge_storage(&p, 801));
  assert_true(mmi_pool_charge_storage(&p, 700));
  mmi_pool_view v = view_checked(&p);
  assert_int_equal(v.storage_borrowed, 300);
  assert_int_equal(v.storage_pool, 700);
  assert_int_equal(v.exec_pool, 300);
  /* Execution can still take what is free, from its shrunken pool. */
  assert_true(mmi_pool_charge_execution(&p, 100));
  assert_false(mmi_pool_charge_execution(&p, 1));
  view_checked(&p);

  /* Storage repays as it releases. */
  mmi_pool_uncharge_storage(&p, 300);
  v = view_checked(&p);
  assert_int_equal(v.storage_borrowed, 0);
  assert_int_equal(v.storage_pool, 400);
  assert_int_equal(v.exec_pool, 600);
}

static void test_exact_limits(void **state) {
  (void)state;
  mmi_pool p;
  mmi_pool_init(&p, 1000, 400, false);
  /* The whole budget in one execution charge: everything borrowed. */
  assert_true(mmi_pool_charge_execution(&p, 1000));
  mmi_pool_view v = view_checked(&p);
  assert_int_equal(v.exec_pool, 1000);
  assert_int_equal(v.storage_pool, 0);
  assert_int_equal(v.exec_borrowed, 400);
  assert_false(mmi_pool_charge_storage(&p, 1));
  mmi_pool_uncharge_execution(&p, 1000);
  v = view_checked(&p);
  assert_int_equal(v.storage_pool, 400);
  /* A declined charge changes nothing. */
  assert_true(mmi_pool_charge_storage(&p, 400));
  assert_false(mmi_pool_charge_execution(&p, 601));
  v = view_checked(&p);
  assert_int_equal(v.exec_used, 0);
  assert_int_equal(v.storage_used, 400);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_execution_borrows_free_storage),
      cmocka_unit_test(test_storage_never_borrows_by_default),
      cmocka_unit_test(test_storage_may_borrow),
      cmocka_unit_test(test_exact_limits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

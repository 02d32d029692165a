/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_registry.c -- the RCU-protected id -> record maps of registry.c.
 */
#include "mm_test.h"

#include <pthread.h>

#include "registry.h"

static int dropped;
static void drop_counting(mmi_node *n, void *ctx) {
  (void)ctx;
  dropped++;
  mmi_meta_free(n);
}

static mmi_node *node_new(uint64_t key) {
  mmi_node *n = mmi_meta_alloc(sizeof *n);
  assert_non_null(n);
  n->key = key;
  return n;
}

static void test_insert_find_remove(void **state) {
  (void)state;
  mmi_registry *r = mmi_registry_new(16);
  assert_non_null(r);
  mmi_rcu_read_lock();
  assert_null(mmi_registry_find(r, 5));
  mmi_node *a = node_new(5);
  assert_ptr_equal(mmi_registry_insert_unique(r, a), a);
  assert_ptr_equal(mmi_registry_find(r, 5), a);

  /* A duplicate key hands back the record already there. */
  mmi_node *b = node_new(5);
  assert_ptr_equal(mmi_registry_insert_unique(r, b), a);
  mmi_meta_free(b);

  /* Keys that hash close together stay distinct. */
  for (uint64_t k = 100; k < 1100; k++)
    assert_non_null(mmi_registry_insert_unique(r, node_new(k)));
  for (uint64_t k = 100; k < 1100; k++)
    assert_int_equal(mmi_registry_find(r, k)->key, k);

  /* Remove is idempotent: exactly one call unlinks. */
  assert_true(mmi_registry_remove(r, a));
  assert_false(mmi_registry_remove(r, a));
  assert_null(mmi_registry_find(r, 5));
  mmi_rcu_read_unlock();
  mmi_rcu_retire(a);

  dropped = 0;
  mmi_registry_destroy(r, drop_counting, NULL);
  mmi_rcu_barrier(); /* a's deferred free has run */
  assert_int_equal(dropped, 1000);
}

enum { RACERS = 8, KEYS = 2000 };
static mmi_registry *shared;
static int wins[RACERS];

static void *race_insert(void *arg) {
  int me = (int)(intptr_t)arg;
  for (uint64_t k = 0; k < KEYS; k++) {
    mmi_node *n = mmi_meta_alloc(sizeof *n);
    n->key = k;
    mmi_rcu_read_lock();
    if (mmi_registry_insert_unique(shared, n) == n)
      wins[me]++;
    else
      mmi_meta_free(n);
    mmi_rcu_read_unlock();
  }
  return NULL;
}

/* Racing inserts of the same keys: each key is won exactly once. */
static void test_racing_inserts(void **state) {
  (void)state;
  shared = mmi_registry_new(16);
  pthread_t t[RACERS];
  for (int i = 0; i < RACERS; i++)
    pthread_create(&t[i], NULL, race_insert, (void *)(intptr_t)i);
  for (int i = 0; i < RACERS; i++)
    pthread_join(t[i], NULL);
  int total = 0;
  for (int i = 0; i < RACERS; i++)
    total += wins[i];
  assert_int_equal(total, KEYS);
  dropped = 0;
  mmi_registry_destroy(shared, drop_counting, NULL);
  assert_int_equal(dropped, KEYS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_insert_find_remove),
      cmocka_unit_test(test_racing_inserts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

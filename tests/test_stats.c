/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_stats.c -- striped counters: exact sums, decrements, many threads.
 */
#include "mm_test.h"

#include <pthread.h>
#include <stdlib.h>

#include "stats.h"

static void test_add_sub(void **state) {
  (void)state;
  mmi_counters *cs = aligned_alloc(64, sizeof *cs);
  assert_non_null(cs);
  mmi_counters_init(cs);
  for (int c = 0; c < MMI_NCOUNTERS; c++)
    assert_int_equal(mmi_count_sum(cs, (mmi_counter)c), 0);
  mmi_count_add(cs, MMI_GRANTED, 5);
  mmi_count_sub(cs, MMI_GRANTED, 2);
  assert_int_equal(mmi_count_sum(cs, MMI_GRANTED), 3);
  assert_int_equal(mmi_count_sum(cs, MMI_DECLINED), 0);
  free(cs);
}

enum { THREADS = 24, PER_THREAD = 20000 };
static mmi_counters *shared;

static void *bump(void *arg) {
  (void)arg;
  for (int i = 0; i < PER_THREAD; i++) {
    mmi_count_add(shared, MMI_PINNED_BYTES, 4096);
    mmi_count_add(shared, MMI_GRANTED, 1);
    if (i % 2)
      mmi_count_sub(shared, MMI_PINNED_BYTES, 4096);
  }
  return NULL;
}

/* More threads than stripes' worth of cores: sums stay exact, and a
 * decrement counted on another thread's stripe still cancels. */
static void test_many_threads(void **state) {
  (void)state;
  shared = aligned_alloc(64, sizeof *shared);
  assert_non_null(shared);
  mmi_counters_init(shared);
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++)
    pthread_create(&t[i], NULL, bump, NULL);
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  assert_int_equal(mmi_count_sum(shared, MMI_GRANTED),
                   (uint64_t)THREADS * PER_THREAD);
  assert_int_equal(mmi_count_sum(shared, MMI_PINNED_BYTES),
                   (uint64_t)THREADS * (PER_THREAD / 2) * 4096);
  free(shared);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_add_sub),
      cmocka_unit_test(test_many_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

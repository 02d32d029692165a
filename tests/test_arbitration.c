/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_arbitration.c -- how execution memory is shared among consumers:
 * grants of "at least this, at most that", guarantees and caps, and
 * Spark's fair shares.
 */
#include <pthread.h>
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

/* ---- fair shares ---------------------------------------------------- */

static mm_t *create_fair(bool fair, int64_t overtake_ns) {
  mm_config cfg = {.total_bytes = TOTAL, .max_execution_request = TOTAL};
  cfg.overtake_limit_ns = overtake_ns;
  cfg.fair_share = fair;
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  return mm;
}

/* Past 1/N (the requester counted): declined. */
static void test_fair_share_declines(void **state) {
  (void)state;
  mm_t *mm = create_fair(true, NEVER_STARVES);
  mm_consumer *a = open_holding(mm, 1, 400 * KiB); /* alone: all of it */
  mm_consumer *b = open_holding(mm, 2, 0);
  assert_int_equal(mm_consumer_acquire(b, 600 * KiB, MM_NO_WAIT), MM_ENOMEM);
  assert_int_equal(mm_consumer_acquire(b, 500 * KiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_consumer_acquire(a, 200 * KiB, MM_NO_WAIT), MM_ENOMEM);
  assert_int_equal(mm_consumer_acquire(a, 100 * KiB, MM_NO_WAIT), MM_OK);
  /* By exec id too: its own consumer is one more. */
  assert_int_equal(mm_acquire_execution(mm, 9, 100 * KiB, MM_NO_WAIT),
                   MM_ENOMEM); /* 1/3 would do, but only 24 KiB is free */
  assert_int_equal(mm_consumer_release(b, 500 * KiB), MM_OK);
  assert_int_equal(mm_acquire_execution(mm, 9, 600 * KiB, MM_NO_WAIT),
                   MM_ENOMEM); /* past 1/2 */
  assert_int_equal(mm_acquire_execution(mm, 9, 500 * KiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_release_execution(mm, 9, 500 * KiB), MM_OK);
  mm_stats s = mm_test_stats(mm);
  mm_test_check_stats(&s, TOTAL / 2, 0);
  mm_consumer_close(a);
  mm_consumer_close(b);
  assert_int_equal(mm_test_stats(mm).execution_used_bytes, 0);
  mm_destroy(mm);
}

struct req {
  mm_consumer *c;
  size_t bytes;
  int64_t timeout;
  atomic_int st;
};

static void *req_run(void *arg) {
  struct req *r = arg;
  atomic_store(&r->st, (int)mm_consumer_acquire(r->c, r->bytes, r->timeout));
  return NULL;
}

static void start(pthread_t *t, struct req *r, mm_consumer *c, size_t bytes,
                  int64_t timeout) {
  r->c = c;
  r->bytes = bytes;
  r->timeout = timeout;
  atomic_store(&r->st, -1);
  assert_int_equal(pthread_create(t, NULL, req_run, r), 0);
}

/* Held past its share, and granted once its share grows (the other
 * consumer lets go of all it holds), not before. */
static void test_fair_share_holds_until_share_grows(void **state) {
  (void)state;
  mm_t *mm = create_fair(true, NEVER_STARVES);
  mm_consumer *a = open_holding(mm, 1, 300 * KiB);
  mm_consumer *b = open_holding(mm, 2, 0);
  assert_int_equal(mm_consumer_acquire(b, 500 * KiB, MM_NO_WAIT), MM_OK);
  pthread_t t;
  struct req r;
  start(&t, &r, a, 300 * KiB, 5000 * MS); /* to 600 KiB: past 1/2 */
  EVENTUALLY(mm_test_stats(mm).held_now == 1);
  /* Memory enough for it, but not its share. */
  assert_int_equal(mm_consumer_release(b, 400 * KiB), MM_OK);
  assert_int_equal(mm_test_stats(mm).held_now, 1);
  assert_int_equal(atomic_load(&r.st), -1);
  assert_int_equal(mm_consumer_release(b, 100 * KiB), MM_OK); /* N = 1 */
  pthread_join(t, NULL);
  assert_int_equal(atomic_load(&r.st), MM_OK);
  assert_int_equal(mm_consumer_held(a), 600 * KiB);
  mm_consumer_close(a);
  mm_consumer_close(b);
  mm_destroy(mm);
}

/* A consumer below 1/2N is granted ahead of all others, even past a
 * starved request's bar; without fair shares it waits behind the bar. */
static void test_fair_share_first_below_half(void **state) {
  (void)state;
  for (int fair = 1; fair >= 0; fair--) {
    mm_t *mm = create_fair(fair, STARVES_AT_ONCE);
    mm_consumer *a = open_holding(mm, 1, 600 * KiB);
    mm_consumer *d = open_holding(mm, 2, 0);
    mm_consumer *e = open_holding(mm, 3, 0);
    pthread_t t;
    struct req r;
    start(&t, &r, d, 500 * KiB, 5000 * MS); /* does not fit: 424 free */
    EVENTUALLY(mm_test_stats(mm).held_now == 1);
    sleep_ms(5); /* d is starved now, and bars younger requests */
    mm_status st = mm_consumer_acquire(e, 100 * KiB, 50 * MS);
    assert_int_equal(st, fair ? MM_OK : MM_ETIMEDOUT);
    if (st == MM_OK)
      assert_int_equal(mm_consumer_release(e, 100 * KiB), MM_OK);
    assert_int_equal(mm_consumer_release(a, 600 * KiB), MM_OK);
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&r.st), MM_OK);
    mm_consumer_close(a);
    mm_consumer_close(d);
    mm_consumer_close(e);
    assert_int_equal(mm_test_stats(mm).execution_used_bytes, 0);
    mm_destroy(mm);
  }
}

/* A guarantee and fair shares: a release that keeps every byte in the
 * consumer's reserve still lets a request held for its share through (N
 * dropped: every share grew). */
static void test_fair_share_with_a_guarantee(void **state) {
  (void)state;
  mm_t *mm = create_fair(true, NEVER_STARVES);
  mm_consumer *a = open_holding(mm, 1, 0);
  mm_consumer *b = open_holding(mm, 2, 0);
  assert_int_equal(mm_consumer_set_limits(a, 100 * KiB, 0), MM_OK);
  assert_int_equal(mm_consumer_acquire(a, 100 * KiB, MM_NO_WAIT), MM_OK);
  pthread_t t;
  struct req r;
  start(&t, &r, b, 600 * KiB, 5000 * MS); /* past 1/2 */
  EVENTUALLY(mm_test_stats(mm).held_now == 1);
  assert_int_equal(mm_consumer_release(a, 100 * KiB), MM_OK); /* N = 1 */
  pthread_join(t, NULL);
  assert_int_equal(atomic_load(&r.st), MM_OK);
  mm_consumer_close(a);
  mm_consumer_close(b);
  assert_int_equal(mm_test_stats(mm).execution_used_bytes, 0);
  mm_destroy(mm);
}

/* A range stays within its share. */
static void test_fair_share_range(void **state) {
  (void)state;
  mm_t *mm = create_fair(true, NEVER_STARVES);
  mm_consumer *a = open_holding(mm, 1, 64 * KiB);
  mm_consumer *b = open_holding(mm, 2, 0);
  size_t got = 0;
  assert_int_equal(
      mm_consumer_acquire_range(b, 4 * KiB, 900 * KiB, MM_NO_WAIT, &got),
      MM_OK);
  assert_int_equal(got, 512 * KiB); /* 1/2 of it all */
  assert_int_equal(
      mm_consumer_acquire_range(b, 4 * KiB, 900 * KiB, MM_NO_WAIT, &got),
      MM_ENOMEM);
  assert_int_equal(got, 0);
  mm_consumer_close(a);
  mm_consumer_close(b);
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
      cmocka_unit_test(test_fair_share_declines),
      cmocka_unit_test(test_fair_share_holds_until_share_grows),
      cmocka_unit_test(test_fair_share_first_below_half),
      cmocka_unit_test(test_fair_share_with_a_guarantee),
      cmocka_unit_test(test_fair_share_range),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

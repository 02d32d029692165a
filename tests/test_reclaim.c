/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_reclaim.c -- consumers that give memory back when asked: who is
 * asked and in which order, at most once per shortage, on which thread,
 * the bar that keeps reclaimed memory for the request that asked, two
 * requests that ask each other, and eviction before or after asking.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "mm_test.h"

#define TOTAL (1 * MiB)

static mm_t *create(bool before) {
  mm_config cfg = {.total_bytes = TOTAL, .max_execution_request = TOTAL};
  cfg.overtake_limit_ns = NEVER_STARVES; /* bars come from reclaim only */
  cfg.reclaim_before_evict = before;
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  return mm;
}

/* One consumer's callback and what happened to it. */
struct spiller {
  mm_consumer *c;
  char name;
  bool gives;        /* releases what it is asked for (else nothing) */
  size_t half_first; /* release this much, then run `between`, then more */
  void (*between)(struct spiller *);
  atomic_int calls;
  atomic_size_t last_wanted;
  pthread_t thread; /* where it last ran */
  char *order;      /* shared: names in the order asked */
  mm_t *mm;
  atomic_int between_status;
};

static size_t spill(void *ctx, mm_consumer *c, size_t wanted) {
  struct spiller *s = ctx;
  assert_ptr_equal(c, s->c);
  atomic_fetch_add(&s->calls, 1);
  atomic_store(&s->last_wanted, wanted);
  s->thread = pthread_self();
  if (s->order)
    strncat(s->order, &s->name, 1);
  if (!s->gives)
    return 0;
  size_t held = mm_consumer_held(c);
  size_t give = wanted < held ? wanted : held;
  if (s->half_first && s->half_first < give) {
    assert_int_equal(mm_consumer_release(c, s->half_first), MM_OK);
    s->between(s);
    assert_int_equal(mm_consumer_release(c, give - s->half_first), MM_OK);
  } else {
    assert_int_equal(mm_consumer_release(c, give), MM_OK);
  }
  return give;
}

static mm_consumer *holding(mm_t *mm, uint64_t id, size_t bytes,
                            struct spiller *s, char name, char *order) {
  mm_consumer *c;
  assert_int_equal(mm_consumer_open(mm, id, &c), MM_OK);
  if (bytes)
    assert_int_equal(mm_consumer_acquire(c, bytes, MM_NO_WAIT), MM_OK);
  if (s) {
    memset(s, 0, sizeof *s);
    s->c = c;
    s->name = name;
    s->gives = true;
    s->order = order;
    s->mm = mm;
    assert_int_equal(mm_consumer_set_reclaim(c, spill, s), MM_OK);
  }
  return c;
}

/* The largest holder is asked first, and no more than needed; the
 * requester is not asked; the callback runs on the requesting thread. */
static void test_order_and_grant(void **state) {
  (void)state;
  mm_t *mm = create(false);
  char order[8] = "";
  struct spiller sa, sb, sc;
  mm_consumer *a = holding(mm, 1, 100 * KiB, &sa, 'a', order);
  mm_consumer *b = holding(mm, 2, 300 * KiB, &sb, 'b', order);
  mm_consumer *c = holding(mm, 3, 500 * KiB, &sc, 'c', order);
  /* Free: 124 KiB; a wants 300 KiB. */
  assert_int_equal(mm_consumer_acquire(a, 300 * KiB, 5000 * MS), MM_OK);
  assert_string_equal(order, "c");
  assert_true(pthread_equal(sc.thread, pthread_self()));
  size_t wanted = atomic_load(&sc.last_wanted);
  assert_true(wanted >= 176 * KiB && wanted <= 300 * KiB);
  assert_int_equal(mm_consumer_held(a), 400 * KiB);
  assert_int_equal(mm_consumer_held(c), 500 * KiB - wanted);
  mm_stats st = mm_test_stats(mm);
  assert_int_equal(st.reclaims, 1);
  assert_int_equal(st.reclaimed_bytes, wanted);
  mm_test_check_stats(&st, TOTAL / 2, 0);
  mm_consumer_close(a);
  mm_consumer_close(b);
  mm_consumer_close(c);
  mm_destroy(mm);
}

/* Consumers that give nothing are asked once each, and the request times
 * out; a consumer holding nothing is not asked at all. */
static void test_asked_once(void **state) {
  (void)state;
  mm_t *mm = create(false);
  char order[8] = "";
  struct spiller sa, sb, sc, sd;
  mm_consumer *a = holding(mm, 1, 0, &sa, 'a', order);
  mm_consumer *b = holding(mm, 2, 400 * KiB, &sb, 'b', order);
  mm_consumer *c = holding(mm, 3, 500 * KiB, &sc, 'c', order);
  mm_consumer *d = holding(mm, 4, 0, &sd, 'd', order);
  sb.gives = sc.gives = false;
  assert_int_equal(mm_consumer_acquire(a, 300 * KiB, 50 * MS), MM_ETIMEDOUT);
  assert_string_equal(order, "cb");
  assert_int_equal(atomic_load(&sb.calls), 1);
  assert_int_equal(atomic_load(&sc.calls), 1);
  assert_int_equal(atomic_load(&sd.calls), 0);
  assert_int_equal(mm_test_stats(mm).reclaims, 2);
  assert_int_equal(mm_test_stats(mm).reclaimed_bytes, 0);
  /* A second shortage asks them again, once. */
  assert_int_equal(mm_consumer_acquire(a, 300 * KiB, 20 * MS), MM_ETIMEDOUT);
  assert_string_equal(order, "cbcb");
  /* MM_NO_WAIT asks nobody. */
  assert_int_equal(mm_consumer_acquire(a, 300 * KiB, MM_NO_WAIT), MM_ENOMEM);
  assert_string_equal(order, "cbcb");
  /* Turned off: not asked. */
  assert_int_equal(mm_consumer_set_reclaim(c, NULL, NULL), MM_OK);
  assert_int_equal(mm_consumer_acquire(a, 300 * KiB, 20 * MS), MM_ETIMEDOUT);
  assert_string_equal(order, "cbcbb");
  mm_consumer_close(a);
  mm_consumer_close(b);
  mm_consumer_close(c);
  mm_consumer_close(d);
  mm_destroy(mm);
}

/* The requester is asked only if it opted in. */
static void test_self(void **state) {
  (void)state;
  mm_t *mm = create(false);
  struct spiller sa;
  mm_consumer *a = holding(mm, 1, 900 * KiB, &sa, 'a', NULL);
  assert_int_equal(mm_consumer_acquire(a, 300 * KiB, 20 * MS), MM_ETIMEDOUT);
  assert_int_equal(atomic_load(&sa.calls), 0);
  assert_int_equal(mm_consumer_set_self_reclaim(a, true), MM_OK);
  assert_int_equal(mm_consumer_acquire(a, 300 * KiB, 5000 * MS), MM_OK);
  assert_int_equal(atomic_load(&sa.calls), 1);
  assert_true(mm_consumer_held(a) <= 1024 * KiB);
  assert_int_equal(mm_consumer_set_self_reclaim(NULL, true), MM_EINVAL);
  assert_int_equal(mm_consumer_set_reclaim(NULL, spill, &sa), MM_EINVAL);
  mm_consumer_close(a);
  mm_destroy(mm);
}

/* An asynchronous request's consumers are asked on the service thread. */
static atomic_int async_outcome = -1;
static void on_grant(void *ctx, mm_status st) {
  (void)ctx;
  atomic_store(&async_outcome, (int)st);
}

static void test_async(void **state) {
  (void)state;
  mm_t *mm = create(false);
  struct spiller sb;
  mm_consumer *b = holding(mm, 2, 900 * KiB, &sb, 'b', NULL);
  uint64_t ticket;
  atomic_store(&async_outcome, -1);
  mm_status st = mm_acquire_async(mm, MM_POOL_EXECUTION, 9, 300 * KiB,
                                  5000 * MS, on_grant, NULL, &ticket);
  assert_int_equal(st, MM_EINPROGRESS);
  EVENTUALLY(atomic_load(&async_outcome) == MM_OK);
  assert_int_equal(atomic_load(&sb.calls), 1);
  assert_false(pthread_equal(sb.thread, pthread_self()));
  assert_int_equal(mm_execution_held(mm, 9), 300 * KiB);
  mm_consumer_close(b);
  assert_int_equal(mm_release_execution(mm, 9, 300 * KiB), MM_OK);
  mm_destroy(mm);
}

/* While a request waits for what its reclaim frees, younger requests do
 * not take it: inside the callback, with part of it released, a small
 * request is declined though it would fit. */
static void try_small(struct spiller *s) {
  atomic_store(&s->between_status,
               (int)mm_acquire_execution(s->mm, 77, 16 * KiB, MM_NO_WAIT));
}

static void test_reclaimed_memory_is_the_askers(void **state) {
  (void)state;
  mm_t *mm = create(false);
  struct spiller sb;
  mm_consumer *a = holding(mm, 1, 0, NULL, 'a', NULL);
  mm_consumer *b = holding(mm, 2, 900 * KiB, &sb, 'b', NULL);
  sb.half_first = 400 * KiB;
  sb.between = try_small;
  atomic_store(&sb.between_status, -1);
  assert_int_equal(mm_consumer_acquire(a, 800 * KiB, 5000 * MS), MM_OK);
  assert_int_equal(atomic_load(&sb.between_status), MM_ENOMEM);
  /* Once it is granted, and lets go, small requests go through again. */
  assert_int_equal(mm_consumer_release(a, 800 * KiB), MM_OK);
  assert_int_equal(mm_acquire_execution(mm, 77, 16 * KiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_release_execution(mm, 77, 16 * KiB), MM_OK);
  mm_consumer_close(a);
  mm_consumer_close(b);
  mm_destroy(mm);
}

/* Two requests whose consumers each give memory for the other's: each
 * consumer is asked at most once, and both requests end. */
struct both {
  mm_consumer *c;
  atomic_int st;
};

static void *request(void *arg) {
  struct both *r = arg;
  atomic_store(&r->st, (int)mm_consumer_acquire(r->c, 400 * KiB, 2000 * MS));
  return NULL;
}

static size_t give_half(void *ctx, mm_consumer *c, size_t wanted) {
  (void)wanted;
  atomic_fetch_add((atomic_int *)ctx, 1);
  size_t half = mm_consumer_held(c) / 2;
  if (half)
    assert_int_equal(mm_consumer_release(c, half), MM_OK);
  return half;
}

static void test_two_ask_each_other(void **state) {
  (void)state;
  for (int round = 0; round < 20; round++) {
    mm_t *mm = create(false);
    atomic_int calls[2] = {0, 0};
    struct both r[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
      assert_int_equal(mm_consumer_open(mm, (uint64_t)i + 1, &r[i].c), MM_OK);
      assert_int_equal(mm_consumer_acquire(r[i].c, 400 * KiB, MM_NO_WAIT),
                       MM_OK);
      assert_int_equal(mm_consumer_set_reclaim(r[i].c, give_half, &calls[i]),
                       MM_OK);
      atomic_store(&r[i].st, -1);
    }
    for (int i = 0; i < 2; i++)
      assert_int_equal(pthread_create(&t[i], NULL, request, &r[i]), 0);
    for (int i = 0; i < 2; i++)
      pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
      int st = atomic_load(&r[i].st);
      assert_true(st == MM_OK || st == MM_ETIMEDOUT);
      /* Asked only by the other's request, once. */
      assert_true(atomic_load(&calls[i]) <= 1);
    }
    mm_stats s = mm_test_stats(mm);
    mm_test_check_stats(&s, TOTAL / 2, 0);
    assert_int_equal(s.held_now, 0);
    for (int i = 0; i < 2; i++)
      mm_consumer_close(r[i].c);
    mm_destroy(mm);
  }
}

/* Unpinned pages are evicted before consumers are asked, unless
 * reclaim_before_evict. */
static void test_evict_first_or_last(void **state) {
  (void)state;
  for (int before = 0; before < 2; before++) {
    mm_t *mm = create(before);
    for (uint64_t p = 1; p <= 64; p++) /* 256 KiB, born unpinned */
      assert_int_equal(mm_acquire_storage(mm, p, 4 * KiB, MM_NO_WAIT), MM_OK);
    struct spiller sb;
    mm_consumer *a = holding(mm, 1, 0, NULL, 'a', NULL);
    mm_consumer *b = holding(mm, 2, 700 * KiB, &sb, 'b', NULL);
    /* Free: 68 KiB; a wants 200 KiB. */
    assert_int_equal(mm_consumer_acquire(a, 200 * KiB, 5000 * MS), MM_OK);
    mm_stats s = mm_test_stats(mm);
    if (before) {
      assert_int_equal(atomic_load(&sb.calls), 1);
      assert_int_equal(s.evictions, 0);
    } else {
      assert_int_equal(atomic_load(&sb.calls), 0);
      assert_true(s.evictions > 0);
    }
    mm_test_check_stats(&s, TOTAL / 2, 0);
    mm_consumer_close(a);
    mm_consumer_close(b);
    mm_destroy(mm);
  }
}

/* A callback may change its own callback and release everything; a
 * closed consumer cannot get one. */
static size_t change_self(void *ctx, mm_consumer *c, size_t wanted) {
  (void)wanted;
  atomic_fetch_add((atomic_int *)ctx, 1);
  assert_int_equal(mm_consumer_set_reclaim(c, NULL, NULL), MM_OK);
  size_t held = mm_consumer_held(c);
  assert_int_equal(mm_consumer_release(c, held), MM_OK);
  return held;
}

static void test_callback_changes_itself(void **state) {
  (void)state;
  mm_t *mm = create(false);
  atomic_int calls = 0;
  mm_consumer *a = holding(mm, 1, 0, NULL, 'a', NULL);
  mm_consumer *b = holding(mm, 2, 900 * KiB, NULL, 'b', NULL);
  assert_int_equal(mm_consumer_set_reclaim(b, change_self, &calls), MM_OK);
  assert_int_equal(mm_consumer_acquire(a, 300 * KiB, 5000 * MS), MM_OK);
  assert_int_equal(atomic_load(&calls), 1);
  assert_int_equal(mm_consumer_held(b), 0);
  assert_int_equal(mm_consumer_acquire(b, 600 * KiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_consumer_acquire(a, 300 * KiB, 20 * MS), MM_ETIMEDOUT);
  assert_int_equal(atomic_load(&calls), 1); /* turned off by itself */
  assert_int_equal(mm_release_all_execution(mm, 2), 600 * KiB);
  assert_int_equal(mm_consumer_set_reclaim(b, spill, NULL), MM_EINVAL);
  mm_consumer_close(a);
  mm_consumer_close(b);
  mm_destroy(mm);
}

/* Two callbacks running at once, each changing the other's consumer: from
 * inside a callback nothing waits for another consumer's run, so the
 * change is refused (MM_EBUSY) instead of the two waiting for each other
 * for ever. */
struct crossed {
  mm_consumer *self, *other;
  atomic_int *running; /* [2]: set while each callback runs */
  int me;
  atomic_int changed;
};

static size_t cross(void *ctx, mm_consumer *c, size_t wanted) {
  struct crossed *x = ctx;
  (void)wanted;
  atomic_store(&x->running[x->me], 1);
  int64_t until = now_ns() + 5000 * MS; /* the other begins: bounded wait */
  while (!atomic_load(&x->running[1 - x->me]) && now_ns() < until)
    sleep_ms(1);
  assert_true(atomic_load(&x->running[1 - x->me]));
  atomic_store(&x->changed, (int)mm_consumer_set_reclaim(x->other, cross,
                                                         x + 1 - 2 * x->me));
  /* Both stay in until both have tried. */
  atomic_fetch_add(&x->running[2], 1);
  until = now_ns() + 5000 * MS;
  while (atomic_load(&x->running[2]) < 2 && now_ns() < until)
    sleep_ms(1);
  assert_int_equal(mm_consumer_release(c, 200 * KiB), MM_OK);
  return 200 * KiB; /* enough for both requests between the two */
}

struct want {
  mm_consumer *c;
  atomic_int st;
};

static void *want_run(void *arg) {
  struct want *w = arg;
  atomic_store(&w->st, (int)mm_consumer_acquire(w->c, 300 * KiB, 5000 * MS));
  return NULL;
}

static void test_callbacks_change_each_other(void **state) {
  (void)state;
  mm_t *mm = create(false);
  atomic_int running[3] = {0, 0, 0};
  struct crossed x[2];
  mm_consumer *a = holding(mm, 1, 400 * KiB, NULL, 'a', NULL);
  mm_consumer *b = holding(mm, 2, 400 * KiB, NULL, 'b', NULL);
  x[0] = (struct crossed){a, b, running, 0, -1};
  x[1] = (struct crossed){b, a, running, 1, -1};
  assert_int_equal(mm_consumer_set_reclaim(a, cross, &x[0]), MM_OK);
  assert_int_equal(mm_consumer_set_reclaim(b, cross, &x[1]), MM_OK);
  struct want w[2];
  pthread_t t[2];
  for (int i = 0; i < 2; i++) { /* free: 224 KiB; each wants 300 KiB */
    assert_int_equal(mm_consumer_open(mm, 10 + (uint64_t)i, &w[i].c), MM_OK);
    atomic_store(&w[i].st, -1);
    assert_int_equal(pthread_create(&t[i], NULL, want_run, &w[i]), 0);
  }
  for (int i = 0; i < 2; i++)
    pthread_join(t[i], NULL);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(atomic_load(&x[i].changed), MM_EBUSY);
    assert_int_equal(atomic_load(&w[i].st), MM_OK);
  }
  for (int i = 0; i < 2; i++)
    mm_consumer_close(w[i].c);
  mm_consumer_close(a);
  mm_consumer_close(b);
  mm_destroy(mm);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_order_and_grant),
      cmocka_unit_test(test_asked_once),
      cmocka_unit_test(test_self),
      cmocka_unit_test(test_async),
      cmocka_unit_test(test_reclaimed_memory_is_the_askers),
      cmocka_unit_test(test_two_ask_each_other),
      cmocka_unit_test(test_evict_first_or_last),
      cmocka_unit_test(test_callback_changes_itself),
      cmocka_unit_test(test_callbacks_change_each_other),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

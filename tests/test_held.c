/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_held.c -- held requests: blocking waits with deadlines,
 * asynchronous grants, cancellation, order and starvation, destroy with
 * waiters, and many waiters and releasers at once.
 */
#include "mm_test.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A manager whose whole budget is used: 1 MiB, execution 512 KiB used by
 * exec id 1, storage 512 KiB used by pages 1..128, pinned (nothing can be
 * evicted: only releases make room). */
static mm_t *full_manager_with(int64_t overtake_ns, mm_evict_fn on_evict) {
  mm_config cfg = {.total_bytes = 1 * MiB,
                   .overtake_limit_ns = overtake_ns,
                   .on_evict = on_evict};
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  assert_int_equal(mm_acquire_execution(mm, 1, 512 * KiB, MM_NO_WAIT), MM_OK);
  for (uint64_t p = 1; p <= 128; p++) {
    assert_int_equal(mm_acquire_storage(mm, p, 4096, MM_NO_WAIT), MM_OK);
    assert_int_equal(mm_pin_storage(mm, p, NULL), MM_OK);
  }
  return mm;
}

static mm_t *full_manager(int64_t overtake_ns) {
  return full_manager_with(overtake_ns, NULL);
}

/* Unpin and release one of full_manager's pages. */
static mm_status drop_page(mm_t *mm, uint64_t p) {
  mm_status st = mm_unpin_storage(mm, p);
  return st == MM_OK ? mm_release_storage(mm, p) : st;
}

/* ---- an asynchronous callback that records what it saw ----------------- */

typedef struct outcome {
  atomic_int calls;
  atomic_int status;
  pthread_t thread;
} outcome;

static void record(void *ctx, mm_status st) {
  outcome *o = ctx;
  o->thread = pthread_self();
  atomic_store(&o->status, (int)st);
  atomic_fetch_add(&o->calls, 1);
}

/* ---- a blocking acquire on another thread ------------------------------ */

typedef struct blocked_call {
  mm_t *mm;
  mm_pool pool;
  uint64_t id;
  size_t bytes;
  int64_t timeout;
  atomic_int done;
  mm_status st;
  pthread_t t;
} blocked_call;

static void *blocked_main(void *arg) {
  blocked_call *c = arg;
  c->st = c->pool == MM_POOL_EXECUTION
              ? mm_acquire_execution(c->mm, c->id, c->bytes, c->timeout)
              : mm_acquire_storage(c->mm, c->id, c->bytes, c->timeout);
  atomic_store(&c->done, 1);
  return NULL;
}

static void start_blocked(blocked_call *c, mm_t *mm, mm_pool pool, uint64_t id,
                          size_t bytes, int64_t timeout) {
  c->mm = mm;
  c->pool = pool;
  c->id = id;
  c->bytes = bytes;
  c->timeout = timeout;
  atomic_store(&c->done, 0);
  pthread_create(&c->t, NULL, blocked_main, c);
}

/* ---- tests ------------------------------------------------------------- */

static void test_waiter_granted_by_release(void **state) {
  (void)state;
  mm_t *mm = full_manager(0);
  blocked_call c;
  start_blocked(&c, mm, MM_POOL_EXECUTION, 2, 64 * KiB, MM_WAIT_FOREVER);
  EVENTUALLY(mm_test_stats(mm).held_now == 1);
  sleep_ms(20);
  assert_int_equal(atomic_load(&c.done), 0); /* still held */
  assert_int_equal(mm_release_execution(mm, 1, 64 * KiB), MM_OK);
  pthread_join(c.t, NULL);
  assert_int_equal(c.st, MM_OK);
  assert_int_equal(mm_execution_held(mm, 2), 64 * KiB);
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.held, 1);
  assert_int_equal(s.held_now, 0);
  assert_int_equal(s.execution_used_bytes, 512 * KiB);
  mm_destroy(mm);
}

static void test_deadline_while_full(void **state) {
  (void)state;
  mm_t *mm = full_manager(0);
  int64_t t0 = now_ns();
  assert_int_equal(mm_acquire_execution(mm, 2, 4096, 50 * MS), MM_ETIMEDOUT);
  assert_true(now_ns() - t0 >= 50 * MS);
  t0 = now_ns();
  assert_int_equal(mm_acquire_storage(mm, 500, 4096, 30 * MS), MM_ETIMEDOUT);
  assert_true(now_ns() - t0 >= 30 * MS);
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.timed_out, 2);
  assert_int_equal(s.held, 2);
  assert_int_equal(s.held_now, 0);
  assert_int_equal(mm_execution_held(mm, 2), 0);
  assert_int_equal(s.execution_used_bytes + s.storage_used_bytes, 1 * MiB);
  /* the reserved page id is free again */
  assert_int_equal(mm_release_storage(mm, 500), MM_ENOENT);
  assert_int_equal(drop_page(mm, 1), MM_OK);
  assert_int_equal(mm_acquire_storage(mm, 500, 4096, MM_NO_WAIT), MM_OK);
  mm_destroy(mm);
}

static void test_async_granted_on_service_thread(void **state) {
  (void)state;
  mm_t *mm = full_manager(0);
  outcome o = {0};
  uint64_t ticket = 0;
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 7, 4096,
                                    MM_WAIT_FOREVER, record, &o, &ticket),
                   MM_EINPROGRESS);
  assert_true(ticket != 0);
  sleep_ms(10);
  assert_int_equal(atomic_load(&o.calls), 0);
  assert_int_equal(mm_release_execution(mm, 1, 4096), MM_OK);
  EVENTUALLY(atomic_load(&o.calls) == 1);
  assert_int_equal(atomic_load(&o.status), MM_OK);
  assert_false(pthread_equal(o.thread, pthread_self()));
  assert_int_equal(mm_execution_held(mm, 7), 4096);   /* booked before cb */
  assert_int_equal(mm_cancel(mm, ticket), MM_ENOENT); /* finished */
  assert_int_equal(mm_cancel(mm, 123456), MM_ENOENT); /* unknown */
  sleep_ms(10);
  assert_int_equal(atomic_load(&o.calls), 1);

  /* Granted at once: MM_OK, ticket 0, no callback. */
  outcome o2 = {0};
  assert_int_equal(drop_page(mm, 1), MM_OK);
  assert_int_equal(mm_acquire_async(mm, MM_POOL_STORAGE, 900, 4096,
                                    MM_WAIT_FOREVER, record, &o2, &ticket),
                   MM_OK);
  assert_int_equal(ticket, 0);
  assert_int_equal(mm_pin_storage(mm, 900, NULL), MM_OK);
  assert_int_equal(mm_unpin_storage(mm, 900), MM_OK);
  /* Bad arguments, and a decline, never call back. */
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 7, 4096, MM_NO_WAIT,
                                    NULL, &o2, &ticket),
                   MM_EINVAL);
  assert_int_equal(mm_acquire_async(mm, (mm_pool)2, 7, 4096, MM_NO_WAIT, record,
                                    &o2, &ticket),
                   MM_EINVAL);
  assert_int_equal(mm_acquire_async(NULL, MM_POOL_EXECUTION, 7, 4096,
                                    MM_NO_WAIT, record, &o2, &ticket),
                   MM_EINVAL);
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 7, 0, MM_NO_WAIT,
                                    record, &o2, &ticket),
                   MM_EINVAL);
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 7, 1 * MiB,
                                    MM_NO_WAIT, record, &o2, &ticket),
                   MM_ENOMEM);
  assert_int_equal(mm_acquire_async(mm, MM_POOL_STORAGE, 900, 4096,
                                    MM_WAIT_FOREVER, record, &o2, NULL),
                   MM_EEXIST);
  assert_int_equal(mm_cancel(NULL, 1), MM_EINVAL);
  sleep_ms(10);
  assert_int_equal(atomic_load(&o2.calls), 0);
  mm_destroy(mm);
}

static void test_async_deadline_without_releases(void **state) {
  (void)state;
  mm_t *mm = full_manager(0);
  /* A page id is reserved while its request is held (one with no
   * deadline, so that no slowness of this machine ends it early). */
  outcome forever = {0};
  uint64_t ticket;
  assert_int_equal(mm_acquire_async(mm, MM_POOL_STORAGE, 601, 4096,
                                    MM_WAIT_FOREVER, record, &forever, &ticket),
                   MM_EINPROGRESS);
  assert_int_equal(mm_acquire_storage(mm, 601, 4096, MM_NO_WAIT), MM_EEXIST);
  assert_int_equal(mm_pin_storage(mm, 601, NULL), MM_ENOENT);
  assert_int_equal(mm_release_storage(mm, 601), MM_ENOENT);
  assert_int_equal(mm_cancel(mm, ticket), MM_OK);
  EVENTUALLY(atomic_load(&forever.calls) == 1);

  outcome o = {0};
  int64_t t0 = now_ns();
  assert_int_equal(mm_acquire_async(mm, MM_POOL_STORAGE, 600, 4096, 30 * MS,
                                    record, &o, NULL),
                   MM_EINPROGRESS);
  EVENTUALLY(atomic_load(&o.calls) == 1);
  assert_true(now_ns() - t0 >= 30 * MS);
  assert_int_equal(atomic_load(&o.status), MM_ETIMEDOUT);
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.timed_out, 1);
  assert_int_equal(s.cancelled, 1);
  assert_int_equal(s.held_now, 0);
  assert_int_equal(s.storage_pages, 128);
  /* Neither id is reserved now: a new request for either is declined
   * for want of room, not refused as a duplicate. */
  assert_int_equal(mm_acquire_storage(mm, 600, 4096, MM_NO_WAIT), MM_ENOMEM);
  assert_int_equal(mm_acquire_storage(mm, 601, 4096, MM_NO_WAIT), MM_ENOMEM);
  mm_destroy(mm);
}

static void test_cancel_before_grant(void **state) {
  (void)state;
  mm_t *mm = full_manager(0);
  outcome o = {0};
  uint64_t ticket;
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 8, 4096,
                                    MM_WAIT_FOREVER, record, &o, &ticket),
                   MM_EINPROGRESS);
  assert_int_equal(mm_cancel(mm, ticket), MM_OK);
  assert_int_equal(mm_cancel(mm, ticket), MM_ENOENT);
  EVENTUALLY(atomic_load(&o.calls) == 1);
  assert_int_equal(atomic_load(&o.status), MM_ECANCELED);
  /* A later release does not grant the cancelled request. */
  assert_int_equal(mm_release_execution(mm, 1, 4096), MM_OK);
  sleep_ms(10);
  assert_int_equal(atomic_load(&o.calls), 1);
  assert_int_equal(mm_execution_held(mm, 8), 0);
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.cancelled, 1);
  assert_int_equal(s.held_now, 0);
  mm_destroy(mm);
}

typedef struct race {
  mm_t *mm;
  uint64_t ticket;
  mm_status cancel_st;
  pthread_barrier_t go;
} race;

static void *race_release(void *arg) {
  race *r = arg;
  pthread_barrier_wait(&r->go);
  mm_release_execution(r->mm, 1, 4096);
  return NULL;
}

static void *race_cancel(void *arg) {
  race *r = arg;
  pthread_barrier_wait(&r->go);
  r->cancel_st = mm_cancel(r->mm, r->ticket);
  return NULL;
}

/* A cancel racing with the grant: exactly one outcome, and the books
 * agree with it. */
static void test_cancel_racing_grant(void **state) {
  (void)state;
  int granted = 0, cancelled = 0;
  for (int round = 0; round < 300; round++) {
    mm_t *mm = full_manager(0);
    outcome o = {0};
    race r = {.mm = mm};
    pthread_barrier_init(&r.go, NULL, 2);
    assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 9, 4096,
                                      MM_WAIT_FOREVER, record, &o, &r.ticket),
                     MM_EINPROGRESS);
    pthread_t a, b;
    pthread_create(&a, NULL, race_release, &r);
    pthread_create(&b, NULL, race_cancel, &r);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    EVENTUALLY(atomic_load(&o.calls) == 1);
    if (r.cancel_st == MM_OK) {
      assert_int_equal(atomic_load(&o.status), MM_ECANCELED);
      assert_int_equal(mm_execution_held(mm, 9), 0);
      cancelled++;
    } else {
      assert_int_equal(r.cancel_st, MM_ENOENT);
      assert_int_equal(atomic_load(&o.status), MM_OK);
      assert_int_equal(mm_execution_held(mm, 9), 4096);
      granted++;
    }
    mm_destroy(mm);
    assert_int_equal(atomic_load(&o.calls), 1); /* never both */
    pthread_barrier_destroy(&r.go);
  }
  printf("cancel-vs-grant: %d granted, %d cancelled\n", granted, cancelled);
}

/* A full manager with 64 KiB free in @free_in's pool, and an execution
 * request of exec id 10 for 128 KiB held. */
static mm_t *large_held(int64_t overtake_ns, mm_pool free_in, outcome *large) {
  mm_t *mm = full_manager(overtake_ns);
  if (free_in == MM_POOL_EXECUTION)
    assert_int_equal(mm_release_execution(mm, 1, 64 * KiB), MM_OK);
  else
    for (uint64_t p = 1; p <= 16; p++)
      assert_int_equal(drop_page(mm, p), MM_OK);
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 10, 128 * KiB,
                                    MM_WAIT_FOREVER, record, large, NULL),
                   MM_EINPROGRESS);
  return mm;
}

static void test_small_overtakes_large_within_limit(void **state) {
  (void)state;
  outcome large = {0}, small = {0};
  mm_t *mm = large_held(NEVER_STARVES, MM_POOL_EXECUTION, &large);
  /* A younger, smaller request that fits passes the large one. */
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 11, 16 * KiB,
                                    MM_WAIT_FOREVER, record, &small, NULL),
                   MM_EINPROGRESS);
  EVENTUALLY(atomic_load(&small.calls) == 1);
  assert_int_equal(atomic_load(&small.status), MM_OK);
  /* NO_WAIT requests may pass it too, while it is young. */
  assert_int_equal(mm_acquire_execution(mm, 12, 16 * KiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(atomic_load(&large.calls), 0);
  /* Enough released: the large one is granted. */
  assert_int_equal(mm_release_execution(mm, 1, 100 * KiB), MM_OK);
  EVENTUALLY(atomic_load(&large.calls) == 1);
  assert_int_equal(atomic_load(&large.status), MM_OK);
  mm_destroy(mm);
}

static void test_starved_large_bars_younger(void **state) {
  (void)state;
  outcome large = {0}, late = {0};
  mm_t *mm = large_held(STARVES_AT_ONCE, MM_POOL_EXECUTION, &large);
  /* Past the limit the large one is starved: nothing younger goes first,
   * though 64 KiB are free. */
  sleep_ms(20);
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 13, 4096,
                                    MM_WAIT_FOREVER, record, &late, NULL),
                   MM_EINPROGRESS);
  assert_int_equal(mm_acquire_execution(mm, 14, 4096, MM_NO_WAIT), MM_ENOMEM);
  sleep_ms(20);
  assert_int_equal(atomic_load(&late.calls), 0);
  assert_int_equal(atomic_load(&large.calls), 0);
  /* ... and when enough is released, both are served. */
  assert_int_equal(mm_release_execution(mm, 1, 100 * KiB), MM_OK);
  EVENTUALLY(atomic_load(&large.calls) == 1 && atomic_load(&late.calls) == 1);
  assert_int_equal(atomic_load(&large.status), MM_OK);
  assert_int_equal(atomic_load(&late.status), MM_OK);
  assert_int_equal(mm_execution_held(mm, 10), 128 * KiB);
  mm_destroy(mm);
}

static void test_arrivals_queue_behind_held(void **state) {
  (void)state;
  mm_t *mm = full_manager(0);
  blocked_call first, second;
  start_blocked(&first, mm, MM_POOL_EXECUTION, 20, 8 * KiB, MM_WAIT_FOREVER);
  EVENTUALLY(mm_test_stats(mm).held_now == 1);
  start_blocked(&second, mm, MM_POOL_EXECUTION, 21, 8 * KiB, MM_WAIT_FOREVER);
  EVENTUALLY(mm_test_stats(mm).held_now == 2);
  /* Room for one: the older waiter gets it. */
  assert_int_equal(mm_release_execution(mm, 1, 8 * KiB), MM_OK);
  pthread_join(first.t, NULL);
  assert_int_equal(first.st, MM_OK);
  sleep_ms(10);
  assert_int_equal(atomic_load(&second.done), 0);
  /* A new arrival that may wait queues behind the held one, even though
   * it would fit once memory is freed. */
  outcome o = {0};
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 22, 8 * KiB,
                                    MM_WAIT_FOREVER, record, &o, NULL),
                   MM_EINPROGRESS);
  assert_int_equal(mm_release_execution(mm, 1, 8 * KiB), MM_OK);
  pthread_join(second.t, NULL);
  assert_int_equal(second.st, MM_OK);
  sleep_ms(10);
  assert_int_equal(atomic_load(&o.calls), 0);
  assert_int_equal(mm_release_execution(mm, 1, 8 * KiB), MM_OK);
  EVENTUALLY(atomic_load(&o.calls) == 1);
  mm_destroy(mm);
}

static void test_storage_release_grants_execution(void **state) {
  (void)state;
  mm_t *mm = full_manager(0);
  blocked_call c;
  /* Execution's own pool is full: this needs storage's capacity. */
  start_blocked(&c, mm, MM_POOL_EXECUTION, 30, 8 * KiB, MM_WAIT_FOREVER);
  EVENTUALLY(mm_test_stats(mm).held_now == 1);
  assert_int_equal(drop_page(mm, 1), MM_OK); /* 4 KiB free: not enough */
  sleep_ms(10);
  assert_int_equal(atomic_load(&c.done), 0);
  /* Unpinning page 2 makes it evictable: the held request evicts it. */
  assert_int_equal(mm_unpin_storage(mm, 2), MM_OK);
  pthread_join(c.t, NULL);
  assert_int_equal(c.st, MM_OK);
  assert_int_equal(mm_release_storage(mm, 2), MM_ENOENT); /* evicted */
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.evictions, 1);
  assert_int_equal(s.execution_borrowed_bytes, 8 * KiB);
  /* And an execution release satisfies a held storage request. */
  blocked_call p;
  start_blocked(&p, mm, MM_POOL_STORAGE, 700, 4096, MM_WAIT_FOREVER);
  EVENTUALLY(mm_test_stats(mm).held_now == 1);
  assert_int_equal(mm_release_execution(mm, 30, 8 * KiB), MM_OK);
  pthread_join(p.t, NULL);
  assert_int_equal(p.st, MM_OK);
  assert_int_equal(mm_pin_storage(mm, 700, NULL), MM_OK);
  assert_int_equal(mm_unpin_storage(mm, 700), MM_OK);
  mm_destroy(mm);
}

static atomic_int slow_callbacks_done;
static void slow_record(void *ctx, mm_status st) {
  sleep_ms(5);
  record(ctx, st);
  atomic_fetch_add(&slow_callbacks_done, 1);
}

static void test_destroy_with_waiters(void **state) {
  (void)state;
  mm_t *mm = full_manager(0);
  blocked_call c[3];
  for (int i = 0; i < 3; i++)
    start_blocked(&c[i], mm, i ? MM_POOL_EXECUTION : MM_POOL_STORAGE,
                  400 + (uint64_t)i, 8 * KiB, MM_WAIT_FOREVER);
  outcome o[3] = {{0}, {0}, {0}};
  atomic_store(&slow_callbacks_done, 0);
  for (int i = 0; i < 3; i++)
    assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 50 + (uint64_t)i,
                                      8 * KiB, MM_WAIT_FOREVER, slow_record,
                                      &o[i], NULL),
                     MM_EINPROGRESS);
  EVENTUALLY(mm_test_stats(mm).held_now == 6);
  mm_destroy(mm);
  /* Every callback finished before mm_destroy returned, exactly once. */
  assert_int_equal(atomic_load(&slow_callbacks_done), 3);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(atomic_load(&o[i].calls), 1);
    assert_int_equal(atomic_load(&o[i].status), MM_ECANCELED);
    pthread_join(c[i].t, NULL);
    assert_int_equal(c[i].st, MM_ECANCELED);
  }
}

/* A starved execution request bars storage arrivals too: it may borrow
 * storage's free capacity, which they would take. */
static void test_starved_execution_bars_storage(void **state) {
  (void)state;
  outcome young = {0};
  mm_t *mm = large_held(NEVER_STARVES, MM_POOL_STORAGE, &young);
  /* Young: a storage page may still take storage's free capacity. */
  assert_int_equal(mm_acquire_storage(mm, 1, 4096, MM_NO_WAIT), MM_OK);
  mm_destroy(mm);

  outcome big = {0};
  mm = large_held(STARVES_AT_ONCE, MM_POOL_STORAGE, &big);
  sleep_ms(20);
  /* Starved: storage arrivals wait behind it, in either form. */
  assert_int_equal(mm_acquire_storage(mm, 2, 4096, MM_NO_WAIT), MM_ENOMEM);
  outcome page = {0};
  assert_int_equal(mm_acquire_async(mm, MM_POOL_STORAGE, 3, 4096,
                                    MM_WAIT_FOREVER, record, &page, NULL),
                   MM_EINPROGRESS);
  sleep_ms(10);
  assert_int_equal(atomic_load(&page.calls), 0);
  /* 64 KiB free + 72 KiB released: the big one first, then the page. */
  assert_int_equal(mm_release_execution(mm, 1, 72 * KiB), MM_OK);
  EVENTUALLY(atomic_load(&big.calls) == 1 && atomic_load(&page.calls) == 1);
  assert_int_equal(atomic_load(&big.status), MM_OK);
  assert_int_equal(atomic_load(&page.status), MM_OK);
  mm_destroy(mm);
}

/* An eviction that fails for a large held request does not stop a
 * smaller one from evicting the page it needs. */
static void test_small_waiter_evicts_after_large_fails(void **state) {
  (void)state;
  mm_t *mm = full_manager(NEVER_STARVES);
  assert_int_equal(mm_unpin_storage(mm, 5), MM_OK); /* 4 KiB evictable */
  outcome big = {0}, small = {0};
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 90, 64 * KiB,
                                    MM_WAIT_FOREVER, record, &big, NULL),
                   MM_EINPROGRESS);
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 91, 4096,
                                    MM_WAIT_FOREVER, record, &small, NULL),
                   MM_EINPROGRESS);
  EVENTUALLY(atomic_load(&small.calls) == 1);
  assert_int_equal(atomic_load(&small.status), MM_OK);
  assert_int_equal(mm_test_stats(mm).evictions, 1);
  assert_int_equal(atomic_load(&big.calls), 0);
  mm_destroy(mm);
}

/* A held request whose eviction has begun is granted, never timed out
 * with its victims gone. */
static void slow_evict(void *ctx, uint64_t id, void *data, size_t bytes) {
  (void)ctx, (void)id, (void)data, (void)bytes;
  sleep_ms(150);
}

static void *unpin_page_5(void *arg) {
  sleep_ms(20);
  mm_unpin_storage(arg, 5);
  return NULL;
}

static void test_eviction_for_held_request_commits_first(void **state) {
  (void)state;
  mm_t *mm = full_manager_with(0, slow_evict);
  pthread_t t;
  pthread_create(&t, NULL, unpin_page_5, mm);
  /* The unpin's pass claims page 5 for us, commits the grant, then runs
   * the slow callback past our deadline: we are granted all the same. */
  mm_status st = mm_acquire_execution(mm, 2, 4096, 60 * MS);
  pthread_join(t, NULL);
  mm_stats s = mm_test_stats(mm);
  assert_true((st == MM_OK && s.evictions == 1) ||
              (st == MM_ETIMEDOUT && s.evictions == 0));
  mm_destroy(mm);
}

/* Callbacks that hold a new request each time they run, while mm_destroy
 * cancels everything: every request that was held gets exactly one
 * callback, and mm_destroy returns after the last. */
static mm_t *rearm_mm;
static atomic_int rearm_held, rearm_calls;
static void rearm_cb(void *ctx, mm_status st) {
  (void)ctx;
  (void)st;
  atomic_fetch_add(&rearm_calls, 1);
  mm_status again = mm_acquire_async(rearm_mm, MM_POOL_EXECUTION, 80, 4096,
                                     MM_WAIT_FOREVER, rearm_cb, NULL, NULL);
  if (again == MM_EINPROGRESS)
    atomic_fetch_add(&rearm_held, 1);
}

static void test_destroy_while_callbacks_rearm(void **state) {
  (void)state;
  for (int round = 0; round < 20; round++) {
    rearm_mm = full_manager(0);
    atomic_store(&rearm_held, 0);
    atomic_store(&rearm_calls, 0);
    for (int i = 0; i < 8; i++) {
      uint64_t ticket;
      assert_int_equal(mm_acquire_async(rearm_mm, MM_POOL_EXECUTION, 80, 4096,
                                        MM_WAIT_FOREVER, rearm_cb, NULL,
                                        &ticket),
                       MM_EINPROGRESS);
      atomic_fetch_add(&rearm_held, 1);
      if (i % 2)
        assert_int_equal(mm_cancel(rearm_mm, ticket), MM_OK); /* re-arms */
    }
    mm_destroy(rearm_mm);
    assert_int_equal(atomic_load(&rearm_calls), atomic_load(&rearm_held));
  }
}

/* A callback that calls back into the manager, including another
 * asynchronous acquire, must not deadlock. */
static mm_t *reentrant_mm;
static outcome reentrant_second;
static void reentrant_cb(void *ctx, mm_status st) {
  record(ctx, st);
  mm_release_execution(reentrant_mm, 60, 4096);
  mm_stats s;
  mm_get_stats(reentrant_mm, &s);
  (void)mm_acquire_async(reentrant_mm, MM_POOL_EXECUTION, 61, 4096,
                         MM_WAIT_FOREVER, record, &reentrant_second, NULL);
}

static void test_callback_reenters(void **state) {
  (void)state;
  mm_t *mm = reentrant_mm = full_manager(0);
  outcome o = {0};
  memset(&reentrant_second, 0, sizeof reentrant_second);
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 60, 4096,
                                    MM_WAIT_FOREVER, reentrant_cb, &o, NULL),
                   MM_EINPROGRESS);
  assert_int_equal(mm_release_execution(mm, 1, 4096), MM_OK);
  EVENTUALLY(atomic_load(&o.calls) == 1);
  /* The callback released 60's 4 KiB, which the second request took. */
  EVENTUALLY(mm_execution_held(mm, 61) == 4096);
  assert_int_equal(mm_execution_held(mm, 60), 0);
  mm_destroy(mm);
}

/* ---- many waiters and releasers ---------------------------------------- */

#define THREADS 12
#define ROUNDS  400

static mm_t *crowd_mm;
static atomic_llong outstanding; /* bytes granted and not released */
static atomic_int async_started, async_ended, failures;

typedef struct crowd_cb {
  uint64_t id;
  size_t bytes;
  bool held; /* MM_EINPROGRESS: a callback is due */
  atomic_int calls;
  atomic_bool finished; /* the callback's last touch of this record */
} crowd_cb;

static void crowd_record(void *ctx, mm_status st) {
  crowd_cb *c = ctx;
  if (atomic_fetch_add(&c->calls, 1) != 0)
    atomic_fetch_add(&failures, 1); /* called twice */
  if (st == MM_OK) {
    atomic_fetch_add(&outstanding, (long long)c->bytes);
    /* give it straight back from the callback */
    atomic_fetch_sub(&outstanding, (long long)c->bytes);
    if (mm_release_execution(crowd_mm, c->id, c->bytes) != MM_OK)
      atomic_fetch_add(&failures, 1);
  } else if (st != MM_ETIMEDOUT && st != MM_ECANCELED) {
    atomic_fetch_add(&failures, 1);
  }
  atomic_fetch_add(&async_ended, 1);
  atomic_store(&c->finished, true);
}

static void *crowd_main(void *arg) {
  uint64_t me = (uint64_t)(uintptr_t)arg, rng = me * 0x9e3779b97f4a7c15ull;
  crowd_cb *cbs = calloc(ROUNDS, sizeof *cbs);
  for (int i = 0; i < ROUNDS; i++) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    size_t bytes = 4096 * (1 + rng % 48);
    uint64_t id = me * 1000 + (uint64_t)i;
    if (rng % 3 == 0) {
      crowd_cb *c = &cbs[i];
      c->id = id;
      c->bytes = bytes;
      uint64_t ticket;
      mm_status st =
          mm_acquire_async(crowd_mm, MM_POOL_EXECUTION, id, bytes,
                           (int64_t)(rng % 4) * MS, crowd_record, c, &ticket);
      if (st == MM_EINPROGRESS) {
        c->held = true;
        atomic_fetch_add(&async_started, 1);
        if (rng % 7 == 0)
          (void)mm_cancel(crowd_mm, ticket);
      } else if (st == MM_OK) {
        if (mm_release_execution(crowd_mm, id, bytes) != MM_OK)
          atomic_fetch_add(&failures, 1);
      } else if (st != MM_ENOMEM) {
        atomic_fetch_add(&failures, 1);
      }
    } else {
      int64_t timeout =
          rng % 5 == 0 ? MM_WAIT_FOREVER : (int64_t)(rng % 3) * MS;
      mm_status st = mm_acquire_execution(crowd_mm, id, bytes, timeout);
      if (st == MM_OK) {
        long long now = atomic_fetch_add(&outstanding, (long long)bytes);
        if (now + (long long)bytes > (long long)MiB)
          atomic_fetch_add(&failures, 1);
        sched_yield();
        atomic_fetch_sub(&outstanding, (long long)bytes);
        if (mm_release_all_execution(crowd_mm, id) != bytes)
          atomic_fetch_add(&failures, 1);
      } else if (st != MM_ETIMEDOUT && st != MM_ENOMEM) {
        atomic_fetch_add(&failures, 1);
      }
    }
  }
  /* Wait for this thread's callbacks to finish before freeing their
   * records (one that never finishes is a failure, and its record is
   * left alone). */
  bool all_finished = true;
  for (int i = 0; i < ROUNDS; i++) {
    if (!cbs[i].held)
      continue;
    int64_t until = now_ns() + 10000 * MS;
    while (!atomic_load(&cbs[i].finished) && now_ns() < until)
      sleep_ms(1);
    if (!atomic_load(&cbs[i].finished)) {
      atomic_fetch_add(&failures, 1);
      all_finished = false;
    }
  }
  if (all_finished)
    free(cbs);
  return NULL;
}

static void test_many_waiters_and_releasers(void **state) {
  (void)state;
  mm_config cfg = {.total_bytes = 1 * MiB, .overtake_limit_ns = 2 * MS};
  assert_int_equal(mm_create(&cfg, &crowd_mm), MM_OK);
  atomic_store(&outstanding, 0);
  atomic_store(&async_started, 0);
  atomic_store(&async_ended, 0);
  atomic_store(&failures, 0);
  /*
   * Start with the whole budget taken and hand it back only once someone is
   * held, so the crowd is known to have waited: how the threads happen to be
   * scheduled must not decide what this test covers.  Some thread's rounds
   * make a MM_WAIT_FOREVER request early, and that one is held.
   */
  const uint64_t blocker = 1; /* the threads use ids from 1000 */
  assert_int_equal(mm_acquire_execution(crowd_mm, blocker, MiB, MM_NO_WAIT),
                   MM_OK);
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++)
    pthread_create(&t[i], NULL, crowd_main, (void *)(uintptr_t)(i + 1));
  int64_t until = now_ns() + 10000 * MS;
  while (mm_test_stats(crowd_mm).held_now == 0 && now_ns() < until)
    sleep_ms(1);
  assert_true(mm_test_stats(crowd_mm).held_now > 0);
  assert_int_equal(mm_release_all_execution(crowd_mm, blocker), MiB);
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  assert_int_equal(atomic_load(&failures), 0);
  assert_int_equal(atomic_load(&async_started), atomic_load(&async_ended));
  mm_stats s = mm_test_stats(crowd_mm);
  mm_test_check_stats(&s, 512 * KiB, 0);
  assert_int_equal(s.execution_used_bytes, 0);
  assert_int_equal(s.held_now, 0);
  assert_true(s.held > 0);
  printf("crowd: %llu granted, %llu declined, %llu held, %llu timed out, "
         "%llu cancelled\n",
         (unsigned long long)s.granted, (unsigned long long)s.declined,
         (unsigned long long)s.held, (unsigned long long)s.timed_out,
         (unsigned long long)s.cancelled);
  mm_destroy(crowd_mm);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_waiter_granted_by_release),
      cmocka_unit_test(test_deadline_while_full),
      cmocka_unit_test(test_async_granted_on_service_thread),
      cmocka_unit_test(test_async_deadline_without_releases),
      cmocka_unit_test(test_cancel_before_grant),
      cmocka_unit_test(test_cancel_racing_grant),
      cmocka_unit_test(test_small_overtakes_large_within_limit),
      cmocka_unit_test(test_starved_large_bars_younger),
      cmocka_unit_test(test_arrivals_queue_behind_held),
      cmocka_unit_test(test_storage_release_grants_execution),
      cmocka_unit_test(test_destroy_with_waiters),
      cmocka_unit_test(test_callback_reenters),
      cmocka_unit_test(test_starved_execution_bars_storage),
      cmocka_unit_test(test_small_waiter_evicts_after_large_fails),
      cmocka_unit_test(test_eviction_for_held_request_commits_first),
      cmocka_unit_test(test_destroy_while_callbacks_rearm),
      cmocka_unit_test(test_many_waiters_and_releasers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

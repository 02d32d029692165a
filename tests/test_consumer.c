/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_consumer.c -- consumer handles: their books, their quota, their
 * blocks, many threads on one consumer, and the per-thread caches behind
 * them.
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "mm_test.h"

#include "mm_internal.h" /* mmi_tcaches_parked */

#define TOTAL (64 * MiB)

static mm_t *create(size_t total) {
  mm_config cfg = {.total_bytes = total, .max_execution_request = total};
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  return mm;
}

/* The books of a quiet manager: what it charges is what is held plus the
 * spare quota, and the picture leaves the quota out. */
static void check_quiet(mm_t *mm, size_t held) {
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.execution_used_bytes, held);
  mm_test_check_stats(&s, s.total_bytes / 2, 0);
}

static void test_books(void **state) {
  (void)state;
  mm_t *mm = create(TOTAL);
  mm_consumer *a, *b;
  assert_int_equal(mm_consumer_open(mm, 7, &a), MM_OK);
  assert_int_equal(mm_consumer_open(mm, 7, &b), MM_OK);
  assert_int_equal(mm_consumer_acquire(a, 1000, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_consumer_acquire(b, 3 * MiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_acquire_execution(mm, 7, 5, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_consumer_held(a), 1000);
  assert_int_equal(mm_consumer_held(b), 3 * MiB);
  /* The exec id sees every consumer of it. */
  assert_int_equal(mm_execution_held(mm, 7), 1000 + 3 * MiB + 5);
  check_quiet(mm, 1000 + 3 * MiB + 5);
  /* Never more than it holds; nothing changed by a refusal. */
  assert_int_equal(mm_consumer_release(a, 1001), MM_EINVAL);
  assert_int_equal(mm_consumer_release(a, 0), MM_EINVAL);
  assert_int_equal(mm_consumer_held(a), 1000);
  assert_int_equal(mm_consumer_release(a, 400), MM_OK);
  assert_int_equal(mm_consumer_held(a), 600);
  /* What a handle charged is its own: the id's calls return the id's. */
  assert_int_equal(mm_release_execution(mm, 7, 6), MM_EINVAL);
  assert_int_equal(mm_release_execution(mm, 7, 5), MM_OK);
  /* The spare quota is bounded: two quanta per consumer. */
  assert_true(mm_test_stats(mm).execution_credit_bytes <= 3 * 2 * MiB);
  /* mm_release_all_execution closes them all. */
  assert_int_equal(mm_release_all_execution(mm, 7), 600 + 3 * MiB);
  assert_int_equal(mm_consumer_held(a), 0);
  assert_int_equal(mm_consumer_acquire(a, 1, MM_NO_WAIT), MM_EINVAL);
  assert_int_equal(mm_consumer_release(b, 1), MM_EINVAL);
  check_quiet(mm, 0);
  assert_int_equal(mm_test_stats(mm).execution_credit_bytes, 0);
  /* Closing still frees the handles; a new one starts afresh. */
  assert_int_equal(mm_consumer_close(a), MM_OK);
  assert_int_equal(mm_consumer_close(b), MM_OK);
  assert_int_equal(mm_consumer_open(mm, 7, &a), MM_OK);
  assert_int_equal(mm_consumer_acquire(a, 10, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_execution_held(mm, 7), 10);
  /* Close returns what it holds and its quota. */
  assert_int_equal(mm_consumer_close(a), MM_OK);
  check_quiet(mm, 0);
  assert_int_equal(mm_test_stats(mm).execution_credit_bytes, 0);
  assert_int_equal(mm_test_stats(mm).execution_pool_bytes, TOTAL / 2);
  mm_destroy(mm);
}

static void test_bad_calls(void **state) {
  (void)state;
  mm_t *mm = create(TOTAL);
  mm_consumer *c = (mm_consumer *)(uintptr_t)1;
  assert_int_equal(mm_consumer_open(NULL, 1, &c), MM_EINVAL);
  assert_int_equal(mm_consumer_open(mm, 1, NULL), MM_EINVAL);
  assert_ptr_equal(c, (mm_consumer *)(uintptr_t)1);
  assert_int_equal(mm_consumer_open(mm, 1, &c), MM_OK);
  assert_int_equal(mm_consumer_acquire(c, 0, MM_NO_WAIT), MM_EINVAL);
  assert_int_equal(mm_consumer_acquire(c, TOTAL + 1, MM_NO_WAIT), MM_EINVAL);
  assert_int_equal(mm_consumer_acquire(c, 1, -2), MM_EINVAL);
  assert_int_equal(mm_consumer_acquire(NULL, 1, MM_NO_WAIT), MM_EINVAL);
  assert_int_equal(mm_consumer_release(NULL, 1), MM_EINVAL);
  assert_int_equal(mm_consumer_held(NULL), 0);
  assert_int_equal(mm_consumer_close(NULL), MM_EINVAL);
  void *p = (void *)(uintptr_t)1;
  assert_int_equal(mm_consumer_alloc(c, 0, MM_NO_WAIT, &p), MM_EINVAL);
  assert_int_equal(mm_consumer_alloc(c, 1, MM_NO_WAIT, NULL), MM_EINVAL);
  assert_int_equal(mm_consumer_calloc(c, SIZE_MAX / 2, 3, MM_NO_WAIT, &p),
                   MM_EINVAL);
  assert_int_equal(mm_consumer_calloc(c, 0, 3, MM_NO_WAIT, &p), MM_EINVAL);
  assert_int_equal(mm_consumer_realloc(c, NULL, 0, MM_NO_WAIT, &p), MM_EINVAL);
  assert_ptr_equal(p, (void *)(uintptr_t)1);
  assert_int_equal(mm_consumer_held(c), 0);
  assert_int_equal(mm_test_stats(mm).execution_used_bytes, 0);
  assert_int_equal(mm_consumer_close(c), MM_OK);
  mm_destroy(mm);
}

static void test_blocks(void **state) {
  (void)state;
  mm_t *mm = create(TOTAL);
  mm_consumer *a, *b;
  assert_int_equal(mm_consumer_open(mm, 1, &a), MM_OK);
  assert_int_equal(mm_consumer_open(mm, 2, &b), MM_OK);
  const size_t sizes[] = {1, 16, 17, 100, 4096, 5000, 16384, 16385, 1 * MiB};
  void *p[9];
  size_t held = 0;
  for (int i = 0; i < 9; i++) {
    assert_int_equal(mm_consumer_alloc(a, sizes[i], MM_NO_WAIT, &p[i]), MM_OK);
    size_t usable = mm_usable_size(mm, p[i]);
    assert_true(usable >= sizes[i]);
    memset(p[i], 0x5a, usable); /* all of it is ours */
    held += usable;
    assert_int_equal(mm_consumer_held(a), held); /* charged its class */
    assert_int_equal((uintptr_t)p[i] % 16, 0);
  }
  /* Refused, and nothing touched: another consumer's, inside, twice. */
  int on_stack;
  void *foreign = malloc(64);
  assert_int_equal(mm_consumer_free(b, p[3]), MM_EINVAL);
  assert_int_equal(mm_exec_free(mm, 2, p[3]), MM_EINVAL);
  assert_int_equal(mm_consumer_free(a, (char *)p[3] + 16), MM_EINVAL);
  assert_int_equal(mm_consumer_free(a, &on_stack), MM_EINVAL);
  assert_int_equal(mm_consumer_free(a, foreign), MM_EINVAL);
  assert_int_equal(mm_usable_size(mm, foreign), 0);
  assert_int_equal(mm_usable_size(mm, (char *)p[3] + 16), 0);
  void *q;
  assert_int_equal(mm_consumer_realloc(b, p[3], 10, MM_NO_WAIT, &q), MM_EINVAL);
  assert_int_equal(mm_consumer_held(a), held);
  /* A block of a consumer of the same exec id may be freed by the id. */
  assert_int_equal(mm_exec_free(mm, 1, p[0]), MM_OK);
  held -= 16;
  assert_int_equal(mm_consumer_held(a), held);
  assert_int_equal(mm_consumer_free(a, p[0]), MM_EINVAL); /* freed already */
  for (int i = 1; i < 9; i++) {
    held -= mm_usable_size(mm, p[i]);
    assert_int_equal(mm_consumer_free(a, p[i]), MM_OK);
    assert_int_equal(mm_consumer_held(a), held);
  }
  assert_int_equal(mm_consumer_free(a, p[5]), MM_EINVAL); /* twice */
  free(foreign);
  /* calloc zeroes, realloc keeps the contents. */
  unsigned char *z;
  assert_int_equal(mm_consumer_alloc(a, 256, MM_NO_WAIT, (void **)&z), MM_OK);
  memset(z, 0xff, 256);
  assert_int_equal(mm_consumer_free(a, z), MM_OK);
  assert_int_equal(mm_consumer_calloc(a, 16, 16, MM_NO_WAIT, (void **)&z),
                   MM_OK);
  for (int i = 0; i < 256; i++)
    assert_int_equal(z[i], 0);
  for (int i = 0; i < 256; i++)
    z[i] = (unsigned char)i;
  unsigned char *r;
  assert_int_equal(mm_consumer_realloc(a, z, 200, MM_NO_WAIT, (void **)&r),
                   MM_OK);
  assert_ptr_equal(r, z); /* shrinks in place */
  assert_int_equal(mm_consumer_realloc(a, r, 100000, MM_NO_WAIT, (void **)&r),
                   MM_OK);
  for (int i = 0; i < 256; i++)
    assert_int_equal(r[i], (unsigned char)i);
  assert_int_equal(mm_consumer_held(a), mm_usable_size(mm, r));
  assert_int_equal(mm_consumer_free(a, r), MM_OK);
  assert_int_equal(mm_consumer_held(a), 0);
  assert_int_equal(mm_consumer_close(a), MM_OK);
  assert_int_equal(mm_consumer_close(b), MM_OK);
  check_quiet(mm, 0);
  mm_destroy(mm);
}

/* A consumer closed with blocks out leaves them orphans: freed by any
 * free call, memory only. */
static void test_orphans(void **state) {
  (void)state;
  mm_t *mm = create(TOTAL);
  mm_consumer *a, *b;
  assert_int_equal(mm_consumer_open(mm, 1, &a), MM_OK);
  assert_int_equal(mm_consumer_open(mm, 2, &b), MM_OK);
  void *p, *q, *r;
  assert_int_equal(mm_consumer_alloc(a, 64, MM_NO_WAIT, &p), MM_OK);
  assert_int_equal(mm_consumer_alloc(a, 1 * MiB, MM_NO_WAIT, &q), MM_OK);
  assert_int_equal(mm_consumer_alloc(b, 64, MM_NO_WAIT, &r), MM_OK);
  assert_int_equal(mm_consumer_close(a), MM_OK);
  check_quiet(mm, 64);                                 /* b's */
  assert_int_equal(mm_consumer_free(b, p), MM_OK);     /* an orphan */
  assert_int_equal(mm_exec_free(mm, 3, q), MM_OK);     /* an orphan */
  assert_int_equal(mm_consumer_held(b), 64);           /* b's books untouched */
  assert_int_equal(mm_consumer_free(b, p), MM_EINVAL); /* gone */
  assert_int_equal(mm_consumer_free(b, r), MM_OK);
  check_quiet(mm, 0);
  mm_trim(mm);
  assert_int_equal(mm_test_stats(mm).backing_allocated_bytes, 0);
  assert_int_equal(mm_consumer_close(b), MM_OK);
  mm_destroy(mm);
}

/* While a request is held, consumers take nothing from spare (they queue
 * behind it) and give back every byte they release. */
static atomic_int granted_calls;
static _Atomic mm_status granted_status;

static void on_grant(void *ctx, mm_status outcome) {
  (void)ctx;
  atomic_store(&granted_status, outcome);
  atomic_fetch_add(&granted_calls, 1);
}

static void test_held_request_sees_every_byte(void **state) {
  (void)state;
  mm_config cfg = {.total_bytes = TOTAL,
                   .max_execution_request = TOTAL,
                   .overtake_limit_ns = NEVER_STARVES};
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  mm_consumer *c;
  assert_int_equal(mm_consumer_open(mm, 1, &c), MM_OK);
  assert_int_equal(mm_consumer_acquire(c, 8192, MM_NO_WAIT), MM_OK);
  assert_true(mm_test_stats(mm).execution_credit_bytes > 0);
  /* Everything else: c's spare quota comes back for it. */
  assert_int_equal(mm_acquire_execution(mm, 2, TOTAL - 8192, MM_NO_WAIT),
                   MM_OK);
  assert_int_equal(mm_test_stats(mm).execution_credit_bytes, 0);
  atomic_store(&granted_calls, 0);
  uint64_t ticket;
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 3, 4096, 10000 * MS,
                                    on_grant, NULL, &ticket),
                   MM_EINPROGRESS);
  /* c releases 4 KiB: not kept as spare while the request waits. */
  assert_int_equal(mm_consumer_release(c, 4096), MM_OK);
  EVENTUALLY(atomic_load(&granted_calls) == 1);
  assert_int_equal(atomic_load(&granted_status), MM_OK);
  assert_int_equal(mm_execution_held(mm, 3), 4096);
  assert_int_equal(mm_test_stats(mm).execution_credit_bytes, 0);
  /* A second waiter: c's next acquire queues behind it, and is declined
   * (MM_NO_WAIT) rather than served from anywhere. */
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 4, 4096, 10000 * MS,
                                    on_grant, NULL, &ticket),
                   MM_EINPROGRESS);
  assert_int_equal(mm_consumer_acquire(c, 1, MM_NO_WAIT), MM_ENOMEM);
  assert_int_equal(mm_consumer_release(c, 4096), MM_OK);
  EVENTUALLY(atomic_load(&granted_calls) == 2);
  assert_int_equal(atomic_load(&granted_status), MM_OK);
  assert_int_equal(mm_consumer_held(c), 0);
  assert_int_equal(mm_consumer_close(c), MM_OK);
  mm_destroy(mm);
}

/* ---- many threads on one consumer -------------------------------------- */

#define WORKERS 8
#define ROUNDS  20000
static mm_consumer *shared;
static mm_t *smm;

static void *worker(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  void *mine[16] = {0};
  for (int i = 0; i < ROUNDS; i++) {
    seed = seed * 1103515245u + 12345u;
    int slot = (int)(seed >> 16) % 16;
    size_t size = 1 + (seed >> 8) % 6000;
    if (mine[slot]) {
      CHECK(((unsigned char *)mine[slot])[0] == (unsigned char)slot);
      CHECK(mm_consumer_free(shared, mine[slot]) == MM_OK);
      mine[slot] = NULL;
    } else if (seed & 1) {
      if (mm_consumer_alloc(shared, size, MM_NO_WAIT, &mine[slot]) == MM_OK)
        memset(mine[slot], slot, size);
      else
        mine[slot] = NULL;
    } else if (mm_consumer_acquire(shared, size, MM_NO_WAIT) == MM_OK) {
      CHECK(mm_consumer_release(shared, size) == MM_OK);
    }
  }
  for (int s = 0; s < 16; s++)
    if (mine[s])
      CHECK(mm_consumer_free(shared, mine[s]) == MM_OK);
  return NULL;
}

static void test_threads_share_a_consumer(void **state) {
  (void)state;
  smm = create(4 * MiB); /* small: refills, trims and declines all happen */
  assert_int_equal(mm_consumer_open(smm, 1, &shared), MM_OK);
  atomic_store(&mm_test_failures, 0);
  pthread_t t[WORKERS];
  for (int i = 0; i < WORKERS; i++)
    pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));
  for (int i = 0; i < WORKERS; i++)
    pthread_join(t[i], NULL);
  assert_int_equal(atomic_load(&mm_test_failures), 0);
  assert_int_equal(mm_consumer_held(shared), 0);
  check_quiet(smm, 0);
  /* The workers are gone: their caches went back to the arena. */
  assert_int_equal(mmi_tcaches_parked(&smm->caches), 0);
  assert_int_equal(mm_consumer_close(shared), MM_OK);
  assert_int_equal(mm_test_stats(smm).execution_credit_bytes, 0);
  mm_trim(smm);
  assert_int_equal(mm_test_stats(smm).backing_allocated_bytes, 0);
  mm_destroy(smm);
}

/* ---- the per-thread caches ---------------------------------------------- */

static atomic_int parked_ready, may_exit;

/* Parks blocks in its cache, then idles until told to exit. */
static void *parker(void *arg) {
  mm_consumer *c = arg;
  void *p[8];
  for (int i = 0; i < 8; i++)
    CHECK(mm_consumer_alloc(c, 1024, MM_NO_WAIT, &p[i]) == MM_OK);
  for (int i = 0; i < 8; i++)
    CHECK(mm_consumer_free(c, p[i]) == MM_OK);
  atomic_store(&parked_ready, 1);
  while (!atomic_load(&may_exit))
    sleep_ms(1);
  return NULL;
}

/* A request that finds the budget full takes the blocks parked in an
 * idle thread's cache back to the arena. */
static void test_full_budget_drains_idle_caches(void **state) {
  (void)state;
  mm_t *mm = create(4 * MiB);
  mm_consumer *c;
  assert_int_equal(mm_consumer_open(mm, 1, &c), MM_OK);
  atomic_store(&parked_ready, 0);
  atomic_store(&may_exit, 0);
  atomic_store(&mm_test_failures, 0);
  pthread_t t;
  pthread_create(&t, NULL, parker, c);
  EVENTUALLY(atomic_load(&parked_ready));
  /* its eight, and what its refill cut beside them */
  assert_true(mmi_tcaches_parked(&mm->caches) >= 8 * 1024);
  /* The whole budget, then one byte more: declined, and on the way the
   * idle thread's cache was emptied (or, if it was in a call at that
   * moment, it empties itself before that call returns). */
  assert_int_equal(mm_acquire_execution(mm, 2, 4 * MiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_acquire_execution(mm, 3, 1, MM_NO_WAIT), MM_ENOMEM);
  if (mm->caches.membarrier)
    assert_int_equal(mmi_tcaches_parked(&mm->caches), 0);
  mm_stats s = mm_test_stats(mm);
  assert_true(s.backing_allocated_bytes <= s.execution_used_bytes);
  atomic_store(&may_exit, 1);
  pthread_join(t, NULL);
  assert_int_equal(mmi_tcaches_parked(&mm->caches), 0);
  assert_int_equal(atomic_load(&mm_test_failures), 0);
  assert_int_equal(mm_release_all_execution(mm, 2), 4 * MiB);
  assert_int_equal(mm_consumer_close(c), MM_OK);
  mm_destroy(mm);
}

static _Atomic(void *) target;
static atomic_int wrong_stop;
static mm_consumer *wrong_c;
static mm_t *wrong_mm;

/* Frees whatever block is published through the wrong consumer and the
 * wrong exec id: refused, every time. */
static void *wrong_freer(void *arg) {
  (void)arg;
  while (!atomic_load(&wrong_stop)) {
    void *p = atomic_load(&target);
    if (!p)
      continue;
    CHECK(mm_consumer_free(wrong_c, p) == MM_EINVAL);
    CHECK(mm_exec_free(wrong_mm, 99, p) == MM_EINVAL);
  }
  return NULL;
}

/* A refused free leaves the block alone: while another thread keeps
 * trying to free the owner's block through another consumer, every free
 * by the owner succeeds, and nothing stays held.  (A refused free used to
 * clear the block's tag for a moment, so the owner's free found no block
 * and the block leaked.) */
static void test_refused_free_leaves_block_alone(void **state) {
  (void)state;
  wrong_mm = create(TOTAL);
  mm_consumer *c;
  assert_int_equal(mm_consumer_open(wrong_mm, 1, &c), MM_OK);
  assert_int_equal(mm_consumer_open(wrong_mm, 2, &wrong_c), MM_OK);
  atomic_store(&wrong_stop, 0);
  atomic_store(&target, NULL);
  atomic_store(&mm_test_failures, 0);
  pthread_t t;
  pthread_create(&t, NULL, wrong_freer, NULL);
  long refused = 0;
  for (int i = 0; i < 200000; i++) {
    void *p;
    assert_int_equal(mm_consumer_alloc(c, 64, MM_NO_WAIT, &p), MM_OK);
    atomic_store(&target, p);
    if (mm_consumer_free(c, p) != MM_OK)
      refused++;
    atomic_store(&target, NULL);
  }
  atomic_store(&wrong_stop, 1);
  pthread_join(t, NULL);
  assert_int_equal(refused, 0);
  assert_int_equal(atomic_load(&mm_test_failures), 0);
  assert_int_equal(mm_consumer_held(c), 0);
  assert_int_equal(mm_consumer_close(c), MM_OK);
  assert_int_equal(mm_consumer_close(wrong_c), MM_OK);
  mm_destroy(wrong_mm);
}

static atomic_int used_first, first_gone;

/* Uses a manager, waits for it to be destroyed, then uses a new one. */
static void *outliver(void *arg) {
  mm_t **mms = arg;
  void *p;
  CHECK(mm_exec_alloc(mms[0], 1, 64, MM_NO_WAIT, &p) == MM_OK);
  CHECK(mm_exec_free(mms[0], 1, p) == MM_OK); /* parked here */
  atomic_store(&used_first, 1);
  while (!atomic_load(&first_gone))
    sleep_ms(1);
  CHECK(mm_exec_alloc(mms[1], 1, 64, MM_NO_WAIT, &p) == MM_OK);
  CHECK(mm_exec_free(mms[1], 1, p) == MM_OK);
  return NULL;
}

/* A thread's cache outlives its manager, and the thread's next manager
 * (perhaps at the same address) never meets it. */
static void test_thread_outlives_its_manager(void **state) {
  (void)state;
  mm_t *mms[2];
  mms[0] = create(4 * MiB);
  atomic_store(&used_first, 0);
  atomic_store(&first_gone, 0);
  atomic_store(&mm_test_failures, 0);
  pthread_t t;
  pthread_create(&t, NULL, outliver, mms);
  EVENTUALLY(atomic_load(&used_first));
  mm_destroy(mms[0]);
  mms[1] = create(4 * MiB);
  atomic_store(&first_gone, 1);
  pthread_join(t, NULL);
  assert_int_equal(atomic_load(&mm_test_failures), 0);
  assert_int_equal(mm_execution_held(mms[1], 1), 0);
  mm_destroy(mms[1]);
}

/* Threads come and go; their caches are taken over, not piled up. */
static void *short_lived(void *arg) {
  mm_t *mm = arg;
  void *p;
  CHECK(mm_exec_alloc(mm, 9, 128, MM_NO_WAIT, &p) == MM_OK);
  CHECK(mm_exec_free(mm, 9, p) == MM_OK);
  return NULL;
}

static void test_caches_are_reused(void **state) {
  (void)state;
  mm_t *mm = create(4 * MiB);
  atomic_store(&mm_test_failures, 0);
  for (int i = 0; i < 200; i++) {
    pthread_t t;
    pthread_create(&t, NULL, short_lived, mm);
    pthread_join(t, NULL);
  }
  assert_int_equal(atomic_load(&mm_test_failures), 0);
  unsigned n = 0;
  for (mmi_tcache *tc = mm_load_acquire_ptr(&mm->caches.head); tc;
       tc = tc->next)
    n++;
  assert_true(n <= 3); /* this thread's, and one the exiting ones share */
  assert_int_equal(mmi_tcaches_parked(&mm->caches), 0);
  mm_destroy(mm);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_books),
      cmocka_unit_test(test_bad_calls),
      cmocka_unit_test(test_blocks),
      cmocka_unit_test(test_orphans),
      cmocka_unit_test(test_held_request_sees_every_byte),
      cmocka_unit_test(test_threads_share_a_consumer),
      cmocka_unit_test(test_full_budget_drains_idle_caches),
      cmocka_unit_test(test_thread_outlives_its_manager),
      cmocka_unit_test(test_caches_are_reused),
      cmocka_unit_test(test_refused_free_leaves_block_alone),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

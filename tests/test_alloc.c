/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_alloc.c -- real memory: mm_exec_alloc / mm_exec_free /
 * mm_storage_alloc round trips, refused frees, pages born pinned and
 * evicted with their data, injected allocator failures, honest books, and
 * blocks freed on another thread than the one that allocated them.
 */
#define _GNU_SOURCE /* pthread_setaffinity_np */
#include "mm_test.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backing.h"

#define TOTAL (64 * MiB)

/* The books are honest: never more memory allocated than charged. */
static void check_books(const mm_t *mm) {
  mm_stats s = mm_test_stats(mm);
  assert_true(s.backing_allocated_bytes <= s.execution_used_bytes +
                                               s.storage_used_bytes +
                                               s.cache_parked_bytes);
}

static void test_exec_round_trips(void **state) {
  (void)state;
  mm_t *mm = mm_test_create(TOTAL, 0);
  const size_t sizes[] = {1, 7, 64, 100, 4096, 5000, 65536, 1 * MiB, 8 * MiB};
  void *p[9];
  size_t held = 0;
  for (int i = 0; i < 9; i++) {
    assert_int_equal(mm_exec_alloc(mm, 1, sizes[i], MM_NO_WAIT, &p[i]), MM_OK);
    memset(p[i], 0xa5, sizes[i]); /* all of it is ours */
    size_t now = mm_execution_held(mm, 1);
    assert_true(now - held >= sizes[i]); /* charged its size class */
    held = now;
    check_books(mm);
  }
  assert_int_equal(mm_test_stats(mm).execution_used_bytes, held);
  for (int i = 0; i < 9; i++) {
    assert_int_equal(mm_exec_free(mm, 1, p[i]), MM_OK);
    check_books(mm);
  }
  assert_int_equal(mm_execution_held(mm, 1), 0);
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.execution_used_bytes, 0);
  assert_int_equal(s.backing_allocated_bytes, s.cache_parked_bytes);
  mm_trim(mm); /* drains the caches */
  assert_int_equal(mm_test_stats(mm).cache_parked_bytes, 0);
  assert_int_equal(mm_test_stats(mm).backing_allocated_bytes, 0);

  /* The limits. */
  void *q = (void *)(uintptr_t)1;
  assert_int_equal(mm_exec_alloc(mm, 1, 0, MM_NO_WAIT, &q), MM_EINVAL);
  assert_int_equal(mm_exec_alloc(mm, 1, 8 * MiB + 1, MM_NO_WAIT, &q),
                   MM_EINVAL);
  assert_int_equal(mm_exec_alloc(mm, 1, 64, -2, &q), MM_EINVAL);
  assert_int_equal(mm_exec_alloc(mm, 1, 64, MM_NO_WAIT, NULL), MM_EINVAL);
  assert_int_equal(mm_exec_alloc(NULL, 1, 64, MM_NO_WAIT, &q), MM_EINVAL);
  assert_ptr_equal(q, (void *)(uintptr_t)1);
  mm_trim(mm);
  mm_trim(NULL);
  mm_destroy(mm);
}

/* Every size up to 16 KiB in 8-byte steps (so every small size class,
 * the ones the per-CPU caches keep), allocated twice, freed, reused. */
static void test_every_small_size_class(void **state) {
  (void)state;
  mm_t *mm = mm_test_create(TOTAL, 0);
  for (int round = 0; round < 2; round++) {
    for (size_t size = 8; size <= 16384; size += 8) {
      void *p;
      assert_int_equal(mm_exec_alloc(mm, 3, size, MM_NO_WAIT, &p), MM_OK);
      ((char *)p)[size - 1] = 1;
      assert_int_equal(mm_exec_free(mm, 3, p), MM_OK);
    }
    check_books(mm);
  }
  assert_int_equal(mm_execution_held(mm, 3), 0);
  mm_destroy(mm);
}

/* A block freed after mm_release_all_execution of its id returns nothing
 * more: its bytes went with the id's, and the id's next incarnation keeps
 * its own charges. */
static void test_free_after_release_all(void **state) {
  (void)state;
  mm_t *mm = mm_test_create(TOTAL, 0);
  void *a, *b;
  assert_int_equal(mm_exec_alloc(mm, 1, 1 * MiB, MM_NO_WAIT, &a), MM_OK);
  size_t charged = mm_execution_held(mm, 1);
  assert_int_equal(mm_release_all_execution(mm, 1), charged);
  assert_int_equal(mm_exec_alloc(mm, 1, 1 * MiB, MM_NO_WAIT, &b), MM_OK);
  assert_int_equal(mm_exec_free(mm, 1, a), MM_OK);
  assert_int_equal(mm_execution_held(mm, 1), charged); /* b's, untouched */
  assert_int_equal(mm_test_stats(mm).execution_used_bytes, charged);
  check_books(mm);
  assert_int_equal(mm_exec_free(mm, 1, b), MM_OK);
  assert_int_equal(mm_execution_held(mm, 1), 0);
  /* A block whose size class the budget could never hold. */
  mm_config small = {.total_bytes = 5 * MiB + 4096,
                     .max_execution_request = 5 * MiB + 4096};
  mm_t *tight;
  assert_int_equal(mm_create(&small, &tight), MM_OK);
  mmi_backing probe; /* what the arena would hand out for the request */
  assert_int_equal(mmi_backing_init(&probe, small.total_bytes), MM_OK);
  size_t cls = mmi_backing_size(&probe, 5 * MiB + 1);
  mmi_backing_fini(&probe);
  if (cls > small.total_bytes) /* jemalloc: 6 MiB; never held forever */
    assert_int_equal(mm_exec_alloc(tight, 1, 5 * MiB + 1, MM_WAIT_FOREVER, &a),
                     MM_EINVAL);
  else /* sanitizer builds round to 16 bytes: it fits */
    assert_int_equal(mm_exec_alloc(tight, 1, 5 * MiB + 1, MM_NO_WAIT, &a),
                     MM_OK);
  mm_destroy(tight);
  mm_destroy(mm);
}

static void test_refused_frees(void **state) {
  (void)state;
  mm_t *mm = mm_test_create(TOTAL, 0);
  void *p;
  assert_int_equal(mm_exec_alloc(mm, 1, 100, MM_NO_WAIT, &p), MM_OK);
  size_t held = mm_execution_held(mm, 1);
  int on_stack;
  void *foreign = malloc(100);
  assert_int_equal(mm_exec_free(mm, 1, &on_stack), MM_EINVAL);
  assert_int_equal(mm_exec_free(mm, 1, foreign), MM_EINVAL);
  assert_int_equal(mm_exec_free(mm, 1, (char *)p + 1), MM_EINVAL);
  assert_int_equal(mm_exec_free(mm, 2, p), MM_EINVAL); /* another id's */
  assert_int_equal(mm_exec_free(mm, 1, NULL), MM_EINVAL);
  assert_int_equal(mm_exec_free(NULL, 1, p), MM_EINVAL);
  assert_int_equal(mm_execution_held(mm, 1), held); /* nothing changed */
  assert_int_equal(mm_exec_free(mm, 1, p), MM_OK);
  assert_int_equal(mm_exec_free(mm, 1, p), MM_EINVAL); /* twice */
  free(foreign);
  mm_destroy(mm);
}

static void *evicted_data;
static size_t evicted_bytes;
static uint64_t evicted_id;
static void record_data(void *ctx, uint64_t id, void *data, size_t bytes) {
  (void)ctx;
  CHECK(((unsigned char *)data)[0] == 0x40 + id); /* its memory, intact */
  evicted_id = id;
  evicted_data = data;
  evicted_bytes = bytes;
}

static void test_storage_pages_with_memory(void **state) {
  (void)state;
  mm_config cfg = {.total_bytes = 1 * MiB, .on_evict = record_data};
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  void *data, *again;
  void *page_data[65];
  assert_int_equal(mm_storage_alloc(mm, 1, 5000, MM_NO_WAIT, &data), MM_OK);
  ((unsigned char *)data)[0] = 0x41;
  page_data[1] = data;
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.storage_used_bytes, 8192);   /* whole pages */
  assert_int_equal(s.storage_pinned_bytes, 8192); /* born pinned */
  check_books(mm);
  assert_int_equal(mm_release_storage(mm, 1), MM_EBUSY);
  assert_int_equal(mm_storage_alloc(mm, 1, 10, MM_NO_WAIT, &again), MM_EEXIST);
  assert_int_equal(mm_pin_storage(mm, 1, &again), MM_OK);
  assert_ptr_equal(again, data);
  assert_int_equal(mm_unpin_storage(mm, 1), MM_OK);
  assert_int_equal(mm_unpin_storage(mm, 1), MM_OK); /* now evictable */

  /* Fill storage (512 KiB); one more page evicts one, data and all. */
  for (uint64_t p = 2; p <= 64; p++) {
    assert_int_equal(mm_storage_alloc(mm, p, 8192, MM_NO_WAIT, &page_data[p]),
                     MM_OK);
    ((unsigned char *)page_data[p])[0] = (unsigned char)(0x40 + p);
    assert_int_equal(mm_unpin_storage(mm, p), MM_OK);
  }
  assert_null(evicted_data);
  assert_int_equal(mm_storage_alloc(mm, 65, 8192, MM_NO_WAIT, &again), MM_OK);
  assert_int_equal(mm_test_stats(mm).evictions, 1);
  assert_int_equal(atomic_load(&mm_test_failures), 0);
  assert_true(evicted_id >= 1 && evicted_id <= 64);
  assert_int_equal(mm_pin_storage(mm, evicted_id, &again), MM_ENOENT);
  assert_ptr_equal(evicted_data, page_data[evicted_id]);
  assert_int_equal(evicted_bytes, 8192);
  check_books(mm);
  /* Released pages give their memory back. */
  assert_int_equal(mm_unpin_storage(mm, 65), MM_OK);
  assert_int_equal(mm_release_storage(mm, 65), MM_OK);
  check_books(mm);
  mm_destroy(mm); /* frees the rest (LeakSanitizer would say otherwise) */
}

static void test_injected_failures_roll_back(void **state) {
  (void)state;
  mm_t *mm = mm_test_create(TOTAL, 0);
  void *p;
  mmi_backing_fail_next(1);
  assert_int_equal(mm_exec_alloc(mm, 1, 4096, MM_NO_WAIT, &p), MM_ENOMEM);
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.execution_used_bytes, 0);
  assert_int_equal(mm_execution_held(mm, 1), 0);
  mmi_backing_fail_next(1);
  assert_int_equal(mm_storage_alloc(mm, 9, 4096, MM_NO_WAIT, &p), MM_ENOMEM);
  s = mm_test_stats(mm);
  assert_int_equal(s.storage_used_bytes, 0);
  assert_int_equal(s.storage_pages, 0);
  /* The id is free again, and the next allocations work. */
  assert_int_equal(mm_storage_alloc(mm, 9, 4096, MM_NO_WAIT, &p), MM_OK);
  assert_int_equal(mm_exec_alloc(mm, 1, 4096, MM_NO_WAIT, &p), MM_OK);
  check_books(mm);
  mm_destroy(mm);
}

/* A held mm_storage_alloc: granted when a page can be evicted, and then
 * given its memory and made live, born pinned. */
static void *unpin_page_3(void *arg) {
  struct timespec ts = {0, 20 * 1000 * 1000};
  nanosleep(&ts, NULL);
  CHECK(mm_unpin_storage(arg, 3) == MM_OK);
  return NULL;
}

static void test_held_storage_alloc(void **state) {
  (void)state;
  mm_t *mm = mm_test_create(16384, 0); /* storage: two 4 KiB pages */
  void *p;
  assert_int_equal(mm_storage_alloc(mm, 3, 4096, MM_NO_WAIT, &p), MM_OK);
  assert_int_equal(mm_storage_alloc(mm, 4, 4096, MM_NO_WAIT, &p), MM_OK);
  assert_int_equal(mm_storage_alloc(mm, 5, 4096, 10 * 1000 * 1000, &p),
                   MM_ETIMEDOUT); /* both pinned: nothing to evict */
  atomic_store(&mm_test_failures, 0);
  pthread_t t;
  pthread_create(&t, NULL, unpin_page_3, mm);
  assert_int_equal(mm_storage_alloc(mm, 5, 4096, MM_WAIT_FOREVER, &p), MM_OK);
  pthread_join(t, NULL);
  assert_int_equal(atomic_load(&mm_test_failures), 0);
  assert_int_equal(mm_release_storage(mm, 3), MM_ENOENT); /* evicted */
  memset(p, 1, 4096);
  assert_int_equal(mm_release_storage(mm, 5), MM_EBUSY); /* born pinned */
  void *q;
  assert_int_equal(mm_pin_storage(mm, 5, &q), MM_OK);
  assert_ptr_equal(p, q);
  check_books(mm);
  mm_destroy(mm);
}

/* Quota parked in consumers never declines a request that fits in truly
 * free memory, and the error of the books is one-sided: many consumers
 * each take a little and so park a quantum each; then one request asks
 * for everything else. */
static void test_quota_never_declines_what_fits(void **state) {
  (void)state;
  mm_config cfg = {.total_bytes = 64 * MiB, .max_execution_request = 64 * MiB};
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  mm_consumer *c[16];
  for (int i = 0; i < 16; i++) {
    assert_int_equal(mm_consumer_open(mm, 100 + (uint64_t)i, &c[i]), MM_OK);
    assert_int_equal(mm_consumer_acquire(c[i], 4096, MM_NO_WAIT), MM_OK);
    assert_int_equal(mm_consumer_held(c[i]), 4096);
  }
  assert_int_equal(mm_acquire_execution(mm, 1, 4096, MM_NO_WAIT), MM_OK);
  mm_stats s = mm_test_stats(mm);
  size_t used = s.execution_used_bytes;
  assert_int_equal(used, 17 * 4096);
  assert_true(s.execution_credit_bytes >= 16 * MiB); /* a quantum each */
  /* Everything else, in one request: the quota comes back for it. */
  assert_int_equal(mm_acquire_execution(mm, 2, 64 * MiB - used, MM_NO_WAIT),
                   MM_OK);
  s = mm_test_stats(mm);
  assert_int_equal(s.execution_used_bytes, 64 * MiB);
  assert_int_equal(s.execution_credit_bytes, 0);
  assert_int_equal(mm_acquire_execution(mm, 3, 1, MM_NO_WAIT), MM_ENOMEM);
  for (int i = 0; i < 16; i++)
    assert_int_equal(mm_consumer_close(c[i]), MM_OK);
  mm_destroy(mm);
}

/* ---- allocate on one thread, free on another --------------------------- */

#define BLOCKS 20000
static mm_t *xmm;
static _Atomic(void *) handoff[64];

static void *producer(void *arg) {
  (void)arg;
  for (int i = 0; i < BLOCKS; i++) {
    void *p;
    size_t size = 16 + (size_t)(i * 7919) % 4000;
    while (mm_exec_alloc(xmm, 5, size, MM_NO_WAIT, &p) != MM_OK)
      sched_yield(); /* budget full: the consumer frees */
    memset(p, i & 0xff, size);
    int slot = i % 64;
    void *expected = NULL;
    while (!atomic_compare_exchange_weak(&handoff[slot], &expected, p)) {
      expected = NULL;
      sched_yield();
    }
  }
  return NULL;
}

static void *consumer(void *arg) {
  (void)arg;
  for (int i = 0; i < BLOCKS; i++) {
    int slot = i % 64;
    void *p;
    while (!(p = atomic_exchange(&handoff[slot], NULL)))
      sched_yield();
    CHECK(((unsigned char *)p)[0] == (unsigned char)(i & 0xff));
    CHECK(mm_exec_free(xmm, 5, p) == MM_OK);
  }
  return NULL;
}

static void test_free_on_another_thread(void **state) {
  (void)state;
  xmm = mm_test_create(1 * MiB, 0);
  atomic_store(&mm_test_failures, 0);
  pthread_t a, b;
  pthread_create(&a, NULL, producer, NULL);
  pthread_create(&b, NULL, consumer, NULL);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  assert_int_equal(atomic_load(&mm_test_failures), 0);
  mm_stats s = mm_test_stats(xmm);
  assert_int_equal(s.execution_used_bytes, 0);
  assert_int_equal(s.backing_allocated_bytes, s.cache_parked_bytes);
  mm_destroy(xmm);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exec_round_trips),
      cmocka_unit_test(test_every_small_size_class),
      cmocka_unit_test(test_refused_frees),
      cmocka_unit_test(test_free_after_release_all),
      cmocka_unit_test(test_storage_pages_with_memory),
      cmocka_unit_test(test_injected_failures_roll_back),
      cmocka_unit_test(test_held_storage_alloc),
      cmocka_unit_test(test_quota_never_declines_what_fits),
      cmocka_unit_test(test_free_on_another_thread),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

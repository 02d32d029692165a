/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_evict.c -- eviction: who is evicted, how much, all or nothing, the
 * protected floor, the callback's contract, the policies, and many threads
 * racing over a small pool.
 */
#include "mm_test.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define TOTAL        (2 * MiB)
#define STORAGE_INIT (1 * MiB)
#define NPAGES       256 /* of 4 KiB: the storage pool, full */

/* ---- a callback that records what it saw ------------------------------ */

static mm_t *cb_mm;
static uint64_t victims[NPAGES];
static atomic_int nvictims;
static atomic_int cb_failures;

static void record_victim(void *ctx, uint64_t page_id, void *data,
                          size_t bytes) {
  (void)ctx;
  int i = atomic_fetch_add(&nvictims, 1);
  if (i < NPAGES)
    victims[i] = page_id;
  /* The page can no longer be pinned or released; acquires are refused
   * from inside a callback; its bytes are still charged. */
  if (data != NULL || bytes != 4096 ||
      mm_pin_storage(cb_mm, page_id, NULL) != MM_ENOENT ||
      mm_release_storage(cb_mm, page_id) != MM_ENOENT ||
      mm_acquire_storage(cb_mm, page_id, 4096, MM_NO_WAIT) != MM_EINVAL ||
      mm_acquire_execution(cb_mm, 1, 1, MM_NO_WAIT) != MM_EINVAL)
    atomic_fetch_add(&cb_failures, 1);
  mm_stats s;
  mm_get_stats(cb_mm, &s);
  if (s.execution_used_bytes + s.storage_used_bytes > s.total_bytes)
    atomic_fetch_add(&cb_failures, 1);
}

/* Storage full of 4 KiB pages 0..255; pages with (id % pin_every == 0)
 * pinned (pin_every 0: none). */
static mm_t *full_cache(int policy, uint64_t seed, size_t protect,
                        int pin_every) {
  mm_config cfg = {.total_bytes = TOTAL,
                   .eviction = policy,
                   .seed = seed,
                   .lru_samples = 16,
                   .storage_protected_bytes = protect,
                   .on_evict = record_victim};
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  cb_mm = mm;
  atomic_store(&nvictims, 0);
  atomic_store(&cb_failures, 0);
  for (uint64_t p = 0; p < NPAGES; p++) {
    assert_int_equal(mm_acquire_storage(mm, p, 4096, MM_NO_WAIT), MM_OK);
    if (pin_every && p % (uint64_t)pin_every == 0)
      assert_int_equal(mm_pin_storage(mm, p, NULL), MM_OK);
  }
  assert_int_equal(mm_test_stats(mm).storage_used_bytes, STORAGE_INIT);
  return mm;
}

static void test_random_evicts_enough_and_only_unpinned(void **state) {
  (void)state;
  mm_t *mm = full_cache(MM_EVICT_RANDOM, 1, 0, 2); /* even ids pinned */
  assert_int_equal(mm_acquire_storage(mm, 1000, 64 * KiB, MM_NO_WAIT), MM_OK);
  mm_stats s = mm_test_stats(mm);
  mm_test_check_stats(&s, STORAGE_INIT, 0);
  assert_int_equal(s.evictions, 16); /* just enough: 16 pages of 4 KiB */
  assert_int_equal(s.evicted_bytes, 64 * KiB);
  assert_int_equal(atomic_load(&nvictims), 16);
  assert_int_equal(atomic_load(&cb_failures), 0);
  assert_int_equal(s.storage_used_bytes, STORAGE_INIT);
  for (int i = 0; i < 16; i++) {
    assert_int_equal(victims[i] % 2, 1); /* never a pinned page */
    assert_int_equal(mm_release_storage(mm, victims[i]), MM_ENOENT);
    /* ... and the id can be registered again (room by eviction) */
    assert_int_equal(mm_acquire_storage(mm, victims[i], 4096, MM_NO_WAIT),
                     MM_OK);
  }
  for (uint64_t p = 0; p < NPAGES; p += 2) { /* pinned pages all there */
    assert_int_equal(mm_pin_storage(mm, p, NULL), MM_OK);
    assert_int_equal(mm_unpin_storage(mm, p), MM_OK);
  }
  s = mm_test_stats(mm);
  assert_int_equal(s.evictions, (uint64_t)atomic_load(&nvictims));
  mm_destroy(mm);
}

static void test_declined_request_evicts_nothing(void **state) {
  (void)state;
  /* Only ids 1, 33, 65 ... (8 pages, 32 KiB) are unpinned. */
  mm_t *mm = full_cache(MM_EVICT_RANDOM, 2, 0, 0);
  for (uint64_t p = 0; p < NPAGES; p++)
    if (p % 32 != 1)
      assert_int_equal(mm_pin_storage(mm, p, NULL), MM_OK);
  assert_int_equal(mm_acquire_storage(mm, 1000, 64 * KiB, MM_NO_WAIT),
                   MM_ENOMEM);
  assert_int_equal(mm_acquire_execution(mm, 1, 1 * MiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_acquire_execution(mm, 1, 64 * KiB, MM_NO_WAIT),
                   MM_ENOMEM);
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.evictions, 0);
  assert_int_equal(atomic_load(&nvictims), 0);
  for (uint64_t p = 1; p < NPAGES; p += 32) { /* still there, pinnable */
    assert_int_equal(mm_pin_storage(mm, p, NULL), MM_OK);
    assert_int_equal(mm_unpin_storage(mm, p), MM_OK);
  }
  /* 32 KiB can be had, all of it by eviction. */
  assert_int_equal(mm_acquire_execution(mm, 1, 32 * KiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_test_stats(mm).evictions, 8);
  /* Everything pinned now: storage declines too. */
  assert_int_equal(mm_acquire_storage(mm, 1001, 4096, MM_NO_WAIT), MM_ENOMEM);
  mm_destroy(mm);
}

static void test_execution_evicts_down_to_protected(void **state) {
  (void)state;
  mm_t *mm = full_cache(MM_EVICT_RANDOM, 3, 512 * KiB, 0);
  assert_int_equal(mm_acquire_execution(mm, 1, 1 * MiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_test_stats(mm).evictions, 0); /* its own pool */
  /* Borrowing by eviction: 256 KiB of storage goes. */
  assert_int_equal(mm_acquire_execution(mm, 1, 256 * KiB, MM_NO_WAIT), MM_OK);
  mm_stats s = mm_test_stats(mm);
  mm_test_check_stats(&s, STORAGE_INIT, 0);
  assert_int_equal(s.evictions, 64);
  assert_int_equal(s.storage_used_bytes, 768 * KiB);
  assert_int_equal(s.execution_borrowed_bytes, 256 * KiB);
  /* 512 KiB more would go below the protected 512 KiB: declined whole. */
  assert_int_equal(mm_acquire_execution(mm, 2, 512 * KiB, MM_NO_WAIT),
                   MM_ENOMEM);
  assert_int_equal(mm_test_stats(mm).evictions, 64);
  /* Down to exactly the floor, and not a byte below. */
  assert_int_equal(mm_acquire_execution(mm, 2, 256 * KiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_acquire_execution(mm, 3, 4096, MM_NO_WAIT), MM_ENOMEM);
  s = mm_test_stats(mm);
  assert_int_equal(s.storage_used_bytes, 512 * KiB);
  assert_int_equal(s.evictions, 128);
  /* Storage may still evict its own pages below the floor. */
  assert_int_equal(mm_acquire_storage(mm, 2000, 8192, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_test_stats(mm).evictions, 130);
  /* Release repays the borrowed capacity. */
  assert_int_equal(mm_release_all_execution(mm, 2), 256 * KiB);
  assert_int_equal(mm_release_execution(mm, 1, 512 * KiB), MM_OK);
  s = mm_test_stats(mm);
  mm_test_check_stats(&s, STORAGE_INIT, 0);
  assert_int_equal(s.execution_borrowed_bytes, 0);
  assert_int_equal(s.storage_pool_bytes, STORAGE_INIT);
  assert_int_equal(s.evictions, (uint64_t)atomic_load(&nvictims));
  assert_int_equal(atomic_load(&cb_failures), 0);
  mm_destroy(mm);
}

static void test_fixed_seed_same_victims(void **state) {
  (void)state;
  uint64_t first[10];
  for (int policy = 0; policy < 2; policy++) {
    for (int run = 0; run < 2; run++) {
      mm_t *mm = full_cache(policy, 42, 0, 0);
      assert_int_equal(mm_acquire_storage(mm, 1000, 40 * KiB, MM_NO_WAIT),
                       MM_OK);
      assert_int_equal(atomic_load(&nvictims), 10);
      if (run == 0)
        memcpy(first, victims, sizeof first);
      else
        assert_memory_equal(first, victims, sizeof first);
      mm_destroy(mm);
    }
  }
  /* Another seed, other victims (with overwhelming probability). */
  mm_t *mm = full_cache(MM_EVICT_SAMPLED_LRU, 43, 0, 0);
  assert_int_equal(mm_acquire_storage(mm, 1000, 40 * KiB, MM_NO_WAIT), MM_OK);
  assert_true(memcmp(first, victims, sizeof first) != 0);
  mm_destroy(mm);
}

static void test_sampled_lru_keeps_recently_pinned(void **state) {
  (void)state;
  mm_t *mm = full_cache(MM_EVICT_SAMPLED_LRU, 5, 0, 0);
  /* Advance the LRU clock, then use pages 0..127. */
  assert_int_equal(mm_acquire_storage(mm, 1000, 4096, MM_NO_WAIT), MM_OK);
  uint64_t first = victims[0];
  for (uint64_t p = 0; p < 128; p++) {
    if (p == first)
      continue;
    assert_int_equal(mm_pin_storage(mm, p, NULL), MM_OK);
    assert_int_equal(mm_unpin_storage(mm, p), MM_OK);
  }
  assert_int_equal(mm_acquire_storage(mm, 1001, 64 * KiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(atomic_load(&nvictims), 17);
  for (int i = 1; i < 17; i++)
    assert_true(victims[i] >= 128); /* the least recently used half */
  mm_destroy(mm);
}

/* The id of a page being evicted stays taken until its callback returns. */
static atomic_int slow_stage;
static void slow_callback(void *ctx, uint64_t page_id, void *data,
                          size_t bytes) {
  (void)ctx, (void)page_id, (void)data, (void)bytes;
  atomic_store(&slow_stage, 1);
  while (atomic_load(&slow_stage) != 2)
    sched_yield();
}

static void *evict_one(void *arg) {
  mm_t *mm = arg;
  mm_status st = mm_acquire_storage(mm, 5000, 4096, MM_NO_WAIT);
  return (void *)(intptr_t)st;
}

static void test_id_taken_until_callback_returns(void **state) {
  (void)state;
  mm_config cfg = {.total_bytes = 8192, .on_evict = slow_callback};
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  assert_int_equal(mm_acquire_storage(mm, 7, 4096, MM_NO_WAIT), MM_OK);
  atomic_store(&slow_stage, 0);
  pthread_t t;
  pthread_create(&t, NULL, evict_one, mm);
  while (atomic_load(&slow_stage) != 1)
    sched_yield();
  /* In the callback now: page 7 cannot be pinned, and its id is taken. */
  assert_int_equal(mm_pin_storage(mm, 7, NULL), MM_ENOENT);
  assert_int_equal(mm_acquire_storage(mm, 7, 4096, MM_NO_WAIT), MM_EEXIST);
  assert_int_equal(mm_test_stats(mm).storage_used_bytes, 4096); /* not yet
                                                                   granted */
  atomic_store(&slow_stage, 2);
  void *st;
  pthread_join(t, &st);
  assert_int_equal((intptr_t)st, MM_OK);
  /* Gone; the id is free again (and storage is full of page 5000). */
  assert_int_equal(mm_release_storage(mm, 7), MM_ENOENT);
  assert_int_equal(mm_release_storage(mm, 5000), MM_OK);
  assert_int_equal(mm_acquire_storage(mm, 7, 4096, MM_NO_WAIT), MM_OK);
  mm_destroy(mm);
}

/* Whole pages, but no more than needed: a small page claimed before a
 * large one that covers the request alone is given back. */
static void test_evicts_no_more_than_needed(void **state) {
  (void)state;
  for (uint64_t seed = 1; seed <= 40; seed++) {
    mm_config cfg = {.total_bytes = 2 * MiB, .seed = seed};
    mm_t *mm;
    assert_int_equal(mm_create(&cfg, &mm), MM_OK);
    assert_int_equal(mm_acquire_storage(mm, 1, 4096, MM_NO_WAIT), MM_OK);
    assert_int_equal(mm_acquire_storage(mm, 2, 512 * KiB, MM_NO_WAIT), MM_OK);
    for (uint64_t p = 3; p < 3 + 127; p++) { /* the rest, pinned */
      assert_int_equal(mm_acquire_storage(mm, p, 4096, MM_NO_WAIT), MM_OK);
      assert_int_equal(mm_pin_storage(mm, p, NULL), MM_OK);
    }
    assert_int_equal(mm_test_stats(mm).storage_used_bytes, 1 * MiB);
    assert_int_equal(mm_acquire_storage(mm, 1000, 8192, MM_NO_WAIT), MM_OK);
    assert_int_equal(mm_test_stats(mm).evictions, 1); /* page 2 alone */
    assert_int_equal(mm_release_storage(mm, 1), MM_OK);
    mm_destroy(mm);
  }
}

/* The protected floor holds at sizes past 2^40 bytes. */
static void test_protected_floor_at_terabytes(void **state) {
  (void)state;
  const size_t TiB = (size_t)1 << 40;
  mm_config cfg = {.total_bytes = 4 * TiB,
                   .page_size = GiB,
                   .max_execution_request = 4 * TiB,
                   .storage_protected_bytes = TiB - GiB};
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  for (uint64_t p = 0; p < 2048; p++) /* 2 TiB of storage, unpinned */
    assert_int_equal(mm_acquire_storage(mm, p, GiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_acquire_execution(mm, 1, 2 * TiB, MM_NO_WAIT), MM_OK);
  /* 1 TiB + 2 GiB would leave 1022 GiB: below the floor. */
  assert_int_equal(mm_acquire_execution(mm, 2, TiB + 2 * GiB, MM_NO_WAIT),
                   MM_ENOMEM);
  assert_int_equal(mm_test_stats(mm).evictions, 0);
  assert_int_equal(mm_acquire_execution(mm, 2, TiB + 1, MM_NO_WAIT), MM_OK);
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.evictions, 1025);
  assert_int_equal(s.storage_used_bytes, TiB - GiB);
  mm_destroy(mm);
}

/* ---- many threads over a small pool ------------------------------------ */

#define THREADS 12
#define OPS     20000
#define IDS     64

static mm_t *race_mm;
static atomic_int pins[IDS]; /* pins the test threads hold */
static atomic_long acquired[IDS], released[IDS], evicted[IDS];

static void race_callback(void *ctx, uint64_t id, void *data, size_t bytes) {
  (void)ctx, (void)data, (void)bytes;
  CHECK(id < IDS);
  CHECK(atomic_load(&pins[id]) == 0); /* never a pinned page */
  CHECK(mm_pin_storage(race_mm, id, NULL) == MM_ENOENT);
  mm_stats s;
  mm_get_stats(race_mm, &s);
  CHECK(s.execution_used_bytes + s.storage_used_bytes <= s.total_bytes);
  atomic_fetch_add(&evicted[id], 1);
}

static void *racer(void *arg) {
  uint64_t me = (uint64_t)(uintptr_t)arg, rng = me * 0x9e3779b97f4a7c15ull;
  int my_pins[IDS] = {0};
  size_t exec_held = 0;
  for (int op = 0; op < OPS; op++) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    uint64_t id = (rng >> 20) % IDS;
    mm_status st;
    switch (rng % 6) {
    case 0:
    case 1: /* a page miss */
      st = mm_acquire_storage(race_mm, id, 4096 * (1 + (rng >> 40) % 4),
                              MM_NO_WAIT);
      CHECK(st == MM_OK || st == MM_EEXIST || st == MM_ENOMEM);
      if (st == MM_OK)
        atomic_fetch_add(&acquired[id], 1);
      break;
    case 2: /* a hit: pin it */
      if (mm_pin_storage(race_mm, id, NULL) == MM_OK) {
        atomic_fetch_add(&pins[id], 1);
        my_pins[id]++;
      }
      break;
    case 3:
      for (uint64_t k = 0; k < IDS; k++)
        if (my_pins[k]) {
          atomic_fetch_sub(&pins[k], 1); /* before the unpin: see callback */
          CHECK(mm_unpin_storage(race_mm, k) == MM_OK);
          my_pins[k]--;
          break;
        }
      break;
    case 4:
      st = mm_release_storage(race_mm, id);
      CHECK(st == MM_OK || st == MM_EBUSY || st == MM_ENOENT);
      CHECK(!my_pins[id] || st == MM_EBUSY);
      if (st == MM_OK)
        atomic_fetch_add(&released[id], 1);
      break;
    case 5: /* execution borrows by eviction, then gives it back */
      if (exec_held) {
        CHECK(mm_release_all_execution(race_mm, me) == exec_held);
        exec_held = 0;
      } else if (mm_acquire_execution(race_mm, me, 16 * KiB, MM_NO_WAIT) ==
                 MM_OK) {
        exec_held = 16 * KiB;
      }
      break;
    }
  }
  for (uint64_t k = 0; k < IDS; k++)
    while (my_pins[k]--) {
      atomic_fetch_sub(&pins[k], 1);
      CHECK(mm_unpin_storage(race_mm, k) == MM_OK);
    }
  if (exec_held)
    CHECK(mm_release_all_execution(race_mm, me) == exec_held);
  return NULL;
}

static void run_race(int policy) {
  mm_config cfg = {.total_bytes = 256 * KiB,
                   .eviction = policy,
                   .storage_protected_bytes = 32 * KiB,
                   .on_evict = race_callback};
  assert_int_equal(mm_create(&cfg, &race_mm), MM_OK);
  for (int i = 0; i < IDS; i++) {
    atomic_store(&pins[i], 0);
    atomic_store(&acquired[i], 0);
    atomic_store(&released[i], 0);
    atomic_store(&evicted[i], 0);
  }
  atomic_store(&mm_test_failures, 0);
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++)
    pthread_create(&t[i], NULL, racer, (void *)(uintptr_t)(i + 1));
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  assert_int_equal(atomic_load(&mm_test_failures), 0);

  /* Every incarnation of every id ended exactly once: released, evicted
   * (one callback each), or still registered. */
  long total_evicted = 0;
  for (uint64_t id = 0; id < IDS; id++) {
    mm_status rel = mm_release_storage(race_mm, id);
    long live = rel == MM_OK;
    if (atomic_load(&acquired[id]) !=
        atomic_load(&released[id]) + atomic_load(&evicted[id]) + live)
      fprintf(stderr,
              "id %llu: acquired %ld released %ld evicted %ld "
              "final release %s\n",
              (unsigned long long)id, atomic_load(&acquired[id]),
              atomic_load(&released[id]), atomic_load(&evicted[id]),
              mm_strerror(rel));
    assert_int_equal(atomic_load(&acquired[id]), atomic_load(&released[id]) +
                                                     atomic_load(&evicted[id]) +
                                                     live);
    total_evicted += atomic_load(&evicted[id]);
  }
  mm_stats s = mm_test_stats(race_mm);
  assert_int_equal(s.evictions, (uint64_t)total_evicted);
  assert_true(s.evictions > 0);
  assert_int_equal(s.storage_used_bytes + s.execution_used_bytes, 0);
  assert_int_equal(s.storage_pinned_bytes, 0);
  printf("race (%s): %llu evictions\n", policy ? "sampled LRU" : "random",
         (unsigned long long)s.evictions);
  mm_destroy(race_mm);
}

static void test_many_threads_random(void **state) {
  (void)state;
  run_race(MM_EVICT_RANDOM);
}

static void test_many_threads_sampled_lru(void **state) {
  (void)state;
  run_race(MM_EVICT_SAMPLED_LRU);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_random_evicts_enough_and_only_unpinned),
      cmocka_unit_test(test_declined_request_evicts_nothing),
      cmocka_unit_test(test_execution_evicts_down_to_protected),
      cmocka_unit_test(test_fixed_seed_same_victims),
      cmocka_unit_test(test_sampled_lru_keeps_recently_pinned),
      cmocka_unit_test(test_id_taken_until_callback_returns),
      cmocka_unit_test(test_evicts_no_more_than_needed),
      cmocka_unit_test(test_protected_floor_at_terabytes),
      cmocka_unit_test(test_many_threads_random),
      cmocka_unit_test(test_many_threads_sampled_lru),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

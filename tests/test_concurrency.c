/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_concurrency.c -- many more threads than cores hammering one
 * manager.  Checked all the time:
 *
 *   - a shadow count of granted-and-not-yet-released bytes never exceeds
 *     the budget (it is raised after a grant returns and lowered before a
 *     release is made, so it never runs ahead of the manager's books:
 *     an over-commit is the only way for it to pass the budget);
 *   - every mm_get_stats picture obeys the pool rules (a monitor thread);
 *   - a page pinned by a thread can always be unpinned by it (so no pinned
 *     page was released);
 *   - bytes are conserved on an exec id shared by racing acquires,
 *     releases and release_alls;
 * and at the end every pool is back at its initial size with nothing
 * charged.
 */
#include "mm_test.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define THREADS      16
#define OPS          20000
#define TOTAL        (1 * MiB)
#define STORAGE_INIT (512 * KiB)

static mm_t *mm;
static atomic_long shadow; /* bytes granted and not yet released */
static atomic_bool stop_monitor;
static pthread_barrier_t start_line; /* all workers start together */

static uint64_t rng_next(uint64_t *s) { /* xorshift64* */
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * UINT64_C(2685821657736338717);
}

static void shadow_grant(size_t bytes) {
  long now = atomic_fetch_add(&shadow, (long)bytes) + (long)bytes;
  CHECK(now <= (long)TOTAL);
}

static void shadow_release(size_t bytes) {
  atomic_fetch_sub(&shadow, (long)bytes);
}

static void *monitor(void *arg) {
  int may_borrow = (int)(intptr_t)arg;
  while (!atomic_load(&stop_monitor)) {
    mm_stats s;
    mm_get_stats(mm, &s);
    size_t exec_init = s.total_bytes - STORAGE_INIT;
    CHECK(s.execution_pool_bytes + s.storage_pool_bytes == TOTAL);
    CHECK(s.execution_used_bytes <= s.execution_pool_bytes);
    CHECK(s.storage_used_bytes <= s.storage_pool_bytes);
    CHECK(s.execution_used_bytes + s.storage_used_bytes <= TOTAL);
    CHECK(!(s.execution_borrowed_bytes && s.storage_borrowed_bytes));
    CHECK(may_borrow || s.storage_used_bytes <= STORAGE_INIT);
    CHECK(s.execution_borrowed_bytes == 0 ||
          s.execution_pool_bytes == exec_init + s.execution_borrowed_bytes);
  }
  return NULL;
}

/* ---- each thread on its own ids ---------------------------------------- */

/* Pages are evicted by other threads' requests.  The callback hands the
 * page back to its owner's books (shadow, and a flag the owner reads),
 * and checks that its owner holds no pin on it and that it was not
 * evicted before. */
#define MY_PAGES 32
static atomic_int pins_held[THREADS][MY_PAGES];        /* by the owner */
static atomic_size_t evicted_bytes[THREADS][MY_PAGES]; /* 0: not evicted */

static void on_evict(void *ctx, uint64_t page_id, void *data, size_t bytes) {
  (void)ctx;
  (void)data;
  uint64_t me = page_id >> 32, k = page_id & 0xffffffff;
  CHECK(me < THREADS && k < MY_PAGES);
  CHECK(atomic_load(&pins_held[me][k]) == 0); /* never a pinned page */
  shadow_release(bytes);
  size_t was = atomic_exchange(&evicted_bytes[me][k], bytes);
  CHECK(was == 0); /* each eviction once */
}

static void *own_ids_worker(void *arg) {
  uint64_t me = (uint64_t)(intptr_t)arg;
  uint64_t rng = 0x9e3779b97f4a7c15ull * (me + 1);
  uint64_t exec_id = me;
  size_t held = 0;
  size_t page_bytes[MY_PAGES] = {0}; /* 0: not registered */
  bool lost[MY_PAGES] = {0}; /* answered as gone: evicted, or about to be */
  pthread_barrier_wait(&start_line);

  for (int op = 0; op < OPS; op++) {
    uint64_t r = rng_next(&rng);
    int k = (int)(r >> 40) % MY_PAGES;
    uint64_t page_id = (me << 32) | (uint64_t)k;
    if (atomic_load(&evicted_bytes[me][k])) { /* its callback has run */
      CHECK(lost[k] || page_bytes[k] == atomic_load(&evicted_bytes[me][k]));
      atomic_store(&evicted_bytes[me][k], 0);
      page_bytes[k] = 0;
      lost[k] = false;
    }
    if (lost[k])
      continue; /* wait for its callback before touching the id again */
    int pins = atomic_load(&pins_held[me][k]);
    mm_status st;
    switch (r % 6) {
    case 0: { /* execution acquire, 1 B .. 64 KiB */
      size_t b = 1 + (size_t)(r >> 20) % (64 * KiB);
      st = mm_acquire_execution(mm, exec_id, b, MM_NO_WAIT);
      CHECK(st == MM_OK || st == MM_ENOMEM);
      if (st == MM_OK) {
        shadow_grant(b);
        held += b;
      }
      break;
    }
    case 1: /* execution release of part */
      if (held) {
        size_t b = 1 + (size_t)(r >> 20) % held;
        shadow_release(b);
        CHECK(mm_release_execution(mm, exec_id, b) == MM_OK);
        held -= b;
      }
      CHECK(mm_release_execution(mm, exec_id, held + 1) == MM_EINVAL);
      break;
    case 2: { /* storage acquire */
      size_t b = 1 + (size_t)(r >> 20) % (32 * KiB);
      size_t rounded = (b + 4095) & ~(size_t)4095;
      if (page_bytes[k])
        break; /* registered, or evicted and not yet seen: leave it */
      st = mm_acquire_storage(mm, page_id, b, MM_NO_WAIT);
      /* MM_EEXIST: its last incarnation's eviction callback is still
       * running (the id stays taken until it returns). */
      CHECK(st == MM_OK || st == MM_ENOMEM || st == MM_EEXIST);
      if (st == MM_OK) {
        page_bytes[k] = rounded;
        shadow_grant(rounded); /* its eviction may already have released it:
                                  the shadow only runs behind */
      }
      break;
    }
    case 3: /* storage release */
      if (!page_bytes[k]) {
        CHECK(mm_release_storage(mm, page_id) == MM_ENOENT);
      } else if (pins) {
        CHECK(mm_release_storage(mm, page_id) == MM_EBUSY);
      } else {
        /* Lowered before the release (the freed bytes may be granted at
         * once); if an eviction got the page first, its callback lowers it
         * again: the shadow only ever runs behind. */
        shadow_release(page_bytes[k]);
        if ((st = mm_release_storage(mm, page_id)) == MM_OK) {
          page_bytes[k] = 0;
        } else {
          CHECK(st == MM_ENOENT); /* being evicted */
          lost[k] = true;
        }
      }
      break;
    case 4: /* pin */
      if (page_bytes[k]) {
        st = mm_pin_storage(mm, page_id, NULL);
        if (st == MM_OK)
          atomic_fetch_add(&pins_held[me][k], 1);
        else if (pins == 0 && st == MM_ENOENT)
          lost[k] = true; /* evicted (or claimed) while unpinned */
        else
          CHECK(false); /* a pinned page vanished */
      }
      break;
    case 5: /* unpin */
      if (pins) {
        atomic_fetch_sub(&pins_held[me][k], 1); /* before: see on_evict */
        CHECK(mm_unpin_storage(mm, page_id) == MM_OK);
      }
      break;
    }
  }
  /* Tidy up: everything this thread holds goes back. */
  for (int k = 0; k < MY_PAGES; k++) {
    uint64_t page_id = (me << 32) | (uint64_t)k;
    while (atomic_load(&pins_held[me][k])) {
      atomic_fetch_sub(&pins_held[me][k], 1);
      CHECK(mm_unpin_storage(mm, page_id) == MM_OK);
    }
    if (!page_bytes[k] && !lost[k])
      continue;
    /* Registered, or evicted by someone (whose callback may still be on
     * its way), or claimed by an eviction that was abandoned. */
    if (page_bytes[k])
      shadow_release(page_bytes[k]); /* before, as above */
    while (!atomic_exchange(&evicted_bytes[me][k], 0) &&
           mm_release_storage(mm, page_id) != MM_OK)
      sched_yield();
  }
  shadow_release(held);
  CHECK(mm_release_all_execution(mm, exec_id) == held);
  return NULL;
}

static void run_own_ids(int may_borrow) {
  mm_config cfg = {.total_bytes = TOTAL,
                   .storage_may_borrow = may_borrow,
                   .on_evict = on_evict};
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  memset(pins_held, 0, sizeof pins_held);
  memset(evicted_bytes, 0, sizeof evicted_bytes);
  atomic_store(&shadow, 0);
  atomic_store(&mm_test_failures, 0);
  atomic_store(&stop_monitor, false);
  pthread_t mon, t[THREADS];
  pthread_create(&mon, NULL, monitor, (void *)(intptr_t)may_borrow);
  for (int i = 0; i < THREADS; i++)
    pthread_create(&t[i], NULL, own_ids_worker, (void *)(intptr_t)i);
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  atomic_store(&stop_monitor, true);
  pthread_join(mon, NULL);

  assert_int_equal(atomic_load(&mm_test_failures), 0);
  mm_stats s = mm_test_stats(mm);
  mm_test_check_stats(&s, STORAGE_INIT, may_borrow);
  assert_int_equal(s.execution_used_bytes, 0);
  assert_int_equal(s.storage_used_bytes, 0);
  assert_int_equal(s.storage_pinned_bytes, 0);
  assert_int_equal(s.storage_pages, 0);
  assert_int_equal(s.execution_ids, 0);
  assert_int_equal(s.execution_pool_bytes, TOTAL - STORAGE_INIT);
  assert_int_equal(s.storage_pool_bytes, STORAGE_INIT);
  assert_true(s.granted > 0);
  assert_true(s.declined > 0);  /* the budget was really contended */
  assert_true(s.evictions > 0); /* and pages were evicted */
  mm_destroy(mm);
}

static void test_own_ids(void **state) {
  (void)state;
  run_own_ids(0);
}

static void test_own_ids_storage_may_borrow(void **state) {
  (void)state;
  run_own_ids(1);
}

/* ---- one exec id shared by all ----------------------------------------- */

#define SHARED_ID 77
static atomic_ullong acquired, released;

static void *shared_id_worker(void *arg) {
  uint64_t me = (uint64_t)(intptr_t)arg;
  uint64_t rng = 0xda942042e4dd58b5ull * (me + 1);
  pthread_barrier_wait(&start_line);
  for (int op = 0; op < OPS; op++) {
    uint64_t r = rng_next(&rng);
    size_t b = 1 + (size_t)(r >> 20) % (16 * KiB);
    switch (r % 8) {
    case 0: /* the task "ends": take everything */
      atomic_fetch_add(&released, mm_release_all_execution(mm, SHARED_ID));
      break;
    case 1:
    case 2:
    case 3: { /* release what may or may not still be there */
      mm_status st = mm_release_execution(mm, SHARED_ID, b);
      CHECK(st == MM_OK || st == MM_EINVAL);
      if (st == MM_OK)
        atomic_fetch_add(&released, b);
      break;
    }
    default: {
      mm_status st = mm_acquire_execution(mm, SHARED_ID, b, MM_NO_WAIT);
      CHECK(st == MM_OK || st == MM_ENOMEM);
      if (st == MM_OK)
        atomic_fetch_add(&acquired, b);
    }
    }
  }
  return NULL;
}

static void test_shared_exec_id(void **state) {
  (void)state;
  mm = mm_test_create(TOTAL, 0);
  atomic_store(&acquired, 0);
  atomic_store(&released, 0);
  atomic_store(&mm_test_failures, 0);
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++)
    pthread_create(&t[i], NULL, shared_id_worker, (void *)(intptr_t)i);
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  assert_int_equal(atomic_load(&mm_test_failures), 0);

  /* Conservation: what is left is exactly what was not given back. */
  size_t left = mm_execution_held(mm, SHARED_ID);
  assert_int_equal(atomic_load(&acquired) - atomic_load(&released), left);
  assert_int_equal(mm_test_stats(mm).execution_used_bytes, left);
  assert_int_equal(mm_release_all_execution(mm, SHARED_ID), left);
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.execution_used_bytes, 0);
  assert_int_equal(s.execution_ids, 0);
  mm_destroy(mm);
}

/* ---- pages shared by all ----------------------------------------------- */

#define SHARED_PAGES 8

static void *shared_pages_worker(void *arg) {
  uint64_t me = (uint64_t)(intptr_t)arg;
  uint64_t rng = 0x2545f4914f6cdd1dull * (me + 1);
  int pins[SHARED_PAGES] = {0};
  pthread_barrier_wait(&start_line);
  for (int op = 0; op < OPS; op++) {
    uint64_t r = rng_next(&rng);
    int k = (int)((r >> 32) % SHARED_PAGES);
    mm_status st;
    switch (r % 4) {
    case 0:
      st = mm_acquire_storage(mm, (uint64_t)k, 4096, MM_NO_WAIT);
      CHECK(st == MM_OK || st == MM_EEXIST || st == MM_ENOMEM);
      if (pins[k])
        CHECK(st == MM_EEXIST); /* a page I pin cannot have gone */
      break;
    case 1:
      st = mm_pin_storage(mm, (uint64_t)k, NULL);
      CHECK(st == MM_OK || st == MM_ENOENT);
      if (st == MM_OK)
        pins[k]++;
      else
        CHECK(pins[k] == 0);
      break;
    case 2:
      if (pins[k]) {
        CHECK(mm_unpin_storage(mm, (uint64_t)k) == MM_OK);
        pins[k]--;
      }
      break;
    case 3:
      st = mm_release_storage(mm, (uint64_t)k);
      CHECK(st == MM_OK || st == MM_EBUSY || st == MM_ENOENT);
      if (pins[k])
        CHECK(st == MM_EBUSY);
      break;
    }
  }
  for (int k = 0; k < SHARED_PAGES; k++)
    while (pins[k]--)
      CHECK(mm_unpin_storage(mm, (uint64_t)k) == MM_OK);
  return NULL;
}

static void test_shared_pages(void **state) {
  (void)state;
  mm = mm_test_create(TOTAL, 0);
  atomic_store(&mm_test_failures, 0);
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++)
    pthread_create(&t[i], NULL, shared_pages_worker, (void *)(intptr_t)i);
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  assert_int_equal(atomic_load(&mm_test_failures), 0);

  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.storage_pinned_bytes, 0);
  assert_int_equal(s.storage_used_bytes, s.storage_pages * 4096);
  for (uint64_t k = 0; k < SHARED_PAGES; k++) {
    mm_status st = mm_release_storage(mm, k);
    assert_true(st == MM_OK || st == MM_ENOENT);
  }
  s = mm_test_stats(mm);
  assert_int_equal(s.storage_used_bytes, 0);
  assert_int_equal(s.storage_pages, 0);
  mm_destroy(mm);
}

int main(void) {
  pthread_barrier_init(&start_line, NULL, THREADS);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_own_ids),
      cmocka_unit_test(test_own_ids_storage_may_borrow),
      cmocka_unit_test(test_shared_exec_id),
      cmocka_unit_test(test_shared_pages),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

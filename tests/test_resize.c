/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_resize.c -- the elastic budget: mm_set_budget growing (held
 * requests granted), shrinking (pages evicted, consumers asked, a wait
 * for a release, a deadline that passes with the budget still in force),
 * every refusal; external memory (granted, held, declined, given back,
 * busy); the poll; follow_cgroup over a fake cgroup tree.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mm_internal.h" /* mmi_budget_set_paths */
#include "mm_test.h"

#define PAGE (4 * KiB)

/* A manager at @total that may grow to @ceiling. */
static mm_t *create_at(size_t total, size_t ceiling) {
  mm_config cfg = {.total_bytes = total, .max_total_bytes = ceiling};
  cfg.max_execution_request = total;
  cfg.overtake_limit_ns = NEVER_STARVES;
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  return mm;
}

/* Use fits the budget the stats report, and the pools sum to it. */
static mm_stats fitting(mm_t *mm) {
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.execution_pool_bytes + s.storage_pool_bytes,
                   s.total_bytes);
  assert_true(s.execution_used_bytes + s.storage_used_bytes <= s.total_bytes);
  assert_int_equal(s.over_budget_bytes, 0);
  return s;
}

/* Storage pages 1 to @n of a page each, unpinned (128: all 512 KiB of a
 * 1 MiB budget's storage pool). */
static void fill_storage(mm_t *mm, uint64_t n) {
  for (uint64_t id = 1; id <= n; id++)
    assert_int_equal(mm_acquire_storage(mm, id, PAGE, MM_NO_WAIT), MM_OK);
}

static atomic_int outcome = -1;
static void on_grant(void *ctx, mm_status st) {
  (void)ctx;
  atomic_store(&outcome, st);
}

/* The pools keep their proportion; a held request that fits after a grow
 * is granted at once. */
static void test_grow_grants_held(void **state) {
  (void)state;
  mm_t *mm = create_at(1 * MiB, 4 * MiB);
  mm_stats s = fitting(mm);
  assert_int_equal(s.total_bytes, 1 * MiB);
  assert_int_equal(s.max_total_bytes, 4 * MiB);
  assert_int_equal(s.storage_pool_bytes, 512 * KiB);

  assert_int_equal(mm_acquire_execution(mm, 1, 1 * MiB, MM_NO_WAIT), MM_OK);
  atomic_store(&outcome, -1);
  uint64_t ticket;
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 2, 1 * MiB,
                                    MM_WAIT_FOREVER, on_grant, NULL, &ticket),
                   MM_EINPROGRESS);
  assert_int_equal(mm_set_budget(mm, 2 * MiB, MM_NO_WAIT), MM_OK);
  EVENTUALLY(atomic_load(&outcome) == MM_OK);
  s = fitting(mm);
  assert_int_equal(s.total_bytes, 2 * MiB);
  assert_int_equal(s.execution_used_bytes, 2 * MiB);
  assert_int_equal(s.budget_changes, 1);

  /* At the ceiling the split is the configured one. */
  assert_int_equal(mm_release_all_execution(mm, 1), 1 * MiB);
  assert_int_equal(mm_release_all_execution(mm, 2), 1 * MiB);
  assert_int_equal(mm_set_budget(mm, 4 * MiB, MM_NO_WAIT), MM_OK);
  s = fitting(mm);
  assert_int_equal(s.storage_pool_bytes, 2 * MiB);
  assert_int_equal(s.execution_pool_bytes, 2 * MiB);
  mm_destroy(mm);
}

static atomic_int evicted;
static void count_evict(void *ctx, uint64_t id, void *data, size_t bytes) {
  (void)ctx, (void)id, (void)data, (void)bytes;
  atomic_fetch_add(&evicted, 1);
}

/* A shrink evicts unpinned pages until use fits; pinned ones stay. */
static void test_shrink_evicts(void **state) {
  (void)state;
  mm_config cfg = {.total_bytes = 1 * MiB, .on_evict = count_evict};
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  atomic_store(&evicted, 0);
  fill_storage(mm, 128); /* storage's 512 KiB, full */
  assert_int_equal(mm_pin_storage(mm, 1, NULL), MM_OK);
  assert_int_equal(mm_set_budget(mm, 256 * KiB, MM_NO_WAIT), MM_OK);
  mm_stats s = fitting(mm);
  assert_int_equal(s.total_bytes, 256 * KiB);
  assert_true(s.storage_used_bytes <= s.storage_pool_bytes);
  assert_int_equal(s.storage_pool_bytes, 128 * KiB);
  assert_int_equal(atomic_load(&evicted), 128 - 32);
  assert_int_equal(mm_pin_storage(mm, 1, NULL),
                   MM_OK); /* the pinned one stayed */
  /* The new budget holds: storage is full at its new size. */
  assert_int_equal(mm_acquire_storage(mm, 1000, PAGE, MM_NO_WAIT), MM_OK);
  assert_int_equal(atomic_load(&evicted), 128 - 32 + 1);
  mm_destroy(mm);
}

/* What is over after a shrink is evicted from storage only down to its
 * own pool; the rest for execution, within the protected floor. */
static void test_shrink_keeps_floor(void **state) {
  (void)state;
  for (int borrow = 0; borrow < 2; borrow++) {
    mm_config cfg = {.total_bytes = 1 * MiB, .storage_may_borrow = borrow};
    cfg.storage_protected_bytes = 256 * KiB;
    cfg.max_execution_request = 1 * MiB;
    mm_t *mm;
    assert_int_equal(mm_create(&cfg, &mm), MM_OK);
    fill_storage(mm, 128);
    assert_int_equal(mm_acquire_execution(mm, 1, 512 * KiB, MM_NO_WAIT), MM_OK);
    assert_int_equal(mm_set_budget(mm, 640 * KiB, MM_NO_WAIT), MM_ETIMEDOUT);
    mm_stats s = mm_test_stats(mm);
    assert_int_equal(s.storage_used_bytes, 256 * KiB); /* the floor */
    assert_int_equal(s.over_budget_bytes, 128 * KiB);
    mm_destroy(mm);
  }
}

/* An eviction that starts while another evicts what is over covers only
 * the rest: nothing is evicted twice over. */
static struct {
  mm_t *mm;
  atomic_int calls, go, done;
} twice;

static void *acquire_meanwhile(void *arg) {
  (void)arg;
  int64_t until = now_ns() + 5000 * MS;
  while (!atomic_load(&twice.go) && now_ns() < until)
    sleep_ms(1);
  CHECK(mm_acquire_execution(twice.mm, 2, 4 * KiB, MM_NO_WAIT) == MM_OK);
  atomic_store(&twice.done, 1);
  return NULL;
}

static void evict_and_wait(void *ctx, uint64_t id, void *data, size_t bytes) {
  (void)ctx, (void)id, (void)data, (void)bytes;
  if (atomic_fetch_add(&twice.calls, 1) != 0)
    return;
  /* The first victim of the shrink: the other thread acquires now. */
  atomic_store(&twice.go, 1);
  int64_t until = now_ns() + 5000 * MS;
  while (!atomic_load(&twice.done) && now_ns() < until)
    sleep_ms(1);
  CHECK(atomic_load(&twice.done));
}

static void test_over_evicted_once(void **state) {
  (void)state;
  memset(&twice, 0, sizeof twice);
  mm_config cfg = {.total_bytes = 1 * MiB, .on_evict = evict_and_wait};
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  twice.mm = mm;
  fill_storage(mm, 128);
  assert_int_equal(mm_acquire_execution(mm, 1, 512 * KiB, MM_NO_WAIT), MM_OK);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, acquire_meanwhile, NULL), 0);
  /* 256 KiB over: storage's own 128 KiB, then 128 KiB for execution. */
  assert_int_equal(mm_set_budget(mm, 768 * KiB, 5000 * MS), MM_OK);
  pthread_join(t, NULL);
  assert_int_equal(atomic_load(&mm_test_failures), 0);
  mm_stats s = fitting(mm);
  /* 64 pages for what was over, one for the 4 KiB: a page to spare. */
  assert_true(s.evictions >= 65 && s.evictions <= 66);
  mm_destroy(mm);
}

/* The resize lock is never held across a dispatch pass: a grow's pass
 * runs eviction callbacks after it is let go. */
static mm_t *lock_mm;
static atomic_int lock_free_in_callback;
static void check_unlocked(void *ctx, uint64_t id, void *data, size_t bytes) {
  (void)ctx, (void)id, (void)data, (void)bytes;
  if (pthread_mutex_trylock(&lock_mm->resize) == 0) {
    pthread_mutex_unlock(&lock_mm->resize);
    atomic_fetch_add(&lock_free_in_callback, 1);
  } else {
    CHECK(!"the resize lock is held in an eviction callback");
  }
}

static void test_grow_evicts_unlocked(void **state) {
  (void)state;
  mm_config cfg = {.total_bytes = 1 * MiB, .max_total_bytes = 2 * MiB};
  cfg.on_evict = check_unlocked;
  cfg.max_execution_request = 1 * MiB;
  cfg.overtake_limit_ns = NEVER_STARVES;
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  lock_mm = mm;
  atomic_store(&lock_free_in_callback, 0);
  fill_storage(mm, 128); /* storage's 512 KiB */
  assert_int_equal(mm_acquire_execution(mm, 1, 512 * KiB, MM_NO_WAIT), MM_OK);
  atomic_store(&outcome, -1);
  uint64_t ticket;
  /* Held now; after the grow it fits only by evicting. */
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 2, 768 * KiB,
                                    MM_WAIT_FOREVER, on_grant, NULL, &ticket),
                   MM_EINPROGRESS);
  assert_int_equal(mm_set_budget(mm, 1536 * KiB, MM_NO_WAIT), MM_OK);
  EVENTUALLY(atomic_load(&outcome) == MM_OK);
  assert_true(atomic_load(&lock_free_in_callback) > 0);
  assert_int_equal(atomic_load(&mm_test_failures), 0);
  mm_destroy(mm);
}

/* Memory in use past a shrink: the call times out with the new budget in
 * force; nothing is granted past it, spare quota included; releases bring
 * use back, and then requests fit again. */
static void test_shrink_times_out(void **state) {
  (void)state;
  mm_t *mm = create_at(1 * MiB, 1 * MiB);
  mm_consumer *c;
  assert_int_equal(mm_consumer_open(mm, 7, &c), MM_OK);
  assert_int_equal(mm_consumer_acquire(c, 4 * KiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_consumer_release(c, 4 * KiB), MM_OK); /* spare left */
  assert_int_equal(mm_acquire_execution(mm, 1, 768 * KiB, MM_NO_WAIT), MM_OK);
  int64_t t0 = now_ns();
  assert_int_equal(mm_set_budget(mm, 512 * KiB, 20 * MS), MM_ETIMEDOUT);
  assert_true(now_ns() - t0 >= 20 * MS);
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.total_bytes, 512 * KiB);
  assert_int_equal(s.over_budget_bytes, 256 * KiB);
  assert_int_equal(s.execution_credit_bytes, 0); /* spare given back */
  assert_int_equal(mm_consumer_acquire(c, 4 * KiB, MM_NO_WAIT), MM_ENOMEM);
  assert_int_equal(mm_acquire_storage(mm, 1, PAGE, MM_NO_WAIT), MM_ENOMEM);
  assert_int_equal(mm_release_execution(mm, 1, 128 * KiB), MM_OK);
  assert_int_equal(mm_acquire_execution(mm, 2, 4 * KiB, MM_NO_WAIT),
                   MM_ENOMEM); /* still past it */
  assert_int_equal(mm_release_execution(mm, 1, 128 * KiB), MM_OK);
  s = fitting(mm);
  assert_int_equal(s.execution_used_bytes, 512 * KiB);
  assert_int_equal(mm_release_execution(mm, 1, 4 * KiB), MM_OK);
  assert_int_equal(mm_consumer_acquire(c, 4 * KiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_consumer_close(c), MM_OK);
  mm_destroy(mm);
}

struct releaser {
  mm_t *mm;
  size_t at; /* release once the budget reads this */
};

static void *release_later(void *arg) {
  struct releaser *r = arg;
  int64_t until = now_ns() + 5000 * MS;
  while (mm_test_stats(r->mm).total_bytes != r->at && now_ns() < until)
    sleep_ms(1);
  CHECK(mm_release_execution(r->mm, 1, 512 * KiB) == MM_OK);
  return NULL;
}

/* A shrink waits for a release of memory in use, and returns once use
 * fits. */
static void test_shrink_waits_for_release(void **state) {
  (void)state;
  mm_t *mm = create_at(1 * MiB, 1 * MiB);
  assert_int_equal(mm_acquire_execution(mm, 1, 768 * KiB, MM_NO_WAIT), MM_OK);
  struct releaser r = {mm, 512 * KiB};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, release_later, &r), 0);
  assert_int_equal(mm_set_budget(mm, 512 * KiB, 10000 * MS), MM_OK);
  pthread_join(t, NULL);
  assert_int_equal(atomic_load(&mm_test_failures), 0);
  fitting(mm);
  mm_destroy(mm);
}

static size_t give_all(void *ctx, mm_consumer *c, size_t wanted) {
  atomic_fetch_add((atomic_int *)ctx, 1);
  size_t held = mm_consumer_held(c);
  size_t give = wanted < held ? wanted : held;
  CHECK(mm_consumer_release(c, give) == MM_OK);
  return give;
}

/* A shrink asks consumers with a reclaim callback. */
static void test_shrink_reclaims(void **state) {
  (void)state;
  mm_t *mm = create_at(1 * MiB, 1 * MiB);
  mm_consumer *c;
  atomic_int calls = 0;
  assert_int_equal(mm_consumer_open(mm, 3, &c), MM_OK);
  assert_int_equal(mm_consumer_acquire(c, 768 * KiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_consumer_set_reclaim(c, give_all, &calls), MM_OK);
  assert_int_equal(mm_set_budget(mm, 512 * KiB, 5000 * MS), MM_OK);
  assert_int_equal(atomic_load(&calls), 1);
  assert_int_equal(mm_consumer_held(c), 512 * KiB);
  fitting(mm);
  assert_int_equal(mm_consumer_close(c), MM_OK);
  mm_destroy(mm);
}

/* A held request too large for the shrunk budget ends with MM_ENOMEM, and
 * a new one is declined so. */
static void test_shrink_ends_too_large(void **state) {
  (void)state;
  mm_t *mm = create_at(1 * MiB, 1 * MiB);
  assert_int_equal(mm_acquire_execution(mm, 1, 512 * KiB, MM_NO_WAIT), MM_OK);
  atomic_store(&outcome, -1);
  uint64_t ticket;
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 2, 768 * KiB,
                                    MM_WAIT_FOREVER, on_grant, NULL, &ticket),
                   MM_EINPROGRESS);
  assert_int_equal(mm_set_budget(mm, 512 * KiB, MM_NO_WAIT), MM_OK);
  EVENTUALLY(atomic_load(&outcome) == MM_ENOMEM);
  assert_int_equal(mm_acquire_execution(mm, 3, 768 * KiB, 1000 * MS),
                   MM_ENOMEM);
  mm_destroy(mm);
}

static void refuse_in_callback(void *ctx, uint64_t id, void *data,
                               size_t bytes) {
  (void)id, (void)data, (void)bytes;
  mm_t *mm = *(mm_t **)ctx;
  CHECK(mm_set_budget(mm, 1 * MiB, MM_NO_WAIT) == MM_EINVAL);
  CHECK(mm_external_set(mm, 1, 4 * KiB, MM_NO_WAIT) == MM_EINVAL);
}

/* Every refusal leaves the budget as it was. */
static void test_refusals(void **state) {
  (void)state;
  mm_t *mm = NULL;
  mm_config cfg = {.total_bytes = 1 * MiB, .max_total_bytes = 2 * MiB};
  cfg.storage_protected_bytes = 128 * KiB;
  cfg.on_evict = refuse_in_callback;
  cfg.evict_ctx = &mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  assert_int_equal(mm_set_budget(NULL, 1 * MiB, MM_NO_WAIT), MM_EINVAL);
  assert_int_equal(mm_set_budget(mm, 2 * MiB + 1, MM_NO_WAIT), MM_EINVAL);
  assert_int_equal(mm_set_budget(mm, PAGE, MM_NO_WAIT), MM_EINVAL);
  assert_int_equal(mm_set_budget(mm, 0, MM_NO_WAIT), MM_EINVAL);
  /* storage would be 127 KiB, below the protected 128 KiB */
  assert_int_equal(mm_set_budget(mm, 254 * KiB, MM_NO_WAIT), MM_EINVAL);
  assert_int_equal(mm_set_budget(mm, 1 * MiB, -2), MM_EINVAL);
  /* the guarantees need the execution pool */
  mm_consumer *c;
  assert_int_equal(mm_consumer_open(mm, 9, &c), MM_OK);
  assert_int_equal(mm_consumer_set_limits(c, 400 * KiB, 0), MM_OK);
  assert_int_equal(mm_set_budget(mm, 600 * KiB, MM_NO_WAIT), MM_EINVAL);
  assert_int_equal(mm_set_budget(mm, 800 * KiB, MM_NO_WAIT), MM_OK);
  /* ... and a guarantee past the execution pool in force is refused */
  assert_int_equal(mm_consumer_set_limits(c, 401 * KiB, 0), MM_ENOMEM);
  assert_int_equal(mm_consumer_close(c), MM_OK);
  mm_stats s = fitting(mm);
  assert_int_equal(s.total_bytes, 800 * KiB);
  assert_int_equal(s.budget_changes, 1);
  /* From an eviction callback: refused. */
  fill_storage(mm, 100);
  assert_int_equal(mm_acquire_execution(mm, 1, 500 * KiB, MM_NO_WAIT), MM_OK);
  assert_true(mm_test_stats(mm).evictions > 0);
  assert_int_equal(atomic_load(&mm_test_failures), 0);
  mm_destroy(mm);
}

/* External memory counts against the budget as execution memory: granted
 * by borrowing and evicting, held, declined, given back. */
static void test_external(void **state) {
  (void)state;
  mm_t *mm = create_at(1 * MiB, 1 * MiB);
  assert_int_equal(mm_external_set(mm, 5, 600 * KiB, MM_NO_WAIT), MM_OK);
  mm_stats s = fitting(mm);
  assert_int_equal(s.external_bytes, 600 * KiB);
  assert_int_equal(s.execution_used_bytes, 600 * KiB);
  assert_int_equal(s.execution_borrowed_bytes, 88 * KiB);
  /* not an exec id's: mm_release_all_execution does not touch it */
  assert_int_equal(mm_release_all_execution(mm, 5), 0);
  assert_int_equal(mm_test_stats(mm).external_bytes, 600 * KiB);
  /* growth that does not fit: declined, then held until a release */
  assert_int_equal(mm_acquire_execution(mm, 1, 300 * KiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_external_set(mm, 5, 800 * KiB, MM_NO_WAIT), MM_ENOMEM);
  assert_int_equal(mm_external_set(mm, 5, 800 * KiB, 10 * MS), MM_ETIMEDOUT);
  assert_int_equal(mm_test_stats(mm).external_bytes, 600 * KiB);
  assert_int_equal(mm_release_execution(mm, 1, 300 * KiB), MM_OK);
  assert_int_equal(mm_external_set(mm, 5, 800 * KiB, 5000 * MS), MM_OK);
  /* a second source; shrinking wakes a held request */
  assert_int_equal(mm_external_set(mm, 6, 200 * KiB, MM_NO_WAIT), MM_OK);
  atomic_store(&outcome, -1);
  uint64_t ticket;
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 2, 100 * KiB,
                                    MM_WAIT_FOREVER, on_grant, NULL, &ticket),
                   MM_EINPROGRESS);
  assert_int_equal(mm_external_set(mm, 6, 0, MM_NO_WAIT), MM_OK);
  EVENTUALLY(atomic_load(&outcome) == MM_OK);
  s = fitting(mm);
  assert_int_equal(s.external_bytes, 800 * KiB);
  /* refusals */
  assert_int_equal(mm_external_set(NULL, 5, 0, MM_NO_WAIT), MM_EINVAL);
  assert_int_equal(mm_external_set(mm, 5, 2 * MiB, MM_NO_WAIT), MM_EINVAL);
  assert_int_equal(mm_external_set(mm, 5, 0, -7), MM_EINVAL);
  assert_int_equal(mm_external_set(mm, 99, 0, MM_NO_WAIT), MM_OK); /* none */
  assert_int_equal(mm_external_set(mm, 5, 0, MM_NO_WAIT), MM_OK);
  s = fitting(mm);
  assert_int_equal(s.external_bytes, 0);
  assert_int_equal(s.execution_used_bytes, 100 * KiB);
  mm_destroy(mm);
}

struct busy {
  mm_t *mm;
  atomic_int started;
};

static void *grow_held(void *arg) {
  struct busy *b = arg;
  atomic_store(&b->started, 1);
  CHECK(mm_external_set(b->mm, 8, 1 * MiB, 5000 * MS) == MM_OK);
  return NULL;
}

/* Two calls for one source at once: the second answers MM_EBUSY. */
static void test_external_busy(void **state) {
  (void)state;
  mm_t *mm = create_at(1 * MiB, 1 * MiB);
  assert_int_equal(mm_acquire_execution(mm, 1, 4 * KiB, MM_NO_WAIT), MM_OK);
  struct busy b = {mm, 0};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, grow_held, &b), 0);
  EVENTUALLY(mm_test_stats(mm).held_now == 1); /* its growth is held */
  assert_int_equal(mm_external_set(mm, 8, 4 * KiB, MM_NO_WAIT), MM_EBUSY);
  assert_int_equal(mm_release_execution(mm, 1, 4 * KiB), MM_OK);
  pthread_join(t, NULL);
  assert_int_equal(atomic_load(&mm_test_failures), 0);
  assert_int_equal(mm_test_stats(mm).external_bytes, 1 * MiB);
  mm_destroy(mm);
}

static atomic_size_t polled;
static size_t poll_it(void *ctx) {
  (void)ctx;
  return atomic_load(&polled);
}

/* The poll: memory found is counted at once, even past the budget, and
 * then nothing is granted until it fits again. */
static void test_external_poll(void **state) {
  (void)state;
  atomic_store(&polled, 0);
  mm_config cfg = {.total_bytes = 1 * MiB,
                   .external_poll = poll_it,
                   .external_poll_ns = 1 * MS};
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  assert_int_equal(mm_acquire_execution(mm, 1, 512 * KiB, MM_NO_WAIT), MM_OK);
  atomic_store(&polled, 256 * KiB);
  EVENTUALLY(mm_test_stats(mm).external_polled_bytes == 256 * KiB);
  assert_int_equal(mm_test_stats(mm).external_bytes, 256 * KiB);
  atomic_store(&polled, 768 * KiB);
  EVENTUALLY(mm_test_stats(mm).external_polled_bytes == 768 * KiB);
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.over_budget_bytes, 256 * KiB);
  assert_int_equal(mm_acquire_execution(mm, 2, 4 * KiB, MM_NO_WAIT), MM_ENOMEM);
  atomic_store(&polled, 0);
  EVENTUALLY(mm_test_stats(mm).external_polled_bytes == 0);
  fitting(mm);
  assert_int_equal(mm_acquire_execution(mm, 2, 4 * KiB, MM_NO_WAIT), MM_OK);
  mm_destroy(mm);
}

/* Written whole, then renamed: the service thread never reads half. */
static void put_file(const char *dir, const char *name, const char *text) {
  char path[512], tmp[520];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  assert_int_equal(rename(tmp, path), 0);
}

/* follow_cgroup: the budget follows the cgroup's limit as it changes. */
static void test_follow_cgroup(void **state) {
  (void)state;
  char root[] = "/tmp/mm-follow-XXXXXX";
  assert_non_null(mkdtemp(root));
  char proc[600], cg[600];
  snprintf(proc, sizeof proc, "%s/cgroup", root);
  put_file(root, "cgroup", "0::/db\n");
  put_file(root, "cgroup.controllers", "memory\n");
  snprintf(cg, sizeof cg, "%s/db", root);
  assert_int_equal(mkdir(cg, 0700), 0);
  put_file(cg, "memory.max", "4194304\n");
  put_file(cg, "memory.high", "max\n");
  mmi_budget_set_paths(proc, root);

  mm_config cfg = {.follow_cgroup = true, .follow_cgroup_ns = 1 * MS};
  cfg.max_total_bytes = 3 * MiB;
  cfg.auto_fraction = 0.5;
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.total_bytes, 2 * MiB);
  assert_int_equal(s.budget_source, MM_BUDGET_CGROUP_V2);
  put_file(cg, "memory.high", "2097152\n"); /* lower: 1 MiB budget */
  EVENTUALLY(mm_test_stats(mm).total_bytes == 1 * MiB);
  put_file(cg, "memory.high", "max\n");
  put_file(cg, "memory.max", "16777216\n"); /* above the ceiling */
  EVENTUALLY(mm_test_stats(mm).total_bytes == 3 * MiB);
  assert_true(mm_test_stats(mm).budget_changes >= 2);
  mm_destroy(mm);
  mmi_budget_set_paths(NULL, NULL);

  /* A configured budget has nothing to follow. */
  mm_config bad = {.total_bytes = 1 * MiB, .follow_cgroup = true};
  assert_int_equal(mm_create(&bad, &mm), MM_EINVAL);
  bad.total_bytes = 0;
  bad.follow_cgroup_ns = -1;
  assert_int_equal(mm_create(&bad, &mm), MM_EINVAL);
  mm_config low = {.total_bytes = 2 * MiB, .max_total_bytes = 1 * MiB};
  assert_int_equal(mm_create(&low, &mm), MM_EINVAL);

  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_grow_grants_held),
      cmocka_unit_test(test_shrink_evicts),
      cmocka_unit_test(test_shrink_times_out),
      cmocka_unit_test(test_shrink_keeps_floor),
      cmocka_unit_test(test_over_evicted_once),
      cmocka_unit_test(test_grow_evicts_unlocked),
      cmocka_unit_test(test_shrink_waits_for_release),
      cmocka_unit_test(test_shrink_reclaims),
      cmocka_unit_test(test_shrink_ends_too_large),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_external),
      cmocka_unit_test(test_external_busy),
      cmocka_unit_test(test_external_poll),
      cmocka_unit_test(test_follow_cgroup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

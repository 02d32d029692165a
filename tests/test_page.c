/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_page.c -- page handles: a page reached through its handle, the
 * handle outliving its page, and pins through handles and ids agreeing.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mm_test.h"

#define PAGE 4096

static atomic_int evicted;

static void count_evict(void *ctx, uint64_t page_id, void *data, size_t size) {
  (void)ctx;
  (void)page_id;
  (void)data;
  (void)size;
  atomic_fetch_add(&evicted, 1);
}

/* A manager whose storage pool holds @pages pages of 4 KiB. */
static mm_t *create(unsigned pages) {
  mm_config cfg = {0};
  cfg.total_bytes = 2 * (size_t)pages * PAGE;
  cfg.on_evict = count_evict;
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  atomic_store(&evicted, 0);
  return mm;
}

/* Born pinned; pins and unpins through the handle; released only when no
 * pin is left; gone for ever after, and the id free for a new page. */
static void test_handle_life(void **state) {
  (void)state;
  mm_t *mm = create(16);
  mm_page *pg = NULL;
  assert_int_equal(mm_page_alloc(mm, 7, 100, MM_NO_WAIT, &pg), MM_OK);
  assert_non_null(pg);
  char *data = mm_page_data(pg);
  assert_non_null(data);
  memset(data, 0xab, PAGE); /* the whole page is ours */
  assert_int_equal(mm_test_stats(mm).storage_pinned_bytes, PAGE);
  assert_int_equal(mm_page_pin(pg), MM_OK);
  assert_int_equal(mm_page_release(pg), MM_EBUSY);
  assert_int_equal(mm_page_unpin(pg), MM_OK);
  assert_int_equal(mm_test_stats(mm).storage_pinned_bytes, PAGE);
  assert_int_equal(mm_page_unpin(pg), MM_OK); /* the born pin */
  assert_int_equal(mm_test_stats(mm).storage_pinned_bytes, 0);
  assert_int_equal(mm_page_unpin(pg), MM_EINVAL); /* no pin left */
  assert_int_equal(mm_test_stats(mm).storage_used_bytes, PAGE);
  assert_int_equal(mm_page_release(pg), MM_OK);
  assert_int_equal(mm_test_stats(mm).storage_used_bytes, 0);
  /* Gone: every call answers so, and the handle is still safe. */
  assert_int_equal(mm_page_pin(pg), MM_ENOENT);
  assert_int_equal(mm_page_unpin(pg), MM_ENOENT);
  assert_int_equal(mm_page_release(pg), MM_ENOENT);
  assert_null(mm_page_data(pg));
  assert_int_equal(mm_pin_storage(mm, 7, NULL), MM_ENOENT);
  /* The id is free: a new page, another handle; the old one stays gone. */
  mm_page *again;
  assert_int_equal(mm_page_alloc(mm, 7, PAGE, MM_NO_WAIT, &again), MM_OK);
  assert_ptr_not_equal(again, pg);
  assert_int_equal(mm_page_pin(pg), MM_ENOENT);
  assert_int_equal(mm_page_unpin(again), MM_OK);
  mm_page_put(pg);
  mm_page_put(again); /* the page stays registered, reached by its id */
  assert_int_equal(mm_pin_storage(mm, 7, NULL), MM_OK);
  assert_int_equal(mm_unpin_storage(mm, 7), MM_OK);
  assert_int_equal(mm_release_storage(mm, 7), MM_OK);
  mm_destroy(mm);
}

/* Pins through the handle and through the id are the same pins. */
static void test_handle_and_id_agree(void **state) {
  (void)state;
  mm_t *mm = create(16);
  mm_page *pg;
  assert_int_equal(mm_page_alloc(mm, 3, PAGE, MM_NO_WAIT, &pg), MM_OK);
  void *data;
  assert_int_equal(mm_pin_storage(mm, 3, &data), MM_OK);
  assert_ptr_equal(data, mm_page_data(pg));
  assert_int_equal(mm_page_unpin(pg), MM_OK);
  assert_int_equal(mm_unpin_storage(mm, 3), MM_OK);
  assert_int_equal(mm_unpin_storage(mm, 3), MM_EINVAL);
  assert_int_equal(mm_page_unpin(pg), MM_EINVAL);
  assert_int_equal(mm_release_storage(mm, 3), MM_OK);
  assert_int_equal(mm_page_pin(pg), MM_ENOENT);
  assert_int_equal(mm_page_alloc(mm, 3, PAGE, MM_NO_WAIT, NULL), MM_EINVAL);
  mm_page *dup = NULL;
  assert_int_equal(mm_page_alloc(mm, 4, PAGE, MM_NO_WAIT, &dup), MM_OK);
  mm_page *other = (mm_page *)(uintptr_t)1;
  assert_int_equal(mm_page_alloc(mm, 4, PAGE, MM_NO_WAIT, &other), MM_EEXIST);
  assert_ptr_equal(other, (mm_page *)(uintptr_t)1); /* untouched */
  assert_int_equal(mm_page_unpin(dup), MM_OK);
  mm_page_put(dup);
  mm_page_put(pg);
  mm_destroy(mm);
}

/* A handle outlives its page's eviction: the page is evicted (its
 * callback runs), and the handle then reads it as gone. */
static void test_handle_outlives_eviction(void **state) {
  (void)state;
  mm_t *mm = create(1); /* room for one page */
  mm_page *pg;
  assert_int_equal(mm_page_alloc(mm, 1, PAGE, MM_NO_WAIT, &pg), MM_OK);
  mm_page *next;
  /* Pinned: the second page cannot evict it. */
  assert_int_equal(mm_page_alloc(mm, 2, PAGE, MM_NO_WAIT, &next), MM_ENOMEM);
  assert_int_equal(mm_page_unpin(pg), MM_OK);
  assert_int_equal(mm_page_alloc(mm, 2, PAGE, MM_NO_WAIT, &next), MM_OK);
  assert_int_equal(atomic_load(&evicted), 1);
  assert_int_equal(mm_page_pin(pg), MM_ENOENT);
  assert_int_equal(mm_page_release(pg), MM_ENOENT);
  assert_null(mm_page_data(pg));
  mm_page_put(pg);
  assert_int_equal(mm_page_unpin(next), MM_OK);
  assert_int_equal(mm_page_release(next), MM_OK);
  mm_page_put(next);
  mm_destroy(mm);
}

static void test_bad_calls(void **state) {
  (void)state;
  assert_int_equal(mm_page_pin(NULL), MM_EINVAL);
  assert_int_equal(mm_page_unpin(NULL), MM_EINVAL);
  assert_int_equal(mm_page_release(NULL), MM_EINVAL);
  assert_null(mm_page_data(NULL));
  mm_page_put(NULL);
  mm_page *pg;
  assert_int_equal(mm_page_alloc(NULL, 1, PAGE, MM_NO_WAIT, &pg), MM_EINVAL);
  mm_t *mm = create(4);
  assert_int_equal(mm_page_alloc(mm, 1, 0, MM_NO_WAIT, &pg), MM_EINVAL);
  assert_int_equal(mm_page_alloc(mm, 1, PAGE, -5, &pg), MM_EINVAL);
  assert_int_equal(mm_test_stats(mm).storage_used_bytes, 0);
  mm_destroy(mm);
}

/* Many threads pin and unpin one page through its handle while another
 * tries to release it: every release while pinned is refused, no pin is
 * lost, and once the pins are gone the release wins. */
#define THREADS 8
#define ROUNDS  20000
static mm_page *shared;
static atomic_int running;

static void *pinner(void *arg) {
  (void)arg;
  for (int i = 0; i < ROUNDS; i++) {
    CHECK(mm_page_pin(shared) == MM_OK);
    CHECK(mm_page_unpin(shared) == MM_OK);
  }
  atomic_fetch_sub(&running, 1);
  return NULL;
}

static void test_threads_share_a_handle(void **state) {
  (void)state;
  mm_t *mm = create(16);
  assert_int_equal(mm_page_alloc(mm, 9, PAGE, MM_NO_WAIT, &shared), MM_OK);
  atomic_store(&mm_test_failures, 0);
  atomic_store(&running, THREADS);
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++)
    pthread_create(&t[i], NULL, pinner, NULL);
  /* The born pin is held throughout: every release is refused. */
  while (atomic_load(&running))
    CHECK(mm_page_release(shared) == MM_EBUSY);
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  assert_int_equal(atomic_load(&mm_test_failures), 0);
  assert_int_equal(mm_test_stats(mm).storage_pinned_bytes, PAGE);
  assert_int_equal(mm_page_unpin(shared), MM_OK);
  assert_int_equal(mm_test_stats(mm).storage_pinned_bytes, 0);
  assert_int_equal(mm_page_release(shared), MM_OK);
  mm_page_put(shared);
  mm_destroy(mm);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_handle_life),
      cmocka_unit_test(test_handle_and_id_agree),
      cmocka_unit_test(test_handle_outlives_eviction),
      cmocka_unit_test(test_bad_calls),
      cmocka_unit_test(test_threads_share_a_handle),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

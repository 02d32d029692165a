/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_no_mutex.c -- the acquire and release paths take no lock.
 *
 * This program defines pthread_mutex_lock and its relatives itself.  The
 * dynamic linker binds every call to them -- from the manager and from the
 * libraries under it (liburcu, libc's callers) -- to these definitions
 * first, which count the calls a watched thread makes and then forward to
 * the real functions.  A thread warms up (its first RCU read section
 * registers it with liburcu, under liburcu's mutex: that call is counted
 * and proves the interposition works), then runs every acquire, release,
 * pin and unpin path many times while watched: the count must stay zero.
 */
#define _GNU_SOURCE
#include "mm_test.h"

#include <dlfcn.h>
#include <pthread.h>

static _Thread_local int watching;
static _Thread_local long locks_taken;

#define INTERPOSE(ret, name, params, args)                                     \
  ret name params {                                                            \
    static ret(*real) params;                                                  \
    if (!real)                                                                 \
      real = (ret(*) params)dlsym(RTLD_NEXT, #name);                           \
    if (watching)                                                              \
      locks_taken++;                                                           \
    return real args;                                                          \
  }

INTERPOSE(int, pthread_mutex_lock, (pthread_mutex_t * m), (m))
INTERPOSE(int, pthread_mutex_trylock, (pthread_mutex_t * m), (m))
INTERPOSE(int, pthread_rwlock_rdlock, (pthread_rwlock_t * l), (l))
INTERPOSE(int, pthread_rwlock_wrlock, (pthread_rwlock_t * l), (l))
INTERPOSE(int, pthread_spin_lock, (pthread_spinlock_t * l), (l))
INTERPOSE(int, pthread_cond_wait, (pthread_cond_t * c, pthread_mutex_t *m),
          (c, m))

static mm_t *mm;

/* A fresh thread's first call registers it with liburcu: counted. */
static void *first_call(void *arg) {
  (void)arg;
  watching = 1;
  (void)mm_execution_held(mm, 1);
  watching = 0;
  return (void *)(intptr_t)locks_taken;
}

static void ignore_outcome(void *ctx, mm_status st) {
  (void)ctx;
  (void)st;
}

static void *hot_paths(void *arg) {
  (void)arg;
  /* Warm up: register with liburcu, create the exec id's record and the
   * first retired record's call_rcu machinery. */
  if (mm_acquire_execution(mm, 7, 4096, MM_NO_WAIT) != MM_OK ||
      mm_acquire_storage(mm, 1, 4096, MM_NO_WAIT) != MM_OK ||
      mm_release_storage(mm, 1) != MM_OK)
    return (void *)(intptr_t)-1;

  watching = 1;
  for (int i = 0; i < 20000; i++) {
    if (mm_acquire_execution(mm, 7, 4096, MM_NO_WAIT) != MM_OK ||
        mm_release_execution(mm, 7, 4096) != MM_OK ||
        mm_acquire_storage(mm, 100 + (uint64_t)i, 4096, MM_NO_WAIT) != MM_OK ||
        mm_pin_storage(mm, 100 + (uint64_t)i, NULL) != MM_OK ||
        mm_unpin_storage(mm, 100 + (uint64_t)i) != MM_OK ||
        mm_release_storage(mm, 100 + (uint64_t)i) != MM_OK ||
        mm_acquire_execution(mm, 1u << 20, 8 * MiB + 1, MM_NO_WAIT) !=
            MM_EINVAL)
      return (void *)(intptr_t)-1;
    (void)mm_execution_held(mm, 7);
  }
  /* A task's end and a fresh id: record retired through RCU, new one
   * inserted. */
  for (uint64_t id = 1000; id < 1100; id++) {
    if (mm_acquire_execution(mm, id, 100, MM_NO_WAIT) != MM_OK ||
        mm_release_all_execution(mm, id) != 100)
      return (void *)(intptr_t)-1;
  }
  /* Held requests: a hold, the pass that grants it on release, and a
   * cancel take no lock on the calling thread either. */
  for (int i = 0; i < 100; i++) {
    uint64_t ticket;
    /* id 7 holds 4 KiB; id 8 takes all but 4 KiB of the rest */
    if (mm_acquire_execution(mm, 8, 8 * MiB, MM_NO_WAIT) != MM_OK ||
        mm_acquire_execution(mm, 8, 8 * MiB - 8192, MM_NO_WAIT) != MM_OK ||
        mm_acquire_async(mm, MM_POOL_EXECUTION, 9, 8192, MM_WAIT_FOREVER,
                         ignore_outcome, NULL, &ticket) != MM_EINPROGRESS ||
        mm_acquire_async(mm, MM_POOL_EXECUTION, 10, 8192, MM_WAIT_FOREVER,
                         ignore_outcome, NULL, &ticket) != MM_EINPROGRESS ||
        mm_cancel(mm, ticket) != MM_OK ||
        mm_release_all_execution(mm, 8) != 16 * MiB - 8192 ||
        mm_release_all_execution(mm, 9) != 8192)
      return (void *)(intptr_t)-1;
  }
  /* Declines take no lock either. */
  (void)mm_acquire_execution(mm, 7, 8 * MiB, MM_NO_WAIT);
  watching = 0;
  return (void *)(intptr_t)locks_taken;
}

static void *run_in_thread(void *(*fn)(void *)) {
  pthread_t t;
  void *ret;
  pthread_create(&t, NULL, fn, NULL);
  pthread_join(t, &ret);
  return ret;
}

static void test_interposition_sees_library_locks(void **state) {
  (void)state;
  mm = mm_test_create(8 * MiB, 0);
  assert_true((intptr_t)run_in_thread(first_call) > 0);
  mm_destroy(mm);
}

static void test_hot_paths_take_no_lock(void **state) {
  (void)state;
  mm = mm_test_create(16 * MiB, 0);
  assert_int_equal((intptr_t)run_in_thread(hot_paths), 0);
  mm_destroy(mm);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_interposition_sees_library_locks),
      cmocka_unit_test(test_hot_paths_take_no_lock),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

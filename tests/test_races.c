/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_races.c -- interleavings that once lost a wake-up, freed the
 * manager under a caller, spun, or broke a promise of the header, made
 * certain: a test point (src/testpoint.h) stops one thread inside the
 * window while the test plays the other side.
 *
 * Each test would fail against the code before its fix, and none depends
 * on the scheduler: a thread stopped at a test point waits for the test
 * to let it go (bounded by seconds of real time), and the test waits for
 * the event it means (a thread at the point, a request held, a callback
 * called), never for "long enough".
 */
#include "mm_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backing.h"
#include "mm_internal.h"
#include "testpoint.h"

/* ---- a gate at one test point ------------------------------------------ */

/* The first thread to reach @where on @mm stops there until the test opens
 * the gate (or 10 s pass: a broken test must not hang CI). */
static struct {
  mm_t *mm;
  mmi_tp where;
  atomic_int hits, arrived, open;
} gate;

static void gate_hook(struct mm *m, mmi_tp where) {
  if (m != gate.mm || where != gate.where ||
      atomic_fetch_add(&gate.hits, 1) != 0)
    return;
  atomic_store(&gate.arrived, 1);
  int64_t until = now_ns() + 10000 * MS;
  while (!atomic_load(&gate.open) && now_ns() < until)
    sleep_ms(1);
}

static void gate_set(mm_t *mm, mmi_tp where) {
  gate.mm = mm;
  gate.where = where;
  atomic_store(&gate.hits, 0);
  atomic_store(&gate.arrived, 0);
  atomic_store(&gate.open, 0);
  mmi_test_set_hook(gate_hook);
}

static void gate_clear(void) {
  atomic_store(&gate.open, 1);
  mmi_test_set_hook(NULL);
}

/* ---- an asynchronous outcome -------------------------------------------- */

typedef struct outcome {
  atomic_int calls, status;
} outcome;

static void record(void *ctx, mm_status st) {
  outcome *o = ctx;
  atomic_store(&o->status, (int)st);
  atomic_fetch_add(&o->calls, 1);
}

/* ---- a call on another thread ------------------------------------------- */

typedef struct call {
  mm_t *mm;
  int kind; /* EXEC, STORAGE, STORAGE_ALLOC, EXEC_ALLOC */
  uint64_t id;
  size_t bytes;
  int64_t timeout;
  mm_status st;
  void *block;
  pthread_t t;
} call;
enum { EXEC, STORAGE, STORAGE_ALLOC, EXEC_ALLOC, UNPIN };

static void *call_main(void *arg) {
  call *c = arg;
  switch (c->kind) {
  case EXEC:
    c->st = mm_acquire_execution(c->mm, c->id, c->bytes, c->timeout);
    break;
  case STORAGE:
    c->st = mm_acquire_storage(c->mm, c->id, c->bytes, c->timeout);
    break;
  case STORAGE_ALLOC:
    c->st = mm_storage_alloc(c->mm, c->id, c->bytes, c->timeout, &c->block);
    break;
  case EXEC_ALLOC:
    c->st = mm_exec_alloc(c->mm, c->id, c->bytes, c->timeout, &c->block);
    break;
  default:
    c->st = mm_unpin_storage(c->mm, c->id);
  }
  return NULL;
}

static void start(call *c, mm_t *mm, int kind, uint64_t id, size_t bytes,
                  int64_t timeout) {
  memset(c, 0, sizeof *c);
  c->mm = mm;
  c->kind = kind;
  c->id = id;
  c->bytes = bytes;
  c->timeout = timeout;
  assert_int_equal(pthread_create(&c->t, NULL, call_main, c), 0);
}

/* A manager made from @cfg (the overtake limit NEVER_STARVES unless it
 * says otherwise) with @exec bytes of execution charged to exec id 1 and
 * pages 1..@pages of 4 KiB registered: pinned if @pinned; with memory
 * (mm_storage_alloc) if @real. */
static mm_t *filled(mm_config cfg, size_t exec, unsigned pages, bool pinned,
                    bool real) {
  if (!cfg.overtake_limit_ns)
    cfg.overtake_limit_ns = NEVER_STARVES;
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  if (exec)
    assert_int_equal(mm_acquire_execution(mm, 1, exec, MM_NO_WAIT), MM_OK);
  for (uint64_t p = 1; p <= pages; p++) {
    if (real) {
      void *data;
      assert_int_equal(mm_storage_alloc(mm, p, 4096, MM_NO_WAIT, &data),
                       MM_OK); /* born pinned */
      if (!pinned)
        assert_int_equal(mm_unpin_storage(mm, p), MM_OK);
    } else {
      assert_int_equal(mm_acquire_storage(mm, p, 4096, MM_NO_WAIT), MM_OK);
      if (pinned)
        assert_int_equal(mm_pin_storage(mm, p, NULL), MM_OK);
    }
  }
  return mm;
}

/* 32 KiB: storage 8 KiB (pages 1 and 2), execution 24 KiB all used by
 * exec id 1.  Nothing is free; too small for per-CPU credit. */
static mm_t *full_two_pages(mm_config cfg, bool pinned, bool real) {
  cfg.total_bytes = 32 * KiB;
  cfg.storage_fraction = 0.25;
  return filled(cfg, 24 * KiB, 2, pinned, real);
}

/*
 * Defect: an eviction that gives a claimed victim back woke nobody.  X asks
 * 8 KiB and claims one page; the other is pinned; W asks 4 KiB, finds one
 * page claimed and one pinned, and is held; X finds no second page and
 * gives the first back.  That page is evictable again: W is granted by
 * evicting it, long before its 10 s deadline.
 */
static void test_claim_given_back_wakes_waiter(void **state) {
  (void)state;
  mm_t *mm = full_two_pages((mm_config){0}, false, false);
  gate_set(mm, MMI_TP_EVICT_CLAIMED);
  call x;
  start(&x, mm, EXEC, 2, 8 * KiB, MM_NO_WAIT);
  EVENTUALLY(atomic_load(&gate.arrived)); /* X holds one page claimed */
  /* Pin the page X did not claim (a pin that meets the claim answers
   * MM_ENOENT and changes nothing). */
  uint64_t pinned = mm_pin_storage(mm, 1, NULL) == MM_OK ? 1 : 2;
  if (pinned == 2)
    assert_int_equal(mm_pin_storage(mm, 2, NULL), MM_OK);
  outcome w = {0};
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 3, 4 * KiB,
                                    10000 * MS, record, &w, NULL),
                   MM_EINPROGRESS);
  gate_clear(); /* X gives its claim back and is declined */
  pthread_join(x.t, NULL);
  assert_int_equal(x.st, MM_ENOMEM);
  EVENTUALLY(atomic_load(&w.calls) == 1);
  assert_int_equal(atomic_load(&w.status), MM_OK);
  assert_int_equal(mm_execution_held(mm, 3), 4 * KiB);
  assert_int_equal(mm_test_stats(mm).evictions, 1);
  assert_int_equal(mm_unpin_storage(mm, pinned), MM_OK);
  mm_destroy(mm);
}

/*
 * Defect: quota reclaimed by the front door woke nobody.  F's request
 * takes every consumer's spare quota and stops before it gives the bytes
 * back to the pool word; W (a storage page, squeezed by that quota) is
 * held; F gives the quota back and charges what it needs.  W fits in what
 * is left and must be granted then, not at its deadline.  (Found for the
 * per-CPU credit that consumers' quota replaced.)
 */
static void test_reclaimed_quota_wakes_waiter(void **state) {
  (void)state;
  mm_config cfg = {.total_bytes = 64 * MiB,
                   .max_execution_request = 64 * MiB,
                   .overtake_limit_ns = NEVER_STARVES};
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  uint64_t e0 = 32 * MiB;
  /* Exec id 1 takes 31.5 MiB and a quantum (1 MiB) of spare quota: the
   * pool word's execution half passes E0, and the storage pool shrinks by
   * what the quota holds.  (An id's first charge is exact; its second is
   * a refill, which takes the quantum.) */
  assert_int_equal(
      mm_acquire_execution(mm, 1, e0 - 512 * KiB - 4 * KiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mmi_consumers_spare(mm), 0);
  assert_int_equal(mm_acquire_execution(mm, 1, 4 * KiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mmi_consumers_spare(mm), 1 * MiB);
  /* Storage full of pinned pages up to what the quota leaves it. */
  uint64_t pages = (64 * MiB - (e0 + 512 * KiB)) / 4096;
  for (uint64_t p = 1; p <= pages; p++) {
    assert_int_equal(mm_acquire_storage(mm, p, 4096, MM_NO_WAIT), MM_OK);
    assert_int_equal(mm_pin_storage(mm, p, NULL), MM_OK);
  }
  /* F, another exec id: no room for it and a quantum; the exact path
   * reclaims every spare, and then it fits. */
  gate_set(mm, MMI_TP_SPARE_TAKEN);
  call f;
  start(&f, mm, EXEC, 2, 68 * KiB, MM_NO_WAIT);
  EVENTUALLY(atomic_load(&gate.arrived));
  outcome w = {0};
  assert_int_equal(mm_acquire_async(mm, MM_POOL_STORAGE, pages + 1, 4096,
                                    10000 * MS, record, &w, NULL),
                   MM_EINPROGRESS);
  gate_clear();
  pthread_join(f.t, NULL);
  assert_int_equal(f.st, MM_OK);
  EVENTUALLY(atomic_load(&w.calls) == 1);
  assert_int_equal(atomic_load(&w.status), MM_OK);
  mm_destroy(mm);
}

/*
 * Defect: an exec id's new own consumer could be charged before it was
 * among the id's consumers, so a release_all of the id missed what it
 * held (and a pass missed its spare quota).  It is now among them first:
 * T's first charge of id 5 stops after that; release_all finds the
 * consumer, holding nothing, and closes it; T's charge then lands on the
 * id's next own consumer, where the next release_all finds it.
 */
static void test_release_all_meets_new_own_consumer(void **state) {
  (void)state;
  mm_t *mm = filled((mm_config){.total_bytes = 64 * MiB}, 0, 0, false, false);
  gate_set(mm, MMI_TP_OWN_LINKING);
  call t;
  start(&t, mm, EXEC, 5, 4 * KiB, MM_NO_WAIT);
  EVENTUALLY(atomic_load(&gate.arrived));
  assert_int_equal(mm_release_all_execution(mm, 5), 0);
  gate_clear();
  pthread_join(t.t, NULL);
  assert_int_equal(t.st, MM_OK);
  assert_int_equal(mm_execution_held(mm, 5), 4 * KiB);
  assert_int_equal(mm_release_all_execution(mm, 5), 4 * KiB);
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.execution_used_bytes, 0);
  assert_int_equal(s.execution_ids, 0);
  mm_destroy(mm);
}

/*
 * Defect: mm_destroy freed the manager under a caller that was still
 * inside mm_storage_alloc after its grant.  B blocks; an unpin grants it by
 * eviction; B stops at the test point after its grant, before it makes its
 * page live; main destroys the manager.  mm_destroy must wait for B to
 * leave, so B, stopped there, never sees it return.
 */
static atomic_int destroy_returned, b_saw_destroy_return, b_granted;

static void destroy_hook(struct mm *m, mmi_tp where) {
  (void)m;
  if (where != MMI_TP_HELD_GRANTED)
    return;
  atomic_store(&b_granted, 1);
  /* Give mm_destroy every chance to return under us: a second of real
   * time, or until it does. */
  int64_t until = now_ns() + 1000 * MS;
  while (!atomic_load(&destroy_returned) && now_ns() < until)
    sleep_ms(1);
  atomic_store(&b_saw_destroy_return, atomic_load(&destroy_returned));
}

static void test_destroy_waits_for_work_after_grant(void **state) {
  (void)state;
  mm_t *mm = full_two_pages((mm_config){0}, true, true);
  atomic_store(&destroy_returned, 0);
  atomic_store(&b_saw_destroy_return, 0);
  atomic_store(&b_granted, 0);
  call b;
  start(&b, mm, STORAGE_ALLOC, 9, 4096, MM_WAIT_FOREVER);
  EVENTUALLY(mm_test_stats(mm).held_now == 1);
  mmi_test_set_hook(destroy_hook);
  assert_int_equal(mm_unpin_storage(mm, 1), MM_OK); /* grants B by eviction */
  EVENTUALLY(atomic_load(&b_granted));
  mm_destroy(mm);
  atomic_store(&destroy_returned, 1);
  pthread_join(b.t, NULL);
  mmi_test_set_hook(NULL);
  assert_int_equal(b.st, MM_OK);
  assert_false(atomic_load(&b_saw_destroy_return));
}

/*
 * Defect: the service thread spun while another thread held the dispatch
 * baton.  A pass holds it across an eviction callback that lasts until
 * 400 ms after an asynchronous request's deadline fell due (whenever the
 * callback starts).  The service thread must sleep until the baton is put
 * down, then see the request timed out.
 */
static struct {
  atomic_int calls;
  int64_t a_deadline;
  atomic_int a_ended_first; /* the window was missed: A ended before */
  outcome *a;
} slow;

static void slow_evict(void *ctx, uint64_t id, void *data, size_t bytes) {
  (void)ctx, (void)id, (void)data, (void)bytes;
  if (atomic_fetch_add(&slow.calls, 1) != 0)
    return;
  atomic_store(&slow.a_ended_first, atomic_load(&slow.a->calls));
  while (now_ns() < slow.a_deadline + 400 * MS) /* a long write-back */
    sleep_ms(5);
}

static int64_t thread_cpu_ns(pthread_t t) {
  clockid_t cid;
  struct timespec ts;
  assert_int_equal(pthread_getcpuclockid(t, &cid), 0);
  assert_int_equal(clock_gettime(cid, &ts), 0);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* One try; false if A had ended before B's eviction began (a machine so
 * slow that @deadline_ms passed before the unpin: try again, longer). */
static bool service_sleeps_try(int64_t deadline_ms) {
  memset(&slow, 0, sizeof slow);
  mm_t *mm = full_two_pages((mm_config){.on_evict = slow_evict}, true, false);
  outcome a = {0}, b = {0};
  slow.a = &a;
  /* A can never fit by eviction (16 KiB > the 8 KiB of storage); its
   * deadline must fall inside B's eviction callback (checked below). */
  slow.a_deadline = now_ns() + deadline_ms * MS;
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 2, 16 * KiB,
                                    deadline_ms * MS, record, &a, NULL),
                   MM_EINPROGRESS);
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 3, 4 * KiB,
                                    MM_WAIT_FOREVER, record, &b, NULL),
                   MM_EINPROGRESS);
  int64_t cpu0 = thread_cpu_ns(mm->held.service);
  /* This thread's pass evicts page 1 for B and holds the baton across the
   * callback. */
  assert_int_equal(mm_unpin_storage(mm, 1), MM_OK);
  EVENTUALLY(atomic_load(&a.calls) == 1 && atomic_load(&b.calls) == 1);
  int64_t cpu = thread_cpu_ns(mm->held.service) - cpu0;
  bool window = !atomic_load(&slow.a_ended_first);
  if (window) {
    assert_int_equal(atomic_load(&a.status), MM_ETIMEDOUT);
    assert_int_equal(atomic_load(&b.status), MM_OK);
    /* Asleep for the 400 ms the baton was held after A fell due: a few
     * wake-ups, not a spin. */
    assert_true(cpu < 50 * MS);
  }
  assert_int_equal(mm_unpin_storage(mm, 2), MM_OK);
  mm_destroy(mm);
  return window;
}

static void test_service_sleeps_while_baton_held(void **state) {
  (void)state;
  bool window = false;
  for (int64_t ms = 200; !window && ms <= 5000; ms *= 5)
    window = service_sleeps_try(ms);
  assert_true(window);
}

/*
 * Promise: a page id may be acquired again once its own callback has
 * returned, while the same eviction's other callbacks still run.
 */
static struct {
  mm_t *mm;
  atomic_int calls;
  uint64_t first;
  mm_status again;
} reuse;

static void *acquire_first_again(void *arg) {
  (void)arg;
  reuse.again = mm_acquire_storage(reuse.mm, reuse.first, 4096, MM_NO_WAIT);
  return NULL;
}

static void reuse_evict(void *ctx, uint64_t id, void *data, size_t bytes) {
  (void)ctx, (void)data, (void)bytes;
  if (atomic_fetch_add(&reuse.calls, 1) == 0) {
    reuse.first = id;
    return;
  }
  /* The second callback: the first page's callback has returned.  An
   * acquire from a callback is refused, so another thread asks. */
  pthread_t t;
  pthread_create(&t, NULL, acquire_first_again, NULL);
  pthread_join(t, NULL);
}

static void test_id_free_after_its_own_callback(void **state) {
  (void)state;
  memset(&reuse, 0, sizeof reuse);
  mm_t *mm = full_two_pages((mm_config){.on_evict = reuse_evict}, false, false);
  reuse.mm = mm;
  /* 8 KiB for execution: both pages go, in one eviction. */
  assert_int_equal(mm_acquire_execution(mm, 2, 8 * KiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(atomic_load(&reuse.calls), 2);
  /* Not MM_EEXIST: the id was free.  (No room for it yet: the evicted
   * bytes are handed over after the last callback.) */
  assert_int_equal(reuse.again, MM_ENOMEM);
  mm_destroy(mm);
}

/*
 * Promise: a declined request evicted nothing, also when the allocator
 * fails for a block whose room had to be made by eviction: the block is
 * made before any victim goes, and its failure backs the eviction out.
 * Blocks of 32 KiB, too large for the per-CPU caches, so the injected
 * failure is the block's.
 */
static void test_failed_block_evicts_nothing(void **state) {
  (void)state;
  mm_config cfg = {.total_bytes = 256 * KiB,
                   .storage_fraction = 0.5,
                   .overtake_limit_ns = NEVER_STARVES};
  mm_t *mm;
  assert_int_equal(mm_create(&cfg, &mm), MM_OK);
  /* Execution full; storage full of unpinned 32 KiB pages. */
  assert_int_equal(mm_acquire_execution(mm, 1, 128 * KiB, MM_NO_WAIT), MM_OK);
  for (uint64_t p = 1; p <= 4; p++)
    assert_int_equal(mm_acquire_storage(mm, p, 32 * KiB, MM_NO_WAIT), MM_OK);
  void *block;
  mmi_backing_fail_next(1);
  assert_int_equal(mm_exec_alloc(mm, 2, 32 * KiB, MM_NO_WAIT, &block),
                   MM_ENOMEM);
  mmi_backing_fail_next(1);
  assert_int_equal(mm_storage_alloc(mm, 9, 32 * KiB, MM_NO_WAIT, &block),
                   MM_ENOMEM);
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.evictions, 0);
  assert_int_equal(s.storage_pages, 4);
  assert_int_equal(s.storage_used_bytes, 128 * KiB);
  assert_int_equal(s.execution_used_bytes, 128 * KiB);

  /* A held request granted by eviction in a dispatch pass: the allocator
   * fails there; it ends with MM_ENOMEM and nothing goes. */
  for (uint64_t p = 1; p <= 4; p++)
    assert_int_equal(mm_pin_storage(mm, p, NULL), MM_OK);
  call c;
  start(&c, mm, EXEC_ALLOC, 3, 32 * KiB, 10000 * MS);
  EVENTUALLY(mm_test_stats(mm).held_now == 1);
  mmi_backing_fail_next(1);
  assert_int_equal(mm_unpin_storage(mm, 1), MM_OK); /* a pass evicts for c */
  pthread_join(c.t, NULL);
  assert_int_equal(c.st, MM_ENOMEM);
  mmi_backing_fail_next(0);
  s = mm_test_stats(mm);
  assert_int_equal(s.evictions, 0);
  assert_int_equal(s.storage_pages, 4);
  assert_int_equal(s.held_now, 0);
  assert_int_equal(mm_execution_held(mm, 3), 0);
  /* And with the allocator well, the same request evicts and is served. */
  assert_int_equal(mm_exec_alloc(mm, 3, 32 * KiB, MM_NO_WAIT, &block), MM_OK);
  assert_int_equal(mm_test_stats(mm).evictions, 1);
  assert_int_equal(mm_exec_free(mm, 3, block), MM_OK);
  for (uint64_t p = 2; p <= 4; p++)
    assert_int_equal(mm_unpin_storage(mm, p), MM_OK);
  mm_destroy(mm);
}

/*
 * Promise: execution never evicts live pages below the protected floor,
 * even while a storage eviction's reservation is charged to storage
 * without being any page's.  Floor 8 KiB; pages 1-3 (12 KiB) unpinned;
 * X, a 12 KiB storage request, reserves the 4 KiB left free and stops.
 * Execution may then evict one page (12 KiB of live pages down to the
 * floor) and no second one, though storage in use still reads 12 KiB
 * with the reservation.  (X, storage's own eviction, is not bound by the
 * floor: it then evicts the other two for its page.)
 */
static void test_floor_counts_live_pages_only(void **state) {
  (void)state;
  mm_t *mm = filled((mm_config){.total_bytes = 64 * KiB,
                                .storage_fraction = 0.25,
                                .storage_protected_bytes = 8 * KiB},
                    48 * KiB, 3, false, false);
  gate_set(mm, MMI_TP_EVICT_RESERVED);
  call x;
  start(&x, mm, STORAGE, 10, 12 * KiB, MM_NO_WAIT);
  EVENTUALLY(atomic_load(&gate.arrived));
  assert_int_equal(mm_test_stats(mm).storage_used_bytes, 16 * KiB);
  assert_int_equal(mm_acquire_execution(mm, 2, 4 * KiB, MM_NO_WAIT), MM_OK);
  assert_int_equal(mm_acquire_execution(mm, 3, 4 * KiB, MM_NO_WAIT), MM_ENOMEM);
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.evictions, 1);
  assert_int_equal(s.storage_pages, 2); /* 8 KiB live: the floor */
  gate_clear();
  pthread_join(x.t, NULL);
  assert_int_equal(x.st, MM_OK);
  s = mm_test_stats(mm);
  assert_int_equal(s.evictions, 3);
  assert_int_equal(s.storage_pages, 1);
  assert_int_equal(s.storage_used_bytes, 12 * KiB);
  mm_destroy(mm);
}

/*
 * A release that wins a page a dispatch pass's eviction had claimed is a
 * gain, not something the pass gives back.  W1 (execution) and W2 (an
 * 8 KiB page) are held; an unpin's pass tries W1 (the floor refuses it)
 * and then W2, which claims one page and stops.  Another thread pins the
 * other page and releases the claimed one: it wins it.  W2's eviction
 * cannot find a second page and backs out, finishing the release: 4 KiB
 * are free, and W1, passed over before, fits in them.
 */
static void test_release_won_in_pass_is_news(void **state) {
  (void)state;
  mm_t *mm = filled(
      (mm_config){.total_bytes = 64 * KiB, .storage_protected_bytes = 8 * KiB},
      56 * KiB, 2, true, false);
  outcome w1 = {0}, w2 = {0};
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 3, 4 * KiB,
                                    10000 * MS, record, &w1, NULL),
                   MM_EINPROGRESS);
  assert_int_equal(mm_acquire_async(mm, MM_POOL_STORAGE, 10, 8 * KiB,
                                    20000 * MS, record, &w2, NULL),
                   MM_EINPROGRESS);
  gate_set(mm, MMI_TP_EVICT_CLAIMED);
  assert_int_equal(mm_unpin_storage(mm, 1), MM_OK); /* one page: no claim */
  assert_int_equal(atomic_load(&gate.arrived), 0);
  call u;
  start(&u, mm, UNPIN, 2, 0, 0); /* its pass: W2 claims a page, stops */
  EVENTUALLY(atomic_load(&gate.arrived));
  if (mm_pin_storage(mm, 1, NULL) == MM_OK) {
    assert_int_equal(mm_release_storage(mm, 2), MM_OK);
  } else {
    assert_int_equal(mm_pin_storage(mm, 2, NULL), MM_OK);
    assert_int_equal(mm_release_storage(mm, 1), MM_OK);
  }
  gate_clear();
  pthread_join(u.t, NULL);
  assert_int_equal(u.st, MM_OK);
  EVENTUALLY(atomic_load(&w1.calls) == 1);
  assert_int_equal(atomic_load(&w1.status), MM_OK);
  assert_int_equal(atomic_load(&w2.calls), 0); /* still held */
  mm_destroy(mm);
}

/*
 * A new page that goes live unpinned is news: it is evictable.  A, a
 * storage request, claims a victim and stops; X, execution needing every
 * page, is refused and held; A's eviction ends with an exact hand-over
 * (nothing left over) and its page goes live.  Eight unpinned pages again:
 * X fits.
 */
static void test_new_page_is_news(void **state) {
  (void)state;
  mm_t *mm = filled((mm_config){.total_bytes = 64 * KiB}, 0, 8, false, false);
  gate_set(mm, MMI_TP_EVICT_CLAIMED);
  call a, x;
  start(&a, mm, STORAGE, 100, 4096, MM_NO_WAIT);
  EVENTUALLY(atomic_load(&gate.arrived));
  start(&x, mm, EXEC, 2, 64 * KiB, 10000 * MS);
  EVENTUALLY(mm_test_stats(mm).held_now == 1);
  gate_clear();
  pthread_join(a.t, NULL);
  assert_int_equal(a.st, MM_OK);
  pthread_join(x.t, NULL); /* granted at once, not at its deadline */
  assert_int_equal(x.st, MM_OK);
  mm_destroy(mm);
}

/*
 * Unsettled bytes that drop are news: the protected floor may let
 * execution evict more.  A 32 KiB page's charge fails and stops before
 * its bytes stop counting as unsettled; X, 32 KiB of execution, finds the
 * live pages too close to the floor and is held; the bytes drop.
 */
static void test_unsettled_drop_is_news(void **state) {
  (void)state;
  mm_t *mm = filled(
      (mm_config){.total_bytes = 64 * KiB, .storage_protected_bytes = 16 * KiB},
      16 * KiB, 8, false, false);
  assert_int_equal(mm_pin_storage(mm, 1, NULL), MM_OK);
  gate_set(mm, MMI_TP_CHARGE_FAILED);
  call st;
  start(&st, mm, STORAGE, 100, 32 * KiB, MM_NO_WAIT);
  EVENTUALLY(atomic_load(&gate.arrived));
  outcome x = {0};
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 3, 32 * KiB,
                                    10000 * MS, record, &x, NULL),
                   MM_EINPROGRESS);
  gate_clear();
  pthread_join(st.t, NULL);
  assert_int_equal(st.st, MM_ENOMEM);
  EVENTUALLY(atomic_load(&x.calls) == 1);
  assert_int_equal(atomic_load(&x.status), MM_OK);
  assert_int_equal(mm_unpin_storage(mm, 1), MM_OK);
  mm_destroy(mm);
}

/*
 * A page abandoned after its block failed settles its unsettled bytes
 * after its charge went back (whose news ran a pass at once, which the
 * floor refused): the settle must be news too.  SA, a held mm_storage_alloc,
 * is granted and stops before making its block; pages are unpinned; X
 * (16 KiB of execution) is held; SA's block fails.
 */
static void test_settle_after_failed_block_is_news(void **state) {
  (void)state;
  mm_t *mm = filled(
      (mm_config){.total_bytes = 64 * KiB, .storage_protected_bytes = 16 * KiB},
      32 * KiB, 7, true, false);
  assert_int_equal(mm_acquire_execution(mm, 2, 4 * KiB, MM_NO_WAIT), MM_OK);
  gate_set(mm, MMI_TP_HELD_GRANTED);
  call sa;
  start(&sa, mm, STORAGE_ALLOC, 100, 4096, 10000 * MS);
  EVENTUALLY(mm_test_stats(mm).held_now == 1);
  assert_int_equal(mm_release_execution(mm, 2, 4 * KiB), MM_OK); /* SA */
  EVENTUALLY(atomic_load(&gate.arrived));
  for (uint64_t p = 1; p <= 5; p++)
    assert_int_equal(mm_unpin_storage(mm, p), MM_OK);
  outcome x = {0};
  assert_int_equal(mm_acquire_async(mm, MM_POOL_EXECUTION, 3, 16 * KiB,
                                    10000 * MS, record, &x, NULL),
                   MM_EINPROGRESS);
  mmi_backing_fail_next(1);
  gate_clear();
  pthread_join(sa.t, NULL);
  mmi_backing_fail_next(0);
  assert_int_equal(sa.st, MM_ENOMEM);
  EVENTUALLY(atomic_load(&x.calls) == 1);
  assert_int_equal(atomic_load(&x.status), MM_OK);
  for (uint64_t p = 6; p <= 7; p++)
    assert_int_equal(mm_unpin_storage(mm, p), MM_OK);
  mm_destroy(mm);
}

/*
 * The block a pass makes for a held alloc request whose grant then loses
 * to its deadline is freed at its own size -- read from the waiter, not
 * from the caller's stack, which is gone once the caller has timed out
 * and returned.  The pass stops after making the block; the caller times
 * out, returns and scribbles over its stack; the pass goes on.
 */
static struct {
  call c;
  atomic_int returned, done;
} late;

/* Overwrite the stack the finished call used (volatile: the writes are
 * not optimised away). */
static __attribute__((noinline)) void scribble_stack(void) {
  volatile unsigned char junk[32 * 1024];
  for (size_t i = 0; i < sizeof junk; i++)
    junk[i] = 0x5a;
}

static void *late_caller(void *arg) {
  (void)arg;
  call_main(&late.c);
  scribble_stack();
  atomic_store(&late.returned, 1);
  while (!atomic_load(&late.done)) /* keep the stack mapped */
    sleep_ms(1);
  return NULL;
}

static void test_lost_grant_frees_block_at_its_size(void **state) {
  (void)state;
  mm_t *mm = full_two_pages((mm_config){0}, true, false);
  memset(&late, 0, sizeof late);
  late.c = (call){.mm = mm,
                  .kind = EXEC_ALLOC,
                  .id = 2,
                  .bytes = 4096,
                  .timeout = 200 * MS};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, late_caller, NULL), 0);
  EVENTUALLY(mm_test_stats(mm).held_now == 1);
  gate_set(mm, MMI_TP_GRANT_BLOCK);
  call u;
  start(&u, mm, UNPIN, 1, 0, 0); /* its pass evicts for the caller */
  EVENTUALLY(atomic_load(&gate.arrived));
  EVENTUALLY(atomic_load(&late.returned)); /* timed out meanwhile */
  assert_int_equal(late.c.st, MM_ETIMEDOUT);
  gate_clear(); /* the grant's CAS loses; the block goes back */
  pthread_join(u.t, NULL);
  atomic_store(&late.done, 1);
  pthread_join(t, NULL);
  mm_trim(mm);
  mm_stats s = mm_test_stats(mm);
  assert_int_equal(s.evictions, 0); /* it backed out */
  assert_int_equal(s.backing_allocated_bytes, 0);
  assert_int_equal(s.cache_parked_bytes, 0);
  assert_int_equal(mm_unpin_storage(mm, 2), MM_OK);
  mm_destroy(mm);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_claim_given_back_wakes_waiter),
      cmocka_unit_test(test_reclaimed_quota_wakes_waiter),
      cmocka_unit_test(test_release_all_meets_new_own_consumer),
      cmocka_unit_test(test_destroy_waits_for_work_after_grant),
      cmocka_unit_test(test_service_sleeps_while_baton_held),
      cmocka_unit_test(test_id_free_after_its_own_callback),
      cmocka_unit_test(test_failed_block_evicts_nothing),
      cmocka_unit_test(test_floor_counts_live_pages_only),
      cmocka_unit_test(test_release_won_in_pass_is_news),
      cmocka_unit_test(test_new_page_is_news),
      cmocka_unit_test(test_unsettled_drop_is_news),
      cmocka_unit_test(test_settle_after_failed_block_is_news),
      cmocka_unit_test(test_lost_grant_frees_block_at_its_size),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

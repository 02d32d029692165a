/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * mm_stress.c -- drive the manager the way a storage engine would, hard,
 * and check its promises all the time.
 *
 *   mm-stress [--threads N] [--seconds S] [--budget SIZE]
 *             [--workload oltp|analytic|mixed|adversarial]
 *             [--policy random|lru] [--seed N] [--faults] [--resize]
 *             [--json]
 *
 * Defaults: 8 threads, 5 seconds, 256 MiB, mixed, random, seed 1.
 *
 * Workloads (each thread picks its role from the workload):
 *   oltp         pages of 4-16 KiB on a Zipf-skewed id stream: a hit pins
 *                the page and checks its memory, a miss registers it with
 *                mm_storage_alloc (evicting; one miss in 8 may wait 1 or
 *                200 ms for room); pins are dropped at once, but one run
 *                of accesses in 8 is a range scan that keeps up to 1/32 of
 *                the budget pinned until it ends.
 *   analytic     queries: each exec id grows its working memory in 1-8 MiB
 *                bursts that may wait (1, 5, 50 or 500 ms) up to a target
 *                that, summed over the threads, is more than the budget,
 *                and spills (stops growing) when a burst does not come;
 *                blocks from mm_exec_alloc; an asynchronous request with a
 *                callback, cancelled half of the time; a scan that churns
 *                pages.  So requests are held, and granted, time out and
 *                are cancelled, all the time.  Beside each query, the
 *                thread works for a parallel operator: a consumer handle
 *                that four query threads share at once, from which they
 *                allocate and free blocks of 16 B to 16 KiB and acquire
 *                and release 64 KiB to 1 MiB (some of it waiting 1 ms).
 *                And each query thread has a sorter: a consumer whose runs
 *                of 256 KiB to 1 MiB may wait 1 or 5 ms, kept until the
 *                query ends, and spilled (to a counter, not a disk) when
 *                another thread's held request asks it (its reclaim
 *                callback); the report counts the callbacks, the bytes
 *                they gave back and the time they took.
 *   mixed        both, half the threads each (the default).
 *   adversarial  a 4 MiB budget, pages pinned in bulk, requests at the
 *                exact limits, cancel storms, exec ids that vanish and are
 *                reclaimed with mm_release_all_execution, closing a
 *                consumer of theirs that still holds memory and a block
 *                (an orphan, freed after).
 *
 * --faults injects faults, and checks that each ends in a documented
 * status with nothing lost: every 97th block allocation of the backing
 * allocator fails; one eviction callback in 64 is slow (200 us); one in 8
 * pins and unpins another page, and one in 16 releases another page;
 * threads stop mid-burst, holding execution memory, and the main thread
 * reclaims their exec ids with mm_release_all_execution.
 *
 * --resize shrinks and grows the budget while the workers run: every
 * 200 ms the main thread sets a budget between half the configured one and
 * all of it (mm_set_budget, waiting for use to fit not at all, 1 ms or
 * 50 ms), so that
 * pages are evicted, sorters are asked to spill and held requests wait
 * behind a shrink, and the report counts the resizes.  The invariants
 * below are checked against the budget in force at each moment: the
 * harness publishes a bound on it (raised before a grow, lowered only
 * once a shrink answered MM_OK, that is, once use fitted), and use past
 * the budget is allowed in a picture only as what a shrink left over.
 *
 * Invariants, checked all the time; the first break prints what broke and
 * exits with status 1:
 *   - no held request is stranded: every 300 ms the workers pause between
 *     units of work, and in a frozen moment (only held requests in
 *     flight, no dispatch pass running or owed) no held request fits (in
 *     free memory, or by evicting unpinned pages above the floor) unless
 *     an older, starved one that does not fit bars it;
 *   - a shadow count of what the harness holds never exceeds the budget
 *     (the bound on it in force when the count rose);
 *   - no pinned page is evicted, and each page is evicted at most once
 *     (the callback checks a per-page state word);
 *   - every held request ends exactly once (callbacks counted);
 *   - every mm_stats picture obeys the pool rules;
 *   - after teardown both pools are back at their initial sizes and every
 *     block is freed.
 */
#include <memory_manager.h>

#include "backing.h"   /* the allocator's test hook (static build) */
#include "testpoint.h" /* mmi_test_quiet */

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MiB ((size_t)1 << 20)

/* ---- options ------------------------------------------------------------ */

enum workload { OLTP, ANALYTIC, MIXED, ADVERSARIAL };
static const char *workload_name[] = {"oltp", "analytic", "mixed",
                                      "adversarial"};
static struct {
  int threads;
  double seconds;
  size_t budget;
  enum workload workload;
  int policy;
  uint64_t seed;
  bool faults;
  bool resize;
  bool json;
} opt = {8, 5.0, 256 * MiB, MIXED, MM_EVICT_RANDOM, 1, false, false, false};

static size_t parse_size(const char *s) {
  char *end;
  double v = strtod(s, &end);
  switch (*end) {
  case 'k':
  case 'K':
    v *= 1024;
    break;
  case 'm':
  case 'M':
    v *= 1024 * 1024;
    break;
  case 'g':
  case 'G':
    v *= 1024.0 * 1024 * 1024;
    break;
  }
  return v > 0 ? (size_t)v : 0;
}

static void usage(void) {
  fprintf(stderr,
          "usage: mm-stress [--threads N] [--seconds S] [--budget SIZE]\n"
          "                 [--workload oltp|analytic|mixed|adversarial]\n"
          "                 [--policy random|lru] [--seed N] [--faults]\n"
          "                 [--resize] [--json]\n");
  exit(2);
}

static void parse(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--json")) {
      opt.json = true;
      continue;
    }
    if (!strcmp(a, "--faults")) {
      opt.faults = true;
      continue;
    }
    if (!strcmp(a, "--resize")) {
      opt.resize = true;
      continue;
    }
    if (!v)
      usage();
    i++;
    if (!strcmp(a, "--threads"))
      opt.threads = atoi(v);
    else if (!strcmp(a, "--seconds"))
      opt.seconds = atof(v);
    else if (!strcmp(a, "--budget"))
      opt.budget = parse_size(v);
    else if (!strcmp(a, "--seed"))
      opt.seed = strtoull(v, NULL, 0);
    else if (!strcmp(a, "--policy"))
      opt.policy = !strcmp(v, "lru")      ? MM_EVICT_SAMPLED_LRU
                   : !strcmp(v, "random") ? MM_EVICT_RANDOM
                                          : (usage(), 0);
    else if (!strcmp(a, "--workload")) {
      int w = -1;
      for (int k = 0; k < 4; k++)
        if (!strcmp(v, workload_name[k]))
          w = k;
      if (w < 0)
        usage();
      opt.workload = (enum workload)w;
    } else
      usage();
  }
  if (opt.threads < 1 || opt.threads > 256 || !(opt.seconds > 0) ||
      opt.budget < 4 * MiB)
    usage();
  if (opt.workload == ADVERSARIAL)
    opt.budget = 4 * MiB;
}

/* ---- invariants --------------------------------------------------------- */

static void broken(const char *what) {
  fprintf(stderr, "mm-stress: INVARIANT BROKEN: %s\n", what);
  fflush(NULL);
  _exit(1);
}

#define INVARIANT(cond)                                                        \
  do {                                                                         \
    if (!(cond))                                                               \
      broken(#cond);                                                           \
  } while (0)

static mm_t *mm;
static atomic_llong shadow; /* bytes the harness holds (books) */

/* A bound on the budget in force, by version: bound_log[v % BOUND_LOG] is
 * version v's.  Raised before a grow (which may take effect any time in
 * the call) and lowered only once a shrink answered MM_OK (use fitted:
 * from then on nothing is granted past it), so it is never below the
 * budget that use must fit, nor use below what the harness holds. */
#define BOUND_LOG 64
static _Atomic uint64_t bound_version;
static _Atomic size_t bound_log[BOUND_LOG];

static void bound_publish(size_t bytes) {
  uint64_t v = atomic_load(&bound_version) + 1;
  atomic_store(&bound_log[v % BOUND_LOG], bytes);
  atomic_store(&bound_version, v); /* (the main thread's alone) */
}

/* The largest bound of versions @v1 to @v2: one was in force between. */
static size_t bound_between(uint64_t v1, uint64_t v2) {
  if (v2 - v1 >= BOUND_LOG - 1)
    return SIZE_MAX; /* the log came round meanwhile: no judgement */
  size_t most = 0;
  for (uint64_t v = v1; v <= v2; v++)
    if (atomic_load(&bound_log[v % BOUND_LOG]) > most)
      most = atomic_load(&bound_log[v % BOUND_LOG]);
  return most;
}

static void shadow_add(long long bytes) {
  uint64_t v1 = atomic_load(&bound_version);
  long long now = atomic_fetch_add(&shadow, bytes) + bytes;
  if (bytes > 0)
    INVARIANT(now <= (long long)bound_between(v1, atomic_load(&bound_version)));
}

static atomic_size_t most_over; /* the most use was past the budget */

static void check_picture(void) {
  mm_stats s;
  mm_get_stats(mm, &s);
  INVARIANT(s.execution_pool_bytes + s.storage_pool_bytes == s.total_bytes);
  if (s.over_budget_bytes) { /* a shrink's leftover, going as released */
    INVARIANT(opt.resize);
    INVARIANT(s.execution_used_bytes + s.storage_used_bytes ==
              s.total_bytes + s.over_budget_bytes);
    if (s.over_budget_bytes > atomic_load(&most_over))
      atomic_store(&most_over, s.over_budget_bytes);
    return;
  }
  INVARIANT(s.execution_used_bytes <= s.execution_pool_bytes);
  INVARIANT(s.storage_used_bytes <= s.storage_pool_bytes);
  INVARIANT(s.execution_used_bytes + s.storage_used_bytes <= s.total_bytes);
}

/* Pages: a state word per id (ABSENT; LOADING by the thread that missed
 * it; READY: its first byte is its id), plus the pins the harness holds.
 *
 * A callback's release of a ready page moves it to GOING first, so that
 * the id cannot be loaded again under the release.  If the release comes
 * too late for a page being evicted (MM_ENOENT: its callback has run or
 * will) the callback and the releaser finish it between them: the
 * callback turns GOING into GONE and the releaser GONE into ABSENT, or the
 * releaser turns GOING into LOST and the callback LOST into ABSENT. */
enum {
  PAGE_ABSENT = 0,
  PAGE_LOADING = 1,
  PAGE_READY = 3,
  PAGE_GOING = 4,
  PAGE_GONE = 5,
  PAGE_LOST = 6
};
#define MAX_PAGES (1u << 18)
static uint32_t npages;
static _Atomic uint32_t page_state[MAX_PAGES];
static _Atomic uint32_t page_pins[MAX_PAGES];
static _Atomic size_t page_bytes[MAX_PAGES];

static atomic_ullong fault_slow, fault_pins, fault_releases, fault_stops;

/* ---- held requests the harness knows of ---------------------------------
 *
 * Each blocking call that may wait, and each asynchronous request, has a
 * slot saying what it asked for and when: the stranded-waiter check reads
 * them while the workers pause.  A blocking slot is CALLING for the
 * length of the call; an asynchronous one is CALLING until the call
 * returns, then HELD until its callback frees it (a callback that comes
 * first frees it at once).  A worker not paused yet may refill its slot
 * while the check reads it: the fields are atomics, and the check throws
 * away what it read if anything moved meanwhile. */
enum { SLOT_FREE, SLOT_CALLING, SLOT_HELD };
typedef struct slot {
  _Atomic int state;
  _Atomic int pool;
  _Atomic size_t bytes;
  _Atomic int64_t start, deadline; /* INT64_MAX: none */
} slot;

#define ASYNC_SLOTS 16
static slot blocking_slot[256];
static slot async_slot[256][ASYNC_SLOTS];

static atomic_ullong async_ok, async_timed_out, async_cancelled;
static atomic_ullong blocking_timed_out;
static atomic_ullong quiet_moments, quiet_held;

/* Workers pause between units of work (a query, a run of page accesses)
 * while the main thread looks: having just released what the unit held,
 * so that the moments it looks at come right after releases and unpins,
 * where a lost wake-up would leave a request that fits held. */
static atomic_int pause_req, paused;

static void maybe_pause(void) {
  if (!atomic_load_explicit(&pause_req, memory_order_relaxed))
    return;
  atomic_fetch_add(&paused, 1);
  while (atomic_load(&pause_req)) {
    struct timespec d = {0, 100 * 1000};
    nanosleep(&d, NULL);
  }
  atomic_fetch_sub(&paused, 1);
}

/* --faults: the callback does what an engine's might, now and then. */
static void callback_faults(uint64_t id) {
  static _Thread_local uint64_t s = 0x2545f4914f6cdd1dull;
  s ^= s << 13, s ^= s >> 7, s ^= s << 17;
  if (s % 64 == 0) { /* a slow write-back */
    struct timespec d = {0, 200 * 1000};
    nanosleep(&d, NULL);
    atomic_fetch_add(&fault_slow, 1);
  }
  uint32_t other = (uint32_t)((s >> 20) % npages);
  if (other == id)
    return;
  void *data;
  if (s % 8 == 1 && mm_pin_storage(mm, other, &data) == MM_OK) {
    atomic_fetch_add(&page_pins[other], 1);
    atomic_fetch_sub(&page_pins[other], 1);
    INVARIANT(mm_unpin_storage(mm, other) == MM_OK);
    atomic_fetch_add(&fault_pins, 1);
  }
  uint32_t ready = PAGE_READY;
  if (s % 16 == 2 &&
      atomic_compare_exchange_strong(&page_state[other], &ready, PAGE_GOING)) {
    size_t loaded = atomic_load(&page_bytes[other]);
    /* The books drop before the capacity goes back: once it is back,
     * another thread may be granted it and count it first. */
    shadow_add(-(long long)loaded);
    mm_status st = mm_release_storage(mm, other);
    INVARIANT(st == MM_OK || st == MM_EBUSY || st == MM_ENOENT);
    if (st == MM_OK) {
      atomic_store(&page_state[other], PAGE_ABSENT);
      atomic_fetch_add(&fault_releases, 1);
    } else if (st == MM_EBUSY) {
      /* Still held -- unless it was unpinned and evicted since, and its
       * callback, finding it GOING, left the books to us. */
      uint32_t going = PAGE_GOING;
      if (atomic_compare_exchange_strong(&page_state[other], &going,
                                         PAGE_READY)) {
        shadow_add((long long)loaded); /* after: the books run behind */
      } else {
        INVARIANT(going == PAGE_GONE);
        atomic_store(&page_state[other], PAGE_ABSENT);
      }
    } else {
      uint32_t going = PAGE_GOING;
      if (!atomic_compare_exchange_strong(&page_state[other], &going,
                                          PAGE_LOST)) {
        INVARIANT(going == PAGE_GONE); /* its callback came first */
        atomic_store(&page_state[other], PAGE_ABSENT);
      }
    }
  }
}

static void on_evict(void *ctx, uint64_t id, void *data, size_t bytes) {
  (void)ctx;
  INVARIANT(id < npages);
  INVARIANT(atomic_load(&page_pins[id]) == 0); /* never a pinned page */
  INVARIANT(data == NULL || ((unsigned char *)data)[0] == (unsigned char)id);
  size_t loaded = atomic_load(&page_bytes[id]); /* before the id is free */
  INVARIANT(bytes >= loaded);
  /* Once per page, and never while it is being loaded (it is pinned):
   * ready -> absent, by exactly one eviction; or a release met this
   * eviction (its releaser took the page off the books) and the two
   * finish it between them.  The state may move under us, ready to going
   * or going to lost, so retry with what the CAS saw. */
  uint32_t seen = atomic_load(&page_state[id]);
  for (;;) {
    INVARIANT(seen == PAGE_READY || seen == PAGE_GOING || seen == PAGE_LOST);
    uint32_t was = seen;
    if (atomic_compare_exchange_strong(&page_state[id], &seen,
                                       was == PAGE_GOING ? PAGE_GONE
                                                         : PAGE_ABSENT)) {
      if (was == PAGE_READY)
        shadow_add(-(long long)loaded);
      break;
    }
  }
  if (opt.faults)
    callback_faults(id);
}

/* ---- statistics --------------------------------------------------------- */

enum kind {
  K_PIN,
  K_MISS,
  K_EXEC,
  K_BURST,
  K_ASYNC,
  K_CANCEL,
  K_LIMIT,
  K_OP_ALLOC,
  K_OP_ACQUIRE,
  K_SORT,
  NKIND
};
static const char *kind_name[] = {
    "pin-hit", "page-miss", "exec-alloc", "burst",      "async",
    "cancel",  "limits",    "op-alloc",   "op-acquire", "sort-run"};
#define BUCKETS 40 /* latency histogram: bucket b holds [2^b, 2^(b+1)) ns */

typedef struct counts {
  uint64_t ops[NKIND], ok[NKIND], lat[NKIND][BUCKETS];
  uint64_t hits, misses;
} counts;

static counts *per_thread;
static atomic_ullong async_started, async_ended;
static atomic_ullong async_at_once, async_refused; /* MM_OK, MM_ENOMEM */

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void record(counts *c, enum kind k, bool ok, int64_t t0) {
  int64_t d = now_ns() - t0;
  int b = d > 1 ? 63 - __builtin_clzll((unsigned long long)d) : 0;
  /* (ops: its thread's alone, read by the progress line meanwhile) */
  __atomic_store_n(&c->ops[k], c->ops[k] + 1, __ATOMIC_RELAXED);
  c->ok[k] += ok;
  c->lat[k][b < BUCKETS ? b : BUCKETS - 1]++;
}

static double percentile(const uint64_t *h, double p) {
  uint64_t total = 0, seen = 0;
  for (int b = 0; b < BUCKETS; b++)
    total += h[b];
  if (!total)
    return 0;
  for (int b = 0; b < BUCKETS; b++) {
    seen += h[b];
    if (seen >= p * total)
      return ldexp(1.0, b + 1) / 1000.0; /* upper edge, microseconds */
  }
  return 0;
}

/* ---- the workers ----------------------------------------------------------
 */

static atomic_bool stop;

static uint64_t rng(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Zipf-ish: the low ids are hot (a power of a uniform draw). */
static uint32_t zipf(uint64_t *s) {
  double u = (rng(s) >> 11) * (1.0 / 9007199254740992.0);
  return (uint32_t)(pow(u, 3.0) * npages) % npages;
}

/* Fill @a for a call about to be made (relaxed: the state's store
 * publishes them).  Its start is read before the call, so it is no later
 * than the manager's arrival time, and its deadline no later than the
 * manager's. */
static void slot_fill(slot *a, int pool, size_t bytes, int64_t timeout) {
  int64_t start = now_ns();
  atomic_store_explicit(&a->pool, pool, memory_order_relaxed);
  atomic_store_explicit(&a->bytes, bytes, memory_order_relaxed);
  atomic_store_explicit(&a->start, start, memory_order_relaxed);
  atomic_store_explicit(&a->deadline, timeout < 0 ? INT64_MAX : start + timeout,
                        memory_order_relaxed);
  atomic_store(&a->state, SLOT_CALLING);
}

/* The outcome of an asynchronous request: booked, and its slot freed. */
static void async_done(void *ctx, mm_status st) {
  slot *a = ctx;
  INVARIANT(st == MM_OK || st == MM_ETIMEDOUT || st == MM_ECANCELED);
  atomic_fetch_add(st == MM_OK          ? &async_ok
                   : st == MM_ETIMEDOUT ? &async_timed_out
                                        : &async_cancelled,
                   1);
  atomic_store(&a->state, SLOT_FREE);
  atomic_fetch_add(&async_ended, 1);
}

/* An asynchronous request from thread @me, through a free slot of its
 * own; MM_ENOMEM, and nothing asked, if it has none free. */
static mm_status async_call(int me, int pool, uint64_t id, size_t bytes,
                            int64_t timeout, uint64_t *ticket) {
  slot *a = NULL;
  for (int i = 0; i < ASYNC_SLOTS && !a; i++)
    if (atomic_load(&async_slot[me][i].state) == SLOT_FREE)
      a = &async_slot[me][i];
  *ticket = 0;
  if (!a)
    return MM_ENOMEM;
  slot_fill(a, pool, bytes, timeout);
  mm_status st =
      mm_acquire_async(mm, pool, id, bytes, timeout, async_done, a, ticket);
  if (st == MM_OK)
    atomic_fetch_add(&async_at_once, 1); /* granted at once: no callback */
  else if (st == MM_ENOMEM)
    atomic_fetch_add(&async_refused, 1);
  if (st == MM_EINPROGRESS) {
    atomic_fetch_add(&async_started, 1);
    int calling = SLOT_CALLING; /* unless its callback came first */
    atomic_compare_exchange_strong(&a->state, &calling, SLOT_HELD);
  } else {
    atomic_store(&a->state, SLOT_FREE); /* no callback is due */
  }
  return st;
}

/* A blocking call that may wait (@timeout is not MM_NO_WAIT): an
 * execution acquire, or (with @data) mm_storage_alloc. */
static mm_status blocking_end(int me, mm_status st) {
  atomic_store(&blocking_slot[me].state, SLOT_FREE);
  if (st == MM_ETIMEDOUT)
    atomic_fetch_add(&blocking_timed_out, 1);
  return st;
}

static mm_status blocking_call(int me, int pool, uint64_t id, size_t bytes,
                               int64_t timeout, void **data) {
  slot_fill(&blocking_slot[me], pool, bytes, timeout);
  return blocking_end(me, pool == MM_POOL_EXECUTION
                              ? mm_acquire_execution(mm, id, bytes, timeout)
                              : mm_storage_alloc(mm, id, bytes, timeout, data));
}

/* The same for a consumer: an acquire, or (with @data) an allocation of
 * @bytes, its own size class. */
static mm_status blocking_op(int me, mm_consumer *op, size_t bytes,
                             int64_t timeout, void **data) {
  slot_fill(&blocking_slot[me], MM_POOL_EXECUTION, bytes, timeout);
  return blocking_end(me, data ? mm_consumer_alloc(op, bytes, timeout, data)
                               : mm_consumer_acquire(op, bytes, timeout));
}

/* One page access: pin on a hit, register on a miss; then unpin.  One
 * miss in 8 may wait a little for room, as a buffer pool waits for a free
 * frame. */
static void page_access(counts *c, uint64_t *s, uint32_t id, int me) {
  int64_t t0 = now_ns();
  void *data;
  if (mm_pin_storage(mm, id, &data) == MM_OK) {
    atomic_fetch_add(&page_pins[id], 1);
    if (atomic_load(&page_state[id]) == PAGE_READY) /* else still loading */
      INVARIANT(data && ((unsigned char *)data)[0] == (unsigned char)id);
    c->hits++;
    record(c, K_PIN, true, t0);
  } else {
    size_t bytes = 4096 * (1 + rng(s) % 4);
    uint32_t absent = PAGE_ABSENT;
    /* claim the id for this miss; another thread may be loading it */
    if (!atomic_compare_exchange_strong(&page_state[id], &absent, PAGE_LOADING))
      return;
    atomic_store(&page_bytes[id], bytes);
    uint64_t r = rng(s);
    mm_status st =
        r % 8 ? mm_storage_alloc(mm, id, bytes, MM_NO_WAIT, &data)
              : blocking_call(me, MM_POOL_STORAGE, id, bytes,
                              (r >> 8) % 2 ? 1000000 : 200000000, &data);
    c->misses++;
    record(c, K_MISS, st == MM_OK, t0);
    if (st != MM_OK) {
      INVARIANT(st == MM_ENOMEM || st == MM_EEXIST || st == MM_ETIMEDOUT);
      atomic_store(&page_state[id], PAGE_ABSENT);
      return;
    }
    atomic_fetch_add(&page_pins[id], 1); /* born pinned */
    shadow_add((long long)bytes);
    ((unsigned char *)data)[0] = (unsigned char)id; /* "read from disk" */
    atomic_store(&page_state[id], PAGE_READY);
  }
  atomic_fetch_sub(&page_pins[id], 1); /* before the unpin: see on_evict */
  INVARIANT(mm_unpin_storage(mm, id) == MM_OK);
}

/* --faults: a thread that "stops" mid-burst leaves its exec id here, still
 * holding the burst, for the main thread to reclaim. */
static _Atomic uint64_t orphan_id[256];
static _Atomic size_t orphan_bytes[256];

static void reap_orphans(void) {
  for (int i = 0; i < opt.threads; i++) {
    uint64_t id = atomic_load(&orphan_id[i]);
    if (!id)
      continue;
    size_t bytes = atomic_load(&orphan_bytes[i]);
    shadow_add(-(long long)bytes); /* before the capacity goes back */
    INVARIANT(mm_release_all_execution(mm, id) == bytes); /* nothing lost */
    atomic_store(&orphan_id[i], 0);
  }
}

/* A query's working memory, at most, summed over the threads doing
 * queries: more than the budget, so that bursts are held. */
static size_t query_min, query_max;
static const int64_t burst_timeout[] = {1000000, 5000000, 50000000, 500000000};
static const int64_t async_timeout[] = {2000000, 50000000, 1000000000};

/* Parallel operators: consumers that several query threads use at once.
 * Each thread checks its own blocks' memory and frees them; what the
 * operator holds is only ever what its threads hold. */
#define OP_THREADS 4
static mm_consumer *operators[64];
static int noperators;

static void operator_work(counts *c, uint64_t *s, int me) {
  mm_consumer *op = operators[(me / OP_THREADS) % noperators];
  void *blk[8];
  size_t sz[8];
  int n = 0;
  for (int i = 0; i < 8; i++) {
    int64_t t0 = now_ns();
    sz[n] = (size_t)16 << (rng(s) % 11);
    mm_status st = rng(s) % 4
                       ? mm_consumer_alloc(op, sz[n], MM_NO_WAIT, &blk[n])
                       : blocking_op(me, op, sz[n], 1000000, &blk[n]);
    INVARIANT(st == MM_OK || st == MM_ENOMEM || st == MM_ETIMEDOUT);
    record(c, K_OP_ALLOC, st == MM_OK, t0);
    if (st == MM_OK) {
      memset(blk[n], me & 0xff, sz[n]);
      n++;
    }
  }
  int64_t t0 = now_ns();
  size_t bytes = (size_t)65536 << (rng(s) % 5);
  mm_status st = rng(s) % 2 ? mm_consumer_acquire(op, bytes, MM_NO_WAIT)
                            : blocking_op(me, op, bytes, 1000000, NULL);
  INVARIANT(st == MM_OK || st == MM_ENOMEM || st == MM_ETIMEDOUT);
  record(c, K_OP_ACQUIRE, st == MM_OK, t0);
  if (st == MM_OK)
    shadow_add((long long)bytes);
  for (int i = 0; i < 4; i++)
    page_access(c, s, (uint32_t)(rng(s) % npages), me);
  if (st == MM_OK) {
    shadow_add(-(long long)bytes);
    INVARIANT(mm_consumer_release(op, bytes) == MM_OK);
  }
  for (int i = 0; i < n; i++) {
    INVARIANT(((unsigned char *)blk[i])[0] == (me & 0xff) &&
              ((unsigned char *)blk[i])[sz[i] - 1] == (me & 0xff));
    INVARIANT(mm_consumer_free(op, blk[i]) == MM_OK);
  }
}

/* Each query thread's sorter: a consumer that spills -- to a counter, not
 * a disk -- when the manager asks (its reclaim callback, run by another
 * thread's held request).  What it holds is claimed from sorter_bytes by
 * whoever releases it, its owner or a spill, so no release is ever more
 * than it holds. */
static mm_consumer *sorter[256];
static atomic_size_t sorter_bytes[256];
static atomic_ullong spilled_bytes, spills;

/* Claim up to @most of thread @me's sorter's bytes. */
static size_t sorter_claim(int me, size_t most) {
  size_t have = atomic_load(&sorter_bytes[me]);
  for (;;) {
    size_t take = have < most ? have : most;
    if (!take ||
        atomic_compare_exchange_weak(&sorter_bytes[me], &have, have - take))
      return take;
  }
}

static void sorter_release(int me, size_t bytes) {
  shadow_add(-(long long)bytes);
  INVARIANT(mm_consumer_release(sorter[me], bytes) == MM_OK);
}

static size_t sorter_spill(void *ctx, mm_consumer *c, size_t wanted) {
  int me = (int)(intptr_t)ctx;
  INVARIANT(c == sorter[me]);
  size_t got = sorter_claim(me, wanted);
  if (got) {
    sorter_release(me, got);
    atomic_fetch_add(&spilled_bytes, got);
    atomic_fetch_add(&spills, 1);
  }
  return got;
}

/* The sort beside a query: runs of 256 KiB to 1 MiB that may wait 1 or
 * 5 ms (and so ask the other sorters to spill), kept until the query
 * ends unless a spill takes them first. */
static void sorter_work(counts *c, uint64_t *s, int me) {
  for (int i = 0; i < 4; i++) {
    size_t bytes = (size_t)262144 << (rng(s) % 3);
    int64_t t0 = now_ns();
    mm_status st = blocking_op(me, sorter[me], bytes,
                               rng(s) % 2 ? 1000000 : 5000000, NULL);
    INVARIANT(st == MM_OK || st == MM_ETIMEDOUT || st == MM_ENOMEM);
    record(c, K_SORT, st == MM_OK, t0);
    if (st == MM_OK) {
      shadow_add((long long)bytes);
      atomic_fetch_add(&sorter_bytes[me], bytes);
    }
  }
}

static void exec_work(counts *c, uint64_t *s, uint64_t *idp, int me) {
  uint64_t id = *idp;
  /* A query grows its working memory in bursts up to its target; a burst
   * that does not come in time makes it spill: it goes on with what it
   * has. */
  size_t target = query_min + rng(s) % (query_max - query_min + 1), held = 0;
  while (held < target) {
    size_t burst = MiB * (1 + rng(s) % 8);
    if (burst > target - held)
      burst = target - held;
    int64_t t0 = now_ns();
    mm_status st = blocking_call(me, MM_POOL_EXECUTION, id, burst,
                                 burst_timeout[rng(s) % 4], NULL);
    INVARIANT(st == MM_OK || st == MM_ETIMEDOUT || st == MM_ENOMEM);
    record(c, K_BURST, st == MM_OK, t0);
    if (st != MM_OK)
      break;
    shadow_add((long long)burst);
    held += burst;
  }
  /* a few blocks of working memory */
  void *blk[8];
  size_t sz[8];
  int n = 0;
  for (int i = 0; i < 8; i++) {
    int64_t t0 = now_ns();
    sz[n] = 64 << (rng(s) % 10);
    if (mm_exec_alloc(mm, id, sz[n], MM_NO_WAIT, &blk[n]) == MM_OK) {
      memset(blk[n], 0x5a, sz[n]);
      record(c, K_EXEC, true, t0);
      n++;
    } else {
      record(c, K_EXEC, false, t0);
    }
  }
  for (int i = 0; i < n; i++)
    INVARIANT(mm_exec_free(mm, id, blk[i]) == MM_OK);
  operator_work(c, s, me);
  sorter_work(c, s, me);
  /* an asynchronous request beside it, sometimes cancelled; its grant, if
   * it comes, is released with the id at the query's end (or the next) */
  uint64_t async_id = (uint64_t)me + 1 + (1ull << 40), ticket;
  size_t abytes = MiB * (1 + rng(s) % 4);
  if (abytes > opt.budget / 16)
    abytes = opt.budget / 16;
  int64_t t0 = now_ns();
  mm_status st = async_call(me, MM_POOL_EXECUTION, async_id, abytes,
                            async_timeout[rng(s) % 3], &ticket);
  INVARIANT(st == MM_OK || st == MM_EINPROGRESS || st == MM_ENOMEM);
  record(c, K_ASYNC, st != MM_ENOMEM, t0);
  bool cancel = st == MM_EINPROGRESS && rng(s) % 2;
  /* the scan beside the join, holding the query's memory */
  for (int i = 0; i < 8; i++)
    page_access(c, s, (uint32_t)(rng(s) % npages), me);
  if (cancel) {
    mm_status cs = mm_cancel(mm, ticket);
    INVARIANT(cs == MM_OK || cs == MM_ENOENT);
    record(c, K_CANCEL, cs == MM_OK, t0);
  }
  if (held && opt.faults && rng(s) % 50 == 0 &&
      atomic_load(&orphan_id[me]) == 0) {
    /* This "thread" stops here, holding its query's memory; work goes on
     * under a new exec id, and the main thread reclaims the old one. */
    atomic_store(&orphan_bytes[me], held);
    atomic_store(&orphan_id[me], id);
    *idp = id + 256;
    atomic_fetch_add(&fault_stops, 1);
    return;
  }
  if (held) {
    shadow_add(-(long long)held);
    INVARIANT(mm_release_execution(mm, id, held) == MM_OK);
  }
  size_t sorted = sorter_claim(me, SIZE_MAX); /* what no spill took */
  if (sorted)
    sorter_release(me, sorted);
  (void)mm_release_all_execution(mm, async_id);
}

/* Are all of thread @me's asynchronous requests decided?  A cancel that
 * answers MM_ENOENT lost to a grant, and only the callback says when that
 * grant is booked. */
static bool all_decided(int me) {
  for (int i = 0; i < ASYNC_SLOTS; i++)
    if (atomic_load(&async_slot[me][i].state) != SLOT_FREE)
      return false;
  return true;
}

static void adversarial_work(counts *c, uint64_t *s, int me) {
  uint64_t id = (uint64_t)me + 1;
  /* a consumer of the id, holding memory and a block when the id goes */
  mm_consumer *vc;
  INVARIANT(mm_consumer_open(mm, id, &vc) == MM_OK);
  void *kept = NULL;
  mm_status vs = mm_consumer_alloc(vc, 1 + rng(s) % 20000, MM_NO_WAIT, &kept);
  INVARIANT(vs == MM_OK || vs == MM_ENOMEM);
  vs = mm_consumer_acquire(vc, 64 << 10, MM_NO_WAIT);
  INVARIANT(vs == MM_OK || vs == MM_ENOMEM);
  int64_t t0 = now_ns();
  /* exact limits */
  INVARIANT(mm_acquire_execution(mm, id, 0, MM_NO_WAIT) == MM_EINVAL);
  INVARIANT(mm_acquire_execution(mm, id, opt.budget + 1, MM_NO_WAIT) ==
            MM_EINVAL);
  mm_status st = mm_acquire_execution(mm, id, opt.budget, MM_NO_WAIT);
  INVARIANT(st == MM_OK || st == MM_ENOMEM);
  if (st == MM_OK)
    INVARIANT(mm_release_execution(mm, id, opt.budget) == MM_OK);
  INVARIANT(mm_exec_free(mm, id, &st) == MM_EINVAL); /* not ours */
  record(c, K_LIMIT, true, t0);
  /* pin a run of pages, then let go */
  uint32_t base = zipf(s);
  for (uint32_t k = 0; k < 16; k++)
    page_access(c, s, (base + k) % npages, me);
  /* a cancel storm */
  for (int i = 0; i < 8; i++) {
    uint64_t ticket;
    t0 = now_ns();
    st = async_call(me, MM_POOL_EXECUTION, id, 256 << 10, MM_WAIT_FOREVER,
                    &ticket);
    if (st == MM_EINPROGRESS) {
      mm_status cs = mm_cancel(mm, ticket);
      record(c, K_CANCEL, cs == MM_OK, t0);
    }
  }
  /* the exec id vanishes: reclaimed whole, once the storm is decided */
  for (int spin = 0; !all_decided(me); spin++) {
    INVARIANT(spin < 30000); /* 30 s */
    struct timespec d = {0, 1000000};
    nanosleep(&d, NULL);
  }
  (void)mm_release_all_execution(mm, id);
  /* the consumer was closed with it: refused, but its block is freed */
  INVARIANT(mm_consumer_held(vc) == 0);
  INVARIANT(mm_consumer_acquire(vc, 1, MM_NO_WAIT) == MM_EINVAL);
  if (kept)
    INVARIANT(mm_consumer_free(vc, kept) == MM_OK);
  INVARIANT(mm_consumer_close(vc) == MM_OK);
}

/* A run of page accesses; one run in 8 is a range scan that keeps the
 * cached pages of a range pinned until it ends, up to 1/32 of the budget
 * (so that room waits for unpins). */
#define SCAN_PAGES 4096
static _Thread_local uint32_t scan_pinned[SCAN_PAGES];

static void storage_work(counts *c, uint64_t *s, int me) {
  int np = 0;
  if (rng(s) % 8 == 0) {
    uint32_t base = (uint32_t)(rng(s) % npages);
    size_t bytes = 0;
    for (uint32_t k = 0; k < SCAN_PAGES && bytes < opt.budget / 32; k++) {
      uint32_t id = (base + k) % npages;
      void *data;
      if (mm_pin_storage(mm, id, &data) == MM_OK) {
        atomic_fetch_add(&page_pins[id], 1);
        scan_pinned[np++] = id;
        bytes += atomic_load(&page_bytes[id]);
      }
    }
  }
  for (int i = 0; i < 64; i++)
    page_access(c, s, zipf(s), me);
  for (int i = 0; i < np; i++) {
    uint32_t id = scan_pinned[i];
    atomic_fetch_sub(&page_pins[id], 1); /* before the unpin: see on_evict */
    INVARIANT(mm_unpin_storage(mm, id) == MM_OK);
  }
}

static void *worker(void *arg) {
  int me = (int)(intptr_t)arg;
  counts *c = &per_thread[me];
  uint64_t s = opt.seed * 0x9e3779b97f4a7c15ull + (uint64_t)me + 1;
  bool storage_role =
      opt.workload == OLTP || (opt.workload == MIXED && me % 2 == 0);
  uint64_t exec_id = (uint64_t)me + 1;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    maybe_pause();
    if (opt.workload == ADVERSARIAL)
      adversarial_work(c, &s, me);
    else if (storage_role)
      storage_work(c, &s, me);
    else
      exec_work(c, &s, &exec_id, me);
  }
  return NULL;
}

/* ---- stranded waiters ------------------------------------------------------
 *
 * A frozen moment: every worker paused between operations or blocked in
 * a held request, the manager's count of held requests equal to ours, and
 * no dispatch pass running or owed (mmi_test_quiet), the same before and
 * after we look.  Passes start only from kicks, so every event before the
 * moment has had its pass, and nothing changes while we look.  A held
 * request that fits then was stranded: the pass after the event that made
 * it fit should have granted it (an asynchronous one past its deadline
 * would have been timed out by it; a blocking one past its deadline may
 * be timing itself out, and is not judged).  "Fits" is the pool rules on the
 * books of mm_get_stats (consumers' spare quota is not in them, and a pass
 * reclaims it first): free memory, or, for execution, unpinned pages above the
 * protected floor with the largest page to spare (victims are whole pages), for
 * storage any unpinned pages.  A request that fits may stay held behind an
 * older one that is starved and does not fit (the overtake rule): a moment with
 * such a request, or one that might be (older than the overtake limit by our
 * clock, which starts before the manager's), proves nothing. */
#define MAX_PAGE_BYTES ((size_t)16384)
#define OVERTAKE_NS    10000000 /* mm_config's default */

static bool fits(const mm_stats *s, int pool, size_t bytes) {
  uint64_t t = s->total_bytes, e = s->execution_used_bytes,
           st = s->storage_used_bytes;
  uint64_t unpinned =
      st > s->storage_pinned_bytes ? st - s->storage_pinned_bytes : 0;
  /* Past the budget (a shrink), what is over must be evicted first. */
  uint64_t over = s->over_budget_bytes;
  if (pool == MM_POOL_EXECUTION) {
    uint64_t room = over ? 0 : t - e - st, floor_ = opt.budget / 8;
    if (bytes <= room)
      return true;
    uint64_t need = bytes - room + over;
    uint64_t above =
        st > floor_ + MAX_PAGE_BYTES ? st - floor_ - MAX_PAGE_BYTES : 0;
    return need <= unpinned && need <= above;
  }
  /* storage fraction 0.5, in pages at the ceiling, scaled (pool.c) */
  uint64_t s0 = (uint64_t)((unsigned __int128)(opt.budget / 2 / 4096 * 4096) *
                           t / opt.budget);
  uint64_t e0 = t - s0, ee = e > e0 ? e : e0;
  uint64_t cap = t > ee ? t - ee : 0, room = cap > st ? cap - st : 0;
  uint64_t extra = st + ee > t ? st + ee - t : 0; /* past its rule */
  return bytes + extra <= room || bytes - room + extra <= unpinned;
}

/* Held requests now, by our slots; *@calling: asynchronous calls not
 * returned yet. */
static int count_held(int *inside, int *calling) {
  int async_held = 0;
  *inside = *calling = 0;
  for (int i = 0; i < opt.threads; i++) {
    *inside += atomic_load(&blocking_slot[i].state) == SLOT_CALLING;
    for (int k = 0; k < ASYNC_SLOTS; k++) {
      int st = atomic_load(&async_slot[i][k].state);
      async_held += st == SLOT_HELD;
      *calling += st == SLOT_CALLING;
    }
  }
  return *inside + async_held;
}

static void check_stranded(void) {
  atomic_store(&pause_req, 1);
  for (int64_t until = now_ns() + 2000000000; now_ns() < until;) {
    struct timespec d = {0, 100 * 1000};
    int inside, calling, held = count_held(&inside, &calling);
    uint64_t before = mmi_test_quiet(mm);
    if (atomic_load(&paused) + inside != opt.threads || calling ||
        before == UINT64_MAX) {
      nanosleep(&d, NULL);
      continue;
    }
    mm_stats s;
    mm_get_stats(mm, &s);
    int64_t now = now_ns();
    int fitting = 0, starved_unfit = 0, first_pool = 0;
    size_t first_bytes = 0;
    for (int i = 0; i < opt.threads; i++)
      for (int k = -1; k < ASYNC_SLOTS; k++) {
        slot *a = k < 0 ? &blocking_slot[i] : &async_slot[i][k];
        int state = atomic_load(&a->state);
        if (state != (k < 0 ? SLOT_CALLING : SLOT_HELD))
          continue;
        int pool = atomic_load_explicit(&a->pool, memory_order_relaxed);
        size_t bytes = atomic_load_explicit(&a->bytes, memory_order_relaxed);
        int64_t start = atomic_load_explicit(&a->start, memory_order_relaxed);
        /* A blocking waiter past its deadline may have timed itself out
         * and not yet counted itself out: not judged.  But it times itself
         * out only when its thread runs again, and until then it is held
         * and, starved, bars younger requests as any starved one does (on
         * a loaded machine that thread may wait a while for a CPU). */
        if (k < 0 &&
            now >= atomic_load_explicit(&a->deadline, memory_order_relaxed)) {
          if (!fits(&s, pool, bytes) && now - start >= OVERTAKE_NS)
            starved_unfit++;
          continue;
        }
        if (fits(&s, pool, bytes)) {
          if (!fitting++)
            first_pool = pool, first_bytes = bytes;
        } else if (now - start >= OVERTAKE_NS) {
          starved_unfit++;
        }
      }
    int inside2, calling2;
    if (count_held(&inside2, &calling2) != held || inside2 != inside ||
        s.held_now != (uint64_t)held || mmi_test_quiet(mm) != before) {
      nanosleep(&d, NULL); /* it moved while we looked: look again */
      continue;
    }
    atomic_fetch_add(&quiet_moments, 1);
    atomic_fetch_add(&quiet_held, (unsigned long long)held);
    if (fitting && !starved_unfit) {
      fprintf(stderr,
              "mm-stress: %d held request(s) fit and are not granted; one: "
              "%s, %zu bytes (free %zu of %zu, storage %zu used, %zu "
              "pinned)\n",
              fitting,
              first_pool == MM_POOL_EXECUTION ? "execution" : "storage",
              first_bytes,
              (size_t)(s.total_bytes - s.execution_used_bytes -
                       s.storage_used_bytes),
              (size_t)s.total_bytes, (size_t)s.storage_used_bytes,
              (size_t)s.storage_pinned_bytes);
      broken("no held request is stranded");
    }
    break;
  }
  atomic_store(&pause_req, 0);
}

/* ---- --resize ------------------------------------------------------------ */

static struct {
  uint64_t rng;
  size_t published, now, least;
  unsigned long long shrinks, timed_out, grows;
} rs;

/* Shrink to between half the budget and the budget in force, or grow to
 * between that and the whole budget, in turn. */
static void resize_step(void) {
  bool grow = rs.shrinks > rs.grows;
  size_t lo = grow ? rs.now : opt.budget / 2, hi = grow ? opt.budget : rs.now;
  size_t target = (lo + (size_t)(rng(&rs.rng) % (hi - lo + 1))) / 4096 * 4096;
  if (target < opt.budget / 2)
    target = opt.budget / 2;
  if (target > rs.published) { /* before: a grow takes effect in the call */
    bound_publish(target);
    rs.published = target;
  }
  /* no wait, a moment, or long enough for the workers to release */
  static const int64_t timeout[] = {MM_NO_WAIT, 1000000, 50000000};
  mm_status st = mm_set_budget(mm, target, timeout[rng(&rs.rng) % 3]);
  INVARIANT(st == MM_OK || st == MM_ETIMEDOUT);
  if (st == MM_OK && target < rs.published) { /* after: use fitted */
    bound_publish(target);
    rs.published = target;
  }
  rs.now = target;
  if (target < rs.least)
    rs.least = target;
  if (grow) {
    rs.grows++;
  } else {
    rs.shrinks++;
    rs.timed_out += st == MM_ETIMEDOUT;
  }
}

/* The manager's own account of the run (mm_stats_print), taken when the
 * workers stop, before the teardown empties it; printed with the report. */
static char manager_account[8192];
static void keep_account(void *ctx, const char *text) {
  (void)ctx;
  size_t n = strlen(manager_account);
  snprintf(manager_account + n, sizeof manager_account - n, "%s", text);
}

/* ---- the run ------------------------------------------------------------- */

int main(int argc, char **argv) {
  parse(argc, argv);
  mm_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.total_bytes = opt.budget;
  cfg.storage_protected_bytes = opt.budget / 8;
  cfg.eviction = opt.policy;
  cfg.seed = opt.seed;
  cfg.on_evict = on_evict;
  cfg.max_execution_request = opt.budget;
  atomic_store(&bound_log[0], opt.budget);
  rs.rng = opt.seed * 0x9e3779b97f4a7c15ull + 1;
  rs.published = rs.now = rs.least = opt.budget;
  mm_status st = mm_create(&cfg, &mm);
  if (st != MM_OK) {
    fprintf(stderr, "mm-stress: mm_create: %s\n", mm_strerror(st));
    return 1;
  }
  /* Queries: their targets, summed over the threads running them, come
   * to between a quarter of the budget and twice it. */
  int nexec = opt.workload == ANALYTIC ? opt.threads
              : opt.workload == MIXED  ? opt.threads / 2
                                       : 1;
  if (nexec < 1)
    nexec = 1;
  query_min = opt.budget / 4 / (size_t)nexec;
  query_max = opt.budget * 2 / (size_t)nexec;
  if (query_max > opt.budget / 2)
    query_max = opt.budget / 2;
  if (query_min > query_max)
    query_min = query_max;
  /* four times as many page ids as fit: misses and evictions */
  npages = (uint32_t)(opt.budget / 2 / 4096 * 4);
  if (npages > MAX_PAGES)
    npages = MAX_PAGES;
  noperators = (nexec + OP_THREADS - 1) / OP_THREADS;
  if (noperators > 64)
    noperators = 64;
  for (int i = 0; i < noperators; i++)
    INVARIANT(mm_consumer_open(mm, (1ull << 41) + (uint64_t)i, &operators[i]) ==
              MM_OK);
  for (int i = 0; i < opt.threads; i++) {
    INVARIANT(mm_consumer_open(mm, (3ull << 41) + (uint64_t)i, &sorter[i]) ==
              MM_OK);
    INVARIANT(mm_consumer_set_reclaim(sorter[i], sorter_spill,
                                      (void *)(intptr_t)i) == MM_OK);
  }
  per_thread = calloc((size_t)opt.threads, sizeof *per_thread);
  if (opt.faults)
    mmi_backing_fail_every(97); /* every 97th block allocation fails */
  mm_stats first;
  mm_get_stats(mm, &first);

  pthread_t *t = calloc((size_t)opt.threads, sizeof *t);
  int64_t t0 = now_ns();
  for (int i = 0; i < opt.threads; i++)
    pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
  /* The progress line: redrawn in place on a terminal, else a line of
   * its own each second (logs show it too); none with --json. */
  bool tty = isatty(STDOUT_FILENO) && !opt.json;
  bool progress = !opt.json;
  uint64_t last_ops = 0, last_evict = 0;
  for (int64_t tick = 1;; tick++) {
    while (now_ns() < t0 + tick * 100000000 && !atomic_load(&stop)) {
      check_picture();
      reap_orphans();
      struct timespec d = {0, 1000000};
      nanosleep(&d, NULL);
    }
    if (tick % 3 == 0) /* every 300 ms */
      check_stranded();
    if (opt.resize && tick % 2 == 0) /* every 200 ms */
      resize_step();
    if (tick % 10 == 0 && progress) { /* the progress line */
      uint64_t ops = 0;
      for (int i = 0; i < opt.threads; i++)
        for (int k = 0; k < NKIND; k++)
          ops += __atomic_load_n(&per_thread[i].ops[k], __ATOMIC_RELAXED);
      mm_stats s;
      mm_get_stats(mm, &s);
      printf("%s%5.1fs %9.0f ops/s  exec %5zu/%5zu MiB  storage %5zu/%5zu "
             "MiB  %7.0f evictions/s  held %llu%s",
             tty ? "\r" : "", (now_ns() - t0) / 1e9, (double)(ops - last_ops),
             s.execution_used_bytes / MiB, s.execution_pool_bytes / MiB,
             s.storage_used_bytes / MiB, s.storage_pool_bytes / MiB,
             (double)(s.evictions - last_evict), (unsigned long long)s.held_now,
             tty ? "   " : "\n");
      fflush(stdout);
      last_ops = ops;
      last_evict = s.evictions;
    }
    if (now_ns() >= t0 + (int64_t)(opt.seconds * 1e9))
      break;
  }
  atomic_store(&stop, true);
  for (int i = 0; i < opt.threads; i++)
    pthread_join(t[i], NULL);
  mmi_backing_fail_every(0);
  reap_orphans();
  mm_stats_print(mm, keep_account, NULL, opt.json ? "J" : "");
  if (opt.resize) /* back to the whole budget for the teardown's checks */
    INVARIANT(mm_set_budget(mm, opt.budget, MM_WAIT_FOREVER) == MM_OK);
  double elapsed = (now_ns() - t0) / 1e9;
  if (tty)
    printf("\n");

  /* Teardown: every held request ended, then every page released.  In
   * that order: a request still held could be granted by an eviction
   * (on the service thread, or in a pass our own releases start), and
   * its callback could pin or release the pages this loop releases.
   * Once the last callback has run, nothing else touches the manager. */
  for (int spin = 0; atomic_load(&async_ended) != atomic_load(&async_started);
       spin++) {
    INVARIANT(spin < 10000); /* 10 s */
    struct timespec d = {0, 1000000};
    nanosleep(&d, NULL);
  }
  for (uint32_t id = 0; id < npages; id++)
    if (atomic_load(&page_state[id]) == PAGE_READY) {
      INVARIANT(mm_release_storage(mm, id) == MM_OK);
      shadow_add(-(long long)atomic_load(&page_bytes[id]));
    }
  for (int i = 0; i < opt.threads; i++)
    (void)mm_release_all_execution(mm, (uint64_t)i + 1 + (1ull << 40));
  for (int i = 0; i < noperators; i++) {
    INVARIANT(mm_consumer_held(operators[i]) == 0); /* its threads' all */
    INVARIANT(mm_consumer_close(operators[i]) == MM_OK);
  }
  for (int i = 0; i < opt.threads; i++) {
    size_t left = sorter_claim(i, SIZE_MAX); /* a stopped thread's */
    if (left)
      sorter_release(i, left);
    INVARIANT(mm_consumer_held(sorter[i]) == 0);
    INVARIANT(mm_consumer_close(sorter[i]) == MM_OK);
  }
  mm_trim(mm);
  mm_stats end;
  mm_get_stats(mm, &end);
  INVARIANT(end.execution_used_bytes == 0 && end.storage_used_bytes == 0);
  INVARIANT(end.execution_pool_bytes == first.execution_pool_bytes);
  INVARIANT(end.storage_pool_bytes == first.storage_pool_bytes);
  if (end.backing_allocated_bytes != 0)
    fprintf(stderr,
            "mm-stress: after teardown the arena holds %llu bytes (%llu "
            "parked in thread caches; %llu pages, %llu exec ids left)\n",
            (unsigned long long)end.backing_allocated_bytes,
            (unsigned long long)end.cache_parked_bytes,
            (unsigned long long)end.storage_pages,
            (unsigned long long)end.execution_ids);
  INVARIANT(end.backing_allocated_bytes == 0);
  INVARIANT(atomic_load(&shadow) == 0);

  counts all = {0};
  for (int i = 0; i < opt.threads; i++) {
    for (int k = 0; k < NKIND; k++) {
      all.ops[k] += per_thread[i].ops[k];
      all.ok[k] += per_thread[i].ok[k];
      for (int b = 0; b < BUCKETS; b++)
        all.lat[k][b] += per_thread[i].lat[k][b];
    }
    all.hits += per_thread[i].hits;
    all.misses += per_thread[i].misses;
  }
  uint64_t total_ops = 0;
  for (int k = 0; k < NKIND; k++)
    total_ops += all.ops[k];
  double hit = all.hits + all.misses
                   ? (double)all.hits / (double)(all.hits + all.misses)
                   : 0;
  if (opt.json) {
    printf("{\"workload\":\"%s\",\"threads\":%d,\"seconds\":%.2f,"
           "\"budget\":%zu,\"ops\":%llu,\"evictions\":%llu,"
           "\"hit_ratio\":%.4f,\"held\":%llu,\"held_granted\":%llu,"
           "\"timed_out\":%llu,\"cancelled\":%llu,\"async_held\":%llu,"
           "\"async_granted\":%llu,\"frozen_moments\":%llu,"
           "\"frozen_held\":%llu,\"reclaims\":%llu,"
           "\"reclaimed_bytes\":%llu,\"reclaim_ns\":%llu,\"kinds\":{",
           workload_name[opt.workload], opt.threads, elapsed, opt.budget,
           (unsigned long long)total_ops, (unsigned long long)end.evictions,
           hit, (unsigned long long)end.held,
           (unsigned long long)end.held_granted,
           (unsigned long long)end.timed_out, (unsigned long long)end.cancelled,
           (unsigned long long)atomic_load(&async_started),
           (unsigned long long)atomic_load(&async_ok),
           (unsigned long long)atomic_load(&quiet_moments),
           (unsigned long long)atomic_load(&quiet_held),
           (unsigned long long)end.reclaims,
           (unsigned long long)end.reclaimed_bytes,
           (unsigned long long)end.reclaim_ns);
    for (int k = 0; k < NKIND; k++)
      printf("%s\"%s\":{\"ops\":%llu,\"ok\":%llu,\"p50_us\":%.2f,"
             "\"p99_us\":%.2f,\"p999_us\":%.2f}",
             k ? "," : "", kind_name[k], (unsigned long long)all.ops[k],
             (unsigned long long)all.ok[k], percentile(all.lat[k], 0.5),
             percentile(all.lat[k], 0.99), percentile(all.lat[k], 0.999));
    manager_account[strcspn(manager_account, "\n")] = '\0';
    printf("},\"invariants\":\"held\",\"manager\":%s}\n", manager_account);
    mm_destroy(mm);
    return 0;
  }
  printf("mm-stress: %s, %d threads, %.1f s, budget %zu MiB, %s eviction\n",
         workload_name[opt.workload], opt.threads, elapsed, opt.budget / MiB,
         opt.policy ? "sampled-LRU" : "random");
  printf("%-11s %11s %11s %10s %10s %10s\n", "operation", "count", "ok",
         "p50 us", "p99 us", "p99.9 us");
  for (int k = 0; k < NKIND; k++)
    if (all.ops[k])
      printf("%-11s %11llu %11llu %10.1f %10.1f %10.1f\n", kind_name[k],
             (unsigned long long)all.ops[k], (unsigned long long)all.ok[k],
             percentile(all.lat[k], 0.5), percentile(all.lat[k], 0.99),
             percentile(all.lat[k], 0.999));
  printf("%.0f operations/s, %.0f evictions/s, cache hit ratio %.3f\n",
         total_ops / elapsed, end.evictions / elapsed, hit);
  uint64_t async_held = atomic_load(&async_started);
  uint64_t blocking_held = end.held - async_held;
  uint64_t blocking_ok = end.held_granted - atomic_load(&async_ok);
  uint64_t blocking_to = atomic_load(&blocking_timed_out);
  uint64_t async_made =
      atomic_load(&async_at_once) + async_held + atomic_load(&async_refused);
  printf("asynchronous requests: %llu made (the \"async\" row; ok = granted "
         "at once or held): %llu granted at once (MM_OK: no callback is "
         "due), %llu held and answered by callback (%llu granted, %llu "
         "timed out, %llu cancelled; %llu of %llu callbacks run), %llu "
         "declined\n",
         (unsigned long long)async_made,
         (unsigned long long)atomic_load(&async_at_once),
         (unsigned long long)async_held,
         (unsigned long long)atomic_load(&async_ok),
         (unsigned long long)atomic_load(&async_timed_out),
         (unsigned long long)atomic_load(&async_cancelled),
         (unsigned long long)atomic_load(&async_ended),
         (unsigned long long)async_held,
         (unsigned long long)atomic_load(&async_refused));
  printf("blocking requests held: %llu (granted %llu, timed out %llu, "
         "allocator failed %llu); held in all: %llu\n",
         (unsigned long long)blocking_held, (unsigned long long)blocking_ok,
         (unsigned long long)blocking_to,
         (unsigned long long)(blocking_held - blocking_ok - blocking_to),
         (unsigned long long)end.held);
  if (end.reclaims)
    printf("reclaim: %llu callbacks gave back %llu MiB (%llu spills by the "
           "sorters), %.1f us each on average\n",
           (unsigned long long)end.reclaims,
           (unsigned long long)(end.reclaimed_bytes / MiB),
           (unsigned long long)atomic_load(&spills),
           (double)end.reclaim_ns / 1e3 / (double)end.reclaims);
  if (opt.resize)
    printf("resize: %llu shrinks (%llu timed out, the budget in force all "
           "the same), %llu grows; budget between %zu and %zu MiB, use at "
           "most %zu KiB past it; %llu changes\n",
           rs.shrinks, rs.timed_out, rs.grows, rs.least / MiB, opt.budget / MiB,
           atomic_load(&most_over) / 1024,
           (unsigned long long)end.budget_changes);
  printf("stranded waiters: none in %llu frozen moments (%llu held "
         "requests judged)\n",
         (unsigned long long)atomic_load(&quiet_moments),
         (unsigned long long)atomic_load(&quiet_held));
  if (opt.faults)
    printf("faults: every 97th block allocation failed; %llu slow callbacks, "
           "%llu pins and %llu releases from callbacks, %llu threads stopped "
           "and reclaimed\n",
           (unsigned long long)atomic_load(&fault_slow),
           (unsigned long long)atomic_load(&fault_pins),
           (unsigned long long)atomic_load(&fault_releases),
           (unsigned long long)atomic_load(&fault_stops));
  printf("invariants: all held; pools back at %zu/%zu MiB, nothing left "
         "allocated\n",
         end.execution_pool_bytes / MiB, end.storage_pool_bytes / MiB);
  printf("the manager's own account, when the workers stopped:\n%s",
         manager_account);
  mm_destroy(mm);
  free(t);
  free(per_thread);
  return 0;
}

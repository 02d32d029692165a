/*
 * mm_stress.c -- drive the manager the way a storage engine would, hard,
 * and check its promises all the time.
 *
 *   mm-stress [--threads N] [--seconds S] [--budget SIZE]
 *             [--workload oltp|analytic|mixed|adversarial]
 *             [--policy random|lru] [--seed N] [--faults] [--json]
 *
 * Defaults: 8 threads, 5 seconds, 256 MiB, mixed, random, seed 1.
 *
 * Workloads (each thread picks its role from the workload):
 *   oltp         pages of 4-16 KiB on a Zipf-skewed id stream: a hit pins
 *                the page and checks its memory, a miss registers it with
 *                mm_storage_alloc (evicting); pins are dropped at once or
 *                after a few more accesses.
 *   analytic     exec ids doing 1-8 MiB hash-join bursts (accounting, with
 *                timeouts, and asynchronous holds with callbacks) plus
 *                blocks from mm_exec_alloc, beside a scan that churns pages.
 *   mixed        both (the default).
 *   adversarial  a 4 MiB budget, pages pinned in bulk, requests at the
 *                exact limits, cancel storms, exec ids that vanish and are
 *                reclaimed with mm_release_all_execution.
 *
 * --faults injects faults, and checks that each ends in a documented
 * status with nothing lost: every 97th block allocation of the backing
 * allocator fails; one eviction callback in 64 is slow (200 us); one in 8
 * pins and unpins another page, and one in 16 releases another page;
 * threads stop mid-burst, holding execution memory, and the main thread
 * reclaims their exec ids with mm_release_all_execution.
 *
 * Invariants, checked all the time; the first break prints what broke and
 * exits with status 1:
 *   - a shadow count of what the harness holds never exceeds the budget;
 *   - no pinned page is evicted, and each page is evicted at most once
 *     (the callback checks a per-page state word);
 *   - every held request ends exactly once (callbacks counted);
 *   - every mm_stats picture obeys the pool rules;
 *   - after teardown both pools are back at their initial sizes and every
 *     block is freed.
 */
#include <memory_manager.h>

#include "backing.h" /* the allocator's test hook (static build) */

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
  bool json;
} opt = {8, 5.0, 256 * MiB, MIXED, MM_EVICT_RANDOM, 1, false, false};

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
          "                 [--json]\n");
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

static void shadow_add(long long bytes) {
  long long now = atomic_fetch_add(&shadow, bytes) + bytes;
  INVARIANT(now <= (long long)opt.budget);
}

static void check_picture(void) {
  mm_stats s;
  mm_get_stats(mm, &s);
  INVARIANT(s.execution_pool_bytes + s.storage_pool_bytes == s.total_bytes);
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

enum kind { K_PIN, K_MISS, K_EXEC, K_BURST, K_ASYNC, K_CANCEL, K_LIMIT, NKIND };
static const char *kind_name[] = {"pin-hit", "page-miss", "exec-alloc", "burst",
                                  "async",   "cancel",    "limits"};
#define BUCKETS 40 /* latency histogram: bucket b holds [2^b, 2^(b+1)) ns */

typedef struct counts {
  uint64_t ops[NKIND], ok[NKIND], lat[NKIND][BUCKETS];
  uint64_t hits, misses;
} counts;

static counts *per_thread;
static atomic_ullong async_started, async_ended;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void record(counts *c, enum kind k, bool ok, int64_t t0) {
  int64_t d = now_ns() - t0;
  int b = d > 1 ? 63 - __builtin_clzll((unsigned long long)d) : 0;
  c->ops[k]++;
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

static void async_done(void *ctx, mm_status st) {
  (void)ctx;
  INVARIANT(st == MM_OK || st == MM_ETIMEDOUT || st == MM_ECANCELED);
  atomic_fetch_add(&async_ended, 1);
}

/* One page access: pin on a hit, register on a miss; then unpin. */
static void page_access(counts *c, uint64_t *s, uint32_t id) {
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
    mm_status st = mm_storage_alloc(mm, id, bytes, MM_NO_WAIT, &data);
    c->misses++;
    record(c, K_MISS, st == MM_OK, t0);
    if (st != MM_OK) {
      INVARIANT(st == MM_ENOMEM || st == MM_EEXIST);
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

static void exec_work(counts *c, uint64_t *s, uint64_t *idp, int me) {
  uint64_t id = *idp;
  int64_t t0 = now_ns();
  size_t burst = MiB * (1 + rng(s) % 8);
  mm_status st = mm_acquire_execution(mm, id, burst, 2000000 /* 2 ms */);
  INVARIANT(st == MM_OK || st == MM_ETIMEDOUT || st == MM_ENOMEM);
  record(c, K_BURST, st == MM_OK, t0);
  if (st == MM_OK)
    shadow_add((long long)burst);
  /* a few blocks of working memory */
  void *blk[8];
  size_t sz[8];
  int n = 0;
  for (int i = 0; i < 8; i++) {
    t0 = now_ns();
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
  if (st == MM_OK && opt.faults && rng(s) % 50 == 0 &&
      atomic_load(&orphan_id[me]) == 0) {
    /* This "thread" stops here, holding its burst; work goes on under a
     * new exec id, and the main thread reclaims the old one. */
    atomic_store(&orphan_bytes[me], burst);
    atomic_store(&orphan_id[me], id);
    *idp = id + 256;
    atomic_fetch_add(&fault_stops, 1);
    return;
  }
  if (st == MM_OK) {
    shadow_add(-(long long)burst);
    INVARIANT(mm_release_execution(mm, id, burst) == MM_OK);
  }
  /* an asynchronous hold with a deadline, sometimes cancelled */
  t0 = now_ns();
  uint64_t ticket;
  st = mm_acquire_async(mm, MM_POOL_EXECUTION, (uint64_t)me + 1 + (1ull << 40),
                        1 * MiB, 1000000, async_done, NULL, &ticket);
  INVARIANT(st == MM_OK || st == MM_EINPROGRESS || st == MM_ENOMEM);
  record(c, K_ASYNC, st != MM_ENOMEM, t0);
  if (st == MM_EINPROGRESS) {
    atomic_fetch_add(&async_started, 1);
    if (rng(s) % 2) {
      mm_status cs = mm_cancel(mm, ticket);
      INVARIANT(cs == MM_OK || cs == MM_ENOENT);
      record(c, K_CANCEL, cs == MM_OK, t0);
    }
  }
  (void)mm_release_all_execution(mm, (uint64_t)me + 1 + (1ull << 40));
}

/* A cancel storm's requests still undecided, per thread: a cancel that
 * answers MM_ENOENT lost to a grant, and only the callback says when that
 * grant is booked.  The exec id is reclaimed after the last one. */
static atomic_int storm_undecided[256];

static void storm_done(void *ctx, mm_status st) {
  atomic_fetch_sub((atomic_int *)ctx, 1);
  async_done(NULL, st);
}

static void adversarial_work(counts *c, uint64_t *s, int me) {
  uint64_t id = (uint64_t)me + 1;
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
    page_access(c, s, (base + k) % npages);
  /* a cancel storm */
  for (int i = 0; i < 8; i++) {
    uint64_t ticket;
    t0 = now_ns();
    atomic_fetch_add(&storm_undecided[me], 1);
    st = mm_acquire_async(mm, MM_POOL_EXECUTION, id, 256 << 10, MM_WAIT_FOREVER,
                          storm_done, &storm_undecided[me], &ticket);
    if (st == MM_EINPROGRESS) {
      atomic_fetch_add(&async_started, 1);
      mm_status cs = mm_cancel(mm, ticket);
      record(c, K_CANCEL, cs == MM_OK, t0);
    } else {
      atomic_fetch_sub(&storm_undecided[me], 1); /* no callback is due */
    }
  }
  /* the exec id vanishes: reclaimed whole, once the storm is decided */
  for (int spin = 0; atomic_load(&storm_undecided[me]) != 0; spin++) {
    INVARIANT(spin < 30000); /* 30 s */
    struct timespec d = {0, 1000000};
    nanosleep(&d, NULL);
  }
  (void)mm_release_all_execution(mm, id);
}

static void *worker(void *arg) {
  int me = (int)(intptr_t)arg;
  counts *c = &per_thread[me];
  uint64_t s = opt.seed * 0x9e3779b97f4a7c15ull + (uint64_t)me + 1;
  bool storage_role =
      opt.workload == OLTP || (opt.workload == MIXED && me % 2 == 0);
  uint64_t exec_id = (uint64_t)me + 1;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    if (opt.workload == ADVERSARIAL)
      adversarial_work(c, &s, me);
    else if (storage_role)
      for (int i = 0; i < 64; i++)
        page_access(c, &s, zipf(&s));
    else {
      exec_work(c, &s, &exec_id, me);
      for (int i = 0; i < 8; i++) /* the scan beside the join */
        page_access(c, &s, (uint32_t)(rng(&s) % npages));
    }
  }
  return NULL;
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
  mm_status st = mm_create(&cfg, &mm);
  if (st != MM_OK) {
    fprintf(stderr, "mm-stress: mm_create: %s\n", mm_strerror(st));
    return 1;
  }
  /* four times as many page ids as fit: misses and evictions */
  npages = (uint32_t)(opt.budget / 2 / 4096 * 4);
  if (npages > MAX_PAGES)
    npages = MAX_PAGES;
  per_thread = calloc((size_t)opt.threads, sizeof *per_thread);
  if (opt.faults)
    mmi_backing_fail_every(97); /* every 97th block allocation fails */
  mm_stats first;
  mm_get_stats(mm, &first);

  pthread_t *t = calloc((size_t)opt.threads, sizeof *t);
  int64_t t0 = now_ns();
  for (int i = 0; i < opt.threads; i++)
    pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
  bool tty = isatty(STDOUT_FILENO) && !opt.json;
  uint64_t last_ops = 0, last_evict = 0;
  for (int64_t tick = 1;; tick++) {
    while (now_ns() < t0 + tick * 100000000 && !atomic_load(&stop)) {
      check_picture();
      reap_orphans();
      struct timespec d = {0, 1000000};
      nanosleep(&d, NULL);
    }
    if (tick % 10 == 0 && tty) { /* the one-line progress display */
      uint64_t ops = 0;
      for (int i = 0; i < opt.threads; i++)
        for (int k = 0; k < NKIND; k++)
          ops += per_thread[i].ops[k];
      mm_stats s;
      mm_get_stats(mm, &s);
      printf("\r%5.1fs %9.0f ops/s  exec %5zu/%5zu MiB  storage %5zu/%5zu "
             "MiB  %7.0f evictions/s  held %llu   ",
             (now_ns() - t0) / 1e9, (double)(ops - last_ops),
             s.execution_used_bytes / MiB, s.execution_pool_bytes / MiB,
             s.storage_used_bytes / MiB, s.storage_pool_bytes / MiB,
             (double)(s.evictions - last_evict),
             (unsigned long long)s.held_now);
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
  mm_trim(mm);
  mm_stats end;
  mm_get_stats(mm, &end);
  INVARIANT(end.execution_used_bytes == 0 && end.storage_used_bytes == 0);
  INVARIANT(end.execution_pool_bytes == first.execution_pool_bytes);
  INVARIANT(end.storage_pool_bytes == first.storage_pool_bytes);
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
           "\"hit_ratio\":%.4f,\"held\":%llu,\"timed_out\":%llu,"
           "\"cancelled\":%llu,\"kinds\":{",
           workload_name[opt.workload], opt.threads, elapsed, opt.budget,
           (unsigned long long)total_ops, (unsigned long long)end.evictions,
           hit, (unsigned long long)end.held, (unsigned long long)end.timed_out,
           (unsigned long long)end.cancelled);
    for (int k = 0; k < NKIND; k++)
      printf("%s\"%s\":{\"ops\":%llu,\"ok\":%llu,\"p50_us\":%.2f,"
             "\"p99_us\":%.2f,\"p999_us\":%.2f}",
             k ? "," : "", kind_name[k], (unsigned long long)all.ops[k],
             (unsigned long long)all.ok[k], percentile(all.lat[k], 0.5),
             percentile(all.lat[k], 0.99), percentile(all.lat[k], 0.999));
    printf("},\"invariants\":\"held\"}\n");
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
  printf("held %llu (timed out %llu, cancelled %llu), async callbacks %llu "
         "of %llu\n",
         (unsigned long long)end.held, (unsigned long long)end.timed_out,
         (unsigned long long)end.cancelled,
         (unsigned long long)atomic_load(&async_ended),
         (unsigned long long)atomic_load(&async_started));
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
  mm_destroy(mm);
  free(t);
  free(per_thread);
  return 0;
}

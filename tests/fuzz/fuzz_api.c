/*
 * fuzz_api.c -- libFuzzer target: bytes become a configuration and a
 * sequence of API calls, valid and invalid, and every answer is checked
 * against a small sequential model of the pool rules.
 *
 * The model is what docs/DESIGN.md and the header promise, written the
 * plain way: two used counters, a table of pages with their pins, the
 * bytes each exec id holds, and the blocks handed out.  After every call
 *
 *   - the status is the one the model predicts (where the header leaves a
 *     choice, as when the protected floor makes eviction a matter of which
 *     pages are picked, either answer is accepted, and the model follows
 *     the one given);
 *   - every page evicted during the call was registered and unpinned, was
 *     evicted once, and was needed: the evicted bytes cover what the
 *     request lacked, and no page among them was superfluous; a request
 *     that was declined or needed no room evicted nothing; execution never
 *     took storage below storage_protected_bytes;
 *   - mm_get_stats agrees with the model exactly (used, pinned, pages,
 *     pool sizes, borrowed bytes), and every exec id holds what the model
 *     says.
 *
 * A bad input must leave everything exactly as it was: the same checks
 * run after it.  The first disagreement prints what was expected and
 * aborts, which libFuzzer reports with the input that caused it.
 *
 * The manager is single-threaded here apart from its service thread, so
 * the model is exact; tests/ and stress/ attack the concurrency.
 */
#include <memory_manager.h>

#include "backing.h"     /* mmi_backing_fail_next, mmi_backing_size */
#include "mm_internal.h" /* mmi_page_block_size */

#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PAGE   4096u
#define NPAGES 16 /* page ids 0..15 */
#define NIDS   4  /* exec ids 0..3 */
#define NBLK   16 /* blocks from mm_exec_alloc held at once */

/* ---- the input ---------------------------------------------------------- */

typedef struct input {
  const uint8_t *p;
  size_t n;
} input;

static uint8_t byte(input *in) {
  if (!in->n)
    return 0;
  in->n--;
  return *in->p++;
}

static uint16_t word(input *in) {
  uint16_t lo = byte(in);
  return (uint16_t)(lo | (uint16_t)byte(in) << 8);
}

/* ---- failure ------------------------------------------------------------ */

static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "fuzz_api: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort(); /* libFuzzer keeps the input */
}

#define EXPECT(cond, ...)                                                      \
  do {                                                                         \
    if (!(cond))                                                               \
      fail(__VA_ARGS__);                                                       \
  } while (0)

#define EXPECT_ST(got, want, what)                                             \
  EXPECT((got) == (want), "%s: got %s, expected %s", what, mm_strerror(got),   \
         mm_strerror(want))

/* ---- the model ---------------------------------------------------------- */

typedef struct mpage {
  bool present;
  bool has_data;
  uint64_t bytes; /* as charged */
  uint32_t pins;
  uint8_t stamp; /* first byte of its memory */
} mpage;

typedef struct mblock {
  void *p;
  unsigned id;
  uint64_t charged;
  uint64_t era; /* the id's era when allocated: see release_all */
} mblock;

static struct model {
  uint64_t total, storage_init, exec_init, protected_bytes, max_exec;
  bool borrow;
  uint64_t used_e, used_s;
  mpage page[NPAGES];
  uint64_t held[NIDS];
  uint64_t era[NIDS]; /* bumped by each mm_release_all_execution */
  mblock blk[NBLK];
  uint64_t evictions;
} m;

/* Evictions reported by the callback during the current call. */
static struct {
  unsigned n;
  uint64_t id[NPAGES];
  uint64_t bytes[NPAGES];
} ev;
static bool in_call; /* a callback outside a call is a bug */

static void on_evict(void *ctx, uint64_t id, void *data, size_t bytes) {
  (void)ctx;
  EXPECT(in_call, "eviction callback outside any call");
  EXPECT(id < NPAGES, "evicted page %llu was never registered",
         (unsigned long long)id);
  mpage *pg = &m.page[id];
  EXPECT(pg->present, "page %llu evicted but not registered (or twice)",
         (unsigned long long)id);
  EXPECT(pg->pins == 0, "pinned page %llu evicted", (unsigned long long)id);
  EXPECT(bytes == pg->bytes, "page %llu evicted with %zu bytes, charged %llu",
         (unsigned long long)id, bytes, (unsigned long long)pg->bytes);
  EXPECT(pg->has_data == (data != NULL), "page %llu: wrong memory",
         (unsigned long long)id);
  if (data)
    EXPECT(*(uint8_t *)data == pg->stamp, "page %llu: memory changed",
           (unsigned long long)id);
  EXPECT(ev.n < NPAGES, "too many evictions in one call");
  ev.id[ev.n] = id;
  ev.bytes[ev.n] = bytes;
  ev.n++;
  pg->present = false; /* a second callback for it fails above */
}

/* Bytes of live blocks charged to @id's current incarnation (@current),
 * or to an incarnation mm_release_all_execution already returned (!@current:
 * allocated memory the books no longer hold until the block is freed). */
static uint64_t block_bytes(unsigned id, bool current) {
  uint64_t b = 0;
  for (int i = 0; i < NBLK; i++)
    if (m.blk[i].p && m.blk[i].id == id &&
        (m.blk[i].era == m.era[id]) == current)
      b += m.blk[i].charged;
  return b;
}

static uint64_t unpinned_bytes(void) {
  uint64_t b = 0;
  for (int i = 0; i < NPAGES; i++)
    if (m.page[i].present && m.page[i].pins == 0)
      b += m.page[i].bytes;
  return b;
}

/* What a request of @bytes for @pool may do, before it is made. */
enum verdict { FITS, EVICTS, MAYBE, NO };

typedef struct plan {
  enum verdict v;
  uint64_t need; /* bytes eviction must free (EVICTS, MAYBE) */
} plan;

static plan plan_for(mm_pool pool, uint64_t bytes) {
  plan p = {NO, 0};
  uint64_t unpinned = unpinned_bytes();
  if (pool == MM_POOL_EXECUTION) {
    /* Execution may use all free capacity, then evict down to the floor. */
    uint64_t free_now = m.total - m.used_e - m.used_s;
    if (bytes <= free_now)
      return (plan){FITS, 0};
    p.need = bytes - free_now;
    uint64_t above_floor =
        m.used_s > m.protected_bytes ? m.used_s - m.protected_bytes : 0;
    if (p.need > unpinned || p.need > above_floor)
      return p;
    /* Whether whole pages that fit above the floor can be found depends on
     * which are picked, unless the floor cannot bind at all. */
    p.v = unpinned <= above_floor ? EVICTS : MAYBE;
    return p;
  }
  /* Storage: its own pool, or all of execution's free capacity too. */
  uint64_t exec_side =
      m.borrow ? m.used_e : (m.used_e > m.exec_init ? m.used_e : m.exec_init);
  uint64_t limit = m.total - exec_side;
  if (m.used_s + bytes <= limit)
    return (plan){FITS, 0};
  if (bytes > limit)
    return p; /* even an empty storage pool could not take it */
  p.need = m.used_s + bytes - limit;
  p.v = p.need <= unpinned ? EVICTS : NO;
  return p;
}

/* Check the call's evictions against its plan; take them off the books. */
static void settle_evictions(mm_pool pool, plan p, bool granted) {
  uint64_t sum = 0, smallest = UINT64_MAX;
  for (unsigned i = 0; i < ev.n; i++) {
    sum += ev.bytes[i];
    if (ev.bytes[i] < smallest)
      smallest = ev.bytes[i];
  }
  /* Also when the allocator failed: the block is made before any victim
   * goes. */
  if (!granted)
    EXPECT(ev.n == 0, "a declined request evicted %u pages", ev.n);
  if (p.v == FITS)
    EXPECT(ev.n == 0, "a request that fitted evicted %u pages", ev.n);
  if (ev.n) {
    EXPECT(sum >= p.need, "evicted %llu bytes, needed %llu",
           (unsigned long long)sum, (unsigned long long)p.need);
    EXPECT(sum - smallest < p.need, "evicted a page it did not need");
    if (pool == MM_POOL_EXECUTION)
      EXPECT(m.used_s - sum >= m.protected_bytes,
             "execution evicted below the protected floor");
  }
  m.used_s -= sum;
  m.evictions += ev.n;
  /* Evicted bytes the request did not need are free again; the rest was
   * handed to it (counted by the caller with the request's bytes). */
  ev.n = 0;
}

static uint64_t round_pages(uint64_t bytes) {
  return (bytes + PAGE - 1) / PAGE * PAGE;
}

/* ---- the checks after every call ---------------------------------------- */

static mm_t *mm;

static bool trace; /* FUZZ_API_TRACE=1: print each call's outcome */

static void check_picture(const char *after) {
  mm_stats s;
  mm_get_stats(mm, &s);
  if (trace)
    fprintf(stderr,
            "%-26s exec %6llu storage %6llu pinned %6zu evictions %llu\n",
            after, (unsigned long long)m.used_e, (unsigned long long)m.used_s,
            s.storage_pinned_bytes, (unsigned long long)m.evictions);
  uint64_t pinned = 0, pages = 0;
  for (int i = 0; i < NPAGES; i++)
    if (m.page[i].present) {
      pages++;
      if (m.page[i].pins)
        pinned += m.page[i].bytes;
    }
  EXPECT(s.total_bytes == m.total, "%s: total", after);
  EXPECT(s.execution_used_bytes == m.used_e,
         "%s: execution used %zu, model %llu", after, s.execution_used_bytes,
         (unsigned long long)m.used_e);
  EXPECT(s.storage_used_bytes == m.used_s, "%s: storage used %zu, model %llu",
         after, s.storage_used_bytes, (unsigned long long)m.used_s);
  EXPECT(s.storage_pinned_bytes == pinned, "%s: pinned %zu, model %llu", after,
         s.storage_pinned_bytes, (unsigned long long)pinned);
  EXPECT(s.storage_pages == pages, "%s: pages", after);
  EXPECT(s.evictions == m.evictions, "%s: evictions", after);
  EXPECT(s.held_now == 0, "%s: something still held", after);
  /* The pool rules: the boundary is derived from use. */
  uint64_t exec_pool = m.exec_init, exec_borrowed = 0, storage_borrowed = 0;
  if (m.used_e > m.exec_init) {
    exec_pool = m.used_e;
    exec_borrowed = m.used_e - m.exec_init;
  } else if (m.used_s > m.storage_init) {
    exec_pool = m.total - m.used_s;
    storage_borrowed = m.used_s - m.storage_init;
  }
  EXPECT(s.execution_pool_bytes == exec_pool &&
             s.storage_pool_bytes == m.total - exec_pool,
         "%s: pools %zu/%zu, model %llu/%llu", after, s.execution_pool_bytes,
         s.storage_pool_bytes, (unsigned long long)exec_pool,
         (unsigned long long)(m.total - exec_pool));
  EXPECT(s.execution_borrowed_bytes == exec_borrowed &&
             s.storage_borrowed_bytes == storage_borrowed,
         "%s: borrowed", after);
  EXPECT(m.used_e + m.used_s <= m.total, "%s: model over budget", after);
  for (unsigned id = 0; id < NIDS; id++)
    EXPECT(mm_execution_held(mm, id) == m.held[id],
           "%s: exec id %u holds %zu, model %llu", after, id,
           mm_execution_held(mm, id), (unsigned long long)m.held[id]);
  uint64_t orphaned = 0;
  for (unsigned id = 0; id < NIDS; id++)
    orphaned += block_bytes(id, false);
  EXPECT(s.backing_allocated_bytes <= s.execution_used_bytes +
                                          s.storage_used_bytes +
                                          s.cache_parked_bytes + orphaned,
         "%s: more memory allocated than charged", after);
}

/* ---- decoding arguments ------------------------------------------------- */

/* A size: small, page-sized, at the exact edges of what is free or
 * allowed, or absurd. */
static size_t size_arg(input *in) {
  uint8_t k = byte(in);
  uint64_t free_now = m.total - m.used_e - m.used_s;
  switch (k % 12) {
  case 0:
    return 0;
  case 1:
    return 1 + word(in) % 64;
  case 2:
    return 1 + word(in) % (4 * PAGE);
  case 3:
    return PAGE * (1 + byte(in) % 8);
  case 4:
    return free_now;
  case 5:
    return free_now + 1;
  case 6:
    return m.max_exec;
  case 7:
    return m.max_exec + 1;
  case 8:
    return m.storage_init;
  case 9:
    return m.total;
  case 10:
    return SIZE_MAX;
  default:
    return free_now > PAGE ? free_now - PAGE + 1 : 1;
  }
}

static int64_t timeout_arg(input *in) {
  switch (byte(in) % 8) {
  case 0:
    return -2; /* invalid */
  case 1:
    return 1000; /* 1 us: held, then timed out if it does not fit */
  case 2:
    return INT64_MIN;
  default:
    return MM_NO_WAIT;
  }
}

/* ---- the calls ---------------------------------------------------------- */

/* The answer a blocking or non-blocking acquire must give. */
static mm_status expected(plan p, int64_t timeout) {
  if (p.v == FITS || p.v == EVICTS)
    return MM_OK;
  return timeout == MM_NO_WAIT ? MM_ENOMEM : MM_ETIMEDOUT;
}

static bool acceptable(plan p, int64_t timeout, mm_status st) {
  if (p.v == MAYBE)
    return st == MM_OK || st == expected((plan){NO, 0}, timeout);
  return st == expected(p, timeout);
}

/* One acquire (or, with @alloc, allocation) in @pool, with the next
 * block allocation made to fail if @fault.  Eviction callbacks may run
 * only inside it. */
static mm_status call_acquire(mm_pool pool, bool alloc, uint64_t id,
                              size_t bytes, int64_t timeout, bool fault,
                              void **out) {
  if (fault)
    mmi_backing_fail_next(1);
  in_call = true;
  mm_status st;
  if (pool == MM_POOL_EXECUTION)
    st = alloc ? mm_exec_alloc(mm, id, bytes, timeout, out)
               : mm_acquire_execution(mm, id, bytes, timeout);
  else
    st = alloc ? mm_storage_alloc(mm, id, bytes, timeout, out)
               : mm_acquire_storage(mm, id, bytes, timeout);
  in_call = false;
  if (fault)
    mmi_backing_fail_next(0);
  return st;
}

static void op_acquire_exec(input *in, bool alloc) {
  unsigned id = byte(in) % NIDS;
  size_t bytes = size_arg(in);
  int64_t timeout = timeout_arg(in);
  bool fault = alloc && byte(in) % 8 == 0;
  int slot = -1;
  for (int i = 0; i < NBLK && alloc; i++)
    if (!m.blk[i].p) {
      slot = i;
      break;
    }
  if (alloc && slot < 0)
    return;
  uint64_t charge = bytes;
  bool invalid = bytes == 0 || bytes > m.max_exec || timeout < -1;
  if (alloc && !invalid) {
    charge = mmi_backing_size(&mm->backing, bytes);
    invalid = charge == 0 || charge > m.total;
  }
  plan p = invalid ? (plan){NO, 0} : plan_for(MM_POOL_EXECUTION, charge);
  void *blk = NULL;
  mm_status st =
      call_acquire(MM_POOL_EXECUTION, alloc, id, bytes, timeout, fault, &blk);
  const char *what = alloc ? "mm_exec_alloc" : "mm_acquire_execution";
  if (invalid) {
    EXPECT_ST(st, MM_EINVAL, what);
  } else if (fault && st == MM_ENOMEM && acceptable(p, timeout, MM_OK)) {
    /* the allocator failed: declined, nothing charged or evicted */
  } else {
    EXPECT(acceptable(p, timeout, st), "%s(%zu): got %s", what, bytes,
           mm_strerror(st));
  }
  settle_evictions(MM_POOL_EXECUTION, p, st == MM_OK);
  if (st == MM_OK) {
    m.used_e += charge;
    m.held[id] += charge;
    if (alloc) {
      EXPECT(blk != NULL, "mm_exec_alloc: no block");
      memset(blk, 0xa5, bytes); /* ASan: all of it is ours */
      m.blk[slot] = (mblock){blk, id, charge, m.era[id]};
    }
  }
  check_picture(what);
}

/* What mm_release_execution may be asked to return: what the id holds
 * but its live blocks (those are returned by mm_exec_free: the header's
 * contract). */
static void op_release_exec(input *in) {
  unsigned id = byte(in) % NIDS;
  uint64_t own = m.held[id] - block_bytes(id, true);
  size_t bytes;
  switch (byte(in) % 4) {
  case 0:
    bytes = own;
    break;
  case 1:
    bytes = m.held[id] + 1;
    break;
  case 2:
    bytes = 0;
    break;
  default:
    bytes = own ? 1 + word(in) % own : 0;
  }
  mm_status st = mm_release_execution(mm, id, bytes);
  if (bytes == 0 || bytes > m.held[id]) {
    EXPECT_ST(st, MM_EINVAL, "mm_release_execution");
  } else {
    EXPECT_ST(st, MM_OK, "mm_release_execution");
    m.held[id] -= bytes;
    m.used_e -= bytes;
  }
  check_picture("mm_release_execution");
}

static void op_release_all(input *in) {
  unsigned id = byte(in) % NIDS;
  size_t got = mm_release_all_execution(mm, id);
  EXPECT(got == m.held[id], "mm_release_all_execution: %zu, model %llu", got,
         (unsigned long long)m.held[id]);
  m.used_e -= m.held[id];
  m.held[id] = 0;
  m.era[id]++; /* blocks charged before are no longer this id's to free */
  check_picture("mm_release_all_execution");
}

static void op_exec_free(input *in) {
  uint8_t k = byte(in);
  mblock *b = &m.blk[k % NBLK];
  static uint64_t not_ours[4];
  switch (k / NBLK % 4) {
  case 0: /* a pointer the manager never handed out */
    EXPECT_ST(mm_exec_free(mm, k % NIDS, &not_ours[k % 4]), MM_EINVAL,
              "mm_exec_free(not ours)");
    break;
  case 1: /* the wrong exec id */
    if (b->p)
      EXPECT_ST(mm_exec_free(mm, (b->id + 1) % NIDS, b->p), MM_EINVAL,
                "mm_exec_free(wrong id)");
    break;
  default:
    if (!b->p)
      break;
    EXPECT_ST(mm_exec_free(mm, b->id, b->p), MM_OK, "mm_exec_free");
    /* Uncharged only from the incarnation of the id that was charged, and
     * only if it still holds that much. */
    if (b->era == m.era[b->id] && m.held[b->id] >= b->charged) {
      m.held[b->id] -= b->charged;
      m.used_e -= b->charged;
    }
    b->p = NULL;
  }
  check_picture("mm_exec_free");
}

static void op_acquire_storage(input *in, bool alloc) {
  unsigned id = byte(in) % NPAGES;
  size_t bytes = size_arg(in);
  int64_t timeout = timeout_arg(in);
  bool fault = alloc && byte(in) % 8 == 0;
  uint64_t charge =
      alloc ? (bytes ? mmi_page_block_size(mm, bytes) : 0)
            : (bytes && bytes <= SIZE_MAX - PAGE ? round_pages(bytes) : 0);
  uint64_t storage_max = m.borrow ? m.total : m.storage_init;
  bool invalid =
      bytes == 0 || timeout < -1 || charge == 0 || charge > storage_max;
  bool exists = m.page[id].present;
  plan p =
      invalid || exists ? (plan){NO, 0} : plan_for(MM_POOL_STORAGE, charge);
  void *data = NULL;
  mm_status st =
      call_acquire(MM_POOL_STORAGE, alloc, id, bytes, timeout, fault, &data);
  const char *what = alloc ? "mm_storage_alloc" : "mm_acquire_storage";
  /* A fault may turn a grant into MM_ENOMEM: the allocator failed, and
   * nothing was charged or evicted. */
  bool faulted = fault && st == MM_ENOMEM && p.v != NO;
  if (invalid)
    EXPECT_ST(st, MM_EINVAL, what);
  else if (exists)
    EXPECT_ST(st, MM_EEXIST, what);
  else if (!faulted)
    EXPECT_ST(st, expected(p, timeout), what);
  settle_evictions(MM_POOL_STORAGE, p, st == MM_OK);
  if (st == MM_OK) {
    mpage *pg = &m.page[id];
    *pg = (mpage){true, alloc, charge, alloc ? 1 : 0, (uint8_t)(id * 37 + 1)};
    m.used_s += charge;
    if (alloc) {
      EXPECT(data != NULL, "mm_storage_alloc: no memory");
      memset(data, 0, charge); /* ASan: all of it is ours */
      *(uint8_t *)data = pg->stamp;
    }
  }
  check_picture(what);
}

static void op_page(input *in) {
  uint8_t k = byte(in);
  unsigned id = k % NPAGES;
  mpage *pg = &m.page[id];
  mm_status st;
  switch (k / NPAGES % 3) {
  case 0: {
    void *data = (void *)1;
    st = mm_pin_storage(mm, id, &data);
    if (!pg->present) {
      EXPECT_ST(st, MM_ENOENT, "mm_pin_storage");
      EXPECT(data == (void *)1, "mm_pin_storage wrote *data on failure");
    } else {
      EXPECT_ST(st, MM_OK, "mm_pin_storage");
      pg->pins++;
      EXPECT(pg->has_data ? data && *(uint8_t *)data == pg->stamp : !data,
             "mm_pin_storage: wrong memory");
    }
    check_picture("mm_pin_storage");
    break;
  }
  case 1:
    st = mm_unpin_storage(mm, id);
    EXPECT_ST(st,
              !pg->present ? MM_ENOENT
              : pg->pins   ? MM_OK
                           : MM_EINVAL,
              "mm_unpin_storage");
    if (st == MM_OK)
      pg->pins--;
    check_picture("mm_unpin_storage");
    break;
  default:
    st = mm_release_storage(mm, id);
    EXPECT_ST(st,
              !pg->present ? MM_ENOENT
              : pg->pins   ? MM_EBUSY
                           : MM_OK,
              "mm_release_storage");
    if (st == MM_OK) {
      pg->present = false;
      m.used_s -= pg->bytes;
    }
    check_picture("mm_release_storage");
  }
}

/* Asynchronous requests: one at a time, so the model stays sequential.
 * One that is held is cancelled at once (its deadline is far away), and
 * its callback awaited. */
static atomic_int async_calls;
static _Atomic mm_status async_outcome;

static void async_cb(void *ctx, mm_status outcome) {
  (void)ctx;
  atomic_store(&async_outcome, outcome);
  atomic_fetch_add(&async_calls, 1);
}

static void await_callback(int want) {
  /* 15 s of real time, inside libFuzzer's -timeout=20: a loaded machine
   * may keep the service thread off a CPU for a while. */
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (atomic_load(&async_calls) < want) {
    clock_gettime(CLOCK_MONOTONIC, &t);
    EXPECT(t.tv_sec - t0.tv_sec < 15, "an asynchronous callback never came");
    sched_yield();
  }
  EXPECT(atomic_load(&async_calls) == want, "a callback came twice");
}

static void op_async(input *in) {
  uint8_t k = byte(in);
  int pool = k % 5 == 4 ? 7 : k % 2; /* 7: not a pool */
  unsigned id = pool == MM_POOL_STORAGE ? byte(in) % NPAGES : byte(in) % NIDS;
  size_t bytes = size_arg(in);
  int64_t timeout = k & 0x10 ? MM_NO_WAIT : 10 * 1000000000ll;
  bool null_cb = k / 5 % 16 == 3;
  uint64_t charge = pool == MM_POOL_STORAGE && bytes <= SIZE_MAX - PAGE
                        ? round_pages(bytes)
                        : bytes;
  bool invalid = null_cb || pool > 1 || bytes == 0;
  if (pool == MM_POOL_EXECUTION)
    invalid = invalid || bytes > m.max_exec;
  if (pool == MM_POOL_STORAGE)
    invalid = invalid || charge == 0 ||
              charge > (m.borrow ? m.total : m.storage_init);
  bool exists = pool == MM_POOL_STORAGE && !invalid && m.page[id].present;
  plan p = invalid || exists ? (plan){NO, 0} : plan_for((mm_pool)pool, charge);
  if (p.v == MAYBE)
    return; /* the answer would depend on which pages are picked */
  int calls = atomic_load(&async_calls);
  uint64_t ticket = 77;
  in_call = true;
  mm_status st = mm_acquire_async(mm, (mm_pool)pool, id, bytes, timeout,
                                  null_cb ? NULL : async_cb, NULL, &ticket);
  in_call = false;
  if (invalid) {
    EXPECT_ST(st, MM_EINVAL, "mm_acquire_async");
  } else if (exists) {
    EXPECT_ST(st, MM_EEXIST, "mm_acquire_async");
  } else if (p.v == NO) {
    EXPECT_ST(st, timeout == MM_NO_WAIT ? MM_ENOMEM : MM_EINPROGRESS,
              "mm_acquire_async");
  } else {
    EXPECT_ST(st, MM_OK, "mm_acquire_async");
  }
  settle_evictions((mm_pool)(pool & 1), p, st == MM_OK);
  if (st == MM_EINPROGRESS) {
    EXPECT(ticket != 0, "held without a ticket");
    in_call = true;
    EXPECT_ST(mm_cancel(mm, ticket), MM_OK, "mm_cancel");
    in_call = false;
    await_callback(calls + 1);
    EXPECT_ST(atomic_load(&async_outcome), MM_ECANCELED, "async outcome");
    EXPECT_ST(mm_cancel(mm, ticket), MM_ENOENT, "mm_cancel(again)");
  } else {
    EXPECT(ticket == 0, "a ticket for a request not held");
    EXPECT(atomic_load(&async_calls) == calls, "a callback for no hold");
  }
  if (st == MM_OK && pool == MM_POOL_EXECUTION) {
    m.used_e += charge;
    m.held[id] += charge;
  } else if (st == MM_OK) {
    m.page[id] = (mpage){true, false, charge, 0, 0};
    m.used_s += charge;
  }
  check_picture("mm_acquire_async");
}

/* Calls with a NULL manager or NULL outputs: refused, nothing touched. */
static void op_null(input *in) {
  void *out = (void *)1;
  uint64_t ticket = 5;
  mm_stats s;
  switch (byte(in) % 8) {
  case 0:
    EXPECT_ST(mm_acquire_execution(NULL, 0, 1, MM_NO_WAIT), MM_EINVAL, "null");
    EXPECT_ST(mm_release_execution(NULL, 0, 1), MM_EINVAL, "null");
    EXPECT(mm_release_all_execution(NULL, 0) == 0, "null");
    EXPECT(mm_execution_held(NULL, 0) == 0, "null");
    break;
  case 1:
    EXPECT_ST(mm_acquire_storage(NULL, 0, 1, MM_NO_WAIT), MM_EINVAL, "null");
    EXPECT_ST(mm_pin_storage(NULL, 0, &out), MM_EINVAL, "null");
    EXPECT_ST(mm_unpin_storage(NULL, 0), MM_EINVAL, "null");
    EXPECT_ST(mm_release_storage(NULL, 0), MM_EINVAL, "null");
    break;
  case 2:
    EXPECT_ST(mm_exec_alloc(NULL, 0, 1, MM_NO_WAIT, &out), MM_EINVAL, "null");
    EXPECT_ST(mm_exec_alloc(mm, 0, 1, MM_NO_WAIT, NULL), MM_EINVAL, "null");
    EXPECT_ST(mm_exec_free(NULL, 0, &out), MM_EINVAL, "null");
    EXPECT_ST(mm_exec_free(mm, 0, NULL), MM_EINVAL, "null");
    break;
  case 3:
    EXPECT_ST(mm_storage_alloc(NULL, 0, 1, MM_NO_WAIT, &out), MM_EINVAL,
              "null");
    EXPECT_ST(mm_storage_alloc(mm, 0, 1, MM_NO_WAIT, NULL), MM_EINVAL, "null");
    break;
  case 4:
    EXPECT_ST(mm_acquire_async(NULL, MM_POOL_EXECUTION, 0, 1, MM_NO_WAIT,
                               async_cb, NULL, &ticket),
              MM_EINVAL, "null");
    EXPECT(ticket == 0, "mm_acquire_async: no ticket, but not 0");
    ticket = 5;
    EXPECT_ST(mm_cancel(NULL, 1), MM_EINVAL, "null");
    break;
  case 5:
    EXPECT_ST(mm_cancel(mm, word(in)), MM_ENOENT, "mm_cancel(no ticket)");
    break;
  case 6:
    mm_get_stats(mm, NULL);
    mm_get_stats(NULL, &s);
    EXPECT(s.total_bytes == 0, "stats of NULL");
    mm_trim(NULL);
    mm_destroy(NULL);
    break;
  default:
    mm_trim(mm);
  }
  EXPECT(out == (void *)1 && ticket == 5, "an output written on failure");
  check_picture("bad call");
}

/* ---- the configuration -------------------------------------------------- */

/* A configuration from the input, and whether the header calls it valid. */
static bool config_arg(input *in, mm_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  uint8_t pages = byte(in), frac = byte(in), prot = byte(in), flags = byte(in);
  cfg->total_bytes = (size_t)(2 + pages % 63) * PAGE;
  if (flags & 0x80)
    cfg->total_bytes += (size_t)word(in) % PAGE; /* not a page multiple */
  static const double fractions[] = {0, 0.25, 0.5, 0.75, 0.9, 1.0, -0.5, 0.01};
  cfg->storage_fraction = fractions[frac % 8];
  double f = cfg->storage_fraction ? cfg->storage_fraction : 0.5;
  bool valid = f > 0 && f < 1;
  uint64_t storage_init =
      valid ? (uint64_t)((double)cfg->total_bytes * f) / PAGE * PAGE : 0;
  valid = valid && storage_init >= PAGE;
  cfg->storage_protected_bytes = (size_t)(prot % 16) * PAGE;
  valid = valid && cfg->storage_protected_bytes <= storage_init;
  cfg->storage_may_borrow = flags & 1;
  cfg->eviction = flags & 2 ? MM_EVICT_SAMPLED_LRU : MM_EVICT_RANDOM;
  if ((flags & 0x0c) == 0x0c) {
    cfg->eviction = 7;
    valid = false;
  }
  switch (flags >> 4 & 7) {
  case 1:
    cfg->max_execution_request = cfg->total_bytes / 2;
    break;
  case 2:
    cfg->max_execution_request = cfg->total_bytes;
    break;
  case 3:
    cfg->max_execution_request = cfg->total_bytes + 1;
    valid = false;
    break;
  case 4:
    cfg->cpu_cache_bytes = PAGE;
    break;
  case 5:
    cfg->overtake_limit_ns = -1;
    valid = false;
    break;
  default:
    break;
  }
  cfg->seed = 1;
  cfg->on_evict = on_evict;
  m.total = cfg->total_bytes;
  m.storage_init = storage_init;
  m.exec_init = m.total - storage_init;
  m.protected_bytes = cfg->storage_protected_bytes;
  m.borrow = cfg->storage_may_borrow;
  m.max_exec = cfg->max_execution_request ? cfg->max_execution_request
               : m.total < 8u << 20       ? m.total
                                          : 8u << 20;
  return valid;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  input in = {data, size};
  trace = getenv("FUZZ_API_TRACE") != NULL;
  memset(&m, 0, sizeof m);
  ev.n = 0;
  mm_config cfg;
  bool valid = config_arg(&in, &cfg);
  mm = (mm_t *)&in; /* must stay untouched on failure */
  mm_status st = mm_create(&cfg, &mm);
  if (!valid) {
    EXPECT_ST(st, MM_EINVAL, "mm_create(invalid)");
    EXPECT(mm == (mm_t *)&in, "mm_create wrote *out on failure");
    return 0;
  }
  EXPECT_ST(st, MM_OK, "mm_create");
  check_picture("mm_create");
  for (int ops = 0; in.n && ops < 256; ops++) {
    switch (byte(&in) % 11) {
    case 0:
      op_acquire_exec(&in, false);
      break;
    case 1:
      op_acquire_exec(&in, true);
      break;
    case 2:
      op_release_exec(&in);
      break;
    case 3:
      op_release_all(&in);
      break;
    case 4:
      op_exec_free(&in);
      break;
    case 5:
      op_acquire_storage(&in, false);
      break;
    case 6:
      op_acquire_storage(&in, true);
      break;
    case 7:
    case 8:
      op_page(&in);
      break;
    case 9:
      op_async(&in);
      break;
    default:
      op_null(&in);
    }
  }
  /* Give everything back by hand, then check the pools are whole. */
  for (int i = 0; i < NBLK; i++)
    if (m.blk[i].p) {
      EXPECT_ST(mm_exec_free(mm, m.blk[i].id, m.blk[i].p), MM_OK, "teardown");
      m.blk[i].p = NULL;
    }
  for (unsigned id = 0; id < NPAGES; id++)
    if (m.page[id].present) {
      for (; m.page[id].pins; m.page[id].pins--)
        EXPECT_ST(mm_unpin_storage(mm, id), MM_OK, "teardown unpin");
      EXPECT_ST(mm_release_storage(mm, id), MM_OK, "teardown release");
    }
  for (unsigned id = 0; id < NIDS; id++)
    (void)mm_release_all_execution(mm, id);
  mm_stats s;
  mm_get_stats(mm, &s);
  EXPECT(s.execution_used_bytes == 0 && s.storage_used_bytes == 0 &&
             s.storage_pages == 0,
         "teardown: something still charged");
  EXPECT(s.execution_pool_bytes == m.exec_init, "teardown: pools not whole");
  mm_destroy(mm);
  mm = NULL;
  return 0;
}

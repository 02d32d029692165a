/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_api.c -- libFuzzer target: bytes become a configuration and a
 * sequence of API calls, valid and invalid, and every answer is checked
 * against a small sequential model of the pool rules.
 *
 * The model is what docs/DESIGN.md and the header promise, written the
 * plain way: two used counters, a table of pages with their pins, the
 * books (each exec id's own, for the id-based calls, and a few consumer
 * handles), and the blocks handed out, each with the books it was charged
 * to.  After every call
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
 *     pool sizes, borrowed bytes), every exec id and every consumer holds
 *     what the model says, and the quota consumers reserved ahead of use
 *     stays within its documented bound (it is not in the model: the
 *     books charge it and the picture leaves it out).
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
#define NPAGES 16             /* page ids 0..15 */
#define NHDL   4              /* page handles held at once */
#define NIDS   4              /* exec ids 0..3 */
#define NCONS  3              /* consumer handles open at once */
#define NBOOK  (NIDS + NCONS) /* the ids' own books, then the handles' */
#define NBLK   16             /* execution blocks held at once */
#define NEXT   3              /* external sources 0..2 */

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
  do {                                                                         \
    mm_status got_ = (got), want_ = (want);                                    \
    EXPECT(got_ == want_, "%s: got %s, expected %s", what, mm_strerror(got_),  \
           mm_strerror(want_));                                                \
  } while (0)

static bool trace; /* FUZZ_API_TRACE=1: print each call's outcome */

/* ---- the model ---------------------------------------------------------- */

typedef struct mpage {
  bool present;
  bool has_data;
  uint64_t bytes; /* as charged */
  uint32_t pins;
  uint8_t stamp; /* first byte of its memory */
  uint32_t gen;  /* bumped each time the id is registered */
} mpage;

/* A page handle (mm_page_alloc) and the incarnation of its page. */
typedef struct mhandle {
  mm_page *h; /* NULL: the slot is free */
  unsigned id;
  uint32_t gen;
} mhandle;

/* Books: book i < NIDS is exec id i's own (the id-based calls'); the
 * others are consumer handles. */
typedef struct mbook {
  uint64_t held;
  uint64_t gen;   /* bumped when the books close: older blocks are orphans */
  mm_consumer *h; /* handles: NULL while the slot is free */
  unsigned exec_id;
  bool closed; /* handles: closed by mm_release_all_execution */
  /* Handles: limits (the pool charges max(held, min): the reserve), and a
   * reclaim callback (fuzz_reclaim) that gives back what it is asked
   * for, or nothing. */
  uint64_t min, max;
  bool reclaims, gives, self;
} mbook;

typedef struct mblock {
  void *p;
  unsigned book;
  uint64_t charged; /* its size class */
  uint64_t gen;     /* its books' when allocated */
  size_t size;      /* as asked */
  uint8_t stamp;    /* its first and last byte */
} mblock;

static struct model {
  /* The budget in force and its split; the ceiling (max_total_bytes) and
   * storage's part of it, which smaller budgets scale (pool.c). */
  uint64_t total, storage_init, exec_init, protected_bytes, max_exec;
  uint64_t ceiling, ceil_storage;
  uint64_t ext[NEXT]; /* external sources' bytes */
  uint64_t quantum;   /* what a consumer reserves at a time */
  bool borrow;
  uint64_t used_e, used_s;
  mpage page[NPAGES];
  mbook book[NBOOK];
  mblock blk[NBLK];
  mhandle hdl[NHDL];
  uint64_t evictions;
  uint8_t next_stamp;
} m;

/* Budget @t in force: its split, as pool.c scales the ceiling's. */
static void model_budget(uint64_t t) {
  m.total = t;
  m.storage_init =
      (uint64_t)((unsigned __int128)m.ceil_storage * t / m.ceiling);
  m.exec_init = t - m.storage_init;
}

/* Free memory now (none past the budget), and how far use is past it. */
static uint64_t model_room(void) {
  uint64_t used = m.used_e + m.used_s;
  return used < m.total ? m.total - used : 0;
}
static uint64_t model_over(void) {
  uint64_t used = m.used_e + m.used_s;
  return used > m.total ? used - m.total : 0;
}

/* The most one charge of @pool could be granted under the budget. */
static uint64_t model_most(mm_pool pool) {
  return pool == MM_POOL_EXECUTION || m.borrow ? m.total : m.storage_init;
}

static unsigned book_exec(unsigned b) {
  return b < NIDS ? b : m.book[b].exec_id;
}

/* Does the manager still keep these books (calls on them are answered)? */
static bool book_open(unsigned b) {
  return b < NIDS || (m.book[b].h && !m.book[b].closed);
}

/* What books holding @held charge the pool: a guarantee is reserved. */
static uint64_t charged_at(const mbook *bk, uint64_t held) {
  return held > bk->min ? held : bk->min;
}

/* Books @b hold @held now (their reserve follows). */
static void book_set(unsigned b, uint64_t held) {
  mbook *bk = &m.book[b];
  m.used_e = m.used_e - charged_at(bk, bk->held) + charged_at(bk, held);
  bk->held = held;
}

static bool orphan(const mblock *k) { return k->gen != m.book[k->book].gen; }

/* What mm_execution_held(id) sums: the id's own books and its handles'. */
static uint64_t id_held(unsigned id) {
  uint64_t h = m.book[id].held;
  for (unsigned b = NIDS; b < NBOOK; b++)
    if (book_open(b) && m.book[b].exec_id == id)
      h += m.book[b].held;
  return h;
}

/* A live block's free returns its charge to its books, never below 0 (a
 * release may have returned it already); an orphan's went with them. */
static void model_free(mblock *k) {
  if (!orphan(k)) {
    mbook *bk = &m.book[k->book];
    uint64_t back = bk->held < k->charged ? bk->held : k->charged;
    book_set(k->book, bk->held - back);
  }
  k->p = NULL;
}

/* The books close: what they hold goes back, their blocks are orphans. */
static void model_close(unsigned b) {
  mbook *bk = &m.book[b];
  m.used_e -= charged_at(bk, bk->held); /* and its reserve */
  bk->held = 0;
  bk->min = bk->max = 0;
  bk->reclaims = false;
  bk->gen++;
}

/* Evictions reported by the callback during the current call. */
static struct {
  unsigned n;
  uint64_t id[NPAGES];
  uint64_t bytes[NPAGES];
} ev;
static bool in_call; /* a callback outside a call is a bug ... */
/* ... unless use was past the budget after the last call (a shrink): then
 * any pass evicts what is over, also in a release or an unpin, and the
 * pages a request evicts are not exactly its own. */
static bool was_over;
static const mpage *unpinning; /* the page an unpin under way unpins */

static void on_evict(void *ctx, uint64_t id, void *data, size_t bytes) {
  (void)ctx;
  EXPECT(in_call || was_over, "eviction callback outside any call");
  EXPECT(id < NPAGES, "evicted page %llu was never registered",
         (unsigned long long)id);
  mpage *pg = &m.page[id];
  EXPECT(pg->present, "page %llu evicted but not registered (or twice)",
         (unsigned long long)id);
  EXPECT(pg->pins == 0 || (pg == unpinning && pg->pins == 1),
         "pinned page %llu evicted", (unsigned long long)id);
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
  bool too_big;  /* more than the budget in force could ever grant: a
                    request that would be held is declined at once */
} plan;

static plan plan_for(mm_pool pool, uint64_t bytes) {
  plan p = {NO, 0, bytes > model_most(pool)};
  uint64_t unpinned = unpinned_bytes();
  if (pool == MM_POOL_EXECUTION) {
    /* Execution may use all free capacity, then evict down to the floor;
     * past the budget (a shrink), what is over is evicted first. */
    uint64_t free_now = model_room();
    if (bytes <= free_now)
      return (plan){FITS, 0, false};
    p.need = bytes - free_now + model_over();
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
  if (m.used_s + bytes + exec_side <= m.total)
    return (plan){FITS, 0, false};
  if (bytes + exec_side > m.total)
    return p; /* even an empty storage pool could not take it */
  p.need = m.used_s + bytes + exec_side - m.total;
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
    EXPECT(sum - smallest < p.need || was_over,
           "evicted a page it did not need");
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

static void check_picture(const char *after) {
  if (ev.n) { /* evictions no request made: what a shrink left over */
    EXPECT(was_over, "%s: %u pages evicted for nobody", after, ev.n);
    for (unsigned i = 0; i < ev.n; i++)
      m.used_s -= ev.bytes[i];
    m.evictions += ev.n;
    ev.n = 0;
  }
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
  EXPECT(s.total_bytes == m.total, "%s: total %zu, model %llu", after,
         s.total_bytes, (unsigned long long)m.total);
  EXPECT(s.max_total_bytes == m.ceiling, "%s: ceiling", after);
  EXPECT(s.over_budget_bytes == model_over(), "%s: over by %zu, model %llu",
         after, s.over_budget_bytes, (unsigned long long)model_over());
  uint64_t ext = 0;
  for (unsigned x = 0; x < NEXT; x++)
    ext += m.ext[x];
  EXPECT(s.external_bytes == ext, "%s: external %zu, model %llu", after,
         s.external_bytes, (unsigned long long)ext);
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
  /* (Past the budget, after a shrink, both pools may be past their sizes:
   * each borrowed figure is its own pool's.) */
  uint64_t exec_pool = m.exec_init, exec_borrowed = 0, storage_borrowed = 0;
  if (m.used_s > m.storage_init)
    storage_borrowed = m.used_s - m.storage_init;
  if (m.used_e > m.exec_init) {
    exec_pool = m.used_e;
    exec_borrowed = m.used_e - m.exec_init;
  } else if (m.used_s > m.storage_init) {
    exec_pool = m.total > m.used_s ? m.total - m.used_s : 0;
  }
  if (exec_pool > m.total) /* only past the budget */
    exec_pool = m.total;
  EXPECT(s.execution_pool_bytes == exec_pool &&
             s.storage_pool_bytes == m.total - exec_pool,
         "%s: pools %zu/%zu, model %llu/%llu", after, s.execution_pool_bytes,
         s.storage_pool_bytes, (unsigned long long)exec_pool,
         (unsigned long long)(m.total - exec_pool));
  EXPECT(s.execution_borrowed_bytes == exec_borrowed &&
             s.storage_borrowed_bytes == storage_borrowed,
         "%s: borrowed", after);
  EXPECT(m.used_e + m.used_s <= m.total || m.ceiling > m.total,
         "%s: model over budget (and never shrunk)", after);
  for (unsigned id = 0; id < NIDS; id++)
    EXPECT(mm_execution_held(mm, id) == id_held(id),
           "%s: exec id %u holds %zu, model %llu", after, id,
           mm_execution_held(mm, id), (unsigned long long)id_held(id));
  for (unsigned b = NIDS; b < NBOOK; b++)
    if (m.book[b].h)
      EXPECT(mm_consumer_held(m.book[b].h) ==
                 (book_open(b) ? m.book[b].held : 0),
             "%s: consumer %u holds %zu, model %llu", after, b,
             mm_consumer_held(m.book[b].h), (unsigned long long)m.book[b].held);
  /* Quota reserved ahead: at most two quanta per consumer. */
  EXPECT(s.execution_credit_bytes <= (uint64_t)NBOOK * 2 * m.quantum,
         "%s: %llu bytes of spare quota", after,
         (unsigned long long)s.execution_credit_bytes);
  /* Live blocks the books no longer charge: orphans, and blocks whose
   * bytes a release returned. */
  uint64_t orphaned = 0, in_book[NBOOK] = {0};
  for (int i = 0; i < NBLK; i++)
    if (m.blk[i].p && orphan(&m.blk[i]))
      orphaned += m.blk[i].charged;
    else if (m.blk[i].p)
      in_book[m.blk[i].book] += m.blk[i].charged;
  for (unsigned b = 0; b < NBOOK; b++)
    if (in_book[b] > m.book[b].held)
      orphaned += in_book[b] - m.book[b].held;
  EXPECT(s.backing_allocated_bytes <= s.execution_used_bytes +
                                          s.storage_used_bytes +
                                          s.cache_parked_bytes + orphaned,
         "%s: more memory allocated than charged", after);
  uint64_t exec_side =
      m.borrow ? m.used_e : (m.used_e > m.exec_init ? m.used_e : m.exec_init);
  was_over = model_over() > 0 || m.used_s + exec_side > m.total;
}

/* ---- decoding arguments ------------------------------------------------- */

/* A size: small, page-sized, at the exact edges of what is free or
 * allowed, or absurd. */
static size_t size_arg(input *in) {
  uint8_t k = byte(in);
  uint64_t free_now = model_room();
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
  return timeout == MM_NO_WAIT || p.too_big ? MM_ENOMEM : MM_ETIMEDOUT;
}

static bool acceptable(plan p, int64_t timeout, mm_status st) {
  if (p.v == MAYBE)
    return st == MM_OK || st == expected((plan){NO, 0, p.too_big}, timeout);
  return st == expected(p, timeout);
}

/* How an execution charge is asked for. */
enum how { ACQUIRE, ALLOC, CALLOC };

/* One acquire (or allocation) in @pool, with the next block allocation
 * made to fail if @fault.  Eviction callbacks may run only inside it.
 * With @handle, a storage allocation is mm_page_alloc (its memory in
 * *@out too). */
static mm_status call_acquire(mm_pool pool, bool alloc, uint64_t id,
                              size_t bytes, int64_t timeout, bool fault,
                              void **out, mm_page **handle) {
  if (fault)
    mmi_backing_fail_next(1);
  in_call = true;
  mm_status st;
  if (pool == MM_POOL_EXECUTION)
    st = alloc ? mm_exec_alloc(mm, id, bytes, timeout, out)
               : mm_acquire_execution(mm, id, bytes, timeout);
  else if (handle) {
    mm_page *h = (mm_page *)1;
    st = mm_page_alloc(mm, id, bytes, timeout, &h);
    if (st == MM_OK)
      *out = mm_page_data(h);
    else
      EXPECT(h == (mm_page *)1, "mm_page_alloc wrote *out on failure");
    *handle = st == MM_OK ? h : NULL;
  } else
    st = alloc ? mm_storage_alloc(mm, id, bytes, timeout, out)
               : mm_acquire_storage(mm, id, bytes, timeout);
  in_call = false;
  if (fault)
    mmi_backing_fail_next(0);
  return st;
}

/* The same for consumer handle @h. */
static mm_status call_consumer(mm_consumer *h, enum how how, size_t n,
                               size_t size, int64_t timeout, bool fault,
                               void **out) {
  if (fault)
    mmi_backing_fail_next(1);
  in_call = true;
  mm_status st = how == ACQUIRE ? mm_consumer_acquire(h, size, timeout)
                 : how == ALLOC ? mm_consumer_alloc(h, size, timeout, out)
                                : mm_consumer_calloc(h, n, size, timeout, out);
  in_call = false;
  if (fault)
    mmi_backing_fail_next(0);
  return st;
}

/* ---- reclaim: followed, not predicted ------------------------------------
 *
 * A held execution request asks the consumers that have a callback to
 * give memory back.  The callbacks (fuzz_reclaim) take what they give off
 * the model's books as they release it, and check the walk's rules: only
 * inside a held request, never the requester unless it opted in, never a
 * consumer holding nothing, nobody twice, the one holding most first, and
 * never for more than the request lacks.  After the call the model judges
 * the answer from the books as the callbacks left them.
 */
static struct {
  bool may;           /* the call under way may be held, and ask */
  unsigned req;       /* its books */
  uint64_t rest;      /* what it asks of the pool */
  unsigned asked;     /* callbacks run */
  uint64_t last_held; /* what the last one asked held */
  bool seen[NBOOK];
} rc;

static void reclaim_begin(unsigned req, bool may, uint64_t rest) {
  memset(&rc, 0, sizeof rc);
  rc.may = may;
  rc.req = req;
  rc.rest = rest;
  rc.last_held = UINT64_MAX;
}

/* After the call: did callbacks run (the plan must be made again)?  (A
 * held request here waits 1 us: its deadline may pass before it asks, so
 * whether it asks is not judged; test_reclaim.c checks that it does.) */
static bool reclaim_end(void) {
  rc.may = false;
  return rc.asked > 0;
}

static size_t fuzz_reclaim(void *ctx, mm_consumer *c, size_t wanted) {
  unsigned b = (unsigned)(uintptr_t)ctx;
  mbook *bk = &m.book[b];
  EXPECT(in_call && rc.may, "a reclaim callback outside a held request");
  EXPECT(b < NBOOK && c == bk->h && bk->reclaims, "a callback of another");
  EXPECT(b != rc.req || bk->self, "the requester was asked");
  EXPECT(!rc.seen[b], "a consumer asked twice for one request");
  EXPECT(bk->held > 0, "a consumer holding nothing was asked");
  EXPECT(bk->held <= rc.last_held, "not the one holding most first");
  EXPECT(wanted > 0 && wanted <= rc.rest, "asked for %zu of a request of %llu",
         wanted, (unsigned long long)rc.rest);
  rc.seen[b] = true;
  rc.asked++;
  rc.last_held = bk->held;
  if (trace)
    fprintf(stderr, "  reclaim: consumer %u (holding %llu) asked for %zu%s\n",
            b, (unsigned long long)bk->held, wanted,
            bk->gives ? "" : ", gives nothing");
  if (!bk->gives)
    return 0;
  size_t give = wanted < bk->held ? (size_t)wanted : (size_t)bk->held;
  book_set(b, bk->held - give); /* first: the release may grant at once */
  EXPECT_ST(mm_consumer_release(c, give), MM_OK, "release from reclaim");
  return give;
}

static int free_slot(void) {
  for (int i = 0; i < NBLK; i++)
    if (!m.blk[i].p)
      return i;
  return -1;
}

/* A new live block of book @b: all of it is ours (ASan), stamped. */
static void model_block(int slot, void *p, unsigned b, uint64_t charged,
                        size_t size, bool zeroed) {
  EXPECT(p != NULL, "an allocation granted no block");
  if (zeroed)
    for (size_t i = 0; i < size; i++)
      EXPECT(((uint8_t *)p)[i] == 0, "mm_consumer_calloc: not zeroed");
  uint8_t stamp = ++m.next_stamp;
  memset(p, stamp, size);
  m.blk[slot] = (mblock){p, b, charged, m.book[b].gen, size, stamp};
  EXPECT(mm_usable_size(mm, p) == charged, "mm_usable_size %zu, class %llu",
         mm_usable_size(mm, p), (unsigned long long)charged);
}

/* An execution charge to book @b (an exec id's own, or a handle's):
 * acquire, alloc or calloc. */
static void op_charge(input *in, unsigned b, enum how how) {
  size_t n = how == CALLOC ? 1 + byte(in) % 4 : 1;
  size_t size = size_arg(in);
  int64_t timeout = timeout_arg(in);
  bool fault = how != ACQUIRE && byte(in) % 8 == 0;
  int slot = how == ACQUIRE ? 0 : free_slot();
  if (slot < 0)
    return;
  size_t bytes = n * size;
  bool invalid = !book_open(b) || size == 0 || timeout < -1 ||
                 (how == CALLOC && size > SIZE_MAX / n) || bytes > m.max_exec;
  uint64_t charge = bytes;
  if (how != ACQUIRE && !invalid) {
    charge = mmi_backing_size(&mm->backing, bytes);
    invalid = charge == 0 || charge > m.ceiling;
  }
  mbook *bk = &m.book[b];
  bool capped = !invalid && bk->max && bk->held + charge > bk->max;
  /* What the pool must add: above the reserve only. */
  uint64_t rest =
      invalid ? 0
              : charged_at(bk, bk->held + charge) - charged_at(bk, bk->held);
  plan p = invalid || capped ? (plan){NO, 0, false}
           : rest            ? plan_for(MM_POOL_EXECUTION, rest)
                             : (plan){FITS, 0, false};
  /* Past its max: declined at once, whatever its timeout. */
  int64_t judged = capped ? MM_NO_WAIT : timeout;
  void *blk = NULL;
  reclaim_begin(b,
                !invalid && !capped && p.v != FITS && p.v != EVICTS &&
                    timeout != MM_NO_WAIT,
                rest);
  mm_status st =
      b < NIDS ? call_acquire(MM_POOL_EXECUTION, how != ACQUIRE, b, bytes,
                              timeout, fault, &blk, NULL)
               : call_consumer(m.book[b].h, how, n, size, timeout, fault, &blk);
  if (reclaim_end())
    p = plan_for(MM_POOL_EXECUTION,
                 charged_at(bk, bk->held + charge) - charged_at(bk, bk->held));
  const char *what = b < NIDS ? (how ? "mm_exec_alloc" : "mm_acquire_execution")
                     : how == ACQUIRE ? "mm_consumer_acquire"
                     : how == ALLOC   ? "mm_consumer_alloc"
                                      : "mm_consumer_calloc";
  if (invalid) {
    EXPECT(st == MM_EINVAL, "%s(%zu x %zu, charge %llu, timeout %lld): got %s",
           what, n, size, (unsigned long long)charge, (long long)timeout,
           mm_strerror(st));
  } else if (fault && st == MM_ENOMEM && acceptable(p, judged, MM_OK)) {
    /* the allocator failed: declined, nothing charged or evicted */
  } else {
    EXPECT(acceptable(p, judged, st), "%s(%zu): got %s", what, bytes,
           mm_strerror(st));
  }
  settle_evictions(MM_POOL_EXECUTION, p, st == MM_OK);
  if (st == MM_OK) {
    book_set(b, bk->held + charge);
    if (how != ACQUIRE)
      model_block(slot, blk, b, charge, bytes, how == CALLOC);
  }
  check_picture(what);
}

static void op_acquire_exec(input *in, bool alloc) {
  op_charge(in, byte(in) % NIDS, alloc ? ALLOC : ACQUIRE);
}

/* What a release may be asked to return: all the books hold, a part, one
 * byte more, or nothing.  (Blocks' bytes may be released too: their free
 * then returns what is left, never below 0.) */
static size_t release_arg(input *in, uint64_t held) {
  switch (byte(in) % 4) {
  case 0:
    return held;
  case 1:
    return held + 1;
  case 2:
    return 0;
  default:
    return held ? 1 + word(in) % held : 0;
  }
}

static void op_release_exec(input *in) {
  unsigned id = byte(in) % NIDS;
  size_t bytes = release_arg(in, m.book[id].held);
  mm_status st = mm_release_execution(mm, id, bytes);
  if (bytes == 0 || bytes > m.book[id].held) {
    EXPECT_ST(st, MM_EINVAL, "mm_release_execution");
  } else {
    EXPECT_ST(st, MM_OK, "mm_release_execution");
    m.book[id].held -= bytes;
    m.used_e -= bytes;
  }
  check_picture("mm_release_execution");
}

static void op_release_all(input *in) {
  unsigned id = byte(in) % NIDS;
  size_t got = mm_release_all_execution(mm, id);
  uint64_t want = id_held(id);
  EXPECT(got == want, "mm_release_all_execution: %zu, model %llu", got,
         (unsigned long long)want);
  model_close(id);
  for (unsigned b = NIDS; b < NBOOK; b++)
    if (book_open(b) && m.book[b].exec_id == id) {
      model_close(b);
      m.book[b].closed = true; /* the handle stays, closed */
    }
  check_picture("mm_release_all_execution");
}

/* The answer a free of block @k through @via (a book) must get: a live
 * block of those books, or of the same exec id's by mm_exec_free, is
 * freed and uncharged; an orphan is freed; another's is refused. */
static bool free_accepted(const mblock *k, unsigned via, bool by_id) {
  if (orphan(k))
    return true;
  if (by_id)
    return book_exec(k->book) == book_exec(via);
  return k->book == via;
}

static void op_exec_free(input *in) {
  uint8_t k = byte(in);
  mblock *b = &m.blk[k % NBLK];
  static uint64_t not_ours[4];
  unsigned via = byte(in) % NBOOK;
  bool by_id = via < NIDS || !m.book[via].h;
  if (by_id)
    via %= NIDS;
  mm_consumer *h = by_id ? NULL : m.book[via].h;
#define FREE_VIA(p)                                                            \
  (by_id ? mm_exec_free(mm, via, (p)) : mm_consumer_free(h, (p)))
  switch (k / NBLK % 4) {
  case 0: /* a pointer the manager never handed out, or into a block */
    if (b->p && b->charged >= 32)
      EXPECT_ST(FREE_VIA((char *)b->p + 16), MM_EINVAL, "free(interior)");
    EXPECT_ST(FREE_VIA(&not_ours[k % 4]), MM_EINVAL, "free(not ours)");
    EXPECT(mm_usable_size(mm, &not_ours[k % 4]) == 0, "usable(not ours)");
    break;
  case 1: /* through any books: refused unless they may free it */
    if (!b->p)
      break;
    if (free_accepted(b, via, by_id)) {
      EXPECT_ST(FREE_VIA(b->p), MM_OK, "free");
      model_free(b);
    } else {
      EXPECT_ST(FREE_VIA(b->p), MM_EINVAL, "free(another's)");
    }
    break;
  default: /* through its own books */
    if (!b->p)
      break;
    EXPECT(((uint8_t *)b->p)[0] == b->stamp &&
               ((uint8_t *)b->p)[b->size - 1] == b->stamp,
           "a block's memory changed");
    if (b->book < NIDS || !m.book[b->book].h)
      EXPECT_ST(mm_exec_free(mm, book_exec(b->book), b->p), MM_OK, "free");
    else
      EXPECT_ST(mm_consumer_free(m.book[b->book].h, b->p), MM_OK, "free");
    model_free(b);
    /* and again: a double free is refused */
    EXPECT_ST(mm_exec_free(mm, book_exec(b->book), b->p), MM_EINVAL,
              "double free");
  }
#undef FREE_VIA
  check_picture("free");
}

/* Consumer handles: open, close, charge, release, realloc. */
static void op_consumer(input *in) {
  uint8_t k = byte(in);
  unsigned b = NIDS + k % NCONS;
  mbook *bk = &m.book[b];
  switch (k / NCONS % 6) {
  case 0: /* open, or close */
    if (!bk->h) {
      unsigned id = byte(in) % NIDS;
      EXPECT_ST(mm_consumer_open(mm, id, &bk->h), MM_OK, "mm_consumer_open");
      bk->exec_id = id;
      bk->closed = false;
      bk->held = 0;
      bk->min = bk->max = 0;
      bk->reclaims = bk->gives = bk->self = false;
    } else {
      EXPECT_ST(mm_consumer_close(bk->h), MM_OK, "mm_consumer_close");
      if (book_open(b))
        model_close(b);
      else
        bk->gen++; /* closed already: nothing held */
      bk->h = NULL;
    }
    check_picture("mm_consumer_open/close");
    return;
  case 1:
  case 2:
    if (bk->h)
      op_charge(in, b, (enum how)(k / NCONS % 6 - 1 + byte(in) % 2));
    return;
  case 3:
    if (bk->h)
      op_charge(in, b, CALLOC);
    return;
  case 4: {
    if (!bk->h)
      return;
    size_t bytes = release_arg(in, bk->held);
    mm_status st = mm_consumer_release(bk->h, bytes);
    if (!book_open(b) || bytes == 0 || bytes > bk->held) {
      EXPECT_ST(st, MM_EINVAL, "mm_consumer_release");
    } else {
      EXPECT_ST(st, MM_OK, "mm_consumer_release");
      book_set(b, bk->held - bytes);
    }
    check_picture("mm_consumer_release");
    return;
  }
  default:
    break;
  }
  /* realloc: of one of its blocks (or another's, or NULL) */
  if (!bk->h)
    return;
  mblock *blk = &m.blk[byte(in) % NBLK];
  size_t size = size_arg(in);
  int64_t timeout = timeout_arg(in);
  void *old = blk->p, *out = (void *)1;
  bool own = old && blk->book == b && !orphan(blk);
  int slot = old ? (int)(blk - m.blk) : free_slot();
  if (slot < 0)
    return;
  bool invalid = !book_open(b) || (old && !own) || size == 0 || timeout < -1 ||
                 size > m.max_exec;
  uint64_t charge = invalid ? 0 : mmi_backing_size(&mm->backing, size);
  invalid = invalid || charge == 0 || charge > m.ceiling;
  bool stays = !invalid && old && charge <= blk->charged;
  bool capped = !invalid && !stays && bk->max && bk->held + charge > bk->max;
  uint64_t rest = invalid || stays ? 0
                                   : charged_at(bk, bk->held + charge) -
                                         charged_at(bk, bk->held);
  plan p = invalid || stays ? (plan){FITS, 0, false}
           : capped         ? (plan){NO, 0, false}
           : rest           ? plan_for(MM_POOL_EXECUTION, rest)
                            : (plan){FITS, 0, false};
  int64_t judged = capped ? MM_NO_WAIT : timeout; /* declined at once */
  reclaim_begin(b,
                !invalid && !stays && !capped && p.v != FITS && p.v != EVICTS &&
                    timeout != MM_NO_WAIT,
                rest);
  in_call = true;
  mm_status st = mm_consumer_realloc(bk->h, old, size, timeout, &out);
  in_call = false;
  if (reclaim_end())
    p = plan_for(MM_POOL_EXECUTION,
                 charged_at(bk, bk->held + charge) - charged_at(bk, bk->held));
  if (invalid) {
    EXPECT_ST(st, MM_EINVAL, "mm_consumer_realloc");
    EXPECT(out == (void *)1, "mm_consumer_realloc wrote *out on failure");
  } else if (stays) {
    EXPECT_ST(st, MM_OK, "mm_consumer_realloc(in place)");
    EXPECT(out == old, "a block that fits its class moved");
  } else {
    EXPECT(acceptable(p, judged, st), "mm_consumer_realloc(%zu): got %s", size,
           mm_strerror(st));
  }
  settle_evictions(MM_POOL_EXECUTION, p, st == MM_OK && !stays);
  if (st == MM_OK && !stays) {
    size_t keep = old ? (blk->size < size ? blk->size : size) : 0;
    for (size_t i = 0; i < keep; i++)
      EXPECT(((uint8_t *)out)[i] == blk->stamp, "realloc lost the contents");
    book_set(b, bk->held + charge);
    if (old)
      model_free(blk);
    model_block(slot, out, b, charge, size, false);
  } else if (st == MM_OK) {
    blk->size = size < blk->size ? size : blk->size;
  }
  check_picture("mm_consumer_realloc");
}

/* Consumers sharing execution memory: ranges, limits, reclaim callbacks. */
static void op_share(input *in) {
  uint8_t k = byte(in);
  unsigned b = NIDS + k % NCONS;
  mbook *bk = &m.book[b];
  if (!bk->h)
    return;
  uint64_t free_now = model_room();
  switch (k / NCONS % 4) {
  case 0:
  case 1: { /* mm_consumer_acquire_range */
    size_t lo = size_arg(in), hi;
    switch (byte(in) % 4) {
    case 0:
      hi = lo;
      break;
    case 1:
      hi = lo > SIZE_MAX / 2 ? SIZE_MAX : 2 * lo + PAGE;
      break;
    case 2:
      hi = lo ? lo - 1 : 0; /* invalid */
      break;
    default:
      hi = SIZE_MAX;
    }
    int64_t timeout = timeout_arg(in);
    bool null_out = byte(in) % 16 == 0;
    size_t got = 7;
    bool invalid = !book_open(b) || null_out || lo == 0 || hi < lo ||
                   lo > m.max_exec || timeout < -1;
    if (invalid) {
      EXPECT_ST(mm_consumer_acquire_range(bk->h, lo, hi, timeout,
                                          null_out ? NULL : &got),
                MM_EINVAL, "mm_consumer_acquire_range(invalid)");
      EXPECT(null_out || got == 0, "a refused range granted %zu", got);
      check_picture("mm_consumer_acquire_range(invalid)");
      return;
    }
    uint64_t most = hi < m.max_exec ? hi : m.max_exec, want = 0;
    plan p = {FITS, 0, false};
    mm_status expect_st = MM_OK;
    bool min_path = false;
    if (bk->max && bk->held + lo > bk->max) {
      expect_st = MM_ENOMEM; /* past its max, at once */
      p = (plan){NO, 0, false};
    } else {
      if (bk->max && bk->held + most > bk->max)
        most = bk->max - bk->held;
      uint64_t avail = charged_at(bk, bk->held) - bk->held + free_now;
      want = most < avail ? most : avail;
      if (most == lo || want < lo) { /* a request of the min */
        min_path = true;
        want = lo;
        uint64_t rest =
            charged_at(bk, bk->held + lo) - charged_at(bk, bk->held);
        p = rest ? plan_for(MM_POOL_EXECUTION, rest) : (plan){FITS, 0, false};
        reclaim_begin(b, p.v != FITS && p.v != EVICTS && timeout != MM_NO_WAIT,
                      rest);
      }
    }
    in_call = true;
    mm_status st = mm_consumer_acquire_range(bk->h, lo, hi, timeout, &got);
    in_call = false;
    if (min_path && reclaim_end())
      p = plan_for(MM_POOL_EXECUTION,
                   charged_at(bk, bk->held + lo) - charged_at(bk, bk->held));
    if (expect_st == MM_ENOMEM)
      EXPECT_ST(st, MM_ENOMEM, "mm_consumer_acquire_range(past its max)");
    else if (min_path)
      EXPECT(acceptable(p, timeout, st),
             "mm_consumer_acquire_range(%zu..%zu): "
             "got %s",
             lo, hi, mm_strerror(st));
    else
      EXPECT_ST(st, MM_OK, "mm_consumer_acquire_range(free)");
    settle_evictions(MM_POOL_EXECUTION, p, st == MM_OK);
    EXPECT(got == (st == MM_OK ? want : 0), "range granted %zu, model %llu",
           got, (unsigned long long)(st == MM_OK ? want : 0));
    if (st == MM_OK)
      book_set(b, bk->held + want);
    check_picture("mm_consumer_acquire_range");
    return;
  }
  case 2: { /* mm_consumer_set_limits */
    static const uint8_t mins[] = {0, 1, 2, 4, 8, 0, 255, 3};
    uint8_t a = byte(in), z = byte(in);
    uint64_t lo = a % 8 == 6   ? m.exec_init + 1
                  : a % 8 == 5 ? m.exec_init
                               : (uint64_t)mins[a % 8] * PAGE;
    uint64_t hi = z % 4 == 0   ? 0
                  : z % 4 == 1 ? lo + PAGE * (z / 4 % 8)
                  : z % 4 == 2 ? (lo ? lo - 1 : 0)
                               : bk->held + PAGE;
    mm_status st = mm_consumer_set_limits(bk->h, lo, hi);
    if (trace)
      fprintf(stderr, "  set_limits(consumer %u, min %llu, max %llu): %s\n", b,
              (unsigned long long)lo, (unsigned long long)hi, mm_strerror(st));
    uint64_t sum = lo;
    for (unsigned o = NIDS; o < NBOOK; o++)
      if (o != b && book_open(o))
        sum += m.book[o].min;
    mbook next = *bk;
    next.min = lo;
    uint64_t more_old = charged_at(bk, bk->held);
    uint64_t more_new = charged_at(&next, bk->held);
    if (!book_open(b) || (hi && lo > hi)) {
      EXPECT_ST(st, MM_EINVAL, "mm_consumer_set_limits(invalid)");
    } else if (sum > m.exec_init ||
               (more_new > more_old && more_new - more_old > free_now)) {
      EXPECT_ST(st, MM_ENOMEM, "mm_consumer_set_limits(no room)");
    } else {
      EXPECT_ST(st, MM_OK, "mm_consumer_set_limits");
      m.used_e = m.used_e - more_old + more_new;
      bk->min = lo;
      bk->max = hi;
    }
    check_picture("mm_consumer_set_limits");
    return;
  }
  default: { /* mm_consumer_set_reclaim, mm_consumer_set_self_reclaim */
    uint8_t a = byte(in);
    bool on = a & 1, self = a & 4;
    mm_status st = mm_consumer_set_reclaim(bk->h, on ? fuzz_reclaim : NULL,
                                           (void *)(uintptr_t)b);
    mm_status st2 = mm_consumer_set_self_reclaim(bk->h, self);
    if (!book_open(b)) {
      EXPECT_ST(st, MM_EINVAL, "mm_consumer_set_reclaim(closed)");
      EXPECT_ST(st2, MM_EINVAL, "mm_consumer_set_self_reclaim(closed)");
    } else {
      EXPECT_ST(st, MM_OK, "mm_consumer_set_reclaim");
      EXPECT_ST(st2, MM_OK, "mm_consumer_set_self_reclaim");
      bk->reclaims = on;
      bk->gives = a & 2;
      bk->self = self;
    }
    check_picture("mm_consumer_set_reclaim");
  }
  }
}

static void op_acquire_storage(input *in, bool alloc, bool handle) {
  unsigned id = byte(in) % NPAGES;
  size_t bytes = size_arg(in);
  int64_t timeout = timeout_arg(in);
  bool fault = alloc && byte(in) % 8 == 0;
  uint64_t charge =
      alloc ? (bytes ? mmi_page_block_size(mm, bytes) : 0)
            : (bytes && bytes <= SIZE_MAX - PAGE ? round_pages(bytes) : 0);
  uint64_t storage_max = m.borrow ? m.ceiling : m.ceil_storage;
  bool invalid =
      bytes == 0 || timeout < -1 || charge == 0 || charge > storage_max;
  bool exists = m.page[id].present;
  plan p = invalid || exists ? (plan){NO, 0, false}
                             : plan_for(MM_POOL_STORAGE, charge);
  void *data = NULL;
  mm_page *h = NULL;
  mm_status st = call_acquire(MM_POOL_STORAGE, alloc, id, bytes, timeout, fault,
                              &data, handle ? &h : NULL);
  const char *what = handle  ? "mm_page_alloc"
                     : alloc ? "mm_storage_alloc"
                             : "mm_acquire_storage";
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
    *pg = (mpage){
        true,       alloc, charge, alloc ? 1 : 0, (uint8_t)(id * 37 + 1),
        pg->gen + 1};
    m.used_s += charge;
    if (handle) {
      mhandle *slot = &m.hdl[byte(in) % NHDL];
      if (slot->h)
        mm_page_put(slot->h); /* the older one lets go */
      *slot = (mhandle){h, id, pg->gen};
    }
    if (alloc) {
      EXPECT(data != NULL, "mm_storage_alloc: no memory");
      memset(data, 0, charge); /* ASan: all of it is ours */
      *(uint8_t *)data = pg->stamp;
    }
  }
  check_picture(what);
}

/* An unpin and a release of @pg (@live: the call reaches it), as the
 * model predicts them, and what a success changes in the model. */
static void model_unpin(mpage *pg, bool live, mm_status st, const char *what) {
  EXPECT_ST(st, !live ? MM_ENOENT : pg->pins ? MM_OK : MM_EINVAL, what);
  if (st == MM_OK)
    pg->pins--;
}

static void model_release(mpage *pg, bool live, mm_status st,
                          const char *what) {
  EXPECT_ST(st, !live ? MM_ENOENT : pg->pins ? MM_EBUSY : MM_OK, what);
  if (st == MM_OK) {
    pg->present = false;
    m.used_s -= pg->bytes;
  }
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
  case 1: {
    bool was_live = pg->present;
    unpinning = pg;
    mm_status got = mm_unpin_storage(mm, id);
    unpinning = NULL;
    model_unpin(pg, was_live, got, "mm_unpin_storage");
    check_picture("mm_unpin_storage");
    break;
  }
  default:
    model_release(pg, pg->present, mm_release_storage(mm, id),
                  "mm_release_storage");
    check_picture("mm_release_storage");
  }
}

/* Page handles: a new page with one, or a call through one held --
 * whose page may be gone (released, evicted, or its id registered again
 * since): the handle answers for its own page only. */
static void op_handle(input *in) {
  uint8_t k = byte(in);
  if (k % 6 == 0) {
    op_acquire_storage(in, true, true);
    return;
  }
  mhandle *hd = &m.hdl[k / 6 % NHDL];
  if (!hd->h)
    return;
  mpage *pg = &m.page[hd->id];
  bool live = pg->present && pg->gen == hd->gen;
  mm_status st;
  switch (k % 6) {
  case 1:
    st = mm_page_pin(hd->h);
    EXPECT_ST(st, live ? MM_OK : MM_ENOENT, "mm_page_pin");
    if (st == MM_OK)
      pg->pins++;
    break;
  case 2:
    unpinning = pg;
    mm_status got = mm_page_unpin(hd->h);
    unpinning = NULL;
    model_unpin(pg, live, got, "mm_page_unpin");
    break;
  case 3:
    model_release(pg, live, mm_page_release(hd->h), "mm_page_release");
    break;
  case 4: {
    uint8_t *data = mm_page_data(hd->h);
    EXPECT(live ? data && *data == pg->stamp : !data,
           "mm_page_data: wrong memory");
    break;
  }
  default:
    mm_page_put(hd->h);
    hd->h = NULL;
  }
  check_picture("page handle");
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
              charge > (m.borrow ? m.ceiling : m.ceil_storage);
  bool exists = pool == MM_POOL_STORAGE && !invalid && m.page[id].present;
  plan p = invalid || exists ? (plan){NO, 0, false}
                             : plan_for((mm_pool)pool, charge);
  if (p.v == MAYBE)
    return; /* the answer would depend on which pages are picked */
  bool any_reclaims = false;
  for (unsigned b = NIDS; b < NBOOK; b++)
    any_reclaims |= book_open(b) && m.book[b].reclaims;
  if (pool == MM_POOL_EXECUTION && p.v == NO && timeout != MM_NO_WAIT &&
      any_reclaims)
    return; /* its consumers would be asked on the service thread, while
               this thread goes on: the model could not follow */
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
    EXPECT_ST(st,
              timeout == MM_NO_WAIT || p.too_big ? MM_ENOMEM : MM_EINPROGRESS,
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
    m.book[id].held += charge;
  } else if (st == MM_OK) {
    m.page[id] = (mpage){true, false, charge, 0, 0, m.page[id].gen + 1};
    m.used_s += charge;
  }
  check_picture("mm_acquire_async");
}

static void op_elastic(input *in);

/* Calls with a NULL manager or NULL outputs: refused, nothing touched. */
static void op_null(input *in) {
  void *out = (void *)1;
  uint64_t ticket = 5;
  mm_stats s;
  uint8_t k = byte(in);
  if (k >= 8) { /* (0-7: the calls below, as the seeds have them) */
    op_elastic(in);
    return;
  }
  switch (k) {
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
    EXPECT_ST(mm_consumer_open(NULL, 0, (mm_consumer **)&out), MM_EINVAL,
              "null");
    EXPECT_ST(mm_consumer_open(mm, 0, NULL), MM_EINVAL, "null");
    EXPECT_ST(mm_consumer_close(NULL), MM_EINVAL, "null");
    EXPECT_ST(mm_consumer_acquire(NULL, 1, MM_NO_WAIT), MM_EINVAL, "null");
    EXPECT_ST(mm_consumer_release(NULL, 1), MM_EINVAL, "null");
    EXPECT(mm_consumer_held(NULL) == 0, "null");
    EXPECT_ST(mm_consumer_alloc(NULL, 1, MM_NO_WAIT, &out), MM_EINVAL, "null");
    EXPECT_ST(mm_consumer_calloc(NULL, 1, 1, MM_NO_WAIT, &out), MM_EINVAL,
              "null");
    EXPECT_ST(mm_consumer_realloc(NULL, NULL, 1, MM_NO_WAIT, &out), MM_EINVAL,
              "null");
    EXPECT_ST(mm_consumer_free(NULL, &out), MM_EINVAL, "null");
    EXPECT(mm_usable_size(NULL, &out) == 0 && mm_usable_size(mm, NULL) == 0,
           "null");
    for (unsigned b = NIDS; b < NBOOK; b++)
      if (m.book[b].h) {
        mm_consumer *h = m.book[b].h;
        EXPECT_ST(mm_consumer_alloc(h, 1, MM_NO_WAIT, NULL), MM_EINVAL, "null");
        EXPECT_ST(mm_consumer_calloc(h, 1, 1, MM_NO_WAIT, NULL), MM_EINVAL,
                  "null");
        EXPECT_ST(mm_consumer_realloc(h, NULL, 1, MM_NO_WAIT, NULL), MM_EINVAL,
                  "null");
        EXPECT_ST(mm_consumer_free(h, NULL), MM_EINVAL, "null");
        EXPECT_ST(mm_consumer_calloc(h, SIZE_MAX / 2, 4, MM_NO_WAIT, &out),
                  MM_EINVAL, "calloc overflow");
        break;
      }
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

/* ---- the elastic budget ------------------------------------------------- */

/* mm_set_budget (never waiting: the model follows its evictions) and
 * mm_external_set (a request of the growth, credited to nobody).  Op 12
 * with a second byte of 8 or more (op_null). */
static void op_elastic(input *in) {
  uint8_t k = byte(in);
  if (k % 2 == 0) {
    uint64_t t;
    switch (k / 2 % 8) {
    case 0:
      t = m.ceiling;
      break;
    case 1:
      t = m.total > 3 * PAGE ? m.total - PAGE : m.total;
      break;
    case 2:
      t = m.total / 2;
      break;
    case 3:
      t = m.used_e + m.used_s; /* exactly what is in use */
      break;
    case 4:
      t = (k & 0x80) ? PAGE : 0; /* below any plan */
      break;
    case 5:
      t = m.ceiling + 1;
      break;
    default:
      t = (2 + word(in) % (m.ceiling / PAGE)) * PAGE + (k & 0x80 ? 1 : 0);
    }
    int64_t timeout = byte(in) % 8 == 0 ? -2 : MM_NO_WAIT;
    uint64_t guaranteed = 0;
    for (unsigned b = NIDS; b < NBOOK; b++)
      if (book_open(b))
        guaranteed += m.book[b].min;
    uint64_t s0 =
        t <= m.ceiling
            ? (uint64_t)((unsigned __int128)m.ceil_storage * t / m.ceiling)
            : 0;
    bool valid = timeout >= -1 && t <= m.ceiling && t / 2 >= PAGE &&
                 s0 >= PAGE && s0 >= m.protected_bytes && t - s0 >= guaranteed;
    uint64_t unpinned = unpinned_bytes();
    in_call = true;
    mm_status st = mm_set_budget(mm, t, timeout);
    in_call = false;
    if (trace)
      fprintf(stderr, "  set_budget(%llu): %s\n", (unsigned long long)t,
              mm_strerror(st));
    if (!valid) {
      EXPECT_ST(st, MM_EINVAL, "mm_set_budget(invalid)");
      EXPECT(ev.n == 0, "a refused resize evicted");
      check_picture("mm_set_budget(invalid)");
      return;
    }
    model_budget(t);
    uint64_t sum = 0;
    for (unsigned i = 0; i < ev.n; i++)
      sum += ev.bytes[i];
    EXPECT(sum <= unpinned, "a resize evicted pinned bytes");
    m.used_s -= sum;
    m.evictions += ev.n;
    ev.n = 0;
    uint64_t exec_side =
        m.borrow ? m.used_e : (m.used_e > m.exec_init ? m.used_e : m.exec_init);
    bool fits =
        m.used_e + m.used_s <= m.total && m.used_s + exec_side <= m.total;
    EXPECT_ST(st, fits ? MM_OK : MM_ETIMEDOUT, "mm_set_budget");
    /* Nothing evicted that was not needed: whole pages, a page over. */
    EXPECT(!sum || model_over() == 0 || unpinned_bytes() < PAGE || !fits,
           "a resize evicted and still does not fit");
    check_picture("mm_set_budget");
    return;
  }
  unsigned x = k / 2 % NEXT;
  uint64_t cur = m.ext[x], bytes;
  switch (k / 8 % 6) {
  case 0:
    bytes = 0;
    break;
  case 1:
    bytes = cur + PAGE;
    break;
  case 2:
    bytes = cur > PAGE ? cur - PAGE : 0;
    break;
  case 3:
    bytes = cur + model_room();
    break;
  case 4:
    bytes = m.ceiling + 1;
    break;
  default:
    bytes = size_arg(in);
  }
  int64_t timeout = timeout_arg(in);
  bool invalid = timeout < -1 || bytes > m.ceiling;
  plan p = {FITS, 0, false};
  if (!invalid && bytes > cur)
    p = plan_for(MM_POOL_EXECUTION, bytes - cur);
  reclaim_begin(NBOOK,
                !invalid && bytes > cur && p.v != FITS && p.v != EVICTS &&
                    timeout != MM_NO_WAIT,
                bytes > cur ? bytes - cur : 0);
  in_call = true;
  mm_status st = mm_external_set(mm, x, bytes, timeout);
  in_call = false;
  if (reclaim_end())
    p = plan_for(MM_POOL_EXECUTION, bytes - cur);
  if (trace)
    fprintf(stderr, "  external_set(%u, %llu): %s\n", x,
            (unsigned long long)bytes, mm_strerror(st));
  if (invalid) {
    EXPECT_ST(st, MM_EINVAL, "mm_external_set(invalid)");
  } else if (bytes <= cur) {
    EXPECT_ST(st, MM_OK, "mm_external_set(shrink)");
    m.used_e -= cur - bytes;
    m.ext[x] = bytes;
  } else {
    EXPECT(acceptable(p, timeout, st), "mm_external_set(%llu more): got %s",
           (unsigned long long)(bytes - cur), mm_strerror(st));
    settle_evictions(MM_POOL_EXECUTION, p, st == MM_OK);
    if (st == MM_OK) {
      m.used_e += bytes - cur;
      m.ext[x] = bytes;
    }
  }
  check_picture("mm_external_set");
}

/* ---- the configuration -------------------------------------------------- */

/* A configuration from the input, and whether the header calls it valid. */
static bool config_arg(input *in, mm_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  uint8_t pages = byte(in), frac = byte(in), prot = byte(in), flags = byte(in);
  cfg->total_bytes = (size_t)(2 + pages % 63) * PAGE;
  if (prot & 0x80)
    cfg->total_bytes *= 16; /* large enough for consumers to reserve ahead */
  if (flags & 0x80)
    cfg->total_bytes += (size_t)word(in) % PAGE; /* not a page multiple */
  static const double fractions[] = {0, 0.25, 0.5, 0.75, 0.9, 1.0, -0.5, 0.01};
  cfg->storage_fraction = fractions[frac % 8];
  double f = cfg->storage_fraction ? cfg->storage_fraction : 0.5;
  bool valid = f > 0 && f < 1;
  /* An elastic budget: a ceiling above it (the split is the ceiling's,
   * scaled), or one below it (invalid). */
  uint64_t ceiling = cfg->total_bytes;
  if (frac & 0x80)
    ceiling =
        cfg->total_bytes * 2 + (frac & 0x40 ? (size_t)word(in) % PAGE : 0);
  else if (frac & 0x40)
    ceiling = cfg->total_bytes - 1;
  cfg->max_total_bytes = frac & 0xc0 ? ceiling : 0;
  valid = valid && ceiling >= cfg->total_bytes;
  uint64_t ceil_storage =
      valid ? (uint64_t)((double)ceiling * f) / PAGE * PAGE : 0;
  valid = valid && ceil_storage >= PAGE && ceil_storage < ceiling;
  uint64_t storage_init = valid ? (uint64_t)((unsigned __int128)ceil_storage *
                                             cfg->total_bytes / ceiling)
                                : 0;
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
  m.ceiling = ceiling;
  m.ceil_storage = ceil_storage;
  m.total = cfg->total_bytes;
  m.storage_init = storage_init;
  m.exec_init = m.total - storage_init;
  m.protected_bytes = cfg->storage_protected_bytes;
  m.borrow = cfg->storage_may_borrow;
  m.max_exec = cfg->max_execution_request ? cfg->max_execution_request
               : m.total < 8u << 20       ? m.total
                                          : 8u << 20;
  /* consumer.c: total / 64, at most 1 MiB; exact under 4 KiB. */
  m.quantum = m.total / 64 > (1u << 20) ? 1u << 20 : m.total / 64;
  if (m.quantum < 4096)
    m.quantum = 0;
  return valid;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  input in = {data, size};
  trace = getenv("FUZZ_API_TRACE") != NULL;
  memset(&m, 0, sizeof m);
  ev.n = 0;
  was_over = false;
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
    switch (byte(&in) % 16) {
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
      op_acquire_storage(&in, false, false);
      break;
    case 6:
      op_acquire_storage(&in, true, false);
      break;
    case 7:
    case 8:
      op_page(&in);
      break;
    case 9:
      op_async(&in);
      break;
    case 10:
    case 11:
      op_consumer(&in);
      break;
    case 13:
      op_handle(&in);
      break;
    case 14:
    case 15:
      op_share(&in);
      break;
    default:
      op_null(&in);
    }
  }
  /* Give everything back by hand, then check the pools are whole. */
  for (int i = 0; i < NBLK; i++)
    if (m.blk[i].p) {
      EXPECT_ST(mm_exec_free(mm, book_exec(m.blk[i].book), m.blk[i].p), MM_OK,
                "teardown");
      m.blk[i].p = NULL;
    }
  for (unsigned b = NIDS; b < NBOOK; b++)
    if (m.book[b].h)
      EXPECT_ST(mm_consumer_close(m.book[b].h), MM_OK, "teardown close");
  for (unsigned k = 0; k < NHDL; k++)
    mm_page_put(m.hdl[k].h); /* (NULL: nothing) */
  for (unsigned id = 0; id < NPAGES; id++)
    if (m.page[id].present) {
      for (; m.page[id].pins; m.page[id].pins--) {
        unpinning = &m.page[id]; /* (past the budget, it may go at once) */
        EXPECT_ST(mm_unpin_storage(mm, id), MM_OK, "teardown unpin");
        unpinning = NULL;
      }
      if (m.page[id].present)
        EXPECT_ST(mm_release_storage(mm, id), MM_OK, "teardown release");
    }
  for (unsigned id = 0; id < NIDS; id++)
    (void)mm_release_all_execution(mm, id);
  for (unsigned x = 0; x < NEXT; x++)
    EXPECT_ST(mm_external_set(mm, x, 0, MM_NO_WAIT), MM_OK, "teardown");
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

/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * mm_sqlite.c -- SQLite's page cache and heap on a memory_manager budget.
 *
 * The page cache (sqlite3_pcache_methods2)
 *
 * Each cached page is two pieces:
 *
 *   the page buffer (pBuf)   a storage page of the manager, exactly
 *                            szPage bytes (mm_page_alloc), pinned while
 *                            SQLite holds it, evictable once unpinned;
 *   its record               from the C heap, charged to the adapter's
 *                            record exec id: SQLite's pcache_page, our
 *                            fields (the page's handle among them), then
 *                            SQLite's szExtra bytes (pExtra).
 *
 * Keeping the record apart keeps the storage page at exactly szPage (a
 * 4 KiB SQLite page is one 4 KiB storage page, not two).  The manager's
 * page id names the record: bit 63 set, a sequence number in bits 48-62,
 * the record's address in bits 0-47.  So the eviction callback, which is
 * given the id, finds the record without any lookup.  (The sequence
 * number only matters when a freed record's address is reused while the
 * manager still holds its old id for a moment: mm_page_alloc answers
 * MM_EEXIST and we take the next number.)
 *
 * The record keeps the page's handle (mm_page): every pin, unpin and
 * release goes through it, one CAS on the page with no lookup in the
 * manager.  Whoever frees the record puts the handle.
 *
 * A cache indexes its records by key in a hash table under a mutex.  The
 * mutex is held for a few pointer updates and a pin, and never across a
 * manager call that may evict: the eviction callback takes it on whatever
 * thread evicts, and that thread may be inside any cache's xFetch, so
 * holding it across such a call could deadlock two caches evicting each
 * other's pages.  (mm_page_pin never evicts and never waits.)
 *
 * Who frees a record.  The manager ends every page in exactly one of two
 * ways: a release that answers MM_OK, or one eviction callback (see
 * mm_release_storage).  A linked record (in its cache's index) is freed by
 * the callback, which unlinks it.  A record the owner unlinked (discard,
 * truncate, shrink, rekey, a page that vanished under a pin) is released
 * by the owner through its handle: MM_OK, and the owner frees it;
 * MM_ENOENT, and the eviction callback has run or will, so the two meet
 * on the record's `done` word and whoever comes second frees it.  So a
 * record, and its handle, live as long as the owner may still call on
 * them.
 *
 * Memory a record is read from: under the cache's mutex, every linked
 * record is alive (the callback unlinks before it frees).  Outside it, the
 * owner touches a linked record only while it holds the manager's pin on
 * its page (pinned pages are not evicted), and an unlinked one until it
 * marks it done.  Its last unpin is the exception that mm_page_unpin
 * allows: the page may be evicted, and the record freed, while that call
 * returns, and the owner reads nothing of the record after it.
 *
 * Pins.  SQLite's pins are not counted (one xUnpin undoes any number of
 * xFetch), the manager's are: the record remembers whether the adapter
 * holds the manager's pin (mm_pinned) and whether SQLite holds the page
 * (sql_pinned).  A cache that is not purgeable (an in-memory database)
 * keeps the manager's pin on every page until the page is discarded:
 * SQLite could not read such a page back.
 *
 * All of a cache's methods are called by one connection at a time (SQLite
 * serialises them); only the eviction callback comes from other threads,
 * and it touches only the index, the page count, the record's `done`,
 * the cache's credit (under the mutex) and the record's handle, which it
 * puts when it frees the record.
 *
 * When the budget is full.  A page SQLite asks for with createFlag 1 is
 * refused at once when the budget has no room, or when the cache already
 * pins its share (cache_size pages, and at most three quarters of the
 * storage pool whatever cache_size says): SQLite then spills a dirty
 * page of that cache and asks again with 2.  So one cache's dirty pages
 * never take the room another cache needs for a page it cannot spill
 * for (a new cache has no dirty page to spill).  SQLite spills only while
 * its page count exceeds its spill size, which is 1 unless set, but
 * cache_size for the database VACUUM builds: so after a refusal for want
 * of room, and until a page is made again, xPagecount reads one more
 * than cache_size.
 *
 * The heap (sqlite3_mem_methods): one consumer handle on the heap's exec
 * id, opened at install and shared by every connection and thread, so a
 * block comes from the calling thread's cache, charged from quota the
 * consumer reserved ahead (the execution fast path).  Each block has a
 * 16-byte header that remembers its usable size for xSize: SQLite's own
 * count of its heap (sqlite3_memory_used, which its soft heap limit is
 * checked against) is then what the budget is charged, but the headers.
 *
 * The header is also what SQLite's b-tree needs of a page cache.  It
 * checks that a cell does not straddle the end of a page image by
 * comparing the cell's address with the page buffer's end
 * (balance_nonroot, rebuildPage, ptrmapPutOvflPtr), so a cell built at
 * the very start of a heap buffer that begins where a page buffer ends
 * reads as corrupt ("database disk image is malformed").  SQLite's own
 * cache never lets that happen (its page header follows the buffer);
 * here the page buffers are bare arena blocks, and the header keeps every
 * heap pointer 16 bytes past the start of its block.  (Heap blocks of
 * exactly the requested size, with no header, corrupted the preload
 * workload in most runs: page-sized b-tree buffers of the heap landed
 * right after page buffers.)
 *
 * Spilling.  SQLite's sorter keeps runs in memory up to cache_size bytes
 * and flushes them early only when its heap is "nearly full"
 * (sqlite3HeapNearlyFull: the soft heap limit reached, with memory
 * statistics on), and only if it keeps a record per allocation
 * (SQLITE_CONFIG_SMALL_MALLOC; else it grows one buffer to cache_size
 * bytes and fails when that cannot grow).  The adapter sets both, and
 * the soft heap limit to the manager's execution pool when the first
 * cache is made (SQLite is initialised then) unless the program set one,
 * so sorts spill to temporary files in runs of SQLITE_CONFIG_PMASZ pages
 * (which the adapter sets to a 64th of the budget) once the heap fills
 * its share of the budget, whatever cache_size says.
 */
#include "mm_sqlite.h"

#include <sqlite3.h>

#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define ID_TAG    ((uint64_t)1 << 63)
#define ADDR_BITS 48
#define ADDR_MASK (((uint64_t)1 << ADDR_BITS) - 1)
#define SEQ_MASK  ((uint64_t)0x7fff) /* bits 48-62 */

#define DEFAULT_EXEC_ID       ((uint64_t)0x53514c00)
#define DEFAULT_FETCH_TIMEOUT ((int64_t)10 * 1000 * 1000) /* 10 ms */
#define BATCH                 64 /* records dropped per pass of the mutex */
#define CREDIT                16 /* records' charges a cache keeps for reuse */

static struct adapter {
  mm_t *mm;
  uint64_t heap_id, record_id;
  int64_t malloc_timeout, fetch_timeout;
  mm_consumer *heap;       /* the heap's books, on heap_id */
  size_t storage_bytes;    /* the storage pool at install */
  int64_t soft_heap_limit; /* -1: SQLite's own; 0: the execution pool */
  atomic_bool installed;
  atomic_uint seq;
  atomic_uint_fast64_t hits, misses, evicted, fetch_failed, malloc_failed;
} ad;

/* ---- the heap ----------------------------------------------------------- */

#define HEAP_HDR 16 /* keeps the 16-byte alignment of the block */

static int round8(int n) { return (n + 7) & ~7; }

static void *heap_malloc(int n) {
  if (n <= 0 || n > 0x7fffff00)
    return NULL;
  size_t size = (size_t)round8(n);
  void *b;
  if (mm_consumer_alloc(ad.heap, size + HEAP_HDR, ad.malloc_timeout, &b) !=
      MM_OK) {
    atomic_fetch_add_explicit(&ad.malloc_failed, 1, memory_order_relaxed);
    return NULL;
  }
  /* The whole block is the caller's (xSize), so that SQLite's count of
   * its heap is what the budget is charged, but for the header. */
  *(uint64_t *)b = mm_usable_size(ad.mm, b) - HEAP_HDR;
  return (char *)b + HEAP_HDR;
}

static void heap_free(void *p) {
  if (p)
    (void)mm_consumer_free(ad.heap, (char *)p - HEAP_HDR);
}

static int heap_size(void *p) {
  return p ? (int)*(uint64_t *)((char *)p - HEAP_HDR) : 0;
}

static void *heap_realloc(void *p, int n) {
  if (!p)
    return heap_malloc(n);
  if (n <= heap_size(p))
    return p; /* SQLite shrinks rarely; the block stays as it was */
  void *q = heap_malloc(n);
  if (q) {
    memcpy(q, p, (size_t)heap_size(p));
    heap_free(p);
  }
  return q;
}

static int heap_roundup(int n) { return n > 0x7fffff00 ? n : round8(n); }

/* xInit and xShutdown of both method tables: the manager is the
 * embedder's, and the adapter keeps nothing per SQLite initialisation. */
static int nothing_to_init(void *arg) {
  (void)arg;
  return SQLITE_OK;
}

static void nothing_to_shut_down(void *arg) { (void)arg; }

/* ---- page records ------------------------------------------------------- */

typedef struct cache cache;

enum { DONE_OWNER = 1, DONE_CALLBACK = 2 };

typedef struct record {
  sqlite3_pcache_page base; /* what SQLite holds: pBuf, pExtra */
  cache *c;
  struct record *next; /* hash chain, under c->lock */
  mm_page *pg;         /* the page's handle, put with the record */
  unsigned key;
  bool linked;      /* in c's index (under c->lock) */
  bool mm_pinned;   /* the adapter holds the manager's pin (owner only) */
  bool sql_pinned;  /* SQLite holds the page (owner only) */
  atomic_uint done; /* DONE_*: owner-released record meets its callback */
  /* then SQLite's szExtra bytes (pExtra), 8-aligned */
} record;

#define RECORD_HDR ((sizeof(record) + 7) & ~(size_t)7)

struct cache {
  pthread_mutex_t lock;
  atomic_long refs; /* SQLite's handle, and one per record alive */
  int sz_page, sz_extra;
  bool purgeable;
  unsigned max;     /* cache_size in pages (0: none given) */
  unsigned pin_cap; /* pages it may hold pinned before it must spill */
  bool full;        /* a createFlag 1 page was refused, and no page given
                       with 2 since: report past max */
  unsigned npinned; /* pages SQLite holds (owner only) */
  unsigned npage;   /* records in the index (under lock) */
  unsigned nhash;   /* a power of two (under lock) */
  size_t credit;    /* records' bytes charged, not in use (under lock) */
  record **hash;    /* (under lock) */
};

static size_t record_size(const cache *c) {
  return RECORD_HDR + (size_t)c->sz_extra;
}

static uint64_t record_id(record *r, unsigned seq) {
  return ID_TAG | ((uint64_t)seq & SEQ_MASK) << ADDR_BITS |
         ((uint64_t)(uintptr_t)r & ADDR_MASK);
}

static record *record_of(uint64_t id) {
  return (record *)(uintptr_t)(id & ADDR_MASK);
}

static void cache_unref(cache *c) {
  if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) {
    (void)mm_release_execution(ad.mm, ad.record_id, c->credit);
    pthread_mutex_destroy(&c->lock);
    free(c->hash);
    free(c);
  }
}

/* A record's charge goes to its cache's credit, up to CREDIT records, for
 * the next page it makes: with the budget full, each new page evicts one,
 * and its record's charge serves the new one's, so no record's charge has
 * to evict a page of its own. */
static void record_free(record *r) {
  cache *c = r->c;
  size_t size = record_size(c);
  mm_page_put(r->pg);
  free(r);
  pthread_mutex_lock(&c->lock);
  bool keep = c->credit < CREDIT * size;
  if (keep)
    c->credit += size;
  pthread_mutex_unlock(&c->lock);
  if (!keep)
    (void)mm_release_execution(ad.mm, ad.record_id, size);
  cache_unref(c);
}

/* Charge a new record to the cache's credit, or to the budget at once. */
static bool record_charge(cache *c, size_t size) {
  pthread_mutex_lock(&c->lock);
  bool had = c->credit >= size;
  if (had)
    c->credit -= size;
  pthread_mutex_unlock(&c->lock);
  return had ||
         mm_acquire_execution(ad.mm, ad.record_id, size, MM_NO_WAIT) == MM_OK;
}

/* Owner and eviction callback each mark the record; the second frees it. */
static void record_done(record *r, unsigned who) {
  unsigned other = who == DONE_OWNER ? DONE_CALLBACK : DONE_OWNER;
  if (atomic_fetch_or_explicit(&r->done, who, memory_order_acq_rel) & other)
    record_free(r);
}

/* ---- the index (under c->lock) ------------------------------------------ */

static unsigned bucket(const cache *c, unsigned key) {
  return (key * 0x9e3779b1u) >> 7 & (c->nhash - 1);
}

static record *find(const cache *c, unsigned key) {
  record *r = c->hash[bucket(c, key)];
  while (r && r->key != key)
    r = r->next;
  return r;
}

static void link_record(cache *c, record *r) {
  if (c->npage >= c->nhash) { /* grow; if that fails, chains get longer */
    record **h = calloc((size_t)c->nhash * 2, sizeof *h);
    if (h) {
      unsigned old = c->nhash;
      record **was = c->hash;
      c->hash = h;
      c->nhash = old * 2;
      for (unsigned i = 0; i < old; i++)
        for (record *q = was[i], *next; q; q = next) {
          next = q->next;
          q->next = h[bucket(c, q->key)];
          h[bucket(c, q->key)] = q;
        }
      free(was);
    }
  }
  record **head = &c->hash[bucket(c, r->key)];
  r->next = *head;
  *head = r;
  r->linked = true;
  c->npage++;
}

static void unlink_record(cache *c, record *r) {
  record **at = &c->hash[bucket(c, r->key)];
  while (*at != r)
    at = &(*at)->next;
  *at = r->next;
  r->linked = false;
  c->npage--;
}

/* ---- dropping pages (owner) --------------------------------------------- */

/* What the owner needs of a record it unlinked, copied under the mutex
 * (the flags are the owner's; the record stays alive until it is done). */
typedef struct dropped {
  record *r;
  bool mm_pinned, sql_pinned;
} dropped;

static dropped unlink_for_drop(cache *c, record *r) {
  dropped d = {r, r->mm_pinned, r->sql_pinned};
  unlink_record(c, r);
  return d;
}

/* Release a page whose record its owner unlinked. */
static void drop(cache *c, dropped d) {
  if (d.sql_pinned)
    c->npinned--;
  if (d.mm_pinned) {
    mm_status st = mm_page_unpin(d.r->pg);
    assert(st == MM_OK); /* our pin: nobody else unpins it */
    (void)st;
  }
  mm_status st = mm_page_release(d.r->pg);
  assert(st == MM_OK || st == MM_ENOENT); /* only we pin our pages */
  if (st == MM_OK)
    record_free(d.r); /* no callback will come */
  else
    record_done(d.r, DONE_OWNER); /* its callback has, or will */
}

/* Drop every record for which @pick says so, BATCH at a time. */
static void drop_where(cache *c, bool (*pick)(const record *r, unsigned arg),
                       unsigned arg) {
  for (;;) {
    dropped d[BATCH];
    int n = 0;
    pthread_mutex_lock(&c->lock);
    for (unsigned i = 0; i < c->nhash && n < BATCH; i++)
      for (record *r = c->hash[i], *next; r && n < BATCH; r = next) {
        next = r->next;
        if (pick(r, arg))
          d[n++] = unlink_for_drop(c, r);
      }
    pthread_mutex_unlock(&c->lock);
    for (int i = 0; i < n; i++)
      drop(c, d[i]);
    if (n < BATCH)
      return;
  }
}

static bool key_at_or_past(const record *r, unsigned limit) {
  return r->key >= limit;
}

static bool unpinned(const record *r, unsigned arg) {
  (void)arg;
  return !r->mm_pinned;
}

/* ---- the eviction callback ---------------------------------------------- */

bool mm_sqlite_evicted(uint64_t page_id, void *data, size_t bytes) {
  (void)data, (void)bytes;
  if (!(page_id & ID_TAG))
    return false;
  record *r = record_of(page_id);
  cache *c = r->c;
  pthread_mutex_lock(&c->lock);
  bool linked = r->linked;
  if (linked)
    unlink_record(c, r);
  pthread_mutex_unlock(&c->lock);
  atomic_fetch_add_explicit(&ad.evicted, 1, memory_order_relaxed);
  if (linked)
    record_free(r); /* the owner no longer knows it */
  else
    record_done(r, DONE_CALLBACK); /* the owner unlinked it: meet it */
  return true;
}

void mm_sqlite_on_evict(void *ctx, uint64_t page_id, void *data, size_t bytes) {
  (void)ctx;
  (void)mm_sqlite_evicted(page_id, data, bytes);
}

/* ---- sqlite3_pcache_methods2 -------------------------------------------- */

/* SQLite's soft heap limit, unless the program set one (SQLite is
 * initialised by now: sqlite3_soft_heap_limit64 would initialise it). */
static void set_soft_heap_limit(void) {
  if (ad.soft_heap_limit < 0 || sqlite3_soft_heap_limit64(-1) > 0)
    return;
  int64_t limit = ad.soft_heap_limit;
  if (limit == 0) {
    mm_stats s;
    mm_get_stats(ad.mm, &s);
    limit = (int64_t)s.execution_pool_bytes;
  }
  (void)sqlite3_soft_heap_limit64(limit);
}

static sqlite3_pcache *pc_create(int sz_page, int sz_extra, int purgeable) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  (void)pthread_once(&once, set_soft_heap_limit);
  cache *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->nhash = 64;
  c->hash = calloc(c->nhash, sizeof *c->hash);
  if (!c->hash || pthread_mutex_init(&c->lock, NULL) != 0) {
    free(c->hash);
    free(c);
    return NULL;
  }
  atomic_init(&c->refs, 1);
  /* Three quarters of the storage pool, of which each cache may pin as
   * much; the rest is for pages made while SQLite cannot spill. */
  c->pin_cap = (unsigned)(ad.storage_bytes / 4 * 3 / (size_t)sz_page);
  if (c->pin_cap < 16)
    c->pin_cap = 16;
  c->sz_page = sz_page;
  c->sz_extra = sz_extra;
  c->purgeable = purgeable != 0;
  return (sqlite3_pcache *)c;
}

static void pc_cachesize(sqlite3_pcache *pc, int n) {
  ((cache *)pc)->max = n > 0 ? (unsigned)n : 0;
}

/* Past max while a page is refused (see "When the budget is full"), but
 * never so far that SQLite's count of the cache's bytes, pages times a
 * page's size with its headers in an int (sqlite3PagerMemUsed), could
 * overflow. */
static int pc_pagecount(sqlite3_pcache *pc) {
  cache *c = (cache *)pc;
  pthread_mutex_lock(&c->lock);
  unsigned n = c->npage;
  pthread_mutex_unlock(&c->lock);
  unsigned most =
      INT_MAX / (2 * ((unsigned)c->sz_page + (unsigned)c->sz_extra + 256));
  if (c->full && n <= c->max)
    n = c->max < most ? c->max + 1 : most > n ? most : n;
  return (int)n;
}

/* A new page for @key, pinned, or NULL. */
static sqlite3_pcache_page *create(cache *c, unsigned key, int64_t timeout) {
  size_t size = record_size(c);
  if (!record_charge(c, size))
    goto declined;
  record *r = malloc(size);
  if (!r || ((uintptr_t)r & ~ADDR_MASK) != 0) { /* not addressable by id */
    free(r);
    (void)mm_release_execution(ad.mm, ad.record_id, size);
    goto failed;
  }
  mm_status st = MM_EEXIST;
  for (int tries = 0; st == MM_EEXIST && tries < 16; tries++) {
    uint64_t id = record_id(
        r, atomic_fetch_add_explicit(&ad.seq, 1, memory_order_relaxed));
    st = mm_page_alloc(ad.mm, id, (size_t)c->sz_page, timeout, &r->pg);
  }
  if (st != MM_OK) {
    free(r);
    (void)mm_release_execution(ad.mm, ad.record_id, size);
    if (st == MM_ENOMEM)
      goto declined;
    goto failed;
  }
  c->full = false;
  r->base.pBuf = mm_page_data(r->pg);
  r->base.pExtra = (char *)r + RECORD_HDR;
  memset(r->base.pExtra, 0, (size_t)c->sz_extra); /* first pointer: fresh */
  r->c = c;
  r->key = key;
  r->mm_pinned = true; /* born pinned */
  r->sql_pinned = true;
  atomic_init(&r->done, 0);
  atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
  c->npinned++;
  pthread_mutex_lock(&c->lock);
  link_record(c, r);
  pthread_mutex_unlock(&c->lock);
  return &r->base;

declined: /* no room in the budget */
  if (timeout == MM_NO_WAIT) {
    c->full = true; /* SQLite spills, then asks with createFlag 2 */
    return NULL;
  }
failed:
  atomic_fetch_add_explicit(&ad.fetch_failed, 1, memory_order_relaxed);
  return NULL;
}

static sqlite3_pcache_page *pc_fetch(sqlite3_pcache *pc, unsigned key,
                                     int create_flag) {
  cache *c = (cache *)pc;
  /* createFlag 1 comes only while SQLite has dirty pages, which it keeps
   * pinned.  Once SQLite holds cache_size pages, a page it does not hold
   * yet -- new, or cached and unpinned -- is refused: SQLite then spills a
   * dirty page and asks again with 2.  SQLite's own cache bounds the dirty
   * pages by holding no more than cache_size pages at all; this cache
   * keeps clean pages beyond that as long as the budget allows, so it must
   * bound the pins instead, or a transaction that revisits cached pages
   * would pin the whole budget.  They are bound by pin_cap too, whatever
   * cache_size says: a cache that pinned all of storage would leave none
   * for another (a temporary database, a second connection), which has
   * no dirty page of its own to spill. */
  unsigned cap = c->max && c->max < c->pin_cap ? c->max : c->pin_cap;
  bool spill_first = create_flag == 1 && c->npinned >= cap;
  /* The pin is taken under the mutex (a pin never evicts, so never calls
   * back): a linked record is alive, and its id is still its own. */
  pthread_mutex_lock(&c->lock);
  record *r = find(c, key);
  if (r && !r->sql_pinned && spill_first) {
    pthread_mutex_unlock(&c->lock);
    c->full = true;
    return NULL;
  }
  bool hit = r && (r->mm_pinned || mm_page_pin(r->pg) == MM_OK);
  dropped d = {NULL, false, false};
  if (hit) {
    r->mm_pinned = true;
  } else if (r) {
    /* Being evicted (or claimed by an eviction that may yet back out):
     * treat it as gone, and make sure it goes. */
    d = unlink_for_drop(c, r);
  }
  pthread_mutex_unlock(&c->lock);

  if (hit) { /* pinned: the record is ours to touch */
    if (create_flag == 2)
      c->full = false; /* the refusal that made SQLite spill is over */
    if (!r->sql_pinned) {
      r->sql_pinned = true;
      c->npinned++;
    }
    atomic_fetch_add_explicit(&ad.hits, 1, memory_order_relaxed);
    return &r->base;
  }
  if (r)
    drop(c, d);
  atomic_fetch_add_explicit(&ad.misses, 1, memory_order_relaxed);
  if (create_flag == 0)
    return NULL;
  if (create_flag == 1 && spill_first) {
    c->full = true;
    return NULL;
  }
  return create(c, key, create_flag == 1 ? MM_NO_WAIT : ad.fetch_timeout);
}

static void pc_unpin(sqlite3_pcache *pc, sqlite3_pcache_page *page,
                     int discard) {
  cache *c = (cache *)pc;
  record *r = (record *)page; /* base is its first member */
  if (discard) {
    pthread_mutex_lock(&c->lock);
    dropped d = unlink_for_drop(c, r);
    pthread_mutex_unlock(&c->lock);
    drop(c, d);
    return;
  }
  if (r->sql_pinned) {
    r->sql_pinned = false;
    c->npinned--;
  }
  if (c->purgeable && r->mm_pinned) {
    r->mm_pinned = false; /* before the unpin: after it, r may be freed */
    mm_status st = mm_page_unpin(r->pg); /* (which reads r->pg first) */
    assert(st == MM_OK);
    (void)st;
  }
}

static void pc_rekey(sqlite3_pcache *pc, sqlite3_pcache_page *page,
                     unsigned old_key, unsigned new_key) {
  cache *c = (cache *)pc;
  record *r = (record *)page;
  (void)old_key;
  pthread_mutex_lock(&c->lock);
  record *other = find(c, new_key);
  dropped d = {NULL, false, false};
  bool discard = other && other != r;
  if (discard)
    d = unlink_for_drop(c, other);
  unlink_record(c, r);
  r->key = new_key;
  link_record(c, r);
  pthread_mutex_unlock(&c->lock);
  if (discard)
    drop(c, d);
}

static void pc_truncate(sqlite3_pcache *pc, unsigned limit) {
  drop_where((cache *)pc, key_at_or_past, limit);
}

static void pc_shrink(sqlite3_pcache *pc) {
  drop_where((cache *)pc, unpinned, 0);
}

static void pc_destroy(sqlite3_pcache *pc) {
  cache *c = (cache *)pc;
  drop_where(c, key_at_or_past, 0);
  cache_unref(c); /* freed with its last record */
}

/* ---- installing ---------------------------------------------------------- */

/* The sorter's run, in pages, once the heap is nearly full: a 64th of the
 * budget (of 4 KiB pages), between SQLite's least useful run (10) and its
 * default (250).  Its records cost about twice their payload in blocks,
 * so a run of SQLite's default size would be half of a small budget. */
static unsigned pma_pages(mm_t *mm) {
  mm_stats s;
  mm_get_stats(mm, &s);
  size_t pages = s.total_bytes / 64 / 4096;
  return pages < 10 ? 10 : pages > 250 ? 250 : (unsigned)pages;
}

int mm_sqlite_install(mm_t *mm, const mm_sqlite_options *opt) {
  static const mm_sqlite_options defaults;
  if (!opt)
    opt = &defaults;
  /* With memory statistics on (the soft heap limit needs them) SQLite
   * calls xMalloc under its global mutex: an xMalloc that waited would
   * hold every other allocation, and every free that could end its wait. */
  if (!mm || opt->malloc_timeout_ns < -1 || opt->fetch_timeout_ns < -1 ||
      opt->soft_heap_limit < -1 ||
      (opt->malloc_timeout_ns != 0 && !opt->keep_sqlite_malloc &&
       opt->soft_heap_limit != -1))
    return SQLITE_MISUSE;
  bool no = false;
  if (!atomic_compare_exchange_strong(&ad.installed, &no, true))
    return SQLITE_MISUSE;
  ad.mm = mm;
  ad.heap_id = opt->exec_id ? opt->exec_id : DEFAULT_EXEC_ID;
  ad.record_id = ad.heap_id + 1;
  ad.malloc_timeout = opt->malloc_timeout_ns;
  ad.fetch_timeout =
      opt->fetch_timeout_ns ? opt->fetch_timeout_ns : DEFAULT_FETCH_TIMEOUT;
  ad.soft_heap_limit = opt->keep_sqlite_malloc ? -1 : opt->soft_heap_limit;
  mm_stats s;
  mm_get_stats(mm, &s);
  ad.storage_bytes = s.storage_pool_bytes;
  ad.heap = NULL;

  static const sqlite3_mem_methods heap = {
      .xMalloc = heap_malloc,
      .xFree = heap_free,
      .xRealloc = heap_realloc,
      .xSize = heap_size,
      .xRoundup = heap_roundup,
      .xInit = nothing_to_init,
      .xShutdown = nothing_to_shut_down,
  };
  static const sqlite3_pcache_methods2 pcache = {
      .iVersion = 1,
      .xInit = nothing_to_init,
      .xShutdown = nothing_to_shut_down,
      .xCreate = pc_create,
      .xCachesize = pc_cachesize,
      .xPagecount = pc_pagecount,
      .xFetch = pc_fetch,
      .xUnpin = pc_unpin,
      .xRekey = pc_rekey,
      .xTruncate = pc_truncate,
      .xDestroy = pc_destroy,
      .xShrink = pc_shrink,
  };

  /* Each sqlite3_config fails the same way once SQLite is initialised, so
   * the first one tells; a later failure puts back what changed. */
  sqlite3_pcache_methods2 old_pcache;
  int rc = sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &old_pcache);
  if (rc == SQLITE_OK)
    rc = sqlite3_config(SQLITE_CONFIG_PCACHE2, &pcache);
  if (rc == SQLITE_OK && !opt->keep_sqlite_malloc) {
    if (mm_consumer_open(mm, ad.heap_id, &ad.heap) != MM_OK)
      rc = SQLITE_NOMEM;
    else if ((rc = sqlite3_config(SQLITE_CONFIG_MALLOC, &heap)) != SQLITE_OK)
      (void)mm_consumer_close(ad.heap);
    if (rc != SQLITE_OK)
      (void)sqlite3_config(SQLITE_CONFIG_PCACHE2, &old_pcache);
  }
  /* The soft heap limit needs SQLite's memory statistics, and the sorter
   * heeds it only with a record per allocation (SMALL_MALLOC). */
  if (rc == SQLITE_OK && ad.soft_heap_limit >= 0) {
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 1);
    (void)sqlite3_config(SQLITE_CONFIG_SMALL_MALLOC, 1);
    (void)sqlite3_config(SQLITE_CONFIG_PMASZ, pma_pages(mm));
  } else if (rc == SQLITE_OK && !opt->keep_memstatus)
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  if (rc != SQLITE_OK) {
    ad.mm = NULL;
    ad.heap = NULL;
    atomic_store(&ad.installed, false);
  }
  return rc;
}

void mm_sqlite_get_stats(mm_sqlite_stats *out) {
  if (!out)
    return;
  out->fetch_hits = atomic_load_explicit(&ad.hits, memory_order_relaxed);
  out->fetch_misses = atomic_load_explicit(&ad.misses, memory_order_relaxed);
  out->evicted_pages = atomic_load_explicit(&ad.evicted, memory_order_relaxed);
  out->fetch_failed =
      atomic_load_explicit(&ad.fetch_failed, memory_order_relaxed);
  out->malloc_failed =
      atomic_load_explicit(&ad.malloc_failed, memory_order_relaxed);
}

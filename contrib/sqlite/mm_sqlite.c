/*
 * mm_sqlite.c -- SQLite's page cache and heap on a memory_manager budget.
 *
 * The page cache (sqlite3_pcache_methods2)
 *
 * Each cached page is two pieces:
 *
 *   the page buffer (pBuf)   a storage page of the manager, exactly
 *                            szPage bytes (mm_storage_alloc), pinned while
 *                            SQLite holds it, evictable once unpinned;
 *   its record (pg)          from the C heap, charged to the adapter's
 *                            record exec id: SQLite's pcache_page, our
 *                            fields, then SQLite's szExtra bytes (pExtra).
 *
 * Keeping the record apart keeps the storage page at exactly szPage (a
 * 4 KiB SQLite page is one 4 KiB storage page, not two).  The manager's
 * page id names the record: bit 63 set, a sequence number in bits 48-62,
 * the record's address in bits 0-47.  So the eviction callback, which is
 * given the id, finds the record without any lookup.  (The sequence
 * number only matters when a freed record's address is reused while the
 * manager still holds its old id for a moment: mm_storage_alloc answers
 * MM_EEXIST and we take the next number.)
 *
 * A cache indexes its records by key in a hash table under a mutex.  The
 * mutex is held for a few pointer updates and a pin, and never across a
 * manager call that may evict: the eviction callback takes it on whatever
 * thread evicts, and that thread may be inside any cache's xFetch, so
 * holding it across such a call could deadlock two caches evicting each
 * other's pages.  (mm_pin_storage never evicts and never waits.)
 *
 * Who frees a record.  The manager ends every page in exactly one of two
 * ways: a release that answers MM_OK, or one eviction callback (see
 * mm_release_storage).  A linked record (in its cache's index) is freed by
 * the callback, which unlinks it.  A record the owner unlinked (discard,
 * truncate, shrink, rekey, a page that vanished under a pin) is released
 * by the owner: MM_OK, and the owner frees it; MM_ENOENT, and the
 * eviction callback has run or will, so the two meet on the record's
 * `done` word and whoever comes second frees it.  So a record is never
 * freed while the owner may still release its id, and its id can never
 * be reused under that release.
 *
 * Memory a record is read from: under the cache's mutex, every linked
 * record is alive (the callback unlinks before it frees).  Outside it, the
 * owner touches a record only while it holds the manager's pin on its
 * page (pinned pages are not evicted), or through its id alone.
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
 * and it touches only the index, the page count and the record's `done`.
 *
 * The heap (sqlite3_mem_methods): mm_exec_alloc on one exec id, with a
 * 16-byte header that remembers the size for xSize.
 */
#include "mm_sqlite.h"

#include <sqlite3.h>

#include <assert.h>
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

static struct adapter {
  mm_t *mm;
  uint64_t heap_id, record_id;
  int64_t malloc_timeout, fetch_timeout;
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
  if (mm_exec_alloc(ad.mm, ad.heap_id, size + HEAP_HDR, ad.malloc_timeout,
                    &b) != MM_OK) {
    atomic_fetch_add_explicit(&ad.malloc_failed, 1, memory_order_relaxed);
    return NULL;
  }
  *(uint64_t *)b = size;
  return (char *)b + HEAP_HDR;
}

static void heap_free(void *p) {
  if (p)
    (void)mm_exec_free(ad.mm, ad.heap_id, (char *)p - HEAP_HDR);
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
  uint64_t id;         /* the manager's page id */
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
  unsigned npinned; /* pages SQLite holds (owner only) */
  unsigned npage;   /* records in the index (under lock) */
  unsigned nhash;   /* a power of two (under lock) */
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
    pthread_mutex_destroy(&c->lock);
    free(c->hash);
    free(c);
  }
}

static void record_free(record *r) {
  cache *c = r->c;
  size_t size = record_size(c);
  free(r);
  (void)mm_release_execution(ad.mm, ad.record_id, size);
  cache_unref(c);
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

/* What the owner needs of a record it unlinked, copied under the mutex:
 * once the mutex is dropped, only the id may be used. */
typedef struct dropped {
  uint64_t id;
  bool mm_pinned, sql_pinned;
} dropped;

static dropped unlink_for_drop(cache *c, record *r) {
  dropped d = {r->id, r->mm_pinned, r->sql_pinned};
  unlink_record(c, r);
  return d;
}

/* Release a page whose record its owner unlinked. */
static void drop(cache *c, dropped d) {
  if (d.sql_pinned)
    c->npinned--;
  if (d.mm_pinned) {
    mm_status st = mm_unpin_storage(ad.mm, d.id);
    assert(st == MM_OK); /* our pin: nobody else unpins it */
    (void)st;
  }
  mm_status st = mm_release_storage(ad.mm, d.id);
  assert(st == MM_OK || st == MM_ENOENT); /* only we pin our pages */
  if (st == MM_OK)
    record_free(record_of(d.id)); /* no callback will come */
  else
    record_done(record_of(d.id), DONE_OWNER); /* its callback has, or will */
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

static sqlite3_pcache *pc_create(int sz_page, int sz_extra, int purgeable) {
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
  c->sz_page = sz_page;
  c->sz_extra = sz_extra;
  c->purgeable = purgeable != 0;
  return (sqlite3_pcache *)c;
}

static void pc_cachesize(sqlite3_pcache *pc, int n) {
  ((cache *)pc)->max = n > 0 ? (unsigned)n : 0;
}

static int pc_pagecount(sqlite3_pcache *pc) {
  cache *c = (cache *)pc;
  pthread_mutex_lock(&c->lock);
  int n = (int)c->npage;
  pthread_mutex_unlock(&c->lock);
  return n;
}

/* A new page for @key, pinned, or NULL. */
static sqlite3_pcache_page *create(cache *c, unsigned key, int64_t timeout) {
  size_t size = record_size(c);
  if (mm_acquire_execution(ad.mm, ad.record_id, size, MM_NO_WAIT) != MM_OK)
    goto failed;
  record *r = malloc(size);
  if (!r || ((uintptr_t)r & ~ADDR_MASK) != 0) { /* not addressable by id */
    free(r);
    goto uncharge;
  }
  void *data = NULL;
  mm_status st = MM_EEXIST;
  for (int tries = 0; st == MM_EEXIST && tries < 16; tries++) {
    r->id = record_id(
        r, atomic_fetch_add_explicit(&ad.seq, 1, memory_order_relaxed));
    st = mm_storage_alloc(ad.mm, r->id, (size_t)c->sz_page, timeout, &data);
  }
  if (st != MM_OK) {
    free(r);
    goto uncharge;
  }
  r->base.pBuf = data;
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

uncharge:
  (void)mm_release_execution(ad.mm, ad.record_id, size);
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
   * would pin the whole budget. */
  bool spill_first = create_flag == 1 && c->max && c->npinned >= c->max;
  /* The pin is taken under the mutex (a pin never evicts, so never calls
   * back): a linked record is alive, and its id is still its own. */
  pthread_mutex_lock(&c->lock);
  record *r = find(c, key);
  if (r && !r->sql_pinned && spill_first) {
    pthread_mutex_unlock(&c->lock);
    return NULL;
  }
  bool hit = r && (r->mm_pinned || mm_pin_storage(ad.mm, r->id, NULL) == MM_OK);
  dropped d = {0, false, false};
  if (hit) {
    r->mm_pinned = true;
  } else if (r) {
    /* Being evicted (or claimed by an eviction that may yet back out):
     * treat it as gone, and make sure it goes. */
    d = unlink_for_drop(c, r);
  }
  pthread_mutex_unlock(&c->lock);

  if (hit) { /* pinned: the record is ours to touch */
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
  if (create_flag == 1)
    return spill_first ? NULL : create(c, key, MM_NO_WAIT);
  return create(c, key, ad.fetch_timeout);
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
    uint64_t id = r->id;
    r->mm_pinned = false; /* before the unpin: after it, r may be freed */
    mm_status st = mm_unpin_storage(ad.mm, id);
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
  dropped d = {0, false, false};
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

int mm_sqlite_install(mm_t *mm, const mm_sqlite_options *opt) {
  static const mm_sqlite_options defaults;
  if (!opt)
    opt = &defaults;
  if (!mm || opt->malloc_timeout_ns < -1 || opt->fetch_timeout_ns < -1)
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
    rc = sqlite3_config(SQLITE_CONFIG_MALLOC, &heap);
    if (rc != SQLITE_OK)
      (void)sqlite3_config(SQLITE_CONFIG_PCACHE2, &old_pcache);
  }
  if (rc == SQLITE_OK && !opt->keep_memstatus)
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  if (rc != SQLITE_OK) {
    ad.mm = NULL;
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

/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * alloc.c -- real memory on top of the books: blocks for consumers and
 * exec ids (mm_consumer_alloc, mm_exec_alloc ...), pages (mm_storage_alloc).
 *
 * Every block is charged before it exists and uncharged after it is gone,
 * at the size the backing allocator really hands out (its size class), so
 * that the memory allocated is at most the memory charged, plus what the
 * caches park:
 *
 *   alloc: charge the consumer (from its spare quota, or the front door:
 *          wait, evict ...) -> make the block -> tag it with the
 *          consumer;  a failed allocation uncharges.
 *   free:  take the tag (one exchange decides: a double free finds 0) ->
 *          free the block -> uncharge the consumer it names.
 *
 * No record per block: the tag of a block's first 16 bytes (backing.c's
 * table beside the arena's reservation) is the 32-bit key of the consumer
 * it was charged to, 0 while no live block starts there.  So a free
 * refuses, without reading the memory it points to, a pointer outside the
 * arena's reservation or not 16-byte aligned; and, from the tag alone, a
 * pointer that is no live block's start (into a block, freed already, a
 * page's memory) or another open consumer's block.  A block whose
 * consumer was closed (its charge returned with the rest) is an orphan:
 * its free gives the memory back and touches no books.  A storage page's
 * block hangs off its page record, untagged: the page is charged and left
 * pending, given its block, and only then made live, born pinned.
 */
#include "mm_internal.h"

#include <string.h>

/* A live block's tag: its consumer's key (MMI_KEY_BITS) and its class in
 * the caches (TAG_NONE: a class no cache keeps; the arena knows its
 * size). */
#define TAG_CLASS_BITS (32 - MMI_KEY_BITS)
#define TAG_NONE       ((1u << TAG_CLASS_BITS) - 1)
_Static_assert(MMI_TCACHE_CLASSES < TAG_NONE, "a class does not fit a tag");

static inline uint32_t tag_make(uint32_t key, unsigned cls) {
  return key << TAG_CLASS_BITS | (cls == MMI_TCACHE_NONE ? TAG_NONE : cls);
}
static inline uint32_t tag_key(uint32_t tag) { return tag >> TAG_CLASS_BITS; }
static inline unsigned tag_class(uint32_t tag) {
  unsigned cls = tag & TAG_NONE;
  return cls == TAG_NONE ? MMI_TCACHE_NONE : cls;
}

/* A grant whose block the allocator could not make is a decline after
 * all (its charge was rolled back). */
static void count_undone_grant(mm_t *mm, const mmi_grant *g) {
  mmi_uncount(mm, MMI_GRANTED, 1);
  if (g->inside)
    mmi_uncount(mm, MMI_HELD_GRANTED, 1);
  mmi_count(mm, MMI_DECLINED, 1);
}

/* Return @bytes to the consumer tagged @key, if it is open. */
static void release_to(mm_t *mm, uint32_t key, uint64_t bytes) {
  mmi_rcu_read_lock();
  struct mm_consumer *c = mmi_consumer_by_key(mm, key);
  if (c)
    (void)mmi_consumer_release(c, bytes, true);
  mmi_rcu_read_unlock();
}

/* The size a block of @size bytes is charged at, and its class in the
 * caches; size 0 if no request of that size may be made. */
typedef struct block_class {
  uint64_t size;
  unsigned cls;
} block_class;

static block_class class_of(const mm_t *mm, size_t size) {
  block_class k = {0, MMI_TCACHE_NONE};
  if (size == 0 || size > mm->cfg.max_execution_request)
    return k;
  k.cls = mmi_tcache_class(&mm->caches, size);
  uint64_t s = k.cls != MMI_TCACHE_NONE ? mm->caches.class_size[k.cls]
                                        : mmi_backing_size(&mm->backing, size);
  k.size = s <= mm->pool.total ? s : 0; /* else never granted */
  return k;
}

static void *make(mm_t *mm, block_class k) {
  mmi_tcaches *s = &mm->caches;
  void *p = k.cls != MMI_TCACHE_NONE
                ? mmi_tcache_alloc(s, mmi_tcache_mine(s), k.cls)
                : mmi_backing_alloc(&mm->backing, k.size);
  if (p)
    mmi_backing_hand_out(p, k.size);
  return p;
}

/* A block of class @k charged to @c, or (@c NULL) to @exec_id's own
 * consumer: charge, make, tag. */
static mm_status block_alloc(mm_t *mm, struct mm_consumer *c, uint64_t exec_id,
                             block_class k, int64_t timeout_ns, void **out) {
  mmi_grant grant = {.block_size = k.size};
  mm_status st = c ? mmi_consumer_acquire(c, k.size, timeout_ns, &grant)
                   : mmi_exec_charge(mm, exec_id, k.size, timeout_ns, &grant);
  if (st != MM_OK)
    goto out;
  if (grant.inside)
    mmi_test_point(mm, MMI_TP_HELD_GRANTED);
  /* A grant that evicted made the block already; else make it now, and if
   * the allocator fails roll every charge back (nothing was evicted). */
  void *p = grant.block ? grant.block : make(mm, k);
  if (!p) {
    release_to(mm, grant.key, k.size);
    count_undone_grant(mm, &grant);
    st = MM_ENOMEM;
    goto out;
  }
  /* release: whoever takes the tag sees the block complete */
  mm_store_release_u32(mmi_backing_tag(&mm->backing, p),
                       tag_make(grant.key, k.cls));
  *out = p;
out:
  if (grant.inside)
    mmi_held_leave(mm); /* the last touch of @mm */
  return st;
}

/* Take @tag, read from block @p's tag, if it is still there: true if
 * this call won the block.  A free decides whose block it is from the tag
 * it read, and only then takes it -- a refused free never clears a live
 * block's tag, even for a moment (a free by its owner racing with it
 * would find none). */
static bool take(mm_t *mm, void *p, uint32_t tag) {
  /* acq_rel: one free wins a block; it sees the allocation's writes */
  return mm_cas_acq_rel_u32(mmi_backing_tag(&mm->backing, p), &tag, 0);
}

/* Block @p's tag (acquire: the allocation is complete); 0 if @p is not
 * the manager's or no live block starts there (@p untouched). */
static uint32_t peek(mm_t *mm, const void *p) {
  if (!mmi_backing_owns(&mm->backing, p))
    return 0;
  return mm_load_acquire_u32(mmi_backing_tag(&mm->backing, p));
}

/* Free block @p whose @tag was taken: memory first, then the charge, to
 * @owner (the consumer the tag names, open) or to none (an orphan's
 * charge went back with its consumer's books). */
static void block_free(mm_t *mm, void *p, uint32_t tag,
                       struct mm_consumer *owner) {
  unsigned cls = tag_class(tag);
  uint64_t size = cls != MMI_TCACHE_NONE ? mm->caches.class_size[cls]
                                         : mmi_backing_usable(&mm->backing, p);
  mmi_backing_take_back(p, size);
  if (cls != MMI_TCACHE_NONE) {
    mmi_tcaches *s = &mm->caches;
    mmi_tcache_free(s, mmi_tcache_mine(s), p, cls);
  } else {
    mmi_backing_free(&mm->backing, p, size);
  }
  if (owner)
    (void)mmi_consumer_release(owner, size, true);
}

/*
 * The common case, inline: a block of a class the caches keep, charged to
 * @c from its spare quota and served from this thread's cache.  Either
 * does it all (and counts the grant) or changes nothing, for the general
 * path to take over.
 */
static inline __attribute__((always_inline)) void *
alloc_fast(mm_t *mm, struct mm_consumer *c, size_t size) {
  mmi_tcaches *s = &mm->caches;
  if (size == 0)
    return NULL;
  unsigned cls = mmi_tcache_class(s, size);
  mmi_tcache *tc;
  if (cls == MMI_TCACHE_NONE || size > mm->cfg.max_execution_request ||
      !(tc = mmi_tcache_mine(s)))
    return NULL;
  uint32_t bytes = s->class_size[cls];
  if (bytes > mm->pool.total || !mmi_consumer_take_spare(c, bytes))
    return NULL;
  void *p = mmi_tcache_alloc(s, tc, cls);
  if (!p) {
    (void)mmi_consumer_release(c, bytes, true); /* the general path fails */
    return NULL;
  }
  mmi_count_here(tc, MMI_GRANTED, 1);
  mmi_backing_hand_out(p, bytes);
  /* release: whoever takes the tag sees the block complete */
  mm_store_release_u32(mmi_backing_tag(&mm->backing, p),
                       tag_make((uint32_t)c->node.key, cls));
  return p;
}

/* Free @p if it is a live block of @c's of a cached class; false (and
 * nothing changed) for the general path to decide otherwise. */
static inline __attribute__((always_inline)) bool
free_fast(mm_t *mm, struct mm_consumer *c, void *p) {
  if (!mmi_backing_owns(&mm->backing, p))
    return false;
  mm_atomic_u32 *t = mmi_backing_tag(&mm->backing, p);
  uint32_t tag = mm_load_relaxed_u32(t);
  unsigned cls = tag_class(tag);
  /* acq_rel: one free wins a block; it sees the allocation's writes */
  if (tag_key(tag) != c->node.key || cls == MMI_TCACHE_NONE ||
      !mm_cas_acq_rel_u32(t, &tag, 0))
    return false;
  mmi_tcaches *s = &mm->caches;
  uint32_t bytes = s->class_size[cls];
  mmi_backing_take_back(p, bytes);
  mmi_tcache_free(s, mmi_tcache_mine(s), p, cls);
  if (!mmi_consumer_release_fast(c, bytes))
    (void)mmi_consumer_release(c, bytes, true);
  return true;
}

mm_status mm_exec_alloc(mm_t *mm, uint64_t exec_id, size_t size,
                        int64_t timeout_ns, void **out) {
  if (!mm || !out || !mmi_timeout_valid(timeout_ns) ||
      mmi_in_evict_callback(mm))
    return MM_EINVAL;
  bool put;
  struct mm_consumer *own = mmi_exec_own_here(mm, exec_id, &put);
  void *p = own ? alloc_fast(mm, own, size) : NULL;
  if (put && own)
    mmi_consumer_put(own);
  if (p) {
    *out = p;
    return MM_OK;
  }
  block_class k = class_of(mm, size);
  if (!k.size)
    return MM_EINVAL; /* its size class could never be granted */
  return block_alloc(mm, NULL, exec_id, k, timeout_ns, out);
}

/* What free_of_id did. */
enum { REFUSED, FREED, RETRY };

/* Free block @p of @exec_id's whose tag read @tag, if it is not another
 * id's open consumer's: the id's own (@own), a handle's of the same id,
 * or an orphan's.  REFUSED (untouched) if it is another id's; RETRY if
 * the tag changed meanwhile (read it again). */
static int free_of_id(mm_t *mm, uint64_t exec_id, struct mm_consumer *own,
                      void *p, uint32_t tag) {
  if (own && own->node.key == tag_key(tag)) {
    if (!take(mm, p, tag))
      return RETRY;
    block_free(mm, p, tag, own);
    return FREED;
  }
  int did = REFUSED;
  mmi_rcu_read_lock();
  struct mm_consumer *c = mmi_consumer_by_key(mm, tag_key(tag));
  if (!c || c->exec_id == exec_id) {
    did = RETRY;
    if (take(mm, p, tag)) {
      block_free(mm, p, tag, c); /* (c NULL: an orphan, memory only) */
      did = FREED;
    }
  }
  mmi_rcu_read_unlock();
  return did;
}

mm_status mm_exec_free(mm_t *mm, uint64_t exec_id, void *ptr) {
  if (!mm || !ptr)
    return MM_EINVAL;
  bool put;
  int did = FREED;
  struct mm_consumer *own = mmi_exec_own_here(mm, exec_id, &put);
  if (!own || !free_fast(mm, own, ptr)) {
    uint32_t tag;
    do
      did = (tag = peek(mm, ptr)) ? free_of_id(mm, exec_id, own, ptr, tag)
                                  : REFUSED; /* no live block starts here */
    while (did == RETRY);
  }
  if (put && own)
    mmi_consumer_put(own);
  return did == FREED ? MM_OK : MM_EINVAL;
}

mm_status mm_consumer_alloc(mm_consumer *c, size_t size, int64_t timeout_ns,
                            void **out) {
  if (!c || !out || !mmi_timeout_valid(timeout_ns) ||
      mmi_in_evict_callback(c->mm))
    return MM_EINVAL;
  void *p = alloc_fast(c->mm, c, size);
  if (p) {
    *out = p;
    return MM_OK;
  }
  block_class k = class_of(c->mm, size);
  if (!k.size)
    return MM_EINVAL;
  return block_alloc(c->mm, c, c->exec_id, k, timeout_ns, out);
}

mm_status mm_consumer_calloc(mm_consumer *c, size_t n, size_t size,
                             int64_t timeout_ns, void **out) {
  if (!c || !out || n == 0 || size == 0 || n > SIZE_MAX / size)
    return MM_EINVAL;
  mm_status st = mm_consumer_alloc(c, n * size, timeout_ns, out);
  if (st == MM_OK)
    memset(*out, 0, n * size);
  return st;
}

/* The tag of @p if it is a live block of @c's, read (not taken); 0
 * otherwise (@p untouched).  With @orphan, a block of a closed consumer's
 * is taken and its tag put in *@orphan. */
static uint32_t own_tag(mm_consumer *c, void *p, uint32_t *orphan) {
  mm_t *mm = c->mm;
  for (;;) {
    uint32_t tag = peek(mm, p);
    if (!tag || tag_key(tag) == c->node.key)
      return tag;
    if (!orphan)
      return 0;
    mmi_rcu_read_lock();
    bool open = mmi_consumer_by_key(mm, tag_key(tag)) != NULL;
    mmi_rcu_read_unlock();
    if (open)
      return 0; /* another open consumer's: untouched */
    if (take(mm, p, tag)) {
      *orphan = tag;
      return 0;
    }
  }
}

mm_status mm_consumer_free(mm_consumer *c, void *ptr) {
  if (!c || !ptr)
    return MM_EINVAL;
  if (free_fast(c->mm, c, ptr))
    return MM_OK;
  for (;;) {
    uint32_t orphan = 0;
    uint32_t tag = own_tag(c, ptr, &orphan);
    if (orphan) {
      block_free(c->mm, ptr, orphan, NULL); /* memory only */
      return MM_OK;
    }
    if (!tag)
      return MM_EINVAL;
    if (take(c->mm, ptr, tag)) {
      block_free(c->mm, ptr, tag, c);
      return MM_OK;
    }
  }
}

mm_status mm_consumer_realloc(mm_consumer *c, void *ptr, size_t size,
                              int64_t timeout_ns, void **out) {
  if (!c || !out || !mmi_timeout_valid(timeout_ns) ||
      mmi_in_evict_callback(c->mm))
    return MM_EINVAL;
  if (!ptr)
    return mm_consumer_alloc(c, size, timeout_ns, out);
  mm_t *mm = c->mm;
  block_class k = class_of(mm, size);
  uint32_t tag;
  /* (A closed consumer's blocks are orphans, even under its own key.) */
  if (!k.size || mm_load_acquire_u64(&c->books) == MMI_CLOSED ||
      !(tag = own_tag(c, ptr, NULL)))
    return MM_EINVAL;
  unsigned cls = tag_class(tag);
  uint64_t old = cls != MMI_TCACHE_NONE ? mm->caches.class_size[cls]
                                        : mmi_backing_usable(&mm->backing, ptr);
  if (k.size <= old) {
    /* Same class, or smaller: the block stays where it is, charged as it
     * was (a shrink never fails and never moves). */
    *out = ptr;
    return MM_OK;
  }
  void *next;
  mm_status st = block_alloc(mm, c, c->exec_id, k, timeout_ns, &next);
  if (st != MM_OK)
    return st; /* the old block stays */
  memcpy(next, ptr, old);
  if (!take(mm, ptr, tag)) {
    /* Freed by another thread meanwhile (the caller's race): the new
     * block goes too, and the call is refused. */
    uint32_t made = peek(mm, next);
    if (take(mm, next, made))
      block_free(mm, next, made, c);
    return MM_EINVAL;
  }
  block_free(mm, ptr, tag, c);
  *out = next;
  return MM_OK;
}

size_t mm_usable_size(mm_t *mm, const void *ptr) {
  if (!mm || !ptr || !mmi_backing_owns(&mm->backing, ptr))
    return 0;
  /* acquire: the block's allocation is complete */
  uint32_t tag = mm_load_acquire_u32(mmi_backing_tag(&mm->backing, ptr));
  if (!tag)
    return 0; /* no live block of a consumer's starts here */
  unsigned cls = tag_class(tag);
  return cls != MMI_TCACHE_NONE ? mm->caches.class_size[cls]
                                : mmi_backing_usable(&mm->backing, ptr);
}

/* A page's block is its whole charge, so that the page's size as charged
 * (what the eviction callback is told) is its memory's. */
uint64_t mmi_page_block_size(mm_t *mm, size_t size) {
  uint64_t c = mmi_page_round(mm, size);
  for (int i = 0; c && i < 8; i++) {
    uint64_t next = mmi_page_round(mm, mmi_backing_size(&mm->backing, c));
    if (next == c)
      return c;
    c = next;
  }
  return 0;
}

/* mm_storage_alloc, and with @handle (mm_page_alloc) the page's record
 * with a reference for the caller, taken before the page goes live. */
static mm_status storage_alloc(mm_t *mm, uint64_t page_id, size_t size,
                               int64_t timeout_ns, void **out,
                               struct mmi_page **handle) {
  if (!mm || !out || size == 0 || !mmi_timeout_valid(timeout_ns) ||
      mmi_in_evict_callback(mm))
    return MM_EINVAL;
  uint64_t charged = mmi_page_block_size(mm, size);
  if (!charged || charged > mmi_pool_storage_max(&mm->pool))
    return MM_EINVAL;
  mmi_grant grant = {.block_size = charged};
  mm_status st = mmi_request_acquire(mm, MM_POOL_STORAGE, page_id, charged,
                                     timeout_ns, NULL, NULL, NULL, &grant);
  if (st != MM_OK)
    goto out;
  if (grant.inside)
    mmi_test_point(mm, MMI_TP_HELD_GRANTED);

  /* As in mm_exec_alloc: the block exists if the grant evicted. */
  void *data =
      grant.block ? grant.block : mmi_block_alloc(&mm->caches, charged);
  mmi_rcu_read_lock();
  if (data) {
    mmi_page_set_data(grant.page, data, charged);
    if (handle) {
      mmi_page_hold(grant.page); /* before anyone can evict it */
      *handle = grant.page;
    }
    mmi_page_activate(mm, grant.page, 1); /* born pinned: the caller's pin */
  } else { /* every charge rolled back; nothing was evicted */
    mmi_give_back(mm, MM_POOL_STORAGE, charged);
    mmi_page_abandon(mm, grant.page); /* the id is free after the bytes */
    count_undone_grant(mm, &grant);
  }
  mmi_rcu_read_unlock();
  if (data)
    *out = data;
  else
    st = MM_ENOMEM;
out:
  if (grant.inside)
    mmi_held_leave(mm); /* the last touch of @mm */
  return st;
}

mm_status mm_storage_alloc(mm_t *mm, uint64_t page_id, size_t size,
                           int64_t timeout_ns, void **out) {
  return storage_alloc(mm, page_id, size, timeout_ns, out, NULL);
}

mm_status mm_page_alloc(mm_t *mm, uint64_t page_id, size_t size,
                        int64_t timeout_ns, mm_page **out) {
  if (!out)
    return MM_EINVAL;
  void *data;
  struct mmi_page *pg;
  mm_status st = storage_alloc(mm, page_id, size, timeout_ns, &data, &pg);
  if (st == MM_OK)
    *out = (mm_page *)(void *)pg; /* the handle is the record */
  return st;
}

void mm_trim(mm_t *mm) {
  if (!mm)
    return;
  mmi_tcaches_drain(&mm->caches);
  mmi_backing_trim(&mm->backing);
}

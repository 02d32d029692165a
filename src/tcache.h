/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tcache.h -- per-thread caches of freed blocks in front of the backing
 * arena, one per thread and manager.  See tcache.c.
 *
 * Part of the allocator: it knows the backing and nothing above it.  The
 * layer above learns of pressure through nothing but
 * mmi_tcaches_squeeze, and keeps per-thread state of its own in each
 * cache's extra bytes.
 */
#ifndef MM_TCACHE_H
#define MM_TCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "atomics/mm_atomic.h"
#include "backing.h"

#define MMI_TCACHE_MAX_SIZE 16384 /* larger blocks always go to the arena */
#define MMI_TCACHE_CLASSES  40
#define MMI_TCACHE_DEPTH    128 /* blocks per class per cache, at most */
#define MMI_TCACHE_REFILL   32  /* blocks an empty stack gets at once */
#define MMI_TCACHE_NONE     255 /* the class of a block no cache keeps */
#define MMI_TCACHE_EXTRA    256 /* bytes of the layer above's, per thread */

/* A cache's life (tcache.c). */
enum { MMI_TC_LIVE, MMI_TC_EXITING, MMI_TC_DETACHED, MMI_TC_ORPHANED };

typedef struct mmi_tcache mmi_tcache;
struct mmi_tcaches;

struct mmi_tcache {
  /* The owner's, on every call. */
  _Alignas(MM_CACHE_LINE) mm_atomic_u32 active; /* the owner is in it */
  mm_atomic_u32 drain; /* 0, MMI_TC_ASKED, MMI_TC_TAKEN, MMI_TC_OWNED */
  mm_atomic_u64 bytes; /* parked now; written by whoever holds the stacks */
  uint64_t uid;        /* its set's */
  struct mmi_tcaches *set;
  uint8_t count[MMI_TCACHE_CLASSES];
  /* Its life. */
  mm_atomic_u32 state;
  mm_atomic_u32 refs; /* its set's, and its owner thread's */
  mmi_tcache *next;   /* the set's list (fixed once pushed) */
  mmi_tcache *mine;   /* the owner thread's list */
  /* The layer above's: zeroed when the cache is made, kept when another
   * thread takes it over. */
  _Alignas(16) unsigned char extra[MMI_TCACHE_EXTRA];
  void *slot[MMI_TCACHE_CLASSES][MMI_TCACHE_DEPTH];
};

#define MMI_TC_ASKED 1 /* the owner empties its cache before its call ends */
#define MMI_TC_TAKEN 2 /* a drain holds the stacks: the owner keeps off */
#define MMI_TC_OWNED 3 /* the owner is emptying it, as asked */

typedef struct mmi_tcaches {
  mmi_backing *b;
  uint64_t uid;    /* never reused in the process */
  uint64_t bound;  /* bytes per cache, at most */
  bool membarrier; /* drains may empty other threads' caches */
  unsigned nclass;
  uint32_t class_size[MMI_TCACHE_CLASSES];
  uint8_t class_of[MMI_TCACHE_MAX_SIZE / MMI_GRANULE + 1]; /* by granules */
  _Alignas(MM_CACHE_LINE) mm_atomic_u32 squeezed;          /* park nothing */
  mm_atomic_u32 draining;   /* one drain at a time */
  mm_atomic_u64 drain_asks; /* drains asked for; the one running sees them */
  mm_atomic_ptr head;       /* every cache */
  mm_atomic_u64 attached;   /* with an owner now */
} mmi_tcaches;

/* MM_ENOMEM if the caches cannot be set up. */
mm_status mmi_tcaches_init(mmi_tcaches *s, mmi_backing *b, uint64_t bound);
/* Every cache is let go (its blocks go with the arena); no call may be in
 * flight. */
void mmi_tcaches_fini(mmi_tcaches *s);

/* The class of a block of @size (1 <= @size), MMI_TCACHE_NONE if no cache
 * keeps its size. */
static inline unsigned mmi_tcache_class(const mmi_tcaches *s, size_t size) {
  return size <= MMI_TCACHE_MAX_SIZE
             ? s->class_of[(size + MMI_GRANULE - 1) / MMI_GRANULE]
             : MMI_TCACHE_NONE;
}

/* ---- the calling thread's cache ----------------------------------------- */

extern MM_THREAD_LOCAL mmi_tcache *mmi_tcache_last;
mmi_tcache *mmi_tcache_mine_slow(mmi_tcaches *s);

/* The calling thread's cache for @s, made on its first use; NULL if it
 * could not be made (the caller goes to the arena). */
static inline mmi_tcache *mmi_tcache_mine(mmi_tcaches *s) {
  mmi_tcache *tc = mmi_tcache_last;
  if (tc && tc->uid == s->uid)
    return tc;
  return mmi_tcache_mine_slow(s);
}

/* The owner's side of the drain handshake (tcache.c): true if the owner
 * may use its stacks now, until mmi_tcache_leave. */
bool mmi_tcache_enter_slow(mmi_tcache *tc, uint32_t drain);
void mmi_tcache_leave_slow(mmi_tcache *tc);

static inline bool mmi_tcache_enter(mmi_tcache *tc) {
  mm_store_relaxed_u32(&tc->active, 1);
  /* A compiler barrier only: a drain's membarrier is the other half. */
  mm_fence_compiler();
  /* acquire: a drain that gave the stacks back published them */
  uint32_t d = mm_load_acquire_u32(&tc->drain);
  return d == 0 || mmi_tcache_enter_slow(tc, d);
}

static inline void mmi_tcache_leave(mmi_tcache *tc) {
  mm_store_release_u32(&tc->active, 0); /* publishes the stacks */
  mm_fence_compiler();
  /* A drain that found us inside asked us to empty it: now, not at some
   * later call that may never come. */
  if (mm_load_relaxed_u32(&tc->drain) == MMI_TC_ASKED)
    mmi_tcache_leave_slow(tc);
}

/* The stack of @cls is empty: fill it from the arena, and take one (NULL
 * if the arena has none).  The owner holds the stacks. */
void *mmi_tcache_refill(mmi_tcaches *s, mmi_tcache *tc, unsigned cls);

/* A block of class @cls (< nclass) from @tc's stack, refilled from the
 * arena if it is empty; NULL if the arena has none.  The owner is inside
 * (mmi_tcache_enter). */
static inline void *mmi_tcache_pop(mmi_tcaches *s, mmi_tcache *tc,
                                   unsigned cls) {
  uint8_t n = tc->count[cls];
  if (!n)
    return mmi_tcache_refill(s, tc, cls);
  tc->count[cls] = (uint8_t)(n - 1);
  mm_store_relaxed_u64(&tc->bytes,
                       mm_load_relaxed_u64(&tc->bytes) - s->class_size[cls]);
  return tc->slot[cls][n - 1];
}

/* Park block @p of class @cls in @tc, unless @tc is full (false: the
 * caller gives it to the arena).  The owner is inside, and found the set
 * not squeezed. */
static inline bool mmi_tcache_push(mmi_tcaches *s, mmi_tcache *tc, void *p,
                                   unsigned cls) {
  uint8_t n = tc->count[cls];
  uint64_t bytes = mm_load_relaxed_u64(&tc->bytes) + s->class_size[cls];
  if (n >= MMI_TCACHE_DEPTH || bytes > s->bound)
    return false;
  tc->slot[cls][n] = p;
  tc->count[cls] = (uint8_t)(n + 1);
  mm_store_relaxed_u64(&tc->bytes, bytes);
  return true;
}

/* A block of class @cls: from @tc (the caller's, or NULL), else from the
 * arena; NULL if the arena has none. */
static inline void *mmi_tcache_alloc(mmi_tcaches *s, mmi_tcache *tc,
                                     unsigned cls) {
  if (!tc || !mmi_tcache_enter(tc))
    return mmi_backing_alloc(s->b, s->class_size[cls]);
  void *p = mmi_tcache_pop(s, tc, cls);
  mmi_tcache_leave(tc);
  return p;
}

/* Give block @p of class @cls back: parked in @tc unless the set is
 * squeezed or @tc is full, else to the arena. */
static inline void mmi_tcache_free(mmi_tcaches *s, mmi_tcache *tc, void *p,
                                   unsigned cls) {
  if (tc && !mm_load_relaxed_u32(&s->squeezed) && mmi_tcache_enter(tc)) {
    bool parked = mmi_tcache_push(s, tc, p, cls);
    mmi_tcache_leave(tc);
    if (parked)
      return;
  }
  mmi_backing_free(s->b, p, s->class_size[cls]);
}

/* A block of @size bytes (a size class of the arena's: mmi_backing_size)
 * for the calling thread, through its cache, handed out (backing.h); NULL
 * if the arena has none.  And its return, after it was taken back. */
void *mmi_block_alloc(mmi_tcaches *s, size_t size);
void mmi_block_free(mmi_tcaches *s, void *p, size_t size);

/* ---- all of them --------------------------------------------------------- */

/* Pressure from the layer above: @on, park nothing more and give every
 * parked block back to the arena (those of a thread in a call at that
 * moment before that call returns); off, park again. */
void mmi_tcaches_squeeze(mmi_tcaches *s, bool on);
/* Give every parked block back (as a squeeze does), parking on after.
 * A cache whose owner is in a call at that moment is emptied by the owner
 * before the call returns.  One drain runs at a
 * time: if another is running, this one is left to it (it runs again
 * for every drain asked for while it ran), and returns at once. */
void mmi_tcaches_drain(mmi_tcaches *s);
/* Bytes parked now, and the most the caches may hold (bound for each
 * cache with an owner). */
uint64_t mmi_tcaches_parked(const mmi_tcaches *s);
uint64_t mmi_tcaches_capacity(const mmi_tcaches *s);
/* Call @fn on the extra bytes of every cache, live or not (a sum of the
 * layer above's per-thread counters). */
void mmi_tcaches_each(const mmi_tcaches *s, void (*fn)(const void *, void *),
                      void *ctx);

#endif /* MM_TCACHE_H */

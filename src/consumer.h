/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * consumer.h -- consumers: handles on an exec id whose books are one word,
 * served from quota reserved ahead from the pool word.  See consumer.c.
 */
#ifndef MM_CONSUMER_H
#define MM_CONSUMER_H

#include <stdbool.h>
#include <stdint.h>

#include "atomics/mm_atomic.h"
#include "memory_manager.h"
#include "registry.h"

struct mmi_grant;

/* books = held << MMI_SPARE_BITS | spare; CLOSED once closed. */
#define MMI_SPARE_BITS 22
#define MMI_SPARE_MAX  (((uint64_t)1 << MMI_SPARE_BITS) - 1) /* < 4 MiB */
#define MMI_HELD_MAX   (((uint64_t)1 << (64 - MMI_SPARE_BITS)) - 2)
#define MMI_CLOSED     UINT64_MAX

/* A consumer's tag: what its blocks carry (alloc.c), its key in
 * mm->consumers; never 0. */
#define MMI_KEY_BITS 26
#define MMI_KEY_MAX  (((uint32_t)1 << MMI_KEY_BITS) - 1)

struct mm_consumer {
  mmi_node node; /* mm->consumers, key: its tag; first (freed through it) */
  /* The books: the bytes its callers hold, and the quota charged to the
   * pool word for it and not held yet (spare).  One CAS changes both. */
  _Alignas(MM_CACHE_LINE) mm_atomic_u64 books;
  uint64_t quantum; /* quota taken from the pool at a time */
  mm_t *mm;
  uint64_t exec_id;
  bool dflt;              /* the exec id's own, for the id-based calls */
  mm_atomic_u32 refs;     /* its owner (a handle, or the registries) and, for
                             an exec id's own, its link in mm->execs */
  mmi_link by_exec;       /* mm->by_exec: every consumer, by exec id */
  mmi_link by_id;         /* dflt: mm->execs, the exec id's own */
  mm_atomic_u32 in_execs; /* by_id was linked (it may be unlinked since) */
  /* Reclaim (reclaim.c).  fn and ctx are written and read only by the
   * holder of busy (a reclaim asking it, or a change of the callback);
   * on mirrors fn != NULL for walkers that only look. */
  mm_atomic_u32 reclaim_busy;
  mm_atomic_u32 reclaim_on;
  mm_atomic_u32 reclaim_self; /* may be asked for its own requests */
  mm_reclaim_fn reclaim_fn;
  void *reclaim_ctx;
  /* Limits (mm_consumer_set_limits, never concurrent with other calls on
   * it; 0: none).  A limited consumer keeps no spare (quantum 0): its
   * calls take the exact paths, which keep the limits.  reserve is its
   * guarantee's part that it does not hold: charged to the pool word,
   * held by nobody, taken by its own acquires only. */
  uint64_t limit_min, limit_max;
  mm_atomic_u64 reserve;
  mm_atomic_u64 counted; /* its min as counted in mm->guaranteed: taken
                            by the close (exactly once) */
};

/* Why a credit to a consumer that is not an exec id's own failed: closed,
 * or it would hold more than its max. */
static inline mm_status mmi_consumer_refusal(const struct mm_consumer *c) {
  return mm_load_relaxed_u64(&c->books) == MMI_CLOSED ? MM_EINVAL : MM_ENOMEM;
}

static inline uint64_t mmi_books_held(uint64_t w) {
  return w == MMI_CLOSED ? 0 : w >> MMI_SPARE_BITS;
}
static inline uint64_t mmi_books_spare(uint64_t w) {
  return w == MMI_CLOSED ? 0 : w & MMI_SPARE_MAX;
}

/* The registries and the first tag (mm_create). */
mm_status mmi_consumers_init(mm_t *mm);
void mmi_consumers_fini(mm_t *mm);

/* A consumer of @exec_id, published in every registry it belongs to
 * (@dflt: as the exec id's own, in mm->execs: MM_EEXIST, and *@out the
 * one the id has, if it has one already).  From *@spare if it is set,
 * else from the allocator (MM_ENOMEM if that fails); either way the
 * record is used up. */
mm_status mmi_consumer_new(mm_t *mm, uint64_t exec_id, bool dflt,
                           struct mm_consumer **spare,
                           struct mm_consumer **out);
/* A record for mmi_consumer_new to use, made ahead (a held request's). */
struct mm_consumer *mmi_consumer_spare(void);
void mmi_consumer_spare_free(struct mm_consumer *c);

/* Charge @bytes to @c: from its spare quota, else from free memory with a
 * quantum of quota more, else through the front door (eviction, holding
 * with @timeout_ns, the held-request rules; with @grant, a block made
 * before anything is evicted).  MM_EINVAL if @c is closed. */
mm_status mmi_consumer_acquire(struct mm_consumer *c, uint64_t bytes,
                               int64_t timeout_ns, struct mmi_grant *grant);
/* Its two halves.  The first never waits and may run in a read section:
 * true if it decided (*@st: MM_OK, or MM_EINVAL: closed, or it would hold
 * too much), false if the request must go through the front door.  The
 * second is that door: the request alone, which reclaims every spare
 * (@c's too) before it evicts, declines or holds, and credits the grant to
 * @c; the caller holds a reference on @c (it may wait). */
bool mmi_consumer_take(struct mm_consumer *c, uint64_t bytes,
                       int64_t timeout_ns, struct mmi_grant *grant,
                       mm_status *st);
mm_status mmi_consumer_acquire_exact(struct mm_consumer *c, uint64_t bytes,
                                     int64_t timeout_ns,
                                     struct mmi_grant *grant);
/* Bytes already charged to the pool word for @c become held by it (a
 * grant of the front door); false if @c is closed or would hold more than
 * its max (the caller gives them back: mmi_consumer_refusal says which). */
bool mmi_consumer_credit(struct mm_consumer *c, uint64_t bytes);
/* Return @bytes @c holds: to its spare quota, the excess over two quanta
 * to the pool word (all of it while requests are held).  MM_EINVAL, and
 * nothing changed, if it holds less.  With @clamp, return what it holds
 * if that is less (a block whose charge was partly returned). */
mm_status mmi_consumer_release(struct mm_consumer *c, uint64_t bytes,
                               bool clamp);
/* Give @c's spare quota back to the pool word (a release while requests
 * are held). */
void mmi_consumer_give_spare(struct mm_consumer *c);
/* Close @c: everything it holds and its quota go back to the pool word,
 * and every later call on it answers MM_EINVAL.  Returns the bytes it
 * held (0 if it was closed already).  It leaves the registries. */
uint64_t mmi_consumer_shut(struct mm_consumer *c);
/* Drop a reference; the last one frees @c (through RCU). */
void mmi_consumer_put(struct mm_consumer *c);
/* Take one, unless @c is being freed (false).  In a read section. */
bool mmi_consumer_ref(struct mm_consumer *c);
/* An exec id's own consumer leaves mm->execs (closed: anyone may help the
 * close with this).  In a read section. */
void mmi_consumer_unlink_own(struct mm_consumer *c);

/* The consumer whose tag is @key, if it is open.  In a read section. */
struct mm_consumer *mmi_consumer_by_key(mm_t *mm, uint32_t key);

/* Give every consumer's spare quota back to the pool word (before a
 * request is declined, evicts or is held, and in every dispatch pass with
 * waiters); true if anything came back. */
bool mmi_consumers_reclaim(mm_t *mm);
/* Spare quota, all consumers (charged to the pool, held by nobody). */
uint64_t mmi_consumers_spare(mm_t *mm);

#endif /* MM_CONSUMER_H */

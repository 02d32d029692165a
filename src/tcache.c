/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tcache.c -- per-thread caches of freed blocks.
 *
 * The backing arena is used without jemalloc's thread caches (they would
 * mix the host's blocks with ours, and hold megabytes per thread that
 * nobody counts), so every arena call takes one of its bin locks.  In
 * front of it, each thread has a cache of its own for each manager it
 * uses: for each size class up to 16 KiB, a stack of up to 32 freed
 * blocks, and at most `bound` bytes in all.
 *
 *   tcache: | active | drain | bytes | uid | count[class] | ... |
 *           | extra (the layer above's) | slot[class][0..31]     |
 *
 * Only its owner thread pushes and pops, so the common alloc and free are
 * a few plain loads and stores on lines no other thread writes: no atomic
 * read-modify-write, no lock.  (Measured against the per-CPU caches this
 * replaced: claiming a CPU's cache took a CAS on every call, and a thread
 * moved to another CPU found a cold one.)  An empty stack is refilled
 * with 32 blocks at once, cut from one slab (jemalloc's batch
 * allocation, one bin lock): a thread's small blocks lie together, so
 * their tags -- 16 to a cache line, one line per four 64-byte blocks --
 * are on lines of its own.  (Taken one at a time, two threads' blocks
 * alternated in a slab, and two threads allocating 64-byte blocks ran
 * at 0.4 times one thread, fighting over tag lines.)
 *
 * Other threads still need the blocks parked in a cache: when the budget
 * runs short, its parked memory should go back to the arena, whichever
 * thread parked it, and the owner may be idle for ever.  The drain
 * handshake, the asymmetric Dekker pattern of liburcu's memb flavour:
 *
 *   owner (every call)                 drain
 *   active = 1     (plain store)       drain = TAKEN   (CAS from 0 or ASKED)
 *   compiler barrier                   membarrier()    (a full barrier
 *   d = drain      (acquire)                            on every CPU)
 *   d == 0: use the stacks             active == 0 ?   (acquire)
 *   active = 0     (release)             yes: empty the stacks, drain = 0
 *   compiler barrier                     no:  drain = ASKED, membarrier(),
 *   drain == ASKED ? empty them now           and a second look: owners
 *                                             out by then are taken again
 *
 * membarrier(2) makes every running thread of the process execute a full
 * barrier before it returns (a thread off its CPU passes one when it is
 * switched back).  If the owner's barrier came before its store of
 * active, its load of drain comes after it and sees TAKEN: it keeps off
 * the stacks (it goes to the arena) until the drain stores 0.  If after,
 * its store of active is visible to the drain's load: the drain sees 1
 * and asks, or sees the release store of 0 that ended the owner's call,
 * and with it every write of that call.  So owner and drain never hold
 * the stacks at once, and the owner pays a plain store, a load and two
 * compiler barriers for it.  An owner asked takes the word from ASKED to
 * OWNED by a CAS (so that a drain coming back for the cache, which takes
 * it from ASKED too, and the owner never both empty it), empties its
 * stacks and stores 0 -- at the end of the call the drain found it in:
 * the drain asked before its second barrier, so the owner's load of
 * drain after its store of 0 sees ASKED (or, if that store came before
 * the barrier, the drain's second look finds the owner out and takes the
 * cache itself).  A cache
 * is never left asked with an idle owner.  Where membarrier(2) is
 * unavailable, a drain only asks (every cache is emptied by its owner's
 * next call).  One drain runs at a time: a drain that finds another
 * running leaves the work to it, and the one running runs again for every
 * drain asked for meanwhile (the baton of held.c's kick), so nobody waits
 * and no ask is lost.
 *
 * A cache's life, one word (state) and two references (its set's, its
 * owner's):
 *
 *   LIVE      an owner thread uses it; made on the thread's first call
 *   EXITING   its owner is exiting and empties it into the arena
 *   DETACHED  empty and ownerless: the next new thread takes it over
 *   ORPHANED  its manager was destroyed first: the owner lets go of it
 *             (its blocks went with the arena) at its next call or exit
 *
 * The owner finds its cache by the set's uid (never reused), so a new
 * manager at a destroyed one's address never meets the old caches; the
 * record is freed by whichever reference goes last.  Blocks parked here
 * are freed from the books but still allocated from the arena, so
 * allocated <= charged + parked at every moment, and parked <= bound for
 * each cache with an owner (mmi_tcaches_capacity).
 */
#define _GNU_SOURCE
#include "tcache.h"

#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

MM_THREAD_LOCAL mmi_tcache *mmi_tcache_last;      /* the one used last */
static MM_THREAD_LOCAL mmi_tcache *thread_caches; /* all of this thread's */

static mm_atomic_u64 next_uid = 1;
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static bool exit_key_made;

static int membarrier(int cmd) {
  return (int)syscall(__NR_membarrier, cmd, 0, 0);
}

/* Once per process: may drains take other threads' stacks? */
static int membarrier_state; /* 0 unknown, 1 yes, 2 no */
static pthread_once_t membarrier_once = PTHREAD_ONCE_INIT;

static void membarrier_probe(void) {
  int q = membarrier(MEMBARRIER_CMD_QUERY);
  bool ok = q >= 0 && (q & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
            membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
  membarrier_state = ok ? 1 : 2;
}

static void on_thread_exit(void *unused);

static void make_exit_key(void) {
  exit_key_made = pthread_key_create(&exit_key, on_thread_exit) == 0;
}

mm_status mmi_tcaches_init(mmi_tcaches *s, mmi_backing *b, uint64_t bound) {
  s->b = b;
  s->uid = mm_faa_relaxed_u64(&next_uid, 1);
  s->bound = bound;
  pthread_once(&membarrier_once, membarrier_probe);
  s->membarrier = membarrier_state == 1;
  /* The arena's size classes up to MMI_TCACHE_MAX_SIZE. */
  s->nclass = 0;
  size_t last = 0;
  for (size_t sz = MMI_GRANULE; sz <= MMI_TCACHE_MAX_SIZE; sz += MMI_GRANULE) {
    size_t cls = mmi_backing_size(b, sz);
    if (cls != last && cls <= MMI_TCACHE_MAX_SIZE) {
      if (s->nclass == MMI_TCACHE_CLASSES)
        break;
      s->class_size[s->nclass++] = (uint32_t)cls;
      last = cls;
    }
  }
  for (size_t i = 0, k = 0; i <= MMI_TCACHE_MAX_SIZE / MMI_GRANULE; i++) {
    size_t sz = i ? i * MMI_GRANULE : 1;
    while (k < s->nclass && s->class_size[k] < sz)
      k++;
    s->class_of[i] = (uint8_t)(k < s->nclass ? k : MMI_TCACHE_NONE);
  }
  mm_store_relaxed_u32(&s->squeezed, 0);
  mm_store_relaxed_u32(&s->draining, 0);
  mm_store_relaxed_u64(&s->drain_asks, 0);
  mm_store_relaxed_ptr(&s->head, NULL);
  mm_store_relaxed_u64(&s->attached, 0);
  pthread_once(&exit_once, make_exit_key);
  return exit_key_made ? MM_OK : MM_ENOMEM;
}

/* ---- the stacks -----------------------------------------------------------
 */

/* Give every block in @tc's stacks back to the arena; the caller holds
 * the stacks (owner inside, or a drain that took them). */
static void empty(mmi_tcache *tc) {
  mmi_tcaches *s = tc->set;
  for (unsigned k = 0; k < s->nclass; k++)
    while (tc->count[k]) {
      uint8_t n = --tc->count[k];
      mmi_backing_free(s->b, tc->slot[k][n], s->class_size[k]);
    }
  mm_store_relaxed_u64(&tc->bytes, 0);
}

void *mmi_tcache_refill(mmi_tcaches *s, mmi_tcache *tc, unsigned cls) {
  /* A batch, cut from one slab: this thread's blocks lie together, so
   * their tags (16 to a cache line for 64-byte blocks) are this thread's
   * lines, not shared with another thread's.  MMI_TCACHE_REFILL blocks
   * (a quarter of a stack: a bigger batch spans slabs that other threads
   * cut from too, and 64-byte blocks at 2-8 threads lost a third), within
   * the bound; none to park while squeezed. */
  uint32_t size = s->class_size[cls];
  uint64_t bytes = mm_load_relaxed_u64(&tc->bytes), room;
  room = bytes < s->bound ? (s->bound - bytes) / size : 0;
  unsigned n = MMI_TCACHE_REFILL;
  if (room < n)
    n = (unsigned)room;
  if (mm_load_relaxed_u32(&s->squeezed) || n < 2)
    return mmi_backing_alloc(s->b, size); /* one, parking nothing */
  unsigned got = mmi_backing_alloc_batch(s->b, size, tc->slot[cls], n + 1);
  if (!got)
    return NULL;
  tc->count[cls] = (uint8_t)(got - 1);
  mm_store_relaxed_u64(&tc->bytes, bytes + (uint64_t)(got - 1) * size);
  return tc->slot[cls][got - 1];
}

bool mmi_tcache_enter_slow(mmi_tcache *tc, uint32_t drain) {
  /* ASKED: a drain found us inside and left the emptying to us -- unless
   * it comes back for it first (it takes the word from ASKED too). */
  if (drain == MMI_TC_ASKED &&
      mm_cas_acq_rel_u32(&tc->drain, &drain, MMI_TC_OWNED)) {
    empty(tc);
    mm_store_release_u32(&tc->drain, 0);
    return true;
  }
  /* TAKEN: a drain holds the stacks; keep off, go to the arena. */
  mm_store_release_u32(&tc->active, 0);
  return false;
}

void mmi_tcache_leave_slow(mmi_tcache *tc) {
  if (mmi_tcache_enter(tc)) /* empties it, as asked */
    mmi_tcache_leave(tc);
}

void *mmi_block_alloc(mmi_tcaches *s, size_t size) {
  unsigned k = mmi_tcache_class(s, size);
  void *p = k != MMI_TCACHE_NONE ? mmi_tcache_alloc(s, mmi_tcache_mine(s), k)
                                 : mmi_backing_alloc(s->b, size);
  if (p)
    mmi_backing_hand_out(p, size);
  return p;
}

void mmi_block_free(mmi_tcaches *s, void *p, size_t size) {
  mmi_backing_take_back(p, size);
  unsigned k = mmi_tcache_class(s, size);
  if (k != MMI_TCACHE_NONE)
    mmi_tcache_free(s, mmi_tcache_mine(s), p, k);
  else
    mmi_backing_free(s->b, p, size);
}

/* ---- a thread's caches ----------------------------------------------------
 */

static void put(mmi_tcache *tc) {
  /* acq_rel: the last reference sees every other holder's writes */
  if (mm_faa_acq_rel_u32(&tc->refs, (uint32_t)-1) == 1)
    free(tc);
}

/* Take a cache no thread owns, if the set has one. */
static mmi_tcache *take_detached(mmi_tcaches *s) {
  for (mmi_tcache *tc = mm_load_acquire_ptr(&s->head); tc; tc = tc->next) {
    uint32_t st = MMI_TC_DETACHED;
    if (mm_load_relaxed_u32(&tc->state) == MMI_TC_DETACHED &&
        mm_cas_acq_rel_u32(&tc->state, &st, MMI_TC_LIVE)) {
      mm_faa_acq_rel_u32(&tc->refs, 1); /* the new owner's */
      return tc;
    }
  }
  return NULL;
}

static mmi_tcache *make(mmi_tcaches *s) {
  mmi_tcache *tc = aligned_alloc(MM_CACHE_LINE, sizeof *tc);
  if (!tc)
    return NULL;
  memset(tc, 0, sizeof *tc);
  tc->uid = s->uid;
  tc->set = s;
  mm_store_relaxed_u32(&tc->state, MMI_TC_LIVE);
  mm_store_relaxed_u32(&tc->refs, 2);
  void *head = mm_load_relaxed_ptr(&s->head);
  do
    tc->next = head;
  while (!mm_cas_release_ptr(&s->head, &head, tc)); /* publishes *tc */
  return tc;
}

mmi_tcache *mmi_tcache_mine_slow(mmi_tcaches *s) {
  /* This thread's caches: let go of orphans, find @s's. */
  mmi_tcache **pp = &thread_caches, *tc;
  mmi_tcache_last = NULL;
  while ((tc = *pp) != NULL) {
    if (mm_load_acquire_u32(&tc->state) == MMI_TC_ORPHANED) {
      *pp = tc->mine;
      put(tc);
      continue;
    }
    if (tc->uid == s->uid)
      return mmi_tcache_last = tc;
    pp = &tc->mine;
  }
  if (!(tc = take_detached(s)) && !(tc = make(s)))
    return NULL;
  mm_faa_relaxed_u64(&s->attached, 1);
  tc->mine = thread_caches;
  thread_caches = tc;
  /* The key's value only makes the destructor run; the list is in TLS. */
  (void)pthread_setspecific(exit_key, tc);
  return mmi_tcache_last = tc;
}

static void on_thread_exit(void *unused) {
  (void)unused;
  mmi_tcache *tc = thread_caches;
  thread_caches = mmi_tcache_last = NULL;
  while (tc) {
    mmi_tcache *next = tc->mine;
    uint32_t st = MMI_TC_LIVE;
    if (mm_cas_acq_rel_u32(&tc->state, &st, MMI_TC_EXITING)) {
      /* Its manager waits for us (EXITING): empty it into the arena. */
      while (!mmi_tcache_enter(tc))
        sched_yield(); /* a drain is emptying it right now */
      empty(tc);
      mmi_tcache_leave(tc);
      mm_faa_relaxed_u64(&tc->set->attached, (uint64_t)-1);
      mm_store_release_u32(&tc->state, MMI_TC_DETACHED);
    }
    put(tc); /* ORPHANED: its manager is gone; touch nothing of it */
    tc = next;
  }
}

void mmi_tcaches_fini(mmi_tcaches *s) {
  mmi_tcache *tc = mm_load_acquire_ptr(&s->head);
  for (mmi_tcache *t = tc; t; t = t->next) {
    for (;;) {
      uint32_t st = mm_load_acquire_u32(&t->state);
      if (st == MMI_TC_DETACHED)
        break;
      if (st == MMI_TC_LIVE &&
          mm_cas_acq_rel_u32(&t->state, &st, MMI_TC_ORPHANED))
        break;
      if (st == MMI_TC_EXITING)
        sched_yield(); /* its owner is emptying it: a moment */
    }
  }
  while (tc) {
    mmi_tcache *next = tc->next;
    put(tc); /* the set's reference */
    tc = next;
  }
  mm_store_relaxed_ptr(&s->head, NULL);
}

/* ---- draining -------------------------------------------------------------
 */

static bool wants_drain(mmi_tcache *tc) {
  return mm_load_relaxed_u64(&tc->bytes) != 0;
}

static void drain_round(mmi_tcaches *s) {
  mmi_tcache *head = mm_load_acquire_ptr(&s->head);
  if (!s->membarrier) {
    /* Ask only: each owner empties its own at its next call. */
    for (mmi_tcache *tc = head; tc; tc = tc->next) {
      uint32_t none = 0;
      if (wants_drain(tc))
        (void)mm_cas_acq_rel_u32(&tc->drain, &none, MMI_TC_ASKED);
    }
    return;
  }
  /* Take every cache that has something (from 0, or from ASKED: the owner
   * has not come to it), then one barrier on every CPU; empty those whose
   * owner is out, and ask the owners who are in.  Asking is followed by a
   * second barrier and a second look: an owner still in after it sees
   * ASKED before its call ends (tcache.h: mmi_tcache_leave), and one that
   * left meanwhile is taken again. */
  for (int round = 0;; round++) {
    bool took = false;
    for (mmi_tcache *tc = head; tc; tc = tc->next) {
      uint32_t d = mm_load_relaxed_u32(&tc->drain);
      if ((d == 0 && (round == 0 && wants_drain(tc))) || d == MMI_TC_ASKED)
        took |= mm_cas_acq_rel_u32(&tc->drain, &d, MMI_TC_TAKEN);
    }
    if (!took)
      break;
    (void)membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
    bool asked = false;
    for (mmi_tcache *tc = head; tc; tc = tc->next) {
      if (mm_load_relaxed_u32(&tc->drain) != MMI_TC_TAKEN)
        continue;
      /* acquire: the owner's last call, and its stacks, are visible */
      if (mm_load_acquire_u32(&tc->active) == 0) {
        empty(tc);
        mm_store_release_u32(&tc->drain, 0); /* the stacks, to the owner */
      } else {
        mm_store_release_u32(&tc->drain, MMI_TC_ASKED);
        asked = true;
      }
    }
    if (!asked)
      break;
    (void)membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
    /* Owners still inside have seen ASKED: only the ones out are taken
     * again (round > 0: from ASKED, whose owner has left). */
    bool out = false;
    for (mmi_tcache *tc = head; tc; tc = tc->next)
      if (mm_load_relaxed_u32(&tc->drain) == MMI_TC_ASKED &&
          mm_load_acquire_u32(&tc->active) == 0)
        out = true;
    if (!out)
      break;
  }
}

void mmi_tcaches_drain(mmi_tcaches *s) {
  /* The baton pattern of held.c's kick: ask, then run the drain if no
   * other thread is running one; the one running reads the asks when it
   * starts and again when it is done, and runs again if any came.  All
   * seq_cst: an ask either finds the drain idle or is seen by its next
   * read, so whatever was true before the ask is seen by a drain that
   * starts after it. */
  mm_faa_seq_cst_u64(&s->drain_asks, 1);
  for (;;) {
    uint32_t idle = 0;
    if (mm_load_seq_cst_u32(&s->draining) != 0 ||
        !mm_cas_acq_rel_u32(&s->draining, &idle, 1))
      return; /* the drain running sees our ask */
    uint64_t seen = mm_load_seq_cst_u64(&s->drain_asks);
    drain_round(s);
    mm_store_seq_cst_u32(&s->draining, 0);
    if (mm_load_seq_cst_u64(&s->drain_asks) == seen)
      return;
  }
}

void mmi_tcaches_squeeze(mmi_tcaches *s, bool on) {
  if (!on) {
    if (mm_load_relaxed_u32(&s->squeezed))
      mm_store_relaxed_u32(&s->squeezed, 0);
    return;
  }
  if (!mm_load_relaxed_u32(&s->squeezed))
    mm_store_relaxed_u32(&s->squeezed, 1);
  for (mmi_tcache *tc = mm_load_acquire_ptr(&s->head); tc; tc = tc->next)
    if (wants_drain(tc)) {
      mmi_tcaches_drain(s);
      return;
    }
}

uint64_t mmi_tcaches_parked(const mmi_tcaches *s) {
  uint64_t sum = 0;
  for (mmi_tcache *tc = mm_load_acquire_ptr(&s->head); tc; tc = tc->next)
    sum += mm_load_relaxed_u64(&tc->bytes);
  return sum;
}

uint64_t mmi_tcaches_capacity(const mmi_tcaches *s) {
  return mm_load_relaxed_u64(&s->attached) * s->bound;
}

void mmi_tcaches_each(const mmi_tcaches *s, void (*fn)(const void *, void *),
                      void *ctx) {
  for (mmi_tcache *tc = mm_load_acquire_ptr(&s->head); tc; tc = tc->next)
    fn(tc->extra, ctx);
}

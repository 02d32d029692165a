/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pool.h -- the two-pool accounting: who may take how many bytes.
 *
 * Pure policy over one atomic word; it knows nothing of exec ids, pages
 * or memory.  See pool.c for the rules and the proof that they cannot
 * over-commit.
 */
#ifndef MM_POOL_H
#define MM_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "atomics/mm_atomic.h"

typedef struct mmi_pool {
  /* The whole mutable state: lo = execution used, hi = storage used, each
   * with its pool's part of the budget withheld (below).  Alone on its
   * cache line; it is the one word every acquire touches. */
  _Alignas(MM_CACHE_LINE) mm_dword used;
  /* The ceiling: the largest budget (max_total_bytes) and the pools'
   * sizes at it.  Immutable after init; the rules of pool.c read only
   * these and the word. */
  _Alignas(MM_CACHE_LINE) uint64_t total;
  uint64_t exec_init;    /* execution pool's size at the ceiling */
  uint64_t storage_init; /* storage pool's size at the ceiling */
  bool storage_may_borrow;
  /* The ceiling less the budget in force, per pool: counted in `used` as
   * if in use (so the rules hold the budget in force), and mirrored here
   * for the pictures.  Written only by mmi_pool_set_budget; `seq` is odd
   * while it writes (a seqlock for mmi_pool_view_get). */
  mm_atomic_u64 withheld[2];
  mm_atomic_u32 seq;
} mmi_pool;

/* A consistent picture of the pools, derived from one snapshot.  Uses
 * are real (the withheld budget is not counted in them). */
typedef struct mmi_pool_view {
  uint64_t exec_used, storage_used;
  uint64_t exec_pool, storage_pool; /* sum to total */
  uint64_t exec_borrowed;           /* storage capacity lent to execution */
  uint64_t storage_borrowed;        /* execution capacity lent to storage */
  uint64_t total;                   /* the budget in force */
  uint64_t exec_init, storage_init; /* the pools' sizes at that budget */
  uint64_t over;                    /* use past the budget (after a shrink) */
  uint64_t withheld[2];             /* the ceiling less the budget, per pool */
} mmi_pool_view;

/* A budget at the ceiling @total, storage's share of it @storage_init. */
void mmi_pool_init(mmi_pool *p, uint64_t total, uint64_t storage_init,
                   bool storage_may_borrow);

/* The pools' sizes at budget @total (at most the ceiling): the ceiling's
 * split, scaled.  Both only grow with @total. */
void mmi_pool_split(const mmi_pool *p, uint64_t total, uint64_t *exec_init,
                    uint64_t *storage_init);

/* The budget in force (a guess while a resize runs). */
uint64_t mmi_pool_budget(const mmi_pool *p);

/* How far pool @which's use is past what the rules allow it now (only
 * after a shrink, or external memory counted by force); 0 if within. */
uint64_t mmi_pool_excess(mmi_pool *p, int which);

/* How far storage's use is past its own pool at the budget in force
 * (what storage may evict of itself after a shrink); 0 if within. */
uint64_t mmi_pool_storage_own_excess(mmi_pool *p);

/* The most one charge of pool @which could be granted under the budget
 * in force (a guess while a resize runs). */
uint64_t mmi_pool_most_now(const mmi_pool *p, int which);

/* Charge @bytes to pool @which whether or not they fit: memory that
 * exists already (polled external memory).  Use may pass the budget;
 * then nothing fits until releases bring it back. */
void mmi_pool_charge_anyway(mmi_pool *p, int which, uint64_t bytes);

/* The most one storage charge could ever be granted. */
uint64_t mmi_pool_storage_max(const mmi_pool *p);

/* Charge @bytes (1 <= bytes <= total) to pool @which (MM_POOL_EXECUTION
 * or MM_POOL_STORAGE) if they fit now; true if charged. */
bool mmi_pool_charge(mmi_pool *p, int which, uint64_t bytes);

/* The same, by name. */
bool mmi_pool_charge_execution(mmi_pool *p, uint64_t bytes);
bool mmi_pool_charge_storage(mmi_pool *p, uint64_t bytes);

/* Charge as much of @bytes to pool @which as fits now, up to all of it;
 * returns what was charged (0 if nothing is free). */
uint64_t mmi_pool_charge_upto(mmi_pool *p, int which, uint64_t bytes);

/* Both pools' use, from a guess that may mix two moments: for
 * heuristics only, never for a decision about a charge. */
uint64_t mmi_pool_used_guess(const mmi_pool *p);

/* Storage bytes in use now (one atomic read of that half, less storage's
 * withheld budget: a guess while a resize runs). */
uint64_t mmi_pool_storage_used(const mmi_pool *p);
/* Storage's half of the word as it is, withheld budget included (evict.c
 * counts that as unsettled), with acquire: what was written before the
 * charges it counts (evict.c's count of unsettled bytes) is visible
 * after it. */
uint64_t mmi_pool_storage_charged_acquire(const mmi_pool *p);

/*
 * Giving capacity back.  Only the wake-up door (held.c: mmi_give_back,
 * mmi_hand_over) calls these, so that no return of capacity can forget
 * to tell held requests: other files of src/ do not see them.
 */
#ifdef MMI_POOL_GIVE_BACK
/* Return @bytes that an earlier charge of pool @which took. */
void mmi_pool_uncharge(mmi_pool *p, int which, uint64_t bytes);
/* The same, by name. */
void mmi_pool_uncharge_execution(mmi_pool *p, uint64_t bytes);
void mmi_pool_uncharge_storage(mmi_pool *p, uint64_t bytes);

/* Evicted storage pages change hands: storage use drops by @out (the
 * evicted bytes, still charged until now) and pool @which gains @in
 * (@in <= @out).  One CAS; cannot fail, cannot over-commit (use drops by
 * @out - @in). */
void mmi_pool_move_from_storage(mmi_pool *p, int which, uint64_t out,
                                uint64_t in);

/* Put budget @total (at most the ceiling) in force: each pool's withheld
 * part moves to the ceiling's split less @total's, in one CAS on the word
 * (a shrink counts more as used, without a check: use may be past the
 * new budget, and then nothing fits until releases bring it back; a grow
 * is a return of capacity).  Calls never overlap (the caller serialises
 * them).  *@delta[which]: how much more is withheld (negative: less). */
void mmi_pool_set_budget(mmi_pool *p, uint64_t total, int64_t delta[2]);
#endif /* MMI_POOL_GIVE_BACK */

void mmi_pool_view_get(mmi_pool *p, mmi_pool_view *v);
/* The picture with execution's use lowered by @less (credit parked with
 * consumers, as if given back). */
void mmi_pool_view_less_exec(const mmi_pool *p, mmi_pool_view *v,
                             uint64_t less);

#endif /* MM_POOL_H */

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
  /* The whole mutable state: lo = execution used, hi = storage used.
   * Alone on its cache line; it is the one word every acquire touches. */
  _Alignas(MM_CACHE_LINE) mm_dword used;
  _Alignas(MM_CACHE_LINE) uint64_t total; /* immutable after init */
  uint64_t exec_init;                     /* execution pool's initial size */
  uint64_t storage_init;                  /* storage pool's initial size */
  bool storage_may_borrow;
} mmi_pool;

/* A consistent picture of the pools, derived from one snapshot. */
typedef struct mmi_pool_view {
  uint64_t exec_used, storage_used;
  uint64_t exec_pool, storage_pool; /* sum to total */
  uint64_t exec_borrowed;           /* storage capacity lent to execution */
  uint64_t storage_borrowed;        /* execution capacity lent to storage */
} mmi_pool_view;

void mmi_pool_init(mmi_pool *p, uint64_t total, uint64_t storage_init,
                   bool storage_may_borrow);

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

/* Storage bytes in use now (one atomic read of that half). */
uint64_t mmi_pool_storage_used(const mmi_pool *p);
/* The same with acquire: what was written before the charges it counts
 * (evict.c's count of unsettled bytes) is visible after it. */
uint64_t mmi_pool_storage_used_acquire(const mmi_pool *p);

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
#endif /* MMI_POOL_GIVE_BACK */

void mmi_pool_view_get(mmi_pool *p, mmi_pool_view *v);
/* The picture for given uses (a snapshot's, or one corrected for credit
 * parked on CPUs). */
void mmi_pool_view_of(const mmi_pool *p, uint64_t exec_used,
                      uint64_t storage_used, mmi_pool_view *v);

#endif /* MM_POOL_H */

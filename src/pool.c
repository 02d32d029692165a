/*
 * pool.c -- two pools, one budget, one atomic word.
 *
 * The whole state of the pools is two numbers, held together in one
 * 16-byte word that only a 16-byte CAS changes:
 *
 *   used = { lo: E = execution bytes in use, hi: S = storage bytes in use }
 *
 * Everything else is derived.  With T the budget and E0, S0 the pools'
 * initial sizes (E0 + S0 = T):
 *
 *   execution pool = E          if E > E0        (execution borrowed E - E0)
 *                  = T - S      else if S > S0   (storage borrowed S - S0)
 *                  = E0         otherwise
 *   storage pool   = T - execution pool
 *
 * Both pools cannot be borrowing at once: E > E0 and S > S0 would make
 * E + S > T.  Deriving the boundary from use, instead of storing it,
 * gives the repayment rule for free: as the borrower releases, its pool
 * shrinks with its use, and once use is back at or under the initial
 * size both pools are exactly at their initial sizes again.
 *
 * The rules, checked against one value of the word and committed by the
 * CAS that replaces exactly that value:
 *
 *   execution charge of b:  E + b + S <= T
 *       (free execution capacity, then free storage capacity, borrowed)
 *   storage charge of b:    S + b <= T - max(E0, E)   (may not borrow)
 *                           S + b <= T - E            (storage_may_borrow)
 *       (storage never takes execution memory in use; it takes free
 *        execution capacity only when allowed to borrow)
 *
 * Why it cannot over-commit: every successful CAS goes from a value that
 * satisfied E + S <= T (and S <= S0 without borrowing) to one that still
 * does, because the check was made on the value the CAS replaced.  A
 * release only lowers E or S.  So the invariants hold for every value the
 * word ever takes: there is no instant at which they fail.
 *
 * Declines are honest too: the fast path guesses the word with two plain
 * 8-byte loads, which may mix two moments.  A guess only ever leads to a
 * CAS (which fails on a torn guess) or, when it says "does not fit", to a
 * re-check against a true snapshot; a request is declined only when a
 * value the word really held did not have room for it.
 */
#define MMI_POOL_GIVE_BACK
#include "pool.h"

#include <assert.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "mm_dword halves assume a little-endian target"
#endif

/* The halves are indexed by mm_pool: MM_POOL_EXECUTION = 0, STORAGE = 1. */
enum { HALF_EXEC = 0, HALF_STORAGE = 1 };

void mmi_pool_init(mmi_pool *p, uint64_t total, uint64_t storage_init,
                   bool storage_may_borrow) {
  assert(storage_init < total);
  p->used = mm_dword_make(0, 0);
  p->total = total;
  p->storage_init = storage_init;
  p->exec_init = total - storage_init;
  p->storage_may_borrow = storage_may_borrow;
}

uint64_t mmi_pool_storage_max(const mmi_pool *p) {
  return p->storage_may_borrow ? p->total : p->storage_init;
}

/* The most that the pool in @half may use, given the other half's use. */
static uint64_t pool_cap(const mmi_pool *p, int half, mm_dword d) {
  uint64_t exec = mm_dword_lo(d), storage = mm_dword_hi(d);
  if (half == HALF_EXEC)
    return p->total - storage;
  if (p->storage_may_borrow)
    return p->total - exec;
  return p->total - (exec > p->exec_init ? exec : p->exec_init);
}

bool mmi_pool_charge(mmi_pool *p, int half, uint64_t bytes) {
  mm_dword cur = mm_dword_load_torn_relaxed(&p->used);
  bool is_snapshot = false;
  for (;;) {
    if (cur.half[half] + bytes > pool_cap(p, half, cur)) {
      if (is_snapshot)
        return false;
      /* A torn guess may decline falsely: decide on a real value. */
      cur = mm_dword_load_snapshot(&p->used);
      is_snapshot = true;
      continue;
    }
    mm_dword next = cur;
    next.half[half] += bytes;
    /* Commit point: the charge exists iff this CAS succeeds, and it
     * succeeds only on the very value the rule was checked against. */
    if (mm_dword_cas_acq_rel(&p->used, &cur, next))
      return true;
    is_snapshot = true; /* a failed CAS hands back the real value */
  }
}

uint64_t mmi_pool_charge_upto(mmi_pool *p, int half, uint64_t bytes) {
  mm_dword cur = mm_dword_load_torn_relaxed(&p->used);
  for (;;) {
    uint64_t cap = pool_cap(p, half, cur), used = cur.half[half];
    uint64_t room = cap > used ? cap - used : 0;
    uint64_t take = room < bytes ? room : bytes;
    if (take == 0)
      return 0; /* a torn guess may say so falsely: harmless, best effort */
    mm_dword next = cur;
    next.half[half] += take;
    /* Commit point, as in mmi_pool_charge. */
    if (mm_dword_cas_acq_rel(&p->used, &cur, next))
      return take;
  }
}

void mmi_pool_move_from_storage(mmi_pool *p, int half, uint64_t out,
                                uint64_t in) {
  assert(in <= out);
  mm_dword cur = mm_dword_load_torn_relaxed(&p->used);
  for (;;) {
    mm_dword next = cur;
    next.half[HALF_STORAGE] -= out;
    next.half[half] += in;
    /* Commit point: one CAS; total use only drops. */
    if (mm_dword_cas_acq_rel(&p->used, &cur, next))
      break;
  }
  assert(cur.half[HALF_STORAGE] >= out);
}

uint64_t mmi_pool_used_guess(const mmi_pool *p) {
  mm_dword d = mm_dword_load_torn_relaxed(&p->used);
  return mm_dword_lo(d) + mm_dword_hi(d);
}

uint64_t mmi_pool_storage_used(const mmi_pool *p) {
  return mm_dword_load_half_relaxed(&p->used, HALF_STORAGE);
}

uint64_t mmi_pool_storage_used_acquire(const mmi_pool *p) {
  /* acquire: pairs with the charge CAS (a full barrier) */
  return mm_dword_load_half_acquire(&p->used, HALF_STORAGE);
}

void mmi_pool_uncharge(mmi_pool *p, int half, uint64_t bytes) {
  mm_dword cur = mm_dword_load_torn_relaxed(&p->used);
  for (;;) {
    mm_dword next = cur;
    next.half[half] -= bytes;
    /* Commit point: one CAS; a release needs no check, only lowers use. */
    if (mm_dword_cas_acq_rel(&p->used, &cur, next))
      break;
  }
  assert(cur.half[half] >= bytes); /* cur is the value the CAS replaced */
}

bool mmi_pool_charge_execution(mmi_pool *p, uint64_t bytes) {
  return mmi_pool_charge(p, HALF_EXEC, bytes);
}

bool mmi_pool_charge_storage(mmi_pool *p, uint64_t bytes) {
  return mmi_pool_charge(p, HALF_STORAGE, bytes);
}

void mmi_pool_uncharge_execution(mmi_pool *p, uint64_t bytes) {
  mmi_pool_uncharge(p, HALF_EXEC, bytes);
}

void mmi_pool_uncharge_storage(mmi_pool *p, uint64_t bytes) {
  mmi_pool_uncharge(p, HALF_STORAGE, bytes);
}

void mmi_pool_view_get(mmi_pool *p, mmi_pool_view *v) {
  mm_dword d = mm_dword_load_snapshot(&p->used);
  mmi_pool_view_of(p, mm_dword_lo(d), mm_dword_hi(d), v);
}

void mmi_pool_view_of(const mmi_pool *p, uint64_t exec_used,
                      uint64_t storage_used, mmi_pool_view *v) {
  v->exec_used = exec_used;
  v->storage_used = storage_used;
  v->exec_borrowed =
      v->exec_used > p->exec_init ? v->exec_used - p->exec_init : 0;
  v->storage_borrowed =
      v->storage_used > p->storage_init ? v->storage_used - p->storage_init : 0;
  if (v->exec_borrowed)
    v->exec_pool = v->exec_used;
  else if (v->storage_borrowed)
    v->exec_pool = p->total - v->storage_used;
  else
    v->exec_pool = p->exec_init;
  v->storage_pool = p->total - v->exec_pool;
}

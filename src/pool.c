/* SPDX-License-Identifier: BSD-2-Clause */
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
 * A budget that moves (mm_set_budget).  T above is the ceiling (the
 * largest budget allowed, fixed at creation), and E0, S0 its split.  The
 * budget in force, T' <= T, is kept in the word itself: the part of each
 * pool's size that T' withholds (W_e = E0 - E0', W_s = S0 - S0', where
 * E0' + S0' = T' is the ceiling's split scaled) is counted in that half
 * as if it were in use.  With E, S the real uses, the rules above read
 *
 *   (E + W_e) + b + (S + W_s) <= T      <=>  E + b + S <= T'
 *   (S + W_s) + b <= T - max(E0, E + W_e)
 *                                       <=>  S + b <= T' - max(E0', E)
 *
 * which are the rules of budget T'.  So the rules and their one CAS are
 * unchanged, and a resize is one more CAS on the same word: a grow lowers
 * the withheld parts (a release), a shrink raises them without a check.
 * After a shrink use may be past the budget; every charge is then refused
 * by the same rules (no value of the word has room), and only releases
 * change that: memory past the budget is never granted again.  Every
 * value the word takes satisfies the rules of the budget in force at
 * that value, or is past it only by what was in use when it shrank.
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
#include <sched.h>

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
  mm_store_relaxed_u64(&p->withheld[HALF_EXEC], 0);
  mm_store_relaxed_u64(&p->withheld[HALF_STORAGE], 0);
  mm_store_relaxed_u32(&p->seq, 0);
}

void mmi_pool_split(const mmi_pool *p, uint64_t total, uint64_t *exec_init,
                    uint64_t *storage_init) {
  assert(total <= p->total);
  /* floor(S0 * T' / T): exact in 128 bits, monotone in T', S0 at T. */
  uint64_t s =
      (uint64_t)((unsigned __int128)p->storage_init * total / p->total);
  *storage_init = s;
  *exec_init = total - s; /* grows with T' too: S0 / T < 1 */
}

uint64_t mmi_pool_storage_max(const mmi_pool *p) {
  return p->storage_may_borrow ? p->total : p->storage_init;
}

static uint64_t withheld(const mmi_pool *p, int half) {
  return mm_load_relaxed_u64(&((mmi_pool *)p)->withheld[half]);
}

uint64_t mmi_pool_budget(const mmi_pool *p) {
  uint64_t w = withheld(p, HALF_EXEC) + withheld(p, HALF_STORAGE);
  return p->total > w ? p->total - w : 0;
}

uint64_t mmi_pool_most_now(const mmi_pool *p, int half) {
  if (half == HALF_EXEC || p->storage_may_borrow)
    return mmi_pool_budget(p);
  uint64_t w = withheld(p, HALF_STORAGE);
  return p->storage_init > w ? p->storage_init - w : 0;
}

/* The most that the pool in @half may use, given the other half's use.
 * (After a shrink the other half may be past the ceiling: then none.) */
static uint64_t pool_cap(const mmi_pool *p, int half, mm_dword d) {
  uint64_t exec = mm_dword_lo(d), storage = mm_dword_hi(d);
  uint64_t other = half == HALF_EXEC || p->storage_may_borrow
                       ? (half == HALF_EXEC ? storage : exec)
                       : (exec > p->exec_init ? exec : p->exec_init);
  return p->total > other ? p->total - other : 0;
}

uint64_t mmi_pool_excess(mmi_pool *p, int half) {
  /* The rule as a sum, unclamped: used + other <= T (pool_cap's clamp to
   * no room at all would undercount how far past it use is). */
  mm_dword d = mm_dword_load_snapshot(&p->used);
  uint64_t exec = mm_dword_lo(d), storage = mm_dword_hi(d);
  uint64_t sum = half == HALF_EXEC || p->storage_may_borrow
                     ? exec + storage
                     : storage + (exec > p->exec_init ? exec : p->exec_init);
  return sum > p->total ? sum - p->total : 0;
}

uint64_t mmi_pool_storage_own_excess(mmi_pool *p) {
  /* S + Ws - S0 = S - S0': storage's half against its pool at the
   * ceiling, which withholds what the budget in force does. */
  mm_dword d = mm_dword_load_snapshot(&p->used);
  uint64_t storage = mm_dword_hi(d);
  return storage > p->storage_init ? storage - p->storage_init : 0;
}

void mmi_pool_charge_anyway(mmi_pool *p, int half, uint64_t bytes) {
  mm_dword cur = mm_dword_load_torn_relaxed(&p->used);
  for (;;) {
    mm_dword next = cur;
    next.half[half] += bytes;
    /* Commit point: no check (the memory exists already). */
    if (mm_dword_cas_acq_rel(&p->used, &cur, next))
      return;
  }
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
  uint64_t s = mm_dword_load_half_relaxed(&p->used, HALF_STORAGE);
  uint64_t w = withheld(p, HALF_STORAGE);
  return s > w ? s - w : 0;
}

uint64_t mmi_pool_storage_charged_acquire(const mmi_pool *p) {
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

void mmi_pool_set_budget(mmi_pool *p, uint64_t total, int64_t delta[2]) {
  uint64_t e0, s0;
  mmi_pool_split(p, total, &e0, &s0);
  uint64_t want[2] = {p->exec_init - e0, p->storage_init - s0};
  for (int h = 0; h < 2; h++)
    delta[h] = (int64_t)(want[h] - withheld(p, h));
  /* seq odd: a picture taken meanwhile is taken again. */
  uint32_t seq = mm_load_relaxed_u32(&p->seq);
  mm_store_seq_cst_u32(&p->seq, seq + 1);
  mm_dword cur = mm_dword_load_torn_relaxed(&p->used);
  for (;;) {
    mm_dword next = cur;
    next.half[HALF_EXEC] += (uint64_t)delta[HALF_EXEC];
    next.half[HALF_STORAGE] += (uint64_t)delta[HALF_STORAGE];
    /* Commit point of a resize: the budget in force is the one this
     * value withholds, for every charge checked against it. */
    if (mm_dword_cas_acq_rel(&p->used, &cur, next))
      break;
  }
  for (int h = 0; h < 2; h++)
    (void)mm_fas_seq_cst_u64(&p->withheld[h], want[h]);
  mm_store_seq_cst_u32(&p->seq, seq + 2);
}

/* The derived fields of @v from its uses and withheld parts. */
static void view_derive(const mmi_pool *p, mmi_pool_view *v) {
  uint64_t we = v->withheld[HALF_EXEC], ws = v->withheld[HALF_STORAGE];
  v->exec_init = p->exec_init - we;
  v->storage_init = p->storage_init - ws;
  v->total = v->exec_init + v->storage_init;
  uint64_t used = v->exec_used + v->storage_used;
  v->over = used > v->total ? used - v->total : 0;
  v->exec_borrowed =
      v->exec_used > v->exec_init ? v->exec_used - v->exec_init : 0;
  v->storage_borrowed =
      v->storage_used > v->storage_init ? v->storage_used - v->storage_init : 0;
  if (v->exec_borrowed)
    v->exec_pool = v->exec_used;
  else if (v->storage_borrowed) /* (past the budget, storage may be) */
    v->exec_pool = v->total > v->storage_used ? v->total - v->storage_used : 0;
  else
    v->exec_pool = v->exec_init;
  if (v->exec_pool > v->total) /* only past the budget */
    v->exec_pool = v->total;
  v->storage_pool = v->total - v->exec_pool;
}

void mmi_pool_view_get(mmi_pool *p, mmi_pool_view *v) {
  /* A seqlock read, all seq_cst: if a resize's CAS or its withheld stores
   * are seen, its odd seq is seen by the second read. */
  for (unsigned spin = 0;; spin++) {
    uint32_t s1 = mm_load_seq_cst_u32(&p->seq);
    mm_dword d = mm_dword_load_snapshot(&p->used);
    v->withheld[HALF_EXEC] = mm_load_seq_cst_u64(&p->withheld[HALF_EXEC]);
    v->withheld[HALF_STORAGE] = mm_load_seq_cst_u64(&p->withheld[HALF_STORAGE]);
    if (!(s1 & 1) && mm_load_seq_cst_u32(&p->seq) == s1) {
      v->exec_used = mm_dword_lo(d) - v->withheld[HALF_EXEC];
      v->storage_used = mm_dword_hi(d) - v->withheld[HALF_STORAGE];
      break;
    }
    if (spin > 16)
      sched_yield(); /* a resize is between its stores */
  }
  view_derive(p, v);
}

void mmi_pool_view_less_exec(const mmi_pool *p, mmi_pool_view *v,
                             uint64_t less) {
  v->exec_used -= less < v->exec_used ? less : v->exec_used;
  view_derive(p, v);
}

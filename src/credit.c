/*
 * credit.c -- per-CPU execution credit.
 *
 * Every execution charge on the pool word is a 16-byte CAS on the one
 * cache line all cores share.  Small charges (at most a quarter of a
 * batch) are served instead from a CPU's *credit*: bytes that CPU charged
 * to the pool word in advance, a batch at a time, and that nobody uses yet.
 *
 *   pool word (exec half)  =  bytes attributed to exec ids
 *                           + credit parked on every CPU
 *
 *   charge b:   CAS credit[cpu] -= b                 (no shared line)
 *               else charge b + batch on the pool word, credit += batch
 *               else: the exact path (pool word only)
 *   release b:  credit[cpu] += b; above two batches, the excess goes back
 *               to the pool word; with requests held, all of it does
 *
 * The error is one-sided and bounded: the pool word charges at least what
 * is used, and at most ncpu x 2 batches more (a batch is total / (16 x
 * ncpu), at most 256 KiB).  Near the limit a batch no longer fits, so
 * charges go to the pool word exactly; and before any request is declined,
 * evicts, or is held, the front door reclaims every CPU's credit
 * (mmi_credit_reclaim) and tries once more, so a request that fits in
 * truly free memory is never declined because of credit parked elsewhere.
 * Held requests see every release at once: while any is held, releases
 * bypass the credit, and a dispatch pass reclaims credit before it lets a
 * waiter wait on.
 *
 * The CPU is sched_getcpu()'s; a thread may migrate, so credits are
 * atomics that any thread may change, and a credit is only ever taken
 * with a CAS that checks it covers the request.
 */
#include "credit.h"

#include <stdlib.h>
#include <unistd.h>

#include "mm_internal.h"

#define MAX_BATCH ((uint64_t)256 << 10)
#define MIN_BATCH ((uint64_t)16 << 10)

mm_status mmi_credit_init(mm_t *mm) {
  mmi_credit *c = &mm->credit;
  long n = sysconf(_SC_NPROCESSORS_CONF);
  c->ncpu = n < 1 ? 1 : n > 1024 ? 1024 : (unsigned)n;
  c->batch = mm->cfg.total_bytes / (16 * (uint64_t)c->ncpu);
  if (c->batch > MAX_BATCH)
    c->batch = MAX_BATCH;
  if (c->batch < MIN_BATCH)
    c->batch = 0; /* a budget this small is charged exactly */
  c->smallest = c->batch / 4;
  c->cpu = aligned_alloc(MM_CACHE_LINE, c->ncpu * sizeof *c->cpu);
  if (!c->cpu)
    return MM_ENOMEM;
  for (unsigned i = 0; i < c->ncpu; i++)
    mm_store_relaxed_u64(&c->cpu[i].bytes, 0);
  return MM_OK;
}

void mmi_credit_fini(mm_t *mm) { free(mm->credit.cpu); }

static mmi_credit_cpu *my_credit(mmi_credit *c) {
  return &c->cpu[mmi_this_cpu(c->ncpu)];
}

/* Are requests held?  Then every byte goes through the pool word, where
 * they can see it. */
static bool anyone_held(mm_t *mm) {
  /* seq_cst: a waiter counts itself in (seq_cst) before it queues; from
   * then on charges leave it first pick and releases go where it sees
   * them.  (Its wake-ups do not rest on this: mmi_held_news.) */
  return mm_load_seq_cst_u64(&mm->held.count[MM_POOL_EXECUTION]) +
             mm_load_seq_cst_u64(&mm->held.count[MM_POOL_STORAGE]) !=
         0;
}

/* Park @bytes, already charged to the pool word, in @cc.  Above two
 * batches, the excess goes back to the pool word, so the credit stays
 * within its bound however many threads refill one CPU's (threads in the
 * middle of a park can pass it for a moment: one park each).  Parked
 * credit is news for held requests: a pass reclaims it (mmi_held_news
 * orders the park before its read of the held counts). */
static void park(mm_t *mm, mmi_credit_cpu *cc, uint64_t bytes) {
  mmi_credit *c = &mm->credit;
  uint64_t v = mm_faa_relaxed_u64(&cc->bytes, bytes) + bytes;
  while (v > 2 * c->batch) {
    if (mm_cas_acq_rel_u64(&cc->bytes, &v, c->batch)) {
      mmi_give_back(mm, MM_POOL_EXECUTION, v - c->batch);
      return;
    }
  }
  mmi_held_news(mm);
}

bool mmi_credit_charge(mm_t *mm, uint64_t bytes) {
  mmi_credit *c = &mm->credit;
  if (bytes > c->smallest || anyone_held(mm))
    return false;
  mmi_credit_cpu *cc = my_credit(c);
  uint64_t v = mm_load_relaxed_u64(&cc->bytes);
  while (v >= bytes) {
    /* Commit point of a charge from credit: the CAS that takes it. */
    if (mm_cas_acq_rel_u64(&cc->bytes, &v, v - bytes))
      return true;
  }
  /* Refill: this request and a batch, in one charge of the pool word;
   * the batch is parked (and seen by held requests) like a release. */
  if (!mmi_pool_charge(&mm->pool, MM_POOL_EXECUTION, bytes + c->batch))
    return false;
  park(mm, cc, c->batch);
  return true;
}

void mmi_credit_uncharge(mm_t *mm, uint64_t bytes) {
  mmi_credit *c = &mm->credit;
  if (c->batch && bytes <= c->smallest && !anyone_held(mm)) {
    park(mm, my_credit(c), bytes);
    return;
  }
  mmi_give_back(mm, MM_POOL_EXECUTION, bytes);
}

bool mmi_credit_reclaim(mm_t *mm) {
  mmi_credit *c = &mm->credit;
  uint64_t back = 0;
  for (unsigned i = 0; i < c->ncpu; i++)
    if (mm_load_seq_cst_u64(&c->cpu[i].bytes))
      back += mm_fas_seq_cst_u64(&c->cpu[i].bytes, 0);
  if (!back)
    return false;
  mmi_test_point(mm, MMI_TP_CREDIT_TAKEN);
  /* Taken from the CPUs and not yet on the pool word: a pass running now
   * sees neither.  The give-back is news, so a pass after it will. */
  mmi_give_back(mm, MM_POOL_EXECUTION, back);
  return true;
}

uint64_t mmi_credit_parked(const mm_t *mm) {
  uint64_t sum = 0;
  for (unsigned i = 0; i < mm->credit.ncpu; i++)
    sum += mm_load_relaxed_u64(&mm->credit.cpu[i].bytes);
  return sum;
}

/*
 * exec.c -- execution memory, charged to exec ids.
 *
 * Each exec id that holds (or held) memory has a record in mm->execs:
 *
 *   mmi_exec { mmi_node; held }      held: bytes charged to the id, or
 *                                          EXEC_RETIRED once the record
 *                                          is being dropped
 *
 * The pool word (pool.c) decides whether bytes may be granted; the record
 * says whose they are.  The two are updated in an order that keeps one
 * invariant at every instant:
 *
 *     sum over records of held  <=  execution bytes charged in the pool
 *
 * so the pool never undercounts (it cannot over-commit through an id) and
 * an id can never give back more than it was charged for:
 *
 *   acquire:      charge the pool (commit point of the grant), then add
 *                 to the record (creating it if needed);
 *   release:      take from the record with one CAS (commit point: the
 *                 check "held >= bytes" and the subtraction are one
 *                 step), then uncharge (through the CPU's credit:
 *                 credit.c);
 *   release_all:  swap held for EXEC_RETIRED (commit point: takes all,
 *                 and no later add can land on this record), unlink the
 *                 record, retire it through RCU, uncharge.
 *
 * Each record carries its incarnation number (gen), so that a block from
 * mm_exec_alloc freed after its id's release_all returns nothing to the
 * id's next incarnation (alloc.c).
 *
 * The grant of a held request (held.c) cannot fail: its waiter carries a
 * spare record, allocated when it was held, for the attribution to use.
 *
 * An acquire that meets a retired record helps unlink it and inserts a
 * fresh one, so a racing release_all either takes its bytes (it added
 * before the swap) or does not see them (they land on the new record);
 * they are never lost.  Records whose held drops to 0 through
 * mm_release_execution are kept, so an id that cycles acquire/release
 * never allocates; mm_release_all_execution (the task's end) drops them.
 */
#include "mm_internal.h"

#include <assert.h>

#define EXEC_RETIRED ((uint64_t)1 << 63)

typedef struct mmi_exec {
  mmi_node node;
  mm_atomic_u64 held;
  uint64_t gen; /* which incarnation of the id: set before publication */
} mmi_exec;

/* Incarnations, numbered across all managers (never reused). */
static mm_atomic_u64 next_gen = 1;

static mmi_exec *exec_find(mm_t *mm, uint64_t exec_id) {
  mmi_node *n = mmi_registry_find(mm->execs, exec_id);
  return n ? caa_container_of(n, mmi_exec, node) : NULL;
}

/* Unlink a record whose held is EXEC_RETIRED; exactly one caller (the one
 * whose remove succeeds) frees it. */
static void exec_unlink(mm_t *mm, mmi_exec *e) {
  if (mmi_registry_remove(mm->execs, &e->node)) {
    mmi_count_sub(&mm->counters, MMI_EXEC_IDS, 1);
    mmi_rcu_retire(&e->node);
  }
}

struct mmi_exec *mmi_exec_spare_new(void) {
  return mmi_meta_alloc(sizeof(mmi_exec));
}

void mmi_exec_spare_free(struct mmi_exec *e) { mmi_meta_free(e); }

mm_status mmi_exec_attribute(mm_t *mm, uint64_t exec_id, uint64_t bytes,
                             struct mmi_exec **spare, uint64_t *gen) {
  for (;;) {
    mmi_exec *e = exec_find(mm, exec_id);
    if (!e) {
      mmi_exec *fresh = NULL;
      if (spare && *spare) {
        fresh = *spare;
        *spare = NULL;
      } else if (!(fresh = mmi_meta_alloc(sizeof *fresh))) {
        return MM_ENOMEM;
      }
      fresh->node.key = exec_id;
      mm_store_relaxed_u64(&fresh->held, bytes);
      fresh->gen = mm_faa_relaxed_u64(&next_gen, 1);
      mmi_node *got = mmi_registry_insert_unique(mm->execs, &fresh->node);
      if (got == &fresh->node) {
        mmi_count_add(&mm->counters, MMI_EXEC_IDS, 1);
        if (gen)
          *gen = fresh->gen;
        return MM_OK;
      }
      /* Never published: keep it as the spare, or free it. */
      if (spare)
        *spare = fresh;
      else
        mmi_meta_free(fresh);
      e = caa_container_of(got, mmi_exec, node);
    }
    uint64_t h = mm_load_relaxed_u64(&e->held);
    while (!(h & EXEC_RETIRED)) {
      /* Commit point of the attribution; the pool already counts it. */
      if (mm_cas_acq_rel_u64(&e->held, &h, h + bytes)) {
        if (gen)
          *gen = e->gen;
        return MM_OK;
      }
    }
    exec_unlink(mm, e); /* being dropped: help, then start again */
  }
}

/* Take @bytes from @exec_id's record (only from incarnation *@gen when
 * @gen is set), then return them; MM_EINVAL if it does not hold them. */
static mm_status exec_release(mm_t *mm, uint64_t exec_id, uint64_t bytes,
                              const uint64_t *gen) {
  mm_status st = MM_EINVAL;
  mmi_rcu_read_lock();
  mmi_exec *e = exec_find(mm, exec_id);
  if (e && (!gen || e->gen == *gen)) {
    uint64_t h = mm_load_relaxed_u64(&e->held);
    /* A retired record holds nothing (its bytes went to release_all). */
    while (!(h & EXEC_RETIRED) && h >= bytes) {
      /* Commit point: check and subtraction in one step. */
      if (mm_cas_acq_rel_u64(&e->held, &h, h - bytes)) {
        st = MM_OK;
        break;
      }
    }
  }
  mmi_rcu_read_unlock();
  if (st == MM_OK)
    mmi_credit_uncharge(mm, bytes);
  return st;
}

mm_status mm_release_execution(mm_t *mm, uint64_t exec_id, size_t bytes) {
  if (!mm || bytes == 0)
    return MM_EINVAL;
  return exec_release(mm, exec_id, bytes, NULL);
}

mm_status mmi_exec_release_gen(mm_t *mm, uint64_t exec_id, uint64_t gen,
                               uint64_t bytes) {
  return exec_release(mm, exec_id, bytes, &gen);
}

size_t mm_release_all_execution(mm_t *mm, uint64_t exec_id) {
  if (!mm)
    return 0;

  uint64_t h = 0;
  mmi_rcu_read_lock();
  mmi_exec *e = exec_find(mm, exec_id);
  if (e) {
    /* Commit point: takes everything; later adds see the mark and go to
     * a fresh record. */
    h = mm_fas_acq_rel_u64(&e->held, EXEC_RETIRED);
    if (h & EXEC_RETIRED)
      h = 0; /* another release_all got here first */
    exec_unlink(mm, e);
  }
  mmi_rcu_read_unlock();
  if (h) {
    mmi_credit_uncharge(mm, h);
  }
  return h;
}

size_t mm_execution_held(const mm_t *mm, uint64_t exec_id) {
  if (!mm)
    return 0;
  uint64_t h = 0;
  mmi_rcu_read_lock();
  mmi_exec *e = exec_find((mm_t *)mm, exec_id);
  if (e) {
    h = mm_load_relaxed_u64(&e->held);
    if (h & EXEC_RETIRED)
      h = 0;
  }
  mmi_rcu_read_unlock();
  return h;
}

void mmi_exec_drop(mmi_node *n, void *mm) {
  (void)mm;
  mmi_meta_free(caa_container_of(n, mmi_exec, node));
}

/*
 * credit.h -- per-CPU execution credit: small execution charges served
 * from bytes a CPU has charged to the pool word in advance.  See credit.c.
 */
#ifndef MM_CREDIT_H
#define MM_CREDIT_H

#include <stdbool.h>
#include <stdint.h>

#include "atomics/mm_atomic.h"
#include "memory_manager.h"

typedef struct mmi_credit_cpu {
  _Alignas(MM_CACHE_LINE) mm_atomic_u64 bytes; /* charged, not yet used */
} mmi_credit_cpu;

typedef struct mmi_credit {
  unsigned ncpu;
  uint64_t batch;    /* taken from the pool word at a time; 0: no credit */
  uint64_t smallest; /* requests above this go to the pool word directly */
  mmi_credit_cpu *cpu;
} mmi_credit;

mm_status mmi_credit_init(mm_t *mm);
void mmi_credit_fini(mm_t *mm);

/* Charge @bytes of execution from this CPU's credit, refilled by a batch
 * from the pool word when that has room.  False: not served this way
 * (large, or the pool is too full for a batch); use the exact path. */
bool mmi_credit_charge(mm_t *mm, uint64_t bytes);

/* Return @bytes of execution: to this CPU's credit (the excess over two
 * batches goes back to the pool), or straight to the pool word when
 * requests are held (so that they see it).  Tells held requests. */
void mmi_credit_uncharge(mm_t *mm, uint64_t bytes);

/* Give every CPU's credit back to the pool word (the exact path, near the
 * limit); true if anything was given back. */
bool mmi_credit_reclaim(mm_t *mm);

/* Credit parked now, all CPUs (charged to the pool, used by nobody). */
uint64_t mmi_credit_parked(const mm_t *mm);

#endif /* MM_CREDIT_H */

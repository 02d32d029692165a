/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * queue.h -- the Concurrency Kit structures behind held requests:
 *
 *   mmi_queue  a lock-free MPMC FIFO (ck_fifo_mpmc) of pointers: held
 *              requests in arrival order;
 *   mmi_stack  a lock-free stack whose consumer takes everything at
 *              once: finished asynchronous requests on their way to the
 *              callback thread.
 *
 * The only file that names ck.  See queue.c for the reclamation rules.
 */
#ifndef MM_QUEUE_H
#define MM_QUEUE_H

#include <stdbool.h>

#include <ck_fifo.h>

#include "atomics/mm_atomic.h"
#include "registry.h"

typedef struct mmi_qentry {
  ck_fifo_mpmc_entry_t fifo; /* first: ck hands back entries */
  struct rcu_head rcu;
} mmi_qentry;

typedef struct mmi_queue {
  ck_fifo_mpmc_t fifo;
} mmi_queue;

/* false if the stub entry cannot be allocated. */
bool mmi_queue_init(mmi_queue *q);
/* Nothing else may use @q; items still queued are not freed. */
void mmi_queue_fini(mmi_queue *q);

/* An entry for one push, allocated before the push so that the push
 * cannot fail.  NULL if out of memory. */
mmi_qentry *mmi_queue_entry_new(void);
void mmi_queue_entry_free(mmi_qentry *e); /* only if never pushed */

/* Append @item.  In a read section. */
void mmi_queue_push(mmi_queue *q, mmi_qentry *e, void *item);

/* Take the oldest item; false if empty.  In a read section.  The entry
 * it leaves behind is freed after a grace period. */
bool mmi_queue_pop(mmi_queue *q, void **item);

typedef struct mmi_stack_link {
  struct mmi_stack_link *next;
} mmi_stack_link;

typedef struct mmi_stack {
  mm_atomic_ptr top; /* mmi_stack_link * */
} mmi_stack;

void mmi_stack_init(mmi_stack *s);
/* Any number of threads may push concurrently. */
void mmi_stack_push(mmi_stack *s, mmi_stack_link *link);
/* Take everything, oldest push first.  One consumer at a time. */
mmi_stack_link *mmi_stack_take_all_fifo(mmi_stack *s);
static inline mmi_stack_link *mmi_stack_next(mmi_stack_link *l) {
  return l->next;
}

#endif /* MM_QUEUE_H */

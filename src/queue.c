/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * queue.c -- Concurrency Kit's lock-free FIFO and stack, made safe to
 * free.
 *
 * ck_fifo_mpmc is the Michael-Scott queue with generation-tagged 16-byte
 * CAS on head and tail.  A dequeue hands back the entry that was the head
 * stub ("garbage"); an enqueuer that read the old tail may still be
 * looking at it, so it cannot be freed at once.  Every push and pop runs
 * in an RCU read section and garbage is freed through mmi_rcu_defer: by
 * the time it is freed, no thread can still hold a pointer to it.
 *
 *   head -> [stub] -> [e1: item] -> [e2: item] -> NULL <- tail
 *   pop:    head -> [e1: stub ] -> [e2: item]       (old stub -> RCU)
 *
 * The stack is a Treiber stack whose consumer takes the whole stack with
 * one exchange, so no single-element pop ever races with a push, and no
 * ABA or reclamation question arises; reversing the taken chain gives
 * push order.  (It is written with C11 atomics rather than ck_stack so
 * that ThreadSanitizer sees the link writes, which ck_stack makes inside
 * its push loop, after any annotation we could place.)
 *
 * ck's atomics are inline assembly that ThreadSanitizer cannot see, so
 * queue items are published with MMI_TSAN_RELEASE before they go in and
 * received with MMI_TSAN_ACQUIRE when they come out (tsan.h).
 */
#include "queue.h"

#include <stddef.h>

#include "tsan.h"

mmi_qentry *mmi_queue_entry_new(void) {
  return mmi_meta_alloc(sizeof(mmi_qentry));
}

void mmi_queue_entry_free(mmi_qentry *e) { mmi_meta_free(e); }

bool mmi_queue_init(mmi_queue *q) {
  mmi_qentry *stub = mmi_queue_entry_new();
  if (!stub)
    return false;
  ck_fifo_mpmc_init(&q->fifo, &stub->fifo);
  return true;
}

void mmi_queue_fini(mmi_queue *q) {
  void *item;
  ck_fifo_mpmc_entry_t *garbage;
  while (ck_fifo_mpmc_dequeue(&q->fifo, &item, &garbage))
    mmi_meta_free(garbage); /* nobody else can see the queue now */
  ck_fifo_mpmc_deinit(&q->fifo, &garbage);
  mmi_meta_free(garbage);
}

void mmi_queue_push(mmi_queue *q, mmi_qentry *e, void *item) {
  MMI_TSAN_RELEASE(item); /* publishes the item's fields */
  MMI_TSAN_RELEASE(e);
  ck_fifo_mpmc_enqueue(&q->fifo, &e->fifo, item);
}

static void entry_free_cb(struct rcu_head *head) {
  mmi_rcu_grace_acquire();
  mmi_meta_free(caa_container_of(head, mmi_qentry, rcu));
}

bool mmi_queue_pop(mmi_queue *q, void **item) {
  ck_fifo_mpmc_entry_t *garbage;
  if (!ck_fifo_mpmc_dequeue(&q->fifo, item, &garbage))
    return false;
  MMI_TSAN_ACQUIRE(*item);
  mmi_qentry *old = (mmi_qentry *)garbage; /* fifo is the first member */
  MMI_TSAN_ACQUIRE(old);
  mmi_rcu_defer(&old->rcu, entry_free_cb); /* enqueuers may still read it */
  return true;
}

void mmi_stack_init(mmi_stack *s) { mm_store_relaxed_ptr(&s->top, NULL); }

void mmi_stack_push(mmi_stack *s, mmi_stack_link *link) {
  void *top = mm_load_relaxed_ptr(&s->top);
  do {
    link->next = top;
    /* release: publishes the link and the object it is embedded in */
  } while (!mm_cas_release_ptr(&s->top, &top, link));
}

mmi_stack_link *mmi_stack_take_all_fifo(mmi_stack *s) {
  /* acquire: pairs with the pushes' release */
  mmi_stack_link *lifo = mm_fas_acquire_ptr(&s->top, NULL), *fifo = NULL;
  while (lifo) {
    mmi_stack_link *next = lifo->next;
    lifo->next = fifo;
    fifo = lifo;
    lifo = next;
  }
  return fifo;
}

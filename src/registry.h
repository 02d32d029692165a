/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * registry.h -- id -> record maps that readers walk without locks, and the
 * RCU read sections and deferred frees that keep their records alive.
 *
 * This is the only place that names liburcu.  Policy code says what it
 * means (mmi_rcu_read_lock, mmi_registry_find, mmi_rcu_retire) and never
 * calls rcu_read_lock or cds_lfht_* itself.
 */
#ifndef MM_REGISTRY_H
#define MM_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <urcu-bp.h>
#include <urcu/rculfhash.h>

#include "atomics/mm_atomic.h"

/* The head of every record kept in a registry; embed it first. */
typedef struct mmi_node {
  struct cds_lfht_node lfht;
  uint64_t key;
  struct rcu_head rcu;
} mmi_node;

/* A record's place in a second registry (one whose keys may repeat, or
 * one that does not free its records): the same head without the RCU
 * link.  The record it is embedded in is freed through its mmi_node. */
typedef struct mmi_link {
  struct cds_lfht_node lfht;
  uint64_t key;
} mmi_link;

typedef struct mmi_registry mmi_registry;

/* Read sections: every find, insert and remove, and every use of a record
 * they return, happens between these two.  They nest, never block, and
 * need no thread registration (liburcu-bp registers threads itself). */
void mmi_rcu_read_lock(void);
void mmi_rcu_read_unlock(void);

/* A registry sized for about @expected records from the start (it still
 * grows and shrinks); NULL if out of memory. */
mmi_registry *mmi_registry_new(uint64_t expected);

/*
 * Drop every record still present, calling @drop(record, @ctx) on each
 * (which must free it; NULL when the caller knows the registry is empty), then
 * free the registry.  Nothing else may use the registry.  Records retired
 * earlier may still wait for their grace period: see mmi_rcu_barrier.
 */
void mmi_registry_destroy(mmi_registry *r, void (*drop)(mmi_node *n, void *ctx),
                          void *ctx);

/* Wait until every deferred free of the process has run (rcu_barrier).
 * Not in a read section, not from an RCU callback. */
void mmi_rcu_barrier(void);

/* The record with @key, or NULL.  In a read section. */
mmi_node *mmi_registry_find(mmi_registry *r, uint64_t key);

/*
 * Publish @n (its key set, its fields initialised) unless a record with
 * the same key is present.  Returns @n if it was published, else the
 * record already there (then @n was never visible to anyone and may be
 * freed at once).  In a read section.
 */
mmi_node *mmi_registry_insert_unique(mmi_registry *r, mmi_node *n);

/* Unlink @n; true if this call unlinked it, false if it already was.
 * Idempotent, so any thread may help.  In a read section. */
bool mmi_registry_remove(mmi_registry *r, mmi_node *n);

/* The same for links.  mmi_registry_link_add publishes @l whatever else
 * has its key; mmi_registry_each_key calls @fn on every link with @key
 * (none added or removed meanwhile is missed or seen twice, by liburcu's
 * guarantees for concurrent traversal), mmi_registry_each on every link.
 * In a read section. */
mmi_link *mmi_registry_link_find(mmi_registry *r, uint64_t key);
mmi_link *mmi_registry_link_insert_unique(mmi_registry *r, mmi_link *l);
void mmi_registry_link_add(mmi_registry *r, mmi_link *l);
bool mmi_registry_link_remove(mmi_registry *r, mmi_link *l);
void mmi_registry_each_key(mmi_registry *r, uint64_t key,
                           void (*fn)(mmi_link *l, void *ctx), void *ctx);
void mmi_registry_each(mmi_registry *r, void (*fn)(mmi_link *l, void *ctx),
                       void *ctx);

/* Free @n with mmi_meta_free once every read section that might still
 * see it has ended (call_rcu).  Call once, after it is unlinked.  @n is
 * the first member of its record (its address is what is freed); a
 * record laid out otherwise defers its own free (mmi_rcu_defer). */
void mmi_rcu_retire(mmi_node *n);

/* Run @fn(@head) once every read section that began before this call has
 * ended (call_rcu).  @fn must call mmi_rcu_grace_acquire() first. */
void mmi_rcu_defer(struct rcu_head *head, void (*fn)(struct rcu_head *));
void mmi_rcu_grace_acquire(void);

/* The manager's own bookkeeping memory (records, the manager itself). */
void *mmi_meta_alloc(size_t bytes);
void mmi_meta_free(void *p);

#endif /* MM_REGISTRY_H */

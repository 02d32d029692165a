/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * registry.c -- id -> record maps on liburcu's lock-free hash table, and
 * the RCU glue that makes reading them safe.
 *
 * A registry is a cds_lfht (split-ordered list, lock-free lookups,
 * inserts and removals; resizes run on liburcu's own worker thread and
 * never block a writer).  Records embed an mmi_node first:
 *
 *   +------------------+----------------+-----+--------------------+
 *   | cds_lfht_node    | rcu_head       | key | the owner's fields |
 *   +------------------+----------------+-----+--------------------+
 *   ^ mmi_node                                 (exec record, page ...)
 *
 * Life of a record: initialised privately, published by
 * mmi_registry_insert_unique, found by readers in read sections, unlinked
 * by mmi_registry_remove (any thread may help), and freed by call_rcu
 * only after a grace period, so a reader that found it before the unlink
 * never touches freed memory.  Deciding *who* may unlink a record is the
 * owner's business (each owner marks records dead with one CAS on a
 * field of its own before unlinking).
 *
 * The RCU flavour is liburcu-bp ("bulletproof"): threads are registered
 * on their first read section, so callers of the manager never register
 * anything.  Its read-side lock and unlock are a thread-local counter
 * and, on kernels with membarrier, a compiler barrier; the first read
 * section of each thread takes liburcu's registry mutex once to register.
 *
 * ThreadSanitizer cannot see liburcu's synchronisation (the library is
 * not instrumented), so under TSan this file states it with annotations:
 * publishing a record releases it and finding it acquires it; every read
 * section's end releases a grace token that the deferred free acquires.
 * Both are exactly the orderings liburcu guarantees.
 */
#include "registry.h"

#include <assert.h>
#include <stdlib.h>

#include "tsan.h"

#define TSAN_ACQUIRE(p) MMI_TSAN_ACQUIRE(p)
#define TSAN_RELEASE(p) MMI_TSAN_RELEASE(p)

#ifdef MMI_TSAN
static char grace_token;
#endif

struct mmi_registry {
  struct cds_lfht *ht;
};

/* splitmix64's finaliser: ids are often dense, buckets want spread. */
static unsigned long hash_key(uint64_t key) {
  key ^= key >> 30;
  key *= UINT64_C(0xbf58476d1ce4e5b9);
  key ^= key >> 27;
  key *= UINT64_C(0x94d049bb133111eb);
  key ^= key >> 31;
  return (unsigned long)key;
}

/* Nodes and links share their head: the key follows the lfht node. */
_Static_assert(offsetof(mmi_node, key) == offsetof(mmi_link, key),
               "mmi_node and mmi_link heads differ");

static int match_key(struct cds_lfht_node *lf, const void *key) {
  const mmi_link *n = caa_container_of(lf, mmi_link, lfht);
  TSAN_ACQUIRE(n); /* liburcu calls this on records other threads published */
  return n->key == *(const uint64_t *)key;
}

void mmi_rcu_read_lock(void) { urcu_bp_read_lock(); }

void mmi_rcu_read_unlock(void) {
  TSAN_RELEASE(&grace_token);
  urcu_bp_read_unlock();
}

void *mmi_meta_alloc(size_t bytes) {
  /* Whole cache lines: records of different threads never share one. */
  size_t rounded = (bytes + MM_CACHE_LINE - 1) & ~(size_t)(MM_CACHE_LINE - 1);
  return aligned_alloc(MM_CACHE_LINE, rounded);
}

void mmi_meta_free(void *p) { free(p); }

mmi_registry *mmi_registry_new(uint64_t expected) {
  mmi_registry *r = mmi_meta_alloc(sizeof *r);
  if (!r)
    return NULL;
  /* Buckets for the expected records up front (a power of two, at most
   * 2^20 = 8 MiB of buckets): resizing happens on liburcu's worker thread,
   * and until it catches up, chains grow long. */
  unsigned long buckets = 64;
  while (buckets < expected && buckets < (1ul << 20))
    buckets <<= 1;
  r->ht = cds_lfht_new(buckets, 64, 0,
                       CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
  if (!r->ht) {
    mmi_meta_free(r);
    return NULL;
  }
  return r;
}

void mmi_registry_destroy(mmi_registry *r, void (*drop)(mmi_node *n, void *ctx),
                          void *ctx) {
  struct cds_lfht_iter it;
  struct cds_lfht_node *lf;
  mmi_node *unlinked = NULL;

  /* Unlink every record, chaining them through their (still unused)
   * rcu_head.  They cannot be dropped yet: liburcu's resize worker may
   * still be walking the buckets. */
  mmi_rcu_read_lock();
  cds_lfht_first(r->ht, &it);
  while ((lf = cds_lfht_iter_get_node(&it)) != NULL) {
    cds_lfht_next(r->ht, &it); /* step off the record before unlinking it */
    if (cds_lfht_del(r->ht, lf) == 0) {
      mmi_node *n = caa_container_of(lf, mmi_node, lfht);
      TSAN_ACQUIRE(n);
      n->rcu.next.next = (struct cds_wfcq_node *)unlinked;
      unlinked = n;
    }
  }
  mmi_rcu_read_unlock();

  /* Waits for any resize in flight; then nothing reads the records. */
  int rc = cds_lfht_destroy(r->ht, NULL);
  assert(rc == 0);
  (void)rc;
  mmi_meta_free(r);
  while (unlinked) {
    mmi_node *n = unlinked;
    unlinked = (mmi_node *)n->rcu.next.next;
    if (drop)
      drop(n, ctx);
  }
}

void mmi_rcu_barrier(void) { urcu_bp_barrier(); }

mmi_node *mmi_registry_find(mmi_registry *r, uint64_t key) {
  struct cds_lfht_iter it;
  cds_lfht_lookup(r->ht, hash_key(key), match_key, &key, &it);
  struct cds_lfht_node *lf = cds_lfht_iter_get_node(&it);
  if (!lf)
    return NULL;
  mmi_node *n = caa_container_of(lf, mmi_node, lfht);
  TSAN_ACQUIRE(n); /* pairs with the release in insert_unique */
  return n;
}

mmi_node *mmi_registry_insert_unique(mmi_registry *r, mmi_node *n) {
  TSAN_RELEASE(n); /* publishes n's initialised fields */
  struct cds_lfht_node *lf = cds_lfht_add_unique(r->ht, hash_key(n->key),
                                                 match_key, &n->key, &n->lfht);
  mmi_node *got = caa_container_of(lf, mmi_node, lfht);
  if (got != n)
    TSAN_ACQUIRE(got);
  return got;
}

bool mmi_registry_remove(mmi_registry *r, mmi_node *n) {
  return cds_lfht_del(r->ht, &n->lfht) == 0;
}

mmi_link *mmi_registry_link_find(mmi_registry *r, uint64_t key) {
  return (mmi_link *)mmi_registry_find(r, key); /* the same head */
}

mmi_link *mmi_registry_link_insert_unique(mmi_registry *r, mmi_link *l) {
  return (mmi_link *)mmi_registry_insert_unique(r, (mmi_node *)l);
}

void mmi_registry_link_add(mmi_registry *r, mmi_link *l) {
  TSAN_RELEASE(l); /* publishes the record's initialised fields */
  cds_lfht_add(r->ht, hash_key(l->key), &l->lfht);
}

bool mmi_registry_link_remove(mmi_registry *r, mmi_link *l) {
  return cds_lfht_del(r->ht, &l->lfht) == 0;
}

void mmi_registry_each_key(mmi_registry *r, uint64_t key,
                           void (*fn)(mmi_link *l, void *ctx), void *ctx) {
  struct cds_lfht_iter it;
  cds_lfht_lookup(r->ht, hash_key(key), match_key, &key, &it);
  for (struct cds_lfht_node *lf; (lf = cds_lfht_iter_get_node(&it)) != NULL;
       cds_lfht_next_duplicate(r->ht, match_key, &key, &it)) {
    mmi_link *l = caa_container_of(lf, mmi_link, lfht);
    TSAN_ACQUIRE(l);
    fn(l, ctx);
  }
}

void mmi_registry_each(mmi_registry *r, void (*fn)(mmi_link *l, void *ctx),
                       void *ctx) {
  struct cds_lfht_iter it;
  cds_lfht_first(r->ht, &it);
  for (struct cds_lfht_node *lf; (lf = cds_lfht_iter_get_node(&it)) != NULL;
       cds_lfht_next(r->ht, &it)) {
    mmi_link *l = caa_container_of(lf, mmi_link, lfht);
    TSAN_ACQUIRE(l);
    fn(l, ctx);
  }
}

void mmi_rcu_grace_acquire(void) {
  TSAN_ACQUIRE(&grace_token); /* every read section before the defer ended */
}

void mmi_rcu_defer(struct rcu_head *head, void (*fn)(struct rcu_head *)) {
  TSAN_RELEASE(&grace_token); /* what this thread did before the defer */
  urcu_bp_call_rcu(head, fn);
}

static void retire_cb(struct rcu_head *head) {
  mmi_rcu_grace_acquire();
  mmi_meta_free(caa_container_of(head, mmi_node, rcu));
}

void mmi_rcu_retire(mmi_node *n) { mmi_rcu_defer(&n->rcu, retire_cb); }

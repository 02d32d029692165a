/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * backing.h -- where the manager's real memory comes from: a private
 * jemalloc arena whose pages come from one reservation of address space,
 * and a tag for every 16 bytes of it (the only file that names jemalloc is
 * backing.c).  This is the bottom of the allocator: it knows nothing of
 * pools, consumers or pages.
 */
#ifndef MM_BACKING_H
#define MM_BACKING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "atomics/mm_atomic.h"
#include "memory_manager.h"
#include "tsan.h"

/* Every block handed out is a multiple of this, and starts on it: its
 * first granule carries its tag. */
#define MMI_GRANULE 16

typedef struct mmi_backing {
  unsigned arena; /* jemalloc arena index */
  int flags;      /* MALLOCX_ARENA(arena) | MALLOCX_TCACHE_NONE */
  size_t batch_mib[4], batch_miblen; /* experimental.batch_alloc; 0: none */
  /* The reservation every page of the arena comes from: [base, end). */
  char *base, *end;
  _Alignas(MM_CACHE_LINE) mm_atomic_u64 bump; /* offset of the unused rest */
  mm_atomic_u32 *tags; /* one per granule of the reservation */
  size_t tags_bytes;
  void *hooks; /* jemalloc's extent_hooks_t, pointing back here */
  /* Bytes in blocks handed out by the arena now, striped by thread. */
  struct {
    _Alignas(MM_CACHE_LINE) mm_atomic_u64 bytes;
  } allocated[16];
} mmi_backing;

/* A reservation sized for a budget of @total bytes.  MM_ENOMEM if the
 * address space, the tag table or the arena cannot be had. */
mm_status mmi_backing_init(mmi_backing *b, uint64_t total);
/* Destroys the arena whole (blocks still out are gone with it) and gives
 * the reservation back. */
void mmi_backing_fini(mmi_backing *b);

/* The size an allocation of @bytes really takes (jemalloc's size class,
 * at least a granule: what the books charge); 0 if @bytes cannot be
 * allocated at all. */
size_t mmi_backing_size(const mmi_backing *b, size_t bytes);
/* A block of mmi_backing_size(@bytes) usable bytes, or NULL. */
void *mmi_backing_alloc(mmi_backing *b, size_t bytes);
/* Up to @n blocks of mmi_backing_size(@bytes) into @out, cut one after
 * another from one slab where jemalloc can (its batch allocation: one
 * bin lock for them all); returns how many. */
unsigned mmi_backing_alloc_batch(mmi_backing *b, size_t bytes, void **out,
                                 unsigned n);
/* Free a block from mmi_backing_alloc(@bytes). */
void mmi_backing_free(mmi_backing *b, void *p, size_t bytes);

/* Is @p inside the manager's reservation?  Reads nothing but two bounds:
 * a pointer this answers false for is not the manager's. */
static inline bool mmi_backing_owns(const mmi_backing *b, const void *p) {
  return (const char *)p >= b->base && (const char *)p < b->end &&
         ((uintptr_t)p & (MMI_GRANULE - 1)) == 0;
}

/* The tag of the granule @p starts (owned by the backing's caller: the
 * block layer writes a live block's owner there, 0 when none).  @p must
 * be owned. */
static inline mm_atomic_u32 *mmi_backing_tag(const mmi_backing *b,
                                             const void *p) {
  return &b->tags[((const char *)p - b->base) / MMI_GRANULE];
}

/* The size class of live block @p (whose tag says it is live). */
size_t mmi_backing_usable(const mmi_backing *b, const void *p);

/* A block changes hands: handed to a user (@bytes of it usable), or taken
 * back (@bytes, its whole class).  Sanitizer builds poison free blocks
 * and tell ThreadSanitizer that a block's reuse follows its free;
 * elsewhere nothing happens. */
#if defined(__SANITIZE_ADDRESS__)
#define MMI_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MMI_ASAN 1
#endif
#endif
#if defined(MMI_ASAN) || defined(MMI_TSAN)
#define MMI_BACKING_SANITIZED 1
void mmi_backing_hand_out(void *p, size_t bytes);
void mmi_backing_take_back(void *p, size_t bytes);
#else
#define MMI_BACKING_SANITIZED 0
static inline void mmi_backing_hand_out(void *p, size_t bytes) {
  (void)p, (void)bytes;
}
static inline void mmi_backing_take_back(void *p, size_t bytes) {
  (void)p, (void)bytes;
}
#endif

/* Give unused pages back to the system. */
void mmi_backing_trim(mmi_backing *b);
/* Bytes in blocks handed out (exact, lock-free), and the arena's active
 * and resident bytes (jemalloc's statistics: takes the arena's mutexes
 * for a moment). */
uint64_t mmi_backing_allocated(const mmi_backing *b);
void mmi_backing_stats(mmi_backing *b, uint64_t *allocated, uint64_t *active,
                       uint64_t *resident);

/* Tests only: the next @n allocations of any manager fail; or every
 * @n-th one from now on (0: none). */
void mmi_backing_fail_next(unsigned n);
void mmi_backing_fail_every(unsigned n);

#endif /* MM_BACKING_H */

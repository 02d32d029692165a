/*
 * backing.h -- where the manager's real memory comes from: a private
 * jemalloc arena (the only file that names jemalloc is backing.c).
 */
#ifndef MM_BACKING_H
#define MM_BACKING_H

#include <stddef.h>
#include <stdint.h>

#include "atomics/mm_atomic.h"
#include "memory_manager.h"

typedef struct mmi_backing {
  unsigned arena;          /* jemalloc arena index (unused under sanitizers) */
  int flags;               /* MALLOCX_ARENA(arena) | MALLOCX_TCACHE_NONE */
  mm_atomic_u64 allocated; /* sanitizer builds: bytes handed out */
} mmi_backing;

/* MM_ENOMEM if the arena cannot be created. */
mm_status mmi_backing_init(mmi_backing *b);
/* Every block must have been freed. */
void mmi_backing_fini(mmi_backing *b);

/* The size an allocation of @bytes really takes (jemalloc's size class:
 * what the books charge); 0 if @bytes cannot be allocated at all. */
size_t mmi_backing_size(const mmi_backing *b, size_t bytes);
/* A block of mmi_backing_size(@bytes) usable bytes, or NULL. */
void *mmi_backing_alloc(mmi_backing *b, size_t bytes);
/* Free a block from mmi_backing_alloc(@bytes). */
void mmi_backing_free(mmi_backing *b, void *p, size_t bytes);
/* Give unused pages back to the system. */
void mmi_backing_trim(mmi_backing *b);
/* The arena's allocated, active and resident bytes. */
void mmi_backing_stats(mmi_backing *b, uint64_t *allocated, uint64_t *active,
                       uint64_t *resident);

/* Tests only: the next @n allocations of any manager fail; or every
 * @n-th one from now on (0: none). */
void mmi_backing_fail_next(unsigned n);
void mmi_backing_fail_every(unsigned n);

#endif /* MM_BACKING_H */

/*
 * mm_internal.h -- the manager's layout, shared by the files of src/.
 *
 * Internal names carry the prefix mmi_; public ones mm_.
 */
#ifndef MM_INTERNAL_H
#define MM_INTERNAL_H

#include "memory_manager.h"

#include "pool.h"
#include "registry.h"
#include "stats.h"

/* 2^62: large enough for any machine, small enough that no sum of two
 * charges overflows 64 bits. */
#define MMI_MAX_TOTAL        ((uint64_t)1 << 62)
#define MMI_MIN_PAGE         ((size_t)4096)
#define MMI_MAX_PAGE         ((size_t)1 << 30)
#define MMI_DEFAULT_PAGE     ((size_t)4096)
#define MMI_DEFAULT_MAX_EXEC ((size_t)8 << 20)

struct mm {
  mmi_pool pool; /* the hot word first, on its own cache line */

  /* Immutable after mm_create. */
  mm_config cfg;       /* with every default filled in */
  mmi_registry *execs; /* exec id -> mmi_exec (exec.c) */
  mmi_registry *pages; /* page id -> mmi_page (storage.c) */

  mmi_counters counters;
};

/* Timeouts: MM_NO_WAIT, MM_WAIT_FOREVER or a positive count. */
static inline bool mmi_timeout_valid(int64_t timeout_ns) {
  return timeout_ns >= MM_WAIT_FOREVER;
}

/* Teardown of each subsystem's records, for mm_destroy. */
void mmi_exec_drop(mmi_node *n);
void mmi_page_drop(mmi_node *n);

#endif /* MM_INTERNAL_H */

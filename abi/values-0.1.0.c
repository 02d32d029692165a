/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * values-0.1.0.c -- the values of the public constants in release 0.1.0,
 * which a program built against that header carries in its code: the
 * ABI dump does not compare them, so scripts/abi compiles this against
 * today's header (-fsyntax-only).  A new release adds its own file.
 */
#include <memory_manager.h>

_Static_assert(MM_POOL_EXECUTION == 0 && MM_POOL_STORAGE == 1, "mm_pool");
_Static_assert(MM_OK == 0 && MM_EINVAL == 1 && MM_ENOMEM == 2 &&
                   MM_ETIMEDOUT == 3 && MM_ECANCELED == 4 && MM_EEXIST == 5 &&
                   MM_ENOENT == 6 && MM_EBUSY == 7 && MM_EINPROGRESS == 8,
               "mm_status");
_Static_assert(MM_NO_WAIT == 0 && MM_WAIT_FOREVER == -1, "timeouts");
_Static_assert(MM_EVICT_RANDOM == 0 && MM_EVICT_SAMPLED_LRU == 1, "eviction");
_Static_assert(MM_BUDGET_CONFIGURED == 0 && MM_BUDGET_CGROUP_V2 == 1 &&
                   MM_BUDGET_CGROUP_V1 == 2 && MM_BUDGET_PHYSICAL == 3,
               "budget_source");

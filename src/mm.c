/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * mm.c -- the manager's life: configuration, creation, destruction,
 * status strings and the stats picture.
 *
 * mm_create turns an mm_config into an immutable plan (every default
 * filled in, every field checked), then builds the subsystems: the pool
 * word (pool.c), the exec-id registry (exec.c), the page registry
 * (storage.c) and the counters (stats.c).  The plan is never changed
 * afterwards, so every thread may read it without synchronisation; the
 * budget in force, which mm_set_budget moves, lives in the pool word
 * (pool.c), and cfg.total_bytes stays the initial one.
 */
#include "mm_internal.h"

#include <string.h>
#include <time.h>

_Atomic(mmi_tp_fn) mmi_tp_hook;

void mmi_test_set_hook(mmi_tp_fn fn) {
  atomic_store_explicit(&mmi_tp_hook, fn, memory_order_relaxed);
}

const char *mm_strerror(mm_status st) {
  switch (st) {
  case MM_OK:
    return "success";
  case MM_EINVAL:
    return "invalid argument, or a request no pool could ever grant";
  case MM_ENOMEM:
    return "declined: not enough memory free now";
  case MM_ETIMEDOUT:
    return "held request reached its deadline";
  case MM_ECANCELED:
    return "held request was cancelled";
  case MM_EEXIST:
    return "page id already registered";
  case MM_ENOENT:
    return "no such page or ticket";
  case MM_EBUSY:
    return "page is pinned";
  case MM_EINPROGRESS:
    return "request is held; its callback reports the outcome";
  }
  return "unknown mm_status";
}

static bool is_pow2(size_t v) { return v && !(v & (v - 1)); }

bool mmi_budget_allowed(const mm_config *plan, const mmi_pool *p,
                        uint64_t total) {
  if (total > p->total || total / 2 < plan->page_size)
    return false;
  uint64_t exec, storage;
  mmi_pool_split(p, total, &exec, &storage);
  return storage >= plan->page_size && storage >= plan->storage_protected_bytes;
}

/* Fill in defaults and check every field; MM_EINVAL on the first bad
 * one.  On success *@ceiling_storage is the storage pool's size at the
 * ceiling (max_total_bytes). */
static mm_status config_plan(const mm_config *in, mm_config *out,
                             uint64_t *ceiling_storage, int *source) {
  *out = *in;
  *source = MM_BUDGET_CONFIGURED;
  if (out->auto_fraction == 0.0)
    out->auto_fraction = MMI_DEFAULT_AUTO_FRACTION;
  if (!(out->auto_fraction > 0.0 && out->auto_fraction <= 1.0))
    return MM_EINVAL;
  if (out->follow_cgroup && out->total_bytes != 0)
    return MM_EINVAL; /* a configured budget has nothing to follow */
  if (out->follow_cgroup_ns < 0 || out->external_poll_ns < 0)
    return MM_EINVAL;
  if (out->follow_cgroup_ns == 0)
    out->follow_cgroup_ns = MMI_DEFAULT_FOLLOW_NS;
  if (out->external_poll_ns == 0)
    out->external_poll_ns = MMI_DEFAULT_POLL_NS;
  if (out->total_bytes == 0) {
    uint64_t page = out->page_size ? out->page_size : MMI_DEFAULT_PAGE;
    if (!is_pow2(page))
      return MM_EINVAL;
    out->total_bytes = mmi_budget_auto(out->auto_fraction, page, source);
  }
  if (out->total_bytes == 0 || out->total_bytes > MMI_MAX_TOTAL)
    return MM_EINVAL;
  if (out->max_total_bytes == 0)
    out->max_total_bytes = out->total_bytes;
  if (out->max_total_bytes < out->total_bytes ||
      out->max_total_bytes > MMI_MAX_TOTAL)
    return MM_EINVAL;

  if (out->storage_fraction == 0.0)
    out->storage_fraction = 0.5;
  /* The negated form also rejects NaN. */
  if (!(out->storage_fraction > 0.0 && out->storage_fraction < 1.0))
    return MM_EINVAL;

  if (out->page_size == 0)
    out->page_size = MMI_DEFAULT_PAGE;
  if (!is_pow2(out->page_size) || out->page_size < MMI_MIN_PAGE ||
      out->page_size > MMI_MAX_PAGE)
    return MM_EINVAL;

  /* Storage's size at the ceiling is ceiling * fraction, in whole pages;
   * execution gets the rest, which is never empty because the fraction is
   * below 1.  Smaller budgets scale that split (pool.c). */
  uint64_t ceiling = out->max_total_bytes;
  uint64_t pages =
      (uint64_t)((double)ceiling * out->storage_fraction) / out->page_size;
  uint64_t storage = pages * out->page_size;
  if (pages == 0 || storage >= ceiling)
    return MM_EINVAL;
  mmi_pool split;
  mmi_pool_init(&split, ceiling, storage, out->storage_may_borrow);
  if (!mmi_budget_allowed(out, &split, out->total_bytes))
    return MM_EINVAL; /* includes the protected floor */

  if (out->max_execution_request == 0)
    out->max_execution_request = out->total_bytes < MMI_DEFAULT_MAX_EXEC
                                     ? out->total_bytes
                                     : MMI_DEFAULT_MAX_EXEC;
  if (out->max_execution_request > out->total_bytes)
    return MM_EINVAL;

  if (out->eviction != MM_EVICT_RANDOM && out->eviction != MM_EVICT_SAMPLED_LRU)
    return MM_EINVAL;
  if (out->lru_samples == 0)
    out->lru_samples = MMI_DEFAULT_LRU_SAMPLES;
  if (out->lru_samples > MMI_MAX_LRU_SAMPLES)
    return MM_EINVAL;

  /* The victim set keeps two slots per page storage could ever hold. */
  if (mmi_pool_storage_max(&split) / out->page_size > MMI_MAX_PAGES)
    return MM_EINVAL;

  if (out->cpu_cache_bytes == 0)
    out->cpu_cache_bytes = MMI_DEFAULT_CPU_CACHE;
  if (out->cpu_cache_bytes > MMI_MAX_CPU_CACHE)
    return MM_EINVAL;

  if (out->overtake_limit_ns < 0)
    return MM_EINVAL;
  if (out->overtake_limit_ns == 0)
    out->overtake_limit_ns = MMI_DEFAULT_OVERTAKE_NS;

  if (out->seed == 0) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    out->seed = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) |
                1; /* never 0 */
  }
  *ceiling_storage = storage;
  return MM_OK;
}

mm_status mm_create(const mm_config *cfg, mm_t **out) {
  if (!cfg || !out)
    return MM_EINVAL;

  mm_config plan;
  uint64_t storage_init;
  int source;
  mm_status st = config_plan(cfg, &plan, &storage_init, &source);
  if (st != MM_OK)
    return st;

  mm_t *mm = mmi_meta_alloc(sizeof *mm);
  if (!mm)
    return MM_ENOMEM;
  memset(mm, 0, sizeof *mm);
  mm->cfg = plan;
  mm->born_ns = mm_now_ns();
  mm_store_relaxed_u32(&mm->budget_source, (uint32_t)source);
  mmi_pool_init(&mm->pool, plan.max_total_bytes, storage_init,
                plan.storage_may_borrow);
  mmi_counters_init(&mm->counters);

  /* Build each subsystem in turn; on failure undo the ones built. */
  st = MM_ENOMEM;
  if ((st = mmi_consumers_init(mm)) != MM_OK)
    goto no_consumers;
  if (!(mm->pages =
            mmi_registry_new(mmi_pool_storage_max(&mm->pool) / plan.page_size)))
    goto no_pages;
  if ((st = mmi_backing_init(&mm->backing, plan.max_total_bytes)) != MM_OK)
    goto no_backing;
  if ((st = mmi_tcaches_init(&mm->caches, &mm->backing,
                             plan.cpu_cache_bytes)) != MM_OK)
    goto no_caches;
  if ((st = mmi_victims_init(mm)) != MM_OK)
    goto no_victims;
  if ((st = mmi_resize_init(mm)) != MM_OK)
    goto no_resize;
  /* Below the ceiling, the difference is withheld from the start (before
   * the service thread can resize). */
  mmi_budget_apply(mm, plan.total_bytes);
  mmi_budget_applied(mm);
  if ((st = mmi_held_init(mm)) != MM_OK)
    goto no_held;
  *out = mm;
  return MM_OK;

no_held:
  mmi_resize_fini(mm);
no_resize:
  mmi_victims_fini(mm);
no_victims:
  mmi_tcaches_fini(&mm->caches);
no_caches:
  mmi_backing_fini(&mm->backing);
no_backing:
  mmi_registry_destroy(mm->pages, NULL, NULL);
no_pages:
  mmi_consumers_fini(mm);
no_consumers:
  mmi_meta_free(mm);
  return st;
}

void mm_destroy(mm_t *mm) {
  if (!mm)
    return;
  mmi_held_shutdown(mm);
  mmi_resize_fini(mm);
  mmi_registry_destroy(mm->pages, mmi_page_drop, mm); /* frees their data */
  mmi_exec_forget_all(mm); /* before the consumers go */
  mmi_consumers_fini(mm);
  mmi_victims_fini(mm);
  mmi_tcaches_fini(&mm->caches);
  mmi_backing_fini(&mm->backing); /* after every block went back */
  mmi_meta_free(mm);
  mmi_rcu_barrier(); /* records retired earlier are freed before we return */
}

struct count_sum {
  mmi_counter c;
  uint64_t sum;
};

static void add_thread_share(const void *extra, void *ctx) {
  struct count_sum *cs = ctx;
  const mmi_thread_part *tp = extra;
  cs->sum += mm_load_relaxed_u64(&tp->count[cs->c]);
}

uint64_t mmi_count_total(const mm_t *mm, mmi_counter c) {
  struct count_sum cs = {c, mmi_count_sum(&mm->counters, c)};
  mmi_tcaches_each(&mm->caches, add_thread_share, &cs);
  return cs.sum;
}

uint64_t mmi_count_level(const mm_t *mm, mmi_counter c) {
  int64_t v = (int64_t)mmi_count_total(mm, c);
  return v < 0 ? 0 : (uint64_t)v;
}

void mm_get_stats(const mm_t *mm, mm_stats *out) {
  if (!out)
    return;
  memset(out, 0, sizeof *out);
  if (!mm)
    return;

  /* The snapshot CAS writes the pool word back unchanged; the manager is
   * never a const object, only const in this call's promise. */
  /* Spare quota of consumers is charged but used by nobody: the picture
   * is the books', as if it had been given back. */
  mmi_pool_view v;
  mmi_pool_view_get((mmi_pool *)&mm->pool, &v);
  uint64_t credit = mmi_consumers_spare((mm_t *)mm);
  if (credit > v.exec_used)
    credit = v.exec_used;
  mmi_pool_view_less_exec(&mm->pool, &v, credit);
  out->total_bytes = v.total;
  out->execution_pool_bytes = v.exec_pool;
  out->storage_pool_bytes = v.storage_pool;
  out->execution_used_bytes = v.exec_used;
  out->storage_used_bytes = v.storage_used;
  out->execution_borrowed_bytes = v.exec_borrowed;
  out->storage_borrowed_bytes = v.storage_borrowed;

  out->storage_pinned_bytes = mmi_count_level(mm, MMI_PINNED_BYTES);
  out->granted = mmi_count_total(mm, MMI_GRANTED);
  out->declined = mmi_count_total(mm, MMI_DECLINED);
  out->held = mmi_count_total(mm, MMI_HELD);
  out->held_now = mmi_count_level(mm, MMI_HELD_NOW);
  out->timed_out = mmi_count_total(mm, MMI_TIMED_OUT);
  out->cancelled = mmi_count_total(mm, MMI_CANCELLED);
  out->evictions = mmi_count_total(mm, MMI_EVICTIONS);
  out->evicted_bytes = mmi_count_total(mm, MMI_EVICTED_BYTES);
  out->storage_pages = mmi_count_level(mm, MMI_STORAGE_PAGES);
  uint64_t allocated, active, resident;
  mmi_backing_stats((mmi_backing *)&mm->backing, &allocated, &active,
                    &resident);
  out->backing_allocated_bytes = allocated;
  out->backing_active_bytes = active;
  out->backing_resident_bytes = resident;
  out->cache_parked_bytes = mmi_tcaches_parked(&mm->caches);
  out->execution_credit_bytes = credit;
  out->execution_ids = mmi_count_level(mm, MMI_EXEC_IDS);
  out->held_granted = mmi_count_total(mm, MMI_HELD_GRANTED);
  out->reclaims = mmi_count_total(mm, MMI_RECLAIMS);
  out->reclaimed_bytes = mmi_count_total(mm, MMI_RECLAIMED_BYTES);
  out->reclaim_ns = mmi_count_total(mm, MMI_RECLAIM_NS);
  out->budget_source = (int)mm_load_relaxed_u32(&mm->budget_source);
  out->max_total_bytes = mm->pool.total;
  out->budget_changes = mm_load_relaxed_u64(&mm->budget_changes);
  out->over_budget_bytes = v.over;
  out->external_bytes = mm_load_relaxed_u64(&mm->external_bytes);
  out->external_polled_bytes = mm_load_relaxed_u64(&mm->external_polled);
}

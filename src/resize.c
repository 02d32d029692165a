/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * resize.c -- the elastic budget: mm_set_budget, and the service thread's
 * periodic work (external_poll, follow_cgroup).
 *
 * The budget in force lives in the pool word itself (pool.c): what a
 * smaller budget withholds from the ceiling is counted in each half as if
 * in use, so the charge rules, unchanged, are the new budget's, and a
 * resize is one CAS on the word.  A grow is a return of capacity (through
 * the door, mmi_budget_apply: held requests that fit are granted); a
 * shrink takes effect at its CAS for every charge after it, and may leave
 * use past the budget.  Then:
 *
 *   count in (held.over)                    spare quota stops being used
 *                                          (mmi_spare_usable), and every
 *                                          release and unpin kicks a pass
 *   take every spare back, squeeze caches
 *   loop:  seq = budget_seq
 *          fits?  done
 *          evict unpinned pages for what is over (all or nothing per
 *            try, halving the try until a page: evict.c gives what it
 *            evicts to nobody)
 *          ask consumers once (reclaim.c), before the first wait
 *          wait for budget_seq to move (each pass bumps it while a shrink
 *            waits: held.c kick), or the deadline
 *   count out
 *
 * No wake-up is lost: the shrink counts in (seq_cst) before its first
 * look, so every release after that look reaches a kick (the door reads
 * `over` after its fence), and the pass the kick runs -- or the one
 * its baton holder runs after it -- bumps budget_seq after it began.  The
 * shrink reads budget_seq before it looks: either its look sees the
 * release, or the futex sees budget_seq moved.
 *
 * Resizes are serialised by mm->resize for their few writes only
 * (validation, the guarantees' check, the CAS); the wait runs outside it,
 * so a reclaim callback that resizes, or a second shrink, never waits for
 * the lock across a wait.  The guarantees' check is a Dekker pair with
 * mm_consumer_set_limits (consumer.c): a shrink lowers exec_floor, then
 * reads the guarantees' sum; set_limits changes the sum, then reads
 * exec_floor.
 */
#include "mm_internal.h"

mm_status mmi_resize_init(mm_t *mm) {
  uint64_t exec, storage;
  mmi_pool_split(&mm->pool, mm->cfg.total_bytes, &exec, &storage);
  mm_store_relaxed_u64(&mm->exec_floor, exec);
  mm_store_relaxed_u64(&mm->budget_changes, 0);
  mm_store_relaxed_u64(&mm->external_bytes, 0);
  mm_store_relaxed_u64(&mm->external_polled, 0);
  if (pthread_mutex_init(&mm->resize, NULL) != 0)
    return MM_ENOMEM;
  if (!(mm->externals = mmi_registry_new(16))) {
    pthread_mutex_destroy(&mm->resize);
    return MM_ENOMEM;
  }
  return MM_OK;
}

static void drop_external(mmi_node *n, void *ctx) {
  (void)ctx;
  mmi_meta_free(n);
}

void mmi_resize_fini(mm_t *mm) {
  mmi_registry_destroy(mm->externals, drop_external, NULL);
  pthread_mutex_destroy(&mm->resize);
}

/* Put @total in force, if the plan and the guarantees allow it.  Under
 * mm->resize. */
static mm_status budget_put(mm_t *mm, uint64_t total) {
  if (!mmi_budget_allowed(&mm->cfg, &mm->pool, total))
    return MM_EINVAL;
  uint64_t exec, storage, was_exec, was_storage;
  mmi_pool_split(&mm->pool, total, &exec, &storage);
  mmi_pool_split(&mm->pool, mmi_pool_budget(&mm->pool), &was_exec,
                 &was_storage);
  if (exec < was_exec) {
    /* seq_cst, both: the first half of the pair with set_limits. */
    (void)mm_fas_seq_cst_u64(&mm->exec_floor, exec);
    if (mm_load_seq_cst_u64(&mm->guaranteed) > exec) {
      (void)mm_fas_seq_cst_u64(&mm->exec_floor, was_exec);
      return MM_EINVAL; /* the guarantees need a larger execution pool */
    }
  }
  if (total != mmi_pool_budget(&mm->pool)) {
    mmi_budget_apply(mm, total);
    mm_faa_relaxed_u64(&mm->budget_changes, 1);
  }
  (void)mm_fas_seq_cst_u64(&mm->exec_floor, exec);
  return MM_OK;
}

/* Does use fit the budget in force?  (Both pools' rules: one snapshot
 * each; a release between them only helps.) */
static bool fits_now(mm_t *mm) {
  return mmi_pool_excess(&mm->pool, MM_POOL_STORAGE) == 0 &&
         mmi_pool_excess(&mm->pool, MM_POOL_EXECUTION) == 0;
}

/* Use within @total, if a later resize put a larger budget in force. */
static bool fits_mine(mm_t *mm, uint64_t total) {
  if (fits_now(mm))
    return true;
  mmi_pool_view v;
  mmi_pool_view_get(&mm->pool, &v);
  return v.total > total && v.exec_used + v.storage_used <= total;
}

/* What pool @pool's use is over that its evictions may cover. */
static uint64_t over_of(mm_t *mm, mm_pool pool) {
  uint64_t x = mmi_pool_excess(&mm->pool, pool);
  if (pool == MM_POOL_STORAGE) { /* its own part only (evict.c) */
    uint64_t own = mmi_pool_storage_own_excess(&mm->pool);
    x = x < own ? x : own;
  }
  return x;
}

/* Evict that, as far as unpinned pages go: a try covers all of it or
 * nothing, so a try that fails is halved down to a page. */
static void evict_over(mm_t *mm, mm_pool pool) {
  uint64_t x = over_of(mm, pool);
  while (x) {
    if (mmi_evict_excess(mm, pool, x)) {
      x = over_of(mm, pool);
      continue;
    }
    if (x <= mm->cfg.page_size)
      break;
    x /= 2;
  }
}

/* Storage past its own pool first (storage's evictions, down to its pool
 * at this budget, above the protected floor), then the rest for
 * execution (within the floor). */
static void evict_all_over(mm_t *mm) {
  evict_over(mm, MM_POOL_STORAGE);
  evict_over(mm, MM_POOL_EXECUTION);
}

struct settle {
  mm_t *mm;
  uint64_t total;
  int64_t deadline;
};

static bool still_over(void *arg) {
  struct settle *s = arg;
  return !fits_mine(s->mm, s->total) && mm_now_ns() < s->deadline;
}

void mmi_budget_count_in(mm_t *mm) {
  /* seq_cst: before the first look (the door reads `over` after its
   * fence), and before the shrink's CAS or the charge past the budget,
   * so that no spare quota is taken past it (the pair with a release's
   * CAS and its read of `over`: mmi_anyone_held). */
  mm_faa_seq_cst_u64(&mm->held.over, 1);
}

static void count_out(mm_t *mm) {
  mm_faa_seq_cst_u64(&mm->held.over, (uint64_t)-1);
}

mm_status mmi_budget_settle(mm_t *mm, uint64_t total, int64_t deadline,
                            bool no_ask) {
  if (fits_mine(mm, total)) {
    count_out(mm);
    return MM_OK;
  }
  mmi_held *h = &mm->held;
  mm_faa_seq_cst_u32(&h->budget_waits, 1); /* before the first read of seq */
  (void)mmi_consumers_reclaim(mm);         /* spare quota first: it is in use */
  mmi_tcaches_squeeze(&mm->caches, true);
  struct settle s = {mm, total, deadline};
  bool asked = no_ask;
  mm_status st;
  for (;;) {
    uint32_t seq = mm_load_seq_cst_u32(&h->budget_seq);
    if (fits_mine(mm, total)) {
      st = MM_OK;
      break;
    }
    if (!mmi_in_evict_callback(mm))
      evict_all_over(mm);
    if (fits_mine(mm, total)) {
      st = MM_OK;
      break;
    }
    if (!asked && mm_load_relaxed_u64(&mm->reclaimers) != 0 &&
        mm_now_ns() < deadline) {
      asked = true;
      mm_faa_seq_cst_u64(&h->asking, 1); /* not quiet (mmi_test_quiet) */
      mmi_reclaim_ask(mm, NULL, mmi_pool_excess(&mm->pool, MM_POOL_EXECUTION),
                      still_over, &s);
      mm_faa_seq_cst_u64(&h->asking, (uint64_t)-1);
      continue;
    }
    if (mm_now_ns() >= deadline) {
      st = MM_ETIMEDOUT;
      break;
    }
    mm_futex_wait(&h->budget_seq, seq, deadline);
  }
  mm_faa_seq_cst_u32(&h->budget_waits, (uint32_t)-1);
  mmi_pressure_update(mm);
  if (st == MM_OK) {
    count_out(mm);
    return st;
  }
  /* Still past the budget: our count stays in, so that spare quota stays
   * unused and every release and unpin reaches a pass, which evicts what
   * is over and counts it out once use fits (mmi_budget_pass).  One such
   * count at a time; and a look after it is left, since the last release
   * may have passed before it was. */
  uint32_t none = 0;
  if (!mm_cas_acq_rel_u32(&mm->budget_over, &none, 1)) {
    count_out(mm); /* another one stays in */
    return fits_now(mm) ? MM_OK : MM_ETIMEDOUT;
  }
  if (fits_now(mm)) {
    uint32_t one = 1;
    if (mm_cas_acq_rel_u32(&mm->budget_over, &one, 0))
      count_out(mm);
    return MM_OK;
  }
  return MM_ETIMEDOUT;
}

bool mmi_budget_pass(mm_t *mm) {
  uint64_t was = mmi_pool_excess(&mm->pool, MM_POOL_EXECUTION) +
                 mmi_pool_excess(&mm->pool, MM_POOL_STORAGE);
  if (was && !mmi_in_evict_callback(mm))
    evict_all_over(mm);
  if (!fits_now(mm))
    return was > mmi_pool_excess(&mm->pool, MM_POOL_EXECUTION) +
                     mmi_pool_excess(&mm->pool, MM_POOL_STORAGE);
  uint32_t one = 1;
  if (mm_cas_acq_rel_u32(&mm->budget_over, &one, 0))
    count_out(mm);
  return was != 0;
}

/* Count in, put @total in force, tell held requests (outside the lock:
 * a pass may run eviction callbacks), settle. */
static mm_status resize(mm_t *mm, uint64_t total, int64_t deadline,
                        bool no_ask) {
  mmi_budget_count_in(mm);
  pthread_mutex_lock(&mm->resize);
  mm_status st = budget_put(mm, total);
  pthread_mutex_unlock(&mm->resize);
  if (st != MM_OK) {
    count_out(mm);
    return st;
  }
  mmi_budget_applied(mm);
  return mmi_budget_settle(mm, total, deadline, no_ask);
}

mm_status mm_set_budget(mm_t *mm, size_t total_bytes, int64_t timeout_ns) {
  if (!mm || !mmi_timeout_valid(timeout_ns) || mmi_in_evict_callback(mm))
    return MM_EINVAL;
  /* From a callback, waiting could wait for the callback's own caller:
   * a shrink there does what it can at once. */
  bool in_callback = mmi_in_reclaim_callback() || mmi_on_service_thread(mm);
  if (in_callback)
    timeout_ns = MM_NO_WAIT;
  int64_t now = mm_now_ns();
  int64_t deadline = timeout_ns == MM_WAIT_FOREVER      ? MM_FOREVER_NS
                     : timeout_ns > MM_FOREVER_NS - now ? MM_FOREVER_NS
                                                        : now + timeout_ns;
  return resize(mm, total_bytes, deadline, in_callback);
}

/* ---- the service thread's periodic work ---------------------------------
 */

int64_t mmi_service_first_tick(mm_t *mm) {
  int64_t now = mm_now_ns();
  mm->poll_at = mm->cfg.external_poll ? now : MM_FOREVER_NS;
  mm->follow_at = mm->cfg.follow_cgroup ? now : MM_FOREVER_NS;
  mm->followed = mm->cfg.total_bytes; /* what mm_create read */
  return mm->poll_at < mm->follow_at ? mm->poll_at : mm->follow_at;
}

/* follow_cgroup: when the budget the environment gives changes, resize
 * to it, within the ceiling (a mm_set_budget meanwhile stands until the
 * environment changes again; a limit that gives a budget the plan does
 * not allow is not followed). */
static void follow(mm_t *mm) {
  int source;
  uint64_t total =
      mmi_budget_auto(mm->cfg.auto_fraction, mm->cfg.page_size, &source);
  if (total > mm->pool.total)
    total = mm->pool.total;
  if (total == 0 || total == mm->followed)
    return;
  mm->followed = total;
  if (resize(mm, total, mm_now_ns(), true) != MM_EINVAL)
    mm_store_relaxed_u32(&mm->budget_source, (uint32_t)source);
}

int64_t mmi_service_tick(mm_t *mm) {
  int64_t now = mm_now_ns();
  if (mm->poll_at <= now) {
    mmi_external_polled(mm, mm->cfg.external_poll(mm->cfg.external_poll_ctx));
    mm->poll_at = mm_now_ns() + mm->cfg.external_poll_ns;
  }
  if (mm->follow_at <= now) {
    follow(mm);
    mm->follow_at = mm_now_ns() + mm->cfg.follow_cgroup_ns;
  }
  return mm->poll_at < mm->follow_at ? mm->poll_at : mm->follow_at;
}

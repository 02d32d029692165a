/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stats_print.c -- mm_stats_print: the mm_stats picture as a table for
 * people, or as one JSON object for tools (opts "J"), in the manner of
 * malloc_stats_print: the text goes to a callback in pieces.
 *
 * Both forms are made from one mm_get_stats call, so their figures agree
 * with each other and with that picture.  JSON field names are stable:
 * fields are only ever added, and "version" says which set a reader has.
 */
#include "mm_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct out {
  void (*write)(void *ctx, const char *text);
  void *ctx;
};

static void to_stderr(void *ctx, const char *text) {
  (void)ctx;
  fputs(text, stderr);
}

/* One piece: formatted into a line-sized buffer (a longer piece is cut,
 * never overrun; every piece here is far shorter). */
__attribute__((format(printf, 2, 3))) static void put(struct out *o,
                                                      const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  o->write(o->ctx, buf);
}

static const char *source_name(int source) {
  switch (source) {
  case MM_BUDGET_CGROUP_V2:
    return "cgroup-v2";
  case MM_BUDGET_CGROUP_V1:
    return "cgroup-v1";
  case MM_BUDGET_PHYSICAL:
    return "physical";
  default:
    return "configured";
  }
}

/* @bytes in the unit that shows it best: "512 B", "4.0 KiB", "1.5 MiB". */
struct size {
  char text[24];
};
static struct size size_of(uint64_t bytes) {
  static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  struct size z;
  double v = (double)bytes;
  int u = 0;
  while (v >= 1024.0 && u < 5) {
    v /= 1024.0;
    u++;
  }
  if (u == 0)
    snprintf(z.text, sizeof z.text, "%llu B", (unsigned long long)bytes);
  else
    snprintf(z.text, sizeof z.text, "%.1f %s", v, unit[u]);
  return z;
}
#define SZ(x) (size_of(x).text)

static double pct(uint64_t part, uint64_t whole) {
  return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

static void print_table(struct out *o, const mm_stats *s, double up) {
  put(o, "___ memory_manager statistics ___\n");
  put(o, "budget: %s (%s; at most %s), %llu changes, %s past it\n",
      SZ(s->total_bytes), source_name(s->budget_source), SZ(s->max_total_bytes),
      (unsigned long long)s->budget_changes, SZ(s->over_budget_bytes));
  put(o, "%-10s %12s %12s %7s %12s\n", "pool", "size", "used", "used",
      "borrowed");
  put(o, "%-10s %12s %12s %6.1f%% %12s\n", "execution",
      SZ(s->execution_pool_bytes), SZ(s->execution_used_bytes),
      pct(s->execution_used_bytes, s->execution_pool_bytes),
      SZ(s->execution_borrowed_bytes));
  put(o, "%-10s %12s %12s %6.1f%% %12s\n", "storage", SZ(s->storage_pool_bytes),
      SZ(s->storage_used_bytes),
      pct(s->storage_used_bytes, s->storage_pool_bytes),
      SZ(s->storage_borrowed_bytes));
  put(o, "storage: %llu pages, %s pinned\n",
      (unsigned long long)s->storage_pages, SZ(s->storage_pinned_bytes));
  put(o,
      "execution: %llu exec ids; %s of quota reserved ahead by "
      "consumers (charged, held by nobody)\n",
      (unsigned long long)s->execution_ids, SZ(s->execution_credit_bytes));
  put(o,
      "per-thread caches: %s of freed blocks parked (allocated, not "
      "charged)\n",
      SZ(s->cache_parked_bytes));
  put(o,
      "requests: %llu granted, %llu declined; %llu were held: %llu "
      "granted after waiting, %llu timed out, %llu cancelled; %llu held "
      "now\n",
      (unsigned long long)s->granted, (unsigned long long)s->declined,
      (unsigned long long)s->held, (unsigned long long)s->held_granted,
      (unsigned long long)s->timed_out, (unsigned long long)s->cancelled,
      (unsigned long long)s->held_now);
  put(o,
      "eviction: %llu pages, %s; %.0f pages/s since creation (%.1f s "
      "ago)\n",
      (unsigned long long)s->evictions, SZ(s->evicted_bytes),
      up > 0 ? (double)s->evictions / up : 0.0, up);
  put(o, "reclaim: %llu callbacks gave back %s in %.3f ms\n",
      (unsigned long long)s->reclaims, SZ(s->reclaimed_bytes),
      (double)s->reclaim_ns / 1e6);
  put(o, "external: %s (%s of it polled)\n", SZ(s->external_bytes),
      SZ(s->external_polled_bytes));
  put(o,
      "allocator (the manager's jemalloc arena): %s allocated, %s "
      "active, %s resident\n",
      SZ(s->backing_allocated_bytes), SZ(s->backing_active_bytes),
      SZ(s->backing_resident_bytes));
  put(o, "--- end of memory_manager statistics ---\n");
}

#define U(x) ((unsigned long long)(x))

/* Integers only: a double would print with the locale's decimal point
 * (a host that called setlocale may have a comma), which is not JSON. */
static void print_json(struct out *o, const mm_stats *s, double up) {
  put(o,
      "{\"version\":1,\"uptime_ms\":%llu,"
      "\"budget\":{\"total_bytes\":%llu,\"max_total_bytes\":%llu,"
      "\"source\":\"%s\",\"changes\":%llu,\"over_bytes\":%llu},",
      U(up * 1e3), U(s->total_bytes), U(s->max_total_bytes),
      source_name(s->budget_source), U(s->budget_changes),
      U(s->over_budget_bytes));
  put(o,
      "\"execution\":{\"pool_bytes\":%llu,\"used_bytes\":%llu,"
      "\"borrowed_bytes\":%llu,\"credit_bytes\":%llu,\"exec_ids\":%llu},",
      U(s->execution_pool_bytes), U(s->execution_used_bytes),
      U(s->execution_borrowed_bytes), U(s->execution_credit_bytes),
      U(s->execution_ids));
  put(o,
      "\"storage\":{\"pool_bytes\":%llu,\"used_bytes\":%llu,"
      "\"borrowed_bytes\":%llu,\"pinned_bytes\":%llu,\"pages\":%llu},",
      U(s->storage_pool_bytes), U(s->storage_used_bytes),
      U(s->storage_borrowed_bytes), U(s->storage_pinned_bytes),
      U(s->storage_pages));
  put(o,
      "\"requests\":{\"granted\":%llu,\"declined\":%llu,\"held\":%llu,"
      "\"held_granted\":%llu,\"timed_out\":%llu,\"cancelled\":%llu,"
      "\"held_now\":%llu},",
      U(s->granted), U(s->declined), U(s->held), U(s->held_granted),
      U(s->timed_out), U(s->cancelled), U(s->held_now));
  put(o,
      "\"eviction\":{\"pages\":%llu,\"bytes\":%llu,\"pages_per_s\":%llu},"
      "\"reclaim\":{\"callbacks\":%llu,\"bytes\":%llu,\"ns\":%llu},",
      U(s->evictions), U(s->evicted_bytes),
      U(up > 0 ? (double)s->evictions / up + 0.5 : 0.0), U(s->reclaims),
      U(s->reclaimed_bytes), U(s->reclaim_ns));
  put(o,
      "\"external\":{\"bytes\":%llu,\"polled_bytes\":%llu},"
      "\"caches\":{\"parked_bytes\":%llu},"
      "\"allocator\":{\"allocated_bytes\":%llu,\"active_bytes\":%llu,"
      "\"resident_bytes\":%llu}}\n",
      U(s->external_bytes), U(s->external_polled_bytes),
      U(s->cache_parked_bytes), U(s->backing_allocated_bytes),
      U(s->backing_active_bytes), U(s->backing_resident_bytes));
}

void mm_stats_print(const mm_t *mm, void (*write)(void *ctx, const char *text),
                    void *ctx, const char *opts) {
  if (!mm)
    return;
  struct out o = {write ? write : to_stderr, write ? ctx : NULL};
  mm_stats s;
  mm_get_stats(mm, &s);
  double up = (double)(mm_now_ns() - mm->born_ns) / 1e9;
  if (opts && strchr(opts, 'J'))
    print_json(&o, &s, up);
  else
    print_table(&o, &s, up);
}

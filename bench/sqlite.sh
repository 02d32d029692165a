#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# bench/sqlite.sh [BUILD_DIR] -- SQLite on the manager against SQLite's
# own page cache and allocator, with contrib/sqlite/tests/workload.sql.
#
#  1. Wall time and peak RSS at the same page-cache budget (a quarter of
#     the database), adapter and stock runs alternated, REPS each.
#  2. The pager's cache hit ratio at page-cache budgets from 1/16 to 2x
#     the database, random against sampled-LRU eviction (and stock).
#
# The manager's budget is twice the page-cache budget (storage fraction
# 0.5): the page cache gets the budget, SQLite's heap as much again.  The
# database size is the file's size after the workload (after VACUUM).
# Raw lines go to docs/results/sqlite-*.txt; tables to stdout.
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
run=$build/contrib/sqlite/mm-sqlite-run
script=contrib/sqlite/tests/workload.sql
reps=${REPS:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p docs/results
times=docs/results/sqlite-time.txt
sweep=docs/results/sqlite-hit-ratio.txt
: >"$times"
: >"$sweep"

once() { # once OUT ARGS...: one run on a fresh database
  out=$1
  shift
  rm -f "$work/db"
  "$run" "$@" --report "$out" "$work/db" "$script" >/dev/null 2>&1
}

once "$work/probe" --stock --budget 64M
dbsize=$(stat -c %s "$work/db")
mib() { echo "$1" | awk '{ printf "%.1f", $1 / 1048576 }'; }
echo "database: $(mib "$dbsize") MiB after the workload"

cache=$((dbsize / 4))
for i in $(seq "$reps"); do
  once "$times" --stock --budget $((cache * 2)) --fraction 0.5
  once "$times" --budget $((cache * 2)) --fraction 0.5
done
echo
echo "page cache $(mib $cache) MiB, $reps runs each (median):"
echo
echo "| cache and heap | wall s | peak RSS MiB | hit ratio |"
echo "|---|---|---|---|"
python3 - "$times" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    kind, *fields = line.split()
    kv = dict(f.split("=") for f in fields)
    rows.setdefault(kind, []).append(kv)
for kind, name in (("stock", "SQLite default"), ("mm", "memory_manager")):
    med = lambda k: statistics.median(float(r[k]) for r in rows[kind])
    print("| %s | %.2f | %.1f | %.4f |" % (name, med("wall_s"),
          med("max_rss_kib") / 1024, med("hit_ratio")))
PY
echo
echo "| page cache / database | stock | random | sampled LRU |"
echo "|---|---|---|---|"
for frac in 0.0625 0.125 0.25 0.5 1 2; do
  c=$(echo "$dbsize $frac" | awk '{ printf "%d", $1 * $2 }')
  for p in stock random lru; do
    if [ $p = stock ]; then
      once "$sweep" --stock --budget $((c * 2)) --fraction 0.5
    else
      once "$sweep" --budget $((c * 2)) --fraction 0.5 --policy $p
    fi
  done
  tail -n 3 "$sweep" | sed 's/.*hit_ratio=\([0-9.]*\).*/\1/' | tr '\n' ' ' |
    xargs printf "| $frac | %s | %s | %s |\n"
done

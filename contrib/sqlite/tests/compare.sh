#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# compare.sh RUN SCRIPT WORK [BUDGET] -- the script through the adapter
# (BUDGET, default 16M: the database is several times bigger) and through
# SQLite's own cache and allocator at the same page budget; the results
# must be byte-identical, the adapter's run must never have used more
# than the budget, and it must have evicted pages.
set -eu
run=$1 script=$2 work=$3 budget=${4:-16M}
rm -rf "$work" && mkdir -p "$work"
"$run" --stock --budget "$budget" "$work/stock.db" "$script" >"$work/stock.out"
"$run" --budget "$budget" --expect-evictions "$work/mm.db" "$script" \
  >"$work/mm.out"
cmp "$work/stock.out" "$work/mm.out"
echo "identical: $(wc -l <"$work/mm.out") lines"

#!/bin/sh
# compare.sh RUN SCRIPT WORK -- the workload through the adapter (16 MiB
# budget: the database is several times bigger) and through SQLite's own
# cache and allocator at the same page budget; the results must be
# byte-identical, and the adapter's run must have evicted pages.
set -eu
run=$1 script=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
"$run" --stock --budget 16M "$work/stock.db" "$script" >"$work/stock.out"
"$run" --budget 16M --expect-evictions "$work/mm.db" "$script" >"$work/mm.out"
cmp "$work/stock.out" "$work/mm.out"
echo "identical: $(wc -l <"$work/mm.out") lines"

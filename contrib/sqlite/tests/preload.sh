#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# preload.sh SQLITE3 PRELOAD SCRIPT WORK [BUDGET] -- the stock sqlite3
# program runs the script on its own and under the preload library
# (BUDGET, default 16MiB): the same output, and the library's statistics
# show evictions.
set -eu
shell=$1 lib=$2 script=$3 work=$4 budget=${5:-16MiB}
rm -rf "$work" && mkdir -p "$work"
"$shell" "$work/stock.db" <"$script" >"$work/stock.out"
LD_PRELOAD=$lib MM_SQLITE_BUDGET=$budget MM_SQLITE_STATS=1 \
  "$shell" "$work/mm.db" <"$script" >"$work/mm.out" 2>"$work/mm.err"
cat "$work/mm.err"
cmp "$work/stock.out" "$work/mm.out"
grep -q "^eviction: [1-9][0-9]* pages" "$work/mm.err"
echo "identical: $(wc -l <"$work/mm.out") lines"

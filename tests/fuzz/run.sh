#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# run.sh -- the fuzz target's two CI jobs.
#   run.sh replay FUZZER CORPUS            every corpus input, once each
#   run.sh fuzz FUZZER CORPUS WORK SECONDS fuzz from the corpus for SECONDS,
#                                          new inputs into WORK (scratch)
set -eu
mode=$1 fuzzer=$2 corpus=$3
case $mode in
replay)
  # shellcheck disable=SC2046
  exec "$fuzzer" -runs=1 $(find "$corpus" -type f | sort)
  ;;
fuzz)
  work=$4 seconds=$5
  rm -rf "$work" && mkdir -p "$work"
  exec "$fuzzer" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 \
    -print_final_stats=1 "$work" "$corpus"
  ;;
esac
echo "usage: run.sh replay|fuzz FUZZER CORPUS [WORK SECONDS]" >&2
exit 2

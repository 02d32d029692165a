#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# bench/speedtest.sh [BUILD_DIR] -- SQLite's own benchmark, speedtest1,
# stock against the manager's preload library.
#
# speedtest1.c is not in this repository: it is taken at run time from
# Debian's source package of the installed SQLite (apt-get source
# sqlite3, through a temporary deb-src list passed with
# -o Dir::Etc::sourcelist=..., leaving the machine's apt configuration
# alone), and built against the system libsqlite3.so.0.  Each testset
# (main, cte, fp, orm; --size SIZE) runs REPS times stock and under the
# preload at each budget in BUDGETS, alternated; every run must print the
# same verification hash (--verify) as the stock one.  Medians of wall
# time and peak RSS go to stdout; raw lines to docs/results/speedtest.txt
# (and each case's time to speedtest-cases.txt).  Needs the Debian
# packages dpkg-dev (dpkg-source), time (/usr/bin/time) and
# libsqlite3-dev.
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
root=$(pwd)
preload=$root/$build/contrib/sqlite/libmm_sqlite_preload.so
size=${SIZE:-100}
reps=${REPS:-3}
budgets=${BUDGETS:-"64MiB 16MiB"}
testsets=${TESTSETS:-"main cte fp orm"}
[ -f "$preload" ] || { echo "no $preload: build first" >&2; exit 1; }
for tool in /usr/bin/time dpkg-source; do
  command -v "$tool" >/dev/null ||
    { echo "$tool missing (apt-get install time dpkg-dev)" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
version=$(dpkg-query -W -f '${source:Version}' libsqlite3-0)

# The source, at the installed version, from a deb-src list of our own.
mkdir -p "$work/lists/partial" "$work/src"
grep -h '^URIs:\|^Suites:\|^Components:' /etc/apt/sources.list.d/debian.sources |
  awk '/^URIs:/ { u = $2 } /^Suites:/ { s = $2 } /^Components:/ {
         if (u !~ /security/) print "deb-src " u " " s " " $2 }' \
    >"$work/sources.list"
apt_src() {
  apt-get -q -o Dir::Etc::sourcelist="$work/sources.list" \
    -o Dir::Etc::sourceparts=/dev/null -o Dir::State::Lists="$work/lists" \
    -o APT::Sandbox::User=root "$@"
}
apt_src update >/dev/null
(cd "$work/src" && apt_src source --download-only "sqlite3=$version" >/dev/null)
dpkg-source --no-check -x "$work"/src/sqlite3_*.dsc "$work/sqlite" >/dev/null
st=$work/sqlite/test/speedtest1.c
[ -f "$st" ] || { echo "speedtest1.c not in sqlite3 $version" >&2; exit 1; }
cc -O2 -o "$work/speedtest1" "$st" -lsqlite3 -lm
echo "speedtest1 from Debian sqlite3 $version, --size $size, $reps runs each"

mkdir -p docs/results
raw=docs/results/speedtest.txt
cases=docs/results/speedtest-cases.txt
: >"$raw"

one() { # one TESTSET LABEL [BUDGET]: one run; prints "seconds kib hash"
  rm -f "$work/db"
  if [ -n "${3:-}" ]; then
    env LD_PRELOAD="$preload" MM_SQLITE_BUDGET="$3" \
      /usr/bin/time -f '%e %M' -o "$work/time" \
      "$work/speedtest1" --testset "$1" --size "$size" --verify \
      "$work/db" >"$work/out" 2>&1
  else
    /usr/bin/time -f '%e %M' -o "$work/time" \
      "$work/speedtest1" --testset "$1" --size "$size" --verify \
      "$work/db" >"$work/out" 2>&1
  fi
  hash=$(sed -n 's/.*Verification Hash: *//p' "$work/out")
  echo "$1 $2 $(cat "$work/time") $hash" >>"$raw"
  sed -n 's/^ *\([0-9]*\) - \(.*[^. ]\)\.*  *\([0-9.]*\)s$/\1|\2|\3/p' \
    "$work/out" | sed "s/^/$1 $2 /" >>"$cases"
  echo "$(cat "$work/time") $hash"
}

: >"$cases"
for set in $testsets; do
  for r in $(seq "$reps"); do
    want=$(one "$set" stock | cut -d' ' -f3-)
    for b in $budgets; do
      got=$(one "$set" "mm-$b" "$b" | cut -d' ' -f3-)
      [ "$got" = "$want" ] || {
        echo "$set at $b: hash $got, stock $want" >&2
        exit 1
      }
    done
  done
done

# Medians: wall time and peak RSS per testset and label, and each case's
# ratio to stock.
echo "| testset | run | wall s | peak RSS MB | wall / stock |"
echo "|---|---|---:|---:|---:|"
awk '
  { k = $1 " " $2; n[k]++; t[k, n[k]] = $3; m[k, n[k]] = $4; keys[k] = 1 }
  function med(a, k, c,   i, j, x, v) {
    for (i = 1; i <= c; i++) v[i] = a[k, i]
    for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++)
      if (v[j] < v[i]) { x = v[i]; v[i] = v[j]; v[j] = x }
    return v[int((c + 1) / 2)]
  }
  END {
    for (k in keys) {
      split(k, p, " ")
      s = p[1] " stock"
      printf "| %s | %s | %.2f | %.1f | %.2f |\n", p[1], p[2],
        med(t, k, n[k]), med(m, k, n[k]) / 1024,
        med(t, k, n[k]) / med(t, s, n[s])
    }
  }' "$raw" | sort
echo
echo "worst cases (median of each case, over stock's):"
awk -F'|' '
  { split($1, p, " "); k = p[1] " " p[2] "|" p[3] " " $2; c[k]++;
    v[k, c[k]] = $3; if (p[2] == "stock") s[p[1] "|" p[3] " " $2] = 1 }
  function med(k,   i, j, x, a) {
    for (i = 1; i <= c[k]; i++) a[i] = v[k, i]
    for (i = 1; i <= c[k]; i++) for (j = i + 1; j <= c[k]; j++)
      if (a[j] < a[i]) { x = a[i]; a[i] = a[j]; a[j] = x }
    return a[int((c[k] + 1) / 2)]
  }
  END {
    for (k in c) {
      split(k, q, "|"); split(q[1], p, " ")
      if (p[2] == "stock") continue
      st = p[1] " stock|" q[2]
      if (med(st) > 0.005) printf "%.2f %s %s %s\n", med(k) / med(st), p[1], p[2], q[2]
    }
  }' "$cases" | sort -rn | head -15

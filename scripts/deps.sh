# SPDX-License-Identifier: BSD-2-Clause
# deps.sh -- sourced by scripts/demo and scripts/test: installs the Debian
# packages the build needs, only when some are missing.  As root it runs
# apt-get itself; otherwise through sudo.
mm_packages="cmake make gcc pkg-config clang libclang-rt-14-dev clang-format
liburcu-dev libck-dev libjemalloc-dev libcmocka-dev libsqlite3-dev sqlite3
abi-dumper abi-compliance-checker dpkg-dev debhelper lintian"

mm_install_deps() {
  missing=""
  for p in $mm_packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  echo "installing Debian packages:$missing"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q $missing
}

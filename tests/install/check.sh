#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# check.sh BUILD_DIR THIS_DIR CC -- install the built library into a
# scratch prefix, then build and run consumer.c against the installed
# files only: pkg-config shared, pkg-config static, and find_package.
# check.sh --installed PREFIX THIS_DIR CC -- the same against files
# installed already under PREFIX (the Debian packages: scripts/package).
set -eu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "$1" = --installed ]; then
  prefix=$2 here=$3 cc=$4
else
  build=$1 here=$2 cc=$3
  prefix=$work/prefix
  cmake --install "$build" --prefix "$prefix" >/dev/null
fi
pc=$(find "$prefix"/lib* -name memory_manager.pc | head -n1)
libdir=$(dirname "$(dirname "$pc")")
export PKG_CONFIG_PATH=$libdir/pkgconfig

echo "== pkg-config, shared"
# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Wextra -Werror -o "$work/shared" "$here/consumer.c" \
  $(pkg-config --cflags --libs memory_manager)
LD_LIBRARY_PATH=$libdir "$work/shared"
# The shared library exports the public API and nothing else (and its
# version node, an absolute symbol).
if nm -D --defined-only "$libdir/libmemory_manager.so" |
  awk '$2 != "A" {print $3}' | grep -v '^mm_' | grep -v '^_' | grep .; then
  echo "unexpected exported symbols" >&2
  exit 1
fi

echo "== pkg-config --static, a fully static program"
# shellcheck disable=SC2046
"$cc" -std=c11 -static -o "$work/static" "$here/consumer.c" \
  $(pkg-config --static --cflags --libs memory_manager)
"$work/static"

echo "== find_package(memory_manager)"
cmake -S "$here" -B "$work/cm" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_COMPILER="$cc" >/dev/null
cmake --build "$work/cm" >/dev/null
LD_LIBRARY_PATH=$libdir "$work/cm/consumer_shared"
"$work/cm/consumer_static"
echo "install_consumer: all three ways build and pass"

#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# check.sh BUILD_DIR THIS_DIR CC -- install the built library into a
# scratch prefix, then build and run consumer.c against the installed
# files only: pkg-config shared, pkg-config static, and find_package.
set -eu
build=$1 here=$2 cc=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(ls -d "$prefix"/lib*/pkgconfig | head -n1 | xargs dirname)
export PKG_CONFIG_PATH=$libdir/pkgconfig

echo "== pkg-config, shared"
# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Wextra -Werror -o "$work/shared" "$here/consumer.c" \
  $(pkg-config --cflags --libs memory_manager)
LD_LIBRARY_PATH=$libdir "$work/shared"
# The shared library exports the public API and nothing else.
if nm -D --defined-only "$libdir/libmemory_manager.so" | awk '{print $3}' |
  grep -v '^mm_' | grep -v '^_' | grep .; then
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

#!/usr/bin/env bash
# install_test.sh: `cmake --install` into a temporary prefix, then build examples/ against the
# installed package only (a copy of examples/ outside the source tree, find_package(needle_c) with
# CMAKE_PREFIX_PATH = the prefix) and again with `cc $(pkg-config --cflags --libs needle_c)`; run
# both, check they print the same losses and that the loss goes down, and that nothing installed
# or compiled names the source or build tree. Usage: install_test.sh BUILD-DIR SOURCE-DIR
set -euo pipefail
build=$(realpath "$1") src=$(realpath "$2")
tmp=$(mktemp -d /tmp/ndl_install_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "install_test: $*" >&2; exit 1; }
prefix=$tmp/prefix

cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install failed"; }
pc=$(find "$prefix" -name needle_c.pc)
[ -n "$pc" ] || fail "no needle_c.pc under $prefix"
libdir=$(dirname "$(dirname "$pc")")
for f in bin/ndl-train include/needle_c/core/tensor.h include/needle_c/nn/module.h include/needle_c/optim/optim.h \
         include/needle_c/data/loader.h include/needle_c/dist/dist.h include/needle_c/launch/weights.h; do
  [ -f "$prefix/$f" ] || fail "$f not installed"
done
for lib in core nn optim data dist launch_io; do [ -f "$libdir/libndl_$lib.a" ] || fail "libndl_$lib.a not installed"; done
[ -f "$libdir/cmake/needle_c/needle_cConfig.cmake" ] || fail "no CMake package config"
# cuBLAS and NCCL are dlopened at run time (core/cuda/cublas_dyn.c, dist/dist_nccl.c): the package
# must not make its users link them (nor the shared CUDA runtime: the static one is linked).
if grep -nE "CUDA::(cublas|cudart)([^_]|$)|libcublas|libnccl|libcudart\.so" "$libdir"/cmake/needle_c/*.cmake "$pc"; then
  fail "the installed package above demands cuBLAS, NCCL or the shared CUDA runtime"
fi
"$prefix/bin/ndl-train" --help >/dev/null || fail "installed ndl-train --help failed"
if grep -rlI -e "$src" -e "$build" "$prefix"; then fail "installed text files above name the source or build tree"; fi

# 1. CMake: find_package(needle_c) from a copy of examples/ that cannot see the source tree.
cp -r "$src/examples" "$tmp/example"
cmake -S "$tmp/example" -B "$tmp/example-build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >"$tmp/cfg.log" 2>&1 || { cat "$tmp/cfg.log"; fail "example: configure failed"; }
cmake --build "$tmp/example-build" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; fail "example: build failed"; }
if grep -e "$src" -e "$build" "$tmp/example-build/compile_commands.json"; then fail "the example's compile line names the source or build tree"; fi
"$tmp/example-build/train_blobs" >"$tmp/cmake.out" || fail "example (CMake build) failed"
cat "$tmp/cmake.out"

# 2. pkg-config with the system C compiler.
flags=$(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs needle_c) || fail "pkg-config needle_c failed"
echo "pkg-config: $flags"
cc -std=c11 -O2 "$src/examples/train_blobs.c" -o "$tmp/train_blobs_pc" $flags || fail "example: cc with pkg-config failed"
"$tmp/train_blobs_pc" >"$tmp/pc.out" || fail "example (pkg-config build) failed"
cmp -s "$tmp/cmake.out" "$tmp/pc.out" || { diff "$tmp/cmake.out" "$tmp/pc.out"; fail "the two builds print different losses"; }

# 3. The loss goes down: the last epoch's is below half the first's.
first=$(awk '/^epoch /{print $4; exit}' "$tmp/cmake.out")
last=$(awk '/^epoch /{v=$4} END{print v}' "$tmp/cmake.out")
[ -n "$first" ] && [ -n "$last" ] || fail "no epoch lines"
awk -v a="$first" -v b="$last" 'BEGIN{exit !(b < a / 2)}' || fail "loss did not go down: first $first, last $last"
echo "install_test: ok (loss $first -> $last)"

#!/usr/bin/env bash
# gpu_check_bare.sh: run a command (default: bench/gpu_check.sh --build-only) on THIS machine as if it were
# the bare GPU machine: in a private mount namespace (root, unshare -m) the system's OpenBLAS, GoogleTest,
# Open MPI, zlib headers and Fashion-MNIST are hidden behind empty mounts, so only gpu_carry/ can supply
# them. Nothing outside the namespace changes. Usage: bench/gpu_check_bare.sh [command ...]
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "gpu_check_bare: needs root (unshare -m)" >&2; exit 2; }
[ $# -gt 0 ] || set -- bash bench/gpu_check.sh --build-only
lib=/usr/lib/x86_64-linux-gnu
hide_dirs="/usr/include/x86_64-linux-gnu/openblas-pthread $lib/openmpi /usr/include/gtest
  /usr/include/gmock $lib/cmake/GTest $lib/cmake/openblas /usr/src/googletest /usr/share/datasets"
hide_files="/usr/bin/opal_wrapper /usr/bin/orterun /usr/include/zlib.h $lib/libz.a $lib/libgtest.a
  $lib/libgtest_main.a"
exec unshare -m --propagation private bash -c '
  set -e
  empty=$(mktemp -d)
  # Debian numpy (under /usr/bin/python3 torch) loads libblas.so.3 from the OpenBLAS folder: keep the
  # runtime libraries there (a bare machine may have those too), hide the rest (libopenblas.so, headers).
  rt=$(mktemp -d)
  for f in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
    [ -f '"$lib"'/openblas-pthread/$f ] && touch $rt/$f && mount --bind '"$lib"'/openblas-pthread/$f $rt/$f
  done
  mount --rbind $rt '"$lib"'/openblas-pthread
  for d in '"$(echo $hide_dirs)"'; do [ -d "$d" ] && mount --bind "$empty" "$d"; done
  for f in '"$(echo $hide_files)"'; do [ -f "$f" ] && [ ! -L "$f" ] && mount --bind /dev/null "$f"; done
  echo "gpu_check_bare: hidden: system OpenBLAS, GoogleTest, Open MPI, zlib.h, /usr/share/datasets"
  exec "$@"' bash "$@"

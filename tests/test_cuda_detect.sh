#!/bin/bash
# test_cuda_detect.sh: the CUDA build detection of CMakeLists.txt (issue 10): with nvcc only in
# /usr/local/cuda/bin (not on PATH) a plain configure turns NDL_CUDA on; a sanitizer configure turns
# it off (nvcc takes no -fsanitize), also when forced on. Exit 77 (skip) without that nvcc.
# Usage: test_cuda_detect.sh SRC_ROOT WORK_DIR
set -u
src=${1:?source root} work=${2:?work dir}
[ -x /usr/local/cuda/bin/nvcc ] || { echo "skip: no /usr/local/cuda/bin/nvcc"; exit 77; }
rm -rf "$work" && mkdir -p "$work" || exit 2
# PATH without any nvcc (a wrapper in /usr/local/bin would count as on PATH)
path=/usr/sbin:/usr/bin:/sbin:/bin
for d in ${path//:/ }; do [ -e "$d/nvcc" ] && { echo "skip: $d/nvcc is on the minimal PATH"; exit 77; }; done
cache() { sed -n "s/^$1:[A-Z]*=//p" "$2/CMakeCache.txt"; }
fail=0
env -u CUDACXX PATH=$path cmake -S "$src" -B "$work/plain" -DNDL_BUILD_TESTS=OFF >"$work/plain.log" 2>&1 ||
  { echo "plain configure failed:"; tail -5 "$work/plain.log"; exit 1; }
[ "$(cache NDL_CUDA "$work/plain")" = ON ] || { echo "FAIL: NDL_CUDA not ON with nvcc only in /usr/local/cuda/bin"; fail=1; }
[ "$(cache CMAKE_CUDA_COMPILER "$work/plain")" = /usr/local/cuda/bin/nvcc ] ||
  { echo "FAIL: CMAKE_CUDA_COMPILER is '$(cache CMAKE_CUDA_COMPILER "$work/plain")'"; fail=1; }
env -u CUDACXX PATH=$path cmake -S "$src" -B "$work/asan" -DNDL_BUILD_TESTS=OFF -DNDL_SANITIZE=ON -DNDL_CUDA=ON \
  >"$work/asan.log" 2>&1 || { echo "sanitizer configure failed:"; tail -5 "$work/asan.log"; exit 1; }
[ "$(cache NDL_CUDA "$work/asan")" = OFF ] || { echo "FAIL: NDL_CUDA not OFF in a sanitizer build"; fail=1; }
[ $fail = 0 ] && echo "test_cuda_detect: nvcc found in /usr/local/cuda/bin; sanitizer build CUDA-off"
rm -rf "$work"
exit $fail

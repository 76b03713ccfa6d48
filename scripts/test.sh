#!/usr/bin/env bash
# test.sh: install dependencies, build needle-c, and run the whole test suite under ctest, then the
# tests of threaded code (label tsan) in a ThreadSanitizer build, then the whole suite again in an
# AddressSanitizer + UndefinedBehaviorSanitizer build, then the fuzz stage (clang + libFuzzer,
# tests/fuzz; NDL_TEST_FUZZ=0 skips it). GPU tests (label gpu) run in the emulated-GPU stage (below,
# right after the normal build), and in the normal build only when NDL_TEST_GPU=1 (a real GPU).
# Usage: scripts/test.sh [--no-sanitize]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh python3-numpy python3-torch  # torch: the PyTorch interop/tracking tests
jobs=$(nproc)
labels=(-LE gpu)
[ "${NDL_TEST_GPU:-0}" = 1 ] && labels=()
run_suite() {  # build dir, extra cmake args...
  local dir=$1; shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
  (cd "$dir" && ctest --output-on-failure -j"$jobs" "${labels[@]}")
}
run_suite build
# The emulated GPU (tests/cuda_emu, NDL_CUDA_EMU=ON): core/cuda's sources compiled by g++ against a CUDA
# runtime, cuBLAS and NCCL that run on the CPU; every gpu-labelled test must run and pass there
# (NDL_TEST_REQUIRE_GPU=1: a test that finds no GPU fails). NDL_TEST_EMU=0 skips it.
if [ "${NDL_TEST_EMU:-1}" = 1 ]; then
  cmake -S . -B build-emu -DCMAKE_BUILD_TYPE=Release -DNDL_CUDA_EMU=ON >/dev/null
  cmake --build build-emu -j"$jobs" --target ndl-train gpu_tests
  (cd build-emu && NDL_TEST_REQUIRE_GPU=1 ctest --output-on-failure -j"$jobs" -L gpu)
fi
if [ "${1:-}" != "--no-sanitize" ]; then
  # ThreadSanitizer: only the binaries with tsan-labelled tests (target tsan_tests); a report fails.
  cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Release -DNDL_SANITIZE=thread -DNDL_CUDA=OFF >/dev/null
  cmake --build build-tsan -j"$jobs" --target tsan_tests
  (cd build-tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
     ctest --output-on-failure -j"$jobs" -L tsan)
  ASAN_OPTIONS=detect_leaks=1 run_suite build-asan -DNDL_SANITIZE=ON -DNDL_CUDA=OFF
fi
# Fuzzing (tests/fuzz, label fuzz): a clang build with libFuzzer, ASan and UBSan; replays the seed
# corpus and the kept crash inputs, then fuzzes each target for ~60 s (all at once: time-bound).
# NDL_TEST_FUZZ=0 skips it.
if [ "${NDL_TEST_FUZZ:-1}" = 1 ]; then
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DNDL_FUZZ=ON -DNDL_BUILD_TESTS=OFF \
    -DNDL_MPI=OFF -DNDL_CUDA=OFF >/dev/null
  cmake --build build-fuzz -j"$jobs" --target ndl_fuzz
  (cd build-fuzz && ctest --output-on-failure -j"$((jobs > 6 ? jobs : 6))" -L fuzz)
fi

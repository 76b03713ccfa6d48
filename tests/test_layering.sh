#!/bin/bash
# test_layering.sh: the core's layering rules, as a grep over the C/C++/CUDA sources (issue 10):
#  1. no file outside core/cuda/ (and a dist/*nccl* transport, and tests/cuda_emu/, the emulated device
#     that implements them) includes a CUDA, cuBLAS or NCCL header;
#  2. no file outside core/cpu/ (tests of the CPU kernels excepted) calls an ndl_cpu_* function;
#  3. core/cpu/ includes no autograd or op-building header (a backend is a leaf: tensor.h, backend.h);
#  4. only core/tensor.c, core/backend.c (and tests) name ndl_backend_cpu(): ops go through ctx->backend;
#  5. the test device (NDL_DEV_TEST, ndl_backend_register_test) is named only in tests/ and in
#     core/tensor.[ch], core/backend.[ch], which define it: no product path runs on the fenced backend.
# Host code touching backend memory is not greppable: tests/test_fenced.cc catches it (SIGSEGV).
# Usage: test_layering.sh SRC_ROOT            check the tree, exit 1 listing each violation
#        test_layering.sh --selftest SRC_ROOT  copy the tree, inject one violation per rule, expect 1 each
set -u

check() {
  local root=$1 bad=0 hits
  cd "$root" || { echo "test_layering: cannot enter $root"; return 2; }
  # every C/C++/CUDA source and header, outside build trees and git metadata
  mapfile -t files < <(find . \( -name 'build*' -o -name .git -o -name shared \) -prune -o -type f \
    \( -name '*.c' -o -name '*.h' -o -name '*.cc' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' \) -print | sed 's|^\./||' | sort)
  [ ${#files[@]} -gt 20 ] || { echo "test_layering: only ${#files[@]} sources under $root"; return 2; }
  for f in "${files[@]}"; do
    case $f in
      core/cuda/*|dist/*nccl*|tests/cuda_emu/*) ;;
      *) hits=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"](cuda|cuda_runtime|cuda_runtime_api|cuda_fp16|cublas|cublasLt|cublas_v2|nccl|curand|cub/|thrust/)' "$f")
         [ -n "$hits" ] && { echo "rule 1 (CUDA/cuBLAS/NCCL header outside core/cuda/): $f: $hits"; bad=1; } ;;
    esac
    case $f in
      core/cpu/*|tests/*) ;;
      *) hits=$(grep -nE '\bndl_cpu_[A-Za-z0-9_]+[[:space:]]*\(' "$f")
         [ -n "$hits" ] && { echo "rule 2 (ndl_cpu_* called outside core/cpu/): $f: $hits"; bad=1; } ;;
    esac
    case $f in
      core/cpu/*) hits=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"core/(autograd|op_impl|ops|nn_ops)\.h"' "$f")
         [ -n "$hits" ] && { echo "rule 3 (backend includes an autograd/op-building header): $f: $hits"; bad=1; } ;;
    esac
    case $f in
      core/cpu/*|core/tensor.c|core/backend.c|core/backend.h|tests/*) ;;
      *) hits=$(grep -nE '\bndl_backend_cpu[[:space:]]*\(' "$f")
         [ -n "$hits" ] && { echo "rule 4 (ndl_backend_cpu() outside tensor.c/backend.c; use ctx->backend): $f: $hits"; bad=1; } ;;
    esac
    case $f in
      tests/*|core/tensor.c|core/tensor.h|core/backend.c|core/backend.h) ;;
      *) hits=$(grep -nE '\b(NDL_DEV_TEST|ndl_backend_register_test)\b' "$f")
         [ -n "$hits" ] && { echo "rule 5 (the test device outside tests/): $f: $hits"; bad=1; } ;;
    esac
  done
  [ $bad = 0 ] && echo "test_layering: ${#files[@]} files, all rules hold"
  return $bad
}

selftest() {
  local src=$1 rc fail=0
  tmp=$(mktemp -d) || exit 2
  trap 'rm -rf "$tmp"' EXIT
  local inject=(
    'core/ops.c|#include <cuda_runtime.h>'
    'dist/dist_mpi.c|#include "nccl.h"'
    'core/autograd.c|static void f(void) { ndl_cpu_accumulate(0, 0); }'
    'core/cpu/nn_kernels.c|#include "core/autograd.h"'
    'core/nn_ops.c|static const void *g(void) { return ndl_backend_cpu(); }'
    'launch/trainer.c|static const int dev = NDL_DEV_TEST;'
  )
  for item in "${inject[@]}"; do
    local file=${item%%|*} line=${item#*|}
    rm -rf "$tmp/tree" && mkdir "$tmp/tree"
    (cd "$src" && tar cf - --exclude='./build*' --exclude=./.git --exclude=./shared .) | (cd "$tmp/tree" && tar xf -)
    echo "$line" >> "$tmp/tree/$file"
    out=$(check "$tmp/tree"); rc=$?
    if [ $rc = 1 ]; then echo "selftest: caught [$line] in $file: ${out%%:*}"
    else echo "selftest: MISSED [$line] in $file (rc $rc)"; fail=1; fi
  done
  (check "$src" >/dev/null) || { echo "selftest: the clean tree fails"; fail=1; }
  return $fail
}

if [ "${1:-}" = --selftest ]; then selftest "${2:?source root}"; else check "${1:?source root}"; fi

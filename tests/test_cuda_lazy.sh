#!/bin/bash
# test_cuda_lazy.sh: a CPU run pays nothing for CUDA: ndl-train links no libcudart, libcublas(Lt) or
# libnccl (the runtime is static, cuBLAS and NCCL are dlopened on first use), and `ndl-train --help`
# loads none of them at run time either (LD_DEBUG=files). Exit 77 (skip) in a build without CUDA.
# Usage: test_cuda_lazy.sh NDL_TRAIN NDL_CUDA(ON/OFF)
set -u
exe=${1:?ndl-train} cuda=${2:-OFF}
case $cuda in ON|on|1|TRUE|true) ;; *) echo "skip: NDL_CUDA=$cuda"; exit 77 ;; esac
[ -x "$exe" ] || { echo "FAIL: no $exe"; exit 1; }
pat='libcudart|libcublas|libcublasLt|libnccl|libcuda\.so'
fail=0
linked=$(ldd "$exe" | grep -E "$pat")
[ -z "$linked" ] || { echo "FAIL: ndl-train links CUDA libraries:"; echo "$linked"; fail=1; }
needed=$(readelf -d "$exe" 2>/dev/null | grep NEEDED | grep -E "$pat")
[ -z "$needed" ] || { echo "FAIL: DT_NEEDED names CUDA libraries:"; echo "$needed"; fail=1; }
loaded=$(LD_DEBUG=files "$exe" --help 2>&1 >/dev/null | grep -E "file=[^ ]*($pat)" | sort -u)
[ -z "$loaded" ] || { echo "FAIL: ndl-train --help loads CUDA libraries:"; echo "$loaded"; fail=1; }
[ $fail = 0 ] && echo "test_cuda_lazy: ndl-train links and loads no CUDA library for --help"
exit $fail

#!/usr/bin/env bash
# gpu_check.sh: the one-command GPU check, from a bare checkout on a borrowed GPU machine (nvcc, CMake,
# PyTorch; no package registry): unpack gpu_carry/ (made by bench/gpu_carry.sh), build ndl-train and the
# gpu-labelled tests, run `ctest -L gpu`, time the default training epoch of `ndl-train --device cuda`
# against PyTorch eager on the same GPU (torch_mlpresnet.py DATA 3 1 cuda), and print the card's name,
# the ratio and a summary (also written to $OUT when set). A failing stage is reported and the next runs.
# Usage: bench/gpu_check.sh [--build-only]   Exit: 0 all stages ok, 1 a stage failed, 2 no GPU visible.
# Env: NDL_GPU_CHECK_SKIP_GPU=1 (= --build-only), NDL_GPU_CHECK_DEVICE=cpu (time on the CPU: tests the
# script without a GPU), NDL_GPU_CARRY (gpu_carry), NDL_GPU_BUILD (build-gpu), NDL_DATA, NDL_PYTHON (a python3
# with torch), NDL_GPU_CHECK_BUDGET (seconds for the whole check, 420), NDL_GPU_CHECK_JOBS (build jobs,
# nproc), NDL_GPU_CHECK_CTEST_JOBS (8), NDL_GPU_CHECK_EPOCHS (3), NDL_GPU_CHECK_BATCHES (the batch sweep's
# sizes, "100 1000 10000 60000"), NDL_GPU_CHECK_EMU=1 (a rehearsal without a GPU: build against the
# emulated device of tests/cuda_emu, every stage runs, PyTorch on the CPU; its times are not a GPU's).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
carry=${NDL_GPU_CARRY:-gpu_carry}
build=${NDL_GPU_BUILD:-build-gpu}
device=${NDL_GPU_CHECK_DEVICE:-cuda}
budget=${NDL_GPU_CHECK_BUDGET:-420}
jobs=${NDL_GPU_CHECK_JOBS:-$(nproc)}
epochs=${NDL_GPU_CHECK_EPOCHS:-3}
skip_gpu=${NDL_GPU_CHECK_SKIP_GPU:-0}
emu=${NDL_GPU_CHECK_EMU:-0}
torch_device=$device
[ "$emu" = 1 ] && torch_device=cpu
case "${1:-}" in
  --build-only) skip_gpu=1 ;;
  "") ;;
  *) echo "usage: bench/gpu_check.sh [--build-only]" >&2; exit 2 ;;
esac
mkdir -p "$build"
work=$root/$build/gpu_check
rm -rf "$work" && mkdir -p "$work"
t0=$SECONDS
summary=()
failed=()
note() { summary+=("$*"); echo "gpu_check: $*"; }
stage() { echo; echo "== [$((SECONDS - t0)) s] $*"; }
fail() { failed+=("$1"); note "$1: FAILED${2:+ ($2)}"; }
limit() {  # seconds a stage may take: its own cap, within what is left of the budget (at least 20)
  local left=$((budget - (SECONDS - t0)))
  [ "$left" -lt "$1" ] && set -- "$left"
  [ "$1" -lt 20 ] && set -- 20
  echo "$1"
}
median() { sort -g | awk '{a[NR] = $1} END {if (NR) print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }
finish() {
  local rc=$1
  echo
  echo "== gpu_check summary ($(date -u '+%F %H:%M UTC'), $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $((SECONDS - t0)) s)"
  printf '%s\n' "${summary[@]}" | tee "$work/summary.txt"
  if [ ${#failed[@]} -gt 0 ]; then
    echo "failed stages: ${failed[*]}" | tee -a "$work/summary.txt"
    [ "$rc" -eq 0 ] && rc=1
  fi
  if [ -n "${OUT:-}" ] && mkdir -p "$OUT"; then
    cp "$work/summary.txt" "$OUT/gpu_check_summary.txt"
    for f in ctest.log ours.jsonl ours.err ours_graph.jsonl torch.txt mlp_eager.jsonl mlp_graph.jsonl; do [ -f "$work/$f" ] && cp "$work/$f" "$OUT/gpu_check_$f"; done
  fi
  exit "$rc"
}
any() { local f; for f; do [ -e "$f" ] && return 0; done; return 1; }

main() {

# 1. The GPU: its name (nvidia-smi, else PyTorch). None visible ends the check (exit 2) unless the
#    GPU stages are skipped or the timing runs on the CPU.
stage "GPU"
nvcc=$(command -v nvcc || true)
[ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc=/usr/local/cuda/bin/nvcc
py=""
for p in ${NDL_PYTHON:-} python3 /usr/bin/python3; do
  command -v "$p" >/dev/null && timeout 120 "$p" -c 'import torch, numpy' 2>/dev/null && { py=$p; break; }
done
card=""
if [ "$emu" = 1 ]; then
  card="emulated device (tests/cuda_emu, NDL_CUDA_EMU=ON): a rehearsal, no GPU; times below are CPU times"
elif command -v nvidia-smi >/dev/null; then
  card=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
fi
if [ -z "$card" ] && [ -n "$py" ]; then
  card=$(timeout 60 "$py" -c 'import torch; assert torch.cuda.is_available(); p = torch.cuda.get_device_properties(0); print(f"{p.name}, {p.total_memory >> 20} MiB (torch {torch.__version__})")' 2>/dev/null)
fi
if [ -n "$card" ]; then
  note "card: $card"
else
  note "card: no GPU visible (no nvidia-smi answer, no torch.cuda device)"
  if [ "$skip_gpu" != 1 ] && [ "$device" = cuda ]; then
    note "no GPU: nothing measured; run this on the GPU machine (or --build-only to check the build)"
    finish 2
  fi
fi
note "nvcc: ${nvcc:-none}$([ -n "$nvcc" ] && "$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/ (release \1)/p')"

# 2. The carried prefix (OpenBLAS, zlib, GoogleTest sources, Open MPI), unpacked once per archive.
stage "prefix"
pre=$root/$build/prefix
# CMAKE_POLICY_VERSION_MINIMUM: CMake 4 refuses GoogleTest 1.12's cmake_minimum_required(3.5) without it.
cmake_args=(-DCMAKE_BUILD_TYPE=Release -DCMAKE_POLICY_VERSION_MINIMUM=3.5)
[ "$emu" = 1 ] && cmake_args+=(-DNDL_CUDA_EMU=ON)
[ ! -f "$build/CMakeCache.txt" ] && command -v ninja >/dev/null && cmake_args+=(-G Ninja)
prefix_path=""
if [ -f "$carry/prefix.tar.xz" ]; then
  sum=$(cksum <"$carry/prefix.tar.xz")
  if [ "$(cat "$pre/.stamp" 2>/dev/null)" != "$sum" ]; then
    rm -rf "$pre" && mkdir -p "$pre"
    if command -v xz >/dev/null; then
      tar -xJf "$carry/prefix.tar.xz" -C "$pre" --strip-components=1
    else  # no xz binary: Python's tarfile reads it
      python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$carry/prefix.tar.xz" "$pre.tmp" &&
        cp -a "$pre.tmp/prefix/." "$pre/" && rm -rf "$pre.tmp"
    fi && echo "$sum" >"$pre/.stamp" || fail prefix "cannot unpack $carry/prefix.tar.xz"
  fi
  if [ -f "$pre/.stamp" ]; then
    note "prefix: $carry/prefix.tar.xz -> $build/prefix (OpenBLAS, zlib, GoogleTest source, Open MPI)"
    export PATH=$pre/bin:$PATH
    export LD_LIBRARY_PATH=$pre/lib:$pre/lib/openmpi${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    prefix_path=$pre
    cmake_args+=(-DNDL_GTEST_SRC="$pre/src/googletest" -DMPI_C_COMPILER="$pre/bin/mpicc")
  fi
else
  note "prefix: no $carry/prefix.tar.xz (bench/gpu_carry.sh makes it): the system's OpenBLAS, GTest, MPI"
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

# cuBLAS and NCCL: the toolkit's when it has them, else those of the pip wheels (nvidia-cublas,
# nvidia-nccl-cu13) behind a shim prefix of unversioned links (find_library looks for libX.so).
if [ -n "$nvcc" ]; then
  cuda_home=$(cd "$(dirname "$nvcc")/.." && pwd)
  [ -x "$(dirname "$nvcc")/nvcc" ] && export PATH=$(dirname "$nvcc"):$PATH
  cmake_args+=(-DCMAKE_CUDA_COMPILER="$nvcc")
  shim=$root/$build/cudashim
  rm -rf "$shim" && mkdir -p "$shim/lib" "$shim/include"
  wheels=$(${py:-python3} -c 'import os, site; print(" ".join(p + "/nvidia" for p in site.getsitepackages() if os.path.isdir(p + "/nvidia")))' 2>/dev/null)
  for want in cublas:cublas_v2.h nccl:nccl.h; do
    lib=${want%%:*} hdr=${want#*:}
    if any "$cuda_home"/lib64/lib"$lib".so "$cuda_home"/targets/*/lib/lib"$lib".so &&
       any "$cuda_home"/include/"$hdr" "$cuda_home"/targets/*/include/"$hdr"; then
      note "$lib: the toolkit's ($cuda_home)"
      continue
    fi
    so=$([ -n "$wheels" ] && find $wheels -maxdepth 4 -name "lib$lib.so.*" 2>/dev/null | sort | head -1)
    inc=$([ -n "$wheels" ] && find $wheels -maxdepth 4 -name "$hdr" 2>/dev/null | head -1)
    if [ -z "$so" ] || [ -z "$inc" ]; then
      note "$lib: neither the toolkit nor a pip wheel has lib$lib.so and $hdr"
      continue
    fi
    # only this library's files (a CUDA 13 wheel folder may hold other runtimes, e.g. its own cudart)
    for f in "$(dirname "$so")"/lib"$lib"*.so.*; do ln -sf "$f" "$shim/lib/$(basename "$f" | sed 's/\.so\..*/.so/')"; done
    for f in "$(dirname "$inc")"/"$lib"*; do ln -sf "$f" "$shim/include/"; done
    export LD_LIBRARY_PATH=$(dirname "$so"):$LD_LIBRARY_PATH
    note "$lib: from the pip wheel in $(dirname "$(dirname "$so")")"
  done
  prefix_path="$prefix_path${prefix_path:+;}$shim"
  export CPATH=$shim/include${CPATH:+:$CPATH} LIBRARY_PATH=$shim/lib${LIBRARY_PATH:+:$LIBRARY_PATH}
  cmake_args+=(-DNDL_CUDA=ON)
fi
[ -n "$prefix_path" ] && cmake_args+=(-DCMAKE_PREFIX_PATH="$prefix_path")

# 3. Configure and build ndl-train and the binaries of the gpu-labelled tests (target gpu_tests).
stage "configure + build (-j$jobs)"
built=0
tb=$SECONDS
if timeout "$(limit 120)" cmake -S . -B "$build" "${cmake_args[@]}" >"$work/configure.log" 2>&1; then
  grep -E "^(BLAS_openblas_LIBRARY|NDL_CBLAS_INCLUDE|ZLIB_LIBRARY_RELEASE|ZLIB_INCLUDE_DIR|MPI_C_LIB_NAMES|MPI_mpi_LIBRARY|MPIEXEC_EXECUTABLE|NDL_CUDA|NDL_NCCL|NDL_MPI|NDL_GTEST_SRC|CMAKE_CUDA_COMPILER):" \
    "$build/CMakeCache.txt" | sed 's/^/  /'
  targets=(ndl-train)
  if grep -q "/gpu_tests.dir$" "$build/CMakeFiles/TargetDirectories.txt" 2>/dev/null; then
    targets+=(gpu_tests)
  else
    targets=(all)  # a tree without the gpu_tests target: build everything
  fi
  if timeout "$(limit 300)" cmake --build "$build" -j"$jobs" --target "${targets[@]}" >"$work/build.log" 2>&1; then
    built=1
    note "build: ok, ${targets[*]} in $((SECONDS - tb)) s"
    # (cuBLAS and NCCL are dlopened on first use and the CUDA runtime is static: ldd shows neither)
    ldd "$build/launch/ndl-train" | grep -E "openblas|libmpi|libz" | sed 's/ (0x.*//; s/^\s*/  /'
  else
    tail -30 "$work/build.log"
    fail build "see $build/gpu_check/build.log"
  fi
else
  tail -30 "$work/configure.log"
  fail configure "see $build/gpu_check/configure.log"
fi
if [ "$built" = 1 ]; then
  n=$(cd "$build" && ctest -N -L gpu 2>/dev/null | sed -n 's/^Total Tests: //p')
  note "ctest -L gpu: ${n:-0} tests registered"
fi
if [ "$skip_gpu" = 1 ]; then
  note "GPU stages skipped (--build-only / NDL_GPU_CHECK_SKIP_GPU=1)"
  finish 0
fi

data=${NDL_DATA:-}
if [ -z "$data" ]; then
  for d in "$carry/fashion-mnist" /usr/share/datasets/fashion-mnist; do [ -d "$d" ] && { data=$d; break; }; done
fi
[ -n "$data" ] && data=$(cd "$data" && pwd)

# 4. ctest -L gpu (every GPU test; each GTEST_SKIPs without a device).
stage "ctest -L gpu"
if [ "$built" = 1 ]; then
  # NDL_TEST_REQUIRE_GPU=1: a GPU is meant to be there, so a test that finds none fails, not skips.
  [ -n "$card" ] && export NDL_TEST_GPU=1 NDL_TEST_REQUIRE_GPU=1
  (cd "$build" && timeout "$(limit 240)" ctest -L gpu --output-on-failure -j"${NDL_GPU_CHECK_CTEST_JOBS:-8}" \
     --timeout 180) >"$work/ctest.log" 2>&1
  rc=$?
  grep -E "tests passed|tests failed|Total Test time|No tests were found|\*\*\*(Failed|Timeout)|Not Run" "$work/ctest.log"
  res=$(grep -E "tests passed" "$work/ctest.log" | tail -1)
  skipped=$(grep -cE "\(Skipped\)$" "$work/ctest.log")
  [ "$skipped" -gt 0 ] && res="$res; $skipped skipped$([ -n "$card" ] && echo ' WITH a GPU visible: see ctest.log')"
  if grep -q "No tests were found" "$work/ctest.log"; then
    note "ctest -L gpu: no test labelled gpu in this tree: nothing on the GPU was tested"
  elif [ "$rc" -eq 0 ]; then
    note "ctest -L gpu: ${res:-ok}"
  else
    grep -E "\*\*\*(Failed|Timeout)|\(Failed\)|\(Timeout\)" "$work/ctest.log" | head -20
    fail "ctest -L gpu" "exit $rc${res:+: $res}"
  fi
else
  fail "ctest -L gpu" "not built"
fi

# 5. One default run (MLPResNet, Adam, batch 100, Fashion-MNIST) for $epochs epochs: our time per training
#    epoch (median, from --log's time_s) against PyTorch eager on the same device; on a GPU also with
#    --cuda-graph (step capture + replay), where the tree has it.
ms() { awk -v t="$1" 'BEGIN {printf "%.1f", t * 1000}'; }
run_ours() {  # NAME ARGS...: one timed run; sets $ran (median s/epoch, empty on failure) and $rc
  local name=$1; shift
  ran=""
  timeout "$(limit 180)" "$build/launch/ndl-train" --device "$device" --data "$data" --epochs "$epochs" --quiet \
    --log "$work/$name.jsonl" "$@" >"$work/$name.txt" 2>"$work/$name.err"
  rc=$?
  cat "$work/$name.txt"
  [ "$rc" -eq 0 ] || { head -3 "$work/$name.err"; return; }
  local times err
  times=$(grep -o '"time_s":[0-9.e+-]*' "$work/$name.jsonl" | cut -d: -f2)
  ran=$(echo "$times" | median)
  err=$(grep -o '"test_err":[0-9.]*' "$work/$name.jsonl" | tail -1 | cut -d: -f2)
  note "needle-c --device $device${*:+ $*}: $(ms "$ran") ms/epoch (median of $(echo $times | sed 's/ /, /g') s)," \
       "test_err $err"
}
stage "timing: ndl-train --device $device vs PyTorch ($epochs epochs, $data)"
ours=""
if [ "$built" = 1 ] && [ -n "$data" ]; then
  run_ours ours
  ours=$ran
  [ "$rc" -eq 0 ] || fail "ndl-train --device $device" "exit $rc: $(head -1 "$work/ours.err")"
  if [ -n "$ours" ] && [ "$device" = cuda ]; then
    run_ours ours_graph --cuda-graph
    if [ "$rc" -eq 2 ] && grep -q "cuda-graph" "$work/ours_graph.err"; then
      note "--cuda-graph: not in this tree ($(head -1 "$work/ours_graph.err"))"
    elif [ "$rc" -ne 0 ]; then
      fail "ndl-train --device cuda --cuda-graph" "exit $rc: $(head -1 "$work/ours_graph.err")"
    elif awk -v g="$ran" -v o="$ours" 'BEGIN {exit !(g < o)}'; then
      note "--cuda-graph is faster: $(ms "$ran") vs $(ms "$ours") ms/epoch (the ratio below uses the faster)"
      ours=$ran
    else
      note "--cuda-graph is not faster: $(ms "$ran") vs $(ms "$ours") ms/epoch"
    fi
  fi
else
  why="not built"
  [ "$built" = 1 ] && why="no data (NDL_DATA, $carry/fashion-mnist, /usr/share/datasets/fashion-mnist)"
  fail "ndl-train --device $device" "$why"
fi

ref=""
for r in ../shared/bench/torch_mlpresnet.py shared/bench/torch_mlpresnet.py "$carry/torch_mlpresnet.py" \
         bench/torch_mlpresnet.py; do
  [ -f "$r" ] && { ref=$r; break; }
done
theirs=""
if [ -n "$ref" ] && [ -n "$data" ] && [ -n "$py" ]; then
  timeout "$(limit 240)" "$py" "$ref" "$data" "$epochs" 1 "$torch_device" >"$work/torch.txt" 2>"$work/torch.err"
  rc=$?
  cat "$work/torch.txt"
  if [ "$rc" -eq 0 ]; then
    times=$(awk '{for (i = 1; i < NF; i++) if ($i == "epoch_s") print $(i + 1)}' "$work/torch.txt")
    theirs=$(echo "$times" | median)
    note "pytorch eager $torch_device ($ref, 1 thread): $(ms "$theirs") ms/epoch (median of" \
         "$(echo $times | sed 's/ /, /g') s)"
  else
    tail -3 "$work/torch.err"
    fail pytorch "exit $rc: $(tail -1 "$work/torch.err")"
  fi
else
  why="no data"
  [ -n "$ref" ] || why="no torch_mlpresnet.py"
  [ -n "$py" ] || why="no python3 with torch and numpy"
  fail pytorch "$why"
fi
if [ -n "$ours" ] && [ -n "$theirs" ]; then
  note "$(awk -v o="$ours" -v t="$theirs" -v d="$device" 'BEGIN {
    printf "ratio: needle-c is %.2fx PyTorch eager per training epoch on %s", t / o, d
    if (d == "cuda") printf " (targets: >= 10x: %s; <= 50 ms/epoch: %s)", (t / o >= 10 ? "met" : "not met"),
                            (o <= 0.05 ? "met" : "not met")}')$([ "$emu" = 1 ] && echo ' [emulated: not a GPU measurement]')"
fi

# 6. The largest batch that fits, and its samples/s: the default model at each size of the sweep
#    (epochs enough for >= 20 steps, the first epoch left out of the median); an out-of-memory exit
#    ends the sweep (the training set has 60,000 images: 60000 is one step per epoch).
stage "batch sweep (--device $device)"
if [ "$built" = 1 ] && [ -n "$data" ]; then
  largest=""
  for b in ${NDL_GPU_CHECK_BATCHES:-100 1000 10000 60000}; do
    per=$(( (60000 + b - 1) / b )); ep=$(( (20 + per - 1) / per + 1 )); [ "$ep" -gt 10 ] && ep=10
    timeout "$(limit 90)" "$build/launch/ndl-train" --device "$device" --data "$data" --epochs "$ep" --quiet \
      --batch-size "$b" --log "$work/batch_$b.jsonl" >/dev/null 2>"$work/batch_$b.err"
    rc=$?
    if [ "$rc" -ne 0 ]; then
      note "batch $b: exit $rc: $(head -1 "$work/batch_$b.err")"
      [ "$rc" -eq 1 ] && grep -q "out of device memory" "$work/batch_$b.err" || fail "batch $b" "exit $rc"
      break
    fi
    sps=$(grep -o '"samples_per_s":[0-9.e+-]*' "$work/batch_$b.jsonl" | cut -d: -f2 | tail -n +2 | median)
    note "batch $b: ${sps:-?} samples/s (median of epochs 2..$ep)"
    largest="$b (${sps:-?} samples/s)"
  done
  note "largest batch that ran: ${largest:-none}"
fi

# 7. Step time, kernels against gaps: the MLP without dropout (a step CUDA graphs can capture) eager and
#    replayed; a replay launches the whole step at once, so eager - replayed is the launch gaps' share.
stage "step breakdown: eager vs --cuda-graph (--model mlp --drop-prob 0)"
if [ "$built" = 1 ] && [ -n "$data" ] && [ "$device" = cuda ]; then
  run_ours mlp_eager --model mlp --drop-prob 0
  eager=$ran
  run_ours mlp_graph --model mlp --drop-prob 0 --cuda-graph --verbose
  graph=$ran
  if [ -n "$eager" ] && [ -n "$graph" ]; then
    grep -q "eager steps" "$work/mlp_graph.err" && note "--cuda-graph fell back: $(grep -m1 'eager steps' "$work/mlp_graph.err")"
    note "$(awk -v e="$eager" -v g="$graph" 'BEGIN {
      printf "step (600/epoch): eager %.1f us, replayed %.1f us: launch gaps ~%.1f us/step (%.0f%% of eager)",
             e / 600 * 1e6, g / 600 * 1e6, (e - g) / 600 * 1e6, (e > 0 ? 100 * (e - g) / e : 0)}')"
  fi
fi
finish 0
}

main 2>&1 | tee "$work/gpu_check.log"
rc=${PIPESTATUS[0]}
[ -n "${OUT:-}" ] && [ -d "$OUT" ] && cp "$work/gpu_check.log" "$OUT/gpu_check.log"
exit "$rc"

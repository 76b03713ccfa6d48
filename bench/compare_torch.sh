#!/usr/bin/env bash
# compare_torch.sh: the default run (MLPResNet 784-100, 3 blocks, BatchNorm, dropout 0.1, Adam,
# batch 100, Fashion-MNIST) trained by ndl-train and by the PyTorch reference (bench/torch_mlpresnet.py,
# 1 and 2 threads), back to back on this machine. Prints each one's time per training epoch (median
# over epochs), the speed-up over PyTorch's best thread count, the sgemm-bound floor at the thread
# count the default run uses (bench_core's fastest bare sgemm of one epoch's GEMMs on that many
# threads; ndl-train's default is one thread per online core), peak RSS of both, the test error of
# both, and the BLAS kernel (ndl-train and bench_core choose it themselves unless OPENBLAS_CORETYPE is
# set). Then the data-parallel peers: PyTorch DDP (gloo, 2 processes x 1 thread,
# $NDL_PEERS/torch_ddp.py DATA epochs 2, default NDL_PEERS=../shared/bench) against
# `mpirun -np 2 ndl-train --threads 1`, and their ratio (skipped when the peer script is missing).
# Usage: bench/compare_torch.sh [epochs=10] [build-dir=build]    (needs python3-torch, python3-numpy)
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-10}
build=${2:-build}
data=${NDL_DATA:-/usr/share/datasets/fashion-mnist}
py=/usr/bin/python3
[ -x "$py" ] && "$py" -c "import torch, numpy" 2>/dev/null || {
  echo "compare_torch: needs /usr/bin/python3 with torch and numpy (apt-get install python3-torch python3-numpy)" >&2
  exit 2
}
[ -d "$build" ] || cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target ndl-train bench_core >/dev/null
threads=$(getconf _NPROCESSORS_ONLN) # ndl-train's default --threads: online cores / local ranks (launch/threads.c)
peers=${NDL_PEERS:-../shared/bench}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%F)"
echo "run: $epochs epochs of the default model on $data; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "OPENBLAS_CORETYPE: ${OPENBLAS_CORETYPE-unset}"

# the floor is measured right before and right after the run (the faster of the two), so a burst of
# load from other jobs on a shared machine does not make the ratio look better than it is
"$build/bench/bench_core" 600 3 "$threads" >"$out/bench0.txt"
/usr/bin/time -f %M -o "$out/ours.rss" "$build/launch/ndl-train" --data "$data" --epochs "$epochs" --quiet --verbose \
  >"$out/ours.txt" 2>"$out/ours.err" || { cat "$out/ours.err" >&2; exit 1; }
sed -n 's/^ndl-train: blas: /ndl-train BLAS: /p' "$out/ours.err"
ours=$(awk '{for (i=1;i<=NF;i++) if ($i=="time") {sub("s","",$(i+1)); print $(i+1)}}' "$out/ours.txt" | median)
ours_err=$(awk '{for (i=1;i<=NF;i++) if ($i=="test_err") print $(i+1)}' "$out/ours.txt" | tail -1)

best=""
for th in 1 2; do
  /usr/bin/time -f %M -o "$out/torch$th.rss" "$py" bench/torch_mlpresnet.py "$data" "$epochs" "$th" >"$out/torch$th.txt"
  t=$(awk '{for (i=1;i<=NF;i++) if ($i=="epoch_s") print $(i+1)}' "$out/torch$th.txt" | median)
  e=$(awk '{for (i=1;i<=NF;i++) if ($i=="test_err") print $(i+1)}' "$out/torch$th.txt" | tail -3 | paste -sd' ')
  printf "pytorch %d thread(s): %.3f s/epoch (median)  test_err last 3 epochs: %s  peak RSS %d MiB\n" \
    "$th" "$t" "$e" $(( $(cat "$out/torch$th.rss") / 1024 ))
  if [ -z "$best" ] || awk "BEGIN {exit !($t < $best)}"; then best=$t; fi
done
"$build/bench/bench_core" 600 3 "$threads" >"$out/bench1.txt"
f0=$(awk '/sgemm floor at/ {print $(NF-1)}' "$out/bench0.txt")
f1=$(awk '/sgemm floor at/ {print $(NF-1)}' "$out/bench1.txt")
if awk "BEGIN {exit !($f0 < $f1)}"; then cp "$out/bench0.txt" "$out/bench.txt"; else cp "$out/bench1.txt" "$out/bench.txt"; fi
floor=$(awk '/sgemm floor at/ {print $(NF-1)}' "$out/bench.txt")
sed -n 's/^  blas: /bench_core BLAS: /p' "$out/bench.txt"
printf "needle-c:             %.3f s/epoch (median)  test_err final: %s  peak RSS %d MiB\n" \
  "$ours" "$ours_err" $(( $(cat "$out/ours.rss") / 1024 ))
printf "speed-up over PyTorch's best thread count: %.2fx (target >= 6x)\n" "$(awk "BEGIN {print $best / $ours}")"
printf "sgemm floor (one epoch's GEMMs, fastest bare sgemm at the run's %d thread(s)): %.3f s; needle-c / floor: %.2f (target <= 1.3)\n" \
  "$threads" "$floor" "$(awk "BEGIN {print $ours / $floor}")"
sed -n 's/^  /  bench_core: /p' "$out/bench.txt" | grep -v blas:
echo "needle-c per-epoch lines:"
sed 's/^/  /' "$out/ours.txt"

if [ -f "$peers/torch_ddp.py" ]; then
  mpirun -np 2 --oversubscribe --bind-to core "$build/launch/ndl-train" --data "$data" --epochs "$epochs" --threads 1 \
    --quiet >"$out/ours2.txt" 2>"$out/ours2.err" || { cat "$out/ours2.err" >&2; exit 1; }
  ours2=$(awk '{for (i=1;i<=NF;i++) if ($i=="time") {sub("s","",$(i+1)); print $(i+1)}}' "$out/ours2.txt" | median)
  "$py" "$peers/torch_ddp.py" "$data" "$epochs" 2 >"$out/ddp.txt" 2>"$out/ddp.err" || { cat "$out/ddp.err" >&2; exit 1; }
  ddp=$(awk '{for (i=1;i<=NF;i++) if ($i=="epoch_s") print $(i+1)}' "$out/ddp.txt" | median)
  printf "pytorch DDP (gloo), 2 processes x 1 thread: %.3f s/epoch (median)  test_err final: %s\n" "$ddp" \
    "$(awk '{for (i=1;i<=NF;i++) if ($i=="test_err") print $(i+1)}' "$out/ddp.txt" | tail -1)"
  printf "needle-c mpirun -np 2 --threads 1:          %.3f s/epoch (median)  test_err final: %s\n" "$ours2" \
    "$(awk '{for (i=1;i<=NF;i++) if ($i=="test_err") print $(i+1)}' "$out/ours2.txt" | tail -1)"
  printf "2 ranks: needle-c over PyTorch DDP: %.2fx\n" "$(awk "BEGIN {print $ddp / $ours2}")"
else
  echo "DDP peer: $peers/torch_ddp.py not found (set NDL_PEERS), skipped"
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

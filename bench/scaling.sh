#!/usr/bin/env bash
# scaling.sh: data-parallel scaling of the default run on this machine: 1 rank with 1 thread vs
# `mpirun -np N` ranks with 1 thread each (same seed and flags, SyncBN on), back to back. Prints the
# median time per training epoch of each, the speed-up, the gradient all-reduce time per step and
# the bytes all-reduced per step (from ndl-train's --log). Usage: bench/scaling.sh [epochs=3] [N=2] [build=build]
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-3}
np=${2:-2}
build=${3:-build}
data=${NDL_DATA:-/usr/share/datasets/fashion-mnist}
[ -d "$build" ] || cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target ndl-train >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { grep -o "\"$1\":[0-9.e+-]*" "$2" | cut -d: -f2; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%F)," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg) (other jobs on these cores make the 2-rank figure unfair)"
"$build/launch/ndl-train" --data "$data" --epochs "$epochs" --threads 1 --quiet --log "$out/one.jsonl" >"$out/one.txt"
mpirun -np "$np" --oversubscribe --bind-to core "$build/launch/ndl-train" --data "$data" --epochs "$epochs" \
  --threads 1 --quiet --log "$out/many.jsonl" >"$out/many.txt"
one=$(field time_s "$out/one.jsonl" | median)
many=$(field time_s "$out/many.jsonl" | median)
steps=$(( $(field step "$out/many.jsonl" | tail -1) / epochs ))
ar=$(field allreduce_s "$out/many.jsonl" | median)
bytes=$(field allreduce_bytes_per_step "$out/many.jsonl" | tail -1)
printf "1 rank x 1 thread:   %.3f s/epoch (median of %d)\n" "$one" "$epochs"
printf "%d ranks x 1 thread:  %.3f s/epoch (median of %d)\n" "$np" "$many" "$epochs"
printf "speed-up: %.2fx (target >= 1.6x for 2 ranks on 2 cores)\n" "$(awk "BEGIN {print $one / $many}")"
printf "gradient all-reduce: %.1f us/step, %d bytes/step (%d steps/epoch)\n" \
  "$(awk "BEGIN {print $ar / $steps * 1e6}")" "$bytes" "$steps"
echo "final lines:"; tail -1 "$out/one.txt" | sed 's/^/  1 rank:  /'; tail -1 "$out/many.txt" | sed "s/^/  $np ranks: /"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

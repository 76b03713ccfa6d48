#!/bin/bash
# multihost_bw.sh: the default run across simulated hosts (network namespaces on a bridge, one rank
# each, Open MPI over TCP: tests/netns_hosts.sh, shared with tests/multihost.sh) next to 1 process:
# per-step time of the training loop, the gradient all-reduce's time per step and its bus bandwidth
# in the nccl-tests sense, 2(N-1)/N * bytes / time, and the SyncBN all-reduces' time per step (--profile,
# mean over ranks), from ndl-train's --log; then bench_allreduce's bus bandwidth for the same buffer
# alone (median call). Medians of REPS runs of STEPS steps each (--threads 1 per rank).
# All "hosts" share this machine's cores and its kernel's veth bridge: the figures measure the TCP
# path's software cost, not a real network. Needs root (else exit 77).
# Usage: bench/multihost_bw.sh [steps=300] [reps=3] [build=build]   (data: $NDL_DATA or Fashion-MNIST)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-300}
reps=${2:-3}
build=${3:-build}
data=${NDL_DATA:-/usr/share/datasets/fashion-mnist}
[ -d "$build" ] || cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target ndl-train bench_allreduce >/dev/null
train=$PWD/$build/launch/ndl-train
netns_who=multihost_bw
. tests/netns_hosts.sh
netns_setup 3 "$(mktemp -d /tmp/ndl-multihost-bw.XXXXXX)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { grep -o "\"$1\":[0-9.e+-]*" "$2" | tail -1 | cut -d: -f2; }
args=(--data "$data" --epochs 1 --max-steps "$steps" --threads 1 --quiet --profile)
prof() { grep -o "\"$1\":{[^}]*}" "$2" | tail -1 | grep -o '"mean":[0-9.e+-]*' | cut -d: -f2; } # mean over ranks

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%F);" \
  "load average $(cut -d' ' -f1-3 /proc/loadavg); $steps steps, median of $reps"
printf "%-10s %8s %13s %10s %12s %17s %17s\n" run "ms/step" "allreduce us" "syncbn us" "bytes/step" "bus GB/s (train)" "bus GB/s (alone)"
for n in 1 2 3; do
  : >"$work/step.txt"
  : >"$work/ar.txt"
  : >"$work/bn.txt"
  bytes=0
  for _ in $(seq 1 "$reps"); do
    rm -f "$work/run.jsonl"
    if [ "$n" = 1 ]; then
      "$train" "${args[@]}" --log "$work/run.jsonl" >/dev/null
    else
      netns_mpi_opts "$n"
      in_host0 timeout -k 5 300 mpirun "${mpi_opts[@]}" "$train" "${args[@]}" --log "$work/run.jsonl" >/dev/null
    fi
    s=$(field step "$work/run.jsonl")
    awk -v t="$(field time_s "$work/run.jsonl")" -v s="$s" 'BEGIN { print t / s * 1e3 }' >>"$work/step.txt"
    awk -v t="$(field allreduce_s "$work/run.jsonl")" -v s="$s" 'BEGIN { print t / s * 1e6 }' >>"$work/ar.txt"
    awk -v t="$(prof syncbn_s "$work/run.jsonl")" -v s="$s" 'BEGIN { print t / s * 1e6 }' >>"$work/bn.txt"
    bytes=$(field allreduce_bytes_per_step "$work/run.jsonl")
  done
  step=$(median <"$work/step.txt")
  ar=$(median <"$work/ar.txt")
  bn=$(median <"$work/bn.txt")
  if [ "$n" = 1 ]; then
    printf "%-10s %8.3f %13s %10s %12s %17s %17s\n" "1 process" "$step" - - - - -
    continue
  fi
  alone=$(in_host0 timeout -k 5 300 mpirun "${mpi_opts[@]}" "$PWD/$build/bench/bench_allreduce" "$((bytes / 4))" 500 2>&1 |
    grep -o 'bus bandwidth [0-9.]*' | grep -o '[0-9.]*$')
  printf "%-10s %8.3f %13.1f %10.1f %12d %17.3f %17s\n" "$n hosts" "$step" "$ar" "$bn" "$bytes" \
    "$(awk -v n="$n" -v b="$bytes" -v t="$ar" 'BEGIN { print 2 * (n - 1) / n * b / (t * 1e-6) / 1e9 }')" "${alone:-?}"
done

#!/usr/bin/env bash
# profile_overhead.sh: what --profile costs. Runs the default ndl-train run (--epochs 1 --max-steps
# STEPS) without and with --profile, alternately (off/on, then on/off, ...), PAIRS pairs, and prints
# the median training-loop time (the --log epoch line's time_s), process wall time and process CPU
# time (user + system) of each, and the overhead of the medians. NDL_LAUNCH prefixes every run
# (NDL_LAUNCH="mpirun --oversubscribe --bind-to core -np 2": rank 0's epoch time, all ranks' CPU).
# Usage: bench/profile_overhead.sh [pairs=7] [steps=300] [build=build] [-- extra ndl-train options]
set -euo pipefail
cd "$(dirname "$0")/.."
pos=()
while (($#)) && [ "$1" != "--" ]; do pos+=("$1"); shift; done
(($#)) && shift # the options after -- go to every run
pairs=${pos[0]:-7}
steps=${pos[1]:-300}
build=${pos[2]:-build}
data=${NDL_DATA:-/usr/share/datasets/fashion-mnist}
read -r -a launch <<<"${NDL_LAUNCH:-}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
[ -d "$build" ] || cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target ndl-train >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
one() { # $1: off|on -> appends "epoch_time wall" to $out/$1
  local mode=$1 flag=() t0 t1
  shift
  [ "$mode" = on ] && flag=(--profile)
  t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$out/cpu" "${launch[@]}" "$build/launch/ndl-train" --data "$data" --epochs 1 --max-steps "$steps" \
    --quiet --log "$out/log" "${flag[@]}" "$@" >"$out/stdout"
  t1=$(date +%s.%N)
  echo "$(grep -o '"time_s":[0-9.]*' "$out/log" | cut -d: -f2) $(echo "$t1 - $t0" | bc -l)" \
    "$(awk '{print $1 + $2}' "$out/cpu")" >>"$out/$mode"
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%F)"
echo "run: ${NDL_LAUNCH:+$NDL_LAUNCH }ndl-train --epochs 1 --max-steps $steps --quiet $* [--profile], $pairs alternating pairs"
for ((i = 0; i < pairs; i++)); do
  if ((i % 2 == 0)); then one off "$@"; one on "$@"; else one on "$@"; one off "$@"; fi
done
for k in 1 2 3; do
  off=$(cut -d' ' -f$k "$out/off" | median)
  on=$(cut -d' ' -f$k "$out/on" | median)
  name=$(case $k in 1) echo "training loop";; 2) echo "process wall ";; *) echo "process CPU  ";; esac)
  printf "%s  off %.4f s  on %.4f s  (medians)  overhead %+.2f%%\n" "$name" "$off" "$on" \
    "$(echo "($on - $off) / $off * 100" | bc -l)"
done
echo "all runs (epoch time, wall, CPU): off: $(tr '\n' ';' <"$out/off")"
echo "                                   on: $(tr '\n' ';' <"$out/on")"

#!/usr/bin/env bash
# rank_drift.sh: how long an N-rank run agrees step by step with the 1-rank run (README "Distributed
# training"): the same flags on 1 rank and under `mpirun -np N`, --log-steps, then per optimizer
# setting the largest relative per-step loss difference over steps 1-100, the first step where it
# exceeds 1e-5, and the difference at steps 100, 150, 200, 300.
# Usage: bench/rank_drift.sh [steps=300] [N=2] [build=build]   (data: $NDL_DATA or Fashion-MNIST)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-300}
np=${2:-2}
build=${3:-build}
data=${NDL_DATA:-/usr/share/datasets/fashion-mnist}
[ -d "$build" ] || cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target ndl-train >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# step -> loss of the per-step lines of a --log file
losses() { grep '"loss":' "$1" | grep -v test_err | sed 's/.*"step":\([0-9]*\).*"loss":\([^,}]*\).*/\1 \2/'; }

compare() { # name, then ndl-train flags
  local name=$1
  shift
  "$build/launch/ndl-train" --data "$data" --quiet --max-steps "$steps" --log-steps --log "$out/a.jsonl" "$@" >/dev/null
  mpirun -np "$np" --oversubscribe "$build/launch/ndl-train" --data "$data" --quiet --max-steps "$steps" \
    --log-steps --log "$out/b.jsonl" "$@" >/dev/null
  paste -d' ' <(losses "$out/a.jsonl") <(losses "$out/b.jsonl") | awk -v name="$name" '
    function abs(x) { return x < 0 ? -x : x }
    $1 != $3 { print "step mismatch: " $0; exit 1 }
    { d = abs($2 - $4) / abs($2); if ($1 <= 100 && d > m) m = d; if (!first && d > 1e-5) first = $1
      if ($1 == 100 || $1 == 150 || $1 == 200 || $1 == 300) at = at sprintf(" step%d %.1e", $1, d) }
    END { printf "%-34s max 1-100 %.1e, first > 1e-5 at step %s,%s\n", name, m, first ? first : "none", at }'
}

echo "$np ranks vs 1 rank, $steps steps, $data, $(date -u +%F)"
compare "adam (default run)"
compare "sgd --lr 0.1 --momentum 0.9" --optimizer sgd --lr 0.1 --momentum 0.9
compare "sgd --lr 0.01 --momentum 0.9" --optimizer sgd --lr 0.01 --momentum 0.9
compare "sgd (lr 0.001, no momentum)" --optimizer sgd

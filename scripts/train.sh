#!/usr/bin/env bash
# train.sh: install dependencies, build ndl-train (Release) and train the default model
# (MLPResNet, Adam, 10 epochs) on Fashion-MNIST from Debian's dataset-fashion-mnist.
# Extra arguments go to ndl-train, e.g. scripts/train.sh --epochs 3 --optimizer sgd --lr 0.1
# With --log FILE it ends by printing the command that draws FILE (scripts/plot.py).
set -euo pipefail
caller=$PWD
cd "$(dirname "$0")/.."
scripts/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target ndl-train >/dev/null
log=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --log=*) log=${args[i]#--log=} ;;
    --log) [ $((i + 1)) -lt ${#args[@]} ] && log=${args[i + 1]} ;;
  esac
done
status=0
build/launch/ndl-train "$@" || status=$?
if [ -n "$log" ] && [ -s "$log" ]; then  # paths as seen from where train.sh was started
  plot=scripts/plot.py
  [ "$caller" = "$PWD" ] || { plot=$PWD/$plot; [ "${log#/}" != "$log" ] || log=$PWD/$log; }
  printf 'curves: %q %q -o curves.png\n' "$plot" "$log" >&2
fi
exit "$status"

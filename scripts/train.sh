#!/usr/bin/env bash
# train.sh: install dependencies, build ndl-train (Release) and train the default model
# (MLPResNet, Adam, 10 epochs) on Fashion-MNIST from Debian's dataset-fashion-mnist.
# Extra arguments go to ndl-train, e.g. scripts/train.sh --epochs 3 --optimizer sgd --lr 0.1
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target ndl-train >/dev/null
exec build/launch/ndl-train "$@"

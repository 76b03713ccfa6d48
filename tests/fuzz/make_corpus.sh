#!/usr/bin/env bash
# make_corpus.sh: (re)make the seed corpus and the crafted regression inputs of tests/fuzz from a
# tiny generated data set and a real ndl-train run: IDX files (raw and gzip) that are also the resume
# target's data set, the run's --save weights, a mid-epoch and an epoch-end checkpoint; then the
# crash inputs of issue 9 items 9 and 11, crafted from those. Rerun it whenever the checkpoint format
# changes (the resume seeds must be checkpoints of the current build). Usage: make_corpus.sh NDL-TRAIN
set -euo pipefail
ndl_train=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
cor=$here/corpus reg=$here/regressions
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$cor"/{fuzz_idx,fuzz_safetensors,fuzz_resume,fuzz_cifar} "$reg"/{fuzz_idx,fuzz_safetensors,fuzz_resume,fuzz_cifar}

# 1. Data: 16 training and 8 test images of 8x8 pixels, labels i % 10 (train raw, t10k gzip).
python3 - "$cor/fuzz_idx" <<'PY'
import gzip, struct, sys
out = sys.argv[1]
def images(n, seed):
    x, px = seed, bytearray()
    for _ in range(n * 64):
        x = (x * 1103515245 + 12345) % 2**31
        px.append(x >> 23)
    return struct.pack(">IIII", 0x803, n, 8, 8) + bytes(px)
def labels(n):
    return struct.pack(">II", 0x801, n) + bytes(i % 10 for i in range(n))
open(f"{out}/train-images-idx3-ubyte", "wb").write(images(16, 1))
open(f"{out}/train-labels-idx1-ubyte", "wb").write(labels(16))
open(f"{out}/t10k-images-idx3-ubyte.gz", "wb").write(gzip.compress(images(8, 2), mtime=0))
open(f"{out}/t10k-labels-idx1-ubyte.gz", "wb").write(gzip.compress(labels(8), mtime=0))
PY

# 2. A real run with fuzz_resume.c's OPTIONS: weights, a mid-epoch and an epoch-end checkpoint.
opts=(--data "$cor/fuzz_idx" --model mlpresnet --hidden-dim 16 --blocks 1 --batch-size 4 --augment --threads 1
      --quiet)
"$ndl_train" "${opts[@]}" --epochs 2 --max-steps 2 --checkpoint-dir "$tmp/mid" --checkpoint-every 2 \
  --save "$tmp/weights.safetensors"
"$ndl_train" "${opts[@]}" --epochs 1 --checkpoint-dir "$tmp/end"
cp "$tmp/weights.safetensors" "$cor/fuzz_resume/weights.safetensors"
cp "$tmp"/mid/ckpt-*.safetensors "$cor/fuzz_resume/ckpt-mid-epoch.safetensors"
cp "$tmp"/end/ckpt-*.safetensors "$cor/fuzz_resume/ckpt-epoch-end.safetensors"
# the one field that differs between runs (wall time): 0, so the seeds are reproducible byte for byte
python3 - "$cor/fuzz_resume"/ckpt-*.safetensors <<'PY'
import json, struct, sys
for path in sys.argv[1:]:
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    head = json.loads(b[8:8 + n])
    head["__metadata__"]["ndl.seconds"] = "0"
    h = json.dumps(head, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + b[8 + n:])
PY
cp "$tmp/weights.safetensors" "$cor/fuzz_safetensors/weights.safetensors"
cp "$cor/fuzz_resume/ckpt-mid-epoch.safetensors" "$cor/fuzz_safetensors/ckpt-mid-epoch.safetensors"

# 3. Crash inputs (issue 9): IDX headers, a weights file and a safetensors header here; the crafted
#    checkpoints in the current format by craft_regressions.py. The v1-ckpt-* inputs (format 1: raw
#    _ndl.rng/_ndl.cursor blobs) are kept as they are: the current build must refuse them cleanly.
python3 "$here/craft_regressions.py" "$cor/fuzz_resume/ckpt-mid-epoch.safetensors" \
  "$cor/fuzz_resume/ckpt-epoch-end.safetensors" "$reg/fuzz_resume"
python3 - "$cor" "$reg" <<'PY'
import gzip, json, struct, sys
cor, reg = sys.argv[1], sys.argv[2]
idx = f"{reg}/fuzz_idx"
# item 11: a 16-byte header claiming 32768 x 256 x 256 = 2^31 pixels (8 GiB of floats), no payload
hdr = struct.pack(">IIII", 0x803, 32768, 256, 256)
open(f"{idx}/images-2p31-pixels-header-only", "wb").write(hdr)
open(f"{idx}/images-2p31-pixels-header-only.gz", "wb").write(gzip.compress(hdr, mtime=0))
# the same for labels: 10^9 labels (4 GB of int32) claimed by an 8-byte header
open(f"{idx}/labels-1e9-header-only", "wb").write(struct.pack(">II", 0x801, 10**9))

def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), bytearray(b[8 + n:])
def save(path, head, body):
    h = json.dumps(head, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + bytes(body))

res = f"{reg}/fuzz_resume"
# item 11: a newline in a tensor name (weights: "unexpected tensor")
head, body = load(f"{cor}/fuzz_resume/weights.safetensors")
end = max(v["data_offsets"][1] for k, v in head.items() if k != "__metadata__")
head["x\nndl-train: forged line"] = {"dtype": "U8", "shape": [1], "data_offsets": [end, end + 1]}
save(f"{res}/weights-name-newline.safetensors", head, body + b"\0")
# the reader's own messages quote tensor names too (here: an unknown dtype)
save(f"{reg}/fuzz_safetensors/name-newline-bad-dtype.safetensors",
     {"x\nndl-train: forged line": {"dtype": "F16", "shape": [], "data_offsets": [0, 2]}}, b"\0\0")
PY
# 4. CIFAR-10 (fuzz_cifar): seeds of 1 and 2 records (labels 0..9, a pixel ramp per channel), and the
#    reader's error cases as regression inputs (truncated record, label 10 and 255, empty, 1 byte).
python3 - "$cor/fuzz_cifar" "$reg/fuzz_cifar" <<'PY'
import sys
cor, reg = sys.argv[1], sys.argv[2]
def record(label, seed):
    return bytes([label]) + bytes((seed * 7 + c * 31 + p * 3) % 256 for c in range(3) for p in range(1024))
open(f"{cor}/one-record.bin", "wb").write(record(3, 1))
open(f"{cor}/two-records.bin", "wb").write(record(0, 2) + record(9, 3))
two = record(1, 4) + record(2, 5)
open(f"{reg}/truncated-record.bin", "wb").write(two[:-1])
open(f"{reg}/extra-byte.bin", "wb").write(two + b"\0")
open(f"{reg}/label-10.bin", "wb").write(record(1, 6) + record(10, 7))
open(f"{reg}/label-255.bin", "wb").write(record(255, 8))
open(f"{reg}/empty.bin", "wb").write(b"")
open(f"{reg}/one-byte.bin", "wb").write(b"\x05")
PY
du -sh "$cor" "$reg"

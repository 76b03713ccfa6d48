#!/usr/bin/python3
"""test_plot.py: scripts/plot.py draws ndl-train --log files into a PNG, and refuses bad logs.

Usage: test_plot.py PLOT_PY NDL_TRAIN WORKDIR. Checks: a generated two-run log (epochs, steps,
--profile) renders a valid PNG (signature, IHDR with the asked size and a good CRC, IDAT that
decompresses to the declared size with more than a few distinct bytes, IEND); the default size;
a log ndl-train itself wrote (--log-steps --profile on generated IDX files) renders; a missing,
empty, malformed, foreign or incomplete log and an unwritable output are exit 2 with one line
naming the file, and leave no PNG. Skipped (77) when /usr/bin/python3 has no matplotlib.
"""
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import zlib

PLOT, NDL_TRAIN, WORK = sys.argv[1:4]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}", file=sys.stderr)


def run(args, **kw):
    return subprocess.run([sys.executable, PLOT] + args, cwd=WORK, capture_output=True, text=True,
                          timeout=300, **kw)


def png_info(path):
    """(width, height, distinct bytes of the raw scanlines) of a PNG, or raise AssertionError."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "no PNG signature"
    pos, chunks = 8, []
    while pos < len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(ctype + body) & 0xFFFFFFFF == crc, f"bad CRC in {ctype!r}"
        chunks.append((ctype, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and len(chunks[0][1]) == 13, "IHDR is not the first chunk"
    assert chunks[-1][0] == b"IEND", "no IEND at the end"
    w, h, depth, color = struct.unpack(">IIBB", chunks[0][1][:10])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    raw = zlib.decompress(b"".join(b for t, b in chunks if t == b"IDAT"))
    assert len(raw) == h * (1 + w * channels * depth // 8), "IDAT size does not match IHDR"
    return w, h, len(set(raw[::7]))


def expect_png(path, size, what):
    try:
        w, h, distinct = png_info(path)
    except (AssertionError, OSError, zlib.error, KeyError) as e:
        check(False, f"{what}: {path} is not a valid PNG: {e}")
        return
    check((w, h) == size, f"{what}: size {w}x{h}, expected {size[0]}x{size[1]}")
    check(distinct > 8, f"{what}: only {distinct} distinct byte values: a blank image?")


def expect_error(args, needle, what):
    out = os.path.join(WORK, "err.png")
    if os.path.exists(out):
        os.remove(out)
    r = run(args + ["-o", out])
    lines = r.stderr.strip().split("\n")
    check(r.returncode == 2, f"{what}: exit {r.returncode}, expected 2 ({r.stderr.strip()})")
    check(len(lines) == 1 and lines[0].startswith("plot.py: "), f"{what}: expected one 'plot.py: ' line, got {r.stderr!r}")
    check(needle in r.stderr, f"{what}: message lacks {needle!r}: {r.stderr!r}")
    check(not os.path.exists(out), f"{what}: an output file was written")


def epoch_line(epoch, loss, profile):
    rec = {"epoch": epoch, "epochs": 3, "step": 10 * epoch, "train_err": 0.5 / epoch, "train_loss": loss,
           "test_err": 0.6 / epoch, "test_loss": loss * 1.1, "time_s": 0.5, "samples_per_s": 1000.0 + epoch,
           "ranks": 1, "allreduce_s": 0.0, "allreduce_bytes_per_step": 0}
    if profile:
        rec["profile"] = {"ranks": 1, "steps": 10, "syncbn_calls": 0}
        for k, item in enumerate(["data_wait", "forward", "backward", "allreduce_wait", "allreduce_transfer",
                                  "syncbn", "optimizer", "eval", "checkpoint", "rest", "wall", "syncbn_wait"]):
            rec["profile"][item + "_s"] = {"min": 0.01 * k, "mean": 0.012 * k, "max": 0.015 * k}
    return json.dumps(rec)


def write(name, text):
    path = os.path.join(WORK, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def write_idx(d, split, n, rng):
    """n 28x28 images whose label is the row of a bright stripe (a learnable task)."""
    labels = bytes(rng.randrange(10) for _ in range(n))
    pixels = bytearray(n * 784)
    for i, y in enumerate(labels):
        for c in range(28):
            pixels[i * 784 + (2 * y + 4) * 28 + c] = 200 + rng.randrange(50)
    with open(os.path.join(d, f"{split}-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28) + bytes(pixels))
    with open(os.path.join(d, f"{split}-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + labels)


def main():
    if subprocess.run([sys.executable, "-c", "import matplotlib"], capture_output=True).returncode != 0:
        print("skipped: no matplotlib for", sys.executable, "(apt-get install python3-matplotlib)")
        sys.exit(77)
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)

    # two generated runs: epochs, steps and --profile; a resumed run's repeated epoch 2 (the last wins)
    steps = "".join(json.dumps({"step": s, "epoch": 1 + (s - 1) // 10, "loss": 2.0 / s}) + "\n" for s in range(1, 31))
    a = write("adam.jsonl", steps + "".join(epoch_line(e, 1.0 / e, True) + "\n" for e in (1, 2, 2, 3)))
    b = write("sgd.jsonl", "".join(epoch_line(e, 1.5 / e, False) + "\n" for e in (1, 2, 3)))
    r = run([a, b, "-o", "two.png", "--size", "900x600", "--title", "adam vs sgd"])
    check(r.returncode == 0, f"two runs: exit {r.returncode}: {r.stderr}")
    check("wrote two.png (900x600, 2 runs)" in r.stdout, f"two runs: stdout {r.stdout!r}")
    expect_png(os.path.join(WORK, "two.png"), (900, 600), "two runs")

    r = run([b])  # default output name and size, epochs only
    check(r.returncode == 0, f"default output: exit {r.returncode}: {r.stderr}")
    expect_png(os.path.join(WORK, "curves.png"), (1200, 800), "default output")

    # a log ndl-train wrote: the format plot.py reads is the one ndl-train writes
    data = os.path.join(WORK, "data")
    os.makedirs(data)
    rng = random.Random(0)
    write_idx(data, "train", 300, rng)
    write_idx(data, "t10k", 100, rng)
    t = subprocess.run([NDL_TRAIN, "--quiet", "--data", data, "--epochs", "2", "--batch-size", "50",
                        "--hidden-dim", "16", "--blocks", "1", "--log", "real.jsonl", "--log-steps", "--profile"],
                       cwd=WORK, capture_output=True, text=True, timeout=300)
    check(t.returncode == 0, f"ndl-train: exit {t.returncode}: {t.stderr}")
    r = run(["real.jsonl", "-o", "real.png", "--size", "640x480"])
    check(r.returncode == 0, f"ndl-train's log: exit {r.returncode}: {r.stderr}")
    expect_png(os.path.join(WORK, "real.png"), (640, 480), "ndl-train's log")

    # refusals: exit 2, one line naming the file, no output
    expect_error(["nowhere.jsonl"], "nowhere.jsonl: no such file", "missing log")
    expect_error([write("empty.jsonl", "")], "empty.jsonl: empty log", "empty log")
    expect_error([write("blank.jsonl", "\n\n")], "blank.jsonl: empty log", "blank log")
    expect_error([a, write("torn.jsonl", epoch_line(1, 1.0, False) + "\n{\"epoch\": 2, \"tra")],
                 "torn.jsonl:2: not JSON", "malformed line (and a good log before it)")
    expect_error([write("list.jsonl", "[1, 2]\n")], "list.jsonl:1: expected a JSON object", "JSON array")
    expect_error([write("foreign.jsonl", '{"name": "x"}\n')], "foreign.jsonl:1: not an ndl-train log line",
                 "foreign JSON")
    expect_error([write("partial.jsonl", '{"epoch": 1, "train_loss": 0.5}\n')],
                 "partial.jsonl:1: epoch line without a finite number for 'train_err'", "incomplete epoch line")
    with open(os.path.join(WORK, "bytes.jsonl"), "wb") as f:
        f.write(b"\xff\xfe\x00")
    expect_error(["bytes.jsonl"], "bytes.jsonl: not UTF-8 text", "binary file")
    expect_error([WORK], "a directory", "directory")
    r = run([b, "-o", os.path.join(WORK, "no", "such", "dir.png")])
    check(r.returncode == 2 and "cannot write" in r.stderr and len(r.stderr.strip().split("\n")) == 1,
          f"unwritable output: exit {r.returncode}: {r.stderr!r}")
    r = run([b, "--size", "12x"])
    check(r.returncode == 2 and "WIDTHxHEIGHT" in r.stderr, f"bad --size: exit {r.returncode}: {r.stderr!r}")

    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        sys.exit(1)
    print("ok: plot.py")


main()

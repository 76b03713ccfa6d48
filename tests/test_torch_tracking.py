#!/usr/bin/python3
"""test_torch_tracking.py: ndl-train against PyTorch step by step (SPEC §5 "PyTorch agreement").
Usage: test_torch_tracking.py NDL_TRAIN WORKDIR. Exits 77 (ctest SKIP) when torch or numpy is missing.
A PyTorch-initialized MLPResNet (784-64, 2 blocks, BatchNorm, no dropout) is saved as safetensors;
both PyTorch and `ndl-train --load` then train it for 50 Adam steps (lr 0.001, weight decay 0.001,
batch 50, no shuffle) on the same generated IDX data. Per-step losses must agree within 1e-4 and the
final weights within 1e-3."""
import json, os, struct, subprocess, sys

try:
    import numpy as np
    import torch
    import torch.nn as nn
except ImportError as e:
    print(f"SKIP: {e}")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_torch_interop import st_load, st_save  # noqa: E402
from torch_ref import mlpresnet  # noqa: E402

STEPS, BATCH, N_TRAIN, N_TEST = 50, 50, 2500, 100


def write_idx(workdir, split, images, labels):
    n = len(labels)
    with open(os.path.join(workdir, f"{split}-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", 2051, n, 28, 28) + images.astype(np.uint8).tobytes())
    with open(os.path.join(workdir, f"{split}-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 2049, n) + labels.astype(np.uint8).tobytes())


def make_data(workdir, rng):
    def split(n):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 70, (n, 28, 28))
        for i, c in enumerate(labels):
            r0, c0 = (c // 5) * 12 + 3, (c % 5) * 5 + 1
            images[i, r0:r0 + 5, c0:c0 + 5] = 200 + rng.integers(0, 55, (5, 5))
        return images, labels
    tr, te = split(N_TRAIN), split(N_TEST)
    write_idx(workdir, "train", *tr)
    write_idx(workdir, "t10k", *te)
    return torch.from_numpy(tr[0].reshape(N_TRAIN, 784).astype(np.float32) / 255.0), torch.from_numpy(tr[1].astype(np.int64))


def main():
    ndl_train, workdir = sys.argv[1], sys.argv[2]
    os.makedirs(workdir, exist_ok=True)
    torch.manual_seed(1)
    torch.set_num_threads(1)
    x, y = make_data(workdir, np.random.default_rng(7))
    model = mlpresnet(784, hidden=64, blocks=2, p=0.0)
    init = os.path.join(workdir, "torch_init.safetensors")
    st_save(init, model.state_dict())

    opt = torch.optim.Adam(model.parameters(), lr=0.001, weight_decay=0.001)
    lossf = nn.CrossEntropyLoss()
    ref = []
    model.train()
    for s in range(STEPS):
        xb, yb = x[s * BATCH:(s + 1) * BATCH], y[s * BATCH:(s + 1) * BATCH]
        loss = lossf(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ref.append(loss.item())

    log, final = os.path.join(workdir, "steps.jsonl"), os.path.join(workdir, "ndl_final.safetensors")
    cmd = [ndl_train, "--data", workdir, "--load", init, "--hidden-dim", "64", "--blocks", "2", "--drop-prob", "0",
           "--batch-size", str(BATCH), "--no-shuffle", "--optimizer", "adam", "--lr", "0.001", "--weight-decay", "0.001",
           "--max-steps", str(STEPS), "--log", log, "--log-steps", "--save", final, "--quiet", "--threads", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print("ndl-train failed:", r.returncode, r.stderr)
        return 1
    ours = [json.loads(l)["loss"] for l in open(log) if '"loss"' in l]
    if len(ours) != STEPS:
        print(f"expected {STEPS} step losses, got {len(ours)}")
        return 1
    worst = max(abs(a - b) for a, b in zip(ours, ref))
    print(f"per-step loss: max |ndl - torch| = {worst:.3g} over {STEPS} steps (first {ref[0]:.6f}, last {ref[-1]:.6f})")
    ok = worst <= 1e-4
    got = st_load(final)
    wworst = 0.0
    for name, t in model.state_dict().items():
        if name.endswith("num_batches_tracked") or name.endswith("running_var"):
            continue  # PyTorch's running_var uses the unbiased variance, needle's the biased one
        wworst = max(wworst, (got[name].double() - t.double()).abs().max().item())
    print(f"final weights: max |ndl - torch| = {wworst:.3g}")
    ok = ok and wworst <= 1e-3
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

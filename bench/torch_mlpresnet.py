#!/usr/bin/python3
"""Peer reference (copied from the project brief): the seeds' MLPResNet trained with PyTorch on an MNIST-format IDX set.
Usage: torch_mlpresnet.py DATA_DIR [epochs] [threads] [device: cpu|cuda]
Prints per-epoch train error/loss, test error/loss and wall seconds per epoch."""
import gzip, struct, sys, time, numpy as np, torch, torch.nn as nn

def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 2051:
        r, c = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, offset=16).reshape(n, r * c).astype(np.float32) / 255.0
    return np.frombuffer(data, np.uint8, offset=8).astype(np.int64)

def block(dim, hidden, norm, p):
    main = nn.Sequential(nn.Linear(dim, hidden), norm(hidden), nn.ReLU(), nn.Dropout(p), nn.Linear(hidden, dim), norm(dim))
    class Res(nn.Module):
        def __init__(s): super().__init__(); s.fn = main
        def forward(s, x): return s.fn(x) + x
    return nn.Sequential(Res(), nn.ReLU())

def mlpresnet(dim, hidden=100, blocks=3, classes=10, norm=nn.BatchNorm1d, p=0.1):
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), *[block(hidden, hidden // 2, norm, p) for _ in range(blocks)], nn.Linear(hidden, classes))

def main():
    d = sys.argv[1]; epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
    dev = sys.argv[4] if len(sys.argv) > 4 else "cpu"
    torch.manual_seed(0); np.random.seed(4)
    Xtr, ytr = torch.from_numpy(idx(f"{d}/train-images-idx3-ubyte.gz")), torch.from_numpy(idx(f"{d}/train-labels-idx1-ubyte.gz"))
    Xte, yte = torch.from_numpy(idx(f"{d}/t10k-images-idx3-ubyte.gz")), torch.from_numpy(idx(f"{d}/t10k-labels-idx1-ubyte.gz"))
    Xtr, ytr, Xte, yte = Xtr.to(dev), ytr.to(dev), Xte.to(dev), yte.to(dev)
    model = mlpresnet(784).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=0.001, weight_decay=0.001)
    lossf = nn.CrossEntropyLoss(); B = 100
    for e in range(epochs):
        model.train(); t0 = time.perf_counter(); perm = torch.randperm(len(Xtr), device=dev); wrong = 0; tot = 0.0
        for i in range(0, len(Xtr), B):
            idxs = perm[i:i + B]; x, y = Xtr[idxs], ytr[idxs]
            out = model(x); loss = lossf(out, y)
            opt.zero_grad(); loss.backward(); opt.step()
            wrong += (out.argmax(1) != y).sum().item(); tot += loss.item() * len(y)
        if dev == "cuda": torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        model.eval(); tw = 0; tl = 0.0
        with torch.no_grad():
            for i in range(0, len(Xte), B):
                out = model(Xte[i:i + B]); tl += lossf(out, yte[i:i + B]).item() * len(out); tw += (out.argmax(1) != yte[i:i + B]).sum().item()
        print(f"epoch {e} train_err {wrong/len(Xtr):.4f} train_loss {tot/len(Xtr):.4f} test_err {tw/len(Xte):.4f} test_loss {tl/len(Xte):.4f} epoch_s {dt:.3f}", flush=True)

if __name__ == "__main__":
    main()

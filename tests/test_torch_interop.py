#!/usr/bin/python3
"""test_torch_interop.py: needle-c weight files against PyTorch's reference MLPResNet.
Usage: test_torch_interop.py WEIGHTS_TOOL WORKDIR. Exits 77 (ctest SKIP) when torch or numpy is missing.
1. weights_tool saves a seeded model; torch loads it with load_state_dict(strict=True) and its eval
   logits on the fixed input match the tool's within 1e-4.
2. torch saves a state_dict (after two training forwards); the tool loads it and prints matching logits.
The safetensors format is read and written here with struct + json (the `safetensors` package is
used as an extra cross-check only when installed)."""
import json, os, struct, subprocess, sys

try:
    import numpy as np
    import torch
except ImportError as e:
    print(f"SKIP: {e}")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_ref import mlpresnet  # noqa: E402

DTYPES = {"F32": (np.float32, torch.float32), "I64": (np.int64, torch.int64)}


def st_load(path):
    data = open(path, "rb").read()
    (hl,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + hl])
    body = data[8 + hl:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, t = e["data_offsets"]
        arr = np.frombuffer(body[b:t], dtype=DTYPES[e["dtype"]][0]).reshape(e["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def st_save(path, sd):
    header, chunks, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in sd.items():
        a = t.detach().cpu().contiguous().numpy()
        dt = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}[a.dtype]
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))


def fixed_input():
    return torch.from_numpy((np.arange(4 * 784) % 97 / 97.0).astype(np.float32).reshape(4, 784))


def run_tool(*args):
    r = subprocess.run([sys.argv[1], *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"FAIL: weights_tool {' '.join(args)} exited {r.returncode}: {r.stderr}")
    return torch.tensor([[float(v) for v in line.split()] for line in r.stdout.strip().splitlines()])


def check(name, ref, got):
    err = (ref - got).abs().max().item()
    print(f"{name}: max |diff| = {err:.3g}")
    if ref.shape != got.shape or not err <= 1e-4:
        sys.exit(f"FAIL: {name}: logits differ (max {err}); ref {ref[0, :4].tolist()} got {got[0, :4].tolist()}")


def main():
    tool, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    torch.set_num_threads(1)
    x = fixed_input()

    # ours -> torch
    path = os.path.join(work, "interop_ours.safetensors")
    ours = run_tool("save", path, "3")
    sd = st_load(path)
    if sd["2.0.fn.1.num_batches_tracked"].dtype != torch.int64 or sd["2.0.fn.1.num_batches_tracked"].dim() != 0:
        sys.exit("FAIL: num_batches_tracked is not an I64 scalar")
    if sd["2.0.fn.1.num_batches_tracked"].item() != 2:
        sys.exit(f"FAIL: num_batches_tracked is {sd['2.0.fn.1.num_batches_tracked'].item()}, expected 2")
    model = mlpresnet(784)
    if list(model.state_dict().keys()) != list(sd.keys()):
        sys.exit(f"FAIL: state_dict order differs:\n{list(model.state_dict().keys())}\n{list(sd.keys())}")
    model.load_state_dict(sd, strict=True)
    try:
        from safetensors.torch import load_file
        model.load_state_dict(load_file(path), strict=True)
        print("cross-checked with safetensors.torch.load_file")
    except ImportError:
        pass
    model.eval()
    with torch.no_grad():
        check("ours->torch", model(x), ours)

    # torch -> ours
    torch.manual_seed(7)
    model = mlpresnet(784)
    model.train()
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for _ in range(3):
            model(torch.rand(16, 784, generator=g))
    path = os.path.join(work, "interop_torch.safetensors")
    st_save(path, model.state_dict())
    model.eval()
    with torch.no_grad():
        ref = model(x)
    check("torch->ours", ref, run_tool("load", path))
    print("PASS")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# craft_regressions.py: the crafted checkpoints of issue 9 item 9 in the current format ("ndl-train
# checkpoint 2": RNG words as U32 entries, every other field named ndl.* metadata), made from the seed
# checkpoints by editing one field (or a consistent set) each. Every one must be refused with one clean
# line or resume and step without a crash or sanitizer report. Deterministic: same seeds, same bytes.
# Usage: craft_regressions.py MID-EPOCH-CKPT EPOCH-END-CKPT OUT-DIR   (make_corpus.sh runs it)
import json
import struct
import sys

mid_path, end_path, out = sys.argv[1:4]
INT64_MAX = 2**63 - 1
MAX_STEP = 9999999999  # NDL_CKPT_MAX_STEP: the largest step a 10-digit checkpoint name holds


def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), bytearray(b[8 + n:])


def save(name, head, body):
    h = json.dumps(head, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    open(f"{out}/{name}.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + bytes(body))


def resize(head, body, name, nbytes, shape):
    """Entry `name` cut (from its end) to nbytes with the given shape; later entries move down."""
    a, b = head[name]["data_offsets"]
    head[name]["shape"], head[name]["data_offsets"] = shape, [a, a + nbytes]
    for k, v in head.items():
        if k != "__metadata__" and k != name and v["data_offsets"][0] >= b:
            v["data_offsets"] = [o - (b - a - nbytes) for o in v["data_offsets"]]
    return body[:a + nbytes] + body[b:]


def meta_variant(name, src, **fields):
    """src with metadata keys (underscores in `fields` stand for dots) set to the given values."""
    head, body = load(src)
    meta = head["__metadata__"]
    for k, v in fields.items():
        key = "ndl." + k.replace("__", ".")
        assert key in meta, key
        meta[key] = str(v)
    save(name, head, body)


mid, end = mid_path, end_path
m = load(mid)[0]["__metadata__"]
assert m.get("ndl.format") == "ndl-train checkpoint 2", "seeds are not format 2: rerun make_corpus.sh"
assert (m["ndl.step"], m["ndl.epoch"], m["ndl.in_epoch"]) == ("2", "0", "1"), m
NB = 4  # batches per epoch of fuzz_resume's run: 16 images, batch 4

# RNG positions outside 0..624 and flags outside {0, 1}, for the shared RNG and the loader's
for pre, tag in [("rng", "rng"), ("cursor__rng", "cursor-rng")]:
    for pos, ptag in [(-1, "minus-1"), (-100000, "minus-100000"), (625, "625"), (100000, "100000")]:
        meta_variant(f"ckpt2-{tag}-pos-{ptag}", mid, **{pre + "__pos": pos})
    meta_variant(f"ckpt2-{tag}-has-gauss-7", mid, **{pre + "__has_gauss": 7})
    meta_variant(f"ckpt2-{tag}-gauss-nan", mid, **{pre + "__gauss": "nan"})
meta_variant("ckpt2-rng-pos-2p31", mid, rng__pos=2**31)
meta_variant("ckpt2-rng-pos-int64-min", mid, rng__pos=-2**63)
for pre, tag in [("rng", "rng"), ("cursor__rng", "cursor-rng")]:
    meta_variant(f"ckpt2-{tag}-pos-624", mid, **{pre + "__pos": 624})  # valid: regenerate on next draw

# the loader cursor contradicting step/epoch (mid: step 2 = batch 2 of epoch 0)
meta_variant("ckpt2-cursor-no-epoch-begun", mid, cursor__epochs_begun=0)
meta_variant("ckpt2-cursor-epochs-begun-2", mid, cursor__epochs_begun=2)
meta_variant("ckpt2-cursor-next-batch-0", mid, cursor__next_batch=0)
meta_variant("ckpt2-cursor-next-batch-5", mid, cursor__next_batch=NB + 1)
meta_variant("ckpt2-cursor-next-batch-int64-max", mid, cursor__next_batch=INT64_MAX)
meta_variant("ckpt2-cursor-not-in-epoch", mid, cursor__in_epoch=0)
meta_variant("ckpt2-cursor-in-epoch-2", mid, cursor__in_epoch=2, in_epoch=2)
meta_variant("ckpt2-cursor-step-3-batch-2", mid, step=3, optim_t=3)
meta_variant("ckpt2-cursor-epoch-1-batch-2", mid, epoch=1)
meta_variant("ckpt2-end-cursor-mid-epoch", end, cursor__next_batch=2)
meta_variant("ckpt2-end-epoch-0", end, epoch=0, cursor__epochs_begun=0)
meta_variant("ckpt2-seen-mismatch", mid, seen=4, errors=1)

# counters at and near INT64_MAX, 2^62 and negative: alone, and as a set consistent with each other
for v, vtag in [(INT64_MAX, "int64-max"), (INT64_MAX - 1, "int64-max-1"), (2**62, "2p62"), (-1, "minus-1")]:
    for key in ["step", "epoch", "errors", "seen", "optim_t"]:
        meta_variant(f"ckpt2-{key.replace('_', '-')}-{vtag}", mid, **{key: v})
    e = v // NB
    meta_variant(f"ckpt2-counters-{vtag}", mid, step=v, optim_t=v, epoch=e, cursor__epochs_begun=e + 1)
    meta_variant(f"ckpt2-counters-seen-errors-{vtag}", mid, seen=v, errors=v)
meta_variant("ckpt2-step-int64-min", mid, step=-INT64_MAX - 1)
meta_variant("ckpt2-step-2p64", mid, step=2**64)
meta_variant("ckpt2-step-max-step-plus-1", mid, step=MAX_STEP + 1)
# huge counters consistent with each other and the cursor (batch 3 of epoch E), refused by the bounds
for v, vtag in [(INT64_MAX, "int64-max"), (2**62 + 3, "2p62")]:
    e, k = divmod(v, NB)
    assert k == 3
    meta_variant(f"ckpt2-counters-consistent-{vtag}", mid, step=v, optim_t=v, epoch=e, cursor__epochs_begun=e + 1,
                 cursor__next_batch=3, seen=12, errors=1)
# the largest consistent state the checkpoint name allows, mid-epoch and at an epoch end: these resume
# and take a step (step, epoch, optimizer t grow by one; no overflow)
e = (MAX_STEP - 2) // NB
meta_variant("ckpt2-counters-max-step-mid-epoch", mid, step=e * NB + 2, optim_t=e * NB + 2, epoch=e,
             cursor__epochs_begun=e + 1)
e = MAX_STEP // NB
meta_variant("ckpt2-counters-max-step-epoch-end", end, step=e * NB, optim_t=e * NB, epoch=e,
             cursor__epochs_begun=e)
meta_variant("ckpt2-loss-sum-1e308", mid, loss_sum="1e308", seconds="1e308")
meta_variant("ckpt2-loss-sum-inf", mid, loss_sum="inf")
meta_variant("ckpt2-seconds-negative", mid, seconds=-1)

# the optimizer state truncated: one value short, empty, the file cut inside it, or NaN inside;
# the RNG words with the wrong count, dtype or missing
head, body = load(mid)
a, b = head["_ndl.optim.state"]["data_offsets"]
n = head["_ndl.optim.state"]["shape"][0]
save("ckpt2-optim-state-one-short", head, resize(head, body, "_ndl.optim.state", b - a - 4, [n - 1]))
head, body = load(mid)
save("ckpt2-optim-state-empty", head, resize(head, body, "_ndl.optim.state", 0, [0]))
head, body = load(mid)  # header intact, the file ends inside the state
save("ckpt2-optim-state-file-truncated", head, body[:a + (b - a) // 2])
head, body = load(mid)
struct.pack_into("<f", body, a + 8, float("nan"))
save("ckpt2-optim-state-nan", head, body)
head, body = load(mid)
save("ckpt2-rng-mt-623-words", head, resize(head, body, "_ndl.rng.mt", 623 * 4, [623]))
head, body = load(mid)
head["_ndl.cursor.rng.mt"]["dtype"], head["_ndl.cursor.rng.mt"]["shape"] = "I64", [312]
save("ckpt2-cursor-rng-mt-i64", head, body)
head, body = load(mid)
body = resize(head, body, "_ndl.rng.mt", 0, [0])
del head["_ndl.rng.mt"]
save("ckpt2-rng-mt-missing", head, body)

# newlines: in a metadata value, a metadata key, a field's value, and a tensor name
meta_variant("ckpt2-meta-newline-setup", mid, setup__model="0\nndl-train: forged line")
meta_variant("ckpt2-meta-newline-step", mid, step="2\nndl-train: forged line")
meta_variant("ckpt2-meta-newline-format", mid, format="ndl-train checkpoint 2\nndl-train: forged line")
head, body = load(mid)
head["__metadata__"]["ndl.x\nndl-train: forged line"] = "1"
save("ckpt2-meta-key-newline", head, body)
head, body = load(mid)
end_off = max(v["data_offsets"][1] for k, v in head.items() if k != "__metadata__")
head["x\nndl-train: forged line"] = {"dtype": "F32", "shape": [1], "data_offsets": [end_off, end_off + 4]}
save("ckpt2-tensor-name-newline", head, body + b"\0\0\0\0")
head, body = load(mid)  # a weight renamed: missing weight, unexpected tensor with a newline
w = next(k for k in head if not k.startswith("_") and k != "__metadata__")
head["x\nndl-train: forged line"] = head.pop(w)
save("ckpt2-weight-renamed-newline", head, body)

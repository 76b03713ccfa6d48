#!/usr/bin/python3
"""plot.py: training curves from ndl-train --log files (JSON Lines) as one PNG.

Usage: scripts/plot.py LOG.jsonl [LOG2.jsonl ...] [-o curves.png] [--size WxH] [--title TEXT]

Panels: loss and error per epoch (train solid, test dashed), loss per step when a log has
--log-steps lines, samples/s per epoch, and the --profile breakdown (mean seconds per epoch
over ranks) when a log has it. One colour per log, labelled by its file name, so runs compare
(1 rank vs 2, SGD vs Adam). A resumed run's log holds repeated epochs or steps: the last wins.
Needs matplotlib (Debian: python3-matplotlib; scripts/install_deps.sh installs it). Draws
headless (Agg). Exit 0 ok, 2 usage or a missing, empty or malformed log (one line on stderr),
1 matplotlib missing.
"""
import argparse
import json
import math
import os
import sys

PROG = "plot.py"
# --profile items in the order of ndl-train's table (dist/step_profile.c), "wall" left out
PROFILE_ITEMS = ["data_wait", "forward", "backward", "allreduce_wait", "allreduce_transfer", "syncbn",
                 "optimizer", "eval", "checkpoint", "rest"]
EPOCH_KEYS = ["epoch", "train_err", "train_loss", "test_err", "test_loss", "samples_per_s"]


class LogError(Exception):
    pass


def die(msg, code=2):
    print(f"{PROG}: {msg}", file=sys.stderr)
    sys.exit(code)


def number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_log(path):
    """The log's epoch records and step records, each a dict keyed by epoch / step (last wins)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise LogError(f"{path}: no such file")
    except IsADirectoryError:
        raise LogError(f"{path}: a directory, expected an ndl-train --log file")
    except OSError as e:
        raise LogError(f"{path}: cannot read: {e.strerror}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LogError(f"{path}: not UTF-8 text (byte {e.start}): not an ndl-train --log file")
    epochs, steps = {}, {}
    lines = text.split("\n")
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise LogError(f"{path}:{no}: not JSON ({e.msg} at column {e.colno})")
        if not isinstance(rec, dict):
            raise LogError(f"{path}:{no}: expected a JSON object, got {type(rec).__name__}")
        if "train_loss" in rec:  # an epoch line
            bad = [k for k in EPOCH_KEYS if not number(rec.get(k))]
            if bad:
                raise LogError(f"{path}:{no}: epoch line without a finite number for {bad[0]!r}")
            epochs[int(rec["epoch"])] = rec
        elif "loss" in rec and "step" in rec:  # a --log-steps line
            if not number(rec["step"]) or not number(rec["loss"]):
                raise LogError(f"{path}:{no}: step line without finite numbers for 'step' and 'loss'")
            steps[int(rec["step"])] = rec
        else:
            raise LogError(f"{path}:{no}: not an ndl-train log line (expected an epoch line with "
                           f"\"train_loss\" or a step line with \"step\" and \"loss\")")
    if not epochs and not steps:
        raise LogError(f"{path}: empty log (no epoch or step lines)")
    return [epochs[k] for k in sorted(epochs)], [steps[k] for k in sorted(steps)]


def labels_for(paths):
    """File names without .jsonl; the whole path where two names collide."""
    names = [os.path.basename(p) for p in paths]
    names = [n[:-6] if n.endswith(".jsonl") else n for n in names]
    return [p if names.count(n) > 1 else n for p, n in zip(paths, names)]


def profile_means(epochs):
    """Mean seconds per epoch of each --profile item (mean over ranks), or None without profile."""
    rows = [e["profile"] for e in epochs if isinstance(e.get("profile"), dict)]
    if not rows:
        return None
    out = {}
    for item in PROFILE_ITEMS:
        vals = [r[item + "_s"]["mean"] for r in rows
                if isinstance(r.get(item + "_s"), dict) and number(r[item + "_s"].get("mean"))]
        out[item] = sum(vals) / len(vals) if vals else 0.0
    return out


def running_mean(y, win):
    """Means of every win consecutive values (len(y) - win + 1 of them)."""
    out, acc = [], 0.0
    for i, v in enumerate(y):
        acc += v
        if i >= win:
            acc -= y[i - win]
        if i >= win - 1:
            out.append(acc / win)
    return out


def parse_size(s):
    try:
        w, h = (int(x) for x in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels like 1200x800, got '{s}'")
    if not (200 <= w <= 10000 and 200 <= h <= 10000):
        raise argparse.ArgumentTypeError(f"width and height must be in [200, 10000] pixels, got '{s}'")
    return w, h


def plot(runs, out, size, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        die("needs matplotlib: apt-get install python3-matplotlib (scripts/install_deps.sh does)", 1)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    has_steps = any(r["steps"] for r in runs)
    has_profile = any(r["profile"] for r in runs)
    has_epochs = any(r["epochs"] for r in runs)
    panels = []
    if has_epochs:
        panels += ["loss", "error"]
    if has_steps:
        panels.append("steps")
    if has_epochs:
        panels.append("speed")
    if has_profile:
        panels.append("profile")
    ncols = 1 if len(panels) == 1 else 2
    nrows = (len(panels) + ncols - 1) // ncols
    dpi = 100
    fig = plt.figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    grid = fig.add_gridspec(nrows, ncols)
    axes = {}
    for i, name in enumerate(panels):  # an odd last panel takes the whole row
        whole = ncols == 2 and i == len(panels) - 1 and len(panels) % 2 == 1
        axes[name] = fig.add_subplot(grid[i // ncols, :] if whole else grid[i // ncols, i % ncols])
    for k, r in enumerate(runs):
        c = colors[k % len(colors)]
        ep = [e["epoch"] for e in r["epochs"]]
        if r["epochs"]:
            for key, style in (("train", "-"), ("test", "--")):  # the legend names the run once
                label = r["label"] if key == "train" else None
                axes["loss"].plot(ep, [e[key + "_loss"] for e in r["epochs"]], style, color=c, marker="o",
                                  markersize=3, label=label)
                axes["error"].plot(ep, [e[key + "_err"] for e in r["epochs"]], style, color=c, marker="o",
                                   markersize=3, label=label)
            axes["speed"].plot(ep, [e["samples_per_s"] for e in r["epochs"]], "-", color=c, marker="o",
                               markersize=3, label=r["label"])
        if r["steps"]:
            x, y = [s["step"] for s in r["steps"]], [s["loss"] for s in r["steps"]]
            win = max(1, len(y) // 60)
            if win > 1:  # the raw losses faint, their running mean over win steps drawn over them
                axes["steps"].plot(x, y, "-", color=c, linewidth=0.5, alpha=0.25)
            axes["steps"].plot(x[win - 1:], running_mean(y, win), "-", color=c, linewidth=1.2,
                               label=r["label"] + (f" (mean of {win})" if win > 1 else ""))
    if has_epochs:
        axes["loss"].set(title="loss per sample (train solid, test dashed)", xlabel="epoch", ylabel="loss")
        axes["error"].set(title="error rate (train solid, test dashed)", xlabel="epoch", ylabel="error")
        axes["speed"].set(title="training throughput", xlabel="epoch", ylabel="samples/s")
        axes["speed"].set_ylim(bottom=0)
    if has_steps:
        axes["steps"].set(title="loss per step (--log-steps)", xlabel="optimizer step", ylabel="loss (log scale)")
        axes["steps"].set_yscale("log")
    if has_profile:
        ax = axes["profile"]
        prof = [r for r in runs if r["profile"]]
        left = [0.0] * len(prof)
        cmap = plt.get_cmap("tab10")
        for j, item in enumerate(PROFILE_ITEMS):
            vals = [r["profile"][item] for r in prof]
            if not any(vals):
                continue
            ax.barh(range(len(prof)), vals, left=left, color=cmap(j % 10), label=item)
            left = [a + b for a, b in zip(left, vals)]
        ax.set_yticks(range(len(prof)), [r["label"] for r in prof])
        ax.invert_yaxis()
        ax.set(title="--profile: seconds per epoch (mean over ranks)", xlabel="seconds")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    for name, ax in axes.items():
        ax.grid(True, alpha=0.3)
        if name != "profile":
            ax.legend(fontsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    all_epochs = sorted({e["epoch"] for r in runs for e in r["epochs"]})
    if 0 < len(all_epochs) <= 12:  # few epochs: a tick at each
        for name in ("loss", "error", "speed"):
            axes[name].set_xticks(all_epochs)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=dpi, format="png")
    except OSError as e:
        die(f"{out}: cannot write: {e.strerror}")
    plt.close(fig)


def main(argv):
    ap = argparse.ArgumentParser(prog=PROG, description="Training curves from ndl-train --log files.")
    ap.add_argument("logs", nargs="+", metavar="LOG.jsonl", help="ndl-train --log files, one line per run")
    ap.add_argument("-o", "--output", default="curves.png", help="PNG to write (default curves.png)")
    ap.add_argument("--size", type=parse_size, default=(1200, 800), metavar="WxH",
                    help="image size in pixels (default 1200x800)")
    ap.add_argument("--title", default="", help="a title above the panels")
    args = ap.parse_args(argv)
    runs = []
    for path, label in zip(args.logs, labels_for(args.logs)):
        try:
            epochs, steps = read_log(path)
        except LogError as e:
            die(str(e))
        runs.append({"label": label, "epochs": epochs, "steps": steps, "profile": profile_means(epochs)})
    plot(runs, args.output, args.size, args.title)
    print(f"{PROG}: wrote {args.output} ({args.size[0]}x{args.size[1]}, {len(runs)} run"
          f"{'' if len(runs) == 1 else 's'})")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Memory and speed of training from a prepared (memory-mapped) set as the set grows: 10,000 against 1,000,000
images, beside the in-memory path.

    python benchmarks/prepared_memory.py --out runs/prepared_bench --steps 1000

The sets are MNIST training digits shifted by up to 2 px in each direction (a fresh random shift per copy),
written in the format of `genlab prepare` a chunk at a time (the million never sits in memory). Each case trains
genlab's default `vae` (MLP) for --steps steps at batch 64 in its own process (1 thread), and reports that
process's peak resident memory (wait4's ru_maxrss) and the training seconds the trainer prints. "mapped reads" is
the 1M case reading its batches by indexing the memory mapping instead of with positional reads: the pages
(large folios) the batches touch then stay in the process.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

from genlab.data import load
from genlab.data.decode import _write_split
from genlab.data.prepared import INDEX_VERSION


def shifted(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image rolled by its own (dy, dx) in -2..2 (what wraps round is MNIST's empty 4 px border)."""
    out = np.empty_like(x)
    for i, img in enumerate(x):
        dy, dx = rng.integers(-2, 3, 2)
        out[i] = np.roll(img, (dy, dx), axis=(1, 2))
    return out


def build(out: Path, n: int, seed: int = 0) -> Path:
    if (out / "index.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    mnist = load("mnist").train
    x, y = mnist.images.numpy(), mnist.labels.numpy()
    rng = np.random.default_rng(seed)
    labels = []

    def chunks():
        for start in range(0, n, 10_000):
            idx = rng.integers(0, len(x), min(10_000, n - start))
            labels.append(y[idx])
            yield shifted(x[idx], rng)

    entry = _write_split(out, "train", chunks(), None, (1, 28, 28), lambda k: None)
    np.save(out / "train_labels.npy", np.concatenate(labels).astype(np.int64))
    entry["labels"] = True
    (out / "index.json").write_text(json.dumps({"version": INDEX_VERSION, "source": f"mnist shifted x{n}",
                                                "shape": [1, 28, 28], "classes": [str(i) for i in range(10)],
                                                "splits": {"train": entry}}))
    return out


def train(data: str, steps: int, out: Path, mapped: bool = False, limit: int = 0) -> tuple[float, float]:
    """(peak RSS in MiB, training seconds) of one `genlab train vae` process."""
    prelude = "import genlab.data.base as B; B.ImageSet.take = lambda self, i: self.images[i]; " if mapped else ""
    code = f"{prelude}import sys; from genlab.cli import main; sys.exit(main(sys.argv[1:]))"
    args = [sys.executable, "-c", code, "train", "vae", "--data", data, "--batch-size", "64", "--epochs", "100",
            "--set", f"train.max_steps={steps}", "--set", "train.samples=0", "--set", "train.eval_test=false",
            "--set", "train.ckpt_every=1000000", "--set", f"data.limit={limit}", "--out", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{data}: {proc.stderr.read()[-2000:]}")
    return usage.ru_maxrss / 1024, float(re.search(r"in ([0-9.]+) s", proc.stdout.read()).group(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/prepared_bench")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=1, help="rounds over the cases, each in a rotated order; medians")
    args = p.parse_args()
    out = Path(args.out)
    small, big = build(out / "set_10k", 10_000), build(out / "set_1m", 1_000_000)
    cases = [("in memory, MNIST 10k", "mnist", {"limit": 10_000}), ("prepared 10k", f"prepared:{small}", {}),
             ("prepared 1M", f"prepared:{big}", {}), ("prepared 1M, mapped reads", f"prepared:{big}", {"mapped": True})]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in cases}
    for r in range(args.repeats):
        for i in [(j + r) % len(cases) for j in range(len(cases))]:  # each round starts one case later
            name, data, opt = cases[i]
            run = out / f"run{i}"
            subprocess.run(["rm", "-rf", str(run)], check=True)
            results[name].append(train(data, args.steps, run, opt.get("mapped", False), opt.get("limit", 0)))
    rows = [(name, max(r for r, _ in v), statistics.median(s for _, s in v)) for name, v in results.items()]
    base = rows[0][2]
    print(f"vae (MLP) on MNIST-shaped data, batch 64, {args.steps} steps, 1 thread, one process per case, "
          f"{args.repeats} rounds (largest peak RSS, median time)")
    print("| data | peak RSS (MiB) | training s | time / in-memory |")
    print("|---|---|---|---|")
    for name, rss, secs in rows:
        print(f"| {name} | {rss:.0f} | {secs:.1f} | {secs / base:.3f} |")
    # step time in one process, the two paths taking turns (a shared machine's load falls on both alike)
    from timing import alternate, report, time_fit  # benchmarks/ is the script's folder

    from genlab.run import compose

    def run_for(data: str, limit: int):
        return compose("vae", flags={"data": {"source": data, "limit": limit},
                                     "train": {"batch_size": 64, "max_steps": args.steps, "samples": 0,
                                               "eval_test": False, "ckpt_every": 10**9}})

    in_memory, prepared = run_for("mnist", 10_000), run_for(f"prepared:{big}", 0)
    times = alternate(lambda r: time_fit(in_memory), lambda r: time_fit(prepared), max(3, args.repeats),
                      ("memory", "prepared"))
    report(f"training time in one process: in-memory MNIST 10k against prepared 1M, batch 64, {args.steps} steps",
           times, args.steps * 64)


if __name__ == "__main__":
    main()

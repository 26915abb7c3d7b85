"""Do the defaults work? Every generator trains 3 epochs on MNIST with its registered defaults, and the
trainer's mode monitor (1000 samples per epoch under the shipped MNIST classifier) says how many of the ten
digits its samples cover after each epoch, and whether it warned of mode collapse.

    python benchmarks/coverage.py --out /tmp/coverage                 # every generator, one after another
    python benchmarks/coverage.py --out /tmp/coverage --only gan,dcgan-wgan --threads 1

A class counts as covered when it receives at least 10% of its share of the data (trainer's monitor).
Nothing but the mode monitor is switched on (`train.monitor_modes=true`, already the GANs' default);
the seed is 0. Models whose samplers are slow on a CPU (the pixel-by-pixel autoregressive models, DDPM's 50
network passes, FFJORD's ODE) are checked once, after the last epoch, by `genlab eval --metrics modes --n 1000`
on the training split (the same classifier, rule and sample count as the monitor) instead of after every epoch.
Prints a Markdown table; each run folder keeps its metrics.jsonl and sample grids. A case whose
folder holds a finished run is read, not trained again (an interrupted case resumes from its checkpoint).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from genlab.metrics.modes import collapse_warning

# name: (registered model, --set overrides beyond the defaults: only the variant being tested)
CASES = {
    "gan": ("gan", []),
    "gan-minimax": ("gan", ["model.loss=minimax"]),
    "vae": ("vae", []),
    "cvae": ("cvae", []),
    "dcgan": ("dcgan", []),
    "dcgan-wgan": ("dcgan", ["model.loss=wgan"]),
    "dcgan-wgan-gp": ("dcgan", ["model.loss=wgan-gp"]),
    "dcgan-lsgan": ("dcgan", ["model.loss=lsgan"]),
    "dcgan-hinge-sn": ("dcgan", ["model.loss=hinge", "model.spectral_norm=true"]),
    "glo": ("glo", []),
    "cgan": ("cgan", []),
    "acgan": ("acgan", []),
    "infogan": ("infogan", []),
    "bigan": ("bigan", []),
    "vaegan": ("vaegan", []),
    "nice": ("nice", []),
    "realnvp": ("realnvp", []),
    "glow": ("glow", []),
    "made": ("made", []),
    "nade": ("nade", []),
    "rbm": ("rbm", []),
    "progan": ("progan", []),
    "stylegan": ("stylegan", []),
    "ddpm": ("ddpm", []),
    "pixelcnn": ("pixelcnn", []),
    "gated_pixelcnn": ("gated_pixelcnn", []),
    "pixelrnn": ("pixelrnn", []),
    "ffjord": ("ffjord", []),
}
FINAL_ONLY = {"ddpm", "pixelcnn", "gated_pixelcnn", "ffjord"}  # slow samplers: one check at the end


def read_events(folder: Path) -> list[dict]:
    path = folder / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_case(name: str, out: Path, epochs: int, threads: int) -> dict:
    """Train the case in out/NAME (resuming what is there: a finished run is only read) and read its monitor."""
    model, sets = CASES[name]
    folder = out / name
    final_only = name in FINAL_ONLY
    cmd = [sys.executable, "-m", "genlab.cli", "train", model, "--data", "mnist", "--epochs", str(epochs),
           "--seed", "0", "--set", f"train.monitor_modes={str(not final_only).lower()}",
           *[a for s in sets for a in ("--set", s)], "--out", str(folder), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    events = read_events(folder)
    modes = [e for e in events if e["event"] == "modes"]
    if final_only and proc.returncode == 0:
        proc = subprocess.run([sys.executable, "-m", "genlab.cli", "eval", str(folder), "--metrics", "modes",
                               "--n", "1000", "--ref", "train", "--seed", "1", "--quiet"],
                              env=env, capture_output=True, text=True)
        if proc.returncode == 0:
            modes = [json.loads((folder / "eval.json").read_text())["modes"]]
    return {"name": name, "model": model, "settings": " ".join(sets) or "defaults", "rc": proc.returncode,
            "covered": [int(e["classes_covered"]) for e in modes],
            "largest": modes[-1]["max_class_share"] if modes else None,
            "kl": modes[-1]["kl_data_to_samples"] if modes else None,
            # the monitor's own rule on its logged coverage, so runs logged under earlier rules count alike
            "warnings": sum(collapse_warning(e) is not None for e in modes),
            "recognised": [round(e["recognised_share"], 2) for e in modes if "recognised_share" in e],
            "final_only": final_only,
            "seconds": max((e["time_s"] for e in events if e["event"] == "train"), default=0.0),
            "error": proc.stderr.strip().splitlines()[-1] if proc.returncode else ""}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for the run folders and results.json")
    p.add_argument("--only", help="comma-separated case names (default: all): " + ", ".join(CASES))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    names = args.only.split(",") if args.only else list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        p.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name in names:
        print(f"{name} ...", flush=True)
        results[name] = run_case(name, out, args.epochs, args.threads)
        results_path.write_text(json.dumps(results, indent=1))
    print(f"\n{args.epochs} epochs on MNIST, seed 0, {args.threads} thread(s); classes covered of 10 after each epoch\n")
    print("| generator | settings | covered per epoch | largest class | KL(data‖samples) | collapse warnings | train s |")
    print("|---|---|---|---|---|---|---|")
    for r in (results[n] for n in CASES if n in results):
        if r["rc"]:
            print(f"| {r['name']} | {r['settings']} | failed: {r['error']} | | | | {r['seconds']:.0f} |")
            continue
        covered = ("- / " * (args.epochs - 1) if r.get("final_only") else "") + " / ".join(map(str, r["covered"]))
        print(f"| {r['name']} | {r['settings']} | {covered} | {r['largest']:.0%} | "
              f"{r['kl']:.3f} | {r['warnings']} | {r['seconds']:.0f} |")
    print(f"\nchecked after the last epoch only (slow samplers): {', '.join(sorted(FINAL_ONLY))}")


if __name__ == "__main__":
    main()

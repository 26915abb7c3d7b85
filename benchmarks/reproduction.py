"""The reproduction table: genlab's converged runs beside the papers' numbers (issue 10).

    python benchmarks/reproduction.py collect RUN_DIR NAME [--machine TEXT]  # copy a run's small artefacts
    python benchmarks/reproduction.py table                  # write REPRODUCTION.md from docs/reproduction/*/

`collect` keeps config.json, eval.json and metrics.jsonl (never the weights), the run's last sample grid and
a learning curve (curve.png: the model's metric against training time), and with --machine the machine it
trained on (machine.txt; without it, this project's shared CPU). `table` reads every target below,
takes the measured number from the collected eval.json, the budget from metrics.jsonl and config.json, and
writes REPRODUCTION.md, with docs/reproduction/notes.md (the runs' circumstances, the gap analysis) after the
table; a target without a collected run is listed as not yet run.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ART = ROOT / "docs" / "reproduction"


@dataclass(frozen=True)
class Target:
    name: str  # artefact folder under docs/reproduction/
    model: str
    result: tuple[str, str]  # (eval.json key, field)
    target: float  # issue 10's bar; lower is better for every row
    paper: str  # the published figure and its source
    protocol: str
    recipe: str  # configs/*.toml
    evaluate: str  # the eval command's options
    curve: tuple[tuple[str, str], ...]  # (metrics.jsonl event, field) drawn against training time: the first logged
    unit: str = ""
    train_opts: str = ""  # options the run added to its recipe


# the monitor's domain FID of 1000 samples per epoch; runs from before it was logged show the class KL
GAN_CURVE = (("modes", "fid_1k"), ("modes", "kl_data_to_samples"))
BINARY_EXACT = "dynamically binarised MNIST, all 10,000 test images binarised once (seed 0), exact NLL"
RBM_AIS = ("dynamically binarised MNIST, all 10,000 test images binarised once (seed 0); log Z estimated by AIS "
           "(100 runs, 14,500 temperatures, from the base-rate machine)")
FID = "Inception FID (2015-12-05 weights, (p-128)/128), 10,000 samples vs the 10,000 MNIST test images"
FID_EVAL = "--metrics fid,kid,pr --features inception --n 10000"  # the eval options of every FID row
NLL_EVAL = "--metrics nll --n 10000"  # of every exact or AIS likelihood row
MONITOR = "--set train.monitor_modes=true"  # runs that logged the mode monitor (their FID-1k curves)
DEQUANT_BPD = "8-bit MNIST, all 10,000 test images dequantised once (seed 0): density NLL + D log 256, in bits/dim"
NLL_CURVE = (("test", "loss"),)


def fid_row(name, model, target, paper, recipe, curve=GAN_CURVE, train_opts=MONITOR) -> Target:
    """A row measured by Inception FID of 10,000 samples (FID_EVAL)."""
    return Target(name, model, ("fid@inception", "fid"), target, paper, FID, recipe, FID_EVAL, curve,
                  train_opts=train_opts)


def nll_row(name, model, target, paper, protocol, recipe, train_opts="", curve=NLL_CURVE, unit=" nats",
            field="nll_nats") -> Target:
    """A row measured by the test likelihood of all 10,000 test images (NLL_EVAL)."""
    return Target(name, model, ("nll", field), target, paper, protocol, recipe, NLL_EVAL, curve, unit, train_opts)


LUCIC_MM = "9.8 (MM GAN, Lucic et al. 2018) [S]"
GATED = "81.50 (pytorch-generative); 81.30 PixelCNN [S]"
NADE_PAPER = "88.86 (Larochelle & Murray 2011, static binarisation)"
MADE_PAPER = "88.04 (Germain et al. 2015) [U]"
RBM_PAPER = "86.34 (Salakhutdinov & Murray 2008)"
TARGETS = [
    fid_row("dcgan_ns", "DCGAN, non-saturating", 10, "6.8 (NS GAN, Lucic et al. 2018) [S]", "dcgan_mnist.toml",
            train_opts=""),
    fid_row("wgan_gp", "DCGAN, WGAN-GP", 20, "20.3 (Lucic et al. 2018) [S]", "wgan_gp_mnist.toml"),
    fid_row("dcgan_minimax", "DCGAN, minimax", 15, LUCIC_MM, "dcgan_minimax_mnist.toml"),
    fid_row("gan_minimax", "GAN (MLPs), minimax", 15, LUCIC_MM, "gan_minimax_mnist.toml"),
    # recipes without a bar of their own: the MLP GAN takes its loss's bar (as the minimax MLP above), LSGAN the
    # paper's number (as WGAN here and NADE, MADE and the RBM below)
    fid_row("gan_ns", "GAN (MLPs), non-saturating", 10,
            "6.8 (NS GAN, Lucic et al. 2018, on their convolutional networks) [S]", "gan_mnist.toml"),
    fid_row("lsgan", "DCGAN, least squares", 7.8, "7.8 (LSGAN, Lucic et al. 2018) [S]", "lsgan_mnist.toml"),
    fid_row("wgan", "DCGAN, WGAN (weight clipping)", 6.7, "6.7 (WGAN, Lucic et al. 2018) [S]", "wgan_mnist.toml"),
    fid_row("vae_conv_grey", "VAE (conv), grey levels, learned sigma, mixture prior", 25,
            "16.6 (VAE, Dai & Wipf 2019, Table 1) [S]", "vae_conv_grey_mnist.toml",
            curve=(("modes", "fid_1k"), ("test", "neg_elbo"))),
    Target("vae_conv", "VAE (conv)", ("nll", "nll_nats"), 88,
           "89.78 (pythae, static binarisation); 86.76 (Burda et al. 2016, one layer) [S]",
           "dynamically binarised MNIST, the first 1,000 test images binarised once (seed 0), IWAE bound k = 5000 "
           "(the papers average all 10,000: ~3 h more on this CPU)",
           "vae_conv_mnist.toml", "--metrics nll --iwae-k 5000 --n 1000", (("test", "neg_elbo"),), " nats"),
    nll_row("gated_pixelcnn", "Gated PixelCNN", 85, GATED, BINARY_EXACT, "gated_pixelcnn_mnist.toml"),
    nll_row("glow", "Glow", 1.3, "1.05 [U]", DEQUANT_BPD, "glow_mnist.toml", curve=(("test", "bits_per_dim"),),
            unit=" bits/dim", field="bits_per_dim"),
    nll_row("realnvp", "RealNVP", 1.4, "1.06 [U]", DEQUANT_BPD, "realnvp_mnist.toml",
            curve=(("test", "bits_per_dim"),), unit=" bits/dim", field="bits_per_dim"),
    # issue 14's rows: no bar of their own, so the published number is the target
    nll_row("nade", "NADE, 500 units", 88.86, NADE_PAPER, BINARY_EXACT, "nade_mnist.toml"),
    nll_row("made", "MADE, 8,000 units, one mask", 88.04, MADE_PAPER, BINARY_EXACT, "made_mnist.toml"),
    nll_row("rbm", "RBM, 500 units, CD-25", 86.34, RBM_PAPER, RBM_AIS, "rbm_mnist.toml",
            curve=(("test", "recon_error"),)),
    # the same recipes trained longer on a lent GPU (benchmarks/gpu_session.sh; the budget names the machine)
    nll_row("gated_pixelcnn_h200", "Gated PixelCNN (GPU)", 85, GATED, BINARY_EXACT, "gated_pixelcnn_mnist.toml",
            "--set train.epochs=6"),
    nll_row("nade_h200", "NADE, 500 units (GPU)", 88.86, NADE_PAPER, BINARY_EXACT, "nade_mnist.toml",
            "--set train.epochs=18"),
    nll_row("made_h200", "MADE, 8,000 units, one mask (GPU)", 88.04, MADE_PAPER, BINARY_EXACT, "made_mnist.toml",
            "--set train.epochs=18"),
    nll_row("made32_h200", "MADE, 8,000 units, 32 masks (GPU)", 86.64, "86.64 (Germain et al. 2015, mask ensemble) [U]",
            BINARY_EXACT + " of the 32 masks' average", "made_mnist.toml",
            "--set model.masks=32 --set train.epochs=16"),
    nll_row("rbm_h200", "RBM, 500 units, CD-25 (GPU)", 86.34, RBM_PAPER, RBM_AIS, "rbm_mnist.toml",
            "--set train.epochs=28", curve=(("test", "recon_error"),)),
    # the ninth session's lent GPU (benchmarks/gpu_coverage.sh): past the CPU recipes' budgets
    fid_row("wgan_gp_h200", "DCGAN, WGAN-GP (GPU)", 20, "20.3 (Lucic et al. 2018) [S]", "wgan_gp_mnist.toml",
            train_opts="--set train.lr=1e-4 --set train.beta1=0.0 --set train.epochs=26 --set train.max_steps=23804"),
    nll_row("gated_pixelcnn_large_h200", "Gated PixelCNN, width 128, 12 layers (GPU)", 85, GATED, BINARY_EXACT,
            "gated_pixelcnn_mnist.toml",
            "--set model.width=128 --set model.layers=12 --set train.batch_size=128 --set train.epochs=6"),
]


def events(folder: Path) -> list[dict]:
    path = folder / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def machine(folder: Path, default: str) -> str:
    """Where the collected run trained (collect --machine), or the default for this project's CPU."""
    where = folder / "machine.txt"
    return where.read_text().strip() if where.exists() else default


def draw_curve(folder: Path, target: Target) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = events(folder)
    for event, field in target.curve:
        pts = [(e["time_s"] / 60, e[field]) for e in log if e["event"] == event and field in e]
        if pts:
            break
    else:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(*zip(*pts), marker="o", ms=3)
    ax.set_xlabel(f"training time (min, {machine(folder, 'this CPU')})", fontsize=8)
    ax.set_ylabel(f"{event} {field}")
    ax.set_title(target.model, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / "curve.png", dpi=110)
    plt.close(fig)
    return folder / "curve.png"


def collect(run_dir: Path, name: str, machine: str | None = None) -> None:
    target = next((t for t in TARGETS if t.name == name), None)
    if target is None:
        sys.exit(f"unknown target '{name}'; one of {[t.name for t in TARGETS]}")
    dest = ART / name
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("config.json", "eval.json", "metrics.jsonl"):
        if (run_dir / f).exists():
            shutil.copy2(run_dir / f, dest / f)
    grids = sorted((run_dir / "samples").glob("epoch_*.png"))
    if (run_dir / "sample.png").exists():
        shutil.copy2(run_dir / "sample.png", dest / "samples.png")
    elif grids:
        shutil.copy2(grids[-1], dest / "samples.png")
    if machine:
        (dest / "machine.txt").write_text(machine + "\n")
    draw_curve(dest, target)
    print(f"collected {run_dir} -> {dest}")


def budget(folder: Path) -> str:
    ev = [e for e in events(folder) if e["event"] == "train"]
    cfg = json.loads((folder / "config.json").read_text())
    if not ev:
        return ""
    last = ev[-1]
    hours = last["time_s"] / 3600
    images = last["step"] * cfg["train"]["batch_size"]
    return f"{hours:.2f} h wall ({machine(folder, '1 thread, 2 shared cores')}); {last['epoch']:.0f} epochs, " \
           f"{images / 1e6:.2f} M images"


BESIDE = [  # (eval.json key, field, label): the figures printed beside the headline when measured
    ("fid", "fid", "domain FID"), ("kid@inception", "kid", "KID"), ("kid@inception-bf16", "kid", "KID"),
    ("pr@inception", "precision", "precision"), ("pr@inception", "recall", "recall"),
    ("pr@inception-bf16", "precision", "precision"), ("pr@inception-bf16", "recall", "recall"),
    ("pr", "precision", "domain precision"), ("pr", "recall", "domain recall"),
    ("modes", "classes_covered", "classes covered"), ("nll", "neg_elbo_nats", "-ELBO"),
]


def beside(ev: dict, headline: tuple[str, str]) -> str:
    out = []
    for key, field, label in BESIDE:
        value = ev.get(key, {}).get(field)
        if value is not None and (key, field) != headline:
            out.append(f"{label} {value:.3g}" if isinstance(value, float) else f"{label} {value}")
    return "; ".join(out)


def table() -> str:
    lines = ["# Reproduction table", "",
             "genlab's runs on this project's CPU (rows marked GPU: on a lent H200, the budget says how shared)",
             "beside the published numbers (issues 10 and 14). Written by",
             "`python benchmarks/reproduction.py table` from the artefacts in docs/reproduction/ (config.json,",
             "eval.json, metrics.jsonl, a learning curve and a sample grid per run; the weights are not kept).",
             "Lower is better in every row. [S] = quoted by another source; [U] = not verified (shared/REFERENCES.md).", "",
             "| model | genlab | target | published | beside it | protocol | budget | reproduce |",
             "|---|---|---|---|---|---|---|---|"]
    figures = []
    for t in TARGETS:
        folder = ART / t.name
        ev_path = folder / "eval.json"
        key, field = t.result
        ev = json.loads(ev_path.read_text()) if ev_path.exists() else {}
        protocol = t.protocol
        if key not in ev and f"{key}-bf16" in ev:  # measured with `genlab eval --precision bf16`
            key, protocol = f"{key}-bf16", t.protocol + "; extractor run in bf16 autocast (BENCHMARKS.md: ~0.2% on FID)"
        value = ev.get(key, {}).get(field)
        run = f"runs/{t.name}"
        opts = t.evaluate + (" --precision bf16" if key.endswith("-bf16") else "")
        train = f"genlab train --config configs/{t.recipe}" + (f" {t.train_opts}" if t.train_opts else "")
        cmd = f"`{train} --out {run}`; `genlab eval {run} {opts}`"
        if value is None:
            lines.append(f"| {t.model} | not yet run | {t.target}{t.unit} | {t.paper} | | {t.protocol} | | {cmd} |")
            continue
        met = "meets" if value <= t.target else "misses"
        lines.append(f"| {t.model} | **{value:.2f}**{t.unit} ({met}) | {t.target}{t.unit} | {t.paper} | "
                     f"{beside(ev, (key, field))} | {protocol} | "
                     f"{budget(folder)} | {cmd} |")
        pics = [f"![{t.model} {p}]({folder.relative_to(ROOT) / p})" for p in ("curve.png", "samples.png")
                if (folder / p).exists()]
        if pics and not any(str(folder.relative_to(ROOT)) in f for f in figures):  # one figure pair per run
            figures.append(f"### {t.model} ({t.name})\n\n" + " ".join(pics) + "\n")
    notes = ART / "notes.md"  # the runs' circumstances and the gap analysis, written by hand beside the artefacts
    tail = "\n" + notes.read_text() if notes.exists() else ""
    return "\n".join(lines) + "\n" + tail + "\n## Learning curves and samples\n\n" + "\n".join(figures)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("run_dir", type=Path)
    c.add_argument("name")
    c.add_argument("--machine", help="where the run trained, printed in its budget (default: this project's CPU)")
    sub.add_parser("table")
    args = p.parse_args()
    if args.cmd == "collect":
        collect(args.run_dir, args.name, args.machine)
    else:
        (ROOT / "REPRODUCTION.md").write_text(table())
        print(f"wrote {ROOT / 'REPRODUCTION.md'}")


if __name__ == "__main__":
    main()

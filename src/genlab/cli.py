"""The `genlab` command: train, sample, reconstruct, translate, interpolate, eval, apply, report, serve, list, info.

User mistakes end with one sentence on stderr and exit status 2; a diverged run with status 1.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

from .config import positive_int, seed_int
from .errors import UserError, check_memory, closest

# the VAEs' sampling priors (models/vae.py's PRIORS, named here so that parsing imports no model code)
SAMPLING_PRIORS = ("normal", "mixture", "two-stage")

EXIT_USER, EXIT_DIVERGED = 2, 1


class Parser(argparse.ArgumentParser):
    """argparse that raises UserError (one sentence, closest valid names) instead of printing usage."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        if "invalid choice" in message:
            bad = message.split("invalid choice: ", 1)[1].split(" ", 1)[0].strip("'\"")
            name = message.split(":", 1)[0].removeprefix("argument ")  # "--prior", or the commands' metavar
            option = next((act for act in self._actions if act.choices and name in act.option_strings), None)
            pool = [option] if option else [act for act in self._actions if act.choices]
            choices = [c for act in pool for c in act.choices]
            hint = closest(bad, choices) or f" (valid: {', '.join(sorted(choices))})"
            raise UserError(f"unknown value '{bad}' for {name}{hint}" if option else f"unknown command '{bad}'{hint}")
        raise UserError(f"{self.prog}: {message}")

    def parse_known_into(self, argv):
        args, rest = self.parse_known_args(argv)
        if rest:
            bad = rest[0]
            sub = getattr(args, "_parser", self)
            options = [o for act in sub._actions for o in act.option_strings]
            raise UserError(f"unknown option '{bad}' for genlab {getattr(args, 'command', '')}".rstrip()
                            + (closest(bad, options) or f" (see genlab {getattr(args, 'command', '')} --help)"))
        return args


def _sampling_args(p, note: str = "") -> None:
    """The options of the models' `sample` (SAMPLING_OPTIONS), for genlab sample and genlab eval."""
    p.add_argument("--temperature", type=float,
                   help="flows: scale of the prior's noise (Glow's figures use 0.7)" + note)
    p.add_argument("--truncation", type=float,
                   help="stylegan: psi of the truncation trick, 0 (the mean w) .. 1 (none)" + note)
    p.add_argument("--sampler", choices=("ddim", "ddpm"),
                   help="diffusion: DDIM, or ancestral DDPM over all T steps" + note)
    p.add_argument("--steps", type=positive_int, help="diffusion: DDIM steps (default: the model's, 50)" + note)
    p.add_argument("--eta", type=float, help="diffusion: DDIM noise, 0 deterministic .. 1 DDPM-like" + note)
    p.add_argument("--prior", choices=SAMPLING_PRIORS,
                   help="VAEs: draw z from N(0, I), or from the prior the run fitted (model.prior mixture or "
                        "two-stage)" + note)
    p.add_argument("--guidance", type=float,
                   help="conditional diffusion: classifier-free guidance weight w (1 = plain conditional, 0 = none)"
                        + note)


def _run_dir_arg(p):
    p.add_argument("run", metavar="DIR", help="a run folder written by genlab train")


def build_parser() -> Parser:
    top = Parser(prog="genlab", description="Train, sample and evaluate deep generative models of images.")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    def cmd(name, help_):
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_parser=p)
        return p

    p = cmd("train", "train a model (resumes if --out holds a checkpoint of the same run)")
    p.add_argument("model", nargs="?", help="model name (see genlab list); may come from --config")
    p.add_argument("--data", help="mnist | digits | idx:DIR | cifar:DIR | folder:DIR | npz:FILE")
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=seed_int)
    p.add_argument("--limit", type=positive_int, help="train on the first N images")
    p.add_argument("--config", help="a TOML file with [model], [data], [train] tables")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, e.g. --set model.latent_dim=16 (repeatable)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = cmd("sample", "draw samples from a trained model into a PNG grid")
    _run_dir_arg(p)
    p.add_argument("-n", type=positive_int, default=64)
    p.add_argument("-o", "--output", help="where to write (default DIR/sample.png, DIR/sample_images/ or DIR/samples.npz)")
    p.add_argument("--format", choices=SAMPLE_FORMATS, default="grid",
                   help="grid: one PNG grid; png-dir: a folder of one PNG per image (torch-fidelity, clean-fid); "
                        "npz: uint8 N x H x W x C under key x")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--no-ema", action="store_true", help="use the raw weights even if EMA weights exist")
    _sampling_args(p)
    p.add_argument("--mix", action="store_true",
                   help="stylegan: write the style-mixing grid (with the truncation and noise figures) instead")
    p.add_argument("--complete", type=int, metavar="ROWS",
                   help="autoregressive models: keep the top ROWS rows of n test images and draw the rest")

    p = cmd("reconstruct", "reconstruct test images: originals and reconstructions side by side")
    _run_dir_arg(p)
    p.add_argument("-n", type=positive_int, default=32)
    p.add_argument("-o", "--output", help="PNG path (default DIR/reconstructions.png)")
    p.add_argument("--split", choices=("train", "test"), default="test")

    p = cmd("interpolate", "decode points between pairs of test images' codes, as image strips")
    _run_dir_arg(p)
    p.add_argument("--pairs", type=positive_int, default=6)
    p.add_argument("--steps", type=positive_int, default=10)
    p.add_argument("--mode", choices=("linear", "slerp"), default="linear")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("-o", "--output", help="PNG path (default DIR/interpolation.png)")

    p = cmd("translate", "translate images with an image-to-image model: the outputs as PNGs and a figure; for pix2pix "
                         "the targets beside them and PSNR / SSIM against them, for stargan every target domain")
    _run_dir_arg(p)
    p.add_argument("--input", metavar="SRC_OR_FOLDER",
                   help="a data source or a folder of images (default: the run's own data); its images are the "
                        "targets, whose inputs the run's corruption makes, or the inputs themselves with --as-input")
    p.add_argument("--as-input", action="store_true",
                   help="the images are inputs already (your own edge maps, say): outputs only, no targets")
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("-n", type=positive_int, default=64)
    p.add_argument("--noise", action="store_true", help="keep the generator's dropout on, as pix2pix samples")
    p.add_argument("--to", metavar="LIST", help="multi-domain models (stargan): target domains, e.g. 3 or 0,5 "
                                                 "(default: every domain)")
    p.add_argument("--seed", type=seed_int, default=0, help="the corruption's draws (block positions, noise)")
    p.add_argument("-o", "--output", help="folder (default DIR/translate)")

    p = cmd("fit-prior", "fit a VAE run's sampling prior to the codes of its training images (a Gaussian mixture, "
                         "or Dai & Wipf's second-stage VAE) and write it into the run")
    _run_dir_arg(p)
    p.add_argument("--prior", choices=SAMPLING_PRIORS[1:], required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="the prior's settings, e.g. --set model.prior_epochs=40 (repeatable; see genlab list vae)")

    p = cmd("eval", "evaluate trained models; writes DIR/eval.json and prints a table (or compares runs)")
    p.add_argument("runs", nargs="+", metavar="DIR", help="a run folder (several with --compare)")
    p.add_argument("--metrics", help="comma-separated, see genlab list (default: every one the model supports)")
    p.add_argument("--features", default="domain",
                   help="extractor for fid, kid, pr, memorization: domain | domain:DIR | inception | inception:PATH")
    p.add_argument("--classifier", default="domain", help="classifier for is and modes: domain | domain:DIR")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="extractor arithmetic; bf16 runs Inception 2.5x faster on AMX CPUs and moves FID slightly "
                        "(BENCHMARKS.md); references are cached per precision")
    p.add_argument("--n", type=positive_int, default=10000,
                   help="samples drawn for sample metrics; images of the split for likelihood metrics")
    p.add_argument("--ref", "--split", dest="split", choices=("train", "test"), default="test",
                   help="the reference split")
    p.add_argument("--iwae-k", type=positive_int, default=100, help="importance samples per image for nll (VAEs)")
    p.add_argument("--seed", type=seed_int, default=0)
    _sampling_args(p, " (sample metrics only; recorded in their protocol)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--compare", action="store_true", help="tabulate the eval.json of several runs as Markdown")
    p.add_argument("-o", "--output", help="with --compare: Markdown file to write (default comparison.md)")

    p = cmd("apply", "apply a trained model (reduce, retrieve, anomaly, cluster, restore, interpolate, attributes, "
                     "finetune, swap) and measure it against a baseline")
    p.add_argument("app", metavar="NAME", help="the application; genlab apply NAME --help shows its options")
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="DIR ...", help="the run folder and the options")

    p = cmd("report", "one self-contained HTML file of runs: settings, curves, warnings, grids, evaluations, "
                      "applications")
    p.add_argument("runs", nargs="+", metavar="DIR", help="run folders")
    p.add_argument("-o", "--output", default="report.html", help="the HTML file (default report.html)")

    p = cmd("prepare", "decode a source once into memory-mapped files that train without loading it whole "
                       "(--data prepared:DIR)")
    p.add_argument("source", metavar="SRC", help="any --data source; image folders decode in parallel")
    p.add_argument("--out", required=True, help="a new folder")
    p.add_argument("--workers", type=positive_int, help="decoding processes for image folders (default: the CPUs, "
                                                         "at most 8)")

    p = cmd("serve", "a local web explorer of the run folders under DIR: runs table, curves, grids, sampling")
    p.add_argument("root", nargs="?", default="runs", metavar="DIR", help="a folder of runs (default runs)")
    p.add_argument("--port", type=positive_int, default=8000)
    p.add_argument("--host", default="127.0.0.1", help="the address to bind (default 127.0.0.1: this machine only)")

    p = cmd("list", "list models, datasets and metrics; genlab list MODEL shows the model's settings")
    p.add_argument("model", nargs="?", metavar="MODEL", help="a model: every setting with its default and meaning")
    p = cmd("info", "describe a run folder: model, data, progress, latest metrics")
    _run_dir_arg(p)
    return top


# ---------------------------------------------------------------- commands
def cmd_train(a) -> int:
    from .api import train
    from .run import compose

    flags: dict = {"data": {}, "train": {}}
    if a.data:
        flags["data"]["source"] = a.data
    if a.limit:
        flags["data"]["limit"] = a.limit
    for key in ("epochs", "batch_size", "lr", "seed"):
        if getattr(a, key) is not None:
            flags["train"][key] = getattr(a, key)
    if not a.out.strip():
        raise UserError("--out needs a folder name (it was empty)")
    run = compose(a.model, a.config, flags, a.set)
    summary = train(run, a.out, quiet=a.quiet)
    if os.environ.get("RANK", "0") == "0":  # one line per run, not per torchrun process
        print(f"trained {run.model} for {summary['step']} steps in {summary['time_s']:.1f} s -> {a.out} "
              f"(model.safetensors, metrics.jsonl, samples/)")
    return 0


def _load(run_dir, ema=True):
    """A trained model in eval mode, on the GPU when there is one."""
    import torch

    from .run import load_model

    return load_model(run_dir, ema=ema, device="cuda" if torch.cuda.is_available() else "cpu")


def _device(model):
    return next(model.parameters()).device


def _first_batch(cfg, split: str, n: int, device):
    """The first n images of a split (and labels) through the run's batch-time transforms."""
    from .run import first_images

    return first_images(cfg, split, n, device)


def _save(images, cfg, path, nrow: int | None = None) -> Path:
    from .data import to_unit
    from .viz import save_grid, upscale_for_display

    return save_grid(to_unit(images, cfg.info), path, nrow=nrow, scale=upscale_for_display(cfg.info.height))


SAMPLE_FORMATS = {"grid": "sample.png", "png-dir": "sample_images", "npz": "samples.npz"}  # format: default name in DIR


def _export(images, cfg, fmt: str, path: Path) -> Path:
    from .data import to_unit
    from .viz import save_npz, save_png_dir

    if fmt == "grid":
        return _save(images, cfg, path)
    return (save_png_dir if fmt == "png-dir" else save_npz)(to_unit(images, cfg.info), path)


# `genlab sample` options that only some models' `sample` accepts, and which models those are
SAMPLING_OPTIONS = {"temperature": "flows", "sampler": "diffusion models", "steps": "diffusion models",
                    "eta": "diffusion models", "guidance": "diffusion models", "truncation": "stylegan",
                    "prior": "vae, cvae"}


def _sampling_options(a, model, cfg) -> dict:
    """The SAMPLING_OPTIONS given on the command line, as keyword arguments of the model's `sample`."""
    import inspect

    kwargs = {}
    accepted = inspect.signature(model.sample).parameters if hasattr(model, "sample") else {}
    for name, owners in SAMPLING_OPTIONS.items():
        value = getattr(a, name)
        if value is None:
            continue
        if name not in accepted:
            raise UserError(f"model '{cfg.model}' has no sampling option --{name} ({owners} have it)")
        if isinstance(value, float) and not value >= 0:
            raise UserError(f"--{name} must be >= 0, got {value}")
        kwargs[name] = value
    return kwargs


def cmd_sample(a) -> int:
    import time

    import torch

    model, cfg = _load(a.run, ema=not a.no_ema)
    if not hasattr(model, "sample"):
        raise UserError(f"model '{cfg.model}' cannot sample (it has no prior); try genlab reconstruct")
    if a.complete is not None:
        return _complete(a, model, cfg)
    if a.mix:
        if not hasattr(model, "synthesis"):
            raise UserError(f"--mix draws StyleGAN's style-mixing grid, and '{cfg.model}' has no styles to mix")
        out = Path(a.output) if a.output else Path(a.run)
        with torch.no_grad():
            figs = model.figures(out, generator=torch.Generator(_device(model)).manual_seed(a.seed))
        print("wrote " + ", ".join(str(f) for f in figs))
        return 0
    kwargs = _sampling_options(a, model, cfg)
    # the images in float32 and, at worst, about 15 times that in the generator's activations (drawn in one call)
    check_memory(f"-n {a.n} ({a.n:,} images of {' x '.join(map(str, cfg.info.shape))})", 64 * a.n * cfg.info.dim,
                 "draw fewer samples per call")
    start = time.perf_counter()
    with torch.no_grad():
        images = model.sample(a.n, generator=torch.Generator(_device(model)).manual_seed(a.seed), **kwargs)
    secs = time.perf_counter() - start
    path = _export(images, cfg, a.format, Path(a.output) if a.output else Path(a.run) / SAMPLE_FORMATS[a.format])
    print(f"wrote {a.n} samples to {path} ({secs:.2f} s, {secs / a.n * 1000:.1f} ms per image)")
    if hasattr(model, "figures"):  # the model's own figures (InfoGAN: one grid per latent code)
        for fig in model.figures(path.parent, generator=torch.Generator(_device(model)).manual_seed(a.seed)):
            print(f"wrote {fig}")
    return 0


def _complete(a, model, cfg) -> int:
    """Image completion: originals, their kept top rows, and the model's completions, one row each."""
    import torch

    from .data.transforms import RANGES

    if not hasattr(model, "complete"):
        raise UserError(f"model '{cfg.model}' cannot complete images (autoregressive models can)")
    x, y = _first_batch(cfg, "test", a.n, _device(model))
    g = torch.Generator(_device(model)).manual_seed(a.seed)
    labels = (y,) if getattr(model, "conditional", False) else ()
    done = model.complete(x, a.complete, g, *labels)
    top = x.clone()
    top[:, :, a.complete:] = RANGES[cfg.info.range][0]  # the hidden part, shown blank
    path = _save(torch.cat([x, top, done]), cfg, a.output or Path(a.run) / "completions.png", nrow=len(x))
    print(f"wrote {len(x)} completions from the top {a.complete} rows to {path} "
          f"(rows: originals, kept part, completions)")
    return 0


def cmd_reconstruct(a) -> int:
    import math

    import torch

    model, cfg = _load(a.run)
    if not hasattr(model, "reconstruct"):
        raise UserError(f"model '{cfg.model}' cannot reconstruct images (it has no encoder)")
    x, y = _first_batch(cfg, a.split, a.n, _device(model))
    with torch.no_grad():
        r = model.reconstruct(x, y) if getattr(model, "conditional", False) else model.reconstruct(x)
    pairs = torch.stack([x, r], 1).flatten(0, 1)  # original, reconstruction, original, ...
    per_row = math.ceil(math.sqrt(len(x)))  # whole pairs on every row: an even number of columns
    path = _save(pairs, cfg, a.output or Path(a.run) / "reconstructions.png", nrow=2 * per_row)
    print(f"wrote {len(x)} originals and their reconstructions (side by side) to {path}")
    return 0


def cmd_translate(a) -> int:
    import dataclasses

    model, cfg = _load(a.run)
    if not hasattr(model, "translate"):
        raise UserError(f"model '{cfg.model}' does not translate images (image-to-image models do: pix2pix, stargan)")
    paired = hasattr(model, "make_input")
    if a.noise and not paired:
        raise UserError(f"--noise keeps pix2pix's dropout on; '{cfg.model}' has no such noise")
    if a.to is not None and paired:
        raise UserError(f"--to picks target domains of a multi-domain model (stargan); '{cfg.model}' has one mapping")
    spec = a.input
    if spec is not None and ":" not in spec and Path(spec).is_dir():  # a bare folder of images
        spec = f"folder:{spec}"
    source = cfg if spec is None else dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source=spec))
    check_memory(f"-n {a.n}", 64 * a.n * cfg.info.dim, "translate fewer images per call")
    x, _ = _first_batch(source, a.split, a.n, _device(model))
    want = (model.channels, *cfg.info.shape[1:]) if paired and a.as_input else cfg.info.shape  # inputs, or pairs
    if tuple(x.shape[1:]) != tuple(want):
        raise UserError(f"the images of '{source.data.source}' are {' x '.join(map(str, x.shape[1:]))} after the "
                        f"run's data settings, and the model takes {' x '.join(map(str, want))}; give images of "
                        f"that size and channels")
    out = Path(a.output) if a.output else Path(a.run) / "translate"
    (_translate_paired if paired else _translate_domains)(a, model, cfg, source, x, out)
    return 0


def _translate_paired(a, model, cfg, source, x, out: Path) -> None:
    """pix2pix: the images are the targets (their inputs made by the run's corruption), or the inputs themselves."""
    import torch

    from . import files
    from .apps.reduce import reconstruction_scores
    from .data import to_unit
    from .viz import save_grid, save_png_dir, upscale_for_display

    with torch.no_grad():
        if a.as_input:
            inputs, targets = x, None
        else:
            inputs, targets = model.pair_of(x, torch.Generator(x.device).manual_seed(a.seed))
        outputs = torch.cat([model.translate(inputs[i : i + 256], noise=a.noise) for i in range(0, len(x), 256)])
    folder = save_png_dir(to_unit(outputs, cfg.info), out / "outputs")
    m = min(12, len(x))
    rows = [inputs[:m], outputs[:m]] + ([] if targets is None else [targets[:m]])
    labels = ["input", "output"] + ([] if targets is None else ["target"])
    fig = save_grid(to_unit(torch.cat(rows), cfg.info), out / "translate.png", nrow=m,
                    scale=upscale_for_display(cfg.info.height), row_labels=labels)
    print(f"wrote {len(outputs)} translated images to {folder} and the figure {fig}")
    if targets is None:
        return
    scores = {"input": reconstruction_scores(targets, inputs, cfg.info.range),
              "output": reconstruction_scores(targets, outputs, cfg.info.range)}
    files.write_json(out / "scores.json", {"scores": scores, "protocol": {
        "source": source.data.source, "split": a.split, "n": len(x), "noise": a.noise, "seed": a.seed,
        "inputs": "the source's own pairs" if cfg.info.paired else
                  f"the targets through {cfg.model_cfg.pair} at level {model.level:g}",
        "scale": "pixels in [0, 1]; PSNR per image, capped, averaged; SSIM per image (Wang et al. 2004)"}})
    for name, sc in scores.items():
        print(f"{name:7s} against the targets: PSNR {sc['psnr_db']:.2f} dB, SSIM {sc['ssim']:.4f}, "
              f"MSE per pixel {sc['mse_per_pixel']:.5f}")


def _translate_domains(a, model, cfg, source, x, out: Path) -> None:
    """StarGAN: every image into each target domain (--to, default all), one folder of PNGs per domain."""
    import torch

    from .data import to_unit
    from .viz import save_grid, save_png_dir, upscale_for_display

    k = model.num_domains
    try:
        domains = list(range(k)) if a.to is None else [int(d) for d in a.to.split(",") if d.strip()]
    except ValueError:
        raise UserError(f"--to takes domain numbers separated by commas (0..{k - 1}), got '{a.to}'") from None
    if not domains or any(not 0 <= d < k for d in domains):
        raise UserError(f"--to takes domain numbers separated by commas, each in 0..{k - 1}, got '{a.to}'")
    rows = []
    with torch.no_grad():
        for d in domains:
            y = torch.cat([model.translate(x[i : i + 256], d) for i in range(0, len(x), 256)])
            save_png_dir(to_unit(y, cfg.info), out / "outputs" / f"to_{d}")
            rows.append(y)
    m = min(12, len(x))
    fig = save_grid(to_unit(torch.cat([x[:m]] + [r[:m] for r in rows]), cfg.info), out / "translate.png", nrow=m,
                    scale=upscale_for_display(cfg.info.height), row_labels=["input"] + [f"to {d}" for d in domains])
    print(f"wrote {len(x)} images translated into each of {len(domains)} domains to {out / 'outputs'} "
          f"(one folder per domain) and the figure {fig}")


def cmd_interpolate(a) -> int:
    import torch

    from .apps.interpolate import interpolate

    model, cfg = _load(a.run)
    torch.manual_seed(a.seed)
    if hasattr(model, "encode"):  # between two test images' codes
        x, y = _first_batch(cfg, "test", 2 * a.pairs, _device(model))
        if len(x) < 2:
            raise UserError("interpolation needs at least two images in the test split")
        k = len(x) // 2
        strips = interpolate(model, x[:k], x[k : 2 * k], a.steps, a.mode, None if y is None else y[:k])
        what = "test images' codes"
    elif hasattr(model, "prior"):  # a generator without an encoder: between two noise vectors
        g = torch.Generator(_device(model)).manual_seed(a.seed)
        k = a.pairs
        strips = interpolate(model, model.prior(k, g), model.prior(k, g), a.steps, a.mode)
        what = "noise vectors"
    else:
        raise UserError(f"model '{cfg.model}' has no latent space to interpolate in")
    path = _save(strips.flatten(0, 1), cfg, a.output or Path(a.run) / "interpolation.png", nrow=a.steps)
    print(f"wrote {k} interpolation strips of {a.steps} steps ({a.mode}) between {what} to {path}")
    return 0


STABLE_FID_N = 10_000  # below it, FID's upward bias is large (BENCHMARKS.md, "Floors on real MNIST")
IWAE_K_MAX = 100_000  # 20x the papers' k: past it the cost (n x k decoder passes) buys nothing anyone reports


def cmd_fit_prior(a) -> int:
    from .api import fit_prior
    from .config import parse_overrides

    over = parse_overrides(a.set)
    if set(over) - {"model"}:
        raise UserError(f"genlab fit-prior takes model.* settings only, got --set {sorted(set(over) - {'model'})[0]}.*")
    res = fit_prior(a.run, a.prior, over.get("model", {}))
    print(f"fitted the {a.prior} prior to the codes of {res['images']:,} training images in {res['seconds']:.1f} s; "
          f"wrote {', '.join(res['files'])} and config.json (model.prior={a.prior}) in {a.run}")
    if (Path(a.run) / "eval.json").exists():
        print("note: eval.json's sample metrics were computed before this prior; evaluate again", file=sys.stderr)
    return 0


def cmd_eval(a) -> int:
    if a.compare:
        return _compare(a)
    if len(a.runs) != 1:
        raise UserError("genlab eval takes one run folder (use --compare to tabulate several)")
    from .data import open_splits, prepare
    from .files import write_json
    from .metrics import MetricContext, evaluate, supported
    from .metrics.registry import ARCHIVE, METRICS, runnable

    if a.iwae_k > IWAE_K_MAX:
        raise UserError(f"--iwae-k {a.iwae_k:,} means {a.iwae_k:,} decoder passes per image (the papers use 5,000): "
                        f"use at most {IWAE_K_MAX:,}")
    run_dir = Path(a.runs[0])
    model, cfg = _load(run_dir)
    out = run_dir / "eval.json"
    old = _earlier_results(out)  # checked before any metric runs: a late failure must not lose the work
    names = supported(model) if a.metrics is None else [m.strip() for m in a.metrics.split(",") if m.strip()]
    splits = open_splits(cfg.data)
    train = prepare(splits.train, cfg.data)
    test = prepare(splits.test, cfg.data) if splits.test is not None else None
    ref = test if a.split == "test" and test is not None else train
    split = "test" if ref is test else "train"
    seen = train.subset(cfg.data.limit or None)  # the images the model trained on: memorisation's yardstick
    sampling = _sampling_options(a, model, cfg)
    ctx = MetricContext(model, cfg, ref, split, a.n, seed=a.seed, features=a.features, classifier=a.classifier,
                        precision=a.precision, iwae_k=a.iwae_k, train=seen, heldout=test, out_dir=run_dir,
                        progress=not a.quiet, sampling=sampling)
    if a.metrics is None:  # defaults: every supported metric whose networks fit these images
        if sampling:  # sampling settings concern the metrics of samples only
            names = [n for n in names if "sample" in METRICS[n].needs]
        names, notes = runnable(names, ctx)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    if not names:
        raise UserError("no metric to compute: name one with --metrics (see genlab list)")
    if "fid" in names and a.n < STABLE_FID_N:
        print(f"note: FID is biased upwards at --n {a.n:,}: two disjoint random samples of real MNIST score 21.3 at "
              f"1,000 images and 3.7 at 10,000 (domain features, BENCHMARKS.md); compare runs at equal n only, "
              f"and use --n {STABLE_FID_N:,} beside published figures", file=sys.stderr)
    computed = evaluate(names, ctx)
    results = {result_key(name, a.features, a.precision): res for name, res in computed.items()}
    # the latest result of each metric and extractor under its plain key; every protocol ever evaluated (sample
    # count, reference, seed, IWAE's k) kept under its own key in the archive, so no result replaces another
    archive = {**old.get(ARCHIVE, {}), **{protocol_key(result_key(name, a.features, a.precision), name, a): res
                                          for name, res in computed.items()}}
    write_json(out, {**old, **results, ARCHIVE: archive})
    for name, res in results.items():
        nums = ", ".join(_fmt(k, v) for k, v in res.items() if k != "protocol")
        proto = ", ".join(f"{k}={v}" for k, v in res["protocol"].items())
        print(f"{name:12s} {nums}\n{'':12s} [{proto}]")
    print(f"wrote {out}")
    return 0


def _earlier_results(path: Path) -> dict:
    """The results eval.json already holds (kept beside the new ones), after checking that eval can write it."""
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"cannot write {path}: the run folder is read-only; copy the run somewhere writable")
    if not path.exists():
        return {}
    try:
        old = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError):
        old = None
    if not isinstance(old, dict) or not all(isinstance(v, dict) for v in old.values()):
        raise UserError(f"{path} is not an eval.json genlab wrote (damaged or edited); move it away and evaluate again")
    return old


def protocol_key(key: str, metric: str, a) -> str:
    """The archive's key: the result key with the protocol's sample count, reference split and seed (and k for
    the IWAE bound, and the sampling options given), e.g. "fid@inception-bf16 n=10000 ref=test seed=0 steps=10"."""
    parts = [key, f"n={a.n}", f"ref={a.split}", f"seed={a.seed}"] + ([f"k={a.iwae_k}"] if metric == "nll" else [])
    parts += [f"{name}={getattr(a, name)}" for name in SAMPLING_OPTIONS if getattr(a, name, None) is not None]
    return " ".join(parts)


def result_key(metric: str, features: str, precision: str) -> str:
    """eval.json's key for a metric: its name, tagged with the kind of extractor when that is not a domain
    classifier in fp32, so that an Inception FID and a domain FID of one run are kept side by side
    ("fid", "fid@inception", "fid@inception-bf16")."""
    from .metrics.registry import METRICS

    kind = features.partition(":")[0]
    if "features" not in METRICS[metric].uses or (kind == "domain" and precision == "fp32"):
        return metric
    return f"{metric}@{kind}" + ("" if precision == "fp32" else f"-{precision}")


def _fmt(k, v) -> str:
    return f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"


# the headline number of each metric, for comparison tables
HEADLINE = {"elbo": "neg_elbo_nats", "nll": "nll_nats", "recon": "mse_per_pixel", "fid": "fid", "kid": "kid",
            "is": "is", "pr": ("precision", "recall"), "modes": "classes_covered",
            "memorization": "pixel_fraction_suspiciously_close"}


def _compare(a) -> int:
    from .files import read_json

    rows, columns = [], []
    for d in a.runs:
        ev = read_json(Path(d) / "eval.json")
        cfg = read_json(Path(d) / "config.json")
        row = {"run": str(d), "model": cfg.get("model", {}).get("name", "?")}
        for metric, res in ev.items():
            keys = HEADLINE.get(metric.partition("@")[0], ())
            for key in (keys,) if isinstance(keys, str) else keys:
                if key in res:
                    col = f"{metric}: {key}" if key != metric else metric
                    row[col] = res[key]
                    if col not in columns:
                        columns.append(col)
        rows.append(row)
    head = ["run", "model", *columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(c, "")) for c in head) + " |")
    table = "\n".join(lines) + "\n"
    out = Path(a.output or "comparison.md")
    out.write_text(table)
    print(table + f"wrote {out}")
    return 0


def _cell(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def cmd_list(a) -> int:
    from .data.sources import describe
    from .metrics import METRICS
    from .models import registry

    if a.model:
        return _list_model(registry.get(a.model))

    print("models:")
    for name in registry.names():
        print(f"  {name:16s} {registry.get(name).summary}")
    print("datasets (--data):")
    for spec, s in describe():
        print(f"  {spec:16s} {s}")
    print("metrics (genlab eval --metrics):")
    for name, m in METRICS.items():
        print(f"  {name:16s} {m.summary}")
    return 0


def _list_model(entry) -> int:
    """Every setting of one model with its default, what the model recommends on top, and what each means."""
    import dataclasses

    from .config import field_docs, to_dict
    from .data import DataConfig
    from .train.config import TrainConfig

    print(f"{entry.name}: {entry.summary}")
    recommended = entry.recommended({})
    for section, cls in (("model", entry.config_cls), ("data", DataConfig), ("train", TrainConfig)):
        print(f"{section} settings (--set {section}.NAME=VALUE):")
        defaults, docs = to_dict(cls()), field_docs(cls)
        for f in dataclasses.fields(cls):
            value = recommended.get(section, {}).get(f.name, defaults[f.name])
            mark = " *" if f.name in recommended.get(section, {}) else ""
            print(f"  {f.name:20s} {str(value) + mark:14s} {docs[f.name]}")
    if entry.variants:
        field, table = entry.variants
        print(f"(* {entry.name}'s own setting, over the general default; model.{field} brings its paper's settings: "
              + "; ".join(f"{v}: {', '.join(f'{s}.{k}={x}' for s, d in t.items() for k, x in d.items())}"
                          for v, t in table.items()) + ")")
    elif any(recommended.values()):
        print(f"(* {entry.name}'s own setting, over the general default)")
    return 0


def cmd_report(a) -> int:
    from .report import write_report

    path = write_report(a.runs, a.output)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB, self-contained)")
    return 0


def cmd_prepare(a) -> int:
    import time

    from .data.decode import prepare_source

    last = [time.perf_counter()]

    def progress(n: int) -> None:  # a line every 10 s: the images written so far
        if time.perf_counter() - last[0] >= 10:
            last[0] = time.perf_counter()
            print(f"genlab: {n:,} images written", file=sys.stderr, flush=True)

    index = prepare_source(a.source, a.out, a.workers or 0, progress)
    counts = ", ".join(f"{k} {v['n']:,}" for k, v in index["splits"].items())
    print(f"wrote {a.out}: {counts} images of {' x '.join(map(str, index['shape']))}; train with "
          f"--data prepared:{a.out}")
    return 0


def cmd_serve(a) -> int:
    import importlib.util

    from .web import serve

    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"genlab serve needs {' and '.join(missing)}: pip install 'genlab[web]'")
    serve(a.root, a.host, a.port)
    return 0


def cmd_info(a) -> int:
    from .run import read_run_config
    from .train.checkpoint import read_metrics, read_state

    run = Path(a.run)
    cfg = read_run_config(run)
    d = cfg.to_dict()
    print(f"model  {cfg.model}: " + ", ".join(f"{k}={v}" for k, v in d["model"].items() if k != "name"))
    print(f"data   {cfg.data.source} {cfg.info.channels}x{cfg.info.height}x{cfg.info.width}, "
          f"{cfg.info.num_classes} classes, range {cfg.info.range}, binarize {cfg.info.binarized}")
    if (run / "trainer_state.json").exists():
        st = read_state(run / "trainer_state.json")
        print(f"train  step {st['step']}, {st['time_s']:.1f} s, epochs planned {cfg.train.epochs}, "
              f"lr {cfg.train.lr}, batch {cfg.train.batch_size}, seed {cfg.train.seed}")
    else:
        print("train  no checkpoint yet")
    metrics = run / "metrics.jsonl"
    if metrics.exists():
        last = {rec["event"]: rec for rec in read_metrics(metrics)}
        for ev, rec in last.items():
            vals = ", ".join(_fmt(k, v) for k, v in rec.items() if k not in ("event", "step", "epoch", "time_s"))
            print(f"{ev:6s} step {rec['step']}: {vals}")
    if (run / "eval.json").exists():
        print(f"eval   {run / 'eval.json'}")
    return 0


def cmd_apply(a) -> int:
    """genlab apply NAME DIR [options]: NAME's own parser reads the rest, with the options NAME registered."""
    from .apps import registry as apps

    entry = apps.get(a.app)
    p = Parser(prog=f"genlab apply {entry.name}", description=entry.summary)
    p.set_defaults(_parser=p, command=f"apply {entry.name}")
    _run_dir_arg(p)
    p.add_argument("--split", choices=("train", "test"), default="test", help="the images measured (default test)")
    p.add_argument("--n", type=positive_int, default=10000, help="the first N images of the split (default 10000)")
    p.add_argument("--out", help="output folder (default DIR/apply/NAME)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--batch-size", type=positive_int, default=256, help="images per model call")
    entry.add_arguments(p)
    b = p.parse_known_into(a.rest)
    model, cfg = _load(b.run)
    out = Path(b.out) if b.out else Path(b.run) / "apply" / entry.name
    ctx = apps.AppContext(model, cfg, out, b.split, b.n, b.seed, b.batch_size, vars(b))
    record = apps.apply(entry.name, ctx)
    print(apps.table(record))
    print(f"wrote {out / 'results.json'}, " + ", ".join(Path(f).name for f in record["figures"]))
    return 0


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "reconstruct": cmd_reconstruct, "translate": cmd_translate,
            "interpolate": cmd_interpolate, "report": cmd_report, "serve": cmd_serve,
            "prepare": cmd_prepare,
            "fit-prior": cmd_fit_prior, "eval": cmd_eval, "apply": cmd_apply, "list": cmd_list, "info": cmd_info}


# file-system refusals that are the machine's state, not a bug: each becomes one sentence and exit 2
OS_REFUSALS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
               errno.EISDIR, errno.ENOENT, errno.EEXIST, errno.ENAMETOOLONG, errno.ELOOP}


def main(argv: list[str] | None = None) -> int:
    from .train.trainer import Diverged

    parser = build_parser()
    try:
        args = parser.parse_known_into(sys.argv[1:] if argv is None else argv)
        if not args.command:
            parser.print_help()
            return EXIT_USER
        return COMMANDS[args.command](args)
    except UserError as e:
        print(f"genlab: error: {e}", file=sys.stderr)
        return EXIT_USER
    except Diverged as e:
        print(f"genlab: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        print("genlab: interrupted; run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `genlab list | head`: the reader left; nothing more to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that Python's exit-time flush of stdout cannot raise again
        return 0
    except OSError as e:  # the machine refused a file operation: a full disk, a read-only folder, a missing path
        if e.errno not in OS_REFUSALS:
            raise
        where = f" '{e.filename}'" if e.filename else ""
        print(f"genlab: error: the system refused{where}: {e.strerror}", file=sys.stderr)
        return EXIT_USER


if __name__ == "__main__":
    sys.exit(main())

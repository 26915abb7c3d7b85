"""Image-to-image models measured on MNIST the way their papers measure them, with figures printed as Markdown.

    python benchmarks/translation.py pix2pix RUN [--dae RUN] [--n 10000]
    python benchmarks/translation.py stargan RUN [--n 2000]
    python benchmarks/translation.py cyclegan RUN [--n 2000]

pix2pix (a run trained on MNIST with model.pair = edges, downsample, ...): the first --n test images are the
targets b, their inputs a = the run's corruption of b (seed 0). Rows: the input itself (for downsample this is
bicubic upsampling, the classical baseline), pix2pix's G(a), and with --dae a denoising autoencoder trained on
the same corruption (its reconstruct(a)). Columns: PSNR and SSIM against b (pixels in [0, 1]), the domain
classifier's accuracy on the outputs against b's labels (the content kept; the analogue of the papers' FCN
score), and the domain FID of the outputs against the targets (realism); with --inception also the FID under the
Inception network (bf16), which takes colour images of any size.

stargan (a run on MNIST, the ten digits as domains): every test image translated into each of the nine other
digits. Columns: the classifier's accuracy for the target digit (the paper's classification metric), the style
kept (Spearman's rho between input and output stroke thickness and slant, over all translations), and the mean
over target digits of the domain FID of translations into d against the test images of digit d.

cyclegan (a run between MNIST (A) and another source (B), data.target): test images of A translated to B and
back. Columns: the classifier's accuracy on G(a) for a's digit (content kept), the domain FID of G(a) against
the test images of B (realism), and the cycle error |F(G(a)) - a| and |G(F(b)) - b| (pixels in [0, 1]). With
--target-classifier (a classifier trained on B's own images, as the papers' FCN score uses one trained on the
target domain) also that classifier's accuracy on G(a) and, to calibrate it, on B's real test images.

Writes RUN/translation.json with the numbers and the protocol.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from genlab.apps.attributes import slant, thickness  # noqa: E402
from genlab.apps.reduce import reconstruction_scores  # noqa: E402
from genlab.data import open_splits, prepare, to_unit  # noqa: E402
from genlab.metrics.features import get_extractor  # noqa: E402
from genlab.metrics.frechet import fid_from_features  # noqa: E402
from genlab.run import first_images, load_model  # noqa: E402


def test_images(cfg, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n test images through the run's transforms, and their labels."""
    return first_images(cfg, "test", n)


def batched(fn, *tensors: torch.Tensor, size: int = 500) -> torch.Tensor:
    """fn over slices of the tensors (the same rows of each), concatenated."""
    with torch.no_grad():
        return torch.cat([fn(*(t[i : i + size] for t in tensors)) for i in range(0, len(tensors[0]), size)])


def content_and_realism(images01: torch.Tensor, labels: torch.Tensor | None, reference01: torch.Tensor) -> dict:
    """The domain classifier's accuracy for `labels` and the domain FID against the reference images; nothing for
    images the MNIST classifier cannot take (colour patches)."""
    ext = get_extractor("domain")
    if tuple(images01.shape[1:]) != ext.shape:
        return {}
    acc = float((ext.probs(images01).argmax(1) == labels).float().mean()) if labels is not None else float("nan")
    return {"accuracy": acc, "domain_fid": fid_from_features(ext.features(images01), ext.features(reference01))}


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a.numpy(), b.numpy()).statistic)


def pix2pix(args) -> dict:
    model, cfg = load_model(args.run)
    b, y = test_images(cfg, args.n)
    a = model.make_input(b, torch.Generator().manual_seed(0))
    names = {"downsample": "input (bicubic)", "gray": "input (grey)"}
    rows = {names.get(cfg.model_cfg.pair, "input"): a,
            "pix2pix": batched(model.translate, a)}
    if args.dae:
        dae, dcfg = load_model(args.dae)
        if (dcfg.model_cfg.noise, dcfg.model_cfg.level) != (cfg.model_cfg.pair, model.level):
            sys.exit(f"the denoising AE was trained on {dcfg.model_cfg.noise} at {dcfg.model_cfg.level}, "
                     f"pix2pix on {cfg.model_cfg.pair} at {model.level}")
        lo = -1.0 if dcfg.info.range == "-11" else 0.0  # the DAE's range from pix2pix's, and back
        a_dae = to_unit(a, cfg.info) * (1 - lo) + lo
        out = to_unit(batched(dae.reconstruct, a_dae), dcfg.info)
        rows["denoising AE"] = out * 2 - 1 if cfg.info.range == "-11" else out
    target01 = to_unit(b, cfg.info)
    inception = get_extractor("inception", precision="bf16") if args.inception else None
    ref = inception.features(target01) if inception else None
    results = {}
    for name, v in rows.items():
        v01 = to_unit(v, cfg.info)
        results[name] = {**reconstruction_scores(b, v, cfg.info.range), **content_and_realism(v01, y, target01)}
        if inception is not None:
            results[name]["inception_fid"] = fid_from_features(inception.features(v01), ref)
    return {"results": results, "protocol": {
        "task": f"{cfg.model_cfg.pair} at level {model.level:g} -> image", "n": len(b), "split": "test",
        "inputs": "the run's corruption of the targets, seed 0", "dae": args.dae,
        "scores": "pixels in [0, 1]; PSNR per image (capped) and SSIM per image, averaged; accuracy: the shipped "
                  "MNIST classifier on the outputs against the targets' labels; domain FID: its features, outputs "
                  "against targets"}}


def stargan(args) -> dict:
    model, cfg = load_model(args.run)
    x, y = test_images(cfg, args.n)
    x01 = to_unit(x, cfg.info)
    k = model.num_domains
    outs, targets, sources = [], [], []
    for shift in range(1, k):
        t = (y + shift) % k
        outs.append(to_unit(batched(model.translate, x, t), cfg.info))
        targets.append(t)
        sources.append(x01)
    out, tgt, src = torch.cat(outs), torch.cat(targets), torch.cat(sources)
    ext = get_extractor("domain")
    acc = float((ext.probs(out).argmax(1) == tgt).float().mean())
    fids = {}
    for d in range(k):
        ref = x01[y == d]
        if len(ref) > 1 and (tgt == d).sum() > 1:
            fids[d] = fid_from_features(ext.features(out[tgt == d]), ext.features(ref))
    return {"results": {"stargan": {
        "target_accuracy": acc, "thickness_rho": spearman(thickness(src), thickness(out)),
        "slant_rho": spearman(slant(src), slant(out)), "domain_fid_mean": sum(fids.values()) / len(fids),
        "domain_fid_per_target": fids}}, "protocol": {
        "n": len(x), "translations": len(out), "targets": "each test image into each of the other domains",
        "accuracy": "the shipped MNIST classifier's argmax against the target digit",
        "style": "Spearman's rho between input and output stroke thickness (2A/P) and slant, over all translations",
        "domain_fid": "per target digit d: translations into d against the test images of d; mean over d"}}


def cyclegan(args) -> dict:
    model, cfg = load_model(args.run)
    splits = open_splits(cfg.data)
    x, dom = test_images(cfg, args.n)
    a, b = x[dom == 0], x[dom == 1]
    from genlab.data import load

    y_a = load(cfg.data.source).test.labels[: len(a)]  # A's digits: the merged set keeps each domain's order
    fake_b, fake_a = batched(model.to_b, a), batched(model.to_a, b)
    cyc_a = batched(model.to_a, fake_b)
    cyc_b = batched(model.to_b, fake_a)
    u = lambda v: to_unit(v, cfg.info)  # noqa: E731
    ext = get_extractor("domain")
    target = {}
    if args.target_classifier:  # B's own classifier (the FCN score's setting): calibrated on B's labelled test images
        clf = get_extractor(f"domain:{args.target_classifier}")
        b_digits = prepare(load(cfg.data.target).test, cfg.data)
        from genlab.data.sources import _fit

        xb = _fit(b_digits.images, cfg.info.shape).float() / 255
        target = {"b_classifier_on_g_a": float((clf.probs(u(fake_b)).argmax(1) == y_a).float().mean()),
                  "b_classifier_on_real_b": float((clf.probs(xb).argmax(1) == b_digits.labels).float().mean())}
    return {"results": {"cyclegan": {**target,
        "content_accuracy_a_to_b": float((ext.probs(u(fake_b)).argmax(1) == y_a).float().mean()),
        "content_accuracy_a": float((ext.probs(u(a)).argmax(1) == y_a).float().mean()),
        "domain_fid_a_to_b": fid_from_features(ext.features(u(fake_b)), ext.features(u(b))),
        "domain_fid_a_vs_b": fid_from_features(ext.features(u(a)), ext.features(u(b))),
        "cycle_error_a": float((u(cyc_a) - u(a)).abs().mean()),
        "cycle_error_b": float((u(cyc_b) - u(b)).abs().mean())}},
        "protocol": {"domains": splits.train.classes, "n_a": len(a), "n_b": len(b),
                     "content": "the shipped MNIST classifier on G(a) against a's digit (and on a itself)",
                     "realism": "domain FID of G(a) against B's test images (and of A's against B's, the gap to close)",
                     "cycle": "mean |F(G(a)) - a| and |G(F(b)) - b| on pixels in [0, 1]"}}


def table(results: dict) -> str:
    cols = list(dict.fromkeys(k for r in results.values() for k, v in r.items() if not isinstance(v, dict)))
    lines = ["| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[c]:.4g}" if c in r else "" for c in cols) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=("pix2pix", "stargan", "cyclegan"))
    p.add_argument("run")
    p.add_argument("--dae", help="pix2pix: a denoising_ae run trained on the same corruption")
    p.add_argument("--target-classifier", help="cyclegan: a classifier run trained on domain B's labelled images")
    p.add_argument("--inception", action="store_true",
                   help="pix2pix: also the Inception FID (bf16) of each row against the targets (any image size)")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rec = {"pix2pix": pix2pix, "stargan": stargan, "cyclegan": cyclegan}[args.kind](args)
    rec["protocol"]["seconds"] = round(time.perf_counter() - start, 1)
    rec["protocol"]["machine"] = f"{os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} thread(s)"
    (Path(args.run) / "translation.json").write_text(json.dumps(rec, indent=2))
    print(table(rec["results"]))
    print(json.dumps(rec["protocol"], indent=2))


if __name__ == "__main__":
    main()

"""Every application (`genlab apply`) on MNIST for a stated CPU budget: one Markdown table per application, the
models that make sense as rows beside the classical baselines (PCA, pixel space, median filter, diffusion
filling, cross-fade, pixel arithmetic), and the held-out-class anomaly protocol over all ten digits.

    OMP_NUM_THREADS=1 python benchmarks/apps_mnist.py --threads 1 --out runs/apps_bench
    OMP_NUM_THREADS=1 python benchmarks/apps_mnist.py --threads 1 --out runs/apps_bench --likelihood ""  # no exact-
                                                                                   # likelihood anomaly rows

Models (run folders under --out, reused when finished: the trainer resumes or returns at once), each trained
with genlab's Trainer on the 60k MNIST training images, batch 128 unless said, seed 0:
    ae            MLP 784-512-256-16, Bernoulli cross-entropy on grey levels, --epochs epochs
    denoising_ae  the same network trained to undo Gaussian noise (std 0.3), --epochs epochs
    vae           MLP 784-512-16 (genlab's default VAE), dynamically binarised MNIST, --epochs epochs
    bigan         its defaults (conv, latent 50, data in [-1, 1], Adam 2e-4 beta1 0.5), model.width=32,
                  --bigan-steps steps at batch 64
Each application then runs through `genlab.apps.apply(NAME, AppContext(...))`, exactly what
`genlab apply NAME runs/apps_bench/MODEL --n N [options]` does, on the first --n test images. Every application
measures a model on its own inputs (the run's data pipeline): grey levels for AE, DAE and BiGAN, test images
binarised once with seed 0 for the VAE, so the VAE's baseline rows are computed on those binarised images.

Anomaly (held-out-class protocol): for each digit c, an `ae` and a `vae` as above (MLP, --anomaly-epochs
epochs) train on the training images without c (genlab.apps.anomaly.train_held_out); all 10k test images are
scored, the anomalies (digit c) the positive class: AE by minus the squared reconstruction error, VAE by its
ELBO (mean of 5 posterior draws, on the test images binarised once with seed 0), beside PCAAnomalyScorer
with 16 components fitted on the same normal training images (grey levels). The exact-likelihood models of
--likelihood (a small Glow on dequantised 8-bit data, a small PixelCNN on dynamically binarised data, sizes in
LIKELIHOOD, --likelihood-steps steps at batch 64) train without digit --likelihood-digit and score the test
images by their exact log p(x).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from genlab.api import train  # noqa: E402
from genlab.apps import registry as apps  # noqa: E402
from genlab.apps.anomaly import AnomalyScorer, PCAAnomalyScorer, detection_from_scores, drop_classes, train_held_out  # noqa: E402
from genlab.data import Pipeline, load  # noqa: E402
from genlab.files import read_json, write_json  # noqa: E402
from genlab.run import compose, load_model  # noqa: E402

AE_NET = ["model.hidden=512,256", "model.latent_dim=16"]
VAE_NET = ["model.latent_dim=16", "data.binarize=dynamic", "train.lr=1e-3"]  # the rate BENCHMARKS.md measured with


def models(args) -> list[tuple[str, str, str, list[str], dict, str]]:
    """(folder, label, registry name, --set overrides, train flags, budget in words)."""
    ep = {"epochs": args.epochs, "batch_size": 128}
    return [
        ("ae", "AE", "ae", AE_NET, ep, f"MLP 784-512-256-16, {args.epochs} epochs x 468 steps, batch 128"),
        ("denoising_ae", "DAE", "denoising_ae", [*AE_NET, "model.noise=gaussian", "model.level=0.3"], ep,
         f"MLP 784-512-256-16, Gaussian noise std 0.3, {args.epochs} epochs, batch 128"),
        ("vae", "VAE", "vae", VAE_NET, ep,
         f"MLP 784-512-16, dynamic binarisation, {args.epochs} epochs, batch 128, Adam 1e-3"),
        ("bigan", "BiGAN", "bigan", ["model.width=32"],
         {"epochs": 100, "max_steps": args.bigan_steps, "batch_size": 64, "monitor_modes": False},
         f"conv width 32, latent 50, {args.bigan_steps} steps, batch 64"),
    ]


def inputs(cfg) -> str:
    return "binarised" if cfg.data.binarize != "none" else "grey"


# ---------------------------------------------------------------- Markdown
def fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:.{digits}f}"


def md(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in r) + " |" for r in rows]
    return "\n".join(out)


class Rows:
    """Model rows in order; baseline rows once per (label, inputs), a differing repeat kept under its own name."""

    def __init__(self):
        self.rows: list[list] = []
        self.seen: dict[tuple, list] = {}

    def model(self, cells: list) -> None:
        self.rows.append(cells)

    def baseline(self, label: str, where: str, cells: list, owner: str) -> None:
        key = (label, where)
        sig = [fmt(c) if not isinstance(c, str) else c for c in cells]
        if key in self.seen:
            if self.seen[key] == sig:
                return
            label = f"{label} ({owner}'s inputs)"
        self.seen[key] = sig
        self.rows.append([f"{label} [{where}]", *cells])


# ---------------------------------------------------------------- the applications
def apply(app: str, name: str, model, cfg, args, n: int | None = None, **options) -> dict:
    out = Path(args.out) / name / "apply" / app
    ctx = apps.AppContext(model, cfg, out, "test", n or args.n, 0, 256, options)
    t = time.perf_counter()
    rec = apps.apply(app, ctx)
    rec["seconds"] = time.perf_counter() - t
    print(f"[{app} {name}: {rec['seconds']:.0f} s]", flush=True)
    return rec


def table_reduce(recs: dict, labels: dict, cfgs: dict) -> str:
    rows = Rows()
    cols = ("mse_per_pixel", "psnr_db", "ssim")
    for name, rec in recs.items():
        r, k = rec["results"], rec["protocol"]["code_size"]
        rows.model([f"{labels[name]} (latent {k})", *(r["latent"][c] for c in cols)])
        rows.baseline(f"PCA {k}", inputs(cfgs[name]), [r["pca"][c] for c in cols], labels[name])
    return md(["method", "MSE / pixel", "PSNR dB", "SSIM"], [[r[0], f"{r[1]:.4f}", *r[2:]] for r in rows.rows])


def table_methods(recs, labels, cfgs, cols, names) -> str:
    """retrieve, cluster, finetune: results {latent, pca, pixels} with the same columns."""
    rows = Rows()
    for name, rec in recs.items():
        r, k = rec["results"], rec["protocol"]["code_size"]
        rows.model([f"{labels[name]} (latent {k})", *(r["latent"][c] for c in cols)])
        rows.baseline(f"PCA {k}", inputs(cfgs[name]), [r["pca"][c] for c in cols], labels[name])
        rows.baseline("pixels (784)", inputs(cfgs[name]), [r["pixels"][c] for c in cols], labels[name])
    return md(["method", *names], rows.rows)


def table_restore(recs, labels, cfgs, kinds) -> str:
    rows = Rows()
    base = {"gaussian": "median3", "salt_pepper": "median3", "block": "diffusion", "half": "diffusion",
            "mask": "diffusion"}

    def cell(s):
        return f"{s['psnr_gain_db']:+.2f} / {s['ssim_gain']:+.3f}"

    for name, rec in recs.items():
        r = rec["results"]
        where = inputs(cfgs[name])
        rows.baseline("corrupted input (absolute PSNR / SSIM)", where,
                      [f"{r[f'{k}/corrupted']['psnr_db']:.2f} / {r[f'{k}/corrupted']['ssim']:.3f}" for k in kinds],
                      labels[name])
        rows.model([labels[name], *(cell(r[f"{k}/model"]) for k in kinds)])
        rows.baseline("median 3x3 (noise) / diffusion fill (masks)", where,
                      [cell(r[f"{k}/{base[k]}"]) for k in kinds], labels[name])
    return md(["method", *(f"{k}: PSNR gain dB / SSIM gain" for k in kinds)], rows.rows)


def table_interpolate(recs, labels, cfgs) -> str:
    rows = Rows()
    cols = ("step_distance", "evenness", "path_ratio", "endpoint_psnr_db", "midpoint_nn_rmse")
    for name, rec in recs.items():
        r = rec["results"]
        for mode in ("linear", "slerp"):
            if mode in r:
                rows.model([f"{labels[name]} {mode}", *(r[mode][c] for c in cols)])
        rows.baseline("pixel cross-fade", inputs(cfgs[name]), [r["crossfade"][c] for c in cols], labels[name])
    return md(["method", "step distance", "evenness (max/mean step)", "path ratio", "endpoint PSNR dB",
               "midpoint NN RMSE"], rows.rows)


def table_attributes(recs, labels, cfgs, attrs) -> str:
    rows = Rows()
    cols = ("spearman", "change_at_+1", "change_at_-1")
    for name, rec in recs.items():
        r = rec["results"]
        rows.model([labels[name], *(r[f"{a}/latent"][c] for a in attrs for c in cols)])
        rows.baseline("pixel arithmetic", inputs(cfgs[name]), [r[f"{a}/pixels"][c] for a in attrs for c in cols],
                      labels[name])
    gaps = {a: sorted({round(rec["results"][f"{a}/latent"]["real_gap"], 3) for rec in recs.values()}) for a in attrs}
    head = ["method", *(f"{a}: {c.replace('change_at_', 'change at ')}" for a in attrs for c in cols)]
    note = "real gap (mean property with minus without, the change alpha = +1 aims at): " + \
        ", ".join(f"{a} {', '.join(map(str, g))}" for a, g in gaps.items())
    return md(head, rows.rows) + "\n\n" + note


# ---------------------------------------------------------------- anomaly
def anomaly_protocol(args, splits) -> dict:
    """Each digit held out in turn: AE (reconstruction), VAE (ELBO), PCA 16 (reconstruction)."""
    root = Path(args.out) / "heldout"
    test = splits.test
    g = torch.random.get_rng_state()
    torch.manual_seed(0)
    x_grey = Pipeline(compose("ae").data)(test.images)
    torch.manual_seed(0)
    x_bin = Pipeline(compose("vae", overrides=VAE_NET).data)(test.images)
    torch.random.set_rng_state(g)
    settings = {"ae": [*AE_NET, f"train.epochs={args.anomaly_epochs}"],
                "vae": [*VAE_NET, f"train.epochs={args.anomaly_epochs}"]}
    per, secs = {}, {}
    for c in args.digit_list:
        is_anom = test.labels == c
        per[c] = {}
        for kind, sets in settings.items():
            t = time.perf_counter()
            model = train_held_out(kind, splits, c, root / f"{kind}_without_{c}", sets, quiet=True)
            trained = time.perf_counter() - t
            x = x_bin if kind == "vae" else x_grey
            scorer = AnomalyScorer(model, "likelihood" if kind == "vae" else "reconstruction", samples=5)
            s = scorer.score_samples(x)
            per[c][kind] = detection_from_scores(s[~is_anom], s[is_anom])
            secs[f"{kind}_{c}"] = read_json(root / f"{kind}_without_{c}" / "trainer_state.json")["time_s"]
            print(f"[held out {c}, {kind}: train {trained:.0f} s, AUROC {per[c][kind]['auroc']:.3f}]", flush=True)
        normal = drop_classes(splits.train, [c])
        pca = PCAAnomalyScorer(16, "01", 0).fit(normal.images.float() / 255.0)
        s = pca.score_samples(x_grey)
        per[c]["pca"] = detection_from_scores(s[~is_anom], s[is_anom])
    return {"per_class": per, "train_s": secs}


# exact-likelihood models of the anomaly rows: CPU-sized overrides and the data they model (their defaults)
LIKELIHOOD = {
    "glow": (["model.width=32", "model.depth=4"], "dequantised 8-bit MNIST"),
    "pixelcnn": (["model.width=32", "model.layers=3"], "dynamically binarised MNIST"),
}


def likelihood_anomaly(args, splits, name: str) -> dict:
    c = args.likelihood_digit
    sizes, data = LIKELIHOOD[name]
    out = Path(args.out) / "heldout" / f"{name}_without_{c}"
    sets = [*sizes, "train.batch_size=64", "train.epochs=100", f"train.max_steps={args.likelihood_steps}"]
    t = time.perf_counter()
    model = train_held_out(name, splits, c, out, sets, quiet=True)
    print(f"[held out {c}, {name}: train {time.perf_counter() - t:.0f} s]", flush=True)
    cfg = load_model(out)[1]
    g = torch.random.get_rng_state()
    torch.manual_seed(0)
    x = Pipeline(cfg.data)(splits.test.images)  # dequantised or binarised once, seed 0
    torch.random.set_rng_state(g)
    s = AnomalyScorer(model, "likelihood").score_samples(x)
    is_anom = splits.test.labels == c
    res = detection_from_scores(s[~is_anom], s[is_anom])
    # bits/dim of the test images: a density on [0, 1] adds log2(256) per dimension for the 8-bit image
    bpd = float(-s.mean() / (784 * np.log(2))) + (8 if cfg.data.dequantize else 0)
    return {"model": name, "digit": c, "settings": " ".join(sizes), "data": data, **res, "test_bpd": bpd,
            "train_s": read_json(out / "trainer_state.json")["time_s"]}


# ---------------------------------------------------------------- main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=5, help="epochs of ae, denoising_ae and vae (default 5)")
    p.add_argument("--bigan-steps", type=int, default=2000, help="BiGAN steps at batch 64 (default 2000)")
    p.add_argument("--anomaly-epochs", type=int, default=2, help="epochs of each held-out ae and vae (default 2)")
    p.add_argument("--likelihood", default="glow,pixelcnn", help="exact-likelihood anomaly models ('' for none)")
    p.add_argument("--likelihood-digit", type=int, default=0, help="their held-out digit (default 0)")
    p.add_argument("--likelihood-steps", type=int, default=2000, help="their steps at batch 64 (default 2000)")
    p.add_argument("--no-anomaly", action="store_true", help="skip the held-out-class protocol")
    p.add_argument("--n", type=int, default=10000, help="test images per application (default 10000)")
    p.add_argument("--restore-n", type=int, default=5000,
                   help="test images of restore, whose diffusion-filling baseline is slow (default 5000)")
    p.add_argument("--pool-n", type=int, default=0,
                   help="labelled training pool of finetune, 'all' being these (default 0: all 60000)")
    p.add_argument("--digits", default="0,1,2,3,4,5,6,7,8,9", help="held-out digits of the anomaly protocol")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/apps_bench")
    p.add_argument("--only", help="comma-separated applications (default all)")
    args = p.parse_args()
    args.digit_list = [int(c) for c in args.digits.split(",")]
    torch.set_num_threads(args.threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)
    t_all = time.perf_counter()
    want = set(args.only.split(",")) if args.only else None
    splits = load("mnist")

    trained, labels, cfgs, budgets = {}, {}, {}, {}
    for folder, label, name, sets, flags, budget in models(args):
        run = compose(name, flags={"data": {"source": "mnist"}, "train": flags}, overrides=sets)
        out = Path(args.out) / folder
        t = time.perf_counter()
        train(run, out, quiet=True)
        model, cfg = load_model(out)
        secs = read_json(out / "trainer_state.json")["time_s"]
        trained[folder], labels[folder], cfgs[folder] = model, label, cfg
        budgets[folder] = f"{label}: {budget}, {secs:.0f} s"
        print(f"[trained {folder}: {secs:.0f} s of training ({time.perf_counter() - t:.0f} s now)]", flush=True)

    def run_app(app, names, n=None, **options):
        if want and app not in want:
            return None
        return {k: apply(app, k, trained[k], cfgs[k], args, n, **options) for k in names}

    encoders = ["ae", "denoising_ae", "vae", "bigan"]
    kinds = ["gaussian", "salt_pepper", "block", "half"]
    rec = {
        "reduce": run_app("reduce", encoders),
        "retrieve": run_app("retrieve", encoders),
        "cluster": run_app("cluster", encoders),
        "restore": run_app("restore", ["ae", "denoising_ae", "vae"], args.restore_n, corruptions=",".join(kinds)),
        "interpolate": run_app("interpolate", ["vae", "ae", "bigan"]),
        "attributes": run_app("attributes", ["vae", "ae"]),
        "finetune": run_app("finetune", encoders, pool_n=args.pool_n or None),
        "swap": run_app("swap", ["ae"], transform="dilate"),
    }
    anomaly = None if args.no_anomaly or (want and "anomaly" not in want) else anomaly_protocol(args, splits)
    exact = [] if want and "anomaly" not in want else [likelihood_anomaly(args, splits, m)
                                                       for m in args.likelihood.split(",") if m]
    wall = time.perf_counter() - t_all

    # ---------------------------------------------------------------- the tables
    n = args.n
    print(f"\n## genlab applications on MNIST, {args.threads} torch thread(s), CPU\n")
    print("Models (trained here, seed 0; time = the Trainer's own clock):\n")
    for b in budgets.values():
        print(f"- {b}")
    print("\nRows in [brackets] are baselines on the same inputs as the models above them: grey = grey levels "
          "(AE, DAE, BiGAN), binarised = the test images binarised once with seed 0 (the VAE's inputs).")
    if rec["reduce"]:
        print(f"\n### reduce: reconstruction from the code vs PCA with as many components\n\nFirst {n} test images; "
              "PCA fitted on the first 10000 training images; MSE, PSNR (per image, capped 100 dB) and SSIM on "
              "pixels in [0, 1].\n")
        print(table_reduce(rec["reduce"], labels, cfgs))
    if rec["retrieve"]:
        print(f"\n### retrieve: label precision of the nearest neighbours\n\nQueries: first {n} test images; database: "
              "first 10000 training images; Euclidean distance; PCA fitted on the database.\n")
        print(table_methods(rec["retrieve"], labels, cfgs, ("p@1", "p@10"), ("p@1", "p@10")))
    if rec["cluster"]:
        print(f"\n### cluster: k-means (10 clusters, 10 restarts) on codes vs on PCA and raw pixels\n\nFitted and "
              f"scored on the first {n} test images; accuracy after Hungarian matching of clusters to digits.\n")
        print(table_methods(rec["cluster"], labels, cfgs, ("nmi", "accuracy"), ("NMI", "accuracy")))
    if rec["restore"]:
        print(f"\n### restore: gain over the corrupted input (restored minus corrupted)\n\nFirst {args.restore_n} test "
              "images (fewer than the others: the diffusion baseline takes about 14 s per 2000 images and mask); "
              "gaussian std 0.3, salt-and-pepper 10 % of pixels, a 40 % block, the bottom half missing; the model "
              "reconstructs once for noise and 5 times with the known pixels pasted back for masks. Classical "
              "baselines: 3x3 median filter for noise, harmonic (diffusion) filling for masks. The DAE was trained "
              "on the gaussian corruption.\n")
        print(table_restore(rec["restore"], labels, cfgs, kinds))
    if rec["interpolate"]:
        print("\n### interpolate: 64 pairs of test images, 10 frames between their codes\n\nDistances: mean "
              "absolute pixel difference on [0, 1]; path ratio = path length / direct distance (1 for a "
              "cross-fade); endpoint PSNR: the ends against the inputs (the cross-fade's are the inputs, 100 = "
              "the cap); midpoint NN RMSE: the middle frame to its nearest of 5000 training images (lower = more "
              "like a real digit).\n")
        print(table_interpolate(rec["interpolate"], labels, cfgs))
    if rec["attributes"]:
        print(f"\n### attributes: latent arithmetic z + alpha v, v = mean code (top 25 %) - mean code (bottom 25 %) "
              f"of 10000 training images\n\nSwept over alpha in [-2, 2] on the first {n} test images; spearman = "
              "rank correlation of alpha and the measured property of the decoded image (thickness 2A/P in "
              "pixels, slant in columns per row); change at +-1 = property(alpha = +-1) - property(0). Baseline: "
              "the same arithmetic on pixels.\n")
        print(table_attributes(rec["attributes"], labels, cfgs, ("thickness", "slant")))
    if rec["finetune"]:
        pool = next(iter(rec["finetune"].values()))["protocol"]["pool"]
        size = int(pool.split()[2])
        print(f"\n### finetune: logistic regression on frozen codes with 100, 1000 and all labels\n\nLabelled pool: "
              f"{pool} ('all' = these {size}); class-balanced subsets, seed 0; standardised features, logistic "
              f"regression C = 1; the encoders frozen; accuracy on the first {n} test images.\n")
        print(table_methods(rec["finetune"], labels, cfgs, ("acc@100", "acc@1000", "acc@all"),
                            ("acc, 100 labels", "acc, 1000 labels", f"acc, all {size}")))
    if rec["swap"]:
        r = rec["swap"]["ae"]
        pr = r["protocol"]
        print(f"\n### swap: shared encoder, one decoder per domain; B = dilate(A)\n\n{pr['model']}; {pr['training']}; "
              f"{pr['scored']}.\n")
        cols = ("a_to_b_psnr_db", "a_to_b_ssim", "b_to_a_psnr_db", "b_to_a_ssim")
        names = {"swap": "swap (the other domain's decoder)", "identity": "[identity: the input unchanged]",
                 "same_decoder": "[same decoder: the input's own domain]"}
        print(md(["method", "A->B PSNR dB", "A->B SSIM", "B->A PSNR dB", "B->A SSIM"],
                 [[names[k], *(r["results"][k][c] for c in cols)] for k in ("swap", "identity", "same_decoder")]))
    if anomaly:
        per = anomaly["per_class"]
        print(f"\n### anomaly: held-out-class protocol (each digit in turn the anomaly)\n\nPer digit c: an AE "
              f"(MLP 784-512-256-16) and a VAE (MLP 784-512-16, dynamic binarisation) trained "
              f"{args.anomaly_epochs} epochs each on the training images without c; all 10000 test images scored, "
              "digit c the positive class. AE: minus the squared reconstruction error; VAE: ELBO (5 posterior "
              "draws) on the test images binarised once; PCA: 16 components fitted on the same normal training "
              "images (grey levels), minus the squared reconstruction error. AUPRC chance = the anomaly fraction.\n")
        rows = []
        for c in args.digit_list:
            d = per[c]
            rows.append([str(c), d["ae"]["auroc"], d["vae"]["auroc"], d["pca"]["auroc"], d["ae"]["auprc"],
                         d["vae"]["auprc"], d["pca"]["auprc"], d["pca"]["auprc_chance"]])
        rows.append([f"**mean of {len(rows)}**", *(float(np.mean([r[i] for r in rows])) for i in range(1, 8))])
        print(md(["held-out digit", "AE AUROC", "VAE AUROC", "PCA-16 AUROC", "AE AUPRC", "VAE AUPRC",
                  "PCA-16 AUPRC", "AUPRC chance"], rows))
        tr = anomaly["train_s"]
        print(f"\nTraining time per held-out model (mean): "
              f"AE {np.mean([tr[f'ae_{c}'] for c in args.digit_list]):.0f} s, "
              f"VAE {np.mean([tr[f'vae_{c}'] for c in args.digit_list]):.0f} s.")
    if exact:
        c = args.likelihood_digit
        print(f"\n### anomaly by exact likelihood, digit {c} held out\n")
        for e in exact:
            print(f"- {e['model']} {e['settings']}: {e['data']}, {args.likelihood_steps} steps at batch 64 "
                  f"({e['train_s']:.0f} s); scored by log p(x) on the test images dequantised or binarised once "
                  f"(seed 0); {e['test_bpd']:.3f} bits/dim over all 10 digits")
        rows = [[f"{e['model']} log p(x)", e["auroc"], e["auprc"]] for e in exact]
        if anomaly and c in anomaly["per_class"]:
            d = anomaly["per_class"][c]
            rows += [["AE reconstruction", d["ae"]["auroc"], d["ae"]["auprc"]],
                     ["VAE ELBO", d["vae"]["auroc"], d["vae"]["auprc"]],
                     ["[PCA-16 reconstruction]", d["pca"]["auroc"], d["pca"]["auprc"]]]
        print("\n" + md([f"held-out digit {c}", "AUROC", "AUPRC"], rows)
              + f"\n\nAUPRC chance {exact[0]['auprc_chance']:.3f}.")
    app_s = {a: round(sum(r["seconds"] for r in v.values())) for a, v in rec.items() if v}
    print(f"\nSeconds per application (all models): {app_s}. Total wall time {wall / 60:.1f} min.")
    write_json(Path(args.out) / "results.json",
               apps._jsonable({"apps": {a: {k: {"results": r["results"], "protocol": r["protocol"]}
                                            for k, r in v.items()} for a, v in rec.items() if v},
                               "anomaly": anomaly, "exact_likelihood": exact, "budgets": budgets, "wall_s": wall}))


if __name__ == "__main__":
    main()

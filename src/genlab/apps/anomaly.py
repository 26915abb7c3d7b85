"""Anomaly detection: a model trained on normal data scores new images; anomalies score low.

    scorer = AnomalyScorer(model, score="likelihood")   # or "reconstruction"; "auto": likelihood when it can
    s = scorer.score_samples(x)                          # N, higher = more normal (scikit-learn's convention)
    detection(scorer, x_normal, x_anomalous)            # {"auroc", "auprc"}, the anomalies the positive class

Scores: likelihood = `model.log_prob(x)` when the model has it, else the ELBO (`model.elbo`, a VAE's lower
bound on log p(x), averaged over `samples` posterior draws); reconstruction = minus the squared error of
`model.reconstruct(x)` summed over pixels in [0, 1]. The baseline, `PCAAnomalyScorer(k)`, scores by the
squared error of the reconstruction from the top k principal components of the normal training images.

The held-out-class protocol (MNIST: each digit in turn the anomaly, one model per digit trained without it):
`held_out_class(splits, c)` drops class c from the training split, `write_npz` stores the result for
`genlab train --data npz:FILE`, `train_held_out` does both and trains, and `held_out_class_benchmark` runs the
whole loop with a training function of your choosing. From the command line, after such a run:
`genlab apply anomaly DIR --anomaly-class c`.
"""
from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from ..data import ImageSet, Splits
from ..data.transforms import as_unit
from ..errors import UserError
from .metrics import auprc, auroc
from .reduce import PCAReducer
from .registry import AppContext, app, batched, label_args, model_device, model_name, option, positive_int, require

SCORES = ("reconstruction", "likelihood")


class AnomalyScorer:
    """Scores images by a trained model: higher = more normal."""

    def __init__(self, model, score: str = "auto", samples: int = 5, batch_size: int = 256,
                 what: str = "anomaly detection"):
        if score not in ("auto", *SCORES):
            raise UserError(f"the anomaly score must be auto, reconstruction or likelihood, got '{score}'")
        has_lik = hasattr(model, "log_prob") or hasattr(model, "elbo")
        if score == "auto" and not has_lik and not hasattr(model, "reconstruct"):
            raise UserError(f"{what} needs a model that can reconstruct images (`reconstruct`) or evaluate log p(x) "
                            f"(`log_prob`) or the ELBO (`elbo`), and '{model_name(model)}' can do none of these")
        if score == "auto":
            score = "likelihood" if has_lik else "reconstruction"
        if score == "likelihood" and not has_lik:
            raise UserError(f"{what} by likelihood needs a model that can evaluate log p(x) (`log_prob`) or the "
                            f"ELBO (`elbo`), and '{model_name(model)}' can do neither")
        if score == "reconstruction":
            require(model, "reconstruct", f"{what} by reconstruction error")
            if getattr(model, "invertible", False):
                raise UserError(f"{what} by reconstruction error is meaningless for '{model_name(model)}': an "
                                f"invertible model reconstructs every image up to float round-off; score by likelihood")
        self.model, self.score, self.samples, self.batch_size = model, score, samples, batch_size

    @property
    def description(self) -> str:
        if self.score == "reconstruction":
            return "minus the squared reconstruction error summed over pixels in [0, 1]"
        if hasattr(self.model, "log_prob"):
            return "log p(x) in nats (model.log_prob)"
        return f"the ELBO in nats (a lower bound on log p(x)), mean of {self.samples} posterior draws"

    def fit(self, x=None, y=None) -> "AnomalyScorer":
        """The model is trained already (on normal data): nothing to fit."""
        return self

    def _one(self, xb: torch.Tensor, yb: torch.Tensor | None) -> torch.Tensor:
        m, lab = self.model, label_args(self.model, yb)
        if self.score == "reconstruction":
            r = m.reconstruct(xb, *lab)
            return -(as_unit(r, m.info.range) - as_unit(xb, m.info.range)).pow(2).flatten(1).sum(1)
        if hasattr(m, "log_prob"):
            return m.log_prob(xb, *lab)
        return torch.stack([m.elbo(xb, *lab) for _ in range(self.samples)]).mean(0)

    def score_samples(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return batched(self._one, x, y, self.batch_size, model_device(self.model))


class PCAAnomalyScorer:
    """The baseline: minus the squared error of the reconstruction from the top k principal components."""

    description = "minus the squared PCA reconstruction error summed over pixels in [0, 1]"

    def __init__(self, n_components: int, value_range: str = "01", seed: int = 0):
        self.pca = PCAReducer(n_components, value_range, seed)
        self.value_range = value_range

    def fit(self, x: torch.Tensor, y=None) -> "PCAAnomalyScorer":
        self.pca.fit(x)
        return self

    def score_samples(self, x: torch.Tensor, y=None) -> torch.Tensor:
        r = self.pca.reconstruct(x)
        return -(as_unit(r, self.value_range) - as_unit(x.float().cpu(), self.value_range)).pow(2).flatten(1).sum(1)


def detection(scorer, x_normal: torch.Tensor, x_anomalous: torch.Tensor, y_normal: torch.Tensor | None = None,
              y_anomalous: torch.Tensor | None = None) -> dict[str, float]:
    """AUROC and AUPRC of telling anomalies (the positive class) from normal images by minus the score."""
    s_n, s_a = scorer.score_samples(x_normal, y_normal), scorer.score_samples(x_anomalous, y_anomalous)
    return detection_from_scores(s_n, s_a)


def detection_from_scores(normal: torch.Tensor, anomalous: torch.Tensor) -> dict[str, float]:
    labels = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    anomaly = -torch.cat([normal, anomalous]).double().numpy()
    return {"auroc": auroc(labels, anomaly), "auprc": auprc(labels, anomaly),
            "auprc_chance": float(len(anomalous) / len(labels))}


# ---------------------------------------------------------------- data filters, the held-out-class protocol
def _mask(images: ImageSet, classes: Iterable[int]) -> torch.Tensor:
    if images.labels is None:
        raise UserError("selecting images by class needs labelled data, and this dataset has no labels")
    return torch.isin(images.labels, torch.as_tensor(list(classes), dtype=torch.long))


def drop_classes(images: ImageSet, classes: Iterable[int]) -> ImageSet:
    """The images whose label is not in `classes` (same class names)."""
    keep = ~_mask(images, classes)
    return ImageSet(images.images[keep], images.labels[keep], images.classes)


def keep_classes(images: ImageSet, classes: Iterable[int]) -> ImageSet:
    """The images whose label is in `classes`."""
    keep = _mask(images, classes)
    return ImageSet(images.images[keep], images.labels[keep], images.classes)


def held_out_class(splits: Splits, classes: int | Iterable[int]) -> Splits:
    """The splits with `classes` removed from the training split (the test split whole, anomalies included)."""
    classes = [classes] if isinstance(classes, int) else list(classes)
    return Splits(drop_classes(splits.train, classes), splits.test, f"{splits.name} without class {classes}")


def write_npz(splits: Splits, path: str | Path) -> Path:
    """Store splits as x_train/y_train/x_test/y_test (uint8 N x C x H x W), readable as `--data npz:PATH`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"x_train": splits.train.images.numpy()}
    if splits.train.labels is not None:
        arrays["y_train"] = splits.train.labels.numpy()
    if splits.test is not None:
        arrays["x_test"] = splits.test.images.numpy()
        if splits.test.labels is not None:
            arrays["y_test"] = splits.test.labels.numpy()
    np.savez_compressed(path, **arrays)
    return path


def train_held_out(model: str, splits: Splits, classes: int | Iterable[int], out: str | Path,
                   settings: Iterable[str] = (), quiet: bool = True):
    """Train `model` on the splits without `classes` into run folder `out` (data in out/data.npz); -> the
    trained model in eval mode. `settings`: --set style overrides, e.g. ["train.epochs=10", "data.binarize=dynamic"]."""
    from ..api import train
    from ..run import compose, load_model

    out = Path(out)
    data = write_npz(held_out_class(splits, classes), out / "data.npz")
    run = compose(model, None, {"data": {"source": f"npz:{data}"}}, list(settings))
    train(run, out, quiet=quiet)
    return load_model(out, device="cuda" if torch.cuda.is_available() else "cpu")[0]


def held_out_class_benchmark(fit: Callable[[ImageSet, int], object], splits: Splits, pipeline: Callable,
                             classes: Iterable[int] | None = None, score: str = "auto", samples: int = 5,
                             n: int | None = None, seed: int = 0) -> dict:
    """Each class in turn the anomaly: `fit(train_without_c, c)` returns a model trained on the other classes;
    its scores tell class c's test images from the rest. `pipeline` maps uint8 images to the model's floats
    (`genlab.data.Pipeline(data_config)`). Also scores the PCA baseline (as many components as the model's
    code, or 32 without one: `pca_components`) fitted on the same training images.
    -> {"per_class": {c: {"model": {auroc, auprc}, "pca": {...}}}, "mean": {"model": ..., "pca": ...}}."""
    if splits.test is None or splits.test.labels is None:
        raise UserError("the held-out-class protocol needs a labelled test split")
    classes = list(range(splits.train.num_classes)) if classes is None else list(classes)
    test = splits.test.subset(n)
    torch.manual_seed(seed)
    x_test = pipeline(test.images)
    per: dict = {}
    for c in classes:
        train = drop_classes(splits.train, [c])
        model = fit(train, c)
        is_anom = test.labels == c
        scorer = AnomalyScorer(model, score, samples)
        k = pca_components(_code_size(model, x_test[:1]), x_test[0].numel(), len(train))
        torch.manual_seed(seed)
        pca = PCAAnomalyScorer(k, model.info.range, seed).fit(pipeline(train.images))
        per[c] = {name: detection(s, x_test[~is_anom], x_test[is_anom])
                  for name, s in (("model", scorer), ("pca", pca))}
    mean = {name: {m: float(np.mean([per[c][name][m] for c in classes])) for m in ("auroc", "auprc")}
            for name in ("model", "pca")}
    return {"per_class": per, "mean": mean}


def _code_size(model, x: torch.Tensor) -> int | None:
    if not hasattr(model, "encode") or getattr(model, "conditional", False):
        return getattr(getattr(model, "cfg", None), "latent_dim", None)
    with torch.no_grad():
        return int(model.encode(x.to(model_device(model))).flatten(1).shape[1])


# ---------------------------------------------------------------- the application
def _parse_classes(spec: str, option: str = "--anomaly-class") -> list[int]:
    try:
        return sorted({int(c) for c in str(spec).split(",") if c.strip()})
    except ValueError:
        raise UserError(f"{option} takes class numbers separated by commas, e.g. 3 or 3,5; got '{spec}'") from None


def _histogram(normal: torch.Tensor, anomalous: torch.Tensor, path, what: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a_n, a_a = (-normal).numpy(), (-anomalous).numpy()
    both = np.r_[a_n, a_a]
    bins = np.linspace(np.quantile(both, 0.005), np.quantile(both, 0.995), 50)
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.hist(a_n, bins=bins, alpha=0.6, density=True, label=f"normal ({len(a_n)})")
    ax.hist(a_a, bins=bins, alpha=0.6, density=True, label=f"anomalous ({len(a_a)})")
    ax.set_xlabel(textwrap.fill(f"anomaly score: minus {what}", 72), fontsize=7)
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def _anomalies(ctx: AppContext):
    """(x_normal, y_normal, x_anomalous, y_anomalous, protocol entries) as the options ask."""
    anomaly_spec, normal_spec, spec = ctx.option("anomaly_class"), ctx.option("normal_class"), ctx.option("anomalies")
    if sum(o is not None for o in (anomaly_spec, normal_spec, spec)) != 1:
        raise UserError("genlab apply anomaly needs exactly one of --anomaly-class C (the test images of class C "
                        "are the anomalies), --normal-class C (those of every other class are) and --anomalies SPEC "
                        "(images of another dataset are)")
    if spec is None:
        x, y, _ = ctx.tensors()
        option = "--anomaly-class" if anomaly_spec is not None else "--normal-class"
        if y is None:
            raise UserError(f"{option} needs labelled test images, and this dataset has none; use --anomalies SPEC")
        named = _parse_classes(anomaly_spec if anomaly_spec is not None else normal_spec, option)
        bad = [c for c in named if not (y == c).any()]
        if bad:
            raise UserError(f"class {bad[0]} has no images among the first {len(y)} of the {ctx.split} split")
        is_named = torch.isin(y, torch.tensor(named))
        is_anom = is_named if anomaly_spec is not None else ~is_named
        if is_anom.all() or not is_anom.any():
            raise UserError(f"{option} {','.join(map(str, named))} leaves no "
                            f"{'normal' if is_anom.all() else 'anomalous'} test images to compare with")
        classes = sorted(int(c) for c in y[is_anom].unique())
        train = ctx.data("train")
        seen = bool(torch.isin(train.labels, torch.tensor(classes)).any()) if train.labels is not None else None
        proto = {"anomalies": f"{ctx.split} images of class {','.join(map(str, classes))}",
                 "normal": f"{ctx.split} images of class {','.join(str(int(c)) for c in y[~is_anom].unique())}",
                 "anomaly_class_in_training": seen}
        if seen:
            proto["note"] = ("the model saw the anomaly class in training; for the held-out-class protocol train on "
                             "data without it (genlab.apps.anomaly.train_held_out)")
        return x[~is_anom], y[~is_anom], x[is_anom], y[is_anom], proto
    if getattr(ctx.model, "conditional", False):
        raise UserError("a conditional model needs the labels of the anomalies, which another dataset does not share; "
                        "use --anomaly-class")
    from ..data import load, prepare

    other = load(spec)
    part = other.test if other.test is not None else other.train
    part = prepare(part, ctx.run.data)
    if part.shape != ctx.info.shape:
        raise UserError(f"the anomalies from '{spec}' are {part.shape} images after the run's transforms, "
                        f"but the model takes {ctx.info.shape}")
    x, y, _ = ctx.tensors()
    xa, ya, _ = ctx.tensors(data=part)
    proto = {"anomalies": f"first {len(xa)} {'test' if other.test is not None else 'train'} images of {spec}",
             "normal": f"first {len(x)} images of the {ctx.split} split"}
    if y is not None and len(y.unique()) > 1:  # e.g. functional and defective cells: all counted as normal here
        proto["note"] = (f"the {ctx.split} split is labelled ({len(y.unique())} classes) and every one of its images "
                         f"counts as normal here, labelled defects included; --normal-class C counts only class C as "
                         f"normal")
    return x, y, xa, ya, proto


@app("anomaly", (),
     "anomaly detection: AUROC and AUPRC by reconstruction error or likelihood, against a PCA-reconstruction baseline",
     options=(option("--anomaly-class", metavar="C",
                     help="class number(s), e.g. 3 or 3,5: their test images are the anomalies"),
              option("--normal-class", metavar="C",
                     help="class number(s): their test images are normal, those of every other class the anomalies"),
              option("--anomalies", metavar="SPEC", help="a --data spec whose images are the anomalies, e.g. npz:FILE"),
              option("--score", choices=SCORES, help="score by this only (default: every one the model supports)"),
              option("--samples", type=positive_int, help="posterior draws averaged in the ELBO score (default 5)"),
              option("--fit-n", type=positive_int,
                     help="training images the PCA baseline is fitted on (default 10000)")))
def run(ctx: AppContext) -> dict:
    model = ctx.model
    x_n, y_n, x_a, y_a, proto = _anomalies(ctx)
    want = [ctx.option("score")] if ctx.option("score") else [
        s for s in SCORES if (s == "reconstruction" and hasattr(model, "reconstruct")
                              and not getattr(model, "invertible", False))
        or (s == "likelihood" and (hasattr(model, "log_prob") or hasattr(model, "elbo")))]
    if not want:
        raise UserError(f"genlab apply anomaly needs a model that can reconstruct images (`reconstruct`) or evaluate "
                        f"log p(x) (`log_prob`) or the ELBO (`elbo`), and '{model_name(model)}' can do none of these")
    scorers = {f"model:{s}": AnomalyScorer(model, s, ctx.option("samples", 5), ctx.batch_size, "genlab apply anomaly")
               for s in want}
    x_fit, _, _ = ctx.tensors("train", ctx.option("fit_n", 10000))
    dim = x_n[0].numel()
    code = _code_size(model, x_n[:1])
    k = pca_components(code, dim, len(x_fit))
    scorers["pca:reconstruction"] = PCAAnomalyScorer(k, ctx.info.range, ctx.seed).fit(x_fit)
    results, scores = {}, {}
    for name, s in scorers.items():
        scores[name] = (s.score_samples(x_n, y_n), s.score_samples(x_a, y_a))
        results[name] = detection_from_scores(*scores[name])
    model_scores = [n for n in scorers if n.startswith("model:")]
    head = max(model_scores, key=lambda n: results[n]["auroc"])  # the figures show the model's best score
    s_n, s_a = scores[head]
    pool_x, pool_s = torch.cat([x_n, x_a]), torch.cat([s_n, s_a])
    is_anom = torch.cat([torch.zeros(len(x_n), dtype=torch.bool), torch.ones(len(x_a), dtype=torch.bool)])
    labels = [_label(y, len(x)) for y, x in ((y_n, x_n), (y_a, x_a))]
    pool_y = labels[0] + labels[1]
    order = pool_s.argsort(descending=True)  # most normal first
    m = min(8, len(order) // 2) or 1
    picks = torch.cat([order[:m], order.flip(0)[:m]])
    figures = [_extremes(ctx, pool_x[picks], [pool_y[i] for i in picks], pool_s[picks], is_anom[picks], m, head),
               _histogram(s_n, s_a, ctx.path("scores.png"), scorers[head].description),
               _scores_csv(ctx.path("scores.csv"), pool_y, is_anom, {n: torch.cat(v) for n, v in scores.items()})]
    proto = ctx.protocol(**proto, n_normal=len(x_n), n_anomalous=len(x_a), positive="the anomalies",
                         code_size=code, baseline=f"PCA with {scorers['pca:reconstruction'].pca.n_components_} "
                         f"components of {dim} dimensions, fitted on {len(x_fit)} training images",
                         scores={n: s.description for n, s in scorers.items()},
                         figures=f"extremes.png: the {m} most normal (top) and the {m} most anomalous (bottom) test "
                                 f"images by {head}, the score with the best AUROC, each with its true class and "
                                 f"score; scores.png: histograms of that score; scores.csv: every image's scores")
    return {"results": results, "protocol": proto, "figures": figures}


PCA_DEFAULT = 32  # the baseline's components when the model's code gives no size


def pca_components(code: int | None, dim: int, n_fit: int) -> int:
    """The PCA baseline's rank: the model's code size, unless that code is no bottleneck (a flow's is the image
    itself), then PCA_DEFAULT; always below the dimension and the fitted count, since PCA at full rank is the
    identity and its reconstruction error is nothing but round-off."""
    k = code if code and code < dim else PCA_DEFAULT
    return max(1, min(k, dim - 1, n_fit - 1))


def _label(y: torch.Tensor | None, n: int) -> list[str]:
    return [str(int(v)) for v in y] if y is not None else ["-"] * n


def _scores_csv(path: Path, labels: list[str], is_anom: torch.Tensor, scores: dict[str, torch.Tensor]) -> str:
    """One row per test image: its position, true class, whether it counts as an anomaly, and each score (higher
    = more normal)."""
    import csv
    import io

    from ..files import atomic_write

    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["index", "class", "anomaly", *scores])
    for i, (lab, a) in enumerate(zip(labels, is_anom.tolist())):
        w.writerow([i, lab, int(a), *(f"{float(s[i]):.6g}" for s in scores.values())])
    atomic_write(path, lambda tmp: tmp.write_text(out.getvalue()))
    return str(path)


def _extremes(ctx: AppContext, x: torch.Tensor, labels: list[str], scores: torch.Tensor, is_anom: torch.Tensor,
              m: int, score_name: str) -> str:
    """Two rows of images, the most normal and the most anomalous, each titled with its true class, whether it
    counts as an anomaly (A) or as normal (N), and its score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..data import to_unit

    images = to_unit(x, ctx.info).permute(0, 2, 3, 1).cpu().numpy()  # N x H x W x C
    fig, axes = plt.subplots(2, m, figsize=(1.1 * m + 0.6, 2.8), dpi=120, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < len(images):
            img = images[i]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{labels[i]} {'A' if is_anom[i] else 'N'}\n{float(scores[i]):.3g}", fontsize=6,
                         color="firebrick" if is_anom[i] else "black")
        ax.axis("off")
    fig.suptitle(f"most normal (top) and most anomalous (bottom) by {score_name}: class, A/N, score", fontsize=7)
    fig.tight_layout()
    path = ctx.path("extremes.png")
    fig.savefig(path)
    plt.close(fig)
    return str(path)

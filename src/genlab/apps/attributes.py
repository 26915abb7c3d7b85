"""Latent arithmetic: attribute vectors in a model's code space, added to any image's code, measured by how the
attribute moves on the decoded images, against the same arithmetic on raw pixels.

    v = AttributeVector(LatentReducer(model)).fit(x, has).vector_     # mean code(has) - mean code(not has)
    AttributeVector(...).sweep(x, alphas)                             # B x A x C x H x W: decode(E(x) + alpha v)
    thickness(x), slant(x), ink(x)                                    # properties measured on [0, 1] images

An attribute is a labelled class (`class:K`: images of class K against the others) or a measured property,
the top `quantile` of the images by the property against the bottom `quantile`. Properties, on the channel
mean u of an image in [0, 1], with ink b = [u > 1/2]:
    ink        mean_pixels u                                            (ink mass)
    thickness  2 A / P, A = sum b the ink area, P the number of unit edges between ink and background
               (outside the image counts as background): wL / (w + L) for a w x L bar, about the stroke width
               w for long strokes; 0 without ink. No skeleton needed.
    slant      -cov(col, row) / var(row) under the weights u (second moments; rows grow downwards): the
               horizontal shift per row of height, positive when the top leans right; 1 for '/', 0 upright
    class:K    p(K | image) of a logistic regression on pixels fitted to the labelled fit images

Numbers per attribute, for the latent arithmetic and for the baseline (the same on pixels, x + alpha v_pixels),
over the sweep alpha in [-alpha_max, alpha_max] (always holding -1, 0 and 1), p(alpha) the property of the
decoded image:
    spearman        Spearman's rank correlation of alpha and p(alpha) along each image's sweep, averaged
                    (1: the property rises steadily with alpha; a flat sweep counts 0)
    change_at_+1    mean over images of p(+1) - p(0)        change_at_-1   the same at alpha = -1
    real_gap        mean p over the real images with the attribute minus over those without (the change that
                    alpha = +1 aims at: the same for both rows)
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data.transforms import as_unit
from ..errors import UserError, unknown
from .reduce import LatentReducer, PixelSpace
from .registry import AppContext, app, option, positive_int

PROPERTIES = ("thickness", "slant", "ink")


# ---------------------------------------------------------------- properties of images in [0, 1]
def _gray(x: torch.Tensor) -> torch.Tensor:
    return x.float().mean(1)  # B x H x W


def ink(x: torch.Tensor) -> torch.Tensor:
    """Ink mass: the mean pixel value of each image; B x C x H x W in [0, 1] -> B."""
    return _gray(x).flatten(1).mean(1)


def thickness(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Stroke thickness 2A / P from the ink area A and its boundary length P (module docstring); -> B."""
    b = (_gray(x) > threshold).float()  # B x H x W
    p = F.pad(b, (1, 1, 1, 1))
    edges = (p[:, 1:, :] - p[:, :-1, :]).abs().flatten(1).sum(1) + (p[:, :, 1:] - p[:, :, :-1]).abs().flatten(1).sum(1)
    area = b.flatten(1).sum(1)
    return torch.where(edges > 0, 2 * area / edges.clamp_min(1), torch.zeros_like(area))


def slant(x: torch.Tensor) -> torch.Tensor:
    """The shear of the ink: -cov(col, row) / var(row) under the pixel weights; 0 without ink; -> B."""
    u = _gray(x).double()
    _, h, w = u.shape
    rows = torch.arange(h, dtype=u.dtype).view(1, h, 1)
    cols = torch.arange(w, dtype=u.dtype).view(1, 1, w)
    mass = u.sum((1, 2))
    safe = mass.clamp_min(1e-12)
    mr = (u * rows).sum((1, 2)) / safe
    mc = (u * cols).sum((1, 2)) / safe
    dr, dc = rows - mr.view(-1, 1, 1), cols - mc.view(-1, 1, 1)
    var_r = (u * dr * dr).sum((1, 2)) / safe
    cov = (u * dr * dc).sum((1, 2)) / safe
    out = torch.where((mass > 1e-12) & (var_r > 1e-12), -cov / var_r.clamp_min(1e-12), torch.zeros_like(cov))
    return out.float()


class ClassProbe:
    """p(class K | image) by a multinomial logistic regression on [0, 1] pixels (scikit-learn)."""

    def __init__(self, klass: int, max_iter: int = 200, seed: int = 0):
        self.klass, self.max_iter, self.seed = klass, max_iter, seed
        self.clf = None

    def fit(self, x01: torch.Tensor, y: torch.Tensor) -> "ClassProbe":
        from sklearn.linear_model import LogisticRegression

        if not (y == self.klass).any():
            raise UserError(f"class {self.klass} has no images among the labelled images the attribute is fitted on")
        self.clf = LogisticRegression(max_iter=self.max_iter, random_state=self.seed)
        self.clf.fit(x01.flatten(1).double().numpy(), y.numpy())
        return self

    def __call__(self, x01: torch.Tensor) -> torch.Tensor:
        col = list(self.clf.classes_).index(self.klass)
        return torch.from_numpy(self.clf.predict_proba(x01.flatten(1).double().numpy())[:, col]).float()


def measure(name: str, probe: ClassProbe | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The property function of an attribute name (images in [0, 1] -> B values)."""
    if name.startswith("class:"):
        if probe is None:
            raise UserError("a class attribute is measured by a classifier, and none was fitted")
        return probe
    return {"thickness": thickness, "slant": slant, "ink": ink}[name]


def parse_attribute(spec: str) -> str:
    spec = spec.strip()
    if spec.startswith("class:"):
        try:
            return f"class:{int(spec[6:])}"
        except ValueError:
            raise UserError(f"a class attribute is written class:K with K a class number, got '{spec}'") from None
    if spec not in PROPERTIES:
        raise unknown("attribute", spec, [*PROPERTIES, "class:K"])
    return spec


def split_by(values: torch.Tensor, quantile: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """(has, has_not) boolean masks: the top and the bottom `quantile` of the values."""
    if not 0 < quantile <= 0.5:
        raise UserError(f"the attribute quantile must lie in (0, 0.5], got {quantile}")
    v = values.double()
    lo, hi = torch.quantile(v, quantile), torch.quantile(v, 1 - quantile)
    has, has_not = v >= hi, v <= lo
    if not has.any() or not has_not.any() or bool((has & has_not).all()):
        raise UserError("the attribute does not vary over these images, so they cannot be split into with and without")
    return has & ~has_not, has_not & ~has


class AttributeVector:
    """v = mean code of the images with an attribute minus the mean code of those without, for any reducer
    (`LatentReducer(model)` for latent arithmetic, `PixelSpace()` for the pixel baseline)."""

    def __init__(self, reducer):
        self.reducer = reducer
        self.vector_: torch.Tensor | None = None

    def fit(self, x: torch.Tensor, has: torch.Tensor, has_not: torch.Tensor | None = None,
            y: torch.Tensor | None = None) -> "AttributeVector":
        has = has.bool()
        has_not = ~has if has_not is None else has_not.bool()
        if not has.any() or not has_not.any():
            raise UserError("an attribute vector needs images with the attribute and images without it")
        z = self.reducer.fit(x, y).transform(x, y).double()
        self.vector_ = (z[has].mean(0) - z[has_not].mean(0)).float()
        return self

    def shift(self, z: torch.Tensor, alphas) -> torch.Tensor:
        """Codes B x d -> B x A x d, z + alpha v for each alpha."""
        if self.vector_ is None:
            raise UserError("the attribute vector is not fitted yet: call fit(x, has) first")
        a = torch.as_tensor(alphas, dtype=z.dtype).view(1, -1, 1)
        return z.unsqueeze(1) + a * self.vector_.to(z.dtype).view(1, 1, -1)

    def sweep(self, x: torch.Tensor, alphas, y: torch.Tensor | None = None) -> torch.Tensor:
        """decode(encode(x) + alpha v): B x A x C x H x W in the model's range."""
        z = self.shift(self.reducer.transform(x, y).float(), alphas)  # B x A x d
        a = z.shape[1]
        yy = None if y is None else y.repeat_interleave(a)
        out = self.reducer.inverse_transform(z.flatten(0, 1), yy)
        return out.view(len(x), a, *out.shape[1:])


def rank_correlation(alphas, props: torch.Tensor) -> float:
    """Mean over rows of Spearman's rho between alphas and each row of props (B x A); flat rows count 0."""
    from scipy.stats import rankdata

    ra = rankdata(np.asarray(alphas, dtype=np.float64))
    rp = rankdata(props.double().numpy(), axis=1)
    ra, rp = ra - ra.mean(), rp - rp.mean(1, keepdims=True)
    den = np.sqrt((ra**2).sum() * (rp**2).sum(1))
    rho = np.where(den > 0, (rp * ra).sum(1) / np.where(den > 0, den, 1), 0.0)
    return float(rho.mean())


def sweep_scores(alphas, props: torch.Tensor, real_gap: float) -> dict[str, float]:
    """The numbers of the module docstring from props (B x A, one column per alpha)."""
    al = [float(a) for a in alphas]
    i0, ip, im = al.index(0.0), al.index(1.0), al.index(-1.0)
    return {"spearman": rank_correlation(al, props), "change_at_+1": float((props[:, ip] - props[:, i0]).mean()),
            "change_at_-1": float((props[:, im] - props[:, i0]).mean()), "real_gap": real_gap}


def alpha_grid(alpha_max: float = 2.0, steps: int = 9) -> list[float]:
    """linspace(-alpha_max, alpha_max, steps) with -1, 0 and 1 added; sorted."""
    if alpha_max <= 0:
        raise UserError(f"--alpha-max must be positive, got {alpha_max}")
    grid = {round(float(a), 6) for a in np.linspace(-alpha_max, alpha_max, max(steps, 2))} | {-1.0, 0.0, 1.0}
    return sorted(grid)


def _plot(curves: dict, alphas: list[float], path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(3.6 * len(curves), 3.2), dpi=110, squeeze=False)
    for ax, (name, c) in zip(axes[0], curves.items()):
        for method, mean in c["sweeps"].items():
            ax.plot(alphas, mean, marker="o", ms=3, label=method)
        ax.axhline(c["with"], ls="--", lw=0.8, color="tab:green", label="real, with")
        ax.axhline(c["without"], ls="--", lw=0.8, color="tab:red", label="real, without")
        ax.set_xlabel("alpha")
        ax.set_ylabel(f"mean {name} of the decoded images")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


@app("attributes", ("encode", "decode"),
     "latent arithmetic: attribute vectors (mean code with minus without) swept over alpha; the measured "
     "property moves against pixel arithmetic",
     options=(option("--attributes", metavar="LIST",
                     help="comma-separated, from thickness, slant, ink, class:K (default thickness,slant)"),
              option("--alpha-max", type=float, help="the sweep runs over [-A, A] (default 2)"),
              option("--steps", type=positive_int, help="alphas in the sweep, besides -1, 0, 1 (default 9)"),
              option("--quantile", type=float,
                     help="top and bottom fraction of images by a property that have / lack it (default 0.25)"),
              option("--fit-n", type=positive_int,
                     help="training images the attribute vectors are fitted on (default 10000)")))
def run(ctx: AppContext) -> dict:
    model, rng = ctx.model, ctx.info.range
    names = [parse_attribute(s) for s in str(ctx.option("attributes", "thickness,slant")).split(",") if s.strip()]
    if not names:
        raise UserError("--attributes takes names separated by commas, e.g. thickness,slant or class:3")
    names = list(dict.fromkeys(names))
    alphas = alpha_grid(ctx.option("alpha_max", 2.0), ctx.option("steps", 9))
    q = ctx.option("quantile", 0.25)
    cond = getattr(model, "conditional", False)
    x_fit, y_fit, _ = ctx.tensors("train", ctx.option("fit_n", 10000))
    x, y, _ = ctx.tensors()
    yf, yx = (y_fit, y) if cond else (None, None)
    latent = LatentReducer(model, ctx.batch_size, "genlab apply attributes")
    z_fit = latent.fit(x_fit, yf).transform(x_fit, yf)
    fit01 = as_unit(x_fit, rng)
    results, curves, figures, split_desc = {}, {}, [], {}
    m, chunk = min(6, len(x)), max(1, ctx.batch_size)
    for name in names:
        probe = None
        if name.startswith("class:"):
            if y_fit is None:
                raise UserError("a class attribute needs labelled images, and this dataset has none")
            k = int(name[6:])
            probe = ClassProbe(k, seed=ctx.seed).fit(fit01[:5000], y_fit[:5000])
            has, has_not = y_fit == k, y_fit != k
            split_desc[name] = f"class {k} against the other classes"
        prop = measure(name, probe)
        p_fit = prop(fit01)
        if probe is None:
            has, has_not = split_by(p_fit, q)
            split_desc[name] = f"top {q:g} of the fit images by {name} against the bottom {q:g}"
        gap = float(p_fit[has].double().mean() - p_fit[has_not].double().mean())
        curves[name] = {"with": float(p_fit[has].mean()), "without": float(p_fit[has_not].mean()), "sweeps": {}}
        for method, reducer in (("latent", latent), ("pixels", PixelSpace(rng))):
            av = AttributeVector(reducer)
            if method == "latent":  # the codes of the fit images are computed once
                av.vector_ = (z_fit[has].double().mean(0) - z_fit[has_not].double().mean(0)).float()
            else:
                av.fit(x_fit, has, has_not)
            props, shown = [], None
            for i in range(0, len(x), chunk):
                yb = None if yx is None else yx[i : i + chunk]
                s = av.sweep(x[i : i + chunk], alphas, yb)
                props.append(prop(as_unit(s.flatten(0, 1), rng)).view(len(s), len(alphas)))
                if shown is None:
                    shown = s[:m]
            props = torch.cat(props)
            results[f"{name}/{method}"] = sweep_scores(alphas, props, gap)
            curves[name]["sweeps"][method] = props.double().mean(0).tolist()
            if method == "latent":
                tag = name.replace(":", "")
                figures.append(ctx.save_images(shown.flatten(0, 1), f"attribute_{tag}.png", nrow=len(alphas)))
    figures.append(_plot(curves, alphas, ctx.path("sweep.png")))
    proto = ctx.protocol(split=ctx.split, n=len(x), attributes=split_desc, alphas=alphas,
                         code_size=latent.n_components_, fit=f"the first {len(x_fit)} training images",
                         baseline="the same arithmetic on raw pixels: x + alpha (mean image with - mean image "
                                  "without)",
                         properties="thickness 2A/P of the ink (u > 1/2); slant -cov(col, row)/var(row) of the ink; "
                                    "ink the mean pixel; class:K p(K) of a pixel logistic regression",
                         figures="attribute_NAME.png: one image per row, alpha growing to the right; sweep.png: the "
                                 "mean property over alpha")
    if cond:
        proto["note"] = "a conditional model encodes and decodes with the true labels"
    return {"results": results, "protocol": proto, "figures": figures}

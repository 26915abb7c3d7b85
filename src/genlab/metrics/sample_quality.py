"""Sample-quality metrics of a generative model against a reference split: FID, KID, IS, precision/recall.

Every result carries the protocol: extractor (with a fingerprint of its weights) and preprocessing,
number of generated samples, reference split and size. Numbers move with all of these.
"""
from __future__ import annotations

from .frechet import fid_from_features
from .inception_score import inception_score
from .kid import kernel_inception_distance
from .precision_recall import density_coverage, precision_recall
from .registry import MetricContext, metric


def feature_protocol(ctx: MetricContext, n_ref: int) -> dict:
    ext = ctx.extractor()
    return {"extractor": ext.name, "weights": ext.identity, "preprocess": ext.preprocess, "dim": ext.dim,
            "precision": ext.precision, "n_samples": ctx.n, "reference": f"{ctx.run.data.source} {ctx.split}", "n_reference": n_ref,
            "sample_seed": ctx.seed, **reference_transforms(ctx)}


def reference_transforms(ctx: MetricContext) -> dict:
    """How the real images were prepared: two references of one split that differ here are different protocols
    (a statically binarised run's test images are not the grey ones)."""
    d = ctx.run.data
    return {"binarization": d.binarize, "resize": d.resize, "pad": d.pad, "grayscale": d.grayscale}


@metric("fid", "sample", "Frechet distance between feature Gaussians of samples and real images (Heusel et al. 2017)",
        uses=("features",))
def fid(ctx: MetricContext) -> dict:
    real = ctx.reference_features()
    return {"fid": fid_from_features(real, ctx.sample_features()), "protocol": feature_protocol(ctx, len(real))}


@metric("kid", "sample", "kernel distance: unbiased MMD^2, cubic polynomial kernel, mean and std over subsets",
        uses=("features",))
def kid(ctx: MetricContext) -> dict:
    real, fake = ctx.reference_features(), ctx.sample_features()
    size = min(1000, len(real), len(fake))
    mean, std = kernel_inception_distance(real, fake, subsets=100, subset_size=size, seed=ctx.seed)
    return {"kid": mean, "kid_std": std,
            "protocol": {**feature_protocol(ctx, len(real)), "subsets": 100, "subset_size": size}}


@metric("is", "sample", "Inception Score exp(E KL(p(y|x) || p(y))) under the domain classifier, 10 splits",
        uses=("classifier",))
def inception_score_metric(ctx: MetricContext) -> dict:
    clf = ctx.extractor("classifier")
    mean, std = inception_score(clf.probs(ctx.samples(), ctx.progress), splits=10)
    return {"is": mean, "is_std": std,
            "protocol": {"classifier": clf.name, "weights": clf.identity, "preprocess": clf.preprocess,
                         "n_samples": ctx.n, "splits": 10, "sample_seed": ctx.seed}}


@metric("pr", "sample", "precision/recall (Kynkaanniemi et al. 2019, k=3) and density/coverage (Naeem et al. 2020, k=5)",
        uses=("features",), equal_sets=True)
def pr(ctx: MetricContext) -> dict:
    real, fake = ctx.reference_features()[: ctx.n], ctx.sample_features()
    return {**precision_recall(real, fake, k=3), **density_coverage(real, fake, k=5),
            "protocol": {**feature_protocol(ctx, len(real)), "k_pr": 3, "k_dc": 5}}


def fid_between(a, b, features: str = "domain") -> float:
    """FID between two image sets (N x C x H x W floats in [0, 1]) under an extractor spec."""
    from .features import get_extractor

    ext = get_extractor(features)
    return fid_from_features(ext.features(a), ext.features(b))

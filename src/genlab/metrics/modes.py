"""Mode coverage: which classes a model's samples fall into, under a domain classifier.

A model that drops modes leaves classes empty: the number of classes covered falls, and
KL(p_data || p_samples) grows (it is infinite without smoothing when a class is empty).
"""
from __future__ import annotations

import torch

from .registry import MetricContext, metric

COVERED_SHARE = 0.1  # a class is covered when it gets >= 10% of the samples its data frequency predicts
PSEUDO_COUNT = 0.5  # Jeffreys smoothing of the sample histogram, so the KL stays finite


def class_distribution(labels: torch.Tensor, num_classes: int, pseudo: float = 0.0) -> torch.Tensor:
    counts = torch.bincount(labels, minlength=num_classes).double() + pseudo
    return counts / counts.sum()


def mode_coverage(pred: torch.Tensor, data_dist: torch.Tensor) -> dict:
    """pred: predicted class per sample (N); data_dist: the data's class frequencies (K)."""
    k, n = len(data_dist), len(pred)
    counts = torch.bincount(pred, minlength=k).double()
    covered = int((counts >= COVERED_SHARE * data_dist * n).sum())
    q = class_distribution(pred, k, PSEUDO_COUNT)
    kl = float((data_dist * (data_dist.clamp_min(1e-300).log() - q.log())).sum())
    return {"classes_covered": covered, "num_classes": k, "kl_data_to_samples": kl,
            "histogram": [int(c) for c in counts], "max_class_share": float(counts.max() / n)}


def recognised_share(probs: torch.Tensor, threshold: float = 0.9) -> float:
    """Share of samples the classifier gives at least `threshold` probability (probs: N x K): how many look
    like finished digits, beside the coverage counted over all of them."""
    return float((probs.max(1).values >= threshold).float().mean())


def collapse_warning(cov: dict) -> str | None:
    """The mode monitor's alarm on a `mode_coverage` result: at most half the classes covered, or one class
    taking more than half the samples; None when neither holds."""
    k = cov["num_classes"]
    if cov["classes_covered"] > k // 2 and cov["max_class_share"] <= 0.5:
        return None
    return (f"possible mode collapse: samples cover {int(cov['classes_covered'])}/{int(k)} classes, the largest "
            f"takes {cov['max_class_share']:.0%} (KL(data || samples) = {cov['kl_data_to_samples']:.2f})")


@metric("modes", "sample", "mode coverage: class histogram of samples, classes covered, KL(data || samples)",
        uses=("classifier",))
def modes(ctx: MetricContext) -> dict:
    clf = ctx.extractor("classifier")
    probs = clf.probs(ctx.samples(), ctx.progress)
    k = probs.shape[1]
    labels = ctx.data.labels
    data_dist = class_distribution(labels, k) if labels is not None else torch.full((k,), 1.0 / k, dtype=torch.float64)
    out = mode_coverage(probs.argmax(1), data_dist)
    marginal = probs.mean(0).double()  # p(y) over the samples
    out["marginal_entropy_bits"] = float(-(marginal * marginal.clamp_min(1e-300).log2()).sum())
    return {**out, "protocol": {"classifier": clf.name, "weights": clf.identity, "n_samples": ctx.n,
                                "data_distribution": f"{ctx.run.data.source} {ctx.split} labels" if labels is not None
                                else "uniform (reference has no labels)",
                                "covered_if_share_at_least": COVERED_SHARE, "pseudo_count": PSEUDO_COUNT,
                                "sample_seed": ctx.seed}}

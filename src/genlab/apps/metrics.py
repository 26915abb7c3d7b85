"""The numbers the applications report: ranking (AUROC, AUPRC), clustering (NMI, accuracy), retrieval
(precision@k) and image fidelity (PSNR, SSIM).

Conventions:
- Scores rank *positives* high: for anomaly detection the positives are the anomalies, so pass an anomaly
  score (higher = more anomalous), e.g. minus `score_samples` of a scorer.
- AUROC is the Mann-Whitney probability that a random positive outranks a random negative, ties counting
  one half: 1 for a perfect scorer, 0 for a reversed one, 0.5 for a constant one.
- AUPRC is the average precision, sum_n (R_n - R_{n-1}) P_n over the distinct score thresholds (the step-wise
  area, no interpolation, as scikit-learn's `average_precision_score`); a constant scorer gets the fraction of
  positives, which is also its chance level.
- PSNR = 10 log10(range^2 / MSE) per image; identical images have MSE 0 and PSNR +inf unless `max_db` caps it.
- SSIM is Wang et al. (2004): an 11 x 11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, C_i = (K_i L)^2
  with L the data range, statistics over the valid window positions, the map averaged per channel and then
  over channels; one value per image. Images smaller than 11 pixels (8 x 8 digits) use the largest odd
  window that fits, with the same sigma.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError


def _binary(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).ravel().astype(bool)
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise UserError(f"got {len(y)} labels for {len(s)} scores: the counts must match")
    if not np.isfinite(s).all():
        raise UserError("the scores hold NaN or infinite values: the model diverged or the data are out of range")
    if y.all() or not y.any():
        raise UserError("a ranking metric needs both positive and negative examples, and one kind is missing")
    return y, s


def auroc(labels, scores) -> float:
    """Area under the ROC curve of `scores` (high = positive) against binary `labels`; ties count 1/2."""
    import scipy.stats

    y, s = _binary(labels, scores)
    ranks = scipy.stats.rankdata(s)  # midranks for ties
    n1, n0 = int(y.sum()), int((~y).sum())
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def auprc(labels, scores) -> float:
    """Area under the precision-recall curve as average precision (step-wise, no interpolation)."""
    y, s = _binary(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last index of each run of tied scores
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def nmi(labels, clusters) -> float:
    """Normalised mutual information (arithmetic-mean normalisation): 1 for identical partitions."""
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(np.asarray(labels).ravel(), np.asarray(clusters).ravel()))


def clustering_accuracy(labels, clusters) -> float:
    """The fraction of points labelled right under the best one-to-one map of clusters to classes
    (Hungarian matching on the contingency table, scipy.optimize.linear_sum_assignment)."""
    from scipy.optimize import linear_sum_assignment

    y, c = np.asarray(labels).ravel(), np.asarray(clusters).ravel()
    if y.shape != c.shape:
        raise UserError(f"got {len(y)} labels for {len(c)} cluster assignments: the counts must match")
    if len(y) == 0:
        return float("nan")
    _, yi = np.unique(y, return_inverse=True)
    _, ci = np.unique(c, return_inverse=True)
    table = np.zeros((ci.max() + 1, yi.max() + 1), dtype=np.int64)
    np.add.at(table, (ci, yi), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / len(y))


def precision_at_k(neighbour_labels, query_labels, k: int | None = None) -> float:
    """Mean over queries of the fraction of their first k neighbours (N x K labels) sharing the query's label."""
    nb = torch.as_tensor(np.asarray(neighbour_labels))
    q = torch.as_tensor(np.asarray(query_labels)).reshape(-1, 1)
    if nb.dim() != 2 or len(nb) != len(q):
        raise UserError(f"neighbour labels must be N x k for N = {len(q)} queries, got {tuple(nb.shape)}")
    k = nb.shape[1] if k is None else k
    if not 1 <= k <= nb.shape[1]:
        raise UserError(f"precision@k needs 1 <= k <= {nb.shape[1]} (the neighbours given), got k = {k}")
    return float((nb[:, :k] == q).double().mean())


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, max_db: float | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, 10 log10(range^2 / MSE); B x ... -> B.

    Identical images give +inf, or `max_db` when given (every value is then capped at it).
    """
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    out = 10 * torch.log10(data_range**2 / mse)  # mse = 0 -> +inf
    return out if max_db is None else out.clamp(max=max_db)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The normalised 1-D Gaussian of `size` taps; the 2-D window is its outer product."""
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-(t**2) / (2 * sigma**2))
    return w / w.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) per image; B x C x H x W -> B (1 for identical images)."""
    if x.shape != y.shape or x.dim() != 4:
        raise UserError(f"SSIM needs two B x C x H x W batches of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    b, c, h, w = x.shape
    size = min(window, h, w)
    size -= 1 - size % 2  # odd, so the window has a centre
    g = gaussian_window(size, sigma).to(x.device)
    x, y = x.double(), y.double()

    def blur(t):  # separable Gaussian, valid positions only, each channel on its own
        t = F.conv2d(t, g.view(1, 1, size, 1).expand(c, 1, size, 1), groups=c)
        return F.conv2d(t, g.view(1, 1, 1, size).expand(c, 1, 1, size), groups=c)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    smap = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return smap.flatten(2).mean(2).mean(1)


"""Inception Score (Salimans et al. 2016, "Improved techniques for training GANs") from a classifier's
class probabilities p(y|x) on generated samples:

    IS = exp( E_x KL(p(y|x) || p(y)) ),   p(y) = E_x p(y|x),
    KL(p || q) = sum_y p(y) log(p(y) / q(y)),

computed on each of `splits` equal parts of the samples (p(y) the part's marginal), reported as the mean and
standard deviation over parts. It ranges from 1 (every prediction equal) to K, the number of classes
(confident predictions spread evenly over the classes). Terms with p(y|x) = 0 contribute 0 (0 log 0 = 0).
"""
from __future__ import annotations

import numpy as np

from ..errors import UserError
from .frechet import ArrayLike, as_matrix


def _log_or_zero(p: np.ndarray) -> np.ndarray:
    """log p where p > 0, else 0 (those entries are multiplied by a zero probability)."""
    return np.log(p, out=np.zeros_like(p), where=p > 0)


def inception_score(probs: ArrayLike, splits: int = 10) -> tuple[float, float]:
    """Mean and standard deviation (ddof=0) of the Inception Score over `splits` parts of an N x K matrix
    of class probabilities."""
    p = as_matrix(probs, "probs")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, rtol=0.0, atol=1e-3):
        raise UserError("every row of probs must be a probability vector (non-negative, summing to 1)")
    if not 1 <= splits <= len(p):
        raise UserError(f"splits must be between 1 and the number of samples ({len(p)}), got {splits}")
    scores = []
    for part in np.array_split(p, splits):  # parts of n_s x K rows
        marginal = part.mean(axis=0)  # K
        kl = (part * (_log_or_zero(part) - _log_or_zero(marginal))).sum(axis=1)  # n_s
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))

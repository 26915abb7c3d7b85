"""Kernel Inception Distance (Binkowski et al. 2018, "Demystifying MMD GANs"): the unbiased estimate of the
squared maximum mean discrepancy between two feature sets under the cubic polynomial kernel

    k(x, y) = (x . y / d + 1)^3,

    MMD_u^2 = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
              - 2/(m n) sum_{i, j} k(x_i, y_j),

averaged over random subsets of both sets. Leaving out the diagonals k(x_i, x_i) makes the estimate unbiased:
its expectation is 0 when both sets come from one distribution, so it can be (slightly) negative.
"""
from __future__ import annotations

import numpy as np

from ..errors import UserError
from .frechet import ArrayLike, as_matrix


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x_i, y_j) = (x_i . y_j / d + 1)^3 for every pair: (m, d) and (n, d) -> (m, n)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD^2 estimate between the rows of x (m x d) and y (n x d), m, n >= 2."""
    m, n = len(x), len(y)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(xx + yy - 2.0 * k_xy.mean())


def kernel_inception_distance(f1: ArrayLike, f2: ArrayLike, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation (ddof=0) of MMD_u^2 over `subsets` random pairs of subsets, each drawn
    without replacement, of min(subset_size, n1, n2) rows from each of f1 (n1 x d) and f2 (n2 x d)."""
    x, y = as_matrix(f1, "f1"), as_matrix(f2, "f2")
    if x.shape[1] != y.shape[1]:
        raise UserError(f"the two feature sets have different dimensions ({x.shape[1]} and {y.shape[1]})")
    if subsets < 1:
        raise UserError(f"subsets must be at least 1, got {subsets}")
    size = min(subset_size, len(x), len(y))
    if size < 2:
        raise UserError(f"KID needs subsets of at least 2 samples, got {size} "
                        f"(subset_size {subset_size}, {len(x)} and {len(y)} samples)")
    rng = np.random.default_rng(seed)
    values = np.array([mmd2_unbiased(x[rng.choice(len(x), size, replace=False)],
                                     y[rng.choice(len(y), size, replace=False)]) for _ in range(subsets)])
    return float(values.mean()), float(values.std())

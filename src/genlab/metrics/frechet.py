"""Fréchet distance between Gaussians fitted to two feature sets: FID when the features are Inception's
(Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to a local Nash equilibrium"):

    d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))

S1 S2 is not symmetric, and a general matrix square root of it (scipy's sqrtm) picks up imaginary parts
and fails on rank-deficient covariances (2048-d features from a few hundred samples). The trace only needs
the eigenvalues, and S1 S2 is similar to the symmetric PSD matrix M = S1^(1/2) S2 S1^(1/2), so

    Tr((S1 S2)^(1/2)) = Tr(M^(1/2)) = sum_i sqrt(lambda_i(M)),

with S1^(1/2) and lambda(M) from symmetric eigendecompositions. Eigenvalues at rounding level
(|lambda| <= D eps lambda_max, the threshold numpy's matrix_rank uses) are set to 0: rank-deficient
covariances have many, and the square roots of their rounding noise would otherwise add up to a visible bias.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import UserError

ArrayLike = torch.Tensor | np.ndarray


def _numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def as_matrix(x: ArrayLike, name: str) -> np.ndarray:
    """A tensor or array as a finite float64 N x D array, else a UserError naming it."""
    a = _numpy(x)
    if a.ndim != 2:
        raise UserError(f"{name} must be a 2-D matrix (samples x features), got shape {tuple(a.shape)}")
    if a.shape[1] == 0:
        raise UserError(f"{name} has no feature columns")
    if not np.isfinite(a).all():
        raise UserError(f"{name} contains NaN or infinite values")
    return a


def gaussian_stats(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of an N x D feature matrix, N >= 2."""
    f = as_matrix(features, "features")
    if len(f) < 2:
        raise UserError(f"a covariance needs at least 2 feature rows, got {len(f)}")
    mu = f.mean(axis=0)
    centred = f - mu  # N x D
    return mu, centred.T @ centred / (len(f) - 1)


def _psd_spectrum(w: np.ndarray) -> np.ndarray:
    """Eigenvalues of a symmetric PSD matrix with those at rounding level, negatives included, set to 0."""
    tol = max(float(w.max()), 0.0) * len(w) * np.finfo(np.float64).eps
    return np.where(w > tol, w, 0.0)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric PSD matrix."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(_psd_spectrum(w))) @ v.T


def _check_gaussian(mu: np.ndarray, sigma: np.ndarray, name: str) -> None:
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise UserError(f"{name} needs a mean of shape (D,) and a covariance of shape (D, D), "
                        f"got {tuple(mu.shape)} and {tuple(sigma.shape)}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise UserError(f"the statistics of {name} contain NaN or infinite values")


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); never negative."""
    mu1, sigma1, mu2, sigma2 = map(_numpy, (mu1, sigma1, mu2, sigma2))
    _check_gaussian(mu1, sigma1, "the first Gaussian")
    _check_gaussian(mu2, sigma2, "the second Gaussian")
    if len(mu1) != len(mu2):
        raise UserError(f"cannot compare Gaussians of different dimension ({len(mu1)} and {len(mu2)})")
    sigma1, sigma2 = (sigma1 + sigma1.T) / 2, (sigma2 + sigma2.T) / 2
    root1 = _psd_sqrt(sigma1)
    m = root1 @ sigma2 @ root1
    tr_covmean = np.sqrt(_psd_spectrum(np.linalg.eigvalsh((m + m.T) / 2))).sum()
    diff = mu1 - mu2
    d2 = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean
    return max(float(d2), 0.0)


def fid_from_features(f1: ArrayLike, f2: ArrayLike) -> float:
    """Fréchet distance between Gaussians fitted to two N x D feature matrices."""
    return frechet_distance(*gaussian_stats(f1), *gaussian_stats(f2))

"""The pure metric functions of the evaluation suite, each checked against an independent computation or a
closed form: Fréchet distance vs scipy's sqrtm and the nuclear-norm identity for rank-deficient covariances,
KID vs a naive double loop and for unbiasedness, the Inception Score at its extremes and vs scipy's entropy,
and precision/recall/density/coverage on constructed mode-dropping cases and vs an unblocked computation."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

from genlab.errors import UserError
from genlab.metrics.frechet import fid_from_features, frechet_distance, gaussian_stats
from genlab.metrics.inception_score import inception_score
from genlab.metrics.kid import kernel_inception_distance, mmd2_unbiased, polynomial_kernel
from genlab.metrics.precision_recall import density_coverage, precision_recall


def _gaussian(rng: np.random.Generator, d: int) -> tuple[np.ndarray, np.ndarray]:
    """A random mean and a well-conditioned covariance (eigenvalues >= 1)."""
    a = rng.normal(size=(d, d))
    return rng.normal(size=d), a @ a.T / d + np.eye(d)


# ---------------------------------------------------------------------------------------------- Fréchet
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frechet_matches_scipy_sqrtm(seed):
    rng = np.random.default_rng(seed)
    (mu1, s1), (mu2, s2) = _gaussian(rng, 32), _gaussian(rng, 32)
    diff = mu1 - mu2
    ref = diff @ diff + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-6)


def test_frechet_one_dimensional_closed_form():
    mu1, s1, mu2, s2 = 0.3, 1.7, -1.1, 0.4  # standard deviations s1, s2
    got = frechet_distance(np.array([mu1]), np.array([[s1**2]]), np.array([mu2]), np.array([[s2**2]]))
    assert got == pytest.approx((mu1 - mu2) ** 2 + (s1 - s2) ** 2, rel=1e-12)


def test_frechet_diagonal_closed_form():
    rng = np.random.default_rng(3)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    a, b = rng.uniform(0.1, 3.0, size=10), rng.uniform(0.1, 3.0, size=10)
    ref = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(ref, rel=1e-12)


def test_fid_of_a_set_with_itself_is_zero_and_fid_is_symmetric():
    rng = np.random.default_rng(4)
    f1, f2 = rng.normal(size=(300, 16)), rng.normal(size=(200, 16)) * 1.5 + 0.2
    scale = np.trace(gaussian_stats(f1)[1])
    assert 0.0 <= fid_from_features(f1, f1) <= 1e-10 * scale
    assert fid_from_features(f1, f2) == pytest.approx(fid_from_features(f2, f1), rel=1e-10)
    # torch tensors and numpy arrays give the same number
    assert fid_from_features(torch.from_numpy(f1).float(), f2) == pytest.approx(
        fid_from_features(f1.astype(np.float32), f2), rel=1e-12)


def test_gaussian_stats_is_mean_and_unbiased_covariance():
    f = np.random.default_rng(5).normal(size=(40, 6))
    mu, sigma = gaussian_stats(f)
    assert np.allclose(mu, f.mean(0)) and np.allclose(sigma, np.cov(f, rowvar=False, ddof=1))


def test_frechet_rank_deficient_covariances_are_exact_and_warning_free():
    """50 samples in 200 dims: both covariances have rank 49. With A = X1c / sqrt(n1-1), B = X2c / sqrt(n2-1)
    (centred rows), S1 = A^T A, S2 = B^T B and the nonzero eigenvalues of S1 S2 are the squared singular values
    of A B^T, so Tr((S1 S2)^(1/2)) is the nuclear norm |A B^T|_*: an independent exact reference."""
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(50, 200)), rng.normal(size=(50, 200)) * 0.8 + 0.1
    a = (x - x.mean(0)) / math.sqrt(len(x) - 1)
    b = (y - y.mean(0)) / math.sqrt(len(y) - 1)
    diff = x.mean(0) - y.mean(0)
    ref = diff @ diff + (a**2).sum() + (b**2).sum() - 2 * np.linalg.svd(a @ b.T, compute_uv=False).sum()
    shift = np.full(200, 0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fid_from_features(x, y)
        shifted = fid_from_features(x, x + shift)  # same covariance: FID is |shift|^2 exactly
    assert isinstance(got, float) and math.isfinite(got)
    assert got == pytest.approx(ref, rel=1e-9)
    assert shifted == pytest.approx(shift @ shift, abs=1e-9 * (a**2).sum())


def test_frechet_bad_inputs():
    mu, sigma = np.zeros(3), np.eye(3)
    with pytest.raises(UserError, match="different dimension"):
        frechet_distance(mu, sigma, np.zeros(4), np.eye(4))
    with pytest.raises(UserError, match="covariance of shape"):
        frechet_distance(mu, np.eye(4), mu, sigma)
    with pytest.raises(UserError, match="at least 2"):
        gaussian_stats(np.zeros((1, 3)))
    with pytest.raises(UserError, match="2-D"):
        fid_from_features(np.zeros(5), np.zeros((5, 1)))
    with pytest.raises(UserError, match="NaN"):
        fid_from_features(np.full((5, 2), np.nan), np.zeros((5, 2)))


# ---------------------------------------------------------------------------------------------- KID
def _naive_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]

    def k(a, b):
        return (sum(ai * bi for ai, bi in zip(a, b)) / d + 1) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_matches_a_naive_double_loop():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(12, 5)), rng.normal(size=(9, 5)) + 0.5
    assert mmd2_unbiased(x, y) == pytest.approx(_naive_mmd2(x, y), rel=1e-10, abs=1e-10)
    # a subset of all 12 samples is a permutation of the set, and MMD^2 does not depend on the order
    y = rng.normal(size=(12, 5)) + 0.5
    mean, std = kernel_inception_distance(x, y, subsets=1, subset_size=12)
    assert mean == pytest.approx(_naive_mmd2(x, y), rel=1e-10, abs=1e-10) and std == 0.0


def test_kid_is_unbiased_on_one_distribution_and_positive_on_shifted_ones():
    """T independent pairs of sets from one Gaussian: the mean of T unbiased estimates is within 4 standard
    errors of 0 (a deterministic check given the seed), while the biased estimate that keeps k(x_i, x_i) sits
    far outside that band; shifting one set by 1 in every coordinate puts KID many subset stds above 0."""
    rng = np.random.default_rng(8)
    t, m, d = 200, 40, 8
    unbiased, biased = [], []
    for _ in range(t):
        x, y = rng.normal(size=(m, d)), rng.normal(size=(m, d))
        unbiased.append(kernel_inception_distance(x, y, subsets=1, subset_size=m)[0])
        biased.append((polynomial_kernel(x, x).mean() + polynomial_kernel(y, y).mean()
                       - 2 * polynomial_kernel(x, y).mean()))
    se = np.std(unbiased, ddof=1) / math.sqrt(t)
    assert abs(np.mean(unbiased)) < 4 * se
    assert np.mean(biased) > 10 * se  # the check has the power to see the diagonal's bias

    f1, f2 = rng.normal(size=(500, d)), rng.normal(size=(500, d)) + 1.0
    mean, std = kernel_inception_distance(f1, f2, subsets=20, subset_size=100)
    assert mean > 5 * std > 0
    same_mean, _ = kernel_inception_distance(f1, rng.normal(size=(500, d)), subsets=20, subset_size=100)
    assert abs(same_mean) < mean / 20


def test_kid_bad_inputs():
    with pytest.raises(UserError, match="different dimensions"):
        kernel_inception_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(UserError, match="at least 2 samples"):
        kernel_inception_distance(np.zeros((1, 3)), np.zeros((5, 3)))


# ---------------------------------------------------------------------------------------------- Inception Score
def test_inception_score_extremes():
    k, splits = 5, 10
    uniform = np.full((100, k), 1 / k)
    assert inception_score(uniform, splits) == pytest.approx((1.0, 0.0), abs=1e-12)
    balanced = np.tile(np.eye(k), (20, 1))  # each split of 10 rows holds every class twice
    mean, std = inception_score(balanced, splits)
    assert mean == pytest.approx(k, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)
    one_class = np.zeros((100, k))
    one_class[:, 2] = 1.0
    assert inception_score(torch.from_numpy(one_class), splits) == pytest.approx((1.0, 0.0), abs=1e-12)


def test_inception_score_matches_scipy_entropy():
    rng = np.random.default_rng(9)
    p = rng.dirichlet(np.full(7, 0.3), size=60)
    p[:5, 0] = 0.0  # zero probabilities must be handled, not turned into NaN
    p /= p.sum(1, keepdims=True)
    marginal = p.mean(0)
    ref = math.exp(np.mean([scipy.stats.entropy(row, marginal) for row in p]))
    mean, std = inception_score(p, splits=1)
    assert mean == pytest.approx(ref, rel=1e-12) and std == 0.0
    per_split = [math.exp(np.mean([scipy.stats.entropy(r, part.mean(0)) for r in part]))
                 for part in (p[:20], p[20:40], p[40:])]
    assert inception_score(p, splits=3) == pytest.approx((np.mean(per_split), np.std(per_split)), rel=1e-12)


def test_inception_score_bad_inputs():
    with pytest.raises(UserError, match="probability vector"):
        inception_score(np.array([[0.5, 0.6], [0.5, 0.5]]), splits=1)
    with pytest.raises(UserError, match="probability vector"):
        inception_score(np.array([[1.5, -0.5], [0.5, 0.5]]), splits=1)
    with pytest.raises(UserError, match="splits"):
        inception_score(np.full((4, 2), 0.5), splits=5)


# ---------------------------------------------------------------------------------------------- precision / recall
def _blobs(rng: np.random.Generator, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Real: two unit Gaussians 40 apart, n each; fake: n fresh samples of the second one only."""
    real = np.concatenate([rng.normal(size=(n, d)) - 20, rng.normal(size=(n, d)) + 20])
    return real, rng.normal(size=(n, d)) + 20


def test_identical_and_disjoint_sets():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(150, 4))
    assert precision_recall(x, x) == {"precision": 1.0, "recall": 1.0}
    assert density_coverage(x, x)["coverage"] == 1.0
    far = rng.normal(size=(120, 4)) + 100
    assert precision_recall(x, far) == {"precision": 0.0, "recall": 0.0}
    assert density_coverage(x, far) == {"density": 0.0, "coverage": 0.0}


def test_dropping_half_of_the_modes():
    real, fake = _blobs(np.random.default_rng(11), 200, 2)
    pr, dc = precision_recall(real, fake), density_coverage(real, fake)
    assert pr["precision"] > 0.9  # fresh samples of a covered mode: not exactly 1 with k = 3
    assert 0.4 < pr["recall"] <= 0.5  # the first blob (half the reals) lies in no fake ball
    assert 0.4 < dc["coverage"] <= 0.5
    assert 0.7 < dc["density"] < 1.3


def test_density_is_about_one_on_one_distribution():
    rng = np.random.default_rng(12)
    dc = density_coverage(rng.normal(size=(400, 4)), rng.normal(size=(400, 4)))
    assert 0.7 < dc["density"] < 1.3 and dc["coverage"] > 0.9


def _unblocked(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    x, y = torch.from_numpy(real), torch.from_numpy(fake)

    def dist(a, b):
        return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1).sqrt()

    r_real = dist(x, x).sort(dim=1).values[:, k]  # index 0 is the point itself
    r_fake = dist(y, y).sort(dim=1).values[:, k]
    fake_in_real = dist(y, x) <= r_real[None, :]  # M x N
    real_in_fake = dist(x, y) <= r_fake[None, :]  # N x M
    return {"precision": fake_in_real.any(1).double().mean().item(),
            "recall": real_in_fake.any(1).double().mean().item(),
            "density": fake_in_real.sum().item() / (k * len(y)),
            "coverage": fake_in_real.any(0).double().mean().item()}


@pytest.mark.parametrize("block", [1, 7, 1000])
def test_blocked_equals_unblocked(block):
    rng = np.random.default_rng(13)
    real, fake = rng.normal(size=(60, 5)), rng.normal(size=(45, 5)) * 1.3 + 0.3
    k = 4
    got = {**precision_recall(real, fake, k=k, block=block), **density_coverage(real, fake, k=k, block=block)}
    assert got == _unblocked(real, fake, k)


def test_precision_recall_bad_inputs():
    x = np.zeros((5, 3))
    with pytest.raises(UserError, match="smaller than the number of real"):
        precision_recall(x, np.zeros((10, 3)), k=5)
    with pytest.raises(UserError, match="smaller than the number of fake"):
        precision_recall(np.zeros((10, 3)), x, k=5)
    with pytest.raises(UserError, match="smaller than the number of real"):
        density_coverage(x, x, k=5)
    with pytest.raises(UserError, match="different dimensions"):
        density_coverage(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(UserError, match="at least 1"):
        precision_recall(x, x, k=0)

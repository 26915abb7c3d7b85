"""Sample-quality and sample-diversity metrics from k-nearest-neighbour balls in feature space.

Improved precision and recall (Kynkaanniemi et al. 2019, "Improved precision and recall metric for assessing
generative models"): a set Phi approximates its manifold by the union of balls around its points, each with
radius the distance to the point's k-th nearest neighbour in the set (itself excluded),

    manifold(Phi) = U_{phi in Phi} B(phi, NND_k(phi)),
    precision = 1/M sum_j 1[Y_j in manifold(X)],   recall = 1/N sum_i 1[X_i in manifold(Y)],

for real features X_1..X_N and fake features Y_1..Y_M.

Density and coverage (Naeem et al. 2020, "Reliable fidelity and diversity metrics for generative models")
use the real balls only:

    density  = 1/(k M) sum_j sum_i 1[Y_j in B(X_i, NND_k(X_i))],
    coverage = 1/N sum_i 1[exists j: Y_j in B(X_i, NND_k(X_i))].

Balls are closed (distance <= radius). Distances are computed in float64 blocks of `block` x `block`, so
10k x 10k sets of 2048-d features never hold more than a few blocks of the distance matrix.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch

from ..errors import UserError
from .frechet import ArrayLike, as_matrix


def _tensor(x: ArrayLike, name: str) -> torch.Tensor:
    return torch.from_numpy(as_matrix(x, name))


def _blocks(n: int, block: int) -> Iterator[slice]:
    return (slice(start, min(start + block, n)) for start in range(0, n, block))


def _kth_neighbour_radii(x: torch.Tensor, k: int, block: int) -> torch.Tensor:
    """NND_k of every row of x (N x D -> N): the (k+1)-th smallest distance to the set, the first being
    the point itself."""
    radii = torch.empty(len(x), dtype=x.dtype)
    for rows in _blocks(len(x), block):
        nearest = x.new_empty(rows.stop - rows.start, 0)  # b x (up to k+1), the smallest distances so far
        for cols in _blocks(len(x), block):
            candidates = torch.cat([nearest, torch.cdist(x[rows], x[cols])], dim=1)
            nearest = candidates.topk(min(k + 1, candidates.shape[1]), dim=1, largest=False).values
        radii[rows] = nearest[:, k]
    return radii


def _ball_hits(centres: torch.Tensor, radii: torch.Tensor, points: torch.Tensor,
               block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For centres (N x D) with radii (N) and points (M x D): how many balls hold each point (M), and
    whether each ball holds any point (N)."""
    counts = torch.zeros(len(points), dtype=torch.long)
    hit = torch.zeros(len(centres), dtype=torch.bool)
    for rows in _blocks(len(points), block):
        for cols in _blocks(len(centres), block):
            inside = torch.cdist(points[rows], centres[cols]) <= radii[cols]  # b_points x b_centres
            counts[rows] += inside.sum(dim=1)
            hit[cols] |= inside.any(dim=0)
    return counts, hit


def _check(real: torch.Tensor, fake: torch.Tensor, k: int, block: int) -> None:
    if real.shape[1] != fake.shape[1]:
        raise UserError(f"real and fake features have different dimensions ({real.shape[1]} and {fake.shape[1]})")
    if len(fake) == 0:
        raise UserError("there are no fake samples")
    if k < 1:
        raise UserError(f"k must be at least 1, got {k}")
    if block < 1:
        raise UserError(f"block must be at least 1, got {block}")


def _check_k(x: torch.Tensor, k: int, name: str) -> None:
    if k >= len(x):
        raise UserError(f"k must be smaller than the number of {name} samples ({len(x)}), got {k}")


def precision_recall(real: ArrayLike, fake: ArrayLike, k: int = 3, block: int = 1000) -> dict[str, float]:
    """Improved precision (fakes inside the real manifold) and recall (reals inside the fake manifold)."""
    x, y = _tensor(real, "real"), _tensor(fake, "fake")
    _check(x, y, k, block)
    _check_k(x, k, "real")
    _check_k(y, k, "fake")
    fakes_in_real, _ = _ball_hits(x, _kth_neighbour_radii(x, k, block), y, block)
    reals_in_fake, _ = _ball_hits(y, _kth_neighbour_radii(y, k, block), x, block)
    return {"precision": (fakes_in_real > 0).double().mean().item(),
            "recall": (reals_in_fake > 0).double().mean().item()}


def density_coverage(real: ArrayLike, fake: ArrayLike, k: int = 5, block: int = 1000) -> dict[str, float]:
    """Density (real balls holding each fake, averaged and divided by k) and coverage (real balls holding
    any fake)."""
    x, y = _tensor(real, "real"), _tensor(fake, "fake")
    _check(x, y, k, block)
    _check_k(x, k, "real")
    counts, covered = _ball_hits(x, _kth_neighbour_radii(x, k, block), y, block)
    return {"density": counts.sum().item() / (k * len(y)), "coverage": covered.double().mean().item()}

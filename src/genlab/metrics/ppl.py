"""Perceptual path length (Karras et al. 2019): how much the image changes along small steps of a latent path.

    l_Z = E[ d(G(slerp(z1, z2; t)), G(slerp(z1, z2; t + eps))) / eps^2 ]      z1, z2 ~ p(z)
    l_W = E[ d(g(lerp(f(z1), f(z2); t)), g(lerp(f(z1), f(z2); t + eps))) / eps^2 ]   (StyleGAN's w space)

eps = 1e-4; t ~ U(0, 1) for the full path, t = 0 at the path's end points ("end"); the two images of a pair share
their noise inputs; the mean is taken over the distances between the 1st and the 99th percentile, as the
reference code does. The paper's d is LPIPS (learned weights on VGG features), which is not available offline:
here d is the squared L2 distance between the unit-normalised feature vectors of the run's extractor (the domain
classifier's penultimate features, or Inception's pool features), on images that are not quantised to 8 bits.
Numbers are comparable between runs measured with one extractor, not with the paper's.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from ..data import to_unit
from .registry import MetricContext, metric

EPS = 1e-4


def slerp_rows(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of a and b at each row's own t (B); -> B x d."""
    na, nb = F.normalize(a, dim=1), F.normalize(b, dim=1)
    omega = torch.arccos((na * nb).sum(1).clamp(-1 + 1e-7, 1 - 1e-7))[:, None]  # B x 1
    t = t[:, None]
    direction = F.normalize(nb - na * torch.cos(omega), dim=1)  # unit, orthogonal to na in the (a, b) plane
    norm = torch.lerp(a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True), t)
    return norm * (na * torch.cos(t * omega) + direction * torch.sin(t * omega))


def path_lengths(model, generate, space: str, n: int, end: bool, features, batch: int, g: torch.Generator):
    """n scaled distances d / eps^2 along random paths in `space` (z or w)."""
    out = []
    for i in range(0, n, batch):
        b = min(batch, n - i)
        z1, z2 = model.prior(b, g), model.prior(b, g)
        t = torch.zeros(b, device=z1.device) if end else torch.rand(b, generator=g, device=z1.device)
        if space == "w":
            w1, w2 = model.map(z1), model.map(z2)
            codes = torch.cat([torch.lerp(w1, w2, t[:, None]), torch.lerp(w1, w2, (t + EPS)[:, None])])
        else:
            codes = torch.cat([slerp_rows(z1, z2, t), slerp_rows(z1, z2, t + EPS)])
        f = F.normalize(features(generate(codes, b, g)), dim=1)
        out.append(((f[:b] - f[b:]).pow(2).sum(1) / EPS**2).cpu())
    return torch.cat(out).double().numpy()


def generator_for(model, space: str):
    """codes (2b rows: the b first points, then the b second) -> images in [0, 1], each pair with one noise."""
    def generate(codes, b, g):
        if hasattr(model, "synthesize"):  # StyleGAN: noise drawn once per pair, then repeated
            ws = model.broadcast(codes if space == "w" else model.map(codes))
            noise = [v.repeat(2, 1, 1, 1) for v in model.noise(b, g)]
            return to_unit(model.finish(model.synthesize(ws, noise)).float(), model.info)
        return to_unit(model.decode(codes).float(), model.info)

    return generate


def trimmed_mean(d: np.ndarray) -> float:
    lo, hi = np.percentile(d, 1), np.percentile(d, 99)
    return float(d[(d >= lo) & (d <= hi)].mean())


@metric("ppl", "prior", "perceptual path length in z (and w for StyleGAN), full path and end points, eps 1e-4",
        uses=("features",))
def ppl(ctx: MetricContext) -> dict:
    model = ctx.model
    ext = dataclasses.replace(ctx.extractor(), exact=True)
    g = torch.Generator(ctx.device).manual_seed(ctx.seed)
    spaces = ["z"] + (["w"] if hasattr(model, "map") else [])
    out = {}
    for space in spaces:
        for end in (False, True):
            d = path_lengths(model, generator_for(model, space), space, ctx.n, end, ext.features,
                             ctx.batch_size, g)
            out[f"ppl_{space}_{'end' if end else 'full'}"] = trimmed_mean(d)
    out["protocol"] = {**ctx.base_protocol(), "paths": ctx.n, "epsilon": EPS, "spaces": spaces,
                       "distance": f"squared L2 of unit-normalised {ext.name} features (not LPIPS), unquantised "
                                   f"images; {ext.preprocess.replace('8-bit quantised, ', '')}",
                       "interpolation": "slerp in z, lerp in w; t ~ U(0, 1) (full) or t = 0 (end)",
                       "mean": "over distances between the 1st and 99th percentile", "sample_seed": ctx.seed}
    return out

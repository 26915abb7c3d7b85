"""Interpolation in latent space, between two images' codes or two noise vectors.

    linear:    z(t) = (1 - t) z0 + t z1
    spherical: z(t) = sin((1 - t) w) / sin w * z0 + sin(t w) / sin w * z1,  cos w = <z0, z1> / |z0||z1|
               (White 2016: keeps |z| typical of a Gaussian prior, where the straight line passes near 0)
"""
from __future__ import annotations

import torch

from ..errors import UserError

MODES = ("linear", "slerp")


def lerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """z0, z1: B x d; t: T -> B x T x d."""
    t = t.view(1, -1, 1)
    return (1 - t) * z0.unsqueeze(1) + t * z1.unsqueeze(1)


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation; falls back to linear where z0 and z1 are (anti)parallel. -> B x T x d."""
    cos = torch.nn.functional.cosine_similarity(z0, z1, dim=1).clamp(-1, 1)  # B
    omega = torch.arccos(cos).view(-1, 1, 1)
    t = t.view(1, -1, 1)
    so = torch.sin(omega)
    safe = so.abs() > eps
    w0 = torch.where(safe, torch.sin((1 - t) * omega) / so.clamp_min(eps), 1 - t)
    w1 = torch.where(safe, torch.sin(t * omega) / so.clamp_min(eps), t)
    return w0 * z0.unsqueeze(1) + w1 * z1.unsqueeze(1)


@torch.no_grad()
def interpolate(model, a: torch.Tensor, b: torch.Tensor, steps: int = 10, mode: str = "linear",
                ya: torch.Tensor | None = None) -> torch.Tensor:
    """Decode codes between a and b (images B x C x H x W, or codes B x d); -> B x steps x C x H x W.

    Images are encoded with the model's `encode`; codes (2-D tensors) are used as they are.
    A conditional model keeps the label of `a` along the path.
    """
    if mode not in MODES:
        raise UserError(f"interpolation mode must be one of {', '.join(MODES)}, got '{mode}'")
    if not hasattr(model, "decode"):
        raise UserError(f"model '{type(model).__name__}' has no decoder to interpolate with")
    cond = getattr(model, "conditional", False)
    if a.dim() == 4:
        if not hasattr(model, "encode"):
            raise UserError(f"model '{type(model).__name__}' cannot encode images; interpolate between noise vectors")
        za, zb = (model.encode(a, ya), model.encode(b, ya)) if cond else (model.encode(a), model.encode(b))
    else:
        za, zb = a, b
    t = torch.linspace(0, 1, steps, device=za.device)
    z = (lerp if mode == "linear" else slerp)(za, zb, t)  # B x T x d
    flat = z.flatten(0, 1)
    if cond:
        x = model.decode(flat, ya.repeat_interleave(steps))
    else:
        x = model.decode(flat)
    return x.view(za.shape[0], steps, *x.shape[1:])

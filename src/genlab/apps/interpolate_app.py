"""Interpolation as an application: strips of decoded images between two images' codes (or two noise vectors),
measured for smoothness, for how well the ends reproduce the inputs and for how real the midpoints look,
against a cross-fade in pixel space. The paths themselves are `apps.interpolate` (linear and spherical).

    strips = interpolate(model, a, b, steps, mode)      # B x T x C x H x W, frames f_0 .. f_{T-1}
    path_scores(strips)                                 # step distance, evenness, path ratio
    crossfade(a, b, steps)                              # the baseline: f_t = (1 - t) a + t b

Numbers, on pixels in [0, 1], with d(u, v) = mean_pixels |u - v| (an L1 distance, so the triangle inequality holds):
    step_distance    mean over strips and t of d(f_t, f_{t+1}): how far one step moves (smoothness)
    evenness         mean over strips of max_t d(f_t, f_{t+1}) / mean_t d(f_t, f_{t+1}): 1 for even steps,
                     large when the path jumps
    path_ratio       mean over strips of sum_t d(f_t, f_{t+1}) / d(f_0, f_{T-1}) >= 1: 1 for a straight path in
                     pixel space (a cross-fade); above 1 when the path passes through other images
    endpoint_psnr_db mean PSNR of f_0 against a and of f_{T-1} against b (between codes): do the ends
                     reconstruct the inputs (a cross-fade's ends are the inputs: the cap, 100 dB)
    midpoint_nn_rmse root-mean-square pixel distance of the middle frame to its nearest training image,
                     averaged over strips: low when the midpoints look like real images, where a cross-fade
                     shows two ghosted images
Between noise vectors there are no inputs: the cross-fade runs between the decoded ends, endpoint numbers are None.
"""
from __future__ import annotations

import torch

from ..data.transforms import as_unit
from ..errors import UserError
from .interpolate import MODES, interpolate
from .metrics import psnr
from .reduce import PSNR_CAP_DB
from .registry import AppContext, app, model_device, model_name, option, positive_int

BETWEEN = ("codes", "noise")


def distance(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Mean absolute pixel difference per image; ... x C x H x W -> ..."""
    return (u - v).abs().flatten(-3).mean(-1)


def path_scores(strips: torch.Tensor, value_range: str = "01") -> dict[str, float]:
    """Smoothness of B x T x C x H x W strips (T >= 2): step_distance, evenness, path_ratio (module docstring)."""
    if strips.dim() != 5 or strips.shape[1] < 2:
        raise UserError(f"path scores need B x T x C x H x W strips with T >= 2, got {tuple(strips.shape)}")
    f = as_unit(strips.float().cpu(), value_range)
    steps = distance(f[:, 1:], f[:, :-1])  # B x (T - 1)
    direct = distance(f[:, -1], f[:, 0])  # B
    mean_step = steps.mean(1)
    evenness = steps.max(1).values / mean_step.clamp_min(1e-12)
    ratio = steps.sum(1) / direct.clamp_min(1e-12)
    return {"step_distance": float(steps.mean()), "evenness": float(evenness.mean()), "path_ratio": float(ratio.mean())}


def endpoint_psnr(strips: torch.Tensor, a: torch.Tensor, b: torch.Tensor, value_range: str = "01") -> float:
    """Mean PSNR (dB on [0, 1], capped) of the first frames against a and the last against b."""
    u = lambda t: as_unit(t.float().cpu(), value_range)  # noqa: E731
    both = torch.cat([psnr(u(strips[:, 0]), u(a), 1.0, PSNR_CAP_DB), psnr(u(strips[:, -1]), u(b), 1.0, PSNR_CAP_DB)])
    return float(both.mean())


def crossfade(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """The pixel-space baseline (1 - t) a + t b at t = 0, 1/(T-1), ..., 1; -> B x T x C x H x W."""
    t = torch.linspace(0, 1, steps).view(1, -1, 1, 1, 1)
    return (1 - t) * a.unsqueeze(1) + t * b.unsqueeze(1)


def midpoint_nn_rmse(strips: torch.Tensor, reference: torch.Tensor, value_range: str = "01",
                     chunk: int = 512) -> float:
    """RMS pixel distance (on [0, 1]) of each strip's middle frame to its nearest reference image, averaged."""
    mid = as_unit(strips[:, strips.shape[1] // 2].float().cpu(), value_range).flatten(1)
    ref = as_unit(reference.float().cpu(), value_range).flatten(1)
    best = torch.cat([torch.cdist(mid[i : i + chunk], ref).min(1).values for i in range(0, len(mid), chunk)])
    return float((best / mid.shape[1] ** 0.5).mean())


def noise_vectors(model, n: int, generator: torch.Generator) -> torch.Tensor:
    """n draws from the model's latent prior: `model.prior` (GANs), N(0, I) of a VAE's code, a flow's prior."""
    draw = getattr(model, "prior", None)
    if callable(draw):
        return draw(n, generator).cpu()
    cfg = getattr(model, "cfg", None)
    if hasattr(model, "elbo") and hasattr(cfg, "latent_dim"):
        return torch.randn(n, cfg.latent_dim, generator=generator, device=generator.device).cpu()
    if hasattr(model, "log_prob") and hasattr(model, "latent_dim") and hasattr(model, "encode"):  # a flow
        if draw == "logistic":
            u = torch.rand(n, model.latent_dim, generator=generator, device=generator.device).clamp(1e-6, 1 - 1e-6)
            return (torch.log(u) - torch.log1p(-u)).cpu()
        return torch.randn(n, model.latent_dim, generator=generator, device=generator.device).cpu()
    raise UserError(f"interpolating between noise vectors needs a model with a known latent prior (a GAN's "
                    f"`prior`, a VAE or a flow), and '{model_name(model)}' has none")


@torch.no_grad()
def strips_between(model, a: torch.Tensor, b: torch.Tensor, steps: int, mode: str, ya: torch.Tensor | None = None,
                   batch_size: int = 256) -> torch.Tensor:
    """apps.interpolate in chunks of pairs on the model's device; a, b images or codes; -> CPU B x T x C x H x W."""
    dev, per = model_device(model), max(1, batch_size // steps)
    out = []
    for i in range(0, len(a), per):
        yb = None if ya is None else ya[i : i + per].to(dev)
        out.append(interpolate(model, a[i : i + per].to(dev), b[i : i + per].to(dev), steps, mode, yb).float().cpu())
    return torch.cat(out)


def _modes(spec) -> list[str]:
    modes = [m.strip() for m in str(spec).split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise UserError(f"--modes takes {' and/or '.join(MODES)} separated by commas, got '{spec}'")
    return list(dict.fromkeys(modes))


@app("interpolate", "decode",
     "interpolation: linear and spherical paths between codes or noise vectors; smoothness, endpoints, realism "
     "against a pixel cross-fade",
     options=(option("--pairs", type=positive_int, help="pairs measured (default 64; the figures show 8)"),
              option("--steps", type=positive_int, help="frames per strip, ends included (default 10)"),
              option("--modes", metavar="LIST", help="linear, slerp or both, comma-separated (default both)"),
              option("--between", choices=BETWEEN,
                     help="two images' codes or two noise vectors (default: codes when the model can encode)"),
              option("--ref-n", type=positive_int,
                     help="training images the midpoints are compared with (default 5000)")))
def run(ctx: AppContext) -> dict:
    model = ctx.model
    k, steps = ctx.option("pairs", 64), ctx.option("steps", 10)
    if steps < 2:
        raise UserError(f"an interpolation strip needs at least 2 steps, got {steps}")
    modes = _modes(ctx.option("modes", ",".join(MODES)))
    between = ctx.option("between") or ("codes" if hasattr(model, "encode") else "noise")
    cond = getattr(model, "conditional", False)
    if between == "codes":
        if not hasattr(model, "encode"):
            raise UserError(f"interpolating between images' codes needs a model that can encode images into codes "
                            f"(`encode`), and '{model_name(model)}' cannot; use --between noise")
        x, y, _ = ctx.tensors(n=min(ctx.n, 2 * k))
        k = len(x) // 2
        if k < 1:
            raise UserError("interpolation needs at least two images")
        a, b = x[:k], x[k : 2 * k]
        ya = None if not cond else (y[:k] if y is not None else None)
        what = f"codes of the first {k} and the next {k} images of the {ctx.split} split"
    else:
        g = torch.Generator(ctx.device).manual_seed(ctx.seed)
        a, b = noise_vectors(model, k, g), noise_vectors(model, k, g)
        ya = torch.arange(k) % max(ctx.info.num_classes, 1) if cond else None
        what = f"{k} pairs of draws from the latent prior"
    ref, _, _ = ctx.tensors("train", ctx.option("ref_n", 5000))
    rng = ctx.info.range
    results, strips = {}, {}
    for mode in modes:
        s = strips_between(model, a, b, steps, mode, ya, ctx.batch_size)
        strips[mode] = s
        ends = endpoint_psnr(s, a, b, rng) if between == "codes" else None
        results[mode] = {**path_scores(s, rng), "endpoint_psnr_db": ends,
                         "midpoint_nn_rmse": midpoint_nn_rmse(s, ref, rng)}
    first = strips[modes[0]]
    ea, eb = (a, b) if between == "codes" else (first[:, 0], first[:, -1])
    fade = crossfade(ea.float(), eb.float(), steps)
    results["crossfade"] = {**path_scores(fade, rng), "endpoint_psnr_db": PSNR_CAP_DB if between == "codes" else None,
                            "midpoint_nn_rmse": midpoint_nn_rmse(fade, ref, rng)}
    m = min(8, k)
    figures = []
    for name, s in [*strips.items(), ("crossfade", fade)]:
        rows = s[:m]
        if between == "codes":  # the inputs framing each strip
            rows = torch.cat([a[:m].unsqueeze(1).float(), rows, b[:m].unsqueeze(1).float()], 1)
        figures.append(ctx.save_images(rows.flatten(0, 1), f"interpolation_{name}.png", nrow=rows.shape[1]))
    proto = ctx.protocol(between=what, pairs=k, steps=steps, modes=modes, split=ctx.split,
                         baseline="a pixel cross-fade (1 - t) a + t b between the same ends",
                         distance="mean absolute pixel difference on [0, 1]",
                         midpoints=f"nearest of the first {len(ref)} training images, RMS pixel distance",
                         figures="interpolation_MODE.png: one strip per pair"
                                 + (", framed by the two inputs" if between == "codes" else ""))
    if cond:
        proto["note"] = "a conditional model keeps the first image's label (or class i mod K for noise) along the path"
    return {"results": results, "protocol": proto, "figures": figures}

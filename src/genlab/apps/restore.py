"""Image restoration: denoising, inpainting and colourisation with a trained model, measured by PSNR and SSIM
of the restored image against the clean one, next to the same numbers for the corrupted input itself.

    c = degrade("block", x, 0.4, "01", seed)           # Corrupted: the images x~ and what is known of x
    x_hat = Restorer(model).restore(c, y)              # the model's estimate of x
    restoration_scores(x, c.x, x_hat)                  # {"corrupted": ..., "restored": ...} PSNR / SSIM / gain

Corruptions (`genlab.data.corruptions`, plus colourisation), x in the model's range [lo, hi]:
    gaussian     x~ = clip(x + N(0, (level (hi - lo))^2))           nothing of x is known exactly
    salt_pepper  a fraction `level` of pixels set to lo or hi        nothing is known (which pixels: unknown)
    mask         a fraction `level` of pixels set to lo              known: the mask m (the other pixels)
    block        one square of side level * min(H, W) set to lo      known: m
    half         the bottom half set to lo                           known: m (the top rows)
    gray         x~ = mean_c(x), repeated on every channel           known: the channel mean g (colour data only)
    edges        x~ = the Sobel edge map of x (hi on edges)           nothing of x is known exactly
    blur         x~ = x * Gaussian(sigma = level * side)              nothing is known exactly
    downsample   x~ = bicubic(area-shrink(x, 1 - level))              nothing is known exactly (4x at level 0.75)

Restoration by a model, R the model's map of images to images:
    reconstruct  R(x) = model.reconstruct(x): an autoencoder, denoising AE or VAE maps x~ through itself;
                 an image-to-image model translates it, R(x) = model.translate(x) (pix2pix trained on the kind)
    shrink       R(x) = decode(T * encode(x)), T < 1: a flow (encode is a bijection, so reconstruct is the
                 identity) pulled towards the mode of its prior
    complete     x^ = model.complete(x~, H/2): PixelCNN-type models draw the missing bottom half from
                 p(bottom | top) exactly (half only); `samples` > 1 averages draws (the posterior mean)
    diffuse      x^ = model.posterior_sample(x~, P, sigma): diffusion models run the reverse process with every
                 denoised estimate projected by P (masks, gray), or start it at the Gaussian noise's own level
                 (no salt-and-pepper); `samples` > 1 averages draws
Where something is known, the estimate is projected onto the images consistent with it and the model is
applied again, `rounds` times (a fixed-point iteration, x^(0) = x~):
    x^(t+1) = P(R(x^(t))),  P(r) = m * x~ + (1 - m) * r            (masks: paste the known pixels back)
                            P(r) = clip(r - mean_c(r) + g)          (colourisation: keep the gray image)
Noise has nothing to project on: x^ = R(x~).

The classical baselines: a 3 x 3 median filter for noise; harmonic (diffusion) filling of the unknown pixels
for masks, each repeatedly set to the mean of its 4 neighbours, known pixels fixed; none beyond the input itself
for colourisation (the gray image), blur, edges and downsampling (the input is the bicubic upsampling).
Scores are on pixels in [0, 1]: MSE per pixel, PSNR (dB, capped at 100) and
SSIM per image averaged over images; gain = restored minus corrupted, zero for a model that returns its input.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data.corruptions import CORRUPTIONS, LEVELS, corrupt
from ..data.transforms import RANGES
from ..errors import UserError, unknown
from .reduce import PSNR_CAP_DB, reconstruction_scores
from .registry import AppContext, app, label_args, model_device, model_name, option, positive_int

KINDS = ("gaussian", "salt_pepper", "mask", "block", "half", "gray", "edges", "blur", "downsample")
NOISES = ("gaussian", "salt_pepper")
MASKS = ("mask", "block", "half")
LOSSY = ("edges", "blur", "downsample")  # measured when asked, or when the model was trained on one (pix2pix)
METHODS = ("auto", "reconstruct", "shrink", "complete", "diffuse")


@dataclass
class Corrupted:
    """Corrupted images x (model range) and what is known of the clean ones: `known` (B x 1 x H x W, True
    where the pixel is kept) for masks, `gray` (B x 1 x H x W, the channel mean) for colourisation, `sigma`
    (the std in model units) for Gaussian noise."""

    x: torch.Tensor
    kind: str
    lo: float = 0.0
    hi: float = 1.0
    known: torch.Tensor | None = None
    gray: torch.Tensor | None = None
    sigma: float | None = None

    def __len__(self) -> int:
        return len(self.x)

    @property
    def constrained(self) -> bool:
        return self.known is not None or self.gray is not None

    def part(self, i: int, j: int) -> "Corrupted":
        def cut(t):
            return None if t is None else t[i:j]

        return Corrupted(self.x[i:j], self.kind, self.lo, self.hi, cut(self.known), cut(self.gray), self.sigma)

    def project(self, r: torch.Tensor) -> torch.Tensor:
        """The nearest image (squared error) to r that agrees with what is known of the clean one."""
        if self.known is not None:
            return torch.where(self.known.to(r.device), self.x.to(r.device), r)
        if self.gray is not None:
            return (r - r.mean(1, keepdim=True) + self.gray.to(r.device)).clamp(self.lo, self.hi)
        return r


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Colour images -> their channel mean repeated on every channel (the input of colourisation)."""
    return x.mean(1, keepdim=True).expand_as(x).contiguous()


def degrade(kind: str, x: torch.Tensor, level: float | None, value_range: str = "01", seed: int = 0) -> Corrupted:
    """Corrupt images x (model range, CPU) with a seeded generator; level None = the kind's default."""
    if kind not in KINDS:
        raise unknown("corruption", kind, KINDS)
    lo, hi = RANGES[value_range]
    x = x.detach().float().cpu()
    if kind == "gray":
        if x.shape[1] < 2:
            raise UserError(f"colourisation needs colour images, and these have {x.shape[1]} channel "
                            f"(MNIST has no colour)")
        return Corrupted(grayscale(x), kind, lo, hi, gray=x.mean(1, keepdim=True))
    level = LEVELS[kind] if level is None else level
    if not 0 <= level <= 1:
        raise UserError(f"the corruption level must lie in [0, 1], got {level}")
    out = corrupt(kind, x, level, value_range, torch.Generator().manual_seed(seed))
    known = None
    if kind in MASKS:  # the same draws on an all-`hi` image mark the masked pixels (set to lo)
        probe = corrupt(kind, torch.full_like(x[:, :1], hi), level, value_range, torch.Generator().manual_seed(seed))
        known = probe == hi
    return Corrupted(out, kind, lo, hi, known=known, sigma=level * (hi - lo) if kind == "gaussian" else None)


# ---------------------------------------------------------------- classical baselines
def median3(x: torch.Tensor) -> torch.Tensor:
    """3 x 3 median filter per channel (reflected borders); B x C x H x W -> same."""
    b, c, h, w = x.shape
    p = F.pad(x.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    return F.unfold(p, 3).median(1).values.view(b, c, h, w)


def diffusion_fill(c: Corrupted, iterations: int = 300) -> torch.Tensor:
    """Harmonic inpainting: the unknown pixels start at the mean of the known ones and are repeatedly set to
    the mean of their 4 neighbours (replicated borders); known pixels stay. Without a mask: the input."""
    if c.known is None:
        return c.x.clone()
    x, known = c.x.float(), c.known.expand_as(c.x)
    n_known = known.flatten(2).sum(2).clamp_min(1)
    mean = (x * known).flatten(2).sum(2) / n_known  # B x C
    v = torch.where(known, x, mean[..., None, None].expand_as(x))
    kernel = torch.tensor([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]]).view(1, 1, 3, 3)
    b, ch, h, w = x.shape
    for _ in range(iterations):
        avg = F.conv2d(F.pad(v.view(b * ch, 1, h, w), (1, 1, 1, 1), mode="replicate"), kernel).view(b, ch, h, w)
        v = torch.where(known, x, avg)
    return v


def classical(c: Corrupted) -> tuple[str, torch.Tensor] | None:
    """(name, estimate) of the classical baseline for this corruption, None for colourisation."""
    if c.kind in NOISES:
        return "median3", median3(c.x)
    if c.kind in MASKS:
        return "diffusion", diffusion_fill(c)
    return None


# ---------------------------------------------------------------- restoration by a model
def paired(model) -> bool:
    """An image-to-image model trained on a corruption (pix2pix): `translate(x)` maps the inputs it was trained on,
    which it makes from clean images with `make_input`, to clean images."""
    return hasattr(model, "translate") and hasattr(model, "make_input") and \
        getattr(model.cfg, "pair", None) in CORRUPTIONS


def pick_method(model, kind: str | None = None, method: str = "auto") -> str:
    """The restoration a model supports (module docstring); UserError (one sentence) when it has none."""
    if method not in METHODS:
        raise unknown("restoration method", method, METHODS)
    name = model_name(model)
    if method == "auto":
        if hasattr(model, "posterior_sample"):
            method = "diffuse"
        elif hasattr(model, "complete"):
            method = "complete"
        elif hasattr(model, "log_prob") and hasattr(model, "encode") and hasattr(model, "decode"):
            method = "shrink"  # a flow: its reconstruction is exact, so restore through its prior
        elif hasattr(model, "reconstruct") or paired(model) or (hasattr(model, "encode") and hasattr(model, "decode")):
            method = "reconstruct"
        else:
            raise UserError(f"restoration needs a model that can reconstruct images (`reconstruct`), translate "
                            f"them (`translate`), complete them (`complete`) or encode and decode them, and '{name}' "
                            f"can do none of these")
    need = {"complete": ("complete",), "shrink": ("encode", "decode"), "reconstruct": (),
            "diffuse": ("posterior_sample",)}[method]
    missing = [c for c in need if not hasattr(model, c)]
    if method == "reconstruct" and not (hasattr(model, "reconstruct") or paired(model) or
                                        (hasattr(model, "encode") and hasattr(model, "decode"))):
        missing = ["reconstruct"]
    if missing:
        raise UserError(f"restoration by {method} needs a model that can `{missing[0]}`, and '{name}' cannot")
    if method == "complete" and kind is not None and kind != "half":
        raise UserError(f"'{name}' restores by completing the bottom of an image (`complete`), which fits the "
                        f"half corruption only, not {kind}")
    if method == "diffuse" and kind in ("salt_pepper", *LOSSY):
        raise UserError(f"'{name}' restores through its noise process, which knows Gaussian noise, masks and gray "
                        f"images but not {'salt-and-pepper noise' if kind == 'salt_pepper' else kind}")
    return method


class Restorer:
    """A trained model as a restorer of corrupted images (the methods of the module docstring).

    `rounds`: applications of the model for masks and colourisation, each followed by the projection onto
    what is known (1 = one pass); noise always takes one pass. `temperature`: T of the shrink method.
    `samples`: completions averaged by the complete method. Batched, under no_grad, on the model's device.
    """

    def __init__(self, model, method: str = "auto", rounds: int = 5, temperature: float = 0.8, samples: int = 1,
                 batch_size: int = 256, seed: int = 0):
        self.model, self.method = model, pick_method(model, None, method)
        if rounds < 1 or samples < 1:
            raise UserError(f"rounds and samples must be at least 1, got {rounds} and {samples}")
        self.rounds, self.temperature, self.samples = rounds, temperature, samples
        self.batch_size, self.seed = batch_size, seed

    @property
    def description(self) -> str:
        if self.method == "complete":
            return ("model.complete: the bottom half drawn from p(bottom | top)"
                    + (f", mean of {self.samples} draws" if self.samples > 1 else ", one draw"))
        if self.method == "diffuse":
            return ("model.posterior_sample: DDIM (eta 1) with each denoised estimate projected onto what is known, "
                    "or started at the Gaussian noise's level" + (f", mean of {self.samples} draws" if self.samples > 1
                                                                  else ", one draw"))
        if self.method == "shrink":
            return f"decode({self.temperature:g} * encode(x)), the known pixels pasted back, {self.rounds} rounds"
        fn = "translate" if paired(self.model) else "reconstruct"
        return f"model.{fn}, projected onto what is known after each of {self.rounds} rounds (masks, gray)"

    def _map(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        m, lab = self.model, label_args(self.model, y)
        if self.method == "shrink":
            return m.decode(self.temperature * m.encode(x, *lab), *lab)
        if paired(m):
            return m.translate(x)
        if hasattr(m, "reconstruct"):
            return m.reconstruct(x, *lab)
        return m.decode(m.encode(x, *lab), *lab)

    def _complete(self, c: Corrupted, y: torch.Tensor | None) -> torch.Tensor:
        h = c.x.shape[2]
        rows = h // 2
        if c.known is None or not (c.known[:, :, :rows].all() and not c.known[:, :, rows:].any()):
            raise UserError(f"'{model_name(self.model)}' completes the bottom half of an image (`complete`) and "
                            f"cannot restore a {c.kind} corruption")
        dev = model_device(self.model)
        g = torch.Generator(dev).manual_seed(self.seed)
        lab = label_args(self.model, y)
        draws = [self.model.complete(c.x.to(dev), rows, g, *lab).float() for _ in range(self.samples)]
        return torch.stack(draws).mean(0)

    def _diffuse(self, c: Corrupted, y: torch.Tensor | None) -> torch.Tensor:
        dev = model_device(self.model)
        g = torch.Generator(dev).manual_seed(self.seed)
        x = c.x.to(dev)
        draws = [self.model.posterior_sample(x, c.project, c.sigma, g, y).float() for _ in range(self.samples)]
        return c.project(torch.stack(draws).mean(0))

    @torch.no_grad()
    def restore(self, c: Corrupted, y: torch.Tensor | None = None) -> torch.Tensor:
        """The model's estimate of the clean images; B x C x H x W on the CPU, model range."""
        if len(c) == 0:
            raise UserError("there are no images to restore")
        dev, out = model_device(self.model), []
        for i in range(0, len(c), self.batch_size):
            part = c.part(i, i + self.batch_size)
            yb = None if y is None else y[i : i + self.batch_size].to(dev)
            if self.method == "complete":
                out.append(self._complete(part, yb).cpu())
                continue
            if self.method == "diffuse":
                out.append(self._diffuse(part, yb).cpu())
                continue
            v = part.x.to(dev)
            for _ in range(self.rounds if part.constrained else 1):
                v = part.project(self._map(v, yb).float())
            out.append(v.detach().float().cpu())
        return torch.cat(out)


def restoration_scores(x: torch.Tensor, corrupted: torch.Tensor, restored: torch.Tensor,
                       value_range: str = "01") -> dict[str, dict[str, float]]:
    """{"corrupted": scores, "restored": scores}: mse_per_pixel, psnr_db, ssim against the clean x (on [0, 1]),
    and psnr_gain_db, ssim_gain = restored minus corrupted (0 for the corrupted row)."""
    before = reconstruction_scores(x, corrupted, value_range)
    after = reconstruction_scores(x, restored, value_range)
    return {"corrupted": {**before, "psnr_gain_db": 0.0, "ssim_gain": 0.0},
            "restored": {**after, "psnr_gain_db": after["psnr_db"] - before["psnr_db"],
                         "ssim_gain": after["ssim"] - before["ssim"]}}


# ---------------------------------------------------------------- the application
def _kinds(ctx: AppContext) -> list[str]:
    spec = ctx.option("corruptions")
    colour = ctx.info.channels > 1
    if spec is None:
        if hasattr(ctx.model, "posterior_sample"):
            return [k for k in KINDS if k not in ("salt_pepper", *LOSSY) and (k != "gray" or colour)]
        if hasattr(ctx.model, "complete"):
            return ["half"]
        cfg = getattr(ctx.model, "cfg", None)
        trained = getattr(cfg, "noise", None) or getattr(cfg, "pair", None)  # what a denoiser or pix2pix learnt
        return [k for k in KINDS if (k not in LOSSY or k == trained) and (k != "gray" or colour)]
    kinds = [k.strip() for k in str(spec).split(",") if k.strip()]
    for k in kinds:
        if k not in KINDS:
            raise unknown("corruption", k, KINDS)
    if not kinds:
        raise UserError(f"--corruptions takes names separated by commas, from {', '.join(KINDS)}")
    return list(dict.fromkeys(kinds))


@app("restore", (),
     "restoration: denoising, inpainting and colourisation; PSNR / SSIM of the restored and of the corrupted images",
     options=(option("--corruptions", metavar="LIST",
                     help=f"comma-separated, from {', '.join(KINDS)} (default: every one that fits the model and "
                          f"data; gray needs colour images)"),
              option("--level", type=float, help="the corruption level for every corruption (default: "
                     + ", ".join(f"{k} {v:g}" for k, v in LEVELS.items() if k not in ("half", "gray")) + ")"),
              option("--method", choices=METHODS, help="how the model restores (default auto)"),
              option("--rounds", type=positive_int, help="model passes for masks and colourisation (default 5)"),
              option("--temperature", type=float, help="T of the shrink method for flows (default 0.8)"),
              option("--samples", type=positive_int,
                     help="draws averaged by PixelCNN-type and diffusion models (default 1)")))
def run(ctx: AppContext) -> dict:
    model = ctx.model
    kinds = _kinds(ctx)
    method = ctx.option("method", "auto")
    for k in kinds:
        pick_method(model, k, method)
    restorer = Restorer(model, method, ctx.option("rounds", 5), ctx.option("temperature", 0.8),
                        ctx.option("samples", 1), ctx.batch_size, ctx.seed)
    x, y, _ = ctx.tensors()
    y_arg = y if getattr(model, "conditional", False) else None
    rng, level = ctx.info.range, ctx.option("level")
    results, figures, levels = {}, [], {}
    m = min(12, len(x))
    for kind in kinds:
        c = degrade(kind, x, level, rng, ctx.seed + KINDS.index(kind))  # the same draws whatever else is asked
        levels[kind] = None if kind in ("half", "gray") else (LEVELS[kind] if level is None else level)
        x_hat = restorer.restore(c, y_arg)
        s = restoration_scores(x, c.x, x_hat, rng)
        results[f"{kind}/corrupted"], results[f"{kind}/model"] = s["corrupted"], s["restored"]
        rows, names = [x[:m], c.x[:m], x_hat[:m]], ["clean", kind, restorer.method]
        base = classical(c)
        if base is not None:
            results[f"{kind}/{base[0]}"] = restoration_scores(x, c.x, base[1], rng)["restored"]
            rows.append(base[1][:m])
            names.append(base[0])
        figures.append(ctx.save_images(torch.cat(rows), f"restore_{kind}.png", nrow=m, row_labels=names))
    proto = ctx.protocol(split=ctx.split, n=len(x), corruptions=kinds, levels=levels, method=restorer.method,
                         restoration=restorer.description,
                         baseline="the corrupted input itself; a 3 x 3 median filter for noise, diffusion filling "
                                  "for masks",
                         scale="pixels in [0, 1]", psnr=f"per image, capped at {PSNR_CAP_DB:g} dB, averaged",
                         ssim="Wang et al. 2004, per image",
                         figures="restore_KIND.png rows: clean, corrupted, model, classical baseline (if any)")
    cfg = getattr(model, "cfg", None)
    if getattr(cfg, "noise", None) is not None:
        proto["trained_for"] = f"{cfg.noise} at level {cfg.level:g} (a denoising autoencoder)"
    if getattr(cfg, "pair", None) is not None:
        proto["trained_for"] = f"{cfg.pair} at level {model.level:g} (an image-to-image model's input)"
    if ctx.info.channels == 1:
        proto["colourisation"] = "not measured: the data have one channel (MNIST has no colour)"
    return {"results": results, "protocol": proto, "figures": figures}

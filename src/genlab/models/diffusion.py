"""Denoising diffusion: DDPM (Ho et al. 2020) with DDIM sampling (Song et al. 2021) and classifier-free
guidance (Ho & Salimans 2022).

    forward:   q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I),  abar_t = prod_{s <= t} (1 - beta_s)
    loss:      L_simple = E_{t, x_0, eps} || target - net(x_t, t) ||^2                (Ho et al. eq. 14)
               target = eps | x_0 | v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0      (Salimans & Ho 2022)
    posterior: q(x_{t-1} | x_t, x_0) = N(c1_t x_0 + c2_t x_t, beta~_t I),
               c1_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t), c2_t = sqrt(1 - beta_t) (1 - abar_{t-1}) / (1 - abar_t),
               beta~_t = (1 - abar_{t-1}) beta_t / (1 - abar_t)                        (eqs. 6-7)
    DDPM:      x_{t-1} ~ q(x_{t-1} | x_t, x0_hat(x_t, t)), T steps                    (ancestral)
    DDIM:      x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z,
               sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s)  (Song et al. eq. 12)
    guidance:  eps_hat = eps_u + w (eps_c - eps_u); w = 1 the conditional model, w = 0 the unconditional
    bound:     -log p(x_0) <= KL(q(x_T | x_0) || N(0, I)) + sum_{t >= 2} KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))
                             - log p(x_0 | x_1),  the last a discretised Gaussian on the 256 grey levels   (eq. 5)

Timesteps are 0-based in code: t = 0 .. T-1 stands for the paper's 1 .. T. The network works on [-1, 1]
whatever the data range. Latents (`encode`) are DDIM's deterministic x_T: `decode(encode(x))` returns x up
to the ODE's discretisation error.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..config import check_choice, check_positive
from ..data.transforms import RANGES
from ..errors import UserError
from ..nn.unet import UNet
from .common import CycledLabels, SingleLoss
from .registry import register

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("eps", "x0", "v")
SAMPLERS = ("ddim", "ddpm")
# sized for a CPU run of the default width 32 (1.7 M parameters): Adam at 1e-3 (the paper's 2e-4 is for its 35.7 M),
# batch 64, a 100-step warm-up and no dropout, so that 3 MNIST epochs are 2,808 steps; the paper's gradient
# clipping at 1 and EMA 0.9999 (warmed up); a 16-image epoch grid, as every image costs `steps` passes. At step
# 1,000 of such a run: 10 classes in 1,000 DDIM-50 samples, domain FID-1k 582 (BENCHMARKS.md, issue 13)
DEFAULTS = {"data": {"range": "-11"},
            "train": {"lr": 1e-3, "batch_size": 64, "grad_clip": 1.0, "ema": 0.9999, "warmup_steps": 100,
                      "samples": 16}}


def beta_schedule(kind: str, steps: int) -> torch.Tensor:
    """beta_1 .. beta_T in float64. linear: Ho et al.'s 1e-4 .. 0.02 at T = 1000, rescaled by 1000 / T;
    cosine: Nichol & Dhariwal's abar(t) = cos^2(pi/2 (t/T + s) / (1 + s)), s = 0.008, betas capped at 0.999."""
    if kind == "linear":
        scale = 1000 / steps
        return torch.linspace(1e-4 * scale, 0.02 * scale, steps, dtype=torch.float64)
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    abar = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def discretized_gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """log P(x) of 8-bit levels x on [-1, 1] under N(mean, sigma^2) integrated over each level's bin of width
    2/255; the end bins reach to -inf and +inf. Elementwise."""
    inv = torch.exp(-log_sigma)
    normal = torch.distributions.Normal(0.0, 1.0)
    cdf_hi = normal.cdf((x - mean + 1 / 255) * inv)
    cdf_lo = normal.cdf((x - mean - 1 / 255) * inv)
    log_hi = torch.log(cdf_hi.clamp(min=1e-12))  # the bottom bin: P(X <= x + 1/255)
    log_lo = torch.log((1 - cdf_lo).clamp(min=1e-12))  # the top bin: P(X >= x - 1/255)
    mid = torch.log((cdf_hi - cdf_lo).clamp(min=1e-12))
    return torch.where(x < -0.999, log_hi, torch.where(x > 0.999, log_lo, mid))


@dataclass
class DDPMConfig:
    # U-Net channels at full resolution, sized for a CPU: 32 is 1.7 M parameters and 14 min an MNIST epoch on one
    # core in bf16 (Ho et al.'s CIFAR-10 network: 128, 35.7 M)
    width: int = 32
    mults: tuple[int, ...] = (1, 2, 2)  # channel multiplier per level; len(mults) - 1 downsamplings
    blocks: int = 2  # ResBlocks per level (down path; the up path has one more)
    attention: int = 16  # self-attention at levels whose (padded) side is <= this; 0 = none
    dropout: float = 0.0  # Ho et al.: 0.1 on CIFAR-10's long runs; a 3-epoch CPU run is far from overfitting
    timesteps: int = 1000  # T
    schedule: str = "linear"  # linear | cosine
    prediction: str = "eps"  # what the network predicts: eps | x0 | v
    conditional: bool = False  # class-conditional, trained with label dropout for classifier-free guidance
    p_uncond: float = 0.1  # conditional: share of training labels replaced by the "no label" token
    sampler: str = "ddim"  # ddim | ddpm (ancestral, all T steps)
    steps: int = 50  # DDIM steps
    eta: float = 0.0  # DDIM noise: 0 deterministic, 1 the DDPM posterior's variance
    guidance: float = 1.0  # w in eps_u + w (eps_c - eps_u); 1 = the plain conditional model
    clip_denoised: bool = True  # clamp x0_hat to [-1, 1] while sampling

    def validate(self) -> None:
        for name in ("width", "blocks", "timesteps", "steps"):
            check_positive(f"model.{name}", getattr(self, name))
        if not self.mults or any(m <= 0 for m in self.mults):
            raise UserError(f"model.mults must be positive channel multipliers, e.g. [1, 2, 2], got {list(self.mults)}")
        check_positive("model.attention", self.attention, allow_zero=True)
        check_choice("model.schedule", self.schedule, SCHEDULES)
        check_choice("model.prediction", self.prediction, PREDICTIONS)
        check_choice("model.sampler", self.sampler, SAMPLERS)
        if not 0 <= self.dropout < 1:
            raise UserError(f"model.dropout is a rate in [0, 1), got {self.dropout}")
        if not 0 <= self.p_uncond < 1:
            raise UserError(f"model.p_uncond is a rate in [0, 1), got {self.p_uncond}")
        if self.steps > self.timesteps:
            raise UserError(f"model.steps ({self.steps}) cannot exceed model.timesteps ({self.timesteps})")
        check_positive("model.eta", self.eta, allow_zero=True)
        check_positive("model.guidance", self.guidance, allow_zero=True)


@register("ddpm", DDPMConfig, DEFAULTS)
class DDPM(CycledLabels, SingleLoss, nn.Module):
    """DDPM: a U-Net denoiser, linear or cosine noise schedule, eps/x0/v prediction, DDPM and DDIM samplers."""

    nll_estimator = "variational bound, all T terms (an upper bound on the NLL)"
    nll_meaning = "NLL of 8-bit images (discretised Gaussian decoder on the 256 levels)"

    def __init__(self, cfg: DDPMConfig, info):
        super().__init__()
        self.cfg, self.info = cfg, info
        self.conditional = cfg.conditional
        self.num_classes = info.num_classes if cfg.conditional else 0
        if cfg.conditional and self.num_classes < 2:
            raise UserError("ddpm with model.conditional=true needs labelled data with at least 2 classes")
        self.lo, self.hi = RANGES[info.range]
        self.net = UNet(info.channels, info.channels, max(info.height, info.width), cfg.width, tuple(cfg.mults),
                        cfg.blocks, cfg.attention, cfg.dropout, self.num_classes)
        betas = beta_schedule(cfg.schedule, cfg.timesteps)
        abar = torch.cumprod(1 - betas, 0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        post_var = betas * (1 - abar_prev) / (1 - abar)
        tables = {
            "betas": betas, "abar": abar, "abar_prev": abar_prev,
            "post_var": post_var,
            # beta~_1 = 0: its log uses beta~_2, as only t >= 2 ever samples from it
            "post_logvar": torch.log(torch.cat([post_var[1:2], post_var[1:]])),
            "post_c1": abar_prev.sqrt() * betas / (1 - abar),
            "post_c2": (1 - betas).sqrt() * (1 - abar_prev) / (1 - abar),
        }
        for name, v in tables.items():  # derived from the config: rebuilt on load, never saved
            self.register_buffer(name, v.float(), persistent=False)

    # ------------------------------------------------------------ ranges and tables
    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        """Data range -> [-1, 1]."""
        return (x - self.lo) / (self.hi - self.lo) * 2 - 1

    def to_data(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.clamp(-1, 1) + 1) / 2 * (self.hi - self.lo) + self.lo)

    @staticmethod
    def at(table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """table[t] shaped to broadcast over images: B -> B x 1 x 1 x 1."""
        return table[t][:, None, None, None]

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
        abar = self.at(self.abar, t)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * eps

    def q_posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_{t-1} | x_t, x_0)."""
        return self.at(self.post_c1, t) * x0 + self.at(self.post_c2, t) * xt, self.at(self.post_var, t)

    # ------------------------------------------------------------ the network's prediction
    def target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.cfg.prediction == "eps":
            return eps
        if self.cfg.prediction == "x0":
            return x0
        abar = self.at(self.abar, t)
        return abar.sqrt() * eps - (1 - abar).sqrt() * x0  # v

    def raw(self, xt: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
            guidance: float | None = None) -> torch.Tensor:
        """The network's output at (x_t, t), guided for conditional models: out_u + w (out_c - out_u). Every
        parametrisation is affine in the output with the same coefficients for both, so guiding the output
        guides eps."""
        if not self.conditional:
            return self.net(xt, t)
        w = self.cfg.guidance if guidance is None else guidance
        null = torch.full_like(y, self.num_classes)
        if w == 1:
            return self.net(xt, t, y)
        if w == 0:
            return self.net(xt, t, null)
        out_c, out_u = self.net(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
        return out_u + w * (out_c - out_u)

    def predict(self, xt: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                guidance: float | None = None, clip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(eps_hat, x0_hat) at (x_t, t); with `clip`, x0_hat is clamped to [-1, 1] and eps_hat made consistent."""
        out = self.raw(xt, t, y, guidance).float()
        abar = self.at(self.abar, t)
        a, s = abar.sqrt(), (1 - abar).sqrt()
        if self.cfg.prediction == "eps":
            eps, x0 = out, (xt - s * out) / a
        elif self.cfg.prediction == "x0":
            eps, x0 = (xt - a * out) / s, out
        else:  # v
            eps, x0 = s * xt + a * out, a * xt - s * out
        if clip:
            x0 = x0.clamp(-1, 1)
            eps = (xt - a * x0) / s
        return eps, x0

    # ------------------------------------------------------------ training
    def losses(self, x, y=None):
        x0 = self.to_model(x)
        b = len(x0)
        t = torch.randint(0, self.cfg.timesteps, (b,), device=x0.device)
        eps = torch.randn_like(x0)
        labels = None
        if self.conditional:  # label dropout: the same network learns p(x) under the "no label" token
            drop = torch.rand(b, device=x0.device) < self.cfg.p_uncond
            labels = torch.where(drop, torch.full_like(y, self.num_classes), y)
        out = self.net(self.q_sample(x0, t, eps), t, labels)
        loss = F.mse_loss(out.float(), self.target(x0, eps, t))  # mean over pixels and images
        return {"loss": loss}

    # ------------------------------------------------------------ sampling
    def timestep_sequence(self, steps: int) -> list[int]:
        """`steps` timesteps evenly spaced over 0 .. T-1, descending (DDIM's tau, always ending at 0)."""
        if not 1 <= steps <= self.cfg.timesteps:
            raise UserError(f"sampling steps must be in [1, {self.cfg.timesteps}] (model.timesteps), got {steps}")
        seq = torch.linspace(0, self.cfg.timesteps - 1, steps).round().long().unique()
        return seq.flip(0).tolist()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None,
               steps: int | None = None, eta: float | None = None, guidance: float | None = None,
               sampler: str | None = None) -> torch.Tensor:
        """n images from x_T ~ N(0, I): DDIM over `steps` timesteps, or ancestral DDPM over all T; -> data range."""
        if guidance is not None and not self.conditional:
            raise UserError("classifier-free guidance needs a class-conditional model (model.conditional=true)")
        device = self.abar.device
        xt = torch.randn((n, *self.info.shape), generator=generator, device=device, dtype=torch.float32)
        labels = self._labels(y, n, device)
        if (sampler or self.cfg.sampler) == "ddpm":
            return self.to_data(self._ddpm(xt, labels, generator, guidance))
        return self.to_data(self._ddim(xt, labels, self.cfg.steps if steps is None else steps,
                                       self.cfg.eta if eta is None else eta, generator, guidance))

    def _ddpm(self, xt, y, generator, guidance) -> torch.Tensor:
        for t in tqdm(range(self.cfg.timesteps - 1, -1, -1), desc="DDPM", unit="step", disable=None, leave=False):
            tt = torch.full((len(xt),), t, device=xt.device, dtype=torch.long)
            _, x0 = self.predict(xt, tt, y, guidance, clip=self.cfg.clip_denoised)
            mean, var = self.q_posterior(x0, xt, tt)
            noise = torch.randn(xt.shape, generator=generator, device=xt.device) if t else 0.0
            xt = mean + var.sqrt() * noise
        return xt

    def _ddim(self, xt, y, steps: int, eta: float, generator, guidance, clip: bool | None = None) -> torch.Tensor:
        """DDIM over `steps` timesteps from x_T down to x_0."""
        if eta < 0:
            raise UserError(f"eta must be >= 0, got {eta}")
        return self._ddim_from(xt, self.timestep_sequence(steps), y, eta, generator, guidance=guidance, clip=clip)

    def _ddim_from(self, xt, seq: list[int], y, eta: float, generator, project=None, guidance=None,
                   clip: bool | None = None) -> torch.Tensor:
        """DDIM from x at seq[0] through the descending timesteps `seq` to x_0 (abar = 1 after the last);
        `project` (on [-1, 1]) is applied to every x0_hat."""
        clip = self.cfg.clip_denoised if clip is None else clip
        for i, t in enumerate(tqdm(seq, desc="DDIM", unit="step", disable=None, leave=False)):
            tt = torch.full((len(xt),), t, device=xt.device, dtype=torch.long)
            eps, x0 = self.predict(xt, tt, y, guidance, clip=clip)
            if project is not None:
                x0 = project(x0)
            abar = self.abar[t]
            abar_s = self.abar[seq[i + 1]] if i + 1 < len(seq) else torch.ones_like(abar)
            sigma = eta * ((1 - abar_s) / (1 - abar) * (1 - abar / abar_s)).sqrt()
            xt = abar_s.sqrt() * x0 + (1 - abar_s - sigma**2).clamp(min=0).sqrt() * eps
            if eta > 0 and i + 1 < len(seq):
                xt = xt + sigma * torch.randn(xt.shape, generator=generator, device=xt.device)
        return xt

    # ------------------------------------------------------------ restoration: sampling given what is known
    @torch.no_grad()
    def posterior_sample(self, x: torch.Tensor, project, sigma: float | None = None,
                         generator: torch.Generator | None = None, y: torch.Tensor | None = None,
                         steps: int | None = None) -> torch.Tensor:
        """Draw clean images consistent with corrupted ones x (data range); -> data range.

        Known pixels or a known gray image (`project` maps data-range images onto those consistent with what is
        known): from x_T ~ N(0, I), DDIM with eta = 1 whose x0_hat is projected at every step,
            x_s = sqrt(abar_s) P(x0_hat) + sqrt(1 - abar_s - sigma_s^2) eps_hat + sigma_s z
        (the projection form of RePaint, Lugmayr et al. 2022, and DDNM, Wang et al. 2023).
        Gaussian noise of std `sigma` (data units): x~ = x + sigma_m eps is x_t / sqrt(abar_t) at the t where
        (1 - abar_t) / abar_t = sigma_m^2, so the reverse process starts there from sqrt(abar_t) x~ (SDEdit,
        Meng et al. 2022, at the noise's own level).
        """
        labels = self._labels(y, len(x), x.device)
        n_steps = self.cfg.steps if steps is None else steps
        if sigma is not None:
            sigma_m = sigma * 2 / (self.hi - self.lo)
            t = int(((1 - self.abar) / self.abar - sigma_m**2).abs().argmin())
            seq = [s for s in self.timestep_sequence(n_steps) if s < t]
            xt = self.abar[t].sqrt() * self.to_model(x).float()
            return self.to_data(self._ddim_from(xt, [t, *seq], labels, 1.0, generator))
        xt = torch.randn(x.shape, generator=generator, device=x.device)
        return self.to_data(self._ddim_from(xt, self.timestep_sequence(n_steps), labels, 1.0, generator,
                                            lambda x0: self.to_model(project(self.to_data(x0)))))

    # ------------------------------------------------------------ DDIM inversion: the deterministic latent
    @torch.no_grad()
    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None, steps: int | None = None) -> torch.Tensor:
        """x -> x_T by running DDIM's ODE forwards (eta = 0, no clipping); -> B x D."""
        labels = self._labels(y, len(x), x.device)
        seq = self.timestep_sequence(self.cfg.steps if steps is None else steps)[::-1]  # ascending
        h = self.to_model(x).float()
        abar_prev = torch.ones((), device=x.device)
        for t in seq:  # from abar_prev to abar_t, with eps evaluated at the current point (Song et al. sec. 4.3)
            tt = torch.full((len(h),), t, device=x.device, dtype=torch.long)
            eps = self.predict(h, tt, labels)[0]
            abar = self.abar[t]
            x0 = (h - (1 - abar_prev).sqrt() * eps) / abar_prev.sqrt()
            h = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
            abar_prev = abar
        return h.flatten(1)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None, steps: int | None = None) -> torch.Tensor:
        """x_T (B x D) -> images by deterministic DDIM (eta = 0, no clipping): the inverse of `encode`."""
        labels = self._labels(y, len(z), z.device)
        xt = z.view(len(z), *self.info.shape).float()
        return self.to_data(self._ddim(xt, labels, self.cfg.steps if steps is None else steps, 0.0, None, None,
                                       clip=False))

    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """decode(encode(x)): x back through DDIM's deterministic round trip."""
        return self.decode(self.encode(x, y), y)

    @property
    def latent_dim(self) -> int:
        return self.info.dim

    # ------------------------------------------------------------ the variational bound
    @torch.no_grad()
    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
        """Minus the variational bound on -log P(x) of the 8-bit image, nats per image: a lower bound on the
        log-likelihood (T network passes per image; one seeded draw of x_t per term, so repeatable). -> B"""
        if self.info.binarized != "none" or self.info.dequantized:
            raise UserError("the ddpm bound is for 8-bit images: train without data.binarize and data.dequantize")
        x0 = self.to_model(x).float()
        labels = self._labels(y, len(x), x.device)
        b, T = len(x0), self.cfg.timesteps
        g = torch.Generator(x.device).manual_seed(seed)
        last = torch.full((b,), T - 1, device=x.device, dtype=torch.long)
        abar_T = self.at(self.abar, last)
        prior = normal_kl(abar_T.sqrt() * x0, torch.log(1 - abar_T), torch.zeros_like(x0), torch.zeros_like(x0))
        total = prior.flatten(1).sum(1)  # L_T
        for t in range(T - 1, -1, -1):
            tt = torch.full((b,), t, device=x.device, dtype=torch.long)
            xt = self.q_sample(x0, tt, torch.randn(x0.shape, generator=g, device=x.device))
            _, x0_hat = self.predict(xt, tt, labels, guidance=1.0, clip=False)
            if t:  # L_{t-1}: KL between the true and the model's posterior, the model's variance beta~_t
                true_mean, _ = self.q_posterior(x0, xt, tt)
                model_mean, _ = self.q_posterior(x0_hat, xt, tt)
                logvar = self.at(self.post_logvar, tt)
                total = total + normal_kl(true_mean, logvar, model_mean, logvar).flatten(1).sum(1)
            else:  # L_0: the decoder p(x_0 | x_1) = N(x0_hat, beta_1), discretised to the 256 levels
                log_sigma = 0.5 * torch.log(self.at(self.betas, tt)).expand_as(x0)
                total = total - discretized_gaussian_log_prob(x0, x0_hat, log_sigma).flatten(1).sum(1)
        return -total

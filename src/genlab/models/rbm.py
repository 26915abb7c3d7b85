"""The restricted Boltzmann machine on binary images (Smolensky 1986; Hinton 2002), trained with contrastive
divergence (CD-k) or persistent CD (Tieleman 2008), its likelihood estimated by annealed importance sampling
(Salakhutdinov & Murray 2008).

    E(v, h) = -b.v - c.h - v^T W h,   p(v, h) = exp(-E) / Z
    F(v) = -log sum_h exp(-E(v, h)) = -b.v - sum_j softplus(c_j + v^T W_j)          (free energy)
    p(h_j = 1 | v) = sigmoid(c_j + v^T W_j),   p(v_i = 1 | h) = sigmoid(b_i + W_i h)

The log-likelihood gradient is E_data[-dF/dtheta] - E_model[-dF/dtheta]; CD-k replaces the model's expectation by
v_k, k Gibbs steps from the data (PCD: from chains kept across updates), so the training loss is
F(v_data) - F(v_k) with v_k held fixed, whose gradient is exactly that estimate.

AIS estimates log Z from a base machine A with no weights (Z_A known) through the tempered machines
p_beta(v) ~ exp((1 - beta) b_A.v + beta b.v) prod_j (1 + exp(beta (c_j + v^T W_j))), beta from 0 to 1, with
one Gibbs transition at each beta; log p(v) = -F(v) - log Z is then an estimate, reported with its spread.
A is Salakhutdinov & Murray's base-rate model: b_A is the log-odds of each pixel's mean over the training images
the machine saw (counted in buffers while it trains), which starts the chains near the data and keeps the
importance weights' spread small; an untrained machine uses b_A = 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_positive
from ..errors import UserError
from .autoregressive import AR_DEFAULTS
from .common import BinaryImages, SingleLoss, require_binary
from .registry import register

# SGD with momentum, as Hinton's practical guide (2010) trains RBMs; binarised MNIST. Samples, evaluation and
# applications use an average of the weights (EMA 0.99, about the last 100 updates): CD's weights oscillate, and
# the raw machine's samples swing between digits from one epoch to the next (3 epochs, seeds 0 and 1: 10 / 7 / 10
# and 7 / 8 / 5 classes, 4 collapse warnings in 6 checks; averaged: 10 / 10 / 10 and 10 / 9 / 10, 1; BENCHMARKS.md)
RBM_DEFAULTS = {"data": AR_DEFAULTS["data"], "train": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
                                                      "weight_decay": 1e-4, "batch_size": 100, "samples": 16,
                                                      "ema": 0.99}}
AIS_SEED = 0
CHAIN_SNAPSHOTS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)  # Gibbs steps shown by the chain figure


@dataclass
class RBMConfig:
    units: int = 500  # binary hidden units (Salakhutdinov & Murray's 500)
    # Gibbs steps per negative sample: CD-25, Salakhutdinov & Murray's best MNIST RBM; CD-1 machines mix so poorly
    # that chains from noise stay in one state (3 epochs of MNIST: 1 class of 10 in 1000 samples; CD-25: BENCHMARKS.md)
    k: int = 25
    persistent: bool = False  # persistent CD: the negative chains continue across updates
    chains: int = 100  # persistent chains (PCD only)
    sample_steps: int = 1000  # Gibbs steps from noise for `sample`
    ais_betas: int = 10000  # intermediate temperatures of AIS (the paper: 14,500)
    ais_runs: int = 100  # independent AIS runs averaged for log Z

    def validate(self) -> None:
        for name in ("units", "k", "chains", "sample_steps", "ais_betas", "ais_runs"):
            check_positive(f"model.{name}", getattr(self, name))
        if self.ais_runs < 2:
            raise UserError("model.ais_runs needs at least 2 runs to state the estimate's spread")


@register("rbm", RBMConfig, RBM_DEFAULTS)
class RBM(BinaryImages, SingleLoss, nn.Module):
    """Binary RBM: CD-k or persistent CD, Gibbs sampling with a chain figure, AIS log-likelihood estimate."""

    nll_estimator = "annealed importance sampling of log Z (an estimate; its spread is in log_z_spread)"

    def __init__(self, cfg: RBMConfig, info):
        super().__init__()
        require_binary("rbm", info)
        self.cfg, self.info = cfg, info
        d = info.dim
        self.W = nn.Parameter(torch.randn(d, cfg.units) * 0.01)  # Hinton's guide: N(0, 0.01^2)
        self.b = nn.Parameter(torch.zeros(d))
        self.c = nn.Parameter(torch.zeros(cfg.units))
        # PCD's chains, saved with the weights so that a resumed run continues them
        if cfg.persistent:
            self.register_buffer("chains", torch.bernoulli(torch.full((cfg.chains, d), 0.5)))
        # the training pixels' sums and count, for AIS's base-rate machine (saved with the weights)
        self.register_buffer("pixel_sums", torch.zeros(d, dtype=torch.float64))
        self.register_buffer("pixels_seen", torch.zeros((), dtype=torch.float64))
        self._log_z: tuple[tuple, dict] | None = None

    # ------------------------------------------------------------ energy and conditionals
    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) = -b.v - sum_j softplus(c_j + v^T W_j) for binary pixels B x D; -> B (anomaly scores use -F)."""
        return -(v @ self.b) - F.softplus(v @ self.W + self.c).sum(1)

    def gibbs(self, v: torch.Tensor, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`steps` alternating draws h ~ p(h | v), v ~ p(v | h); -> the last v (binary)."""
        for _ in range(steps):
            h = torch.bernoulli(torch.sigmoid(v @ self.W + self.c), generator=generator)
            v = torch.bernoulli(torch.sigmoid(h @ self.W.t() + self.b), generator=generator)
        return v

    def visible_mean(self, v: torch.Tensor) -> torch.Tensor:
        """E[v' | h ~ p(h | v)] with h at its mean: the one-step reconstruction, B x D."""
        return torch.sigmoid(torch.sigmoid(v @ self.W + self.c) @ self.W.t() + self.b)

    # ------------------------------------------------------------ training
    def losses(self, x, y=None):
        v = self._bits(x)
        with torch.no_grad():
            if self.training:
                self.pixel_sums += v.sum(0).double()
                self.pixels_seen += len(v)
            if self.cfg.persistent and self.training:
                self.chains.copy_(self.gibbs(self.chains, self.cfg.k))
                negative = self.chains
            else:
                negative = self.gibbs(v, self.cfg.k)
            recon = (self.visible_mean(v) - v).pow(2).sum(1).mean()
        gap = self.free_energy(v).mean() - self.free_energy(negative).mean()  # its gradient is CD's
        return {"loss": gap, "recon_error": recon}  # a monitor: the one-step reconstruction's squared error

    # ------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images: `sample_steps` Gibbs steps from uniform noise, shown as the last step's p(v | h)."""
        v = torch.bernoulli(torch.full((n, self.info.dim), 0.5, device=self.W.device), generator=generator)
        v = self.gibbs(v, self.cfg.sample_steps - 1, generator)
        h = torch.bernoulli(torch.sigmoid(v @ self.W + self.c), generator=generator)
        return self._images(torch.sigmoid(h @ self.W.t() + self.b))

    @torch.no_grad()
    def figures(self, out_dir: str | Path, generator: torch.Generator | None = None) -> list[Path]:
        """gibbs_chain.png: 8 chains from noise (rows) after 1, 2, 5, ..., 1000 Gibbs steps (columns)."""
        from ..viz import save_grid, upscale_for_display

        v = torch.bernoulli(torch.full((8, self.info.dim), 0.5, device=self.W.device), generator=generator)
        frames, done = [], 0
        for step in CHAIN_SNAPSHOTS:
            v = self.gibbs(v, step - done, generator)
            done = step
            frames.append(self.visible_mean(v))
        grid = torch.stack(frames, 1).flatten(0, 1).view(-1, *self.info.shape)  # chain-major: one chain a row
        path = Path(out_dir) / "gibbs_chain.png"
        return [save_grid(grid, path, nrow=len(CHAIN_SNAPSHOTS), scale=upscale_for_display(self.info.height))]

    # ------------------------------------------------------------ likelihood by AIS
    @torch.no_grad()
    def log_partition(self, generator: torch.Generator | None = None) -> dict:
        """AIS estimate of log Z: {"log_z", "log_z_spread" (3 standard errors, in nats), "runs", "betas"}; computed
        once per set of weights, with a fixed seed unless a generator is given."""
        key = tuple(p._version for p in self.parameters()) + (self.W.data_ptr(),)
        if self._log_z is not None and self._log_z[0] == key:
            return self._log_z[1]
        cfg, d = self.cfg, self.info.dim
        if generator is None:  # a fixed seed: the same weights always give the same estimate
            generator = torch.Generator(self.W.device).manual_seed(AIS_SEED)
        betas = torch.linspace(0, 1, cfg.ais_betas + 1, device=self.W.device, dtype=torch.float64)
        W, b, c = self.W.double(), self.b.double(), self.c.double()
        b_a = self.base_rate_biases().double()  # the base machine: no weights, visible biases b_A

        def log_p_star(v, beta):  # log p*_beta(v) (unnormalised)
            return (1 - beta) * (v @ b_a) + beta * (v @ b) + F.softplus(beta * (v @ W + c)).sum(1)

        v = torch.bernoulli(torch.sigmoid(b_a).expand(cfg.ais_runs, d).contiguous(), generator=generator)
        log_w = torch.zeros(cfg.ais_runs, dtype=torch.float64, device=self.W.device)
        for k in range(1, len(betas)):
            log_w += log_p_star(v, betas[k]) - log_p_star(v, betas[k - 1])
            h = torch.bernoulli(torch.sigmoid(betas[k] * (v @ W + c)), generator=generator)  # T_k keeps p_k
            v = torch.bernoulli(torch.sigmoid((1 - betas[k]) * b_a + betas[k] * (h @ W.t() + b)), generator=generator)
        # Z_0 of p*_0(v) = exp(b_A.v) 2^H: the base's visible units, and each hidden unit's factor 1 + e^0
        log_z_0 = F.softplus(b_a).sum() + cfg.units * math.log(2)
        log_mean_w = torch.logsumexp(log_w, 0) - math.log(cfg.ais_runs)
        w = torch.exp(log_w - log_w.max())
        rel_se = float(w.std() / (w.mean() * math.sqrt(cfg.ais_runs)))  # standard error of the mean weight, relative
        result = {"log_z": float(log_z_0 + log_mean_w), "log_z_spread": 3 * math.log1p(rel_se),
                  "runs": cfg.ais_runs, "betas": cfg.ais_betas}
        self._log_z = (key, result)
        return result

    def base_rate_biases(self) -> torch.Tensor:
        """b_A = log-odds of the training pixels' means (add-one smoothed), zeros before any training; -> D."""
        mean = (self.pixel_sums + 1) / (self.pixels_seen + 2)
        return torch.log(mean) - torch.log1p(-mean)

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x) = -F(x) - log Z, log Z by AIS (an estimate: see `log_partition`); -> B."""
        return -self.free_energy(self._bits(x)) - self.log_partition()["log_z"]

    @property
    def nll_meaning(self) -> str:
        z = self.log_partition()
        return (f"NLL of {self.info.binarized}ally binarised images; log Z = {z['log_z']:.2f} +- "
                f"{z['log_z_spread']:.2f} nats (AIS, {z['runs']} runs, {z['betas']} temperatures, 3 standard errors)")

"""FFJORD (Grathwohl et al. 2019): a continuous normalising flow, dz/dt = f(z, t), solved by torchdiffeq.

The image is first mapped to logit space, y = logit(alpha + (1 - 2 alpha) x) (RealNVP's pre-processing; alpha =
1e-6 on MNIST), then carried from t = 0 (data) to t = 1 (latent) by the learned dynamics. The log-density follows
the instantaneous change of variables (Chen et al. 2018, theorem 1):

    d log p(z(t)) / dt = -tr(df/dz(t))   =>   log p(x) = log N(z(1); 0, I) + int_0^1 tr(df/dz(t)) dt + log|dy/dx|

Training estimates the trace with Hutchinson's estimator, tr(A) = E[e^T A e] for e with E[e e^T] = I (one noise
draw per solve, Rademacher by default), at the cost of one vector-Jacobian product; evaluation can take the exact
trace (one product per dimension: small images only). The ODE is solved with an adaptive Runge-Kutta method at
the set tolerances; `model.adjoint` backpropagates through the adjoint ODE instead of the solver's steps (memory
independent of the step count).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_choice, check_positive
from ..data.transforms import RANGES
from ..errors import UserError
from ..losses import discrete_nll
from ..nn.flows import Logit
from .common import SingleLoss
from .flows import DEFAULTS
from .registry import register

LOG_2PI = math.log(2 * math.pi)
TRACES = ("hutchinson", "exact")
PROBE_SEED = 0
EXACT_TRACE_MAX_DIM = 1024  # the exact trace costs D vector-Jacobian products per function evaluation


@dataclass
class FFJORDConfig:
    width: int = 64  # feature maps of the dynamics network
    layers: int = 3  # hidden conv layers of f(z, t) (time enters every layer as an extra channel)
    alpha: float = 1e-6  # logit pre-processing (MNIST's value; 0.05 for natural images)
    solver: str = "dopri5"  # any torchdiffeq method: dopri5 (adaptive), rk4, euler, ...
    rtol: float = 1e-5  # the paper's tolerances
    atol: float = 1e-5
    adjoint: bool = True  # gradients through the adjoint ODE (constant memory)
    train_trace: str = "hutchinson"  # hutchinson | exact
    eval_trace: str = "hutchinson"  # hutchinson (a fixed probe: an unbiased log p estimate) | exact (<= 1,024 pixels)
    noise: str = "rademacher"  # Hutchinson's probe: rademacher | gaussian
    temperature: float = 1.0  # sampling: z(1) ~ N(0, T^2 I)

    def validate(self) -> None:
        check_positive("model.width", self.width)
        check_positive("model.layers", self.layers)
        check_positive("model.alpha", self.alpha)
        if self.alpha >= 0.5:
            raise UserError(f"model.alpha must be below 0.5 (the logit squeezes [0, 1] into [alpha, 1 - alpha]), "
                            f"got {self.alpha}")
        check_positive("model.rtol", self.rtol)
        check_positive("model.atol", self.atol)
        check_choice("model.train_trace", self.train_trace, TRACES)
        check_choice("model.eval_trace", self.eval_trace, TRACES)
        check_choice("model.noise", self.noise, ("rademacher", "gaussian"))
        check_positive("model.temperature", self.temperature, allow_zero=True)


class ConcatConv(nn.Module):
    """A 3x3 convolution that also sees the time t as one constant input channel."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in + 1, c_out, 3, padding=1)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([x, t.expand(len(x), 1, *x.shape[2:])], 1))


class Dynamics(nn.Module):
    """f(z, t): concat-conv layers with softplus, the last one linear (FFJORD's image dynamics, one scale)."""

    def __init__(self, channels: int, width: int, layers: int):
        super().__init__()
        sizes = [channels, *[width] * layers, channels]
        self.convs = nn.ModuleList(ConcatConv(a, b) for a, b in zip(sizes, sizes[1:]))

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = z
        for i, conv in enumerate(self.convs):
            h = conv(t, h)
            if i < len(self.convs) - 1:
                h = F.softplus(h)
        return h


def exact_trace(f: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """tr(df/dz) per sample, one vector-Jacobian product per dimension; f, z: B x ... -> B."""
    f_flat = f.flatten(1)
    total = torch.zeros(len(z), device=z.device, dtype=z.dtype)
    for i in range(f_flat.shape[1]):
        grad = torch.autograd.grad(f_flat[:, i].sum(), z, create_graph=True)[0]
        total = total + grad.flatten(1)[:, i]
    return total


def hutchinson_trace(f: torch.Tensor, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """e^T (df/dz) e per sample (unbiased for tr(df/dz) when E[e e^T] = I); -> B."""
    vjp = torch.autograd.grad(f, z, e, create_graph=True)[0]
    return (vjp * e).flatten(1).sum(1)


class Augmented(nn.Module):
    """The ODE of the pair (z, a), dz/dt = f(z, t), da/dt = tr(df/dz): a(1) is the log-density's change."""

    def __init__(self, dynamics: Dynamics):
        super().__init__()
        self.dynamics = dynamics
        self.trace, self.probe = "exact", None
        self.evaluations = 0

    def forward(self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        z, _ = state
        self.evaluations += 1
        with torch.enable_grad():
            z = z if z.requires_grad else z.requires_grad_(True)
            f = self.dynamics(t.to(z.dtype), z)
            if self.trace == "none":  # encoding and decoding need no density
                return f, torch.zeros(len(z), device=z.device, dtype=z.dtype)
            tr = exact_trace(f, z) if self.trace == "exact" else hutchinson_trace(f, z, self.probe)
        return f, tr


@register("ffjord", FFJORDConfig, DEFAULTS)
class FFJORD(SingleLoss, nn.Module):
    """FFJORD: continuous flow with Hutchinson's trace in training, the exact trace at evaluation, via torchdiffeq."""

    conditional = False

    def __init__(self, cfg: FFJORDConfig, info):
        super().__init__()
        self.cfg, self.info = cfg, info
        if cfg.eval_trace == "exact" and info.dim > EXACT_TRACE_MAX_DIM:
            raise UserError(f"model.eval_trace=exact takes {info.dim} vector-Jacobian products per step for "
                            f"{'x'.join(map(str, info.shape))} images (at most {EXACT_TRACE_MAX_DIM}); "
                            f"set model.eval_trace=hutchinson (an unbiased estimate)")
        self.lo, self.hi = RANGES[info.range]
        self.logit = Logit(cfg.alpha, self.lo, self.hi)
        self.ode = Augmented(Dynamics(info.channels, cfg.width, cfg.layers))
        self.register_buffer("times", torch.tensor([0.0, 1.0]), persistent=False)

    def _solve(self, z: torch.Tensor, times: torch.Tensor, trace: str, generator=None):
        """Integrate (z, a) over `times`; -> (z at the end, a at the end: the integral of the trace)."""
        from torchdiffeq import odeint, odeint_adjoint

        self.ode.trace = trace
        if trace == "hutchinson":
            e = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
            self.ode.probe = e.sign() if self.cfg.noise == "rademacher" else e
        a0 = torch.zeros(len(z), device=z.device, dtype=z.dtype)
        solve = odeint_adjoint if self.cfg.adjoint and torch.is_grad_enabled() else odeint
        extra = {"adjoint_params": tuple(self.ode.parameters())} if solve is odeint_adjoint else {}
        zs, a_s = solve(self.ode, (z, a0), times.to(z.dtype), rtol=self.cfg.rtol, atol=self.cfg.atol,
                        method=self.cfg.solver, **extra)
        return zs[-1], a_s[-1]

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x) on the data's range in nats per image; the trace is exact or Hutchinson's as the mode says."""
        trace = self.cfg.train_trace if self.training else self.cfg.eval_trace
        # training draws its probe from the step's seeded stream; evaluation always uses the same one, so that one
        # set of weights gives one estimate
        probe = None if self.training else torch.Generator(x.device).manual_seed(PROBE_SEED)
        y_, logdet = self.logit(x)
        z1, trace_integral = self._solve(y_, self.times, trace, probe)
        prior = -0.5 * (z1.pow(2) + LOG_2PI).flatten(1).sum(1)
        return prior + trace_integral + logdet

    def losses(self, x, y=None):
        nll = -self.log_prob(x).mean()
        discrete = discrete_nll(nll.detach(), self.info.dim, self.info.range) if self.info.dequantized else nll.detach()
        return {"loss": nll, "bits_per_dim": discrete / (self.info.dim * math.log(2))}

    @property
    def nll_estimator(self) -> str:
        trace = ("the exact trace of df/dz (one vector-Jacobian product per dimension)" if self.cfg.eval_trace == "exact"
                 else f"Hutchinson's trace estimate ({self.cfg.noise} probe, seed {PROBE_SEED}): unbiased for log p")
        return f"{trace}; ODE solved by {self.cfg.solver} at rtol {self.cfg.rtol:g}, atol {self.cfg.atol:g}"

    # ------------------------------------------------------------ latents and samples
    @torch.no_grad()
    def encode(self, x, y=None):
        """x -> z(1), B x D."""
        z1, _ = self._solve(self.logit(x)[0], self.times, "none")
        return z1.flatten(1)

    @torch.no_grad()
    def decode(self, z, y=None):
        """z(1), B x D -> images: the dynamics run backwards from t = 1 to 0, then the inverse logit."""
        z = z.view(len(z), *self.info.shape)
        y_, _ = self._solve(z, self.times.flip(0), "none")
        return self.logit.inverse(y_).clamp(self.lo, self.hi)

    def reconstruct(self, x, y=None):
        return self.decode(self.encode(x))

    @property
    def latent_dim(self) -> int:
        return self.info.dim

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float | None = None):
        t = self.cfg.temperature if temperature is None else temperature
        z = torch.randn(n, self.info.dim, generator=generator, device=self.times.device)
        return self.decode(t * z)

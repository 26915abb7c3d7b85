"""Sampling priors fitted to a VAE's codes after (or during) training, instead of the N(0, I) it was trained with.

A VAE's aggregate posterior q(z) = E_x q(z | x) does not fill N(0, I): prior draws land in holes between the
classes' clusters and decode to blends. Sampling where the codes are closes that gap without retraining the
first model. Two estimators of q(z), each kept in buffers so that checkpoints carry it (LATENT_PRIORS):

mixture: ex-post density estimation (Ghosh et al. 2020, "From variational to deterministic autoencoders"), a
K-component full-covariance Gaussian mixture fitted by EM (scikit-learn's GaussianMixture, k-means start) to the
posterior means.

    p_mix(z) = sum_k pi_k N(z; mu_k, Sigma_k),   Sigma_k = L_k L_k^T
    z ~ p_mix:  k ~ Cat(pi),  z = mu_k + L_k eps,  eps ~ N(0, I)

two-stage: Dai & Wipf (2019, "Diagnosing and enhancing VAE models", Sec. 4), a second VAE on the codes. With a
learned decoder variance the first VAE's reconstructions sharpen while its KL grows and q(z) drifts from N(0, I);
the second VAE, u -> z, has as many latents as z has dimensions and learns q(z) itself (Sec. 4's argument: a VAE
whose latent count equals the data's dimension can match a distribution that has no low-dimensional manifold).
Its networks are MLPs whose last hidden layer sits beside its input (the paper's code):

    encoder:  t = MLP(z);   [mu_u, log sd_u] = W [z; t]            decoder:  s = MLP(u);   z_hat = V [u; s]
    -ELBO(z) = ||z - z_hat(u)||^2 / (2 gamma^2) + d log gamma + d/2 log 2 pi + KL(N(mu_u, sd_u^2) || N(0, I))
    training codes: z = mu(x) + sd(x) eps, a fresh draw from q(z | x) at every pass
    z ~ p_two-stage:  u ~ N(0, I),  z = z_hat(u) + gamma eps

gamma is one learned scalar. The second stage's weights are buffers, not parameters: the first model's optimizer
and its weight average never touch them, and `fit` trains copies of them (torch.func.functional_call).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

from ..errors import UserError


class GaussianMixtureLatents(nn.Module):
    """A K-component full-covariance Gaussian mixture over d-dimensional codes: `fit` by EM, `sample` by ancestry."""

    slot = "mixture"  # the attribute (and state-dict prefix) a VAE keeps it under
    title = "latent mixture"

    def __init__(self, dim: int, components: int):
        super().__init__()
        self.register_buffer("weights", torch.full((components,), 1.0 / components))
        self.register_buffer("means", torch.zeros(components, dim))
        self.register_buffer("chol", torch.eye(dim).repeat(components, 1, 1))  # K x d x d, lower triangular
        self.register_buffer("fitted", torch.zeros(()))  # 1.0 once fitted (float: broadcastable by any backend)

    @classmethod
    def from_config(cls, cfg) -> GaussianMixtureLatents:
        return cls(cfg.latent_dim, cfg.prior_components)

    @torch.no_grad()
    def fit(self, z: torch.Tensor, sd: torch.Tensor | None = None, seed: int = 0) -> None:
        """EM on the posterior means z (N x d; the posterior spreads sd are not used) into the buffers;
        deterministic for a given seed."""
        from sklearn.mixture import GaussianMixture

        k = len(self.weights)
        if len(z) < 2 * k:
            raise UserError(f"a {k}-component latent mixture needs at least {2 * k} codes to fit, got {len(z)}")
        gm = GaussianMixture(n_components=k, covariance_type="full", reg_covar=1e-6, random_state=seed)
        gm.fit(z.detach().double().cpu().numpy())
        cov = torch.as_tensor(gm.covariances_)  # K x d x d (float64)
        self.weights.copy_(torch.as_tensor(gm.weights_))
        self.means.copy_(torch.as_tensor(gm.means_))
        self.chol.copy_(torch.linalg.cholesky(cov))
        self.fitted.fill_(1.0)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n codes from the mixture; -> n x d."""
        _check_fitted(self)
        device = self.means.device
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # n
        eps = torch.randn(n, self.means.shape[1], 1, generator=generator, device=device)  # n x d x 1
        return self.means[k] + (self.chol[k] @ eps).squeeze(-1)


def _check_fitted(prior: nn.Module) -> None:
    if not bool(prior.fitted):
        raise UserError(f"the {prior.title} has not been fitted yet: training fits it at each epoch's end, "
                        "genlab fit-prior to a finished run")


def _skip_mlp(dim_in: int, width: int, depth: int, dim_out: int) -> nn.ModuleDict:
    """`depth` ReLU layers of `width`, and a linear head on [input; last hidden layer]."""
    layers, d = [], dim_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    return nn.ModuleDict({"body": nn.Sequential(*layers), "head": nn.Linear(dim_in + d, dim_out)})


def _run_skip(net: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
    return net["head"](torch.cat([x, net["body"](x)], dim=1))  # B x (d_in + width) -> B x d_out


def _as_buffers(module: nn.Module) -> None:
    """Turn every parameter of `module` into a buffer of the same name and value."""
    for m in module.modules():
        for name, p in list(m.named_parameters(recurse=False)):
            delattr(m, name)
            m.register_buffer(name, p.detach().clone())


class SecondStageVAE(nn.Module):
    """Dai & Wipf's second-stage VAE over d-dimensional codes (the module docstring's equations)."""

    slot = "second_stage"
    title = "second-stage VAE"

    def __init__(self, dim: int, width: int = 1024, depth: int = 3, epochs: int = 1, lr: float = 1e-3,
                 batch_size: int = 64):
        super().__init__()
        self.dim, self.epochs, self.lr, self.batch_size = dim, epochs, lr, batch_size
        self.encoder = _skip_mlp(dim, width, depth, 2 * dim)  # z -> [mu_u, log sd_u]
        self.decoder = _skip_mlp(dim, width, depth, dim)  # u -> z_hat
        _as_buffers(self)
        self.register_buffer("log_gamma", torch.zeros(()))
        self.register_buffer("fitted", torch.zeros(()))

    @classmethod
    def from_config(cls, cfg) -> SecondStageVAE:
        return cls(cfg.latent_dim, cfg.prior_width, cfg.prior_depth, cfg.prior_epochs, cfg.prior_lr)

    def forward(self, z: torch.Tensor, eps_u: torch.Tensor) -> torch.Tensor:
        """-ELBO(z) per code with the noise eps_u (B x d) for u's reparametrisation; -> B."""
        mu, log_sd = _run_skip(self.encoder, z).float().chunk(2, dim=1)  # B x d each
        u = mu + log_sd.exp() * eps_u
        z_hat = _run_skip(self.decoder, u).float()  # B x d
        g = self.log_gamma
        recon = ((z - z_hat) / g.exp()).pow(2).sum(1) / 2 + self.dim * (g + 0.5 * math.log(2 * math.pi))
        kl = 0.5 * (mu.pow(2) + (2 * log_sd).exp() - 1 - 2 * log_sd).sum(1)
        return recon + kl

    def fit(self, mu: torch.Tensor, sd: torch.Tensor, seed: int = 0) -> float:
        """`epochs` passes of Adam over codes drawn from q(z | x) = N(mu, sd^2) (N x d each), continuing from the
        current weights; the matrix products in bfloat16. Returns the last pass's mean -ELBO per code."""
        if len(mu) < self.batch_size:
            raise UserError(f"the second-stage VAE needs at least {self.batch_size} codes to fit, got {len(mu)}")
        state = dict(self.named_buffers())
        weights = {n: t.detach().clone().requires_grad_() for n, t in state.items() if n != "fitted"}
        opt = torch.optim.Adam(weights.values(), lr=self.lr)
        g = torch.Generator(mu.device).manual_seed(seed)
        mu, sd = mu.detach().float(), sd.detach().float()
        steps = len(mu) // self.batch_size
        for _ in range(self.epochs):
            order, total = torch.randperm(len(mu), generator=g, device=mu.device), 0.0
            for b in range(steps):
                i = order[b * self.batch_size:(b + 1) * self.batch_size]
                z = mu[i] + sd[i] * torch.randn(len(i), self.dim, generator=g, device=mu.device)
                eps_u = torch.randn(len(i), self.dim, generator=g, device=mu.device)
                with torch.enable_grad(), torch.autocast(mu.device.type, torch.bfloat16):
                    loss = functional_call(self, weights, (z, eps_u)).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
        with torch.no_grad():
            for n, w in weights.items():
                state[n].copy_(w)
            self.fitted.fill_(1.0)
        return total / steps

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n codes: u ~ N(0, I), z = z_hat(u) + gamma eps; -> n x d."""
        _check_fitted(self)
        device = self.log_gamma.device
        u = torch.randn(n, self.dim, generator=generator, device=device)
        eps = torch.randn(n, self.dim, generator=generator, device=device)
        return _run_skip(self.decoder, u) + self.log_gamma.exp() * eps


# model.prior -> the estimator of q(z) (each built from a VAE's config by `from_config`)
LATENT_PRIORS = {"mixture": GaussianMixtureLatents, "two-stage": SecondStageVAE}

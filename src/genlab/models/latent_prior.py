"""Ex-post density estimation in a latent space (Ghosh et al. 2020, "From variational to deterministic autoencoders"):
after (or during) training, fit a Gaussian mixture to the codes of training images and sample from it
instead of the prior the model was trained with.

    p_mix(z) = sum_k pi_k N(z; mu_k, Sigma_k),   Sigma_k = L_k L_k^T           (K components, full covariances)
    z ~ p_mix:  k ~ Cat(pi),  z = mu_k + L_k eps,  eps ~ N(0, I)

A VAE's aggregate posterior q(z) = E_x q(z | x) does not fill N(0, I): prior draws land in holes between the
classes' clusters and decode to blends. Sampling where the codes are closes that gap without retraining. The mixture
is fitted by EM (scikit-learn's GaussianMixture, k-means start) and kept in buffers, so checkpoints carry it.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError


class GaussianMixtureLatents(nn.Module):
    """A K-component full-covariance Gaussian mixture over d-dimensional codes: `fit` by EM, `sample` by ancestry."""

    def __init__(self, dim: int, components: int):
        super().__init__()
        self.register_buffer("weights", torch.full((components,), 1.0 / components))
        self.register_buffer("means", torch.zeros(components, dim))
        self.register_buffer("chol", torch.eye(dim).repeat(components, 1, 1))  # K x d x d, lower triangular
        self.register_buffer("fitted", torch.zeros(()))  # 1.0 once fitted (float: broadcastable by any backend)

    @torch.no_grad()
    def fit(self, z: torch.Tensor, seed: int = 0) -> None:
        """EM on the codes z (N x d) into the buffers; deterministic for a given seed."""
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
        if not bool(self.fitted):
            raise UserError("the latent mixture has not been fitted yet: it is fitted at each epoch's end of training")
        device = self.means.device
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # n
        eps = torch.randn(n, self.means.shape[1], 1, generator=generator, device=device)  # n x d x 1
        return self.means[k] + (self.chol[k] @ eps).squeeze(-1)

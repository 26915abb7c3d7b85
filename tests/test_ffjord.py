"""FFJORD: the exact-trace density against the change of variables of a linear flow, Hutchinson's estimator
against the exact trace, the inverse, and the settings it refuses."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genlab.data import DataInfo
from genlab.errors import UserError
from genlab.models import registry
from genlab.models.ffjord import Dynamics, exact_trace, hutchinson_trace


def make(shape=(1, 1, 2), **fields):
    torch.manual_seed(0)
    cfg = registry.get("ffjord").config_cls(**{"width": 8, "layers": 2, **fields})
    return registry.build("ffjord", cfg, DataInfo(*shape, dequantized=True))


class Linear(nn.Module):
    """f(z, t) = A z on the flattened image: the flow is z(1) = exp(A) z(0), log|det| = tr(A)."""

    def __init__(self, a: torch.Tensor, shape):
        super().__init__()
        self.a, self.shape = nn.Parameter(a), shape

    def forward(self, t, z):
        return (z.flatten(1) @ self.a.t()).view(len(z), *self.shape)


def test_the_exact_trace_density_is_the_change_of_variables_of_a_linear_flow():
    model = make(eval_trace="exact", rtol=1e-9, atol=1e-9).double().eval()
    a = torch.tensor([[0.3, -0.8], [0.5, -0.2]], dtype=torch.float64)
    model.ode.dynamics = Linear(a, (1, 1, 2))
    x = torch.tensor([[0.2, 0.7], [0.9, 0.4]], dtype=torch.float64).view(2, 1, 1, 2)
    y, logit_logdet = model.logit(x)
    z1 = y.flatten(1) @ torch.linalg.matrix_exp(a).t()
    expected = -0.5 * (z1.pow(2) + math.log(2 * math.pi)).sum(1) + torch.trace(a) + logit_logdet
    assert torch.allclose(model.log_prob(x), expected, atol=1e-6)


def test_hutchinson_is_unbiased_for_the_trace():
    torch.manual_seed(0)
    f_net = Dynamics(1, 6, 2)
    z = torch.randn(2, 1, 2, 2, requires_grad=True)
    f = f_net(torch.tensor(0.3), z)
    exact = exact_trace(f, z)
    for kind in ("rademacher", "gaussian"):
        g = torch.Generator().manual_seed(1)
        draws = []
        for _ in range(1000):
            e = torch.randn(z.shape, generator=g)
            e = e.sign() if kind == "rademacher" else e
            draws.append(hutchinson_trace(f, z, e).detach())
        draws = torch.stack(draws)  # 1000 x 2
        se = draws.std(0) / math.sqrt(len(draws))
        assert ((draws.mean(0) - exact.detach()).abs() <= 4 * se + 1e-6).all(), kind


def test_exact_trace_equals_the_jacobians_trace():
    torch.manual_seed(0)
    f_net = Dynamics(1, 5, 1)
    z = torch.randn(3, 1, 2, 2, requires_grad=True)
    got = exact_trace(f_net(torch.tensor(0.5), z), z)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda u: f_net(torch.tensor(0.5), u.view(1, 1, 2, 2)).flatten(),
                                                 z[i].detach().flatten())
        assert torch.allclose(got[i], torch.trace(jac), atol=1e-5)


def test_decoding_inverts_encoding_and_the_evaluation_estimate_is_fixed():
    model = make((1, 3, 3)).eval()
    x = 0.05 + 0.9 * torch.rand(4, 1, 3, 3)
    assert (model.decode(model.encode(x)) - x).abs().max() < 1e-3
    with torch.no_grad():
        assert torch.equal(model.log_prob(x), model.log_prob(x))  # the same probe every time
    s = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert s.shape == (5, 1, 3, 3) and 0 <= float(s.min()) and float(s.max()) <= 1


def test_training_backpropagates_through_the_adjoint():
    model = make((1, 3, 3)).train()
    x = 0.05 + 0.9 * torch.rand(4, 1, 3, 3)
    model.losses(x)["loss"].backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_refusals():
    with pytest.raises(UserError, match="model.eval_trace=exact takes 3072 vector-Jacobian products"):
        make((3, 32, 32), eval_trace="exact")
    from genlab.config import from_dict

    for setting in ({"alpha": 0.5}, {"train_trace": "skilling"}, {"noise": "uniform"}, {"rtol": 0}):
        with pytest.raises(UserError, match=f"model.{next(iter(setting))}"):
            from_dict(registry.get("ffjord").config_cls, setting)

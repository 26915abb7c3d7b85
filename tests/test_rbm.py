"""The RBM: free energy against the brute-force sum over hidden states, AIS against the exact partition function,
the CD gradient against the data and model statistics, PCD's chains, sampling and the chain figure."""
from __future__ import annotations

import itertools

import pytest
import torch

from genlab.data import DataInfo
from genlab.errors import UserError
from genlab.models import registry


def make(shape=(1, 2, 3), hidden=4, seed=0, **fields):
    torch.manual_seed(seed)
    cfg = registry.get("rbm").config_cls(units=hidden, **fields)
    model = registry.build("rbm", cfg, DataInfo(*shape, binarized="dynamic"))
    with torch.no_grad():  # weights large enough that the distribution is far from uniform
        g = torch.Generator().manual_seed(seed + 1)
        model.W.copy_(torch.randn(model.W.shape, generator=g))
        model.b.copy_(torch.randn(model.b.shape, generator=g))
        model.c.copy_(torch.randn(model.c.shape, generator=g))
    return model.double()


def binary(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def exact_log_z(model) -> float:
    return float(torch.logsumexp(-model.free_energy(binary(model.info.dim)), 0).detach())


def test_free_energy_is_minus_log_of_the_sum_over_hidden_states():
    model = make(hidden=3)
    v = binary(6)
    h = binary(3)
    energy = -(v @ model.b)[:, None] - (h @ model.c)[None] - v @ model.W @ h.t()  # V x H: E(v, h)
    assert torch.allclose(model.free_energy(v), -torch.logsumexp(-energy, 1), atol=1e-10)


def test_ais_recovers_the_exact_partition_function_within_its_spread():
    model = make(hidden=4, ais_betas=2000, ais_runs=200)
    est = model.log_partition(generator=torch.Generator().manual_seed(0))
    truth = exact_log_z(model)
    assert abs(est["log_z"] - truth) <= max(est["log_z_spread"], 0.05), (est, truth)
    assert 0 < est["log_z_spread"] < 0.5
    assert model.log_partition() is est  # computed once per set of weights
    with torch.no_grad():
        model.W.mul_(1.5)
    assert model.log_partition()["log_z"] != est["log_z"]  # and again when they change


def test_ais_starts_from_the_base_rate_of_the_pixels_it_trained_on():
    model = make(hidden=4, ais_betas=2000, ais_runs=200)
    assert torch.equal(model.base_rate_biases(), torch.zeros(6, dtype=torch.float64))  # untrained: b_A = 0
    x = binary(6)[[3, 17, 40, 63, 63, 62]]
    model.losses(x.view(-1, 1, 2, 3))
    mean = (x.sum(0) + 1) / (len(x) + 2)
    assert torch.allclose(model.base_rate_biases(), (mean / (1 - mean)).log())
    model.eval()
    model.losses(binary(6).view(-1, 1, 2, 3))  # evaluation does not count
    assert torch.allclose(model.base_rate_biases(), (mean / (1 - mean)).log())
    est = model.log_partition(generator=torch.Generator().manual_seed(0))
    assert abs(est["log_z"] - exact_log_z(model)) <= max(est["log_z_spread"], 0.05)


def test_the_estimated_likelihood_is_normalised():
    model = make(hidden=4, ais_betas=2000, ais_runs=200)
    total = float(model.log_prob(binary(6).view(-1, 1, 2, 3)).detach().exp().sum())
    assert total == pytest.approx(1.0, abs=0.05)


def test_the_cd_gradient_is_data_minus_model_statistics():
    """d/dW of F(v_data) - F(v_neg) is -(<v h>_data - <v h>_neg) with h at its mean: a descent step moves W
    towards the data's statistics and away from the chain's."""
    model = make(hidden=4, k=3)
    x = binary(6)[[3, 17, 40, 63]].view(-1, 1, 2, 3)
    torch.manual_seed(5)
    model.losses(x)["loss"].backward()
    torch.manual_seed(5)  # the same negative samples again
    with torch.no_grad():
        v = x.flatten(1)
        neg = model.gibbs(v, 3)
        stat = lambda u: u.t() @ torch.sigmoid(u @ model.W + model.c) / len(u)  # noqa: E731
        expected = -(stat(v) - stat(neg))
    assert torch.allclose(model.W.grad, expected, atol=1e-10)


def test_persistent_chains_continue_across_updates_and_stay_in_the_state():
    model = make(hidden=4, persistent=True, chains=7, k=2).train()
    before = model.chains.clone()
    model.losses(binary(6)[:4].view(-1, 1, 2, 3))
    assert model.chains.shape == (7, 6) and not torch.equal(model.chains, before)
    assert "chains" in model.state_dict()
    kept = model.chains.clone()
    model.eval().losses(binary(6)[:4].view(-1, 1, 2, 3))  # evaluation leaves them alone
    assert torch.equal(model.chains, kept)


def test_gibbs_sampling_reaches_the_model_distribution():
    model = make(shape=(1, 1, 3), hidden=3, sample_steps=200).float()
    v = model.gibbs(torch.zeros(20000, 3), 200, torch.Generator().manual_seed(0))
    freq = torch.bincount((v @ torch.tensor([4.0, 2.0, 1.0])).long(), minlength=8).float() / len(v)
    p = torch.softmax(-model.free_energy(binary(3).float()), 0)
    assert (freq - p).abs().max() < 0.02


def test_samples_and_the_chain_figure(tmp_path):
    model = make(shape=(1, 4, 4), hidden=5, sample_steps=20).float()
    s = model.sample(6, generator=torch.Generator().manual_seed(0))
    assert s.shape == (6, 1, 4, 4) and 0 <= float(s.min()) and float(s.max()) <= 1
    (path,) = model.figures(tmp_path, generator=torch.Generator().manual_seed(0))
    assert path.name == "gibbs_chain.png" and path.stat().st_size > 100


@pytest.mark.parametrize("setting", [{"units": 0}, {"k": 0}, {"ais_runs": 1}])
def test_bad_settings_are_refused(setting):
    from genlab.config import from_dict

    with pytest.raises(UserError, match=f"model.{next(iter(setting))}"):
        from_dict(registry.get("rbm").config_cls, setting)


def test_grey_data_is_refused():
    with pytest.raises(UserError, match="rbm models binary images"):
        registry.build("rbm", registry.get("rbm").config_cls(), DataInfo(1, 4, 4))

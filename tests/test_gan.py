"""Adversarial losses and training mechanics: gradient penalty, weight clipping, saturation, k critic steps."""
import pytest
import torch

from genlab.data import DataInfo
from genlab.losses import d_loss, g_loss, gradient_penalty
from genlab.models import registry
from genlab.optim import OptimConfig
from genlab.train.optim import Stepper


def test_gradient_penalty_matches_hand_computation():
    torch.manual_seed(0)
    real, fake = torch.randn(5, 3), torch.randn(5, 3)
    w = torch.tensor([3.0, 4.0, 0.0])
    # linear critic f(x) = w.x: its gradient is w everywhere, so GP = (|w| - 1)^2 = 16
    assert float(gradient_penalty(lambda x: x @ w, real, fake)) == pytest.approx(16.0)
    # quadratic critic f(x) = |x|^2 / 2: the gradient at x_hat is x_hat itself
    torch.manual_seed(1)
    gp = gradient_penalty(lambda x: 0.5 * x.pow(2).sum(1), real, fake)
    torch.manual_seed(1)
    eps = torch.rand(5, 1)
    x_hat = eps * real + (1 - eps) * fake
    assert float(gp.detach()) == pytest.approx(float((x_hat.norm(dim=1) - 1).pow(2).mean()), rel=1e-6)


def test_gradient_penalty_is_differentiable_in_the_critic():
    w = torch.tensor([0.5, 0.5], requires_grad=True)
    gp = gradient_penalty(lambda x: x @ w, torch.randn(4, 2), torch.randn(4, 2))
    gp.backward()
    # d/dw (|w| - 1)^2 = 2 (|w| - 1) w / |w|
    expected = 2 * (w.norm() - 1) * w / w.norm()
    assert torch.allclose(w.grad, expected.detach())


def test_minimax_saturates_where_nonsaturating_does_not():
    # D(G(z)) = sigmoid(logit) near 0: the discriminator confidently rejects the samples
    logit = torch.tensor([-8.0], requires_grad=True)
    (g_mm,) = torch.autograd.grad(g_loss("minimax", logit), logit)
    (g_ns,) = torch.autograd.grad(g_loss("nonsaturating", logit), logit)
    p = torch.sigmoid(torch.tensor(-8.0))
    assert float(g_mm) == pytest.approx(-float(p), rel=1e-5)  # d/dl log(1 - s(l)) = -s(l): vanishes
    assert float(g_ns) == pytest.approx(-(1 - float(p)), rel=1e-5)  # d/dl -log s(l) = -(1 - s(l)): about -1
    assert abs(float(g_ns)) > 1000 * abs(float(g_mm))
    # and both share the fixed point: at D = 1/2 the two losses' gradients have the same sign
    half = torch.tensor([0.0], requires_grad=True)
    assert float(torch.autograd.grad(g_loss("minimax", half), half)[0]) < 0
    assert float(torch.autograd.grad(g_loss("nonsaturating", half), half)[0]) < 0


@pytest.mark.parametrize("kind, real, fake, expected", [
    ("nonsaturating", 0.0, 0.0, 2 * 0.6931471805599453),  # -log(1/2) - log(1/2)
    ("wgan", 2.0, -1.0, -3.0),
    ("lsgan", 1.0, 0.0, 0.0),
    ("hinge", 0.5, -0.5, 1.0),
])
def test_discriminator_losses_hand_computed(kind, real, fake, expected):
    assert float(d_loss(kind, torch.tensor([real]), torch.tensor([fake]))) == pytest.approx(expected)


def _gan(name="dcgan", **cfg):
    info = DataInfo(1, 8, 8, range="-11")
    torch.manual_seed(0)
    config = registry.get(name).config_cls(**{"width": 8, "latent_dim": 4, "hidden": (16,), **cfg})
    model = registry.build(name, config, info)
    opts = {k: Stepper(o) for k, o in model.configure_optimizers(OptimConfig(lr=5e-2)).items()}
    return model, opts


def test_weight_clipping_keeps_every_critic_weight_in_range():
    model, opts = _gan(loss="wgan", clip=0.01, norm="none")
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    for step in range(3):
        model.train_step((x, None), opts, step)
    for p in opts["d"].params:
        assert p.abs().max() <= 0.01 + 1e-7
    assert any(p.abs().max() > 0.01 for p in opts["g"].params)  # the generator is not clipped


def test_generator_steps_every_n_critic_steps():
    model, opts = _gan(n_critic=3)
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    g_before = [p.clone() for p in opts["g"].params]
    changed = []
    for step in range(6):
        model.train_step((x, None), opts, step)
        now = [p.clone() for p in opts["g"].params]
        changed.append(any(not torch.equal(a, b) for a, b in zip(g_before, now)))
        g_before = now
    assert changed == [True, False, False, True, False, False]


def test_generator_step_leaves_discriminator_gradients_alone():
    model, opts = _gan()
    for p in opts["d"].params:
        p.grad = None
    model.generator_step(4, opts["g"])
    assert all(p.grad is None for p in opts["d"].params)
    assert all(p.requires_grad for p in opts["d"].params)


def test_wgan_gp_refuses_batch_norm():
    from genlab.errors import UserError

    with pytest.raises(UserError, match="batch norm"):
        registry.get("dcgan").config_cls(loss="wgan-gp", norm="batch").validate()


@pytest.mark.parametrize("loss", ["minimax", "nonsaturating", "wgan", "wgan-gp", "lsgan", "hinge"])
def test_every_loss_trains_a_step_with_finite_terms(loss):
    model, opts = _gan(loss=loss, spectral_norm=loss == "hinge")
    terms = model.train_step((torch.rand(4, 1, 8, 8) * 2 - 1, None), opts, 0)
    assert all(torch.isfinite(v) for v in terms.values())
    assert ("gp" in terms) == (loss == "wgan-gp")


def test_health_warns_when_the_discriminator_wins_most_recent_steps():
    model, _ = _gan()
    won = {"d_real": torch.tensor(0.999), "d_fake": torch.tensor(0.001)}
    lost = {"d_real": torch.tensor(0.7), "d_fake": torch.tensor(0.3)}
    for _ in range(49):
        model._track_health(won)
    assert model.health() is None  # too few steps to judge
    model._track_health(won)
    assert "won outright in at least 90% of the last 100 steps" in model.health()  # a short run is warned too
    assert "(model.lr_d below train.lr)" in model.health()  # it names the setting that slows D
    for _ in range(11):
        model._track_health(lost)
    assert model.health() is None  # 50 of 61 is below 90%
    for _ in range(100):
        model._track_health(won if _ % 20 else lost)  # 95 of the last 100
    assert model.health() is not None
    critic, _ = _gan(loss="wgan-gp", norm="layer")
    for _ in range(600):  # critic values are not probabilities: never judged this way
        critic._track_health({"d_real": torch.tensor(5.0), "d_fake": torch.tensor(-5.0)})
    assert critic.health() is None


ADVERSARIAL_FAMILY = ["gan", "dcgan", "cgan", "acgan", "infogan", "bigan", "vaegan", "glo"]


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", ADVERSARIAL_FAMILY)
def test_adversarial_family_at_28_32_64_pixels(name, shape):
    info = DataInfo(*shape, num_classes=3, range="-11", num_train=2)
    fields = registry.get(name).config_cls.__dataclass_fields__
    small = {k: v for k, v in {"width": 4, "latent_dim": 4, "hidden": (8,)}.items() if k in fields}
    torch.manual_seed(0)
    model = registry.build(name, registry.get(name).config_cls(**small), info)
    opts = {k: Stepper(o) for k, o in model.configure_optimizers(OptimConfig()).items()}
    x, y = torch.rand(2, *shape) * 2 - 1, torch.tensor([0, 2])
    batch = (x, y, torch.arange(2)) if getattr(model, "needs_indices", False) else (x, y)
    terms = model.train_step(batch, opts, 0)
    assert all(torch.isfinite(v) for v in terms.values())
    with torch.no_grad():
        s = model.sample(2, generator=torch.Generator().manual_seed(0))
    assert s.shape == (2, *shape) and s.min() >= -1 and s.max() <= 1


def test_each_loss_brings_its_papers_optimizer_and_the_user_still_wins():
    from genlab.run import compose

    ns = compose("dcgan")
    assert (ns.train.optimizer, ns.train.lr, ns.train.beta1, ns.model_cfg.n_critic) == ("adam", 2e-4, 0.5, 1)
    wgan = compose("gan", overrides=["model.loss=wgan"])  # Arjovsky et al.: RMSprop 5e-5, 5 critic steps
    assert (wgan.train.optimizer, wgan.train.lr, wgan.model_cfg.n_critic) == ("rmsprop", 5e-5, 5)
    gp = compose("cgan", overrides=["model.loss=wgan-gp"])  # Gulrajani et al.: Adam 1e-4, betas (0, 0.9)
    assert (gp.train.lr, gp.train.beta1, gp.train.beta2, gp.model_cfg.n_critic) == (1e-4, 0.0, 0.9, 5)
    mine = compose("dcgan", flags={"train": {"lr": 3e-4}}, overrides=["model.loss=wgan", "model.n_critic=2"])
    assert (mine.train.optimizer, mine.train.lr, mine.model_cfg.n_critic) == ("rmsprop", 3e-4, 2)


@pytest.mark.parametrize("sn", [False, True], ids=["plain", "spectral-norm"])
def test_dcgan_init_draws_the_papers_weights(sn):
    """The conv GANs' default (model.init=auto) is Radford et al.'s: every conv and linear weight of G, D and D's
    head ~ N(0, 0.02^2), biases 0, batch-norm scales ~ N(1, 0.02^2), under spectral norm too (its stored weight is
    the original); init=torch keeps PyTorch's, which the MLP GAN keeps by default."""
    from torch import nn
    from torch.nn.utils import parametrize

    info = DataInfo(1, 64, 64, range="-11", num_train=2)
    torch.manual_seed(0)
    model = registry.build("dcgan", registry.get("dcgan").config_cls(spectral_norm=sn, width=16), info)
    layers = [m for net in (model.G, model.D, model.d_out) for m in net.modules()
              if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    assert len(layers) >= 9
    for m in layers:
        w = m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight") else m.weight
        spread = 0.3 if w.numel() < 500 else 0.05
        assert abs(float(w.detach().mean())) < 0.01 and float(w.detach().std()) == pytest.approx(0.02, rel=spread)
        assert m.bias is None or not m.bias.any()
    scales = torch.cat([m.weight.detach() for m in model.G.modules() if isinstance(m, nn.BatchNorm2d)])
    assert float(scales.mean()) == pytest.approx(1.0, abs=0.01) and float(scales.std()) == pytest.approx(0.02, rel=0.2)
    torch.manual_seed(0)
    plain = registry.build("dcgan", registry.get("dcgan").config_cls(width=16, init="torch"), info)
    assert float(plain.G.body[-1].weight.detach().std()) > 0.1  # PyTorch's own scale (its output layer: 0.14)
    mlp = registry.build("gan", registry.get("gan").config_cls(hidden=(32,)), DataInfo(1, 8, 8, range="-11"))
    assert float(mlp.G.body[-1].weight.detach().std()) > 0.1


def test_the_discriminator_rate_the_warning_names_is_a_setting_of_each_model():
    from dataclasses import fields

    from genlab.models import registry
    from genlab.models.common import DiscriminatorHealth

    entries = {name: registry.get(name) for name in registry.names()}
    named = {name: entry for name, entry in entries.items()
             if issubclass(entry.model_cls, DiscriminatorHealth) and entry.model_cls.d_rate_setting}
    assert {"gan", "dcgan", "bigan", "vaegan"} <= set(named)
    for name, entry in named.items():
        section, key = entry.model_cls.d_rate_setting.split(".")
        assert section == "model" and key in {f.name for f in fields(entry.config_cls)}, name

"""Conditional GAN, AC-GAN and InfoGAN: label conditioning, the auxiliary classifier's terms, the mutual-information
bound, code sweeps, and a one-epoch run of each from the command line."""
import copy
import dataclasses
import math

import pytest
import torch

from genlab.cli import main
from genlab.data import DataInfo
from genlab.errors import UserError
from genlab.losses import ADVERSARIAL
from genlab.models import registry
from genlab.models.conditional_gan import save_code_sweep
from genlab.optim import OptimConfig
from genlab.train.optim import Stepper

K = 3
LABELLED = ["cgan", "acgan"]


def _model(name, num_classes=K, **cfg):
    info = DataInfo(1, 8, 8, num_classes=num_classes, range="-11")
    torch.manual_seed(0)
    config = registry.get(name).config_cls(**{"width": 8, "latent_dim": 4, "hidden": (16,), **cfg})
    config.validate()
    return registry.build(name, config, info)


def _opts(model, lr=1e-2):
    return {k: Stepper(o) for k, o in model.configure_optimizers(OptimConfig(lr=lr)).items()}


def _batch(n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g) * 2 - 1, torch.arange(n) % K


# ---------------------------------------------------------------------------------------------- cgan and acgan
@pytest.mark.parametrize("name", LABELLED)
def test_samples_follow_the_label(name):
    model = _model(name).eval()
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    with torch.no_grad():
        zeros = model.sample(5, generator=g(), y=torch.zeros(5, dtype=torch.long))
        ones = model.sample(5, generator=g(), y=torch.ones(5, dtype=torch.long))
        default = model.sample(5, generator=g())  # labels 0, 1, 2, 0, 1 by default
        z = torch.randn(2, 4)
        assert torch.equal(model.decode(z, torch.tensor([1, 2])), model.decode(z[[0, 1]], torch.tensor([1, 2])))
    assert zeros.shape == ones.shape == default.shape == (5, 1, 8, 8)
    assert zeros.min() >= -1 and zeros.max() <= 1
    assert not torch.equal(zeros, ones)
    assert torch.equal(default[[0, 3]], zeros[[0, 3]]) and torch.equal(default[[1, 4]], ones[[1, 4]])


@pytest.mark.parametrize("name", LABELLED)
def test_training_needs_labels(name):
    with pytest.raises(UserError, match="labelled data"):
        _model(name, num_classes=0)
    with pytest.raises(UserError, match="labelled data"):
        _model(name, num_classes=1)
    model = _model(name)
    x, _ = _batch()
    with pytest.raises(UserError, match="class labels"):
        model.train_step((x, None), _opts(model), 0)


def test_projection_discriminator_adds_the_label_embedding():
    model = _model("cgan").eval()
    x, _ = _batch(3)
    with torch.no_grad():
        h = model.D(x)
        for c in range(K):
            y = torch.full((3,), c)
            expected = model.d_out(h).squeeze(1) + (model.embed.weight[c] * h).sum(1)  # psi(phi) + <e_y, phi>
            assert torch.allclose(model.critic(x, y), expected, atol=1e-6)
        assert not torch.equal(model.critic(x, torch.zeros(3, dtype=torch.long)),
                               model.critic(x, torch.ones(3, dtype=torch.long)))
    with pytest.raises(UserError):
        model.critic(x)


def test_cgan_mlp_and_spectral_norm_variants_train():
    for cfg in ({"arch": "mlp"}, {"loss": "hinge", "spectral_norm": True}):
        model = _model("cgan", **cfg)
        terms = model.train_step(_batch(), _opts(model), 0)
        assert all(torch.isfinite(v) for v in terms.values())


def _zero_class_head(model, bias=(0.0, 0.0, 0.0)):
    with torch.no_grad():
        model.cls.weight.zero_()
        model.cls.bias.copy_(torch.tensor(bias))


def test_acgan_class_cross_entropy_enters_both_losses():
    x, y = _batch()
    with_aux = _model("acgan")
    _zero_class_head(with_aux)  # logits all 0: the cross-entropy is exactly log K on every image
    without = copy.deepcopy(with_aux)
    without.cfg = dataclasses.replace(with_aux.cfg, aux_weight=0.0)

    torch.manual_seed(5)
    a = with_aux.discriminator_step(x, y, _opts(with_aux)["d"])
    torch.manual_seed(5)
    b = without.discriminator_step(x, y, _opts(without)["d"])
    assert float(a["aux_ce_real"]) == pytest.approx(math.log(K)) and float(a["aux_ce_fake"]) == pytest.approx(math.log(K))
    assert float(a["loss_d"] - b["loss_d"]) == pytest.approx(2 * math.log(K), abs=1e-5)  # real AND fake terms
    assert with_aux.cls.weight.grad is not None and with_aux.cls.weight.grad.abs().sum() > 0

    _zero_class_head(with_aux)
    _zero_class_head(without)
    g_a, g_b = _opts(with_aux)["g"], _opts(without)["g"]
    torch.manual_seed(6)
    loss_a = with_aux.generator_step(y, g_a)
    torch.manual_seed(6)
    loss_b = without.generator_step(y, g_b)
    assert float(loss_a - loss_b) == pytest.approx(math.log(K), abs=1e-5)


def test_acgan_class_term_reaches_the_generator_not_the_class_head():
    x, y = _batch()
    model = _model("acgan")
    without = copy.deepcopy(model)
    without.cfg = dataclasses.replace(model.cfg, aux_weight=0.0)
    grads = []
    for m in (model, without):
        opt = _opts(m)["g"]
        m.cls.weight.grad = None
        torch.manual_seed(7)
        m.generator_step(y, opt)
        grads.append([p.grad.clone() for p in opt.params])
        assert m.cls.weight.grad is None and m.cls.weight.requires_grad  # frozen during G's step, then restored
    assert any(not torch.allclose(a, b) for a, b in zip(*grads))


def test_acgan_logs_the_auxiliary_accuracy_on_real_images():
    model = _model("acgan")
    _zero_class_head(model, bias=(0.0, 9.0, 0.0))  # the head says "class 1" for every image
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    terms = model.discriminator_step(x, torch.tensor([0, 1, 2, 1]), _opts(model, lr=1e-9)["d"])
    assert float(terms["aux_acc"]) == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["cgan", "acgan", "infogan"])
@pytest.mark.parametrize("loss", ADVERSARIAL)
def test_every_loss_trains_with_the_same_keys_every_step(name, loss):
    extra = {"norm": "layer"} if loss == "wgan-gp" else {"spectral_norm": loss == "hinge"}
    model = _model(name, loss=loss, n_critic=2, **extra)
    opts = _opts(model)
    keys = None
    for step in range(2):  # step 1 has no generator update
        terms = model.train_step(_batch(seed=step), opts, step)
        assert all(torch.is_tensor(v) and v.dim() == 0 and torch.isfinite(v) for v in terms.values())
        assert keys is None or set(terms) == keys
        keys = set(terms)
    assert {"loss_d", "loss_g", "d_real", "d_fake", "grad_norm_d", "grad_norm_g"} <= keys
    assert {"cgan": set(), "acgan": {"aux_acc"}, "infogan": {"loss_info", "mi_cat", "mi_cont"}}[name] <= keys
    assert ("gp" in keys) == (loss == "wgan-gp")


# ---------------------------------------------------------------------------------------------- infogan
def _set_q(model, bias):
    with torch.no_grad():
        model.q.weight.zero_()
        model.q.bias.copy_(torch.tensor(bias))


@pytest.mark.parametrize("q_std", [1.0, 0.0])
def test_infogan_information_term_is_the_hand_computed_log_likelihood(q_std):
    model = _model("infogan", n_cat=3, n_cont=2, lambda_cat=1.0, lambda_cont=0.1, q_std=q_std)
    logits, mean, log_std = [2.0, 0.0, -1.0], [0.5, -0.25], ([0.0, 0.0] if q_std else [0.3, -0.2])
    _set_q(model, logits + mean + ([] if q_std else log_std))  # Q's outputs no longer depend on x
    h = torch.randn(2, model.D.out_features)
    cat, cont = torch.tensor([0, 2]), torch.tensor([[0.5, 0.0], [-1.0, 1.0]])

    lse = math.log(sum(math.exp(v) for v in logits))
    log_cat = [logits[c] - lse for c in (0, 2)]
    log_cont = [sum(-0.5 * ((c - m) / math.exp(s)) ** 2 - s - 0.5 * math.log(2 * math.pi)
                    for c, m, s in zip(row, mean, log_std)) for row in ([0.5, 0.0], [-1.0, 1.0])]
    got_cat, got_cont = model.log_q(h, cat, cont)
    assert got_cat.tolist() == pytest.approx(log_cat, abs=1e-5)
    assert got_cont.tolist() == pytest.approx(log_cont, abs=1e-5)

    terms = {k: v.detach() for k, v in model.info_terms(h, cat, cont).items()}
    e_cat, e_cont = sum(log_cat) / 2, sum(log_cont) / 2
    assert float(terms["loss_info"]) == pytest.approx(-(1.0 * e_cat + 0.1 * e_cont), abs=1e-5)
    assert float(terms["mi_cat"]) == pytest.approx(math.log(3) + e_cat, abs=1e-5)
    assert float(terms["mi_cont"]) == pytest.approx(2 * math.log(2) + e_cont, abs=1e-5)


def test_infogan_q_head_moves_with_the_generator_and_the_body_with_the_discriminator():
    model = _model("infogan")
    opts = _opts(model)
    q_ids = {id(p) for p in model.q.parameters()}
    assert q_ids <= {id(p) for p in opts["g"].params} and not q_ids & {id(p) for p in opts["d"].params}
    q0 = [p.clone() for p in model.q.parameters()]
    body0 = [p.clone() for p in model.D.parameters()]
    terms = model.discriminator_step(_batch()[0], opts["d"])
    assert all(torch.equal(a, b) for a, b in zip(q0, model.q.parameters()))  # Q's head: frozen in D's step
    assert any(not torch.equal(a, b) for a, b in zip(body0, model.D.parameters()))
    assert float(terms["loss_info"]) > 0

    body1 = [p.clone() for p in model.D.parameters()]
    model.generator_step(4, opts["g"])
    assert any(not torch.equal(a, b) for a, b in zip(q0, model.q.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(body1, model.D.parameters()))


def test_infogan_code_sweep_rows_share_their_noise(tmp_path):
    model = _model("infogan", n_cat=4, n_cont=2).eval()
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    z, cat, cont = model.sweep_codes("cat", 0, steps=4, rows=3, generator=g())
    z = z.view(3, 4, -1)
    assert torch.equal(z, z[:, :1].expand_as(z)) and not torch.equal(z[0, 0], z[1, 0])  # one noise per row
    assert cat.view(3, 4).tolist() == [[0, 1, 2, 3]] * 3 and not cont.any()

    z, cat, cont = model.sweep_codes("cont", 1, steps=5, rows=2, generator=g())
    assert cont[:, 1].view(2, 5).tolist() == [[-2.0, -1.0, 0.0, 1.0, 2.0]] * 2 and not cont[:, 0].any()
    assert cat.view(2, 5).tolist() == [[0] * 5, [1] * 5]

    with torch.no_grad():
        images = model.code_sweep("cat", 0, steps=4, rows=3, generator=g())
    assert images.shape == (3, 4, 1, 8, 8)
    assert not torch.equal(images[0, 0], images[0, 1])  # the categorical code changes the sample
    with pytest.raises(UserError):
        model.code_sweep("cont", 2)
    with pytest.raises(UserError):
        model.code_sweep("style", 0)

    path = save_code_sweep(model, tmp_path / "sweep.png", "cont", 0, steps=5, rows=2)
    from PIL import Image

    assert Image.open(path).size == (12 * (5 * 10 + 2), 12 * (2 * 10 + 2))  # 8-pixel images, 2 of padding, x12
    assert not model.training


def test_infogan_samples_draw_every_code():
    model = _model("infogan").eval()
    with torch.no_grad():
        s = model.sample(6, generator=torch.Generator().manual_seed(0))
        z = torch.randn(2, 4)
        by_cat = model.decode(z.repeat(2, 1), torch.tensor([0, 0, 1, 1]))
    assert s.shape == (6, 1, 8, 8) and s.min() >= -1 and s.max() <= 1
    assert not model.conditional
    assert not torch.equal(by_cat[:2], by_cat[2:])


# ---------------------------------------------------------------------------------------------- command line
@pytest.mark.parametrize("name", ["cgan", "acgan", "infogan"])
def test_one_epoch_on_digits_from_the_command_line(name, tmp_path, capsys):
    code = main(["train", name, "--data", "digits", "--epochs", "1", "--limit", "128", "--out", str(tmp_path),
                 "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "samples" / "epoch_0001.png").is_file()


def test_infogan_code_figures_are_written_by_training_and_sampling(tmp_path, capsys):
    from genlab.cli import main

    assert main(["train", "infogan", "--data", "digits", "--epochs", "1", "--limit", "64", "--batch-size", "32",
                 "--set", "model.n_cont=1", "--out", str(tmp_path), "--quiet"]) == 0
    assert {p.name for p in (tmp_path / "samples").glob("codes_*.png")} == {"codes_cat.png", "codes_cont0.png"}
    assert main(["sample", str(tmp_path), "-n", "4", "-o", str(tmp_path / "fig" / "s.png")]) == 0
    assert (tmp_path / "fig" / "codes_cat.png").is_file() and "codes_cont0.png" in capsys.readouterr().out

"""BiGAN's joint discriminator, VAE-GAN's three updates and feature-space likelihood, GLO's latents and Lap1."""
import copy

import pytest
import torch
import torch.nn.functional as F

from genlab.data import DataInfo
from genlab.errors import UserError
from genlab.models import registry
from genlab.models.glo import lap1, lap1_levels, laplacian_pyramid
from genlab.optim import OptimConfig
from genlab.train.optim import Stepper


def build(name, shape=(1, 8, 8), range_="-11", num_train=0, **cfg):
    torch.manual_seed(0)
    config = registry.get(name).config_cls(**cfg)
    config.validate()
    return registry.build(name, config, DataInfo(*shape, range=range_, num_train=num_train))


def steppers(model, lr=1e-2):
    return {k: Stepper(o) for k, o in model.configure_optimizers(OptimConfig(lr=lr)).items()}


def images(n, shape=(1, 8, 8), seed=0):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ---------------------------------------------------------------------------------------------- BiGAN
BIGAN_TINY = {"latent_dim": 4, "width": 8, "joint_width": 16, "hidden": (16,)}


def test_bigan_discriminator_sees_encoder_and_generator_pairs(monkeypatch):
    model = build("bigan", **BIGAN_TINY)
    model.train()
    before = copy.deepcopy(model)  # G and E as they were when the pairs were formed
    x = images(6)
    seen = []
    original = model.joint_logits

    def spy(xx, zz):
        seen.append((xx.detach().clone(), zz.detach().clone()))
        return original(xx, zz)

    monkeypatch.setattr(model, "joint_logits", spy)
    model.train_step((x, None), steppers(model), 0)
    assert len(seen) == 4  # D's step: real, fake; G and E's step: real, fake
    with torch.no_grad():
        ex = before.encode(x)
        for (rx, rz), (fx, fz) in (seen[:2], seen[2:]):  # neither step changes G or E before its pairs are formed
            assert torch.equal(rx, x)  # real pair: (x, E(x))
            assert torch.allclose(rz, ex, atol=1e-6)
            assert fz.shape == (6, 4) and not torch.allclose(fz, ex)
            assert torch.allclose(fx, before.decode(fz), atol=1e-6)  # fake pair: (G(z), z)
    assert torch.equal(seen[1][1], seen[3][1])  # one draw of z per step


@pytest.mark.parametrize("arch,shape", [("conv", (1, 8, 8)), ("conv", (1, 7, 9)), ("mlp", (1, 7, 9)), ("conv", (3, 12, 12))])
def test_bigan_encode_decode_shapes(arch, shape):
    model = build("bigan", shape=shape, arch=arch, **BIGAN_TINY).eval()
    x = images(3, shape)
    with torch.no_grad():
        z = model.encode(x)
        assert z.shape == (3, 4)
        r = model.decode(z)
        assert r.shape == x.shape and r.min() >= -1 and r.max() <= 1
        assert torch.equal(model.reconstruct(x), r)
        assert model.sample(5).shape == (5, *shape)
        assert model.joint_logits(x, z).shape == (3,)


def test_bigan_generator_encoder_step_leaves_discriminator_alone():
    model = build("bigan", **BIGAN_TINY)
    opts = steppers(model)
    assert set(opts) == {"d", "ge"}
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(opts["ge"].params) == ids([*model.G.parameters(), *model.E.parameters()])
    assert ids(opts["d"].params) == ids(model.D.parameters())
    d_before = [p.clone() for p in opts["d"].params]
    ge_before = [p.clone() for p in opts["ge"].params]
    model.generator_encoder_step(images(4), model.prior(4), opts["ge"])
    assert all(p.grad is None and p.requires_grad for p in opts["d"].params)
    assert all(torch.equal(a, p) for a, p in zip(d_before, opts["d"].params))
    assert all(not torch.equal(a, p) for a, p in zip(ge_before, opts["ge"].params))


# ---------------------------------------------------------------------------------------------- VAE-GAN
VAEGAN_TINY = {"latent_dim": 4, "width": 4, "hidden": (16,)}


def _groups(model):
    return {"enc": list(model.encoder.parameters()), "dec": list(model.decoder.parameters()),
            "dis": [*model.dis.parameters(), *model.dis_out.parameters()]}


@pytest.mark.parametrize("arch", ["conv", "mlp"])
def test_vaegan_each_update_moves_exactly_its_own_group(arch):
    model = build("vaegan", shape=(1, 12, 12), arch=arch, **VAEGAN_TINY)
    model.train()
    opts = steppers(model)
    groups = _groups(model)
    assert set(opts) == set(groups) == {"enc", "dec", "dis"}
    for k in opts:  # each optimizer holds exactly its group, and the groups cover the model
        assert {id(p) for p in opts[k].params} == {id(p) for p in groups[k]}
    assert sum(len(g) for g in groups.values()) == len(list(model.parameters()))

    x = images(4, (1, 12, 12))
    eps, z_p = torch.randn(4, 4), torch.randn(4, 4)
    for name, step in (("dis", model.discriminator_step), ("enc", model.encoder_step), ("dec", model.decoder_step)):
        model.zero_grad(set_to_none=True)
        snap = {k: [p.detach().clone() for p in g] for k, g in groups.items()}
        terms = step(x, eps, z_p, opts[name])
        assert all(torch.isfinite(v) for v in terms.values())
        for k, g in groups.items():
            moved = [not torch.equal(a, p) for a, p in zip(snap[k], g)]
            if k == name:
                assert all(moved), f"the {name} step left some {k} parameters unchanged"
            else:
                assert not any(moved), f"the {name} step moved {k} parameters"
                assert all(p.grad is None for p in g), f"the {name} step computed gradients for {k}"
        assert all(p.requires_grad for p in model.parameters())


def test_vaegan_feature_likelihood_is_half_squared_error_of_discriminator_features():
    # 8x8: the discriminator is one strided conv + LeakyReLU (no normalisation), easy to compute by hand
    model = build("vaegan", shape=(1, 8, 8), **VAEGAN_TINY)
    x = images(3)
    eps, z_p = torch.randn(3, 4), torch.randn(3, 4)
    with torch.no_grad():
        t = model.terms(x, eps, z_p)
        mu, logvar = model.posterior(x)
        x_tilde = model.decode(mu + torch.exp(0.5 * logvar) * eps)
        conv = model.dis.body[0]

        def dis_l(v):
            return F.leaky_relu(F.conv2d(v, conv.weight, conv.bias, stride=2, padding=1), 0.2).flatten(1)

        expected = 0.5 * (dis_l(x) - dis_l(x_tilde)).pow(2).sum(1)
        assert t["llike"].shape == (3,)
        assert torch.allclose(t["llike"], expected, rtol=1e-5, atol=1e-6)
        assert torch.allclose(t["kl"], 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1))
        logit = lambda v: model.dis_out(dis_l(v)).squeeze(1)  # noqa: E731
        assert torch.allclose(t["real"], logit(x), atol=1e-6)
        assert torch.allclose(t["prior"], logit(model.decode(z_p)), atol=1e-6)
        # identical inputs: no feature-space error
        assert torch.equal(0.5 * (dis_l(x) - dis_l(x)).pow(2).sum(1), torch.zeros(3))


def test_vaegan_train_step_terms():
    model = build("vaegan", **VAEGAN_TINY)
    opts = steppers(model)
    terms = model.train_step((images(4), None), opts, 0)
    assert {"loss_dis", "loss_enc", "loss_dec", "kl", "llike", "d_real", "d_fake"} <= terms.keys()
    assert all(v.dim() == 0 and torch.isfinite(v) for v in terms.values())


# ---------------------------------------------------------------------------------------------- GLO
GLO_TINY = {"latent_dim": 4, "width": 4}


def test_lap1_zero_for_identical_images_positive_otherwise():
    x = images(2, (3, 32, 32))
    y = images(2, (3, 32, 32), seed=1)
    assert torch.equal(lap1(x, x, 4), torch.zeros(2))
    assert (lap1(x, y, 4) > 0).all()
    assert torch.allclose(lap1(x, y, 4), lap1(y, x, 4))


def test_lap1_constant_images_differ_only_in_the_coarsest_level():
    x, y = torch.full((1, 1, 32, 32), 0.25), torch.full((1, 1, 32, 32), -0.5)
    terms = lap1_levels(x, y, 4)  # bands at 32, 16, 8; residual 4x4
    assert len(terms) == 4
    for t in terms[:-1]:
        assert float(t) < 1e-5
    assert float(terms[-1]) == pytest.approx(4.0 ** 3 * 0.75 * 16, rel=1e-5)  # 2^(2j) |c1 - c2| (4 x 4 pixels)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 7, 9), (1, 8, 8)])
def test_laplacian_pyramid_is_invertible(shape):
    x = images(2, shape)
    levels = laplacian_pyramid(x, 3)
    assert levels[0].shape == x.shape
    g = levels[-1]
    for band in reversed(levels[:-1]):  # G^j = L^j + upsample(G^{j+1})
        g = band + F.interpolate(g, size=band.shape[-2:], mode="bilinear", align_corners=False)
    assert torch.allclose(g, x, atol=1e-5)


def test_lap1_weights_levels_by_4_to_the_j():
    x, y = images(1, (1, 16, 16)), images(1, (1, 16, 16), seed=3)
    raw = [(a - b).abs().sum() for a, b in zip(laplacian_pyramid(x, 3), laplacian_pyramid(y, 3))]
    for j, t in enumerate(lap1_levels(x, y, 3)):
        assert float(t) == pytest.approx(float(raw[j]) * 4**j, rel=1e-6)


def test_lap1_tells_a_black_from_a_white_background():
    """The mean brightness is not free: a digit on white is far from the same digit on black."""
    x = torch.full((1, 1, 28, 28), -1.0)
    x[..., 8:20, 12:16] = 1.0  # a stroke on black
    white = x.clone()
    white[x < 0] = 1.0
    black = torch.full_like(x, -1.0)
    assert float(lap1(white, x, 4)) > 4 * float(lap1(black, x, 4))


def _glo(n=10, shape=(1, 8, 8), **cfg):
    return build("glo", shape=shape, num_train=n, **{**GLO_TINY, **cfg})


def _train(model, opts, data, steps, batch=4):
    g = torch.Generator().manual_seed(1)
    for step in range(steps):
        idx = torch.randperm(len(data), generator=g)[:batch]
        model.train_step((data[idx], None, idx), opts, step)


@pytest.mark.parametrize("loss", ["lap1", "mse"])
def test_glo_latents_stay_on_the_unit_sphere(loss):
    model = _glo(loss=loss)
    assert model.latents.weight.shape == (10, 4)
    assert torch.allclose(model.latents.weight.norm(dim=1), torch.ones(10), atol=1e-5)
    opts = steppers(model, lr=0.2)  # large steps: the rows would leave the sphere without the projection
    start = model.latents.weight.detach().clone()
    _train(model, opts, images(10), 5)
    w = model.latents.weight.detach()
    assert not torch.allclose(w, start)
    assert torch.allclose(w.norm(dim=1), torch.ones(10), atol=1e-5)


def test_glo_train_step_needs_indices_and_a_table_size():
    model = _glo()
    with pytest.raises(UserError, match="indices"):
        model.train_step((images(4), None), steppers(model), 0)
    with pytest.raises(UserError, match="num_train"):
        build("glo", **GLO_TINY)  # neither the data nor the config gives the number of training images
    with pytest.raises(UserError, match="num_train"):
        registry.build("glo", registry.get("glo").config_cls(num_train=5, **GLO_TINY), DataInfo(1, 8, 8, num_train=10))
    # the table size may come from the config alone
    assert build("glo", **GLO_TINY, num_train=7).latents.weight.shape == (7, 4)


def test_glo_train_step_updates_only_the_batch_latents_with_sgd():
    model = _glo()
    opts = {k: Stepper(o) for k, o in model.configure_optimizers(OptimConfig(optimizer="sgd", lr=0.1)).items()}
    start = model.latents.weight.detach().clone()
    idx = torch.tensor([1, 4, 7])
    model.train_step((images(3), None, idx), opts, 0)
    moved = (model.latents.weight.detach() - start).abs().amax(1) > 1e-5  # beyond the projection's rounding
    assert moved.tolist() == [i in (1, 4, 7) for i in range(10)]


def test_glo_encode_by_optimisation_lowers_the_loss_of_a_new_image():
    data = images(10)
    model = _glo()
    _train(model, steppers(model, lr=0.05), data, 10)
    model.eval()
    model.zero_grad(set_to_none=True)
    new = images(3, seed=99)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        z0 = model.encode(new, steps=0)  # the starting point
        z = model.encode(new, steps=60, lr=0.05)
        assert torch.equal(model.encode(new, steps=60, lr=0.05), z)  # deterministic
        before, after = model.recon_loss(model.decode(z0), new), model.recon_loss(model.decode(z), new)
    assert (after < before).all(), (before, after)
    assert torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)
    for k, v in model.state_dict().items():  # encoding changes nothing in the model
        assert torch.equal(v, state[k]), k
    assert all(p.grad is None for p in model.G.parameters())
    assert all(p.requires_grad for p in model.G.parameters())


def test_glo_sample_fits_a_gaussian_to_the_latents_lazily_and_keeps_it_in_the_state():
    model = _glo()
    opts = steppers(model, lr=0.05)
    _train(model, opts, images(10), 3)
    assert float(model.latent_fitted) == 0
    model.eval()
    with torch.no_grad():
        s = model.sample(6, generator=torch.Generator().manual_seed(0))
    assert s.shape == (6, 1, 8, 8) and s.min() >= -1 and s.max() <= 1
    assert float(model.latent_fitted) == 1
    z = model.latents.weight.detach().double()
    assert torch.allclose(model.latent_mean.double(), z.mean(0), atol=1e-6)
    cov = torch.cov(z.T) + model.cfg.cov_eps * torch.eye(4, dtype=z.dtype)
    chol = model.latent_chol.double()
    assert torch.allclose(chol @ chol.T, cov, atol=1e-6)

    fresh = _glo()  # a checkpoint holds the fit: the restored model samples the same without refitting
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh.sample(6, generator=torch.Generator().manual_seed(0)), s)
    model.train()
    _train(model, opts, images(10), 1)
    assert float(model.latent_fitted) == 0  # training moved the latents: the fit is stale


def test_glo_odd_image_sides():
    model = _glo(shape=(1, 7, 9))
    _train(model, steppers(model), images(10, (1, 7, 9)), 1)
    model.eval()
    with torch.no_grad():
        assert model.sample(2).shape == (2, 1, 7, 9)
        assert model.reconstruct(images(2, (1, 7, 9))).shape == (2, 1, 7, 9)


def test_glo_trains_through_the_trainer_with_indices(tmp_path):
    from genlab.api import train
    from genlab.run import compose, load_model

    run = compose("glo", flags={"data": {"source": "digits", "limit": 64},
                                "train": {"epochs": 1, "batch_size": 16, "samples": 4}},
                  overrides=["model.latent_dim=4", "model.width=4"])
    train(run, tmp_path, quiet=True)
    model, cfg = load_model(tmp_path)
    assert cfg.info.num_train == 64 and model.latents.weight.shape == (64, 4)
    torch.manual_seed(cfg.train.seed)  # the trainer's initialisation
    init = registry.build("glo", cfg.model_cfg, cfg.info).latents.weight.detach()
    assert (model.latents.weight != init).any(1).all()  # one epoch reached every image's latent
    assert model.sample(3).shape == (3, 1, 8, 8)


def test_glo_latents_start_at_their_images_pca_coordinates():
    model = _glo(n=30, latent_dim=4)
    x = images(12, (1, 8, 8), seed=5)
    x[1] = x[0]  # two copies of one image
    before = model.latents.weight.detach().clone()
    index = torch.arange(12)
    model.pca_init(x, index)
    z = model.latents.weight.detach()
    assert torch.allclose(z[:12].norm(dim=1), torch.ones(12), atol=1e-5)
    assert torch.allclose(z[0], z[1]) and not torch.allclose(z[0], z[2])
    assert torch.equal(z[12:], before[12:])  # unseen rows wait for their image
    flat = x.flatten(1) - x.flatten(1).mean(0)
    top = torch.linalg.svd(flat, full_matrices=False)[2][0]  # the first principal axis
    assert torch.allclose(z[:12, 0].abs(), (flat @ top).abs() / (flat @ model.pca_axes).norm(dim=1), atol=1e-4)
    model.pca_init(images(12, (1, 8, 8), seed=6), index)  # seen rows are not initialised twice
    assert torch.equal(model.latents.weight.detach(), z)

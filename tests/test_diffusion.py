"""DDPM and DDIM: the forward process, the posterior, the parametrisations, the samplers, guidance and the bound.

Where a property needs a trained network, an exact one stands in: for Gaussian data x_0 ~ N(0, s^2 I) the best
noise prediction is E[eps | x_t] = sqrt(1 - abar_t) x_t / (abar_t s^2 + 1 - abar_t), so sampling, inversion and
the bound can be checked against closed forms.
"""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from genlab.data import DataInfo
from genlab.errors import UserError
from genlab.models import registry
from genlab.models.diffusion import DDPMConfig, beta_schedule, discretized_gaussian_log_prob, normal_kl
from genlab.nn.unet import UNet


def make(shape=(1, 8, 8), classes=3, **fields):
    cfg = DDPMConfig(**{"width": 8, "mults": (1, 2), "blocks": 1, "attention": 4, **fields})
    cfg.validate()
    return registry.build("ddpm", cfg, DataInfo(*shape, num_classes=classes, range="-11", num_train=4))


class GaussianOracle(nn.Module):
    """The exact network for x_0 ~ N(0, s^2 I), or N(0, cov) over the flattened image, in the model's
    parametrisation: E[eps | x_t] = sqrt(1 - abar) (abar cov + (1 - abar) I)^-1 x_t."""

    def __init__(self, model, s: float = 0.0, cov: torch.Tensor | None = None):
        super().__init__()
        self.model, self.s, self.cov = [model], s, cov  # a list: not a submodule

    def forward(self, xt, t, y=None):
        m = self.model[0]
        abar = m.at(m.abar, t)
        if self.cov is None:
            eps = (1 - abar).sqrt() * xt / (abar * self.s**2 + 1 - abar)
        else:
            d = self.cov.shape[0]
            a = abar.view(-1, 1, 1)
            inv = torch.linalg.inv(a * self.cov + (1 - a) * torch.eye(d))  # B x D x D
            eps = ((1 - a).sqrt() * inv @ xt.flatten(1)[:, :, None]).view_as(xt)
        x0 = (xt - (1 - abar).sqrt() * eps) / abar.sqrt()
        return {"eps": eps, "x0": x0, "v": abar.sqrt() * eps - (1 - abar).sqrt() * x0}[m.cfg.prediction]


def test_schedules():
    lin = beta_schedule("linear", 1000)
    assert lin[0].item() == pytest.approx(1e-4) and lin[-1].item() == pytest.approx(0.02)
    assert beta_schedule("linear", 100)[-1].item() == pytest.approx(0.2)  # rescaled by 1000 / T
    cos = beta_schedule("cosine", 1000)
    abar = torch.cumprod(1 - cos, 0)
    assert (cos > 0).all() and (cos <= 0.999).all() and (abar[1:] < abar[:-1]).all()
    # Nichol & Dhariwal: abar(t) = f(t) / f(0), f(t) = cos^2(pi/2 (t/T + s) / (1 + s))
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert abar[499].item() == pytest.approx(f(500) / f(0), rel=1e-6)


def test_forward_process_matches_its_closed_form():
    """Monte Carlo: x_t = q_sample(x_0, t, eps) has mean sqrt(abar_t) x_0 and variance 1 - abar_t."""
    model = make()
    x0 = torch.full((20000, 1, 8, 8), 0.6)
    for t in (0, 300, 999):
        tt = torch.full((len(x0),), t)
        xt = model.q_sample(x0, tt, torch.randn(x0.shape, generator=torch.Generator().manual_seed(t)))
        abar = model.abar[t].item()
        assert xt.mean().item() == pytest.approx(math.sqrt(abar) * 0.6, abs=2e-3)
        assert xt.var().item() == pytest.approx(1 - abar, rel=1e-2, abs=1e-5)


def test_posterior_is_bayes_rule():
    """q(x_{t-1} | x_t, x_0) from q(x_{t-1} | x_0) q(x_t | x_{t-1}): precisions add, means weigh by them."""
    model = make()
    g = torch.Generator().manual_seed(0)
    x0, xt = torch.randn(5, 1, 8, 8, generator=g), torch.randn(5, 1, 8, 8, generator=g)
    betas = beta_schedule("linear", 1000)  # float64, independent of the model's float32 tables
    abar = torch.cumprod(1 - betas, 0)
    for t in (1, 10, 500, 999):
        tt = torch.full((5,), t)
        mean, var = model.q_posterior(x0, xt, tt)
        beta, abar_prev = betas[t], abar[t - 1]
        precision = 1 / (1 - abar_prev) + (1 - beta) / beta
        expect_mean = (abar_prev.sqrt() * x0.double() / (1 - abar_prev) + (1 - beta).sqrt() * xt.double() / beta) / precision
        torch.testing.assert_close(var.flatten().double(), (1 / precision).expand(5), rtol=3e-4, atol=0)  # float32 tables
        torch.testing.assert_close(mean.double(), expect_mean, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_a_network_that_knows_the_answer_has_zero_loss(prediction):
    """Data = one image x*: a network computing the true target from (x_t, t) gives loss 0, and predict()
    recovers x* and the noise from its output."""
    model = make(prediction=prediction)
    star = torch.rand(1, 1, 8, 8) * 2 - 1

    class Knows(nn.Module):
        def forward(self, xt, t, y=None):
            abar = model.at(model.abar, t)
            eps = (xt - abar.sqrt() * star) / (1 - abar).sqrt()
            return model.target(star.expand_as(xt), eps, t)

    model.net = Knows()
    assert model.losses(star.expand(16, -1, -1, -1))["loss"].item() < 1e-8
    tt = torch.tensor([700])
    eps = torch.randn(1, 1, 8, 8)
    eps_hat, x0_hat = model.predict(model.q_sample(star, tt, eps), tt)
    torch.testing.assert_close(x0_hat, star, atol=1e-4, rtol=0)
    torch.testing.assert_close(eps_hat, eps, atol=1e-4, rtol=0)


def test_samplers_draw_the_data_distribution():
    """With the exact network for N(0, 0.25^2) (4 sigma inside the clamp to [-1, 1]): DDIM's ODE at 1000 steps
    and ancestral DDPM give std 0.25; DDIM with eta = 1 over all T steps is DDPM, draw for draw; few DDIM steps
    contract (each step scales a Gaussian by the cosine of the angle it skips)."""
    model = make(shape=(1, 2, 2), clip_denoised=False, prediction="v")
    model.net = GaussianOracle(model, 0.25)

    def draw(**kw):
        return model.sample(4000, generator=torch.Generator().manual_seed(1), **kw)

    ode, ddpm = draw(steps=1000), draw(sampler="ddpm")
    assert ode.mean().item() == pytest.approx(0.0, abs=0.01) and ddpm.mean().item() == pytest.approx(0.0, abs=0.01)
    assert ode.std().item() == pytest.approx(0.25, rel=0.01)
    assert ddpm.std().item() == pytest.approx(0.25, rel=0.03)
    torch.testing.assert_close(draw(steps=1000, eta=1.0), ddpm, atol=1e-4, rtol=0)  # float32 rounding
    assert draw(steps=10).std().item() < 0.8 * ode.std().item()


def test_ddim_is_deterministic_and_inverts():
    model = make(shape=(1, 4, 4), clip_denoised=False, steps=1000)
    model.net = GaussianOracle(model, 0.25)
    a = model.sample(8, generator=torch.Generator().manual_seed(3), steps=50)
    b = model.sample(8, generator=torch.Generator().manual_seed(3), steps=50)
    assert torch.equal(a, b)  # eta = 0: x_T fixes the image
    c = model.sample(8, generator=torch.Generator().manual_seed(3), steps=50, eta=1.0)
    assert not torch.allclose(a, c)
    x = torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(4)).mul(0.25)
    z = model.encode(x)
    assert z.shape == (8, 16)
    assert z.std().item() == pytest.approx(1.0, rel=0.3)  # x_T is (close to) a prior draw
    torch.testing.assert_close(model.decode(z), x, atol=0.01, rtol=0)  # first-order inversion error at 1000 steps
    torch.testing.assert_close(model.reconstruct(x), model.decode(z))


def test_timestep_sequences():
    model = make(timesteps=1000)
    assert model.timestep_sequence(1) == [0]
    seq = model.timestep_sequence(50)
    assert len(seq) == 50 and seq[0] == 999 and seq[-1] == 0 and seq == sorted(seq, reverse=True)
    assert model.timestep_sequence(1000) == list(range(999, -1, -1))
    with pytest.raises(UserError, match="sampling steps"):
        model.timestep_sequence(1001)


def test_guidance_weights():
    """eps_u + w (eps_c - eps_u): w = 1 the conditional output, w = 0 the unconditional, w = 3 extrapolates."""
    model = make(conditional=True).eval()
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([5, 500, 900]), torch.tensor([0, 1, 2])
    null = torch.full_like(y, 3)
    with torch.no_grad():
        cond, uncond = model.net(x, t, y), model.net(x, t, null)
        torch.testing.assert_close(model.raw(x, t, y, guidance=1.0), cond)
        torch.testing.assert_close(model.raw(x, t, y, guidance=0.0), uncond)
        torch.testing.assert_close(model.raw(x, t, y, guidance=3.0), uncond + 3 * (cond - uncond), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(cond, uncond)  # the label reaches the output


def test_label_dropout_trains_the_null_token():
    model = make(conditional=True, p_uncond=0.5)
    model.losses(torch.rand(64, 1, 8, 8) * 2 - 1, torch.randint(0, 3, (64,)))["loss"].backward()
    assert model.net.label_emb.weight.grad[3].abs().sum() > 0  # the "no label" row got gradient
    with pytest.raises(UserError, match="labelled data"):
        make(conditional=True, classes=0)


def test_normal_kl_and_discretised_gaussian():
    m1, v1, m2, v2 = torch.randn(4), torch.randn(4), torch.randn(4), torch.randn(4)
    expect = torch.distributions.kl_divergence(torch.distributions.Normal(m1, (0.5 * v1).exp()),
                                               torch.distributions.Normal(m2, (0.5 * v2).exp()))
    torch.testing.assert_close(normal_kl(m1, v1, m2, v2), expect)
    levels = torch.arange(256) / 255 * 2 - 1  # the 256 grey levels on [-1, 1]
    for mean, log_sigma in ((0.3, -2.0), (-0.99, -4.0), (1.5, 0.0)):
        p = discretized_gaussian_log_prob(levels, torch.tensor(mean), torch.tensor(log_sigma)).exp()
        assert p.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_bound_is_above_the_true_nll_and_lowest_for_the_exact_network():
    """8-bit Gaussian data (s = 0.3): the bound stays above the data's discrete NLL, h(N(0, s^2)) - log(2/255)
    nats per dimension, and the exact network's bound is below those of networks for the wrong s."""
    s = 0.3
    model = make(shape=(1, 2, 2), prediction="eps", timesteps=200)
    g = torch.Generator().manual_seed(5)
    x = ((torch.randn(2000, 1, 2, 2, generator=g) * s).clamp(-1, 1) * 127.5 + 127.5).round() / 127.5 - 1
    true = 0.5 * math.log(2 * math.pi * math.e * s**2) - math.log(2 / 255)
    bounds = {}
    for guess in (0.2, 0.3, 0.45):
        model.net = GaussianOracle(model, guess)
        bounds[guess] = -model.log_prob(x).mean().item() / 4  # nats per dimension
    assert true < bounds[0.3] < min(bounds[0.2], bounds[0.45]) - 0.1
    assert torch.equal(model.log_prob(x[:8]), model.log_prob(x[:8]))  # seeded: repeatable


def test_unet_pads_odd_sizes_and_crops_back():
    net = UNet(3, 3, side=9, width=8, mults=(1, 2, 2), blocks=1, attention=4, num_classes=2)
    out = net(torch.randn(2, 3, 7, 9), torch.tensor([0, 999]), torch.tensor([0, 2]))
    assert out.shape == (2, 3, 7, 9)


def test_self_attention_is_the_papers_single_head_attention_over_positions():
    """x + W_o softmax(q k^T / sqrt(c)) v, q k v = W_{q,k,v} GroupNorm(x) per position, written out by hand."""
    from genlab.nn.unet import SelfAttention

    torch.manual_seed(0)
    attn = SelfAttention(8)
    x = torch.randn(2, 8, 3, 5)
    with torch.no_grad():
        attn.norm.weight.normal_(), attn.norm.bias.normal_()
        tokens = attn.norm(x).flatten(2).transpose(1, 2)  # B x HW x c
        wq, wk, wv = attn.qkv.weight[:, :, 0, 0].chunk(3)
        bq, bk, bv = attn.qkv.bias.chunk(3)
        q, k, v = tokens @ wq.T + bq, tokens @ wk.T + bk, tokens @ wv.T + bv
        out = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(8), dim=2) @ v  # B x HW x c
        out = out @ attn.proj.weight[:, :, 0, 0].T + attn.proj.bias
        expected = x + out.transpose(1, 2).reshape(2, 8, 3, 5)
        torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)


def test_config_refusals():
    for fields, match in [({"steps": 2000}, "cannot exceed"), ({"mults": ()}, "mults"),
                          ({"schedule": "quadratic"}, "schedule"), ({"prediction": "score"}, "prediction"),
                          ({"p_uncond": 1.0}, "p_uncond")]:
        with pytest.raises(UserError, match=match):
            DDPMConfig(**fields).validate()


def test_cli_trains_samples_and_bounds(tmp_path, capsys):
    """One command trains a class-conditional DDPM; `sample` takes the sampler, steps, eta and guidance;
    `eval --metrics nll` reports the bound and says it is one; options of other families are refused."""
    from apps_common import run_cli

    run = tmp_path / "ddpm"
    code, _, err = run_cli(capsys, "train", "ddpm", "--data", "digits", "--limit", "64", "--epochs", "1",
                           "--batch-size", "32", "--set", "model.width=8", "--set", "model.mults=1,2",
                           "--set", "model.timesteps=40", "--set", "model.steps=5", "--set", "model.conditional=true",
                           "--out", run, "--quiet")
    assert code == 0, err
    assert (run / "samples" / "epoch_0001.png").is_file() and (run / "ema.safetensors").is_file()
    for extra in (["--steps", "4", "--eta", "0.5", "--guidance", "2"], ["--sampler", "ddpm"]):
        code, out, err = run_cli(capsys, "sample", run, "-n", "6", *extra)
        assert code == 0 and "ms per image" in out, err
    code, _, err = run_cli(capsys, "sample", run, "--temperature", "0.7")
    assert code == 2 and "no sampling option --temperature" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "sample", run, "--steps", "41")
    assert code == 2 and "sampling steps must be in [1, 40]" in err
    code, _, err = run_cli(capsys, "sample", run, "--eta", "-1")
    assert code == 2 and "--eta must be >= 0" in err
    code, out, err = run_cli(capsys, "apply", "restore", run, "--n", "8", "--corruptions", "gaussian,block")
    assert code == 0, err
    rec = json.loads((run / "apply" / "restore" / "results.json").read_text())
    assert rec["protocol"]["method"] == "diffuse" and "block/model" in rec["results"]
    code, _, err = run_cli(capsys, "apply", "restore", run, "--n", "8", "--corruptions", "salt_pepper")
    assert code == 2 and "salt-and-pepper" in err
    code, _, err = run_cli(capsys, "eval", run, "--metrics", "nll", "--n", "8")
    assert code == 0, err
    nll = json.loads((run / "eval.json").read_text())["nll"]
    assert "bound" in nll["protocol"]["estimator"] and "8-bit" in nll["protocol"]["meaning"]
    assert 0 < nll["bits_per_dim"] < math.inf and nll["nll_nats"] == pytest.approx(nll["bits_per_dim"] * 64 * math.log(2))


def test_posterior_sampling_conditions_on_known_pixels_and_on_noise():
    """Two pixels with correlation 0.9 (s = 0.25): knowing the first at 0.2, draws of the second follow
    N(0.9 * 0.2, s^2 (1 - 0.81)); Gaussian noise of the data's own scale is removed towards the posterior mean."""
    s, rho = 0.25, 0.9
    cov = s**2 * torch.tensor([[1.0, rho], [rho, 1.0]])
    model = make(shape=(1, 1, 2), clip_denoised=False, steps=200)
    model.net = GaussianOracle(model, cov=cov)
    n = 3000
    x = torch.zeros(n, 1, 1, 2)
    x[..., 0] = 0.2
    known = torch.zeros(n, 1, 1, 2, dtype=torch.bool)
    known[..., 0] = True

    def paste(r):
        return torch.where(known, x, r)

    draws = model.posterior_sample(x, paste, generator=torch.Generator().manual_seed(0))
    assert torch.equal(draws[..., 0], x[..., 0]) or torch.allclose(draws[..., 0], x[..., 0], atol=1e-5)
    second = draws[..., 1].flatten()
    assert second.mean().item() == pytest.approx(rho * 0.2, abs=0.02)
    assert second.std().item() == pytest.approx(s * math.sqrt(1 - rho**2), rel=0.25)

    g = torch.Generator().manual_seed(1)
    clean = (torch.randn(n, 2, generator=g) @ torch.linalg.cholesky(cov).T).view(n, 1, 1, 2)
    noisy = clean + 0.2 * torch.randn(clean.shape, generator=g)
    restored = model.posterior_sample(noisy, lambda r: r, sigma=0.2, generator=g)
    err_noisy, err_restored = (noisy - clean).pow(2).mean(), (restored - clean).pow(2).mean()
    assert err_restored < 0.9 * err_noisy  # a draw from p(x | x~): closer to x than x~ is (0.78 measured)

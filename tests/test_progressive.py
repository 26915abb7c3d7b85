"""ProGAN and StyleGAN and their layers: the phase schedule, the fade-in at alpha 0 and 1 in G and D, equalised
learning-rate layers, the minibatch standard deviation, a run killed mid-fade that resumes bit for bit; StyleGAN's
demodulation, truncation, style mixing, noise inputs, and its figures and --truncation from the command line."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from genlab.cli import main
from genlab.data import DataInfo
from genlab.files import load_tensors
from genlab.models import registry
from genlab.models.progan import schedule
from genlab.nn.progressive import EqualizedConv2d, EqualizedLinear, minibatch_stddev, pixel_norm


def test_schedule_stable_fade_stable_and_stays_at_the_top():
    p = 100
    assert schedule(0, p, 3) == (0, 1.0) and schedule(99, p, 3) == (0, 1.0)
    assert schedule(100, p, 3) == (1, 0.0) and schedule(150, p, 3) == (1, 0.5)  # level 1 fades in
    assert schedule(200, p, 3) == (1, 1.0) and schedule(299, p, 3) == (1, 1.0)  # ... then trains alone
    assert schedule(325, p, 3) == (2, 0.25)
    assert schedule(10_000, p, 3) == (2, 1.0)


def progan(side=16, **over):
    cfg = registry.get("progan").config_cls(**{"latent_dim": 8, "fmap_base": 32, "fmap_max": 8, **over})
    torch.manual_seed(0)
    return registry.build("progan", cfg, DataInfo(1, side, side, range="-11")).eval()


def test_fade_in_mixes_the_lower_resolution_and_the_new_block():
    m = progan()
    z = torch.randn(3, 8)
    with torch.no_grad():
        low = m.G(z, 1, 1.0)  # 8 x 8 alone
        up = F.interpolate(low, scale_factor=2, mode="nearest")
        assert torch.allclose(m.G(z, 2, 0.0), up, atol=1e-6)  # alpha 0: the 8 x 8 output, upsampled
        new = m.G(z, 2, 1.0)
        assert torch.allclose(m.G(z, 2, 0.3), 0.7 * up + 0.3 * new, atol=1e-5)
        # alpha 1: the new block alone; the same as toRGB_16(block_16(h_8))
        h = pixel_norm(F.leaky_relu(m.G.dense(pixel_norm(z)), 0.2).view(3, -1, 4, 4))  # z -> 4 x 4
        h = m.G.block(1, m.G.block(0, h))
        assert torch.allclose(new, m.G.to_rgb[2](m.G.block(2, h)), atol=1e-6)
        x = torch.randn(4, 1, 16, 16)
        assert torch.allclose(m.D(x, 2, 0.0), m.D(F.avg_pool2d(x, 2), 1, 1.0), atol=1e-5)  # D: the same in reverse
        assert not torch.allclose(m.D(x, 2, 1.0), m.D(x, 2, 0.0))


@torch.no_grad()
def test_equalised_layers_have_unit_variance_outputs_at_initialisation():
    torch.manual_seed(0)
    x = torch.randn(4096, 256)
    for lin in (EqualizedLinear(256, 256, gain=1.0), EqualizedLinear(256, 256, gain=1.0, lr_mul=0.01)):
        assert float(lin(x).std()) == pytest.approx(1.0, abs=0.03)
    conv = EqualizedConv2d(64, 64, 3, gain=1.0)
    assert float(conv(torch.randn(16, 64, 16, 16))[..., 1:-1, 1:-1].std()) == pytest.approx(1.0, abs=0.03)
    he = EqualizedConv2d(64, 64, 3)  # gain sqrt(2): variance 2 before a ReLU-like activation
    assert float(he(torch.randn(16, 64, 16, 16))[..., 1:-1, 1:-1].var()) == pytest.approx(2.0, rel=0.05)
    assert float(conv.weight.std()) == pytest.approx(1.0, abs=0.05)  # the scale lives outside the parameter


def test_minibatch_stddev_appends_the_mean_standard_deviation():
    x = torch.randn(4, 3, 5, 5)
    out = minibatch_stddev(x, group=4)
    assert out.shape == (4, 4, 5, 5) and torch.equal(out[:, :3], x)
    expected = x.std(0, unbiased=False).mean()
    assert torch.allclose(out[:, 3], expected.expand(4, 5, 5), atol=1e-5)
    y = minibatch_stddev(torch.randn(8, 2, 3, 3), group=4)  # two groups, each its own value
    assert y[0, 2, 0, 0] != y[1, 2, 0, 0] and y[0, 2, 0, 0] == y[2, 2, 0, 0]


def test_samples_have_the_data_size_at_every_phase():
    m = progan(side=12)  # padded to 16: three levels
    assert m.side == 16 and m.levels == 3
    for seen in (0, 3.5e4, 1e9):
        m.images_seen.fill_(seen)
        s = m.sample(2)
        assert s.shape == (2, 1, 12, 12) and s.min() >= -1 and s.max() <= 1
    assert m.resolution() == 16


def _train(out, steps):
    assert main(["train", "progan", "--data", "digits", "--limit", "256", "--epochs", "10", "--batch-size", "32",
                 "--set", "model.phase_images=128", "--set", "model.fmap_base=16", "--set", "model.fmap_max=8",
                 "--set", "model.latent_dim=8", "--set", f"train.max_steps={steps}", "--set", "train.samples=0",
                 "--out", str(out), "--quiet"]) == 0


def test_a_run_stopped_mid_fade_resumes_bit_for_bit(tmp_path):
    """128 images per phase at batch 32: steps 5-8 fade in the 8 x 8 level; stopping at step 6 and resuming to 12
    gives the weights, EMA weights and phase of an uninterrupted run of 12."""
    _train(tmp_path / "a", 12)
    _train(tmp_path / "b", 6)
    b = load_tensors(tmp_path / "b" / "model.safetensors")
    assert float(b["images_seen"]) == 192 and schedule(192, 128, 2) == (1, 0.5)  # stopped mid-fade
    _train(tmp_path / "b", 12)
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = load_tensors(tmp_path / "a" / name), load_tensors(tmp_path / "b" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert math.isclose(float(a["images_seen"]), 384)


# ---------------------------------------------------------------- StyleGAN
def stylegan(**over):
    cfg = registry.get("stylegan").config_cls(**{"latent_dim": 8, "fmap_base": 32, "fmap_max": 8,
                                                 "mapping_layers": 2, **over})
    torch.manual_seed(0)
    m = registry.build("stylegan", cfg, DataInfo(1, 16, 16, range="-11")).eval()
    with torch.no_grad():
        m.w_avg.normal_()  # as if trained: a mean w away from the origin
    return m


@torch.no_grad()
def test_demodulated_weights_have_unit_norm_per_output_channel():
    m = stylegan()
    conv = m.synthesis.convs[1]
    wt = conv.modulated_weight(torch.randn(3, 8))
    assert wt.shape == (3, *conv.weight.shape)
    assert torch.allclose(wt.pow(2).sum((2, 3, 4)), torch.ones(3, conv.weight.shape[0]), atol=1e-4)
    rgb = m.synthesis.to_rgb[0].modulated_weight(torch.randn(3, 8))  # toRGB: modulated, not demodulated
    assert not torch.allclose(rgb.pow(2).sum((2, 3, 4)), torch.ones(3, 1), atol=1e-2)


@torch.no_grad()
def test_truncation_zero_gives_one_image_for_every_z():
    m = stylegan()
    noise = [v.expand(4, -1, -1, -1) for v in m.noise(1, torch.Generator().manual_seed(0))]
    z = torch.randn(4, 8)
    same = m.synthesize(m.broadcast(m.map(z, 0.0)), noise)
    assert torch.allclose(same, same[:1].expand_as(same), atol=1e-5)
    assert not torch.allclose(*m.synthesize(m.broadcast(m.map(z, 1.0)), noise)[:2])


@torch.no_grad()
def test_style_mixing_with_one_w_twice_is_no_mixing():
    m = stylegan()
    w1, w2 = m.map(torch.randn(3, 8)), m.map(torch.randn(3, 8))
    cut = torch.tensor([1, 3, 5])
    assert torch.equal(m.mix(w1, w1, cut), m.broadcast(w1))
    mixed = m.mix(w1, w2, cut)
    k = m.synthesis.num_ws
    assert torch.equal(mixed[1, :3], w1[1].expand(3, -1)) and torch.equal(mixed[1, 3:], w2[1].expand(k - 3, -1))


@torch.no_grad()
def test_noise_changes_the_details_not_the_image():
    m = stylegan()
    for conv in m.synthesis.convs:
        conv.noise_strength.fill_(0.5)
    ws = m.broadcast(m.map(torch.randn(1, 8))).expand(2, -1, -1)
    a = m.synthesize(ws)
    assert not torch.equal(a[0], a[1])  # different noise draws, different pixels
    quiet = [None] * len(m.synthesis.convs)
    assert torch.equal(*m.synthesize(ws, quiet))  # no noise: one image


@torch.no_grad()
def test_tanh_output_is_the_linear_image_squashed_onto_the_data_range():
    for rng, (lo, hi) in (("-11", (-1.0, 1.0)), ("01", (0.0, 1.0))):
        cfg = registry.get("stylegan").config_cls(latent_dim=8, fmap_base=32, fmap_max=8, mapping_layers=2)
        m = registry.build("stylegan", cfg, DataInfo(1, 16, 16, range=rng)).eval()
        for conv in m.synthesis.to_rgb:
            conv.bias.fill_(3.0)  # push part of the linear image past the range
        ws, noise = m.broadcast(m.map(torch.randn(4, 8))), m.noise(4, torch.Generator().manual_seed(0))
        squashed = m.synthesize(ws, noise)
        m.cfg.output = "linear"
        linear = m.synthesize(ws, noise)
        assert linear.max() > hi and lo <= squashed.min() and squashed.max() <= hi
        assert torch.allclose(squashed, lo + (hi - lo) * (torch.tanh(linear) + 1) / 2)


def test_stylegan_figures_and_truncation_from_the_command_line(tmp_path):
    run = tmp_path / "sg"
    assert main(["train", "stylegan", "--data", "digits", "--limit", "64", "--epochs", "1", "--batch-size", "16",
                 "--set", "model.latent_dim=8", "--set", "model.fmap_base=16", "--set", "model.fmap_max=8",
                 "--set", "model.mapping_layers=2", "--out", str(run), "--quiet"]) == 0
    for name in ("style_mixing.png", "truncation.png", "noise.png", "epoch_0001.png"):
        assert (run / "samples" / name).is_file(), name
    assert main(["sample", str(run), "-n", "4", "--truncation", "0.5", "-o", str(tmp_path / "s.png")]) == 0
    assert main(["sample", str(run), "-n", "4", "--truncation", "1.5", "-o", str(tmp_path / "t.png")]) == 2
    assert main(["sample", str(run), "--mix", "-o", str(tmp_path / "mix")]) == 0
    assert (tmp_path / "mix" / "style_mixing.png").is_file()


# ---------------------------------------------------------------- perceptual path length
def test_slerp_rows_ends_and_keeps_the_norm():
    from genlab.metrics.ppl import slerp_rows

    a, b = torch.randn(5, 16), torch.randn(5, 16)
    assert torch.allclose(slerp_rows(a, b, torch.zeros(5)), a, atol=1e-5)
    assert torch.allclose(slerp_rows(a, b, torch.ones(5)), b, atol=1e-4)
    b = a * 3  # same direction: the norm moves linearly
    assert torch.allclose(slerp_rows(a, b, torch.full((5,), 0.5)), 2 * a, atol=2e-3)


def test_path_length_of_a_generator_that_ignores_z_is_zero():
    from genlab.metrics.ppl import generator_for, path_lengths, trimmed_mean

    class Constant(torch.nn.Module):
        info = DataInfo(1, 8, 8, range="-11")

        def prior(self, n, generator=None):
            return torch.randn(n, 4, generator=generator)

        def decode(self, z):  # the same image whatever z
            return torch.linspace(-1, 1, 64).view(1, 1, 8, 8).expand(len(z), -1, -1, -1) + 0 * z[:, :1, None, None]

    m = Constant()
    g = torch.Generator().manual_seed(0)
    d = path_lengths(m, generator_for(m, "z"), "z", 50, False, lambda x: x.flatten(1), 20, g)
    assert d.shape == (50,) and (d == 0).all()
    assert trimmed_mean(torch.cat([torch.ones(98), torch.tensor([1e9, -1e9])]).numpy()) == 1.0


def test_ppl_in_z_and_w_from_genlab_eval(tmp_path, capsys):
    import json

    run = tmp_path / "sg"
    assert main(["train", "stylegan", "--data", "mnist", "--limit", "64", "--epochs", "1", "--batch-size", "16",
                 "--set", "model.latent_dim=8", "--set", "model.fmap_base=16", "--set", "model.fmap_max=8",
                 "--set", "model.mapping_layers=2", "--set", "train.samples=0", "--out", str(run), "--quiet"]) == 0
    assert main(["eval", str(run), "--metrics", "ppl", "--n", "64", "--quiet"]) == 0
    rec = json.loads((run / "eval.json").read_text())
    ppl = next(v for k, v in rec.items() if k.startswith("ppl"))
    for key in ("ppl_z_full", "ppl_z_end", "ppl_w_full", "ppl_w_end"):
        assert math.isfinite(ppl[key]) and ppl[key] > 0, key
    assert "not LPIPS" in ppl["protocol"]["distance"] and ppl["protocol"]["epsilon"] == 1e-4

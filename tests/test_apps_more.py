"""The applications restore, interpolate, attributes, finetune and swap: their numbers against hand-computed cases,
their Python API on tiny models and data, the refusal of models that lack a capability, and the command on tiny
trained runs."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from apps_common import INFO, images, run_cli, tiny, tiny_vae_run  # tests/ is on sys.path
from torch import nn

from genlab.apps import registry as apps
from genlab.apps.attributes import (AttributeVector, alpha_grid, ink, parse_attribute, rank_correlation, slant,
                                    split_by, sweep_scores, thickness)
from genlab.apps.finetune import CodeClassifier, balanced_subset, end_to_end
from genlab.apps.interpolate_app import (crossfade, endpoint_psnr, midpoint_nn_rmse, noise_vectors, path_scores,
                                         strips_between)
from genlab.apps.reduce import LatentReducer, PixelSpace
from genlab.apps.restore import Corrupted, Restorer, degrade, diffusion_fill, median3, pick_method, restoration_scores
from genlab.apps.swap import SwapConfig, fit_swap, swap_scores, transform
from genlab.cli import main
from genlab.data import DataInfo, ImageSet, Splits
from genlab.errors import UserError


class Identity(nn.Module):
    """encode = the pixels, decode = their inverse: every restoration, path and arithmetic is done on pixels."""

    registry_name = "identity"

    def __init__(self, info: DataInfo = INFO):
        super().__init__()
        self.info = info

    def encode(self, x):
        return x.flatten(1)

    def decode(self, z):
        return z.view(-1, *self.info.shape)

    def reconstruct(self, x):
        return x.clone()


class Constant(Identity):
    """Reconstructs every image as the same fixed image (an oracle when that image is the clean one)."""

    def __init__(self, image: torch.Tensor, info: DataInfo = INFO):
        super().__init__(info)
        self.image = image

    def reconstruct(self, x):
        return self.image.expand_as(x).clone()


# ------------------------------------------------------------------------------------------- restore
def test_degrade_marks_the_known_pixels():
    x = images(6) * 0.8 + 0.1  # no pixel at lo already
    c = degrade("block", x, 0.5, "01", seed=3)
    assert c.known.shape == (6, 1, 8, 8) and (~c.known).flatten(1).sum(1).tolist() == [16] * 6  # 4 x 4 blocks
    assert torch.equal(c.x[c.known.expand_as(x)], x[c.known.expand_as(x)]) and (c.x[~c.known.expand_as(x)] == 0).all()
    assert torch.equal(degrade("block", x, 0.5, "01", seed=3).x, c.x)  # seeded
    half = degrade("half", x, None, "-11")
    assert half.known[:, :, :4].all() and not half.known[:, :, 4:].any() and (half.x[:, :, 4:] == -1).all()
    assert degrade("gaussian", x, 0.1).known is None and degrade("mask", x, 0.3).known.dtype == torch.bool
    with pytest.raises(UserError, match="MNIST has no colour"):
        degrade("gray", x, None)
    with pytest.raises(UserError, match="unknown corruption 'blok'"):
        degrade("blok", x, 0.1)


@pytest.mark.parametrize("kind", ["gaussian", "salt_pepper", "mask", "block", "half"])
def test_a_model_that_returns_its_input_gains_nothing(kind):
    x = images(10)
    c = degrade(kind, x, None, "01", seed=1)
    out = Restorer(Identity(), rounds=3, batch_size=4).restore(c)
    assert torch.equal(out, c.x)
    s = restoration_scores(x, c.x, out)
    assert s["restored"]["psnr_gain_db"] == 0.0 and s["restored"]["ssim_gain"] == 0.0
    assert s["corrupted"]["psnr_db"] == s["restored"]["psnr_db"] < 100


def test_half_mask_psnr_by_hand():
    x = torch.full((3, 1, 8, 8), 0.5)
    c = degrade("half", x, None)  # bottom half at 0: mse = 0.25 / 2
    oracle = Restorer(Constant(torch.full((1, 1, 8, 8), 0.5)), rounds=1).restore(c)
    s = restoration_scores(x, c.x, oracle)
    assert s["corrupted"]["mse_per_pixel"] == pytest.approx(0.125)
    assert s["corrupted"]["psnr_db"] == pytest.approx(10 * math.log10(8))
    assert s["restored"]["psnr_db"] == 100.0  # exact: capped
    assert s["restored"]["psnr_gain_db"] == pytest.approx(100 - 10 * math.log10(8))
    # the known top half is pasted back whatever the model says
    wrong = Restorer(Constant(torch.ones(1, 1, 8, 8)), rounds=2).restore(c)
    assert (wrong[:, :, :4] == 0.5).all() and (wrong[:, :, 4:] == 1).all()


def test_colourisation_keeps_the_gray_image_and_an_oracle_is_exact():
    info = DataInfo(3, 8, 8)
    x = images(5, c=3) * 0.5 + 0.25
    c = degrade("gray", x, None)
    assert c.x.shape == x.shape and torch.allclose(c.x[:, 0], x.mean(1)) and torch.allclose(c.x[:, 2], x.mean(1))
    assert torch.allclose(Restorer(Identity(info)).restore(c), c.x)  # gray in, gray out: no gain
    oracle = Restorer(Constant(x, info), rounds=1, batch_size=64).restore(c)
    assert torch.allclose(oracle, x, atol=1e-6)
    ae = tiny("ae", info)
    out = Restorer(ae, rounds=2).restore(c)
    assert out.shape == x.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    s = restoration_scores(x, c.x, out)
    assert all(math.isfinite(v) for v in s["restored"].values())


def test_pixelcnn_completes_the_bottom_half_and_refuses_other_corruptions():
    info = DataInfo(1, 8, 8, binarized="dynamic")
    pcnn = tiny("pixelcnn", info)
    x = (images(4) > 0.5).float()
    c = degrade("half", x, None)
    r = Restorer(pcnn, seed=0)
    assert r.method == "complete"
    out = r.restore(c)
    assert torch.equal(out[:, :, :4], x[:, :, :4]) and set(out.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(Restorer(pcnn, seed=0).restore(c), out)  # seeded draws
    with pytest.raises(UserError, match="`complete`.*half corruption only"):
        pick_method(pcnn, "block")
    with pytest.raises(UserError, match="cannot restore a block corruption"):
        r.restore(degrade("block", x, 0.5))


def test_flows_restore_through_a_shrunk_latent():
    nice = tiny("nice")
    assert pick_method(nice) == "shrink"
    x = images(6) * 0.8 + 0.1
    c = degrade("gaussian", x, 0.2)
    same = Restorer(nice, temperature=1.0).restore(c)  # a bijection: decode(encode(x)) = x
    assert torch.allclose(same, c.x, atol=1e-4)
    assert abs(restoration_scores(x, c.x, same)["restored"]["psnr_gain_db"]) < 1e-3
    assert not torch.allclose(Restorer(nice, temperature=0.5).restore(c), c.x, atol=1e-3)


def test_classical_baselines():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 3, 3] = 1.0  # one impulse
    assert torch.equal(median3(x), torch.zeros_like(x))
    ramp = torch.arange(8.0).div(7).expand(1, 1, 8, 8).contiguous()  # harmonic: diffusion restores it exactly
    known = torch.ones(1, 1, 8, 8, dtype=torch.bool)
    known[:, :, 2:5, 2:6] = False
    filled = diffusion_fill(Corrupted(torch.where(known, ramp, torch.zeros_like(ramp)), "block", known=known), 500)
    assert torch.allclose(filled, ramp, atol=1e-4)


def test_restoration_refusals_are_one_sentence():
    with pytest.raises(UserError, match="can do none of these") as e:
        Restorer(tiny("gan"))
    assert "'gan'" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="needs a model that can `encode`"):
        pick_method(tiny("pixelcnn", DataInfo(1, 8, 8, binarized="dynamic")), None, "shrink")


# ------------------------------------------------------------------------------------------- interpolate
def test_path_numbers_by_hand_on_pixels():
    a, b = torch.zeros(2, 1, 8, 8), torch.ones(2, 1, 8, 8)
    strips = strips_between(Identity(), a, b, 5, "linear", batch_size=7)  # the identity model: a cross-fade
    assert strips.shape == (2, 5, 1, 8, 8) and torch.allclose(strips, crossfade(a, b, 5))
    s = path_scores(strips)
    assert s == pytest.approx({"step_distance": 0.25, "evenness": 1.0, "path_ratio": 1.0})
    assert endpoint_psnr(strips, a, b) == 100.0
    detour = torch.stack([a[0], b[0], a[0]]).unsqueeze(0)  # out and back: steps 1, 1 -> ratio 2 / 0, clamped
    assert path_scores(torch.stack([a[0], b[0] * 0.5, b[0]]).unsqueeze(0))["path_ratio"] == pytest.approx(1.0)
    assert path_scores(detour)["path_ratio"] > 1e6
    uneven = torch.stack([a[0], a[0] + 0.1, b[0]]).unsqueeze(0)  # steps 0.1 and 0.9 -> max / mean = 1.8
    assert path_scores(uneven)["evenness"] == pytest.approx(1.8)
    assert midpoint_nn_rmse(strips, torch.cat([a, strips[:, 2]])) == pytest.approx(0.0, abs=1e-6)
    assert midpoint_nn_rmse(strips, a) == pytest.approx(0.5)


def test_noise_vectors_and_slerp_strips():
    g = torch.Generator().manual_seed(0)
    assert noise_vectors(tiny("gan"), 4, g).shape[0] == 4
    assert noise_vectors(tiny("vae"), 4, g).shape == (4, 3)
    assert noise_vectors(tiny("nice"), 4, g).shape == (4, 64)
    with pytest.raises(UserError, match="known latent prior"):
        noise_vectors(tiny("ae"), 4, g)
    vae = tiny("vae")
    s = strips_between(vae, images(3), images(3, 1), 6, "slerp")
    assert s.shape == (3, 6, 1, 8, 8) and 0 <= float(s.min()) and float(s.max()) <= 1


# ------------------------------------------------------------------------------------------- attributes
def test_properties_by_hand():
    x = torch.zeros(4, 1, 8, 8)
    x[0, 0, 1:3, 1:7] = 1.0  # a 2 x 6 bar: 2 A / P = 24 / 16
    x[1, 0, 4, 4] = 1.0  # one pixel: 2 / 4
    for i in range(8):
        x[2, 0, i, 7 - i] = 1.0  # '/': the top leans right
        x[3, 0, i, i] = 1.0  # '\'
    assert thickness(x).tolist() == pytest.approx([1.5, 0.5, 2 * 8 / 32, 0.5])
    assert thickness(torch.zeros(1, 1, 8, 8)).tolist() == [0.0]
    assert slant(x[2:]).tolist() == pytest.approx([1.0, -1.0])
    upright = torch.zeros(1, 1, 8, 8)
    upright[0, 0, :, 3] = 1
    assert slant(upright).tolist() == pytest.approx([0.0]) and slant(torch.zeros(1, 1, 8, 8)).tolist() == [0.0]
    assert ink(x[:2]).tolist() == pytest.approx([12 / 64, 1 / 64])
    assert parse_attribute(" class:3") == "class:3"
    with pytest.raises(UserError, match="unknown attribute 'thick'"):
        parse_attribute("thick")


def test_attribute_vector_of_a_hand_made_set():
    levels = torch.tensor([0.3, 0.4, 0.5, 0.6, 0.7])
    x = levels.view(-1, 1, 1, 1).expand(5, 1, 8, 8).contiguous()
    has = torch.tensor([False, False, False, True, True])
    v = AttributeVector(LatentReducer(Identity())).fit(x, has).vector_
    assert v.shape == (64,) and torch.allclose(v, torch.full((64,), 0.65 - 0.4))
    assert torch.allclose(AttributeVector(PixelSpace()).fit(x, has).vector_, v)
    hi, lo = split_by(levels, 0.2)
    assert hi.tolist() == [False, False, False, False, True] and lo.tolist() == [True, False, False, False, False]
    with pytest.raises(UserError, match="does not vary"):
        split_by(torch.ones(5))


def test_a_sweep_on_pixels_moves_ink_by_the_real_gap():
    g = torch.Generator().manual_seed(0)
    x = 0.4 + 0.2 * torch.rand(40, 1, 8, 8, generator=g)  # mid-range: no clipping anywhere on the sweep
    p = ink(x)
    has, has_not = split_by(p, 0.25)
    gap = float(p[has].double().mean() - p[has_not].double().mean())
    av = AttributeVector(LatentReducer(Identity())).fit(x, has, has_not)
    alphas = alpha_grid(1.0, 3)
    assert alphas == [-1.0, 0.0, 1.0] and alpha_grid(2.0, 5) == [-2.0, -1.0, 0.0, 1.0, 2.0]
    s = av.sweep(x, alphas)
    assert s.shape == (40, 3, 1, 8, 8) and torch.allclose(s[:, 1], x)
    props = ink(s.flatten(0, 1)).view(40, 3)
    res = sweep_scores(alphas, props, gap)
    assert res["spearman"] == pytest.approx(1.0)
    assert res["change_at_+1"] == pytest.approx(gap, abs=1e-6) and res["change_at_-1"] == pytest.approx(-gap, abs=1e-6)
    assert rank_correlation([0, 1, 2], torch.tensor([[3.0, 2, 1], [1, 1, 1]])) == pytest.approx(-0.5)


# ------------------------------------------------------------------------------------------- finetune
def test_balanced_subsets():
    y = np.array([0] * 10 + [1] * 10 + [2] * 2)
    idx = balanced_subset(y, 6, seed=0)
    assert np.bincount(y[idx.numpy()]).tolist() == [2, 2, 2] and len(set(idx.tolist())) == 6
    assert np.bincount(y[balanced_subset(y, 12, 0).numpy()]).tolist() == [5, 5, 2]  # class 2 gives all it has
    nine = np.bincount(y[balanced_subset(y, 9, 0).numpy()]).tolist()  # 3 each, class 2 short by one
    assert nine[2] == 2 and sorted(nine[:2]) == [3, 4]
    assert sorted(np.bincount(y[balanced_subset(y, 4, 0).numpy()], minlength=3).tolist()) == [1, 1, 2]
    assert torch.equal(balanced_subset(y, 6, 0), idx) and not torch.equal(balanced_subset(y, 6, 1), idx)
    assert torch.equal(balanced_subset(y, 50, 0), torch.arange(22))


def test_a_separable_toy_is_classified_perfectly():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(40) % 2
    x = (0.25 + 0.5 * y.view(-1, 1, 1, 1) + 0.05 * torch.randn(40, 1, 8, 8, generator=g)).clamp(0, 1)
    tr, te = torch.arange(0, 20), torch.arange(20, 40)
    for reducer in (PixelSpace(), LatentReducer(Identity())):
        clf = CodeClassifier(reducer).fit(x[tr], y[tr])
        assert clf.score(x[te], y[te]) == 1.0 and clf.predict(x[te]).shape == (20,)
    with pytest.raises(UserError, match="at least two classes"):
        CodeClassifier(PixelSpace()).fit(x[:4], torch.zeros(4, dtype=torch.long))
    pred = end_to_end(tiny("ae"), x[tr], y[tr], 2, x[te], epochs=20, lr=1e-2, batch_size=10)
    assert pred.shape == (20,) and float((pred == y[te]).double().mean()) >= 0.9
    assert end_to_end(tiny("ae"), x[tr], y[tr], 2, x[te], scratch=True, epochs=1).shape == (20,)


# ------------------------------------------------------------------------------------------- swap
def test_domain_transforms_and_the_identity_baseline_by_hand():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 4, 4] = 1.0
    d = transform(x, "dilate")
    assert d.sum() == 9 and (d[0, 0, 3:6, 3:6] == 1).all()
    assert torch.equal(transform(x * 2 - 1, "invert", "-11"), 1 - 2 * x)
    with pytest.raises(UserError, match="dilate, invert"):
        transform(x, "blur")
    a = torch.full((4, 1, 8, 8), 0.25)
    model = fit_swap(images(16), transform(images(16, 1), "invert"), SwapConfig(hidden=(16,), latent_dim=2, epochs=1))
    res, imgs = swap_scores(model, a, "invert")
    assert res["identity"]["a_to_b_psnr_db"] == pytest.approx(10 * math.log10(4))  # |0.25 - 0.75| everywhere
    assert set(res) == {"swap", "identity", "same_decoder"} and imgs["a_to_b"].shape == a.shape
    assert 0 <= float(imgs["b_to_a"].min()) and float(imgs["b_to_a"].max()) <= 1


def test_swap_learns_the_transform_on_digits():
    from genlab.data import DataConfig, Pipeline, load

    d = load("digits")
    x = Pipeline(DataConfig())(d.train.images[:600])
    model = fit_swap(x[:300], transform(x[300:], "invert"), SwapConfig(hidden=(64,), latent_dim=8, epochs=15), seed=0)
    res, _ = swap_scores(model, Pipeline(DataConfig())(d.test.images[:100]), "invert")
    assert res["swap"]["a_to_b_psnr_db"] > res["identity"]["a_to_b_psnr_db"] + 5
    assert res["swap"]["a_to_b_psnr_db"] > res["same_decoder"]["a_to_b_psnr_db"] + 5


# ------------------------------------------------------------------------------------------- refusals, registry
def test_the_new_applications_are_registered_and_refuse_missing_capabilities():
    assert {"restore", "interpolate", "attributes", "finetune", "swap"} <= set(apps.names())
    gan = tiny("gan")
    for name, cap in [("attributes", "encode"), ("finetune", "encode")]:
        with pytest.raises(UserError, match=f"`{cap}`") as e:
            apps.check(apps.get(name), gan)
        assert "'gan'" in str(e.value) and "\n" not in str(e.value)
    apps.check(apps.get("interpolate"), gan)  # a GAN interpolates between noise vectors
    apps.check(apps.get("swap"), gan)  # swap trains its own model
    with pytest.raises(UserError, match="`decode`"):
        apps.check(apps.get("interpolate"), tiny("pixelcnn", DataInfo(1, 8, 8, binarized="dynamic")))


# ------------------------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    return tiny_vae_run(tmp_path_factory.mktemp("vae"), latent_dim=4)


@pytest.mark.parametrize("app, args, figures, rows", [
    ("restore", ["--corruptions", "gaussian,half", "--rounds", "2"],
     ["restore_gaussian.png", "restore_half.png"],
     {"gaussian/corrupted", "gaussian/model", "gaussian/median3", "half/corrupted", "half/model", "half/diffusion"}),
    ("attributes", ["--attributes", "thickness,class:3", "--fit-n", "200", "--steps", "5"],
     ["attribute_thickness.png", "attribute_class3.png", "sweep.png"],
     {"thickness/latent", "thickness/pixels", "class:3/latent", "class:3/pixels"}),
    ("interpolate", ["--pairs", "10", "--steps", "6", "--ref-n", "100"],
     ["interpolation_linear.png", "interpolation_slerp.png", "interpolation_crossfade.png"],
     {"linear", "slerp", "crossfade"}),
    ("finetune", ["--labels", "20,all", "--pool-n", "200"], ["accuracy.png"], {"latent", "pca", "pixels"}),
    ("swap", ["--train-n", "200", "--epochs", "1"], ["swap.png"], {"swap", "identity", "same_decoder"}),
])
def test_apply_writes_numbers_protocol_and_figures(vae_run, capsys, app, args, figures, rows):
    code, out, err = run_cli(capsys, "apply", app, vae_run, "--n", "60", *args)
    assert code == 0, err
    folder = vae_run / "apply" / app
    rec = json.loads((folder / "results.json").read_text())
    assert rec["app"] == app and set(rec["results"]) == rows and "baseline" in rec["protocol"]
    for f in figures:
        assert (folder / f).is_file() and (folder / f).stat().st_size > 100
    for row in rows:
        assert row in out
    if app == "restore":
        r = rec["results"]
        assert r["gaussian/corrupted"]["psnr_gain_db"] == 0.0
        half = r["half/model"]["psnr_db"] - r["half/corrupted"]["psnr_db"]
        assert r["half/model"]["psnr_gain_db"] == pytest.approx(half)
        assert "MNIST has no colour" in rec["protocol"]["colourisation"]
    if app == "attributes":
        assert all(-1 <= v["spearman"] <= 1 for v in rec["results"].values())
        assert rec["results"]["thickness/latent"]["real_gap"] == rec["results"]["thickness/pixels"]["real_gap"] > 0


def test_apply_restore_colourises_colour_data(tmp_path, capsys):
    from genlab.apps.anomaly import write_npz

    g = torch.Generator().manual_seed(0)
    imgs = ImageSet((torch.rand(80, 3, 8, 8, generator=g) * 255).to(torch.uint8), torch.arange(80) % 2, ["a", "b"])
    npz = write_npz(Splits(imgs, imgs), tmp_path / "colour.npz")
    run = tmp_path / "ae"
    assert main(["train", "ae", "--data", f"npz:{npz}", "--epochs", "1", "--batch-size", "40", "--set",
                 "model.hidden=(16,)", "--set", "model.latent_dim=4", "--set", "train.eval_images=40",
                 "--out", str(run), "--quiet"]) == 0
    code, out, err = run_cli(capsys, "apply", "restore", run, "--n", "30", "--corruptions", "gray", "--rounds", "2")
    assert code == 0, err
    rec = json.loads((run / "apply" / "restore" / "results.json").read_text())
    assert set(rec["results"]) == {"gray/corrupted", "gray/model"} and "colourisation" not in rec["protocol"]
    assert (run / "apply" / "restore" / "restore_gray.png").is_file()


@pytest.mark.parametrize("args, fragment", [
    (["apply", "restore", "{vae}", "--corruptions", "gaussian,blok"], "unknown corruption 'blok' (did you mean: block"),
    (["apply", "restore", "{vae}", "--corruptions", "gray"], "MNIST has no colour"),
    (["apply", "attributes", "{vae}", "--attributes", "width"], "unknown attribute 'width'"),
    (["apply", "finetune", "{vae}", "--labels", "ten"], "label counts or 'all'"),
    (["apply", "interpolate", "{vae}", "--modes", "cubic"], "--modes takes linear and/or slerp"),
])
def test_apply_mistakes_are_one_sentence_and_exit_2(vae_run, capsys, args, fragment):
    code, _, err = run_cli(capsys, *[a.format(vae=vae_run) for a in args])
    assert code == 2
    assert fragment.lower() in err.lower()
    assert err.count("\n") == 1 and err.startswith("genlab: error: ")

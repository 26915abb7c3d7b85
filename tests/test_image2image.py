"""The image-to-image models and their pieces: the U-Net's shapes, the PatchGAN's grid and receptive field, the
pair corruptions, the half-linear schedule, pix2pix training that learns a translation, StarGAN's generator,
discriminator heads and training, CycleGAN's history pool, losses, two-domain data and training, `genlab translate`
for all three, and the restore application on a pix2pix run."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from apps_common import run_cli  # tests/ is on sys.path

from genlab.cli import main
from genlab.data import DataConfig, DataInfo, open_splits
from genlab.data.corruptions import blur, downsample, edges
from genlab.errors import UserError
from genlab.models import registry
from genlab.models.cyclegan import HistoryPool, cycle_terms, parse_domains
from genlab.nn.image2image import (PatchDiscriminator, ResnetGenerator, StarDiscriminator, UNetGenerator,
                                   auto_patch_layers, patch_grid, patch_receptive_field)
from genlab.optim import OptimConfig
from genlab.train.optim import Stepper, lr_factor


@pytest.mark.parametrize("side, levels", [(28, 5), (32, 5), (64, 6)])
def test_unet_keeps_the_size_and_reaches_a_1x1_bottleneck(side, levels):
    g = UNetGenerator(3, 2, side, side, width=4).eval()
    sizes = []
    hooks = [d.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:]))) for d in g.down]
    out = g(torch.randn(2, 3, side, side))
    assert out.shape == (2, 2, side, side)
    assert g.levels == levels and sizes[-1] == (1, 1)
    assert sizes == [(2 ** (levels - i - 1),) * 2 for i in range(levels)]  # each level halves the padded side
    for h in hooks:
        h.remove()


def test_unet_skips_carry_the_input_past_the_bottleneck():
    """With the bottleneck's activation zeroed, the output still depends on the input: through the skips."""
    g = UNetGenerator(1, 1, 16, 16, width=4, dropout=0.0).eval()
    g.down[-1].register_forward_hook(lambda m, i, o: torch.zeros_like(o))
    x = torch.randn(2, 1, 16, 16, requires_grad=True)
    g(x).sum().backward()
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("side", [28, 32, 64, 100])
def test_patchgan_grid_is_the_stated_one(side):
    for layers in (1, 2):
        if patch_grid(side, layers) < 1:
            continue
        d = PatchDiscriminator(2, 4, layers)
        assert d(torch.randn(2, 2, side, side)).shape == (2, 1, patch_grid(side, layers), patch_grid(side, layers))


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_patchgan_logit_sees_exactly_its_receptive_field(layers):
    """The gradient of one interior logit reaches an input window of RF(L) = 16, 34, 70 px, and nothing outside."""
    side = 2 * patch_receptive_field(layers) + 8
    torch.manual_seed(0)
    d = PatchDiscriminator(1, 4, layers, norm="none")
    x = torch.randn(1, 1, side, side, requires_grad=True)
    out = d(x)
    g = out.shape[-1] // 2
    out[0, 0, g, g].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero()
    cols = x.grad[0, 0].abs().sum(0).nonzero()
    assert int(rows.max() - rows.min()) + 1 == patch_receptive_field(layers)
    assert int(cols.max() - cols.min()) + 1 == patch_receptive_field(layers)


def test_auto_patch_keeps_the_papers_ratio():
    assert [patch_receptive_field(n) for n in (1, 2, 3, 4)] == [16, 34, 70, 142]
    assert auto_patch_layers(256) == 3  # the paper's 70 x 70 patches at 256 px
    assert auto_patch_layers(28) == auto_patch_layers(64) == 1 and auto_patch_layers(128) == 2


def test_half_linear_schedule_holds_then_decays_to_zero():
    cfg = OptimConfig(schedule="half-linear")
    f = [lr_factor(cfg, s, 100) for s in range(100)]
    assert f[0] == f[49] == 1.0
    assert f[50] == pytest.approx(1.0) and f[75] == pytest.approx(0.5) and f[99] == pytest.approx(0.02)
    assert all(a >= b for a, b in zip(f, f[1:]))


# ---------------------------------------------------------------- the pair corruptions
def test_edges_mark_a_step_and_nothing_on_flat_images():
    x = torch.full((1, 3, 8, 8), -1.0)
    assert (edges(x, 0.25, -1.0, 1.0) == -1).all()
    x[..., 4:] = 1.0  # a vertical step between columns 3 and 4
    e = edges(x, 0.25, -1.0, 1.0)
    assert e.shape == x.shape and torch.equal(e[:, 0], e[:, 2])  # one map on every channel
    on = (e[0, 0] == 1).any(0).nonzero().flatten().tolist()
    assert on == [3, 4]


def test_blur_keeps_flat_images_and_the_mean_and_spreads_a_point():
    flat = torch.full((1, 1, 16, 16), 0.3)
    assert torch.allclose(blur(flat, 0.1, 0.0, 1.0), flat)
    point = torch.zeros(1, 1, 16, 16)
    point[..., 8, 8] = 1.0
    b = blur(point, 0.1, 0.0, 1.0)
    assert b.sum() == pytest.approx(1.0, abs=1e-5) and b[..., 8, 8] < 0.2 and b[..., 8, 9] > 0
    assert torch.equal(blur(point, 0.0, 0.0, 1.0), point)


def test_downsample_loses_detail_by_the_level():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 32, 32, generator=g)
    assert torch.allclose(downsample(x, 0.0, 0.0, 1.0), x, atol=1e-5)  # nothing lost
    blocks = torch.rand(2, 1, 8, 8, generator=g).repeat_interleave(4, 2).repeat_interleave(4, 3)
    lost = downsample(x, 0.75, 0.0, 1.0)  # 4x: 8 x 8 pixels of information
    assert lost.shape == x.shape and 0 <= lost.min() and lost.max() <= 1
    assert (lost - x).abs().mean() > 0.1
    assert (downsample(blocks, 0.75, 0.0, 1.0) - blocks).abs().mean() < (lost - x).abs().mean() / 2


# ---------------------------------------------------------------- the model
def tiny(info=DataInfo(1, 16, 16, range="-11"), **over):
    cfg = registry.get("pix2pix").config_cls(**{"width": 8, **over})
    torch.manual_seed(0)
    return registry.build("pix2pix", cfg, info)


def test_translate_is_deterministic_unless_asked_for_noise():
    m = tiny().eval()
    a = torch.rand(3, 1, 16, 16) * 2 - 1
    assert torch.equal(m.translate(a), m.translate(a))
    assert not torch.equal(m.translate(a, noise=True), m.translate(a, noise=True))
    assert not any(mod.training for mod in m.modules())  # the noise left eval mode as it was


def test_colourisation_needs_colour_and_small_images_are_refused():
    with pytest.raises(UserError, match="colour"):
        tiny(pair="gray")
    m = tiny(DataInfo(3, 16, 16, range="-11"), pair="gray")
    b = torch.rand(2, 3, 16, 16) * 2 - 1
    a = m.make_input(b)
    assert torch.allclose(a[:, 0], a[:, 1]) and torch.allclose(a.mean(1), b.mean(1), atol=1e-6)
    with pytest.raises(UserError, match="patch_layers"):
        tiny(patch_layers=3)  # 70 px patches on 16 px images
    with pytest.raises(UserError, match="model.pair"):
        registry.get("pix2pix").config_cls(pair="sketch").validate()


def test_pix2pix_learns_to_deblur():
    """120 steps on 8x8 digits: the test L1 of G's output falls well below that of the blurred input itself
    (measured: 0.11 against 0.27)."""
    from genlab.data import load

    split = load("digits")
    x = split.train.images.float() / 255 * 2 - 1  # 1497 x 1 x 8 x 8 in [-1, 1]
    test = split.test.images.float() / 255 * 2 - 1
    m = tiny(DataInfo(1, 8, 8, range="-11"), pair="blur", level=0.1, width=16, dropout=0.0)
    steppers = {k: Stepper(o) for k, o in m.configure_optimizers(OptimConfig(lr=2e-3, beta1=0.5)).items()}
    g = torch.Generator().manual_seed(0)
    for step in range(120):
        idx = torch.randint(0, len(x), (64,), generator=g)
        m.train_step((x[idx], None), steppers, step)
    m.eval()
    with torch.no_grad():
        a = m.make_input(test, torch.Generator().manual_seed(1))
        mine = (m.translate(a) - test).abs().mean()
        given = (a - test).abs().mean()
    assert mine < 0.6 * given, (float(mine), float(given))


@pytest.fixture(scope="module")
def blur_run(tmp_path_factory):
    """pix2pix trained for one epoch on 128 digits to undo blur."""
    run = tmp_path_factory.mktemp("p2p")
    assert main(["train", "pix2pix", "--data", "digits", "--limit", "128", "--epochs", "1", "--set", "model.pair=blur",
                 "--set", "model.width=8", "--set", "train.eval_images=64", "--out", str(run), "--quiet"]) == 0
    return run


def test_restore_measures_a_pix2pix_run_on_its_own_corruption(blur_run, capsys):
    assert (blur_run / "samples" / "epoch_0001.png").is_file()  # inputs, outputs and targets
    code, out, err = run_cli(capsys, "apply", "restore", blur_run, "--n", "40")
    assert code == 0, err
    result = json.loads((blur_run / "apply" / "restore" / "results.json").read_text())
    assert "blur/model" in result["results"] and "edges/model" not in result["results"]
    assert result["protocol"]["trained_for"].startswith("blur at level 0.05")
    assert "model.translate" in result["protocol"]["restoration"]


def test_translate_writes_outputs_figure_and_scores(blur_run, tmp_path, capsys):
    code, out, err = run_cli(capsys, "translate", blur_run, "-n", "10", "-o", tmp_path / "t")
    assert code == 0, err
    assert len(list((tmp_path / "t" / "outputs").glob("*.png"))) == 10 and (tmp_path / "t" / "translate.png").is_file()
    rec = json.loads((tmp_path / "t" / "scores.json").read_text())
    assert set(rec["scores"]) == {"input", "output"} and rec["protocol"]["n"] == 10
    assert rec["scores"]["input"]["psnr_db"] == pytest.approx(float(out.split("PSNR ")[1].split(" dB")[0]), abs=0.01)
    # the user's own inputs: outputs only, no targets to score against
    code, out, err = run_cli(capsys, "translate", blur_run, "-n", "5", "--as-input", "-o", tmp_path / "u")
    assert code == 0, err
    assert not (tmp_path / "u" / "scores.json").exists() and len(list((tmp_path / "u" / "outputs").iterdir())) == 5


def test_translate_refusals_are_one_sentence(blur_run, tmp_path, capsys):
    code, _, err = run_cli(capsys, "translate", blur_run, "--input", "mnist", "-n", "4", "-o", tmp_path / "m")
    assert code == 2 and "1 x 28 x 28" in err and "1 x 8 x 8" in err and "Traceback" not in err
    vae = tmp_path / "vae"
    assert main(["train", "vae", "--data", "digits", "--limit", "64", "--epochs", "1", "--set", "model.hidden=(8,)",
                 "--out", str(vae), "--quiet"]) == 0
    code, _, err = run_cli(capsys, "translate", vae)
    assert code == 2 and "does not translate" in err


# ---------------------------------------------------------------- StarGAN
@pytest.mark.parametrize("kernel", [3, 4])
@pytest.mark.parametrize("side", [8, 28, 30])
def test_resnet_generator_keeps_the_size(side, kernel):
    g = ResnetGenerator(4, 1, width=4, blocks=1, kernel=kernel)
    assert g(torch.randn(2, 4, side, side)).shape == (2, 1, side, side)


@pytest.mark.parametrize("side, grid", [(8, 2), (28, 1), (64, 2), (128, 2)])
def test_star_discriminator_heads(side, grid):
    d = StarDiscriminator(3, side, side, num_domains=5, width=4)
    src, cls = d(torch.randn(2, 3, side, side))
    assert src.shape == (2, 1, grid, grid) and cls.shape == (2, 5)


def star(**over):
    cfg = registry.get("stargan").config_cls(**{"width": 8, "blocks": 1, **over})
    torch.manual_seed(0)
    return registry.build("stargan", cfg, DataInfo(1, 8, 8, num_classes=10, range="-11"))


def test_stargan_output_changes_with_the_target_domain_alone():
    m = star().eval()
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    outs = [m.translate(x, d) for d in range(10)]
    assert all(not torch.equal(outs[0], o) for o in outs[1:])
    assert torch.equal(m.translate(x, torch.tensor([3, 3, 3, 3])), outs[3])
    with pytest.raises(UserError, match="0..9"):
        m.translate(x, 10)


def test_stargan_needs_labels():
    with pytest.raises(UserError, match="no labels"):
        registry.build("stargan", registry.get("stargan").config_cls(width=8), DataInfo(1, 8, 8, range="-11"))
    m = star()
    steppers = {k: Stepper(o) for k, o in m.configure_optimizers(OptimConfig()).items()}
    with pytest.raises(UserError, match="labels"):
        m.train_step((torch.zeros(2, 1, 8, 8), None), steppers, 0)


def test_stargan_learns_the_cycle_and_the_domains():
    """80 steps on 8x8 digits (one D step per G step): the cycle x -> c -> c' error of test digits falls below half
    its starting value and D's domain head classifies real test digits well above chance."""
    from genlab.data import load

    split = load("digits")
    x, y = split.train.images.float() / 255 * 2 - 1, split.train.labels
    tx, ty = split.test.images.float() / 255 * 2 - 1, split.test.labels
    m = star(n_critic=1)

    def cycle_error():
        m.eval()
        with torch.no_grad():
            err = (m.translate(m.translate(tx, (ty + 3) % 10), ty) - tx).abs().mean()
        m.train()
        return float(err)

    before = cycle_error()
    steppers = {k: Stepper(o) for k, o in m.configure_optimizers(OptimConfig(lr=1e-3, beta1=0.5)).items()}
    g = torch.Generator().manual_seed(0)
    for step in range(80):
        idx = torch.randint(0, len(x), (64,), generator=g)
        m.train_step((x[idx], y[idx]), steppers, step)
    after = cycle_error()
    with torch.no_grad():
        acc = float((m.eval().domain_logits(tx).argmax(1) == ty).float().mean())
    assert after < 0.5 * before, (before, after)
    assert acc > 0.2, acc


def test_translate_into_domains(tmp_path, capsys):
    run = tmp_path / "star"
    assert main(["train", "stargan", "--data", "digits", "--limit", "128", "--epochs", "1", "--set", "model.width=8",
                 "--set", "model.blocks=1", "--out", str(run), "--quiet"]) == 0
    assert (run / "samples" / "epoch_0001.png").is_file()  # each input beside its translation to every domain
    code, out, err = run_cli(capsys, "translate", run, "-n", "6", "--to", "3,7")
    assert code == 0, err
    assert sorted(p.name for p in (run / "translate" / "outputs").iterdir()) == ["to_3", "to_7"]
    assert len(list((run / "translate" / "outputs" / "to_7").glob("*.png"))) == 6
    for bad, says in ((["--to", "10"], "0..9"), (["--to", "x"], "domain numbers"), (["--noise"], "no such noise")):
        code, _, err = run_cli(capsys, "translate", run, "-n", "2", "-o", tmp_path / "t", *bad)
        assert code == 2 and says in err and "Traceback" not in err


# ---------------------------------------------------------------- CycleGAN
def test_history_pool_fills_then_swaps_half_the_time():
    torch.manual_seed(0)
    pool = HistoryPool(50, (1, 2, 2))
    first = torch.arange(50.0).view(50, 1, 1, 1).expand(50, 1, 2, 2)
    assert torch.equal(pool.query(first), first) and int(pool.count) == 50  # filling: the images themselves
    new = -1 - torch.arange(4000.0).view(4000, 1, 1, 1).expand(4000, 1, 2, 2)
    out = pool.query(new)
    from_pool = (out != new).any(dim=(1, 2, 3))
    assert abs(from_pool.float().mean() - 0.5) < 0.03
    seen = set(first[:, 0, 0, 0].tolist()) | set(new[:, 0, 0, 0].tolist())
    assert set(out[from_pool][:, 0, 0, 0].tolist()) <= seen  # only images that went in come out
    assert set(pool.images[:, 0, 0, 0].tolist()) <= seen


def test_cycle_and_identity_losses_vanish_for_identity_generators():
    a, b = torch.randn(3, 1, 8, 8), torch.randn(2, 1, 8, 8)
    t = cycle_terms(lambda v: v, lambda v: v, a, b)
    assert t["cycle"] == 0 and t["identity"] == 0
    t = cycle_terms(lambda v: v + 1, lambda v: v - 1, a, b)  # inverse pair: cycles close, identities do not
    assert t["cycle"] < 1e-6 and t["identity"] == pytest.approx(2.0)


def test_domains_spec():
    assert parse_domains("") == ((0,), (1,)) and parse_domains("3|8") == ((3,), (8,))
    assert parse_domains("0,1,2|7,8,9") == ((0, 1, 2), (7, 8, 9))
    for bad in ("3", "3|3", "a|b", "1|2|3", "|4", "-1|2"):
        with pytest.raises(UserError, match="model.domains"):
            parse_domains(bad)


def test_two_sources_make_balanced_interleaved_domains(tmp_path):
    inverted = 255 - np.repeat(np.repeat(load_digits_images()[:100], 2, axis=1), 2, axis=2)  # 100 x 16 x 16
    np.savez(tmp_path / "inv.npz", x_train=inverted, x_test=inverted[:30])
    s = open_splits(DataConfig(source="digits", target=f"npz:{tmp_path / 'inv.npz'}"))
    assert s.train.images.shape == (2 * 1497, 1, 8, 8)  # the 100 inverted images repeated up to 1497, resized
    assert s.train.labels[:4].tolist() == [0, 1, 0, 1] and s.train.labels.sum() == 1497
    assert s.test.labels.sum() == 30 and len(s.test) == 330
    assert s.train.classes == ["digits", f"npz:{tmp_path / 'inv.npz'}"]
    with pytest.raises(UserError, match="must differ"):
        DataConfig(source="digits", target="digits").validate()


def load_digits_images() -> np.ndarray:
    from genlab.data import load

    return load("digits").train.images[:, 0].numpy()


def test_cyclegan_learns_to_cycle():
    """40 steps on two class sets of 8x8 digits: the cycle error of test images falls below half its start."""
    from genlab.data import load

    split = load("digits")
    x, y = split.train.images.float() / 255 * 2 - 1, split.train.labels
    tx, ty = split.test.images.float() / 255 * 2 - 1, split.test.labels
    cfg = registry.get("cyclegan").config_cls(width=8, blocks=1, domains="0,1,2,3,4|5,6,7,8,9")
    torch.manual_seed(0)
    m = registry.build("cyclegan", cfg, DataInfo(1, 8, 8, num_classes=10, range="-11"))

    def cycle_error():
        m.eval()
        with torch.no_grad():
            a, b = m.split(tx, ty)
            err = (m.to_a(m.to_b(a)) - a).abs().mean() + (m.to_b(m.to_a(b)) - b).abs().mean()
        m.train()
        return float(err)

    before = cycle_error()
    steppers = {k: Stepper(o) for k, o in m.configure_optimizers(OptimConfig(lr=2e-3, beta1=0.5)).items()}
    g = torch.Generator().manual_seed(0)
    for step in range(40):
        idx = torch.randint(0, len(x), (16,), generator=g)
        logs = m.train_step((x[idx], y[idx]), steppers, step)
    assert logs["skipped"] == 0
    assert cycle_error() < 0.5 * before
    # a batch with one domain only updates nothing and says so
    state = {k: v.clone() for k, v in m.state_dict().items()}
    logs = m.train_step((x[y < 5][:8], y[y < 5][:8]), steppers, 40)
    assert logs["skipped"] == 1 and all(torch.equal(v, m.state_dict()[k]) for k, v in state.items())


def test_cyclegan_between_two_sources_from_the_command_line(tmp_path, capsys):
    inverted = 255 - load_digits_images()[:64]
    np.savez(tmp_path / "inv.npz", x_train=inverted, x_test=inverted[:16])
    run = tmp_path / "cyc"
    code, out, err = run_cli(capsys, "train", "cyclegan", "--data", "digits",
                             "--set", f"data.target=npz:{tmp_path / 'inv.npz'}", "--limit", "128", "--epochs", "1",
                             "--set", "model.width=8", "--set", "model.blocks=1", "--out", run, "--quiet")
    assert code == 0, err
    assert (run / "samples" / "epoch_0001.png").is_file()
    code, out, err = run_cli(capsys, "translate", run, "-n", "6", "--to", "1")
    assert code == 0, err
    assert len(list((run / "translate" / "outputs" / "to_1").glob("*.png"))) == 6
    code, _, err = run_cli(capsys, "train", "cyclegan", "--data", "digits", "--set", "model.domains=3|12",
                           "--out", tmp_path / "bad", "--quiet")
    assert code == 2 and "set data.target" in err


# ---------------------------------------------------------------- paired sources
def _png(path, array):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _pair_images(n: int, seed: int = 0):
    """n grey 8x8 targets and their inputs (the targets inverted)."""
    rng = np.random.default_rng(seed)
    b = rng.integers(0, 256, (n, 8, 8), dtype=np.uint8)
    return 255 - b, b


def test_side_by_side_pairs_load_as_stacked_channels(tmp_path):
    from genlab.data import load

    a, b = _pair_images(6)
    for i in range(6):
        _png(tmp_path / "sbs" / ("train" if i < 4 else "test") / f"{i}.png", np.concatenate([a[i], b[i]], axis=1))
    s = load(f"pairs:{tmp_path / 'sbs'}")
    assert s.train.paired and s.train.images.shape == (4, 2, 8, 8) and len(s.test) == 2
    assert np.array_equal(s.train.images[0, 0].numpy(), a[0]) and np.array_equal(s.train.images[0, 1].numpy(), b[0])


@pytest.mark.parametrize("case, says", [("names", "same image names"), ("sizes", "share one size"),
                                        ("odd", "even width"), ("missing", "does not exist")])
def test_pair_readers_refuse_mismatches_in_one_sentence(tmp_path, capsys, case, says):
    a, b = _pair_images(2)
    for i in range(2):
        _png(tmp_path / "A" / f"{i}.png", a[i])
        _png(tmp_path / "B" / f"{i if case != 'names' else i + 5}.png", b[i] if case != "sizes" else b[i][:6])
    _png(tmp_path / "odd" / "0.png", np.zeros((8, 9), np.uint8))
    spec = {"odd": f"pairs:{tmp_path / 'odd'}", "missing": f"pairs:{tmp_path / 'A'},{tmp_path / 'nowhere'}"}.get(
        case, f"pairs:{tmp_path / 'A'},{tmp_path / 'B'}")
    code, _, err = run_cli(capsys, "train", "pix2pix", "--data", spec, "--set", "model.pair=source",
                           "--out", tmp_path / "run", "--quiet")
    assert code == 2 and says in err and "Traceback" not in err and err.count("\n") == 1


def test_pix2pix_learns_from_a_paired_source_and_others_refuse_it(tmp_path, capsys):
    a, b = _pair_images(64)
    for i in range(64):
        _png(tmp_path / "A" / f"{i:02d}.png", a[i])
        _png(tmp_path / "B" / f"{i:02d}.png", b[i])
    spec = f"pairs:{tmp_path / 'A'},{tmp_path / 'B'}"
    code, _, err = run_cli(capsys, "train", "vae", "--data", spec, "--out", tmp_path / "vae", "--quiet")
    assert code == 2 and "only image-to-image models" in err
    code, _, err = run_cli(capsys, "train", "pix2pix", "--data", spec, "--out", tmp_path / "p", "--quiet")
    assert code == 2 and "model.pair=source" in err
    run = tmp_path / "p2p"
    code, _, err = run_cli(capsys, "train", "pix2pix", "--data", spec, "--set", "model.pair=source", "--epochs", "3",
                           "--batch-size", "16", "--set", "model.width=8", "--out", run, "--quiet")
    assert code == 0, err
    code, out, err = run_cli(capsys, "translate", run, "-n", "16", "-o", tmp_path / "t")
    assert code == 0, err
    rec = json.loads((tmp_path / "t" / "scores.json").read_text())
    assert rec["protocol"]["inputs"] == "the source's own pairs" and rec["scores"]["output"]["psnr_db"] > 0
    # the user's own inputs, one image each: a source, or a bare folder of images
    np.savez(tmp_path / "in.npz", x=a[:3])
    code, _, err = run_cli(capsys, "translate", run, "--input", f"npz:{tmp_path / 'in.npz'}", "--as-input",
                           "-o", tmp_path / "u")
    assert code == 0, err
    assert len(list((tmp_path / "u" / "outputs").glob("*.png"))) == 3
    code, _, err = run_cli(capsys, "translate", run, "--input", tmp_path / "A", "--as-input", "-o", tmp_path / "f")
    assert code == 0, err
    assert len(list((tmp_path / "f" / "outputs").glob("*.png"))) == 64

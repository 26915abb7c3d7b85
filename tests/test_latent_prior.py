"""Ex-post density estimation: the Gaussian mixture fitted to a VAE's codes, and its place in training."""
import pytest
import torch
from safetensors.torch import load_file

from genlab.api import train
from genlab.data import Batches, Pipeline
from genlab.errors import UserError
from genlab.models.latent_prior import GaussianMixtureLatents
from genlab.run import compose, load_model, split_images


def two_clusters(n=4000, seed=0):
    """30% of the points around (-4, 0) with std 0.5, 70% around (3, 2) stretched along (1, 1)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(int(0.3 * n), 2, generator=g) * 0.5 + torch.tensor([-4.0, 0.0])
    b = torch.randn(n - len(a), 2, generator=g) @ torch.tensor([[1.0, 0.8], [0.0, 0.3]]) + torch.tensor([3.0, 2.0])
    return torch.cat([a, b])


def test_the_mixture_recovers_weights_means_and_covariances_and_samples_from_them():
    z = two_clusters()
    mix = GaussianMixtureLatents(dim=2, components=2)
    mix.fit(z, seed=0)
    order = mix.means[:, 0].argsort()  # the left cluster first
    assert torch.allclose(mix.weights[order].float(), torch.tensor([0.3, 0.7]), atol=0.01)
    assert torch.allclose(mix.means[order], torch.tensor([[-4.0, 0.0], [3.0, 2.0]]), atol=0.06)
    cov = mix.chol @ mix.chol.transpose(1, 2)
    assert torch.allclose(cov[order[1]], torch.tensor([[1.0, 0.8], [0.8, 0.73]]), atol=0.06)
    s = mix.sample(20000, torch.Generator().manual_seed(1))
    assert s.shape == (20000, 2)
    assert abs(float((s[:, 0] < 0).float().mean()) - 0.3) < 0.015  # the weights
    assert torch.allclose(s.mean(0), z.mean(0), atol=0.05)
    assert torch.allclose(torch.cov(s.T), torch.cov(z.T), atol=0.15)


def test_mixture_samples_repeat_with_the_generator_and_an_unfitted_mixture_refuses():
    mix = GaussianMixtureLatents(dim=3, components=2)
    with pytest.raises(UserError, match="not been fitted"):
        mix.sample(4)
    mix.fit(torch.randn(200, 3), seed=0)
    a, b = (mix.sample(8, torch.Generator().manual_seed(5)) for _ in range(2))
    assert torch.equal(a, b)
    with pytest.raises(UserError, match="at least 4 codes"):
        mix.fit(torch.randn(3, 3))


def mixture_run(epochs=2, fit_images=100):
    return compose("vae", flags={"data": {"source": "digits", "limit": 256},
                                 "train": {"epochs": epochs, "batch_size": 32, "samples": 8}},
                   overrides=["model.hidden=(32,)", "model.latent_dim=4", "model.prior=mixture",
                              "model.prior_components=3", f"model.prior_fit_images={fit_images}"])


def test_training_fits_the_mixture_to_the_final_codes_of_the_first_images_and_keeps_it(tmp_path, monkeypatch):
    fits = []
    fit = GaussianMixtureLatents.fit
    monkeypatch.setattr(GaussianMixtureLatents, "fit", lambda self, z, seed=0: (fits.append(len(z)), fit(self, z, seed)))
    train(mixture_run(epochs=2, fit_images=100), tmp_path / "run", quiet=True)
    assert fits == [100, 100]  # once per epoch end, on prior_fit_images codes
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert float(saved["mixture.fitted"]) == 1.0
    model, cfg = load_model(tmp_path / "run")
    images = split_images(cfg, "train").subset(100)
    x, _ = Batches(images, Pipeline(cfg.data), 100, shuffle=False).batch(torch.arange(100), 0)
    codes = model.encode(x)
    mix = model.mixture
    assert torch.allclose((mix.weights[:, None] * mix.means).sum(0), codes.mean(0), atol=1e-4)  # EM keeps the mean
    g = torch.Generator().manual_seed(0)
    expected = model.decode(mix.sample(6, torch.Generator().manual_seed(0)))
    assert torch.allclose(model.sample(6, generator=g), expected)


def test_a_resumed_mixture_run_ends_where_an_uninterrupted_one_does(tmp_path):
    train(mixture_run(epochs=1), tmp_path / "a", quiet=True)
    train(mixture_run(epochs=2), tmp_path / "a", quiet=True)
    train(mixture_run(epochs=2), tmp_path / "b", quiet=True)
    a, b = (load_file(str(tmp_path / r / "model.safetensors")) for r in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_an_unknown_prior_is_refused():
    with pytest.raises(UserError, match="model.prior"):
        compose("vae", flags={"data": {"source": "digits"}}, overrides=["model.prior=vamp"])


def test_the_prior_can_be_chosen_per_sampling_call_and_from_the_command_line(tmp_path, capsys):
    from genlab.cli import main

    train(mixture_run(epochs=1), tmp_path / "mix", quiet=True)
    model, _ = load_model(tmp_path / "mix")
    normal = model.sample(5, generator=torch.Generator().manual_seed(3), prior="normal")
    expected = model.decode(torch.randn(5, 4, generator=torch.Generator().manual_seed(3)))
    assert torch.allclose(normal, expected)
    mixed = model.sample(5, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(mixed, normal)
    assert main(["sample", str(tmp_path / "mix"), "-n", "4", "--prior", "normal", "-o", str(tmp_path / "n.png")]) == 0
    assert (tmp_path / "n.png").is_file()
    assert main(["train", "vae", "--data", "digits", "--limit", "64", "--epochs", "1", "--set", "model.hidden=(16,)",
                 "--out", str(tmp_path / "plain"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "plain"), "--prior", "mixture"]) == 2
    err = capsys.readouterr().err
    assert "no fitted latent mixture: train it with model.prior=mixture" in err and err.count("\n") == 1

"""Sampling priors fitted to a VAE's codes (the Gaussian mixture, Dai & Wipf's second-stage VAE), their place in
training, and genlab fit-prior."""
import pytest
import torch
from safetensors.torch import load_file

from genlab.api import train
from genlab.data import Batches, Pipeline
from genlab.errors import UserError
from genlab.models.latent_prior import GaussianMixtureLatents, SecondStageVAE
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
    monkeypatch.setattr(GaussianMixtureLatents, "fit",
                        lambda self, z, sd=None, seed=0: (fits.append(len(z)), fit(self, z, sd, seed)))
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


def test_the_second_stage_vae_learns_where_two_clusters_of_codes_lie():
    z = two_clusters(n=3000)
    torch.manual_seed(0)
    stage = SecondStageVAE(dim=2, width=64, depth=2, epochs=20, lr=3e-3)
    stage.fit(z, torch.full_like(z, 0.05), seed=0)
    s = stage.sample(20000, torch.Generator().manual_seed(1))
    assert s.shape == (20000, 2)
    assert abs(float((s[:, 0] < -0.5).float().mean()) - 0.3) < 0.03  # the clusters' weights
    assert torch.allclose(s.mean(0), z.mean(0), atol=0.25)
    # the gap between the clusters (-2.5 < z_0 < 0.5) holds 0.5% of the codes and 31% of a Gaussian with their
    # mean and covariance; the second stage's draws stay out of most of it
    gap = lambda v: float(((v[:, 0] > -2.5) & (v[:, 0] < 0.5)).float().mean())  # noqa: E731
    gauss = torch.distributions.MultivariateNormal(z.mean(0), torch.cov(z.T)).sample((20000,))
    assert gap(z) < 0.01 and gap(gauss) > 0.25 and gap(s) < 0.12
    assert 0.05 < float(stage.log_gamma.exp()) < 1.0  # gamma learned, down from 1


def test_second_stage_fits_repeat_continue_and_refuse_what_they_cannot_do():
    z = two_clusters(n=640)
    sd = torch.full_like(z, 0.1)
    torch.manual_seed(0)
    a = SecondStageVAE(dim=2, width=16, depth=1, epochs=2, lr=1e-3)
    b = SecondStageVAE(dim=2, width=16, depth=1, epochs=2, lr=1e-3)
    b.load_state_dict(a.state_dict())
    with pytest.raises(UserError, match="second-stage VAE has not been fitted"):
        a.sample(4)
    first = a.fit(z, sd, seed=3)
    b.fit(z, sd, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not list(a.parameters())  # buffers only: no optimizer or weight average of the VAE's reaches them
    assert a.fit(z, sd, seed=4) < first  # the next fit continues from the last
    with pytest.raises(UserError, match="at least 64 codes"):
        SecondStageVAE(dim=2, width=8, depth=1).fit(z[:10], sd[:10])


def two_stage_run(epochs=2):
    return compose("vae", flags={"data": {"source": "digits", "limit": 256},
                                 "train": {"epochs": epochs, "batch_size": 32, "samples": 8}},
                   overrides=["model.hidden=(32,)", "model.latent_dim=4", "model.prior=two-stage",
                              "model.prior_width=16", "model.prior_depth=1", "model.prior_fit_images=128"])


def test_training_fits_the_second_stage_at_each_epoch_end_and_samples_through_it(tmp_path, monkeypatch):
    fits = []
    fit = SecondStageVAE.fit
    monkeypatch.setattr(SecondStageVAE, "fit", lambda self, mu, sd, seed=0: (fits.append((len(mu), float(sd.min()))),
                                                                            fit(self, mu, sd, seed))[1])
    train(two_stage_run(epochs=2), tmp_path / "run", quiet=True)
    assert [n for n, _ in fits] == [128, 128] and all(m > 0 for _, m in fits)  # posterior spreads, not only means
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert float(saved["second_stage.fitted"]) == 1.0 and "second_stage.decoder.head.weight" in saved
    model, _ = load_model(tmp_path / "run")
    assert not any(n.startswith("second_stage") for n, _ in model.named_parameters())
    expected = model.decode(model.second_stage.sample(6, torch.Generator().manual_seed(0)))
    assert torch.allclose(model.sample(6, generator=torch.Generator().manual_seed(0)), expected)
    # a resumed run ends where an uninterrupted one does, the second stage included
    train(two_stage_run(epochs=1), tmp_path / "a", quiet=True)
    train(two_stage_run(epochs=2), tmp_path / "a", quiet=True)
    a = load_file(str(tmp_path / "a" / "model.safetensors"))
    assert a.keys() == saved.keys() and all(torch.equal(a[k], saved[k]) for k in a)


def test_fit_prior_gives_a_finished_run_a_prior_without_touching_its_weights(tmp_path, capsys):
    from genlab.cli import main

    run = tmp_path / "plain"
    assert main(["train", "vae", "--data", "digits", "--limit", "256", "--epochs", "1", "--set", "model.hidden=(16,)",
                 "--set", "model.latent_dim=4", "--out", str(run), "--quiet"]) == 0
    before = load_file(str(run / "model.safetensors"))
    assert main(["fit-prior", str(run), "--prior", "two-stage", "--set", "model.prior_width=16",
                 "--set", "model.prior_depth=1", "--set", "model.prior_epochs=3"]) == 0
    assert "fitted the two-stage prior to the codes of 256 training images" in capsys.readouterr().out
    after = load_file(str(run / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)  # the VAE itself is unchanged
    assert float(after["second_stage.fitted"]) == 1.0
    model, cfg = load_model(run)
    assert (cfg.model_cfg.prior, cfg.model_cfg.prior_epochs) == ("two-stage", 3)
    assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png")]) == 0
    # the same prior again continues from its fitted state; another kind replaces it
    assert main(["fit-prior", str(run), "--prior", "two-stage"]) == 0
    again = load_file(str(run / "model.safetensors"))
    assert not torch.equal(again["second_stage.decoder.head.weight"], after["second_stage.decoder.head.weight"])
    assert main(["fit-prior", str(run), "--prior", "mixture", "--set", "model.prior_components=3"]) == 0
    assert "mixture.means" in load_file(str(run / "model.safetensors"))
    assert main(["train", "vae", "--data", "digits", "--limit", "256", "--epochs", "2", "--set", "model.hidden=(16,)",
                 "--set", "model.latent_dim=4", "--set", "model.prior=mixture", "--set", "model.prior_components=3",
                 "--set", "model.prior_epochs=3", "--set", "model.prior_width=16", "--set", "model.prior_depth=1",
                 "--out", str(run), "--quiet"]) == 0  # and it trains on from there, with the settings it holds
    capsys.readouterr()
    for argv, says in [(["--prior", "mixture", "--set", "model.latent_dim=3"], "prior's settings only"),
                       (["--prior", "mixture", "--set", "train.lr=1"], "model.* settings only"),
                       (["--prior", "two-stage", "--set", "model.prior_width=0"], "model.prior_width"),
                       (["--prior", "vamp"], "unknown value 'vamp' for --prior (valid: mixture, two-stage)")]:
        assert main(["fit-prior", str(run), *argv]) == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1, err
    assert main(["train", "ae", "--data", "digits", "--limit", "64", "--epochs", "1", "--set", "model.hidden=(16,)",
                 "--out", str(tmp_path / "ae"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["fit-prior", str(tmp_path / "ae"), "--prior", "mixture"]) == 2
    assert "fits the sampling prior of a VAE" in capsys.readouterr().err


def test_the_command_line_offers_the_priors_the_vae_knows():
    from genlab.cli import SAMPLING_PRIORS
    from genlab.models.vae import PRIORS

    assert SAMPLING_PRIORS == PRIORS

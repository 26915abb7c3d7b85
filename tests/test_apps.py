"""The applications of `genlab apply` (reduce, retrieve, anomaly, cluster): their metrics against hand-computed
cases, their Python API on tiny models and data, the refusal of models that lack a capability, and the command
on a tiny trained run."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from apps_common import INFO, images, run_cli, tiny, tiny_vae_run  # tests/ is on sys.path

from genlab.apps import registry as apps
from genlab.apps.anomaly import (AnomalyScorer, PCAAnomalyScorer, detection, drop_classes, held_out_class,
                                 held_out_class_benchmark, keep_classes, write_npz)
from genlab.apps.cluster import EmbeddingKMeans, LatentKMeans, cluster_scores
from genlab.apps.metrics import auprc, auroc, clustering_accuracy, gaussian_window, nmi, precision_at_k, psnr, ssim
from genlab.apps.reduce import LatentReducer, PCAReducer, PixelSpace, compare, manifold_codes, reconstruction_scores
from genlab.apps.retrieve import Retriever
from genlab.cli import main
from genlab.data import ImageSet, Pipeline, Splits, load
from genlab.errors import UserError
from genlab.models import registry


# ------------------------------------------------------------------------------------------- ranking metrics
def test_auroc_extremes_and_a_hand_worked_case():
    y = [0, 0, 1, 1]
    assert auroc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0  # perfect
    assert auroc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0  # reversed
    assert auroc(y, [0.5] * 4) == 0.5  # constant
    # positives 0.35, 0.8 against negatives 0.1, 0.4: wins 0.35>0.1, 0.8>0.1, 0.8>0.4; loss 0.35<0.4 -> 3/4
    assert auroc(y, [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # a tie counts 1/2: positives 0.5, 0.9 against negatives 0.2, 0.5 -> (1 + 0.5 + 2) / 4
    assert auroc([0, 1, 0, 1], [0.2, 0.5, 0.5, 0.9]) == pytest.approx(0.875)


def test_auprc_extremes_and_a_hand_worked_case():
    y = [0, 0, 1, 1]
    assert auprc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    # reversed: the positives come 3rd and 4th -> 1/2 * 1/3 + 1/2 * 2/4
    assert auprc(y, [0.9, 0.8, 0.2, 0.1]) == pytest.approx(5 / 12)
    assert auprc([0, 0, 0, 1], [0.3] * 4) == pytest.approx(0.25)  # constant: the positive fraction
    # ranked 0.8 (+), 0.4 (-), 0.35 (+), 0.1 (-): recall 1/2 at precision 1, recall 1 at precision 2/3
    assert auprc(y, [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_ranking_metrics_agree_with_scikit_learn_on_random_ties():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    y, s = rng.integers(0, 2, 200), rng.integers(0, 8, 200).astype(float)  # many ties
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert auprc(y, s) == pytest.approx(average_precision_score(y, s))


def test_ranking_metrics_refuse_one_class_and_bad_scores():
    with pytest.raises(UserError, match="both positive and negative"):
        auroc([1, 1], [0.1, 0.2])
    with pytest.raises(UserError, match="NaN"):
        auprc([0, 1], [0.1, float("nan")])


# ------------------------------------------------------------------------------------------- clustering, retrieval
def test_nmi_and_clustering_accuracy():
    y = [0, 0, 1, 1, 2, 2]
    assert nmi(y, y) == pytest.approx(1.0)
    assert nmi(y, [5, 5, 3, 3, 4, 4]) == pytest.approx(1.0)  # a renamed labelling
    assert nmi([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0, abs=1e-12)  # independent
    assert clustering_accuracy(y, [2, 2, 0, 0, 1, 1]) == 1.0  # a permuted labelling
    # clusters {0: 1 x class 0... }: best map 1->0 (2 right), 0->1 (2 right), 2 left over -> 4 / 6
    assert clustering_accuracy([0, 0, 0, 1, 1, 1], [1, 1, 0, 0, 0, 2]) == pytest.approx(4 / 6)


def test_precision_at_k_by_hand():
    nb, q = [[1, 1, 0], [2, 0, 0]], [1, 2]
    assert precision_at_k(nb, q) == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert precision_at_k(nb, q, k=1) == 1.0
    with pytest.raises(UserError):
        precision_at_k(nb, q, k=4)


# ------------------------------------------------------------------------------------------- PSNR, SSIM
def test_psnr_by_hand_and_for_identical_images():
    x, y = torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.1)
    assert psnr(x, y).tolist() == pytest.approx([20.0, 20.0])  # 10 log10(1 / 0.01)
    assert float(psnr(x, y, data_range=2.0)[0]) == pytest.approx(10 * math.log10(4 / 0.01))
    assert math.isinf(float(psnr(x, x)[0]))  # identical: +inf, documented
    assert float(psnr(x, x, max_db=100.0)[0]) == 100.0


def _ssim_naive(x: np.ndarray, y: np.ndarray, size=11, sigma=1.5, L=1.0) -> float:
    """Wang et al. 2004 over every valid window of one grey image, weighted by the Gaussian window."""
    g = gaussian_window(size, sigma).numpy()
    w = np.outer(g, g)
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    vals = []
    for i in range(x.shape[0] - size + 1):
        for j in range(x.shape[1] - size + 1):
            a, b = x[i : i + size, j : j + size], y[i : i + size, j : j + size]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * a * a).sum() - ma**2, (w * b * b).sum() - mb**2
            cov = (w * a * b).sum() - ma * mb
            vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_identical_noise_constants_and_a_naive_computation():
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert ssim(x, x).tolist() == pytest.approx([1.0] * 3)
    noisy = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert (ssim(x, noisy) < 0.9).all()
    a, b = torch.full((1, 1, 12, 12), 0.2), torch.full((1, 1, 12, 12), 0.6)  # constants: the luminance term alone
    c1 = 1e-4
    assert float(ssim(a, b)[0]) == pytest.approx((2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1))
    assert float(ssim(x[:1], noisy[:1])[0]) == pytest.approx(_ssim_naive(x[0, 0].numpy(), noisy[0, 0].numpy()))
    small = torch.rand(2, 1, 8, 8)  # smaller than the window: the largest odd window that fits (7)
    assert ssim(small, small).tolist() == pytest.approx([1.0, 1.0])


# ------------------------------------------------------------------------------------------- reduce
def test_pca_and_pixel_reducers():
    x = images(30)
    pca = PCAReducer(4).fit(x)
    z = pca.transform(x)
    r = pca.inverse_transform(z)
    assert z.shape == (30, 4) and r.shape == x.shape and 0 <= float(r.min()) and float(r.max()) <= 1
    assert PCAReducer(100).fit(x[:5]).n_components_ == 5  # capped at the number of images
    assert torch.equal(PixelSpace().fit(x).reconstruct(x), x) and PixelSpace().fit(x).n_components_ == 64
    full = reconstruction_scores(x, PCAReducer(30).fit(x).reconstruct(x))
    assert full["mse_per_pixel"] < 1e-8 and full["ssim"] == pytest.approx(1.0, abs=1e-5)
    s = reconstruction_scores(torch.full((1, 1, 8, 8), -1.0), torch.ones(1, 1, 8, 8), "-11")  # [0, 1] units
    assert s["mse_per_pixel"] == pytest.approx(1.0) and s["psnr_db"] == pytest.approx(0.0)


def test_latent_reducer_batches_and_keeps_shapes():
    model, x = tiny("ae"), images(20)
    one = LatentReducer(model, batch_size=64).fit(x)
    assert one.n_components_ == 3
    z = one.transform(x)
    assert z.shape == (20, 3)
    assert torch.allclose(LatentReducer(model, batch_size=7).transform(x), z, atol=1e-6)
    r = one.inverse_transform(z)
    assert r.shape == x.shape and 0 <= float(r.min()) and float(r.max()) <= 1
    res = compare(tiny("vae"), images(40, 1), x)
    assert set(res["results"]) == {"latent", "pca"} and res["code_size"] == 3
    assert set(res["results"]["pca"]) == {"mse_per_pixel", "psnr_db", "ssim"}


def test_conditional_models_get_the_labels():
    cvae = registry.build("cvae", registry.get("cvae").config_cls(hidden=(16,), latent_dim=2), INFO).eval()
    x, y = images(10), torch.arange(10)
    with pytest.raises(UserError, match="needs the class labels"):
        LatentReducer(cvae).fit(x)
    assert LatentReducer(cvae).fit(x, y).reconstruct(x, y).shape == x.shape
    assert AnomalyScorer(cvae, samples=1).score_samples(x, y).shape == (10,)


def test_manifold_grid_gaussian_quantiles_for_a_vae_and_the_code_range_otherwise():
    from scipy.stats import norm

    codes = torch.randn(50, 2)
    z, how = manifold_codes(tiny("vae", latent_dim=2), codes, steps=5)
    assert z.shape == (25, 2) and "quantiles" in how
    assert float(z[0, 0]) == pytest.approx(norm.ppf(0.05), abs=1e-5)  # left column
    assert float(z[0, 1]) == pytest.approx(norm.ppf(0.95), abs=1e-5)  # top row: highest z2
    z, how = manifold_codes(tiny("ae", latent_dim=2), codes, steps=4)
    assert "percentiles" in how and float(z[:, 0].min()) >= float(codes[:, 0].min())
    with pytest.raises(UserError, match="2-D"):
        manifold_codes(tiny("ae"), torch.randn(5, 3))


# ------------------------------------------------------------------------------------------- retrieve
def test_retriever_finds_database_images_and_leaves_queries_out():
    x, y = images(12), torch.arange(12) % 3
    r = Retriever(PixelSpace()).fit(x, y)
    d, idx = r.kneighbors(x[:4], k=3)
    assert d.shape == idx.shape == (4, 3)
    assert idx[:, 0].tolist() == [0, 1, 2, 3] and torch.all(d[:, 0] < 1e-3) and torch.all(d[:, :-1] <= d[:, 1:])
    assert r.precision_at_k(x[:4], y[:4], k=1) == 1.0
    _, idx = r.kneighbors(x[:4], k=2, exclude=torch.arange(4))
    assert not (idx == torch.arange(4).view(-1, 1)).any()
    _, idx = Retriever(PixelSpace(), "cosine").fit(x).kneighbors(x[:2] * 3, k=1)  # scale-free
    assert idx.flatten().tolist() == [0, 1]
    lat = Retriever(LatentReducer(tiny("ae"))).fit(x, y)
    assert lat.codes_.shape == (12, 3) and 0 <= lat.precision_at_k(x, y, 5) <= 1


# ------------------------------------------------------------------------------------------- anomaly
def test_scores_are_higher_for_normal_images():
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(3, 64, generator=g)
    normal = (torch.randn(80, 3, generator=g) @ basis).view(-1, 1, 8, 8) * 0.05 + 0.5  # a 3-D subspace
    odd = torch.rand(20, 1, 8, 8, generator=g)
    pca = PCAAnomalyScorer(3).fit(normal[:60])
    assert pca.score_samples(normal[60:]).mean() > pca.score_samples(odd).mean()
    res = detection(pca, normal[60:], odd)
    assert res["auroc"] > 0.99 and res["auprc"] > 0.99 and res["auprc_chance"] == pytest.approx(0.5)


def test_model_scorers_shapes_and_choices():
    x = images(10)
    vae = tiny("vae")
    assert AnomalyScorer(vae).score == "likelihood"  # auto: the ELBO when there is no log_prob
    for score in ("likelihood", "reconstruction"):
        s = AnomalyScorer(vae, score, samples=2, batch_size=4).score_samples(x)
        assert s.shape == (10,) and torch.isfinite(s).all()
    assert (AnomalyScorer(vae, "reconstruction").score_samples(x) <= 0).all()
    assert AnomalyScorer(tiny("ae")).score == "reconstruction"
    glow = tiny("glow")
    assert AnomalyScorer(glow).score == "likelihood"
    with pytest.raises(UserError, match="an invertible model reconstructs every image up to float round-off"):
        AnomalyScorer(glow, "reconstruction")


def test_models_without_the_capability_are_refused_in_one_sentence():
    gan, ae = tiny("gan"), tiny("ae")
    for call, cap, name in [(lambda: LatentReducer(gan).fit(images(2)), "encode", "gan"),
                            (lambda: AnomalyScorer(gan, "reconstruction"), "reconstruct", "gan"),
                            (lambda: AnomalyScorer(gan), "elbo", "gan"),
                            (lambda: AnomalyScorer(ae, "likelihood"), "log_prob", "ae"),
                            (lambda: LatentKMeans(gan, 2).fit(images(4)), "encode", "gan"),
                            (lambda: apps.check(apps.get("retrieve"), gan), "encode", "gan")]:
        with pytest.raises(UserError, match=f"`{cap}`") as e:
            call()
        assert "\n" not in str(e.value) and f"'{name}'" in str(e.value)
    with pytest.raises(UserError, match="unknown application 'reduc' \\(did you mean: reduce"):
        apps.get("reduc")


def test_class_filters_held_out_splits_and_npz_round_trip(tmp_path):
    imgs = ImageSet(torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1).expand(6, 1, 2, 2).contiguous(),
                    torch.tensor([0, 1, 2, 0, 1, 2]), ["a", "b", "c"])
    assert drop_classes(imgs, [1]).labels.tolist() == [0, 2, 0, 2]
    assert keep_classes(imgs, [1, 2]).labels.tolist() == [1, 2, 1, 2]
    assert drop_classes(imgs, [1]).classes == ["a", "b", "c"]
    sp = held_out_class(Splits(imgs, imgs, "toy"), 2)
    assert 2 not in sp.train.labels.tolist() and len(sp.test) == 6
    back = load(f"npz:{write_npz(sp, tmp_path / 'toy.npz')}")
    assert torch.equal(back.train.images, sp.train.images) and back.test.labels.tolist() == imgs.labels.tolist()
    with pytest.raises(UserError, match="no labels"):
        drop_classes(ImageSet(imgs.images), [0])


def test_held_out_class_benchmark_runs_one_model_per_class():
    from genlab.data import DataConfig

    splits = load("digits")
    seen = []

    def fit(train, c):
        seen.append((c, int((train.labels == c).sum())))
        return tiny("vae")

    res = held_out_class_benchmark(fit, splits, Pipeline(DataConfig()), classes=[0, 1], samples=1, n=120)
    assert seen == [(0, 0), (1, 0)]
    assert set(res["per_class"]) == {0, 1} and set(res["mean"]) == {"model", "pca"}
    assert all(0 <= res["per_class"][c][m]["auroc"] <= 1 for c in (0, 1) for m in ("model", "pca"))


# ------------------------------------------------------------------------------------------- cluster
def test_kmeans_recovers_separated_blobs_and_latent_kmeans_shapes():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(30) % 3
    centres = torch.tensor([0.1, 0.5, 0.9])
    x = (centres[y].view(-1, 1, 1, 1) + 0.02 * torch.randn(30, 1, 8, 8, generator=g)).clamp(0, 1)
    km = EmbeddingKMeans(PixelSpace(), 3).fit(x)
    assert cluster_scores(y.numpy(), km.labels_.numpy()) == pytest.approx({"nmi": 1.0, "accuracy": 1.0})
    assert torch.equal(km.predict(x), km.labels_) and km.transform(x).shape == (30, 3)
    lk = LatentKMeans(tiny("ae"), 3, n_init=2).fit(x)
    assert lk.labels_.shape == (30,) and set(lk.labels_.tolist()) <= {0, 1, 2}
    with pytest.raises(UserError, match="at least as many images"):
        EmbeddingKMeans(PixelSpace(), 5).fit(x[:3])


# ------------------------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    return tiny_vae_run(tmp_path_factory.mktemp("vae2d"), latent_dim=2)


@pytest.mark.parametrize("app, args, figures, rows", [
    ("reduce", ["--fit-n", "200"], ["reconstructions.png", "scatter.png", "manifold.png"], {"latent", "pca"}),
    ("retrieve", ["--k", "5", "--db-n", "300"], ["neighbours_latent.png", "neighbours_pixels.png"],
     {"latent", "pca", "pixels"}),
    ("anomaly", ["--anomaly-class", "3", "--samples", "1"], ["extremes.png", "scores.png"],
     {"model:reconstruction", "model:likelihood", "pca:reconstruction"}),
    ("cluster", ["--n-init", "2"], ["clusters.png"], {"latent", "pca", "pixels"}),
])
def test_apply_writes_numbers_protocol_and_figures(vae_run, capsys, app, args, figures, rows):
    code, out, err = run_cli(capsys, "apply", app, vae_run, "--n", "150", *args)
    assert code == 0, err
    folder = vae_run / "apply" / app
    rec = json.loads((folder / "results.json").read_text())
    assert rec["app"] == app and set(rec["results"]) == rows
    assert rec["protocol"]["code_size"] == 2 and "baseline" in rec["protocol"]
    for f in figures:
        assert (folder / f).is_file() and (folder / f).stat().st_size > 100
    for row in rows:
        assert row in out
    assert "wrote" in out


def test_apply_anomalies_from_another_dataset_and_out_folder(vae_run, tmp_path, capsys):
    d = load("digits")
    npz = write_npz(Splits(keep_classes(d.test, [7])), tmp_path / "sevens.npz")
    code, out, err = run_cli(capsys, "apply", "anomaly", vae_run, "--anomalies", f"npz:{npz}", "--n", "100",
                             "--score", "reconstruction", "--out", tmp_path / "res")
    assert code == 0, err
    rec = json.loads((tmp_path / "res" / "results.json").read_text())
    assert set(rec["results"]) == {"model:reconstruction", "pca:reconstruction"}
    assert 0 <= rec["results"]["model:reconstruction"]["auroc"] <= 1


def test_apply_anomaly_by_normal_class_writes_per_image_scores(vae_run, capsys):
    import csv

    code, out, err = run_cli(capsys, "apply", "anomaly", vae_run, "--n", "150", "--normal-class", "0,1",
                             "--samples", "1")
    assert code == 0, err
    folder = vae_run / "apply" / "anomaly"
    rec = json.loads((folder / "results.json").read_text())
    assert rec["protocol"]["normal"] == "test images of class 0,1"
    assert rec["protocol"]["anomalies"] == "test images of class 2,3,4,5,6,7,8,9"
    rows = list(csv.DictReader((folder / "scores.csv").open()))
    assert len(rows) == rec["protocol"]["n_normal"] + rec["protocol"]["n_anomalous"]
    assert {r["class"] for r in rows if r["anomaly"] == "0"} == {"0", "1"}
    assert set(rows[0]) == {"index", "class", "anomaly", *rec["results"]}
    # the figure shows the score with the best AUROC among the model's
    best = max((n for n in rec["results"] if n.startswith("model:")), key=lambda n: rec["results"][n]["auroc"])
    assert f"by {best}" in rec["protocol"]["figures"]


def test_apply_anomaly_warns_when_labelled_test_images_all_count_as_normal(vae_run, tmp_path, capsys):
    npz = write_npz(Splits(keep_classes(load("digits").test, [7])), tmp_path / "sevens.npz")
    code, out, _ = run_cli(capsys, "apply", "anomaly", vae_run, "--anomalies", f"npz:{npz}", "--n", "100",
                           "--score", "reconstruction", "--out", tmp_path / "res")
    assert code == 0 and "labelled defects included; --normal-class C counts only class C as normal" in out


def test_the_pca_baseline_is_never_the_identity():
    from genlab.apps.anomaly import pca_components

    assert pca_components(2, 64, 1000) == 2  # a VAE's 2-d code
    assert pca_components(64, 64, 1000) == 32  # a flow's "code" is the image: the default rank instead
    assert pca_components(None, 16, 1000) == 15  # never full rank
    assert pca_components(8, 784, 5) == 4  # nor more components than fitted images allow


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gan")
    assert main(["train", "gan", "--data", "digits", "--limit", "64", "--epochs", "1", "--batch-size", "32",
                 "--set", "train.eval_images=64", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.mark.parametrize("args, fragment", [
    (["apply", "reduc", "{vae}"], "unknown application 'reduc' (did you mean: reduce"),
    (["apply", "reduce", "{gan}"], "needs a model that can encode images into codes (`encode`), and 'gan' cannot"),
    (["apply", "anomaly", "{gan}", "--anomaly-class", "3"], "or the elbo (`elbo`), and 'gan' can do none"),
    (["apply", "anomaly", "{vae}"], "needs exactly one of --anomaly-class"),
    (["apply", "anomaly", "{vae}", "--normal-class", "0", "--anomaly-class", "3"], "needs exactly one of"),
    (["apply", "anomaly", "{vae}", "--normal-class", "0,1,2,3,4,5,6,7,8,9"], "leaves no anomalous test images"),
    (["apply", "anomaly", "{vae}", "--anomaly-class", "x"], "class numbers separated by commas"),
    (["apply", "reduce", "{vae}", "--k", "3"], "unknown option '--k' for genlab apply reduce"),
    (["apply", "cluster", "/no/such/run"], "does not exist"),
])
def test_apply_mistakes_are_one_sentence_and_exit_2(vae_run, gan_run, capsys, args, fragment):
    code, _, err = run_cli(capsys, *[a.format(vae=vae_run, gan=gan_run) for a in args])
    assert code == 2
    assert fragment.lower() in err.lower()
    assert err.count("\n") == 1 and err.startswith("genlab: error: ")

"""The web explorer (`genlab serve`) through FastAPI's test client: the runs table, a run's page with its curves,
grids and sampling, the compare view, and its limits (unknown runs, paths outside a run, oversized requests, one
sampling job per model at a time)."""
from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from genlab.cli import main  # noqa: E402
from genlab.web import MAX_SAMPLES, create_app  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    assert main(["train", "dcgan", "--data", "mnist", "--limit", "128", "--epochs", "2", "--set", "model.width=8",
                 "--set", "model.latent_dim=8", "--out", str(root / "gan"), "--quiet"]) == 0
    assert main(["train", "vae", "--data", "digits", "--limit", "128", "--epochs", "1", "--set", "model.hidden=(16,)",
                 "--out", str(root / "group" / "vae"), "--quiet"]) == 0
    assert main(["eval", str(root / "gan"), "--metrics", "fid,modes", "--n", "64", "--quiet"]) == 0
    (root / "secret.png").write_bytes(PNG)
    (root / "gan" / "samples" / "link.png").symlink_to(root / "secret.png")  # a way out of the run folder
    return TestClient(create_app(root))


def test_runs_table_lists_every_run_with_its_numbers(client):
    page = client.get("/")
    assert page.status_code == 200
    assert "href='/run/gan'" in page.text and "href='/run/group/vae'" in page.text
    assert "dcgan" in page.text and "fid" in page.text and "<script" in page.text and "http" not in page.text.lower()


def test_run_page_curves_grids_and_sampling(client):
    page = client.get("/run/gan")
    assert page.status_code == 200
    for piece in ("curves.png", "epoch_0002.png", "type='range'", "sample.png?n=16", "interpolate.png", "fid"):
        assert piece in page.text, piece
    for url in ("/run/gan/curves.png", "/run/gan/file/samples/epoch_0001.png", "/run/gan/sample.png?n=4&seed=3",
                "/run/gan/interpolate.png?steps=5"):
        r = client.get(url)
        assert r.status_code == 200 and r.content[:8] == PNG, url
    a, b = client.get("/run/gan/sample.png?n=4&seed=3"), client.get("/run/gan/sample.png?n=4&seed=4")
    assert a.content == client.get("/run/gan/sample.png?n=4&seed=3").content and a.content != b.content
    assert client.get("/run/group/vae/sample.png?n=4").content[:8] == PNG  # a VAE samples too


def test_compare_view(client):
    page = client.get("/compare?runs=gan,group/vae")
    assert page.status_code == 200 and "gan" in page.text and "group/vae" in page.text and "fid" in page.text


@pytest.mark.parametrize("url, code", [
    ("/run/nope", 404),
    ("/run/gan/file/..%2F..%2Fsecret.png", 404),
    ("/run/gan/file/samples/link.png", 404),  # resolves outside the run folder
    ("/run/gan/file/config.json", 404),  # only PNG files
    (f"/run/gan/sample.png?n={MAX_SAMPLES + 1}", 422),
    ("/run/gan/sample.png?temperature=0.5", 400),  # a GAN has no temperature
    ("/run/gan/interpolate.png?steps=1000", 422),
    ("/run/group/vae/interpolate.png", 400),  # no prior to walk in
])
def test_limits(client, url, code):
    assert client.get(url).status_code == code


def test_one_sampling_job_per_model(client):
    import threading

    lock = client.app.state.locks.setdefault("gan", threading.Lock())
    lock.acquire()  # as if another request were sampling from this model
    try:
        r = client.get("/run/gan/sample.png?n=2")
        assert r.status_code == 429 and "busy" in r.json()["detail"]
    finally:
        lock.release()
    assert client.get("/run/gan/sample.png?n=2").status_code == 200

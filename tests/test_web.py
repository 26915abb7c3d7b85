"""The web explorer (`genlab serve`) through FastAPI's test client: the runs table, a run's page with its curves,
grids and sampling, the compare view, and its limits (unknown runs, paths outside a run, oversized requests, one
sampling job per model at a time)."""
from __future__ import annotations

from pathlib import Path

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
    assert main(["train", "pixelcnn", "--data", "digits", "--limit", "128", "--epochs", "1", "--set", "model.width=8",
                 "--set", "model.layers=1", "--out", str(root / "pcnn"), "--quiet"]) == 0
    assert main(["train", "stylegan", "--data", "digits", "--limit", "64", "--epochs", "1", "--batch-size", "16",
                 "--set", "model.latent_dim=8", "--set", "model.fmap_base=16", "--set", "model.fmap_max=8",
                 "--set", "model.mapping_layers=2", "--set", "train.samples=0", "--out", str(root / "sg"),
                 "--quiet"]) == 0
    assert main(["eval", str(root / "gan"), "--metrics", "fid,modes", "--n", "64", "--quiet"]) == 0
    (root / "secret.png").write_bytes(PNG)
    (root / "gan" / "samples" / "link.png").symlink_to(root / "secret.png")  # a way out of the run folder
    return TestClient(create_app(root))


def test_runs_table_lists_every_run_with_its_numbers(client):
    page = client.get("/")
    assert page.status_code == 200
    assert "href='/run/gan'" in page.text and "href='/run/group/vae'" in page.text and "href='/run/pcnn'" in page.text
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


def test_explore_an_autoencoding_and_an_autoregressive_model(client):
    page = client.get("/run/group/vae").text
    assert "Attributes" in page and "interpolate.png?a=0&b=1" in page and "Complete" not in page
    for url in ("/run/group/vae/interpolate.png?a=0&b=5&steps=4", "/run/group/vae/attribute.png?image=3&alpha=2",
                "/run/group/vae/attribute.png?attribute=slant&alpha=-1", "/run/pcnn/complete.png?n=3&rows=4"):
        r = client.get(url)
        assert r.status_code == 200 and r.content[:8] == PNG, (url, r.text[:200])
    assert "Complete" in client.get("/run/pcnn").text
    a, b = (client.get(f"/run/group/vae/attribute.png?image=3&alpha={v}").content for v in (0.0, 3.0))
    assert a != b  # the slider moves the image
    for url, code in (("/run/group/vae/attribute.png?attribute=colour", 400), ("/run/gan/attribute.png", 400),
                      ("/run/pcnn/complete.png?rows=8", 400), ("/run/gan/complete.png", 400),
                      ("/run/group/vae/interpolate.png?a=0&b=5000", 422)):
        assert client.get(url).status_code == code, url


def test_sampling_knobs_appear_for_the_models_that_have_them(client):
    assert "id='truncation'" in client.get("/run/sg").text and "id='truncation'" not in client.get("/run/gan").text
    a = client.get("/run/sg/sample.png?n=4&truncation=0")
    assert a.status_code == 200 and a.content != client.get("/run/sg/sample.png?n=4&truncation=1").content


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
    client.app.state.wait_s = 0.2
    try:
        r = client.get("/run/gan/sample.png?n=2")
        assert r.status_code == 429 and "busy" in r.json()["detail"]
    finally:
        lock.release()
        client.app.state.wait_s = 30.0
    assert client.get("/run/gan/sample.png?n=2").status_code == 200


# ---------------------------------------------------------------- a real browser
CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (apt-get install chromium)")
def test_pages_in_chromium(client, tmp_path):
    """genlab serve's pages in Chromium, driven by Playwright: every image on each page loads, the table sorts and
    filters, the slider and the draw button change their images, and each page's screenshot has content."""
    import socket
    import threading
    import time

    import numpy as np
    import uvicorn
    from PIL import Image

    playwright = pytest.importorskip("playwright.sync_api")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(client.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"

    def has_content(page, name):
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
        assert pixels.std() > 10, f"{name}: the screenshot is blank"

    def images_loaded(page):
        page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=60_000)
        sizes = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
        assert sizes and all(sizes), sizes

    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(base + "/")
            assert page.locator("#runs tbody tr").count() == 4
            page.fill("#filter", "vae")
            assert page.locator("#runs tbody tr:visible").count() == 1
            page.fill("#filter", "")
            page.click("#runs th:nth-child(4)")  # sort by step
            has_content(page, "index")
            page.goto(base + "/run/gan")
            images_loaded(page)
            first = page.get_attribute("#grid", "src")
            page.fill("#epoch", "0")
            page.dispatch_event("#epoch", "input")
            assert page.get_attribute("#grid", "src") != first and page.inner_text("#epoch_name") == "epoch_0001"
            page.fill("#seed", "7")
            page.click("#draw")
            assert "seed=7" in page.get_attribute("#samples", "src")
            page.fill("#sb", "9")
            page.click("#seeds")
            assert "seed_b=9" in page.get_attribute("#interp", "src")
            images_loaded(page)
            has_content(page, "run")
            page.goto(base + "/run/group/vae")  # an autoencoder: interpolation between test images, attributes
            images_loaded(page)
            before = page.get_attribute("#attr_img", "src")
            page.fill("#alpha", "-2")
            page.dispatch_event("#alpha", "change")
            assert page.get_attribute("#attr_img", "src") != before and "alpha=-2" in page.get_attribute("#attr_img",
                                                                                                         "src")
            images_loaded(page)
            has_content(page, "vae")
            page.goto(base + "/")
            page.check("input.pick[value='gan']")
            page.check("input.pick[value='group/vae']")
            page.click("#compare")
            page.wait_for_url("**/compare?runs=*")
            assert "fid" in page.inner_text("body") and "group/vae" in page.inner_text("body")
            has_content(page, "compare")
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)

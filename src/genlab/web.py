"""`genlab serve [RUNS_DIR]`: a local web explorer of run folders (FastAPI, served by uvicorn).

Pages: `/` the runs table (model, data, steps, time, the key numbers of eval.json; sortable and filterable);
`/run/NAME` one run (settings, the training curves redrawn while it trains, the per-epoch grids behind a slider,
warnings, the evaluation with its protocols, and on demand: sampling (n, seed), interpolation between two prior
draws or two chosen test images, attribute sliders (thickness, slant, ink vectors on the test images' codes) for
models that encode and decode, completion for autoregressive models); `/compare?runs=A,B` the eval numbers of
several runs side by side. Images are PNGs drawn by the server (matplotlib, Pillow): the pages
load nothing from the network.

Safe by default: it binds to 127.0.0.1; a run is addressed by its name among the folders found under RUNS_DIR
(never by a path), files are served only from inside that run's folder and only as PNG; weights load through the
safetensors path of `genlab.run.load_model`; n is at most MAX_SAMPLES; each model samples one request at a time
(the others wait up to WAIT_S seconds, then get 429).
"""
from __future__ import annotations

import html
import io
import json
import threading
from pathlib import Path

import torch

from .errors import UserError
from .metrics.registry import ARCHIVE
from .report import curves_png, eval_table, read_events

MAX_SAMPLES = 64
MAX_STEPS = 16
MAX_TEST = 1000  # test images the explore pages draw on (attribute vectors are fitted on them)
MAX_COMPLETE = 16
WAIT_S = 30.0  # how long a request waits for its model's sampling lock


def find_runs(root: Path, depth: int = 2) -> dict[str, Path]:
    """Run folders (holding config.json) under root, up to `depth` levels down, by their path relative to root."""
    found = {}
    frontier = [root]
    for _ in range(depth + 1):
        nxt = []
        for d in frontier:
            if (d / "config.json").is_file():
                found[str(d.relative_to(root)) if d != root else d.name] = d
                continue
            nxt += sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
        frontier = nxt
    return found


def _esc(v) -> str:
    return html.escape(str(v))


def _page(title: str, body: str, script: str = "") -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(title)}</title><style>{STYLE}</style>"
            f"</head><body><nav><a href='/'>runs</a></nav><h1>{_esc(title)}</h1>{body}<script>{script}</script>"
            f"</body></html>")


STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:72em;color:#222}nav{font-size:.9em}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2em .6em;font-size:.9em;text-align:left}
th{background:#f4f4f4;cursor:pointer}img{max-width:100%;image-rendering:pixelated}.warn{color:#a40}
.proto{font-size:.8em;color:#555}fieldset{margin:1em 0}"""

SORT_JS = """
const tbl=document.getElementById('runs');
document.getElementById('compare').onclick=()=>{const names=[...document.querySelectorAll('.pick:checked')]
  .map(e=>encodeURIComponent(e.value)); if(names.length) location.href='/compare?runs='+names.join(',');};
document.getElementById('filter').oninput=e=>{const q=e.target.value.toLowerCase();
  for(const r of tbl.tBodies[0].rows) r.style.display=r.textContent.toLowerCase().includes(q)?'':'none';};
tbl.tHead.onclick=e=>{const i=e.target.cellIndex, rows=[...tbl.tBodies[0].rows];
  const key=r=>{const t=r.cells[i].textContent, n=parseFloat(t); return isNaN(n)?t:n;};
  const dir=tbl.dataset.dir==='1'?-1:1; tbl.dataset.dir=dir===1?'1':'0';
  rows.sort((a,b)=>key(a)>key(b)?dir:key(a)<key(b)?-dir:0); rows.forEach(r=>tbl.tBodies[0].appendChild(r));};
"""


def _summary(run: Path) -> dict:
    cfg = json.loads((run / "config.json").read_text())
    state = json.loads((run / "trainer_state.json").read_text()) if (run / "trainer_state.json").exists() else {}
    numbers = {}
    if (run / "eval.json").exists():
        for key, val in json.loads((run / "eval.json").read_text()).items():
            if isinstance(val, dict) and key != ARCHIVE:  # the archive repeats the latest results
                numbers.update({f"{key}.{k}" if k != key else key: v for k, v in val.items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return {"model": cfg.get("model", {}).get("name", "?"), "data": cfg.get("data", {}).get("source", "?"),
            "step": state.get("step", 0), "time_s": round(float(state.get("time_s", 0.0)), 1), "numbers": numbers}


def create_app(root: str | Path):
    """The FastAPI application over the run folders under `root`."""
    from fastapi import FastAPI, HTTPException, Query
    from fastapi.responses import HTMLResponse, Response

    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise UserError(f"'{root}' is not a folder of runs")
    app = FastAPI(title="genlab", docs_url=None, redoc_url=None)
    models: dict[str, tuple] = {}
    locks: dict[str, threading.Lock] = {}
    images: dict[tuple, tuple] = {}  # (run, n) -> the first n test images and labels
    vectors: dict[tuple, object] = {}  # (run, attribute) -> its fitted AttributeVector
    app.state.locks = locks  # one sampling job per model: a request waits for the lock, then gives up with 429
    app.state.wait_s = WAIT_S

    def run_dir(name: str) -> Path:
        runs = find_runs(root)
        if name not in runs:
            raise HTTPException(404, f"no run named '{name}' under {root}")
        return runs[name]

    def model_of(name: str):
        from .run import load_model

        path = run_dir(name)
        stamp = (path / "model.safetensors").stat().st_mtime if (path / "model.safetensors").exists() else None
        if name not in models or models[name][0] != stamp:  # reload after the run saved new weights
            try:
                models[name] = (stamp, *load_model(path))
            except UserError as e:
                raise HTTPException(400, str(e)) from None
        return models[name][1], models[name][2]

    def png(images01: torch.Tensor, nrow: int | None = None) -> Response:
        from PIL import Image

        from .viz import grid, upscale_for_display

        img = Image.fromarray(grid(images01.float().cpu(), nrow))
        k = upscale_for_display(images01.shape[-2])
        img = img.resize((img.width * k, img.height * k), Image.NEAREST) if k > 1 else img
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return Response(buf.getvalue(), media_type="image/png")

    def one_at_a_time(name: str) -> threading.Lock:
        lock = locks.setdefault(name, threading.Lock())
        if not lock.acquire(timeout=app.state.wait_s):  # a page's images queue; a stuck job does not pile up
            raise HTTPException(429, f"'{name}' is busy with another request; try again when it finishes")
        return lock

    @app.get("/", response_class=HTMLResponse)
    def index():
        runs = find_runs(root)
        rows, keys = [], []
        summaries = {name: _summary(path) for name, path in runs.items()}
        for s in summaries.values():
            keys += [k for k in s["numbers"] if k not in keys]
        keys = keys[:8]
        for name, s in summaries.items():
            cells = "".join(f"<td>{s['numbers'][k]:.4g}</td>" if k in s["numbers"] else "<td></td>" for k in keys)
            rows.append(f"<tr><td><input type='checkbox' class='pick' value='{_esc(name)}'> "
                        f"<a href='/run/{_esc(name)}'>{_esc(name)}</a></td><td>{_esc(s['model'])}</td>"
                        f"<td>{_esc(s['data'])}</td><td>{s['step']}</td><td>{s['time_s']}</td>{cells}</tr>")
        head = "".join(f"<th>{_esc(h)}</th>" for h in ["run", "model", "data", "step", "time_s", *keys])
        body = (f"<p>{len(runs)} runs under {_esc(root)}</p><input id='filter' placeholder='filter'> "
                f"<button id='compare'>compare the ticked runs</button>"
                f"<table id='runs'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
        return _page("genlab runs", body, SORT_JS)

    @app.get("/run/{name:path}/curves.png")
    def curves(name: str):
        data = curves_png(read_events(run_dir(name)))
        if data is None:
            raise HTTPException(404, "no training curves logged yet")
        return Response(data, media_type="image/png")

    @app.get("/run/{name:path}/file/{rel:path}")
    def file(name: str, rel: str):
        base = run_dir(name).resolve()
        target = (base / rel).resolve()
        if not target.is_relative_to(base) or target.suffix.lower() != ".png" or not target.is_file():
            raise HTTPException(404, "only PNG files inside the run folder are served")
        return Response(target.read_bytes(), media_type="image/png")

    @app.get("/run/{name:path}/sample.png")
    def sample(name: str, n: int = Query(16, ge=1, le=MAX_SAMPLES), seed: int = Query(0, ge=0, lt=2**63),
               temperature: float | None = Query(None, ge=0), truncation: float | None = Query(None, ge=0, le=1)):
        model, cfg = model_of(name)
        if not hasattr(model, "sample"):
            raise HTTPException(400, f"'{cfg.model}' cannot sample")
        import inspect

        kwargs = {k: v for k, v in (("temperature", temperature), ("truncation", truncation)) if v is not None}
        missing = [k for k in kwargs if k not in inspect.signature(model.sample).parameters]
        if missing:
            raise HTTPException(400, f"'{cfg.model}' has no sampling option {missing[0]}")
        lock = one_at_a_time(name)
        try:
            with torch.no_grad():
                x = model.sample(n, generator=torch.Generator(next(model.parameters()).device).manual_seed(seed),
                                 **kwargs)
        finally:
            lock.release()
        from .data import to_unit

        return png(to_unit(x, cfg.info))

    def test_images(name: str, cfg, n: int):
        """The first n test images of the run (cached per run), on the model's device."""
        from .run import first_images

        key = (name, n)
        if key not in images:
            x, y = first_images(cfg, "test", n, next(model_of(name)[0].parameters()).device)
            images[key] = (x, y)
        return images[key]

    @app.get("/run/{name:path}/interpolate.png")
    def interpolate(name: str, seed_a: int = Query(0, ge=0, lt=2**63), seed_b: int = Query(1, ge=0, lt=2**63),
                    a: int | None = Query(None, ge=0, lt=MAX_TEST), b: int | None = Query(None, ge=0, lt=MAX_TEST),
                    steps: int = Query(8, ge=2, le=MAX_STEPS)):
        """Between two prior draws (seeds) of a generator, or between test images a and b of a model that encodes."""
        from .data import to_unit

        model, cfg = model_of(name)
        codes = a is not None and b is not None
        if codes and not (hasattr(model, "encode") and hasattr(model, "decode")):
            raise HTTPException(400, f"'{cfg.model}' cannot encode images to interpolate between them")
        if not codes and not (hasattr(model, "prior") and hasattr(model, "decode")):
            raise HTTPException(400, f"'{cfg.model}' has no prior to interpolate in; give test images a and b")
        x_test = test_images(name, cfg, MAX_TEST)[0] if codes else None
        lock = one_at_a_time(name)
        try:
            with torch.no_grad():
                dev = next(model.parameters()).device
                t = torch.linspace(0, 1, steps, device=dev)[:, None]
                if codes:
                    from .apps.interpolate import interpolate as between

                    x = between(model, x_test[a : a + 1], x_test[b : b + 1], steps)[0]
                else:
                    za = model.prior(1, torch.Generator(dev).manual_seed(seed_a))
                    zb = model.prior(1, torch.Generator(dev).manual_seed(seed_b))
                    x = model.decode((1 - t) * za + t * zb)
        finally:
            lock.release()
        return png(to_unit(x, cfg.info), nrow=steps)

    @app.get("/run/{name:path}/attribute.png")
    def attribute(name: str, image: int = Query(0, ge=0, lt=MAX_TEST), attribute: str = Query("thickness"),
                  alpha: float = Query(1.0, ge=-4, le=4)):
        """decode(encode(x) + alpha v) for test image `image`, v the attribute's vector fitted on the test images."""
        from .apps.attributes import PROPERTIES, AttributeVector, measure, split_by
        from .apps.reduce import LatentReducer
        from .data import to_unit

        model, cfg = model_of(name)
        if not (hasattr(model, "encode") and hasattr(model, "decode")):
            raise HTTPException(400, f"'{cfg.model}' cannot encode and decode, which attribute vectors need")
        if attribute not in PROPERTIES:
            raise HTTPException(400, f"attribute must be one of {', '.join(PROPERTIES)}")
        x, y = test_images(name, cfg, MAX_TEST)
        y = y if getattr(model, "conditional", False) else None  # a conditional model codes with the labels
        lock = one_at_a_time(name)
        try:
            with torch.no_grad():
                key = (name, attribute)
                if key not in vectors:
                    has, has_not = split_by(measure(attribute)(to_unit(x, cfg.info).cpu()))
                    vectors[key] = AttributeVector(LatentReducer(model)).fit(x, has.to(x.device), has_not.to(x.device),
                                                                             y)
                yi = None if y is None else y[image : image + 1]
                out = vectors[key].sweep(x[image : image + 1], [0.0, alpha], yi)[0]  # reconstruction, then shifted
        finally:
            lock.release()
        return png(torch.cat([to_unit(x[image : image + 1], cfg.info), to_unit(out, cfg.info)]), nrow=3)

    @app.get("/run/{name:path}/complete.png")
    def complete(name: str, n: int = Query(8, ge=1, le=MAX_COMPLETE), rows: int = Query(14, ge=1),
                 seed: int = Query(0, ge=0, lt=2**63)):
        """Autoregressive models: the top `rows` rows of n test images kept, the rest drawn; originals above."""
        from .data import to_unit

        model, cfg = model_of(name)
        if not hasattr(model, "complete"):
            raise HTTPException(400, f"'{cfg.model}' cannot complete images (autoregressive models do)")
        if rows >= cfg.info.height:
            raise HTTPException(400, f"rows must be below the image height {cfg.info.height}")
        x, _ = test_images(name, cfg, MAX_COMPLETE)
        lock = one_at_a_time(name)
        try:
            with torch.no_grad():
                done = model.complete(x[:n], rows, torch.Generator(x.device).manual_seed(seed))
        finally:
            lock.release()
        return png(torch.cat([to_unit(x[:n], cfg.info), to_unit(done, cfg.info)]), nrow=n)

    @app.get("/run/{name:path}", response_class=HTMLResponse)
    def run_page(name: str):
        path = run_dir(name)
        cfg = json.loads((path / "config.json").read_text())
        s = _summary(path)
        events = read_events(path)
        grids = sorted((path / "samples").glob("epoch_*.png")) if (path / "samples").is_dir() else []
        parts = [f"<p>{_esc(s['model'])} on {_esc(s['data'])}: step {s['step']}, {s['time_s']} s</p>"]
        for sec in ("model", "data", "train"):
            rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in cfg.get(sec, {}).items())
            parts.append(f"<details{' open' if sec == 'model' else ''}><summary>{sec}</summary>"
                         f"<table>{rows}</table></details>")
        parts.append(f"<h2>Training</h2><img id='curves' alt='training curves' src='/run/{_esc(name)}/curves.png'>")
        warnings = list(dict.fromkeys(r["message"] for r in events if r.get("event") == "warning"))
        parts += [f"<p class='warn'>{_esc(w)}</p>" for w in warnings]
        if grids:
            files = json.dumps([f"/run/{name}/file/samples/{g.name}" for g in grids])
            parts.append(f"<h2>Epoch grids</h2><input id='epoch' type='range' min='0' max='{len(grids) - 1}' "
                         f"value='{len(grids) - 1}'> <span id='epoch_name'>{_esc(grids[-1].stem)}</span><br>"
                         f"<img id='grid' alt='epoch grid' src='/run/{_esc(name)}/file/samples/{_esc(grids[-1].name)}'>"
                         f"<script>const grids={files};</script>")
        model_cls = _model_class(cfg)
        if model_cls is not None and hasattr(model_cls, "sample"):
            import inspect

            knobs = [k for k in ("temperature", "truncation") if k in inspect.signature(model_cls.sample).parameters]
            extra = "".join(f" <label>{k} <input id='{k}' class='knob' type='number' step='0.1' min='0' "
                            f"{'max=1 ' if k == 'truncation' else ''}placeholder='default'></label>" for k in knobs)
            parts.append(f"<h2>Sample</h2><fieldset><label>n <input id='n' type='number' value='16' min='1' "
                         f"max='{MAX_SAMPLES}'></label> <label>seed <input id='seed' type='number' value='0' "
                         f"min='0'></label>{extra} <button id='draw'>draw</button></fieldset>"
                         f"<img id='samples' alt='samples' src='/run/{_esc(name)}/sample.png?n=16&seed=0'>")
        if model_cls is not None and hasattr(model_cls, "prior"):
            parts.append(f"<h2>Interpolate</h2><fieldset><label>seed a <input id='sa' type='number' value='0' "
                         f"min='0'></label> <label>seed b <input id='sb' type='number' value='1' min='0'></label> "
                         f"<button id='seeds'>interpolate</button></fieldset><img id='interp' alt='interpolation' "
                         f"src='/run/{_esc(name)}/interpolate.png?seed_a=0&seed_b=1&steps=8'>")
        elif model_cls is not None and hasattr(model_cls, "encode") and hasattr(model_cls, "decode"):
            parts.append(f"<h2>Interpolate</h2><fieldset><label>test image a <input id='ia' type='number' value='0' "
                         f"min='0' max='{MAX_TEST - 1}'></label> <label>b <input id='ib' type='number' value='1' "
                         f"min='0' max='{MAX_TEST - 1}'></label> <button id='between'>interpolate</button></fieldset>"
                         f"<img id='interp' alt='interpolation' src='/run/{_esc(name)}/interpolate.png?a=0&b=1'>"
                         f"<h2>Attributes</h2><fieldset><label>test image <input id='ai' type='number' value='0' "
                         f"min='0' max='{MAX_TEST - 1}'></label> <select id='attr'><option>thickness</option>"
                         f"<option>slant</option><option>ink</option></select> <label>alpha <input id='alpha' "
                         f"type='range' min='-3' max='3' step='0.5' value='1.5'></label></fieldset>"
                         f"<img id='attr_img' alt='attribute' src='/run/{_esc(name)}/attribute.png?image=0&"
                         f"attribute=thickness&alpha=1.5'><p class='proto'>the test image, its reconstruction, and "
                         f"the reconstruction moved by alpha times the attribute's vector</p>")
        if model_cls is not None and hasattr(model_cls, "complete"):
            parts.append(f"<h2>Complete</h2><img id='complete' alt='completions' "
                         f"src='/run/{_esc(name)}/complete.png?n=8&rows={max(1, cfg['info']['height'] // 2)}'>")
        if (path / "eval.json").exists():
            parts.append("<h2>Evaluation</h2>" + eval_table(json.loads((path / "eval.json").read_text())))
        script = f"""
const base='/run/{name}';
const ep=document.getElementById('epoch');
if(ep) ep.oninput=()=>{{document.getElementById('grid').src=grids[ep.value];
  document.getElementById('epoch_name').textContent=grids[ep.value].split('/').pop().replace('.png','');}};
const d=document.getElementById('draw');
if(d) d.onclick=()=>{{let q='/sample.png?n='+document.getElementById('n').value+'&seed='+
  document.getElementById('seed').value;
  for(const k of document.querySelectorAll('.knob')) if(k.value!=='') q+='&'+k.id+'='+k.value;
  document.getElementById('samples').src=base+q;}};
const sd=document.getElementById('seeds');
if(sd) sd.onclick=()=>{{document.getElementById('interp').src=base+'/interpolate.png?seed_a='+
  document.getElementById('sa').value+'&seed_b='+document.getElementById('sb').value;}};
const bt=document.getElementById('between');
if(bt) bt.onclick=()=>{{document.getElementById('interp').src=base+'/interpolate.png?a='+
  document.getElementById('ia').value+'&b='+document.getElementById('ib').value;}};
const at=()=>{{document.getElementById('attr_img').src=base+'/attribute.png?image='+document.getElementById('ai').value+
  '&attribute='+document.getElementById('attr').value+'&alpha='+document.getElementById('alpha').value;}};
for(const id of ['ai','attr','alpha']){{const e=document.getElementById(id); if(e) e.onchange=at;}}
setInterval(()=>{{document.getElementById('curves').src=base+'/curves.png?t='+Date.now();}}, 15000);
"""
        return _page(f"run {name}", "".join(parts), script)

    @app.get("/compare", response_class=HTMLResponse)
    def compare(runs: str = Query(..., max_length=4000)):
        names = [r for r in runs.split(",") if r]
        summaries = {n: _summary(run_dir(n)) for n in names}
        keys = list(dict.fromkeys(k for s in summaries.values() for k in s["numbers"]))
        head = "".join(f"<th>{_esc(n)}</th>" for n in names)
        rows = "".join(f"<tr><th>{_esc(k)}</th>" + "".join(
            f"<td>{summaries[n]['numbers'][k]:.4g}</td>" if k in summaries[n]["numbers"] else "<td></td>"
            for n in names) + "</tr>" for k in keys)
        steps = "<tr><th>step</th>" + "".join(f"<td>{summaries[n]['step']}</td>" for n in names) + "</tr>"
        return _page("compare", f"<table><tr><th></th>{head}</tr>{steps}{rows}</table>")

    return app


def _model_class(cfg: dict):
    from .models import registry

    name = cfg.get("model", {}).get("name")
    return registry.get(name).model_cls if name in registry.names() else None


def serve(root: str | Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    app = create_app(root)  # a bad folder is refused before anything is announced
    print(f"genlab: serving the runs under {root} at http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")

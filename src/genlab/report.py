"""`genlab report RUN [RUN ...] -o report.html`: one self-contained HTML file per set of runs, for a review or an
issue: each run's settings, training curves, warnings, sample grids, evaluation table with its protocols and the
applications' results. Images are embedded as base64 PNGs; the file loads nothing from the network.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from .errors import UserError
from .files import atomic_write, read_json
from .metrics.registry import ARCHIVE

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;margin-top:2em}h3{margin-bottom:.3em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.2em .6em;text-align:left;
font-size:.9em;vertical-align:top}th{background:#f4f4f4}img{max-width:100%;image-rendering:pixelated}
.warn{color:#a40}.proto{font-size:.8em;color:#555}details{margin:.4em 0}"""
CURVE_SKIP = {"event", "step", "epoch", "time_s", "lr", "img_per_s", "histogram", "message", "num_classes"}


def _esc(v) -> str:
    return html.escape(str(v))


def _png(path: Path) -> str:
    return f'<img alt="{_esc(path.name)}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'


def _table(rows: dict) -> str:
    """A two-column table of a flat dict (nested values as compact JSON)."""
    cells = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v if not isinstance(v, (dict, list)) else json.dumps(v))}"
                    f"</td></tr>" for k, v in rows.items())
    return f"<table>{cells}</table>"


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else _esc(v)


def read_events(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill: the rest still reports
            continue
    return out


def curves(events: list[dict]) -> str:
    """Each logged number against the step, train and test events together, as one embedded PNG."""
    data = curves_png(events)
    if data is None:
        return "<p>no training curves logged</p>"
    return f'<img alt="curves" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def curves_png(events: list[dict]) -> bytes | None:
    """The curves figure as PNG bytes (up to 12 panels); None when nothing numeric was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, dict[str, list]] = {}
    for rec in events:
        if rec.get("event") not in ("train", "test", "modes"):
            continue
        for k, v in rec.items():
            if k in CURVE_SKIP or not isinstance(v, (int, float)):
                continue
            s = series.setdefault(k, {})
            s.setdefault(rec["event"], []).append((rec["step"], v))
    if not series:
        return None
    keys = list(series)[:12]
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for event, pts in series[key].items():
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o" if event != "train" else None, ms=3, lw=1, label=event)
        ax.set_title(key, fontsize=9)
        ax.tick_params(labelsize=7)
        if len(series[key]) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.supxlabel("step", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def run_section(run: Path) -> str:
    if not (run / "config.json").is_file():
        raise UserError(f"'{run}' is not a run folder (no config.json)")
    cfg = read_json(run / "config.json")
    events = read_events(run)
    parts = [f"<h2>{_esc(run.name)}: {_esc(cfg.get('model', {}).get('name', '?'))}</h2>"]
    state = run / "trainer_state.json"
    if state.exists():
        st = read_json(state)
        parts.append(f"<p>step {st.get('step')} ({st.get('epoch')} epochs of {_esc(cfg['train'].get('epochs'))} "
                     f"planned), {float(st.get('time_s', 0)):.0f} s of training</p>")
    for name in ("model", "data", "train", "info"):
        if name in cfg:
            parts.append(f"<details{' open' if name == 'model' else ''}><summary>{name}</summary>"
                         f"{_table(cfg[name])}</details>")
    parts.append("<h3>Training</h3>" + curves(events))
    warnings = [rec["message"] for rec in events if rec.get("event") == "warning"]
    if warnings:
        parts.append("<ul>" + "".join(f'<li class="warn">{_esc(w)}</li>' for w in dict.fromkeys(warnings)) + "</ul>")
    grids = sorted((run / "samples").glob("epoch_*.png")) if (run / "samples").is_dir() else []
    figures = [p for p in sorted((run / "samples").glob("*.png")) if not p.name.startswith("epoch_")] \
        if grids else []
    if grids:
        shown = grids if len(grids) <= 2 else [grids[0], grids[-1]]
        parts.append("<h3>Samples</h3>" + "".join(f"<figure>{_png(p)}<figcaption>{_esc(p.stem)}</figcaption></figure>"
                                                 for p in shown + figures))
    if (run / "eval.json").exists():
        parts.append("<h3>Evaluation</h3>" + eval_table(read_json(run / "eval.json")))
    for res in sorted((run / "apply").glob("*/results.json")) if (run / "apply").is_dir() else []:
        rec = read_json(res)
        parts.append(f"<h3>Application: {_esc(res.parent.name)}</h3>" + results_table(rec.get("results", {}))
                     + f'<div class="proto">{_table(rec.get("protocol", {}))}</div>')
    return "\n".join(parts)


def eval_table(rec: dict) -> str:
    rows = []
    for key, val in rec.items():
        if not isinstance(val, dict) or key == ARCHIVE:  # the archive repeats the results above
            continue
        nums = ", ".join(f"{k} {_fmt(v)}" for k, v in val.items()
                         if k != "protocol" and not isinstance(v, (dict, list)))
        rows.append(f"<tr><th>{_esc(key)}</th><td>{nums}</td><td class='proto'>"
                    f"{_esc(json.dumps(val.get('protocol', {})))}</td></tr>")
    return "<table><tr><th>metric</th><th>values</th><th>protocol</th></tr>" + "".join(rows) + "</table>"


def results_table(results: dict) -> str:
    cols = list(dict.fromkeys(k for r in results.values() if isinstance(r, dict) for k, v in r.items()
                              if isinstance(v, (int, float))))
    head = "<tr><th></th>" + "".join(f"<th>{_esc(c)}</th>" for c in cols) + "</tr>"
    body = "".join(f"<tr><th>{_esc(name)}</th>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>"
                   for name, r in results.items() if isinstance(r, dict))
    return f"<table>{head}{body}</table>"


def write_report(runs: list[str | Path], out: str | Path) -> Path:
    """The report of `runs` written to `out` (atomically); returns its path."""
    sections = [run_section(Path(r)) for r in runs]
    title = "genlab report: " + ", ".join(Path(r).name for r in runs)
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(title)}</title><style>{STYLE}</style>"
           f"</head><body><h1>{_esc(title)}</h1>" + "\n".join(sections) + "</body></html>")
    out = Path(out)
    atomic_write(out, lambda tmp: tmp.write_text(doc, encoding="utf-8"))
    return out

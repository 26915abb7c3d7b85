"""Config dataclasses <-> plain dicts, TOML files and dotted command-line overrides.

Every config is a small dataclass whose fields have plain types (int, float, str, bool, tuples of
those, or Optional of them). Conversion is strict: an unknown key or a value of the wrong type is a
`UserError` that names the field and the closest valid keys.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from .errors import UserError, closest


def to_dict(cfg: Any) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _show(value: Any, limit: int = 60) -> str:
    """repr of a user's value for an error message, shortened so that the message stays one line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 15]}... ({len(text):,} characters)"


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _whole(value: Any, where: str) -> int:
    """An integer setting: exact for whole-number text (float() would round it), and within 64 bits, the most any
    size, count or seed can use."""
    if isinstance(value, int):
        v = value
    else:
        try:
            v = int(str(value).strip())
        except ValueError:
            try:
                f = float(value)
            except (TypeError, ValueError, OverflowError):
                raise UserError(f"{where} expects an integer, got {_show(value)}") from None
            if not math.isfinite(f) or f != int(f):
                raise UserError(f"{where} expects an integer, got {_show(value)}") from None
            v = int(f)
    if abs(v) >= 2**63:
        raise UserError(f"{where} expects an integer below 2^63, got {_show(value)}")
    return v


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a JSON/TOML/CLI value to the field type `tp`, or raise UserError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except UserError as e:
                errors.append(e)
        raise errors[0] if errors else UserError(f"{where}: invalid value {_show(value)}")
    if origin is tuple:
        if isinstance(value, str):
            text = value.strip()
            if text[:1] + text[-1:] in ("()", "[]"):
                text = text[1:-1]
            if any(c in text for c in "()[]"):
                raise UserError(f"{where} expects a flat list such as 64,32 or (64, 32), got {_show(value)}")
            value = [v for v in text.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where} expects a list of values, got {_show(value)}")
        inner = args[0] if args else str
        return tuple(_coerce(v, inner, where) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise UserError(f"{where} expects true or false, got {_show(value)}")
    if tp is int:
        if isinstance(value, bool):
            raise UserError(f"{where} expects an integer, got {_show(value)}")
        return _whole(value, where)
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UserError(f"{where} expects a number, got {_show(value)}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise UserError(f"{where} expects a string, got {_show(value)}")
        return str(value)
    raise TypeError(f"unsupported config field type {tp!r} at {where}")


def from_dict(cls: type, data: dict, where: str = "") -> Any:
    """Build dataclass `cls` from a dict, strictly: unknown keys and bad types are UserErrors."""
    if not isinstance(data, dict):
        raise UserError(f"{where or cls.__name__} must be a table of settings, got {data!r}")
    hints = _hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            raise UserError(f"unknown setting '{path}'{closest(key, fields)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = from_dict(tp, value, path)
        else:
            kwargs[key] = _coerce(value, tp, path)
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise UserError(f"invalid {where or cls.__name__}: {e}") from None
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


def parse_overrides(items: list[str]) -> dict:
    """['model.latent_dim=16', 'train.lr=1e-3'] -> {'model': {'latent_dim': '16'}, 'train': {...}}."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got '{item}'")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise UserError(f"--set key '{key}' is not a dotted name like model.latent_dim")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UserError(f"--set '{key}' conflicts with an earlier --set")
        node[parts[-1]] = value.strip()
    return out


def merge(base: dict, update: dict) -> dict:
    """Recursive dict merge; `update` wins."""
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def read_toml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file '{path}' does not exist")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"config file '{path}' is not valid TOML: {e}") from None


def positive_int(s: str) -> int:
    """argparse type for counts: a whole number above 0, else argparse's one-line error."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{s}'") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {v}")
    return v


def check_choice(where: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{where} must be one of {', '.join(choices)}, got '{value}'{closest(value, choices)}")


def check_positive(where: str, value: float, allow_zero: bool = False) -> None:
    if not math.isfinite(value):
        raise UserError(f"{where} must be a finite number, got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        raise UserError(f"{where} must be {'non-negative' if allow_zero else 'positive'}, got {value}")


def seed_int(s: str) -> int:
    """argparse type for --seed: a whole number in [0, 2^63), the range torch's generators take."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{s}'") from None
    if not 0 <= v < 2**63:
        raise argparse.ArgumentTypeError(f"expected a whole number in [0, 2^63), got {v}")
    return v


_FIELD_LINE = re.compile(r"^\s+(\w+)\s*:[^=#]+=[^#]*?(?:#\s*(.*))?$")


def field_docs(cls: type) -> dict[str, str]:
    """Each field's comment in its dataclass's source, base classes first; '' where a field has none. A field's
    comment is the one on its line (`width: int = 64  # feature maps`); comment lines between two fields continue
    the first one's, or, when the second has none on its line, describe the second. `genlab list MODEL` prints
    them beside the defaults."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        previous, block = None, []
        for line in lines:
            stripped = line.strip()
            m = _FIELD_LINE.match(line)
            if m:
                name, inline = m.group(1), (m.group(2) or "").strip()
                if block and not inline:
                    inline = " ".join(block)
                elif block and previous:
                    docs[previous] = f"{docs[previous]} {' '.join(block)}".strip()
                docs[name], previous, block = inline or docs.get(name, ""), name, []  # a subclass may re-default
            elif stripped.startswith("#") and previous is not None:
                block.append(stripped.lstrip("#").strip())
            elif stripped:  # a method or anything else ends the fields
                if block and previous:
                    docs[previous] = f"{docs[previous]} {' '.join(block)}".strip()
                previous, block = None, []
    return {f.name: docs.get(f.name, "") for f in dataclasses.fields(cls)}

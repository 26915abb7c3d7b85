"""The two tables of data sources: built-in sets by name, user files by the prefix before the colon.

Below both the readers (which register the user-file kinds) and `sources.load` (which looks them up).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .base import Splits

BUILTIN: dict[str, tuple[Callable[[], Splits], str]] = {}
USER: dict[str, tuple[Callable[[Path], Splits], str]] = {}


def builtin(name: str, summary: str):
    def wrap(fn):
        BUILTIN[name] = (fn, summary)
        return fn

    return wrap


def user(prefix: str, summary: str):
    def wrap(fn):
        USER[prefix] = (fn, summary)
        return fn

    return wrap

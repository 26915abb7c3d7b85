"""User-facing errors.

A `UserError` is a mistake the user can fix (bad path, corrupt file, unknown name, invalid value).
The CLI prints its message as one sentence and exits with status 2; anything else is a bug and may
show a traceback.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake in the user's input, reported as one plain sentence."""


def closest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean: a, b?)' for the nearest valid names, or '' when none is close."""
    choices = list(choices)
    near = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(near)}?)" if near else ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> UserError:
    """Error for an unknown name, listing the closest valid ones or, failing that, all of them."""
    choices = sorted(choices)
    hint = (closest(name, choices) if isinstance(name, str) else "") or f" (valid: {', '.join(choices)})"
    return UserError(f"unknown {kind} '{name}'{hint}")


def machine_memory() -> int:
    """Bytes of physical memory."""
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(what: str, nbytes: int, fix: str, share: float = 0.5, memory: int | None = None) -> None:
    """Refuse, before allocating, a request for more than `share` of the machine's memory: `what` names the setting
    and the size it implies, `fix` what to change."""
    memory = machine_memory() if memory is None else memory
    if nbytes > share * memory:
        raise UserError(f"{what} needs {nbytes / 2**30:,.1f} GiB, more than this machine's {memory / 2**30:.0f} GiB "
                        f"allows: {fix}")

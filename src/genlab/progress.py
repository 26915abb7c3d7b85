"""Progress of long loops: a bar on a terminal, and on a log file (nohup, CI) a line every half minute."""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
LINE_EVERY_S = 30.0


def track(items: Iterable[T], total: int, desc: str, enabled: bool = True, unit: str = "batch") -> Iterator[T]:
    """Yield `items`, reporting how far the loop is: tqdm's bar when stderr is a terminal, else one line per
    LINE_EVERY_S seconds with the count, the elapsed time and an ETA. Silent when not `enabled`."""
    if not enabled:
        yield from items
        return
    if sys.stderr.isatty():
        yield from tqdm(items, total=total, desc=desc, unit=unit, leave=False)
        return
    start = last = time.perf_counter()
    for i, item in enumerate(items, 1):
        yield item
        now = time.perf_counter()
        if now - last >= LINE_EVERY_S and i < total:
            eta = (now - start) / i * (total - i)
            print(f"genlab: {desc} {i}/{total} {unit}es, {now - start:.0f} s, ETA {eta:.0f} s", file=sys.stderr,
                  flush=True)
            last = now

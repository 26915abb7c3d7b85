"""Timing helpers shared by the throughput benchmarks."""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable

from genlab.train.trainer import Trainer


def time_fit(run) -> float:
    """Seconds of `Trainer.fit()` for `run` in a throw-away folder (building the Trainer is not timed)."""
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(run, out, quiet=True)
        t = time.perf_counter()
        trainer.fit()
        elapsed = time.perf_counter() - t
        trainer.close()
    return elapsed


def alternate(plain: Callable[[int], float], genlab: Callable[[int], float], repeats: int,
              names: tuple[str, str] = ("plain", "genlab")) -> dict[str, list[float]]:
    """Seconds of each side per repeat, the sides taking turns to go first (repeat r is seeded with r first)."""
    import torch

    times: dict[str, list[float]] = {names[0]: [], names[1]: []}
    for r in range(repeats):
        for side in (names if r % 2 == 0 else names[::-1]):
            torch.manual_seed(r)
            times[side].append(plain(r) if side == names[0] else genlab(r))
    return times


def report(title: str, times: dict[str, list[float]], images: int) -> None:
    """Print the medians as seconds and images/s, and the ratio of the second side to the first."""
    import statistics

    import torch

    (a, ta), (b, tb) = times.items()
    med = {a: statistics.median(ta), b: statistics.median(tb)}
    print(f"{title}, {len(ta)} repeats, {torch.get_num_threads()} threads, torch {torch.__version__}")
    for k, v in med.items():
        print(f"  {k:7s} {v:7.2f} s  {images / v:7.1f} images/s  (runs: {', '.join(f'{t:.2f}' for t in times[k])})")
    print(f"  ratio {b} / {a} = {med[b] / med[a]:.3f}")

"""Timing helpers shared by the throughput benchmarks."""
from __future__ import annotations

import tempfile
import time

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

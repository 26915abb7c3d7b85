"""The Python entry points above every layer: what `genlab train` does, as a function.

    from genlab.api import train
    from genlab.run import compose
    train(compose("vae", flags={"data": {"source": "digits"}}), "runs/vae")
"""
from __future__ import annotations

from pathlib import Path

from .metrics.monitor import mode_monitor
from .train.trainer import Trainer


def train(run, out: str | Path, quiet: bool = False) -> dict:
    """Train (or resume) `run` into folder `out`, with the epoch-end monitors its settings ask for; returns a short
    summary."""
    trainer = Trainer(run, out, quiet, monitors=[mode_monitor] if run.train.monitor_modes else [])
    try:
        return trainer.fit()
    finally:
        trainer.close()

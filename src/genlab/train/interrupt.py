"""Stopping a run by a signal without losing its steps.

SIGINT (Ctrl-C) and SIGTERM (`kill`, a scheduler's stop) that arrive while a training step is under way let the
step finish; the trainer then writes a checkpoint at that step and stops. During an epoch's end (its grid,
monitors and test losses, which can take minutes) they stop that work at once: the trainer checkpoints the
finished epoch with its end marked pending, and the resumed run does that work before its next step. A second
signal before the step ends interrupts at once, and the run resumes from its last checkpoint. SIGKILL cannot be
caught: a run killed so resumes from its last checkpoint (`train.ckpt_every`).
"""
from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop:
    """For the training loop: `install()` before it, `in_step = True` as each step starts, `should_stop()` as it
    ends, `restore()` after the loop."""

    def __init__(self) -> None:
        self.in_step = False
        self.requested = False
        self.previous: dict = {}

    def install(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
            self.previous = {sig: signal.signal(sig, self.handle) for sig in SIGNALS}
        return self

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def handle(self, signum, frame) -> None:
        if not self.in_step or self.requested:  # outside a step (the trainer checkpoints), or a second signal
            raise KeyboardInterrupt
        self.requested = True  # the step finishes first

    def should_stop(self) -> bool:
        """End of a step: True when a signal came during it (the caller checkpoints, then raises)."""
        self.in_step = False
        return self.requested

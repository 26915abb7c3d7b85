"""Safe, atomic checkpoints: safetensors for tensors, JSON for everything else; nothing is ever unpickled.

A checkpoint is several files (model, EMA, trainer state). They change together through a journal:
1. every file is written into DIR/.staging/;
2. .staging is renamed to .commit (one atomic rename: from here on the new checkpoint is complete);
3. each file in .commit is moved over its old copy, then .commit is removed.
A kill before step 2 leaves the old checkpoint untouched; a kill after it is rolled forward by
`recover` (run before training resumes), and readers look in .commit first, so a reader never mixes
files of two checkpoints.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError

from ..errors import UserError
from ..files import read_json

STAGING, COMMIT = ".staging", ".commit"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def resolve(run_dir: Path, name: str) -> Path:
    """The current copy of checkpoint file `name`: in .commit while a commit is being finished."""
    pending = Path(run_dir) / COMMIT / name
    return pending if pending.exists() else Path(run_dir) / name


def recover(run_dir: Path) -> None:
    """Finish a commit a kill interrupted (roll forward) and drop a half-written staging folder."""
    run_dir = Path(run_dir)
    commit = run_dir / COMMIT
    for entry in (commit, run_dir / STAGING):
        if entry.is_symlink() or (entry.exists() and not entry.is_dir()):
            raise UserError(f"'{entry}' is not the folder genlab's checkpoints leave there; remove it and run again")
    if commit.is_dir():
        files = sorted(commit.iterdir())
        odd = [f for f in files if f.is_symlink() or not f.is_file()]
        if odd:
            raise UserError(f"'{odd[0]}' is not a checkpoint file genlab wrote; remove '{commit}' to go back to the "
                            f"previous checkpoint")
        for f in files:
            os.replace(f, run_dir / f.name)
        commit.rmdir()
    shutil.rmtree(run_dir / STAGING, ignore_errors=True)


class RunLock:
    """One writer per run folder: an exclusive, non-blocking flock on DIR/.lock holding the writer's pid.

    The OS drops the lock when its holder exits, however it dies, so a killed run leaves no stale lock; readers
    (sample, eval, info) never take it. A second writer is refused at once with one sentence naming the holder.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.fd: int | None = None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"cannot create the lock file {self.path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(f"'{run_dir}' is being written by another genlab process (pid {holder}); wait for it "
                            f"to finish, stop it, or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def commit(run_dir: Path, files: dict[str, Callable[[Path], None]]) -> None:
    """Write `files` (name -> writer) as one atomic checkpoint."""
    run_dir = Path(run_dir)
    recover(run_dir)
    staging = run_dir / STAGING
    try:
        staging.mkdir(parents=True)
        for name, write in files.items():
            write(staging / name)
            with open(staging / name, "rb+") as f:
                os.fsync(f.fileno())
        _fsync_dir(staging)
    except (OSError, SafetensorError) as e:  # before the rename: the previous checkpoint is untouched
        shutil.rmtree(staging, ignore_errors=True)
        kept = ("the previous checkpoint is intact" if (run_dir / "trainer_state.json").exists()
                else "no checkpoint was saved yet")
        raise UserError(f"could not write a checkpoint into '{run_dir}' ({getattr(e, 'strerror', None) or e}); {kept}: "
                        "free space (or lift the limit) and run the same command to resume") from None
    os.rename(staging, run_dir / COMMIT)
    _fsync_dir(run_dir)
    recover(run_dir)


# ---------------------------------------------------------------- tensors
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_state(path: Path) -> dict:
    """trainer_state.json, checked: a step and a time, the optimizers' table and the process count."""
    st = read_json(path)
    if not (_is_int(st.get("step")) and st["step"] >= 0 and isinstance(st.get("time_s"), (int, float))
            and not isinstance(st.get("time_s"), bool) and isinstance(st.get("optimizers"), dict)
            and _is_int(st.get("world", 1))):
        raise UserError(f"'{path}' is not a trainer state genlab wrote (it needs step, time_s and optimizers); "
                        f"the checkpoint cannot be used")
    return st


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl. A partial last line (what a kill or a full disk leaves mid-write) is
    dropped; any other line that is not a JSON object with an event name and a step is refused."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"'{path}' is not a log genlab wrote (binary content)") from None
    lines = text.split("\n")
    records = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, RecursionError, ValueError):
            rec = None
        if isinstance(rec, dict) and isinstance(rec.get("event"), str) and _is_int(rec.get("step")):
            records.append(rec)
        elif i == len(lines):  # the last line has no newline: an interrupted write
            break
        else:
            raise UserError(f"'{path}' line {i} is not a genlab log record; fix or remove that line")
    return records


def optimizer_to_flat(name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into tensors (for safetensors) and a JSON-able rest."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"opt.{name}.{idx}.{key}"] = val
            else:
                scalars[f"{idx}.{key}"] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(name: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    prefix = f"opt.{name}."
    for key, val in tensors.items():
        if key.startswith(prefix):
            idx, field = key[len(prefix):].split(".", 1)
            state.setdefault(int(idx), {})[field] = val
    for key, val in meta["scalars"].items():
        idx, field = key.split(".", 1)
        state.setdefault(int(idx), {})[field] = val
    check_groups(name, opt, meta["param_groups"])
    try:
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (ValueError, KeyError, RuntimeError) as e:
        raise UserError(f"the saved state of optimizer '{name}' does not fit the model ({e})") from None


def _kind(value) -> str:
    """A setting's kind: a flag, a number, nothing, a sequence of so many numbers, or other."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "flag"
    if isinstance(value, (int, float)):
        return "number" if math.isfinite(value) else "non-finite"
    if isinstance(value, (list, tuple)):
        return f"{len(value)} numbers" if all(_kind(v) == "number" for v in value) else "other"
    return "other"


def check_groups(name: str, opt: torch.optim.Optimizer, groups) -> None:
    """The saved hyperparameters of each parameter group have the kinds the optimizer's own have (a flag where
    it has a flag, finite numbers where it has numbers): torch would act on a number in place of a flag and fail
    mid-step. Settings only one side has (another torch version's) are left to torch."""
    if not isinstance(groups, list) or len(groups) != len(opt.param_groups) or \
            not all(isinstance(g, dict) for g in groups):
        raise UserError(f"the saved state of optimizer '{name}' does not fit the model (its parameter groups differ)")
    for saved, own in zip(groups, opt.param_groups):
        for key in own.keys() & saved.keys() - {"params"}:
            if _kind(saved[key]) != _kind(own[key]):
                raise UserError(f"the saved state of optimizer '{name}' is damaged: its setting '{key}' is "
                                f"{saved[key]!r}, where a {_kind(own[key])} belongs")

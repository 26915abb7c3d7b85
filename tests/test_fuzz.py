"""Fuzzing the user's side of the house (issue 17): tampered run folders and malformed data files.

A seeded generator damages one file per case: it truncates it, flips bytes, fills it with noise, empties or
deletes it, gives a JSON field the wrong type, drops a key, nests absurdly deep, writes a 5,000-digit
integer, swaps in a valid safetensors file of other tensors, or plants a pickle whose loading would touch a
file outside the run folder. Whatever genlab command then reads the folder or the data must either work or
end with exit 2 and one sentence: never a traceback, and nothing outside the run folder may change.
"""
from __future__ import annotations

import gzip
import json
import pickle
import random
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from apps_common import run_cli
from PIL import Image
from safetensors.torch import save_file

from genlab.cli import main

RUN_CASES = 240
DATA_CASES = 120


class Touch:
    """A pickle that, if anything ever unpickled it, would create the file it names."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


# ---------------------------------------------------------------------------------------------- damage
def _json_paths(obj, prefix=()):
    """Every (path, value) in a JSON tree."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,), v
            yield from _json_paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield prefix + (i,), v
            yield from _json_paths(v, prefix + (i,))


def _set(obj, path, value):
    for k in path[:-1]:
        obj = obj[k]
    if value is _DROP:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value


_DROP = object()
ODD_VALUES = [None, True, "x", -1, 0, 10**12, 1e308, [], {}, [[[]]], "9" * 50, -(10**18)]


def damage_json(text: str, rng: random.Random) -> bytes:
    obj = json.loads(text)
    paths = [p for p, _ in _json_paths(obj)]
    if not paths:
        return b"[]"
    path = rng.choice(paths)
    if isinstance(path[-1], str) and rng.random() < 0.3:
        _set(obj, path, _DROP)
    else:
        _set(obj, path, rng.choice(ODD_VALUES))
    return json.dumps(obj).encode()


BREAKING = ("noise", "empty", "delete", "deep", "bigint", "pickle", "tensors")  # no file genlab wrote survives these


def damage_bytes(data: bytes, kind: str, rng: random.Random, outside: Path) -> bytes | None:
    """A damaged copy of a file's bytes (None: delete the file)."""
    if kind == "truncate":
        return data[: rng.randrange(max(1, len(data)))]
    if kind == "flip":
        b = bytearray(data or b"\0")
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if kind == "noise":
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 400)))
    if kind == "empty":
        return b""
    if kind == "delete":
        return None
    if kind == "deep":
        return b"[" * 200_000 + b"]" * 200_000
    if kind == "bigint":
        return b'{"step": ' + b"7" * 5000 + b"}"
    if kind == "pickle":
        return pickle.dumps({"state": Touch(outside / "pwned")})
    path = outside / "other.safetensors"  # a valid safetensors file of tensors no genlab model has
    save_file({"w": torch.zeros(3, 5), "step": torch.tensor([1])}, str(path))
    data = path.read_bytes()
    path.unlink()
    return data


def damage(file: Path, rng: random.Random, outside: Path) -> str:
    """Damage `file` in place; returns the kind of damage."""
    data = file.read_bytes()
    if file.suffix in (".json", ".jsonl") and rng.random() < 0.5:
        lines = data.decode().splitlines()
        if file.suffix == ".jsonl":  # one record damaged, or a partial line at the end
            i = rng.randrange(len(lines))
            lines[i] = damage_json(lines[i], rng).decode() if rng.random() < 0.7 else lines[i][: len(lines[i]) // 2]
            file.write_text("\n".join(lines) + ("\n" if rng.random() < 0.5 else ""))
        else:
            file.write_bytes(damage_json(data.decode(), rng))
        return "json"
    kind = rng.choice(["truncate", "flip", *BREAKING])
    new = damage_bytes(data, kind, rng, outside)
    if new is None:
        file.unlink()
    else:
        file.write_bytes(new)
    return kind


def snapshot(root: Path, skip: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and skip not in p.parents}


def assert_clean(code: int, err: str, what: str) -> None:
    """Exit 0; or exit 2 with one sentence; or, for weights damaged into finite nonsense, exit 1 with the one
    sentence of a diverged run (its last good checkpoint kept)."""
    assert "Traceback" not in err, what
    assert code in (0, 1, 2), f"{what}: exit {code}: {err}"
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("genlab: error: "), f"{what}: {err!r}"
    if code == 1:
        assert err.count("\n") == 1 and err.startswith("genlab: training diverged"), f"{what}: {err!r}"


# ---------------------------------------------------------------------------------------------- run folders
TINY = ["--data", "digits", "--limit", "128", "--batch-size", "64", "--set", "model.hidden=(8,)",
        "--set", "model.latent_dim=2", "--set", "train.samples=4", "--set", "train.eval_images=32", "--quiet"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A one-epoch VAE run with every file a run folder holds, eval.json included."""
    run = tmp_path_factory.mktemp("pristine") / "run"
    assert main(["train", "vae", *TINY, "--epochs", "1", "--out", str(run)]) == 0
    assert main(["eval", str(run), "--metrics", "elbo", "--n", "32"]) == 0
    return run


READ_BY_MODEL = ("config.json", "ema.safetensors", "model.safetensors")  # read by every command but info
COMMANDS = [
    lambda run: ["info", run],
    lambda run: ["sample", run, "-n", "4"],
    lambda run: ["reconstruct", run, "-n", "4"],
    lambda run: ["eval", run, "--metrics", "elbo", "--n", "32"],
    lambda run: ["train", "vae", *TINY, "--epochs", "2", "--out", run],
]


def test_tampered_run_folders_end_in_one_sentence(tmp_path, capsys, pristine):
    rng = random.Random(20261130)
    files = sorted(p.relative_to(pristine) for p in pristine.rglob("*") if p.is_file() and p.name != ".lock"
                   and "events.out" not in p.name)
    outcomes = {0: 0, 1: 0, 2: 0}
    for case in range(RUN_CASES):
        run = tmp_path / "run"
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(pristine, run)
        target = rng.choice(files)
        kind = damage(run / target, rng, tmp_path)
        before = snapshot(tmp_path, run)
        args = [str(a) for a in rng.choice(COMMANDS)(run)]
        code, _, err = run_cli(capsys, *args)
        what = f"case {case}: {target} damaged ({kind}), then genlab {' '.join(args[:2])}"
        assert_clean(code, err, what)
        assert snapshot(tmp_path, run) == before, f"{what}: a file outside the run folder changed"
        reads = ("config.json",) if args[0] == "info" else READ_BY_MODEL  # so the damage must be caught
        if str(target) in reads and kind in BREAKING:
            assert code == 2, what
        outcomes[code] += 1
    assert not (tmp_path / "pwned").exists()
    assert min(outcomes[0], outcomes[2]) > RUN_CASES // 10, outcomes


# ---------------------------------------------------------------------------------------------- data files
def _idx(a: np.ndarray) -> bytes:
    return b"\0\0\x08" + bytes([a.ndim]) + struct.pack(f">{a.ndim}i", *a.shape) + a.tobytes()


def make_sources(root: Path) -> dict[str, tuple[str, list[Path]]]:
    """One small valid source of each kind: its --data spec and the files a case may damage."""
    g = np.random.default_rng(0)
    x = g.integers(0, 256, (6, 8, 8), dtype=np.uint8)
    y = np.array([0, 1, 2, 0, 1, 2])
    np.savez(root / "d.npz", x_train=x, y_train=y, x_test=x[:2], y_test=y[:2])
    (root / "idx").mkdir()
    (root / "idx" / "train-images-idx3-ubyte").write_bytes(_idx(x))
    (root / "idx" / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(y.astype(np.uint8))))
    (root / "cifar").mkdir()
    batch = {b"data": g.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 0, 1]}
    (root / "cifar" / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
    (root / "cifar" / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a", b"b"]}, protocol=2))
    for c in ("a", "b"):
        (root / "folder" / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(g.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / "folder" / c / f"{i}.png")
    return {
        "npz": (f"npz:{root / 'd.npz'}", [root / "d.npz"]),
        "idx": (f"idx:{root / 'idx'}", sorted((root / "idx").iterdir())),
        "cifar": (f"cifar:{root / 'cifar'}", sorted((root / "cifar").iterdir())),
        "folder": (f"folder:{root / 'folder'}", sorted((root / "folder").rglob("*.png"))),
    }


def test_malformed_data_files_end_in_one_sentence(tmp_path, capsys):
    rng = random.Random(5)
    pristine = tmp_path / "pristine"
    pristine.mkdir()
    sources = make_sources(pristine)
    for kind, (spec, _) in sources.items():  # each is valid before the damage
        code, _, err = run_cli(capsys, "train", "vae", "--data", spec, "--epochs", "1", "--set", "model.hidden=(8,)",
                               "--set", "train.samples=0", "--out", tmp_path / f"ok-{kind}", "--quiet")
        assert code == 0, (kind, err)
    outcomes = {0: 0, 1: 0, 2: 0}
    for case in range(DATA_CASES):
        data = tmp_path / "data"
        shutil.rmtree(data, ignore_errors=True)
        shutil.copytree(pristine, data)
        kind = rng.choice(sorted(sources))
        spec, files = sources[kind]
        target = data / rng.choice(files).relative_to(pristine)
        damage(target, rng, tmp_path)
        spec = spec.replace(str(pristine), str(data))
        out = tmp_path / "run"
        shutil.rmtree(out, ignore_errors=True)
        before = snapshot(tmp_path, out)
        code, _, err = run_cli(capsys, "train", "vae", "--data", spec, "--epochs", "1", "--set", "model.hidden=(8,)",
                               "--set", "train.samples=0", "--set", "data.range=01", "--out", out, "--quiet")
        what = f"case {case}: {target.relative_to(data)} damaged"
        assert_clean(code, err, what)
        assert snapshot(tmp_path, out) == before, f"{what}: a file outside the run folder changed"
        outcomes[code] += 1
    assert not (tmp_path / "pwned").exists()
    assert outcomes[2] > DATA_CASES // 3, outcomes

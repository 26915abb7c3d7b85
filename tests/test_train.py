"""The trainer: resume after a kill is bit-exact, divergence is caught, run folders are safe to load,
data parallelism keeps replicas identical."""
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genlab import files
from genlab.api import train
from genlab.errors import UserError
from genlab.run import compose, load_model
from genlab.train import checkpoint as ckpt
from genlab.train.trainer import Diverged

TINY = ["model.hidden=(32,)", "model.latent_dim=4"]


def tiny_run(epochs=2, **train):
    return compose("vae", flags={"data": {"source": "digits", "limit": 256},
                                 "train": {"epochs": epochs, "batch_size": 32, "samples": 8, **train}},
                   overrides=TINY)


def weights(run_dir):
    return load_file(str(Path(run_dir) / "model.safetensors"))


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_run_folder_contents(tmp_path):
    out = tmp_path / "run"
    summary = train(tiny_run(epochs=2, log_every=4), out, quiet=True)
    assert summary["step"] == 2 * (256 // 32)
    for name in ("config.json", "model.safetensors", "trainer_state.safetensors", "trainer_state.json",
                 "metrics.jsonl", "samples/epoch_0001.png", "samples/epoch_0002.png"):
        assert (out / name).is_file(), name
    assert list(out.glob("events.out.tfevents.*")), "no TensorBoard event file"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_recs = [r for r in records if r["event"] == "train"]
    assert [r["step"] for r in train_recs] == [4, 8, 12, 16]
    for r in train_recs:
        assert {"step", "epoch", "time_s", "loss", "recon", "kl"} <= r.keys()
        assert all(isinstance(v, (int, float)) for k, v in r.items() if k != "event")
    assert [r["step"] for r in records if r["event"] == "test"] == [8, 16]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["name"] == "vae" and cfg["info"]["height"] == 8
    assert not (out / ckpt.STAGING).exists() and not (out / ckpt.COMMIT).exists()


def test_output_to_a_file_gets_one_line_per_epoch(tmp_path, capsys):
    train(tiny_run(epochs=3), tmp_path / "run")  # stderr is captured: not a terminal, so no progress bar
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and all(line.startswith(f"genlab: epoch {i}/3 step {8 * i}/24 loss ")
                                   for i, line in enumerate(lines, 1)), lines
    assert "img/s" in lines[0] and "ETA" in lines[0] and "(test loss " in lines[0]
    train(tiny_run(epochs=4), tmp_path / "run", quiet=True)
    assert capsys.readouterr().err == ""


def test_no_test_images_means_no_per_epoch_test_losses(tmp_path):
    train(tiny_run(epochs=1, eval_images=0, log_every=4), tmp_path / "run", quiet=True)
    events = {json.loads(line)["event"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()}
    assert "train" in events and "test" not in events


def test_extending_a_finished_run_equals_one_long_run(tmp_path):
    train(tiny_run(epochs=2), tmp_path / "a", quiet=True)
    train(tiny_run(epochs=4), tmp_path / "a", quiet=True)  # resumes at step 16 and goes on
    train(tiny_run(epochs=4), tmp_path / "b", quiet=True)
    assert_same(weights(tmp_path / "a"), weights(tmp_path / "b"))
    steps = [json.loads(l)["step"] for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps), "resumed log repeats or skips steps"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_a_step_keeps_that_step_and_the_resume_is_bit_exact(tmp_path, monkeypatch, signum):
    """SIGTERM or Ctrl-C arriving inside step 6 (of 16, checkpoints only at epoch ends): the step finishes, a
    checkpoint is written at step 6, and resuming from it ends where an uninterrupted run ends."""
    from genlab.models.vae import VAE

    step_of = VAE.train_step

    def signalling_step(self, batch, opts, step):
        terms = step_of(self, batch, opts, step)
        if step == 5 and not (tmp_path / "signalled").exists():
            (tmp_path / "signalled").touch()
            os.kill(os.getpid(), signum)  # delivered here, while the step is under way
        return terms

    class NotCaught(Exception):
        pass

    def outside(signum, frame):  # what runs if the trainer leaves the signal to the caller's handler
        raise NotCaught

    monkeypatch.setattr(VAE, "train_step", signalling_step)
    previous = signal.signal(signum, outside)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(tiny_run(epochs=2), tmp_path / "a", quiet=True)
        assert signal.getsignal(signum) is outside  # the caller's handler is back
    finally:
        signal.signal(signum, previous)
    assert json.loads((tmp_path / "a" / "trainer_state.json").read_text())["step"] == 6
    train(tiny_run(epochs=2), tmp_path / "a", quiet=True)
    train(tiny_run(epochs=2), tmp_path / "b", quiet=True)
    assert_same(weights(tmp_path / "a"), weights(tmp_path / "b"))


@pytest.mark.parametrize("where", ["test_losses", "last_step"])
def test_a_signal_at_an_epoch_end_keeps_the_epoch_and_the_resume_redoes_its_end(tmp_path, monkeypatch, where):
    """SIGTERM during epoch 1's test losses (minutes, for a model whose monitor samples), or during its last step:
    the checkpoint holds the whole epoch with its end pending; the resumed run writes epoch 1's test line once and
    ends with the weights and log of an uninterrupted run."""
    from genlab.models.vae import VAE
    from genlab.train.trainer import Trainer

    def signal_once():
        if not (tmp_path / "signalled").exists():
            (tmp_path / "signalled").touch()
            os.kill(os.getpid(), signal.SIGTERM)

    if where == "test_losses":
        evaluate_test = Trainer.evaluate_test

        def signalling_test(self):
            signal_once()  # raises at once: no step is under way
            return evaluate_test(self)

        monkeypatch.setattr(Trainer, "evaluate_test", signalling_test)
    else:
        step_of = VAE.train_step

        def signalling_step(self, batch, opts, step):
            terms = step_of(self, batch, opts, step)
            if step == 7:  # the last of epoch 1's 8 steps
                signal_once()
            return terms

        monkeypatch.setattr(VAE, "train_step", signalling_step)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_run(epochs=2), tmp_path / "a", quiet=True)
    state = json.loads((tmp_path / "a" / "trainer_state.json").read_text())
    assert state["step"] == 8 and state["epoch_end_pending"] is True
    train(tiny_run(epochs=2), tmp_path / "a", quiet=True)
    assert json.loads((tmp_path / "a" / "trainer_state.json").read_text())["epoch_end_pending"] is False
    train(tiny_run(epochs=2), tmp_path / "b", quiet=True)
    assert_same(weights(tmp_path / "a"), weights(tmp_path / "b"))

    def log(run):
        return [{k: v for k, v in r.items() if k not in ("time_s", "img_per_s")}
                for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]

    assert log(tmp_path / "a") == log(tmp_path / "b")
    assert [r["step"] for r in log(tmp_path / "a") if r["event"] == "test"] == [8, 16]


@pytest.mark.parametrize("setting, value", [("amsgrad", 1e308), ("lr", "fast"), ("eps", float("nan")),
                                            ("betas", [0.9])])
def test_a_damaged_optimizer_setting_is_refused_before_any_step(tmp_path, setting, value):
    """Adam reads `amsgrad` as a flag and `betas` as a pair mid-step: a number in the flag's place used to end in
    a KeyError traceback inside torch at the first step after the resume."""
    train(tiny_run(epochs=1), tmp_path / "a", quiet=True)
    path = tmp_path / "a" / "trainer_state.json"
    state = json.loads(path.read_text())
    state["optimizers"]["main"]["param_groups"][0][setting] = value
    path.write_text(json.dumps(state))
    with pytest.raises(UserError, match=f"optimizer 'main' is damaged: its setting '{setting}'"):
        train(tiny_run(epochs=2), tmp_path / "a", quiet=True)


def test_log_lines_after_a_resume_average_the_same_steps(tmp_path):
    """A checkpoint at step 8 with log lines every 5 steps: the line at step 10 averages steps 6-10 either way."""
    train(tiny_run(epochs=1, log_every=5), tmp_path / "a", quiet=True)
    train(tiny_run(epochs=2, log_every=5), tmp_path / "a", quiet=True)
    train(tiny_run(epochs=2, log_every=5), tmp_path / "b", quiet=True)

    def losses(run):
        return [(r["step"], r["loss"], r["kl"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                if r["event"] == "train"]

    assert [s for s, *_ in losses(tmp_path / "b")] == [5, 10, 15]
    assert losses(tmp_path / "a") == losses(tmp_path / "b")


def test_resume_refuses_other_settings(tmp_path):
    train(tiny_run(epochs=1), tmp_path / "a", quiet=True)
    other = compose("vae", flags={"data": {"source": "digits", "limit": 256},
                                  "train": {"epochs": 1, "batch_size": 32}},
                    overrides=["model.hidden=(32,)", "model.latent_dim=5"])
    with pytest.raises(UserError, match="other settings .*model.latent_dim"):
        train(other, tmp_path / "a", quiet=True)


def test_one_writer_per_run_folder(tmp_path):
    """A second training into a folder another process is writing is refused at once, naming the holder's pid,
    whatever its settings; the folder stays usable and trains once the holder is gone."""
    out = tmp_path / "a"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from genlab.train.checkpoint import RunLock; "
                               "RunLock(sys.argv[1]); print('locked', flush=True); time.sleep(60)", str(out)],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        (out).mkdir(exist_ok=True)
        assert holder.stdout.readline().strip() == "locked"
        for run in (tiny_run(epochs=1), tiny_run(epochs=3, lr=1e-2)):
            with pytest.raises(UserError, match=f"being written by another genlab process \\(pid {holder.pid}\\)"):
                train(run, out, quiet=True)
        assert not (out / "config.json").exists()  # the refused writer touched nothing
    finally:
        holder.kill()
        holder.wait()
    train(tiny_run(epochs=1), out, quiet=True)  # the lock died with its holder
    train(tiny_run(epochs=2), out, quiet=True)  # and each finished writer releases it
    assert json.loads((out / "trainer_state.json").read_text())["step"] == 2 * (256 // 32)


def test_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    for out in (tmp_path / "f", tmp_path / "f" / "run"):
        with pytest.raises(UserError, match="run folder"):
            train(tiny_run(epochs=1), out, quiet=True)


ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny models; no oversubscription on 2 cores


def _genlab(*args):
    return subprocess.Popen([sys.executable, "-m", "genlab.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ONE_THREAD)


def test_a_checkpoint_that_hits_a_file_size_limit_keeps_the_previous_one(tmp_path):
    """A full disk or a file-size limit during a checkpoint: one sentence, exit 2, the last checkpoint unchanged
    and resumable. The limit (RLIMIT_FSIZE, 30 kB) lets the weights (18 kB) through and stops Adam's state (37 kB)."""
    args = ["train", "vae", "--data", "digits", "--limit", "256", "--batch-size", "32", "--set", "model.hidden=32",
            "--set", "model.latent_dim=2", "--set", "train.samples=0", "--out", str(tmp_path / "run"), "--quiet"]
    assert subprocess.run([sys.executable, "-m", "genlab.cli", *args, "--epochs", "1"], env=ONE_THREAD).returncode == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file() and p.suffix != ".0"}
    limited = ("import resource, signal, sys; from genlab.cli import main; "
               "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
               "resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000)); sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", limited, *args, "--epochs", "2"], env=ONE_THREAD,
                          capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "could not write a checkpoint" in done.stderr
    assert "the previous checkpoint is intact" in done.stderr and "Traceback" not in done.stderr
    for name in ("model.safetensors", "trainer_state.json", "trainer_state.safetensors"):  # config: epochs 1 -> 2
        assert (tmp_path / "run" / name).read_bytes() == before[name], name
    assert not (tmp_path / "run" / ckpt.STAGING).exists()
    assert subprocess.run([sys.executable, "-m", "genlab.cli", *args, "--epochs", "2"], env=ONE_THREAD).returncode == 0
    assert json.loads((tmp_path / "run" / "trainer_state.json").read_text())["step"] == 16


@pytest.mark.parametrize("kill_after_step", [0, 120])
def test_killed_run_resumes_bit_exact(tmp_path, kill_after_step):
    args = ["train", "vae", "--data", "digits", "--limit", "512", "--epochs", "12", "--batch-size", "16",
            "--set", "train.ckpt_every=7", "--set", "train.samples=0", *sum([["--set", s] for s in TINY], []),
            "--quiet"]
    victim = _genlab(*args, "--out", str(tmp_path / "killed"))
    state = tmp_path / "killed" / "trainer_state.json"
    deadline = time.time() + 60
    while time.time() < deadline:  # kill it right after a checkpoint past `kill_after_step`
        if state.exists():
            try:
                if json.loads(state.read_text())["step"] > kill_after_step:
                    break
            except (json.JSONDecodeError, FileNotFoundError):
                pass
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = json.loads(state.read_text())["step"]
    assert killed_at < 12 * 32, "the run finished before it could be killed"
    resumed = _genlab(*args, "--out", str(tmp_path / "killed"))
    straight = _genlab(*args, "--out", str(tmp_path / "straight"))
    for p in (resumed, straight):
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert json.loads(state.read_text())["step"] == 12 * 32
    assert_same(weights(tmp_path / "killed"), weights(tmp_path / "straight"))


def test_interrupted_commit_rolls_forward(tmp_path):
    train(tiny_run(epochs=1), tmp_path, quiet=True)
    old = weights(tmp_path)
    new = {k: v + 1 for k, v in old.items()}
    # simulate a kill after the new checkpoint was complete but before all files were moved
    (tmp_path / ckpt.COMMIT).mkdir()
    files.save_tensors(tmp_path / ckpt.COMMIT / "model.safetensors", new)
    model, _ = load_model(tmp_path, ema=False)  # a reader sees the complete new checkpoint
    assert torch.equal(model.state_dict()["posterior_head.bias"], new["posterior_head.bias"])
    (tmp_path / ckpt.STAGING).mkdir()  # and a half-written staging folder is dropped
    (tmp_path / ckpt.STAGING / "model.safetensors").write_bytes(b"partial")
    ckpt.recover(tmp_path)
    assert not (tmp_path / ckpt.COMMIT).exists() and not (tmp_path / ckpt.STAGING).exists()
    assert_same(weights(tmp_path), new)


@pytest.mark.parametrize("plant", ["commit-file", "staging-file", "commit-subfolder", "commit-symlink"])
def test_journal_entries_of_the_wrong_kind_are_refused_and_change_nothing(tmp_path, plant):
    train(tiny_run(epochs=1), tmp_path / "run", quiet=True)
    run = tmp_path / "run"
    before = weights(run)
    if plant == "commit-file":
        (run / ckpt.COMMIT).write_text("x")
    elif plant == "staging-file":
        (run / ckpt.STAGING).write_text("x")
    elif plant == "commit-subfolder":
        (run / ckpt.COMMIT / "model.safetensors").mkdir(parents=True)
    else:
        (run / ckpt.COMMIT).mkdir()
        (run / ckpt.COMMIT / "model.safetensors").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UserError, match="remove"):
        train(tiny_run(epochs=2), run, quiet=True)
    assert_same(weights(run), before)
    assert not (tmp_path / "elsewhere").exists()


def test_nonfinite_loss_stops_with_the_step_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    from genlab.models.vae import VAE

    original = VAE.train_step

    def poisoned(self, batch, opts, step):
        out = original(self, batch, opts, step)
        if step == 11:  # the 12th step
            out["kl"] = torch.tensor(float("nan"))
        return out

    monkeypatch.setattr(VAE, "train_step", poisoned)
    with pytest.raises(Diverged, match=r"non-finite kl at step 12 .*last good checkpoint \(step 10\)"):
        train(tiny_run(epochs=3, ckpt_every=5), tmp_path, quiet=True)
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert state["step"] == 10
    assert all(torch.isfinite(v).all() for v in weights(tmp_path).values())


class _Exploit:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("victim", ["model.safetensors", "config.json", "trainer_state.safetensors"])
def test_tampered_run_folder_is_refused_and_runs_no_code(tmp_path, victim, capsys):
    from genlab.cli import main

    run = tmp_path / "run"
    train(tiny_run(epochs=1), run, quiet=True)
    marker = tmp_path / "pwned"
    (run / victim).write_bytes(pickle.dumps(_Exploit(marker)))
    cmd = ["train", "vae", "--data", "digits", "--limit", "256", "--epochs", "2", "--batch-size", "32",
           "--set", "train.samples=8", *sum([["--set", s] for s in TINY], []), "--out", str(run), "--quiet"]
    if victim != "trainer_state.safetensors":
        cmd = ["sample", str(run), "-n", "4"]
    assert main(cmd) == 2
    err = capsys.readouterr().err.strip()
    assert victim in err and "\n" not in err
    assert not marker.exists()


def test_data_parallel_replicas_stay_identical(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    res = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2",
                          str(Path(__file__).with_name("ddp_worker.py")), str(tmp_path)],
                         capture_output=True, text=True, timeout=300, env=ONE_THREAD)
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert_same(r0, r1)
    assert_same(r0, weights(tmp_path))
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert state["world"] == 2 and state["step"] == 2 * (512 // 2 // 32)


def test_two_nodes_train_as_one_with_the_same_global_batch(tmp_path):
    """Two torchrun "nodes" on this machine (--nnodes 2, a static rendezvous on 127.0.0.1), one process each at
    batch 32, against one process at batch 64: the same images per step (each rank takes a strided share of the
    epoch's order) and a deterministic autoencoder, so the weights agree up to the order of float sums (the
    all-reduce averages two 32-image means where one process takes one 64-image mean)."""
    import socket

    torchrun = Path(sys.executable).with_name("torchrun")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["train", "ae", "--data", "digits", "--limit", "512", "--epochs", "2", "--set", "model.hidden=(32,)",
            "--set", "model.latent_dim=4", "--set", "train.samples=0", "--set", "train.eval_test=false", "--quiet"]
    nodes = [subprocess.Popen([str(torchrun), "--nnodes=2", f"--node_rank={r}", "--nproc_per_node=1",
                               "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "genlab.cli", *args,
                               "--batch-size", "32", "--out", str(tmp_path / "two")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ONE_THREAD)
             for r in (0, 1)]
    outs = [n.communicate(timeout=300) for n in nodes]
    assert all(n.returncode == 0 for n in nodes), outs[0][1][-2000:] + outs[1][1][-2000:]
    from genlab.cli import main

    assert main([*args, "--batch-size", "64", "--out", str(tmp_path / "one")]) == 0
    two, one = weights(tmp_path / "two"), weights(tmp_path / "one")
    assert two.keys() == one.keys()
    for k in one:
        assert torch.allclose(two[k], one[k], rtol=1e-4, atol=1e-5), (k, (two[k] - one[k]).abs().max())
    state = json.loads((tmp_path / "two" / "trainer_state.json").read_text())
    one_state = json.loads((tmp_path / "one" / "trainer_state.json").read_text())
    assert state["world"] == 2 and state["step"] == one_state["step"] == 2 * (512 // 64)


def test_ema_weights_are_saved_and_used_for_sampling(tmp_path):
    train(tiny_run(epochs=2, ema=0.9), tmp_path, quiet=True)
    raw, ema = weights(tmp_path), load_file(str(tmp_path / "ema.safetensors"))
    assert raw.keys() == ema.keys()
    assert any(not torch.equal(raw[k], ema[k]) for k in raw), "EMA equals the raw weights"
    model, _ = load_model(tmp_path)  # EMA by default
    assert torch.equal(model.state_dict()["posterior_head.weight"], ema["posterior_head.weight"])
    model, _ = load_model(tmp_path, ema=False)
    assert torch.equal(model.state_dict()["posterior_head.weight"], raw["posterior_head.weight"])


def test_ema_warms_up_before_using_its_decay():
    from genlab.train.ema import EMA

    net = torch.nn.Linear(3, 1, bias=False)
    start = net.weight.detach().clone()
    ema = EMA(net, 0.999)
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net, step=0)  # d_0 = 1/10: the average is already 90% the trained weights
    assert torch.allclose(ema.model.weight, start + 0.9)
    ema.update(net, step=10**6)  # late: the configured decay, the trained weights move it by 1 - d
    assert torch.allclose(ema.model.weight, start + 0.9 + 0.1 * 0.001)


def test_lr_schedule_reaches_the_optimizer(tmp_path):
    train(tiny_run(epochs=2, schedule="cosine", warmup_steps=4, log_every=1, lr=1e-3), tmp_path, quiet=True)
    lrs = [json.loads(l)["lr"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()
           if json.loads(l)["event"] == "train"]
    assert lrs[:4] == pytest.approx([1e-3 * (i + 1) / 4 for i in range(4)])  # warmup
    assert lrs[-1] < 0.05 * 1e-3 and all(a >= b for a, b in zip(lrs[4:], lrs[5:]))  # cosine decay


def test_stepper_clips_the_global_gradient_norm():
    from genlab.train.optim import Stepper

    w = torch.nn.Parameter(torch.zeros(3))
    stepper = Stepper(torch.optim.SGD([w], lr=1.0), grad_clip=0.5)
    stepper.step((w * torch.tensor([30.0, 40.0, 0.0])).sum())  # gradient (30, 40, 0), norm 50
    assert float(stepper.last_grad_norm) == pytest.approx(50.0)
    assert torch.allclose(w.detach(), -torch.tensor([0.3, 0.4, 0.0]))  # the step used the clipped gradient


@pytest.mark.parametrize("units", [True, False], ids=["bf16-units", "emulated"])
def test_bf16_autocast_and_channels_last_train_on_cpu(tmp_path, monkeypatch, units):
    """train.amp=bf16 and train.channels_last run on CPU; a CPU without bf16 units (emulated, slower than fp32) gets
    a warning saying so."""
    from genlab.train import trainer

    monkeypatch.setattr(trainer, "cpu_computes_bf16", lambda: units)
    run = compose("dcgan", flags={"data": {"source": "digits", "limit": 128},
                                  "train": {"epochs": 1, "batch_size": 32, "samples": 0, "monitor_modes": False,
                                            "amp": "bf16", "channels_last": True, "log_every": 1}},
                  overrides=["model.width=8"])
    train(run, tmp_path / "bf16", quiet=True)
    rows = [json.loads(l) for l in (tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss_d"] for r in rows if r["event"] == "train"]
    assert losses and all(math.isfinite(v) for v in losses)
    assert not any(v.dtype == torch.bfloat16 for v in weights(tmp_path / "bf16").values())  # fp32 weights kept
    warned = [r["message"] for r in rows if r["event"] == "warning" and "without bf16 units" in r["message"]]
    assert len(warned) == (0 if units else 1)


def test_fp16_autocast_needs_cuda(tmp_path):
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        train(tiny_run(amp="fp16", device="cpu"), tmp_path / "fp16", quiet=True)


def test_mode_monitor_logs_coverage_and_a_fid_curve(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    run = compose("dcgan", flags={"data": {"source": "mnist", "limit": 128},
                                  "train": {"epochs": 2, "batch_size": 64, "samples": 0, "log_every": 1}},
                  overrides=["model.width=8"])
    assert run.train.monitor_modes  # on by default for GANs
    train(run, tmp_path / "run", quiet=True)
    modes = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
             if json.loads(l)["event"] == "modes"]
    assert [m["epoch"] for m in modes] == [1.0, 2.0]
    for m in modes:
        assert sum(m["histogram"]) == 1000 and 1 <= m["classes_covered"] <= 10
        assert math.isfinite(m["fid_1k"]) and m["fid_1k"] > 0
    assert list((tmp_path / "cache" / "features").glob("mnist-test-1000-*.safetensors"))  # one reference, reused


def test_a_sampler_that_overflows_does_not_stop_training(tmp_path, monkeypatch):
    """Glow's samples once overflowed in an epoch-end monitor, which ended the run; now the non-finite samples are
    counted and left out, with a warning."""
    from genlab.models.gan import DCGAN

    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    real_sample = DCGAN.sample

    def overflowing(self, n, generator=None, **kw):
        x = real_sample(self, n, generator=generator, **kw)
        x[::4] = float("nan")  # every fourth sample
        return x

    monkeypatch.setattr(DCGAN, "sample", overflowing)
    run = compose("dcgan", flags={"data": {"source": "mnist", "limit": 64},
                                  "train": {"epochs": 1, "batch_size": 32, "samples": 0}}, overrides=["model.width=8"])
    train(run, tmp_path / "run", quiet=True)
    events = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    modes = [e for e in events if e["event"] == "modes"]
    assert len(modes) == 1 and modes[0]["nonfinite_samples"] == 250 and sum(modes[0]["histogram"]) == 750
    assert any("250 of 1000 samples hold NaN" in e["message"] for e in events if e["event"] == "warning")


def test_mode_monitor_on_other_images_says_which_setting_names_a_classifier(tmp_path):
    run = compose("dcgan", flags={"data": {"source": "digits", "limit": 64},
                                  "train": {"epochs": 1, "batch_size": 32, "samples": 0}}, overrides=["model.width=8"])
    train(run, tmp_path / "run", quiet=True)
    warnings = [json.loads(l)["message"] for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
                if json.loads(l)["event"] == "warning"]
    assert any("mode monitoring is off" in w and "--set train.monitor_classifier=domain:DIR" in w for w in warnings)


def test_info_counts_the_classes_of_every_split(tmp_path):
    x = np.zeros((6, 8, 8), np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.zeros(6, int), x_test=x[:2], y_test=np.array([0, 1]))
    run = compose("vae", flags={"data": {"source": f"npz:{tmp_path / 'd.npz'}"}, "train": {"epochs": 1}},
                  overrides=TINY)
    train(run, tmp_path / "run", quiet=True)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["info"]["num_classes"] == 2


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    train(tiny_run(epochs=1), out, quiet=True)
    return out


TAMPERED = [
    ("metrics.jsonl", b"\x00\xff\xfe binary", "not a log genlab wrote"),
    ("metrics.jsonl", b'{"event": "train", "step": 1}\n[1, 2]\n{"event": "test", "step": 8}\n', "line 2 is not"),
    ("metrics.jsonl", b'{"event": "train"}\n{"event": "test", "step": 8}\n', "line 1 is not"),
    ("trainer_state.json", b'{"time_s": 1.0, "optimizers": {}}', "not a trainer state genlab wrote"),
    ("trainer_state.json", b'{"step": "8", "time_s": 1.0, "optimizers": {}}', "not a trainer state genlab wrote"),
    ("trainer_state.json", b"[" * 100000 + b"]" * 100000, "absurd nesting"),
    ("config.json", b'{"model": {"name": "vae", "latent_dim": ' + b"9" * 5000 + b"}}", "absurd nesting or numbers"),
    ("config.json", b'{"model": ' * 50000 + b"1" + b"}" * 50000, "absurd nesting"),
]


@pytest.mark.parametrize("name, content, fragment", TAMPERED, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(TAMPERED)])
def test_tampered_run_files_are_one_sentence(finished, tmp_path, capsys, name, content, fragment):
    """`info` and resuming read every file of the run folder; a damaged one is one sentence and exit 2."""
    import shutil

    from genlab.cli import main

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / name).write_bytes(content)
    for cmd in (["info", str(run)], ["train", "--config", str(tmp_path / "none.toml")]):
        if cmd[0] == "train":  # resume with the run's own settings
            cmd = ["train", "vae", "--data", "digits", "--limit", "256", "--epochs", "2", "--batch-size", "32",
                   "--set", "train.samples=8", *sum([["--set", s] for s in TINY], []), "--out", str(run), "--quiet"]
        code = main(cmd)
        err = capsys.readouterr().err
        assert code == 2 and fragment in err and err.count("\n") == 1 and "Traceback" not in err, (cmd[0], err)


def test_a_partial_last_log_line_is_dropped_on_resume(finished, tmp_path):
    """What a kill or a full disk leaves at the end of metrics.jsonl does not block the resume."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"event": "train", "step": 9, "lo')
    train(tiny_run(epochs=2), run, quiet=True)
    records = ckpt.read_metrics(run / "metrics.jsonl")
    assert records[-1]["step"] == 16 and all("lo" not in r for r in records)

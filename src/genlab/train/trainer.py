"""One trainer for every family. It knows nothing of models beyond the contract:

    opts = model.configure_optimizers(cfg)          # {name: torch optimizer}
    terms = model.train_step((x, y), steppers, step) # does its own backward and steps; {name: scalar tensor}
                                                     # ((x, y, index) for models with needs_indices = True)
    optional: model.sample(n, generator=g), model.reconstruct(x), model.losses(x, y), model.health(),
              model.figures(dir, generator=g)

It moves batches, seeds every step, logs, draws a fixed-noise grid per epoch, checkpoints atomically
(and on SIGINT or SIGTERM, after the step under way: interrupt.py), resumes, and runs unchanged under torchrun.

Reproducibility: the random numbers of step t are drawn from a generator seeded by (seed, rank, t)
and epoch e's batch order by (seed, e), so a run resumed from any checkpoint repeats, bit for bit on
CPU, what an uninterrupted run does.
"""
from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm import tqdm

from .. import files
from ..data import Batches, Pipeline, info_for, prepare, to_unit
from ..data import open_splits
from ..errors import UserError
from ..models import registry
from . import checkpoint as ckpt
from . import distributed as ddp
from .ema import EMA
from .interrupt import GracefulStop
from .optim import Stepper, lr_factor

# train settings a resumed run may change; any other difference means a different run
RESUMABLE_CHANGES = {"epochs", "max_steps", "log_every", "ckpt_every", "samples", "device", "monitor_modes"}


Monitor = Callable[["Trainer"], None]  # an epoch-end check given the trainer (metrics/monitor.py has the modes one)


class Diverged(Exception):
    """Training produced a non-finite loss; the message names the step and the checkpoint kept."""


def _clock(seconds: float) -> str:
    """1h02m, 3m05s, 42s."""
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _is_sums(d: dict) -> bool:
    """A checkpoint's pending log sums as save() writes them: names, one number each, a positive step count."""
    names, sums, steps = d.get("names"), d.get("sums"), d.get("steps")
    return (isinstance(names, list) and all(isinstance(n, str) for n in names) and isinstance(sums, list)
            and len(sums) == len(names) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in sums)
            and isinstance(steps, int) and not isinstance(steps, bool) and steps > 0)


def step_seed(seed: int, rank: int, step: int) -> int:
    return ((seed * 1_000_003 + rank) * 1_000_000_007 + step) % (2**63 - 1)


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"train.device '{name}' is not a device name (auto, cpu, cuda, cuda:N)") from None
    if dev.type not in ("cpu", "cuda"):  # meta holds no data; this build links no other backend (mps, xla)
        raise UserError(f"train.device={name}: genlab trains on cpu or cuda (auto picks), not on {dev.type}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"train.device={name} but no CUDA device is available; use --set train.device=cpu")
    return dev


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic units (AVX-512 BF16 or AMX tiles), by torch's own probes; where the
    probes are missing the answer is yes, so that no warning rests on a guess."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    known = [p for p in probes if callable(p)]
    return not known or any(p() for p in known)


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            keys.append(f"{prefix}{k}")
    return keys


def _make_run_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"--out '{out}' is a file (or lies under one); a run folder must be a directory") from None
    except OSError as e:
        raise UserError(f"cannot create the run folder '{out}': {e.strerror}") from None


class Trainer:
    def __init__(self, run, out: str | Path, quiet: bool = False, monitors: Sequence[Monitor] = ()):
        self.run, self.cfg, self.out = run, run.train, Path(out)
        self.quiet = quiet
        self.monitors = list(monitors)  # called at each epoch end on the main process, e.g. the mode monitor
        self.dist = ddp.init("cuda" if self.cfg.device.startswith("cuda") or
                             (self.cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
        self.device = pick_device(self.cfg.device, self.dist.local_rank)
        if self.cfg.amp == "fp16" and self.device.type != "cuda":
            raise UserError("train.amp=fp16 needs a CUDA device; on CPU use train.amp=bf16 (AMX/AVX-512 bf16 units)")
        self.lock = None
        if self.dist.main:  # one writer per run folder, taken before anything in it is read or written
            _make_run_dir(self.out)
            self.lock = ckpt.RunLock(self.out)
        try:
            self._setup(run)
        except BaseException:
            self.close()
            raise

    def _setup(self, run) -> None:
        # data: load-time transforms once, batch-time transforms per batch
        splits = open_splits(run.data)
        train = prepare(splits.train.subset(run.data.limit or None), run.data)
        self.test = prepare(splits.test, run.data) if splits.test is not None else None
        self.info = info_for(train, run.data, self.test)
        run.info = self.info
        self.pipeline = Pipeline(run.data)
        self.loader = Batches(train, self.pipeline, self.cfg.batch_size, seed=self.cfg.seed,
                              rank=self.dist.rank, world=self.dist.world, device=self.device)
        self.steps_per_epoch = len(self.loader)
        self.total = self.cfg.epochs * self.steps_per_epoch
        if self.cfg.max_steps:
            self.total = min(self.total, self.cfg.max_steps)

        # model, optimizers, EMA: the same initial weights on every rank
        torch.manual_seed(self.cfg.seed)
        self.model = registry.build(run.model, run.model_cfg, self.info).to(self.device)
        if self.cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizers = self.model.configure_optimizers(self.cfg)
        scaler = torch.amp.GradScaler("cuda") if self.cfg.amp == "fp16" else None
        self.scaler = scaler
        self.steppers = {k: Stepper(o, self.cfg.grad_clip, scaler, self.dist.world) for k, o in self.optimizers.items()}
        self.ema = EMA(self.model, self.cfg.ema) if self.cfg.ema else None
        self.step, self.time_s = 0, 0.0
        self.epoch_end_pending = False  # set by a checkpoint written before its epoch's end work was done
        self.acc, self.acc_n, self.acc_names = None, 0, None  # loss sums since the last log line
        self._resume_or_start()
        if self.dist.world > 1:
            ddp.broadcast_module(self.model)
            if self.ema:
                ddp.broadcast_module(self.ema.model)

    # ---------------------------------------------------------------- state
    def _resume_or_start(self) -> None:
        main = self.dist.main
        if main:
            ckpt.recover(self.out)
        ddp.barrier(self.dist)
        state_file = self.out / "trainer_state.json"
        if not state_file.exists():
            if main:
                files.write_json(self.out / "config.json", self.run.to_dict())
                (self.out / "metrics.jsonl").unlink(missing_ok=True)
            return
        saved = files.read_json(self.out / "config.json")
        now = self.run.to_dict()
        changed = [k for k in _diff({s: saved.get(s) for s in ("model", "data", "train", "info")},
                                    {s: now.get(s) for s in ("model", "data", "train", "info")})
                   if not (k.startswith("train.") and k.split(".", 1)[1] in RESUMABLE_CHANGES)]
        if changed:
            raise UserError(f"'{self.out}' holds a run with other settings ({', '.join(changed[:3])} differ); "
                            f"resume it with the same settings or choose a new --out")
        state = ckpt.read_state(state_file)
        if state.get("world", 1) != self.dist.world:
            raise UserError(f"'{self.out}' was trained with {state.get('world', 1)} processes; resume it with the same number")
        files.load_module_state(self.model, self.out / "model.safetensors")
        if self.ema:
            files.load_module_state(self.ema.model, self.out / "ema.safetensors")
        tensors = files.load_tensors(self.out / "trainer_state.safetensors")
        for name, opt in self.optimizers.items():
            ckpt.optimizer_from_flat(name, opt, tensors, state["optimizers"][name])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.time_s = int(state["step"]), float(state["time_s"])
        self.epoch_end_pending = bool(state.get("epoch_end_pending", False))
        sums = state.get("log_sums")
        if sums is not None:
            if not (isinstance(sums, dict) and _is_sums(sums)):
                raise UserError(f"'{state_file}' has log sums genlab did not write; the checkpoint cannot be used")
            self.acc = torch.tensor(sums["sums"], dtype=torch.float32, device=self.device)
            self.acc_names, self.acc_n = list(sums["names"]), int(sums["steps"])
        if main:
            saved["train"] = now["train"]  # record the extended budget
            files.write_json(self.out / "config.json", saved)
            self._truncate_metrics(self.step, self.epoch_end_pending)

    def _truncate_metrics(self, step: int, epoch_end_pending: bool) -> None:
        """Drop log lines past the checkpoint (and those of its epoch end when that work is to be redone): the
        resumed run writes them again."""
        path = self.out / "metrics.jsonl"
        if not path.exists():
            return
        keep = [rec for rec in ckpt.read_metrics(path)
                if rec["step"] < step or rec["step"] == step and (rec["event"] == "train" or not epoch_end_pending)]
        files.atomic_write(path, lambda tmp: tmp.write_text("".join(json.dumps(rec) + "\n" for rec in keep)))

    def save(self, epoch_end_pending: bool = False) -> None:
        """A checkpoint of the run at self.step; `epoch_end_pending` when the epoch that ends there has not had its
        grid, monitors and test losses yet (a resumed run does them first)."""
        self.time_s = self.time_base + time.perf_counter() - self.t0  # the epoch-end work counts too
        if not self.dist.main:
            return
        tensors, metas = {}, {}
        for name, opt in self.optimizers.items():
            t, metas[name] = ckpt.optimizer_to_flat(name, opt)
            tensors.update(t)
        state = {"step": self.step, "epoch": self.step // self.steps_per_epoch, "time_s": self.time_s,
                 "epoch_end_pending": epoch_end_pending, "optimizers": metas, "world": self.dist.world,
                 "scaler": self.scaler.state_dict() if self.scaler else None,
                 # the loss sums since the last log line, so that the first line after a resume averages the same
                 # steps as an uninterrupted run's (float32 values are exact in JSON)
                 "log_sums": {"names": self.acc_names, "sums": self.acc.tolist(), "steps": self.acc_n}
                 if self.acc_n else None}
        meta = {"step": str(self.step), "model": self.run.model}
        writers = {
            "model.safetensors": lambda p: files.save_tensors(p, self.model.state_dict(), meta),
            "trainer_state.safetensors": lambda p: files.save_tensors(p, tensors, meta),
            "trainer_state.json": lambda p: p.write_text(json.dumps(state, indent=2)),
        }
        if self.ema:
            writers["ema.safetensors"] = lambda p: files.save_tensors(p, self.ema.model.state_dict(), meta)
        ckpt.commit(self.out, writers)

    def end_epoch(self, epoch: int) -> dict:
        """The epoch's grid, mode coverage and test losses, then its checkpoint. A signal during this work stops
        it at once: the checkpoint then marks it pending, and the resumed run does it before its next step."""
        try:
            self.fit_to_data()
            self.preview(epoch)
            for monitor in self.monitors:
                monitor(self)
            test = self.evaluate_test()
            if test:
                self.log("test", test)
        except KeyboardInterrupt:
            self.save(epoch_end_pending=True)
            raise
        self.save()
        return test

    def fit_to_data(self) -> None:
        """Let models that fit something to the training images between epochs (the VAE's sampling mixture) do it,
        the EMA copy with its own weights; a signal meanwhile is handled like the rest of the epoch's end."""
        for model in [self.model] + ([self.ema.model] if self.ema else []):
            if hasattr(model, "fit_to_data"):
                batches = Batches(self.loader.data, self.pipeline, 500, shuffle=False, drop_last=False,
                                  device=self.device)
                model.fit_to_data(batches.epoch(0), seed=self.cfg.seed)

    # ---------------------------------------------------------------- logging
    def epoch_line(self, epoch: int, start_step: int, means: dict, test: dict | None) -> None:
        """One line on stderr at an epoch's end, for output that is not a terminal: losses, speed, ETA."""
        spent = time.perf_counter() - self.t0  # this process's time, since steps before a resume cost nothing here
        done = self.step - start_step
        eta = spent / done * (self.total - self.step) if done else 0.0
        losses = " ".join(f"{k} {v:.4g}" for k, v in list(means.items())[:3])  # the epoch's mean training terms
        if test and "loss" in test:
            losses += f" (test loss {test['loss']:.4g})"
        speed = done * self.cfg.batch_size * self.dist.world / max(spent, 1e-9)
        print(f"genlab: epoch {epoch}/{self.cfg.epochs} step {self.step}/{self.total} {losses} {speed:.0f} img/s "
              f"elapsed {_clock(self.time_s)} ETA {_clock(eta)}", file=sys.stderr, flush=True)

    def log(self, event: str, values: dict) -> None:
        """One line of metrics.jsonl (numbers, or a text 'message') and the TensorBoard scalars."""
        if not self.dist.main:
            return
        nums = {k: float(v) for k, v in values.items() if not isinstance(v, (str, list))}
        rec = {"event": event, "step": self.step, "epoch": self.step / self.steps_per_epoch,
               "time_s": round(self.time_s, 3), **values, **nums}
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.tb is not None:
            for k, v in nums.items():
                self.tb.add_scalar(f"{event}/{k}", v, self.step)

    def warn(self, message: str) -> None:
        """Report a training-health warning once: on the terminal and in metrics.jsonl."""
        if message in self.warned or not self.dist.main:
            return
        self.warned.add(message)
        tqdm.write(f"genlab: warning at step {self.step}: {message}", file=sys.stderr)
        self.log("warning", {"message": message})

    def animate(self) -> Path | None:
        """samples/progress.gif from every epoch's grid, written once when training ends (re-encoding every
        frame at each epoch end made the per-epoch cost grow with the epoch count)."""
        if not self.dist.main or not self.cfg.samples:
            return None
        from ..viz import save_animation

        return save_animation(sorted((self.out / "samples").glob("epoch_*.png")), self.out / "samples" / "progress.gif")

    @torch.no_grad()
    def preview(self, epoch: int) -> Path | None:
        """The fixed-noise sample grid (or fixed reconstructions) for this epoch."""
        if not self.dist.main or not self.cfg.samples:
            return None
        model = self.ema.model if self.ema else self.model
        was_training = model.training
        model.eval()
        g = torch.Generator(self.device).manual_seed(self.cfg.seed)
        nrow = None
        if hasattr(model, "sample"):
            images = model.sample(self.cfg.samples, generator=g)
        elif hasattr(model, "preview_grid"):  # image-to-image models: inputs and their translations
            ref = self.test if self.test is not None else self.loader.data
            k = model.preview_count(self.cfg.samples)
            x, y = Batches(ref.subset(k), self.pipeline, k, shuffle=False, device=self.device).batch(torch.arange(k), 0)
            images, nrow = model.preview_grid(x, y, g)
        elif hasattr(model, "reconstruct"):
            ref = self.test if self.test is not None else self.loader.data
            x, y = Batches(ref.subset(self.cfg.samples // 2), self.pipeline, self.cfg.samples // 2,
                           shuffle=False, device=self.device).batch(torch.arange(self.cfg.samples // 2), 0)
            recon = model.reconstruct(x, y) if getattr(model, "conditional", False) else model.reconstruct(x)
            images = torch.stack([x, recon], 1).flatten(0, 1)  # originals and reconstructions side by side
        else:
            return None
        model.train(was_training)
        from ..viz import save_grid, upscale_for_display

        images = to_unit(images.float(), self.info)
        path = save_grid(images, self.out / "samples" / f"epoch_{epoch:04d}.png", nrow=nrow,
                         scale=upscale_for_display(self.info.height))
        if hasattr(model, "figures"):  # a model's own figures, e.g. InfoGAN's code sweeps
            model.figures(self.out / "samples", generator=torch.Generator(self.device).manual_seed(self.cfg.seed))
        if self.tb is not None:
            from ..viz import grid

            arr = grid(images)
            self.tb.add_image("samples", arr if arr.ndim == 3 else arr[..., None], self.step, dataformats="HWC")
        return path

    @torch.no_grad()
    def evaluate_test(self) -> dict[str, float] | None:
        """Mean of each loss term over (up to eval_images of) the test split, with fixed noise."""
        if not (self.cfg.eval_test and self.cfg.eval_images and self.test is not None and hasattr(self.model, "losses")
                and self.dist.main):
            return None
        data = self.test.subset(self.cfg.eval_images)
        batches = Batches(data, self.pipeline, 500, shuffle=False, drop_last=False, device=self.device)
        sums: dict[str, float] = {}
        self.model.eval()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.cfg.seed)
            for x, y in batches.epoch(0):
                for k, v in self.model.losses(x, y).items():
                    sums[k] = sums.get(k, 0.0) + float(v) * len(x)
        self.model.train()
        return {k: v / len(data) for k, v in sums.items()}

    def seed_step(self) -> None:
        """Seed the generators this run draws from for the current step. (torch.manual_seed would also
        queue a lazy CUDA seeding that records a traceback on every call: a tenth of a millisecond.)"""
        seed = step_seed(self.cfg.seed, self.dist.rank, self.step)
        torch.default_generator.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(seed)

    # ---------------------------------------------------------------- loop
    def fit(self) -> dict:
        cfg, main = self.cfg, self.dist.main
        self.tb = None
        self.warned: set[str] = set()
        if main:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.out), purge_step=self.step or None)
        show = main and not self.quiet and sys.stderr.isatty()
        lines = main and not self.quiet and not show  # a log file (nohup): one line per epoch instead of a bar
        start_step, epoch_sums, epoch_n = self.step, None, 0
        bar = tqdm(total=self.total, initial=self.step, disable=not show, unit="step", dynamic_ncols=True,
                   desc=f"{self.run.model}")
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16 if cfg.amp == "bf16" else torch.float16) \
            if cfg.amp != "off" else nullcontext()
        if cfg.amp == "bf16" and self.device.type == "cpu" and not cpu_computes_bf16():
            self.warn("train.amp=bf16 on a CPU without bf16 units (AVX-512 BF16 or AMX) is emulated and slower than "
                      "fp32 (0.5-0.6x for the conv VAE and Gated PixelCNN, BENCHMARKS.md): set train.amp=off here")
        check_every = 1 if self.device.type == "cpu" else cfg.log_every
        with_index = getattr(self.model, "needs_indices", False)  # e.g. GLO: one latent per training image
        self.t0 = t_log = time.perf_counter()
        imgs_log = 0
        self.time_base = self.time_s
        self.model.train()
        stop = GracefulStop().install()
        try:
            if self.epoch_end_pending:  # the run was stopped before its last epoch's end was done
                self.end_epoch(self.step // self.steps_per_epoch)
            while self.step < self.total:
                epoch, b = divmod(self.step, self.steps_per_epoch)
                order = self.loader.order(epoch)
                while b < self.steps_per_epoch and self.step < self.total:
                    stop.in_step = True
                    self.seed_step()
                    batch = self.loader.batch(order, b, with_index)
                    x = batch[0]
                    if cfg.channels_last:
                        batch = (x.contiguous(memory_format=torch.channels_last), *batch[1:])
                    f = lr_factor(cfg, self.step, self.total)
                    for s in self.steppers.values():
                        s.set_lr_factor(f)
                    with amp:
                        terms = self.model.train_step(batch, self.steppers, self.step)
                    if self.dist.world > 1:
                        ddp.sync_buffers(self.model)
                    if self.ema:
                        self.ema.update(self.model, self.step)
                    # a model may report bookkeeping terms (ProGAN's phase) as CPU scalars beside CUDA losses
                    vals = torch.stack([v.to(self.device, torch.float32) for v in terms.values()])
                    self.acc = vals if self.acc is None else self.acc + vals
                    self.acc_names, self.acc_n = list(terms), self.acc_n + 1
                    if lines:
                        epoch_sums, epoch_n = vals if epoch_sums is None else epoch_sums + vals, epoch_n + 1
                    imgs_log += len(x)
                    self.step, b = self.step + 1, b + 1
                    if self.step % check_every == 0 and not bool(torch.isfinite(self.acc).all()):
                        bad = [n for n, v in zip(self.acc_names, vals.tolist()) if not math.isfinite(v)] or self.acc_names
                        raise Diverged(f"training diverged: non-finite {', '.join(bad)} at step {self.step}"
                                       f" (epoch {epoch + 1})")
                    bar.update(1)
                    self.time_s = self.time_base + time.perf_counter() - self.t0
                    if self.step % cfg.log_every == 0:
                        now = time.perf_counter()
                        means = dict(zip(self.acc_names, (self.acc / self.acc_n).tolist()))
                        means["lr"] = cfg.lr * f
                        means["img_per_s"] = imgs_log * self.dist.world / max(now - t_log, 1e-9)
                        self.log("train", means)
                        bar.set_postfix(loss=f"{means.get('loss', next(iter(means.values()))):.4g}",
                                        img_s=f"{means['img_per_s']:.0f}")
                        message = self.model.health() if hasattr(self.model, "health") else None
                        if message:
                            self.warn(message)
                        self.acc, self.acc_n, t_log, imgs_log = None, 0, now, 0
                    if self.step % cfg.ckpt_every == 0 and b < self.steps_per_epoch:
                        self.save()
                    if stop.should_stop():  # SIGINT or SIGTERM came during the step: keep it, then stop
                        self.save(epoch_end_pending=b == self.steps_per_epoch)
                        raise KeyboardInterrupt
                if b == self.steps_per_epoch:
                    test = self.end_epoch(epoch + 1)
                    if lines:
                        means = dict(zip(self.acc_names, (epoch_sums / epoch_n).tolist())) if epoch_n else {}
                        self.epoch_line(epoch + 1, start_step, means, test)
                        epoch_sums, epoch_n = None, 0
            if self.step % self.steps_per_epoch:  # a max_steps budget that ended mid-epoch
                self.fit_to_data()
                self.preview(self.step // self.steps_per_epoch + 1)
                self.save()
            self.animate()
        except Diverged as e:
            last = ckpt.read_state(self.out / "trainer_state.json")["step"] if (self.out / "trainer_state.json").exists() else None
            kept = f"; the last good checkpoint (step {last}) is kept in {self.out}" if last is not None else \
                "; no checkpoint had been written yet"
            raise Diverged(f"{e}{kept}") from None
        finally:
            stop.restore()
            bar.close()
            if self.tb is not None:
                self.tb.close()
            ddp.barrier(self.dist)
        return {"step": self.step, "time_s": self.time_s, "out": str(self.out)}

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        ddp.shutdown(self.dist)

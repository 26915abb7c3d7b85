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


# the settings `fit_prior` may change besides model.prior: the fitted prior's own, never the network's
PRIOR_SETTINGS = ("prior_components", "prior_fit_images", "prior_width", "prior_depth", "prior_epochs", "prior_lr")


def fit_prior(run_dir: str | Path, prior: str, settings: dict | None = None) -> dict:
    """Fit a VAE run's sampling prior (`prior`: mixture or two-stage, models/latent_prior.py) to the posteriors of
    its training images and write it into the run: config.json's model.prior (and any of PRIOR_SETTINGS given in
    `settings`) and the weights files change together in one checkpoint commit; the VAE's own weights do not
    change. A prior of the kind and shape the run already holds continues from its fitted state (the second stage
    trains model.prior_epochs passes further). Returns what was fitted, on how many images, in how long."""
    import time

    import torch

    from .config import check_choice
    from .data import Batches, Pipeline
    from .errors import UserError
    from .files import load_tensors, read_json, save_tensors, write_json
    from .models import registry
    from .models.latent_prior import LATENT_PRIORS
    from .run import RunConfig, read_run_config, split_images
    from .train import checkpoint as ckpt

    run_dir, settings = Path(run_dir), dict(settings or {})
    cfg = read_run_config(run_dir)
    if not hasattr(cfg.model_cfg, "prior"):
        raise UserError(f"genlab fit-prior fits the sampling prior of a VAE (vae, cvae); '{cfg.model}' has none")
    check_choice("--prior", prior, tuple(LATENT_PRIORS))
    bad = sorted(set(settings) - set(PRIOR_SETTINGS))
    if bad:
        allowed = ", ".join("model." + s for s in PRIOR_SETTINGS)
        raise UserError(f"genlab fit-prior changes the prior's settings only ({allowed}), not model.{bad[0]}")
    d = read_json(run_dir / "config.json")
    d["model"] = {**d["model"], **settings, "prior": prior}
    new = RunConfig.from_dict(d)
    lock = ckpt.RunLock(run_dir)  # no training run may write the folder meanwhile
    try:
        ckpt.recover(run_dir)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = registry.build(new.model, new.model_cfg, new.info).to(device)
        slots = tuple(c.slot + "." for c in LATENT_PRIORS.values())
        # the new prior's initial state, copied: the model's own tensors change as each file's prior is fitted
        init = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(slots)}
        images = split_images(new, "train").subset(new.data.limit or None)
        start, writers = time.perf_counter(), {}
        for name in ("model.safetensors", "ema.safetensors"):
            if not (run_dir / name).exists():
                if name == "model.safetensors":
                    raise UserError(f"'{run_dir}' holds no trained weights yet (no model.safetensors)")
                continue
            state = load_tensors(run_dir / name)
            held = {k: v for k, v in state.items() if k.startswith(slots)}
            kept = {k: v for k, v in state.items() if not k.startswith(slots)}
            if cfg.model_cfg.prior == prior and held.keys() == init.keys() and \
                    all(v.shape == init[k].shape for k, v in held.items()):
                kept.update(held)  # the same prior, same shapes: continue from its fitted state
            try:
                model.load_state_dict({**init, **kept})
            except RuntimeError as e:
                raise UserError(f"'{run_dir / name}' does not match the model in config.json "
                                f"({str(e).splitlines()[0]})") from None
            batches = Batches(images, Pipeline(new.data), 500, shuffle=False, drop_last=False, device=device)
            model.fit_to_data(batches.epoch(0), seed=new.train.seed)
            weights = {k: v.clone() for k, v in model.state_dict().items()}
            writers[name] = lambda p, w=weights: save_tensors(p, w, {"model": new.model, "prior": prior})
        writers["config.json"] = lambda p: write_json(p, new.to_dict())
        ckpt.commit(run_dir, writers)
    finally:
        lock.release()
    fitted = min(len(images), new.model_cfg.prior_fit_images or len(images))
    return {"prior": prior, "images": fitted, "seconds": time.perf_counter() - start,
            "files": sorted(n for n in writers if n != "config.json")}

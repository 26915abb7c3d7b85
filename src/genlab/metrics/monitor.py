"""The trainer's mode monitor: after each epoch, class coverage of fresh samples under a domain classifier, a
domain FID of them against as many real images, and a warning on mode collapse. `genlab.api.train` hands it to
the trainer for runs with `train.monitor_modes` (the GANs' default)."""
from __future__ import annotations

import torch

from ..data import to_unit
from ..errors import UserError
from .cache import real_features
from .features import get_extractor
from .frechet import fid_from_features
from .modes import class_distribution, collapse_warning, mode_coverage, recognised_share

MONITOR_SAMPLES = 1000


@torch.no_grad()
def mode_monitor(trainer) -> None:
    """Class coverage of fresh samples under a domain classifier; warns on mode collapse."""
    if not (trainer.dist.main and hasattr(trainer.model, "sample")):
        return
    try:
        clf = get_extractor(trainer.cfg.monitor_classifier, trainer.device)
        clf.check_shape(trainer.info.shape, "train.monitor_classifier")
    except UserError as e:
        trainer.warn(f"mode monitoring is off: {e}")
        return
    model = trainer.ema.model if trainer.ema else trainer.model
    was_training = model.training
    model.eval()
    g = torch.Generator(trainer.device).manual_seed(trainer.cfg.seed + 1)
    images = to_unit(model.sample(MONITOR_SAMPLES, generator=g).float(), trainer.info)
    model.train(was_training)
    finite = images.flatten(1).isfinite().all(1)  # a sampler that overflowed must not stop the training
    if not finite.all():
        trainer.warn(f"{int((~finite).sum())} of {len(images)} samples hold NaN or infinite values (the sampler "
                     f"overflowed); mode monitoring counts the finite ones")
        images = images[finite]
        if len(images) < 2:
            return
    probs = clf.probs(images)
    labels = trainer.loader.data.labels
    k = probs.shape[1]
    data = class_distribution(labels, k) if labels is not None else torch.full((k,), 1 / k, dtype=torch.float64)
    cov = mode_coverage(probs.argmax(1).cpu(), data)
    cov["recognised_share"] = recognised_share(probs)
    cov["nonfinite_samples"] = int((~finite).sum())
    # a learning curve for models without a loss to watch: the classifier's FID of these samples against as
    # many real images (cached; biased upwards at n = 1000, so compare epochs, not runs of other sizes)
    ref = trainer.test if trainer.test is not None else trainer.loader.data
    real = real_features(clf, ref, trainer.run.data, "test" if trainer.test is not None else "train", MONITOR_SAMPLES)
    cov["fid_1k"] = fid_from_features(clf.features(images), real)
    trainer.log("modes", {k_: v for k_, v in cov.items()})
    collapse = collapse_warning(cov)
    if collapse:
        trainer.warn(collapse)

"""The `train` settings of a run: the optimizer's (genlab.optim) plus the loop's. Below the trainer, so that the
run configuration (genlab.run) and everything that reads run folders need not import the training loop."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import check_choice, check_positive
from ..errors import UserError
from ..optim import OptimConfig

AMP = ("off", "bf16", "fp16")


@dataclass
class TrainConfig(OptimConfig):
    epochs: int = 10  # passes over the training images
    max_steps: int = 0  # stop after this many steps in all (0 = run all epochs)
    batch_size: int = 128  # images per step (per process under torchrun)
    seed: int = 0  # fixes the weights, the batch order and every random draw: runs repeat bit for bit
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "off"  # off | bf16 (CPU or CUDA autocast) | fp16 (CUDA only, with a grad scaler)
    channels_last: bool = False  # NHWC memory for conv models
    ema: float = 0.0  # EMA decay of the weights (e.g. 0.999); 0 = off
    log_every: int = 50  # steps between lines of metrics.jsonl
    ckpt_every: int = 1000  # steps; a checkpoint is also written at every epoch end
    samples: int = 64  # images in the per-epoch grid; 0 = none
    eval_test: bool = True  # per-epoch test-set losses for models that define `losses`
    eval_images: int = 2000  # test images for the per-epoch losses (a progress signal; genlab eval gives the full
    # figure); 0 = none
    monitor_modes: bool = False  # per epoch: class coverage of 1000 samples under a domain classifier
    monitor_classifier: str = "domain"  # domain (shipped MNIST) | domain:DIR

    def validate(self) -> None:
        super().validate()
        for name in ("epochs", "batch_size", "log_every", "ckpt_every"):
            check_positive(f"train.{name}", getattr(self, name))
        for name in ("max_steps", "samples", "eval_images"):
            check_positive(f"train.{name}", getattr(self, name), allow_zero=True)
        check_choice("train.amp", self.amp, AMP)
        if not 0 <= self.seed < 2**63:
            raise UserError(f"train.seed must be a whole number in [0, 2^63), got {self.seed}")
        if not 0 <= self.ema < 1:
            raise UserError(f"train.ema is a decay in [0, 1), got {self.ema}")

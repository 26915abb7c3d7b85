"""Run by tests/test_train.py under `torchrun --nproc_per_node=2`: trains a tiny VAE with data parallelism
and writes each rank's final weights to OUT/rank{r}.safetensors, so the test can compare replicas."""
import sys
from pathlib import Path

import torch.distributed as dist

from genlab.files import save_tensors
from genlab.run import compose
from genlab.train.trainer import Trainer

out = Path(sys.argv[1])
run = compose("vae", flags={"data": {"source": "digits", "limit": 512},
                            "train": {"epochs": 2, "batch_size": 32, "samples": 0}},
              overrides=["model.hidden=(32,)", "model.latent_dim=4"])
trainer = Trainer(run, out, quiet=True)
trainer.fit()
rank = dist.get_rank()
save_tensors(out / f"rank{rank}.safetensors", trainer.model.state_dict())
trainer.close()

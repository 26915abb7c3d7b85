"""Training: one trainer for every family, safe checkpoints, optimizers and EMA."""

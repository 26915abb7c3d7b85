"""Shared test set-up."""
import torch

# Test models are tiny: one thread runs them fastest and keeps the suite steady on a loaded 2-core machine.
torch.set_num_threads(1)

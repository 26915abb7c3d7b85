"""Metrics for `genlab eval`: each declares the model capability it needs and returns numbers with their protocol."""
from . import likelihood, memorization, modes, ppl, reconstruction, sample_quality  # noqa: F401  (registers them)
from .frechet import frechet_distance, gaussian_stats
from .registry import METRICS, MetricContext, evaluate, supported
from .sample_quality import fid_between

__all__ = ["METRICS", "MetricContext", "evaluate", "fid_between", "frechet_distance", "gaussian_stats", "supported"]

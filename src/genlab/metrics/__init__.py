"""Metrics for `genlab eval`: each one declares the capability it needs and returns numbers with their protocol."""
from .registry import METRICS, MetricContext, evaluate

__all__ = ["METRICS", "MetricContext", "evaluate"]

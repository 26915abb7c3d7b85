"""Datasets: sources (built-in and user files), load-time and batch-time transforms, batching."""
from .base import DataInfo, ImageSet, Splits
from .loader import Batches
from .sources import load, open_splits
from .transforms import DataConfig, Pipeline, info_for, prepare, to_unit

__all__ = ["Batches", "DataConfig", "DataInfo", "ImageSet", "Pipeline", "Splits", "info_for", "load", "open_splits",
           "prepare", "to_unit"]

"""genlab: deep generative models of images."""

__version__ = "0.1.0"

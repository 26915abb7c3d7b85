"""Model families; importing this package registers every model."""
from . import autoencoders, vae  # noqa: F401

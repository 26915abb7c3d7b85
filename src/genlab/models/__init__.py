"""Model families; importing this package registers every model."""
from . import autoencoders, classifier, vae  # noqa: F401

"""Model families; importing this package registers every model."""
from . import autoencoders, classifier, gan, vae  # noqa: F401

"""Network blocks shared by several model families."""
from .blocks import Decoder, Encoder, conv_sizes, mlp

__all__ = ["Decoder", "Encoder", "conv_sizes", "mlp"]

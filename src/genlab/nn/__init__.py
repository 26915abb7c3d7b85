"""Network blocks shared by several model families."""
from .blocks import ARCHS, BODIES, Decoder, Encoder, conv_sizes, mlp
from .dcgan import (DCDiscriminator, DCGenerator, MLPDiscriminator, MLPGenerator, crop_to, dcgan_init,
                    downsampling_plan, even_shape, pad_even)

__all__ = ["ARCHS", "BODIES", "DCDiscriminator", "DCGenerator", "Decoder", "Encoder", "MLPDiscriminator",
           "MLPGenerator", "conv_sizes", "crop_to", "dcgan_init", "downsampling_plan", "even_shape", "mlp", "pad_even"]

"""Model families; importing this package registers every model."""
from . import (autoencoders, bigan, classifier, conditional_gan, cyclegan, diffusion, ffjord, flows, fvbn,  # noqa: F401
               gan, glo, pix2pix, pixelcnn, pixelrnn, progan, rbm, stargan, stylegan, vae, vaegan)

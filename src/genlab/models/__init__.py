"""Model families; importing this package registers every model."""
from . import autoencoders, bigan, classifier, conditional_gan, diffusion, ffjord, flows, fvbn, gan, glo, pix2pix, pixelcnn, pixelrnn, rbm, stargan, vae, vaegan  # noqa: F401

"""The perceptual loss: Johnson et al. (2016)'s feature reconstruction distance in a fixed, pretrained network,

    d(a, b) = sum_l ||phi_l(a) - phi_l(b)||^2 / (C_l H_l W_l)        per image, images in [0, 1]

with networks whose weights are on this machine (nothing is downloaded):
    mnist               genlab's shipped MNIST classifier, its two conv stages (32 x 28 x 28, 64 x 14 x 14);
                        1 x 28 x 28 images
    efficientnet-lite0  the ImageNet network of nn/efficientnet_lite.py, the outputs of its blocks 0, 2 and 4
                        (16 channels at 1/2, 24 at 1/4, 40 at 1/8 of the side); colour or grey (repeated to RGB)
                        images of 16 px and more
    auto                mnist for 1 x 28 x 28 images, else efficientnet-lite0
The network is kept outside the model's parameters: not trained, not saved with the weights.
"""
from __future__ import annotations

import torch

from ..errors import UserError, unknown
from ..nn.efficientnet_lite import efficientnet_lite0
from .classifier import shipped_classifier

NETWORKS = ("auto", "mnist", "efficientnet-lite0")
LITE_BLOCKS = (0, 2, 4)
LITE_MIN_SIDE = 16


def resolve(network: str, shape: tuple[int, int, int]) -> str:
    """The network `auto` stands for on images of this shape."""
    if network not in NETWORKS:
        raise unknown("perceptual network", network, NETWORKS)
    if network != "auto":
        return network
    return "mnist" if tuple(shape) == (1, 28, 28) else "efficientnet-lite0"


class PerceptualDistance:
    """d(a, b) above for images of `shape` (C x H x W); call with two B x C x H x W batches in [0, 1] -> B."""

    def __init__(self, shape: tuple[int, int, int], network: str = "auto"):
        self.name = resolve(network, shape)
        c, h, w = shape
        if self.name == "mnist":
            if tuple(shape) != (1, 28, 28):
                raise UserError(f"the perceptual network 'mnist' (the shipped MNIST classifier) takes 1x28x28 "
                                f"images; these are {c}x{h}x{w}: use efficientnet-lite0")
            self.net = shipped_classifier()
        else:
            if c not in (1, 3) or min(h, w) < LITE_MIN_SIDE:
                raise UserError(f"the perceptual network efficientnet-lite0 takes grey or RGB images of at least "
                                f"{LITE_MIN_SIDE} px; these are {c}x{h}x{w}")
            self.net = efficientnet_lite0()

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.name == "mnist":
            return self.net.feature_maps(x)
        rgb = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        return self.net.feature_maps((rgb * 255 - 127) / 128, LITE_BLOCKS)  # TensorFlow Lite's input scaling

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b: B x C x H x W in [0, 1] -> B."""
        if next(self.net.parameters()).device != a.device:
            self.net.to(a.device)
        total = a.new_zeros(len(a))
        for fa, fb in zip(self.feature_maps(a), self.feature_maps(b)):
            total = total + (fa - fb).pow(2).flatten(1).mean(1)
        return total

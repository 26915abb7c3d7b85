"""A small convolutional classifier: genlab's domain feature extractor for metrics.

Its penultimate layer gives the features of a domain FID (far faster than Inception on CPU, and trained
on the data it judges); its softmax gives the Inception Score and the class histogram of mode coverage.

    conv3x3(c1) - conv3x3(c1) - maxpool2 - conv3x3(c2) - conv3x3(c2) - maxpool2 - fc(features) - fc(classes)
    trained with cross-entropy, on images shifted by up to `shift` pixels (zero fill) for robustness.

The copy trained on MNIST ships in genlab/assets/mnist_classifier; its feature maps also give the autoencoders'
perceptual loss (models/perceptual.py, `model.loss=perceptual`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_positive, from_dict
from ..data import DataInfo
from ..errors import UserError
from ..files import load_module_state, read_json
from ..nn import conv_sizes
from .common import SingleLoss
from .registry import register


@dataclass
class ClassifierConfig:
    channels: tuple[int, ...] = (32, 64)  # widths of the two conv stages
    features: int = 128  # penultimate width: the feature dimension of domain FID
    dropout: float = 0.3
    shift: int = 2  # random translation in pixels during training; 0 = none
    label_smoothing: float = 0.0

    def validate(self) -> None:
        if len(self.channels) != 2:
            raise UserError(f"model.channels needs two widths (one per conv stage), got {self.channels}")
        check_positive("model.features", self.features)
        if not 0 <= self.dropout < 1:
            raise UserError(f"model.dropout must lie in [0, 1), got {self.dropout}")
        check_positive("model.shift", self.shift, allow_zero=True)


def random_shift(x: torch.Tensor, max_shift: int, fill: float) -> torch.Tensor:
    """Translate each image by an integer offset in [-max_shift, max_shift]^2, filling with `fill`."""
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=fill)
    dy = torch.randint(0, 2 * max_shift + 1, (b,))
    dx = torch.randint(0, 2 * max_shift + 1, (b,))
    rows = (dy.view(b, 1) + torch.arange(h).view(1, h)).to(x.device)  # B x H
    cols = (dx.view(b, 1) + torch.arange(w).view(1, w)).to(x.device)  # B x W
    idx = torch.arange(b, device=x.device).view(b, 1, 1)
    return padded.permute(0, 2, 3, 1)[idx, rows.unsqueeze(2), cols.unsqueeze(1)].permute(0, 3, 1, 2)


@register("classifier", ClassifierConfig)
class Classifier(SingleLoss, nn.Module):
    """Convolutional image classifier: domain features and class probabilities for FID, IS and mode coverage."""

    def __init__(self, cfg: ClassifierConfig, info):
        super().__init__()
        if info.num_classes < 2:
            raise UserError("a classifier needs labelled data with at least 2 classes (this dataset has no labels)")
        self.cfg, self.info = cfg, info
        c1, c2 = cfg.channels
        c = info.channels

        def block(a, b):
            return [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]

        self.body = nn.Sequential(*block(c, c1), *block(c1, c1), nn.MaxPool2d(2, ceil_mode=True),
                                  *block(c1, c2), *block(c2, c2), nn.MaxPool2d(2, ceil_mode=True), nn.Flatten())
        side_h, side_w = conv_sizes(info.height, 2)[-1], conv_sizes(info.width, 2)[-1]  # two ceil halvings
        self.fc = nn.Sequential(nn.Linear(c2 * side_h * side_w, cfg.features), nn.ReLU())
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.features, info.num_classes)
        self.fill = 0.0 if info.range == "01" else -1.0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: B x C x H x W -> penultimate features B x features."""
        return self.fc(self.body(x))

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The activations after each conv stage's second ReLU (c1 x H x W, c2 x H/2 x W/2): the layers a
        perceptual loss compares."""
        maps, relus = [], 0
        for layer in self.body:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                relus += 1
                if relus % 2 == 0:
                    maps.append(x)
        return maps

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).softmax(1)

    def losses(self, x, y=None):
        if y is None:
            raise UserError("the classifier needs class labels to train")
        if self.training and self.cfg.shift:
            x = random_shift(x, self.cfg.shift, self.fill)
        logits = self.logits(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.cfg.label_smoothing)
        error = (logits.argmax(1) != y).float().mean()
        return {"loss": loss, "error": error}


SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "mnist_classifier"  # ships in the package


def shipped_classifier() -> Classifier:
    """genlab's MNIST classifier (1 x 28 x 28 in [0, 1]) from the package's own files, frozen, in eval mode."""
    saved = read_json(SHIPPED / "config.json")
    cfg = from_dict(ClassifierConfig, {k: v for k, v in saved["model"].items() if k != "name"}, "model")
    with torch.device("cpu"):  # real tensors even while a model that uses it is sized on the meta device
        net = Classifier(cfg, DataInfo(**saved["info"]))
    load_module_state(net, SHIPPED / "model.safetensors")
    return net.eval().requires_grad_(False)

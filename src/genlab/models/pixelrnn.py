"""PixelRNN (van den Oord et al. 2016a): Row LSTM and Diagonal BiLSTM layers between masked convolutions.

    [o, f, i, g] = sigma(K_ss (*) h_prev + K_is (*) x),   c = f . c_prev + i . g,   h = o . tanh(c)
    (sigma is the logistic for o, f, i and tanh for g)

Row LSTM: K_is is a 1 x 3 mask-B convolution over the current row, K_ss a 1-D convolution of width 3 over the
previous row's states; rows are processed top to bottom, so the context is a triangle above the pixel.
Diagonal BiLSTM: the map is skewed (row i shifted right by i) so diagonals become columns; K_is is 1 x 1 and K_ss
a 2 x 1 convolution over the previous column, so each state sees (i - 1, j) and (i, j - 1). A second LSTM runs
right to left; its output is shifted down one row (it saw the current row's future) and added, which completes
the context to every earlier pixel.

Both stack `layers` LSTM layers of h = `width` units on a 2h-channel residual stream between a 7x7 mask-A
convolution and two 1x1 mask-B layers into the head; -log p(x) is exact, in nats per image.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_choice
from ..nn.masked import MaskedConv2d
from .autoregressive import AR_DEFAULTS, ARConfig, Autoregressive
from .pixelcnn import FIRST_KERNEL, _output_layers
from .registry import register

VARIANTS = ("row_lstm", "diagonal_bilstm")


def _lstm(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """gates: B x 4h x ... (o, f, i, g), c: B x h x ... -> (h, c)."""
    o, f, i, g = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class RowLSTM(nn.Module):
    def __init__(self, stream: int, hidden: int, colours: int):
        super().__init__()
        self.hidden = hidden
        self.input_to_state = MaskedConv2d(stream, 4 * hidden, (1, 3), "B", colours, out_blocks=4)
        self.state_to_state = nn.Conv1d(hidden, 4 * hidden, 3, padding=1)  # the previous row: no mask needed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, rows, w = x.shape
        xs = self.input_to_state(x)  # B x 4h x H x W, all rows at once
        h = c = x.new_zeros(b, self.hidden, w)
        out = []
        for x_row in xs.unbind(2):  # unbind, not xs[:, :, i]: each index's backward would zero a full-size tensor
            h, c = _lstm(x_row + self.state_to_state(h), c)  # B x h x W
            out.append(h)
        return torch.stack(out, dim=2)  # B x h x H x W


def skew(x: torch.Tensor) -> torch.Tensor:
    """B x F x H x W -> B x F x H x (W + H - 1), row i shifted right by i (zeros elsewhere).

    Rows padded to W + H and read back with a stride one shorter: flat index i (W + H - 1) + k of the result is
    i (W + H) + (k - i) of the padded map, i.e. row i, column k - i.
    """
    b, f, h, w = x.shape
    flat = F.pad(x, (0, h)).flatten(2)  # B x F x H (W + H)
    return flat[:, :, :h * (w + h - 1)].view(b, f, h, w + h - 1)


def unskew(x: torch.Tensor, w: int) -> torch.Tensor:
    """Inverse of skew: B x F x H x (W + H - 1) -> B x F x H x W (read with a stride one longer)."""
    b, f, h, _ = x.shape
    flat = F.pad(x.flatten(2), (0, h))  # B x F x H (W + H)
    return flat.view(b, f, h, w + h)[..., :w]


class DiagonalLSTM(nn.Module):
    """One direction, left to right; the masked flag keeps the centre tap causal in channel order."""

    def __init__(self, stream: int, hidden: int, colours: int, masked: bool):
        super().__init__()
        self.hidden = hidden
        self.input_to_state = (MaskedConv2d(stream, 4 * hidden, 1, "B", colours, out_blocks=4) if masked
                               else nn.Conv2d(stream, 4 * hidden, 1))
        self.state_to_state = nn.Conv1d(hidden, 4 * hidden, 2)  # rows (i - 1, i) of the previous column

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, rows, w = x.shape
        xs = skew(self.input_to_state(x))  # B x 4h x H x (W + H - 1)
        h = c = x.new_zeros(b, self.hidden, rows)
        out = []
        for x_col in xs.unbind(3):
            h, c = _lstm(x_col + self.state_to_state(F.pad(h, (1, 0))), c)  # B x h x H
            out.append(h)
        return unskew(torch.stack(out, dim=3), w)  # B x h x H x W


class DiagonalBiLSTM(nn.Module):
    def __init__(self, stream: int, hidden: int, colours: int):
        super().__init__()
        self.forward_lstm = DiagonalLSTM(stream, hidden, colours, masked=True)
        self.backward_lstm = DiagonalLSTM(stream, hidden, colours, masked=False)  # shifted below: sees only rows above

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        right_to_left = self.backward_lstm(x.flip(3)).flip(3)  # B x h x H x W
        return self.forward_lstm(x) + F.pad(right_to_left, (0, 0, 1, 0))[:, :, :-1]  # shifted down one row


LAYERS = {"row_lstm": RowLSTM, "diagonal_bilstm": DiagonalBiLSTM}


class Residual(nn.Module):
    """x + 1x1 mask B (LSTM(x)): the LSTM's h maps are lifted back to the 2h stream."""

    def __init__(self, variant: str, stream: int, hidden: int, colours: int):
        super().__init__()
        self.lstm = LAYERS[variant](stream, hidden, colours)
        self.up = MaskedConv2d(hidden, stream, 1, "B", colours)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.lstm(x))


@dataclass
class PixelRNNConfig(ARConfig):
    variant: str = "diagonal_bilstm"  # row_lstm | diagonal_bilstm
    width: int = 16  # h, LSTM units per layer (the paper's MNIST model: 7 layers of h = 16)
    layers: int = 7

    def validate(self) -> None:
        super().validate()
        check_choice("model.variant", self.variant, VARIANTS)


@register("pixelrnn", PixelRNNConfig, AR_DEFAULTS)
class PixelRNN(Autoregressive, nn.Module):
    """PixelRNN: Row LSTM or Diagonal BiLSTM layers with residual connections; exact per-pixel likelihood."""

    def __init__(self, cfg: PixelRNNConfig, info):
        super().__init__()
        self.cfg = cfg
        out = self._setup_head(cfg, info)
        c, stream = info.channels, 2 * cfg.width
        self.net = nn.Sequential(
            MaskedConv2d(c, stream, FIRST_KERNEL, "A", c),
            *[Residual(cfg.variant, stream, cfg.width, c) for _ in range(cfg.layers)],
            _output_layers(stream, out, c),
        )

    def network(self, inp, y=None):
        return self.net(inp)  # B x C x H x W -> B x C * P x H x W

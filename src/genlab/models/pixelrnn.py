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
convolution and two 1x1 mask-B layers into the head; -log p(x) is exact, in nats per image. The Diagonal
BiLSTM samples through DiagonalCursor: one cell step per pixel and layer instead of a full pass per sub-pixel,
with the same draws.
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

    def edge_states(self, rows: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, c) at column -1 of every row, in the skewed map's zero padding left of the image: row 0's are the
        initial zeros, row i's come from i - 1 steps driven by the bias alone, and no pixel reaches them.
        -> two rows x h tensors."""
        h = c = like.new_zeros(1, self.hidden, rows)
        hs, cs = [like.new_zeros(self.hidden)], [like.new_zeros(self.hidden)]
        for k in range(rows - 1):  # skewed column k holds row k + 1's column -1
            h, c = _lstm(self.state_to_state(F.pad(h, (1, 0))), c)  # the padding's input is zero
            hs.append(h[0, :, k + 1])
            cs.append(c[0, :, k + 1])
        return torch.stack(hs), torch.stack(cs)

    def cell(self, x_is: torch.Tensor, h_up: torch.Tensor, h_left: torch.Tensor, c_left: torch.Tensor):
        """One position from its neighbours' states, (i - 1, j) and (i, j - 1) in this direction's coordinates;
        x_is: B x 4h (input-to-state), the states B x h -> (h, c)."""
        w = self.state_to_state.weight  # 4h x h x 2: tap 0 reads row i - 1, tap 1 row i
        return _lstm(x_is + h_up @ w[:, :, 0].T + h_left @ w[:, :, 1].T + self.state_to_state.bias, c_left)


class DiagonalBiLSTM(nn.Module):
    def __init__(self, stream: int, hidden: int, colours: int):
        super().__init__()
        self.forward_lstm = DiagonalLSTM(stream, hidden, colours, masked=True)
        self.backward_lstm = DiagonalLSTM(stream, hidden, colours, masked=False)  # shifted below: sees only rows above

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        right_to_left = self.backward_lstm(x.flip(3)).flip(3)  # B x h x H x W
        return self.forward_lstm(x) + F.pad(right_to_left, (0, 0, 1, 0))[:, :, :-1]  # shifted down one row


LAYERS = {"row_lstm": RowLSTM, "diagonal_bilstm": DiagonalBiLSTM}


def _at(layer: nn.Module, s: torch.Tensor) -> torch.Tensor:
    """A 1x1 (masked) convolution, or a pointwise Sequential, at one position: B x F -> B x F'."""
    return layer(s[:, :, None, None])[:, :, 0, 0]


class DiagonalCursor:
    """Exact sampling for Diagonal BiLSTM stacks in O(H W) cell steps per layer instead of a full pass per
    sub-pixel. Unskewed, the left-to-right state at (i, j) reads the states at (i - 1, j) and (i, j - 1), so it is
    one cell step once pixel (i, j - 1) is drawn; the right-to-left LSTM enters row i + 1 only through row i,
    so it runs once per finished row, from column W - 1 down to 0. Column -1 and column W are the skewed
    padding, whose states no pixel reaches (DiagonalLSTM.edge_states)."""

    def __init__(self, model: "PixelRNN", v: torch.Tensor):
        self.model, (self.first, *self.blocks, self.out) = model, list(model.net)
        _, self.h, self.w = model.info.shape
        self.k = FIRST_KERNEL // 2
        self.first_weight = self.first.weight * self.first.mask  # the mask-A kernel, formed once per draw
        self.fw_edge = [blk.lstm.forward_lstm.edge_states(self.h, v) for blk in self.blocks]
        self.bw_edge = [blk.lstm.backward_lstm.edge_states(self.h, v) for blk in self.blocks]
        hid = model.cfg.width
        self.fw_up, self.bw_up = self._rows(v, hid), self._rows(v, hid)  # row i - 1's states (row -1: zeros)
        self.fw_h, self.fw_c = self._rows(v, hid), self._rows(v, hid)  # row i's, filled left to right
        self.stream = self._rows(v, 2 * hid)  # each layer's input along row i

    def _rows(self, v: torch.Tensor, features: int) -> list[torch.Tensor]:
        return [v.new_zeros(len(v), features, self.w) for _ in self.blocks]  # per layer: B x F x W

    def step(self, padded: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """The network's output at (i, j) of the input drawn up to here (B x C x (H + 2k) x (W + 2k) on [-1, 1],
        zero-padded by the first kernel's reach k); -> B x C * P."""
        k = self.k
        patch = padded[:, :, i:i + 2 * k + 1, j:j + 2 * k + 1]  # B x C x 7 x 7 around (i, j)
        s = F.conv2d(patch, self.first_weight, self.first.bias)[:, :, 0, 0]  # B x 2h
        for l, blk in enumerate(self.blocks):
            fw = blk.lstm.forward_lstm
            self.stream[l][:, :, j] = s
            h_left, c_left = ((self.fw_h[l][:, :, j - 1], self.fw_c[l][:, :, j - 1]) if j else
                              (self.fw_edge[l][0][i], self.fw_edge[l][1][i]))
            h, c = fw.cell(_at(fw.input_to_state, s), self.fw_up[l][:, :, j], h_left, c_left)
            self.fw_h[l][:, :, j], self.fw_c[l][:, :, j] = h, c
            s = s + _at(blk.up, h + self.bw_up[l][:, :, j])  # the right-to-left states of row i - 1
        return _at(self.out, s)

    def finish_row(self, i: int) -> None:
        """Row i is drawn: run the right-to-left LSTMs over it and move every layer's states down a row."""
        for l, blk in enumerate(self.blocks):
            bw = blk.lstm.backward_lstm
            x_is = bw.input_to_state(self.stream[l][:, :, None])[:, :, 0]  # B x 4h x W
            h, c = self.bw_edge[l][0][i], self.bw_edge[l][1][i]  # column W
            row = torch.empty_like(self.bw_up[l])
            for j in reversed(range(self.w)):
                h, c = bw.cell(x_is[:, :, j], self.bw_up[l][:, :, j], h, c)
                row[:, :, j] = h
            self.bw_up[l], self.fw_up[l] = row, self.fw_h[l].clone()

    def fill(self, v: torch.Tensor, start_row: int, generator, bar) -> torch.Tensor:
        c, p, k = self.model.info.channels, self.model.head.params, self.k
        padded = F.pad(v * 2 - 1, (k, k, k, k))  # the network's input, updated as values are drawn
        for i in range(self.h):
            for j in range(self.w):
                if i < start_row:  # kept rows: the states only
                    self.step(padded, i, j)
                    continue
                for ch in range(c):
                    out = self.step(padded, i, j)  # the last channel's call leaves (i, j)'s final states
                    v[:, ch, i, j] = self.model.head.sample(out[:, ch * p:(ch + 1) * p], generator)
                    padded[:, ch, i + k, j + k] = v[:, ch, i, j] * 2 - 1
                    bar.update()
            self.finish_row(i)
        return v


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

    def _draw(self, v: torch.Tensor, start_row: int, generator, y, bar) -> torch.Tensor:
        if self.cfg.variant != "diagonal_bilstm":
            return super()._draw(v, start_row, generator, y, bar)
        return DiagonalCursor(self, v).fill(v, start_row, generator, bar)

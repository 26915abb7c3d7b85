"""The DDPM U-Net (Ho et al. 2020, appendix B): residual blocks with group norm and a timestep embedding,
self-attention at the low resolutions, skip connections between the two halves.

    x_t: B x C x H x W, t: B  ->  B x C_out x H x W

    embedding:  e = MLP(sinusoid(t)) [+ class embedding(y)]           (Transformer sinusoid, Vaswani et al.)
    ResBlock:   h = conv(SiLU(GN(x))) + Linear(SiLU(e)); out = skip(x) + conv(dropout(SiLU(GN(h))))
    levels:     `mults` widths, `blocks` ResBlocks each, a stride-2 conv between levels; the up path mirrors
                them with one more block per level, each fed the matching down-path activation.

Images whose sides do not halve `len(mults) - 1` times (28 px MNIST, say) are zero-padded up to the next
multiple and the output is cropped back, so any size trains.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps: B -> B x dim, [cos | sin] of t / period^(i/half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]  # B x half
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))  # odd dim: one zero column


def group_norm(c: int) -> nn.GroupNorm:
    """Group norm with at most 32 groups of at least 4 channels each: the paper's 32 groups from 128 channels on, and
    for narrower networks the largest divisor of c up to c / 4. Groups of one channel (32 groups at width 32) would
    remove each channel's spatial mean, so that the output layer can hardly shift the whole image."""
    return nn.GroupNorm(next(g for g in range(max(1, min(32, c // 4)), 0, -1) if c % g == 0), c)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float):
        super().__init__()
        self.in_layers = nn.Sequential(group_norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, c_out))
        self.out_layers = nn.Sequential(group_norm(c_out), nn.SiLU(), nn.Dropout(dropout),
                                        nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x) + self.emb(emb)[:, :, None, None]  # B x c_out x H x W, plus B x c_out x 1 x 1
        return self.skip(x) + self.out_layers(h)


class SelfAttention(nn.Module):
    """Single-head self-attention over the H W positions, residual: x + proj(softmax(q k^T / sqrt(c)) v)."""

    def __init__(self, c: int):
        super().__init__()
        self.norm = group_norm(c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        # the 1 x 1 convolutions applied as matrix products on the positions' tokens: the same arithmetic, and
        # q, k, v come out with unit stride along c, which PyTorch's fused CPU attention kernel takes (from the
        # convolutions' channels-first output it fell back to batched products: benchmarks/unet_speed.py)
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # B x HW x c
        q, k, v = F.linear(tokens, self.qkv.weight.flatten(1), self.qkv.bias).chunk(3, dim=2)  # each B x HW x c
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # B x HW x c
        out = F.linear(out, self.proj.weight.flatten(1), self.proj.bias)  # B x HW x c
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class Level(nn.Module):
    """ResBlocks, each optionally followed by self-attention; keeps every output for the skip connections."""

    def __init__(self, blocks: list[nn.Module], attentions: list[nn.Module]):
        super().__init__()
        self.blocks, self.attentions = nn.ModuleList(blocks), nn.ModuleList(attentions)


class UNet(nn.Module):
    """x_t, t (and labels) -> a tensor of x_t's shape with `out_channels` channels."""

    def __init__(self, in_channels: int, out_channels: int, side: int, width: int = 64,
                 mults: tuple[int, ...] = (1, 2, 2), blocks: int = 2, attention: int = 16, dropout: float = 0.1,
                 num_classes: int = 0):
        super().__init__()
        self.factor = 2 ** (len(mults) - 1)  # total downsampling
        emb_dim = 4 * width
        self.width = width
        self.time_mlp = nn.Sequential(nn.Linear(width, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # one more row than classes: the last is the "no label" token of classifier-free guidance
        self.label_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)

        side = -(-side // self.factor) * self.factor  # after padding
        chans, skips = width, [width]
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        for i, m in enumerate(mults):
            res, attn = [], []
            for _ in range(blocks):
                res.append(ResBlock(chans, width * m, emb_dim, dropout))
                chans = width * m
                attn.append(SelfAttention(chans) if side <= attention else nn.Identity())
                skips.append(chans)
            self.down.append(Level(res, attn))
            last = i == len(mults) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(chans, chans, 3, stride=2, padding=1))
            if not last:
                skips.append(chans)
                side //= 2
        self.mid = nn.ModuleList([ResBlock(chans, chans, emb_dim, dropout), SelfAttention(chans),
                                  ResBlock(chans, chans, emb_dim, dropout)])
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, m in reversed(list(enumerate(mults))):
            res, attn = [], []
            for _ in range(blocks + 1):
                res.append(ResBlock(chans + skips.pop(), width * m, emb_dim, dropout))
                chans = width * m
                attn.append(SelfAttention(chans) if side <= attention else nn.Identity())
            self.up.append(Level(res, attn))
            self.upsample.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                               nn.Conv2d(chans, chans, 3, padding=1)) if i else nn.Identity())
            if i:
                side *= 2
        self.head = nn.Sequential(group_norm(chans), nn.SiLU(), nn.Conv2d(chans, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h_in, w_in = x.shape[-2:]
        x = F.pad(x, (0, -w_in % self.factor, 0, -h_in % self.factor))  # B x C x H' x W', multiples of the factor
        emb = self.time_mlp(timestep_embedding(t, self.width))  # B x 4 width
        if self.label_emb is not None:
            emb = emb + self.label_emb(y)
        h = self.stem(x)
        skips = [h]
        for level, down in zip(self.down, self.downsample):
            for block, attn in zip(level.blocks, level.attentions):
                h = attn(block(h, emb))
                skips.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)  # side halves
                skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for level, up in zip(self.up, self.upsample):
            for block, attn in zip(level.blocks, level.attentions):
                h = attn(block(torch.cat([h, skips.pop()], dim=1), emb))
            h = up(h)  # side doubles (not after the full-resolution level)
        return self.head(h)[..., :h_in, :w_in]  # crop the padding: B x C_out x H x W

"""Given networks (no exercise): the small convolutional denoiser of chapter 0 and the judge classifier.

Chapter 0 needs a denoiser before the learner has built one; chapter 1 builds its own U-Net from the ground up.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def sinusoidal(t: torch.Tensor, dim: int) -> torch.Tensor:
    """[cos(t·f), sin(t·f)] with f_i = 10000^(−i/(dim/2)); (B,) -> (B, dim). Chapter 1 derives it."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int = 8):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(groups, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]  # SiLU first (DDPM): the class's shift can depend on t
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class SmallUNet(nn.Module):
    """A compact class-conditional conv U-Net: one residual block per level, channels `channels` (e.g. 32-64-64
    for 8×8 digits: 8×8 -> 4×4 -> 2×2 and back), skips concatenated, time and class added to every block.
    Called as model(x, t, y) -> ε; y = num_classes (or None) means unconditional."""

    def __init__(self, in_channels: int = 1, channels=(32, 64, 64), num_classes: int = 10, emb_dim: int = 128):
        super().__init__()
        self.num_classes, self.emb_dim = num_classes, emb_dim
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_emb = nn.Embedding(num_classes + 1, emb_dim)
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c_prev = channels[0]
        for i, c in enumerate(channels):
            self.down.append(_ResBlock(c_prev, c, emb_dim))
            self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if i < len(channels) - 1 else None)
            c_prev = c
        self.mid = _ResBlock(c_prev, c_prev, emb_dim)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, c in reversed(list(enumerate(channels))):
            self.up.append(_ResBlock(c_prev + c, c, emb_dim))
            self.upsample.append(nn.ConvTranspose2d(c, c, 4, stride=2, padding=1) if i > 0 else None)
            c_prev = c
        self.norm_out = nn.GroupNorm(8, c_prev)
        self.conv_out = nn.Conv2d(c_prev, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x, t, y=None):
        if y is None:
            y = torch.full((x.shape[0],), self.num_classes, device=x.device, dtype=torch.long)
        emb = self.time_mlp(sinusoidal(t, self.emb_dim)) + self.label_emb(y)  # (B, E)
        h = self.conv_in(x)
        skips = []
        for block, down in zip(self.down, self.downsample):
            h = block(h, emb)
            skips.append(h)
            if down is not None:
                h = down(h)
        h = self.mid(h, emb)
        for block, up in zip(self.up, self.upsample):
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if up is not None:
                h = up(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class DigitJudge(nn.Module):
    """The classifier that judges generated digits: three 3×3 conv layers and a 128-d feature layer.
    `features(x)` gives the penultimate activations used for the Fréchet distance. `pool` > 1 averages the input
    over pool × pool pixels first (the 32×32 shapes are judged at 16×16: 4× cheaper, and the classes stay clear)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32, pool: int = 1):
        super().__init__()
        self.pool = nn.AvgPool2d(pool) if pool > 1 else nn.Identity()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.BatchNorm2d(4 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(4 * width, 128), nn.ReLU())
        self.head = nn.Linear(128, num_classes)

    def features(self, x):
        return self.body(self.pool(x))

    def forward(self, x):
        return self.head(self.features(x))

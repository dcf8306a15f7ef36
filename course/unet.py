# This file is generated from solutions/unet.py by `python -m course generate`.
# Fill in each block that raises NotImplementedError, then run `check("unet")` in the notebook
# or `python -m course check unet` in a shell.
"""Chapter 1: the convolutional U-Net denoiser.

Papers: Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation" (MICCAI
2015) for the encoder/decoder with skip connections; Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models"
(NeurIPS 2020), Appendix B, for the diffusion version: wide ResNet blocks with GroupNorm, the timestep embedding
added inside every block, and self-attention at a low resolution. Layer names follow DDPM's PyTorch port
(`norm1`, `conv1`, `temb_proj`, `norm2`, `dropout`, `conv2`, `nin_shortcut`), with the class embedding of
classifier-free guidance added to the time embedding.

The picture, for 8×8 digits and channels (32, 64, 64):

    x 1×8×8 ─ conv_in ─ 32×8×8 ─ down[0] ──────────────────────────────────────────── cat ─ up[2] ─ 32×8×8 ─ out
                                   │ downsample                                      ▲ upsample
                                   64×4×4 ─ down[1] ───────────────────────── cat ─ up[1] ─ 64×4×4
                                            │ downsample                    ▲ upsample
                                            64×2×2 ─ down[2] ─── cat ─ up[0] ─ 64×2×2
                                                     │                ▲
                                                     └─ mid: ResBlock → self-attention → ResBlock ─┘
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .layers import Attention, TimestepEmbedder


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 8 groups (DDPM uses 32 groups for its 128+ channels; ours are narrower)."""
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    """DDPM's residual block (Ho et al. 2020, App. B, after the wide ResNet), the chapter's equation:

        h   = Conv3×3(SiLU(GN(x))) + W · SiLU(e)           one shift per output channel, the same at every pixel
        out = skip(x) + Conv3×3(Dropout(SiLU(GN(h))))       skip: a 1×1 conv when the channels change

    `e` = `emb` (B, emb_dim) is the time embedding plus the class embedding. The layers carry the names of DDPM's
    code: `norm1`, `conv1`, `temb_proj` (W), `norm2`, `dropout`, `conv2` and `nin_shortcut` (skip).
    """

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.temb_proj = nn.Linear(emb_dim, out_channels)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        # "Network in network": a 1×1 conv so that the shortcut has the output's channels.
        self.nin_shortcut = (nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels
                             else nn.Identity())

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x: (B, in, H, W), emb: (B, emb_dim) -> (B, out, H, W). `hint("unet.ResBlock.forward")` when stuck."""
        raise NotImplementedError('Exercise `unet.ResBlock.forward` is not done yet: write it in course/unet.py (book/01_unet_vit.ipynb, section "Exercise: unet.ResBlock.forward").')


class AttnBlock(nn.Module):
    """Self-attention over the pixels of a feature map, with a residual: x + Attention(GroupNorm(x)).

    Every pixel is a token with C channels; the attention is global, so at the lowest resolution one layer lets
    every position see every other. Given (no exercise)."""

    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        self.norm = group_norm(channels)
        self.attn = Attention(channels, num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        h = rearrange(self.norm(x), "b c h w -> b (h w) c")  # (B, H*W, C)
        h = self.attn(h)
        return x + rearrange(h, "b (h w) c -> b c h w", h=H, w=W)


class Downsample(nn.Module):
    """Halve the resolution with a 3×3 convolution of stride 2 (DDPM's `conv_resample`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour upsampling, then a 3×3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """A small class-conditional U-Net denoiser ε_θ(x_t, t, y), after DDPM's (Ho et al. 2020).

    Level i works at resolution H / 2^i with `channels[i]` channels. The down path runs `num_res_blocks`
    ResBlocks per level, keeps the result as that level's skip, and halves the resolution (not after the last
    level). The middle runs ResBlock → self-attention → ResBlock at the lowest resolution. The up path visits
    the levels in reverse: it concatenates the level's skip to the features along the channels, runs that
    level's ResBlocks (the first one takes the concatenation), and doubles the resolution (not after level 0).
    H and W must be divisible by 2^(len(channels) − 1).

    `y` holds class labels 0..num_classes-1; `num_classes` (or `y=None`) is the null label of classifier-free
    guidance, so the label table has num_classes + 1 rows.
    """

    def __init__(self, in_channels: int = 1, channels: tuple[int, ...] = (32, 64, 64), num_res_blocks: int = 1,
                 num_classes: int = 10, num_heads: int = 4, dropout: float = 0.0):
        super().__init__()
        self.in_channels, self.num_classes, self.channels = in_channels, num_classes, tuple(channels)
        emb_dim = 4 * channels[0]  # DDPM: the embedding is 4× the base width
        self.time_embed = TimestepEmbedder(emb_dim, frequency_embedding_size=channels[0])
        self.label_embed = nn.Embedding(num_classes + 1, emb_dim)

        self.conv_in = nn.Conv2d(in_channels, channels[0], kernel_size=3, padding=1)
        self.down = nn.ModuleList()  # down[i]: the ResBlocks of level i
        self.downsample = nn.ModuleList()  # downsample[i]: after level i (Identity after the last)
        ch = channels[0]
        for i, out in enumerate(channels):
            self.down.append(nn.ModuleList(
                [ResBlock(ch if j == 0 else out, out, emb_dim, dropout) for j in range(num_res_blocks)]))
            ch = out
            self.downsample.append(Downsample(ch) if i < len(channels) - 1 else nn.Identity())

        self.mid_block1 = ResBlock(ch, ch, emb_dim, dropout)
        self.mid_attn = AttnBlock(ch, num_heads)
        self.mid_block2 = ResBlock(ch, ch, emb_dim, dropout)

        self.up = nn.ModuleList()  # up[k]: level len(channels) - 1 - k, the reverse order of `down`
        self.upsample = nn.ModuleList()
        for i, out in reversed(list(enumerate(channels))):
            skip = channels[i]
            self.up.append(nn.ModuleList(
                [ResBlock(ch + skip if j == 0 else out, out, emb_dim, dropout) for j in range(num_res_blocks)]))
            ch = out
            self.upsample.append(Upsample(ch) if i > 0 else nn.Identity())

        self.norm_out = group_norm(ch)
        self.conv_out = nn.Conv2d(ch, in_channels, kernel_size=3, padding=1)

    def embed(self, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The conditioning vector: time embedding + class embedding (the null class when y is None). (B, 4·C0)."""
        if y is None:
            y = torch.full_like(t, self.num_classes)
        return self.time_embed(t) + self.label_embed(y)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, H, W), t: (B,) timesteps, y: (B,) labels or None -> ε̂: (B, C, H, W).

        The picture of the module docstring, with every ResBlock conditioned on `self.embed(t, y)`, each level's skip
        kept at its own resolution and concatenated on the way up (features first), and DDPM's head (`norm_out`,
        SiLU, `conv_out`). `hint("unet.UNet.forward")` when stuck.
        """
        raise NotImplementedError('Exercise `unet.UNet.forward` is not done yet: write it in course/unet.py (book/01_unet_vit.ipynb, section "Exercise: unet.UNet.forward").')

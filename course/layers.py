# This file is generated from solutions/layers.py by `python -m course generate`.
# Fill in each block that raises NotImplementedError, then run `check("layers")` in the notebook
# or `python -m course check layers` in a shell.
"""Chapter 1: the building blocks every Transformer backbone of this course shares.

Timestep and 2D position embeddings, patch tokens and back, and multi-head self-attention. Papers: Vaswani et al.,
"Attention Is All You Need" (NeurIPS 2017); Dosovitskiy et al., "An Image is Worth 16x16 Words" (ICLR 2021); He et
al., "Masked Autoencoders Are Scalable Vision Learners" (CVPR 2022) for the 2D sin-cos position embedding.
Conventions follow the official DiT code (see the chapter): cos first for timesteps, sin first for positions,
tokens in row-major order, a token's inner order (row in patch, column in patch, channel).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from course.lab.probes import attention_probs


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, as in ADM and DiT.

    With half = dim // 2 and freqs_i = exp(−ln(max_period) · i / half), i = 0..half-1:
        embedding = [cos(t · freqs), sin(t · freqs)]      (cos first)
    and one zero column appended when dim is odd. t: (B,) -> (B, dim) float32.
    """
    raise NotImplementedError('Exercise `layers.timestep_embedding` is not done yet: write it in course/layers.py (book/01_unet_vit.ipynb, section "Exercise: layers.timestep_embedding").')


def get_1d_sincos_pos_embed(embed_dim: int, pos: torch.Tensor) -> torch.Tensor:
    """[sin(pos ⊗ ω), cos(pos ⊗ ω)] with ω_i = 1 / 10000^(i / (D/2)): (M,) -> (M, embed_dim), sin first."""
    omega = 1.0 / 10000 ** (torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2))
    out = pos.reshape(-1).double()[:, None] * omega[None]  # (M, D/2)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def get_2d_sincos_pos_embed(embed_dim: int, grid_size: int | tuple[int, int]) -> torch.Tensor:
    """The fixed 2D sin-cos position embedding of MAE and DiT, one row per token in row-major order.

    For a grid of h rows and w columns: the first embed_dim/2 channels embed each token's column index (the
    grid coordinate that varies along the width), the last embed_dim/2 its row index, each with
    `get_1d_sincos_pos_embed`. grid_size: int (square) or (h, w). Returns (h * w, embed_dim) float32.
    """
    if embed_dim % 4:
        raise ValueError(f"embed_dim must be divisible by 4 for a 2D sin-cos embedding, got {embed_dim}")
    raise NotImplementedError('Exercise `layers.get_2d_sincos_pos_embed` is not done yet: write it in course/layers.py (book/01_unet_vit.ipynb, section "Exercise: layers.get_2d_sincos_pos_embed").')


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into non-overlapping p × p patches, one token each.

    (B, C, H, W) -> (B, (H/p)·(W/p), p·p·C): tokens in row-major order over the (H/p, W/p) grid; inside a token,
    the order is (row in patch, column in patch, channel), channel fastest.
    """
    raise NotImplementedError('Exercise `layers.patchify` is not done yet: write it in course/layers.py (book/01_unet_vit.ipynb, section "Exercise: layers.patchify").')


def unpatchify(x: torch.Tensor, patch_size: int, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """The inverse of `patchify`: (B, h·w, p·p·C) -> (B, C, h·p, w·p). The grid (h, w) defaults to square."""
    raise NotImplementedError('Exercise `layers.unpatchify` is not done yet: write it in course/layers.py (book/01_unet_vit.ipynb, section "Exercise: layers.unpatchify").')


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention by hand: softmax(Q Kᵀ / √d) V over the last two dimensions.

    q, k, v: (..., N, d) -> (..., N, d). The same as `F.scaled_dot_product_attention(q, k, v)`.
    """
    raise NotImplementedError('Exercise `layers.attention` is not done yet: write it in course/layers.py (book/01_unet_vit.ipynb, section "Exercise: layers.attention").')


class Attention(nn.Module):
    """Multi-head self-attention with one qkv projection and an output projection (timm's and DiT's layout).

    `fused=True` (the default) computes the attention with PyTorch's fused kernel; `fused=False` uses the
    hand-written `attention` above (same result, slower, and the way to look inside).
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, fused: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads, self.head_dim, self.fused = num_heads, dim // num_heads, fused
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def qkv_heads(self, x: torch.Tensor):
        """(B, N, D) -> q, k, v, each (B, heads, N, head_dim). Given: used by `forward` and `attention_map`."""
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, N, D) -> (B, N, D): MHA(x) = [head_1, ..., head_H] W^O, with q, k, v per head from the given
        `qkv_heads` and `proj` as W^O. Each head attends with the fused kernel when `self.fused`, else with your
        `attention` (the two agree); token n's D channels are its heads' outputs side by side, head 1 first.
        `hint("layers.Attention.forward")` when stuck."""
        raise NotImplementedError('Exercise `layers.Attention.forward` is not done yet: write it in course/layers.py (book/01_unet_vit.ipynb, section "Exercise: layers.Attention.forward").')

    @torch.no_grad()
    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The attention probabilities for input x: (B, heads, N, N). For plots and widgets."""
        q, k, _ = self.qkv_heads(x)
        return attention_probs(q, k)


# ---------------------------------------------------------------------------------------------------------------
# Given layers (no exercise): named as in timm and the official DiT code, so state dicts line up.
# ---------------------------------------------------------------------------------------------------------------
class Mlp(nn.Module):
    """fc1 -> GELU -> fc2. DiT uses the tanh approximation of GELU, U-ViT and GenViT the exact one."""

    def __init__(self, in_features: int, hidden_features: int, approximate: str = "none"):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU(approximate=approximate)
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class PatchEmbed(nn.Module):
    """A Conv2d with kernel = stride = p: the same as `patchify` followed by a Linear, in one kernel.
    (B, C, H, W) -> (B, (H/p)·(W/p), D), tokens row-major."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int, bias: bool = True):
        super().__init__()
        self.img_size, self.patch_size = img_size, patch_size
        self.grid_size = img_size // patch_size
        self.num_patches = self.grid_size**2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, D, h, w) -> (B, h*w, D)


class TimestepEmbedder(nn.Module):
    """DiT's time embedder: sinusoidal(frequency_embedding_size) -> Linear -> SiLU -> Linear, to `hidden_size`."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(nn.Linear(frequency_embedding_size, hidden_size), nn.SiLU(),
                                 nn.Linear(hidden_size, hidden_size))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.frequency_embedding_size))

# This file is generated from solutions/diffit.py by `python -m course generate`.
# Fill in each block that raises NotImplementedError, then run `check("diffit")` in the notebook
# or `python -m course check diffit` in a shell.
"""Chapter 5: DiffiT, time-dependent self-attention (TMSA) in a U-shaped, windowed hierarchy.

Paper: Hatamizadeh et al., "DiffiT: Diffusion Vision Transformers for Image Generation" (ECCV 2024). Its one new
layer is **TMSA**: queries, keys and values each get a projection of the time token added to the projection of the
spatial token (Eqs 3-5), so the attention itself, not only the features, changes with the noise level. Attention is
softmax(QKᵀ/√d + B) V with a Swin-style relative position bias B (Eq 6), inside non-overlapping windows.

The image-space model (the paper's CIFAR-10 and FFHQ results) has no official code; the classes below follow the
paper's Figure 4 and equations, and make the choices the paper leaves open (see the chapter): a 3×3 conv
tokenizer, encoder levels joined by stride-2 3×3 convolutions, a decoder that upsamples (nearest, then a 3×3 conv)
and **concatenates** the encoder's features at the same resolution, a 1×1 conv on the outer residual where the
channels change, GroupNorm with 8 groups, and a conv head.

    x (B,C,H,W) ─ Conv3×3 ─ [DiffiTResBlock × d₀] ─┬─ down ─ [ResBlock × d₁] ─ ... ─ (bottom level)
                                                   │                                      │ up
                              head ─ [ResBlock × d₀] ─ concat ◀────────────────────────────┘
    time token x_t = TimestepEmbedder(t) + Embedding(y)   (B, D_t), read by every TMSA

    DiffiTResBlock (Eqs 9-10):  x̂ = Conv3×3(SiLU(GN(x)));   out = DiffiTBlock(x̂, x_t) + x
    DiffiTBlock    (Eqs 7-8):   x̂ = TMSA(LN(x), x_t) + x;   out = MLP(LN(x̂)) + x̂

The official code (NVlabs/DiffiT) is the *latent* ImageNet model: an isotropic DiT-like ViT (patch 2, no
down/upsampling), whose "window" is the whole token grid (global attention), with the class embedding added to the
time token and no adaLN anywhere. `LatentDiffiT` below is that model, built from the same `DiffiTBlock` and `TMSA`
(`DiffiTAttention` is TMSA's official name), with the official parameter names, so that its state dict has the
official keys.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dit import DiTBlock, LabelEmbedder
from .layers import Mlp, PatchEmbed, TimestepEmbedder, get_2d_sincos_pos_embed, unpatchify


# ---------------------------------------------------------------------------------------------------------------
# Windows and the relative position index
# ---------------------------------------------------------------------------------------------------------------
def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Cut a feature map into non-overlapping ws × ws windows, each a short sequence of tokens.

    x: (B, H, W, C) channels-last, H and W multiples of ws -> (B · nH · nW, ws · ws, C), nH = H/ws, nW = W/ws.
    Order: image by image; inside an image, windows in row-major order over the (nH, nW) grid of windows; inside a
    window, tokens in row-major order. (Swin returns (B·nH·nW, ws, ws, C); here each window is flattened.)
    """
    B, H, W, C = x.shape
    if H % window_size or W % window_size:
        raise ValueError(f"window_partition: H and W ({H}, {W}) must be multiples of the window size {window_size}")
    raise NotImplementedError('Exercise `diffit.window_partition` is not done yet: write it in course/diffit.py (book/05_diffit.ipynb, section "Exercise: diffit.window_partition").')


def window_reverse(windows: torch.Tensor, window_size: int, H: int, W: int) -> torch.Tensor:
    """The inverse of `window_partition`: (B · nH · nW, ws · ws, C) -> (B, H, W, C)."""
    raise NotImplementedError('Exercise `diffit.window_reverse` is not done yet: write it in course/diffit.py (book/05_diffit.ipynb, section "Exercise: diffit.window_reverse").')


def relative_position_index(window_size: int) -> torch.Tensor:
    """Swin's relative position index: which entry of the bias table each (query, key) pair of a window reads.

    Token i of a ws × ws window sits at (row_i, col_i) (row-major: i = row_i · ws + col_i). The offset of query i
    from key j is (row_i − row_j, col_i − col_j), each in [−(ws − 1), ws − 1]: (2ws − 1)² possible offsets, one
    table entry each. Shift both to [0, 2ws − 2] and read them as one base-(2ws − 1) number:

        index[i, j] = (row_i − row_j + ws − 1) · (2ws − 1) + (col_i − col_j + ws − 1)

    Returns (ws², ws²) int64, values in [0, (2ws − 1)²).
    """
    raise NotImplementedError('Exercise `diffit.relative_position_index` is not done yet: write it in course/diffit.py (book/05_diffit.ipynb, section "Exercise: diffit.relative_position_index").')


# ---------------------------------------------------------------------------------------------------------------
# TMSA: time-dependent multi-head self-attention (official name: DiffiTAttention)
# ---------------------------------------------------------------------------------------------------------------
class TMSA(nn.Module):
    """Time-dependent multi-head self-attention inside non-overlapping windows (§3.2, Eqs 3-6).

    Layers, named as in the official `DiffiTAttention`:
    - `qkv`: Linear(dim, 3·dim), the spatial projections W_qs, W_ks, W_vs side by side;
    - `qkv_temb`: Linear(temb_dim, 3·dim), the time projections W_qt, W_kt, W_vt (None when temb_dim is None);
    - `relative_position_bias_table`: ((2ws − 1)², heads), trunc-normal std 0.02, and the buffer
      `relative_position_index` (ws², ws²) from `relative_position_index`;
    - `proj`: the output Linear(dim, dim); `softmax`: nn.Softmax(dim=-1).
    """

    def __init__(self, dim: int, temb_dim: int | None, num_heads: int, window_size: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.dim, self.num_heads, self.window_size = dim, num_heads, window_size
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv_temb = nn.Linear(temb_dim, 3 * dim) if temb_dim is not None else None
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        """x: (B, H, W, C) channels-last, temb: (B, temb_dim) time tokens (or None) -> (B, H, W, C).

        Multi-head self-attention inside each ws × ws window (`window_partition`, `window_reverse`), Eqs 3-6:
        q = x_s W_qs + x_t W_qt, likewise k and v, where the spatial projections come from `qkv` and the time
        projections from `qkv_temb` (one time token per image, for every token of its windows); then
        softmax(q kᵀ / √head_dim + B) v per head, B[h, i, j] = relative_position_bias_table[
        relative_position_index[i, j], h], the heads merged back and projected by `proj`. Official conventions:
        the 3·C channels of `qkv` and of `qkv_temb` are (q, k, v), each split into (heads, head_dim); the
        probabilities come from `self.softmax` (the chapter's attention views and TimeBiasAttention rely on it);
        temb None (or no `qkv_temb`) means no time term. `hint("diffit.TMSA.forward")` when stuck.
        """
        raise NotImplementedError('Exercise `diffit.TMSA.forward` is not done yet: write it in course/diffit.py (book/05_diffit.ipynb, section "Exercise: diffit.TMSA.forward").')


DiffiTAttention = TMSA  # the official name (with the window set to the whole token grid in the latent model)


# ---------------------------------------------------------------------------------------------------------------
# The DiffiT Transformer block and the DiffiT ResBlock
# ---------------------------------------------------------------------------------------------------------------
class DiffiTBlock(nn.Module):
    """A pre-norm Transformer block whose attention is TMSA (Eqs 7-8); no scale, shift or gate from the time.

    As in the official `DiffiTBlock`: LayerNorms without affine parameters (eps 1e-6), an MLP with ratio 4 and
    tanh-GELU, and the time token reaching the block only through TMSA. `temb_dim` defaults to `hidden_size`.
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, window_size: int = 4,
                 temb_dim: int | None = None):
        super().__init__()
        temb_dim = hidden_size if temb_dim is None else temb_dim
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = TMSA(hidden_size, temb_dim, num_heads, window_size)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), approximate="tanh")

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """x: (B, H, W, C) channels-last, temb: (B, temb_dim) -> (B, H, W, C).

            x̂ = TMSA(LN(x), x_t) + x            (7)
            out = MLP(LN(x̂)) + x̂                 (8)
        """
        raise NotImplementedError('Exercise `diffit.DiffiTBlock.forward` is not done yet: write it in course/diffit.py (book/05_diffit.ipynb, section "Exercise: diffit.DiffiTBlock.forward").')


class DiffiTResBlock(nn.Module):
    """The DiffiT ResBlock of the image-space model (Eqs 9-10): a conv, then a DiffiT block, plus an outer residual.

    `norm` is GroupNorm (8 groups, or fewer for narrow layers), `conv` a 3×3 conv from `in_channels` to
    `out_channels`, `block` the DiffiT Transformer block (working channels-last), and `skip` a 1×1 conv where the
    channels change (the decoder's first block, after the concatenation), else the identity. The paper leaves
    the group count and the channel change of the residual open; these are the chapter's choices.
    """

    def __init__(self, in_channels: int, out_channels: int, temb_dim: int, num_heads: int, window_size: int,
                 mlp_ratio: float = 4.0, num_groups: int = 8, block_cls=None):
        super().__init__()
        block_cls = block_cls or DiffiTBlock
        self.norm = nn.GroupNorm(math.gcd(num_groups, in_channels), in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.block = block_cls(out_channels, num_heads, mlp_ratio=mlp_ratio, window_size=window_size,
                               temb_dim=temb_dim)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """x: (B, C_in, H, W), temb: (B, temb_dim) -> (B, C_out, H, W).

            x̂ = Conv3×3(SiLU(GN(x)))                      (9)
            out = DiffiTBlock(x̂, x_t) + skip(x)            (10)
        The block works channels-last: move the channels to the end for it and back afterwards.
        """
        raise NotImplementedError('Exercise `diffit.DiffiTResBlock.forward` is not done yet: write it in course/diffit.py (book/05_diffit.ipynb, section "Exercise: diffit.DiffiTResBlock.forward").')


# ---------------------------------------------------------------------------------------------------------------
# The image-space DiffiT: a U-shaped hierarchy of windowed TMSA
# ---------------------------------------------------------------------------------------------------------------
class Downsample(nn.Module):
    """A 3×3 convolution with stride 2: halves H and W, and changes the channels to the next level's."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour ×2, then a 3×3 convolution to the upper level's channels."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class DiffiT(nn.Module):
    """The image-space DiffiT (Fig. 4), class-conditional, called as `model(x, t, y)`.

    - `t_embedder` (sinusoid -> Linear -> SiLU -> Linear, the paper's "positional time embedding and a small MLP
      with Swish") and `y_embedder` (num_classes + 1 rows: the last is the null class): the time token
      x_t = t_embedder(t) + y_embedder(y), (B, time_dim). The paper's image-space models are unconditional; here
      the class is added to the time token, as the official latent model does.
    - `tokenizer`: a 3×3 conv from `in_channels` to channels[0].
    - `encoder[i]`: depths[i] `DiffiTResBlock`s at level i (resolution img_size / 2^i, channels[i]);
      `downsample[i]` (i < L − 1) goes from level i to level i + 1. The last level is the bottom of the U.
    - `decoder[j]`, `upsample[j]`, j = 0 .. L − 2, from the bottom up: `upsample[j]` goes to level i = L − 2 − j,
      whose encoder output is concatenated (channels last in the concatenation, after the upsampled features),
      then depths[i] ResBlocks (the first one maps 2·channels[i] back to channels[i]).
    - `head`: GroupNorm -> SiLU -> 3×3 conv to `in_channels`, zero-initialised (a fresh model predicts ε = 0).

    Windows: `window_size` at every level, or the level's whole feature map where that is smaller; None means
    global attention everywhere (one window per level). `time_entry` picks where time enters for the chapter's
    ablation (`TIME_ENTRIES`); the default, "tmsa", is the paper's model.
    """

    def __init__(self, img_size: int = 8, in_channels: int = 1, channels=(32, 64), depths=(1, 1),
                 window_size: int | None = 4, num_heads: int = 2, mlp_ratio: float = 2.0, time_dim: int = 64,
                 num_classes: int = 10, num_groups: int = 8, time_entry: str = "tmsa"):
        super().__init__()
        if len(channels) != len(depths):
            raise ValueError(f"channels {channels} and depths {depths} should list one entry per level")
        if time_entry not in TIME_ENTRIES:
            raise ValueError(f"time_entry should be one of {', '.join(TIME_ENTRIES)}, got {time_entry!r}")
        self.img_size, self.in_channels, self.num_classes = img_size, in_channels, num_classes
        self.channels, self.depths, self.time_entry = tuple(channels), tuple(depths), time_entry
        L = len(channels)
        sizes = [img_size // 2**i for i in range(L)]
        self.windows = [s if window_size is None else min(window_size, s) for s in sizes]
        block_cls = TIME_ENTRIES[time_entry]

        def res(cin, cout, level):
            return DiffiTResBlock(cin, cout, time_dim, num_heads, self.windows[level], mlp_ratio, num_groups,
                                  block_cls=block_cls)

        self.t_embedder = TimestepEmbedder(time_dim)
        self.y_embedder = nn.Embedding(num_classes + 1, time_dim)
        self.tokenizer = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.encoder = nn.ModuleList(nn.ModuleList(res(channels[i], channels[i], i) for _ in range(depths[i]))
                                     for i in range(L))
        self.downsample = nn.ModuleList(Downsample(channels[i], channels[i + 1]) for i in range(L - 1))
        self.upsample = nn.ModuleList(Upsample(channels[i + 1], channels[i]) for i in reversed(range(L - 1)))
        self.decoder = nn.ModuleList(
            nn.ModuleList(res(2 * channels[i] if k == 0 else channels[i], channels[i], i) for k in range(depths[i]))
            for i in reversed(range(L - 1)))
        self.head = nn.Sequential(nn.GroupNorm(math.gcd(num_groups, channels[0]), channels[0]), nn.SiLU(),
                                  nn.Conv2d(channels[0], in_channels, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, H, W), t: (B,), y: (B,) labels or None (the null class) -> ε̂: (B, C, H, W).

        Figure 4 with the class docstring's choices: the time token temb = t_embedder(t) + y_embedder(y) reaches
        every ResBlock as block(h, temb); the encoder levels hand their outputs, one per resolution above the
        bottom, to the decoder levels of the same resolution, which concatenate [upsampled h, that output] along the
        channels; `tokenizer` first, `head` last. `hint("diffit.DiffiT.forward")` when stuck.
        """
        raise NotImplementedError('Exercise `diffit.DiffiT.forward` is not done yet: write it in course/diffit.py (book/05_diffit.ipynb, section "Exercise: diffit.DiffiT.forward").')


# ---------------------------------------------------------------------------------------------------------------
# Where time enters: the chapter's ablation (the paper's Table 6 in miniature). Given code.
# ---------------------------------------------------------------------------------------------------------------
class _BiasedSoftmax(nn.Softmax):
    """nn.Softmax that first adds `extra` (set just before each call) to the logits."""

    def __init__(self):
        super().__init__(dim=-1)
        self.extra = None

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return super().forward(logits if self.extra is None else logits + self.extra)


class TimeBiasAttention(TMSA):
    """Time only in the relative position bias: B(x_t) = table[index] + (W_b x_t)[index], and no time in q, k, v.

    `bias_temb` maps the time token to one extra table ((2ws − 1)² entries × heads) per image; it is added to the
    logits through the softmax, so the rest is your TMSA.forward with temb=None.
    """

    def __init__(self, dim: int, temb_dim: int, num_heads: int, window_size: int, qkv_bias: bool = True):
        super().__init__(dim, None, num_heads, window_size, qkv_bias)
        self.bias_temb = nn.Linear(temb_dim, (2 * window_size - 1) ** 2 * num_heads)
        self.softmax = _BiasedSoftmax()

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        B, H, W, _ = x.shape
        N, heads = self.window_size**2, self.num_heads
        table = self.bias_temb(temb).view(B, -1, heads)  # (B, (2ws-1)^2, heads)
        extra = table[:, self.relative_position_index.view(-1)].view(B, N, N, heads).permute(0, 3, 1, 2)
        windows_per_image = (H // self.window_size) * (W // self.window_size)
        self.softmax.extra = extra.repeat_interleave(windows_per_image, dim=0)  # (B * nW, heads, N, N)
        try:
            return super().forward(x, None)
        finally:
            self.softmax.extra = None


class TimeBiasBlock(DiffiTBlock):
    """A DiffiT block whose attention reads time only through its relative position bias."""

    def __init__(self, hidden_size, num_heads, mlp_ratio=4.0, window_size=4, temb_dim=None):
        super().__init__(hidden_size, num_heads, mlp_ratio, window_size, temb_dim)
        self.attn = TimeBiasAttention(hidden_size, temb_dim or hidden_size, num_heads, window_size)


class InputTimeBlock(DiffiTBlock):
    """Time added to the block's input tokens (a projection of x_t, as in the paper's Table 4 baselines), then
    plain windowed attention: the attention sees time only through the token values."""

    def __init__(self, hidden_size, num_heads, mlp_ratio=4.0, window_size=4, temb_dim=None):
        super().__init__(hidden_size, num_heads, mlp_ratio, window_size, temb_dim)
        self.attn = TMSA(hidden_size, None, num_heads, window_size)
        self.temb_proj = nn.Linear(temb_dim or hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return super().forward(x + self.temb_proj(temb)[:, None, None, :], None)


class AdaLNBlock(DiffiTBlock):
    """DiT's adaLN-Zero (chapter 2) around plain windowed attention: shift, scale and gate regressed from x_t."""

    def __init__(self, hidden_size, num_heads, mlp_ratio=4.0, window_size=4, temb_dim=None):
        super().__init__(hidden_size, num_heads, mlp_ratio, window_size, temb_dim)
        self.attn = TMSA(hidden_size, None, num_heads, window_size)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(temb_dim or hidden_size, 6 * hidden_size))
        nn.init.zeros_(self.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.adaLN_modulation[-1].bias)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """Your chapter-2 `DiTBlock.forward`, run on this block's layers, its attention windowed: (B, H, W, C)."""
        B, H, W, C = x.shape

        def windowed(tokens):  # (B, H·W, C) -> TMSA without time on the (B, H, W, C) map -> (B, H·W, C)
            return self.attn(tokens.reshape(B, H, W, C), None).reshape(B, H * W, C)

        view = SimpleNamespace(adaLN_modulation=self.adaLN_modulation, norm1=self.norm1, attn=windowed,
                               norm2=self.norm2, mlp=self.mlp)
        return DiTBlock.forward(view, x.reshape(B, H * W, C), temb).reshape(B, H, W, C)


TIME_ENTRIES = {  # time_entry -> the block class of every DiffiTResBlock
    "tmsa": DiffiTBlock,  # the paper: time in q, k and v (Eqs 3-5)
    "bias": TimeBiasBlock,  # time only in the relative position bias (Table 6, "relative position bias")
    "input": InputTimeBlock,  # time added to each block's input tokens; plain windowed attention
    "adaLN": AdaLNBlock,  # DiT's adaLN-Zero with plain windowed attention
}

COURSE_CONFIGS = {  # the chapter's models for 8×8 digits
    "DiffiT-T": dict(channels=(32, 64), depths=(1, 1), num_heads=2, time_dim=64, mlp_ratio=2.0),
    "DiffiT-S": dict(channels=(64, 128), depths=(1, 1), num_heads=4, time_dim=128, mlp_ratio=2.0),
}


def create_diffit(name: str = "DiffiT-T", **kwargs) -> DiffiT:
    """`create_diffit("DiffiT-T", window_size=2, time_entry="adaLN")`: one of the chapter's configurations."""
    if name not in COURSE_CONFIGS:
        raise KeyError(f"unknown configuration {name!r}; known: {', '.join(COURSE_CONFIGS)}")
    return DiffiT(**{**COURSE_CONFIGS[name], **kwargs})


# ---------------------------------------------------------------------------------------------------------------
# The latent DiffiT of the official code (ImageNet 256/512): isotropic, patch 2, global attention. Given code.
# ---------------------------------------------------------------------------------------------------------------
class LatentFinalLayer(nn.Module):
    """LayerNorm (no affine) -> SiLU -> Linear(D, p·p·C_out): the official latent model's `FinalLayer` (no adaLN)."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(F.silu(self.norm_final(x)))


class LatentDiffiT(nn.Module):
    """The official latent DiffiT (class `DiffiT` in NVlabs/DiffiT), with the official parameter names.

    A DiT-like ViT on VAE latents: `x_embedder` (patch p conv), the fixed sin-cos `pos_embed`, the time token
    c = t_embedder(t) + y_embedder(y) (the class enters through the time token of every TMSA; no adaLN), `depth`
    DiffiT blocks whose window is the whole (input_size/p)² grid (global attention, so the bias table has
    (2·grid − 1)² entries per head), and `final_layer` (LN -> SiLU -> Linear, zero-initialised).

    It is called `LatentDiffiT` here because the chapter's `DiffiT` is the image-space U-shaped model; its blocks are
    the same `DiffiTBlock` and `TMSA` classes, fed the token grid as (B, h, w, D). `LatentDiffiT_models["DiffiT-XL/2"]`
    is the released configuration (depth 28, width 1152, 16 heads: 561 M parameters, the paper's Table 9).
    """

    def __init__(self, input_size: int = 32, patch_size: int = 2, in_channels: int = 4, hidden_size: int = 1152,
                 depth: int = 28, num_heads: int = 16, mlp_ratio: float = 4.0, class_dropout_prob: float = 0.1,
                 num_classes: int = 1000, learn_sigma: bool = True):
        super().__init__()
        self.input_size, self.patch_size, self.in_channels = input_size, patch_size, in_channels
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.num_heads, self.num_classes = num_heads, num_classes
        self.grid = input_size // patch_size
        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid**2, hidden_size), requires_grad=False)
        self.blocks = nn.ModuleList(DiffiTBlock(hidden_size, num_heads, mlp_ratio, window_size=self.grid)
                                    for _ in range(depth))
        self.final_layer = LatentFinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """As the official `_initialize_weights`: xavier Linears with zero bias, sin-cos positions, xavier patch
        embedding, N(0, 0.02) label table and time MLP, zero output Linear (no adaLN to zero)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        self.pos_embed.data.copy_(get_2d_sincos_pos_embed(self.pos_embed.shape[-1], self.grid)[None])
        with torch.no_grad():
            nn.init.xavier_uniform_(self.x_embedder.proj.weight.flatten(1))  # the conv as a Linear (D, C·p·p)
            self.x_embedder.proj.bias.zero_()
            for table in (self.y_embedder.embedding_table, self.t_embedder.mlp[0], self.t_embedder.mlp[2]):
                table.weight.normal_(0.0, 0.02)
            self.final_layer.linear.weight.zero_()
            self.final_layer.linear.bias.zero_()

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, H, W), t: (B,), y: (B,) or None (the null class) -> (B, C_out, H, W)."""
        if y is None:
            y = torch.full_like(t, self.num_classes)
        B = x.shape[0]
        tokens = self.x_embedder(x) + self.pos_embed  # (B, N, D)
        c = self.t_embedder(t) + self.y_embedder(y, self.training)  # (B, D): class added to the time token
        grid = tokens.reshape(B, self.grid, self.grid, -1)  # (B, h, w, D): one window, the whole grid
        for block in self.blocks:
            grid = block(grid, c)
        out = self.final_layer(grid.reshape(B, self.grid**2, -1))  # (B, N, p*p*C_out)
        return unpatchify(out, self.patch_size)


LatentDiffiT_models = {
    "DiffiT-XL/2": lambda **kw: LatentDiffiT(**{"depth": 28, "hidden_size": 1152, "num_heads": 16, "patch_size": 2,
                                               **kw}),
}

"""The conditioning ablation of chapter 2 (Peebles & Xie, ICCV 2023, §3.2 and Figure 5): four ways for the timestep
t and the class y to reach DiT's blocks.

- "in-context": t and y become two more tokens beside the patch tokens; the blocks are plain ViT blocks;
- "cross-attention": t and y form a 2-token sequence that every block cross-attends to;
- "adaLN": the blocks' LayerNorms are modulated by c = t + y, with no gate and no zero initialisation;
- "adaLN-Zero": DiT itself.

Given code, not an exercise. It is built from *your* chapter-1 and chapter-2 layers, imported from `course.vit` and
`course.dit` when a model is built (so the reference stands in under `COURSE_SOLUTIONS=1`): every variant runs your
`ViTBlock` or `DiTBlock` unchanged, inside DiT's embedders, positions and unpatchify. Two details differ from the
paper's code, both so that your blocks are reused as they are: the cross-attention layer comes *before* the
self-attention of each block (the paper puts it after; in a stack the order differs only at its two ends), and
"adaLN" is your DiTBlock with its gates held at 1.
"""
from __future__ import annotations

import importlib

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

CONDITIONINGS = ("in-context", "cross-attention", "adaLN", "adaLN-Zero")


def _dit():
    """Your `course.dit`, imported now (the reference under COURSE_SOLUTIONS=1)."""
    return importlib.import_module("course.dit")


class InContextBlock(nn.Module):
    """Your `vit.ViTBlock` on the sequence [t, y, patch tokens]: it reads the condition through attention only."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.block = importlib.import_module("course.vit").ViTBlock(hidden_size, num_heads, mlp_ratio)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.block(x)  # (B, 2 + N, D); c is already inside x


class CrossAttention(nn.Module):
    """Multi-head attention from the image tokens (queries) to a few condition tokens (keys and values)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x: (B, N, D) queries, context: (B, M, D) keys and values -> (B, N, D)."""
        q = rearrange(self.q(x), "b n (h d) -> b h n d", h=self.num_heads)
        k, v = rearrange(self.kv(context), "b m (two h d) -> two b h m d", two=2, h=self.num_heads)
        heads = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, D/heads)
        return self.proj(rearrange(heads, "b h n d -> b n (h d)"))


class CrossAttentionBlock(nn.Module):
    """A residual cross-attention layer to c = [t, y] (B, 2, D), then your `vit.ViTBlock`."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm_cross = nn.LayerNorm(hidden_size, eps=1e-6)
        self.cross_attn = CrossAttention(hidden_size, num_heads)
        self.block = importlib.import_module("course.vit").ViTBlock(hidden_size, num_heads, mlp_ratio)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        attended = self.cross_attn(self.norm_cross(x), c)  # (B, N, D): what the 2 condition tokens tell each token
        return self.block(x + attended)


class UngatedModulation(nn.Sequential):
    """SiLU -> Linear(D, 4D) giving shift, scale for each of the two LayerNorms, returned in DiTBlock's 6-chunk
    layout (shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp) with both gates fixed at 1."""

    def __init__(self, hidden_size: int):
        super().__init__(nn.SiLU(), nn.Linear(hidden_size, 4 * hidden_size, bias=True))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, shift_mlp, scale_mlp = super().forward(c).chunk(4, dim=1)
        one = torch.ones_like(shift_msa)
        return torch.cat([shift_msa, scale_msa, one, shift_mlp, scale_mlp, one], dim=1)  # (B, 6D)


class AdaLNBlock(nn.Module):
    """adaLN without the Zero: your `dit.DiTBlock` whose modulation has no gates (`UngatedModulation`) and keeps its
    ordinary initialisation, so the block does not start as the identity."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.block = _dit().DiTBlock(hidden_size, num_heads, mlp_ratio)
        self.block.adaLN_modulation = UngatedModulation(hidden_size)

    @property
    def adaLN_modulation(self) -> nn.Module:
        return self.block.adaLN_modulation

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.block(x, c)


class PlainFinalLayer(nn.Module):
    """LayerNorm (with its own affine parameters) and a Linear: the decoder of the variants without adaLN."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(self.norm_final(x))


BLOCKS = {"in-context": InContextBlock, "cross-attention": CrossAttentionBlock, "adaLN": AdaLNBlock}


class ConditioningDiT(nn.Module):
    """Your DiT with one of the four block designs of the paper's Figure 5, called as `model(x, t, y)`.

    `dit` is a `course.dit.DiT(**kwargs)`, initialised by your `initialize_weights`; for the three other designs its
    blocks (and, without adaLN, its final layer) are swapped for the ones above. Everything else is shared: the
    embedders and their initialisation, the fixed positions, the widths, label dropout, and the zero-initialised
    output Linear. The new layers get DiT's ordinary initialisation (xavier-uniform Linears, zero biases,
    LayerNorms at 1 and 0), with no zeros inside the blocks.
    """

    def __init__(self, conditioning: str = "adaLN-Zero", **kwargs):
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning should be one of {CONDITIONINGS}, got {conditioning!r}")
        self.conditioning = conditioning
        self.dit = _dit().DiT(**kwargs)
        for name in ("num_classes", "in_channels", "out_channels", "input_size", "patch_size", "learn_sigma"):
            setattr(self, name, getattr(self.dit, name))
        if conditioning == "adaLN-Zero":
            return
        width = self.dit.pos_embed.shape[-1]
        ratio = self.dit.blocks[0].mlp.fc1.out_features / width
        self.dit.blocks = nn.ModuleList(BLOCKS[conditioning](width, self.dit.num_heads, ratio)
                                        for _ in self.dit.blocks)
        if conditioning != "adaLN":
            self.dit.final_layer = PlainFinalLayer(width, self.patch_size, self.out_channels)
        new_linears = [m for m in (*self.dit.blocks.modules(), *self.dit.final_layer.modules())
                       if isinstance(m, nn.Linear)]
        for layer in new_linears:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        nn.init.zeros_(self.dit.final_layer.linear.weight)
        nn.init.zeros_(self.dit.final_layer.linear.bias)

    @property
    def y_embedder(self) -> nn.Module:
        """The label embedder, which drops labels while training (see `Diffusion.loss`)."""
        return self.dit.y_embedder

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W), t: (B,), y: (B,) -> (B, C_out, H, W)."""
        net = self.dit
        if self.conditioning == "adaLN-Zero":
            return net(x, t, y)  # your DiT.forward
        conditions = net.t_embedder(t), net.y_embedder(y, self.training)  # (B, D) each
        patches = net.x_embedder(x) + net.pos_embed  # (B, N, D)
        if self.conditioning == "in-context":
            h, cond = torch.cat([torch.stack(conditions, dim=1), patches], dim=1), None  # (B, 2 + N, D)
        elif self.conditioning == "cross-attention":
            h, cond = patches, torch.stack(conditions, dim=1)  # (B, N, D), (B, 2, D)
        else:
            h, cond = patches, sum(conditions)  # (B, N, D), (B, D)
        for layer in net.blocks:
            h = layer(h, cond)
        h = h[:, h.shape[1] - patches.shape[1]:]  # in-context: the 2 condition tokens leave before the decoder
        return net.unpatchify(net.final_layer(h, cond))


class UnconditionalDiT(nn.Module):
    """Chapter 4's contrast to GenViT: your `DiT` called with the null label always, an unconditional ε-predictor.
    `denoise` is its forward, so `genvit.hybrid_loss` trains it as it trains GenViT (p_{y|x} = 0)."""

    def __init__(self, **kwargs):
        super().__init__()
        self.net = _dit().DiT(**kwargs)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, t, torch.full_like(t, self.net.num_classes))  # (B, C_out, H, W)

    denoise = forward


# ---------------------------------------------------------------------------------------------------------------
# Chapter 3's conditioning ablation: U-ViT with t and y through adaLN-Zero instead of as tokens (`uvit.AdaLNUViT`)
# ---------------------------------------------------------------------------------------------------------------
class AdaLNUViTBlock(nn.Module):
    """A DiT block (`block`, called as block(x, c)) behind U-ViT's optional long-skip fusion Linear(2D, D)."""

    def __init__(self, block: nn.Module, dim: int, skip: bool = False):
        super().__init__()
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None
        self.block = block

    def forward(self, x: torch.Tensor, c: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat((x, skip), -1))
        return self.block(x, c)


def adaln_uvit_forward(model: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None,
                       unpatchify) -> torch.Tensor:
    """The forward of `uvit.AdaLNUViT`: patch tokens only; c = time_embed(t) + label_emb(y) reaches every block;
    the long skips pair the in-blocks with the out-blocks in reverse order, as in U-ViT."""
    h = model.patch_embed(x) + model.pos_embed  # (B, N, D)
    c = model.time_embed(t)  # (B, D)
    if model.label_emb is not None:
        c = c + model.label_emb(torch.full_like(t, model.num_classes, dtype=torch.long) if y is None else y)
    encoded = []
    for block in model.in_blocks:
        h = block(h, c)
        encoded.append(h)
    h = model.mid_block(h, c)
    for block, skip in zip(model.out_blocks, encoded[::-1]):
        h = block(h, c, skip)
    return model.final_layer(unpatchify(model.decoder_pred(model.norm(h)), model.patch_size))


# This file is generated from solutions/vit.py by `python -m course generate`.
# Fill in each block that raises NotImplementedError, then run `check("vit")` in the notebook
# or `python -m course check vit` in a shell.
"""Chapter 1: a plain Vision Transformer denoiser.

Paper: Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale" (ICLR 2021):
cut the image into p × p patches, embed each as a token, add position embeddings, and run pre-norm Transformer
blocks (Vaswani et al., "Attention Is All You Need", NeurIPS 2017). For denoising, the classification head becomes a
linear layer per token that predicts that patch's noise, and `unpatchify` puts the patches back into an image. The
embedders and the fixed 2D sin-cos positions are those of the official DiT code; the conditioning is the simplest
there is: the time + class vector is added to every token once, at the input (chapter 2 does better).

    x (B,C,H,W) ─ PatchEmbed ─ + pos ─ + c ─ [ViTBlock] × depth ─ LayerNorm ─ Linear ─ unpatchify ─ ε̂ (B,C,H,W)
                                         ▲
                    c = TimestepEmbedder(t) + Embedding(y)
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .layers import Attention, Mlp, PatchEmbed, TimestepEmbedder, get_2d_sincos_pos_embed, unpatchify


class ViTBlock(nn.Module):
    """The pre-norm Transformer block of ViT (Dosovitskiy et al. 2021, Eqs. 2-3):

        x = x + Attention(LayerNorm(x))
        x = x + MLP(LayerNorm(x))
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads=num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(hidden_size, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), approximate="tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, N, D) -> (B, N, D). `hint("vit.ViTBlock.forward")` when stuck."""
        raise NotImplementedError('Exercise `vit.ViTBlock.forward` is not done yet: write it in course/vit.py (book/01_unet_vit.ipynb, section "Exercise: vit.ViTBlock.forward").')


class ViTDenoiser(nn.Module):
    """A class-conditional ViT denoiser ε_θ(x_t, t, y).

    Tokens: `x_embedder` (a p × p conv of stride p) gives (B, N, D), N = (H/p)·(W/p), row-major; the fixed 2D
    sin-cos `pos_embed` (DiT's, not trained) is added; then the conditioning c = t_embedder(t) + y_embedder(y)
    (B, D) is added to every token. After the blocks: `norm`, then the `head` maps each token to its patch's
    p·p·C noise values, and `unpatchify` rebuilds the image.

    Inputs of another size than `img_size` work too: `pos_embed_for(h, w)` computes the sin-cos table for any
    grid. `y=None` (or the label `num_classes`) is the null class of classifier-free guidance.
    """

    def __init__(self, img_size: int = 8, patch_size: int = 2, in_channels: int = 1, hidden_size: int = 128,
                 depth: int = 4, num_heads: int = 4, mlp_ratio: float = 4.0, num_classes: int = 10):
        super().__init__()
        self.in_channels, self.patch_size, self.num_classes = in_channels, patch_size, num_classes
        self.x_embedder = PatchEmbed(img_size, patch_size, in_channels, hidden_size)
        grid = self.x_embedder.grid_size
        # Fixed, not trained (DiT keeps it as a parameter with requires_grad=False, so it is saved with the model).
        self.pos_embed = nn.Parameter(get_2d_sincos_pos_embed(hidden_size, grid)[None], requires_grad=False)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = nn.Embedding(num_classes + 1, hidden_size)  # + 1: the null class
        self.blocks = nn.ModuleList([ViTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(hidden_size, eps=1e-6)
        self.head = nn.Linear(hidden_size, patch_size * patch_size * in_channels)
        # A zero head: the fresh model predicts ε̂ = 0, the mean of the target, so training starts at loss 1
        # instead of first undoing a random output (the official DiT zeroes its final layer the same way).
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def pos_embed_for(self, h: int, w: int) -> torch.Tensor:
        """The fixed position embedding for an h × w grid of patches: (1, h·w, D)."""
        grid = self.x_embedder.grid_size
        if (h, w) == (grid, grid):
            return self.pos_embed
        D = self.pos_embed.shape[-1]
        return get_2d_sincos_pos_embed(D, (h, w))[None].to(self.pos_embed)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, H, W), t: (B,) timesteps, y: (B,) labels or None -> ε̂: (B, C, H, W).

        The figure of the module docstring; an input of another size than `img_size` gets the positions of its own
        (H/p, W/p) grid and comes back on that grid, square or not. `hint("vit.ViTDenoiser.forward")` when stuck.
        """
        raise NotImplementedError('Exercise `vit.ViTDenoiser.forward` is not done yet: write it in course/vit.py (book/01_unet_vit.ipynb, section "Exercise: vit.ViTDenoiser.forward").')

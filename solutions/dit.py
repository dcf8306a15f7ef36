"""Chapter 2: DiT, the diffusion transformer with adaLN-Zero conditioning.

Paper: Peebles & Xie, "Scalable Diffusion Models with Transformers" (ICCV 2023). The classes mirror the paper's
Figure 3 and the official model code: the same class names, parameter names, chunk order and initialisation, so
that an official DiT checkpoint loads into `DiT` with `load_state_dict(..., strict=True)`.

    x (B, C, H, W) --PatchEmbed--> tokens (B, N, D) + pos_embed         N = (H/p)·(W/p)
    t (B,) --TimestepEmbedder--> (B, D) ┐
    y (B,) --LabelEmbedder-----> (B, D) ┴-- c = t + y                   (B, D)
    N × DiTBlock(x, c) --> FinalLayer(x, c) --> (B, N, p·p·C_out) --unpatchify--> (B, C_out, H, W)

Below the model: the paper's configurations by name (`DiT_models`, `DiT-S/2` ... `DiT-XL/8`) and the course's small
ones (`course_models`). The three other conditioning schemes of the paper's ablation (in-context tokens,
cross-attention, adaLN without zero-init) are given code in `course/lab/conditioning.py`, built from these classes.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .layers import Attention, Mlp, PatchEmbed, TimestepEmbedder, get_2d_sincos_pos_embed, unpatchify


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The adaptive affine map of adaLN: x · (1 + scale) + shift, one (shift, scale) per image.

    x: (B, N, D) tokens; shift, scale: (B, D), broadcast over the N tokens. The `1 +` makes scale = 0 the identity,
    so a zero-initialised modulation leaves the normalised tokens as they are.
    """
    # BEGIN SOLUTION
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)  # (B, N, D)
    # END SOLUTION


# ---------------------------------------------------------------------------------------------------------------
# Embedders of the conditions
# ---------------------------------------------------------------------------------------------------------------
class LabelEmbedder(nn.Module):
    """Class labels -> vectors of width `hidden_size`, with label dropout for classifier-free guidance.

    With `dropout_prob > 0` the table has one extra row, index `num_classes`: the null label ∅ that the model
    learns as "no class". Ho & Salimans, "Classifier-Free Diffusion Guidance" (NeurIPS 2021 workshop).
    For a DiT this is the one place labels are dropped: `Diffusion.loss` refuses to drop them a second time
    (train a DiT with `p_uncond=0`).
    """

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float):
        super().__init__()
        use_cfg_embedding = dropout_prob > 0
        self.embedding_table = nn.Embedding(num_classes + use_cfg_embedding, hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def token_drop(self, labels: torch.Tensor, train: bool, force_drop_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Replace labels by the null label `num_classes`, to train the unconditional model too.

        - `force_drop_ids` given: drop exactly where `force_drop_ids == 1`, whatever `train` says;
        - else, while training and when `dropout_prob > 0`: drop each label where `torch.rand(B) < dropout_prob`
          (one uniform number per label, drawn on the labels' device);
        - else (evaluation): return the labels unchanged.
        labels: (B,) int64 -> (B,) int64. (The official code tests `train` in `forward` and calls `token_drop`
        only when needed; here the whole decision is in this one method.)
        """
        # BEGIN SOLUTION
        if force_drop_ids is not None:
            drop_ids = force_drop_ids == 1  # (B,) bool
        elif train and self.dropout_prob > 0:
            drop_ids = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
        else:
            return labels
        return torch.where(drop_ids, torch.full_like(labels, self.num_classes), labels)
        # END SOLUTION

    def forward(self, labels: torch.Tensor, train: bool, force_drop_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.embedding_table(self.token_drop(labels, train, force_drop_ids))  # (B, D)


# ---------------------------------------------------------------------------------------------------------------
# The DiT block with adaLN-Zero, and the final layer
# ---------------------------------------------------------------------------------------------------------------
class DiTBlock(nn.Module):
    """A Transformer block whose LayerNorms are modulated by the condition c, with gated residuals (adaLN-Zero).

    From c, `adaLN_modulation` (SiLU -> Linear(D, 6D)) regresses six vectors, in this order:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp           each (B, D)
    and, with LayerNorms that have no parameters of their own,
        x = x + gate_msa · Attention(modulate(norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp · Mlp(modulate(norm2(x), shift_mlp, scale_mlp))
    (the paper's γ, β are scale, shift; α is the gate, §3.2 "adaLN-Zero block"). `DiT.initialize_weights` zeroes
    the Linear of `adaLN_modulation`, so every gate starts at 0 and every block starts as the identity.
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads=num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), approximate="tanh")
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x: (B, N, D) tokens, c: (B, D) condition -> (B, N, D). `hint("dit.DiTBlock.forward")` when stuck."""
        # BEGIN SOLUTION
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))  # (B, N, D)
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))  # (B, N, D)
        return x
        # END SOLUTION


class FinalLayer(nn.Module):
    """The decoder of DiT: adaptive LayerNorm, then a Linear from D to p·p·C_out values per token.

    `adaLN_modulation` (SiLU -> Linear(D, 2D)) gives shift, scale in this order; no gate. Output: (B, N, p·p·C_out).
    """

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x: (B, N, D), c: (B, D) -> (B, N, p·p·C_out). `hint("dit.FinalLayer.forward")` when stuck."""
        # BEGIN SOLUTION
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)  # (B, D) each
        x = modulate(self.norm_final(x), shift, scale)  # (B, N, D)
        return self.linear(x)  # (B, N, p * p * C_out)
        # END SOLUTION


# ---------------------------------------------------------------------------------------------------------------
# DiT
# ---------------------------------------------------------------------------------------------------------------
class DiT(nn.Module):
    """Diffusion model with a Transformer backbone (Peebles & Xie, ICCV 2023), called as `model(x, t, y)`.

    x: (B, in_channels, input_size, input_size) noisy images or latents; t: (B,) timesteps; y: (B,) class labels,
    `num_classes` meaning "no label". Returns (B, out_channels, H, W): the predicted noise ε, followed, when
    `learn_sigma`, by C more channels that parameterise the variance Σ_θ (Improved DDPM's learned range). The
    paper learns Σ; the course trains with the plain ε-MSE and a fixed variance, so it builds its models with
    `learn_sigma=False` (the losses and samplers of the course would use only the first C channels anyway).
    """

    def __init__(self, input_size: int = 32, patch_size: int = 2, in_channels: int = 4, hidden_size: int = 1152,
                 depth: int = 28, num_heads: int = 16, mlp_ratio: float = 4.0, class_dropout_prob: float = 0.1,
                 num_classes: int = 1000, learn_sigma: bool = True):
        super().__init__()
        self.learn_sigma = learn_sigma
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.input_size = input_size
        self.patch_size = patch_size
        self.num_heads = num_heads
        self.num_classes = num_classes

        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size, bias=True)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        num_patches = self.x_embedder.num_patches
        # A fixed 2D sin-cos embedding: stored as a parameter (as in the official code) that is never trained.
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, hidden_size), requires_grad=False)

        self.blocks = nn.ModuleList([DiTBlock(hidden_size, num_heads, mlp_ratio=mlp_ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """The paper's initialisation (§3.2 and the official code), in place:

        1. every nn.Linear: weight xavier-uniform, bias 0;
        2. `pos_embed`: the 2D sin-cos embedding of the (H/p, W/p) grid (`get_2d_sincos_pos_embed`), as (1, N, D);
        3. the patch embedding's Conv2d: xavier-uniform on its weight seen as a (D, C·p·p) matrix, bias 0;
        4. the label table and the two Linear weights of the timestep MLP: normal, std 0.02;
        5. zero (weight and bias): the last Linear of every block's `adaLN_modulation`, and both the
           `adaLN_modulation` Linear and the output `linear` of the final layer.
        After 5, every block is the identity and the model outputs zeros: "adaLN-Zero".
        """
        # BEGIN SOLUTION
        def _basic_init(module):
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

        self.apply(_basic_init)

        grid = self.x_embedder.grid_size
        pos_embed = get_2d_sincos_pos_embed(self.pos_embed.shape[-1], grid)  # (N, D)
        self.pos_embed.data.copy_(pos_embed.unsqueeze(0))

        w = self.x_embedder.proj.weight.data  # (D, C, p, p)
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)

        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)

        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)
        # END SOLUTION

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, p·p·C_out) -> (B, C_out, H, W), with a token's values in (row in patch, column in patch, channel)
        order (`layers.unpatchify`)."""
        return unpatchify(x, self.patch_size)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W), t: (B,), y: (B,) -> (B, C_out, H, W).

        The figure of the module docstring: the patch tokens carry the fixed `pos_embed`; the condition c is one
        vector per image from the timestep and the label together, the labels being dropped only while the model
        trains; every block and the final layer read the tokens and c. `hint("dit.DiT.forward")` when stuck.
        """
        # BEGIN SOLUTION
        x = self.x_embedder(x) + self.pos_embed  # (B, N, D)
        t = self.t_embedder(t)  # (B, D)
        y = self.y_embedder(y, self.training)  # (B, D)
        c = t + y  # (B, D)
        for block in self.blocks:
            x = block(x, c)  # (B, N, D)
        x = self.final_layer(x, c)  # (B, N, p * p * C_out)
        return self.unpatchify(x)  # (B, C_out, H, W)
        # END SOLUTION

    def forward_with_cfg(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, cfg_scale: float) -> torch.Tensor:
        """Classifier-free guidance in one batched forward pass, as the official sampler calls it.

        The caller doubles the batch: x = [x_half, x_half], t = [t_half, t_half], y = [y_cond, y_null] (y_null all
        `num_classes`). Only the first half of x is used: it is run twice, with the first and the second half of t
        and y, and the noise channels are guided,
            ε = ε_u + s · (ε_c − ε_u),       ε_c from the first half, ε_u from the second,
        and the guided ε is returned for both halves (so samplers can keep the doubled batch). Channels past the
        first `in_channels` (the learned Σ) are returned unguided, each half from its own pass.

        The official code guides only the first 3 channels of its 4-channel latents "for exact reproducibility"
        (its comment notes that guiding all channels is the standard approach); the course guides all
        `in_channels` noise channels.
        """
        # BEGIN SOLUTION
        half = x[: len(x) // 2]  # (B/2, C, H, W)
        combined = torch.cat([half, half], dim=0)  # (B, C, H, W)
        model_out = self.forward(combined, t, y)  # (B, C_out, H, W)
        eps, rest = model_out[:, : self.in_channels], model_out[:, self.in_channels:]
        cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)  # (B/2, C, H, W) each
        half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)
        eps = torch.cat([half_eps, half_eps], dim=0)  # (B, C, H, W)
        return torch.cat([eps, rest], dim=1)  # (B, C_out, H, W)
        # END SOLUTION


# ---------------------------------------------------------------------------------------------------------------
# Configurations: the paper's Table 1 by name, and the course's small models
# ---------------------------------------------------------------------------------------------------------------
DIT_SIZES = {  # name: (depth, hidden_size, num_heads), Table 1 of the paper
    "S": (12, 384, 6),
    "B": (12, 768, 12),
    "L": (24, 1024, 16),
    "XL": (28, 1152, 16),
}
PATCH_SIZES = (2, 4, 8)


def _named_config(depth: int, hidden_size: int, num_heads: int, patch_size: int, **defaults):
    def make(**kwargs) -> DiT:
        return DiT(depth=depth, hidden_size=hidden_size, num_heads=num_heads, patch_size=patch_size,
                   **{**defaults, **kwargs})

    return make


# "DiT-XL/2" -> a function building it; keywords override the paper's defaults (32×32×4 latents, 1000 classes,
# learned σ, class dropout 0.1), e.g. DiT_models["DiT-S/2"](input_size=8, in_channels=1, num_classes=10).
DiT_models = {f"DiT-{size}/{p}": _named_config(*DIT_SIZES[size], p) for size in DIT_SIZES for p in PATCH_SIZES}

COURSE_SIZES = {  # name: (depth, hidden_size, num_heads): the course's models for 8×8 digits
    "XXS": (2, 64, 2),
    "XS": (3, 96, 3),
    "Ti": (4, 128, 4),
    "M": (6, 192, 6),
}
COURSE_DEFAULTS = dict(input_size=8, in_channels=1, num_classes=10, learn_sigma=False, class_dropout_prob=0.1)
course_models = {f"DiT-{size}/{p}": _named_config(*COURSE_SIZES[size], p, **COURSE_DEFAULTS)
                 for size in COURSE_SIZES for p in (1, 2, 4)}


def create_dit(name: str, **kwargs) -> DiT:
    """`create_dit("DiT-S/2")` (a paper configuration) or `create_dit("DiT-Ti/2")` (one of the course's)."""
    if name in DiT_models:
        return DiT_models[name](**kwargs)
    if name in course_models:
        return course_models[name](**kwargs)
    raise KeyError(f"unknown DiT configuration {name!r}; the paper's: {', '.join(DiT_models)}; "
                   f"the course's: {', '.join(course_models)}")

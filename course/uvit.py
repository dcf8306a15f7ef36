# This file is generated from solutions/uvit.py by `python -m course generate`.
# Fill in each block that raises NotImplementedError, then run `check("uvit")` in the notebook
# or `python -m course check uvit` in a shell.
"""Chapter 3: U-ViT, a ViT backbone for diffusion in which every input is a token.

Paper: Bao, Nie, Xue, Cao, Li, Su & Zhu, "All are Worth Words: A ViT Backbone for Diffusion Models" (CVPR 2023).
The classes mirror the paper's overview figure and the official `libs/uvit.py`: the same constructor keywords, parameter
names, block order and initialisation, so that an official U-ViT state dict loads into `UViT` with
`load_state_dict(..., strict=True)` and gives the same output.

    x (B, C, H, W) --patch_embed--> patch tokens (B, N, D)                        N = (H/p)·(W/p)
    t (B,) --sinusoid(D) [--time_embed MLP]--> time token (B, 1, D)
    y (B,) --label_emb--> label token (B, 1, D)                                   (class-conditional only)
    tokens = [label, time, patches] + pos_embed                                   (B, extras + N, D)
    depth//2 in-blocks (each output pushed on a stack) -> mid_block -> depth//2 out-blocks (each pops one and
    starts with skip_linear(cat([x, skip], -1)), a Linear(2D, D)): (#blocks − 1)/2 long skips
    norm -> decoder_pred (B, extras + N, p·p·C) -> drop the extras -> unpatchify -> final_layer (3×3 conv)

Classes and null label. The official keyword `num_classes` is the number of rows of the label table; the ImageNet
256 and 512 configs pass 1001 = 1000 classes + one row that the training data loader uses as the "no label" of
classifier-free guidance (index 1000); ImageNet 64, trained without guidance, passes 1000. The course keeps that
meaning for the keyword, so official weights load: `UViT(..., num_classes=11)` is a U-ViT for 10 digit classes plus
the null label 10. The *attribute* `self.num_classes` is what the course's training loop and sampler read as the
null label (chapters 0-2): here `num_classes - 1`, i.e. 10 (None when unconditional). And where the official forward
needs a label whenever the model is class-conditional, the course's `y=None` means that null label.

Below the model: the paper's configurations (`uvit_models`), the course's small ones for 8×8 digits, and the
variants of the chapter's ablations (long skips added or left out, time and label through adaLN-Zero instead of
tokens).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from course.lab.conditioning import AdaLNUViTBlock, adaln_uvit_forward

from .dit import DiTBlock
from .layers import Attention, Mlp, PatchEmbed, TimestepEmbedder, timestep_embedding, unpatchify  # noqa: F401


class UViTBlock(nn.Module):
    """A pre-norm Transformer block with an optional long skip input (the official `Block`).

    With `skip=True` (the out-blocks) the block first fuses the long skip with the current tokens,
        x = skip_linear(concat([x, skip], dim=-1))          skip_linear: Linear(2D, D)
    and then, like any pre-norm ViT block,
        x = x + Attention(norm1(x))
        x = x + MLP(norm2(x))
    LayerNorms with affine parameters (eps 1e-5), attention without qkv bias by default, MLP with exact GELU.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = False,
                 skip: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, L, D) tokens, skip: (B, L, D) the output of the matching in-block, or None -> (B, L, D).

        A block built without `skip_linear` (in-blocks, the mid block, `skip=False`) ignores `skip`."""
        raise NotImplementedError('Exercise `uvit.UViTBlock.forward` is not done yet: write it in course/uvit.py (book/03_uvit.ipynb, section "Exercise: uvit.UViTBlock.forward").')


class AddSkipBlock(UViTBlock):
    """The ablation's "skips by addition": x + skip instead of skip_linear(concat([x, skip])), then the block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = False):
        super().__init__(dim, num_heads, mlp_ratio, qkv_bias, skip=False)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x + skip)


SKIP_MODES = {True: "concat", False: "none", "concat": "concat", "add": "add", "none": "none"}


class UViT(nn.Module):
    """The U-ViT noise predictor ε_θ(x_t, t, y), with the official constructor and parameter names.

    `depth` counts the in- and out-blocks (depth // 2 each); the mid block comes on top, so U-ViT-S with
    depth=12 has 13 blocks. `mlp_time_embed` puts Linear(D, 4D) -> SiLU -> Linear(4D, D) on the time token
    (off in the paper's CIFAR-10 and ImageNet configs: the raw sinusoid of width D is the token). `num_classes`
    > 0 adds a label token from a table of `num_classes` rows (see the module docstring for the null label);
    `conv` adds the 3×3 output convolution; `skip` the long skips. The course adds `skip="add"` for the
    ablation (x + skip in the out-blocks instead of concat + Linear); `skip=False` is the official "no skip".
    The course also adds `conv_init`: "pytorch" (the official code: the conv keeps PyTorch's default
    initialisation) or "identity" (the conv starts as the identity, `nn.init.dirac_`, bias 0; the course's
    one-channel digits model, see `COURSE_DEFAULTS`).
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0, qkv_bias: bool = False,
                 mlp_time_embed: bool = False, num_classes: int = -1, conv: bool = True, skip: bool | str = True,
                 conv_init: str = "pytorch"):
        super().__init__()
        if skip not in SKIP_MODES:
            raise ValueError(f"skip should be True, False, 'concat', 'add' or 'none', got {skip!r}")
        if conv_init not in ("pytorch", "identity"):
            raise ValueError(f"conv_init should be 'pytorch' (the official code) or 'identity', got {conv_init!r}")
        self.conv_init = conv_init
        self.embed_dim, self.in_chans, self.patch_size, self.img_size = embed_dim, in_chans, patch_size, img_size
        self.skip_mode = SKIP_MODES[skip]
        # The course's null label (module docstring): the table's last row; None when unconditional.
        self.num_classes = num_classes - 1 if num_classes > 0 else None
        self.in_channels = in_chans  # the name the course's samplers read

        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        num_patches = (img_size // patch_size) ** 2
        self.time_embed = nn.Sequential(nn.Linear(embed_dim, 4 * embed_dim), nn.SiLU(),
                                        nn.Linear(4 * embed_dim, embed_dim)) if mlp_time_embed else nn.Identity()
        if num_classes > 0:
            self.label_emb = nn.Embedding(num_classes, embed_dim)
            self.extras = 2  # [label, time]
        else:
            self.label_emb = None
            self.extras = 1  # [time]
        self.pos_embed = nn.Parameter(torch.zeros(1, self.extras + num_patches, embed_dim))  # learned

        self.in_blocks = nn.ModuleList([UViTBlock(embed_dim, num_heads, mlp_ratio, qkv_bias)
                                        for _ in range(depth // 2)])
        self.mid_block = UViTBlock(embed_dim, num_heads, mlp_ratio, qkv_bias)
        self.out_blocks = nn.ModuleList([
            AddSkipBlock(embed_dim, num_heads, mlp_ratio, qkv_bias) if self.skip_mode == "add"
            else UViTBlock(embed_dim, num_heads, mlp_ratio, qkv_bias, skip=self.skip_mode == "concat")
            for _ in range(depth // 2)])

        self.norm = nn.LayerNorm(embed_dim)
        self.decoder_pred = nn.Linear(embed_dim, patch_size**2 * in_chans)
        self.final_layer = nn.Conv2d(in_chans, in_chans, 3, padding=1) if conv else nn.Identity()
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """The official initialisation: truncated normal (std 0.02) for the position embedding and every Linear
        weight, zero Linear biases, LayerNorms at weight 1 and bias 0; the convolutions and the label table keep
        PyTorch's defaults, except the output conv when `conv_init="identity"` (the course's digits model): it
        starts as the identity, so that at step 0 the model is the U-ViT without the conv."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.conv_init == "identity" and isinstance(self.final_layer, nn.Conv2d):
            nn.init.dirac_(self.final_layer.weight)  # (C, C, 3, 3): 1 at the centre of channel c's own kernel
            nn.init.zeros_(self.final_layer.bias)

    @property
    def blocks(self) -> list[nn.Module]:
        """All blocks in the order they run: in-blocks, the mid block, out-blocks."""
        return [*self.in_blocks, self.mid_block, *self.out_blocks]

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, H, W) with H = W = img_size, t: (B,) timesteps, y: (B,) labels or None -> ε̂ (B, C, H, W).

        The official conventions (the module docstring draws them): every input is a token, the time token from
        `time_embed` on the sinusoid of width D and, when class-conditional, the label token from `label_emb`
        (y=None is the null label `self.num_classes`), in the order [label, time, patches], with `pos_embed`
        (1, extras + N, D) over all of them; the long skips pair the i-th in-block with the i-th out-block from the
        middle outwards (the first out-block meets the last in-block), given as `block(x, skip)`; `norm` and
        `decoder_pred` decode every token, only the N patch tokens become the image, and `final_layer` works on
        the image. `hint("uvit.UViT.forward")` when stuck.
        """
        raise NotImplementedError('Exercise `uvit.UViT.forward` is not done yet: write it in course/uvit.py (book/03_uvit.ipynb, section "Exercise: uvit.UViT.forward").')


# ---------------------------------------------------------------------------------------------------------------
# Configurations: the paper's (Table 1, official configs/) and the course's small ones
# ---------------------------------------------------------------------------------------------------------------
UVIT_SIZES = {  # name: (depth as the constructor counts it, embed_dim, num_heads); blocks = depth + 1
    "S": (12, 512, 8),
    "S-Deep": (16, 512, 8),
    "M": (16, 768, 12),
    "L": (20, 1024, 16),
    "H": (28, 1152, 16),
}


def _config(size: str, **fixed):
    depth, dim, heads = UVIT_SIZES[size]

    def make(**kwargs) -> UViT:
        return UViT(**{**dict(depth=depth, embed_dim=dim, num_heads=heads, mlp_ratio=4, qkv_bias=False,
                              mlp_time_embed=False), **fixed, **kwargs})

    return make


# The official configs/ files: CIFAR-10 (pixels, unconditional), ImageNet 64 (pixels), ImageNet 256 and 512
# (Stable Diffusion latents, 1001 label rows: 1000 classes + the null label of guidance).
uvit_models = {
    "U-ViT-S/2 CIFAR-10": _config("S", img_size=32, patch_size=2, in_chans=3, num_classes=-1),
    "U-ViT-S/4 CelebA-64": _config("S", img_size=64, patch_size=4, in_chans=3, num_classes=-1),
    "U-ViT-M/4 ImageNet-64": _config("M", img_size=64, patch_size=4, in_chans=3, num_classes=1000),
    "U-ViT-L/2 ImageNet-256": _config("L", img_size=32, patch_size=2, in_chans=4, num_classes=1001),
    "U-ViT-H/2 ImageNet-256": _config("H", img_size=32, patch_size=2, in_chans=4, num_classes=1001, conv=False),
    "U-ViT-L/4 ImageNet-512": _config("L", img_size=64, patch_size=4, in_chans=4, num_classes=1001),
}

# The course's U-ViT for 8×8 digits: 7 blocks (3 in, mid, 3 out: 3 long skips), 64 wide, 4 heads; 10 classes
# plus the null label (num_classes = 11 rows). Keywords override, e.g. patch_size=1 or skip="add".
# One difference from the official code: the output conv starts as the identity. With one channel it is a single
# 3×3 kernel, and from some of PyTorch's default draws training stalls for hundreds of steps, in some seeds for good,
# with a kernel that weighs two of a pixel's neighbours and not the pixel itself (chapter 3, Ablation 2;
# measured by benchmarks/bench_uvit_conv_init.py).
COURSE_DEFAULTS = dict(img_size=8, patch_size=2, in_chans=1, embed_dim=64, depth=6, num_heads=4, mlp_ratio=4,
                       qkv_bias=False, mlp_time_embed=False, num_classes=11, conv=True, skip=True,
                       conv_init="identity")


def create_uvit(name: str = "course", **kwargs) -> UViT:
    """`create_uvit()` (the course's digits model) or a paper configuration: `create_uvit("U-ViT-S/2 CIFAR-10")`."""
    if name == "course":
        return UViT(**{**COURSE_DEFAULTS, **kwargs})
    if name in uvit_models:
        return uvit_models[name](**kwargs)
    raise KeyError(f"unknown U-ViT configuration {name!r}; known: course, {', '.join(uvit_models)}")


# ---------------------------------------------------------------------------------------------------------------
# The conditioning ablation: t and y through adaLN-Zero (chapter 2's DiT block) instead of as tokens
# ---------------------------------------------------------------------------------------------------------------
class AdaLNUViT(UViT):
    """U-ViT with the conditions of DiT: no extra tokens; c = TimestepEmbedder(t) + label_emb(y) modulates every
    block through adaLN-Zero (gates zero-initialised), with the same long skips, decoder and output conv.
    Everything else (width, depth, position embedding, initialisation of the shared layers) is `UViT`'s. Its blocks
    (chapter 2's DiTBlock behind a skip_linear) and its forward are given in `course/lab/conditioning.py`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        D, depth = self.embed_dim, len(self.in_blocks)
        heads = self.mid_block.attn.num_heads
        ratio = self.mid_block.mlp.fc1.out_features / D
        num_patches = self.pos_embed.shape[1] - self.extras
        self.extras = 0
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, D))
        self.time_embed = TimestepEmbedder(D)
        concat = self.skip_mode == "concat"
        self.in_blocks = nn.ModuleList([AdaLNUViTBlock(DiTBlock(D, heads, ratio), D) for _ in range(depth)])
        self.mid_block = AdaLNUViTBlock(DiTBlock(D, heads, ratio), D)
        self.out_blocks = nn.ModuleList([AdaLNUViTBlock(DiTBlock(D, heads, ratio), D, skip=concat)
                                         for _ in range(depth)])
        self.initialize_weights()
        for block in self.blocks:  # adaLN-Zero: every block starts as the identity
            nn.init.zeros_(block.block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.block.adaLN_modulation[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return adaln_uvit_forward(self, x, t, y, unpatchify)


# ---------------------------------------------------------------------------------------------------------------
# Looking inside
# ---------------------------------------------------------------------------------------------------------------
def _run_hooked(model: UViT, handles: list, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> None:
    """One forward of `model` on its own device (the inputs moved there) for the hooks in `handles`, then remove
    them, also when the forward raises."""
    dev = next(model.parameters()).device
    try:
        model(x.to(dev), t.to(dev), y if y is None else y.to(dev))
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def skip_trace(model: UViT, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> list[dict]:
    """Run `model` once and record, block by block, what its forward did with the long skips: for each block in
    the order it ran, its name, the in-blocks whose outputs sit on the stack after it, and which in-block's
    output it received as `skip` (found by identity of the tensors, so this reads the forward as written)."""
    names = {id(b): f"in_blocks.{i}" for i, b in enumerate(model.in_blocks)}
    names[id(model.mid_block)] = "mid_block"
    names.update({id(b): f"out_blocks.{i}" for i, b in enumerate(model.out_blocks)})
    outputs: dict[int, str] = {}  # id(output tensor of an in-block) -> its name
    events: list[dict] = []
    stack: list[str] = []
    handles = []

    def pre(block, args, kwargs):
        skip = kwargs.get("skip", args[1] if len(args) > 1 else None)
        events.append({"block": names[id(block)], "skip": outputs.get(id(skip)) if skip is not None else None})

    def post(block, args, kwargs, out):
        name = names[id(block)]
        if name.startswith("in_blocks"):
            outputs[id(out)] = name
            stack.append(name)
        skip = events[-1]["skip"]
        if skip in stack:
            stack.remove(skip)
        events[-1]["stack"] = list(stack)

    for block in model.blocks:
        handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(block.register_forward_hook(post, with_kwargs=True))
    _run_hooked(model, handles, x, t, y)
    return events


@torch.no_grad()
def time_token_attention(model: UViT, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """How much the patch tokens attend to the time token, per block and head: (blocks, B, heads, N).

    For each block in running order, the attention probabilities of its input (after norm1) are computed with
    `Attention.attention_map`; the column of the time token (index extras − 1) is kept for the N patch queries."""
    maps = []
    time_index = model.extras - 1

    def hook(attn, args):
        maps.append(attn.attention_map(args[0])[:, :, model.extras:, time_index])  # (B, heads, N)

    handles = [b.attn.register_forward_pre_hook(hook) for b in model.blocks]
    _run_hooked(model, handles, x, t, y)
    return torch.stack(maps).cpu()

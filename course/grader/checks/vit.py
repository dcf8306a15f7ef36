"""Checks for chapter 1, `vit`: the pre-norm Transformer block and the ViT denoiser's forward pass."""
import torch
import torch.nn as nn

from course.grader.checks.kit import (check_denoiser, compare_forward, exercise, mistake, mistake_edit, name_a_raise,
                                      random_pair, seeded)
from course.grader.checks.kit import hints
from course.grader.exercises import reference_module


# ---------------------------------------------------------------------------------------------------------------
# ViTBlock.forward
# ---------------------------------------------------------------------------------------------------------------
@mistake("vit.ViTBlock.forward", "a post-norm block (x = norm(x + sublayer(x)), as in the original Transformer); "
                                 "ViT normalises first: x = x + sublayer(norm(x))")
def _(self, x):
    x = self.norm1(x + self.attn(x))
    return self.norm2(x + self.mlp(x))


@mistake("vit.ViTBlock.forward", "the residual of the attention is missing")
def _(self, x):
    x = self.attn(self.norm1(x))
    return x + self.mlp(self.norm2(x))


@mistake("vit.ViTBlock.forward", "the residual of the MLP is missing")
def _(self, x):
    x = x + self.attn(self.norm1(x))
    return self.mlp(self.norm2(x))


@mistake("vit.ViTBlock.forward", "the MLP reads x from before the attention (a parallel block)")
def _(self, x):
    return x + self.attn(self.norm1(x)) + self.mlp(self.norm2(x))


@mistake("vit.ViTBlock.forward", "norm1 and norm2 are swapped")
def _(self, x):
    x = x + self.attn(self.norm2(x))
    return x + self.mlp(self.norm1(x))


BLOCK_STEPS = {  # submodule -> what to look at when the input it gets first differs from the reference's
    "norm1": "the attention branch: it reads norm1 of the block's input",
    "attn": "what the attention reads: norm1 of the tokens, not the tokens themselves",
    "norm2": "the MLP branch: it reads norm2 of the tokens after the attention's residual sum",
    "mlp": "what the MLP reads: norm2 of the tokens after the attention's residual sum",
    "*": "the residual sums: each branch's output is added to the tokens it read from",
}


@exercise("vit.ViTBlock.forward")
def check_ViTBlock_forward(impl, ref):
    for i, (dim, heads, ratio, shape) in enumerate(((32, 4, 4.0, (2, 5)), (16, 2, 2.0, (1, 1)),
                                                     (24, 3, 4.0, (3, 16)))):
        mine, theirs = random_pair(impl.ViTBlock, ref.ViTBlock, dim, heads, ratio, seed=100 + i, norms_only=True)
        with seeded(120 + i):
            x = torch.randn(*shape, dim)
        compare_forward(mine, theirs, (x,), exercise="vit.ViTBlock.forward",
                        what=f"ViTBlock(dim={dim}, heads={heads}) on {tuple(x.shape)}", steps=BLOCK_STEPS)
    return "outputs and gradients match for 3 widths (batch 1, a single token, 16 tokens; atol 1e-5)."


# ---------------------------------------------------------------------------------------------------------------
# ViTDenoiser.forward
# ---------------------------------------------------------------------------------------------------------------
def _denoise(self, x, t, y, *, pos=True, label=True, time=True, norm=True, depth=None):
    """ViTDenoiser.forward with one ingredient left out: the common body of the wrong versions below."""
    B, C, H, W = x.shape
    p = self.patch_size
    y = torch.full_like(t, self.num_classes) if y is None else y
    tokens = self.x_embedder(x) + (self.pos_embed_for(H // p, W // p) if pos else 0)
    c = (self.t_embedder(t) if time else 0) + (self.y_embedder(y) if label else 0)
    tokens = tokens + c[:, None]
    for block in list(self.blocks)[:depth]:
        tokens = block(tokens)
    out = self.head(self.norm(tokens) if norm else tokens)
    return reference_module("layers").unpatchify(out, p, (H // p, W // p))


@mistake("vit.ViTDenoiser.forward", "the position embedding is missing (add self.pos_embed_for(H/p, W/p) to the "
                                    "tokens)")
def _(self, x, t, y=None):
    return _denoise(self, x, t, y, pos=False)


@mistake("vit.ViTDenoiser.forward", "the class label is ignored (c = t_embedder(t) + y_embedder(y))")
def _(self, x, t, y=None):
    return _denoise(self, x, t, y, label=False)


@mistake("vit.ViTDenoiser.forward", "the timestep is ignored (c = t_embedder(t) + y_embedder(y))")
def _(self, x, t, y=None):
    return _denoise(self, x, t, y, time=False)


@mistake("vit.ViTDenoiser.forward", "the final LayerNorm `norm` is skipped before the head")
def _(self, x, t, y=None):
    return _denoise(self, x, t, y, norm=False)


@mistake("vit.ViTDenoiser.forward", "only the first block runs (loop over all of self.blocks)")
def _(self, x, t, y=None):
    return _denoise(self, x, t, y, depth=1)


@mistake("vit.ViTDenoiser.forward", "the tokens are reshaped straight into an image (no unpatchify)")
def _(self, x, t, y=None):
    B, C, H, W = x.shape
    p = self.patch_size
    y = torch.full_like(t, self.num_classes) if y is None else y
    c = self.t_embedder(t) + self.y_embedder(y)  # (B, D)
    tokens = self.x_embedder(x) + self.pos_embed_for(H // p, W // p) + c[:, None]
    for block in self.blocks:
        tokens = block(tokens)
    return self.head(self.norm(tokens)).reshape(B, C, H, W)


@mistake("vit.ViTDenoiser.forward", "unpatchify is not given the grid (H/p, W/p), so it assumes a square one")
def _(self, x, t, y=None):
    B, C, H, W = x.shape
    p = self.patch_size
    y = torch.full_like(t, self.num_classes) if y is None else y
    c = self.t_embedder(t) + self.y_embedder(y)
    tokens = self.x_embedder(x) + self.pos_embed_for(H // p, W // p) + c[:, None]
    for block in self.blocks:
        tokens = block(tokens)
    return reference_module("layers").unpatchify(self.head(self.norm(tokens)), p)


@mistake("vit.ViTDenoiser.forward", "the stored pos_embed is added whatever the input size (an input of another "
                                    "size than img_size needs pos_embed_for(H/p, W/p))")
def _(self, x, t, y=None):
    B, C, H, W = x.shape
    p = self.patch_size
    y = torch.full_like(t, self.num_classes) if y is None else y
    tokens = self.x_embedder(x) + self.pos_embed + (self.t_embedder(t) + self.y_embedder(y))[:, None]
    for block in self.blocks:
        tokens = block(tokens)
    return reference_module("layers").unpatchify(self.head(self.norm(tokens)), p, (H // p, W // p))


mistake_edit("vit.ViTDenoiser.forward", "unpatchify gets the grid as (W/p, H/p)",
             "unpatchify(out, p, (H // p, W // p))", "unpatchify(out, p, (W // p, H // p))", says="should have shape")


def _denoiser_steps(depth: int) -> dict[str, str]:
    steps = {
        "x_embedder": "the image given to the patch embedding: x as it came in",
        "t_embedder": "the timestep t as given",
        "y_embedder": "the labels: y as given, the null class self.num_classes where y is None",
        "blocks.0": "the tokens entering the first block: the patch tokens plus the fixed position embedding of "
                    "this input's (H/p, W/p) grid, plus the conditioning vector, the same on every token",
        "norm": "the blocks: each one's output is the next one's input, and the last one's goes to norm",
        "head": "what the head reads: the final LayerNorm of the last block's tokens",
        "*": "the way back to an image: the head's tokens are patches of a grid of H/p rows and W/p columns, each "
             "token's values in (row in patch, column in patch, channel) order",
    }
    for i in range(1, depth):
        steps[f"blocks.{i}"] = "the blocks: each one's output is the next one's input"
    return steps


@exercise("vit.ViTDenoiser.forward")
def check_ViTDenoiser_forward(impl, ref):
    configs = [
        # img_size, patch, in_channels, hidden, depth, heads, classes, input shape
        (8, 2, 1, 32, 2, 4, 10, (2, 1, 8, 8)),
        (8, 4, 3, 16, 1, 2, 3, (1, 3, 8, 8)),
        (8, 2, 1, 32, 2, 4, 10, (2, 1, 4, 6)),  # another size than img_size: pos_embed_for(2, 3)
    ]
    for i, (img, p, c, d, depth, heads, ncls, shape) in enumerate(configs):
        mine, theirs = random_pair(impl.ViTDenoiser, ref.ViTDenoiser, img_size=img, patch_size=p, in_channels=c,
                                   hidden_size=d, depth=depth, num_heads=heads, num_classes=ncls, seed=130 + i,
                                   norms_only=True)
        # The head starts at zero (so a fresh model outputs 0); give it weights, or the check would see nothing.
        with seeded(140 + i), torch.no_grad():
            nn.init.normal_(theirs.head.weight, std=0.2)
            nn.init.normal_(theirs.head.bias, std=0.2)
        mine.load_state_dict(theirs.state_dict())
        with seeded(160 + i):
            x = torch.randn(*shape)
            t = torch.randint(0, 1000, (shape[0],))
            y = torch.randint(0, ncls + 1, (shape[0],))
        what = f"ViTDenoiser(patch {p}, {c} channel(s)) on {tuple(shape)}"
        name_a_raise("vit.ViTDenoiser.forward", mine, theirs, (x, t, y), what)
        check_denoiser(mine, theirs, x, t, y, exercise="vit.ViTDenoiser.forward", num_classes=ncls, what=what,
                       steps=_denoiser_steps(depth))
    return ("outputs and gradients match for patch 2 and 4, 1 and 3 channels, batch 1, a 4×6 input (a 2×3 grid); "
            "y=None is the null class; the output depends on t and y (atol 1e-5).")


# ---------------------------------------------------------------------------------------------------------------
# Hints on request (`hint("name")`, `python -m course hint name`): level 1 a nudge, the only one a failed check
# quotes; the last close to the recipe.
# ---------------------------------------------------------------------------------------------------------------
hints("vit.ViTBlock.forward",
      "A pre-norm block: each sub-layer reads a normalised copy of x and adds its result back to x.",
      "Two residual steps, attention first (norm1), then the MLP (norm2).",
      "x = x + attn(norm1(x)); x = x + mlp(norm2(x)).")
hints("vit.ViTDenoiser.forward",
      "Tokens are the patch embeddings plus positions; the conditioning c = time + label is added to every "
      "token; y=None is the null class; the head's tokens go back to an image of the input's grid.",
      "tokens = x_embedder(x) + pos_embed_for(H/p, W/p); c = t_embedder(t) + y_embedder(y); tokens + c[:, "
      "None].",
      "the blocks; head(norm(tokens)); unpatchify with the grid (H/p, W/p).")

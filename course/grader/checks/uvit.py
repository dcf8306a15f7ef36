"""Checks for chapter 3, `uvit`: the U-ViT block with its long skip input, and the U-ViT forward pass.

Both are compared with the reference on random weights, forward and backward, at several shapes (batch 1, a single
token, patch 2 and 4, one and three channels, with and without labels, time MLP and output conv). Each declared
mistake below is one plausible wrong version, run on the same inputs so that the check can name it.
"""
import torch

from course.grader.checks.kit import (check_denoiser, compare_forward, exercise, mistake, name_a_raise, random_pair,
                                      seeded)
from course.grader.checks.kit import hints
from course.grader.exercises import reference_module


# ---------------------------------------------------------------------------------------------------------------
# UViTBlock.forward
# ---------------------------------------------------------------------------------------------------------------
def _block(self, x, skip, fuse):
    if self.skip_linear is not None:
        x = fuse(self, x, skip)
    x = x + self.attn(self.norm1(x))
    return x + self.mlp(self.norm2(x))


@mistake("uvit.UViTBlock.forward", "the long skip is added (x + skip) instead of concatenated and projected: "
                                   "skip_linear(cat([x, skip], dim=-1))")
def _(self, x, skip=None):
    return _block(self, x, skip, lambda s, a, b: a + b)


@mistake("uvit.UViTBlock.forward", "the skip comes first in the concatenation: cat([skip, x]) instead of "
                                   "cat([x, skip])")
def _(self, x, skip=None):
    return _block(self, x, skip, lambda s, a, b: s.skip_linear(torch.cat([b, a], dim=-1)))


@mistake("uvit.UViTBlock.forward", "the residuals start from the block's input, not from skip_linear's output "
                                   "(x = skip_linear(...) must replace x before the attention)")
def _(self, x, skip=None):
    h = self.skip_linear(torch.cat([x, skip], dim=-1)) if self.skip_linear is not None else x
    x = x + self.attn(self.norm1(h))
    return x + self.mlp(self.norm2(x))


@mistake("uvit.UViTBlock.forward", "norm2 is missing: the MLP reads the raw tokens (x + mlp(norm2(x)))")
def _(self, x, skip=None):
    if self.skip_linear is not None:
        x = self.skip_linear(torch.cat([x, skip], dim=-1))
    x = x + self.attn(self.norm1(x))
    return x + self.mlp(x)


@mistake("uvit.UViTBlock.forward", "skip_linear is applied after the attention and the MLP instead of first")
def _(self, x, skip=None):
    h = x + self.attn(self.norm1(x))
    h = h + self.mlp(self.norm2(h))
    return self.skip_linear(torch.cat([h, skip], dim=-1)) if self.skip_linear is not None else h


BLOCK_STEPS = {  # submodule -> what to look at when the input it gets first differs from the reference's
    "skip_linear": "the fusion of the long skip: skip_linear reads the concatenation [x, skip] along the channels",
    "norm1": "the attention branch: it reads norm1 of the block's tokens (the fused ones in an out-block: "
             "skip_linear's output replaces x)",
    "attn": "what the attention reads: norm1 of the tokens",
    "norm2": "the MLP branch: it reads norm2 of the tokens after the attention's residual sum",
    "mlp": "what the MLP reads: norm2 of the tokens after the attention's residual sum",
    "*": "the residual sums: each branch's output is added to the tokens it read from",
}


@exercise("uvit.UViTBlock.forward")
def check_UViTBlock_forward(impl, ref):
    cases = ((32, 4, True, 2, 6), (16, 2, True, 1, 1), (24, 3, False, 3, 5), (24, 3, True, 3, 18))
    for i, (dim, heads, skip, B, L) in enumerate(cases):
        mine, theirs = random_pair(impl.UViTBlock, ref.UViTBlock, dim, heads, 4.0, False, skip, seed=300 + i,
                                   norms_only=True)
        with seeded(320 + i):
            x, s = torch.randn(B, L, dim), torch.randn(B, L, dim)
        inputs = (x, s) if skip else (x,)
        kind = "an out-block (skip=True)" if skip else "a block without skip_linear"
        compare_forward(mine, theirs, inputs, exercise="uvit.UViTBlock.forward",
                        what=f"UViTBlock(dim={dim}, heads={heads}), {kind}, on x {(B, L, dim)}", steps=BLOCK_STEPS)
    return ("outputs and gradients match with and without a long skip (batch 1 and a single token too; "
            "atol 1e-5).")


# ---------------------------------------------------------------------------------------------------------------
# UViT.forward
# ---------------------------------------------------------------------------------------------------------------
def _uvit(self, x, t, y, *, pop_last=True, drop="front", label_first=True, pos_on_extras=True, conv_last=True,
          time_mlp=True, push_output=True):
    """UViT.forward with one thing done wrong: the common body of the wrong versions below."""
    layers = reference_module("layers")
    x = self.patch_embed(x)  # (B, N, D)
    B, N, D = x.shape
    emb = layers.timestep_embedding(t, self.embed_dim)
    extras = [(self.time_embed(emb) if time_mlp else emb).unsqueeze(1)]
    if self.label_emb is not None:
        y = torch.full_like(t, self.num_classes, dtype=torch.long) if y is None else y
        label = self.label_emb(y).unsqueeze(1)
        extras = [label] + extras if label_first else extras + [label]
    if pos_on_extras:
        x = torch.cat(extras + [x], dim=1) + self.pos_embed
    else:
        x = torch.cat(extras + [x + self.pos_embed[:, self.extras:]], dim=1)
    skips = []
    for block in self.in_blocks:
        before = x
        x = block(x)
        skips.append(x if push_output else before)
    x = self.mid_block(x)
    for block in self.out_blocks:
        x = block(x, skips.pop() if pop_last else skips.pop(0))
    x = self.decoder_pred(self.norm(x))  # (B, extras + N, p*p*C)
    if drop == "front":
        x = x[:, self.extras:]
    elif drop == "back":
        x = x[:, :N]
    if not conv_last:
        return layers.unpatchify(self.final_layer(x), self.patch_size)
    return self.final_layer(layers.unpatchify(x, self.patch_size))


@mistake("uvit.UViT.forward", "the skips are popped in the wrong order: the first in-block meets the first "
                              "out-block (a stack is last in, first out: skips.pop())")
def _(self, x, t, y=None):
    return _uvit(self, x, t, y, pop_last=False)


@mistake("uvit.UViT.forward", "the extra tokens (label, time) are not dropped before unpatchify")
def _(self, x, t, y=None):
    return _uvit(self, x, t, y, drop=None)


@mistake("uvit.UViT.forward", "the extra tokens are dropped from the wrong end (they sit at the front: "
                              "x[:, self.extras:])")
def _(self, x, t, y=None):
    return _uvit(self, x, t, y, drop="back")


@mistake("uvit.UViT.forward", "the label and time tokens are swapped (the order is [label, time, patches])")
def _(self, x, t, y=None):
    return _uvit(self, x, t, y, label_first=False)


@mistake("uvit.UViT.forward", "the position embedding is added to the patch tokens only; it covers the extra "
                              "tokens too (add pos_embed after concatenating [label, time, patches])")
def _(self, x, t, y=None):
    return _uvit(self, x, t, y, pos_on_extras=False)


@mistake("uvit.UViT.forward", "the final 3×3 conv is applied before unpatchify (it works on images: unpatchify "
                              "first)")
def _(self, x, t, y=None):
    return _uvit(self, x, t, y, conv_last=False)


@mistake("uvit.UViT.forward", "the time token skips time_embed (the raw sinusoid is used even with "
                              "mlp_time_embed=True)")
def _(self, x, t, y=None):
    return _uvit(self, x, t, y, time_mlp=False)


@mistake("uvit.UViT.forward", "each in-block's input is pushed on the stack instead of its output")
def _(self, x, t, y=None):
    return _uvit(self, x, t, y, push_output=False)


def _uvit_steps(depth: int) -> dict[str, str]:
    half = depth // 2
    steps = {
        "patch_embed": "the image given to patch_embed: x as it came in",
        "time_embed": "the time token's input: the sinusoid timestep_embedding(t, D) of width D",
        "label_emb": "the labels: y as given, the null label self.num_classes where y is None",
        "in_blocks.0": "the token sequence: [label, time, patch tokens] in that order, then + pos_embed (which covers "
                       "the extra tokens too)",
        "mid_block": "the in-blocks: each one's output is the next one's input",
        "norm": "the end of the network: the last out-block's tokens go through norm, then decoder_pred",
        "decoder_pred": "what decoder_pred reads: norm of the last out-block's tokens",
        "final_layer": "the image given to the 3×3 conv: decoder_pred's tokens without the self.extras condition "
                       "tokens at the front, unpatchified to (B, C, H, W)",
        "*": "the output: final_layer's result is returned as it is",
    }
    for i in range(1, half):
        steps[f"in_blocks.{i}"] = "the in-blocks: each one's output is the next one's input"
    for i in range(half):
        steps[f"out_blocks.{i}"] = (f"the long skips: out_blocks.{i} takes the output of in_blocks.{half - 1 - i} "
                                    "(the skips form a stack, last in, first out) and the previous block's output")
    return steps


@exercise("uvit.UViT.forward")
def check_UViT_forward(impl, ref):
    configs = [
        # batch 1 and one channel first: a few mistakes fail loudly on larger batches and are named on this one
        dict(img_size=8, patch_size=2, in_chans=1, embed_dim=32, depth=4, num_heads=4, num_classes=11, B=1),
        dict(img_size=8, patch_size=2, in_chans=1, embed_dim=32, depth=2, num_heads=2, num_classes=11,
             mlp_time_embed=True, B=2),
        dict(img_size=8, patch_size=4, in_chans=3, embed_dim=16, depth=4, num_heads=2, num_classes=-1, conv=False,
             B=3),
        dict(img_size=8, patch_size=1, in_chans=1, embed_dim=16, depth=6, num_heads=2, num_classes=4, B=2),
    ]
    for i, cfg in enumerate(configs):
        cfg = dict(cfg)
        B = cfg.pop("B")
        mine, theirs = random_pair(impl.UViT, ref.UViT, seed=340 + i, std=0.2, **cfg)
        C, H = cfg["in_chans"], cfg["img_size"]
        with seeded(360 + i):
            x = torch.randn(B, C, H, H)
            t = torch.randint(0, 1000, (B,))
            y = torch.randint(0, cfg["num_classes"], (B,)) if cfg["num_classes"] > 0 else None
        what = (f"UViT(patch {cfg['patch_size']}, {C} channel(s), "
                + (f"num_classes={cfg['num_classes']}" if y is not None else "unconditional")
                + (", time MLP" if cfg.get("mlp_time_embed") else "") + (", no conv" if cfg.get("conv") is False
                                                                        else "") + f") on {tuple(x.shape)}")
        name_a_raise("uvit.UViT.forward", mine, theirs, (x, t, y), what)
        check_denoiser(mine, theirs, x, t, y, exercise="uvit.UViT.forward", num_classes=theirs.num_classes,
                       what=what, steps=_uvit_steps(cfg["depth"]))
    return ("outputs and gradients match for patch 1, 2 and 4, 1 and 3 channels, with and without labels, time MLP "
            "and output conv, batch 1 to 3; y=None is the null label; the output depends on t and y (atol 1e-5).")


# ---------------------------------------------------------------------------------------------------------------
# Hints on request (`hint("name")`, `python -m course hint name`): level 1 a nudge, the only one a failed check
# quotes; the last close to the recipe.
# ---------------------------------------------------------------------------------------------------------------
hints("uvit.UViTBlock.forward",
      "An out-block first fuses its long skip with the tokens (skip_linear on their concatenation), and from "
      "then on it is an ordinary pre-norm ViT block on the fused tokens.",
      "Concatenate along the channels, [x, skip] in that order, so that Linear(2D, D) applies; skip only when "
      "the block has a skip_linear.",
      "if self.skip_linear is not None: x = skip_linear(cat([x, skip], dim=-1)); then x = x + attn(norm1(x)); x "
      "= x + mlp(norm2(x)).")
hints("uvit.UViT.forward",
      "Everything is a token: the label and time tokens go in front of the patch tokens, and the position "
      "embedding covers all of them; the long skips pair in-blocks and out-blocks like a U (last in, first "
      "out).",
      "Tokens: [label_emb(y), time_embed(timestep_embedding(t, D)), patch_embed(x)] + pos_embed, y=None being "
      "the null label; keep each in-block's output on a list; after the mid block each out-block takes the most "
      "recent one.",
      "norm, decoder_pred, drop the first self.extras tokens, unpatchify, final_layer (the conv works on the "
      "image).")

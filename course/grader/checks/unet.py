"""Checks for chapter 1, `unet`: the residual block and the U-Net's forward pass."""
import torch
import torch.nn.functional as F

from course.grader.checks.kit import (check_denoiser, compare_forward, exercise, mistake, name_a_raise, random_pair,
                                      seeded)
from course.grader.checks.kit import hints


# ---------------------------------------------------------------------------------------------------------------
# ResBlock.forward
# ---------------------------------------------------------------------------------------------------------------
def _resblock(self, x, emb, *, shortcut=True, emb_silu=True, emb_where="middle", act_first=False, second_norm=True,
              dropout_last=False):
    """ResBlock.forward with one ingredient changed: the common body of the wrong versions below."""
    e = self.temb_proj(F.silu(emb) if emb_silu else emb)[:, :, None, None]  # (B, out, 1, 1)
    h = self.conv1(self.norm1(F.silu(x)) if act_first else F.silu(self.norm1(x)))
    h = h + e if emb_where == "middle" else h
    if not second_norm:
        h = self.conv2(h)
    elif dropout_last:
        h = self.dropout(self.conv2(F.silu(self.norm2(h))))
    else:
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
    h = h + e if emb_where == "end" else h
    return self.nin_shortcut(x) + h if shortcut else h


@mistake("unet.ResBlock.forward", "the residual shortcut is missing (return nin_shortcut(x) + h)")
def _(self, x, emb):
    return _resblock(self, x, emb, shortcut=False)


@mistake("unet.ResBlock.forward", "the embedding is added after the second convolution instead of after the first")
def _(self, x, emb):
    return _resblock(self, x, emb, emb_where="end")


@mistake("unet.ResBlock.forward", "the embedding goes into temb_proj without the SiLU first")
def _(self, x, emb):
    return _resblock(self, x, emb, emb_silu=False)


@mistake("unet.ResBlock.forward", "the embedding is not added at all")
def _(self, x, emb):
    return _resblock(self, x, emb, emb_where="nowhere")


@mistake("unet.ResBlock.forward", "SiLU comes before GroupNorm (the order is GroupNorm → SiLU → conv)")
def _(self, x, emb):
    return _resblock(self, x, emb, act_first=True)


@mistake("unet.ResBlock.forward", "the second half skips its GroupNorm → SiLU")
def _(self, x, emb):
    return _resblock(self, x, emb, second_norm=False)


@mistake("unet.ResBlock.forward", "dropout is applied after conv2; it sits between the second SiLU and conv2")
def _(self, x, emb):
    return _resblock(self, x, emb, dropout_last=True)


@mistake("unet.ResBlock.forward", "the shortcut is x itself even when the channels change (use self.nin_shortcut)")
def _(self, x, emb):
    return x + _resblock(self, x, emb, shortcut=False)


RESBLOCK_STEPS = {  # submodule -> what to look at when the input it gets first differs from the reference's
    "norm1": "the block's input: the first stage reads x as it came in",
    "conv1": "the first stage: conv1 reads the activated GroupNorm of x (norm first, then SiLU)",
    "temb_proj": "the embedding branch: temb_proj reads the activated embedding, SiLU(emb)",
    "norm2": "where the time enters: the second stage reads conv1's output shifted by temb_proj's, one value per "
             "channel, the same at every pixel",
    "dropout": "the second stage: dropout reads the activated norm2 of h (norm first, then SiLU)",
    "conv2": "what conv2 reads: the dropout's output",
    "nin_shortcut": "the shortcut: nin_shortcut reads the block's input x (it is an identity when the channels do "
                    "not change)",
    "*": "the residual sum: the block returns the shortcut plus the second stage's output",
}


@exercise("unet.ResBlock.forward")
def check_ResBlock_forward(impl, ref):
    cases = [(16, 16, 32, (2, 16, 4, 4)), (8, 16, 24, (1, 8, 3, 5)), (16, 8, 16, (3, 16, 6, 2))]
    for i, (c_in, c_out, emb_dim, shape) in enumerate(cases):
        mine, theirs = random_pair(impl.ResBlock, ref.ResBlock, c_in, c_out, emb_dim, dropout=0.1, seed=20 + i,
                                   norms_only=True)
        mine.eval(), theirs.eval()
        with seeded(40 + i):
            x, emb = torch.randn(*shape), torch.randn(shape[0], emb_dim)
        what = f"ResBlock({c_in} → {c_out}) on {tuple(shape)} (eval mode)"
        name_a_raise("unet.ResBlock.forward", mine, theirs, (x, emb), what)
        compare_forward(mine, theirs, (x, emb), exercise="unet.ResBlock.forward", what=what, steps=RESBLOCK_STEPS)
    # In training mode, dropout must sit where the reference has it (same seed, same mask).
    mine, theirs = random_pair(impl.ResBlock, ref.ResBlock, 8, 16, 16, dropout=0.5, seed=50, norms_only=True)
    mine.train(), theirs.train()
    with seeded(51):
        x, emb = torch.randn(2, 8, 4, 4), torch.randn(2, 16)
    compare_forward(mine, theirs, (x, emb), exercise="unet.ResBlock.forward",
                    what="ResBlock in training mode with dropout 0.5",
                    hint="dropout sits between the second SiLU and conv2, once.", steps=RESBLOCK_STEPS)
    return ("outputs and gradients match for 16→16, 8→16 (1×1 shortcut, odd 3×5 map, batch 1), 16→8, and with "
            "dropout in training mode (atol 1e-5).")


# ---------------------------------------------------------------------------------------------------------------
# UNet.forward
# ---------------------------------------------------------------------------------------------------------------
def _unet(self, x, t, y, *, time=True, label=True, attn=True, resample=True, head="full", skip="cat",
          pop_first=False, skip_after_down=False):
    """UNet.forward with one ingredient changed: the common body of the wrong versions below."""
    if y is None:
        y = torch.full_like(t, self.num_classes)
    emb = (self.time_embed(t) if time else 0) + (self.label_embed(y) if label else 0)
    h = self.conv_in(x)
    skips = []
    for blocks, downsample in zip(self.down, self.downsample):
        for block in blocks:
            h = block(h, emb)
        if skip_after_down:
            h = downsample(h) if resample else h
            skips.append(h)
        else:
            skips.append(h)
            h = downsample(h) if resample else h
    h = self.mid_block1(h, emb)
    h = self.mid_block2(self.mid_attn(h) if attn else h, emb)
    for blocks, upsample in zip(self.up, self.upsample):
        s = skips.pop(0) if pop_first else skips.pop()
        h = torch.cat([h, s], dim=1) if skip == "cat" else h + s
        for block in blocks:
            h = block(h, emb)
        h = upsample(h) if resample else h
    if head == "conv":
        return self.conv_out(h)
    return self.conv_out(F.silu(self.norm_out(h)) if head == "full" else F.silu(h))


@mistake("unet.UNet.forward", "the self-attention in the middle is skipped")
def _(self, x, t, y=None):
    return _unet(self, x, t, y, attn=False)


@mistake("unet.UNet.forward", "the resolution never changes: downsample/upsample are not applied")
def _(self, x, t, y=None):
    return _unet(self, x, t, y, resample=False)


@mistake("unet.UNet.forward", "the class label is ignored (emb should be self.embed(t, y): time + class)")
def _(self, x, t, y=None):
    return _unet(self, x, t, y, label=False)


@mistake("unet.UNet.forward", "the timestep is ignored (emb should be self.embed(t, y): time + class)")
def _(self, x, t, y=None):
    return _unet(self, x, t, y, time=False)


@mistake("unet.UNet.forward", "the output skips norm_out (the head is conv_out(SiLU(norm_out(h))))")
def _(self, x, t, y=None):
    return _unet(self, x, t, y, head="silu")


@mistake("unet.UNet.forward", "the head is conv_out(h) alone: norm_out and its SiLU are skipped")
def _(self, x, t, y=None):
    return _unet(self, x, t, y, head="conv")


@mistake("unet.UNet.forward", "the skip is added to h instead of concatenated along the channels")
def _(self, x, t, y=None):
    return _unet(self, x, t, y, skip="add")


@mistake("unet.UNet.forward", "the skips are taken first-in first-out (skips.pop(0)); the up path needs the last "
                              "one first")
def _(self, x, t, y=None):
    return _unet(self, x, t, y, pop_first=True)


@mistake("unet.UNet.forward", "the skip is kept after downsampling instead of before")
def _(self, x, t, y=None):
    return _unet(self, x, t, y, skip_after_down=True)


def _unet_steps(model) -> dict[str, str]:
    """What to look at, per given submodule of this U-Net, when the input it gets first differs."""
    levels = len(model.channels)
    steps = {
        "time_embed": "the timestep t as given",
        "label_embed": "the labels: y as given, the null class self.num_classes where y is None (self.embed does "
                       "both)",
        "conv_in": "the image x as it came in",
        "mid_block1": "the bottom of the U: the middle reads the last level's output, which is not downsampled",
        "mid_attn": "the middle: the attention block reads mid_block1's output (and takes no embedding)",
        "mid_block2": "the middle: mid_block2 reads mid_attn's output",
        "norm_out": "the head: norm_out reads the last level's output as it is (the activation comes after the "
                    "norm)",
        "conv_out": "the head: conv_out reads the activated norm_out of h (norm first, then SiLU)",
        "*": "the output: conv_out's result is returned as it is",
    }
    for i, blocks in enumerate(model.down):
        for j in range(len(blocks)):
            steps[f"down.{i}.{j}"] = ("the down path: each ResBlock reads the previous step's features and the "
                                      "embedding self.embed(t, y), the same for every block")
        steps[f"downsample.{i}"] = "the down path: a level's output is kept as its skip, then downsampled"
    for k, blocks in enumerate(model.up):
        level = levels - 1 - k
        steps[f"up.{k}.0"] = (f"the long skips: up.{k} works at level {level}, and its first ResBlock reads the "
                              "features concatenated with that level's skip along the channels, features first "
                              "(the skip kept last is used first)")
        for j in range(1, len(blocks)):
            steps[f"up.{k}.{j}"] = "the up path: each further ResBlock reads the previous one's output"
        steps[f"upsample.{k}"] = "the up path: a level's ResBlocks come before its upsample"
    return steps


@exercise("unet.UNet.forward")
def check_UNet_forward(impl, ref):
    configs = [
        # in_channels, channels, num_res_blocks, num_classes, input shape
        (1, (8, 16, 16), 1, 10, (2, 1, 8, 8)),
        (3, (8, 16), 2, 4, (1, 3, 6, 10)),
        (1, (8, 8, 16), 1, 3, (3, 1, 4, 12)),
    ]
    for i, (c, channels, nrb, ncls, shape) in enumerate(configs):
        mine, theirs = random_pair(impl.UNet, ref.UNet, in_channels=c, channels=channels, num_res_blocks=nrb,
                                   num_classes=ncls, num_heads=2, seed=60 + i, norms_only=True)
        with seeded(80 + i):
            x = torch.randn(*shape)
            t = torch.randint(0, 1000, (shape[0],))
            y = torch.randint(0, ncls + 1, (shape[0],))
        what = f"UNet(channels={channels}, num_res_blocks={nrb}) on {tuple(shape)}"
        name_a_raise("unet.UNet.forward", mine, theirs, (x, t, y), what)
        check_denoiser(mine, theirs, x, t, y, exercise="unet.UNet.forward", num_classes=ncls, what=what,
                       steps=_unet_steps(theirs))
    return ("outputs and gradients match for 3 U-Nets (1 and 3 channels, 2 and 3 levels, 1 and 2 ResBlocks per "
            "level, non-square 6×10 and 4×12 inputs, batch 1; atol 1e-5); y=None is the null class; the output "
            "depends on t and y.")


# ---------------------------------------------------------------------------------------------------------------
# Hints on request (`hint("name")`, `python -m course hint name`): level 1 a nudge, the only one a failed check
# quotes; the last close to the recipe.
# ---------------------------------------------------------------------------------------------------------------
hints("unet.ResBlock.forward",
      "Two norm → SiLU → conv stages; the time embedding is added between them, one value per channel; the "
      "shortcut brings x to the output channels.",
      "emb goes through SiLU and temb_proj to (B, out), broadcast over the pixels; dropout sits just before "
      "conv2.",
      "h = conv1(SiLU(norm1(x))); h = h + temb_proj(SiLU(emb))[:, :, None, None]; h = "
      "conv2(dropout(SiLU(norm2(h)))); return nin_shortcut(x) + h.")
hints("unet.UNet.forward",
      "Down the U, keep each level's output; at the bottom, the middle blocks; up the U, each level first "
      "concatenates the skip of its own resolution (last kept, first used).",
      "emb = self.embed(t, y) feeds every ResBlock; down: a level's blocks, push h, downsample; middle: "
      "mid_block1, mid_attn, mid_block2.",
      "up: h = cat([h, skips.pop()], dim=1), the level's blocks, upsample; finally conv_out(SiLU(norm_out(h))).")

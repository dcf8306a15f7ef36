"""Checks for chapter 1, `unet`: the residual block and the U-Net's forward pass."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from course.checks.layers import patched, randomize_norms
from course.checks.kit import build_pair, compare_forward, exercise, expect, expect_close, seeded


def _resblock_variants(rb, x, emb) -> dict:
    """What a ResBlock gives with the usual slips, from the reference block's layers."""
    def body(h, emb_term, after=False, act_first=False):
        if act_first:
            h = rb.conv1(rb.norm1(F.silu(x)))
        h = h + (0 if after else emb_term)
        h = rb.conv2(rb.dropout(F.silu(rb.norm2(h))))
        return h + (emb_term if after else 0)

    emb_term = rb.temb_proj(F.silu(emb))[:, :, None, None]
    h1 = rb.conv1(F.silu(rb.norm1(x)))
    return {
        "the residual shortcut is missing (return nin_shortcut(x) + h)": body(h1, emb_term),
        "the embedding is added after the second convolution instead of after the first":
            rb.nin_shortcut(x) + body(h1, emb_term, after=True),
        "the embedding goes into temb_proj without the SiLU first":
            rb.nin_shortcut(x) + body(h1, rb.temb_proj(emb)[:, :, None, None]),
        "the embedding is not added at all": rb.nin_shortcut(x) + body(h1, 0),
        "SiLU comes before GroupNorm (the order is GroupNorm → SiLU → conv)":
            rb.nin_shortcut(x) + body(None, emb_term, act_first=True),
        "the second half skips its GroupNorm → SiLU":
            rb.nin_shortcut(x) + rb.conv2(h1 + emb_term),
    }


@exercise("unet.ResBlock.forward")
def check_ResBlock_forward(impl, ref):
    cases = [(16, 16, 32, (2, 16, 4, 4)), (8, 16, 24, (1, 8, 3, 5)), (16, 8, 16, (3, 16, 6, 2))]
    for i, (c_in, c_out, emb_dim, shape) in enumerate(cases):
        mine, theirs = build_pair(impl.ResBlock, ref.ResBlock, c_in, c_out, emb_dim, dropout=0.1, seed=20 + i)
        randomize_norms(theirs, 30 + i)
        mine.load_state_dict(theirs.state_dict())
        mine.eval(), theirs.eval()
        with seeded(40 + i):
            x, emb = torch.randn(*shape), torch.randn(shape[0], emb_dim)
        with torch.no_grad():
            mistakes = _resblock_variants(theirs, x, emb)
        compare_forward(mine, theirs, (x, emb), what=f"ResBlock({c_in} → {c_out}) on {tuple(shape)} (eval mode)",
                        atol=1e-5, rtol=1e-4, mistakes=mistakes,
                        hint="h = conv1(SiLU(norm1(x))); h = h + temb_proj(SiLU(emb))[:, :, None, None]; "
                             "h = conv2(dropout(SiLU(norm2(h)))); return nin_shortcut(x) + h.")
    # In training mode, dropout must sit where the reference has it (same seed, same mask).
    mine, theirs = build_pair(impl.ResBlock, ref.ResBlock, 8, 16, 16, dropout=0.5, seed=50)
    mine.train(), theirs.train()
    with seeded(51):
        x, emb = torch.randn(2, 8, 4, 4), torch.randn(2, 16)
    compare_forward(mine, theirs, (x, emb), what="ResBlock in training mode with dropout 0.5", atol=1e-5,
                    rtol=1e-4, hint="dropout sits between the second SiLU and conv2, once.")
    return ("outputs and gradients match for 16→16, 8→16 (1×1 shortcut, odd 3×5 map, batch 1), 16→8, and with "
            "dropout in training mode (atol 1e-5).")


def _small_unet(module, in_channels, channels, num_res_blocks, num_classes, seed):
    return build_pair(module[0].UNet, module[1].UNet, in_channels=in_channels, channels=channels,
                      num_res_blocks=num_res_blocks, num_classes=num_classes, num_heads=2, seed=seed)


def _unet_variants(net, x, t, y) -> dict:
    identity = nn.Identity()
    out = {}
    with patched(net, mid_attn=identity):
        out["the self-attention in the middle is skipped"] = net(x, t, y)
    with patched(net, downsample=nn.ModuleList([identity] * len(net.downsample)),
                 upsample=nn.ModuleList([identity] * len(net.upsample))):
        out["the resolution never changes: downsample/upsample are not applied"] = net(x, t, y)
    with patched(net, embed=lambda t, y: net.time_embed(t)):
        out["the class label is ignored (emb should be self.embed(t, y): time + class)"] = net(x, t, y)
    with patched(net, embed=lambda t, y: net.label_embed(y)):
        out["the timestep is ignored (emb should be self.embed(t, y): time + class)"] = net(x, t, y)
    with patched(net, norm_out=identity):
        out["the output skips norm_out (the head is conv_out(SiLU(norm_out(h))))"] = net(x, t, y)
    return out


@exercise("unet.UNet.forward")
def check_UNet_forward(impl, ref):
    configs = [
        # in_channels, channels, num_res_blocks, num_classes, input shape
        (1, (8, 16, 16), 1, 10, (2, 1, 8, 8)),
        (3, (8, 16), 2, 4, (1, 3, 6, 10)),
        (1, (8, 8, 16), 1, 3, (3, 1, 4, 12)),
    ]
    for i, (c, channels, nrb, ncls, shape) in enumerate(configs):
        mine, theirs = _small_unet((impl, ref), c, channels, nrb, ncls, seed=60 + i)
        randomize_norms(theirs, 70 + i)
        mine.load_state_dict(theirs.state_dict())
        with seeded(80 + i):
            x = torch.randn(*shape)
            t = torch.randint(0, 1000, (shape[0],))
            y = torch.randint(0, ncls + 1, (shape[0],))
        with torch.no_grad():
            mistakes = _unet_variants(theirs, x, t, y)
        what = f"UNet(channels={channels}, num_res_blocks={nrb}) on {tuple(shape)}"
        compare_forward(mine, theirs, (x, t, y), what=what, atol=1e-5, rtol=1e-4, mistakes=mistakes,
                        hint="emb = self.embed(t, y); h = conv_in(x); per level: its ResBlocks, push h on the skips, "
                             "downsample; mid_block1 → mid_attn → mid_block2; per level in reverse: "
                             "h = cat([h, skips.pop()], dim=1), its ResBlocks, upsample; then "
                             "conv_out(SiLU(norm_out(h))).")
        if i == 0:
            with torch.no_grad():
                want = theirs(x, t, torch.full_like(t, ncls))
                expect_close(mine(x, t, None), want, what="UNet with y=None", atol=1e-5, rtol=1e-4,
                             hint="y=None means the null class `num_classes`; self.embed(t, None) does that.")
    mine, _ = _small_unet((impl, ref), 1, (8, 16), 1, 10, seed=90)
    with torch.no_grad():
        a = mine(torch.zeros(1, 1, 8, 8), torch.tensor([5]), torch.tensor([1]))
        b = mine(torch.zeros(1, 1, 8, 8), torch.tensor([5]), torch.tensor([2]))
    expect(not torch.allclose(a, b), "the output does not depend on the class label y.")
    return ("outputs and gradients match for 3 U-Nets (1 and 3 channels, 2 and 3 levels, 1 and 2 ResBlocks per "
            "level, non-square 6×10 and 4×12 inputs, batch 1; atol 1e-5), and y=None is the null class.")

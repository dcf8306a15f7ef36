"""Checks for chapter 1, `vit`: the pre-norm Transformer block and the ViT denoiser's forward pass."""
import torch
import torch.nn as nn

from course.checks.layers import patched, randomize_norms
from course.grading import build_pair, compare_forward, exercise, expect, expect_close, seeded


def _block_variants(b, x) -> dict:
    a = x + b.attn(b.norm1(x))
    return {
        "a post-norm block (x = norm(x + sublayer(x)), as in the original Transformer); ViT normalises first: "
        "x = x + sublayer(norm(x))": b.norm2(b.norm1(x + b.attn(x)) + b.mlp(b.norm1(x + b.attn(x)))),
        "the residual of the attention is missing": b.attn(b.norm1(x)) + b.mlp(b.norm2(b.attn(b.norm1(x)))),
        "the residual of the MLP is missing": b.mlp(b.norm2(a)),
        "the MLP reads x from before the attention (a parallel block)": a + b.mlp(b.norm2(x)),
        "norm1 and norm2 are swapped": (lambda a2: a2 + b.mlp(b.norm1(a2)))(x + b.attn(b.norm2(x))),
    }


@exercise("vit.ViTBlock.forward")
def check_ViTBlock_forward(impl, ref):
    for i, (dim, heads, ratio, shape) in enumerate(((32, 4, 4.0, (2, 5)), (16, 2, 2.0, (1, 1)),
                                                     (24, 3, 4.0, (3, 16)))):
        mine, theirs = build_pair(impl.ViTBlock, ref.ViTBlock, dim, heads, ratio, seed=100 + i)
        randomize_norms(theirs, 110 + i)
        mine.load_state_dict(theirs.state_dict())
        with seeded(120 + i):
            x = torch.randn(*shape, dim)
        with torch.no_grad():
            mistakes = _block_variants(theirs, x)
        compare_forward(mine, theirs, (x,), what=f"ViTBlock(dim={dim}, heads={heads}) on {tuple(x.shape)}",
                        atol=1e-5, rtol=1e-4, mistakes=mistakes,
                        hint="x = x + attn(norm1(x)); x = x + mlp(norm2(x)).")
    return "outputs and gradients match for 3 widths (batch 1, a single token, 16 tokens; atol 1e-5)."


class _Zeros(nn.Module):
    """An embedder that embeds nothing: (B,) -> zeros (B, D)."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, v):
        return torch.zeros(len(v), self.dim)


def _vit_variants(net, x, t, y) -> dict:
    out = {}
    zeros = lambda h, w: torch.zeros_like(net.pos_embed[:, :1])  # noqa: E731
    with patched(net, pos_embed_for=zeros):
        out["the position embedding is missing (add self.pos_embed_for(H/p, W/p) to the tokens)"] = net(x, t, y)
    zero_embedder = _Zeros(net.pos_embed.shape[-1])
    with patched(net, y_embedder=zero_embedder):
        out["the class label is ignored (c = t_embedder(t) + y_embedder(y))"] = net(x, t, y)
    with patched(net, t_embedder=zero_embedder):
        out["the timestep is ignored (c = t_embedder(t) + y_embedder(y))"] = net(x, t, y)
    with patched(net, norm=nn.Identity()):
        out["the final LayerNorm `norm` is skipped before the head"] = net(x, t, y)
    with patched(net, blocks=nn.ModuleList(list(net.blocks)[:1])):
        out["only the first block runs (loop over all of self.blocks)"] = net(x, t, y)
    return out


@exercise("vit.ViTDenoiser.forward")
def check_ViTDenoiser_forward(impl, ref):
    configs = [
        # img_size, patch, in_channels, hidden, depth, heads, classes, input shape
        (8, 2, 1, 32, 2, 4, 10, (2, 1, 8, 8)),
        (8, 4, 3, 16, 1, 2, 3, (1, 3, 8, 8)),
        (8, 2, 1, 32, 2, 4, 10, (2, 1, 4, 6)),  # another size than img_size: pos_embed_for(2, 3)
    ]
    for i, (img, p, c, d, depth, heads, ncls, shape) in enumerate(configs):
        mine, theirs = build_pair(impl.ViTDenoiser, ref.ViTDenoiser, img_size=img, patch_size=p, in_channels=c,
                                  hidden_size=d, depth=depth, num_heads=heads, num_classes=ncls, seed=130 + i)
        # The head starts at zero (so a fresh model outputs 0); give it weights, or the check would see nothing.
        with seeded(140 + i), torch.no_grad():
            nn.init.normal_(theirs.head.weight, std=0.2)
            nn.init.normal_(theirs.head.bias, std=0.2)
        randomize_norms(theirs, 150 + i)
        mine.load_state_dict(theirs.state_dict())
        with seeded(160 + i):
            x = torch.randn(*shape)
            t = torch.randint(0, 1000, (shape[0],))
            y = torch.randint(0, ncls + 1, (shape[0],))
        with torch.no_grad():
            mistakes = _vit_variants(theirs, x, t, y)
        compare_forward(mine, theirs, (x, t, y), what=f"ViTDenoiser(patch {p}, {c} channel(s)) on {tuple(shape)}",
                        atol=1e-5, rtol=1e-4, mistakes=mistakes,
                        hint="tokens = x_embedder(x) + pos_embed_for(H/p, W/p); c = t_embedder(t) + y_embedder(y); "
                             "tokens + c[:, None]; the blocks; head(norm(tokens)); unpatchify with grid (H/p, W/p).")
        if i == 0:
            with torch.no_grad():
                expect_close(mine(x, t, None), theirs(x, t, torch.full_like(t, ncls)), what="ViTDenoiser with y=None",
                             atol=1e-5, rtol=1e-4, hint="y=None means the null class `num_classes`.")
    with torch.no_grad():
        a = mine(x, t, torch.zeros_like(y))
        b = mine(x, t, torch.ones_like(y))
    expect(not torch.allclose(a, b), "the output does not depend on the class label y.")
    return ("outputs and gradients match for patch 2 and 4, 1 and 3 channels, batch 1, a 4×6 input (a 2×3 grid) "
            "and y=None (atol 1e-5).")

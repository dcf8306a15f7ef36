"""Checks for chapter 1, `layers`: embeddings, patch tokens and attention."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from course.grader.checks.kit import (compare_forward, exercise, expect, expect_close, mistake, name_a_raise,
                                      random_pair, seeded, wrong_outputs)
from course.grader.checks.kit import hints
from course.grader.exercises import reference_module


# ---------------------------------------------------------------------------------------------------------------
# Timestep embedding
# ---------------------------------------------------------------------------------------------------------------
def _timestep(t, dim, max_period=10000.0, *, divide=None, sign=-1.0, first=torch.cos, second=torch.sin,
              interleave=False, zero_column=True, t_scale=1.0):
    """The timestep embedding with one ingredient changed: the common body of the wrong versions."""
    half = dim // 2
    divide = half if divide is None else divide
    freqs = torch.exp(sign * math.log(max_period) * torch.arange(half, dtype=torch.float32) / divide)
    args = (t[:, None].float() / t_scale) * freqs[None]
    parts = [first(args), second(args)]
    embedding = torch.stack(parts, dim=-1).flatten(1) if interleave else torch.cat(parts, dim=-1)
    if dim % 2 and zero_column:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


@mistake("layers.timestep_embedding", "sin and cos are swapped (the timestep embedding puts cos first; the position "
                                      "embedding is the one with sin first)")
def _(t, dim, max_period=10000.0):
    return _timestep(t, dim, max_period, first=torch.sin, second=torch.cos)


@mistake("layers.timestep_embedding", "the frequencies are divided by (half − 1) instead of half")
def _(t, dim, max_period=10000.0):
    return _timestep(t, dim, max_period, divide=dim // 2 - 1)


@mistake("layers.timestep_embedding", "the frequencies grow instead of shrink (exp(+ln(10000)·i/half))")
def _(t, dim, max_period=10000.0):
    return _timestep(t, dim, max_period, sign=1.0)


@mistake("layers.timestep_embedding", "cos and sin are interleaved instead of concatenated")
def _(t, dim, max_period=10000.0):
    return _timestep(t, dim, max_period, interleave=True)


@mistake("layers.timestep_embedding", "t is divided by T = 1000 first")
def _(t, dim, max_period=10000.0):
    return _timestep(t, dim, max_period, t_scale=1000.0)


@mistake("layers.timestep_embedding", "max_period is ignored (10000 is typed in)")
def _(t, dim, max_period=10000.0):
    return _timestep(t, dim)


@mistake("layers.timestep_embedding", "for an odd dim, the zero column at the end is missing")
def _(t, dim, max_period=10000.0):
    return _timestep(t, dim, max_period, zero_column=False)


@exercise("layers.timestep_embedding")
def check_timestep_embedding(impl, ref):
    t = torch.tensor([0, 1, 17, 250, 999])
    cases = [((t, 256), "dim=256"), ((t, 16), "dim=16"), ((t, 7), "dim=7"), ((t, 2), "dim=2"),
             ((torch.tensor([500]), 64), "batch 1"),
             ((torch.tensor([0.5, 12.25, 999.9]), 32), "fractional timesteps (a float tensor)")]
    for args, what in cases:
        got = impl.timestep_embedding(*args)
        dim = args[1]
        expect(not (dim % 2 and getattr(got, "shape", (0,))[-1:] == (dim - 1,)),
               f"timestep_embedding(t, dim={dim}) has {dim - 1} columns: for an odd dim, the zero column at the end "
               "is missing. Hint: torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1).")
        expect_close(got, ref.timestep_embedding(*args), what=f"timestep_embedding(t, dim={dim}), {what}",
                     atol=2e-4, rtol=0, mistakes=wrong_outputs("layers.timestep_embedding", *args))
    expect_close(impl.timestep_embedding(t, 32, max_period=100.0), ref.timestep_embedding(t, 32, max_period=100.0),
                 what="timestep_embedding(t, 32, max_period=100)", atol=2e-4, rtol=0,
                 mistakes=wrong_outputs("layers.timestep_embedding", t, 32, max_period=100.0),
                 hint="use the max_period argument instead of 10000.")
    return ("[cos, sin] of t·exp(−ln(10000)·i/half) for dim 2, 7 (zero column), 16, 256, integer and fractional t, "
            "batch 1, custom max_period (atol 2e-4: float32 rounds t·freq at t = 999 by ~6e-5).")


# ---------------------------------------------------------------------------------------------------------------
# 2D sin-cos position embedding
# ---------------------------------------------------------------------------------------------------------------
def _pos(embed_dim, grid_size, *, swap_hw=False, indexing="ij", rows_first=False, cos_first=False):
    """The 2D sin-cos position embedding with one ingredient changed: the common body of the wrong versions."""
    h, w = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
    h, w = (w, h) if swap_hw else (h, w)
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing=indexing)

    def one(D, pos):
        emb = reference_module("layers").get_1d_sincos_pos_embed(D, pos)  # (M, D): [sin, cos]
        return torch.cat([emb[:, D // 2:], emb[:, : D // 2]], dim=1) if cos_first else emb

    emb_w, emb_h = one(embed_dim // 2, cols), one(embed_dim // 2, rows)
    return torch.cat([emb_h, emb_w] if rows_first else [emb_w, emb_h], dim=1).float()


@mistake("layers.get_2d_sincos_pos_embed", "the halves are swapped: the first half of the channels should embed the "
                                           "column (width) index, the second the row (height) index")
def _(embed_dim, grid_size):
    return _pos(embed_dim, grid_size, rows_first=True)


@mistake("layers.get_2d_sincos_pos_embed", "cos comes first (the 2D position embedding of MAE and DiT puts sin "
                                           "first)")
def _(embed_dim, grid_size):
    return _pos(embed_dim, grid_size, cos_first=True)


@mistake("layers.get_2d_sincos_pos_embed", "the tokens are in column-major order (meshgrid with indexing=\"xy\"); "
                                           "they should be row-major (row by row, left to right)")
def _(embed_dim, grid_size):
    return _pos(embed_dim, grid_size, indexing="xy")


@mistake("layers.get_2d_sincos_pos_embed", "h and w are swapped (a grid of w rows and h columns)")
def _(embed_dim, grid_size):
    return _pos(embed_dim, grid_size, swap_hw=True)


@exercise("layers.get_2d_sincos_pos_embed")
def check_get_2d_sincos_pos_embed(impl, ref):
    # A grid with h ≠ w first: on a square grid some of the mistakes give the same numbers.
    for D, grid in ((8, (2, 3)), (16, 4), (32, (3, 5)), (64, (4, 2)), (8, 1)):
        expect_close(impl.get_2d_sincos_pos_embed(D, grid), ref.get_2d_sincos_pos_embed(D, grid),
                     what=f"get_2d_sincos_pos_embed({D}, {grid})", atol=1e-5,
                     mistakes=wrong_outputs("layers.get_2d_sincos_pos_embed", D, grid))
    return "sin-first 1D embeddings of the column then the row index, row-major tokens, on square and h ≠ w grids."


# ---------------------------------------------------------------------------------------------------------------
# Patch tokens
# ---------------------------------------------------------------------------------------------------------------
def _patchify(x, patch_size, order):
    B, C, H, W = x.shape
    p = patch_size
    x = x.reshape(B, C, H // p, p, W // p, p)
    return torch.einsum(f"nchpwq->{order}", x).reshape(B, (H // p) * (W // p), p * p * C)


@mistake("layers.patchify", "the inner order of a token is (channel, row, column); it should be (row in patch, "
                            "column in patch, channel) with the channel fastest")
def _(x, patch_size):
    return _patchify(x, patch_size, "nhwcpq")


@mistake("layers.patchify", "rows and columns inside a patch are swapped (p and q)")
def _(x, patch_size):
    return _patchify(x, patch_size, "nhwqpc")


@mistake("layers.patchify", "the tokens are in column-major order; they should go row by row")
def _(x, patch_size):
    return _patchify(x, patch_size, "nwhpqc")


@mistake("layers.patchify", "the image was reshaped to tokens without moving the axes (a plain reshape mixes pixels "
                            "of different patches)")
def _(x, patch_size):
    B, C, H, W = x.shape
    return x.reshape(B, (H // patch_size) * (W // patch_size), patch_size * patch_size * C)


@exercise("layers.patchify")
def check_patchify(impl, ref):
    with seeded(10):
        cases = [(torch.randn(2, 3, 8, 8), 2), (torch.randn(1, 1, 4, 6), 2), (torch.randn(2, 2, 9, 6), 3),
                 (torch.randn(3, 1, 8, 8), 4), (torch.randn(1, 3, 5, 5), 1)]
    cases.append((torch.arange(2 * 4 * 4, dtype=torch.float64).reshape(1, 2, 4, 4), 2))
    for x, p in cases:
        expect_close(impl.patchify(x, p), ref.patchify(x, p), what=f"patchify of {tuple(x.shape)} {x.dtype} with "
                     f"p = {p}", atol=0, rtol=0, mistakes=wrong_outputs("layers.patchify", x, p))
    return "exact on 5 shapes (batch 1, C = 1, 2, 3, non-square, p = 1, 2, 3, 4) and float64; order (p, q, c)."


def _unpatchify(x, patch_size, grid, inner="nhwpqc", square=False):
    B, N, D = x.shape
    p = patch_size
    C = D // (p * p)
    h, w = grid if grid is not None and not square else (math.isqrt(N),) * 2
    sizes = {"p": p, "q": p, "c": C}
    x = x.reshape(B, h, w, *(sizes[a] for a in inner[3:]))
    return torch.einsum(f"{inner}->nchpwq", x).reshape(B, C, h * p, w * p)


@mistake("layers.unpatchify", "the inner order of a token is read as (channel, row, column); it is (row in patch, "
                              "column in patch, channel)")
def _(x, patch_size, grid=None):
    return _unpatchify(x, patch_size, grid, inner="nhwcpq")


@mistake("layers.unpatchify", "rows and columns inside a patch are swapped (p and q)")
def _(x, patch_size, grid=None):
    return _unpatchify(x, patch_size, grid, inner="nhwqpc")


@mistake("layers.unpatchify", "the grid is ignored (always square)")
def _(x, patch_size, grid=None):
    return _unpatchify(x, patch_size, grid, square=True)


@exercise("layers.unpatchify")
def check_unpatchify(impl, ref):
    with seeded(11):
        cases = [((2, 16, 12), 2, None), ((1, 6, 4), 2, (2, 3)), ((2, 6, 18), 3, (3, 2)), ((1, 4, 16), 4, None),
                 ((3, 15, 2), 1, (3, 5))]
        tokens = [(torch.randn(*shape), p, grid) for shape, p, grid in cases]
    for x, p, grid in tokens:
        args = (x, p, grid) if grid else (x, p)
        what = f"unpatchify of {tuple(x.shape)} with p = {p}" + (f", grid {grid}" if grid else "")
        name_a_raise("layers.unpatchify", impl.unpatchify, None, args, what)
        expect_close(impl.unpatchify(*args), ref.unpatchify(*args), what=what, atol=0, rtol=0,
                     mistakes=wrong_outputs("layers.unpatchify", *args))
    with seeded(12):
        img = torch.randn(2, 3, 6, 10)
    back = impl.unpatchify(ref.patchify(img, 2), 2, (3, 5))
    expect_close(back, img, what="unpatchify(patchify(x)) on a 6 × 10 image", atol=0, rtol=0)
    return "exact on 5 shapes (square and h ≠ w grids, p = 1..4, batch 1) and unpatchify(patchify(x)) == x."


# ---------------------------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------------------------
@mistake("layers.attention", "the 1/√d scale is missing")
def _(q, k, v):
    return (q @ k.transpose(-2, -1)).softmax(dim=-1) @ v


@mistake("layers.attention", "the scores are divided by d instead of √d")
def _(q, k, v):
    return (q @ k.transpose(-2, -1) / q.shape[-1]).softmax(dim=-1) @ v


@mistake("layers.attention", "the softmax runs over the queries (dim −2) instead of the keys (dim −1)")
def _(q, k, v):
    return (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-2) @ v


@mistake("layers.attention", "Kᵀ Q instead of Q Kᵀ (the scores are transposed)")
def _(q, k, v):
    return (k @ q.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1) @ v


@mistake("layers.attention", "the output is detached from q, k and v (no gradient flows back)")
def _(q, k, v):
    return F.scaled_dot_product_attention(q, k, v).detach()


class _Function(nn.Module):
    """A function as a module, so that `compare_forward` can compare it, gradients included."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


@exercise("layers.attention")
def check_attention(impl, ref):
    with seeded(13):
        shapes = [(2, 4, 5, 8), (1, 3, 16), (3, 1, 1, 4), (2, 7, 32)]
        cases = [tuple(torch.randn(*s) * 2 for _ in range(3)) for s in shapes]
    for i, (q, k, v) in enumerate(cases):
        what = f"attention on q, k, v of shape {tuple(q.shape)}"
        got = impl.attention(*(a.clone().requires_grad_() for a in (q, k, v)))
        expect(not isinstance(got, torch.Tensor) or got.requires_grad,
               f"{what}: the output is detached from q, k and v (no gradient flows back). Hint: no `.detach()`, "
               "`torch.no_grad()` or `.data` in attention.")
        compare_forward(_Function(impl.attention), _Function(F.scaled_dot_product_attention), (q, k, v), what=what,
                        atol=1e-5, rtol=1e-4, seed=14 + i, mistakes=wrong_outputs("layers.attention", q, k, v))
    with seeded(17):
        q = torch.randn(2, 3, 4, dtype=torch.float64)
    expect_close(impl.attention(q, q, q), ref.attention(q, q, q), what="attention in float64", atol=1e-10)
    return ("equals F.scaled_dot_product_attention on 4 shapes (batch 1, one token, 3-d and 4-d inputs; atol 1e-5), "
            "gradients too, and keeps float64.")


# ---------------------------------------------------------------------------------------------------------------
# Attention.forward
# ---------------------------------------------------------------------------------------------------------------
@mistake("layers.Attention.forward", "the heads are merged without moving the head axis next to head_dim first "
                                     "(reshape (B, H, N, d) to (B, N, D) needs a transpose(1, 2) before it)")
def _(self, x):
    B, N, D = x.shape
    q, k, v = self.qkv_heads(x)
    out = F.scaled_dot_product_attention(q, k, v) if self.fused else reference_module("layers").attention(q, k, v)
    return self.proj(out.reshape(B, N, D))


@mistake("layers.Attention.forward", "the output projection `proj` is missing")
def _(self, x):
    B, N, D = x.shape
    q, k, v = self.qkv_heads(x)
    out = F.scaled_dot_product_attention(q, k, v) if self.fused else reference_module("layers").attention(q, k, v)
    return out.transpose(1, 2).reshape(B, N, D)


@mistake("layers.Attention.forward", "the attention runs over the whole width in one head instead of per head")
def _(self, x):
    q, k, v = self.qkv(x).chunk(3, dim=-1)  # (B, N, D) each: all heads at once
    return self.proj(F.scaled_dot_product_attention(q, k, v))


@mistake("layers.Attention.forward", "with fused=False the scores are not scaled by 1/√d (call the `attention` you "
                                     "wrote)")
def _(self, x):
    B, N, D = x.shape
    q, k, v = self.qkv_heads(x)
    out = F.scaled_dot_product_attention(q, k, v) if self.fused else (q @ k.transpose(-2, -1)).softmax(-1) @ v
    return self.proj(out.transpose(1, 2).reshape(B, N, D))


ATTENTION_STEPS = {  # submodule -> what to look at when the input it gets first differs from the reference's
    "qkv": "the tokens given to the layer: qkv_heads reads x as it came in",
    "proj": "what proj reads: every head's output, put back side by side in the D channels of its own token "
            "(head h's d values at channels h·d to h·d + d − 1), one row per token",
    "*": "the output: proj's result is returned as it is",
}


@exercise("layers.Attention.forward")
def check_Attention_forward(impl, ref):
    notes = []
    for dim, heads, fused, shape in ((32, 4, True, (2, 5)), (32, 4, False, (1, 7)), (24, 1, True, (3, 4)),
                                     (48, 6, False, (2, 1))):
        mine, theirs = random_pair(impl.Attention, ref.Attention, dim, heads, fused=fused, seed=dim + heads)
        with seeded(15):
            x = torch.randn(*shape, dim)
        compare_forward(mine, theirs, (x,), exercise="layers.Attention.forward",
                        what=f"Attention(dim={dim}, heads={heads}, fused={fused}) on {tuple(x.shape)}",
                        steps=ATTENTION_STEPS)
        notes.append(f"{heads}h{'' if fused else '/manual'}")
    return ("outputs and gradients match for " + ", ".join(notes) + " (fused and hand-written paths, batch 1, "
            "one token; atol 1e-5).")


# ---------------------------------------------------------------------------------------------------------------
# Hints on request (`hint("name")`, `python -m course hint name`): level 1 a nudge, the only one a failed check
# quotes; the last close to the recipe.
# ---------------------------------------------------------------------------------------------------------------
hints("layers.timestep_embedding",
      "Half the channels are cosines, half sines, of t times D/2 geometrically spaced frequencies from 1 down "
      "to 1/max_period; an odd dim gets one zero column at the end.",
      "freqs_i = exp(−ln(max_period) · i / half) for i = 0 .. half−1 (half = dim // 2); args = t[:, "
      "None].float() · freqs[None].",
      "cat([cos(args), sin(args)], dim=-1), then a zero column when dim is odd; freqs on t's device.")
hints("layers.get_2d_sincos_pos_embed",
      "Token k = r·w + c of the row-major grid gets two 1D embeddings side by side: the column's first, then "
      "the row's, each of width D/2.",
      "Build row and column indices for every token (torch.meshgrid with indexing=\"ij\", flattened), and embed "
      "each with the given 1D helper.",
      "cat([get_1d_sincos_pos_embed(D/2, cols), get_1d_sincos_pos_embed(D/2, rows)], dim=1), as float32.")
hints("layers.patchify",
      "Patch (i, j) becomes token i·(W/p) + j, and its p·p·C numbers are ordered (row in patch, column in "
      "patch, channel), the channel fastest.",
      "Split H into (H/p, p) and W into (W/p, p) with one reshape, then move the axes to (B, H/p, W/p, p, p, "
      "C).",
      "reshape to (B, C, H/p, p, W/p, p), einsum \"nchpwq->nhwpqc\" (or permute(0, 2, 4, 3, 5, 1)), reshape to "
      "(B, (H/p)·(W/p), p·p·C).")
hints("layers.unpatchify",
      "The exact inverse of patchify: each token's p·p·C numbers are (row in patch, column in patch, channel); "
      "the grid (h, w) is square when not given.",
      "C = D/(p·p); reshape to (B, h, w, p, p, C), then move the axes to (B, C, h, p, w, p).",
      "reshape to (B, h, w, p, p, C), einsum \"nhwpqc->nchpwq\", reshape to (B, C, h·p, w·p).")
hints("layers.attention",
      "Scaled dot-product attention over the last two dimensions; any leading dimensions (batch, heads) just "
      "come along.",
      "Scores (..., N, N) = q @ kᵀ over the last two axes, divided by √d with d = q.shape[-1]; the softmax runs "
      "over the keys.",
      "(q @ k.transpose(-2, -1) / √d).softmax(dim=-1) @ v.")
hints("layers.Attention.forward",
      "The given `qkv_heads` already splits x into q, k, v per head; what is left is attending per head, "
      "merging the heads back and projecting.",
      "q, k, v are (B, H, N, d); use `attention` (or F.scaled_dot_product_attention when self.fused); the heads "
      "go back next to each other in the channels.",
      "out = attention(q, k, v); out.transpose(1, 2).reshape(B, N, D); self.proj(out).")

"""Checks for chapter 1, `layers`: embeddings, patch tokens and attention."""
import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from course.checks.kit import build_pair, compare_forward, exercise, expect, expect_close, expect_tensor, seeded


# ---------------------------------------------------------------------------------------------------------------
# Helpers shared by the checks of chapter 1 (unet and vit import them)
# ---------------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def patched(obj, **attrs):
    """Temporarily replace attributes (submodules or methods) of a module, to compute what a mistake gives."""
    old = {name: getattr(obj, name) for name in attrs}
    for name, value in attrs.items():
        setattr(obj, name, value)
    try:
        yield obj
    finally:
        for name, value in old.items():
            setattr(obj, name, value)


def randomize_norms(module: nn.Module, seed: int) -> None:
    """Give GroupNorm/LayerNorm affines random values, so that a check can tell which norm was used where."""
    with seeded(seed), torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
                m.weight.add_(0.3 * torch.randn_like(m.weight))
                m.bias.add_(0.3 * torch.randn_like(m.bias))


# ---------------------------------------------------------------------------------------------------------------
# Timestep embedding
# ---------------------------------------------------------------------------------------------------------------
def _timestep_variants(t: torch.Tensor, dim: int) -> dict:
    """What common slips of the timestep embedding give, for the `mistakes` of expect_close."""
    half = dim // 2
    i = torch.arange(half, dtype=torch.float64)
    tt = t.double()[:, None]

    def emb(freqs, first=torch.cos, second=torch.sin, interleave=False):
        a = tt * freqs[None]
        out = (torch.stack([first(a), second(a)], dim=-1).flatten(1) if interleave
               else torch.cat([first(a), second(a)], dim=-1))
        if dim % 2:
            out = torch.cat([out, torch.zeros_like(out[:, :1])], dim=-1)
        return out.float()

    freqs = torch.exp(-math.log(10000.0) * i / half)
    return {
        "sin and cos are swapped (the timestep embedding puts cos first; the position embedding is the one "
        "with sin first)": emb(freqs, torch.sin, torch.cos),
        "the frequencies are divided by (half − 1) instead of half": emb(torch.exp(-math.log(10000.0) * i / max(half - 1, 1))),
        "the frequencies grow instead of shrink (exp(+ln(10000)·i/half))": emb(torch.exp(math.log(10000.0) * i / half)),
        "cos and sin are interleaved instead of concatenated": emb(freqs, interleave=True),
        "t is divided by T = 1000 first": emb(freqs / 1000.0),
    }


@exercise("layers.timestep_embedding")
def check_timestep_embedding(impl, ref):
    t = torch.tensor([0, 1, 17, 250, 999])
    for dim in (256, 16, 7, 2):
        want = ref.timestep_embedding(t, dim)
        expect_close(impl.timestep_embedding(t, dim), want, what=f"timestep_embedding(t, dim={dim})", atol=2e-4,
                     rtol=0, mistakes=_timestep_variants(t, dim),
                     hint="half = dim // 2, freqs_i = exp(−ln(10000) · i / half), then [cos(t·freqs), sin(t·freqs)]; "
                          "an odd dim gets one zero column at the end.")
    one = torch.tensor([500])
    expect_close(impl.timestep_embedding(one, 64), ref.timestep_embedding(one, 64), what="batch 1", atol=2e-4, rtol=0)
    frac = torch.tensor([0.5, 12.25, 999.9])
    expect_close(impl.timestep_embedding(frac, 32), ref.timestep_embedding(frac, 32), atol=2e-4,
                 rtol=0, what="fractional timesteps (a float tensor)", hint="convert t to float before multiplying.")
    expect_close(impl.timestep_embedding(t, 32, max_period=100.0), ref.timestep_embedding(t, 32, max_period=100.0),
                 what="max_period=100", atol=2e-4, rtol=0, hint="use the max_period argument instead of 10000.")
    return ("[cos, sin] of t·exp(−ln(10000)·i/half) for dim 2, 7 (zero column), 16, 256, integer and fractional t, "
            "custom max_period (atol 2e-4: float32 rounds t·freq at t = 999 by ~6e-5).")


# ---------------------------------------------------------------------------------------------------------------
# 2D sin-cos position embedding
# ---------------------------------------------------------------------------------------------------------------
def _sincos_1d(D: int, pos: torch.Tensor, cos_first: bool = False) -> torch.Tensor:
    omega = 1.0 / 10000 ** (torch.arange(D // 2, dtype=torch.float64) / (D / 2))
    out = pos.reshape(-1).double()[:, None] * omega[None]
    parts = [torch.cos(out), torch.sin(out)] if cos_first else [torch.sin(out), torch.cos(out)]
    return torch.cat(parts, dim=1)


def _pos_variants(D: int, h: int, w: int) -> dict:
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    half = D // 2

    def emb(first, second, cos_first=False):
        return torch.cat([_sincos_1d(half, first, cos_first), _sincos_1d(half, second, cos_first)], 1).float()

    # Tokens in column-major order: for each column, every row.
    rows_t, cols_t = rows.t().reshape(-1), cols.t().reshape(-1)
    return {
        "the halves are swapped, or (the same thing on a square grid) the tokens are in column-major order: the "
        "first half of the channels embeds the column (width) index, the second the row (height) index, and the "
        "tokens go row by row": emb(rows, cols),
        "cos comes first (the 2D position embedding of MAE and DiT puts sin first)": emb(cols, rows, cos_first=True),
        "the tokens are in column-major order; they should be row-major (row by row, left to right)":
            emb(cols_t, rows_t),
        "h and w are swapped (a grid of w rows and h columns)": _swapped_grid(D, h, w),
    }


def _swapped_grid(D, h, w):
    if h == w:
        return None
    rows, cols = torch.meshgrid(torch.arange(w), torch.arange(h), indexing="ij")
    return torch.cat([_sincos_1d(D // 2, cols), _sincos_1d(D // 2, rows)], 1).float()


@exercise("layers.get_2d_sincos_pos_embed")
def check_get_2d_sincos_pos_embed(impl, ref):
    for D, grid in ((16, 4), (8, (2, 3)), (32, (3, 5)), (64, (4, 2)), (8, 1)):
        h, w = (grid, grid) if isinstance(grid, int) else grid
        want = ref.get_2d_sincos_pos_embed(D, grid)
        got = impl.get_2d_sincos_pos_embed(D, grid)
        expect_tensor(got, like=want, what=f"get_2d_sincos_pos_embed({D}, {grid})")
        expect_close(got, want, what=f"get_2d_sincos_pos_embed({D}, {grid})", atol=1e-5,
                     mistakes=_pos_variants(D, h, w),
                     hint="token k = r·w + c sits at row r, column c; its first D/2 channels are the 1D sin-cos "
                          "embedding (sin first) of c, the last D/2 that of r.")
    return "sin-first 1D embeddings of the column then the row index, row-major tokens, on square and h ≠ w grids."


# ---------------------------------------------------------------------------------------------------------------
# Patch tokens
# ---------------------------------------------------------------------------------------------------------------
def _patch_variants(x: torch.Tensor, p: int) -> dict:
    B, C, H, W = x.shape
    h, w = H // p, W // p
    six = x.reshape(B, C, h, p, w, p)  # (B, C, h, p, w, q)
    return {
        "the inner order of a token is (channel, row, column); it should be (row in patch, column in patch, "
        "channel) with the channel fastest": six.permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, C * p * p),
        "rows and columns inside a patch are swapped (p and q)": six.permute(0, 2, 4, 5, 3, 1).reshape(B, h * w, -1),
        "the tokens are in column-major order; they should go row by row": six.permute(0, 4, 2, 3, 5, 1).reshape(
            B, h * w, -1),
        "the image was reshaped to tokens without moving the axes (a plain reshape mixes pixels of different "
        "patches)": x.reshape(B, h * w, p * p * C),
    }


@exercise("layers.patchify")
def check_patchify(impl, ref):
    with seeded(10):
        cases = [(torch.randn(2, 3, 8, 8), 2), (torch.randn(1, 1, 4, 6), 2), (torch.randn(2, 2, 9, 6), 3),
                 (torch.randn(3, 1, 8, 8), 4), (torch.randn(1, 3, 5, 5), 1)]
    for x, p in cases:
        want = ref.patchify(x, p)
        expect_close(impl.patchify(x, p), want, what=f"patchify of {tuple(x.shape)} with p = {p}", atol=0, rtol=0,
                     mistakes=_patch_variants(x, p),
                     hint="reshape to (B, C, H/p, p, W/p, p), move the axes to (B, H/p, W/p, p, p, C), then flatten "
                          "to (B, (H/p)·(W/p), p·p·C).")
    x = torch.arange(2 * 4 * 4, dtype=torch.float64).reshape(1, 2, 4, 4)
    expect_close(impl.patchify(x, 2), ref.patchify(x, 2), what="patchify of a float64 image", atol=0, rtol=0)
    return "exact on 5 shapes (batch 1, C = 1, 2, 3, non-square, p = 1, 2, 3, 4) and float64; order (p, q, c)."


@exercise("layers.unpatchify")
def check_unpatchify(impl, ref):
    with seeded(11):
        cases = [((2, 16, 12), 2, None), ((1, 6, 4), 2, (2, 3)), ((2, 6, 18), 3, (3, 2)), ((1, 4, 16), 4, None),
                 ((3, 15, 2), 1, (3, 5))]
        tokens = [(torch.randn(*shape), p, grid) for shape, p, grid in cases]
    for x, p, grid in tokens:
        want = ref.unpatchify(x, p, grid)
        B, N, D = x.shape
        C = D // (p * p)
        h, w = grid or (int(math.isqrt(N)),) * 2
        mistakes = {
            "the inner order of a token is read as (channel, row, column); it is (row in patch, column in patch, "
            "channel)": x.reshape(B, h, w, C, p, p).permute(0, 3, 1, 4, 2, 5).reshape(B, C, h * p, w * p),
            "rows and columns inside a patch are swapped (p and q)":
                x.reshape(B, h, w, p, p, C).permute(0, 5, 1, 4, 2, 3).reshape(B, C, h * p, w * p),
        }
        what = f"unpatchify of {tuple(x.shape)} with p = {p}" + (f", grid {grid}" if grid else "")
        expect_close(impl.unpatchify(x, p, grid) if grid else impl.unpatchify(x, p), want, what=what, atol=0,
                     rtol=0, mistakes=mistakes,
                     hint="reshape to (B, h, w, p, p, C), move the axes to (B, C, h, p, w, p), then reshape to "
                          "(B, C, h·p, w·p); the grid (h, w) is square when not given.")
    with seeded(12):
        img = torch.randn(2, 3, 6, 10)
    back = impl.unpatchify(ref.patchify(img, 2), 2, (3, 5))
    expect_close(back, img, what="unpatchify(patchify(x)) on a 6 × 10 image", atol=0, rtol=0)
    return "exact on 5 shapes (square and h ≠ w grids, p = 1..4, batch 1) and unpatchify(patchify(x)) == x."


# ---------------------------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------------------------
@exercise("layers.attention")
def check_attention(impl, ref):
    with seeded(13):
        shapes = [(2, 4, 5, 8), (1, 3, 16), (3, 1, 1, 4), (2, 7, 32)]
        cases = [tuple(torch.randn(*s) * 2 for _ in range(3)) for s in shapes]
    for q, k, v in cases:
        want = F.scaled_dot_product_attention(q, k, v)
        d = q.shape[-1]
        s = q @ k.transpose(-2, -1)
        mistakes = {"the 1/√d scale is missing": s.softmax(-1) @ v,
                    "the scores are divided by d instead of √d": (s / d).softmax(-1) @ v,
                    "the softmax runs over the queries (dim −2) instead of the keys (dim −1)":
                        (s / math.sqrt(d)).softmax(-2) @ v,
                    "Kᵀ Q instead of Q Kᵀ (the scores are transposed)": (s.transpose(-2, -1) / math.sqrt(d)).softmax(-1) @ v}
        qg, kg, vg = (a.clone().requires_grad_() for a in (q, k, v))
        got = impl.attention(qg, kg, vg)
        expect_close(got, want, what=f"attention on q, k, v of shape {tuple(q.shape)}", atol=1e-5, rtol=1e-4,
                     mistakes=mistakes,
                     hint="softmax(Q Kᵀ / √d) V: scores (..., N, N) from q @ k.transpose(-2, -1), divided by √d with "
                          "d = q.shape[-1], softmax over the last dimension (the keys).")
        qr, kr, vr = (a.clone().requires_grad_() for a in (q, k, v))
        with seeded(14):
            cot = torch.randn_like(want)
        (F.scaled_dot_product_attention(qr, kr, vr) * cot).sum().backward()
        (got * cot).sum().backward()
        for name, a, b in (("q", qg, qr), ("k", kg, kr), ("v", vg, vr)):
            expect(a.grad is not None, f"no gradient reaches {name}: is something detached?")
            expect_close(a.grad, b.grad, what=f"the gradient with respect to {name}", atol=1e-4, rtol=1e-3)
    q = torch.randn(2, 3, 4, dtype=torch.float64)
    expect_close(impl.attention(q, q, q), ref.attention(q, q, q), what="attention in float64", atol=1e-10)
    return ("equals F.scaled_dot_product_attention on 4 shapes (batch 1, one token, 3-d and 4-d inputs; atol 1e-5), "
            "gradients too, and keeps float64.")


def _attention_variants(ref_attn, x: torch.Tensor) -> dict:
    """Outputs of Attention.forward with the usual slips, computed with the reference's weights."""
    B, N, D = x.shape
    q, k, v = ref_attn.qkv_heads(x)
    out = F.scaled_dot_product_attention(q, k, v)  # (B, H, N, d)
    return {
        "the heads are merged without moving the head axis next to head_dim first (reshape (B, H, N, d) to "
        "(B, N, D) needs a transpose(1, 2) before it)": ref_attn.proj(out.reshape(B, N, D)),
        "the output projection `proj` is missing": out.transpose(1, 2).reshape(B, N, D),
        "the attention runs over the whole width in one head instead of per head":
            ref_attn.proj(F.scaled_dot_product_attention(*(a.transpose(1, 2).reshape(B, N, D) for a in (q, k, v)))),
    }


@exercise("layers.Attention.forward")
def check_Attention_forward(impl, ref):
    notes = []
    for dim, heads, fused, shape in ((32, 4, True, (2, 5)), (32, 4, False, (1, 7)), (24, 1, True, (3, 4)),
                                     (48, 6, False, (2, 1))):
        mine, theirs = build_pair(impl.Attention, ref.Attention, dim, heads, fused=fused, seed=dim + heads)
        with seeded(15):
            x = torch.randn(*shape, dim)
        with torch.no_grad():
            mistakes = _attention_variants(theirs, x) if heads > 1 and shape[1] > 1 else None
        compare_forward(mine, theirs, (x,), what=f"Attention(dim={dim}, heads={heads}, fused={fused}) on "
                                                  f"{tuple(x.shape)}", atol=1e-5, rtol=1e-4, mistakes=mistakes,
                        hint="q, k, v = self.qkv_heads(x) -> (B, H, N, d) each; attend per head; "
                             "out.transpose(1, 2).reshape(B, N, D); then self.proj.")
        notes.append(f"{heads}h{'' if fused else '/manual'}")
    return ("outputs and gradients match for " + ", ".join(notes) + " (fused and hand-written paths, batch 1, "
            "one token; atol 1e-5).")

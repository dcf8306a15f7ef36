"""Checks for chapter 5, `diffit`: windows, the relative position index, TMSA, the DiffiT block and ResBlock, and
the U-shaped image-space DiffiT.

The window functions and the relative position index are also compared with independent formulas written here
(loops over windows and token pairs), and TMSA with its time projections zeroed is compared with plain windowed
attention computed here window by window.
"""
import torch
import torch.nn.functional as F

from course.grader.checks.kit import (CheckFailed, check_denoiser, compare_forward, expect, expect_close, expect_tensor,
                                      exercise, mistake, name_a_raise, random_pair, seeded, wrong_outputs)
from course.grader.checks.kit import hints


def _call(fn, *args, what: str):
    try:
        return fn(*args)
    except CheckFailed:
        raise
    except Exception as e:  # noqa: BLE001 - the learner's exception is a failed check with a message
        raise CheckFailed(f"{what} raised {type(e).__name__}: {e}") from None


# ---------------------------------------------------------------------------------------------------------------
# window_partition
# ---------------------------------------------------------------------------------------------------------------
def _partition_by_loops(x, ws):
    """Independent formula: for b, then window row a, then window column c, the ws·ws tokens row by row."""
    B, H, W, C = x.shape
    out = []
    for b in range(B):
        for a in range(H // ws):
            for c in range(W // ws):
                out.append(x[b, a * ws:(a + 1) * ws, c * ws:(c + 1) * ws].reshape(ws * ws, C))
    return torch.stack(out)


@mistake("diffit.window_partition", "the windows are taken column by column (read the grid of windows row-major)")
def _(x, window_size):
    B, H, W, C = x.shape
    ws = window_size
    return x.reshape(B, H // ws, ws, W // ws, ws, C).permute(0, 3, 1, 2, 4, 5).reshape(-1, ws * ws, C)


@mistake("diffit.window_partition", "the tokens inside each window are in column-major order")
def _(x, window_size):
    B, H, W, C = x.shape
    ws = window_size
    return x.reshape(B, H // ws, ws, W // ws, ws, C).permute(0, 1, 3, 4, 2, 5).reshape(-1, ws * ws, C)


@mistake("diffit.window_partition", "reshaped without a permute: each 'window' is a strip of image rows, not a "
                                    "ws × ws square")
def _(x, window_size):
    return x.reshape(-1, window_size * window_size, x.shape[-1])


@mistake("diffit.window_partition", "H and W are swapped in the reshape: x is (B, H, W, C), so the window rows "
                                    "(H/ws) come before the window columns (W/ws)")
def _(x, window_size):
    B, H, W, C = x.shape
    ws = window_size
    return x.reshape(B, W // ws, ws, H // ws, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, C)


@exercise("diffit.window_partition")
def check_window_partition(impl, ref):
    for i, (shape, ws) in enumerate((((2, 8, 8, 3), 4), ((1, 4, 6, 5), 2), ((3, 4, 4, 2), 4), ((1, 6, 4, 1), 2))):
        with seeded(10 + i):
            x = torch.randn(*shape)
        want = ref.window_partition(x, ws)
        expect_close(want, _partition_by_loops(x, ws), what="the reference against the loop formula", atol=0)
        got = _call(impl.window_partition, x.clone(), ws, what=f"window_partition on {shape}, ws={ws}")
        expect_close(got, want, what=f"window_partition of a {shape} map with ws={ws}", atol=0, rtol=0,
                     mistakes=wrong_outputs("diffit.window_partition", x, ws))
    return ("matches a loop over images, window rows, window columns for 8×8 (ws 4), 4×6 and 6×4 (ws 2), batch 1 "
            "to 3.")


# ---------------------------------------------------------------------------------------------------------------
# window_reverse
# ---------------------------------------------------------------------------------------------------------------
@mistake("diffit.window_reverse", "windows merged in the wrong order (window k of an image goes to window row "
                                  "k // nW, column k % nW)")
def _(windows, window_size, H, W):
    ws, C = window_size, windows.shape[-1]
    x = windows.reshape(-1, W // ws, H // ws, ws, ws, C).permute(0, 2, 3, 1, 4, 5)
    return x.reshape(-1, H, W, C)


@mistake("diffit.window_reverse", "reshaped without a permute (the inverse of window_partition needs the inverse "
                                  "permute)")
def _(windows, window_size, H, W):
    return windows.reshape(-1, H, W, windows.shape[-1])


@mistake("diffit.window_reverse", "the tokens of each window are put back column by column")
def _(windows, window_size, H, W):
    ws, C = window_size, windows.shape[-1]
    x = windows.reshape(-1, H // ws, W // ws, ws, ws, C).permute(0, 1, 4, 2, 3, 5)
    return x.reshape(-1, H, W, C)


@mistake("diffit.window_reverse", "H and W are swapped in the reshape: the windows come as (B, H/ws, W/ws, ws, ws, "
                                  "C), window rows first")
def _(windows, window_size, H, W):
    ws, C = window_size, windows.shape[-1]
    x = windows.reshape(-1, W // ws, H // ws, ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, H, W, C)


@exercise("diffit.window_reverse")
def check_window_reverse(impl, ref):
    for i, (shape, ws) in enumerate((((2, 8, 8, 3), 4), ((1, 4, 6, 5), 2), ((3, 4, 4, 2), 2), ((1, 6, 4, 1), 2))):
        B, H, W, C = shape
        with seeded(20 + i):
            x = torch.randn(*shape)
        windows = _partition_by_loops(x, ws)  # independent of both implementations
        expect_close(ref.window_reverse(windows, ws, H, W), x, what="the reference on loop-made windows", atol=0)
        got = _call(impl.window_reverse, windows.clone(), ws, H, W, what=f"window_reverse to {shape}, ws={ws}")
        expect_close(got, x, what=f"window_reverse of windows of a {shape} map (ws={ws})", atol=0, rtol=0,
                     mistakes=wrong_outputs("diffit.window_reverse", windows, ws, H, W))
    return "puts loop-made windows back into 8×8, 4×6, 6×4 and 4×4 maps exactly (ws 2 and 4, batch 1 to 3)."


# ---------------------------------------------------------------------------------------------------------------
# relative_position_index
# ---------------------------------------------------------------------------------------------------------------
def _index_by_loops(ws):
    """Independent formula: index[i, j] = (Δrow + ws − 1)·(2ws − 1) + (Δcol + ws − 1), Δ = query − key."""
    N = ws * ws
    out = torch.empty(N, N, dtype=torch.int64)
    for i in range(N):
        for j in range(N):
            dr, dc = i // ws - j // ws, i % ws - j % ws
            out[i, j] = (dr + ws - 1) * (2 * ws - 1) + (dc + ws - 1)
    return out


@mistake("diffit.relative_position_index", "the index is transposed: it uses key minus query (row_j − row_i); "
                                           "the table is indexed by query minus key")
def _(window_size):
    return _index_by_loops(window_size).T.contiguous()


@mistake("diffit.relative_position_index", "the row offset is multiplied by ws instead of 2ws − 1, so different "
                                           "offsets share a table entry")
def _(window_size):
    ws = window_size
    r = torch.arange(ws * ws)
    dr = (r[:, None] // ws - r[None] // ws) + ws - 1
    dc = (r[:, None] % ws - r[None] % ws) + ws - 1
    return dr * ws + dc


@mistake("diffit.relative_position_index", "the offsets are not shifted by ws − 1 (negative indices)")
def _(window_size):
    ws = window_size
    r = torch.arange(ws * ws)
    return (r[:, None] // ws - r[None] // ws) * (2 * ws - 1) + (r[:, None] % ws - r[None] % ws)


@exercise("diffit.relative_position_index")
def check_relative_position_index(impl, ref):
    for ws in (1, 2, 3, 4, 7):
        want = _index_by_loops(ws)
        expect_close(ref.relative_position_index(ws), want, what="the reference against the loop formula", atol=0)
        got = _call(impl.relative_position_index, ws, what=f"relative_position_index({ws})")
        expect_tensor(got, shape=(ws * ws, ws * ws), dtype=torch.int64, what=f"relative_position_index({ws})")
        expect_close(got, want, what=f"relative_position_index({ws})", atol=0, rtol=0,
                     mistakes=wrong_outputs("diffit.relative_position_index", ws))
        expect(int(got.min()) >= 0 and int(got.max()) < (2 * ws - 1) ** 2 and len(got.unique()) == (2 * ws - 1) ** 2,
               f"relative_position_index({ws}) should use each of the (2ws − 1)² = {(2 * ws - 1) ** 2} table "
               "entries, and only those.")
    return ("equals the loop formula (query minus key, base 2ws − 1) for ws = 1, 2, 3, 4, 7; uses all (2ws − 1)² "
            "entries.")


# ---------------------------------------------------------------------------------------------------------------
# TMSA.forward
# ---------------------------------------------------------------------------------------------------------------
def _tmsa(self, x, temb, *, time_order="3hd", time_in="qkv", bias="index", repeat="interleave", scale=True):
    """TMSA written with einsum, window by window of the batch, with one ingredient changed (the wrong versions)."""
    B, H, W, C = x.shape
    ws, h = self.window_size, self.num_heads
    d = C // h
    win = _partition_by_loops(x, ws)  # (B·nW, N, C)
    Bw, N = win.shape[:2]
    qkv = self.qkv(win).reshape(Bw, N, 3, h, d)
    if temb is not None and self.qkv_temb is not None:
        tt = self.qkv_temb(temb)  # (B, 3C)
        tt = tt.repeat_interleave(Bw // B, 0) if repeat == "interleave" else tt.repeat(Bw // B, 1)
        tt = tt.reshape(Bw, 3, h, d) if time_order == "3hd" else tt.reshape(Bw, h, 3, d).transpose(1, 2)
        keep = torch.tensor(["qkv"[i] in time_in for i in range(3)], dtype=tt.dtype)[None, :, None, None]
        qkv = qkv + (tt * keep)[:, None]
    q, k, v = qkv.unbind(2)  # (Bw, N, h, d)
    logits = torch.einsum("bihd,bjhd->bhij", q, k) * (d ** -0.5 if scale else 1.0)
    idx = self.relative_position_index
    if bias != "none":
        table = self.relative_position_bias_table[(idx if bias == "index" else idx.T).reshape(-1)]
        logits = logits + table.reshape(N, N, h).permute(2, 0, 1)
    out = torch.einsum("bhij,bjhd->bihd", logits.softmax(-1), v).reshape(Bw, N, C)
    return _reverse_by_loops(self.proj(out), ws, H, W)


def _reverse_by_loops(windows, ws, H, W):
    C = windows.shape[-1]
    nW = (H // ws) * (W // ws)
    B = windows.shape[0] // nW
    x = windows.new_zeros(B, H, W, C)
    k = 0
    for b in range(B):
        for a in range(H // ws):
            for c in range(W // ws):
                x[b, a * ws:(a + 1) * ws, c * ws:(c + 1) * ws] = windows[k].reshape(ws, ws, C)
                k += 1
    return x


@mistake("diffit.TMSA.forward", "the time projection is added after the head split, split in another order than "
                                "qkv(x) (add it to qkv(x) before the split, so both split as (3, heads, head_dim))")
def _(self, x, temb):
    return _tmsa(self, x, temb, time_order="h3d")


@mistake("diffit.TMSA.forward", "the time token is ignored in q (Eq 3: q = x_s W_qs + x_t W_qt)")
def _(self, x, temb):
    return _tmsa(self, x, temb, time_in="kv")


# (Ignoring the time token in k is no mistake that any check can see: x_t W_kt adds the same vector c to every key
# of a window, which adds q_i · c to every logit of query i, and the softmax cancels it. The chapter says so.)


@mistake("diffit.TMSA.forward", "the time token is ignored in v (Eq 5: v = x_s W_vs + x_t W_vt)")
def _(self, x, temb):
    return _tmsa(self, x, temb, time_in="qk")


@mistake("diffit.TMSA.forward", "the relative position bias table is indexed transposed (B[h, i, j] reads "
                                "relative_position_index[i, j], query i, key j)")
def _(self, x, temb):
    return _tmsa(self, x, temb, bias="transposed")


@mistake("diffit.TMSA.forward", "the relative position bias B is missing (Eq 6 adds it to the logits)")
def _(self, x, temb):
    return _tmsa(self, x, temb, bias="none")


@mistake("diffit.TMSA.forward", "the time token is repeated over the windows in the wrong order (window_partition "
                                "keeps an image's windows together: repeat_interleave, not repeat)")
def _(self, x, temb):
    return _tmsa(self, x, temb, repeat="tile")


@mistake("diffit.TMSA.forward", "the logits are not scaled by 1/√head_dim")
def _(self, x, temb):
    return _tmsa(self, x, temb, scale=False)


def _tmsa_heads(self, x, temb, *, split="3hd", scale=None, softmax="module"):
    """TMSA as the reference computes it, with the head split, the scale or the softmax done another way."""
    B, H, W, C = x.shape
    ws, heads = self.window_size, self.num_heads
    windows = _partition_by_loops(x, ws)
    Bw, N, _ = windows.shape
    qkv = self.qkv(windows)
    if temb is not None and self.qkv_temb is not None:
        qkv = qkv + self.qkv_temb(temb).repeat_interleave(Bw // B, dim=0)[:, None]
    if split == "3hd":
        q, k, v = qkv.reshape(Bw, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    else:
        q, k, v = qkv.reshape(Bw, N, heads, 3, C // heads).permute(3, 0, 2, 1, 4)
    bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)].reshape(N, N, heads)
    bias = bias.permute(2, 0, 1)
    if softmax == "sdpa":
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    else:
        logits = q @ k.transpose(-2, -1) * (self.scale if scale is None else scale) + bias
        out = (torch.softmax(logits, dim=-1) if softmax == "torch" else self.softmax(logits)) @ v
    return _reverse_by_loops(self.proj(out.transpose(1, 2).reshape(Bw, N, C)), ws, H, W)


@mistake("diffit.TMSA.forward", "q, k and v are split as (heads, 3, head_dim): the 3·C channels of qkv are q, k, v "
                                "side by side, each then split into heads: (3, heads, head_dim)")
def _(self, x, temb):
    return _tmsa_heads(self, x, temb, split="h3d")


@mistake("diffit.TMSA.forward", "the logits are scaled by 1/√C (the whole width) instead of 1/√head_dim "
                                "(self.scale)")
def _(self, x, temb):
    return _tmsa_heads(self, x, temb, scale=x.shape[-1] ** -0.5)


@mistake("diffit.TMSA.forward", "the probabilities come from torch.softmax instead of self.softmax",
         says="never passes the attention logits through `self.softmax`")
def _(self, x, temb):
    return _tmsa_heads(self, x, temb, softmax="torch")


@mistake("diffit.TMSA.forward", "F.scaled_dot_product_attention computes its own softmax",
         says="never passes the attention logits through `self.softmax`")
def _(self, x, temb):
    return _tmsa_heads(self, x, temb, softmax="sdpa")


TMSA_STEPS = {
    "qkv": "the windows: window_partition(x, ws) gives (B·nW, ws², C), image by image",
    "qkv_temb": "the time token: temb as it is given, one row per image",
    "softmax": "the logits: the split of the 3C channels into (3, heads, head_dim), the time term (one per image, "
               "over its consecutive windows), the 1/√head_dim scale and the bias table[index[i, j], h]",
    "proj": "merging the heads: attn @ v, then the heads side by side again, (B·nW, N, heads·head_dim)",
    "*": "window_reverse of proj's output, back to (B, H, W, C)",
}


def _expect_softmax_used(mine, theirs, x, temb, what: str) -> None:
    """TMSA's probabilities must pass through `self.softmax`: the chapter's attention views hook into it, and the
    given TimeBiasAttention adds its time bias there."""
    seen = {}

    def grab(key):
        return lambda module, args, out: seen.setdefault(key, out.detach().clone())

    handles = [mine.softmax.register_forward_hook(grab("mine")), theirs.softmax.register_forward_hook(grab("ref"))]
    try:
        with torch.no_grad():
            _call(mine, x, temb, what=what)
            theirs(x, temb)
    finally:
        for h in handles:
            h.remove()
    if "mine" not in seen:
        raise CheckFailed(f"{what} never passes the attention logits through `self.softmax` (torch.softmax, "
                          "F.softmax or F.scaled_dot_product_attention instead?). The chapter relies on it: its "
                          "attention views hook into self.softmax, and the given TimeBiasAttention adds its time "
                          "bias there. Use attn = self.softmax(logits).")
    expect_close(seen["mine"], seen["ref"], what=f"the attention probabilities that {what} passes through "
                 "self.softmax (B·nW, heads, N, N)")


def _plain_windowed_attention(attn, x):
    """Independent plain windowed attention (no time), window by window with F.scaled_dot_product_attention."""
    B, H, W, C = x.shape
    ws, h = attn.window_size, attn.num_heads
    N = ws * ws
    idx = _index_by_loops(ws)
    bias = attn.relative_position_bias_table[idx.reshape(-1)].reshape(N, N, h).permute(2, 0, 1)  # (h, N, N)
    out = torch.empty_like(x)
    for b in range(B):
        for a in range(H // ws):
            for c in range(W // ws):
                tokens = x[b, a * ws:(a + 1) * ws, c * ws:(c + 1) * ws].reshape(N, C)
                q, k, v = attn.qkv(tokens).reshape(N, 3, h, C // h).permute(1, 2, 0, 3)  # (h, N, d) each
                o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (h, N, d)
                out[b, a * ws:(a + 1) * ws, c * ws:(c + 1) * ws] = attn.proj(o.transpose(0, 1).reshape(N, C)).reshape(
                    ws, ws, C)
    return out


TMSA_CASES = (  # (B, H, W, dim, heads, ws, temb_dim)
    (2, 8, 8, 16, 2, 4, 12),
    (1, 4, 4, 8, 1, 4, 8),  # one window: global attention, as in the latent model
    (3, 4, 6, 12, 3, 2, 6),  # non-square, 6 windows per image
)


@exercise("diffit.TMSA.forward")
def check_tmsa_forward(impl, ref):
    for i, (B, H, W, D, heads, ws, td) in enumerate(TMSA_CASES):
        mine, theirs = random_pair(impl.TMSA, ref.TMSA, D, td, heads, ws, seed=30 + i, std=0.3)
        with seeded(40 + i):
            x, temb = torch.randn(B, H, W, D), torch.randn(B, td)
        what = f"TMSA(dim={D}, heads={heads}, ws={ws}) on x {(B, H, W, D)}"
        compare_forward(mine, theirs, (x, temb), exercise="diffit.TMSA.forward", what=what, steps=TMSA_STEPS)
        _expect_softmax_used(mine, theirs, x, temb, what)
        # With the time projections zeroed, TMSA is plain windowed attention (computed here window by window).
        with torch.no_grad():
            mine.qkv_temb.weight.zero_()
            mine.qkv_temb.bias.zero_()
            got = _call(mine, x, temb, what="TMSA with zeroed time projections")
            want = _plain_windowed_attention(mine, x)
        expect_close(got, want, what=f"TMSA with its time projections zeroed (ws={ws}, {(B, H, W, D)})", atol=1e-5,
                     hint="with qkv_temb = 0, TMSA must be plain multi-head attention with the relative position "
                          "bias, inside each ws × ws window.")
    # temb=None (and a TMSA built without time projections): plain windowed attention.
    mine, theirs = random_pair(impl.TMSA, ref.TMSA, 8, None, 2, 2, seed=50)
    with seeded(51):
        x = torch.randn(2, 4, 4, 8)
    compare_forward(mine, theirs, (x, None), what="TMSA(dim=8, temb_dim=None) called with temb=None",
                    hint="skip the time term when temb is None or self.qkv_temb is None.")
    with torch.no_grad():
        expect_close(theirs(x, None), _plain_windowed_attention(theirs, x), what="the reference without time",
                     atol=1e-5)
    # The chapter's given TimeBiasAttention is your TMSA.forward with temb=None plus a time bias added in
    # self.softmax: its output must match the reference's and change with the time token.
    mine, theirs = random_pair(impl.TimeBiasAttention, ref.TimeBiasAttention, 8, 6, 2, 2, seed=53)
    with seeded(54):
        x, temb = torch.randn(2, 4, 4, 8), torch.randn(2, 6)
    what = "the given TimeBiasAttention (your TMSA.forward, its time bias added inside self.softmax)"
    with torch.no_grad():
        got, later = _call(mine, x, temb, what=what), _call(mine, x, temb + 1.0, what=what)
        expect(not torch.allclose(got, later), f"{what}: the output does not change with the time token, so the "
               "time bias never reaches the attention. Hint: compute the probabilities with self.softmax(...).")
        expect_close(got, theirs(x, temb), what=what)
    return ("matches the reference forward and backward (atol 1e-5) for 8×8 (4 windows), 4×4 (one window, batch 1) "
            "and 4×6 (6 windows, 3 heads); with its time projections zeroed it equals plain windowed attention "
            "computed window by window; temb=None works.")


# ---------------------------------------------------------------------------------------------------------------
# DiffiTBlock.forward
# ---------------------------------------------------------------------------------------------------------------
@mistake("diffit.DiffiTBlock.forward", "the residual of TMSA is missing (Eq 7: x̂ = TMSA(LN(x), x_t) + x)")
def _(self, x, temb):
    x = self.attn(self.norm1(x), temb)
    return x + self.mlp(self.norm2(x))


@mistake("diffit.DiffiTBlock.forward", "the residual of the MLP is missing (Eq 8: MLP(LN(x̂)) + x̂)")
def _(self, x, temb):
    x = x + self.attn(self.norm1(x), temb)
    return self.mlp(self.norm2(x))


@mistake("diffit.DiffiTBlock.forward", "a post-norm block (LN after the residual sum); DiffiT normalises first")
def _(self, x, temb):
    x = self.norm1(x + self.attn(x, temb))
    return self.norm2(x + self.mlp(x))


@mistake("diffit.DiffiTBlock.forward", "the MLP reads x from before the attention (a parallel block)")
def _(self, x, temb):
    return x + self.attn(self.norm1(x), temb) + self.mlp(self.norm2(x))


@mistake("diffit.DiffiTBlock.forward", "the time token does not reach TMSA (pass temb to self.attn)")
def _(self, x, temb):
    x = x + self.attn(self.norm1(x), None)
    return x + self.mlp(self.norm2(x))


@mistake("diffit.DiffiTBlock.forward", "norm2 is missing: the MLP reads x̂ itself, not LN(x̂) (Eq 8)")
def _(self, x, temb):
    x = x + self.attn(self.norm1(x), temb)
    return x + self.mlp(x)


DIFFIT_BLOCK_STEPS = {
    "norm1": "the block's input x, channels-last (B, H, W, C)",
    "attn": "what TMSA reads: LN(x) from norm1, and the time token temb",
    "norm2": "the MLP branch: it reads norm2 of x̂ = TMSA(LN(x), x_t) + x (Eq 8)",
    "mlp": "what the MLP reads: norm2 of x̂, the tokens after the attention's residual sum",
    "*": "the residual sums: out = MLP(LN(x̂)) + x̂",
}


@exercise("diffit.DiffiTBlock.forward")
def check_diffit_block_forward(impl, ref):
    for i, (B, H, W, D, heads, ws, td) in enumerate(TMSA_CASES):
        mine, theirs = random_pair(impl.DiffiTBlock, ref.DiffiTBlock, D, heads, 2.0, ws, td, seed=60 + i, std=0.2)
        with seeded(70 + i):
            x, temb = torch.randn(B, H, W, D), torch.randn(B, td)
        compare_forward(mine, theirs, (x, temb), exercise="diffit.DiffiTBlock.forward",
                        what=f"DiffiTBlock(D={D}, heads={heads}, ws={ws}) on x {(B, H, W, D)}",
                        steps=DIFFIT_BLOCK_STEPS)
    return "matches the reference forward and backward (atol 1e-5) on three shapes incl. batch 1 and 4×6 maps."


# ---------------------------------------------------------------------------------------------------------------
# DiffiTResBlock.forward
# ---------------------------------------------------------------------------------------------------------------
def _channels_last(block, h, temb):
    return block(h.permute(0, 2, 3, 1), temb).permute(0, 3, 1, 2)


@mistake("diffit.DiffiTResBlock.forward", "the outer residual is missing (Eq 10 adds the input back: "
                                          "out = DiffiTBlock(x̂, x_t) + x)")
def _(self, x, temb):
    return _channels_last(self.block, self.conv(F.silu(self.norm(x))), temb)


@mistake("diffit.DiffiTResBlock.forward", "SiLU comes before GroupNorm (Eq 9: Conv3×3(SiLU(GN(x))))")
def _(self, x, temb):
    h = self.conv(self.norm(F.silu(x)))
    return _channels_last(self.block, h, temb) + self.skip(x)


@mistake("diffit.DiffiTResBlock.forward", "the outer residual adds x̂ (the conv's output) instead of the block's "
                                          "input x")
def _(self, x, temb):
    h = self.conv(F.silu(self.norm(x)))
    return _channels_last(self.block, h, temb) + h


@mistake("diffit.DiffiTResBlock.forward", "the channels are moved with a reshape instead of a permute")
def _(self, x, temb):
    h = self.conv(F.silu(self.norm(x)))
    B, C, H, W = h.shape
    return self.block(h.reshape(B, H, W, C), temb).reshape(B, C, H, W) + self.skip(x)


@mistake("diffit.DiffiTResBlock.forward", "the outer residual is added without `skip` (the 1×1 conv where the "
                                          "channels change)")
def _(self, x, temb):
    h = self.conv(F.silu(self.norm(x)))
    return _channels_last(self.block, h, temb) + x


@mistake("diffit.DiffiTResBlock.forward", "H and W are swapped on the way to channels-last: (B, C, H, W) -> "
                                          "(B, H, W, C) is permute(0, 2, 3, 1), and back permute(0, 3, 1, 2)")
def _(self, x, temb):
    h = self.conv(F.silu(self.norm(x)))
    return self.block(h.permute(0, 3, 2, 1), temb).permute(0, 3, 2, 1) + self.skip(x)


RESBLOCK_STEPS = {
    "norm": "the block's input x",
    "conv": "Eq 9: the conv reads SiLU(GN(x))",
    "block": "the DiffiT block's input: the conv's output moved channels-last, (B, H, W, C_out), and the time token",
    "skip": "the outer residual: skip (a 1×1 conv or the identity) reads the block's input x",
    "*": "Eq 10: the block's output moved back to (B, C_out, H, W), plus skip(x)",
}


@exercise("diffit.DiffiTResBlock.forward")
def check_diffit_resblock_forward(impl, ref):
    cases = ((2, 8, 8, 8, 8, 2, 4, 12), (1, 4, 4, 16, 8, 1, 4, 8), (3, 4, 6, 8, 16, 2, 2, 6))
    for i, (B, H, W, cin, cout, heads, ws, td) in enumerate(cases):
        mine, theirs = random_pair(impl.DiffiTResBlock, ref.DiffiTResBlock, cin, cout, td, heads, ws, 2.0, 4,
                                   seed=80 + i, norms_only=True)
        with seeded(90 + i):
            x, temb = torch.randn(B, cin, H, W), torch.randn(B, td)
        what = f"DiffiTResBlock({cin} -> {cout} channels, ws={ws}) on x {(B, cin, H, W)}"
        name_a_raise("diffit.DiffiTResBlock.forward", mine, theirs, (x, temb), what)
        compare_forward(mine, theirs, (x, temb), exercise="diffit.DiffiTResBlock.forward", what=what,
                        steps=RESBLOCK_STEPS)
    return ("matches the reference forward and backward (atol 1e-5): 8 -> 8 channels, 16 -> 8 (the 1×1 skip), "
            "8 -> 16 on a 4×6 map, batch 1 to 3.")


# ---------------------------------------------------------------------------------------------------------------
# DiffiT.forward
# ---------------------------------------------------------------------------------------------------------------
def _unet(self, x, t, y, *, label=True, time=True, skip_order="h_first", skips=True, pop_last=True):
    y = torch.full_like(t, self.num_classes) if y is None else y
    temb = (self.t_embedder(t) if time else 0) + (self.y_embedder(y) if label else 0)
    h = self.tokenizer(x)
    kept = []
    for level, blocks in enumerate(self.encoder):
        for block in blocks:
            h = block(h, temb)
        if level < len(self.downsample):
            kept.append(h)
            h = self.downsample[level](h)
    for up, blocks in zip(self.upsample, self.decoder):
        u, s = up(h), kept.pop() if pop_last else kept.pop(0)
        s = s if skips else torch.zeros_like(s)
        h = torch.cat([u, s] if skip_order == "h_first" else [s, u], dim=1)
        for block in blocks:
            h = block(h, temb)
    return self.head(h)


@mistake("diffit.DiffiT.forward", "the skip is concatenated before the upsampled features ([h, skip] along the "
                                  "channels, in this order)")
def _(self, x, t, y=None):
    return _unet(self, x, t, y, skip_order="skip_first")


@mistake("diffit.DiffiT.forward", "the class label is ignored (the time token is t_embedder(t) + y_embedder(y))")
def _(self, x, t, y=None):
    return _unet(self, x, t, y, label=False)


@mistake("diffit.DiffiT.forward", "the timestep is ignored (the time token is t_embedder(t) + y_embedder(y))")
def _(self, x, t, y=None):
    return _unet(self, x, t, y, time=False)


@mistake("diffit.DiffiT.forward", "the decoder gets no encoder features (the skips must carry each level's "
                                  "encoder output)")
def _(self, x, t, y=None):
    return _unet(self, x, t, y, skips=False)


@mistake("diffit.DiffiT.forward", "the skips are taken first in, first out; going up, each level needs the last "
                                  "one kept")
def _(self, x, t, y=None):
    return _unet(self, x, t, y, pop_last=False)


def _diffit_steps(model) -> dict[str, str]:
    steps = {"t_embedder": "the timesteps t as given", "y_embedder": "the labels: y, the null class num_classes "
             "where y is None", "tokenizer": "the image x as given", "head": "the last decoder block's output",
             "*": "the output: head's result is returned as it is"}
    for i, blocks in enumerate(model.encoder):
        for j in range(len(blocks)):
            steps[f"encoder.{i}.{j}"] = (f"encoder level {i}: its blocks run one after the other on h, each with "
                                         "the time token t_embedder(t) + y_embedder(y)")
    for i in range(len(model.downsample)):
        steps[f"downsample.{i}"] = f"the end of encoder level {i}: keep h as its skip, then downsample it"
    for j, blocks in enumerate(model.decoder):
        steps[f"upsample.{j}"] = "the bottom of the U, or the previous decoder level's output"
        steps[f"decoder.{j}.0"] = (f"decoder level {j}: cat([upsample(h), skip], dim=1) with the skip of the same "
                                   "resolution (the last one kept)")
        for k in range(1, len(blocks)):
            steps[f"decoder.{j}.{k}"] = f"decoder level {j}: its blocks run one after the other"
    return steps


DIFFIT_CASES = (  # (config, input shape)
    (dict(img_size=8, channels=(8, 16), depths=(1, 1), window_size=4, num_heads=2, time_dim=12), (2, 1, 8, 8)),
    (dict(img_size=8, channels=(8, 16, 16), depths=(1, 2, 1), window_size=2, num_heads=2, time_dim=8), (1, 1, 8, 8)),
    (dict(img_size=8, in_channels=3, channels=(8, 16), depths=(2, 1), window_size=2, num_heads=1, time_dim=8,
          num_classes=5), (2, 3, 4, 8)),
)


@exercise("diffit.DiffiT.forward")
def check_diffit_forward(impl, ref):
    for i, (cfg, shape) in enumerate(DIFFIT_CASES):
        mine, theirs = random_pair(impl.DiffiT, ref.DiffiT, seed=100 + i, norms_only=True, mlp_ratio=2.0, **cfg)
        with seeded(110 + i), torch.no_grad():  # the head starts at zero: give it weights, or nothing is seen
            theirs.head[-1].weight.normal_(0, 0.2)
            theirs.head[-1].bias.normal_(0, 0.2)
        mine.load_state_dict(theirs.state_dict())
        nc = cfg.get("num_classes", 10)
        with seeded(120 + i):
            x = torch.randn(*shape)
            t = torch.randint(0, 1000, (shape[0],))
            y = torch.randint(0, nc + 1, (shape[0],))
        what = f"DiffiT(channels={cfg['channels']}, depths={cfg['depths']}, ws={cfg['window_size']}) on {shape}"
        name_a_raise("diffit.DiffiT.forward", mine, theirs, (x, t, y), what)
        check_denoiser(mine, theirs, x, t, y, exercise="diffit.DiffiT.forward", num_classes=nc, what=what,
                       steps=_diffit_steps(theirs))
    return ("matches the reference forward and backward (atol 1e-5) for 2 and 3 levels, 1 and 2 blocks per level, "
            "windows 4 and 2, a 4×8 RGB input; y=None is the null class; depends on t and y.")


# ---------------------------------------------------------------------------------------------------------------
# Hints on request (`hint("name")`, `python -m course hint name`): level 1 a nudge, the only one a failed check
# quotes; the last close to the recipe.
# ---------------------------------------------------------------------------------------------------------------
hints("diffit.window_partition",
      "Windows are read row-major over the (H/ws, W/ws) grid of windows, image by image, and the tokens inside "
      "a window row-major too.",
      "Split H into (H/ws, ws) and W into (W/ws, ws) with one reshape; the two window indices must end up next "
      "to each other before the two in-window indices.",
      "reshape to (B, H/ws, ws, W/ws, ws, C), permute(0, 1, 3, 2, 4, 5), reshape to (−1, ws·ws, C).")
hints("diffit.window_reverse",
      "Undo window_partition step by step, in the reverse order; B is whatever is left of the first dimension.",
      "reshape to (B, H/ws, W/ws, ws, ws, C) and swap the middle axes back to (B, H/ws, ws, W/ws, ws, C).",
      "permute(0, 1, 3, 2, 4, 5), then reshape to (B, H, W, C).")
hints("diffit.relative_position_index",
      "Each (query, key) pair of a window reads the table entry of its 2D offset (query minus key); offsets "
      "from −(ws − 1) to ws − 1 in each axis make (2ws − 1)² entries.",
      "Row and column of every token (torch.meshgrid, indexing=\"ij\", flattened); the offsets are coords[:, :, "
      "None] − coords[:, None, :].",
      "Shift both offsets by ws − 1 into [0, 2ws − 2], then read them as the two digits of a base-(2ws − 1) "
      "number, the row offset first: an int64 tensor of shape (ws², ws²).")
hints("diffit.TMSA.forward",
      "TMSA is windowed multi-head attention whose q, k and v each get a projection of the image's time token "
      "added (Eqs 3-5), plus the relative position bias in the logits (Eq 6); the probabilities go through "
      "`self.softmax`.",
      "qkv_temb(temb) is one 3C vector per image: repeat it over that image's windows (they are consecutive "
      "after window_partition) and add it to every token before splitting into heads; the 3C channels are "
      "ordered (3, heads, head_dim); scale by 1/√head_dim.",
      "bias = table[index.view(-1)].view(N, N, heads).permute(2, 0, 1); attn = self.softmax(q k^T · scale + "
      "bias); (attn @ v) merged back to (B·nW, N, C); proj; window_reverse.")
hints("diffit.DiffiTBlock.forward",
      "Eqs 7-8: a pre-norm block whose attention is TMSA; the time token reaches the block only through TMSA.",
      "x = x + attn(norm1(x), temb); x = x + mlp(norm2(x)).")
hints("diffit.DiffiTResBlock.forward",
      "Eqs 9-10: GroupNorm → SiLU → conv, then the DiffiT block, plus the outer residual; the block works "
      "channels-last.",
      "h = conv(SiLU(norm(x))); through the block as (B, H, W, C) with permute, and back to (B, C, H, W).",
      "return h + skip(x) (skip is the 1×1 conv where the channels change).")
hints("diffit.DiffiT.forward",
      "A U: keep each encoder level's output before downsampling; going up, each level concatenates the skip of "
      "its own resolution (last kept, first used); the time token t_embedder(t) + y_embedder(y) reaches every "
      "ResBlock.",
      "y=None is the null class num_classes; encoder: the level's blocks, then (except at the bottom) push h "
      "and downsample; decoder: zip(upsample, decoder).",
      "h = cat([up(h), skips.pop()], dim=1), then the level's blocks; finally head(h).")

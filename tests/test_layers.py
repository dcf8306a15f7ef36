"""Plausible wrong versions of the `layers` exercises fail their checks, with a message that helps."""
import math

import torch
import torch.nn.functional as F

from tests.helpers import assert_fails, grade_edited, grade_replaced


# --- timestep_embedding ------------------------------------------------------------------------------------------
def test_timestep_embedding_sin_first_is_named():
    result = grade_edited("layers.timestep_embedding", "torch.cat([torch.cos(args), torch.sin(args)], dim=-1)",
                          "torch.cat([torch.sin(args), torch.cos(args)], dim=-1)")
    assert_fails(result, "sin and cos are swapped")


def test_timestep_embedding_half_minus_one():
    result = grade_edited("layers.timestep_embedding", "dtype=torch.float32, device=t.device) / half)",
                          "dtype=torch.float32, device=t.device) / (half - 1))")
    assert_fails(result, "(half − 1)")


def test_timestep_embedding_odd_dim_without_zero_column():
    result = grade_edited("layers.timestep_embedding", "    if dim % 2:\n        embedding = torch.cat(",
                          "    if False:\n        embedding = torch.cat(")
    assert_fails(result, "dim=7", "shape")


def test_timestep_embedding_ignores_max_period():
    result = grade_edited("layers.timestep_embedding", "-math.log(max_period)", "-math.log(10000.0)")
    assert_fails(result, "max_period")


# --- get_2d_sincos_pos_embed ------------------------------------------------------------------------------------
def test_pos_embed_halves_swapped():
    result = grade_edited("layers.get_2d_sincos_pos_embed", "torch.cat([emb_w, emb_h], dim=1)",
                          "torch.cat([emb_h, emb_w], dim=1)")
    assert_fails(result, "halves are swapped")


def test_pos_embed_h_and_w_swapped():
    result = grade_edited("layers.get_2d_sincos_pos_embed", "torch.meshgrid(torch.arange(h), torch.arange(w),",
                          "torch.meshgrid(torch.arange(w), torch.arange(h),")
    assert_fails(result, "h and w are swapped")


def test_pos_embed_column_major():
    result = grade_edited("layers.get_2d_sincos_pos_embed", 'indexing="ij")', 'indexing="xy")')
    assert_fails(result, "column-major")


def test_pos_embed_cos_first():
    def cos_first(embed_dim, grid_size):
        h, w = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
        rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")

        def one(D, pos):
            omega = 1.0 / 10000 ** (torch.arange(D // 2, dtype=torch.float64) / (D / 2))
            out = pos.reshape(-1).double()[:, None] * omega[None]
            return torch.cat([torch.cos(out), torch.sin(out)], dim=1)

        return torch.cat([one(embed_dim // 2, cols), one(embed_dim // 2, rows)], dim=1).float()

    assert_fails(grade_replaced("layers.get_2d_sincos_pos_embed", cos_first), "cos comes first")


# --- patchify / unpatchify --------------------------------------------------------------------------------------
def test_patchify_channel_first_inner_order():
    result = grade_edited("layers.patchify", 'torch.einsum("nchpwq->nhwpqc", x)', 'torch.einsum("nchpwq->nhwcpq", x)')
    assert_fails(result, "(channel, row, column)")


def test_patchify_p_and_q_swapped():
    result = grade_edited("layers.patchify", 'torch.einsum("nchpwq->nhwpqc", x)', 'torch.einsum("nchpwq->nhwqpc", x)')
    assert_fails(result, "p and q")


def test_patchify_column_major_tokens():
    result = grade_edited("layers.patchify", 'torch.einsum("nchpwq->nhwpqc", x)', 'torch.einsum("nchpwq->nwhpqc", x)')
    assert_fails(result, "column-major")


def test_patchify_plain_reshape():
    def plain(x, patch_size):
        B, C, H, W = x.shape
        return x.reshape(B, (H // patch_size) * (W // patch_size), patch_size * patch_size * C)

    assert_fails(grade_replaced("layers.patchify", plain), "plain reshape")


def test_unpatchify_channel_first_inner_order():
    result = grade_edited("layers.unpatchify", "x = x.reshape(B, h, w, p, p, C)\n    x = torch.einsum(\"nhwpqc->nchpwq\", x)",
                          "x = x.reshape(B, h, w, C, p, p)\n    x = torch.einsum(\"nhwcpq->nchpwq\", x)")
    assert_fails(result, "(channel, row, column)")


def test_unpatchify_p_and_q_swapped():
    result = grade_edited("layers.unpatchify", 'torch.einsum("nhwpqc->nchpwq", x)', 'torch.einsum("nhwqpc->nchpwq", x)')
    assert_fails(result, "p and q")


def test_unpatchify_ignores_grid():
    result = grade_edited("layers.unpatchify", "h, w = grid if grid is not None else", "h, w = None if False else")
    assert_fails(result, "raised")


# --- attention ---------------------------------------------------------------------------------------------------
def test_attention_without_scale():
    result = grade_edited("layers.attention", "q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])",
                          "q @ k.transpose(-2, -1)")
    assert_fails(result, "1/√d scale is missing")


def test_attention_divides_by_d():
    result = grade_edited("layers.attention", "/ math.sqrt(q.shape[-1])", "/ q.shape[-1]")
    assert_fails(result, "divided by d instead of √d")


def test_attention_softmax_over_queries():
    result = grade_edited("layers.attention", "scores.softmax(dim=-1) @ v", "scores.softmax(dim=-2) @ v")
    assert_fails(result, "over the queries")


def test_attention_detached():
    result = grade_replaced("layers.attention", lambda q, k, v: F.scaled_dot_product_attention(q, k, v).detach())
    assert_fails(result)


# --- Attention.forward ------------------------------------------------------------------------------------------
def test_Attention_heads_merged_without_transpose():
    result = grade_edited("layers.Attention.forward", "out = out.transpose(1, 2).reshape(B, N, D)",
                          "out = out.reshape(B, N, D)")
    assert_fails(result, "transpose(1, 2)")


def test_Attention_without_output_projection():
    result = grade_edited("layers.Attention.forward", "return self.proj(out)", "return out")
    assert_fails(result, "`proj` is missing")


def test_Attention_single_head():
    def one_head(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # (B, N, D) each: all heads at once
        return self.proj(F.scaled_dot_product_attention(q, k, v))

    assert_fails(grade_replaced("layers.Attention.forward", one_head), "per head")


def test_Attention_missing_scale_in_manual_path():
    result = grade_edited("layers.Attention.forward", "if self.fused else attention(q, k, v)",
                          "if self.fused else (q @ k.transpose(-2, -1)).softmax(-1) @ v")
    assert_fails(result, "fused=False")

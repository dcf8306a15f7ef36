"""The given layers of `layers` behave as their docstrings say (the exercises' plausible mistakes are declared in
course/grader/checks/layers.py and graded by tests/test_exercises.py)."""
import torch
import torch.nn.functional as F

from course.grader.exercises import reference_module

layers = reference_module("layers")


def test_patch_embed_is_patchify_then_a_linear_layer():
    torch.manual_seed(0)
    embed = layers.PatchEmbed(img_size=8, patch_size=2, in_chans=3, embed_dim=16)
    x = torch.randn(2, 3, 8, 6)
    # The conv's weight (D, C, p, q) read in patchify's token order (p, q, c) is a Linear of p·p·C inputs.
    weight = embed.proj.weight.permute(0, 2, 3, 1).reshape(16, -1)
    want = F.linear(layers.patchify(x, 2), weight, embed.proj.bias)
    assert embed.num_patches == 16 and embed(x).shape == (2, 12, 16)
    assert torch.allclose(embed(x), want, atol=1e-5)


def test_1d_sincos_is_sin_first_and_the_2d_one_needs_a_multiple_of_4():
    pos = torch.arange(5)
    emb = layers.get_1d_sincos_pos_embed(8, pos)
    assert emb.shape == (5, 8) and emb.dtype == torch.float64
    assert torch.allclose(emb[:, 0], torch.sin(pos.double())) and torch.allclose(emb[:, 4], torch.cos(pos.double()))
    try:
        layers.get_2d_sincos_pos_embed(6, 2)
    except ValueError as e:
        assert "divisible by 4" in str(e)
    else:
        raise AssertionError("an embed_dim that is not a multiple of 4 should raise")


def test_timestep_embedder_and_mlp_shapes():
    torch.manual_seed(0)
    embedder = layers.TimestepEmbedder(32, frequency_embedding_size=16)
    assert embedder(torch.tensor([0, 999])).shape == (2, 32)
    mlp = layers.Mlp(8, 32, approximate="tanh")
    assert mlp(torch.randn(3, 5, 8)).shape == (3, 5, 8) and mlp.act.approximate == "tanh"


def test_attention_map_is_the_softmax_the_fused_path_uses():
    torch.manual_seed(0)
    attn = layers.Attention(16, num_heads=4)
    x = torch.randn(2, 6, 16)
    probs = attn.attention_map(x)
    assert probs.shape == (2, 4, 6, 6) and torch.allclose(probs.sum(-1), torch.ones(2, 4, 6))
    q, k, v = attn.qkv_heads(x)
    assert torch.allclose(probs @ v, F.scaled_dot_product_attention(q, k, v), atol=1e-5)
    try:
        layers.Attention(10, num_heads=4)
    except ValueError as e:
        assert "divisible" in str(e)
    else:
        raise AssertionError("dim not divisible by num_heads should raise")

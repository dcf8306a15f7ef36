"""Chapter 5, `diffit`: what is specific to the module (its declared mistakes are graded in test_exercises.py).

The official latent model's layout (state-dict keys, shapes, the 561 M parameters of Table 9); TMSA's properties
(the time term of k cancels in the softmax; the time changes the attention; windows do not mix); the image-space
model's shapes, zero head and window sizes; the time-entry variants of the ablation.
"""
import pytest
import torch

from course.grader.exercises import reference_module

diffit = reference_module("diffit")


# --- the official latent model ------------------------------------------------------------------------------------
OFFICIAL_KEYS_BLOCK0 = {  # NVlabs/DiffiT diffit/diffit.py, DiffiTBlock and DiffiTAttention (timm Mlp: fc1, fc2)
    "blocks.0.attn.qkv_temb.weight": (3 * 1152, 1152), "blocks.0.attn.qkv_temb.bias": (3 * 1152,),
    "blocks.0.attn.relative_position_bias_table": (31 * 31, 16), "blocks.0.attn.relative_position_index": (256, 256),
    "blocks.0.attn.qkv.weight": (3 * 1152, 1152), "blocks.0.attn.qkv.bias": (3 * 1152,),
    "blocks.0.attn.proj.weight": (1152, 1152), "blocks.0.attn.proj.bias": (1152,),
    "blocks.0.mlp.fc1.weight": (4608, 1152), "blocks.0.mlp.fc1.bias": (4608,),
    "blocks.0.mlp.fc2.weight": (1152, 4608), "blocks.0.mlp.fc2.bias": (1152,),
}
OFFICIAL_KEYS_OTHER = {
    "pos_embed": (1, 256, 1152), "x_embedder.proj.weight": (1152, 4, 2, 2), "x_embedder.proj.bias": (1152,),
    "t_embedder.mlp.0.weight": (1152, 256), "t_embedder.mlp.0.bias": (1152,), "t_embedder.mlp.2.weight": (1152, 1152),
    "t_embedder.mlp.2.bias": (1152,), "y_embedder.embedding_table.weight": (1001, 1152),
    "final_layer.linear.weight": (32, 1152), "final_layer.linear.bias": (32,),
}


def test_latent_diffit_xl2_has_the_official_layout_and_561m_parameters():
    with torch.device("meta"):
        model = diffit.LatentDiffiT_models["DiffiT-XL/2"]()
    state = model.state_dict()
    assert len(model.blocks) == 28
    for key, shape in {**OFFICIAL_KEYS_BLOCK0, **OFFICIAL_KEYS_OTHER}.items():
        assert tuple(state[key].shape) == shape, key
    per_block = {k.split(".", 2)[2] for k in state if k.startswith("blocks.")}
    assert per_block == {k.split(".", 2)[2] for k in OFFICIAL_KEYS_BLOCK0}
    assert set(state) - {k for k in state if k.startswith("blocks.")} == set(OFFICIAL_KEYS_OTHER)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert abs(trainable / 1e6 - 561.0) < 0.1, trainable  # the paper's Table 9: 561M
    assert diffit.DiffiTAttention is diffit.TMSA


def test_latent_diffit_small_runs_and_starts_at_zero():
    torch.manual_seed(0)
    model = diffit.LatentDiffiT(input_size=8, patch_size=2, in_channels=1, hidden_size=32, depth=2, num_heads=2,
                                num_classes=10, learn_sigma=False).eval()
    assert model.blocks[0].attn.window_size == 4  # the window is the whole 4×4 token grid: global attention
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 900])
    with torch.no_grad():
        assert torch.equal(model(x, t, None), torch.zeros_like(x))
        torch.nn.init.normal_(model.final_layer.linear.weight, std=0.1)
        a, b = model(x, t, torch.tensor([1, 2])), model(x, t, torch.tensor([3, 4]))
    assert a.shape == x.shape and not torch.allclose(a, b)


# --- TMSA ----------------------------------------------------------------------------------------------------------
def _random_tmsa(dim=16, temb_dim=8, heads=2, ws=4, seed=0):
    torch.manual_seed(seed)
    attn = diffit.TMSA(dim, temb_dim, heads, ws)
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_(0, 0.3)
    return attn


def _attention_probs(attn, x, temb):
    probs = []
    handle = attn.softmax.register_forward_hook(lambda m, i, o: probs.append(o))
    with torch.no_grad():
        attn(x, temb)
    handle.remove()
    return probs[0]


def test_the_time_term_of_the_keys_cancels_in_the_softmax():
    attn = _random_tmsa()
    x, temb = torch.randn(2, 8, 8, 16), torch.randn(2, 8)
    with torch.no_grad():
        before = attn(x, temb)
        attn.qkv_temb.weight[16:32].normal_(0, 3.0)  # the k rows of W_kt: anything at all
        attn.qkv_temb.bias[16:32].normal_(0, 3.0)
        after = attn(x, temb)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)


def test_tmsa_attention_changes_with_time_and_plain_attention_does_not():
    attn = _random_tmsa()
    x = torch.randn(1, 8, 8, 16)
    early, late = _attention_probs(attn, x, torch.randn(1, 8)), _attention_probs(attn, x, torch.randn(1, 8))
    assert (early - late).abs().max() > 1e-2
    assert torch.equal(_attention_probs(attn, x, None), _attention_probs(attn, x, None))


def test_windows_do_not_mix():
    attn = _random_tmsa(ws=4)
    x, temb = torch.randn(1, 8, 8, 16), torch.randn(1, 8)
    y = x.clone()
    y[:, 4:, 4:] += 1.0  # change only the bottom-right window
    with torch.no_grad():
        a, b = attn(x, temb), attn(y, temb)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    torch.testing.assert_close(a[:, 4:, :4], b[:, 4:, :4])
    assert not torch.allclose(a[:, 4:, 4:], b[:, 4:, 4:])


def test_window_partition_rejects_sizes_that_do_not_divide():
    with pytest.raises(ValueError, match="multiples of the window size"):
        diffit.window_partition(torch.zeros(1, 6, 6, 2), 4)


# --- the image-space DiffiT ---------------------------------------------------------------------------------------
def test_image_space_diffit_shapes_zero_head_and_windows():
    torch.manual_seed(0)
    model = diffit.create_diffit("DiffiT-T")
    assert model.windows == [4, 4]
    assert diffit.create_diffit("DiffiT-T", window_size=2).windows == [2, 2]
    assert diffit.create_diffit("DiffiT-T", window_size=None).windows == [8, 4]
    assert model.encoder[0][0].block.attn.relative_position_bias_table.shape == (49, 2)
    assert isinstance(model.decoder[0][0].skip, torch.nn.Conv2d)  # 2·C -> C after the concatenation
    assert model.y_embedder.num_embeddings == 11
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([0, 500, 999])
    with torch.no_grad():
        assert torch.equal(model(x, t, None), torch.zeros_like(x))
        torch.nn.init.normal_(model.head[-1].weight, std=0.1)
        out = model(x, t, torch.tensor([1, 2, 3]))
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("entry", list(diffit.TIME_ENTRIES))
def test_every_time_entry_runs_depends_on_t_and_trains(entry):
    torch.manual_seed(0)
    model = diffit.create_diffit("DiffiT-T", channels=(16, 32), time_dim=16, time_entry=entry)
    with torch.no_grad():
        torch.nn.init.normal_(model.head[-1].weight, std=0.1)
        for m in model.modules():  # adaLN starts at zero; give it weights so that time shows
            if hasattr(m, "adaLN_modulation"):
                torch.nn.init.normal_(m.adaLN_modulation[-1].weight, std=0.1)
    x, y = torch.randn(2, 1, 8, 8), torch.tensor([1, 2])
    a, b = model(x, torch.tensor([10, 10]), y), model(x, torch.tensor([900, 900]), y)
    assert not torch.allclose(a, b)
    a.square().mean().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "qkv_temb" in n)
    if entry != "tmsa":
        assert not any("qkv_temb" in n for n, _ in model.named_parameters())


def test_unknown_time_entry_and_mismatched_levels_are_refused():
    with pytest.raises(ValueError, match="time_entry"):
        diffit.DiffiT(time_entry="cross-attention")
    with pytest.raises(ValueError, match="one entry per level"):
        diffit.DiffiT(channels=(8, 16), depths=(1,))

"""Chapter 2, `dit`: wrong versions of each exercise fail with a helpful message; the reference is the official DiT
layout (state-dict keys, shapes, parameter count, FLOPs); a fresh DiT outputs zeros; the ablation variants run."""
import torch

from course.exercises import reference_module
from tests.helpers import assert_fails, grade_edited, grade_replaced

dit = reference_module("dit")
Diffusion = reference_module("diffusion").Diffusion


# ---------------------------------------------------------------------------------------------------------------
# modulate
# ---------------------------------------------------------------------------------------------------------------
def test_modulate_without_one_plus_fails():
    r = grade_edited("dit.modulate", "return x * (1 + scale.unsqueeze(1))", "return x * (scale.unsqueeze(1))")
    assert_fails(r, "1 +")


def test_modulate_swapped_fails():
    r = grade_replaced("dit.modulate", lambda x, shift, scale: x * (1 + shift[:, None]) + scale[:, None])
    assert_fails(r, "swapped")


def test_modulate_broadcast_over_batch_fails():
    r = grade_replaced("dit.modulate", lambda x, shift, scale: x * (1 + scale) + shift)
    assert_fails(r)
    assert "raised" in r.message or "batch instead of the tokens" in r.message


# ---------------------------------------------------------------------------------------------------------------
# LabelEmbedder.token_drop
# ---------------------------------------------------------------------------------------------------------------
def test_token_drop_at_evaluation_fails():
    r = grade_edited("dit.LabelEmbedder.token_drop", "elif train and self.dropout_prob > 0:",
                     "elif self.dropout_prob > 0:")
    assert_fails(r, "train=False", "unchanged")


def test_token_drop_wrong_comparison_fails():
    r = grade_edited("dit.LabelEmbedder.token_drop", "device=labels.device) < self.dropout_prob",
                     "device=labels.device) > self.dropout_prob")
    assert_fails(r, "dropped", "<")


def test_token_drop_wrong_null_label_fails():
    r = grade_edited("dit.LabelEmbedder.token_drop", "torch.full_like(labels, self.num_classes)",
                     "torch.full_like(labels, self.num_classes - 1)")
    assert_fails(r, "null label")


def test_token_drop_ignoring_force_fails():
    def token_drop(self, labels, train, force_drop_ids=None):
        if not train or self.dropout_prob == 0:
            return labels
        drop = torch.rand(labels.shape[0]) < self.dropout_prob
        return torch.where(drop, self.num_classes, labels)

    assert_fails(grade_replaced("dit.LabelEmbedder.token_drop", token_drop), "force_drop_ids")


def test_token_drop_in_place_fails():
    def token_drop(self, labels, train, force_drop_ids=None):
        if force_drop_ids is not None:
            labels[force_drop_ids == 1] = self.num_classes
        elif train and self.dropout_prob > 0:
            labels[torch.rand(labels.shape[0]) < self.dropout_prob] = self.num_classes
        return labels

    assert_fails(grade_replaced("dit.LabelEmbedder.token_drop", token_drop), "in place")


# ---------------------------------------------------------------------------------------------------------------
# DiTBlock.forward
# ---------------------------------------------------------------------------------------------------------------
def test_block_chunk_order_fails():
    r = grade_edited("dit.DiTBlock.forward", "shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self",
                     "shift_msa, shift_mlp, scale_msa, scale_mlp, gate_msa, gate_mlp = self")
    assert_fails(r, "another order")


def test_block_shift_scale_swapped_fails():
    r = grade_edited("dit.DiTBlock.forward", "shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self",
                     "scale_msa, shift_msa, gate_msa, scale_mlp, shift_mlp, gate_mlp = self")
    assert_fails(r, "swapped")


def _block_forward(one_plus=True, gates=True):
    def forward(self, x, c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        k = 1.0 if one_plus else 0.0
        g1, g2 = (gate_msa[:, None], gate_mlp[:, None]) if gates else (1.0, 1.0)
        x = x + g1 * self.attn(self.norm1(x) * (k + scale_msa[:, None]) + shift_msa[:, None])
        return x + g2 * self.mlp(self.norm2(x) * (k + scale_mlp[:, None]) + shift_mlp[:, None])

    return forward


def test_block_without_one_plus_fails():
    assert_fails(grade_replaced("dit.DiTBlock.forward", _block_forward(one_plus=False)), "1 +")


def test_block_without_gates_fails():
    assert_fails(grade_replaced("dit.DiTBlock.forward", _block_forward(gates=False)), "gates")


def test_block_with_affine_layernorm_fails():
    r = grade_edited("dit.DiTBlock.forward", "self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)",
                     "self.norm1 = nn.LayerNorm(hidden_size, eps=1e-6)", count=2)
    assert_fails(r, "norm1.weight")


def test_block_parallel_branches_fails():
    def forward(self, x, c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        a = gate_msa[:, None] * self.attn(dit.modulate(self.norm1(x), shift_msa, scale_msa))
        m = gate_mlp[:, None] * self.mlp(dit.modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x + a + m

    assert_fails(grade_replaced("dit.DiTBlock.forward", forward), "block's input")


# ---------------------------------------------------------------------------------------------------------------
# FinalLayer.forward
# ---------------------------------------------------------------------------------------------------------------
def test_final_layer_swapped_fails():
    r = grade_edited("dit.FinalLayer.forward", "shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)",
                     "scale, shift = self.adaLN_modulation(c).chunk(2, dim=1)")
    assert_fails(r, "swapped")


def test_final_layer_without_norm_fails():
    r = grade_edited("dit.FinalLayer.forward", "x = modulate(self.norm_final(x), shift, scale)",
                     "x = modulate(x, shift, scale)")
    assert_fails(r, "LayerNorm")


def test_final_layer_without_one_plus_fails():
    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(self.norm_final(x) * scale[:, None] + shift[:, None])

    assert_fails(grade_replaced("dit.FinalLayer.forward", forward), "1 +")


# ---------------------------------------------------------------------------------------------------------------
# DiT.initialize_weights
# ---------------------------------------------------------------------------------------------------------------
def test_init_gates_not_zero_fails():
    r = grade_edited("dit.DiT.initialize_weights", "            nn.init.zeros_(block.adaLN_modulation[-1].weight)\n"
                     "            nn.init.zeros_(block.adaLN_modulation[-1].bias)\n", "            pass\n")
    assert_fails(r, "blocks.0.adaLN_modulation.1.weight", "identity")


def test_init_final_layer_not_zero_fails():
    r = grade_edited("dit.DiT.initialize_weights", "        nn.init.zeros_(self.final_layer.linear.weight)\n"
                     "        nn.init.zeros_(self.final_layer.linear.bias)\n        # END SOLUTION", "        # END SOLUTION")
    assert_fails(r, "final_layer.linear.weight")


def test_init_default_pytorch_linears_fails():
    r = grade_edited("dit.DiT.initialize_weights", "        self.apply(_basic_init)\n", "")
    assert_fails(r, "xavier")


def test_init_patch_embedding_4d_xavier_fails():
    r = grade_edited("dit.DiT.initialize_weights", "nn.init.xavier_uniform_(w.view(w.shape[0], -1))",
                     "nn.init.xavier_uniform_(w)")
    assert_fails(r, "x_embedder.proj.weight")


def test_init_pos_embed_left_at_zero_fails():
    r = grade_edited("dit.DiT.initialize_weights", "self.pos_embed.data.copy_(pos_embed.unsqueeze(0))", "pass")
    assert_fails(r, "pos_embed", "zero")


def test_init_label_table_std_fails():
    r = grade_edited("dit.DiT.initialize_weights", "nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)",
                     "nn.init.normal_(self.y_embedder.embedding_table.weight, std=1.0)")
    assert_fails(r, "y_embedder.embedding_table.weight", "N(0")


# ---------------------------------------------------------------------------------------------------------------
# DiT.forward
# ---------------------------------------------------------------------------------------------------------------
def test_forward_without_pos_embed_fails():
    r = grade_edited("dit.DiT.forward", "x = self.x_embedder(x) + self.pos_embed  # (B, N, D)",
                     "x = self.x_embedder(x)  # (B, N, D)", count=2)
    assert_fails(r, "pos_embed")


def test_forward_label_dropout_at_evaluation_fails():
    r = grade_edited("dit.DiT.forward", "y = self.y_embedder(y, self.training)  # (B, D)",
                     "y = self.y_embedder(y, True)  # (B, D)", count=2)
    assert_fails(r, "dropped at evaluation")


def test_forward_never_drops_labels_fails():
    r = grade_edited("dit.DiT.forward", "y = self.y_embedder(y, self.training)  # (B, D)",
                     "y = self.y_embedder(y, False)  # (B, D)", count=2)
    assert_fails(r, "never dropped")


def test_forward_ignores_labels_fails():
    r = grade_edited("dit.DiT.forward", "c = t + y  # (B, D)", "c = t  # (B, D)", count=2)
    assert_fails(r, "labels are ignored")


def _forward_with_unpatchify(unpatch):
    def forward(self, x, t, y):
        B, C, H, W = x.shape
        tokens = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y, self.training)
        for block in self.blocks:
            tokens = block(tokens, c)
        return unpatch(self.final_layer(tokens, c), B, self.out_channels, H, self.patch_size)

    return forward


def test_forward_naive_reshape_fails():
    naive = _forward_with_unpatchify(lambda out, B, C, H, p: out.reshape(B, C, H, H))
    assert_fails(grade_replaced("dit.DiT.forward", naive), "reshaped straight")


def test_forward_channel_first_token_order_fails():
    def unpatch(out, B, C, H, p):
        h = H // p
        return out.reshape(B, h, h, C, p, p).permute(0, 3, 1, 4, 2, 5).reshape(B, C, H, H)

    assert_fails(grade_replaced("dit.DiT.forward", _forward_with_unpatchify(unpatch)), "(channel, row, column)")


def test_forward_transposed_grid_fails():
    def unpatch(out, B, C, H, p):
        h = H // p
        return torch.einsum("nhwpqc->ncwphq", out.reshape(B, h, h, p, p, C)).reshape(B, C, H, H)

    assert_fails(grade_replaced("dit.DiT.forward", _forward_with_unpatchify(unpatch)), "transposed")


# ---------------------------------------------------------------------------------------------------------------
# DiT.forward_with_cfg
# ---------------------------------------------------------------------------------------------------------------
def test_cfg_reversed_sign_fails():
    r = grade_edited("dit.DiT.forward_with_cfg", "half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)",
                     "half_eps = cond_eps + cfg_scale * (uncond_eps - cond_eps)")
    assert_fails(r, "swapped")


def test_cfg_other_convention_fails():
    r = grade_edited("dit.DiT.forward_with_cfg", "half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)",
                     "half_eps = cond_eps + cfg_scale * (cond_eps - uncond_eps)")
    assert_fails(r, "other convention")


def test_cfg_second_half_fails():
    r = grade_edited("dit.DiT.forward_with_cfg", "half = x[: len(x) // 2]", "half = x[len(x) // 2:]")
    assert_fails(r, "second half")


def test_cfg_first_three_channels_quirk_fails():
    r = grade_edited("dit.DiT.forward_with_cfg",
                     "eps, rest = model_out[:, : self.in_channels], model_out[:, self.in_channels:]",
                     "eps, rest = model_out[:, :3], model_out[:, 3:]")
    assert_fails(r, "first 3 channels")


def test_cfg_whole_batch_as_given_fails():
    r = grade_edited("dit.DiT.forward_with_cfg", "combined = torch.cat([half, half], dim=0)", "combined = x")
    assert_fails(r, "as given")


# ---------------------------------------------------------------------------------------------------------------
# The reference is the official layout
# ---------------------------------------------------------------------------------------------------------------
def _official_keys(depth=12, D=384, p=2, C=4, classes=1000, learn_sigma=True, tokens=256):
    """The official DiT state dict, written out by hand from the official model's module tree."""
    out = 2 * C if learn_sigma else C
    keys = [("pos_embed", (1, tokens, D)), ("x_embedder.proj.weight", (D, C, p, p)), ("x_embedder.proj.bias", (D,)),
            ("t_embedder.mlp.0.weight", (D, 256)), ("t_embedder.mlp.0.bias", (D,)),
            ("t_embedder.mlp.2.weight", (D, D)), ("t_embedder.mlp.2.bias", (D,)),
            ("y_embedder.embedding_table.weight", (classes + 1, D))]
    for i in range(depth):
        keys += [(f"blocks.{i}.attn.qkv.weight", (3 * D, D)), (f"blocks.{i}.attn.qkv.bias", (3 * D,)),
                 (f"blocks.{i}.attn.proj.weight", (D, D)), (f"blocks.{i}.attn.proj.bias", (D,)),
                 (f"blocks.{i}.mlp.fc1.weight", (4 * D, D)), (f"blocks.{i}.mlp.fc1.bias", (4 * D,)),
                 (f"blocks.{i}.mlp.fc2.weight", (D, 4 * D)), (f"blocks.{i}.mlp.fc2.bias", (D,)),
                 (f"blocks.{i}.adaLN_modulation.1.weight", (6 * D, D)),
                 (f"blocks.{i}.adaLN_modulation.1.bias", (6 * D,))]
    keys += [("final_layer.linear.weight", (p * p * out, D)), ("final_layer.linear.bias", (p * p * out,)),
             ("final_layer.adaLN_modulation.1.weight", (2 * D, D)), ("final_layer.adaLN_modulation.1.bias", (2 * D,))]
    return keys


def test_state_dict_of_dit_s2_is_the_official_one():
    model = dit.DiT_models["DiT-S/2"]()
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert got == _official_keys()
    # so an official checkpoint loads strictly
    model.load_state_dict({k: torch.zeros(s) for k, s in _official_keys()}, strict=True)
    assert not any("norm" in k for k, _ in got), "DiT's LayerNorms have no parameters"


def test_paper_configurations():
    table = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}
    assert sorted(dit.DiT_models) == sorted(f"DiT-{s}/{p}" for s in table for p in (2, 4, 8))
    for name, make in dit.DiT_models.items():
        size, p = name[4:].split("/")
        with torch.device("meta"):
            model = make()
        depth, D, heads = table[size]
        assert (len(model.blocks), model.pos_embed.shape[-1], model.num_heads, model.patch_size) == (depth, D, heads,
                                                                                                  int(p))
        assert (model.in_channels, model.out_channels, model.num_classes, model.input_size) == (4, 8, 1000, 32)
    with torch.device("meta"):
        xl = dit.DiT_models["DiT-XL/2"]()
    assert sum(p.numel() for p in xl.parameters()) == 675_129_632  # the official DiT-XL/2 count (675M)


def test_flops_match_the_paper():
    """torch.utils.flop_counter counts 2 per multiply-add; the paper counts multiply-adds (Gflops)."""
    for name, counter, paper in (("DiT-S/2", 12.11, 6.06), ("DiT-B/2", 46.01, 23.01), ("DiT-XL/2", 237.24, 118.64)):
        with torch.device("meta"):
            model = dit.DiT_models[name]()
        flops = dit.forward_flops(model) / 1e9
        assert abs(flops - counter) < 0.01 and abs(flops / 2 - paper) < 0.03, (name, flops)


def test_fresh_dit_outputs_zeros_and_blocks_are_identity():
    torch.manual_seed(0)
    model = dit.create_dit("DiT-Ti/2").eval()
    x, t, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 10, 500, 999]), torch.tensor([0, 3, 9, 10])
    assert torch.equal(model(x, t, y), torch.zeros(4, 1, 8, 8))
    tokens, c = torch.randn(4, 16, 128), torch.randn(4, 128)
    for block in model.blocks:
        assert torch.equal(block(tokens, c), tokens)


def test_learn_sigma_doubles_the_output_channels():
    for learn_sigma, out in ((True, 6), (False, 3)):
        model = dit.DiT(input_size=8, patch_size=2, in_channels=3, hidden_size=32, depth=1, num_heads=2,
                        num_classes=5, learn_sigma=learn_sigma)
        assert model(torch.randn(2, 3, 8, 8), torch.tensor([1, 2]), torch.tensor([0, 5])).shape == (2, out, 8, 8)
    no_null = dit.LabelEmbedder(10, 8, 0.0)
    assert no_null.embedding_table.num_embeddings == 10
    assert dit.LabelEmbedder(10, 8, 0.1).embedding_table.num_embeddings == 11


def test_course_configurations():
    model = dit.create_dit("DiT-Ti/2")
    assert (model.input_size, model.in_channels, model.num_classes, model.learn_sigma) == (8, 1, 10, False)
    assert (len(model.blocks), model.pos_embed.shape[-1], model.patch_size) == (4, 128, 2)
    assert model.y_embedder.dropout_prob == 0.1


def _randomized(model, seed=0):
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def test_forward_with_cfg_matches_the_course_sampler():
    """forward_with_cfg on [x, x] with [y, ∅] equals the guided ε of course.diffusion.Diffusion.eps."""
    torch.manual_seed(0)
    model = _randomized(dit.create_dit("DiT-XXS/2")).eval()
    x, y = torch.randn(3, 1, 8, 8), torch.tensor([1, 4, 7])
    t = torch.full((6,), 500)
    with torch.no_grad():
        ours = dit.DiT.forward_with_cfg(model, torch.cat([x, x]), t, torch.cat([y, torch.full_like(y, 10)]), 2.5)[:3]
        theirs = Diffusion().eps(model, x, 500, y, w=2.5)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_conditioning_variants():
    kwargs = dict(dit.COURSE_DEFAULTS, depth=2, hidden_size=32, num_heads=2, patch_size=2)
    torch.manual_seed(0)
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([3, 300, 900]), torch.tensor([1, 2, 10])
    counts = {}
    for conditioning in dit.CONDITIONINGS:
        model = dit.ConditioningDiT(conditioning, **kwargs)
        assert torch.equal(model(x, t, y), torch.zeros(3, 1, 8, 8)), conditioning  # output Linear starts at zero
        _randomized(model)
        out = model(x, t, y)
        out.square().mean().backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad), conditioning
        # the condition matters
        assert not torch.allclose(out, model(x, t, torch.tensor([5, 6, 7]))), conditioning
        counts[conditioning] = sum(p.numel() for p in model.parameters())
    assert counts["adaLN-Zero"] == sum(p.numel() for p in dit.DiT(**kwargs).parameters())
    assert len(set(counts.values())) == 4
    adaln = dit.ConditioningDiT("adaLN", **kwargs)
    assert adaln.blocks[0].adaLN_modulation[-1].weight.abs().sum() > 0  # no zero-init: that is the difference


def test_small_dit_learns():
    """A few AdamW steps of the course's DiT lower the diffusion loss on digits."""
    from course.data import digits
    torch.manual_seed(0)
    x, y = digits("train")
    model = dit.create_dit("DiT-XXS/2")
    diffusion = Diffusion()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = diffusion.loss(model, x[idx], y[idx], generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10

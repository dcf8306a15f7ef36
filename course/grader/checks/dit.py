"""Checks for chapter 2, `dit`: DiT's adaLN-Zero blocks, label dropout, initialisation and guidance.

Modules are compared with the reference on random weights (a fresh DiT outputs zeros, which would test nothing),
forward and backward, at several shapes including batch 1 and a single token. Every plausible mistake is declared
once below, next to the check that names it.
"""
import math

import torch

from course.grader.checks.kit import (check_denoiser, compare_forward, exercise, expect, expect_close, expect_tensor,
                               mistake, mistake_edit, mistakes, patched, random_pair, seeded, wrong_outputs)
from course.grader.checks.kit import hints
from course.grader.exercises import reference_module
from course.grader.grading import confirm


# ---------------------------------------------------------------------------------------------------------------
# modulate
# ---------------------------------------------------------------------------------------------------------------
@mistake("dit.modulate", "the `1 +` is missing: x · scale + shift")
def _(x, shift, scale):
    return x * scale.unsqueeze(1) + shift.unsqueeze(1)


@mistake("dit.modulate", "shift and scale are swapped")
def _(x, shift, scale):
    return x * (1 + shift.unsqueeze(1)) + scale.unsqueeze(1)


@mistake("dit.modulate", "the shift is scaled too: (x + shift) · (1 + scale)")
def _(x, shift, scale):
    return (x + shift.unsqueeze(1)) * (1 + scale.unsqueeze(1))


@mistake("dit.modulate", "the shift is not added")
def _(x, shift, scale):
    return x * (1 + scale.unsqueeze(1))


@mistake("dit.modulate", "shift and scale are broadcast over the batch instead of the tokens (unsqueeze(1) is "
                         "missing)")
def _(x, shift, scale):
    return x * (1 + scale) + shift


@exercise("dit.modulate")
def check_modulate(impl, ref):
    # (4, 4, 6) first: with B = N a missing unsqueeze(1) broadcasts without an error, and is named.
    for B, N, D in ((4, 4, 6), (3, 5, 8), (1, 1, 4)):
        with seeded(B * 100 + N * 10 + D):
            x, shift, scale = torch.randn(B, N, D), torch.randn(B, D), torch.randn(B, D)
        inputs = [v.clone().requires_grad_() for v in (x, shift, scale)]
        want = ref.modulate(x, shift, scale)
        got = impl.modulate(*inputs)
        expect_close(got, want, what=f"modulate on x of shape {(B, N, D)}",
                     mistakes=wrong_outputs("dit.modulate", x, shift, scale))
        got.sum().backward()
        s = scale[:, None]
        for name, v, g in zip(("x", "shift", "scale"), inputs, ((1 + s).expand_as(x), torch.full((B, D), float(N)),
                                                                 x.sum(1))):
            expect(v.grad is not None, f"no gradient reaches `{name}`: is it detached?")
            expect_close(v.grad, g, what=f"the gradient with respect to `{name}`", atol=1e-5)
    return ("x · (1 + scale) + shift per image, broadcast over tokens; shapes (4, 4, 6), (3, 5, 8), (1, 1, 4); "
            "gradients.")


# ---------------------------------------------------------------------------------------------------------------
# LabelEmbedder.token_drop
# ---------------------------------------------------------------------------------------------------------------
def _drop(self, labels, train, force_drop_ids, *, obey_train=True, keep_below=False, null=None):
    """token_drop with one slip: the common body of the wrong versions below."""
    if force_drop_ids is not None:
        drop = force_drop_ids == 1
    elif (train or not obey_train) and self.dropout_prob > 0:
        u = torch.rand(labels.shape[0], device=labels.device)
        drop = u > self.dropout_prob if keep_below else u < self.dropout_prob
    else:
        return labels
    return torch.where(drop, torch.full_like(labels, self.num_classes if null is None else null), labels)


@mistake("dit.LabelEmbedder.token_drop", "labels are dropped at evaluation too (train is ignored)",
         says="train=False")
def _(self, labels, train, force_drop_ids=None):
    return _drop(self, labels, train, force_drop_ids, obey_train=False)


@mistake("dit.LabelEmbedder.token_drop", "the comparison is reversed (rand > dropout_prob keeps too few labels)",
         says="`<`, not `>`")
def _(self, labels, train, force_drop_ids=None):
    return _drop(self, labels, train, force_drop_ids, keep_below=True)


@mistake("dit.LabelEmbedder.token_drop", "a dropped label becomes num_classes - 1 (a real class)",
         says="null label")
def _(self, labels, train, force_drop_ids=None):
    return _drop(self, labels, train, force_drop_ids, null=self.num_classes - 1)


@mistake("dit.LabelEmbedder.token_drop", "force_drop_ids is ignored", says="force_drop_ids")
def _(self, labels, train, force_drop_ids=None):
    if not train or self.dropout_prob == 0:
        return labels
    drop = torch.rand(labels.shape[0]) < self.dropout_prob
    return torch.where(drop, self.num_classes, labels)


@mistake("dit.LabelEmbedder.token_drop", "the labels are overwritten in place", says="in place")
def _(self, labels, train, force_drop_ids=None):
    if force_drop_ids is not None:
        labels[force_drop_ids == 1] = self.num_classes
    elif train and self.dropout_prob > 0:
        labels[torch.rand(labels.shape[0]) < self.dropout_prob] = self.num_classes
    return labels


@exercise("dit.LabelEmbedder.token_drop")
def check_token_drop(impl, ref):
    num_classes, B = 10, 4000
    with seeded(10):
        labels = torch.randint(0, num_classes, (B,))
    original = labels.clone()

    def run(emb, *args, seed=11, **kwargs):
        with seeded(seed):
            out = emb.token_drop(labels, *args, **kwargs)
        expect(torch.equal(labels, original), "token_drop changed the labels it was given, in place. Hint: build a "
                                              "new tensor (e.g. with torch.where) rather than assigning into `labels`.")
        return expect_tensor(out, shape=(B,), dtype=torch.int64, device="cpu", what="token_drop's output")

    for p in (0.1, 0.5):
        emb = impl.LabelEmbedder(num_classes, 8, p)
        out = run(emb, False)
        expect(torch.equal(out, labels), f"with train=False (evaluation) and no force_drop_ids, token_drop should "
               f"return the labels unchanged, but it changed {(out != labels).sum().item()} of {B} (dropout_prob={p}). "
               "Hint: labels are dropped only while training; at evaluation the model must see the class it is "
               "asked for.")
        expect_close(out, labels, what=f"token_drop's output at evaluation (dropout_prob={p})", atol=0, rtol=0)
        out = run(emb, True)
        dropped = out != labels
        kept_ok = torch.equal(out[~dropped], labels[~dropped])
        expect(bool((out[dropped] == num_classes).all()) and kept_ok,
               f"a dropped label should become the null label num_classes = {num_classes}; got values "
               f"{sorted(set(out[dropped].tolist()))[:5]}.")
        frac = dropped.float().mean().item()
        expect(abs(frac - p) < 0.04, f"with train=True and dropout_prob={p}, about {p:.0%} of the labels should be "
               f"dropped, but {frac:.1%} of {B} were. Hint: drop label i where torch.rand(B)[i] < dropout_prob (one "
               "uniform number per label; `<`, not `>`).")
        confirm(out, "dropped", what=f"token_drop's output while training (dropout_prob={p})", labels=labels,
                null=num_classes, p=p, tol=0.04)
    with seeded(12):
        force = (torch.rand(B) < 0.3).long()
    emb = impl.LabelEmbedder(num_classes, 8, 0.5)
    want = torch.where(force == 1, num_classes, labels)
    for train in (True, False):
        out = run(emb, train, force_drop_ids=force)
        expect(torch.equal(out, want), f"with force_drop_ids (train={train}), exactly the labels where "
               f"force_drop_ids == 1 should become {num_classes} and no others; {(out != want).sum().item()} of "
               f"{B} differ. Hint: when force_drop_ids is given it replaces the random draw.")
        expect_close(out, want, what=f"token_drop's output with force_drop_ids (train={train})", atol=0, rtol=0)
    one = impl.LabelEmbedder(num_classes, 8, 0.1).token_drop(labels[:1], False, force_drop_ids=torch.ones(1))
    expect_tensor(one, shape=(1,), dtype=torch.int64, what="token_drop on one label")
    expect(one.item() == num_classes, "a single label forced to drop should become the null label.")
    expect_close(one, torch.tensor([num_classes]), what="token_drop on one label forced to drop", atol=0, rtol=0)
    no_dropout = impl.LabelEmbedder(num_classes, 8, 0.0)
    expect(torch.equal(run(no_dropout, True), labels),
           "with dropout_prob = 0 (no null row in the table) no label may be dropped, even while training.")
    expect_close(run(no_dropout, True), labels, what="token_drop's output with dropout_prob = 0", atol=0, rtol=0)
    return ("no drop at evaluation; ~10 % and ~50 % dropped to the null label while training; force_drop_ids exact; "
            "no drop when dropout_prob = 0; labels not changed in place.")


# ---------------------------------------------------------------------------------------------------------------
# DiTBlock.forward
# ---------------------------------------------------------------------------------------------------------------
CHUNKS = ("shift_msa", "scale_msa", "gate_msa", "shift_mlp", "scale_mlp", "gate_mlp")


def _block(self, x, c, *, order=CHUNKS, one_plus=1.0, gates=True, residual=True, mlp_vectors="mlp",
           sequential=True):
    """DiTBlock.forward wired with one deliberate slip: the common body of the wrong versions below."""
    v = dict(zip(order, self.adaLN_modulation(c).chunk(6, dim=1)))
    mlp = {"mlp": ("shift_mlp", "scale_mlp", "gate_mlp"), "msa": ("shift_msa", "scale_msa", "gate_msa")}[mlp_vectors]

    def branch(layer, norm, h, shift, scale, gate):
        out = layer(norm(h) * (one_plus + v[scale][:, None]) + v[shift][:, None])
        return v[gate][:, None] * out if gates else out

    a = branch(self.attn, self.norm1, x, "shift_msa", "scale_msa", "gate_msa")
    after = x + a if residual else a
    m = branch(self.mlp, self.norm2, after if sequential else x, *mlp)
    return after + m if residual else m


@mistake("dit.DiTBlock.forward", "the six chunks are taken in another order (grouped by kind: shifts, then scales, "
                                 "then gates)")
def _(self, x, c):
    return _block(self, x, c, order=("shift_msa", "shift_mlp", "scale_msa", "scale_mlp", "gate_msa", "gate_mlp"))


@mistake("dit.DiTBlock.forward", "shift and scale are swapped")
def _(self, x, c):
    return _block(self, x, c, order=("scale_msa", "shift_msa", "gate_msa", "scale_mlp", "shift_mlp", "gate_mlp"))


@mistake("dit.DiTBlock.forward", "the gate is taken first (gate, shift, scale)")
def _(self, x, c):
    return _block(self, x, c, order=("gate_msa", "shift_msa", "scale_msa", "gate_mlp", "shift_mlp", "scale_mlp"))


@mistake("dit.DiTBlock.forward", "the MLP's three vectors are taken before the attention's")
def _(self, x, c):
    return _block(self, x, c, order=CHUNKS[3:] + CHUNKS[:3])


@mistake("dit.DiTBlock.forward", "modulate without the `1 +`")
def _(self, x, c):
    return _block(self, x, c, one_plus=0.0)


@mistake("dit.DiTBlock.forward", "the gates (gate_msa, gate_mlp) are not applied")
def _(self, x, c):
    return _block(self, x, c, gates=False)


@mistake("dit.DiTBlock.forward", "the residual connections are missing")
def _(self, x, c):
    return _block(self, x, c, residual=False)


@mistake("dit.DiTBlock.forward", "the MLP is modulated with the attention's shift, scale and gate")
def _(self, x, c):
    return _block(self, x, c, mlp_vectors="msa")


@mistake("dit.DiTBlock.forward", "the MLP branch reads the block's input instead of x after the attention branch")
def _(self, x, c):
    return _block(self, x, c, sequential=False)


mistake_edit("dit.DiTBlock.forward", "the LayerNorms were given their own affine parameters (DiT's have none: "
             "elementwise_affine=False)",
             "self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)",
             "self.norm1 = nn.LayerNorm(hidden_size, eps=1e-6)", says="norm1.weight")


BLOCK_STEPS = {  # submodule -> what to look at when the input it gets first differs from the reference's
    "adaLN_modulation": "the condition: adaLN_modulation reads c as given, once per block",
    "norm1": "the attention branch: norm1 reads the block's input tokens",
    "attn": "what the attention reads: the modulated norm1 of the tokens, with the first two of the six chunks "
            "(shift, then scale), broadcast over the tokens",
    "norm2": "the residual of the attention branch: norm2 reads the tokens after x + gate · attention, the gate "
             "being the third chunk",
    "mlp": "what the MLP reads: the modulated norm2 of the tokens, with the fourth and fifth chunks",
    "*": "the MLP's residual: its output is multiplied by the last chunk, the MLP's gate, before it is added",
}
FINAL_STEPS = {
    "adaLN_modulation": "the condition: adaLN_modulation reads c as given",
    "norm_final": "the tokens given to the LayerNorm: x as it came in",
    "linear": "what the decoder reads: the modulated norm_final of the tokens, with the two chunks in the order "
              "(shift, scale)",
    "*": "the output: linear's result is returned as it is",
}


def _dit_steps(depth: int) -> dict[str, str]:
    steps = {
        "x_embedder": "the image given to the patch embedding: x as it came in",
        "t_embedder": "the timestep t as given",
        "y_embedder": "the labels y as given, with the model's training mode",
        "blocks.0": "the inputs of the first block: the patch tokens plus pos_embed, and one condition vector per "
                    "image from the time and the label embeddings together",
        "final_layer": "the blocks: each one reads the previous one's tokens and the same c, and the final layer "
                       "reads the last block's tokens and c",
        "*": "the way back to an image: the final layer's tokens are the patches of the (H/p, W/p) grid in "
             "row-major order, each token's values in (row in patch, column in patch, channel) order",
    }
    for i in range(1, depth):
        steps[f"blocks.{i}"] = "the blocks: each one reads the previous one's tokens and the same c"
    return steps


@exercise("dit.DiTBlock.forward")
def check_dit_block(impl, ref):
    cases = ((32, 4, 2, 5), (16, 2, 1, 1), (24, 3, 3, 16))
    for i, (D, heads, B, N) in enumerate(cases):
        mine, block = random_pair(impl.DiTBlock, ref.DiTBlock, D, heads, seed=i)
        with seeded(20 + i):
            x, c = torch.randn(B, N, D), torch.randn(B, D)
        compare_forward(mine, block, (x, c), exercise="dit.DiTBlock.forward",
                        what=f"DiTBlock(D={D}, heads={heads}) on x {(B, N, D)}", steps=BLOCK_STEPS)
    return ("matches the reference on random weights, forward and backward (atol 1e-5), for (B, N, D) = (2, 5, 32), "
            "(1, 1, 16), (3, 16, 24).")


# ---------------------------------------------------------------------------------------------------------------
# FinalLayer.forward
# ---------------------------------------------------------------------------------------------------------------
@mistake("dit.FinalLayer.forward", "shift and scale are swapped (the order is shift, scale)")
def _(self, x, c):
    scale, shift = self.adaLN_modulation(c).chunk(2, dim=1)
    return self.linear(self.norm_final(x) * (1 + scale[:, None]) + shift[:, None])


@mistake("dit.FinalLayer.forward", "modulate without the `1 +`")
def _(self, x, c):
    shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
    return self.linear(self.norm_final(x) * scale[:, None] + shift[:, None])


@mistake("dit.FinalLayer.forward", "the LayerNorm is not applied")
def _(self, x, c):
    shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
    return self.linear(x * (1 + scale[:, None]) + shift[:, None])


@exercise("dit.FinalLayer.forward")
def check_final_layer(impl, ref):
    cases = ((32, 2, 1, 2, 5), (16, 4, 3, 1, 1), (24, 1, 2, 3, 4))
    for i, (D, p, C, B, N) in enumerate(cases):
        mine, layer = random_pair(impl.FinalLayer, ref.FinalLayer, D, p, C, seed=30 + i)
        with seeded(40 + i):
            x, c = torch.randn(B, N, D), torch.randn(B, D)
        compare_forward(mine, layer, (x, c), exercise="dit.FinalLayer.forward",
                        what=f"FinalLayer(D={D}, p={p}, C_out={C}) on x {(B, N, D)}", steps=FINAL_STEPS)
    return "matches the reference on random weights, forward and backward (atol 1e-5), three shapes incl. batch 1."


# ---------------------------------------------------------------------------------------------------------------
# DiT.initialize_weights
# ---------------------------------------------------------------------------------------------------------------
def _init(self, *, basic=True, pos="sincos", conv_view=True, table_std=0.02, zero_blocks=True, zero_final=True):
    """DiT.initialize_weights with one step done wrong: the common body of the wrong versions below."""
    nn = torch.nn
    if basic:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
    grid, D = self.x_embedder.grid_size, self.pos_embed.shape[-1]
    table = self.pos_embed.new_zeros(grid * grid, D)
    if pos != "zero":
        table = reference_module("layers").get_2d_sincos_pos_embed(D, grid)
        if pos == "transposed":
            table = table.reshape(grid, grid, D).transpose(0, 1).reshape(grid * grid, D)
    with torch.no_grad():
        self.pos_embed.copy_(table[None])
    w = self.x_embedder.proj.weight.data
    nn.init.xavier_uniform_(w.view(w.shape[0], -1) if conv_view else w)
    nn.init.zeros_(self.x_embedder.proj.bias)
    nn.init.normal_(self.y_embedder.embedding_table.weight, std=table_std)
    for j in (0, 2):
        nn.init.normal_(self.t_embedder.mlp[j].weight, std=0.02)
    zeros = [self.final_layer.adaLN_modulation[-1]] + ([self.final_layer.linear] if zero_final else [])
    zeros += [block.adaLN_modulation[-1] for block in self.blocks] if zero_blocks else []
    for linear in zeros:
        nn.init.zeros_(linear.weight)
        nn.init.zeros_(linear.bias)


@mistake("dit.DiT.initialize_weights", "the blocks' adaLN_modulation is not zeroed (the Zero of adaLN-Zero)",
         says="blocks.0.adaLN_modulation.1.weight")
def _(self):
    _init(self, zero_blocks=False)


@mistake("dit.DiT.initialize_weights", "the final layer's output Linear is not zeroed",
         says="final_layer.linear.weight")
def _(self):
    _init(self, zero_final=False)


@mistake("dit.DiT.initialize_weights", "the Linears keep PyTorch's default initialisation (self.apply(_basic_init) "
                                       "is missing)", says="xavier")
def _(self):
    _init(self, basic=False)


@mistake("dit.DiT.initialize_weights", "xavier_uniform_ is applied to the 4-D patch-embedding weight itself",
         says="x_embedder.proj.weight")
def _(self):
    _init(self, conv_view=False)


@mistake("dit.DiT.initialize_weights", "the label table is drawn with std 1 instead of 0.02",
         says="y_embedder.embedding_table.weight")
def _(self):
    _init(self, table_std=1.0)


@mistake("dit.DiT.initialize_weights", "pos_embed is left at zero")
def _(self):
    _init(self, pos="zero")


@mistake("dit.DiT.initialize_weights", "the position grid is transposed (rows and columns swapped)")
def _(self):
    _init(self, pos="transposed")


def _pos_embeds_of_mistakes(ref, cfg) -> dict:
    """{name: the pos_embed a wrong initialize_weights leaves}, to name the mistake when the learner's matches."""
    out = {}
    for m in mistakes("dit.DiT.initialize_weights"):
        if m.code is None:
            continue
        with patched(ref.DiT, initialize_weights=m.code), torch.no_grad():
            out[m.name] = ref.DiT(**cfg).pos_embed.detach().clone()
    return out


def _expect_xavier(name: str, w: torch.Tensor, fan_in: int, fan_out: int) -> None:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    largest = w.abs().max().item()
    expect(largest <= bound * (1 + 1e-5),
           f"`{name}` has values up to {largest:.4g}, beyond the xavier-uniform bound √(6/(fan_in + fan_out)) = "
           f"{bound:.4g} (fan_in={fan_in}, fan_out={fan_out}). Hint: nn.init.xavier_uniform_ (not _normal_)"
           + (", on the weight viewed as a (D, C·p·p) matrix." if w.dim() == 4 else "."))
    std, want = w.std().item(), bound / math.sqrt(3)
    expect(0.9 < std / want < 1.1,
           f"`{name}` should be xavier-uniform (std {want:.4g} for fan_in={fan_in}, fan_out={fan_out}), but its std "
           f"is {std:.4g}. Hint: PyTorch's default init is not xavier; apply nn.init.xavier_uniform_ to every "
           "nn.Linear (self.apply) " + ("and to the patch embedding's weight viewed as (D, C·p·p)." if w.dim() == 4
                                        else "before zeroing the ones that start at zero."))
    confirm(w, "xavier", what=f"`{name}`", fan_in=fan_in, fan_out=fan_out)


def _expect_zero(name: str, t: torch.Tensor, why: str) -> None:
    expect(bool((t == 0).all()), f"`{name}` should start at zero{why}; {int((t != 0).sum())} of {t.numel()} "
                                 "values are not.")
    confirm(t, "zero", what=f"`{name}`")


def _expect_normal(name: str, w: torch.Tensor, std: float = 0.02) -> None:
    got = w.std().item()
    expect(0.9 < got / std < 1.1 and abs(w.mean().item()) < 0.2 * std,
           f"`{name}` should be drawn from N(0, {std}²); its std is {got:.4g} and mean {w.mean().item():.3g}. Hint: "
           f"nn.init.normal_(..., std={std}).")
    confirm(w, "normal", what=f"`{name}`", std=std)


@exercise("dit.DiT.initialize_weights")
def check_initialize_weights(impl, ref):
    configs = (dict(input_size=8, patch_size=2, in_channels=1, hidden_size=128, depth=2, num_heads=4,
                    num_classes=10, learn_sigma=True),
               dict(input_size=8, patch_size=4, in_channels=3, hidden_size=64, depth=1, num_heads=2,
                    num_classes=20, learn_sigma=False))
    for k, cfg in enumerate(configs):
        with seeded(50 + k):
            model = impl.DiT(**cfg)
        D, p, C = cfg["hidden_size"], cfg["patch_size"], cfg["in_channels"]
        grid = cfg["input_size"] // p
        pos = ref.get_2d_sincos_pos_embed(D, grid).unsqueeze(0)
        expect(not model.pos_embed.requires_grad, "`pos_embed` should stay a fixed (requires_grad=False) parameter.")
        expect_close(model.pos_embed.data, pos, what="`pos_embed` after initialize_weights", atol=1e-6,
                     mistakes=_pos_embeds_of_mistakes(ref, cfg))
        zero_why = " (adaLN-Zero: every gate starts at 0, so every block starts as the identity)"
        for i, block in enumerate(model.blocks):
            _expect_zero(f"blocks.{i}.adaLN_modulation.1.weight", block.adaLN_modulation[-1].weight, zero_why)
            _expect_zero(f"blocks.{i}.adaLN_modulation.1.bias", block.adaLN_modulation[-1].bias, zero_why)
            for name in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"):
                lin = block.get_submodule(name)
                _expect_xavier(f"blocks.{i}.{name}.weight", lin.weight.data, lin.in_features, lin.out_features)
                _expect_zero(f"blocks.{i}.{name}.bias", lin.bias.data, " (every Linear's bias starts at zero)")
        why = " (the final layer starts at zero, so a fresh DiT predicts ε = 0)"
        _expect_zero("final_layer.adaLN_modulation.1.weight", model.final_layer.adaLN_modulation[-1].weight, why)
        _expect_zero("final_layer.adaLN_modulation.1.bias", model.final_layer.adaLN_modulation[-1].bias, why)
        _expect_zero("final_layer.linear.weight", model.final_layer.linear.weight, why)
        _expect_zero("final_layer.linear.bias", model.final_layer.linear.bias, why)
        w = model.x_embedder.proj.weight.data
        _expect_xavier("x_embedder.proj.weight", w, C * p * p, D)
        _expect_zero("x_embedder.proj.bias", model.x_embedder.proj.bias.data, " (the patch embedding's bias)")
        _expect_normal("y_embedder.embedding_table.weight", model.y_embedder.embedding_table.weight.data)
        for j in (0, 2):
            _expect_normal(f"t_embedder.mlp.{j}.weight", model.t_embedder.mlp[j].weight.data)
            _expect_zero(f"t_embedder.mlp.{j}.bias", model.t_embedder.mlp[j].bias.data, " (every Linear's bias)")
        # What the zeros are for: the model outputs 0 and every block is the identity.
        B, H = 3, cfg["input_size"]
        with seeded(60 + k), torch.no_grad():
            x = torch.randn(B, C, H, H)
            t, y = torch.randint(0, 1000, (B,)), torch.randint(0, cfg["num_classes"], (B,))
            out = model.eval()(x, t, y)
            expect_tensor(out, shape=(B, model.out_channels, H, H), what="a fresh DiT's output")
            expect(bool((out == 0).all()), "a freshly initialised DiT should output exactly zero (the final layer "
                                           "starts at zero).")
            expect_close(out, torch.zeros_like(out), what="a fresh DiT's output", atol=0, rtol=0)
            tokens, c = torch.randn(B, grid * grid, D), torch.randn(B, D)
            for i, block in enumerate(model.blocks):
                expect_close(block(tokens, c), tokens, what=f"fresh block {i} applied to random tokens", atol=0,
                             rtol=0, hint="with its adaLN_modulation zeroed, every gate is 0 and the block is the "
                                          "identity.")
    return ("xavier-uniform Linears with zero bias, sin-cos pos_embed, xavier patch embedding, N(0, 0.02) label table "
            "and time MLP, zeros in every adaLN_modulation and the final layer: the fresh DiT outputs 0 and every "
            "block is the identity.")


# ---------------------------------------------------------------------------------------------------------------
# DiT.forward
# ---------------------------------------------------------------------------------------------------------------
def _forward(self, x, t, y, *, pos=True, time=True, label=True, train=None, unpatch=None):
    """DiT.forward with one ingredient wrong: the common body of the wrong versions below."""
    tokens = self.x_embedder(x) + (self.pos_embed if pos else 0)
    train = self.training if train is None else train
    c = (self.t_embedder(t) if time else 0) + (self.y_embedder(y, train) if label else 0)
    for block in self.blocks:
        tokens = block(tokens, c)
    out = self.final_layer(tokens, c)  # (B, N, p·p·C_out)
    if unpatch is None:
        return self.unpatchify(out)
    B, _, H, W = x.shape
    p, C = self.patch_size, self.out_channels
    return unpatch(out, B, C, H // p, W // p, p).reshape(B, C, H, W)


@mistake("dit.DiT.forward", "pos_embed is not added to the patch tokens")
def _(self, x, t, y):
    return _forward(self, x, t, y, pos=False)


@mistake("dit.DiT.forward", "the labels are ignored (c = t_embedder(t) only)")
def _(self, x, t, y):
    return _forward(self, x, t, y, label=False)


@mistake("dit.DiT.forward", "the timestep is ignored (c = y_embedder(y) only)")
def _(self, x, t, y):
    return _forward(self, x, t, y, time=False)


@mistake("dit.DiT.forward", "labels are dropped at evaluation too (pass self.training to y_embedder)",
         says="dropped at evaluation")
def _(self, x, t, y):
    return _forward(self, x, t, y, train=True)


@mistake("dit.DiT.forward", "labels are never dropped while training (pass self.training to y_embedder)")
def _(self, x, t, y):
    return _forward(self, x, t, y, train=False)


@mistake("dit.DiT.forward", "the tokens are reshaped straight into an image (no unpatchify)")
def _(self, x, t, y):
    return _forward(self, x, t, y, unpatch=lambda out, B, C, h, w, p: out)


@mistake("dit.DiT.forward", "a token's values are read in (channel, row, column) order instead of (row, column, "
                            "channel)")
def _(self, x, t, y):
    return _forward(self, x, t, y, unpatch=lambda out, B, C, h, w, p:
                    out.reshape(B, h, w, C, p, p).permute(0, 3, 1, 4, 2, 5))


@mistake("dit.DiT.forward", "the patch grid is transposed (rows and columns swapped)")
def _(self, x, t, y):
    return _forward(self, x, t, y, unpatch=lambda out, B, C, h, w, p:
                    torch.einsum("nhwpqc->ncwphq", out.reshape(B, h, w, p, p, C)))


@mistake("dit.DiT.forward", "rows and columns inside each patch are swapped")
def _(self, x, t, y):
    return _forward(self, x, t, y, unpatch=lambda out, B, C, h, w, p:
                    torch.einsum("nhwpqc->nchqwp", out.reshape(B, h, w, p, p, C)))


FORWARD_CONFIGS = (
    (dict(input_size=8, patch_size=2, in_channels=1, hidden_size=32, depth=2, num_heads=4, num_classes=10,
          learn_sigma=False, class_dropout_prob=0.5), 3),
    (dict(input_size=8, patch_size=4, in_channels=3, hidden_size=16, depth=1, num_heads=2, num_classes=5,
          learn_sigma=True, class_dropout_prob=0.5), 1),
    (dict(input_size=6, patch_size=3, in_channels=2, hidden_size=24, depth=2, num_heads=3, num_classes=7,
          learn_sigma=True, class_dropout_prob=0.5), 2),
)


@exercise("dit.DiT.forward")
def check_dit_forward(impl, ref):
    for k, (cfg, B) in enumerate(FORWARD_CONFIGS):
        mine, model = random_pair(impl.DiT, ref.DiT, seed=70 + k, std=0.2, **cfg)
        H, C = cfg["input_size"], cfg["in_channels"]
        with seeded(80 + k):
            x = torch.randn(B, C, H, H)
            t = torch.randint(0, 1000, (B,))
            y = torch.randint(0, cfg["num_classes"] + 1, (B,))
        mine.eval(), model.eval()
        with torch.no_grad(), seeded(1):
            first = mine(x, t, y)
        with torch.no_grad(), seeded(2):
            second = mine(x, t, y)
        expect_tensor(first, shape=(B, model.out_channels, H, H), dtype=x.dtype, what="DiT's output")
        expect(torch.equal(first, second), "in eval mode DiT's output changes from call to call: are labels dropped "
                                           "at evaluation? Hint: y_embedder(y, self.training).")
        what = f"DiT (eval mode, {cfg['input_size']}×{cfg['input_size']}×{C}, patch {cfg['patch_size']})"
        # y is required (DiT has no y=None): the null class is the label num_classes itself.
        check_denoiser(mine, model, x, t, y, exercise="dit.DiT.forward", num_classes=cfg["num_classes"], what=what,
                       null_label=False, steps=_dit_steps(cfg["depth"]))
        mine.train(), model.train()
        compare_forward(mine, model, (x, t, y), exercise="dit.DiT.forward", what=what.replace("eval", "training"),
                        seed=90 + k, steps=_dit_steps(cfg["depth"]))
    return ("matches the reference on random weights in eval and training mode (same label dropout), forward and "
            "backward (atol 1e-5), for 8×8×1 patch 2, 8×8×3 patch 4 (batch 1, learned σ) and 6×6×2 patch 3; the "
            "output depends on t and y.")


# ---------------------------------------------------------------------------------------------------------------
# DiT.forward_with_cfg
# ---------------------------------------------------------------------------------------------------------------
def _cfg(self, x, t, y, cfg_scale, *, half="first", guide=None, channels=None, convention="uncond"):
    """forward_with_cfg with one slip: the common body of the wrong versions below."""
    n = len(x) // 2
    part = {"first": x[:n], "second": x[n:]}.get(half)
    out = self.forward(x if part is None else torch.cat([part, part]), t, y)
    C = self.in_channels if channels is None else channels
    eps, rest = out[:, :C], out[:, C:]
    if guide == "all":
        eps, rest = out, out[:, :0]
    cond, uncond = eps[:n], eps[n:]
    if convention == "swapped":
        cond, uncond = uncond, cond
    base = cond if convention == "cond" else uncond
    guided = base + cfg_scale * (cond - uncond)
    return torch.cat([torch.cat([guided, guided]), rest], dim=1)


@mistake("dit.DiT.forward_with_cfg", "the other convention, ε_c + s(ε_c − ε_u)")
def _(self, x, t, y, cfg_scale):
    return _cfg(self, x, t, y, cfg_scale, convention="cond")


@mistake("dit.DiT.forward_with_cfg", "conditional and unconditional are swapped (the sign of the guidance is "
                                     "reversed)")
def _(self, x, t, y, cfg_scale):
    return _cfg(self, x, t, y, cfg_scale, convention="swapped")


@mistake("dit.DiT.forward_with_cfg", "the second half of x is used instead of the first")
def _(self, x, t, y, cfg_scale):
    return _cfg(self, x, t, y, cfg_scale, half="second")


@mistake("dit.DiT.forward_with_cfg", "x is used as given, without running its first half twice")
def _(self, x, t, y, cfg_scale):
    return _cfg(self, x, t, y, cfg_scale, half="as given")


@mistake("dit.DiT.forward_with_cfg", "only the first 3 channels are guided (the official code's quirk; the course "
                                     "guides all)")
def _(self, x, t, y, cfg_scale):
    return _cfg(self, x, t, y, cfg_scale, channels=3)


@mistake("dit.DiT.forward_with_cfg", "the learned-Σ channels are guided too")
def _(self, x, t, y, cfg_scale):
    return _cfg(self, x, t, y, cfg_scale, guide="all")


@exercise("dit.DiT.forward_with_cfg")
def check_forward_with_cfg(impl, ref):
    configs = ((dict(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=4,
                     num_classes=10, learn_sigma=True), 3),
               (dict(input_size=8, patch_size=4, in_channels=1, hidden_size=16, depth=1, num_heads=2,
                     num_classes=5, learn_sigma=False), 1))
    for k, (cfg, half) in enumerate(configs):
        mine, model = random_pair(impl.DiT, ref.DiT, seed=100 + k, std=0.2, **cfg)
        mine.eval(), model.eval()
        H, C, nc = cfg["input_size"], cfg["in_channels"], cfg["num_classes"]
        with seeded(110 + k):
            x = torch.randn(2 * half, C, H, H)  # two different halves: only the first may be used
            t = torch.randint(0, 1000, (half,)).repeat(2)
            y = torch.cat([torch.randint(0, nc, (half,)), torch.full((half,), nc)])
        for s in (1.0, 4.0, 1.5):
            with torch.no_grad():
                want = model.forward_with_cfg(x, t, y, s)
                got = mine.forward_with_cfg(x.clone(), t.clone(), y.clone(), s)
            expect_close(got, want, what=f"forward_with_cfg (cfg_scale={s}, batch {2 * half}, {C} channels"
                                         f"{', learned Σ' if cfg['learn_sigma'] else ''})",
                         mistakes=wrong_outputs("dit.DiT.forward_with_cfg", x, t, y, s, self=model))
    return ("ε_u + s(ε_c − ε_u) on all noise channels from the first half of the batch, Σ channels unguided, "
            "s = 1, 1.5, 4, batch 6 and 2.")


# ---------------------------------------------------------------------------------------------------------------
# Hints on request (`hint("name")`, `python -m course hint name`): level 1 a nudge, the only one a failed check
# quotes; the last close to the recipe.
# ---------------------------------------------------------------------------------------------------------------
hints("dit.modulate",
      "One (shift, scale) per image, the same for all of its N tokens; adaLN keeps the identity at scale 0.",
      "x · (1 + scale) + shift, with shift and scale broadcast over the token axis.")
hints("dit.LabelEmbedder.token_drop",
      "Dropped labels become the null class `num_classes`; force_drop_ids (1 = drop) overrides the random draw; "
      "without training or dropout nothing changes.",
      "Random drops: torch.rand(B, device=labels.device) < dropout_prob, drawn only when train and dropout_prob "
      "> 0.",
      "torch.where(drop_ids, torch.full_like(labels, num_classes), labels).")
hints("dit.DiTBlock.forward",
      "adaLN-Zero: c regresses six vectors (shift, scale, gate for attention, then for the MLP); each sub-layer "
      "reads modulate(norm(x)) and its output is gated before the residual sum.",
      "adaLN_modulation(c).chunk(6, dim=1) in the order shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, "
      "gate_mlp; gates broadcast over the tokens.",
      "x = x + gate_msa[:, None] · attn(modulate(norm1(x), shift_msa, scale_msa)); the same with norm2, mlp and "
      "the *_mlp vectors.")
hints("dit.FinalLayer.forward",
      "Like a DiT block's modulation, with two vectors only (shift, scale) and no gate, then the linear "
      "decoder.",
      "shift, scale = adaLN_modulation(c).chunk(2, dim=1); linear(modulate(norm_final(x), shift, scale)).")
hints("dit.DiT.initialize_weights",
      "Apply the general rule for every Linear first and the special cases after it, so that they override it; "
      "pos_embed is a parameter without gradient, so write into its data.",
      "pos_embed.data.copy_(get_2d_sincos_pos_embed(D, grid)[None]); xavier on x_embedder.proj.weight viewed as "
      "(D, C·p·p); N(0, 0.02) on the label table and the two time-MLP Linears.",
      "zero every block's adaLN_modulation[-1] (weight and bias), the final layer's adaLN_modulation[-1] and "
      "its linear.")
hints("dit.DiT.forward",
      "Patch tokens plus positions; one conditioning vector c = time + label, given to every block and to the "
      "final layer; label dropout follows the training mode.",
      "x_embedder(x) + pos_embed; c = t_embedder(t) + y_embedder(y, self.training).",
      "every block(x, c); final_layer(x, c); self.unpatchify(x).")
hints("dit.DiT.forward_with_cfg",
      "The batch's first half is conditional, the second half the same images with the null label: guide the "
      "noise channels only, and give both halves the guided ε.",
      "Run forward on cat([x[:B/2], x[:B/2]]) with t and y as given; the first in_channels output channels are "
      "ε; split them into ε_c (first half) and ε_u (second half).",
      "ε = ε_u + s(ε_c − ε_u), repeated for both halves; the remaining channels (learned σ) unchanged.")

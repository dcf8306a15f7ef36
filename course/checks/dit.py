"""Checks for chapter 2, `dit`: DiT's adaLN-Zero blocks, label dropout, initialisation and guidance.

Modules are compared with the reference on random weights (a fresh DiT outputs zeros, which would test nothing),
forward and backward, at several shapes including batch 1 and a single token.
"""
import math

import torch

from course.checks.kit import CheckFailed, build_pair, compare_forward, expect, expect_close, expect_tensor, exercise, seeded

CHUNKS = ("shift_msa", "scale_msa", "gate_msa", "shift_mlp", "scale_mlp", "gate_mlp")


def _randomize(module: torch.nn.Module, seed: int, std: float = 0.3) -> torch.nn.Module:
    """Every parameter (including zero-initialised ones and DiT's fixed pos_embed) drawn from N(0, std²)."""
    with seeded(seed), torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, std)
    return module


def _random_pair(impl_cls, ref_cls, *args, seed: int = 0, std: float = 0.3, **kwargs):
    """The learner's module and the reference's, with the same random weights."""
    mine, ref = build_pair(impl_cls, ref_cls, *args, seed=seed, **kwargs)
    _randomize(ref, seed + 100, std)
    mine.load_state_dict(ref.state_dict())
    return mine, ref


# ---------------------------------------------------------------------------------------------------------------
@exercise("dit.modulate")
def check_modulate(impl, ref):
    for B, N, D in ((3, 5, 8), (1, 1, 4), (4, 4, 6)):
        with seeded(B * 100 + N * 10 + D):
            x, shift, scale = torch.randn(B, N, D), torch.randn(B, D), torch.randn(B, D)
        s, b = scale[:, None], shift[:, None]
        mistakes = {"the `1 +` is missing: x · scale + shift": x * s + b,
                    "shift and scale are swapped": x * (1 + b) + s,
                    "the shift is scaled too: (x + shift) · (1 + scale)": (x + b) * (1 + s),
                    "the shift is not added": x * (1 + s),
                    "shift and scale are broadcast over the batch instead of the tokens (unsqueeze(1) is missing)":
                        x * (1 + scale[None]) + shift[None] if B == N else None}
        inputs = [v.clone().requires_grad_() for v in (x, shift, scale)]
        want = ref.modulate(x, shift, scale)
        got = impl.modulate(*inputs)
        expect_close(got, want, what=f"modulate on x of shape {(B, N, D)}", mistakes=mistakes,
                     hint="x · (1 + scale[:, None]) + shift[:, None]: one (shift, scale) per image, the same for all "
                          "of its N tokens.")
        got.sum().backward()
        names = ("x", "shift", "scale")
        for name, v, g in zip(names, inputs, ((1 + s).expand_as(x), torch.full((B, D), float(N)), x.sum(1))):
            expect(v.grad is not None, f"no gradient reaches `{name}`: is it detached?")
            expect_close(v.grad, g, what=f"the gradient with respect to `{name}`", atol=1e-5)
    return "x · (1 + scale) + shift per image, broadcast over tokens; shapes (3, 5, 8), (1, 1, 4), (4, 4, 6); gradients."


# ---------------------------------------------------------------------------------------------------------------
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
    with seeded(12):
        force = (torch.rand(B) < 0.3).long()
    emb = impl.LabelEmbedder(num_classes, 8, 0.5)
    want = torch.where(force == 1, num_classes, labels)
    for train in (True, False):
        out = run(emb, train, force_drop_ids=force)
        expect(torch.equal(out, want), f"with force_drop_ids (train={train}), exactly the labels where "
               f"force_drop_ids == 1 should become {num_classes} and no others; {(out != want).sum().item()} of "
               f"{B} differ. Hint: when force_drop_ids is given it replaces the random draw.")
    one = impl.LabelEmbedder(num_classes, 8, 0.1).token_drop(labels[:1], False, force_drop_ids=torch.ones(1))
    expect_tensor(one, shape=(1,), dtype=torch.int64, what="token_drop on one label")
    expect(one.item() == num_classes, "a single label forced to drop should become the null label.")
    no_dropout = impl.LabelEmbedder(num_classes, 8, 0.0)
    expect(torch.equal(run(no_dropout, True), labels),
           "with dropout_prob = 0 (no null row in the table) no label may be dropped, even while training.")
    return ("no drop at evaluation; ~10 % and ~50 % dropped to the null label while training; force_drop_ids exact; "
            "no drop when dropout_prob = 0; labels not changed in place.")


# ---------------------------------------------------------------------------------------------------------------
def _block_variant(block, x, c, order=CHUNKS, one_plus=True, gates=True, residual=True, mlp_from="mlp",
                   sequential=True):
    """The reference block's layers, wired with a deliberate mistake (for `mistakes=`)."""
    with torch.no_grad():
        v = dict(zip(order, block.adaLN_modulation(c).chunk(6, dim=1)))

        def mod(h, shift, scale):
            return h * ((1.0 if one_plus else 0.0) + scale[:, None]) + shift[:, None]

        def gate(name):
            return v[name][:, None] if gates else 1.0

        h = gate("gate_msa") * block.attn(mod(block.norm1(x), v["shift_msa"], v["scale_msa"]))
        x1 = x + h if residual else h
        src = x1 if sequential else x
        m = v["shift_mlp"], v["scale_mlp"], "gate_mlp"
        if mlp_from == "msa":
            m = v["shift_msa"], v["scale_msa"], "gate_msa"
        h = gate(m[2]) * block.mlp(mod(block.norm2(src), m[0], m[1]))
        return x1 + h if residual else h


@exercise("dit.DiTBlock.forward")
def check_dit_block(impl, ref):
    cases = ((32, 4, 2, 5), (16, 2, 1, 1), (24, 3, 3, 16))
    for i, (D, heads, B, N) in enumerate(cases):
        mine, block = _random_pair(impl.DiTBlock, ref.DiTBlock, D, heads, seed=i)
        with seeded(20 + i):
            x, c = torch.randn(B, N, D), torch.randn(B, D)
        mistakes = {
            "the six chunks are taken in another order (grouped by kind: shifts, then scales, then gates)":
                _block_variant(block, x, c, order=("shift_msa", "shift_mlp", "scale_msa", "scale_mlp", "gate_msa",
                                                   "gate_mlp")),
            "shift and scale are swapped": _block_variant(
                block, x, c, order=("scale_msa", "shift_msa", "gate_msa", "scale_mlp", "shift_mlp", "gate_mlp")),
            "the gate is taken first (gate, shift, scale)": _block_variant(
                block, x, c, order=("gate_msa", "shift_msa", "scale_msa", "gate_mlp", "shift_mlp", "scale_mlp")),
            "the MLP's three vectors are taken before the attention's": _block_variant(
                block, x, c, order=CHUNKS[3:] + CHUNKS[:3]),
            "modulate without the `1 +`": _block_variant(block, x, c, one_plus=False),
            "the gates (gate_msa, gate_mlp) are not applied": _block_variant(block, x, c, gates=False),
            "the residual connections are missing": _block_variant(block, x, c, residual=False),
            "the MLP is modulated with the attention's shift, scale and gate": _block_variant(block, x, c,
                                                                                             mlp_from="msa"),
            "the MLP branch reads the block's input instead of x after the attention branch":
                _block_variant(block, x, c, sequential=False),
        }
        compare_forward(mine, block, (x, c), what=f"DiTBlock(D={D}, heads={heads}) on x {(B, N, D)}", atol=1e-5,
                        rtol=1e-4, mistakes=mistakes,
                        hint="chunk adaLN_modulation(c) into 6 in the order shift_msa, scale_msa, gate_msa, "
                             "shift_mlp, scale_mlp, gate_mlp; then x + gate_msa[:, None] · attn(modulate(norm1(x), "
                             "shift_msa, scale_msa)), and the same with norm2, mlp and the *_mlp vectors.")
    return ("matches the reference on random weights, forward and backward (atol 1e-5), for (B, N, D) = (2, 5, 32), "
            "(1, 1, 16), (3, 16, 24).")


# ---------------------------------------------------------------------------------------------------------------
@exercise("dit.FinalLayer.forward")
def check_final_layer(impl, ref):
    cases = ((32, 2, 1, 2, 5), (16, 4, 3, 1, 1), (24, 1, 2, 3, 4))
    for i, (D, p, C, B, N) in enumerate(cases):
        mine, layer = _random_pair(impl.FinalLayer, ref.FinalLayer, D, p, C, seed=30 + i)
        with seeded(40 + i):
            x, c = torch.randn(B, N, D), torch.randn(B, D)
        with torch.no_grad():
            shift, scale = layer.adaLN_modulation(c).chunk(2, dim=1)
            n = layer.norm_final(x)
            mistakes = {"shift and scale are swapped (the order is shift, scale)":
                            layer.linear(n * (1 + shift[:, None]) + scale[:, None]),
                        "modulate without the `1 +`": layer.linear(n * scale[:, None] + shift[:, None]),
                        "the LayerNorm is not applied": layer.linear(x * (1 + scale[:, None]) + shift[:, None])}
        compare_forward(mine, layer, (x, c), what=f"FinalLayer(D={D}, p={p}, C_out={C}) on x {(B, N, D)}",
                        atol=1e-5, mistakes=mistakes,
                        hint="shift, scale = adaLN_modulation(c).chunk(2, dim=1); "
                             "linear(modulate(norm_final(x), shift, scale)).")
    return "matches the reference on random weights, forward and backward (atol 1e-5), three shapes incl. batch 1."


# ---------------------------------------------------------------------------------------------------------------
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


def _expect_zero(name: str, t: torch.Tensor, why: str) -> None:
    expect(bool((t == 0).all()), f"`{name}` should start at zero{why}; {int((t != 0).sum())} of {t.numel()} "
                                 "values are not.")


def _expect_normal(name: str, w: torch.Tensor, std: float = 0.02) -> None:
    got = w.std().item()
    expect(0.9 < got / std < 1.1 and abs(w.mean().item()) < 0.2 * std,
           f"`{name}` should be drawn from N(0, {std}²); its std is {got:.4g} and mean {w.mean().item():.3g}. Hint: "
           f"nn.init.normal_(..., std={std}).")


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
                     mistakes={"pos_embed is left at zero": torch.zeros_like(pos),
                               "the position grid is transposed (rows and columns swapped)":
                                   pos.reshape(1, grid, grid, D).transpose(1, 2).reshape(1, grid * grid, D)},
                     hint=f"copy get_2d_sincos_pos_embed(D, {grid}) into pos_embed.data, as shape (1, N, D).")
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
            tokens, c = torch.randn(B, grid * grid, D), torch.randn(B, D)
            for i, block in enumerate(model.blocks):
                expect_close(block(tokens, c), tokens, what=f"fresh block {i} applied to random tokens", atol=0,
                             rtol=0, hint="with its adaLN_modulation zeroed, every gate is 0 and the block is the "
                                          "identity.")
    return ("xavier-uniform Linears with zero bias, sin-cos pos_embed, xavier patch embedding, N(0, 0.02) label table "
            "and time MLP, zeros in every adaLN_modulation and the final layer: the fresh DiT outputs 0 and every "
            "block is the identity.")


# ---------------------------------------------------------------------------------------------------------------
FORWARD_CONFIGS = (
    (dict(input_size=8, patch_size=2, in_channels=1, hidden_size=32, depth=2, num_heads=4, num_classes=10,
          learn_sigma=False, class_dropout_prob=0.5), 3),
    (dict(input_size=8, patch_size=4, in_channels=3, hidden_size=16, depth=1, num_heads=2, num_classes=5,
          learn_sigma=True, class_dropout_prob=0.5), 1),
    (dict(input_size=6, patch_size=3, in_channels=2, hidden_size=24, depth=2, num_heads=3, num_classes=7,
          learn_sigma=True, class_dropout_prob=0.5), 2),
)


def _forward_mistakes(model, x, t, y):
    """Outputs of plausible wrong versions of DiT.forward, built from the reference's layers (eval mode)."""
    with torch.no_grad():
        B, C, H, W = x.shape
        p, Co = model.patch_size, model.out_channels
        h = H // p
        te, ye = model.t_embedder(t), model.y_embedder(y, False)

        def run(tokens, c):
            for block in model.blocks:
                tokens = block(tokens, c)
            return model.final_layer(tokens, c)  # (B, N, p*p*Co)

        tokens = model.x_embedder(x)
        out = run(tokens + model.pos_embed, te + ye)
        grid = out.reshape(B, h, h, p, p, Co)
        return {
            "pos_embed is not added to the patch tokens": model.unpatchify(run(tokens, te + ye)),
            "the labels are ignored (c = t_embedder(t) only)": model.unpatchify(run(tokens + model.pos_embed, te)),
            "the timestep is ignored (c = y_embedder(y) only)": model.unpatchify(run(tokens + model.pos_embed, ye)),
            "the tokens are reshaped straight into an image (no unpatchify)": out.reshape(B, Co, H, W),
            "a token's values are read in (channel, row, column) order instead of (row, column, channel)":
                out.reshape(B, h, h, Co, p, p).permute(0, 3, 1, 4, 2, 5).reshape(B, Co, H, W),
            "the patch grid is transposed (rows and columns swapped)":
                torch.einsum("nhwpqc->ncwphq", grid).reshape(B, Co, H, W),
            "rows and columns inside each patch are swapped":
                torch.einsum("nhwpqc->nchqwp", grid).reshape(B, Co, H, W),
        }


@exercise("dit.DiT.forward")
def check_dit_forward(impl, ref):
    for k, (cfg, B) in enumerate(FORWARD_CONFIGS):
        mine, model = _random_pair(impl.DiT, ref.DiT, seed=70 + k, std=0.2, **cfg)
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
        compare_forward(mine, model, (x, t, y), what=what, atol=1e-5, rtol=1e-4,
                        mistakes=_forward_mistakes(model, x, t, y),
                        hint="x_embedder(x) + pos_embed; c = t_embedder(t) + y_embedder(y, self.training); every "
                             "block(x, c); final_layer(x, c); unpatchify.")
        mine.train(), model.train()
        with torch.no_grad():
            never = model.eval()(x, t, y)
        model.train()
        compare_forward(mine, model, (x, t, y), what=what.replace("eval", "training"), atol=1e-5, rtol=1e-4,
                        seed=90 + k, mistakes={"labels are never dropped while training (pass self.training to "
                                               "y_embedder)": never})
    return ("matches the reference on random weights in eval and training mode (same label dropout), forward and "
            "backward (atol 1e-5), for 8×8×1 patch 2, 8×8×3 patch 4 (batch 1, learned σ) and 6×6×2 patch 3.")


# ---------------------------------------------------------------------------------------------------------------
@exercise("dit.DiT.forward_with_cfg")
def check_forward_with_cfg(impl, ref):
    configs = ((dict(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=4,
                     num_classes=10, learn_sigma=True), 3),
               (dict(input_size=8, patch_size=4, in_channels=1, hidden_size=16, depth=1, num_heads=2,
                     num_classes=5, learn_sigma=False), 1))
    for k, (cfg, half) in enumerate(configs):
        mine, model = _random_pair(impl.DiT, ref.DiT, seed=100 + k, std=0.2, **cfg)
        mine.eval(), model.eval()
        H, C, nc = cfg["input_size"], cfg["in_channels"], cfg["num_classes"]
        with seeded(110 + k):
            x = torch.randn(2 * half, C, H, H)  # two different halves: only the first may be used
            t = torch.randint(0, 1000, (half,)).repeat(2)
            y = torch.cat([torch.randint(0, nc, (half,)), torch.full((half,), nc)])
        with torch.no_grad():
            first = torch.cat([x[:half], x[:half]])
            out = model(first, t, y)
            eps_c, eps_u = out[:half, :C], out[half:, :C]
            out_second = model(torch.cat([x[half:], x[half:]]), t, y)
            out_as_given = model(x, t, y)
        for s in (1.0, 4.0, 1.5):
            def guided(e_c, e_u, o, scale=s):
                g = e_u[:, :C] + scale * (e_c[:, :C] - e_u[:, :C])
                return torch.cat([torch.cat([g, g]), o[:, C:]], dim=1)

            g3 = eps_u[:, :3] + s * (eps_c[:, :3] - eps_u[:, :3])
            mistakes = {
                "the other convention, ε_c + s(ε_c − ε_u)": torch.cat([torch.cat([eps_c + s * (eps_c - eps_u)] * 2),
                                                                      out[:, C:]], 1),
                "conditional and unconditional are swapped (the sign of the guidance is reversed)":
                    guided(eps_u, eps_c, out),
                "the second half of x is used instead of the first":
                    guided(out_second[:half, :C], out_second[half:, :C], out_second),
                "x is used as given, without running its first half twice":
                    guided(out_as_given[:half, :C], out_as_given[half:, :C], out_as_given),
                "only the first 3 channels are guided (the official code's quirk; the course guides all)":
                    torch.cat([torch.cat([g3, g3]), out[:, 3:]], dim=1) if C > 3 else None,
                "the learned-Σ channels are guided too":
                    torch.cat([out[half:] + s * (out[:half] - out[half:])] * 2) if out.shape[1] > C else None,
            }
            with torch.no_grad():
                want = model.forward_with_cfg(x, t, y, s)
                got = mine.forward_with_cfg(x.clone(), t.clone(), y.clone(), s)
            expect_close(got, want, what=f"forward_with_cfg (cfg_scale={s}, batch {2 * half}, {C} channels"
                                         f"{', learned Σ' if cfg['learn_sigma'] else ''})",
                         atol=1e-5, rtol=1e-4, mistakes=mistakes,
                         hint="run torch.cat([x[:B//2], x[:B//2]]) with t and y as given; split the first "
                              "in_channels output channels into ε_c (first half) and ε_u (second half); "
                              "ε = ε_u + s(ε_c − ε_u), repeated for both halves; the remaining channels unchanged.")
    return ("ε_u + s(ε_c − ε_u) on all noise channels from the first half of the batch, Σ channels unguided, "
            "s = 1, 1.5, 4, batch 6 and 2.")

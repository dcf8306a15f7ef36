"""Chapter 2, `dit`: what is specific to the module (its declared mistakes are graded in test_exercises.py). The
reference is the official DiT layout (state-dict keys, shapes, parameter count, FLOPs); a fresh DiT outputs zeros;
label dropout has one home; the ablation variants of course/lab/conditioning.py run on the learner's classes."""
import sys

import pytest
import torch

from course.grader.exercises import reference_module
from course.lab.flops import forward_flops

dit = reference_module("dit")
Diffusion = reference_module("diffusion").Diffusion


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
        flops = forward_flops(model, (1, 4, 32, 32), y=torch.zeros(1, dtype=torch.long)) / 1e9
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


@pytest.fixture
def learner_is_reference(monkeypatch):
    """course.lab.conditioning builds on the learner's `course.dit` and `course.vit`: serve the reference here."""
    monkeypatch.setitem(sys.modules, "course.dit", dit)
    monkeypatch.setitem(sys.modules, "course.vit", reference_module("vit"))


def test_conditioning_variants(learner_is_reference):
    from course.lab.conditioning import CONDITIONINGS, ConditioningDiT

    kwargs = dict(dit.COURSE_DEFAULTS, depth=2, hidden_size=32, num_heads=2, patch_size=2)
    torch.manual_seed(0)
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([3, 300, 900]), torch.tensor([1, 2, 10])
    counts = {}
    for conditioning in CONDITIONINGS:
        model = ConditioningDiT(conditioning, **kwargs)
        assert torch.equal(model(x, t, y), torch.zeros(3, 1, 8, 8)), conditioning  # output Linear starts at zero
        _randomized(model)
        out = model(x, t, y)
        out.square().mean().backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad), conditioning
        # the condition matters
        assert not torch.allclose(out, model(x, t, torch.tensor([5, 6, 7]))), conditioning
        assert not torch.allclose(out, model(x, torch.tensor([4, 500, 700]), y)), conditioning
        counts[conditioning] = sum(p.numel() for p in model.parameters())
        assert forward_flops(model, x[:1], t[:1], y[:1]) > 0
    assert counts["adaLN-Zero"] == sum(p.numel() for p in dit.DiT(**kwargs).parameters())
    assert len(set(counts.values())) == 4
    adaln = ConditioningDiT("adaLN", **kwargs)
    assert adaln.dit.blocks[0].adaLN_modulation[-1].weight.abs().sum() > 0  # no zero-init: that is the difference
    with pytest.raises(ValueError, match="conditioning should be one of"):
        ConditioningDiT("FiLM", **kwargs)


def test_adaln_zero_variant_is_dit(learner_is_reference):
    """ConditioningDiT("adaLN-Zero") is exactly DiT: same weights from the same seed, same outputs."""
    from course.lab.conditioning import ConditioningDiT

    kwargs = dict(dit.COURSE_DEFAULTS, depth=2, hidden_size=32, num_heads=2, patch_size=2)
    torch.manual_seed(3)
    variant = _randomized(ConditioningDiT("adaLN-Zero", **kwargs)).eval()
    plain = dit.DiT(**kwargs).eval()
    plain.load_state_dict(variant.dit.state_dict())
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([10, 800]), torch.tensor([4, 10])
    with torch.no_grad():
        assert torch.equal(variant(x, t, y), plain(x, t, y))


def test_conditioning_module_holds_no_answer():
    """course/lab/conditioning.py is given code: no statement of a solution body of chapters 1-2 appears in it."""
    import ast
    import textwrap

    from course.grader.exercises import ROOT, SOLUTIONS_DIR, find_blocks

    def statements(tree):
        return {ast.dump(node) for node in ast.walk(tree) if isinstance(node, ast.stmt)
                and not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Return, ast.Pass))}

    given = statements(ast.parse((ROOT / "course" / "lab" / "conditioning.py").read_text()))
    for module in ("layers", "vit", "dit"):
        source = (SOLUTIONS_DIR / f"{module}.py").read_text()
        lines = source.splitlines()
        for block in find_blocks(source, module):
            body = textwrap.dedent("\n".join(lines[block.begin: block.end - 1]))
            shared = statements(ast.parse(body)) & given
            assert not shared, (block.exercise, shared)


def test_one_home_for_label_dropout():
    """A model that drops labels itself (DiT's LabelEmbedder) may not be given p_uncond > 0 as well."""
    torch.manual_seed(0)
    model = dit.create_dit("DiT-XXS/2")
    assert model.y_embedder.dropout_prob == 0.1
    x0, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"dropped twice.*p_uncond=0\.1.*y_embedder\.dropout_prob=0\.1"):
        Diffusion().loss(model, x0, y, p_uncond=0.1, num_classes=10)
    assert torch.isfinite(Diffusion().loss(model, x0, y, p_uncond=0.0))  # the model drops them: fine
    no_dropout = dit.create_dit("DiT-XXS/2", class_dropout_prob=0.0)  # the loss drops them: fine too
    assert torch.isfinite(Diffusion().loss(no_dropout, x0, y, p_uncond=0.1, num_classes=9))
    from course.lab.train import train  # the training loop asks the same before its first step

    with pytest.raises(ValueError, match="dropped twice"):
        train(model, x0, y, steps=1, batch_size=2, p_uncond=0.1, progress=False)


def test_small_dit_learns():
    """A few AdamW steps of the course's DiT lower the diffusion loss on digits."""
    from course.lab.data import digits
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

"""The `uvit` reference has the official layout and behaviour (its declared mistakes are tested in
test_exercises.py).

The official U-ViT (baofff/U-ViT, `libs/uvit.py`) is not imported or copied here: its parameter names and shapes are
written out below from the facts in REFERENCE_FACTS.md, and `official_forward` is an independent functional
rewrite of its forward pass (tokens [label, time, patches] + learned positions, pre-norm blocks with LayerNorm eps
1e-5, exact GELU, scale head_dim^-0.5, in-blocks pushed on a stack, out-blocks popping with
skip_linear(cat([x, skip])), norm, decoder_pred, drop the extras, unpatchify 'B (h w) (p1 p2 C) -> B C (h p1)
(w p2)', 3×3 conv).
"""
import math

import pytest
import torch
import torch.nn.functional as F

from course.grader.exercises import reference_module

uvit = reference_module("uvit")


def official_shapes(img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio=4, qkv_bias=False,
                    mlp_time_embed=False, num_classes=-1, conv=True, skip=True):
    """{name: shape} of the official UViT's state dict for these constructor keywords."""
    D, p, C = embed_dim, patch_size, in_chans
    hidden = int(D * mlp_ratio)
    extras = 2 if num_classes > 0 else 1
    shapes = {"patch_embed.proj.weight": (D, C, p, p), "patch_embed.proj.bias": (D,),
              "pos_embed": (1, extras + (img_size // p) ** 2, D)}
    if mlp_time_embed:
        shapes.update({"time_embed.0.weight": (4 * D, D), "time_embed.0.bias": (4 * D,),
                       "time_embed.2.weight": (D, 4 * D), "time_embed.2.bias": (D,)})
    if num_classes > 0:
        shapes["label_emb.weight"] = (num_classes, D)

    def block(prefix, with_skip):
        s = {f"{prefix}.norm1.weight": (D,), f"{prefix}.norm1.bias": (D,), f"{prefix}.attn.qkv.weight": (3 * D, D),
             f"{prefix}.attn.proj.weight": (D, D), f"{prefix}.attn.proj.bias": (D,),
             f"{prefix}.norm2.weight": (D,), f"{prefix}.norm2.bias": (D,),
             f"{prefix}.mlp.fc1.weight": (hidden, D), f"{prefix}.mlp.fc1.bias": (hidden,),
             f"{prefix}.mlp.fc2.weight": (D, hidden), f"{prefix}.mlp.fc2.bias": (D,)}
        if qkv_bias:
            s[f"{prefix}.attn.qkv.bias"] = (3 * D,)
        if with_skip:
            s.update({f"{prefix}.skip_linear.weight": (D, 2 * D), f"{prefix}.skip_linear.bias": (D,)})
        return s

    for i in range(depth // 2):
        shapes.update(block(f"in_blocks.{i}", False))
    shapes.update(block("mid_block", False))
    for i in range(depth // 2):
        shapes.update(block(f"out_blocks.{i}", skip))
    shapes.update({"norm.weight": (D,), "norm.bias": (D,), "decoder_pred.weight": (p * p * C, D),
                   "decoder_pred.bias": (p * p * C,)})
    if conv:
        shapes.update({"final_layer.weight": (C, C, 3, 3), "final_layer.bias": (C,)})
    return shapes


def official_forward(sd, x, t, y, *, patch_size, num_heads, mlp_time_embed=False):
    """The official forward pass, written as functions of the state dict `sd`."""
    D = sd["pos_embed"].shape[-1]
    p = patch_size
    h = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=p)
    h = h.flatten(2).transpose(1, 2)  # (B, L, D)
    B, L, _ = h.shape
    half = D // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    temb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if mlp_time_embed:
        temb = F.linear(F.silu(F.linear(temb, sd["time_embed.0.weight"], sd["time_embed.0.bias"])),
                        sd["time_embed.2.weight"], sd["time_embed.2.bias"])
    h = torch.cat([temb[:, None], h], dim=1)
    if y is not None:
        h = torch.cat([F.embedding(y, sd["label_emb.weight"])[:, None], h], dim=1)
    h = h + sd["pos_embed"]
    extras = h.shape[1] - L

    def block(prefix, h, skip=None):
        g = lambda name: sd.get(f"{prefix}.{name}")  # noqa: E731
        if skip is not None and g("skip_linear.weight") is not None:
            h = F.linear(torch.cat([h, skip], dim=-1), g("skip_linear.weight"), g("skip_linear.bias"))
        n = F.layer_norm(h, (D,), g("norm1.weight"), g("norm1.bias"), eps=1e-5)
        qkv = F.linear(n, g("attn.qkv.weight"), g("attn.qkv.bias")).reshape(B, -1, 3, num_heads, D // num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        a = ((q @ k.transpose(-2, -1)) * (D // num_heads) ** -0.5).softmax(-1) @ v  # (B, H, L, d)
        h = h + F.linear(a.transpose(1, 2).reshape(B, -1, D), g("attn.proj.weight"), g("attn.proj.bias"))
        n = F.layer_norm(h, (D,), g("norm2.weight"), g("norm2.bias"), eps=1e-5)
        m = F.gelu(F.linear(n, g("mlp.fc1.weight"), g("mlp.fc1.bias")))
        return h + F.linear(m, g("mlp.fc2.weight"), g("mlp.fc2.bias"))

    n_half = len({k.split(".")[1] for k in sd if k.startswith("in_blocks.")})
    skips = []
    for i in range(n_half):
        h = block(f"in_blocks.{i}", h)
        skips.append(h)
    h = block("mid_block", h)
    for i in range(n_half):
        h = block(f"out_blocks.{i}", h, skips.pop())
    h = F.layer_norm(h, (D,), sd["norm.weight"], sd["norm.bias"], eps=1e-5)
    h = F.linear(h, sd["decoder_pred.weight"], sd["decoder_pred.bias"])[:, extras:]
    C = h.shape[-1] // (p * p)
    g = int(round(math.sqrt(L)))
    img = h.reshape(B, g, g, p, p, C).permute(0, 5, 1, 3, 2, 4).reshape(B, C, g * p, g * p)
    if "final_layer.weight" in sd:
        img = F.conv2d(img, sd["final_layer.weight"], sd["final_layer.bias"], padding=1)
    return img


CONFIGS = [
    dict(img_size=8, patch_size=2, in_chans=3, embed_dim=32, depth=4, num_heads=4, mlp_ratio=4, qkv_bias=False,
         mlp_time_embed=True, num_classes=11, conv=True, skip=True),
    dict(img_size=8, patch_size=4, in_chans=1, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2, qkv_bias=True,
         mlp_time_embed=False, num_classes=-1, conv=False, skip=True),
    dict(img_size=8, patch_size=2, in_chans=1, embed_dim=16, depth=6, num_heads=2, mlp_ratio=4, qkv_bias=False,
         mlp_time_embed=False, num_classes=-1, conv=True, skip=False),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"p{c['patch_size']}-cls{c['num_classes']}-skip{c['skip']}")
def test_official_state_dict_loads_strict_and_gives_the_same_output(cfg):
    shapes = official_shapes(**cfg)
    model = uvit.UViT(**cfg).eval()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == shapes, (set(ours) ^ set(shapes), {k for k in ours if k in shapes and ours[k] != shapes[k]})
    g = torch.Generator().manual_seed(0)
    official = {k: 0.2 * torch.randn(s, generator=g) for k, s in shapes.items()}
    for k in official:
        if k.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
            official[k] += 1.0
    model.load_state_dict(official, strict=True)
    B, C, H = 3, cfg["in_chans"], cfg["img_size"]
    x = torch.randn(B, C, H, H, generator=g)
    t = torch.tensor([0, 437, 999])
    y = torch.tensor([0, 5, 10]) if cfg["num_classes"] > 0 else None
    with torch.no_grad():
        want = official_forward(official, x, t, y, patch_size=cfg["patch_size"], num_heads=cfg["num_heads"],
                                mlp_time_embed=cfg["mlp_time_embed"])
        got = model(x, t, y)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_uvit_s_cifar10_builds_with_the_official_parameter_count():
    # configs/cifar10_uvit_small.py: img 32, patch 2, 3 channels, embed_dim 512, depth 12 (13 blocks), 8 heads,
    # MLP ratio 4, no qkv bias, no time MLP, unconditional, conv and skips on (the defaults).
    cfg = dict(img_size=32, patch_size=2, in_chans=3, embed_dim=512, depth=12, num_heads=8, mlp_ratio=4,
               qkv_bias=False, mlp_time_embed=False, num_classes=-1)
    official = sum(math.prod(s) for s in official_shapes(**cfg).values())
    # By hand: patch embedding 512·3·2·2 + 512 = 6,656; positions (1 + 256)·512 = 131,584; 13 blocks of
    # 2·1,024 (norms) + 786,432 (qkv) + 262,656 (proj) + 1,050,624 (fc1) + 1,049,088 (fc2) = 3,150,848 each;
    # 6 skip_linear of 524,800; norm 1,024; decoder_pred 512·12 + 12 = 6,156; final conv 3·3·3·3 + 3 = 84.
    assert official == 44_255_328  # the paper's U-ViT-S: 44M
    with torch.device("meta"):
        model = uvit.create_uvit("U-ViT-S/2 CIFAR-10")
    assert sum(p.numel() for p in model.parameters()) == official
    assert len(model.blocks) == 13 and len(model.out_blocks) == 6 and model.extras == 1
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == official_shapes(**cfg)


def test_paper_sizes():
    expected = {"U-ViT-M/4 ImageNet-64": 131e6, "U-ViT-L/2 ImageNet-256": 287e6, "U-ViT-H/2 ImageNet-256": 501e6}
    for name, params in expected.items():  # Table 1 of the paper: 131M, 287M, 501M
        with torch.device("meta"):
            model = uvit.create_uvit(name)
        assert abs(sum(p.numel() for p in model.parameters()) - params) / params < 0.01, name


def test_null_label_and_official_initialisation():
    torch.manual_seed(0)
    model = uvit.create_uvit()  # the course's digits model: 11 label rows = 10 classes + the null label
    assert model.label_emb.num_embeddings == 11 and model.num_classes == 10 and model.extras == 2
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 700])
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, None), model(x, t, torch.tensor([10, 10])))
    assert abs(model.pos_embed.std().item() - 0.02) < 0.004 and model.pos_embed.abs().max() <= 2.0
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):
            assert abs(m.weight.std().item() - 0.02) < 0.004, name
            assert m.bias is None or bool((m.bias == 0).all()), name
        if isinstance(m, torch.nn.LayerNorm):
            assert bool((m.weight == 1).all() and (m.bias == 0).all()), name
    assert uvit.UViT(num_classes=-1, img_size=8, patch_size=2, in_chans=1, embed_dim=16, depth=2,
                     num_heads=2).num_classes is None


def test_output_conv_starts_as_the_identity_in_the_course_model_only():
    torch.manual_seed(0)
    course, official = uvit.create_uvit(), uvit.UViT(**{**uvit.COURSE_DEFAULTS, "conv_init": "pytorch"})
    img = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(course.final_layer(img), img)  # the course's digits model: identity at step 0
        assert not torch.allclose(official.final_layer(img), img, atol=1e-2)  # the official code: PyTorch's draw
        assert torch.equal(uvit.AdaLNUViT(**uvit.COURSE_DEFAULTS).final_layer.weight, course.final_layer.weight)
    with torch.device("meta"):
        assert uvit.create_uvit("U-ViT-S/2 CIFAR-10").conv_init == "pytorch"  # the paper's configs are unchanged
    with pytest.raises(ValueError, match="conv_init"):
        uvit.create_uvit(conv_init="zeros")


def test_skip_trace_reads_the_stack():
    torch.manual_seed(0)
    model = uvit.create_uvit()
    events = uvit.skip_trace(model, torch.randn(1, 1, 8, 8), torch.tensor([10]), torch.tensor([3]))
    assert [e["block"] for e in events] == [f"in_blocks.{i}" for i in range(3)] + ["mid_block"] + \
        [f"out_blocks.{i}" for i in range(3)]
    assert [e["skip"] for e in events[4:]] == ["in_blocks.2", "in_blocks.1", "in_blocks.0"]
    assert events[3]["stack"] == ["in_blocks.0", "in_blocks.1", "in_blocks.2"] and events[-1]["stack"] == []


def test_ablation_variants():
    torch.manual_seed(0)
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([3, 700]), torch.tensor([1, 10])
    base = uvit.create_uvit()
    add = uvit.create_uvit(skip="add")
    none = uvit.create_uvit(skip=False)
    assert all(isinstance(b, uvit.AddSkipBlock) for b in add.out_blocks)
    assert all(b.skip_linear is None for b in none.out_blocks)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(base) - n(add) == 3 * (2 * 64 * 64 + 64) and n(add) == n(none)
    ada = uvit.AdaLNUViT(**uvit.COURSE_DEFAULTS)
    assert ada.extras == 0 and ada.pos_embed.shape == (1, 16, 64)
    with torch.no_grad():
        tokens, c = torch.randn(2, 16, 64), torch.randn(2, 64)
        assert all(torch.equal(b(tokens, c), tokens) for b in ada.blocks[:4])  # adaLN-Zero: identity blocks
        for m in (add, none, ada, uvit.create_uvit(conv=False), uvit.create_uvit(patch_size=1)):
            out = m(x, t, y)
            assert out.shape == x.shape and torch.isfinite(out).all()
    attn = uvit.time_token_attention(base, x, t, y)
    assert attn.shape == (7, 2, 4, 16) and bool((attn > 0).all() and (attn < 1).all())
    with pytest.raises(ValueError):
        uvit.UViT(skip="sideways")

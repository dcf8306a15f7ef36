"""The `genvit` reference is faithful to the official model (sndnyang/Diffusion_ViT, models/DifViT.py): an official
state dict, built here from the official key names and shapes, loads through `from_official_state_dict` and gives
the outputs of an independent re-statement of the official forward pass; the CIFAR-10 configuration has the
official parameter count. (Declared mistakes are tested in test_exercises.py.)"""
import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from course.grader.exercises import reference_module

genvit = reference_module("genvit")

CIFAR = dict(img=32, p=4, C=3, D=384, depth=9, heads=12, dim_head=32, ratio=2, classes=10)
OFFICIAL_PARAMS = 11_185_068  # logs/ of the official repository, the CIFAR-10 GenViT and HybViT runs


def official_state_dict(img, p, C, D, depth, heads, dim_head, ratio, classes, seed=0):
    """Random weights under the official `ViT` key names and shapes (with SPT and LSA off)."""
    g = torch.Generator().manual_seed(seed)
    N = (img // p) ** 2
    T = 4 * (N + 1)  # time_dim
    inner = heads * dim_head

    def lin(prefix, fan_in, fan_out, bias=True):
        out = {f"{prefix}.weight": torch.randn(fan_out, fan_in, generator=g) / math.sqrt(fan_in)}
        if bias:
            out[f"{prefix}.bias"] = 0.1 * torch.randn(fan_out, generator=g)
        return out

    def norm(prefix):
        return {f"{prefix}.weight": 1 + 0.1 * torch.randn(D, generator=g),
                f"{prefix}.bias": 0.1 * torch.randn(D, generator=g)}

    sd = {}
    sd.update(lin("time_mlp.1", D, T))
    sd.update(lin("time_mlp.3", T, T))
    sd.update(lin("to_patch_embedding.1", p * p * C, D))
    sd.update(lin("recon_head.0", D, p * p * C))
    sd["pos_embedding"] = torch.randn(1, N + 1, D, generator=g)
    sd["cls_token"] = torch.randn(1, 1, D, generator=g)
    for i in range(depth):
        sd.update(lin(f"transformer.time_layers.{i}.1", T, 2 * (N + 1)))
        sd.update(norm(f"transformer.layers.{i}.0.norm"))
        sd.update(lin(f"transformer.layers.{i}.0.fn.to_qkv", D, 3 * inner, bias=False))
        sd.update(lin(f"transformer.layers.{i}.0.fn.to_out.0", inner, D))
        sd.update(norm(f"transformer.layers.{i}.1.norm"))
        sd.update(lin(f"transformer.layers.{i}.1.fn.net.0", D, D * ratio))
        sd.update(lin(f"transformer.layers.{i}.1.fn.net.3", D * ratio, D))
    sd.update(norm("mlp_head.0"))
    sd.update(lin("mlp_head.1", D, classes))
    return sd


def official_forward(sd, img, t, *, p, heads, dim_head, depth, ffn_time=True):
    """The official `ViT.forward` restated from its description (REFERENCE_FACTS.md), with the official key names:
    returns (logits, ε̂) as `model(img, t, feat=False)` does."""
    B, C, H, W = img.shape
    D = sd["cls_token"].shape[-1]
    x = rearrange(img, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=p, p2=p)
    x = F.linear(x, sd["to_patch_embedding.1.weight"], sd["to_patch_embedding.1.bias"])
    x = torch.cat([sd["cls_token"].expand(B, -1, -1), x], dim=1) + sd["pos_embedding"]
    temb = None
    if t is not None:
        half = D // 2
        freqs = torch.exp(torch.arange(half) * -(math.log(10000) / (half - 1)))
        e = t[:, None].float() * freqs[None]
        e = torch.cat([e.sin(), e.cos()], dim=-1)
        temb = F.linear(F.gelu(F.linear(e, sd["time_mlp.1.weight"], sd["time_mlp.1.bias"])),
                        sd["time_mlp.3.weight"], sd["time_mlp.3.bias"])
    for i in range(depth):
        L = f"transformer.layers.{i}"
        if temb is not None:
            te = F.linear(F.silu(temb), sd[f"transformer.time_layers.{i}.1.weight"],
                          sd[f"transformer.time_layers.{i}.1.bias"])
            scale, shift = rearrange(te, "b c -> b c 1").chunk(2, dim=1)
            x = x * (scale + 1) + shift
        h = F.layer_norm(x, (D,), sd[f"{L}.0.norm.weight"], sd[f"{L}.0.norm.bias"])
        q, k, v = (rearrange(u, "b n (h d) -> b h n d", h=heads)
                   for u in F.linear(h, sd[f"{L}.0.fn.to_qkv.weight"]).chunk(3, dim=-1))
        attn = (torch.einsum("bhid,bhjd->bhij", q, k) * dim_head**-0.5).softmax(dim=-1)
        out = rearrange(torch.einsum("bhij,bhjd->bhid", attn, v), "b h n d -> b n (h d)")
        x = F.linear(out, sd[f"{L}.0.fn.to_out.0.weight"], sd[f"{L}.0.fn.to_out.0.bias"]) + x
        if temb is not None and ffn_time:
            x = x * (scale + 1) + shift
        h = F.layer_norm(x, (D,), sd[f"{L}.1.norm.weight"], sd[f"{L}.1.norm.bias"])
        h = F.linear(F.gelu(F.linear(h, sd[f"{L}.1.fn.net.0.weight"], sd[f"{L}.1.fn.net.0.bias"])),
                     sd[f"{L}.1.fn.net.3.weight"], sd[f"{L}.1.fn.net.3.bias"])
        x = h + x
    logits = F.linear(F.layer_norm(x[:, 0], (D,), sd["mlp_head.0.weight"], sd["mlp_head.0.bias"]),
                      sd["mlp_head.1.weight"], sd["mlp_head.1.bias"])
    recon = F.linear(x[:, 1:], sd["recon_head.0.weight"], sd["recon_head.0.bias"])
    recon = rearrange(recon, "b (h w) (p1 p2 c) -> b c (h p1) (w p2)", h=H // p, w=W // p, p1=p, p2=p)
    return logits, recon


def test_cifar10_configuration_has_the_official_parameter_count():
    with torch.device("meta"):
        model = genvit.genvit_cifar10()
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS
    assert sum(v.numel() for v in official_state_dict(**CIFAR).values()) == OFFICIAL_PARAMS
    with torch.device("meta"):
        gen = genvit.GenViT(img_size=32, patch_size=4, in_channels=3, dim=384, depth=9, heads=12, dim_head=32)
    assert sum(p.numel() for p in gen.parameters()) == OFFICIAL_PARAMS - (2 * 384 + 384 * 10 + 10)  # no mlp_head


@pytest.mark.parametrize("ffn_time", [True, False])
def test_an_official_state_dict_loads_and_gives_the_official_outputs(ffn_time):
    sd = official_state_dict(**CIFAR)
    model = genvit.genvit_cifar10(ffn_time=ffn_time).eval()
    model.load_state_dict(genvit.from_official_state_dict(sd), strict=True)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 32, 32, generator=g)
    t = torch.tensor([3, 777])
    kw = dict(p=4, heads=12, dim_head=32, depth=9, ffn_time=ffn_time)
    with torch.no_grad():
        logits_official, _ = official_forward(sd, x, None, **kw)  # the classifier: no timestep
        _, eps_official = official_forward(sd, x, t, **kw)
        assert torch.allclose(model.classify(x), logits_official, atol=1e-4, rtol=1e-4)
        assert torch.allclose(model(x), logits_official, atol=1e-4, rtol=1e-4)
        assert torch.allclose(model.denoise(x, t), eps_official, atol=1e-4, rtol=1e-4)
        assert torch.allclose(model(x, t), eps_official, atol=1e-4, rtol=1e-4)
    # GenViT takes the same weights without the classification head.
    gen = genvit.GenViT(img_size=32, patch_size=4, in_channels=3, dim=384, depth=9, heads=12, dim_head=32,
                        ffn_time=ffn_time).eval()
    gen.load_state_dict({k: v for k, v in genvit.from_official_state_dict(sd).items() if not k.startswith("mlp_head")})
    with torch.no_grad():
        assert torch.allclose(gen(x, t), eps_official, atol=1e-4, rtol=1e-4)


def test_official_keys_map_one_to_one_and_a_dataparallel_prefix_is_removed():
    sd = official_state_dict(img=8, p=2, C=1, D=16, depth=2, heads=2, dim_head=8, ratio=2, classes=10)
    mapped = genvit.from_official_state_dict({f"module.{k}": v for k, v in sd.items()})
    model = genvit.HybViT(img_size=8, patch_size=2, in_channels=1, dim=16, depth=2, heads=2, dim_head=8)
    assert set(mapped) == set(model.state_dict())
    assert len(mapped) == len(sd)


def test_time_features_are_sin_first_with_half_minus_one():
    t = torch.tensor([0, 1, 999])
    e = genvit.genvit_time_embedding(t, 8)  # half = 4: freqs 1, 10^-4/3, 10^-8/3, 10^-4
    freqs = torch.tensor([1.0, 10 ** (-4 / 3), 10 ** (-8 / 3), 1e-4])
    assert torch.allclose(e[:, :4], torch.sin(t[:, None] * freqs), atol=1e-5)
    assert torch.allclose(e[:, 4:], torch.cos(t[:, None] * freqs), atol=1e-5)


def test_classifier_without_timestep_differs_from_t_zero():
    torch.manual_seed(0)
    model = genvit.HybViT().eval()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        none = model.classify(x)
        zero = model.mlp_head(genvit.GenViT.forward(model, x, torch.zeros(3, dtype=torch.long),
                                                    return_tokens=True)[:, 0])
    assert not torch.allclose(none, zero, atol=1e-4)


def test_layernorm_removes_a_per_token_affine_of_the_residual_stream():
    """The chapter's analysis: each sub-block reads LN(x · (1 + s) + b) = LN(x) for 1 + s > 0 (up to LN's eps)."""
    torch.manual_seed(0)
    norm = torch.nn.LayerNorm(64)
    x = torch.randn(2, 17, 64)
    scale, shift = torch.rand(2, 17, 1), torch.randn(2, 17, 1)
    assert torch.allclose(norm(x * (1 + scale) + shift), norm(x), atol=1e-4)
    assert not torch.allclose(norm(x * (1 + scale.expand(-1, -1, 64).roll(1, -1) * torch.rand(64)) + shift),
                              norm(x), atol=1e-2)  # a per-channel scale is not removed


def test_hybrid_loss_fn_draws_two_batches_and_trains():
    diffusion = reference_module("diffusion").Diffusion()
    x = torch.randn(40, 1, 8, 8)
    y = torch.arange(40) % 10
    torch.manual_seed(0)
    model = genvit.HybViT(dim=16, depth=1, heads=2, dim_head=8)
    seen = []
    original = genvit.hybrid_loss

    def spy(model, x0, t, noise, x_cls, y_cls, ab, **kw):
        seen.append((x0.shape, None if x_cls is None else x_cls.shape, kw, t))
        return original(model, x0, t, noise, x_cls, y_cls, ab, **kw)

    genvit.hybrid_loss = spy
    try:
        fn = genvit.make_hybrid_loss_fn(x, y, diffusion, px=10.0, pyx=1.0, cls_batch=6)
        loss = fn(model, x[:4], None, torch.Generator().manual_seed(0))
        fn0 = genvit.make_hybrid_loss_fn(x, y, diffusion, pyx=0.0)
        fn0(model, x[:4], None, torch.Generator().manual_seed(0))
        snr = genvit.make_hybrid_loss_fn(x, y, diffusion, min_snr_gamma=5.0)
        snr(model, x[:4], None, torch.Generator().manual_seed(0))
    finally:
        genvit.hybrid_loss = original
    assert seen[0][0] == (4, 1, 8, 8) and seen[0][1] == (6, 1, 8, 8) and seen[0][2]["px"] == 10.0
    assert seen[1][1] is None
    assert seen[0][2]["weights"] is None and seen[1][2]["weights"] is None  # the official loss is unweighted
    a = diffusion.alphas_cumprod[seen[2][3]].double()
    assert torch.allclose(seen[2][2]["weights"].double(), (a / (1 - a)).clamp(max=5.0) / (a / (1 - a)))  # Min-SNR-5
    loss.backward()
    assert model.mlp_head[1].weight.grad is not None and model.recon_head.weight.grad is not None


def test_shift_augment_and_ece():
    x = torch.randn(5, 1, 8, 8)
    out = genvit.shift_augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    labels = torch.tensor([0, 1, 1])  # confidences 0.9 (right), 0.6 (wrong), 0.8 (right)
    ece = genvit.expected_calibration_error(probs, labels, n_bins=10)
    assert ece == pytest.approx((abs(1 - 0.9) + abs(0 - 0.6) + abs(1 - 0.8)) / 3)


def test_a_compiled_hybvit_runs_both_heads_through_its_compiled_forward(monkeypatch):
    """`train(compile=...)` compiles a model's forward only: the hybrid loss must reach `denoise` and `classify`
    through it (it once called them directly, so a compiled HybViT trained uncompiled), with the same numbers."""
    from course.lab import train as loop

    diffusion = reference_module("diffusion").Diffusion()
    x, y = torch.randn(40, 1, 8, 8), torch.arange(40) % 10
    calls = []

    class Compiled(torch.nn.Module):  # what torch.compile returns, reduced to what the test needs to see
        def __init__(self, model):
            super().__init__()
            self.inner = model

        def forward(self, x, t=None, y=None):
            calls.append("classify" if t is None else "denoise")
            return self.inner(x, t, y)

        def __getattr__(self, name):  # as torch.compile's module does: other attributes are the model's (eager)
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.inner, name)

    monkeypatch.setattr(loop.torch, "compile", lambda model, **kwargs: Compiled(model))
    torch.manual_seed(0)
    model = genvit.HybViT(dim=16, depth=1, heads=2, dim_head=8)
    fn = genvit.make_hybrid_loss_fn(x, y, diffusion, cls_batch=6)
    loop.train(model, x, y, diffusion=diffusion, steps=2, batch_size=4, loss_fn=fn, compile=True, progress=False)
    assert calls.count("denoise") == 2 and calls.count("classify") == 2, calls

    direct = genvit.hybrid_loss  # the heads called directly, as a learner's loss may: the same number
    t, noise = torch.tensor([3, 500, 999, 10]), torch.randn(4, 1, 8, 8)
    ab = diffusion.alphas_cumprod
    through = genvit.ThroughForward(model)
    assert torch.equal(direct(model, x[:4], t, noise, x[4:10], y[4:10], ab),
                       direct(through, x[:4], t, noise, x[4:10], y[4:10], ab))
    assert through.recon_head is model.recon_head  # other attributes are the model's

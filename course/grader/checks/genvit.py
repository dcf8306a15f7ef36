"""Checks for chapter 4, `genvit`: GenViT's forward pass, HybViT's two heads and the hybrid loss."""
import contextlib
import copy

import torch
import torch.nn.functional as F

from course.grader.checks.kit import (CheckFailed, compare_forward, exercise, expect, expect_close, mistake, patched,
                                      random_pair, seeded, wrong_outputs)
from course.grader.checks.kit import hints
from course.grader.exercises import reference_module


def _layers():
    return reference_module("layers")


def _q_sample(*args):
    return reference_module("diffusion").q_sample(*args)


def _randomize_biases(model, seed: int, std: float = 0.3):
    """LayerNorm affines and every bias drawn at random (the official init zeroes them, which would hide a swapped
    scale and shift); the Linear weights keep their xavier init, so activations stay in range."""
    with seeded(seed), torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".norm" in name or "mlp_head.0" in name:
                p.add_(std * torch.randn_like(p))
    return model


def _pair(impl_cls, ref_cls, seed, **config):
    mine, ref = random_pair(impl_cls, ref_cls, seed=seed, norms_only=True, **config)
    _randomize_biases(ref, seed + 7)
    mine.load_state_dict(ref.state_dict())
    return mine, ref


# ---------------------------------------------------------------------------------------------------------------
# GenViT.forward
# ---------------------------------------------------------------------------------------------------------------
def _genvit(self, x, t=None, y=None, *, return_tokens=False, per_channel=False, one_plus=True, swap=False,
            ffn=True, inside=False, drop="first", pos=True, cls_last=False):
    """GenViT.forward with one thing changed: the common body of the wrong versions below."""
    B, C, H, W = x.shape
    p = self.patch_size
    L = _layers()
    parts = [self.cls_token.expand(B, -1, -1), self.patch_embed(L.patchify(x, p))]
    h = torch.cat(parts[::-1] if cls_last else parts, dim=1)
    h = h + self.pos_embedding if pos else h
    temb = self.time_mlp(t) if t is not None else None

    def mod(u, scale, shift):
        return u * (1 + scale) + shift if one_plus else u * scale + shift

    for block in self.blocks:
        scale = shift = None
        if temb is not None:
            s = block.time_layer(temb)
            s = s[:, None, :] if per_channel else s[:, :, None]  # (B, 1, 2(N+1)) would modulate channels
            scale, shift = s.chunk(2, dim=2 if per_channel else 1)
            if swap:
                scale, shift = shift, scale
        if inside and temb is not None:
            h = h + block.attn(mod(block.norm1(h), scale, shift))
            h = h + block.mlp(mod(block.norm2(h), scale, shift) if self.ffn_time else block.norm2(h))
            continue
        if temb is not None:
            h = mod(h, scale, shift)
        h = h + block.attn(block.norm1(h))
        if temb is not None and self.ffn_time and ffn:
            h = mod(h, scale, shift)
        h = h + block.mlp(block.norm2(h))
    if return_tokens:
        return h
    h = h[:, 1:] if drop == "first" else h[:, :-1]
    return L.unpatchify(self.recon_head(h), p, (H // p, W // p))


@mistake("genvit.GenViT.forward", "the time modulation is per channel (a (B, 1, D) scale); GenViT's is per token: "
                                  "reshape time_layer's output to (B, 2(N+1), 1) and chunk along dim 1")
def _(self, x, t=None, y=None, *, return_tokens=False):
    return _genvit(self, x, t, y, return_tokens=return_tokens, per_channel=True)


@mistake("genvit.GenViT.forward", "the `1 +` is missing: x · scale + shift instead of x · (1 + scale) + shift")
def _(self, x, t=None, y=None, *, return_tokens=False):
    return _genvit(self, x, t, y, return_tokens=return_tokens, one_plus=False)


@mistake("genvit.GenViT.forward", "scale and shift are swapped (chunk order: scale first, then shift)")
def _(self, x, t=None, y=None, *, return_tokens=False):
    return _genvit(self, x, t, y, return_tokens=return_tokens, swap=True)


@mistake("genvit.GenViT.forward", "the modulation is applied only before the attention; with `ffn_time` it is "
                                  "applied again before the MLP")
def _(self, x, t=None, y=None, *, return_tokens=False):
    return _genvit(self, x, t, y, return_tokens=return_tokens, ffn=False)


@mistake("genvit.GenViT.forward", "the modulation is applied to the LayerNorm's output inside the sub-block "
                                  "(adaLN style); GenViT modulates the residual stream x itself, before norm1")
def _(self, x, t=None, y=None, *, return_tokens=False):
    return _genvit(self, x, t, y, return_tokens=return_tokens, inside=True)


@mistake("genvit.GenViT.forward", "the last token is dropped before the head; the CLS token is at index 0, so "
                                  "keep tokens[:, 1:]")
def _(self, x, t=None, y=None, *, return_tokens=False):
    return _genvit(self, x, t, y, return_tokens=return_tokens, drop="last")


@mistake("genvit.GenViT.forward", "the position embedding is missing (add pos_embedding to [CLS, tokens])")
def _(self, x, t=None, y=None, *, return_tokens=False):
    return _genvit(self, x, t, y, return_tokens=return_tokens, pos=False)


@mistake("genvit.GenViT.forward", "the CLS token is appended after the patch tokens; it goes first, at index 0 "
                                  "(pos_embedding's first row and time_layer's first scale and shift are its)")
def _(self, x, t=None, y=None, *, return_tokens=False):
    return _genvit(self, x, t, y, return_tokens=return_tokens, cls_last=True, drop="last")


def _genvit_steps(depth: int, head: str = "recon_head") -> dict[str, str]:
    steps = {
        "patch_embed": "the patch tokens: patch_embed reads patchify(x, p), (B, N, p·p·C), x as it came in",
        "time_mlp": "the time features: time_mlp reads the raw integer timesteps t as given",
        "*": "the way back to an image: the CLS token is dropped and the N patch tokens are unpatchified to the "
             "input's grid",
    }
    for i in range(depth):
        steps[f"blocks.{i}.time_layer"] = "the time features: every block's time_layer reads time_mlp(t)"
        steps[f"blocks.{i}.norm1"] = (
            "the stream entering the first block: [CLS, patch tokens] + pos_embedding, CLS first; when t is given, "
            "modulated per token with time_layer's first N + 1 values as scales, its last N + 1 as shifts"
            if i == 0 else
            "the stream entering the block: the previous block's output, modulated per token when t is given")
        steps[f"blocks.{i}.attn"] = "what the attention reads: norm1 of the (modulated) residual stream"
        steps[f"blocks.{i}.norm2"] = ("the residual stream entering the MLP: after the attention's residual sum, "
                                      "modulated again with the same scale and shift when ffn_time (and t is given)")
        steps[f"blocks.{i}.mlp"] = "what the MLP reads: norm2 of the residual stream"
    steps[head] = ("what the head reads: the patch tokens after the last block, without the CLS token"
                   if head == "recon_head" else
                   "what the classification head reads: the CLS token (index 0) after the last block")
    return steps


@exercise("genvit.GenViT.forward")
def check_GenViT_forward(impl, ref):
    configs = [
        # The first has D = N + 1 (10 = 9 patches + CLS), so a per-channel modulation runs and can be named.
        dict(img_size=6, patch_size=2, in_channels=1, dim=10, depth=2, heads=2, dim_head=4, mlp_ratio=2),
        dict(img_size=8, patch_size=2, in_channels=1, dim=32, depth=2, heads=2, dim_head=8, mlp_ratio=2),
        dict(img_size=8, patch_size=4, in_channels=3, dim=16, depth=1, heads=1, dim_head=8, mlp_ratio=2,
             ffn_time=False),
    ]
    batches = (3, 2, 1)
    for i, (config, B) in enumerate(zip(configs, batches)):
        mine, theirs = _pair(impl.GenViT, ref.GenViT, 400 + i, **config)
        with seeded(420 + i):
            x = torch.randn(B, config["in_channels"], config["img_size"], config["img_size"])
            t = torch.randint(0, 1000, (B,))
        what = f"GenViT(patch {config['patch_size']}, D {config['dim']}) on {tuple(x.shape)}"
        steps = _genvit_steps(config["depth"])
        compare_forward(mine, theirs, (x, t), exercise="genvit.GenViT.forward", what=what, atol=1e-4, steps=steps)
        compare_forward(mine, theirs, (x, None), exercise="genvit.GenViT.forward", atol=1e-4, steps=steps,
                        what=f"{what} with t=None and return_tokens=True", kwargs={"return_tokens": True},
                        hint="t=None skips the time modulation entirely; return_tokens returns the (B, N+1, D) "
                             "tokens after the blocks, CLS first.")
        with torch.no_grad():
            base = mine(x, t)
            expect(not torch.allclose(base, mine(x, (t + 397) % 1000)),
                   f"{what}: the output does not depend on the timestep t.")
    return ("outputs and gradients match for D = N + 1 (6×6 input), D ≠ N + 1, patch 2 and 4, 1 and 3 channels, "
            "ffn_time on and off, batch 1; t=None skips the modulation and return_tokens gives the tokens (atol 1e-4).")


# ---------------------------------------------------------------------------------------------------------------
# HybViT.classify
# ---------------------------------------------------------------------------------------------------------------
def _tokens(self, x, t=None):
    return reference_module("genvit").GenViT.forward(self, x, t, return_tokens=True)


@mistake("genvit.HybViT.classify", "the classifier is given a timestep (t = 0); HybViT classifies with t = None, "
                                   "no time modulation at all")
def _(self, x):
    return self.mlp_head(_tokens(self, x, torch.zeros(x.shape[0], dtype=torch.long))[:, 0])


@mistake("genvit.HybViT.classify", "the tokens are mean-pooled; the classifier reads the CLS token (index 0)")
def _(self, x):
    return self.mlp_head(_tokens(self, x).mean(dim=1))


@mistake("genvit.HybViT.classify", "the LayerNorm of mlp_head is skipped (CLS → LayerNorm → Linear)")
def _(self, x):
    return self.mlp_head[1](_tokens(self, x)[:, 0])


@mistake("genvit.HybViT.classify", "the last token is read instead of the CLS token (index 0)")
def _(self, x):
    return self.mlp_head(_tokens(self, x)[:, -1])


@exercise("genvit.HybViT.classify")
def check_HybViT_classify(impl, ref):
    configs = [dict(img_size=8, patch_size=2, in_channels=1, dim=32, depth=2, heads=2, dim_head=8, num_classes=10),
               dict(img_size=8, patch_size=4, in_channels=3, dim=16, depth=1, heads=1, dim_head=8, num_classes=3)]
    for i, (config, B) in enumerate(zip(configs, (2, 1))):
        mine, theirs = _pair(impl.HybViT, ref.HybViT, 500 + i, **config)
        with seeded(520 + i):
            x = torch.randn(B, config["in_channels"], 8, 8)
        steps = _genvit_steps(config["depth"], head="mlp_head")
        steps["time_mlp"] = "the timestep: the classifier runs the shared network with t = None, so no time features"
        steps["*"] = "the output: mlp_head's logits are returned as they are"
        compare_forward(mine, theirs, (x,), method="classify", exercise="genvit.HybViT.classify", atol=1e-4,
                        what=f"HybViT.classify ({config['num_classes']} classes) on {tuple(x.shape)}", steps=steps)
    return ("logits and gradients match for 10 and 3 classes, batch 1; no timestep, the CLS token, LayerNorm → "
            "Linear (atol 1e-4).")


# ---------------------------------------------------------------------------------------------------------------
# HybViT.denoise
# ---------------------------------------------------------------------------------------------------------------
@mistake("genvit.HybViT.denoise", "the timestep is not passed on (t = None skips the time modulation)")
def _(self, x_t, t):
    return reference_module("genvit").GenViT.forward(self, x_t, None)


@mistake("genvit.HybViT.denoise", "t is rescaled to [0, 1) (t / 1000); GenViT's time features take the raw integer "
                                  "timestep")
def _(self, x_t, t):
    return reference_module("genvit").GenViT.forward(self, x_t, t.float() / 1000)


@exercise("genvit.HybViT.denoise")
def check_HybViT_denoise(impl, ref):
    config = dict(img_size=8, patch_size=2, in_channels=1, dim=32, depth=2, heads=2, dim_head=8, num_classes=10)
    mine, theirs = _pair(impl.HybViT, ref.HybViT, 600, **config)
    for i, B in enumerate((2, 1)):
        with seeded(610 + i):
            x = torch.randn(B, 1, 8, 8)
            t = torch.randint(0, 1000, (B,))
        compare_forward(mine, theirs, (x, t), method="denoise", exercise="genvit.HybViT.denoise", atol=1e-4,
                        what=f"HybViT.denoise on {tuple(x.shape)}", steps=_genvit_steps(config["depth"]))
        mine.zero_grad()
        theirs.zero_grad()
    return "ε̂ and gradients match the reference's GenViT forward pass with the raw timestep (batch 2 and 1)."


# ---------------------------------------------------------------------------------------------------------------
# hybrid_loss
# ---------------------------------------------------------------------------------------------------------------
def _hybrid(model, x0, t, noise, x_cls, y_cls, alphas_cumprod, *, px=100.0, pyx=1.0, loss_type="l1",
            label_smoothing=0.1, weights=None, swap=False, l2=False, cls_on="x_cls", denoise_clean=False,
            smoothing=True, weigh="examples"):
    """hybrid_loss with one thing changed: the common body of the wrong versions below."""
    if swap:
        px, pyx = pyx, px
    total = 0.0
    x_t = _q_sample(x0, t, noise, alphas_cumprod)
    if px:
        eps = model.denoise(x0 if denoise_clean else x_t, t)
        l2 = l2 or loss_type != "l1"
        error = (F.mse_loss if l2 else F.l1_loss)(eps, noise, reduction="none").flatten(1).mean(1)  # (B,)
        if weights is not None and weigh == "examples":
            error = weights * error
        elif weights is not None and weigh == "sum":
            error = weights * error * len(error) / weights.sum()
        total = total + px * error.mean()
    if pyx:
        inputs = {"x_cls": x_cls, "x_t": x_t, "x0": x0}[cls_on]
        total = total + pyx * F.cross_entropy(model.classify(inputs), y_cls,
                                              label_smoothing=label_smoothing if smoothing else 0.0)
    return total


@mistake("genvit.hybrid_loss", "the loss weights are swapped: px multiplies the diffusion term, pyx the "
                               "cross-entropy")
def _(*args, **kwargs):
    return _hybrid(*args, **kwargs, swap=True)


@mistake("genvit.hybrid_loss", "L2 (mean squared error) instead of L1 on ε: GenViT's default loss is the mean "
                               "absolute error")
def _(*args, **kwargs):
    return _hybrid(*args, **kwargs, l2=True)


@mistake("genvit.hybrid_loss", "the classifier sees the noisy x_t of the generative batch; it is trained on the "
                               "clean classification batch x_cls")
def _(*args, **kwargs):
    return _hybrid(*args, **kwargs, cls_on="x_t")


@mistake("genvit.hybrid_loss", "both terms use the generative batch x0; the cross-entropy is on the other batch, "
                               "x_cls")
def _(*args, **kwargs):
    return _hybrid(*args, **kwargs, cls_on="x0")


@mistake("genvit.hybrid_loss", "the denoiser is given the clean x0 instead of x_t = q_sample(x0, t, noise)")
def _(*args, **kwargs):
    return _hybrid(*args, **kwargs, denoise_clean=True)


@mistake("genvit.hybrid_loss", "label_smoothing is not passed to the cross-entropy")
def _(*args, **kwargs):
    return _hybrid(*args, **kwargs, smoothing=False)


@mistake("genvit.hybrid_loss", "the weights are ignored: with `weights`, each example's mean error is multiplied by "
                               "its weight before the batch mean")
def _(*args, **kwargs):
    return _hybrid(*args, **kwargs, weigh="ignored")


@mistake("genvit.hybrid_loss", "the weighted errors are divided by the sum of the weights; Min-SNR-γ's weighted "
                               "loss is the plain batch mean of weight × error")
def _(*args, **kwargs):
    return _hybrid(*args, **kwargs, weigh="sum")


HEADS = {  # the model's two heads, and what to look at when the input one of them gets first differs
    "denoise": "the generative term: the denoiser reads x_t, the generative batch x0 noised at its timesteps t with "
               "the given noise, and t itself",
    "classify": "the classification term: the classifier reads the clean classification batch",
}


@contextlib.contextmanager
def _watch_heads(model, seen: dict):
    """Record the arguments of every call of the model's two heads (`seen[head]`: a list of argument tuples)."""
    def watch(name):
        head = getattr(model, name)

        def call(*args):
            seen.setdefault(name, []).append(tuple(a.detach().clone() if isinstance(a, torch.Tensor) else a
                                                   for a in args))
            return head(*args)
        return call

    with patched(model, **{name: watch(name) for name in HEADS}):
        yield


def _first_head_that_differs(want: dict, got: dict) -> str:
    for name, advice in HEADS.items():
        for k, args in enumerate(want.get(name, [])):
            mine = got.get(name, [])
            if k >= len(mine):
                return f"The first step that differs: model.{name} is never called. Look at {advice}."
            if len(mine[k]) != len(args) or not all(
                    isinstance(m, torch.Tensor) and m.shape == w.shape and torch.allclose(m.float(), w.float(),
                                                                                          atol=1e-6)
                    for m, w in zip(mine[k], args) if isinstance(w, torch.Tensor)):
                return f"The first step that differs: the input of model.{name}. Look at {advice}."
        if len(got.get(name, [])) > len(want.get(name, [])):
            return (f"The first step that differs: model.{name} is called, but the reference does not compute that "
                    "term here (its weight is 0).")
    return ("Both heads get the reference's inputs. Look at how each term is computed from their outputs and "
            "weighted: the loss type, the label smoothing, px and pyx.")


@exercise("genvit.hybrid_loss")
def check_hybrid_loss(impl, ref):
    config = dict(img_size=8, patch_size=2, in_channels=1, dim=32, depth=2, heads=2, dim_head=8, num_classes=10)
    with seeded(700):
        model = ref.HybViT(**config)
    _randomize_biases(model, 701)
    with torch.no_grad():
        model.mlp_head[1].weight.mul_(5.0)  # confident logits, so that the classification term tells inputs apart
    ab = reference_module("diffusion").Diffusion().alphas_cumprod
    with seeded(710):
        x0, noise, x_cls = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
        t = torch.randint(0, 1000, (4,))
        y_cls = torch.randint(0, 10, (4,))
        w = torch.rand(4) + 0.1  # per-example weights of the diffusion term, such as Min-SNR-γ's
    cases = [
        ("with the official weights (px 100, pyx 1)", {}),
        ("with px 1, pyx 2, L2", dict(px=1.0, pyx=2.0, loss_type="l2")),
        ("with px 1, pyx 1, label_smoothing 0", dict(px=1.0, label_smoothing=0.0)),
        ("with px 1, pyx 1", dict(px=1.0)),
        ("with px 1, pyx 1, L2 and per-example weights", dict(px=1.0, loss_type="l2", weights=w)),
    ]
    for what, kwargs in cases:
        a, b = copy.deepcopy(model), copy.deepcopy(model)
        args = (x0, t, noise, x_cls, y_cls, ab)
        seen_want, seen_got = {}, {}
        with seeded(720), _watch_heads(b, seen_want):
            want = ref.hybrid_loss(b, *args, **kwargs)
        with seeded(720), _watch_heads(a, seen_got):
            got = impl.hybrid_loss(a, *args, **kwargs)
        try:
            expect_close(got, want, what=f"hybrid_loss {what}", atol=1e-5, rtol=1e-5,
                         mistakes=wrong_outputs("genvit.hybrid_loss", b, *args, seed=720, **kwargs))
        except CheckFailed as e:
            if "common mistake" in str(e) or not isinstance(got, torch.Tensor) or got.shape != want.shape:
                raise
            raise CheckFailed(f"{str(e).split(' Hint: ')[0]} {_first_head_that_differs(seen_want, seen_got)} "
                              f"(more: hint(\"genvit.hybrid_loss\"))") from None
        want.backward()
        got.backward()
        for (name, p), (_, q) in zip(b.named_parameters(), a.named_parameters()):
            expect(q.grad is not None or p.grad is None, f"hybrid_loss {what}: `{name}` gets no gradient.")
            if p.grad is not None:
                expect_close(q.grad, p.grad, what=f"hybrid_loss {what}: the gradient of `{name}`", atol=1e-4,
                             rtol=1e-4)
    # A term with weight 0 is not computed: its batch may be None.
    gen_only = impl.hybrid_loss(copy.deepcopy(model), x0, t, noise, None, None, ab, pyx=0.0)
    expect_close(gen_only, ref.hybrid_loss(model, x0, t, noise, None, None, ab, pyx=0.0),
                 what="hybrid_loss with pyx=0 and no classification batch", atol=1e-5,
                 hint="pyx = 0 is GenViT: compute only the diffusion term.")
    cls_only = impl.hybrid_loss(copy.deepcopy(model), None, None, None, x_cls, y_cls, ab, px=0.0)
    expect_close(cls_only, ref.hybrid_loss(model, None, None, None, x_cls, y_cls, ab, px=0.0),
                 what="hybrid_loss with px=0 and no generative batch", atol=1e-5,
                 hint="px = 0 trains the classifier only: compute only the cross-entropy.")
    return ("the loss and every parameter's gradient match for the official weights, other weights with L2, no "
            "label smoothing, per-example weights; a term with weight 0 is skipped (pyx=0 without x_cls, px=0 "
            "without x0).")


# ---------------------------------------------------------------------------------------------------------------
# hybrid_batches: the random inputs of a training step, from two "loaders"
# ---------------------------------------------------------------------------------------------------------------
def _batches(self_ref, xb, x_train, y_train, T, generator, *, pyx=1.0, cls_batch=None, augment=True, order="tn",
             labels="same", low=0, aug=True):
    """hybrid_batches with one thing done differently (the common body of the wrong versions below)."""
    dev, g_dev = xb.device, generator.device
    draws = {}
    for what in order:
        if what == "t":
            draws["t"] = torch.randint(low, T + low, (xb.shape[0],), generator=generator, device=g_dev).to(dev)
        else:
            draws["n"] = torch.randn(xb.shape, generator=generator, device=g_dev).to(dev, xb.dtype)
    x_cls = y_cls = None
    if pyx:
        idx = torch.randint(0, len(x_train), (cls_batch or xb.shape[0],), generator=generator, device=g_dev)
        x_cls = x_train[idx]
        x_cls = self_ref.shift_augment(x_cls, generator) if augment and aug else x_cls
        if labels == "redrawn":
            idx = torch.randint(0, len(x_train), (cls_batch or xb.shape[0],), generator=generator, device=g_dev)
        x_cls, y_cls = x_cls.to(dev), y_train[idx].to(dev)
    return draws["t"], draws["n"], x_cls, y_cls


def _genvit_ref():
    return reference_module("genvit")


@mistake("genvit.hybrid_batches", "the labels come from their own random indices, so y_cls does not belong to "
                                  "x_cls (index images and labels with the same draw)")
def _(*args, **kwargs):
    return _batches(_genvit_ref(), *args, labels="redrawn", **kwargs)


@mistake("genvit.hybrid_batches", "the classification batch is not shift-augmented (shift_augment(x_cls, generator) "
                                  "when augment)")
def _(*args, **kwargs):
    return _batches(_genvit_ref(), *args, aug=False, **kwargs)


@mistake("genvit.hybrid_batches", "the timesteps run from 1 to T; they are uniform over {0, ..., T − 1}")
def _(*args, **kwargs):
    return _batches(_genvit_ref(), *args, low=1, **kwargs)


@mistake("genvit.hybrid_batches", "the noise is drawn before the timesteps (the order is t, noise, the "
                                  "classification indices, the augmentation)")
def _(*args, **kwargs):
    return _batches(_genvit_ref(), *args, order="nt", **kwargs)


def _draw(fn, args, kwargs, seed):
    with torch.no_grad():
        return fn(*args, torch.Generator().manual_seed(seed), **kwargs)


@exercise("genvit.hybrid_batches")
def check_hybrid_batches(impl, ref):
    from course.grader.checks.kit import mistakes

    with seeded(740):
        x_train, y_train = torch.randn(40, 1, 6, 6), torch.randint(0, 10, (40,))
        xb = torch.randn(4, 1, 6, 6)
    cases = ((dict(), "the defaults"), (dict(cls_batch=7, augment=False), "cls_batch=7, augment=False"),
             (dict(pyx=0.0), "pyx=0"))
    for k, (kwargs, label) in enumerate(cases):
        args = (xb, x_train, y_train, 50)
        want = _draw(ref.hybrid_batches, args, kwargs, 750 + k)
        got = _draw(impl.hybrid_batches, args, kwargs, 750 + k)
        expect(isinstance(got, tuple) and len(got) == 4, f"hybrid_batches ({label}) should return a tuple (t, noise, "
               f"x_cls, y_cls), got {type(got).__name__}" + (f" of {len(got)}" if isinstance(got, tuple) else "") + ".")
        wrong = {m.name: _draw(m.code, args, kwargs, 750 + k) for m in mistakes("genvit.hybrid_batches")}
        for i, name in enumerate(("t", "noise", "x_cls", "y_cls")):
            if want[i] is None:
                expect(got[i] is None, f"hybrid_batches ({label}): {name} should be None when pyx = 0 (no "
                       "classification term, no batch for it).")
                continue
            expect_close(got[i], want[i], what=f"hybrid_batches ({label}): {name}", atol=0, rtol=0,
                         mistakes={m: w[i] for m, w in wrong.items() if w[i] is not None})
    return ("t, noise and an independent, shift-augmented labelled batch drawn from the generator in the reference's "
            "order; cls_batch, augment=False and pyx = 0 (no batch) too.")

# ---------------------------------------------------------------------------------------------------------------
# Hints on request (`hint("name")`, `python -m course hint name`): level 1 a nudge, the only one a failed check
# quotes; the last close to the recipe.
# ---------------------------------------------------------------------------------------------------------------
hints("genvit.GenViT.forward",
      "GenViT's time modulation is per token: time_layer gives one scale and one shift for each of the N + 1 "
      "tokens, broadcast over the D channels, applied to the residual stream before each sub-block.",
      "Tokens [CLS, patch_embed(patchify(x))] + pos_embedding; temb = time_mlp(t) (none when t is None); per "
      "block scale, shift = time_layer(temb) split in two (scale first), each (B, N+1, 1).",
      "h = h · (1 + scale) + shift; h = h + attn(norm1(h)); again the modulation when ffn_time; h = h + "
      "mlp(norm2(h)); return_tokens returns h, else recon_head on h[:, 1:] and unpatchify.")
hints("genvit.HybViT.classify",
      "The classifier runs the shared network without a timestep and reads one token.",
      "GenViT.forward(self, x, None, return_tokens=True), then mlp_head on the CLS token (index 0).")
hints("genvit.HybViT.denoise",
      "The generative head is the shared network itself, run with the timestep as it is given.",
      "GenViT.forward(self, x_t, t).")
hints("genvit.hybrid_loss",
      "Two batches, two terms: the diffusion term on noised x0 (L1 on ε by default), the cross-entropy on the "
      "clean (x_cls, y_cls); a term whose weight is 0 is not computed.",
      "x_t = q_sample(x0, t, noise, alphas_cumprod); the denoiser is model.denoise, the classifier "
      "model.classify; label_smoothing goes to the cross-entropy.",
      "px · L1(model.denoise(x_t, t), noise) + pyx · cross_entropy(model.classify(x_cls), y_cls, "
      "label_smoothing=...).")
hints("genvit.hybrid_batches",
      "Two loaders, one generator: the generative batch is the loop's own xb; the classification batch is drawn "
      "afresh from the training set. Each image must keep its own label, and every draw happens on the "
      "generator's device in the documented order.",
      "t with torch.randint(0, T, ...), noise with torch.randn(xb.shape, ...), both with generator=generator and "
      "device=generator.device, then moved to xb's device; the batch: one randint of indices into x_train.",
      "x_cls = x_train[idx], shift_augment(x_cls, generator) when augment, y_cls = y_train[idx]; None, None when "
      "pyx = 0.")

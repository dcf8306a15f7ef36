# This file is generated from solutions/genvit.py by `python -m course generate`.
# Fill in each block that raises NotImplementedError, then run `check("genvit")` in the notebook
# or `python -m course check genvit` in a shell.
"""Chapter 4: GenViT and HybViT, one Vision Transformer that both generates and classifies.

Paper: Yang, Shih, Fu, Zhao & Ji, "Your ViT is Secretly a Hybrid Discriminative-Generative Diffusion Model" (arXiv
2208.07791, 2022); official code sndnyang/Diffusion_ViT (`models/DifViT.py`, `models/vit.py`, `gevit_main.py`).
GenViT is a plain ViT turned into an ε-predictor; HybViT is the *same* network with a classification head on its CLS
token, trained on a weighted sum of the diffusion loss and the cross-entropy.

The official model is not a DiT. The differences the chapter teaches, all kept here:

- patches are cut by a rearrange and embedded by a **Linear** (not a Conv2d); the position embedding is learned;
- a learned **CLS token** is prepended in GenViT too (the generator ignores it at the output);
- time features are [sin, cos] (sin first) with frequencies exp(−ln(10⁴) · i / (half − 1)) of the raw integer t;
- time enters every block as **one scalar scale and one scalar shift per token**, applied to the residual stream
  x ← x · (1 + scale) + shift before attention (and again before the MLP): no adaLN, no gate, no zero-init;
- no final LayerNorm before the reconstruction head; the head predicts ε only;
- the classifier reads the CLS token through LayerNorm → Linear and runs **without any timestep** (t = None skips
  the modulation, which is not the same as t = 0);
- the diffusion loss is **L1** on ε, and HybViT's loss is 100 · L_diff + 1 · CE on two different batches.

    x ─ patchify ─ Linear ─ [CLS; tokens] + pos ─ depth × block ─┬─ tokens[1:] ─ Linear ─ unpatchify ─ ε̂
                                                                 └─ CLS ─ LayerNorm ─ Linear ─ logits (HybViT)
    block:  (s, b) = SiLU ─ Linear(time features): one scalar per token, each (B, N+1, 1)
            x = x · (1 + s) + b;  x = x + Attn(LN(x));  x = x · (1 + s) + b;  x = x + MLP(LN(x))
    time features = Linear ─ GELU ─ Linear of [sin, cos](t): (B, 4(N+1));  the classifier runs with t = None

Parameter names are the course's; `from_official_state_dict` maps an official `ViT` state dict onto them, after
which `HybViT` gives the official model's outputs (tests/test_genvit.py).
"""
from __future__ import annotations

import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from course.lab.train import min_snr_weights

from .diffusion import q_sample  # noqa: F401 - used by the exercises
from .layers import Mlp, patchify, unpatchify  # noqa: F401 - used by the exercises


# ---------------------------------------------------------------------------------------------------------------
# Given: the time features, the attention layer and one block's layers
# ---------------------------------------------------------------------------------------------------------------
def genvit_time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """GenViT's sinusoid of the raw integer timestep (official `SinusoidalPosEmb`).

    half = dim // 2, freqs_i = exp(−ln(10⁴) · i / (half − 1)), embedding = [sin(t · freqs), cos(t · freqs)]:
    **sin first**, and `half − 1` in the denominator (so the last frequency is exactly 10⁻⁴), unlike the DiT/ADM
    embedding of chapter 1 (cos first, `half`). t: (B,) -> (B, 2 · half) float32.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) / (half - 1) * torch.arange(half, dtype=torch.float32, device=t.device))
    args = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([args.sin(), args.cos()], dim=-1)


class SinusoidalPosEmb(nn.Module):
    """`genvit_time_embedding` as a module, the first layer of `GenViT.time_mlp` (no parameters)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return genvit_time_embedding(t, self.dim)


class Attention(nn.Module):
    """Multi-head self-attention as in the official code (SL-ViT's): `to_qkv` is Linear(D, 3 · heads · dim_head)
    *without* bias, chunked into q, k, v and split as (heads, dim_head); scale dim_head^-½; `to_out` is
    Linear(heads · dim_head, D) with bias. The inner width heads · dim_head need not equal D."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        inner = heads * dim_head
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        q, k, v = (u.reshape(B, N, self.heads, self.dim_head).transpose(1, 2)
                   for u in self.to_qkv(x).chunk(3, dim=-1))  # (B, h, N, d) each
        out = F.scaled_dot_product_attention(q, k, v, scale=self.dim_head**-0.5)  # (B, h, N, d)
        return self.to_out(out.transpose(1, 2).reshape(B, N, self.heads * self.dim_head))


class GenViTBlock(nn.Module):
    """The layers of one GenViT block; `GenViT.forward` runs them (that is the exercise).

    - `time_layer`: SiLU → Linear(4(N+1), 2(N+1)): from the time features, one scale and one shift per token;
    - `norm1`, `attn`: the pre-norm attention sub-block (LayerNorm with affine, eps 1e-5);
    - `norm2`, `mlp`: the pre-norm MLP sub-block, D → mlp_ratio · D → D with exact GELU.
    """

    def __init__(self, dim: int, num_tokens: int, heads: int, dim_head: int, mlp_ratio: int, time_dim: int):
        super().__init__()
        self.time_layer = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, 2 * num_tokens))
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dim_head)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * mlp_ratio, approximate="none")


def init_weights(module: nn.Module) -> None:
    """The official initialisation (`models/vit.py: init_weights`): xavier-normal Linear weights, zero biases,
    LayerNorm weight 1 and bias 0."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_normal_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# ---------------------------------------------------------------------------------------------------------------
# GenViT: the generator
# ---------------------------------------------------------------------------------------------------------------
class GenViT(nn.Module):
    """GenViT, an unconditional ε-predictor ε_θ(x_t, t) built from a plain ViT (official class `ViT`).

    Layers (names the course's; `from_official_state_dict` maps the official ones):
    - `patch_embed`: Linear(p·p·C, D) on `patchify(x, p)`: (B, N, D), N = (H/p)·(W/p);
    - `cls_token` (1, 1, D) and the learned `pos_embedding` (1, N+1, D), both drawn from N(0, 1) as officially;
    - `time_mlp`: SinusoidalPosEmb(D) → Linear(D, 4(N+1)) → GELU → Linear(4(N+1), 4(N+1));
    - `blocks`: `depth` × `GenViTBlock`; `ffn_time` re-applies each block's modulation before its MLP (the
      official `--ffnt 1`, the default of the current scripts);
    - `recon_head`: Linear(D, p·p·C) per patch token, no LayerNorm before it.
    The model is unconditional, like the paper's GenViT: `y` is accepted (the course's samplers call
    `model(x, t, y)`) and ignored.
    """

    def __init__(self, img_size: int = 8, patch_size: int = 2, in_channels: int = 1, dim: int = 64, depth: int = 4,
                 heads: int = 4, dim_head: int = 16, mlp_ratio: int = 2, ffn_time: bool = True):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size ({img_size}) must be a multiple of patch_size ({patch_size})")
        self.img_size, self.patch_size, self.in_channels, self.dim = img_size, patch_size, in_channels, dim
        self.ffn_time = ffn_time
        self.num_patches = (img_size // patch_size) ** 2
        num_tokens = self.num_patches + 1  # the CLS token too
        patch_dim = patch_size * patch_size * in_channels
        time_dim = 4 * num_tokens
        self.time_mlp = nn.Sequential(SinusoidalPosEmb(dim), nn.Linear(dim, time_dim), nn.GELU(),
                                      nn.Linear(time_dim, time_dim))
        self.patch_embed = nn.Linear(patch_dim, dim)
        self.recon_head = nn.Linear(dim, patch_dim)
        self.pos_embedding = nn.Parameter(torch.randn(1, num_tokens, dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.blocks = nn.ModuleList([GenViTBlock(dim, num_tokens, heads, dim_head, mlp_ratio, time_dim)
                                     for _ in range(depth)])
        self.apply(init_weights)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None, y: torch.Tensor | None = None, *,
                return_tokens: bool = False) -> torch.Tensor:
        """x: (B, C, H, W) with H = W = img_size; t: (B,) integer timesteps or None -> ε̂: (B, C, H, W).

        The official conventions (the module docstring draws the block): the sequence is [CLS, N patch tokens] with
        `pos_embedding` over all N + 1; each block's `time_layer`, fed with `time_mlp(t)`, gives per image the N + 1
        scales, one per token in the sequence's order, then the N + 1 shifts, each one number per token broadcast
        over the D channels; the second modulation only with `ffn_time`, none at all when t is None;
        `return_tokens=True` returns the (B, N+1, D) sequence after the blocks (what HybViT's classifier reads),
        otherwise the patch tokens alone are decoded back to the image grid. `y` is ignored (the model is
        unconditional). `hint("genvit.GenViT.forward")` when stuck.
        """
        raise NotImplementedError('Exercise `genvit.GenViT.forward` is not done yet: write it in course/genvit.py (book/04_genvit.ipynb, section "Exercise: genvit.GenViT.forward").')


# ---------------------------------------------------------------------------------------------------------------
# HybViT: the same network with a classification head
# ---------------------------------------------------------------------------------------------------------------
class HybViT(GenViT):
    """HybViT: GenViT plus `mlp_head` = LayerNorm(D) → Linear(D, num_classes) on the CLS token.

    One network, two heads, as the official `ViT(img, t=None, recon=False)`: `model(x)` (t = None) gives the class
    logits, `model(x_t, t)` the noise prediction, so the course's samplers work on it unchanged.
    """

    def __init__(self, img_size: int = 8, patch_size: int = 2, in_channels: int = 1, dim: int = 64, depth: int = 4,
                 heads: int = 4, dim_head: int = 16, mlp_ratio: int = 2, ffn_time: bool = True,
                 num_classes: int = 10):
        super().__init__(img_size, patch_size, in_channels, dim, depth, heads, dim_head, mlp_ratio, ffn_time)
        self.num_classes = num_classes
        self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))
        self.mlp_head.apply(init_weights)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of clean images, (B, C, H, W) -> (B, num_classes).

        `mlp_head` (LayerNorm → Linear) reads the CLS token of the shared network run with **no timestep** (no time
        modulation anywhere, which differs from t = 0). Run the generator's own forward, `GenViT.forward(self,
        ...)`: `self(x)` would come back here. `hint("genvit.HybViT.classify")` when stuck.
        """
        raise NotImplementedError('Exercise `genvit.HybViT.classify` is not done yet: write it in course/genvit.py (book/04_genvit.ipynb, section "Exercise: genvit.HybViT.classify").')

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The generative head: ε̂ = ε_θ(x_t, t), (B, C, H, W), from the same network with its time modulation, t
        the raw integer timesteps, as in training. `hint("genvit.HybViT.denoise")` when stuck."""
        raise NotImplementedError('Exercise `genvit.HybViT.denoise` is not done yet: write it in course/genvit.py (book/04_genvit.ipynb, section "Exercise: genvit.HybViT.denoise").')

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """t = None: class logits (`classify`); otherwise the noise prediction (`denoise`). `y` is ignored."""
        if t is None:
            return self.classify(x)
        return self.denoise(x, t)


# ---------------------------------------------------------------------------------------------------------------
# The hybrid loss
# ---------------------------------------------------------------------------------------------------------------
def hybrid_loss(model: HybViT, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, x_cls: torch.Tensor | None,
                y_cls: torch.Tensor | None, alphas_cumprod: torch.Tensor, *, px: float = 100.0, pyx: float = 1.0,
                loss_type: str = "l1", label_smoothing: float = 0.1,
                weights: torch.Tensor | None = None) -> torch.Tensor:
    """HybViT's objective (gevit_main.py): px · L_diff + pyx · L_CE, one scalar, on **two different batches**.

    - L_diff on the generative batch x0 (B, C, H, W), noised to x_t at the timesteps t with `noise`: the mean
      absolute error between `model.denoise`'s ε̂ and ε (`loss_type="l1"`, the official default) or the mean
      squared error (`"l2"`, DDPM's); with `weights` (B,), each example's mean error is weighted and the weighted
      errors averaged over the batch (Min-SNR-γ's weights, chapter 2; not in the official code);
    - L_CE on the classification batch (x_cls, y_cls), clean images: the cross-entropy of `model.classify`'s
      logits with `label_smoothing` (0.1 officially).
    A term whose weight is 0 is not computed (its batch may be None): px = 0 trains a classifier only, pyx = 0 a
    generator only (the paper's GenViT). The official weights are px = 100, pyx = 1.
    """
    raise NotImplementedError('Exercise `genvit.hybrid_loss` is not done yet: write it in course/genvit.py (book/04_genvit.ipynb, section "Exercise: genvit.hybrid_loss").')


# ---------------------------------------------------------------------------------------------------------------
# Given: the official configuration and its weights, training and measuring helpers
# ---------------------------------------------------------------------------------------------------------------
def genvit_cifar10(**kwargs) -> HybViT:
    """The paper's CIFAR-10 model (create_model('difvit')): 32×32×3, patch 4, D 384, depth 9, 12 heads of 32, MLP
    ratio 2, 10 classes: 11,185,068 parameters, the count in the official logs."""
    config = dict(img_size=32, patch_size=4, in_channels=3, dim=384, depth=9, heads=12, dim_head=32, mlp_ratio=2,
                  num_classes=10)
    return HybViT(**{**config, **kwargs})


_OFFICIAL_KEYS = [  # (official pattern, course name); {i} is the block index
    (r"to_patch_embedding\.1\.", "patch_embed."),
    (r"recon_head\.0\.", "recon_head."),
    (r"transformer\.time_layers\.(\d+)\.1\.", r"blocks.\1.time_layer.1."),
    (r"transformer\.layers\.(\d+)\.0\.norm\.", r"blocks.\1.norm1."),
    (r"transformer\.layers\.(\d+)\.0\.fn\.to_qkv\.", r"blocks.\1.attn.to_qkv."),
    (r"transformer\.layers\.(\d+)\.0\.fn\.to_out\.0\.", r"blocks.\1.attn.to_out."),
    (r"transformer\.layers\.(\d+)\.1\.norm\.", r"blocks.\1.norm2."),
    (r"transformer\.layers\.(\d+)\.1\.fn\.net\.0\.", r"blocks.\1.mlp.fc1."),
    (r"transformer\.layers\.(\d+)\.1\.fn\.net\.3\.", r"blocks.\1.mlp.fc2."),
]


def from_official_state_dict(state_dict: dict) -> dict:
    """Rename the keys of an official `ViT` state dict (models/DifViT.py) to this module's names:

        to_patch_embedding.1.*                 -> patch_embed.*         (Linear after the rearrange)
        recon_head.0.*                         -> recon_head.*          (Linear before the rearrange)
        transformer.time_layers.i.1.*          -> blocks.i.time_layer.1.*
        transformer.layers.i.0.norm.*          -> blocks.i.norm1.*      (PreNorm of the attention)
        transformer.layers.i.0.fn.to_qkv.*     -> blocks.i.attn.to_qkv.*
        transformer.layers.i.0.fn.to_out.0.*   -> blocks.i.attn.to_out.*
        transformer.layers.i.1.norm.*          -> blocks.i.norm2.*      (PreNorm of the FeedForward)
        transformer.layers.i.1.fn.net.0/3.*    -> blocks.i.mlp.fc1/fc2.*
    `time_mlp.*`, `pos_embedding`, `cls_token` and `mlp_head.*` keep their names. Values are not changed: the
    layouts already agree (the official rearranges equal `patchify`/`unpatchify`). A `module.` prefix (from
    DataParallel) is removed. For `GenViT`, drop the `mlp_head.*` keys or load with strict=False.
    """
    out = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        for pattern, name in _OFFICIAL_KEYS:
            if re.match(pattern, key):
                key = re.sub(pattern, name, key, count=1)
                break
        out[key] = value
    return out


def shift_augment(x: torch.Tensor, generator: torch.Generator | None = None, pad: int = 1) -> torch.Tensor:
    """The classification batch's augmentation, in miniature: each image shifted by up to `pad` pixels (padding
    with the background −1). The official CIFAR recipe uses flips, random crops, AutoAugment and random erasing,
    plus Mixup/CutMix; digits are not flip-invariant, so only the shift (RandomCrop's effect) is kept."""
    B, _, H, W = x.shape
    padded = F.pad(x, (pad,) * 4, value=-1.0)
    dev = generator.device if generator is not None else torch.device("cpu")
    dy, dx = torch.randint(0, 2 * pad + 1, (2, B), generator=generator, device=dev).tolist()
    return torch.stack([padded[i, :, dy[i]:dy[i] + H, dx[i]:dx[i] + W] for i in range(B)])


def hybrid_batches(xb: torch.Tensor, x_train: torch.Tensor, y_train: torch.Tensor, T: int,
                   generator: torch.Generator, *, pyx: float = 1.0, cls_batch: int | None = None,
                   augment: bool = True):
    """The random inputs of one HybViT training step, drawn as the official loop draws them from its two loaders.

    xb: (B, C, H, W), the training loop's batch: the generative batch. x_train (N, C, H, W), y_train (N,): the
    labelled training set (it may live on another device than xb). T: the diffusion's number of timesteps.
    generator: the loop's torch.Generator, which may live on another device than xb (draw on its device, then
    move). Returns (t, noise, x_cls, y_cls), all on xb's device: t (B,) int64 timesteps uniform over {0, ..., T − 1};
    noise, standard normal, of xb's shape and dtype; and, when pyx ≠ 0, a classification batch of `cls_batch`
    (default B) labelled training images drawn uniformly with replacement, independently of xb, shift-augmented
    with `shift_augment(images, generator)` when `augment`; x_cls = y_cls = None when pyx = 0. The draws come from
    `generator` in this order: t, noise, the classification batch's indices, its augmentation (the reference's
    order, so that a run is reproducible).
    """
    raise NotImplementedError('Exercise `genvit.hybrid_batches` is not done yet: write it in course/genvit.py (book/04_genvit.ipynb, section "Exercise: genvit.hybrid_batches").')


class ThroughForward:
    """A HybViT as the training loop's loss sees it: its two heads reached through `model(...)`.

    `train(compile=...)` compiles a model's `forward` (its `__call__`), and a loss that called `model.denoise` or
    `model.classify` directly would run them uncompiled. HybViT's `forward` dispatches on t (None: `classify`),
    so `denoise(x_t, t)` = `model(x_t, t)` and `classify(x)` = `model(x)`, the same numbers through the compiled
    path. Anything else (`model(...)` itself, attributes) is the model's."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        return self.model(*args, **kwargs)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model(x_t, t)  # (B, C, H, W)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)  # (B, num_classes)

    def __getattr__(self, name: str):
        if name == "model":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.model, name)


def make_hybrid_loss_fn(x_train: torch.Tensor, y_train: torch.Tensor, diffusion, *, px: float = 100.0,
                        pyx: float = 1.0, loss_type: str = "l1", cls_batch: int | None = None,
                        label_smoothing: float = 0.1, augment: bool = True, min_snr_gamma: float | None = None):
    """A `loss_fn(model, xb, yb, generator)` for `course.lab.train.train`: `xb` (the loop's batch) is the generative
    batch, and a second, independent batch of `cls_batch` labelled images (shift-augmented) is drawn from
    (x_train, y_train) with the same generator for the classification term, as the official loop does with its
    two loaders. Timesteps are uniform over {0..T−1}. With `min_snr_gamma`, the diffusion term weights each example
    by Min-SNR-γ (`course.lab.train.min_snr_weights`, the course's recipe; the official loss is unweighted). The loss
    reaches the model's heads through its `forward` (`ThroughForward`), so that `train(compile=...)` compiles both."""
    def loss_fn(model, xb, yb, generator):
        t, noise, x_cls, y_cls = hybrid_batches(xb, x_train, y_train, diffusion.T, generator, pyx=pyx,
                                                cls_batch=cls_batch, augment=augment)
        alphas_cumprod = diffusion.alphas_cumprod.to(xb.device)
        weights = min_snr_weights(alphas_cumprod, t, min_snr_gamma) if px and min_snr_gamma else None
        return hybrid_loss(ThroughForward(model), xb, t, noise, x_cls, y_cls, alphas_cumprod, px=px, pyx=pyx,
                           loss_type=loss_type, label_smoothing=label_smoothing, weights=weights)

    return loss_fn


@torch.no_grad()
def predict_proba(model: HybViT, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """Softmax class probabilities of `model.classify` (evaluation mode), (N, num_classes)."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    probs = torch.cat([model.classify(x[i:i + batch].to(dev)).float().softmax(-1).cpu()
                       for i in range(0, len(x), batch)])
    model.train(was_training)
    return probs


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 10) -> float:
    """ECE (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017): bin the predictions by confidence
    (max probability) into `n_bins` equal-width bins and average |accuracy − confidence| over the bins, weighted by
    the fraction of predictions in each."""
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels).float()
    edges = torch.linspace(0, 1, n_bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            ece += inside.float().mean().item() * abs(correct[inside].mean().item() - confidence[inside].mean().item())
    return ece

"""Studies of record: each chapter's ablations declared once, as data, and run by one runner.

A `Study` names the paper's claim, the variants that test it (a builder and its arguments), the seeds, and the
budget per profile: training steps and the milestones at which each run is measured (the held-out loss at every
milestone, the judge's class accuracy and FD of unguided and guided samples at the last). Every run trains with the
chapters' headline recipe (`course.lab.experiments.RECIPE`), so the models compared have learned.

    python -m course study ch3            # run (or resume) the study, write results/ch3.json and results/ch3.png
    python -m course study --status       # every study: recorded, missing, or stale; exit 1 unless all current

Chapters 4 and 6 declare studies of their own kind, whose variants differ in the loss or the data as well as the
model and whose measures differ: `HybridStudy` (a classifier and an unconditional generator in one ViT) and
`LatentStudy` (DiTs on the shapes' pixels or latents). `run` runs any study.

A record carries its provenance (commit, a hash of the code the study ran, profile, device, torch version, date,
wall time), every run's curve and its seed. It is written after every finished run, and each run checkpoints as it
trains, so an interrupted study resumes where it stopped. `verdict(record, a, b)` words a comparison from a record:
seed-paired differences, a stalled run named instead of averaged in, and no ranking of models that have not learned.
"""
from __future__ import annotations

import ast
import hashlib
import inspect
import json
import os
import platform
import subprocess
import textwrap
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from course.grader.exercises import ROOT, SOLUTIONS_DIR
from course.lab.train import slug

RESULTS_DIR = ROOT / "results"
LEARNED_ACC = 0.3  # guided class accuracy below which a model "has not learned yet" and no ranking is worded
# A run whose final held-out loss is this many times its design's median is an outlier: it stalled somewhere. The
# held-out loss is the plain ε-loss, while the runs train on the Min-SNR-weighted one, so such a run can still draw
# the right digits (it may have neglected the nearly clean timesteps): it is named and left out of the comparisons.
STALLED = 1.5


@dataclass(frozen=True)
class Variant:
    name: str
    build: str  # a key of BUILDS
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Budget:
    steps: int
    milestones: tuple[int, ...]  # held-out loss at each; accuracy and FD at the last (= steps)
    seeds: tuple[int, ...]
    n_per_class: int = 20  # samples per class for accuracy and FD
    sample_steps: int = 20  # DDIM steps
    loss_repeats: int = 2  # timesteps per held-out digit for the held-out loss


@dataclass(frozen=True)
class Study:
    key: str  # "ch3"
    chapter: str  # "03_uvit"
    paper: str
    claim: str  # the paper's claim, as the chapter states it
    variants: tuple[Variant, ...]
    baseline: str  # the variant the others are compared to
    budgets: dict  # profile -> Budget
    modules: tuple[str, ...] = ()  # the exercise modules its models are built from (their code is in the hash)
    recipe: dict = field(default_factory=dict)  # overrides of RECIPE

    task = "digits"  # what its runs train on and measure (a class attribute: not part of the declaration)

    def budget(self, profile: str) -> Budget:
        return self.budgets[profile]

    @staticmethod
    def forward(model, x, t, y):
        """The call whose output and gradients fingerprint a variant's model."""
        return model(x, t, y)

    def measuring_code(self) -> list:
        return _measuring_code()

    def weights(self, profile: str) -> list:
        """Trained helpers besides the digit judge whose weights decide the numbers of a record of `profile` (their
        tensors are hashed)."""
        return []

    def floor(self, budget: Budget) -> float:
        """The FD of as many real images as a run's samples: the best a model can score."""
        from course.lab.metrics import fd_floor

        return fd_floor(8, n=10 * budget.n_per_class)

    def declaration(self, profile: str) -> dict:
        """The study as data (what a record is checked against)."""
        return {"key": self.key, "claim": self.claim, "baseline": self.baseline,
                "variants": [asdict(v) for v in self.variants], "budget": asdict(self.budget(profile)),
                "recipe": self.recipe}

    def show(self, profile: str | None = None) -> str:
        """The declaration, as a reader sees it in the chapter."""
        from course.lab.config import PROFILE
        from course.lab.experiments import RECIPE, SAMPLE_ETA

        b = self.budget(profile or PROFILE.name)
        recipe = {**RECIPE, **self.recipe}
        lines = [f"study {self.key}: {self.claim} ({self.paper})",
                 "  variants: " + "; ".join(f"{v.name} = {v.build}({_kwargs(v.kwargs)})" for v in self.variants),
                 f"  seeds {list(b.seeds)}, {b.steps} steps each, held-out loss at {list(b.milestones)}; "
                 f"{10 * b.n_per_class} samples ({b.sample_steps} DDIM steps, η = {SAMPLE_ETA:g}) at w = 1 and w = 2 "
                 "at the end",
                 "  recipe: " + _kwargs(recipe)]
        return "\n".join(lines)


def _kwargs(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


# --------------------------------------------------------------------------------------------------------------
# Builders: what a variant's `build` names (from the learner's modules, or the reference standing in for them)
# --------------------------------------------------------------------------------------------------------------
def _build_dit(name="DiT-Ti/2", **kwargs):
    from course.dit import create_dit

    return create_dit(name, **kwargs)


def _build_conditioning_dit(conditioning="adaLN-Zero", **kwargs):
    from course.lab.conditioning import ConditioningDiT

    shape = dict(depth=4, hidden_size=128, num_heads=4, patch_size=2, input_size=8, in_channels=1, num_classes=10,
                 learn_sigma=False, class_dropout_prob=0.1)  # DiT-Ti/2, the chapter's model
    return ConditioningDiT(conditioning, **{**shape, **kwargs})


def _build_uvit(**kwargs):
    from course.uvit import create_uvit

    return create_uvit(**kwargs)


def _build_adaln_uvit(**kwargs):
    from course.uvit import COURSE_DEFAULTS, AdaLNUViT

    return AdaLNUViT(**{**COURSE_DEFAULTS, **kwargs})


def _build_diffit(name="DiffiT-T", **kwargs):
    from course.diffit import create_diffit

    return create_diffit(name, **kwargs)


def _build_unet(**kwargs):
    from course.unet import UNet

    return UNet(**{**dict(in_channels=1, channels=(32, 64), num_res_blocks=1, num_classes=10, num_heads=2),
                   **kwargs})


def _build_vit(**kwargs):
    from course.vit import ViTDenoiser

    return ViTDenoiser(**{**dict(img_size=8, patch_size=2, in_channels=1, hidden_size=96, depth=3, num_heads=3,
                                 num_classes=10), **kwargs})


# Chapter 4's small model: 8×8×1, patch 2, width 64, 4 blocks of 4 heads of 16, MLP ratio 2 (17 tokens)
HYBRID_SHAPE = dict(img_size=8, patch_size=2, in_channels=1, dim=64, depth=4, heads=4, dim_head=16, mlp_ratio=2,
                    num_classes=10)


def _build_hybvit(**kwargs):
    from course.genvit import HybViT

    return HybViT(**{**HYBRID_SHAPE, **kwargs})


def _build_unconditional_dit(**kwargs):
    from course.lab.conditioning import UnconditionalDiT

    shape = dict(input_size=8, patch_size=2, in_channels=1, hidden_size=64, depth=4, num_heads=4, mlp_ratio=2,
                 num_classes=10, learn_sigma=False)  # HybViT's width, depth, heads and MLP ratio
    return UnconditionalDiT(**{**shape, **kwargs})


BUILDS = {"dit": _build_dit, "conditioning-dit": _build_conditioning_dit, "uvit": _build_uvit,
          "adaln-uvit": _build_adaln_uvit, "diffit": _build_diffit, "unet": _build_unet, "vit": _build_vit,
          "hybvit": _build_hybvit, "unconditional-dit": _build_unconditional_dit}


# --------------------------------------------------------------------------------------------------------------
# Chapter 4: one network, two tasks. Its variants differ in the loss as well as in the model, and it measures a
# classifier (test accuracy, calibration) and an unconditional generator (FD), not class-conditional samples.
# --------------------------------------------------------------------------------------------------------------
# The official recipe shrunk (chapter 4): AdamW with weight decay 0.05, the gradient clipped at 1.0 (after the ×100),
# for the CPU budget a higher learning rate with a short warm-up than the official one, and the course's cool-down
# (`course.lab.experiments.RECIPE`), with the final weights evaluated instead of an EMA.
HYBRID_RECIPE = dict(batch_size=64, lr=2e-3, weight_decay=0.05, warmup=30, grad_clip=1.0, cooldown=0.5,
                     ema_decay=0.0)
LEARNED_FD = 20.0  # an unconditional generator whose FD is this many times the floor has not learned yet


@dataclass(frozen=True)
class HybridVariant(Variant):
    loss: dict = field(default_factory=dict)  # genvit.make_hybrid_loss_fn's px, pyx and loss_type


@dataclass(frozen=True)
class HybridStudy(Study):
    """Each variant trains with `genvit.make_hybrid_loss_fn(**variant.loss)` (px = 100, pyx = 1 unless it says
    otherwise). At every milestone the classifier's test accuracy (when pyx > 0) and the FD of `10 · n_per_class`
    unconditional samples (when px > 0) are measured; at the end also the classifier's ECE and the share of the
    rarest class among the samples, by the judge."""

    task = "hybrid"

    @staticmethod
    def forward(model, x, t, y):
        out = model.denoise(x, t).flatten(1)
        return torch.cat([out, model.classify(x)], 1) if hasattr(model, "classify") else out

    def show(self, profile: str | None = None) -> str:
        from course.lab.config import PROFILE

        b = self.budget(profile or PROFILE.name)
        lines = [f"study {self.key}: {self.claim} ({self.paper})",
                 "  variants: " + "; ".join(f"{v.name} = {v.build}({_kwargs(v.kwargs)}) trained on "
                                            f"hybrid_loss({_kwargs({'px': 100, 'pyx': 1, **v.loss})})"
                                            for v in self.variants),
                 f"  seeds {list(b.seeds)}, {b.steps} steps each; test accuracy and FD of {10 * b.n_per_class} "
                 f"unconditional samples ({b.sample_steps} DDIM steps) at {list(b.milestones)}",
                 "  recipe: " + _kwargs(self.recipe)]
        return "\n".join(lines)

    def measuring_code(self) -> list:
        from course.lab import data, metrics, train

        return [train.train, train.lr_factor, train.ema_update, metrics.fd_to_test, metrics.frechet_distance,
                metrics.fd_floor, metrics.real_images, metrics.load_judge, data.digits, run_hybrid_one,
                _measure_hybrid, run]


# --------------------------------------------------------------------------------------------------------------
# Chapter 6: DiTs on the 32×32 shapes, as pixels or as the latents of the course's autoencoders, class-conditional,
# with DiT's linear schedule. Its variants differ in the data as well as in the model.
# --------------------------------------------------------------------------------------------------------------
LATENT_SIZE = 32  # the shapes' side, in every profile, so that records compare


def _build_shapes_dit(space: str = "latents", patch_size: int = 2, **kwargs):
    from course.dit import DiT

    data = {"pixels": dict(input_size=LATENT_SIZE, in_channels=3),
            "latents": dict(input_size=LATENT_SIZE // 4, in_channels=4)}[space]  # f = 4, 4 channels
    shape = dict(hidden_size=96, depth=4, num_heads=4, num_classes=10, learn_sigma=False, class_dropout_prob=0.1)
    return DiT(patch_size=patch_size, **data, **{**shape, **kwargs})


BUILDS["shapes-dit"] = _build_shapes_dit


@dataclass(frozen=True)
class LatentVariant(Variant):
    data: dict = field(default_factory=dict)  # `shapes_data`'s arguments: {} for pixels


@dataclass(frozen=True)
class LatentStudy(Study):
    """Each variant trains on the shapes' pixels, or on their latents (the means of the course's autoencoder of
    `data["kl_weight"]`, brought to `data["spread"]` if given, times the scale s unless `data["scaled"]` is False:
    `shapes_data`), with the chapters' recipe. At every
    milestone the judge's class accuracy and the FD of unguided samples (decoded, for latents) are measured; at the
    end also of guided ones (w = 2)."""

    task = "latent"

    def show(self, profile: str | None = None) -> str:
        from course.lab.config import PROFILE
        from course.lab.experiments import RECIPE, SAMPLE_ETA

        b = self.budget(profile or PROFILE.name)
        lines = [f"study {self.key}: {self.claim} ({self.paper})",
                 "  variants: " + "; ".join(f"{v.name} = {v.build}({_kwargs(v.kwargs)}) on "
                                            + (f"latents({_kwargs(v.data)})" if v.data else "pixels")
                                            for v in self.variants),
                 f"  seeds {list(b.seeds)}, {b.steps} steps each; class accuracy and FD of {10 * b.n_per_class} "
                 f"unguided samples ({b.sample_steps} DDIM steps, η = {SAMPLE_ETA:g}) at {list(b.milestones)}, "
                 "and of guided (w = 2) ones at the end",
                 "  recipe: " + _kwargs({**RECIPE, "p_uncond": 0.0, **self.recipe}) + "; DiT's linear schedule"]
        return "\n".join(lines)

    @staticmethod
    def forward(model, x, t, y):
        side = LATENT_SIZE if model.in_channels == 3 else LATENT_SIZE // 4  # pixels, or latents (f = 4)
        x = torch.randn(2, model.in_channels, side, side, generator=torch.Generator().manual_seed(0))
        return model(x, t, y)

    def measuring_code(self) -> list:
        from course.lab import autoencoder, metrics, train

        return [train.train, train.lr_factor, train.diffusion_loss_fn, train.min_snr_weights, train.ema_update,
                metrics.evaluate, metrics.fd_to_test, metrics.frechet_distance, metrics.fd_floor, metrics.real_images,
                autoencoder.encode_all, shapes_data, run_latent_one, run]

    def weights(self, profile: str) -> list:
        """The shapes judge and the autoencoders of `profile` (the `ci` profile trains smaller ones): a record's
        state is checked against the helpers it was measured with, from any profile."""
        from course.lab.autoencoder import default_config, load_autoencoder
        from course.lab.metrics import load_judge

        kls = sorted({v.data["kl_weight"] for v in self.variants if v.data.get("kl_weight") is not None})
        return [load_judge(LATENT_SIZE, dataset="shapes", profile=profile).net,
                *(load_autoencoder(default_config(profile, size=LATENT_SIZE, kl_weight=w), verbose=False)[0]
                  for w in kls)]

    def floor(self, budget: Budget) -> float:
        from course.lab.metrics import fd_floor

        return fd_floor(LATENT_SIZE, dataset="shapes", n=10 * budget.n_per_class)


# --------------------------------------------------------------------------------------------------------------
# The studies
# --------------------------------------------------------------------------------------------------------------
def _budgets(cpu_steps: int, seeds=(0, 1, 2), n_per_class: int = 20) -> dict:
    milestones = (cpu_steps // 4, cpu_steps // 2, cpu_steps)
    return {"ci": Budget(4, (2, 4), (0, 1), n_per_class=1, sample_steps=2, loss_repeats=1),
            "cpu": Budget(cpu_steps, milestones, tuple(seeds), n_per_class=n_per_class),
            "gpu": Budget(cpu_steps, milestones, tuple(seeds), n_per_class=50)}


STUDIES = {s.key: s for s in [
    Study("ch2", "02_dit", "DiT, Scalable Diffusion Models with Transformers (ICCV 2023), §3.2 and Figure 5",
          "adaLN-Zero conditions better than in-context tokens, cross-attention and adaLN without the zero gate",
          tuple(Variant(c, "conditioning-dit", {"conditioning": c})
                for c in ("adaLN-Zero", "adaLN", "cross-attention", "in-context")),
          "adaLN-Zero", _budgets(1150), modules=("layers", "vit", "dit")),
    Study("ch2-scaling", "02_dit", "DiT, Scalable Diffusion Models with Transformers (ICCV 2023), §5 and Figures 6 "
          "and 9", "more Gflops, from depth and width or from smaller patches, give a lower loss (and FID) at the "
          "same number of steps", tuple(Variant(n, "dit", {"name": n})
                                        for n in ("DiT-XXS/2", "DiT-XS/4", "DiT-XS/2", "DiT-Ti/2")),
          "DiT-Ti/2", _budgets(1150), modules=("layers", "vit", "dit")),
    Study("ch3", "03_uvit", "U-ViT, All are Worth Words (CVPR 2023), §3 and Figure 2(a)",
          "long skip connections matter: the U-ViT without them learns worse, and concatenation beats addition",
          (Variant("U-ViT", "uvit"), Variant("skips by addition", "uvit", {"skip": "add"}),
           Variant("no long skips", "uvit", {"skip": False})),
          "U-ViT", _budgets(2400), modules=("layers", "dit", "uvit")),
    Study("ch3-design", "03_uvit", "U-ViT, All are Worth Words (CVPR 2023), §3.1 and Figure 2(b) and (c)",
          "the 3×3 convolution after the linear decoder helps, and the conditions are best given as tokens",
          (Variant("U-ViT", "uvit"), Variant("no 3×3 conv", "uvit", {"conv": False}),
           Variant("t, y through adaLN-Zero", "adaln-uvit")),
          "U-ViT", _budgets(2400), modules=("layers", "dit", "uvit")),
    Study("ch5", "05_diffit", "DiffiT, Diffusion Vision Transformers for Image Generation (ECCV 2024), Table 6",
          "time-dependent self-attention (TMSA) beats the other ways of giving the blocks t (Table 6)",
          (Variant("TMSA", "diffit", {"time_entry": "tmsa"}),
           Variant("time in the position bias", "diffit", {"time_entry": "bias"}),
           Variant("time added to the input tokens", "diffit", {"time_entry": "input"}),
           Variant("adaLN-Zero", "diffit", {"time_entry": "adaLN"})),
          "TMSA", _budgets(1150), modules=("layers", "dit", "diffit")),
    Study("ch5-windows", "05_diffit", "DiffiT, Diffusion Vision Transformers for Image Generation (ECCV 2024), "
          "Figure 8", "a larger window helps little beyond w = 4 (the paper: FID −23 % from w = 2 to 4, −1.5 % from "
          "4 to 8 on CIFAR-10)",
          (Variant("window 4", "diffit"), Variant("window 2", "diffit", {"window_size": 2}),
           Variant("global attention", "diffit", {"window_size": None})),
          "window 4", _budgets(1150), modules=("layers", "dit", "diffit")),
    Study("ch7", "07_summary", "the four papers of the course",
          "at the same steps and recipe, which backbones learn to draw the asked-for digit",
          (Variant("U-Net", "unet"), Variant("ViT", "vit"), Variant("DiT", "dit", {"name": "DiT-XS/2"}),
           Variant("U-ViT", "uvit"), Variant("DiffiT", "diffit")),
          "U-Net", _budgets(2400), modules=("layers", "unet", "vit", "dit", "uvit", "diffit")),
    HybridStudy("ch4", "04_genvit", "GenViT/HybViT, Your ViT is Secretly a Hybrid Discriminative-Generative Diffusion "
                "Model (arXiv 2022), and the course's questions about it",
                "one ViT can classify and generate at once (HybViT), at a cost to each task that the weight p_x "
                "trades; GenViT's per-token time modulation and its unweighted L1 loss are what the paper chose",
                (HybridVariant("HybViT", "hybvit"),
                 HybridVariant("classifier only", "hybvit", loss={"px": 0}),
                 HybridVariant("GenViT", "hybvit", loss={"pyx": 0}),
                 HybridVariant("HybViT, p_x = 10", "hybvit", loss={"px": 10}),
                 HybridVariant("GenViT, L2", "hybvit", loss={"pyx": 0, "loss_type": "l2"}),
                 HybridVariant("GenViT, L2, Min-SNR-5", "hybvit",
                               loss={"pyx": 0, "loss_type": "l2", "min_snr_gamma": 5.0}),
                 HybridVariant("DiT (adaLN-Zero)", "unconditional-dit", loss={"pyx": 0})),
                "HybViT", _budgets(1000, n_per_class=30), modules=("genvit", "layers", "dit"),
                recipe=HYBRID_RECIPE),
    LatentStudy("ch6", "06_latent", "Latent diffusion, High-Resolution Image Synthesis with Latent Diffusion Models "
                "(CVPR 2022), §3, §4.1 and the scale factor of §4.3.2",
                "a DiT learns the shapes' latents faster than their pixels, from an autoencoder of a small KL weight, "
                "and the latents need their scale",
                (LatentVariant("latents, patch 2", "shapes-dit", {"space": "latents", "patch_size": 2},
                               data={"kl_weight": 1e-6}),
                 LatentVariant("latents, KL 1e-4", "shapes-dit", {"space": "latents", "patch_size": 2},
                               data={"kl_weight": 1e-4}),
                 LatentVariant("pixels, patch 8", "shapes-dit", {"space": "pixels", "patch_size": 8}),
                 LatentVariant("pixels, patch 4", "shapes-dit", {"space": "pixels", "patch_size": 4}),
                 LatentVariant("latents of spread 5.5, unscaled", "shapes-dit", {"space": "latents", "patch_size": 2},
                               data={"kl_weight": 1e-6, "spread": 5.5, "scaled": False})),
                "latents, patch 2", _budgets(1000), modules=("latent", "layers", "dit")),
]}


# --------------------------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------------------------
def _code(source: str) -> str:
    """Code without its docstrings and comments (its AST): prose edits do not make a record stale."""
    tree = ast.parse(textwrap.dedent(source))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def _measuring_code() -> list:
    """The functions whose code decides a study's numbers besides the models: the training loop and its loss, the
    measures, the data, the recipe and this runner."""
    from course.lab import data, experiments, metrics, train

    return [train.train, train.lr_factor, train.diffusion_loss_fn, train.min_snr_weights, train.ema_update,
            metrics.evaluate, metrics.heldout_loss, metrics.fd_to_test, metrics.frechet_distance, metrics.fd_floor,
            metrics.real_images, data.digits, experiments.label_dropout, run_one, _measure, run]


def _round(t: torch.Tensor) -> list:
    """Values to 6 significant digits: the same computation gives the same numbers on another machine."""
    return [float(f"{v:.6g}") for v in t.detach().double().flatten().tolist()]


def fingerprint(variant: Variant, forward=Study.forward) -> list:
    """What a variant's model computes, not how its code is written: its initial weights (seeded), its output on fixed
    inputs and the gradients of a fixed loss, to 6 significant digits. A refactor that computes the same leaves it
    unchanged; any change to the architecture, the initialisation or the forward pass changes it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the order of float sums depends on the threads: one thread, the same digits
    try:
        torch.manual_seed(0)
        model = BUILDS[variant.build](**variant.kwargs).train()
        g = torch.Generator().manual_seed(0)
        x, t, y = torch.randn(2, 1, 8, 8, generator=g), torch.tensor([10, 900]), torch.tensor([1, 3])
        out = forward(model, x, t, y)
        (out.float() ** 2).mean().backward()
        params = sorted(model.named_parameters())
        return [_round(out),
                [(n, _round(p.sum()), _round(p.grad.norm()) if p.grad is not None else None) for n, p in params]]
    finally:
        torch.set_num_threads(threads)


def code_hash(study: Study, profile: str) -> str:
    """A hash of what the study's numbers depend on: what each variant's model computes (`fingerprint`), the
    diffusion it trains with, the code of the loop, the loss, the measures and this runner (without docstrings or
    comments), the judge's weights, the recipe and the study's declaration. A change to any of them marks the record
    stale; a refactor that computes the same numbers does not."""
    from course.lab.experiments import RECIPE, SAMPLE_ETA
    from course.lab.metrics import load_judge

    h = hashlib.sha256()
    h.update(_code((SOLUTIONS_DIR / "diffusion.py").read_text()).encode())
    if study.task != "digits":  # the losses and measures of its chapter's reference
        h.update(_code((SOLUTIONS_DIR / f"{study.modules[0]}.py").read_text()).encode())
    for fn in study.measuring_code():
        h.update(_code(inspect.getsource(fn)).encode())
    for net in [load_judge(8).net, *study.weights(profile)]:
        for tensor in net.state_dict().values():
            h.update(tensor.detach().cpu().numpy().tobytes())
    for variant in study.variants:
        h.update(json.dumps(fingerprint(variant, study.forward)).encode())
    # The course's recipe decides the numbers of the studies that train with it; chapter 4's trains with its own,
    # which its declaration holds.
    shared = [] if study.task == "hybrid" else [RECIPE, {"sample_eta": SAMPLE_ETA}]
    h.update(json.dumps([*shared, study.declaration(profile)], sort_keys=True).encode())
    return h.hexdigest()[:16]


def _commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "course", "solutions"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+changes" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _device_name(dev: torch.device, jobs: int = 1) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    threads = f"{jobs} processes of 1 thread" if jobs > 1 else f"{torch.get_num_threads()} threads"
    return f"{dev.type}, {threads}, {os.cpu_count()} cores ({platform.machine()})"


def record_path(key: str, results: Path | None = None) -> Path:
    return Path(results or RESULTS_DIR) / f"{key}.json"


# --------------------------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------------------------
def _measure(model, diffusion, budget: Budget, seed: int, final: bool) -> dict:
    """Held-out loss always; class accuracy and FD of unguided (w = 1) and guided (w = 2) samples at the end."""
    from course.lab.data import digits
    from course.lab.experiments import SAMPLE_ETA
    from course.lab.metrics import evaluate, heldout_loss

    x_test, y_test = digits("test")
    out = {"loss": heldout_loss(model, diffusion.alphas_cumprod, x_test, y_test, repeats=budget.loss_repeats)}
    if final:
        for w, key in ((1.0, "w1"), (2.0, "w2")):
            e = evaluate(model, diffusion, n_per_class=budget.n_per_class, steps=budget.sample_steps, eta=SAMPLE_ETA,
                         w=w, seed=1000 + seed)
            out[f"acc_{key}"], out[f"fd_{key}"] = float(e.acc), float(e.fd)
            if key == "w1":  # one sample of each class, as 8-bit pixels: the record's small sample grid
                per = len(e.samples) // 10
                row = ((e.samples[::per][:10].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
                out["samples"] = row.flatten().tolist()
    return out


def run_one(study: Study, variant: Variant, seed: int, profile: str, scratch: Path, progress: bool = True) -> dict:
    """Train one variant with one seed to each milestone in turn (resuming from its checkpoint in `scratch`)."""
    from course.diffusion import Diffusion
    from course.lab.data import digits
    from course.lab.experiments import RECIPE, label_dropout
    from course.lab.train import train

    budget = study.budget(profile)
    x, y = digits("train")
    diffusion = Diffusion(T=1000, schedule="cosine")
    torch.manual_seed(seed)
    model = BUILDS[variant.build](**variant.kwargs)
    recipe = {**RECIPE, "p_uncond": label_dropout(model), **study.recipe}
    checkpoint = scratch / f"{slug(variant.name)}-seed{seed}.pt"
    curve, samples = [], None
    for m in budget.milestones:
        r = train(model, x, y, diffusion=diffusion, steps=m, schedule_steps=budget.steps, seed=seed,
                  checkpoint=checkpoint, desc=f"{study.key}: {variant.name}, seed {seed}", progress=progress, **recipe)
        point = _measure(r.ema, diffusion, budget, seed, final=m == budget.milestones[-1])
        samples = point.pop("samples", samples)
        curve.append({"steps": m, "seconds": float(r.seconds), **point})
    return {"variant": variant.name, "seed": seed, "params": sum(p.numel() for p in model.parameters()),
            "steps_per_second": float(r.steps_per_second), "curve": curve, **curve[-1],
            "samples": samples, "sample_shape": [10, *x.shape[1:]]}


def run(key: str, profile: str | None = None, results: Path | None = None, progress: bool = True,
        jobs: int = 1) -> dict:
    """Run (or resume) a study and write its record; returns the record. Each variant and seed is one run of the
    study's task (`run_one`, `run_hybrid_one` or `run_latent_one`), written to the record as soon as it ends. A
    record is started afresh, and the checkpoints of the last one dropped, when the code or the profile changed; a
    complete and current one is returned as it is, untouched (nothing ran, so nothing is re-stamped).
    With `jobs` > 1 the runs go to that many worker processes of one thread each (the chapters' small models use
    a second thread poorly, a second core well); a run's numbers do not depend on which process ran it."""
    import shutil

    from course.lab.config import PROFILE, device

    study = STUDIES[key]
    one = {"digits": run_one, "hybrid": run_hybrid_one, "latent": run_latent_one}[study.task]
    profile = profile or PROFILE.name
    budget = study.budget(profile)
    path = record_path(key, results)
    scratch = path.parent / ".partial" / key
    digest = code_hash(study, profile)
    record = load_record(key, results)
    if not record or record.get("code_hash") != digest or record.get("profile") != profile:
        shutil.rmtree(scratch, ignore_errors=True)  # checkpoints of runs of other code: not to be resumed
        record = {"study": key, "task": study.task, "chapter": study.chapter, "paper": study.paper,
                  "claim": study.claim, "baseline": study.baseline, "declaration": study.declaration(profile),
                  "profile": profile, "code_hash": digest, "fd_floor": study.floor(budget),
                  "runs": [], "complete": False, "wall_seconds": 0.0}
    done = {(r["variant"], r["seed"]) for r in record["runs"]}
    todo = [(v, s) for s in budget.seeds for v in study.variants if (v.name, s) not in done]
    if not todo:  # complete and current: nothing runs, so the record keeps the provenance of what did
        return record
    scratch.mkdir(parents=True, exist_ok=True)
    order = {(v.name, s): i for i, (s, v) in enumerate((s, v) for s in budget.seeds for v in study.variants)}
    workers = max(1, min(jobs, len(todo)))

    def finished(result: dict, seconds: float) -> None:  # a run has ended: into the record, on disk, at once
        record["runs"] = sorted([*record["runs"], result], key=lambda r: order[(r["variant"], r["seed"])])
        record["wall_seconds"] += seconds
        record.update(_provenance(device(), workers))
        _write(path, record)
        (scratch / f"{slug(result['variant'])}-seed{result['seed']}.pt").unlink(missing_ok=True)

    if workers == 1:
        for variant, seed in todo:
            start = time.perf_counter()
            result = one(study, variant, seed, profile, scratch, progress=progress)
            finished(result, time.perf_counter() - start)
    else:
        _run_in_workers(one, study, todo, profile, scratch, workers, finished)
    record["complete"] = len(record["runs"]) == len(study.variants) * len(budget.seeds)
    record.update(_provenance(device(), workers))
    _write(path, record)
    import matplotlib.pyplot as plt

    sample_grid(record).savefig(path.with_suffix(".png"), dpi=80)
    plt.close("all")
    return record


def _run_in_workers(one, study: Study, todo: list, profile: str, scratch: Path, workers: int, finished) -> None:
    """`one(study, variant, seed, ...)` for every (variant, seed) of `todo` in `workers` processes of one thread
    (`experiments.in_processes`); `finished(result, seconds)` for each as it ends, `seconds` being the wall time since
    the last one ended (the study's wall time). A run that raises stops the study; the finished ones are kept."""
    from course.lab.experiments import in_processes

    last, left = time.perf_counter(), len(todo)
    for i, result in in_processes(one, [(study, v, s, profile, scratch, False) for v, s in todo], workers):
        now = time.perf_counter()
        finished(result, now - last)
        last, left = now, left - 1
        print(f"{study.key}: {todo[i][0].name}, seed {todo[i][1]} done ({left} to go)", flush=True)


def _measure_hybrid(model, diffusion, budget: Budget, seed: int, final: bool, classifies: bool,
                    generates: bool) -> dict:
    """The classifier's test accuracy (and at the end its ECE and mean confidence); the FD of unconditional samples
    (and at the end the judge's share of the rarest class among them, and ten of them for the sample grid)."""
    from course.genvit import expected_calibration_error, predict_proba
    from course.lab.data import digits
    from course.lab.metrics import fd_to_test, load_judge

    out = {}
    if classifies:
        x_test, y_test = digits("test")
        probs = predict_proba(model, x_test)  # (N, 10)
        out["acc"] = float((probs.argmax(1) == y_test).float().mean())
        if final:
            out["ece"] = float(expected_calibration_error(probs, y_test))
            out["confidence"] = float(probs.max(1).values.mean())
    if generates:
        g = torch.Generator().manual_seed(1000 + seed)
        samples = diffusion.sample(model, (10 * budget.n_per_class, 1, 8, 8), None, steps=budget.sample_steps,
                                   generator=g).cpu()
        out["fd"] = float(fd_to_test(samples, 8))
        if final:
            counts = torch.bincount(load_judge(8).predict(samples), minlength=10)
            out["min_share"] = counts.min().item() / len(samples)
            out["samples"] = ((samples[:10].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).flatten().tolist()
    return out


def run_hybrid_one(study: Study, variant: Variant, seed: int, profile: str, scratch: Path,
                   progress: bool = True) -> dict:
    """Train one of chapter 4's variants with one seed to each milestone in turn (resuming from its checkpoint)."""
    from course.diffusion import Diffusion
    from course.genvit import make_hybrid_loss_fn
    from course.lab.data import digits
    from course.lab.train import train

    budget = study.budget(profile)
    x, y = digits("train")
    diffusion = Diffusion(T=1000, schedule="cosine")  # the official schedule
    torch.manual_seed(seed)
    model = BUILDS[variant.build](**variant.kwargs)
    loss = {"px": 100.0, "pyx": 1.0, **variant.loss}
    loss_fn = make_hybrid_loss_fn(x, y, diffusion, **loss)
    checkpoint = scratch / f"{slug(variant.name)}-seed{seed}.pt"
    curve, samples = [], None
    for m in budget.milestones:
        r = train(model, x, y, steps=m, schedule_steps=budget.steps, loss_fn=loss_fn, seed=seed,
                  checkpoint=checkpoint, progress=progress,
                  desc=f"{study.key}: {variant.name}, seed {seed}", **study.recipe)
        point = _measure_hybrid(r.ema, diffusion, budget, seed, final=m == budget.milestones[-1],
                                classifies=bool(loss["pyx"]), generates=bool(loss["px"]))
        samples = point.pop("samples", samples)
        curve.append({"steps": m, "seconds": float(r.seconds), **point})
    return {"variant": variant.name, "seed": seed, "params": sum(p.numel() for p in model.parameters()),
            "steps_per_second": float(r.steps_per_second), "curve": curve, **curve[-1],
            "samples": samples, "sample_shape": [10, *x.shape[1:]]}


def shapes_data(kl_weight: float | None = None, scaled: bool = True, spread: float | None = None):
    """What a chapter-6 model trains on: the 32×32 shapes' pixels (no `kl_weight`), or the means of the course's
    autoencoder of `kl_weight` (N, 4, 8, 8), times their scale s (unless `scaled` is False). With `spread` the means
    are first brought to that standard deviation (Stable Diffusion's latents have about 5.5; s = 0.18215), to ask
    what the scale does for latents whose spread is far from 1. Returns (data, labels, decode) where `decode` maps
    a model's samples back to images (None for pixels)."""
    from course.latent import latent_scale
    from course.lab.autoencoder import encode_all, load_autoencoder
    from course.lab.metrics import real_images

    x, y = real_images("shapes", "train", LATENT_SIZE)  # (N, 3, 32, 32)
    if kl_weight is None:
        return x, y, None
    ae, _ = load_autoencoder(size=LATENT_SIZE, kl_weight=kl_weight, verbose=False)
    with torch.no_grad():
        z = encode_all(ae, x)  # (N, 4, 8, 8): the means
    gain = spread * latent_scale(z) if spread is not None else 1.0
    s = latent_scale(z * gain) if scaled else 1.0

    def decode(latents):
        return ae.decode((latents / s / gain).cpu())

    return z * gain * s, y, decode


def run_latent_one(study: Study, variant: Variant, seed: int, profile: str, scratch: Path,
                   progress: bool = True) -> dict:
    """Train one of chapter 6's variants with one seed to each milestone in turn (resuming from its checkpoint)."""
    from course.diffusion import Diffusion
    from course.lab.experiments import RECIPE, SAMPLE_ETA
    from course.lab.metrics import evaluate
    from course.lab.train import train

    budget = study.budget(profile)
    data, y, decode = shapes_data(**variant.data)
    diffusion = Diffusion(T=1000, schedule="linear")  # DiT's (chapter 6 says why not the cosine one for latents)
    torch.manual_seed(seed)
    model = BUILDS[variant.build](**variant.kwargs)
    checkpoint = scratch / f"{slug(variant.name)}-seed{seed}.pt"
    curve, samples = [], None
    for m in budget.milestones:
        r = train(model, data, y, diffusion=diffusion, steps=m, schedule_steps=budget.steps, seed=seed,
                  checkpoint=checkpoint, progress=progress, desc=f"{study.key}: {variant.name}, seed {seed}",
                  **{**RECIPE, "p_uncond": 0.0, **study.recipe})
        point = {}
        for w, key in ((1.0, "w1"), (2.0, "w2")) if m == budget.milestones[-1] else ((1.0, "w1"),):
            e = evaluate(r.ema, diffusion, size=LATENT_SIZE, dataset="shapes", n_per_class=budget.n_per_class,
                         steps=budget.sample_steps, eta=SAMPLE_ETA, shape=data.shape[1:], decode=decode,
                         clip=decode is None, w=w, seed=1000 + seed)
            point[f"acc_{key}"], point[f"fd_{key}"] = float(e.acc), float(e.fd)
            if key == "w1":  # one sample of each class, as 8-bit pixels: the record's small sample grid
                per = len(e.samples) // 10
                samples = ((e.samples[::per][:10].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).flatten().tolist()
        curve.append({"steps": m, "seconds": float(r.seconds), **point})
    return {"variant": variant.name, "seed": seed, "params": sum(p.numel() for p in model.parameters()),
            "steps_per_second": float(r.steps_per_second), "curve": curve, **curve[-1],
            "samples": samples, "sample_shape": [10, 3, LATENT_SIZE, LATENT_SIZE]}


def _provenance(dev, jobs: int = 1) -> dict:
    return {"commit": _commit(), "device": _device_name(dev, jobs), "torch": torch.__version__,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _write(path: Path, record: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
    tmp.replace(path)


def sample_grid(record: dict):
    """One row of samples (one per class, unguided) per variant, from its first seed: the record's sample grid."""
    import matplotlib.pyplot as plt

    from course.lab.plots import grid_image

    first = {}
    for r in record["runs"]:
        if r.get("samples") is None:  # a classifier draws nothing
            continue
        if r["variant"] not in first or r["seed"] < first[r["variant"]]["seed"]:
            first[r["variant"]] = r
    fig, axes = plt.subplots(len(first), 1, figsize=(5, 0.75 * len(first) + 0.2), squeeze=False)
    for ax, (name, r) in zip(axes[:, 0], first.items()):
        x = torch.tensor(r["samples"], dtype=torch.float32).view(*r["sample_shape"]) / 127.5 - 1
        ax.imshow(grid_image(x, 10), cmap="gray", vmin=0, vmax=1)
        what = {"hybrid": "ten unconditional samples", "latent": "unguided, one per class"}
        ax.set_title(f"{name} (seed {r['seed']}): {what.get(record.get('task'), 'unguided, digits 0 to 9')}",
                     fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig


def load_record(key: str, results: Path | None = None) -> dict | None:
    path = record_path(key, results)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def state(key: str, record: dict | None) -> str:
    """A study's state: "current (…)", "incomplete: …", "stale: …" or "missing"."""
    if record is None:
        return "missing"
    if record.get("code_hash") != code_hash(STUDIES[key], record.get("profile", "cpu")):
        return "stale: the code or the declaration changed since it was measured"
    if not record.get("complete"):
        return f"incomplete: {len(record['runs'])} runs so far"
    return f"current ({provenance_line(record)})"


def status(results: Path | None = None) -> list[tuple[str, str]]:
    """(study, state) for every study."""
    return [(key, state(key, load_record(key, results))) for key in STUDIES]


def provenance_line(record: dict) -> str:
    minutes = record.get("wall_seconds", 0.0) / 60
    return (f"measured on {record.get('device', '?')} in {minutes:.0f} min at commit {record.get('commit', '?')} "
            f"({record.get('date', '?')}, torch {record.get('torch', '?')}, profile {record.get('profile', '?')}); "
            f"rerun with `python -m course study {record['study']}`")


# --------------------------------------------------------------------------------------------------------------
# Reading a record: tables and verdicts
# --------------------------------------------------------------------------------------------------------------
def runs_of(record: dict, variant: str) -> dict[int, dict]:
    return {r["seed"]: r for r in record["runs"] if r["variant"] == variant}


def stalled(record: dict, variant: str) -> list[int]:
    """Seeds of `variant` whose final held-out loss is `STALLED` times its seeds' median or more: outliers."""
    runs = runs_of(record, variant)
    if len(runs) < 3 or any("loss" not in r for r in runs.values()):  # chapter 4 has no held-out loss
        return []
    median = float(np.median([r["loss"] for r in runs.values()]))
    return [s for s, r in runs.items() if r["loss"] > STALLED * median]


MEASURES = {"acc_w1": ("unguided class accuracy", +1, "{:.1%}"), "fd_w1": ("FD of unguided samples", -1, "{:.2f}"),
            "loss": ("held-out loss", -1, "{:.4f}"), "acc_w2": ("guided class accuracy", +1, "{:.1%}")}
HYBRID_MEASURES = {"acc": ("test accuracy", +1, "{:.1%}"), "ece": ("ECE", -1, "{:.3f}"),
                   "fd": ("FD of unconditional samples", -1, "{:.2f}"),
                   "min_share": ("share of the rarest class in the samples", +1, "{:.1%}")}


LATENT_MEASURES = {"acc_w1": MEASURES["acc_w1"], "fd_w1": MEASURES["fd_w1"], "acc_w2": MEASURES["acc_w2"],
                   "fd_w2": ("FD of guided samples", -1, "{:.2f}")}


def measures(record: dict) -> dict:
    """What a record's runs measured: name -> (label, +1 when higher is better, format)."""
    return {"hybrid": HYBRID_MEASURES, "latent": LATENT_MEASURES}.get(record.get("task"), MEASURES)


def _not_learned(record: dict, name: str, runs: dict) -> str | None:
    """Why `name` has not learned yet, or None: guided accuracy below 30 % (a classifier's test accuracy for
    chapter 4), or for chapter 4's generators an FD `LEARNED_FD` times the floor or more."""
    if record.get("task") != "hybrid":
        acc = np.mean([r["acc_w2"] for r in runs.values()])
        return f"{name} has not learned yet (guided accuracy {acc:.0%})" if acc < LEARNED_ACC else None
    accs = [r["acc"] for r in runs.values() if r.get("acc") is not None]
    if accs and np.mean(accs) < LEARNED_ACC:
        return f"{name} has not learned yet (test accuracy {np.mean(accs):.0%})"
    fds = [r["fd"] for r in runs.values() if r.get("fd") is not None]
    if fds and np.mean(fds) >= LEARNED_FD * record["fd_floor"]:
        fd = np.mean(fds)
        return f"{name} has not learned yet (FD {fd:.2f}, {fd / record['fd_floor']:.0f} times the floor)"
    return None


def _difference(fmt: str, d: float) -> str:
    """A seed's difference, signed so that + means better: shares in percentage points."""
    if "%" in fmt:
        return f"{100 * d:+.1f}".replace("-", "−")
    return ("+" if d >= 0 else "−") + fmt.format(abs(d))


def table(record: dict) -> str:
    """A markdown table of the record: per variant, the mean and range over seeds of every measure."""
    kinds = measures(record)
    head = "| variant | seeds | " + " | ".join(kinds[m][0] for m in kinds) + " |"
    lines = [head, "|" + "---|" * (2 + len(kinds))]
    for name in dict.fromkeys(r["variant"] for r in record["runs"]):
        runs = runs_of(record, name)
        cells = []
        for m, (_, _, fmt) in kinds.items():
            v = [r[m] for r in runs.values() if r.get(m) is not None]
            cells.append(f"{fmt.format(np.mean(v))} [{fmt.format(min(v))}–{fmt.format(max(v))}]" if v else "—")
        flag = f" (outlier: seed {', '.join(map(str, stalled(record, name)))})" if stalled(record, name) else ""
        lines.append(f"| {name}{flag} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(record: dict, a: str, b: str, measure: str = "acc_w1") -> str:
    """One sentence on whether `a` beats `b` on `measure`, seed by seed: "ahead in every seed", "behind in every
    seed", or "the seeds do not separate them"; stalled runs are named and left out; no ranking when either has not
    learned (guided accuracy below 30 %); none from fewer than two paired seeds."""
    label, sign, fmt = measures(record)[measure]
    ra, rb = runs_of(record, a), runs_of(record, b)
    for name, runs in ((a, ra), (b, rb)):
        if not runs:
            return f"{name}: not in the record."
        if any(r.get(measure) is None for r in runs.values()):
            return f"{name}: its {label} is not measured (it does not have one)."
        why = _not_learned(record, name, runs)
        if why:
            return f"{why[0].upper()}{why[1:]}: no ranking of {a} and {b}."
    out = set(stalled(record, a)) | set(stalled(record, b))
    seeds = sorted((set(ra) & set(rb)) - out)
    note = (f" Left out as an outlier (a held-out loss {STALLED:g} times its design's median or more): seed "
            f"{', '.join(map(str, sorted(out)))}." if out else "")
    if len(seeds) < 2:
        return f"Fewer than two seeds to pair for {a} and {b}: no finding.{note}"
    diffs = [sign * (ra[s][measure] - rb[s][measure]) for s in seeds]  # > 0: a is better
    shown = ", ".join(_difference(fmt, d) for d in diffs) + (" points" if "%" in fmt else "")
    mean_a = fmt.format(np.mean([ra[s][measure] for s in seeds]))
    mean_b = fmt.format(np.mean([rb[s][measure] for s in seeds]))
    if all(d > 0 for d in diffs):
        head = f"{a} is ahead of {b} in every one of {len(seeds)} seeds"
    elif all(d < 0 for d in diffs):
        head = f"{a} is behind {b} in every one of {len(seeds)} seeds"
    else:
        head = f"The seeds do not separate {a} and {b}"
    head = head[0].upper() + head[1:]  # a sentence, whatever the variant's name
    return f"{head} on {label} ({mean_a} against {mean_b}; {a}'s lead, seed by seed: {shown}).{note}"



# --------------------------------------------------------------------------------------------------------------
# In a chapter: the record's figures, table, provenance and verdicts, with the reader's own run beside them
# --------------------------------------------------------------------------------------------------------------
def plot_record(record: dict, yours: dict | None = None):
    """Held-out loss along training (every seed, one colour per variant; chapter 6, whose variants diffuse in
    different spaces: the FD of unguided samples) and the final unguided accuracy per seed; `yours` ({"name",
    "acc_w1", "steps"}) adds the reader's own run to the accuracy panel."""
    import matplotlib.pyplot as plt

    key, label = ("fd_w1", "FD of unguided samples") if record.get("task") == "latent" else ("loss", "held-out loss")
    names = list(dict.fromkeys(r["variant"] for r in record["runs"]))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1.3, 1]})
    for i, name in enumerate(names):
        for k, (_, r) in enumerate(sorted(runs_of(record, name).items())):
            a1.plot([p["steps"] for p in r["curve"]], [p[key] for p in r["curve"]], "o-", color=f"C{i}",
                    alpha=0.8, ms=3, label=name if k == 0 else None)
            a2.scatter(i, r["acc_w1"], color=f"C{i}", s=30, zorder=3)
        a2.bar(i, np.mean([r["acc_w1"] for r in runs_of(record, name).values()]), color=f"C{i}", alpha=0.35)
    if yours is not None:
        k = names.index(yours["name"]) if yours["name"] in names else len(names)
        a2.scatter(k, yours["acc_w1"], marker="*", s=160, color="k", zorder=4,
                   label=f"your run ({yours['steps']:,} steps)")
        a2.legend(fontsize=8, loc="lower right")
    if "fd_floor" in record and key.startswith("fd"):
        a1.axhline(record["fd_floor"], ls=":", c="gray", label="real images (the floor)")
    a1.set(xlabel="training steps", ylabel=label, yscale="log", title="every seed of every variant")
    a1.legend(fontsize=8)
    a2.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    a2.set(ylabel="unguided class accuracy", ylim=(0, 1.02), title="at the end: one dot per seed")
    fig.tight_layout()
    return fig


def plot_beside(record: dict, variant: str, yours: dict, measure: str = "acc_w1",
                label: str = "unguided class accuracy", ax=None):
    """The record's runs of `variant` along training (`measure` at each milestone, one line per seed) and the
    reader's own run (`yours`: {measure, "steps"}, and "name" when its recipe differs) as a star where it ended:
    what the steps beyond the record's budget bought."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.2))
    for k, (_, r) in enumerate(sorted(runs_of(record, variant).items())):
        ax.plot([p["steps"] for p in r["curve"]], [p[measure] for p in r["curve"]], "o-", color="C0", alpha=0.7,
                ms=3, label=f"the record's {variant}, one line per seed" if k == 0 else None)
    ax.scatter(yours["steps"], yours[measure], marker="*", s=180, color="k", zorder=4,
               label=f"{yours.get('name', 'your run')} ({yours['steps']:,} steps)")
    ax.set(xlabel="training steps", ylabel=label, ylim=(0, 1.02), xlim=(0, None), title="the record's runs and yours")
    ax.legend(fontsize=8, loc="lower right")
    return ax


def plot_hybrid_record(record: dict):
    """Chapter 4's curves: the FD of every generator and the test accuracy of every classifier along training, one
    line per seed, one colour per variant."""
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["variant"] for r in record["runs"]))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.6))
    for i, name in enumerate(names):
        for k, (_, r) in enumerate(sorted(runs_of(record, name).items())):
            for ax, m in ((a1, "fd"), (a2, "acc")):
                if r.get(m) is not None:
                    ax.plot([p["steps"] for p in r["curve"]], [p[m] for p in r["curve"]], "o-", color=f"C{i}",
                            alpha=0.8, ms=3, label=name if k == 0 else None)
    a1.axhline(record["fd_floor"], ls=":", c="gray", label="real digits (the floor)")
    a1.set(xlabel="training steps", ylabel="FD (lower is better)", yscale="log", title="the generators")
    a2.set(xlabel="training steps", ylabel="test accuracy", title="the classifiers")
    for ax in (a1, a2):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def show_record(key: str, yours: dict | None = None, results: Path | None = None) -> dict | None:
    """Show a chapter's study of record: its declaration, provenance, figures, table and sample grid. Returns the
    record (None, with a message saying how to make it, when there is none)."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    study = STUDIES[key]
    print(study.show("cpu"))
    record = load_record(key, results)
    if record is None:
        print(f"No record of study {key} yet: `python -m course study {key}` measures it (about 20 minutes on two "
              "CPU cores) and writes results/{key}.json.")
        return None
    try:
        now = state(key, record)
    except Exception as e:  # noqa: BLE001 - e.g. a learner's model that is not done yet: the record still shows
        now = f"whether it is current could not be checked here ({type(e).__name__}: {e})"
    display(Markdown(f"*Study of record, {provenance_line(record)}.*"
                     + ("" if now.startswith("current") else f" **Note: {now}.**")))
    if record.get("task") == "hybrid":
        plot_hybrid_record(record)
    else:
        plot_record(record, yours)
    plt.show()
    display(Markdown(table(record)))
    sample_grid(record)
    plt.show()
    return record


def summary(record: dict | None, measure: str = "acc_w1") -> str:
    """The study's verdict on its claim: the baseline against every other variant, one sentence each."""
    if record is None:
        return "There is no record of this study yet, so no verdict."
    others = [n for n in dict.fromkeys(r["variant"] for r in record["runs"]) if n != record["baseline"]]
    return " ".join(verdict(record, record["baseline"], other, measure) for other in others)

"""The chapters' headline runs: one main model per chapter, trained with one recipe long enough to learn its labels,
and measured the same way everywhere.

The recipe (`RECIPE`) came out of the sweep in `benchmarks/bench_recipe.py`: AdamW at lr 3·10⁻³ with 50 warm-up
steps, batch 64 (more, smaller steps beat fewer large ones on a short budget), and the ε-loss weighted by Min-SNR-γ
with γ = 5 (Hang et al., "Efficient Diffusion Training via Min-SNR Weighting Strategy", ICCV 2023), which stops the
nearly clean timesteps from dominating the gradient. The learning rate then falls linearly to 0 over the second half
of the run (`cooldown=0.5`), and the samples come from the final weights (`ema_decay=0.0`): after a cool-down they
beat both an EMA of the same run and the constant rate with its EMA, on every model that
`benchmarks/bench_lr_decay.py` measured (accuracy and FD of unguided samples: U-ViT, ViT and DiT-Ti/2).

The samples of the class-conditional headlines and studies come from DDIM with η = 1 (`SAMPLE_ETA`): each of its
20 steps adds fresh noise of DDPM's posterior variance (DDIM, Eq. 16), where η = 0 is chapter 0's deterministic
sampler. The DDIM paper finds η = 0 best on short step sequences for its well-trained models; for these briefly
trained ones `benchmarks/bench_sampler.py` compares both on the chapters' headline models (unguided class accuracy
and FD). Chapter 4's unconditional HybViT samples with η = 0, as its record was measured.

`headline(...)` trains a model, samples every class without guidance (w = 1) and with it (w = 2), measures the
judge's class accuracy and the FD against the test digits, computes the FD floor at the same number of samples, and
glues the numbers under the names every chapter shares (shared/SYLLABUS.md: `headline_acc_w1`, `headline_acc_w2`,
`headline_fd`, `headline_fd_floor`, `headline_train_seconds`) so that the prose and the tests read them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from course.lab.config import PROFILE
from course.lab.metrics import Evaluation, evaluate, fd_floor
from course.lab.train import TrainResult, train

RECIPE = dict(lr=3e-3, batch_size=64, warmup=50, cooldown=0.5, ema_decay=0.0, min_snr_gamma=5.0)
SAMPLE_ETA = 1.0  # DDIM's η for the class-conditional headlines and studies (chapter 4 keeps η = 0)


def label_dropout(model) -> float:
    """The loss's label-dropout probability for `model`: 0 when the model drops labels itself (DiT's
    `y_embedder.dropout_prob`), else the 10 % of classifier-free guidance."""
    own = getattr(getattr(model, "y_embedder", None), "dropout_prob", 0.0)
    return 0.0 if isinstance(own, (int, float)) and own > 0 else 0.1


@dataclass
class Headline:
    name: str
    run: TrainResult
    plain: Evaluation  # w = 1
    guided: Evaluation  # w = `w_guided`
    floor: float  # FD of as many real training digits as there are samples
    w_guided: float = 2.0

    def summary(self) -> str:
        return (f"{self.name}: {self.run.steps} steps in {self.run.seconds:.0f} s "
                f"({self.run.steps_per_second:.1f} steps/s); w = 1: accuracy {self.plain.acc:.1%}, FD "
                f"{self.plain.fd:.2f}; w = {self.w_guided:g}: accuracy {self.guided.acc:.1%}, FD "
                f"{self.guided.fd:.2f}; FD floor at {len(self.plain.labels)} samples {self.floor:.2f} "
                f"(FD {self.plain.fd / self.floor:.1f}× the floor)")


def headline(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, diffusion, *, name: str, steps: int,
             n_per_class: int | None = None, sample_steps: int = 20, eta: float = SAMPLE_ETA, w_guided: float = 2.0,
             seed: int = 0, glue_names: bool = True, show: bool = True, **overrides) -> Headline:
    """Train `model` on (x, y) with `RECIPE` (or `overrides`) for `steps`, then measure it: w = 1 and w = 2 samples
    (`sample_steps` DDIM steps with noise `eta`), class accuracy, FD and the FD floor at the samples' count. Glues
    the chapter's headline numbers and shows the samples, one row per class."""
    from course import glue

    n_per_class = n_per_class or PROFILE.pick(ci=2, cpu=40, gpu=100)
    recipe = {**RECIPE, "p_uncond": label_dropout(model), **overrides}
    run = train(model, x, y, diffusion=diffusion, steps=steps, seed=seed, desc=name, **recipe)
    plain, guided = (evaluate(run.ema, diffusion, n_per_class=n_per_class, steps=sample_steps, eta=eta, w=w,
                              seed=seed + 1) for w in (1.0, w_guided))
    floor = fd_floor(8, n=len(plain.labels))
    result = Headline(name, run, plain, guided, floor, w_guided)
    if glue_names:
        glue("headline_acc_w1", float(plain.acc))
        glue("headline_acc_w2", float(guided.acc))
        glue("headline_fd", float(plain.fd))
        glue("headline_fd_floor", float(floor))
        glue("headline_train_seconds", float(run.seconds))
        glue("headline_steps", int(run.steps))
        glue("headline_n", int(len(plain.labels)))
        glue("headline_fd_ratio", float(plain.fd / floor))
    if show:
        import matplotlib.pyplot as plt

        from course.lab.plots import class_grid

        print(result.summary())
        fig, axes = plt.subplots(1, 2, figsize=(9, 4))
        for ax, e in zip(axes, (plain, guided)):
            class_grid(e.samples, e.labels, per_class=10, ax=ax,
                       title=f"w = {e.w:g}: accuracy {e.acc:.1%}, FD {e.fd:.2f}")
        plt.tight_layout()
        plt.show()
    return result

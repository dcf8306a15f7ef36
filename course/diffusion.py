# This file is generated from solutions/diffusion.py by `python -m course generate`.
# Fill in each block that raises NotImplementedError, then run `check("diffusion")` in the notebook
# or `python -m course check diffusion` in a shell.
"""Chapter 0: the diffusion primer (DDPM, DDIM and classifier-free guidance).

Papers: Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models" (NeurIPS 2020); Nichol & Dhariwal, "Improved
Denoising Diffusion Probabilistic Models" (ICML 2021); Song, Meng & Ermon, "Denoising Diffusion Implicit Models"
(ICLR 2021); Ho & Salimans, "Classifier-Free Diffusion Guidance" (NeurIPS 2021 workshop).

Conventions used by every chapter:
- timesteps are integers 0..T-1; a denoiser is called as `model(x_t, t, y)` and predicts the noise ε;
- `y` holds class indices, and the index `num_classes` means "no label" (the null class of guidance);
- schedules are float64 tensors of length T; results take the dtype and device of the images.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


# ---------------------------------------------------------------------------------------------------------------
# Noise schedules
# ---------------------------------------------------------------------------------------------------------------
def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's schedule: β_t rises linearly from `beta_start` (t = 0) to `beta_end` (t = T - 1).

    Returns a float64 tensor of shape (T,).
    """
    raise NotImplementedError('Exercise `diffusion.linear_betas` is not done yet: write it in course/diffusion.py (book/00_diffusion.ipynb, section "Exercise: diffusion.linear_betas").')


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """The cosine schedule of Improved DDPM, Eq. (17): ᾱ(t) = f(t) / f(0), f(t) = cos²(((t/T) + s) / (1 + s) · π/2),
    and β_t = 1 − ᾱ(t + 1) / ᾱ(t) for t = 0..T-1, clipped at `max_beta`.

    Returns a float64 tensor of shape (T,).
    """
    raise NotImplementedError('Exercise `diffusion.cosine_betas` is not done yet: write it in course/diffusion.py (book/00_diffusion.ipynb, section "Exercise: diffusion.cosine_betas").')


def alphas_cumprod_of(betas: torch.Tensor) -> torch.Tensor:
    """ᾱ_t = ∏_{s ≤ t} (1 − β_s)."""
    return torch.cumprod(1 - betas, dim=0)


# ---------------------------------------------------------------------------------------------------------------
# The forward process and the training loss
# ---------------------------------------------------------------------------------------------------------------
def _at(schedule: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """schedule[t] as a (B, 1, 1, ...) tensor with the dtype and device of x, ready to broadcast."""
    values = schedule.to(x.device)[t.to(x.device)].to(x.dtype)
    return values.reshape(-1, *([1] * (x.dim() - 1)))


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Sample x_t ~ q(x_t | x_0), DDPM Eq. (4): x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε.

    x0, noise: (B, C, H, W); t: (B,) integer timesteps; alphas_cumprod: (T,). Returns (B, C, H, W) like x0.
    """
    raise NotImplementedError('Exercise `diffusion.q_sample` is not done yet: write it in course/diffusion.py (book/00_diffusion.ipynb, section "Exercise: diffusion.q_sample").')


def ddpm_loss(model, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor,
              y: torch.Tensor | None = None) -> torch.Tensor:
    """DDPM's simplified objective, Eq. (14): the mean squared error between ε and model(x_t, t, y).

    Only the first C output channels are the noise prediction (a model with learned variance returns 2C).
    Returns a scalar tensor.
    """
    raise NotImplementedError('Exercise `diffusion.ddpm_loss` is not done yet: write it in course/diffusion.py (book/00_diffusion.ipynb, section "Exercise: diffusion.ddpm_loss").')


# ---------------------------------------------------------------------------------------------------------------
# Sampling steps
# ---------------------------------------------------------------------------------------------------------------
def ddpm_step(x_t: torch.Tensor, eps: torch.Tensor, t: int, betas: torch.Tensor, alphas_cumprod: torch.Tensor,
              noise: torch.Tensor) -> torch.Tensor:
    """One ancestral step of DDPM, Algorithm 2: from x_t and the predicted ε to x_{t-1},

        x_{t-1} = 1/√α_t · (x_t − β_t / √(1 − ᾱ_t) · ε) + σ_t z,   α_t = 1 − β_t,  σ_t² = β_t,

    with z = `noise` for t > 0 and no noise at the last step (t = 0). `t` is a Python int, the same for the batch.
    """
    raise NotImplementedError('Exercise `diffusion.ddpm_step` is not done yet: write it in course/diffusion.py (book/00_diffusion.ipynb, section "Exercise: diffusion.ddpm_step").')


def ddim_step(x_t: torch.Tensor, eps: torch.Tensor, t: int, t_prev: int, alphas_cumprod: torch.Tensor,
              eta: float = 0.0, noise: torch.Tensor | None = None, clip: bool = True) -> torch.Tensor:
    """One DDIM step, Eq. (12), from timestep t to t_prev < t (t_prev = -1 means "to the clean image", ᾱ = 1):

        x̂_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t              (clipped to [-1, 1] when `clip`)
        ε   = (x_t − √ᾱ_t x̂_0) / √(1 − ᾱ_t)             (re-derived from the clipped x̂_0, as ADM and DiT do)
        σ   = η · √((1 − ᾱ_prev) / (1 − ᾱ_t)) · √(1 − ᾱ_t / ᾱ_prev)
        x_prev = √ᾱ_prev · x̂_0 + √(1 − ᾱ_prev − σ²) · ε + σ z

    η = 0 is the deterministic DDIM sampler; η = 1 gives σ² = β̃_t, the DDPM posterior's variance. `noise` (z) is
    needed when η > 0. Without the re-derivation, a clipped x̂_0 and the unclipped ε would point to two different
    images, and the step would mix them.
    """
    raise NotImplementedError('Exercise `diffusion.ddim_step` is not done yet: write it in course/diffusion.py (book/00_diffusion.ipynb, section "Exercise: diffusion.ddim_step").')


def cfg_eps(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w: float) -> torch.Tensor:
    """Classifier-free guidance: ε̂ = ε_uncond + w · (ε_cond − ε_uncond).

    w = 1 is plain conditional sampling, w = 0 unconditional, w > 1 pushes samples towards their class.
    """
    raise NotImplementedError('Exercise `diffusion.cfg_eps` is not done yet: write it in course/diffusion.py (book/00_diffusion.ipynb, section "Exercise: diffusion.cfg_eps").')


# ---------------------------------------------------------------------------------------------------------------
# Given: the process as one object, used by every chapter's training and sampling
# ---------------------------------------------------------------------------------------------------------------
class Diffusion:
    """A noise schedule with the loss and the two samplers built from the exercises above.

    >>> diffusion = Diffusion(T=1000, schedule="cosine")
    >>> loss = diffusion.loss(model, x0, y, p_uncond=0.1, num_classes=10)   # p_uncond=0 for DiT (see `loss`)
    >>> x = diffusion.sample(model, (16, 1, 8, 8), y=labels, steps=20, w=2.0)
    """

    def __init__(self, T: int = 1000, schedule: str = "cosine"):
        if schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule should be 'linear' or 'cosine', got {schedule!r}")
        self.T, self.schedule = T, schedule
        self.betas = linear_betas(T) if schedule == "linear" else cosine_betas(T)
        self.alphas_cumprod = alphas_cumprod_of(self.betas)

    def __repr__(self) -> str:
        return f"Diffusion(T={self.T}, schedule={self.schedule!r})"

    def loss(self, model, x0: torch.Tensor, y: torch.Tensor | None = None, *, p_uncond: float = 0.0,
             num_classes: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw t uniformly and ε ~ N(0, I), drop labels to the null class with probability `p_uncond`, and
        return `ddpm_loss`. Random numbers come from `generator` (on its own device) for reproducible training.

        Label dropout has one home per model. Models without their own (the U-Net and ViT of chapters 0-1) get it
        here, with `p_uncond > 0`. A model that drops labels itself, as DiT's `LabelEmbedder` does while training
        (`model.y_embedder.dropout_prob > 0`, the official code's design), owns it: asking for `p_uncond > 0` as
        well would drop labels twice, so it raises a ValueError; pass `p_uncond=0` for such a model.
        """
        if y is not None:
            self.check_label_dropout(model, p_uncond)
        B, dev = x0.shape[0], (generator.device if generator is not None else x0.device)  # drawn where `generator` is
        t = torch.randint(0, self.T, (B,), generator=generator, device=dev).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=dev).to(x0.device, x0.dtype)
        if y is not None and p_uncond > 0:
            drop = (torch.rand(B, generator=generator, device=dev) < p_uncond).to(y.device)
            y = torch.where(drop, torch.full_like(y, num_classes), y)
        return ddpm_loss(model, x0, t, noise, self.alphas_cumprod, y)

    @staticmethod
    def check_label_dropout(model, p_uncond: float) -> None:
        """Raise a ValueError when labels would be dropped twice: here (`p_uncond > 0`) and by the model itself
        (`model.y_embedder.dropout_prob > 0`). The training loop asks the same before its first step."""
        own = getattr(getattr(model, "y_embedder", None), "dropout_prob", 0.0)
        if p_uncond > 0 and isinstance(own, (int, float)) and own > 0:
            raise ValueError(
                f"labels would be dropped twice: Diffusion.loss(p_uncond={p_uncond:g}) drops them here, and the "
                f"model drops them itself (model.y_embedder.dropout_prob={own:g}, DiT's label dropout while "
                "training). Keep one: pass p_uncond=0 (train(..., p_uncond=0.0)) to let the model do it, or build "
                "the model with class_dropout_prob=0 to do it here.")

    def eps(self, model, x: torch.Tensor, t: int, y: torch.Tensor | None = None, w: float = 1.0,
            num_classes: int | None = None) -> torch.Tensor:
        """The model's noise prediction at the integer timestep t, guided with scale w when w != 1."""
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        C = x.shape[1]
        if y is None or w == 1.0:
            return model(x, tt, y)[:, :C]
        num_classes = num_classes if num_classes is not None else model.num_classes
        null = torch.full_like(y, num_classes)
        both = model(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([y, null]))[:, :C]
        eps_cond, eps_uncond = both.chunk(2)
        return cfg_eps(eps_cond, eps_uncond, w)

    def timesteps(self, steps: int) -> list[int]:
        """`steps` timesteps evenly spread from T - 1 down to 0."""
        return sorted({int(round(s)) for s in np.linspace(0, self.T - 1, steps)}, reverse=True)

    @torch.no_grad()
    def sample(self, model, shape, y: torch.Tensor | None = None, *, sampler: str = "ddim", steps: int = 20,
               w: float = 1.0, eta: float = 0.0, clip: bool = True, generator: torch.Generator | None = None,
               device=None, trajectory: bool = False, progress: bool = False):
        """Draw samples of `shape` (B, C, H, W) from noise. `sampler="ddpm"` walks all T steps (ancestral);
        `"ddim"` takes `steps` steps. With `trajectory=True` returns (x_0, [x_T, ..., x_0]) for plots."""
        device = device or next(model.parameters()).device
        was_training = model.training
        model.eval()
        x = torch.randn(shape, generator=generator).to(device)
        if y is not None:
            y = y.to(device)
        path = [x.cpu()] if trajectory else None
        ts = list(range(self.T - 1, -1, -1)) if sampler == "ddpm" else self.timesteps(steps)
        for i, t in enumerate(tqdm(ts, desc=f"{sampler} sampling", leave=False, disable=not progress)):
            eps = self.eps(model, x, t, y, w).float()
            if sampler == "ddpm":
                noise = torch.randn(shape, generator=generator).to(device)
                x = ddpm_step(x, eps, t, self.betas, self.alphas_cumprod, noise)
            elif sampler == "ddim":
                t_prev = ts[i + 1] if i + 1 < len(ts) else -1
                noise = torch.randn(shape, generator=generator).to(device) if eta > 0 else None
                x = ddim_step(x, eps, t, t_prev, self.alphas_cumprod, eta=eta, noise=noise, clip=clip)
            else:
                raise ValueError(f"sampler should be 'ddpm' or 'ddim', got {sampler!r}")
            if trajectory:
                path.append(x.cpu())
        model.train(was_training)
        x = x.clamp(-1, 1) if clip else x  # pixels live in [-1, 1]; latents do not (clip=False for them)
        return (x, path) if trajectory else x

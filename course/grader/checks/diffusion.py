"""Checks for chapter 0, `diffusion`: schedules, the forward process, the loss, the samplers' steps, guidance."""
import math

import torch
import torch.nn.functional as F

from course.grader.checks.kit import (CheckFailed, exercise, expect, expect_close, expect_tensor, mistake,
                                      name_a_raise, seeded, wrong_outputs)
from course.grader.checks.kit import hints
from course.grader.exercises import reference_module


def _schedule(T=1000):
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    return betas, torch.cumprod(1 - betas, 0)


def _ref():
    return reference_module("diffusion")


# ---------------------------------------------------------------------------------------------------------------
# linear_betas
# ---------------------------------------------------------------------------------------------------------------
@mistake("diffusion.linear_betas", "the schedule runs backwards (from beta_end down to beta_start)")
def _(T, beta_start=1e-4, beta_end=0.02):
    return torch.linspace(beta_end, beta_start, T, dtype=torch.float64)


@mistake("diffusion.linear_betas", "the schedule is float32 (give torch.linspace dtype=torch.float64)")
def _(T, beta_start=1e-4, beta_end=0.02):
    return torch.linspace(beta_start, beta_end, T)


@mistake("diffusion.linear_betas", "beta_start and beta_end are ignored (DDPM's 1e-4 and 0.02 are typed in)")
def _(T, beta_start=1e-4, beta_end=0.02):
    return torch.linspace(1e-4, 0.02, T, dtype=torch.float64)


@exercise("diffusion.linear_betas")
def check_linear_betas(impl, ref):
    for args in ((1000,), (10,), (1,), (50, 1e-3, 0.05)):
        got = impl.linear_betas(*args)
        expect(getattr(got, "dtype", None) != torch.float32,
               "linear_betas returns float32: the schedule is float32 (give torch.linspace dtype=torch.float64).")
        expect_close(got, ref.linear_betas(*args), what=f"linear_betas{args}".replace(",)", ")"),
                     atol=1e-12, rtol=1e-9, mistakes=wrong_outputs("diffusion.linear_betas", *args))
    return "β from 1e-4 to 0.02 over T steps, float64, T = 1, 10, 1000 and custom ends."


# ---------------------------------------------------------------------------------------------------------------
# cosine_betas
# ---------------------------------------------------------------------------------------------------------------
def _cosine(T, s, max_beta, *, shift=True, numerator=True, clip=True, upside_down=False):
    """Improved DDPM's cosine schedule with one ingredient changed: the common body of the wrong versions."""
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    offset = s if numerator and shift else 0.0
    alpha_bar = torch.cos((steps + offset) / (1 + (s if shift else 0.0)) * math.pi / 2) ** 2
    betas = 1 - (alpha_bar[:-1] / alpha_bar[1:] if upside_down else alpha_bar[1:] / alpha_bar[:-1])
    return betas.clamp(max=max_beta) if clip else betas


@mistake("diffusion.cosine_betas", "the offset s = 0.008 is missing")
def _(T, s=0.008, max_beta=0.999):
    return _cosine(T, s, max_beta, shift=False)


@mistake("diffusion.cosine_betas", "s is missing from the numerator: ᾱ(t) = cos²(((t/T) + s)/(1 + s) · π/2)")
def _(T, s=0.008, max_beta=0.999):
    return _cosine(T, s, max_beta, numerator=False)


@mistake("diffusion.cosine_betas", "β is not clipped at max_beta = 0.999")
def _(T, s=0.008, max_beta=0.999):
    return _cosine(T, s, max_beta, clip=False)


@mistake("diffusion.cosine_betas", "the ratio is upside down: β_t = 1 − ᾱ(t+1)/ᾱ(t), not 1 − ᾱ(t)/ᾱ(t+1)")
def _(T, s=0.008, max_beta=0.999):
    return _cosine(T, s, max_beta, upside_down=True)


@mistake("diffusion.cosine_betas", "the schedule is shifted by one step")
def _(T, s=0.008, max_beta=0.999):
    return _cosine(T + 1, s, max_beta)[1:]  # β_1..β_T of a schedule of T + 1 steps


@exercise("diffusion.cosine_betas")
def check_cosine_betas(impl, ref):
    for args in ((1000,), (10, 0.008, 0.999), (100, 0.02, 0.5)):
        expect_close(impl.cosine_betas(*args), ref.cosine_betas(*args), what=f"cosine_betas{args}".replace(",)", ")"),
                     atol=1e-9, rtol=1e-7, mistakes=wrong_outputs("diffusion.cosine_betas", *args))
    return "matches Improved DDPM's cosine schedule for T = 10, 100, 1000, with the offset and the clip."


# ---------------------------------------------------------------------------------------------------------------
# q_sample
# ---------------------------------------------------------------------------------------------------------------
def _abar(alphas_cumprod, t, x0):
    return alphas_cumprod[t].to(x0.dtype).view(-1, 1, 1, 1)


@mistake("diffusion.q_sample", "√ᾱ_t is used without the square root (ᾱ_t · x0 + (1 − ᾱ_t) · ε)")
def _(x0, t, noise, alphas_cumprod):
    a = _abar(alphas_cumprod, t, x0)
    return a * x0 + (1 - a) * noise


@mistake("diffusion.q_sample", "x0 and ε are swapped")
def _(x0, t, noise, alphas_cumprod):
    a = _abar(alphas_cumprod, t, x0)
    return a.sqrt() * noise + (1 - a).sqrt() * x0


@mistake("diffusion.q_sample", "ᾱ is taken at t + 1")
def _(x0, t, noise, alphas_cumprod):
    a = _abar(alphas_cumprod, (t + 1).clamp(max=len(alphas_cumprod) - 1), x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


@mistake("diffusion.q_sample", "q_sample changes its input x0 in place")
def _(x0, t, noise, alphas_cumprod):
    a = _abar(alphas_cumprod, t, x0)
    return x0.mul_(a.sqrt()).add_((1 - a).sqrt() * noise)


@mistake("diffusion.q_sample", "ᾱ_t keeps the schedule's float64 (cast it to the images' dtype)")
def _(x0, t, noise, alphas_cumprod):
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


@mistake("diffusion.q_sample", "ᾱ_t is not reshaped to (B, 1, 1, 1), so it broadcasts along the width")
def _(x0, t, noise, alphas_cumprod):
    a = alphas_cumprod[t].to(x0.dtype)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


@exercise("diffusion.q_sample")
def check_q_sample(impl, ref):
    _, ab = _schedule()
    with seeded(0):
        x0 = torch.randn(5, 3, 4, 6)
        noise = torch.randn_like(x0)
    t = torch.tensor([0, 999, 500, 10, 250])
    one = x0[:1], torch.tensor([123]), noise[:1]
    for what, (a, tt, n) in (("q_sample on (5, 3, 4, 6)", (x0, t, noise)), ("q_sample with batch 1", one)):
        want = ref.q_sample(a, tt, n, ab)
        wrong = wrong_outputs("diffusion.q_sample", a, tt, n, ab)
        mine = a.clone()
        name_a_raise("diffusion.q_sample", impl.q_sample, None, (mine, tt, n, ab), what)
        got = impl.q_sample(mine, tt, n, ab)
        expect(torch.equal(mine, a), f"{what}: q_sample changes its input x0 in place. Hint: write "
                                     "`a.sqrt() * x0 + ...` (a new tensor), not `x0.mul_(...)`.")
        expect(getattr(got, "dtype", None) != torch.float64,
               f"{what} returns float64 for float32 images: ᾱ_t keeps the schedule's float64 (cast it to the "
               "images' dtype).")
        expect_close(got, want, what=what, mistakes=wrong)
    x64 = x0.double()
    expect_tensor(impl.q_sample(x64, t, noise.double(), ab), like=x64, what="q_sample on float64 images")
    return "x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε per image, batch 1 and 5, inputs left as they are, dtype kept."


# ---------------------------------------------------------------------------------------------------------------
# ddpm_loss
# ---------------------------------------------------------------------------------------------------------------
@mistake("diffusion.ddpm_loss", "the target is x0 instead of ε")
def _(model, x0, t, noise, alphas_cumprod, y=None):
    x_t = _ref().q_sample(x0, t, noise, alphas_cumprod)
    return F.mse_loss(model(x_t, t, y)[:, : x0.shape[1]], x0)


@mistake("diffusion.ddpm_loss", "the squared error is summed instead of averaged")
def _(model, x0, t, noise, alphas_cumprod, y=None):
    x_t = _ref().q_sample(x0, t, noise, alphas_cumprod)
    return F.mse_loss(model(x_t, t, y)[:, : x0.shape[1]], noise, reduction="sum")


@mistake("diffusion.ddpm_loss", "the model sees the clean image x0 instead of x_t")
def _(model, x0, t, noise, alphas_cumprod, y=None):
    return F.mse_loss(model(x0, t, y)[:, : x0.shape[1]], noise)


@mistake("diffusion.ddpm_loss", "the model's whole output is compared with ε (keep its first C channels)",
         says="first C channels")
def _(model, x0, t, noise, alphas_cumprod, y=None):
    x_t = _ref().q_sample(x0, t, noise, alphas_cumprod)
    return ((model(x_t, t, y) - noise) ** 2).mean()


class _Recorder(torch.nn.Module):
    """A small denoiser that remembers what it was called with."""

    def __init__(self, channels=2, out_channels=None):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, out_channels or channels, 3, padding=1)
        self.calls = []

    def forward(self, x, t, y=None):
        self.calls.append((x.detach().clone(), t.detach().clone(), None if y is None else y.detach().clone()))
        return self.conv(x) * (1 + t.float().view(-1, 1, 1, 1) / 1000)


@exercise("diffusion.ddpm_loss")
def check_ddpm_loss(impl, ref):
    _, ab = _schedule()
    for out_channels in (None, 4):
        with seeded(1):
            model = _Recorder(2, out_channels)
            x0 = torch.randn(4, 2, 5, 5)
            noise = torch.randn_like(x0)
        t = torch.tensor([1, 400, 999, 7])
        y = torch.tensor([3, 1, 0, 10])
        want = ref.ddpm_loss(model, x0, t, noise, ab, y)
        wrong = wrong_outputs("diffusion.ddpm_loss", model, x0, t, noise, ab, y)
        model.calls.clear()
        model.zero_grad()
        try:
            got = impl.ddpm_loss(model, x0, t, noise, ab, y)
        except RuntimeError as e:
            if not out_channels:
                raise
            raise CheckFailed(f"with a model that returns 2C = 4 channels for C = 2 image channels, your ddpm_loss "
                              f"raised: {e}. Hint: only the first C channels of a model's output are the noise "
                              "prediction (the others are a learned variance).") from None
        expect(len(model.calls) >= 1, "ddpm_loss should call model(x_t, t, y) once.")
        what = "the loss" + (" of a model that outputs 2C channels" if out_channels else "")
        x_in, t_in, y_in = model.calls[-1]
        try:
            expect_close(got, want, what=what, atol=1e-6, mistakes=wrong)
        except CheckFailed as e:  # a wrong loss no declared mistake explains: say which step departs first
            if "common mistake" in str(e) or not isinstance(got, torch.Tensor) or got.shape != want.shape:
                raise
            x_t = ref.q_sample(x0, t, noise, ab)
            where = ("the image given to the model. Look at x_t: x0 noised to each image's own timestep with the "
                     "given noise" if x_in.shape != x_t.shape or not torch.allclose(x_in, x_t, atol=1e-6) else
                     "the timesteps given to the model. Look at t: the model gets them as they are"
                     if not torch.equal(t_in, t) else
                     "the labels given to the model. Look at y: the model gets them as they are"
                     if y_in is None or not torch.equal(y_in, y) else
                     "what the model's prediction is compared with, and how the errors are reduced to one number")
            raise CheckFailed(f"{str(e).split(' Hint: ')[0]} The first step that differs: {where}. "
                              f"(more: hint(\"diffusion.ddpm_loss\"))") from None
        expect(got.dim() == 0, f"the loss should be a scalar (shape ()), got shape {tuple(got.shape)}.")
        expect_close(x_in, ref.q_sample(x0, t, noise, ab), what="the image given to the model",
                     hint="the model sees x_t, x0 noised to each image's own timestep with the given noise.")
        expect(torch.equal(t_in, t), "the model should get the timesteps t as they are.")
        expect(y_in is not None and torch.equal(y_in, y), "the model should get the labels y as they are.")
        got.backward()
        expect(model.conv.weight.grad is not None, "no gradient reaches the model: is the loss detached?")
    return "MSE between ε and the model's first C channels at x_t, with gradients."


# ---------------------------------------------------------------------------------------------------------------
# ddpm_step
# ---------------------------------------------------------------------------------------------------------------
def _ddpm(x_t, eps, t, betas, alphas_cumprod, noise, *, last=True, sigma=None, inv_sqrt_alpha=True, eps_sqrt=True,
          bar_in_front=False):
    """DDPM's Algorithm 2 step with one ingredient changed: the common body of the wrong versions."""
    beta, alpha_bar = betas[t].item(), alphas_cumprod[t].item()
    coef = beta / math.sqrt(1 - alpha_bar) if eps_sqrt else beta / (1 - alpha_bar)
    front = math.sqrt(alpha_bar) if bar_in_front else math.sqrt(1 - beta)
    mean = (x_t - coef * eps) / (front if inv_sqrt_alpha else 1.0)
    if t == 0 and last:
        return mean
    return mean + math.sqrt(beta if sigma is None else sigma) * noise


@mistake("diffusion.ddpm_step", "noise is added at the last step (t = 0)")
def _(x_t, eps, t, betas, alphas_cumprod, noise):
    return _ddpm(x_t, eps, t, betas, alphas_cumprod, noise, last=False)


@mistake("diffusion.ddpm_step", "σ_t = √(1 − ᾱ_t) instead of √β_t")
def _(x_t, eps, t, betas, alphas_cumprod, noise):
    return _ddpm(x_t, eps, t, betas, alphas_cumprod, noise, sigma=1 - alphas_cumprod[t].item())


@mistake("diffusion.ddpm_step", "the 1/√α_t factor is missing")
def _(x_t, eps, t, betas, alphas_cumprod, noise):
    return _ddpm(x_t, eps, t, betas, alphas_cumprod, noise, inv_sqrt_alpha=False)


@mistake("diffusion.ddpm_step", "ε is scaled by β_t/(1 − ᾱ_t) without the square root")
def _(x_t, eps, t, betas, alphas_cumprod, noise):
    return _ddpm(x_t, eps, t, betas, alphas_cumprod, noise, eps_sqrt=False)


@mistake("diffusion.ddpm_step", "the mean is divided by √ᾱ_t (the cumulative product) instead of √α_t, with α_t = "
                               "1 − β_t the one step's")
def _(x_t, eps, t, betas, alphas_cumprod, noise):
    return _ddpm(x_t, eps, t, betas, alphas_cumprod, noise, bar_in_front=True)


@exercise("diffusion.ddpm_step")
def check_ddpm_step(impl, ref):
    cosine = ref.cosine_betas(1000)
    for betas, ab in (_schedule(), (cosine, torch.cumprod(1 - cosine, 0))):
        with seeded(2):
            x = torch.randn(3, 1, 4, 4)
            eps = torch.randn_like(x)
            z = torch.randn_like(x)
        for t in (999, 500, 1, 0):
            args = (x, eps, t, betas, ab, z)
            expect_close(impl.ddpm_step(*args), ref.ddpm_step(*args), what=f"ddpm_step at t = {t}", atol=1e-5,
                         mistakes=wrong_outputs("diffusion.ddpm_step", *args))
    return "matches Algorithm 2 for the linear and cosine schedules, noise-free at t = 0."


# ---------------------------------------------------------------------------------------------------------------
# ddim_step
# ---------------------------------------------------------------------------------------------------------------
def _ddim(x_t, eps, t, t_prev, alphas_cumprod, eta=0.0, noise=None, clip=True, *, prev_at_t=False,
          always_clip=False, keep_eps_scale=False, keep_model_eps=False):
    """DDIM's Eq. (12) step with one ingredient changed: the common body of the wrong versions."""
    a_t = alphas_cumprod[t].item()
    a_prev = a_t if prev_at_t else (alphas_cumprod[t_prev].item() if t_prev >= 0 else 1.0)
    x0 = (x_t - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
    if clip or always_clip:
        x0 = x0.clamp(-1, 1)
        if not keep_model_eps:
            eps = (x_t - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
    sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t)) * math.sqrt(max(1 - a_t / a_prev, 0.0))
    direction = math.sqrt(1 - a_prev) if keep_eps_scale else math.sqrt(max(1 - a_prev - sigma**2, 0.0))
    x_prev = math.sqrt(a_prev) * x0 + direction * eps
    return x_prev + sigma * noise if sigma > 0 else x_prev


@mistake("diffusion.ddim_step", "x̂0 is not clipped to [-1, 1]")
def _(x_t, eps, t, t_prev, alphas_cumprod, eta=0.0, noise=None, clip=True):
    return _ddim(x_t, eps, t, t_prev, alphas_cumprod, eta, noise, clip=False)


@mistake("diffusion.ddim_step", "x̂0 is clipped even with clip=False")
def _(x_t, eps, t, t_prev, alphas_cumprod, eta=0.0, noise=None, clip=True):
    return _ddim(x_t, eps, t, t_prev, alphas_cumprod, eta, noise, clip, always_clip=True)


@mistake("diffusion.ddim_step", "ᾱ_prev is taken at t instead of t_prev")
def _(x_t, eps, t, t_prev, alphas_cumprod, eta=0.0, noise=None, clip=True):
    return _ddim(x_t, eps, t, t_prev, alphas_cumprod, eta, noise, clip, prev_at_t=True)


@mistake("diffusion.ddim_step", "η is ignored (σ = 0)")
def _(x_t, eps, t, t_prev, alphas_cumprod, eta=0.0, noise=None, clip=True):
    return _ddim(x_t, eps, t, t_prev, alphas_cumprod, 0.0, None, clip)


@mistake("diffusion.ddim_step", "the ε direction keeps √(1 − ᾱ_prev) when σ > 0 (it is √(1 − ᾱ_prev − σ²))")
def _(x_t, eps, t, t_prev, alphas_cumprod, eta=0.0, noise=None, clip=True):
    return _ddim(x_t, eps, t, t_prev, alphas_cumprod, eta, noise, clip, keep_eps_scale=True)


@mistake("diffusion.ddim_step", "t_prev = -1 is read as alphas_cumprod[-1] (the noisiest step) instead of ᾱ = 1",
         says="t_prev = -1 means ᾱ_prev = 1")
def _(x_t, eps, t, t_prev, alphas_cumprod, eta=0.0, noise=None, clip=True):
    a_t, a_prev = alphas_cumprod[t].item(), alphas_cumprod[t_prev].item()
    x0 = (x_t - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
    if clip:
        x0 = x0.clamp(-1, 1)
        eps = (x_t - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
    sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t)) * math.sqrt(1 - a_t / a_prev)  # raises: ᾱ_prev < ᾱ_t
    x_prev = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
    return x_prev + sigma * noise if sigma > 0 else x_prev


@mistake("diffusion.ddim_step", "the model's ε is kept after x̂0 is clipped (re-derive ε from the clipped x̂0)")
def _(x_t, eps, t, t_prev, alphas_cumprod, eta=0.0, noise=None, clip=True):
    return _ddim(x_t, eps, t, t_prev, alphas_cumprod, eta, noise, clip, keep_model_eps=True)


@exercise("diffusion.ddim_step")
def check_ddim_step(impl, ref):
    _, ab = _schedule()
    with seeded(3):
        x = torch.randn(4, 1, 3, 5) * 1.5
        eps = torch.randn_like(x)
        z = torch.randn_like(x)

    def step(t, t_prev, **kwargs):
        try:
            return impl.ddim_step(x, eps, t, t_prev, ab, **kwargs)
        except (ValueError, RuntimeError, IndexError) as e:
            if t_prev >= 0:
                raise
            raise CheckFailed(f"ddim_step from t = {t} to t_prev = -1 raised {type(e).__name__}: {e}. Hint: "
                              "t_prev = -1 means ᾱ_prev = 1 (the clean image), not alphas_cumprod[-1].") from None

    for t, t_prev in ((999, 949), (500, 250), (20, -1)):
        wrong = wrong_outputs("diffusion.ddim_step", x, eps, t, t_prev, ab)
        expect_close(step(t, t_prev), ref.ddim_step(x, eps, t, t_prev, ab), what=f"ddim_step from t = {t} to "
                     f"{t_prev} (η = 0)", atol=1e-5, mistakes=wrong)
        expect_close(step(t, t_prev, clip=False), ref.ddim_step(x, eps, t, t_prev, ab, clip=False),
                     what=f"ddim_step with clip=False from t = {t} to {t_prev}", atol=1e-5,
                     mistakes=wrong_outputs("diffusion.ddim_step", x, eps, t, t_prev, ab, clip=False),
                     hint="clip=False leaves x̂0 (and so ε) as it is.")
        for eta in (1.0, 0.3):
            want = ref.ddim_step(x, eps, t, t_prev, ab, eta=eta, noise=z)
            expect_close(step(t, t_prev, eta=eta, noise=z), want,
                         what=f"ddim_step with η = {eta} from t = {t} to {t_prev}", atol=1e-5,
                         mistakes=wrong_outputs("diffusion.ddim_step", x, eps, t, t_prev, ab, eta=eta, noise=z))
    return "deterministic and stochastic (η = 0.3, 1) steps, with and without clipping, down to t_prev = -1."


# ---------------------------------------------------------------------------------------------------------------
# cfg_eps
# ---------------------------------------------------------------------------------------------------------------
@mistake("diffusion.cfg_eps", "the other convention, ε_cond + w(ε_cond − ε_uncond)")
def _(eps_cond, eps_uncond, w):
    return eps_cond + w * (eps_cond - eps_uncond)


@mistake("diffusion.cfg_eps", "conditional and unconditional are swapped")
def _(eps_cond, eps_uncond, w):
    return eps_cond + w * (eps_uncond - eps_cond)


@mistake("diffusion.cfg_eps", "the ε_uncond base is missing: w (ε_cond − ε_uncond)")
def _(eps_cond, eps_uncond, w):
    return w * (eps_cond - eps_uncond)


@exercise("diffusion.cfg_eps")
def check_cfg_eps(impl, ref):
    with seeded(4):
        c, u = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    for w in (2.5, 0.0, 1.0, 4.0):
        expect_close(impl.cfg_eps(c, u, w), ref.cfg_eps(c, u, w), what=f"cfg_eps with w = {w}",
                     mistakes=wrong_outputs("diffusion.cfg_eps", c, u, w))
    return "ε_uncond + w (ε_cond − ε_uncond) for w = 0, 1, 2.5, 4."


# ---------------------------------------------------------------------------------------------------------------
# Hints on request (`hint("name")`, `python -m course hint name`): level 1 a nudge, the only one a failed check
# quotes; the last close to the recipe.
# ---------------------------------------------------------------------------------------------------------------
hints("diffusion.linear_betas",
      "The schedule must hit both ends exactly: β_0 = beta_start and β_{T-1} = beta_end, in float64.",
      "PyTorch has a function that spaces T numbers evenly between two ends, both included; give it the dtype.",
      "torch.linspace(beta_start, beta_end, T, dtype=torch.float64).")
hints("diffusion.cosine_betas",
      "Compute ᾱ on T + 1 points first (t = 0 .. T), then turn neighbouring ratios into β; float64 throughout.",
      "ᾱ(t) = cos²(((t/T) + s)/(1 + s) · π/2); β_t = 1 − ᾱ(t+1)/ᾱ(t) for t = 0 .. T−1.",
      "steps = arange(T + 1) / T in float64; alpha_bar = cos((steps + s)/(1 + s) · π/2)²; betas = 1 − "
      "alpha_bar[1:] / alpha_bar[:-1]; clamp at max_beta.")
hints("diffusion.q_sample",
      "Each image has its own t: ᾱ_t must broadcast over (C, H, W) of its own image only, in the images' dtype.",
      "x_t = √ᾱ_t · x0 + √(1 − ᾱ_t) · ε (Eq 4 of DDPM), with ᾱ_t = alphas_cumprod[t].",
      "Read ᾱ_t with the given `_at(alphas_cumprod, t, x0)` (shape (B, 1, 1, 1)), then a.sqrt() · x0 + (1 − "
      "a).sqrt() · noise.")
hints("diffusion.ddpm_loss",
      "The model sees the noisy x_t, not x0, and predicts the noise that made it; compare with that noise.",
      "Noise x0 with q_sample(x0, t, noise, alphas_cumprod); the model may return more channels than the image "
      "(learned σ): keep the first C.",
      "x_t = q_sample(...); eps = model(x_t, t, y)[:, :C]; the mean squared error between eps and noise over "
      "all elements.")
hints("diffusion.ddpm_step",
      "Algorithm 2 of DDPM: remove the predicted noise, rescale by 1/√α_t, then add fresh noise, except at t = "
      "0.",
      "μ = (x_t − β_t/√(1 − ᾱ_t) · ε)/√α_t with α_t = 1 − β_t; the added noise has standard deviation √β_t.",
      "beta, alpha_bar = betas[t], alphas_cumprod[t]; mean = (x_t − beta/√(1 − alpha_bar) · eps)/√(1 − beta); "
      "return mean at t = 0, else mean + √beta · noise.")
hints("diffusion.ddim_step",
      "First estimate x̂0 from x_t and ε, then move it to t_prev; t_prev = −1 means ᾱ_prev = 1 (the clean "
      "image).",
      "x̂0 = (x_t − √(1 − ᾱ_t) ε)/√ᾱ_t; with clip, clamp x̂0 to [−1, 1] and re-derive ε from the clamped x̂0; σ "
      "= η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev).",
      "x_prev = √ᾱ_prev x̂0 + √(1 − ᾱ_prev − σ²) ε, plus σ · noise when σ > 0; ε after clipping is (x_t − √ᾱ_t "
      "x̂0)/√(1 − ᾱ_t).")
hints("diffusion.cfg_eps",
      "Guidance extrapolates from the unconditional prediction towards the conditional one: w = 0 and w = 1 are "
      "the two predictions themselves.",
      "ε̂ = ε_uncond + w (ε_cond − ε_uncond).")

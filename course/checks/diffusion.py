"""Checks for chapter 0, `diffusion`."""
import math

import torch

from course.checks.kit import CheckFailed, expect, expect_close, expect_tensor, exercise, seeded


def _schedule(T=1000):
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    return betas, torch.cumprod(1 - betas, 0)


@exercise("diffusion.linear_betas")
def check_linear_betas(impl, ref):
    for T in (1000, 10, 1):
        want = ref.linear_betas(T)
        expect_close(impl.linear_betas(T), want, what=f"linear_betas({T})", atol=1e-12, rtol=1e-9,
                     hint="β_0 = beta_start and β_{T-1} = beta_end exactly (torch.linspace), float64.")
    want = ref.linear_betas(50, 1e-3, 0.05)
    expect_close(impl.linear_betas(50, 1e-3, 0.05), want, what="linear_betas(50, 1e-3, 0.05)", atol=1e-12,
                 hint="use the beta_start and beta_end arguments, not the DDPM constants.")
    return "β from 1e-4 to 0.02 over T steps, float64, T = 1, 10, 1000 and custom ends."


@exercise("diffusion.cosine_betas")
def check_cosine_betas(impl, ref):
    T = 1000
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = lambda s: torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    no_shift = (1 - f(0.0)[1:] / f(0.0)[:-1]).clamp(max=0.999)
    no_clip = 1 - f(0.008)[1:] / f(0.008)[:-1]
    shifted_by_one = ref.cosine_betas(T + 1)[1:]
    want = ref.cosine_betas(T)
    expect_close(impl.cosine_betas(T), want, what="cosine_betas(1000)", atol=1e-9, rtol=1e-7,
                 mistakes={"the offset s = 0.008 is missing": no_shift,
                           "β is not clipped at max_beta = 0.999": no_clip,
                           "the schedule is shifted by one step": shifted_by_one},
                 hint="ᾱ(t) = cos²(((t/T) + s)/(1 + s) · π/2) for t = 0..T, then β_t = 1 − ᾱ(t+1)/ᾱ(t).")
    for T, s, m in ((10, 0.008, 0.999), (100, 0.02, 0.5)):
        expect_close(impl.cosine_betas(T, s, m), ref.cosine_betas(T, s, m), what=f"cosine_betas({T}, {s}, {m})",
                     atol=1e-9, rtol=1e-7, hint="use the s and max_beta arguments.")
    return "matches Improved DDPM's cosine schedule for T = 10, 100, 1000, with the offset and the clip."


@exercise("diffusion.q_sample")
def check_q_sample(impl, ref):
    _, ab = _schedule()
    with seeded(0):
        x0 = torch.randn(5, 3, 4, 6)
        noise = torch.randn_like(x0)
    t = torch.tensor([0, 999, 500, 10, 250])
    a = ab[t].float().view(-1, 1, 1, 1)
    mistakes = {"√ᾱ_t is used without the square root (ᾱ_t · x0 + (1 − ᾱ_t) · ε)": a * x0 + (1 - a) * noise,
                "x0 and ε are swapped": a.sqrt() * noise + (1 - a).sqrt() * x0,
                "ᾱ is taken at t + 1": q_shift(ref, x0, t, noise, ab)}
    expect_close(impl.q_sample(x0, t, noise, ab), ref.q_sample(x0, t, noise, ab), what="q_sample on (5, 3, 4, 6)",
                 mistakes=mistakes, hint="x_t = √ᾱ_t · x0 + √(1 − ᾱ_t) · ε, with ᾱ_t = alphas_cumprod[t] reshaped "
                                         "to (B, 1, 1, 1) so that each image gets its own t.")
    one = x0[:1], torch.tensor([123]), noise[:1]
    expect_close(impl.q_sample(*one, ab), ref.q_sample(*one, ab), what="q_sample with batch 1")
    x16 = x0.double()
    expect_tensor(impl.q_sample(x16, t, noise.double(), ab), like=x16, what="q_sample on float64 images")
    return "x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε per image, batch 1 and 5, dtype kept."


def q_shift(ref, x0, t, noise, ab):
    return ref.q_sample(x0, (t + 1).clamp(max=len(ab) - 1), noise, ab)


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
        model.calls.clear()
        model.zero_grad()
        try:
            got = impl.ddpm_loss(model, x0, t, noise, ab, y)
        except RuntimeError as e:
            if not out_channels:
                raise
            raise CheckFailed(f"with a model that returns 2C = 4 channels for C = 2 image channels, your ddpm_loss "
                              f"raised: {e}. Hint: the noise prediction is the first C channels of the output, "
                              "`model(x_t, t, y)[:, :C]`.") from None
        expect(len(model.calls) >= 1, "ddpm_loss should call model(x_t, t, y) once.")
        x_in, t_in, y_in = model.calls[-1]
        expect_close(x_in, ref.q_sample(x0, t, noise, ab), what="the image given to the model",
                     mistakes={"the model sees the clean image x0 instead of x_t": x0},
                     hint="noise x0 with q_sample first.")
        expect(torch.equal(t_in, t), "the model should get the timesteps t as they are.")
        expect(y_in is not None and torch.equal(y_in, y), "the model should get the labels y as they are.")
        x_t = ref.q_sample(x0, t, noise, ab)
        pred = model.conv(x_t) * (1 + t.float().view(-1, 1, 1, 1) / 1000)
        pred = pred[:, :2]
        expect_close(got, want, what="the loss" + (" of a model that outputs 2C channels" if out_channels else ""),
                     atol=1e-6, mistakes={"the target is x0 instead of ε": ((pred - x0) ** 2).mean(),
                                          "the squared error is summed instead of averaged": ((pred - noise) ** 2).sum()},
                     hint="the mean over all elements of (ε − model(x_t, t, y)[:, :C])², with C the image channels.")
        expect(got.dim() == 0, f"the loss should be a scalar (shape ()), got shape {tuple(got.shape)}.")
        got.backward()
        expect(model.conv.weight.grad is not None, "no gradient reaches the model: is the loss detached?")
    return "MSE between ε and the model's first C channels at x_t, with gradients."


@exercise("diffusion.ddpm_step")
def check_ddpm_step(impl, ref):
    for betas, ab in (_schedule(), (lambda b: (b, torch.cumprod(1 - b, 0)))(ref.cosine_betas(1000))):
        with seeded(2):
            x = torch.randn(3, 1, 4, 4)
            eps = torch.randn_like(x)
            z = torch.randn_like(x)
        for t in (999, 500, 1, 0):
            b, a = betas[t].item(), ab[t].item()
            mean = (x - b / math.sqrt(1 - a) * eps) / math.sqrt(1 - b)
            mistakes = {"noise is added at the last step (t = 0)": mean + math.sqrt(b) * z,
                        "σ_t = √(1 − ᾱ_t) instead of √β_t": mean + math.sqrt(1 - a) * z if t else None,
                        "the 1/√α_t factor is missing": x - b / math.sqrt(1 - a) * eps + (math.sqrt(b) * z if t else 0),
                        "ε is scaled by β_t/(1 − ᾱ_t) without the square root":
                            (x - b / (1 - a) * eps) / math.sqrt(1 - b) + (math.sqrt(b) * z if t else 0)}
            expect_close(impl.ddpm_step(x, eps, t, betas, ab, z), ref.ddpm_step(x, eps, t, betas, ab, z),
                         what=f"ddpm_step at t = {t}", atol=1e-5, mistakes=mistakes,
                         hint="x_{t-1} = (x_t − β_t/√(1 − ᾱ_t) · ε)/√α_t + √β_t · z, and no z when t = 0.")
    return "matches Algorithm 2 for the linear and cosine schedules, noise-free at t = 0."


@exercise("diffusion.ddim_step")
def check_ddim_step(impl, ref):
    _, ab = _schedule()
    with seeded(3):
        x = torch.randn(4, 1, 3, 5) * 1.5
        eps = torch.randn_like(x)
        z = torch.randn_like(x)
    for t, t_prev in ((999, 949), (500, 250), (20, -1)):
        a, p = ab[t].item(), (ab[t_prev].item() if t_prev >= 0 else 1.0)
        x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
        unclipped = math.sqrt(p) * x0 + math.sqrt(1 - p) * eps
        expect_close(impl.ddim_step(x, eps, t, t_prev, ab), ref.ddim_step(x, eps, t, t_prev, ab),
                     what=f"ddim_step from t = {t} to {t_prev} (η = 0)", atol=1e-5,
                     mistakes={"x̂0 is not clipped to [-1, 1]": unclipped,
                               "ᾱ_prev is taken at t instead of t_prev": math.sqrt(a) * x0.clamp(-1, 1)
                               + math.sqrt(1 - a) * eps},
                     hint="x̂0 = (x_t − √(1 − ᾱ_t) ε)/√ᾱ_t clipped to [-1, 1], then √ᾱ_prev x̂0 + √(1 − ᾱ_prev) ε; "
                          "t_prev = -1 means ᾱ_prev = 1.")
        expect_close(impl.ddim_step(x, eps, t, t_prev, ab, clip=False), unclipped,
                     what=f"ddim_step with clip=False from t = {t} to {t_prev}", atol=1e-5)
        for eta in (1.0, 0.3):
            want = ref.ddim_step(x, eps, t, t_prev, ab, eta=eta, noise=z)
            expect_close(impl.ddim_step(x, eps, t, t_prev, ab, eta=eta, noise=z), want,
                         what=f"ddim_step with η = {eta} from t = {t} to {t_prev}", atol=1e-5,
                         mistakes={"η is ignored (σ = 0)": ref.ddim_step(x, eps, t, t_prev, ab)},
                         hint="σ = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev); the ε direction gets "
                              "√(1 − ᾱ_prev − σ²), and σ z is added.")
    return "deterministic and stochastic (η = 0.3, 1) steps, with and without clipping, down to t_prev = -1."


@exercise("diffusion.cfg_eps")
def check_cfg_eps(impl, ref):
    with seeded(4):
        c, u = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    for w in (2.5, 0.0, 1.0, 4.0):
        expect_close(impl.cfg_eps(c, u, w), ref.cfg_eps(c, u, w), what=f"cfg_eps with w = {w}",
                     mistakes={"the other convention, ε_cond + w(ε_cond − ε_uncond)": c + w * (c - u),
                               "conditional and unconditional are swapped": c + w * (u - c)},
                     hint="ε̂ = ε_uncond + w (ε_cond − ε_uncond): w = 0 gives ε_uncond, w = 1 gives ε_cond.")
    return "ε_uncond + w (ε_cond − ε_uncond) for w = 0, 1, 2.5, 4."

"""Chapter 0: plausible wrong versions of each exercise fail, and the given Diffusion behaves."""
import math

import pytest
import torch

from helpers import assert_fails, grade_edited, grade_replaced
from solutions import diffusion as ref

WRONG = [
    # (exercise, reference fragment, wrong fragment, a word the message must contain)
    ("diffusion.linear_betas", "torch.linspace(beta_start, beta_end, T, dtype=torch.float64)",
     "torch.linspace(beta_end, beta_start, T, dtype=torch.float64)", "differs"),
    ("diffusion.linear_betas", "torch.linspace(beta_start, beta_end, T, dtype=torch.float64)",
     "torch.linspace(beta_start, beta_end, T)", "dtype"),
    ("diffusion.linear_betas", "torch.linspace(beta_start, beta_end, T, dtype=torch.float64)",
     "torch.linspace(1e-4, 0.02, T, dtype=torch.float64)", "beta_start"),
    ("diffusion.cosine_betas", "torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2",
     "torch.cos(steps / (1 + s) * math.pi / 2) ** 2", "differs"),
    ("diffusion.cosine_betas", "return betas.clamp(max=max_beta)", "return betas", "not clipped"),
    ("diffusion.cosine_betas", "1 - alpha_bar[1:] / alpha_bar[:-1]", "1 - alpha_bar[:-1] / alpha_bar[1:]",
     "differs"),
    ("diffusion.q_sample", "return a.sqrt() * x0 + (1 - a).sqrt() * noise", "return a * x0 + (1 - a) * noise",
     "without the square root"),
    ("diffusion.q_sample", "return a.sqrt() * x0 + (1 - a).sqrt() * noise",
     "return a.sqrt() * noise + (1 - a).sqrt() * x0", "swapped"),
    ("diffusion.ddpm_loss", "return F.mse_loss(eps, noise)", "return F.mse_loss(eps, x0)", "target is x0"),
    ("diffusion.ddpm_loss", "return F.mse_loss(eps, noise)", "return F.mse_loss(eps, noise, reduction='sum')",
     "summed"),
    ("diffusion.ddpm_loss", "eps = model(x_t, t, y)[:, : x0.shape[1]]", "eps = model(x0, t, y)[:, : x0.shape[1]]",
     "clean image"),
    ("diffusion.ddpm_loss", "eps = model(x_t, t, y)[:, : x0.shape[1]]", "eps = model(x_t, t, y)", "first C channels"),
    ("diffusion.ddpm_step", "    if t == 0:\n        return mean\n", "", "last step"),
    ("diffusion.ddpm_step", "return mean + math.sqrt(beta) * noise",
     "return mean + math.sqrt(1 - alpha_bar) * noise", "σ_t"),
    ("diffusion.ddpm_step", "/ math.sqrt(1 - beta)\n", "\n", "1/√α_t"),
    ("diffusion.ddim_step", "    if clip:\n        x0 = x0.clamp(-1, 1)\n", "", "not clipped"),
    ("diffusion.ddim_step", "sigma = eta * math.sqrt", "sigma = 0 * eta * math.sqrt", "η is ignored"),
    ("diffusion.ddim_step", "a_prev = alphas_cumprod[t_prev].item() if t_prev >= 0 else 1.0",
     "a_prev = alphas_cumprod[t_prev].item()", "raised"),
    ("diffusion.cfg_eps", "return eps_uncond + w * (eps_cond - eps_uncond)",
     "return eps_cond + w * (eps_cond - eps_uncond)", "convention"),
    ("diffusion.cfg_eps", "return eps_uncond + w * (eps_cond - eps_uncond)",
     "return eps_cond + w * (eps_uncond - eps_cond)", "swapped"),
]


@pytest.mark.parametrize("name,old,new,word", WRONG, ids=[f"{w[0]}-{i}" for i, w in enumerate(WRONG)])
def test_wrong_version_fails(name, old, new, word):
    assert_fails(grade_edited(name, old, new), word)


def test_every_exercise_has_two_wrong_versions():
    from course.exercises import exercises

    counts = {name: sum(w[0] == name for w in WRONG) for name in exercises("diffusion")}
    assert min(counts.values()) >= 2, counts


def test_in_place_edit_of_the_input_fails():
    def q_sample(x0, t, noise, alphas_cumprod):
        a = alphas_cumprod[t].to(x0.dtype).view(-1, 1, 1, 1)
        return x0.mul_(a.sqrt()).add_((1 - a).sqrt() * noise)

    assert not grade_replaced("diffusion.q_sample", q_sample).passed


def test_schedules_have_the_papers_endpoints():
    ab = ref.alphas_cumprod_of(ref.cosine_betas(1000))
    assert ab[0] > 0.9999 and ab[-1] < 1e-6 and torch.all(ab[1:] < ab[:-1])
    lin = ref.alphas_cumprod_of(ref.linear_betas(1000))
    assert 4e-5 < lin[-1] < 4.1e-5  # DDPM's ᾱ_T ≈ 4.04e-5


class Oracle(torch.nn.Module):
    """The exact ε-predictor for data that is a single image x*: ε = (x_t − √ᾱ_t x*) / √(1 − ᾱ_t)."""

    def __init__(self, target, alphas_cumprod):
        super().__init__()
        self.target, self.ab = target, alphas_cumprod
        self.num_classes = 10
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, y=None):
        a = self.ab[t].float().view(-1, 1, 1, 1)
        return (x - a.sqrt() * self.target) / (1 - a).sqrt()


@pytest.mark.parametrize("sampler,steps", [("ddim", 10), ("ddpm", 1000)])
def test_samplers_recover_the_data_with_a_perfect_denoiser(sampler, steps):
    d = ref.Diffusion(T=1000)
    target = torch.rand(1, 1, 4, 4) * 1.6 - 0.8
    x = d.sample(Oracle(target, d.alphas_cumprod), (3, 1, 4, 4), sampler=sampler, steps=steps,
                 generator=torch.Generator().manual_seed(0))
    assert torch.allclose(x, target.expand_as(x), atol=1e-3)


def test_sampling_is_deterministic_with_a_generator_and_guidance_uses_both_halves():
    d = ref.Diffusion(T=100)
    calls = []

    class Net(torch.nn.Module):
        num_classes = 10

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x, t, y):
            calls.append(y.clone())
            return 0.1 * x * self.w + 0.01 * y.float().view(-1, 1, 1, 1)

    y = torch.tensor([1, 2])
    a = d.sample(Net(), (2, 1, 3, 3), y, steps=5, w=3.0, generator=torch.Generator().manual_seed(0))
    b = d.sample(Net(), (2, 1, 3, 3), y, steps=5, w=3.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert calls[0].tolist() == [1, 2, 10, 10]  # conditional and null labels in one batch


def test_loss_draws_from_the_generator_and_drops_labels():
    d = ref.Diffusion(T=1000)
    seen = []

    class Net(torch.nn.Module):
        def forward(self, x, t, y):
            seen.append(y.clone())
            return x * 0

    x0, y = torch.zeros(1000, 1, 2, 2), torch.zeros(1000, dtype=torch.long)
    l1 = d.loss(Net(), x0, y, p_uncond=0.1, num_classes=10, generator=torch.Generator().manual_seed(0))
    l2 = d.loss(Net(), x0, y, p_uncond=0.1, num_classes=10, generator=torch.Generator().manual_seed(0))
    assert l1 == l2 and math.isclose(l1.item(), 1.0, rel_tol=0.1)
    dropped = (seen[0] == 10).float().mean().item()
    assert 0.07 < dropped < 0.13

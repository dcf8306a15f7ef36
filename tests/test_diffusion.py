"""Chapter 0: the schedules have the papers' endpoints, and the given Diffusion (loss, samplers, guidance) behaves.

The exercises' plausible mistakes are declared in course/grader/checks/diffusion.py and graded by
tests/test_exercises.py."""
import math

import pytest
import torch

from solutions import diffusion as ref


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

"""The judge and the Fréchet distance: real digits score far better than noise or blurred digits."""
import numpy as np
import torch
import torch.nn.functional as F

from course.lab.data import digits
from course.lab.metrics import fd_floor, fd_to_test, frechet_distance, load_judge


def test_frechet_distance_of_known_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    sigma = a @ a.T + np.eye(5)
    mu = rng.normal(size=5)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-8
    # diagonal covariances: ‖μ1 − μ2‖² + Σ (√s1 − √s2)²
    s1, s2 = np.array([1.0, 4.0]), np.array([9.0, 1.0])
    want = 2.0 + (1 - 3) ** 2 + (2 - 1) ** 2
    assert abs(frechet_distance(np.zeros(2), np.diag(s1), np.array([1.0, 1.0]), np.diag(s2)) - want) < 1e-9


def test_judge_is_accurate_and_fd_separates_real_from_noise_and_blur():
    judge = load_judge(8)
    assert judge.test_accuracy >= 0.97
    x, _ = digits("train")
    real = fd_floor(8)
    noise = fd_to_test(torch.rand(1000, 1, 8, 8) * 2 - 1)
    blurred = fd_to_test(F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1))
    assert real < 1.0 and noise > 20 * real and blurred > 10 * real


def test_the_floor_at_a_sample_count_is_seeded_and_higher_with_fewer_images():
    # FD is biased upwards at small N: a floor set beside 100 samples must be measured on 100 real digits.
    whole, small = fd_floor(8), fd_floor(8, n=100)
    assert small == fd_floor(8, n=100) and small != fd_floor(8, n=100, seed=1)
    assert small > 2 * whole
    assert fd_floor(8, n=10_000) == whole  # more than there are: the whole split


def test_a_damaged_judge_cache_is_retrained(tmp_path, monkeypatch, capsys):
    """With no shipped weights to fall back on (tests/test_weights.py covers that case), a damaged file is
    retrained and replaced."""
    import course.lab.config as config
    import course.lab.metrics as m

    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    monkeypatch.setattr(config, "SHIPPED_WEIGHTS", tmp_path / "no-shipped-weights")
    monkeypatch.setattr(m, "_JUDGES", {})
    fresh = m.Judge(m.DigitJudge(), 8, 0.5, np.zeros(128), np.eye(128))
    monkeypatch.setattr(m, "train_judge", lambda size, **kwargs: fresh)  # stands in for a retraining
    (tmp_path / f"judge-digits-8-v{m.JUDGE_VERSION}.pt").write_bytes(b"garbage")
    assert m.load_judge(8) is fresh
    assert "could not be read" in capsys.readouterr().out
    monkeypatch.setattr(m, "_JUDGES", {})
    assert m.load_judge(8).test_accuracy == 0.5  # the retrained judge replaced the damaged file


class _Oracle(torch.nn.Module):
    """Knows the one clean image there is, so it can read ε off x_t exactly: ε = (x_t − √ᾱ_t x0) / √(1 − ᾱ_t)."""

    def __init__(self, x0, alphas_cumprod, extra_channels=0):
        super().__init__()
        self.x0, self.ab, self.extra = x0, alphas_cumprod.float(), extra_channels
        self.w = torch.nn.Parameter(torch.zeros(()))  # a parameter, so that the model has a device

    def forward(self, x_t, t, y=None):
        ab = self.ab[t].view(-1, 1, 1, 1)
        eps = (x_t - ab.sqrt() * self.x0) / (1 - ab).sqrt()
        return torch.cat([eps, torch.full((len(x_t), self.extra, *x_t.shape[2:]), 5.0)], 1) if self.extra else eps


def test_heldout_loss_is_zero_for_an_oracle_one_for_zeros_and_seeded():
    from course.lab.metrics import heldout_loss

    ab = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)
    x = digits("test")[0][:1].repeat(50, 1, 1, 1)
    oracle = _Oracle(x[:1], ab).train()
    assert heldout_loss(oracle, ab, x) < 1e-6
    assert oracle.training  # its mode is given back
    assert heldout_loss(_Oracle(x[:1], ab, extra_channels=1), ab, x) < 1e-6  # only the first C channels count
    late = _Oracle(x[:1], torch.cat([ab[1:], ab[-1:]]))  # reads t as t + 1: off by one step
    assert heldout_loss(late, ab, x) > 1e-4

    class Zeros(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x_t, t, y=None):
            return torch.zeros_like(x_t)

    loss = heldout_loss(Zeros(), ab, x, repeats=40)
    assert abs(loss - 1.0) < 0.05  # E‖ε‖² per element
    assert loss == heldout_loss(Zeros(), ab, x, repeats=40) != heldout_loss(Zeros(), ab, x, repeats=40, seed=1)

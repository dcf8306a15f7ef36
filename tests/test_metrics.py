"""The judge and the Fréchet distance: real digits score far better than noise or blurred digits."""
import numpy as np
import torch
import torch.nn.functional as F

from course.data import digits
from course.metrics import fd_floor, fd_to_test, frechet_distance, load_judge


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
    import course.metrics as m

    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    monkeypatch.setattr(m, "_JUDGES", {})
    fresh = m.Judge(m.DigitJudge(), 8, 0.5, np.zeros(128), np.eye(128))
    monkeypatch.setattr(m, "train_judge", lambda size, **kwargs: fresh)  # stands in for a retraining
    (tmp_path / f"judge-digits-8-v{m.JUDGE_VERSION}.pt").write_bytes(b"garbage")
    assert m.load_judge(8) is fresh
    assert "could not be read" in capsys.readouterr().out
    monkeypatch.setattr(m, "_JUDGES", {})
    assert m.load_judge(8).test_accuracy == 0.5  # the retrained judge replaced the damaged file

"""The trained helpers the course ships: present, loaded without training, and reproduced by their command."""
import pytest
import torch

from course.lab import autoencoder, metrics, shipped
from course.lab.config import SHIPPED_WEIGHTS


def _shipped_names():
    judges = [f"judge-digits-8-v{metrics.JUDGE_VERSION}.pt",
              f"judge-shapes-32-{shipped.SHAPES_JUDGE_STEPS}steps-v{metrics.JUDGE_VERSION}.pt"]
    aes = [f"autoencoder-{autoencoder.AEConfig(size=32, kl_weight=w, steps=800).key()}.pt"
           for w in shipped.AE_KL_WEIGHTS]
    return judges + aes


@pytest.mark.parametrize("name", _shipped_names())
def test_every_helper_is_shipped_and_small(name):
    path = SHIPPED_WEIGHTS / name
    assert path.exists(), f"{name} is missing: run `python -m course weights`"
    assert path.stat().st_size < 2_000_000


def test_an_empty_cache_loads_the_shipped_judge_without_training(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    monkeypatch.setattr(metrics, "_JUDGES", {})
    monkeypatch.setattr(metrics, "train_judge", lambda *a, **k: pytest.fail("the shipped judge was retrained"))
    judge = metrics.load_judge(8)
    blob = torch.load(SHIPPED_WEIGHTS / _shipped_names()[0], map_location="cpu", weights_only=False)
    assert judge.test_accuracy == blob["test_accuracy"] > 0.95


def test_an_empty_cache_loads_the_shipped_autoencoder_without_training(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    monkeypatch.setattr(autoencoder, "train_autoencoder", lambda *a, **k: pytest.fail("retrained"))
    model, history = autoencoder.load_autoencoder(autoencoder.AEConfig(size=32, kl_weight=1e-4, steps=800),
                                                  verbose=False)
    x, _ = metrics.real_images("shapes", "test", 32)
    with torch.no_grad():
        mse = torch.nn.functional.mse_loss(model.decode(autoencoder.encode_all(model, x[:200])), x[:200]).item()
    assert mse < 0.05 and len(history["mse"]) == 800


def test_a_damaged_cache_file_falls_back_to_the_shipped_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    monkeypatch.setattr(metrics, "_JUDGES", {})
    monkeypatch.setattr(metrics, "train_judge", lambda *a, **k: pytest.fail("retrained"))
    (tmp_path / _shipped_names()[0]).write_bytes(b"not a checkpoint")
    assert metrics.load_judge(8).test_accuracy > 0.95
    assert "trying the next" in capsys.readouterr().out


def test_the_command_reproduces_the_shipped_digits_judge():
    """Retrain the digits judge as `python -m course weights` does: its test accuracy matches the shipped one's."""
    blob = torch.load(SHIPPED_WEIGHTS / _shipped_names()[0], map_location="cpu", weights_only=False)
    judge = metrics.train_judge(8, steps=800, dataset="digits")
    assert abs(judge.test_accuracy - blob["test_accuracy"]) <= shipped.JUDGE_TOLERANCE, (
        f"retrained {judge.test_accuracy:.2%}, shipped {blob['test_accuracy']:.2%}")

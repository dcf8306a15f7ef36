"""The shared training loop: resume is exact, NaN stops clearly, Ctrl-C saves, bad checkpoints lose nothing."""
import pytest
import torch

from course.data import digits
from course.nets import SmallUNet
from course.train import TrainingDiverged, train


def small():
    torch.manual_seed(0)
    return SmallUNet(channels=(8, 16), num_classes=10, emb_dim=16)


X, Y = digits("train")
X, Y = X[:256], Y[:256]


def test_training_lowers_the_loss_and_keeps_an_ema():
    result = train(small(), X, Y, steps=60, batch_size=32, lr=3e-3, progress=False)
    assert result.steps == 60 and len(result.losses) == 60
    assert sum(result.losses[-10:]) < sum(result.losses[:10])
    assert not result.ema.training and not any(p.requires_grad for p in result.ema.parameters())
    diff = sum((a - b).abs().sum() for a, b in zip(result.ema.parameters(), result.model.parameters()))
    assert diff > 0


def test_same_seed_same_run():
    a = train(small(), X, Y, steps=10, batch_size=16, progress=False)
    b = train(small(), X, Y, steps=10, batch_size=16, progress=False)
    assert a.losses == b.losses


def test_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path):
    full = train(small(), X, Y, steps=20, batch_size=16, progress=False)
    path = tmp_path / "run.pt"
    first = train(small(), X, Y, steps=12, batch_size=16, checkpoint=path, checkpoint_every=4, progress=False)
    assert first.steps == 12 and path.exists()
    resumed = train(small(), X, Y, steps=20, batch_size=16, checkpoint=path, progress=False)
    assert resumed.losses == full.losses
    for a, b in zip(resumed.model.state_dict().values(), full.model.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(resumed.ema.state_dict().values(), full.ema.state_dict().values()):
        assert torch.equal(a, b)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path):
    path = tmp_path / "run.pt"
    calls = {"n": 0}

    def loss_fn(model, xb, yb, generator):
        calls["n"] += 1
        out = model(xb, torch.zeros(len(xb), dtype=torch.long), yb).pow(2).mean()
        return out * float("nan") if calls["n"] > 6 else out

    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 7.*lower the learning rate") as info:
        train(small(), X, Y, steps=20, batch_size=8, loss_fn=loss_fn, checkpoint=path, checkpoint_every=3,
              progress=False)
    assert "is kept" in str(info.value)
    assert torch.load(path, weights_only=False)["step"] == 6


def test_nan_found_in_a_group_of_losses_names_its_step(monkeypatch):
    """On CUDA losses are read in groups of 25; the message still names the first bad step."""
    import course.train as t

    monkeypatch.setattr(t, "LOSS_SYNC_EVERY", {"cpu": 25})
    calls = {"n": 0}

    def loss_fn(model, xb, yb, generator):
        calls["n"] += 1
        out = model(xb, torch.zeros(len(xb), dtype=torch.long), yb).pow(2).mean()
        return out * float("nan") if calls["n"] == 9 else out

    with pytest.raises(TrainingDiverged, match="at step 9 "):
        train(small(), X, Y, steps=30, batch_size=8, loss_fn=loss_fn, progress=False, device="cpu")


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path):
    path = tmp_path / "run.pt"
    calls = {"n": 0}

    def loss_fn(model, xb, yb, generator):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return model(xb, torch.zeros(len(xb), dtype=torch.long), yb).pow(2).mean()

    result = train(small(), X, Y, steps=10, batch_size=8, loss_fn=loss_fn, checkpoint=path, progress=False)
    assert result.interrupted and result.steps == 4 and path.exists()
    again = train(small(), X, Y, steps=10, batch_size=8, loss_fn=loss_fn, checkpoint=path, progress=False)
    assert again.steps == 10 and not again.interrupted and len(again.losses) == 10


def test_a_corrupt_checkpoint_gets_a_message_and_is_left_alone(tmp_path):
    path = tmp_path / "run.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="could not be resumed.*left as it is"):
        train(small(), X, Y, steps=2, batch_size=8, checkpoint=path, progress=False)
    assert path.read_bytes() == b"not a checkpoint"


def test_a_checkpoint_of_another_model_gets_a_message(tmp_path):
    path = tmp_path / "run.pt"
    train(small(), X, Y, steps=2, batch_size=8, checkpoint=path, progress=False)
    torch.manual_seed(0)
    other = SmallUNet(channels=(8, 8), num_classes=10, emb_dim=16)
    with pytest.raises(RuntimeError, match="another model"):
        train(other, X, Y, steps=4, batch_size=8, checkpoint=path, progress=False)

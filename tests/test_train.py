"""The shared training loop: resume is exact, NaN stops clearly, Ctrl-C saves, bad checkpoints lose nothing."""
import pytest
import torch

from course.lab.data import digits
from course.lab.nets import SmallUNet
from course.lab.train import TrainingDiverged, lr_factor, train


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


def test_the_learning_rate_warms_up_holds_and_cools_down_to_zero():
    factors = [lr_factor(s, warmup=4, cooldown=0.5, total=20) for s in range(20)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0] and factors[4:10] == [1.0] * 6
    assert factors[10:] == [(20 - s) / 10 for s in range(10, 20)]  # linear, the last step still learns
    assert [lr_factor(s, warmup=0, cooldown=0.0, total=20) for s in range(25)] == [1.0] * 25
    assert lr_factor(0, warmup=0, cooldown=0.01, total=20) == 1.0  # a cool-down shorter than a step: none


def test_a_run_trained_in_pieces_follows_one_schedule(tmp_path):
    kwargs = dict(batch_size=16, lr=3e-3, warmup=2, cooldown=0.5, progress=False)
    whole = train(small(), X, Y, steps=12, **kwargs)
    path = tmp_path / "run.pt"
    train(small(), X, Y, steps=6, schedule_steps=12, checkpoint=path, **kwargs)
    pieces = train(small(), X, Y, steps=12, schedule_steps=12, checkpoint=path, **kwargs)
    assert pieces.losses == whole.losses
    for a, b in zip(pieces.model.state_dict().values(), whole.model.state_dict().values()):
        assert torch.equal(a, b)
    constant = train(small(), X, Y, steps=12, batch_size=16, lr=3e-3, warmup=2, progress=False)
    assert constant.losses[:7] == whole.losses[:7] and constant.losses[7:] != whole.losses[7:]


@pytest.mark.parametrize("kwargs", [dict(cooldown=1.5), dict(cooldown=-0.1), dict(schedule_steps=5)])
def test_a_schedule_that_cannot_be_is_refused(kwargs):
    with pytest.raises(ValueError, match="cooldown"):
        train(small(), X, Y, steps=10, progress=False, **kwargs)


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
    import course.lab.train as t

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


def test_a_checkpoint_written_on_a_gpu_resumes_on_the_cpu(tmp_path):
    """A checkpoint carries random-number states of the device that wrote it (a CUDA generator's state is 16 bytes,
    the CPU's 5,056) and a fused optimizer. Resuming elsewhere must not feed those states to this device's
    generators (a CUDA machine used to crash resuming with "RNG state must be a torch.ByteTensor")."""
    path = tmp_path / "run.pt"
    train(small(), X, Y, steps=6, batch_size=8, checkpoint=path, progress=False)
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    ckpt.update(generator=torch.tensor([7, 0, 0, 0, 0, 0, 0, 0, 96, 0, 0, 0, 0, 0, 0, 0], dtype=torch.uint8),
                generator_device="cuda", cuda_rng=[torch.zeros(16, dtype=torch.uint8)])
    for group in ckpt["optimizer"]["param_groups"]:
        group["fused"] = True
    torch.save(ckpt, path)
    resumed = train(small(), X, Y, steps=10, batch_size=8, checkpoint=path, progress=False)
    assert resumed.steps == 10 and len(resumed.losses) == 10
    assert all(torch.isfinite(torch.tensor(resumed.losses)))
    assert torch.load(path, map_location="cpu", weights_only=False)["generator_device"] == "cpu"


def test_checkpoints_are_read_onto_the_cpu(tmp_path, monkeypatch):
    """Whatever the training device, a checkpoint is loaded to the CPU (the random-number states must stay CPU
    ByteTensors) and each tensor is then copied where it belongs."""
    import course.lab.train as t

    path = tmp_path / "run.pt"
    train(small(), X, Y, steps=2, batch_size=8, checkpoint=path, progress=False)
    seen = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("map_location"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(t.torch, "load", spy)
    train(small(), X, Y, steps=4, batch_size=8, checkpoint=path, progress=False)
    assert seen and all(m == "cpu" for m in seen)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cpu_checkpoint_resumes_on_cuda_and_back(tmp_path):
    path = tmp_path / "run.pt"
    train(small(), X, Y, steps=4, batch_size=8, checkpoint=path, progress=False, device="cpu")
    on_gpu = train(small(), X, Y, steps=8, batch_size=8, checkpoint=path, progress=False, device="cuda")
    assert on_gpu.steps == 8
    back = train(small(), X, Y, steps=12, batch_size=8, checkpoint=path, progress=False, device="cpu")
    assert back.steps == 12 and len(back.losses) == 12


def test_losses_are_read_every_loss_sync_every_steps(monkeypatch):
    import course.lab.train as t

    monkeypatch.setattr(t, "LOSS_SYNC_EVERY", {"cpu": 7})
    result = train(small(), X, Y, steps=20, batch_size=8, progress=False, device="cpu")
    assert [s for s, _ in result.timeline] == [7, 14, 20] and len(result.losses) == 20


def test_the_generator_lives_on_the_training_device():
    devices = []

    def loss_fn(model, xb, yb, generator):
        devices.append(generator.device)
        return model(xb, torch.randint(0, 1000, (len(xb),), generator=generator, device=generator.device),
                     yb).pow(2).mean()

    train(small(), X, Y, steps=2, batch_size=8, loss_fn=loss_fn, progress=False, device="cpu")
    assert devices == [torch.device("cpu")] * 2


class Tiny(torch.nn.Module):
    """The smallest denoiser: compiles in seconds."""

    def __init__(self):
        super().__init__()
        self.num_classes = 10
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)
        self.label = torch.nn.Embedding(11, 1)

    def forward(self, x, t, y):
        return self.conv(x) + self.label(y)[:, :, None, None] + t[:, None, None, None] / 1000


def compile_works() -> str:
    """'' when torch.compile runs here, else why not."""
    try:
        torch.compile(lambda a: a * 2 + 1)(torch.ones(3))
        return ""
    except Exception as e:  # noqa: BLE001 - any failure means: skip
        return f"torch.compile does not work on this machine ({type(e).__name__}: {str(e)[:200]})"


def test_compile_true_trains_as_eager_does():
    reason = compile_works()
    if reason:
        pytest.skip(reason)
    torch.manual_seed(0)
    eager = train(Tiny(), X, Y, steps=6, batch_size=16, progress=False, device="cpu", compile=False)
    torch.manual_seed(0)
    compiled = train(Tiny(), X, Y, steps=6, batch_size=16, progress=False, device="cpu", compile=True)
    assert compiled.compile_steps == 3 and compiled.compile_seconds > 0
    assert compiled.steps == 6 and compiled.steps_per_second > 0
    assert torch.allclose(torch.tensor(compiled.losses), torch.tensor(eager.losses), rtol=1e-4, atol=1e-6)
    assert not any(k.startswith("_orig_mod") for k in compiled.model.state_dict())


def test_compile_is_off_by_default_on_the_cpu():
    result = train(small(), X, Y, steps=2, batch_size=8, progress=False, device="cpu")
    assert result.compile_steps == 0 and result.compile_seconds == 0


def test_the_default_loss_draws_what_diffusion_loss_draws():
    """On the CPU the loop's loss (random numbers drawn on the training device) is `Diffusion.loss` exactly."""
    from course.diffusion import Diffusion
    from course.lab.train import diffusion_loss_fn

    diffusion, model = Diffusion(), small()
    loss_fn = diffusion_loss_fn(diffusion, batch_size=16, rows=slice(0, 16), p_uncond=0.5, num_classes=10,
                                device=torch.device("cpu"))
    mine = loss_fn(model, X[:16], Y[:16], torch.Generator().manual_seed(3))
    theirs = diffusion.loss(model, X[:16], Y[:16], p_uncond=0.5, num_classes=10,
                            generator=torch.Generator().manual_seed(3))
    assert torch.equal(mine, theirs)


def test_compile_none_compiles_when_enough_steps_are_left_and_the_bar_says_so(tmp_path, monkeypatch, capsys):
    import course.lab.train as t

    compiled = []
    monkeypatch.setattr(t, "AUTO_COMPILE_MIN_STEPS", {"cpu": 5})
    monkeypatch.setattr(t.torch, "compile", lambda model, **kwargs: compiled.append(kwargs) or model)
    path = tmp_path / "run.pt"
    first = train(small(), X, Y, steps=4, batch_size=8, checkpoint=path, device="cpu", desc="auto")
    assert compiled == [] and first.compile_steps == 0  # 4 steps: not worth compiling
    capsys.readouterr()
    second = train(small(), X, Y, steps=10, batch_size=8, checkpoint=path, device="cpu", desc="auto")
    assert compiled == [{"mode": "default"}] and second.compile_steps == t.COMPILE_WARMUP_STEPS
    assert "compiling" in capsys.readouterr().err
    train(small(), X, Y, steps=14, batch_size=8, checkpoint=path, device="cpu", progress=False)
    assert len(compiled) == 1  # 4 steps left: eager


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
def test_a_cuda_step_never_waits_for_the_host(monkeypatch):
    """Between two loss reads, nothing in a step (batch, noise, forward, backward, AdamW, EMA) synchronises."""
    import course.lab.train as t

    monkeypatch.setattr(t, "LOSS_SYNC_EVERY", {"cuda": 1000})
    real_update, calls = t.ema_update, {"n": 0}

    def watched(ema, model, decay):
        real_update(ema, model, decay)
        calls["n"] += 1
        torch.cuda.set_sync_debug_mode("error" if 1 <= calls["n"] < 9 else "default")

    monkeypatch.setattr(t, "ema_update", watched)
    try:
        result = train(small(), X, Y, steps=10, batch_size=32, progress=False, device="cuda", compile=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(result.losses) == 10


@cuda
def test_cuda_graphs_train_as_eager_does():
    torch.manual_seed(0)
    eager = train(small(), X, Y, steps=8, batch_size=32, progress=False, device="cuda", compile=False, amp=False)
    torch.manual_seed(0)
    graphs = train(small(), X, Y, steps=8, batch_size=32, progress=False, device="cuda", compile=True, amp=False)
    assert graphs.compile_steps == 3
    assert torch.allclose(torch.tensor(graphs.losses), torch.tensor(eager.losses), rtol=1e-3, atol=1e-5)


def test_min_snr_weights_cap_the_nearly_clean_timesteps():
    from course.diffusion import Diffusion
    from course.lab.train import min_snr_weights

    ab = Diffusion(T=1000, schedule="cosine").alphas_cumprod
    t = torch.arange(1000)
    w = min_snr_weights(ab, t, 5.0)
    snr = ab / (1 - ab)
    assert torch.allclose(w[snr <= 5].double(), torch.ones(int((snr <= 5).sum()), dtype=torch.float64))
    assert torch.allclose(w[snr > 5].double(), (5 / snr[snr > 5]).double(), rtol=1e-5)
    assert w[0] < 0.01 and w[-1] == 1  # t = 0 is nearly clean: its weight is tiny; pure noise keeps weight 1


def test_min_snr_loss_is_the_plain_loss_reweighted():
    """Same draws: with γ so large that every weight is 1 the weighted loss is the plain ε-loss, and with γ = 5 it
    is smaller (every weight ≤ 1)."""
    from course.diffusion import Diffusion
    from course.lab.train import diffusion_loss_fn

    torch.manual_seed(0)
    model = torch.nn.Conv2d(1, 1, 3, padding=1)
    net = lambda x, t, y: model(x)  # noqa: E731 - a denoiser that ignores t and y
    d = Diffusion(T=1000, schedule="cosine")
    x0 = torch.randn(16, 1, 8, 8)
    losses = {}
    for gamma in (None, 1e12, 5.0):
        fn = diffusion_loss_fn(d, batch_size=16, rows=slice(0, 16), p_uncond=0.0, num_classes=None,
                               device=torch.device("cpu"), min_snr_gamma=gamma)
        losses[gamma] = fn(net, x0, None, torch.Generator().manual_seed(3)).item()
    assert abs(losses[1e12] - losses[None]) < 1e-5 and losses[5.0] < losses[None]

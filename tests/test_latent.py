"""Chapter 6, `latent`: the given autoencoder, its cache (keyed by configuration, corrupt files retrained), the
shapes judge, and sampling latents without clipping (the declared mistakes are graded in test_exercises.py)."""
import torch

from course.lab.autoencoder import AEConfig, encode_all, load_autoencoder
from course.grader.exercises import reference_module

latent = reference_module("latent")
TINY = AEConfig(size=16, ch=8, steps=3, batch_size=8)


def test_autoencoder_shapes_and_loss():
    torch.manual_seed(0)
    ae = latent.Autoencoder(ch=8)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    mean, logvar = ae.encoder(x)
    assert mean.shape == logvar.shape == (2, 4, 8, 8)
    assert ae.decode(ae.encode(x)).shape == x.shape
    loss, parts = ae.loss(x, torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert torch.allclose(loss, parts["mse"] + ae.kl_weight * parts["kl"])
    z1 = ae.encode(x, sample=True, generator=torch.Generator().manual_seed(1))
    z2 = ae.encode(x, sample=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(z1, z2) and not torch.equal(z1, mean)


def test_cache_is_keyed_by_configuration(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    a, _ = load_autoencoder(TINY, verbose=False)
    b, _ = load_autoencoder(TINY, verbose=False)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    load_autoencoder(AEConfig(size=16, ch=8, steps=3, batch_size=8, kl_weight=1e-2), verbose=False)
    assert len(list(tmp_path.glob("autoencoder-*.pt"))) == 2


def test_corrupt_or_foreign_cache_is_retrained_with_a_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    load_autoencoder(TINY, verbose=False)
    path = next(tmp_path.glob("autoencoder-*.pt"))
    path.write_bytes(b"not a checkpoint")
    model, _ = load_autoencoder(TINY, verbose=False)
    assert "could not be used" in capsys.readouterr().out
    assert model.decode(torch.zeros(1, 4, 4, 4)).shape == (1, 3, 16, 16)
    blob = torch.load(path, weights_only=False)
    blob["config"]["ch"] = 16  # a file that claims another configuration
    torch.save(blob, path)
    load_autoencoder(TINY, verbose=False)
    assert "configuration differs" in capsys.readouterr().out


def test_encode_all_batches_agree_with_one_pass():
    torch.manual_seed(0)
    ae = latent.Autoencoder(ch=8).eval()
    x = torch.rand(7, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(encode_all(ae, x, batch=3), ae.encode(x), atol=1e-6)


def test_latent_sampling_is_not_clipped():
    diffusion = reference_module("diffusion").Diffusion()

    class Constant(torch.nn.Module):
        num_classes = 10

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, t, y=None):
            return torch.zeros_like(x) + self.w  # ε̂ = 0: the sampler returns its x̂0 = x_T / √ᾱ_T scaled back

    shape = (4, 4, 2, 2)
    pixels = diffusion.sample(Constant(), shape, steps=5, generator=torch.Generator().manual_seed(0))
    latents = diffusion.sample(Constant(), shape, steps=5, clip=False, generator=torch.Generator().manual_seed(0))
    assert pixels.abs().max() <= 1
    assert latents.abs().max() > 1, "with clip=False latents keep their range"


def test_shapes_judge_and_real_images():
    from course.lab.metrics import real_images

    x, y = real_images("shapes", "test", 16)
    assert x.shape == (1000, 3, 16, 16) and set(y.tolist()) == set(range(10))
    x2, _ = real_images("shapes", "train", 16)
    assert not torch.equal(x2[:10], x[:10]), "train and test shapes come from different seeds"

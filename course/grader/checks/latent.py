"""Checks for chapter 6, `latent`: the reparameterised sample, the KL term, the latent scale and the way out of the
latent pipeline."""
import inspect
import math

import torch

from course.grader.checks.kit import (CheckFailed, exercise, expect, expect_close, expect_tensor, mistake, patched,
                                      seeded, wrong_outputs)
from course.grader.checks.kit import hints
from course.grader.exercises import reference_module


def _gaussians(seed: int, shape=(3, 4, 2, 2)):
    with seeded(seed):
        return torch.randn(*shape), torch.randn(*shape) * 1.5, torch.randn(*shape)


# ---------------------------------------------------------------------------------------------------------------
# reparameterize
# ---------------------------------------------------------------------------------------------------------------
@mistake("latent.reparameterize", "σ² is used instead of σ: exp(log σ²) · ε, as if the encoder predicted log σ "
                                  "(the standard deviation is exp(½ log σ²))")
def _(mean, logvar, noise=None):
    return mean + logvar.exp() * noise


@mistake("latent.reparameterize", "the prediction is treated as σ itself, not log σ² (z = μ + logvar · ε)")
def _(mean, logvar, noise=None):
    return mean + logvar * noise


@mistake("latent.reparameterize", "the noise is not used: z = μ (that is the deterministic encoding, not a sample)")
def _(mean, logvar, noise=None):
    return mean.clone()


@exercise("latent.reparameterize")
def check_reparameterize(impl, ref):
    for seed, shape in ((1, (3, 4, 2, 2)), (2, (1, 4, 8, 8)), (3, (2, 1, 1, 3))):
        mean, logvar, noise = _gaussians(seed, shape)
        args = [a.clone().requires_grad_() for a in (mean, logvar)]
        got = impl.reparameterize(*args, noise.clone())
        expect_close(got, ref.reparameterize(mean, logvar, noise), what=f"reparameterize on shape {shape}",
                     mistakes=wrong_outputs("latent.reparameterize", mean, logvar, noise))
        got.sum().backward()
        expect(args[0].grad is not None and args[1].grad is not None,
               "no gradient reaches μ or log σ²: the sample must stay differentiable in both (that is the trick).")
        expect_close(args[1].grad, 0.5 * torch.exp(0.5 * logvar) * noise, what="the gradient with respect to logvar")
    mean, logvar, _ = _gaussians(4, (2000, 4, 1, 1))
    with seeded(5):
        z = impl.reparameterize(mean[:1].expand(2000, -1, -1, -1), logvar[:1].expand(2000, -1, -1, -1))
    expect_tensor(z, shape=(2000, 4, 1, 1), what="reparameterize(μ, log σ²) without noise")
    std = z.std(0).flatten()
    want = torch.exp(0.5 * logvar[0]).flatten()
    expect(bool(((std / want - 1).abs() < 0.1).all()),
           f"with noise=None the samples should spread with σ = {want.tolist()}, got {std.tolist()}: draw "
           "ε with torch.randn_like(mean).")
    return "μ + exp(½ log σ²) · ε on three shapes, differentiable in μ and log σ²; draws its own ε when none is given."


# ---------------------------------------------------------------------------------------------------------------
# kl_loss
# ---------------------------------------------------------------------------------------------------------------
@mistake("latent.kl_loss", "the sign is flipped (the KL is ≥ 0: ½(μ² + σ² − 1 − log σ²))")
def _(mean, logvar):
    return -0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1).mean()


@mistake("latent.kl_loss", "the factor ½ is missing")
def _(mean, logvar):
    return (mean.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1).mean()


@mistake("latent.kl_loss", "the prediction is treated as log σ, not log σ² (σ² = exp(2 · logvar))")
def _(mean, logvar):
    return 0.5 * (mean.pow(2) + (2 * logvar).exp() - 1 - 2 * logvar).flatten(1).sum(1).mean()


@mistake("latent.kl_loss", "the mean is taken over every element instead of summing over an image's latents")
def _(mean, logvar):
    return 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()


@mistake("latent.kl_loss", "the sum runs over the batch too (sum, not mean, over images)")
def _(mean, logvar):
    return 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum()


@exercise("latent.kl_loss")
def check_kl_loss(impl, ref):
    for seed, shape in ((6, (3, 4, 2, 2)), (7, (1, 4, 8, 8)), (8, (5, 2, 3, 1))):
        mean, logvar, _ = _gaussians(seed, shape)
        got = impl.kl_loss(mean, logvar)
        expect_tensor(got, shape=(), dtype=mean.dtype, what=f"kl_loss on latents of shape {shape}")
        expect_close(got, ref.kl_loss(mean, logvar), what=f"kl_loss on latents of shape {shape}", rtol=1e-5,
                     mistakes=wrong_outputs("latent.kl_loss", mean, logvar))
    zero = impl.kl_loss(torch.zeros(2, 4, 2, 2), torch.zeros(2, 4, 2, 2))
    expect(abs(float(zero)) < 1e-6, f"KL(N(0, 1) ‖ N(0, 1)) is 0; your kl_loss gives {float(zero):.4g}.")
    return "½ Σ(μ² + σ² − 1 − log σ²) per image, mean over the batch, three shapes, and 0 for N(0, I)."


# ---------------------------------------------------------------------------------------------------------------
# latent_scale
# ---------------------------------------------------------------------------------------------------------------
@mistake("latent.latent_scale", "the scale is the standard deviation itself; latents are *multiplied* by the "
                                "scale on the way in (encode), so it is 1 / std, not std (which would belong on "
                                "decode)")
def _(latents):
    return float(latents.float().std())


@mistake("latent.latent_scale", "1 / variance instead of 1 / standard deviation")
def _(latents):
    return float(1.0 / latents.float().var())


@mistake("latent.latent_scale", "1 / mean absolute value instead of 1 / standard deviation")
def _(latents):
    return float(1.0 / latents.float().abs().mean())


@exercise("latent.latent_scale")
def check_latent_scale(impl, ref):
    with seeded(9):
        cases = [torch.randn(64, 4, 8, 8) * 5.5 + 0.3, torch.randn(10, 2, 3, 3) * 0.2, torch.randn(1, 4, 4, 4) * 3]
    for z in cases:
        got = impl.latent_scale(z)
        expect(isinstance(got, (float, int)) and not isinstance(got, bool),
               f"latent_scale should return a Python float, got {type(got).__name__}. Hint: float(...).")
        want = ref.latent_scale(z)
        name = None
        for description, wrong in wrong_outputs("latent.latent_scale", z).items():
            if wrong is not None and math.isclose(got, wrong, rel_tol=1e-4) and not math.isclose(wrong, want,
                                                                                                   rel_tol=1e-4):
                name = description
        expect(name is None, f"latent_scale looks like a common mistake: {name}.")
        expect(math.isclose(got, want, rel_tol=1e-4),
               f"latent_scale of latents of shape {tuple(z.shape)} with std {z.std():.4g} should be {want:.6g}, got "
               f"{got:.6g}. Hint: one scale for all channels, 1 / std over every element.")
        expect(abs((z * got).std().item() - 1) < 1e-3, "the scaled latents z · s should have unit variance.")
        expect_close(torch.tensor(float(got), dtype=torch.float64), torch.tensor(float(want), dtype=torch.float64),
                     what=f"latent_scale of latents of shape {tuple(z.shape)}", atol=0, rtol=1e-4)
    return "1 / std over every element, as a float: scaled latents get unit variance (three data sets)."


# ---------------------------------------------------------------------------------------------------------------
# sample_images: the latent pipeline's way out (diffuse in latent space, unscale, decode)
# ---------------------------------------------------------------------------------------------------------------
class _Denoiser(torch.nn.Module):
    """A small deterministic ε-predictor on latents that reads x, t and y (so that guidance changes its output)."""

    def __init__(self, channels: int, num_classes: int = 3):
        super().__init__()
        self.num_classes = num_classes
        self.mix = torch.nn.Conv2d(channels, channels, 1)
        self.label = torch.nn.Embedding(num_classes + 1, channels)

    def forward(self, x, t, y=None):
        y = torch.full_like(t, self.num_classes) if y is None else y
        gain = 1.0 + t.float()[:, None, None, None] / 1000.0
        return torch.tanh(self.mix(x)) * gain + self.label(y)[:, :, None, None]


def _sample(fn, parts, case, record: dict | None = None):
    """Run one version of sample_images; with `record`, note what it gave the sampler and the decoder."""
    model, ae, diffusion = parts
    scale, shape, y, steps, w, seed = case
    sample, decode = diffusion.sample, ae.decode

    def sampled(*args, **kwargs):
        out = sample(*args, **kwargs)
        record.setdefault("sample", []).append((kwargs, out.detach().clone()))
        return out

    def decoded(z):
        record.setdefault("decode", []).append(z.detach().clone())
        return decode(z)

    watch = dict(sample=sampled) if record is not None else {}
    with torch.no_grad(), patched(diffusion, **watch), patched(ae, **(dict(decode=decoded) if watch else {})):
        return fn(model, ae, diffusion, scale, shape, y, steps=steps, w=w,
                  generator=torch.Generator().manual_seed(seed))


def _pipeline_step(want: dict, got: dict) -> str | None:
    """The first step of the way out where the learner's run departs from the reference's."""
    if not got.get("sample"):
        return "The first step that differs: diffusion.sample is never called. Look at where the latents come from."
    (want_kwargs, want_z), (got_kwargs, got_z) = want["sample"][0], got["sample"][0]
    defaults = {name: p.default for name, p in inspect.signature(reference_module("diffusion").Diffusion.sample)
                .parameters.items()}
    for name in ("clip", "steps", "w"):
        if got_kwargs.get(name, defaults[name]) != want_kwargs.get(name, defaults[name]):
            advice = ("what DDIM's clip assumes about the data it samples, and the scale of these latents"
                      if name == "clip" else f"the caller's {name}, which sample_images passes on")
            called = (f"with {name}={got_kwargs[name]}" if name in got_kwargs else
                      f"without {name} (so with its default, {defaults[name]})")
            return f"The first step that differs: diffusion.sample is called {called}. Look at {advice}."
    if not (isinstance(got_z, torch.Tensor) and got_z.shape == want_z.shape and torch.allclose(got_z, want_z,
                                                                                                atol=1e-5)):
        return ("The first step that differs: the latents diffusion.sample returns. Look at the arguments passed to "
                "it: the shape, the labels, the generator.")
    if not got.get("decode"):
        return "The first step that differs: autoencoder.decode is never called."
    z = got["decode"][0]
    if not (z.shape == want["decode"][0].shape and torch.allclose(z, want["decode"][0], atol=1e-5)):
        return ("The first step that differs: the latents given to autoencoder.decode. Look at their units: the "
                "sampler works in the space the model was trained in, the decoder in the autoencoder's own.")
    return ("Every step up to the decoder agrees. Look at what happens to the decoded images: they are returned "
            "as pixels in [-1, 1].")


@mistake("latent.sample_images", "DDIM clips its x̂0 to [-1, 1] (clip=True, the default): right for pixels, wrong "
                                 "for latents, whose scaled values are not bounded by 1; pass clip=False")
def _(model, autoencoder, diffusion, scale, shape, y=None, *, steps=20, w=1.0, generator=None):
    z = diffusion.sample(model, shape, y, steps=steps, w=w, generator=generator)
    return autoencoder.decode(z / scale).clamp(-1, 1)


@mistake("latent.sample_images", "the latents are multiplied by the scale on the way out; the model's latents are "
                                 "z · s, so divide by s before decoding")
def _(model, autoencoder, diffusion, scale, shape, y=None, *, steps=20, w=1.0, generator=None):
    z = diffusion.sample(model, shape, y, steps=steps, w=w, clip=False, generator=generator)
    return autoencoder.decode(z * scale).clamp(-1, 1)


@mistake("latent.sample_images", "the sampled latents are decoded as they are, still multiplied by the scale "
                                 "(divide by s before decoding)")
def _(model, autoencoder, diffusion, scale, shape, y=None, *, steps=20, w=1.0, generator=None):
    z = diffusion.sample(model, shape, y, steps=steps, w=w, clip=False, generator=generator)
    return autoencoder.decode(z).clamp(-1, 1)


@mistake("latent.sample_images", "the decoded images are not clamped to [-1, 1]")
def _(model, autoencoder, diffusion, scale, shape, y=None, *, steps=20, w=1.0, generator=None):
    z = diffusion.sample(model, shape, y, steps=steps, w=w, clip=False, generator=generator)
    return autoencoder.decode(z / scale)


@mistake("latent.sample_images", "the guidance scale w is not passed on to the sampler")
def _(model, autoencoder, diffusion, scale, shape, y=None, *, steps=20, w=1.0, generator=None):
    z = diffusion.sample(model, shape, y, steps=steps, clip=False, generator=generator)
    return autoencoder.decode(z / scale).clamp(-1, 1)


@exercise("latent.sample_images")
def check_sample_images(impl, ref):
    from course.grader.checks.kit import mistakes

    diffusion = reference_module("diffusion").Diffusion(T=100, schedule="cosine")
    with seeded(130):
        ae = ref.Autoencoder(ch=8, z_channels=4).eval()
        for p in ae.decoder.parameters():
            p.data.mul_(3.0)  # decoded values beyond [-1, 1], so that the clamp shows
        model = _Denoiser(4).eval()
    cases = (  # (scale, latent shape, labels, DDIM steps, guidance w, generator seed)
        (2.5, (2, 4, 2, 2), None, 5, 1.0, 131),
        (0.4, (3, 4, 2, 3), torch.tensor([0, 2, 1]), 4, 2.0, 132),
        (1.7, (1, 4, 1, 1), torch.tensor([1]), 3, 3.0, 133),
    )
    for case in cases:
        scale, shape, y, steps, w, seed = case
        what = (f"sample_images with latents {shape}, scale {scale}, {steps} DDIM steps, "
                + ("no labels" if y is None else f"w = {w}"))
        seen_want, seen_got = {}, {}
        want = _sample(ref.sample_images, (model, ae, diffusion), case, seen_want)
        got = _sample(impl.sample_images, (model, ae, diffusion), case, seen_got)
        wrong = {m.name: _sample(m.code, (model, ae, diffusion), case) for m in mistakes("latent.sample_images")}
        try:
            expect_close(got, want, what=what, atol=1e-5, mistakes=wrong)
        except CheckFailed as e:
            if "common mistake" in str(e) or not isinstance(got, torch.Tensor) or got.shape != want.shape:
                raise
            raise CheckFailed(f"{str(e).split(' Hint: ')[0]} {_pipeline_step(seen_want, seen_got)} "
                              f"(more: hint(\"latent.sample_images\"))") from None
    return ("DDIM in latent space without clipping, latents divided by the scale and decoded, images in [-1, 1]; "
            "three scales, batch 1 to 3, with and without guidance.")

# ---------------------------------------------------------------------------------------------------------------
# Hints on request (`hint("name")`, `python -m course hint name`): level 1 a nudge, the only one a failed check
# quotes; the last close to the recipe.
# ---------------------------------------------------------------------------------------------------------------
hints("latent.reparameterize",
      "The encoder predicts log σ², not σ: a sample is μ plus σ times standard normal noise (drawn when none is "
      "given).",
      "σ = exp(½ · logvar); z = μ + σ · ε, with ε = torch.randn_like(mean) when noise is None.")
hints("latent.kl_loss",
      "The KL of N(μ, σ²) from N(0, 1), summed over each image's latent values and averaged over the batch.",
      "Per element ½ (μ² + exp(logvar) − 1 − logvar); flatten(1).sum(1).mean().")
hints("latent.latent_scale",
      "The diffusion model should see latents of unit standard deviation: the scale multiplies the latents.",
      "1 / latents.std() over every element, as a Python float.")
hints("latent.sample_images",
      "The diffusion model lives in the scaled latent space: everything DDIM assumes about pixels may not hold "
      "there, and the decoder expects the autoencoder's own latents. Pass the generator, the steps and w on.",
      "diffusion.sample(model, shape, y, steps=steps, w=w, clip=False, generator=generator) gives scaled latents "
      "z · s.",
      "autoencoder.decode(z / scale), then clamp the images to [-1, 1].")

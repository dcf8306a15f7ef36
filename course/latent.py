# This file is generated from solutions/latent.py by `python -m course generate`.
# Fill in each block that raises NotImplementedError, then run `check("latent")` in the notebook
# or `python -m course check latent` in a shell.
"""Chapter 6: latent diffusion in miniature.

Paper: Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models" (CVPR 2022). A KL-regularised
autoencoder compresses an image by a factor f in each side (Stable Diffusion: 256×256×3 → 32×32×4, f = 8); the
diffusion model (DiT, U-ViT, latent DiffiT) then works on the latents, so a patch of p × p latents covers
(f·p) × (f·p) pixels and the token count falls by f². Here: 32×32×3 shapes → 8×8×4 latents (f = 4).

The encoder predicts, per latent element, a mean μ and a log-variance log σ² of a Gaussian q(z | x); training draws
z = μ + σ·ε (the reparameterisation trick of Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014) and adds
a small KL(q(z | x) ‖ N(0, I)) to the reconstruction error, which keeps the latents near the origin without making
them a true N(0, I). Their spread is whatever it is, so the diffusion model gets them multiplied by one scale factor
measured on the training set, chosen to give unit variance: Stable Diffusion's 0.18215.

    x (B,3,32,32) ─ Encoder ─ (μ, log σ²) (B,4,8,8) ─ μ + σ·ε ─ z ─ Decoder ─ x̂ (B,3,32,32)
                                                               └ z · scale ─ the diffusion model's data
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def reparameterize(mean: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """A sample z = μ + σ · ε of q(z | x) = N(μ, σ²), differentiable in μ and log σ².

    mean, logvar: (B, C, h, w), the encoder's μ and log σ² (the log of the *variance*); noise: ε ~ N(0, I) of the
    same shape (drawn with torch.randn_like when None). Returns z: (B, C, h, w).
    """
    raise NotImplementedError('Exercise `latent.reparameterize` is not done yet: write it in course/latent.py (book/06_latent.ipynb, section "Exercise: latent.reparameterize").')


def kl_loss(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per image, averaged over the batch: a scalar.

    For one element, KL = ½ (μ² + σ² − 1 − log σ²) ≥ 0, zero exactly when μ = 0 and σ = 1. Sum it over the latent
    elements of an image (C·h·w of them), then take the mean over the batch.
    """
    raise NotImplementedError('Exercise `latent.kl_loss` is not done yet: write it in course/latent.py (book/06_latent.ipynb, section "Exercise: latent.kl_loss").')


def latent_scale(latents: torch.Tensor) -> float:
    """The factor s that gives the encoded training set unit variance: s = 1 / std(latents).

    latents: (N, C, h, w), the encoder's latents of the training images. The diffusion model trains on z · s, and
    samples are divided by s before decoding. (Stable Diffusion measured s = 0.18215 on its own latents.) One scale
    for all channels, computed over every element. Returns a Python float.
    """
    raise NotImplementedError('Exercise `latent.latent_scale` is not done yet: write it in course/latent.py (book/06_latent.ipynb, section "Exercise: latent.latent_scale").')


def sample_images(model, autoencoder, diffusion, scale: float, shape, y: torch.Tensor | None = None, *,
                  steps: int = 20, w: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Images from a latent diffusion model: the last half of the pipeline encode → scale → diffuse → unscale →
    decode.

    `model` is a denoiser trained on the autoencoder's latents multiplied by `scale` (`latent_scale`); `shape` is
    the shape of those latents, (B, C_z, h, w). `diffusion` is chapter 0's `Diffusion`: its
    `sample(model, shape, y, steps=..., w=..., clip=..., generator=...)` runs DDIM, drawing its noise from
    `generator`. `autoencoder.decode` turns unscaled latents into images. Returns the images, (B, 3, 4h, 4w) for
    the course's autoencoder, in [-1, 1]. Mind what DDIM's `clip` assumes about the data it samples.
    """
    raise NotImplementedError('Exercise `latent.sample_images` is not done yet: write it in course/latent.py (book/06_latent.ipynb, section "Exercise: latent.sample_images").')


# ---------------------------------------------------------------------------------------------------------------
# Given: the autoencoder (no exercise in it), small and convolutional
# ---------------------------------------------------------------------------------------------------------------
class ResnetBlock(nn.Module):
    """GroupNorm → SiLU → 3×3 conv, twice, plus the input: the block of the Stable Diffusion autoencoder, small."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class Encoder(nn.Module):
    """(B, 3, H, W) → μ, log σ²: each (B, z_channels, H/4, W/4); two stride-2 convolutions, residual blocks at
    H/2 and H/4 only (none at full resolution, where they would cost the most)."""

    def __init__(self, in_channels: int = 3, ch: int = 16, z_channels: int = 4):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.Sequential(
            nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1), ResnetBlock(2 * ch),  # H/2
            nn.Conv2d(2 * ch, 2 * ch, 3, stride=2, padding=1), ResnetBlock(2 * ch))  # H/4
        self.norm_out = nn.GroupNorm(8, 2 * ch)
        self.conv_out = nn.Conv2d(2 * ch, 2 * z_channels, 3, padding=1)  # μ and log σ², stacked on channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.down(self.conv_in(x))
        mean, logvar = self.conv_out(F.silu(self.norm_out(h))).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)  # as Stable Diffusion's DiagonalGaussianDistribution


class Decoder(nn.Module):
    """z: (B, z_channels, h, w) → x̂: (B, 3, 4h, 4w); nearest-neighbour upsampling + 3×3 convs."""

    def __init__(self, out_channels: int = 3, ch: int = 16, z_channels: int = 4):
        super().__init__()
        self.conv_in = nn.Conv2d(z_channels, 2 * ch, 3, padding=1)
        self.up = nn.Sequential(
            ResnetBlock(2 * ch), nn.Upsample(scale_factor=2.0, mode="nearest"),
            nn.Conv2d(2 * ch, 2 * ch, 3, padding=1), ResnetBlock(2 * ch),  # 2h
            nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(2 * ch, ch, 3, padding=1))  # 4h
        self.norm_out = nn.GroupNorm(8, ch)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.norm_out(self.up(self.conv_in(z)))))


class Autoencoder(nn.Module):
    """A KL-regularised autoencoder (the "AutoencoderKL" of latent diffusion, without its GAN and perceptual
    losses): loss = MSE(x̂, x) + kl_weight · KL, with x̂ decoded from a reparameterised sample."""

    def __init__(self, in_channels: int = 3, ch: int = 16, z_channels: int = 4, kl_weight: float = 1e-4):
        super().__init__()
        self.z_channels, self.kl_weight = z_channels, kl_weight
        self.encoder = Encoder(in_channels, ch, z_channels)
        self.decoder = Decoder(in_channels, ch, z_channels)

    def encode(self, x: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """The latent of x: its mean μ, or a sample μ + σ·ε with `sample=True` (the paper's choice for diffusion)."""
        mean, logvar = self.encoder(x)
        if not sample:
            return mean
        noise = torch.randn(mean.shape, generator=generator).to(mean)
        return reparameterize(mean, logvar, noise)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """(total, {"mse": ..., "kl": ...}) for a batch x in [-1, 1]."""
        mean, logvar = self.encoder(x)
        noise = torch.randn(mean.shape, generator=generator).to(mean)
        x_hat = self.decoder(reparameterize(mean, logvar, noise))
        mse = F.mse_loss(x_hat, x)
        kl = kl_loss(mean, logvar)
        return mse + self.kl_weight * kl, {"mse": mse.detach(), "kl": kl.detach()}

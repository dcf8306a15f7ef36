"""Measuring samples: a digit classifier (the "judge") trained by the course, class accuracy and Fréchet distance.

FD is the Fréchet distance between Gaussians fitted to the judge's 128-d penultimate features of generated digits
and of the held-out test digits, the recipe of FID (Heusel et al., "GANs Trained by a Two Time-Scale Update Rule
Converge to a Local Nash Equilibrium", NeurIPS 2017) with a judge that knows digits instead of Inception:
    FD = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½).
The judge is trained once per data set and image size and cached (`python -m course judge --retrain` retrains it).
Data sets: `digits` (1 channel) and the procedural `shapes` (RGB; 5,000 training images drawn with seed 0, 1,000 test
images with seed 1).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from course.lab.config import PROFILE, Profile, stored
from course.lab.config import device as default_device
from course.lab.data import digits, shapes
from course.lab.nets import DigitJudge

JUDGE_VERSION = 1
DATASETS = ("digits", "shapes")
SHAPES_SPLITS = {"train": (5000, 0), "test": (1000, 1)}  # (images, seed)


def real_images(dataset: str, split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training or test split of a data set the judge knows: (x (N, C, s, s) in [-1, 1], y (N,))."""
    if dataset == "digits":
        return digits(split, size)
    if dataset == "shapes":
        n, seed = SHAPES_SPLITS[split]
        return shapes(n, size, seed=seed)
    raise ValueError(f"dataset should be one of {DATASETS}, got {dataset!r}")


@dataclass
class Judge:
    net: DigitJudge
    size: int
    test_accuracy: float
    mu_test: np.ndarray
    sigma_test: np.ndarray

    @torch.no_grad()
    def features(self, x: torch.Tensor, batch: int = 1000) -> np.ndarray:
        self.net.eval()
        chunks = [self.net.features(x[i:i + batch].float().cpu()) for i in range(0, len(x), batch)]
        return torch.cat(chunks).double().numpy()

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
        self.net.eval()
        return torch.cat([self.net(x[i:i + batch].float().cpu()).argmax(1) for i in range(0, len(x), batch)])


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shifts of up to one pixel (in 8×8 units) and a little noise, so the judge is not brittle."""
    B, _, H, _ = x.shape
    pad = max(1, H // 8)
    padded = F.pad(x, (pad,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * pad + 1, (2,), generator=generator).tolist()
    x = padded[:, :, dy:dy + H, dx:dx + H]
    return x + 0.05 * torch.randn(x.shape, generator=generator)


def _judge_net(dataset: str, size: int) -> DigitJudge:
    if dataset == "digits":
        return DigitJudge()
    return DigitJudge(in_channels=3, pool=max(1, size // 16))


def judge_steps(dataset: str, profile: str | None = None) -> int:
    """Training steps of a judge in `profile` (default: this machine's): the digits judge always gets 800; the RGB
    shapes judge costs more per step and learns its easy classes quickly, so it gets fewer, and only a few in the
    `ci` profile."""
    return 800 if dataset == "digits" else Profile(profile or PROFILE.name).pick(ci=20, cpu=250, gpu=500)


def train_judge(size: int = 8, steps: int | None = None, seed: int = 0, verbose: bool = False,
                dataset: str = "digits") -> Judge:
    """Train the judge on the training split (seconds on a CPU); report its test accuracy."""
    steps = steps or judge_steps(dataset)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x, y = real_images(dataset, "train", size)
    xt, yt = real_images(dataset, "test", size)
    net = _judge_net(dataset, size)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=generator)
        loss = F.cross_entropy(net(_augment(x[idx], generator)), y[idx], label_smoothing=0.05)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    judge = Judge(net, size, 0.0, np.zeros(1), np.zeros((1, 1)))
    judge.test_accuracy = (judge.predict(xt) == yt).float().mean().item()
    feats = judge.features(xt)
    judge.mu_test, judge.sigma_test = feats.mean(0), np.cov(feats, rowvar=False)
    if verbose:
        print(f"trained the {size}×{size} {dataset} judge: test accuracy {judge.test_accuracy:.2%}")
    return judge


_JUDGES: dict[tuple[str, int, int], Judge] = {}


def load_judge(size: int = 8, retrain: bool = False, verbose: bool = False, dataset: str = "digits",
               profile: str | None = None) -> Judge:
    """The cached judge for `size`×`size` images of `dataset` in `profile` (default: this machine's), trained (and
    cached) when missing, unreadable or asked for."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset should be one of {DATASETS}, got {dataset!r}")
    steps = judge_steps(dataset, profile)
    if (dataset, size, steps) in _JUDGES and not retrain:
        return _JUDGES[dataset, size, steps]
    name = f"judge-{dataset}-{size}" + ("" if dataset == "digits" else f"-{steps}steps")
    path, shipped = stored(f"{name}-v{JUDGE_VERSION}.pt")
    judge = None
    for candidate in ([] if retrain else [path, shipped]):
        if judge is None and candidate.exists():
            try:
                blob = torch.load(candidate, map_location="cpu", weights_only=False)
                net = _judge_net(dataset, size)
                net.load_state_dict(blob["state_dict"])
                judge = Judge(net.eval(), size, blob["test_accuracy"], blob["mu_test"], blob["sigma_test"])
            except Exception as e:  # noqa: BLE001 - a damaged file is passed over (and retrained), never fatal
                print(f"the judge {candidate} could not be read ({type(e).__name__}); "
                      + ("trying the next" if candidate == path else "retraining it"))
    if judge is None:
        judge = train_judge(size, steps=steps, verbose=verbose, dataset=dataset)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # parallel test workers may train it at the same time
        torch.save({"state_dict": judge.net.state_dict(), "test_accuracy": judge.test_accuracy,
                    "mu_test": judge.mu_test, "sigma_test": judge.sigma_test}, tmp)
        tmp.replace(path)
    _JUDGES[dataset, size, steps] = judge
    return judge


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """‖μ₁ − μ₂‖² + Tr(Σ₁) + Tr(Σ₂) − 2 Tr((Σ₁ Σ₂)^½), with Tr((Σ₁Σ₂)^½) = Σ √λ(√Σ₁ Σ₂ √Σ₁) (symmetric, stable)."""
    vals, vecs = np.linalg.eigh(sigma1)
    root1 = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    cross = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    trace_sqrt = np.sqrt(np.clip(cross, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def fd_to_test(images: torch.Tensor, size: int | None = None, dataset: str = "digits") -> float:
    """FD between images (N, C, s, s) in [-1, 1] and the held-out test images, in the judge's features."""
    judge = load_judge(size or images.shape[-1], dataset=dataset)
    feats = judge.features(images)
    return frechet_distance(feats.mean(0), np.cov(feats, rowvar=False), judge.mu_test, judge.sigma_test)


@dataclass
class Evaluation:
    acc: float  # fraction of samples the judge puts in the class they were asked for
    fd: float  # Fréchet distance to the test digits (lower is better; real training digits score `fd_floor`)
    samples: torch.Tensor = field(repr=False)
    labels: torch.Tensor = field(repr=False)
    seconds: float = 0.0
    w: float = 1.0
    steps: int = 20

    def __repr__(self) -> str:
        return (f"Evaluation(acc={self.acc:.1%}, fd={self.fd:.2f}, w={self.w:g}, steps={self.steps}, "
                f"n={len(self.labels)}, sampling {self.seconds:.1f} s)")


def evaluate(model, diffusion, *, size: int = 8, n_per_class: int | None = None, steps: int = 20, w: float = 1.0,
             sampler: str = "ddim", eta: float = 0.0, seed: int = 0, batch_size: int = 1000, num_classes: int = 10,
             progress: bool = False, dataset: str = "digits", shape: tuple | None = None, decode=None,
             clip: bool = True) -> Evaluation:
    """Sample `n_per_class` images of each class (DDIM, `steps` steps, guidance `w`, noise `eta`: 0 deterministic,
    1 DDPM's posterior noise at every step) and measure them.

    By default the samples are (1, size, size) digits. For latent diffusion give the latent `shape` (C, h, w),
    `decode` (latents → images in [-1, 1], e.g. the autoencoder's decoder after dividing by the scale), `clip=False`
    (x̂0 is clipped to [-1, 1] for pixels only) and the `dataset` of the decoded images."""
    n_per_class = n_per_class or PROFILE.pick(ci=20, cpu=100, gpu=100)
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    generator = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device if any(True for _ in model.parameters()) else default_device()
    shape = tuple(shape) if shape is not None else (1 if dataset == "digits" else 3, size, size)
    start = time.perf_counter()
    chunks = []
    for i in range(0, len(labels), batch_size):
        yb = labels[i:i + batch_size]
        z = diffusion.sample(model, (len(yb), *shape), yb, sampler=sampler, steps=steps, w=w, eta=eta, clip=clip,
                             generator=generator, device=dev, progress=progress)
        if decode is not None:
            with torch.no_grad():
                z = decode(z).clamp(-1, 1)
        chunks.append(z.cpu())
    samples = torch.cat(chunks)
    seconds = time.perf_counter() - start
    judge = load_judge(size, dataset=dataset)
    acc = (judge.predict(samples) == labels).float().mean().item()
    return Evaluation(acc, fd_to_test(samples, size, dataset), samples, labels, seconds, w, steps)


def fd_floor(size: int = 8, dataset: str = "digits", n: int | None = None, seed: int = 0) -> float:
    """FD of the real training images to the test images: the best any sampler can hope for here. FD depends on the
    number of images, so with `n` it is measured on n training images drawn at random (seeded), to be set beside
    n samples; without it on the whole training split."""
    x = real_images(dataset, "train", size)[0]
    if n is not None and n < len(x):
        x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]]
    return fd_to_test(x, size, dataset)


@torch.no_grad()
def heldout_loss(model, alphas_cumprod: torch.Tensor, x: torch.Tensor, y: torch.Tensor | None = None, *,
                 repeats: int = 8, seed: int = 0, batch_size: int = 1000) -> float:
    """The training objective, ‖ε − ε_θ(x_t, t, y)‖² (DDPM's Eq. 14), on held-out images `x`: each image `repeats`
    times, at timesteps spread evenly over [0, T) and with noise drawn from `seed`.

    The same (image, t, ε) triples for every model: two models are compared on identical draws, so the difference of
    their test losses is far less noisy than a difference of FDs from samples, and it costs one forward pass per
    triple (no sampling). It measures the denoiser, not the samples: a lower loss usually means better samples, not
    always. Only the first C output channels count (a model with learned variance returns 2C)."""
    T, n = len(alphas_cumprod), len(x) * repeats
    g = torch.Generator().manual_seed(seed)
    t = (torch.arange(n) * T // n)[torch.randperm(n, generator=g)]  # stratified over [0, T), shuffled
    noise = torch.randn((n, *x.shape[1:]), generator=g)
    x0, labels = x.repeat(repeats, *[1] * (x.dim() - 1)), (y.repeat(repeats) if y is not None else None)
    dev = next(model.parameters()).device if any(True for _ in model.parameters()) else torch.device("cpu")
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        for i in range(0, n, batch_size):
            ab = alphas_cumprod.float()[t[i:i + batch_size]].view(-1, *[1] * (x.dim() - 1))
            eps = noise[i:i + batch_size]
            # q_sample, written out so that the measure never runs a learner's exercise code
            x_t = ab.sqrt() * x0[i:i + batch_size] + (1 - ab).sqrt() * eps
            yb = labels[i:i + batch_size].to(dev) if labels is not None else None
            out = model(x_t.to(dev), t[i:i + batch_size].to(dev), yb).float().cpu()[:, : x.shape[1]]
            total += F.mse_loss(out, eps, reduction="sum").item()
    finally:
        model.train(was_training)
    return total / noise.numel()

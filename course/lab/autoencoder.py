"""The course's autoencoder for chapter 6: trained once per configuration and cached, like the judge.

`load_autoencoder(kl_weight=1e-6)` returns the trained reference `Autoencoder` of `solutions/latent.py` (given code;
it uses the reference `reparameterize` and `kl_loss`, so it works before the learner's exercises do). The cache file
is keyed by the configuration; a missing, corrupt or mismatched file is retrained with a message, never a crash.
Retrain by hand with `python -m course.lab.autoencoder --retrain`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from course.lab.config import PROFILE, Profile, stored
from course.lab.config import device as default_device
from course.lab.metrics import real_images

AE_VERSION = 1


@dataclass(frozen=True)
class AEConfig:
    size: int = 32  # images size × size × 3 (the shapes set) → latents (size/4) × (size/4) × z_channels
    ch: int = 16
    z_channels: int = 4
    kl_weight: float = 1e-6  # chapter 6's
    steps: int = 800
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0

    def key(self) -> str:
        text = json.dumps({**asdict(self), "version": AE_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def default_config(profile: str | None = None, **overrides) -> AEConfig:
    """The configuration of `profile` (default: this machine's): fewer steps in `ci` (seconds)."""
    steps = Profile(profile or PROFILE.name).pick(ci=40, cpu=800, gpu=800)
    return AEConfig(**{"steps": steps, **overrides})


def _build(config: AEConfig):
    from course.grader.exercises import reference_module

    latent = reference_module("latent")
    return latent.Autoencoder(3, config.ch, config.z_channels, config.kl_weight)


def train_autoencoder(config: AEConfig, device=None, progress: bool = True):
    """Train the autoencoder on the shapes training split; returns (model in eval mode, history dict)."""
    dev = torch.device(device) if device is not None else default_device()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    x, _ = real_images("shapes", "train", config.size)
    model = _build(config).to(dev).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=max(config.steps, 1))
    history = {"mse": [], "kl": []}
    start = time.perf_counter()
    for _ in tqdm(range(config.steps), desc="training the autoencoder", disable=not progress, leave=False):
        idx = torch.randint(0, len(x), (config.batch_size,), generator=generator)
        loss, parts = model.loss(x[idx].to(dev), generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        history["mse"].append(parts["mse"].item())
        history["kl"].append(parts["kl"].item())
    history["seconds"] = time.perf_counter() - start
    return model.eval().cpu(), history


def load_autoencoder(config: AEConfig | None = None, retrain: bool = False, verbose: bool = True, **overrides):
    """The trained autoencoder for `config` (default: the profile's, with `overrides`), from the cache when there.
    Returns (model in eval mode on the CPU, history dict with the training curves and seconds)."""
    config = config or default_config(**overrides)
    path, shipped = stored(f"autoencoder-{config.key()}.pt")
    for candidate in ([] if retrain else [path, shipped]):
        if not candidate.exists():
            continue
        try:
            blob = torch.load(candidate, map_location="cpu", weights_only=False)
            if blob.get("config") != asdict(config):
                raise ValueError("its configuration differs")
            model = _build(config)
            model.load_state_dict(blob["state_dict"])
            return model.eval(), blob["history"]
        except Exception as e:  # noqa: BLE001 - a damaged or foreign file is passed over (and retrained), never fatal
            print(f"the autoencoder {candidate} could not be used ({type(e).__name__}: {e}); "
                  + ("trying the next" if candidate == path else "retraining it"))
    model, history = train_autoencoder(config, progress=verbose)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # parallel workers may train it at the same time
    torch.save({"config": asdict(config), "state_dict": model.state_dict(), "history": history}, tmp)
    tmp.replace(path)
    if verbose:
        print(f"trained the autoencoder ({config.steps} steps, kl_weight {config.kl_weight:g}) in "
              f"{history['seconds']:.0f} s; cached as {path.name}")
    return model, history


@torch.no_grad()
def encode_all(model, x: torch.Tensor, batch: int = 500, sample: bool = False, seed: int = 0) -> torch.Tensor:
    """Latents of a whole data set (the means, or samples with `sample=True`), in batches: (N, C, h, w)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([model.encode(x[i:i + batch], sample=sample, generator=generator)
                      for i in range(0, len(x), batch)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.lab.autoencoder",
                                     description="Train (or load) chapter 6's autoencoder and report its error.")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--kl-weight", type=float, default=None)
    args = parser.parse_args(argv)
    overrides = {} if args.kl_weight is None else {"kl_weight": args.kl_weight}
    model, history = load_autoencoder(retrain=args.retrain, **overrides)
    xt, _ = real_images("shapes", "test", default_config(**overrides).size)
    mse = torch.nn.functional.mse_loss(model.decode(encode_all(model, xt)), xt).item()
    print(f"test reconstruction MSE {mse:.4f} (images in [-1, 1])")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

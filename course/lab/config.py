"""Run profiles, device choice and seeding.

`COURSE_PROFILE` picks how big the chapter runs are:
- `ci`: seconds; the tests and nbval use it;
- `cpu`: minutes on a laptop, the default without a GPU;
- `gpu`: the default when CUDA is available. The chapters' models are small, so a GPU runs them only a few times
  faster than two CPU cores (it waits for Python to launch each small kernel): the `gpu` profile trains the
  headline models somewhat longer than the `cpu` profile (chapter 7 for its study's budget of record) and spends
  the GPU on more samples (`python benchmarks/bench_gpu.py` times each chapter).
A chapter asks for its numbers with `PROFILE.pick(ci=..., cpu=..., gpu=...)`.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

PROFILES = ("ci", "cpu", "gpu")


def device() -> torch.device:
    """CUDA, then Apple's MPS, then the CPU; `COURSE_DEVICE` overrides."""
    if os.environ.get("COURSE_DEVICE"):
        return torch.device(os.environ["COURSE_DEVICE"])
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True)
class Profile:
    name: str

    def pick(self, ci, cpu, gpu):
        """The value for this profile: `steps = PROFILE.pick(ci=20, cpu=3000, gpu=20000)`."""
        return {"ci": ci, "cpu": cpu, "gpu": gpu}[self.name]


def _profile_from_env() -> Profile:
    name = os.environ.get("COURSE_PROFILE", "").strip().lower()
    if not name:
        name = "gpu" if torch.cuda.is_available() else "cpu"
    if name not in PROFILES:
        raise ValueError(f"COURSE_PROFILE={name!r}: expected one of {', '.join(PROFILES)}")
    return Profile(name)


PROFILE = _profile_from_env()


def seed_everything(seed: int = 0) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# Small trained helpers (the judges, chapter 6's autoencoders) ship with the course, so that no book build or test
# trains them cold; `python -m course weights` retrains them into this folder (tests/test_weights.py checks that a
# retrained one matches the shipped one within its tolerance).
SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights"


def stored(filename: str) -> list[Path]:
    """Where a trained helper called `filename` may already be: the user's cache, then the weights the course ships."""
    return [cache_dir() / filename, SHIPPED_WEIGHTS / filename]


def cache_dir() -> Path:
    """Where trained helpers (the judge classifier) are cached: `COURSE_CACHE`, else the user's cache folder."""
    root = os.environ.get("COURSE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "diffusion-transformers-course")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path

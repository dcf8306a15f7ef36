"""Data sets that need no download: scikit-learn's handwritten digits and a procedural, seeded shapes set.

Both give images scaled to [-1, 1] as float32 tensors (N, C, H, W) and int64 labels (N,).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

DIGIT_CLASSES = [str(i) for i in range(10)]
SHAPE_CLASSES = ["disk", "square", "triangle", "ring", "plus", "h-stripes", "v-stripes", "diamond", "cross",
                 "checker"]


@lru_cache(maxsize=None)
def _digits(split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images, labels = bunch.images.astype(np.float32) / 16.0, bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=0)
    idx = train_idx if split == "train" else test_idx
    x = torch.from_numpy(images[idx])[:, None] * 2 - 1  # (N, 1, 8, 8) in [-1, 1]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(-1, 1)
    return x.contiguous(), torch.from_numpy(labels[idx])


def digits(split: str = "train", size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 handwritten digits (8×8, 10 classes), split 80/20 stratified with a fixed seed:
    1,437 training and 360 test images. `size` resizes (bilinear, antialiased). Returns (x (N,1,s,s), y (N,))."""
    if split not in ("train", "test"):
        raise ValueError(f"split should be 'train' or 'test', got {split!r}")
    if not isinstance(size, int) or size < 2:
        raise ValueError(f"size should be an integer ≥ 2, got {size!r}")
    x, y = _digits(split, size)
    return x.clone(), y.clone()


def shapes(n: int, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` RGB images of 10 procedural shape classes (`SHAPE_CLASSES`), of any size, the same for the same seed.

    Each image: a coloured shape of random size and position on a darker background of another colour, with a
    little pixel noise. Labels are balanced (i % 10, shuffled). Returns (x (n,3,size,size) in [-1,1], y (n,)).
    """
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 10)
    coords = (np.arange(size) + 0.5) / size  # pixel centres in (0, 1)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    images = np.empty((n, 3, size, size), dtype=np.float32)
    for i, label in enumerate(y):
        r = rng.uniform(0.22, 0.36)
        cy, cx = rng.uniform(r, 1 - r, size=2)
        dy, dx = (yy - cy) / r, (xx - cx) / r  # coordinates relative to the shape, shape ≈ unit size
        period = rng.uniform(0.45, 0.7)
        masks = {
            0: dx**2 + dy**2 <= 1,
            1: (np.abs(dx) <= 0.8) & (np.abs(dy) <= 0.8),
            2: (dy <= 0.8) & (dy >= 1.6 * np.abs(dx) - 0.9),
            3: (dx**2 + dy**2 <= 1) & (dx**2 + dy**2 >= 0.4),
            4: ((np.abs(dx) <= 0.3) | (np.abs(dy) <= 0.3)) & (np.abs(dx) <= 1) & (np.abs(dy) <= 1),
            5: (np.abs(dx) <= 1) & (np.abs(dy) <= 1) & (np.floor(dy / period) % 2 == 0),
            6: (np.abs(dx) <= 1) & (np.abs(dy) <= 1) & (np.floor(dx / period) % 2 == 0),
            7: np.abs(dx) + np.abs(dy) <= 1,
            8: ((np.abs(dx - dy) <= 0.4) | (np.abs(dx + dy) <= 0.4)) & (np.abs(dx) <= 0.9) & (np.abs(dy) <= 0.9),
            9: (np.abs(dx) <= 1) & (np.abs(dy) <= 1) & ((np.floor(dx / period) + np.floor(dy / period)) % 2 == 0),
        }
        mask = masks[int(label)].astype(np.float32)
        fg = rng.uniform(0.45, 1.0, size=3).astype(np.float32)
        bg = rng.uniform(0.0, 0.3, size=3).astype(np.float32)
        img = bg[:, None, None] * (1 - mask) + fg[:, None, None] * mask
        images[i] = np.clip(img + rng.normal(0, 0.02, size=img.shape), 0, 1)
    return torch.from_numpy(images) * 2 - 1, torch.from_numpy(y.astype(np.int64))

"""Figures shared by the chapters (matplotlib)."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch


def to_image(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W) or (H, W, 3) in [0, 1] for imshow."""
    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) / 2).numpy()
    return x[0] if x.shape[0] == 1 else x.transpose(1, 2, 0)


def grid_image(x: torch.Tensor, nrow: int = 8, pad: int = 1) -> np.ndarray:
    """Tile (B, C, H, W) images into one array, `nrow` per row, with a white gap."""
    B, C, H, W = x.shape
    rows = math.ceil(B / nrow)
    canvas = np.ones((rows * (H + pad) + pad, nrow * (W + pad) + pad, 3), dtype=np.float32)
    for i in range(B):
        img = to_image(x[i])
        img = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img
        r, c = divmod(i, nrow)
        canvas[pad + r * (H + pad): pad + r * (H + pad) + H, pad + c * (W + pad): pad + c * (W + pad) + W] = img
    return canvas


def show_grid(x: torch.Tensor, nrow: int = 8, title: str | None = None, ax=None, scale: float = 0.45):
    """Show a batch of images (B, C, H, W) in [-1, 1] as one grid."""
    image = grid_image(x, nrow)
    if ax is None:
        rows = math.ceil(len(x) / nrow)
        width, height = nrow * scale * x.shape[-1] / 8, rows * scale * x.shape[-2] / 8
        _, ax = plt.subplots(figsize=(max(2.0, width), max(1.2, height)))
    ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def class_grid(samples: torch.Tensor, labels: torch.Tensor, per_class: int = 8, title: str | None = None,
               ax=None, class_names=None):
    """One row per class: the first `per_class` samples of each label, the class name on the left."""
    classes = sorted(set(labels.tolist()))
    rows = [samples[labels == c][:per_class] for c in classes]
    rows = [torch.cat([r, torch.ones(per_class - len(r), *r.shape[1:])]) if len(r) < per_class else r for r in rows]
    ax = show_grid(torch.cat(rows), nrow=per_class, title=title, ax=ax)
    H = samples.shape[-2]
    ax.set_axis_on()
    ax.set_xticks([])
    ax.set_yticks([1 + i * (H + 1) + H / 2 for i in range(len(classes))])
    ax.set_yticklabels([class_names[c] if class_names else str(c) for c in classes], fontsize=8)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.tick_params(length=0)
    return ax


def plot_losses(*results, labels=None, smooth: int = 50, ax=None):
    """Training curves (a moving average over `smooth` steps) of one or more TrainResults, log-scaled."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    for i, result in enumerate(results):
        losses = np.asarray(result.losses, dtype=float)
        k = max(1, min(smooth, len(losses) // 5 or 1))
        curve = np.convolve(losses, np.ones(k) / k, mode="valid") if len(losses) >= k else losses
        ax.plot(np.arange(len(curve)) + k, curve, label=labels[i] if labels else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    if labels:
        ax.legend()
    ax.grid(alpha=0.3)
    return ax

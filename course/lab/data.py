"""Data sets that need no download: scikit-learn's handwritten digits and a procedural, seeded shapes set; and
loaders for a learner's own copy of MNIST or CIFAR-10.

All give images scaled to [-1, 1] as float32 tensors (N, C, H, W) and int64 labels (N,).

The course never downloads anything. To go further on real data, point `COURSE_DATA` at files you have:
- `COURSE_DATA=mnist:/path/to/folder` with the four idx files of MNIST (`train-images-idx3-ubyte`,
  `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, gzipped (`.gz`) or not; the
  same layout serves Fashion-MNIST);
- `COURSE_DATA=cifar10:/path/to/cifar-10-batches-py` (the "python version" of CIFAR-10: `data_batch_1` ...
  `data_batch_5` and `test_batch`, or the folder that holds `cifar-10-batches-py`);
- unset, `digits` or `shapes`: the offline defaults.
`dataset(split)` loads whichever `COURSE_DATA` names (with its class names); `mnist(...)` and `cifar10(...)` load
a given folder directly. The judge classifier and the FD of the chapters are trained on the 8×8 digits, so their
numbers only mean something on the default data.
"""
from __future__ import annotations

import gzip
import os
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DIGIT_CLASSES = [str(i) for i in range(10)]
SHAPE_CLASSES = ["disk", "square", "triangle", "ring", "plus", "h-stripes", "v-stripes", "diamond", "cross",
                 "checker"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


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


# ---------------------------------------------------------------------------------------------------------------
# A learner's own copies of MNIST and CIFAR-10 (never downloaded by the course)
# ---------------------------------------------------------------------------------------------------------------
def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split should be 'train' or 'test', got {split!r}")


def _resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    if size is None or size == x.shape[-1]:
        return x.contiguous()
    if not isinstance(size, int) or size < 2:
        raise ValueError(f"size should be an integer ≥ 2, got {size!r}")
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(-1, 1)


def read_idx(path: str | Path) -> np.ndarray:
    """An array from an idx file (the MNIST format: a magic number giving type and rank, the sizes, the data),
    gzipped or not."""
    path = Path(path)
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an idx file (it should start with two zero bytes)")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise ValueError(f"{path}: unknown idx data type 0x{raw[2]:02x}")
    rank = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank))
    data = np.frombuffer(raw, dtype=dtypes[raw[2]], offset=4 + 4 * rank)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: the header says {shape}, the file holds {data.size} values (truncated?)")
    return data.reshape(shape)


def _find(folder: Path, stem: str) -> Path:
    """`train-images-idx3-ubyte`, with `.gz`, or spelled `train-images.idx3-ubyte` as some copies have it."""
    names = [stem, stem.replace("-idx", ".idx")]
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.exists():
                return candidate
    raise FileNotFoundError(f"no {stem}[.gz] in {folder} (MNIST's idx files; the course downloads nothing: "
                            "see course/lab/data.py for where to put them)")


@lru_cache(maxsize=4)
def _mnist(folder: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_find(Path(folder), f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(Path(folder), f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"MNIST {split} in {folder}: images {images.shape} and labels {labels.shape} do not match")
    x = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None] * 2 - 1  # (N, 1, 28, 28) in [-1, 1]
    return x, torch.from_numpy(labels.astype(np.int64))


def mnist(split: str = "train", path: str | Path | None = None, size: int | None = None):
    """MNIST (or Fashion-MNIST) from your own idx files in `path` (default: the folder in COURSE_DATA=mnist:...).
    Returns (x (N, 1, s, s) in [-1, 1], y (N,)); s = 28 unless `size` resizes."""
    _check_split(split)
    folder = Path(path) if path is not None else _path_from_env("mnist")
    x, y = _mnist(str(folder.expanduser().resolve()), split)
    return _resize(x, size).clone(), y.clone()


@lru_cache(maxsize=4)
def _cifar10(folder: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    root = Path(folder)
    if not (root / "test_batch").exists() and (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    found = [root / n for n in names if (root / n).exists()]
    if not found:
        raise FileNotFoundError(f"no {' / '.join(names)} in {root} (CIFAR-10's python batches; the course "
                                "downloads nothing: see course/lab/data.py)")
    data, labels = [], []
    for file in found:
        with open(file, "rb") as f:
            batch = pickle.load(f, encoding="bytes")  # your own copy of the data set's official pickles
        data.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
    x = torch.from_numpy(np.concatenate(data).astype(np.float32) / 255.0) * 2 - 1  # (N, 3, 32, 32) in [-1, 1]
    return x, torch.from_numpy(np.concatenate(labels))


def cifar10(split: str = "train", path: str | Path | None = None, size: int | None = None):
    """CIFAR-10 from your own python batches in `path` (default: the folder in COURSE_DATA=cifar10:...).
    Returns (x (N, 3, s, s) in [-1, 1], y (N,)); s = 32 unless `size` resizes. Class names: CIFAR10_CLASSES."""
    _check_split(split)
    folder = Path(path) if path is not None else _path_from_env("cifar10")
    x, y = _cifar10(str(folder.expanduser().resolve()), split)
    return _resize(x, size).clone(), y.clone()


def data_source() -> tuple[str, Path | None]:
    """What COURSE_DATA asks for: ("digits", None) by default, ("shapes", None), ("mnist", folder) or
    ("cifar10", folder)."""
    spec = os.environ.get("COURSE_DATA", "").strip()
    name, _, path = spec.partition(":")
    name = name.strip().lower() or "digits"
    if name in ("digits", "shapes") and not path:
        return name, None
    if name in ("mnist", "cifar10") and path.strip():
        return name, Path(path.strip()).expanduser()
    raise ValueError(f"COURSE_DATA={spec!r}: expected digits, shapes, mnist:/folder or cifar10:/folder")


def _path_from_env(name: str) -> Path:
    source, path = data_source()
    if source != name or path is None:
        raise ValueError(f"no folder for {name}: pass path=... or set COURSE_DATA={name}:/path/to/folder")
    return path


def dataset(split: str = "train", size: int | None = None, n_shapes: int = 5000):
    """The data set COURSE_DATA names (default: the digits). Returns (x, y, class_names)."""
    _check_split(split)
    name, path = data_source()
    if name == "digits":
        x, y = digits(split, size or 8)
        return x, y, DIGIT_CLASSES
    if name == "shapes":
        x, y = shapes(n_shapes, size=size or 16, seed=0 if split == "train" else 1)
        return x, y, SHAPE_CLASSES
    if name == "mnist":
        x, y = mnist(split, path, size)
        return x, y, DIGIT_CLASSES
    x, y = cifar10(split, path, size)
    return x, y, CIFAR10_CLASSES

import torch

from course.lab.data import SHAPE_CLASSES, digits, shapes


def test_digits_split_range_and_balance():
    x, y = digits("train")
    xt, yt = digits("test")
    assert x.shape == (1437, 1, 8, 8) and xt.shape == (360, 1, 8, 8)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() == -1 and x.max() == 1
    assert torch.bincount(yt).min() >= 35  # stratified: every class about 36 times
    # no test image is also a training image
    assert not (xt.flatten(1)[:, None] == x.flatten(1)[None]).all(-1).any()


def test_digits_resize_and_copy():
    x16, _ = digits("train", size=16)
    assert x16.shape == (1437, 1, 16, 16) and x16.min() >= -1 and x16.max() <= 1
    a, _ = digits("train")
    a[:] = 0
    assert digits("train")[0].abs().sum() > 0  # callers get copies, never the cache


def test_shapes_are_seeded_balanced_and_any_size():
    x, y = shapes(50, size=12, seed=3)
    x2, y2 = shapes(50, size=12, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert x.shape == (50, 3, 12, 12) and x.min() >= -1 and x.max() <= 1
    assert torch.bincount(y, minlength=10).tolist() == [5] * 10 and len(SHAPE_CLASSES) == 10
    assert not torch.equal(shapes(50, size=12, seed=4)[0], x)
    big, _ = shapes(10, size=32)
    assert big.shape == (10, 3, 32, 32)


def test_shape_classes_are_told_apart_by_a_shift_invariant_linear_probe():
    """|FFT| of the foreground mask ignores position; a linear classifier on it should beat chance by far."""
    from sklearn.linear_model import LogisticRegression

    x, y = shapes(1200, size=16, seed=0)
    lum = x.mean(1)
    fg = (lum > lum.flatten(1).median(1).values.view(-1, 1, 1)).float()
    features = torch.fft.fft2(fg).abs().flatten(1).numpy()
    probe = LogisticRegression(max_iter=2000).fit(features[:1000], y[:1000].numpy())
    assert probe.score(features[1000:], y[1000:].numpy()) > 0.3  # chance is 0.1


# ---------------------------------------------------------------------------------------------------------------
# A learner's own MNIST / CIFAR-10, on small files written here
# ---------------------------------------------------------------------------------------------------------------
import gzip  # noqa: E402
import pickle  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from course.lab.data import CIFAR10_CLASSES, cifar10, data_source, dataset, mnist, read_idx  # noqa: E402


def write_idx(path, array, compress):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(data)


def fake_mnist(folder, n_train=12, n_test=5, compress=True, dotted=False):
    rng = np.random.default_rng(0)
    parts = {}
    for prefix, n in [("train", n_train), ("t10k", n_test)]:
        images, labels = rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10
        sep = "." if dotted else "-"
        suffix = ".gz" if compress else ""
        write_idx(folder / f"{prefix}-images{sep}idx3-ubyte{suffix}", images, compress)
        write_idx(folder / f"{prefix}-labels{sep}idx1-ubyte{suffix}", labels, compress)
        parts[prefix] = (images, labels)
    return parts


@pytest.mark.parametrize("compress,dotted", [(True, False), (False, False), (False, True)])
def test_mnist_from_idx_files(tmp_path, compress, dotted):
    parts = fake_mnist(tmp_path, compress=compress, dotted=dotted)
    x, y = mnist("train", tmp_path)
    assert x.shape == (12, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(y, torch.from_numpy(parts["train"][1]).long())
    expected = torch.from_numpy(parts["train"][0]).float() / 255 * 2 - 1
    assert torch.allclose(x[:, 0], expected)
    xt, _ = mnist("test", tmp_path, size=14)
    assert xt.shape == (5, 1, 14, 14) and xt.min() >= -1 and xt.max() <= 1


def test_idx_errors_speak(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an idx file"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "short", np.zeros((3, 4)), compress=False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-2])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short")
    with pytest.raises(FileNotFoundError, match="downloads nothing"):
        mnist("train", tmp_path / "nowhere")


def fake_cifar(folder, per_batch=4, batches=2):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    written = []
    for name in [f"data_batch_{i}" for i in range(1, batches + 1)] + ["test_batch"]:
        data, labels = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8), list(rng.integers(0, 10, per_batch))
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, f)
        written.append((data, labels))
    return written


def test_cifar10_from_python_batches(tmp_path):
    written = fake_cifar(tmp_path / "cifar-10-batches-py")
    x, y = cifar10("train", tmp_path)  # the folder that holds cifar-10-batches-py works too
    assert x.shape == (8, 3, 32, 32) and y.tolist() == [int(v) for _, labels in written[:2] for v in labels]
    first = torch.from_numpy(written[0][0][0].reshape(3, 32, 32)).float() / 255 * 2 - 1
    assert torch.allclose(x[0], first)  # channel-first, row-major, as the batches store it
    xt, yt = cifar10("test", tmp_path / "cifar-10-batches-py", size=16)
    assert xt.shape == (4, 3, 16, 16) and len(CIFAR10_CLASSES) == 10


def test_course_data_selects_the_source(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_DATA", raising=False)
    assert data_source() == ("digits", None)
    x, y, names = dataset("test")
    assert x.shape == (360, 1, 8, 8) and names[3] == "3"
    (tmp_path / "mnist").mkdir()
    fake_mnist(tmp_path / "mnist")
    monkeypatch.setenv("COURSE_DATA", f"mnist:{tmp_path / 'mnist'}")
    x, y, _ = dataset("train", size=8)
    assert x.shape == (12, 1, 8, 8)
    assert mnist("test")[0].shape == (5, 1, 28, 28)  # the folder comes from COURSE_DATA
    fake_cifar(tmp_path / "c")
    monkeypatch.setenv("COURSE_DATA", f"cifar10:{tmp_path / 'c'}")
    assert dataset("test")[2] is CIFAR10_CLASSES
    monkeypatch.setenv("COURSE_DATA", "shapes")
    assert dataset("train", size=12, n_shapes=20)[0].shape == (20, 3, 12, 12)
    monkeypatch.setenv("COURSE_DATA", "imagenet:/x")
    with pytest.raises(ValueError, match="expected digits, shapes"):
        data_source()

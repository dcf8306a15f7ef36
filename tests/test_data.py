import torch

from course.data import SHAPE_CLASSES, digits, shapes


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

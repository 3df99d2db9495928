"""The 8x8 digits loader: shapes, range, deterministic stratified split, 16x16 upsampling."""

import pytest
import torch

from ctrl_teach.data import images_to_unit, load_digit_images


def test_all_shapes_and_range():
    x, y = load_digit_images()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.long
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert set(y.tolist()) == set(range(10))
    # x = p / 8 - 1 with integer p in 0..16
    p = (x + 1) * 8
    torch.testing.assert_close(p, p.round())


def test_split_sizes_disjoint_and_stratified():
    x_all, _ = load_digit_images()
    x_tr, y_tr = load_digit_images("train")
    x_te, y_te = load_digit_images("test")
    assert len(x_tr) + len(x_te) == 1797
    assert len(x_te) == 450
    flat_all = {tuple(r) for r in x_all.reshape(1797, -1).tolist()}
    flat_tr = [tuple(r) for r in x_tr.reshape(len(x_tr), -1).tolist()]
    flat_te = [tuple(r) for r in x_te.reshape(len(x_te), -1).tolist()]
    assert set(flat_tr) | set(flat_te) <= flat_all
    # the raw digits contain no duplicates across the split
    assert not set(flat_tr) & set(flat_te)
    frac = torch.bincount(y_te, minlength=10) / torch.bincount(y_tr, minlength=10)
    assert torch.all((frac > 0.28) & (frac < 0.38))


def test_split_is_deterministic_and_seeded():
    a, _ = load_digit_images("test", seed=0)
    b, _ = load_digit_images("test", seed=0)
    c, _ = load_digit_images("test", seed=1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    a[0] = 0.0  # callers may mutate their copy without touching the cache
    assert not torch.equal(a, load_digit_images("test", seed=0)[0])


def test_size_16():
    x, y = load_digit_images("train", size=16)
    assert x.shape == (1347, 1, 16, 16)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    x8, _ = load_digit_images("train", size=8)
    # bilinear upsampling keeps the image: average-pooling back is close to the original
    back = torch.nn.functional.avg_pool2d(x, 2)
    assert float((back - x8).abs().mean()) < 0.15


def test_images_to_unit():
    torch.testing.assert_close(
        images_to_unit(torch.tensor([-1.0, 0.0, 1.0])), torch.tensor([0.0, 0.5, 1.0])
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        load_digit_images("val")
    with pytest.raises(ValueError, match="size"):
        load_digit_images(size=32)
    with pytest.raises(ValueError, match="test_fraction"):
        load_digit_images(test_fraction=1.0)
    with pytest.raises(ValueError, match="seed"):
        load_digit_images(seed=-1)

"""True scorers (JPEG size, ink, symmetry), quantile buckets and noisy labelled datasets."""

import pytest
import torch

from ctrl_teach.data import (
    SCORER_NAMES,
    TrueScorer,
    ink_mass,
    jpeg_bytes,
    load_digit_images,
    make_digit_offline_dataset,
    make_labelled_dataset,
    make_scorer,
    symmetry,
)


@pytest.fixture(scope="module")
def digits():
    return load_digit_images()


def test_jpeg_bytes_deterministic_and_ordered():
    flat = torch.zeros(1, 1, 8, 8)
    noisy = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    images = torch.cat([flat, noisy])
    b1, b2 = jpeg_bytes(images), jpeg_bytes(images)
    assert b1.shape == (2,) and torch.equal(b1, b2)
    assert b1[1] > b1[0] + 100
    assert jpeg_bytes(images, quality=95)[1] > b1[1]


def test_jpeg_bytes_on_real_digits(digits):
    b = jpeg_bytes(digits[0])
    assert 540 < float(b.mean()) < 620 and 20 < float(b.std()) < 60


def test_ink_mass_exact_on_constants():
    values = torch.tensor([-1.0, 0.0, 0.5, 1.0])
    images = values[:, None, None, None].expand(4, 1, 8, 8)
    torch.testing.assert_close(ink_mass(images), (values + 1) / 2)


def test_symmetry():
    half = torch.rand(3, 1, 8, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mirrored = torch.cat([half, half.flip(-1)], dim=-1)
    torch.testing.assert_close(symmetry(mirrored), torch.ones(3))
    left = torch.cat([torch.ones(1, 1, 8, 4), -torch.ones(1, 1, 8, 4)], dim=-1)
    torch.testing.assert_close(symmetry(left), torch.zeros(1))


@pytest.mark.parametrize("name", SCORER_NAMES)
def test_tertiles_balanced_on_real_digits(name, digits):
    scorer = make_scorer(name)
    assert scorer.num_labels == 3 and len(scorer.bucket_names) == 3
    assert torch.all(scorer.edges[1:] > scorer.edges[:-1])
    labels = scorer.label(digits[0])
    assert labels.dtype == torch.long
    frac = torch.bincount(labels, minlength=3).float() / len(labels)
    assert torch.all((frac - 1 / 3).abs() < 0.05), frac
    # class 0 holds the lowest scores
    s = scorer.scores(digits[0])
    assert s[labels == 0].max() <= s[labels == 2].min()


def test_compressibility_direction(digits):
    scorer = make_scorer("compressibility")
    torch.testing.assert_close(scorer.scores(digits[0][:10]), -jpeg_bytes(digits[0][:10]))
    flat = -torch.ones(1, 1, 8, 8)
    assert int(scorer.label(flat)) == 2  # an empty image is the most compressible


def test_scorer_at_size_16():
    x16, _ = load_digit_images(size=16)
    scorer = make_scorer("ink", size=16)
    frac = torch.bincount(scorer.label(x16), minlength=3).float() / len(x16)
    assert torch.all((frac - 1 / 3).abs() < 0.05)
    with pytest.raises(ValueError, match="images"):
        make_scorer("ink").label(x16)


def test_more_buckets():
    scorer = make_scorer("symmetry", num_buckets=5)
    assert scorer.num_labels == 5 and len(scorer.edges) == 4


def test_labelled_dataset_noise_levels(digits):
    pool = digits[0]
    scorer = make_scorer("ink")
    x, y = make_labelled_dataset(pool, scorer, 1000, label_noise=0.0, seed=1)
    assert x.shape == (1000, 1, 8, 8)
    torch.testing.assert_close(y, scorer.label(x), rtol=0, atol=0)
    # without replacement: all drawn images are distinct rows of the pool
    assert len({tuple(r) for r in x.reshape(1000, -1).tolist()}) >= 995
    _, y_all = make_labelled_dataset(pool, scorer, 1000, label_noise=1.0, seed=1)
    assert torch.all(y_all != y) and y_all.max() < 3
    _, y_mid = make_labelled_dataset(pool, scorer, 1000, label_noise=0.3, seed=1)
    rate = float((y_mid != y).float().mean())
    assert abs(rate - 0.3) < 0.05
    # same seed, same dataset
    _, y_mid2 = make_labelled_dataset(pool, scorer, 1000, label_noise=0.3, seed=1)
    assert torch.equal(y_mid, y_mid2)


def test_labelled_dataset_flips_are_uniform_over_other_classes():
    pool = torch.zeros(6000, 2)
    _, y = make_labelled_dataset(
        pool, lambda x: torch.zeros(len(x), dtype=torch.long), 6000, label_noise=1.0, num_labels=4
    )
    counts = torch.bincount(y, minlength=4)
    assert counts[0] == 0
    assert torch.all((counts[1:].float() / 6000 - 1 / 3).abs() < 0.03)


def test_labelled_dataset_with_replacement():
    pool = torch.arange(5.0)[:, None]
    x, y = make_labelled_dataset(pool, lambda x: (x[:, 0] > 2).long(), 50, num_labels=2)
    assert x.shape == (50, 1)
    torch.testing.assert_close(y, (x[:, 0] > 2).long())


def test_digit_offline_dataset():
    x, y, d = make_digit_offline_dataset("compressibility", 200, label_noise=0.0, seed=0)
    assert x.shape == (200, 1, 8, 8) and y.shape == (200,) and d.shape == (200,)
    torch.testing.assert_close(y, make_scorer("compressibility").label(x))
    x_tr, d_tr = load_digit_images("train")
    # the digit labels belong to the drawn images
    match = (x.reshape(200, 1, -1) == x_tr.reshape(1, len(x_tr), -1)).all(-1)
    rows = match.float().argmax(1)
    assert torch.equal(d, d_tr[rows])


def test_errors(digits):
    scorer = make_scorer("ink")
    pool = digits[0]
    with pytest.raises(ValueError, match="name"):
        make_scorer("beauty")
    with pytest.raises(ValueError, match="num_buckets"):
        make_scorer("ink", num_buckets=1)
    with pytest.raises(ValueError, match="images"):
        jpeg_bytes(torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="quality"):
        jpeg_bytes(torch.zeros(2, 1, 8, 8), quality=0)
    with pytest.raises(ValueError, match="n"):
        make_labelled_dataset(pool, scorer, 0)
    with pytest.raises(ValueError, match="label_noise"):
        make_labelled_dataset(pool, scorer, 10, label_noise=1.5)
    with pytest.raises(ValueError, match="pool"):
        make_labelled_dataset(torch.zeros(10), scorer, 5)
    with pytest.raises(ValueError, match="num_labels"):
        make_labelled_dataset(torch.zeros(10, 2), lambda x: torch.zeros(len(x)).long(), 5)
    with pytest.raises(ValueError, match="labeller output"):
        make_labelled_dataset(
            torch.zeros(10, 2), lambda x: torch.full((len(x),), 7), 5, num_labels=3
        )
    with pytest.raises(ValueError, match="edges"):
        TrueScorer("bad", ink_mass, torch.tensor([0.5, 0.2]), ["a", "b", "c"])
    with pytest.raises(ValueError, match="bucket_names"):
        TrueScorer("bad", ink_mass, torch.tensor([0.2, 0.5]), ["a", "b"])
    with pytest.raises(ValueError, match="split"):
        make_digit_offline_dataset("ink", 10, split="val")

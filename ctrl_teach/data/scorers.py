"""Deterministic "true scorers" for digit images and an offline labelled-dataset builder.

In the CTRL paper a condition y is a property of an image measured by a scorer we never
differentiate: JPEG compressibility and an aesthetic score. Here the images are 8x8 digits in
[-1, 1] of shape (N, 1, H, W) and the scorers are:

* ``"compressibility"``: minus the JPEG file size in bytes (higher = more compressible),
  the compressibility reward of DDPO (Black et al., 2023).
* ``"ink"``: mean stroke intensity (the "aesthetic" role: smooth, visible, varies a lot
  within a digit class).
* ``"symmetry"``: left-right mirror similarity.

A :class:`TrueScorer` turns a score into classes 0..B-1 by its empirical quantiles over all
real digits, so class k is the k-th quantile bucket and class 0 is the lowest score.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .._checks import (
    check_choice,
    check_labels,
    check_nonnegative_int,
    check_positive_int,
    check_probability,
    check_tensor,
)
from .digits import DIGIT_SIZES, DIGIT_SPLITS, images_to_unit, load_digit_images

__all__ = [
    "jpeg_bytes",
    "compressibility",
    "ink_mass",
    "symmetry",
    "TrueScorer",
    "make_scorer",
    "SCORER_NAMES",
    "make_labelled_dataset",
    "make_digit_offline_dataset",
]

SCORER_NAMES = ("compressibility", "ink", "symmetry")


def _check_images(name: str, images) -> torch.Tensor:
    return check_tensor(name, images, shape=(None, 1, None, None))


def jpeg_bytes(images: torch.Tensor, upscale: int = 4, quality: int = 75) -> torch.Tensor:
    r"""JPEG file size in bytes of each image (fewer bytes = more compressible).

    Each image is mapped to uint8 by round(255 clamp((x + 1) / 2, 0, 1)), upscaled by
    ``upscale`` with nearest-neighbour (Pillow) and saved as a greyscale JPEG at ``quality``.

    Args:
        images: (N, 1, H, W) images in [-1, 1].
        upscale: integer upscaling factor (>= 1); 8x8 digits at 4 become 32x32.
        quality: JPEG quality, 1..95.

    Returns:
        (N,) float32 byte counts.

    Introduced in: Chapter 7 (CTRL on images).
    """
    from PIL import Image

    images = _check_images("images", images)
    upscale = check_positive_int("upscale", upscale)
    quality = check_positive_int("quality", quality)
    if quality > 95:
        raise ValueError(f"quality must be an integer in 1..95, got {quality}")
    pixels = torch.round(images_to_unit(images.detach().cpu()).clamp(0, 1) * 255)
    pixels = pixels.to(torch.uint8).numpy()
    sizes = []
    for img in pixels[:, 0]:
        pil = Image.fromarray(img, mode="L")
        pil = pil.resize((img.shape[1] * upscale, img.shape[0] * upscale), Image.NEAREST)
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=quality)
        sizes.append(buf.tell())
    return torch.tensor(sizes, dtype=torch.float32)


def compressibility(images: torch.Tensor) -> torch.Tensor:
    r"""Compressibility score r(x) = -\mathrm{jpeg\_bytes}(x) (higher = more compressible).

    Args:
        images: (N, 1, H, W) images in [-1, 1].

    Returns:
        (N,) float32 negative byte counts.

    Introduced in: Chapter 7 (CTRL on images).
    """
    return -jpeg_bytes(images)


def ink_mass(images: torch.Tensor) -> torch.Tensor:
    r"""Ink mass r(x) = mean over pixels of u = (x + 1) / 2 (stroke boldness).

    Args:
        images: (N, 1, H, W) images in [-1, 1].

    Returns:
        (N,) float tensor, in [0, 1] for images in [-1, 1].

    Introduced in: Chapter 7 (CTRL on images).
    """
    images = _check_images("images", images)
    return images_to_unit(images).mean(dim=(1, 2, 3))


def symmetry(images: torch.Tensor) -> torch.Tensor:
    r"""Left-right symmetry ``r(x) = 1 - mean |u - flip_W(u)|`` with u = (x + 1) / 2.

    Args:
        images: (N, 1, H, W) images in [-1, 1].

    Returns:
        (N,) float tensor; 1 for a mirror-symmetric image.

    Introduced in: Chapter 7 (CTRL on images).
    """
    images = _check_images("images", images)
    u = images_to_unit(images)
    return 1.0 - (u - u.flip(-1)).abs().mean(dim=(1, 2, 3))


@dataclass
class TrueScorer:
    r"""A scalar score r(x) plus bucket edges e_1 < ... < e_{B-1} that turn it into classes.

    ``label(x) = k`` iff e_k <= r(x) < e_{k+1} (with e_0 = -inf, e_B = +inf), so class 0 holds
    the lowest scores. For ``"compressibility"`` r = -JPEG bytes, so the highest class is
    the most compressible. Images are scored at their own resolution, which must equal
    ``size``, the resolution at which the edges were computed.

    Args:
        name: scorer name.
        score_fn: images (N, 1, size, size) -> (N,) scores.
        edges: (B-1,) strictly increasing bucket edges.
        bucket_names: B class names, lowest bucket first.
        size: image side the edges belong to (default 8).

    Introduced in: Chapter 7 (CTRL on images).
    """

    name: str
    score_fn: Callable[[torch.Tensor], torch.Tensor]
    edges: torch.Tensor
    bucket_names: Sequence[str]
    size: int = 8

    def __post_init__(self):
        self.edges = check_tensor("edges", torch.as_tensor(self.edges, dtype=torch.float32), ndim=1)
        if len(self.edges) > 1 and not (self.edges[1:] > self.edges[:-1]).all():
            raise ValueError("edges must be strictly increasing")
        if len(self.bucket_names) != len(self.edges) + 1:
            raise ValueError(
                f"bucket_names must have len(edges) + 1 = {len(self.edges) + 1} entries, "
                f"got {len(self.bucket_names)}"
            )
        self.size = check_positive_int("size", self.size)

    @property
    def num_labels(self) -> int:
        """Number of buckets B = len(edges) + 1."""
        return len(self.edges) + 1

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        r"""The score r(x) of each image.

        Args:
            images: (N, 1, size, size) images in [-1, 1].

        Returns:
            (N,) float scores.

        Introduced in: Chapter 7 (CTRL on images).
        """
        images = check_tensor("images", images, shape=(None, 1, self.size, self.size))
        return self.score_fn(images).float()

    def label(self, images: torch.Tensor) -> torch.Tensor:
        r"""Bucket index y = #\{k : e_k <= r(x)\} in {0, ..., B-1}.

        Args:
            images: (N, 1, H, W) images in [-1, 1].

        Returns:
            (N,) long class labels.

        Introduced in: Chapter 7 (CTRL on images).
        """
        s = self.scores(images)
        return torch.bucketize(s, self.edges.to(s.device), right=True)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`label`, so a scorer can be passed as a ``labeller``."""
        return self.label(images)


_SCORE_FNS = {"compressibility": compressibility, "ink": ink_mass, "symmetry": symmetry}


@functools.lru_cache(maxsize=2 * len(SCORER_NAMES))
def _reference_scores(name: str, size: int) -> torch.Tensor:
    """Scores of all 1,797 real digits at size x size (cached)."""
    images, _ = load_digit_images(split="all", size=size)
    return _SCORE_FNS[name](images).double()


def _bucket_names(name: str, num_buckets: int) -> list[str]:
    if num_buckets == 2:
        return [f"low {name}", f"high {name}"]
    if num_buckets == 3:
        return [f"low {name}", f"mid {name}", f"high {name}"]
    return [f"{name} q{k + 1}/{num_buckets}" for k in range(num_buckets)]


def make_scorer(name: str, num_buckets: int = 3, size: int = 8) -> TrueScorer:
    r"""A :class:`TrueScorer` whose edges are the empirical k/B quantiles of r over all digits.

    Edges e_k = Quantile_{k/B}(r(x_1), ..., r(x_1797)), k = 1..B-1 (linear interpolation),
    on all real digits loaded at ``size`` (``load_digit_images("all", size)``); so each class
    holds about 1/B of the real digits at that resolution.

    Args:
        name: one of :data:`SCORER_NAMES`.
        num_buckets: number of classes B >= 2 (3 = tertiles).
        size: image side the scorer accepts, 8 or 16.

    Returns:
        :class:`TrueScorer`.

    Introduced in: Chapter 7 (CTRL on images).
    """
    check_choice("name", name, SCORER_NAMES)
    check_choice("size", size, DIGIT_SIZES)
    num_buckets = check_positive_int("num_buckets", num_buckets)
    if num_buckets < 2:
        raise ValueError(f"num_buckets must be >= 2, got {num_buckets}")
    probs = torch.arange(1, num_buckets, dtype=torch.float64) / num_buckets
    edges = torch.quantile(_reference_scores(name, size), probs).float()
    return TrueScorer(name, _SCORE_FNS[name], edges, _bucket_names(name, num_buckets), size)


def _labelled_draw(pool, labeller, n, label_noise, seed, num_labels):
    """make_labelled_dataset, also returning the (n,) indices drawn from the pool."""
    pool = check_tensor("pool", pool)
    if pool.ndim < 2 or len(pool) == 0:
        raise ValueError(f"pool must have shape (N, ...) with N >= 1, got {tuple(pool.shape)}")
    n = check_positive_int("n", n)
    label_noise = check_probability("label_noise", label_noise)
    num_labels = getattr(labeller, "num_labels", num_labels)
    if num_labels is None:
        raise ValueError("num_labels must be given when labeller has no num_labels attribute")
    num_labels = check_positive_int("num_labels", num_labels)
    if label_noise > 0 and num_labels < 2:
        raise ValueError("num_labels must be >= 2 when label_noise > 0")
    gen = torch.Generator().manual_seed(check_nonnegative_int("seed", seed))
    if n <= len(pool):
        idx = torch.randperm(len(pool), generator=gen)[:n]
    else:
        idx = torch.randint(0, len(pool), (n,), generator=gen)
    x = pool[idx]
    y = check_labels("labeller output", labeller(x), num_labels, batch=n).cpu()
    flip = torch.rand(n, generator=gen) < label_noise
    # shift in 1..B-1 moves y to a uniformly random different class (B >= 2 when it is used).
    shift = torch.randint(1, max(num_labels, 2), (n,), generator=gen)
    y = torch.where(flip, (y + shift) % num_labels, y)
    return x, y.to(x.device), idx


def make_labelled_dataset(
    pool: torch.Tensor,
    labeller,
    n: int,
    label_noise: float = 0.0,
    seed: int = 0,
    num_labels: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""An offline dataset D = {(x_i, \tilde y_i)} with noisy labels.

    x_i is drawn from ``pool`` (without replacement when n <= len(pool), else with),
    y_i = labeller(x_i), and \tilde y_i = y_i with probability 1 - label_noise, otherwise a
    uniformly random class different from y_i:
    P(\tilde y = j | y) = (1 - \eta) 1[j = y] + \eta / (B - 1) 1[j != y].

    Args:
        pool: (N, ...) float tensor of candidate inputs (images or points).
        labeller: callable (n, ...) -> (n,) long labels in {0..B-1}, e.g. a
            :class:`TrueScorer` (whose ``num_labels`` is then used).
        n: dataset size (>= 1).
        label_noise: flip probability \eta in [0, 1].
        seed: seed (>= 0) of the draw and of the label noise.
        num_labels: B, only needed when ``labeller`` has no ``num_labels`` attribute.

    Returns:
        x: (n, ...) inputs; y: (n,) long noisy labels.

    Introduced in: Chapter 7 (CTRL on images).
    """
    x, y, _ = _labelled_draw(pool, labeller, n, label_noise, seed, num_labels)
    return x, y


def make_digit_offline_dataset(
    scorer_name: str,
    n: int,
    label_noise: float = 0.0,
    split: str = "train",
    seed: int = 0,
    size: int = 8,
    num_buckets: int = 3,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Offline dataset of real digits labelled by a true scorer's quantile buckets.

    Equivalent to ``make_labelled_dataset(load_digit_images(split, size)[0],
    make_scorer(scorer_name, num_buckets, size), n, label_noise, seed)``, also returning the
    digits.

    Args:
        scorer_name: one of :data:`SCORER_NAMES`.
        n: dataset size (>= 1).
        label_noise: flip probability in [0, 1].
        split: digit split, ``"all"``, ``"train"`` or ``"test"``.
        seed: seed (>= 0).
        size: image side, 8 or 16 (the scorer's edges are computed at the same size).
        num_buckets: number of score classes B (3 = tertiles, 2 = median split).

    Returns:
        images: (n, 1, size, size); y: (n,) long score classes; digits: (n,) long digits.

    Introduced in: Chapter 7 (CTRL on images).
    """
    check_choice("split", split, DIGIT_SPLITS)
    scorer = make_scorer(scorer_name, num_buckets, size)
    images, digits = load_digit_images(split=split, size=size)
    x, y, idx = _labelled_draw(images, scorer, n, label_noise, seed, None)
    return x, y, digits[idx]

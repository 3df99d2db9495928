"""The scikit-learn 8x8 handwritten digits (1,797 images, ships with scikit-learn).

Pixels are integers 0..16; we map them to [-1, 1] with x / 8 - 1, the range a diffusion model
works in. Nothing is downloaded.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_choice, check_nonnegative_int, check_probability, check_tensor

__all__ = ["load_digit_images", "images_to_unit", "DIGIT_SPLITS", "DIGIT_SIZES"]

DIGIT_SPLITS = ("all", "train", "test")
DIGIT_SIZES = (8, 16)


@functools.lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """The raw (1797, 8, 8) pixel array in 0..16 and the (1797,) digit labels (cached)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images.astype(np.float32), data.target.astype(np.int64)


@functools.lru_cache(maxsize=8)
def _split_indices(test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified (train, test) index arrays."""
    from sklearn.model_selection import train_test_split

    labels = _raw_digits()[1]
    return train_test_split(
        np.arange(len(labels)), test_size=test_fraction, stratify=labels, random_state=seed
    )


def load_digit_images(
    split: str = "all", size: int = 8, test_fraction: float = 0.25, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Load the digits as images x = p / 8 - 1 in [-1, 1] (p in 0..16 the raw pixel).

    ``split`` selects all images or one side of a stratified train/test split (same
    ``test_fraction`` and ``seed`` -> same split). ``size=16`` upsamples bilinearly
    (``align_corners=False``) and clamps back to [-1, 1].

    Args:
        split: ``"all"``, ``"train"`` or ``"test"``.
        size: image side, 8 or 16.
        test_fraction: fraction of images in the test split, in (0, 1).
        seed: random seed of the split (>= 0).

    Returns:
        images: (N, 1, size, size) float32 in [-1, 1]; labels: (N,) long digits 0..9.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """
    check_choice("split", split, DIGIT_SPLITS)
    check_choice("size", size, DIGIT_SIZES)
    test_fraction = check_probability("test_fraction", test_fraction)
    if test_fraction in (0.0, 1.0):
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    seed = check_nonnegative_int("seed", seed)
    raw, labels = _raw_digits()
    if split != "all":
        train_idx, test_idx = _split_indices(test_fraction, seed)
        idx = train_idx if split == "train" else test_idx
        raw, labels = raw[idx], labels[idx]
    images = torch.tensor(raw).unsqueeze(1) / 8.0 - 1.0
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        images = images.clamp(-1.0, 1.0)
    return images, torch.tensor(labels)


def images_to_unit(x: torch.Tensor) -> torch.Tensor:
    r"""Map images from [-1, 1] to [0, 1]: u = (x + 1) / 2 (no clamping).

    Args:
        x: tensor of any shape.

    Returns:
        Tensor of the same shape.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """
    check_tensor("x", x)
    return (x + 1.0) / 2.0

"""Data: conditional 2-D toys, the 8x8 digits, true scorers and offline labelled datasets."""

from .digits import DIGIT_SIZES, DIGIT_SPLITS, images_to_unit, load_digit_images
from .scorers import (
    SCORER_NAMES,
    TrueScorer,
    compressibility,
    ink_mass,
    jpeg_bytes,
    make_digit_offline_dataset,
    make_labelled_dataset,
    make_scorer,
    symmetry,
)
from .toys import TOY_NAMES, ConditionalToy, GaussianMixture, load_toy

__all__ = [
    "DIGIT_SIZES",
    "DIGIT_SPLITS",
    "images_to_unit",
    "load_digit_images",
    "SCORER_NAMES",
    "TrueScorer",
    "compressibility",
    "ink_mass",
    "jpeg_bytes",
    "make_digit_offline_dataset",
    "make_labelled_dataset",
    "make_scorer",
    "symmetry",
    "TOY_NAMES",
    "ConditionalToy",
    "GaussianMixture",
    "load_toy",
]

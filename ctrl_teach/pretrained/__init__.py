"""Pre-trained models shipped inside the package (no downloads)."""

from .checkpoints import CheckpointError, atomic_write_bytes, load_checkpoint, save_checkpoint
from .registry import (
    PRETRAINED_NAMES,
    WEIGHTS_DIR,
    PretrainedDiffusion,
    describe,
    load_digit_oracle,
    load_pretrained,
    retrain,
)

__all__ = [
    "CheckpointError",
    "atomic_write_bytes",
    "save_checkpoint",
    "load_checkpoint",
    "PRETRAINED_NAMES",
    "WEIGHTS_DIR",
    "PretrainedDiffusion",
    "load_pretrained",
    "load_digit_oracle",
    "describe",
    "retrain",
]

"""Argument validation shared by the whole library.

Every public function checks its inputs with these helpers so that bad input raises a
``ValueError`` that names the argument and says what was expected, instead of failing
deep inside torch with a shape mismatch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "check_positive_int",
    "check_nonnegative_int",
    "check_probability",
    "check_positive_float",
    "check_tensor",
    "check_labels",
    "check_choice",
    "check_eps_network",
    "broadcast_labels",
]


def check_positive_int(name: str, value) -> int:
    """Return ``value`` as an int, or raise ``ValueError`` if it is not an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int,)) and not (
        isinstance(value, float) and value.is_integer()
    ):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_nonnegative_int(name: str, value) -> int:
    """Return ``value`` as an int, or raise ``ValueError`` if it is not an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def check_positive_float(name: str, value, allow_zero: bool = False) -> float:
    """Return ``value`` as a finite float > 0 (or >= 0 with ``allow_zero``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def check_probability(name: str, value) -> float:
    """Return ``value`` as a float in [0, 1], or raise ``ValueError``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}") from None
    if not (0.0 <= v <= 1.0):
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return v


def check_tensor(
    name: str,
    x,
    *,
    ndim: int | None = None,
    shape: Sequence[int | None] | None = None,
    finite: bool = True,
) -> torch.Tensor:
    """Check that ``x`` is a floating tensor with the given rank / trailing shape.

    ``shape`` may contain ``None`` for "any size" (e.g. ``(None, 2)`` for a batch of 2-D
    points). Raises ``ValueError`` naming ``name`` on a wrong type, shape or a NaN / inf.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if shape is not None:
        ok = x.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, x.shape))
        if not ok:
            want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    if finite and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def check_labels(name: str, labels, num_labels: int | None, batch: int | None = None
                 ) -> torch.Tensor:
    """Check integer labels in ``{0, ..., num_labels - 1}``; return a long tensor.

    Accepts an int (broadcast to ``batch``), a sequence or a tensor of integers. Negative
    labels are always refused; ``num_labels=None`` skips the upper bound.
    """
    if isinstance(labels, bool):
        raise ValueError(f"{name} must be integer labels, got {labels!r}")
    if isinstance(labels, int):
        if batch is None:
            labels = torch.tensor([labels])
        else:
            labels = torch.full((batch,), labels, dtype=torch.long)
    elif not isinstance(labels, torch.Tensor):
        try:
            labels = torch.as_tensor(labels)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be integer labels, got {labels!r}") from None
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must hold integers, got dtype {labels.dtype}")
    labels = labels.long().reshape(-1)
    if batch is not None and labels.numel() != batch:
        raise ValueError(f"{name} must have {batch} entries, got {labels.numel()}")
    if labels.numel() and labels.min() < 0:
        raise ValueError(f"{name} must be non-negative integer labels, got values in "
                         f"{int(labels.min())}..{int(labels.max())}")
    if labels.numel() and num_labels is not None and labels.max() >= num_labels:
        raise ValueError(
            f"{name} must lie in 0..{num_labels - 1}, got values in "
            f"{int(labels.min())}..{int(labels.max())}"
        )
    return labels


def broadcast_labels(name: str, labels, n: int, device=None, num_labels: int | None = None):
    """The one label normaliser: ``None`` stays ``None``; an int, a one-element tensor or
    ``(n,)`` integers become a checked long tensor ``(n,)`` on ``device``."""
    if labels is None:
        return None
    if isinstance(labels, torch.Tensor) and labels.numel() == 1 and n != 1:
        labels = int(labels)
    labels = check_labels(name, labels, num_labels, batch=n)
    return labels if device is None else labels.to(device)


def check_choice(name: str, value, choices: Sequence[str]) -> str:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_eps_network(name: str, network) -> None:
    """An eps-network must expose ``data_shape`` and ``num_conditions`` (the samplers' contract)."""
    for attr in ("data_shape", "num_conditions"):
        if not hasattr(network, attr):
            raise ValueError(f"{name} must have a {attr} attribute")

"""The learning-rate schedule shared by every training loop in the library.

``cosine_lr_factor`` is the one formula for "linear warm-up, then cosine decay to zero"
(Loshchilov & Hutter 2017, SGDR eq. 5 without restarts); the loops multiply their peak
learning rate by it, directly or through ``torch.optim.lr_scheduler.LambdaLR``.
"""

from __future__ import annotations

import math

__all__ = ["cosine_lr_factor"]


def cosine_lr_factor(k: int, total: int, warmup: int = 0) -> float:
    """Learning-rate multiplier at iteration ``k`` of ``total``.

    ``(k + 1) / warmup`` during the first ``warmup`` iterations, then
    ``(1 + cos(pi f)) / 2`` with ``f = (k - warmup) / (total - warmup)``.

    Args:
        k: the iteration, ``0..total - 1``.
        total: the number of iterations of the loop.
        warmup: iterations of linear warm-up (0: none).

    Returns:
        The factor in ``[0, 1]``.
    """
    if k < warmup:
        return (k + 1) / warmup
    frac = (k - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * frac))

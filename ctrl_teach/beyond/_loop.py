"""The training-loop scaffolding the fine-tuning methods of this package share.

Each method differs only in what one iteration computes (a surrogate, a regression, a squared
residual); the argument checks (``ctrl.finetune.check_fit``, shared with CTRL), the Adam
optimiser with the library's cosine schedule, the clipped step, the progress bar, the callback
and the timing are the same, and live here once.
"""

from __future__ import annotations

import time

import torch

from .._optim import cosine_lr_factor
from ..ctrl.finetune import check_fit  # noqa: F401  (the beyond methods import it from here)
from ..profiles import progress_bar


def adam_with_schedule(params, lr: float, iterations: int, warmup: int):
    """Adam at peak ``lr`` with linear warm-up and cosine decay (``cosine_lr_factor``)."""
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: cosine_lr_factor(k, iterations, warmup))
    return opt, sched


def clipped_step(loss, params, opt, sched, clip_grad: float, extra=()) -> float:
    """Back-propagate ``loss``, clip the gradient of ``params``, step ``opt`` (and the
    optimisers in ``extra``) and the schedule; returns the norm before clipping."""
    opt.zero_grad()
    for o in extra:
        o.zero_grad()
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(params, clip_grad)
    opt.step()
    for o in extra:
        o.step()
    sched.step()
    return float(norm)


def train_loop(augmented, iterations: int, one_iteration, hist, *, desc: str, progress: bool,
               callback=None):
    """Run ``one_iteration(k)`` (which appends to ``hist``) ``iterations`` times in train mode,
    calling ``callback(k + 1, hist)`` in eval mode after each (``True`` stops); sets
    ``hist.wall_time`` and returns ``hist``."""
    start = time.perf_counter()
    augmented.train()
    for k in progress_bar(range(iterations), desc=desc, enabled=progress):
        one_iteration(k)
        if callback is not None:
            augmented.eval()
            stop = callback(k + 1, hist)
            augmented.train()
            if stop:
                break
    augmented.eval()
    hist.wall_time = time.perf_counter() - start
    return hist

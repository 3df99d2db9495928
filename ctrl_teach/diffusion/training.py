"""One denoising-training loop for every network in the book (Chapter 1, "Training").

Minimises the simplified DDPM loss (Ho et al. 2020, eq. 14)::

    L(theta) = E_{t, x_0, eps} | eps - eps_theta(x_t, t, c) |^2,
    t ~ U{1..T},  x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps

with Adam, gradient-norm clipping, optional label dropout (the null label, for
classifier-free guidance) and an optional exponential moving average of the weights.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch

from .._checks import (
    check_labels,
    check_positive_float,
    check_positive_int,
    check_probability,
    check_tensor,
)
from ..profiles import default_device
from .networks import EpsilonNetwork
from .schedules import NoiseSchedule

__all__ = ["TrainingResult", "train_denoiser", "denoising_loss"]


@dataclass
class TrainingResult:
    """What :func:`train_denoiser` returns.

    Attributes:
        model: the trained network (the EMA weights when ``ema_decay`` was given).
        losses: the loss of every iteration.
        seconds: wall time of the loop.
    """

    model: EpsilonNetwork
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def denoising_loss(model: EpsilonNetwork, schedule: NoiseSchedule, x0: torch.Tensor,
                   cond=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Monte Carlo estimate of the simplified loss ``E |eps - eps_theta(x_t, t, c)|^2``.

    The squared error is averaged over the batch and the data dimensions.
    """
    t = torch.randint(1, schedule.T + 1, (x0.shape[0],), generator=generator).to(x0.device)
    x_t, eps = schedule.q_sample(x0, t, generator=generator)
    return (model(x_t, t, cond) - eps).pow(2).mean()


def train_denoiser(
    model: EpsilonNetwork,
    schedule: NoiseSchedule,
    data: torch.Tensor,
    cond: torch.Tensor | None = None,
    *,
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 2e-3,
    seed: int = 0,
    device=None,
    grad_clip: float = 1.0,
    cond_drop_prob: float = 0.0,
    ema_decay: float | None = None,
    cosine_decay: bool = True,
    progress: bool = True,
) -> TrainingResult:
    """Train ``model`` to predict the noise of ``data`` under ``schedule``.

    Args:
        model: an :class:`EpsilonNetwork`; trained in place (a copy is kept for EMA).
        schedule: the forward process.
        data: ``(N, *model.data_shape)`` training inputs.
        cond: ``(N,)`` condition labels for a conditional model, else ``None``.
        steps, batch_size, lr: Adam iterations, minibatch size, peak learning rate.
        seed: seeds the minibatches, the steps ``t`` and the noise.
        device: ``"cuda"``, ``"mps"``, ``"cpu"`` or ``None`` for :func:`default_device`.
        grad_clip: maximum global gradient norm.
        cond_drop_prob: probability of replacing a label by the null label (CFG training).
        ema_decay: if set (e.g. 0.999), return the exponential moving average of the weights.
        cosine_decay: anneal the learning rate to zero with a cosine.
        progress: show a tqdm bar with the running loss.
    Returns:
        a :class:`TrainingResult` with the model (on ``device``) and the loss history.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """
    import time

    from tqdm import tqdm

    if not isinstance(model, EpsilonNetwork):
        raise ValueError(f"model must be an EpsilonNetwork, got {type(model).__name__}")
    check_tensor("data", data, shape=(None, *model.data_shape))
    steps = check_positive_int("steps", steps)
    batch_size = check_positive_int("batch_size", batch_size)
    lr = check_positive_float("lr", lr)
    grad_clip = check_positive_float("grad_clip", grad_clip)
    cond_drop_prob = check_probability("cond_drop_prob", cond_drop_prob)
    if model.num_conditions:
        if cond is None:
            raise ValueError("cond is required for a conditional model")
        cond = check_labels("cond", cond, model.num_conditions, batch=data.shape[0])
    elif cond is not None:
        raise ValueError("cond must be None for an unconditional model")
    if ema_decay is not None and not 0 < ema_decay < 1:
        raise ValueError(f"ema_decay must be in (0, 1), got {ema_decay!r}")

    device = torch.device(device) if device is not None else default_device()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = model.to(device).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False) if ema_decay else None
    data = data.to(device)
    cond = cond.to(device) if cond is not None else None
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    warmup = max(1, steps // 50)

    def lr_at(k):  # linear warm-up, then optional cosine decay
        if k < warmup:
            return lr * (k + 1) / warmup
        frac = (k - warmup) / max(1, steps - warmup)
        return lr * 0.5 * (1 + math.cos(math.pi * frac)) if cosine_decay else lr

    losses = []
    start = time.perf_counter()
    bar = tqdm(range(steps), desc="training", disable=not progress, leave=False)
    for k in bar:
        idx = torch.randint(0, data.shape[0], (batch_size,), generator=gen).to(device)
        c = None
        if cond is not None:
            c = cond[idx]
            drop = torch.rand(batch_size, generator=gen).to(device) < cond_drop_prob
            c = torch.where(drop, torch.full_like(c, model.num_conditions), c)
        for group in opt.param_groups:
            group["lr"] = lr_at(k)
        loss = denoising_loss(model, schedule, data[idx], c, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        if ema is not None:
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1 - ema_decay)
        losses.append(loss.item())
        if progress and k % 50 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
    trained = ema if ema is not None else model
    return TrainingResult(model=trained.eval(), losses=losses,
                          seconds=time.perf_counter() - start)

"""One denoising-training loop for every network in the book (Chapter 1, "Training").

Minimises the simplified DDPM loss (Ho et al. 2020, eq. 14)::

    L(theta) = E_{t, x_0, eps} | eps - eps_theta(x_t, t, c) |^2,
    t ~ U{1..T},  x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps

with Adam, gradient-norm clipping, optional label dropout (the null label, for
classifier-free guidance) and an optional exponential moving average of the weights.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from .._checks import (
    check_labels,
    check_positive_float,
    check_positive_int,
    check_probability,
    check_tensor,
)
from .._optim import cosine_lr_factor
from ..profiles import default_device, progress_bar
from .networks import EpsilonNetwork
from .schedules import NoiseSchedule

__all__ = ["TrainingResult", "train_denoiser", "denoising_loss"]


@dataclass
class TrainingResult:
    """What :func:`train_denoiser` returns.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).

    Attributes:
        model: the trained network (the EMA weights when ``ema_decay`` was given).
        losses: the loss of every iteration.
        seconds: wall time of the loop.
    """

    model: EpsilonNetwork
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def denoising_loss(model: EpsilonNetwork, schedule: NoiseSchedule, x0: torch.Tensor,
                   c=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Monte Carlo estimate of the simplified loss ``E |eps - eps_theta(x_t, t, c)|^2``
    (Ho et al. 2020, eq. 14), averaged over the batch and the data dimensions.

    Args:
        model: the eps-network.
        schedule: the forward process.
        x0: ``(B, *data_shape)`` clean data.
        c: ``None`` or ``(B,)`` condition labels.
        generator: for ``t ~ U{1..T}`` and the noise.

    Returns:
        The scalar loss.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """
    t = torch.randint(1, schedule.T + 1, (x0.shape[0],), generator=generator).to(x0.device)
    x_t, eps = schedule.q_sample(x0, t, generator=generator)
    return (model(x_t, t, c) - eps).pow(2).mean()


def train_denoiser(
    model: EpsilonNetwork,
    schedule: NoiseSchedule,
    x: torch.Tensor,
    *,
    c: torch.Tensor | None = None,
    iterations: int = 2000,
    batch_size: int = 256,
    lr: float = 2e-3,
    seed: int = 0,
    device=None,
    grad_clip: float = 1.0,
    c_drop_prob: float = 0.0,
    ema_decay: float | None = None,
    cosine_decay: bool = True,
    progress: bool = True,
) -> TrainingResult:
    """Train ``model`` to predict the noise of ``x`` under ``schedule`` (Ho et al. 2020,
    Alg. 1: the simplified loss of eq. 14 with Adam).

    Args:
        model: an :class:`EpsilonNetwork`; trained in place (a copy is kept for EMA).
        schedule: the forward process.
        x: ``(N, *model.data_shape)`` training inputs.
        c: ``(N,)`` condition labels for a conditional model, else ``None``.
        iterations: number of Adam iterations (the training budget).
        batch_size: minibatch size.
        lr: peak learning rate (linear warm-up over the first 2 %, then cosine decay).
        seed: seeds a local generator for the minibatches, the steps ``t`` and the noise.
        device: ``"cuda"``, ``"mps"``, ``"cpu"`` or ``None`` for :func:`default_device`.
        grad_clip: maximum global gradient norm.
        c_drop_prob: probability of replacing a condition by the null label (CFG training).
        ema_decay: if set (e.g. 0.999), return the exponential moving average of the weights.
        cosine_decay: anneal the learning rate to zero with a cosine.
        progress: show a tqdm bar with the running loss.
    Returns:
        a :class:`TrainingResult` with the model (on ``device``) and the loss history.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """
    import time

    if not isinstance(model, EpsilonNetwork):
        raise ValueError(f"model must be an EpsilonNetwork, got {type(model).__name__}")
    check_tensor("x", x, shape=(None, *model.data_shape))
    if x.shape[0] == 0:
        raise ValueError(f"x must hold at least one training point, got shape {tuple(x.shape)}")
    steps = check_positive_int("iterations", iterations)
    batch_size = check_positive_int("batch_size", batch_size)
    lr = check_positive_float("lr", lr)
    grad_clip = check_positive_float("grad_clip", grad_clip)
    c_drop_prob = check_probability("c_drop_prob", c_drop_prob)
    if model.num_conditions:
        if c is None:
            raise ValueError("c is required: the model is conditional "
                             f"(num_conditions={model.num_conditions})")
        c = check_labels("c", c, model.num_conditions, batch=x.shape[0])
    elif c is not None:
        raise ValueError("c must be None: the model is unconditional (num_conditions=0)")
    if ema_decay is not None and not 0 < ema_decay < 1:
        raise ValueError(f"ema_decay must be in (0, 1), got {ema_decay!r}")

    device = torch.device(device) if device is not None else default_device()
    gen = torch.Generator().manual_seed(seed)
    model = model.to(device).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False) if ema_decay else None
    data = x.to(device)
    cond = c.to(device) if c is not None else None
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    warmup = max(1, steps // 50)

    def lr_at(k):  # linear warm-up, then optional cosine decay
        if not cosine_decay:
            return lr * min(1.0, (k + 1) / warmup)
        return lr * cosine_lr_factor(k, steps, warmup)

    losses = []
    start = time.perf_counter()
    bar = progress_bar(range(steps), desc="training", enabled=progress)
    for k in bar:
        idx = torch.randint(0, data.shape[0], (batch_size,), generator=gen).to(device)
        cb = None
        if cond is not None:
            cb = cond[idx]
            drop = torch.rand(batch_size, generator=gen).to(device) < c_drop_prob
            cb = torch.where(drop, torch.full_like(cb, model.num_conditions), cb)
        for group in opt.param_groups:
            group["lr"] = lr_at(k)
        loss = denoising_loss(model, schedule, data[idx], cb, gen)
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

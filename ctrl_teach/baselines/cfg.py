"""Classifier-free guidance (Ho & Salimans 2022) as a baseline for a new label ``y`` (Ch. 8).

CFG needs a network that reads ``y``. For a new control on a pre-trained ``p(x | c)`` we build
:class:`LabelConditionedDenoiser`: a trainable copy of the pre-trained eps-network plus a
zero-initialised embedding of ``y`` (row ``K`` is the null label) added to its time embedding,
so it starts out equal to the pre-trained model. It is trained with the denoising loss on the
labelled triples ``(x, c, y)`` (the *same* offline data as CTRL's classifier, but CFG needs
``c`` too), replacing ``y`` by the null label with probability ``p_drop`` (label dropout).

Guidance (the convention of related-methods.md, Sec. 3; Ho & Salimans eq. 6):

    eps_w(x_t, t, c, y) = (1 + w) eps(x_t, t, c, y) - w eps(x_t, t, c, null)
                        = eps(x_t, t, c, null) + (1 + w) (eps(x_t, t, c, y) - eps(x_t, t, c, null)).

``w = 0`` is the plain conditional model (one network evaluation per step); ``w > 0`` costs
two evaluations and does not sample ``p(x | c, y) p(y | x, c)^w`` in general. Diffusers'
``guidance_scale`` is ``1 + w``. The unconditional branch keeps ``c`` and drops only ``y``, so
it is the (re-trained) pre-trained model ``p(x | c)``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch import nn

from .._checks import (
    broadcast_labels,
    check_labels,
    check_positive_float,
    check_positive_int,
    check_probability,
    check_tensor,
)
from .._optim import cosine_lr_factor
from ..diffusion import NoiseSchedule

__all__ = ["LabelConditionedDenoiser", "train_cfg_model", "ClassifierFreeGuided", "cfg_eps"]


def cfg_eps(eps_cond: torch.Tensor, eps_null: torch.Tensor, w: float) -> torch.Tensor:
    """``(1 + w) eps_cond - w eps_null`` (classifier-free guidance with weight ``w``).

    Introduced in: Chapter 2 (Adding a control: guidance).
    """
    w = check_positive_float("w", w, allow_zero=True)
    if w == 0:
        return eps_cond
    return (1 + w) * eps_cond - w * eps_null


class LabelConditionedDenoiser(nn.Module):
    """``eps(x_t, t, c, y) = network(x_t, t, c, extra_emb=E[y])`` with ``E`` zero-initialised.

    Args:
        network: a pre-trained :class:`~ctrl_teach.diffusion.EpsilonNetwork` (copied; the
            original is left untouched).
        num_labels: ``K``; the null label is ``K``.
        init: ``"pretrained"`` (copy the weights) or ``"scratch"`` (re-initialise them).
    Forward: ``(x, t, c=None, y=None)``; ``y=None`` means the null label.

    Introduced in: Chapter 2 (Adding a control: guidance).
    """

    def __init__(self, network: nn.Module, num_labels: int, init: str = "pretrained"):
        super().__init__()
        if not hasattr(network, "emb_dim") or not hasattr(network, "data_shape"):
            raise ValueError("network must be an EpsilonNetwork (with emb_dim / extra_emb)")
        if init not in ("pretrained", "scratch"):
            raise ValueError(f"init must be one of ['pretrained', 'scratch'], got {init!r}")
        self.network = copy.deepcopy(network).requires_grad_(True)
        if init == "scratch":
            for module in self.network.modules():
                if hasattr(module, "reset_parameters") and module is not self.network:
                    module.reset_parameters()
        self.num_labels = check_positive_int("num_labels", num_labels)
        self.label = nn.Embedding(num_labels + 1, network.emb_dim)
        nn.init.zeros_(self.label.weight)
        self.data_shape = tuple(network.data_shape)
        self.num_conditions = int(network.num_conditions)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c=None, y=None) -> torch.Tensor:
        if y is None:
            y = torch.full((x.shape[0],), self.num_labels, dtype=torch.long, device=x.device)
        return self.network(x, t, c, extra_emb=self.label(y))


@dataclass
class CFGFit:
    """What :func:`train_cfg_model` returns: the trained (frozen) ``model``, the minibatch
    ``losses`` and the wall time in ``seconds``.

    Introduced in: Chapter 2 (Adding a control: guidance).
    """

    model: LabelConditionedDenoiser
    losses: list
    seconds: float


def train_cfg_model(model: LabelConditionedDenoiser, schedule: NoiseSchedule, x: torch.Tensor,
                    y, *, c=None, iterations: int = 1000, batch_size: int = 256,
                    lr: float = 1e-3, label_lr: float | None = None, label_drop: float = 0.2,
                    seed: int = 0) -> CFGFit:
    """Train ``model`` on labelled triples with the denoising loss and label dropout.

    ``L = E |eps - eps(x_t, t, c, y~)|^2`` with ``y~ = null`` with probability ``label_drop``
    (Ho & Salimans 2022, Alg. 1), ``t ~ U{1..T}``, Adam with a cosine-decayed learning rate.

    Args:
        model: a :class:`LabelConditionedDenoiser` (trained in place).
        schedule: its noise schedule.
        x: ``(N, *data_shape)`` offline inputs.
        y: ``(N,)`` labels in ``0..K-1``.
        c: ``(N,)`` pre-trained conditions (required if the network has them).
        iterations: Adam iterations (cosine-decayed learning rate).
        batch_size: minibatch size.
        lr: learning rate of the network.
        label_lr: learning rate of the new label embedding (default ``lr``; CTRL's released
            code trains its new embedding 10x faster than the rest).
        label_drop: probability of replacing ``y`` by the null label.
        seed: seeds a local generator.

    Returns:
        A :class:`CFGFit`; the model is left frozen, in eval mode.

    Introduced in: Chapter 2 (Adding a control: guidance).
    """
    if not isinstance(model, LabelConditionedDenoiser):
        raise ValueError(f"model must be a LabelConditionedDenoiser, got "
                         f"{type(model).__name__}")
    check_tensor("x", x, shape=(None, *model.data_shape))
    n = x.shape[0]
    y = check_labels("y", y, model.num_labels, batch=n)
    if model.num_conditions:
        if c is None:
            raise ValueError("c is required: the pre-trained network is conditional")
        c = check_labels("c", c, model.num_conditions, batch=n)
    label_drop = check_probability("label_drop", label_drop)
    steps = check_positive_int("iterations", iterations)
    batch_size = check_positive_int("batch_size", batch_size)
    lr = check_positive_float("lr", lr)
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    c = None if c is None else c.to(device)
    gen = torch.Generator().manual_seed(seed)
    model.train().requires_grad_(True)
    label_lr = lr if label_lr is None else check_positive_float("label_lr", label_lr)
    opt = torch.optim.Adam([{"params": model.network.parameters(), "lr": lr},
                            {"params": model.label.parameters(), "lr": label_lr}])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: cosine_lr_factor(k, steps))
    losses, start = [], time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(n, (batch_size,), generator=gen).to(device)
        drop = (torch.rand(batch_size, generator=gen) < label_drop).to(device)
        yb = torch.where(drop, torch.full_like(y[idx], model.num_labels), y[idx])
        t = torch.randint(1, schedule.T + 1, (batch_size,), generator=gen).to(device)
        x_t, eps = schedule.q_sample(x[idx], t, generator=gen)
        loss = (model(x_t, t, None if c is None else c[idx], yb) - eps).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    model.eval().requires_grad_(False)
    return CFGFit(model, losses, time.perf_counter() - start)


class ClassifierFreeGuided(nn.Module):
    """Eps-network ``eps_w`` of classifier-free guidance for a fixed requested label ``y``.

    Args:
        model: a trained :class:`LabelConditionedDenoiser`.
        y: int or ``(N,)`` labels.
        w: guidance weight ``w >= 0`` (``w = 0``: the conditional model itself, one
            evaluation per step; ``w > 0``: two).
    Use: ``sampler.sample(ClassifierFreeGuided(model, y=y, w=w), n, c=c)``.

    Introduced in: Chapter 2 (Adding a control: guidance).
    """

    def __init__(self, model: LabelConditionedDenoiser, *, y, w: float = 0.0):
        super().__init__()
        if not isinstance(model, LabelConditionedDenoiser):
            raise ValueError(f"model must be a LabelConditionedDenoiser, got "
                             f"{type(model).__name__}")
        self.model, self.y = model, y
        self.w = check_positive_float("w", w, allow_zero=True)
        self.data_shape, self.num_conditions = model.data_shape, model.num_conditions

    def forward(self, x: torch.Tensor, t: torch.Tensor, c=None) -> torch.Tensor:
        y = broadcast_labels("y", self.y, x.shape[0], x.device, self.model.num_labels)
        eps_cond = self.model(x, t, c, y)
        if self.w == 0:
            return eps_cond
        return cfg_eps(eps_cond, self.model(x, t, c, None), self.w)

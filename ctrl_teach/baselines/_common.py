"""Helpers shared by the guided samplers (labels, gradients of log-likelihoods)."""

from __future__ import annotations

import torch


def pick_log_prob(logp: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``logp[i, y_i]`` for ``(N, K)`` log-probabilities: shape ``(N,)``."""
    if logp.ndim != 2 or logp.shape[0] != y.shape[0]:
        raise ValueError(f"classifier must return (N, K) log-probabilities, got "
                         f"{tuple(logp.shape)}")
    return logp.gather(1, y[:, None]).squeeze(1)


def grad_wrt(x: torch.Tensor, fn) -> tuple[torch.Tensor, torch.Tensor]:
    """``(fn(x), d sum fn(x) / dx)`` with gradients enabled even inside ``no_grad``."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        value = fn(x)
        (grad,) = torch.autograd.grad(value.sum(), x)
    return value.detach(), grad

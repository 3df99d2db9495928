"""Rejection sampling from the pre-trained model: the exact (but costly) baseline (Ch. 4, 8).

Accept ``x ~ p_pre(x | c)`` with probability ``p(y | x, c)``: the accepted points are exact
samples of CTRL's target ``p_pre(x | c) p(y | x, c) / Z`` with ``Z = p(y | c)`` the acceptance
rate, so one accepted sample costs on average ``K / Z`` network evaluations for a ``K``-step
sampler. This module only adds that cost accounting around
:func:`ctrl_teach.ctrl.references.rejection_sample_pretrained`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._checks import check_positive_int
from ..diffusion import DiffusionSampler
from ..target import mean_confidence, rejection_sample_pretrained

__all__ = ["PretrainedSampler", "RejectionResult", "rejection_baseline"]


class PretrainedSampler:
    """``(network, sampler)`` with a ``sample(n, c=..., generator=...)`` method that counts
    draws.

    Args:
        network: the frozen pre-trained eps-network.
        sampler: its :class:`~ctrl_teach.diffusion.DiffusionSampler`.

    Introduced in: Chapter 2 (Adding a control: guidance).
    """

    def __init__(self, network: nn.Module, sampler: DiffusionSampler):
        if not isinstance(sampler, DiffusionSampler):
            raise ValueError(f"sampler must be a DiffusionSampler, got {type(sampler).__name__}")
        self.network, self.sampler = network, sampler
        self.drawn: list[torch.Tensor] = []

    @property
    def num_drawn(self) -> int:
        """Number of pre-trained samples drawn so far."""
        return sum(len(x) for x in self.drawn)

    def sample(self, n: int, *, c=None, generator=None) -> torch.Tensor:
        """``n`` draws of ``p_pre(x | c)`` (kept in ``self.drawn``)."""
        x = self.sampler.sample(self.network, n, c=c, generator=generator)
        self.drawn.append(x)
        return x


@dataclass
class RejectionResult:
    """Accepted samples and their cost: ``acceptance`` = ``E_pre[p(y | x, c)]`` over all drawn
    candidates (an unbiased estimate of ``Z``), ``nfe_per_sample`` = network evaluations per
    accepted sample (``K / acceptance``).

    Introduced in: Chapter 2 (Adding a control: guidance).
    """

    x: torch.Tensor
    num_drawn: int
    acceptance: float
    nfe_per_sample: float


def rejection_baseline(network: nn.Module, sampler: DiffusionSampler, reward_model: nn.Module,
                       n: int, *, c=None, y: int, generator: torch.Generator | None = None,
                       batch: int = 2048, max_rounds: int = 100) -> RejectionResult:
    """``n`` exact samples of ``p_pre(x | c) p(y | x, c) / Z`` and their cost.

    Args:
        network: the frozen pre-trained eps-network.
        sampler: its sampler.
        reward_model: ``(x, c) -> (N, K)`` log-probabilities (CTRL's classifier, or the truth).
        n: samples wanted.
        c: an int condition, or ``None``.
        y: the int label.
        generator: a ``torch.Generator`` (default: seed 0).
        batch: candidates per round.
        max_rounds: rounds before giving up.

    Returns:
        A :class:`RejectionResult` (the cost is the expected one, ``K / Z_hat``).

    Introduced in: Chapter 2 (Adding a control: guidance).
    """
    n = check_positive_int("n", n)
    batch = check_positive_int("batch", batch)
    pre = PretrainedSampler(network, sampler)
    x = rejection_sample_pretrained(pre, reward_model, n, c=c, y=y, generator=generator,
                                    batch=batch, max_rounds=max_rounds)
    acceptance = mean_confidence(torch.cat(pre.drawn), reward_model, c=c, y=y)
    return RejectionResult(x, pre.num_drawn, acceptance, sampler.num_steps / acceptance)

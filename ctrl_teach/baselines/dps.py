"""Reconstruction guidance / DPS with a clean-data classifier (Chapter 8).

DPS (Chung et al. 2023) replaces the unknown noisy likelihood by the clean classifier at
Tweedie's estimate of the clean point:

    p_t(y | x_t) = E[p(y | x_0) | x_t] ~= p(y | x0_hat(x_t)),
    x0_hat(x_t) = (x_t - sqrt(1 - abar_t) eps_theta(x_t, t, c)) / sqrt(abar_t),

and guides in eps-form (the classifier variant used as a CTRL/SVDD baseline, related-methods.md
Sec. 4.2):

    eps_hat = eps_theta - zeta sqrt(1 - abar_t) grad_{x_t} log p(y | x0_hat(x_t), c).

The gradient goes *through the eps-network* (one extra backward per step). ``zeta = 0`` is the
pre-trained model. By Jensen the approximation is biased even at ``zeta = 1``; the
original DPS normalises the step by the residual norm, here the step size ``zeta`` (the
``scale`` argument; DPS's own symbol, so as not to clash with the reward weight ``gamma``) is
a plain number.
It uses the same clean classifier as CTRL and needs no training.
"""

from __future__ import annotations

import torch
from torch import nn

from .._checks import broadcast_labels, check_eps_network, check_positive_float
from ..diffusion import NoiseSchedule
from ..target import num_reward_labels, reward_log_prob
from ._common import grad_wrt

__all__ = ["DPSGuided"]


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *[1] * (x.ndim - 1))


class DPSGuided(nn.Module):
    """Eps-network of DPS guidance with a clean classifier (eq. in the module docstring).

    Args:
        network: frozen pre-trained eps-network ``network(x, t, c)``.
        classifier: clean ``classifier(x, c) -> (N, K)`` log-probabilities (CTRL's reward, any
            module :func:`~ctrl_teach.ctrl.reward_log_prob` accepts, e.g. a flat
            :class:`~ctrl_teach.ctrl.MultiTaskReward`).
        schedule: the network's noise schedule.
        y: int or ``(N,)`` requested labels.
        scale: the step size ``zeta >= 0``.
        clip_x0: clamp ``x0_hat`` to ``[-clip_x0, clip_x0]`` before the classifier (images).
    Use: ``sampler.sample(DPSGuided(net, clf, schedule, y=y, scale=zeta), n, c=c)``.
    Cost per step: one network forward *and backward*, one classifier forward and backward.

    Introduced in: Chapter 2 (Adding a control: guidance).
    """

    def __init__(self, network: nn.Module, classifier: nn.Module, schedule: NoiseSchedule, *,
                 y, scale: float = 1.0, clip_x0: float | None = None):
        super().__init__()
        if not isinstance(schedule, NoiseSchedule):
            raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        check_eps_network("network", network)
        self.num_labels = num_reward_labels(classifier)
        self.network, self.classifier, self.schedule = network, classifier, schedule
        self.data_shape, self.num_conditions = network.data_shape, network.num_conditions
        self.y = y
        self.scale = check_positive_float("scale", scale, allow_zero=True)
        self.clip_x0 = None if clip_x0 is None else check_positive_float("clip_x0", clip_x0)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c=None) -> torch.Tensor:
        if self.scale == 0:
            return self.network(x, t, c)
        y = broadcast_labels("y", self.y, x.shape[0], x.device, int(self.num_labels))
        out = {}

        def log_lik(z):
            eps = self.network(z, t, c)
            out["eps"] = eps.detach()
            x0 = self.schedule.predict_x0(z, t, eps)
            if self.clip_x0 is not None:
                x0 = x0.clamp(-self.clip_x0, self.clip_x0)
            return reward_log_prob(self.classifier, x0, c=c, y=y)

        _, grad = grad_wrt(x, log_lik)
        _, b = self.schedule.signal_and_noise(t, dtype=x.dtype, device=x.device)
        return out["eps"] - self.scale * _bcast(b, x) * grad

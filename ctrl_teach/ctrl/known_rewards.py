"""Known reward models with exact answers, for checking CTRL (Chapters 4-5).

Both follow the reward contract of :mod:`ctrl_teach.target`
(``reward_model(x, c) -> (N, K)`` log-probabilities, ``c`` ignored).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import check_positive_float, check_tensor

__all__ = ["ProbitClassifier", "GaussianLikelihood"]


class ProbitClassifier(nn.Module):
    """Known binary classifier ``p(y=1 | x) = Phi((w.x + b) / scale)``; ``c`` ignored.

    Its normaliser under a Gaussian mixture is closed form (the probit-Gaussian integral), see
    :func:`ctrl_teach.ctrl.references.probit_log_partition`.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    def __init__(self, w, b: float = 0.0, scale: float = 1.0):
        super().__init__()
        w = check_tensor("w", torch.as_tensor(w, dtype=torch.float32), ndim=1)
        self.register_buffer("w", w)
        self.b, self.scale = float(b), check_positive_float("scale", scale)
        self.data_shape, self.num_labels = (w.numel(),), 2

    def forward(self, x: torch.Tensor, c=None) -> torch.Tensor:
        z = (x @ self.w + self.b) / self.scale
        return torch.stack([_log_ndtr(-z), _log_ndtr(z)], dim=-1)


def _log_ndtr(z: torch.Tensor) -> torch.Tensor:
    return torch.special.log_ndtr(z)


class GaussianLikelihood(nn.Module):
    """Continuous-observation reward ``log p(y_k | x) = log N(obs_k; w.x, tau^2)``.

    "Class" ``k`` indexes a fixed list of observations ``obs`` (so ``y`` stays a label).
    Rows are likelihoods, not normalised over ``k``; that is all the objective needs.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """

    def __init__(self, observations, tau: float, w=None):
        super().__init__()
        obs = torch.as_tensor(observations, dtype=torch.float32).reshape(-1)
        self.register_buffer("obs", obs)
        self.tau = check_positive_float("tau", tau)
        self.register_buffer("w", torch.ones(1) if w is None else torch.as_tensor(w).float())
        self.num_labels = obs.numel()
        self.data_shape = (self.w.numel(),)

    def forward(self, x: torch.Tensor, c=None) -> torch.Tensor:
        mu = x.reshape(x.shape[0], -1) @ self.w
        z = (self.obs[None, :] - mu[:, None]) / self.tau
        return -0.5 * z**2 - math.log(self.tau * math.sqrt(2 * math.pi))

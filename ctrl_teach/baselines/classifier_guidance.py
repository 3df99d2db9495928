"""Classifier guidance with a noise-conditioned classifier (Chapter 2, used in Chapter 8).

Bayes' rule for the noisy marginals, ``grad log p_t(x_t | y) = grad log p_t(x_t) +
grad log p_t(y | x_t)``, gives two samplers (Dhariwal & Nichol 2021):

* **score form** (their Algorithm 2, used by :class:`ClassifierGuided`):

      eps_hat(x_t, t) = eps_theta(x_t, t, c) - s sqrt(1 - abar_t) grad_x log p_phi(y | x_t, t),

  then the sampler's usual step from ``eps_hat``. With the exact noisy classifier and
  ``s = 1`` this *is* the exact eps-network of the conditional law ``p(x_0 | c, y)``.
* **mean form** (their Algorithm 1, :func:`classifier_guidance_control`): the step mean moves
  by ``s sigma_t^2 grad_x log p_phi(y | x_t, t)``, i.e. a control ``a = s sigma_t grad`` in
  units of the step's noise (the ``control`` argument of ``DiffusionSampler.sample``).

The scale ``lambda`` samples (approximately) ``p(x | c) p(y | x)^lambda``; ``lambda = 1`` is the
CTRL target.
CTRL's optimal control at ``alpha = 1`` is the same correction, learned by RL from a *clean*
classifier instead of a noisy one (related-methods.md, Sec. 2).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import broadcast_labels, check_eps_network, check_positive_float, check_positive_int
from ..diffusion import NoiseSchedule
from ._common import grad_wrt, pick_log_prob

__all__ = ["ClassifierGuided", "classifier_guidance_control", "ExactGaussianNoisyLikelihood"]


class ClassifierGuided(nn.Module):
    """Eps-network of classifier guidance in score form (eq. in the module docstring).

    Args:
        network: frozen pre-trained eps-network ``network(x, t, c)``.
        classifier: noise-conditioned ``classifier(x_t, t, c) -> (N, K)`` log-probabilities.
        schedule: the network's :class:`~ctrl_teach.diffusion.NoiseSchedule`.
        y: the requested label (int, or ``(N,)`` matching the sampling batch).
        scale: guidance scale ``s >= 0`` (``s = 0`` is the pre-trained model).
    Use: ``sampler.sample(ClassifierGuided(net, clf, schedule, y=y, scale=s), n, c=c)``.
    Cost per step: one network forward, one classifier forward and backward.

    Introduced in: Chapter 2 (Adding a control: guidance).
    """

    def __init__(self, network: nn.Module, classifier: nn.Module, schedule: NoiseSchedule, *,
                 y, scale: float = 1.0):
        super().__init__()
        if not isinstance(schedule, NoiseSchedule):
            raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        check_eps_network("network", network)
        if not hasattr(classifier, "num_labels"):
            raise ValueError("classifier must have a num_labels attribute")
        self.network, self.classifier, self.schedule = network, classifier, schedule
        self.data_shape, self.num_conditions = network.data_shape, network.num_conditions
        self.y = y
        self.scale = check_positive_float("scale", scale, allow_zero=True)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c=None) -> torch.Tensor:
        eps = self.network(x, t, c)
        if self.scale == 0:
            return eps
        y = broadcast_labels("y", self.y, x.shape[0], x.device, int(self.classifier.num_labels))
        _, grad = grad_wrt(x, lambda z: pick_log_prob(self.classifier(z, t, c), y))
        _, b = self.schedule.signal_and_noise(t, dtype=x.dtype, device=x.device)
        return eps - self.scale * b.view(-1, *[1] * (x.ndim - 1)) * grad


def classifier_guidance_control(classifier: nn.Module, *, c=None, y, scale: float = 1.0):
    """Classifier guidance in mean form as a ``control(x_t, step) -> a`` for the sampler.

    ``mean <- mean + s sigma_t^2 grad_x log p_phi(y | x_t, t)`` (Dhariwal & Nichol, Alg. 1),
    so ``a = s sigma_t grad_x log p_phi(y | x_t, t)`` in units of the step's noise.

    Args:
        classifier: ``classifier(x_t, t, c) -> (N, K)`` log-probabilities.
        c: the condition passed to the classifier (``None``, an int or ``(N,)``).
        y: int or ``(N,)`` labels.
        scale: ``s >= 0``.
    Use: ``sampler.sample(net, n, c=c, control=classifier_guidance_control(clf, c=c, y=y))``.

    Introduced in: Chapter 2 (Adding a control: guidance).
    """
    scale = check_positive_float("scale", scale, allow_zero=True)
    if not hasattr(classifier, "num_labels"):
        raise ValueError("classifier must have a num_labels attribute")

    def control(x: torch.Tensor, step) -> torch.Tensor:
        n = x.shape[0]
        labels = broadcast_labels("y", y, n, x.device, int(classifier.num_labels))
        cond = broadcast_labels("c", c, n, x.device)
        t = torch.full((n,), step.t, dtype=torch.long, device=x.device)
        _, grad = grad_wrt(x, lambda z: pick_log_prob(classifier(z, t, cond), labels))
        return scale * step.std * grad

    return control


class ExactGaussianNoisyLikelihood(nn.Module):
    """Exact noisy likelihood ``log p_t(obs_k | x_t)`` for a 1-D Gaussian prior (a test oracle).

    Prior ``x_0 ~ N(m, v)``, likelihood ``obs | x_0 ~ N(x_0, tau^2)``, ``x_t = a x_0 + b eps``:

        p_t(obs | x_t) = N(obs; m + a v (x_t - a m) / (a^2 v + b^2),
                              v b^2 / (a^2 v + b^2) + tau^2).

    Follows the classifier contract ``(x_t, t, c) -> (N, K)`` (rows are likelihoods of the
    ``K`` observations, as in :class:`~ctrl_teach.ctrl.GaussianLikelihood`).

    Introduced in: Chapter 2 (Adding a control: guidance).
    """

    def __init__(self, prior_mean: float, prior_var: float, observations, tau: float,
                 schedule: NoiseSchedule):
        super().__init__()
        self.m = float(prior_mean)
        self.v = check_positive_float("prior_var", prior_var)
        self.tau = check_positive_float("tau", tau)
        self.register_buffer("obs", torch.as_tensor(observations, dtype=torch.float32)
                             .reshape(-1))
        self.num_labels = check_positive_int("observations", self.obs.numel())
        self.schedule = schedule
        self.data_shape = (1,)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c=None) -> torch.Tensor:
        a, b = self.schedule.signal_and_noise(t, dtype=x.dtype, device=x.device)
        d = a * a * self.v + b * b
        mean = self.m + a * self.v * (x[:, 0] - a * self.m) / d
        var = self.v * b * b / d + self.tau**2
        z = self.obs[None, :] - mean[:, None]
        return -0.5 * z**2 / var[:, None] - 0.5 * torch.log(2 * math.pi * var)[:, None]



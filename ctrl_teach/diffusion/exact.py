"""The exact epsilon-network of a Gaussian-mixture data law (Chapter 1, "An exact denoiser").

For data ``x_0 ~ sum_k w_k N(mu_k, s_k^2 I)`` the noisy marginal at step ``t`` is again a
mixture, ``p_t = sum_k w_k N(a mu_k, (a^2 s_k^2 + b^2) I)`` with ``a = sqrt(abar_t)``,
``b = sqrt(1 - abar_t)``, and the optimal noise prediction is Tweedie's formula

    eps*(x_t, t) = E[eps | x_t] = -b * grad log p_t(x_t).

Plugging this module into a sampler gives a "pre-trained model" with no training error,
so tests can compare samplers and fine-tuned models with closed-form answers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .schedules import NoiseSchedule

__all__ = ["ExactMixtureDenoiser", "gaussian_sampler_moments"]


class ExactMixtureDenoiser(nn.Module):
    """``eps*(x_t, t, c) = -sqrt(1 - abar_t) grad log p_t(x_t | c)`` for mixture data laws.

    Args:
        mixtures: one :class:`~ctrl_teach.data.toys.GaussianMixture` (an unconditional
            model) or a sequence of them, one per condition ``c``. For a conditional model
            the null label ``c = len(mixtures)`` uses the equal-weight mixture of all of them.
        schedule: the forward process.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """

    def __init__(self, mixtures, schedule: NoiseSchedule):
        super().__init__()
        if not isinstance(schedule, NoiseSchedule):
            raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        conditional = isinstance(mixtures, Sequence)
        mixtures = list(mixtures) if conditional else [mixtures]
        if not mixtures or not all(hasattr(m, "noised") for m in mixtures):
            raise ValueError("mixtures must be a GaussianMixture or a non-empty sequence of them")
        dims = {m.means.shape[1] for m in mixtures}
        if len(dims) != 1:
            raise ValueError(f"mixtures must share one dimension, got {sorted(dims)}")
        self.schedule = schedule
        self.num_conditions = len(mixtures) if conditional else 0
        self.num_timesteps = schedule.T
        self.data_shape = (dims.pop(),)
        if conditional:
            mixtures.append(_pool(mixtures))  # the null label's marginal law
        self.mixtures = mixtures
        self.register_buffer("_device_anchor", torch.zeros(()), persistent=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None, extra_emb=None):
        if extra_emb is not None:
            raise ValueError("extra_emb is not supported by the exact denoiser")
        if cond is None:
            cond = torch.full_like(t, self.num_conditions)
        out = torch.empty_like(x)
        for tc in torch.unique(torch.stack([t, cond], 1), dim=0):
            rows = (t == tc[0]) & (cond == tc[1])
            a, b = (float(v) for v in self.schedule.signal_and_noise(int(tc[0])))
            noised = self.mixtures[int(tc[1])].noised(a, b)
            out[rows] = -b * noised.score(x[rows].float()).to(x.dtype)
        return out


def _pool(mixtures):
    """Equal-weight mixture of several mixtures (the law of x when c is uniform)."""
    cls = type(mixtures[0])
    k = len(mixtures)
    return cls(torch.cat([m.weights / k for m in mixtures]),
               torch.cat([m.means for m in mixtures]), torch.cat([m.stds for m in mixtures]))


def gaussian_sampler_moments(sampler, data_mean: float, data_var: float,
                             init_var: float = 1.0) -> tuple[float, float]:
    """Exact mean and variance of a sampler's output for 1-D Gaussian data ``N(m, v)``.

    With the exact denoiser every reverse step is affine in ``x_t``,
    ``x_{t'} = A_t x_t + B_t + sigma_t z``, so starting from ``x_T ~ N(0, init_var)`` the
    moments follow ``mean' = A mean + B`` and ``var' = A^2 var + sigma^2``. The gap to
    ``(m, v)`` is the sampler's discretisation error (Chapter 1, "How many steps?").

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """
    schedule = sampler.schedule
    mean, var = 0.0, float(init_var)
    for i in range(sampler.num_steps):
        t, tp = int(sampler.timesteps[i]), int(sampler.prev_timesteps[i])
        ab, abp = float(schedule.alpha_bar[t]), float(schedule.alpha_bar[tp])
        a, b, sigma = ab**0.5, (1 - ab) ** 0.5, float(sampler.sigmas[i])
        c = max(0.0, 1 - abp - sigma**2) ** 0.5
        d = a * a * data_var + b * b  # Var(x_t)
        # eps(x) = b (x - a m) / d ;  x0_hat = (x - b eps) / a ;  mean = sqrt(abp) x0_hat + c eps
        slope_eps, icpt_eps = b / d, -b * a * data_mean / d
        slope = abp**0.5 * (1 - b * slope_eps) / a + c * slope_eps
        icpt = abp**0.5 * (-b * icpt_eps) / a + c * icpt_eps
        mean, var = slope * mean + icpt, slope**2 * var + sigma**2
    return mean, var

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

__all__ = ["ExactMixtureDenoiser", "gaussian_step_affine", "gaussian_sampler_moments"]


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

    def forward(self, x: torch.Tensor, t: torch.Tensor, c=None, extra_emb=None):
        if extra_emb is not None:
            raise ValueError("extra_emb is not supported by the exact denoiser")
        if c is None:
            c = torch.full_like(t, self.num_conditions)
        if t.numel() and bool((t == t[0]).all()) and bool((c == c[0]).all()):   # one (t, c)
            a, b = (float(v) for v in self.schedule.signal_and_noise(int(t[0])))
            return -b * self.mixtures[int(c[0])].noised(a, b).score(x.float()).to(x.dtype)
        out = torch.empty_like(x)
        for tc in torch.unique(torch.stack([t, c], 1), dim=0):
            rows = (t == tc[0]) & (c == tc[1])
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


def gaussian_step_affine(sampler, i: int, data_mean, data_var: float):
    """Step ``i`` of a sampler driven by the exact denoiser of 1-D (or isotropic) Gaussian data
    ``N(m, v)``: the affine map ``x_{t'} = s x_t + b + sigma z``.

    The exact noise prediction is ``eps(x) = sqrt(1 - abar_t) (x - sqrt(abar_t) m) / d`` with
    ``d = abar_t v + 1 - abar_t`` (the variance of ``x_t``); inserting it into the DDIM step
    (Song et al. 2021, eq. 12) gives the slope ``s`` and the intercept ``b``.

    Args:
        sampler: a :class:`~ctrl_teach.diffusion.DiffusionSampler`.
        i: the step index ``0..K-1``.
        data_mean: ``m`` (a float, or a float64 tensor for per-coordinate means).
        data_var: ``v``.

    Returns:
        ``(s, b, sigma)``: floats ``s`` and ``sigma``, ``b`` shaped like ``data_mean``.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """
    schedule = sampler.schedule
    t, tp = int(sampler.timesteps[i]), int(sampler.prev_timesteps[i])
    ab, abp = float(schedule.alpha_bar[t]), float(schedule.alpha_bar[tp])
    a, b, sigma = ab**0.5, (1 - ab) ** 0.5, float(sampler.sigmas[i])
    c = max(0.0, 1 - abp - sigma**2) ** 0.5
    d = a * a * data_var + b * b  # Var(x_t)
    # eps(x) = b (x - a m) / d ;  x0_hat = (x - b eps) / a ;  mean = sqrt(abp) x0_hat + c eps
    slope_eps, icpt_eps = b / d, -b * a * data_mean / d
    slope = abp**0.5 * (1 - b * slope_eps) / a + c * slope_eps
    icpt = abp**0.5 * (-b * icpt_eps) / a + c * icpt_eps
    return slope, icpt, sigma


def gaussian_sampler_moments(sampler, data_mean: float, data_var: float,
                             init_var: float = 1.0) -> tuple[float, float]:
    """Exact mean and variance of a sampler's output for 1-D Gaussian data ``N(m, v)``.

    With the exact denoiser every reverse step is affine in ``x_t``,
    ``x_{t'} = s_k x_t + b_k + sigma_k z`` (:func:`gaussian_step_affine`), so starting from
    ``x_T ~ N(0, init_var)`` the moments follow ``mean' = s mean + b`` and
    ``var' = s^2 var + sigma^2``. The gap to ``(m, v)`` is the sampler's discretisation error
    (Chapter 1, "How many steps?").

    Args:
        sampler: a :class:`~ctrl_teach.diffusion.DiffusionSampler`.
        data_mean: ``m``.
        data_var: ``v``.
        init_var: the variance of ``x_T`` (1 for the sampler's own start, 0 to read off the
            affine map ``x_0 = A x_T + B + N(0, V)``).

    Returns:
        ``(mean, variance)`` of ``x_0``.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """
    mean, var = 0.0, float(init_var)
    for i in range(sampler.num_steps):
        slope, icpt, sigma = gaussian_step_affine(sampler, i, data_mean, data_var)
        mean, var = slope * mean + icpt, slope**2 * var + sigma**2
    return mean, var

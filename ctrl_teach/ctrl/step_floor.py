"""What a Gaussian step can and cannot represent (Chapter 4, "The floor of a policy class").

The soft-optimal discrete step is the pre-trained step tilted by the next soft value,

    p*_k(x' | x) ∝ N(x'; mu_k(x), sigma_k^2) exp(v_{k+1}(x') / alpha),

and the certificate splits along the chain (the chain rule of the KL of path measures):

    alpha log Z - J(pi) = alpha KL(nu || nu*) + alpha sum_k E_pi[ KL(pi_k(. | x) || p*_k(. | x)) ].

When ``v_{k+1}`` is concave, ``p*_k`` is narrower than the pre-trained step. A *mean-only*
policy ``N(m(x), sigma_k^2)`` (CTRL's default step, which keeps the pre-trained variance) can
match the mean of ``p*_k`` but not its variance, so each step leaves at least
``KL(N(m*, sigma^2) || N(m*, v*)) = (r - 1 - log r) / 2`` with ``r = sigma^2 / v*``. That floor
shrinks only as the steps get finer (in continuous time two diffusions with different diffusion
coefficients are mutually singular, so there only the drift may change; in discrete time the
variance may, and should). A *variance-aware* policy ``N(m(x), sigma^2 s^2)`` has no floor
beyond the initial-law term.

For 1-D Gaussian data ``N(m, v)``, the exact denoiser and a Gaussian-likelihood reward
``log N(o; w x_0, tau^2)``, every quantity is closed form: the value is quadratic, ``p*_k`` is
Gaussian with an affine mean, and the floor does not depend on the state. This module computes
it (:func:`gaussian_step_floor`) so a test can check that a fine-tuned mean-only policy lands on
it and a variance-aware one goes below it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .._checks import check_nonnegative_int, check_positive_float
from ..diffusion import DiffusionSampler, gaussian_step_affine
from .known_rewards import GaussianLikelihood
from .value import gaussian_chain_to_data

__all__ = ["GaussianStepFloor", "gaussian_optimal_step", "gaussian_step_floor"]


def _check(sampler, data_var, reward, y, alpha, gamma):
    if not isinstance(sampler, DiffusionSampler):
        raise ValueError(f"sampler must be a DiffusionSampler, got {type(sampler).__name__}")
    if not isinstance(reward, GaussianLikelihood) or reward.w.numel() != 1:
        raise ValueError("reward must be a 1-D GaussianLikelihood (w with one entry)")
    y = check_nonnegative_int("y", y)
    if y >= reward.num_labels:
        raise ValueError(f"y must lie in 0..{reward.num_labels - 1}, got {y}")
    return (check_positive_float("data_var", data_var), float(reward.obs[y]), float(reward.w),
            check_positive_float("alpha", alpha), check_positive_float("gamma", gamma))


def _value_quadratic(sampler, data_mean, data_var, w, tau, lam, k):
    """``v_k(x) / alpha = const - (o - u x - beta)^2 / (2 S)`` for the state before step k:
    returns ``(u, beta, S)`` with ``u = w A``, ``beta = w B``, ``S = tau^2 / lam + w^2 V``."""
    A, B, V = gaussian_chain_to_data(sampler, data_mean, data_var, k)
    return w * A, w * float(B.reshape(-1)[0]), tau**2 / lam + w * w * V


def gaussian_optimal_step(sampler, data_mean: float, data_var: float, reward, step_index: int,
                          *, y: int, alpha: float = 1.0, gamma: float = 1.0):
    """The soft-optimal step ``p*_k(x' | x) = N(slope x + intercept, variance)`` in closed form.

    The pre-trained step is ``N(s x + b, sigma^2)`` (:func:`~ctrl_teach.diffusion.
    gaussian_step_affine`) and the next value is ``v/alpha = const - (o - u x' - beta)^2 /
    (2 S)``; conditioning the Gaussian step on that Gaussian "observation" gives::

        1 / variance = 1 / sigma^2 + u^2 / S,
        mean(x)      = variance ( (s x + b) / sigma^2 + u (o - beta) / S ).

    Args:
        sampler: the :class:`~ctrl_teach.diffusion.DiffusionSampler`.
        data_mean: ``m`` of the 1-D data law.
        data_var: ``v``.
        reward: a 1-D :class:`~ctrl_teach.ctrl.GaussianLikelihood`.
        step_index: ``k`` in ``0..K-1``.
        y: the label (picks the observation ``o``).
        alpha: KL weight.
        gamma: reward weight.

    Returns:
        ``(slope, intercept, variance, sigma)``: the optimal step and the pre-trained std (the
        noise-free last step returns the pre-trained map with variance 0).

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    data_var, obs, w, alpha, gamma = _check(sampler, data_var, reward, y, alpha, gamma)
    k = check_nonnegative_int("step_index", step_index)
    if k >= sampler.num_steps:
        raise ValueError(f"step_index must be in 0..{sampler.num_steps - 1}, got {k}")
    s, b, sigma = gaussian_step_affine(sampler, k, float(data_mean), data_var)
    if sigma == 0:
        return float(s), float(b), 0.0, 0.0
    u, beta, S = _value_quadratic(sampler, data_mean, data_var, w, reward.tau, gamma / alpha,
                                  k + 1)
    var = 1.0 / (1.0 / sigma**2 + u * u / S)
    return var * s / sigma**2, var * (b / sigma**2 + u * (obs - beta) / S), var, sigma


@dataclass
class GaussianStepFloor:
    """The certificate's parts for the 1-D Gaussian problem (:func:`gaussian_step_floor`).

    Attributes:
        per_step: ``alpha (r_k - 1 - log r_k) / 2`` for each step ``k`` (the mean-only floor).
        initial: ``alpha KL(N(0, 1) || nu*)``, the price of the fixed start ``x_T ~ N(0, 1)``.
        mean_only: the smallest gap of a mean-only policy with the fixed start,
            ``initial + sum(per_step)``.
        variance_aware: the smallest gap of a variance-aware policy with the fixed start
            (``initial``).
        mean_only_moments: output ``(mean, var)`` of the best mean-only sampler.
        optimal_moments: output ``(mean, var)`` of the sampler with the optimal steps ``p*_k``
            (from the fixed start).
        target_moments: ``(mean, var)`` of the tilted target ``p_pre p(y | x)^(gamma/alpha)/Z``.
        initial_law: ``(mean, var)`` of the optimal initial law ``nu* ∝ nu exp(v_T / alpha)``.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """

    per_step: list
    initial: float
    mean_only: float
    variance_aware: float
    mean_only_moments: tuple
    optimal_moments: tuple
    target_moments: tuple
    initial_law: tuple


def gaussian_step_floor(sampler, data_mean: float, data_var: float, reward, *, y: int,
                        alpha: float = 1.0, gamma: float = 1.0) -> GaussianStepFloor:
    """The floor of the mean-only policy class and the initial-law term, in closed form.

    With ``r_k = sigma_k^2 / v*_k = 1 + sigma_k^2 u_{k+1}^2 / S_{k+1}`` (see
    :func:`gaussian_optimal_step`) the best mean-only step leaves
    ``KL(N(m*, sigma^2) || N(m*, v*)) = (r - 1 - log r) / 2`` at every state, so its gap is
    exactly ``alpha [KL(nu || nu*) + sum_k (r_k - 1 - log r_k) / 2]``; a variance-aware step
    leaves only ``alpha KL(nu || nu*)`` with ``nu = N(0, 1)`` and
    ``nu* ∝ nu exp(v_0 / alpha)``.

    Args:
        sampler: the :class:`~ctrl_teach.diffusion.DiffusionSampler`.
        data_mean: ``m`` of the 1-D data law.
        data_var: ``v``.
        reward: a 1-D :class:`~ctrl_teach.ctrl.GaussianLikelihood`.
        y: the label.
        alpha: KL weight.
        gamma: reward weight.

    Returns:
        A :class:`GaussianStepFloor`.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    data_var, obs, w, alpha, gamma = _check(sampler, data_var, reward, y, alpha, gamma)
    lam = gamma / alpha
    per_step = []
    mo, opt = (0.0, 1.0), (0.0, 1.0)
    for k in range(sampler.num_steps):
        slope, icpt, var, sigma = gaussian_optimal_step(sampler, data_mean, data_var, reward, k,
                                                        y=y, alpha=alpha, gamma=gamma)
        r = sigma**2 / var if sigma > 0 else 1.0
        per_step.append(alpha * 0.5 * (r - 1 - math.log(r)))
        mo = (slope * mo[0] + icpt, slope**2 * mo[1] + sigma**2)
        opt = (slope * opt[0] + icpt, slope**2 * opt[1] + var)
    u, beta, S = _value_quadratic(sampler, data_mean, data_var, w, reward.tau, lam, 0)
    prec = 1.0 + u * u / S                            # nu* = N(mu0, 1 / prec)
    mu0 = u * (obs - beta) / S / prec
    initial = alpha * 0.5 * (prec * (1 + mu0**2) - 1 - math.log(prec))
    A, B, V = gaussian_chain_to_data(sampler, data_mean, data_var, 0)
    pm, pv = float(B.reshape(-1)[0]), A * A + V        # the pre-trained output law
    tprec = 1.0 / pv + lam * w * w / reward.tau**2
    tmean = (pm / pv + lam * w * obs / reward.tau**2) / tprec
    return GaussianStepFloor(per_step, initial, initial + sum(per_step), initial, mo, opt,
                             (tmean, 1.0 / tprec), (mu0, 1.0 / prec))


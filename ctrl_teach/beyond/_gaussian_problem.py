"""The 1-D Gaussian test problem shared by the "Beyond CTRL" modules and their tests.

Data ``N(0, 1)`` with the exact denoiser (:class:`~ctrl_teach.diffusion.ExactMixtureDenoiser`)
on a cosine schedule (``T = 50``), a ``num_steps``-step sampler with ``eta = 1`` and the reward
``log p(y | x) = log N(obs; x, tau^2)`` (:class:`~ctrl_teach.ctrl.GaussianLikelihood`, one
label ``y = 0``, ``obs = 1``, ``tau = 0.5``). Every answer is closed form:

* ``pre_moments``: the pre-trained sampler's output law ``N(m_s, v_s)``
  (:func:`~ctrl_teach.diffusion.gaussian_sampler_moments`);
* ``target_moments``: the tilted law ``p_pre(x) p(y | x)^lambda / Z``, ``lambda = gamma / alpha``
  (conjugate update of ``N(m_s, v_s)``);
* ``optimal_moments``: the output law of the soft-optimal sampler from the fixed start
  ``x_T ~ N(0, 1)`` (:func:`~ctrl_teach.ctrl.gaussian_step_floor`; equal to the target here,
  the initial-law term is ~0);
* ``alpha_log_z``: ``alpha log Z`` with ``Z = E_pre[p(y | x)^lambda]``, so the certificate of a
  policy is ``alpha_log_z - E[J]``;
* ``floor``: the :class:`~ctrl_teach.ctrl.GaussianStepFloor` (mean-only floor, initial term).

Stable API (other modules import it): :func:`gaussian_problem` returns a
:class:`GaussianProblem`; :func:`tilted_log_z` is the closed form of ``log Z`` for any
``lambda``; :meth:`GaussianProblem.augmented` builds a seeded, zero-initialised
:class:`~ctrl_teach.ctrl.HeadAugmentedModel`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._checks import check_positive_float, check_positive_int
from ..ctrl.augmented import HeadAugmentedModel
from ..ctrl.known_rewards import GaussianLikelihood
from ..ctrl.step_floor import GaussianStepFloor, gaussian_step_floor
from ..data.toys import GaussianMixture
from ..diffusion import (
    DiffusionSampler,
    ExactMixtureDenoiser,
    NoiseSchedule,
    gaussian_sampler_moments,
)
from ..profiles import seeded_init

__all__ = ["GaussianProblem", "gaussian_problem", "tilted_log_z"]


def tilted_log_z(prior_mean: float, prior_var: float, obs: float, tau: float,
                 power: float = 1.0) -> float:
    """``log E_{x ~ N(m, v)}[N(obs; x, tau^2)^power]`` in closed form.

    ``N(o; x, tau^2)^lambda = (2 pi tau^2)^((1 - lambda) / 2) lambda^(-1/2) N(o; x, tau^2 /
    lambda)``, so ``log Z = (1 - lambda)/2 log(2 pi tau^2) - log(lambda)/2 + log N(o; m, v +
    tau^2 / lambda)``; at ``lambda = 1`` this is
    :func:`~ctrl_teach.ctrl.gaussian_log_evidence`.

    Args:
        prior_mean: ``m``.
        prior_var: ``v``.
        obs: the observation.
        tau: the likelihood's standard deviation.
        power: ``lambda = gamma / alpha``.

    Returns:
        ``log Z`` (multiply by ``alpha`` for the certificate's ``alpha log Z``).

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    v = check_positive_float("prior_var", prior_var)
    tau, lam = check_positive_float("tau", tau), check_positive_float("power", power)
    var = v + tau**2 / lam
    return (0.5 * (1 - lam) * math.log(2 * math.pi * tau**2) - 0.5 * math.log(lam)
            - 0.5 * (obs - prior_mean) ** 2 / var - 0.5 * math.log(2 * math.pi * var))


@dataclass
class GaussianProblem:
    """The 1-D Gaussian problem and its exact answers (see the module docstring).

    Attributes:
        network: the exact denoiser of ``N(0, 1)`` (the frozen "pre-trained" network).
        sampler: the ``num_steps``-step, ``eta = 1`` :class:`~ctrl_teach.diffusion.
            DiffusionSampler`.
        reward: ``GaussianLikelihood([obs], tau)`` (label ``y = 0``).
        obs: the observation.
        tau: the likelihood's std.
        alpha: the KL weight the answers are for.
        gamma: the reward weight.
        pre_moments: ``(mean, var)`` of the pre-trained sampler's output.
        target_moments: ``(mean, var)`` of the tilted target.
        optimal_moments: ``(mean, var)`` of the soft-optimal sampler from ``N(0, 1)``.
        alpha_log_z: ``alpha log Z``.
        log_z: ``log Z`` (``Z = E_pre[p(y | x)^(gamma / alpha)]``).
        floor: the :class:`~ctrl_teach.ctrl.GaussianStepFloor`.

    Introduced in: Chapter 9 (Beyond CTRL).
    """

    network: ExactMixtureDenoiser
    sampler: DiffusionSampler
    reward: GaussianLikelihood
    obs: float
    tau: float
    alpha: float
    gamma: float
    pre_moments: tuple
    target_moments: tuple
    optimal_moments: tuple
    alpha_log_z: float
    log_z: float
    floor: GaussianStepFloor

    def augmented(self, seed: int = 0, *, variance: bool = True, width: int = 64,
                  **kwargs) -> HeadAugmentedModel:
        """A zero-initialised :class:`~ctrl_teach.ctrl.HeadAugmentedModel` (built under
        ``seeded_init(seed)``; ``variance=True``: the variance-aware class).

        Args:
            seed: the initialisation seed.
            variance: also learn the step's std factor.
            width: the control head's hidden width.
            kwargs: passed to :class:`~ctrl_teach.ctrl.HeadAugmentedModel`.

        Returns:
            The augmented model (one label).
        """
        with seeded_init(seed):
            return HeadAugmentedModel(self.network, self.sampler, 1, width=width,
                                      variance=variance, **kwargs)


def gaussian_problem(*, num_steps: int = 10, T: int = 50, obs: float = 1.0, tau: float = 0.5,
                     alpha: float = 1.0, gamma: float = 1.0) -> GaussianProblem:
    """Build the 1-D Gaussian problem (data ``N(0, 1)``, exact denoiser, cosine schedule).

    The same problem as ``tests/test_step_floor.py`` (Chapter 4, "The floor of a policy
    class"), with every exact answer attached.

    Args:
        num_steps: sampler steps ``K``.
        T: schedule length.
        obs: the observation of the reward ``log N(obs; x, tau^2)``.
        tau: its std.
        alpha: KL weight.
        gamma: reward weight.

    Returns:
        A :class:`GaussianProblem`.

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    num_steps, T = check_positive_int("num_steps", num_steps), check_positive_int("T", T)
    alpha, gamma = check_positive_float("alpha", alpha), check_positive_float("gamma", gamma)
    schedule = NoiseSchedule.cosine(T)
    network = ExactMixtureDenoiser(GaussianMixture(torch.tensor([1.0]), torch.tensor([[0.0]]),
                                                   torch.tensor([1.0])), schedule)
    sampler = DiffusionSampler(schedule, num_steps=num_steps, eta=1.0)
    reward = GaussianLikelihood([float(obs)], tau)
    pre = gaussian_sampler_moments(sampler, 0.0, 1.0)
    floor = gaussian_step_floor(sampler, 0.0, 1.0, reward, y=0, alpha=alpha, gamma=gamma)
    log_z = tilted_log_z(pre[0], pre[1], float(obs), reward.tau, gamma / alpha)
    return GaussianProblem(network, sampler, reward, float(obs), reward.tau, alpha, gamma,
                           pre, floor.target_moments, floor.optimal_moments, alpha * log_z,
                           log_z, floor)

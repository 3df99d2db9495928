"""Exact references for CTRL: closed-form log-partitions and the optimality certificate.

With reward ``r = gamma log p(y | x, c)`` and KL weight ``alpha`` the soft-optimal model's
output law is ``p*(x | c, y) = p_pre(x | c) p(y | x, c)^(gamma / alpha) / Z`` with
``Z = E_pre[p(y | x, c)^(gamma / alpha)]`` (:mod:`ctrl_teach.target`), and for any
fine-tuned policy (Chapter 4, eq. ``eq-certificate``)

    alpha log Z - J(theta) = alpha KL(P_theta || P*)     (tilted initial law),

so the gap ``alpha log Z - J`` is non-negative up to Monte Carlo error and is zero only for the
soft-optimal policy. With the fixed start ``x_T ~ N(0, I)`` the gap also contains the
initial-law term ``alpha KL(nu || nu*)``, and a policy class that cannot represent the optimal
steps (a Gaussian step with the pre-trained variance, say) adds its own floor.
"""

from __future__ import annotations

import math

import torch

from .._checks import check_positive_float, check_positive_int
from ..profiles import make_generator
from ..target import log_partition, mean_confidence, rejection_sample

__all__ = ["probit_log_partition", "certificate_gap", "gaussian_log_evidence",
           "gaussian_posterior", "evaluate_against_target"]


def probit_log_partition(mixture, w, b: float, scale: float, *, y: int) -> float:
    """Closed-form ``log p(y)`` for ``p(y=1 | x) = Phi((w.x + b) / scale)``, Gaussian mixture ``x``.

    ``p(y=1) = sum_k pi_k Phi((w.mu_k + b) / sqrt(scale^2 + |w|^2 sigma_k^2))`` (the probit-Gaussian
    integral); ``p(y=0) = 1 - p(y=1)``.

    Args:
        mixture: the :class:`~ctrl_teach.data.GaussianMixture` of ``x``.
        w: the probit direction ``(d,)``.
        b: the offset.
        scale: the probit scale.
        y: 0 or 1.

    Returns:
        ``log p(y)``, i.e. ``log Z`` at ``alpha = gamma = 1``.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    w = torch.as_tensor(w, dtype=torch.float64)
    mu, sd = mixture.means.double(), mixture.stds.double()
    z = (mu @ w + b) / (scale**2 + w.dot(w) * sd**2).sqrt()
    p1 = float((mixture.weights.double() * torch.special.ndtr(z)).sum())
    if y not in (0, 1):
        raise ValueError(f"y must be 0 or 1, got {y!r}")
    return math.log(p1 if y == 1 else 1.0 - p1)


def certificate_gap(alpha_log_z: float, alpha_log_z_se: float,
                    J: torch.Tensor) -> tuple[float, float]:
    """Gap ``alpha log Z - J`` = ``alpha KL(P_theta || P*)`` (+ initial-law term), with SE.

    The book's eq. ``eq-certificate``: ``alpha log Z - E[J] = alpha KL(P_theta || P*) >= 0``.

    Args:
        alpha_log_z: ``alpha log Z``, from :func:`~ctrl_teach.target.log_partition` or a
            closed form.
        alpha_log_z_se: its standard error (0 for a closed form).
        J: ``(N,)`` per-trajectory objective values ``gamma r - alpha sum_t KL_t``.

    Returns:
        ``(gap, standard error)``.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    J = J.detach().double().reshape(-1)
    if J.numel() < 2:
        raise ValueError("J must hold at least 2 trajectories")
    se = math.sqrt(alpha_log_z_se**2 + float(J.var()) / J.numel())
    return float(alpha_log_z - J.mean()), se


def gaussian_log_evidence(prior_mean: float, prior_var: float, obs: float, tau: float) -> float:
    """``log Z = log N(obs; m, v + tau^2)``: the exact ``alpha log Z`` (alpha = 1) of a
    Gaussian prior ``N(m, v)`` with the reward ``log N(obs; x, tau^2)``.

    Args:
        prior_mean: ``m``.
        prior_var: ``v``.
        obs: the observation.
        tau: the likelihood's standard deviation.

    Returns:
        ``log Z``.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    var = check_positive_float("prior_var", prior_var) + check_positive_float("tau", tau) ** 2
    return -0.5 * (obs - prior_mean) ** 2 / var - 0.5 * math.log(2 * math.pi * var)


def gaussian_posterior(prior_mean: float, prior_var: float, obs: float, tau: float,
                       power: float = 1.0) -> tuple[float, float]:
    """Posterior of ``N(m, v)`` prior times ``N(obs; x, tau^2)^power``: ``(mean, var)``.

    ``1/v' = 1/v + power/tau^2`` and ``m' = v' (m/v + power obs / tau^2)`` (conjugate
    Gaussian update; ``power = gamma / alpha``).

    Args:
        prior_mean: ``m``.
        prior_var: ``v``.
        obs: the observation.
        tau: the likelihood's standard deviation.
        power: the tilt exponent ``gamma / alpha``.

    Returns:
        ``(mean, var)`` of the tilted law.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    prec = 1.0 / check_positive_float("prior_var", prior_var) + power / check_positive_float(
        "tau", tau) ** 2
    var = 1.0 / prec
    return var * (prior_mean / prior_var + power * obs / tau**2), var


def evaluate_against_target(augmented, reward_model, *, c=None, y: int, alpha: float = 1.0,
                            generator: torch.Generator | None = None,
                            num_candidates: int = 20000, num_samples: int = 4000) -> dict:
    """Score a fine-tuned model for one ``(c, y)`` against the exact soft-optimal target.

    Draws ``num_candidates`` samples of the augmented model's own frozen network and sampler;
    from them estimates ``alpha log Z`` (:func:`~ctrl_teach.target.log_partition`) and
    rejection-samples the target ``p_pre(x | c) p(y | x, c)^(1/alpha) / Z``. Then compares
    ``num_samples`` fine-tuned samples with it and computes the certificate
    ``alpha log Z - J`` (eq. ``eq-certificate``).

    Args:
        augmented: the fine-tuned :class:`~ctrl_teach.ctrl.AugmentedModel` (its ``network``
            and ``sampler`` are the pre-trained reference).
        reward_model: the reward it was fine-tuned on.
        c: the int condition, or ``None`` for an unconditional pre-trained model.
        y: the int label.
        alpha: the KL weight used in fine-tuning.
        generator: a ``torch.Generator`` (default: seed 0).
        num_candidates: pre-trained samples for ``log Z`` and the rejection target.
        num_samples: fine-tuned samples and trajectories.

    Returns:
        A dict with ``alpha_log_z``, the certificate ``gap`` and its ``gap_se``, the energy
        distance ``ed`` to the target and ``ed_nothing`` (pre-trained samples to the target),
        and the mean confidences ``confidence`` / ``confidence_exact``.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    from ..evaluation import energy_distance
    from .finetune import rollout, sample

    generator = make_generator(generator)
    num_candidates = check_positive_int("num_candidates", num_candidates)
    num_samples = check_positive_int("num_samples", num_samples)
    network, sampler = augmented.network, augmented.sampler
    x_pre = sampler.sample(network, num_candidates, c=c, generator=generator)
    alz, alz_se = log_partition(x_pre, reward_model, c=c, y=y, alpha=alpha)
    with torch.no_grad():
        out = rollout(augmented, reward_model, c=c, y=torch.full((num_samples,), y),
                      generator=generator, alpha=alpha)
    gap, se = certificate_gap(alz, alz_se, out.J)
    target = rejection_sample(x_pre, reward_model, c=c, y=y, power=1 / alpha,
                              generator=generator)
    x = sample(augmented, num_samples, c=c, y=y, generator=generator)
    ed_kwargs = dict(max_samples=2000, generator=generator)
    return dict(c=c, y=y, alpha_log_z=alz, gap=gap, gap_se=se,
                ed=energy_distance(x, target, **ed_kwargs),
                ed_nothing=energy_distance(x_pre[:num_samples], target, **ed_kwargs),
                confidence=mean_confidence(x, reward_model, c=c, y=y),
                confidence_exact=mean_confidence(target, reward_model, c=c, y=y))

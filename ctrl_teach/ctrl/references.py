"""Exact references for CTRL: tilted targets, log-partition and the optimality certificate.

With reward ``r = gamma log p(y | x, c)`` and KL weight ``alpha`` the soft-optimal model's
output law is ``p*(x | c, y) = p_pre(x | c) p(y | x, c)^(gamma / alpha) / Z`` with
``Z = E_pre[p(y | x, c)^(gamma / alpha)]``, and for any fine-tuned policy (Chapter 4)

    J(theta) = alpha log Z - alpha KL(P_theta || P*)     (tilted initial law),

so the gap ``alpha log Z - J`` is non-negative up to Monte Carlo error. With the fixed start
``x_T ~ N(0, I)`` the gap also contains ``alpha KL(nu || nu*)`` (tiny for a cosine schedule).
"""

from __future__ import annotations

import math

import torch

from .._checks import check_positive_float, check_positive_int
from .rewards import reward_log_prob

__all__ = ["rejection_sample", "rejection_sample_pretrained", "log_partition",
           "probit_log_partition", "certificate_gap", "mean_confidence",
           "gaussian_posterior", "evaluate_against_target"]


def _log_accept(reward_model, x, c, y, power):
    with torch.no_grad():
        return power * reward_log_prob(reward_model, x, c, y)


def rejection_sample(x: torch.Tensor, reward_model, y, c=None, power: float = 1.0,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Accept each candidate ``x_i ~ p(x | c)`` with probability ``p(y | x_i, c)^power``.

    Exact samples of ``p(x | c, y) ∝ p(y | x, c)^power p(x | c)`` for ``power`` = gamma /
    alpha (needs ``p <= 1``, i.e. ``power >= 0`` and a normalised classifier).

    Args:
        x: ``(N, ...)`` candidates; y: int or ``(N,)``; c: None / int / ``(N,)``.
    Returns: the accepted rows ``(M, ...)``, acceptance rate ``E[p^power]``.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    power = check_positive_float("power", power, allow_zero=True)
    n = x.shape[0]
    if isinstance(y, int):
        y = torch.full((n,), y, dtype=torch.long)
    if isinstance(c, int):
        c = torch.full((n,), c, dtype=torch.long)
    logp = _log_accept(reward_model, x, c, y, power)
    if (logp > 1e-6).any():
        raise ValueError("reward_model must return log-probabilities <= 0 for rejection")
    u = torch.rand(n, generator=generator).to(x.device)
    return x[u.log() < logp]


def rejection_sample_pretrained(pretrained, reward_model, n: int, c, y: int,
                                power: float = 1.0, generator=None, batch: int = 4096,
                                max_rounds: int = 100) -> torch.Tensor:
    """``n`` exact samples of the tilted pre-trained model by rejection (``c``, ``y`` ints).

    Args:
        pretrained: anything with ``sample(n, cond, generator)`` (e.g. ``load_pretrained``).
    Returns: ``(n, *data_shape)`` samples.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    n = check_positive_int("n", n)
    out, have = [], 0
    for _ in range(check_positive_int("max_rounds", max_rounds)):
        x = pretrained.sample(batch, c, generator=generator)
        acc = rejection_sample(x, reward_model, y, c, power, generator)
        out.append(acc)
        have += acc.shape[0]
        if have >= n:
            return torch.cat(out)[:n]
    raise ValueError(f"acceptance too low: {have} of n={n} after {max_rounds} rounds")


def log_partition(x: torch.Tensor, reward_model, y, c=None, alpha: float = 1.0,
                  gamma: float = 1.0) -> tuple[float, float]:
    """Monte Carlo ``alpha log Z``, ``Z = E_{x ~ p_pre(. | c)}[p(y | x, c)^(gamma / alpha)]``.

    Args:
        x: ``(N, ...)`` pre-trained samples; y: int or ``(N,)``; c: None / int / ``(N,)``.
    Returns: ``(alpha log Z_hat, standard error)`` (delta method: ``alpha sd(w) / (sqrt(N)
    mean(w))``).

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    alpha = check_positive_float("alpha", alpha)
    n = x.shape[0]
    if isinstance(y, int):
        y = torch.full((n,), y, dtype=torch.long)
    if isinstance(c, int):
        c = torch.full((n,), c, dtype=torch.long)
    w = _log_accept(reward_model, x, c, y, check_positive_float("gamma", gamma) / alpha)
    w = w.double().exp()
    mean = w.mean()
    se = alpha * w.std() / (math.sqrt(n) * mean)
    return float(alpha * mean.log()), float(se)


def probit_log_partition(mixture, w, b: float, s: float, y: int = 1) -> float:
    """Closed-form ``log p(y)`` for ``p(y=1 | x) = Phi((w.x + b)/s)`` and a Gaussian mixture.

    ``p(y=1) = sum_k pi_k Phi((w.mu_k + b) / sqrt(s^2 + |w|^2 sigma_k^2))`` (related-methods
    6.1(b)); ``p(y=0) = 1 - p(y=1)``.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    w = torch.as_tensor(w, dtype=torch.float64)
    mu, sd = mixture.means.double(), mixture.stds.double()
    z = (mu @ w + b) / (s**2 + w.dot(w) * sd**2).sqrt()
    p1 = float((mixture.weights.double() * torch.special.ndtr(z)).sum())
    if y not in (0, 1):
        raise ValueError(f"y must be 0 or 1, got {y!r}")
    return math.log(p1 if y == 1 else 1.0 - p1)


def certificate_gap(alpha_log_z: float, alpha_log_z_se: float,
                    J: torch.Tensor) -> tuple[float, float]:
    """Gap ``alpha log Z - J`` = ``alpha KL(P_theta || P*)`` (+ initial-law term), with SE.

    Args:
        alpha_log_z, alpha_log_z_se: from :func:`log_partition` (SE 0 if closed form).
        J: ``(N,)`` per-trajectory objective values ``gamma r - alpha sum_t KL_t``.
    Returns: ``(gap, standard error)``.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    J = J.detach().double().reshape(-1)
    if J.numel() < 2:
        raise ValueError("J must hold at least 2 trajectories")
    se = math.sqrt(alpha_log_z_se**2 + float(J.var()) / J.numel())
    return float(alpha_log_z - J.mean()), se


def mean_confidence(x: torch.Tensor, reward_model, y, c=None) -> float:
    """``E[p(y | x, c)]`` over samples ``x (N, ...)`` (y int or ``(N,)``).

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    n = x.shape[0]
    if isinstance(y, int):
        y = torch.full((n,), y, dtype=torch.long)
    if isinstance(c, int):
        c = torch.full((n,), c, dtype=torch.long)
    return float(_log_accept(reward_model, x, c, y, 1.0).exp().mean())


def gaussian_log_evidence(prior_mean: float, prior_var: float, obs: float, tau: float) -> float:
    """``log Z = log N(obs; m, v + tau^2)``: the exact ``alpha log Z`` (alpha = 1) of a
    Gaussian prior ``N(m, v)`` with the reward ``log N(obs; x, tau^2)``.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    var = check_positive_float("prior_var", prior_var) + check_positive_float("tau", tau) ** 2
    return -0.5 * (obs - prior_mean) ** 2 / var - 0.5 * math.log(2 * math.pi * var)


def gaussian_posterior(prior_mean: float, prior_var: float, obs: float, tau: float,
                       power: float = 1.0) -> tuple[float, float]:
    """Posterior of ``N(m, v)`` prior times ``N(obs; x, tau^2)^power``: ``(mean, var)``.

    ``1/v' = 1/v + power/tau^2`` and ``m' = v' (m/v + power obs / tau^2)``.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    prec = 1.0 / check_positive_float("prior_var", prior_var) + power / check_positive_float(
        "tau", tau) ** 2
    var = 1.0 / prec
    return var * (prior_mean / prior_var + power * obs / tau**2), var


def evaluate_against_target(pretrained_network, sampler, reward_model, augmented, c, y: int,
                            generator: torch.Generator, num_candidates: int = 20000,
                            num_samples: int = 4000, alpha: float = 1.0) -> dict:
    """Score a fine-tuned model for one ``(c, y)`` against the exact soft-optimal target
    (``c`` an int, or None for an unconditional pre-trained model).

    Draws ``num_candidates`` pre-trained samples; from them estimates ``alpha log Z`` and
    rejection-samples the target ``p_pre(x | c) p(y | x, c)^(1/alpha) / Z``. Then compares
    ``num_samples`` fine-tuned samples with it.

    Returns: a dict with ``alpha_log_z``, the certificate ``gap`` = alpha log Z - J and its
    ``gap_se``, the energy distance ``ed`` to the target and ``ed_nothing`` (pre-trained
    samples to the target), and the mean confidences ``confidence`` / ``confidence_exact``.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    from ..evaluation import energy_distance
    from .finetune import rollout, sample

    x_pre = sampler.sample(pretrained_network, num_candidates, c, generator=generator)
    alz, alz_se = log_partition(x_pre, reward_model, y, c, alpha=alpha)
    with torch.no_grad():
        cond = None if c is None else torch.full((num_samples,), c)
        out = rollout(augmented, reward_model, cond, torch.full((num_samples,), y), generator,
                      alpha=alpha)
    gap, se = certificate_gap(alz, alz_se, out.J)
    target = rejection_sample(x_pre, reward_model, y, c, power=1 / alpha, generator=generator)
    x = sample(augmented, num_samples, c, y, generator=generator)
    ed_kwargs = dict(max_samples=2000, generator=generator)
    return dict(c=c, y=y, alpha_log_z=alz, gap=gap, gap_se=se,
                ed=energy_distance(x, target, **ed_kwargs),
                ed_nothing=energy_distance(x_pre[:num_samples], target, **ed_kwargs),
                confidence=mean_confidence(x, reward_model, y, c),
                confidence_exact=mean_confidence(target, reward_model, y, c))

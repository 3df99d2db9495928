"""Twisted sequential Monte Carlo at inference time: the tilted target without fine-tuning.

``N`` particles run the pre-trained chain ``x_T -> ... -> x_0``; each carries a weight that
turns the path law ``P_pre`` into the path law whose output is the tilted target
``p*(x_0) = p_pre(x_0) p(y | x_0, c)^lambda / Z``, ``lambda = gamma / alpha``. The twisted
diffusion sampler (TDS, Wu et al. 2023) uses the twist

    log psi_k(x_k) = lambda log p(y | x0_hat(x_k), c),   x0_hat = NoiseSchedule.predict_x0,

before step ``k`` (the same value guess as SVDD-PM, Li et al. 2024) and ``psi_K(x_0) = p(y |
x_0, c)^lambda``, the exact reward at the end. With the pre-trained proposal the incremental
weight of the move ``x_k -> x_{k+1}`` is ``psi_{k+1}(x_{k+1}) / psi_k(x_k)`` and the first one
is ``psi_0(x_T)``; the product telescopes to ``p(y | x_0, c)^lambda``, so the weighted
particles target the tilted law whatever the twist (the twist only decides how early the
particles are steered). With ``guidance > 0`` the proposal is TDS's guided step
``N(mean + guidance sigma^2 grad log psi_k(x_k), sigma^2)`` and the weight gains the
importance correction ``p_pre(x_{k+1} | x_k) / q(x_{k+1} | x_k)``.

Whenever the effective sample size ``ESS = (sum w)^2 / sum w^2`` falls below
``ess_threshold N`` the particles are resampled systematically (Kitagawa 1996) and the
weights reset. ``Z_hat = prod_r mean_n(w_n^(r))`` over the resampling rounds ``r`` (the last
one at ``x_0``) is an unbiased estimate of ``Z = E_pre[p(y | x_0, c)^lambda]`` (Del Moral
2004); ``log Z_hat`` is biased low by Jensen. The returned samples are resampled to equal
weights. Cost: one network evaluation per particle and step (the twist reuses the step's own
``x0_hat``), plus one vector-Jacobian product per step with guidance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from .._checks import (
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
    check_probability,
)
from ..diffusion import DiffusionSampler, model_device
from ..profiles import gaussian_noise, make_generator
from ..target import reward_log_prob

__all__ = ["SMCResult", "systematic_resample", "effective_sample_size", "twisted_smc"]


@dataclass
class SMCResult:
    """What :func:`twisted_smc` returns.

    Attributes:
        x: ``(N, ...)`` equally weighted samples of the tilted target (after a final resampling).
        log_z: ``log Z_hat`` (``Z_hat`` unbiased for ``Z = E_pre[p(y | x_0, c)^lambda]``;
            multiply by ``alpha`` for the certificate's ``alpha log Z``).
        ess: the ESS before each potential resampling, one entry per step and the last at
            ``x_0`` (``K + 1`` values, out of ``N``).
        resampled: the step indices where the particles were resampled (``K``: at ``x_0``).
        log_weights: ``(N,)`` the final normalised log-weights of the particles before the
            equal-weight resampling (read with ``x_weighted``).
        x_weighted: ``(N, ...)`` the final particles those weights belong to.
        network_evaluations: forward evaluations of the network per returned sample (``K``).

    Introduced in: Chapter 9 (Beyond CTRL).
    """

    x: torch.Tensor
    log_z: float
    ess: list = field(default_factory=list)
    resampled: list = field(default_factory=list)
    log_weights: torch.Tensor | None = None
    x_weighted: torch.Tensor | None = None
    network_evaluations: int = 0


def effective_sample_size(log_w: torch.Tensor) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` of log-weights ``(N,)``.

    Args:
        log_w: ``(N,)`` unnormalised log-weights.

    Returns:
        The ESS, between 1 and ``N``.

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    w = torch.softmax(log_w.double(), 0)
    return float(1.0 / w.pow(2).sum())


def systematic_resample(log_w: torch.Tensor, generator=None) -> torch.Tensor:
    """Systematic resampling (Kitagawa 1996): one uniform ``u``, the points ``(i + u) / N``
    through the cumulative normalised weights; indices ``(N,)`` with ``E[count_n] = N w_n``.

    Args:
        log_w: ``(N,)`` unnormalised log-weights.
        generator: a ``torch.Generator`` for ``u``.

    Returns:
        A long tensor ``(N,)`` of ancestor indices.

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    n = log_w.shape[0]
    cdf = torch.softmax(log_w.double().cpu(), 0).cumsum(0)
    u = (torch.arange(n, dtype=torch.float64) + torch.rand((), generator=generator,
                                                           dtype=torch.float64)) / n
    idx = torch.searchsorted(cdf, u).clamp(max=n - 1)
    return idx.to(log_w.device)


def twisted_smc(network: torch.nn.Module, sampler: DiffusionSampler, reward_model,
                num_particles: int, *, c=None, y: int, alpha: float = 1.0, gamma: float = 1.0,
                ess_threshold: float = 0.5, guidance: float = 0.0,
                generator: torch.Generator | None = None) -> SMCResult:
    """Sample the tilted target by twisted SMC on the pre-trained chain (module docstring;
    TDS, Wu et al. 2023, Alg. 1, with adaptive systematic resampling).

    Args:
        network: the frozen pre-trained eps-network.
        sampler: its :class:`~ctrl_teach.diffusion.DiffusionSampler` (the proposal chain).
        reward_model: the reward (see :mod:`ctrl_teach.target`).
        num_particles: ``N``.
        c: ``None`` (unconditional model) or an int condition.
        y: the int label (all particles share one target).
        alpha: KL weight (the twist is ``p^(gamma / alpha)``).
        gamma: reward weight.
        ess_threshold: resample when ``ESS < ess_threshold N`` (0: only at the end, i.e.
            sequential importance sampling; 1: every step).
        guidance: scale of TDS's guided proposal ``mean + guidance sigma^2 grad log psi`` (0:
            the pre-trained proposal).
        generator: a ``torch.Generator`` (default: seed 0).

    Returns:
        An :class:`SMCResult` (samples, ``log Z_hat``, ESS trace, cost).

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    n = check_positive_int("num_particles", num_particles)
    alpha, gamma = check_positive_float("alpha", alpha), check_positive_float("gamma", gamma)
    lam = gamma / alpha
    ess_threshold = check_probability("ess_threshold", ess_threshold)
    guidance = check_positive_float("guidance", guidance, allow_zero=True)
    y = check_nonnegative_int("y", y)
    if not isinstance(sampler, DiffusionSampler):
        raise ValueError(f"sampler must be a DiffusionSampler, got {type(sampler).__name__}")
    generator = make_generator(generator)
    device = model_device(network)
    cond = sampler.prepare_condition(network, c, n, device)
    zeros = torch.zeros(n, dtype=torch.float64, device=device)
    # log_w: current log-weights; prev: log psi of the current particles; corr: the last
    # guided move (pre-trained mean, proposal mean, std) for its importance correction
    st = dict(log_w=zeros, prev=zeros, log_z=0.0, corr=None)
    result = SMCResult(x=torch.empty(0), log_z=0.0)

    def reweight(log_w, last):
        """Record the ESS; at the end or when it is low add the round's log mean weight to
        log Z_hat and (before the end) return systematic ancestor indices."""
        st["log_w"] = log_w
        result.ess.append(effective_sample_size(log_w))
        if last or result.ess[-1] < ess_threshold * n:
            st["log_z"] += float(torch.logsumexp(log_w, 0)) - math.log(n)
            if not last:
                st["log_w"] = zeros
                return systematic_resample(log_w, generator)
        return None

    def step_fn(x_t, i):
        if st["corr"] is not None:       # p_pre(x_t | x_prev) / q(x_t | x_prev) of the last move
            mean_pre, mean_q, sd = st["corr"]
            corr = ((x_t - mean_q).pow(2) - (x_t - mean_pre).pow(2)) / (2 * sd**2)
            st["log_w"] = st["log_w"] + corr.flatten(1).sum(1).double()
        guided = guidance > 0 and float(sampler.sigmas[i]) > 0
        with torch.enable_grad():
            x_in = x_t.detach().requires_grad_(guided)
            step = sampler.step(network, x_in, i, cond)
            # the twist psi_k(x_k) = p(y | x0_hat(x_k), c)^lambda, from the step's own x0_hat
            log_psi = lam * reward_log_prob(reward_model, step.x0_hat, c=cond, y=y)
            grad = torch.autograd.grad(log_psi.sum(), x_in)[0] if guided else None
        log_psi = log_psi.detach().double()
        mean, eps, x0_hat = step.mean.detach(), step.eps.detach(), step.x0_hat.detach()
        idx = reweight(st["log_w"] + log_psi - st["prev"], last=False)
        if idx is not None:              # resampling x_t = resampling the step's outputs
            mean, eps, x0_hat, log_psi = mean[idx], eps[idx], x0_hat[idx], log_psi[idx]
            grad = None if grad is None else grad[idx]
            result.resampled.append(i)
        st["prev"], st["corr"] = log_psi, None
        if grad is not None:             # TDS's guided proposal
            mean_q = mean + guidance * step.std**2 * grad
            st["corr"], mean = (mean, mean_q, step.std), mean_q
        return replace(step, mean=mean, eps=eps, x0_hat=x0_hat), None

    x_T = gaussian_noise((n, *network.data_shape), generator, device)
    with torch.no_grad():
        x0 = sampler.run_chain(step_fn, x_T, generator=generator).x
        final = lam * reward_log_prob(reward_model, x0, c=cond, y=y).double()
    reweight(st["log_w"] + final - st["prev"], last=True)   # the exact reward at x_0
    result.x_weighted, result.log_weights = x0, torch.log_softmax(st["log_w"], 0)
    result.x = x0[systematic_resample(st["log_w"], generator)]
    result.log_z = st["log_z"]
    result.network_evaluations = sampler.num_steps
    return result

"""The soft value function and the soft-optimal control (Chapter 4, "The soft-optimal policy").

For a pre-trained chain ``x_T -> ... -> x_0`` (steps of a :class:`DiffusionSampler`) and a
terminal reward ``r(x_0) = gamma log p(y | x_0, c)`` with KL weight ``alpha``, the soft value of
the state ``x_t`` is::

    v_t(x) = alpha log E_pre[ exp(r(x_0) / alpha) | x_t = x ],        v_0 = r,

and it obeys the soft Bellman recursion ``v_t(x) = alpha log E_{p_pre(x_t' | x_t = x)}[exp(
v_t'(x_t') / alpha)]``. The soft-optimal step is the pre-trained step tilted by the next value::

    p*(x_t' | x_t) ∝ p_pre(x_t' | x_t) exp(v_t'(x_t') / alpha),

whose mean, to first order in the step's std ``sigma_t``, is ``mean_pre + sigma_t^2 grad v_t'
(mean_pre) / alpha``: in noise units (the units of :class:`~ctrl_teach.ctrl.HeadAugmentedModel`)
the soft-optimal control is::

    a*(x_t) = sigma_t grad_{x'} v_t'(x') / alpha   at  x' = mean_pre(x_t).

Two families of functions:

* :func:`monte_carlo_value`, :func:`optimal_control`: any eps-network, sampler and reward
  module, by pre-trained rollouts (this is what classifier guidance would need at every step,
  and what CTRL's fine-tuning learns to avoid).
* :func:`gaussian_value`, :func:`gaussian_optimal_control`, :func:`gaussian_chain_to_data`:
  closed forms when the pre-trained model is the exact denoiser of Gaussian data
  ``N(m, v I)`` and the reward is a :class:`~ctrl_teach.ctrl.GaussianLikelihood`; every step of
  the sampler is then affine in ``x_t``, so ``x_0 | x_t`` is Gaussian and ``v_t`` is quadratic.
"""

from __future__ import annotations

import math

import torch

from .._checks import (
    broadcast_labels,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
    check_tensor,
)
from ..diffusion import DiffusionSampler, gaussian_step_affine, model_device
from ..target import reward_log_prob
from .known_rewards import GaussianLikelihood

__all__ = ["monte_carlo_value", "optimal_control", "gaussian_chain_to_data", "gaussian_value",
           "gaussian_optimal_control"]


# -- checks -------------------------------------------------------------------------------
def _check_sampler(sampler) -> DiffusionSampler:
    if not isinstance(sampler, DiffusionSampler):
        raise ValueError(f"sampler must be a DiffusionSampler, got {type(sampler).__name__}")
    return sampler


def _check_step_index(step_index, sampler: DiffusionSampler, allow_end: bool = True) -> int:
    i = check_nonnegative_int("step_index", step_index)
    last = sampler.num_steps if allow_end else sampler.num_steps - 1
    if i > last:
        raise ValueError(f"step_index must be in 0..{last} for a sampler with "
                         f"{sampler.num_steps} steps, got {step_index!r}")
    return i


def _check_state(x, network) -> torch.Tensor:
    shape = (None, *getattr(network, "data_shape", x.shape[1:] if torch.is_tensor(x) else ()))
    return check_tensor("x", x, shape=shape)


def _labels(name: str, value, n: int):
    """The label normaliser of the library, with ``None`` refused for ``y``."""
    if value is None:
        raise ValueError(f"{name} must be an int or a long tensor of labels, got None")
    return broadcast_labels(name, value, n)


# -- Monte Carlo, any network ---------------------------------------------------------------
def _rollout_value(network, sampler, reward_model, x, i, c, y, alpha, gamma, m, generator):
    """``alpha log mean_j exp(gamma r(x_0^j) / alpha)`` over ``m`` rollouts per row, and weights.

    Differentiable in ``x`` when called with gradients enabled (reparameterised rollouts).
    """
    n = x.shape[0]
    xs = x.repeat_interleave(m, dim=0)
    cs = None if c is None else c.repeat_interleave(m, dim=0)
    xs = sampler.run_chain(lambda x_t, k: (sampler.step(network, x_t, k, cs), None), xs,
                           generator=generator, first_step=i).x
    ys = y.repeat_interleave(m, dim=0)
    logw = (gamma / alpha) * reward_log_prob(reward_model, xs, c=cs, y=ys.to(x.device)).view(n, m)
    value = alpha * (torch.logsumexp(logw, dim=1) - math.log(m))
    return value, logw


def _prepare(network, sampler, reward_model, x, step_index, c, y, alpha, gamma, num_rollouts,
             allow_end=True):
    sampler = _check_sampler(sampler)
    i = _check_step_index(step_index, sampler, allow_end)
    x = _check_state(x, network)
    alpha = check_positive_float("alpha", alpha)
    gamma = check_positive_float("gamma", gamma)
    m = check_positive_int("num_rollouts", num_rollouts)
    n = x.shape[0]
    device = model_device(network)
    c = sampler.prepare_condition(network, broadcast_labels("c", c, n), n, device)
    y = _labels("y", y, n)
    return sampler, i, x.to(device), c, y.to(device), alpha, gamma, m


def monte_carlo_value(network, sampler, reward_model, x, step_index, *, c=None, y, alpha=1.0,
                      gamma=1.0, num_rollouts=64, generator=None, return_se=False):
    """Soft value ``v_t(x) = alpha log E_pre[exp(gamma log p(y | x_0, c) / alpha) | x_t = x]``.

    ``x`` is the state *before* step ``step_index`` of ``sampler`` (``t = sampler.timesteps[
    step_index]``; ``step_index = sampler.num_steps`` means ``x`` is already ``x_0`` and
    ``v = r``). Each row is continued ``num_rollouts`` times with the frozen pre-trained steps
    and the estimate is the log-mean-exp::

        v_hat(x) = alpha log( (1/M) sum_j exp(r(x_0^j) / alpha) ).

    It is consistent but biased low for finite ``M`` (Jensen); the bias and the standard
    error are both ``O(1/M)`` resp. ``O(1/sqrt(M))`` in the relative spread of the weights.

    Args:
        network: the frozen pre-trained eps-network ``network(x, t, c)``.
        sampler: its :class:`~ctrl_teach.diffusion.DiffusionSampler`.
        reward_model: the reward, ``(N, K)`` log-probabilities (see :mod:`ctrl_teach.target`).
        x: ``(N, *data_shape)`` states before step ``step_index``.
        step_index: ``0..num_steps``.
        c: ``None``, an int or ``(N,)`` pre-trained conditions.
        y: an int or ``(N,)`` reward labels.
        alpha: KL weight.
        gamma: reward weight (``r = gamma log p``).
        num_rollouts: ``M`` rollouts per state.
        generator: a ``torch.Generator`` for reproducible rollouts.
        return_se: also return the delta-method standard error
            ``alpha sd(w) / (sqrt(M) mean(w))`` with ``w = exp(r / alpha)``. It is itself
            estimated from the weights and understates the error when a few rollouts carry
            almost all the weight (states far from where the reward is high, small alpha).

    Returns:
        ``(N,)`` values (and ``(N,)`` standard errors with ``return_se``).

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    sampler, i, x, c, y, alpha, gamma, m = _prepare(
        network, sampler, reward_model, x, step_index, c, y, alpha, gamma, num_rollouts)
    with torch.no_grad():
        value, logw = _rollout_value(network, sampler, reward_model, x, i, c, y, alpha, gamma,
                                     m, generator)
    if not return_se:
        return value
    w = (logw - logw.max(dim=1, keepdim=True).values).double().exp()
    se = alpha * w.std(dim=1) / (math.sqrt(m) * w.mean(dim=1)) if m > 1 else torch.full_like(
        w[:, 0], float("inf"))
    return value, se.to(value.dtype)


def optimal_control(network, sampler, reward_model, x, step_index, *, c=None, y, alpha=1.0,
                    gamma=1.0, num_rollouts=64, generator=None):
    """Soft-optimal control of step ``step_index`` in noise units, first-order form::

        a*(x_t) = sigma_t grad_{x'} v_t'(x') / alpha   at  x' = mean_pre(x_t),

    so the controlled mean ``mean_pre + sigma_t a*`` is ``mean_pre + sigma_t^2 grad v_t' /
    alpha``, the discrete version of the drift ``sigma^2 grad v`` (classifier guidance at
    scale 1 when ``alpha = gamma = 1``).

    Estimator: the pathwise (reparameterised) gradient of the Monte Carlo value. From ``x'``
    the pre-trained chain is run ``num_rollouts`` times with fixed noise, and autograd
    differentiates ``alpha log mean_j exp(r(x_0^j) / alpha)`` through every step, which gives
    the self-normalised average ``sum_j w_j grad r(x_0^j)``, ``w = softmax(r / alpha)``. It
    needs a reward and a network differentiable in ``x``. Two biases, both documented:

    * the ratio (self-normalised) estimator is biased by ``O(1/M)`` for ``M`` rollouts;
    * the first-order form ignores the curvature of ``v``: the exact tilted step is not
      Gaussian in general, and for a quadratic ``v`` (the Gaussian case) its mean shift is
      the first-order one times ``1 / (1 + sigma_t^2 k / alpha)`` where ``-k`` is the curvature
      of ``v_t'`` (see :func:`gaussian_optimal_control` with ``exact_step=True``).

    The final noise-free step (``sigma_t = 0``) is never controlled: its control is 0.

    Args:
        network: the frozen pre-trained eps-network ``network(x, t, c)``.
        sampler: its :class:`~ctrl_teach.diffusion.DiffusionSampler`.
        reward_model: the reward, ``(N, K)`` log-probabilities (see :mod:`ctrl_teach.target`).
        x: ``(N, *data_shape)`` states before step ``step_index``.
        step_index: ``0..num_steps - 1``.
        c: ``None``, an int or ``(N,)`` pre-trained conditions.
        y: an int or ``(N,)`` reward labels.
        alpha: KL weight.
        gamma: reward weight (``r = gamma log p``).
        num_rollouts: ``M`` rollouts per state.
        generator: a ``torch.Generator`` for reproducible rollouts.

    Returns:
        A tensor shaped like ``x`` (detached).

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    sampler, i, x, c, y, alpha, gamma, m = _prepare(
        network, sampler, reward_model, x, step_index, c, y, alpha, gamma, num_rollouts,
        allow_end=False)
    sigma = float(sampler.sigmas[i])
    if sigma == 0:
        return torch.zeros_like(x)
    with torch.enable_grad():
        with torch.no_grad():
            mean = sampler.step(network, x, i, c).mean
        xp = mean.detach().requires_grad_(True)
        value, _ = _rollout_value(network, sampler, reward_model, xp, i + 1, c, y, alpha,
                                  gamma, m, generator)
        (grad,) = torch.autograd.grad(value.sum(), xp)
    return (sigma * grad / alpha).detach()


# -- closed forms for Gaussian data ----------------------------------------------------------
def _data_moments(data_mean, data_var, d=None):
    var = check_positive_float("data_var", data_var)
    if isinstance(data_mean, bool):
        raise ValueError(f"data_mean must be a number or a 1-D tensor, got {data_mean!r}")
    try:
        mean = torch.as_tensor(data_mean, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"data_mean must be a number or a 1-D tensor, got {data_mean!r}") from None
    if not torch.isfinite(mean).all():
        raise ValueError("data_mean contains NaN or infinite values")
    if d is not None and mean.numel() not in (1, d):
        raise ValueError(f"data_mean must be a number or have {d} entries, got {mean.numel()}")
    return mean, var


def gaussian_chain_to_data(sampler, data_mean, data_var, step_index):
    """``x_0 | x_t`` under the exact-denoiser chain of Gaussian data ``N(m, v I)``.

    Every step is affine, ``x_t' = s_k x_t + b_k + sigma_k z``, so from the state before step
    ``step_index`` the chain's output is ``x_0 = A x_t + B + sqrt(V) z`` with::

        (A, B, V) <- (s_k A, s_k B + b_k, s_k^2 V + sigma_k^2)   for k = step_index..K-1.

    Args:
        sampler: a :class:`~ctrl_teach.diffusion.DiffusionSampler`.
        data_mean: ``m`` (a number or a ``(d,)`` tensor).
        data_var: ``v`` (per coordinate).
        step_index: ``0..K``.

    Returns:
        ``(A, B, V)``: floats ``A``, ``V`` and a float64 tensor ``B`` shaped like ``m``.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    sampler = _check_sampler(sampler)
    i = _check_step_index(step_index, sampler)
    mean, var = _data_moments(data_mean, data_var)
    A, B, V = 1.0, torch.zeros_like(mean), 0.0
    for k in range(i, sampler.num_steps):
        s, b, sigma = gaussian_step_affine(sampler, k, mean, var)
        A, B, V = s * A, s * B + b, s * s * V + sigma**2
    return A, B, V


def _gaussian_setup(x, sampler, data_mean, data_var, reward, y, alpha, gamma):
    sampler = _check_sampler(sampler)
    x = check_tensor("x", x)
    if x.ndim < 2:
        raise ValueError(f"x must have shape (N, d), got {tuple(x.shape)}")
    if not isinstance(reward, GaussianLikelihood):
        raise ValueError(f"reward must be a GaussianLikelihood, got {type(reward).__name__}")
    d = x[0].numel()
    w = reward.w.double().reshape(-1)
    if w.numel() != d:
        raise ValueError(f"reward.w has {w.numel()} entries but x has {d} coordinates")
    mean, var = _data_moments(data_mean, data_var, d)
    alpha = check_positive_float("alpha", alpha)
    gamma = check_positive_float("gamma", gamma)
    n = x.shape[0]
    y = broadcast_labels("y", _labels("y", y, n), n, None, reward.num_labels)
    obs = reward.obs.double().cpu()[y]
    return sampler, x, d, w, mean.expand(d).clone(), var, alpha, gamma, obs


def _value_coeffs(sampler, i, mean, var, w, tau, lam):
    """v(x)/alpha = const - (o - A w.x - w.B)^2 / (2 s2) for the state before step i."""
    A, B, V = gaussian_chain_to_data(sampler, mean, var, i)
    s2 = tau**2 / lam + float(w @ w) * V
    const = 0.5 * (1 - lam) * math.log(2 * math.pi * tau**2) - 0.5 * math.log(lam) \
        - 0.5 * math.log(2 * math.pi * s2)
    return A, float(w @ B), s2, const


def gaussian_value(x, sampler, data_mean, data_var, reward, step_index, *, y, alpha=1.0,
                   gamma=1.0):
    """Exact soft value for Gaussian data ``N(m, v I)`` and a :class:`GaussianLikelihood`.

    With ``x_0 | x_t ~ N(A x_t + B, V I)`` (:func:`gaussian_chain_to_data`), reward
    ``r = gamma log N(o; w.x_0, tau^2)`` and ``lambda = gamma / alpha``::

        exp(r / alpha) = (2 pi tau^2)^((1 - lambda)/2) lambda^(-1/2)
                         * N(o; w.x_0, tau^2/lambda),

        v_t(x) = alpha [ (1 - lambda)/2 log(2 pi tau^2) - 1/2 log lambda
                         + log N(o; w.(A x + B), tau^2/lambda + |w|^2 V) ].

    At ``alpha = gamma = 1`` this is ``log p_t(y | x_t)``, the noisy-state likelihood.

    Args:
        x: ``(N, d)`` states before step ``step_index``.
        sampler: the :class:`~ctrl_teach.diffusion.DiffusionSampler`.
        data_mean: ``m`` (a number or a ``(d,)`` tensor).
        data_var: ``v`` (per coordinate).
        reward: the :class:`~ctrl_teach.ctrl.GaussianLikelihood` (``y`` picks its ``o``).
        step_index: ``0..K``.
        y: an int or ``(N,)`` labels.
        alpha: KL weight.
        gamma: reward weight.

    Returns:
        ``(N,)`` values in ``x``'s dtype.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    sampler, x, d, w, mean, var, alpha, gamma, obs = _gaussian_setup(
        x, sampler, data_mean, data_var, reward, y, alpha, gamma)
    i = _check_step_index(step_index, sampler)
    A, wB, s2, const = _value_coeffs(sampler, i, mean, var, w, reward.tau, gamma / alpha)
    u = A * (x.reshape(x.shape[0], -1).double().cpu() @ w) + wB
    v = alpha * (const - 0.5 * (obs - u) ** 2 / s2)
    return v.to(device=x.device, dtype=x.dtype)


def gaussian_optimal_control(x, sampler, data_mean, data_var, reward, step_index, *, y,
                             alpha=1.0, gamma=1.0, exact_step=False):
    """Exact soft-optimal control of step ``step_index`` (noise units) in the Gaussian case.

    The pre-trained step is ``N(mu, sigma^2 I)`` with ``mu = s x + b`` and the next value is
    ``v_t'(x')/alpha = const - (o - A' w.x' - w.B')^2 / (2 s2)``. Then

    * first order (default; what :func:`optimal_control` estimates):
      ``a* = sigma grad v_t'(mu) / alpha = sigma A' w (o - A' w.mu - w.B') / s2``;
    * ``exact_step=True``: the mean of the exact tilted step ``N(mu, sigma^2) exp(v_t'/alpha)``
      (Gaussian conditioning), in noise units: the first-order control times
      ``s2 / (s2 + sigma^2 A'^2 |w|^2)``. (The exact step also has a smaller variance along
      ``w``; a mean-only policy cannot represent that, see :mod:`.step_floor`.)

    The last, noise-free step (``sigma = 0``) gets 0.

    Args:
        x: ``(N, d)`` states before step ``step_index``.
        sampler: the :class:`~ctrl_teach.diffusion.DiffusionSampler`.
        data_mean: ``m`` (a number or a ``(d,)`` tensor).
        data_var: ``v`` (per coordinate).
        reward: the :class:`~ctrl_teach.ctrl.GaussianLikelihood` (``y`` picks its ``o``).
        step_index: ``0..K-1``.
        y: an int or ``(N,)`` labels.
        alpha: KL weight.
        gamma: reward weight.
        exact_step: the mean of the exact tilted step instead of the first-order control.

    Returns:
        A tensor shaped like ``x``.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    sampler, x, d, w, mean, var, alpha, gamma, obs = _gaussian_setup(
        x, sampler, data_mean, data_var, reward, y, alpha, gamma)
    i = _check_step_index(step_index, sampler, allow_end=False)
    s, b, sigma = gaussian_step_affine(sampler, i, mean, var)
    if sigma == 0:
        return torch.zeros_like(x)
    A, wB, s2, _ = _value_coeffs(sampler, i + 1, mean, var, w, reward.tau, gamma / alpha)
    mu = s * x.reshape(x.shape[0], -1).double().cpu() + b
    grad = (A * (obs - A * (mu @ w) - wB) / s2)[:, None] * w[None, :]   # grad of v/alpha
    a = sigma * grad
    if exact_step:
        a = a * s2 / (s2 + sigma**2 * A * A * float(w @ w))
    return a.reshape(x.shape).to(device=x.device, dtype=x.dtype)

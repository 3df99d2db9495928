"""Relative trajectory balance (RTB; Venkatraman et al. 2024, arXiv 2405.20971).

The soft-optimal path measure is the pre-trained one reweighted at its end,
``P*(x_{T:0}) = P_pre(x_{T:0}) exp(r(x_0) / alpha) / Z`` with ``r = gamma log p(y | x_0, c)`` and
``Z = E_pre[exp(r / alpha)]`` (Chapter 4; exact when the initial law is ``nu* = nu`` or learned).
Relative trajectory balance asks a policy ``pi`` and a learned scalar ``log Z_theta(c, y)`` to
satisfy that identity on every trajectory, and penalises the residual::

    delta(tau) = log Z_theta + sum_i log pi_i(x_{i+1} | x_i)
                 - sum_i log p_pre_i(x_{i+1} | x_i)
                 [+ log nu_theta(x_T) - log N(x_T; 0, I)] - gamma log p(y | x_0, c) / alpha,
    L = E_{tau ~ behaviour}[ delta(tau)^2 ].

The sums run over the noisy steps (the noise-free last step is the same deterministic map in
both chains, so its ratio is 1). For the library's Gaussian steps with ``z = (x' - mean_pre) /
sigma``, the per-step log ratio of ``pi_i = N(mean_pre + sigma a, sigma^2 s^2)`` is
``sum_d [z^2 / 2 - (z - a)^2 / (2 s^2) - log s]``; its expectation under ``pi`` is
:func:`~ctrl_teach.ctrl.augmented.control_kl`.

``L`` is zero exactly when ``pi = P*`` and ``log Z_theta = log E_pre[exp(r / alpha)]``, whatever
law the trajectories come from, so RTB trains *off-policy*. Our behaviour policy is the current
policy, detached, with the std of every step (and of ``x_T``) multiplied by ``noise_scale``
(``1``: on-policy); the wider draws visit the tails that the policy has not learned yet, as the
exploratory rollouts of the paper do. The policy is the variance-aware
:class:`~ctrl_teach.ctrl.HeadAugmentedModel` (``variance=True``): the soft-optimal discrete step
is narrower than the pre-trained one, so a mean-only policy cannot make ``delta`` vanish.

Link to KL-regularised RL (Deleu et al. 2025, arXiv 2509.01632, Prop. 3.1): ``alpha delta`` is
the path-consistency residual of Trust-PCL (Nachum et al. 2018) over the whole trajectory, with
KL weight ``alpha`` towards the reference policy ``p_pre``, the terminal reward ``r`` and the
learned soft value of the start ``V(x_T) = alpha log Z_theta``; so ``L_Trust-PCL = alpha^2 L``,
RTB is Trust-PCL, and its minimiser is CTRL's soft-optimal policy with ``log Z = log
E_pre[exp(r / alpha)]``: ``alpha log Z_theta`` estimates the certificate's ``alpha log Z``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from .._checks import check_positive_float
from ..ctrl.augmented import AugmentedModel, pair_index
from ..ctrl.finetune import draw_labels
from ..diffusion import model_device
from ..profiles import gaussian_noise, make_generator
from ..target import reward_log_prob
from ._loop import adam_with_schedule, check_fit, clipped_step, train_loop

__all__ = ["TrajectoryBalanceHistory", "behaviour_trajectories", "trajectory_balance_residual",
           "trajectory_balance"]


@dataclass
class TrajectoryBalanceHistory:
    """Per-iteration batch means of :func:`trajectory_balance`, the learned ``log Z`` and time.

    Attributes:
        loss: the RTB loss ``E[delta^2]``.
        log_z: the batch mean of ``log Z_theta(c, y)``.
        log_reward: ``E log p(y | x_0, c)`` of the behaviour trajectories.
        grad_norm: the gradient norm before clipping.
        log_z_table: the final ``log Z_theta``, one entry per ``(c, y)`` row
            (:func:`~ctrl_teach.ctrl.pair_index`); ``alpha log Z_theta`` estimates
            ``alpha log Z``.
        wall_time: seconds.

    Introduced in: Chapter 9 (Beyond CTRL).
    """

    loss: list = field(default_factory=list)
    log_z: list = field(default_factory=list)
    log_reward: list = field(default_factory=list)
    grad_norm: list = field(default_factory=list)
    log_z_table: torch.Tensor | None = None
    wall_time: float = 0.0


def behaviour_trajectories(augmented: AugmentedModel, *, c=None, y, noise_scale: float = 1.0,
                           generator=None) -> torch.Tensor:
    """Trajectories of the behaviour policy: the current policy with every std (and ``x_T``'s)
    multiplied by ``noise_scale``, sampled without a graph.

    Args:
        augmented: an :class:`~ctrl_teach.ctrl.AugmentedModel`.
        c: ``None``, an int or ``(N,)`` conditions.
        y: ``(N,)`` labels; ``N`` is the batch size.
        noise_scale: the std factor (``1``: on-policy).
        generator: a ``torch.Generator`` for ``x_T`` and the step noise.

    Returns:
        ``(K + 1, N, ...)`` states from ``x_T`` to ``x_0``.

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    if not isinstance(y, torch.Tensor) or y.ndim != 1:
        raise ValueError("y must be a long tensor of shape (N,)")
    log_k = math.log(check_positive_float("noise_scale", noise_scale))
    n, device = y.shape[0], model_device(augmented.network)
    c, y = augmented.prepare_labels(c, y, n, device)

    def step_fn(x_t, i):
        step, _ = augmented.step(x_t, i, c, y)
        if step.std == 0 or log_k == 0:
            return step, None
        base = torch.zeros_like(step.mean) if step.log_scale is None else step.log_scale
        return replace(step, log_scale=base + log_k), None

    with torch.no_grad():
        z = noise_scale * gaussian_noise((n, *augmented.data_shape), generator, device)
        x, _ = augmented.initial_state(z, c, y)
        out = augmented.sampler.run_chain(step_fn, x, generator=generator,
                                          return_trajectory=True)
    return out.trajectory


def _gaussian_log_ratio(z: torch.Tensor, a: torch.Tensor, log_s) -> torch.Tensor:
    """``log N(x; mu + a, s^2) - log N(x; mu, 1)`` at ``x = mu + z``, summed per row."""
    if log_s is None:
        log_s = torch.zeros_like(a)
    out = 0.5 * z.pow(2) - 0.5 * (z - a).pow(2) * (-2 * log_s).exp() - log_s
    return out.flatten(1).sum(1)


def trajectory_balance_residual(augmented: AugmentedModel, reward_model, log_z: torch.Tensor,
                                states: torch.Tensor, *, c=None, y, alpha: float = 1.0,
                                gamma: float = 1.0) -> torch.Tensor:
    """The RTB residual ``delta(tau)`` of every trajectory (module docstring; Venkatraman et
    al. 2024), differentiable in the policy and in ``log_z``.

    Args:
        augmented: the policy (an :class:`~ctrl_teach.ctrl.AugmentedModel`).
        reward_model: the reward (see :mod:`ctrl_teach.target`).
        log_z: ``((num_conditions + 1) * num_labels,)`` table of ``log Z_theta`` (rows by
            :func:`~ctrl_teach.ctrl.pair_index`).
        states: ``(K + 1, N, ...)`` trajectories (e.g. :func:`behaviour_trajectories`).
        c: ``None``, an int or ``(N,)`` conditions.
        y: an int or ``(N,)`` labels.
        alpha: KL weight.
        gamma: reward weight.

    Returns:
        ``(N,)`` residuals.

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    alpha = check_positive_float("alpha", alpha)
    gamma = check_positive_float("gamma", gamma)
    K = augmented.sampler.num_steps
    if not isinstance(states, torch.Tensor) or states.ndim < 2 or states.shape[0] != K + 1:
        raise ValueError(f"states must be a tensor (K + 1, N, ...) with K = {K}, got "
                         f"{getattr(states, 'shape', states)!r}")
    c, y = augmented.prepare_labels(c, y, states.shape[1], states.device)
    idx = pair_index(c, y, augmented.num_labels, augmented.num_conditions)
    delta = log_z[idx] - (gamma / alpha) * reward_log_prob(reward_model, states[K], c=c, y=y)
    if augmented.init_mean is not None:              # learned initial law vs N(0, I)
        m, log_s = augmented.init_mean[idx], augmented.init_log_std[idx]
        x = states[0].flatten(1)
        delta = delta + _gaussian_log_ratio(x, m, log_s)
    for i in range(K):
        step, a = augmented.step(states[i], i, c, y)
        if step.std == 0:
            continue
        z = (states[i + 1] - step.mean) / step.std + a       # (x' - mean_pre) / sigma
        delta = delta + _gaussian_log_ratio(z, a, step.log_scale)
    return delta


def trajectory_balance(augmented: AugmentedModel, reward_model, *, iterations: int = 400,
                       batch_size: int = 256, lr: float = 1e-3, lr_log_z: float = 0.1,
                       warmup: int = 20, clip_grad: float = 1.0, alpha: float = 1.0,
                       gamma: float = 1.0, noise_scale: float = 1.2, seed: int = 0,
                       progress: bool = False, callback=None) -> TrajectoryBalanceHistory:
    """Fine-tune ``augmented`` and a ``log Z_theta(c, y)`` table by relative trajectory balance
    (Venkatraman et al. 2024), off-policy from :func:`behaviour_trajectories`.

    Args:
        augmented: the policy, trained in place; use a variance-aware
            :class:`~ctrl_teach.ctrl.HeadAugmentedModel` so that the optimum is representable.
        reward_model: the frozen reward (never differentiated).
        iterations: Adam iterations.
        batch_size: trajectories per iteration, ``(c, y)`` drawn uniformly.
        lr: peak learning rate of the policy (cosine decay after a linear warm-up).
        lr_log_z: the constant SGD step of ``log Z_theta``. The loss is quadratic in it, so
            each step moves it ``2 lr_log_z`` of the way (times the share of the batch with
            that ``(c, y)``) to the batch's best value ``mean(r / alpha - log ratio)``: an
            exponential moving average (Adam's long memory of the first, large residuals
            would freeze it).
        warmup: warm-up iterations.
        clip_grad: maximum gradient norm of the policy.
        alpha: KL weight.
        gamma: reward weight.
        noise_scale: the behaviour policy's std factor (``1``: on-policy).
        seed: seeds a local generator for the labels and the noise.
        progress: show a tqdm bar.
        callback: optional ``callback(k, history) -> bool`` after iteration ``k`` (1-based);
            ``True`` stops early.

    Returns:
        A :class:`TrajectoryBalanceHistory` (with the learned ``log_z_table``).

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    iterations, batch_size, lr, clip_grad, warmup, alpha, gamma, params = check_fit(
        augmented, reward_model, iterations, batch_size, lr, clip_grad, warmup, alpha, gamma)
    lr_log_z = check_positive_float("lr_log_z", lr_log_z)
    noise_scale = check_positive_float("noise_scale", noise_scale)
    rows = (augmented.num_conditions + 1) * augmented.num_labels
    log_z = nn.Parameter(torch.zeros(rows, device=model_device(augmented.network)))
    opt, sched = adam_with_schedule(params, lr, iterations, warmup)
    opt_z = torch.optim.SGD([log_z], lr=lr_log_z)
    gen = make_generator(seed=seed)
    hist = TrajectoryBalanceHistory()

    def one_iteration(k):
        c, y = draw_labels(augmented, batch_size, gen)
        states = behaviour_trajectories(augmented, c=c, y=y, noise_scale=noise_scale,
                                        generator=gen)
        delta = trajectory_balance_residual(augmented, reward_model, log_z, states, c=c, y=y,
                                            alpha=alpha, gamma=gamma)
        loss = delta.pow(2).mean()
        norm = clipped_step(loss, params, opt, sched, clip_grad, extra=(opt_z,))
        cc, yy = augmented.prepare_labels(c, y, batch_size, states.device)
        with torch.no_grad():
            logr = reward_log_prob(reward_model, states[-1], c=cc, y=yy)
        idx = pair_index(cc, yy, augmented.num_labels, augmented.num_conditions)
        hist.loss.append(float(loss.detach()))
        hist.log_z.append(float(log_z.detach()[idx].mean()))
        hist.log_reward.append(float(logr.mean()))
        hist.grad_norm.append(norm)

    train_loop(augmented, iterations, one_iteration, hist, desc="trajectory balance",
               progress=progress, callback=callback)
    hist.log_z_table = log_z.detach().clone()
    return hist

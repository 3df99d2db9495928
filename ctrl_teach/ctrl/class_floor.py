"""The floor of a Gaussian policy class, measured where no closed form exists (Chapter 4).

:mod:`~ctrl_teach.ctrl.step_floor` computes the floor of the mean-only class in closed form
for 1-D Gaussian data. On a mixture the soft-optimal step

    p*_k(x' | x) ∝ N(x'; mu_k(x), sigma_k^2 I) exp(v_{k+1}(x') / alpha)

is not Gaussian at all where the next value bends on the scale of the step (the noisy steps
in which a sample chooses its mode), so even a step that learns its whole covariance keeps a
floor. This module measures it. By the chain rule of the path KL,

    alpha log Z - J(pi) = alpha KL(nu || nu*) + alpha sum_k E_pi[KL(pi_k(. | x) || p*_k(. | x))],

and for each step it finds, at states ``x`` drawn from the soft-optimal path measure, the
best Gaussian ``pi_k(. | x)`` of three classes, in the step's noise units ``x' = mu_k(x) +
sigma_k z``:

* ``mean_only``: ``z ~ N(m, I)`` (CTRL's step: the pre-trained variance);
* ``diagonal``: ``z ~ N(m, diag(s^2))`` (the variance-aware step of
  :class:`~ctrl_teach.ctrl.HeadAugmentedModel` with ``variance=True``);
* ``full``: ``z ~ N(m, L L^T)`` (any Gaussian step).

``KL(N(m, S) || p*) = KL(N(m, S) || N(0, I)) - E[log h(z)] + log E_{N(0, I)}[h]`` with
``h = exp(v_{k+1} / alpha)``, estimated by Monte Carlo on a grid of ``z`` (``±4`` in steps of
0.5 per coordinate) with common random numbers (every grid point of one state is continued
with the same noise, so ``h`` is smooth across the grid), and both expectations are sums over
that grid. The sum of the per-step minima plus the initial-law term is the floor of the class
*at the optimal marginals*: a policy whose own marginals differ pays its per-step KL where it
is, so this is the floor a converged policy approaches, not a bound on every policy. Three
errors make it an over-estimate: Monte Carlo noise in ``h`` (roughness no Gaussian fits),
the fitted scale's range (``s`` in ``[0.4, 1.5]``, what the grid resolves) and a finite fit.

Only 1-D and 2-D data (the grid has ``17^d`` points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from .._checks import check_nonnegative_int, check_positive_float, check_positive_int
from ..diffusion import DiffusionSampler
from ..profiles import gaussian_noise
from ..target import log_partition, reward_log_prob
from .augmented import AugmentedModel, control_kl
from .references import certificate_gap

__all__ = ["GaussianClassFloor", "gaussian_class_floor", "PolicyStepGaps", "policy_step_gaps",
           "greedy_policy_gap"]

CLASSES = ("mean_only", "diagonal", "full")
_GRID_HALFWIDTH, _GRID_POINTS = 4.0, 17          # z grid per coordinate: ±4 in steps of 0.5
_LOG_SCALE_RANGE = (math.log(0.4), math.log(1.5))


@dataclass
class GaussianClassFloor:
    """What :func:`gaussian_class_floor` measured for one ``(c, y)``.

    Attributes:
        per_step: one dict per noisy step: ``k``, ``sigma`` and, for each class in
            ``mean_only``, ``diagonal``, ``full``, ``alpha E[min KL]`` and its standard error
            (``<class>_se``) over the sampled states.
        initial: ``alpha KL(nu || nu*)``, the price of the fixed start ``x_T ~ N(0, I)``.
        mean_only, diagonal, full: the floor of each class, ``initial + sum(per_step)``.
        se: the standard error of each floor (independent states per step).
        alpha_log_z: ``alpha log Z`` from the pre-trained paths (for scale).

    Introduced in: Chapter 4 (The soft-optimal policy).
    """

    per_step: list
    initial: float
    mean_only: float
    diagonal: float
    full: float
    se: dict = field(default_factory=dict)
    alpha_log_z: float = float("nan")


def _grid(d: int) -> torch.Tensor:
    axis = torch.linspace(-_GRID_HALFWIDTH, _GRID_HALFWIDTH, _GRID_POINTS)
    return torch.stack(torch.meshgrid(*[axis] * d, indexing="ij"), -1).reshape(-1, d)


def _kl_to_tilted(log_h: torch.Tensor, z: torch.Tensor, mean: torch.Tensor,
                  L: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean, L L^T) || p*)`` per row, ``p*(z) ∝ N(z; 0, I) h(z)`` given on the grid ``z``.

    ``KL(G || N(0, I)) - E_G[log h] + log E_N[h]``, both expectations as sums over the grid;
    ``log_h``: ``(B, P)``, ``mean``: ``(B, d)``, ``L``: ``(B, d, d)`` lower triangular with
    diagonal ``exp(log_s)``. Returns ``(B,)`` nats.
    """
    d = z.shape[1]
    log_n = -0.5 * z.pow(2).sum(1)
    log_ez = torch.logsumexp(log_n + log_h, 1) - torch.logsumexp(log_n, 0)   # log E_N[h]
    # KL(N(mean, L L^T) || N(0, I)) = (tr(L L^T) + |mean|^2 - d - log det(L L^T)) / 2
    kl_pre = 0.5 * (L.pow(2).sum((1, 2)) + mean.pow(2).sum(1) - d) - log_s.sum(1)
    e = torch.linalg.solve_triangular(L, (z[None] - mean[:, None]).transpose(1, 2),
                                      upper=False)                # (B, d, P)
    weights = torch.softmax(-0.5 * e.pow(2).sum(1), 1)              # G on the grid
    return kl_pre - (weights * log_h).sum(1) + log_ez


def _fit_floor(log_h: torch.Tensor, z: torch.Tensor, kind: str, iterations: int,
               return_params: bool = False):
    """``min_G KL(G || p*)`` per row over the Gaussians ``G`` of class ``kind``.

    ``log_h``: ``(B, P)`` at the ``P`` grid points. Returns ``(B,)`` nats, and with
    ``return_params`` also the fitted ``mean`` and ``log_s`` (``(B, d)`` each; not for
    ``full``).
    """
    B, d = log_h.shape[0], z.shape[1]
    mean = torch.zeros(B, d, requires_grad=True)
    log_s = torch.zeros(B, d, requires_grad=kind != "mean_only")
    lower = torch.zeros(B, d, d, requires_grad=kind == "full")
    params = [mean] + [p for p in (log_s, lower) if p.requires_grad]
    tril = torch.tril(torch.ones(d, d), -1)

    def objective():
        ls = log_s.clamp(*_LOG_SCALE_RANGE)
        L = torch.diag_embed(ls.exp()) + lower * tril              # z = mean + L e
        return _kl_to_tilted(log_h, z, mean, L, ls)

    opt = torch.optim.Adam(params, lr=0.05)
    for _ in range(iterations):
        opt.zero_grad()
        objective().sum().backward()
        opt.step()
    with torch.no_grad():
        kl = objective()
        if not return_params:
            return kl
        return kl, mean.detach(), log_s.clamp(*_LOG_SCALE_RANGE).detach()


def _point_dim(name: str, network) -> int:
    """``d`` of a network of 1-D or 2-D points (the grid has ``17^d`` points)."""
    shape = tuple(getattr(network, "data_shape", ()))
    if len(shape) != 1 or shape[0] not in (1, 2):
        raise ValueError(f"{name} must model 1-D or 2-D points (data_shape (1,) or (2,)), "
                         f"got data_shape {shape}")
    return shape[0]


def _checked_args(network, sampler, c, y, alpha, gamma, **counts):
    """The checks shared by :func:`gaussian_class_floor` and :func:`greedy_policy_gap`:
    ``(d, c, y, alpha, gamma, *counts)`` with each count a positive int named by its key."""
    if not isinstance(sampler, DiffusionSampler):
        raise ValueError(f"sampler must be a DiffusionSampler, got {type(sampler).__name__}")
    d = _point_dim("network", network)
    c = None if c is None else check_nonnegative_int("c", c)
    return (d, c, check_nonnegative_int("y", y), check_positive_float("alpha", alpha),
            check_positive_float("gamma", gamma),
            *(check_positive_int(name, value) for name, value in counts.items()))


def _initial_term(network, sampler, reward_model, cond, y, alpha, ratio, n, d, fresh_noise,
                  generator) -> float:
    """``alpha KL(N(0, I) || nu*)``, ``nu* ∝ N(0, I) h_T``, from ``n`` draws of ``x_T``.

    One noise set for every ``x_T``: the Jensen bias of ``log h_T`` is then common to all of
    them and cancels in ``log E[h_T] - E[log h_T]``."""
    with torch.no_grad():
        x_T = gaussian_noise((1, n, d), generator)
        log_h_T = _log_h(network, sampler, reward_model, x_T, 0, cond, y, ratio,
                         fresh_noise(1))[0]
    return alpha * float(torch.logsumexp(log_h_T, 0) - math.log(n) - log_h_T.mean())


def _log_h(network, sampler, reward_model, x, first_step, cond, y, ratio, noise):
    """``log mean_j exp(ratio log p(y | x_0^j))`` for ``x`` of shape ``(S, P, d)`` (``P``
    states before step ``first_step`` for each of ``S`` groups), continuing every state of a
    group with the group's ``R`` noise vectors ``noise[i]`` (``(S, R, d)``): common random
    numbers across a state's grid, independent ones across states. Returns ``(S, P)``.

    Not :meth:`~ctrl_teach.diffusion.DiffusionSampler.run_chain`: its noise is drawn per
    row."""
    S, P, d = x.shape
    R = noise[0].shape[1]
    xs = x[:, :, None].expand(S, P, R, d).reshape(-1, d)
    cs = None if cond is None else torch.full((xs.shape[0],), cond, dtype=torch.long)
    for i in range(first_step, sampler.num_steps):
        step = sampler.step(network, xs, i, cs)
        xs = step.sample(noise=noise[i][:, None].expand(S, P, R, d).reshape(-1, d))
    ys = torch.full((xs.shape[0],), y, dtype=torch.long)
    log_w = ratio * reward_log_prob(reward_model, xs, c=cs, y=ys).view(S, P, R)
    return torch.logsumexp(log_w, 2) - math.log(R)


def gaussian_class_floor(network, sampler: DiffusionSampler, reward_model, *, c=None, y: int,
                         alpha: float = 1.0, gamma: float = 1.0, num_states: int = 16,
                         num_rollouts: int = 128, num_paths: int = 40000,
                         fit_iterations: int = 400,
                         generator: torch.Generator | None = None) -> GaussianClassFloor:
    """Measure the floor of the mean-only, diagonal and full Gaussian step classes.

    See the module docstring for the estimator and its errors.

    Args:
        network: the frozen pre-trained eps-network (1-D or 2-D data; on the CPU).
        sampler: its :class:`~ctrl_teach.diffusion.DiffusionSampler`.
        reward_model: the reward, ``log p(y | x_0, c)``.
        c: ``None`` or an int, the pre-trained condition.
        y: the label.
        alpha: KL weight.
        gamma: reward weight.
        num_states: states per step drawn from the soft-optimal path measure (pre-trained
            paths resampled by ``exp(gamma log p(y | x_0) / alpha)``).
        num_rollouts: ``R`` pre-trained continuations per grid point for ``h``.
        num_paths: pre-trained paths to resample from (also give ``alpha log Z``).
        fit_iterations: Adam steps of the per-state Gaussian fit.
        generator: a ``torch.Generator`` for every draw.

    Returns:
        A :class:`GaussianClassFloor`.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    d, c, y, alpha, gamma, M, R, num_paths, fit_iterations = _checked_args(
        network, sampler, c, y, alpha, gamma, num_states=num_states, num_rollouts=num_rollouts,
        num_paths=num_paths, fit_iterations=fit_iterations)
    K, ratio = sampler.num_steps, gamma / alpha
    z = _grid(d)
    with torch.no_grad():
        x0, paths = sampler.sample(network, num_paths, c=c, generator=generator,
                                   return_trajectory=True)
        ys = torch.full((num_paths,), y, dtype=torch.long)
        cs = sampler.prepare_condition(network, c, num_paths, x0.device)
        log_w = ratio * reward_log_prob(reward_model, x0, c=cs, y=ys)
        alpha_log_z = alpha * float(torch.logsumexp(log_w, 0) - math.log(num_paths))
        picks = torch.multinomial(torch.softmax(log_w.double(), 0), M * K, replacement=True,
                                  generator=generator).view(K, M)
    cond = None if cs is None else int(cs[0])

    def fresh_noise(groups):
        return [gaussian_noise((groups, R, d), generator) for _ in range(K)]

    per_step, var = [], {kind: 0.0 for kind in CLASSES}
    for k in range(K):
        sigma = float(sampler.sigmas[k])
        if sigma == 0:   # a noise-free step is never controlled: no floor to measure
            continue
        with torch.no_grad():
            x = paths[k][picks[k]]                                  # states before step k
            mean = sampler.step(network, x, k, None if cond is None else
                                torch.full((M,), cond, dtype=torch.long)).mean
            points = mean[:, None] + sigma * z[None]                 # (M, P, d)
            log_h = _log_h(network, sampler, reward_model, points, k + 1, cond, y, ratio,
                           fresh_noise(M))
        row = {"k": k, "sigma": sigma}
        for kind in CLASSES:
            kl = alpha * _fit_floor(log_h, z, kind, fit_iterations)
            row[kind], row[kind + "_se"] = float(kl.mean()), float(kl.std() / math.sqrt(M))
            var[kind] += row[kind + "_se"] ** 2
        per_step.append(row)
    initial = _initial_term(network, sampler, reward_model, cond, y, alpha, ratio,
                            max(M * 64, 1024), d, fresh_noise, generator)
    totals = {kind: initial + sum(r[kind] for r in per_step) for kind in CLASSES}
    return GaussianClassFloor(per_step, initial, **totals,
                              se={kind: math.sqrt(v) for kind, v in var.items()},
                              alpha_log_z=alpha_log_z)


@dataclass
class PolicyStepGaps:
    """Where a fine-tuned policy's certificate gap sits, step by step (one ``(c, y)``).

    Attributes:
        per_step: one dict per noisy step: ``k``, ``sigma``, ``gap`` =
            ``alpha E_pi[KL(pi_k(. | x) || p*_k(. | x))]`` at the policy's own states, its
            standard error ``gap_se`` and ``kl`` = ``alpha E_pi[KL(pi_k || p_pre,k)]``, what the
            step pays.
        initial: ``alpha KL(nu || nu*)`` of the fixed start.
        total: ``initial + sum(gap)``: the certificate ``alpha log Z - J`` by the chain rule.
        se: its standard error.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """

    per_step: list
    initial: float
    total: float
    se: float


def policy_step_gaps(augmented, reward_model, *, c=None, y: int, alpha: float = 1.0,
                     gamma: float = 1.0, num_states: int = 24, num_rollouts: int = 256,
                     generator: torch.Generator | None = None) -> PolicyStepGaps:
    """Split a fine-tuned policy's certificate gap into its steps (the chain rule).

    ``alpha log Z - J(pi) = alpha KL(nu || nu*) + alpha sum_k E_pi[KL(pi_k || p*_k)]`` with
    the expectation over the policy's *own* states: run ``num_states`` chains of the
    fine-tuned model and, before each noisy step, compare its Gaussian step with the
    soft-optimal one on the grid of :func:`gaussian_class_floor` (same estimator and errors:
    ``h`` from ``num_rollouts`` pre-trained continuations; a step much narrower than the grid
    spacing, ``s`` below ~0.4, is resolved poorly). Noise in ``h`` biases every step's term
    upwards (no fit absorbs it here): on the 1-D Gaussian problem the total is 0.075 with 64
    rollouts and 0.067 with 512 against a closed form of 0.063, so use a few hundred. A step
    whose ``gap`` is large is where fine-tuning has not found the optimum. The total
    estimates the certificate gap of :func:`~ctrl_teach.ctrl.evaluate_against_target`: on
    the 1-D Gaussian problem within its standard error; on the ring toy
    (``benchmarks/gap_split_benchmark.py --profile full``) only to about 0.04 nats, more than
    the standard errors, so read it as where the gap sits, not as a second certificate.

    Args:
        augmented: a fine-tuned :class:`~ctrl_teach.ctrl.AugmentedModel` with the fixed start
            (``learn_initial=False``) on 1-D or 2-D points.
        reward_model: the reward it was fine-tuned on.
        c: ``None`` or an int condition.
        y: the label.
        alpha: KL weight.
        gamma: reward weight.
        num_states: chains of the fine-tuned model (states per step).
        num_rollouts: pre-trained continuations per grid point for ``h``.
        generator: a ``torch.Generator`` for every draw.

    Returns:
        A :class:`PolicyStepGaps`.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    if not isinstance(augmented, AugmentedModel):
        raise ValueError(f"augmented must be an AugmentedModel, got {type(augmented).__name__}")
    if augmented.init_mean is not None:
        raise ValueError("augmented must use the fixed start (learn_initial=False)")
    d = _point_dim("augmented", augmented)
    y = check_nonnegative_int("y", y)
    alpha, gamma = check_positive_float("alpha", alpha), check_positive_float("gamma", gamma)
    M, R = check_positive_int("num_states", num_states), check_positive_int(
        "num_rollouts", num_rollouts)
    network, sampler, K, ratio = augmented.network, augmented.sampler, \
        augmented.sampler.num_steps, gamma / alpha
    z = _grid(d)

    def fresh_noise(groups):
        return [gaussian_noise((groups, R, d), generator) for _ in range(K)]

    with torch.no_grad():
        cs, ys = augmented.prepare_labels(c, torch.full((M,), y, dtype=torch.long), M, "cpu")
        cond = None if cs is None else int(cs[0])
        x, per_step, var = gaussian_noise((M, d), generator), [], 0.0
        for k in range(K):
            step, a = augmented.step(x, k, cs, ys)
            if step.std == 0:
                break
            sigma = float(step.std)
            pre_mean = augmented.pretrained_step(x, k, cs).mean
            log_h = _log_h(network, sampler, reward_model, pre_mean[:, None] + sigma * z[None],
                           k + 1, cond, y, ratio, fresh_noise(M))
            log_s = torch.zeros_like(a) if step.log_scale is None else step.log_scale
            kl = alpha * _kl_to_tilted(log_h, z, a.flatten(1), torch.diag_embed(
                log_s.flatten(1).exp()), log_s.flatten(1))
            per_step.append({"k": k, "sigma": sigma, "gap": float(kl.mean()),
                             "gap_se": float(kl.std() / math.sqrt(M)),
                             "kl": alpha * float(control_kl(a, step.log_scale).mean())})
            var += per_step[-1]["gap_se"] ** 2
            x = step.sample(generator=generator)
    initial = _initial_term(network, sampler, reward_model, cond, y, alpha, ratio,
                            max(M * 64, 1024), d, fresh_noise, generator)
    return PolicyStepGaps(per_step, initial, initial + sum(r["gap"] for r in per_step),
                          math.sqrt(var))


def greedy_policy_gap(network, sampler: DiffusionSampler, reward_model, *, c=None, y: int,
                      alpha: float = 1.0, gamma: float = 1.0, kind: str = "diagonal",
                      num_chains: int = 256, num_rollouts: int = 64, num_paths: int = 200000,
                      fit_iterations: int = 200,
                      generator: torch.Generator | None = None) -> dict:
    """The certificate gap of the greedy Gaussian policy: the class floor, attained.

    Runs ``num_chains`` chains in which every noisy step is the Gaussian of class ``kind``
    (``mean_only`` or ``diagonal``) fitted to the soft-optimal step ``p*_k(. | x)`` at the
    chain's own state (the grid estimator of :func:`gaussian_class_floor`), then scores them
    with the pathwise log-ratio, ``J = E[gamma log p(y | x_0) - alpha sum_k log(pi_k /
    p_pre,k)(x_{k+1} | x_k)]``, unbiased like the closed-form KL and of small variance near
    the optimum (it is the constant ``alpha log Z`` for the soft-optimal policy). It is an
    explicit policy of the class, so ``alpha log Z - J`` (up to its standard error) bounds
    what the class can reach: a fine-tuned gap far above it is optimisation, not the class.
    Slow (``num_chains x 17^d x num_rollouts`` continuations per step); 1-D or 2-D data.

    Args:
        network, sampler, reward_model, c, y, alpha, gamma: as :func:`gaussian_class_floor`.
        kind: ``"mean_only"`` or ``"diagonal"``.
        num_chains: chains of the greedy policy.
        num_rollouts: pre-trained continuations per grid point for ``h``.
        num_paths: pre-trained paths for ``alpha log Z``.
        fit_iterations: Adam steps of each fit.
        generator: a ``torch.Generator`` for every draw.

    Returns:
        A dict: ``gap``, ``gap_se``, ``alpha_log_z``, ``J``, ``kl`` (the policy's mean path
        KL, closed form) and ``floor`` (the fitted steps' ``alpha KL(pi_k || p*_k)`` summed
        along the chains).

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    if kind not in ("mean_only", "diagonal"):
        raise ValueError(f"kind must be 'mean_only' or 'diagonal', got {kind!r}")
    d, c, y, alpha, gamma, M, R, num_paths, fit_iterations = _checked_args(
        network, sampler, c, y, alpha, gamma, num_chains=num_chains, num_rollouts=num_rollouts,
        num_paths=num_paths, fit_iterations=fit_iterations)
    K, ratio, z = sampler.num_steps, gamma / alpha, _grid(d)
    with torch.no_grad():
        cs = sampler.prepare_condition(network, c, M, "cpu")
        cond = None if cs is None else int(cs[0])
        x, log_ratio = gaussian_noise((M, d), generator), torch.zeros(M)
        kl, floor = torch.zeros(M), 0.0
        for k in range(K):
            step = sampler.step(network, x, k, cs)
            sigma = float(step.std)
            if sigma == 0:          # the noise-free last step stays the pre-trained one
                x = step.mean
                continue
            noise = [gaussian_noise((M, R, d), generator) for _ in range(K)]
            log_h = _log_h(network, sampler, reward_model, step.mean[:, None] + sigma * z[None],
                           k + 1, cond, y, ratio, noise)
            with torch.enable_grad():
                kl_star, m, ls = _fit_floor(log_h, z, kind, fit_iterations, return_params=True)
            floor += alpha * float(kl_star.mean())
            # the fitted step N(mean_pre + sigma m, sigma^2 diag(s^2)), drawn and scored
            fitted = replace(step, mean=step.mean + sigma * m, log_scale=ls)
            x = fitted.sample(generator=generator)
            log_ratio += fitted.log_prob(x) - step.log_prob(x)
            kl += control_kl(m, ls)
        ys = torch.full((M,), y, dtype=torch.long)
        J = gamma * reward_log_prob(reward_model, x, c=cs, y=ys) - alpha * log_ratio
        x0 = sampler.sample(network, num_paths, c=c, generator=generator)
        alpha_log_z, alpha_log_z_se = log_partition(x0, reward_model, c=c, y=y, alpha=alpha,
                                                    gamma=gamma)
    gap, gap_se = certificate_gap(alpha_log_z, alpha_log_z_se, J)
    return dict(gap=gap, gap_se=gap_se, alpha_log_z=alpha_log_z, J=float(J.mean()),
                kl=alpha * float(kl.mean()), floor=floor)

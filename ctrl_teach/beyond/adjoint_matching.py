"""Adjoint matching in the library's discrete time (Domingo-Enrich et al. 2024, arXiv 2409.08861).

CTRL back-propagates through the sampled chain. Adjoint matching samples trajectories with the
graph cut, runs one backward pass through the *pre-trained* step means (the "lean adjoint") and
regresses the control onto it. For the step ``X_{i+1} = mean_pre_i(X_i) + sigma_i a_i(X_i) +
sigma_i z`` (``X_0 = x_T``, ``X_K = x_0``, reward ``r = gamma log p(y | x_0, c)``, KL weight
alpha) the exact discrete-time derivation is:

1. ``v_i(x) = alpha log E_z[exp(v_{i+1}(mean_pre_i(x) + sigma_i z) / alpha)]``, ``v_K = r``;
   differentiating the reparameterised draw, ``grad v_i(x) / alpha = J_i(x)^T E_{p*_i(.|x)}[
   grad v_{i+1}(X') / alpha]`` with ``J_i`` the Jacobian of the pre-trained mean and
   ``p*_i ∝ p_pre_i exp(v_{i+1} / alpha)`` the soft-optimal step.
2. So the lean adjoint ``adj_K = gamma grad log p(y | x_0, c) / alpha``, ``adj_i = J_i(X_i)^T
   adj_{i+1}`` (vector-Jacobian products; no control Jacobian) has ``E_{P*}[adj_i | X_i] =
   grad v_i(X_i) / alpha`` (tower rule along the optimal chain).
3. Stein's lemma for the tilted Gaussian step: ``E_{p*_i}[X'] - mean_pre_i = sigma_i^2
   E_{p*_i}[grad v_{i+1}(X') / alpha]``, so the soft-optimal mean shift in noise units is,
   with no small-step expansion, ``a*_i(x) = sigma_i E_{P*}[adj_{i+1} | X_i = x]``.
4. ``a*`` is therefore the minimiser of the regression (the paper's loss ``||u + sigma^T
   a~||^2``; its adjoint ``a~ = -grad r`` has the opposite sign and no ``1 / alpha``)::

       L(a) = E sum_{i: sigma_i > 0} || a_i(X_i) - sigma_i adj_{i+1} ||^2 ,

   iterated to a fixed point on trajectories of the current model (as in the paper). The
   noise-free last step is not controlled. A learned initial mean (``x_T = m + z``) is the
   same Stein step from ``N(0, I)`` with ``sigma = 1``: its target is ``adj_0``.

Floor: like the paper, only the mean is controlled, but the soft-optimal discrete step is
narrower than the pre-trained one, so the best gap is the mean-only floor ``alpha sum_k (r_k - 1
- log r_k) / 2`` (:func:`~ctrl_teach.ctrl.gaussian_step_floor`), which shrinks only with the step
size. On the linear-Gaussian problem the fixed point is exactly the best mean-only policy (the
value gradient is affine, so step 3 depends only on the mean of ``X'``).

Memorylessness: with the fixed start ``x_T ~ N(0, I)`` the optimal transitions reach the tilted
target only if ``v_0`` is constant, i.e. the pre-trained chain forgets ``x_T``: DDPM / DDIM with
``eta = 1`` and ``alpha_bar_T ~ 0`` (the paper's memoryless schedule). ``eta < 1`` is not
memoryless even with ``alpha_bar_T ~ 0`` (the deterministic part of the step carries ``x_T`` to
``x_0``), and the fixed start leaves the bias ``alpha KL(nu || nu*)`` (Chapter 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from .._checks import check_positive_float
from ..ctrl.augmented import AugmentedModel, control_kl, pair_index
from ..ctrl.finetune import draw_labels
from ..diffusion import model_device
from ..profiles import gaussian_noise, make_generator
from ..target import reward_log_prob
from ._loop import adam_with_schedule, check_fit, clipped_step, train_loop

__all__ = ["AdjointMatchingHistory", "Trajectories", "sample_trajectories", "lean_adjoint",
           "adjoint_matching_loss", "adjoint_matching"]


@dataclass
class AdjointMatchingHistory:
    """Per-iteration batch means of :func:`adjoint_matching` and its wall time.

    Attributes:
        loss: the regression loss ``L`` (module docstring, step 4).
        J: ``gamma log p - alpha (sum_t KL_t + KL_init)`` of the sampled trajectories.
        log_reward: ``E log p(y | x_0, c)``.
        kl: ``E sum_t KL_t`` (plus the initial-law KL).
        grad_norm: the gradient norm before clipping.
        wall_time: seconds.

    Introduced in: Chapter 9 (Beyond CTRL).
    """

    loss: list = field(default_factory=list)
    J: list = field(default_factory=list)
    log_reward: list = field(default_factory=list)
    kl: list = field(default_factory=list)
    grad_norm: list = field(default_factory=list)
    wall_time: float = 0.0


@dataclass
class Trajectories:
    """Sampled fine-tuned trajectories (what :func:`sample_trajectories` returns).

    Attributes:
        states: ``(K + 1, N, ...)`` states from ``x_T`` to ``x_0`` (no graph).
        controls: the ``K`` controls ``a_i(X_i)``; with gradients enabled each carries the graph
            of the control's parameters at the detached state (never through the chain).
        kl: ``(N, K)`` per-step KL (:func:`~ctrl_teach.ctrl.augmented.control_kl`), no graph.
        kl_init: ``(N,)`` initial-law KL, no graph.
        c: the prepared conditions (``None`` or ``(N,)``).
        y: the prepared labels ``(N,)``.

    Introduced in: Chapter 9 (Beyond CTRL).
    """

    states: torch.Tensor
    controls: list
    kl: torch.Tensor
    kl_init: torch.Tensor
    c: torch.Tensor | None
    y: torch.Tensor


def sample_trajectories(augmented: AugmentedModel, *, c=None, y,
                        generator=None) -> Trajectories:
    """Sample whole trajectories of the fine-tuned chain with the graph cut between steps.

    Each step is evaluated at the *detached* state, so no gradient flows along the chain (unlike
    CTRL's :func:`~ctrl_teach.ctrl.rollout`); under ``torch.no_grad`` nothing is kept at all.

    Args:
        augmented: an :class:`~ctrl_teach.ctrl.AugmentedModel`.
        c: ``None``, an int or ``(N,)`` conditions.
        y: ``(N,)`` labels; ``N`` is the batch size.
        generator: a ``torch.Generator`` for ``x_T`` and the step noise.

    Returns:
        A :class:`Trajectories`.

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    if not isinstance(y, torch.Tensor) or y.ndim != 1:
        raise ValueError("y must be a long tensor of shape (N,)")
    n, device = y.shape[0], model_device(augmented.network)
    c, y = augmented.prepare_labels(c, y, n, device)
    x, kl_init = augmented.initial_state(
        gaussian_noise((n, *augmented.data_shape), generator, device), c, y)

    def step_fn(x_t, i):
        step, a = augmented.step(x_t.detach(), i, c, y)
        log_s = None if step.log_scale is None else step.log_scale.detach()
        return (replace(step, mean=step.mean.detach(), log_scale=log_s),
                (a, control_kl(a.detach(), log_s)))

    out = augmented.sampler.run_chain(step_fn, x.detach(), generator=generator,
                                      return_trajectory=True)
    controls, kl = zip(*out.extras)
    return Trajectories(out.trajectory, list(controls), torch.stack(kl, 1), kl_init.detach(),
                        c, y)


def lean_adjoint(augmented: AugmentedModel, reward_model, states: torch.Tensor, *, c=None,
                 y, alpha: float = 1.0, gamma: float = 1.0) -> torch.Tensor:
    """The lean adjoint ``adj_K = gamma grad log p(y | x_0, c) / alpha``,
    ``adj_i = J_i(X_i)^T adj_{i+1}`` (module docstring, step 2).

    ``J_i`` is the Jacobian of the *pre-trained* step mean, applied as a vector-Jacobian product;
    the control's own Jacobian is left out (Domingo-Enrich et al. 2024, the lean adjoint ODE).

    Args:
        augmented: the augmented model (its frozen network and sampler give ``mean_pre``).
        reward_model: the reward (see :mod:`ctrl_teach.target`).
        states: ``(K + 1, N, ...)`` states (:attr:`Trajectories.states`).
        c: ``None``, an int or ``(N,)`` conditions.
        y: an int or ``(N,)`` labels.
        alpha: KL weight.
        gamma: reward weight.

    Returns:
        ``(K + 1, N, ...)`` adjoints ``adj_0 .. adj_K`` (no graph).

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    alpha = check_positive_float("alpha", alpha)
    gamma = check_positive_float("gamma", gamma)
    K = augmented.sampler.num_steps
    if not isinstance(states, torch.Tensor) or states.ndim < 2 or states.shape[0] != K + 1:
        raise ValueError(f"states must be a tensor (K + 1, N, ...) with K = {K}, got "
                         f"{getattr(states, 'shape', states)!r}")
    c, y = augmented.prepare_labels(c, y, states.shape[1], states.device)
    with torch.enable_grad():
        x = states[K].detach().requires_grad_(True)
        logr = reward_log_prob(reward_model, x, c=c, y=y)
        adj = torch.autograd.grad(logr.sum(), x)[0] * (gamma / alpha)
        adjoints = [adj]
        for i in reversed(range(K)):                  # adj_i = J_i(X_i)^T adj_{i+1}
            x = states[i].detach().requires_grad_(True)
            mean = augmented.pretrained_step(x, i, c).mean
            adj = torch.autograd.grad(mean, x, grad_outputs=adj)[0]
            adjoints.append(adj)
    return torch.stack(adjoints[::-1]).detach()


def adjoint_matching_loss(augmented: AugmentedModel, paths: Trajectories,
                          adjoints: torch.Tensor) -> torch.Tensor:
    """``L = mean_n sum_{i: sigma_i > 0} || a_i(X_i) - sigma_i adj_{i+1} ||^2`` (module
    docstring, step 4), plus ``|| m - adj_0 ||^2`` for a learned initial mean ``m``.

    Args:
        augmented: the mean-only augmented model that sampled ``paths``.
        paths: :func:`sample_trajectories` output, sampled with gradients enabled.
        adjoints: ``(K + 1, N, ...)`` lean adjoints from :func:`lean_adjoint`.

    Returns:
        The scalar loss (differentiable in the control's parameters).

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    loss = torch.zeros((), device=adjoints.device)
    for i, a in enumerate(paths.controls):
        sigma = float(augmented.sampler.sigmas[i])
        if sigma > 0:                                  # the noise-free last step is left alone
            loss = loss + (a - sigma * adjoints[i + 1]).flatten(1).pow(2).sum(1).mean()
    if augmented.init_mean is not None:                # Stein from N(0, I): target adj_0
        idx = pair_index(paths.c, paths.y, augmented.num_labels, augmented.num_conditions)
        loss = loss + (augmented.init_mean[idx] - adjoints[0].flatten(1)).pow(2).sum(1).mean()
    return loss


def adjoint_matching(augmented: AugmentedModel, reward_model, *, iterations: int = 400,
                     batch_size: int = 256, lr: float = 1e-3, warmup: int = 20,
                     clip_grad: float = 1.0, alpha: float = 1.0, gamma: float = 1.0,
                     seed: int = 0, progress: bool = False,
                     callback=None) -> AdjointMatchingHistory:
    """Fine-tune a mean-only control by adjoint matching (Domingo-Enrich et al. 2024, Alg. 1 in
    discrete time): per iteration, sample trajectories with the chain's graph cut
    (:func:`sample_trajectories`), compute the lean adjoint (:func:`lean_adjoint`) and take an
    Adam step on :func:`adjoint_matching_loss`.

    Args:
        augmented: a mean-only :class:`~ctrl_teach.ctrl.AugmentedModel` (``variance=False``),
            trained in place; with ``learn_initial`` only the initial mean is learned.
        reward_model: the frozen, differentiable reward.
        iterations: Adam iterations.
        batch_size: trajectories per iteration, ``(c, y)`` drawn uniformly.
        lr: peak learning rate (cosine decay after a linear warm-up).
        warmup: warm-up iterations.
        clip_grad: maximum gradient norm.
        alpha: KL weight.
        gamma: reward weight.
        seed: seeds a local generator for the labels and the noise.
        progress: show a tqdm bar.
        callback: optional ``callback(k, history) -> bool`` after iteration ``k`` (1-based);
            ``True`` stops early.

    Returns:
        An :class:`AdjointMatchingHistory`.

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    if getattr(augmented, "variance", False):
        raise ValueError("augmented must be mean-only (variance=False): adjoint matching "
                         "regresses the mean shift only")
    iterations, batch_size, lr, clip_grad, warmup, alpha, gamma, params = check_fit(
        augmented, reward_model, iterations, batch_size, lr, clip_grad, warmup, alpha, gamma)
    opt, sched = adam_with_schedule(params, lr, iterations, warmup)
    gen = make_generator(seed=seed)
    hist = AdjointMatchingHistory()

    def one_iteration(k):
        c, y = draw_labels(augmented, batch_size, gen)
        paths = sample_trajectories(augmented, c=c, y=y, generator=gen)
        adj = lean_adjoint(augmented, reward_model, paths.states, c=paths.c, y=paths.y,
                           alpha=alpha, gamma=gamma)
        loss = adjoint_matching_loss(augmented, paths, adj)
        norm = clipped_step(loss, params, opt, sched, clip_grad)
        with torch.no_grad():
            logr = reward_log_prob(reward_model, paths.states[-1], c=paths.c, y=paths.y)
        total_kl = paths.kl.sum(1) + paths.kl_init
        hist.loss.append(float(loss.detach()))
        hist.J.append(float((gamma * logr - alpha * total_kl).mean()))
        hist.log_reward.append(float(logr.mean()))
        hist.kl.append(float(total_kl.mean()))
        hist.grad_norm.append(norm)

    return train_loop(augmented, iterations, one_iteration, hist, desc="adjoint matching",
                      progress=progress, callback=callback)

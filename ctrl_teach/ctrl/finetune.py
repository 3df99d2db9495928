"""CTRL fine-tuning by back-propagation through the sampler (Chapter 5).

Objective (Chapter 3), per trajectory with ``(c, y)`` drawn uniformly::

    J = E[ gamma log p(y | x_0, c) ] - alpha E[ sum_t KL_t ],
    KL_t = control_kl(a_t, log s_t),

maximised with Adam through the reparameterised chain ``x_{t'} = mean_t + sigma_t z``.

Gradient modes:

* ``"full"``: back-propagate through every step (memory grows with the number of steps);
* ``"checkpoint"``: the same gradient, recomputing each step in the backward pass
  (``torch.utils.checkpoint``), so memory stays flat;
* ``"truncated"``: the steps before the last ``truncate_steps`` run without a graph
  (``no_grad``), so neither their memory nor their gradient is kept. Their KL is still counted
  in the reported J but not differentiated, and the reward's effect on earlier controls is
  ignored: a *biased* gradient that under-trains early steps.
* ``"random"``: the official implementation's randomised per-step truncation (inherited from
  AlignProp): at every step ``i`` a fresh ``U ~ Unif{0..K}`` is drawn and, if ``i < U``, that
  step's network outputs (the pre-trained eps, the control and its KL) are detached, so step
  ``i`` is detached with probability ``(K - i) / (K + 1)``. The state itself is never detached:
  the gradient still flows through the step's linear dependence on ``x_t``. Also biased.
* ``"hybrid"``: score-function (REINFORCE) for the first ``score_steps`` noisy steps and for a
  learned initial law, pathwise for the rest. The states of the first steps are constants;
  their controls are differentiated through ``log pi_k(x_{k+1} | x_k)`` times the reward-to-go
  ``G_k = gamma log p - alpha sum_{j > k} KL_j`` minus a leave-one-out baseline (as
  :mod:`ctrl_teach.beyond.policy_gradient`), plus the analytic KL gradient at the fixed
  state; the later steps are differentiated through the chain from the constant
  ``x_{score_steps}``. Unbiased (the law of ``x_M`` by the likelihood ratio, the expectation
  given ``x_M`` by the reparameterisation). It exists for rewards that are flat inside the
  modes the early steps choose between (a saturated classifier): there the pathwise gradient
  of the early controls is almost zero in every sample and the mode weights never move,
  while the likelihood-ratio term sees which mode each trajectory ended in.

Several processes: under ``torchrun --nproc_per_node=N`` (a default ``torch.distributed``
process group), :func:`finetune` splits each batch over the ``N`` ranks and averages their
gradients before clipping (:mod:`ctrl_teach.ctrl.distributed`); ``simulate_world_size=N`` runs
the same ``N`` shards in one process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch
from torch.utils.checkpoint import checkpoint

from .._checks import check_choice, check_nonnegative_int, check_positive_float, check_positive_int
from ..diffusion import model_device
from ..profiles import gaussian_noise, progress_bar
from ..target import check_reward, num_reward_labels, reward_log_prob
from .augmented import AugmentedModel, control_kl
from .distributed import (
    agree,
    average_gradients,
    average_values,
    broadcast_parameters,
    rank_generator,
    shard_size,
    world_info,
)

__all__ = ["Rollout", "FinetuneHistory", "rollout", "finetune", "sample", "draw_labels",
           "leave_one_out_baseline", "rewards_to_go"]


@dataclass
class Rollout:
    """One batch of fine-tuned trajectories (what :func:`rollout` returns).

    Attributes:
        x0: ``(N, ...)`` final states.
        log_reward: ``(N,)`` ``log p(y | x_0, c)``.
        kl: ``(N, K)`` per-step KL (the last, uncontrolled step has KL 0).
        J: ``(N,)`` per-trajectory objective ``gamma log p - alpha (sum_t KL_t + KL_init)``.
        kl_init: ``(N,)`` the initial-law KL (0 unless the model learns its initial law).
        surrogate: ``(N,)`` what fine-tuning differentiates when it is not ``J`` itself
            (``gradient="hybrid"``: the mean's gradient is the estimator of ``grad E[J]``; its
            value is not ``J``), else ``None``.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    x0: torch.Tensor
    log_reward: torch.Tensor
    kl: torch.Tensor
    J: torch.Tensor
    kl_init: torch.Tensor
    surrogate: torch.Tensor | None = None

    @property
    def objective(self) -> torch.Tensor:
        """The per-trajectory quantity whose batch mean fine-tuning maximises."""
        return self.J if self.surrogate is None else self.surrogate


@dataclass
class FinetuneHistory:
    """Per-iteration records of :func:`finetune` (batch means) and its wall time.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    J: list = field(default_factory=list)
    log_reward: list = field(default_factory=list)
    kl: list = field(default_factory=list)
    kl_per_step: list = field(default_factory=list)
    kl_init: list = field(default_factory=list)
    grad_norm: list = field(default_factory=list)
    wall_time: float = 0.0

    def extend(self, other: FinetuneHistory) -> FinetuneHistory:
        """This history followed by ``other`` (a second phase of fine-tuning)."""
        merged = FinetuneHistory(wall_time=self.wall_time + other.wall_time)
        for name in ("J", "log_reward", "kl", "kl_per_step", "kl_init", "grad_norm"):
            setattr(merged, name, getattr(self, name) + getattr(other, name))
        return merged


def draw_labels(augmented: AugmentedModel, n: int, generator=None):
    """Uniform ``(c, y)`` per trajectory: ``c (n,)`` (None if unconditional), ``y (n,)``.

    Args:
        augmented: the augmented model (its ``num_labels`` and ``num_conditions``).
        n: the batch size.
        generator: a ``torch.Generator``.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    y = torch.randint(augmented.num_labels, (n,), generator=generator)
    c = (torch.randint(augmented.num_conditions, (n,), generator=generator)
         if augmented.num_conditions else None)
    return c, y


GRADIENT_MODES = ("full", "checkpoint", "truncated", "random", "hybrid")


def leave_one_out_baseline(G: torch.Tensor) -> torch.Tensor:
    """``b_n = mean_{m != n} G_m`` per column of ``G`` ``(N, ...)``: a score-function
    baseline that does not depend on trajectory ``n``'s own actions (so it keeps the
    estimator unbiased); the batch mean for ``N = 1``."""
    n = G.shape[0]
    total = G.sum(0, keepdim=True)
    return (total / n).expand_as(G) if n == 1 else (total - G) / (n - 1)


def rewards_to_go(log_reward: torch.Tensor, kl: torch.Tensor, *, alpha: float,
                  gamma: float) -> torch.Tensor:
    """``G`` ``(N, K + 1)`` of a score-function gradient: column 0 after the initial draw,
    ``gamma log p - alpha sum_j KL_j``; column ``k + 1`` after step ``k``'s action,
    ``G_k = gamma log p - alpha sum_{j > k} KL_j`` (step ``k``'s own KL does not depend on
    its action). Inputs ``log_reward (N,)`` and ``kl (N, K)`` are detached first."""
    kl = kl.detach()
    later = torch.cat([kl.flip(1).cumsum(1).flip(1), torch.zeros_like(kl[:, :1])], 1)
    return gamma * log_reward.detach()[:, None] - alpha * later


def check_fit(augmented, reward_model, iterations, batch_size, lr, clip_grad, warmup, alpha,
              gamma):
    """The argument checks of a fine-tuning loop (this module's and :mod:`ctrl_teach.beyond`'s);
    returns the checked values and the trainable parameters (the reward is frozen)."""
    if not isinstance(augmented, AugmentedModel):
        raise ValueError(f"augmented must be an AugmentedModel, got {type(augmented).__name__}")
    checked = (check_positive_int("iterations", iterations),
               check_positive_int("batch_size", batch_size), check_positive_float("lr", lr),
               check_positive_float("clip_grad", clip_grad),
               check_nonnegative_int("warmup", warmup), check_positive_float("alpha", alpha),
               check_positive_float("gamma", gamma))
    if num_reward_labels(reward_model) != augmented.num_labels:
        raise ValueError(f"reward_model has {num_reward_labels(reward_model)} labels but the "
                         f"augmented model has num_labels={augmented.num_labels}")
    check_reward(reward_model, augmented.data_shape)
    reward_model.requires_grad_(False)
    params = augmented.trainable_parameters()
    if not params:
        raise ValueError("augmented has no trainable parameters")
    return (*checked, params)


def _detach_network_part(sampler, step, a, x_t, i):
    """Step ``i`` with its network outputs detached but its linear dependence on ``x_t`` kept:
    ``mean = A_i x_t + B_i eps + sigma a`` becomes ``A_i x_t + stopgrad(B_i eps + sigma a)``."""
    linear = sampler.step_from_eps(x_t, torch.zeros_like(x_t), i).mean   # A_i x_t
    log_scale = None if step.log_scale is None else step.log_scale.detach()
    mean = linear + (step.mean - linear).detach()
    return replace(step, mean=mean, log_scale=log_scale), a.detach()


def rollout(augmented: AugmentedModel, reward_model, *, c=None, y, generator=None,
            alpha: float = 1.0, gamma: float = 1.0, gradient: str = "full",
            truncate_steps: int = 10, score_steps: int | None = None, x_T=None) -> Rollout:
    """Run the fine-tuned chain with the graph kept and score it (the book's eq.
    ``eq-ctrl-objective``): ``J = gamma log p(y | x_0, c) - alpha (sum_t KL_t + KL_init)``.

    Args:
        augmented: an :class:`AugmentedModel`.
        reward_model: the reward (see :mod:`ctrl_teach.target`).
        c: ``None``, an int or ``(N,)`` conditions.
        y: ``(N,)`` labels; ``N`` is the batch size.
        generator: a ``torch.Generator`` for ``x_T`` and the step noise.
        alpha: KL weight.
        gamma: reward weight.
        gradient: ``"full"``, ``"checkpoint"``, ``"truncated"``, ``"random"`` or ``"hybrid"``
            (see the module docstring).
        truncate_steps: with ``"truncated"``, the number of final steps differentiated.
        score_steps: with ``"hybrid"``, the first steps differentiated by the score function
            (default: half of the steps, ``K // 2``).
        x_T: optional start state (not with ``"hybrid"``).

    Returns:
        A :class:`Rollout` (differentiable unless called under ``no_grad``).

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    alpha = check_positive_float("alpha", alpha)
    gamma = check_positive_float("gamma", gamma)
    check_choice("gradient", gradient, GRADIENT_MODES)
    truncate_steps = check_positive_int("truncate_steps", truncate_steps)
    if gradient == "random" and augmented.sampler.clip_x0 is not None:
        raise ValueError("gradient='random' needs a sampler without clip_x0 (its step must be "
                         "affine in eps to detach the network part alone)")
    if not isinstance(y, torch.Tensor) or y.ndim != 1:
        raise ValueError("y must be a long tensor of shape (N,)")
    K = augmented.sampler.num_steps
    if gradient == "hybrid":
        score_steps = K // 2 if score_steps is None else check_positive_int("score_steps",
                                                                            score_steps)
        if x_T is not None:
            raise ValueError("x_T must be None with gradient='hybrid' (the initial law's "
                             "density is part of the estimator)")
        return _hybrid_rollout(augmented, reward_model, c, y, generator, alpha, gamma,
                               min(score_steps, K))
    n = y.shape[0]
    device = model_device(augmented.network)
    c, y = augmented.prepare_labels(c, y, n, device)
    shape = (n, *augmented.data_shape)
    x = gaussian_noise(shape, generator, device) if x_T is None else x_T.to(device)
    x, kl_init = augmented.initial_state(x, c, y)
    if gradient == "random":   # U_i ~ Unif{0..K} per step; detach step i's outputs if i < U_i
        detached = torch.arange(K) < torch.randint(0, K + 1, (K,), generator=generator)

    def step_fn(x_t, i):
        step, a = augmented.step(x_t, i, c, y)
        if gradient == "random" and detached[i]:
            step, a = _detach_network_part(augmented.sampler, step, a, x_t, i)
        return step, control_kl(a, step.log_scale)   # KL_t = sum (s^2 + a^2 - 1)/2 - log s

    def wrap(i, one_step, x_t):
        if gradient == "truncated" and i < K - truncate_steps:
            with torch.no_grad():             # before the cut: no graph, so no memory for it
                return one_step(x_t)
        if gradient == "checkpoint" and torch.is_grad_enabled():
            return checkpoint(one_step, x_t, use_reentrant=False)
        return one_step(x_t)

    out = augmented.sampler.run_chain(step_fn, x, generator=generator, wrap=wrap)
    kl = torch.stack(out.extras, dim=1)
    logr = reward_log_prob(reward_model, out.x, c=c, y=y)
    return Rollout(out.x, logr, kl, gamma * logr - alpha * (kl.sum(1) + kl_init), kl_init)


def _hybrid_rollout(augmented, reward_model, c, y, generator, alpha, gamma, score_steps):
    """``gradient="hybrid"`` (module docstring): score-function for the initial law and the
    first ``score_steps`` noisy steps, pathwise after them."""
    n = y.shape[0]
    device = model_device(augmented.network)
    c, y = augmented.prepare_labels(c, y, n, device)
    z = gaussian_noise((n, *augmented.data_shape), generator, device)
    x, kl_init = augmented.initial_state(z, c, y)
    # log nu_theta(x_T) at the drawn x_T (0 for the fixed start N(0, I): nothing to learn)
    log_init = (augmented.initial_log_prob(x.detach(), c, y) if augmented.init_mean is not None
                else torch.zeros(n, device=device))
    x = x.detach()

    def step_fn(x_t, i):
        step, a = augmented.step(x_t, i, c, y)
        return step, (control_kl(a, step.log_scale), step)

    def wrap(i, one_step, x_t):
        if i >= score_steps:
            x_next, (kl, step) = one_step(x_t)
            return x_next, (kl, None)
        x_next, (kl, step) = one_step(x_t.detach())    # a constant state: no pathwise graph
        x_next = x_next.detach()
        log_pi = step.log_prob(x_next) if step.std > 0 else torch.zeros(n, device=device)
        return x_next, (kl, log_pi)

    out = augmented.sampler.run_chain(step_fn, x, generator=generator, wrap=wrap)
    kl = torch.stack([e[0] for e in out.extras], dim=1)
    logr = reward_log_prob(reward_model, out.x, c=c, y=y)
    # differentiable through the pathwise part (the reward and the KL after x_M) and the
    # analytic KL of the score-function steps at their fixed states
    J = gamma * logr - alpha * (kl.sum(1) + kl_init)
    log_pi = torch.stack([log_init] + [e[1] for e in out.extras[:score_steps]], dim=1)
    G = rewards_to_go(logr, kl, alpha=alpha, gamma=gamma)[:, :score_steps + 1]
    surrogate = J + (log_pi * (G - leave_one_out_baseline(G))).sum(1)
    return Rollout(out.x, logr, kl, J, kl_init, surrogate=surrogate)


def finetune(augmented: AugmentedModel, reward_model, *, iterations: int = 400,
             batch_size: int = 256, lr: float = 1e-3, warmup: int = 20,
             clip_grad: float = 1.0, alpha: float = 1.0, gamma: float = 1.0,
             gradient: str = "full", truncate_steps: int = 10,
             score_steps: int | None = None, seed: int = 0,
             lr_decay: float = 0.1, progress: bool = False, callback=None,
             simulate_world_size: int | None = None) -> FinetuneHistory:
    """Maximise ``J`` (eq. ``eq-ctrl-objective``) over the augmented model's trainable
    parameters with Adam, back-propagating through the sampler (CTRL, Zhao et al. 2025,
    Alg. 1 with the reparameterised chain).

    Several processes (data parallel, :mod:`ctrl_teach.ctrl.distributed`): when a default
    ``torch.distributed`` process group of ``N > 1`` ranks is initialised (``torchrun
    --nproc_per_node=N``), each rank draws ``batch_size // N`` labels and trajectories from its
    own generator ``rank_generator(seed, rank)``, the gradients of the trainable parameters are
    averaged over the ranks (one all-reduce) before the global gradient is clipped, the
    history holds the means over all ranks (so rank 0 reports the global J, log reward and KL),
    and only rank 0 shows the progress bar. The trainable parameters are broadcast from rank 0
    at the start; the frozen network must be the same on every rank. Without a process group
    (or with one rank) the loop is the single-process one, seeded with ``seed``.

    Args:
        augmented: the augmented model, trained in place.
        reward_model: the frozen reward (``(N, K)`` log-probabilities).
        iterations: Adam iterations (the training budget).
        batch_size: trajectories per iteration, ``(c, y)`` drawn uniformly.
        lr: peak learning rate.
        warmup: linear learning-rate warm-up iterations.
        clip_grad: maximum gradient norm.
        alpha: KL weight.
        gamma: reward weight.
        gradient: ``"full"``, ``"checkpoint"``, ``"truncated"``, ``"random"`` or
            ``"hybrid"`` (module docstring).
        truncate_steps: differentiated final steps with ``"truncated"``.
        score_steps: with ``"hybrid"``, the first steps differentiated by the score function.
        seed: seeds a local generator for the labels and the noise.
        lr_decay: final learning rate as a fraction of ``lr`` (linear decay after warm-up).
        progress: show a tqdm bar.
        callback: optional ``callback(k, history) -> bool`` called after iteration ``k``
            (1-based); returning ``True`` stops fine-tuning early (e.g. when a certificate
            has stopped improving, see :func:`~ctrl_teach.ctrl.condition_pretrained`).
            Under ``torch.distributed`` it runs on every rank with the global history, and
            rank 0's answer is the one all ranks follow.
        simulate_world_size: ``None`` (the default) or ``N``: run in this one process what
            ``N`` ranks compute together (``N`` shards of ``batch_size // N`` trajectories, shard
            ``r`` drawn from ``rank_generator(seed, r)`` and back-propagated in turn, gradients
            and history averaged over the shards). This reproduces an ``N``-process run exactly
            (the equivalence test), or trades time for memory as gradient accumulation.
            ``N = 1`` is the single-process loop. Not allowed under a process group.

    Returns:
        A :class:`FinetuneHistory` (J, E log p, KL, KL per step, grad norms, time).

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    iterations, batch_size, lr, clip_grad, warmup, alpha, gamma, params = check_fit(
        augmented, reward_model, iterations, batch_size, lr, clip_grad, warmup, alpha, gamma)
    opt = torch.optim.Adam(params, lr=lr)
    lr_decay = check_positive_float("lr_decay", lr_decay)
    rank, world_size = world_info()
    if simulate_world_size is not None:
        simulate_world_size = check_positive_int("simulate_world_size", simulate_world_size)
        if world_size > 1:
            raise ValueError("simulate_world_size must be None under torch.distributed (each "
                             f"process is one of the {world_size} ranks)")
    shards = world_size if world_size > 1 else (simulate_world_size or 1)
    if shards > 1:   # data parallel: one generator per rank (this rank's, or all simulated)
        n_shard = shard_size(batch_size, shards)
        gens = ([rank_generator(seed, rank)] if world_size > 1
                else [rank_generator(seed, r) for r in range(shards)])
        broadcast_parameters(params)
        device = model_device(augmented.network)

    def factor(k):
        return min(1.0, (k + 1) / (warmup + 1)) * (1 - (1 - lr_decay) * k / iterations)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    gen = torch.Generator().manual_seed(seed)
    hist = FinetuneHistory()
    it = progress_bar(range(iterations), desc="CTRL fine-tuning", enabled=progress and rank == 0)
    start = time.perf_counter()
    augmented.train()
    for k in it:
        if shards > 1:   # data parallel (torch.distributed ranks, or simulated in turn)
            _sharded_iteration(hist, augmented, reward_model, opt, sched, params, gens, n_shard,
                               clip_grad, world_size, dict(alpha=alpha, gamma=gamma,
                               gradient=gradient, truncate_steps=truncate_steps,
                               score_steps=score_steps))
        else:
            c, y = draw_labels(augmented, batch_size, gen)
            out = rollout(augmented, reward_model, c=c, y=y, generator=gen, alpha=alpha,
                          gamma=gamma, gradient=gradient, truncate_steps=truncate_steps,
                          score_steps=score_steps)
            loss = -out.objective.mean()
            opt.zero_grad()
            if loss.requires_grad:   # "random" can detach every step: then nothing to learn
                loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(params, clip_grad)
            opt.step()
            sched.step()
            kl_steps = out.kl.detach().mean(0)
            hist.J.append(float(out.J.detach().mean()))
            hist.log_reward.append(float(out.log_reward.detach().mean()))
            hist.kl.append(float(kl_steps.sum()))
            hist.kl_per_step.append(kl_steps.cpu().tolist())
            hist.kl_init.append(float(out.kl_init.detach().mean()))
            hist.grad_norm.append(float(norm))
        it.set_postfix(J=f"{hist.J[-1]:.3f}", KL=f"{hist.kl[-1]:.3f}", refresh=False)
        if callback is not None:
            augmented.eval()
            stop = callback(k + 1, hist)
            augmented.train()
            if agree(stop, device) if world_size > 1 else stop:   # all ranks follow rank 0
                break
    augmented.eval()
    hist.wall_time = time.perf_counter() - start
    return hist


def _sharded_iteration(hist, augmented, reward_model, opt, sched, params, gens, n_shard,
                       clip_grad, world_size, rollout_kwargs):
    """One data-parallel iteration: each shard (this rank's, or every simulated rank in turn)
    back-propagates its mean J; the gradients are averaged over the shards (all-reduced across
    processes), the global gradient is clipped, Adam steps and the shard-averaged history is
    recorded. The sum over shards is taken in the same order in both cases, so a simulated run
    equals the multi-process one."""
    opt.zero_grad()
    rows = []
    for gen in gens:
        c, y = draw_labels(augmented, n_shard, gen)
        out = rollout(augmented, reward_model, c=c, y=y, generator=gen, **rollout_kwargs)
        if out.objective.requires_grad:   # "random" can detach every step of a shard
            (-out.objective.mean()).backward()
        rows.append(torch.cat([out.J.detach().mean().reshape(1),
                               out.log_reward.detach().mean().reshape(1),
                               out.kl_init.detach().mean().reshape(1), out.kl.detach().mean(0)]))
    if world_size > 1:
        average_gradients(params, world_size)
        summary = average_values(rows[0], world_size)
    else:
        for p in params:
            if p.grad is not None:
                p.grad.div_(len(gens))
        summary = rows[0]
        for row in rows[1:]:
            summary = summary + row
        summary = summary / len(gens)
    norm = torch.nn.utils.clip_grad_norm_(params, clip_grad)
    opt.step()
    sched.step()
    kl_steps = summary[3:].clone()
    hist.J.append(float(summary[0]))
    hist.log_reward.append(float(summary[1]))
    hist.kl.append(float(kl_steps.sum()))
    hist.kl_per_step.append(kl_steps.cpu().tolist())
    hist.kl_init.append(float(summary[2]))
    hist.grad_norm.append(float(norm))


def sample(augmented: AugmentedModel, n: int, *, c=None, y, generator=None,
           x_T=None) -> torch.Tensor:
    """Draw ``n`` samples of the fine-tuned model ``p_theta(x | c, y)``.

    Uses the same noise stream as ``DiffusionSampler.sample`` (``x_T`` first, then one draw
    per noisy step), so at initialisation it reproduces the pre-trained samples exactly.

    Args:
        augmented: the (fine-tuned) augmented model.
        n: number of samples.
        c: ``None``, an int or ``(n,)`` conditions.
        y: an int or ``(n,)`` labels (required: there is no default label).
        generator: a ``torch.Generator`` for the noise.
        x_T: optional start state ``(n, *data_shape)``.

    Returns:
        ``(n, *data_shape)`` samples.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    n = check_positive_int("n", n)
    device = model_device(augmented.network)
    c, y = augmented.prepare_labels(c, y, n, device)
    shape = (n, *augmented.data_shape)
    x = gaussian_noise(shape, generator, device) if x_T is None else x_T.to(device)
    with torch.no_grad():
        x, _ = augmented.initial_state(x, c, y)
        out = augmented.sampler.run_chain(lambda x_t, i: augmented.step(x_t, i, c, y), x,
                                          generator=generator)
    return out.x

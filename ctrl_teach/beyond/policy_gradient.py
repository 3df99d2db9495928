"""Score-function policy gradient over the denoising MDP, with the KL penalty (DDPO / DPOK).

The same objective and the same policy as CTRL (:mod:`ctrl_teach.ctrl.finetune`): the
fine-tuned step ``pi_k(x_{k+1} | x_k) = N(mean_pre + sigma_k a, sigma_k^2 s^2)`` of an
:class:`~ctrl_teach.ctrl.AugmentedModel` and, per trajectory,

    J = E[ gamma log p(y | x_0, c) - alpha sum_k KL_k(x_k) ],
    KL_k(x_k) = KL(pi_k(. | x_k) || p_pre(. | x_k)) = control_kl(a_k, log s_k).

CTRL differentiates the reparameterised chain (the reward's gradient flows through every
state). Here the sampled states are constants (each step starts from a detached state, so no
graph runs along the chain and the reward is never differentiated) and only the policy's
densities at the taken steps are differentiated (REINFORCE, Williams 1992; DDPO-SF, Black
et al. 2023; the KL-regularised variant of DPOK, Fan et al. 2023). Writing ``KL_k`` as a
per-step reward that depends on the state ``x_k`` (reached by the earlier actions) and on
``theta`` directly, the policy gradient theorem gives the unbiased estimator

    grad J = E[ sum_k grad log pi_k(x_{k+1} | x_k) (G_k - b_k) - alpha sum_k grad KL_k(x_k) ],
    G_k = gamma log p(y | x_0, c) - alpha sum_{j > k} KL_j(x_j),

with the states held fixed in the second sum (the analytic gradient of the exact Gaussian KL,
as DPOK) and the reward-to-go ``G_k`` (the KL of step ``k`` does not depend on the action
taken at step ``k``, so it leaves ``G_k``). The baseline ``b_k`` must not depend on
trajectory ``n``'s own action: ``"leave_one_out"`` (default) uses the mean of ``G_k`` over
the other trajectories of the batch, which keeps the estimator unbiased; ``"mean"`` uses the
batch mean (an ``O(1/N)`` bias); ``"none"`` uses 0. Log-densities are summed over
coordinates (DDPO's code averages them, which rescales the step; see related-methods 5.3).
"""

from __future__ import annotations

import torch

from .._checks import check_choice, check_positive_float
from ..ctrl.augmented import AugmentedModel, control_kl
from ..ctrl.finetune import (
    FinetuneHistory,
    draw_labels,
    leave_one_out_baseline,
    rewards_to_go,
)
from ..diffusion import model_device
from ..profiles import gaussian_noise
from ..target import reward_log_prob
from ._loop import adam_with_schedule, check_fit, clipped_step, train_loop

__all__ = ["BASELINES", "policy_gradient_surrogate", "finetune_policy_gradient"]

BASELINES = ("leave_one_out", "mean", "none")


def _baseline(G: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-step baseline ``b_k`` of shape ``G`` ``(N, K)`` (see the module docstring)."""
    if kind == "none":
        return torch.zeros_like(G)
    if kind == "mean":
        return G.mean(0, keepdim=True).expand_as(G)
    return leave_one_out_baseline(G)


def policy_gradient_surrogate(augmented: AugmentedModel, reward_model, *, c=None, y,
                              generator=None, alpha: float = 1.0, gamma: float = 1.0,
                              baseline: str = "leave_one_out"):
    """Sample ``N`` trajectories (detached states) and build the surrogate whose gradient is
    the score-function estimator of ``grad J`` (module docstring)::

        L = mean_n sum_k [ log pi_k(x_{k+1} | x_k) stopgrad(G_k - b_k) - alpha KL_k(x_k) ].

    Args:
        augmented: the :class:`~ctrl_teach.ctrl.AugmentedModel` (its initial law must be fixed).
        reward_model: the reward (see :mod:`ctrl_teach.target`).
        c: ``None``, an int or ``(N,)`` conditions.
        y: ``(N,)`` labels; ``N`` is the batch size.
        generator: a ``torch.Generator`` for ``x_T`` and the step noise.
        alpha: KL weight.
        gamma: reward weight.
        baseline: ``"leave_one_out"``, ``"mean"`` or ``"none"``.

    Returns:
        ``(surrogate, J, log_reward, kl)``: the differentiable scalar ``L`` to maximise, the
        per-trajectory ``J`` ``(N,)``, ``log p(y | x_0, c)`` ``(N,)`` and the per-step KL
        ``(N, K)`` (all but ``L`` detached).

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    alpha, gamma = check_positive_float("alpha", alpha), check_positive_float("gamma", gamma)
    check_choice("baseline", baseline, BASELINES)
    if augmented.init_mean is not None:
        raise ValueError("augmented must keep the fixed start x_T ~ N(0, I) (learn_initial="
                         "False): the policy gradient here only covers the transitions")
    if not isinstance(y, torch.Tensor) or y.ndim != 1:
        raise ValueError("y must be a long tensor of shape (N,)")
    n, device = y.shape[0], model_device(augmented.network)
    c, y = augmented.prepare_labels(c, y, n, device)
    x_T = gaussian_noise((n, *augmented.data_shape), generator, device)

    def step_fn(x_t, i):
        step, a = augmented.step(x_t, i, c, y)
        return step, (step, control_kl(a, step.log_scale))

    def wrap(i, one_step, x_t):   # the states carry no graph: each step starts from a leaf
        x_next, (step, kl) = one_step(x_t.detach())
        x_next = x_next.detach()
        if step.std == 0:         # the noise-free last step: no action, no density
            return x_next, (torch.zeros(n, device=device), kl)
        return x_next, (step.log_prob(x_next), kl)

    out = augmented.sampler.run_chain(step_fn, x_T, generator=generator, wrap=wrap)
    with torch.no_grad():
        log_reward = reward_log_prob(reward_model, out.x, c=c, y=y)
    log_pi, kl = zip(*out.extras)
    log_pi, kl = torch.stack(log_pi, 1), torch.stack(kl, 1)
    kl_d = kl.detach()
    G = rewards_to_go(log_reward, kl_d, alpha=alpha, gamma=gamma)[:, 1:]   # after step k
    adv = G - _baseline(G, baseline)
    surrogate = (log_pi * adv).sum(1).mean() - alpha * kl.sum(1).mean()
    J = gamma * log_reward - alpha * kl_d.sum(1)
    return surrogate, J, log_reward, kl_d


def finetune_policy_gradient(augmented: AugmentedModel, reward_model, *, iterations: int = 1000,
                             batch_size: int = 512, lr: float = 1e-3, warmup: int = 20,
                             clip_grad: float = 10.0, alpha: float = 1.0, gamma: float = 1.0,
                             seed: int = 0, baseline: str = "leave_one_out",
                             progress: bool = False, callback=None) -> FinetuneHistory:
    """Maximise ``J`` with Adam on the score-function estimator (module docstring; DDPO-SF /
    DPOK's KL-regularised policy gradient, one on-policy update per batch).

    Args:
        augmented: the augmented model, trained in place (fixed start, no learned initial law).
        reward_model: the frozen reward.
        iterations: Adam iterations (one fresh batch each).
        batch_size: trajectories per iteration, ``(c, y)`` drawn uniformly.
        lr: peak learning rate (linear warm-up, then cosine decay, ``_optim.cosine_lr_factor``).
        warmup: warm-up iterations.
        clip_grad: maximum gradient norm.
        alpha: KL weight.
        gamma: reward weight.
        seed: seeds a local generator for the labels and the noise.
        baseline: ``"leave_one_out"``, ``"mean"`` or ``"none"``.
        progress: show a tqdm bar.
        callback: optional ``callback(k, history) -> bool`` after iteration ``k`` (1-based);
            ``True`` stops early.

    Returns:
        A :class:`~ctrl_teach.ctrl.FinetuneHistory` (``kl_init`` is 0: the start is fixed).

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    iterations, batch_size, lr, clip_grad, warmup, alpha, gamma, params = check_fit(
        augmented, reward_model, iterations, batch_size, lr, clip_grad, warmup, alpha, gamma)
    check_choice("baseline", baseline, BASELINES)
    opt, sched = adam_with_schedule(params, lr, iterations, warmup)
    gen = torch.Generator().manual_seed(seed)
    hist = FinetuneHistory()

    def one_iteration(k):
        c, y = draw_labels(augmented, batch_size, gen)
        surrogate, J, logr, kl = policy_gradient_surrogate(
            augmented, reward_model, c=c, y=y, generator=gen, alpha=alpha, gamma=gamma,
            baseline=baseline)
        norm = clipped_step(-surrogate, params, opt, sched, clip_grad)
        kl_steps = kl.mean(0)
        hist.J.append(float(J.mean()))
        hist.log_reward.append(float(logr.mean()))
        hist.kl.append(float(kl_steps.sum()))
        hist.kl_per_step.append(kl_steps.cpu().tolist())
        hist.kl_init.append(0.0)
        hist.grad_norm.append(norm)

    return train_loop(augmented, iterations, one_iteration, hist, desc="policy gradient",
                      progress=progress, callback=callback)

"""DRaFT-K: reward back-propagation through the last steps, with no KL (Clark et al. 2023).

DRaFT (Direct Reward Fine-Tuning) maximises the reward of the sampler's output alone,

    J_DRaFT = E[ gamma log p(y | x_0, c) ],

by back-propagating it through the reparameterised chain. DRaFT-K keeps the graph only for the
last ``K`` sampling steps (the earlier ones run without a graph), which is cheap and, the
paper reports, works with ``K = 1``. There is no KL to the pre-trained model, so nothing ties
the fine-tuned law to ``p_pre``: the optimum is a point mass on the reward's maximum, and the
samples move *past* the tilted target ``p_pre p(y | x)^(gamma / alpha) / Z`` that CTRL reaches
(reward over-optimisation, "reward hacking"). The chapter uses it as that counterpoint.

The chain is CTRL's differentiable rollout (:func:`~ctrl_teach.ctrl.rollout` with
``gradient="truncated"``); only the loss differs: the rollout's KL is reported, not penalised.
In this library the last chain step is noise-free and never controlled, so DRaFT-1 (one
controlled step differentiated) is ``truncate_steps=2``.
"""

from __future__ import annotations

import torch

from .._checks import check_positive_int
from ..ctrl.augmented import AugmentedModel
from ..ctrl.finetune import FinetuneHistory, draw_labels, rollout
from ._loop import adam_with_schedule, check_fit, clipped_step, train_loop

__all__ = ["finetune_draft"]


def finetune_draft(augmented: AugmentedModel, reward_model, *, iterations: int = 200,
                   batch_size: int = 256, lr: float = 1e-3, warmup: int = 20,
                   clip_grad: float = 1.0, gamma: float = 1.0, truncate_steps: int = 2,
                   seed: int = 0, progress: bool = False, callback=None) -> FinetuneHistory:
    """DRaFT-K (Clark et al. 2023, Alg. 1 with truncation): maximise ``E[gamma log p(y | x_0,
    c)]`` with Adam, back-propagating through the last ``truncate_steps`` chain steps only and
    with **no** KL term.

    Args:
        augmented: the augmented model, trained in place.
        reward_model: the frozen reward.
        iterations: Adam iterations.
        batch_size: trajectories per iteration, ``(c, y)`` drawn uniformly.
        lr: peak learning rate (linear warm-up, then cosine decay, ``_optim.cosine_lr_factor``).
        warmup: warm-up iterations.
        clip_grad: maximum gradient norm.
        gamma: reward weight.
        truncate_steps: differentiated final chain steps (``rollout``'s meaning); they must
            include at least one noisy (controlled) step, so DRaFT-1 is 2 here and
            ``num_steps`` gives full back-propagation (DRaFT without truncation).
        seed: seeds a local generator for the labels and the noise.
        progress: show a tqdm bar.
        callback: optional ``callback(k, history) -> bool`` after iteration ``k`` (1-based);
            ``True`` stops early.

    Returns:
        A :class:`~ctrl_teach.ctrl.FinetuneHistory` whose ``J`` is the DRaFT objective
        ``gamma E log p`` and whose ``kl`` is the path KL to the pre-trained sampler, measured
        but never penalised (it grows without bound).

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    iterations, batch_size, lr, clip_grad, warmup, _, gamma, params = check_fit(
        augmented, reward_model, iterations, batch_size, lr, clip_grad, warmup, 1.0, gamma)
    truncate_steps = check_positive_int("truncate_steps", truncate_steps)
    sigmas = augmented.sampler.sigmas
    if not bool((sigmas[max(0, sigmas.numel() - truncate_steps):] > 0).any()):
        raise ValueError(f"truncate_steps={truncate_steps} differentiates no controlled step "
                         "(the last chain step is noise-free); use at least 2")
    opt, sched = adam_with_schedule(params, lr, iterations, warmup)
    gen = torch.Generator().manual_seed(seed)
    hist = FinetuneHistory()

    def one_iteration(k):
        c, y = draw_labels(augmented, batch_size, gen)
        out = rollout(augmented, reward_model, c=c, y=y, generator=gen, gamma=gamma,
                      gradient="truncated", truncate_steps=truncate_steps)
        loss = -gamma * out.log_reward.mean()            # no KL: the DRaFT objective
        norm = clipped_step(loss, params, opt, sched, clip_grad)
        kl_steps = out.kl.detach().mean(0)
        hist.J.append(float(-loss.detach()))
        hist.log_reward.append(float(out.log_reward.detach().mean()))
        hist.kl.append(float(kl_steps.sum()))
        hist.kl_per_step.append(kl_steps.cpu().tolist())
        hist.kl_init.append(float(out.kl_init.detach().mean()))
        hist.grad_norm.append(norm)

    return train_loop(augmented, iterations, one_iteration, hist, desc="DRaFT fine-tuning",
                      progress=progress, callback=callback)

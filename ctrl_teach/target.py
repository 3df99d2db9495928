"""The exact target every method aims at, and the reward contract (Chapters 2 and 4).

A pre-trained model samples ``p_pre(x | c)``; a reward classifier gives ``p(y | x, c)``. With
reward ``r = gamma log p(y | x, c)`` and KL weight ``alpha`` the target of CTRL, of guidance
and of rejection sampling is the tilted law (the book's eq. ``eq-tilted``)::

    p*(x | c, y) = p_pre(x | c) p(y | x, c)^lambda / Z,   lambda = gamma / alpha,
    Z = E_{x ~ p_pre(. | c)}[ p(y | x, c)^lambda ].

This module sits below both :mod:`ctrl_teach.baselines` and :mod:`ctrl_teach.ctrl`, which
import it and never each other:

* the reward contract, ``reward_model(x, c) -> (N, K)`` log-probabilities
  (:func:`reward_log_prob`, :func:`num_reward_labels`, :func:`check_reward`);
* exact samples of the target by rejection (:func:`rejection_sample`,
  :func:`rejection_sample_pretrained`);
* the Monte Carlo ``alpha log Z`` (:func:`log_partition`) and the mean confidence.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._checks import broadcast_labels, check_positive_float, check_positive_int
from .profiles import make_generator

__all__ = ["reward_log_prob", "num_reward_labels", "check_reward", "rejection_sample",
           "rejection_sample_pretrained", "log_partition", "mean_confidence"]


def num_reward_labels(reward_model: nn.Module):
    """Number of labels ``K`` of a reward (an int, or a tuple for a multi-task reward).

    Args:
        reward_model: a module with a ``num_labels`` attribute.

    Returns:
        ``reward_model.num_labels``.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    k = getattr(reward_model, "num_labels", None)
    if k is None:
        raise ValueError("reward_model must have a num_labels attribute (the number of labels y)")
    return k


def check_reward(reward_model: nn.Module, data_shape) -> None:
    """Raise ``ValueError`` unless ``reward_model`` reads inputs of ``data_shape``.

    Uses the reward's ``data_shape`` attribute when it has one; otherwise tries it on two zero
    inputs, so a mismatch is reported here instead of deep inside a rollout.

    Args:
        reward_model: the reward module.
        data_shape: the pre-trained model's data shape.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    want = tuple(data_shape)
    have = getattr(reward_model, "data_shape", None)
    if have is not None:
        if tuple(have) != want:
            raise ValueError(f"reward_model reads inputs of shape {tuple(have)} but the "
                             f"pre-trained model's data have shape {want}")
        return
    if hasattr(reward_model, "log_likelihood"):
        return                     # a structured reward without data_shape: nothing to probe
    try:
        device = next(iter(reward_model.parameters())).device
    except StopIteration:
        device = torch.device("cpu")
    try:
        with torch.no_grad():
            reward_model(torch.zeros(2, *want, device=device), None)
    except (RuntimeError, IndexError) as err:
        raise ValueError(f"reward_model cannot read inputs of the pre-trained model's data "
                         f"shape {want}: {err}") from None


def reward_log_prob(reward_model: nn.Module, x: torch.Tensor, *, c=None, y) -> torch.Tensor:
    """``log p(y | x, c)`` of the requested labels, shape ``(N,)``: the CTRL reward at
    ``gamma = 1`` (the book's eq. ``eq-ctrl-objective``).

    A module may instead define ``log_likelihood(x, c, y) -> (N,)`` (as
    :class:`~ctrl_teach.ctrl.MultiTaskReward` does); it is then called.

    Args:
        reward_model: ``reward_model(x, c) -> (N, K)`` log-probabilities.
        x: ``(N, *data_shape)`` inputs.
        c: ``None`` or ``(N,)`` conditions (passed to the reward, which may ignore them).
        y: an int or ``(N,)`` labels (``(N, k)`` for a multi-task reward).

    Returns:
        ``(N,)`` log-probabilities.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    n = x.shape[0]
    c = broadcast_labels("c", c, n, x.device)
    if hasattr(reward_model, "log_likelihood"):
        if isinstance(y, int) and not isinstance(y, bool):
            y = torch.full((n,), y, dtype=torch.long, device=x.device)   # one flat label
        return reward_model.log_likelihood(x, c, y)
    y = broadcast_labels("y", y, n, x.device, num_reward_labels(reward_model))
    logp = reward_model(x, c)
    if logp.ndim != 2 or logp.shape[0] != n:
        raise ValueError(f"reward_model must return (N, K) log-probabilities, got "
                         f"{tuple(logp.shape)}")
    return logp.gather(1, y[:, None]).squeeze(1)


def _log_accept(reward_model, x, c, y, power):
    with torch.no_grad():
        return power * reward_log_prob(reward_model, x, c=c, y=y)


def rejection_sample(x: torch.Tensor, reward_model, *, c=None, y, power: float = 1.0,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Accept each candidate ``x_i ~ p(x | c)`` with probability ``p(y | x_i, c)^power``.

    Exact samples of ``p(x | c, y) ∝ p(y | x, c)^power p(x | c)`` (eq. ``eq-tilted`` with
    ``power = gamma / alpha``; needs ``p <= 1``, i.e. a normalised classifier).

    Args:
        x: ``(N, ...)`` candidates drawn from ``p(x | c)``.
        reward_model: the reward (``(N, K)`` log-probabilities).
        c: ``None``, an int or ``(N,)`` conditions.
        y: an int or ``(N,)`` labels.
        power: ``lambda = gamma / alpha >= 0``.
        generator: for the uniforms of the accept step.

    Returns:
        The accepted rows ``(M, ...)``; ``M / N`` estimates ``Z``.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    power = check_positive_float("power", power, allow_zero=True)
    logp = _log_accept(reward_model, x, c, y, power)
    if (logp > 1e-6).any():
        raise ValueError("reward_model must return log-probabilities <= 0 for rejection")
    u = torch.rand(x.shape[0], generator=generator).to(x.device)
    return x[u.log() < logp]


def rejection_sample_pretrained(pretrained, reward_model, n: int, *, c=None, y,
                                power: float = 1.0, generator=None, batch: int = 4096,
                                max_rounds: int = 100) -> torch.Tensor:
    """``n`` exact samples of the tilted pre-trained model by rejection (``c``, ``y`` ints).

    Args:
        pretrained: anything with ``sample(n, c=..., generator=...)``, e.g.
            :func:`~ctrl_teach.pretrained.load_pretrained`'s result.
        reward_model: the reward.
        n: samples wanted.
        c: ``None`` (unconditional model) or an int condition.
        y: the int label.
        power: ``gamma / alpha``.
        generator: for the candidates and the accept step (default: seed 0).
        batch: candidates per round.
        max_rounds: rounds before giving up with a ``ValueError``.

    Returns:
        ``(n, *data_shape)`` samples.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    n = check_positive_int("n", n)
    generator = make_generator(generator)
    out, have = [], 0
    for _ in range(check_positive_int("max_rounds", max_rounds)):
        x = pretrained.sample(batch, c=c, generator=generator)
        acc = rejection_sample(x, reward_model, c=c, y=y, power=power, generator=generator)
        out.append(acc)
        have += acc.shape[0]
        if have >= n:
            return torch.cat(out)[:n]
    raise ValueError(f"acceptance too low: {have} of n={n} after {max_rounds} rounds")


def log_partition(x: torch.Tensor, reward_model, *, c=None, y, alpha: float = 1.0,
                  gamma: float = 1.0) -> tuple[float, float]:
    """Monte Carlo ``alpha log Z``, ``Z = E_{x ~ p_pre(. | c)}[p(y | x, c)^(gamma / alpha)]``
    (the book's eq. ``eq-log-partition``), with its delta-method standard error.

    ``log`` of a sample mean is biased low (Jensen) by about ``alpha Var(w) / (2 N Z^2)``,
    which matters for rare labels; the standard error is ``alpha sd(w) / (sqrt(N) mean(w))``.

    Args:
        x: ``(N, ...)`` pre-trained samples.
        reward_model: the reward.
        c: ``None``, an int or ``(N,)`` conditions.
        y: an int or ``(N,)`` labels.
        alpha: KL weight.
        gamma: reward weight.

    Returns:
        ``(alpha log Z_hat, standard error)``.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    alpha = check_positive_float("alpha", alpha)
    lam = check_positive_float("gamma", gamma) / alpha
    w = _log_accept(reward_model, x, c, y, lam).double().exp()
    mean = w.mean()
    se = alpha * w.std() / (math.sqrt(x.shape[0]) * mean)
    return float(alpha * mean.log()), float(se)


def mean_confidence(x: torch.Tensor, reward_model, *, c=None, y) -> float:
    """``E[p(y | x, c)]`` over samples ``x``: how strongly the reward believes in ``y``.

    Args:
        x: ``(N, ...)`` samples.
        reward_model: the reward.
        c: ``None``, an int or ``(N,)`` conditions.
        y: an int or ``(N,)`` labels.

    Returns:
        The mean probability.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    return float(_log_accept(reward_model, x, c, y, 1.0).exp().mean())

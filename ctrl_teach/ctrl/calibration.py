"""Training reward classifiers and checking their calibration (Chapter 5).

A reward ``log p(y | x, c)`` that is over-confident acts like a wrong ``gamma``: the tilted
target ``p(x | c) p(y | x, c)^gamma`` is then not the Bayes posterior. So every classifier is
trained with a held-out split, temperature-scaled on it
(:class:`~ctrl_teach.ctrl.rewards.TemperatureScaled`), and checked with a reliability curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .._checks import check_labels, check_positive_int, check_probability
from ..profiles import progress_bar
from .rewards import TemperatureScaled

__all__ = ["ClassifierFit", "RewardFit", "train_classifier", "train_calibrated_classifier",
           "expected_calibration_error", "reliability_curve"]


@dataclass
class ClassifierFit:
    """Result of :func:`train_classifier`: the model and its held-out split and scores.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    model: nn.Module
    x_val: torch.Tensor
    y_val: torch.Tensor
    c_val: torch.Tensor | None
    val_nll: float
    val_accuracy: float
    losses: list


@dataclass
class RewardFit:
    """A calibrated reward and how it was obtained (:func:`train_calibrated_classifier`).

    Attributes:
        reward: the frozen, temperature-scaled reward module (pass it to CTRL).
        fit: the :class:`ClassifierFit` of the uncalibrated classifier (held-out split).
        temperature: the fitted ``T``.
        val_nll: held-out negative log-likelihood after temperature scaling.
        val_accuracy: held-out accuracy.
        val_ece: held-out expected calibration error after temperature scaling.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    reward: TemperatureScaled
    fit: ClassifierFit
    temperature: float
    val_nll: float
    val_accuracy: float
    val_ece: float


def train_classifier(model: nn.Module, x: torch.Tensor, y, *, c=None, iterations: int = 1000,
                     batch_size: int = 256, lr: float = 1e-3, holdout: float = 0.2,
                     seed: int = 0, progress: bool = False) -> ClassifierFit:
    """Minimise the cross-entropy ``-E log p(y | x, c)`` with Adam on a random split.

    Args:
        model: a module ``model(x, c) -> (N, K)`` log-probabilities with ``num_labels``
            (trained in place).
        x: ``(N, *data_shape)`` inputs.
        y: ``(N,)`` labels in ``0..num_labels - 1``.
        c: ``None`` or ``(N,)`` conditions.
        iterations: Adam iterations (the training budget).
        batch_size: minibatch size.
        lr: learning rate.
        holdout: fraction kept out for validation / temperature fitting.
        seed: seeds a local generator for the split and the minibatches.
        progress: show a tqdm bar.

    Returns:
        :class:`ClassifierFit` with held-out NLL and accuracy (model left in eval mode).

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[0] < 2:
        raise ValueError("x must be a tensor of shape (N, ...) with N >= 2")
    n = x.shape[0]
    y = check_labels("y", y, int(model.num_labels), batch=n)
    if c is not None:
        c = check_labels("c", c, getattr(model, "num_conditions", 0) + 1, batch=n)
    holdout = check_probability("holdout", holdout)
    steps = check_positive_int("iterations", iterations)
    batch_size = check_positive_int("batch_size", batch_size)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    n_val = max(1, int(round(holdout * n)))
    val, tr = perm[:n_val], perm[n_val:]
    if tr.numel() == 0:
        raise ValueError("holdout leaves no training data")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    it = progress_bar(range(steps), desc="classifier", enabled=progress)
    losses = []
    model.train()
    for _ in it:
        idx = tr[torch.randint(tr.numel(), (min(batch_size, tr.numel()),), generator=gen)]
        loss = nn.functional.nll_loss(model(x[idx], None if c is None else c[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    cv = None if c is None else c[val]
    with torch.no_grad():
        logp = model(x[val], cv)
    nll = float(nn.functional.nll_loss(logp, y[val]))
    acc = float((logp.argmax(1) == y[val]).float().mean())
    return ClassifierFit(model, x[val], y[val], cv, nll, acc, losses)


def train_calibrated_classifier(model: nn.Module, x: torch.Tensor, y, *, c=None,
                                iterations: int = 1000, batch_size: int = 256, lr: float = 1e-3,
                                holdout: float = 0.2, seed: int = 0,
                                progress: bool = False) -> RewardFit:
    """Train a classifier, then temperature-scale it on its held-out split (Guo et al. 2017).

    The one "fit, then calibrate" recipe of the library: :func:`train_classifier` followed by
    :meth:`~ctrl_teach.ctrl.TemperatureScaled.fit` on the held-out ``holdout`` fraction.

    Args:
        model: a fresh classifier ``model(x, c) -> (N, K)`` with ``num_labels``.
        x: ``(N, *data_shape)`` inputs.
        y: ``(N,)`` labels.
        c: ``None`` or ``(N,)`` conditions.
        iterations: Adam iterations.
        batch_size: minibatch size.
        lr: learning rate.
        holdout: held-out fraction (validation and temperature).
        seed: seeds the split and the minibatches.
        progress: show a tqdm bar.

    Returns:
        A :class:`RewardFit`; ``.reward`` is the frozen calibrated reward.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    fit = train_classifier(model, x, y, c=c, iterations=iterations, batch_size=batch_size,
                           lr=lr, holdout=holdout, seed=seed, progress=progress)
    reward = TemperatureScaled.fit(fit.model, fit.x_val, fit.y_val, c=fit.c_val)
    with torch.no_grad():
        logp = reward(fit.x_val, fit.c_val)
    nll = float(nn.functional.nll_loss(logp, fit.y_val))
    ece = expected_calibration_error(logp.exp(), fit.y_val)
    return RewardFit(reward, fit, reward.temperature, nll, fit.val_accuracy, ece)


def _confidences(probs, labels):
    probs = np.asarray(probs.detach().cpu() if isinstance(probs, torch.Tensor) else probs)
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise ValueError(f"probs must be (N, K) and labels (N,), got {probs.shape} and "
                         f"{labels.shape}")
    pred = probs.argmax(1)
    return probs.max(1), (pred == labels).astype(float)


def reliability_curve(probs, labels, n_bins: int = 10):
    """Top-label reliability curve: (mean confidence, accuracy) per confidence bin.

    Args:
        probs: ``(N, K)`` predicted probabilities.
        labels: ``(N,)`` true labels.
        n_bins: equal-width confidence bins.
    Returns:
        ``(accuracy, confidence)`` numpy arrays over non-empty bins
        (``sklearn.calibration.calibration_curve`` on correctness vs confidence).

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    from sklearn.calibration import calibration_curve

    conf, correct = _confidences(probs, labels)
    return calibration_curve(correct, conf, n_bins=check_positive_int("n_bins", n_bins),
                             strategy="uniform")


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """``ECE = sum_b (n_b / N) |acc_b - conf_b|`` over equal-width confidence bins (Guo 2017).

    Args:
        probs: ``(N, K)`` predicted probabilities.
        labels: ``(N,)`` true labels.
        n_bins: equal-width confidence bins.

    Returns:
        The ECE as a float in [0, 1].

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    conf, correct = _confidences(probs, labels)
    edges = np.linspace(0.0, 1.0, check_positive_int("n_bins", n_bins) + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)

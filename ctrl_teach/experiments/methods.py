"""Fit CTRL and the baselines on one labelled dataset, and sample from each (Chapter 8).

Every method sees the same offline labelled data ``(x, c, y)``:

* ``ctrl``: a calibrated clean classifier ``p(y | x)`` (train + temperature scaling on a 20 %
  hold-out), then CTRL fine-tuning of a :class:`~ctrl_teach.ctrl.HeadAugmentedModel`
  (reward ``gamma log p(y | x_0)``, ``alpha = 1``);
* ``dps``: the *same* clean classifier through Tweedie's ``x0_hat`` (no training);
* ``rejection``: the same clean classifier as acceptance probability on pre-trained samples
  (CTRL's exact optimum given the classifier, at a large sampling cost);
* ``cg``: a noise-conditioned classifier trained on noised copies of ``(x, y)``;
* ``cfg``: a ``y``-conditioned copy of the pre-trained network trained on ``(x, c, y)`` with
  label dropout (CFG is the only method that needs ``c`` for each labelled point).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..baselines import (
    ClassifierFreeGuided,
    ClassifierGuided,
    DPSGuided,
    LabelConditionedDenoiser,
    rejection_baseline,
    train_cfg_model,
    train_noisy_classifier,
)
from ..ctrl import HeadAugmentedModel, TemperatureScaled, finetune, train_classifier
from ..ctrl import sample as ctrl_sample
from ..diffusion import model_device
from .problems import Problem

__all__ = ["METHODS", "FittedMethods", "fit_classifier", "fit_ctrl", "fit_methods",
           "method_samplers"]

METHODS = ("ctrl", "cfg", "cg", "dps")


@dataclass
class FittedMethods:
    """What :func:`fit_methods` learned from one labelled dataset (``None``: not fitted).

    ``seconds`` holds the training wall time of each part; ``classifier_metrics`` the clean
    classifier's held-out NLL / accuracy and temperature.
    """

    n_labelled: int
    classifier: nn.Module | None = None
    noisy_classifier: nn.Module | None = None
    cfg_model: LabelConditionedDenoiser | None = None
    ctrl: HeadAugmentedModel | None = None
    seconds: dict = field(default_factory=dict)
    classifier_metrics: dict = field(default_factory=dict)


def fit_classifier(problem: Problem, x, y, seed: int = 0, model: nn.Module | None = None):
    """Train ``problem.make_classifier()`` on ``(x, y)``, temperature-scale it on the hold-out.

    Returns ``(calibrated frozen classifier, metrics dict)``.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    s = problem.settings
    device = model_device(problem.network)
    torch.manual_seed(seed)
    model = (model if model is not None else problem.make_classifier()).to(device)
    fit = train_classifier(model, x.to(device), y.to(device), steps=s["classifier_steps"],
                           batch_size=s["classifier_batch"], lr=s["classifier_lr"], seed=seed)
    cal = TemperatureScaled.fit(fit.model, fit.x_val, fit.y_val)
    with torch.no_grad():
        nll = float(nn.functional.nll_loss(cal(fit.x_val), fit.y_val))
    return cal, dict(val_nll=nll, val_accuracy=fit.val_accuracy,
                     temperature=cal.temperature, n_val=int(fit.y_val.numel()))


def fit_ctrl(problem: Problem, reward: nn.Module, gamma: float = 1.0, iterations=None,
             seed: int = 0, num_labels: int | None = None,
             init: HeadAugmentedModel | None = None):
    """CTRL: a zero-initialised control head fine-tuned on ``gamma log p(y | x_0) - KL``.

    ``init``: warm-start from (a copy of) another fine-tuned model instead of zero, e.g. the
    ``gamma = 1`` model in a strength sweep. Returns ``(augmented model, FinetuneHistory)``.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    s = problem.settings
    torch.manual_seed(seed)
    if init is not None:
        aug = copy.deepcopy(init)
        aug.network = problem.network   # share the frozen network, do not copy it
    else:
        aug = HeadAugmentedModel(problem.network, problem.sampler,
                                 num_labels=num_labels or problem.num_labels,
                                 width=s["ctrl_width"]).to(model_device(problem.network))
    hist = finetune(aug, reward, iterations=iterations or s["ctrl_iterations"],
                    batch_size=s["ctrl_batch"], lr=s["ctrl_lr"], gamma=gamma, seed=seed)
    return aug, hist


def fit_methods(problem: Problem, x, c, y, methods=METHODS, seed: int = 0) -> FittedMethods:
    """Fit every method in ``methods`` (a subset of :data:`METHODS`) on ``(x, c, y)``.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"methods must be a subset of {list(METHODS)}, got {sorted(unknown)}")
    s, device = problem.settings, model_device(problem.network)
    out = FittedMethods(n_labelled=int(x.shape[0]))
    if {"ctrl", "dps"} & set(methods):
        start = time.perf_counter()
        out.classifier, out.classifier_metrics = fit_classifier(problem, x, y, seed)
        out.seconds["classifier"] = time.perf_counter() - start
    if "ctrl" in methods:
        start = time.perf_counter()
        out.ctrl, _ = fit_ctrl(problem, out.classifier, seed=seed)
        out.seconds["ctrl"] = time.perf_counter() - start + out.seconds["classifier"]
    if "cg" in methods:
        start = time.perf_counter()
        torch.manual_seed(seed)
        out.noisy_classifier = problem.make_noisy_classifier().to(device)
        train_noisy_classifier(out.noisy_classifier, problem.schedule, x.to(device),
                               y.to(device), steps=s["noisy_classifier_steps"],
                               batch_size=s["noisy_classifier_batch"], seed=seed)
        out.seconds["cg"] = time.perf_counter() - start
    if "cfg" in methods:
        start = time.perf_counter()
        torch.manual_seed(seed)
        out.cfg_model = LabelConditionedDenoiser(problem.network, problem.num_labels)
        train_cfg_model(out.cfg_model, problem.schedule, x.to(device), y.to(device),
                        c.to(device), steps=s["cfg_steps"], batch_size=s["cfg_batch"],
                        lr=s["cfg_lr"], label_lr=s.get("cfg_label_lr"),
                        label_drop=s["cfg_label_drop"], seed=seed)
        out.seconds["cfg"] = time.perf_counter() - start
    if "dps" in methods:
        out.seconds["dps"] = out.seconds["classifier"]
    return out


def method_samplers(problem: Problem, fitted: FittedMethods, *, cg_scale=None, cfg_w=None,
                    dps_scale=None, network: nn.Module | None = None,
                    references: bool = True) -> dict[str, Callable]:
    """``{name: sample(n, c, y, generator) -> (n, ...)}`` for every fitted method.

    ``c`` is an int or ``None`` (uniform over conditions, see :meth:`Problem.condition_tensor`).
    With ``references``, also ``"pretrained"`` (do nothing) and ``"rejection"`` (exact
    samples of the pre-trained model tilted by the learned classifier). ``network`` replaces
    the pre-trained network (e.g. by a counting wrapper, see :mod:`.cost`).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    s = problem.settings
    net = network if network is not None else problem.network
    sampler, schedule = problem.sampler, problem.schedule
    cg_scale = s["cg_scale"] if cg_scale is None else cg_scale
    cfg_w = s["cfg_w"] if cfg_w is None else cfg_w
    dps_scale = s["dps_scale"] if dps_scale is None else dps_scale
    out = {}

    def cond_of(c, n):
        return problem.condition_tensor(c, n).to(model_device(problem.network))

    if references:
        out["pretrained"] = lambda n, c, y, g: sampler.sample(net, n, cond_of(c, n),
                                                              generator=g)
    if fitted.ctrl is not None:
        def ctrl_fn(n, c, y, g, aug=fitted.ctrl):
            original = aug.network
            aug.network = net
            try:
                return ctrl_sample(aug, n, cond_of(c, n), y, generator=g)
            finally:
                aug.network = original
        out["ctrl"] = ctrl_fn
    if fitted.cfg_model is not None:
        out["cfg"] = lambda n, c, y, g: sampler.sample(
            ClassifierFreeGuided(fitted.cfg_model, y, cfg_w), n, cond_of(c, n), generator=g)
    if fitted.noisy_classifier is not None:
        out["cg"] = lambda n, c, y, g: sampler.sample(
            ClassifierGuided(net, fitted.noisy_classifier, schedule, y, cg_scale), n,
            cond_of(c, n), generator=g)
    if fitted.classifier is not None:
        out["dps"] = lambda n, c, y, g: sampler.sample(
            DPSGuided(net, fitted.classifier, schedule, y, dps_scale, problem.clip_x0), n,
            cond_of(c, n), generator=g)
        if references:
            out["rejection"] = lambda n, c, y, g: rejection_sampler(
                problem, net, fitted.classifier, n, c, y, g)
    return out


def rejection_sampler(problem: Problem, network, reward, n: int, c, y, generator):
    """Rejection from the pre-trained model; ``c = None`` fills the blocks of
    :meth:`Problem.condition_tensor` condition by condition.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    if c is None:
        counts = torch.bincount(problem.condition_tensor(None, n),
                                minlength=problem.num_conditions).tolist()
        conds = list(enumerate(counts))
    else:
        conds = [(c, n)]
    parts = []
    for cc, m in conds:
        if m:
            parts.append(rejection_baseline(network, problem.sampler, reward, m, cc, y,
                                            generator, batch=max(256, 4 * m)).x)
    return torch.cat(parts)

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
from ..ctrl import FinetuneHistory, HeadAugmentedModel, finetune, train_calibrated_classifier
from ..ctrl import sample as ctrl_sample
from ..diffusion import model_device
from ..profiles import seeded_init
from .problems import Problem

__all__ = ["METHODS", "FittedMethods", "ProblemClassifierFit", "CTRLFit",
           "fit_problem_classifier", "fit_ctrl", "fit_methods", "method_samplers",
           "rejection_sampler"]

METHODS = ("ctrl", "cfg", "cg", "dps")


@dataclass
class ProblemClassifierFit:
    """What :func:`fit_problem_classifier` returns.

    Attributes:
        reward: the frozen, temperature-scaled classifier (CTRL's reward, DPS's classifier).
        val_nll: held-out negative log-likelihood after temperature scaling.
        val_accuracy: held-out accuracy.
        temperature: the fitted temperature ``tau_cal``.
        n_val: size of the held-out split (used for the temperature).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """

    reward: nn.Module
    val_nll: float
    val_accuracy: float
    temperature: float
    n_val: int

    def metrics(self) -> dict:
        """The held-out metrics as a JSON-ready dict (``val_nll``, ``val_accuracy``,
        ``temperature``, ``n_val``)."""
        return dict(val_nll=self.val_nll, val_accuracy=self.val_accuracy,
                    temperature=self.temperature, n_val=self.n_val)


@dataclass
class CTRLFit:
    """What :func:`fit_ctrl` returns: the fine-tuned ``augmented`` model and its
    :class:`~ctrl_teach.ctrl.FinetuneHistory`.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """

    augmented: HeadAugmentedModel
    history: FinetuneHistory


@dataclass
class FittedMethods:
    """What :func:`fit_methods` learned from one labelled dataset (``None``: not fitted).

    Attributes:
        n_labelled: size of the labelled dataset.
        classifier: the calibrated clean classifier (CTRL's reward, DPS, rejection).
        noisy_classifier: the noise-conditioned classifier of classifier guidance.
        cfg_model: the label-conditioned denoiser of classifier-free guidance.
        ctrl: the fine-tuned CTRL model.
        seconds: training wall time of each part.
        classifier_metrics: the clean classifier's held-out NLL / accuracy, temperature and
            hold-out size (:meth:`ProblemClassifierFit.metrics`).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """

    n_labelled: int
    classifier: nn.Module | None = None
    noisy_classifier: nn.Module | None = None
    cfg_model: LabelConditionedDenoiser | None = None
    ctrl: HeadAugmentedModel | None = None
    seconds: dict = field(default_factory=dict)
    classifier_metrics: dict = field(default_factory=dict)


def fit_problem_classifier(problem: Problem, x, y, seed: int = 0,
                           model: nn.Module | None = None) -> ProblemClassifierFit:
    """Train a clean classifier on ``(x, y)`` and temperature-scale it on a 20 % hold-out.

    The one train-then-calibrate recipe,
    :func:`~ctrl_teach.ctrl.train_calibrated_classifier`, with the problem's budgets
    (``classifier_iterations``, ``classifier_batch``, ``classifier_lr``).

    Args:
        problem: the :class:`~.problems.Problem` (its ``settings`` hold the budgets).
        x: ``(N, *data_shape)`` labelled inputs.
        y: ``(N,)`` labels.
        seed: seeds the initial weights, the split and the minibatches.
        model: the classifier to train (default: a fresh ``problem.make_classifier()``,
            built under ``seeded_init(seed)``).

    Returns:
        A :class:`ProblemClassifierFit` (the frozen calibrated reward and its held-out
        metrics).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    s = problem.settings
    device = model_device(problem.network)
    if model is None:
        with seeded_init(seed):
            model = problem.make_classifier()
    fit = train_calibrated_classifier(model.to(device), x.to(device), y.to(device),
                                      iterations=s["classifier_iterations"],
                                      batch_size=s["classifier_batch"],
                                      lr=s["classifier_lr"], seed=seed)
    return ProblemClassifierFit(fit.reward, fit.val_nll, fit.val_accuracy, fit.temperature,
                                int(fit.fit.y_val.numel()))


def _head_model(like: HeadAugmentedModel, network: nn.Module,
                head: nn.Module) -> HeadAugmentedModel:
    """A new :class:`~ctrl_teach.ctrl.HeadAugmentedModel` on ``network`` with ``head`` and
    the sampler, labels and input layout of ``like`` (its learned initial law copied)."""
    new = HeadAugmentedModel(network, like.sampler, like.num_labels, head=head,
                             learn_initial=like.init_mean is not None, x0_input=like.x0_input)
    if like.init_mean is not None:
        with torch.no_grad():
            new.init_mean.copy_(like.init_mean)
            new.init_log_std.copy_(like.init_log_std)
    return new.to(model_device(like.network))


def fit_ctrl(problem: Problem, reward: nn.Module, gamma: float = 1.0, iterations=None,
             seed: int = 0, num_labels: int | None = None,
             init: HeadAugmentedModel | None = None) -> CTRLFit:
    """CTRL: a control head fine-tuned on ``gamma log p(y | x_0) - KL`` (CTRL's objective,
    eq. ``eq-ctrl-objective``, with ``alpha = 1``), on the problem's frozen network.

    Args:
        problem: the :class:`~.problems.Problem` (network, sampler, budgets).
        reward: the frozen reward ``(x, c) -> (N, K)`` log-probabilities.
        gamma: reward weight.
        iterations: fine-tuning iterations (default: ``settings["ctrl_iterations"]``).
        seed: seeds the initial head (under ``seeded_init``) and the fine-tuning.
        num_labels: ``K`` (default: ``problem.num_labels``).
        init: warm-start from another fine-tuned model (e.g. the ``gamma = 1`` model of a
            strength sweep): a new augmented model on ``problem.network`` with a copy of
            ``init``'s head; ``init`` itself is left untouched. Default: a zero-initialised
            head.

    Returns:
        A :class:`CTRLFit` (the fine-tuned model and its history).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    s = problem.settings
    if init is not None:
        aug = _head_model(init, problem.network, copy.deepcopy(init.head))
    else:
        with seeded_init(seed):
            aug = HeadAugmentedModel(problem.network, problem.sampler,
                                     num_labels=num_labels or problem.num_labels,
                                     width=s["ctrl_width"])
        aug = aug.to(model_device(problem.network))
    hist = finetune(aug, reward, iterations=iterations or s["ctrl_iterations"],
                    batch_size=s["ctrl_batch"], lr=s["ctrl_lr"], gamma=gamma, seed=seed)
    return CTRLFit(aug, hist)


def fit_methods(problem: Problem, x, c, y, methods=METHODS, seed: int = 0) -> FittedMethods:
    """Fit every method in ``methods`` on one labelled dataset (the module docstring).

    Args:
        problem: the :class:`~.problems.Problem`.
        x: ``(N, *data_shape)`` labelled inputs.
        c: ``(N,)`` their pre-trained conditions (only CFG uses them).
        y: ``(N,)`` labels.
        methods: a subset of :data:`METHODS`.
        seed: seeds every initialisation and training run.

    Returns:
        A :class:`FittedMethods`.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"methods must be a subset of {list(METHODS)}, got {sorted(unknown)}")
    s, device = problem.settings, model_device(problem.network)
    out = FittedMethods(n_labelled=int(x.shape[0]))
    if {"ctrl", "dps"} & set(methods):
        start = time.perf_counter()
        fit = fit_problem_classifier(problem, x, y, seed)
        out.classifier, out.classifier_metrics = fit.reward, fit.metrics()
        out.seconds["classifier"] = time.perf_counter() - start
    if "ctrl" in methods:
        start = time.perf_counter()
        out.ctrl = fit_ctrl(problem, out.classifier, seed=seed).augmented
        out.seconds["ctrl"] = time.perf_counter() - start + out.seconds["classifier"]
    if "cg" in methods:
        start = time.perf_counter()
        with seeded_init(seed):
            noisy = problem.make_noisy_classifier()
        out.noisy_classifier = train_noisy_classifier(
            noisy.to(device), problem.schedule, x.to(device), y.to(device),
            iterations=s["noisy_classifier_iterations"],
            batch_size=s["noisy_classifier_batch"], seed=seed).model
        out.seconds["cg"] = time.perf_counter() - start
    if "cfg" in methods:
        start = time.perf_counter()
        with seeded_init(seed):
            cfg_model = LabelConditionedDenoiser(problem.network, problem.num_labels)
        out.cfg_model = train_cfg_model(
            cfg_model, problem.schedule, x.to(device), y.to(device), c=c.to(device),
            iterations=s["cfg_iterations"], batch_size=s["cfg_batch"], lr=s["cfg_lr"],
            label_lr=s.get("cfg_label_lr"), label_drop=s["cfg_label_drop"], seed=seed).model
        out.seconds["cfg"] = time.perf_counter() - start
    if "dps" in methods:
        out.seconds["dps"] = out.seconds["classifier"]
    return out


def method_samplers(problem: Problem, fitted: FittedMethods, *, cg_scale=None, cfg_w=None,
                    dps_scale=None, network: nn.Module | None = None,
                    references: bool = True) -> dict[str, Callable]:
    """One sampling function per fitted method, ``fn(n, *, c, y, generator) -> (n, ...)``.

    ``c`` is an int or ``None`` (uniform over conditions, see :meth:`Problem.condition_tensor`).

    Args:
        problem: the :class:`~.problems.Problem`.
        fitted: the :class:`FittedMethods` to sample from.
        cg_scale: classifier-guidance scale (default: ``settings["cg_scale"]``).
        cfg_w: CFG guidance weight (default: ``settings["cfg_w"]``).
        dps_scale: DPS step size ``zeta`` (default: ``settings["dps_scale"]``).
        network: an eps-network used in place of the pre-trained one by every method built
            on it (``pretrained``, ``ctrl``, ``cg``, ``dps``, ``rejection``), e.g. a
            :class:`~.cost.CountingNetwork`; CTRL then samples from a new augmented model on
            ``network`` that shares the fitted control head.
        references: also return ``"pretrained"`` (do nothing) and ``"rejection"`` (exact
            samples of the pre-trained model tilted by the learned classifier).

    Returns:
        ``{name: fn}`` for every fitted method (and the references).

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

    def guided(make):       # sample the eps-network make(y) under the shared sampler
        return lambda n, *, c, y, generator: sampler.sample(make(y), n, c=cond_of(c, n),
                                                            generator=generator)

    if references:
        out["pretrained"] = guided(lambda y: net)
    if fitted.ctrl is not None:
        aug = fitted.ctrl
        if net is not aug.network:
            aug = _head_model(aug, net, aug.head)
        out["ctrl"] = lambda n, *, c, y, generator: ctrl_sample(
            aug, n, c=cond_of(c, n), y=y, generator=generator)
    if fitted.cfg_model is not None:
        out["cfg"] = guided(lambda y: ClassifierFreeGuided(fitted.cfg_model, y=y, w=cfg_w))
    if fitted.noisy_classifier is not None:
        out["cg"] = guided(lambda y: ClassifierGuided(net, fitted.noisy_classifier, schedule,
                                                      y=y, scale=cg_scale))
    if fitted.classifier is not None:
        out["dps"] = guided(lambda y: DPSGuided(net, fitted.classifier, schedule, y=y,
                                                scale=dps_scale, clip_x0=problem.clip_x0))
        if references:
            out["rejection"] = lambda n, *, c, y, generator: rejection_sampler(
                problem, net, fitted.classifier, n, c=c, y=y, generator=generator)
    return out


def rejection_sampler(problem: Problem, network, reward, n: int, *, c, y,
                      generator: torch.Generator) -> torch.Tensor:
    """Exact samples of ``p_pre(x | c) p(y | x) / Z`` by rejection from the pre-trained model.

    Args:
        problem: the :class:`~.problems.Problem` (sampler, conditions).
        network: the pre-trained eps-network (or a counting wrapper of it).
        reward: the classifier ``(x, c) -> (N, K)`` log-probabilities.
        n: number of samples.
        c: an int condition, or ``None``: the blocks of :meth:`Problem.condition_tensor`,
            filled condition by condition.
        y: the int label.
        generator: a ``torch.Generator``.

    Returns:
        ``(n, *data_shape)`` samples.

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
            parts.append(rejection_baseline(network, problem.sampler, reward, m, c=cc, y=y,
                                            generator=generator, batch=max(256, 4 * m)).x)
    return torch.cat(parts)

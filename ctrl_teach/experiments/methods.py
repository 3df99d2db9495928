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
import math
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

__all__ = ["METHODS", "FittedMethods", "ProblemClassifierFit", "CTRLFit", "Plateau",
           "fit_problem_classifier", "fit_ctrl", "fit_methods", "method_samplers",
           "plateau_statistic", "curve_plateau", "rejection_sampler"]

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
        losses: the training loss of every iteration (before temperature scaling).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """

    reward: nn.Module
    val_nll: float
    val_accuracy: float
    temperature: float
    n_val: int
    losses: list = field(default_factory=list)

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
        histories: the training curve of each fitted part, one float per iteration:
            ``"ctrl"`` (CTRL's objective ``J``, batch mean, to be *maximised*),
            ``"classifier"`` (the clean classifier's loss), ``"cg"`` (the noisy
            classifier's loss) and ``"cfg"`` (CFG's denoising loss), all to be read with
            :func:`plateau_statistic`.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """

    n_labelled: int
    classifier: nn.Module | None = None
    noisy_classifier: nn.Module | None = None
    cfg_model: LabelConditionedDenoiser | None = None
    ctrl: HeadAugmentedModel | None = None
    seconds: dict = field(default_factory=dict)
    classifier_metrics: dict = field(default_factory=dict)
    histories: dict = field(default_factory=dict)

    def plateaus(self, **kwargs) -> dict:
        """:func:`plateau_statistic` of every curve in :attr:`histories`.

        Args:
            **kwargs: passed to :func:`plateau_statistic` (``tail``, ``rel_tol``, ``z``).

        Returns:
            ``{name: Plateau}``, in the order of :attr:`histories`.
        """
        return {name: plateau_statistic(h, **kwargs) for name, h in self.histories.items()}


@dataclass
class Plateau:
    """What :func:`plateau_statistic` returns: has a training curve flattened?

    Attributes:
        iterations: length of the curve.
        tail: iterations in the tail that is tested (the last ``tail`` fraction).
        level: mean of the curve over the second half of the tail.
        change: mean of the second half of the tail minus mean of the first half (the
            change of a moving average, window half the tail, across the tail).
        rel_change: ``|change| / |level|`` (``inf`` when ``level`` is 0).
        se: standard error of ``change`` (iterations treated as independent draws).
        flat: ``rel_change < rel_tol`` or ``|change| < z * se``.
        rel_tol: the relative tolerance used.
        z: the number of standard errors used.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """

    iterations: int
    tail: int
    level: float
    change: float
    rel_change: float
    se: float
    flat: bool
    rel_tol: float
    z: float

    def as_dict(self) -> dict:
        """The fields as a JSON-ready dict."""
        return dict(iterations=self.iterations, tail=self.tail, level=self.level,
                    change=self.change, rel_change=self.rel_change, se=self.se,
                    flat=self.flat, rel_tol=self.rel_tol, z=self.z)

    def line(self, name: str) -> str:
        """One sentence ending in ``yes`` / ``NO``: has the curve ``name`` flattened?"""
        return (f"{name}: last {self.tail} of {self.iterations} iterations change the "
                f"mean by {100 * self.rel_change:.1f} % ({self.change / max(self.se, 1e-12):+.1f}"
                f" SE); flat: {'yes' if self.flat else 'NO'}")


def plateau_statistic(values, tail: float = 0.2, rel_tol: float = 0.01,
                      z: float = 2.0) -> Plateau:
    """Has a training curve flattened? A two-window test on its last iterations.

    Take the last ``tail`` fraction of the curve (at least 4 iterations), split it into two
    halves ``A`` (earlier) and ``B`` (later) and compare their means: ``change = mean(B) -
    mean(A)`` is how much a moving average (window: half the tail) still moved across the
    tail. The curve counts as flat when that change is below ``rel_tol`` of the level
    ``|mean(B)|`` *or* below ``z`` standard errors of the change,
    ``se = sqrt(var(A) / |A| + var(B) / |B|)`` (minibatch noise: the curve has no trend
    that its own noise could resolve). Non-finite values are dropped first.

    Args:
        values: the curve, one float per iteration (a loss, or CTRL's ``J``).
        tail: fraction of the iterations to test, in ``(0, 1]``.
        rel_tol: relative tolerance on the change.
        z: number of standard errors.

    Returns:
        A :class:`Plateau`.

    Raises:
        ValueError: if ``tail`` is not in ``(0, 1]``, ``rel_tol`` or ``z`` is negative, or
            the curve has fewer than 4 finite values.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    if not 0.0 < float(tail) <= 1.0:
        raise ValueError(f"tail must be in (0, 1], got {tail!r}")
    if rel_tol < 0 or z < 0:
        raise ValueError(f"rel_tol and z must be >= 0, got rel_tol={rel_tol!r}, z={z!r}")
    vals = [float(v) for v in values if math.isfinite(float(v))]
    if len(vals) < 4:
        raise ValueError(f"values must hold at least 4 finite numbers, got {len(vals)}")
    m = min(len(vals), max(4, math.ceil(tail * len(vals))))
    window = vals[-m:]
    a, b = window[:m // 2], window[m // 2:]

    def mean_var(xs):
        mu = sum(xs) / len(xs)
        return mu, sum((x - mu) ** 2 for x in xs) / max(len(xs) - 1, 1)

    (ma, va), (mb, vb) = mean_var(a), mean_var(b)
    change = mb - ma
    se = math.sqrt(va / len(a) + vb / len(b))
    rel = abs(change) / abs(mb) if mb != 0 else math.inf
    flat = rel < rel_tol or abs(change) < z * se
    return Plateau(len(vals), m, mb, change, rel, se, bool(flat), float(rel_tol), float(z))


def curve_plateau(curve) -> dict | None:
    """The JSON record of a fit's curve (``ctrl_plateau`` in the experiments' rows):
    :func:`plateau_statistic` with its defaults, as a dict; ``None`` when there is no curve
    or it is too short (fewer than 4 values) to test."""
    if curve is None or len(curve) < 4:
        return None
    return plateau_statistic(curve).as_dict()


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
                                int(fit.fit.y_val.numel()), list(fit.fit.losses))


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
        out.histories["classifier"] = list(fit.losses)
        out.seconds["classifier"] = time.perf_counter() - start
    if "ctrl" in methods:
        start = time.perf_counter()
        ctrl_fit = fit_ctrl(problem, out.classifier, seed=seed)
        out.ctrl, out.histories["ctrl"] = ctrl_fit.augmented, list(ctrl_fit.history.J)
        out.seconds["ctrl"] = time.perf_counter() - start + out.seconds["classifier"]
    if "cg" in methods:
        start = time.perf_counter()
        with seeded_init(seed):
            noisy = problem.make_noisy_classifier()
        cg_fit = train_noisy_classifier(
            noisy.to(device), problem.schedule, x.to(device), y.to(device),
            iterations=s["noisy_classifier_iterations"],
            batch_size=s["noisy_classifier_batch"], seed=seed)
        out.noisy_classifier, out.histories["cg"] = cg_fit.model, list(cg_fit.losses)
        out.seconds["cg"] = time.perf_counter() - start
    if "cfg" in methods:
        start = time.perf_counter()
        with seeded_init(seed):
            cfg_model = LabelConditionedDenoiser(problem.network, problem.num_labels)
        cfg_fit = train_cfg_model(
            cfg_model, problem.schedule, x.to(device), y.to(device), c=c.to(device),
            iterations=s["cfg_iterations"], batch_size=s["cfg_batch"], lr=s["cfg_lr"],
            label_lr=s.get("cfg_label_lr"), label_drop=s["cfg_label_drop"], seed=seed)
        out.cfg_model, out.histories["cfg"] = cfg_fit.model, list(cfg_fit.losses)
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

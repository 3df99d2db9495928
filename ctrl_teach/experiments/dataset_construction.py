"""Experiment (b): dataset construction for two attributes at equal labelling budget (Ch. 8).

The claim tested (CTRL, Sec. on multi-task conditioning): with ``y_1 ⊥ y_2 | x`` and
``y ⊥ c | x``, CTRL can learn ``p(x | c, y_1, y_2)`` from two datasets labelled *separately*,
``D_1 = {(x, y_1)}`` and ``D_2 = {(x, y_2)}``, by training one classifier on each and using
the product reward ``log p(y_1 | x) + log p(y_2 | x)``
(:class:`~ctrl_teach.ctrl.MultiTaskReward` with ``flat=True``). CFG needs *joint* triples
``(x, c, y_1, y_2)``. With a budget of ``B`` labels:

* ``ctrl`` (and ``dps``, which uses the same product reward): ``B/2`` points labelled with
  ``y_1`` and ``B/2`` *other* points labelled with ``y_2``;
* ``cfg``: ``B/2`` points, each labelled with both attributes (flat label ``2 y_1 + y_2``);
* ``ctrl`` on the *joint* data as well (two classifiers trained on the same ``B/2`` points),
  which separates the effect of the data layout from that of the method.

Metrics per requested ``(y_1, y_2)``: distance to the exact target (data rejection with the
true ``p(y_1 | x) p(y_2 | x)``), joint accuracy ``E[p(y_1, y_2 | x)]`` and per-attribute
accuracies.
"""

from __future__ import annotations

import time

import torch

from ..ctrl import MultiTaskReward
from .methods import (
    FittedMethods,
    curve_plateau,
    fit_ctrl,
    fit_methods,
    fit_problem_classifier,
    method_samplers,
)
from .metrics import evaluate_method, targets_or_default

__all__ = ["run_dataset_construction"]


def _attribute_accuracy(problem, fn, n, seed):
    """Per-attribute accuracy E[p(y_k | x)] averaged over the evaluation pairs."""
    acc = [0.0, 0.0]
    for k, (c, y) in enumerate(problem.eval_pairs):
        x = fn(n, c=c, y=y, generator=torch.Generator().manual_seed(seed + 1000 * k))
        x = x.detach().cpu()
        for a, want in enumerate((y // 2, y % 2)):
            p = problem.attribute_prob(x, a)
            acc[a] += float((p if want == 1 else 1 - p).mean()) / len(problem.eval_pairs)
    return acc


def run_dataset_construction(problem, budgets, seed: int = 0, targets=None,
                             progress: bool = True) -> dict:
    """Run experiment (b) on a :func:`~.problems.two_attribute_toy` for each label budget.

    Args:
        problem: a :func:`~.problems.two_attribute_toy` problem.
        budgets: the label budgets ``B``.
        seed: data and training seed.
        targets: cached :func:`~.metrics.make_targets` (drawn if None).
        progress: print one line per (budget, method).

    Returns:
        ``{"problem", "budgets", "rows", "seconds"}``; one row per (budget, method) with the
        number of labelled points and labels each method used; a CTRL row also holds
        ``ctrl_plateau``, the :func:`~.methods.curve_plateau` of its fit's ``J``.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    start = time.perf_counter()
    s = problem.settings
    targets = targets_or_default(problem, targets, seed)
    rows = []
    for budget in budgets:
        half = max(2, int(budget) // 2)
        gen = torch.Generator().manual_seed(seed + 5)
        perm = torch.randperm(problem.pool_x.shape[0], generator=gen)
        x1, x2 = problem.pool_x[perm[:half]], problem.pool_x[perm[half:2 * half]]
        y1, y2 = problem.label(x1, gen, task=0), problem.label(x2, gen, task=1)
        t0 = time.perf_counter()
        fit1 = fit_problem_classifier(problem, x1, y1, seed)
        fit2 = fit_problem_classifier(problem, x2, y2, seed + 1)
        reward = MultiTaskReward([fit1.reward, fit2.reward], flat=True)
        clf_secs = time.perf_counter() - t0
        ctrl_fit = fit_ctrl(problem, reward, seed=seed, num_labels=4)
        separate = FittedMethods(2 * half, classifier=reward, ctrl=ctrl_fit.augmented,
                                 seconds=dict(ctrl=time.perf_counter() - t0, dps=clf_secs),
                                 histories=dict(ctrl=ctrl_fit.history.J))
        # CFG: half as many points, each with both labels
        xj, cj = problem.pool_x[perm[:half]], problem.pool_c[perm[:half]]
        yj = problem.label(xj, gen, task=None)
        joint = fit_methods(problem, xj, cj, yj, methods=("cfg",), seed=seed)
        t0 = time.perf_counter()
        j1 = fit_problem_classifier(problem, xj, yj // 2, seed).reward
        j2 = fit_problem_classifier(problem, xj, yj % 2, seed + 1).reward
        joint_fit = fit_ctrl(problem, MultiTaskReward([j1, j2], flat=True), seed=seed,
                             num_labels=4)
        joint.ctrl, joint.histories["ctrl"] = joint_fit.augmented, joint_fit.history.J
        joint.seconds["ctrl"] = time.perf_counter() - t0
        sep = method_samplers(problem, separate, references=False)
        jnt = method_samplers(problem, joint, references=False)
        runs = [("ctrl", "separate", sep["ctrl"], separate), ("dps", "separate", sep["dps"],
                                                                separate),
                ("cfg", "joint", jnt["cfg"], joint), ("ctrl", "joint", jnt["ctrl"], joint)]
        for name, data, fn, fit in runs:
            m = evaluate_method(problem, fn, targets, s["eval_samples"], seed)
            a1, a2 = _attribute_accuracy(problem, fn, s["eval_samples"], seed)
            secs = fit.seconds[name]
            rows.append(dict(problem=problem.name, budget=int(budget), method=name,
                             data=data, labelled_points=half if data == "joint" else 2 * half,
                             labels=2 * half, ed=m["ed"], accuracy=m["accuracy"],
                             accuracy_attr1=a1, accuracy_attr2=a2, diversity=m["diversity"],
                             fit_seconds=secs,
                             classifier_val_accuracy=[fit1.val_accuracy, fit2.val_accuracy]
                             if data == "separate" else None))
            plateau = curve_plateau(fit.histories["ctrl"]) if name == "ctrl" else None
            if plateau is not None:   # has this CTRL fit's J flattened?
                rows[-1]["ctrl_plateau"] = plateau
            if progress:
                r = rows[-1]
                print(f"  [2 attributes] B={budget} {name:5} ({data}) ED {r['ed']:.4f} "
                      f"acc {r['accuracy']:.3f} ({a1:.3f}, {a2:.3f})", flush=True)
    return dict(problem=problem.name, budgets=[int(b) for b in budgets], rows=rows,
                seconds=time.perf_counter() - start)

"""Experiment (a): sample efficiency in the number of labelled examples ``N`` (Chapter 8).

For each ``N``, one labelled dataset ``(x, c, y)`` is drawn from the problem's offline pool
with the true labelling rule, every method is fitted on it (:func:`~.methods.fit_methods`),
and its samples are scored against the exact target (:mod:`.metrics`). N-independent
reference rows: ``target`` (an independent exact draw, ``part="reference"``: the noise floor
of the distance and the best attainable accuracy) and ``pretrained`` (doing nothing).
``rejection`` (per ``N``) is the exact optimum CTRL aims at *given its learned classifier*:
the gap target -> rejection is the classifier's error, rejection -> ctrl the fine-tuning
error.
"""

from __future__ import annotations

import time

from .methods import METHODS, fit_methods, method_samplers
from .metrics import evaluate_method, targets_or_default

__all__ = ["run_sample_efficiency", "size_label"]

_SUMMARY = ("ed", "accuracy", "diversity", "c_accuracy")


def size_label(n) -> str:
    """The JSON label of a dataset size.

    Args:
        n: a size, or ``None`` (the whole pool).

    Returns:
        ``"all"`` for ``None``, else ``str(n)``.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    return "all" if n is None else str(int(n))


def _row(problem, method, size, n_labelled, metrics, fit_seconds):
    row = dict(problem=problem.name, method=method, size=size_label(size),
               n_labelled=n_labelled, fit_seconds=fit_seconds,
               sample_seconds=metrics["sample_seconds"], per_pair=metrics["per_pair"])
    row.update({k: metrics[k] for k in _SUMMARY if k in metrics})
    return row


def run_sample_efficiency(problem, sizes, methods=METHODS, seed: int = 0, targets=None,
                          keep: str | None = "last", progress: bool = True) -> dict:
    """Run experiment (a) on ``problem`` for dataset sizes ``sizes`` (``None`` = all).

    Args:
        problem: a :class:`~.problems.Problem` (its ``settings`` hold the budgets).
        sizes: list of ``N`` (``None`` = the whole pool).
        methods: subset of :data:`~.methods.METHODS`.
        seed: data and training seed.
        targets: cached :func:`~.metrics.make_targets` (drawn if None).
        keep: ``"last"`` keeps the fitted methods of the last size in ``result["fitted"]``
            (not JSON: pop it before saving); ``None`` keeps nothing.
        progress: print one line per method and size.

    Returns:
        ``{"problem", "sizes", "rows", "references", "classifiers", "seconds"}`` (rows: one
        per method and size, see benchmarks/SCHEMA.md).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    start = time.perf_counter()
    targets = targets_or_default(problem, targets, seed)
    n_eval = problem.settings["eval_samples"]

    def reference(n, *, c, y, generator):
        return problem.target(n, c=c, y=y, generator=generator, part="reference")

    refs = [_row(problem, "target", None, 0,
                 evaluate_method(problem, reference, targets, n_eval, seed + 99), 0.0)]
    for r in refs:   # the target ignores c: its c-accuracy is meaningless
        r.pop("c_accuracy", None)
    rows, classifiers, fitted = [], [], None
    for size in sizes:
        x, c, y = problem.labelled_dataset(size, seed)
        fitted = fit_methods(problem, x, c, y, methods, seed)
        classifiers.append(dict(size=size_label(size), n_labelled=fitted.n_labelled,
                                **fitted.classifier_metrics))
        for name, fn in method_samplers(problem, fitted, references=True).items():
            if name == "pretrained":
                if size is sizes[0]:
                    refs.append(_row(problem, name, None, 0,
                                     evaluate_method(problem, fn, targets, n_eval, seed), 0.0))
                continue
            metrics = evaluate_method(problem, fn, targets, n_eval, seed)
            rows.append(_row(problem, name, size, fitted.n_labelled, metrics,
                             fitted.seconds.get(name, fitted.seconds.get("classifier", 0.0))))
            if progress:
                r = rows[-1]
                print(f"  [{problem.name}] N={r['size']:>5} {name:9} ED {r['ed']:.4f} "
                      f"acc {r['accuracy']:.3f} div {r['diversity']:.3f}", flush=True)
    out = dict(problem=problem.name, sizes=[size_label(s) for s in sizes], rows=rows,
               references=refs, classifiers=classifiers,
               seconds=time.perf_counter() - start)
    if keep == "last":
        out["fitted"] = fitted
    return out

"""Metrics of Chapter 8: distance to the exact target, accuracy under the truth, diversity.

For each evaluation pair ``(c, y)`` of a :class:`~.problems.Problem`:

* ``ed``: energy distance ``2 E|X - T| - E|X - X'| - E|T - T'|`` between generated samples
  ``X`` and exact target samples ``T`` (rejection from the data with the *true* rule), on
  flattened inputs (or on ``problem.features`` when a problem sets it);
* ``accuracy``: ``E_X[p_true(y | X)]`` (for a deterministic rule, the fraction of samples
  whose true label is the requested ``y``);
* ``diversity``: ``E|X - X'| / E|T - T'|``, mean pairwise distance relative to the target's
  (1 = as diverse as the target, < 1 = collapsed), in the same space as ``ed``;
* ``c_accuracy`` (digits only): the digit oracle's accuracy on the requested digit ``c``.

Metrics are averaged over the pairs; ``per_pair`` keeps each one.
"""

from __future__ import annotations

import math
import time

import torch

from ..evaluation import energy_distance

__all__ = ["make_targets", "targets_or_default", "evaluate_samples", "evaluate_method",
           "mean_pairwise_distance", "pair_key"]


def pair_key(c, y) -> str:
    """JSON key of an evaluation pair.

    Args:
        c: an int condition, or ``None`` (uniform over conditions).
        y: the label.

    Returns:
        ``"c=0,y=1"`` (``c=all`` for uniform ``c``).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    return f"c={'all' if c is None else c},y={y}"


def make_targets(problem, n: int, seed: int = 0) -> dict:
    """Exact target samples for every evaluation pair of ``problem``.

    Args:
        problem: the :class:`~.problems.Problem`.
        n: samples per pair.
        seed: seeds one generator shared by the pairs, drawn in order.

    Returns:
        ``{pair_key(c, y): (n, *data_shape) samples}``.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    gen = torch.Generator().manual_seed(seed)
    return {pair_key(c, y): problem.target(n, c=c, y=y, generator=gen)
            for c, y in problem.eval_pairs}


def targets_or_default(problem, targets: dict | None, seed: int = 0) -> dict:
    """``targets`` if given, else the experiments' default draw
    ``make_targets(problem, settings["target_samples"], seed + 7)``.

    Args:
        problem: the :class:`~.problems.Problem`.
        targets: cached :func:`make_targets`, or ``None``.
        seed: the experiment's seed.

    Returns:
        The targets dict.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    if targets is not None:
        return targets
    return make_targets(problem, problem.settings["target_samples"], seed + 7)


def mean_pairwise_distance(x: torch.Tensor, max_samples: int = 1000) -> float:
    """``E|X - X'|`` over distinct pairs of (at most ``max_samples``) flattened rows.

    Args:
        x: ``(N, ...)`` samples.
        max_samples: rows used at most (the first ones).

    Returns:
        The mean distance (NaN for fewer than two rows).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    x = x[:max_samples].flatten(1).double()
    return float(torch.pdist(x).mean()) if len(x) > 1 else float("nan")


def evaluate_samples(problem, x: torch.Tensor, target: torch.Tensor, *, c, y: int,
                     generator: torch.Generator) -> dict:
    """The metrics of one pair for samples ``x`` against ``target`` (module docstring).

    Non-finite rows are dropped and counted in ``nonfinite``.

    Args:
        problem: the :class:`~.problems.Problem` (true rule, features, oracle).
        x: ``(N, ...)`` generated samples.
        target: ``(M, ...)`` exact target samples of the pair.
        c: the pair's condition (int or ``None``).
        y: the pair's label.
        generator: for the energy distance's subsampling.

    Returns:
        ``{"pair", "n", "nonfinite", "ed", "accuracy", "diversity"}`` (and ``c_accuracy``
        with an oracle).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    x = x.detach().float().cpu()
    finite = torch.isfinite(x.flatten(1)).all(1)
    x = x[finite]
    out = dict(pair=pair_key(c, y), n=int(x.shape[0]), nonfinite=int((~finite).sum()))
    if x.shape[0] < 2:
        return dict(out, ed=float("nan"), accuracy=float("nan"), diversity=float("nan"))
    fx, ft = x.flatten(1), target.flatten(1)
    if problem.features is not None:
        fx, ft = problem.features(x).flatten(1), problem.features(target).flatten(1)
    out["ed"] = energy_distance(fx, ft, max_samples=2000, generator=generator)
    out["accuracy"] = float(problem.true_prob(x, y).mean())
    out["diversity"] = mean_pairwise_distance(fx) / mean_pairwise_distance(ft)
    if problem.oracle is not None:
        want = problem.condition_tensor(c, x.shape[0])
        dev = next(problem.oracle.parameters()).device
        out["c_accuracy"] = float((problem.oracle.predict(x.to(dev)).cpu() == want)
                                  .float().mean())
    return out


def _mean(rows, key):
    vals = [r[key] for r in rows if key in r and math.isfinite(r[key])]
    return sum(vals) / len(vals) if vals else float("nan")


def evaluate_method(problem, sample_fn, targets: dict, n: int, seed: int = 0) -> dict:
    """Draw ``n`` samples per evaluation pair with ``sample_fn`` and score them.

    Args:
        problem: the :class:`~.problems.Problem`.
        sample_fn: ``sample_fn(n, *, c, y, generator) -> (n, ...)`` (e.g. from
            :func:`~.methods.method_samplers`).
        targets: :func:`make_targets` of the problem.
        n: samples per pair.
        seed: pair ``k`` uses a generator seeded with ``seed + 1000 k``.

    Returns:
        The pair-averaged metrics, ``per_pair`` and the sampling time ``sample_seconds``.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    rows, seconds = [], 0.0
    for k, (c, y) in enumerate(problem.eval_pairs):
        gen = torch.Generator().manual_seed(seed + 1000 * k)
        start = time.perf_counter()
        x = sample_fn(n, c=c, y=y, generator=gen)
        seconds += time.perf_counter() - start
        rows.append(evaluate_samples(problem, x, targets[pair_key(c, y)], c=c, y=y,
                                     generator=gen))
    keys = ["ed", "accuracy", "diversity"] + (["c_accuracy"] if problem.oracle else [])
    return dict({k: _mean(rows, k) for k in keys}, per_pair=rows, sample_seconds=seconds)

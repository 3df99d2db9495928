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

__all__ = ["make_targets", "evaluate_samples", "evaluate_method", "mean_pairwise_distance",
           "pair_key"]


def pair_key(c, y) -> str:
    """JSON key of an evaluation pair: ``"c=0,y=1"`` (``c=all`` for uniform ``c``)."""
    return f"c={'all' if c is None else c},y={y}"


def make_targets(problem, n: int, seed: int = 0) -> dict:
    """Exact target samples per evaluation pair: ``{pair_key: (n, ...)}``.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    gen = torch.Generator().manual_seed(seed)
    return {pair_key(c, y): problem.target(c, y, n, gen) for c, y in problem.eval_pairs}


def mean_pairwise_distance(x: torch.Tensor, max_samples: int = 1000) -> float:
    """``E|X - X'|`` over distinct pairs of (at most ``max_samples``) flattened rows."""
    x = x[:max_samples].flatten(1).double()
    return float(torch.pdist(x).mean()) if len(x) > 1 else float("nan")


def evaluate_samples(problem, x: torch.Tensor, c, y: int, target: torch.Tensor,
                     generator: torch.Generator) -> dict:
    """The metrics of one pair for samples ``x`` against ``target`` (module docstring).

    Non-finite rows are dropped and counted in ``nonfinite``.

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
    """Draw ``n`` samples per evaluation pair with ``sample_fn(n, c, y, generator)`` and score
    them; returns the pair-averaged metrics, ``per_pair`` and the sampling ``seconds``.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    rows, seconds = [], 0.0
    for k, (c, y) in enumerate(problem.eval_pairs):
        gen = torch.Generator().manual_seed(seed + 1000 * k)
        start = time.perf_counter()
        x = sample_fn(n, c, y, gen)
        seconds += time.perf_counter() - start
        rows.append(evaluate_samples(problem, x, c, y, targets[pair_key(c, y)], gen))
    keys = ["ed", "accuracy", "diversity"] + (["c_accuracy"] if problem.oracle else [])
    return dict({k: _mean(rows, k) for k in keys}, per_pair=rows, sample_seconds=seconds)

"""Experiment (c): guidance-strength sweeps (Chapter 8).

Each method has one knob that trades accuracy for distance to the target and diversity:

* CTRL: the reward weight ``gamma`` (``= 1 / alpha``; the optimum samples
  ``p_pre(x | c) p(y | x)^gamma``), one fine-tuning per value;
* CFG: the guidance weight ``w`` (``eps = (1 + w) eps(c, y) - w eps(c, null)``);
* classifier guidance: the scale ``s``; DPS: the step size ``gamma``.

The distance is always to the ``gamma = 1`` target ``p(x | c, y)``, so every curve should pass
closest to it at its "calibrated" strength (1 for CTRL and CG, 0 for CFG) if the method is
right, and accuracy grows past the target's for stronger settings (over-guidance).
"""

from __future__ import annotations

import time

from .methods import fit_ctrl, method_samplers
from .metrics import evaluate_method, make_targets

__all__ = ["run_strength_sweep"]

_KNOB = {"ctrl": "gamma", "cfg": "w", "cg": "scale", "dps": "scale"}


def run_strength_sweep(problem, fitted, ctrl_gamma, cfg_w, cg_scale, dps_scale,
                       ctrl_iterations=None, seed: int = 0, targets=None,
                       progress: bool = True) -> dict:
    """Sweep each method's strength with the classifiers / models in ``fitted``.

    Args:
        problem: a :class:`~.problems.Problem`; fitted: :class:`~.methods.FittedMethods`
            (e.g. ``run_sample_efficiency(...)["fitted"]``). Its CTRL model is reused for
            ``gamma = 1``; other ``gamma`` values are fine-tuned here for ``ctrl_iterations``
            iterations, warm-started from the ``gamma = 1`` model.
        ctrl_gamma, cfg_w, cg_scale, dps_scale: the values to sweep (lists).
    Returns: ``{"problem", "n_labelled", "rows", "seconds"}``; one row per (method, value).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    start = time.perf_counter()
    s = problem.settings
    targets = targets if targets is not None else make_targets(problem, s["target_samples"],
                                                               seed + 7)
    rows = []

    def add(method, value, fn, fit_seconds=0.0):
        m = evaluate_method(problem, fn, targets, s["eval_samples"], seed)
        rows.append(dict(problem=problem.name, method=method, knob=_KNOB[method],
                         value=float(value), ed=m["ed"], accuracy=m["accuracy"],
                         diversity=m["diversity"], fit_seconds=fit_seconds))
        if progress:
            print(f"  [{problem.name}] {method:5} {_KNOB[method]}={value:<5} ED {m['ed']:.4f} "
                  f"acc {m['accuracy']:.3f} div {m['diversity']:.3f}", flush=True)

    for gamma in ctrl_gamma:
        if gamma == 1.0 and fitted.ctrl is not None:
            aug, secs = fitted.ctrl, 0.0
        else:
            t0 = time.perf_counter()
            aug, _ = fit_ctrl(problem, fitted.classifier, gamma=gamma,
                              iterations=ctrl_iterations, seed=seed, init=fitted.ctrl)
            secs = time.perf_counter() - t0
        one = type(fitted)(fitted.n_labelled, ctrl=aug)
        add("ctrl", gamma, method_samplers(problem, one, references=False)["ctrl"], secs)
    for w in cfg_w:
        add("cfg", w, method_samplers(problem, fitted, cfg_w=w, references=False)["cfg"])
    for scale in cg_scale:
        add("cg", scale, method_samplers(problem, fitted, cg_scale=scale,
                                         references=False)["cg"])
    for scale in dps_scale:
        add("dps", scale, method_samplers(problem, fitted, dps_scale=scale,
                                          references=False)["dps"])
    return dict(problem=problem.name, n_labelled=fitted.n_labelled, rows=rows,
                seconds=time.perf_counter() - start)

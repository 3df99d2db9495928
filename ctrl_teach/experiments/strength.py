"""Experiment (c): guidance-strength sweeps (Chapter 8).

Each method has one knob that trades accuracy for distance to the target and diversity:

* CTRL: the reward weight ``gamma`` (``= 1 / alpha``; the optimum samples
  ``p_pre(x | c) p(y | x)^gamma``), one fine-tuning per value;
* CFG: the guidance weight ``w`` (``eps = (1 + w) eps(c, y) - w eps(c, null)``);
* classifier guidance: the scale ``lambda``; DPS: the step size ``zeta``.

The distance is always to the ``gamma = 1`` target ``p(x | c, y)``, so every curve should pass
closest to it at its "calibrated" strength (1 for CTRL and CG, 0 for CFG) if the method is
right, and accuracy grows past the target's for stronger settings (over-guidance).
"""

from __future__ import annotations

import time

from .methods import FittedMethods, curve_plateau, fit_ctrl, method_samplers
from .metrics import evaluate_method, targets_or_default

__all__ = ["run_strength_sweep"]

_KNOB = {"ctrl": "gamma", "cfg": "w", "cg": "scale", "dps": "scale"}


def run_strength_sweep(problem, fitted, ctrl_gamma, cfg_w, cg_scale, dps_scale,
                       ctrl_iterations=None, seed: int = 0, targets=None,
                       progress: bool = True) -> dict:
    """Sweep each method's strength with the classifiers / models in ``fitted``.

    Args:
        problem: a :class:`~.problems.Problem`.
        fitted: :class:`~.methods.FittedMethods` (e.g.
            ``run_sample_efficiency(...)["fitted"]``). Its CTRL model is reused for
            ``gamma = 1``; other ``gamma`` values are fine-tuned here for ``ctrl_iterations``
            iterations, warm-started from the ``gamma = 1`` model (which is not changed).
        ctrl_gamma: CTRL reward weights ``gamma`` to sweep.
        cfg_w: CFG guidance weights ``w``.
        cg_scale: classifier-guidance scales.
        dps_scale: DPS step sizes ``zeta``.
        ctrl_iterations: fine-tuning iterations per ``gamma != 1``.
        seed: training and sampling seed.
        targets: cached :func:`~.metrics.make_targets` (drawn if None).
        progress: print one line per (method, value).

    Returns:
        ``{"problem", "n_labelled", "rows", "seconds"}``; one row per (method, value). A
        CTRL row also holds ``ctrl_plateau``, the :func:`~.methods.curve_plateau` of its
        fit's ``J`` (for ``gamma = 1``: of ``fitted.histories["ctrl"]``, when kept).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    start = time.perf_counter()
    s = problem.settings
    targets = targets_or_default(problem, targets, seed)
    rows = []

    def add(method, value, fn, fit_seconds=0.0, curve=None):
        m = evaluate_method(problem, fn, targets, s["eval_samples"], seed)
        rows.append(dict(problem=problem.name, method=method, knob=_KNOB[method],
                         value=float(value), ed=m["ed"], accuracy=m["accuracy"],
                         diversity=m["diversity"], fit_seconds=fit_seconds))
        plateau = curve_plateau(curve)
        if plateau is not None:   # has this fit's J flattened?
            rows[-1]["ctrl_plateau"] = plateau
        if progress:
            print(f"  [{problem.name}] {method:5} {_KNOB[method]}={value:<5} ED {m['ed']:.4f} "
                  f"acc {m['accuracy']:.3f} div {m['diversity']:.3f}", flush=True)

    for gamma in ctrl_gamma:
        if gamma == 1.0 and fitted.ctrl is not None:
            aug, secs, curve = fitted.ctrl, 0.0, fitted.histories.get("ctrl")
        else:
            t0 = time.perf_counter()
            fit = fit_ctrl(problem, fitted.classifier, gamma=gamma, iterations=ctrl_iterations,
                           seed=seed, init=fitted.ctrl)
            aug, secs, curve = fit.augmented, time.perf_counter() - t0, fit.history.J
        one = FittedMethods(fitted.n_labelled, ctrl=aug)
        add("ctrl", gamma, method_samplers(problem, one, references=False)["ctrl"], secs,
            curve)
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

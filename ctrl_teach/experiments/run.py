"""Run every Chapter 8 experiment with one configuration and return one JSON-ready dict.

``run_all(experiment_config("quick"))`` is what ``benchmarks/experiments_benchmark.py`` runs;
the layout of the result is documented in ``benchmarks/SCHEMA.md`` and checked by
:func:`~.schema.validate_results`.
"""

from __future__ import annotations

import platform
import time
from datetime import datetime, timezone

import torch

from ..profiles import seeded_init
from .cost import run_finetune_cost, run_sampling_cost
from .dataset_construction import run_dataset_construction
from .methods import fit_methods
from .metrics import make_targets
from .problems import digits_problem, toy_problem, two_attribute_toy
from .sample_efficiency import run_sample_efficiency
from .schema import SCHEMA_VERSION
from .strength import run_strength_sweep

__all__ = ["EXPERIMENTS", "run_all", "convergence", "headline_claims", "budget_summary"]

EXPERIMENTS = ("sample_efficiency", "dataset_construction", "strength", "sampling_cost",
               "finetune_cost")


def _notes(config: dict, profile: str) -> list:
    se = config["sample_efficiency"]
    notes = [
        "accuracy = E[p_true(y | x)] under the true labelling rule (toy: probit, "
        "digits: ink tertile); ed = energy distance to exact target samples drawn by "
        "rejection from the data; diversity = mean pairwise distance / target's.",
        "rejection = exact samples of the pre-trained model tilted by the *learned* "
        "classifier (CTRL's optimum given its classifier), not of the true target.",
        "digits: ed and diversity are measured in pixels against one half of the real "
        "digits; the target row is the other half. The pre-trained digits model was trained "
        "on all real digits and its samples lie close to them, so ed can be below the "
        "target row (even negative): compare methods with each other and with the "
        "pretrained row.",
    ]
    if se["digits_sizes"]:
        notes.append(f"digits uses N in {se['digits_sizes']} (None = all) and "
                     f"{config['digits']['ctrl_iterations']} CTRL iterations at batch "
                     f"{config['digits']['ctrl_batch']} in this profile.")
    else:
        notes.append("no digits runs in this configuration (toy only).")
    if profile == "quick":
        notes.append("quick profile: reduced budgets on a shared 2-core CPU; digits uses "
                     "fewer N values and iterations than the full profile.")
    return notes


def convergence(fitted) -> dict:
    """The training curves of ``fitted`` and their :func:`~.methods.plateau_statistic`.

    Args:
        fitted: a :class:`~.methods.FittedMethods`.

    Returns:
        ``{"n_labelled", "curves": {name: {**Plateau.as_dict(), "history": [float]}}}``
        (``name``: ``ctrl`` (J), ``classifier``, ``cg``, ``cfg`` (losses)), JSON-ready.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    curves = {}
    for name, plateau in fitted.plateaus().items():
        curves[name] = dict(plateau.as_dict(), history=[float(v) for v in
                                                          fitted.histories[name]])
    return dict(n_labelled=fitted.n_labelled, curves=curves)


def run_all(config: dict, *, profile: str = "quick", device=None, only=None, seed: int = 0,
            progress: bool = True) -> dict:
    """Run the experiments named in ``only`` (default: all of :data:`EXPERIMENTS`).

    Args:
        config: from :func:`~.config.experiment_config` or :func:`~.config.reduced_config`.
        profile: recorded in the result.
        device: torch device (default CPU).
        only: the experiments to run, a subset of :data:`EXPERIMENTS`.
        seed: data, training and sampling seed.
        progress: print progress lines.

    Returns:
        The results dict (benchmarks/SCHEMA.md); ``convergence`` holds the training curves
        of the methods fitted on each problem's largest dataset (:func:`convergence`).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    only = tuple(EXPERIMENTS if only is None else only)
    bad = set(only) - set(EXPERIMENTS)
    if bad:
        raise ValueError(f"only must be a subset of {list(EXPERIMENTS)}, got {sorted(bad)}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    start = time.perf_counter()
    out = dict(schema_version=SCHEMA_VERSION, profile=profile, device=str(device),
               torch_threads=torch.get_num_threads(), torch_version=torch.__version__,
               platform=platform.platform(),
               started_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
               config=config, notes=_notes(config, profile), timings={})

    def timed(name, title, fn):
        """``out[name] = fn(config[name])``, logged and timed."""
        if name not in only:
            return
        if progress:
            print(title, flush=True)
        t0 = time.perf_counter()
        out[name] = fn(config[name])
        out["timings"][name] = time.perf_counter() - t0

    need_toy = {"sample_efficiency", "strength", "sampling_cost", "finetune_cost"} & set(only)
    toy = toy_problem(settings=config["toy"], pool_size=config["toy"]["pool_size"],
                      device=device) if need_toy else None
    need_digits = (("sample_efficiency" in only
                    and bool(config["sample_efficiency"]["digits_sizes"])) or any(
        "digits" in config[k]["problems"] for k in ("sampling_cost", "finetune_cost")
        if k in only))
    digits = digits_problem(settings=config["digits"], device=device) if need_digits else None
    problems = {"toy": toy, "digits": digits}
    fitted = {}

    def fitted_for(prob):
        if prob.name not in fitted:
            x, c, y = prob.labelled_dataset(None, seed)
            fitted[prob.name] = fit_methods(prob, x, c, y, seed=seed)
        return fitted[prob.name]

    def per_problem(fn):
        """``{problem name: fn(problem, "toy" or "digits", sizes)}`` over ``sizes["problems"]``."""
        return lambda sizes: {problems[k].name: fn(problems[k], k, sizes)
                              for k in sizes["problems"]}

    def sample_efficiency(se):
        res = {}
        for prob, sizes in ((toy, se["toy_sizes"]), (digits, se["digits_sizes"])):
            if prob is None or not sizes:
                continue
            r = run_sample_efficiency(prob, sizes, seed=seed, progress=progress,
                                      targets=make_targets(prob, prob.settings[
                                          "target_samples"], seed + 7))
            fitted[prob.name] = r.pop("fitted")
            res[prob.name] = r
        return res

    def dataset_construction(dc):
        two = two_attribute_toy(settings=config["toy"], pool_size=config["toy"]["pool_size"],
                                device=device)
        return run_dataset_construction(two, dc["budgets"], seed=seed, progress=progress)

    def strength(st):
        return run_strength_sweep(toy, fitted_for(toy), st["ctrl_gamma"], st["cfg_w"],
                                  st["cg_scale"], st["dps_scale"],
                                  ctrl_iterations=st["ctrl_iterations"], seed=seed,
                                  progress=progress)

    def sampling_cost(prob, name, sc):
        return run_sampling_cost(prob, fitted_for(prob), sc[f"{name}_samples"],
                                 c=0 if name == "toy" else 3, y=1, cfg_w=sc["cfg_w"],
                                 seed=seed, progress=progress)

    def finetune_cost(prob, name, fc):
        if prob.name in fitted:
            reward = fitted[prob.name].classifier
        else:   # any reward will do: its accuracy does not change the cost
            with seeded_init(seed):
                reward = prob.make_classifier()
            reward = reward.to(device).eval().requires_grad_(False)
        return run_finetune_cost(prob, reward, fc[f"{name}_steps"], fc["modes"],
                                 fc["truncate_steps"], fc[f"{name}_batch"], fc["repeats"],
                                 seed=seed, progress=progress)

    timed("sample_efficiency", "(a) sample efficiency", sample_efficiency)
    timed("dataset_construction", "(b) dataset construction (two attributes)",
          dataset_construction)
    timed("strength", "(c) strength sweeps", strength)
    timed("sampling_cost", "(d) sampling cost", per_problem(sampling_cost))
    timed("finetune_cost", "(e) fine-tuning cost", per_problem(finetune_cost))
    out["convergence"] = {name: convergence(fit) for name, fit in fitted.items()}
    out["wall_seconds"] = time.perf_counter() - start
    return out


def _claim(experiment: str, text: str, ok) -> dict:
    return dict(experiment=experiment, claim=text, ok=None if ok is None else bool(ok))


def headline_claims(results: dict, problem: str = "toy-gmm") -> list:
    """The paper's headline claims as checks on a results dict (one run of the benchmark).

    (a) sample efficiency against CFG: CTRL's energy distance to the exact target is below
    CFG's at the smallest ``N``, and at every ``N``; (b) dataset construction at an equal
    label budget: CTRL on separately labelled data is not worse than on joint data (energy
    distance within 0.01) and is closer to the target than CFG on joint data, at every
    budget; (c) guidance strength: CTRL's true accuracy rises with ``gamma``, its diversity
    at the largest ``gamma`` is below that at ``gamma = 1`` (the trade-off), and it is
    closest to the ``gamma = 1`` target at ``gamma = 1`` (calibration); (d) sampling cost:
    CTRL needs the pre-trained model's network evaluations per sample, fewer than CFG
    (``w > 0``) and rejection. A check whose experiment is absent has ``ok = None``.

    Args:
        results: a results dict (:func:`run_all`, or its JSON read back).
        problem: the problem the claims (a), (c), (d) are read on.

    Returns:
        A list of ``{"experiment", "claim", "ok"}`` (``ok``: ``True``, ``False`` or
        ``None``), in the order above.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    se = results.get("sample_efficiency", {}).get(problem)
    dc = results.get("dataset_construction")
    st = results.get("strength")
    sc = results.get("sampling_cost", {}).get(problem)

    def ed_a(method, n):
        return next(r["ed"] for r in se["rows"] if r["method"] == method and r["size"] == n)

    def ed_b(budget, method, data):
        return next(r["ed"] for r in dc["rows"]
                    if (r["budget"], r["method"], r["data"]) == (budget, method, data))

    def ctrl_rows():
        return sorted((r for r in st["rows"] if r["method"] == "ctrl"),
                      key=lambda r: r["value"])

    def at_one():
        return next(r for r in ctrl_rows() if r["value"] == 1.0)

    def nfe(method):
        return next(r["nfe_per_sample"] for r in sc["rows"] if r["method"] == method)

    smallest = f" (N={se['sizes'][0]})" if se is not None else ""
    checks = [   # (experiment, its results or None, claim, check evaluated on them)
        ("a", se, f"CTRL closer to the target than CFG at the smallest N{smallest}",
         lambda: ed_a("ctrl", se["sizes"][0]) < ed_a("cfg", se["sizes"][0])),
        ("a", se, "CTRL closer to the target than CFG at every N",
         lambda: all(ed_a("ctrl", n) < ed_a("cfg", n) for n in se["sizes"])),
        ("b", dc, "separate labels not worse for CTRL than joint ones (ED within 0.01) at "
                  "every budget",
         lambda: all(ed_b(b, "ctrl", "separate") < ed_b(b, "ctrl", "joint") + 0.01
                     for b in dc["budgets"])),
        ("b", dc, "CTRL on separate labels closer to the target than CFG on joint ones at "
                  "every budget",
         lambda: all(ed_b(b, "ctrl", "separate") < ed_b(b, "cfg", "joint")
                     for b in dc["budgets"])),
        ("c", st, "CTRL's accuracy rises monotonically with gamma",
         lambda: all(a["accuracy"] < b["accuracy"]
                     for a, b in zip(ctrl_rows(), ctrl_rows()[1:]))),
        ("c", st, "CTRL's diversity at the largest gamma below that at gamma = 1",
         lambda: ctrl_rows()[-1]["diversity"] < at_one()["diversity"]),
        ("c", st, "CTRL closest to the target at its calibrated gamma = 1",
         lambda: min(ctrl_rows(), key=lambda r: r["ed"])["value"] == 1.0),
        ("d", sc, "CTRL samples with the pre-trained model's network evaluations",
         lambda: round(nfe("ctrl")) == round(nfe("pretrained"))),
        ("d", sc, "CTRL needs fewer network evaluations than CFG and rejection",
         lambda: nfe("ctrl") < nfe("cfg") and nfe("ctrl") < nfe("rejection")),
    ]
    return [_claim(exp, text, None if part is None else check())
            for exp, part, text, check in checks]


def budget_summary(results: dict, problem: str = "toy-gmm") -> str:
    """One line naming the training budgets of a results dict (for labelling its verdicts).

    Args:
        results: a results dict (:func:`run_all`, or its JSON read back).
        problem: ``"toy-gmm"`` (reads ``config["toy"]``) or ``"digits"``.

    Returns:
        E.g. ``"CTRL 800 it x 128, CFG 4000 it x 256, CG 4000 it, classifier 1000 it"``.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    s = results["config"]["digits" if problem == "digits" else "toy"]
    return (f"CTRL {s['ctrl_iterations']} it x {s['ctrl_batch']}, "
            f"CFG {s['cfg_iterations']} it x {s['cfg_batch']}, "
            f"CG {s['noisy_classifier_iterations']} it, "
            f"classifier {s['classifier_iterations']} it")

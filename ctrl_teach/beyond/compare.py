"""The side-by-side experiment of Chapter 9: six ways to reach one exact target, at equal budgets.

Every method optimises (or samples) the same tilted law ``p*(x | c, y) ∝ p_pre(x | c) p(y | x,
c)^(gamma / alpha)``: CTRL's pathwise gradient (:func:`~ctrl_teach.ctrl.finetune`), the
score-function policy gradient (:func:`~ctrl_teach.beyond.finetune_policy_gradient`), adjoint
matching (:func:`~ctrl_teach.beyond.adjoint_matching`, mean-only control), relative trajectory
balance (:func:`~ctrl_teach.beyond.trajectory_balance`), DRaFT-K without the KL
(:func:`~ctrl_teach.beyond.finetune_draft`) and twisted SMC at sampling time
(:func:`~ctrl_teach.beyond.twisted_smc`, no fine-tuning).

A budget is either a wall-time ``budget_s`` (train until the seconds are spent: the loop's
``callback`` checks ``time.perf_counter``; the learning rate then stays at its peak, as the
cosine decay is laid over ``max_iterations``) or a fixed number of ``iterations``
(reproducible across machines; this is what the chapter's checked cells use). For SMC the
budget buys particles: with ``budget_s`` the particle count is multiplied by 4 from
``particles_start`` while the runs fit in the budget; with ``iterations`` it is
``num_particles``.

Scores, per ``(c, y)`` pair and then averaged over the pairs (:func:`score_model`,
:func:`score_smc`):

* the certificate gap ``alpha log Z - E[J]`` with its standard error (CTRL's objective, also for
  DRaFT, which does not optimise it); for SMC instead the error ``alpha (log Z_hat - log Z)``;
* the energy distance to exact target samples, rejection-sampled from the pre-trained sampler
  (:func:`~ctrl_teach.target.rejection_sample`, :func:`~ctrl_teach.evaluation.energy_distance`);
* the mean confidence ``E[p(y | x, c)]`` against the exact target's;
* network evaluations and seconds per sample at sampling time (SMC: ``K`` evaluations per
  particle, all ``N`` particles drawn jointly);
* fine-tuning seconds and peak memory: on CUDA ``torch.cuda.max_memory_allocated`` during
  training; on CPU the peak bytes of the tensors autograd saves for the backward pass over two
  iterations (:func:`~ctrl_teach.experiments.saved_tensor_bytes`; ``tracemalloc`` does not see
  PyTorch's allocator, so it would report almost nothing).

Problems (:func:`make_problem`): ``"gaussian"`` (the 1-D problem of
:func:`~ctrl_teach.beyond.gaussian_problem`, closed-form ``alpha log Z`` and moments),
``"toy"`` (``load_pretrained("toy-gmm")``, 20-step ``eta = 1`` sampler clipping ``x0_hat`` to
``[-3, 3]``, probit reward ``Phi(x_1)``, both conditions and both labels) and ``"stress"`` (the
tight six-mode stress case of :func:`~ctrl_teach.experiments.stress.make_stress_problem`, seed
1, three sharp labels, ``alpha = 0.5``). All hyper-parameters live in :data:`HYPERPARAMETERS`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import torch

from .._checks import check_choice, check_positive_float, check_positive_int
from ..ctrl import HeadAugmentedModel, ProbitClassifier, certificate_gap, finetune, rollout, sample
from ..diffusion import DiffusionSampler, model_device
from ..evaluation import energy_distance
from ..profiles import make_generator, seeded_init
from ..target import log_partition, mean_confidence, rejection_sample
from ._gaussian_problem import gaussian_problem
from .adjoint_matching import adjoint_matching
from .draft import finetune_draft
from .policy_gradient import finetune_policy_gradient
from .smc import twisted_smc
from .trajectory_balance import trajectory_balance

__all__ = ["METHODS", "PROBLEMS", "HYPERPARAMETERS", "BenchProblem", "make_problem",
           "train_method", "warm_up", "score_model", "score_smc", "run_method", "run_experiment",
           "format_table", "total_compute", "plot_compute"]

METHODS = ("ctrl", "pg", "am", "rtb", "draft", "smc")
PROBLEMS = ("gaussian", "toy", "stress")

#: Every method's hyper-parameters, per problem. ``model``: the
#: :class:`~ctrl_teach.ctrl.HeadAugmentedModel` keywords (``variance=True``: the step's std
#: is learned too; adjoint matching is mean-only by construction). ``train``: the keywords of
#: the method's loop. SMC: ``ess_threshold`` and ``guidance`` of :func:`twisted_smc`, the
#: starting particle count of a wall-time budget and the cap. The Gaussian values are those of
#: the methods' unit tests (``tests/test_beyond_*.py``); the 2-D values follow CTRL's toy test
#: (``tests/test_ctrl_toy.py``: batch 128, lr 3e-3) and were not tuned per method.
HYPERPARAMETERS = {
    "gaussian": {
        "width": 64,
        "ctrl": dict(model=dict(variance=True), train=dict(batch_size=256, lr=5e-3)),
        "pg": dict(model=dict(variance=True), train=dict(batch_size=256, lr=5e-3)),
        "am": dict(model=dict(variance=False), train=dict(batch_size=512, lr=1e-2)),
        "rtb": dict(model=dict(variance=True),
                    train=dict(batch_size=512, lr=5e-3, noise_scale=1.2)),
        "draft": dict(model=dict(variance=True),
                      train=dict(batch_size=256, lr=5e-3, truncate_steps=2)),
        "smc": dict(ess_threshold=0.5, guidance=0.0, particles_start=64, max_particles=65536),
    },
    "toy": {
        "width": 128,
        "ctrl": dict(model=dict(variance=True), train=dict(batch_size=128, lr=3e-3)),
        "pg": dict(model=dict(variance=True), train=dict(batch_size=256, lr=3e-3)),
        "am": dict(model=dict(variance=False), train=dict(batch_size=128, lr=3e-3)),
        "rtb": dict(model=dict(variance=True),
                    train=dict(batch_size=256, lr=3e-3, noise_scale=1.2)),
        "draft": dict(model=dict(variance=True),
                      train=dict(batch_size=128, lr=3e-3, truncate_steps=2)),
        "smc": dict(ess_threshold=0.5, guidance=0.0, particles_start=64, max_particles=16384),
    },
}
HYPERPARAMETERS["stress"] = {**HYPERPARAMETERS["toy"]}

#: The loops' iteration cap under a wall-time budget (the cosine decay is laid over it).
MAX_ITERATIONS = 100_000


@dataclass
class BenchProblem:
    """One problem of the experiment with its exact references.

    Attributes:
        name: ``"gaussian"``, ``"toy"`` or ``"stress"``.
        network: the frozen pre-trained eps-network.
        sampler: the sampler every method uses.
        reward: the reward ``log p(y | x, c)``.
        alpha: KL weight.
        gamma: reward weight.
        num_labels: labels of the reward.
        pairs: the ``(c, y)`` pairs scored (``c`` is ``None`` for an unconditional model).
        refs: per pair, a dict with ``alpha_log_z`` (closed form or Monte Carlo), its ``se``,
            exact ``target`` samples, ``confidence_exact`` and ``pre`` (pre-trained samples).
        extra: closed-form facts (Gaussian: target moments, mean-only floor).

    Introduced in: Chapter 9 (Beyond CTRL).
    """

    name: str
    network: torch.nn.Module
    sampler: DiffusionSampler
    reward: torch.nn.Module
    alpha: float
    gamma: float
    num_labels: int
    pairs: list
    refs: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def make_problem(name: str, *, num_candidates: int = 20000, seed: int = 0) -> BenchProblem:
    """Build a problem and its exact references (module docstring).

    Args:
        name: ``"gaussian"``, ``"toy"`` or ``"stress"``.
        num_candidates: pre-trained samples per pair for the rejection target (and, for the
            2-D problems, for the Monte Carlo ``alpha log Z``).
        seed: seeds the candidates and the accept step.

    Returns:
        A :class:`BenchProblem`.

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    check_choice("name", name, PROBLEMS)
    num_candidates = check_positive_int("num_candidates", num_candidates)
    extra = {}
    if name == "gaussian":
        gp = gaussian_problem()
        network, sampler, reward, alpha, gamma = (gp.network, gp.sampler, gp.reward, gp.alpha,
                                                  gp.gamma)
        pairs, num_labels = [(None, 0)], 1
        extra = dict(alpha_log_z=gp.alpha_log_z, target_moments=gp.target_moments,
                     mean_only_floor=gp.floor.mean_only,
                     mean_only_moments=gp.floor.mean_only_moments)
    elif name == "toy":
        from ..pretrained import load_pretrained
        pre = load_pretrained("toy-gmm")
        network = pre.network
        sampler = DiffusionSampler(pre.schedule, num_steps=20, eta=1.0, clip_x0=3.0)
        reward, alpha, gamma, num_labels = ProbitClassifier([1.0, 0.0], 0.0, 1.0), 1.0, 1.0, 2
        pairs = [(c, y) for c in (0, 1) for y in (0, 1)]
    else:
        from ..experiments.stress import make_stress_problem
        sp = make_stress_problem(seed=1, shape="tight6", num_labels=3, sharp=True, alpha=0.5)
        network, sampler, reward, alpha, gamma = sp.network, sp.sampler, sp.reward, sp.alpha, 1.0
        pairs, num_labels = list(sp.pairs), 3
    network.requires_grad_(False)
    reward.requires_grad_(False)
    gen = make_generator(seed=seed)
    refs = {}
    for c, y in pairs:
        with torch.no_grad():
            x_pre = sampler.sample(network, num_candidates, c=c, generator=gen)
        if name == "gaussian":
            alz, se = extra["alpha_log_z"], 0.0
        else:
            alz, se = log_partition(x_pre, reward, c=c, y=y, alpha=alpha, gamma=gamma)
        target = rejection_sample(x_pre, reward, c=c, y=y, power=gamma / alpha, generator=gen)
        refs[(c, y)] = dict(alpha_log_z=alz, se=se, target=target, pre=x_pre,
                            confidence_exact=mean_confidence(target, reward, c=c, y=y))
    return BenchProblem(name, network, sampler, reward, alpha, gamma, num_labels, pairs, refs,
                        extra)


def _augmented(problem: BenchProblem, method: str, seed: int) -> HeadAugmentedModel:
    hp = HYPERPARAMETERS[problem.name]
    with seeded_init(seed):
        return HeadAugmentedModel(problem.network, problem.sampler, problem.num_labels,
                                  width=hp["width"], **hp[method]["model"])


def _loop(problem, method, aug, iterations, seed, callback, overrides=None):
    kw = dict(HYPERPARAMETERS[problem.name][method]["train"], iterations=iterations, seed=seed,
              callback=callback, gamma=problem.gamma)
    kw.update(overrides or {})
    if method != "draft":
        kw["alpha"] = problem.alpha
    fn = dict(ctrl=finetune, pg=finetune_policy_gradient, am=adjoint_matching,
              rtb=trajectory_balance, draft=finetune_draft)[method]
    return fn(aug, problem.reward, **kw)


def train_method(problem: BenchProblem, method: str, *, budget_s: float | None = None,
                 iterations: int | None = None, seed: int = 0,
                 measure_memory: bool = True, overrides: dict | None = None) -> tuple:
    """Fine-tune a fresh, zero-initialised head with one method (not SMC) for a budget.

    Args:
        problem: the :class:`BenchProblem`.
        method: one of ``"ctrl"``, ``"pg"``, ``"am"``, ``"rtb"``, ``"draft"``.
        budget_s: wall-time budget in seconds (train until spent), or ``None``.
        iterations: a fixed number of iterations instead (exactly one of the two).
        seed: the initialisation and training seed.
        measure_memory: also measure peak memory (module docstring; on CPU a separate
            two-iteration run).
        overrides: keywords that replace the method's :data:`HYPERPARAMETERS` ``train``
            entries (e.g. a smaller ``batch_size`` for a fast test).

    Returns:
        ``(augmented, info)``, ``info`` a dict with ``iterations``, ``train_s`` and
        ``peak_mb`` (``None`` when not measured).

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    check_choice("method", method, METHODS[:-1])
    if (budget_s is None) == (iterations is None):
        raise ValueError("give exactly one of budget_s and iterations")
    cuda = model_device(problem.network).type == "cuda"
    aug = _augmented(problem, method, seed)
    count = {"k": 0}
    if budget_s is not None:
        budget_s = check_positive_float("budget_s", budget_s)
        n_iter = MAX_ITERATIONS

        def callback(k, hist):
            count["k"] = k
            return time.perf_counter() - start > budget_s
    else:
        n_iter = check_positive_int("iterations", iterations)

        def callback(k, hist):
            count["k"] = k
            return False
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    _loop(problem, method, aug, n_iter, seed, callback, overrides)
    train_s = time.perf_counter() - start
    peak_mb = None
    if cuda:
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    elif measure_memory:
        from ..experiments import saved_tensor_bytes
        probe = _augmented(problem, method, seed)
        _, peak = saved_tensor_bytes(lambda: _loop(problem, method, probe, 2, seed, None,
                                                      overrides))
        peak_mb = peak / 2**20
    return aug, dict(iterations=count["k"], train_s=train_s, peak_mb=peak_mb)


def _moments(x):
    return (float(x.mean()), float(x.var())) if x.shape[1:] == (1,) else None


def _summary(problem, per_pair, info, method):
    def mean(key):
        vals = [p[key] for p in per_pair if p.get(key) is not None]
        return sum(vals) / len(vals) if vals else None
    row = dict(method=method, problem=problem.name, **info, per_pair=per_pair)
    for key in ("gap", "logz_err", "ed", "ed_pre", "confidence", "confidence_exact",
                "nfe_per_sample", "s_per_sample", "kl"):
        row[key] = mean(key)
    ses = [p["gap_se"] for p in per_pair if p.get("gap_se") is not None]
    row["gap_se"] = math.sqrt(sum(s * s for s in ses)) / len(ses) if ses else None
    return row


def score_model(problem: BenchProblem, aug, *, num_samples: int = 2000, seed: int = 1) -> list:
    """Score a fine-tuned model against the exact references, pair by pair.

    Args:
        problem: the :class:`BenchProblem`.
        aug: the fine-tuned augmented model.
        num_samples: samples (and trajectories for the gap) per pair.
        seed: the evaluation seed.

    Returns:
        One dict per pair: ``gap``, ``gap_se``, ``kl`` (path KL), ``ed``, ``ed_pre`` (doing
        nothing), ``confidence``, ``confidence_exact``, ``nfe_per_sample``, ``s_per_sample``
        and, in 1-D, ``moments``.

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    num_samples = check_positive_int("num_samples", num_samples)
    gen = make_generator(seed=seed)
    out = []
    for c, y in problem.pairs:
        ref = problem.refs[(c, y)]
        with torch.no_grad():
            ro = rollout(aug, problem.reward, c=c, y=torch.full((num_samples,), y),
                         generator=gen, alpha=problem.alpha, gamma=problem.gamma)
        gap, se = certificate_gap(ref["alpha_log_z"], ref["se"], ro.J)
        t0 = time.perf_counter()
        x = sample(aug, num_samples, c=c, y=y, generator=gen)
        secs = time.perf_counter() - t0
        ed_kw = dict(max_samples=2000, generator=gen)
        out.append(dict(c=c, y=y, gap=gap, gap_se=se, kl=float(ro.kl.sum(1).mean()),
                        ed=energy_distance(x, ref["target"], **ed_kw),
                        ed_pre=energy_distance(ref["pre"][:num_samples], ref["target"], **ed_kw),
                        confidence=mean_confidence(x, problem.reward, c=c, y=y),
                        confidence_exact=ref["confidence_exact"],
                        nfe_per_sample=problem.sampler.num_steps,
                        s_per_sample=secs / num_samples, moments=_moments(x)))
    return out


def score_smc(problem: BenchProblem, *, budget_s: float | None = None,
              num_particles: int | None = None, seed: int = 1) -> tuple:
    """Run twisted SMC per pair (no fine-tuning) and score it like :func:`score_model`.

    Args:
        problem: the :class:`BenchProblem`.
        budget_s: wall-time budget for all pairs: per pair the particle count is multiplied by
            4 from ``particles_start`` while the runs fit in ``budget_s / len(pairs)``.
        num_particles: a fixed particle count instead (exactly one of the two).
        seed: the SMC seed.

    Returns:
        ``(per_pair, info)``: per pair ``logz_err = alpha (log Z_hat - log Z)``, ``ed``,
        ``confidence``, ``particles``, ``nfe_per_sample`` (``K`` per particle) and
        ``s_per_sample`` (the run's seconds over its particles); ``info`` as
        :func:`train_method`'s (``train_s = 0``).

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    if (budget_s is None) == (num_particles is None):
        raise ValueError("give exactly one of budget_s and num_particles")
    hp = HYPERPARAMETERS[problem.name]["smc"]
    gen = make_generator(seed=seed)

    def run(c, y, n):
        t0 = time.perf_counter()
        r = twisted_smc(problem.network, problem.sampler, problem.reward, n, c=c, y=y,
                        alpha=problem.alpha, gamma=problem.gamma,
                        ess_threshold=hp["ess_threshold"], guidance=hp["guidance"],
                        generator=gen)
        return r, time.perf_counter() - t0

    per_pair = []
    for c, y in problem.pairs:
        ref = problem.refs[(c, y)]
        if budget_s is not None:
            share, n, spent = check_positive_float("budget_s", budget_s) / len(problem.pairs), \
                hp["particles_start"], 0.0
            r, secs = run(c, y, n)
            spent += secs
            while n * 4 <= hp["max_particles"] and spent + 4 * secs <= share:
                n *= 4
                r, secs = run(c, y, n)
                spent += secs
        else:
            n = check_positive_int("num_particles", num_particles)
            r, secs = run(c, y, n)
        ed_kw = dict(max_samples=2000, generator=gen)
        per_pair.append(dict(c=c, y=y, particles=n,
                             logz_err=problem.alpha * r.log_z - ref["alpha_log_z"],
                             ed=energy_distance(r.x, ref["target"], **ed_kw),
                             ed_pre=energy_distance(ref["pre"][:2000], ref["target"], **ed_kw),
                             confidence=mean_confidence(r.x, problem.reward, c=c, y=y),
                             confidence_exact=ref["confidence_exact"],
                             nfe_per_sample=r.network_evaluations, s_per_sample=secs / n,
                             run_s=secs, moments=_moments(r.x)))
    info = dict(iterations=0, train_s=0.0, peak_mb=0.0,
                particles=min(p["particles"] for p in per_pair))
    return per_pair, info


def run_method(problem: BenchProblem, method: str, *, budget_s: float | None = None,
               iterations: int | None = None, seed: int = 0, num_samples: int = 2000,
               measure_memory: bool = True, overrides: dict | None = None) -> dict:
    """Train (or, for SMC, sample) one method at one budget and score it.

    Args:
        problem: the :class:`BenchProblem`.
        method: one of :data:`METHODS`.
        budget_s: wall-time budget in seconds, or ``None``.
        iterations: fixed iterations instead (for SMC: the particle count).
        seed: the training seed (evaluation uses ``seed + 1``).
        num_samples: evaluation samples per pair.
        measure_memory: measure peak memory.
        overrides: replaced ``train`` hyper-parameters (:func:`train_method`).

    Returns:
        One result row: the pair means of the scores of :func:`score_model` /
        :func:`score_smc`, ``gap_se`` of the mean gap, ``budget_s``, ``iterations``,
        ``train_s``, ``peak_mb`` and ``per_pair``.

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    check_choice("method", method, METHODS)
    if method == "smc":
        per_pair, info = score_smc(problem, budget_s=budget_s, num_particles=iterations,
                                   seed=seed + 1)
    else:
        aug, info = train_method(problem, method, budget_s=budget_s, iterations=iterations,
                                 seed=seed, measure_memory=measure_memory,
                                 overrides=overrides)
        per_pair = score_model(problem, aug, num_samples=num_samples, seed=seed + 1)
    row = _summary(problem, per_pair, info, method)
    row["budget_s"] = budget_s
    return row


def warm_up(problem: BenchProblem, methods=METHODS) -> None:
    """One untimed iteration of every method (and a tiny SMC run), so that one-off start-up
    costs (lazy initialisation, first-call dispatch) do not eat into the first timed budget.

    Args:
        problem: the :class:`BenchProblem`.
        methods: the method names.

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    for method in methods:
        if method == "smc":
            score_smc(problem, num_particles=8)
        else:
            train_method(problem, method, iterations=1, measure_memory=False)


def run_experiment(problems, methods=METHODS, budgets=(3.0, 10.0, 30.0), *, seed: int = 0,
                   num_samples: int = 2000, num_candidates: int = 20000,
                   progress: bool = True) -> dict:
    """Every method on every problem at every wall-time budget (the chapter's table).

    Args:
        problems: names (see :data:`PROBLEMS`) or :class:`BenchProblem` objects.
        methods: method names (:data:`METHODS`).
        budgets: wall-time budgets in seconds per method and problem.
        seed: training seed.
        num_samples: evaluation samples per pair.
        num_candidates: pre-trained candidates per pair for the references.
        progress: print one line per finished run.

    Returns:
        A JSON-ready dict: ``rows`` (see :func:`run_method`), ``budgets``, ``methods``,
        ``hyperparameters``, ``loadavg`` (``os.getloadavg()`` before and after),
        ``torch_threads`` and ``wall_s``.

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    rows = []
    for p in problems:
        problem = p if isinstance(p, BenchProblem) else make_problem(
            p, num_candidates=num_candidates)
        warm_up(problem, methods)
        for budget in budgets:
            for method in methods:
                row = run_method(problem, method, budget_s=float(budget), seed=seed,
                                 num_samples=num_samples)
                rows.append(row)
                if progress:
                    print(format_table([row], header=False), flush=True)
    for row in rows:
        for p in row["per_pair"]:
            p.pop("pre", None)
    return dict(rows=rows, budgets=[float(b) for b in budgets], methods=list(methods),
                hyperparameters=_jsonable(HYPERPARAMETERS), loadavg_before=list(load_before),
                loadavg=list(os.getloadavg()), torch_threads=torch.get_num_threads(),
                wall_s=time.perf_counter() - t0)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


NAMES = dict(ctrl="CTRL", pg="PG", am="AM", rtb="RTB", draft="DRaFT", smc="SMC")


def _fmt(v, spec, width):
    return f"{'-':>{width}}" if v is None else f"{v:{width}{spec}}"


def format_table(rows, header: bool = True) -> str:
    """One printed block (at most 88 characters wide) of result rows.

    Columns: method, problem, budget (s; ``it`` for an iteration budget, ``-`` for SMC with a
    fixed particle count), the certificate gap
    ``± SE`` (SMC: ``alpha (log Z_hat - log Z)``, marked ``Z``), energy distance, mean
    confidence / exact, network evaluations per sample (SMC: ``K`` per particle, with the
    particle count), milliseconds per sample, fine-tuning seconds and peak MB.

    Args:
        rows: result rows (:func:`run_method`).
        header: print the column header.

    Returns:
        The table as a string.

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    lines = []
    if header:
        lines.append(f"{'method':6} {'problem':8} {'budget':>6} {'gap ± SE':>14} {'ED':>7} "
                     f"{'conf/exact':>11} {'NFE':>8} {'ms/smp':>7} {'train':>6} {'MB':>6}")
    for r in rows:
        budget = (f"{r['budget_s']:5.0f}s" if r.get("budget_s") is not None
                  else "-" if r["method"] == "smc" else f"{r['iterations']:4d}it")
        if r["method"] == "smc":
            gap = f"Z {r['logz_err']:+7.3f}".rjust(14)
            nfe = f"{int(r['nfe_per_sample'])}x{r.get('particles', 0)}"
        else:
            prec = 3 if abs(r["gap"]) < 100 else 1
            gap = f"{r['gap']:6.{prec}f} ± {r['gap_se']:.3f}"
            nfe = f"{int(r['nfe_per_sample'])}"
        conf = f"{r['confidence']:.3f}/{r['confidence_exact']:.3f}"
        lines.append(f"{NAMES[r['method']]:6} {r['problem']:8} {budget:>6} {gap:>14} "
                     f"{r['ed']:7.4f} {conf:>11} {nfe:>8} {1e3 * r['s_per_sample']:7.3f} "
                     f"{r['train_s']:6.1f} {_fmt(r['peak_mb'], '.2f', 6)}")
    return "\n".join(lines)


def total_compute(row: dict, num_samples: int = 1000) -> float:
    """Fine-tuning seconds plus the seconds to draw ``num_samples`` samples (SMC: at least one
    whole run of its particles, which are drawn jointly).

    Args:
        row: a result row.
        num_samples: the number of samples to be drawn.

    Returns:
        Seconds.

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    sampling = row["s_per_sample"] * num_samples
    if row["method"] == "smc":
        sampling = max(sampling, max(p["run_s"] for p in row["per_pair"]))
    return row["train_s"] + sampling


def plot_compute(result: dict, num_samples: int = 1000, problems=None):
    """Energy distance to the exact target against total compute (:func:`total_compute`),
    one curve per method, one panel per problem (at most two panels per row). The energy
    distance is an unbiased estimate that can fall slightly below 0; it is drawn at ``1e-4``
    or above (log axis).

    Args:
        result: :func:`run_experiment`'s dict (or one with a ``rows`` list).
        num_samples: samples drawn at sampling time.
        problems: problem names to draw (default: all in ``result``).

    Returns:
        The matplotlib figure.

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter
    rows = result["rows"]
    names = problems or list(dict.fromkeys(r["problem"] for r in rows))
    ncol = min(2, len(names))
    nrow = math.ceil(len(names) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.8 * nrow), squeeze=False)
    for ax, name in zip(axes.flat, names):
        sub = [r for r in rows if r["problem"] == name]
        for method in dict.fromkeys(r["method"] for r in sub):
            pts = sorted((total_compute(r, num_samples), max(r["ed"], 1e-4))
                         for r in sub if r["method"] == method)
            ax.plot(*zip(*pts), "o-", label=NAMES[method])
        ed_pre = sub[0]["ed_pre"]
        ax.axhline(ed_pre, color="gray", ls=":", label="pre-trained")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"train s + s to draw {num_samples} samples", fontsize=11)
        ax.set_ylabel("energy distance to target", fontsize=11)
        ax.set_title(name, fontsize=12)
        ax.tick_params(labelsize=10)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=10)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    return fig

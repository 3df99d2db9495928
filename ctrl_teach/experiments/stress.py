"""A stress family of problems nobody tuned for (issue 11): does the workflow reach the optimum?

Each problem is a 2-D Gaussian mixture whose pre-trained model is the *exact* denoiser
(:class:`~ctrl_teach.diffusion.ExactMixtureDenoiser`), so the only errors left are CTRL's:
the policy class, the optimisation and the Monte Carlo error of the certificate. The label
changes the weights of the modes, which are decided in the first, noisiest steps (where unseen
problems failed before the variance-aware step and the certificate-driven budget). Problems
vary the shape (few or many tight modes, a ring, a line), the number of labels (2-5), the
sharpness of the classifier, ``alpha``, known or learned rewards and conditional or
unconditional pre-trained models.

A problem passes a ``(c, y)`` pair when (the issue's criteria)

* the certificate gap ``alpha log Z - J <= 0.05`` nats,
* the energy distance to the exact (rejection-sampled) target is at most three times the
  Monte Carlo floor (two independent target draws) plus 0.002,
* the mean true confidence is within 0.03 of the exact target's.

``benchmarks/stress_benchmark.py`` runs the family and prints the pass rate;
``tests/test_stress.py`` runs a quick subset.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from .._checks import check_choice, check_positive_float, check_positive_int
from ..ctrl import condition_pretrained, evaluate_against_target, fit_classifier
from ..data.toys import GaussianMixture
from ..diffusion import DiffusionSampler, ExactMixtureDenoiser, NoiseSchedule
from ..evaluation import energy_distance
from ..profiles import make_generator
from ..target import mean_confidence, rejection_sample

__all__ = ["ModeLabelReward", "StressProblem", "make_stress_problem", "stress_family",
           "run_stress_problem", "PASS_CRITERIA", "SETTINGS"]

SHAPES = ("tight6", "tight3", "ring", "line")
PASS_CRITERIA = dict(gap=0.05, ed_factor=3.0, ed_slack=0.002, confidence=0.03)
# condition_pretrained's keyword arguments per setting of run_stress_problem (K: the steps)
SETTINGS = {
    "before": lambda K: dict(variance=False, iterations=400, gradient="full"),
    "pathwise": lambda K: dict(gradient="full"),
    "hybrid": lambda K: dict(gradient="hybrid", score_steps=K),
    "default": lambda K: {},
}


class ModeLabelReward(nn.Module):
    """Known classifier that reweights modes: ``p(y | x, c) = sum_m P(m | x, c) q_c(y | m)``.

    ``P(m | x, c)`` are the responsibilities of the condition's mixture, ``q_c(y | m)`` a label
    table per condition. Tilting by it moves mass between modes: the hard case for CTRL.

    Args:
        mixtures: one :class:`~ctrl_teach.data.toys.GaussianMixture` per condition.
        tables: ``(C, M, L)`` probabilities ``q_c(y | m)``, rows summing to 1.

    Introduced in: Chapter 9 (Beyond CTRL).
    """

    def __init__(self, mixtures, tables: torch.Tensor):
        super().__init__()
        self.mixtures = list(mixtures)
        tables = torch.as_tensor(tables, dtype=torch.float32)
        if tables.ndim != 3 or tables.shape[0] != len(self.mixtures):
            raise ValueError(f"tables must be (C, M, L) with C={len(self.mixtures)}, "
                             f"got {tuple(tables.shape)}")
        self.register_buffer("log_tables", tables.clamp_min(1e-12).log())
        self.num_labels = tables.shape[2]
        self.num_conditions = len(self.mixtures) if len(self.mixtures) > 1 else 0
        self.data_shape = (self.mixtures[0].dim,)

    def forward(self, x: torch.Tensor, c=None) -> torch.Tensor:
        if c is None:
            c = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        out = torch.empty(x.shape[0], self.num_labels, device=x.device, dtype=x.dtype)
        for k in torch.unique(c).tolist():
            rows = c == k
            log_resp = torch.log_softmax(self.mixtures[k]._component_log_probs(x[rows]), 1)
            out[rows] = torch.logsumexp(log_resp[:, :, None] + self.log_tables[k][None], 1)
        return out


@dataclass
class StressProblem:
    """One problem of the stress family: an exact pre-trained model and a reward.

    Attributes:
        name: a readable id (shape, labels, sharpness, alpha, reward kind, conditioning).
        network: the exact denoiser (the pre-trained model).
        sampler: the sampler CTRL fine-tunes (eta = 1).
        reward: the reward fine-tuned on (known, or a classifier learned from labelled data).
        true_reward: the known labelling rule (the confidence is measured with it).
        alpha: the KL weight.
        pairs: the ``(c, y)`` pairs evaluated.

    Introduced in: Chapter 9 (Beyond CTRL).
    """

    name: str
    network: nn.Module
    sampler: DiffusionSampler
    reward: nn.Module
    true_reward: nn.Module
    alpha: float
    pairs: list = field(default_factory=list)


def _mixture(shape: str, g: torch.Generator) -> GaussianMixture:
    if shape.startswith("tight"):           # random, well-separated, tight modes
        m = int(shape[5:])
        means = []
        while len(means) < m:
            p = 4 * torch.rand(2, generator=g) - 2
            if all((p - q).norm() > 1.0 for q in means):
                means.append(p)
        return GaussianMixture(torch.ones(m), torch.stack(means), torch.full((m,), 0.12))
    if shape == "ring":
        phase = float(2 * math.pi * torch.rand((), generator=g))
        ang = phase + torch.arange(8) * 2 * math.pi / 8
        return GaussianMixture(torch.ones(8), 2 * torch.stack([ang.cos(), ang.sin()], 1),
                               torch.full((8,), 0.2))
    # a line of overlapping modes: a smooth, elongated law
    u = torch.linspace(-2, 2, 9)
    tilt = float(torch.rand((), generator=g)) - 0.5
    return GaussianMixture(torch.ones(9), torch.stack([u, tilt * u], 1), torch.full((9,), 0.3))


def make_stress_problem(seed: int, *, shape: str = "tight6", num_labels: int = 3,
                        sharp: bool = True, alpha: float = 0.5, learned: bool = False,
                        conditional: bool = False, num_steps: int = 20,
                        num_timesteps: int = 100) -> StressProblem:
    """Build one problem of the family from its seed and knobs.

    Args:
        seed: draws the modes and the label table.
        shape: ``"tight6"``, ``"tight3"``, ``"ring"`` or ``"line"``.
        num_labels: 2-5 labels.
        sharp: label table close to one-hot (``q(y | m)`` up to 0.9) or smooth (up to ~0.6).
        alpha: the KL weight.
        learned: fine-tune on a classifier learned from 4000 labelled points instead of the
            known rule.
        conditional: two conditions ``c`` (two mixtures) instead of an unconditional model.
        num_steps: sampler steps ``K``.
        num_timesteps: schedule length ``T`` (cosine, beta <= 0.8, as the book's toys).

    Returns:
        A :class:`StressProblem`.

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    check_choice("shape", shape, SHAPES)
    num_labels = check_positive_int("num_labels", num_labels)
    if not 2 <= num_labels <= 5:
        raise ValueError(f"num_labels must be in 2..5, got {num_labels}")
    alpha = check_positive_float("alpha", alpha)
    g = make_generator(seed=seed)
    mixtures = [_mixture(shape, g) for _ in range(2 if conditional else 1)]
    temp = 0.4 if sharp else 1.5
    tables = torch.stack([torch.softmax(torch.randn(m.num_components, num_labels, generator=g)
                                        * 2 / temp, 1) for m in mixtures])
    true_reward = ModeLabelReward(mixtures, tables)
    schedule = NoiseSchedule.cosine(num_timesteps, max_beta=0.8)
    network = ExactMixtureDenoiser(mixtures if conditional else mixtures[0], schedule)
    sampler = DiffusionSampler(schedule, num_steps=num_steps, eta=1.0)
    reward = true_reward
    if learned:
        c = torch.randint(len(mixtures), (4000,), generator=g)
        x = torch.cat([mixtures[k].sample(int((c == k).sum()), g) for k in range(len(mixtures))])
        c = torch.cat([torch.full((int((c == k).sum()),), k) for k in range(len(mixtures))])
        with torch.no_grad():
            p = true_reward(x, c).exp()
        y = torch.multinomial(p, 1, generator=g).squeeze(1)
        reward = fit_classifier(x, y, c=c if conditional else None, num_labels=num_labels,
                                num_conditions=len(mixtures) if conditional else 0,
                                seed=seed).reward
    conds = list(range(len(mixtures))) if conditional else [None]
    name = (f"{shape}-L{num_labels}-{'sharp' if sharp else 'smooth'}-a{alpha:g}-"
            f"{'learned' if learned else 'known'}-{'cond' if conditional else 'uncond'}-s{seed}")
    return StressProblem(name, network, sampler, reward, true_reward, alpha,
                         [(c, y) for c in conds for y in range(num_labels)])


def stress_family(profile: str = "quick") -> list[dict]:
    """The knobs of each problem: ``"quick"`` a small subset (the test), ``"full"`` the family.

    Args:
        profile: ``"quick"`` or ``"full"``.

    Returns:
        A list of keyword dicts for :func:`make_stress_problem`.

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    check_choice("profile", profile, ("quick", "full"))
    if profile == "quick":
        return [dict(seed=1, shape="tight6", num_labels=3, sharp=True, alpha=0.5),
                dict(seed=2, shape="line", num_labels=2, sharp=False, alpha=1.0,
                     conditional=True)]
    grid = itertools.product(SHAPES, (2, 3, 5), (True, False), (0.25, 0.5, 1.0, 2.0),
                             (False, True), (False, True))
    rows = [dict(shape=s, num_labels=n, sharp=sh, alpha=a, learned=le, conditional=co)
            for s, n, sh, a, le, co in grid]
    g = make_generator(seed=0)              # a fixed, balanced subset of the full grid
    pick = torch.randperm(len(rows), generator=g)[:24].tolist()
    return [dict(seed=10 + i, **rows[j]) for i, j in enumerate(pick)]


def _mc_floor(problem, c, y, n, generator):
    """Energy distance between two independent draws of the exact target (the noise level)."""
    draws = []
    for _ in range(2):
        x = problem.sampler.sample(problem.network, 5 * n, c=c, generator=generator)
        draws.append(rejection_sample(x, problem.reward, c=c, y=y, power=1 / problem.alpha,
                                      generator=generator)[:n])
    return energy_distance(draws[0], draws[1], max_samples=n, generator=generator)


def run_stress_problem(problem: StressProblem, *, setting: str = "default", seed: int = 0,
                       num_samples: int = 2000) -> dict:
    """Condition the problem's pre-trained model and score every ``(c, y)`` pair.

    Args:
        problem: a :class:`StressProblem`.
        setting: one of :data:`SETTINGS`: ``"before"`` (the defaults before issue 11: a
            mean-only step, a fixed 400 iterations, the pathwise gradient), ``"pathwise"``
            (variance-aware step, certificate-driven budget, the pathwise gradient) or
            ``"hybrid"`` (the same with ``gradient="hybrid"`` over every noisy step), or
            ``"default"`` (whatever ``condition_pretrained`` does by default: since
            ``gradient="auto"``, pathwise, then hybrid if the pathwise phase stalls above
            the threshold).
        seed: seeds fine-tuning and evaluation.
        num_samples: samples per pair for the distances.

    Returns:
        A dict with the problem's name, the setting, seconds, iterations, the fine-tuning
        ``phases`` (``[first iteration, gradient]``) and one row per pair
        (gap, gap_se, ed, ed_floor, confidence and confidence_exact under the reward
        fine-tuned on, true_confidence under the known rule, passed); a pair whose label is
        too rare for a rejection reference has ``passed=None`` and the ``error``.

    Introduced in: Chapter 9 (Beyond CTRL).
    """
    check_choice("setting", setting, SETTINGS)
    kwargs = SETTINGS[setting](problem.sampler.num_steps)
    start = time.perf_counter()
    model = condition_pretrained(problem.network, problem.reward, sampler=problem.sampler,
                                 alpha=problem.alpha, seed=seed, progress=False,
                                 certify=False, **kwargs)
    seconds = time.perf_counter() - start
    g = make_generator(seed=seed + 1)
    rows, crit = [], PASS_CRITERIA
    for c, y in problem.pairs:
        try:
            r = evaluate_against_target(model.augmented, problem.reward, c=c, y=y,
                                        alpha=problem.alpha, generator=g,
                                        num_candidates=5 * num_samples, num_samples=num_samples)
            floor = _mc_floor(problem, c, y, num_samples, g)
        except ValueError as err:          # a label too rare for a rejection reference
            rows.append(dict(c=c, y=y, passed=None,
                             error=f"label too rare for a rejection reference: {err}"))
            continue
        passed = (r["gap"] <= crit["gap"]
                  and r["ed"] <= crit["ed_factor"] * max(floor, 0.0) + crit["ed_slack"]
                  and abs(r["confidence"] - r["confidence_exact"]) <= crit["confidence"])
        x = model.sample(num_samples, c=c, y=y, generator=g)
        rows.append(dict(c=c, y=y, gap=r["gap"], gap_se=r["gap_se"], ed=r["ed"],
                         ed_floor=floor, confidence=r["confidence"],
                         confidence_exact=r["confidence_exact"],
                         true_confidence=mean_confidence(x, problem.true_reward, c=c, y=y),
                         passed=bool(passed)))
    scored = [r for r in rows if r["passed"] is not None]
    return dict(name=problem.name, setting=setting, seconds=seconds,
                iterations=len(model.history.J),
                phases=[[int(k), mode] for k, mode in model.phases], pairs=rows,
                pass_rate=sum(r["passed"] for r in scored) / max(len(scored), 1))

"""Assignment 4 (Chapter 8): a small sample-efficiency experiment.

How good is CTRL as the offline labelled dataset grows? On a 1-D problem with a known answer:

* pre-trained model: the exact denoiser of the mixture ``0.5 N(-1, 0.6^2) + 0.5 N(1, 0.6^2)``
  (cosine schedule, ``T = 50``), sampled in 10 DDPM-type steps;
* true classifier ``p(y = 1 | x) = Phi(x)``; the target for ``y = 1`` is
  ``p_pre(x) p(y = 1 | x) / Z``, sampled exactly by rejection with the *true* classifier;
* offline data: ``N`` points of the data law with labels drawn from the true classifier; a
  logistic reward is learned from them.

For each ``N`` three samplers are compared with the exact target by the energy distance:
the pre-trained model (ignores ``y``), rejection sampling with the *learned* reward (the exact
sampler of the learned target, so its error is the reward's error), and CTRL fine-tuned on the
learned reward (reward error plus fine-tuning error). Only :mod:`ctrl_teach.ctrl` is used.

Questions (points):

* ``a4.q1`` (2) ``fit_reward(N, seed)``: a logistic reward from ``N`` offline points;
* ``a4.q2`` (2) ``rejection_target(reward, n, seed)``: exact samples of the tilted model;
* ``a4.q3`` (3) ``ctrl_samples(reward, n, seed)``: CTRL fine-tuning, then ``n`` samples;
* ``a4.q4`` (2) ``results``: the table ``{N: {"pretrained", "rejection", "ctrl": ED}}``,
  each averaged over the offline datasets ``SEEDS``;
* ``a4.q5`` (2) ``answers``: what the table says (multiple choice).

Introduced in: Chapter 8 (Experiments and error analysis).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._core import CheckFailed, Question, choice_check, run_check
from ._grading import grader

__all__ = ["N_VALUES", "SEEDS", "FINETUNE", "LogisticReward", "make_pretrained",
           "make_offline_data", "true_classifier", "exact_target", "distance", "check_fit_reward",
           "check_rejection", "check_ctrl", "check_results", "check_answers", "QUESTIONS",
           "grade"]

N_VALUES = (8, 64, 1024)
SEEDS = (0, 1)  # offline datasets per N (the reward error varies a lot at small N)
MEANS, STD, SLOPE, NUM_STEPS = (-1.0, 1.0), 0.6, 1.0, 10
FINETUNE = dict(iterations=60, batch_size=128, lr=5e-3)  # the budget the notebook uses


class LogisticReward(nn.Module):
    """``log p(y | x) = log_softmax(w_y x + b_y)``, a 1-D logistic classifier with the reward
    contract: ``reward(x, c) -> (N, 2)`` log-probabilities (``c`` ignored), ``num_labels = 2``
    and ``data_shape = (1,)``. The weights start at zero (``p(y | x) = 1/2``).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 2)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.data_shape, self.num_labels = (1,), 2

    def forward(self, x, c=None):
        return torch.log_softmax(self.linear(x.reshape(x.shape[0], 1)), dim=-1)


def _mixture():
    from ..data.toys import GaussianMixture

    return GaussianMixture([0.5, 0.5], [[MEANS[0]], [MEANS[1]]], [STD, STD])


def make_pretrained():
    """The pre-trained model: the exact denoiser of ``0.5 N(-1, 0.6^2) + 0.5 N(1, 0.6^2)``
    (cosine schedule, ``T = 50``) with a 10-step DDPM-type sampler.

    Returns:
        A :class:`~ctrl_teach.pretrained.PretrainedDiffusion`; draw from it with
        ``pre.sample(n, c=None, generator=g)``.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    from ..diffusion import DiffusionSampler, ExactMixtureDenoiser, NoiseSchedule
    from ..pretrained import PretrainedDiffusion

    schedule = NoiseSchedule.cosine(50)
    network = ExactMixtureDenoiser(_mixture(), schedule)
    sampler = DiffusionSampler(schedule, num_steps=NUM_STEPS, eta=1.0)
    return PretrainedDiffusion("a4-mixture", network, schedule, sampler, {})


def true_classifier():
    """The true classifier ``p(y = 1 | x) = Phi(x)``.

    Returns:
        A :class:`~ctrl_teach.ctrl.ProbitClassifier` (``num_labels = 2``).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    from ..ctrl import ProbitClassifier

    return ProbitClassifier([SLOPE], 0.0, 1.0)


def make_offline_data(n: int, seed: int):
    """The offline labelled dataset: data-law points, labels drawn from the true classifier.

    Args:
        n: number of points ``N``.
        seed: seeds a local generator (the global RNG is not used).

    Returns:
        ``(x (n, 1), y (n,))``.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    from .._checks import check_nonnegative_int, check_positive_int

    n, seed = check_positive_int("n", n), check_nonnegative_int("seed", seed)
    g = torch.Generator().manual_seed(seed)
    x = _mixture().sample(n, generator=g)
    with torch.no_grad():
        p1 = true_classifier()(x).exp()[:, 1]
    return x, (torch.rand(n, generator=g) < p1).long()


def reference_fit_reward(n: int, seed: int) -> LogisticReward:
    """The reference answer to q1: logistic regression by
    :func:`~ctrl_teach.ctrl.train_classifier` on :func:`make_offline_data`.

    Args:
        n: number of offline points ``N``.
        seed: the dataset and training seed.

    Returns:
        The trained, frozen :class:`LogisticReward`.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    from ..ctrl import train_classifier

    x, y = make_offline_data(n, seed)
    model = LogisticReward()
    train_classifier(model, x, y, iterations=300, batch_size=256, lr=0.05, holdout=0.0,
                     seed=seed)
    return model.requires_grad_(False)


_TARGETS: dict = {}


def exact_target(n: int = 4000, seed: int = 0) -> torch.Tensor:
    """Exact samples of the target ``p_pre(x) p(y = 1 | x) / Z`` of the true classifier, by
    :func:`~ctrl_teach.ctrl.rejection_sample_pretrained` (cached per ``(n, seed)``).

    Args:
        n: number of samples.
        seed: seeds the candidates and the accept step.

    Returns:
        ``(n, 1)`` samples.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    from ..ctrl import rejection_sample_pretrained

    key = (n, seed)
    if key not in _TARGETS:
        _TARGETS[key] = rejection_sample_pretrained(
            make_pretrained(), true_classifier(), n, c=None, y=1,
            generator=torch.Generator().manual_seed(seed))
    return _TARGETS[key]


def distance(x: torch.Tensor, target: torch.Tensor | None = None) -> float:
    """Energy distance of samples to the exact target (at most 2000 of each, seeded).

    Args:
        x: ``(n, 1)`` samples.
        target: the reference samples (default :func:`exact_target`).

    Returns:
        The energy distance (0 for the exact law, up to sampling error).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    from ..evaluation import energy_distance

    target = exact_target() if target is None else target
    return energy_distance(x, target, max_samples=2000, generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------------------------------
def _fresh_nll(reward, seed: int) -> tuple[float, torch.Tensor]:
    x, y = make_offline_data(4000, seed)
    with torch.no_grad():
        logp = reward(x, None)
    return float(nn.functional.nll_loss(logp, y)), logp


def check_fit_reward(fit_reward, *, hidden: bool = False, verbose: bool = True):
    """Check ``fit_reward(N, seed)``: its fresh-data NLL against logistic regression
    (:func:`reference_fit_reward`) on the same ``N`` points.

    Args:
        fit_reward: the student's function.
        hidden: use the grader's ``N`` and seed.
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 2 points.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """

    def body():
        n, seed = (200, 17) if hidden else (256, 1)
        reward = fit_reward(n, seed)
        if not callable(reward):
            raise CheckFailed("fit_reward must return the trained module reward(x, c)")
        nll, logp = _fresh_nll(reward, 99)
        if logp.shape[1:] != (2,) or not torch.allclose(logp.exp().sum(1), torch.ones(len(logp)),
                                                         atol=1e-4):
            raise CheckFailed("reward(x, None) must return (N, 2) log-probabilities")
        ref_nll, ref_logp = _fresh_nll(reference_fit_reward(n, seed), 99)
        if float(logp[:, 1].std()) < 1e-3:
            raise CheckFailed("your reward gives every x the same probabilities: was it trained "
                              "(train_classifier(model, x, y, iterations=300, ...)) on "
                              "make_offline_data(N, seed)?")
        agree = float((logp.argmax(1) == ref_logp.argmax(1)).float().mean())
        if agree < 0.5:
            raise CheckFailed("your reward predicts the opposite class almost everywhere: are "
                              "the labels or the two output columns swapped?")
        if nll > ref_nll + 0.05:
            raise CheckFailed(f"fresh-data NLL {nll:.3f}, logistic regression on the same "
                              f"{n} points reaches {ref_nll:.3f}: train on make_offline_data"
                              "(N, seed) until the loss stops falling (lr 0.05, 300 iterations)")
        return f"fresh-data NLL {nll:.3f} (reference {ref_nll:.3f})"

    return run_check("a4.q1", "fit_reward", 2, body, verbose)


def check_rejection(rejection_target, *, hidden: bool = False, verbose: bool = True):
    """Check that ``rejection_target(reward, n, seed)`` samples ``p_pre(x) p(y = 1 | x) / Z``
    (energy distance to :func:`exact_target`, with the true classifier as the reward).

    Args:
        rejection_target: the student's function.
        hidden: use the grader's seed.
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 2 points.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """

    def body():
        reward = true_classifier()
        n, seed = (3000, 31) if hidden else (3000, 3)
        x = rejection_target(reward, n, seed)
        if not isinstance(x, torch.Tensor) or x.shape != (n, 1):
            raise CheckFailed(f"must return a tensor of shape ({n}, 1), got "
                              f"{getattr(x, 'shape', type(x).__name__)}")
        target = exact_target()
        d = distance(x, target)
        pre = make_pretrained().sample(n, c=None, generator=torch.Generator().manual_seed(seed))
        mean, want = float(x.mean()), float(target.mean())
        if d < 0.01:
            return f"energy distance {d:.4f} to the exact tilted law (mean {mean:.2f})"
        if mean < 0:
            raise CheckFailed(f"samples have mean {mean:.2f} but the y = 1 target has mean "
                              f"{want:.2f}: accept with p(y = 1 | x), the label y = 1")
        if distance(x, pre) < 0.01:
            raise CheckFailed("your samples look like plain pre-trained samples: accept each "
                              "candidate x with probability p(y = 1 | x), reject the others")
        raise CheckFailed(f"energy distance {d:.4f} to the exact tilted law (mean {mean:.2f}, "
                          f"target {want:.2f}); use rejection_sample_pretrained(pre, reward, "
                          "n, c=None, y=1, generator=...)")

    return run_check("a4.q2", "rejection_target", 2, body, verbose)


def check_ctrl(ctrl_samples, *, hidden: bool = False, verbose: bool = True):
    """Check ``ctrl_samples(reward, n, seed)`` with the true classifier as the reward: CTRL's
    samples must be much closer to :func:`exact_target` than the pre-trained model's.

    Args:
        ctrl_samples: the student's function.
        hidden: use the grader's seed.
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 3 points (half marks when
        clearly better than the pre-trained model but short of the target).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """

    def body():
        n, seed = (3000, 5) if hidden else (3000, 0)
        x = ctrl_samples(true_classifier(), n, seed)
        if not isinstance(x, torch.Tensor) or x.shape != (n, 1):
            raise CheckFailed(f"must return a tensor of shape ({n}, 1), got "
                              f"{getattr(x, 'shape', type(x).__name__)}")
        d = distance(x)
        pre = make_pretrained().sample(n, c=None, generator=torch.Generator().manual_seed(seed))
        d_pre = distance(pre)
        if d < 0.25 * d_pre:
            return (f"with the true reward, CTRL samples are {d:.4f} from the exact target "
                    f"(pre-trained: {d_pre:.4f})")
        if float(x.mean()) < float(pre.mean()) - 0.2:   # the y = 0 target has mean -0.66
            raise CheckFailed("CTRL samples sit in the wrong mode: sample with label y = 1")
        raise CheckFailed(
            f"energy distance {d:.4f} to the exact target, not much closer than the pre-trained "
            f"model's {d_pre:.4f}: fine-tune a HeadAugmentedModel(pre.network, pre.sampler, "
            "num_labels=2) with finetune(aug, reward, seed=seed, **a4.FINETUNE), then "
            "sample(aug, n, c=None, y=1, generator=...)",
            partial=0.5 if d < 0.6 * d_pre else 0.0)

    return run_check("a4.q3", "ctrl_samples", 3, body, verbose)


def check_results(results, *, hidden: bool = False, verbose: bool = True):
    """Check the experiment's table ``{N: {"pretrained", "rejection", "ctrl": ED}}``: its
    structure and the qualitative picture it must show.

    Args:
        results: the student's table.
        hidden: accepted for the common check signature; the table has one variant.
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 2 points.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """

    def body():
        if not isinstance(results, dict) or sorted(results) != sorted(N_VALUES):
            raise CheckFailed(f"`results` must be a dict with the keys {list(N_VALUES)}")
        for n in N_VALUES:
            row = results[n]
            if not isinstance(row, dict) or set(row) != {"pretrained", "rejection", "ctrl"}:
                raise CheckFailed(f"results[{n}] must be a dict with keys 'pretrained', "
                                  "'rejection' and 'ctrl'")
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in row.values()):
                raise CheckFailed(f"results[{n}] must hold finite floats (energy distances)")
        lo, hi = results[N_VALUES[0]], results[N_VALUES[-1]]
        if not hi["pretrained"] > 5 * max(hi["rejection"], 1e-3):
            raise CheckFailed("with the largest N, rejection with the learned reward should be "
                              "far closer to the target than the pre-trained model: check that "
                              "each method's distance is to a4.exact_target()")
        if not hi["ctrl"] < 0.5 * hi["pretrained"]:
            raise CheckFailed("with the largest N, CTRL should be much closer to the target than "
                              "the pre-trained model: was it fine-tuned on the reward of that N?")
        if not lo["rejection"] > hi["rejection"]:
            raise CheckFailed(f"the rejection error should shrink from N = {N_VALUES[0]} to "
                              f"N = {N_VALUES[-1]}: is the reward refitted for every N?")
        return "table complete; the largest N beats the smallest and the pre-trained model"

    return run_check("a4.q4", "results", 2, body, verbose)


_ANSWERS = {
    "shrinks_with_N": ("reward", "compare the rejection column (reward error only) across N"),
    "ctrl_minus_rejection": ("finetuning", "CTRL and rejection use the same learned reward: "
                                           "what else differs between them?"),
    "cheaper_per_sample": ("ctrl", "count denoiser chains per accepted sample: 1/Z for "
                                   "rejection, one for a fine-tuned model"),
}


check_answers = choice_check("a4.q5", 2, _ANSWERS, "Chapter 8 (Experiments and error analysis).")

QUESTIONS = [
    Question("a4.q1", "fit_reward", 2, check_fit_reward, "logistic reward from N points"),
    Question("a4.q2", "rejection_target", 2, check_rejection, "rejection sampling"),
    Question("a4.q3", "ctrl_samples", 3, check_ctrl, "CTRL fine-tuning and sampling"),
    Question("a4.q4", "results", 2, check_results, "the sample-efficiency table"),
    Question("a4.q5", "answers", 2, check_answers, "interpretation"),
]

grade = grader(QUESTIONS)  # grade(namespace, hidden=True, verbose=True)

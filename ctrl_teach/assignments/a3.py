"""Assignment 3 (Chapter 5): a reward classifier, its calibration, its reliability diagram.

Data: points ``x ~ N(0, 1.5^2 I)`` in 2-D with labels drawn from the known probit classifier
``p(y = 1 | x) = Phi((x_1 + 0.5 x_2) / 1.2)`` (:func:`make_data`), so the Bayes-calibrated
probabilities are known. A wide MLP trained on 1000 such points is over-confident; temperature
scaling on the held-out split fixes most of it (Guo et al. 2017).

Questions (points):

* ``a3.q1`` (2) ``ece(probs, labels, n_bins)``: the expected calibration error;
* ``a3.q2`` (2) ``fit_temperature(log_probs, labels)``: the NLL-optimal temperature;
* ``a3.q3`` (3) ``reward``: the calibrated reward module, judged on fresh data;
* ``a3.q4`` (3) ``answers``: reading the reliability diagram (multiple choice).

Introduced in: Chapter 5 (CTRL on 2-D data).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._core import CheckFailed, Question, choice_check, run_check
from ._grading import grader

__all__ = ["make_data", "true_classifier", "check_ece", "check_fit_temperature",
           "check_reward", "check_answers", "QUESTIONS", "grade"]

W, SCALE, SPREAD = (1.0, 0.5), 1.2, 1.5
ECE_TARGET = 0.045


def true_classifier():
    """The known ``p(y = 1 | x) = Phi((x_1 + 0.5 x_2) / 1.2)`` that labels the data.

    Returns:
        A :class:`~ctrl_teach.ctrl.ProbitClassifier` (``num_labels = 2``).

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    from ..ctrl import ProbitClassifier

    return ProbitClassifier(list(W), 0.0, SCALE)


def make_data(n: int, seed: int):
    """Labelled points ``x ~ N(0, 1.5^2 I)``, ``y ~ Bernoulli(p(y = 1 | x))``.

    Args:
        n: number of points.
        seed: seeds a local generator (the global RNG is not used).

    Returns:
        ``(x (n, 2), y (n,))``.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    from .._checks import check_nonnegative_int, check_positive_int

    n, seed = check_positive_int("n", n), check_nonnegative_int("seed", seed)
    g = torch.Generator().manual_seed(seed)
    x = SPREAD * torch.randn(n, 2, generator=g)
    with torch.no_grad():
        p1 = true_classifier()(x).exp()[:, 1]
    y = (torch.rand(n, generator=g) < p1).long()
    return x, y


# ---------------------------------------------------------------------------------------
def _ece_variants(probs: np.ndarray, labels: np.ndarray, n_bins: int):
    conf = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    weighted = unweighted = signed = 0.0
    used = 0
    for b in range(n_bins):
        mask = which == b
        if mask.any():
            d = correct[mask].mean() - conf[mask].mean()
            weighted += mask.mean() * abs(d)
            signed += mask.mean() * d
            unweighted += abs(d)
            used += 1
    return {"ref": weighted, "unweighted_sum": unweighted, "unweighted_mean": unweighted / used,
            "signed": signed, "signed_abs": abs(signed)}


def _class1_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    conf = probs[:, 1]
    correct = (labels == 1).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    return float(sum((which == b).mean() * abs(correct[which == b].mean() - conf[which == b].mean())
                     for b in range(n_bins) if (which == b).any()))


def check_ece(ece, *, hidden: bool = False, verbose: bool = True):
    """Check ``ece(probs, labels, n_bins)`` against the top-label expected calibration error
    ``sum_b (n_b / N) |acc_b - conf_b|`` (Guo et al. 2017, eq. 3).

    Args:
        ece: the student's function.
        hidden: use the grader's cases (other seeds, label counts and bins).
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 2 points.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    def body():
        g = torch.Generator().manual_seed(313 if hidden else 3)
        cases = [(2, 10), (3, 15), (2, 5)] if hidden else [(2, 15), (4, 10)]
        for k, n_bins in cases:
            logits = 2.5 * torch.randn(2000, k, generator=g)
            probs = torch.softmax(logits, 1)
            # labels from a *less* confident law, so the model is over-confident
            labels = torch.multinomial(torch.softmax(logits / 2, 1), 1, generator=g)[:, 0]
            v = _ece_variants(probs.numpy(), labels.numpy(), n_bins)
            got = float(ece(probs.clone(), labels.clone(), n_bins))
            if math.isclose(got, v["ref"], abs_tol=1e-5):
                continue
            hints = {
                "unweighted_sum": "you summed |acc - conf| over bins without weighting each bin "
                                  "by its share of the samples n_b / N",
                "unweighted_mean": "you averaged |acc - conf| over bins; weight each bin by its "
                                   "share of the samples n_b / N instead",
                "signed": "take the absolute value |acc_b - conf_b| in each bin before summing",
                "signed_abs": "take the absolute value in each bin, not of the total",
            }
            for key, hint in hints.items():
                if math.isclose(got, v[key], abs_tol=1e-5):
                    raise CheckFailed(hint)
            if k == 2 and math.isclose(got, _class1_ece(probs.numpy(), labels.numpy(), n_bins),
                                       abs_tol=1e-5):
                raise CheckFailed("you binned p(y = 1); the top-label ECE bins the confidence "
                                  "max_k p_k and compares it with the accuracy of the argmax")
            raise CheckFailed(f"got {got:.5f}, expected {v['ref']:.5f} ({k} classes, {n_bins} "
                              "equal-width bins on [0, 1], right-closed like np.digitize(..., "
                              "right=True)): ECE = sum_b (n_b / N) |acc_b - conf_b|")
        return f"matches the top-label ECE on {len(cases)} cases"

    return run_check("a3.q1", "ece", 2, body, verbose)


# ---------------------------------------------------------------------------------------
def _nll(log_probs: torch.Tensor, labels: torch.Tensor, T: float) -> float:
    return float(torch.nn.functional.cross_entropy(log_probs / T, labels))


def _best_temperature(log_probs, labels) -> float:
    from ..ctrl import TemperatureScaled

    class _Fixed(torch.nn.Module):
        def forward(self, x, c=None):
            return x

    return TemperatureScaled.fit(_Fixed(), log_probs, labels).temperature


def check_fit_temperature(fit_temperature, *, hidden: bool = False, verbose: bool = True):
    """Check that ``fit_temperature(log_probs, labels) -> T`` minimises the NLL of
    ``log_softmax(log_probs / T)`` (temperature scaling, Guo et al. 2017, Sec. 4.2).

    Args:
        fit_temperature: the student's function.
        hidden: use the grader's cases (other seeds and mis-calibrations).
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 2 points.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    def body():
        g = torch.Generator().manual_seed(4242 if hidden else 42)
        for scale in ([4.0, 0.6] if hidden else [3.0, 0.5]):
            logits = 2.0 * torch.randn(3000, 3, generator=g)
            labels = torch.multinomial(torch.softmax(logits, 1), 1, generator=g)[:, 0]
            log_probs = torch.log_softmax(scale * logits, 1)
            T = fit_temperature(log_probs.clone(), labels.clone())
            T = float(T)
            best = _best_temperature(log_probs, labels)
            if not (math.isfinite(T) and T > 0):
                raise CheckFailed(f"returned T = {T}: a temperature is a positive number")
            if _nll(log_probs, labels, T) <= _nll(log_probs, labels, best) + 1e-3:
                continue
            if math.isclose(1 / T, best, rel_tol=0.05):
                raise CheckFailed(f"you returned 1/T ({T:.3f}, the best T is {best:.3f}): the "
                                  "calibrated log-probs are log_softmax(log_probs / T)")
            raise CheckFailed(
                f"T = {T:.3f} but the NLL is lowest at T = {best:.3f} (model over-confident by "
                f"a factor {scale}): minimise cross_entropy(log_probs / T, labels) over T > 0, "
                "e.g. by LBFGS or Adam on log T")
        return "finds the NLL-optimal temperature for over- and under-confident models"

    return run_check("a3.q2", "fit_temperature", 2, body, verbose)


# ---------------------------------------------------------------------------------------
def evaluate_reward(reward, seed: int, n: int = 5000) -> dict:
    """Score a reward on fresh data from :func:`make_data`.

    Args:
        reward: a module ``reward(x, c) -> (N, 2)`` log-probabilities.
        seed: seeds the fresh data.
        n: number of fresh points.

    Returns:
        A dict with ``ece``, ``nll``, ``nll_true`` (the true classifier's), ``accuracy``,
        ``best_temperature`` (a further temperature that would lower the NLL) and ``logp``.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    from ..ctrl import expected_calibration_error

    x, y = make_data(n, seed)
    with torch.no_grad():
        logp = reward(x, None)
        true_logp = true_classifier()(x)
    return dict(ece=expected_calibration_error(logp.exp(), y),
                nll=float(torch.nn.functional.nll_loss(logp, y)),
                nll_true=float(torch.nn.functional.nll_loss(true_logp, y)),
                accuracy=float((logp.argmax(1) == y).float().mean()),
                best_temperature=_best_temperature(logp, y), logp=logp)


def check_reward(reward, *, hidden: bool = False, verbose: bool = True):
    """Check the calibrated reward ``reward(x, c) -> (N, 2)`` log-probabilities on fresh
    data: no further temperature should help much, and the ECE must be below ``ECE_TARGET``.

    Args:
        reward: the student's reward module.
        hidden: evaluate on the grader's fresh data (another seed).
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 3 points (half marks when
        calibrated but above the ECE target).

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    def body():
        if not callable(reward):
            raise CheckFailed(f"`reward` must be a module reward(x, c) -> (N, 2) log-probs, "
                              f"got {type(reward).__name__}")
        r = evaluate_reward(reward, seed=2718 if hidden else 271)
        logp = r["logp"]
        if logp.shape[1:] != (2,):
            raise CheckFailed(f"reward(x, None) has shape {tuple(logp.shape)}, expected (N, 2)")
        if not torch.allclose(logp.exp().sum(1), torch.ones(len(logp)), atol=1e-4):
            raise CheckFailed("reward must return log-probabilities (rows of exp(.) sum to 1): "
                              "wrap the classifier in TemperatureScaled, or log_softmax(logp / T)")
        T = r["best_temperature"]
        summary = (f"fresh-data ECE {r['ece']:.3f}, NLL {r['nll']:.3f} (true classifier "
                   f"{r['nll_true']:.3f}), best further temperature {T:.2f}")
        if T > 1.35:
            raise CheckFailed(
                f"{summary}: your reward is over-confident. Did you calibrate it, and fit the "
                "temperature on the held-out split (fit.x_val, fit.y_val) rather than on the "
                "training data the classifier has memorised?")
        if T < 0.75:
            raise CheckFailed(f"{summary}: your reward is under-confident, the temperature is "
                              "too large (check you divide by T, not multiply)")
        if r["ece"] > ECE_TARGET:
            raise CheckFailed(f"{summary}: target ECE < {ECE_TARGET}", partial=0.5)
        return summary

    return run_check("a3.q3", "reward", 3, body, verbose)


# ---------------------------------------------------------------------------------------
# (right answer, hint for a wrong one); the hints point at the evidence, not the answer
_ANSWERS = {
    "diagram": ("below", "compare each point's accuracy (vertical) with its confidence "
                         "(horizontal) in the raw classifier's bins above 0.8"),
    "temperature": ("greater", "print reward.temperature"),
    "gamma": ("greater", "p^gamma with gamma > 1 is sharper than p, with gamma < 1 flatter: "
                         "which does an over-confident classifier resemble?"),
}


check_answers = choice_check("a3.q4", 3, _ANSWERS, "Chapter 5 (CTRL on 2-D data).")

QUESTIONS = [
    Question("a3.q1", "ece", 2, check_ece, "expected calibration error"),
    Question("a3.q2", "fit_temperature", 2, check_fit_temperature, "temperature scaling"),
    Question("a3.q3", "reward", 3, check_reward, "calibrated reward on fresh data"),
    Question("a3.q4", "answers", 3, check_answers, "reading the reliability diagram"),
]

grade = grader(QUESTIONS)  # grade(namespace, hidden=True, verbose=True)

"""Assignment 7 (Chapter 6): two labels, two datasets, one product reward.

The pre-trained model is the exact denoiser of the grid of the book's 2-D toy (condition
``c = 1``: nine Gaussians of std 0.2 on ``{-1.5, 0, 1.5}^2``; cosine schedule, ``T = 50``),
sampled in 10 DDPM-type steps. Two annotators label a point independently with the true
rules ``p(y1 = 1 | x) = Phi(2 x_1)`` ("right") and ``p(y2 = 1 | x) = Phi(2 x_2)`` ("top");
each task has its own offline dataset, and neither dataset has both labels. The exact target
of a label pair is the pre-trained law tilted by the product of the two classifiers, sampled
exactly by rejection from the pre-trained chain.

Questions (points):

* ``a7.q1`` (2) ``fit_task(x, y, seed)``: a logistic classifier of one task;
* ``a7.q2`` (2) ``product_log_prob(task1, task2, x)``: the ``(N, 4)`` multi-task reward over
  flat labels ``2 y1 + y2``;
* ``a7.q3`` (2) ``ci_gap(y1, y2, p1, p2)``: a test of conditional independence from jointly
  labelled data, against its exact expectation in a world that violates it;
* ``a7.q4`` (3) ``trained``: one fine-tuned model for all four label pairs, against rejection
  sampling;
* ``a7.q5`` (2) ``answers``: what the numbers say (multiple choice).

Introduced in: Chapter 6 (Conditional independence and multi-task control).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._core import CheckFailed, Question, choice_check, run_check
from ._grading import grader

__all__ = ["NUM_STEPS", "FINETUNE", "LogisticTask", "FunctionReward", "make_pretrained",
           "true_rules", "offline_datasets", "joint_annotations", "reference_fit_task",
           "joint_accuracy", "check_fit_task", "check_product", "check_ci_gap",
           "check_trained", "check_answers", "QUESTIONS", "grade"]

NUM_STEPS = 10
FINETUNE = dict(iterations=400, batch_size=64, lr=3e-3)   # the notebook's budget
FIT = dict(iterations=400, batch_size=256, lr=0.05, holdout=0.0)
ACCURACY_TOLERANCE = 0.06


class LogisticTask(nn.Module):
    """``log p(y | x) = log_softmax(W x + b)``, a 2-D logistic classifier of one binary task
    with the reward contract (``forward(x, c=None) -> (N, 2)``, ``num_labels = 2``), weights
    starting at zero.

    Introduced in: Chapter 6 (Conditional independence and multi-task control).
    """

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.data_shape, self.num_labels = (2,), 2

    def forward(self, x, c=None):
        return torch.log_softmax(self.linear(x), dim=-1)


class FunctionReward(nn.Module):
    """A reward module from a function ``fn(x) -> (N, num_labels)`` log-probabilities (the
    reward contract of :mod:`ctrl_teach.target`; ``c`` is ignored).

    Args:
        fn: the function.
        num_labels: its number of columns.
        modules: modules ``fn`` uses (registered so that ``.to(device)`` moves them).

    Introduced in: Chapter 6 (Conditional independence and multi-task control).
    """

    def __init__(self, fn, num_labels: int, modules=()):
        super().__init__()
        self.fn, self.num_labels, self.data_shape = fn, int(num_labels), (2,)
        self.parts = nn.ModuleList(list(modules))

    def forward(self, x, c=None):
        return self.fn(x)


def _grid():
    from ..data.toys import GaussianMixture

    coords = torch.tensor([-1.5, 0.0, 1.5])
    means = torch.stack(torch.meshgrid(coords, coords, indexing="ij"), -1).reshape(-1, 2)
    return GaussianMixture(torch.ones(9), means, torch.full((9,), 0.2))


def make_pretrained():
    """The pre-trained model: the exact denoiser of the toy's grid, 10 DDPM-type steps.

    Returns:
        A :class:`~ctrl_teach.pretrained.PretrainedDiffusion` (``pre.network``,
        ``pre.sampler``, ``pre.sample(n, c=None, generator=g)``).

    Introduced in: Chapter 6 (Conditional independence and multi-task control).
    """
    from ..diffusion import DiffusionSampler, ExactMixtureDenoiser, NoiseSchedule
    from ..pretrained import PretrainedDiffusion

    schedule = NoiseSchedule.cosine(50, max_beta=0.8)
    network = ExactMixtureDenoiser(_grid(), schedule)
    sampler = DiffusionSampler(schedule, num_steps=NUM_STEPS, eta=1.0)
    return PretrainedDiffusion("a7-grid", network, schedule, sampler, {})


def true_rules():
    """The two true rules ``Phi(2 x_1)`` and ``Phi(2 x_2)``.

    Returns:
        Two :class:`~ctrl_teach.ctrl.ProbitClassifier`.

    Introduced in: Chapter 6 (Conditional independence and multi-task control).
    """
    from ..ctrl import ProbitClassifier

    return ProbitClassifier([2.0, 0.0]), ProbitClassifier([0.0, 2.0])


def _bernoulli(p, u):
    return (u < p).long()


def offline_datasets(seed: int = 0, n: int = 1500):
    """The two disjoint offline datasets: ``D1`` (uniform inputs on ``[-3, 3]^2``, label
    ``y1`` only) and ``D2`` (Gaussian inputs of std 1.5, label ``y2`` only).

    Args:
        seed: seeds a local generator.
        n: points per dataset.

    Returns:
        ``((x1, y1), (x2, y2))``.

    Introduced in: Chapter 6 (Conditional independence and multi-task control).
    """
    g = torch.Generator().manual_seed(seed)
    rule1, rule2 = true_rules()
    x1 = 6 * torch.rand(n, 2, generator=g) - 3
    x2 = 1.5 * torch.randn(n, 2, generator=g)
    with torch.no_grad():
        y1 = _bernoulli(rule1(x1)[:, 1].exp(), torch.rand(n, generator=g))
        y2 = _bernoulli(rule2(x2)[:, 1].exp(), torch.rand(n, generator=g))
    return (x1, y1), (x2, y2)


def joint_annotations(x: torch.Tensor, rho: float, seed: int):
    """Both labels for every point. With probability ``1 - rho`` the two annotators draw
    independently (``y1 ~ Bern(p1(x))``, ``y2 ~ Bern(p2(x))``); with probability ``rho`` they
    share one uniform number (``y_k = 1[u < p_k(x)]``), which keeps each rule but correlates
    them: ``P(y1 = y2 = 1 | x) = rho min(p1, p2) + (1 - rho) p1 p2``. ``rho = 0`` is the
    conditionally independent world.

    Args:
        x: ``(n, 2)`` points.
        rho: the probability of a shared draw, in ``[0, 1]``.
        seed: seeds a local generator.

    Returns:
        ``(y1, y2, p1, p2)``: the labels and the true probabilities ``p_k(x)``.

    Introduced in: Chapter 6 (Conditional independence and multi-task control).
    """
    g = torch.Generator().manual_seed(seed)
    rule1, rule2 = true_rules()
    with torch.no_grad():
        p1, p2 = rule1(x)[:, 1].exp(), rule2(x)[:, 1].exp()
    n = x.shape[0]
    u1, u2, shared = (torch.rand(n, generator=g) for _ in range(3))
    u2 = torch.where(shared < rho, u1, u2)
    return _bernoulli(p1, u1), _bernoulli(p2, u2), p1, p2


def reference_fit_task(x, y, seed: int) -> LogisticTask:
    """The reference answer to q1: :func:`~ctrl_teach.ctrl.train_classifier` with the
    settings :data:`FIT` on a fresh :class:`LogisticTask`.

    Args:
        x: ``(n, 2)`` inputs.
        y: ``(n,)`` labels.
        seed: the training seed.

    Returns:
        The trained, frozen classifier.

    Introduced in: Chapter 6 (Conditional independence and multi-task control).
    """
    from ..ctrl import train_classifier

    model = LogisticTask()
    train_classifier(model, x, y, seed=seed, **FIT)
    return model.requires_grad_(False)


def joint_accuracy(x: torch.Tensor, flat_label: int) -> float:
    """``E[p_true(y1 | x) p_true(y2 | x)]`` for the pair ``(y1, y2) = divmod(flat_label, 2)``:
    the probability that both annotators give the requested labels.

    Args:
        x: ``(n, 2)`` samples.
        flat_label: ``2 y1 + y2``.

    Returns:
        A float in ``[0, 1]``.

    Introduced in: Chapter 6 (Conditional independence and multi-task control).
    """
    y1, y2 = divmod(int(flat_label), 2)
    rule1, rule2 = true_rules()
    with torch.no_grad():
        return float((rule1(x)[:, y1] + rule2(x)[:, y2]).exp().mean())


def _grid_points(g, n=200):
    return 6 * torch.rand(n, 2, generator=g) - 3


# ---------------------------------------------------------------------------------------
# q1: fit_task
# ---------------------------------------------------------------------------------------
def check_fit_task(fit_task, *, hidden: bool = False, verbose: bool = True):
    """Check ``fit_task(x, y, seed)`` against :func:`reference_fit_task` (same probabilities),
    and each learned task against its true rule: mean absolute error of ``p(y = 1 | x)`` on
    the square ``[-3, 3]^2`` below 0.06.

    Args:
        fit_task: the student's function.
        hidden: use the grader's datasets.
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 2 points.

    Introduced in: Chapter 6 (Conditional independence and multi-task control).
    """

    def body():
        (x1, y1), (x2, y2) = offline_datasets(seed=9 if hidden else 0)
        rules = true_rules()
        g = torch.Generator().manual_seed(99 if hidden else 1)
        pts = _grid_points(g)
        errs = []
        for k, (x, y, rule) in enumerate(((x1, y1, rules[0]), (x2, y2, rules[1]))):
            model = fit_task(x, y, k + 1)
            if not isinstance(model, nn.Module) or getattr(model, "num_labels", None) != 2:
                raise CheckFailed("fit_task must return the trained a7.LogisticTask()")
            with torch.no_grad():
                got = model(pts)
            if got.shape != (len(pts), 2):
                raise CheckFailed(f"the classifier returns shape {tuple(got.shape)}, expected "
                                  f"({len(pts)}, 2) log-probabilities")
            if float(got.exp()[:, 1].std()) < 1e-3:
                raise CheckFailed("the classifier predicts the same probabilities everywhere: "
                                  "was it trained (train_classifier(model, x, y, ...))?")
            reference = reference_fit_task(x, y, k + 1)
            with torch.no_grad():
                want = reference(pts)
            if not torch.allclose(got, want, atol=1e-4):
                raise CheckFailed(f"task {k + 1}: not the probabilities of the reference fit; "
                                  "use train_classifier(model, x, y, seed=seed, **a7.FIT)")
            with torch.no_grad():
                errs.append(float((got.exp()[:, 1] - rule(pts)[:, 1].exp()).abs().mean()))
        if max(errs) > 0.06:
            raise CheckFailed(f"mean error of p(y = 1 | x) against the true rules {errs}: "
                              "report this to your instructor")
        return ("both tasks match the reference fit; mean |p - p_true| "
                + " and ".join(f"{e:.3f}" for e in errs))

    return run_check("a7.q1", "fit_task", 2, body, verbose)


# ---------------------------------------------------------------------------------------
# q2: product_log_prob
# ---------------------------------------------------------------------------------------
def check_product(product_log_prob, *, hidden: bool = False, verbose: bool = True):
    """Check ``product_log_prob(task1, task2, x) -> (N, 4)`` (eq. ``eq-ch6-reward``) against
    :class:`~ctrl_teach.ctrl.MultiTaskReward` with ``flat=True`` (column ``2 y1 + y2``), for
    two pairs of classifiers.

    Args:
        product_log_prob: the student's function.
        hidden: use the grader's classifiers and points.
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 2 points.

    Introduced in: Chapter 6 (Conditional independence and multi-task control).
    """

    def body():
        from ..ctrl import MultiTaskReward, ProbitClassifier

        g = torch.Generator().manual_seed(77 if hidden else 7)
        pairs = [true_rules(), (ProbitClassifier([1.0, -0.5], 0.3), ProbitClassifier([0.2, 1.5]))]
        if hidden:
            pairs.append((ProbitClassifier([-2.0, 0.4], -0.2, 0.7), ProbitClassifier([0.5, 0.5])))
        for t1, t2 in pairs:
            x = _grid_points(g, 50)
            got = product_log_prob(t1, t2, x.clone())
            if not isinstance(got, torch.Tensor) or got.shape != (50, 4):
                raise CheckFailed(f"must return a tensor of shape (50, 4), got "
                                  f"{getattr(got, 'shape', type(got).__name__)}")
            ref = MultiTaskReward([t1, t2], flat=True)
            want = torch.stack([ref.log_likelihood(x, None, torch.full((50,), k))
                                for k in range(4)], 1)
            if torch.allclose(got, want, atol=1e-5):
                continue
            if torch.allclose(got, want[:, [0, 2, 1, 3]], atol=1e-5):
                raise CheckFailed("columns in the wrong order: the flat label is row-major, "
                                  "2 * y1 + y2 (MultiTaskReward.encode), so column 1 is "
                                  "(y1, y2) = (0, 1)")
            if torch.allclose(got, want.exp(), atol=1e-5):
                raise CheckFailed("those are probabilities: return log-probabilities, "
                                  "log p1(y1 | x) + log p2(y2 | x)")
            raise CheckFailed("column 2 y1 + y2 must be log p1(y1 | x) + log p2(y2 | x): the "
                              "product of the two classifiers, one term per task")
        return "matches MultiTaskReward(flat=True) on every label pair; rows sum to one"

    return run_check("a7.q2", "product_log_prob", 2, body, verbose)


# ---------------------------------------------------------------------------------------
# q3: ci_gap
# ---------------------------------------------------------------------------------------
def check_ci_gap(ci_gap, *, hidden: bool = False, verbose: bool = True):
    """Check ``ci_gap(y1, y2, p1, p2) -> (gap, se)``, the mean of ``y1 y2 - p1 p2`` and its
    standard error: exactly on fixed inputs, then on annotations of pre-trained samples
    (:func:`joint_annotations`): close to 0 when the annotators are independent given ``x``,
    and within 4 standard errors of its exact expectation ``rho E[min(p1, p2) - p1 p2]`` when
    they share draws with probability ``rho``.

    Args:
        ci_gap: the student's function.
        hidden: use the grader's samples, seeds and ``rho``.
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 2 points.

    Introduced in: Chapter 6 (Conditional independence and multi-task control).
    """

    def body():
        g = torch.Generator().manual_seed(303 if hidden else 3)
        y1, y2 = (torch.rand(40, generator=g) < 0.5).long(), (torch.rand(40, generator=g)
                                                              < 0.5).long()
        p1, p2 = torch.rand(40, generator=g), torch.rand(40, generator=g)
        out = ci_gap(y1, y2, p1, p2)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise CheckFailed("must return a pair (gap, standard error)")
        d = (y1 * y2).double() - (p1 * p2).double()
        gap, se = (float(v) for v in out)
        if not math.isclose(gap, float(d.mean()), abs_tol=1e-6):
            if math.isclose(gap, float((y1 * y2).double().mean() - p1.mean() * p2.mean()),
                            abs_tol=1e-6):
                raise CheckFailed("you multiplied the averages: average the products "
                                  "p1(x) p2(x) point by point (independence is *given x*)")
            raise CheckFailed("gap must be the mean over points of y1 y2 - p1 p2")
        if not math.isclose(se, float(d.std()) / 40**0.5, rel_tol=1e-3):
            raise CheckFailed("se must be the standard deviation of y1 y2 - p1 p2 over "
                              "sqrt(n)", partial=0.5)
        pre = make_pretrained()
        x = pre.sample(4000, c=None, generator=torch.Generator().manual_seed(31 if hidden
                                                                             else 1))
        rho = 0.6 if hidden else 0.5
        for r, seed in ((0.0, 4), (rho, 5)):
            y1, y2, p1, p2 = joint_annotations(x, r, seed + (100 if hidden else 0))
            gap, se = (float(v) for v in ci_gap(y1, y2, p1, p2))
            want = float((r * (torch.minimum(p1, p2) - p1 * p2)).mean())
            if abs(gap - want) > 4 * se:
                raise CheckFailed(f"rho = {r}: gap {gap:.4f} +- {se:.4f}, expected "
                                  f"{want:.4f}: report this to your instructor")
        return (f"exact on fixed inputs; 0 within 4 SE for independent annotators, "
                f"{want:.3f} within 4 SE at rho = {rho}")

    return run_check("a7.q3", "ci_gap", 2, body, verbose)


# ---------------------------------------------------------------------------------------
# q4: trained
# ---------------------------------------------------------------------------------------
def _reference_reward():
    from ..ctrl import MultiTaskReward

    (x1, y1), (x2, y2) = offline_datasets(0)
    return MultiTaskReward([reference_fit_task(x1, y1, 1), reference_fit_task(x2, y2, 2)],
                           flat=True)


def check_trained(trained, *, hidden: bool = False, verbose: bool = True):
    """Check the fine-tuned model ``trained``: for each of the four label pairs, the joint
    accuracy of its samples under the true rules (:func:`joint_accuracy`) within
    :data:`ACCURACY_TOLERANCE` of exact samples of the target (rejection sampling from the
    pre-trained chain with the reference product reward), and its mean within 0.15 of theirs.

    Args:
        trained: the student's fine-tuned :class:`~ctrl_teach.ctrl.HeadAugmentedModel`.
        hidden: evaluate with the grader's seeds.
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 3 points (an equal share
        per label pair).

    Introduced in: Chapter 6 (Conditional independence and multi-task control).
    """

    def body():
        from ..ctrl import HeadAugmentedModel, rejection_sample, sample

        if not isinstance(trained, HeadAugmentedModel) or trained.num_labels != 4:
            raise CheckFailed("`trained` must be the HeadAugmentedModel with num_labels=4 that "
                              "you fine-tuned")
        if trained.sampler.num_steps != NUM_STEPS:
            raise CheckFailed(f"`trained` must use pre.sampler ({NUM_STEPS} steps)")
        pre, reward = make_pretrained(), _reference_reward()
        g = torch.Generator().manual_seed(2024 if hidden else 24)
        x_pre = pre.sample(16000, c=None, generator=g)
        wrong, lines, untrained = [], [], 0
        for flat in range(4):
            target = rejection_sample(x_pre, reward, c=None, y=flat, generator=g)
            with torch.no_grad():
                x = sample(trained, 2000, c=None, y=flat, generator=g)
            acc, acc_t = joint_accuracy(x, flat), joint_accuracy(target, flat)
            shift = float((x.mean(0) - target.mean(0)).norm())
            lines.append(f"{divmod(flat, 2)}: {acc:.2f} vs {acc_t:.2f}")
            if abs(acc - acc_t) > ACCURACY_TOLERANCE or shift > 0.15:
                wrong.append(f"(y1, y2) = {divmod(flat, 2)}: joint accuracy {acc:.3f} against "
                             f"the target's {acc_t:.3f}, mean {shift:.2f} away")
                untrained += abs(acc - joint_accuracy(x_pre, flat)) < 0.05
        if wrong:
            hint = (" The model has not moved from the pre-trained one: fine-tune it with "
                    "finetune(aug, reward, seed=0, **a7.FINETUNE)." if untrained == len(wrong)
                    else " Train longer, or check the reward's column order (q2).")
            raise CheckFailed("; ".join(wrong) + "." + hint, partial=(4 - len(wrong)) / 4)
        return "joint accuracy within tolerance of rejection sampling: " + ", ".join(lines)

    return run_check("a7.q4", "trained", 3, body, verbose)


_ANSWERS = {
    "disjoint_detects": ("no", "D1 never shows y2 and D2 never shows y1: can any statistic of "
                               "them see how the two labels co-occur?"),
    "product_under_correlation": ("under", "compare rho min(p1, p2) + (1 - rho) p1 p2 with "
                                           "p1 p2"),
    "stronger_with_weights_2_1": ("y1", "weights multiply the log-probabilities: p1^2 p2"),
}

check_answers = choice_check("a7.q5", 2, _ANSWERS,
                             "Chapter 6 (Conditional independence and multi-task control).")


QUESTIONS = [
    Question("a7.q1", "fit_task", 2, check_fit_task, "one classifier per task"),
    Question("a7.q2", "product_log_prob", 2, check_product, "the product reward"),
    Question("a7.q3", "ci_gap", 2, check_ci_gap, "testing conditional independence"),
    Question("a7.q4", "trained", 3, check_trained, "one model for four label pairs"),
    Question("a7.q5", "answers", 2, check_answers, "reading the numbers"),
]

grade = grader(QUESTIONS)  # grade(namespace, hidden=True, verbose=True)

"""The two test problems of Chapter 8: a 2-D toy with a known labelling rule, and digits.

A :class:`Problem` bundles everything an experiment needs and every method shares:

* the frozen pre-trained eps-network, its schedule and the sampler all methods use;
* an unlabelled offline ``pool`` ``(x, c)`` from which labelled datasets are drawn, and the
  *true* labelling rule ``p_true(y | x)`` (``label`` draws from it, ``true_prob`` scores it);
* the exact target ``p_data(x | c) p_true(y | x) / Z`` sampled by rejection from fresh data
  (``target``), the reference for distances;
* the architectures of the classifiers the methods learn.

Problems:

* :func:`toy_problem`: ``load_pretrained("toy-gmm")`` (ring ``c = 0``, grid ``c = 1``), a
  20-step eta = 1 sampler with ``x0_hat`` clipped to ``[-3, 3]``, and a probit labelling rule
  ``p_true(y = 1 | x) = Phi(x_1 / s)`` (labels are random, so the target is a soft tilt).
* :func:`digits_problem`: ``load_pretrained("digits")`` (``c`` = digit), a 10-step DDIM
  eta = 1 sampler with ``x0_hat`` clipped to ``[-1, 1]``, and ``y`` = the ink-mass tertile of
  :func:`~ctrl_teach.data.make_scorer` (a deterministic rule). Evaluation draws ``c``
  uniformly over the ten digits (``c = None`` in :attr:`Problem.eval_pairs`). Distances are
  measured in pixel space: on the digit oracle's features the energy distance between two
  disjoint halves of the same real class fluctuated by about as much as the distance of the
  pre-trained model to the target (measured while building this chapter), in pixels far less.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .._checks import check_positive_float, check_positive_int
from ..diffusion import DiffusionSampler, NoiseSchedule

__all__ = ["Problem", "toy_problem", "digits_problem", "two_attribute_toy"]


@dataclass
class Problem:
    """One conditioning problem shared by every method (see the module docstring).

    Attributes:
        name: ``"toy-gmm"``, ``"toy-gmm-2attr"`` or ``"digits"``.
        network: the frozen pre-trained eps-network.
        schedule: its noise schedule.
        sampler: the sampler all methods use.
        num_conditions: number of pre-trained conditions ``c``.
        num_labels: number of new labels ``y``.
        pool_x: the unlabelled offline pool labelled datasets are drawn from.
        pool_c: the conditions of the pool points.
        label: ``label(x, generator) -> (N,)`` labels drawn from the true rule.
        true_prob: ``true_prob(x, y) -> (N,)`` the true ``p(y | x)`` of requested labels.
        target: ``target(n, *, c, y, generator, part="eval") -> (n, ...)`` exact target
            samples (``c`` None: uniform over conditions). ``part="reference"`` draws from data
            disjoint from ``part="eval"`` (digits: the other half of the real digits; the
            toy has unlimited data), so a reference row is an independent exact sample.
        eval_pairs: the ``(c, y)`` pairs the metrics average over.
        make_classifier: a fresh clean classifier ``(x, c) -> (N, K)``.
        make_noisy_classifier: a fresh noise-conditioned classifier ``(x_t, t, c) -> (N, K)``.
        clip_x0: clamp used by the sampler (and by DPS on ``x0_hat``).
        settings: training budgets of the methods (see :mod:`.config`).
        oracle: optional evaluation model of ``c`` (digits: the digit oracle).
        features: optional ``features(x) -> (N, D)`` in which distances and diversity are
            measured (default: flattened ``x``).
        attribute_prob: optional ``attribute_prob(x, k) -> (N,)``, the true
            ``p(y_k = 1 | x)`` of attribute ``k`` (the two-attribute toy).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """

    name: str
    network: nn.Module
    schedule: NoiseSchedule
    sampler: DiffusionSampler
    num_conditions: int
    num_labels: int
    pool_x: torch.Tensor
    pool_c: torch.Tensor
    label: Callable
    true_prob: Callable
    target: Callable
    eval_pairs: list
    make_classifier: Callable
    make_noisy_classifier: Callable
    clip_x0: float | None
    settings: dict = field(default_factory=dict)
    oracle: nn.Module | None = None
    features: Callable | None = None
    attribute_prob: Callable | None = None

    def condition_tensor(self, c, n: int):
        """``c`` as a long ``(n,)`` tensor.

        Args:
            c: an int condition, or ``None``: equal contiguous blocks of every condition
                (``c_i = floor(i C / n)``).
            n: the batch size.

        Returns:
            A long tensor ``(n,)``.
        """
        if c is None:
            return torch.arange(n) * self.num_conditions // n
        return torch.full((n,), int(c), dtype=torch.long)

    def labelled_dataset(self, n: int | None, seed: int = 0):
        """A labelled dataset drawn from the pool, labelled by the true rule.

        Args:
            n: number of pool points (``None``: all of them).
            seed: seeds the choice of points and the labels.

        Returns:
            ``(x, c, y)``.
        """
        gen = torch.Generator().manual_seed(seed)
        total = self.pool_x.shape[0]
        n = total if n is None else min(check_positive_int("n", n), total)
        idx = torch.randperm(total, generator=gen)[:n]
        x, c = self.pool_x[idx], self.pool_c[idx]
        return x, c, self.label(x, gen)


def _probit(x1: torch.Tensor, s: float) -> torch.Tensor:
    return torch.special.ndtr(x1 / s)


def _data_rejection_target(toy, num_conditions: int, true_prob: Callable, oversample: int):
    """``target(n, *, c, y, generator, part)`` for a toy with unlimited data: rounds of
    ``oversample * n`` fresh data points, each kept with probability ``true_prob(x, y)``
    (the toy has no finite data, so ``part`` is ignored)."""

    def target(n, *, c, y, generator, part="eval"):
        out, have, m = [], 0, oversample * n
        while have < n:
            cond = c if c is not None else torch.randint(num_conditions, (m,),
                                                         generator=generator)
            cand = toy.sample(m, cond, generator=generator)
            keep = torch.rand(m, generator=generator) < true_prob(cand, y)
            out.append(cand[keep])
            have += int(keep.sum())
        return torch.cat(out)[:n]

    return target


def toy_problem(label_scale: float = 0.5, pool_size: int = 10000, num_steps: int = 20,
                settings: dict | None = None, device=None) -> Problem:
    """The 2-D toy: toy-gmm, ``p_true(y = 1 | x) = Phi(x_1 / label_scale)``.

    Args:
        label_scale: ``s`` of the probit rule (smaller = sharper labels).
        pool_size: size of the offline pool (the ``N = all`` dataset).
        num_steps: sampler steps ``K`` (eta = 1, ``clip_x0 = 3``).
        settings: method budgets (default: the quick profile of :mod:`.config`).
        device: torch device of the pre-trained network (default CPU).

    Returns:
        A :class:`Problem` (``name="toy-gmm"``, evaluation pairs ``(c, y) in {0, 1}^2``).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    from ..baselines import NoisyMLPClassifier
    from ..ctrl import MLPClassifier
    from ..data import load_toy
    from ..pretrained import load_pretrained
    from .config import experiment_config

    s = check_positive_float("label_scale", label_scale)
    pre = load_pretrained("toy-gmm", device=device)
    sampler = DiffusionSampler(pre.schedule, num_steps=num_steps, eta=1.0, clip_x0=3.0)
    toy = load_toy("gmm")
    pool_x, pool_c = toy.sample_joint(check_positive_int("pool_size", pool_size),
                                      generator=torch.Generator().manual_seed(101))

    def true_prob(x, y):
        p1 = _probit(x[:, 0].float().cpu(), s)
        y = torch.as_tensor(y).cpu().expand(x.shape[0])
        return torch.where(y == 1, p1, 1 - p1)

    def label(x, generator):
        return (torch.rand(x.shape[0], generator=generator) < _probit(x[:, 0].cpu(), s)).long()

    return Problem(
        name="toy-gmm", network=pre.network, schedule=pre.schedule, sampler=sampler,
        num_conditions=2, num_labels=2, pool_x=pool_x, pool_c=pool_c, label=label,
        true_prob=true_prob, target=_data_rejection_target(toy, 2, true_prob, 4),
        eval_pairs=[(0, 0), (0, 1), (1, 0), (1, 1)],
        make_classifier=lambda: MLPClassifier(2, 2, width=64, depth=2),
        make_noisy_classifier=lambda: NoisyMLPClassifier(2, 2, pre.schedule.T, width=128),
        clip_x0=3.0, settings=dict(settings or experiment_config("quick")["toy"]))


def two_attribute_toy(label_scale: float = 0.5, pool_size: int = 10000, num_steps: int = 20,
                      settings: dict | None = None, device=None) -> Problem:
    """The toy with two attributes, ``y_1 ~ Phi(x_1 / s)`` and ``y_2 ~ Phi(x_2 / s)`` drawn
    independently given ``x``; the flat label is ``y = 2 y_1 + y_2`` (``K = 4``, the order of
    :class:`~ctrl_teach.ctrl.MultiTaskReward` with ``flat=True``).

    ``label(x, g, task)`` labels one attribute (``task`` 0 or 1) or both (``task=None``, flat);
    ``attribute_prob(x, k)`` is the true ``p(y_k = 1 | x)``. Exact targets are drawn by data
    rejection with ``p(y_1 | x) p(y_2 | x)``.

    Args:
        label_scale: ``s`` of both probit rules.
        pool_size: size of the offline pool.
        num_steps: sampler steps ``K``.
        settings: method budgets (default: the quick profile of :mod:`.config`).
        device: torch device of the pre-trained network (default CPU).

    Returns:
        A new :class:`Problem` (``name="toy-gmm-2attr"``, ``num_labels=4``, evaluation pairs
        ``c in {0, 1}``, flat ``y in {0, 3}``), built from :func:`toy_problem`'s with
        :func:`dataclasses.replace`.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    base = toy_problem(label_scale, pool_size, num_steps, settings, device)
    s = label_scale

    def attr_prob(x, k):
        return _probit(x[:, k].float().cpu(), s)

    def true_prob(x, y):
        y = torch.as_tensor(y).cpu().expand(x.shape[0])
        p1, p2 = attr_prob(x, 0), attr_prob(x, 1)
        return (torch.where(y // 2 == 1, p1, 1 - p1) * torch.where(y % 2 == 1, p2, 1 - p2))

    def label(x, generator, task=None):
        ys = [(torch.rand(x.shape[0], generator=generator) < attr_prob(x, k)).long()
              for k in (0, 1)]
        return ys[task] if task is not None else 2 * ys[0] + ys[1]

    from ..data import load_toy

    target = _data_rejection_target(load_toy("gmm"), base.num_conditions, true_prob, 8)
    return dataclasses.replace(
        base, name="toy-gmm-2attr", num_labels=4, true_prob=true_prob, label=label,
        target=target, eval_pairs=[(c, y) for c in (0, 1) for y in (0, 3)],
        attribute_prob=attr_prob)


def digits_problem(num_steps: int = 10, scorer: str = "ink", settings: dict | None = None,
                   device=None) -> Problem:
    """8x8 digits: ``c`` = digit, ``y`` = the ``scorer``'s tertile (deterministic true rule).

    The pool is the train split (1347 digits); targets are drawn from a fixed half of all
    1797 real digits with the requested ``y`` (and ``c``), i.e. rejection with a 0/1
    acceptance; the other half is the independent reference (``part="reference"``). The
    pre-trained model was trained on all 1797 digits and its samples lie closer to real
    digits than real digits lie to each other, so energy distances to the target can be
    *below* the reference row's (and negative).

    Args:
        num_steps: sampler steps ``K`` (DDIM eta = 1, ``clip_x0 = 1``).
        scorer: the :func:`~ctrl_teach.data.make_scorer` whose tertile is ``y``.
        settings: method budgets (default: the quick profile of :mod:`.config`).
        device: torch device of the pre-trained network and the oracle (default CPU).

    Returns:
        A :class:`Problem` (``name="digits"``, ``c`` uniform in the evaluation pairs, the
        digit oracle as ``oracle``).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    from ..baselines import NoisyCNNClassifier
    from ..ctrl import CNNClassifier
    from ..data import load_digit_images, make_scorer
    from ..pretrained import load_digit_oracle, load_pretrained
    from .config import experiment_config

    pre = load_pretrained("digits", device=device)
    sampler = DiffusionSampler(pre.schedule, num_steps=num_steps, eta=1.0, clip_x0=1.0)
    true = make_scorer(scorer)
    pool_x, pool_c = load_digit_images(split="train")
    all_x, all_c = load_digit_images(split="all")
    all_y = true.label(all_x)
    oracle = load_digit_oracle(device=device)

    def true_prob(x, y):
        y = torch.as_tensor(y).cpu().expand(x.shape[0])
        return (true.label(x.detach().cpu()) == y).float()

    def label(x, generator):
        return true.label(x.detach().cpu())

    half = torch.zeros(len(all_x), dtype=torch.bool)
    half[torch.randperm(len(all_x), generator=torch.Generator().manual_seed(202))[
        : len(all_x) // 2]] = True

    def target(n, *, c, y, generator, part="eval"):
        mask = (all_y == int(y)) & (half if part == "eval" else ~half)
        if c is not None:
            mask &= all_c == int(c)
        x = all_x[mask]
        return x[torch.randperm(len(x), generator=generator)[:n]]

    return Problem(
        name="digits", network=pre.network, schedule=pre.schedule, sampler=sampler,
        num_conditions=10, num_labels=true.num_labels, pool_x=pool_x, pool_c=pool_c,
        label=label, true_prob=true_prob, target=target,
        eval_pairs=[(None, y) for y in range(true.num_labels)],
        make_classifier=lambda: CNNClassifier(true.num_labels),
        make_noisy_classifier=lambda: NoisyCNNClassifier(true.num_labels,
                                                         num_timesteps=pre.schedule.T),
        clip_x0=1.0, settings=dict(settings or experiment_config("quick")["digits"]),
        oracle=oracle)

"""CTRL on 8x8 digits: the recipe and the evaluation of Chapter 7 (CTRL on images).

The pre-trained model ``load_pretrained("digits")`` samples ``p(x | c)`` for a digit ``c``.
The new label ``y`` is a bucket of a true scorer (:func:`ctrl_teach.data.make_scorer`), e.g.
"little ink" / "much ink". The recipe:

1. :func:`fit_digit_reward`: a CNN classifier ``p(y | x)`` on an offline set of real, labelled
   digits, temperature-scaled on its held-out split;
2. :func:`digit_sampler`: a short sampler (DDIM grid, ``eta = 1``, ``x0_hat`` clipped to the
   image range) so that back-propagating through the whole chain is affordable on a CPU;
3. ``HeadAugmentedModel(..., x0_input=True)`` fine-tuned with :func:`~ctrl_teach.ctrl.finetune`;
4. :func:`evaluate_digits`: per ``(c, y)``, the fine-tuned samples against rejection samples
   of the exact target ``p_pre(x | c) p(y | x) / Z`` from the same pre-trained sampler.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._checks import check_positive_int
from ..data import make_digit_offline_dataset, make_scorer
from ..diffusion import DiffusionSampler
from ..evaluation import frechet_distance
from ..profiles import make_generator, seeded_init
from ..target import log_partition, rejection_sample
from .calibration import RewardFit, train_calibrated_classifier
from .finetune import rollout, sample
from .references import certificate_gap
from .rewards import CNNClassifier, TemperatureScaled

__all__ = ["DigitReward", "fit_digit_reward", "digit_sampler", "evaluate_digits"]


@dataclass
class DigitReward:
    """A calibrated digit reward (what :func:`fit_digit_reward` returns).

    Attributes:
        reward: the temperature-scaled CNN, frozen.
        fit: the :class:`~ctrl_teach.ctrl.RewardFit` (held-out accuracy, NLL, ECE, ``T``).
        scorer: the true scorer that labelled the offline digits.

    Introduced in: Chapter 7 (CTRL on images).
    """

    reward: TemperatureScaled
    fit: RewardFit
    scorer: object


def fit_digit_reward(scorer_name: str = "ink", num_buckets: int = 2, n: int = 1400,
                     iterations: int = 1500, label_noise: float = 0.0,
                     seed: int = 0) -> DigitReward:
    """Train and calibrate ``p(y | x)`` on ``n`` real digits labelled by a true scorer.

    Minimises the cross-entropy, then fits the temperature ``tau_cal`` of
    ``softmax(logits / tau_cal)`` on the held-out 20 % (Guo et al. 2017), with
    :func:`~ctrl_teach.ctrl.train_calibrated_classifier`.

    Args:
        scorer_name: the true scorer (see :func:`~ctrl_teach.data.make_scorer`).
        num_buckets: number of labels ``y`` (quantile buckets of the score).
        n: offline labelled digits.
        iterations: Adam iterations.
        label_noise: probability of a wrong label in the offline data.
        seed: seeds the data, the initial weights and the training.

    Returns:
        A :class:`DigitReward`.

    Introduced in: Chapter 7 (CTRL on images).
    """
    x, y, _ = make_digit_offline_dataset(scorer_name, n, label_noise=label_noise,
                                         split="train", seed=seed, num_buckets=num_buckets)
    with seeded_init(seed):
        model = CNNClassifier(num_labels=num_buckets)
    fit = train_calibrated_classifier(model, x, y, iterations=iterations, batch_size=128,
                                      lr=2e-3, seed=seed)
    return DigitReward(fit.reward, fit, make_scorer(scorer_name, num_buckets))


def digit_sampler(pretrained, num_steps: int = 10) -> DiffusionSampler:
    """``num_steps`` DDIM-grid steps with ``eta = 1`` (stochastic, so the path KL is finite)
    and ``x0_hat`` clipped to ``[-1, 1]``, the range of the images.

    Introduced in: Chapter 7 (CTRL on images).
    """
    return DiffusionSampler(pretrained.schedule, num_steps=check_positive_int(
        "num_steps", num_steps), eta=1.0, clip_x0=1.0)


def evaluate_digits(augmented, digit_reward: DigitReward, oracle, *, per_pair: int = 50,
                    candidates: int = 600, generator=None) -> dict:
    """Score a fine-tuned digit model on every ``(c, y)`` against the exact target.

    For each pair draws ``candidates`` pre-trained samples of digit ``c`` (same sampler as
    the augmented model), from which it estimates ``log Z = log E_pre[p(y | x)]`` and
    rejection-samples the target; then draws ``per_pair`` fine-tuned samples per ``(c, y)``.

    Args:
        augmented: the fine-tuned digit model.
        digit_reward: its :class:`DigitReward`.
        oracle: the digit oracle (:func:`~ctrl_teach.pretrained.load_digit_oracle`).
        per_pair: fine-tuned samples per ``(c, y)``.
        candidates: pre-trained candidates per ``(c, y)``.
        generator: a ``torch.Generator`` (default: seed 0).

    Returns: a dict of means over all pairs: ``y_accuracy`` (true scorer's bucket == y) of
    the fine-tuned samples and ``y_accuracy_rejection`` of the target samples,
    ``digit_accuracy`` (oracle's digit == c) of both, the Fréchet distance on the oracle's
    features (``fid``: fine-tuned vs target, ``fid_pretrained``: pre-trained vs target; for
    each ``y`` the samples of all digits are pooled, then the distances are averaged over
    ``y``), the certificate ``gap`` (alpha = 1), and ``pairs``, per-pair rows.

    Introduced in: Chapter 7 (CTRL on images).
    """
    gen = make_generator(generator)
    reward = digit_reward.reward
    scorer, rows, fids = digit_reward.scorer, [], []
    with torch.no_grad():
        for y in range(augmented.num_labels):
            pools = {"ctrl": [], "target": [], "pre": []}
            for c in range(augmented.num_conditions):
                rows.append(_evaluate_pair(augmented, reward, scorer, oracle, c, y, per_pair,
                                           candidates, gen, pools))
            feats = {k: oracle.features(torch.cat(v)) for k, v in pools.items()}
            fids.append((frechet_distance(feats["ctrl"], feats["target"]),
                         frechet_distance(feats["pre"], feats["target"])))
    out = {k: sum(r[k] for r in rows) / len(rows) for k in
           ("y_accuracy", "y_accuracy_rejection", "digit_accuracy", "digit_accuracy_rejection",
            "gap")}
    out.update(fid=sum(f[0] for f in fids) / len(fids),
               fid_pretrained=sum(f[1] for f in fids) / len(fids), pairs=rows)
    return out


def _evaluate_pair(augmented, reward, scorer, oracle, c, y, per_pair, candidates, gen, pools):
    """One row of :func:`evaluate_digits` (the pre-trained pool is redrawn per pair)."""
    x_pre = augmented.sampler.sample(augmented.network, candidates, c=c, generator=gen)
    x = sample(augmented, per_pair, c=c, y=y, generator=gen)
    target = rejection_sample(x_pre, reward, y=y, generator=gen)
    alz, alz_se = log_partition(x_pre, reward, y=y)
    out = rollout(augmented, reward, c=c, y=torch.full((per_pair,), y), generator=gen)
    gap, gap_se = certificate_gap(alz, alz_se, out.J)
    pools["ctrl"].append(x)
    pools["target"].append(target[:per_pair])
    pools["pre"].append(x_pre[:per_pair])
    return dict(c=c, y=y, log_z=alz, gap=gap, gap_se=gap_se, accepted=int(target.shape[0]),
                y_accuracy=float((scorer.label(x.cpu()) == y).float().mean()),
                y_accuracy_rejection=float((scorer.label(target.cpu()) == y).float().mean()),
                digit_accuracy=float((oracle.predict(x) == c).float().mean()),
                digit_accuracy_rejection=float((oracle.predict(target) == c).float().mean()))

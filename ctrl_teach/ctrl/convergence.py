"""Has fine-tuning reached the soft optimum? The certificate per ``(c, y)`` pair (Chapter 5).

For every pair the gap ``alpha log Z - J`` is ``alpha KL(P_theta || P*)`` plus the initial-law
term (eq. ``eq-certificate``): zero only at the optimum. :class:`CertificateMonitor` draws the
pre-trained samples for ``alpha log Z`` once, then estimates ``J`` per pair from fresh
rollouts whenever it is asked; :func:`~ctrl_teach.ctrl.condition_pretrained` uses it to stop
when the gap has stopped improving and to warn, with the number, when it has not closed.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch

from .._checks import check_positive_float, check_positive_int
from ..target import log_partition
from .finetune import rollout
from .references import certificate_gap

__all__ = ["Certificate", "CertificateMonitor", "CertificateWarning"]


class CertificateWarning(UserWarning):
    """Fine-tuning stopped with a certificate gap above the threshold.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """


@dataclass
class Certificate:
    """The certificate ``alpha log Z - J`` of every ``(c, y)`` pair.

    Attributes:
        pairs: one dict per pair: ``c``, ``y``, ``alpha_log_z``, ``J``, ``gap``, ``gap_se``.
        gap: the largest gap over the pairs (the pair furthest from its optimum).
        gap_se: its standard error.
        iterations: fine-tuning iterations when it was measured.
        history: ``(iterations, largest gap)`` at every check during fine-tuning.
        converged: whether the largest gap is below the threshold used.
        trajectory_J: the per-trajectory ``J`` of every pair, keyed ``(c, y)``: what a
            paired comparison of two certificates needs (:meth:`drop_since`).

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    pairs: list
    gap: float
    gap_se: float
    iterations: int
    history: list = field(default_factory=list)
    converged: bool = False
    trajectory_J: dict = field(default_factory=dict, repr=False)

    def drop_since(self, before: Certificate) -> tuple[float, float]:
        """How much the largest gap fell since an earlier certificate, with a paired
        standard error.

        Two certificates of one :class:`CertificateMonitor` used the same noise and the
        same ``alpha log Z`` samples, so the difference of the gaps of a pair is
        ``J_now - J_before``, and its standard error is that of the per-trajectory
        differences (much smaller than either gap's: the ``log Z`` error cancels and the
        trajectories share their noise).

        Args:
            before: an earlier certificate from the same monitor.

        Returns:
            ``(drop, se)``: ``before.gap - self.gap`` and the paired standard error of the
            pair that is now the furthest from its optimum.
        """
        worst = max(self.pairs, key=lambda p: p["gap"])
        key = (worst["c"], worst["y"])
        diff = self.trajectory_J[key] - before.trajectory_J[key]
        return before.gap - self.gap, float(diff.std() / math.sqrt(diff.numel()))


class CertificateMonitor:
    """Certificate estimates for an augmented model during and after fine-tuning.

    Args:
        augmented: the augmented model (its frozen ``network`` and ``sampler`` give
            ``p_pre``).
        reward_model: the reward.
        alpha: KL weight.
        gamma: reward weight.
        num_candidates: pre-trained samples per pair for ``alpha log Z`` (drawn once).
        num_rollouts: fine-tuned trajectories per pair for ``J`` at every check.
        seed: seeds the pre-trained samples and the rollouts (the same noise at every
            check, so successive estimates differ by the training, not by Monte Carlo noise).

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    def __init__(self, augmented, reward_model, *, alpha: float = 1.0, gamma: float = 1.0,
                 num_candidates: int = 16384, num_rollouts: int = 4096, seed: int = 0):
        self.augmented, self.reward_model = augmented, reward_model
        self.alpha = check_positive_float("alpha", alpha)
        self.gamma = check_positive_float("gamma", gamma)
        self.num_rollouts = check_positive_int("num_rollouts", num_rollouts)
        self.seed = int(seed)
        gen = torch.Generator().manual_seed(self.seed + 1)
        conds = range(augmented.num_conditions) if augmented.num_conditions else [None]
        self.log_z = {}
        with torch.no_grad():
            for c in conds:
                x = augmented.sampler.sample(augmented.network,
                                             check_positive_int("num_candidates",
                                                                num_candidates),
                                             c=c, generator=gen)
                for y in range(augmented.num_labels):
                    self.log_z[(c, y)] = log_partition(x, reward_model, c=c, y=y,
                                                       alpha=self.alpha, gamma=self.gamma)
        self.history: list = []
        self.last: Certificate | None = None

    def measure(self, iterations: int = 0) -> Certificate:
        """Estimate the gap of every pair now (no gradients); record the largest.

        Args:
            iterations: the fine-tuning iteration, for the record.

        Returns:
            A :class:`Certificate`.
        """
        gen = torch.Generator().manual_seed(self.seed + 2)
        pairs, trajectory_J = [], {}
        with torch.no_grad():
            for (c, y), (alz, alz_se) in self.log_z.items():
                out = rollout(self.augmented, self.reward_model, c=c,
                              y=torch.full((self.num_rollouts,), y), generator=gen,
                              alpha=self.alpha, gamma=self.gamma)
                trajectory_J[(c, y)] = out.J.detach()
                gap, se = certificate_gap(alz, alz_se, out.J)
                pairs.append(dict(c=c, y=y, alpha_log_z=alz, J=float(out.J.mean()), gap=gap,
                                  gap_se=se))
        worst = max(pairs, key=lambda p: p["gap"])
        self.history.append((int(iterations), worst["gap"]))
        self.last = Certificate(pairs, worst["gap"], worst["gap_se"], int(iterations),
                                list(self.history), trajectory_J=trajectory_J)
        return self.last

    def stopping_rule(self, *, check_every: int = 100, patience: int = 3, tol: float = 0.01,
                      target: float = 0.01, offset: int = 0):
        """A ``finetune`` callback: every ``check_every`` iterations measure the certificate;
        stop when the largest gap is below ``target``, or when it has not improved on its best
        value for ``patience`` checks in a row (single estimates are noisy, so one check
        without progress is not enough). An improvement counts when it exceeds both ``tol``
        and twice its paired standard error (:meth:`Certificate.drop_since`), so Monte Carlo
        noise is never mistaken for progress.

        Args:
            check_every: iterations between checks.
            patience: checks without progress before stopping.
            tol: the smallest improvement (nats) that counts as progress.
            target: a gap (nats) that counts as converged.
            offset: iterations already trained before this ``finetune`` call (a second
                phase), added to its iteration count in the record.

        Returns:
            ``callback(k, history) -> bool`` for :func:`~ctrl_teach.ctrl.finetune`.
        """
        check_every = check_positive_int("check_every", check_every)
        patience = check_positive_int("patience", patience)
        state = {"best": None, "stale": 0}

        def callback(k, history):
            if k % check_every:
                return False
            now = self.measure(k + offset)
            if state["best"] is None:
                progress = True
            else:
                drop, se = now.drop_since(state["best"])
                progress = drop > max(tol, 2 * se)
            if progress:
                state.update(best=now, stale=0)
            else:
                state["stale"] += 1
            return now.gap < target or state["stale"] >= patience

        return callback


def warn_if_not_converged(certificate: Certificate, threshold: float,
                          hints: str = "") -> Certificate:
    """Mark ``certificate.converged``; warn with the numbers and ``hints`` if it is not."""
    certificate.converged = certificate.gap < threshold + 2 * certificate.gap_se
    if not certificate.converged:
        worst = max(certificate.pairs, key=lambda p: p["gap"])
        warnings.warn(
            f"CTRL has not reached the soft optimum: certificate gap alpha log Z - J = "
            f"{worst['gap']:.3f} +- {worst['gap_se']:.3f} nats for (c={worst['c']}, "
            f"y={worst['y']}) after {certificate.iterations} iterations (threshold "
            f"{threshold}). {hints}", CertificateWarning, stacklevel=3)
    return certificate

"""Bring your own problem: CTRL's three steps as three calls (Chapter 5, "Your own data").

    pre = pretrain_on_points(x, c=c)            # or load_pretrained(...), or your eps-network
    fit = fit_classifier(x_lab, y_lab)          # calibrated p(y | x); fit.reward is the module
    model = condition_pretrained(pre, fit.reward)   # fine-tune: log p(y|x0,c) - alpha KL
    x = model.sample(1000, c=0, y=1)
    report = model.evaluate(c=0, y=1)           # certificate gap, energy distance, confidence

Each call wraps the pieces the chapters build by hand, with the book's defaults.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from .._checks import check_choice, check_labels, check_tensor
from ..diffusion import DiffusionSampler, MLPDenoiser, NoiseSchedule, model_device, train_denoiser
from ..pretrained import PretrainedDiffusion
from ..profiles import seeded_init
from ..target import check_reward, num_reward_labels
from .augmented import AugmentedModel, HeadAugmentedModel, LoRAAugmentedModel
from .calibration import RewardFit, train_calibrated_classifier
from .convergence import Certificate, CertificateMonitor, warn_if_not_converged
from .finetune import GRADIENT_MODES, FinetuneHistory, finetune, sample
from .references import evaluate_against_target
from .rewards import CNNClassifier, MLPClassifier

__all__ = ["ConditionedModel", "pretrain_on_points", "fit_classifier", "condition_pretrained"]

# The policy class condition_pretrained fine-tunes by default (see ctrl_benchmark.py).
VARIANCE_DEFAULT = True


@dataclass
class ConditionedModel:
    """A fine-tuned conditional sampler ``p_theta(x | c, y)`` and how it was obtained.

    Attributes:
        augmented: the fine-tuned augmented model.
        reward_model: the reward it was fine-tuned on.
        history: the :class:`~ctrl_teach.ctrl.FinetuneHistory`.
        alpha: the KL weight.
        certificate: the final :class:`~ctrl_teach.ctrl.Certificate` (the gap
            ``alpha log Z - J`` of every ``(c, y)`` pair, its standard error, whether it is
            below the threshold), or ``None`` when not measured.
        phases: ``(first iteration, gradient)`` of every fine-tuning phase, e.g.
            ``[(0, "full"), (700, "hybrid"), (1400, "hybrid")]`` when the pathwise gradient
            stalled and the last phase is the learning-rate anneal.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    augmented: AugmentedModel
    reward_model: nn.Module
    history: FinetuneHistory
    alpha: float
    certificate: Certificate | None = None
    phases: list = field(default_factory=list)

    def sample(self, n: int, *, c=None, y, generator=None) -> torch.Tensor:
        """``n`` samples for ``(c, y)`` (ints or ``(n,)`` tensors, mixed pairs allowed)."""
        return sample(self.augmented, n, c=c, y=y, generator=generator)

    def evaluate(self, *, c=None, y: int, generator=None, num_candidates: int = 20000,
                 num_samples: int = 4000) -> dict:
        """Exact-reference metrics for one ``(c, y)``: see
        :func:`~ctrl_teach.ctrl.evaluate_against_target`."""
        return evaluate_against_target(self.augmented, self.reward_model, c=c, y=y,
                                       alpha=self.alpha, generator=generator,
                                       num_candidates=num_candidates, num_samples=num_samples)


def pretrain_on_points(x: torch.Tensor, *, c=None, num_timesteps: int = 100,
                       iterations: int = 4000, batch_size: int = 512, lr: float = 2e-3,
                       seed: int = 0, device=None, progress: bool = True) -> PretrainedDiffusion:
    """Train the book's toy recipe (MLP, cosine schedule with beta <= 0.8, DDPM) on your points.

    Minimises the simplified DDPM loss (Ho et al. 2020, eq. 14) with
    :func:`~ctrl_teach.diffusion.train_denoiser` and keeps the EMA weights.

    Args:
        x: ``(N, d)`` data, ``N >= 1``.
        c: ``None`` or ``(N,)`` integer conditions ``0..C-1``.
        num_timesteps: ``T`` of the schedule.
        iterations: Adam iterations.
        batch_size: minibatch size.
        lr: peak learning rate.
        seed: seeds the initial weights and the training (the caller's RNG is untouched).
        device: where to train (default: the best available).
        progress: show a tqdm bar.

    Returns:
        A frozen :class:`~ctrl_teach.pretrained.PretrainedDiffusion`.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    check_tensor("x", x, ndim=2)
    if x.shape[0] == 0:
        raise ValueError(f"x must hold at least one point, got shape {tuple(x.shape)}")
    num_conditions = 0
    if c is not None:
        c = check_labels("c", c, None, batch=x.shape[0])
        num_conditions = int(c.max()) + 1
    schedule = NoiseSchedule.cosine(num_timesteps, max_beta=0.8)
    with seeded_init(seed):
        network = MLPDenoiser(x.shape[1], num_timesteps, num_conditions)
    result = train_denoiser(network, schedule, x, c=c, iterations=iterations,
                            batch_size=batch_size, lr=lr, seed=seed, device=device,
                            progress=progress, ema_decay=0.995)
    result.model.requires_grad_(False)
    return PretrainedDiffusion("custom", result.model, schedule, DiffusionSampler.ddpm(schedule),
                               {"training": {"iterations": iterations, "seed": seed}})


def fit_classifier(x: torch.Tensor, y, *, c=None, num_labels: int | None = None,
                   num_conditions: int = 0, iterations: int = 1000, seed: int = 0,
                   progress: bool = False) -> RewardFit:
    """Learn a calibrated reward ``p(y | x, c)`` from offline pairs: fit, then temperature-scale.

    An MLP for ``(N, d)`` inputs, a CNN for ``(N, C, H, W)`` images; 20 % of the data is held
    out and used to choose the temperature ``tau_cal`` (Guo et al. 2017), through
    :func:`~ctrl_teach.ctrl.train_calibrated_classifier`.

    Args:
        x: ``(N, d)`` points or ``(N, C, H, W)`` images.
        y: ``(N,)`` labels; at least two distinct values.
        c: ``None`` or ``(N,)`` conditions (read by the MLP when ``num_conditions > 0``).
        num_labels: ``K`` (default: ``max(y) + 1``).
        num_conditions: conditions the classifier reads (0: it ignores ``c``).
        iterations: Adam iterations.
        seed: seeds the initial weights, the split and the minibatches.
        progress: show a tqdm bar.

    Returns:
        A :class:`~ctrl_teach.ctrl.RewardFit`; pass ``.reward`` to :func:`condition_pretrained`.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    check_tensor("x", x)
    y = check_labels("y", y, num_labels, batch=x.shape[0] if x.ndim else None)
    if torch.unique(y).numel() < 2:
        raise ValueError(f"y must contain at least 2 distinct labels to learn p(y | x), got "
                         f"only {torch.unique(y).tolist()}")
    k = int(y.max()) + 1 if num_labels is None else num_labels
    with seeded_init(seed):
        if x.ndim == 2:
            model = MLPClassifier(x.shape[1], k, num_conditions)
        elif x.ndim == 4:
            model = CNNClassifier(k, x.shape[1], x.shape[2])
        else:
            raise ValueError(f"x must have shape (N, d) or (N, C, H, W), got {tuple(x.shape)}")
    return train_calibrated_classifier(model, x, y, c=c, iterations=iterations, seed=seed,
                                       progress=progress)


def condition_pretrained(pretrained, reward_model: nn.Module, *,
                         sampler: DiffusionSampler | None = None, variant: str = "head",
                         variance: bool = VARIANCE_DEFAULT, alpha: float = 1.0,
                         gamma: float = 1.0, iterations: int | None = None,
                         gradient: str = "auto",
                         max_iterations: int = 2000, check_every: int = 100,
                         gap_threshold: float = 0.05, certify: bool = True,
                         batch_size: int = 128, lr: float = 3e-3, seed: int = 0,
                         progress: bool = True, **finetune_kwargs) -> ConditionedModel:
    """CTRL: augment ``pretrained`` with zero-initialised ``y``-conditioning and fine-tune it.

    Maximises ``J = E[gamma log p(y | x_0, c)] - alpha sum_t KL_t`` (eq.
    ``eq-ctrl-objective``); at ``alpha = gamma = 1`` the optimum of the KL-regularised
    objective samples ``p(x | c, y) ∝ p(y | x, c) p_pre(x | c)`` (Theorem
    ``thm-soft-optimal``), and the certificate ``alpha log Z - J`` says how far the fine-tuned
    model still is from it.

    Budget: with ``iterations=None`` (the default) it fine-tunes at a constant learning rate
    until the largest certificate gap over the ``(c, y)`` pairs, measured every
    ``check_every`` iterations, has not improved for three checks (an improvement counts
    when it exceeds 0.01 nats and twice its paired standard error,
    :meth:`~ctrl_teach.ctrl.CertificateMonitor.stopping_rule`) or falls below 0.01, within
    ``max_iterations``, then anneals the learning rate for a fifth as many iterations. With
    ``gradient="auto"`` (the default) the first phase uses the pathwise gradient; if it
    stalls with the gap above ``gap_threshold`` and budget is left, a second phase continues
    with ``gradient="hybrid"`` over every noisy step (the score-function term moves mass
    between well-separated modes, which the pathwise gradient cannot; Chapter 9, "The best
    of both"), under the same stopping rule and cap; it is kept only if it lowered the gap
    by more than twice the paired standard error (otherwise the pathwise model is
    restored), and the anneal uses the kept phase's gradient. The result
    carries the final certificate; when its gap exceeds ``gap_threshold`` (beyond two standard
    errors) a :class:`~ctrl_teach.ctrl.CertificateWarning` says so, with the number and what
    to try.

    Args:
        pretrained: a :class:`~ctrl_teach.pretrained.PretrainedDiffusion`, or your own
            eps-network ``net(x, t, c)`` with ``data_shape`` / ``num_conditions`` attributes.
        reward_model: ``(x, c) -> (N, K)`` log-probabilities with ``num_labels`` (e.g.
            ``fit_classifier(...).reward``).
        sampler: the sampler to fine-tune (default: the pre-trained model's own).
        variant: ``"head"`` (control in noise units) or ``"lora"`` (the paper's variant).
        variance: learn the step's variance too (the variance-aware class; a mean-only step
            has a floor that only finer steps shrink, see
            :func:`~ctrl_teach.ctrl.gaussian_step_floor`).
        alpha: KL weight.
        gamma: reward weight.
        iterations: a fixed budget of Adam iterations, or ``None`` to stop on the certificate.
        gradient: a :func:`~ctrl_teach.ctrl.finetune` gradient mode, or ``"auto"``: pathwise
            (``"full"``), switching to ``"hybrid"`` when the certificate stalls above the
            threshold (only with ``iterations=None``; with a fixed budget ``"auto"`` is
            ``"full"``).
        max_iterations: the cap of the certificate-driven budget.
        check_every: iterations between certificate checks.
        gap_threshold: the gap (nats) above which the result warns.
        certify: measure the final certificate (costs a few hundred rollouts per pair).
        batch_size: trajectories per iteration.
        lr: peak learning rate.
        seed: seeds the new parameters and fine-tuning (the caller's RNG is untouched).
        progress: show a tqdm bar.
        finetune_kwargs: passed to :func:`~ctrl_teach.ctrl.finetune`.

    Returns:
        A :class:`ConditionedModel` with its ``certificate``.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    check_choice("variant", variant, ("head", "lora"))
    check_choice("gradient", gradient, GRADIENT_MODES + ("auto",))
    if isinstance(reward_model, RewardFit):
        raise ValueError("reward_model must be a reward module: pass fit_classifier(...).reward")
    if isinstance(pretrained, PretrainedDiffusion):
        network, sampler = pretrained.network, sampler or pretrained.sampler
    elif isinstance(pretrained, nn.Module):
        if sampler is None:
            raise ValueError("sampler is required when pretrained is a bare network")
        network = pretrained
    else:
        raise ValueError("pretrained must be a PretrainedDiffusion or an eps-network module, "
                         f"got {type(pretrained).__name__}")
    check_reward(reward_model, network.data_shape)
    cls = HeadAugmentedModel if variant == "head" else LoRAAugmentedModel
    device = model_device(network)       # the new parameters and the reward live with it
    with seeded_init(seed):
        augmented = cls(network, sampler, num_labels=num_reward_labels(reward_model),
                        variance=variance).to(device)
    reward_model = reward_model.to(device)
    monitor = None
    if certify or iterations is None:
        monitor = CertificateMonitor(augmented, reward_model, alpha=alpha, gamma=gamma,
                                     seed=seed)
    common = dict(batch_size=batch_size, lr=lr, alpha=alpha, gamma=gamma, progress=progress,
                  **finetune_kwargs)
    if iterations is None:
        history, phases = _certificate_driven(augmented, reward_model, monitor, gradient,
                                              max_iterations, check_every, gap_threshold,
                                              seed, common)
    else:
        mode = "full" if gradient == "auto" else gradient
        history = finetune(augmented, reward_model, iterations=iterations, seed=seed,
                           gradient=mode, **common)
        phases = [(0, mode)]
    certificate = None
    if monitor is not None:
        certificate = warn_if_not_converged(monitor.measure(len(history.J)), gap_threshold,
                                            _hints(variance, sampler, iterations,
                                                   [m for _, m in phases], batch_size))
    return ConditionedModel(augmented, reward_model, history, alpha, certificate, phases)


def _certificate_driven(augmented, reward_model, monitor, gradient, max_iterations,
                        check_every, gap_threshold, seed, common):
    """``condition_pretrained``'s budget for ``iterations=None``: fine-tune at a constant
    learning rate until the certificate stops improving (``monitor.stopping_rule``); with
    ``gradient="auto"``, if the pathwise phase stalls above the threshold, a hybrid phase
    for the rest of the cap, kept only if it lowered the gap (else the pathwise model is
    restored); then a short anneal (a fifth of the iterations so far, the learning rate
    decaying to a tenth) with the kept phase's gradient."""
    num_steps = augmented.sampler.num_steps
    mode = "full" if gradient == "auto" else gradient
    history = finetune(augmented, reward_model, iterations=max_iterations, seed=seed,
                       lr_decay=1.0, gradient=mode,
                       callback=monitor.stopping_rule(check_every=check_every), **common)
    phases = [(0, mode)]
    last, done = monitor.last, len(history.J)
    stalled = last is not None and last.gap > gap_threshold
    if gradient == "auto" and stalled and max_iterations - done >= check_every:
        # the pathwise gradient stalled above the threshold: continue with the
        # score-function estimator over every noisy step (Chapter 9)
        saved = copy.deepcopy(augmented.state_dict())
        hybrid = dict(common, score_steps=common.get("score_steps") or num_steps)
        more = finetune(augmented, reward_model, iterations=max_iterations - done,
                        seed=seed + 2, lr_decay=1.0, gradient="hybrid",
                        callback=monitor.stopping_rule(check_every=check_every, offset=done),
                        **hybrid)
        history, phases = history.extend(more), phases + [(done, "hybrid")]
        drop, se = _measured_at(monitor, len(history.J)).drop_since(last)   # a paired test
        if drop > 2 * se:
            mode, common = "hybrid", hybrid
        else:   # it did not help: back to the pathwise model (the record keeps both)
            augmented.load_state_dict(saved)
            phases.append((len(history.J), "full (hybrid phase reverted)"))
    phases.append((len(history.J), mode))
    anneal = finetune(augmented, reward_model, iterations=max(check_every,
                                                              len(history.J) // 5),
                      seed=seed + 1, warmup=0, gradient=mode, **common)
    return history.extend(anneal), phases


def _measured_at(monitor, iterations: int):
    """The monitor's certificate at ``iterations``: the last one when the stopping rule has
    just measured there (a phase that stopped at a check), else a new measurement."""
    last = monitor.last
    return last if last is not None and last.iterations == iterations else monitor.measure(
        iterations)


def _hints(variance: bool, sampler: DiffusionSampler, iterations, gradients,
           batch_size: int) -> str:
    """What to try when the certificate has not closed (``gradients``: those used)."""
    tips = [] if variance else ["variance=True (a step that also learns its variance)"]
    tips.append(f"a batch_size larger than {batch_size} (the pathwise gradient's noise sets "
                "how close Adam settles to the optimum: on the ring toy at 20 steps batch 1024 "
                "closes most of the gap that batch 128 leaves)")
    tips.append(f"a sampler with more than {sampler.num_steps} steps")
    if "hybrid" not in gradients:   # tight modes whose weights the label changes (stress)
        tips.append(f"gradient='hybrid', score_steps={sampler.num_steps} (a score-function "
                    "gradient moves mass between modes when the pathwise one cannot)")
    tips.append("learn_initial=True (when the schedule keeps signal at T)")
    tips.append("a larger max_iterations" if iterations is None else
                "more iterations (or iterations=None: stop when the certificate stops improving)")
    return "Try " + ", ".join(tips) + "."

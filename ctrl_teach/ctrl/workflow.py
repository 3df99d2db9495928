"""Bring your own problem: CTRL's three steps as three calls (Chapter 5, "Your own data").

    pre = pretrain_on_points(x, c)              # or load_pretrained(...), or your eps-network
    reward = fit_classifier(x_lab, y_lab)       # or any module (x, c) -> (N, K) log-probs
    model = condition_pretrained(pre, reward)   # fine-tune: reward log p(y|x0,c) - alpha KL
    x = model.sample(1000, c=0, y=1)
    report = model.evaluate(c=0, y=1)           # certificate gap, energy distance, confidence

Each call wraps the pieces the chapters build by hand, with the book's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._checks import check_choice, check_tensor
from ..diffusion import DiffusionSampler, MLPDenoiser, NoiseSchedule, model_device, train_denoiser
from ..pretrained import PretrainedDiffusion
from .augmented import AugmentedModel, HeadAugmentedModel, LoRAAugmentedModel
from .calibration import train_classifier
from .finetune import FinetuneHistory, finetune, sample
from .references import evaluate_against_target
from .rewards import CNNClassifier, MLPClassifier, TemperatureScaled, num_reward_labels

__all__ = ["ConditionedModel", "pretrain_on_points", "fit_classifier", "condition_pretrained"]


@dataclass
class ConditionedModel:
    """A fine-tuned conditional sampler ``p_theta(x | c, y)`` and how it was obtained.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    augmented: AugmentedModel
    reward_model: nn.Module
    history: FinetuneHistory
    alpha: float

    def sample(self, n: int, c=None, y=0, generator=None) -> torch.Tensor:
        """``n`` samples for ``(c, y)`` (ints or ``(n,)`` tensors, mixed conditions allowed)."""
        return sample(self.augmented, n, c, y, generator=generator)

    def evaluate(self, c, y: int, generator=None, num_candidates: int = 20000,
                 num_samples: int = 4000) -> dict:
        """Exact-reference metrics for one ``(c, y)``: see
        :func:`~ctrl_teach.ctrl.references.evaluate_against_target`."""
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        return evaluate_against_target(self.augmented.network, self.augmented.sampler,
                                       self.reward_model, self.augmented, c, y, gen,
                                       num_candidates, num_samples, self.alpha)


def pretrain_on_points(x: torch.Tensor, c=None, *, num_timesteps: int = 100,
                       steps: int = 4000, batch_size: int = 512, lr: float = 2e-3,
                       seed: int = 0, device=None, progress: bool = True) -> PretrainedDiffusion:
    """Train the book's toy recipe (MLP, cosine schedule with beta <= 0.8, DDPM) on your points.

    Args:
        x: ``(N, d)`` data; c: ``None`` or ``(N,)`` integer conditions ``0..C-1``.
    Returns: a frozen :class:`~ctrl_teach.pretrained.PretrainedDiffusion`.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    check_tensor("x", x, ndim=2)
    num_conditions = 0 if c is None else int(torch.as_tensor(c).max()) + 1
    schedule = NoiseSchedule.cosine(num_timesteps, max_beta=0.8)
    torch.manual_seed(seed)
    network = MLPDenoiser(x.shape[1], num_timesteps, num_conditions)
    result = train_denoiser(network, schedule, x, c, steps=steps, batch_size=batch_size, lr=lr,
                            seed=seed, device=device, progress=progress, ema_decay=0.995)
    result.model.requires_grad_(False)
    return PretrainedDiffusion("custom", result.model, schedule, DiffusionSampler.ddpm(schedule),
                               {"training": {"steps": steps, "seed": seed}})


def fit_classifier(x: torch.Tensor, y, c=None, *, num_classes: int | None = None,
                   num_conditions: int = 0, steps: int = 1000, seed: int = 0) -> nn.Module:
    """Learn a calibrated reward ``p(y | x, c)`` from offline pairs: fit, then temperature-scale.

    An MLP for ``(N, d)`` inputs, a CNN for ``(N, C, H, W)`` images; 20 % of the data is held
    out and used to choose the temperature ``T`` (Guo et al. 2017).

    Returns: a frozen :class:`~ctrl_teach.ctrl.rewards.TemperatureScaled` module.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    check_tensor("x", x)
    y = torch.as_tensor(y)
    k = int(y.max()) + 1 if num_classes is None else num_classes
    if x.ndim == 2:
        torch.manual_seed(seed)
        model = MLPClassifier(x.shape[1], k, num_conditions)
    elif x.ndim == 4:
        torch.manual_seed(seed)
        model = CNNClassifier(k, x.shape[1], x.shape[2])
    else:
        raise ValueError(f"x must have shape (N, d) or (N, C, H, W), got {tuple(x.shape)}")
    fit = train_classifier(model, x, y, c, steps=steps, seed=seed)
    return TemperatureScaled.fit(fit.model, fit.x_val, fit.y_val, fit.c_val)


def condition_pretrained(pretrained, reward_model: nn.Module, *,
                         sampler: DiffusionSampler | None = None, variant: str = "head",
                         alpha: float = 1.0, gamma: float = 1.0, iterations: int = 400,
                         batch_size: int = 128, lr: float = 3e-3, seed: int = 0,
                         progress: bool = True, **finetune_kwargs) -> ConditionedModel:
    """CTRL: augment ``pretrained`` with zero-initialised ``y``-conditioning and fine-tune it.

    Maximises ``J = E[gamma log p(y | x_0, c)] - alpha sum_t KL_t`` (Chapter 3); at
    ``alpha = gamma = 1`` the optimum samples ``p(x | c, y) ∝ p(y | x, c) p_pre(x | c)``.

    Args:
        pretrained: a :class:`~ctrl_teach.pretrained.PretrainedDiffusion`, or your own
            eps-network ``net(x, t, c)`` with ``data_shape`` / ``num_conditions`` attributes.
        reward_model: ``(x, c) -> (N, K)`` log-probabilities (e.g. :func:`fit_classifier`).
        sampler: the sampler to fine-tune (default: the pre-trained model's own).
        variant: ``"head"`` (control in noise units) or ``"lora"`` (the paper's variant).
        finetune_kwargs: passed to :func:`~ctrl_teach.ctrl.finetune`.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    check_choice("variant", variant, ("head", "lora"))
    if isinstance(pretrained, PretrainedDiffusion):
        network, sampler = pretrained.network, sampler or pretrained.sampler
    elif isinstance(pretrained, nn.Module):
        if sampler is None:
            raise ValueError("sampler is required when pretrained is a bare network")
        network = pretrained
    else:
        raise ValueError("pretrained must be a PretrainedDiffusion or an eps-network module, "
                         f"got {type(pretrained).__name__}")
    cls = HeadAugmentedModel if variant == "head" else LoRAAugmentedModel
    torch.manual_seed(seed)
    device = model_device(network)       # the new parameters and the reward live with it
    augmented = cls(network, sampler, num_labels=num_reward_labels(reward_model)).to(device)
    reward_model = reward_model.to(device)
    history = finetune(augmented, reward_model, iterations=iterations, batch_size=batch_size,
                       lr=lr, alpha=alpha, gamma=gamma, seed=seed, progress=progress,
                       **finetune_kwargs)
    return ConditionedModel(augmented, reward_model, history, alpha)

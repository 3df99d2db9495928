"""Noise-conditioned classifiers ``p_phi(y | x_t, t)`` for classifier guidance (Chapter 8).

Classifier guidance needs the classifier *of the noisy marginal*,

    p_t(y | x_t) = E[ p(y | x_0) | x_t ],   x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,

so it is trained with cross-entropy on noised labelled data (Dhariwal & Nichol 2021, Sec. 4):

    L(phi) = - E_{(x_0, y) ~ D, t ~ U{0..T}, eps} log p_phi(y | x_t, t).

CTRL needs only a classifier of clean data; this training on noised copies of the same
offline pairs is the extra ingredient of the baseline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from .._checks import check_labels, check_positive_int, check_tensor
from .._optim import cosine_lr_factor
from ..diffusion import NoiseSchedule, time_embedding

__all__ = ["NoisyMLPClassifier", "NoisyCNNClassifier", "train_noisy_classifier"]


class NoisyMLPClassifier(nn.Module):
    """MLP ``log p_phi(y | x_t, t)`` for points ``(N, d)``; ``t`` enters by a sinusoid embedding.

    Args:
        data_dim: ``d``; num_labels: ``K``; num_timesteps: ``T`` of the schedule.
        width: hidden width.
        depth: number of hidden layers.
        emb_dim: time embedding size.
    Returns (forward ``(x, t, c=None)``): ``(N, K)`` log-probabilities (``c`` ignored).

    Introduced in: Chapter 2 (Adding a control: guidance).
    """

    def __init__(self, data_dim: int = 2, num_labels: int = 2, num_timesteps: int = 100,
                 width: int = 128, depth: int = 3, emb_dim: int = 32):
        super().__init__()
        self.data_shape = (check_positive_int("data_dim", data_dim),)
        self.num_labels = check_positive_int("num_labels", num_labels)
        self.num_timesteps = check_positive_int("num_timesteps", num_timesteps)
        self.emb_dim = check_positive_int("emb_dim", emb_dim)
        layers, d_in = [], data_dim + emb_dim
        for _ in range(check_positive_int("depth", depth)):
            layers += [nn.Linear(d_in, width), nn.SiLU()]
            d_in = width
        self.body = nn.Sequential(*layers, nn.Linear(width, num_labels))

    def forward(self, x: torch.Tensor, t: torch.Tensor, c=None) -> torch.Tensor:
        temb = time_embedding(t, self.num_timesteps, self.emb_dim)
        return torch.log_softmax(self.body(torch.cat([x.flatten(1), temb], 1)), dim=-1)


class NoisyCNNClassifier(nn.Module):
    """Small CNN ``log p_phi(y | x_t, t)`` for images ``(N, C, H, W)`` (8x8 digits).

    The time embedding is added to the first feature map (as in a U-Net block).

    Introduced in: Chapter 2 (Adding a control: guidance).
    """

    def __init__(self, num_labels: int = 3, channels: int = 1, image_size: int = 8,
                 num_timesteps: int = 100, width: int = 32, emb_dim: int = 32):
        super().__init__()
        self.data_shape = (channels, image_size, image_size)
        self.num_labels = check_positive_int("num_labels", num_labels)
        self.num_timesteps = check_positive_int("num_timesteps", num_timesteps)
        self.emb_dim = check_positive_int("emb_dim", emb_dim)
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.temb = nn.Linear(emb_dim, width)
        self.net = nn.Sequential(
            nn.SiLU(), nn.Conv2d(width, width, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_labels))

    def forward(self, x: torch.Tensor, t: torch.Tensor, c=None) -> torch.Tensor:
        temb = time_embedding(t, self.num_timesteps, self.emb_dim)
        h = self.inp(x) + self.temb(temb)[:, :, None, None]
        return torch.log_softmax(self.net(h), dim=-1)


@dataclass
class NoisyClassifierFit:
    """What :func:`train_noisy_classifier` returns: the trained (frozen) ``model``, the
    minibatch ``losses`` and the wall time in ``seconds``.

    Introduced in: Chapter 2 (Adding a control: guidance).
    """

    model: nn.Module
    losses: list
    seconds: float


def train_noisy_classifier(model: nn.Module, schedule: NoiseSchedule, x: torch.Tensor, y, *,
                           c=None, iterations: int = 1000, batch_size: int = 256,
                           lr: float = 2e-3, seed: int = 0) -> NoisyClassifierFit:
    """Minimise ``-E log p_phi(y | x_t, t, c)`` over ``t ~ U{0..T}`` and fresh noise.

    Args:
        model: ``model(x_t, t, c) -> (N, K)`` log-probabilities, trained in place.
        schedule: the pre-trained model's :class:`~ctrl_teach.diffusion.NoiseSchedule`.
        x: ``(N, *data_shape)`` clean offline inputs.
        y: ``(N,)`` labels.
        c: ``None`` or ``(N,)`` conditions.
        iterations: Adam iterations (cosine-decayed learning rate).
        batch_size: minibatch size.
        lr: peak learning rate.
        seed: seeds a local generator.

    Returns:
        A :class:`NoisyClassifierFit` (the model is left frozen, in eval mode).

    Introduced in: Chapter 2 (Adding a control: guidance).
    """
    if not isinstance(schedule, NoiseSchedule):
        raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    check_tensor("x", x)
    if x.ndim < 2:
        raise ValueError(f"x must have shape (N, ...), got {tuple(x.shape)}")
    n = x.shape[0]
    y = check_labels("y", y, int(model.num_labels), batch=n)
    steps = check_positive_int("iterations", iterations)
    batch_size = check_positive_int("batch_size", batch_size)
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    c = None if c is None else torch.as_tensor(c).long().to(device)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: cosine_lr_factor(k, steps))
    losses, start = [], time.perf_counter()
    model.train().requires_grad_(True)
    for _ in range(steps):
        idx = torch.randint(n, (batch_size,), generator=gen).to(device)
        t = torch.randint(0, schedule.T + 1, (batch_size,), generator=gen).to(device)
        x_t, _ = schedule.q_sample(x[idx], t, generator=gen)
        loss = nn.functional.nll_loss(model(x_t, t, None if c is None else c[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    model.eval().requires_grad_(False)
    return NoisyClassifierFit(model, losses, time.perf_counter() - start)

"""Reward models: classifiers ``p(y | x, c)`` returning log-probabilities (Chapter 5).

The reward contract used everywhere in :mod:`ctrl_teach.ctrl`:

    reward_model(x, c) -> (N, K) log-probabilities log p(y = k | x, c)

``x`` is ``(N, *data_shape)``, ``c`` is ``None`` or a long tensor ``(N,)`` and may be ignored.
Any torch module honouring it, with a ``num_labels`` attribute, can serve as the reward
``r(x) = gamma log p(y | x, c)``; :func:`ctrl_teach.target.reward_log_prob` picks the requested
label. A module may instead define ``log_likelihood(x, c, y) -> (N,)`` (as
:class:`MultiTaskReward` does, with ``y`` a ``(N, k)`` long tensor of one label per task);
``reward_log_prob`` then calls it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import check_labels, check_positive_float, check_positive_int

__all__ = ["MLPClassifier", "CNNClassifier", "TemperatureScaled", "MultiTaskReward"]


class MLPClassifier(nn.Module):
    """MLP ``log p(y | x, c)`` for points ``(N, d)``; ``c`` enters through an embedding.

    Args:
        data_dim: ``d``.
        num_labels: ``K``, the number of labels ``y``.
        num_conditions: 0 to ignore ``c``.
        width: hidden width.
        depth: number of hidden layers.
    Returns (forward): ``(N, K)`` log-probabilities.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    def __init__(self, data_dim: int = 2, num_labels: int = 2, num_conditions: int = 0,
                 width: int = 64, depth: int = 2):
        super().__init__()
        self.data_shape = (check_positive_int("data_dim", data_dim),)
        self.num_labels = check_positive_int("num_labels", num_labels)
        self.num_conditions = int(num_conditions)
        width, layers, d_in = check_positive_int("width", width), [], data_dim
        for _ in range(check_positive_int("depth", depth)):
            layers += [nn.Linear(d_in, width), nn.SiLU()]
            d_in = width
        self.body = nn.Sequential(*layers)
        self.cond = nn.Embedding(num_conditions + 1, width) if num_conditions else None
        self.head = nn.Linear(width, num_labels)

    def forward(self, x: torch.Tensor, c=None) -> torch.Tensor:
        h = self.body(x)
        if self.cond is not None:
            if c is None:
                c = torch.full((x.shape[0],), self.num_conditions, device=x.device)
            h = h + self.cond(c)
        return torch.log_softmax(self.head(h), dim=-1)


class CNNClassifier(nn.Module):
    """Small CNN ``log p(y | x, c)`` for images ``(N, C, H, W)`` (8x8 digits); ``c`` ignored.

    Introduced in: Chapter 7 (CTRL on images).
    """

    def __init__(self, num_labels: int = 3, channels: int = 1, image_size: int = 8,
                 width: int = 32):
        super().__init__()
        self.data_shape = (channels, image_size, image_size)
        self.num_labels = check_positive_int("num_labels", num_labels)
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_labels))

    def forward(self, x: torch.Tensor, c=None) -> torch.Tensor:
        return torch.log_softmax(self.net(x), dim=-1)


class TemperatureScaled(nn.Module):
    """``log softmax(log p(y | x, c) / T)``: temperature scaling (Guo et al. 2017, eq. 9).

    Use :meth:`fit` to choose ``T`` by LBFGS on held-out negative log-likelihood.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    def __init__(self, module: nn.Module, temperature: float = 1.0):
        super().__init__()
        self.module = module
        self.log_t = nn.Parameter(torch.tensor(math.log(check_positive_float(
            "temperature", temperature))), requires_grad=False)
        self.num_labels = getattr(module, "num_labels", None)
        self.data_shape = getattr(module, "data_shape", None)

    @property
    def temperature(self) -> float:
        return float(self.log_t.exp())

    def forward(self, x: torch.Tensor, c=None) -> torch.Tensor:
        return torch.log_softmax(self.module(x, c) / self.log_t.exp(), dim=-1)

    @classmethod
    def fit(cls, module: nn.Module, x, y, *, c=None, max_iter: int = 100) -> TemperatureScaled:
        """Fit ``T`` minimising the held-out NLL (Guo et al. 2017, Sec. 4.2) with LBFGS.

        Args:
            module: the trained classifier.
            x: ``(N, ...)`` held-out inputs.
            y: ``(N,)`` held-out labels.
            c: ``None`` or ``(N,)`` conditions.
            max_iter: LBFGS iterations.

        Returns:
            The wrapped, frozen module (``T`` stored, no trainable parameters).
        """
        with torch.no_grad():
            logp = module(x, c)
        y = check_labels("y", y, logp.shape[1], batch=logp.shape[0]).to(logp.device)
        log_t = torch.zeros((), device=logp.device, requires_grad=True)
        opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=check_positive_int("max_iter",
                                                                             max_iter))

        def closure():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(logp / log_t.exp(), y)
            loss.backward()
            return loss

        opt.step(closure)
        return cls(module, float(log_t.detach().exp())).requires_grad_(False)


class MultiTaskReward(nn.Module):
    """``log r(x, c, y) = sum_k w_k log p_k(y_k | x, c)`` for independent tasks (Chapter 6).

    Args:
        classifiers: one reward module per task (each trained on its own dataset).
        weights: per-task weights ``w_k`` (per-task gamma); default all 1.
        flat: if True, labels are single ints ``0..prod(K_k)-1`` (row-major over tasks, see
            :meth:`encode`), so the reward plugs into :func:`~ctrl_teach.ctrl.finetune`.
    ``log_likelihood(x, c, y)`` takes ``y`` as a ``(N, k)`` long tensor (or ``(N,)`` flat
    labels with ``flat=True``) and returns ``(N,)``.

    Introduced in: Chapter 6 (Conditional independence and multi-task control).
    """

    def __init__(self, classifiers, weights=None, flat: bool = False):
        super().__init__()
        if not classifiers:
            raise ValueError("classifiers must be a non-empty sequence of modules")
        self.tasks = nn.ModuleList(classifiers)
        weights = [1.0] * len(classifiers) if weights is None else list(weights)
        if len(weights) != len(classifiers):
            raise ValueError(f"weights must have {len(classifiers)} entries, got {len(weights)}")
        self.weights = [check_positive_float("weights", w, allow_zero=True) for w in weights]
        self.task_labels = tuple(int(m.num_labels) for m in classifiers)
        self.flat = bool(flat)
        self.num_labels = math.prod(self.task_labels) if flat else self.task_labels
        shapes = {tuple(s) for s in (getattr(m, "data_shape", None) for m in classifiers) if s}
        self.data_shape = shapes.pop() if len(shapes) == 1 else None

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """``(N, k)`` label tuples -> ``(N,)`` flat labels (row-major)."""
        y = _check_multi_labels(y, self.task_labels, y.shape[0] if y.ndim else 0)
        flat = torch.zeros(y.shape[0], dtype=torch.long, device=y.device)
        for k, kk in enumerate(self.task_labels):
            flat = flat * kk + y[:, k]
        return flat

    def decode(self, flat: torch.Tensor) -> torch.Tensor:
        """``(N,)`` flat labels -> ``(N, k)`` label tuples."""
        flat = check_labels("y", flat, math.prod(self.task_labels))
        cols = []
        for kk in reversed(self.task_labels):
            cols.append(flat % kk)
            flat = flat // kk
        return torch.stack(cols[::-1], dim=1)

    def log_likelihood(self, x: torch.Tensor, c, y: torch.Tensor) -> torch.Tensor:
        if self.flat:
            y = self.decode(y)
        y = _check_multi_labels(y, self.task_labels, x.shape[0])
        out = torch.zeros(x.shape[0], device=x.device)
        for k, (m, w) in enumerate(zip(self.tasks, self.weights)):
            out = out + w * m(x, c).gather(1, y[:, k:k + 1].to(x.device)).squeeze(1)
        return out


def _check_multi_labels(y, num_labels: tuple, n: int) -> torch.Tensor:
    if not isinstance(y, torch.Tensor) or y.shape != (n, len(num_labels)):
        raise ValueError(f"y must be a long tensor of shape ({n}, {len(num_labels)})")
    for k, kk in enumerate(num_labels):
        check_labels("y", y[:, k], kk)
    return y.long()

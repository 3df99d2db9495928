"""A small CNN digit classifier used only to *evaluate* generated 8x8 digits.

It reports which digit a sample looks like (for class-conditional accuracy) and gives
penultimate features for a Fréchet distance. It is never used as a reward.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_nonnegative_int, check_positive_float, check_positive_int, check_tensor
from ..data.digits import load_digit_images
from ..profiles import seeded_init

__all__ = ["DigitOracle", "OracleFit", "train_digit_oracle"]


class DigitOracle(nn.Module):
    r"""CNN p(digit | x) for (N, 1, 8, 8) images in [-1, 1].

    conv3x3(w) -> ReLU -> conv3x3(w) -> ReLU -> maxpool2 -> conv3x3(2w) -> ReLU -> maxpool2
    -> flatten (2w * 2 * 2) -> linear(feature_dim) -> ReLU =: features h(x)
    -> dropout -> linear(10) = logits.  About 45k parameters with the defaults.

    Args:
        width: channels w of the first two convolutions.
        feature_dim: size of the penultimate feature vector h(x).
        dropout: dropout probability before the last layer.

    Introduced in: Chapter 7 (CTRL on images).
    """

    def __init__(self, width: int = 32, feature_dim: int = 64, dropout: float = 0.1):
        super().__init__()
        self.width = check_positive_int("width", width)
        self.feature_dim = check_positive_int("feature_dim", feature_dim)
        self.dropout = check_positive_float("dropout", dropout, allow_zero=True)
        if self.dropout >= 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        w = self.width
        self.body = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * w * 2 * 2, self.feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(self.dropout), nn.Linear(self.feature_dim, 10))

    @property
    def config(self) -> dict:
        """Constructor keyword arguments, so ``DigitOracle(**oracle.config)`` rebuilds it."""
        return {"width": self.width, "feature_dim": self.feature_dim, "dropout": self.dropout}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        r"""Penultimate activations h(x) (the features of a Fréchet distance).

        Args:
            x: (N, 1, 8, 8) images in [-1, 1].

        Returns:
            (N, feature_dim) non-negative features.

        Introduced in: Chapter 7 (CTRL on images).
        """
        check_tensor("x", x, shape=(None, 1, 8, 8))
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r"""Logits of p(digit | x) = softmax(W h(x) + b).

        Args:
            x: (N, 1, 8, 8) images in [-1, 1].

        Returns:
            (N, 10) logits.

        Introduced in: Chapter 7 (CTRL on images).
        """
        return self.head(self.features(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        r"""Predicted digit argmax_k logits_k(x) (call ``.eval()`` first to disable dropout).

        Args:
            x: (N, 1, 8, 8) images in [-1, 1].

        Returns:
            (N,) long digits 0..9.

        Introduced in: Chapter 7 (CTRL on images).
        """
        return self.forward(x).argmax(dim=1)


def _random_shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by a random (dy, dx) in {-1, 0, 1}^2, filling with background -1."""
    n, _, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    oy = torch.randint(0, 3, (n, 1), generator=generator)
    ox = torch.randint(0, 3, (n, 1), generator=generator)
    rows = (oy + torch.arange(h)).to(x.device)
    cols = (ox + torch.arange(w)).to(x.device)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded[batch, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


@dataclass
class OracleFit:
    """What :func:`train_digit_oracle` returns: the ``model`` (eval mode) and its held-out
    ``test_accuracy`` in [0, 1].

    Introduced in: Chapter 7 (CTRL on images).
    """

    model: DigitOracle
    test_accuracy: float


@torch.no_grad()
def _accuracy(model: DigitOracle, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model.predict(x) == y).float().mean())


def train_digit_oracle(
    seed: int = 0,
    epochs: int = 30,
    device: str | torch.device = "cpu",
    progress: bool = False,
    batch_size: int = 64,
    lr: float = 3e-3,
) -> tuple[DigitOracle, float]:
    r"""Train a :class:`DigitOracle` on the train split, report accuracy on the test split.

    Minimises the cross-entropy -\log p(y | x) with AdamW (weight decay 1e-4) and a cosine
    learning-rate decay, with random +-1 pixel shifts as augmentation. The splits are those
    of ``load_digit_images(split="train" / "test")`` (75 % / 25 %, stratified, seed 0).

    Args:
        seed: seed (>= 0) of the initialisation, batch order and augmentation.
        epochs: passes over the 1,347 training images.
        device: where to train.
        progress: print the loss and test accuracy after each epoch.
        batch_size: minibatch size.
        lr: peak learning rate.

    Returns:
        An :class:`OracleFit`: the model in eval mode on ``device`` and its held-out test
        accuracy.

    Introduced in: Chapter 7 (CTRL on images).
    """
    seed = check_nonnegative_int("seed", seed)
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    lr = check_positive_float("lr", lr)
    device = torch.device(device)
    x_train, y_train = (t.to(device) for t in load_digit_images(split="train"))
    x_test, y_test = (t.to(device) for t in load_digit_images(split="test"))
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    with seeded_init(seed):
        model = DigitOracle().to(device)
        steps_per_epoch = -(-len(x_train) // batch_size)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(x_train), generator=gen).to(device)
            total = 0.0
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                loss = F.cross_entropy(model(_random_shift(x_train[idx], gen)), y_train[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            if progress:
                model.eval()
                acc = _accuracy(model, x_test, y_test)
                print(
                    f"epoch {epoch + 1}/{epochs}  loss {total / len(x_train):.4f}  "
                    f"test acc {acc:.4f}  ({time.perf_counter() - start:.1f} s)"
                )
    model.eval()
    return OracleFit(model, _accuracy(model, x_test, y_test))

"""Bring your own problem: CTRL on 2-D data and labels you supply (README, "Your own problem").

Your data: points x with a condition c you already generate from (here: two spirals,
c = which spiral). Your new label y: a noisy rule on x you only know through labelled
examples (here: y = 1 for points to the right, with 10 % label noise). CTRL then samples
p(x | c, y) ∝ p(y | x) p_pre(x | c), and the report compares it with the exact target.

    python examples/bring_your_own_data.py            # quick (CPU, about a minute)
    CTRL_TEACH_PROFILE=full python examples/bring_your_own_data.py
"""

from __future__ import annotations

import math

import torch

from ctrl_teach import (
    DiffusionSampler,
    condition_pretrained,
    fit_classifier,
    pick,
    pretrain_on_points,
)


def make_spirals(n: int, generator: torch.Generator):
    """Your data: two interleaved spirals, c in {0, 1}."""
    c = torch.randint(0, 2, (n,), generator=generator)
    r = torch.rand(n, generator=generator) * 2.5 + 0.3
    angle = 2.2 * r + math.pi * c
    x = torch.stack([r * torch.cos(angle), r * torch.sin(angle)], 1)
    return x + 0.08 * torch.randn(n, 2, generator=generator), c


def make_labels(x: torch.Tensor, generator: torch.Generator, noise: float = 0.1):
    """Your offline labels: y = 1[x_1 > 0], each flipped with probability ``noise``."""
    y = (x[:, 0] > 0).long()
    flip = torch.rand(len(y), generator=generator) < noise
    return torch.where(flip, 1 - y, y)


def main(pretrain_iterations=None, iterations=None, num_labelled=2000, seed=0) -> dict:
    """The three calls, then the exact-target report for every (c, y).

    Args:
        pretrain_iterations: budget of the pre-training on your points (default: 1500 quick,
            6000 full).
        iterations: fine-tuning budget (default: 200 quick, 1000 full).
        num_labelled: offline labelled points.
        seed: seeds the data.

    Returns:
        ``{"c=.., y=..": report}`` with the certificate gap, energy distances and confidences.
    """
    gen = torch.Generator().manual_seed(seed)
    x, c = make_spirals(20_000, gen)
    pre = pretrain_on_points(x, c=c, iterations=pretrain_iterations or pick(1500, 6000),
                             progress=False)
    x_lab, _ = make_spirals(num_labelled, gen)          # labelled inputs need not come from pre
    fit = fit_classifier(x_lab, make_labels(x_lab, gen))
    short = DiffusionSampler(pre.schedule, num_steps=20, eta=1.0)   # a short chain
    model = condition_pretrained(pre, fit.reward, sampler=short,
                                 iterations=iterations or pick(200, 1000), progress=False)
    report = {f"c={c_}, y={y_}": model.evaluate(c=c_, y=y_, num_candidates=8000,
                                                num_samples=2000)
              for c_ in (0, 1) for y_ in (0, 1)}
    print(f"classifier: held-out accuracy {fit.val_accuracy:.3f}, temperature "
          f"{fit.temperature:.2f}, ECE {fit.val_ece:.3f}")
    print(f"{'':10s} {'gap (nats)':>16s} {'ED to target':>13s} {'ED do nothing':>14s} "
          f"{'confidence':>11s} {'exact':>6s}")
    for key, r in report.items():
        print(f"{key:10s} {r['gap']:8.3f} +- {r['gap_se']:.3f} {r['ed']:13.4f} "
              f"{r['ed_nothing']:14.4f} {r['confidence']:11.3f} {r['confidence_exact']:6.3f}")
    return report


if __name__ == "__main__":
    main()

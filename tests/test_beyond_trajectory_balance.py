"""Relative trajectory balance (Venkatraman et al. 2024) on the 1-D Gaussian problem.

Data N(0, 1), the exact denoiser, a 10-step eta = 1 sampler (memoryless: the initial-law term is
~1e-7), reward log N(1; x, 0.5^2). The soft-optimal steps are Gaussian in closed form
(``gaussian_optimal_step``), so (1) the RTB residual of the exact optimal policy with the exact
log Z vanishes on every trajectory, on- or off-policy, and (2) training a variance-aware policy
and log Z_theta from zero recovers log Z = log E_pre[exp(r / alpha)], the optimal output law and
a certificate gap ~0.
"""

import pytest
import torch
from torch import nn

from ctrl_teach.beyond._gaussian_problem import gaussian_problem
from ctrl_teach.beyond.trajectory_balance import (
    behaviour_trajectories,
    trajectory_balance,
    trajectory_balance_residual,
)
from ctrl_teach.ctrl import HeadAugmentedModel, certificate_gap, gaussian_optimal_step, rollout
from ctrl_teach.diffusion import gaussian_step_affine

N_EVAL = 40_000


class ExactOptimalHead(nn.Module):
    """The soft-optimal step N(slope x + intercept, var) as a control ``(a, log s)`` in noise
    units of the pre-trained step N(s x + b, sigma^2)."""

    def __init__(self, problem):
        super().__init__()
        sampler, self.rows = problem.sampler, {}
        for k in range(sampler.num_steps - 1):           # the noise-free last step is skipped
            slope, icpt, var, sigma = gaussian_optimal_step(
                sampler, 0.0, 1.0, problem.reward, k, y=0, alpha=problem.alpha,
                gamma=problem.gamma)
            s, b, _ = gaussian_step_affine(sampler, k, 0.0, 1.0)
            self.rows[int(sampler.timesteps[k])] = ((slope - s) / sigma, (icpt - b) / sigma,
                                                    0.5 * torch.log(torch.tensor(var / sigma**2)))

    def forward(self, x, t, c, y):
        da, a0, log_s = self.rows[int(t[0])]
        return da * x + a0, torch.full_like(x, float(log_s))


@pytest.mark.parametrize("alpha, noise_scale", [(1.0, 1.0), (2.0, 1.5)])
def test_residual_vanishes_at_the_soft_optimum(alpha, noise_scale):
    problem = gaussian_problem(alpha=alpha)
    aug = HeadAugmentedModel(problem.network, problem.sampler, 1, head=ExactOptimalHead(problem),
                             variance=True)
    y = torch.zeros(2000, dtype=torch.long)
    states = behaviour_trajectories(aug, y=y, noise_scale=noise_scale,
                                    generator=torch.Generator().manual_seed(0))
    log_z = torch.tensor([problem.log_z])
    with torch.no_grad():
        delta = trajectory_balance_residual(aug, problem.reward, log_z, states, y=y,
                                            alpha=alpha)
        wrong = trajectory_balance_residual(aug, problem.reward, log_z + 0.1, states, y=y,
                                            alpha=alpha)
    print(f"alpha={alpha}, behaviour std x{noise_scale}: |delta| max {delta.abs().max():.2e}")
    assert delta.abs().max() < 1e-2
    assert wrong.mean() == pytest.approx(0.1, abs=1e-2)


def test_trajectory_balance_reaches_the_soft_optimum():
    problem = gaussian_problem()
    aug = problem.augmented(0, variance=True)
    hist = trajectory_balance(aug, problem.reward, iterations=120, batch_size=512, lr=5e-3,
                              seed=0)
    with torch.no_grad():
        out = rollout(aug, problem.reward, y=torch.zeros(N_EVAL, dtype=torch.long),
                      generator=torch.Generator().manual_seed(2))
    gap, se = certificate_gap(problem.alpha_log_z, 0.0, out.J)
    log_z, m, v = float(hist.log_z_table[0]), float(out.x0.mean()), float(out.x0.var())
    opt = problem.optimal_moments
    print(f"RTB: log Z_theta {log_z:.4f} vs exact {problem.log_z:.4f}; gap {gap:.4f} +- {se:.4f}"
          f" (mean-only floor {problem.floor.mean_only:.4f}); mean {m:.4f} var {v:.4f} vs exact "
          f"optimum {opt[0]:.4f} {opt[1]:.4f}; final loss {hist.loss[-1]:.4f}")
    assert log_z == pytest.approx(problem.log_z, abs=0.01)
    assert -3 * se < gap < 0.01 + 2 * se
    assert m == pytest.approx(opt[0], rel=0.01)
    assert v == pytest.approx(opt[1], rel=0.03)
    assert v < 0.9 * problem.floor.mean_only_moments[1]      # below the mean-only class


def test_bad_arguments_raise_value_errors():
    problem = gaussian_problem()
    aug = problem.augmented(0, variance=True)
    for name, kwargs in [("noise_scale", dict(noise_scale=0.0)), ("lr_log_z", dict(lr_log_z=-1.0)),
                         ("batch_size", dict(batch_size=0)), ("augmented", {})]:
        target = problem.network if name == "augmented" else aug
        with pytest.raises(ValueError, match=name):
            trajectory_balance(target, problem.reward, iterations=1, **kwargs)
    with pytest.raises(ValueError, match="states"):
        trajectory_balance_residual(aug, problem.reward, torch.zeros(1), torch.zeros(2, 4, 1),
                                    y=torch.zeros(4, dtype=torch.long))

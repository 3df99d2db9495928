"""Adjoint matching (Domingo-Enrich et al. 2024) on the 1-D Gaussian problem, against closed forms.

Data N(0, 1), the exact denoiser, a 10-step sampler, reward log N(1; x, 0.5^2), alpha = gamma = 1.
Adjoint matching controls the mean only, so its best gap is the mean-only floor
(``gaussian_step_floor``). With eta = 1 (memoryless: x_T forgets x_0) the fixed start N(0, 1)
costs nothing and the output mean reaches the target's; with eta = 0.5 on the same schedule
(alpha_bar_T ~ 1e-6, but the deterministic part of each step carries x_T to x_0) the fixed start
leaves the initial-value bias alpha KL(nu || nu*), and learning the initial mean removes the bias
of the mean.
"""

import math

import pytest
import torch

from ctrl_teach.beyond._gaussian_problem import gaussian_problem, tilted_log_z
from ctrl_teach.beyond.adjoint_matching import (
    adjoint_matching,
    lean_adjoint,
    sample_trajectories,
)
from ctrl_teach.ctrl import (
    HeadAugmentedModel,
    certificate_gap,
    gaussian_chain_to_data,
    gaussian_step_floor,
    rollout,
)
from ctrl_teach.diffusion import DiffusionSampler, gaussian_sampler_moments
from ctrl_teach.profiles import seeded_init

OBS, TAU, N_EVAL = 1.0, 0.5, 40_000


@pytest.fixture(scope="module")
def problem():
    return gaussian_problem()


def _fit(problem, sampler, learn_initial=False, lr=1e-2):
    """Adjoint matching from a zero control; returns the model, its gap (with SE) and moments."""
    with seeded_init(0):
        aug = HeadAugmentedModel(problem.network, sampler, 1, width=64,
                                 learn_initial=learn_initial)
    adjoint_matching(aug, problem.reward, iterations=100, batch_size=512, lr=lr, seed=0)
    pre = gaussian_sampler_moments(sampler, 0.0, 1.0)
    log_z = tilted_log_z(pre[0], pre[1], OBS, TAU)
    with torch.no_grad():
        out = rollout(aug, problem.reward, y=torch.zeros(N_EVAL, dtype=torch.long),
                      generator=torch.Generator().manual_seed(2))
    gap, se = certificate_gap(log_z, 0.0, out.J)
    return aug, gap, se, float(out.x0.mean()), float(out.x0.var())


@pytest.fixture(scope="module")
def memoryless_fit(problem):
    return _fit(problem, problem.sampler)


def test_lean_adjoint_is_the_chain_rule_of_the_pretrained_means(problem):
    # the exact denoiser's steps are affine: adj_i = (prod_{k >= i} s_k) grad r(x_0) / alpha
    aug = problem.augmented(0, variance=False)
    y = torch.zeros(64, dtype=torch.long)
    paths = sample_trajectories(aug, y=y, generator=torch.Generator().manual_seed(0))
    adj = lean_adjoint(aug, problem.reward, paths.states, y=y, alpha=2.0, gamma=3.0)
    grad_r = 1.5 * (OBS - paths.states[-1]) / TAU**2            # gamma / alpha = 1.5
    for i in range(aug.sampler.num_steps + 1):
        A, _, _ = gaussian_chain_to_data(aug.sampler, 0.0, 1.0, i)
        # atol: the first step's slope is 6e-3 (x_T is almost forgotten), float32 cancellation
        assert torch.allclose(adj[i], A * grad_r, rtol=1e-4, atol=3e-4)
    assert len(paths.controls) == aug.sampler.num_steps and paths.kl.abs().max() == 0


def test_adjoint_matching_lands_on_the_mean_only_floor(problem, memoryless_fit):
    _, gap, se, m, v = memoryless_fit
    floor = problem.floor
    print(f"adjoint matching (eta=1): gap {gap:.4f} +- {se:.4f}, mean-only floor "
          f"{floor.mean_only:.4f}; mean {m:.4f} var {v:.4f} vs best mean-only "
          f"{floor.mean_only_moments[0]:.4f} {floor.mean_only_moments[1]:.4f}, exact optimum "
          f"{floor.optimal_moments[0]:.4f} {floor.optimal_moments[1]:.4f}")
    assert floor.mean_only > 0.05
    assert abs(gap - floor.mean_only) < 0.01 + 2 * se
    assert m == pytest.approx(floor.mean_only_moments[0], rel=0.02)
    assert v == pytest.approx(floor.mean_only_moments[1], rel=0.03)
    # the mean reaches the optimum's; the variance stays above it (the floor's footprint)
    assert m == pytest.approx(floor.optimal_moments[0], rel=0.02)
    assert v > 1.1 * floor.optimal_moments[1]


def _initial_mean_only_term(sampler, reward):
    """alpha KL(N(mu*, 1) || nu*) with nu* = N(mu*, 1 / prec) ∝ N(0, 1) exp(v_0): the price of
    a learned initial *mean* (variance kept at 1), and mu*."""
    A, B, V = gaussian_chain_to_data(sampler, 0.0, 1.0, 0)
    S = TAU**2 + V                                       # w = 1, lambda = 1
    prec = 1 + A * A / S
    return 0.5 * (prec - 1 - math.log(prec)), A * (OBS - float(B.reshape(-1)[0])) / S / prec


def test_memoryless_schedule_removes_the_initial_value_bias(problem, memoryless_fit):
    _, gap1, se1, m1, _ = memoryless_fit
    sampler = DiffusionSampler(problem.sampler.schedule, num_steps=10, eta=0.5)
    floor = gaussian_step_floor(sampler, 0.0, 1.0, problem.reward, y=0)
    per_step = sum(floor.per_step)
    _, gap2, se2, m2, _ = _fit(problem, sampler)
    aug3, gap3, se3, m3, _ = _fit(problem, sampler, learn_initial=True, lr=2e-2)
    init_term, mu_star = _initial_mean_only_term(sampler, problem.reward)
    t1, t2 = problem.target_moments[0], floor.target_moments[0]
    print(f"eta=1  : initial-law part of the gap {gap1 - sum(problem.floor.per_step):.4f} +- "
          f"{se1:.4f} (closed form {problem.floor.initial:.2e}); mean bias {m1 - t1:+.4f}")
    print(f"eta=0.5: initial-law part of the gap {gap2 - per_step:.4f} +- {se2:.4f} (closed form "
          f"KL(nu||nu*) = {floor.initial:.4f}); mean bias {m2 - t2:+.4f} (closed form "
          f"{floor.mean_only_moments[0] - t2:+.4f})")
    m0 = float(aug3.init_mean.detach())
    print(f"eta=0.5, learned initial mean {m0:.4f} (mu* {mu_star:.4f}): gap "
          f"{gap3:.4f} +- {se3:.4f} (closed form {per_step + init_term:.4f}); mean bias "
          f"{m3 - t2:+.4f}")
    # memoryless: no initial-law term, the output mean is the target's
    assert problem.floor.initial < 1e-4
    assert abs(gap1 - sum(problem.floor.per_step)) < 0.01 + 2 * se1
    assert abs(m1 - t1) < 0.02 * t1
    # not memoryless: the fixed start leaves alpha KL(nu || nu*) and a biased mean
    assert floor.initial > 0.2
    assert abs(gap2 - floor.mean_only) < 0.015 + 2 * se2
    assert m2 == pytest.approx(floor.mean_only_moments[0], rel=0.02)
    assert t2 - m2 > 0.08
    # a learned initial mean removes the bias of the mean (the variance part stays)
    assert m0 == pytest.approx(mu_star, abs=0.03)
    assert abs(gap3 - (per_step + init_term)) < 0.015 + 2 * se3
    assert abs(m3 - t2) < 0.02 * t2


def test_bad_arguments_raise_value_errors(problem):
    with pytest.raises(ValueError, match="mean-only"):
        adjoint_matching(problem.augmented(0, variance=True), problem.reward, iterations=1)
    aug = problem.augmented(0, variance=False)
    with pytest.raises(ValueError, match="iterations"):
        adjoint_matching(aug, problem.reward, iterations=0)
    with pytest.raises(ValueError, match="alpha"):
        adjoint_matching(aug, problem.reward, iterations=1, alpha=0.0)
    with pytest.raises(ValueError, match="states"):
        lean_adjoint(aug, problem.reward, torch.zeros(3, 4, 1), y=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="y"):
        sample_trajectories(aug, y=0)

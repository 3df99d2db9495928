"""Score-function policy gradient (DDPO / DPOK with the KL) on the 1-D Gaussian problem.

Data N(0, 1), the exact denoiser, a 10-step eta = 1 sampler and the reward log N(1; x, 0.5^2)
(``ctrl_teach.beyond._gaussian_problem``): the soft-optimal sampler's output law and alpha log Z
are closed form. The estimator must agree with CTRL's pathwise gradient of the same J, and
fine-tuning a variance-aware head with it must reach the optimum (gap ~ 0, below the mean-only
floor).
"""

import pytest
import torch

from ctrl_teach.beyond._gaussian_problem import gaussian_problem
from ctrl_teach.beyond.policy_gradient import finetune_policy_gradient, policy_gradient_surrogate
from ctrl_teach.ctrl import certificate_gap, rollout


@pytest.fixture(scope="module")
def problem():
    return gaussian_problem()


def _perturbed(problem):
    aug = problem.augmented(0)
    with torch.no_grad():                       # a non-trivial policy (the head starts at 0)
        g = torch.Generator().manual_seed(3)
        aug.head.out.weight.normal_(0, 0.1, generator=g)
        aug.head.out.bias.normal_(0, 0.3, generator=g)
    return aug


def _gradients(aug, objective, n, reps, seed):
    params = aug.trainable_parameters()
    out = []
    for r in range(reps):
        aug.zero_grad()
        objective(torch.zeros(n, dtype=torch.long), torch.Generator().manual_seed(seed + r)
                  ).backward()
        out.append(torch.cat([p.grad.flatten() for p in params]).clone())
    return torch.stack(out)


def test_score_function_estimator_matches_the_pathwise_gradient(problem):
    aug = _perturbed(problem)
    path = _gradients(aug, lambda y, g: rollout(aug, problem.reward, y=y, generator=g).J.mean(),
                      4096, 5, 0).mean(0)
    pg = {b: _gradients(aug, lambda y, g, b=b: policy_gradient_surrogate(
        aug, problem.reward, y=y, generator=g, baseline=b)[0], 4096, 5, 100)
        for b in ("leave_one_out", "none")}
    for b, grads in pg.items():
        est = grads.mean(0)
        cos = float(est @ path / (est.norm() * path.norm()))
        rel = float((est - path).norm() / path.norm())
        print(f"baseline={b}: cosine {cos:.5f}, relative error {rel:.4f} to the pathwise grad")
        assert cos > 0.995 and rel < 0.1
    # the baseline keeps the mean and cuts the spread of the estimator
    spread = {b: float(g.std(0).norm()) for b, g in pg.items()}
    print(f"estimator spread (norm of per-coordinate sd): {spread}")
    assert spread["leave_one_out"] < 0.85 * spread["none"]


def test_policy_gradient_reaches_the_optimal_sampler(problem):
    aug = problem.augmented(0)
    hist = finetune_policy_gradient(aug, problem.reward, iterations=400, batch_size=256,
                                    lr=5e-3, seed=0)
    with torch.no_grad():
        out = rollout(aug, problem.reward, y=torch.zeros(100_000, dtype=torch.long),
                      generator=torch.Generator().manual_seed(2))
        pre = rollout(problem.augmented(1), problem.reward,
                      y=torch.zeros(20_000, dtype=torch.long),
                      generator=torch.Generator().manual_seed(2))
    gap, se = certificate_gap(problem.alpha_log_z, 0.0, out.J)
    gap_pre, _ = certificate_gap(problem.alpha_log_z, 0.0, pre.J)
    m, v = float(out.x0.mean()), float(out.x0.var())
    (m_opt, v_opt), floor = problem.optimal_moments, problem.floor.mean_only
    print(f"policy gradient ({hist.wall_time:.1f} s): gap {gap:.4f} +- {se:.4f} (pre-trained "
          f"{gap_pre:.4f}, mean-only floor {floor:.4f}); mean {m:.4f} var {v:.4f} vs optimal "
          f"({m_opt:.4f}, {v_opt:.4f}); KL {float(out.kl.sum(1).mean()):.4f}")
    assert len(hist.J) == 400 and hist.J[-1] > hist.J[0]
    assert -3 * se < gap < 0.01 + 2 * se
    assert gap < floor - 3 * se < gap_pre              # below what a mean-only step can reach
    assert m == pytest.approx(m_opt, rel=0.02)
    assert v == pytest.approx(v_opt, rel=0.03)


def test_policy_gradient_checks_its_arguments(problem):
    aug = problem.augmented(0)
    with pytest.raises(ValueError, match="baseline"):
        finetune_policy_gradient(aug, problem.reward, iterations=1, baseline="value")
    with pytest.raises(ValueError, match="iterations"):
        finetune_policy_gradient(aug, problem.reward, iterations=0)
    with pytest.raises(ValueError, match="alpha"):
        finetune_policy_gradient(aug, problem.reward, iterations=1, alpha=0.0)
    with pytest.raises(ValueError, match="learn_initial"):
        policy_gradient_surrogate(problem.augmented(0, learn_initial=True), problem.reward,
                                  y=torch.zeros(4, dtype=torch.long))

"""DRaFT-K (reward back-propagation through the last steps, no KL) over-optimises.

On the 1-D Gaussian problem (``ctrl_teach.beyond._gaussian_problem``) the KL-regularised optimum
is known in closed form: the tilted target N(0.73, 0.18) at a path KL of about 0.68. DRaFT-1
has no KL, so it runs past it: the samples pile up at the reward's maximum obs = 1, the variance
collapses and the KL to the pre-trained sampler is an order of magnitude larger. The certificate
alpha log Z - J of the CTRL objective says so too.
"""

import math

import pytest
import torch

from ctrl_teach.beyond._gaussian_problem import gaussian_problem
from ctrl_teach.beyond.draft import finetune_draft
from ctrl_teach.ctrl import certificate_gap, rollout


@pytest.fixture(scope="module")
def problem():
    return gaussian_problem()


def test_draft_over_optimises_past_the_tilted_target(problem):
    aug = problem.augmented(0)
    hist = finetune_draft(aug, problem.reward, iterations=100, batch_size=256, lr=5e-3,
                          truncate_steps=2, seed=0)                 # DRaFT-1
    with torch.no_grad():
        out = rollout(aug, problem.reward, y=torch.zeros(20_000, dtype=torch.long),
                      generator=torch.Generator().manual_seed(2))
    m, v = float(out.x0.mean()), float(out.x0.var())
    kl = float(out.kl.sum(1).mean())
    (m_t, v_t), obs = problem.target_moments, problem.obs
    # the optimum's path KL: J* = alpha log Z, so KL* = E*[log p] - log Z (initial term ~ 0)
    e_logp = -((obs - m_t) ** 2 + v_t) / (2 * problem.tau**2) - math.log(
        problem.tau * math.sqrt(2 * math.pi))
    kl_opt = e_logp - problem.log_z
    gap, se = certificate_gap(problem.alpha_log_z, 0.0, out.J)
    print(f"DRaFT-1 ({hist.wall_time:.1f} s): mean {m:.4f} var {v:.4f} vs target ({m_t:.4f}, "
          f"{v_t:.4f}); KL {kl:.3f} vs the optimum's {kl_opt:.3f}; E log p "
          f"{float(out.log_reward.mean()):.3f} vs {e_logp:.3f}; certificate gap {gap:.3f}")
    assert m > m_t + 0.5 * (obs - m_t)              # past the target, most of the way to obs
    assert abs(m - obs) < 0.05
    assert v < 0.25 * v_t                           # collapsed
    assert kl > 5 * kl_opt                          # far from the pre-trained model
    assert float(out.log_reward.mean()) > e_logp    # a better reward than the optimum ...
    assert gap > 1.0 + 3 * se                       # ... and a much worse KL-regularised J
    assert hist.kl[-1] > 5 * kl_opt and hist.log_reward[-1] > hist.log_reward[0]


def test_draft_needs_a_controlled_step(problem):
    aug = problem.augmented(0)
    with pytest.raises(ValueError, match="truncate_steps"):
        finetune_draft(aug, problem.reward, iterations=1, truncate_steps=1)
    with pytest.raises(ValueError, match="iterations"):
        finetune_draft(aug, problem.reward, iterations=0)

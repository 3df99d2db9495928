"""The floor of the mean-only policy class, and the variance-aware step that closes it.

1-D Gaussian data N(0, 1), the exact denoiser, a 10-step sampler (eta = 1) and the reward
log N(1; x, 0.5^2): the soft-optimal step is Gaussian with a smaller variance than the
pre-trained step, so a mean-only policy cannot reach the optimum. Its best gap is the closed-form
floor alpha sum_k (r_k - 1 - log r_k) / 2 (``gaussian_step_floor``); a variance-aware policy
goes below it, to the initial-law term (here ~0 on a cosine schedule).
"""

import math

import pytest
import torch

from ctrl_teach.ctrl import (
    GaussianLikelihood,
    HeadAugmentedModel,
    LoRAAugmentedModel,
    MLPClassifier,
    certificate_gap,
    finetune,
    gaussian_log_evidence,
    gaussian_step_floor,
    rollout,
    sample,
)
from ctrl_teach.ctrl.augmented import control_kl
from ctrl_teach.data.toys import GaussianMixture
from ctrl_teach.diffusion import (
    DiffusionSampler,
    ExactMixtureDenoiser,
    NoiseSchedule,
    gaussian_sampler_moments,
)
from ctrl_teach.pretrained import load_pretrained

OBS, TAU, K = 1.0, 0.5, 10


def test_control_kl_is_the_gaussian_kl():
    g = torch.Generator().manual_seed(0)
    a, log_s = torch.randn(6, 3, generator=g), 0.3 * torch.randn(6, 3, generator=g)
    p = torch.distributions.Normal(a, log_s.exp())          # sigma = 1 in noise units
    q = torch.distributions.Normal(torch.zeros(6, 3), torch.ones(6, 3))
    want = torch.distributions.kl_divergence(p, q).sum(1)
    assert torch.allclose(control_kl(a, log_s), want, atol=1e-6)
    assert torch.allclose(control_kl(a), 0.5 * a.pow(2).sum(1))


@pytest.mark.parametrize("cls", [HeadAugmentedModel, LoRAAugmentedModel])
def test_variance_aware_models_start_as_the_pretrained_model(cls):
    pre = load_pretrained("toy-gmm")
    sampler = DiffusionSampler(pre.schedule, num_steps=10, eta=1.0)
    torch.manual_seed(0)
    aug = cls(pre.network, sampler, num_labels=2, variance=True)
    c, y = torch.tensor([0, 1] * 10), torch.arange(20) % 2
    x_pre = sampler.sample(pre.network, 20, c=c, generator=torch.Generator().manual_seed(5))
    x_aug = sample(aug, 20, c=c, y=y, generator=torch.Generator().manual_seed(5))
    assert torch.equal(x_pre, x_aug)
    out = rollout(aug, MLPClassifier(num_labels=2), c=c, y=y,
                  generator=torch.Generator().manual_seed(1))
    assert out.kl.abs().max() == 0.0
    step, _ = aug.step(torch.zeros(4, 2), K - 1, torch.zeros(4, dtype=torch.long),
                       torch.zeros(4, dtype=torch.long))
    assert step.std == 0 and step.log_scale is None      # the noise-free last step is left alone


def test_floor_shrinks_with_the_number_of_steps():
    schedule = NoiseSchedule.cosine(50)
    reward = GaussianLikelihood([OBS], TAU)
    floors = [gaussian_step_floor(DiffusionSampler(schedule, num_steps=k), 0.0, 1.0, reward,
                                  y=0).mean_only for k in (5, 10, 20, 50)]
    assert all(a > b > 0 for a, b in zip(floors, floors[1:]))
    # the optimal steps reproduce the tilted target from the fixed start (nu* = nu here)
    f = gaussian_step_floor(DiffusionSampler(schedule, num_steps=K), 0.0, 1.0, reward, y=0)
    assert f.initial < 1e-4
    assert f.optimal_moments == pytest.approx(f.target_moments, rel=1e-5)
    assert f.mean_only_moments[1] > f.optimal_moments[1]     # too wide: the floor's footprint


@pytest.fixture(scope="module")
def gaussian_problem():
    schedule = NoiseSchedule.cosine(50)
    net = ExactMixtureDenoiser(GaussianMixture([1.0], [[0.0]], [1.0]), schedule)
    sampler = DiffusionSampler(schedule, num_steps=K, eta=1.0)
    reward = GaussianLikelihood([OBS], TAU)
    m_s, v_s = gaussian_sampler_moments(sampler, 0.0, 1.0)
    return net, sampler, reward, gaussian_log_evidence(m_s, v_s, OBS, TAU)


def _fine_tuned_gap(gaussian_problem, variance):
    net, sampler, reward, log_z = gaussian_problem
    torch.manual_seed(0)
    aug = HeadAugmentedModel(net, sampler, 1, width=64, variance=variance)
    finetune(aug, reward, iterations=300, batch_size=256, lr=5e-3, seed=0)
    with torch.no_grad():
        out = rollout(aug, reward, y=torch.zeros(100_000, dtype=torch.long),
                      generator=torch.Generator().manual_seed(2))
    gap, se = certificate_gap(log_z, 0.0, out.J)
    x = sample(aug, 100_000, y=0, generator=torch.Generator().manual_seed(1))
    return gap, se, float(x.mean()), float(x.var())


def test_mean_only_policy_lands_on_the_floor(gaussian_problem):
    _, sampler, reward, _ = gaussian_problem
    floor = gaussian_step_floor(sampler, 0.0, 1.0, reward, y=0)
    gap, se, m, v = _fine_tuned_gap(gaussian_problem, variance=False)
    print(f"mean-only: gap {gap:.4f} +- {se:.4f}, floor {floor.mean_only:.4f}; mean {m:.4f} "
          f"var {v:.4f} vs best mean-only sampler {floor.mean_only_moments}")
    assert floor.mean_only > 0.05
    assert abs(gap - floor.mean_only) < 0.01 + 2 * se
    assert m == pytest.approx(floor.mean_only_moments[0], rel=0.02)
    assert v == pytest.approx(floor.mean_only_moments[1], rel=0.03)


def test_variance_aware_policy_reaches_the_optimum(gaussian_problem):
    _, sampler, reward, _ = gaussian_problem
    floor = gaussian_step_floor(sampler, 0.0, 1.0, reward, y=0)
    gap, se, m, v = _fine_tuned_gap(gaussian_problem, variance=True)
    print(f"variance-aware: gap {gap:.4f} +- {se:.4f} (initial-law term {floor.initial:.2e});"
          f" mean {m:.4f} var {v:.4f} vs optimal sampler {floor.optimal_moments}")
    assert -3 * se < gap < 0.01 + 2 * se
    assert m == pytest.approx(floor.optimal_moments[0], rel=0.02)
    assert v == pytest.approx(floor.optimal_moments[1], rel=0.02)
    assert not math.isclose(v, floor.mean_only_moments[1], rel_tol=0.05)

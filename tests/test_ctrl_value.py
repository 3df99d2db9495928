"""Soft value function and soft-optimal control (ctrl_teach.ctrl.value, Chapter 4).

Pre-trained model: the exact denoiser of Gaussian data, so x_0 | x_t is Gaussian under the
sampler's chain and v_t is a closed-form quadratic. The Monte Carlo estimators (pre-trained
rollouts) must agree with it within their standard errors.
"""

import math

import pytest
import torch

from ctrl_teach.ctrl import GaussianLikelihood
from ctrl_teach.ctrl.value import (
    gaussian_chain_to_data,
    gaussian_optimal_control,
    gaussian_value,
    monte_carlo_value,
    optimal_control,
)
from ctrl_teach.data.toys import GaussianMixture
from ctrl_teach.diffusion import (
    DiffusionSampler,
    ExactMixtureDenoiser,
    NoiseSchedule,
    gaussian_sampler_moments,
)

Y_OBS, TAU, T = 1.0, 0.5, 50


def _setup_1d():
    schedule = NoiseSchedule.cosine(T, max_beta=0.8)
    net = ExactMixtureDenoiser(GaussianMixture([1.0], [[0.0]], [1.0]), schedule)
    return net, DiffusionSampler.ddpm(schedule), GaussianLikelihood([Y_OBS, -0.5], TAU)


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_monte_carlo_value_matches_closed_form(alpha):
    net, sampler, reward = _setup_1d()
    # typical states; far in the tail (x = -2 near the data) the weights exp(r / alpha)
    # degenerate and the delta-method standard error understates the error
    x = torch.linspace(-1, 1.5, 5)[:, None]
    gen = torch.Generator().manual_seed(0)
    for i in (0, 25, 40, sampler.num_steps):
        v, se = monte_carlo_value(net, sampler, reward, x, i, y=0, alpha=alpha,
                                  num_rollouts=1000, generator=gen, return_se=True)
        exact = gaussian_value(x, sampler, 0.0, 1.0, reward, i, y=0, alpha=alpha)
        assert v.shape == (5,)
        # 4 standard errors plus the O(1/M) log-mean-exp bias (and float32 rounding)
        assert ((v - exact).abs() <= 4 * se + 0.01).all(), (i, v, exact, se)


def test_gaussian_value_endpoints_and_bellman():
    net, sampler, reward = _setup_1d()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 1, generator=gen)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    K = sampler.num_steps
    # v_0 = r at the end of the chain
    r = reward(x)[torch.arange(6), y]
    assert torch.allclose(gaussian_value(x, sampler, 0.0, 1.0, reward, K, y=y), r, atol=1e-5)
    # at the start: E_{N(0,1)}[exp(v_T)] = Z, log Z = log N(y; m_s, v_s + tau^2)
    m_s, v_s = gaussian_sampler_moments(sampler, 0.0, 1.0)
    log_z = -0.5 * (Y_OBS - m_s) ** 2 / (v_s + TAU**2) - 0.5 * math.log(
        2 * math.pi * (v_s + TAU**2))
    xs = torch.randn(200_000, 1, generator=gen, dtype=torch.float64)
    vT = gaussian_value(xs, sampler, 0.0, 1.0, reward, 0, y=0)
    assert abs(float(torch.logsumexp(vT, 0)) - math.log(xs.shape[0]) - log_z) < 0.01
    # soft Bellman: v_t(x) = alpha log E_{p_pre(x'|x)}[exp(v_t'(x') / alpha)], one exact step
    alpha, i = 0.7, 20
    step = sampler.step(net, x.double(), i)
    xp = step.mean[:, None, :] + step.std * torch.randn(6, 100_000, 1, generator=gen,
                                                         dtype=torch.float64)
    vnext = gaussian_value(xp.reshape(-1, 1), sampler, 0.0, 1.0, reward, i + 1,
                           y=y.repeat_interleave(100_000), alpha=alpha).view(6, -1)
    rhs = alpha * (torch.logsumexp(vnext / alpha, 1) - math.log(vnext.shape[1]))
    lhs = gaussian_value(x.double(), sampler, 0.0, 1.0, reward, i, y=y, alpha=alpha)
    assert torch.allclose(lhs, rhs, atol=5e-3)


def test_optimal_control_matches_closed_form():
    net, sampler, reward = _setup_1d()
    x = torch.linspace(-2, 2, 5)[:, None]
    gen = torch.Generator().manual_seed(2)
    for i in (25, 45):
        a = optimal_control(net, sampler, reward, x, i, y=0, num_rollouts=1000,
                            generator=gen)
        exact = gaussian_optimal_control(x, sampler, 0.0, 1.0, reward, i, y=0)
        assert a.shape == x.shape
        assert ((a - exact).abs() <= 0.1 * exact.abs() + 0.03).all(), (i, a, exact)
    # the final noise-free step is never controlled
    last = sampler.num_steps - 1
    assert (optimal_control(net, sampler, reward, x, last, y=0) == 0).all()
    assert (gaussian_optimal_control(x, sampler, 0.0, 1.0, reward, last, y=0) == 0).all()
    # exact tilted step vs first order: same sign, smaller, and equal as sigma -> 0
    first = gaussian_optimal_control(x, sampler, 0.0, 1.0, reward, 25, y=0)
    full = gaussian_optimal_control(x, sampler, 0.0, 1.0, reward, 25, y=0, exact_step=True)
    assert ((full.abs() <= first.abs()) & (full * first >= 0)).all()


def test_two_dimensional_case():
    schedule = NoiseSchedule.cosine(20, max_beta=0.8)
    mean, std = [0.5, -0.5], 0.8
    net = ExactMixtureDenoiser(GaussianMixture([1.0], [mean], [std]), schedule)
    sampler = DiffusionSampler.ddpm(schedule)
    reward = GaussianLikelihood([1.0], 0.6, w=[1.0, 0.5])
    x = torch.tensor([[0.0, 0.0], [1.0, -1.0], [-1.0, 2.0]])
    gen = torch.Generator().manual_seed(3)
    v, se = monte_carlo_value(net, sampler, reward, x, 8, y=0, num_rollouts=1000,
                              generator=gen, return_se=True)
    exact = gaussian_value(x, sampler, torch.tensor(mean), std**2, reward, 8, y=0)
    assert ((v - exact).abs() <= 4 * se + 0.01).all()
    a = optimal_control(net, sampler, reward, x, 12, y=0, num_rollouts=1000, generator=gen)
    a_exact = gaussian_optimal_control(x, sampler, torch.tensor(mean), std**2, reward, 12, y=0)
    assert ((a - a_exact).abs() <= 0.1 * a_exact.abs() + 0.03).all()
    A, B, V = gaussian_chain_to_data(sampler, torch.tensor(mean), std**2, 0)
    assert B.shape == (2,) and V > 0


def test_bad_arguments_raise():
    net, sampler, reward = _setup_1d()
    x = torch.zeros(3, 1)
    cases = [
        ("alpha", dict(alpha=0.0)),
        ("gamma", dict(gamma=-1.0)),
        ("num_rollouts", dict(num_rollouts=0)),
    ]
    for name, kw in cases:
        with pytest.raises(ValueError, match=name):
            monte_carlo_value(net, sampler, reward, x, 0, y=0, **kw)
        with pytest.raises(ValueError, match=name):
            optimal_control(net, sampler, reward, x, 0, y=0, **kw)
    with pytest.raises(ValueError, match="step_index"):
        monte_carlo_value(net, sampler, reward, x, sampler.num_steps + 1, y=0)
    with pytest.raises(ValueError, match="step_index"):
        optimal_control(net, sampler, reward, x, sampler.num_steps, y=0)
    with pytest.raises(ValueError, match="step_index"):
        gaussian_value(x, sampler, 0.0, 1.0, reward, -1, y=0)
    with pytest.raises(ValueError, match="sampler"):
        monte_carlo_value(net, "ddpm", reward, x, 0, y=0)
    with pytest.raises(ValueError, match="x"):
        monte_carlo_value(net, sampler, reward, torch.zeros(3, 2), 0, y=0)
    with pytest.raises(ValueError, match="y"):
        monte_carlo_value(net, sampler, reward, x, 0, y=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="data_var"):
        gaussian_value(x, sampler, 0.0, -1.0, reward, 0, y=0)
    with pytest.raises(ValueError, match="reward"):
        gaussian_value(x, sampler, 0.0, 1.0, torch.nn.Identity(), 0, y=0)
    with pytest.raises(ValueError, match="y"):
        gaussian_optimal_control(x, sampler, 0.0, 1.0, reward, 0, y=5)

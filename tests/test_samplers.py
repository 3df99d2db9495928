"""Reverse steps against the DDPM / DDIM formulas, and samplers against exact laws."""

import math

import pytest
import torch

from ctrl_teach.data.toys import GaussianMixture
from ctrl_teach.diffusion import (
    DiffusionSampler,
    ExactMixtureDenoiser,
    MLPDenoiser,
    NoiseSchedule,
    gaussian_kl,
    gaussian_sampler_moments,
)


def test_ddpm_step_is_the_posterior_q_xprev_given_xt_x0():
    """Ho et al. eq. 7: mean = c0 x0_hat + c1 x_t, variance beta_tilde_t."""
    s = NoiseSchedule.linear(40)
    sampler = DiffusionSampler.ddpm(s)
    gen = torch.Generator().manual_seed(0)
    x, eps = torch.randn(8, 3, generator=gen), torch.randn(8, 3, generator=gen)
    ab = s.alpha_bar.double()
    for i in range(sampler.num_steps):
        step = sampler.step_from_eps(x, eps, i)
        t = step.t
        assert step.t_prev == t - 1
        beta = float(s.betas[t - 1])
        x0 = (x - math.sqrt(1 - ab[t]) * eps) / math.sqrt(ab[t])
        mu = (math.sqrt(ab[t - 1]) * beta / (1 - ab[t])) * x0 + (
            math.sqrt(1 - beta) * (1 - ab[t - 1]) / (1 - ab[t])) * x
        assert torch.allclose(step.mean, mu.float(), atol=1e-5)
        assert step.std**2 == pytest.approx(float((1 - ab[t - 1]) / (1 - ab[t]) * beta))
    assert step.std == 0  # the last step is noise-free


def test_ddim_timesteps_and_deterministic_eta0():
    s = NoiseSchedule.cosine(100)
    sampler = DiffusionSampler.ddim(s, 10, eta=0.0)
    assert sampler.timesteps[0] == 100 and sampler.prev_timesteps[-1] == 0
    assert (sampler.timesteps[:-1] == sampler.prev_timesteps[:-1] + 10).all()
    assert float(sampler.sigmas.max()) == 0
    model = MLPDenoiser(2, 100, 0)
    x_T = torch.randn(5, 2, generator=torch.Generator().manual_seed(1))
    a = sampler.sample(model, 5, x_T=x_T, generator=torch.Generator().manual_seed(2))
    b = sampler.sample(model, 5, x_T=x_T, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_ddim_step_formula():
    """DDIM eq. 12 with sigma from eq. 16, on a strided step."""
    s = NoiseSchedule.cosine(50)
    sampler = DiffusionSampler.ddim(s, 5, eta=0.7)
    x, eps = torch.randn(4, 2), torch.randn(4, 2)
    step = sampler.step_from_eps(x, eps, 2)
    ab, abp = float(s.alpha_bar[step.t]), float(s.alpha_bar[step.t_prev])
    sigma = 0.7 * math.sqrt((1 - abp) / (1 - ab)) * math.sqrt(1 - ab / abp)
    x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
    mu = math.sqrt(abp) * x0 + math.sqrt(1 - abp - sigma**2) * eps
    assert step.std == pytest.approx(sigma)
    assert torch.allclose(step.mean, mu, atol=1e-6)


def test_gaussian_kl_matches_torch_distributions():
    gen = torch.Generator().manual_seed(0)
    mp, mq = torch.randn(6, 1, 4, 4, generator=gen), torch.randn(6, 1, 4, 4, generator=gen)
    std = 0.37
    ours = gaussian_kl(mp, mq, std)
    p = torch.distributions.Normal(mp.flatten(1), std)
    q = torch.distributions.Normal(mq.flatten(1), std)
    ref = torch.distributions.kl_divergence(p, q).sum(1)
    assert torch.allclose(ours, ref, rtol=1e-5)
    with pytest.raises(ValueError, match="std"):
        gaussian_kl(mp, mq, 0.0)
    with pytest.raises(ValueError, match="mean_p"):
        gaussian_kl(mp, mq[:3], std)


def test_control_shifts_the_mean_by_sigma_times_a():
    """With control a, x_{t'} = mean + sigma a + sigma z: same noise, shifted output."""
    s = NoiseSchedule.cosine(10)
    sampler = DiffusionSampler.ddpm(s)
    model = ExactMixtureDenoiser(GaussianMixture([1.0], [[0.0]], [1.0]), s)
    x_T = torch.zeros(3, 1)
    plain, traj = sampler.sample(model, 3, x_T=x_T, generator=torch.Generator().manual_seed(0),
                                 return_trajectory=True)
    assert traj.shape == (11, 3, 1) and torch.equal(traj[-1], plain)

    def one_step_control(x, step):  # push by +1 noise unit at the first step only
        return torch.ones_like(x) if step.t == 10 else torch.zeros_like(x)

    moved = sampler.sample(model, 3, x_T=x_T, generator=torch.Generator().manual_seed(0),
                           control=one_step_control, return_trajectory=True)[1]
    assert torch.allclose(moved[1] - traj[1], torch.full((3, 1), float(sampler.sigmas[0])))


@pytest.mark.parametrize("num_steps, eta", [(None, 1.0), (None, 0.0), (10, 1.0)])
def test_sampler_with_exact_denoiser_matches_exact_affine_moments(num_steps, eta):
    """Monte Carlo through the real sampler == the exact moment recursion."""
    s = NoiseSchedule.cosine(50)
    sampler = DiffusionSampler(s, num_steps, eta)
    model = ExactMixtureDenoiser(GaussianMixture([1.0], [[1.0]], [0.5]), s)
    x = sampler.sample(model, 20_000, generator=torch.Generator().manual_seed(0))
    mean, var = gaussian_sampler_moments(sampler, 1.0, 0.25)
    assert float(x.mean()) == pytest.approx(mean, abs=0.015)  # 4 standard errors
    assert float(x.var()) == pytest.approx(var, rel=0.04)


def test_discretisation_error_vanishes_with_many_steps():
    errs = [abs(gaussian_sampler_moments(DiffusionSampler.ddpm(NoiseSchedule.cosine(T)),
                                         1.0, 0.25)[1] / 0.25 - 1) for T in (50, 200, 1000)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.01


def test_bad_sampler_arguments():
    s = NoiseSchedule.cosine(10)
    model = MLPDenoiser(2, 10, 2)
    sampler = DiffusionSampler.ddpm(s)
    with pytest.raises(ValueError, match="num_steps"):
        DiffusionSampler(s, 11)
    with pytest.raises(ValueError, match="eta"):
        DiffusionSampler(s, 5, eta=-1)
    with pytest.raises(ValueError, match="schedule"):
        DiffusionSampler("linear")
    with pytest.raises(ValueError, match="n"):
        sampler.sample(model, -2, c=0)
    with pytest.raises(ValueError, match="c must lie"):
        sampler.sample(model, 4, c=7)
    with pytest.raises(ValueError, match="c must be non-negative"):
        sampler.sample(model, 4, c=-1)
    with pytest.raises(ValueError, match="c must have 4 entries"):
        sampler.sample(model, 4, c=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="x_T"):
        sampler.sample(model, 4, c=0, x_T=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="x_T"):
        sampler.sample(model, 2, c=0, x_T=torch.tensor([[0.0, float("nan")]] * 2))

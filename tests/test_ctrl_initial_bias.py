"""The initial-value bias (Chapter 4) and its fix by a tilted initial law.

A linear schedule with small betas leaves signal at T (abar_T ~ 0.6), so x_T remembers x_0.
Keeping x_T ~ N(0, 1) then costs exactly alpha KL(nu || nu*) with nu* ∝ nu h_T, and
learning a Gaussian initial law removes it. Everything is closed form for 1-D Gaussian data.
"""

import math

import torch

from ctrl_teach.ctrl import (
    GaussianLikelihood,
    HeadAugmentedModel,
    certificate_gap,
    finetune,
    gaussian_posterior,
    rollout,
    sample,
)
from ctrl_teach.data.toys import GaussianMixture
from ctrl_teach.diffusion import (
    DiffusionSampler,
    ExactMixtureDenoiser,
    NoiseSchedule,
    gaussian_sampler_moments,
)

Y_OBS, TAU = 1.0, 0.5


def _gap(aug, reward, log_z):
    with torch.no_grad():
        out = rollout(aug, reward, y=torch.zeros(8000, dtype=torch.long),
                      generator=torch.Generator().manual_seed(2))
    return certificate_gap(log_z, 0.0, out.J)


def test_initial_value_bias_and_fix():
    schedule = NoiseSchedule.linear(20, beta_start=1e-5, beta_end=1e-3)
    net = ExactMixtureDenoiser(GaussianMixture([1.0], [[0.0]], [1.0]), schedule)
    sampler = DiffusionSampler.ddpm(schedule)
    reward = GaussianLikelihood([Y_OBS], TAU)
    m_s, v_s = gaussian_sampler_moments(sampler, 0.0, 1.0)
    # the pre-trained chain x_0 = A x_T + B + N(0, V): from the moments at init_var 1 and 0
    b, v = gaussian_sampler_moments(sampler, 0.0, 1.0, init_var=0.0)
    a = math.sqrt(v_s - v)
    prec = 1 + a * a / (TAU**2 + v)                  # nu* ∝ N(0,1) N(y; A x + B, tau^2 + V)
    mu = a * (Y_OBS - b) / (TAU**2 + v) / prec
    kl_nu = 0.5 * (prec * (1 + mu**2) - 1 - math.log(prec))
    log_z = -0.5 * (Y_OBS - m_s) ** 2 / (v_s + TAU**2) - 0.5 * math.log(
        2 * math.pi * (v_s + TAU**2))
    m_post, v_post = gaussian_posterior(m_s, v_s, Y_OBS, TAU)
    results = {}
    for learn in (False, True):
        torch.manual_seed(0)
        aug = HeadAugmentedModel(net, sampler, 1, learn_initial=learn, width=64)
        finetune(aug, reward, iterations=200, batch_size=256, lr=1e-2, seed=0)
        x = sample(aug, 20000, y=0, generator=torch.Generator().manual_seed(1))
        results[learn] = (*_gap(aug, reward, log_z), float(x.mean()), float(x.var()))
        print(f"learn_initial={learn}: gap {results[learn][0]:.4f} +- {results[learn][1]:.4f}"
              f" (KL(nu||nu*) = {kl_nu:.4f}); mean {results[learn][2]:.4f} var "
              f"{results[learn][3]:.4f} vs posterior {m_post:.4f} {v_post:.4f}")
    gap_fixed, se_fixed, *_ = results[False]
    gap_tilt, se_tilt, m, var = results[True]
    assert kl_nu > 0.05
    assert abs(gap_fixed - kl_nu) < 0.03 + 2 * se_fixed
    assert -3 * se_tilt < gap_tilt < 0.03 + 2 * se_tilt
    assert abs(m - m_post) < 0.05 * abs(m_post) and abs(var - v_post) < 0.05 * v_post

"""CTRL on 1-D Gaussian data learns the closed-form posterior (Chapter 4).

Pre-trained model: the exact denoiser of N(0, 1) with a cosine schedule, so the sampler's
output law N(m_s, v_s) is known exactly (``gaussian_sampler_moments``). Reward:
log N(y_obs; x, tau^2), alpha = 1. The soft-optimal output law is then the Gaussian posterior
of the prior N(m_s, v_s), and alpha log Z = log N(y_obs; m_s, v_s + tau^2).
"""


import torch

from ctrl_teach.ctrl import (
    GaussianLikelihood,
    HeadAugmentedModel,
    certificate_gap,
    finetune,
    gaussian_log_evidence,
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

Y_OBS, TAU, T = 1.0, 0.5, 50


def _setup():
    torch.manual_seed(0)
    schedule = NoiseSchedule.cosine(T)
    net = ExactMixtureDenoiser(GaussianMixture([1.0], [[0.0]], [1.0]), schedule)
    sampler = DiffusionSampler.ddpm(schedule)
    reward = GaussianLikelihood([Y_OBS], TAU)
    return net, sampler, reward


def test_gaussian_posterior_learned():
    net, sampler, reward = _setup()
    aug = HeadAugmentedModel(net, sampler, num_labels=1, width=64)
    hist = finetune(aug, reward, iterations=200, batch_size=256, lr=5e-3, seed=0)
    assert hist.kl[0] == 0.0
    m_s, v_s = gaussian_sampler_moments(sampler, 0.0, 1.0)
    m_post, v_post = gaussian_posterior(m_s, v_s, Y_OBS, TAU)
    m_data, v_data = gaussian_posterior(0.0, 1.0, Y_OBS, TAU)
    x = sample(aug, 20000, y=0, generator=torch.Generator().manual_seed(1))
    m, v = float(x.mean()), float(x.var())
    print(f"fine-tuned mean {m:.4f} var {v:.4f}; posterior of sampler law {m_post:.4f} "
          f"{v_post:.4f}; posterior of N(0,1) {m_data:.4f} {v_data:.4f}")
    assert abs(m - m_post) <= 0.05 * abs(m_post)
    assert abs(v - v_post) <= 0.05 * v_post
    # certificate: log Z closed form, gap >= 0 up to noise and small
    log_z = gaussian_log_evidence(m_s, v_s, Y_OBS, TAU)
    with torch.no_grad():
        out = rollout(aug, reward, y=torch.zeros(8000, dtype=torch.long),
                      generator=torch.Generator().manual_seed(2))
    gap, se = certificate_gap(log_z, 0.0, out.J)
    print(f"gap {gap:.4f} +- {se:.4f}")
    assert gap > -3 * se
    assert gap < 0.03 + 2 * se

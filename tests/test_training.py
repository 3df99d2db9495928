"""The training loop learns (against an exact answer) and is reproducible."""

import pytest
import torch

from ctrl_teach.data.toys import GaussianMixture
from ctrl_teach.diffusion import (
    DiffusionSampler,
    ExactMixtureDenoiser,
    MLPDenoiser,
    NoiseSchedule,
    gaussian_sampler_moments,
    train_denoiser,
)


def test_learns_the_exact_denoiser_of_a_gaussian():
    """On N(1, 0.5^2) data the learned eps must approach Tweedie's exact eps."""
    s = NoiseSchedule.cosine(50, max_beta=0.8)
    law = GaussianMixture([1.0], [[1.0]], [0.5])
    data = law.sample(20_000, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    net = MLPDenoiser(1, 50, 0, width=32, depth=2, emb_dim=16)
    result = train_denoiser(net, s, data, iterations=1000, batch_size=256, lr=3e-3, seed=0,
                            device="cpu", progress=False)
    exact = ExactMixtureDenoiser(law, s)
    x = torch.linspace(0.0, 2.0, 64)[:, None]  # +-2 data stds: where training data lives
    for t in (2, 25, 48):
        tt = torch.full((64,), t)
        err = (result.model(x, tt) - exact(x, tt)).abs().max()
        assert err < 0.1, f"t={t}: max |eps - eps*| = {err:.3f}"
    assert sum(result.losses[-50:]) < sum(result.losses[:50])
    # and the sampler built on it has the exact sampler's output law
    sampler = DiffusionSampler.ddpm(s)
    out = sampler.sample(result.model, 4000, generator=torch.Generator().manual_seed(1))
    mean, var = gaussian_sampler_moments(sampler, 1.0, 0.25)
    assert float(out.mean()) == pytest.approx(mean, abs=0.03)
    assert float(out.std()) == pytest.approx(var**0.5, rel=0.05)


def test_seeded_training_is_reproducible():
    s = NoiseSchedule.cosine(10)
    data = torch.randn(256, 2)
    cond = torch.randint(0, 2, (256,))
    runs = [train_denoiser(_seeded_net(), s, data, c=cond, iterations=20, batch_size=32,
                           seed=3, device="cpu", progress=False, c_drop_prob=0.2,
                           ema_decay=0.9)
            for _ in range(2)]
    assert len(runs[0].losses) == 20 and runs[0].losses == runs[1].losses
    for p, q in zip(runs[0].model.parameters(), runs[1].model.parameters()):
        assert torch.equal(p, q)


def _seeded_net():
    torch.manual_seed(0)
    return MLPDenoiser(2, 10, 2, width=16, depth=1)


def test_bad_training_arguments():
    s = NoiseSchedule.cosine(10)
    net = MLPDenoiser(2, 10, 2)
    data, cond = torch.randn(8, 2), torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError, match="x must have shape"):
        train_denoiser(net, s, torch.randn(8, 3), c=cond, progress=False)
    with pytest.raises(ValueError, match="x contains NaN"):
        train_denoiser(net, s, torch.full((8, 2), float("nan")), c=cond, progress=False)
    with pytest.raises(ValueError, match="c is required"):
        train_denoiser(net, s, data, c=None, progress=False)
    with pytest.raises(ValueError, match="c must lie"):
        train_denoiser(net, s, data, c=torch.full((8,), 5), progress=False)
    with pytest.raises(ValueError, match="x must hold at least one"):
        train_denoiser(net, s, torch.zeros(0, 2), c=torch.zeros(0, dtype=torch.long),
                       progress=False)
    with pytest.raises(ValueError, match="iterations"):
        train_denoiser(net, s, data, c=cond, iterations=0, progress=False)
    with pytest.raises(ValueError, match="c_drop_prob"):
        train_denoiser(net, s, data, c=cond, c_drop_prob=1.5, progress=False)
    with pytest.raises(ValueError, match="ema_decay"):
        train_denoiser(net, s, data, c=cond, ema_decay=1.0, progress=False)

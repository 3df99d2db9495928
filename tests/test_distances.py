"""Energy distance, MMD and Fréchet distance against exact answers."""

import math

import pytest
import torch

from ctrl_teach.evaluation import energy_distance, frechet_distance, mmd_rbf


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_energy_distance_point_masses():
    # E(delta_a, delta_b) = 2 |a - b| (within-sample terms vanish)
    a = torch.tensor([[1.0, 2.0]]).expand(5, 2)
    b = torch.tensor([[4.0, -2.0]]).expand(7, 2)
    assert energy_distance(a, b) == pytest.approx(10.0, abs=1e-9)


def test_energy_distance_same_law_is_near_zero():
    g = _gen()
    x, y = torch.randn(2000, 3, generator=g), torch.randn(2000, 3, generator=g)
    assert abs(energy_distance(x, y)) < 0.01


def test_energy_distance_shifted_gaussians_closed_form():
    # 1-D N(0,1) vs N(mu,1): 2 E|sqrt(2) Z + mu| - 2 E|sqrt(2) Z|, with
    # E|sigma Z + mu| = sigma sqrt(2/pi) exp(-mu^2 / (2 sigma^2)) + mu (1 - 2 Phi(-mu / sigma)).
    mu, sigma = 1.0, math.sqrt(2.0)
    phi = 0.5 * (1 + math.erf(-mu / sigma / math.sqrt(2)))
    folded = sigma * math.sqrt(2 / math.pi) * math.exp(-(mu**2) / (2 * sigma**2))
    folded += mu * (1 - 2 * phi)
    exact = 2 * folded - 2 * sigma * math.sqrt(2 / math.pi)
    # a deterministic "sample" of N(0, 1): its n quantiles at levels (i + 1/2) / n
    u = (torch.arange(3000, dtype=torch.float64) + 0.5) / 3000
    x = (math.sqrt(2) * torch.erfinv(2 * u - 1))[:, None]
    assert energy_distance(x, x + mu) == pytest.approx(exact, abs=0.005)
    # and with a random sample, within sampling error (sd about 0.02)
    g = _gen(1)
    y = torch.randn(4000, 1, generator=g) + mu
    assert energy_distance(torch.randn(4000, 1, generator=g), y) == pytest.approx(exact, abs=0.08)


def test_energy_distance_subsampling_and_images():
    g = _gen(2)
    x = torch.randn(300, 1, 2, 2, generator=g)
    y = torch.randn(300, 4, generator=g) + 1.0
    full = energy_distance(x, y)
    sub = energy_distance(x, y, max_samples=200, generator=_gen(3))
    assert sub == energy_distance(x, y, max_samples=200, generator=_gen(3))
    assert sub == pytest.approx(full, abs=0.15) and full > 0.5


def test_mmd_same_law_and_shifted():
    g = _gen(4)
    x, y = torch.randn(1500, 2, generator=g), torch.randn(1500, 2, generator=g)
    z = torch.randn(1500, 2, generator=g) + torch.tensor([1.0, 0.0])
    same, shifted = mmd_rbf(x, y), mmd_rbf(x, z)
    assert abs(same) < 0.005
    assert shifted > 0.05


def test_mmd_closed_form_point_masses():
    # point masses at distance 3, bandwidth 2: MMD^2 = 2 - 2 exp(-9 / 8)
    a = torch.zeros(4, 2)
    b = torch.tensor([[3.0, 0.0]]).expand(6, 2)
    assert mmd_rbf(a, b, bandwidth=2.0) == pytest.approx(2 - 2 * math.exp(-9 / 8), abs=1e-9)


def test_frechet_identical_is_zero():
    x = torch.randn(500, 6, generator=_gen(5))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_frechet_shifted_identity_gaussians():
    g = _gen(6)
    shift = torch.tensor([1.0, -2.0, 0.5])
    a = torch.randn(20000, 3, generator=g)
    b = torch.randn(20000, 3, generator=g) + shift
    assert frechet_distance(a, b) == pytest.approx(float(shift.pow(2).sum()), abs=0.05)


def test_frechet_scaled_covariances():
    # N(0, I) vs N(0, 4 I) in d = 2: Tr(I + 4I - 2 * 2I) = d = 2
    g = _gen(7)
    a = torch.randn(20000, 2, generator=g)
    b = 2 * torch.randn(20000, 2, generator=g)
    assert frechet_distance(a, b) == pytest.approx(2.0, abs=0.1)


def test_frechet_population_formula_exact():
    # with features whose sample moments are exactly known: two symmetric designs
    a = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    b = 3 * a + torch.tensor([2.0, 0.0])
    # covariances c I and 9 c I (c = 2/3 unbiased): Tr(c I + 9 c I - 2 * 3 c I) = 4 c * 2 dims
    c = 2.0 / 3.0
    assert frechet_distance(a, b) == pytest.approx(4.0 + 8 * c, abs=1e-9)


def test_errors():
    x = torch.randn(10, 2)
    with pytest.raises(ValueError, match="y"):
        energy_distance(x, torch.randn(10, 3))
    with pytest.raises(ValueError, match="x"):
        energy_distance(torch.randn(1, 2), x)
    with pytest.raises(ValueError, match="x"):
        mmd_rbf(torch.full((3, 2), float("nan")), x)
    with pytest.raises(ValueError, match="bandwidth"):
        mmd_rbf(x, x, bandwidth=-1.0)
    with pytest.raises(ValueError, match="max_samples"):
        energy_distance(x, x, max_samples=1)
    with pytest.raises(ValueError, match="feats_b"):
        frechet_distance(x, torch.randn(10, 4))
    with pytest.raises(ValueError, match="feats_a"):
        frechet_distance(torch.randint(0, 3, (10, 2)), x)

"""Exact checks of the Gaussian mixture and the conditional 2-D toys."""

import math

import pytest
import torch

from ctrl_teach.data import TOY_NAMES, GaussianMixture, load_toy


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _two_component():
    return GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [2.0, -1.0]], [0.5, 1.0])


def _analytic_moments(gmm):
    """Mean sum_k w_k mu_k and covariance sum_k w_k (s_k^2 I + mu_k mu_k^T) - mu mu^T."""
    w, mu, s = gmm.weights.double(), gmm.means.double(), gmm.stds.double()
    mean = (w[:, None] * mu).sum(0)
    second = sum(
        w[k] * (s[k] ** 2 * torch.eye(gmm.dim) + torch.outer(mu[k], mu[k])) for k in range(len(w))
    )
    return mean, second - torch.outer(mean, mean)


def test_sample_moments_match_analytic():
    gmm = _two_component()
    x = gmm.sample(200_000, generator=_gen()).double()
    mean, cov = _analytic_moments(gmm)
    assert x.shape == (200_000, 2) and x.dtype == torch.float64
    torch.testing.assert_close(x.mean(0), mean, atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.03, rtol=0)


def test_log_prob_single_component_is_gaussian():
    gmm = GaussianMixture([1.0], [[0.5, -1.0]], [0.7])
    x = torch.randn(50, 2, generator=_gen())
    expected = torch.distributions.MultivariateNormal(
        torch.tensor([0.5, -1.0]), 0.49 * torch.eye(2)
    ).log_prob(x)
    torch.testing.assert_close(gmm.log_prob(x), expected, atol=1e-5, rtol=1e-5)


def test_log_prob_integrates_to_one():
    gmm = _two_component()
    grid = torch.linspace(-6, 7, 400)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    cell = (grid[1] - grid[0]) ** 2
    total = (gmm.log_prob(pts).double().exp() * cell).sum()
    assert abs(float(total) - 1.0) < 1e-3


def test_responsibilities_sum_to_one():
    gmm = _two_component()
    gamma = gmm.responsibilities(gmm.sample(100, generator=_gen()))
    assert gamma.shape == (100, 2)
    torch.testing.assert_close(gamma.sum(1), torch.ones(100))


def test_score_matches_autograd():
    gmm = load_toy("gmm").mixture(0)
    x = gmm.sample(64, generator=_gen()).requires_grad_(True)
    (grad,) = torch.autograd.grad(gmm.log_prob(x).sum(), x)
    torch.testing.assert_close(gmm.score(x.detach()), grad, atol=1e-4, rtol=1e-4)


def test_noised_moments_match_empirical():
    gmm = _two_component()
    a, s = 0.6, 0.8
    g = _gen(1)
    x = gmm.sample(200_000, generator=g)
    y = (a * x + s * torch.randn(x.shape, generator=g)).double()
    noisy = gmm.noised(a, s)
    torch.testing.assert_close(noisy.stds, torch.sqrt(a**2 * gmm.stds**2 + s**2))
    mean, cov = _analytic_moments(noisy)
    torch.testing.assert_close(y.mean(0), mean, atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(y.T), cov, atol=0.03, rtol=0)


def test_gmm_bad_inputs():
    with pytest.raises(ValueError, match="stds"):
        GaussianMixture([1.0], [[0.0, 0.0]], [0.0])
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture([1.0, -1.0], [[0.0, 0.0], [1.0, 1.0]], [1.0, 1.0])
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture([1.0], [[0.0, 0.0], [1.0, 1.0]], [1.0, 1.0])
    gmm = _two_component()
    with pytest.raises(ValueError, match="x"):
        gmm.log_prob(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="n"):
        gmm.sample(-1)
    with pytest.raises(ValueError, match="s"):
        gmm.noised(1.0, -0.1)
    with pytest.raises(ValueError, match="a"):
        gmm.noised(math.inf, 0.1)


def test_gmm_toy_layout():
    toy = load_toy("gmm")
    assert toy.condition_names == ["ring", "grid"] and toy.num_conditions == 2
    ring, grid = toy.mixture(0), toy.mixture(1)
    assert ring.num_components == 8 and grid.num_components == 9
    torch.testing.assert_close(ring.means.norm(dim=1), torch.full((8,), 2.0))
    assert set(grid.means.reshape(-1).tolist()) == {-1.5, 0.0, 1.5}
    torch.testing.assert_close(ring.stds, torch.full((8,), 0.2))
    assert load_toy("shapes").mixture(1) is None


@pytest.mark.parametrize("name", TOY_NAMES)
def test_sampling_per_condition_and_seeding(name):
    toy = load_toy(name)
    for c in range(toy.num_conditions):
        a = toy.sample(500, c, generator=_gen(3))
        b = toy.sample(500, c, generator=_gen(3))
        assert a.shape == (500, 2) and a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert not torch.equal(a, toy.sample(500, c, generator=_gen(4)))
        assert a.abs().max() < 4
    # the two conditions are different laws: the ring / outer circle has radius about 2
    r0 = toy.sample(2000, 0, generator=_gen()).norm(dim=1)
    r1 = toy.sample(2000, 1, generator=_gen()).norm(dim=1)
    assert abs(float(r0.mean() - r1.mean())) > 0.1


def test_ring_radius():
    r = load_toy("gmm").sample(5000, 0, generator=_gen()).norm(dim=1)
    assert abs(float(r.mean()) - 2.0) < 0.05


def test_circles_radii():
    r = load_toy("shapes").sample(4000, 1, generator=_gen()).norm(dim=1)
    assert abs(float(r[r > 1.5].mean()) - 2.0) < 0.05
    assert abs(float(r[r <= 1.5].mean()) - 1.0) < 0.05


@pytest.mark.parametrize("name", TOY_NAMES)
def test_mixed_conditions_vectorised(name):
    toy = load_toy(name)
    c = torch.tensor([0, 1] * 1000)
    x = toy.sample(2000, c, generator=_gen())
    assert x.shape == (2000, 2)
    same = toy.sample(2000, c, generator=_gen())
    torch.testing.assert_close(x, same, rtol=0, atol=0)
    # rows follow their own condition: compare radii with single-condition samples
    for k in range(2):
        ref = toy.sample(1000, k, generator=_gen(7)).norm(dim=1).mean()
        assert abs(float(x[c == k].norm(dim=1).mean() - ref)) < 0.1


def test_gmm_mixed_condition_log_prob_is_finite():
    toy = load_toy("gmm")
    c = torch.tensor([0] * 100 + [1] * 100)
    x = toy.sample(200, c, generator=_gen())
    assert toy.mixture(0).log_prob(x[:100]).mean() > toy.mixture(1).log_prob(x[:100]).mean()
    assert toy.mixture(1).log_prob(x[100:]).mean() > toy.mixture(0).log_prob(x[100:]).mean()


def test_sample_joint():
    toy = load_toy("gmm")
    x, c = toy.sample_joint(1000, generator=_gen())
    assert x.shape == (1000, 2) and c.shape == (1000,) and c.dtype == torch.long
    assert 400 < int((c == 0).sum()) < 600
    x2, c2 = toy.sample_joint(1000, generator=_gen())
    assert torch.equal(x, x2) and torch.equal(c, c2)


def test_toy_bad_inputs():
    with pytest.raises(ValueError, match="name"):
        load_toy("spiral")
    toy = load_toy("gmm")
    with pytest.raises(ValueError, match="c"):
        toy.sample(10, 2)
    with pytest.raises(ValueError, match="c"):
        toy.sample(10, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="c"):
        toy.sample(10, torch.zeros(10))
    with pytest.raises(ValueError, match="n"):
        toy.sample(-3, 0)
    with pytest.raises(ValueError, match="c"):
        toy.mixture(5)
    assert toy.sample(0, 1).shape == (0, 2)

"""Twisted SMC at inference time, checked on the 1-D Gaussian problem.

The target is the tilted law of the pre-trained sampler's output, N(m_s, v_s) times
N(1; x, 0.5^2), and Z = E_pre[p(y | x_0)] is closed form (``ctrl_teach.beyond._gaussian_problem``).
The error of the SMC samples' mean and variance must shrink as the number of particles grows,
and Z_hat must be unbiased for Z.
"""

import math

import pytest
import torch

from ctrl_teach.beyond._gaussian_problem import gaussian_problem
from ctrl_teach.beyond.smc import effective_sample_size, systematic_resample, twisted_smc


@pytest.fixture(scope="module")
def problem():
    return gaussian_problem()


def test_systematic_resampling_keeps_the_expected_counts():
    w = torch.tensor([0.5, 0.25, 0.125, 0.125, 0.0])
    for seed in range(5):
        idx = systematic_resample(w.log(), torch.Generator().manual_seed(seed))
        counts = torch.bincount(idx, minlength=5).double()
        expected = 5 * w.double()
        assert ((counts - expected).abs() < 1).all(), (counts, expected)
    assert effective_sample_size(torch.zeros(7)) == pytest.approx(7.0)
    assert effective_sample_size(torch.tensor([0.0, -1e9])) == pytest.approx(1.0)


def _errors(problem, n, seeds, **kwargs):
    m, v = problem.target_moments
    em, ev, lz = [], [], []
    for s in range(seeds):
        r = twisted_smc(problem.network, problem.sampler, problem.reward, n, y=0,
                        generator=torch.Generator().manual_seed(s), **kwargs)
        em.append(float(r.x.mean()) - m)
        ev.append(float(r.x.var()) - v)
        lz.append(r.log_z)
    rms = [math.sqrt(sum(e * e for e in es) / seeds) for es in (em, ev)]
    return rms[0], rms[1], sum(lz) / seeds, r


def test_smc_error_shrinks_with_the_number_of_particles(problem):
    rows = {n: _errors(problem, n, 24) for n in (16, 128, 1024)}
    for n, (em, ev, lz, r) in rows.items():
        print(f"SMC N={n}: rms error mean {em:.4f} var {ev:.4f}; mean log Z_hat {lz:.4f} vs "
              f"log Z {problem.log_z:.4f}; min ESS {min(r.ess):.1f}, resampled at "
              f"{r.resampled}; {r.network_evaluations} network evaluations per sample")
    e16, e128, e1024 = (rows[n] for n in (16, 128, 1024))
    assert e16[0] > e128[0] > e1024[0] and e16[1] > e128[1] > e1024[1]
    assert e1024[0] < 0.05 and e1024[1] < 0.03
    assert abs(e1024[2] - problem.log_z) < 0.05             # log Z_hat -> log Z
    assert abs(e16[2] - problem.log_z) > abs(e1024[2] - problem.log_z)   # Jensen's bias
    r = e1024[3]
    assert r.network_evaluations == problem.sampler.num_steps
    assert len(r.ess) == problem.sampler.num_steps + 1 and r.x.shape == (1024, 1)


@pytest.mark.parametrize("guidance", [0.0, 1.0])
def test_z_hat_is_unbiased(problem, guidance):
    z = math.exp(problem.log_z)
    zs = torch.tensor([math.exp(twisted_smc(
        problem.network, problem.sampler, problem.reward, 64, y=0, guidance=guidance,
        generator=torch.Generator().manual_seed(1000 + s)).log_z) for s in range(120)])
    ratio, se = float(zs.mean()) / z, float(zs.std()) / z / math.sqrt(zs.numel())
    print(f"guidance={guidance}: E[Z_hat] / Z = {ratio:.4f} +- {se:.4f} (64 particles)")
    assert abs(ratio - 1) < 3 * se + 0.01


def test_guided_smc_reaches_the_target(problem):
    em, ev, lz, r = _errors(problem, 1024, 8, guidance=1.0)
    print(f"guided SMC N=1024: rms error mean {em:.4f} var {ev:.4f}; log Z_hat {lz:.4f}")
    assert em < 0.05 and ev < 0.03 and abs(lz - problem.log_z) < 0.05


def test_smc_checks_its_arguments(problem):
    args = (problem.network, problem.sampler, problem.reward)
    with pytest.raises(ValueError, match="num_particles"):
        twisted_smc(*args, 0, y=0)
    with pytest.raises(ValueError, match="ess_threshold"):
        twisted_smc(*args, 8, y=0, ess_threshold=1.5)
    with pytest.raises(ValueError, match="guidance"):
        twisted_smc(*args, 8, y=0, guidance=-1.0)
    with pytest.raises(ValueError, match="c must be None"):
        twisted_smc(*args, 8, c=0, y=0)

"""The forward process against its closed form q(x_t | x_0) (Chapter 1)."""

import math

import pytest
import torch

from ctrl_teach.diffusion import NoiseSchedule


@pytest.mark.parametrize("schedule", [NoiseSchedule.linear(50), NoiseSchedule.cosine(100)])
def test_q_sample_moments_match_closed_form(schedule):
    gen = torch.Generator().manual_seed(0)
    x0 = torch.tensor([[1.5, -0.5]]).repeat(200_000, 1)
    for t in (1, schedule.T // 2, schedule.T):
        x_t, _ = schedule.q_sample(x0, t, generator=gen)
        ab = float(schedule.alpha_bar[t])
        assert torch.allclose(x_t.mean(0), math.sqrt(ab) * x0[0], atol=0.01)
        assert torch.allclose(x_t.var(0), torch.full((2,), 1 - ab), rtol=0.02, atol=2e-4)


def test_alpha_bar_is_cumulative_product():
    s = NoiseSchedule.linear(40)
    assert s.alpha_bar[0] == 1
    assert torch.allclose(s.alpha_bar[1:], torch.cumprod(1 - s.betas, 0))
    assert s.alpha_bar.diff().lt(0).all()


def test_linear_endpoints_are_rescaled_by_1000_over_T():
    s = NoiseSchedule.linear(100, beta_start=1e-4, beta_end=0.02)
    assert float(s.betas[0]) == pytest.approx(1e-3)
    assert float(s.betas[-1]) == pytest.approx(0.2)


def test_cosine_matches_nichol_dhariwal_formula():
    T, s = 100, 0.008
    sched = NoiseSchedule.cosine(T, s=s)
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    for t in (1, 10, 50, 90):
        assert float(sched.alpha_bar[t]) == pytest.approx(f(t) / f(0), rel=1e-9)


def test_q_moments_per_sample_steps_and_config_round_trip():
    s = NoiseSchedule.cosine(30)
    x0 = torch.ones(3, 1, 2, 2)
    mean, std = s.q_moments(x0, torch.tensor([1, 10, 30]))
    assert mean.shape == x0.shape and std.shape == (3, 1, 1, 1)
    assert float(std[2]) == pytest.approx(math.sqrt(1 - float(s.alpha_bar[30])))
    s2 = NoiseSchedule.from_config(s.to_config())
    assert torch.equal(s2.alpha_bar, s.alpha_bar)


@pytest.mark.parametrize(
    "call, arg",
    [
        (lambda: NoiseSchedule.linear(0), "T"),
        (lambda: NoiseSchedule.linear(-3), "T"),
        (lambda: NoiseSchedule.linear(10, beta_end=0.5), "beta_end"),
        (lambda: NoiseSchedule(torch.tensor([0.1, 1.5])), "betas"),
        (lambda: NoiseSchedule(torch.tensor([0.1, float("nan")])), "betas"),
        (lambda: NoiseSchedule.cosine(10).q_moments(torch.ones(2, 2), 11), "t"),
        (lambda: NoiseSchedule.cosine(10).q_moments(torch.ones(2, 2), 1.5), "t"),
        (lambda: NoiseSchedule.cosine(10).q_sample(torch.ones(2, 2), 1, torch.ones(3)), "noise"),
        (lambda: NoiseSchedule.cosine(10).q_sample(torch.full((2,), float("nan")), 1), "x0"),
        (lambda: NoiseSchedule.from_config({"kind": "sigmoid", "T": 3}), "kind"),
    ],
)
def test_bad_input_names_the_argument(call, arg):
    with pytest.raises(ValueError, match=arg):
        call()

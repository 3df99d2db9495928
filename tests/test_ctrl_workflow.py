"""The bring-your-own-problem workflow learns on data the library has never seen."""

import importlib.util
from pathlib import Path

import pytest
import torch

from ctrl_teach.ctrl import condition_pretrained
from ctrl_teach.diffusion import MLPDenoiser

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "bring_your_own_data.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("bring_your_own_data", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_moves_samples_to_the_exact_target():
    report = _load_example().main(pretrain_iterations=1000, iterations=150)
    for key, r in report.items():
        assert r["gap"] > -3 * r["gap_se"], key                  # J <= alpha log Z
        assert r["ed"] < 0.25 * r["ed_nothing"], key             # far closer than doing nothing
        assert abs(r["confidence"] - r["confidence_exact"]) < 0.12, key


def test_bad_arguments_name_them():
    with pytest.raises(ValueError, match="sampler"):
        condition_pretrained(MLPDenoiser(2, 10, 0), torch.nn.Identity())
    with pytest.raises(ValueError, match="variant"):
        condition_pretrained(MLPDenoiser(2, 10, 0), torch.nn.Identity(), variant="ppo")
    with pytest.raises(ValueError, match="pretrained"):
        condition_pretrained("toy-gmm", torch.nn.Identity())


def test_result_carries_the_certificate_and_warns_when_far_from_the_optimum():
    from ctrl_teach.ctrl import CertificateWarning, ProbitClassifier
    from ctrl_teach.diffusion import DiffusionSampler
    from ctrl_teach.pretrained import load_pretrained

    pre = load_pretrained("toy-gmm")
    sampler = DiffusionSampler(pre.schedule, num_steps=5, eta=1.0, clip_x0=3.0)
    reward = ProbitClassifier([3.0, 0.0])                 # sharp: far from optimal at init
    with pytest.warns(CertificateWarning, match=r"certificate gap alpha log Z - J = \d"):
        model = condition_pretrained(pre, reward, sampler=sampler, iterations=2,
                                     batch_size=16, progress=False)
    cert = model.certificate
    assert {(p["c"], p["y"]) for p in cert.pairs} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert cert.gap == max(p["gap"] for p in cert.pairs) and cert.gap > 0.05
    assert not cert.converged and cert.iterations == 2


def test_certificate_driven_budget_stops_by_itself():
    from ctrl_teach.ctrl import ProbitClassifier
    from ctrl_teach.diffusion import DiffusionSampler
    from ctrl_teach.pretrained import load_pretrained

    pre = load_pretrained("toy-gmm")
    sampler = DiffusionSampler(pre.schedule, num_steps=5, eta=1.0, clip_x0=3.0)
    model = condition_pretrained(pre, ProbitClassifier([1.0, 0.0]), sampler=sampler,
                                 check_every=20, max_iterations=400, batch_size=64,
                                 progress=False)
    checks = model.certificate.history
    assert len(model.history.J) == checks[-1][0] <= 400
    assert checks[-1][1] < checks[0][1]                   # the gap fell while it trained


def test_paired_improvement_sees_through_the_noise_of_the_gap():
    """Two checks on the same noise: no training means no change at all; a few iterations
    give a drop whose paired standard error is far below the standard error of the gap
    itself (the ``log Z`` error cancels and the trajectories share their noise), which is
    what lets the stopping rule tell progress from Monte Carlo noise."""
    from ctrl_teach.ctrl import CertificateMonitor, HeadAugmentedModel, ProbitClassifier, finetune
    from ctrl_teach.diffusion import DiffusionSampler
    from ctrl_teach.pretrained import load_pretrained
    from ctrl_teach.profiles import seeded_init

    pre = load_pretrained("toy-gmm")
    sampler = DiffusionSampler(pre.schedule, num_steps=5, eta=1.0, clip_x0=3.0)
    with seeded_init(0):
        model = HeadAugmentedModel(pre.network, sampler, num_labels=2)
    reward = ProbitClassifier([1.0, 0.0])
    monitor = CertificateMonitor(model, reward, num_candidates=2000, num_rollouts=1000)
    before = monitor.measure(0)
    assert monitor.measure(0).drop_since(before) == (0.0, 0.0)
    finetune(model, reward, iterations=30, batch_size=64, seed=0, progress=False)
    now = monitor.measure(30)
    drop, se = now.drop_since(before)
    assert drop > 4 * se > 0
    assert se < 0.5 * now.gap_se

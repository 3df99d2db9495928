"""CTRL on the shipped 2-D toy reaches the exact soft-optimal target (Chapters 4-5).

Pre-trained model: ``load_pretrained("toy-gmm")`` with a 20-step DDPM-type sampler (eta=1)
that clips x0_hat to [-3, 3] (the unclipped shipped sampler produces rare |x| ~ 1000
outliers, which wreck E[log p] for a probit reward). Reward: the known probit classifier
p(y=1 | x) = Phi(x_1), K = 2, alpha = gamma = 1. The exact target p_pre(x | c) p(y | x) / Z is
sampled by rejection from the same pre-trained sampler, and alpha log Z by Monte Carlo.
The larger-batch test uses each toy's exact denoiser instead (no pre-training error, cheap
rollouts).
"""

import pytest
import torch

from ctrl_teach.ctrl import HeadAugmentedModel, ProbitClassifier, evaluate_against_target, finetune
from ctrl_teach.data import load_toy
from ctrl_teach.diffusion import DiffusionSampler, ExactMixtureDenoiser
from ctrl_teach.pretrained import load_pretrained
from ctrl_teach.profiles import seeded_init


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    pre = load_pretrained("toy-gmm")
    sampler = DiffusionSampler(pre.schedule, num_steps=20, eta=1.0, clip_x0=3.0)
    reward = ProbitClassifier([1.0, 0.0], 0.0, 1.0)
    aug = HeadAugmentedModel(pre.network, sampler, num_labels=2)
    hist = finetune(aug, reward, iterations=400, batch_size=128, lr=3e-3, seed=0)
    return pre.network, sampler, reward, aug, hist


@pytest.mark.parametrize("c", [0, 1])
@pytest.mark.parametrize("y", [0, 1])
def test_toy_matches_exact_target(trained, c, y):
    net, sampler, reward, aug, hist = trained
    g = torch.Generator().manual_seed(10 + 2 * c + y)
    r = evaluate_against_target(aug, reward, c=c, y=y, generator=g)
    gap, se, ed, ed_nothing = r["gap"], r["gap_se"], r["ed"], r["ed_nothing"]
    conf, conf_exact = r["confidence"], r["confidence_exact"]
    print(f"c={c} y={y}: gap {gap:.4f} +- {se:.4f}; ED {ed:.4f} (do nothing {ed_nothing:.4f})"
          f"; confidence {conf:.3f} vs exact {conf_exact:.3f}")
    assert gap > -3 * se                      # J <= alpha log Z up to noise
    if c == 1:   # grid: converged within the 400-iteration budget
        assert gap < 0.05 + 2 * se
        assert ed < 0.01
        assert abs(conf - conf_exact) < 0.03
    else:
        # ring (8 modes): with 20 steps the gap plateaus at ~0.06-0.10 nats and the mode
        # weights are under-tilted (confidence ~0.74 vs 0.79), also with 1200 iterations,
        # batch 512 or the LoRA variant. Neither policy class nor gradient closes the gap:
        # variance-aware, 800 pathwise iterations 0.104 / 0.086 (y = 0 / 1, SE 0.016);
        # 1600 hybrid iterations 0.090 / 0.059, although the hybrid gradient does fix most
        # of the under-tilt (y = 1 confidence 0.705 -> 0.754, ED 0.040 -> 0.006). It is not
        # the policy class: the measured floor at 20 steps (exact denoiser,
        # benchmarks/class_floor_benchmark.py --profile full) is 0.025-0.029 for mean-only
        # steps, 0.009-0.011 for variance-aware ones, and a policy that attains it exists
        # (test_20_steps_reach_the_optimum_with_a_larger_batch). Nor is it the
        # head's function class: a tabular head (bilinear multi-resolution grids per step and
        # label, 8-64 cells a side) stalls at the same 0.098 / 0.068. It is gradient noise: a
        # larger batch closes most of it (the same test). The head's random Fourier
        # features (the default since issue 11) take 0.01-0.03 nats off
        # (benchmarks/head_benchmark.py, exact denoiser, variance-aware, mean of seeds 0
        # and 1: ring 0.112 / 0.078 plain, 0.091 / 0.068 with Fourier features;
        # grid 0.023 / 0.033 and 0.022 / 0.023).
        # Where it sat with the plain head (policy_step_gaps, variance-aware, y = 0, after
        # these 400 iterations; 24 states, 48 rollouts): 0.088 in total, < 0.002 per step
        # in steps 0-3 and 16-18, 0.005-0.013 per step in steps 6-15 (sigma 0.2-0.5), where
        # the policy's KL to the optimal step is as large as the KL it pays to the pre-trained
        # one.
        # With 50 steps the gap closes (test_ring_reaches_the_optimum_with_finer_steps).
        assert gap < 0.15 + 2 * se
        assert ed < 0.1 * ed_nothing
        assert abs(conf - conf_exact) < 0.09


def test_toy_history(trained):
    *_, hist = trained
    assert hist.kl[0] == 0.0 and len(hist.J) == 400
    assert sum(hist.J[-20:]) / 20 > sum(hist.J[:5]) / 5 + 0.3
    assert all(len(k) == 20 and k[-1] == 0.0 for k in hist.kl_per_step)


@pytest.mark.slow
def test_ring_reaches_the_optimum_with_finer_steps():
    """The ring's 20-step plateau closes with finer steps: 50 steps reach gap <= 0.05 nats.

    At 20 steps neither the variance-aware step nor the hybrid gradient closes it (see
    test_toy_matches_exact_target), and it is not the floor of Gaussian steps either: the
    measured floors (``gaussian_class_floor``, benchmarks/class_floor_benchmark.py) are
    0.025-0.029 nats for mean-only and 0.009-0.011 for diagonal steps. So the 20-step gap
    is mostly optimisation (at 20 steps a larger batch closes it too: the next test); why
    finer steps make it easier is not measured."""
    torch.manual_seed(0)
    pre = load_pretrained("toy-gmm")
    sampler = DiffusionSampler(pre.schedule, num_steps=50, eta=1.0, clip_x0=3.0)
    reward = ProbitClassifier([1.0, 0.0], 0.0, 1.0)
    aug = HeadAugmentedModel(pre.network, sampler, num_labels=2, x0_input=True)
    finetune(aug, reward, iterations=800, batch_size=256, lr=3e-3, seed=0)
    for y in (0, 1):
        g = torch.Generator().manual_seed(10 + y)
        r = evaluate_against_target(aug, reward, c=0, y=y, generator=g)
        print(f"ring, 50 steps, y={y}: gap {r['gap']:.4f} +- {r['gap_se']:.4f}, ED {r['ed']:.4f}"
              f" (do nothing {r['ed_nothing']:.4f})")
        assert -3 * r["gap_se"] < r["gap"] < 0.05 + 2 * r["gap_se"]
        assert r["ed"] < 0.05 * r["ed_nothing"]


@pytest.mark.slow
@pytest.mark.parametrize("toy, c, bound", [("ring", 0, 0.03), ("grid", 1, 0.02)])
def test_20_steps_reach_the_optimum_with_a_larger_batch(toy, c, bound):
    """At 20 steps the ring's gap is optimisation noise, not the policy class: with a larger
    batch the variance-aware class reaches 0.03 nats on the ring and 0.02 on the grid (+ 2 SE).

    Measured (exact denoiser, variance-aware head, lr 3e-3, seed 0; ring y = 0 / 1): the toy
    test's budget (batch 128 over four (c, y) pairs, 400 iterations) 0.097 / 0.068 (SE 0.015);
    both toys, batch 256, 1200 iterations 0.073 / 0.033; batch 2048, 1200 iterations 0.043 /
    0.019. The class can do better: the greedy Gaussian policy that fits the soft-optimal step
    at every state of its own chains (``greedy_policy_gap``; ``class_floor_benchmark.py
    --greedy``, printed in Chapter 4) has a gap of about 0.01. Started from a distillation of
    that policy (gap 0.047 / 0.020), CTRL at batch 128 drifts back up (0.062 / 0.023 at lr
    1e-3, without clipping), stays put at lr 1e-4 and at batch 1024: the noise of the pathwise
    gradient, not a bias, sets where Adam settles. A tabular head (bilinear grids per step and
    label) stalls at the toy test's 0.098 / 0.068, so it is not the head either. Here each toy
    alone (an unconditional exact denoiser), batch 1024, 1200 iterations; scored with 16000
    samples (SE about 0.008). Ring, 2 threads: seeds 0 / 1 0.020 / 0.035 and 0.018 / 0.039;
    2400 iterations 0.014 / 0.032; batch 4096, 600 iterations 0.019 / 0.035. Grid 0.004 /
    0.019."""
    pre = load_pretrained("toy-gmm")
    network = ExactMixtureDenoiser(load_toy("gmm").mixture(c), pre.schedule)
    sampler = DiffusionSampler(pre.schedule, num_steps=20, eta=1.0, clip_x0=3.0)
    reward = ProbitClassifier([1.0, 0.0], 0.0, 1.0)
    with seeded_init(0):
        aug = HeadAugmentedModel(network, sampler, num_labels=2, variance=True)
    finetune(aug, reward, iterations=1200, batch_size=1024, lr=3e-3, seed=0)
    for y in (0, 1):
        g = torch.Generator().manual_seed(10 + 2 * c + y)
        r = evaluate_against_target(aug, reward, y=y, generator=g, num_samples=16000)
        print(f"{toy} alone, 20 steps, batch 1024, y={y}: gap {r['gap']:.4f} +- "
              f"{r['gap_se']:.4f}, ED {r['ed']:.4f} (do nothing {r['ed_nothing']:.4f})")
        assert -3 * r["gap_se"] < r["gap"] < bound + 2 * r["gap_se"]
        assert r["ed"] < 0.05 * r["ed_nothing"]

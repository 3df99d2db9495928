"""Reward classifiers, temperature scaling, calibration metrics, multi-task rewards."""

import math

import pytest
import torch

from ctrl_teach.ctrl import (
    CNNClassifier,
    GaussianLikelihood,
    MLPClassifier,
    MultiTaskReward,
    ProbitClassifier,
    TemperatureScaled,
    expected_calibration_error,
    gaussian_posterior,
    log_partition,
    probit_log_partition,
    rejection_sample,
    reliability_curve,
    reward_log_prob,
    train_classifier,
)
from ctrl_teach.data import load_toy


def _labelled(n=3000, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g) * 1.5
    p1 = torch.special.ndtr(2 * x[:, 0])
    y = (torch.rand(n, generator=g) < p1).long()
    return x, y


def test_log_probs_normalised():
    x = torch.randn(16, 2)
    for m in (MLPClassifier(num_labels=3, num_conditions=2), ProbitClassifier([1.0, -1.0])):
        lp = m(x, torch.zeros(16, dtype=torch.long))
        assert lp.shape == (16, m.num_labels)
        assert torch.allclose(lp.exp().sum(1), torch.ones(16), atol=1e-5)
    lp = CNNClassifier(num_labels=3)(torch.randn(5, 1, 8, 8))
    assert lp.shape == (5, 3) and torch.allclose(lp.exp().sum(1), torch.ones(5), atol=1e-5)


def test_train_and_temperature_scale():
    torch.manual_seed(0)
    x, y = _labelled()
    fit = train_classifier(MLPClassifier(width=32), x, y, iterations=300, lr=3e-3, seed=0)
    assert fit.val_accuracy > 0.75 and fit.val_nll < 0.5
    # make it over-confident, then temperature scaling must undo it
    hot = TemperatureScaled(fit.model, 0.2)
    with torch.no_grad():
        nll_hot = float(torch.nn.functional.nll_loss(hot(fit.x_val), fit.y_val))
    scaled = TemperatureScaled.fit(hot, fit.x_val, fit.y_val)
    with torch.no_grad():
        probs = scaled(fit.x_val).exp()
        nll = float(torch.nn.functional.nll_loss(probs.log(), fit.y_val))
    assert nll < nll_hot and abs(scaled.temperature - 5.0) < 1.5
    ece_hot = expected_calibration_error(hot(fit.x_val).exp(), fit.y_val)
    assert expected_calibration_error(probs, fit.y_val) < ece_hot
    acc, conf = reliability_curve(probs, fit.y_val, n_bins=5)
    assert len(acc) == len(conf) > 0


def test_ece_perfect_and_bad_inputs():
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(probs, torch.tensor([0, 1])) == 0.0
    with pytest.raises(ValueError, match="probs"):
        expected_calibration_error(torch.ones(3), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="y"):
        train_classifier(MLPClassifier(), torch.randn(10, 2), torch.full((10,), 5))
    with pytest.raises(ValueError, match="holdout"):
        train_classifier(MLPClassifier(), torch.randn(10, 2), torch.zeros(10, dtype=torch.long),
                         holdout=2.0)
    with pytest.raises(ValueError, match="y"):
        reward_log_prob(ProbitClassifier([1.0, 0.0]), torch.randn(4, 2),
                        y=torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="tau"):
        GaussianLikelihood([0.0], tau=-1.0)


def test_multitask_reward_sums_tasks():
    a, b = ProbitClassifier([1.0, 0.0]), ProbitClassifier([0.0, 1.0], 0.5)
    mt = MultiTaskReward([a, b], weights=[1.0, 2.0])
    x = torch.randn(6, 2)
    y = torch.tensor([[0, 1], [1, 0], [1, 1], [0, 0], [1, 1], [0, 1]])
    want = a(x).gather(1, y[:, :1]).squeeze(1) + 2 * b(x).gather(1, y[:, 1:]).squeeze(1)
    assert torch.allclose(reward_log_prob(mt, x, c=None, y=y), want)
    assert mt.num_labels == (2, 2)
    with pytest.raises(ValueError, match="y"):
        reward_log_prob(mt, x, c=None, y=y[:, 0])


def test_probit_partition_and_rejection():
    toy = load_toy("gmm")
    mix = toy.mixture(1)
    w, b, s = [1.0, 0.5], -0.3, 0.7
    exact = probit_log_partition(mix, w, b, s, y=1)
    x = mix.sample(40000, generator=torch.Generator().manual_seed(0))
    reward = ProbitClassifier(w, b, s)
    mc, se = log_partition(x, reward, y=1)
    assert abs(mc - exact) < 4 * se + 1e-3
    acc = rejection_sample(x, reward, y=1, generator=torch.Generator().manual_seed(1))
    assert abs(acc.shape[0] / x.shape[0] - math.exp(exact)) < 0.01


def test_gaussian_likelihood_rejection_matches_posterior():
    x = torch.randn(200000, 1, generator=torch.Generator().manual_seed(0))
    reward = GaussianLikelihood([1.0], tau=0.7)
    # scale so p <= 1: rejection with the unnormalised likelihood times tau sqrt(2 pi)
    acc = x[torch.rand(x.shape[0], generator=torch.Generator().manual_seed(1)).log()
            < reward(x)[:, 0] + math.log(0.7 * math.sqrt(2 * math.pi))]
    m, v = gaussian_posterior(0.0, 1.0, 1.0, 0.7)
    assert abs(float(acc.mean()) - m) < 0.02 and abs(float(acc.var()) - v) < 0.02


def test_multitask_flat_labels():
    a, b = ProbitClassifier([1.0, 0.0]), MLPClassifier(num_labels=3)
    mt, flat = MultiTaskReward([a, b]), MultiTaskReward([a, b], flat=True)
    assert flat.num_labels == 6
    y = torch.tensor([[0, 2], [1, 0], [1, 2]])
    assert torch.equal(flat.decode(flat.encode(y)), y)
    x = torch.randn(3, 2)
    with torch.no_grad():
        assert torch.allclose(reward_log_prob(flat, x, c=None, y=flat.encode(y)),
                              reward_log_prob(mt, x, c=None, y=y))

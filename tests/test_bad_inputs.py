"""Bad input raises ValueError naming the argument and what was expected."""

import pytest
import torch

from ctrl_teach.ctrl import (
    MLPClassifier,
    ProbitClassifier,
    condition_pretrained,
    fit_classifier,
    pretrain_on_points,
)
from ctrl_teach.diffusion import DiffusionSampler, MLPDenoiser, NoiseSchedule


def test_pretrain_on_no_points():
    with pytest.raises(ValueError, match="x must hold at least one point"):
        pretrain_on_points(torch.zeros(0, 2), progress=False)


def test_negative_conditions():
    x = torch.randn(8, 2)
    with pytest.raises(ValueError, match="c must be non-negative"):
        pretrain_on_points(x, c=torch.full((8,), -1), progress=False)
    sampler = DiffusionSampler(NoiseSchedule.cosine(10))
    with pytest.raises(ValueError, match="c must be non-negative"):
        sampler.sample(MLPDenoiser(2, 10, 2), 4, c=-1)
    with pytest.raises(ValueError, match="c must be None: the pre-trained model is unconditional"):
        sampler.sample(MLPDenoiser(2, 10, 0), 4, c=0)


def test_negative_and_single_class_labels():
    x = torch.randn(20, 2)
    with pytest.raises(ValueError, match="y must be non-negative"):
        fit_classifier(x, torch.full((20,), -1))
    with pytest.raises(ValueError, match="y must contain at least 2 distinct labels"):
        fit_classifier(x, torch.ones(20, dtype=torch.long))
    with pytest.raises(ValueError, match="y must have 20 entries"):
        fit_classifier(x, torch.zeros(5, dtype=torch.long))


def test_reward_of_the_wrong_input_dimension():
    schedule = NoiseSchedule.cosine(10)
    net = MLPDenoiser(2, 10, 0)
    sampler = DiffusionSampler(schedule, num_steps=3)
    with pytest.raises(ValueError, match=r"reward_model reads inputs of shape \(3,\)"):
        condition_pretrained(net, ProbitClassifier([1.0, 0.0, 0.0]), sampler=sampler,
                             iterations=1, progress=False)

    class NoShape(torch.nn.Module):           # no data_shape attribute: probed on zeros
        num_labels = 2

        def __init__(self):
            super().__init__()
            self.inner = MLPClassifier(3, 2)

        def forward(self, x, c=None):
            return self.inner(x)

    with pytest.raises(ValueError, match="reward_model cannot read inputs"):
        condition_pretrained(net, NoShape(), sampler=sampler, iterations=1, progress=False)


def test_reward_fit_instead_of_its_reward():
    x = torch.randn(40, 2)
    fit = fit_classifier(x, (x[:, 0] > 0).long(), iterations=2)
    net = MLPDenoiser(2, 10, 0)
    with pytest.raises(ValueError, match=r"fit_classifier\(...\).reward"):
        condition_pretrained(net, fit, sampler=DiffusionSampler(NoiseSchedule.cosine(10)),
                             progress=False)


def test_sampling_requires_a_label():
    from ctrl_teach.ctrl import HeadAugmentedModel, sample

    sampler = DiffusionSampler(NoiseSchedule.cosine(10), num_steps=3)
    aug = HeadAugmentedModel(MLPDenoiser(2, 10, 0), sampler, 2)
    with pytest.raises(TypeError, match="y"):
        sample(aug, 4)
    assert sample(aug, 4, y=1).shape == (4, 2)

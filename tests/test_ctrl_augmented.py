"""Augmented models equal the pre-trained sampler at initialisation; KL bookkeeping."""

import pytest
import torch

from ctrl_teach.ctrl import (
    HeadAugmentedModel,
    LoRAAugmentedModel,
    MLPClassifier,
    ProbitClassifier,
    finetune,
    rollout,
    sample,
)
from ctrl_teach.ctrl.augmented import AugmentedModel
from ctrl_teach.diffusion import DiffusionSampler, NoiseSchedule, UNetDenoiser, gaussian_kl
from ctrl_teach.pretrained import load_pretrained


@pytest.fixture(scope="module")
def toy():
    pre = load_pretrained("toy-gmm")
    return pre.network, DiffusionSampler(pre.schedule, num_steps=10, eta=1.0)


@pytest.mark.parametrize("cls", [HeadAugmentedModel, LoRAAugmentedModel])
def test_zero_init_identical_samples(toy, cls):
    net, sampler = toy
    torch.manual_seed(0)
    aug = cls(net, sampler, num_labels=3)
    c = torch.tensor([0, 1] * 20)
    y = torch.arange(40) % 3
    x_pre = sampler.sample(net, 40, c=c, generator=torch.Generator().manual_seed(5))
    x_aug = sample(aug, 40, c=c, y=y, generator=torch.Generator().manual_seed(5))
    assert torch.equal(x_pre, x_aug)
    out = rollout(aug, _classifier3(), c=c, y=y, generator=torch.Generator().manual_seed(1))
    assert out.kl.abs().max() == 0.0


def _classifier3():
    return MLPClassifier(num_labels=3).requires_grad_(False)


def test_lora_images_zero_init():
    torch.manual_seed(0)
    net = UNetDenoiser(image_size=8, num_timesteps=10, num_conditions=2, base_channels=8,
                       emb_dim=16).requires_grad_(False).eval()
    sampler = DiffusionSampler(NoiseSchedule.cosine(10), num_steps=5, clip_x0=1.0)
    for aug in (LoRAAugmentedModel(net, sampler, 2, rank=2, conv=True),
                HeadAugmentedModel(net, sampler, 2, width=8)):
        x_pre = sampler.sample(net, 4, c=1, generator=torch.Generator().manual_seed(3))
        x_aug = sample(aug, 4, c=1, y=1, generator=torch.Generator().manual_seed(3))
        assert torch.equal(x_pre, x_aug)


class _ConstantControl(AugmentedModel):
    """mean = mean_pre + sigma * a with a fixed a (for KL bookkeeping)."""

    def __init__(self, net, sampler, a):
        super().__init__(net, sampler, 1)
        self.a = torch.nn.Parameter(torch.as_tensor(a))

    def step(self, x_t, i, c, y):
        step = self.pretrained_step(x_t, i, c)
        if step.std == 0:
            return step, torch.zeros_like(x_t)
        a = self.a.expand_as(x_t)
        step.mean = step.mean + step.std * a
        return step, a


def test_constant_control_kl(toy):
    net, sampler = toy
    a = torch.tensor([0.3, -0.4])
    aug = _ConstantControl(net, sampler, a)
    out = rollout(aug, _Zero(), c=0, y=torch.zeros(8, dtype=torch.long),
                  generator=torch.Generator().manual_seed(0))
    expected = 0.5 * float(a.pow(2).sum())
    assert torch.allclose(out.kl[:, :-1], torch.full_like(out.kl[:, :-1], expected))
    assert torch.all(out.kl[:, -1] == 0)           # the noise-free last step: no control
    x = torch.zeros(8, 2)
    step = sampler.step(net, x, 3, torch.zeros(8, dtype=torch.long))
    kl = gaussian_kl(step.mean + step.std * a, step.mean, step.std)
    assert torch.allclose(kl, torch.full((8,), expected))
    p = torch.distributions.Normal(step.mean + step.std * a, step.std)
    q = torch.distributions.Normal(step.mean, step.std)
    assert torch.allclose(torch.distributions.kl_divergence(p, q).sum(1), kl, atol=1e-5)


class _Zero(torch.nn.Module):
    num_labels = 1

    def forward(self, x, c=None):
        return torch.zeros(x.shape[0], 1)


@pytest.mark.parametrize("mode", ["checkpoint", "truncated"])
def test_gradient_modes(toy, mode):
    net, sampler = toy
    torch.manual_seed(0)
    aug = HeadAugmentedModel(net, sampler, 2)
    with torch.no_grad():
        aug.head.out.weight.normal_(0, 0.1)
    reward = ProbitClassifier([1.0, 0.0])
    y = torch.tensor([0, 1] * 8)
    grads = {}
    for m in ("full", mode):
        aug.zero_grad()
        out = rollout(aug, reward, c=0, y=y, generator=torch.Generator().manual_seed(2),
                      gradient=m, truncate_steps=3)
        out.J.mean().backward()
        grads[m] = aug.head.out.weight.grad.clone()
        if m == "full":
            full_J = out.J.detach()
        else:
            assert torch.allclose(out.J.detach(), full_J, atol=1e-5)
    if mode == "checkpoint":
        assert torch.allclose(grads["full"], grads[mode], atol=1e-5)
    else:
        assert not torch.allclose(grads["full"], grads[mode])


def test_finetune_improves_quickly(toy):
    net, sampler = toy
    torch.manual_seed(0)
    aug = LoRAAugmentedModel(net, sampler, 2)
    hist = finetune(aug, ProbitClassifier([1.0, 0.0]), iterations=30, batch_size=64,
                    lr=1e-2, seed=0)
    assert hist.kl[0] == 0.0 and hist.kl[-1] > 0
    assert sum(hist.J[-5:]) / 5 > sum(hist.J[:5]) / 5
    assert len(hist.grad_norm) == 30 and hist.wall_time > 0


def test_bad_inputs(toy):
    net, sampler = toy
    aug = HeadAugmentedModel(net, sampler, 2)
    reward = ProbitClassifier([1.0, 0.0])
    with pytest.raises(ValueError, match="num_labels"):
        HeadAugmentedModel(net, sampler, 0)
    with pytest.raises(ValueError, match="sampler"):
        HeadAugmentedModel(net, "ddpm", 2)
    with pytest.raises(ValueError, match="y"):
        sample(aug, 4, c=0, y=5)
    with pytest.raises(ValueError, match="n"):
        sample(aug, -1, c=0, y=0)
    with pytest.raises(ValueError, match="c must lie in 0..1"):
        sample(aug, 4, c=7, y=0)
    with pytest.raises(ValueError, match="c must be non-negative"):
        sample(aug, 4, c=-1, y=0)
    with pytest.raises(TypeError, match="y"):
        sample(aug, 4, c=0)                      # y is required: no silent default label
    with pytest.raises(ValueError, match="alpha"):
        finetune(aug, reward, alpha=0.0)
    with pytest.raises(ValueError, match="batch_size"):
        finetune(aug, reward, batch_size=-2)
    with pytest.raises(ValueError, match="gradient"):
        rollout(aug, reward, c=0, y=torch.zeros(4, dtype=torch.long), gradient="sideways")
    with pytest.raises(ValueError, match="y"):
        rollout(aug, reward, c=0, y=torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="num_labels"):
        finetune(HeadAugmentedModel(net, sampler, 3), reward)


def test_reward_gradient_flows_through_the_frozen_pretrained_steps(toy):
    """The pre-trained mean must stay differentiable (Chapter 5). d E[log p(y|x_0)] / d x_T from
    autograd through every frozen step equals a central finite difference."""
    net, sampler = toy
    torch.manual_seed(0)
    aug = HeadAugmentedModel(net, sampler, 2)
    reward = ProbitClassifier([1.0, 0.0])
    y = torch.ones(8, dtype=torch.long)
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(3))

    def mean_log_reward(x):
        out = rollout(aug, reward, c=0, y=y, generator=torch.Generator().manual_seed(4), x_T=x)
        return out.log_reward.sum()

    x = x_T.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mean_log_reward(x), x)
    assert grad.abs().sum() > 0
    direction = torch.randn(8, 2, generator=torch.Generator().manual_seed(5))
    h = 1e-2
    with torch.no_grad():
        fd = (mean_log_reward(x_T + h * direction) - mean_log_reward(x_T - h * direction)) / (2 * h)
    assert float((grad * direction).sum()) == pytest.approx(float(fd), rel=0.05, abs=1e-3)


def test_fourier_features_of_the_flat_head(toy):
    """The fixed frequencies B are the same in every head (drawn from their own generator), are
    not stored in checkpoints, and ``fourier_features=0`` is the raw-x head."""
    from ctrl_teach.ctrl.augmented import ControlHead
    net, sampler = toy
    a, b = ControlHead((2,), 1000, 2, 2), ControlHead((2,), 1000, 2, 2)
    assert torch.equal(a.frequencies, b.frequencies) and a.frequencies.shape == (64, 2)
    assert "frequencies" not in a.state_dict()
    plain = ControlHead((2,), 1000, 2, 2, fourier_features=0, emb_dim=32)
    assert plain.net[0].in_features == 2 + 2 * 32
    with pytest.raises(ValueError, match="fourier_features"):
        ControlHead((2,), 1000, 2, 2, fourier_features=-1)
    with pytest.raises(ValueError, match="depth"):
        ControlHead((2,), 1000, 2, 2, depth=0)
    with pytest.raises(ValueError, match="fourier_scale"):
        ControlHead((2,), 1000, 2, 2, fourier_scale=0.0)
    aug = HeadAugmentedModel(net, sampler, 2, fourier_features=0)
    assert aug.head.net[0].in_features == 2 + 2 * 32

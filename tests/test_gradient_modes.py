"""The gradient modes of ``rollout``: which parts of the chain the reward's gradient reaches."""

import torch

from ctrl_teach.ctrl import HeadAugmentedModel, MLPClassifier, finetune, rollout
from ctrl_teach.diffusion import DiffusionSampler
from ctrl_teach.pretrained import load_pretrained


def _setup():
    pre = load_pretrained("toy-gmm")
    sampler = DiffusionSampler(pre.schedule, num_steps=10, eta=1.0)
    aug = HeadAugmentedModel(pre.network, sampler, num_labels=2, variance=True)
    with torch.no_grad():                     # a non-zero control, so every step has a gradient
        for p in aug.trainable_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
    return aug, MLPClassifier(num_labels=2)


def test_random_truncation_keeps_the_state_path_and_changes_the_gradient():
    aug, reward = _setup()
    y = torch.arange(16) % 2
    grads = {}
    for mode in ("full", "checkpoint", "random"):
        x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(0)).requires_grad_()
        out = rollout(aug, reward, c=0, y=y, generator=torch.Generator().manual_seed(1),
                      gradient=mode, x_T=x_T)
        aug.zero_grad()
        (-out.J.mean()).backward()
        grads[mode] = torch.cat([p.grad.flatten() for p in aug.trainable_parameters()])
        assert torch.isfinite(grads[mode]).all()
        assert x_T.grad.abs().sum() > 0        # the latent is never detached
    assert torch.allclose(grads["full"], grads["checkpoint"], atol=1e-6)
    assert not torch.allclose(grads["full"], grads["random"], atol=1e-6)


def test_random_truncation_survives_iterations_with_every_step_detached():
    # U ~ Unif{0..K} detaches every step with probability 1/(K+1): such an iteration has no
    # gradient, and fine-tuning must skip it rather than fail.
    pre = load_pretrained("toy-gmm")
    sampler = DiffusionSampler(pre.schedule, num_steps=3, eta=1.0)
    aug = HeadAugmentedModel(pre.network, sampler, num_labels=2)
    hist = finetune(aug, MLPClassifier(num_labels=2), iterations=16, batch_size=8,
                    gradient="random", seed=0)
    assert len(hist.J) == 16 and min(hist.grad_norm) == 0.0

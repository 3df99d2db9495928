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


def test_hybrid_estimator_matches_the_pathwise_gradient():
    """``gradient="hybrid"`` is unbiased: on the 1-D Gaussian problem (exact denoiser, 10 steps)
    with a learned initial law, the mean of its gradient over 5 x 4096 trajectories agrees with
    the pathwise gradient of the same J (both estimate grad E[J])."""
    from ctrl_teach.beyond._gaussian_problem import gaussian_problem

    problem = gaussian_problem()
    aug = problem.augmented(0, learn_initial=True)
    with torch.no_grad():                       # a non-trivial policy and initial law
        g = torch.Generator().manual_seed(3)
        aug.head.out.weight.normal_(0, 0.1, generator=g)
        aug.head.out.bias.normal_(0, 0.3, generator=g)
        aug.init_mean.normal_(0, 0.3, generator=g)
    params = aug.trainable_parameters()

    def mean_grad(mode, seed, **kw):
        grads = []
        for r in range(5):
            aug.zero_grad()
            out = rollout(aug, problem.reward, y=torch.zeros(4096, dtype=torch.long),
                          generator=torch.Generator().manual_seed(seed + r), gradient=mode, **kw)
            out.objective.mean().backward()
            grads.append(torch.cat([p.grad.flatten() for p in params]))
        return torch.stack(grads).mean(0)

    path = mean_grad("full", 0)
    for score_steps in (3, 10):
        est = mean_grad("hybrid", 100, score_steps=score_steps)
        cos = float(est @ path / (est.norm() * path.norm()))
        rel = float((est - path).norm() / path.norm())
        print(f"score_steps={score_steps}: cosine {cos:.5f}, relative error {rel:.4f}")
        assert cos > 0.995 and rel < 0.1

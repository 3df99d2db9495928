"""CTRL on diffusers models (issue 13): scheduler agreement, LoRA augmentation, shipped model.

Everything runs offline (``HF_HUB_OFFLINE=1``): the only model loaded from disk is the one
shipped in ``ctrl_teach/pretrained/diffusers/tiny-digits``.
"""

import os
import subprocess
import sys

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")

from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel  # noqa: E402

from ctrl_teach.ctrl import finetune, rollout, sample  # noqa: E402
from ctrl_teach.diffusers_bridge import (  # noqa: E402
    TINY_MODEL_DIR,
    DiffusersLoRAModel,
    from_diffusers,
    load_tiny_unet,
    require,
    sample_adapted,
    sampler_from_scheduler,
)
from ctrl_teach.profiles import seeded_init  # noqa: E402

ATOL = 1e-5


def _random_unet(num_class_embeds=3, seed=0):
    with seeded_init(seed):
        return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                           block_out_channels=(8, 16),
                           down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                           up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4,
                           attention_head_dim=4, num_class_embeds=num_class_embeds).eval()


@pytest.fixture(scope="module")
def unet():
    return _random_unet()


@pytest.fixture(scope="module")
def shipped():
    return load_tiny_unet(TINY_MODEL_DIR)


def _max_step_error(unet, scheduler, num_steps, eta=None, clipped=False):
    """Max |library step - diffusers step| along diffusers' own chain, same model and noise."""
    pre = from_diffusers(unet, scheduler, num_steps, eta=eta, use_clipped_model_output=clipped)
    ref = type(scheduler).from_config(scheduler.config)
    ref.set_timesteps(num_steps)
    assert pre.sampler.num_steps == len(ref.timesteps)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 1, 8, 8, generator=gen)
    c = torch.tensor([0, 1, 2, 0]) if unet.config.num_class_embeds else None
    err = 0.0
    with torch.no_grad():
        for i, t in enumerate(ref.timesteps):
            eps = unet(x, t, class_labels=c).sample
            if isinstance(ref, DDPMScheduler):
                z = torch.randn(x.shape, generator=torch.Generator().manual_seed(i))
                out = ref.step(eps, t, x, generator=torch.Generator().manual_seed(i))
            else:
                z = torch.randn(x.shape, generator=gen)
                out = ref.step(eps, t, x, eta=eta, variance_noise=z,
                               use_clipped_model_output=clipped)
            tt = torch.full((4,), int(pre.sampler.timesteps[i]))
            if scheduler.config.prediction_type != "epsilon":   # converted to eps
                eps = pre.network(x, tt, c)
            elif i == 0:    # the eps-network is the UNet at diffusers' timestep t - 1
                assert torch.equal(pre.network(x, tt, c), eps)
            ours = pre.sampler.step_from_eps(x, eps, i).sample(noise=z)
            err = max(err, float((ours - out.prev_sample).abs().max()))
            x = out.prev_sample
    return err


@pytest.mark.parametrize("num_steps", [10, 25])
@pytest.mark.parametrize("spacing,offset", [("leading", 0), ("leading", 1), ("trailing", 0)])
@pytest.mark.parametrize("clip", [True, False])
def test_ddpm_step_equals_diffusers(shipped, num_steps, spacing, offset, clip):
    scheduler = DDPMScheduler(num_train_timesteps=1000, clip_sample=clip,
                              timestep_spacing=spacing, steps_offset=offset)
    assert _max_step_error(shipped[0], scheduler, num_steps) < ATOL


@pytest.mark.parametrize("num_steps", [10, 25])
@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("spacing,alpha_to_one", [("leading", True), ("leading", False),
                                                  ("trailing", True)])
@pytest.mark.parametrize("clip,clipped", [(True, False), (True, True), (False, False)])
def test_ddim_step_equals_diffusers(shipped, num_steps, eta, spacing, alpha_to_one, clip,
                                    clipped):
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=clip,
                              timestep_spacing=spacing, set_alpha_to_one=alpha_to_one)
    assert _max_step_error(shipped[0], scheduler, num_steps, eta=eta, clipped=clipped) < ATOL


def test_v_prediction_and_unconditional_unet_match():
    plain = _random_unet(num_class_embeds=None)
    for cls in (DDPMScheduler, DDIMScheduler):
        scheduler = cls(num_train_timesteps=1000, prediction_type="v_prediction",
                        beta_schedule="squaredcos_cap_v2", clip_sample=False)
        assert _max_step_error(plain, scheduler, 10, eta=1.0 if cls is DDIMScheduler else None) \
            < ATOL


def test_unrepresentable_configurations_raise(unet):
    with pytest.raises(ValueError, match="thresholding"):
        sampler_from_scheduler(DDPMScheduler(thresholding=True), 10)
    with pytest.raises(ValueError, match="variance_type"):
        sampler_from_scheduler(DDPMScheduler(variance_type="fixed_large"), 10)
    with pytest.raises(ValueError, match="rescale_betas_zero_snr"):
        sampler_from_scheduler(DDIMScheduler(rescale_betas_zero_snr=True), 10)
    with pytest.raises(ValueError, match="DDPMScheduler or DDIMScheduler"):
        sampler_from_scheduler(diffusers.EulerDiscreteScheduler(), 10)
    with pytest.raises(ValueError, match="eta"):
        sampler_from_scheduler(DDPMScheduler(), 10, eta=0.0)
    pre = from_diffusers(unet, DDPMScheduler(), 5)
    with pytest.raises(ValueError, match="c is required"):
        pre.sample(2, c=None)


def test_missing_extra_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)     # `import diffusers` now fails
    with pytest.raises(ImportError, match=r'pip install "ctrl-teach\[diffusers\]"'):
        require("diffusers")
    with pytest.raises(ImportError, match="diffusers"):
        from_diffusers(None, None, 10)
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ImportError, match=r"ctrl-teach\[diffusers\]"):
        DiffusersLoRAModel(None, None, 2)
    code = ("import sys; sys.modules['diffusers'] = None; sys.modules['peft'] = None; "
            "import ctrl_teach.diffusers_bridge, ctrl_teach.ctrl; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.stdout.strip() == "ok", out.stderr


class InkProbit(torch.nn.Module):
    """A known reward: ``p(y=1 | x) = Phi((mean pixel - m) / s)`` (more ink: larger mean)."""

    num_labels = 2
    data_shape = (1, 8, 8)

    def __init__(self, m=-0.45, s=0.1):
        super().__init__()
        self.m, self.s = m, s

    def forward(self, x, c=None):
        z = (x.flatten(1).mean(1) - self.m) / self.s
        return torch.stack([torch.special.log_ndtr(-z), torch.special.log_ndtr(z)], dim=1)


def test_shipped_model_loads_from_pretrained_and_samples_digits(shipped):
    files = {p.name: p.stat().st_size for p in TINY_MODEL_DIR.iterdir()}
    assert {"config.json", "diffusion_pytorch_model.safetensors",
            "scheduler_config.json"} <= set(files)
    assert sum(files.values()) < 2_000_000
    unet = UNet2DModel.from_pretrained(TINY_MODEL_DIR)      # the call a user makes
    assert unet.config.num_class_embeds == 10
    from ctrl_teach.pretrained import load_digit_oracle

    pre = from_diffusers(*shipped, 10)
    x = pre.sample(60, c=torch.arange(10).repeat(6), generator=torch.Generator().manual_seed(0))
    assert x.shape == (60, 1, 8, 8) and x.abs().max() <= 1 + 1e-6
    acc = float((load_digit_oracle().predict(x) == torch.arange(10).repeat(6)).float().mean())
    assert acc > 0.7, acc


def _augmented(shipped, num_steps=6, clip=True, spacing="leading", **kwargs):
    unet, scheduler = shipped
    scheduler = DDPMScheduler.from_config(scheduler.config, clip_sample=clip,
                                          timestep_spacing=spacing)
    pre = from_diffusers(unet, scheduler, num_steps)
    return pre, DiffusersLoRAModel(pre.network, pre.sampler, num_labels=2, rank=2, **kwargs)


def test_identical_to_pretrained_at_initialisation(shipped):
    pre, aug = _augmented(shipped)
    assert len(aug.trainable_parameters()) > 4
    for y in (0, 1):
        x_pre = pre.sample(8, c=3, generator=torch.Generator().manual_seed(5))
        x_aug = sample(aug, 8, c=3, y=y, generator=torch.Generator().manual_seed(5))
        assert torch.equal(x_pre, x_aug)
    out = rollout(aug, InkProbit(), c=3, y=torch.ones(8, dtype=torch.long),
                  generator=torch.Generator().manual_seed(5))
    assert float(out.kl.detach().abs().max()) == 0.0


def _perturb(aug, seed=0):
    """Stand in for fine-tuning: random LoRA B matrices and label table."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in aug.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))


def test_merged_equals_unmerged_and_costs_one_unet_call(shipped):
    _, aug = _augmented(shipped)
    _perturb(aug)
    merged = aug.merged()
    assert merged.is_merged and not aug.is_merged
    assert [n for n, p in merged.named_parameters() if p.requires_grad] == ["label.weight"]
    assert type(merged.adapted.unet) is UNet2DModel          # LoRA layers gone
    for y in (0, 1):
        kw = dict(c=torch.arange(8) % 10, y=y)
        x_ref = sample(aug, 8, **kw, generator=torch.Generator().manual_seed(2))
        x_fast = sample_adapted(aug, 8, **kw, generator=torch.Generator().manual_seed(2))
        x_merged = sample_adapted(merged, 8, **kw, generator=torch.Generator().manual_seed(2))
        assert torch.allclose(x_ref, x_fast, atol=1e-6)
        assert torch.allclose(x_ref, x_merged, atol=ATOL), float((x_ref - x_merged).abs().max())
    x0 = sample_adapted(merged, 4, c=1, y=0, generator=torch.Generator().manual_seed(3))
    x1 = sample_adapted(merged, 4, c=1, y=1, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(x0, x1)                        # y still acts after the merge


def test_gradient_modes_and_checkpointing_agree(shipped):
    _, aug = _augmented(shipped, num_steps=4, clip=False)   # gradient="random" needs no clip
    _perturb(aug)
    _, ckpt = _augmented(shipped, num_steps=4, clip=False, gradient_checkpointing=True)
    ckpt.load_state_dict(aug.state_dict())
    y = torch.tensor([0, 1, 0, 1])

    def grads(model, gradient):
        model.train()
        model.zero_grad()
        out = rollout(model, InkProbit(), c=2, y=y, gradient=gradient, truncate_steps=2,
                      generator=torch.Generator().manual_seed(9))
        (-out.J.mean()).backward()
        return torch.cat([p.grad.flatten() for p in model.trainable_parameters()])

    full = grads(aug, "full")
    assert torch.allclose(grads(aug, "checkpoint"), full, atol=1e-6)
    assert torch.allclose(grads(ckpt, "full"), full, atol=1e-6)
    for mode in ("truncated", "random"):
        g = grads(aug, mode)
        assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_short_ctrl_finetune_raises_J(shipped):
    # trailing grid without clipping: no near-deterministic noisy step (whose tiny sigma makes
    # any change of the shared LoRA weights expensive in KL), gradients through every pixel
    _, aug = _augmented(shipped, num_steps=5, clip=False, spacing="trailing")
    reward, y = InkProbit(s=0.1), torch.arange(64) % 2

    def J():
        with torch.no_grad():
            return float(rollout(aug, reward, c=torch.arange(64) % 10, y=y,
                                 generator=torch.Generator().manual_seed(4)).J.mean())

    before = J()
    finetune(aug, reward, iterations=15, batch_size=16, lr=3e-3, warmup=2, seed=0)
    after = J()
    assert after > before + 0.005, (before, after)    # same trajectories' noise: paired

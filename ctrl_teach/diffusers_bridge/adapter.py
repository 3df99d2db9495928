"""A diffusers ``UNet2DModel`` + scheduler as the library's eps-network and sampler.

Index conventions. diffusers counts training steps ``0..T-1`` and ``alphas_cumprod[k]`` is the
signal level *after* step ``k``; the library counts ``1..T`` with ``alpha_bar[0] = 1`` (clean
data). So library step ``t`` is diffusers timestep ``t - 1``, ``alpha_bar[t] =
alphas_cumprod[t - 1]``, and diffusers' "previous timestep -1" (``alpha_prod_t_prev = 1``) is
library step 0. DDIM's ``set_alpha_to_one=False`` ends instead at ``alphas_cumprod[0]``, i.e.
library step 1.

Both schedulers' steps are the library's DDIM step (Song et al. 2021, eq. 12 with the std of
eq. 16): DDPM's posterior mean and ``fixed_small`` variance (Ho et al. 2020, eq. 7) is its
``eta = 1`` case, on the same sub-sampled grid. What cannot be represented raises
``ValueError``: dynamic thresholding, zero-terminal-SNR betas, the ``fixed_large`` / learned
variances, and any scheduler other than ``DDPMScheduler`` / ``DDIMScheduler``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..diffusion import DiffusionSampler, NoiseSchedule
from ._require import require

__all__ = ["DiffusersEpsNetwork", "schedule_from_scheduler", "sampler_from_scheduler",
           "from_diffusers"]

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def _sample_shape(config) -> tuple[int, int]:
    size = config.sample_size
    return (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)


class DiffusersEpsNetwork(nn.Module):
    """The library's eps-network interface ``net(x, t, c=None, extra_emb=None)`` on a
    diffusers ``UNet2DModel``.

    ``t`` is the library's step ``1..T`` (diffusers' timestep ``t - 1``), ``c`` the class
    label of a class-conditional UNet (``num_class_embeds``), and ``extra_emb`` a ``(B,
    emb_dim)`` vector added to the UNet's time embedding (``unet.time_embedding``'s output,
    the place where the official CTRL code adds its label embedding). A ``v_prediction`` or
    ``sample`` UNet is converted to the noise prediction with the schedule's ``alpha_bar``.

    Args:
        unet: a ``diffusers.UNet2DModel`` (or a peft ``LoraModel`` wrapping one).
        alphas_cumprod: the scheduler's ``alphas_cumprod`` (needed unless
            ``prediction_type="epsilon"``).
        prediction_type: the scheduler's ``prediction_type``.

    Attributes:
        data_shape: ``(in_channels, H, W)``.
        num_conditions: ``num_class_embeds`` (0: unconditional). A class-conditional diffusers
            UNet has no null label, so ``c`` is required for it.
        emb_dim: size of the time embedding.

    Introduced in: Chapter 10 (CTRL on a real diffusion model).
    """

    def __init__(self, unet: nn.Module, *, alphas_cumprod: torch.Tensor | None = None,
                 prediction_type: str = "epsilon"):
        super().__init__()
        require("diffusers")
        config = unet.config
        if config.in_channels != config.out_channels:
            raise ValueError(f"unet must predict one value per input channel (out_channels == "
                             f"in_channels), got {config.out_channels} and {config.in_channels}:"
                             f" learned variances are not supported")
        if getattr(config, "class_embed_type", None) is not None:
            raise ValueError(f"unet.config.class_embed_type must be None (an nn.Embedding of "
                             f"num_class_embeds labels), got {config.class_embed_type!r}")
        if getattr(config, "time_embedding_type", "positional") != "positional":
            raise ValueError(f"unet.config.time_embedding_type must be 'positional', got "
                             f"{config.time_embedding_type!r}")
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {list(PREDICTION_TYPES)}, got "
                             f"{prediction_type!r}")
        if prediction_type != "epsilon" and alphas_cumprod is None:
            raise ValueError(f"alphas_cumprod is required for prediction_type="
                             f"{prediction_type!r}")
        self.unet = unet
        self.prediction_type = prediction_type
        self.data_shape = (int(config.in_channels), *_sample_shape(config))
        self.num_conditions = int(config.num_class_embeds or 0)
        self.emb_dim = int(unet.time_embedding.linear_2.out_features)
        self.register_buffer("alphas_cumprod", None if alphas_cumprod is None else
                             torch.as_tensor(alphas_cumprod, dtype=torch.float32).clone())

    def forward(self, x: torch.Tensor, t: torch.Tensor, c=None, extra_emb=None) -> torch.Tensor:
        """Predict the noise ``eps`` of ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``."""
        if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != self.data_shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (B, {', '.join(map(str, self.data_shape))}),"
                             f" got {got}")
        if not isinstance(t, torch.Tensor) or t.shape != (x.shape[0],):
            raise ValueError(f"t must be a tensor of shape ({x.shape[0]},)")
        if self.num_conditions:
            if c is None or (c == self.num_conditions).any():
                raise ValueError("c is required: a class-conditional diffusers UNet has no null "
                                 f"label (num_class_embeds={self.num_conditions})")
        elif c is not None:
            raise ValueError("c must be None for an unconditional UNet")
        handle = None
        if extra_emb is not None:
            if extra_emb.shape != (x.shape[0], self.emb_dim):
                raise ValueError(f"extra_emb must have shape ({x.shape[0]}, {self.emb_dim}), "
                                 f"got {tuple(extra_emb.shape)}")
            # a hook for this call only: emb = time_embedding(t) + extra_emb (+ class_emb)
            handle = self.unet.time_embedding.register_forward_hook(
                lambda module, args, out: out + extra_emb.to(out.dtype))
        try:
            out = self.unet(x, t - 1, class_labels=c).sample
        finally:
            if handle is not None:
                handle.remove()
        if self.prediction_type == "epsilon":
            return out
        ab = self.alphas_cumprod.to(x.device)[t - 1].view(-1, *([1] * (x.ndim - 1)))
        if self.prediction_type == "v_prediction":
            return ab.sqrt() * out + (1 - ab).sqrt() * x
        return (x - ab.sqrt() * out) / (1 - ab).sqrt()      # "sample": x0 -> eps


def schedule_from_scheduler(scheduler) -> NoiseSchedule:
    """The library's :class:`~ctrl_teach.diffusion.NoiseSchedule` of a diffusers scheduler.

    Its betas are recomputed in float64 from the scheduler's ``alphas_cumprod``, so that the
    library's ``alpha_bar[t]`` equals diffusers' ``alphas_cumprod[t - 1]`` (whatever the
    ``beta_schedule`` or ``trained_betas``).

    Args:
        scheduler: a diffusers scheduler with ``alphas_cumprod``.

    Returns:
        A ``NoiseSchedule`` with ``T = num_train_timesteps``.

    Introduced in: Chapter 10 (CTRL on a real diffusion model).
    """
    require("diffusers")
    if getattr(scheduler.config, "rescale_betas_zero_snr", False):
        raise ValueError("scheduler.config.rescale_betas_zero_snr=True gives alpha_bar_T = 0 "
                         "(beta_T = 1), which a Gaussian chain from N(0, I) cannot represent")
    ac = torch.as_tensor(scheduler.alphas_cumprod).double()
    betas = 1 - ac / torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    return NoiseSchedule(betas, kind="custom", source=type(scheduler).__name__)


def sampler_from_scheduler(scheduler, num_steps: int, *, eta: float | None = None,
                           use_clipped_model_output: bool = False,
                           schedule: NoiseSchedule | None = None) -> DiffusionSampler:
    """A :class:`~ctrl_teach.diffusion.DiffusionSampler` whose step ``i`` equals diffusers'
    ``scheduler.step`` at the ``i``-th of ``set_timesteps(num_steps)``'s timesteps.

    ``DDPMScheduler``: the posterior step of Ho et al. 2020 (eq. 7) on the sub-sampled grid,
    i.e. ``eta = 1``. ``DDIMScheduler``: DDIM eq. 12 with ``eta`` (the value you pass to
    ``DDIMScheduler.step``; default 0) and diffusers' previous timestep ``t - T // num_steps``.
    The timestep spacing (``"leading"`` with ``steps_offset``, ``"trailing"``,
    ``"linspace"``), ``set_alpha_to_one`` and ``clip_sample`` / ``clip_sample_range`` are read
    from the scheduler's config. The scheduler itself is not modified.

    Args:
        scheduler: a ``diffusers.DDPMScheduler`` or ``diffusers.DDIMScheduler``.
        num_steps: the number of inference steps ``K``.
        eta: DDIM's ``eta`` (must be ``None`` or 1 for DDPM).
        use_clipped_model_output: for DDIM with ``clip_sample``, the value you pass to
            ``DDIMScheduler.step``: re-derive ``eps`` from the clipped ``x0`` (True) or keep
            the network's ``eps`` in the direction term (False, diffusers' default).
        schedule: the schedule (default :func:`schedule_from_scheduler`).

    Returns:
        The sampler.

    Introduced in: Chapter 10 (CTRL on a real diffusion model).
    """
    diffusers = require("diffusers")
    cfg = scheduler.config
    if not isinstance(scheduler, (diffusers.DDPMScheduler, diffusers.DDIMScheduler)):
        raise ValueError(f"scheduler must be a diffusers DDPMScheduler or DDIMScheduler, got "
                         f"{type(scheduler).__name__} (build one with "
                         f"DDIMScheduler.from_config(scheduler.config))")
    if cfg.thresholding:
        raise ValueError("scheduler.config.thresholding=True (dynamic thresholding) is not "
                         "supported: its x0 clamp depends on each sample's quantile")
    schedule = schedule_from_scheduler(scheduler) if schedule is None else schedule
    T = int(cfg.num_train_timesteps)
    if schedule.T != T:
        raise ValueError(f"schedule must have T = num_train_timesteps = {T}, got {schedule.T}")
    grid = type(scheduler).from_config(cfg)          # a copy: the caller's is left alone
    grid.set_timesteps(num_steps)
    ts = grid.timesteps.long().cpu()
    if isinstance(scheduler, diffusers.DDPMScheduler):
        if cfg.variance_type not in ("fixed_small", "fixed_small_log"):
            raise ValueError(f"scheduler.config.variance_type must be 'fixed_small' or "
                             f"'fixed_small_log' (the posterior variance), got "
                             f"{cfg.variance_type!r}")
        if eta not in (None, 1, 1.0):
            raise ValueError(f"eta must be None or 1 for a DDPMScheduler, got {eta!r}")
        eta, rederive, final = 1.0, True, 0
        prev = torch.cat([ts[1:], torch.tensor([-1])])
    else:
        eta = 0.0 if eta is None else float(eta)
        rederive = bool(use_clipped_model_output)
        final = 0 if cfg.set_alpha_to_one else 1      # final_alpha_cumprod = 1 or abar[1]
        prev = ts - T // grid.num_inference_steps
    lib_t = ts + 1
    lib_prev = torch.where(prev >= 0, prev + 1, torch.full_like(prev, final))
    clip = float(cfg.clip_sample_range) if cfg.clip_sample else None
    return DiffusionSampler.from_timesteps(schedule, lib_t, lib_prev, eta=eta, clip_x0=clip,
                                           rederive_eps=rederive)


def from_diffusers(unet: nn.Module, scheduler, num_steps: int, *, eta: float | None = None,
                   use_clipped_model_output: bool = False, name: str = "diffusers"):
    """Wrap a diffusers UNet and scheduler as a library pre-trained model.

    Args:
        unet: a ``diffusers.UNet2DModel`` (frozen and put in eval mode here).
        scheduler: the ``DDPMScheduler`` / ``DDIMScheduler`` it was trained with.
        num_steps: inference steps ``K`` of the sampler.
        eta: DDIM's ``eta`` (see :func:`sampler_from_scheduler`).
        use_clipped_model_output: see :func:`sampler_from_scheduler`.
        name: the ``name`` of the returned object.

    Returns:
        A :class:`~ctrl_teach.pretrained.PretrainedDiffusion` (``network``: a
        :class:`DiffusersEpsNetwork`, ``schedule``, ``sampler``, ``meta``: the two configs), so
        ``HeadAugmentedModel(pre.network, pre.sampler, ...)``, :class:`DiffusersLoRAModel`,
        rollout, finetune and the references take it like a shipped model.

    Introduced in: Chapter 10 (CTRL on a real diffusion model).
    """
    from ..pretrained import PretrainedDiffusion

    require("diffusers")
    schedule = schedule_from_scheduler(scheduler)
    sampler = sampler_from_scheduler(scheduler, num_steps, eta=eta, schedule=schedule,
                                     use_clipped_model_output=use_clipped_model_output)
    network = DiffusersEpsNetwork(unet.eval().requires_grad_(False),
                                  alphas_cumprod=scheduler.alphas_cumprod,
                                  prediction_type=scheduler.config.prediction_type)
    meta = {"unet": dict(unet.config), "scheduler": dict(scheduler.config),
            "scheduler_class": type(scheduler).__name__}
    return PretrainedDiffusion(name, network, schedule, sampler, meta)

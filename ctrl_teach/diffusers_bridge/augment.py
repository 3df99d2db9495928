"""The paper's augmentation on a diffusers UNet: zero label embedding + peft LoRA.

:class:`DiffusersLoRAModel` is an :class:`~ctrl_teach.ctrl.AugmentedModel`: its
``step(x_t, i, c, y)`` is the sampler's step of the adapted UNet, whose time embedding gets
``E[c, y]`` (an ``nn.Embedding`` initialised to zero, one row per ``(c, y)`` pair, as in the
official code's ``class_embedding``) and whose attention projections and convolutions get
peft LoRA adapters (``B = 0`` at initialisation, Hu et al. 2021). At initialisation it is the
pre-trained model bit for bit. ``finetune``, ``rollout``, ``sample`` and the references take it
unchanged.

After fine-tuning, :meth:`DiffusersLoRAModel.merged` folds the LoRA update into the weights
(peft's ``merge_and_unload``): the adapted UNet is again a plain ``UNet2DModel`` of the
pre-trained architecture, and ``y`` still enters through the label table, one embedding lookup
added to the time embedding. :func:`sample_adapted` draws from it at the cost of the
pre-trained sampler (one UNet call per step).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .._checks import check_positive_int
from ..ctrl import AugmentedModel
from ..ctrl.augmented import pair_index
from ..diffusion import model_device
from ..profiles import gaussian_noise, seeded_init
from ._require import require
from .adapter import DiffusersEpsNetwork

__all__ = ["DiffusersLoRAModel", "sample_adapted", "ATTENTION_MODULES", "CONV_MODULES"]

ATTENTION_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
CONV_MODULES = ("conv1", "conv2")      # the two 3x3 convolutions of every ResNet block


class DiffusersLoRAModel(AugmentedModel):
    """``eps_theta(x_t, t, c; emb_t + E[c, y])`` with peft LoRA, on a diffusers UNet.

    Args:
        network: the frozen pre-trained :class:`DiffusersEpsNetwork`.
        sampler: the sampler to fine-tune (e.g. ``from_diffusers(...).sampler``).
        num_labels: ``K``, the number of labels ``y``.
        rank: LoRA rank ``r``.
        lora_alpha: LoRA's ``alpha`` (scale ``alpha / r``; default ``r``, scale 1).
        conv: also adapt the ResNet convolutions (:data:`CONV_MODULES`), besides the attention
            projections (:data:`ATTENTION_MODULES`).
        target_modules: explicit peft ``target_modules`` (overrides the two above).
        gradient_checkpointing: call diffusers' ``enable_gradient_checkpointing()`` on the
            adapted UNet (recompute its blocks in the backward pass; the library's
            ``gradient="checkpoint"`` recomputes whole chain steps instead).
        learn_initial: also learn a tilted initial law.
        seed: seeds LoRA's random ``A`` initialisation.

    Introduced in: Chapter 10 (CTRL on a real diffusion model).
    """

    def __init__(self, network: DiffusersEpsNetwork, sampler, num_labels: int, rank: int = 4,
                 lora_alpha: float | None = None, conv: bool = True,
                 target_modules=None, gradient_checkpointing: bool = False,
                 learn_initial: bool = False, seed: int = 0):
        peft = require("peft")
        if not isinstance(network, DiffusersEpsNetwork):
            raise ValueError(f"network must be a DiffusersEpsNetwork, got "
                             f"{type(network).__name__}")
        super().__init__(network, sampler, num_labels, learn_initial)
        rank = check_positive_int("rank", rank)
        targets = list(target_modules) if target_modules is not None else \
            [*ATTENTION_MODULES, *(CONV_MODULES if conv else ())]
        config = peft.LoraConfig(r=rank, lora_alpha=rank if lora_alpha is None else lora_alpha,
                                 target_modules=targets, init_lora_weights=True)
        unet = copy.deepcopy(network.unet).requires_grad_(False)
        if gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        with seeded_init(seed):
            lora = peft.LoraModel(unet, config, "default")   # injects in place; B = 0
        self.adapted = DiffusersEpsNetwork(lora, alphas_cumprod=network.alphas_cumprod,
                                           prediction_type=network.prediction_type)
        self.label = nn.Embedding((self.num_conditions + 1) * self.num_labels, network.emb_dim)
        nn.init.zeros_(self.label.weight)
        self.is_merged = False

    def adapted_eps(self, x_t: torch.Tensor, t: int, c, y) -> torch.Tensor:
        """``eps_theta(x_t, t, c)`` of the adapted UNet with ``E[c, y]`` added to its time
        embedding."""
        tt = torch.full((x_t.shape[0],), int(t), dtype=torch.long, device=x_t.device)
        extra = self.label(pair_index(c, y, self.num_labels, self.num_conditions))
        return self.adapted(x_t, tt, c, extra_emb=extra)

    def step(self, x_t, i, c, y):
        pre = self.pretrained_step(x_t, i, c)
        if pre.std == 0:                       # the noise-free step is never controlled
            return pre, torch.zeros_like(x_t)
        step = self.sampler.step_from_eps(x_t, self.adapted_eps(x_t, pre.t, c, y), i)
        return step, (step.mean - pre.mean) / step.std

    def merged(self) -> DiffusersLoRAModel:
        """A new model whose adapted UNet has the LoRA update merged into its weights.

        peft's ``merge_and_unload``: ``W <- W + (alpha / r) B A`` in every adapted layer,
        which then becomes the plain ``nn.Linear`` / ``nn.Conv2d`` again, so the adapted UNet
        has the pre-trained architecture. ``y`` still enters through the (tiny) label table
        ``E[c, y]`` added to the time embedding. Nothing is trainable in the merged model
        except the label table (and the initial law if learned).

        Returns:
            A :class:`DiffusersLoRAModel` (this one is unchanged).

        Introduced in: Chapter 10 (CTRL on a real diffusion model).
        """
        if self.is_merged:
            return copy.deepcopy(self)
        out = copy.deepcopy(self)
        unet = out.adapted.unet.merge_and_unload()
        out.adapted = DiffusersEpsNetwork(unet.requires_grad_(False),
                                          alphas_cumprod=self.network.alphas_cumprod,
                                          prediction_type=self.network.prediction_type)
        out.is_merged = True
        return out


def sample_adapted(augmented: DiffusersLoRAModel, n: int, *, c=None, y, generator=None,
                   x_T=None) -> torch.Tensor:
    """Samples of ``p_theta(x | c, y)`` at the cost of the pre-trained sampler.

    The same chain, noise stream and samples as :func:`ctrl_teach.ctrl.sample` (which also
    evaluates the frozen pre-trained UNet at every step, to report the control ``a``), but
    with one UNet call per step: the adapted UNet on the noisy steps, the pre-trained one on
    the noise-free final step (which the augmented model never controls).

    Args:
        augmented: a (merged) :class:`DiffusersLoRAModel`.
        n: number of samples.
        c: ``None``, an int or ``(n,)`` conditions.
        y: an int or ``(n,)`` labels.
        generator: a ``torch.Generator``.
        x_T: optional start state.

    Returns:
        ``(n, *data_shape)`` samples.

    Introduced in: Chapter 10 (CTRL on a real diffusion model).
    """
    if not isinstance(augmented, DiffusersLoRAModel):
        raise ValueError(f"augmented must be a DiffusersLoRAModel, got "
                         f"{type(augmented).__name__}")
    n = check_positive_int("n", n)
    device = model_device(augmented.network)
    c, y = augmented.prepare_labels(c, y, n, device)
    sampler = augmented.sampler
    x = (gaussian_noise((n, *augmented.data_shape), generator, device) if x_T is None
         else x_T.to(device))

    def step_fn(x_t, i):
        if float(sampler.sigmas[i]) == 0:
            return augmented.pretrained_step(x_t, i, c), None
        t = int(sampler.timesteps[i])
        return sampler.step_from_eps(x_t, augmented.adapted_eps(x_t, t, c, y), i), None

    with torch.no_grad():
        x, _ = augmented.initial_state(x, c, y)
        return sampler.run_chain(step_fn, x, generator=generator).x

"""CTRL on real diffusers models: an adapter, the paper's LoRA augmentation, a shipped model.

The bridge turns a `diffusers <https://huggingface.co/docs/diffusers>`_ ``UNet2DModel`` and
the betas of a ``DDPMScheduler`` / ``DDIMScheduler`` into the library's eps-network and
:class:`~ctrl_teach.diffusion.DiffusionSampler` (:func:`from_diffusers`), so that
:func:`~ctrl_teach.ctrl.rollout`, :func:`~ctrl_teach.ctrl.finetune`, the exact per-step KL and
the rejection references work unchanged; :class:`DiffusersLoRAModel` is the paper's augmented
model on such a UNet (zero label embedding + peft LoRA), whose LoRA merges into the weights
after fine-tuning (:meth:`DiffusersLoRAModel.merged`).

diffusers and peft are optional (``pip install "ctrl-teach[diffusers]"``): this package
imports without them and each function raises a clear ``ImportError`` when they are missing.
Nothing here downloads anything unless you pass a hub id yourself.
"""

from ._require import INSTALL_HINT, require
from .adapter import (
    DiffusersEpsNetwork,
    from_diffusers,
    sampler_from_scheduler,
    schedule_from_scheduler,
)
from .augment import DiffusersLoRAModel, sample_adapted

_TINY = ("TINY_MODEL_DIR", "load_tiny_unet", "train_tiny_unet")

__all__ = [
    "INSTALL_HINT", "require",
    "DiffusersEpsNetwork", "from_diffusers", "sampler_from_scheduler", "schedule_from_scheduler",
    "DiffusersLoRAModel", "sample_adapted",
    "TINY_MODEL_DIR", "load_tiny_unet", "train_tiny_unet",
]


def __getattr__(name):
    # lazy, so that `python -m ctrl_teach.diffusers_bridge.tiny_model` runs the module once
    if name in _TINY:
        from . import tiny_model

        return getattr(tiny_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

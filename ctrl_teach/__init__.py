"""ctrl-teach: an executable textbook on CTRL, conditioning pre-trained diffusion models
with reinforcement learning (Zhao, Uehara et al., ICLR 2025).

Subpackages mirror the book's parts:

* :mod:`ctrl_teach.diffusion`: schedules, samplers, networks, training (Part I);
* :mod:`ctrl_teach.baselines`: classifier guidance, classifier-free guidance, DPS, rejection;
* :mod:`ctrl_teach.target`: the tilted target every method aims at and the reward contract;
* :mod:`ctrl_teach.ctrl`: CTRL itself: rewards and calibration, the augmented model,
  fine-tuning through the sampler, the soft value and exact references (Parts II-III);
* :mod:`ctrl_teach.experiments`: the experiments of Chapter 8;
* :mod:`ctrl_teach.data`, :mod:`ctrl_teach.evaluation`, :mod:`ctrl_teach.pretrained`: toys,
  digits and scorers; distances and the digit oracle; the shipped pre-trained models.

The most used entry points are importable from the top level, e.g.
``from ctrl_teach import load_pretrained, fit_classifier, condition_pretrained``. Heavy
dependencies are imported lazily: ``import ctrl_teach`` does not even import torch (that
happens with the first name you use).
"""

__version__ = "0.1.0"

# name -> submodule that defines it (PEP 562 lazy attributes)
_LAZY = {
    "profile": "profiles", "pick": "profiles", "default_device": "profiles",
    "seed_everything": "profiles",
    "load_pretrained": "pretrained", "load_digit_oracle": "pretrained",
    "PretrainedDiffusion": "pretrained",
    "NoiseSchedule": "diffusion", "DiffusionSampler": "diffusion",
    "load_toy": "data",
    "energy_distance": "evaluation",
    "pretrain_on_points": "ctrl", "fit_classifier": "ctrl", "condition_pretrained": "ctrl",
    "ConditionedModel": "ctrl", "HeadAugmentedModel": "ctrl", "LoRAAugmentedModel": "ctrl",
    "finetune": "ctrl", "sample": "ctrl", "rollout": "ctrl",
    "evaluate_against_target": "ctrl", "certificate_gap": "ctrl",
    "rejection_sample": "target", "rejection_sample_pretrained": "target",
    "log_partition": "target", "mean_confidence": "target",
}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ctrl_teach' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__():
    return sorted(__all__)

"""ctrl-teach: an executable textbook on CTRL, conditioning pre-trained diffusion models
with reinforcement learning (Zhao, Uehara et al., ICLR 2025).

Subpackages mirror the book's parts:

* :mod:`ctrl_teach.diffusion`: schedules, samplers, networks, training (Part I);
* :mod:`ctrl_teach.data`: 2-D toys, digits, true scorers and offline labelled datasets;
* :mod:`ctrl_teach.evaluation`: distances between samples and the digit oracle;
* :mod:`ctrl_teach.pretrained`: the shipped pre-trained models (``load_pretrained``);
* :mod:`ctrl_teach.ctrl`: CTRL itself: rewards and calibration, the augmented model,
  fine-tuning through the sampler, and exact references (Parts II-III).

Heavy dependencies are imported lazily: ``import ctrl_teach`` does not even import torch
(that happens with the first subpackage or profile helper you use).
"""

__version__ = "0.1.0"

_PROFILE_HELPERS = ("profile", "pick", "default_device", "seed_everything")
__all__ = [*_PROFILE_HELPERS, "__version__"]


def __getattr__(name):  # PEP 562: ctrl_teach.pick etc. without importing torch up front
    if name in _PROFILE_HELPERS:
        from . import profiles

        return getattr(profiles, name)
    raise AttributeError(f"module 'ctrl_teach' has no attribute {name!r}")

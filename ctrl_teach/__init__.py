"""ctrl-teach: an executable textbook on CTRL, conditioning pre-trained diffusion models
with reinforcement learning (Zhao, Uehara et al., ICLR 2025).

Subpackages mirror the book's parts:

* :mod:`ctrl_teach.diffusion`: schedules, samplers, networks, training (Part I);
* :mod:`ctrl_teach.data`: 2-D toys, digits, true scorers and offline labelled datasets;
* :mod:`ctrl_teach.evaluation`: distances between samples and the digit oracle;
* :mod:`ctrl_teach.pretrained`: the shipped pre-trained models (``load_pretrained``);
* :mod:`ctrl_teach.ctrl`: CTRL itself: rewards and calibration, the augmented model,
  fine-tuning through the sampler, and exact references (Parts II-III).

Heavy optional dependencies (scikit-learn, matplotlib, Pillow) are imported lazily.
"""

from .profiles import default_device, pick, profile, seed_everything

__version__ = "0.1.0"

__all__ = ["profile", "pick", "default_device", "seed_everything", "__version__"]

"""Baselines for CTRL (Chapters 2 and 8): guidance methods and rejection sampling.

Every baseline turns the same offline labelled data that CTRL's classifier is trained on into
a sampler for ``p(x | c, y)`` on top of a frozen pre-trained eps-network:

* :mod:`.noisy_classifier` + :mod:`.classifier_guidance`: a time-conditioned classifier
  ``p_phi(y | x_t, t)`` trained on noised data, and guidance with scale ``lambda``
  (Dhariwal & Nichol 2021);
* :mod:`.cfg`: classifier-free guidance with weight ``w`` from a ``y``-conditioned copy of
  the pre-trained network trained with label dropout (Ho & Salimans 2022);
* :mod:`.dps`: reconstruction guidance / DPS, the clean classifier applied to Tweedie's
  ``x0_hat(x_t)`` with step size ``zeta`` (Chung et al. 2023);
* :mod:`.rejection`: exact samples of ``p_pre(x | c) p(y | x, c) / Z`` by rejection, with its
  cost (a wrapper of :func:`ctrl_teach.target.rejection_sample_pretrained`).

The guided samplers are eps-network wrappers (``forward(x, t, c)``, ``data_shape``,
``num_conditions``), so ``DiffusionSampler.sample(guided, n, c=c)`` draws from them;
classifier guidance is also available as a ``control`` in the sampler's mean form. The
baselines import the tilted target from :mod:`ctrl_teach.target`, never from
:mod:`ctrl_teach.ctrl`.
"""

from .cfg import CFGFit, ClassifierFreeGuided, LabelConditionedDenoiser, cfg_eps, train_cfg_model
from .classifier_guidance import (
    ClassifierGuided,
    ExactGaussianNoisyLikelihood,
    classifier_guidance_control,
)
from .dps import DPSGuided
from .noisy_classifier import (
    NoisyClassifierFit,
    NoisyCNNClassifier,
    NoisyMLPClassifier,
    train_noisy_classifier,
)
from .rejection import PretrainedSampler, RejectionResult, rejection_baseline

__all__ = [
    "NoisyMLPClassifier", "NoisyCNNClassifier", "train_noisy_classifier", "NoisyClassifierFit",
    "ClassifierGuided", "classifier_guidance_control", "ExactGaussianNoisyLikelihood",
    "LabelConditionedDenoiser", "train_cfg_model", "CFGFit", "ClassifierFreeGuided", "cfg_eps",
    "DPSGuided",
    "PretrainedSampler", "RejectionResult", "rejection_baseline",
]

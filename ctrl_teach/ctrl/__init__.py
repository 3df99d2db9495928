"""CTRL: conditional control of a pre-trained diffusion model by KL-regularised RL.

Chapters 3-7 of the book: reward classifiers (:mod:`.rewards`, :mod:`.calibration`), the
augmented model (:mod:`.augmented`), fine-tuning (:mod:`.finetune`) and exact references and
certificates (:mod:`.references`).
"""

from .augmented import (
    AugmentedModel,
    ControlHead,
    HeadAugmentedModel,
    LoRAAugmentedModel,
    LoRAConv2d,
    LoRALinear,
)
from .calibration import (
    ClassifierFit,
    expected_calibration_error,
    reliability_curve,
    train_classifier,
)
from .finetune import FinetuneHistory, Rollout, draw_labels, finetune, rollout, sample
from .known_rewards import GaussianLikelihood, ProbitClassifier
from .rewards import (
    CNNClassifier,
    MLPClassifier,
    MultiTaskReward,
    TemperatureScaled,
    num_reward_labels,
    reward_log_prob,
)

__all__ = [
    "AugmentedModel", "ControlHead", "HeadAugmentedModel", "LoRAAugmentedModel", "LoRAConv2d",
    "LoRALinear", "ClassifierFit", "expected_calibration_error", "reliability_curve",
    "train_classifier", "FinetuneHistory", "Rollout", "draw_labels", "finetune", "rollout",
    "sample", "CNNClassifier", "GaussianLikelihood", "MLPClassifier", "MultiTaskReward",
    "ProbitClassifier", "TemperatureScaled", "num_reward_labels", "reward_log_prob",
]

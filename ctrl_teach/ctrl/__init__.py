"""CTRL: conditional control of a pre-trained diffusion model by KL-regularised RL.

Chapters 3-7 of the book: reward classifiers (:mod:`.rewards`, :mod:`.calibration`), the
augmented model (:mod:`.augmented`), fine-tuning (:mod:`.finetune`) and exact references and
certificates (:mod:`.references`), and the three-call workflow for your own problem
(:mod:`.workflow`).
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
from .images import DigitReward, digit_sampler, evaluate_digits, fit_digit_reward
from .known_rewards import GaussianLikelihood, ProbitClassifier
from .references import evaluate_against_target
from .rewards import (
    CNNClassifier,
    MLPClassifier,
    MultiTaskReward,
    TemperatureScaled,
    num_reward_labels,
    reward_log_prob,
)
from .value import (
    gaussian_chain_to_data,
    gaussian_optimal_control,
    gaussian_value,
    monte_carlo_value,
    optimal_control,
)
from .workflow import ConditionedModel, condition_pretrained, fit_classifier, pretrain_on_points

__all__ = [
    "AugmentedModel", "ControlHead", "HeadAugmentedModel", "LoRAAugmentedModel", "LoRAConv2d",
    "LoRALinear", "ClassifierFit", "expected_calibration_error", "reliability_curve",
    "train_classifier", "FinetuneHistory", "Rollout", "draw_labels", "finetune", "rollout",
    "sample", "CNNClassifier", "GaussianLikelihood", "MLPClassifier", "MultiTaskReward",
    "ProbitClassifier", "TemperatureScaled", "num_reward_labels", "reward_log_prob",
    "evaluate_against_target", "ConditionedModel", "pretrain_on_points", "fit_classifier",
    "condition_pretrained",
    "monte_carlo_value", "optimal_control", "gaussian_chain_to_data", "gaussian_value",
    "gaussian_optimal_control",
    "DigitReward", "digit_sampler", "evaluate_digits", "fit_digit_reward",
]

"""CTRL: conditional control of a pre-trained diffusion model by KL-regularised RL.

Chapters 3-7 of the book: reward classifiers (:mod:`.rewards`, :mod:`.calibration`), the
augmented model (:mod:`.augmented`), fine-tuning (:mod:`.finetune`), the soft value
(:mod:`.value`), exact references and certificates (:mod:`.references`, with the tilted target
of :mod:`ctrl_teach.target`), CTRL on digits (:mod:`.images`) and the three-call workflow for
your own problem (:mod:`.workflow`); fine-tuning on several processes (:mod:`.distributed`).
"""

from ..target import (
    log_partition,
    mean_confidence,
    num_reward_labels,
    rejection_sample,
    rejection_sample_pretrained,
    reward_log_prob,
)
from .augmented import AugmentedModel, HeadAugmentedModel, LoRAAugmentedModel
from .calibration import (
    ClassifierFit,
    RewardFit,
    expected_calibration_error,
    reliability_curve,
    train_calibrated_classifier,
    train_classifier,
)
from .class_floor import (
    GaussianClassFloor,
    PolicyStepGaps,
    gaussian_class_floor,
    greedy_policy_gap,
    policy_step_gaps,
)
from .convergence import Certificate, CertificateMonitor, CertificateWarning
from .distributed import init_distributed, rank_generator, world_info
from .finetune import FinetuneHistory, Rollout, finetune, rollout, sample
from .images import DigitReward, digit_sampler, evaluate_digits, fit_digit_reward
from .known_rewards import GaussianLikelihood, ProbitClassifier
from .references import (
    certificate_gap,
    evaluate_against_target,
    gaussian_log_evidence,
    gaussian_posterior,
    probit_log_partition,
)
from .rewards import CNNClassifier, MLPClassifier, MultiTaskReward, TemperatureScaled
from .step_floor import GaussianStepFloor, gaussian_optimal_step, gaussian_step_floor
from .value import (
    gaussian_chain_to_data,
    gaussian_optimal_control,
    gaussian_value,
    monte_carlo_value,
    optimal_control,
)
from .workflow import ConditionedModel, condition_pretrained, fit_classifier, pretrain_on_points

__all__ = [
    # the augmented model and fine-tuning (Chapter 5)
    "AugmentedModel", "HeadAugmentedModel", "LoRAAugmentedModel",
    "FinetuneHistory", "Rollout", "finetune", "rollout", "sample",
    # several processes (README, "Several GPUs")
    "init_distributed", "rank_generator", "world_info",
    # rewards and calibration (Chapter 5)
    "MLPClassifier", "CNNClassifier", "TemperatureScaled", "MultiTaskReward",
    "GaussianLikelihood", "ProbitClassifier", "ClassifierFit", "RewardFit",
    "train_classifier", "train_calibrated_classifier", "expected_calibration_error",
    "reliability_curve", "reward_log_prob", "num_reward_labels",
    # the exact target and the certificate (Chapter 4)
    "rejection_sample", "rejection_sample_pretrained", "log_partition", "mean_confidence",
    "certificate_gap", "gaussian_log_evidence", "gaussian_posterior", "probit_log_partition",
    "evaluate_against_target",
    # the soft value and the optimal control (Chapter 4)
    "monte_carlo_value", "optimal_control", "gaussian_chain_to_data", "gaussian_value",
    "gaussian_optimal_control",
    # what a Gaussian step can represent (Chapter 4)
    "GaussianStepFloor", "gaussian_optimal_step", "gaussian_step_floor",
    "GaussianClassFloor", "gaussian_class_floor", "PolicyStepGaps", "policy_step_gaps",
    "greedy_policy_gap",
    # digits (Chapter 7) and the workflow (Chapter 5)
    "DigitReward", "digit_sampler", "evaluate_digits", "fit_digit_reward",
    "ConditionedModel", "pretrain_on_points", "fit_classifier", "condition_pretrained",
    "Certificate", "CertificateMonitor", "CertificateWarning",
]

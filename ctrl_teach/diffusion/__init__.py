"""Part I of the book: diffusion models as stochastic processes and Markov chains."""

from .exact import ExactMixtureDenoiser, gaussian_sampler_moments, gaussian_step_affine
from .networks import (
    EpsilonNetwork,
    MLPDenoiser,
    UNetDenoiser,
    build_network,
    sinusoidal_embedding,
    time_embedding,
)
from .samplers import ChainResult, DiffusionSampler, GaussianStep, gaussian_kl, model_device
from .schedules import NoiseSchedule
from .training import TrainingResult, denoising_loss, train_denoiser

__all__ = [
    "NoiseSchedule",
    "DiffusionSampler",
    "GaussianStep",
    "ChainResult",
    "gaussian_kl",
    "model_device",
    "ExactMixtureDenoiser",
    "gaussian_step_affine",
    "gaussian_sampler_moments",
    "EpsilonNetwork",
    "MLPDenoiser",
    "UNetDenoiser",
    "build_network",
    "sinusoidal_embedding",
    "time_embedding",
    "TrainingResult",
    "train_denoiser",
    "denoising_loss",
]

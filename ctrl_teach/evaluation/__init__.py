"""Evaluation: sample distances (energy, MMD, Fréchet) and the digit oracle classifier."""

from .digit_oracle import DigitOracle, OracleFit, train_digit_oracle
from .distances import energy_distance, frechet_distance, mmd_rbf

__all__ = ["DigitOracle", "OracleFit", "train_digit_oracle", "energy_distance",
           "frechet_distance", "mmd_rbf"]

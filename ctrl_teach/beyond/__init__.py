"""Beyond CTRL: other ways to reach the same KL-regularised target (Part "Beyond CTRL").

Every method here optimises (or samples) the tilted law
``p*(x | c, y) ∝ p_pre(x | c) p(y | x, c)^(gamma / alpha)`` that CTRL fine-tunes towards,
reusing the sampler's Gaussian steps (:mod:`ctrl_teach.diffusion`) and the reward contract
(:mod:`ctrl_teach.target`). This package sits above :mod:`ctrl_teach.ctrl` and
:mod:`ctrl_teach.baselines`.
"""

from ._gaussian_problem import GaussianProblem, gaussian_problem, tilted_log_z
from .adjoint_matching import (
    AdjointMatchingHistory,
    Trajectories,
    adjoint_matching,
    adjoint_matching_loss,
    lean_adjoint,
    sample_trajectories,
)
from .compare import (
    HYPERPARAMETERS,
    METHODS,
    BenchProblem,
    format_table,
    make_problem,
    plot_compute,
    run_experiment,
    run_method,
)
from .draft import finetune_draft
from .policy_gradient import BASELINES, finetune_policy_gradient, policy_gradient_surrogate
from .smc import SMCResult, effective_sample_size, systematic_resample, twisted_smc
from .trajectory_balance import (
    TrajectoryBalanceHistory,
    behaviour_trajectories,
    trajectory_balance,
    trajectory_balance_residual,
)

__all__ = [
    "GaussianProblem", "gaussian_problem", "tilted_log_z",
    "finetune_policy_gradient", "policy_gradient_surrogate", "BASELINES",
    "finetune_draft",
    "adjoint_matching", "lean_adjoint", "adjoint_matching_loss", "sample_trajectories",
    "AdjointMatchingHistory", "Trajectories",
    "trajectory_balance", "trajectory_balance_residual", "behaviour_trajectories",
    "TrajectoryBalanceHistory",
    "twisted_smc", "SMCResult", "systematic_resample", "effective_sample_size",
    # the side-by-side experiment (Chapter 9)
    "HYPERPARAMETERS", "METHODS", "BenchProblem", "make_problem", "run_method",
    "run_experiment", "format_table", "plot_compute",
]

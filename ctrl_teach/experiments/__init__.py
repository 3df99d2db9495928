"""Chapter 8: experiments that test CTRL's claims against the baselines.

* :mod:`.problems`: the 2-D toy with a known labelling rule, digits, the two-attribute toy;
* :mod:`.methods`: fit CTRL / CFG / classifier guidance / DPS on one labelled dataset;
* :mod:`.metrics`: distance to the exact target, accuracy under the truth, diversity;
* experiments (a)-(e): :mod:`.sample_efficiency`, :mod:`.dataset_construction`,
  :mod:`.strength`, :mod:`.cost` (sampling and fine-tuning cost);
* :mod:`.run` (``run_all``), :mod:`.config` (sizes per profile), :mod:`.schema` (JSON
  layout, ``benchmarks/SCHEMA.md``), :mod:`.tables` and :mod:`.figures` (plots for the book).
"""

from .config import experiment_config, reduced_config, scaled_config, toy_only
from .cost import (
    CountingNetwork,
    run_finetune_cost,
    run_sampling_cost,
    saved_tensor_bytes,
)
from .dataset_construction import run_dataset_construction
from .figures import (
    plot_all,
    plot_dataset_construction,
    plot_finetune_cost,
    plot_sample_efficiency,
    plot_sampling_cost,
    plot_strength_sweep,
)
from .methods import (
    METHODS,
    CTRLFit,
    FittedMethods,
    Plateau,
    ProblemClassifierFit,
    fit_ctrl,
    fit_methods,
    fit_problem_classifier,
    method_samplers,
    plateau_statistic,
)
from .metrics import evaluate_method, evaluate_samples, make_targets
from .problems import Problem, digits_problem, toy_problem, two_attribute_toy
from .run import EXPERIMENTS, budget_summary, convergence, headline_claims, run_all
from .sample_efficiency import run_sample_efficiency
from .schema import SCHEMA_VERSION, validate_results
from .strength import run_strength_sweep
from .tables import format_tables

__all__ = [
    "experiment_config", "reduced_config", "scaled_config", "toy_only", "Problem",
    "toy_problem", "digits_problem", "two_attribute_toy", "METHODS", "FittedMethods",
    "ProblemClassifierFit", "CTRLFit",
    "fit_problem_classifier", "fit_ctrl", "fit_methods", "method_samplers", "make_targets",
    "evaluate_method", "evaluate_samples",
    "run_sample_efficiency", "run_dataset_construction", "run_strength_sweep",
    "run_sampling_cost", "run_finetune_cost", "CountingNetwork", "saved_tensor_bytes",
    "Plateau", "plateau_statistic", "EXPERIMENTS", "run_all", "convergence", "headline_claims",
    "budget_summary", "SCHEMA_VERSION", "validate_results", "format_tables",
    "plot_sample_efficiency", "plot_dataset_construction", "plot_strength_sweep",
    "plot_sampling_cost", "plot_finetune_cost", "plot_all",
]

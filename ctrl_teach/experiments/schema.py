"""The JSON layout of the Chapter 8 results and its checker (see benchmarks/SCHEMA.md).

:func:`validate_results` raises ``ValueError`` listing every missing key, wrong type or
non-finite metric, so a test or a notebook can rely on the layout.
"""

from __future__ import annotations

import math

__all__ = ["SCHEMA_VERSION", "ROW_FIELDS", "validate_results"]

SCHEMA_VERSION = 1

#: required fields of the rows of each experiment
ROW_FIELDS = {
    "sample_efficiency": ("problem", "method", "size", "n_labelled", "ed", "accuracy",
                          "diversity", "fit_seconds", "sample_seconds", "per_pair"),
    "dataset_construction": ("problem", "budget", "method", "data", "labelled_points",
                             "labels", "ed", "accuracy", "accuracy_attr1", "accuracy_attr2",
                             "diversity", "fit_seconds"),
    "strength": ("problem", "method", "knob", "value", "ed", "accuracy", "diversity"),
    "sampling_cost": ("method", "nfe_per_sample", "backward_per_sample", "seconds_per_1000",
                      "nfe_ratio_to_ctrl", "time_ratio_to_ctrl"),
    "finetune_cost": ("num_steps", "mode", "batch", "seconds_per_iteration",
                      "peak_memory_bytes", "time_ratio_to_full", "memory_ratio_to_full"),
}
_FINITE = {
    "sample_efficiency": ("ed", "accuracy", "diversity"),
    "dataset_construction": ("ed", "accuracy", "accuracy_attr1", "accuracy_attr2"),
    "strength": ("ed", "accuracy", "diversity"),
    "sampling_cost": ("nfe_per_sample", "seconds_per_1000"),
    "finetune_cost": ("seconds_per_iteration", "peak_memory_bytes"),
}
_TOP = ("schema_version", "profile", "device", "config", "notes", "timings", "wall_seconds")


def _check_rows(name, rows, where, errors):
    if not isinstance(rows, list) or not rows:
        errors.append(f"{where}.rows must be a non-empty list")
        return
    for i, row in enumerate(rows):
        missing = [k for k in ROW_FIELDS[name] if k not in row]
        if missing:
            errors.append(f"{where}.rows[{i}] lacks {missing}")
        for k in _FINITE[name]:
            v = row.get(k)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                errors.append(f"{where}.rows[{i}].{k} must be a finite number, got {v!r}")


def validate_results(results: dict) -> dict:
    """Check ``results`` against benchmarks/SCHEMA.md.

    Args:
        results: a results dict (:func:`~.run.run_all`, or its JSON read back).

    Returns:
        ``results`` itself.

    Raises:
        ValueError: listing every missing key, wrong type or non-finite metric.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    if not isinstance(results, dict):
        raise ValueError(f"results must be a dict, got {type(results).__name__}")
    errors = [f"missing top-level key {k!r}" for k in _TOP if k not in results]
    if results.get("schema_version") != SCHEMA_VERSION:
        errors.append(f"schema_version must be {SCHEMA_VERSION}")
    for name in ("sample_efficiency", "sampling_cost", "finetune_cost"):
        if name in results:   # keyed by problem name
            if not isinstance(results[name], dict) or not results[name]:
                errors.append(f"{name} must be a non-empty dict keyed by problem")
                continue
            for prob, res in results[name].items():
                _check_rows(name, res.get("rows"), f"{name}[{prob!r}]", errors)
                if name == "sample_efficiency" and not res.get("references"):
                    errors.append(f"{name}[{prob!r}].references must be non-empty")
    for name in ("dataset_construction", "strength"):
        if name in results:
            _check_rows(name, results[name].get("rows"), name, errors)
    if not any(k in results for k in ROW_FIELDS):
        errors.append("results hold no experiment")
    if errors:
        raise ValueError("results do not follow the schema: " + "; ".join(errors))
    return results

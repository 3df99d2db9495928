"""Sizes of the Chapter 8 experiments per profile (``quick``: 2-core CPU, ``full``: GPU).

``experiment_config(profile)`` returns a nested dict; every experiment reads its sizes from
it, and the benchmark stores it in its JSON (``config``). ``reduced_config()`` is the tiny
version the unit tests run. ``None`` in a list of dataset sizes means "all" (the whole pool).
"""

from __future__ import annotations

import copy

from .._checks import check_choice

__all__ = ["experiment_config", "reduced_config", "scaled_config", "toy_only"]

#: the methods' budgets per problem, one column each: ``(toy, digits)``; ``None``: not set
_BUDGETS = dict(
    classifier_iterations=(500, 250), classifier_batch=(256, 128), classifier_lr=(3e-3, 2e-3),
    noisy_classifier_iterations=(1000, 400), noisy_classifier_batch=(256, 128),
    cfg_iterations=(600, 200), cfg_batch=(256, 64), cfg_lr=(1e-3, 5e-4),
    cfg_label_lr=(1e-2, 5e-3), cfg_label_drop=(0.2, 0.2),
    ctrl_iterations=(250, 100), ctrl_batch=(128, 32), ctrl_lr=(3e-3, 2e-3),
    ctrl_width=(128, 64), cg_scale=(1.0, 1.0), cfg_w=(0.0, 0.0), dps_scale=(1.0, 1.0),
    eval_samples=(1000, 150), target_samples=(2000, 600), pool_size=(10000, None),
)
_TOY, _DIGITS = ({k: v[col] for k, v in _BUDGETS.items() if v[col] is not None}
                 for col in (0, 1))

_PROFILES = {
    "quick": dict(
        toy=dict(_TOY),
        digits=dict(_DIGITS),
        sample_efficiency=dict(toy_sizes=[50, 200, 1000, None], digits_sizes=[200, None]),
        dataset_construction=dict(budgets=[400]),
        strength=dict(problem="toy", size=None, ctrl_gamma=[0.5, 1.0, 2.0, 4.0],
                      ctrl_iterations=120, cfg_w=[0.0, 1.0, 3.0], cg_scale=[0.0, 1.0, 2.0, 4.0],
                      dps_scale=[0.0, 0.5, 1.0, 2.0]),
        sampling_cost=dict(problems=["toy", "digits"], toy_samples=1000, digits_samples=200,
                           cfg_w=1.0),
        finetune_cost=dict(problems=["toy", "digits"], toy_steps=[10, 20, 50],
                           digits_steps=[5, 10], modes=["full", "checkpoint", "truncated"],
                           truncate_steps=5, toy_batch=128, digits_batch=32, repeats=2),
    ),
    "full": dict(
        toy=dict(_TOY, ctrl_iterations=400, eval_samples=4000, target_samples=4000,
                 pool_size=20000, cfg_iterations=2000,
                 noisy_classifier_iterations=2000),
        digits=dict(_DIGITS, ctrl_iterations=300, ctrl_batch=64, cfg_iterations=1500,
                    classifier_iterations=1000, classifier_batch=256,
                    noisy_classifier_iterations=2000, noisy_classifier_batch=256,
                    eval_samples=600, target_samples=600),
        sample_efficiency=dict(toy_sizes=[50, 200, 1000, None],
                               digits_sizes=[50, 200, 1000, None]),
        dataset_construction=dict(budgets=[100, 400, 2000]),
        strength=dict(problem="toy", size=None, ctrl_gamma=[0.25, 0.5, 1.0, 2.0, 4.0, 8.0],
                      ctrl_iterations=200, cfg_w=[0.0, 0.5, 1.0, 2.0, 4.0, 8.0],
                      cg_scale=[0.0, 0.5, 1.0, 2.0, 4.0, 8.0],
                      dps_scale=[0.0, 0.25, 0.5, 1.0, 2.0, 4.0]),
        sampling_cost=dict(problems=["toy", "digits"], toy_samples=4000, digits_samples=1000,
                           cfg_w=1.0),
        finetune_cost=dict(problems=["toy", "digits"], toy_steps=[10, 20, 50, 100],
                           digits_steps=[5, 10, 20, 50], modes=["full", "checkpoint",
                                                                "truncated"],
                           truncate_steps=5, toy_batch=256, digits_batch=64, repeats=3),
    ),
}


def experiment_config(profile: str | None = None) -> dict:
    """A deep copy of the sizes of the Chapter 8 experiments for one profile.

    Training budgets are named ``*_iterations`` (``classifier_iterations``,
    ``noisy_classifier_iterations``, ``cfg_iterations``, ``ctrl_iterations``); ``toy_steps``
    and ``digits_steps`` of ``finetune_cost`` are sampler steps ``K``, not budgets.

    Args:
        profile: ``"quick"`` or ``"full"`` (default: :func:`ctrl_teach.profile`).

    Returns:
        A nested dict: ``toy`` and ``digits`` (the methods' budgets), then one entry per
        experiment (``sample_efficiency``, ``dataset_construction``, ``strength``,
        ``sampling_cost``, ``finetune_cost``).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    if profile is None:
        from ..profiles import profile as current

        profile = current()
    check_choice("profile", profile, tuple(_PROFILES))
    return copy.deepcopy(_PROFILES[profile])


def reduced_config() -> dict:
    """Tiny sizes for unit tests: every experiment runs end to end in seconds.

    Returns:
        A dict laid out like :func:`experiment_config` (the quick profile, shrunk).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    cfg = experiment_config("quick")
    tiny = dict(classifier_iterations=60, noisy_classifier_iterations=60, cfg_iterations=40,
                cfg_batch=64, ctrl_iterations=15, ctrl_batch=32, eval_samples=100,
                target_samples=200, pool_size=2000)
    cfg["toy"].update(tiny)
    cfg["digits"].update(tiny, ctrl_iterations=3, ctrl_batch=8, cfg_batch=16,
                         eval_samples=30, target_samples=60)
    cfg["sample_efficiency"] = dict(toy_sizes=[50, None], digits_sizes=[None])
    cfg["dataset_construction"] = dict(budgets=[100])
    cfg["strength"].update(ctrl_gamma=[1.0, 2.0], ctrl_iterations=10, cfg_w=[0.0, 2.0],
                           cg_scale=[0.0, 1.0], dps_scale=[0.0, 1.0])
    cfg["sampling_cost"].update(problems=["toy"], toy_samples=100)
    cfg["finetune_cost"].update(problems=["toy"], toy_steps=[5, 10], toy_batch=16, repeats=1)
    return cfg


def scaled_config(config: dict, scale: float, ctrl_scale: float = 1.0) -> dict:
    """A copy of ``config`` with every training budget multiplied by ``scale``.

    Scales the ``*_iterations`` of ``toy`` and ``digits`` and the strength sweep's
    ``ctrl_iterations`` (rounded, at least 1); sample sizes, batches and learning rates are
    kept. The cosine learning-rate schedules stretch with the budget.

    Args:
        config: from :func:`experiment_config` or :func:`reduced_config`.
        scale: a positive factor.
        ctrl_scale: a further positive factor for CTRL's fine-tuning budgets only
            (``ctrl_iterations`` of ``toy``, ``digits`` and the strength sweep), for a run
            whose baselines have flattened but whose CTRL curve still rises.

    Returns:
        The scaled copy (``config`` is not changed).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    for name, value in (("scale", scale), ("ctrl_scale", ctrl_scale)):
        if not value > 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    cfg = copy.deepcopy(config)
    for part in ("toy", "digits", "strength"):
        for key in cfg[part]:
            if key.endswith("_iterations"):
                factor = scale * (ctrl_scale if key == "ctrl_iterations" else 1.0)
                cfg[part][key] = max(1, round(cfg[part][key] * factor))
    return cfg


def toy_only(config: dict) -> dict:
    """A copy of ``config`` that runs no experiment on digits (a CPU-sized run).

    Args:
        config: from :func:`experiment_config` or :func:`reduced_config`.

    Returns:
        The copy, with ``sample_efficiency.digits_sizes`` empty and ``toy`` the only problem
        of ``sampling_cost`` and ``finetune_cost``.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    cfg = copy.deepcopy(config)
    cfg["sample_efficiency"]["digits_sizes"] = []
    for name in ("sampling_cost", "finetune_cost"):
        cfg[name]["problems"] = [p for p in cfg[name]["problems"] if p != "digits"]
    return cfg

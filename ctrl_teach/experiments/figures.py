"""Figures of the Chapter 8 experiments, drawn from the results dict / JSON (matplotlib).

Each function takes the part of :func:`~.run.run_all`'s result it plots (or the whole
result) and returns the ``matplotlib.figure.Figure``; nothing is recomputed, so chapter 8 can
load the benchmark's JSON and call them.
"""

from __future__ import annotations

__all__ = ["plot_sample_efficiency", "plot_dataset_construction", "plot_strength_sweep",
           "plot_sampling_cost", "plot_finetune_cost", "plot_all"]

_COLORS = {"ctrl": "C0", "cfg": "C1", "cg": "C2", "dps": "C3", "rejection": "C4",
           "pretrained": "0.5", "target": "k"}


def _part(results: dict, key: str) -> dict:
    return results[key] if key in results else results


def _plt():
    import matplotlib.pyplot as plt

    return plt


def plot_sample_efficiency(results: dict, metrics=("ed", "accuracy")):
    """Metric versus number of labelled examples ``N``, one panel per (problem, metric).

    Reference rows (``target``, ``pretrained``) are horizontal lines.

    Args:
        results: the results dict or its ``sample_efficiency`` part.
        metrics: the row keys to plot, one column of panels each.

    Returns:
        The ``matplotlib.figure.Figure``.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    plt = _plt()
    res = _part(results, "sample_efficiency")
    fig, axes = plt.subplots(len(res), len(metrics), figsize=(4.5 * len(metrics),
                                                              3.4 * len(res)), squeeze=False)
    for i, (prob, r) in enumerate(res.items()):
        for j, metric in enumerate(metrics):
            ax = axes[i][j]
            for method in dict.fromkeys(row["method"] for row in r["rows"]):
                pts = sorted((row["n_labelled"], row[metric]) for row in r["rows"]
                             if row["method"] == method)
                ax.plot(*zip(*pts), "o-", color=_COLORS.get(method), label=method)
            for ref in r["references"]:
                ax.axhline(ref[metric], ls="--", color=_COLORS.get(ref["method"]),
                           label=ref["method"])
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(_plt().NullFormatter())
            ax.set_xlabel("labelled examples N")
            ax.set_ylabel({"ed": "energy distance to target", "accuracy": "accuracy (truth)",
                           "diversity": "diversity / target's"}.get(metric, metric))
            if metric == "ed":
                ax.set_yscale("symlog", linthresh=1e-2)
            ax.set_title(prob)
    axes[0][-1].legend(fontsize=10)
    fig.tight_layout()
    return fig


def plot_dataset_construction(results: dict):
    """Bars of joint accuracy and energy distance per method and label budget.

    Args:
        results: the results dict or its ``dataset_construction`` part.

    Returns:
        The ``matplotlib.figure.Figure``: joint accuracy (left) and energy distance (right),
        one group of bars per budget, hatched bars for joint data.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    plt = _plt()
    res = _part(results, "dataset_construction")
    rows = res["rows"]
    budgets = sorted({r["budget"] for r in rows})
    series = list(dict.fromkeys((r["method"], r["data"]) for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    width = 0.8 / len(series)
    for k, (method, data) in enumerate(series):
        for ax, metric in zip(axes, ("accuracy", "ed")):
            vals = [next((r[metric] for r in rows if r["method"] == method and
                          r["data"] == data and r["budget"] == b), float("nan"))
                    for b in budgets]
            ax.bar([i + k * width for i in range(len(budgets))], vals, width,
                   color=_COLORS.get(method), alpha=1.0 if data == "separate" else 0.55,
                   hatch=None if data == "separate" else "//", label=f"{method} ({data})")
    for ax, label in zip(axes, ("joint accuracy (truth)", "energy distance to target")):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(budgets))])
        ax.set_xticklabels([f"B={b}" for b in budgets])
        ax.set_ylabel(label)
    axes[0].legend(fontsize=10)
    fig.suptitle("two attributes at equal labelling budget")
    fig.tight_layout()
    return fig


def plot_strength_sweep(results: dict):
    """Accuracy against distance to the target and against diversity, one curve per method
    (points labelled by the knob value).

    Args:
        results: the results dict or its ``strength`` part.

    Returns:
        The ``matplotlib.figure.Figure``: accuracy against energy distance (left) and against
        diversity (right).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    plt = _plt()
    res = _part(results, "strength")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for method in dict.fromkeys(r["method"] for r in res["rows"]):
        rows = [r for r in res["rows"] if r["method"] == method]
        for ax, xkey in zip(axes, ("ed", "diversity")):
            ax.plot([r[xkey] for r in rows], [r["accuracy"] for r in rows], "o-",
                    color=_COLORS.get(method), label=f"{method} ({rows[0]['knob']})")
            for r in rows:
                ax.annotate(f"{r['value']:g}", (r[xkey], r["accuracy"]), fontsize=9,
                            xytext=(3, 3), textcoords="offset points")
    axes[0].set_xscale("symlog", linthresh=1e-2)
    axes[0].set_xlabel("energy distance to p(x | c, y)")
    axes[1].set_xlabel("diversity / target's")
    for ax in axes:
        ax.set_ylabel("accuracy (truth)")
    axes[0].legend(fontsize=10)
    fig.tight_layout()
    return fig


def _per_problem_figure(res: dict, draw):
    """One row of two panels per problem: ``draw(axes_row, result)`` fills them, then each
    panel is titled ``"problem (device)"``."""
    fig, axes = _plt().subplots(len(res), 2, figsize=(10, 3.2 * len(res)), squeeze=False)
    for i, (prob, r) in enumerate(res.items()):
        draw(axes[i], r)
        for ax in axes[i]:
            ax.set_title(f"{prob} ({r['device']})")
    fig.tight_layout()
    return fig


def plot_sampling_cost(results: dict):
    """Network evaluations and wall time per 1000 samples per method (log scale).

    Args:
        results: the results dict or its ``sampling_cost`` part.

    Returns:
        The ``matplotlib.figure.Figure``, one row per problem: network evaluations per sample
        (left) and seconds per 1000 samples (right).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    def draw(axes, r):
        names = [row["method"] for row in r["rows"]]
        colors = [_COLORS.get(n, "C7") for n in names]
        axes[0].bar(names, [row["nfe_per_sample"] for row in r["rows"]], color=colors)
        axes[0].set_ylabel("network evaluations / sample")
        axes[1].bar(names, [row["seconds_per_1000"] for row in r["rows"]], color=colors)
        axes[1].set_ylabel("seconds / 1000 samples")
        for ax in axes:
            ax.set_yscale("log")
            ax.tick_params(axis="x", labelrotation=30)

    return _per_problem_figure(_part(results, "sampling_cost"), draw)


def plot_finetune_cost(results: dict):
    """Seconds per iteration and peak memory versus the number of steps ``K`` per mode.

    Args:
        results: the results dict or its ``finetune_cost`` part.

    Returns:
        The ``matplotlib.figure.Figure``, one row per problem, one curve per gradient mode.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    def draw(axes, r):
        for mode in dict.fromkeys(row["mode"] for row in r["rows"]):
            rows = sorted((row for row in r["rows"] if row["mode"] == mode),
                          key=lambda row: row["num_steps"])
            ks = [row["num_steps"] for row in rows]
            axes[0].plot(ks, [row["seconds_per_iteration"] for row in rows], "o-", label=mode)
            axes[1].plot(ks, [row["peak_memory_bytes"] / 2**20 for row in rows], "o-",
                         label=mode)
        axes[0].set_ylabel("seconds / iteration")
        axes[1].set_ylabel(f"MiB ({r['memory_method']})")
        for ax in axes:
            ax.set_xlabel("sampler steps K")
        axes[0].legend(fontsize=10)

    return _per_problem_figure(_part(results, "finetune_cost"), draw)


def plot_all(results: dict) -> dict:
    """Every figure whose data is present.

    Args:
        results: a results dict (:func:`~.run.run_all`, or its JSON read back).

    Returns:
        ``{experiment name: Figure}``.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    plots = {"sample_efficiency": plot_sample_efficiency,
             "dataset_construction": plot_dataset_construction,
             "strength": plot_strength_sweep, "sampling_cost": plot_sampling_cost,
             "finetune_cost": plot_finetune_cost}
    return {k: fn(results) for k, fn in plots.items() if k in results}

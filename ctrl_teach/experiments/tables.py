"""Plain-text tables of the Chapter 8 results (what the benchmark prints).

Introduced in: Chapter 8 (Experiments and error analysis).
"""

from __future__ import annotations

__all__ = ["format_tables", "format_sample_efficiency", "format_dataset_construction",
           "format_strength", "format_sampling_cost", "format_finetune_cost"]


def _f(v, fmt=".3f"):
    return "-" if v is None else format(v, fmt)


def _block(title: str, head: str, rows, line) -> str:
    """A table: ``title``, the column ``head``, then ``line(row)`` per row (and a newline)."""
    return "\n".join([title, head] + [line(row) for row in rows]) + "\n"


def _per_problem(res: dict, title, head: str, line) -> str:
    """One :func:`_block` per problem, titled ``title(problem, result)``."""
    return "\n".join(_block(title(prob, r), head, r["rows"], line) for prob, r in res.items())


def format_sample_efficiency(res: dict) -> str:
    """One block per problem: ED / accuracy / diversity per method and ``N``.

    Args:
        res: the ``sample_efficiency`` part of the results (keyed by problem).

    Returns:
        The table as text.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    blocks = []
    for prob, r in res.items():
        digits = any("c_accuracy" in row for row in r["rows"])
        head = f"{'method':10} {'N':>5} {'ED':>8} {'acc':>6} {'div':>6}" + (
            f" {'c-acc':>6}" if digits else "") + f" {'fit s':>7}"

        def line(row, digits=digits):
            return (f"{row['method']:10} {row['size'] if row['n_labelled'] else '-':>5} "
                    f"{row['ed']:8.4f} {row['accuracy']:6.3f} {row['diversity']:6.3f}"
                    + (f" {_f(row.get('c_accuracy')):>6}" if digits else "")
                    + f" {row['fit_seconds']:7.1f}")

        blocks.append(_block(f"(a) sample efficiency: {prob}", head,
                             r["references"] + r["rows"], line))
    return "\n".join(blocks)


def format_dataset_construction(res: dict) -> str:
    """Budget, method, data layout, ED and accuracies.

    Args:
        res: the ``dataset_construction`` part of the results (what
            :func:`~.dataset_construction.run_dataset_construction` returns).

    Returns:
        The table as text, one line per (budget, method, data layout).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    return _block(
        f"(b) dataset construction: {res['problem']} (two attributes, equal label budget)",
        f"{'budget':>6} {'method':6} {'data':9} {'points':>6} {'ED':>8} {'acc':>6} "
        f"{'acc1':>6} {'acc2':>6}", res["rows"],
        lambda r: f"{r['budget']:>6} {r['method']:6} {r['data']:9} {r['labelled_points']:>6} "
                  f"{r['ed']:8.4f} {r['accuracy']:6.3f} {r['accuracy_attr1']:6.3f} "
                  f"{r['accuracy_attr2']:6.3f}")


def format_strength(res: dict) -> str:
    """Method, knob value, ED, accuracy, diversity.

    Args:
        res: the ``strength`` part of the results (:func:`~.strength.run_strength_sweep`).

    Returns:
        The table as text, one line per (method, knob value).

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    return _block(
        f"(c) strength sweeps: {res['problem']} (N = {res['n_labelled']})",
        f"{'method':6} {'knob':>6} {'value':>6} {'ED':>8} {'acc':>6} {'div':>6}", res["rows"],
        lambda r: f"{r['method']:6} {r['knob']:>6} {r['value']:6.2f} {r['ed']:8.4f} "
                  f"{r['accuracy']:6.3f} {r['diversity']:6.3f}")


def format_sampling_cost(res: dict) -> str:
    """NFE and wall time per method, with ratios to CTRL.

    Args:
        res: the ``sampling_cost`` part of the results (keyed by problem).

    Returns:
        The table as text, one block per problem, one line per method.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    def line(row):
        name = row["method"] + (f" w={row['cfg_w']:g}" if row.get("cfg_w") else "")
        return (f"{name:10} {row['nfe_per_sample']:7.1f} {row['backward_per_sample']:5.0f} "
                f"{row['seconds_per_1000']:8.2f} {_f(row['nfe_ratio_to_ctrl'], '.2f'):>9} "
                f"{_f(row['time_ratio_to_ctrl'], '.2f'):>9}")

    return _per_problem(
        res, lambda prob, r: f"(d) sampling cost: {prob} (K = {r['num_steps']} steps, "
                             f"{r['n']} samples, {r['device']})",
        f"{'method':10} {'NFE':>7} {'bwd':>5} {'s/1000':>8} {'NFE/ctrl':>9} {'time/ctrl':>9}",
        line)


def format_finetune_cost(res: dict) -> str:
    """Seconds and memory per CTRL iteration versus K and gradient mode.

    Args:
        res: the ``finetune_cost`` part of the results (keyed by problem).

    Returns:
        The table as text, one block per problem, one line per (``K``, gradient mode); the
        mode of a truncated row shows its number of differentiated steps.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    def line(row):
        mode = row["mode"] + (f"({row['truncate_steps']})" if row.get("truncate_steps")
                              else "")
        return (f"{row['num_steps']:>4} {mode:12} {row['batch']:>5} "
                f"{row['seconds_per_iteration']:8.3f} {row['peak_memory_bytes'] / 2**20:9.2f} "
                f"{_f(row['time_ratio_to_full'], '.2f'):>7} "
                f"{_f(row['memory_ratio_to_full'], '.2f'):>8}")

    return _per_problem(
        res, lambda prob, r: f"(e) fine-tuning cost: {prob} ({r['device']}, "
                             f"memory = {r['memory_method']})",
        f"{'K':>4} {'mode':12} {'batch':>5} {'s/iter':>8} {'MiB':>9} {'t/full':>7} "
        f"{'mem/full':>8}", line)


def format_tables(results: dict) -> str:
    """All tables present in ``results``, in the order (a)-(e).

    Args:
        results: a results dict (:func:`~.run.run_all`, or its JSON read back), or a dict
            holding some of its experiments.

    Returns:
        The tables as text, one block per experiment.

    Introduced in: Chapter 8 (Experiments and error analysis).
    """
    parts = []
    if "sample_efficiency" in results:
        parts.append(format_sample_efficiency(results["sample_efficiency"]))
    if "dataset_construction" in results:
        parts.append(format_dataset_construction(results["dataset_construction"]))
    if "strength" in results:
        parts.append(format_strength(results["strength"]))
    if "sampling_cost" in results:
        parts.append(format_sampling_cost(results["sampling_cost"]))
    if "finetune_cost" in results:
        parts.append(format_finetune_cost(results["finetune_cost"]))
    return "\n".join(parts)

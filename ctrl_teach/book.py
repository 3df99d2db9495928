"""Helpers the chapters share: the measured-runtime box at the top of every chapter.

Runtimes are *measured*, never typed: ``tools/refresh_notebooks.py`` (``make notebooks``) times
each chapter as it executes it and records the wall time, the profile and the device in
``ctrl_teach/book_data/runtimes.json``; a GPU run (``CTRL_TEACH_PROFILE=full``) adds its own
entry. :func:`runtime_box` renders those records as the box readers see.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["RUNTIMES_FILE", "load_runtimes", "record_runtime", "runtime_box", "runtime_table"]

RUNTIMES_FILE = Path(__file__).with_name("book_data") / "runtimes.json"


def load_runtimes(path: Path = RUNTIMES_FILE) -> dict:
    """All records: ``{chapter: {"quick/cpu": {"seconds", "device", "date"}, ...}}``."""
    return json.loads(path.read_text()) if path.exists() else {}


def record_runtime(chapter: str, seconds: float, profile: str, device: str, date: str,
                   path: Path = RUNTIMES_FILE, load: float | None = None) -> None:
    """Store one measured chapter runtime under the key ``"<profile>/<device kind>"``.

    ``load``: the machine's 1-minute load average when the run ended (other jobs sharing
    the CPU inflate the time; the box reports it so a reader can tell).
    """
    records = load_runtimes(path)
    kind = "gpu" if str(device).startswith("cuda") else "cpu"
    records.setdefault(chapter, {})[f"{profile}/{kind}"] = {
        "seconds": round(float(seconds), 1), "device": str(device), "date": date,
        "load": None if load is None else round(float(load), 1)}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def _describe(entry: dict | None) -> str:
    if not entry:
        return "not measured yet"
    s = entry["seconds"]
    took = f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"
    load = entry.get("load")
    busy = f", shared CPU: load average {load}" if load is not None and load > 2.5 else ""
    return f"{took} ({entry['device']}, measured {entry['date']}{busy})"


def runtime_box(chapter: str):
    """Markdown box with the chapter's measured runtime, quick profile on CPU and full on GPU.

    Call it in a chapter's first code cell: ``runtime_box("05_ctrl_2d")``.
    """
    from IPython.display import Markdown

    records = load_runtimes().get(chapter, {})
    return Markdown(
        "**Runtime of this chapter** (executing every cell): "
        f"quick profile on a 2-core CPU: {_describe(records.get('quick/cpu'))}; "
        f"full profile on a GPU: {_describe(records.get('full/gpu'))}."
    )


def runtime_table():
    """Markdown table of every chapter's measured runtime (the appendix page "Runtimes")."""
    from IPython.display import Markdown

    lines = ["| chapter | quick profile, CPU | full profile, GPU |", "| --- | --- | --- |"]
    for chapter, records in sorted(load_runtimes().items()):
        lines.append(f"| `{chapter}` | {_describe(records.get('quick/cpu'))} | "
                     f"{_describe(records.get('full/gpu'))} |")
    return Markdown("\n".join(lines))

"""Grade submitted assignment notebooks: execute each, run the hidden checks, tabulate.

    python -m ctrl_teach.assignments.grade submissions/*.ipynb --csv grades.csv

For every notebook the grader

1. finds the assignment (``--assignment``, else the ``ctrl_teach.assignments`` module the
   notebook imports, else the file name ``aN_...``);
2. executes it top to bottom in a fresh kernel with ``allow_errors``: a cell that raises (a
   ``NotImplementedError`` left in place, a bug) is recorded and the next cell still runs;
3. runs one more cell in the same kernel that applies the assignment's *hidden* checks to the
   names the notebook defined (so editing the visible check cells changes nothing);
4. prints a per-question table and, with ``--csv``, writes one row per question.

Written questions (an assignment's ``MANUAL`` list, e.g. the proof of A6) are not graded
automatically: the report lists each with its points to award by hand, and says whether the
answer cell was filled in and how long the answer is. The rubric is in the solution notebook.

Student code runs with the grader's permissions: grade untrusted submissions in a container.
The hidden checks run in the student's kernel (they need the student's objects), with freshly
reloaded check modules; that stops accidental or casual tampering, not a determined attacker.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import ASSIGNMENTS
from ._grading import RESULT_MARKER

__all__ = ["GradeReport", "grade_notebook", "main"]

_IMPORT = re.compile(r"from\s+ctrl_teach\.assignments\s+import\s+(a\d+)\b|"
                     r"ctrl_teach\.assignments\.(a\d+)\b")


@dataclass
class GradeReport:
    """The grade of one notebook: per-question results and how the execution went."""

    notebook: str
    assignment: str
    results: list = field(default_factory=list)   # dicts from CheckResult.as_dict()
    cell_errors: list = field(default_factory=list)  # "cell N: ExcName: message"
    seconds: float = 0.0                           # wall time of execution + grading
    cpu_seconds: float = float("nan")              # CPU time of the kernel (Unix only)
    error: str = ""                                # set when grading itself failed
    manual: list = field(default_factory=list)     # written answers, graded by hand

    @property
    def points(self) -> float:
        return sum(r["points"] for r in self.results)

    @property
    def max_points(self) -> float:
        return sum(r["max_points"] for r in self.results)

    @property
    def manual_points(self) -> float:
        """Points of the written questions, to award by hand (not in :attr:`points`)."""
        return sum(r["max_points"] for r in self.manual)


def detect_assignment(nb, path: Path) -> str:
    """The assignment a notebook belongs to, from its imports or its file name."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            for m in _IMPORT.finditer(cell.source):
                name = m.group(1) or m.group(2)
                if name in ASSIGNMENTS:
                    return name
    m = re.match(r"(a\d+)_", path.name)
    if m and m.group(1) in ASSIGNMENTS:
        return m.group(1)
    raise ValueError(f"{path}: cannot tell which assignment this is; pass --assignment")


def _max_points(assignment: str) -> list[dict]:
    import importlib

    module = importlib.import_module(f"ctrl_teach.assignments.{assignment}")
    return [dict(question=q.id, name=q.name, points=0.0, max_points=float(q.points),
                 passed=False, message="") for q in module.QUESTIONS]


def _written_answers(assignment: str, nb) -> list[dict]:
    """One row per written question: where its answer is and how long it is."""
    import importlib

    module = importlib.import_module(f"ctrl_teach.assignments.{assignment}")
    rows = []
    for q in getattr(module, "MANUAL", []):
        cell = next((c for c in nb.cells if c.cell_type == "markdown"
                     and c.source.lstrip().startswith(q.anchor)), None)
        answer = "" if cell is None else cell.source.lstrip()[len(q.anchor):].strip()
        if cell is None:
            message = f"answer cell not found (it starts with {q.anchor!r}): grade by hand"
        elif not answer or answer == "YOUR ANSWER HERE":
            message = "unanswered (the answer cell still reads YOUR ANSWER HERE)"
        else:
            start = " ".join(answer.split())[:60]
            message = (f"grade by hand with the rubric in the solution notebook: "
                       f"{len(answer.split())} words, begins {start!r}")
        rows.append(dict(question=q.id, name="written answer", points=None,
                         max_points=float(q.points), passed=None, message=message))
    return rows


def _children_cpu() -> float:
    """CPU seconds used by finished child processes (the kernels), NaN where unsupported."""
    try:
        import resource
    except ImportError:  # Windows
        return float("nan")
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def grade_notebook(path, assignment: str | None = None, timeout: int = 600,
                   kernel_name: str = "python3") -> GradeReport:
    """Execute ``path`` and grade it; never raises for a broken submission."""
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError as exc:  # not dependencies of the package: the grader is for instructors
        raise ImportError("the grader needs nbformat, nbclient and ipykernel: "
                          "pip install nbformat nbclient ipykernel") from exc

    path = Path(path)
    start, cpu_start = time.perf_counter(), _children_cpu()
    try:
        nb = nbformat.read(path, as_version=4)
        assignment = assignment or detect_assignment(nb, path)
    except Exception as exc:  # noqa: BLE001
        return GradeReport(str(path), assignment or "?", error=f"cannot read notebook: {exc}")
    report = GradeReport(str(path), assignment)
    if assignment not in ASSIGNMENTS:
        report.error = f"unknown assignment {assignment!r} (one of {', '.join(ASSIGNMENTS)})"
        return report
    blank = _max_points(assignment)
    report.manual = _written_answers(assignment, nb)
    n_student = len(nb.cells)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import importlib as _ctrl_teach_il\n"
        "import ctrl_teach.assignments._grading as _ctrl_teach_grading\n"
        "_ctrl_teach_il.reload(_ctrl_teach_grading)"
        f".emit_grades({assignment!r}, globals())"))
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name, allow_errors=True,
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    try:
        client.execute()
    except Exception as exc:  # noqa: BLE001  (kernel died, timeout, ...)
        report.error = f"execution stopped: {type(exc).__name__}: {str(exc)[:300]}"
    for k, cell in enumerate(nb.cells[:n_student]):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                report.cell_errors.append(f"cell {k}: {out['ename']}: {out['evalue'][:200]}")
    graded = None
    for out in nb.cells[-1].get("outputs", []):
        text = out.get("text", "") if out.get("output_type") == "stream" else ""
        for line in text.splitlines():
            if line.startswith(RESULT_MARKER):
                graded = json.loads(line[len(RESULT_MARKER):])
        if out.get("output_type") == "error" and not report.error:
            report.error = f"grading cell failed: {out['ename']}: {out['evalue'][:300]}"
    if graded is None:
        msg = report.error or "grading produced no result"
        report.results = [{**r, "message": msg} for r in blank]
    else:
        report.results = graded
    report.seconds = time.perf_counter() - start
    report.cpu_seconds = _children_cpu() - cpu_start   # the kernel has exited by now
    return report


def format_table(reports: list[GradeReport]) -> str:
    """A plain-text table: notebook, question, points, message."""
    rows = [("notebook", "question", "points", "message")]
    for rep in reports:
        name = rep.notebook
        for r in rep.results:
            rows.append((name, r["question"], f"{r['points']:g}/{r['max_points']:g}",
                         r["message"]))
        for r in rep.manual:
            rows.append((name, r["question"], f"?/{r['max_points']:g}", r["message"]))
        by_hand = f" + {rep.manual_points:g} by hand" if rep.manual else ""
        rows.append((name, "TOTAL", f"{rep.points:g}/{rep.max_points:g}{by_hand}",
                     f"graded in {rep.seconds:.1f} s (kernel CPU {rep.cpu_seconds:.1f} s); "
                     f"{len(rep.cell_errors)} cell(s) raised"
                     + (f"; {rep.error}" if rep.error else "")))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:3], widths)) + "  " + row[3])
        if k == 0:
            lines.append("-" * (sum(widths) + 6 + 7))
    return "\n".join(lines)


def write_csv(reports: list[GradeReport], path) -> None:
    """One row per question and one ``TOTAL`` row per notebook."""
    fields = ["notebook", "assignment", "question", "name", "points", "max_points", "passed",
              "message", "seconds", "cpu_seconds"]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for rep in reports:
            for r in rep.results:
                w.writerow({"notebook": rep.notebook, "assignment": rep.assignment,
                            **{k: r[k] for k in ("question", "name", "points", "max_points",
                                                 "passed", "message")},
                            "seconds": f"{rep.seconds:.1f}",
                            "cpu_seconds": f"{rep.cpu_seconds:.1f}"})
            for r in rep.manual:            # graded by hand: points and passed left blank
                w.writerow({"notebook": rep.notebook, "assignment": rep.assignment,
                            "question": r["question"], "name": r["name"], "points": "",
                            "max_points": r["max_points"], "passed": "",
                            "message": r["message"], "seconds": "", "cpu_seconds": ""})
            w.writerow({"notebook": rep.notebook, "assignment": rep.assignment,
                        "question": "TOTAL", "name": "", "points": rep.points,
                        "max_points": rep.max_points,
                        "passed": rep.max_points > 0 and rep.points >= rep.max_points,
                        "message": rep.error or "; ".join(rep.cell_errors)[:500],
                        "seconds": f"{rep.seconds:.1f}", "cpu_seconds": f"{rep.cpu_seconds:.1f}"})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ctrl_teach.assignments.grade",
        description="Execute submitted assignment notebooks and grade them with the hidden "
                    "checks of ctrl_teach.assignments.")
    parser.add_argument("notebooks", nargs="+", help="submitted .ipynb files")
    parser.add_argument("--csv", help="write one row per question to this CSV file")
    parser.add_argument("--assignment", choices=ASSIGNMENTS,
                        help="assignment of every notebook (default: detected per notebook)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (600)")
    args = parser.parse_args(argv)
    # Student code and the checks run in one kernel each; keep them single-threaded unless
    # the caller chose otherwise (several graders in parallel then share the cores fairly).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    reports = []
    for nb_path in args.notebooks:
        rep = grade_notebook(nb_path, args.assignment, timeout=args.timeout)
        print(f"graded {nb_path}: {rep.points:g}/{rep.max_points:g} in {rep.seconds:.1f} s "
              f"(kernel CPU {rep.cpu_seconds:.1f} s)", file=sys.stderr)
        reports.append(rep)
    print(format_table(reports))
    if args.csv:
        write_csv(reports, args.csv)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

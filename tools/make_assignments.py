"""Generate the student and solution versions of the assignments from one source each.

    python tools/make_assignments.py            # (or: make assignments) write both versions
    python tools/make_assignments.py --check    # exit 1 if the committed student notebooks
                                                # differ from what the sources generate

Sources: ``notebooks/assignments/source/aN_name.ipynb``, authored once with the solution in
place, between nbgrader's markers inside code (or Markdown) cells::

    ### BEGIN SOLUTION
    ...the solution...
    ### END SOLUTION

    ### BEGIN HIDDEN TESTS
    ...checks only the solution version runs...
    ### END HIDDEN TESTS

* Student version (``notebooks/assignments/aN_name.ipynb``, committed, in the book and on
  Colab): each solution region becomes ``# YOUR CODE HERE`` + ``raise NotImplementedError()``
  at the indentation of its ``BEGIN`` line (Markdown: ``YOUR ANSWER HERE``), hidden-test
  regions are removed, outputs and execution metadata are cleared.
* Solution version (``_build/assignments/solutions/aN_name.ipynb``, not committed: it is a
  pure function of the committed source): the markers are removed and the code kept.

The markers are nbgrader's, so the sources also work with ``nbgrader generate_assignment``.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = ROOT / "notebooks" / "assignments" / "source"
STUDENT_DIR = ROOT / "notebooks" / "assignments"
SOLUTION_DIR = ROOT / "_build" / "assignments" / "solutions"

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
_MARKER = re.compile(r"^(\s*)(### (?:BEGIN|END) (?:SOLUTION|HIDDEN TESTS))\s*$")
# Cell metadata that only records an execution (timings, collapsed state): never kept.
_VOLATILE_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")


class MarkerError(ValueError):
    """A source cell has unbalanced or nested markers."""


def _regions(lines: list[str], where: str):
    """Yield ``(kind, indent, start, end)`` for each marked region (line indices)."""
    open_kind = None
    for i, line in enumerate(lines):
        m = _MARKER.match(line)
        if not m:
            continue
        indent, marker = m.groups()
        kind = "solution" if "SOLUTION" in marker else "hidden"
        if marker.startswith("### BEGIN"):
            if open_kind is not None:
                raise MarkerError(f"{where}: nested {marker!r} at line {i + 1}")
            open_kind, open_at, open_indent = kind, i, indent
        else:
            if open_kind != kind:
                raise MarkerError(f"{where}: {marker!r} without its BEGIN at line {i + 1}")
            yield kind, open_indent, open_at, i
            open_kind = None
    if open_kind is not None:
        raise MarkerError(f"{where}: {open_kind} region opened at line {open_at + 1} "
                          "is never closed")


def transform_source(source: str, cell_type: str, version: str, where: str = "cell") -> str:
    """The student or solution text of one cell's source."""
    lines = source.split("\n")
    out, pos = [], 0
    for kind, indent, start, end in _regions(lines, where):
        out += lines[pos:start]
        if version == "solution":
            out += lines[start + 1:end]
        elif kind == "solution":
            if cell_type == "code":
                out += [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError()"]
            else:
                out += ["YOUR ANSWER HERE"]
        pos = end + 1
    out += lines[pos:]
    return "\n".join(out)


def make_version(nb: nbformat.NotebookNode, version: str, name: str = "notebook"):
    """A cleaned copy of ``nb``: ``version`` is ``"student"`` or ``"solution"``."""
    if version not in ("student", "solution"):
        raise ValueError(f"version must be 'student' or 'solution', got {version!r}")
    nb = copy.deepcopy(nb)
    cells = []
    for k, cell in enumerate(nb.cells):
        where = f"{name}, cell {k}"
        if cell.cell_type == "raw":
            raise MarkerError(f"{where}: raw cells do not work on Colab; use code or Markdown")
        cell.source = transform_source(cell.source, cell.cell_type, version, where)
        for key in _VOLATILE_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if cell.source.strip() or cell.cell_type == "markdown":
            cells.append(cell)
    nb.cells = cells
    nb.metadata.pop("widgets", None)
    return nb


def _dumps(nb) -> str:
    return nbformat.writes(nb, version=4) + "\n"


def sources(source_dir: Path = SOURCE_DIR) -> list[Path]:
    """The assignment sources, ``aN_*.ipynb`` in order."""
    return sorted(source_dir.glob("a[0-9]*_*.ipynb"))


def generate(version: str, source_dir: Path = SOURCE_DIR) -> dict[str, str]:
    """``{file name: notebook text}`` of every assignment in ``version``."""
    texts = {}
    for path in sources(source_dir):
        nb = nbformat.read(path, as_version=4)
        out = make_version(nb, version, path.name)
        nbformat.validate(out)
        texts[path.name] = _dumps(out)
    return texts


def stale_student_notebooks(source_dir: Path = SOURCE_DIR,
                            student_dir: Path = STUDENT_DIR) -> list[str]:
    """Names of student notebooks that are missing or differ from a fresh generation."""
    stale = []
    for name, text in generate("student", source_dir).items():
        path = student_dir / name
        if not path.exists() or path.read_text() != text:
            stale.append(name)
    return stale


def write(version: str, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generate(version).items():
        path = out_dir / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="only compare the committed student notebooks with the sources")
    args = parser.parse_args(argv)
    if not sources():
        print(f"no sources in {SOURCE_DIR}", file=sys.stderr)
        return 1
    if args.check:
        stale = stale_student_notebooks()
        if stale:
            print("student notebooks out of date (run `make assignments`): " + ", ".join(stale))
            return 1
        print(f"{len(sources())} student notebooks up to date")
        return 0
    for version, out_dir in (("student", STUDENT_DIR), ("solution", SOLUTION_DIR)):
        for path in write(version, out_dir):
            print(f"{version:8s} {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Grading inside the kernel: run every question's hidden check on the student's namespace.

The grader (:mod:`ctrl_teach.assignments.grade`) executes a submitted notebook, then runs
one extra cell in the same kernel that calls :func:`emit_grades`. Because the checks run on
the names the student defined (``gaussian_kl``, ``reward``, ...), deleting or editing the
check cells in the notebook changes nothing about the grade.
"""

from __future__ import annotations

import json

from ._core import CheckResult

__all__ = ["grade_questions", "grader", "emit_grades", "RESULT_MARKER"]

RESULT_MARKER = "CTRL_TEACH_GRADES_JSON:"


def grade_questions(questions, namespace: dict, hidden: bool = True,
                    verbose: bool = True) -> list[CheckResult]:
    """One :class:`CheckResult` per question; a name the notebook never defined scores 0."""
    results = []
    for q in questions:
        if q.name not in namespace:
            res = CheckResult(q.id, q.name, 0.0, float(q.points),
                              f"`{q.name}` is not defined: did the cell that defines it run "
                              "without an error?")
            if verbose:
                print(res.line())
        else:
            res = q.check(namespace[q.name], hidden=hidden, verbose=verbose)
        results.append(res)
    return results


def grader(questions):
    """The ``grade(namespace, hidden=True, verbose=True)`` function of an assignment module.

    Args:
        questions: the module's list of :class:`~ctrl_teach.assignments._core.Question`.

    Returns:
        A function that runs :func:`grade_questions` on those questions.
    """

    def grade(namespace: dict, hidden: bool = True, verbose: bool = True) -> list[CheckResult]:
        """Run every question's check on the objects in ``namespace``.

        Args:
            namespace: the notebook's names (``globals()``), e.g. ``gaussian_kl``.
            hidden: run the grader's hidden variants (the default) or the visible ones.
            verbose: print one line per question.

        Returns:
            One :class:`~ctrl_teach.assignments._core.CheckResult` per question.
        """
        return grade_questions(questions, namespace, hidden=hidden, verbose=verbose)

    return grade


def emit_grades(assignment: str, namespace: dict) -> None:
    """Grade ``assignment`` on ``namespace`` (hidden variants) and print the JSON line."""
    import importlib

    # Fresh copies of the checks: a notebook that replaced a check function (say
    # `a1.check_kl = lambda *a, **k: ...`) does not grade itself with its replacement.
    from . import _core

    importlib.reload(_core)
    module = importlib.reload(importlib.import_module(f"ctrl_teach.assignments.{assignment}"))
    results = grade_questions(module.QUESTIONS, namespace, hidden=True, verbose=False)
    print(RESULT_MARKER + json.dumps([r.as_dict() for r in results]))

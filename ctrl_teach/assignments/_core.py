"""The machinery every assignment check shares: results, messages, hidden variants.

A *check* runs a student's function or object on inputs with a known answer and prints one
line a student can act on::

    [PASS] a1.q1  gaussian_kl  3/3  matches torch.distributions on 4 cases
    [FAIL] a1.q1  gaussian_kl  0/3  your values are exactly 2x the reference: ...

Checks never raise: an error in the student's code (``NotImplementedError`` included) is
caught and reported as a failed check, so a notebook keeps running and the grader keeps
grading. Each check has a *visible* variant (the inputs the student sees in the notebook)
and a *hidden* one (other seeds and shapes, ``hidden=True``), which the grader uses so that
an answer tuned to the visible inputs does not pass. The hidden inputs live in this package,
so they are hidden from casual view only, not secret from a student who reads the source.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass

__all__ = ["CheckResult", "CheckFailed", "Question", "run_check", "close", "describe_error"]


class CheckFailed(Exception):
    """Raised inside a check body to fail it with ``message`` (and optional partial credit)."""

    def __init__(self, message: str, partial: float = 0.0):
        super().__init__(message)
        self.message = message
        self.partial = float(partial)


@dataclass
class CheckResult:
    """Outcome of one check: question id, points out of ``max_points``, and the message."""

    question: str
    name: str
    points: float
    max_points: float
    message: str

    @property
    def passed(self) -> bool:
        return self.points >= self.max_points

    def line(self) -> str:
        tag = "PASS" if self.passed else ("PART" if self.points > 0 else "FAIL")
        return (f"[{tag}] {self.question}  {self.name}  "
                f"{_fmt(self.points)}/{_fmt(self.max_points)}  {self.message}")

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}

    def __str__(self) -> str:
        return self.line()

    def _ipython_display_(self):
        # The check already printed its line; a check call as the last line of a cell
        # should not print it a second time as the cell's value.
        pass


def _fmt(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class Question:
    """A graded question: ``check(student_object, hidden=...)`` on the namespace ``name``."""

    id: str
    name: str            # the variable / function name the student defines in the notebook
    points: float
    check: Callable      # check(obj, *, hidden=False, verbose=True) -> CheckResult
    summary: str


def describe_error(exc: BaseException) -> str:
    """One line about an exception raised by student code, pointing at their own frame."""
    if isinstance(exc, NotImplementedError):
        return ("not implemented yet: replace `raise NotImplementedError()` with your code "
                "and run the cell again")
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    for fr in reversed(frames):
        if "ctrl_teach" not in fr.filename.replace("\\", "/").split("/site-packages/")[-1]:
            where = f" (line {fr.lineno}: `{(fr.line or '').strip()}`)"
            break
    return f"your code raised {type(exc).__name__}: {exc}{where}"


def run_check(question: str, name: str, max_points: float, body: Callable[[], str],
              verbose: bool = True) -> CheckResult:
    """Run ``body()``; it returns the pass message or raises :class:`CheckFailed`.

    Any other exception (usually from the student's code) becomes a failed check with a
    message naming the exception; the check itself never raises.
    """
    try:
        message = body()
        points = max_points
    except CheckFailed as fail:
        message, points = fail.message, round(max_points * fail.partial, 2)
    except Exception as exc:  # noqa: BLE001  (student code may raise anything)
        message, points = describe_error(exc), 0.0
    result = CheckResult(question, name, float(points), float(max_points), message)
    if verbose:
        print(result.line())
    return result


def close(a: float, b: float, rtol: float = 1e-4, atol: float = 1e-6) -> bool:
    """``|a - b| <= atol + rtol |b|`` for finite floats."""
    return math.isfinite(a) and abs(a - b) <= atol + rtol * abs(b)

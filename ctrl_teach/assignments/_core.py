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

__all__ = ["CheckResult", "CheckFailed", "Question", "ManualQuestion", "run_check",
           "check_choices",
           "choice_check", "normalise_choice", "close", "describe_error"]


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


@dataclass(frozen=True)
class ManualQuestion:
    """A written question the instructor grades by hand with the rubric in the solution
    notebook. The grader finds the answer in the Markdown cell that starts with ``anchor`` and
    reports its length; it never gives points for it.
    """

    id: str
    points: float
    anchor: str          # the first line of the answer cell, e.g. "**Your proof (Q5).**"
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


_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six")


def normalise_choice(answer) -> str:
    """An answer as compared: stripped, lower-case, without hyphens (``fine-tuning``)."""
    return str(answer).strip().lower().replace("-", "")


def check_choices(question: str, name: str, max_points: float, answers,
                  expected: dict, verbose: bool = True) -> CheckResult:
    """Grade a multiple-choice dict: an equal share of the points per right answer.

    Args:
        question: the question id, e.g. ``"a3.q4"``.
        name: the variable the student defines (``"answers"``).
        max_points: points for all answers right.
        answers: the student's dict ``{key: one word}``.
        expected: ``{key: (right answer, hint for a wrong one)}``; the right answers are given
            normalised (:func:`normalise_choice`), the hints point at the evidence, not at the
            answer.
        verbose: print the result line.

    Returns:
        A :class:`CheckResult`; each wrong or missing key is named with its hint.
    """

    def body():
        if not isinstance(answers, dict):
            keys = ", ".join(f"{k!r}: ..." for k in expected)
            raise CheckFailed(f"`{name}` must be a dict like {{{keys}}}")
        wrong = []
        for key, (want, hint) in expected.items():
            got = normalise_choice(answers.get(key, ""))
            if got != want:
                wrong.append(f"{key}: {'missing' if not got else repr(got)} is not it ({hint})")
        count = len(expected)
        if wrong:
            raise CheckFailed("; ".join(wrong), partial=(count - len(wrong)) / count)
        return f"all {_NUMBER_WORDS[count] if count < len(_NUMBER_WORDS) else count} readings right"

    return run_check(question, name, max_points, body, verbose)


def choice_check(question: str, max_points: float, expected: dict, introduced: str,
                 name: str = "answers") -> Callable:
    """The ``check_answers(answers, *, hidden=False, verbose=True)`` of a multiple-choice
    question, graded by :func:`check_choices` (the questions have no hidden variant).

    Args:
        question: the question id, e.g. ``"a3.q4"``.
        max_points: points for all answers right.
        expected: ``{key: (right answer, hint for a wrong one)}``.
        introduced: the chapter, for the docstring's ``Introduced in:`` line.
        name: the variable the student defines.

    Returns:
        The check function.
    """

    def check_answers(answers, *, hidden: bool = False, verbose: bool = True) -> CheckResult:
        return check_choices(question, name, max_points, answers, expected, verbose)

    check_answers.__doc__ = f"""Check the multiple-choice ``{name}`` dict of {question}: an equal
    share of the {max_points:g} points per right answer (see :func:`check_choices`).

    Args:
        answers: the student's dict ``{{key: one word}}`` with the keys {", ".join(expected)}.
        hidden: accepted for the common check signature; there is one variant.
        verbose: print the result line.

    Returns:
        A :class:`CheckResult`.

    Introduced in: {introduced}
    """
    return check_answers


def close(a: float, b: float, rtol: float = 1e-4, atol: float = 1e-6) -> bool:
    """``|a - b| <= atol + rtol |b|`` for finite floats."""
    return math.isfinite(a) and abs(a - b) <= atol + rtol * abs(b)

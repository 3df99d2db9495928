"""Course assignments: autograded checks and the grader (see notebooks/assignments/index.md).

One module per assignment, each with visible checks a student runs in the notebook and
hidden variants the grader uses (``python -m ctrl_teach.assignments.grade``):

* :mod:`.a1` (Chapter 3): the per-step Gaussian KL and the path KL of a controlled chain;
* :mod:`.a2` (Chapter 5): a CTRL fine-tuning loop with the control in noise units, judged by
  the certificate gap ``alpha log Z - J`` on a 1-D Gaussian;
* :mod:`.a3` (Chapter 5): a reward classifier, its calibration and reliability diagram;
* :mod:`.a4` (Chapter 8): a small sample-efficiency experiment, CTRL against rejection
  sampling and the pre-trained model as the offline dataset grows.

Usage in a notebook: ``from ctrl_teach.assignments import a1; a1.check_kl(gaussian_kl)``.
"""

ASSIGNMENTS = ("a1", "a2", "a3", "a4")

__all__ = ["ASSIGNMENTS"]


def __getattr__(name):  # PEP 562: `from ctrl_teach.assignments import a1` imports lazily
    if name in ASSIGNMENTS:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

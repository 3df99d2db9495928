"""Course assignments: autograded checks and the grader (see notebooks/assignments/index.md).

One module per assignment, each with visible checks a student runs in the notebook and
hidden variants the grader uses (``python -m ctrl_teach.assignments.grade``):

* :mod:`.a1` (Chapter 3): the per-step Gaussian KL and the path KL of a controlled chain;
* :mod:`.a2` (Chapter 5): a CTRL fine-tuning loop with the control in noise units, judged by
  the certificate gap ``alpha log Z - J`` on a 1-D Gaussian;
* :mod:`.a3` (Chapter 5): a reward classifier, its calibration and reliability diagram;
* :mod:`.a4` (Chapter 8): a small sample-efficiency experiment, CTRL against rejection
  sampling and the pre-trained model as the offline dataset grows;
* :mod:`.a5` (Chapter 2): classifier guidance in both forms and classifier-free guidance,
  checked against an exact posterior on the ring of the 2-D toy;
* :mod:`.a6` (Chapter 4): the soft value, the soft Bellman recursion, the optimal control and
  the certificate in closed form, and a proof graded by hand (``MANUAL``);
* :mod:`.a7` (Chapter 6): two classifiers from disjoint datasets, the product reward, a test
  of conditional independence, and one fine-tuned model for four label pairs.

Usage in a notebook: ``from ctrl_teach.assignments import a1; a1.check_kl(gaussian_kl)``.
"""

ASSIGNMENTS = ("a1", "a2", "a3", "a4", "a5", "a6", "a7")

__all__ = ["ASSIGNMENTS"]


def __getattr__(name):  # PEP 562: `from ctrl_teach.assignments import a1` imports lazily
    if name in ASSIGNMENTS:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Shared pytest setup for the unit tests.

Unit tests run in the ``quick`` profile (small sizes, CPU budgets) unless the caller already
chose one, and torch uses at most two threads, the size of the CI machine.
"""

import os

os.environ.setdefault("CTRL_TEACH_PROFILE", "quick")

import torch  # noqa: E402  (the profile must be set before any ctrl_teach import)

torch.set_num_threads(min(2, torch.get_num_threads()))


def pytest_collection_modifyitems(config, items):
    """Start the files that hold a ``slow`` test first (stable order otherwise).

    ``make test`` runs ``pytest -n 2 --dist loadfile --no-loadscope-reorder``: files go to the
    two workers in this order, so a file that takes minutes must not be the last one handed
    out (one worker would then run it alone while the other idles).
    """
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)

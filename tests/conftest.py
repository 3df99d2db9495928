"""Shared pytest setup for the unit tests.

Unit tests run in the ``quick`` profile (small sizes, CPU budgets) unless the caller already
chose one, and torch uses at most two threads, the size of the CI machine.
"""

import os

os.environ.setdefault("CTRL_TEACH_PROFILE", "quick")

import torch  # noqa: E402  (the profile must be set before any ctrl_teach import)

torch.set_num_threads(min(2, torch.get_num_threads()))

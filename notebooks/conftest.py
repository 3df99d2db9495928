"""pytest setup for the notebooks under nbval: retry a kernel that dies at start-up.

nbval starts one Jupyter kernel per notebook. jupyter_client picks the kernel's five
TCP ports by binding port 0 and releasing it; the kernel binds them a moment later.
Under pytest-xdist a second worker (or any outgoing connection) can take one of those
ports in between; the kernel then exits with "Address already in use" and nbval
reports every cell of that notebook as "Kernel died before replying to kernel_info"
(it discards the kernel's stderr). A fresh start picks fresh ports, so a failed start
is retried a few times before it counts.
"""

import json
import logging
import time
from pathlib import Path

import nbval.kernel

logger = logging.getLogger("nbval")

KERNEL_START_ATTEMPTS = 3


def with_retries(start, attempts=KERNEL_START_ATTEMPTS, pause_s=1.0):
    """Wrap a kernel starter so that a ``RuntimeError`` at start-up is retried.

    ``start`` is called with the same arguments up to ``attempts`` times; the last
    error is raised if every attempt fails.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")

    def start_with_retries(*args, **kwargs):
        for attempt in range(1, attempts + 1):
            try:
                return start(*args, **kwargs)
            except RuntimeError as error:
                if attempt == attempts:
                    raise
                logger.warning(
                    "kernel start %d of %d failed (%s); retrying",
                    attempt, attempts, error,
                )
                time.sleep(pause_s)

    start_with_retries.__wrapped__ = start
    return start_with_retries


def pytest_configure(config):
    # RunningKernel looks start_new_kernel up in nbval.kernel's globals at call time.
    if not hasattr(nbval.kernel.start_new_kernel, "__wrapped__"):
        nbval.kernel.start_new_kernel = with_retries(nbval.kernel.start_new_kernel)


def pytest_collection_modifyitems(config, items):
    """Start the longest notebooks first (their last recorded quick runtime).

    Under ``make test`` notebooks go to the two xdist workers in this order
    (``--no-loadscope-reorder``), so the long ones do not end up running alone at
    the end. Runtimes come from ``ctrl_teach/book_data/runtimes.json``; a notebook
    without a record (the assignments) counts as short.
    """
    path = Path(__file__).resolve().parents[1] / "ctrl_teach/book_data/runtimes.json"
    runtimes = json.loads(path.read_text()) if path.exists() else {}

    def seconds(item):
        record = runtimes.get(item.path.stem, {}).get("quick/cpu", {})
        return -record.get("seconds", 0.0)

    items.sort(key=seconds)

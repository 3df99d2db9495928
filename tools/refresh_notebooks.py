"""Re-execute chapter notebooks, keep only the checked outputs, record the measured runtime.

    python tools/refresh_notebooks.py notebooks/01_diffusion.ipynb [...]   (or: make notebooks)
    python tools/refresh_notebooks.py --full-copy DIR notebooks/...  (also keep every output,
        as DIR/<name>.ipynb, to read the cells whose outputs are dropped)

nbval (``make test``) compares the outputs of cells tagged ``nbval-check-output`` with the
outputs stored in the notebook, so those must be committed. Every other output (figures
above all) is dropped: the book re-executes every chapter when it is built, and stripping
keeps the repository small and its diffs readable.

The chapter's wall time is stored in ``ctrl_teach/book_data/runtimes.json`` under the current
profile and device (``CTRL_TEACH_PROFILE``, default quick; on a GPU machine run it with
``CTRL_TEACH_PROFILE=full`` to record the full-profile time). The runtime box at the top of each
chapter (:func:`ctrl_teach.book.runtime_box`) shows these records.
Only a quick-profile run rewrites the notebook: the stored outputs nbval checks are quick ones.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ctrl_teach.book import record_runtime  # noqa: E402
from ctrl_teach.profiles import default_device  # noqa: E402

CHECK_TAG = "nbval-check-output"


def refresh(path: str, full_copy: str | None = None) -> None:
    nb = nbformat.read(path, as_version=4)
    profile = os.environ.setdefault("CTRL_TEACH_PROFILE", "quick")
    os.environ.setdefault("CTRL_TEACH_PROGRESS", "0")   # no progress bars in stored outputs
    start = time.perf_counter()
    NotebookClient(nb, timeout=1800, kernel_name="python3",
                   resources={"metadata": {"path": os.path.dirname(path) or "."}}).execute()
    seconds = time.perf_counter() - start
    if full_copy:
        os.makedirs(full_copy, exist_ok=True)
        nbformat.write(nb, os.path.join(full_copy, Path(path).name))
    record_runtime(Path(path).stem, seconds, profile, str(default_device()),
                   datetime.date.today().isoformat(), load=os.getloadavg()[0])
    if profile == "quick":
        for cell in nb.cells:
            if cell.cell_type == "code" and CHECK_TAG not in cell.metadata.get("tags", []):
                cell.outputs, cell.execution_count = [], None
        nbformat.write(nb, path)
    print(f"refreshed {path} ({profile}, {seconds:.0f} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", help="chapter notebooks to re-execute")
    parser.add_argument("--full-copy", metavar="DIR", default=None,
                        help="also write each executed notebook, every output kept, to DIR")
    args = parser.parse_args()
    for arg in args.notebooks:
        refresh(arg, args.full_copy)

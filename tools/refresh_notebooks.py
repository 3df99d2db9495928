"""Re-execute chapter notebooks in the quick profile and keep only the checked outputs.

    python tools/refresh_notebooks.py notebooks/01_diffusion.ipynb [...]   (or: make notebooks)

nbval (``make test``) compares the outputs of cells marked ``# NBVAL_CHECK_OUTPUT`` with the
outputs stored in the notebook, so those must be committed. Every other output (figures
above all) is dropped: the book re-executes every chapter when it is built, and stripping
keeps the repository small and its diffs readable.
"""

from __future__ import annotations

import os
import sys

import nbformat
from nbclient import NotebookClient

CHECK_MARK = "NBVAL_CHECK_OUTPUT"


def refresh(path: str) -> None:
    nb = nbformat.read(path, as_version=4)
    os.environ["CTRL_TEACH_PROFILE"] = "quick"
    NotebookClient(nb, timeout=1800, kernel_name="python3",
                   resources={"metadata": {"path": os.path.dirname(path) or "."}}).execute()
    for cell in nb.cells:
        if cell.cell_type == "code" and not cell.source.lstrip().startswith(f"# {CHECK_MARK}"):
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, path)
    print(f"refreshed {path}")


if __name__ == "__main__":
    for arg in sys.argv[1:] or sys.exit(__doc__):
        refresh(arg)

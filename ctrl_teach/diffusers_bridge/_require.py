"""The optional dependencies of :mod:`ctrl_teach.diffusers_bridge` (diffusers, peft).

The core library never imports them; every function of the bridge calls :func:`require`
first, so a missing package is reported with the command that installs it.
"""

from __future__ import annotations

import importlib

INSTALL_HINT = 'pip install "ctrl-teach[diffusers]"'


def require(*modules: str):
    """Import ``modules`` (e.g. ``"diffusers"``, ``"peft"``) or raise a clear ``ImportError``.

    Args:
        modules: top-level module names.

    Returns:
        The imported modules, in order (a single module if one name is given).

    Introduced in: Chapter 10 (CTRL on a real diffusion model).
    """
    out = []
    for name in modules:
        try:
            out.append(importlib.import_module(name))
        except ImportError as err:
            raise ImportError(
                f"ctrl_teach.diffusers_bridge needs the optional package {name!r}, which is not "
                f"installed. Install the extra with: {INSTALL_HINT} (the tested versions are "
                f"pinned in requirements.txt)") from err
    return out[0] if len(out) == 1 else tuple(out)

"""Links from the chapters' API roles to the API reference, under the names readers use.

The chapters name library objects the way a user imports them, e.g.
``{class}`~ctrl_teach.ctrl.RewardFit``` or ``{func}`~ctrl_teach.diffusion.time_embedding```,
while ``book/api.md`` documents each object once, in the module that defines it
(``ctrl_teach.ctrl.calibration.RewardFit``). Sphinx would render such a role as plain code with no
link. Before Sphinx resolves references, this extension rewrites every ``ctrl_teach.*`` target to
the documented name of its object: it imports the object, reads its defining module and
qualified name, and keeps any tail it cannot import (a dataclass field). So a re-exported name
links to its entry, and a role for the function ``ctrl_teach.ctrl.finetune`` links to the
function, not to the module of the same name. A ``ctrl_teach.*`` reference outside the API page
that still has no entry (a typo, a renamed function, an object api.md leaves out) is reported as
a warning, which fails ``make book`` (``-W``).
"""

from __future__ import annotations

import importlib
import inspect

from sphinx import addnodes
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging

logger = logging.getLogger(__name__)


def _lookup(target: str):
    """(object, tail it could not reach) that ``target`` names.

    Walks the dotted path by attribute first, the way a user's import sees it (so the
    package's ``finetune`` is the function, not the submodule of that name), and imports a
    submodule only where no attribute exists yet.
    """
    parts = target.split(".")
    try:
        obj = importlib.import_module(parts[0])
    except ImportError:
        return None, []
    for k in range(1, len(parts)):
        if hasattr(obj, parts[k]):
            obj = getattr(obj, parts[k])
            continue
        if inspect.ismodule(obj):
            try:
                obj = importlib.import_module(".".join(parts[: k + 1]))
                continue
            except ImportError:
                pass
        return obj, parts[k:]                     # e.g. a dataclass field: no class attribute
    return obj, []


def canonical_name(target: str) -> str | None:
    """The documented name of the object ``target`` names, or None if it names nothing.

    ``ctrl_teach.ctrl.RewardFit`` -> ``ctrl_teach.ctrl.calibration.RewardFit``; a method or a
    dataclass field keeps its tail (``...CertificateMonitor.stopping_rule``).
    """
    obj, tail = _lookup(target)
    if obj is None:
        return None
    if inspect.ismodule(obj):
        base = obj.__name__
    else:
        module = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", None)
        if not module or not qualname:
            return None
        base = f"{module}.{qualname}"
    return ".".join([base, *tail])


class CanonicalTargets(SphinxPostTransform):
    """Rewrite each ``ctrl_teach.*`` reference to the documented name of its object.

    Runs before Sphinx resolves references (priority 10), so a ``func`` role never lands on a
    module that happens to share the function's name.
    """

    default_priority = 5

    def run(self, **kwargs):
        for node in self.document.findall(addnodes.pending_xref):
            target = node.get("reftarget", "")
            if node.get("refdomain") == "py" and target.startswith("ctrl_teach"):
                name = canonical_name(target)
                if name:
                    node["reftarget"] = name


def _warn_unresolved(app, env, node, contnode):
    """A chapter's ``ctrl_teach.*`` reference with no API entry: a warning (fails -W)."""
    target = node.get("reftarget", "")
    if (node.get("refdomain") == "py" and target.startswith("ctrl_teach")
            and not node.get("refdoc", "").endswith("api")):
        logger.warning(f"API reference {target!r} ({node['reftype']} role) has no entry in "
                       "book/api.md: fix the name or document the object",
                       location=node, type="api_links")
    return None


def setup(app):
    app.add_post_transform(CanonicalTargets)
    app.connect("missing-reference", _warn_unresolved)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

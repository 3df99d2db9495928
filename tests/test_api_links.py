"""book/_ext/api_links.py: the chapters' API roles link to the entries of the API reference.

A tiny Sphinx project documents two modules the way book/api.md does (in the module that
defines each object) and refers to them the way the chapters do (re-exported names): every role
must become a link to its entry, a ``func`` role must not land on the module of the same name,
and a name with no entry must be a warning (which fails ``make book``'s ``-W``).
"""

import sys
from pathlib import Path

import pytest

sphinx_app = pytest.importorskip("sphinx.application")

EXT = Path(__file__).resolve().parents[1] / "book" / "_ext"

API = """API
===

.. automodule:: ctrl_teach.ctrl.finetune
   :members: finetune

.. automodule:: ctrl_teach.ctrl.calibration
   :members: RewardFit
"""

CHAPTER = """Chapter
=======

See :class:`~ctrl_teach.ctrl.RewardFit`, :func:`~ctrl_teach.ctrl.finetune` and
:func:`ctrl_teach.ctrl.no_such_function`.
"""


def test_api_roles_link_to_their_entries(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(EXT)!r})\n"
        "extensions = ['sphinx.ext.autodoc', 'sphinx.ext.napoleon', 'api_links']\n"
        "root_doc = 'index'\n")
    (src / "index.rst").write_text("Root\n====\n\n.. toctree::\n\n   api\n   chapter\n")
    (src / "api.rst").write_text(API)
    (src / "chapter.rst").write_text(CHAPTER)
    warnings = []

    class Stream:
        def write(self, text):
            warnings.append(text)

        def flush(self):
            pass

    out = tmp_path / "html"
    app = sphinx_app.Sphinx(str(src), str(src), str(out), str(tmp_path / "doctrees"), "html",
                            status=None, warning=Stream(), freshenv=True)
    app.build()
    html = (out / "chapter.html").read_text()
    assert 'href="api.html#ctrl_teach.ctrl.calibration.RewardFit"' in html
    assert 'href="api.html#ctrl_teach.ctrl.finetune.finetune"' in html     # not #module-...
    text = "".join(warnings)
    assert "ctrl_teach.ctrl.no_such_function" in text and "no entry in book/api.md" in text
    assert "RewardFit" not in text.replace("no_such_function", "")
    sys.modules.pop("api_links", None)

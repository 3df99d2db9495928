"""tools/check_rendered_book.py finds each defect class on a page that shows it, and nothing
on a clean page.

The pages are tests/fixtures/render/<kind>[-<variant>].html: minimal HTML with Jupyter Book's
structure and CSS classes, the book's own MathJax (book/_static/mathjax, no network) and a
small stylesheet with the theme's layout rules (about 750 px column, scrolling code boxes).
The static checks (progress spam, pipe tables, raw TeX, MathJax errors in a typeset DOM,
scaffolding, chapter without figure) run without a browser; the layout checks (clipped
equations, cut code and output, missing and tiny images, MathJax errors and MathJax not
loaded) need headless Chromium and are skipped without it. Each page is checked as a chapter
(it must show a figure), so every fixture except the missing-image ones carries one.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "render"


def _load_tool():
    spec = importlib.util.spec_from_file_location("check_rendered_book",
                                                  ROOT / "tools" / "check_rendered_book.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


crb = _load_tool()

PAGES = sorted(FIXTURES.glob("*.html"))
# The fixtures whose defect the static checks see in the HTML file itself.
STATIC = {"clean", "progress", "pipe_table", "raw_tex", "scaffolding", "mathjax_error-dom",
          "missing_image-nofigure", "dead_link"}


def expected(page: Path) -> set[str]:
    kind = page.stem.split("-")[0]
    return set() if kind == "clean" else {kind}


def as_page(path: Path) -> crb.Page:
    return crb.Page(path.stem, path, chapter=True)


def test_every_defect_class_has_a_fixture():
    kinds = {p.stem.split("-")[0] for p in PAGES}
    assert set(crb.KINDS) - {"error"} <= kinds
    assert "clean" in kinds
    assert STATIC <= {p.stem for p in PAGES}


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_static_checks(path):
    """Without a browser: exactly the fixture's class for the static fixtures, nothing for
    the fixtures whose defect needs a layout or MathJax."""
    res = crb.PageResult(as_page(path))
    crb.static_checks(path.read_text(encoding="utf-8"), res, typeset=None)
    want = expected(path) if path.stem in STATIC else set()
    assert res.kinds == want, res.line()


def test_static_examples_name_the_defect():
    res = crb.PageResult(as_page(FIXTURES / "raw_tex.html"))
    crb.static_checks((FIXTURES / "raw_tex.html").read_text(), res)
    assert "\\sqrt{\\alpha_t}" in res.examples["raw_tex"][0]
    res = crb.PageResult(as_page(FIXTURES / "progress.html"))
    crb.static_checks((FIXTURES / "progress.html").read_text(), res)
    assert res.counts["progress"] == 6 and "training" in res.examples["progress"][0]
    res = crb.PageResult(as_page(FIXTURES / "mathjax_error-dom.html"))
    crb.static_checks((FIXTURES / "mathjax_error-dom.html").read_text(), res, typeset=True)
    assert res.examples["mathjax_error"] == ["Missing close brace: \\frac{1}{1 + e^{-x}"]


def test_progress_rule_allows_one_final_line_per_loop():
    html = ("<article class='bd-article'><div class='cell'><div class='cell_output'>"
            + "".join(f"<div class='output stderr'><pre>{name}: 100%|##########| 50/50 "
                      f"[00:01&lt;00:00, 40.0it/s]</pre></div>" for name in ("a", "b", "c"))
            + "<div class='output stream'><pre>K  s/iter  0.1</pre></div></div></div></article>")
    res = crb.PageResult(crb.Page("p", Path("p.html")))
    crb.static_checks(html, res)
    assert res.kinds == set(), res.line()


def test_toc_pages_cover_the_book():
    pages = crb.select_pages(ROOT / "_build" / "html", ROOT / "_toc.yml", None)
    names = [p.name for p in pages]
    assert names[0] == "index" and len(names) == len(set(names))
    assert all(p.html.suffix == ".html" for p in pages)
    chapters = [p.name for p in pages if p.chapter]
    assert chapters and all(n[:2].isdigit() for n in chapters)
    assert "assignments-index" in names and "notation" in names


def test_cli_exit_status_without_browser(tmp_path, capsys):
    args = ["--build", str(FIXTURES), "--toc", str(ROOT / "_toc.yml"), "--out", str(tmp_path),
            "--no-browser", "--pages"]
    assert crb.main(args + [str(FIXTURES / "clean.html")]) == 0
    assert crb.main(args + [f"{FIXTURES / 'progress.html'},{FIXTURES / 'clean.html'}"]) == 1
    out = capsys.readouterr().out
    assert "progress: progress 6" in out and "clean: ok" in out
    assert (tmp_path / "render-report.json").exists()


@pytest.fixture(scope="module")
def browser_results(tmp_path_factory):
    binary = crb.find_chromium(install=False)
    if binary is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium): "
                    "the layout checks need a browser")
    out = tmp_path_factory.mktemp("screenshots")
    t0 = time.time()
    results = crb.check_pages([as_page(p) for p in PAGES], out, binary)
    print(f"{len(PAGES)} fixture pages in {time.time() - t0:.1f} s")
    return {r.page.name: r for r in results}, out


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_browser_finds_exactly_the_fixture_defect(browser_results, path):
    results, out = browser_results
    res = results[path.stem]
    assert res.kinds == expected(path), res.line()
    shot = out / f"{path.stem}.png"
    assert shot.exists() and shot.stat().st_size > 2000


def test_browser_examples_locate_the_defect(browser_results):
    results, _ = browser_results
    assert results["clipped_equation"].examples["clipped_equation"][0].startswith("(1.4)")
    assert "result = train(" in results["wide_code"].examples["wide_code"][0]
    assert "34%" in results["tiny_figure"].examples["tiny_figure"][0]
    assert "no-such-figure.png" in results["missing_image"].examples["missing_image"][0]
    assert "MathJax not loaded" in results["mathjax_error-notloaded"].examples[
        "mathjax_error"][0]
    assert "\\left" in results["mathjax_error"].examples["mathjax_error"][0]

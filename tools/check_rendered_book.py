"""Check every page of the built book in headless Chromium for the defects a reader sees.

    python tools/check_rendered_book.py [--build _build/html] [--out _build/screenshots]
                                        [--pages a,b] [--no-screenshots] [--no-browser]
    (or: make check-render, after make book)

Every page listed in ``_toc.yml`` (``--pages`` picks some: ``01_diffusion``,
``notebooks/01_diffusion`` or a path to an HTML file) is opened in headless Chromium at a
1280 px wide viewport, driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``,
standard library only), with every http(s) request blocked: the page must render from the
build's own files (MathJax from a CDN would count as not loaded). On each page the dropdowns
(exercise solutions) and ``<details>`` are opened, MathJax is awaited
(``MathJax.startup.promise``), the fonts and images are awaited, and a script measures the
layout. The DOM after typesetting is then read back and checked
statically. A defect of any class fails the page:

``progress``          progress-bar spam: a tqdm bar that shows more than one state in a cell
                      (the same bar, i.e. description and total, on two or more lines or in two
                      output boxes), more than three output boxes with bar text in one cell, or
                      a raw carriage return in bar text. One final line per loop is fine.
``pipe_table``        Markdown pipe-table text (``| a | b |`` with a ``|---|`` rule) in a
                      paragraph or an output box instead of a ``<table>``.
``raw_tex``           TeX visible as text outside MathJax's output: ``$$``, ``\\(``, ``\\frac``,
                      ``\\mathbb``, ``\\alpha``, ``$x_t$`` ... in prose or outputs (code is
                      not checked), and formulas MathJax left untypeset. (ASCII maths such as
                      ``sqrt(abar_{t'})`` in docstrings is not TeX and passes.)
``mathjax_error``     ``mjx-merror`` (a TeX error MathJax shows in red) or MathJax not loaded.
``clipped_equation``  a display equation (``mjx-container[display]``) wider than its box
                      (``scrollWidth > clientWidth``) or reaching past the content column or a
                      clipping box (theorem, proof, admonition).
``wide_code``         a code box (cell input or literal block) whose lines are cut: the
                      ``<pre>`` scrolls; the lines longer than the visible columns are counted.
``wide_output``       an output box (``<pre>`` in ``.cell_output``) whose lines are cut, or a
                      table anywhere whose right part is hidden.
``missing_image``     an ``<img>`` in the article that did not load (``naturalWidth == 0``), or a
                      chapter (a numbered part of ``_toc.yml``) without any figure.
``tiny_figure``       a figure shown so small that its text is below ``MIN_FIGURE_TEXT_PX``:
                      Matplotlib's default text is 10 pt, i.e. ``10/72 * dpi`` image pixels (the
                      dpi is read from the PNG's pHYs chunk, 100 for this book; 96 for SVG), so
                      the displayed text height is ``10/72 * dpi * shown/natural width``.
                      The threshold 8.3 px is 60 % of the 13.9 px such text has at 100 dpi and
                      full size, about half the 16 px body text; below it axis labels and tick
                      numbers are hard to read (the issue measured about 6 px at 43-49 %).
``dead_link``         an API role (``{func}``, ``{class}``, ... rendered as ``code.xref``) that
                      is plain code instead of a link to the API page, i.e. Sphinx found no
                      entry for it (book/_ext/api_links.py also warns at build time). The API
                      page itself is not checked: its signatures name types such as
                      ``torch.Tensor`` that have no entry on purpose.
``scaffolding``       test machinery visible to the reader: ``NBVAL_`` in code cells, or an
                      output line that is nothing but ``True`` or ``False``.
``error``             the page is missing, the measuring script did not finish, the screenshot
                      failed (not a page defect, but the check could not be made).

A full-width screenshot of each page goes to ``--out``/``<page>.png`` (pages taller than 16000 px
continue in ``<page>_part2.png`` ...), with the solutions opened; all results also go to
``--out``/``render-report.json``. One line per page, a summary table; exit status 1 if any page
has a defect. ``--no-browser`` runs only the static checks on the HTML files as built (no
layout, no typesetting). Debian's ``chromium`` is installed with apt-get when it is missing and
the script runs as root.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bs4 import BeautifulSoup, Comment, Tag

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 1280
SEGMENT_PX = 16000                 # tallest single screenshot (below Chromium's 16384 limit)
MIN_CHECKED_SEGMENT_PX = 100       # shorter final segments are not checked for blankness
MAX_PROGRESS_BOXES_PER_CELL = 3    # output boxes with bar text in one cell
MIN_FIGURE_TEXT_PX = 10 / 72 * 100 * 0.6   # 8.3 px: 10 pt text at 100 dpi shown at 60 %
MIN_FIGURE_NATURAL_PX = 150        # smaller images (icons, logos) are not figures
PAGE_TIMEOUT_S = 90
MATHJAX_TIMEOUT_MS = 45000
MAX_EXAMPLES = 3

KINDS = ["progress", "pipe_table", "raw_tex", "mathjax_error", "clipped_equation", "wide_code",
         "wide_output", "missing_image", "tiny_figure", "dead_link", "scaffolding", "error"]
SHORT = {"progress": "progr", "pipe_table": "pipe", "raw_tex": "tex", "mathjax_error": "mjerr",
         "clipped_equation": "eqclip", "wide_code": "codecut", "wide_output": "outcut",
         "missing_image": "noimg", "tiny_figure": "tiny", "dead_link": "nolink",
         "scaffolding": "scaff",
         "error": "error"}

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
         "--allow-file-access-from-files", "--remote-debugging-pipe"]

# tqdm's text: " 45%|####5     | 45/100 [00:01<00:02, 40.1it/s]" (also "12it [00:01, 8.5it/s]").
PROGRESS_RE = re.compile(r"\d{1,3}%\|| \[\d+:\d\d(?::\d\d)?<|\d(?:it/s|s/it)\]|\dit \[\d+:\d\d")
BAR_KEY_RE = re.compile(r"^\s*(?P<desc>.*?)\s*:?\s*\d{1,3}%\|.*?\|\s*[\d.]+[kMG]?/(?P<total>[\d.]+"
                        r"[kMG]?)|^\s*(?P<desc2>.*?)\s*:?\s*[\d.]+[kMG]?it \[")
PIPE_RULE_RE = re.compile(r"\|\s*:?-{3,}:?\s*\|")
RAW_TEX_RE = re.compile(
    r"\$\$|\\[()\[\]]"
    r"|\\(?:frac|dfrac|tfrac|mathbb|mathcal|mathrm|mathbf|mathsf|boldsymbol|operatorname|sqrt"
    r"|sum|prod|int|log|exp|alpha|beta|gamma|delta|epsilon|varepsilon|sigma|mu|nu|pi|tau|theta"
    r"|lambda|nabla|partial|left|right|cdot|cdots|ldots|top|bar|hat|tilde|begin|end|text|leq"
    r"|geq|le|ge|infty|mid|propto|approx|times|quad|qquad|underbrace|overline|KL)"
    r"(?![A-Za-z])"
    r"|(?<![\w$])\$[^$\s][^$\n]{0,200}?[\\_^][^$\n]{0,200}?\$(?![\w$])")
BOOL_LINES = {"True", "False"}

BLOCK_TAGS = {"p", "li", "dt", "dd", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "pre",
              "figcaption", "caption", "blockquote", "div", "section", "article", "body"}
SKIP_TAGS = {"script", "style", "code", "kbd", "samp", "tt", "textarea", "svg", "button",
             "mjx-container", "mjx-assistive-mml", "template", "noscript", "head"}


# --------------------------------------------------------------------------- pages


@dataclass
class Page:
    """One page to check: ``name`` (screenshot stem), its HTML file, and whether it is a
    chapter (a numbered part of the table of contents: it must show a figure)."""

    name: str
    html: Path
    chapter: bool = False


def toc_entries(toc_file: Path) -> list[tuple[str, bool]]:
    """``(file, numbered)`` for the root and every ``file:`` of ``_toc.yml``, in order."""
    import yaml

    toc = yaml.safe_load(toc_file.read_text())
    entries = [(toc["root"], False)]

    def walk(items, numbered):
        for item in items or []:
            if "file" in item:
                entries.append((item["file"], numbered))
            walk(item.get("sections"), numbered)

    for part in toc.get("parts", []):
        walk(part.get("chapters"), bool(part.get("numbered")))
    walk(toc.get("chapters"), False)
    return entries


def page_name(doc: str) -> str:
    """Screenshot stem of a document: ``notebooks/01_diffusion`` -> ``01_diffusion``,
    ``notebooks/assignments/index`` -> ``assignments-index``, ``book/notation`` -> ``notation``."""
    parts = Path(doc).with_suffix("").parts
    if parts and parts[0] in ("notebooks", "book"):
        parts = parts[1:]
    return "-".join(parts) or "index"


def select_pages(build: Path, toc_file: Path, wanted: list[str] | None) -> list[Page]:
    """The pages of the table of contents (all, or those named in ``wanted``)."""
    pages = []
    for doc, numbered in toc_entries(toc_file):
        doc = str(Path(doc).with_suffix(""))
        pages.append(Page(page_name(doc), build / f"{doc}.html",
                          chapter=numbered and "assignments" not in Path(doc).parts))
    if not wanted:
        return pages
    chosen = []
    for w in wanted:
        w = w.strip()
        match = [p for p in pages
                 if w in (p.name, str(p.html.relative_to(build).with_suffix("")))]
        if not match and w.endswith(".html"):
            path = Path(w)
            match = [p for p in pages if p.html.resolve() == path.resolve()] or [
                Page(path.stem, path)]
        if not match:
            sys.exit(f"--pages: {w!r} is not a page of {toc_file} "
                     f"(known: {', '.join(p.name for p in pages)})")
        chosen += match
    return chosen


# --------------------------------------------------------------------------- results


@dataclass
class PageResult:
    """The defects found on one page: kind -> count and the first examples."""

    page: Page
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, kind: str, example: str, count: int = 1) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind: unknown defect kind {kind!r}")
        self.counts[kind] = self.counts.get(kind, 0) + count
        ex = self.examples.setdefault(kind, [])
        if len(ex) < MAX_EXAMPLES:
            ex.append(shorten(example))

    @property
    def kinds(self) -> set[str]:
        return {k for k, n in self.counts.items() if n}

    def line(self) -> str:
        head = f"{self.page.name}: "
        if not self.kinds:
            return head + "ok" + (f" ({'; '.join(self.notes)})" if self.notes else "")
        bits = []
        for k in KINDS:
            if self.counts.get(k):
                bits.append(f"{k} {self.counts[k]} (e.g. " +
                            " | ".join(self.examples.get(k, [])) + ")")
        return head + "; ".join(bits)


def shorten(text: str, n: int = 110) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "\u2026"


# --------------------------------------------------------------------------- static checks


def _classes(tag: Tag) -> list[str]:
    return tag.get("class") or []


def _is_code_or_machinery(tag: Tag) -> bool:
    """Whether an element holds code, math or page machinery, not prose or output. (A math
    element is MathJax's: typeset, or checked by ``check_math`` when it is not.)"""
    if tag.name in SKIP_TAGS:
        return True
    cls = _classes(tag)
    if "cell_input" in cls or "headerlink" in cls or "sig" in cls:
        return True
    if any(c.startswith("highlight-") and c != "highlight-myst-ansi" for c in cls):
        return True           # a literal code block in the prose
    return "math" in cls


def text_blocks(root: Tag) -> list[tuple[Tag, str]]:
    """``(block, text)`` for every block element with checked text, in document order.
    Removes the code, math and machinery from ``root`` first (``root`` is changed)."""
    for tag in root.find_all(_is_code_or_machinery):
        if not tag.decomposed:
            tag.decompose()
    blocks: dict[int, list] = {}
    for s in root.find_all(string=True):
        if isinstance(s, Comment) or not s.strip():
            continue
        block = next((a for a in s.parents if a.name in BLOCK_TAGS), root)
        blocks.setdefault(id(block), [block, []])[1].append(str(s))
    return [(b, "".join(t)) for b, t in blocks.values()]


def _output_boxes(cell: Tag) -> list[Tag]:
    boxes = []
    for out in cell.select("div.cell_output"):
        boxes += [c for c in out.children if isinstance(c, Tag)]
    return boxes


def _bar_key(line: str) -> str:
    m = BAR_KEY_RE.search(line)
    if not m:
        return line.strip()[:20]
    return f"{(m.group('desc') or m.group('desc2') or '').strip()}|{m.group('total') or ''}"


def check_progress(root: Tag, res: PageResult) -> None:
    cells = root.select("div.cell") or [root]
    for i, cell in enumerate(cells):
        bar_boxes, keys, raw_cr, lines_seen = 0, {}, False, []
        for box in _output_boxes(cell) if cell is not root else [root]:
            text = box.get_text()
            if not PROGRESS_RE.search(text):
                continue
            bar_boxes += 1
            raw_cr |= "\r" in text
            for line in re.split(r"[\r\n]", text):
                if PROGRESS_RE.search(line):
                    keys.setdefault(_bar_key(line), []).append(line)
                    lines_seen.append(line)
        repeated = {k: v for k, v in keys.items() if len(v) > 1}
        if repeated or raw_cr or bar_boxes > MAX_PROGRESS_BOXES_PER_CELL:
            first = next(iter(repeated.values()), lines_seen)[0]
            res.add("progress", f"cell {i}: {bar_boxes} boxes, {len(lines_seen)} bar lines "
                                f"(\"{first.strip()}\")", count=len(lines_seen))


def check_text(root: Tag, res: PageResult) -> None:
    for block, text in text_blocks(root):
        if block.find_parent("table") is not None or block.name in ("td", "th"):
            pass   # a real table: pipes are fine; TeX is still checked
        elif PIPE_RULE_RE.search(text) and text.count("|") >= 6:
            row = next((ln for ln in text.splitlines() if ln.count("|") >= 2), text)
            res.add("pipe_table", f"<{block.name}> \"{row.strip()}\"")
        m = RAW_TEX_RE.search(text)
        if m:
            a = max(0, m.start() - 30)
            res.add("raw_tex", f"<{block.name}> \"...{text[a:m.end() + 40]}\"")


def check_math(root: Tag, res: PageResult, typeset: bool | None) -> None:
    for err in root.find_all("mjx-merror"):
        cont = err.find_parent("mjx-container")
        src = cont.get("data-tex", "") if cont is not None else ""
        msg = err.get("data-mjx-error") or err.get("title") or err.get_text()
        res.add("mathjax_error", f"{msg}: {src}" if src else msg)
    if typeset is None:
        return
    sources = [m for m in root.select(".math")
               if m.find("mjx-container") is None and m.get_text().strip()]
    if not typeset:
        n = len(root.select(".math"))
        if n:
            res.add("mathjax_error", f"MathJax not loaded: {n} formulas shown as TeX", count=n)
        return
    for m in sources:
        res.add("raw_tex", f"untypeset formula \"{m.get_text()}\"")


def check_scaffolding(root: Tag, res: PageResult) -> None:
    for pre in root.select("div.cell_input pre"):
        for line in pre.get_text().splitlines():
            if "NBVAL_" in line:
                res.add("scaffolding", f"code: \"{line.strip()}\"")
    for cell in root.select("div.cell"):
        for box in _output_boxes(cell):
            lines = [ln.strip() for ln in box.get_text().splitlines() if ln.strip()]
            bare = [ln for ln in lines if ln in BOOL_LINES]
            if bare:
                where = "output box" if len(bare) == len(lines) else "output line"
                res.add("scaffolding", f"{where} \"{bare[0]}\"", count=len(bare))


def check_links(root: Tag, res: PageResult) -> None:
    if res.page.html.name == "api.html":
        return
    for code in root.select("code.xref"):
        if code.find_parent("a") is None:
            res.add("dead_link", f"API role without a link: \"{code.get_text()}\"")


def article_of(soup: BeautifulSoup) -> Tag:
    return (soup.select_one("article.bd-article") or soup.find("article") or soup.body
            or soup)


def static_checks(html: str, res: PageResult, typeset: bool | None = None) -> None:
    """Checks that need no layout: progress spam, pipe tables, raw TeX, MathJax errors,
    dead API links, scaffolding. ``typeset``: ``None`` for the HTML as built (``.math``
    elements are TeX sources MathJax will typeset), ``True`` for a DOM after MathJax ran (a
    ``.math`` without ``mjx-container`` stayed TeX), ``False`` when MathJax did not load."""
    root = article_of(BeautifulSoup(html, "html.parser"))
    check_progress(root, res)
    check_scaffolding(root, res)
    check_links(root, res)
    check_math(root, res, typeset)
    if typeset is None and res.page.chapter and not root.select("img[src]"):
        res.add("missing_image", "chapter without a figure")
    check_text(root, res)     # last: it prunes the tree


# --------------------------------------------------------------------------- the browser


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4)."""

    def __init__(self, binary: str, profile_dir: str):
        r_cmd, w_cmd = os.pipe()
        r_out, w_out = os.pipe()

        def child_fds():                      # runs in the child before exec
            a, b = os.dup(r_cmd), os.dup(w_out)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
            preexec_fn=child_fds, close_fds=False, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(r_cmd)
        os.close(w_out)
        self.w, self.r = w_cmd, r_out
        self.buf, self.next_id, self.events = b"", 0, []

    def _pump(self, timeout: float) -> None:
        ready, _, _ = select.select([self.r], [], [], max(timeout, 0))
        if not ready:
            return
        chunk = os.read(self.r, 1 << 22)
        if not chunk:
            raise RuntimeError("chromium exited")
        self.buf += chunk
        while b"\0" in self.buf:
            msg, self.buf = self.buf.split(b"\0", 1)
            self.events.append(json.loads(msg))

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60) -> dict:
        self.next_id += 1
        mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self.w, data):]
        end = time.time() + timeout
        while True:
            for i, m in enumerate(self.events):
                if m.get("id") == mid:
                    del self.events[i]
                    if "error" in m:
                        raise RuntimeError(f"{method}: {m['error'].get('message')}")
                    return m.get("result", {})
            if time.time() > end:
                raise TimeoutError(f"{method}: no answer in {timeout:.0f} s")
            self._pump(end - time.time())

    def wait_event(self, method: str, session: str, timeout: float) -> dict:
        end = time.time() + timeout
        while True:
            for i, m in enumerate(self.events):
                if m.get("method") == method and m.get("sessionId") == session:
                    del self.events[: i + 1]
                    return m
            if time.time() > end:
                raise TimeoutError(f"{method}: not within {timeout:.0f} s")
            self._pump(end - time.time())

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.w)
        os.close(self.r)


def find_chromium(install: bool = True) -> str | None:
    """The Chromium binary; with ``install`` and root, apt-get installs Debian's package."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing Debian's chromium package (apt-get)...", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True, env=env)
        return shutil.which("chromium")
    return None


# The measuring script: opens hidden content, waits for MathJax, fonts and images, measures
# equations, code/output boxes, tables and images, and tags each typeset formula with its TeX
# source (data-tex) so that the static checks on the DOM can name it.
MEASURE_JS = r"""
(async (opt) => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const rep = {mathjax: 'absent', equations: [], pres: [], tables: [], images: [], svgs: 0};
  document.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const MJ = window.MathJax;
  if (MJ && MJ.startup && MJ.startup.promise) {
    rep.mathjax = await Promise.race([
      MJ.startup.promise.then(() => 'ok', e => 'failed: ' + e),
      sleep(opt.mathjaxTimeout).then(() => 'timeout')]);
    try {
      for (const item of MJ.startup.document.math) {
        if (item.typesetRoot && item.typesetRoot.setAttribute)
          item.typesetRoot.setAttribute('data-tex', String(item.math).slice(0, 300));
      }
    } catch (e) { rep.mathItemsError = String(e); }
  } else {
    rep.mathjaxScripts = [...document.scripts].map(s => s.src).filter(s => /mathjax/i.test(s));
  }
  if (document.fonts && document.fonts.ready) await document.fonts.ready;
  const art = document.querySelector('article.bd-article') || document.querySelector('article')
              || document.body;
  const imgs = [...art.querySelectorAll('img')];
  imgs.forEach(i => { i.loading = 'eager'; });
  await Promise.race([Promise.all(imgs.map(i => i.complete ? 0 :
      new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); }))),
      sleep(15000)]);
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const ar = art.getBoundingClientRect(), as = getComputedStyle(art);
  const colLeft = ar.left + parseFloat(as.paddingLeft), colRight = ar.right -
      parseFloat(as.paddingRight);
  rep.column = [Math.round(colLeft), Math.round(colRight)];
  const visible = e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const clipBox = e => {      // [left, right] of what is visible of e's parent boxes
    let l = colLeft, r = colRight;
    for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      if (ox !== 'visible') { const b = a.getBoundingClientRect(); l = Math.max(l, b.left);
                              r = Math.min(r, b.right); }
      if (a === art) break;
    }
    return [l, r];
  };
  const label = e => {      // page y of the element (to find it in the screenshot), section
    const sec = e.closest('section[id]');
    return 'y=' + Math.round(e.getBoundingClientRect().top + scrollY) + (sec ? ' #' + sec.id : '');
  };
  for (const c of art.querySelectorAll('mjx-container[display="true"]')) {
    if (!visible(c)) continue;
    const m = c.querySelector('mjx-math') || c;
    const mr = m.getBoundingClientRect();
    const [l, r] = clipBox(c);
    const over = Math.max(c.scrollWidth - c.clientWidth, mr.right - r, l - mr.left);
    const div = c.closest('div.math');
    const eqno = div && div.querySelector('.eqno');
    const box = c.closest('.proof, .theorem, .admonition, [class*="prf"]');
    rep.equations.push({over: Math.round(over), width: Math.round(mr.width),
      box: Math.round(r - l), eqno: eqno ? eqno.textContent.trim().replace(/#$/, '') : '',
      tex: c.getAttribute('data-tex') || '', inbox: box ? box.className.split(' ')[0] : '',
      where: label(c), left: Math.round(mr.left), right: Math.round(mr.right),
      clip: [Math.round(l), Math.round(r)]});
  }
  const probe = pre => {
    const s = document.createElement('span');
    s.textContent = '0'.repeat(200);
    pre.appendChild(s);
    const w = s.getBoundingClientRect().width / 200;
    s.remove();
    return w;
  };
  for (const pre of art.querySelectorAll('pre')) {
    if (!visible(pre)) continue;
    const output = !!pre.closest('.cell_output');
    const ps = getComputedStyle(pre);
    const inner = pre.clientWidth - parseFloat(ps.paddingLeft) - parseFloat(ps.paddingRight);
    const [l, r] = clipBox(pre);
    const pr = pre.getBoundingClientRect();
    const hidden = Math.max(pre.scrollWidth - pre.clientWidth, pr.right - r);
    if (hidden <= 1) continue;
    const cw = probe(pre) || 8;
    const cols = Math.floor(inner / cw);
    const lines = pre.textContent.replace(/\n$/, '').split('\n');
    const cut = lines.filter(t => t.replace(/\t/g, '    ').length > cols);
    rep.pres.push({output, cols, hidden: Math.round(hidden), lines: lines.length,
      cut: cut.length, longest: Math.max(...lines.map(t => t.length)),
      example: (cut[0] || lines[0] || '').slice(0, 200), where: label(pre)});
  }
  for (const t of art.querySelectorAll('table')) {
    if (!visible(t) || t.parentElement.closest('table')) continue;
    const tr = t.getBoundingClientRect();
    const [l, r] = clipBox(t);
    let hidden = tr.right - r;
    for (let a = t.parentElement; a && a !== art.parentElement; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== 'visible')
        hidden = Math.max(hidden, a.scrollWidth - a.clientWidth);
      if (a.classList.contains('cell_output') || a === art) break;
    }
    if (hidden > 1) {
      const head = [...t.querySelectorAll('tr')].slice(0, 1).map(x => x.textContent)[0] || '';
      rep.tables.push({hidden: Math.round(hidden), width: Math.round(tr.width),
                       output: !!t.closest('.cell_output'), header: head.slice(0, 200),
                       where: label(t)});
    }
  }
  for (const i of imgs) {
    const r = i.getBoundingClientRect();
    const src = i.getAttribute('src') || '';
    rep.images.push({src: src.startsWith('data:') ? src.slice(0, 8192) : src,
      alt: i.getAttribute('alt') || '', complete: i.complete, natural: i.naturalWidth,
      naturalH: i.naturalHeight, shown: Math.round(r.width * 10) / 10,
      attrWidth: i.getAttribute('width') || '', output: !!i.closest('.cell_output'),
      visible: visible(i), where: label(i)});
  }
  rep.svgs = [...art.querySelectorAll('.cell_output svg, figure svg')]
      .filter(s => s.getBoundingClientRect().width > 100).length;
  rep.height = Math.ceil(Math.max(document.documentElement.scrollHeight,
                                  document.body.scrollHeight));
  return JSON.stringify(rep);
})
"""


# The article after typesetting, for the static checks; each MathJax container is emptied
# (its TeX source stays in data-tex) except for a marker per TeX error, so the DOM stays small.
DOM_JS = r"""
(() => {
  const art = document.querySelector('article.bd-article') || document.querySelector('article')
              || document.body;
  const clone = art.cloneNode(true);
  for (const c of clone.querySelectorAll('mjx-container')) {
    c.replaceChildren(...[...c.querySelectorAll('mjx-merror')].map(e => {
      const x = document.createElement('mjx-merror');
      x.setAttribute('data-mjx-error', e.getAttribute('data-mjx-error') || e.textContent);
      return x;
    }));
  }
  clone.querySelectorAll('script, style, svg').forEach(e => e.remove());
  return '<html><body>' + clone.outerHTML + '</body></html>';
})()
"""


def png_dpi(data: bytes) -> float | None:
    """Horizontal resolution in dots per inch from a PNG's pHYs chunk (before IDAT)."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    i = 8
    while i + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[i:i + 8])
        if kind == b"pHYs" and i + 17 <= len(data):
            x, _, unit = struct.unpack(">IIB", data[i + 8:i + 17])
            return x * 0.0254 if unit == 1 and x else None
        if kind == b"IDAT":
            return None
        i += 12 + n
    return None


def image_dpi(src: str, html: Path) -> float | None:
    """The dpi of an image source (data URI prefix or file next to the page); SVG: 96."""
    try:
        if src.startswith("data:"):
            head, _, b64 = src.partition(",")
            if "svg" in head:
                return 96.0
            b64 = b64[: len(b64) // 4 * 4]
            return png_dpi(base64.b64decode(b64)) if ";base64" in head else None
        path = (html.parent / src.split("?")[0].split("#")[0])
        if path.suffix.lower() == ".svg":
            return 96.0
        with open(path, "rb") as f:
            return png_dpi(f.read(1 << 16))
    except (OSError, ValueError):
        return None


def layout_checks(rep: dict, res: PageResult) -> None:
    """Turn the measuring script's report into defects (classes 4-7)."""
    for eq in rep["equations"]:
        if eq["over"] > 1:
            name = eq["eqno"] or shorten(eq["tex"], 50)
            inbox = f" in {eq['inbox']}" if eq["inbox"] else ""
            res.add("clipped_equation", f"{name}{inbox} {eq['width']} px in {eq['box']} px, "
                                        f"{eq['over']} px cut, {eq['where']}: "
                                        f"{shorten(eq['tex'], 60)}")
    for pre in rep["pres"]:
        kind = "wide_output" if pre["output"] else "wide_code"
        res.add(kind, f"{pre['cut']} of {pre['lines']} lines > {pre['cols']} cols "
                      f"(longest {pre['longest']}, {pre['where']}): "
                      f"\"{pre['example'].strip()}\"",
                count=max(pre["cut"], 1))
    for t in rep["tables"]:
        res.add("wide_output", f"table {t['width']} px, {t['hidden']} px hidden, "
                               f"{t['where']} (header: {shorten(t['header'], 60)})")
    figures = rep["svgs"]
    for img in rep["images"]:
        src_name = "data-URI image" if img["src"].startswith("data:") else img["src"]
        if img["complete"] and img["natural"] == 0:
            res.add("missing_image", f"{src_name} did not load (alt \"{img['alt']}\")")
            continue
        if not img["visible"] or img["natural"] < MIN_FIGURE_NATURAL_PX:
            continue
        figures += 1
        dpi = image_dpi(img["src"], res.page.html) or 100.0
        scale = img["shown"] / img["natural"]
        text_px = 10 / 72 * dpi * scale
        if text_px < MIN_FIGURE_TEXT_PX:
            res.add("tiny_figure", f"{img['where']} {img['natural']} px shown at "
                                   f"{img['shown']:.0f} px = {scale:.0%} (10 pt text at "
                                   f"{dpi:.0f} dpi -> {text_px:.1f} px)")
    if res.page.chapter and figures == 0:
        res.add("missing_image", "chapter without a figure")


def check_page_in_browser(browser: Chromium, page: Page, out: Path | None) -> PageResult:
    """Open one page, measure it, check its DOM, save its screenshot."""
    res = PageResult(page)
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    try:
        sid = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"]
        browser.send("Page.enable", session=sid)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": WIDTH, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
                     session=sid)
        # Offline and deterministic: the book must render from its own files (MathJax too).
        browser.send("Network.enable", session=sid)
        browser.send("Network.setBlockedURLs", {"urls": ["http://*", "https://*"]},
                     session=sid)
        browser.send("Page.navigate", {"url": page.html.resolve().as_uri()}, session=sid)
        try:
            browser.wait_event("Page.loadEventFired", sid, PAGE_TIMEOUT_S)
        except TimeoutError:
            res.notes.append(f"no load event within {PAGE_TIMEOUT_S} s")
        answer = browser.send(
            "Runtime.evaluate",
            {"expression": f"({MEASURE_JS})({json.dumps({'mathjaxTimeout': MATHJAX_TIMEOUT_MS})})",
             "awaitPromise": True, "returnByValue": True}, session=sid, timeout=PAGE_TIMEOUT_S)
        if "exceptionDetails" in answer:
            exc = answer["exceptionDetails"]
            res.add("error", f"measuring script failed: {exc.get('text', '')} "
                             f"{exc.get('exception', {}).get('description', '')}")
            return res
        rep = json.loads(answer["result"]["value"])
        dom = browser.send("Runtime.evaluate", {"expression": DOM_JS, "returnByValue": True},
                           session=sid)["result"]["value"]
        mathjax_ok = rep["mathjax"] == "ok"
        if rep["mathjax"] not in ("ok", "absent"):
            res.add("mathjax_error", f"MathJax {rep['mathjax']}")
        static_checks(dom, res, typeset=mathjax_ok)
        if not mathjax_ok and "mathjax_error" not in res.kinds and rep.get("mathjaxScripts"):
            res.add("mathjax_error", f"MathJax not loaded from {rep['mathjaxScripts'][0]}")
        layout_checks(rep, res)
        res.notes.append(f"{rep['height']} px tall")
        if out is not None:
            save_screenshot(browser, sid, rep["height"], out, page.name, res)
    except (TimeoutError, RuntimeError) as e:
        res.add("error", str(e))
    finally:
        try:
            browser.send("Target.closeTarget", {"targetId": target}, timeout=10)
        except (TimeoutError, RuntimeError):
            pass
    return res


def save_screenshot(browser: Chromium, sid: str, height: int, out: Path, name: str,
                    res: PageResult) -> None:
    for old in out.glob(f"{name}_part*.png"):
        old.unlink()
    y, part = 0, 1
    while y < height:
        h = min(SEGMENT_PX, height - y)
        shot = browser.send("Page.captureScreenshot",
                            {"format": "png", "captureBeyondViewport": True,
                             "optimizeForSpeed": True,
                             "clip": {"x": 0, "y": y, "width": WIDTH, "height": h, "scale": 1}},
                            session=sid, timeout=120)
        path = out / (f"{name}.png" if part == 1 else f"{name}_part{part}.png")
        path.write_bytes(base64.b64decode(shot["data"]))
        # a last strip of a few pixels below the footer is white by design; a taller empty
        # segment means the page did not paint
        if h >= MIN_CHECKED_SEGMENT_PX and path.stat().st_size < 2000:
            res.add("error", f"screenshot {path} is blank")
        y, part = y + h, part + 1


def check_pages(pages: list[Page], out: Path | None, binary: str | None) -> list[PageResult]:
    """Check ``pages`` one after the other in one browser (``binary=None``: static only)."""
    results, browser, profile = [], None, None
    try:
        if binary:
            profile = tempfile.TemporaryDirectory(prefix="render-check-")
            browser = Chromium(binary, profile.name)
        for page in pages:
            t0 = time.time()
            if not page.html.exists():
                res = PageResult(page)
                res.add("error", f"{page.html} does not exist: run make book first")
            elif browser is None:
                res = PageResult(page)
                static_checks(page.html.read_text(encoding="utf-8"), res, typeset=None)
            else:
                res = check_page_in_browser(browser, page, out)
            res.notes.append(f"{time.time() - t0:.1f} s")
            results.append(res)
            print(res.line(), flush=True)
    finally:
        if browser is not None:
            browser.close()
        if profile is not None:
            profile.cleanup()
    return results


def summary(results: list[PageResult]) -> str:
    kinds = [k for k in KINDS if any(r.counts.get(k) for r in results)] or KINDS[:-1]
    width = max([len(r.page.name) for r in results] + [4])
    rows = ["page".ljust(width) + " " + " ".join(SHORT[k].rjust(7) for k in kinds)]
    for r in results:
        rows.append(r.page.name.ljust(width) + " " + " ".join(
            (str(r.counts[k]) if r.counts.get(k) else ".").rjust(7) for k in kinds))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="_build/html", help="the built book")
    parser.add_argument("--out", default="_build/screenshots", help="screenshots, report")
    parser.add_argument("--toc", default=None, help="table of contents (default: _toc.yml "
                                                    "next to the build's source)")
    parser.add_argument("--pages", default="", help="comma-separated pages (default: all)")
    parser.add_argument("--no-screenshots", action="store_true",
                        help="skip the screenshots (about half of the time per page)")
    parser.add_argument("--no-browser", action="store_true",
                        help="static checks on the HTML as built only (no Chromium)")
    args = parser.parse_args(argv)
    build, out = Path(args.build), Path(args.out)
    toc = Path(args.toc) if args.toc else (build.resolve().parent.parent / "_toc.yml")
    if not toc.exists():
        toc = ROOT / "_toc.yml"
    pages = select_pages(build, toc, [p for p in args.pages.split(",") if p.strip()])
    binary = None
    if not args.no_browser:
        binary = find_chromium()
        if binary is None:
            sys.exit("chromium not found: install it (Debian: apt-get install chromium) or "
                     "run with --no-browser for the static checks only")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    results = check_pages(pages, None if args.no_screenshots else out, binary)
    print()
    print(summary(results))
    bad = [r for r in results if r.kinds]
    print(f"\n{len(results)} pages in {time.time() - t0:.0f} s"
          + ("" if binary else " (static checks only)") + f": {len(bad)} with defects"
          + (f"; screenshots in {out}/" if binary and not args.no_screenshots else ""))
    (out / "render-report.json").write_text(json.dumps(
        [{"page": r.page.name, "html": str(r.page.html), "counts": r.counts,
          "examples": r.examples, "notes": r.notes} for r in results], indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

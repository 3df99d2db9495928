"""Render built book pages in headless Chromium; check that math is typeset and figures exist.

    python tools/check_rendered_book.py [--build _build/html] [--out _build/screenshots]
    (or: make check-render, after make book)

For each page (the index and the soft-optimal-policy chapter by default) it

1. dumps the DOM after scripts ran (``--dump-dom``) and counts MathJax's rendered
   ``<mjx-container>`` elements against the page's math sources: every ``\\(...\\)`` /
   ``\\[...\\]`` span in the HTML must have become a container, and no ``mjx-merror``
   (a TeX error) may appear;
2. counts the figures (``<img>`` with PNG/SVG data or files) in the page; a chapter must have
   at least one;
3. saves a full-width screenshot to ``--out`` for a person to look at.

It uses Debian's ``chromium`` package and installs it with apt-get when it is missing and the
script runs as root. Exit status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PAGES = {"index": "book/index.html",
         "soft_optimal_policy": "notebooks/04_soft_optimal_policy.html"}
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=15000"]


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing Debian's chromium package (apt-get)...", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True, env=env)
        return shutil.which("chromium")
    sys.exit("chromium not found: install it (Debian: apt-get install chromium)")


def run_chromium(binary: str, args: list[str], profile_dir: str) -> str:
    out = subprocess.run([binary, *FLAGS, f"--user-data-dir={profile_dir}", *args],
                         capture_output=True, text=True, timeout=180)
    return out.stdout


def check_page(binary: str, html: Path, shot: Path, profile_dir: str) -> list[str]:
    url = html.resolve().as_uri()
    source = html.read_text()
    dom = run_chromium(binary, ["--dump-dom", url], profile_dir)
    math_sources = len(re.findall(r"\\\(|\\\[", source))
    typeset = dom.count("<mjx-container")
    errors = dom.count("<mjx-merror")
    figures = len(re.findall(r"<img[^>]+src=\"[^\"]*(?:\.png|\.svg|image/png|image/svg)", dom))
    run_chromium(binary, [f"--screenshot={shot}", "--window-size=1280,2400", url], profile_dir)
    print(f"{html}: {typeset} typeset formulas of {math_sources} in the source, {errors} TeX "
          f"errors, {figures} figures; screenshot {shot} "
          f"({shot.stat().st_size if shot.exists() else 0} bytes)")
    problems = []
    if math_sources and typeset < math_sources:
        problems.append(f"{html.name}: only {typeset} of {math_sources} formulas typeset")
    if errors:
        problems.append(f"{html.name}: {errors} MathJax errors")
    if "notebooks" in html.parts and figures == 0:
        problems.append(f"{html.name}: no figures")
    if not shot.exists() or shot.stat().st_size < 10_000:
        problems.append(f"{html.name}: screenshot missing or blank")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="_build/html")
    parser.add_argument("--out", default="_build/screenshots")
    args = parser.parse_args()
    build, out = Path(args.build), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    binary = find_chromium()
    problems = []
    with tempfile.TemporaryDirectory() as profile_dir:
        for name, rel in PAGES.items():
            page = build / rel
            if not page.exists():
                problems.append(f"{page} does not exist: run make book first")
                continue
            problems += check_page(binary, page, out / f"{name}.png", profile_dir)
    for p in problems:
        print("FAIL:", p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()

# ctrl-teach: build the book and run the tests.
#
#   make book     create .venv if needed, execute every chapter, build _build/html
#   make test     same setup, then ruff, the unit tests and every notebook under nbval
#   make weights  retrain the checkpoints shipped in ctrl_teach/pretrained/ (weights/, diffusers/)
#   make notebooks  re-execute the chapters, keeping only the nbval-checked outputs
#   make lint     ruff only
#   make clean    remove _build
#
# Everything runs inside .venv, created from requirements.txt (the pinned, tested stack).
# The stamp file .venv/.installed makes re-runs skip the installation until
# requirements.txt or pyproject.toml changes.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
JB := $(VENV)/bin/jupyter-book
STAMP := $(VENV)/.installed

# Small sample sizes and short training budgets unless the caller asks for "full".
CTRL_TEACH_PROFILE ?= quick
export CTRL_TEACH_PROFILE
# Executed pages carry no progress bars (ctrl_teach.profiles.progress_bar); Jupyter and Colab
# sessions, where the variable is unset, still show live bars.
export CTRL_TEACH_PROGRESS ?= 0
# Quieter logs: debugpy (inside ipykernel) warns about frozen modules on every kernel start.
export PYDEVD_DISABLE_FILE_VALIDATION := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# Jupyter Book 1 from the repository root (only the files in _toc.yml are read):
#   --all          re-read every page, so every notebook is executed on every build
#                  (execute_notebooks: force) and no warning hides in a cached page;
#   -W             any Sphinx warning (broken reference, bad citation, ...) fails the build;
#   --keep-going   with -W: report all warnings before failing, not just the first.
# A failing notebook cell aborts the build through execute.raise_on_error in _config.yml.
BOOK_FLAGS := --all -W --keep-going --builder html

# nbval: run every code cell, compare outputs only in cells tagged nbval-check-output,
# use this environment's kernel, sanitise floats/devices/timings, generous cell timeout.
NBVAL_FLAGS := --nbval-lax --nbval-current-env \
	--nbval-sanitize-with tests/nbval_sanitize.cfg \
	--nbval-cell-timeout=2400 -p no:cacheprovider --durations=10

.PHONY: help venv book test test-unit test-notebooks lint weights notebooks clean assignments \
	check-render

help:
	@echo "make book     execute every chapter and build _build/html/index.html"
	@echo "make test     ruff + unit tests + every notebook under nbval"
	@echo "make weights  retrain the shipped pre-trained checkpoints"
	@echo "make notebooks  re-execute the chapters (quick), keep only checked outputs"
	@echo "make check-render  after make book: headless-Chromium check of math and figures"
	@echo "make lint     ruff only"
	@echo "make clean    remove _build"
	@echo "(CTRL_TEACH_PROFILE=$(CTRL_TEACH_PROFILE); set CTRL_TEACH_PROFILE=full for GPU sizes)"

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || { echo "Creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install -e . --no-deps
	@touch $@

book: $(STAMP)
	$(JB) build . $(BOOK_FLAGS)
	@echo "Book written to _build/html/index.html (profile $(CTRL_TEACH_PROFILE))"

test: lint test-unit test-notebooks

# Tests run in TEST_JOBS processes (pytest-xdist; one test file or notebook per process, so a
# module's fixtures are built once) with one torch thread each: on the 2-core CI machine two
# single-threaded processes finish sooner than one process with two threads, because most
# tensors in the tests are small. TEST_JOBS=1 runs them in this process. --no-loadscope-reorder
# keeps the order of the conftest hooks (files with a slow test and the longest notebooks first),
# so no long file is handed out last and run alone while the other worker idles.
TEST_JOBS ?= 2
XDIST := $(if $(filter 1,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder)
TEST_ENV := $(if $(filter 1,$(TEST_JOBS)),,OMP_NUM_THREADS=1 MKL_NUM_THREADS=1)

test-unit: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest $(XDIST) --durations=15

test-notebooks: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest $(XDIST) $(NBVAL_FLAGS) notebooks/*.ipynb

# The second run checks only line length, in every notebook (chapters, assignments and their
# sources): code boxes in the book show ~90 characters (book/_static/code-width.css), so every
# line stays within 88. --isolated: pyproject.toml excludes the notebooks from the first run.
lint: $(STAMP)
	$(PY) -m ruff check ctrl_teach tests tools benchmarks examples
	$(PY) -m ruff check --isolated --no-cache --select E501 --line-length 88 notebooks

weights: $(STAMP)
	$(PY) -m ctrl_teach.pretrained retrain all
	$(PY) -m ctrl_teach.diffusers_bridge.tiny_model --out ctrl_teach/pretrained/diffusers/tiny-digits

notebooks: $(STAMP)
	$(PY) tools/refresh_notebooks.py notebooks/*.ipynb

# Assignments: student notebooks (notebooks/assignments/, committed) and solution notebooks
# (_build/assignments/solutions/) from the sources in notebooks/assignments/source/.
assignments: $(STAMP)
	$(PY) tools/make_assignments.py

# After `make book`: headless Chromium renders every page of _toc.yml at 1280 px and fails on
# progress spam, raw pipe tables, raw TeX / MathJax errors, clipped equations, cut code or
# output, missing or tiny figures and test scaffolding; screenshots and render-report.json in
# _build/screenshots/ (installs Debian's chromium package if missing, as root).
check-render: $(STAMP)
	$(PY) tools/check_rendered_book.py

clean:
	rm -rf _build

"""Smoke tests for the build wiring: the package imports and is the installed one."""

import importlib.metadata
import os
from pathlib import Path

import ctrl_teach


def test_import_and_version_match_the_installed_distribution():
    assert ctrl_teach.__version__ == importlib.metadata.version("ctrl-teach")


def test_package_is_imported_from_this_checkout():
    repo = Path(__file__).resolve().parents[1]
    assert Path(ctrl_teach.__file__).resolve().parent == repo / "ctrl_teach"


def test_tests_run_in_the_quick_profile_by_default():
    # tests/conftest.py sets CTRL_TEACH_PROFILE=quick unless the caller chose a profile.
    assert ctrl_teach.profile() == os.environ["CTRL_TEACH_PROFILE"]

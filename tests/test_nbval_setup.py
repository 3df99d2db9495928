"""The notebooks' pytest setup retries a kernel that dies at start-up (notebooks/conftest.py)."""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("nbval")

_SPEC = importlib.util.spec_from_file_location(
    "notebooks_conftest", Path(__file__).resolve().parents[1] / "notebooks" / "conftest.py"
)
notebooks_conftest = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(notebooks_conftest)


def _flaky_start(failures):
    calls = []

    def start(*args, **kwargs):
        calls.append((args, kwargs))
        if len(calls) <= failures:
            raise RuntimeError("Kernel died before replying to kernel_info")
        return "km", "kc"

    return start, calls


def test_a_kernel_that_dies_once_is_started_again_with_the_same_arguments():
    start, calls = _flaky_start(failures=1)
    wrapped = notebooks_conftest.with_retries(start, attempts=3, pause_s=0.0)
    assert wrapped(kernel_name="python3", cwd="x") == ("km", "kc")
    assert calls == [((), {"kernel_name": "python3", "cwd": "x"})] * 2


def test_the_last_error_is_raised_when_every_attempt_fails():
    start, calls = _flaky_start(failures=5)
    wrapped = notebooks_conftest.with_retries(start, attempts=3, pause_s=0.0)
    with pytest.raises(RuntimeError, match="Kernel died"):
        wrapped()
    assert len(calls) == 3


def test_attempts_must_be_positive():
    with pytest.raises(ValueError, match="attempts must be >= 1"):
        notebooks_conftest.with_retries(lambda: None, attempts=0)

"""The bring-your-own-problem workflow learns on data the library has never seen."""

import importlib.util
from pathlib import Path

import pytest
import torch

from ctrl_teach.ctrl import condition_pretrained
from ctrl_teach.diffusion import MLPDenoiser

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "bring_your_own_data.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("bring_your_own_data", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_moves_samples_to_the_exact_target():
    report = _load_example().main(pretrain_steps=1000, iterations=150)
    for key, r in report.items():
        assert r["gap"] > -3 * r["gap_se"], key                  # J <= alpha log Z
        assert r["ed"] < 0.25 * r["ed_nothing"], key             # far closer than doing nothing
        assert abs(r["confidence"] - r["confidence_exact"]) < 0.12, key


def test_bad_arguments_name_them():
    with pytest.raises(ValueError, match="sampler"):
        condition_pretrained(MLPDenoiser(2, 10, 0), torch.nn.Identity())
    with pytest.raises(ValueError, match="variant"):
        condition_pretrained(MLPDenoiser(2, 10, 0), torch.nn.Identity(), variant="ppo")
    with pytest.raises(ValueError, match="pretrained"):
        condition_pretrained("toy-gmm", torch.nn.Identity())

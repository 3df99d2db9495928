"""The side-by-side experiment (``ctrl_teach.beyond.compare``) on the 1-D Gaussian problem.

A smoke and consistency test with iteration budgets (not wall time, so it is reproducible): the
references are the closed forms (alpha log Z, the tilted target's moments), every method's row
carries every score, the methods that fine-tune towards the KL-regularised optimum improve the
certificate gap over doing nothing, DRaFT (no KL) runs past the target, SMC's log Z_hat error is
small, and the table fits in 88 characters.
"""

import json

import pytest
import torch

from ctrl_teach.beyond.compare import (
    METHODS,
    format_table,
    make_problem,
    run_method,
    total_compute,
    train_method,
)

ITERS = dict(ctrl=40, pg=60, am=30, rtb=30, draft=40, smc=1024)
FAST = dict(batch_size=64, lr=2e-2)          # small batches, a large step: a fast smoke test


@pytest.fixture(scope="module")
def problem():
    return make_problem("gaussian", num_candidates=6000)


@pytest.fixture(scope="module")
def rows(problem):
    return {m: run_method(problem, m, iterations=ITERS[m], num_samples=1000,
                          overrides=None if m == "smc" else FAST) for m in METHODS}


def test_references_are_exact(problem):
    ref = problem.refs[(None, 0)]
    m, v = problem.extra["target_moments"]
    t = ref["target"]
    assert ref["alpha_log_z"] == problem.extra["alpha_log_z"] and ref["se"] == 0.0
    assert t.shape[0] > 500                              # Z ~ 0.24 of 6000 candidates
    assert abs(float(t.mean()) - m) < 4 * (v / t.shape[0]) ** 0.5
    assert float(t.var()) == pytest.approx(v, rel=0.15)


def test_rows_are_complete_and_consistent(problem, rows):
    table = format_table(list(rows.values()))
    print(table)
    assert max(len(line) for line in table.splitlines()) <= 88
    for m, r in rows.items():
        assert r["method"] == m and r["problem"] == "gaussian"
        assert r["nfe_per_sample"] == problem.sampler.num_steps
        assert r["s_per_sample"] > 0 and total_compute(r) >= r["train_s"]
        assert r["ed"] is not None and 0 < r["confidence_exact"] < 1
        json.dumps(r)
    fine = [m for m in METHODS if m != "smc"]
    for m in fine:
        assert rows[m]["iterations"] == ITERS[m] and rows[m]["peak_mb"] > 0
        assert rows[m]["gap"] > -3 * rows[m]["gap_se"]          # J <= alpha log Z
    gap_pre = rows["ctrl"]["per_pair"][0]["ed_pre"]
    for m in ("ctrl", "pg", "am", "rtb"):                       # all learn something
        assert rows[m]["ed"] < 0.6 * gap_pre, m
    # DRaFT (no KL) overshoots: path KL above every KL-regularised method's
    assert rows["draft"]["kl"] > max(rows[m]["kl"] for m in ("ctrl", "pg", "am", "rtb"))
    assert rows["draft"]["per_pair"][0]["moments"][0] > problem.extra["target_moments"][0]
    # SMC: no fine-tuning, an accurate log Z_hat with 1024 particles
    assert rows["smc"]["train_s"] == 0 and rows["smc"]["particles"] == 1024
    assert abs(rows["smc"]["logz_err"]) < 0.15 and rows["smc"]["ed"] < 0.01


def test_wall_time_budget_stops_training(problem):
    aug, info = train_method(problem, "ctrl", budget_s=0.5, measure_memory=False)
    assert info["iterations"] >= 1 and info["train_s"] < 0.5 + 5.0


def test_bad_arguments(problem):
    with pytest.raises(ValueError, match="name"):
        make_problem("mnist")
    with pytest.raises(ValueError, match="method"):
        run_method(problem, "ppo", iterations=1)
    with pytest.raises(ValueError, match="budget_s"):
        train_method(problem, "ctrl", budget_s=1.0, iterations=1)
    with pytest.raises(ValueError, match="budget_s"):
        run_method(problem, "smc")
    assert torch.is_tensor(problem.refs[(None, 0)]["target"])

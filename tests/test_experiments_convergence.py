"""Chapter 8: the plateau statistic, the fits' training curves, the claims and the stored run.

Fast (a few seconds): the statistic is checked against closed-form answers, the fits on the
reduced toy; the stored long run is only read back.
"""

import json
import math
from pathlib import Path

import pytest
import torch

import ctrl_teach
from ctrl_teach.experiments import reduced_config, toy_problem, validate_results
from ctrl_teach.experiments.config import experiment_config, scaled_config, toy_only
from ctrl_teach.experiments.methods import Plateau, fit_methods, plateau_statistic
from ctrl_teach.experiments.run import budget_summary, convergence, headline_claims

STORED = Path(ctrl_teach.__file__).with_name("book_data") / "experiments_full_cpu.json"


def test_plateau_of_a_ramp_is_the_closed_form():
    # a ramp v_t = a + b t: the tail's two half-means differ by b * (m / 2) exactly
    a, b, n = 2.0, 0.01, 100
    p = plateau_statistic([a + b * t for t in range(n)], tail=0.2)
    assert isinstance(p, Plateau) and p.iterations == n and p.tail == 20
    assert p.change == pytest.approx(b * 10, rel=1e-9)
    level = a + b * sum(range(90, 100)) / 10
    assert p.level == pytest.approx(level, rel=1e-12)
    assert p.rel_change == pytest.approx(b * 10 / level, rel=1e-9)
    # sample variance of 10 equally spaced points: b^2 * 10 * 11 / 12, twice over 10
    assert p.se == pytest.approx(math.sqrt(2 * b * b * 110 / 12 / 10), rel=1e-9)
    assert not p.flat                   # 5 % > 1 %, and 0.1 is 23 SE of the change


def test_plateau_flat_noise_and_decaying_curve():
    g = torch.Generator().manual_seed(0)
    noise = (1.0 + 0.05 * torch.randn(500, generator=g)).tolist()
    assert plateau_statistic(noise).flat                      # constant plus noise
    decay = [1.0 + math.exp(-t / 20) for t in range(400)]
    assert plateau_statistic(decay).flat                      # converged: change ~ 1e-7
    still = [1.0 + math.exp(-t / 400) for t in range(400)]
    p = plateau_statistic(still)
    assert not p.flat and p.rel_change > 0.01 and abs(p.change) > 2 * p.se
    # with z = 0 only the relative criterion is left; with a huge tolerance it passes
    assert not plateau_statistic(noise, z=0.0, rel_tol=0.0).flat
    assert plateau_statistic(still, rel_tol=1.0).flat
    assert plateau_statistic([1.0, float("nan"), 2.0, 3.0, 4.0]).iterations == 4
    assert "flat: NO" in p.line("x") and "flat: yes" in plateau_statistic(noise).line("x")


def test_plateau_bad_arguments():
    with pytest.raises(ValueError, match="tail"):
        plateau_statistic(range(10), tail=0.0)
    with pytest.raises(ValueError, match="rel_tol"):
        plateau_statistic(range(10), rel_tol=-1.0)
    with pytest.raises(ValueError, match="values"):
        plateau_statistic([1.0, 2.0, 3.0])


@pytest.fixture(scope="module")
def fitted():
    cfg = reduced_config()
    cfg["toy"].update(ctrl_iterations=60)        # enough for J to rise above its noise
    toy = toy_problem(settings=cfg["toy"], pool_size=cfg["toy"]["pool_size"])
    x, c, y = toy.labelled_dataset(None, 0)
    return fit_methods(toy, x, c, y, seed=0), cfg


def test_fit_methods_keeps_learning_curves(fitted):
    fit, cfg = fitted
    s = cfg["toy"]
    assert {k: len(v) for k, v in fit.histories.items()} == dict(
        classifier=s["classifier_iterations"], ctrl=s["ctrl_iterations"],
        cg=s["noisy_classifier_iterations"], cfg=s["cfg_iterations"])
    h = fit.histories
    # CTRL's J rises, the classifiers' losses fall (first vs last quarter); CFG starts from
    # the pre-trained denoiser, so 40 iterations of its loss are noise (it is tested in
    # tests/test_baselines*.py): only its length and finiteness are checked here
    assert all(math.isfinite(v) for v in h["cfg"])
    for name, sign in (("ctrl", 1), ("classifier", -1), ("cg", -1)):
        q = max(1, len(h[name]) // 4)
        first, last = sum(h[name][:q]) / q, sum(h[name][-q:]) / q
        assert sign * (last - first) > 0, name
    conv = convergence(fit)
    assert conv["n_labelled"] == fit.n_labelled
    assert set(conv["curves"]) == set(h)
    assert conv["curves"]["ctrl"]["history"] == h["ctrl"]
    json.dumps(conv)                                          # JSON-ready


def test_scaled_and_toy_only_config():
    full = experiment_config("full")
    cfg = toy_only(scaled_config(full, 2))
    assert cfg["toy"]["ctrl_iterations"] == 2 * full["toy"]["ctrl_iterations"]
    assert cfg["digits"]["cfg_iterations"] == 2 * full["digits"]["cfg_iterations"]
    assert cfg["strength"]["ctrl_iterations"] == 2 * full["strength"]["ctrl_iterations"]
    assert cfg["toy"]["ctrl_batch"] == full["toy"]["ctrl_batch"]
    assert cfg["sample_efficiency"]["digits_sizes"] == []
    assert cfg["sampling_cost"]["problems"] == ["toy"]
    assert full["sampling_cost"]["problems"] == ["toy", "digits"]     # copy, not changed
    with pytest.raises(ValueError, match="scale"):
        scaled_config(full, 0)
    both = scaled_config(full, 2, ctrl_scale=3)
    assert both["toy"]["ctrl_iterations"] == 6 * full["toy"]["ctrl_iterations"]
    assert both["strength"]["ctrl_iterations"] == 6 * full["strength"]["ctrl_iterations"]
    assert both["toy"]["cfg_iterations"] == 2 * full["toy"]["cfg_iterations"]
    with pytest.raises(ValueError, match="ctrl_scale"):
        scaled_config(full, 1, ctrl_scale=-1)


def test_stored_long_run():
    stored = json.loads(STORED.read_text())
    validate_results(stored)
    for key in ("config", "device", "torch_threads", "started_utc", "wall_seconds",
                "command", "scale", "convergence"):
        assert key in stored, key
    assert stored["device"] == "cpu" and stored["torch_threads"] == 1
    factor = stored["scale"] * stored.get("ctrl_scale", 1.0)
    assert stored["config"]["toy"]["ctrl_iterations"] == round(
        factor * experiment_config(stored["profile"])["toy"]["ctrl_iterations"])
    claims = headline_claims(stored)
    assert len(claims) == 9 and all(c["ok"] is not None for c in claims)
    assert budget_summary(stored).startswith("CTRL ")
    curves = stored["convergence"]["toy-gmm"]["curves"]
    for name, curve in curves.items():             # the stored statistic is reproduced
        p = plateau_statistic(curve["history"])
        assert p.flat == curve["flat"] and p.change == pytest.approx(curve["change"]), name

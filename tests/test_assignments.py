"""Assignments (issue 6): generation, grading, and the messages wrong answers get.

Executing notebooks is the slow part, so each notebook is executed once (module-scoped
fixtures): the solution versions (generated into a temporary folder, never committed) and the
committed student versions of all seven assignments. Wrong answers are mostly tested by calling the
checks directly, which takes milliseconds.
"""

import csv
import importlib.util
import json
from pathlib import Path

import nbformat
import pytest
import torch

from ctrl_teach.assignments import ASSIGNMENTS, a1, a2, a3, a4, a5, a6, a7
from ctrl_teach.assignments.grade import detect_assignment, format_table, grade_notebook, write_csv

ROOT = Path(__file__).resolve().parents[1]
STUDENT_DIR = ROOT / "notebooks" / "assignments"


def _load_tool():
    spec = importlib.util.spec_from_file_location("make_assignments",
                                                  ROOT / "tools" / "make_assignments.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make = _load_tool()
STUDENT_NOTEBOOKS = {p.name.split("_")[0]: p for p in sorted(STUDENT_DIR.glob("a[0-9]*_*.ipynb"))}


@pytest.fixture(scope="module")
def solution_reports(tmp_path_factory):
    out = tmp_path_factory.mktemp("solutions")
    reports = {}
    for name, text in make.generate("solution").items():
        path = out / name
        path.write_text(text)
        reports[name.split("_")[0]] = grade_notebook(path, timeout=300)
    return reports


@pytest.fixture(scope="module")
def student_reports():
    return {a: grade_notebook(path, timeout=300) for a, path in STUDENT_NOTEBOOKS.items()}


# -- generation ---------------------------------------------------------------------------
def test_every_assignment_has_a_source_and_a_student_notebook():
    assert [p.name.split("_")[0] for p in make.sources()] == list(ASSIGNMENTS)
    assert list(STUDENT_NOTEBOOKS) == list(ASSIGNMENTS)


def test_student_notebooks_are_up_to_date():
    """Regenerating the student notebooks from the sources must change nothing."""
    assert make.stale_student_notebooks() == [], "run `make assignments` and commit the result"


def test_transform_source_replaces_solutions_and_drops_hidden_tests():
    src = ("def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n"
           "check(f)\n### BEGIN HIDDEN TESTS\ncheck(f, hidden=True)\n### END HIDDEN TESTS")
    student = make.transform_source(src, "code", "student")
    assert student == ("def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
                       "check(f)")
    solution = make.transform_source(src, "code", "solution")
    assert solution == "def f(x):\n    return 2 * x\ncheck(f)\ncheck(f, hidden=True)"
    md = "Answer:\n### BEGIN SOLUTION\nforty-two\n### END SOLUTION"
    assert make.transform_source(md, "markdown", "student") == "Answer:\nYOUR ANSWER HERE"


@pytest.mark.parametrize("bad", [
    "### BEGIN SOLUTION\nx = 1",
    "x = 1\n### END SOLUTION",
    "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n### END SOLUTION",
    "### BEGIN SOLUTION\nx = 1\n### END HIDDEN TESTS",
])
def test_unbalanced_markers_are_refused(bad):
    with pytest.raises(make.MarkerError):
        make.transform_source(bad, "code", "student")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_student_notebook_follows_the_conventions(assignment):
    nb = nbformat.read(STUDENT_NOTEBOOKS[assignment], as_version=4)
    chapter1 = nbformat.read(ROOT / "notebooks" / "01_diffusion.ipynb", as_version=4)
    colab = next(c for c in chapter1.cells if c.cell_type == "code")
    first, install = nb.cells[0], nb.cells[1]
    assert first.cell_type == "markdown" and first.source.startswith(f"(assignment-{assignment})=")
    assert ":::{admonition} Learning objectives" in first.source
    assert install.source == colab.source
    assert set(install.metadata["tags"]) == {"remove-cell", "nbval-skip"}
    text = json.dumps([c.source for c in nb.cells])
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    assert "raise NotImplementedError()" in text
    assert f"from ctrl_teach.assignments import {assignment}" in text
    assert all(c.cell_type != "raw" for c in nb.cells)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert detect_assignment(nb, Path("renamed.ipynb")) == assignment


# -- grading the generated versions -------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solution_scores_full_marks(solution_reports, assignment):
    rep = solution_reports[assignment]
    print(format_table([rep]))
    assert not rep.error and not rep.cell_errors
    assert rep.max_points > 0 and rep.points == rep.max_points, [
        r["message"] for r in rep.results if not r["passed"]]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_untouched_student_version_scores_zero(student_reports, assignment):
    rep = student_reports[assignment]
    print(format_table([rep]))
    assert not rep.error                   # the grader itself ran to the end
    assert rep.cell_errors                 # ...through cells that raised
    module = getattr(__import__("ctrl_teach.assignments", fromlist=[assignment]), assignment)
    assert [r["question"] for r in rep.results] == [q.id for q in module.QUESTIONS]
    assert rep.points == 0
    assert all(r["message"] for r in rep.results)


def test_csv_and_table(student_reports, tmp_path):
    reports = list(student_reports.values())
    path = tmp_path / "grades.csv"
    write_csv(reports, path)
    rows = list(csv.DictReader(path.open()))
    n_questions = sum(len(r.results) + len(r.manual) for r in reports)
    assert len(rows) == n_questions + len(reports)
    modules = (a1, a2, a3, a4, a5, a6, a7)
    assert {r["question"] for r in rows if r["question"] != "TOTAL"} == {
        q.id for a in modules for q in a.QUESTIONS + getattr(a, "MANUAL", [])}
    written = [r for r in rows if r["name"] == "written answer"]
    assert [r["question"] for r in written] == ["a6.q5"] and written[0]["points"] == ""
    assert "TOTAL" in format_table(reports)


def test_written_answers_are_listed_not_graded(solution_reports, student_reports):
    """A6's proof is graded by hand: listed with its points, never scored automatically."""
    for reports, expect in ((solution_reports, "grade by hand"), (student_reports,
                                                                   "unanswered")):
        rep = reports["a6"]
        assert [r["question"] for r in rep.manual] == ["a6.q5"]
        assert rep.manual_points == 4 and expect in rep.manual[0]["message"]
        assert "+ 4 by hand" in format_table([rep])
    words = int(solution_reports["a6"].manual[0]["message"].split(": ")[1].split()[0])
    assert words > 200                      # the model proof (and rubric) of the solution


def test_grader_survives_a_broken_submission_and_ignores_check_cells(tmp_path):
    """A wrong KL, a cell that raises, deleted and patched checks: graded, useful message."""
    nb = nbformat.reads(make.generate("solution")["a1_gaussian_kl.ipynb"], as_version=4)
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith("a1.check"):
            continue                                           # student deleted the checks
        if "def gaussian_kl" in cell.source:
            cell.source = cell.source.replace("(2 * std**2)", "std**2")   # forgot the 1/2
        cells.append(cell)
    cells.insert(3, nbformat.v4.new_code_cell("undefined_name + 1"))
    cells.append(nbformat.v4.new_code_cell(                  # tampering with the checks
        "a1.check_kl = lambda *args, **kwargs: None\na1.QUESTIONS.clear()"))
    nb.cells = cells
    path = tmp_path / "submission.ipynb"
    nbformat.write(nb, path)
    rep = grade_notebook(path)
    by_q = {r["question"]: r for r in rep.results}
    assert not rep.error and any("NameError" in e for e in rep.cell_errors)
    assert by_q["a1.q1"]["points"] == 0 and "1/2" in by_q["a1.q1"]["message"]
    assert by_q["a1.q3"]["points"] == 0       # the path KL inherits the wrong per-step KL


def test_grader_reports_an_unreadable_notebook(tmp_path, capsys):
    from ctrl_teach.assignments.grade import main

    path = tmp_path / "a1_broken.ipynb"
    path.write_text("{not json")
    rep = grade_notebook(path)
    assert rep.error.startswith("cannot read notebook") and rep.points == 0
    out = tmp_path / "grades.csv"
    assert main([str(path), "--csv", str(out)]) == 0           # the command does not crash
    rows = list(csv.DictReader(out.open()))
    assert rows[-1]["question"] == "TOTAL" and "cannot read notebook" in rows[-1]["message"]


def test_make_assignments_check_command(capsys):
    assert make.main(["--check"]) == 0
    assert "up to date" in capsys.readouterr().out


# -- typical wrong answers get messages that say what to look at --------------------------
def _kl(mp, mq, std):
    return (mp - mq).flatten(1).pow(2).sum(1) / (2 * std**2)


@pytest.mark.parametrize("wrong, expect", [
    (lambda mp, mq, s: (mp - mq).flatten(1).pow(2).sum(1) / s**2, "factor 1/2"),
    (lambda mp, mq, s: (mp - mq).pow(2).sum(0) / (2 * s**2), "batch axis"),
    (lambda mp, mq, s: (mp - mq).pow(2).sum(1) / (2 * s**2), "dimension except the first"),
    (lambda mp, mq, s: (mp - mq).flatten(1).pow(2).mean(1) / (2 * s**2), "averaged"),
    (lambda mp, mq, s: (mp - mq).flatten(1).pow(2).sum(1) / (2 * s), "std squared"),
    (lambda mp, mq, s: _kl(mp, mq, s).sum(), "one KL per row"),
    (lambda mp, mq, s: torch.tensor(_kl(mp, mq, s).tolist()), "not differentiable"),
])
def test_a1_wrong_kl_messages(wrong, expect):
    for hidden in (False, True):
        res = a1.check_kl(wrong, hidden=hidden, verbose=False)
        assert not res.passed and expect in res.message, res.message


def test_a1_controlled_step_messages():
    def unscaled(step, a):
        return step.mean + a, _kl(step.mean + a, step.mean, step.std)

    def no_raise(step, a):
        return step.mean + step.std * a, 0.5 * a.pow(2).sum(1)

    res = a1.check_controlled_step(unscaled, verbose=False)
    assert res.points == 0 and "step.mean + step.std * a" in res.message
    res = a1.check_controlled_step(no_raise, verbose=False)
    assert res.points == 1 and "ValueError" in res.message
    res = a1.check_controlled_step(lambda s, a: (_ for _ in ()).throw(NotImplementedError()),
                                   verbose=False)
    assert res.points == 0 and "not implemented yet" in res.message


def test_a2_wrong_answers():
    from ctrl_teach.assignments.a2 import _normal_logpdf

    res = a2.check_alpha_log_z(lambda s, y, tau: _normal_logpdf(y, 0.0, 1.0 + tau**2),
                               verbose=False)
    assert not res.passed and "gaussian_sampler_moments" in res.message

    def rollout(aug, reward, n, generator, detach=False, kl_factor=0.5, scaled=True):
        x = torch.randn(n, 1, generator=generator)
        y = torch.zeros(n, dtype=torch.long)
        kl = torch.zeros(n)
        for i in range(aug.sampler.num_steps):
            step = aug.pretrained_step(x, i, None)
            if step.std == 0:
                x = step.mean
                continue
            a = aug.head(x, torch.full((n,), step.t), None, y)
            kl = kl + kl_factor * a.pow(2).sum(1)
            shift = step.std * a if scaled else a
            x = step.mean + shift + step.std * torch.randn(x.shape, generator=generator)
            x = x.detach() if detach else x
        return x, reward(x)[:, 0] - kl

    assert a2.check_rollout(rollout, hidden=True, verbose=False).passed
    res = a2.check_rollout(lambda *args: rollout(*args, kl_factor=1.0), verbose=False)
    assert not res.passed and "|a|^2 / 2" in res.message
    res = a2.check_rollout(lambda *args: rollout(*args, detach=True), verbose=False)
    assert 0 < res.points < 3 and "detach" in res.message
    res = a2.check_rollout(lambda *args: rollout(*args, scaled=False), verbose=False)
    assert res.points == 0 and "noise units" in res.message
    # an untrained model is called out as such
    *_, fresh = a2.make_problem()
    res = a2.check_trained(fresh, verbose=False)
    assert res.points == 0 and "did not move" in res.message


def test_a1_reference_chain_is_the_library_chain():
    """The check's reference (the library's run_chain) draws what sampler.sample draws."""
    network, sampler, control, seed, c = a1._setup_q3(hidden=False)
    x, kl = a1._reference_sample(network, sampler, control, 64, c, seed)
    x_lib = sampler.sample(network, 64, c=c, control=control,
                           generator=torch.Generator().manual_seed(seed))
    assert torch.equal(x, x_lib) and kl.shape == (64,) and bool((kl > 0).all())


def test_a2_problem_is_seeded_without_touching_the_global_rng():
    from ctrl_teach.ctrl import HeadAugmentedModel

    state = torch.get_rng_state()
    sampler, network, _, aug = a2.make_problem(seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    with torch.random.fork_rng():
        torch.manual_seed(3)                 # what make_problem did before (issue 10)
        want = HeadAugmentedModel(network, sampler, num_labels=1, width=64)
    assert all(torch.equal(p, q) for p, q in zip(aug.parameters(), want.parameters()))


def test_multiple_choice_checks_share_one_grader():
    res = a4.check_answers({"shrinks_with_N": "Reward", "ctrl_minus_rejection": "fine-tuning",
                            "cheaper_per_sample": " CTRL "}, verbose=False)
    assert res.passed and res.message == "all three readings right"
    res = a3.check_answers(["below"], verbose=False)
    assert res.points == 0 and "must be a dict" in res.message
    assert "below" not in res.message and "'diagram': ..." in res.message  # no answer leaked
    assert "Introduced in: Chapter 5" in a3.check_answers.__doc__
    assert "Introduced in: Chapter 8" in a4.check_answers.__doc__


def test_a3_wrong_answers():
    from ctrl_teach.ctrl import TemperatureScaled

    # forgetting calibration: an over-confident reward (true log-probs sharpened 2x)
    overconfident = TemperatureScaled(a3.true_classifier(), 0.5)
    res = a3.check_reward(overconfident, hidden=True, verbose=False)
    assert res.points == 0 and "over-confident" in res.message and "calibrate" in res.message
    assert a3.check_reward(a3.true_classifier(), hidden=True, verbose=False).passed

    def unweighted_ece(probs, labels, n_bins=15):
        import numpy as np
        conf, pred = probs.max(1).values.numpy(), probs.argmax(1).numpy()
        correct = (pred == labels.numpy()).astype(float)
        which = np.clip(np.digitize(conf, np.linspace(0, 1, n_bins + 1)[1:-1], right=True),
                        0, n_bins - 1)
        return float(np.mean([abs(correct[which == b].mean() - conf[which == b].mean())
                              for b in range(n_bins) if (which == b).any()]))

    res = a3.check_ece(unweighted_ece, verbose=False)
    assert not res.passed and "n_b / N" in res.message
    res = a3.check_fit_temperature(lambda lp, y: 1.0, verbose=False)
    assert not res.passed and "T =" in res.message
    res = a3.check_answers({"diagram": "above", "temperature": "greater", "gamma": "greater"},
                           verbose=False)
    assert 0 < res.points < res.max_points and "diagram" in res.message


def test_a4_wrong_answers():
    from ctrl_teach.ctrl import rejection_sample_pretrained

    pre = a4.make_pretrained()

    def wrong_label(reward, n, seed):
        return rejection_sample_pretrained(pre, reward, n, c=None, y=0,
                                           generator=torch.Generator().manual_seed(seed))

    def no_rejection(reward, n, seed):
        return pre.sample(n, c=None, generator=torch.Generator().manual_seed(seed))

    res = a4.check_rejection(wrong_label, verbose=False)
    assert not res.passed and "y = 1" in res.message
    res = a4.check_rejection(no_rejection, verbose=False)
    assert not res.passed and "pre-trained" in res.message
    res = a4.check_ctrl(no_rejection, verbose=False)       # pre-trained samples, mean ~0
    assert res.points == 0 and "not much closer than the pre-trained" in res.message
    res = a4.check_fit_reward(lambda n, seed: a4.LogisticReward(), verbose=False)
    assert res.points == 0 and "same probabilities" in res.message
    res = a4.check_results({8: {}}, verbose=False)
    assert not res.passed and "keys" in res.message
    res = a4.check_answers({"shrinks_with_N": "finetuning"}, verbose=False)
    assert res.points == 0 and "missing" in res.message
    assert a4.LogisticReward().num_labels == 2       # the reward contract CTRL reads


# -- assignments 5-7 ----------------------------------------------------------------------
def test_a5_wrong_answers():
    def guided(sign=-1.0, factor="b"):
        def fn(network, classifier, schedule, x, t, y, scale):
            with torch.enable_grad():
                xr = x.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(classifier(xr, t)[:, y].sum(), xr)
            _, b = schedule.signal_and_noise(t)
            coef = {"b": b, "none": torch.ones_like(b), "b2": b * b}[factor]
            return network(x, t) + sign * scale * coef[:, None] * grad
        return fn

    assert a5.check_guided_eps(guided(), hidden=True, verbose=False).passed
    res = a5.check_guided_eps(guided(sign=1.0), verbose=False)
    assert res.points == 0 and "wrong sign" in res.message
    res = a5.check_guided_eps(guided(factor="none"), verbose=False)
    assert res.points == 0 and "sqrt(1 - abar_t)" in res.message
    res = a5.check_guided_eps(guided(factor="b2"), verbose=False)
    assert res.points == 0 and "square" in res.message

    def only_sigma(sampler):
        return sampler.sigmas.clone(), sampler.sigmas.clone()

    res = a5.check_shift_coefficients(only_sigma, verbose=False)
    assert res.points == 0 and "sigma_t^2" in res.message

    def mean_only(sampler):
        return sampler.sigmas**2, sampler.sigmas**2

    res = a5.check_shift_coefficients(mean_only, verbose=False)
    assert res.points == 1.5 and "eps form" in res.message
    res = a5.check_cfg(lambda c, n, w: (1 + w) * n - w * c, verbose=False)
    assert res.points == 0 and "swapped" in res.message
    res = a5.check_answers({"pushes_harder": "mean", "mean_form_at_s1": "under",
                            "clean_at_noisy": "over", "ddim_mean_form": "nothing"},
                           verbose=False)
    assert res.points == 1.5 and "pushes_harder" in res.message


def test_a5_exact_problem():
    """The noisy classifier is exact: at s = 1 classifier guidance is the posterior's
    eps-network, and the DDPM coefficients are the closed forms."""
    from ctrl_teach.baselines import ClassifierGuided
    from ctrl_teach.diffusion import ExactMixtureDenoiser

    schedule, network, sampler, clf = a5.make_problem()
    x = 2 * torch.randn(128, 2, generator=torch.Generator().manual_seed(0))
    exact = ExactMixtureDenoiser(a5.posterior_mixture(1), schedule)
    for t in (1, 25, 50):
        tt = torch.full((128,), t)
        guided = ClassifierGuided(network, clf, schedule, y=1, scale=1.0)(x, tt)
        assert torch.allclose(guided, exact(x, tt), atol=1e-4)
    mean_form, eps_form = a5.reference_shift_coefficients(sampler)
    t = sampler.timesteps
    beta = 1 - schedule.alpha_bar[t] / schedule.alpha_bar[t - 1]
    assert torch.allclose(eps_form, beta / (1 - beta).sqrt(), rtol=1e-6)
    assert bool((eps_form[:-1] > mean_form[:-1]).all())
    assert abs(a5.posterior_label_probability() - 0.7205) < 1e-3


def test_a6_wrong_answers():
    import math

    from ctrl_teach.ctrl import gaussian_optimal_control

    def forward_value(x, sampler, i, y_obs, tau, alpha):   # the forward-process classifier
        ab = float(sampler.schedule.alpha_bar[int(sampler.timesteps[i])]) if i < \
            sampler.num_steps else 1.0
        var = tau**2 + 1 - ab
        return -0.5 * (y_obs - ab**0.5 * x[:, 0].double()) ** 2 / var - 0.5 * math.log(
            2 * math.pi * var)

    res = a6.check_soft_value(forward_value, verbose=False)
    assert res.points == 0 and "forward" in res.message

    def alpha_one_only(x, sampler, i, y_obs, tau, alpha):   # tilting ignored
        return alpha * a6.reference_soft_value(x, sampler, i, y_obs, tau, 1.0)

    res = a6.check_soft_value(alpha_one_only, verbose=False)
    assert res.points == 1.5 and "alpha = 1" in res.message

    def at_mean(value_next, sampler, i, x, alpha):
        from ctrl_teach.diffusion import gaussian_step_affine
        s, b, _ = gaussian_step_affine(sampler, i, 0.0, 1.0)
        return value_next(s * x + b)

    res = a6.check_soft_bellman(at_mean, verbose=False)
    assert res.points == 0 and "v_t'(mean)" in res.message

    def sigma_squared(x, sampler, i, y_obs, tau, alpha):
        from ctrl_teach.ctrl import GaussianLikelihood
        a = gaussian_optimal_control(x, sampler, 0.0, 1.0, GaussianLikelihood([y_obs], tau), i,
                                     y=0, alpha=alpha)
        return a * float(sampler.sigmas[i])

    res = a6.check_optimal_control(sigma_squared, verbose=False)
    assert res.points == 0 and "sigma_t too many" in res.message
    res = a6.check_constant_policy_gap(
        lambda a, alpha, n, seed: (a6.reference_gap(a, alpha) - alpha * 19 * a * a / 2, 0.01),
        verbose=False)
    assert res.points == 0 and "no KL price" in res.message
    assert a6.check_constant_policy_gap(
        lambda a, alpha, n, seed: (a6.reference_gap(a, alpha), 0.01), hidden=True,
        verbose=False).passed


def test_a6_reference_gap_is_the_certificate():
    """At a = 0 the gap is alpha log Z - E_pre[r] (the KL of the pre-trained path to the
    optimum), positive, and smallest near the best constant control."""
    import math

    from ctrl_teach.ctrl import gaussian_log_evidence
    from ctrl_teach.diffusion import gaussian_sampler_moments

    sampler, _ = a6.make_problem()
    m, v = gaussian_sampler_moments(sampler, 0.0, 1.0)
    expected_r = -0.5 * math.log(2 * math.pi * a6.TAU**2) - (
        (a6.Y_OBS - m) ** 2 + v) / (2 * a6.TAU**2)
    log_z = gaussian_log_evidence(m, v, a6.Y_OBS, a6.TAU)
    assert abs(a6.reference_gap(0.0, 1.0) - (log_z - expected_r)) < 1e-9
    gaps = [a6.reference_gap(a, 1.0) for a in (0.0, 0.1, 0.2, 0.3)]
    assert min(gaps) > 0 and gaps[2] < gaps[0] and gaps[2] < gaps[3]


def test_a7_wrong_answers():
    def column_major(t1, t2, x):
        return (t1(x)[:, None, :] + t2(x)[:, :, None]).reshape(-1, 4)

    res = a7.check_product(column_major, verbose=False)
    assert res.points == 0 and "row-major" in res.message

    def averages(y1, y2, p1, p2):
        return float((y1 * y2).double().mean() - p1.mean() * p2.mean()), 0.01

    res = a7.check_ci_gap(averages, verbose=False)
    assert res.points == 0 and "point by point" in res.message
    res = a7.check_fit_task(lambda x, y, seed: a7.LogisticTask(), verbose=False)
    assert res.points == 0 and "trained" in res.message
    res = a7.check_answers({"disjoint_detects": "yes", "product_under_correlation": "under",
                            "stronger_with_weights_2_1": "y1"}, verbose=False)
    assert 0 < res.points < res.max_points and "disjoint_detects" in res.message


def test_a7_untrained_model_is_called_out():
    from ctrl_teach.ctrl import HeadAugmentedModel
    from ctrl_teach.profiles import seeded_init

    pre = a7.make_pretrained()
    with seeded_init(0):
        fresh = HeadAugmentedModel(pre.network, pre.sampler, num_labels=4)
    res = a7.check_trained(fresh, verbose=False)
    assert res.points == 0 and "has not moved" in res.message

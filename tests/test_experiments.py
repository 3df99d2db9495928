"""Reduced versions of every Chapter 8 experiment: schema and sanity (not learning claims).

The sizes are tiny (``reduced_config``): CTRL and CFG are far from converged here, so the
checks are only that the pipeline runs end to end, the JSON follows benchmarks/SCHEMA.md,
distances are finite, exact references behave as references, and costs are consistent.
Digits are exercised by a cheap metric check only (their experiments run in the benchmark).
"""

import copy
import dataclasses
import json
import math

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from ctrl_teach.experiments import (  # noqa: E402
    CountingNetwork,
    CTRLFit,
    Problem,
    ProblemClassifierFit,
    digits_problem,
    evaluate_samples,
    experiment_config,
    fit_ctrl,
    fit_methods,
    fit_problem_classifier,
    format_tables,
    method_samplers,
    plot_all,
    reduced_config,
    run_all,
    run_sampling_cost,
    toy_problem,
    two_attribute_toy,
    validate_results,
)


@pytest.fixture(scope="module")
def results():
    torch.manual_seed(0)
    cfg = reduced_config()
    cfg["sample_efficiency"]["digits_sizes"] = []
    return run_all(cfg, profile="reduced", progress=False)


def _rows(res, method):
    return [r for r in res["rows"] if r["method"] == method]


def test_schema_and_json_roundtrip(results):
    validate_results(results)
    text = json.dumps(results)
    validate_results(json.loads(text))
    assert set(results["timings"]) == {"sample_efficiency", "dataset_construction", "strength",
                                       "sampling_cost", "finetune_cost"}
    table = format_tables(results)
    for title in ("(a)", "(b)", "(c)", "(d)", "(e)"):
        assert title in table


def test_schema_rejects_bad_results(results):
    bad = copy.deepcopy(results)
    bad["strength"]["rows"][0]["ed"] = float("nan")
    with pytest.raises(ValueError, match="ed"):
        validate_results(bad)
    bad = copy.deepcopy(results)
    del bad["config"]
    with pytest.raises(ValueError, match="config"):
        validate_results(bad)
    with pytest.raises(ValueError, match="results"):
        validate_results([])


def test_sample_efficiency_sanity(results):
    se = results["sample_efficiency"]["toy-gmm"]
    assert se["sizes"] == ["50", "all"]
    methods = {r["method"] for r in se["rows"]}
    assert methods == {"ctrl", "cfg", "cg", "dps", "rejection"}
    for r in se["rows"] + se["references"]:
        assert math.isfinite(r["ed"]) and 0 <= r["accuracy"] <= 1 and r["diversity"] > 0
    refs = {r["method"]: r for r in se["references"]}
    # the exact samplers beat doing nothing on the true accuracy and on the distance
    for rej in _rows(se, "rejection"):
        assert rej["accuracy"] > refs["pretrained"]["accuracy"] + 0.1
        assert rej["ed"] < refs["pretrained"]["ed"]
    assert refs["target"]["accuracy"] > refs["pretrained"]["accuracy"] + 0.1
    assert abs(refs["target"]["ed"]) < 0.05          # two exact draws: noise floor
    n_all = [r["n_labelled"] for r in se["rows"] if r["size"] == "all"]
    assert all(n == results["config"]["toy"]["pool_size"] for n in n_all)


def test_dataset_construction_budgets(results):
    dc = results["dataset_construction"]
    for r in dc["rows"]:
        assert r["labels"] == r["budget"]
        assert r["labelled_points"] == (r["budget"] // 2 if r["data"] == "joint"
                                        else r["budget"])
        assert 0 <= r["accuracy"] <= min(r["accuracy_attr1"], r["accuracy_attr2"]) + 1e-6
        # every CTRL fit carries the plateau statistic of its own J curve
        assert ("ctrl_plateau" in r) == (r["method"] == "ctrl")
        if r["method"] == "ctrl":
            iters = results["config"]["toy"]["ctrl_iterations"]
            assert r["ctrl_plateau"]["iterations"] == iters


def test_strength_zero_is_pretrained(results):
    rows = results["strength"]["rows"]
    zero = {r["method"]: r for r in rows if r["value"] == 0.0}
    # classifier guidance and DPS at strength 0 are the pre-trained sampler, same noise
    assert zero["cg"]["ed"] == pytest.approx(zero["dps"]["ed"], abs=1e-6)
    guided = [r for r in rows if r["method"] in ("cg", "dps") and r["value"] == 1.0]
    assert all(r["accuracy"] > zero["cg"]["accuracy"] for r in guided)
    ctrl = {r["value"]: r["ctrl_plateau"]["iterations"] for r in rows if r["method"] == "ctrl"}
    assert ctrl == {1.0: results["config"]["toy"]["ctrl_iterations"],   # the reused fit
                    2.0: results["config"]["strength"]["ctrl_iterations"]}


def test_sampling_cost_consistent(results):
    sc = results["sampling_cost"]["toy-gmm"]
    rows = {r["method"]: r for r in sc["rows"]}
    K = sc["num_steps"]
    assert rows["pretrained"]["nfe_per_sample"] == K
    assert rows["ctrl"]["nfe_per_sample"] == K
    assert rows["cfg"]["nfe_per_sample"] == 2 * K          # w > 0: two evaluations a step
    assert rows["dps"]["backward_per_sample"] == K
    assert rows["rejection"]["nfe_per_sample"] > K
    for r in sc["rows"]:
        assert r["nfe_ratio_to_ctrl"] > 0 and r["time_ratio_to_ctrl"] > 0
        assert r["seconds_per_1000"] > 0


def test_finetune_cost_memory(results):
    fc = results["finetune_cost"]["toy-gmm"]
    assert fc["memory_method"] in ("autograd_saved_bytes", "cuda_max_memory_allocated")
    rows = {(r["num_steps"], r["mode"]): r for r in fc["rows"]}
    ks = sorted({k for k, _ in rows})
    assert rows[(ks[-1], "full")]["peak_memory_bytes"] > rows[(ks[0], "full")][
        "peak_memory_bytes"]
    assert rows[(ks[-1], "checkpoint")]["peak_memory_bytes"] < rows[(ks[-1], "full")][
        "peak_memory_bytes"]
    assert all(r["seconds_per_iteration"] > 0 and r["time_ratio_to_full"] > 0
               for r in fc["rows"])


def test_figures(results):
    figs = plot_all(json.loads(json.dumps(results)))
    assert set(figs) == {"sample_efficiency", "dataset_construction", "strength",
                         "sampling_cost", "finetune_cost"}
    import matplotlib.pyplot as plt

    for fig in figs.values():
        assert fig.axes
        plt.close(fig)


def test_digit_metrics_on_real_digits():
    problem = digits_problem(settings=reduced_config()["digits"])
    gen = torch.Generator().manual_seed(0)
    target = problem.target(200, c=None, y=2, generator=gen)
    ref = problem.target(100, c=None, y=2, generator=gen, part="reference")   # disjoint
    assert not any(torch.equal(a, b) for a in ref[:20] for b in target)
    r = evaluate_samples(problem, ref, target, c=None, y=2, generator=gen)
    assert r["accuracy"] == 1.0 and abs(r["ed"]) < 0.2
    other = problem.target(100, c=None, y=0, generator=gen)
    r0 = evaluate_samples(problem, other, target, c=None, y=2, generator=gen)
    assert r0["accuracy"] == 0.0 and r0["ed"] > r["ed"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="profile"):
        experiment_config("fast")
    with pytest.raises(ValueError, match="only"):
        run_all(reduced_config(), only=["nothing"])


def test_saved_tensor_bytes_tracks_live_graph():
    from ctrl_teach.experiments import saved_tensor_bytes

    torch.manual_seed(0)
    w = torch.randn(50, 50, requires_grad=True)
    x0 = torch.randn(8, 50)

    def chain(cut):
        x = x0
        for i in range(20):
            if i == cut:
                x = x.detach()
            x = torch.tanh(x @ w / 7)
        return x.sum()

    chain(-1).backward()
    ref = w.grad.clone()
    w.grad = None
    loss, full = saved_tensor_bytes(lambda: chain(-1))
    loss.backward()
    assert torch.allclose(w.grad, ref)          # hooks do not change the gradient
    _, cut = saved_tensor_bytes(lambda: chain(15))
    assert 0 < cut < full                      # the dropped part of the graph is released


@pytest.fixture(scope="module")
def toy_fit():
    """Every method fitted on 200 toy points with the reduced budgets."""
    settings = reduced_config()["toy"]
    problem = toy_problem(settings=settings, pool_size=settings["pool_size"])
    x, c, y = problem.labelled_dataset(200, seed=0)
    state = torch.get_rng_state()
    fitted = fit_methods(problem, x, c, y, seed=0)
    assert torch.equal(torch.get_rng_state(), state)   # the global RNG is left alone
    return problem, fitted, (x, y)


def test_fit_results_are_dataclasses(toy_fit):
    problem, fitted, (x, y) = toy_fit
    fit = fit_problem_classifier(problem, x, y, seed=0)
    assert isinstance(fit, ProblemClassifierFit)
    assert fit.metrics() == fitted.classifier_metrics            # same seed, same fit
    assert fit.n_val == 40 and fit.temperature > 0 and 0 <= fit.val_accuracy <= 1
    ctrl = fit_ctrl(problem, fit.reward, iterations=3, seed=0)
    assert isinstance(ctrl, CTRLFit) and len(ctrl.history.J) == 3
    assert ctrl.augmented.network is problem.network


def test_warm_start_leaves_init_untouched(toy_fit):
    problem, fitted, _ = toy_fit
    before = copy.deepcopy(fitted.ctrl.head.state_dict())
    warm = fit_ctrl(problem, fitted.classifier, gamma=2.0, iterations=3, seed=0,
                    init=fitted.ctrl).augmented
    assert warm is not fitted.ctrl and warm.head is not fitted.ctrl.head
    assert warm.network is problem.network
    for k, v in fitted.ctrl.head.state_dict().items():
        assert torch.equal(v, before[k])
    assert not all(torch.equal(v, before[k]) for k, v in warm.head.state_dict().items())


def test_counting_network_changes_no_sample(toy_fit):
    problem, fitted, _ = toy_fit
    counter = CountingNetwork(problem.network)
    plain = method_samplers(problem, fitted, references=False)
    counted = method_samplers(problem, fitted, network=counter, references=False)
    for name in ("ctrl", "cg", "dps"):
        counter.reset()
        a = plain[name](50, c=0, y=1, generator=torch.Generator().manual_seed(3))
        b = counted[name](50, c=0, y=1, generator=torch.Generator().manual_seed(3))
        assert torch.equal(a, b), name
        assert counter.forward_count == 50 * problem.sampler.num_steps, name
    assert fitted.ctrl.network is problem.network                # nothing was swapped
    net = fitted.cfg_model.network
    run_sampling_cost(problem, fitted, 20, c=0, y=1, progress=False)
    assert fitted.cfg_model.network is net and not isinstance(net, CountingNetwork)


def test_two_attribute_toy_is_a_new_problem():
    settings = reduced_config()["toy"]
    two = two_attribute_toy(settings=settings, pool_size=settings["pool_size"])
    assert "attribute_prob" in {f.name for f in dataclasses.fields(Problem)}
    assert two.name == "toy-gmm-2attr" and two.num_labels == 4
    x = two.target(100, c=0, y=3, generator=torch.Generator().manual_seed(0))
    p1, p2 = two.attribute_prob(x, 0), two.attribute_prob(x, 1)
    assert torch.allclose(two.true_prob(x, 3), p1 * p2)
    assert toy_problem(settings=settings, pool_size=100).attribute_prob is None

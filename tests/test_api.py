"""The public API speaks one dialect (CONTRIBUTING.md, "The API convention").

* signatures: no ``cond`` parameter, ``c`` before ``y``, ``y`` never defaulted where a sample
  is drawn for a label, training budgets are ``iterations``, label counts ``num_labels``;
* every exported function and class says where the book introduces it;
* library calls that take a generator or a seed leave the caller's global RNG untouched;
* ``import ctrl_teach`` is lazy (no torch) and the top level exposes the main entry points.
"""

import importlib
import inspect
import subprocess
import sys

import pytest
import torch

SUBPACKAGES = ["ctrl_teach.diffusion", "ctrl_teach.baselines", "ctrl_teach.target",
               "ctrl_teach.ctrl", "ctrl_teach.data", "ctrl_teach.evaluation",
               "ctrl_teach.pretrained", "ctrl_teach.experiments", "ctrl_teach.profiles",
               "ctrl_teach.beyond", "ctrl_teach.diffusers_bridge", "ctrl_teach.diagrams"]
# data objects and constants that are exported but are not functions or classes
_NOT_CALLABLE = (str, int, float, tuple, list, dict)


def _exported():
    """``(qualified name, object)`` for every exported function and class."""
    out = {}
    for mod_name in SUBPACKAGES:
        mod = importlib.import_module(mod_name)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if isinstance(obj, _NOT_CALLABLE) or not callable(obj):
                continue
            out[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return sorted(out.items())


def _callables():
    """Every exported function, and every public method of every exported class."""
    for qual, obj in _exported():
        if inspect.isclass(obj):
            yield qual, obj.__init__
            for name, member in vars(obj).items():
                if name.startswith("_") or name == "forward":
                    continue
                if isinstance(member, (classmethod, staticmethod)):
                    member = member.__func__
                if inspect.isfunction(member):
                    yield f"{qual}.{name}", member
        else:
            yield qual, obj


# parameters that must never appear, with the name that replaced them
_RENAMED = {"cond": "c", "num_classes": "num_labels", "steps": "iterations",
            "cond_drop_prob": "c_drop_prob"}


@pytest.mark.parametrize("qual,fn", list(_callables()), ids=lambda v: v if isinstance(v, str)
                         else "")
def test_signature_follows_the_convention(qual, fn):
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        pytest.skip("no signature")
    names = list(params)
    for old, new in _RENAMED.items():
        assert old not in names, f"{qual}: parameter {old!r} is called {new!r} in this library"
    if "c" in names and "y" in names:
        kinds = {params["c"].kind, params["y"].kind}
        fitting = params["y"].kind is not inspect.Parameter.KEYWORD_ONLY and \
            params["c"].kind is inspect.Parameter.KEYWORD_ONLY   # scikit-learn's fit(x, y, *, c)
        if not fitting and len(kinds) == 1:
            assert names.index("c") < names.index("y"), f"{qual}: the order is (c, y)"
    if "y" in names:
        y = params["y"]
        assert y.default is inspect.Parameter.empty, f"{qual}: y must not have a default"


def test_sampling_functions_take_c_and_y_by_keyword():
    from ctrl_teach.ctrl import ConditionedModel, evaluate_against_target, rollout, sample
    from ctrl_teach.diffusion import DiffusionSampler
    from ctrl_teach.pretrained import PretrainedDiffusion
    from ctrl_teach.target import (
        log_partition,
        mean_confidence,
        rejection_sample,
        rejection_sample_pretrained,
    )

    fns = [sample, rollout, evaluate_against_target, ConditionedModel.sample,
           ConditionedModel.evaluate, rejection_sample, rejection_sample_pretrained,
           log_partition, mean_confidence, DiffusionSampler.sample, PretrainedDiffusion.sample]
    for fn in fns:
        params = inspect.signature(fn).parameters
        for name in ("c", "y"):
            if name in params:
                assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, (fn, name)


def test_every_export_says_where_it_is_introduced():
    missing = [q for q, obj in _exported() if "Introduced in" not in (obj.__doc__ or "")]
    assert not missing, f"no 'Introduced in' in the docstring of: {missing}"


def test_import_is_lazy_and_top_level_has_the_entry_points():
    code = ("import sys, ctrl_teach; assert 'torch' not in sys.modules, 'torch imported'; "
            "from ctrl_teach import load_pretrained, fit_classifier, condition_pretrained, "
            "pretrain_on_points, rejection_sample, energy_distance, load_toy; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    import ctrl_teach

    for name in ctrl_teach.__all__:
        assert getattr(ctrl_teach, name) is not None
    with pytest.raises(AttributeError):
        ctrl_teach.no_such_name  # noqa: B018


def test_layers_baselines_never_import_ctrl():
    import pathlib

    root = pathlib.Path(importlib.import_module("ctrl_teach").__file__).parent
    for path in [*(root / "baselines").glob("*.py"), *(root / "diffusion").glob("*.py"),
                 root / "target.py"]:
        text = path.read_text()
        assert "from ..ctrl" not in text and "from .ctrl" not in text, path


# -- the caller's RNG -----------------------------------------------------------------------
def _tiny_problem():
    from ctrl_teach.data import load_toy

    g = torch.Generator().manual_seed(0)
    x, c = load_toy("gmm").sample_joint(400, generator=g)
    return x, c, (x[:, 0] > 0).long()


def _calls():
    from ctrl_teach.baselines import (
        NoisyMLPClassifier,
        rejection_baseline,
        train_cfg_model,
        train_noisy_classifier,
    )
    from ctrl_teach.ctrl import (
        MLPClassifier,
        condition_pretrained,
        evaluate_against_target,
        fit_classifier,
        fit_digit_reward,
        pretrain_on_points,
        rejection_sample_pretrained,
        train_calibrated_classifier,
    )
    from ctrl_teach.diffusion import DiffusionSampler

    x, c, y = _tiny_problem()
    state = {}
    classifier = MLPClassifier(2, 2)          # the test's own modules use the global RNG
    noisy_classifier = NoisyMLPClassifier(2, 2, 10, width=8)

    def pretrain():
        state["pre"] = pretrain_on_points(x, c=c, num_timesteps=10, iterations=5,
                                          progress=False)

    def fit():
        state["fit"] = fit_classifier(x, y, iterations=5)

    def condition():
        pre = state["pre"]
        state["model"] = condition_pretrained(
            pre, state["fit"].reward, sampler=DiffusionSampler(pre.schedule, num_steps=3),
            iterations=2, batch_size=8, progress=False)

    def evaluate():
        evaluate_against_target(state["model"].augmented, state["fit"].reward, c=0, y=1,
                                num_candidates=50, num_samples=20)

    def sample():
        state["model"].sample(5, c=1, y=0, generator=torch.Generator().manual_seed(1))

    def reject():
        rejection_sample_pretrained(state["pre"], state["fit"].reward, 5, c=0, y=1,
                                    generator=torch.Generator().manual_seed(2), batch=64)
        rejection_baseline(state["pre"].network, state["pre"].sampler, state["fit"].reward, 5,
                           c=0, y=1, batch=64)

    def calibrated():
        train_calibrated_classifier(classifier, x, y, iterations=3)

    def noisy():
        train_noisy_classifier(noisy_classifier, state["pre"].schedule, x, y, iterations=3)

    def cfg():
        model = state["cfg"]
        train_cfg_model(model, state["pre"].schedule, x, y, c=c, iterations=2, batch_size=8)

    def digits():
        fit_digit_reward("ink", num_buckets=2, n=64, iterations=2)

    return [pretrain, fit, condition, evaluate, sample, reject, calibrated, noisy, cfg,
            digits], state


@pytest.mark.filterwarnings("ignore::ctrl_teach.ctrl.CertificateWarning")
def test_library_calls_leave_the_global_rng_alone():
    from ctrl_teach.baselines import LabelConditionedDenoiser

    torch.manual_seed(1234)
    calls, state = _calls()
    for call in calls:
        if call.__name__ == "cfg":            # its model is built by the test, not the library
            state["cfg"] = LabelConditionedDenoiser(state["pre"].network, 2)
        before = torch.random.get_rng_state()
        call()
        after = torch.random.get_rng_state()
        assert torch.equal(before, after), f"{call.__name__} changed the global RNG state"


def test_seeded_calls_are_reproducible():
    from ctrl_teach.ctrl import fit_classifier

    x, _, y = _tiny_problem()
    a = fit_classifier(x, y, iterations=5, seed=3).reward
    torch.manual_seed(99)                     # whatever the caller's global state is
    b = fit_classifier(x, y, iterations=5, seed=3).reward
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)

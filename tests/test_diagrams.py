"""The book's conceptual figures (ctrl_teach.diagrams) draw what they claim, headless."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402

from ctrl_teach import diagrams  # noqa: E402


def _arrows(ax):
    return [p for p in ax.patches if isinstance(p, FancyArrowPatch)]


def _texts(ax):
    return [t.get_text() for t in ax.texts]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_denoising_mdp_draws_both_kernels_per_step_and_the_path_measures():
    ax = diagrams.plot_denoising_mdp()
    texts = _texts(ax)
    # 3 noisy steps drawn x 2 kernels, the last step, nu -> x_T, reward -> x_0
    assert len(_arrows(ax)) == 3 * 2 + 3
    assert sum(t.startswith(r"$p^") for t in texts) == 3      # pre-trained kernels
    assert sum(t.startswith(r"$\pi_") for t in texts) == 3         # fine-tuned kernels
    assert sum(r"\Vert a_" in t for t in texts) >= 4               # prices and the KL sum
    assert any(r"\mathbb{P}^{\mathrm{pre}}" in t for t in texts)
    assert any(r"\mathbb{P}^{\theta}" in t for t in texts)
    assert any("reward" in t for t in texts)
    assert ax.figure.get_figwidth() <= 8
    assert min(t.get_fontsize() for t in ax.texts) >= 10


def test_denoising_mdp_draws_on_a_given_axes():
    fig, ax = plt.subplots(figsize=(8, 4.6))
    assert diagrams.plot_denoising_mdp(ax) is ax
    assert len(_arrows(ax)) == 9


@pytest.mark.parametrize("variance_aware", [True, False])
def test_augmented_model_marks_frozen_new_inputs_and_noise(variance_aware):
    ax = diagrams.plot_augmented_model(variance_aware=variance_aware)
    texts = _texts(ax)
    assert len(_arrows(ax)) == 9
    assert any("pre-trained" in t for t in texts)
    assert any("control head" in t and "zero" in t for t in texts)
    assert any("label" in t and "$y$" in t for t in texts)
    assert any("condition $c$" in t for t in texts)
    assert any("noise" in t for t in texts)
    assert any(r"\log\rho" in t for t in texts) == variance_aware
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["frozen",
                                                                   "trainable (new)"]
    assert min(t.get_fontsize() for t in ax.texts) >= 10


def test_initial_laws_one_panel_each_with_the_price():
    axes = diagrams.plot_initial_laws([("a", 0.0, 1.0, 0.0), ("b", 0.5, 0.6, 0.21)])
    assert len(axes) == 2
    assert [len(ax.get_lines()) for ax in axes] == [3, 3]   # nu, nu*, the mean of nu*
    assert "0.21 nats" in _texts(axes[1])[0]
    assert r"10^{-5}" in diagrams._nats(7.2e-5)
    with pytest.raises(ValueError, match="panels"):
        diagrams.plot_initial_laws([])
    with pytest.raises(ValueError, match="variance"):
        diagrams.plot_initial_laws([("bad", 0.0, 0.0, 0.0)])


def test_certificate_curve_running_mean_and_gap():
    J = [-1.0] * 10 + [0.0] * 30
    axes = diagrams.plot_certificate_curve({"head": J}, 0.1, 0.01, window=10,
                                           held_out={"head": (0.0, 0.02)})
    ax_j, ax_gap = axes
    run = ax_j.get_lines()[1].get_ydata()
    assert run[0] == -1.0 and run[-1] == 0.0 and run[14] == pytest.approx(-0.5)
    gap = ax_gap.get_lines()[0].get_ydata()
    assert gap[-1] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="window"):
        diagrams.plot_certificate_curve({"head": J}, 0.1, 0.01, window=0)
    with pytest.raises(ValueError, match="curves"):
        diagrams.plot_certificate_curve({}, 0.1, 0.01)

"""Conceptual figures of the book: two schematic diagrams and two small data plots.

The diagrams are drawn with matplotlib patches and text only (no data):

* :func:`plot_denoising_mdp`: the sampler as a Markov chain ``x_T -> ... -> x_0``, the
  pre-trained kernels against the fine-tuned ones, the two path measures, the reward at the
  end and the KL summed per step (Chapter 3, the denoising MDP);
* :func:`plot_augmented_model`: what the augmented model freezes, what it adds, where ``c``,
  ``y`` and the noise enter (Chapter 5, "Step 2: the augmented model").

The data plots draw numbers the chapters compute with library code:

* :func:`plot_initial_laws`: the fixed initial law ``nu = N(0, 1)`` against the optimal
  ``nu* ∝ nu exp(v_T / alpha)`` and the price ``alpha KL(nu || nu*)`` of the fixed start
  (Chapter 4, eq. ``eq-initial-bias``);
* :func:`plot_certificate_curve`: ``alpha log Z`` with its error band against the running
  ``J`` of fine-tuning, and the gap between them (Chapter 5, eq. ``eq-ch5-certificate``).

Every function takes an optional ``ax`` (or ``axes``) and returns what it drew on, so a
chapter calls it in one line. Text is at least 10 pt at a figure width of at most 8 inches.
"""

from __future__ import annotations

import math

from ._checks import check_positive_int

__all__ = ["plot_denoising_mdp", "plot_augmented_model", "plot_initial_laws",
           "plot_certificate_curve"]

_FONT = 11          # labels
_SMALL = 10         # secondary labels (the smallest size used)
_FROZEN = "#d9d9d9"
_NEW = "#fdd9b5"
_PRE_COLOR = "0.45"
_FT_COLOR = "C0"


def _new_axes(ax, figsize):
    if ax is None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=figsize)
        fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.99)
    return ax


def _canvas(ax, width, height):
    """Data coordinates ``[0, width] x [0, height]``, equal aspect, no axes drawn."""
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")


def _box(ax, centre, width, height, text, *, face, edge="0.25", fontsize=_FONT, lw=1.2,
         ls="-", **text_kw):
    from matplotlib.patches import FancyBboxPatch

    x, y = centre
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                boxstyle="round,pad=0.02,rounding_size=0.12",
                                facecolor=face, edgecolor=edge, lw=lw, ls=ls))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, **text_kw)


def _arrow(ax, start, end, *, color="0.2", rad=0.0, lw=1.4, ls="-", shrink=2.0):
    from matplotlib.patches import FancyArrowPatch

    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14,
                                 connectionstyle=f"arc3,rad={rad}", color=color, lw=lw,
                                 ls=ls, shrinkA=shrink, shrinkB=shrink))


def plot_denoising_mdp(ax=None):
    """Draw the denoising MDP of the book's Definition ``def-denoising-mdp`` and its two path
    measures (CTRL, Zhao et al. 2025, Sec. 3; the chain rule, eq. ``eq-kl-chain-rule``).

    The states ``x_T = x_{t_0}, x_{t_1}, ..., x_{t_{K-1}}, x_0`` form a chain started at
    ``nu = N(0, I)``. Above each step is the pre-trained kernel ``p^pre_k``, below it the
    fine-tuned kernel ``pi_k = N(mu^pre_k + sigma_k a_k, sigma_k^2 I)`` with its price
    ``|a_k|^2 / 2``; the noise-free last step is never controlled. The reward
    ``gamma log p(y | x_0, c)`` arrives only at ``x_0``. Underneath: the path measures
    ``P^pre`` and ``P^theta`` and ``KL(P^theta || P^pre) = sum_k E |a_k|^2 / 2``.

    Args:
        ax: a matplotlib ``Axes`` to draw on; ``None`` makes a new 8 x 4.6 inch figure.

    Returns:
        The ``Axes`` (its ``.figure`` is the figure).

    Introduced in: Chapter 3 (Control as reinforcement learning).
    """
    from matplotlib.patches import Circle

    ax = _new_axes(ax, (8.0, 4.6))
    _canvas(ax, 10.0, 5.75)
    y0, r = 3.05, 0.42
    nodes = [(2.0, r"$x_T$"), (3.8, r"$x_{t_1}$"), (5.3, None),
             (6.8, r"$x_{t_{K-1}}$"), (8.6, r"$x_0$")]
    for x, label in nodes:
        if label is None:
            ax.text(x, y0, r"$\cdots$", ha="center", va="center", fontsize=16)
            continue
        ax.add_patch(Circle((x, y0), r, facecolor="white", edgecolor="0.15", lw=1.4))
        ax.text(x, y0, label, ha="center", va="center", fontsize=12)

    # the initial law and the reward
    _box(ax, (0.72, y0), 1.1, 0.95, "initial law\n" + r"$\nu = \mathcal{N}(0, I)$",
         face="white", fontsize=_SMALL)
    _arrow(ax, (1.29, y0), (2.0 - r, y0), shrink=1)
    _box(ax, (8.6, 5.15), 2.6, 0.9, "reward, only at the end\n"
         + r"$r(x_0) = \gamma\,\log p(y \mid x_0, c)$", face="#e5f2e5", fontsize=_SMALL)
    _arrow(ax, (8.6, 4.7), (8.6, y0 + r), color="C2", shrink=1)

    # noisy steps: pre-trained kernels above, fine-tuned kernels below
    steps = [(0, 1, "0"), (1, 2, "1"), (2, 3, "K-2")]
    for i, j, k in steps:
        xa, xb = nodes[i][0], nodes[j][0]
        ra = r if nodes[i][1] else 0.3
        rb = r if nodes[j][1] else 0.3
        a, b = (xa + ra * 0.8, y0 + ra * 0.6), (xb - rb * 0.8, y0 + rb * 0.6)
        _arrow(ax, a, b, color=_PRE_COLOR, rad=-0.45, ls="--")
        xm = (xa + xb) / 2
        ax.text(xm, y0 + 0.85, rf"$p^{{\mathrm{{pre}}}}_{{{k}}}$", ha="center",
                va="center", fontsize=_FONT, color=_PRE_COLOR)
        a, b = (xa + ra * 0.8, y0 - ra * 0.6), (xb - rb * 0.8, y0 - rb * 0.6)
        _arrow(ax, a, b, color=_FT_COLOR, rad=0.45)
        ax.text(xm, y0 - 0.82, rf"$\pi_{{{k}}}$", ha="center", va="center",
                fontsize=_FONT, color=_FT_COLOR)
        ax.text(xm, y0 - 1.22, rf"$\frac{{1}}{{2}}\Vert a_{{{k}}}\Vert^2$",
                ha="center", va="center", fontsize=_SMALL, color=_FT_COLOR)
    # the noise-free last step: one kernel for both, never controlled
    _arrow(ax, (6.8 + r, y0), (8.6 - r, y0), color="0.15")
    ax.text(7.7, y0 + 0.3, r"$\sigma_{K-1} = 0$", ha="center", va="bottom",
            fontsize=_SMALL)
    ax.text(7.7, y0 - 0.3, "$a = 0$,\nnever\ncontrolled", ha="center", va="top",
            fontsize=_SMALL)

    # row labels at the left, path measures underneath
    ax.text(0.15, y0 + 0.9, "pre-trained\nkernels", ha="left", va="center",
            fontsize=_SMALL, color=_PRE_COLOR)
    ax.text(0.15, y0 - 1.05, "fine-tuned\nkernels,\nprice per step", ha="left",
            va="center", fontsize=_SMALL, color=_FT_COLOR)
    ax.text(0.15, 0.95, r"$\mathbb{P}^{\mathrm{pre}} = \nu \prod_k p^{\mathrm{pre}}_k$",
            ha="left", va="center", fontsize=_FONT, color=_PRE_COLOR)
    ax.text(0.15, 0.35, r"$\mathbb{P}^{\theta} = \nu \prod_k \pi_k$", ha="left",
            va="center", fontsize=_FONT, color=_FT_COLOR)
    ax.text(3.0, 0.65, r"$\mathrm{KL}(\mathbb{P}^{\theta} \Vert \mathbb{P}^{\mathrm{pre}})"
            r" = \sum_k \mathbb{E}\,\frac{1}{2}\Vert a_k\Vert^2$" + "\n"
            + r"$J = \mathbb{E}[r(x_0)] - \alpha\,\mathrm{KL}$", ha="left", va="center",
            fontsize=_FONT)
    return ax


def plot_augmented_model(ax=None, variance_aware=True):
    """Draw one step of CTRL's augmented model (Zhao et al. 2025, Sec. 4; the book's
    ``HeadAugmentedModel`` and the step ``N(mu^pre_k + sigma_k a_k, sigma_k^2 diag(rho_k^2))``).

    Frozen (grey): the pre-trained eps-network ``eps^pre(x_t, t, c)`` and the sampler step it
    defines, mean ``mu^pre_k`` and std ``sigma_k``. New (orange): the control head
    ``a_phi(x_t, t, c, y)``, whose last layer is zero so that the model starts at the
    pre-trained one; with ``variance_aware`` it also outputs ``log rho_k``. The noise ``z_k``
    enters where the next state is drawn, and the price of the step is its KL to the
    pre-trained step (``control_kl``).

    Args:
        ax: a matplotlib ``Axes`` to draw on; ``None`` makes a new 8 x 4.4 inch figure.
        variance_aware: draw the variance-aware class (the head also outputs ``log rho``,
            the price has the variance terms); ``False`` draws the mean-only step.

    Returns:
        The ``Axes`` (its ``.figure`` is the figure).

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    from matplotlib.patches import Patch

    ax = _new_axes(ax, (8.0, 4.4))
    _canvas(ax, 10.0, 5.5)
    top, low = 3.85, 1.75
    # inputs
    _box(ax, (0.75, top), 1.3, 0.95, r"$x_{t_k},\ t_k$" + "\n" + r"condition $c$",
         face="white", fontsize=_SMALL)
    _box(ax, (0.75, low), 1.3, 0.95, "new label\n" + r"$y$", face="white",
         fontsize=_SMALL)
    # frozen path
    _box(ax, (3.05, top), 2.3, 0.95,
         "pre-trained\n" + r"$\epsilon^{\mathrm{pre}}(x_{t_k}, t_k, c)$", face=_FROZEN,
         fontsize=_SMALL)
    _box(ax, (5.75, top), 2.1, 0.95, "sampler step\n" + r"mean $\mu^{\mathrm{pre}}_k$, "
         r"std $\sigma_k$", face=_FROZEN, fontsize=_SMALL)
    _arrow(ax, (1.4, top), (1.9, top))
    _arrow(ax, (4.2, top), (4.7, top))
    # new path
    head_out = r"$a_k,\ \log\rho_k$" if variance_aware else r"$a_k$"
    _box(ax, (3.05, low), 2.3, 1.2, "control head\n" + r"$a_\phi(x_{t_k}, t_k, c, y)$"
         + "\nlast layer zero at init", face=_NEW, fontsize=_SMALL)
    _arrow(ax, (1.4, low), (1.9, low))
    _arrow(ax, (1.2, top - 0.48), (2.0, low + 0.48))        # x_t, t, c also feed the head
    # combining the two, and the noise
    if variance_aware:
        update = (r"$x_{t_{k+1}} = \mu^{\mathrm{pre}}_k + \sigma_k a_k$" + "\n"
                  + r"$+\ \sigma_k\,\rho_k \odot z_k$")
        price = (r"$\mathrm{KL}_k = \sum_i\ [(\rho_i^2 + a_i^2 - 1)/2"
                 r" - \log\rho_i]$")
    else:
        update = (r"$x_{t_{k+1}} = \mu^{\mathrm{pre}}_k + \sigma_k a_k$" + "\n"
                  + r"$+\ \sigma_k z_k$")
        price = r"$\mathrm{KL}_k = \frac{1}{2}\Vert a_k\Vert^2$"
    _box(ax, (8.55, 2.8), 2.7, 1.05, update, face="white", fontsize=_SMALL)
    _arrow(ax, (6.8, top), (7.5, 3.1))
    _arrow(ax, (4.2, low), (7.5, 2.5))
    ax.text(5.6, low + 0.55, head_out, ha="center", va="bottom", fontsize=_SMALL,
            rotation=9)
    ax.text(8.55, 4.95, r"noise $z_k \sim \mathcal{N}(0, I)$", ha="center", va="center",
            fontsize=_SMALL)
    _arrow(ax, (8.55, 4.75), (8.55, 3.33))
    _arrow(ax, (8.55, 2.27), (8.55, 1.55), shrink=0)
    ax.text(8.55, 1.45, "next state,\nstep $k + 1$", ha="center", va="top",
            fontsize=_SMALL)
    # the price of the step
    _box(ax, (6.0, 0.55), 4.2, 0.8, "price: " + price, face="white", fontsize=_SMALL,
         ls="--")
    _arrow(ax, (3.05, low - 0.6), (3.95, 0.85))
    ax.legend(handles=[Patch(facecolor=_FROZEN, edgecolor="0.25", label="frozen"),
                       Patch(facecolor=_NEW, edgecolor="0.25", label="trainable (new)")],
              loc="upper left", fontsize=_SMALL, frameon=False, bbox_to_anchor=(0.0, 1.02))
    return ax


def _normal_pdf(x, mean, var):
    return [math.exp(-(u - mean) ** 2 / (2 * var)) / math.sqrt(2 * math.pi * var) for u in x]


def _nats(value):
    """``0.59 nats`` or ``7.2 x 10^-5 nats`` (mathtext)."""
    if value == 0 or abs(value) >= 0.01:
        return f"{value:.2f} nats"
    exponent = math.floor(math.log10(abs(value)))
    return rf"${value / 10**exponent:.1f} \times 10^{{{exponent}}}$ nats"


def plot_initial_laws(panels, axes=None):
    """Plot the fixed initial law ``nu = N(0, 1)`` against the optimal initial law
    ``nu*(x_T) ∝ nu(x_T) exp(v_T(x_T) / alpha)`` of the soft-optimal chain (the book's
    Theorem ``thm-soft-optimal``), one panel per example, with the fixed-start price
    ``alpha KL(nu || nu*)`` (eq. ``eq-initial-bias``).

    Args:
        panels: a sequence of ``(title, mean, var, price)``: ``nu* = N(mean, var)`` (1-D) and
            the price ``alpha KL(nu || nu*)`` in nats, one panel each (at most 3).
        axes: a sequence of as many ``Axes``; ``None`` makes a new figure, 8 inches wide.

    Returns:
        The list of ``Axes``.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    panels = list(panels)
    if not 1 <= len(panels) <= 3:
        raise ValueError(f"panels must hold 1 to 3 entries, got {len(panels)}")
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, len(panels), figsize=(8.0, 3.3), sharey=True,
                               layout="constrained", squeeze=False)
        axes = list(axes[0])
    axes = list(axes)
    if len(axes) != len(panels):
        raise ValueError(f"axes must hold {len(panels)} Axes, got {len(axes)}")
    grid = [-4 + 8 * i / 400 for i in range(401)]
    nu = _normal_pdf(grid, 0.0, 1.0)
    top = 0.0
    for ax, (title, mean, var, price) in zip(axes, panels):
        var = float(var)
        if not var > 0:
            raise ValueError(f"the variance of nu* must be positive, got {var}")
        star = _normal_pdf(grid, float(mean), var)
        top = max(top, max(star), max(nu))
        ax.fill_between(grid, nu, color="0.85", label=r"$\nu = \mathcal{N}(0, 1)$")
        ax.plot(grid, nu, color="0.45", lw=1.2)
        ax.plot(grid, star, color="C3", lw=2,
                label=r"$\nu^\star \propto \nu\, e^{v_T/\alpha}$")
        ax.axvline(float(mean), color="C3", lw=0.8, ls=":")
        ax.set_title(title, fontsize=_FONT)
        ax.set_xlabel(r"$x_T$", fontsize=_FONT)
        ax.text(0.03, 0.97, "fixed-start price\n" + r"$\alpha\,\mathrm{KL}(\nu \Vert "
                r"\nu^\star) = $" + _nats(float(price)), transform=ax.transAxes,
                ha="left", va="top", fontsize=_SMALL)
        ax.tick_params(labelsize=_SMALL)
    for ax in axes:
        ax.set_ylim(0, 1.3 * top)
    axes[0].set_ylabel("density", fontsize=_FONT)
    axes[0].legend(fontsize=_SMALL, loc="upper right", frameon=False)
    return axes


def _running_mean(values, window):
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_certificate_curve(curves, alpha_log_z, alpha_log_z_se, *, window=20,
                           held_out=None, axes=None):
    """Plot the certificate during fine-tuning: ``alpha log Z`` (a flat line with a band of
    two standard errors) against the running mean of the per-iteration ``J``, and the gap
    ``alpha log Z - J`` (the book's eq. ``eq-ch5-certificate``: ``alpha KL(P_theta || P*)``,
    at least the initial-law term).

    The per-iteration ``J`` of :func:`~ctrl_teach.ctrl.finetune` is the mean over one batch
    with ``(c, y)`` drawn uniformly, so ``alpha_log_z`` must be the mean over the pairs of
    their ``alpha log Z``.

    Args:
        curves: ``{name: sequence of J per iteration}`` (e.g. ``history.J``).
        alpha_log_z: ``alpha log Z`` averaged over the ``(c, y)`` pairs.
        alpha_log_z_se: its standard error.
        window: iterations in the trailing running mean.
        held_out: optional ``{name: (J, se)}``, estimates of ``J`` from fresh trajectories
            after fine-tuning, drawn at the last iteration with error bars.
        axes: two ``Axes``; ``None`` makes a new figure, 8 inches wide.

    Returns:
        The list of the two ``Axes`` (objective, gap).

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    curves = {name: [float(v) for v in values] for name, values in dict(curves).items()}
    if not curves or any(len(v) == 0 for v in curves.values()):
        raise ValueError("curves must map names to non-empty sequences of J")
    window = check_positive_int("window", window)
    alz, se = float(alpha_log_z), float(alpha_log_z_se)
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, 2, figsize=(8.0, 3.5), layout="constrained")
    axes = list(axes)
    if len(axes) != 2:
        raise ValueError(f"axes must hold 2 Axes, got {len(axes)}")
    held_out = dict(held_out or {})
    n_max = max(len(v) for v in curves.values())
    ax_j, ax_gap = axes
    ax_j.axhspan(alz - 2 * se, alz + 2 * se, color="0.8", lw=0)
    ax_j.axhline(alz, color="k", lw=1.2, label=r"$\alpha \log Z$ ($\pm$ 2 SE)")
    gaps = []
    for i, (name, values) in enumerate(curves.items()):
        colour = f"C{i}"
        run = _running_mean(values, window)
        its = list(range(1, len(run) + 1))
        ax_j.plot(its, run, color=colour, lw=1.4, label=f"J, {name}")
        gap = [alz - v for v in run]
        gaps += gap[len(gap) // 2:]
        ax_gap.plot(its, gap, color=colour, lw=1.4, label=name)
        if name in held_out:
            j, j_se = held_out[name]
            ax_j.errorbar([len(run)], [j], yerr=[2 * j_se], fmt="o", color=colour,
                          capsize=3, ms=4)
            ax_gap.errorbar([len(run)], [alz - j], yerr=[2 * j_se], fmt="o",
                            color=colour, capsize=3, ms=4)
    ax_gap.axhspan(-2 * se, 2 * se, color="0.8", lw=0)
    ax_gap.axhline(0, color="k", lw=1)
    top = max(max(gaps), 4 * se, 0.05)
    ax_gap.set_ylim(-max(top / 6, 2 * se), 2.2 * top)
    ax_j.set_ylim(bottom=min(min(_running_mean(v, window)[len(v) // 10:])
                             for v in curves.values()) - 0.1)
    ax_j.set_xlabel("iteration", fontsize=_FONT)
    ax_j.set_title(f"running J (mean of {window} batches)", fontsize=_FONT)
    ax_gap.set_xlabel("iteration", fontsize=_FONT)
    ax_gap.set_title(r"gap $\alpha \log Z - J$ (nats)", fontsize=_FONT)
    for ax in axes:
        ax.set_xlim(0, n_max + max(1, n_max // 40))
        ax.tick_params(labelsize=_SMALL)
    ax_j.legend(fontsize=_SMALL, loc="lower right")
    ax_gap.legend(fontsize=_SMALL, loc="upper right")
    return axes

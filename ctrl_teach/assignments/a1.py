"""Assignment 1 (Chapter 3): the price of a control, the per-step Gaussian KL.

Questions (points):

* ``a1.q1`` (3) ``gaussian_kl(mean_p, mean_q, std)``: ``|m_p - m_q|^2 / (2 s^2)`` per row,
  checked against :func:`torch.distributions.kl_divergence`;
* ``a1.q2`` (2) ``controlled_step_kl(step, a)``: the controlled mean ``mean + sigma a`` and
  its KL ``|a|^2 / 2``; a noise-free step (``sigma = 0``) must raise ``ValueError``;
* ``a1.q3`` (3) ``controlled_sample(network, sampler, control, n, c, generator)``: run the
  controlled chain and return ``x_0`` and the path KL, the sum of the per-step KLs.

Introduced in: Chapter 3 (Control as reinforcement learning).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from ._core import CheckFailed, Question, run_check
from ._grading import grader

__all__ = ["check_kl", "check_controlled_step", "check_controlled_sample", "QUESTIONS",
           "grade"]


# ---------------------------------------------------------------------------------------
# q1: gaussian_kl
# ---------------------------------------------------------------------------------------
def _kl_cases(hidden: bool):
    g = torch.Generator().manual_seed(1031 if hidden else 7)
    shapes = ([(7, 4), (3, 2, 4, 4), (5, 1)] if hidden else [(5, 3), (4, 1, 8, 8), (6, 2)])
    stds = [0.05, 2.3, 0.6] if hidden else [0.7, 0.2, 1.5]
    for shape, std in zip(shapes, stds):
        mp = torch.randn(shape, generator=g)
        mq = mp + 0.3 * torch.randn(shape, generator=g)
        yield mp, mq, std


def _reference_kl(mp, mq, std):
    from torch.distributions import Independent, Normal, kl_divergence

    d = mp.ndim - 1
    p = Independent(Normal(mp, torch.full_like(mp, std)), d)
    q = Independent(Normal(mq, torch.full_like(mq, std)), d)
    return kl_divergence(p, q)


def _as_tensor(out, what: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(f"{what} must return a torch.Tensor, got {type(out).__name__}")
    return out


def _diagnose_kl(out, ref, mp, mq, std) -> str:
    """A hint naming the likely mistake when ``out`` differs from ``ref``."""
    diff2 = (mp - mq).flatten(1).pow(2).sum(1)
    dim = mp[0].numel()
    known = [
        (diff2 / std**2, "your values are exactly 2x the reference: the Gaussian KL has a "
                         "factor 1/2, |m_p - m_q|^2 / (2 sigma^2)"),
        (diff2 / (4 * std**2), "your values are exactly half the reference: the factor is "
                               "1/2 once, |m_p - m_q|^2 / (2 sigma^2)"),
        (diff2 / (2 * std), "you divided by 2 sigma; divide by 2 sigma^2 (std squared)"),
        (diff2 / 2, "your KL does not depend on std: divide by 2 sigma^2"),
        (diff2 / (2 * std**4), "you divided by 2 sigma^4: std is already the standard "
                               "deviation, square it once"),
        (diff2 / (2 * std**2 * dim), "you averaged over the data dimensions: sum them "
                                     "(the KL of independent coordinates adds up)"),
        (diff2.sqrt() / (2 * std**2), "you used the norm |m_p - m_q| instead of its square"),
    ]
    for values, hint in known:
        if torch.allclose(out, values.to(out.dtype), rtol=1e-4, atol=1e-6):
            return hint
    err = float((out - ref).abs().max())
    return (f"differs from torch.distributions.kl_divergence by up to {err:.3g} for data "
            f"shape {tuple(mp.shape[1:])}, std={std}; KL = |m_p - m_q|^2 / (2 sigma^2), "
            "summed over every dimension except the first")


def check_kl(gaussian_kl, *, hidden: bool = False, verbose: bool = True):
    """Check ``gaussian_kl(mean_p, mean_q, std) -> (B,)``, the KL of a mean shift (the book's
    eq. ``eq-gaussian-kl``), against :func:`torch.distributions.kl_divergence`.

    Args:
        gaussian_kl: the student's function.
        hidden: use the grader's inputs (other seeds, shapes and noise levels) instead of
            the visible ones.
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 3 points (2 when the values
        are right but the result is not differentiable).

    Introduced in: Chapter 3 (Control as reinforcement learning).
    """

    def body():
        cases = list(_kl_cases(hidden))
        for mp, mq, std in cases:
            ref = _reference_kl(mp, mq, std)
            out = _as_tensor(gaussian_kl(mp.clone(), mq.clone(), std), "gaussian_kl")
            b = mp.shape[0]
            if out.shape != (b,):
                if out.numel() == 1:
                    raise CheckFailed(
                        f"returned a single number for a batch of {b} rows: return one KL per "
                        f"row, shape ({b},); sum over the data dimensions, not over the batch")
                if tuple(out.shape) == tuple(mp.shape[1:]):
                    raise CheckFailed(
                        f"returned shape {tuple(out.shape)}: you summed over the batch axis "
                        f"(dim 0); sum over every dimension except the first, shape ({b},)")
                raise CheckFailed(
                    f"returned shape {tuple(out.shape)} for input {tuple(mp.shape)}, expected "
                    f"({b},): sum over *every* dimension except the first, e.g. "
                    "`.flatten(start_dim=1).sum(dim=1)` (images have 3 data dimensions)")
            if not torch.allclose(out.to(ref.dtype), ref, rtol=1e-4, atol=1e-6):
                raise CheckFailed(_diagnose_kl(out.to(ref.dtype), ref, mp, mq, std))
        # differentiable: used inside the fine-tuning objective
        mp, mq, std = cases[0]
        mp = mp.clone().requires_grad_(True)
        out = gaussian_kl(mp, mq, std)
        if not (isinstance(out, torch.Tensor) and out.requires_grad):
            raise CheckFailed("the values are right but the result is not differentiable "
                              "(no .item(), numpy or torch.no_grad: fine-tuning "
                              "back-propagates through this KL)", partial=2 / 3)
        return (f"matches torch.distributions.kl_divergence on {len(cases)} cases (vectors "
                "and images) and is differentiable")

    return run_check("a1.q1", "gaussian_kl", 3, body, verbose)


# ---------------------------------------------------------------------------------------
# q2: controlled_step_kl
# ---------------------------------------------------------------------------------------
def _step(mean: torch.Tensor, std: float):
    from ..diffusion import GaussianStep

    return GaussianStep(mean=mean, std=std, t=5, t_prev=4, eps=torch.zeros_like(mean),
                        x0_hat=mean.clone())


def check_controlled_step(controlled_step_kl, *, hidden: bool = False, verbose: bool = True):
    """Check ``controlled_step_kl(step, a) -> (step.mean + step.std a, |a|^2 / 2)``, the
    controlled step in noise units (eqs. ``eq-policy`` and ``eq-gaussian-kl``); a step with
    ``std == 0`` must raise ``ValueError``.

    Args:
        controlled_step_kl: the student's function.
        hidden: use the grader's inputs (other seeds, shapes and noise levels) instead of
            the visible ones.
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 2 points (1 when the values
        are right but the noise-free step is not refused).

    Introduced in: Chapter 3 (Control as reinforcement learning).
    """

    def body():
        g = torch.Generator().manual_seed(2027 if hidden else 11)
        stds = [0.03, 0.9, 0.25] if hidden else [0.5, 0.05, 1.2]
        for std in stds:
            mean = torch.randn(6, 2, generator=g)
            a = torch.randn(6, 2, generator=g)
            out = controlled_step_kl(_step(mean.clone(), std), a.clone())
            if not (isinstance(out, tuple) and len(out) == 2):
                raise CheckFailed("must return a pair (controlled_mean, kl)")
            new_mean, kl = (_as_tensor(o, "controlled_step_kl") for o in out)
            if new_mean.shape != mean.shape:
                raise CheckFailed(f"controlled mean has shape {tuple(new_mean.shape)}, "
                                  f"expected {tuple(mean.shape)}")
            if not torch.allclose(new_mean, mean + std * a, atol=1e-5):
                if torch.allclose(new_mean, mean + a, atol=1e-5):
                    raise CheckFailed(
                        "you added the control directly to the mean: in noise units the "
                        "controlled mean is step.mean + step.std * a")
                raise CheckFailed("controlled mean should be step.mean + step.std * a")
            want = 0.5 * a.pow(2).sum(1)
            if kl.shape != want.shape:
                raise CheckFailed(f"kl has shape {tuple(kl.shape)}, expected ({a.shape[0]},)")
            if not torch.allclose(kl, want, rtol=1e-4, atol=1e-6):
                if torch.allclose(kl, want / std**2, rtol=1e-4, atol=1e-6):
                    raise CheckFailed(
                        "the KL is |a|^2 / (2 sigma^2): the shift was not scaled by sigma "
                        "(mean + sigma a), so the KL still depends on the step's noise level")
                raise CheckFailed(f"KL wrong for std={std}: a shift of sigma * a between two "
                                  "Gaussians of std sigma costs |a|^2 / 2 (use your "
                                  "gaussian_kl)")
        try:
            controlled_step_kl(_step(torch.zeros(3, 2), 0.0), torch.ones(3, 2))
        except ValueError:
            pass
        else:
            raise CheckFailed(
                "the final step has std 0 and your function returned a value: a control "
                "there moves the sample at no (or undefined) KL cost. Raise ValueError when "
                "step.std == 0", partial=0.5)
        return "controlled mean and KL |a|^2/2 right at every noise level; sigma = 0 refused"

    return run_check("a1.q2", "controlled_step_kl", 2, body, verbose)


# ---------------------------------------------------------------------------------------
# q3: controlled_sample
# ---------------------------------------------------------------------------------------
def _setup_q3(hidden: bool):
    from ..diffusion import DiffusionSampler
    from ..pretrained import load_pretrained

    pre = load_pretrained("toy-gmm")
    num_steps = 15 if hidden else 25
    sampler = DiffusionSampler(pre.schedule, num_steps=num_steps, eta=1.0, clip_x0=3.0)
    push = torch.tensor([0.2, -0.5]) if hidden else torch.tensor([0.5, 0.0])

    def control(x, step):  # a state-dependent control in noise units
        return push + 0.1 * torch.tanh(x)

    return pre.network, sampler, control, (3 if hidden else 1), 0 if hidden else 1


def _reference_sample(network, sampler, control, n, c, seed):
    """The controlled chain by the library's one loop, :meth:`DiffusionSampler.run_chain`.

    Same noise stream as the student's loop (``x_T`` first, then one draw per noisy step): the
    control consumes no random numbers, so drawing a step's noise before or after evaluating
    the step gives the same draws.
    """
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(n, *network.data_shape, generator=g)
    c = sampler.prepare_condition(network, c, n, x_T.device)

    def step_fn(x_t, i):
        step = sampler.step(network, x_t, i, c)
        if step.std == 0:                  # the final, noise-free step stays uncontrolled
            return step, torch.zeros(n)
        a = control(x_t, step)
        return replace(step, mean=step.mean + step.std * a), 0.5 * a.flatten(1).pow(2).sum(1)

    with torch.no_grad():
        out = sampler.run_chain(step_fn, x_T, generator=g)
    return out.x, torch.stack(out.extras, dim=1).sum(1)


def check_controlled_sample(controlled_sample, *, hidden: bool = False, verbose: bool = True):
    """Check ``controlled_sample(network, sampler, control, n, c, generator) -> (x0, kl)``:
    the controlled chain and its path KL (the book's eq. ``eq-path-kl``), draw for draw against
    the library's chain :meth:`~ctrl_teach.diffusion.DiffusionSampler.run_chain`.

    Args:
        controlled_sample: the student's function.
        hidden: use the grader's inputs (other seeds, shapes and noise levels) instead of
            the visible ones.
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 3 points (2 when the path
        KL is right but ``x_0`` follows another noise stream).

    Introduced in: Chapter 3 (Control as reinforcement learning).
    """

    def body():
        network, sampler, control, seed, c = _setup_q3(hidden)
        n = 300
        ref_x, ref_kl = _reference_sample(network, sampler, control, n, c, seed)
        with torch.no_grad():
            out = controlled_sample(network, sampler, control, n, c,
                                    torch.Generator().manual_seed(seed))
        if not (isinstance(out, tuple) and len(out) == 2):
            raise CheckFailed("must return a pair (x0, kl)")
        x, kl = (_as_tensor(o, "controlled_sample") for o in out)
        if x.shape != ref_x.shape or kl.shape != ref_kl.shape:
            raise CheckFailed(f"shapes {tuple(x.shape)}, {tuple(kl.shape)}; expected "
                              f"{tuple(ref_x.shape)} and ({n},): one KL per trajectory")
        per_step = float(ref_kl.mean()) / (sampler.num_steps - 1)
        kl_ok = torch.allclose(kl, ref_kl, rtol=1e-3, atol=1e-4)
        if not kl_ok:
            gap = float(kl.mean() - ref_kl.mean())
            if abs(gap) > 0 and math.isclose(gap / per_step, round(gap / per_step), abs_tol=0.2):
                k = round(gap / per_step)
                raise CheckFailed(
                    f"your mean path KL is {abs(k)} step(s) worth of KL too "
                    f"{'high' if k > 0 else 'low'}: sum the KL of "
                    f"every noisy step (sampler.num_steps - 1 = {sampler.num_steps - 1} of "
                    "them) and leave the final, noise-free step uncontrolled")
            raise CheckFailed(f"mean path KL {float(kl.mean()):.4f}, expected "
                              f"{float(ref_kl.mean()):.4f}: add controlled_step_kl's KL of "
                              "every noisy step, per trajectory", partial=0.0)
        if not torch.allclose(x, ref_x, atol=1e-4):
            raise CheckFailed(
                "the KL is right but x_0 differs from the reference chain: draw x_T = "
                "torch.randn(n, *network.data_shape, generator=generator) first, then one "
                "torch.randn(..., generator=generator) per noisy step *after* computing the "
                "step (and none for the final step)", partial=2 / 3)
        return (f"x_0 and the path KL (mean {float(ref_kl.mean()):.3f} nats over "
                f"{sampler.num_steps - 1} controlled steps) match the reference chain")

    return run_check("a1.q3", "controlled_sample", 3, body, verbose)


QUESTIONS = [
    Question("a1.q1", "gaussian_kl", 3, check_kl, "per-step Gaussian KL"),
    Question("a1.q2", "controlled_step_kl", 2, check_controlled_step,
             "control in noise units, KL |a|^2/2"),
    Question("a1.q3", "controlled_sample", 3, check_controlled_sample,
             "controlled chain and its path KL"),
]

grade = grader(QUESTIONS)  # grade(namespace, hidden=True, verbose=True)

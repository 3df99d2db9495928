"""Assignment 6 (Chapter 4): the soft value, the soft Bellman recursion, the optimal control
and the certificate, on the book's exact 1-D problem.

The pre-trained model is the exact denoiser of ``N(0, 1)`` (cosine schedule, ``T = 50``,
``max_beta = 0.8``) sampled in 20 DDPM-type steps; the reward is ``r(x_0) = log N(y_obs; x_0,
tau^2)`` with ``gamma = 1``. Every pre-trained step is affine in ``x_t``
(:func:`~ctrl_teach.diffusion.gaussian_step_affine`), so ``x_0 | x_t`` is Gaussian and every
quantity of Chapter 4 has a closed form.

Questions (points):

* ``a6.q1`` (3) ``soft_value(x, sampler, i, y_obs, tau, alpha)``: the closed-form soft value,
  checked against :func:`~ctrl_teach.ctrl.gaussian_value` and
  :func:`~ctrl_teach.ctrl.monte_carlo_value`;
* ``a6.q2`` (2) ``soft_bellman(value_next, sampler, i, x, alpha)``: one backup of the soft
  Bellman recursion by Gauss-Hermite quadrature, for any next value;
* ``a6.q3`` (2) ``optimal_control(x, sampler, i, y_obs, tau, alpha)``: the first-order
  soft-optimal control in noise units;
* ``a6.q4`` (2) ``constant_policy_gap(a, alpha, n, seed)``: the certificate gap of a policy
  that pushes every noisy step by ``a``, against its closed form;
* ``a6.q5`` (4, graded by hand) a proof: the certificate is ``alpha`` times the sum of the
  per-step KLs to the optimal kernels (plus the initial-law term).

Introduced in: Chapter 4 (The soft-optimal policy).
"""

from __future__ import annotations

import math

import torch

from ._core import CheckFailed, ManualQuestion, Question, run_check
from ._grading import grader

__all__ = ["Y_OBS", "TAU", "NUM_STEPS", "make_problem", "reference_soft_value",
           "reference_gap", "check_soft_value", "check_soft_bellman", "check_optimal_control",
           "check_constant_policy_gap", "QUESTIONS", "MANUAL", "grade"]

Y_OBS, TAU, T, NUM_STEPS = 1.0, 0.5, 50, 20


def make_problem(num_steps: int = NUM_STEPS):
    """The assignment's problem: the exact denoiser of ``N(0, 1)`` and its sampler.

    Args:
        num_steps: sampler steps (20 in the assignment).

    Returns:
        ``(sampler, network)``.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    from ..data.toys import GaussianMixture
    from ..diffusion import DiffusionSampler, ExactMixtureDenoiser, NoiseSchedule

    schedule = NoiseSchedule.cosine(T, max_beta=0.8)
    network = ExactMixtureDenoiser(GaussianMixture([1.0], [[0.0]], [1.0]), schedule)
    return DiffusionSampler(schedule, num_steps=num_steps, eta=1.0), network


def _reward(y_obs, tau):
    from ..ctrl import GaussianLikelihood

    return GaussianLikelihood([y_obs], tau)


def reference_soft_value(x, sampler, i, y_obs, tau, alpha):
    """The library's closed-form soft value :func:`~ctrl_teach.ctrl.gaussian_value` on the
    assignment's problem (data ``N(0, 1)``, reward ``log N(y_obs; x_0, tau^2)``).

    Args:
        x: ``(n, 1)`` states before step ``i``.
        sampler: the sampler.
        i: the step index ``0..num_steps``.
        y_obs: the observation.
        tau: the observation noise.
        alpha: the KL weight.

    Returns:
        ``(n,)`` values.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    from ..ctrl import gaussian_value

    return gaussian_value(x, sampler, 0.0, 1.0, _reward(y_obs, tau), i, y=0, alpha=alpha)


def _tensor(out, what, shape):
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(f"{what} must return a torch.Tensor, got {type(out).__name__}")
    if tuple(out.shape) != tuple(shape):
        if out.numel() == math.prod(shape):
            return out.reshape(shape)
        raise CheckFailed(f"{what} returned shape {tuple(out.shape)}, expected {tuple(shape)}")
    return out


def _log_normal(y, m, var):
    return -0.5 * (y - m) ** 2 / var - 0.5 * torch.log(2 * math.pi * torch.as_tensor(var))


# ---------------------------------------------------------------------------------------
# q1: soft_value
# ---------------------------------------------------------------------------------------
def check_soft_value(soft_value, *, hidden: bool = False, verbose: bool = True):
    """Check ``soft_value(x, sampler, i, y_obs, tau, alpha) -> (n,)`` (eq. ``eq-soft-value``)
    against the closed form :func:`~ctrl_teach.ctrl.gaussian_value` and against pre-trained
    rollouts (:func:`~ctrl_teach.ctrl.monte_carlo_value`, within 4 standard errors + 0.02).

    Args:
        soft_value: the student's function.
        hidden: use the grader's samplers, steps, observations and temperatures.
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 3 points (1.5 when only
        ``alpha = 1`` is right).

    Introduced in: Chapter 4 (The soft-optimal policy).
    """

    def body():
        from ..ctrl import monte_carlo_value

        cases = ([(12, 0, 0.4, 0.3, 1.0), (12, 7, -1.0, 0.8, 2.0), (30, 25, 0.6, 0.4, 0.3),
                  (30, 30, 0.6, 0.4, 0.5)] if hidden else
                 [(NUM_STEPS, 0, Y_OBS, TAU, 1.0), (NUM_STEPS, 12, Y_OBS, TAU, 1.0),
                  (NUM_STEPS, 18, 2.0, 1.0, 0.5), (NUM_STEPS, NUM_STEPS, Y_OBS, TAU, 2.0)])
        x = torch.linspace(-2.5, 2.5, 11)[:, None]
        alpha_one_ok = True
        for num_steps, i, y_obs, tau, alpha in cases:
            sampler, network = make_problem(num_steps)
            want = reference_soft_value(x, sampler, i, y_obs, tau, alpha).double()
            got = _tensor(soft_value(x.clone(), sampler, i, y_obs, tau, alpha), "soft_value",
                          (11,)).detach().double()
            if torch.allclose(got, want, rtol=1e-4, atol=1e-4):
                continue
            where = f"(step {i} of {num_steps}, y_obs = {y_obs}, tau = {tau}, alpha = {alpha})"
            if alpha == 1.0:
                alpha_one_ok = False
            # the forward-process classifier instead of the sampler's chain
            ab = float(sampler.schedule.alpha_bar[int(sampler.timesteps[i])]) if i < num_steps \
                else 1.0
            fwd = _log_normal(y_obs, ab**0.5 * x[:, 0].double(), tau**2 + 1 - ab)
            if alpha == 1.0 and torch.allclose(got, fwd, atol=1e-4):
                raise CheckFailed(f"{where}: that is log p_t(y | x_t) of the *forward* process; "
                                  "the soft value is an expectation under the pre-trained "
                                  "sampler's chain: compose its affine steps "
                                  "(gaussian_step_affine) from step i to the end")
            if torch.allclose(got - want, (got - want)[0].expand_as(got), atol=1e-4):
                if alpha != 1.0 and alpha_one_ok:
                    raise CheckFailed(
                        f"{where}: right up to a constant. For alpha != 1, exp(r / alpha) = "
                        "N(y; x_0, tau^2)^(1/alpha) is a Gaussian in x_0 of variance alpha "
                        "tau^2 *times a constant*: (2 pi tau^2)^((1 - lam)/2) lam^(-1/2) with "
                        "lam = 1/alpha", partial=0.5)
                raise CheckFailed(f"{where}: right up to an additive constant: check the "
                                  "normalising constants")
            if alpha != 1.0 and alpha_one_ok:
                raise CheckFailed(f"{where}: right at alpha = 1 only. v = alpha log E[exp(r / "
                                  "alpha) | x_t]: the tilted likelihood has variance alpha "
                                  "tau^2 + V", partial=0.5)
            raise CheckFailed(
                f"{where}: differs from the closed form by up to "
                f"{float((got - want).abs().max()):.3g}. With x_0 | x_t ~ N(A x + B, V): v = "
                "alpha log E[N(y; x_0, tau^2)^(1/alpha)]")
        # the Monte Carlo check: pre-trained rollouts from a few states
        sampler, network = make_problem(12 if hidden else NUM_STEPS)
        i = 4 if hidden else 8
        xs = torch.linspace(-1.5, 2.0, 6)[:, None]
        reward = _reward(Y_OBS, TAU)
        v_hat, se = monte_carlo_value(network, sampler, reward, xs, i, y=0, num_rollouts=800,
                                      generator=torch.Generator().manual_seed(66 if hidden
                                                                              else 6),
                                      return_se=True)
        got = soft_value(xs.clone(), sampler, i, Y_OBS, TAU, 1.0).detach().reshape(-1)
        worst = float(((got.double() - v_hat.double()).abs() / (4 * se.double() + 0.02)).max())
        if worst > 1:
            raise CheckFailed("matches the closed form but not the rollouts: report this to "
                              "your instructor")
        return (f"matches gaussian_value on {len(cases)} cases (alpha from "
                f"{min(c[-1] for c in cases):g} to {max(c[-1] for c in cases):g}) and "
                "monte_carlo_value within 4 SE")

    return run_check("a6.q1", "soft_value", 3, body, verbose)


# ---------------------------------------------------------------------------------------
# q2: soft_bellman
# ---------------------------------------------------------------------------------------
def _mixture_value(alpha, weights, means, variances):
    """``v(x) = alpha log sum_j w_j N(x; m_j, s_j^2)`` and its exact Bellman backup."""

    def value(z):
        z = z.reshape(-1, 1).double()
        logs = torch.stack([math.log(w) + _log_normal(z[:, 0], m, s)
                            for w, m, s in zip(weights, means, variances)], 1)
        return alpha * torch.logsumexp(logs, 1)

    def backup(mu, sigma):
        mu = mu.reshape(-1).double()
        logs = torch.stack([math.log(w) + _log_normal(mu, m, s + sigma**2)
                            for w, m, s in zip(weights, means, variances)], 1)
        return alpha * torch.logsumexp(logs, 1)

    return value, backup


def check_soft_bellman(soft_bellman, *, hidden: bool = False, verbose: bool = True):
    """Check ``soft_bellman(value_next, sampler, i, x, alpha) -> (n,)``, the right side of
    the soft Bellman recursion (eq. ``eq-soft-bellman``): with the exact next value it must
    return the exact value of :func:`~ctrl_teach.ctrl.gaussian_value` one step earlier, and for
    a non-quadratic next value (a Gaussian-mixture ``exp(v / alpha)``) its closed-form backup.

    Args:
        soft_bellman: the student's function.
        hidden: use the grader's steps, temperatures and next values.
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 2 points.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """

    def body():
        from ..diffusion import gaussian_step_affine

        sampler, _ = make_problem(12 if hidden else NUM_STEPS)
        k = sampler.num_steps
        x = torch.linspace(-2.0, 2.5, 10)[:, None]
        steps = (0, 5, k - 2, k - 1) if hidden else (0, 10, k - 1)
        for alpha in ((0.7, 1.5) if hidden else (1.0, 0.5)):
            for i in steps:
                def value_next(z, i=i, alpha=alpha):
                    return reference_soft_value(z.reshape(-1, 1), sampler, i + 1, Y_OBS, TAU,
                                                alpha)

                want = reference_soft_value(x, sampler, i, Y_OBS, TAU, alpha).double()
                got = _tensor(soft_bellman(value_next, sampler, i, x.clone(), alpha),
                              "soft_bellman", (10,)).detach().double()
                if torch.allclose(got, want, atol=2e-4, rtol=1e-4):
                    continue
                s, b, sigma = gaussian_step_affine(sampler, i, 0.0, 1.0)
                mean_next = value_next(s * x + b).double()
                if torch.allclose(got, mean_next, atol=1e-4) and sigma > 0:
                    raise CheckFailed(f"step {i}: you returned v_t'(mean): the backup averages "
                                      "exp(v_t'(x') / alpha) over x' ~ N(mean, sigma^2)")
                if i == k - 1:
                    raise CheckFailed(f"the last step (sigma = {sigma}) is deterministic: "
                                      "there v_t(x) = v_0(mean(x))")
                raise CheckFailed(
                    f"step {i}, alpha = {alpha}: differs from the exact value by up to "
                    f"{float((got - want).abs().max()):.3g}; compute alpha log sum_j w_j "
                    "exp(v(mean + sigma z_j) / alpha) / sqrt(2 pi) with the Gauss-Hermite nodes "
                    "z_j, w_j of numpy.polynomial.hermite_e.hermegauss (a logsumexp)")
        weights, means, variances = (((0.2, 0.8), (1.5, -0.5), (0.1, 0.6)) if hidden
                                     else ((0.3, 0.7), (1.0, -1.0), (0.2, 0.5)))
        for alpha in ((0.8,) if hidden else (1.0,)):
            value, backup = _mixture_value(alpha, weights, means, variances)
            for i in (3, 9):
                s, b, sigma = gaussian_step_affine(sampler, i, 0.0, 1.0)
                want = backup(s * x + b, sigma)
                got = soft_bellman(value, sampler, i, x.clone(), alpha).detach().reshape(-1)
                if not torch.allclose(got.double(), want, atol=1e-3):
                    raise CheckFailed(
                        "right for the quadratic value but not for a mixture-shaped one "
                        f"(step {i}, off by {float((got.double() - want).abs().max()):.3g}): "
                        "use enough quadrature nodes (40) and a logsumexp")
        return ("the backup of the exact next value is the exact value at every step; a "
                "non-quadratic value is backed up to its closed form")

    return run_check("a6.q2", "soft_bellman", 2, body, verbose)


# ---------------------------------------------------------------------------------------
# q3: optimal_control
# ---------------------------------------------------------------------------------------
def check_optimal_control(optimal_control, *, hidden: bool = False, verbose: bool = True):
    """Check ``optimal_control(x, sampler, i, y_obs, tau, alpha)``, the first-order
    soft-optimal control ``sigma_t grad v_t'(mean_pre(x)) / alpha`` (eq.
    ``eq-optimal-control``), against :func:`~ctrl_teach.ctrl.gaussian_optimal_control`.

    Args:
        optimal_control: the student's function.
        hidden: use the grader's steps, observations and temperatures.
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 2 points.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """

    def body():
        from ..ctrl import gaussian_optimal_control

        x = torch.linspace(-2.0, 2.0, 9)[:, None]
        cases = ([(12, 0, 0.4, 0.3, 1.0), (12, 6, -1.0, 0.8, 0.6), (30, 28, 1.2, 0.5, 2.0)]
                 if hidden else
                 [(NUM_STEPS, 2, Y_OBS, TAU, 1.0), (NUM_STEPS, 15, Y_OBS, TAU, 1.0),
                  (NUM_STEPS, 10, 2.0, 0.7, 0.5)])
        for num_steps, i, y_obs, tau, alpha in cases:
            sampler, _ = make_problem(num_steps)
            reward = _reward(y_obs, tau)
            want = gaussian_optimal_control(x, sampler, 0.0, 1.0, reward, i, y=0, alpha=alpha)
            got = _tensor(optimal_control(x.clone(), sampler, i, y_obs, tau, alpha),
                          "optimal_control", (9, 1)).detach()
            if torch.allclose(got.double(), want.double(), rtol=1e-3, atol=1e-5):
                continue
            where = f"(step {i} of {num_steps}, alpha = {alpha})"
            exact = gaussian_optimal_control(x, sampler, 0.0, 1.0, reward, i, y=0, alpha=alpha,
                                             exact_step=True)
            sigma = float(sampler.sigmas[i])
            if torch.allclose(got, exact, rtol=1e-3, atol=1e-5):
                raise CheckFailed(f"{where}: that is the mean of the exact tilted step; the "
                                  "question asks for the first-order control sigma grad v / "
                                  "alpha")
            if sigma > 0 and torch.allclose(got, want * sigma, rtol=1e-3, atol=1e-5):
                raise CheckFailed(f"{where}: one factor sigma_t too many: the control is in "
                                  "noise units, a = sigma_t grad v_t'(mean) / alpha (the mean "
                                  "moves by sigma_t a = sigma_t^2 grad v / alpha)")
            if sigma > 0 and torch.allclose(got, want / sigma, rtol=1e-3, atol=1e-5):
                raise CheckFailed(f"{where}: missing the factor sigma_t")
            if alpha != 1 and torch.allclose(got, want * alpha, rtol=1e-3, atol=1e-5):
                raise CheckFailed(f"{where}: divide the value gradient by alpha")
            raise CheckFailed(f"{where}: differs from the closed form by up to "
                              f"{float((got - want).abs().max()):.3g}: differentiate the value "
                              "of the *next* state (step i + 1) at the pre-trained mean")
        sampler, _ = make_problem()
        last = optimal_control(x.clone(), sampler, sampler.num_steps - 1, Y_OBS, TAU, 1.0)
        if not torch.allclose(torch.as_tensor(last).double(), torch.zeros(9, 1).double()):
            raise CheckFailed("the last step has sigma = 0 and must get the control 0",
                              partial=0.5)
        return f"first-order control right on {len(cases)} cases; the last step is uncontrolled"

    return run_check("a6.q3", "optimal_control", 2, body, verbose)


# ---------------------------------------------------------------------------------------
# q4: constant_policy_gap
# ---------------------------------------------------------------------------------------
def reference_gap(a: float, alpha: float, num_steps: int = NUM_STEPS, y_obs: float = Y_OBS,
                  tau: float = TAU) -> float:
    """The exact certificate gap ``alpha log Z - J`` of the policy that adds ``sigma_t a`` to
    every noisy step mean (control ``a`` in noise units), on the assignment's problem.

    The controlled chain is still affine-Gaussian: its output is ``N(m_s + a S, v_s)`` with
    ``S = sum_k sigma_k prod_{j > k} s_j`` (the slopes of the later steps), so ``E[r]`` and
    ``J = E[r] - alpha (#noisy steps) a^2 / 2`` are closed form, and ``alpha log Z`` is that of
    Chapter 4.

    Args:
        a: the constant control.
        alpha: the KL weight.
        num_steps: sampler steps.
        y_obs: the observation.
        tau: the observation noise.

    Returns:
        ``alpha log Z - J`` in nats.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    from ..diffusion import gaussian_sampler_moments, gaussian_step_affine

    sampler, _ = make_problem(num_steps)
    m_s, v_s = gaussian_sampler_moments(sampler, 0.0, 1.0)
    shift, noisy = 0.0, 0
    for k in range(sampler.num_steps):
        s, _, sigma = gaussian_step_affine(sampler, k, 0.0, 1.0)
        shift = s * shift + sigma * a
        noisy += sigma > 0
    m = m_s + shift
    expected_r = -0.5 * math.log(2 * math.pi * tau**2) - ((y_obs - m) ** 2 + v_s) / (2 * tau**2)
    J = expected_r - alpha * noisy * a * a / 2
    lam = 1 / alpha
    log_z = alpha * (0.5 * (1 - lam) * math.log(2 * math.pi * tau**2) - 0.5 * math.log(lam)
                     - 0.5 * (y_obs - m_s) ** 2 / (tau**2 / lam + v_s)
                     - 0.5 * math.log(2 * math.pi * (tau**2 / lam + v_s)))
    return log_z - J


def check_constant_policy_gap(constant_policy_gap, *, hidden: bool = False,
                              verbose: bool = True):
    """Check ``constant_policy_gap(a, alpha, n, seed) -> (gap, se)``: the certificate gap
    ``alpha log Z - J`` (``cor-certificate``) of a constant control, estimated from ``n``
    rollouts, against its closed form :func:`reference_gap` (within 4 standard errors +
    0.005).

    Args:
        constant_policy_gap: the student's function.
        hidden: use the grader's controls, temperatures and seeds.
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 2 points.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """

    def body():
        cases = [(0.4, 1.0, 31), (-0.2, 0.5, 32), (0.0, 2.0, 33)] if hidden else \
            [(0.0, 1.0, 1), (0.3, 1.0, 2), (0.3, 0.5, 3)]
        for a, alpha, seed in cases:
            out = constant_policy_gap(a, alpha, 4000, seed)
            if not (isinstance(out, tuple) and len(out) == 2):
                raise CheckFailed("must return a pair (gap, standard error)")
            gap, se = (float(v) for v in out)
            want = reference_gap(a, alpha)
            if not (math.isfinite(gap) and math.isfinite(se) and se > 0):
                raise CheckFailed(f"gap {gap} and standard error {se} must be finite, se > 0")
            if abs(gap - want) <= 4 * se + 0.005:
                continue
            noisy = NUM_STEPS - 1
            if abs(gap - (want - alpha * noisy * a * a / 2)) <= 4 * se + 0.005 and a != 0:
                raise CheckFailed(f"a = {a}: your J has no KL price; each noisy step costs "
                                  f"alpha a^2 / 2 ({noisy} noisy steps, the last one is free)")
            if abs(gap - (want + alpha * a * a / 2)) <= 4 * se + 0.005 and a != 0:
                raise CheckFailed(f"a = {a}: one step of KL too many: the last (noise-free) "
                                  "step is not controlled")
            raise CheckFailed(f"a = {a}, alpha = {alpha}: gap {gap:.4f} +- {se:.4f}, closed form "
                              f"{want:.4f}. alpha log Z is closed form (the sampler's law "
                              "N(m_s, v_s)), J = mean(r(x_0)) - alpha (#noisy steps) a^2 / 2")
        return (f"gap within 4 SE of its closed form for {len(cases)} policies (closed forms "
                + ", ".join(f"{reference_gap(a, al):.3f}" for a, al, _ in cases) + " nats)")

    return run_check("a6.q4", "constant_policy_gap", 2, body, verbose)


QUESTIONS = [
    Question("a6.q1", "soft_value", 3, check_soft_value, "closed-form soft value"),
    Question("a6.q2", "soft_bellman", 2, check_soft_bellman, "soft Bellman backup"),
    Question("a6.q3", "optimal_control", 2, check_optimal_control,
             "first-order soft-optimal control"),
    Question("a6.q4", "constant_policy_gap", 2, check_constant_policy_gap,
             "certificate gap of a constant control"),
]

MANUAL = [
    ManualQuestion("a6.q5", 4, "**Your proof (Q5).**",
                   "proof: the certificate is alpha times the sum of per-step KLs"),
]

grade = grader(QUESTIONS)  # grade(namespace, hidden=True, verbose=True)

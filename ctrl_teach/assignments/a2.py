"""Assignment 2 (Chapter 5): a CTRL fine-tuning loop, judged by the certificate gap.

The problem is the book's exact 1-D test bed: the pre-trained model is the exact denoiser of
``N(0, 1)`` under a cosine schedule (``T = 50``) sampled in 20 DDPM-type steps, and the
reward is ``log N(y_obs; x_0, tau^2)`` with ``alpha = gamma = 1``. Then (Chapter 4)

    alpha log Z = log N(y_obs; m_s, v_s + tau^2),    J(theta) = alpha log Z - KL(P_theta || P*),

with ``N(m_s, v_s)`` the sampler's exact output law, so the gap ``alpha log Z - J`` measures
how far a fine-tuned model is from the optimum, in nats.

Questions (points):

* ``a2.q1`` (2) ``alpha_log_z(sampler, y_obs, tau)``: the closed-form ``alpha log Z``;
* ``a2.q2`` (3) ``ctrl_rollout(aug, reward, n, generator)``: one differentiable batch of
  controlled trajectories, ``(x_0, J)`` with ``J = log p(y | x_0) - sum_t |a_t|^2 / 2``;
* ``a2.q3`` (3) ``trained``: the augmented model after your fine-tuning loop; full marks for a
  certificate gap below :data:`GAP_TARGET` nats.

Introduced in: Chapter 5 (CTRL on 2-D data).
"""

from __future__ import annotations

import math

import torch

from ._core import CheckFailed, Question, run_check
from ._grading import grader

__all__ = ["Y_OBS", "TAU", "GAP_TARGET", "make_problem", "check_alpha_log_z",
           "check_rollout", "check_trained", "QUESTIONS", "grade"]

Y_OBS, TAU, T, NUM_STEPS = 1.0, 0.5, 50, 20
GAP_TARGET = 0.08  # nats, plus twice the standard error of the estimate


def make_problem(num_steps: int = NUM_STEPS, y_obs: float = Y_OBS, tau: float = TAU,
                 width: int = 64, seed: int = 0):
    """The assignment's 1-D problem: the exact denoiser of ``N(0, 1)``, its sampler, the
    Gaussian-likelihood reward and a fresh augmented model.

    Args:
        num_steps: sampler steps (20 in the assignment).
        y_obs: the observation of the reward ``log N(y_obs; x_0, tau^2)``.
        tau: the observation noise.
        width: hidden width of the control head.
        seed: seeds the head's initial weights (under :func:`~ctrl_teach.profiles.seeded_init`,
            so the caller's global RNG is left untouched).

    Returns:
        ``(sampler, network, reward, aug)``, ``aug`` a
        :class:`~ctrl_teach.ctrl.HeadAugmentedModel` with one label whose control is zero.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    from ..ctrl import GaussianLikelihood, HeadAugmentedModel
    from ..data.toys import GaussianMixture
    from ..diffusion import DiffusionSampler, ExactMixtureDenoiser, NoiseSchedule
    from ..profiles import seeded_init

    schedule = NoiseSchedule.cosine(T)
    network = ExactMixtureDenoiser(GaussianMixture([1.0], [[0.0]], [1.0]), schedule)
    sampler = DiffusionSampler(schedule, num_steps=num_steps, eta=1.0)
    reward = GaussianLikelihood([y_obs], tau)
    with seeded_init(seed):
        aug = HeadAugmentedModel(network, sampler, num_labels=1, width=width)
    return sampler, network, reward, aug


def reference_alpha_log_z(sampler, y_obs: float, tau: float) -> float:
    """The closed-form ``alpha log Z = log N(y_obs; m_s, v_s + tau^2)`` (``alpha = 1``).

    Args:
        sampler: the pre-trained sampler; its exact output law ``N(m_s, v_s)`` comes from
            :func:`~ctrl_teach.diffusion.gaussian_sampler_moments`.
        y_obs: the observation.
        tau: the observation noise.

    Returns:
        ``alpha log Z`` in nats.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    from ..diffusion import gaussian_sampler_moments

    m, v = gaussian_sampler_moments(sampler, 0.0, 1.0)
    var = v + tau**2
    return -0.5 * (y_obs - m) ** 2 / var - 0.5 * math.log(2 * math.pi * var)


def _normal_logpdf(y, m, var):
    return -0.5 * (y - m) ** 2 / var - 0.5 * math.log(2 * math.pi * var)


def check_alpha_log_z(alpha_log_z, *, hidden: bool = False, verbose: bool = True):
    """Check ``alpha_log_z(sampler, y_obs, tau)`` against the closed form
    :func:`reference_alpha_log_z`.

    Args:
        alpha_log_z: the student's function.
        hidden: use the grader's step counts and observations instead of the visible ones.
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 2 points.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """

    def body():
        from ..diffusion import gaussian_sampler_moments

        cases = ([(12, 0.4, 0.3), (30, -1.2, 0.8)] if hidden
                 else [(NUM_STEPS, Y_OBS, TAU), (8, 2.0, 1.0)])
        for num_steps, y_obs, tau in cases:
            sampler, *_ = make_problem(num_steps)
            want = reference_alpha_log_z(sampler, y_obs, tau)
            got = float(alpha_log_z(sampler, y_obs, tau))
            if math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-6):
                continue
            m, v = gaussian_sampler_moments(sampler, 0.0, 1.0)
            known = [
                (_normal_logpdf(y_obs, 0.0, 1.0 + tau**2),
                 "you used the data law N(0, 1); the pre-trained *sampler* with "
                 f"{num_steps} steps outputs N(m_s, v_s) with v_s = {v:.3f}: get it from "
                 "gaussian_sampler_moments(sampler, 0.0, 1.0)"),
                (_normal_logpdf(y_obs, m, v),
                 "y_obs = x_0 + tau * noise, so its marginal variance is v_s + tau^2, not v_s"),
                (_normal_logpdf(y_obs, m, tau**2),
                 "y_obs = x_0 + tau * noise with x_0 ~ N(m_s, v_s): the variance is v_s + tau^2"),
                (-0.5 * (y_obs - m) ** 2 / (v + tau**2),
                 "missing the normalising constant -0.5 log(2 pi (v_s + tau^2))"),
                (math.exp(want), "that is Z; the question asks for alpha log Z (alpha = 1)"),
            ]
            for value, hint in known:
                if math.isclose(got, value, rel_tol=1e-5, abs_tol=1e-6):
                    raise CheckFailed(hint)
            raise CheckFailed(f"got {got:.5f}, expected {want:.5f} for {num_steps} steps, "
                              f"y_obs={y_obs}, tau={tau}: alpha log Z = "
                              "log N(y_obs; m_s, v_s + tau^2)")
        return "closed-form alpha log Z right for every sampler and observation"

    return run_check("a2.q1", "alpha_log_z", 2, body, verbose)


def _randomised_aug(seed: int, num_steps: int):
    """A problem whose control head has a non-zero last layer (so controls are not 0)."""
    sampler, network, reward, aug = make_problem(num_steps, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        aug.head.out.weight.copy_(0.3 * torch.randn(aug.head.out.weight.shape, generator=g))
        aug.head.out.bias.fill_(0.2)
    return sampler, reward, aug


def _unscaled_x0(aug, n: int, seed: int) -> torch.Tensor:
    """``x_0`` of the chain with a known mistake, the mean shifted by ``a`` instead of
    ``sigma a``: the library's sampler with the control ``a / sigma`` in noise units."""
    y = torch.zeros(n, dtype=torch.long)

    def unscaled(x, step):
        t = torch.full((n,), step.t, dtype=torch.long)
        return aug.head(x, t, None, y) / step.std

    return aug.sampler.sample(aug.network, n, c=None, control=unscaled,
                              generator=torch.Generator().manual_seed(seed))


def check_rollout(ctrl_rollout, *, hidden: bool = False, verbose: bool = True):
    """Check ``ctrl_rollout(aug, reward, n, generator) -> (x0, J)`` draw for draw against
    the library's :func:`~ctrl_teach.ctrl.rollout` (the book's eq. ``eq-ctrl-objective``):
    ``x_0``, ``J`` and the gradient ``dJ/dtheta``.

    Args:
        ctrl_rollout: the student's function.
        hidden: use the grader's seed, step count and batch size instead of the visible ones.
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 3 points (1 when ``J`` is
        right but not differentiable, 2 when its gradient is wrong).

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    def body():
        from ..ctrl import rollout

        seed, num_steps, n = (77, 12, 200) if hidden else (5, NUM_STEPS, 256)
        sampler, reward, aug = _randomised_aug(seed, num_steps)
        out = ctrl_rollout(aug, reward, n, torch.Generator().manual_seed(seed))
        if not (isinstance(out, tuple) and len(out) == 2):
            raise CheckFailed("must return a pair (x0, J)")
        x, J = out
        if not isinstance(x, torch.Tensor) or not isinstance(J, torch.Tensor):
            raise CheckFailed("x0 and J must be torch tensors")
        if x.shape != (n, 1) or J.shape != (n,):
            raise CheckFailed(f"shapes {tuple(x.shape)} and {tuple(J.shape)}, expected "
                              f"({n}, 1) and ({n},): one J per trajectory")
        ref = rollout(aug, reward, c=None, y=torch.zeros(n, dtype=torch.long),
                      generator=torch.Generator().manual_seed(seed))
        if not torch.allclose(x.detach(), ref.x0.detach(), atol=1e-4):
            if torch.allclose(x.detach(), _unscaled_x0(aug, n, seed), atol=1e-4):
                raise CheckFailed("x_0 matches a chain whose mean is step.mean + a: the control "
                                  "is in noise units, step.mean + step.std * a")
            raise CheckFailed(
                "x_0 differs from the reference chain: x_T = torch.randn(n, 1, generator=...) "
                "first, one torch.randn per noisy step, the control from aug.head(x, t, None, "
                "y) with t = the step's t, and the last (std 0) step uncontrolled")
        logr, kl = ref.log_reward.detach(), ref.kl.detach().sum(1)
        Jd = J.detach()
        if not torch.allclose(Jd, ref.J.detach(), rtol=1e-4, atol=1e-4):
            known = [(logr - 2 * kl, "your KL is twice too large: each step costs |a|^2 / 2"),
                     (logr, "J has no KL term: J = log p(y | x_0) - sum_t |a_t|^2 / 2"),
                     (logr + kl, "the KL enters J with a minus sign"),
                     (-kl, "J has no reward term: add log p(y | x_0) = reward(x0)[:, 0]"),
                     (logr - kl / n, "the KL must be summed per trajectory, not averaged "
                                     "over the batch")]
            for value, hint in known:
                if torch.allclose(Jd, value, rtol=1e-4, atol=1e-4):
                    raise CheckFailed(hint)
            raise CheckFailed("x_0 is right but J differs: J = log p(y | x_0) - sum over noisy "
                              "steps of |a|^2 / 2, one value per trajectory")
        if not J.requires_grad:
            raise CheckFailed("J is right but not differentiable: do not wrap the chain in "
                              "torch.no_grad() and do not .detach() it", partial=1 / 3)
        params = aug.trainable_parameters()
        grads = torch.autograd.grad(J.mean(), params, allow_unused=True)
        want = torch.autograd.grad(ref.J.mean(), params)
        ok = all(g is not None and torch.allclose(g, w, rtol=1e-3, atol=1e-5)
                 for g, w in zip(grads, want))
        if not ok:
            raise CheckFailed(
                "J is right but its gradient is not: the reward's gradient must flow back "
                "through every step, so never .detach() x between steps and never compute the "
                "pre-trained step under torch.no_grad()", partial=2 / 3)
        return "x_0, J and dJ/dtheta match the library's rollout draw for draw"

    return run_check("a2.q2", "ctrl_rollout", 3, body, verbose)


def certificate(aug, reward, seed: int, n: int = 8000) -> tuple[float, float, float]:
    """The certificate gap ``alpha log Z - J`` of a model on the assignment's problem, with
    the closed-form ``alpha log Z`` (Chapter 4's certificate, ``cor-certificate``).

    Args:
        aug: the (fine-tuned) augmented model.
        reward: the problem's reward.
        seed: seeds the fresh trajectories.
        n: number of trajectories.

    Returns:
        ``(gap, standard error, mean J)`` in nats.

    Introduced in: Chapter 4 (The soft-optimal policy).
    """
    from ..ctrl import certificate_gap, rollout

    alz = reference_alpha_log_z(aug.sampler, Y_OBS, TAU)
    with torch.no_grad():
        out = rollout(aug, reward, c=None, y=torch.zeros(n, dtype=torch.long),
                      generator=torch.Generator().manual_seed(seed))
    gap, se = certificate_gap(alz, 0.0, out.J)
    return gap, se, float(out.J.mean())


def check_trained(trained, *, hidden: bool = False, verbose: bool = True):
    """Check the fine-tuned model ``trained``: full marks for a certificate gap
    ``alpha log Z - J`` (:func:`certificate`) below :data:`GAP_TARGET` plus twice its standard
    error.

    Args:
        trained: the student's fine-tuned :class:`~ctrl_teach.ctrl.HeadAugmentedModel`.
        hidden: evaluate on the grader's trajectories (another seed).
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 3 points (half marks below
        three times the target).

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    def body():
        from ..ctrl import HeadAugmentedModel

        if not isinstance(trained, HeadAugmentedModel):
            raise CheckFailed(f"`trained` must be the HeadAugmentedModel you fine-tuned, got "
                              f"{type(trained).__name__}")
        if trained.sampler.num_steps != NUM_STEPS or trained.num_labels != 1:
            raise CheckFailed("`trained` must come from a2.make_problem() (20 steps, 1 label)")
        sampler, _, reward, fresh = make_problem()
        gap, se, _ = certificate(trained, reward, seed=909 if hidden else 3)
        gap0, _, _ = certificate(fresh, reward, seed=909 if hidden else 3)
        if not math.isfinite(gap):
            raise CheckFailed("J is not finite: the training diverged (lower the learning "
                              "rate, clip the gradient norm)")
        if gap < -3 * se:
            raise CheckFailed(f"gap {gap:.3f} below zero beyond its standard error {se:.3f}: "
                              "impossible for a correct KL; report this to your instructor")
        if gap <= GAP_TARGET + 2 * se:
            return (f"certificate gap alpha log Z - J = {gap:.3f} +- {se:.3f} nats "
                    f"(untrained: {gap0:.3f}; target < {GAP_TARGET})")
        if gap >= 0.9 * gap0:
            raise CheckFailed(
                f"gap {gap:.3f} nats, about the untrained model's {gap0:.3f}: training did not "
                "move the control. Optimise aug.trainable_parameters() and *maximise* J "
                "(loss = -J.mean()); check that J has a gradient (a2.check_rollout)")
        partial = 0.5 if gap < 3 * GAP_TARGET else 0.0
        raise CheckFailed(
            f"gap {gap:.3f} +- {se:.3f} nats (untrained {gap0:.3f}), target < {GAP_TARGET}: "
            "train longer or with a larger batch, and watch J in your training log",
            partial=partial)

    return run_check("a2.q3", "trained", 3, body, verbose)


QUESTIONS = [
    Question("a2.q1", "alpha_log_z", 2, check_alpha_log_z, "closed-form alpha log Z"),
    Question("a2.q2", "ctrl_rollout", 3, check_rollout, "differentiable controlled rollout"),
    Question("a2.q3", "trained", 3, check_trained, "fine-tuned to the certificate target"),
]

grade = grader(QUESTIONS)  # grade(namespace, hidden=True, verbose=True)
